//! ListOffsets: earliest (-2), latest (-1), max timestamp (-3), earliest-local (-4, = earliest
//! without tiered storage), latest-tiered (-5, none: -1), and by timestamp via the time index.
//! Latest is the high watermark (read_uncommitted) or the last stable offset (read_committed),
//! which are equal while there are no transactions.

use std::sync::Arc;

use kafka_protocol::messages::list_offsets_response::{
    ListOffsetsPartitionResponse, ListOffsetsTopicResponse,
};
use kafka_protocol::messages::{ListOffsetsRequest, ListOffsetsResponse};

use super::code;
use crate::broker::Broker;

const EARLIEST: i64 = -2;
const LATEST: i64 = -1;
const MAX_TIMESTAMP: i64 = -3;
const EARLIEST_LOCAL: i64 = -4;
const LATEST_TIERED: i64 = -5;

pub async fn handle(
    broker: &Arc<Broker>,
    version: i16,
    request: ListOffsetsRequest,
) -> ListOffsetsResponse {
    let image = broker.metadata.image();
    let mut work = Vec::new();
    for t in &request.topics {
        let topic = image.topic_by_name(&t.name.0);
        let parts: Vec<_> = t
            .partitions
            .iter()
            .map(|p| {
                (
                    p.partition_index,
                    p.timestamp,
                    topic.and_then(|x| broker.partitions.get(x.topic_id, p.partition_index)),
                )
            })
            .collect();
        work.push((t.name.clone(), parts));
    }
    let topics = broker
        .blocking(move || {
            work.into_iter()
                .map(|(name, parts)| {
                    let partitions = parts
                        .into_iter()
                        .map(|(index, timestamp, partition)| {
                            let r = ListOffsetsPartitionResponse::default()
                                .with_partition_index(index)
                                .with_leader_epoch(if version >= 4 { 0 } else { -1 });
                            let Some(p) = partition else {
                                return r
                                    .with_error_code(code::UNKNOWN_TOPIC_OR_PARTITION)
                                    .with_timestamp(-1)
                                    .with_offset(-1);
                            };
                            let log = &p.log;
                            let (ts, offset) = match timestamp {
                                EARLIEST | EARLIEST_LOCAL => (-1, log.log_start_offset()),
                                LATEST => (-1, log.high_watermark()),
                                LATEST_TIERED => (-1, -1),
                                MAX_TIMESTAMP => log.max_timestamp().unwrap_or((-1, -1)),
                                ts if ts >= 0 => match log.offset_for_timestamp(ts) {
                                    Some((offset, found_ts)) if offset < log.high_watermark() => {
                                        (found_ts, offset)
                                    }
                                    _ => (-1, -1),
                                },
                                _ => {
                                    return r
                                        .with_error_code(code::INVALID_REQUEST)
                                        .with_timestamp(-1)
                                        .with_offset(-1)
                                }
                            };
                            r.with_error_code(code::NONE)
                                .with_timestamp(ts)
                                .with_offset(offset)
                        })
                        .collect();
                    ListOffsetsTopicResponse::default()
                        .with_name(name)
                        .with_partitions(partitions)
                })
                .collect()
        })
        .await;
    ListOffsetsResponse::default().with_topics(topics)
}

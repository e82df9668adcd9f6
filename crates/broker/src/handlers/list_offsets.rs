//! ListOffsets: earliest (-2), latest (-1), max timestamp (-3), earliest-local (-4, = earliest
//! without tiered storage), latest-tiered (-5, none: -1), and by timestamp via the time index.
//! Latest is the high watermark (read_uncommitted) or the last stable offset (read_committed,
//! `isolation_level` 1, v2+), which are equal while no transaction is open; a timestamp lookup
//! finds only offsets below that same bound (Kafka's `fetchOffsetForTimestamp`); a follower
//! replica asking (`replica_id` >=
//! 0, after OFFSET_OUT_OF_RANGE) gets the log end instead, as Kafka's `isolationLevel = None`.
//! A client asking a new leader whose high watermark is still below its leader epoch's start
//! offset gets OFFSET_NOT_AVAILABLE for latest (and for a timestamp not found below the high
//! watermark), as Kafka's `Partition.fetchOffsetForTimestamp`: until then the leader cannot
//! tell what is committed.
//!
//! A partition is answered only if [`leadership::check`] says the image lets this broker lead
//! it at the request's `current_leader_epoch` (v4+; -1: not checked, as Kafka's
//! `ListOffsetsResponse.UNKNOWN_EPOCH`); otherwise NOT_LEADER_OR_FOLLOWER, FENCED_LEADER_EPOCH
//! or UNKNOWN_LEADER_EPOCH with offset, timestamp and leader epoch -1, as Kafka's
//! `Partition.fetchOffsetForTimestamp`. The leader epoch answered (v4+) is Kafka's
//! (`UnifiedLog.fetchOffsetByTimestamp`): latest gets the image's leader epoch; every other
//! query gets the epoch stamped on the batch holding the offset found (the log keeps no epoch
//! cache yet, so that batch's header is read), or the leader epoch when no batch holds it
//! (an empty log). Must never: answer for a partition this broker does not lead.

use std::sync::Arc;

use josefine_log::batch::BatchHeader;
use josefine_log::PartitionLog;
use kafka_protocol::messages::list_offsets_response::{
    ListOffsetsPartitionResponse, ListOffsetsTopicResponse,
};
use kafka_protocol::messages::{ListOffsetsRequest, ListOffsetsResponse};

use super::code;
use crate::broker::Broker;
use crate::leadership;
use crate::partitions::Partition;

const EARLIEST: i64 = -2;
const LATEST: i64 = -1;
const MAX_TIMESTAMP: i64 = -3;
const EARLIEST_LOCAL: i64 = -4;
const LATEST_TIERED: i64 = -5;

/// `current_leader_epoch` of a request that does not ask for an epoch check.
const EPOCH_UNCHECKED: i32 = -1;

/// One requested partition: the log and leader epoch to answer from, or the error code.
type Target = Result<(Arc<Partition>, i32), i16>;

pub async fn handle(
    broker: &Arc<Broker>,
    version: i16,
    request: ListOffsetsRequest,
) -> ListOffsetsResponse {
    let image = broker.metadata.image();
    let node_id = broker.config.node_id;
    let from_replica = request.replica_id.0 >= 0;
    let read_committed = request.isolation_level == 1;
    // DESCRIBE on each topic (crate::authz::OPERATIONS).
    let authz = crate::authz::Authz::of(broker);
    let mut work = Vec::new();
    for t in &request.topics {
        let topic = image.topic_by_name(&t.name.0);
        let denied = !authz.allows(
            josefine_meta::acl::Operation::Describe,
            josefine_meta::acl::ResourceType::Topic,
            &t.name.0,
        );
        let parts: Vec<(i32, i64, Target)> = t
            .partitions
            .iter()
            .map(|p| {
                let epoch =
                    (p.current_leader_epoch != EPOCH_UNCHECKED).then_some(p.current_leader_epoch);
                let target = match topic {
                    _ if denied => Err(code::TOPIC_AUTHORIZATION_FAILED),
                    None => Err(code::UNKNOWN_TOPIC_OR_PARTITION),
                    Some(topic) => {
                        leadership::check(&image, node_id, topic.topic_id, p.partition_index, epoch)
                            .map_err(|refusal| refusal.error_code())
                            .and_then(|leader_epoch| {
                                broker
                                    .partitions
                                    .get(topic.topic_id, p.partition_index)
                                    .map(|partition| (partition, leader_epoch))
                                    .ok_or(code::KAFKA_STORAGE_ERROR)
                            })
                    }
                };
                (p.partition_index, p.timestamp, target)
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
                        .map(|(index, timestamp, target)| {
                            answer(
                                version,
                                index,
                                timestamp,
                                target,
                                from_replica,
                                read_committed,
                            )
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

/// The answer for one partition (reads the log: call off the async workers).
fn answer(
    version: i16,
    index: i32,
    timestamp: i64,
    target: Target,
    from_replica: bool,
    read_committed: bool,
) -> ListOffsetsPartitionResponse {
    let r = ListOffsetsPartitionResponse::default().with_partition_index(index);
    let failed = |r: ListOffsetsPartitionResponse, error| {
        r.with_error_code(error)
            .with_timestamp(-1)
            .with_offset(-1)
            .with_leader_epoch(-1)
    };
    let (partition, leader_epoch) = match target {
        Ok(t) => t,
        Err(error) => return failed(r, error),
    };
    let log = &partition.log;
    // A new leader whose high watermark has not reached its epoch's start cannot answer
    // clients yet.
    let not_available = !from_replica
        && partition
            .replica
            .leader_epoch_start()
            .is_some_and(|(_, start)| start > log.high_watermark());
    // What a consumer of this isolation level may read below.
    let fetchable_end = if read_committed {
        log.last_stable_offset()
    } else {
        log.high_watermark()
    };
    let (ts, offset, epoch) = match timestamp {
        LATEST if from_replica => (-1, log.log_end_offset(), leader_epoch),
        LATEST if not_available => return failed(r, code::OFFSET_NOT_AVAILABLE),
        LATEST => (-1, fetchable_end, leader_epoch),
        LATEST_TIERED => (-1, -1, -1),
        EARLIEST | EARLIEST_LOCAL => {
            let offset = log.log_start_offset();
            (-1, offset, epoch_at(log, offset, leader_epoch))
        }
        MAX_TIMESTAMP => match log.max_timestamp() {
            Some((ts, offset)) => (ts, offset, epoch_at(log, offset, leader_epoch)),
            None => (-1, -1, -1),
        },
        ts if ts >= 0 => match log.offset_for_timestamp(ts) {
            Some((offset, found_ts)) if offset < fetchable_end => {
                (found_ts, offset, epoch_at(log, offset, leader_epoch))
            }
            _ if not_available => return failed(r, code::OFFSET_NOT_AVAILABLE),
            _ => (-1, -1, -1),
        },
        _ => return failed(r, code::INVALID_REQUEST),
    };
    r.with_error_code(code::NONE)
        .with_timestamp(ts)
        .with_offset(offset)
        .with_leader_epoch(if version >= 4 { epoch } else { -1 })
}

/// The leader epoch stamped on the batch holding `offset` (or the first one after it, where
/// compaction left a gap; -1 for a negative stamp, as Kafka filters those), or `leader_epoch`
/// when no batch is at or after `offset` (an empty log: the current leader's epoch starts
/// there).
fn epoch_at(log: &PartitionLog, offset: i64, leader_epoch: i32) -> i32 {
    match log.read(offset, 1, i64::MAX) {
        Ok(r) if !r.records.is_empty() => {
            BatchHeader::parse(&r.records).map_or(-1, |h| h.partition_leader_epoch.max(-1))
        }
        _ => leader_epoch,
    }
}

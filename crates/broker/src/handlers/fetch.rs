//! Fetch: the read path, with long polling.
//!
//! Reads whole batches from each requested partition up to the high watermark (= last stable
//! offset while there are no transactions), within the response `max_bytes` (capped by
//! `fetch.max.bytes`) and each partition's `partition_max_bytes`. The first partition that has
//! data may exceed both limits by one batch, so a consumer always makes progress; later
//! partitions that would exceed them return no records this time. If fewer than `min_bytes`
//! are available, the request parks until an append happens or `max_wait_ms` passes (capped by
//! `limits::FETCH_MAX_WAIT_MS_CEILING`; at most `limits::FETCH_WAITERS_MAX` parked at once).
//! Fetch sessions (KIP-227) are declined: we always answer session_id 0, so clients send full
//! fetch requests; a request naming a session gets FETCH_SESSION_ID_NOT_FOUND.
//!
//! A partition is read only if [`leadership::check`] says the image lets this broker lead it
//! at the request's `current_leader_epoch` (negative: not checked, as Kafka's
//! `FetchRequest.optionalEpoch`); otherwise the partition answers NOT_LEADER_OR_FOLLOWER,
//! FENCED_LEADER_EPOCH or UNKNOWN_LEADER_EPOCH, and from v16 the first two carry the leader the
//! image names (`current_leader`, with its endpoint in `node_endpoints` when it is live), as
//! Kafka's `KafkaApis.handleFetchRequest` (KIP-951). Leadership is decided once per request, from
//! the image current when it arrives. Must never: read a partition the image does not say this
//! broker leads (consumers read from leaders only; follower reads, KIP-392, are not offered).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use kafka_protocol::messages::fetch_response::{
    FetchableTopicResponse, LeaderIdAndEpoch, NodeEndpoint, PartitionData,
};
use kafka_protocol::messages::{BrokerId, FetchRequest, FetchResponse, TopicName};
use uuid::Uuid;

use super::{code, str_bytes, topic_id_of, uuid_of};
use crate::broker::Broker;
use crate::leadership::{self, LeaderAndEpoch};
use crate::limits;
use crate::partitions::Partition;

/// Why a partition is not read: its error code and, where the response reports it, the leader
/// the image names.
type Unread = (i16, Option<LeaderAndEpoch>);

struct Target {
    partition_index: i32,
    fetch_offset: i64,
    partition_max_bytes: usize,
    partition: Result<Arc<Partition>, Unread>,
}

struct TopicTargets {
    name: TopicName,
    topic_id: Uuid,
    targets: Vec<Target>,
}

fn error_partition(index: i32, (error, current_leader): Unread) -> PartitionData {
    let data = PartitionData::default()
        .with_partition_index(index)
        .with_error_code(error)
        .with_high_watermark(-1)
        .with_last_stable_offset(-1)
        .with_log_start_offset(-1)
        .with_records(Some(Bytes::new()));
    match current_leader {
        Some(l) => data.with_current_leader(
            LeaderIdAndEpoch::default()
                .with_leader_id(BrokerId(l.leader_id))
                .with_leader_epoch(l.leader_epoch),
        ),
        None => data,
    }
}

/// One pass over all partitions. Returns the topic responses and the record bytes gathered.
fn read_all(
    topics: &[TopicTargets],
    response_max_bytes: usize,
    read_committed: bool,
) -> (Vec<FetchableTopicResponse>, usize, bool) {
    let mut total = 0usize;
    let mut any_error = false;
    let mut out = Vec::with_capacity(topics.len());
    for t in topics {
        let mut partitions = Vec::with_capacity(t.targets.len());
        for target in &t.targets {
            let partition = match &target.partition {
                Err(unread) => {
                    any_error = true;
                    partitions.push(error_partition(target.partition_index, *unread));
                    continue;
                }
                Ok(p) => p,
            };
            let log = &partition.log;
            let high_watermark = log.high_watermark();
            let limit = target
                .partition_max_bytes
                .min(response_max_bytes.saturating_sub(total));
            let base = PartitionData::default()
                .with_partition_index(target.partition_index)
                .with_aborted_transactions(if read_committed { Some(vec![]) } else { None })
                .with_preferred_read_replica(kafka_protocol::messages::BrokerId(-1));
            if limit == 0 && total > 0 {
                partitions.push(
                    base.with_high_watermark(high_watermark)
                        .with_last_stable_offset(high_watermark)
                        .with_log_start_offset(log.log_start_offset())
                        .with_records(Some(Bytes::new())),
                );
                continue;
            }
            match log.read(target.fetch_offset, limit.max(1), high_watermark) {
                Ok(r) => {
                    // Only the first partition with data may go over the limits.
                    let records = if total > 0 && r.records.len() > limit {
                        Bytes::new()
                    } else {
                        r.records
                    };
                    total += records.len();
                    partitions.push(
                        base.with_error_code(code::NONE)
                            .with_high_watermark(r.high_watermark)
                            .with_last_stable_offset(r.high_watermark)
                            .with_log_start_offset(r.log_start_offset)
                            .with_records(Some(records)),
                    );
                }
                Err(e) => {
                    any_error = true;
                    partitions.push(
                        base.with_error_code(e.kafka_error_code())
                            .with_high_watermark(high_watermark)
                            .with_last_stable_offset(high_watermark)
                            .with_log_start_offset(log.log_start_offset())
                            .with_records(Some(Bytes::new())),
                    );
                }
            }
        }
        // A topic listed without partitions gets no entry, as in Kafka (the Java client flags a
        // topic id in a full fetch response that covers none of its requested partitions).
        if partitions.is_empty() {
            continue;
        }
        out.push(
            FetchableTopicResponse::default()
                .with_topic(t.name.clone())
                .with_topic_id(t.topic_id)
                .with_partitions(partitions),
        );
    }
    (out, total, any_error)
}

pub async fn handle(broker: &Arc<Broker>, version: i16, request: FetchRequest) -> FetchResponse {
    if request.session_id != 0 {
        return FetchResponse::default()
            .with_error_code(code::FETCH_SESSION_ID_NOT_FOUND)
            .with_session_id(0);
    }
    let image = broker.metadata.image();
    let response_max_bytes = if request.max_bytes > 0 {
        (request.max_bytes as u32).min(broker.config.broker.fetch_max_bytes) as usize
    } else {
        broker.config.broker.fetch_max_bytes as usize
    };
    let max_wait = Duration::from_millis(
        (request.max_wait_ms.max(0) as u64).min(limits::FETCH_MAX_WAIT_MS_CEILING),
    );
    let min_bytes = request.min_bytes.max(0) as usize;
    let read_committed = request.isolation_level == 1;

    let node_id = broker.config.node_id;
    // The endpoints of the leaders reported in `current_leader` (v16+), live brokers only.
    let mut node_endpoints = BTreeMap::new();
    let mut topics = Vec::with_capacity(request.topics.len());
    for t in request.topics {
        let topic = if version >= 13 {
            image.topics.get(&topic_id_of(t.topic_id))
        } else {
            image.topic_by_name(&t.topic.0)
        };
        let unknown = if version >= 13 {
            code::UNKNOWN_TOPIC_ID
        } else {
            code::UNKNOWN_TOPIC_OR_PARTITION
        };
        let targets = t
            .partitions
            .iter()
            .map(|p| Target {
                partition_index: p.partition,
                fetch_offset: p.fetch_offset,
                partition_max_bytes: p.partition_max_bytes.max(0) as usize,
                partition: match topic {
                    None => Err((unknown, None)),
                    Some(topic) => {
                        let epoch = (p.current_leader_epoch >= 0).then_some(p.current_leader_epoch);
                        match leadership::check(&image, node_id, topic.topic_id, p.partition, epoch)
                        {
                            Ok(_) => broker
                                .partitions
                                .get(topic.topic_id, p.partition)
                                .ok_or((code::KAFKA_STORAGE_ERROR, None)),
                            Err(refusal) => {
                                let error = refusal.error_code();
                                let reported = version >= 16
                                    && (error == code::NOT_LEADER_OR_FOLLOWER
                                        || error == code::FENCED_LEADER_EPOCH);
                                let leader = reported.then(|| refusal.current_leader());
                                if let Some(b) = leader
                                    .and_then(|l| leadership::live_broker(&image, l.leader_id))
                                {
                                    node_endpoints.insert(
                                        b.node_id,
                                        NodeEndpoint::default()
                                            .with_node_id(BrokerId(b.node_id))
                                            .with_host(str_bytes(b.host.clone()))
                                            .with_port(b.port)
                                            .with_rack(b.rack.clone().map(str_bytes)),
                                    );
                                }
                                Err((error, leader))
                            }
                        }
                    }
                },
            })
            .collect();
        let topic_id = topic.map_or(t.topic_id, |x| uuid_of(x.topic_id));
        topics.push(TopicTargets {
            name: t.topic,
            topic_id,
            targets,
        });
    }
    let topics = Arc::new(topics);
    let node_endpoints: Vec<NodeEndpoint> = node_endpoints.into_values().collect();

    let deadline = tokio::time::Instant::now() + max_wait;
    let mut appends = broker.subscribe_appends();
    let mut parked: Option<tokio::sync::SemaphorePermit<'_>> = None;
    loop {
        appends.borrow_and_update();
        let t = topics.clone();
        let (responses, total, any_error) = broker
            .blocking(move || read_all(&t, response_max_bytes, read_committed))
            .await;
        let done = total >= min_bytes || any_error || tokio::time::Instant::now() >= deadline;
        if !done && parked.is_none() {
            parked = broker.fetch_waiters.try_acquire().ok();
        }
        let respond = |responses| {
            FetchResponse::default()
                .with_error_code(code::NONE)
                .with_session_id(0)
                .with_responses(responses)
                .with_node_endpoints(node_endpoints.clone())
        };
        if done || parked.is_none() {
            return respond(responses);
        }
        match tokio::time::timeout_at(deadline, appends.changed()).await {
            Ok(Ok(())) => continue,
            // Timed out (or the broker is going away): answer with what we have.
            _ => return respond(responses),
        }
    }
}

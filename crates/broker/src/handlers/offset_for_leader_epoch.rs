//! OffsetForLeaderEpoch (KIP-320): the end offset of a leader epoch, which a consumer asks for
//! after the partition's leader epoch changed, to check that the records before its position
//! were not truncated away (a follower asks the same before truncating; KIP-101).
//!
//! Per partition, as Kafka 4.1's `ReplicaManager.lastOffsetForLeaderEpoch` and
//! `Partition.lastOffsetForLeaderEpoch`: unknown topic or partition is
//! UNKNOWN_TOPIC_OR_PARTITION; then [`leadership::check`] at the request's
//! `current_leader_epoch` (-1: not checked) answers FENCED_LEADER_EPOCH, UNKNOWN_LEADER_EPOCH
//! or NOT_LEADER_OR_FOLLOWER (also for a follower's request, `replica_id` >= 0: Kafka serves
//! this API from the leader only); errors carry leader epoch and end offset -1. A partition
//! this broker leads at leader epoch L answers for the requested epoch E from the log's
//! leader-epoch cache ([`PartitionLog::end_offset_for_epoch`], Kafka's
//! `LeaderEpochFileCache.endOffsetFor`):
//! - E = -1 (UNDEFINED_EPOCH) or E > L: leader epoch -1, end offset -1, no error;
//! - E = L: (L, log end offset);
//! - otherwise (F, the start offset of the first epoch above E), where F is the largest epoch
//!   <= E in the cache, or E itself when the cache holds no epoch <= E (older epochs were
//!   deleted with their records); the epoch above E may be L itself, starting at the log end.
//!
//! Kafka's leader adds (L, log end) to its cache when it is elected. Where this log's cache does
//! not hold L yet (a leader that has not written at L), L is taken to start at the log end, which
//! is what that entry would say.
//!
//! Must never: lock a log on an async worker (the lookups run on the blocking pool), or answer
//! for a partition this broker does not lead.

use std::sync::Arc;

use josefine_log::PartitionLog;
use kafka_protocol::messages::offset_for_leader_epoch_response::{
    EpochEndOffset, OffsetForLeaderTopicResult,
};
use kafka_protocol::messages::{OffsetForLeaderEpochRequest, OffsetForLeaderEpochResponse};

use super::code;
use crate::broker::Broker;
use crate::leadership;
use crate::partitions::Partition;

/// Kafka's `UNDEFINED_EPOCH` and `UNDEFINED_EPOCH_OFFSET`: the answer when the epoch is unknown.
const UNDEFINED_EPOCH: i32 = -1;
const UNDEFINED_EPOCH_OFFSET: i64 = -1;

/// `current_leader_epoch` of a request that does not ask for an epoch check (Kafka's
/// `RecordBatch.NO_PARTITION_LEADER_EPOCH`).
const EPOCH_UNCHECKED: i32 = -1;

/// One requested partition: the log and its leader epoch to answer from, or the error code.
type Target = Result<(Arc<Partition>, i32), i16>;

pub async fn handle(
    broker: &Arc<Broker>,
    request: OffsetForLeaderEpochRequest,
) -> OffsetForLeaderEpochResponse {
    let image = broker.metadata.image();
    let node_id = broker.config.node_id;
    let mut work = Vec::with_capacity(request.topics.len());
    for t in request.topics {
        let topic = image.topic_by_name(&t.topic.0);
        let parts: Vec<(i32, i32, Target)> = t
            .partitions
            .iter()
            .map(|p| {
                let checked =
                    (p.current_leader_epoch != EPOCH_UNCHECKED).then_some(p.current_leader_epoch);
                let target = match topic {
                    None => Err(code::UNKNOWN_TOPIC_OR_PARTITION),
                    Some(topic) => {
                        leadership::check(&image, node_id, topic.topic_id, p.partition, checked)
                            .map_err(|refusal| refusal.error_code())
                            .and_then(|leader_epoch| {
                                broker
                                    .partitions
                                    .get(topic.topic_id, p.partition)
                                    .map(|partition| (partition, leader_epoch))
                                    .ok_or(code::KAFKA_STORAGE_ERROR)
                            })
                    }
                };
                (p.partition, p.leader_epoch, target)
            })
            .collect();
        work.push((t.topic, parts));
    }
    let topics = broker
        .blocking(move || {
            work.into_iter()
                .map(|(topic, parts)| {
                    let partitions = parts
                        .into_iter()
                        .map(|(index, requested, target)| answer(index, requested, target))
                        .collect();
                    OffsetForLeaderTopicResult::default()
                        .with_topic(topic)
                        .with_partitions(partitions)
                })
                .collect()
        })
        .await;
    OffsetForLeaderEpochResponse::default().with_topics(topics)
}

/// The answer for one partition (reads the log: call off the async workers).
fn answer(index: i32, requested: i32, target: Target) -> EpochEndOffset {
    let r = EpochEndOffset::default().with_partition(index);
    let (error, (epoch, end_offset)) = match target {
        Err(error) => (error, (UNDEFINED_EPOCH, UNDEFINED_EPOCH_OFFSET)),
        Ok((partition, leader_epoch)) => (
            code::NONE,
            end_offset_for(&partition.log, requested, leader_epoch),
        ),
    };
    r.with_error_code(error)
        .with_leader_epoch(epoch)
        .with_end_offset(end_offset)
}

/// (leader epoch, end offset) for `requested` on a log this broker leads at `leader_epoch`:
/// Kafka's `LeaderEpochFileCache.endOffsetFor` over the log's cache, whose latest entry is the
/// leader's epoch (Kafka assigns it at election; see the module doc when it is missing).
fn end_offset_for(log: &PartitionLog, requested: i32, leader_epoch: i32) -> (i32, i64) {
    if requested == UNDEFINED_EPOCH || requested > leader_epoch {
        return (UNDEFINED_EPOCH, UNDEFINED_EPOCH_OFFSET);
    }
    if requested == leader_epoch {
        return (leader_epoch, log.log_end_offset());
    }
    match log.end_offset_for_epoch(requested) {
        Some(found) => found,
        // The cache ends below `requested` (or is empty): the next epoch is the leader's own,
        // starting at the log end.
        None => (
            log.latest_leader_epoch()
                .filter(|&latest| latest < requested)
                .unwrap_or(requested),
            log.log_end_offset(),
        ),
    }
}

//! DeleteRecords: move a partition's log start offset forward (kafka-delete-records,
//! `AdminClient.deleteRecords`). Reads below the new start then get OFFSET_OUT_OF_RANGE and
//! ListOffsets earliest answers it; whole segments below it are deleted at once.
//!
//! Per partition, as Kafka's `Partition.deleteRecordsOnLeader`: offset -1 means the high
//! watermark; an offset above it or below -1 is OFFSET_OUT_OF_RANGE; a topic whose
//! `cleanup.policy` lacks delete is POLICY_VIOLATION; unknown topic or partition is
//! UNKNOWN_TOPIC_OR_PARTITION; internal topics are INVALID_TOPIC_EXCEPTION; a partition the
//! image does not say this broker leads ([`leadership::check`]) is NOT_LEADER_OR_FOLLOWER,
//! also when nobody leads it (`Partition.deleteRecordsOnLeader`). Errors carry low
//! watermark -1. The decisions live in `PartitionLog::delete_records_before`; this handler only
//! maps names to logs and errors to codes. Must never: run the deletion (fsync, unlink) on an
//! async worker.

use std::sync::Arc;

use kafka_protocol::messages::delete_records_response::{
    DeleteRecordsPartitionResult, DeleteRecordsTopicResult,
};
use kafka_protocol::messages::{DeleteRecordsRequest, DeleteRecordsResponse};
use tracing::{info, warn};

use super::{code, is_internal_topic};
use crate::broker::Broker;
use crate::leadership;
use crate::partitions::Partition;

/// Kafka's `DeleteRecordsResponse.INVALID_LOW_WATERMARK`, sent with every error.
const INVALID_LOW_WATERMARK: i64 = -1;

/// What to do for one requested partition, decided from the image before any I/O.
enum Target {
    Delete(Arc<Partition>, i64),
    Error(i16),
}

pub async fn handle(broker: &Arc<Broker>, request: DeleteRecordsRequest) -> DeleteRecordsResponse {
    let image = broker.metadata.image();
    let mut work = Vec::with_capacity(request.topics.len());
    for t in request.topics {
        let topic = image.topic_by_name(&t.name.0);
        let targets: Vec<(i32, Target)> = t
            .partitions
            .iter()
            .map(|p| {
                let target = match topic {
                    None => Target::Error(code::UNKNOWN_TOPIC_OR_PARTITION),
                    Some(_) if is_internal_topic(&t.name.0) => {
                        Target::Error(code::INVALID_TOPIC_EXCEPTION)
                    }
                    Some(topic) => match leadership::check(
                        &image,
                        broker.config.node_id,
                        topic.topic_id,
                        p.partition_index,
                        None,
                    ) {
                        Err(refusal) => Target::Error(refusal.error_code()),
                        Ok(_) => match broker.partitions.get(topic.topic_id, p.partition_index) {
                            Some(partition) => Target::Delete(partition, p.offset),
                            None => Target::Error(code::KAFKA_STORAGE_ERROR),
                        },
                    },
                };
                (p.partition_index, target)
            })
            .collect();
        work.push((t.name, targets));
    }
    let topics = broker
        .blocking(move || {
            work.into_iter()
                .map(|(name, targets)| {
                    let partitions = targets
                        .into_iter()
                        .map(|(index, target)| {
                            let (low_watermark, error) = delete_one(&name.0, index, target);
                            DeleteRecordsPartitionResult::default()
                                .with_partition_index(index)
                                .with_low_watermark(low_watermark)
                                .with_error_code(error)
                        })
                        .collect();
                    DeleteRecordsTopicResult::default()
                        .with_name(name)
                        .with_partitions(partitions)
                })
                .collect()
        })
        .await;
    DeleteRecordsResponse::default().with_topics(topics)
}

/// Runs one deletion (blocking I/O): the new low watermark and NONE, or -1 and the error.
fn delete_one(topic: &str, index: i32, target: Target) -> (i64, i16) {
    let (partition, offset) = match target {
        Target::Delete(p, offset) => (p, offset),
        Target::Error(e) => return (INVALID_LOW_WATERMARK, e),
    };
    let before = partition.log.log_start_offset();
    match partition.log.delete_records_before(offset) {
        Ok(low_watermark) => {
            if low_watermark != before {
                info!(
                    topic,
                    partition = index,
                    from = before,
                    to = low_watermark,
                    "DeleteRecords moved the log start offset"
                );
            }
            (low_watermark, code::NONE)
        }
        Err(e) => {
            let error = e.kafka_error_code();
            if error == code::KAFKA_STORAGE_ERROR {
                warn!(topic, partition = index, "DeleteRecords failed: {e}");
            }
            (INVALID_LOW_WATERMARK, error)
        }
    }
}

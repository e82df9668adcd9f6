//! WriteTxnMarkers (API 27 v1) at a partition leader: the transaction coordinator's (or an
//! admin client's `kafka-transactions abort`) request to end transactions in partition logs.
//!
//! Owns: the handler (each marker's partitions written one by one, as Kafka's
//! `handleWriteTxnMarkersRequest` with `AppendOrigin.COORDINATOR` and acks=-1: answered per
//! partition once the high watermark covers the marker, or with NOT_LEADER_OR_FOLLOWER /
//! UNKNOWN_TOPIC_OR_PARTITION / the log's INVALID_PRODUCER_EPOCH and
//! TRANSACTION_COORDINATOR_FENCED / NOT_ENOUGH_REPLICAS (under min.insync, nothing written) /
//! NOT_ENOUGH_REPLICAS_AFTER_APPEND / REQUEST_TIMED_OUT). The
//! write itself is `Partition::append_marker_as_leader` (replication/leader.rs), the leader
//! append path produced batches take too.
//!
//! Advertised, as Kafka lists it on the broker listener: the transaction coordinator
//! (`crate::txn`) sends it to every leader, this broker included, and `kafka-transactions abort`
//! sends it from an Admin client. Internal topics
//! are written like any other partition; a marker on `__consumer_offsets` then tells the group
//! coordinator, which commits or drops the producer's transactional offsets there.
//!
//! Must never: write a marker on a broker that does not lead the partition at the given
//! epoch, or outside the role lock (a demotion in between would let a stale leader write).

use std::sync::Arc;
use std::time::Duration;

use kafka_protocol::messages::write_txn_markers_response::{
    WritableTxnMarkerPartitionResult, WritableTxnMarkerResult, WritableTxnMarkerTopicResult,
};
use kafka_protocol::messages::{WriteTxnMarkersRequest, WriteTxnMarkersResponse};

use super::code;
use crate::broker::Broker;
use crate::clock::now_ms;
use crate::groups::OFFSETS_TOPIC;
use crate::leadership;
use crate::limits;

/// Write one marker to one partition and wait for the high watermark to cover it.
async fn write_one(
    broker: &Arc<Broker>,
    topic: &str,
    partition_index: i32,
    marker: &kafka_protocol::messages::write_txn_markers_request::WritableTxnMarker,
) -> i16 {
    let image = broker.metadata.image();
    let Some(topic) = image.topic_by_name(topic) else {
        return code::UNKNOWN_TOPIC_OR_PARTITION;
    };
    let leader_epoch = match leadership::check(
        &image,
        broker.config.node_id,
        topic.topic_id,
        partition_index,
        None,
    ) {
        Ok(epoch) => epoch,
        Err(refusal) => return refusal.error_code(),
    };
    let Some(partition) = broker.partitions.get(topic.topic_id, partition_index) else {
        return code::KAFKA_STORAGE_ERROR;
    };
    let (producer_id, producer_epoch) = (marker.producer_id.0, marker.producer_epoch);
    let (coordinator_epoch, commit) = (marker.coordinator_epoch, marker.transaction_result);
    let writer = partition.clone();
    let written = broker
        .blocking(move || {
            writer.append_marker_as_leader(
                producer_id,
                producer_epoch,
                coordinator_epoch,
                commit,
                leader_epoch,
                now_ms(),
            )
        })
        .await;
    let error = match written {
        Ok(outcome) => {
            partition
                .wait_for_high_watermark(
                    leader_epoch,
                    outcome.last_offset + 1,
                    Duration::from_millis(limits::WRITE_TXN_MARKERS_TIMEOUT_MS),
                )
                .await
        }
        Err(e) => e.error_code(),
    };
    if error == code::NONE && topic.name == OFFSETS_TOPIC {
        // The group coordinator makes the producer's transactional offsets committed (or drops
        // them) before the marker is acknowledged, as Kafka's `onTransactionCompleted`.
        broker
            .groups()
            .txn_marker_written(partition_index, producer_id, commit)
            .await;
    }
    error
}

pub async fn handle(
    broker: &Arc<Broker>,
    request: WriteTxnMarkersRequest,
) -> WriteTxnMarkersResponse {
    let mut markers = Vec::with_capacity(request.markers.len());
    for marker in &request.markers {
        let mut topics = Vec::with_capacity(marker.topics.len());
        for t in &marker.topics {
            let mut partitions = Vec::with_capacity(t.partition_indexes.len());
            for &index in &t.partition_indexes {
                let error = write_one(broker, &t.name.0, index, marker).await;
                partitions.push(
                    WritableTxnMarkerPartitionResult::default()
                        .with_partition_index(index)
                        .with_error_code(error),
                );
            }
            topics.push(
                WritableTxnMarkerTopicResult::default()
                    .with_name(t.name.clone())
                    .with_partitions(partitions),
            );
        }
        markers.push(
            WritableTxnMarkerResult::default()
                .with_producer_id(marker.producer_id)
                .with_topics(topics),
        );
    }
    WriteTxnMarkersResponse::default().with_markers(markers)
}

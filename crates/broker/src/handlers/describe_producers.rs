//! DescribeProducers (v0): the producers a partition leader remembers (idempotent and
//! transactional: id, epoch, last sequence and timestamp, last marker's coordinator epoch, the
//! open transaction's first offset), what `kafka-transactions describe-producers` and
//! `find-hanging` read. Answered by the partition's leader from its log's producer state;
//! other brokers answer NOT_LEADER_OR_FOLLOWER, unknown partitions
//! UNKNOWN_TOPIC_OR_PARTITION, as Kafka's `ReplicaManager.activeProducerState`.

use std::sync::Arc;

use kafka_protocol::messages::describe_producers_response::{
    PartitionResponse, ProducerState, TopicResponse,
};
use kafka_protocol::messages::{DescribeProducersRequest, DescribeProducersResponse, ProducerId};

use super::{code, str_bytes};
use crate::broker::Broker;
use crate::leadership;

pub fn handle(
    broker: &Arc<Broker>,
    request: DescribeProducersRequest,
) -> DescribeProducersResponse {
    let image = broker.metadata.image();
    let node_id = broker.config.node_id;
    let topics = request
        .topics
        .into_iter()
        .map(|t| {
            let topic = image.topic_by_name(&t.name.0);
            let partitions = t
                .partition_indexes
                .iter()
                .map(|&index| {
                    let r = PartitionResponse::default().with_partition_index(index);
                    let Some(topic) =
                        topic.filter(|x| image.partition(x.topic_id, index).is_some())
                    else {
                        return r.with_error_code(code::UNKNOWN_TOPIC_OR_PARTITION);
                    };
                    if let Err(refusal) =
                        leadership::check(&image, node_id, topic.topic_id, index, None)
                    {
                        return r
                            .with_error_code(refusal.error_code())
                            .with_error_message(Some(str_bytes(refusal.message(node_id))));
                    }
                    let Some(partition) = broker.partitions.get(topic.topic_id, index) else {
                        return r.with_error_code(code::KAFKA_STORAGE_ERROR);
                    };
                    let producers = partition
                        .log
                        .producers()
                        .into_iter()
                        .map(|p| {
                            ProducerState::default()
                                .with_producer_id(ProducerId(p.producer_id))
                                .with_producer_epoch(i32::from(p.producer_epoch))
                                .with_last_sequence(p.last_sequence)
                                .with_last_timestamp(p.last_timestamp)
                                .with_coordinator_epoch(p.coordinator_epoch)
                                .with_current_txn_start_offset(p.current_txn_start_offset)
                        })
                        .collect();
                    r.with_error_code(code::NONE)
                        .with_active_producers(producers)
                })
                .collect();
            TopicResponse::default()
                .with_name(t.name)
                .with_partitions(partitions)
        })
        .collect();
    DescribeProducersResponse::default().with_topics(topics)
}

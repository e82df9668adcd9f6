//! AddPartitionsToTxn (v0-3 from producers; v4-5 batched, from partition leaders verifying a
//! transactional produce, KIP-890): handed to the transaction coordinator.
//!
//! Owns: the one check Kafka's request handler makes before the coordinator, which has no
//! metadata view: partitions whose topic or partition the image does not hold are named in
//! the request context (the coordinator answers them UNKNOWN_TOPIC_OR_PARTITION and the rest
//! OPERATION_NOT_ATTEMPTED). Every rule of the transaction lives in `josefine_txn`.

use std::collections::BTreeSet;
use std::sync::Arc;

use josefine_txn::{TopicPartition, TxnRequest, TxnResponse};
use kafka_protocol::messages::add_partitions_to_txn_request::AddPartitionsToTxnTopic;
use kafka_protocol::messages::{AddPartitionsToTxnRequest, AddPartitionsToTxnResponse};

use crate::broker::Broker;

/// The coordinator's answer; `None` when it is shutting down (the connection closes).
pub async fn handle(
    broker: &Arc<Broker>,
    version: i16,
    request: AddPartitionsToTxnRequest,
) -> Option<AddPartitionsToTxnResponse> {
    let image = broker.metadata.image();
    let topics: Vec<&AddPartitionsToTxnTopic> = if version < 4 {
        request.v3_and_below_topics.iter().collect()
    } else {
        request
            .transactions
            .iter()
            .flat_map(|t| &t.topics)
            .collect()
    };
    let mut unknown = BTreeSet::new();
    for t in topics {
        let topic = image.topic_by_name(&t.name.0);
        for &p in &t.partitions {
            if topic.is_none_or(|topic| image.partition(topic.topic_id, p).is_none()) {
                unknown.insert(TopicPartition::new(t.name.0.to_string(), p));
            }
        }
    }
    let request = TxnRequest::AddPartitionsToTxn(request);
    match broker.txn().call(version, unknown, request).await? {
        TxnResponse::AddPartitionsToTxn(r) => Some(r),
        other => unreachable!("AddPartitionsToTxn answered with {other:?}"),
    }
}

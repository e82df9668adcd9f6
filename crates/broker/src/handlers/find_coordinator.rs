//! FindCoordinator: which broker coordinates a group (key type 0) or a transactional id (key
//! type 1); v0-3 carry one key, v4+ a batch in `coordinator_keys`.
//!
//! The coordinator is the leader of the key's partition of `__consumer_offsets` (groups) or
//! `__transaction_state` (transactional ids) in the image, with the endpoint of its
//! registration; when nobody leads it (or the leader is not a live broker) the answer is
//! COORDINATOR_NOT_AVAILABLE with Kafka's no-node (as Kafka's `KafkaApis.getCoordinator`). The
//! topic is created on the first lookup of its kind, as Kafka does.

use std::sync::Arc;

use kafka_protocol::messages::find_coordinator_response::Coordinator;
use kafka_protocol::messages::{BrokerId, FindCoordinatorRequest, FindCoordinatorResponse};
use kafka_protocol::protocol::StrBytes;

use super::{code, str_bytes};
use crate::broker::Broker;
use crate::groups::OFFSETS_TOPIC;
use crate::leadership;
use crate::txn::TRANSACTION_STATE_TOPIC;

/// FindCoordinator key types (Kafka's `CoordinatorType`).
const KEY_TYPE_GROUP: i8 = 0;
const KEY_TYPE_TRANSACTION: i8 = 1;

pub async fn handle(
    broker: &Arc<Broker>,
    version: i16,
    request: FindCoordinatorRequest,
) -> FindCoordinatorResponse {
    // v0 has no key type: always a group.
    let key_type = if version == 0 {
        KEY_TYPE_GROUP
    } else {
        request.key_type
    };
    let keys = if version >= 4 {
        request.coordinator_keys
    } else {
        vec![request.key]
    };
    // One topic check for the whole batch.
    let topic = match key_type {
        _ if keys.is_empty() => None,
        KEY_TYPE_GROUP => Some(broker.groups().ensure_offsets_topic(broker).await),
        KEY_TYPE_TRANSACTION => Some(broker.txn().ensure_state_topic(broker).await),
        _ => None,
    };
    let coordinators: Vec<Coordinator> = keys
        .into_iter()
        .map(|key| match &topic {
            None => failed(
                key,
                code::INVALID_REQUEST,
                format!("unknown coordinator type {key_type}"),
            ),
            Some(Err(e)) => failed(key, code::COORDINATOR_NOT_AVAILABLE, e.clone()),
            Some(Ok(())) if key_type == KEY_TYPE_GROUP => {
                let partition =
                    josefine_group::partition_for(&key, broker.groups().offsets_partitions());
                coordinator(broker, OFFSETS_TOPIC, partition, key)
            }
            Some(Ok(())) => {
                let partition =
                    josefine_group::partition_for(&key, broker.txn().state_partitions());
                coordinator(broker, TRANSACTION_STATE_TOPIC, partition, key)
            }
        })
        .collect();
    if version >= 4 {
        return FindCoordinatorResponse::default().with_coordinators(coordinators);
    }
    let c = coordinators.into_iter().next().expect("one key below v4");
    FindCoordinatorResponse::default()
        .with_error_code(c.error_code)
        // v0 has no error message field.
        .with_error_message(c.error_message.filter(|_| version >= 1))
        .with_node_id(c.node_id)
        .with_host(c.host)
        .with_port(c.port)
}

/// The leader of partition `partition` of the coordinator topic `topic`, from the metadata
/// image.
fn coordinator(broker: &Broker, topic: &str, partition: i32, key: StrBytes) -> Coordinator {
    let image = broker.metadata.image();
    let leader = image.topic_by_name(topic).and_then(|t| {
        let led = leadership::leader_of(&image, t.topic_id, partition);
        leadership::live_broker(&image, led.leader_id)
    });
    let leader = leader.and_then(|b| Some((b.node_id, crate::security::client_endpoint(b)?)));
    match leader {
        Some((node_id, (host, port))) => Coordinator::default()
            .with_key(key)
            .with_node_id(BrokerId(node_id))
            .with_host(str_bytes(host))
            .with_port(port)
            .with_error_code(code::NONE),
        None => failed(
            key,
            code::COORDINATOR_NOT_AVAILABLE,
            "The coordinator is not available.".into(),
        ),
    }
}

fn failed(key: StrBytes, error: i16, message: String) -> Coordinator {
    // Kafka's Node.noNode(): id -1, empty host, port -1.
    Coordinator::default()
        .with_key(key)
        .with_node_id(BrokerId(-1))
        .with_host(StrBytes::new())
        .with_port(-1)
        .with_error_code(error)
        .with_error_message(Some(str_bytes(message)))
}

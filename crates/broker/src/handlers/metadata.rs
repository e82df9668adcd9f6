//! Metadata: brokers, cluster id, controller, and topics with their partitions; auto-creates
//! unknown topics when `auto.create.topics.enable` and the request allow it.
//!
//! Auto-creation goes through the metadata store like CreateTopics (the command carries the
//! topic id and assignment chosen here), and the topic is returned in the same response: our
//! apply is synchronous, so there is no LEADER_NOT_AVAILABLE window as in Kafka.

use std::sync::Arc;

use josefine_meta::{validate_topic_name, Image, MetaError, Topic};
use kafka_protocol::messages::metadata_response::{
    MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
};
use kafka_protocol::messages::{BrokerId, MetadataRequest, MetadataResponse};
use tracing::info;
use uuid::Uuid;

use super::{
    authorized_operations, code, is_internal_topic, str_bytes, topic_id_of, topic_name, uuid_of,
    CLUSTER_OPERATIONS, TOPIC_OPERATIONS,
};
use crate::broker::Broker;
use crate::handlers::create_topics::{assign_partitions, new_topic_id};
use crate::limits;

fn topic_entry(topic: &Topic) -> MetadataResponseTopic {
    let partitions = topic
        .partitions
        .iter()
        .map(|p| {
            let replicas: Vec<BrokerId> = p.replicas.iter().map(|r| BrokerId(*r)).collect();
            MetadataResponsePartition::default()
                .with_error_code(code::NONE)
                .with_partition_index(p.partition)
                .with_leader_id(BrokerId(p.replicas[0]))
                .with_leader_epoch(0)
                .with_isr_nodes(replicas.clone())
                .with_replica_nodes(replicas)
        })
        .collect();
    MetadataResponseTopic::default()
        .with_error_code(code::NONE)
        .with_name(Some(topic_name(&topic.name)))
        .with_topic_id(uuid_of(topic.topic_id))
        .with_is_internal(is_internal_topic(&topic.name))
        .with_partitions(partitions)
}

fn error_entry(name: Option<&str>, topic_id: Uuid, error: i16) -> MetadataResponseTopic {
    MetadataResponseTopic::default()
        .with_error_code(error)
        .with_name(name.map(topic_name))
        .with_topic_id(topic_id)
}

/// Creates `name` with the broker defaults, tolerating a concurrent creation of the same name.
async fn auto_create(broker: &Broker, name: &str) -> Result<(), MetaError> {
    let settings = &broker.config.broker;
    let image = broker.metadata.image();
    let partitions = assign_partitions(
        &image,
        settings.num_partitions,
        settings.default_replication_factor,
    )
    .map_err(MetaError::InvalidReplicaAssignment)?;
    let cmd = josefine_meta::Command::CreateTopic {
        topic_id: new_topic_id(&image),
        name: name.to_string(),
        partitions,
        configs: vec![],
    };
    match broker.metadata.propose(cmd).await {
        Ok(_) => {
            info!(topic = name, "auto-created topic");
            Ok(())
        }
        Err(MetaError::TopicAlreadyExists(_)) => Ok(()),
        Err(e) => Err(e),
    }
}

pub async fn handle(
    broker: &Arc<Broker>,
    version: i16,
    request: MetadataRequest,
) -> MetadataResponse {
    let mut image: Arc<Image> = broker.metadata.image();
    // v0: an empty list means all topics; v1+: null means all, empty means none.
    let all_topics = match &request.topics {
        None => true,
        Some(t) => t.is_empty() && version == 0,
    };
    let allow_auto_create =
        broker.config.broker.auto_create_topics_enable && request.allow_auto_topic_creation;
    let mut topics = Vec::new();
    if all_topics {
        topics.extend(image.topics.values().map(topic_entry));
    } else {
        let requested = request.topics.unwrap_or_default();
        for (i, t) in requested.iter().enumerate() {
            if i >= limits::TOPICS_PER_REQUEST_MAX {
                break;
            }
            let Some(name) = t.name.as_ref().map(|n| n.0.to_string()) else {
                // v10+: by topic id.
                let id = topic_id_of(t.topic_id);
                match image.topics.get(&id) {
                    Some(topic) => topics.push(topic_entry(topic)),
                    None => topics.push(error_entry(None, t.topic_id, code::UNKNOWN_TOPIC_ID)),
                }
                continue;
            };
            if let Some(topic) = image.topic_by_name(&name) {
                topics.push(topic_entry(topic));
                continue;
            }
            if validate_topic_name(&name).is_err() {
                topics.push(error_entry(
                    Some(&name),
                    Uuid::nil(),
                    code::INVALID_TOPIC_EXCEPTION,
                ));
                continue;
            }
            // Internal topics are created by their coordinator (FindCoordinator), never here.
            if !allow_auto_create || is_internal_topic(&name) {
                topics.push(error_entry(
                    Some(&name),
                    Uuid::nil(),
                    code::UNKNOWN_TOPIC_OR_PARTITION,
                ));
                continue;
            }
            match auto_create(broker, &name).await {
                Ok(()) => {
                    image = broker.metadata.image();
                    match image.topic_by_name(&name) {
                        Some(topic) => topics.push(topic_entry(topic)),
                        // Deleted again in between: report it as unknown.
                        None => topics.push(error_entry(
                            Some(&name),
                            Uuid::nil(),
                            code::UNKNOWN_TOPIC_OR_PARTITION,
                        )),
                    }
                }
                Err(e) => {
                    let error = match e.kafka_error_code() {
                        -1 => code::UNKNOWN_SERVER_ERROR,
                        c => c,
                    };
                    // Kafka answers an auto-creation it cannot do (e.g. replication factor above
                    // the live brokers) with the creation error on that topic.
                    let error = if error == 39 {
                        code::INVALID_REPLICATION_FACTOR
                    } else {
                        error
                    };
                    topics.push(error_entry(Some(&name), Uuid::nil(), error));
                }
            }
        }
    }
    if version < 1 {
        // v0 has no is_internal field (non-default values cannot be encoded).
        for t in &mut topics {
            t.is_internal = false;
        }
    }
    // Without an authorizer Kafka grants every supported operation; it reports them when asked
    // (v8+; the cluster's only in v8-10). Unasked, the fields keep Kafka's i32::MIN default.
    if request.include_topic_authorized_operations {
        let ops = authorized_operations(TOPIC_OPERATIONS);
        for t in topics.iter_mut().filter(|t| t.error_code == code::NONE) {
            t.topic_authorized_operations = ops;
        }
    }
    let cluster_authorized_operations = if request.include_cluster_authorized_operations {
        authorized_operations(CLUSTER_OPERATIONS)
    } else {
        i32::MIN
    };
    let brokers = image
        .brokers
        .values()
        .map(|b| {
            MetadataResponseBroker::default()
                .with_node_id(BrokerId(b.node_id))
                .with_host(str_bytes(b.host.clone()))
                .with_port(b.port)
                .with_rack(b.rack.clone().map(str_bytes))
        })
        .collect();
    MetadataResponse::default()
        .with_brokers(brokers)
        .with_cluster_id(image.cluster_id.clone().map(str_bytes))
        .with_controller_id(BrokerId(broker.config.node_id))
        .with_cluster_authorized_operations(cluster_authorized_operations)
        .with_topics(topics)
}

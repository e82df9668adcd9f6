//! Metadata: brokers, cluster id, controller, and topics with their partitions; auto-creates
//! unknown topics when `auto.create.topics.enable` and the request allow it.
//!
//! Everything comes from the applied image through [`leadership`], as Kafka's
//! `KRaftMetadataCache.getTopicMetadata`: `brokers` lists live (unfenced) brokers with their
//! racks; each partition reports the image's leader and leader epoch, replicas, ISR, and as
//! `offline_replicas` the replicas that are fenced or unregistered; a partition nobody leads
//! answers LEADER_NOT_AVAILABLE with leader -1 (and still its epoch, replicas and ISR). v0,
//! which has no offline replicas, lists only live replicas and ISR members and answers
//! REPLICA_NOT_AVAILABLE when it left one out. `controller_id` is [`leadership::controller_id`].
//!
//! Topics the caller may not DESCRIBE (`crate::authz`) are left out of all-topics answers and
//! answered TOPIC_AUTHORIZATION_FAILED when named, whether they exist or not; auto-creation
//! also needs CREATE on the cluster or the topic.
//!
//! Auto-creation is [`auto_create_topic`], the one place this handler changes metadata; the
//! topic is returned in the same response once the local image holds it, so there is no
//! LEADER_NOT_AVAILABLE window as in Kafka. Must never: report a leader, epoch, replica or ISR
//! member the image does not hold.

use std::sync::Arc;

use josefine_meta::{validate_topic_name, Image, PartitionAssignment, Topic};
use kafka_protocol::messages::metadata_response::{
    MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
};
use kafka_protocol::messages::{BrokerId, MetadataRequest, MetadataResponse};
use tracing::info;
use uuid::Uuid;

use josefine_meta::acl::{Operation, ResourceType, CLUSTER_RESOURCE_NAME};

use super::{code, is_internal_topic, str_bytes, topic_id_of, topic_name, uuid_of};
use crate::authz::Authz;
use crate::broker::Broker;
use crate::controller::forward;
use crate::leadership;
use crate::limits;

fn partition_entry(
    image: &Image,
    p: &PartitionAssignment,
    version: i16,
) -> MetadataResponsePartition {
    let ids = |ids: &[i32]| -> Vec<BrokerId> {
        ids.iter()
            .copied()
            .filter(|id| version > 0 || leadership::live_broker(image, *id).is_some())
            .map(BrokerId)
            .collect()
    };
    let (replicas, isr) = (ids(&p.replicas), ids(&p.isr));
    let leader = leadership::live_broker(image, p.leader).map(|b| b.node_id);
    let error = if leader.is_none() {
        code::LEADER_NOT_AVAILABLE
    } else if replicas.len() < p.replicas.len() || isr.len() < p.isr.len() {
        code::REPLICA_NOT_AVAILABLE
    } else {
        code::NONE
    };
    MetadataResponsePartition::default()
        .with_error_code(error)
        .with_partition_index(p.partition)
        .with_leader_id(BrokerId(leader.unwrap_or(PartitionAssignment::NO_LEADER)))
        .with_leader_epoch(p.leader_epoch)
        .with_replica_nodes(replicas)
        .with_isr_nodes(isr)
        .with_offline_replicas(
            leadership::offline_replicas(image, p)
                .into_iter()
                .map(BrokerId)
                .collect(),
        )
}

fn topic_entry(image: &Image, topic: &Topic, version: i16) -> MetadataResponseTopic {
    let partitions = topic
        .partitions
        .iter()
        .map(|p| partition_entry(image, p, version))
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

/// Auto-creates `name` with the broker defaults (a concurrent creation of the same name counts
/// as success) and returns an image that holds it, or the topic error code to answer. The one
/// place Metadata changes metadata: it proposes locally today; in a cluster it goes to the
/// controller, and the image returned must then be one that has applied the creation.
async fn auto_create_topic(broker: &Arc<Broker>, name: &str) -> Result<Arc<Image>, i16> {
    let settings = &broker.config.broker;
    match forward::create_topic(
        broker,
        name,
        settings.num_partitions,
        settings.default_replication_factor,
        vec![],
    )
    .await
    {
        Ok(()) => {
            info!(topic = name, "auto-created topic");
            Ok(broker.metadata.image())
        }
        // Kafka answers an auto-creation it cannot place (e.g. replication factor above the
        // live brokers) with INVALID_REPLICATION_FACTOR on that topic.
        Err((code::INVALID_REPLICA_ASSIGNMENT, _)) => Err(code::INVALID_REPLICATION_FACTOR),
        Err((c, _)) => Err(c),
    }
}

pub async fn handle(
    broker: &Arc<Broker>,
    version: i16,
    request: MetadataRequest,
) -> MetadataResponse {
    let mut image: Arc<Image> = broker.metadata.image();
    let authz = Authz::of(broker);
    let may_describe = |name: &str| authz.allows(Operation::Describe, ResourceType::Topic, name);
    // v0: an empty list means all topics; v1+: null means all, empty means none.
    let all_topics = match &request.topics {
        None => true,
        Some(t) => t.is_empty() && version == 0,
    };
    let allow_auto_create =
        broker.config.broker.auto_create_topics_enable && request.allow_auto_topic_creation;
    let mut topics = Vec::new();
    if all_topics {
        topics.extend(
            image
                .topics
                .values()
                .filter(|topic| may_describe(&topic.name))
                .map(|topic| topic_entry(&image, topic, version)),
        );
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
                    Some(topic) if !may_describe(&topic.name) => topics.push(error_entry(
                        None,
                        t.topic_id,
                        code::TOPIC_AUTHORIZATION_FAILED,
                    )),
                    Some(topic) => topics.push(topic_entry(&image, topic, version)),
                    None => topics.push(error_entry(None, t.topic_id, code::UNKNOWN_TOPIC_ID)),
                }
                continue;
            };
            // Unauthorized whether it exists or not: the answer must not tell.
            if !may_describe(&name) {
                topics.push(error_entry(
                    Some(&name),
                    Uuid::nil(),
                    code::TOPIC_AUTHORIZATION_FAILED,
                ));
                continue;
            }
            if let Some(topic) = image.topic_by_name(&name) {
                topics.push(topic_entry(&image, topic, version));
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
            if !authz.allows_cluster(Operation::Create)
                && !authz.allows(Operation::Create, ResourceType::Topic, &name)
            {
                topics.push(error_entry(
                    Some(&name),
                    Uuid::nil(),
                    code::TOPIC_AUTHORIZATION_FAILED,
                ));
                continue;
            }
            match auto_create_topic(broker, &name).await {
                Ok(created) => {
                    image = created;
                    match image.topic_by_name(&name) {
                        Some(topic) => topics.push(topic_entry(&image, topic, version)),
                        // Deleted again in between: report it as unknown.
                        None => topics.push(error_entry(
                            Some(&name),
                            Uuid::nil(),
                            code::UNKNOWN_TOPIC_OR_PARTITION,
                        )),
                    }
                }
                Err(error) => topics.push(error_entry(Some(&name), Uuid::nil(), error)),
            }
        }
    }
    if version < 1 {
        // v0 has no is_internal field (non-default values cannot be encoded).
        for t in &mut topics {
            t.is_internal = false;
        }
    }
    // The caller's allowed operations, when asked (v8+; the cluster's only in v8-10). Unasked,
    // the fields keep Kafka's i32::MIN default.
    if request.include_topic_authorized_operations {
        for t in topics.iter_mut().filter(|t| t.error_code == code::NONE) {
            let name = t.name.as_ref().map_or("", |n| n.0.as_str());
            t.topic_authorized_operations = authz.authorized_operations(ResourceType::Topic, name);
        }
    }
    let cluster_authorized_operations = if request.include_cluster_authorized_operations {
        authz.authorized_operations(ResourceType::Cluster, CLUSTER_RESOURCE_NAME)
    } else {
        i32::MIN
    };
    let brokers = leadership::live_brokers(&image)
        .filter_map(|b| {
            let (host, port) = crate::security::client_endpoint(b)?;
            Some(
                MetadataResponseBroker::default()
                    .with_node_id(BrokerId(b.node_id))
                    .with_host(str_bytes(host))
                    .with_port(port)
                    .with_rack(b.rack.clone().map(str_bytes)),
            )
        })
        .collect();
    MetadataResponse::default()
        .with_brokers(brokers)
        .with_cluster_id(image.cluster_id.clone().map(str_bytes))
        .with_controller_id(BrokerId(leadership::controller_id(
            &image,
            broker.controller_hint(),
        )))
        .with_cluster_authorized_operations(cluster_authorized_operations)
        .with_topics(topics)
}

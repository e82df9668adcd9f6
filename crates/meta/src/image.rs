//! The metadata image: the current cluster metadata, and the pure state machine over it.
//!
//! Owns: validation and application of [`Command`]s. `validate` checks a command against the
//! current image (run by the proposer before proposing, and again by `apply`, because another
//! command may have been applied in between). `apply` either changes the image and returns what
//! happened, or returns an error and leaves the image untouched: a command that fails on apply is
//! a no-op on every node alike, so replicas stay identical.
//! Must never: do I/O or read time or randomness (deterministic replay).

use std::collections::BTreeMap;

use crate::command::{Command, PartitionAssignment, TopicId};
use crate::topic_config::validate_topic_configs;
use crate::{validate_topic_name, MetaError};

/// Most producer ids one block may hold.
pub const PRODUCER_ID_BLOCK_COUNT_MAX: i64 = 1_000_000;

/// Most partitions one topic may have (bounds the work of one command).
pub const PARTITIONS_PER_TOPIC_MAX: usize = 10_000;

/// A registered broker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerRegistration {
    pub node_id: i32,
    pub host: String,
    pub port: i32,
    pub rack: Option<String>,
}

/// A topic in the image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Topic {
    pub topic_id: TopicId,
    pub name: String,
    pub partitions: Vec<PartitionAssignment>,
    pub configs: BTreeMap<String, String>,
}

/// What applying a command did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Applied {
    ClusterInitialized {
        cluster_id: String,
    },
    BrokerRegistered {
        node_id: i32,
    },
    TopicCreated {
        topic: Topic,
    },
    TopicDeleted {
        topic: Topic,
    },
    ProducerIdsAllocated {
        broker_id: i32,
        first_id: i64,
        count: i64,
    },
}

/// The current metadata.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Image {
    pub cluster_id: Option<String>,
    pub brokers: BTreeMap<i32, BrokerRegistration>,
    pub topics: BTreeMap<TopicId, Topic>,
    pub topic_ids_by_name: BTreeMap<String, TopicId>,
    /// The next producer id not yet handed out in any block.
    pub next_producer_id: i64,
    /// Commands applied so far (successful or not): the image's position in the command stream.
    pub applied_count: u64,
}

impl Image {
    /// The topic with this name, if any.
    pub fn topic_by_name(&self, name: &str) -> Option<&Topic> {
        self.topic_ids_by_name
            .get(name)
            .and_then(|id| self.topics.get(id))
    }

    /// Checks `cmd` against this image without changing it.
    pub fn validate(&self, cmd: &Command) -> Result<(), MetaError> {
        match cmd {
            Command::InitCluster { cluster_id } => {
                if let Some(existing) = &self.cluster_id {
                    return Err(MetaError::ClusterIdAlreadySet(existing.clone()));
                }
                if cluster_id.is_empty() || cluster_id.len() > 64 {
                    return Err(MetaError::Decode("cluster id must be 1 to 64 bytes".into()));
                }
                Ok(())
            }
            Command::RegisterBroker {
                node_id,
                host,
                port,
                ..
            } => {
                if *node_id < 0 {
                    return Err(MetaError::InvalidBrokerRegistration(format!(
                        "negative node id {node_id}"
                    )));
                }
                if host.is_empty() || !(0..=65535).contains(port) {
                    return Err(MetaError::InvalidBrokerRegistration(format!(
                        "bad endpoint {host}:{port}"
                    )));
                }
                Ok(())
            }
            Command::CreateTopic {
                topic_id,
                name,
                partitions,
                configs,
            } => {
                validate_topic_name(name)?;
                if *topic_id == TopicId::ZERO {
                    return Err(MetaError::InvalidPartitions(
                        "topic id must not be zero".into(),
                    ));
                }
                if self.topic_ids_by_name.contains_key(name) {
                    return Err(MetaError::TopicAlreadyExists(name.clone()));
                }
                if self.topics.contains_key(topic_id) {
                    return Err(MetaError::TopicIdAlreadyExists(*topic_id));
                }
                if partitions.is_empty() || partitions.len() > PARTITIONS_PER_TOPIC_MAX {
                    return Err(MetaError::InvalidPartitions(format!(
                        "a topic needs 1 to {PARTITIONS_PER_TOPIC_MAX} partitions, got {}",
                        partitions.len()
                    )));
                }
                for (i, p) in partitions.iter().enumerate() {
                    if p.partition != i as i32 {
                        return Err(MetaError::InvalidPartitions(format!(
                            "partitions must be numbered 0..{} in order",
                            partitions.len()
                        )));
                    }
                    if p.replicas.is_empty() {
                        return Err(MetaError::InvalidReplicaAssignment(format!(
                            "partition {i} has no replicas"
                        )));
                    }
                    for (j, r) in p.replicas.iter().enumerate() {
                        if p.replicas[..j].contains(r) {
                            return Err(MetaError::InvalidReplicaAssignment(format!(
                                "partition {i} lists broker {r} twice"
                            )));
                        }
                        if !self.brokers.contains_key(r) {
                            return Err(MetaError::InvalidReplicaAssignment(format!(
                                "partition {i} is assigned to unknown broker {r}"
                            )));
                        }
                    }
                }
                validate_topic_configs(configs.iter().map(|(k, v)| (k.as_str(), v.as_str())))
                    .map_err(MetaError::InvalidConfig)?;
                Ok(())
            }
            Command::DeleteTopic { topic_id } => {
                if !self.topics.contains_key(topic_id) {
                    return Err(MetaError::UnknownTopicId(*topic_id));
                }
                Ok(())
            }
            Command::AllocateProducerIds {
                broker_id,
                first_id,
                count,
            } => {
                if !self.brokers.contains_key(broker_id) {
                    return Err(MetaError::InvalidProducerIdBlock(format!(
                        "unknown broker {broker_id}"
                    )));
                }
                if *first_id != self.next_producer_id {
                    return Err(MetaError::InvalidProducerIdBlock(format!(
                        "block must start at {}, not {first_id}",
                        self.next_producer_id
                    )));
                }
                if *count < 1
                    || *count > PRODUCER_ID_BLOCK_COUNT_MAX
                    || first_id.checked_add(*count).is_none()
                {
                    return Err(MetaError::InvalidProducerIdBlock(format!(
                        "bad block size {count}"
                    )));
                }
                Ok(())
            }
        }
    }

    /// Validates and applies `cmd`. On error the image is unchanged except `applied_count`.
    pub fn apply(&mut self, cmd: &Command) -> Result<Applied, MetaError> {
        self.applied_count += 1;
        self.validate(cmd)?;
        Ok(match cmd {
            Command::InitCluster { cluster_id } => {
                self.cluster_id = Some(cluster_id.clone());
                Applied::ClusterInitialized {
                    cluster_id: cluster_id.clone(),
                }
            }
            Command::RegisterBroker {
                node_id,
                host,
                port,
                rack,
            } => {
                self.brokers.insert(
                    *node_id,
                    BrokerRegistration {
                        node_id: *node_id,
                        host: host.clone(),
                        port: *port,
                        rack: rack.clone(),
                    },
                );
                Applied::BrokerRegistered { node_id: *node_id }
            }
            Command::CreateTopic {
                topic_id,
                name,
                partitions,
                configs,
            } => {
                let topic = Topic {
                    topic_id: *topic_id,
                    name: name.clone(),
                    partitions: partitions.clone(),
                    configs: configs.iter().cloned().collect(),
                };
                self.topic_ids_by_name.insert(name.clone(), *topic_id);
                self.topics.insert(*topic_id, topic.clone());
                Applied::TopicCreated { topic }
            }
            Command::DeleteTopic { topic_id } => {
                let topic = self
                    .topics
                    .remove(topic_id)
                    .expect("validated: topic exists");
                let removed = self.topic_ids_by_name.remove(&topic.name);
                assert_eq!(
                    removed,
                    Some(*topic_id),
                    "topic name index out of sync with topics"
                );
                Applied::TopicDeleted { topic }
            }
            Command::AllocateProducerIds {
                broker_id,
                first_id,
                count,
            } => {
                self.next_producer_id = first_id + count;
                Applied::ProducerIdsAllocated {
                    broker_id: *broker_id,
                    first_id: *first_id,
                    count: *count,
                }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_broker() -> Image {
        let mut image = Image::default();
        image
            .apply(&Command::RegisterBroker {
                node_id: 1,
                host: "localhost".into(),
                port: 9092,
                rack: None,
            })
            .unwrap();
        image
    }

    fn create(name: &str, id: u8, n: i32) -> Command {
        Command::CreateTopic {
            topic_id: TopicId([id; 16]),
            name: name.into(),
            partitions: (0..n)
                .map(|p| PartitionAssignment {
                    partition: p,
                    replicas: vec![1],
                })
                .collect(),
            configs: vec![],
        }
    }

    #[test]
    fn create_then_duplicate_name_or_id_is_rejected_without_change() {
        let mut image = with_broker();
        assert!(matches!(
            image.apply(&create("a", 1, 3)).unwrap(),
            Applied::TopicCreated { .. }
        ));
        let before = image.clone();
        assert!(matches!(
            image.apply(&create("a", 2, 1)),
            Err(MetaError::TopicAlreadyExists(_))
        ));
        assert!(matches!(
            image.apply(&create("b", 1, 1)),
            Err(MetaError::TopicIdAlreadyExists(_))
        ));
        assert_eq!(image.topics, before.topics);
        assert_eq!(image.topic_by_name("a").unwrap().partitions.len(), 3);
    }

    #[test]
    fn bad_topics_are_rejected() {
        let image = with_broker();
        assert!(matches!(
            image.validate(&create("a b", 1, 1)),
            Err(MetaError::InvalidTopicName { .. })
        ));
        assert!(matches!(
            image.validate(&create("a", 1, 0)),
            Err(MetaError::InvalidPartitions(_))
        ));
        assert!(matches!(
            image.validate(&create("a", 0, 1)),
            Err(MetaError::InvalidPartitions(_))
        ));
        let unknown_broker = Command::CreateTopic {
            topic_id: TopicId([1; 16]),
            name: "a".into(),
            partitions: vec![PartitionAssignment {
                partition: 0,
                replicas: vec![2],
            }],
            configs: vec![],
        };
        assert!(matches!(
            image.validate(&unknown_broker),
            Err(MetaError::InvalidReplicaAssignment(_))
        ));
        let bad_config = Command::CreateTopic {
            topic_id: TopicId([1; 16]),
            name: "a".into(),
            partitions: vec![PartitionAssignment {
                partition: 0,
                replicas: vec![1],
            }],
            configs: vec![("retention.mss".into(), "1".into())],
        };
        assert!(matches!(
            image.validate(&bad_config),
            Err(MetaError::InvalidConfig(_))
        ));
    }

    #[test]
    fn delete_removes_both_indexes() {
        let mut image = with_broker();
        image.apply(&create("a", 1, 1)).unwrap();
        image
            .apply(&Command::DeleteTopic {
                topic_id: TopicId([1; 16]),
            })
            .unwrap();
        assert!(image.topic_by_name("a").is_none());
        assert!(image.topics.is_empty());
        assert!(image
            .apply(&Command::DeleteTopic {
                topic_id: TopicId([1; 16])
            })
            .is_err());
        // The name is free again, under a new id.
        image.apply(&create("a", 2, 1)).unwrap();
    }

    #[test]
    fn producer_id_blocks_are_contiguous_and_never_overlap() {
        let mut image = with_broker();
        let alloc = |first_id, count| Command::AllocateProducerIds {
            broker_id: 1,
            first_id,
            count,
        };
        image.apply(&alloc(0, 1000)).unwrap();
        assert!(image.apply(&alloc(0, 1000)).is_err(), "overlapping block");
        assert!(image.apply(&alloc(2000, 1000)).is_err(), "gap");
        assert!(image.apply(&alloc(1000, 0)).is_err(), "empty block");
        image.apply(&alloc(1000, 5)).unwrap();
        assert_eq!(image.next_producer_id, 1005);
    }

    #[test]
    fn replay_is_deterministic() {
        let cmds = [
            Command::InitCluster {
                cluster_id: "c".into(),
            },
            Command::RegisterBroker {
                node_id: 1,
                host: "h".into(),
                port: 1,
                rack: None,
            },
            create("a", 1, 2),
            create("a", 2, 2), // fails identically everywhere
            Command::AllocateProducerIds {
                broker_id: 1,
                first_id: 0,
                count: 10,
            },
            Command::DeleteTopic {
                topic_id: TopicId([1; 16]),
            },
            create("b", 3, 1),
        ];
        let run = || {
            let mut image = Image::default();
            let results: Vec<bool> = cmds.iter().map(|c| image.apply(c).is_ok()).collect();
            (image, results)
        };
        let (a, ra) = run();
        let (b, rb) = run();
        assert_eq!(a, b);
        assert_eq!(ra, rb);
        assert_eq!(ra, vec![true, true, true, false, true, true, true]);
        assert_eq!(a.applied_count, 7);
    }
}

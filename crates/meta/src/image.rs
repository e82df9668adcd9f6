//! The metadata image: the current cluster metadata, and the pure state machine over it.
//!
//! Owns: validation and application of [`Command`]s. `validate` checks a command against the
//! current image (run by the proposer before proposing, and again by `apply`, because another
//! command may have been applied in between). `apply` either changes the image and returns what
//! happened, or returns an error and leaves the image untouched: a command that fails on apply is
//! a no-op on every node alike, so replicas stay identical.
//! Must never: do I/O or read time or randomness (deterministic replay).

use std::collections::BTreeMap;

use crate::broker_config::validate_dynamic_broker_config;
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
    /// A topic's config overrides changed; `topic` is the topic afterwards.
    TopicConfigsAltered {
        topic: Topic,
    },
    /// Dynamic broker configs of one broker (`Some`) or the cluster default (`None`) changed.
    BrokerConfigsAltered {
        broker_id: Option<i32>,
    },
    /// Partitions `first_new..` were added; `topic` is the topic afterwards.
    PartitionsCreated {
        topic: Topic,
        first_new: i32,
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
    /// Dynamic broker configs set as the cluster-wide default (Kafka resource name "").
    pub cluster_broker_configs: BTreeMap<String, String>,
    /// Dynamic broker configs per broker id.
    pub broker_configs: BTreeMap<i32, BTreeMap<String, String>>,
}

/// The config map `current` becomes under an alter: exactly `set` with `replace_all`, else
/// `current` minus `delete` plus `set`. Errors on a key given twice.
fn altered_configs(
    current: &BTreeMap<String, String>,
    replace_all: bool,
    set: &[(String, String)],
    delete: &[String],
) -> Result<BTreeMap<String, String>, MetaError> {
    let mut next = if replace_all {
        BTreeMap::new()
    } else {
        current.clone()
    };
    for k in delete {
        if set.iter().any(|(s, _)| s == k) {
            return Err(MetaError::InvalidConfig(format!(
                "config {k} is both set and deleted"
            )));
        }
        next.remove(k);
    }
    for (j, (k, v)) in set.iter().enumerate() {
        if set[..j].iter().any(|(k2, _)| k2 == k) {
            return Err(MetaError::InvalidConfig(format!(
                "Config {k} is given more than once"
            )));
        }
        next.insert(k.clone(), v.clone());
    }
    Ok(next)
}

impl Image {
    /// The topic with this name, if any.
    pub fn topic_by_name(&self, name: &str) -> Option<&Topic> {
        self.topic_ids_by_name
            .get(name)
            .and_then(|id| self.topics.get(id))
    }

    /// The dynamic broker configs of `broker_id` (`None`: the cluster default).
    pub fn dynamic_broker_configs(
        &self,
        broker_id: Option<i32>,
    ) -> Option<&BTreeMap<String, String>> {
        match broker_id {
            None => Some(&self.cluster_broker_configs),
            Some(id) => self.broker_configs.get(&id),
        }
    }

    fn check_assignment(&self, p: &PartitionAssignment) -> Result<(), MetaError> {
        let i = p.partition;
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
        Ok(())
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
                    self.check_assignment(p)?;
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
            Command::AlterTopicConfigs {
                topic_id,
                replace_all,
                set,
                delete,
            } => {
                let topic = self
                    .topics
                    .get(topic_id)
                    .ok_or(MetaError::UnknownTopicId(*topic_id))?;
                let next = altered_configs(&topic.configs, *replace_all, set, delete)?;
                validate_topic_configs(next.iter().map(|(k, v)| (k.as_str(), v.as_str())))
                    .map_err(MetaError::InvalidConfig)
            }
            Command::AlterBrokerConfigs {
                broker_id,
                replace_all,
                set,
                delete,
            } => {
                if broker_id.is_some_and(|id| id < 0) {
                    return Err(MetaError::InvalidConfig(format!(
                        "negative broker id {broker_id:?}"
                    )));
                }
                let empty = BTreeMap::new();
                let current = self.dynamic_broker_configs(*broker_id).unwrap_or(&empty);
                altered_configs(current, *replace_all, set, delete)?;
                for (k, v) in set {
                    validate_dynamic_broker_config(k, v).map_err(MetaError::InvalidConfig)?;
                }
                Ok(())
            }
            Command::CreatePartitions {
                topic_id,
                new_assignments,
            } => {
                let topic = self
                    .topics
                    .get(topic_id)
                    .ok_or(MetaError::UnknownTopicId(*topic_id))?;
                let current = topic.partitions.len();
                if new_assignments.is_empty() {
                    return Err(MetaError::InvalidPartitions(format!(
                        "Topic already has {current} partitions."
                    )));
                }
                if current + new_assignments.len() > PARTITIONS_PER_TOPIC_MAX {
                    return Err(MetaError::InvalidPartitions(format!(
                        "a topic may have at most {PARTITIONS_PER_TOPIC_MAX} partitions"
                    )));
                }
                let replication_factor = topic.partitions.first().map(|p| p.replicas.len());
                for (i, p) in new_assignments.iter().enumerate() {
                    if p.partition != (current + i) as i32 {
                        return Err(MetaError::InvalidPartitions(format!(
                            "new partitions must be numbered {current}..{} in order",
                            current + new_assignments.len()
                        )));
                    }
                    self.check_assignment(p)?;
                    if replication_factor.is_some_and(|rf| rf != p.replicas.len()) {
                        return Err(MetaError::InvalidReplicaAssignment(format!(
                            "Inconsistent replication factor between partitions, partition 0 has {} while partition {} has replicas {:?}",
                            replication_factor.unwrap_or(0),
                            p.partition,
                            p.replicas
                        )));
                    }
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
            Command::AlterTopicConfigs {
                topic_id,
                replace_all,
                set,
                delete,
            } => {
                let topic = self
                    .topics
                    .get_mut(topic_id)
                    .expect("validated: topic exists");
                topic.configs = altered_configs(&topic.configs, *replace_all, set, delete)
                    .expect("validated: configs alter cleanly");
                Applied::TopicConfigsAltered {
                    topic: topic.clone(),
                }
            }
            Command::AlterBrokerConfigs {
                broker_id,
                replace_all,
                set,
                delete,
            } => {
                let empty = BTreeMap::new();
                let current = self.dynamic_broker_configs(*broker_id).unwrap_or(&empty);
                let next = altered_configs(current, *replace_all, set, delete)
                    .expect("validated: configs alter cleanly");
                match broker_id {
                    None => self.cluster_broker_configs = next,
                    Some(id) if next.is_empty() => {
                        self.broker_configs.remove(id);
                    }
                    Some(id) => {
                        self.broker_configs.insert(*id, next);
                    }
                }
                Applied::BrokerConfigsAltered {
                    broker_id: *broker_id,
                }
            }
            Command::CreatePartitions {
                topic_id,
                new_assignments,
            } => {
                let topic = self
                    .topics
                    .get_mut(topic_id)
                    .expect("validated: topic exists");
                let first_new = topic.partitions.len() as i32;
                topic.partitions.extend(new_assignments.iter().cloned());
                Applied::PartitionsCreated {
                    topic: topic.clone(),
                    first_new,
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

    fn alter_topic(id: u8, replace_all: bool, set: &[(&str, &str)], delete: &[&str]) -> Command {
        Command::AlterTopicConfigs {
            topic_id: TopicId([id; 16]),
            replace_all,
            set: set
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            delete: delete.iter().map(|k| k.to_string()).collect(),
        }
    }

    #[test]
    fn topic_config_alters_set_delete_and_replace() {
        let mut image = with_broker();
        image.apply(&create("a", 1, 1)).unwrap();
        let configs = |image: &Image| image.topic_by_name("a").unwrap().configs.clone();
        image
            .apply(&alter_topic(
                1,
                false,
                &[("retention.ms", "5"), ("cleanup.policy", "compact")],
                &[],
            ))
            .unwrap();
        assert_eq!(configs(&image).len(), 2);
        image
            .apply(&alter_topic(1, false, &[], &["retention.ms", "segment.ms"]))
            .unwrap();
        assert_eq!(
            configs(&image).into_iter().collect::<Vec<_>>(),
            vec![("cleanup.policy".to_string(), "compact".to_string())]
        );
        // Full replacement drops what is not named (AlterConfigs semantics).
        image
            .apply(&alter_topic(1, true, &[("segment.ms", "9")], &[]))
            .unwrap();
        assert_eq!(
            configs(&image).keys().collect::<Vec<_>>(),
            vec!["segment.ms"]
        );
        let before = image.clone();
        for bad in [
            alter_topic(1, false, &[("retention.ms", "x")], &[]),
            alter_topic(1, false, &[("nope", "1")], &[]),
            alter_topic(
                1,
                false,
                &[("retention.ms", "1"), ("retention.ms", "2")],
                &[],
            ),
            alter_topic(1, false, &[("retention.ms", "1")], &["retention.ms"]),
            alter_topic(
                1,
                false,
                &[
                    ("min.compaction.lag.ms", "10"),
                    ("max.compaction.lag.ms", "5"),
                ],
                &[],
            ),
            alter_topic(9, false, &[("retention.ms", "1")], &[]),
        ] {
            assert!(image.apply(&bad).is_err(), "{bad:?}");
        }
        assert_eq!(image.topics, before.topics);
    }

    #[test]
    fn broker_config_alters_keep_cluster_default_and_per_broker_apart() {
        let mut image = with_broker();
        let alter =
            |broker_id, set: &[(&str, &str)], delete: &[&str]| Command::AlterBrokerConfigs {
                broker_id,
                replace_all: false,
                set: set
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
                delete: delete.iter().map(|k| k.to_string()).collect(),
            };
        image
            .apply(&alter(None, &[("log.retention.ms", "100")], &[]))
            .unwrap();
        image
            .apply(&alter(Some(1), &[("log.retention.ms", "200")], &[]))
            .unwrap();
        assert_eq!(image.cluster_broker_configs["log.retention.ms"], "100");
        assert_eq!(image.broker_configs[&1]["log.retention.ms"], "200");
        assert!(image
            .apply(&alter(None, &[("num.partitions", "3")], &[]))
            .is_err());
        assert!(image
            .apply(&alter(Some(1), &[("log.retention.ms", "soon")], &[]))
            .is_err());
        image
            .apply(&alter(Some(1), &[], &["log.retention.ms"]))
            .unwrap();
        assert!(
            image.broker_configs.is_empty(),
            "an emptied broker entry is dropped"
        );
        assert_eq!(image.cluster_broker_configs.len(), 1);
    }

    #[test]
    fn create_partitions_numbers_on_and_checks_assignments() {
        let mut image = with_broker();
        image.apply(&create("a", 1, 2)).unwrap();
        let add = |first: i32, replicas: Vec<Vec<i32>>| Command::CreatePartitions {
            topic_id: TopicId([1; 16]),
            new_assignments: replicas
                .into_iter()
                .enumerate()
                .map(|(i, replicas)| PartitionAssignment {
                    partition: first + i as i32,
                    replicas,
                })
                .collect(),
        };
        assert!(matches!(
            image.validate(&add(2, vec![])),
            Err(MetaError::InvalidPartitions(_))
        ));
        assert!(matches!(
            image.validate(&add(1, vec![vec![1]])),
            Err(MetaError::InvalidPartitions(_))
        ));
        assert!(matches!(
            image.validate(&add(2, vec![vec![2]])),
            Err(MetaError::InvalidReplicaAssignment(_))
        ));
        assert!(matches!(
            image.validate(&add(2, vec![vec![1, 1]])),
            Err(MetaError::InvalidReplicaAssignment(_))
        ));
        match image.apply(&add(2, vec![vec![1], vec![1]])).unwrap() {
            Applied::PartitionsCreated { topic, first_new } => {
                assert_eq!(first_new, 2);
                assert_eq!(topic.partitions.len(), 4);
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(image.topic_by_name("a").unwrap().partitions.len(), 4);
    }

    /// A small deterministic generator, so the test needs no extra crate and replays exactly.
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }
        fn below(&mut self, n: u64) -> u64 {
            self.next() % n
        }
    }

    fn random_command(rng: &mut Rng) -> Command {
        let keys = [
            "retention.ms",
            "cleanup.policy",
            "segment.ms",
            "bogus",
            "min.cleanable.dirty.ratio",
        ];
        let values = ["1", "compact", "delete,compact", "-5", "0.5", "x"];
        let pairs = |rng: &mut Rng, keys: &[&str]| -> Vec<(String, String)> {
            (0..rng.below(3))
                .map(|_| {
                    (
                        keys[rng.below(keys.len() as u64) as usize].to_string(),
                        values[rng.below(values.len() as u64) as usize].to_string(),
                    )
                })
                .collect()
        };
        let id = TopicId([1 + rng.below(3) as u8; 16]);
        match rng.below(6) {
            0 => create(
                &format!("t{}", rng.below(3)),
                1 + rng.below(3) as u8,
                1 + rng.below(3) as i32,
            ),
            1 => Command::DeleteTopic { topic_id: id },
            2 => Command::AlterTopicConfigs {
                topic_id: id,
                replace_all: rng.below(2) == 0,
                set: pairs(rng, &keys),
                delete: vec![keys[rng.below(keys.len() as u64) as usize].to_string()],
            },
            3 => Command::AlterBrokerConfigs {
                broker_id: [None, Some(1), Some(2)][rng.below(3) as usize],
                replace_all: rng.below(2) == 0,
                set: pairs(
                    rng,
                    &["log.retention.ms", "log.cleanup.policy", "num.partitions"],
                ),
                delete: vec![],
            },
            4 => Command::CreatePartitions {
                topic_id: id,
                new_assignments: (0..rng.below(3))
                    .map(|i| PartitionAssignment {
                        partition: 1 + i as i32 + rng.below(2) as i32,
                        replicas: vec![1 + rng.below(2) as i32],
                    })
                    .collect(),
            },
            _ => Command::AllocateProducerIds {
                broker_id: 1,
                first_id: rng.below(3) as i64 * 10,
                count: 10,
            },
        }
    }

    /// Property: any command sequence round-trips through its encoding, replays to the same
    /// image, and a failed command leaves the image (except the count) as it was.
    #[test]
    fn random_command_streams_round_trip_and_replay_identically() {
        let mut applied_kinds = std::collections::HashSet::new();
        for seed in 1..200u64 {
            let mut rng = Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
            let cmds: Vec<Command> = (0..40).map(|_| random_command(&mut rng)).collect();
            let run = |cmds: &[Command]| {
                let mut image = with_broker();
                let mut results = Vec::new();
                for c in cmds {
                    let before = image.clone();
                    let r = image.apply(c);
                    if r.is_err() {
                        let mut expected = before;
                        expected.applied_count += 1;
                        assert_eq!(
                            image, expected,
                            "seed {seed}: failed {c:?} changed the image"
                        );
                    }
                    results.push(r);
                }
                (image, results)
            };
            let decoded: Vec<Command> = cmds
                .iter()
                .map(|c| Command::decode(&c.encode()).expect("round trip"))
                .collect();
            assert_eq!(decoded, cmds, "seed {seed}");
            let (a, ra) = run(&cmds);
            let (b, rb) = run(&decoded);
            assert_eq!(a, b, "seed {seed}");
            assert_eq!(format!("{ra:?}"), format!("{rb:?}"), "seed {seed}");
            for r in ra.iter().flatten() {
                applied_kinds.insert(std::mem::discriminant(r));
            }
            for t in a.topics.values() {
                for (i, p) in t.partitions.iter().enumerate() {
                    assert_eq!(p.partition, i as i32, "seed {seed}: partitions stay dense");
                }
                validate_topic_configs(t.configs.iter().map(|(k, v)| (k.as_str(), v.as_str())))
                    .expect("only valid configs are ever applied");
            }
        }
        // The generator reaches every successful outcome (create, delete, both alters,
        // partitions, producer ids), so the properties above were exercised on each.
        assert_eq!(applied_kinds.len(), 6, "{applied_kinds:?}");
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

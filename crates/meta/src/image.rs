//! The metadata image: the current cluster metadata, and the pure state machine over it.
//!
//! Owns: validation and application of [`Command`]s, and the image invariants they keep.
//! `validate` checks a command against the current image (run by the proposer before proposing,
//! and again by `apply`, because another command may have been applied in between). `apply`
//! either changes the image and returns what happened, or returns an error and leaves the image
//! untouched: a command that fails on apply is a no-op on every node alike, so replicas stay
//! identical. A [`Command::Batch`] is applied to a scratch copy, command by command, and the
//! invariants are checked on what it touched at the end, so a batch may pass through states a
//! lone command may not (fence a broker, then move its leaderships) but never ends in one.
//! Invariants: a partition's ISR is a non-empty subset of its replicas without repeats; its
//! leader is `NO_LEADER` or an ISR member that is registered, unfenced and not shutting down;
//! no fenced or shutting-down broker joins an ISR (KIP-841); epochs only grow.
//! The image position is the chain height of the last block applied: the store calls
//! [`Image::advance_to`] before [`Image::apply`], and a registration takes it as broker epoch.
//! Must never: do I/O or read time or randomness (deterministic replay).

use std::collections::{BTreeMap, BTreeSet};

use crate::acl::{validate_new_acl, Acl, AclId, AclIndex, ACLS_PER_COMMAND_MAX};
use crate::broker_config::validate_dynamic_broker_config_at;
use crate::command::{
    Command, ListenerEndpoint, PartitionAssignment, TopicId, BATCH_COMMANDS_MAX,
    BROKER_LISTENERS_MAX,
};
use crate::group_config::validate_group_configs;
use crate::scram::ScramIndex;
use crate::topic_config::validate_topic_configs;
use crate::{validate_topic_name, MetaError};

/// Longest group id a group config may name (Kafka has no limit; this bounds a command).
pub const GROUP_ID_BYTES_MAX: usize = 32 * 1024;

/// Most producer ids one block may hold.
pub const PRODUCER_ID_BLOCK_COUNT_MAX: i64 = 1_000_000;

/// Most partitions one topic may have (bounds the work of one command).
pub const PARTITIONS_PER_TOPIC_MAX: usize = 10_000;

/// A registered broker: one incarnation (process start) of a node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerRegistration {
    pub node_id: i32,
    /// Random per process start, chosen by the broker.
    pub incarnation_id: u128,
    pub host: String,
    pub port: i32,
    pub rack: Option<String>,
    /// The broker epoch: the image position at which this registration applied.
    pub epoch: i64,
    /// Fenced brokers neither lead nor join ISRs. A registration starts fenced.
    pub fenced: bool,
    /// Set by `BeginControlledShutdown`; the broker then neither leads nor joins ISRs.
    pub in_controlled_shutdown: bool,
    /// Every named listener, from `SetBrokerListeners` (empty for a registration made before
    /// named listeners: `host`/`port` is then its one PLAINTEXT endpoint).
    pub listeners: Vec<ListenerEndpoint>,
}

impl BrokerRegistration {
    /// The endpoint of listener `name` (upper case), if this broker has it. A registration
    /// without named listeners answers `host`/`port` for any name.
    pub fn endpoint(&self, name: &str) -> Option<(&str, i32)> {
        if self.listeners.is_empty() {
            return Some((&self.host, self.port));
        }
        self.listeners
            .iter()
            .find(|l| l.name == name)
            .map(|l| (l.host.as_str(), l.port))
    }

    /// May lead and join ISRs: unfenced and not shutting down.
    pub fn is_eligible(&self) -> bool {
        !self.fenced && !self.in_controlled_shutdown
    }
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
    /// A new registration, fenced, with broker epoch `epoch`.
    BrokerRegistered {
        node_id: i32,
        epoch: i64,
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
    /// The config overrides of a group changed (stored only: no protocol reads them yet).
    GroupConfigsAltered {
        group_id: String,
    },
    /// Partitions `first_new..` were added; `topic` is the topic afterwards.
    PartitionsCreated {
        topic: Topic,
        first_new: i32,
    },
    BrokerFenced {
        node_id: i32,
    },
    BrokerUnfenced {
        node_id: i32,
    },
    ControlledShutdownBegun {
        node_id: i32,
    },
    /// A partition's leader and/or ISR changed; read the result from the image.
    PartitionChanged {
        topic_id: TopicId,
        partition: i32,
    },
    /// What each command of a batch did, in order.
    Batch(Vec<Applied>),
    /// The ACLs stored (those not already present), by id.
    AclsCreated {
        ids: Vec<AclId>,
    },
    /// The ACLs removed, with what they were.
    AclsDeleted {
        acls: Vec<(AclId, Acl)>,
    },
    BrokerListenersSet {
        node_id: i32,
    },
    /// SCRAM credentials were stored or removed (read the result from the image).
    ScramCredentialsAltered {
        upserted: usize,
        deleted: usize,
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
    /// Chain height of the last block applied (Kafka's metadata offset). Only grows.
    pub position: u64,
    /// Dynamic broker configs set as the cluster-wide default (Kafka resource name "").
    pub cluster_broker_configs: BTreeMap<String, String>,
    /// Dynamic broker configs per broker id.
    pub broker_configs: BTreeMap<i32, BTreeMap<String, String>>,
    /// The access control lists ([`crate::acl`]).
    pub acls: AclIndex,
    /// Group config overrides (resource type GROUP) by group id; no empty entries.
    pub group_configs: BTreeMap<String, BTreeMap<String, String>>,
    /// SCRAM credentials by user and mechanism ([`crate::scram`]).
    pub scram: ScramIndex,
}

/// Whether a command is checked on its own or as part of a batch. In a batch the "a fenced or
/// shutting-down broker leads nothing" rule is checked once, at the end.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Scope {
    Alone,
    InBatch,
}

/// The brokers and partitions a command changed, whose invariants are checked afterwards.
#[derive(Default)]
struct Touched {
    brokers: BTreeSet<i32>,
    partitions: BTreeSet<(TopicId, i32)>,
}

impl Touched {
    fn note(&mut self, cmd: &Command) {
        match cmd {
            Command::RegisterBroker { node_id, .. }
            | Command::SetBrokerListeners { node_id, .. }
            | Command::FenceBroker { node_id, .. }
            | Command::UnfenceBroker { node_id, .. }
            | Command::BeginControlledShutdown { node_id, .. } => {
                self.brokers.insert(*node_id);
            }
            Command::ChangePartition {
                topic_id,
                partition,
                ..
            } => {
                self.partitions.insert((*topic_id, *partition));
            }
            _ => {}
        }
    }
}

fn has_duplicates(ids: &[i32]) -> bool {
    ids.iter().enumerate().any(|(j, id)| ids[..j].contains(id))
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
    /// Moves the image to chain height `height` (the block about to be applied, or a snapshot's).
    pub fn advance_to(&mut self, height: u64) {
        assert!(
            height >= self.position,
            "metadata image position went back from {} to {height}",
            self.position
        );
        assert!(
            i64::try_from(height).is_ok(),
            "metadata image position {height} does not fit a broker epoch"
        );
        self.position = height;
    }

    /// The broker epoch a registration applied now gets.
    fn position_epoch(&self) -> i64 {
        i64::try_from(self.position).expect("advance_to keeps the position within i64")
    }

    /// The topic with this name, if any.
    pub fn topic_by_name(&self, name: &str) -> Option<&Topic> {
        self.topic_ids_by_name
            .get(name)
            .and_then(|id| self.topics.get(id))
    }

    /// Partition `partition` of topic `topic_id`, if both exist.
    pub fn partition(&self, topic_id: TopicId, partition: i32) -> Option<&PartitionAssignment> {
        let index = usize::try_from(partition).ok()?;
        self.topics.get(&topic_id)?.partitions.get(index)
    }

    /// Every partition of every topic, in topic id then partition order.
    pub fn partitions(&self) -> impl Iterator<Item = (TopicId, &PartitionAssignment)> {
        self.topics
            .iter()
            .flat_map(|(id, t)| t.partitions.iter().map(move |p| (*id, p)))
    }

    /// The partitions `node_id` leads.
    pub fn broker_leads(
        &self,
        node_id: i32,
    ) -> impl Iterator<Item = (TopicId, &PartitionAssignment)> {
        self.partitions().filter(move |(_, p)| p.leader == node_id)
    }

    /// Registered brokers that are not fenced (shutting-down ones included).
    pub fn unfenced_brokers(&self) -> impl Iterator<Item = &BrokerRegistration> {
        self.brokers.values().filter(|b| !b.fenced)
    }

    /// Registered brokers that may lead and join ISRs: unfenced and not shutting down.
    pub fn eligible_brokers(&self) -> impl Iterator<Item = &BrokerRegistration> {
        self.brokers.values().filter(|b| b.is_eligible())
    }

    /// Whether `node_id` is registered, unfenced and not shutting down.
    pub fn is_eligible(&self, node_id: i32) -> bool {
        self.brokers.get(&node_id).is_some_and(|b| b.is_eligible())
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

    /// Checks a new partition as CreateTopic/CreatePartitions carry it: distinct registered
    /// replicas, epochs 0, an ISR of eligible replicas, led by one of them.
    fn check_assignment(&self, p: &PartitionAssignment) -> Result<(), MetaError> {
        let i = p.partition;
        let bad = |reason: String| Err(MetaError::InvalidReplicaAssignment(reason));
        if p.replicas.is_empty() {
            return bad(format!("partition {i} has no replicas"));
        }
        for (j, r) in p.replicas.iter().enumerate() {
            if p.replicas[..j].contains(r) {
                return bad(format!("partition {i} lists broker {r} twice"));
            }
            if !self.brokers.contains_key(r) {
                return bad(format!("partition {i} is assigned to unknown broker {r}"));
            }
        }
        if p.leader_epoch != 0 || p.partition_epoch != 0 {
            return bad(format!("new partition {i} must start at epochs 0"));
        }
        if p.isr.is_empty() || has_duplicates(&p.isr) {
            return bad(format!(
                "partition {i} needs a non-empty ISR without repeats, got {:?}",
                p.isr
            ));
        }
        for r in &p.isr {
            if !p.replicas.contains(r) {
                return bad(format!("partition {i}: ISR member {r} is not a replica"));
            }
            if !self.is_eligible(*r) {
                return Err(MetaError::IneligibleReplica(format!(
                    "partition {i}: broker {r} is fenced or shutting down and cannot be in sync"
                )));
            }
        }
        if !p.isr.contains(&p.leader) {
            return bad(format!(
                "partition {i}: leader {} is not in the ISR {:?}",
                p.leader, p.isr
            ));
        }
        Ok(())
    }

    /// The invariants of one partition (see the module doc).
    fn check_partition_state(
        &self,
        topic_id: TopicId,
        p: &PartitionAssignment,
    ) -> Result<(), MetaError> {
        let name = format!("{topic_id}-{}", p.partition);
        if p.isr.is_empty() || has_duplicates(&p.isr) {
            return Err(MetaError::InvalidPartitionChange(format!(
                "{name}: the ISR must be non-empty without repeats, got {:?}",
                p.isr
            )));
        }
        if let Some(r) = p.isr.iter().find(|r| !p.replicas.contains(r)) {
            return Err(MetaError::InvalidPartitionChange(format!(
                "{name}: ISR member {r} is not a replica {:?}",
                p.replicas
            )));
        }
        if p.leader != PartitionAssignment::NO_LEADER {
            if !p.isr.contains(&p.leader) {
                return Err(MetaError::InvalidPartitionChange(format!(
                    "{name}: leader {} is not in the ISR {:?}",
                    p.leader, p.isr
                )));
            }
            if !self.is_eligible(p.leader) {
                return Err(MetaError::IneligibleReplica(format!(
                    "{name}: leader {} is not registered, fenced or shutting down",
                    p.leader
                )));
            }
        }
        Ok(())
    }

    /// A fenced or shutting-down broker (or a replaced registration) leads nothing.
    fn check_leads_nothing(&self, node_id: i32) -> Result<(), MetaError> {
        match self.broker_leads(node_id).next() {
            None => Ok(()),
            Some((topic_id, p)) => Err(MetaError::IneligibleReplica(format!(
                "broker {node_id} still leads {topic_id}-{}: move its leaderships in the same batch",
                p.partition
            ))),
        }
    }

    /// The invariants of what a command changed.
    fn check_invariants(&self, touched: &Touched) -> Result<(), MetaError> {
        for (topic_id, partition) in &touched.partitions {
            if let Some(p) = self.partition(*topic_id, *partition) {
                self.check_partition_state(*topic_id, p)?;
            }
        }
        for node_id in &touched.brokers {
            if !self.is_eligible(*node_id) {
                self.check_leads_nothing(*node_id)?;
            }
        }
        Ok(())
    }

    /// Checks every invariant of the whole image, not only what one command touched: for images
    /// read from elsewhere (snapshots) and for the simulator's checks after every step.
    pub fn check_consistency(&self) -> Result<(), String> {
        for (id, b) in &self.brokers {
            if *id != b.node_id || *id < 0 {
                return Err(format!("broker {id} is registered as {}", b.node_id));
            }
            if b.epoch < 0 || b.epoch > self.position_epoch() {
                return Err(format!(
                    "broker {id} has epoch {} beyond position {}",
                    b.epoch, self.position
                ));
            }
        }
        if self.topic_ids_by_name.len() != self.topics.len() {
            return Err("topic name index and topics differ in size".into());
        }
        for (id, t) in &self.topics {
            if *id != t.topic_id || *id == TopicId::ZERO {
                return Err(format!("topic {id} is stored as {}", t.topic_id));
            }
            validate_topic_name(&t.name).map_err(|e| e.to_string())?;
            if self.topic_ids_by_name.get(&t.name) != Some(id) {
                return Err(format!("topic name index misses {}", t.name));
            }
            if t.partitions.is_empty() || t.partitions.len() > PARTITIONS_PER_TOPIC_MAX {
                return Err(format!("topic {id} has {} partitions", t.partitions.len()));
            }
            for (i, p) in t.partitions.iter().enumerate() {
                if p.partition != i as i32 {
                    return Err(format!(
                        "topic {id}: partition {} at index {i}",
                        p.partition
                    ));
                }
                if p.replicas.is_empty()
                    || has_duplicates(&p.replicas)
                    || p.replicas.iter().any(|r| !self.brokers.contains_key(r))
                {
                    return Err(format!(
                        "{id}-{i}: replicas {:?} are empty, repeated or unregistered",
                        p.replicas
                    ));
                }
                if p.leader_epoch < 0 || p.partition_epoch < 0 {
                    return Err(format!("{id}-{i}: negative epoch"));
                }
                self.check_partition_state(*id, p)
                    .map_err(|e| e.to_string())?;
            }
        }
        if self.next_producer_id < 0 {
            return Err(format!(
                "negative next producer id {}",
                self.next_producer_id
            ));
        }
        if let Some((id, _)) = self.broker_configs.iter().find(|(_, c)| c.is_empty()) {
            return Err(format!("empty dynamic config entry for broker {id}"));
        }
        self.acls.check_consistency()
    }

    /// The registration of `node_id` if its epoch is `epoch`.
    fn registration(&self, node_id: i32, epoch: i64) -> Result<&BrokerRegistration, MetaError> {
        let reg = self
            .brokers
            .get(&node_id)
            .ok_or(MetaError::BrokerNotRegistered(node_id))?;
        if reg.epoch != epoch {
            return Err(MetaError::StaleBrokerEpoch {
                node_id,
                current: reg.epoch,
                given: epoch,
            });
        }
        Ok(reg)
    }

    /// Checks `cmd` against this image without changing it.
    pub fn validate(&self, cmd: &Command) -> Result<(), MetaError> {
        match cmd {
            Command::Batch(commands) => self.clone().apply_batch(commands).map(drop),
            _ => self.check(cmd, Scope::Alone),
        }
    }

    fn check_acls(&self, cmd: &Command) -> Result<(), MetaError> {
        let count = |n: usize| {
            if n == 0 || n > ACLS_PER_COMMAND_MAX {
                return Err(MetaError::InvalidAcl(format!(
                    "a command holds 1 to {ACLS_PER_COMMAND_MAX} ACLs, got {n}"
                )));
            }
            Ok(())
        };
        match cmd {
            Command::CreateAcls { acls } => {
                count(acls.len())?;
                for (j, (id, acl)) in acls.iter().enumerate() {
                    validate_new_acl(acl).map_err(MetaError::InvalidAcl)?;
                    if self.acls.get(*id).is_some() || acls[..j].iter().any(|(i, _)| i == id) {
                        return Err(MetaError::InvalidAcl(format!("ACL id {id} is in use")));
                    }
                }
                Ok(())
            }
            Command::DeleteAcls { ids } => count(ids.len()),
            _ => unreachable!("check_acls is called for ACL commands only"),
        }
    }

    fn check(&self, cmd: &Command, scope: Scope) -> Result<(), MetaError> {
        let broker_state = |node_id: i32, reason: &str| {
            Err(MetaError::InvalidBrokerState {
                node_id,
                reason: reason.to_string(),
            })
        };
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
                incarnation_id,
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
                if let Some(existing) = self.brokers.get(node_id) {
                    if existing.incarnation_id == *incarnation_id {
                        return Err(MetaError::DuplicateBrokerRegistration {
                            node_id: *node_id,
                            epoch: existing.epoch,
                        });
                    }
                    if existing.epoch >= self.position_epoch() {
                        return Err(MetaError::InvalidBrokerRegistration(format!(
                            "broker {node_id} was already registered at position {}",
                            existing.epoch
                        )));
                    }
                    if scope == Scope::Alone {
                        self.check_leads_nothing(*node_id)?;
                    }
                }
                Ok(())
            }
            Command::FenceBroker { node_id, epoch } => {
                if self.registration(*node_id, *epoch)?.fenced {
                    return broker_state(*node_id, "is already fenced");
                }
                if scope == Scope::Alone {
                    self.check_leads_nothing(*node_id)?;
                }
                Ok(())
            }
            Command::UnfenceBroker { node_id, epoch } => {
                let reg = self.registration(*node_id, *epoch)?;
                if !reg.fenced {
                    return broker_state(*node_id, "is not fenced");
                }
                if reg.in_controlled_shutdown {
                    return broker_state(*node_id, "is shutting down");
                }
                Ok(())
            }
            Command::BeginControlledShutdown { node_id, epoch } => {
                let reg = self.registration(*node_id, *epoch)?;
                if reg.fenced {
                    return broker_state(*node_id, "is fenced");
                }
                if reg.in_controlled_shutdown {
                    return broker_state(*node_id, "is already shutting down");
                }
                if scope == Scope::Alone {
                    self.check_leads_nothing(*node_id)?;
                }
                Ok(())
            }
            Command::ChangePartition {
                topic_id,
                partition,
                expected_partition_epoch,
                leader,
                isr,
            } => {
                let current =
                    self.partition(*topic_id, *partition)
                        .ok_or(MetaError::UnknownPartition {
                            topic_id: *topic_id,
                            partition: *partition,
                        })?;
                if current.partition_epoch != *expected_partition_epoch {
                    return Err(MetaError::StalePartitionEpoch {
                        topic_id: *topic_id,
                        partition: *partition,
                        current: current.partition_epoch,
                        expected: *expected_partition_epoch,
                    });
                }
                let next = changed_partition(current, *leader, isr.as_deref());
                if next.leader == current.leader && next.isr == current.isr {
                    return Err(MetaError::InvalidPartitionChange(format!(
                        "{topic_id}-{partition}: the change changes nothing"
                    )));
                }
                if current.partition_epoch == i32::MAX
                    || (next.leader != current.leader && current.leader_epoch == i32::MAX)
                {
                    return Err(MetaError::InvalidPartitionChange(format!(
                        "{topic_id}-{partition}: epochs exhausted"
                    )));
                }
                if next.leader < PartitionAssignment::NO_LEADER {
                    return Err(MetaError::InvalidPartitionChange(format!(
                        "{topic_id}-{partition}: bad leader {}",
                        next.leader
                    )));
                }
                if let Some(r) = next
                    .isr
                    .iter()
                    .find(|r| !current.isr.contains(r) && !self.is_eligible(**r))
                {
                    return Err(MetaError::IneligibleReplica(format!(
                        "{topic_id}-{partition}: broker {r} is not registered, fenced or shutting down and cannot join the ISR"
                    )));
                }
                self.check_partition_state(*topic_id, &next)
            }
            Command::Batch(_) => Err(MetaError::InvalidBatch("batches do not nest".into())),
            Command::CreateAcls { .. } | Command::DeleteAcls { .. } => self.check_acls(cmd),
            Command::AlterScramCredentials {
                upsertions,
                deletions,
            } => self
                .scram
                .check(upsertions, deletions)
                .map_err(MetaError::InvalidScramCredential),
            Command::SetBrokerListeners {
                node_id,
                incarnation_id,
                listeners,
            } => {
                match self.brokers.get(node_id) {
                    Some(b) if b.incarnation_id == *incarnation_id => {}
                    _ => {
                        return Err(MetaError::InvalidBrokerRegistration(format!(
                            "listeners for an unregistered incarnation of broker {node_id}"
                        )))
                    }
                }
                if listeners.is_empty() || listeners.len() > BROKER_LISTENERS_MAX {
                    return Err(MetaError::InvalidBrokerRegistration(format!(
                        "a broker registers 1 to {BROKER_LISTENERS_MAX} listeners, got {}",
                        listeners.len()
                    )));
                }
                for (i, l) in listeners.iter().enumerate() {
                    if l.name.is_empty()
                        || l.host.is_empty()
                        || !(0..=65535).contains(&l.port)
                        || !(0..=3).contains(&l.security_protocol)
                    {
                        return Err(MetaError::InvalidBrokerRegistration(format!(
                            "bad listener {}://{}:{} (protocol {})",
                            l.name, l.host, l.port, l.security_protocol
                        )));
                    }
                    if listeners[..i].iter().any(|o| o.name == l.name) {
                        return Err(MetaError::InvalidBrokerRegistration(format!(
                            "listener {} is registered twice",
                            l.name
                        )));
                    }
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
                    validate_dynamic_broker_config_at(k, v, broker_id.is_some())
                        .map_err(MetaError::InvalidConfig)?;
                }
                Ok(())
            }
            Command::AlterGroupConfigs {
                group_id,
                replace_all,
                set,
                delete,
            } => {
                if group_id.is_empty() || group_id.len() > GROUP_ID_BYTES_MAX {
                    return Err(MetaError::InvalidConfig(format!(
                        "group id of {} bytes: 1 to {GROUP_ID_BYTES_MAX} allowed",
                        group_id.len()
                    )));
                }
                let empty = BTreeMap::new();
                let current = self.group_configs.get(group_id).unwrap_or(&empty);
                let next = altered_configs(current, *replace_all, set, delete)?;
                validate_group_configs(&next).map_err(MetaError::InvalidConfig)?;
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

    /// Validates and applies `cmd`. On error the image is unchanged.
    pub fn apply(&mut self, cmd: &Command) -> Result<Applied, MetaError> {
        if let Command::Batch(commands) = cmd {
            let mut scratch = self.clone();
            let applied = scratch.apply_batch(commands)?;
            *self = scratch;
            return Ok(applied);
        }
        self.check(cmd, Scope::Alone)?;
        let applied = self.mutate(cmd);
        let mut touched = Touched::default();
        touched.note(cmd);
        if let Err(e) = self.check_invariants(&touched) {
            panic!("a validated metadata command broke an image invariant: {cmd:?}: {e}");
        }
        Ok(applied)
    }

    /// Applies a batch's commands in order to `self` (a scratch copy: left half-changed on
    /// error), then checks the invariants of everything they touched.
    fn apply_batch(&mut self, commands: &[Command]) -> Result<Applied, MetaError> {
        if commands.is_empty() || commands.len() > BATCH_COMMANDS_MAX {
            return Err(MetaError::InvalidBatch(format!(
                "a batch holds 1 to {BATCH_COMMANDS_MAX} commands, got {}",
                commands.len()
            )));
        }
        let mut touched = Touched::default();
        let mut applied = Vec::with_capacity(commands.len());
        for cmd in commands {
            self.check(cmd, Scope::InBatch)?;
            touched.note(cmd);
            applied.push(self.mutate(cmd));
        }
        self.check_invariants(&touched)?;
        Ok(Applied::Batch(applied))
    }

    fn broker_mut(&mut self, node_id: i32) -> &mut BrokerRegistration {
        self.brokers
            .get_mut(&node_id)
            .expect("validated: broker registered")
    }

    /// Changes the image by a checked, non-batch command.
    fn mutate(&mut self, cmd: &Command) -> Applied {
        match cmd {
            Command::InitCluster { cluster_id } => {
                self.cluster_id = Some(cluster_id.clone());
                Applied::ClusterInitialized {
                    cluster_id: cluster_id.clone(),
                }
            }
            Command::RegisterBroker {
                node_id,
                incarnation_id,
                host,
                port,
                rack,
            } => {
                let epoch = self.position_epoch();
                self.brokers.insert(
                    *node_id,
                    BrokerRegistration {
                        node_id: *node_id,
                        incarnation_id: *incarnation_id,
                        host: host.clone(),
                        port: *port,
                        rack: rack.clone(),
                        epoch,
                        fenced: true,
                        in_controlled_shutdown: false,
                        listeners: Vec::new(),
                    },
                );
                Applied::BrokerRegistered {
                    node_id: *node_id,
                    epoch,
                }
            }
            Command::FenceBroker { node_id, .. } => {
                self.broker_mut(*node_id).fenced = true;
                Applied::BrokerFenced { node_id: *node_id }
            }
            Command::UnfenceBroker { node_id, .. } => {
                self.broker_mut(*node_id).fenced = false;
                Applied::BrokerUnfenced { node_id: *node_id }
            }
            Command::BeginControlledShutdown { node_id, .. } => {
                self.broker_mut(*node_id).in_controlled_shutdown = true;
                Applied::ControlledShutdownBegun { node_id: *node_id }
            }
            Command::ChangePartition {
                topic_id,
                partition,
                leader,
                isr,
                ..
            } => {
                let p = self
                    .topics
                    .get_mut(topic_id)
                    .and_then(|t| t.partitions.get_mut(*partition as usize))
                    .expect("validated: partition exists");
                let next = changed_partition(p, *leader, isr.as_deref());
                if next.leader != p.leader {
                    p.leader = next.leader;
                    p.leader_epoch += 1;
                }
                p.isr = next.isr;
                p.partition_epoch += 1;
                Applied::PartitionChanged {
                    topic_id: *topic_id,
                    partition: *partition,
                }
            }
            Command::Batch(_) => unreachable!("batches are applied by apply_batch"),
            Command::CreateAcls { acls } => {
                let mut ids = Vec::with_capacity(acls.len());
                for (id, acl) in acls {
                    if self.acls.id_of(acl).is_none() {
                        self.acls.insert(*id, acl.clone());
                        ids.push(*id);
                    }
                }
                Applied::AclsCreated { ids }
            }
            Command::AlterScramCredentials {
                upsertions,
                deletions,
            } => {
                self.scram.apply(upsertions, deletions);
                Applied::ScramCredentialsAltered {
                    upserted: upsertions.len(),
                    deleted: deletions.len(),
                }
            }
            Command::DeleteAcls { ids } => Applied::AclsDeleted {
                acls: ids
                    .iter()
                    .filter_map(|id| Some((*id, self.acls.remove(*id)?)))
                    .collect(),
            },
            Command::SetBrokerListeners {
                node_id, listeners, ..
            } => {
                self.broker_mut(*node_id).listeners = listeners.clone();
                Applied::BrokerListenersSet { node_id: *node_id }
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
            Command::AlterGroupConfigs {
                group_id,
                replace_all,
                set,
                delete,
            } => {
                let empty = BTreeMap::new();
                let current = self.group_configs.get(group_id).unwrap_or(&empty);
                let next = altered_configs(current, *replace_all, set, delete)
                    .expect("validated: configs alter cleanly");
                if next.is_empty() {
                    self.group_configs.remove(group_id);
                } else {
                    self.group_configs.insert(group_id.clone(), next);
                }
                Applied::GroupConfigsAltered {
                    group_id: group_id.clone(),
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
        }
    }
}

/// `current` with the leader and ISR of a change, epochs not yet bumped.
fn changed_partition(
    current: &PartitionAssignment,
    leader: Option<i32>,
    isr: Option<&[i32]>,
) -> PartitionAssignment {
    let mut next = current.clone();
    if let Some(leader) = leader {
        next.leader = leader;
    }
    if let Some(isr) = isr {
        next.isr = isr.to_vec();
    }
    next
}

#[cfg(test)]
mod cluster_tests;

#[cfg(test)]
mod tests {
    use super::*;

    /// An image with broker 1 registered (epoch 0) and unfenced.
    fn with_broker() -> Image {
        let mut image = Image::default();
        image.apply(&register(1, 1)).unwrap();
        image
            .apply(&Command::UnfenceBroker {
                node_id: 1,
                epoch: 0,
            })
            .unwrap();
        image
    }

    fn register(node_id: i32, incarnation_id: u128) -> Command {
        Command::RegisterBroker {
            node_id,
            incarnation_id,
            host: "localhost".into(),
            port: 9092,
            rack: None,
        }
    }

    fn create(name: &str, id: u8, n: i32) -> Command {
        Command::CreateTopic {
            topic_id: TopicId([id; 16]),
            name: name.into(),
            partitions: (0..n)
                .map(|p| PartitionAssignment::led_by_first(p, vec![1]))
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
            partitions: vec![PartitionAssignment::led_by_first(0, vec![2])],
            configs: vec![],
        };
        assert!(matches!(
            image.validate(&unknown_broker),
            Err(MetaError::InvalidReplicaAssignment(_))
        ));
        let bad_config = Command::CreateTopic {
            topic_id: TopicId([1; 16]),
            name: "a".into(),
            partitions: vec![PartitionAssignment::led_by_first(0, vec![1])],
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
                .map(|(i, replicas)| PartitionAssignment::led_by_first(first + i as i32, replicas))
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
                    .map(|i| {
                        PartitionAssignment::led_by_first(
                            1 + i as i32 + rng.below(2) as i32,
                            vec![1 + rng.below(2) as i32],
                        )
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
                        assert_eq!(image, before, "seed {seed}: failed {c:?} changed the image");
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
            register(1, 1),
            Command::UnfenceBroker {
                node_id: 1,
                epoch: 1,
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
            let results: Vec<bool> = cmds
                .iter()
                .enumerate()
                .map(|(height, c)| {
                    image.advance_to(height as u64);
                    image.apply(c).is_ok()
                })
                .collect();
            (image, results)
        };
        let (a, ra) = run();
        let (b, rb) = run();
        assert_eq!(a, b);
        assert_eq!(ra, rb);
        assert_eq!(ra, vec![true, true, true, true, false, true, true, true]);
        assert_eq!(a.position, 7);
    }

    #[test]
    fn acl_commands_apply_all_or_nothing() {
        use crate::acl::{Operation, PatternType, Permission, ResourceType};
        let acl = |name: &str| Acl {
            resource_type: ResourceType::Topic,
            resource_name: name.into(),
            pattern_type: PatternType::Literal,
            principal: "User:alice".into(),
            host: "*".into(),
            operation: Operation::Read,
            permission: Permission::Allow,
        };
        let mut image = with_broker();
        let applied = image
            .apply(&Command::CreateAcls {
                acls: vec![
                    (AclId(1), acl("a")),
                    (AclId(2), acl("b")),
                    (AclId(3), acl("a")),
                ],
            })
            .unwrap();
        assert_eq!(
            applied,
            Applied::AclsCreated {
                ids: vec![AclId(1), AclId(2)]
            },
            "a repeated ACL is stored once"
        );
        let before = image.clone();
        for bad in [
            Command::CreateAcls { acls: vec![] },
            Command::DeleteAcls { ids: vec![] },
            // An id in use, even for a new ACL.
            Command::CreateAcls {
                acls: vec![(AclId(4), acl("c")), (AclId(1), acl("d"))],
            },
            Command::CreateAcls {
                acls: vec![(AclId(4), acl("c")), (AclId(4), acl("d"))],
            },
            // One invalid ACL refuses the whole command.
            Command::CreateAcls {
                acls: vec![(AclId(4), acl("c")), (AclId(5), acl(""))],
            },
        ] {
            assert!(image.apply(&bad).is_err(), "{bad:?}");
            assert_eq!(image, before, "{bad:?}");
        }
        // An ACL already stored is skipped, the rest created.
        let applied = image
            .apply(&Command::CreateAcls {
                acls: vec![(AclId(4), acl("a")), (AclId(5), acl("c"))],
            })
            .unwrap();
        assert_eq!(
            applied,
            Applied::AclsCreated {
                ids: vec![AclId(5)]
            }
        );
        let applied = image
            .apply(&Command::DeleteAcls {
                ids: vec![AclId(2), AclId(9)],
            })
            .unwrap();
        assert_eq!(
            applied,
            Applied::AclsDeleted {
                acls: vec![(AclId(2), acl("b"))]
            }
        );
        assert_eq!(
            image.acls.iter().map(|(id, _)| id).collect::<Vec<_>>(),
            vec![AclId(1), AclId(5)]
        );
        image.check_consistency().unwrap();
    }
}

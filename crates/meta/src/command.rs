//! Metadata commands and their versioned, checksummed binary encoding.
//!
//! Owns: the [`Command`] type and its bytes. Encoding: `version u8 | crc32c u32 (big endian,
//! over everything after it) | tag u8 | fields`, integers big endian, strings and lists with a
//! u32 length. The CRC travels with the command, so a command is self-verifying wherever it is
//! stored or sent (local log, chain). A [`Command::Batch`] is `tag | count u32 | (tag | fields)*`
//! under the one version and CRC; batches never nest, so decoding recurses at most once.
//! Version 1 (the single-node format) still decodes: a registration gets incarnation id 0 and a
//! partition gets leader = first replica, ISR = replicas, epochs 0; encoding always writes the
//! current version.
//! Must never: allocate from a peer-declared length before checking it against the bytes
//! present (decoding runs on replicated, possibly corrupt input).

use std::fmt;

use crate::acl::{Acl, AclId, ACLS_PER_COMMAND_MAX};
use crate::codec::{Reader, Writer};
use crate::scram::{ScramCredential, ScramMechanism, SCRAM_CHANGES_PER_COMMAND_MAX};
use crate::MetaError;

/// Version of the command encoding. Bump when an existing command's bytes change; decoders
/// reject unknown versions. A new command is a new tag (older decoders reject the unknown tag).
pub const COMMAND_FORMAT_VERSION: u8 = 2;

/// The single-node format (no incarnation ids, no leaders, ISRs or epochs); still decoded.
const COMMAND_FORMAT_VERSION_V1: u8 = 1;

/// Most commands one [`Command::Batch`] may hold. Bounds the work of one apply; well above what
/// a chain block can carry anyway (a 1 MiB payload holds about 20,000 partition changes), so the
/// controller only meets it when fencing a broker that leads more partitions than that.
pub const BATCH_COMMANDS_MAX: usize = 65_536;

/// Largest encoded command accepted by the decoder: a topic with 10,000 partitions of a few
/// replicas each plus configs fits well below this.
pub const COMMAND_BYTES_MAX: usize = 16 << 20;

/// A topic id (Kafka's topic UUID), as raw bytes.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct TopicId(pub [u8; 16]);

impl TopicId {
    pub const ZERO: TopicId = TopicId([0; 16]);
}

impl fmt::Display for TopicId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", uuid::Uuid::from_bytes(self.0))
    }
}

impl fmt::Debug for TopicId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// One partition's replicas, leader and in-sync replicas, as decided by the controller (in a
/// command) or as they stand (in the image).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionAssignment {
    pub partition: i32,
    /// Broker ids; the first is the preferred leader.
    pub replicas: Vec<i32>,
    /// The leading broker, or [`PartitionAssignment::NO_LEADER`].
    pub leader: i32,
    /// Bumped on every leader change (stamped on the batches the leader appends).
    pub leader_epoch: i32,
    /// Bumped on every change of this partition (leader or ISR): the version a change names.
    pub partition_epoch: i32,
    /// In-sync replicas: a non-empty subset of `replicas` holding the leader when there is one.
    pub isr: Vec<i32>,
}

impl PartitionAssignment {
    /// `leader` of a partition nobody leads.
    pub const NO_LEADER: i32 = -1;

    /// A new partition led by its first replica with every replica in sync, epochs 0: what
    /// Kafka's controller creates when all replicas are eligible.
    pub fn led_by_first(partition: i32, replicas: Vec<i32>) -> PartitionAssignment {
        PartitionAssignment {
            partition,
            leader: replicas.first().copied().unwrap_or(Self::NO_LEADER),
            leader_epoch: 0,
            partition_epoch: 0,
            isr: replicas.clone(),
            replicas,
        }
    }
}

/// A deterministic change to the metadata image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// Sets the cluster id, once.
    InitCluster { cluster_id: String },
    /// Registers a new incarnation of a broker, fenced, with the image position as its broker
    /// epoch; replaces an older incarnation's registration.
    RegisterBroker {
        node_id: i32,
        /// Random per process start; the same incarnation never registers twice.
        incarnation_id: u128,
        host: String,
        port: i32,
        rack: Option<String>,
    },
    /// Creates a topic with the given id, partitions and configs.
    CreateTopic {
        topic_id: TopicId,
        name: String,
        partitions: Vec<PartitionAssignment>,
        configs: Vec<(String, String)>,
    },
    /// Deletes a topic.
    DeleteTopic { topic_id: TopicId },
    /// Hands producer ids `first_id .. first_id + count` to a broker.
    AllocateProducerIds {
        broker_id: i32,
        first_id: i64,
        count: i64,
    },
    /// Changes a topic's config overrides: with `replace_all` the result is exactly `set`
    /// (AlterConfigs), otherwise `delete` is removed and `set` overlaid (IncrementalAlterConfigs;
    /// APPEND/SUBTRACT arrive as a `set` of the resulting list).
    AlterTopicConfigs {
        topic_id: TopicId,
        replace_all: bool,
        set: Vec<(String, String)>,
        delete: Vec<String>,
    },
    /// Changes dynamic broker configs of one broker (`Some(id)`) or the cluster-wide default
    /// (`None`, Kafka's empty resource name), with the same `replace_all`/`set`/`delete` rules.
    AlterBrokerConfigs {
        broker_id: Option<i32>,
        replace_all: bool,
        set: Vec<(String, String)>,
        delete: Vec<String>,
    },
    /// Adds partitions to a topic; they are numbered on from its current count.
    CreatePartitions {
        topic_id: TopicId,
        new_assignments: Vec<PartitionAssignment>,
    },
    /// Fences the registration `epoch` of a broker: it may no longer lead or join an ISR.
    FenceBroker { node_id: i32, epoch: i64 },
    /// Unfences the registration `epoch` of a broker (it caught up with the metadata).
    UnfenceBroker { node_id: i32, epoch: i64 },
    /// Marks the registration `epoch` of an unfenced broker as shutting down.
    BeginControlledShutdown { node_id: i32, epoch: i64 },
    /// Changes a partition's leader and/or ISR, if its partition epoch is still
    /// `expected_partition_epoch`. A leader change bumps the leader epoch; any change bumps the
    /// partition epoch.
    ChangePartition {
        topic_id: TopicId,
        partition: i32,
        expected_partition_epoch: i32,
        /// New leader (`NO_LEADER` for none); `None` keeps the current one.
        leader: Option<i32>,
        /// New ISR; `None` keeps the current one.
        isr: Option<Vec<i32>>,
    },
    /// Commands applied all-or-nothing, in order (never nested; at most
    /// [`BATCH_COMMANDS_MAX`]).
    Batch(Vec<Command>),
    /// Creates ACLs (CreateAcls), each under the id its proposer chose; one equal to an ACL
    /// already stored (or earlier in the list) is skipped, as Kafka answers it created. At most
    /// [`crate::acl::ACLS_PER_COMMAND_MAX`].
    CreateAcls { acls: Vec<(AclId, Acl)> },
    /// Deletes ACLs by id (DeleteAcls); ids no longer stored are skipped (a concurrent delete
    /// removed them). At most [`crate::acl::ACLS_PER_COMMAND_MAX`].
    DeleteAcls { ids: Vec<AclId> },
    /// Sets the named listener endpoints of broker `node_id`'s registration `incarnation_id`
    /// (Kafka's BrokerRegistration listeners): proposed with its `RegisterBroker` in one batch.
    /// Clients are answered with the endpoint of the listener their request came in on.
    SetBrokerListeners {
        node_id: i32,
        incarnation_id: u128,
        listeners: Vec<ListenerEndpoint>,
    },
    /// Changes the configs of group `group_id` (resource type GROUP, KIP-848), with the
    /// `replace_all`/`set`/`delete` rules of topic configs; an empty result removes the group's
    /// entry. Deleting the group keeps them, as Kafka 4.1 does.
    AlterGroupConfigs {
        group_id: String,
        replace_all: bool,
        set: Vec<(String, String)>,
        delete: Vec<String>,
    },
    /// Kafka's AlterUserScramCredentials, all or nothing: store (or replace) each upsertion's
    /// credential, remove each deletion's. Only salt, StoredKey, ServerKey and iterations are
    /// carried ([`crate::scram`]); every deletion names a stored credential and no (user,
    /// mechanism) appears twice.
    AlterScramCredentials {
        upsertions: Vec<(String, ScramMechanism, ScramCredential)>,
        deletions: Vec<(String, ScramMechanism)>,
    },
}

/// One named listener of a broker, as advertised (Kafka's `advertised.listeners` entry).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListenerEndpoint {
    /// The listener name, upper case (`PLAINTEXT`, `SASL_SSL`, `INTERNAL`, ...).
    pub name: String,
    pub host: String,
    pub port: i32,
    /// Kafka's security protocol id: 0 PLAINTEXT, 1 SSL, 2 SASL_PLAINTEXT, 3 SASL_SSL.
    pub security_protocol: i16,
}

/// Most listeners one broker may register (bounds a registration's size; Kafka brokers have a
/// handful).
pub const BROKER_LISTENERS_MAX: usize = 64;

const TAG_INIT_CLUSTER: u8 = 1;
const TAG_REGISTER_BROKER: u8 = 2;
const TAG_CREATE_TOPIC: u8 = 3;
const TAG_DELETE_TOPIC: u8 = 4;
const TAG_ALLOCATE_PRODUCER_IDS: u8 = 5;
const TAG_ALTER_TOPIC_CONFIGS: u8 = 6;
const TAG_ALTER_BROKER_CONFIGS: u8 = 7;
const TAG_CREATE_PARTITIONS: u8 = 8;
const TAG_FENCE_BROKER: u8 = 9;
const TAG_UNFENCE_BROKER: u8 = 10;
const TAG_BEGIN_CONTROLLED_SHUTDOWN: u8 = 11;
const TAG_CHANGE_PARTITION: u8 = 12;
const TAG_BATCH: u8 = 13;
const TAG_CREATE_ACLS: u8 = 14;
const TAG_DELETE_ACLS: u8 = 15;

/// Smallest encoding of one ACL with its id (id, four codes, three empty strings).
const ACL_BYTES_MIN: usize = 16 + 4 + 3 * 4;
const TAG_SET_BROKER_LISTENERS: u8 = 16;
const TAG_ALTER_GROUP_CONFIGS: u8 = 17;
const TAG_ALTER_SCRAM_CREDENTIALS: u8 = 18;
/// Smallest encoding of one credential upsertion (empty user, mechanism, three empty byte
/// strings, iterations).
const SCRAM_UPSERTION_BYTES_MIN: usize = 4 + 1 + 3 * 4 + 4;

impl Command {
    /// Encodes with the current format version and CRC.
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer(Vec::with_capacity(64));
        w.u8(COMMAND_FORMAT_VERSION);
        w.0.extend_from_slice(&[0; 4]); // CRC placeholder
        self.encode_body(&mut w);
        let crc = crc32c::crc32c(&w.0[5..]);
        w.0[1..5].copy_from_slice(&crc.to_be_bytes());
        w.0
    }

    fn encode_body(&self, w: &mut Writer) {
        match self {
            Command::InitCluster { cluster_id } => {
                w.u8(TAG_INIT_CLUSTER);
                w.str(cluster_id);
            }
            Command::RegisterBroker {
                node_id,
                incarnation_id,
                host,
                port,
                rack,
            } => {
                w.u8(TAG_REGISTER_BROKER);
                w.i32(*node_id);
                w.str(host);
                w.i32(*port);
                match rack {
                    Some(r) => {
                        w.u8(1);
                        w.str(r);
                    }
                    None => w.u8(0),
                }
                w.u128(*incarnation_id);
            }
            Command::CreateTopic {
                topic_id,
                name,
                partitions,
                configs,
            } => {
                w.u8(TAG_CREATE_TOPIC);
                w.topic_id(topic_id);
                w.str(name);
                w.assignments(partitions);
                w.pairs(configs);
            }
            Command::DeleteTopic { topic_id } => {
                w.u8(TAG_DELETE_TOPIC);
                w.topic_id(topic_id);
            }
            Command::AllocateProducerIds {
                broker_id,
                first_id,
                count,
            } => {
                w.u8(TAG_ALLOCATE_PRODUCER_IDS);
                w.i32(*broker_id);
                w.i64(*first_id);
                w.i64(*count);
            }
            Command::AlterTopicConfigs {
                topic_id,
                replace_all,
                set,
                delete,
            } => {
                w.u8(TAG_ALTER_TOPIC_CONFIGS);
                w.topic_id(topic_id);
                w.bool(*replace_all);
                w.pairs(set);
                w.strs(delete);
            }
            Command::AlterBrokerConfigs {
                broker_id,
                replace_all,
                set,
                delete,
            } => {
                w.u8(TAG_ALTER_BROKER_CONFIGS);
                match broker_id {
                    Some(id) => {
                        w.u8(1);
                        w.i32(*id);
                    }
                    None => w.u8(0),
                }
                w.bool(*replace_all);
                w.pairs(set);
                w.strs(delete);
            }
            Command::CreatePartitions {
                topic_id,
                new_assignments,
            } => {
                w.u8(TAG_CREATE_PARTITIONS);
                w.topic_id(topic_id);
                w.assignments(new_assignments);
            }
            Command::FenceBroker { node_id, epoch } => {
                w.u8(TAG_FENCE_BROKER);
                w.i32(*node_id);
                w.i64(*epoch);
            }
            Command::UnfenceBroker { node_id, epoch } => {
                w.u8(TAG_UNFENCE_BROKER);
                w.i32(*node_id);
                w.i64(*epoch);
            }
            Command::BeginControlledShutdown { node_id, epoch } => {
                w.u8(TAG_BEGIN_CONTROLLED_SHUTDOWN);
                w.i32(*node_id);
                w.i64(*epoch);
            }
            Command::ChangePartition {
                topic_id,
                partition,
                expected_partition_epoch,
                leader,
                isr,
            } => {
                w.u8(TAG_CHANGE_PARTITION);
                w.topic_id(topic_id);
                w.i32(*partition);
                w.i32(*expected_partition_epoch);
                match leader {
                    Some(l) => {
                        w.u8(1);
                        w.i32(*l);
                    }
                    None => w.u8(0),
                }
                match isr {
                    Some(isr) => {
                        w.u8(1);
                        w.i32s(isr);
                    }
                    None => w.u8(0),
                }
            }
            Command::Batch(commands) => {
                w.u8(TAG_BATCH);
                w.len(commands.len());
                for c in commands {
                    assert!(
                        !matches!(c, Command::Batch(_)),
                        "metadata batches never nest"
                    );
                    c.encode_body(w);
                }
            }
            Command::CreateAcls { acls } => {
                w.u8(TAG_CREATE_ACLS);
                w.len(acls.len());
                for (id, acl) in acls {
                    w.acl(*id, acl);
                }
            }
            Command::DeleteAcls { ids } => {
                w.u8(TAG_DELETE_ACLS);
                w.len(ids.len());
                for id in ids {
                    w.u128(id.0);
                }
            }
            Command::SetBrokerListeners {
                node_id,
                incarnation_id,
                listeners,
            } => {
                w.u8(TAG_SET_BROKER_LISTENERS);
                w.i32(*node_id);
                w.u128(*incarnation_id);
                w.listeners(listeners);
            }
            Command::AlterGroupConfigs {
                group_id,
                replace_all,
                set,
                delete,
            } => {
                w.u8(TAG_ALTER_GROUP_CONFIGS);
                w.str(group_id);
                w.bool(*replace_all);
                w.pairs(set);
                w.strs(delete);
            }
            Command::AlterScramCredentials {
                upsertions,
                deletions,
            } => {
                w.u8(TAG_ALTER_SCRAM_CREDENTIALS);
                w.len(upsertions.len());
                for (user, m, c) in upsertions {
                    w.str(user);
                    w.u8(m.code() as u8);
                    w.scram_credential(c);
                }
                w.len(deletions.len());
                for (user, m) in deletions {
                    w.str(user);
                    w.u8(m.code() as u8);
                }
            }
        }
    }

    /// Decodes bytes produced by [`Command::encode`] (this version or version 1): checks
    /// version, CRC, and that every byte is consumed.
    pub fn decode(bytes: &[u8]) -> Result<Command, MetaError> {
        if bytes.len() > COMMAND_BYTES_MAX {
            return Err(MetaError::Decode(format!(
                "command of {} bytes exceeds the limit",
                bytes.len()
            )));
        }
        let mut r = Reader {
            bytes,
            legacy_v1: false,
        };
        let version = r.u8()?;
        if version != COMMAND_FORMAT_VERSION && version != COMMAND_FORMAT_VERSION_V1 {
            return Err(MetaError::Decode(format!(
                "unknown command format version {version}"
            )));
        }
        r.legacy_v1 = version == COMMAND_FORMAT_VERSION_V1;
        let crc = u32::from_be_bytes(r.take(4)?.try_into().expect("4 bytes"));
        if crc32c::crc32c(r.bytes) != crc {
            return Err(MetaError::Decode("CRC mismatch".into()));
        }
        let cmd = r.command(true)?;
        if !r.bytes.is_empty() {
            return Err(MetaError::Decode(format!(
                "{} trailing bytes after command",
                r.bytes.len()
            )));
        }
        Ok(cmd)
    }
}

impl Reader<'_> {
    /// One command's tag and fields; a batch only where `batch_allowed` (the top level).
    fn command(&mut self, batch_allowed: bool) -> Result<Command, MetaError> {
        let v2 = !self.legacy_v1;
        let tag = self.u8()?;
        Ok(match tag {
            TAG_INIT_CLUSTER => Command::InitCluster {
                cluster_id: self.str()?,
            },
            TAG_REGISTER_BROKER => {
                let node_id = self.i32()?;
                let host = self.str()?;
                let port = self.i32()?;
                let rack = if self.option_flag()? {
                    Some(self.str()?)
                } else {
                    None
                };
                let incarnation_id = if v2 { self.u128()? } else { 0 };
                Command::RegisterBroker {
                    node_id,
                    incarnation_id,
                    host,
                    port,
                    rack,
                }
            }
            TAG_CREATE_TOPIC => Command::CreateTopic {
                topic_id: self.topic_id()?,
                name: self.str()?,
                partitions: self.assignments()?,
                configs: self.pairs()?,
            },
            TAG_DELETE_TOPIC => Command::DeleteTopic {
                topic_id: self.topic_id()?,
            },
            TAG_ALLOCATE_PRODUCER_IDS => Command::AllocateProducerIds {
                broker_id: self.i32()?,
                first_id: self.i64()?,
                count: self.i64()?,
            },
            TAG_ALTER_TOPIC_CONFIGS => Command::AlterTopicConfigs {
                topic_id: self.topic_id()?,
                replace_all: self.bool()?,
                set: self.pairs()?,
                delete: self.strs()?,
            },
            TAG_ALTER_BROKER_CONFIGS => Command::AlterBrokerConfigs {
                broker_id: if self.option_flag()? {
                    Some(self.i32()?)
                } else {
                    None
                },
                replace_all: self.bool()?,
                set: self.pairs()?,
                delete: self.strs()?,
            },
            TAG_CREATE_PARTITIONS => Command::CreatePartitions {
                topic_id: self.topic_id()?,
                new_assignments: self.assignments()?,
            },
            TAG_FENCE_BROKER if v2 => Command::FenceBroker {
                node_id: self.i32()?,
                epoch: self.i64()?,
            },
            TAG_UNFENCE_BROKER if v2 => Command::UnfenceBroker {
                node_id: self.i32()?,
                epoch: self.i64()?,
            },
            TAG_BEGIN_CONTROLLED_SHUTDOWN if v2 => Command::BeginControlledShutdown {
                node_id: self.i32()?,
                epoch: self.i64()?,
            },
            TAG_CHANGE_PARTITION if v2 => Command::ChangePartition {
                topic_id: self.topic_id()?,
                partition: self.i32()?,
                expected_partition_epoch: self.i32()?,
                leader: if self.option_flag()? {
                    Some(self.i32()?)
                } else {
                    None
                },
                isr: if self.option_flag()? {
                    Some(self.i32s()?)
                } else {
                    None
                },
            },
            TAG_BATCH if v2 && batch_allowed => {
                // Every command is at least its tag byte.
                let n = self.count(1)?;
                if n > BATCH_COMMANDS_MAX {
                    return Err(MetaError::Decode(format!(
                        "batch of {n} commands exceeds the limit of {BATCH_COMMANDS_MAX}"
                    )));
                }
                let mut commands = Vec::with_capacity(n);
                for _ in 0..n {
                    commands.push(self.command(false)?);
                }
                Command::Batch(commands)
            }
            TAG_BATCH if v2 => return Err(MetaError::Decode("nested batch".into())),
            TAG_CREATE_ACLS if v2 => {
                let n = self.count(ACL_BYTES_MIN)?;
                if n > ACLS_PER_COMMAND_MAX {
                    return Err(MetaError::Decode(format!(
                        "{n} ACLs exceed the limit of {ACLS_PER_COMMAND_MAX}"
                    )));
                }
                let mut acls = Vec::with_capacity(n);
                for _ in 0..n {
                    acls.push(self.acl()?);
                }
                Command::CreateAcls { acls }
            }
            TAG_DELETE_ACLS if v2 => {
                let n = self.count(16)?;
                if n > ACLS_PER_COMMAND_MAX {
                    return Err(MetaError::Decode(format!(
                        "{n} ACLs exceed the limit of {ACLS_PER_COMMAND_MAX}"
                    )));
                }
                let mut ids = Vec::with_capacity(n);
                for _ in 0..n {
                    ids.push(AclId(self.u128()?));
                }
                Command::DeleteAcls { ids }
            }
            TAG_SET_BROKER_LISTENERS if v2 => Command::SetBrokerListeners {
                node_id: self.i32()?,
                incarnation_id: self.u128()?,
                listeners: self.listeners()?,
            },
            TAG_ALTER_GROUP_CONFIGS if v2 => Command::AlterGroupConfigs {
                group_id: self.str()?,
                replace_all: self.bool()?,
                set: self.pairs()?,
                delete: self.strs()?,
            },
            TAG_ALTER_SCRAM_CREDENTIALS if v2 => {
                let n = self.count(SCRAM_UPSERTION_BYTES_MIN)?;
                if n > SCRAM_CHANGES_PER_COMMAND_MAX {
                    return Err(MetaError::Decode(format!(
                        "{n} credential changes exceed the limit of {SCRAM_CHANGES_PER_COMMAND_MAX}"
                    )));
                }
                let mut upsertions = Vec::with_capacity(n);
                for _ in 0..n {
                    let user = self.str()?;
                    let m = self.scram_mechanism()?;
                    upsertions.push((user, m, self.scram_credential()?));
                }
                let n = self.count(4 + 1)?;
                if n > SCRAM_CHANGES_PER_COMMAND_MAX {
                    return Err(MetaError::Decode(format!(
                        "{n} credential changes exceed the limit of {SCRAM_CHANGES_PER_COMMAND_MAX}"
                    )));
                }
                let mut deletions = Vec::with_capacity(n);
                for _ in 0..n {
                    let user = self.str()?;
                    deletions.push((user, self.scram_mechanism()?));
                }
                Command::AlterScramCredentials {
                    upsertions,
                    deletions,
                }
            }
            tag => return Err(MetaError::Decode(format!("unknown command tag {tag}"))),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::acl::{Operation, PatternType, Permission, ResourceType};

    pub(crate) fn samples() -> Vec<Command> {
        vec![
            Command::AlterGroupConfigs {
                group_id: "g".into(),
                replace_all: false,
                set: vec![("consumer.session.timeout.ms".into(), "50000".into())],
                delete: vec!["share.isolation.level".into()],
            },
            Command::InitCluster {
                cluster_id: "c1".into(),
            },
            Command::RegisterBroker {
                node_id: 1,
                incarnation_id: u128::MAX - 5,
                host: "h".into(),
                port: 9092,
                rack: Some("r".into()),
            },
            Command::RegisterBroker {
                node_id: 2,
                incarnation_id: 0,
                host: "h".into(),
                port: 9092,
                rack: None,
            },
            Command::SetBrokerListeners {
                node_id: 2,
                incarnation_id: 0,
                listeners: vec![ListenerEndpoint {
                    name: "SASL_SSL".into(),
                    host: "b2.example".into(),
                    port: 9094,
                    security_protocol: 3,
                }],
            },
            Command::CreateTopic {
                topic_id: TopicId([7; 16]),
                name: "t".into(),
                partitions: vec![
                    PartitionAssignment::led_by_first(0, vec![1]),
                    PartitionAssignment {
                        partition: 1,
                        replicas: vec![1, 2, 3],
                        leader: 2,
                        leader_epoch: 0,
                        partition_epoch: 0,
                        isr: vec![2, 1],
                    },
                ],
                configs: vec![("retention.ms".into(), "1000".into())],
            },
            Command::DeleteTopic {
                topic_id: TopicId([7; 16]),
            },
            Command::AllocateProducerIds {
                broker_id: 1,
                first_id: 1000,
                count: 1000,
            },
            Command::AlterTopicConfigs {
                topic_id: TopicId([7; 16]),
                replace_all: false,
                set: vec![("cleanup.policy".into(), "compact,delete".into())],
                delete: vec!["retention.ms".into()],
            },
            Command::AlterTopicConfigs {
                topic_id: TopicId([7; 16]),
                replace_all: true,
                set: vec![],
                delete: vec![],
            },
            Command::AlterBrokerConfigs {
                broker_id: Some(1),
                replace_all: false,
                set: vec![("log.retention.ms".into(), "5000".into())],
                delete: vec!["message.max.bytes".into()],
            },
            Command::AlterBrokerConfigs {
                broker_id: None,
                replace_all: true,
                set: vec![("log.cleanup.policy".into(), "compact".into())],
                delete: vec![],
            },
            Command::CreatePartitions {
                topic_id: TopicId([7; 16]),
                new_assignments: vec![PartitionAssignment::led_by_first(2, vec![1])],
            },
            Command::FenceBroker {
                node_id: 1,
                epoch: 7,
            },
            Command::UnfenceBroker {
                node_id: 2,
                epoch: i64::MAX,
            },
            Command::BeginControlledShutdown {
                node_id: 3,
                epoch: 0,
            },
            Command::ChangePartition {
                topic_id: TopicId([7; 16]),
                partition: 4,
                expected_partition_epoch: 9,
                leader: Some(-1),
                isr: None,
            },
            Command::ChangePartition {
                topic_id: TopicId([7; 16]),
                partition: 0,
                expected_partition_epoch: 0,
                leader: None,
                isr: Some(vec![3, 1]),
            },
            Command::Batch(vec![
                Command::FenceBroker {
                    node_id: 1,
                    epoch: 7,
                },
                Command::ChangePartition {
                    topic_id: TopicId([7; 16]),
                    partition: 0,
                    expected_partition_epoch: 0,
                    leader: Some(2),
                    isr: Some(vec![2]),
                },
            ]),
            Command::CreateAcls {
                acls: vec![
                    (
                        AclId(u128::MAX),
                        Acl {
                            resource_type: ResourceType::Topic,
                            resource_name: "orders".into(),
                            pattern_type: PatternType::Prefixed,
                            principal: "User:alice".into(),
                            host: "*".into(),
                            operation: Operation::Write,
                            permission: Permission::Allow,
                        },
                    ),
                    (
                        AclId(3),
                        Acl {
                            resource_type: ResourceType::Cluster,
                            resource_name: "kafka-cluster".into(),
                            pattern_type: PatternType::Literal,
                            principal: "User:*".into(),
                            host: "10.0.0.1".into(),
                            operation: Operation::TwoPhaseCommit,
                            permission: Permission::Deny,
                        },
                    ),
                ],
            },
            Command::DeleteAcls {
                ids: vec![AclId(3), AclId(1 << 100)],
            },
            Command::AlterScramCredentials {
                upsertions: vec![(
                    "alice".into(),
                    ScramMechanism::Sha512,
                    ScramCredential {
                        salt: vec![1, 2, 3],
                        stored_key: vec![4; 64],
                        server_key: vec![5; 64],
                        iterations: 8192,
                    },
                )],
                deletions: vec![("bob".into(), ScramMechanism::Sha256)],
            },
        ]
    }

    #[test]
    fn round_trip() {
        for cmd in samples() {
            assert_eq!(Command::decode(&cmd.encode()).unwrap(), cmd);
        }
    }

    #[test]
    fn every_truncation_and_every_bit_flip_is_rejected() {
        for cmd in samples() {
            let bytes = cmd.encode();
            for cut in 0..bytes.len() {
                assert!(
                    Command::decode(&bytes[..cut]).is_err(),
                    "{cmd:?} cut at {cut}"
                );
            }
            for i in 0..bytes.len() {
                for bit in 0..8 {
                    let mut b = bytes.clone();
                    b[i] ^= 1 << bit;
                    assert!(Command::decode(&b).is_err(), "{cmd:?} flip {i}:{bit}");
                }
            }
        }
    }

    /// Bytes as the version-1 (single-node) encoder wrote them: same layout without incarnation
    /// ids and with bare replica lists.
    fn v1(body: &[u8]) -> Vec<u8> {
        let mut bytes = vec![COMMAND_FORMAT_VERSION_V1];
        bytes.extend_from_slice(&crc32c::crc32c(body).to_be_bytes());
        bytes.extend_from_slice(body);
        bytes
    }

    #[test]
    fn version_1_registrations_and_assignments_still_decode() {
        let mut body = vec![TAG_REGISTER_BROKER];
        body.extend_from_slice(&1i32.to_be_bytes());
        body.extend_from_slice(&1u32.to_be_bytes());
        body.push(b'h');
        body.extend_from_slice(&9092i32.to_be_bytes());
        body.push(0);
        assert_eq!(
            Command::decode(&v1(&body)).unwrap(),
            Command::RegisterBroker {
                node_id: 1,
                incarnation_id: 0,
                host: "h".into(),
                port: 9092,
                rack: None,
            }
        );

        let mut body = vec![TAG_CREATE_TOPIC];
        body.extend_from_slice(&[7; 16]);
        body.extend_from_slice(&1u32.to_be_bytes());
        body.push(b't');
        body.extend_from_slice(&1u32.to_be_bytes()); // one partition
        body.extend_from_slice(&0i32.to_be_bytes());
        body.extend_from_slice(&2u32.to_be_bytes()); // two replicas
        body.extend_from_slice(&3i32.to_be_bytes());
        body.extend_from_slice(&1i32.to_be_bytes());
        body.extend_from_slice(&0u32.to_be_bytes()); // no configs
        let cmd = Command::decode(&v1(&body)).unwrap();
        let expected = Command::CreateTopic {
            topic_id: TopicId([7; 16]),
            name: "t".into(),
            partitions: vec![PartitionAssignment {
                partition: 0,
                replicas: vec![3, 1],
                leader: 3,
                leader_epoch: 0,
                partition_epoch: 0,
                isr: vec![3, 1],
            }],
            configs: vec![],
        };
        assert_eq!(cmd, expected);
        // Re-encoding writes the current version, which decodes to the same command.
        assert_eq!(cmd.encode()[0], COMMAND_FORMAT_VERSION);
        assert_eq!(Command::decode(&cmd.encode()).unwrap(), expected);
    }

    #[test]
    fn version_1_knows_no_cluster_commands() {
        let mut body = vec![TAG_FENCE_BROKER];
        body.extend_from_slice(&1i32.to_be_bytes());
        body.extend_from_slice(&0i64.to_be_bytes());
        assert!(Command::decode(&v1(&body)).is_err());
    }

    fn v2(body: &[u8]) -> Vec<u8> {
        let mut bytes = vec![COMMAND_FORMAT_VERSION];
        bytes.extend_from_slice(&crc32c::crc32c(body).to_be_bytes());
        bytes.extend_from_slice(body);
        bytes
    }

    #[test]
    fn batches_do_not_nest_and_are_bounded() {
        let inner = Command::FenceBroker {
            node_id: 1,
            epoch: 0,
        }
        .encode();
        let mut body = vec![TAG_BATCH];
        body.extend_from_slice(&1u32.to_be_bytes());
        body.push(TAG_BATCH);
        body.extend_from_slice(&1u32.to_be_bytes());
        body.extend_from_slice(&inner[5..]);
        let err = Command::decode(&v2(&body)).unwrap_err();
        assert!(err.to_string().contains("nested"), "{err}");

        let n = BATCH_COMMANDS_MAX + 1;
        let mut body = vec![TAG_BATCH];
        body.extend_from_slice(&(n as u32).to_be_bytes());
        for _ in 0..n {
            body.extend_from_slice(&inner[5..]);
        }
        let err = Command::decode(&v2(&body)).unwrap_err();
        assert!(err.to_string().contains("limit"), "{err}");
    }

    #[test]
    #[should_panic(expected = "never nest")]
    fn encoding_a_nested_batch_is_a_bug() {
        Command::Batch(vec![Command::Batch(vec![])]).encode();
    }

    #[test]
    fn huge_declared_counts_do_not_allocate() {
        // A CreateTopic claiming u32::MAX partitions, with a valid CRC.
        let mut body = vec![TAG_CREATE_TOPIC];
        body.extend_from_slice(&[1; 16]);
        body.extend_from_slice(&1u32.to_be_bytes());
        body.push(b't');
        body.extend_from_slice(&u32::MAX.to_be_bytes());
        let mut bytes = vec![COMMAND_FORMAT_VERSION];
        bytes.extend_from_slice(&crc32c::crc32c(&body).to_be_bytes());
        bytes.extend_from_slice(&body);
        let err = Command::decode(&bytes).unwrap_err();
        assert!(err.to_string().contains("exceeds"), "{err}");
    }
}

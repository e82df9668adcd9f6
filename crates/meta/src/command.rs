//! Metadata commands and their versioned, checksummed binary encoding.
//!
//! Owns: the [`Command`] type and its bytes. Encoding: `version u8 | crc32c u32 (big endian,
//! over everything after it) | tag u8 | fields`, integers big endian, strings and lists with a
//! u32 length. The CRC travels with the command, so a command is self-verifying wherever it is
//! stored or sent (local log, chain). Must never: allocate from a peer-declared length before
//! checking it against the bytes present (decoding runs on replicated, possibly corrupt input).

use std::fmt;

use crate::MetaError;

/// Version of the command encoding. Bump when an existing command's bytes change; decoders
/// reject unknown versions. A new command is a new tag (older decoders reject the unknown tag).
pub const COMMAND_FORMAT_VERSION: u8 = 1;

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

/// Where one partition's replicas live, chosen by the proposer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionAssignment {
    pub partition: i32,
    /// Broker ids; the first is the preferred leader.
    pub replicas: Vec<i32>,
}

/// A deterministic change to the metadata image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// Sets the cluster id, once.
    InitCluster { cluster_id: String },
    /// Registers (or re-registers, with new endpoints) a broker.
    RegisterBroker {
        node_id: i32,
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
}

const TAG_INIT_CLUSTER: u8 = 1;
const TAG_REGISTER_BROKER: u8 = 2;
const TAG_CREATE_TOPIC: u8 = 3;
const TAG_DELETE_TOPIC: u8 = 4;
const TAG_ALLOCATE_PRODUCER_IDS: u8 = 5;
const TAG_ALTER_TOPIC_CONFIGS: u8 = 6;
const TAG_ALTER_BROKER_CONFIGS: u8 = 7;
const TAG_CREATE_PARTITIONS: u8 = 8;

struct Writer(Vec<u8>);

impl Writer {
    fn u8(&mut self, v: u8) {
        self.0.push(v);
    }
    fn i32(&mut self, v: i32) {
        self.0.extend_from_slice(&v.to_be_bytes());
    }
    fn i64(&mut self, v: i64) {
        self.0.extend_from_slice(&v.to_be_bytes());
    }
    fn len(&mut self, n: usize) {
        let n = u32::try_from(n).expect("metadata command field longer than u32::MAX");
        self.0.extend_from_slice(&n.to_be_bytes());
    }
    fn str(&mut self, s: &str) {
        self.len(s.len());
        self.0.extend_from_slice(s.as_bytes());
    }
    fn bool(&mut self, b: bool) {
        self.u8(u8::from(b));
    }
    fn topic_id(&mut self, id: &TopicId) {
        self.0.extend_from_slice(&id.0);
    }
    fn pairs(&mut self, pairs: &[(String, String)]) {
        self.len(pairs.len());
        for (k, v) in pairs {
            self.str(k);
            self.str(v);
        }
    }
    fn strs(&mut self, items: &[String]) {
        self.len(items.len());
        for i in items {
            self.str(i);
        }
    }
    fn assignments(&mut self, partitions: &[PartitionAssignment]) {
        self.len(partitions.len());
        for p in partitions {
            self.i32(p.partition);
            self.len(p.replicas.len());
            for r in &p.replicas {
                self.i32(*r);
            }
        }
    }
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], MetaError> {
        if self.0.len() < n {
            return Err(MetaError::Decode(format!(
                "truncated: need {n} bytes, {} left",
                self.0.len()
            )));
        }
        let (head, tail) = self.0.split_at(n);
        self.0 = tail;
        Ok(head)
    }
    fn u8(&mut self) -> Result<u8, MetaError> {
        Ok(self.take(1)?[0])
    }
    fn i32(&mut self) -> Result<i32, MetaError> {
        Ok(i32::from_be_bytes(
            self.take(4)?.try_into().expect("4 bytes"),
        ))
    }
    fn i64(&mut self) -> Result<i64, MetaError> {
        Ok(i64::from_be_bytes(
            self.take(8)?.try_into().expect("8 bytes"),
        ))
    }
    /// A declared count, checked against the bytes left given each element's minimum size.
    fn count(&mut self, min_element_bytes: usize) -> Result<usize, MetaError> {
        let n = u32::from_be_bytes(self.take(4)?.try_into().expect("4 bytes")) as usize;
        if n.saturating_mul(min_element_bytes.max(1)) > self.0.len() {
            return Err(MetaError::Decode(format!(
                "declared count {n} exceeds the bytes left"
            )));
        }
        Ok(n)
    }
    fn str(&mut self) -> Result<String, MetaError> {
        let n = self.count(1)?;
        String::from_utf8(self.take(n)?.to_vec())
            .map_err(|_| MetaError::Decode("string is not UTF-8".into()))
    }
    fn bool(&mut self) -> Result<bool, MetaError> {
        match self.u8()? {
            0 => Ok(false),
            1 => Ok(true),
            other => Err(MetaError::Decode(format!("bad bool {other}"))),
        }
    }
    fn topic_id(&mut self) -> Result<TopicId, MetaError> {
        Ok(TopicId(self.take(16)?.try_into().expect("16 bytes")))
    }
    fn pairs(&mut self) -> Result<Vec<(String, String)>, MetaError> {
        let n = self.count(8)?;
        let mut pairs = Vec::with_capacity(n);
        for _ in 0..n {
            pairs.push((self.str()?, self.str()?));
        }
        Ok(pairs)
    }
    fn strs(&mut self) -> Result<Vec<String>, MetaError> {
        let n = self.count(4)?;
        let mut items = Vec::with_capacity(n);
        for _ in 0..n {
            items.push(self.str()?);
        }
        Ok(items)
    }
    fn assignments(&mut self) -> Result<Vec<PartitionAssignment>, MetaError> {
        let n = self.count(8)?;
        let mut partitions = Vec::with_capacity(n);
        for _ in 0..n {
            let partition = self.i32()?;
            let m = self.count(4)?;
            let mut replicas = Vec::with_capacity(m);
            for _ in 0..m {
                replicas.push(self.i32()?);
            }
            partitions.push(PartitionAssignment {
                partition,
                replicas,
            });
        }
        Ok(partitions)
    }
}

impl Command {
    /// Encodes with the format version and CRC.
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer(Vec::with_capacity(64));
        w.u8(COMMAND_FORMAT_VERSION);
        w.0.extend_from_slice(&[0; 4]); // CRC placeholder
        match self {
            Command::InitCluster { cluster_id } => {
                w.u8(TAG_INIT_CLUSTER);
                w.str(cluster_id);
            }
            Command::RegisterBroker {
                node_id,
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
                w.0.extend_from_slice(&topic_id.0);
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
        }
        let crc = crc32c::crc32c(&w.0[5..]);
        w.0[1..5].copy_from_slice(&crc.to_be_bytes());
        w.0
    }

    /// Decodes bytes produced by [`Command::encode`]: checks version, CRC, and that every byte
    /// is consumed.
    pub fn decode(bytes: &[u8]) -> Result<Command, MetaError> {
        if bytes.len() > COMMAND_BYTES_MAX {
            return Err(MetaError::Decode(format!(
                "command of {} bytes exceeds the limit",
                bytes.len()
            )));
        }
        let mut r = Reader(bytes);
        let version = r.u8()?;
        if version != COMMAND_FORMAT_VERSION {
            return Err(MetaError::Decode(format!(
                "unknown command format version {version}"
            )));
        }
        let crc = u32::from_be_bytes(r.take(4)?.try_into().expect("4 bytes"));
        if crc32c::crc32c(r.0) != crc {
            return Err(MetaError::Decode("CRC mismatch".into()));
        }
        let cmd = match r.u8()? {
            TAG_INIT_CLUSTER => Command::InitCluster {
                cluster_id: r.str()?,
            },
            TAG_REGISTER_BROKER => {
                let node_id = r.i32()?;
                let host = r.str()?;
                let port = r.i32()?;
                let rack = match r.u8()? {
                    0 => None,
                    1 => Some(r.str()?),
                    other => return Err(MetaError::Decode(format!("bad option flag {other}"))),
                };
                Command::RegisterBroker {
                    node_id,
                    host,
                    port,
                    rack,
                }
            }
            TAG_CREATE_TOPIC => Command::CreateTopic {
                topic_id: r.topic_id()?,
                name: r.str()?,
                partitions: r.assignments()?,
                configs: r.pairs()?,
            },
            TAG_DELETE_TOPIC => Command::DeleteTopic {
                topic_id: r.topic_id()?,
            },
            TAG_ALLOCATE_PRODUCER_IDS => Command::AllocateProducerIds {
                broker_id: r.i32()?,
                first_id: r.i64()?,
                count: r.i64()?,
            },
            TAG_ALTER_TOPIC_CONFIGS => Command::AlterTopicConfigs {
                topic_id: r.topic_id()?,
                replace_all: r.bool()?,
                set: r.pairs()?,
                delete: r.strs()?,
            },
            TAG_ALTER_BROKER_CONFIGS => Command::AlterBrokerConfigs {
                broker_id: match r.u8()? {
                    0 => None,
                    1 => Some(r.i32()?),
                    other => return Err(MetaError::Decode(format!("bad option flag {other}"))),
                },
                replace_all: r.bool()?,
                set: r.pairs()?,
                delete: r.strs()?,
            },
            TAG_CREATE_PARTITIONS => Command::CreatePartitions {
                topic_id: r.topic_id()?,
                new_assignments: r.assignments()?,
            },
            tag => return Err(MetaError::Decode(format!("unknown command tag {tag}"))),
        };
        if !r.0.is_empty() {
            return Err(MetaError::Decode(format!(
                "{} trailing bytes after command",
                r.0.len()
            )));
        }
        Ok(cmd)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn samples() -> Vec<Command> {
        vec![
            Command::InitCluster {
                cluster_id: "c1".into(),
            },
            Command::RegisterBroker {
                node_id: 1,
                host: "h".into(),
                port: 9092,
                rack: Some("r".into()),
            },
            Command::RegisterBroker {
                node_id: 2,
                host: "h".into(),
                port: 9092,
                rack: None,
            },
            Command::CreateTopic {
                topic_id: TopicId([7; 16]),
                name: "t".into(),
                partitions: vec![
                    PartitionAssignment {
                        partition: 0,
                        replicas: vec![1],
                    },
                    PartitionAssignment {
                        partition: 1,
                        replicas: vec![1, 2],
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
                new_assignments: vec![PartitionAssignment {
                    partition: 2,
                    replicas: vec![1],
                }],
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

//! Cluster metadata for Josefine: versioned deterministic commands, the metadata image (a pure
//! state machine), their binary encoding, image snapshots ([`snapshot`]), the controller's
//! decisions ([`controller`], [`placement`]) as pure functions of the image and time given as
//! input, and the durable local command log.
//!
//! Owns: what a topic (with its partitions and config overrides), a broker registration, a
//! dynamic broker config, a producer-id block and an ACL *are* in the cluster, which config names
//! and values are valid ([`topic_config`], [`broker_config`]), who may do what ([`acl`]: the
//! authorization decision as a pure function of the image), and the rules for changing them,
//! including membership (registration, fencing, controlled shutdown) and partition leadership
//! (leader, ISR, epochs). Every change is a [`Command`] that carries everything it needs
//! (topic ids, partition assignments, id ranges are chosen by the proposer, never on apply), so
//! applying the same commands in the same order gives the same [`Image`] on every node.
//! Must never: read clocks, randomness, sockets or files (except [`command_log`], the local
//! durable backend). That is what lets the chain replicate it and the simulator replay it.

pub mod acl;
pub mod broker_config;
mod codec;
pub mod command;
pub mod command_log;
pub mod controller;
pub mod group_config;
pub mod image;
pub mod kafka_broker_configs;
pub mod placement;
pub mod scram;
pub mod snapshot;
pub mod topic_config;

pub use command::{
    Command, ListenerEndpoint, PartitionAssignment, TopicId, BATCH_COMMANDS_MAX,
    COMMAND_FORMAT_VERSION,
};
pub use command_log::CommandLog;
pub use image::{Applied, BrokerRegistration, Image, Topic};

/// Errors of the metadata crate. `kafka_error_code` gives the code a handler returns.
#[derive(Debug, thiserror::Error)]
pub enum MetaError {
    #[error("topic '{0}' already exists")]
    TopicAlreadyExists(String),
    #[error("topic id {0} already exists")]
    TopicIdAlreadyExists(TopicId),
    #[error("unknown topic id {0}")]
    UnknownTopicId(TopicId),
    #[error("invalid topic name '{name}': {reason}")]
    InvalidTopicName { name: String, reason: String },
    #[error("invalid partitions: {0}")]
    InvalidPartitions(String),
    #[error("invalid replica assignment: {0}")]
    InvalidReplicaAssignment(String),
    #[error("invalid topic config: {0}")]
    InvalidConfig(String),
    #[error("invalid producer id block: {0}")]
    InvalidProducerIdBlock(String),
    #[error("invalid broker registration: {0}")]
    InvalidBrokerRegistration(String),
    #[error("broker {0} is not registered")]
    BrokerNotRegistered(i32),
    #[error("broker {node_id} is registered with epoch {current}, not {given}")]
    StaleBrokerEpoch {
        node_id: i32,
        current: i64,
        given: i64,
    },
    #[error("broker {node_id} is already registered by this incarnation, with epoch {epoch}")]
    DuplicateBrokerRegistration { node_id: i32, epoch: i64 },
    /// Kafka's rule: another incarnation of this node id is registered, unfenced, with a live
    /// session (a second process with the same id, or a restart before the old session ended).
    #[error("Another broker is registered with that broker id ({0}).")]
    BrokerIdInUse(i32),
    #[error("broker {node_id} {reason}")]
    InvalidBrokerState { node_id: i32, reason: String },
    #[error("unknown partition {topic_id}-{partition}")]
    UnknownPartition { topic_id: TopicId, partition: i32 },
    #[error("partition {topic_id}-{partition} is at partition epoch {current}, not {expected}")]
    StalePartitionEpoch {
        topic_id: TopicId,
        partition: i32,
        current: i32,
        expected: i32,
    },
    #[error("invalid partition change: {0}")]
    InvalidPartitionChange(String),
    #[error("ineligible replica: {0}")]
    IneligibleReplica(String),
    #[error("{0}")]
    InvalidReplicationFactor(String),
    #[error("invalid metadata image snapshot: {0}")]
    InvalidSnapshot(String),
    #[error("invalid batch: {0}")]
    InvalidBatch(String),
    /// A CreateAcls/DeleteAcls command Kafka would refuse (INVALID_REQUEST).
    #[error("{0}")]
    InvalidAcl(String),
    /// An AlterScramCredentials command the image refuses (the handler checks first).
    #[error("invalid SCRAM credential change: {0}")]
    InvalidScramCredential(String),
    #[error("cluster id is already set to '{0}'")]
    ClusterIdAlreadySet(String),
    #[error("cannot decode metadata command: {0}")]
    Decode(String),
    #[error("metadata command log I/O error: {0}")]
    Io(#[from] std::io::Error),
    #[error("metadata store is shutting down")]
    ShuttingDown,
    /// Only the metadata chain's leader takes changes; nothing was proposed.
    #[error("this broker does not lead the metadata chain (leader: {leader:?})")]
    NotController { leader: Option<i32> },
    /// The change may or may not have been committed (or was not proposed in time): retry.
    #[error("{0}")]
    TimedOut(String),
}

impl MetaError {
    /// The Kafka error code a client should see for this error.
    pub fn kafka_error_code(&self) -> i16 {
        match self {
            MetaError::TopicAlreadyExists(_) | MetaError::TopicIdAlreadyExists(_) => 36, // TOPIC_ALREADY_EXISTS
            MetaError::UnknownTopicId(_) => 100, // UNKNOWN_TOPIC_ID
            MetaError::InvalidTopicName { .. } => 17, // INVALID_TOPIC_EXCEPTION
            MetaError::InvalidPartitions(_) => 37, // INVALID_PARTITIONS
            MetaError::InvalidReplicationFactor(_) => 38, // INVALID_REPLICATION_FACTOR
            MetaError::InvalidReplicaAssignment(_) => 39, // INVALID_REPLICA_ASSIGNMENT
            MetaError::InvalidConfig(_) => 40,   // INVALID_CONFIG
            MetaError::InvalidScramCredential(_) => 96, // UNACCEPTABLE_CREDENTIAL
            MetaError::ShuttingDown => 15,       // COORDINATOR_NOT_AVAILABLE
            MetaError::NotController { .. } => 41, // NOT_CONTROLLER
            MetaError::TimedOut(_) => 7,         // REQUEST_TIMED_OUT
            MetaError::UnknownPartition { .. } => 3, // UNKNOWN_TOPIC_OR_PARTITION
            MetaError::InvalidPartitionChange(_)
            | MetaError::InvalidBatch(_)
            | MetaError::InvalidAcl(_) => 42, // INVALID_REQUEST
            MetaError::StaleBrokerEpoch { .. } => 77, // STALE_BROKER_EPOCH
            MetaError::StalePartitionEpoch { .. } => 95, // INVALID_UPDATE_VERSION
            MetaError::DuplicateBrokerRegistration { .. } | MetaError::BrokerIdInUse(_) => 101, // DUPLICATE_BROKER_REGISTRATION
            MetaError::BrokerNotRegistered(_) => 102, // BROKER_ID_NOT_REGISTERED
            MetaError::IneligibleReplica(_) => 107,   // INELIGIBLE_REPLICA
            MetaError::InvalidBrokerRegistration(_) => 119, // INVALID_REGISTRATION
            _ => -1,                                  // UNKNOWN_SERVER_ERROR
        }
    }
}

/// Kafka's topic name rule: 1 to 249 characters of `[a-zA-Z0-9._-]`, not `.` or `..`.
pub fn validate_topic_name(name: &str) -> Result<(), MetaError> {
    let bad = |reason: &str| {
        Err(MetaError::InvalidTopicName {
            name: name.to_string(),
            reason: reason.to_string(),
        })
    };
    if name.is_empty() {
        return bad("topic name is empty");
    }
    if name == "." || name == ".." {
        return bad("topic name cannot be '.' or '..'");
    }
    if name.len() > TOPIC_NAME_BYTES_MAX {
        return bad("topic name is longer than 249 characters");
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'_' || b == b'-')
    {
        return bad("topic names may only contain ASCII alphanumerics, '.', '_' and '-'");
    }
    Ok(())
}

/// Longest topic name (Kafka: a partition directory name must fit in 255 bytes).
pub const TOPIC_NAME_BYTES_MAX: usize = 249;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topic_names_follow_kafka_rules() {
        for ok in ["a", "orders", "a.b_c-D9", &"x".repeat(249)] {
            assert!(validate_topic_name(ok).is_ok(), "{ok}");
        }
        for bad in ["", ".", "..", "a b", "a/b", "ü", &"x".repeat(250)] {
            assert!(validate_topic_name(bad).is_err(), "{bad}");
        }
    }
}

//! One handler per Kafka API. Each takes the decoded request and the shared [`Broker`] and
//! returns the response body; the connection owns framing and ordering.
//!
//! Handlers stay thin: they translate between Kafka messages and the metadata store / partition
//! logs, and choose error codes. Must never: block an async worker on file I/O (use
//! `Broker::blocking`), or trust a client-sent size without clamping it to a limit.
//!
//! [`Broker`]: crate::broker::Broker

pub mod add_offsets_to_txn;
pub mod add_partitions_to_txn;
pub mod alter_configs;
pub mod alter_user_scram_credentials;
pub mod api_versions;
pub mod create_acls;
pub mod create_partitions;
pub mod create_topics;
pub mod delete_acls;
pub mod delete_records;
pub mod delete_topics;
pub mod describe_acls;
pub mod describe_client_quotas;
pub mod describe_cluster;
pub mod describe_configs;
pub mod describe_log_dirs;
pub mod describe_producers;
pub mod describe_topic_partitions;
pub mod describe_transactions;
pub mod describe_user_scram_credentials;
pub mod end_txn;
pub mod fetch;
pub mod find_coordinator;
pub mod groups;
pub mod incremental_alter_configs;
pub mod init_producer_id;
pub mod list_offsets;
pub mod list_partition_reassignments;
pub mod metadata;
pub mod offset_for_leader_epoch;
pub mod produce;
pub mod sasl_authenticate;
pub mod sasl_handshake;
pub mod txn_offset_commit;
pub mod write_txn_markers;

/// Whether topics with `replication_factor` replicas may be created: THE one switch for
/// replication, on since followers replicate (`crate::replication`: fetchers, leader states,
/// the high watermark following the ISR; tests/integration/test_cluster_replication.py).
pub fn replication_factor_supported(replication_factor: i16) -> bool {
    replication_factor >= 1
}

/// Kafka error codes used by the handlers (names as in Kafka's `Errors` enum).
pub mod code {
    pub const NONE: i16 = 0;
    pub const UNKNOWN_SERVER_ERROR: i16 = -1;
    pub const OFFSET_OUT_OF_RANGE: i16 = 1;
    pub const UNKNOWN_TOPIC_OR_PARTITION: i16 = 3;
    pub const LEADER_NOT_AVAILABLE: i16 = 5;
    pub const NOT_LEADER_OR_FOLLOWER: i16 = 6;
    pub const REQUEST_TIMED_OUT: i16 = 7;
    pub const REPLICA_NOT_AVAILABLE: i16 = 9;
    pub const NETWORK_EXCEPTION: i16 = 13;
    pub const COORDINATOR_LOAD_IN_PROGRESS: i16 = 14;
    pub const COORDINATOR_NOT_AVAILABLE: i16 = 15;
    pub const NOT_COORDINATOR: i16 = 16;
    pub const INVALID_TOPIC_EXCEPTION: i16 = 17;
    pub const NOT_ENOUGH_REPLICAS: i16 = 19;
    pub const NOT_ENOUGH_REPLICAS_AFTER_APPEND: i16 = 20;
    pub const INVALID_REQUIRED_ACKS: i16 = 21;
    pub const UNSUPPORTED_VERSION: i16 = 35;
    pub const TOPIC_ALREADY_EXISTS: i16 = 36;
    pub const INVALID_PARTITIONS: i16 = 37;
    pub const INVALID_REPLICATION_FACTOR: i16 = 38;
    pub const INVALID_REPLICA_ASSIGNMENT: i16 = 39;
    pub const INVALID_CONFIG: i16 = 40;
    pub const NOT_CONTROLLER: i16 = 41;
    pub const INVALID_REQUEST: i16 = 42;
    pub const TOPIC_AUTHORIZATION_FAILED: i16 = 29;
    pub const GROUP_AUTHORIZATION_FAILED: i16 = 30;
    pub const CLUSTER_AUTHORIZATION_FAILED: i16 = 31;
    pub const INVALID_PRODUCER_EPOCH: i16 = 47;
    pub const INVALID_TXN_STATE: i16 = 48;
    pub const CONCURRENT_TRANSACTIONS: i16 = 51;
    pub const TRANSACTIONAL_ID_AUTHORIZATION_FAILED: i16 = 53;
    pub const SECURITY_DISABLED: i16 = 54;
    pub const OPERATION_NOT_ATTEMPTED: i16 = 55;
    pub const KAFKA_STORAGE_ERROR: i16 = 56;
    pub const FETCH_SESSION_ID_NOT_FOUND: i16 = 70;
    pub const FENCED_LEADER_EPOCH: i16 = 74;
    pub const UNKNOWN_LEADER_EPOCH: i16 = 76;
    pub const OFFSET_NOT_AVAILABLE: i16 = 78;
    pub const INVALID_RECORD: i16 = 87;
    pub const PRODUCER_FENCED: i16 = 90;
    pub const UNKNOWN_TOPIC_ID: i16 = 100;
    pub const INELIGIBLE_REPLICA: i16 = 107;
    pub const INVALID_UPDATE_VERSION: i16 = 108;
    pub const MISMATCHED_ENDPOINT_TYPE: i16 = 114;
    pub const TRANSACTION_ABORTABLE: i16 = 120;
    pub const UNSUPPORTED_ENDPOINT_TYPE: i16 = 115;
}

use josefine_meta::TopicId;
use kafka_protocol::messages::TopicName;
use kafka_protocol::protocol::StrBytes;
use uuid::Uuid;

pub(crate) fn topic_name(name: &str) -> TopicName {
    TopicName(StrBytes::from_string(name.to_string()))
}

pub(crate) fn uuid_of(id: TopicId) -> Uuid {
    Uuid::from_bytes(id.0)
}

pub(crate) fn topic_id_of(id: Uuid) -> TopicId {
    TopicId(id.into_bytes())
}

pub(crate) fn str_bytes(s: impl Into<String>) -> StrBytes {
    StrBytes::from_string(s.into())
}

/// Kafka's internal topics (`Topic.isInternal`): clients may not delete their records, and
/// describe answers mark them `is_internal`.
pub(crate) fn is_internal_topic(name: &str) -> bool {
    matches!(
        name,
        "__consumer_offsets" | "__transaction_state" | "__share_group_state"
    )
}

/// Kafka `AclOperation` codes of the operations a topic supports (`AclEntry.supportedOperations`
/// for TOPIC): READ, WRITE, CREATE, DELETE, ALTER, DESCRIBE, DESCRIBE_CONFIGS, ALTER_CONFIGS.
pub(crate) const TOPIC_OPERATIONS: &[u8] = &[3, 4, 5, 6, 7, 8, 10, 11];

/// The same for CLUSTER: CREATE, ALTER, DESCRIBE, CLUSTER_ACTION, DESCRIBE_CONFIGS,
/// ALTER_CONFIGS, IDEMPOTENT_WRITE.
pub(crate) const CLUSTER_OPERATIONS: &[u8] = &[5, 7, 8, 9, 10, 11, 12];

/// An `authorized_operations` bit field: without an authorizer Kafka grants every supported
/// operation, and so do we (there are no ACLs).
pub(crate) fn authorized_operations(operations: &[u8]) -> i32 {
    operations.iter().fold(0, |bits, op| bits | (1 << op))
}

#[cfg(test)]
pub(crate) mod testing {
    //! Handler unit tests' single-node broker.
    use crate::config::{Config, ServeArgs};
    use crate::server::RunningBroker;

    /// A single-node broker on free loopback ports over `dir`.
    pub(crate) async fn single_node(dir: &std::path::Path) -> RunningBroker {
        let config = Config::resolve(ServeArgs {
            listen: Some("127.0.0.1:0".into()),
            raft_listen: Some("127.0.0.1:0".into()),
            data_dir: Some(dir.to_path_buf()),
            ..ServeArgs::default()
        })
        .unwrap();
        crate::server::start(config).await.unwrap()
    }
}

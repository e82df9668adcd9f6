//! The classic-protocol consumer group coordinator, as a pure state machine.
//!
//! This crate owns group membership (JoinGroup/SyncGroup/Heartbeat/LeaveGroup, rebalances,
//! static membership), committed offsets (OffsetCommit/OffsetFetch/OffsetDelete), group
//! administration (DescribeGroups/ListGroups/DeleteGroups) and the byte formats of the
//! `__consumer_offsets` records that make all of it durable.
//!
//! It never does I/O, never reads a clock and never draws randomness: requests, the current
//! time and append acknowledgements go in; responses and records to append come out as
//! [`Effect`]s. That keeps it deterministic, so the simulator can replay any interleaving and
//! the broker stays a thin driver. Start reading at [`Coordinator`].

mod config;
mod coordinator;
mod group;
mod partition;
pub mod records;

pub use config::{GroupConfig, NEW_MEMBER_JOIN_TIMEOUT_MS, OFFSETS_TOPIC_PARTITIONS_DEFAULT};
pub use coordinator::{
    AppendId, AppendOutcome, Coordinator, Effect, GroupRequest, GroupResponse, RequestContext,
    RequestId,
};
pub use group::GroupState;
pub use partition::{java_string_hash, partition_for};
pub use records::OffsetsRecord;

/// Errors returned by this crate's fallible calls (bad input or bad configuration; request
/// level problems are Kafka error codes inside responses instead).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum GroupError {
    /// A `__consumer_offsets` record could not be decoded.
    #[error("corrupt __consumer_offsets record: {0}")]
    CorruptRecord(String),
    /// A load call for a partition that is not in the loading state.
    #[error("partition {0} of __consumer_offsets is not being loaded")]
    NotLoading(i32),
    /// The configuration cannot work.
    #[error("invalid group coordinator configuration: {0}")]
    InvalidConfig(String),
}

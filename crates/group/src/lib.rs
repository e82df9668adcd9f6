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
//!
//! # Driving it (what the broker does)
//!
//! - Startup / leadership gained for `__consumer_offsets` partition `p`: `begin_load(p)`,
//!   then `load_record(p, key, value)` for every record in log order (value `None` for a
//!   tombstone; skip control batches), then `complete_load(p, now_ms)` (its effects may hold
//!   tombstones for topics deleted during the load). Until then requests
//!   for its groups get COORDINATOR_LOAD_IN_PROGRESS; groups of partitions never loaded get
//!   NOT_COORDINATOR. Leadership lost: `unload(p)`.
//! - FindCoordinator: the coordinator of a group is the leader of partition
//!   `partition_for(group_id)` of `__consumer_offsets`.
//! - Each JoinGroup/SyncGroup/Heartbeat/LeaveGroup/OffsetCommit/OffsetFetch/DescribeGroups/
//!   ListGroups/DeleteGroups/OffsetDelete request: `handle(ctx, request, now_ms)` with the
//!   request id, API version, client id and client host in `ctx`.
//! - Every call returns `Vec<Effect>`. `Effect::Respond` goes to the connection of its
//!   `request_id` (possibly much later than the request: joins wait for the rebalance).
//!   `Effect::Append` records go to the named partition as one batch; once durable (or failed)
//!   call `on_append_complete(append_id, outcome, now_ms)`, which releases waiting responses.
//! - Timers: after any call, re-arm one timer at `next_deadline_ms()`; when it fires call
//!   `tick(now_ms)`.
//! - A topic deleted: `on_topic_deleted(topic, now_ms)`.

mod config;
mod coordinator;
mod group;
mod partition;
pub mod records;

pub use config::{GroupConfig, NEW_MEMBER_JOIN_TIMEOUT_MS, OFFSETS_TOPIC_PARTITIONS_DEFAULT};
pub use coordinator::{
    AppendId, AppendOutcome, Coordinator, CoordinatorStats, Effect, GroupRequest, GroupResponse,
    RequestContext, RequestId,
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

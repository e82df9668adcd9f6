//! The Josefine broker: the only crate that knows about tokio and sockets.
//!
//! Follow a request: [`server`] (listener) -> [`connection`] (frames, ordering) -> [`codec`]
//! (header + body decode) -> [`dispatch`] -> `handlers/<api>.rs` (which ask [`leadership`]
//! whether the image lets this broker serve the partition) -> [`partitions`] /
//! `josefine_log::PartitionLog` (produce, fetch) or [`metadata`] (the chain) -> `josefine_meta`
//! (topics) -> reply back through [`connection`]. Consumer-group APIs go `handlers/groups.rs` ->
//! [`groups`] (the task that drives `josefine_group::Coordinator` and writes its records to
//! `__consumer_offsets`; [`coordinator_partitions`] follows, loads and appends to its partitions,
//! and those of `__transaction_state` for [`txn`]).
//! Configuration is in [`config`], every network limit in [`limits`], and [`alloc_guard`] keeps
//! hostile array counts from aborting the process (see its doc). Operators read [`metrics`]
//! and the health checks through [`http`] (`--http-listen`).

pub mod alloc_guard;
pub mod api_versions;
pub mod authz;
pub mod broker;
pub mod clock;
pub mod codec;
pub mod config;
pub mod connection;
pub mod control;
pub mod controller;
pub mod coordinator_partitions;
pub mod dispatch;
pub mod error;
#[doc(hidden)]
pub mod fuzzing;
pub mod groups;
pub mod handlers;
pub mod http;
pub mod leadership;
pub mod limits;
pub mod maintenance;
pub mod metadata;
pub mod metrics;
pub mod partitions;
pub mod raft;
pub mod replication;
pub mod security;
pub mod server;
pub mod txn;
pub mod zero_copy;

/// Installed for every binary that links this crate (the broker, its tests, the fuzz target),
/// so the decode path is always exercised with the guard in place.
#[global_allocator]
static GLOBAL: alloc_guard::GuardedAllocator = alloc_guard::GuardedAllocator;

//! The transaction coordinator, as a pure state machine, and the `__transaction_state`
//! record formats.
//!
//! This crate owns what Kafka's `TransactionCoordinator`, `TransactionStateManager`,
//! `TransactionMetadata` and the coordinator half of `TransactionMarkerChannelManager` do:
//! the state of every transactional id of the `__transaction_state` partitions this broker
//! leads, Kafka's transition rules between them, and the bytes that make them durable.
//!
//! It never does I/O, never reads a clock and never draws randomness: requests, the current
//! time and completions go in; responses, records to append and markers to send come out as
//! [`Effect`]s. That keeps it deterministic, so tests drive it with simulated time and the
//! broker stays a thin driver. Start reading at [`Coordinator`].
//!
//! # Driving it (what the broker does)
//!
//! - Leadership gained for `__transaction_state` partition `p` at leader epoch `e`:
//!   `begin_load(p)`, `load_record(p, key, value)` for every record in log order (value `None`
//!   for a tombstone; a corrupt record returns an error: log it and go on), then
//!   `complete_load(p, e, now_ms)`; `e` is the coordinator epoch every marker carries. Its
//!   effects resend the markers of transactions found in Prepare*. Until then requests for its
//!   ids get COORDINATOR_LOAD_IN_PROGRESS; ids of partitions never loaded get NOT_COORDINATOR.
//!   Leadership lost: `unload(p)`.
//! - FindCoordinator with key type 1: the coordinator of an id is the leader of partition
//!   `partition_for(transactional_id)` of `__transaction_state`.
//! - InitProducerId (with a transactional id), AddPartitionsToTxn, AddOffsetsToTxn, EndTxn,
//!   DescribeTransactions, ListTransactions: `handle(ctx, request, now_ms)`, with the request
//!   id, API version and (AddPartitionsToTxn) the partitions missing from the metadata image in
//!   `ctx`.
//! - Every call returns `Vec<Effect>`:
//!   - `Respond` goes to the connection of its `request_id`, possibly much later.
//!   - `Append` records go to the named partition as one batch with acks=all; once durable
//!     (or failed) call `on_append_complete(append_id, outcome, now_ms)`. Every state change
//!     waits for this: nothing is applied or answered before its record is durable.
//!   - `SendMarkers`: one WriteTxnMarkers entry per partition leader (this broker included),
//!     then `on_markers_complete(marker_id, results, now_ms)` with a [`MarkerResult`] per
//!     partition ([`MarkerResult::from_error_code`] reads Kafka's codes; a partition whose
//!     topic is gone is `PartitionGone`). Complete* is appended once all are written.
//!   - `AllocateProducerIds`: see below.
//! - Timers: after any call, re-arm one timer at `next_deadline_ms()`; when it fires call
//!   `tick(now_ms)` (timeouts, id expiry, marker retries).
//!
//! # Producer ids
//!
//! The coordinator needs fresh producer ids (a new transactional id, epoch exhaustion) but
//! cannot allocate them: blocks come from the chain, through the broker. So the driver hands
//! ids in and the coordinator uses them in order: `on_producer_ids(first, count)` gives it a
//! block; when fewer than [`limits::PRODUCER_IDS_LOW_WATER`] remain it emits
//! [`Effect::AllocateProducerIds`] (once, until the next `on_producer_ids` or
//! `on_producer_ids_failed`). A request that needs an id while none is in hand gets
//! COORDINATOR_LOAD_IN_PROGRESS, which clients retry: exactly what Kafka's
//! `RPCProducerIdManager` answers while its next block is on the way.

pub mod codes;
mod config;
mod coordinator;
pub mod limits;
pub mod records;
pub mod state;

pub use config::{TxnConfig, TRANSACTION_STATE_PARTITIONS_DEFAULT};
pub use coordinator::{
    AppendId, AppendOutcome, Coordinator, Effect, MarkerId, MarkerResult, RequestContext,
    RequestId, TxnRequest, TxnResponse,
};
pub use records::{TxnLogValue, TxnRecord};
pub use state::{TopicPartition, TxnMetadata, TxnState};

/// Errors returned by this crate's fallible calls (bad input or bad configuration; request
/// level problems are Kafka error codes inside responses instead).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TxnError {
    /// A `__transaction_state` record could not be decoded.
    #[error("corrupt __transaction_state record: {0}")]
    CorruptRecord(String),
    /// A load call for a partition that is not in the loading state.
    #[error("partition {0} of __transaction_state is not being loaded")]
    NotLoading(i32),
    /// The configuration cannot work.
    #[error("invalid transaction coordinator configuration: {0}")]
    InvalidConfig(String),
}

//! The transaction coordinator, as a pure state machine, and the `__transaction_state`
//! record formats.
//!
//! This crate owns what Kafka's `TransactionCoordinator`, `TransactionStateManager`,
//! `TransactionMetadata` and the coordinator half of `TransactionMarkerChannelManager` do:
//! the state of every transactional id of the `__transaction_state` partitions this broker
//! leads, Kafka's transition rules between them, and the bytes that make them durable.
//!
//! It never does I/O, never reads a clock and never draws randomness: requests, the current
//! time and completions go in; responses, records to append and markers to send come out.

pub mod codes;
mod config;
pub mod limits;
pub mod records;
pub mod state;

pub use config::{TxnConfig, TRANSACTION_STATE_PARTITIONS_DEFAULT};
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

//! The broker crate's error type.
//!
//! Owns: errors that stop the broker from starting or keep a component from working. Errors
//! answered to clients are Kafka error codes inside responses, not this type.

/// Errors of the broker library.
#[derive(Debug, thiserror::Error)]
pub enum BrokerError {
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    #[error("storage: {0}")]
    Log(#[from] josefine_log::LogError),
    #[error("metadata: {0}")]
    Meta(#[from] josefine_meta::MetaError),
    #[error("group coordinator: {0}")]
    Group(#[from] josefine_group::GroupError),
    #[error("transaction coordinator: {0}")]
    Txn(#[from] josefine_txn::TxnError),
    #[error("I/O: {0}")]
    Io(#[from] std::io::Error),
    #[error(transparent)]
    Identity(#[from] crate::metadata::identity::IdentityError),
    #[error("metadata chain: {0}")]
    Chain(String),
    #[error("importing the legacy metadata log: {0}")]
    Import(String),
    #[error("data directory {path} is for node {found}, not {expected}")]
    WrongNode {
        path: String,
        found: String,
        expected: i32,
    },
}

//! The one error type of the chain crate: bad bytes from the wire or disk, and I/O failures.
//! Broken internal invariants are `assert!`s, never values of this type.

use crate::block::BlockId;

#[derive(Debug, thiserror::Error)]
pub enum ChainError {
    #[error("frame incomplete: need {needed} more bytes")]
    Incomplete { needed: usize },
    #[error("frame of {len} bytes exceeds the limit of {max}")]
    FrameTooLarge { len: usize, max: usize },
    #[error("unsupported codec version {0}")]
    UnsupportedVersion(u8),
    #[error("malformed message: {0}")]
    Malformed(&'static str),
    #[error("recovered head {0} is not in the recovered block tree")]
    HeadMissing(BlockId),
    #[error("invalid configuration: {0}")]
    InvalidConfig(&'static str),
    #[error("snapshot root {root} is not a committed, applied block on this chain")]
    BadSnapshotRoot { root: BlockId },
    #[error("storage corrupt: {0}")]
    Corrupt(String),
    #[error("storage I/O: {0}")]
    Io(#[from] std::io::Error),
}

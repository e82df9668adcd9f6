//! Chained Raft: the consensus core, its message codec and its on-disk storage.
//!
//! The log is a tree of immutable blocks, each naming its parent; a server only ever appends
//! and dead branches are garbage-collected once the commit point passes the fork. The design
//! and its invariants are in `docs/chain-protocol.md`; the formats are in
//! `docs/chain-format.md`.
//!
//! - [`node`]: the pure core. It is driven by `tick`, `step` and `propose` and hands back a
//!   [`Ready`] of effects. It must never do I/O, read a clock or draw unseeded randomness:
//!   that is what lets `josefine-sim` replay any run from a seed.
//! - [`tree`]: the in-memory block tree the core owns (ancestry, GC, compaction).
//! - [`codec`]: the versioned, length-prefixed binary encoding of every message, as pure
//!   functions over bytes.
//! - [`storage`]: the append-only on-disk chain store (std::fs, synchronous).

pub mod block;
pub mod codec;
pub mod error;
pub mod limits;
pub mod message;
pub mod node;
pub mod rng;
pub mod storage;
pub mod tree;

pub use block::{Block, BlockId, BlockKind, NodeId, Snapshot, GENESIS};
pub use error::ChainError;
pub use message::{Envelope, Message};
pub use node::{
    Config, HardState, Mutation, Node, ProposalId, ProposalOutcome, ProposeError, Ready, Recovered,
    Role,
};

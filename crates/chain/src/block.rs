//! Block identity and content: the immutable unit of the chain.
//!
//! A block is never changed once created; its id `(term, height)` is unique cluster-wide
//! because one leader per term creates blocks on one chain. Nothing here knows about
//! replication or storage.

use bytes::Bytes;

/// A server id, as configured in the voter list.
pub type NodeId = u64;

/// `(term, height)`: the unique name of a block. Ordered by height first, then term, so a
/// `BTreeMap` keyed by it walks the tree level by level.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct BlockId {
    pub height: u64,
    pub term: u64,
}

impl BlockId {
    pub const fn new(term: u64, height: u64) -> BlockId {
        BlockId { height, term }
    }
}

impl std::fmt::Display for BlockId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}", self.term, self.height)
    }
}

/// The genesis block: height 0, term 0, the root of every chain before the first snapshot.
pub const GENESIS: BlockId = BlockId::new(0, 0);

/// What a block carries. `Config` is reserved for one-at-a-time membership changes (the
/// active voter set will be the latest config block on the path to `head`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum BlockKind {
    /// The empty block a new leader appends in its own term (Raft's no-op).
    Noop,
    /// An application command.
    Data,
    /// Reserved: a voter-set change. Not produced yet.
    Config,
}

impl BlockKind {
    pub fn to_u8(self) -> u8 {
        match self {
            BlockKind::Noop => 0,
            BlockKind::Data => 1,
            BlockKind::Config => 2,
        }
    }
    pub fn from_u8(v: u8) -> Option<BlockKind> {
        match v {
            0 => Some(BlockKind::Noop),
            1 => Some(BlockKind::Data),
            2 => Some(BlockKind::Config),
            _ => None,
        }
    }
}

/// An immutable block: its id, its parent's id and its payload.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Block {
    pub id: BlockId,
    pub parent: BlockId,
    pub kind: BlockKind,
    pub payload: Bytes,
}

impl Block {
    /// True when the block is well formed on its own: one above its parent, and a term no
    /// lower than its parent's (a chain's terms never decrease).
    pub fn links_to_parent(&self) -> bool {
        self.id.height == self.parent.height + 1 && self.id.term >= self.parent.term
    }
}

/// The base of a server's chain: the state machine state as of `root`, plus the voter set in
/// force there. Blocks at or below `root` are gone once a snapshot is taken.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Snapshot {
    pub root: BlockId,
    pub voters: Vec<NodeId>,
    pub state: Bytes,
}

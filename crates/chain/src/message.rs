//! The messages servers exchange. Pure data; encoding is in [`crate::codec`].
//!
//! A block id carries its height, so the spec's `head_height` and `leader_commit_height` are
//! the `height` of `head` and `leader_commit`.

use crate::block::{Block, BlockId, NodeId, Snapshot};

/// A message with its sender and addressee.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Envelope {
    pub from: NodeId,
    pub to: NodeId,
    pub message: Message,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Message {
    /// A parent-linked run from the leader's chain starting right after `prev`; no blocks
    /// means a heartbeat whose `prev` is the follower's last known match.
    Append {
        term: u64,
        leader: NodeId,
        prev: BlockId,
        blocks: Vec<Block>,
        leader_commit: BlockId,
    },
    /// `matched` is the last block of the run (or `prev`), durable together with `head`.
    AppendReply {
        term: u64,
        success: bool,
        matched: BlockId,
        head: BlockId,
        commit: BlockId,
    },
    /// A vote request. `pre` marks a PreVote (term = candidate's term + 1, changes no state).
    /// `head_term` is `head.term` (a mutation in the simulator may send something else);
    /// `transfer` is set when the election follows a TimeoutNow and may break a leader lease.
    Vote {
        term: u64,
        candidate: NodeId,
        head: BlockId,
        head_term: u64,
        pre: bool,
        transfer: bool,
    },
    VoteReply {
        term: u64,
        granted: bool,
        pre: bool,
    },
    InstallSnapshot {
        term: u64,
        leader: NodeId,
        snapshot: Snapshot,
    },
    /// Leadership transfer: start an election now, skipping PreVote.
    TimeoutNow {
        term: u64,
        leader: NodeId,
    },
}

impl Message {
    pub fn term(&self) -> u64 {
        match self {
            Message::Append { term, .. }
            | Message::AppendReply { term, .. }
            | Message::Vote { term, .. }
            | Message::VoteReply { term, .. }
            | Message::InstallSnapshot { term, .. }
            | Message::TimeoutNow { term, .. } => *term,
        }
    }

    /// A short name for logs and metrics.
    pub fn kind_name(&self) -> &'static str {
        match self {
            Message::Append { blocks, .. } if blocks.is_empty() => "heartbeat",
            Message::Append { .. } => "append",
            Message::AppendReply { .. } => "append_reply",
            Message::Vote { pre: true, .. } => "pre_vote",
            Message::Vote { .. } => "vote",
            Message::VoteReply { pre: true, .. } => "pre_vote_reply",
            Message::VoteReply { .. } => "vote_reply",
            Message::InstallSnapshot { .. } => "install_snapshot",
            Message::TimeoutNow { .. } => "timeout_now",
        }
    }
}

//! The Chained Raft core: one server's consensus state machine, pure logic.
//!
//! Driven by [`Node::tick`], [`Node::step`] and [`Node::propose`]; every effect is collected in
//! a [`Ready`] the driver takes, carries out in the documented order, then acknowledges with
//! [`Node::advance`]. The core never does I/O, never reads a clock and draws randomness only
//! from the seed it was given, so the simulator can replay any run. Rule numbers in comments
//! refer to `docs/chain-protocol.md`.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use bytes::Bytes;

use crate::block::{Block, BlockId, BlockKind, NodeId, Snapshot, GENESIS};
use crate::error::ChainError;
use crate::limits;
use crate::message::{Envelope, Message};
use crate::rng::SplitMix64;
use crate::tree::BlockTree;

/// Deliberately broken variants, compiled always but only ever set by the simulator to prove
/// that its invariant checks can fail. Production configs use `Mutation::None`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Mutation {
    None,
    /// Vote on the term of the leader that last appended to us (the blog post's rule).
    VoteOnLastAppendedTerm,
    /// Grant votes without the up-to-date check.
    VoteWithoutUpToDateCheck,
    /// Commit an older-term block by counting replicas (ignores Raft's Figure 8 rule).
    CommitOlderTermByCount,
    /// Send messages that depend on writes before those writes are fsynced.
    AckBeforeFsync,
}

/// Static configuration of one server.
#[derive(Clone, Debug)]
pub struct Config {
    pub id: NodeId,
    /// The voter set (static for now; membership changes will come from config blocks).
    pub voters: Vec<NodeId>,
    /// Minimum election timeout; the actual one is drawn from `[min, 2*min)`.
    pub election_timeout_ticks: u64,
    pub heartbeat_interval_ticks: u64,
    /// A proposal not committed within this many ticks is answered `TimedOut`.
    pub proposal_timeout_ticks: u64,
    pub blocks_per_append_max: usize,
    /// Append runs in flight per follower while catching up (pipelining): throughput is
    /// about this many runs per round trip.
    pub appends_inflight_max: usize,
    pub pending_proposals_max: usize,
    pub mutation: Mutation,
}

impl Config {
    /// Defaults for a tick of 100 ms: election timeout 1-2 s, heartbeat 200 ms.
    pub fn new(id: NodeId, voters: Vec<NodeId>) -> Config {
        Config {
            id,
            voters,
            election_timeout_ticks: 10,
            heartbeat_interval_ticks: 2,
            proposal_timeout_ticks: 100,
            blocks_per_append_max: limits::BLOCKS_PER_APPEND_MAX,
            appends_inflight_max: limits::APPENDS_INFLIGHT_MAX,
            pending_proposals_max: limits::PENDING_PROPOSALS_MAX,
            mutation: Mutation::None,
        }
    }

    fn validate(&self) -> Result<(), ChainError> {
        if self.voters.is_empty() || self.voters.len() > limits::VOTERS_MAX {
            return Err(ChainError::InvalidConfig("voter count out of range"));
        }
        let distinct: BTreeSet<_> = self.voters.iter().collect();
        if distinct.len() != self.voters.len() {
            return Err(ChainError::InvalidConfig("duplicate voter"));
        }
        if self.election_timeout_ticks < 2
            || self.heartbeat_interval_ticks == 0
            || self.heartbeat_interval_ticks >= self.election_timeout_ticks
        {
            return Err(ChainError::InvalidConfig(
                "need 0 < heartbeat interval < election timeout",
            ));
        }
        if self.blocks_per_append_max == 0
            || self.pending_proposals_max == 0
            || self.appends_inflight_max == 0
        {
            return Err(ChainError::InvalidConfig("zero limit"));
        }
        Ok(())
    }
}

/// What must be durable about votes: persisted before any message that depends on it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct HardState {
    pub term: u64,
    pub voted_for: Option<NodeId>,
}

/// What a restarting server read back from its storage.
#[derive(Clone, Debug)]
pub struct Recovered {
    pub hard_state: HardState,
    /// None: no snapshot yet (genesis is the root).
    pub snapshot: Option<Snapshot>,
    /// Blocks in any order; those not descending from the root are dropped.
    pub blocks: Vec<Block>,
    pub head: BlockId,
}

impl Recovered {
    pub fn empty() -> Recovered {
        Recovered {
            hard_state: HardState::default(),
            snapshot: None,
            blocks: Vec::new(),
            head: GENESIS,
        }
    }
}

/// Names a proposal so its outcome can be matched later.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ProposalId(pub u64);

/// Why a proposal was refused up front. All are retriable.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ProposeError {
    #[error("not the leader; leader is {leader:?}")]
    NotLeader { leader: Option<NodeId> },
    #[error("too many proposals pending")]
    TooManyPending,
    #[error("payload of {len} bytes exceeds {max}")]
    TooLarge { len: usize, max: usize },
    #[error("leadership transfer in progress")]
    TransferInProgress,
}

/// How an accepted proposal ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProposalOutcome {
    /// Committed as this block and handed to the state machine in the same Ready.
    Committed(BlockId),
    /// This server stopped being leader first. Outcome unknown: the block may still commit.
    LeadershipLost,
    /// Not committed within `proposal_timeout_ticks`. Outcome unknown, as above.
    TimedOut,
}

/// The effects of everything since the last `take_ready`. The driver must, in this order:
/// 1. write `snapshot`, `hard_state`, `blocks`, then `head`, and fsync them if `sync`;
/// 2. send `messages` (they depend on step 1 being durable);
/// 3. if `snapshot_installed`, replace the state machine with `snapshot`; then apply
///    `committed` in order (chain order, never id order);
/// 4. deliver `proposals` (so a proposer hears back only once its block is applied);
/// 5. reclaim space of `dead` blocks and blocks below `compacted_to`;
/// 6. call `advance()`.
#[derive(Clone, Debug, Default)]
pub struct Ready {
    pub snapshot: Option<Snapshot>,
    pub snapshot_installed: bool,
    pub hard_state: Option<HardState>,
    pub blocks: Vec<Block>,
    pub head: Option<BlockId>,
    pub sync: bool,
    pub messages: Vec<Envelope>,
    pub committed: Vec<Block>,
    pub proposals: Vec<(ProposalId, ProposalOutcome)>,
    pub dead: Vec<BlockId>,
    pub compacted_to: Option<BlockId>,
}

impl Ready {
    pub fn is_empty(&self) -> bool {
        self.snapshot.is_none()
            && self.hard_state.is_none()
            && self.blocks.is_empty()
            && self.head.is_none()
            && self.messages.is_empty()
            && self.committed.is_empty()
            && self.proposals.is_empty()
            && self.dead.is_empty()
            && self.compacted_to.is_none()
    }
}

/// Replication progress of one follower, as the leader sees it.
#[derive(Clone, Debug)]
struct Progress {
    /// The next Append run starts right after this block (on the leader's chain).
    next_prev: BlockId,
    /// Highest block this follower confirmed durable in the current term (rule 5).
    matched: Option<BlockId>,
    /// Runs sent and not yet answered (reset on every heartbeat, which retransmits).
    inflight: usize,
    /// After a failed Append: one run at a time from `probe_prev` until one succeeds, so a
    /// burst of stale failures cannot multiply into a burst of resends.
    probe_prev: Option<BlockId>,
}

#[derive(Clone, Debug)]
struct LeaderState {
    peers: BTreeMap<NodeId, Progress>,
    /// Peers heard from since the last check-quorum (rule 10).
    active: BTreeSet<NodeId>,
    check_quorum_elapsed: u64,
    heartbeat_elapsed: u64,
    /// Leadership transfer target and ticks since it started.
    transfer: Option<(NodeId, u64)>,
}

/// The public face of the role, for drivers and the simulator.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    Follower,
    PreCandidate,
    Candidate,
    Leader,
}

#[derive(Clone, Debug)]
enum RoleState {
    Follower,
    PreCandidate { granted: BTreeSet<NodeId> },
    Candidate { granted: BTreeSet<NodeId> },
    Leader(Box<LeaderState>),
}

#[derive(Clone, Debug)]
struct Pending {
    proposal: ProposalId,
    block: BlockId,
    deadline_tick: u64,
}

/// One server of the chain.
#[derive(Clone, Debug)]
pub struct Node {
    cfg: Config,
    rng: SplitMix64,
    term: u64,
    voted_for: Option<NodeId>,
    /// Only for `Mutation::VoteOnLastAppendedTerm`: the term of the leader that last appended.
    last_appended_term: u64,
    tree: BlockTree,
    snapshot: Snapshot,
    head: BlockId,
    /// `head` as of the last `advance()`: what this server may count as its own durable match.
    durable_head: BlockId,
    commit: BlockId,
    applied: BlockId,
    role: RoleState,
    leader: Option<NodeId>,
    now_ticks: u64,
    election_elapsed: u64,
    election_timeout: u64,
    /// Ticks since an Append or InstallSnapshot from the leader of our term (lease, rule 10).
    leader_contact_elapsed: u64,
    pending: VecDeque<Pending>,
    next_proposal: u64,
    ready: Ready,
    hard_state_dirty: bool,
    head_dirty: bool,
    awaiting_advance: bool,
    collected_total: u64,
    elections_won: u64,
}

impl Node {
    /// A fresh server with an empty chain.
    pub fn new(cfg: Config, seed: u64) -> Result<Node, ChainError> {
        Node::restart(cfg, seed, Recovered::empty())
    }

    /// A server restarting from what its storage recovered. Always starts as a follower.
    pub fn restart(cfg: Config, seed: u64, rec: Recovered) -> Result<Node, ChainError> {
        cfg.validate()?;
        let snapshot = rec.snapshot.unwrap_or_else(|| Snapshot {
            root: GENESIS,
            voters: cfg.voters.clone(),
            state: Bytes::new(),
        });
        let mut tree = BlockTree::new(snapshot.root);
        let mut blocks = rec.blocks;
        blocks.sort_by_key(|b| b.id);
        for b in blocks {
            if b.id.height > snapshot.root.height && b.links_to_parent() && tree.contains(b.parent)
            {
                tree.insert(b);
            }
        }
        let head = if rec.head.height < snapshot.root.height {
            snapshot.root
        } else {
            rec.head
        };
        if !tree.contains(head) {
            return Err(ChainError::HeadMissing(head));
        }
        let root = snapshot.root;
        let mut node = Node {
            rng: SplitMix64::new(seed ^ cfg.id.wrapping_mul(0x9E37_79B9_7F4A_7C15)),
            cfg,
            term: rec.hard_state.term,
            voted_for: rec.hard_state.voted_for,
            last_appended_term: head.term,
            tree,
            snapshot,
            head,
            durable_head: head,
            commit: root,
            applied: root,
            role: RoleState::Follower,
            leader: None,
            now_ticks: 0,
            election_elapsed: 0,
            election_timeout: 0,
            leader_contact_elapsed: u64::MAX,
            pending: VecDeque::new(),
            next_proposal: 1,
            ready: Ready::default(),
            hard_state_dirty: false,
            head_dirty: false,
            awaiting_advance: false,
            collected_total: 0,
            elections_won: 0,
        };
        node.reset_election_timer();
        Ok(node)
    }

    // ----- read-only accessors -----

    pub fn id(&self) -> NodeId {
        self.cfg.id
    }
    pub fn term(&self) -> u64 {
        self.term
    }
    pub fn voted_for(&self) -> Option<NodeId> {
        self.voted_for
    }
    pub fn role(&self) -> Role {
        match self.role {
            RoleState::Follower => Role::Follower,
            RoleState::PreCandidate { .. } => Role::PreCandidate,
            RoleState::Candidate { .. } => Role::Candidate,
            RoleState::Leader(_) => Role::Leader,
        }
    }
    pub fn is_leader(&self) -> bool {
        matches!(self.role, RoleState::Leader(_))
    }
    /// The leader of the current term, if known.
    pub fn leader(&self) -> Option<NodeId> {
        self.leader
    }
    pub fn head(&self) -> BlockId {
        self.head
    }
    pub fn commit(&self) -> BlockId {
        self.commit
    }
    pub fn root(&self) -> BlockId {
        self.tree.root()
    }
    pub fn tree(&self) -> &BlockTree {
        &self.tree
    }
    pub fn config(&self) -> &Config {
        &self.cfg
    }
    /// Dead-branch blocks collected by GC since start (rule 8's metric).
    pub fn collected_total(&self) -> u64 {
        self.collected_total
    }
    /// Each voter's highest block known durable in the current term, as the leader sees it
    /// (itself: its durable head; a follower that has not confirmed anything this term: None).
    /// Empty unless this server leads. For status pages; decisions never read it.
    pub fn voter_progress(&self) -> impl Iterator<Item = (NodeId, Option<BlockId>)> + '_ {
        let leader = match &self.role {
            RoleState::Leader(l) => Some(l),
            _ => None,
        };
        leader.into_iter().flat_map(move |l| {
            self.cfg.voters.iter().map(move |&id| {
                let matched = if id == self.cfg.id {
                    Some(self.durable_head)
                } else {
                    l.peers.get(&id).and_then(|p| p.matched)
                };
                (id, matched)
            })
        })
    }
    pub fn elections_won(&self) -> u64 {
        self.elections_won
    }
    pub fn pending_proposals(&self) -> usize {
        self.pending.len()
    }
    pub fn has_ready(&self) -> bool {
        self.hard_state_dirty || self.head_dirty || !self.ready.is_empty()
    }

    fn quorum(&self) -> usize {
        self.cfg.voters.len() / 2 + 1
    }

    fn peers(&self) -> Vec<NodeId> {
        self.cfg
            .voters
            .iter()
            .copied()
            .filter(|&v| v != self.cfg.id)
            .collect()
    }

    fn is_voter(&self, id: NodeId) -> bool {
        self.cfg.voters.contains(&id)
    }

    // ----- the driver's interface -----

    /// Takes the effects accumulated so far. The driver must carry them out (see [`Ready`])
    /// and then call [`Node::advance`] before taking the next one.
    pub fn take_ready(&mut self) -> Ready {
        assert!(
            !self.awaiting_advance,
            "take_ready called twice without advance"
        );
        let mut r = std::mem::take(&mut self.ready);
        if self.hard_state_dirty {
            r.hard_state = Some(HardState {
                term: self.term,
                voted_for: self.voted_for,
            });
            self.hard_state_dirty = false;
        }
        if self.head_dirty {
            r.head = Some(self.head);
            self.head_dirty = false;
        }
        r.sync = self.cfg.mutation != Mutation::AckBeforeFsync;
        self.awaiting_advance = true;
        r
    }

    /// The last Ready has been carried out: its writes are durable. The leader may now count
    /// its own copy of its head (rule 5).
    pub fn advance(&mut self) {
        assert!(self.awaiting_advance, "advance without take_ready");
        self.awaiting_advance = false;
        self.durable_head = self.head;
        if self.is_leader() {
            self.leader_maybe_commit();
        }
    }

    /// One unit of logical time.
    pub fn tick(&mut self) {
        self.now_ticks += 1;
        self.leader_contact_elapsed = self.leader_contact_elapsed.saturating_add(1);
        self.expire_proposals();
        if let RoleState::Leader(ls) = &mut self.role {
            ls.heartbeat_elapsed += 1;
            ls.check_quorum_elapsed += 1;
            let heartbeat_due = ls.heartbeat_elapsed >= self.cfg.heartbeat_interval_ticks;
            let check_due = ls.check_quorum_elapsed >= self.cfg.election_timeout_ticks;
            if let Some((_, started)) = &mut ls.transfer {
                *started += 1;
                if *started > self.cfg.election_timeout_ticks {
                    ls.transfer = None;
                }
            }
            if check_due {
                let active = ls.active.len() + 1;
                ls.active.clear();
                ls.check_quorum_elapsed = 0;
                if active < self.quorum() {
                    let term = self.term;
                    self.become_follower(term, None);
                    return;
                }
            }
            if heartbeat_due {
                if let RoleState::Leader(ls) = &mut self.role {
                    ls.heartbeat_elapsed = 0;
                }
                self.broadcast_append(true);
            }
            return;
        }
        self.election_elapsed += 1;
        if self.election_elapsed >= self.election_timeout {
            self.start_pre_vote();
        }
    }

    /// Proposes a payload. Only the leader accepts; the outcome arrives in a later Ready.
    pub fn propose(&mut self, payload: Bytes) -> Result<ProposalId, ProposeError> {
        let transfer = match &self.role {
            RoleState::Leader(ls) => ls.transfer.is_some(),
            _ => {
                return Err(ProposeError::NotLeader {
                    leader: self.leader,
                })
            }
        };
        if transfer {
            return Err(ProposeError::TransferInProgress);
        }
        if payload.len() > limits::PAYLOAD_BYTES_MAX {
            return Err(ProposeError::TooLarge {
                len: payload.len(),
                max: limits::PAYLOAD_BYTES_MAX,
            });
        }
        if self.pending.len() >= self.cfg.pending_proposals_max {
            return Err(ProposeError::TooManyPending);
        }
        let id = self.leader_append(BlockKind::Data, payload);
        let proposal = ProposalId(self.next_proposal);
        self.next_proposal += 1;
        self.pending.push_back(Pending {
            proposal,
            block: id,
            deadline_tick: self.now_ticks + self.cfg.proposal_timeout_ticks,
        });
        Ok(proposal)
    }

    /// Starts handing leadership to `to`: it is brought up to date, then told to campaign at
    /// once. Proposals are refused meanwhile. Returns false if not leader or `to` is no peer.
    pub fn transfer_leadership(&mut self, to: NodeId) -> bool {
        if to == self.cfg.id || !self.is_voter(to) {
            return false;
        }
        let head = self.head;
        let term = self.term;
        let me = self.cfg.id;
        let RoleState::Leader(ls) = &mut self.role else {
            return false;
        };
        ls.transfer = Some((to, 0));
        let caught_up = ls.peers.get(&to).and_then(|p| p.matched) == Some(head);
        if caught_up {
            self.send(to, Message::TimeoutNow { term, leader: me });
        } else {
            self.send_append(to);
        }
        true
    }

    /// Takes a snapshot: `state` is the state machine as of block `upto`, which must be
    /// committed and already applied. Blocks at or below it are then dropped.
    pub fn compact(&mut self, upto: BlockId, state: Bytes) -> Result<(), ChainError> {
        if upto.height <= self.tree.root().height
            || !self.tree.is_ancestor_or_equal(upto, self.applied)
        {
            return Err(ChainError::BadSnapshotRoot { root: upto });
        }
        let snap = Snapshot {
            root: upto,
            voters: self.snapshot.voters.clone(),
            state,
        };
        let removed = self.tree.rebase(upto);
        self.ready.dead.extend(removed);
        self.snapshot = snap.clone();
        self.ready.snapshot = Some(snap);
        self.ready.snapshot_installed = false;
        self.ready.compacted_to = Some(upto);
        Ok(())
    }

    /// Handles one message addressed to this server. Messages from non-voters are ignored.
    pub fn step(&mut self, env: Envelope) {
        let from = env.from;
        if env.to != self.cfg.id || from == self.cfg.id || !self.is_voter(from) {
            return;
        }
        let msg = env.message;
        // PreVote and its reply are exempt from rule 1.
        match msg {
            Message::Vote { pre: true, .. } => return self.on_pre_vote(from, msg),
            Message::VoteReply { pre: true, .. } => return self.on_pre_vote_reply(from, msg),
            _ => {}
        }
        let mterm = msg.term();
        if mterm > self.term {
            if let Message::Vote { transfer, .. } = msg {
                // Rule 10: a live leader's followers ignore disruptive votes.
                if !transfer && self.in_lease() {
                    return;
                }
            }
            let leader = match msg {
                Message::Append { leader, .. }
                | Message::InstallSnapshot { leader, .. }
                | Message::TimeoutNow { leader, .. } => Some(leader),
                _ => None,
            };
            self.become_follower(mterm, leader);
        } else if mterm < self.term {
            // Answer with our term so the sender can step down; change nothing.
            match msg {
                Message::Append { .. } | Message::InstallSnapshot { .. } => {
                    self.reply_append(from, false, self.head)
                }
                Message::Vote { .. } => self.send(
                    from,
                    Message::VoteReply {
                        term: self.term,
                        granted: false,
                        pre: false,
                    },
                ),
                _ => {}
            }
            return;
        }
        match msg {
            Message::Append {
                leader,
                prev,
                blocks,
                leader_commit,
                ..
            } => self.on_append(from, leader, prev, blocks, leader_commit),
            Message::AppendReply {
                success,
                matched,
                head,
                commit,
                ..
            } => self.on_append_reply(from, success, matched, head, commit),
            Message::Vote {
                candidate,
                head,
                head_term,
                ..
            } => self.on_vote(from, candidate, head, head_term),
            Message::VoteReply { granted, .. } => self.on_vote_reply(from, granted),
            Message::InstallSnapshot {
                leader, snapshot, ..
            } => self.on_install_snapshot(from, leader, snapshot),
            Message::TimeoutNow { .. } => self.on_timeout_now(from),
        }
    }

    // ----- role changes -----

    fn reset_election_timer(&mut self) {
        self.election_elapsed = 0;
        let min = self.cfg.election_timeout_ticks;
        let drawn = self.rng.range(min, 2 * min);
        // A sole voter campaigns at its first tick: no other server can hold or win any term,
        // so waiting out a timeout only delays start-up. The draw above still happens, so the
        // seeded sequence of every other configuration is unchanged.
        self.election_timeout = if self.is_sole_voter() { 1 } else { drawn };
    }

    /// True when this server is the whole voter set (a single-node chain).
    fn is_sole_voter(&self) -> bool {
        self.cfg.voters == [self.cfg.id]
    }

    fn in_lease(&self) -> bool {
        match self.role {
            RoleState::Leader(_) => true,
            _ => {
                self.leader.is_some()
                    && self.leader_contact_elapsed < self.cfg.election_timeout_ticks
            }
        }
    }

    fn become_follower(&mut self, term: u64, leader: Option<NodeId>) {
        assert!(term >= self.term, "term moved backwards");
        if term > self.term {
            self.term = term;
            self.voted_for = None;
            self.hard_state_dirty = true;
        }
        if self.is_leader() {
            self.fail_pending(ProposalOutcome::LeadershipLost);
        }
        self.role = RoleState::Follower;
        self.leader = leader;
        if leader.is_some() {
            self.leader_contact_elapsed = 0;
        }
        self.reset_election_timer();
    }

    fn head_term_for_vote(&self) -> u64 {
        match self.cfg.mutation {
            Mutation::VoteOnLastAppendedTerm => self.last_appended_term,
            _ => self.head.term,
        }
    }

    fn start_pre_vote(&mut self) {
        if !self.is_voter(self.cfg.id) {
            return;
        }
        self.role = RoleState::PreCandidate {
            granted: BTreeSet::from([self.cfg.id]),
        };
        self.leader = None;
        self.reset_election_timer();
        if self.quorum() == 1 {
            return self.become_candidate(false);
        }
        let msg = Message::Vote {
            term: self.term + 1,
            candidate: self.cfg.id,
            head: self.head,
            head_term: self.head_term_for_vote(),
            pre: true,
            transfer: false,
        };
        for p in self.peers() {
            self.send(p, msg.clone());
        }
    }

    fn become_candidate(&mut self, transfer: bool) {
        self.term += 1;
        self.voted_for = Some(self.cfg.id);
        self.hard_state_dirty = true;
        self.role = RoleState::Candidate {
            granted: BTreeSet::from([self.cfg.id]),
        };
        self.leader = None;
        self.reset_election_timer();
        if self.quorum() == 1 {
            return self.become_leader();
        }
        let msg = Message::Vote {
            term: self.term,
            candidate: self.cfg.id,
            head: self.head,
            head_term: self.head_term_for_vote(),
            pre: false,
            transfer,
        };
        for p in self.peers() {
            self.send(p, msg.clone());
        }
    }

    fn become_leader(&mut self) {
        let peers = self
            .peers()
            .into_iter()
            .map(|p| {
                (
                    p,
                    Progress {
                        next_prev: self.head,
                        matched: None,
                        inflight: 0,
                        probe_prev: None,
                    },
                )
            })
            .collect();
        self.role = RoleState::Leader(Box::new(LeaderState {
            peers,
            active: BTreeSet::new(),
            check_quorum_elapsed: 0,
            heartbeat_elapsed: 0,
            transfer: None,
        }));
        self.leader = Some(self.cfg.id);
        self.elections_won += 1;
        // Rule 4: a block of the new term at once; older blocks commit only beneath it.
        self.leader_append(BlockKind::Noop, Bytes::new());
    }

    /// Appends a block of the current term on top of `head` and ships it to caught-up peers.
    fn leader_append(&mut self, kind: BlockKind, payload: Bytes) -> BlockId {
        let parent = self.head;
        let id = BlockId::new(self.term, parent.height + 1);
        let block = Block {
            id,
            parent,
            kind,
            payload,
        };
        self.tree.insert(block.clone());
        self.ready.blocks.push(block);
        self.head = id;
        self.head_dirty = true;
        self.last_appended_term = self.term;
        let caught_up: Vec<NodeId> = match &self.role {
            RoleState::Leader(ls) => ls
                .peers
                .iter()
                .filter(|(_, p)| {
                    p.next_prev == parent && p.inflight < self.cfg.appends_inflight_max
                })
                .map(|(id, _)| *id)
                .collect(),
            _ => Vec::new(),
        };
        for p in caught_up {
            self.send_append(p);
        }
        id
    }

    // ----- leader replication -----

    fn progress_mut(&mut self, peer: NodeId) -> Option<&mut Progress> {
        match &mut self.role {
            RoleState::Leader(ls) => ls.peers.get_mut(&peer),
            _ => None,
        }
    }

    /// On the heartbeat timer: restart every peer from its confirmed match (retransmitting
    /// anything lost) and send a run, or a heartbeat when it is caught up.
    fn broadcast_append(&mut self, from_matched: bool) {
        for p in self.peers() {
            if from_matched {
                if let Some(pr) = self.progress_mut(p) {
                    if let Some(pp) = pr.probe_prev {
                        pr.next_prev = pp;
                    } else if let Some(m) = pr.matched {
                        pr.next_prev = m;
                    }
                    pr.inflight = 0;
                }
            }
            self.send_append(p);
        }
    }

    /// Sends the next run (a heartbeat if the peer is caught up), then keeps pipelining runs
    /// while the peer is behind and fewer than `appends_inflight_max` are unanswered.
    fn send_append(&mut self, peer: NodeId) {
        loop {
            let Some(prev) = self.progress_mut(peer).map(|p| p.next_prev) else {
                return;
            };
            if !self.tree.contains(prev) {
                // Rule 6: the resume point was compacted away.
                return self.send_snapshot(peer);
            }
            let blocks = self
                .tree
                .run(prev, self.head, self.cfg.blocks_per_append_max)
                .expect("a peer's resume point is always on the leader's chain");
            let last = blocks.last().map(|b| b.id).unwrap_or(prev);
            let head = self.head;
            let max = self.cfg.appends_inflight_max;
            let more = {
                let pr = self.progress_mut(peer).expect("peer exists");
                pr.next_prev = last;
                pr.inflight += 1;
                if pr.probe_prev.is_some() {
                    pr.probe_prev = Some(prev);
                }
                last != head && pr.inflight < max && pr.probe_prev.is_none()
            };
            let msg = Message::Append {
                term: self.term,
                leader: self.cfg.id,
                prev,
                blocks,
                leader_commit: self.commit,
            };
            self.send(peer, msg);
            if !more {
                return;
            }
        }
    }

    fn send_snapshot(&mut self, peer: NodeId) {
        let root = self.snapshot.root;
        if let Some(pr) = self.progress_mut(peer) {
            // Optimistic: continue after the root; a failure reply resets it.
            pr.next_prev = root;
            pr.inflight += 1;
            if pr.probe_prev.is_some() {
                pr.probe_prev = Some(root);
            }
        }
        let msg = Message::InstallSnapshot {
            term: self.term,
            leader: self.cfg.id,
            snapshot: self.snapshot.clone(),
        };
        self.send(peer, msg);
    }

    fn on_append_reply(
        &mut self,
        from: NodeId,
        success: bool,
        matched: BlockId,
        follower_head: BlockId,
        follower_commit: BlockId,
    ) {
        let head = self.head;
        let RoleState::Leader(ls) = &mut self.role else {
            return;
        };
        ls.active.insert(from);
        let transfer_to = ls.transfer.map(|(t, _)| t);
        let Some(pr) = ls.peers.get_mut(&from) else {
            return;
        };
        if success {
            // Replies may be reordered: only a higher match on our chain counts.
            if !self.tree.is_ancestor_or_equal(matched, head) {
                return;
            }
            if pr.matched.is_none_or(|m| m.height < matched.height) {
                pr.matched = Some(matched);
            }
            pr.inflight = pr.inflight.saturating_sub(1);
            pr.probe_prev = None;
            if pr.next_prev.height < matched.height {
                pr.next_prev = matched;
            }
            let room = pr.inflight < self.cfg.appends_inflight_max && pr.next_prev != head;
            self.leader_maybe_commit();
            if transfer_to == Some(from) && matched == self.head {
                let term = self.term;
                let me = self.cfg.id;
                self.send(from, Message::TimeoutNow { term, leader: me });
            } else if room {
                self.send_append(from);
            }
            return;
        }
        // A failure for anything but our latest probe is stale: the probe answers it.
        if pr.probe_prev.is_some_and(|p| p != matched) {
            return;
        }
        // Rule 6: resume after the follower's head if it is on our chain, else after our
        // common ancestor with it, else after its commit; snapshot if that is compacted.
        let resume = if self.tree.is_ancestor_or_equal(follower_head, head) {
            Some(follower_head)
        } else if let Some(ca) = self
            .tree
            .contains(follower_head)
            .then(|| self.tree.common_ancestor(follower_head, head))
            .flatten()
        {
            Some(ca)
        } else if self.tree.is_ancestor_or_equal(follower_commit, head) {
            Some(follower_commit)
        } else {
            None
        };
        pr.inflight = 0;
        pr.probe_prev = Some(resume.unwrap_or(self.snapshot.root));
        match resume {
            Some(r) => {
                pr.next_prev = r;
                self.send_append(from);
            }
            None => self.send_snapshot(from),
        }
    }

    /// Rule 5: the highest block a majority holds durably; committed only if it is of our
    /// term (older blocks commit as its ancestors).
    fn leader_maybe_commit(&mut self) {
        let RoleState::Leader(ls) = &self.role else {
            return;
        };
        let mut heights: Vec<u64> = Vec::with_capacity(self.cfg.voters.len());
        heights.push(self.durable_head.height);
        for pr in ls.peers.values() {
            heights.push(pr.matched.map_or(0, |m| m.height));
        }
        heights.sort_unstable_by(|a, b| b.cmp(a));
        let h = heights[self.quorum() - 1];
        if h <= self.commit.height {
            return;
        }
        let Some(candidate) = self.tree.ancestor_at(self.head, h) else {
            return;
        };
        if candidate.term != self.term && self.cfg.mutation != Mutation::CommitOlderTermByCount {
            return;
        }
        self.advance_commit(candidate);
        // Tell the followers now rather than at the next heartbeat: they apply (and answer
        // read-your-writes waits) one round trip after the commit, not up to a heartbeat later.
        self.broadcast_append(false);
    }

    // ----- follower side -----

    fn reply_append(&mut self, to: NodeId, success: bool, matched: BlockId) {
        let msg = Message::AppendReply {
            term: self.term,
            success,
            matched,
            head: self.head,
            commit: self.commit,
        };
        self.send(to, msg);
    }

    fn heard_from_leader(&mut self, leader: NodeId) {
        if !matches!(self.role, RoleState::Follower) {
            // A candidate hearing from the leader of its term steps down (rule 1).
            let term = self.term;
            self.become_follower(term, Some(leader));
        }
        self.leader = Some(leader);
        self.leader_contact_elapsed = 0;
        self.election_elapsed = 0;
    }

    fn on_append(
        &mut self,
        from: NodeId,
        leader: NodeId,
        prev: BlockId,
        blocks: Vec<Block>,
        leader_commit: BlockId,
    ) {
        if self.is_leader() || leader != from {
            // Two leaders in one term cannot happen unless safety is already broken (the
            // simulator reports it); a forged leader field is bad input. Ignore both.
            return;
        }
        self.heard_from_leader(from);
        // 2.1: prev must be held (the root counts; blocks below it are gone).
        if !self.tree.contains(prev) {
            return self.reply_append(from, false, prev);
        }
        // 2.2: the run must be parent-linked, heights +1, terms within the leader's.
        let mut parent = prev;
        for b in &blocks {
            if b.parent != parent || !b.links_to_parent() || b.id.term > self.term {
                return; // malformed: ignore rather than ack anything
            }
            parent = b.id;
        }
        // 2.3: store.
        let had_blocks = !blocks.is_empty();
        for b in blocks {
            if self.tree.insert(b.clone()) {
                self.ready.blocks.push(b);
            }
        }
        let last = parent;
        if had_blocks {
            self.last_appended_term = self.term;
            // 2.4: move head to the run's end unless head already descends from it.
            if !self.tree.is_ancestor_or_equal(last, self.head) {
                self.head = last;
                self.head_dirty = true;
            }
        } else if !self.tree.is_ancestor_or_equal(prev, self.head) {
            return self.reply_append(from, false, prev);
        }
        // 2.6: commit up to what both the run and the leader's commit vouch for.
        let h = last.height.min(leader_commit.height);
        if h > self.commit.height {
            if let Some(c) = self.tree.ancestor_at(last, h) {
                self.advance_commit(c);
            }
        }
        // 2.5: the reply goes out after the Ready's writes are durable.
        self.reply_append(from, true, last);
    }

    fn on_install_snapshot(&mut self, from: NodeId, leader: NodeId, snap: Snapshot) {
        if self.is_leader() || leader != from {
            return;
        }
        self.heard_from_leader(from);
        let root = snap.root;
        // Rule 9: only a root above our commit is news.
        if root.height <= self.commit.height {
            // Echo the root (as a failed Append echoes its prev) so the leader can tell this
            // answer from stale ones; our head and commit tell it where to resume.
            return self.reply_append(from, false, root);
        }
        let head_descends = self.tree.is_ancestor_or_equal(root, self.head);
        self.ready.dead.extend(self.tree.rebase(root));
        if !head_descends {
            self.head = root;
            self.head_dirty = true;
        }
        self.commit = root;
        self.applied = root;
        self.snapshot = snap.clone();
        self.ready.snapshot = Some(snap);
        self.ready.snapshot_installed = true;
        self.ready.compacted_to = Some(root);
        // Committed blocks queued before the install are superseded by the snapshot state.
        self.ready.committed.retain(|b| b.id.height > root.height);
        self.reply_append(from, true, root);
    }

    fn up_to_date(&self, head: BlockId, head_term: u64) -> bool {
        match self.cfg.mutation {
            Mutation::VoteWithoutUpToDateCheck => true,
            _ => (head_term, head.height) >= (self.head_term_for_vote(), self.head.height),
        }
    }

    fn on_vote(&mut self, from: NodeId, candidate: NodeId, head: BlockId, head_term: u64) {
        let free = self.voted_for.is_none_or(|v| v == candidate);
        let granted = candidate == from && free && self.up_to_date(head, head_term);
        if granted {
            if self.voted_for.is_none() {
                self.voted_for = Some(candidate);
                self.hard_state_dirty = true;
            }
            self.election_elapsed = 0;
        }
        let term = self.term;
        self.send(
            from,
            Message::VoteReply {
                term,
                granted,
                pre: false,
            },
        );
    }

    fn on_vote_reply(&mut self, from: NodeId, granted: bool) {
        let quorum = self.quorum();
        let RoleState::Candidate { granted: votes } = &mut self.role else {
            return;
        };
        if granted {
            votes.insert(from);
            if votes.len() >= quorum {
                self.become_leader();
            }
        }
    }

    fn on_pre_vote(&mut self, from: NodeId, msg: Message) {
        let Message::Vote {
            term,
            candidate,
            head,
            head_term,
            ..
        } = msg
        else {
            return;
        };
        let granted = candidate == from
            && term > self.term
            && !self.in_lease()
            && self.up_to_date(head, head_term);
        let reply_term = if granted { term } else { self.term };
        self.send(
            from,
            Message::VoteReply {
                term: reply_term,
                granted,
                pre: true,
            },
        );
    }

    fn on_pre_vote_reply(&mut self, from: NodeId, msg: Message) {
        let Message::VoteReply { term, granted, .. } = msg else {
            return;
        };
        if !granted {
            // A refusal carrying a higher term teaches us that term; without this a stale
            // server could pre-vote forever below the cluster's term.
            if term > self.term {
                self.become_follower(term, None);
            }
            return;
        }
        let quorum = self.quorum();
        let my_term = self.term;
        let RoleState::PreCandidate { granted: votes } = &mut self.role else {
            return;
        };
        if term != my_term + 1 {
            return;
        }
        votes.insert(from);
        if votes.len() >= quorum {
            self.become_candidate(false);
        }
    }

    fn on_timeout_now(&mut self, from: NodeId) {
        if self.is_leader() || self.leader != Some(from) {
            return;
        }
        self.become_candidate(true);
    }

    // ----- commit, apply, GC, proposals -----

    /// Moves `commit` forward to `c` (an ancestor-or-equal of head), queues the newly
    /// committed blocks for apply in chain order, answers proposals and collects dead branches.
    fn advance_commit(&mut self, c: BlockId) {
        assert!(c.height > self.commit.height, "commit must move forward");
        assert!(
            self.tree.is_ancestor_or_equal(self.commit, c),
            "new commit {c} does not descend from commit {}",
            self.commit
        );
        assert!(
            self.tree.is_ancestor_or_equal(c, self.head),
            "commit {c} not on head {}",
            self.head
        );
        self.commit = c;
        // Rule 7: apply by walking parents from commit back to applied, then forward.
        let run = self
            .tree
            .run(self.applied, c, usize::MAX)
            .expect("applied is an ancestor of commit");
        self.applied = c;
        self.ready.committed.extend(run);
        while let Some(p) = self.pending.front() {
            if p.block.height > c.height {
                break;
            }
            let p = self.pending.pop_front().expect("front exists");
            let outcome = if self.tree.ancestor_at(c, p.block.height) == Some(p.block) {
                ProposalOutcome::Committed(p.block)
            } else {
                ProposalOutcome::LeadershipLost
            };
            self.ready.proposals.push((p.proposal, outcome));
        }
        // Rule 8.
        let dead = self.tree.collect_dead(c);
        self.collected_total += dead.len() as u64;
        self.ready.dead.extend(dead);
    }

    fn fail_pending(&mut self, outcome: ProposalOutcome) {
        while let Some(p) = self.pending.pop_front() {
            self.ready.proposals.push((p.proposal, outcome));
        }
    }

    fn expire_proposals(&mut self) {
        let now = self.now_ticks;
        let mut expired = Vec::new();
        self.pending.retain(|p| {
            let keep = p.deadline_tick > now;
            if !keep {
                expired.push(p.proposal);
            }
            keep
        });
        for id in expired {
            self.ready.proposals.push((id, ProposalOutcome::TimedOut));
        }
    }

    fn send(&mut self, to: NodeId, message: Message) {
        self.ready.messages.push(Envelope {
            from: self.cfg.id,
            to,
            message,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Drives one server alone: carries out its Readys (no storage, nothing to send).
    fn settle(node: &mut Node) -> Vec<Block> {
        let mut committed = Vec::new();
        while node.has_ready() {
            let ready = node.take_ready();
            committed.extend(ready.committed);
            node.advance();
        }
        committed
    }

    #[test]
    fn a_sole_voter_leads_and_commits_at_its_first_tick() {
        let mut node = Node::new(Config::new(7, vec![7]), 42).unwrap();
        assert_eq!(node.role(), Role::Follower);
        node.tick();
        assert!(node.is_leader(), "a sole voter campaigns and wins at once");
        assert_eq!(node.term(), 1);
        let committed = settle(&mut node);
        assert_eq!(committed.len(), 1, "the new term's noop commits alone");
        assert_eq!(committed[0].kind, BlockKind::Noop);
        assert_eq!(node.commit(), committed[0].id);
        // A restart recovers as a follower and leads again at its first tick, in a newer term.
        let rec = Recovered {
            hard_state: HardState {
                term: node.term(),
                voted_for: node.voted_for(),
            },
            snapshot: None,
            blocks: committed.clone(),
            head: node.head(),
        };
        let mut again = Node::restart(Config::new(7, vec![7]), 43, rec).unwrap();
        again.tick();
        assert!(again.is_leader());
        assert_eq!(again.term(), 2);
        let replayed = settle(&mut again);
        assert_eq!(
            replayed.len(),
            2,
            "the old block commits beneath the new noop"
        );
        assert_eq!(replayed[0].id, committed[0].id);
    }

    #[test]
    fn a_voter_among_several_waits_out_its_election_timeout() {
        let mut node = Node::new(Config::new(1, vec![1, 2, 3]), 42).unwrap();
        for _ in 0..9 {
            node.tick();
            assert_eq!(node.role(), Role::Follower, "timeout is at least 10 ticks");
        }
    }
}

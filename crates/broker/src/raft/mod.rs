//! The chain's runtime: drives the pure `josefine_chain::Node` with real time, real sockets and
//! the on-disk `ChainStore`.
//!
//! Owns the event loop of one chain server: ticks from a tokio interval, messages from
//! [`transport`], proposals from [`ChainHandle::propose`]. After every event it carries out the
//! core's `Ready` in the order the core documents: persist and fsync (on the blocking pool, so
//! the async workers never wait on a disk), then send, then hand committed blocks to the
//! application, then answer proposals, then reclaim. It must never put consensus logic here:
//! every decision is the core's, so what the simulator proved is what runs.
//!
//! Handing over never waits inside the loop: blocks go to the application's bounded channel
//! when it has room and into an ordered backlog otherwise, which the loop drains as room
//! appears while it keeps ticking and stepping (a slow application must not stall heartbeats
//! into spurious elections). While a backlog exists the loop takes no new proposals: the only
//! back-pressure lands on proposers. A proposal is answered when its block is committed and
//! queued for the application, not when the application has applied it: a proposer that
//! needs "applied" waits for the application's own position (the metadata store does).
//!
//! At start the recovered snapshot, if any, is handed over first; committed blocks above it
//! follow as the core learns the commit point (a sole voter at its first tick).

pub mod limits;
pub mod transport;

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use josefine_chain::storage::ChainStore;
use josefine_chain::{
    codec, Block, BlockId, Config, Node, NodeId, ProposalId, ProposalOutcome, ProposeError, Role,
    Snapshot,
};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;

use self::limits::*;
use self::transport::PeerSender;

/// Everything one chain server needs.
#[derive(Clone, Debug)]
pub struct ChainNodeConfig {
    pub id: NodeId,
    /// Every voter (this one included) and its raft address.
    pub voters: Vec<(NodeId, SocketAddr)>,
    /// Where to listen; defaults to this server's voter address.
    pub listen: Option<SocketAddr>,
    pub data_dir: PathBuf,
    /// One core tick. Default 100 ms: election timeout 1-2 s, heartbeat 200 ms.
    pub tick_ms: u64,
    pub election_timeout_ticks: u64,
    pub heartbeat_interval_ticks: u64,
    /// Seeds election-timeout jitter. It must differ between servers: servers drawing the same
    /// timeouts time out together, split every vote and elect no one until scheduling noise
    /// parts them. The core mixes in the server id, so the default is fresh OS randomness
    /// (not derived from the id, which the core's mixing would cancel out).
    pub seed: u64,
    /// Receives what the state machine must apply, in chain order. None: nothing delivered.
    pub apply: Option<mpsc::Sender<Applied>>,
    /// Receives the raft address's non-chain connections (controller RPCs, status), preface
    /// read ([`transport::non_chain_channel`]). None: they are closed.
    pub non_chain: Option<mpsc::Sender<transport::RaftConnection>>,
    /// Mutual TLS on every node-to-node connection (None: plain TCP).
    pub tls: Option<transport::RaftTls>,
}

impl ChainNodeConfig {
    pub fn new(id: NodeId, voters: Vec<(NodeId, SocketAddr)>, data_dir: PathBuf) -> Self {
        ChainNodeConfig {
            id,
            voters,
            listen: None,
            data_dir,
            tick_ms: 100,
            election_timeout_ticks: 10,
            heartbeat_interval_ticks: 2,
            seed: os_random_seed(),
            apply: None,
            non_chain: None,
            tls: None,
        }
    }

    /// Parses `1@127.0.0.1:19093,2@127.0.0.1:19094,...`.
    pub fn parse_voters(s: &str) -> anyhow::Result<Vec<(NodeId, SocketAddr)>> {
        let mut out = Vec::new();
        for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (id, addr) = part
                .split_once('@')
                .ok_or_else(|| anyhow::anyhow!("voter {part:?} is not id@host:port"))?;
            out.push((id.parse()?, addr.parse()?));
        }
        anyhow::ensure!(!out.is_empty(), "no voters given");
        Ok(out)
    }
}

/// A seed from the OS's randomness (std's per-process hash keys, drawn fresh per call): distinct
/// for every server, also for several servers in one process.
fn os_random_seed() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    std::collections::hash_map::RandomState::new()
        .build_hasher()
        .finish()
}

/// What the application's state machine must apply, in this order.
#[derive(Clone, Debug)]
pub enum Applied {
    /// Replace the whole state with this snapshot (sent by the leader; blocks follow it).
    Snapshot(Snapshot),
    /// Apply one committed block.
    Block(Block),
}

/// A bounded channel for [`ChainNodeConfig::apply`], sized by `COMMITTED_QUEUE_MAX`. When it is
/// full the loop keeps what it could not hand over in order and retries (see the module doc).
pub fn apply_channel() -> (mpsc::Sender<Applied>, mpsc::Receiver<Applied>) {
    mpsc::channel(COMMITTED_QUEUE_MAX)
}

/// The dead branches among the ids a Ready reclaims, each block joining its parent's branch.
/// A Ready's `dead` also lists committed blocks a compaction dropped; those were never above
/// the commit point when the tree was last published, so only ids found in `published` (the
/// uncommitted blocks last published) count. A block received and killed between two
/// publications is therefore not listed (the collected-blocks counter still counts it).
fn dead_branches(dead: &[BlockId], published: &[Block], at_ms: u64) -> Vec<DeadBranch> {
    let mut blocks: Vec<&Block> = published.iter().filter(|b| dead.contains(&b.id)).collect();
    blocks.sort_by_key(|b| b.id);
    let mut branch_of: HashMap<BlockId, usize> = HashMap::new();
    let mut out: Vec<DeadBranch> = Vec::new();
    for block in blocks {
        let joined = branch_of.get(&block.parent).copied();
        let i = joined.unwrap_or_else(|| {
            out.push(DeadBranch {
                collected_at_ms: at_ms,
                blocks: Vec::new(),
            });
            out.len() - 1
        });
        branch_of.insert(block.id, i);
        out[i].blocks.push(block.clone());
    }
    out
}

fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// A snapshot of the server's consensus state, for status pages and tests.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ChainStatus {
    pub role: Role,
    pub term: u64,
    pub leader: Option<NodeId>,
    pub head: BlockId,
    pub commit: BlockId,
    /// Dead-branch blocks collected since this server started.
    pub collected_total: u64,
}

/// One voter's replication progress as the chain leader sees it, for status pages.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VoterProgress {
    pub id: NodeId,
    /// Highest block the voter confirmed durable in the leader's term; None: nothing yet.
    pub matched: Option<BlockId>,
}

/// The blocks above the commit point and the dead branches lately collected, for the console's
/// chain page. Published (on a watch) only when the uncommitted blocks or the collections change.
#[derive(Clone, Debug, Default)]
pub struct ChainTree {
    pub commit: BlockId,
    /// Every block above `commit` the core holds, forks included, in the tree's order (by
    /// height). Clones share the payload bytes with the core's tree.
    pub uncommitted: Vec<Block>,
    /// The last `DEAD_BRANCHES_KEPT` collections, oldest first.
    pub dead_branches: VecDeque<DeadBranch>,
}

/// Dead-branch blocks collected together: a fork that lost to the committed chain.
#[derive(Clone, Debug)]
pub struct DeadBranch {
    /// Wall-clock time of the collection (Unix ms).
    pub collected_at_ms: u64,
    /// Lowest first.
    pub blocks: Vec<Block>,
}

/// Why a proposal did not commit. `NotLeader`, `Busy` are safe to retry elsewhere or later;
/// `LeadershipLost` and `TimedOut` mean the outcome is unknown (it may still commit).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProposeFailure {
    #[error("not the chain leader (leader: {leader:?} at {addr:?})")]
    NotLeader {
        leader: Option<NodeId>,
        addr: Option<SocketAddr>,
    },
    #[error("too many proposals pending or leadership transfer in progress")]
    Busy,
    #[error("payload too large")]
    TooLarge,
    #[error("leadership lost before commit; outcome unknown")]
    LeadershipLost,
    #[error("not committed in time; outcome unknown")]
    TimedOut,
    #[error("chain server stopped")]
    Stopped,
}

type ProposalReply = oneshot::Sender<Result<BlockId, ProposeFailure>>;

/// Requests from the handle to the server loop.
enum Request {
    Propose(Bytes, ProposalReply),
    /// The application's state as of applied block `upto`: take a snapshot, drop the prefix.
    Compact(BlockId, Bytes, oneshot::Sender<Result<(), String>>),
    /// Hand leadership to this voter (controlled shutdown of the leader); answers whether the
    /// core started the transfer.
    Transfer(NodeId, oneshot::Sender<bool>),
}

/// The running chain server.
pub struct ChainHandle {
    requests: mpsc::Sender<Request>,
    status: watch::Receiver<ChainStatus>,
    progress: watch::Receiver<Arc<[VoterProgress]>>,
    tree: watch::Receiver<Arc<ChainTree>>,
    local_addr: SocketAddr,
    task: JoinHandle<anyhow::Result<()>>,
}

impl ChainHandle {
    /// Proposes a payload; answers once it is committed and queued for `apply` (not yet
    /// applied: wait for the application's position if that matters), or failed.
    pub async fn propose(&self, payload: Bytes) -> Result<BlockId, ProposeFailure> {
        let started = std::time::Instant::now();
        let (tx, rx) = oneshot::channel();
        self.requests
            .send(Request::Propose(payload, tx))
            .await
            .map_err(|_| ProposeFailure::Stopped)?;
        let r = rx.await.unwrap_or(Err(ProposeFailure::Stopped));
        if r.is_ok() {
            crate::metrics::chain_committed(started.elapsed());
        }
        r
    }

    /// Takes a snapshot: `state` is the application's state after applying block `upto`
    /// (which it has received through `apply`). Blocks up to `upto` are then reclaimed.
    pub async fn compact(&self, upto: BlockId, state: Bytes) -> anyhow::Result<()> {
        let (tx, rx) = oneshot::channel();
        self.requests
            .send(Request::Compact(upto, state, tx))
            .await
            .map_err(|_| anyhow::anyhow!("chain server stopped"))?;
        rx.await?.map_err(anyhow::Error::msg)
    }

    /// Asks the core to hand leadership to voter `to` (it must be caught up; the core refuses
    /// otherwise). True if a transfer started; the status watch shows when it completed.
    pub async fn transfer_leadership(&self, to: NodeId) -> bool {
        let (tx, rx) = oneshot::channel();
        if self.requests.send(Request::Transfer(to, tx)).await.is_err() {
            return false;
        }
        rx.await.unwrap_or(false)
    }

    pub fn status(&self) -> ChainStatus {
        *self.status.borrow()
    }

    /// The address the raft listener is bound to (differs from the configured one for port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The uncommitted tree and the dead branches lately collected (for status pages).
    pub fn watch_tree(&self) -> watch::Receiver<Arc<ChainTree>> {
        self.tree.clone()
    }

    /// A receiver that sees every status change.
    pub fn watch_status(&self) -> watch::Receiver<ChainStatus> {
        self.status.clone()
    }

    /// Every voter's progress while this server leads the chain; empty otherwise.
    pub fn watch_progress(&self) -> watch::Receiver<Arc<[VoterProgress]>> {
        self.progress.clone()
    }

    /// Waits for the server loop to end (after shutdown, or with its fatal error).
    pub async fn stopped(self) -> anyhow::Result<()> {
        self.task.await?
    }
}

/// Opens the chain store, recovers, binds the raft address and starts the server. It runs until
/// `shutdown` completes.
pub async fn run_chain(
    cfg: ChainNodeConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<ChainHandle> {
    let addrs: BTreeMap<NodeId, SocketAddr> = cfg.voters.iter().copied().collect();
    let my_addr = *addrs
        .get(&cfg.id)
        .ok_or_else(|| anyhow::anyhow!("server {} is not in the voter list", cfg.id))?;
    let mut core_cfg = Config::new(cfg.id, addrs.keys().copied().collect());
    core_cfg.election_timeout_ticks = cfg.election_timeout_ticks;
    core_cfg.heartbeat_interval_ticks = cfg.heartbeat_interval_ticks;
    let dir = cfg.data_dir.clone();
    let (store, recovered) = tokio::task::spawn_blocking(move || ChainStore::open(&dir)).await??;
    // The application starts from the recovered snapshot; the core only hands over blocks above.
    let backlog: VecDeque<Applied> = recovered
        .snapshot
        .clone()
        .filter(|_| cfg.apply.is_some())
        .map(Applied::Snapshot)
        .into_iter()
        .collect();
    let node = Node::restart(core_cfg, cfg.seed, recovered)?;

    let bind = cfg.listen.unwrap_or(my_addr);
    let listener = tokio::net::TcpListener::bind(bind)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on raft address {bind}: {e}"))?;
    let local_addr = listener.local_addr()?;
    let (inbound_tx, inbound_rx) = mpsc::channel(INBOUND_QUEUE_MAX);
    let (prop_tx, prop_rx) = mpsc::channel(PROPOSAL_QUEUE_MAX);
    let peers: BTreeMap<NodeId, PeerSender> = addrs
        .iter()
        .filter(|(&id, _)| id != cfg.id)
        .map(|(&id, &addr)| (id, transport::spawn_peer(id, addr, cfg.tls.clone())))
        .collect();
    let server = tokio::spawn(transport::serve(
        listener,
        cfg.id,
        inbound_tx,
        cfg.non_chain.clone(),
        cfg.tls.clone(),
    ));
    let (status_tx, status_rx) = watch::channel(status_of(&node));
    let (progress_tx, progress_rx) = watch::channel(Arc::from([]));
    let (tree_tx, tree_rx) = watch::channel(Arc::new(ChainTree::default()));
    let lp = Loop {
        node,
        store: Some(store),
        peers,
        addrs,
        apply: cfg.apply.clone(),
        backlog,
        status: status_tx,
        progress: progress_tx,
        tree: tree_tx,
        waiting: HashMap::new(),
        frames_dropped: 0,
    };
    let tick = Duration::from_millis(cfg.tick_ms.max(1));
    let task = tokio::spawn(async move {
        let res = lp.run(tick, inbound_rx, prop_rx, shutdown).await;
        server.abort();
        res
    });
    Ok(ChainHandle {
        requests: prop_tx,
        status: status_rx,
        progress: progress_rx,
        tree: tree_rx,
        local_addr,
        task,
    })
}

/// Waits for room in the application's channel (pending forever without one).
async fn reserve(
    apply: Option<&mpsc::Sender<Applied>>,
) -> Result<mpsc::Permit<'_, Applied>, mpsc::error::SendError<()>> {
    match apply {
        Some(tx) => tx.reserve().await,
        None => std::future::pending().await,
    }
}

/// The blocks above the commit point, in the tree's order (by height).
fn uncommitted_blocks(node: &Node) -> impl Iterator<Item = &Block> {
    let commit = node.commit().height;
    node.tree().blocks().filter(move |b| b.id.height > commit)
}

/// Heights above the commit point holding more than one block (`chain_forks`). The tree
/// iterates by height, so equal heights are adjacent.
fn uncommitted_forks(node: &Node) -> u64 {
    let mut forks = 0;
    let mut last: Option<(u64, bool)> = None;
    for b in uncommitted_blocks(node) {
        let h = b.id.height;
        match last {
            Some((lh, counted)) if lh == h => {
                if !counted {
                    forks += 1;
                    last = Some((h, true));
                }
            }
            _ => last = Some((h, false)),
        }
    }
    forks
}

fn status_of(node: &Node) -> ChainStatus {
    ChainStatus {
        role: node.role(),
        term: node.term(),
        leader: node.leader(),
        head: node.head(),
        commit: node.commit(),
        collected_total: node.collected_total(),
    }
}

struct Loop {
    node: Node,
    /// Moved onto the blocking pool for each write, then back.
    store: Option<ChainStore>,
    peers: BTreeMap<NodeId, PeerSender>,
    addrs: BTreeMap<NodeId, SocketAddr>,
    apply: Option<mpsc::Sender<Applied>>,
    /// Committed work the application's channel had no room for, in chain order. It holds
    /// clones (shared `Bytes`) of blocks the core's tree keeps anyway until the application
    /// has applied them and compacted past them, so it costs no memory beyond that tree; and
    /// while it is non-empty no proposal is taken, so a leader cannot grow it by itself.
    backlog: VecDeque<Applied>,
    status: watch::Sender<ChainStatus>,
    progress: watch::Sender<Arc<[VoterProgress]>>,
    tree: watch::Sender<Arc<ChainTree>>,
    waiting: HashMap<ProposalId, ProposalReply>,
    frames_dropped: u64,
}

impl Loop {
    async fn run(
        mut self,
        tick: Duration,
        mut inbound: mpsc::Receiver<josefine_chain::Envelope>,
        mut requests: mpsc::Receiver<Request>,
        shutdown: impl Future<Output = ()> + Send,
    ) -> anyhow::Result<()> {
        let mut ticker = tokio::time::interval(tick);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tokio::pin!(shutdown);
        self.hand_over();
        loop {
            let apply = self.apply.clone();
            let backlogged = !self.backlog.is_empty();
            tokio::select! {
                _ = &mut shutdown => break,
                _ = ticker.tick() => self.node.tick(),
                Some(env) = inbound.recv() => self.node.step(env),
                room = reserve(apply.as_ref()), if backlogged => match room {
                    Ok(permit) => {
                        let a = self.backlog.pop_front().expect("backlog checked non-empty");
                        permit.send(a);
                        self.hand_over();
                    }
                    // The application stopped: nobody will apply the backlog.
                    Err(_) => self.backlog.clear(),
                },
                Some(req) = requests.recv(), if !backlogged => match req {
                    Request::Propose(payload, reply) => self.propose(payload, reply),
                    Request::Compact(upto, state, reply) => {
                        let r = self.node.compact(upto, state).map_err(|e| e.to_string());
                        let _ = reply.send(r);
                    }
                    Request::Transfer(to, reply) => {
                        let _ = reply.send(self.node.transfer_leadership(to));
                    }
                },
            }
            self.drain().await?;
        }
        for (_, reply) in self.waiting.drain() {
            let _ = reply.send(Err(ProposeFailure::Stopped));
        }
        Ok(())
    }

    fn propose(&mut self, payload: Bytes, reply: ProposalReply) {
        match self.node.propose(payload) {
            Ok(pid) => {
                self.waiting.insert(pid, reply);
            }
            Err(e) => {
                let f = match e {
                    ProposeError::NotLeader { leader } => ProposeFailure::NotLeader {
                        leader,
                        addr: leader.and_then(|l| self.addrs.get(&l).copied()),
                    },
                    ProposeError::TooManyPending | ProposeError::TransferInProgress => {
                        ProposeFailure::Busy
                    }
                    ProposeError::TooLarge { .. } => ProposeFailure::TooLarge,
                };
                let _ = reply.send(Err(f));
            }
        }
    }

    /// Moves the backlog into the application's channel while it has room, in order. A closed
    /// channel (the application stopped) discards it: nobody will apply it.
    fn hand_over(&mut self) {
        let Some(apply) = &self.apply else {
            self.backlog.clear();
            return;
        };
        while let Some(a) = self.backlog.pop_front() {
            match apply.try_send(a) {
                Ok(()) => {}
                Err(mpsc::error::TrySendError::Full(a)) => {
                    self.backlog.push_front(a);
                    return;
                }
                Err(mpsc::error::TrySendError::Closed(_)) => {
                    self.backlog.clear();
                    return;
                }
            }
        }
    }

    /// Carries out every Ready the core has, in the order the core requires.
    async fn drain(&mut self) -> anyhow::Result<()> {
        while self.node.has_ready() {
            let ready = self.node.take_ready();
            // 1. Persist and fsync off the async workers.
            let mut store = self.store.take().expect("store present between readies");
            let (store, ready, res) = tokio::task::spawn_blocking(move || {
                let started = std::time::Instant::now();
                let res = store.persist(&ready);
                crate::metrics::chain_persisted(started.elapsed());
                (store, ready, res)
            })
            .await?;
            self.store = Some(store);
            res?;
            // 2. Send: never waits; a full peer queue drops the frame.
            for env in &ready.messages {
                if let Some(p) = self.peers.get(&env.to) {
                    if !p.send(codec::encode(env)) {
                        self.frames_dropped += 1;
                    }
                }
            }
            // 3. Hand over in chain order (the application applies a snapshot it is told
            //    about), without waiting: what does not fit waits in the backlog.
            if self.apply.is_some() {
                let snapshot = ready
                    .snapshot
                    .as_ref()
                    .filter(|_| ready.snapshot_installed)
                    .map(|s| Applied::Snapshot(s.clone()));
                let blocks = ready.committed.iter().map(|b| Applied::Block(b.clone()));
                self.backlog.extend(snapshot.into_iter().chain(blocks));
                self.hand_over();
            }
            // 4. Answer proposals: committed and queued for the application, in order.
            for (pid, outcome) in &ready.proposals {
                if let Some(reply) = self.waiting.remove(pid) {
                    let r = match outcome {
                        ProposalOutcome::Committed(id) => Ok(*id),
                        ProposalOutcome::LeadershipLost => Err(ProposeFailure::LeadershipLost),
                        ProposalOutcome::TimedOut => Err(ProposeFailure::TimedOut),
                    };
                    let _ = reply.send(r);
                }
            }
            // 5. Reclaim space.
            if !ready.dead.is_empty() || ready.compacted_to.is_some() {
                if !ready.dead.is_empty() {
                    tracing::info!(
                        collected = ready.dead.len(),
                        total = self.node.collected_total(),
                        "chain: dead-branch blocks collected"
                    );
                    let branches =
                        dead_branches(&ready.dead, &self.tree.borrow().uncommitted, unix_ms());
                    self.tree.send_if_modified(|t| {
                        if branches.is_empty() {
                            return false;
                        }
                        let t = Arc::make_mut(t);
                        t.dead_branches.extend(branches);
                        while t.dead_branches.len() > DEAD_BRANCHES_KEPT {
                            t.dead_branches.pop_front();
                        }
                        true
                    });
                }
                let mut store = self.store.take().expect("store present");
                let (store, res) = tokio::task::spawn_blocking(move || {
                    let res = store.reclaim(&ready);
                    (store, res)
                })
                .await?;
                self.store = Some(store);
                res?;
            }
            self.node.advance();
        }
        let now = status_of(&self.node);
        crate::metrics::chain_forks_set(uncommitted_forks(&self.node));
        self.status.send_if_modified(|s| {
            if *s != now {
                if s.leader != now.leader || s.term != now.term {
                    tracing::info!(term = now.term, leader = ?now.leader, role = ?now.role, "chain: leadership");
                }
                *s = now;
                true
            } else {
                false
            }
        });
        let node = &self.node;
        self.tree.send_if_modified(|t| {
            let same = t.commit == node.commit()
                && t.uncommitted
                    .iter()
                    .map(|b| b.id)
                    .eq(uncommitted_blocks(node).map(|b| b.id));
            if !same {
                let t = Arc::make_mut(t);
                t.commit = node.commit();
                t.uncommitted = uncommitted_blocks(node).cloned().collect();
            }
            !same
        });
        let progress = || {
            node.voter_progress()
                .map(|(id, matched)| VoterProgress { id, matched })
        };
        self.progress.send_if_modified(|p| {
            let changed = !p.iter().copied().eq(progress());
            if changed {
                *p = progress().collect();
            }
            changed
        });
        Ok(())
    }
}

#[cfg(test)]
mod tree_tests {
    use super::*;

    fn block(term: u64, height: u64, parent: BlockId) -> Block {
        Block {
            id: BlockId::new(term, height),
            parent,
            kind: josefine_chain::BlockKind::Data,
            payload: Bytes::new(),
        }
    }

    #[test]
    fn dead_blocks_group_into_branches_by_parent() {
        let root = BlockId::new(1, 4);
        let a5 = block(2, 5, root);
        let a6 = block(2, 6, a5.id);
        let b5 = block(3, 5, root);
        let published = vec![a5.clone(), b5.clone(), a6.clone()];
        // A compacted committed block (never published above the commit point) is no branch.
        let compacted = BlockId::new(1, 3);
        let got = dead_branches(&[a6.id, compacted, b5.id, a5.id], &published, 42);
        let ids: Vec<Vec<BlockId>> = got
            .iter()
            .map(|d| d.blocks.iter().map(|b| b.id).collect())
            .collect();
        // a5 <- a6 is one branch; b5 another.
        assert_eq!(ids, vec![vec![a5.id, a6.id], vec![b5.id]]);
        assert!(got.iter().all(|d| d.collected_at_ms == 42));
        assert_eq!(got[0].blocks[1], a6);
        assert!(dead_branches(&[compacted], &published, 42).is_empty());
    }
}

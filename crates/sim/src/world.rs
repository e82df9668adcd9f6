//! The simulated cluster: real `josefine_chain::Node`s, simulated disks, a hostile network,
//! and a fault schedule, all driven in one thread from one seed.
//!
//! Time is in milliseconds; each node ticks every `TICK_MS` with its own phase. Everything
//! random comes from one SplitMix64 seeded by the run's seed, and only ordered collections are
//! iterated, so a seed replays exactly. The world never reaches into a node's internals: it
//! drives the public API and observes through accessors, like a real runtime would.
//! With `RunOptions::controller` every server also runs the metadata plane (`cluster`): the
//! image applier, a broker process and, on the chain leader, the controller.

use std::collections::{BTreeMap, BTreeSet, BinaryHeap};
use std::panic::{catch_unwind, AssertUnwindSafe};

use bytes::Bytes;
use josefine_chain::rng::SplitMix64;
use josefine_chain::{
    BlockKind, Config, Envelope, Message, Mutation, Node, NodeId, ProposalOutcome, ProposeError,
    Snapshot,
};

use crate::invariants::{self, NodeMemory, Observer, Violation};
use crate::storage::SimStorage;

mod cluster;

pub use cluster::{
    MetaCounts, MetaMutation, ELECTION_TIMEOUT_MAX_MS, HEARTBEAT_INTERVAL_MS, SESSION_TIMEOUT_MS,
    SETTLE_BOUND_MS,
};

/// Simulated milliseconds per core tick. With `election_timeout_ticks = 10` elections time
/// out after 100-200 ms of simulated time.
pub const TICK_MS: u64 = 10;

/// After the final heal, a leader must be elected and a new proposal commit within this.
pub const LIVENESS_BOUND_MS: u64 = 5_000;

/// Which family of fault schedules a seed draws from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Profile {
    /// Everything, at rates drawn per seed: the default.
    Mixed,
    /// Three servers, one-block Append runs, and new leaders that are isolated or crash soon
    /// after winning: rapid leader churn, where Raft's Figure 8 and its relatives live.
    LeaderChurn,
}

/// Options of one run (everything else is drawn from the seed).
#[derive(Clone, Debug)]
pub struct RunOptions {
    pub profile: Profile,
    pub seed: u64,
    pub mutation: Mutation,
    /// Simulated time with faults, then the cluster heals for the liveness phase.
    pub fault_ms: u64,
    /// Stop at the first violation (the mutation tests want speed; reports want counts).
    pub stop_at_first_violation: bool,
    /// Run the metadata plane (image applier, brokers, controller, clients) on the chain, in
    /// place of the plain payload workload.
    pub controller: bool,
    /// A deliberately broken metadata plane (implies `controller`).
    pub meta_mutation: MetaMutation,
}

impl RunOptions {
    pub fn new(seed: u64) -> RunOptions {
        RunOptions {
            profile: Profile::Mixed,
            seed,
            mutation: Mutation::None,
            fault_ms: 20_000,
            stop_at_first_violation: true,
            controller: false,
            meta_mutation: MetaMutation::None,
        }
    }

    /// A run with the metadata plane.
    pub fn controller(seed: u64) -> RunOptions {
        RunOptions {
            controller: true,
            ..RunOptions::new(seed)
        }
    }
}

/// What one run did.
#[derive(Clone, Debug, Default)]
pub struct RunReport {
    pub seed: u64,
    pub nodes: usize,
    pub sim_time_ms: u64,
    pub elections: u64,
    pub blocks_committed: u64,
    pub dead_blocks_collected: u64,
    pub crashes: u64,
    pub snapshots_installed: u64,
    pub proposals_committed: u64,
    /// What the metadata plane did (all zero without `controller`).
    pub meta: MetaCounts,
    /// With `controller`: how long after the heal the metadata plane settled.
    pub settled_after_heal_ms: Option<u64>,
    pub violations: Vec<Violation>,
}

/// The fault profile of a run, drawn from its seed so runs differ in kind, not only in luck.
#[derive(Clone, Debug)]
struct Faults {
    drop_ppm: u64,
    dup_ppm: u64,
    delay_min_ms: u64,
    delay_max_ms: u64,
    long_delay_ppm: u64,
    partition_every_ms: u64,
    crash_ppm_per_ms: u64,
    pause_ppm_per_ms: u64,
    propose_every_ms: u64,
    snapshot_every_blocks: u64,
    /// Chance that a newly elected leader crashes within the next 100 ms.
    crash_new_leader_ppm: u64,
    /// Chance that a newly elected leader is cut off from everyone for a while, soon after
    /// winning: it keeps appending proposals nobody receives (the first step of Figure 8).
    isolate_new_leader_ppm: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum NetShape {
    Healthy,
    Symmetric,
    Asymmetric,
    Flapping,
}

struct SimNode {
    id: NodeId,
    node: Option<Node>,
    storage: SimStorage,
    mem: NodeMemory,
    /// Applied height and a running digest of the applied payloads: the state machine.
    sm_height: u64,
    sm_digest: u64,
    paused_until_ms: u64,
    restart_at_ms: Option<u64>,
    /// A crash scheduled shortly after this server won an election (the window in which
    /// Raft's Figure 8 lives: old-term blocks replicated, own-term block not yet).
    crash_at_ms: Option<u64>,
    tick_phase_ms: u64,
    incarnation: u64,
    collected_seen: u64,
    meta: cluster::MetaNode,
}

#[derive(PartialEq, Eq, PartialOrd, Ord)]
struct InFlight {
    at_ms: std::cmp::Reverse<u64>,
    seq: std::cmp::Reverse<u64>,
    from: NodeId,
    to: NodeId,
    frame: FrameKey,
}

/// Messages are kept in a side table; the heap orders only keys (Envelope is not Ord).
#[derive(PartialEq, Eq, PartialOrd, Ord, Clone, Copy)]
struct FrameKey(u64);

/// What travels between servers: chain messages and controller RPCs.
#[derive(Clone)]
enum Frame {
    Chain(Envelope),
    Ctrl(cluster::CtrlMsg),
}

pub struct World {
    opts: RunOptions,
    rng: SplitMix64,
    now_ms: u64,
    nodes: Vec<SimNode>,
    voters: Vec<NodeId>,
    faults: Faults,
    net: NetShape,
    /// Directed links that drop everything (from, to).
    cut: BTreeSet<(NodeId, NodeId)>,
    /// Servers cut off from everyone during `[from_ms, until_ms)`.
    isolated: BTreeMap<NodeId, (u64, u64)>,
    in_flight: BinaryHeap<InFlight>,
    frames: BTreeMap<u64, Frame>,
    next_seq: u64,
    obs: Observer,
    report: RunReport,
    healed: bool,
    /// First moment after the heal at which a proposal was accepted, and whether one
    /// accepted after the heal has committed.
    heal_proposal_committed: bool,
    post_heal_proposals: BTreeSet<(usize, u64, u64)>,
    payload_counter: u64,
    /// `SIM_TRACE=1`: print every delivery after the heal (debugging a failing seed).
    trace: bool,
    /// The metadata plane, with `RunOptions::controller`.
    cluster: Option<cluster::Cluster>,
}

fn digest(kind: BlockKind, payload: &[u8]) -> u64 {
    // FNV-1a: enough to tell payloads apart in a simulation.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325 ^ u64::from(kind.to_u8());
    for &b in payload {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

fn encode_sm(height: u64, digest: u64) -> Bytes {
    let mut v = height.to_be_bytes().to_vec();
    v.extend_from_slice(&digest.to_be_bytes());
    Bytes::from(v)
}

/// The text of a caught panic.
fn panic_message(p: Box<dyn std::any::Any + Send>) -> String {
    p.downcast_ref::<String>()
        .cloned()
        .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_default()
}

/// The snapshot state: height and payload digest (16 bytes), then, with the metadata plane,
/// the image snapshot.
fn decode_sm(s: &Snapshot) -> (u64, u64) {
    if s.state.len() < 16 {
        return (s.root.height, 0);
    }
    let h = u64::from_be_bytes(s.state[0..8].try_into().expect("8 bytes"));
    let d = u64::from_be_bytes(s.state[8..16].try_into().expect("8 bytes"));
    (h, d)
}

impl World {
    pub fn new(opts: RunOptions) -> World {
        let mut rng = SplitMix64::new(opts.seed);
        let churn = opts.profile == Profile::LeaderChurn;
        let n = if churn || rng.chance(500_000) { 3 } else { 5 };
        let voters: Vec<NodeId> = (1..=n as u64).collect();
        let faults = Faults {
            drop_ppm: [0, 10_000, 50_000, 200_000][rng.range(0, 4) as usize],
            dup_ppm: [0, 10_000, 50_000][rng.range(0, 3) as usize],
            delay_min_ms: rng.range(1, 5),
            delay_max_ms: rng.range(5, 60),
            long_delay_ppm: [0, 5_000, 30_000][rng.range(0, 3) as usize],
            partition_every_ms: rng.range(200, 2_000),
            crash_ppm_per_ms: [0, 200, 1_000][rng.range(0, 3) as usize],
            pause_ppm_per_ms: [0, 100, 500][rng.range(0, 3) as usize],
            propose_every_ms: rng.range(2, 30),
            snapshot_every_blocks: rng.range(10, 200),
            crash_new_leader_ppm: [0, 100_000, 300_000][rng.range(0, 3) as usize],
            isolate_new_leader_ppm: [0, 200_000, 500_000][rng.range(0, 3) as usize],
        };
        let faults = if churn {
            Faults {
                crash_new_leader_ppm: 300_000,
                isolate_new_leader_ppm: 600_000,
                pause_ppm_per_ms: 0,
                ..faults
            }
        } else {
            faults
        };
        let mut nodes = Vec::new();
        for &id in &voters {
            let phase = rng.range(0, TICK_MS);
            nodes.push(SimNode {
                id,
                node: None,
                storage: SimStorage::default(),
                mem: NodeMemory::default(),
                sm_height: 0,
                sm_digest: 0,
                paused_until_ms: 0,
                restart_at_ms: None,
                crash_at_ms: None,
                tick_phase_ms: phase,
                incarnation: 0,
                collected_seen: 0,
                meta: cluster::MetaNode::default(),
            });
        }
        let controller = opts.controller || opts.meta_mutation != MetaMutation::None;
        let cluster = controller.then(|| cluster::Cluster::new(&mut rng, opts.meta_mutation));
        let mut w = World {
            report: RunReport {
                seed: opts.seed,
                nodes: n,
                ..RunReport::default()
            },
            opts,
            rng,
            now_ms: 0,
            nodes,
            voters,
            faults,
            net: NetShape::Healthy,
            cut: BTreeSet::new(),
            isolated: BTreeMap::new(),
            in_flight: BinaryHeap::new(),
            frames: BTreeMap::new(),
            next_seq: 0,
            obs: Observer::default(),
            healed: false,
            heal_proposal_committed: false,
            post_heal_proposals: BTreeSet::new(),
            payload_counter: 0,
            trace: std::env::var_os("SIM_TRACE").is_some(),
            cluster,
        };
        for i in 0..w.nodes.len() {
            w.start_node(i);
        }
        w
    }

    fn config(&mut self, id: NodeId) -> Config {
        let mut cfg = Config::new(id, self.voters.clone());
        cfg.election_timeout_ticks = 10;
        cfg.heartbeat_interval_ticks = 2;
        cfg.proposal_timeout_ticks = 200;
        // Small runs make Appends end at older blocks, which the lastAppendedTerm bug needs.
        cfg.blocks_per_append_max = [1, 1, 1, 2, 3, 8][self.rng.range(0, 6) as usize];
        if self.opts.profile == Profile::LeaderChurn {
            cfg.blocks_per_append_max = 1;
        }
        cfg.pending_proposals_max = 64;
        cfg.mutation = self.opts.mutation;
        cfg
    }

    fn start_node(&mut self, i: usize) {
        let id = self.nodes[i].id;
        let cfg = self.config(id);
        let seed = self.rng.next_u64();
        let rec = self.nodes[i].storage.recover();
        let (h, d) = match &rec.snapshot {
            Some(s) => decode_sm(s),
            None => (0, 0),
        };
        let image = match (&self.cluster, &rec.snapshot) {
            (Some(_), Some(s)) => Some(self.snapshot_image(i, &s.clone())),
            (Some(_), None) => Some(josefine_meta::Image::default()),
            (None, _) => None,
        };
        match Node::restart(cfg, seed, rec) {
            Ok(node) => {
                let sn = &mut self.nodes[i];
                sn.node = Some(node);
                sn.sm_height = h;
                sn.sm_digest = d;
                sn.mem.last_commit = None;
                sn.incarnation += 1;
                sn.collected_seen = 0;
                sn.restart_at_ms = None;
                if let Some(image) = image {
                    self.meta_start(i, image);
                }
                self.check(i);
            }
            Err(e) => {
                self.obs.now_ms = self.now_ms;
                self.obs.violations.push(Violation {
                    property: "recovery",
                    detail: format!("server {id} failed to restart: {e}"),
                    time_ms: self.now_ms,
                });
            }
        }
    }

    fn crash_node(&mut self, i: usize) {
        let keep = {
            let n = self.nodes[i].storage.unsynced_len();
            self.rng.range(0, n as u64 + 1) as usize
        };
        let down_ms = self.rng.range(50, 2_000);
        let sn = &mut self.nodes[i];
        if sn.node.is_none() {
            return;
        }
        if let Some(node) = &sn.node {
            let c = node.collected_total();
            self.report.dead_blocks_collected += c - sn.collected_seen;
        }
        let (id, incarnation) = (sn.id, sn.meta.broker_incarnation());
        sn.node = None;
        sn.meta = cluster::MetaNode::default();
        sn.storage.crash(keep);
        sn.restart_at_ms = Some(self.now_ms + down_ms);
        self.report.crashes += 1;
        // Its kernel closes its connections at once: a controller it can reach sees its
        // control connection end (Josefine's session-close rule).
        let now = self.now_ms;
        let isolated = |n: NodeId| {
            self.isolated
                .get(&n)
                .is_some_and(|&(from, until)| from <= now && now < until)
        };
        let reachable: Vec<usize> = (0..self.nodes.len())
            .filter(|&j| {
                let to = self.nodes[j].id;
                j != i && !isolated(id) && !isolated(to) && !self.cut.contains(&(id, to))
            })
            .collect();
        for j in reachable {
            self.nodes[j]
                .meta
                .broker_connection_closed(incarnation, now);
        }
    }

    fn violated(&self) -> bool {
        !self.obs.violations.is_empty()
    }

    /// Runs the whole scenario and returns its report.
    pub fn run(mut self) -> RunReport {
        let bound_ms = if self.cluster.is_some() {
            cluster::Cluster::liveness_bound_ms()
        } else {
            LIVENESS_BOUND_MS
        };
        let end_ms = self.opts.fault_ms + bound_ms;
        while self.now_ms < end_ms {
            if self.opts.stop_at_first_violation && self.violated() {
                break;
            }
            if !self.healed && self.now_ms >= self.opts.fault_ms {
                self.heal();
            }
            if self.healed && self.heal_proposal_committed {
                break;
            }
            self.step_ms();
            self.now_ms += 1;
        }
        if !self.violated() && !self.heal_proposal_committed && self.cluster.is_some() {
            self.obs.violations.push(Violation {
                property: "liveness",
                detail: format!(
                    "the metadata plane did not settle within {bound_ms} ms after the heal; {} \
                     || {}",
                    self.describe(),
                    self.describe_meta()
                ),
                time_ms: self.now_ms,
            });
        }
        if !self.violated() && !self.heal_proposal_committed {
            self.obs.violations.push(Violation {
                property: "liveness",
                detail: format!(
                    "no proposal committed within {LIVENESS_BOUND_MS} ms after the heal; {}",
                    self.describe()
                ),
                time_ms: self.now_ms,
            });
        }
        for sn in &self.nodes {
            if let Some(node) = &sn.node {
                self.report.dead_blocks_collected += node.collected_total() - sn.collected_seen;
            }
        }
        self.report.sim_time_ms = self.now_ms;
        self.report.elections = self.obs.leaders.len() as u64;
        self.report.blocks_committed = self.obs.committed.len() as u64;
        if let Some(cl) = &self.cluster {
            self.report.meta = cl.counts.clone();
        }
        self.report.violations = self.obs.violations;
        self.report
    }

    /// One line per server: role, term, head, commit. For failure reports.
    fn describe(&self) -> String {
        let mut out = Vec::new();
        for sn in &self.nodes {
            match &sn.node {
                Some(n) => out.push(format!(
                    "s{} {:?} t{} vote{:?} head {} commit {} leader {:?} pending {}",
                    sn.id,
                    n.role(),
                    n.term(),
                    n.voted_for(),
                    n.head(),
                    n.commit(),
                    n.leader(),
                    n.pending_proposals()
                )),
                None => out.push(format!("s{} down", sn.id)),
            }
        }
        out.join(" | ")
    }

    fn heal(&mut self) {
        self.healed = true;
        self.net = NetShape::Healthy;
        self.cut.clear();
        self.isolated.clear();
        if self.cluster.is_some() {
            self.meta_heal();
        }
        for i in 0..self.nodes.len() {
            self.nodes[i].paused_until_ms = 0;
            if self.nodes[i].node.is_none() {
                self.start_node(i);
            }
        }
    }

    fn step_ms(&mut self) {
        self.obs.now_ms = self.now_ms;
        if !self.healed {
            self.inject_faults();
        }
        // Restarts due now.
        for i in 0..self.nodes.len() {
            if self.nodes[i].node.is_none()
                && self.nodes[i]
                    .restart_at_ms
                    .is_some_and(|t| t <= self.now_ms)
            {
                self.start_node(i);
            }
        }
        // Deliveries due now.
        while let Some(top) = self.in_flight.peek() {
            if top.at_ms.0 > self.now_ms {
                break;
            }
            let f = self.in_flight.pop().expect("peeked");
            let frame = self.frames.remove(&f.frame.0).expect("frame");
            let Some(i) = self.index(f.to) else { continue };
            if self.nodes[i].node.is_none() {
                continue; // a crashed server loses what arrives
            }
            if self.nodes[i].paused_until_ms > self.now_ms {
                // A paused process reads it later.
                let at = self.nodes[i].paused_until_ms;
                self.enqueue(f.from, f.to, frame, at);
                continue;
            }
            match frame {
                Frame::Chain(env) => {
                    if self.trace && (self.healed || std::env::var_os("SIM_TRACE_ALL").is_some()) {
                        eprintln!("{} deliver {:?}", self.now_ms, env);
                    }
                    self.with_node(i, |n| n.step(env));
                }
                Frame::Ctrl(msg) => self.deliver_ctrl(i, msg),
            }
        }
        // Ticks.
        for i in 0..self.nodes.len() {
            let sn = &self.nodes[i];
            if sn.node.is_some()
                && sn.paused_until_ms <= self.now_ms
                && (self.now_ms + sn.tick_phase_ms).is_multiple_of(TICK_MS)
            {
                self.with_node(i, |n| n.tick());
            }
        }
        // Lazy page-cache flushes: only matter when a mutation skips fsync.
        for sn in &mut self.nodes {
            if sn.storage.has_unsynced() && self.rng.chance(5_000) {
                sn.storage.sync();
            }
        }
        if self.cluster.is_some() {
            // The metadata plane of every running process, then its clients.
            for i in 0..self.nodes.len() {
                if self.nodes[i].node.is_some() && self.nodes[i].paused_until_ms <= self.now_ms {
                    self.meta_step(i);
                }
            }
            self.clients_step();
            if self.healed && !self.heal_proposal_committed && self.meta_settled() {
                self.heal_proposal_committed = true;
                self.report.settled_after_heal_ms = Some(self.now_ms - self.opts.fault_ms);
                if let Some(cl) = self.cluster.as_mut() {
                    cl.settled = true;
                }
            }
            return;
        }
        // Workload.
        if self.now_ms.is_multiple_of(self.faults.propose_every_ms) {
            self.propose_somewhere();
        }
    }

    fn index(&self, id: NodeId) -> Option<usize> {
        self.nodes.iter().position(|n| n.id == id)
    }

    fn propose_somewhere(&mut self) {
        let leader = self
            .nodes
            .iter()
            .position(|sn| sn.node.as_ref().is_some_and(|n| n.is_leader()));
        let i = match leader {
            Some(i) if self.rng.chance(900_000) => i,
            _ => self.rng.range(0, self.nodes.len() as u64) as usize,
        };
        if self.nodes[i].node.is_none() || self.nodes[i].paused_until_ms > self.now_ms {
            return;
        }
        self.payload_counter += 1;
        let payload = Bytes::from(format!("p{}-{}", self.opts.seed, self.payload_counter));
        let healed = self.healed;
        let mut accepted = None;
        self.with_node(i, |n| match n.propose(payload) {
            Ok(pid) => accepted = Some(pid),
            Err(ProposeError::NotLeader { .. })
            | Err(ProposeError::TooManyPending)
            | Err(ProposeError::TransferInProgress) => {}
            Err(e) => panic!("unexpected proposal error: {e}"),
        });
        if let (Some(pid), true) = (accepted, healed) {
            let inc = self.nodes[i].incarnation;
            self.post_heal_proposals.insert((i, inc, pid.0));
        }
        // Exercise leadership transfer now and then.
        if !healed && self.rng.chance(2_000) {
            let to = self.voters[self.rng.range(0, self.voters.len() as u64) as usize];
            self.with_node(i, |n| {
                n.transfer_leadership(to);
            });
        }
    }

    fn inject_faults(&mut self) {
        let f = self.faults.clone();
        if self.now_ms.is_multiple_of(f.partition_every_ms) {
            self.reshape_network();
        }
        if self.net == NetShape::Flapping && self.rng.chance(20_000) {
            self.random_cut();
        }
        for i in 0..self.nodes.len() {
            let scheduled = self.nodes[i].crash_at_ms.is_some_and(|t| t <= self.now_ms);
            if scheduled {
                self.nodes[i].crash_at_ms = None;
            }
            if self.nodes[i].node.is_some() && (scheduled || self.rng.chance(f.crash_ppm_per_ms)) {
                self.crash_node(i);
            }
            if self.nodes[i].node.is_some() && self.rng.chance(f.pause_ppm_per_ms) {
                let until = self.now_ms + self.rng.range(100, 3_000);
                self.nodes[i].paused_until_ms = until;
            }
        }
    }

    fn reshape_network(&mut self) {
        self.cut.clear();
        self.net = match self.rng.range(0, 4) {
            0 => NetShape::Healthy,
            1 => NetShape::Symmetric,
            2 => NetShape::Asymmetric,
            _ => NetShape::Flapping,
        };
        match self.net {
            NetShape::Healthy => {}
            NetShape::Symmetric => {
                let side: Vec<bool> = (0..self.voters.len())
                    .map(|_| self.rng.chance(500_000))
                    .collect();
                for (a, &x) in self.voters.iter().enumerate() {
                    for (b, &y) in self.voters.iter().enumerate() {
                        if side[a] != side[b] {
                            self.cut.insert((x, y));
                        }
                    }
                }
            }
            NetShape::Asymmetric | NetShape::Flapping => self.random_cut(),
        }
    }

    fn random_cut(&mut self) {
        self.cut.clear();
        let links = self.rng.range(1, self.voters.len() as u64 + 1);
        for _ in 0..links {
            let a = self.voters[self.rng.range(0, self.voters.len() as u64) as usize];
            let b = self.voters[self.rng.range(0, self.voters.len() as u64) as usize];
            if a != b {
                self.cut.insert((a, b));
            }
        }
    }

    fn enqueue(&mut self, from: NodeId, to: NodeId, frame: Frame, at_ms: u64) {
        let seq = self.next_seq;
        self.next_seq += 1;
        self.in_flight.push(InFlight {
            at_ms: std::cmp::Reverse(at_ms),
            seq: std::cmp::Reverse(seq),
            from,
            to,
            frame: FrameKey(seq),
        });
        self.frames.insert(seq, frame);
    }

    fn transmit(&mut self, env: Envelope) {
        self.transmit_frame(env.from, env.to, Frame::Chain(env));
    }

    fn transmit_frame(&mut self, from: NodeId, to: NodeId, frame: Frame) {
        let healthy = self.healed;
        let now = self.now_ms;
        let isolated = |id: NodeId| {
            self.isolated
                .get(&id)
                .is_some_and(|&(from, until)| from <= now && now < until)
        };
        if !healthy
            && (isolated(from)
                || isolated(to)
                || self.cut.contains(&(from, to))
                || self.rng.chance(self.faults.drop_ppm))
        {
            return;
        }
        let f = &self.faults;
        let (lo, hi, long_ppm, dup_ppm) = if healthy {
            (1, 10, 0, 0)
        } else {
            (f.delay_min_ms, f.delay_max_ms, f.long_delay_ppm, f.dup_ppm)
        };
        let mut delay = self.rng.range(lo, hi + 1);
        if self.rng.chance(long_ppm) {
            delay += self.rng.range(100, 1_500);
        }
        if self.rng.chance(dup_ppm) {
            let d2 = self.rng.range(lo, hi + 200);
            self.enqueue(from, to, frame.clone(), self.now_ms + d2);
        }
        self.enqueue(from, to, frame, self.now_ms + delay);
    }

    /// Calls into node `i`, then drains its Ready exactly as a real driver must, then checks
    /// every invariant. A core `assert!` is caught and reported as a violation.
    fn with_node(&mut self, i: usize, f: impl FnOnce(&mut Node)) {
        let Some(node) = self.nodes[i].node.as_mut() else {
            return;
        };
        let res = catch_unwind(AssertUnwindSafe(|| f(node)));
        if let Err(p) = res {
            self.core_panicked(i, p);
            return;
        }
        self.drain(i);
        self.check(i);
    }

    fn core_panicked(&mut self, i: usize, p: Box<dyn std::any::Any + Send>) {
        let msg = panic_message(p);
        self.obs.violations.push(Violation {
            property: "core_assert",
            detail: format!("server {}: {msg}", self.nodes[i].id),
            time_ms: self.now_ms,
        });
        // The process died on the assert.
        self.crash_node(i);
    }

    fn drain(&mut self, i: usize) {
        loop {
            let sn = &mut self.nodes[i];
            let Some(node) = sn.node.as_mut() else { return };
            if !node.has_ready() {
                return;
            }
            let r = node.take_ready();
            // 1. persist, in order, then fsync (unless a mutation skips it).
            let st = &mut sn.storage;
            if let Some(s) = &r.snapshot {
                st.write_snapshot(s.clone());
            }
            if let Some(hs) = r.hard_state {
                st.write_hard_state(hs);
            }
            for b in &r.blocks {
                st.write_block(b.clone());
            }
            if let Some(h) = r.head {
                st.write_head(h);
            }
            if r.sync {
                st.sync();
            }
            // 2. send.
            for env in r.messages {
                if let Message::VoteReply {
                    term,
                    granted: true,
                    pre: false,
                } = env.message
                {
                    invariants::vote_once_per_term(&mut self.obs, env.from, term, env.to);
                }
                self.transmit(env);
            }
            // 3. apply.
            let sn = &mut self.nodes[i];
            if r.snapshot_installed {
                let s = r.snapshot.as_ref().expect("installed snapshot present");
                let (h, d) = decode_sm(s);
                sn.sm_height = h;
                sn.sm_digest = d;
                self.report.snapshots_installed += 1;
                if self.cluster.is_some() {
                    self.meta_install(i, s);
                }
            }
            for b in &r.committed {
                let dg = digest(b.kind, &b.payload);
                let expected = self.nodes[i].sm_height + 1;
                invariants::state_machine_safety(
                    &mut self.obs,
                    self.nodes[i].id,
                    expected,
                    b.id.height,
                    dg,
                );
                let sn = &mut self.nodes[i];
                sn.sm_height = b.id.height;
                sn.sm_digest = sn.sm_digest.rotate_left(5) ^ dg;
                if self.cluster.is_some() {
                    self.meta_apply_block(i, b);
                }
            }
            // 4. proposal outcomes.
            let inc = self.nodes[i].incarnation;
            for (pid, outcome) in &r.proposals {
                if let ProposalOutcome::Committed(_) = outcome {
                    self.report.proposals_committed += 1;
                    if self.post_heal_proposals.contains(&(i, inc, pid.0)) {
                        self.heal_proposal_committed = true;
                    }
                }
                if self.cluster.is_some() {
                    self.meta_proposal_outcome(i, *pid, *outcome);
                }
            }
            // 5. reclaim.
            let sn = &mut self.nodes[i];
            let Some(_) = sn.node.as_ref() else { return };
            for id in &r.dead {
                sn.storage.delete_block(*id);
            }
            if let Some(root) = r.compacted_to {
                sn.storage.compact_to(root);
            }
            if r.sync {
                sn.storage.sync();
            }
            let node = sn.node.as_mut().expect("still up");
            node.advance();
            // Snapshot policy: compact once enough has been applied past the root.
            let applied = node.commit();
            if applied.height >= node.root().height + self.faults.snapshot_every_blocks {
                let mut state = encode_sm(sn.sm_height, sn.sm_digest);
                if self.cluster.is_some() {
                    if sn.meta.image.position != applied.height {
                        continue; // the image lags its chain (reported already): no snapshot
                    }
                    let mut v = state.to_vec();
                    v.extend_from_slice(&sn.meta.image.encode_snapshot());
                    state = Bytes::from(v);
                }
                if let Err(e) = node.compact(applied, state) {
                    panic!("compaction refused: {e}");
                }
            }
        }
    }

    fn check(&mut self, i: usize) {
        let sn = &mut self.nodes[i];
        let Some(node) = sn.node.as_ref() else { return };
        let newly_leader = node.is_leader() && !self.obs.leaders.contains_key(&node.term());
        invariants::election_safety(&mut self.obs, node);
        invariants::term_monotonic(&mut self.obs, node, &sn.mem);
        invariants::commit_monotonic_and_on_head(&mut self.obs, node, &sn.mem);
        invariants::chain_safety(&mut self.obs, node, &sn.mem);
        invariants::leader_completeness(&mut self.obs, node);
        sn.mem.last_term = node.term();
        sn.mem.last_commit = Some(node.commit());
        if newly_leader && !self.healed && self.rng.chance(self.faults.crash_new_leader_ppm) {
            let at = self.now_ms + self.rng.range(1, 100);
            self.nodes[i].crash_at_ms = Some(at);
        }
        if newly_leader && !self.healed && self.rng.chance(self.faults.isolate_new_leader_ppm) {
            let from = self.now_ms + self.rng.range(0, 40);
            let until = from + self.rng.range(100, 1_500);
            self.isolated.insert(self.nodes[i].id, (from, until));
        }
    }
}

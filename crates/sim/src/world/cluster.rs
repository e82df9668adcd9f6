//! The metadata plane of the simulated cluster (`--controller`): on every server the image
//! applier and a broker process; on the chain leader the controller; clients that send admin
//! requests through any server.
//!
//! It drives the real `josefine_meta` code the way the broker's runtime does (cluster design
//! 2.3 and 2.4): the applier calls `Image::advance_to(height)` then `Image::apply` for every
//! committed Data block (noop blocks only advance), and replaces the image on a snapshot; the
//! controller is activated only on the chain leader once its image has applied the commit point
//! of its own term (spec rule 4), rebuilt from scratch (`Controller::activate`) by every new
//! leader, and dropped on any loss of leadership; it decides one request at a time against the
//! latest applied image, proposes the encoded commands, and answers once its own image has
//! applied them. Brokers register (a new incarnation on every process start), heartbeat every
//! interval with their image position, ask for producer-id blocks, and shut down on a simulated
//! SIGTERM through the controller. Controller RPCs travel the simulated network, so they are
//! dropped, delayed, duplicated and partitioned like chain messages. A crashed server's kernel
//! closes its broker's control connection: every active controller it can reach then is told
//! (Josefine's session-close rule, `SESSION_CLOSE_GRACE_MS`); pauses and cuts close nothing.
//! Must never: let anything but an active controller propose, change an image outside the
//! applier (mutations excepted: each breaks one rule on purpose, to prove a check bites), or
//! use time or randomness other than the world's.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::panic::{catch_unwind, AssertUnwindSafe};

use bytes::Bytes;
use josefine_chain::rng::SplitMix64;
use josefine_chain::{Block, BlockKind, NodeId, ProposalId, ProposalOutcome, Snapshot};
use josefine_meta::controller::{
    Controller, ControllerSettings, Heartbeat, RegisterDecision, Registration,
};
use josefine_meta::{placement, Applied, Command, Image, MetaError, PartitionAssignment, TopicId};

use super::{digest, panic_message, World, TICK_MS};
use crate::meta_invariants::{self as checks, MetaHistory};

/// `broker.session.timeout.ms` here: Kafka's 9000 scaled down ten times, so a 20 s fault phase
/// sees sessions expire (pauses last 0.1 to 3 s).
pub const SESSION_TIMEOUT_MS: u64 = 900;
/// `broker.heartbeat.interval.ms`, scaled like the session timeout (Kafka: 2000).
pub const HEARTBEAT_INTERVAL_MS: u64 = 200;
/// `broker.session.close.grace.ms` (Josefine's session-close rule: a crashed broker process's
/// controller connection is closed by its kernel, and the controller fences it this long
/// later unless it heartbeats), scaled like the session timeout (default 3000).
pub const SESSION_CLOSE_GRACE_MS: u64 = 300;
/// The longest chain election timeout (twice 10 ticks of 10 ms): part of the liveness bound.
pub const ELECTION_TIMEOUT_MAX_MS: u64 = 200;
/// After the heal, the metadata plane settles within session timeout + election timeout +
/// this (registration, a heartbeat, the unfence and its elections, the probe topic: a few
/// round trips and commits; 10,000 seeds settle within 1 s).
pub const SETTLE_BOUND_MS: u64 = 2_000;
/// Requests a controller queues; beyond that they are dropped and the brokers retry.
const CONTROLLER_QUEUE_MAX: usize = 256;
/// A broker that asked to shut down exits after this even without the controller's go
/// (Kafka's controlled shutdown timeout).
const SHUTDOWN_TIMEOUT_MS: u64 = 2_000;
/// A chain leader that shuts down hands leadership over and exits this much later.
const LEADER_HANDOVER_MS: u64 = 100;
/// How often an unregistered broker retries its registration.
const REGISTER_RETRY_MS: u64 = 100;
/// Topic names the clients use: few, so creations collide and deletions find their topic.
const TOPIC_NAMES: u64 = 8;
/// The topic a client creates after the heal: the admin path must work again.
const HEAL_PROBE_TOPIC: &str = "heal-probe";
/// How old the partition view of a `StaleControllerImage` controller is.
const STALE_IMAGE_MS: u64 = 1_000;
/// Apply outcomes per height a server keeps (its controller answers from the recent ones).
const OUTCOMES_KEPT: usize = 512;

/// A deliberately broken metadata plane, to prove the checks can fail. Each breaks one rule
/// and is caught by the check `caught_by` names (`tests/controller.rs` asserts it).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MetaMutation {
    None,
    /// Apply fences a broker but skips the leader changes of the fence batch.
    FencedLeaderStays,
    /// Apply takes a fenced broker out of every ISR, even when it is the last member.
    EmptyIsrOnFence,
    /// Apply gives a registration the epoch of the next position instead of its own.
    RegistrationEpochAhead,
    /// Apply changes a leader without bumping the leader epoch.
    NoLeaderEpochBump,
    /// Apply sets the partition epoch to the new leader epoch on a leader change.
    PartitionEpochReset,
    /// The controller decides with partition states (leader, ISR, epochs) a second old and
    /// stamps each partition change with the partition epoch it reads when proposing (so
    /// `expected_partition_epoch` guards nothing).
    StaleControllerImage,
    /// Apply moves the next producer id only half a block on: blocks overlap.
    OverlappingProducerIds,
    /// The controller applies its own proposals to its image before they commit.
    SpeculativeApply,
    /// The controller never elects a leader for a leaderless partition.
    NoElections,
}

impl MetaMutation {
    pub const ALL: [MetaMutation; 9] = [
        MetaMutation::FencedLeaderStays,
        MetaMutation::EmptyIsrOnFence,
        MetaMutation::RegistrationEpochAhead,
        MetaMutation::NoLeaderEpochBump,
        MetaMutation::PartitionEpochReset,
        MetaMutation::StaleControllerImage,
        MetaMutation::OverlappingProducerIds,
        MetaMutation::SpeculativeApply,
        MetaMutation::NoElections,
    ];

    pub fn name(self) -> &'static str {
        match self {
            MetaMutation::None => "none",
            MetaMutation::FencedLeaderStays => "fenced-leader-stays",
            MetaMutation::EmptyIsrOnFence => "empty-isr-on-fence",
            MetaMutation::RegistrationEpochAhead => "registration-epoch-ahead",
            MetaMutation::NoLeaderEpochBump => "no-leader-epoch-bump",
            MetaMutation::PartitionEpochReset => "partition-epoch-reset",
            MetaMutation::StaleControllerImage => "stale-controller-image",
            MetaMutation::OverlappingProducerIds => "overlapping-producer-ids",
            MetaMutation::SpeculativeApply => "speculative-apply",
            MetaMutation::NoElections => "no-elections",
        }
    }

    pub fn parse(name: &str) -> Option<MetaMutation> {
        std::iter::once(MetaMutation::None)
            .chain(MetaMutation::ALL)
            .find(|m| m.name() == name)
    }

    /// The check (`Violation::property`) that must catch this mutation first.
    pub fn caught_by(self) -> &'static str {
        match self {
            MetaMutation::None => "",
            MetaMutation::FencedLeaderStays => "no_ineligible_leader",
            MetaMutation::EmptyIsrOnFence => "isr_well_formed",
            MetaMutation::RegistrationEpochAhead => "image_consistency",
            MetaMutation::NoLeaderEpochBump => "one_leader_per_epoch",
            MetaMutation::PartitionEpochReset => "epochs_monotonic",
            MetaMutation::StaleControllerImage => "no_lost_partition_update",
            MetaMutation::OverlappingProducerIds => "producer_id_blocks_disjoint",
            MetaMutation::SpeculativeApply => "images_equal_at_equal_positions",
            MetaMutation::NoElections => "liveness",
        }
    }
}

/// What the metadata plane did in one run (each committed command counted once, at the first
/// server that applied it).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MetaCounts {
    pub registrations: u64,
    pub fences: u64,
    pub unfences: u64,
    pub controlled_shutdowns: u64,
    /// Partition changes that gave a partition a new leader.
    pub partition_elections: u64,
    /// Partition changes that left a partition without a leader.
    pub partitions_offline: u64,
    pub topics_created: u64,
    pub topics_deleted: u64,
    pub producer_id_blocks: u64,
    /// Committed commands that failed on apply (no-ops everywhere).
    pub commands_refused: u64,
    pub controller_activations: u64,
    /// Broker processes that exited on SIGTERM (after the controller's go or the timeout).
    pub broker_exits: u64,
    /// Broker-only pauses (the chain node kept running).
    pub broker_pauses: u64,
}

impl MetaCounts {
    /// Every count with its name: the one list the methods below walk.
    fn fields_mut(&mut self) -> [(&'static str, &mut u64); 13] {
        [
            ("registrations", &mut self.registrations),
            ("fences", &mut self.fences),
            ("unfences", &mut self.unfences),
            ("controlled_shutdowns", &mut self.controlled_shutdowns),
            ("partition_elections", &mut self.partition_elections),
            ("partitions_offline", &mut self.partitions_offline),
            ("topics_created", &mut self.topics_created),
            ("topics_deleted", &mut self.topics_deleted),
            ("producer_id_blocks", &mut self.producer_id_blocks),
            ("commands_refused", &mut self.commands_refused),
            ("controller_activations", &mut self.controller_activations),
            ("broker_exits", &mut self.broker_exits),
            ("broker_pauses", &mut self.broker_pauses),
        ]
    }

    /// `(name, value)` pairs, for reports and progress files.
    pub fn fields(&self) -> [(&'static str, u64); 13] {
        self.clone().fields_mut().map(|(name, v)| (name, *v))
    }

    pub fn add(&mut self, o: &MetaCounts) {
        for ((_, mine), (_, theirs)) in self.fields_mut().into_iter().zip(o.fields()) {
            *mine += theirs;
        }
    }

    /// Sets the count called `name` (as `fields` names it); other names are ignored.
    pub fn set(&mut self, name: &str, v: u64) {
        if let Some((_, f)) = self.fields_mut().into_iter().find(|(n, _)| *n == name) {
            *f = v;
        }
    }
}

/// Workload and broker fault rates of a run, drawn from its seed.
#[derive(Clone, Debug)]
struct Rates {
    admin_ppm: u64,
    allocate_ppm: u64,
    sigterm_ppm: u64,
    broker_pause_ppm: u64,
    racks: bool,
}

/// The cluster-wide part of the metadata plane.
pub(crate) struct Cluster {
    pub(crate) mutation: MetaMutation,
    settings: ControllerSettings,
    rates: Rates,
    hist: MetaHistory,
    pub(crate) counts: MetaCounts,
    /// Heights already counted in `counts`.
    counted_heights: BTreeSet<u64>,
    /// After the heal: every partition has a leader, every broker is in, the probe topic exists.
    pub(crate) settled: bool,
}

impl Cluster {
    pub(crate) fn new(rng: &mut SplitMix64, mutation: MetaMutation) -> Cluster {
        let rates = Rates {
            admin_ppm: [1_000, 3_000, 10_000][rng.range(0, 3) as usize],
            allocate_ppm: [200, 1_000, 3_000][rng.range(0, 3) as usize],
            sigterm_ppm: [0, 30, 100][rng.range(0, 3) as usize],
            broker_pause_ppm: [0, 30, 100][rng.range(0, 3) as usize],
            racks: rng.chance(500_000),
        };
        Cluster {
            mutation,
            settings: ControllerSettings {
                session_timeout_ms: SESSION_TIMEOUT_MS,
                heartbeat_interval_ms: HEARTBEAT_INTERVAL_MS,
                session_close_grace_ms: SESSION_CLOSE_GRACE_MS,
                producer_id_block_size: 1_000,
                ..ControllerSettings::default()
            },
            rates,
            hist: MetaHistory::default(),
            counts: MetaCounts::default(),
            counted_heights: BTreeSet::new(),
            settled: false,
        }
    }

    /// After the heal, the metadata plane must settle within this.
    pub(crate) fn liveness_bound_ms() -> u64 {
        SESSION_TIMEOUT_MS + ELECTION_TIMEOUT_MAX_MS + SETTLE_BOUND_MS
    }
}

/// The metadata state of one server process.
#[derive(Default)]
pub(crate) struct MetaNode {
    pub(crate) image: Image,
    controller: Option<ActiveController>,
    broker: SimBroker,
    /// Height -> whether the command there applied (false: refused, a no-op).
    outcomes: BTreeMap<u64, bool>,
    /// `SpeculativeApply`: payloads already applied when proposed.
    speculated: BTreeSet<Bytes>,
}

/// The control connection of a broker incarnation (one per process; never 0).
fn session_connection(incarnation_id: u128) -> u64 {
    (incarnation_id as u64) | 1
}

impl MetaNode {
    /// This server's broker incarnation (0: none started).
    pub(crate) fn broker_incarnation(&self) -> u128 {
        self.broker.incarnation_id
    }

    /// The kernel of a crashed server closed `incarnation_id`'s control connection to this
    /// one: an active controller starts the session-close grace.
    pub(crate) fn broker_connection_closed(&mut self, incarnation_id: u128, now_ms: u64) {
        if let Some(c) = self.controller.as_mut() {
            c.ctl
                .connection_closed(session_connection(incarnation_id), now_ms);
        }
    }
}

/// The broker process of a server.
#[derive(Default)]
struct SimBroker {
    incarnation_id: u128,
    /// The broker epoch the controller answered the registration with.
    epoch: Option<i64>,
    next_register_ms: u64,
    next_heartbeat_ms: u64,
    /// SIGTERM received: heartbeats ask to shut down.
    shutdown_since_ms: Option<u64>,
    /// The controller said go: the process exits then.
    exit_at_ms: Option<u64>,
    /// A broker-only pause: no heartbeats, the chain node runs on.
    paused_until_ms: u64,
}

struct ActiveController {
    term: u64,
    ctl: Controller,
    queue: VecDeque<Request>,
    /// The decision whose proposals are not all resolved yet: the controller is serial.
    busy: Option<Decision>,
    next_tick_ms: u64,
    /// `StaleControllerImage`: images of the last second, oldest first.
    history: VecDeque<(u64, Image)>,
}

struct Decision {
    pending: Vec<ProposalId>,
    last_height: u64,
    failed: bool,
    /// Still proposing: outcomes must not finish it yet.
    building: bool,
    answer: Option<(NodeId, Answer)>,
}

/// What to answer once a decision's commands applied.
enum Answer {
    Registered { incarnation_id: u128, node_id: i32 },
    Heartbeat(Reply),
    ProducerIds { first_id: i64, count: i64 },
    Created { name: String, topic_id: TopicId },
    Deleted { topic_id: TopicId },
}

/// A controller RPC on the simulated network.
#[derive(Clone, Debug)]
pub(crate) enum CtrlMsg {
    Request(Request),
    Reply(Reply),
}

#[derive(Clone, Debug)]
pub(crate) struct Request {
    from: NodeId,
    /// The sending broker's incarnation (0 for client requests forwarded by a broker).
    incarnation_id: u128,
    op: Op,
}

#[derive(Clone, Debug)]
enum Op {
    Register {
        rack: Option<String>,
    },
    Heartbeat {
        broker_epoch: i64,
        position: u64,
        want_shutdown: bool,
    },
    AllocateProducerIds {
        broker_epoch: i64,
    },
    CreateTopic {
        name: String,
        partitions: usize,
        replication_factor: usize,
    },
    DeleteTopic {
        name: String,
    },
}

#[derive(Clone, Debug)]
pub(crate) enum Reply {
    NotController,
    Refused {
        error_code: i16,
    },
    Registered {
        incarnation_id: u128,
        epoch: i64,
    },
    Heartbeat {
        incarnation_id: u128,
        broker_epoch: i64,
        refused: bool,
        should_shut_down: bool,
    },
    ProducerIds {
        first_id: i64,
        count: i64,
        height: u64,
    },
    Admin {
        error_code: i16,
    },
}

enum Decided {
    Reply(Reply),
    Propose(Vec<Planned>, Answer),
}

/// A command about to be proposed, with the partition epoch of the image it was decided on
/// for each partition change in it: `(topic, partition, occurrence in the command, epoch)`.
struct Planned {
    cmd: Command,
    changes: Vec<(TopicId, i32, usize, i32)>,
}

/// The commands of `cmd`: itself, or a batch's members.
fn members(cmd: &Command) -> &[Command] {
    match cmd {
        Command::Batch(all) => all,
        one => std::slice::from_ref(one),
    }
}

fn members_mut(cmd: &mut Command) -> &mut [Command] {
    match cmd {
        Command::Batch(all) => all,
        one => std::slice::from_mut(one),
    }
}

/// The partition changes of `cmd` with the partition epoch each will find when `cmd` applies
/// to `image` (every change of a partition bumps its epoch by one).
fn changes_on(image: &Image, cmd: &Command) -> Vec<(TopicId, i32, usize, i32)> {
    let mut seen: BTreeMap<(TopicId, i32), usize> = BTreeMap::new();
    let mut out = Vec::new();
    for c in members(cmd) {
        if let Command::ChangePartition {
            topic_id,
            partition,
            ..
        } = c
        {
            let k = seen.entry((*topic_id, *partition)).or_insert(0);
            let epoch = image
                .partition(*topic_id, *partition)
                .map_or(-1, |p| p.partition_epoch);
            out.push((*topic_id, *partition, *k, epoch + *k as i32));
            *k += 1;
        }
    }
    out
}

/// `image.apply(cmd)`, with the run's mutation. Mutations change the image through its public
/// fields, which is exactly what the applier must never do.
fn apply_command(
    image: &mut Image,
    cmd: &Command,
    mutation: MetaMutation,
) -> Result<Applied, MetaError> {
    if mutation == MetaMutation::FencedLeaderStays {
        if let Some(Command::FenceBroker { node_id, .. }) = members(cmd).first() {
            if matches!(cmd, Command::Batch(_)) {
                image.validate(cmd)?;
                image
                    .brokers
                    .get_mut(node_id)
                    .expect("validated: registered")
                    .fenced = true;
                return Ok(Applied::Batch(vec![Applied::BrokerFenced {
                    node_id: *node_id,
                }]));
            }
        }
    }
    let before = (mutation != MetaMutation::None).then(|| image.clone());
    let applied = image.apply(cmd)?;
    let Some(before) = before else {
        return Ok(applied);
    };
    let leader_changed = |topic_id: TopicId, p: &PartitionAssignment| {
        before
            .partition(topic_id, p.partition)
            .filter(|old| old.leader != p.leader)
            .map(|old| old.leader_epoch)
    };
    match mutation {
        MetaMutation::EmptyIsrOnFence => {
            for c in members(cmd) {
                if let Command::FenceBroker { node_id, .. } = c {
                    for t in image.topics.values_mut() {
                        for p in &mut t.partitions {
                            p.isr.retain(|r| r != node_id);
                        }
                    }
                }
            }
        }
        MetaMutation::RegistrationEpochAhead => {
            for c in members(cmd) {
                if let Command::RegisterBroker { node_id, .. } = c {
                    if let Some(b) = image.brokers.get_mut(node_id) {
                        b.epoch += 1;
                    }
                }
            }
        }
        MetaMutation::NoLeaderEpochBump | MetaMutation::PartitionEpochReset => {
            for t in image.topics.values_mut() {
                let topic_id = t.topic_id;
                for p in &mut t.partitions {
                    if let Some(old_epoch) = leader_changed(topic_id, p) {
                        if mutation == MetaMutation::NoLeaderEpochBump {
                            p.leader_epoch = old_epoch;
                        } else {
                            p.partition_epoch = p.leader_epoch;
                        }
                    }
                }
            }
        }
        MetaMutation::OverlappingProducerIds => {
            if let Command::AllocateProducerIds { count, .. } = cmd {
                image.next_producer_id -= count / 2;
            }
        }
        _ => {}
    }
    Ok(applied)
}

/// `NoElections`: `cmd` without the changes that give a leaderless partition a leader.
fn without_elections(basis: &Image, cmd: Command) -> Option<Command> {
    let is_election = |c: &Command| match c {
        Command::ChangePartition {
            topic_id,
            partition,
            leader: Some(l),
            ..
        } => {
            *l != PartitionAssignment::NO_LEADER
                && basis
                    .partition(*topic_id, *partition)
                    .is_some_and(|p| p.leader == PartitionAssignment::NO_LEADER)
        }
        _ => false,
    };
    match cmd {
        Command::Batch(all) => {
            let kept: Vec<Command> = all.into_iter().filter(|c| !is_election(c)).collect();
            (!kept.is_empty()).then_some(Command::Batch(kept))
        }
        one => (!is_election(&one)).then_some(one),
    }
}

/// Turns a controller decision into proposals: applies the decision-level mutations and notes,
/// per partition change, the epoch of the image it was decided on.
fn plan(
    basis: &Image,
    current: &Image,
    cmds: Vec<Command>,
    mutation: MetaMutation,
) -> Vec<Planned> {
    let cmds: Vec<Command> = if mutation == MetaMutation::NoElections {
        cmds.into_iter()
            .filter_map(|c| without_elections(basis, c))
            .collect()
    } else {
        cmds
    };
    // Changes of one partition earlier in the decision: the controller computed each command
    // on the image as the ones before it leave it.
    let mut earlier: BTreeMap<(TopicId, i32), i32> = BTreeMap::new();
    let mut planned = Vec::with_capacity(cmds.len());
    for mut cmd in cmds {
        let mut changes = Vec::new();
        let mut within: BTreeMap<(TopicId, i32), usize> = BTreeMap::new();
        for c in members_mut(&mut cmd) {
            if let Command::ChangePartition {
                topic_id,
                partition,
                expected_partition_epoch,
                ..
            } = c
            {
                let key = (*topic_id, *partition);
                let k = within.entry(key).or_insert(0);
                let offset = earlier.entry(key).or_insert(0);
                let epoch_of = |image: &Image| {
                    image
                        .partition(*topic_id, *partition)
                        .map(|p| p.partition_epoch + *offset)
                };
                if let Some(decided) = epoch_of(basis) {
                    changes.push((*topic_id, *partition, *k, decided));
                }
                if mutation == MetaMutation::StaleControllerImage {
                    if let Some(now) = epoch_of(current) {
                        *expected_partition_epoch = now;
                    }
                }
                *k += 1;
                *offset += 1;
            }
        }
        planned.push(Planned { cmd, changes });
    }
    planned
}

fn random_topic_id(rng: &mut SplitMix64) -> TopicId {
    let mut id = [0u8; 16];
    id[..8].copy_from_slice(&rng.next_u64().to_be_bytes());
    id[8..].copy_from_slice(&(rng.next_u64() | 1).to_be_bytes());
    TopicId(id)
}

fn count(counts: &mut MetaCounts, cmd: &Command) {
    for c in members(cmd) {
        match c {
            Command::RegisterBroker { .. } => counts.registrations += 1,
            Command::FenceBroker { .. } => counts.fences += 1,
            Command::UnfenceBroker { .. } => counts.unfences += 1,
            Command::BeginControlledShutdown { .. } => counts.controlled_shutdowns += 1,
            Command::ChangePartition {
                leader: Some(l), ..
            } => {
                if *l == PartitionAssignment::NO_LEADER {
                    counts.partitions_offline += 1;
                } else {
                    counts.partition_elections += 1;
                }
            }
            Command::CreateTopic { .. } => counts.topics_created += 1,
            Command::DeleteTopic { .. } => counts.topics_deleted += 1,
            Command::AllocateProducerIds { .. } => counts.producer_id_blocks += 1,
            _ => {}
        }
    }
}

impl World {
    /// The image stored in a chain snapshot (after the 16 bytes of the payload digest).
    pub(super) fn snapshot_image(&mut self, i: usize, s: &Snapshot) -> Image {
        let id = self.nodes[i].id;
        match Image::decode_snapshot(s.state.get(16..).unwrap_or_default()) {
            Ok(image) if image.position == s.root.height => image,
            Ok(image) => {
                self.obs.fail(
                    "snapshot_image",
                    format!(
                        "server {id}: snapshot at {} holds an image at position {}",
                        s.root, image.position
                    ),
                );
                image
            }
            Err(e) => {
                self.obs.fail(
                    "snapshot_image",
                    format!("server {id}: snapshot at {}: {e}", s.root),
                );
                Image::default()
            }
        }
    }

    /// A server process starts: its image from the snapshot, a new broker incarnation, no
    /// controller.
    pub(super) fn meta_start(&mut self, i: usize, image: Image) {
        let incarnation_id =
            (u128::from(self.rng.next_u64()) << 64) | u128::from(self.rng.next_u64());
        self.nodes[i].meta = MetaNode {
            image,
            broker: SimBroker {
                incarnation_id,
                next_register_ms: self.now_ms,
                ..SimBroker::default()
            },
            ..MetaNode::default()
        };
        self.check_image(i);
    }

    /// The image replaced by an installed snapshot.
    pub(super) fn meta_install(&mut self, i: usize, s: &Snapshot) {
        let image = self.snapshot_image(i, s);
        let meta = &mut self.nodes[i].meta;
        meta.image = image;
        meta.speculated.clear();
        self.check_image(i);
    }

    /// The applier: one committed block, then every image check.
    pub(super) fn meta_apply_block(&mut self, i: usize, b: &Block) {
        let id = self.nodes[i].id;
        let Some(cl) = self.cluster.as_mut() else {
            return;
        };
        let meta = &mut self.nodes[i].meta;
        if b.id.height <= meta.image.position {
            return; // out of order: state_machine_safety reports it
        }
        meta.image.advance_to(b.id.height);
        let mut applied_changes = None;
        if b.kind == BlockKind::Data {
            let outcome = if meta.speculated.remove(&b.payload) {
                true
            } else {
                match Command::decode(&b.payload) {
                    Err(e) => {
                        self.obs.fail(
                            "command_decode",
                            format!("server {id}: block {} does not decode: {e}", b.id),
                        );
                        false
                    }
                    Ok(cmd) => {
                        let changes = changes_on(&meta.image, &cmd);
                        let image = &mut meta.image;
                        let mutation = cl.mutation;
                        match catch_unwind(AssertUnwindSafe(|| {
                            apply_command(image, &cmd, mutation)
                        })) {
                            Err(p) => {
                                self.obs.fail(
                                    "apply_assert",
                                    format!("server {id}: {}", panic_message(p)),
                                );
                                false
                            }
                            Ok(Ok(_)) => {
                                if cl.counted_heights.insert(b.id.height) {
                                    count(&mut cl.counts, &cmd);
                                }
                                applied_changes = Some(changes);
                                true
                            }
                            Ok(Err(_)) => {
                                if cl.counted_heights.insert(b.id.height) {
                                    cl.counts.commands_refused += 1;
                                }
                                false
                            }
                        }
                    }
                }
            };
            meta.outcomes.insert(b.id.height, outcome);
            if meta.outcomes.len() > OUTCOMES_KEPT {
                meta.outcomes.pop_first();
            }
        }
        self.check_image(i);
        if let (Some(changes), Some(cl)) = (applied_changes, self.cluster.as_ref()) {
            let dg = digest(b.kind, &b.payload);
            checks::no_lost_partition_update(&mut self.obs, &cl.hist, id, dg, &changes);
        }
    }

    /// Every per-image check, on server `i`'s image as it is now.
    fn check_image(&mut self, i: usize) {
        let Some(cl) = self.cluster.as_mut() else {
            return;
        };
        let id = self.nodes[i].id;
        let image = &self.nodes[i].meta.image;
        let obs = &mut self.obs;
        checks::no_ineligible_leader(obs, id, image);
        checks::isr_well_formed(obs, id, image);
        checks::image_consistency(obs, id, image);
        checks::epochs_monotonic(obs, &mut cl.hist, id, image);
        checks::one_leader_per_epoch(obs, &mut cl.hist, id, image);
        checks::images_equal_at_equal_positions(obs, &mut cl.hist, id, image);
    }

    /// Once per millisecond on a running, unpaused server.
    pub(super) fn meta_step(&mut self, i: usize) {
        self.controller_lifecycle(i);
        self.controller_work(i);
        self.broker_step(i);
    }

    /// Activates the controller on the chain leader once its image holds everything
    /// committed before its term; drops it on any loss of leadership.
    fn controller_lifecycle(&mut self, i: usize) {
        let now = self.now_ms;
        let Some(node) = self.nodes[i].node.as_ref() else {
            return;
        };
        let (leader, term, commit) = (node.is_leader(), node.term(), node.commit());
        let Some(cl) = self.cluster.as_mut() else {
            return;
        };
        let meta = &mut self.nodes[i].meta;
        if meta
            .controller
            .as_ref()
            .is_some_and(|c| !leader || c.term != term)
        {
            meta.controller = None;
        }
        if meta.controller.is_none()
            && leader
            && commit.term == term
            && meta.image.position >= commit.height
        {
            meta.controller = Some(ActiveController {
                term,
                ctl: Controller::activate(&meta.image, now, cl.settings),
                queue: VecDeque::new(),
                busy: None,
                next_tick_ms: now,
                history: VecDeque::new(),
            });
            cl.counts.controller_activations += 1;
        }
        if cl.mutation == MetaMutation::StaleControllerImage {
            if let Some(c) = meta.controller.as_mut() {
                if c.history.back().is_none_or(|(t, _)| now >= t + 100) {
                    c.history.push_back((now, meta.image.clone()));
                }
                while c.history.len() > 1 && c.history[1].0 + STALE_IMAGE_MS <= now {
                    c.history.pop_front();
                }
            }
        }
    }

    /// The serial controller: when no decision is in flight, answer queued requests (those
    /// needing a command start a decision), then let time act (`tick`: fences, elections).
    fn controller_work(&mut self, i: usize) {
        let id = self.nodes[i].id;
        loop {
            let now = self.now_ms;
            let Some(c) = self.nodes[i].meta.controller.as_mut() else {
                return;
            };
            if c.busy.is_some() {
                return;
            }
            if let Some(req) = c.queue.pop_front() {
                let from = req.from;
                match self.decide(i, req) {
                    Decided::Reply(r) => self.send_ctrl(id, from, CtrlMsg::Reply(r)),
                    Decided::Propose(planned, answer) => {
                        self.propose_decision(i, planned, Some((from, answer)));
                        return;
                    }
                }
            } else {
                if now < c.next_tick_ms {
                    return;
                }
                c.next_tick_ms = now + TICK_MS;
                let planned = self.decide_tick(i);
                if !planned.is_empty() {
                    self.propose_decision(i, planned, None);
                }
                return;
            }
        }
    }

    /// The image the controller decides on: the latest applied one, or under
    /// `StaleControllerImage` the latest with the partitions (leaders, ISRs, epochs) of one
    /// about a second old, as a controller reading a cached partition view would.
    fn stale_basis(&self, i: usize) -> Option<Image> {
        let cl = self.cluster.as_ref()?;
        if cl.mutation != MetaMutation::StaleControllerImage {
            return None;
        }
        let meta = &self.nodes[i].meta;
        let (_, old) = meta.controller.as_ref()?.history.front()?;
        let mut basis = meta.image.clone();
        for (topic_id, t) in &mut basis.topics {
            if let Some(o) = old.topics.get(topic_id) {
                if o.partitions.len() == t.partitions.len() {
                    t.partitions.clone_from(&o.partitions);
                }
            }
        }
        Some(basis)
    }

    fn decide(&mut self, i: usize, req: Request) -> Decided {
        let now = self.now_ms;
        let voters: Vec<i32> = self.voters.iter().map(|&v| v as i32).collect();
        let start = self.rng.next_u64();
        let topic_id = random_topic_id(&mut self.rng);
        let stale = self.stale_basis(i);
        let id = self.nodes[i].id;
        let Some(cl) = self.cluster.as_ref() else {
            return Decided::Reply(Reply::NotController);
        };
        let mutation = cl.mutation;
        let MetaNode {
            image, controller, ..
        } = &mut self.nodes[i].meta;
        let Some(c) = controller.as_mut() else {
            return Decided::Reply(Reply::NotController);
        };
        let basis: &Image = stale.as_ref().unwrap_or(image);
        let node_id = req.from as i32;
        let incarnation_id = req.incarnation_id;
        let decided = catch_unwind(AssertUnwindSafe(|| match req.op {
            Op::Register { rack } => {
                let reg = Registration {
                    node_id,
                    incarnation_id,
                    host: format!("s{node_id}"),
                    port: 9092,
                    rack,
                    listeners: Vec::new(),
                };
                match c.ctl.register(basis, reg, &voters, now) {
                    Ok(RegisterDecision::Existing { epoch }) => Decided::Reply(Reply::Registered {
                        incarnation_id,
                        epoch,
                    }),
                    Ok(RegisterDecision::Propose(cmd)) => (
                        vec![cmd],
                        Answer::Registered {
                            incarnation_id,
                            node_id,
                        },
                    )
                        .into(),
                    Err(e) => Decided::Reply(Reply::Refused {
                        error_code: e.kafka_error_code(),
                    }),
                }
            }
            Op::Heartbeat {
                broker_epoch,
                position,
                want_shutdown,
            } => {
                let hb = Heartbeat {
                    node_id,
                    broker_epoch,
                    current_position: position,
                    want_fence: false,
                    want_shutdown,
                };
                let conn = session_connection(incarnation_id);
                let (r, cmd) = c.ctl.heartbeat_on(basis, hb, conn, now);
                let reply = Reply::Heartbeat {
                    incarnation_id,
                    broker_epoch,
                    refused: r.error.is_some(),
                    should_shut_down: r.should_shut_down,
                };
                match cmd {
                    Some(cmd) => (vec![cmd], Answer::Heartbeat(reply)).into(),
                    None => Decided::Reply(reply),
                }
            }
            Op::AllocateProducerIds { broker_epoch } => {
                match c.ctl.allocate_producer_ids(basis, node_id, broker_epoch) {
                    Ok(cmd) => {
                        let Command::AllocateProducerIds {
                            first_id, count, ..
                        } = cmd
                        else {
                            unreachable!("allocate_producer_ids decides an allocation")
                        };
                        let answer = Answer::ProducerIds { first_id, count };
                        (vec![cmd], answer).into()
                    }
                    Err(e) => Decided::Reply(Reply::Refused {
                        error_code: e.kafka_error_code(),
                    }),
                }
            }
            Op::CreateTopic {
                name,
                partitions,
                replication_factor,
            } => {
                let refuse = |e: MetaError| {
                    Decided::Reply(Reply::Admin {
                        error_code: e.kafka_error_code(),
                    })
                };
                if basis.topic_by_name(&name).is_some() {
                    return refuse(MetaError::TopicAlreadyExists(name));
                }
                match placement::place(basis, 0, partitions, replication_factor, start) {
                    Err(e) => refuse(e),
                    Ok(partitions) => {
                        let cmd = Command::CreateTopic {
                            topic_id,
                            name: name.clone(),
                            partitions,
                            configs: vec![],
                        };
                        match basis.validate(&cmd) {
                            Err(e) => refuse(e),
                            Ok(()) => (vec![cmd], Answer::Created { name, topic_id }).into(),
                        }
                    }
                }
            }
            Op::DeleteTopic { name } => match basis.topic_by_name(&name) {
                None => Decided::Reply(Reply::Admin { error_code: 3 }),
                Some(t) => {
                    let topic_id = t.topic_id;
                    (
                        vec![Command::DeleteTopic { topic_id }],
                        Answer::Deleted { topic_id },
                    )
                        .into()
                }
            },
        }));
        match decided {
            Err(p) => {
                self.obs.fail(
                    "controller_assert",
                    format!("server {id}: {}", panic_message(p)),
                );
                Decided::Reply(Reply::NotController)
            }
            Ok(Decided::Propose(planned, answer)) => {
                let cmds = planned.into_iter().map(|p| p.cmd).collect();
                let planned = plan(basis, image, cmds, mutation);
                if planned.is_empty() {
                    // NoElections took everything out: answer as if it had applied.
                    return match answer {
                        Answer::Heartbeat(r) => Decided::Reply(r),
                        _ => Decided::Reply(Reply::NotController),
                    };
                }
                Decided::Propose(planned, answer)
            }
            Ok(reply) => reply,
        }
    }

    /// The controller's `tick`, planned.
    fn decide_tick(&mut self, i: usize) -> Vec<Planned> {
        let now = self.now_ms;
        let stale = self.stale_basis(i);
        let id = self.nodes[i].id;
        let Some(cl) = self.cluster.as_ref() else {
            return Vec::new();
        };
        let mutation = cl.mutation;
        let MetaNode {
            image, controller, ..
        } = &mut self.nodes[i].meta;
        let Some(c) = controller.as_mut() else {
            return Vec::new();
        };
        let basis: &Image = stale.as_ref().unwrap_or(image);
        match catch_unwind(AssertUnwindSafe(|| c.ctl.tick(basis, now))) {
            Ok(cmds) => plan(basis, image, cmds, mutation),
            Err(p) => {
                self.obs.fail(
                    "controller_assert",
                    format!("server {id}: {}", panic_message(p)),
                );
                Vec::new()
            }
        }
    }

    /// Proposes a decision's commands in order; the decision ends when all are resolved.
    fn propose_decision(
        &mut self,
        i: usize,
        planned: Vec<Planned>,
        answer: Option<(NodeId, Answer)>,
    ) {
        let Some(c) = self.nodes[i].meta.controller.as_mut() else {
            return;
        };
        c.busy = Some(Decision {
            pending: Vec::new(),
            last_height: 0,
            failed: false,
            building: true,
            answer,
        });
        for p in planned {
            let payload = Bytes::from(p.cmd.encode());
            let Some(cl) = self.cluster.as_mut() else {
                return;
            };
            checks::note_decision(&mut cl.hist, digest(BlockKind::Data, &payload), &p.changes);
            if cl.mutation == MetaMutation::SpeculativeApply {
                let meta = &mut self.nodes[i].meta;
                if meta.image.apply(&p.cmd).is_ok() {
                    meta.speculated.insert(payload.clone());
                }
                self.check_image(i);
            }
            let mut res = None;
            self.with_node(i, |n| res = Some(n.propose(payload)));
            let Some(d) = self.nodes[i]
                .meta
                .controller
                .as_mut()
                .and_then(|c| c.busy.as_mut())
            else {
                return; // crashed or deposed meanwhile
            };
            match res {
                Some(Ok(pid)) => d.pending.push(pid),
                _ => {
                    d.failed = true;
                    break;
                }
            }
        }
        if let Some(d) = self.nodes[i]
            .meta
            .controller
            .as_mut()
            .and_then(|c| c.busy.as_mut())
        {
            d.building = false;
        }
        self.maybe_finish_decision(i);
    }

    /// A proposal of this server resolved (called from `drain`, after the block applied).
    pub(super) fn meta_proposal_outcome(
        &mut self,
        i: usize,
        pid: ProposalId,
        outcome: ProposalOutcome,
    ) {
        let Some(d) = self.nodes[i]
            .meta
            .controller
            .as_mut()
            .and_then(|c| c.busy.as_mut())
        else {
            return;
        };
        let Some(k) = d.pending.iter().position(|p| *p == pid) else {
            return;
        };
        d.pending.remove(k);
        match outcome {
            ProposalOutcome::Committed(block) => d.last_height = d.last_height.max(block.height),
            ProposalOutcome::LeadershipLost | ProposalOutcome::TimedOut => d.failed = true,
        }
        self.maybe_finish_decision(i);
    }

    /// Ends the decision in flight once its proposals resolved, and answers from the image
    /// that applied them.
    fn maybe_finish_decision(&mut self, i: usize) {
        let id = self.nodes[i].id;
        let meta = &mut self.nodes[i].meta;
        let Some(c) = meta.controller.as_mut() else {
            return;
        };
        if c.busy
            .as_ref()
            .is_none_or(|d| d.building || !d.pending.is_empty())
        {
            return;
        }
        let d = c.busy.take().expect("checked");
        let Some((to, answer)) = d.answer else {
            return;
        };
        let image = &meta.image;
        let applied = meta.outcomes.get(&d.last_height) == Some(&true);
        let reply = if d.failed {
            Reply::NotController
        } else {
            match answer {
                Answer::Registered {
                    incarnation_id,
                    node_id,
                } => match image.brokers.get(&node_id) {
                    Some(b) if b.incarnation_id == incarnation_id => Reply::Registered {
                        incarnation_id,
                        epoch: b.epoch,
                    },
                    _ => Reply::Refused { error_code: -1 },
                },
                Answer::Heartbeat(r) => r,
                Answer::ProducerIds { first_id, count } if applied => Reply::ProducerIds {
                    first_id,
                    count,
                    height: d.last_height,
                },
                Answer::ProducerIds { .. } => Reply::Refused { error_code: -1 },
                Answer::Created { name, topic_id } => Reply::Admin {
                    error_code: if image.topics.contains_key(&topic_id) {
                        0
                    } else if image.topic_by_name(&name).is_some() {
                        36
                    } else {
                        -1
                    },
                },
                Answer::Deleted { topic_id } => Reply::Admin {
                    error_code: if image.topics.contains_key(&topic_id) {
                        -1
                    } else {
                        0
                    },
                },
            }
        };
        self.send_ctrl(id, to, CtrlMsg::Reply(reply));
    }

    /// Where a broker of server `i` sends controller RPCs: the chain leader its node knows
    /// of, else any voter (the real client follows NOT_CONTROLLER the same way).
    fn controller_target(&mut self, i: usize) -> NodeId {
        match self.nodes[i].node.as_ref().and_then(|n| n.leader()) {
            Some(l) => l,
            None => self.voters[self.rng.range(0, self.voters.len() as u64) as usize],
        }
    }

    fn send_ctrl(&mut self, from: NodeId, to: NodeId, msg: CtrlMsg) {
        if from == to {
            // Loopback to its own raft address: no network faults.
            self.enqueue(from, to, super::Frame::Ctrl(msg), self.now_ms + 1);
        } else {
            self.transmit_frame(from, to, super::Frame::Ctrl(msg));
        }
    }

    /// A controller RPC arrives at running, unpaused server `i`.
    pub(super) fn deliver_ctrl(&mut self, i: usize, msg: CtrlMsg) {
        let id = self.nodes[i].id;
        match msg {
            CtrlMsg::Request(req) => match self.nodes[i].meta.controller.as_mut() {
                Some(c) => {
                    if c.queue.len() < CONTROLLER_QUEUE_MAX {
                        c.queue.push_back(req);
                    }
                }
                None => self.send_ctrl(id, req.from, CtrlMsg::Reply(Reply::NotController)),
            },
            CtrlMsg::Reply(r) => self.broker_reply(i, r),
        }
    }

    fn send_request(&mut self, i: usize, incarnation_id: u128, op: Op) {
        let from = self.nodes[i].id;
        let to = self.controller_target(i);
        let req = Request {
            from,
            incarnation_id,
            op,
        };
        self.send_ctrl(from, to, CtrlMsg::Request(req));
    }

    /// The broker process: registration, heartbeats, SIGTERM, pauses, producer-id requests.
    fn broker_step(&mut self, i: usize) {
        let now = self.now_ms;
        let healed = self.healed;
        let Some(cl) = self.cluster.as_ref() else {
            return;
        };
        let rates = cl.rates.clone();
        let id = self.nodes[i].id;
        let position = self.nodes[i].meta.image.position;
        let b = &mut self.nodes[i].meta.broker;
        if b.paused_until_ms > now {
            return;
        }
        let timed_out = b
            .shutdown_since_ms
            .is_some_and(|t| now >= t + SHUTDOWN_TIMEOUT_MS);
        if b.exit_at_ms.is_some_and(|t| now >= t) || timed_out {
            self.broker_exit(i);
            return;
        }
        let incarnation_id = b.incarnation_id;
        let want_shutdown = b.shutdown_since_ms.is_some();
        let mut op = None;
        match b.epoch {
            None if now >= b.next_register_ms => {
                b.next_register_ms = now + REGISTER_RETRY_MS;
                let rack = rates.racks.then(|| format!("r{}", id % 2));
                op = Some(Op::Register { rack });
            }
            Some(broker_epoch) if now >= b.next_heartbeat_ms => {
                b.next_heartbeat_ms = now + HEARTBEAT_INTERVAL_MS;
                op = Some(Op::Heartbeat {
                    broker_epoch,
                    position,
                    want_shutdown,
                });
            }
            _ => {}
        }
        let epoch = b.epoch;
        if let Some(op) = op {
            self.send_request(i, incarnation_id, op);
        }
        if healed {
            return;
        }
        let Some(broker_epoch) = epoch else {
            return;
        };
        if !want_shutdown && self.rng.chance(rates.sigterm_ppm) {
            let b = &mut self.nodes[i].meta.broker;
            b.shutdown_since_ms = Some(now);
            b.next_heartbeat_ms = now;
        }
        if self.rng.chance(rates.broker_pause_ppm) {
            let until = now + self.rng.range(100, 3_000);
            self.nodes[i].meta.broker.paused_until_ms = until;
            if let Some(cl) = self.cluster.as_mut() {
                cl.counts.broker_pauses += 1;
            }
        }
        if !want_shutdown && self.rng.chance(rates.allocate_ppm) {
            self.send_request(i, incarnation_id, Op::AllocateProducerIds { broker_epoch });
        }
    }

    fn broker_reply(&mut self, i: usize, r: Reply) {
        let now = self.now_ms;
        let id = self.nodes[i].id;
        if self.trace {
            match &r {
                Reply::Refused { error_code } | Reply::Admin { error_code } => {
                    eprintln!("{now} s{id} controller answered error code {error_code}")
                }
                other => eprintln!("{now} s{id} controller answered {other:?}"),
            }
        }
        let b = &mut self.nodes[i].meta.broker;
        match r {
            Reply::NotController | Reply::Refused { .. } | Reply::Admin { .. } => {}
            Reply::Registered {
                incarnation_id,
                epoch,
            } => {
                if incarnation_id == b.incarnation_id && b.epoch.is_none() {
                    b.epoch = Some(epoch);
                    b.next_heartbeat_ms = now;
                }
            }
            Reply::Heartbeat {
                incarnation_id,
                broker_epoch,
                refused,
                should_shut_down,
            } => {
                let mine = incarnation_id == b.incarnation_id && b.epoch == Some(broker_epoch);
                if mine && refused {
                    // STALE_BROKER_EPOCH or BROKER_ID_NOT_REGISTERED: the image holds another
                    // registration of this node (a dead incarnation's delayed one): register
                    // again, as the broker's lifecycle runtime does.
                    b.epoch = None;
                    b.next_register_ms = now;
                }
                if mine
                    && !refused
                    && should_shut_down
                    && b.shutdown_since_ms.is_some()
                    && b.exit_at_ms.is_none()
                {
                    // A chain leader hands leadership to a caught-up voter first.
                    let leads = self.nodes[i].node.as_ref().is_some_and(|n| n.is_leader());
                    let delay = if leads {
                        let to =
                            self.voters[(self.voters.iter().position(|v| *v == id).unwrap_or(0)
                                + 1)
                                % self.voters.len()];
                        self.with_node(i, |n| {
                            n.transfer_leadership(to);
                        });
                        LEADER_HANDOVER_MS
                    } else {
                        0
                    };
                    self.nodes[i].meta.broker.exit_at_ms = Some(now + delay);
                }
            }
            Reply::ProducerIds {
                first_id,
                count,
                height,
            } => {
                if let Some(cl) = self.cluster.as_mut() {
                    checks::producer_id_blocks_disjoint(
                        &mut self.obs,
                        &mut cl.hist,
                        id,
                        first_id,
                        count,
                        height,
                    );
                }
            }
        }
    }

    /// Clients: admin requests through random servers (forwarded to the controller); after the
    /// heal, the probe topic until it exists.
    pub(super) fn clients_step(&mut self) {
        let Some(cl) = self.cluster.as_ref() else {
            return;
        };
        let admin_ppm = cl.rates.admin_ppm;
        let n = self.nodes.len() as u64;
        let up = |w: &World, i: usize| {
            w.nodes[i].node.is_some() && w.nodes[i].paused_until_ms <= w.now_ms
        };
        if !self.healed {
            if !self.rng.chance(admin_ppm) {
                return;
            }
            let i = self.rng.range(0, n) as usize;
            let name = format!("t{}", self.rng.range(0, TOPIC_NAMES));
            let op = if self.rng.chance(600_000) {
                Op::CreateTopic {
                    name,
                    partitions: self.rng.range(1, 5) as usize,
                    replication_factor: [1, 1, 2, 3][self.rng.range(0, 4) as usize],
                }
            } else {
                Op::DeleteTopic { name }
            };
            if up(self, i) {
                self.send_request(i, 0, op);
            }
            // Leadership transfers now and then, as the plain workload does.
            if self.rng.chance(20_000) {
                if let Some(l) = (0..self.nodes.len())
                    .find(|&j| self.nodes[j].node.as_ref().is_some_and(|x| x.is_leader()))
                {
                    let to = self.voters[self.rng.range(0, n) as usize];
                    self.with_node(l, |x| {
                        x.transfer_leadership(to);
                    });
                }
            }
        } else if !cl.settled && self.now_ms.is_multiple_of(100) {
            if let Some(i) = (0..self.nodes.len()).find(|&i| up(self, i)) {
                let op = Op::CreateTopic {
                    name: HEAL_PROBE_TOPIC.to_string(),
                    partitions: 1,
                    replication_factor: 1,
                };
                self.send_request(i, 0, op);
            }
        }
    }

    /// SIGTERM completed: the process exits cleanly (everything synced) and restarts later as
    /// a new incarnation.
    pub(super) fn broker_exit(&mut self, i: usize) {
        let down_ms = self.rng.range(50, 2_000);
        let sn = &mut self.nodes[i];
        let Some(node) = sn.node.take() else {
            return;
        };
        self.report.dead_blocks_collected += node.collected_total() - sn.collected_seen;
        sn.storage.sync();
        sn.meta.controller = None;
        sn.restart_at_ms = Some(self.now_ms + down_ms);
        if let Some(cl) = self.cluster.as_mut() {
            cl.counts.broker_exits += 1;
        }
    }

    /// Heal: broker pauses end; brokers on their way out finish (a SIGTERM cannot be taken back)
    /// and come back at once.
    pub(super) fn meta_heal(&mut self) {
        for i in 0..self.nodes.len() {
            let sn = &mut self.nodes[i];
            sn.meta.broker.paused_until_ms = 0;
            if sn.node.is_some() && sn.meta.broker.shutdown_since_ms.is_some() {
                self.broker_exit(i);
            }
        }
    }

    /// Brokers that are running and heartbeating (process up, not paused, not shutting down).
    fn heartbeating(&self) -> BTreeMap<i32, u128> {
        self.nodes
            .iter()
            .filter(|sn| {
                sn.node.is_some()
                    && sn.paused_until_ms <= self.now_ms
                    && sn.meta.broker.paused_until_ms <= self.now_ms
                    && sn.meta.broker.shutdown_since_ms.is_none()
                    && sn.meta.broker.epoch.is_some()
            })
            .map(|sn| (sn.id as i32, sn.meta.broker.incarnation_id))
            .collect()
    }

    /// Liveness after the heal: an active controller whose image has every broker process in
    /// (current incarnation, unfenced), a leader for every partition whose ISR holds a live,
    /// heartbeating broker, and the probe topic; every server's image caught up with it.
    pub(super) fn meta_settled(&self) -> bool {
        let Some(c) = self
            .nodes
            .iter()
            .find(|sn| sn.node.is_some() && sn.meta.controller.is_some())
        else {
            return false;
        };
        let image = &c.meta.image;
        let live = self.heartbeating();
        if live.len() != self.nodes.len() || image.topic_by_name(HEAL_PROBE_TOPIC).is_none() {
            return false;
        }
        let brokers_in = live.iter().all(|(id, inc)| {
            image
                .brokers
                .get(id)
                .is_some_and(|b| b.incarnation_id == *inc && b.is_eligible())
        });
        let led = image.partitions().all(|(_, p)| {
            p.leader != PartitionAssignment::NO_LEADER
                || !p.isr.iter().any(|r| live.contains_key(r))
        });
        let caught_up = self
            .nodes
            .iter()
            .all(|sn| sn.meta.image.position >= image.position);
        brokers_in && led && caught_up
    }

    /// What keeps the metadata plane from settling, for the liveness failure.
    pub(super) fn describe_meta(&self) -> String {
        let mut out = Vec::new();
        for sn in &self.nodes {
            let b = &sn.meta.broker;
            out.push(format!(
                "s{} {}pos {} epoch {:?}{}{}",
                sn.id,
                if sn.meta.controller.is_some() {
                    "controller "
                } else {
                    ""
                },
                sn.meta.image.position,
                b.epoch,
                if b.shutdown_since_ms.is_some() {
                    " shutting down"
                } else {
                    ""
                },
                if sn.node.is_none() { " down" } else { "" }
            ));
        }
        if let Some(c) = self.nodes.iter().find(|sn| sn.meta.controller.is_some()) {
            let image = &c.meta.image;
            for b in image.brokers.values() {
                out.push(format!(
                    "broker {} epoch {} fenced {} shutting down {}",
                    b.node_id, b.epoch, b.fenced, b.in_controlled_shutdown
                ));
            }
            let leaderless: Vec<String> = image
                .partitions()
                .filter(|(_, p)| p.leader == PartitionAssignment::NO_LEADER)
                .map(|(t, p)| format!("{t}-{} isr {:?}", p.partition, p.isr))
                .collect();
            out.push(format!("leaderless: {}", leaderless.join(", ")));
            out.push(format!(
                "probe topic: {}",
                image.topic_by_name(HEAL_PROBE_TOPIC).is_some()
            ));
        } else {
            out.push("no active controller".into());
        }
        out.join(" | ")
    }
}

impl From<(Vec<Command>, Answer)> for Decided {
    fn from((cmds, answer): (Vec<Command>, Answer)) -> Decided {
        let planned = cmds
            .into_iter()
            .map(|cmd| Planned {
                cmd,
                changes: Vec::new(),
            })
            .collect();
        Decided::Propose(planned, answer)
    }
}

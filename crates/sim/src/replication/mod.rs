//! Replication simulation (`--replication`): three brokers replicate two RF=3 partitions
//! (`min.insync.replicas` 2) with the real `josefine_replica` rules, under a controller running
//! the real `josefine_meta` code, through crashes that lose unflushed data, pauses and network
//! partitions, all from one seed.
//!
//! What runs for real: `LeaderState` (HW, ISR expand/shrink, one AlterPartition in flight),
//! `check_fetch_epoch` / `truncation_offset` / `follower_high_watermark` on the fetch path, the
//! controller's `Controller` (registration, heartbeats, fencing, unfencing, elections),
//! `alter_partition::decide_isr_change` and `Image::validate/apply`. What is modelled: the
//! chain is one ordered command log the controller appends to (its faults are the other modes'
//! business), each broker applies it in order with its own lag; logs are `log::ReplicaLog`;
//! followers flush before each fetch and before leading, leaders on append (`flush.messages=1`),
//! so a crash loses exactly what nobody was told about, and no acknowledged write may be lost.
//!
//! Checked after every step (`checks.rs`, one function per property): `acked_write_kept`,
//! `isr_holds_committed`, `replicas_agree_below_hw`, `leader_hw_monotonic`; on every HW move
//! `committed_prefix_stable`, `hw_frozen_below_min_isr`, on every leader change
//! `leader_from_isr`, on every consumer read `read_below_hw`. Must never: use time or randomness other than the world's, or reach into
//! the state machines except through their public API (mutations excepted: each breaks one
//! rule on purpose, to prove a check bites).

mod checks;
mod log;

use std::collections::BTreeMap;

use josefine_chain::rng::SplitMix64;
use josefine_meta::controller::alter_partition::{
    check_requester, decide_isr_change, IsrChangeError, IsrChangeRequest,
};
use josefine_meta::controller::{
    Controller, ControllerSettings, Heartbeat, RegisterDecision, Registration,
};
use josefine_meta::{Command, Image, PartitionAssignment, TopicId};
use josefine_replica::{
    check_fetch_epoch, follower_high_watermark, truncation_offset, AlterError, Effect,
    FetchEpochCheck, LeaderState, ReplicaSettings,
};

use crate::invariants::Violation;
use log::{Entry, ReplicaLog};

/// Broker ids (node 0 is the controller).
const BROKERS: [i32; 3] = [1, 2, 3];
const PARTITIONS: i32 = 2;
const TOPIC: TopicId = TopicId([9; 16]);
const MIN_INSYNC_REPLICAS: i32 = 2;
/// Kafka's 30000 scaled like the session timeout (ten times down would be 3000; shorter so a
/// 20 s run sees many shrinks).
const REPLICA_LAG_TIME_MAX_MS: i64 = 1_500;
const SESSION_TIMEOUT_MS: u64 = 900;
const HEARTBEAT_INTERVAL_MS: u64 = 200;
/// Simulated milliseconds per step.
const STEP_MS: u64 = 5;
/// A follower re-sends a fetch unanswered for this long (the request or answer was lost).
const FETCH_TIMEOUT_MS: u64 = 500;
/// An AlterPartition unanswered for this long counts as a retriable failure.
const ALTER_TIMEOUT_MS: u64 = 1_000;
/// Records per fetch answer.
const FETCH_RECORDS_MAX: usize = 8;
/// A broker in controlled shutdown exits after this even without the controller's go.
const SHUTDOWN_TIMEOUT_MS: u64 = 2_000;
/// A produce not acknowledged within this is abandoned (REQUEST_TIMED_OUT).
const PRODUCE_TIMEOUT_MS: u64 = 3_000;
/// Chance (per million) that an AlterPartition also arrives again up to 3 s later.
const ALTER_COPY_PPM: u64 = 150_000;
/// The quiet phase after the faults: everything heals and must settle.
const HEAL_MS: u64 = 6_000;

/// A deliberately broken replication plane; each is caught by the check `caught_by` names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReplMutation {
    None,
    /// The leader's HW is its log end (no ISR at all).
    HwAtLogEnd,
    /// Elections pick an eligible replica outside the ISR (ISR := that replica alone).
    LeaderOutsideIsr,
    /// A follower truncates to its local HW when it starts following a new leader epoch.
    TruncateToHw,
    /// The controller decides AlterPartition as if its partition epoch were always current.
    NoPartitionEpochCheck,
}

impl ReplMutation {
    pub const ALL: [ReplMutation; 4] = [
        ReplMutation::HwAtLogEnd,
        ReplMutation::LeaderOutsideIsr,
        ReplMutation::TruncateToHw,
        ReplMutation::NoPartitionEpochCheck,
    ];

    pub fn name(self) -> &'static str {
        match self {
            ReplMutation::None => "none",
            ReplMutation::HwAtLogEnd => "hw-at-log-end",
            ReplMutation::LeaderOutsideIsr => "leader-outside-isr",
            ReplMutation::TruncateToHw => "truncate-to-hw",
            ReplMutation::NoPartitionEpochCheck => "no-partition-epoch-check",
        }
    }

    pub fn parse(name: &str) -> Option<ReplMutation> {
        std::iter::once(ReplMutation::None)
            .chain(ReplMutation::ALL)
            .find(|m| m.name() == name)
    }

    /// The check that must catch this mutation first.
    pub fn caught_by(self) -> &'static str {
        match self {
            ReplMutation::None => "",
            ReplMutation::HwAtLogEnd => "isr_holds_committed",
            ReplMutation::LeaderOutsideIsr => "leader_from_isr",
            ReplMutation::TruncateToHw => "isr_holds_committed",
            ReplMutation::NoPartitionEpochCheck => "isr_holds_committed",
        }
    }
}

#[derive(Clone, Debug)]
pub struct ReplOptions {
    pub seed: u64,
    pub mutation: ReplMutation,
    /// Simulated time with faults; then `HEAL_MS` without.
    pub fault_ms: u64,
}

impl ReplOptions {
    pub fn new(seed: u64) -> ReplOptions {
        ReplOptions {
            seed,
            mutation: ReplMutation::None,
            fault_ms: 20_000,
        }
    }
}

/// What one run did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ReplCounts {
    pub produced: u64,
    pub acked: u64,
    pub refused_not_enough_replicas: u64,
    pub consumer_reads: u64,
    pub hw_advances: u64,
    pub isr_expands: u64,
    pub isr_shrinks: u64,
    pub leader_changes: u64,
    pub truncations: u64,
    pub crashes: u64,
    pub pauses: u64,
    pub cuts: u64,
    pub controlled_shutdowns: u64,
}

impl ReplCounts {
    pub fn fields(&self) -> [(&'static str, u64); 13] {
        [
            ("produced", self.produced),
            ("acked", self.acked),
            (
                "refused_not_enough_replicas",
                self.refused_not_enough_replicas,
            ),
            ("consumer_reads", self.consumer_reads),
            ("hw_advances", self.hw_advances),
            ("isr_expands", self.isr_expands),
            ("isr_shrinks", self.isr_shrinks),
            ("leader_changes", self.leader_changes),
            ("truncations", self.truncations),
            ("crashes", self.crashes),
            ("pauses", self.pauses),
            ("cuts", self.cuts),
            ("controlled_shutdowns", self.controlled_shutdowns),
        ]
    }

    pub fn add(&mut self, o: &ReplCounts) {
        let mut all = [
            &mut self.produced,
            &mut self.acked,
            &mut self.refused_not_enough_replicas,
            &mut self.consumer_reads,
            &mut self.hw_advances,
            &mut self.isr_expands,
            &mut self.isr_shrinks,
            &mut self.leader_changes,
            &mut self.truncations,
            &mut self.crashes,
            &mut self.pauses,
            &mut self.cuts,
            &mut self.controlled_shutdowns,
        ];
        for (mine, (_, theirs)) in all.iter_mut().zip(o.fields()) {
            **mine += theirs;
        }
    }
}

#[derive(Clone, Debug, Default)]
pub struct ReplReport {
    pub seed: u64,
    pub sim_time_ms: u64,
    pub counts: ReplCounts,
    pub violations: Vec<Violation>,
}

/// Runs one seed of the replication simulation to completion (or its first violation).
pub fn run_replication_seed(opts: ReplOptions) -> ReplReport {
    let mut world = ReplWorld::new(opts);
    world.run();
    ReplReport {
        seed: world.opts.seed,
        sim_time_ms: world.now_ms,
        counts: world.counts.clone(),
        violations: world.violations.clone(),
    }
}

/// Node ids on the simulated network: 0 = the controller, 1..=3 = brokers.
type NodeId = i32;
const CONTROLLER: NodeId = 0;

#[derive(Clone, Debug)]
enum Msg {
    Register {
        incarnation: u128,
    },
    Registered {
        incarnation: u128,
        epoch: i64,
    },
    Heartbeat {
        broker_epoch: i64,
        position: u64,
        want_shutdown: bool,
    },
    /// The controller lets a broker in controlled shutdown exit.
    ShutDown {
        broker_epoch: i64,
    },
    Alter {
        broker_epoch: i64,
        seq: u64,
        req: IsrChangeRequest,
    },
    AlterReply {
        seq: u64,
        result: Result<(), AlterError>,
    },
    Fetch {
        incarnation: u128,
        req: FetchReq,
    },
    FetchReply {
        incarnation: u128,
        fetch_id: u64,
        partition: i32,
        leader_epoch: i32,
        answer: FetchAnswer,
    },
}

#[derive(Clone, Debug)]
struct FetchReq {
    /// Matches the answer to this request (a correlation id): an answer to an earlier request
    /// the follower gave up on must not be applied to a log that moved on.
    fetch_id: u64,
    partition: i32,
    broker_epoch: i64,
    leader_epoch: i32,
    fetch_offset: i64,
    last_fetched_epoch: i32,
}

#[derive(Clone, Debug)]
enum FetchAnswer {
    Records {
        entries: Vec<Entry>,
        high_watermark: i64,
    },
    Diverging {
        epoch: i32,
        end_offset: i64,
    },
    /// NOT_LEADER_OR_FOLLOWER, FENCED/UNKNOWN_LEADER_EPOCH, OFFSET_OUT_OF_RANGE: wait and retry.
    Error,
}

struct InFlight {
    at_ms: u64,
    seq: u64,
    from: NodeId,
    to: NodeId,
    msg: Msg,
}

enum Role {
    Follower {
        leader: i32,
        leader_epoch: i32,
    },
    Leader {
        state: Box<LeaderState>,
        leader_epoch: i32,
        partition_epoch: i32,
    },
}

struct Replica {
    log: ReplicaLog,
    role: Option<Role>,
    /// A fetch sent and not answered: (sent at, fetch id).
    fetch_in_flight: Option<(u64, u64)>,
    /// The outstanding AlterPartition: (seq, sent at).
    alter_in_flight: Option<(u64, u64)>,
    /// acks=all produces waiting for the HW: (offset, value, deadline).
    parked: Vec<(i64, u64, u64)>,
}

struct Broker {
    id: i32,
    /// Down until this time (crashed); None = running.
    down_until_ms: Option<u64>,
    paused_until_ms: u64,
    incarnation: u128,
    /// The epoch the controller answered this incarnation's registration with.
    broker_epoch: Option<i64>,
    image: Image,
    /// Commands of the controller's log applied to `image`.
    applied: usize,
    next_heartbeat_ms: u64,
    next_register_ms: u64,
    /// SIGTERM received at this time: heartbeats ask to shut down.
    shutdown_since_ms: Option<u64>,
    replicas: BTreeMap<i32, Replica>,
}

impl Broker {
    fn running(&self, now_ms: u64) -> bool {
        self.down_until_ms.is_none() && now_ms >= self.paused_until_ms
    }

    /// Acts on its image only once the image holds this incarnation's registration (Kafka's
    /// broker publishes metadata only after catching up past its own registration).
    fn ready(&self) -> bool {
        self.image
            .brokers
            .get(&self.id)
            .is_some_and(|r| r.incarnation_id == self.incarnation)
    }
}

struct ControllerNode {
    image: Image,
    ctl: Controller,
    log: Vec<Command>,
    next_tick_ms: u64,
}

pub(crate) struct ReplWorld {
    opts: ReplOptions,
    rng: SplitMix64,
    now_ms: u64,
    ctrl: ControllerNode,
    brokers: Vec<Broker>,
    net: Vec<InFlight>,
    next_seq: u64,
    /// Directed links that drop everything, with when the cut heals.
    cuts: BTreeMap<(NodeId, NodeId), u64>,
    next_value: u64,
    next_incarnation: u128,
    settings: ReplicaSettings,
    pub(crate) hist: checks::History,
    counts: ReplCounts,
    violations: Vec<Violation>,
    /// `SIM_TRACE=1`: print controller decisions and partition changes (debugging a seed).
    trace: bool,
}

impl ReplWorld {
    fn new(opts: ReplOptions) -> ReplWorld {
        let mut rng = SplitMix64::new(opts.seed ^ 0x5245_504C_4943_4121);
        let settings = ControllerSettings {
            session_timeout_ms: SESSION_TIMEOUT_MS,
            heartbeat_interval_ms: HEARTBEAT_INTERVAL_MS,
            producer_id_block_size: 1_000,
            ..ControllerSettings::default()
        };
        let mut world = ReplWorld {
            opts,
            now_ms: 0,
            ctrl: ControllerNode {
                image: Image::default(),
                ctl: Controller::activate(&Image::default(), 0, settings),
                log: Vec::new(),
                next_tick_ms: 0,
            },
            brokers: BROKERS
                .iter()
                .map(|&id| Broker {
                    id,
                    down_until_ms: None,
                    paused_until_ms: 0,
                    incarnation: 0,
                    broker_epoch: None,
                    image: Image::default(),
                    applied: 0,
                    next_heartbeat_ms: 0,
                    next_register_ms: 0,
                    shutdown_since_ms: None,
                    replicas: BTreeMap::new(),
                })
                .collect(),
            net: Vec::new(),
            next_seq: 0,
            cuts: BTreeMap::new(),
            next_value: 1,
            next_incarnation: 1,
            settings: ReplicaSettings {
                replica_lag_time_max_ms: REPLICA_LAG_TIME_MAX_MS,
                min_insync_replicas: MIN_INSYNC_REPLICAS,
            },
            hist: checks::History::default(),
            counts: ReplCounts::default(),
            violations: Vec::new(),
            rng: SplitMix64::new(0),
            trace: std::env::var_os("SIM_TRACE").is_some(),
        };
        world.rng = SplitMix64::new(rng.next_u64());
        world.bootstrap();
        world
    }

    /// Registers and unfences the three brokers and creates the topic, as committed commands.
    fn bootstrap(&mut self) {
        for i in 0..self.brokers.len() {
            let incarnation = self.new_incarnation();
            self.brokers[i].incarnation = incarnation;
            let reg = self.registration(self.brokers[i].id, incarnation);
            let Ok(RegisterDecision::Propose(cmd)) =
                self.ctrl.ctl.register(&self.ctrl.image, reg, &BROKERS, 0)
            else {
                panic!("bootstrap registration refused");
            };
            self.commit(cmd);
            self.brokers[i].broker_epoch = Some(self.ctrl.image.brokers[&self.brokers[i].id].epoch);
        }
        for &id in &BROKERS {
            let epoch = self.ctrl.image.brokers[&id].epoch;
            let hb = Heartbeat {
                node_id: id,
                broker_epoch: epoch,
                current_position: self.ctrl.image.position,
                want_fence: false,
                want_shutdown: false,
            };
            let (_, cmd) = self.ctrl.ctl.heartbeat(&self.ctrl.image, hb, 0);
            self.commit(cmd.expect("an unfence"));
        }
        let partitions = (0..PARTITIONS)
            .map(|p| {
                let mut replicas = BROKERS.to_vec();
                replicas.rotate_left(p as usize % BROKERS.len());
                PartitionAssignment::led_by_first(p, replicas)
            })
            .collect();
        self.commit(Command::CreateTopic {
            topic_id: TOPIC,
            name: "replicated".into(),
            partitions,
            configs: vec![(
                "min.insync.replicas".into(),
                MIN_INSYNC_REPLICAS.to_string(),
            )],
        });
        assert!(
            self.ctrl.image.topics.contains_key(&TOPIC),
            "bootstrap topic refused"
        );
    }

    fn registration(&self, node_id: i32, incarnation_id: u128) -> Registration {
        Registration {
            node_id,
            incarnation_id,
            host: format!("broker-{node_id}"),
            port: 9092,
            rack: None,
            listeners: Vec::new(),
        }
    }

    fn new_incarnation(&mut self) -> u128 {
        self.next_incarnation += 1;
        self.next_incarnation
    }

    /// Appends a command to the controller's log and applies it to the controller's image
    /// (a refused command is a no-op everywhere, as on the chain).
    fn commit(&mut self, cmd: Command) {
        let cmd = if self.opts.mutation == ReplMutation::LeaderOutsideIsr {
            self.elect_outside_isr(cmd)
        } else {
            cmd
        };
        let before: Vec<PartitionAssignment> = self
            .ctrl
            .image
            .partitions()
            .map(|(_, p)| p.clone())
            .collect();
        let position = self.ctrl.image.position + 1;
        self.ctrl.image.advance_to(position);
        let _ = self.ctrl.image.apply(&cmd);
        self.ctrl.log.push(cmd);
        let after: Vec<PartitionAssignment> = self
            .ctrl
            .image
            .partitions()
            .map(|(_, p)| p.clone())
            .collect();
        for (old, new) in before.iter().zip(&after) {
            if self.trace && (old.isr != new.isr || old.leader != new.leader) {
                eprintln!(
                    "{} ms: commit p{} leader {} -> {} epoch {} pe {} isr {:?} -> {:?}",
                    self.now_ms,
                    new.partition,
                    old.leader,
                    new.leader,
                    new.leader_epoch,
                    new.partition_epoch,
                    old.isr,
                    new.isr
                );
            }
            if new.leader != old.leader {
                self.counts.leader_changes += 1;
            }
            if new.isr.len() > old.isr.len() {
                self.counts.isr_expands += 1;
            } else if new.isr.len() < old.isr.len() {
                self.counts.isr_shrinks += 1;
            }
            if let Some(v) = checks::leader_from_isr(old, new, self.now_ms) {
                self.violations.push(v);
            }
        }
    }

    /// Mutation `LeaderOutsideIsr`: every election picks an eligible replica outside the ISR.
    fn elect_outside_isr(&self, cmd: Command) -> Command {
        match cmd {
            Command::Batch(cmds) => Command::Batch(
                cmds.into_iter()
                    .map(|c| self.elect_outside_isr(c))
                    .collect(),
            ),
            Command::ChangePartition {
                topic_id,
                partition,
                expected_partition_epoch,
                leader: Some(l),
                isr,
            } if l != PartitionAssignment::NO_LEADER => {
                let p = self
                    .ctrl
                    .image
                    .partition(topic_id, partition)
                    .expect("a partition");
                match p
                    .replicas
                    .iter()
                    .copied()
                    .find(|r| !p.isr.contains(r) && self.ctrl.image.is_eligible(*r))
                {
                    Some(outsider) => Command::ChangePartition {
                        topic_id,
                        partition,
                        expected_partition_epoch,
                        leader: Some(outsider),
                        isr: Some(vec![outsider]),
                    },
                    None => Command::ChangePartition {
                        topic_id,
                        partition,
                        expected_partition_epoch,
                        leader: Some(l),
                        isr,
                    },
                }
            }
            other => other,
        }
    }

    fn run(&mut self) {
        let end_ms = self.opts.fault_ms + HEAL_MS;
        while self.now_ms < end_ms && self.violations.is_empty() {
            self.now_ms += STEP_MS;
            let faults = self.now_ms < self.opts.fault_ms;
            if faults {
                self.inject_faults();
            } else {
                self.heal();
            }
            self.lifecycle();
            self.deliver();
            self.controller_tick();
            for i in 0..self.brokers.len() {
                self.broker_step(i);
            }
            if faults || self.rng.chance(500_000) {
                self.client_step();
            }
            self.violations.extend(checks::after_step(self));
        }
        if self.violations.is_empty() {
            self.violations.extend(checks::at_end(self));
        }
    }

    fn inject_faults(&mut self) {
        let now = self.now_ms;
        let i = self.rng.range(0, self.brokers.len() as u64) as usize;
        if self.rng.chance(1_500) && self.brokers[i].down_until_ms.is_none() {
            // Crash: the unflushed tail of every log is gone; restart later as a new incarnation.
            let down = self.rng.range(100, 2_500);
            let b = &mut self.brokers[i];
            b.down_until_ms = Some(now + down);
            for (p, r) in b.replicas.iter_mut() {
                if self.trace {
                    eprintln!(
                        "{now} ms: broker {} crashes, p{p} log end {}",
                        b.id,
                        r.log.end()
                    );
                }
                r.log.crash();
            }
            self.counts.crashes += 1;
        } else if self.rng.chance(500)
            && self.brokers[i].down_until_ms.is_none()
            && self.brokers[i].shutdown_since_ms.is_none()
        {
            // SIGTERM: controlled shutdown through the controller, then a restart.
            self.brokers[i].shutdown_since_ms = Some(now);
            self.counts.controlled_shutdowns += 1;
        } else if self.rng.chance(1_500) && now >= self.brokers[i].paused_until_ms {
            self.brokers[i].paused_until_ms = now + self.rng.range(100, 3_000);
            self.counts.pauses += 1;
        } else if self.rng.chance(2_000) {
            // Cut a link (one way, or both ways), sometimes isolating the controller.
            let a = self.rng.range(0, 4) as NodeId;
            let b = self.rng.range(0, 4) as NodeId;
            if a != b {
                let until = now + self.rng.range(200, 2_500);
                self.cuts.insert((a, b), until);
                if self.rng.chance(500_000) {
                    self.cuts.insert((b, a), until);
                }
                self.counts.cuts += 1;
            }
        }
        self.cuts.retain(|_, until| *until > now);
    }

    fn heal(&mut self) {
        self.cuts.clear();
        for b in &mut self.brokers {
            b.paused_until_ms = b.paused_until_ms.min(self.now_ms);
            if b.down_until_ms.is_some() {
                b.down_until_ms = Some(self.now_ms);
            }
        }
    }

    /// A clean exit after SIGTERM (the controller's go or the timeout): logs flushed, the
    /// process down for a while, then a new incarnation.
    fn exit(&mut self, i: usize) {
        let down = self.rng.range(100, 1_500);
        let b = &mut self.brokers[i];
        for r in b.replicas.values_mut() {
            r.log.flush();
        }
        b.down_until_ms = Some(self.now_ms + down);
    }

    /// Restarts crashed brokers as new incarnations.
    fn lifecycle(&mut self) {
        let now = self.now_ms;
        for i in 0..self.brokers.len() {
            if self.brokers[i].down_until_ms.is_some_and(|t| t <= now) {
                let incarnation = self.new_incarnation();
                let b = &mut self.brokers[i];
                b.down_until_ms = None;
                b.incarnation = incarnation;
                b.broker_epoch = None;
                b.image = Image::default();
                b.applied = 0;
                b.next_register_ms = now;
                b.shutdown_since_ms = None;
                for r in b.replicas.values_mut() {
                    r.role = None;
                    r.fetch_in_flight = None;
                    r.alter_in_flight = None;
                    r.parked.clear();
                }
            }
        }
    }

    fn send(&mut self, from: NodeId, to: NodeId, msg: Msg) {
        if self.cuts.contains_key(&(from, to)) || self.rng.chance(10_000) {
            return;
        }
        let delay = if self.rng.chance(20_000) {
            self.rng.range(200, 800)
        } else {
            self.rng.range(1, 25)
        };
        // An AlterPartition the sender's manager re-sent after a lost connection while the
        // first copy still waited at the controller: a copy arrives much later.
        if matches!(msg, Msg::Alter { .. }) && self.rng.chance(ALTER_COPY_PPM) {
            self.next_seq += 1;
            let late = self.rng.range(100, 3_000);
            self.net.push(InFlight {
                at_ms: self.now_ms + late,
                seq: self.next_seq,
                from,
                to,
                msg: msg.clone(),
            });
        }
        self.next_seq += 1;
        self.net.push(InFlight {
            at_ms: self.now_ms + delay,
            seq: self.next_seq,
            from,
            to,
            msg,
        });
    }

    fn deliver(&mut self) {
        let now = self.now_ms;
        let mut due = Vec::new();
        let mut keep = Vec::new();
        for m in std::mem::take(&mut self.net) {
            let receiver_paused = m.to != CONTROLLER && now < self.broker(m.to).paused_until_ms;
            if m.at_ms <= now && !receiver_paused {
                due.push(m);
            } else {
                keep.push(m);
            }
        }
        self.net = keep;
        due.sort_by_key(|m| (m.at_ms, m.seq));
        for m in due {
            if m.to == CONTROLLER {
                self.controller_receive(m.from, m.msg);
            } else if self.broker(m.to).down_until_ms.is_none() {
                self.broker_receive(m.to, m.from, m.msg);
            }
        }
    }

    fn broker(&self, id: i32) -> &Broker {
        &self.brokers[(id - 1) as usize]
    }

    fn controller_tick(&mut self) {
        if self.now_ms < self.ctrl.next_tick_ms {
            return;
        }
        self.ctrl.next_tick_ms = self.now_ms + 50;
        for cmd in self.ctrl.ctl.tick(&self.ctrl.image, self.now_ms) {
            self.commit(cmd);
        }
    }

    fn controller_receive(&mut self, from: NodeId, msg: Msg) {
        let now = self.now_ms;
        match msg {
            Msg::Register { incarnation } => {
                let reg = self.registration(from, incarnation);
                match self.ctrl.ctl.register(&self.ctrl.image, reg, &BROKERS, now) {
                    Ok(RegisterDecision::Propose(cmd)) => {
                        self.commit(cmd);
                        if let Some(r) = self
                            .ctrl
                            .image
                            .brokers
                            .get(&from)
                            .filter(|r| r.incarnation_id == incarnation)
                        {
                            let epoch = r.epoch;
                            self.send(CONTROLLER, from, Msg::Registered { incarnation, epoch });
                        }
                    }
                    Ok(RegisterDecision::Existing { epoch }) => {
                        self.send(CONTROLLER, from, Msg::Registered { incarnation, epoch })
                    }
                    Err(_) => {}
                }
            }
            Msg::Heartbeat {
                broker_epoch,
                position,
                want_shutdown,
            } => {
                let hb = Heartbeat {
                    node_id: from,
                    broker_epoch,
                    current_position: position,
                    want_fence: false,
                    want_shutdown,
                };
                let (reply, cmd) = self.ctrl.ctl.heartbeat(&self.ctrl.image, hb, now);
                if let Some(cmd) = cmd {
                    self.commit(cmd);
                }
                if reply.should_shut_down {
                    self.send(CONTROLLER, from, Msg::ShutDown { broker_epoch });
                }
            }
            Msg::Alter {
                broker_epoch,
                seq,
                mut req,
            } => {
                let result = if check_requester(&self.ctrl.image, from, broker_epoch).is_err() {
                    Err(AlterError::Other)
                } else {
                    if self.opts.mutation == ReplMutation::NoPartitionEpochCheck {
                        if let Some(p) = self.ctrl.image.partition(req.topic_id, req.partition) {
                            req.partition_epoch = p.partition_epoch;
                        }
                    }
                    match decide_isr_change(&self.ctrl.image, from, &req) {
                        Ok(Some(cmd)) => {
                            self.commit(cmd);
                            Ok(())
                        }
                        Ok(None) => Ok(()),
                        Err(IsrChangeError::NotController) => Err(AlterError::Retriable),
                        Err(IsrChangeError::FencedLeaderEpoch { .. })
                        | Err(IsrChangeError::InvalidUpdateVersion { .. }) => {
                            Err(AlterError::Fenced)
                        }
                        Err(IsrChangeError::IneligibleReplica(_)) => Err(AlterError::Ineligible),
                        Err(_) => Err(AlterError::Other),
                    }
                };
                if self.trace {
                    eprintln!("{now} ms: alter from {from} seq {seq} {req:?} -> {result:?}");
                }
                self.send(CONTROLLER, from, Msg::AlterReply { seq, result });
            }
            _ => {}
        }
    }

    fn broker_receive(&mut self, to: i32, from: NodeId, msg: Msg) {
        let now = self.now_ms;
        let i = (to - 1) as usize;
        match msg {
            Msg::Registered { incarnation, epoch } => {
                let b = &mut self.brokers[i];
                if b.incarnation == incarnation {
                    b.broker_epoch = Some(epoch);
                }
            }
            Msg::ShutDown { broker_epoch } => {
                let b = &self.brokers[i];
                if b.shutdown_since_ms.is_some() && b.broker_epoch == Some(broker_epoch) {
                    self.exit(i);
                }
            }
            Msg::AlterReply { seq, result } => {
                let Some(partition) = self.brokers[i]
                    .replicas
                    .iter()
                    .find(|(_, r)| r.alter_in_flight.is_some_and(|(s, _)| s == seq))
                    .map(|(p, _)| *p)
                else {
                    return;
                };
                let r = self.brokers[i].replicas.get_mut(&partition).expect("found");
                r.alter_in_flight = None;
                if let Some(Role::Leader { state, .. }) = &mut r.role {
                    let effects = state.on_alter_partition_result(result, now as i64);
                    self.leader_effects(i, partition, effects);
                }
            }
            Msg::Fetch { incarnation, req } => {
                let answer = self.serve_fetch(i, from, &req);
                let reply = Msg::FetchReply {
                    incarnation,
                    fetch_id: req.fetch_id,
                    partition: req.partition,
                    leader_epoch: req.leader_epoch,
                    answer,
                };
                self.send(to, from, reply);
            }
            Msg::FetchReply {
                incarnation,
                fetch_id,
                partition,
                leader_epoch,
                answer,
            } => {
                self.follower_receive(
                    i,
                    from,
                    incarnation,
                    fetch_id,
                    partition,
                    leader_epoch,
                    answer,
                );
            }
            _ => {}
        }
    }

    /// The leader side of a replica fetch.
    fn serve_fetch(&mut self, i: usize, from: NodeId, req: &FetchReq) -> FetchAnswer {
        let now = self.now_ms;
        let b = &self.brokers[i];
        if !b.ready() {
            return FetchAnswer::Error;
        }
        let registration = b.image.brokers.get(&from).cloned();
        let Some(r) = self.brokers[i].replicas.get_mut(&req.partition) else {
            return FetchAnswer::Error;
        };
        let Some(Role::Leader {
            state,
            leader_epoch,
            ..
        }) = &mut r.role
        else {
            return FetchAnswer::Error;
        };
        if *leader_epoch != req.leader_epoch {
            return FetchAnswer::Error;
        }
        let end_for_epoch = r.log.end_offset_for_epoch(req.last_fetched_epoch);
        match check_fetch_epoch(req.last_fetched_epoch, req.fetch_offset, end_for_epoch) {
            FetchEpochCheck::Diverging { epoch, end_offset } => {
                return FetchAnswer::Diverging { epoch, end_offset }
            }
            FetchEpochCheck::OffsetOutOfRange => return FetchAnswer::Error,
            FetchEpochCheck::Read => {}
        }
        let leader_end = r.log.end();
        if req.fetch_offset > leader_end || req.fetch_offset < 0 {
            return FetchAnswer::Error;
        }
        let high_watermark = r.log.hw;
        let from_offset = req.fetch_offset as usize;
        let to_offset = (from_offset + FETCH_RECORDS_MAX).min(r.log.entries().len());
        let entries = r.log.entries()[from_offset..to_offset].to_vec();
        // A fetch with an older broker epoch than the registration is served, never counted.
        let counted = registration
            .as_ref()
            .is_some_and(|reg| req.broker_epoch >= reg.epoch);
        if counted {
            let eligible = registration
                .as_ref()
                .is_some_and(|reg| reg.is_eligible() && reg.epoch == req.broker_epoch);
            let effects = state.on_follower_fetch(
                from,
                req.broker_epoch,
                req.fetch_offset,
                leader_end,
                eligible,
                now as i64,
            );
            let partition = req.partition;
            self.leader_effects(i, partition, effects);
        }
        FetchAnswer::Records {
            entries,
            high_watermark,
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn follower_receive(
        &mut self,
        i: usize,
        from: NodeId,
        incarnation: u128,
        fetch_id: u64,
        partition: i32,
        leader_epoch: i32,
        answer: FetchAnswer,
    ) {
        let b = &mut self.brokers[i];
        if b.incarnation != incarnation {
            return;
        }
        let Some(r) = b.replicas.get_mut(&partition) else {
            return;
        };
        let following = matches!(r.role, Some(Role::Follower { leader, leader_epoch: e }) if leader == from && e == leader_epoch);
        if !following || r.fetch_in_flight.map(|(_, id)| id) != Some(fetch_id) {
            return;
        }
        r.fetch_in_flight = None;
        match answer {
            FetchAnswer::Records {
                entries,
                high_watermark,
            } => {
                r.log.append(&entries);
                r.log.hw = follower_high_watermark(high_watermark, r.log.end()).max(0);
            }
            FetchAnswer::Diverging { epoch, end_offset } => {
                let local = r.log.end_offset_for_epoch(epoch);
                let to = truncation_offset((epoch, end_offset), local, r.log.end());
                if to < r.log.end() {
                    if self.trace {
                        eprintln!(
                            "{} ms: broker {} p{partition} truncates {} -> {to} on diverging ({epoch}, {end_offset}) from {from}, local {local:?}",
                            self.now_ms, b.id, r.log.end()
                        );
                    }
                    r.log.truncate_to(to);
                    self.counts.truncations += 1;
                }
            }
            FetchAnswer::Error => {}
        }
    }

    /// Carries out a leader's effects: HW on the log (waking parked produces), AlterPartition.
    fn leader_effects(&mut self, i: usize, partition: i32, effects: Vec<Effect>) {
        let now = self.now_ms;
        let broker_epoch = self.brokers[i].broker_epoch.unwrap_or(-1);
        let id = self.brokers[i].id;
        for effect in effects {
            match effect {
                Effect::HighWatermark(hw) => {
                    self.counts.hw_advances += 1;
                    if let Some(Role::Leader { state, .. }) =
                        &self.brokers[i].replicas[&partition].role
                    {
                        if let Some(v) =
                            checks::hw_frozen_below_min_isr(id, partition, state, hw, now)
                        {
                            self.violations.push(v);
                        }
                    }
                    if self.trace {
                        let r = &self.brokers[i].replicas[&partition];
                        if let Some(Role::Leader {
                            state,
                            leader_epoch,
                            ..
                        }) = &r.role
                        {
                            eprintln!(
                                "{now} ms: leader {id} p{partition} epoch {leader_epoch} HW -> {hw} (end {}, isr {:?}, maximal {:?}, ends {:?})",
                                r.log.end(), state.committed_isr(), state.maximal_isr(),
                                [1, 2, 3].map(|f| state.follower_log_end(f))
                            );
                        }
                    }
                    let r = self.brokers[i]
                        .replicas
                        .get_mut(&partition)
                        .expect("a replica");
                    if self.opts.mutation != ReplMutation::HwAtLogEnd {
                        r.log.hw = hw;
                    }
                }
                Effect::ProposeIsr {
                    leader_epoch,
                    partition_epoch,
                    new_isr,
                } => {
                    self.next_seq += 1;
                    let seq = self.next_seq;
                    let r = self.brokers[i]
                        .replicas
                        .get_mut(&partition)
                        .expect("a replica");
                    r.alter_in_flight = Some((seq, now));
                    let req = IsrChangeRequest {
                        topic_id: TOPIC,
                        partition,
                        leader_epoch,
                        partition_epoch,
                        new_isr,
                    };
                    self.send(
                        id,
                        CONTROLLER,
                        Msg::Alter {
                            broker_epoch,
                            seq,
                            req,
                        },
                    );
                }
            }
        }
        if self.opts.mutation == ReplMutation::HwAtLogEnd {
            let r = self.brokers[i]
                .replicas
                .get_mut(&partition)
                .expect("a replica");
            r.log.hw = r.log.end();
        }
        self.after_hw_change(i, partition);
    }

    /// Records the leader's HW move in the history and answers the produces it covers.
    fn after_hw_change(&mut self, i: usize, partition: i32) {
        let now = self.now_ms;
        let id = self.brokers[i].id;
        let r = self.brokers[i]
            .replicas
            .get_mut(&partition)
            .expect("a replica");
        let Some(Role::Leader {
            state,
            leader_epoch,
            ..
        }) = &r.role
        else {
            return;
        };
        let hw = r.log.hw;
        if let Some(v) = self
            .hist
            .leader_hw(id, partition, *leader_epoch, &r.log, now)
        {
            self.violations.push(v);
        }
        let min = MIN_INSYNC_REPLICAS.min(state.replicas().len() as i32) as usize;
        let enough = state.maximal_isr().len() >= min;
        let mut acked = Vec::new();
        r.parked.retain(|&(offset, value, deadline)| {
            if hw > offset {
                if enough {
                    acked.push((offset, value));
                }
                false
            } else {
                deadline > now
            }
        });
        for (offset, value) in acked {
            self.counts.acked += 1;
            if let Some(mut v) = self.hist.acked(partition, offset, value) {
                v.time_ms = now;
                self.violations.push(v);
            }
        }
    }

    /// One broker's turn: registration, heartbeats, metadata catch-up, roles, fetches, ticks.
    fn broker_step(&mut self, i: usize) {
        let now = self.now_ms;
        if !self.brokers[i].running(now) {
            return;
        }
        let id = self.brokers[i].id;
        if self.brokers[i].broker_epoch.is_none() {
            if now >= self.brokers[i].next_register_ms {
                self.brokers[i].next_register_ms = now + 100;
                let incarnation = self.brokers[i].incarnation;
                self.send(id, CONTROLLER, Msg::Register { incarnation });
            }
        } else if now >= self.brokers[i].next_heartbeat_ms {
            self.brokers[i].next_heartbeat_ms = now + HEARTBEAT_INTERVAL_MS;
            let broker_epoch = self.brokers[i].broker_epoch.expect("registered");
            let position = self.brokers[i].image.position;
            let want_shutdown = self.brokers[i].shutdown_since_ms.is_some();
            self.send(
                id,
                CONTROLLER,
                Msg::Heartbeat {
                    broker_epoch,
                    position,
                    want_shutdown,
                },
            );
        }
        if self.brokers[i]
            .shutdown_since_ms
            .is_some_and(|since| now >= since + SHUTDOWN_TIMEOUT_MS)
        {
            self.exit(i);
            return;
        }
        self.catch_up_metadata(i);
        if !self.brokers[i].ready() {
            return;
        }
        self.reconcile_roles(i);
        let partitions: Vec<i32> = self.brokers[i].replicas.keys().copied().collect();
        for p in partitions {
            self.replica_step(i, p);
        }
    }

    /// Applies the controller's log with a lag (cut links from the controller stall it).
    fn catch_up_metadata(&mut self, i: usize) {
        let id = self.brokers[i].id;
        if self.cuts.contains_key(&(CONTROLLER, id)) || !self.rng.chance(300_000) {
            return;
        }
        let b = &mut self.brokers[i];
        let upto = self.ctrl.log.len().min(b.applied + 4);
        for cmd in &self.ctrl.log[b.applied..upto] {
            let position = b.image.position + 1;
            b.image.advance_to(position);
            let _ = b.image.apply(cmd);
        }
        b.applied = upto;
    }

    /// Leader or follower per the broker's image (Kafka `makeLeader` / `makeFollower`).
    fn reconcile_roles(&mut self, i: usize) {
        let now = self.now_ms;
        let id = self.brokers[i].id;
        let assignments: Vec<PartitionAssignment> = self.brokers[i]
            .image
            .partitions()
            .filter(|(_, p)| p.replicas.contains(&id))
            .map(|(_, p)| p.clone())
            .collect();
        for p in assignments {
            let settings = self.settings;
            let truncate_to_hw = self.opts.mutation == ReplMutation::TruncateToHw;
            let b = &mut self.brokers[i];
            let broker_epoch = b.broker_epoch.unwrap_or(-1);
            let r = b.replicas.entry(p.partition).or_insert_with(|| Replica {
                log: ReplicaLog::default(),
                role: None,
                fetch_in_flight: None,
                alter_in_flight: None,
                parked: Vec::new(),
            });
            let mut effects = Vec::new();
            if p.leader == id {
                match &mut r.role {
                    Some(Role::Leader {
                        state,
                        leader_epoch,
                        partition_epoch,
                    }) if *leader_epoch == p.leader_epoch => {
                        if *partition_epoch != p.partition_epoch {
                            *partition_epoch = p.partition_epoch;
                            effects = state.on_metadata(
                                p.partition_epoch,
                                p.replicas.clone(),
                                p.isr.clone(),
                                now as i64,
                            );
                        }
                    }
                    _ => {
                        // flush.messages=1: what it appended as a follower is durable before
                        // it serves it as leader.
                        r.log.flush();
                        let start = r.log.end();
                        r.log.assign_epoch(p.leader_epoch, start);
                        let mut state = LeaderState::new(
                            id,
                            p.leader_epoch,
                            p.partition_epoch,
                            p.replicas.clone(),
                            p.isr.clone(),
                            start,
                            r.log.hw.min(start),
                            start,
                            settings,
                            now as i64,
                        );
                        state.set_local_broker_epoch(broker_epoch);
                        // Kafka's makeLeader ends with maybeIncrementLeaderHW.
                        effects = state.tick(start, now as i64);
                        r.role = Some(Role::Leader {
                            state: Box::new(state),
                            leader_epoch: p.leader_epoch,
                            partition_epoch: p.partition_epoch,
                        });
                        r.alter_in_flight = None;
                        r.parked.clear();
                    }
                }
            } else {
                let already = matches!(r.role, Some(Role::Follower { leader, leader_epoch }) if leader == p.leader && leader_epoch == p.leader_epoch);
                if !already {
                    r.role = Some(Role::Follower {
                        leader: p.leader,
                        leader_epoch: p.leader_epoch,
                    });
                    r.fetch_in_flight = None;
                    r.alter_in_flight = None;
                    r.parked.clear();
                    if truncate_to_hw {
                        let hw = r.log.hw;
                        r.log.truncate_to(hw);
                    }
                }
            }
            if !effects.is_empty() {
                self.leader_effects(i, p.partition, effects);
            }
        }
    }

    fn replica_step(&mut self, i: usize, partition: i32) {
        let now = self.now_ms;
        let id = self.brokers[i].id;
        let incarnation = self.brokers[i].incarnation;
        let broker_epoch = self.brokers[i].broker_epoch.unwrap_or(-1);
        let r = self.brokers[i]
            .replicas
            .get_mut(&partition)
            .expect("a replica");
        match &mut r.role {
            Some(Role::Follower {
                leader,
                leader_epoch,
            }) if *leader != PartitionAssignment::NO_LEADER => {
                let (leader, leader_epoch) = (*leader, *leader_epoch);
                if r.fetch_in_flight
                    .is_some_and(|(sent, _)| now - sent < FETCH_TIMEOUT_MS)
                {
                    return;
                }
                // flush.messages=1: what was appended is durable before the next fetch reports it.
                r.log.flush();
                let fetch_offset = r.log.end();
                self.next_seq += 1;
                let fetch_id = self.next_seq;
                r.fetch_in_flight = Some((now, fetch_id));
                let req = FetchReq {
                    fetch_id,
                    partition,
                    broker_epoch,
                    leader_epoch,
                    fetch_offset,
                    last_fetched_epoch: r.log.latest_epoch().unwrap_or(-1),
                };
                self.send(id, leader, Msg::Fetch { incarnation, req });
            }
            Some(Role::Leader { state, .. }) => {
                let mut retry = false;
                if r.alter_in_flight
                    .is_some_and(|(_, sent)| now - sent >= ALTER_TIMEOUT_MS)
                {
                    r.alter_in_flight = None;
                    retry = true;
                }
                let end = r.log.end();
                let mut effects = if retry {
                    state.on_alter_partition_result(Err(AlterError::Retriable), now as i64)
                } else {
                    Vec::new()
                };
                if self.rng.chance(100_000) {
                    effects.extend(state.tick(end, now as i64));
                }
                self.leader_effects(i, partition, effects);
            }
            _ => {}
        }
    }

    /// Producers (acks=all, unique values) and consumers (reading below the HW), each request
    /// sent to a random running broker as if its metadata named it leader.
    fn client_step(&mut self) {
        let now = self.now_ms;
        let i = self.rng.range(0, self.brokers.len() as u64) as usize;
        let partition = self.rng.range(0, PARTITIONS as u64) as i32;
        if !self.brokers[i].running(now) || !self.brokers[i].ready() {
            return;
        }
        let produce = self.rng.chance(600_000);
        let value = self.next_value;
        let r = match self.brokers[i].replicas.get_mut(&partition) {
            Some(r) => r,
            None => return,
        };
        let Some(Role::Leader {
            state,
            leader_epoch,
            ..
        }) = &mut r.role
        else {
            return;
        };
        if produce {
            if state.check_enough_replicas().is_err() {
                self.counts.refused_not_enough_replicas += 1;
                return;
            }
            self.next_value += 1;
            let offset = r.log.end();
            r.log.append(&[Entry {
                epoch: *leader_epoch,
                value,
            }]);
            r.log.flush();
            r.parked.push((offset, value, now + PRODUCE_TIMEOUT_MS));
            self.counts.produced += 1;
            let effects = state.on_local_append(r.log.end(), now as i64);
            self.leader_effects(i, partition, effects);
        } else {
            let hw = r.log.hw;
            if hw <= 0 {
                return;
            }
            let from = self.rng.range(0, hw as u64) as i64;
            let to = (from + 8).min(hw);
            let reads: Vec<(i64, Entry)> = (from..to)
                .map(|o| (o, r.log.entries()[o as usize]))
                .collect();
            for (offset, entry) in reads {
                self.counts.consumer_reads += 1;
                if let Some(v) = self.hist.read(partition, offset, entry, hw, now) {
                    self.violations.push(v);
                }
            }
        }
    }
}

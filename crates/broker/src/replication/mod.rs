//! Partition replication: every hosted replica's role, driven from the applied metadata image.
//!
//! Owns: the role of each hosted partition on this broker ([`ReplicaCell`]: leader at a leader
//! epoch with its `josefine_replica::LeaderState`, follower of a leader at an epoch, or idle when
//! nobody leads), the transitions between roles ([`ReplicaCell::sync`], called by the metadata
//! applier for every hosted partition *before* it publishes an image, so a handler that sees
//! "this broker leads P at epoch E" in the image always finds the leader state of epoch E),
//! the broker-wide wake-up of consumer long-polls on high-watermark moves, and the background
//! tasks: [`fetcher`] (followers pull from their leaders with Kafka's Fetch) and [`leader`]'s
//! ISR proposer and lag ticker. (The high-watermark checkpoint is `maintenance`'s.)
//!
//! A single node is the same code: a one-replica partition has ISR = {self}, so its leader
//! state moves the high watermark to the log end on every append.
//!
//! Must never: accept an append for a partition unless its role is leader at the epoch the
//! append is stamped with (the check and the append happen under the role lock, as Kafka's
//! `leaderIsrUpdateLock`), move a leader's high watermark anywhere but where its
//! `LeaderState` says (never back, never from a smaller ISR than the controller committed),
//! or decide leadership (the image does: this module only follows it).

pub mod fetcher;
pub mod leader;
pub(crate) mod peer;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use josefine_meta::{Image, PartitionAssignment, TopicId};
use josefine_replica::{Effect, LeaderState, ReplicaSettings};
use tokio::sync::{mpsc, watch};
use tracing::{error, info, warn};

use crate::broker::Broker;
use crate::limits;

/// Fetch answers whose batches this broker refused as a follower (they failed validation or
/// were not contiguous with its log; the partition stops fetching until the leader epoch
/// changes, and one ERROR line names partition, offset and reason). A plain counter, for the
/// metrics exporter.
static FOLLOWER_BATCHES_REFUSED: AtomicU64 = AtomicU64::new(0);

/// How many times this process refused a leader's batches as a follower (see
/// [`FOLLOWER_BATCHES_REFUSED`]).
pub fn follower_batches_refused() -> u64 {
    FOLLOWER_BATCHES_REFUSED.load(Ordering::Relaxed)
}

/// An ISR change a leader asks the controller for (AlterPartition), one in flight per partition.
#[derive(Debug, Clone)]
pub struct IsrProposal {
    pub topic_id: TopicId,
    pub topic: String,
    pub partition: i32,
    pub leader_epoch: i32,
    pub partition_epoch: i32,
    /// (replica, broker epoch) of the proposed ISR.
    pub new_isr: Vec<(i32, i64)>,
}

/// The broker-wide replication hub every hosted partition shares.
pub struct Replication {
    node_id: i32,
    /// Bumped when a leader's high watermark moves: consumer long-polls wait on it.
    hw_moves: watch::Sender<u64>,
    proposals: mpsc::Sender<IsrProposal>,
    proposals_rx: Mutex<Option<mpsc::Receiver<IsrProposal>>>,
    /// `replica.lag.time.max.ms` as last seen in the effective settings.
    lag_time_max_ms: AtomicI64,
}

impl Replication {
    pub fn new(node_id: i32, lag_time_max_ms: i64) -> Arc<Replication> {
        let (tx, rx) = mpsc::channel(limits::ISR_PROPOSALS_QUEUED_MAX);
        Arc::new(Replication {
            node_id,
            hw_moves: watch::channel(0).0,
            proposals: tx,
            proposals_rx: Mutex::new(Some(rx)),
            lag_time_max_ms: AtomicI64::new(lag_time_max_ms),
        })
    }

    pub fn node_id(&self) -> i32 {
        self.node_id
    }

    /// A receiver that changes whenever a leader's high watermark moves.
    pub fn subscribe_hw_moves(&self) -> watch::Receiver<u64> {
        self.hw_moves.subscribe()
    }

    fn notify_hw_move(&self) {
        self.hw_moves.send_modify(|n| *n = n.wrapping_add(1));
    }

    pub fn set_lag_time_max_ms(&self, ms: i64) {
        self.lag_time_max_ms.store(ms, Ordering::Relaxed);
    }

    pub fn lag_time_max_ms(&self) -> i64 {
        self.lag_time_max_ms.load(Ordering::Relaxed)
    }
}

/// What waiters (acks=all produces) watch of a partition's role.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RoleView {
    /// The leader epoch while this broker leads the partition.
    pub leader_epoch: Option<i32>,
    /// The leader's high watermark (meaningful while `leader_epoch` is set).
    pub high_watermark: i64,
    /// Size of the maximal ISR (committed plus pending additions).
    pub maximal_isr_len: usize,
}

/// A partition this broker leads at one leader epoch.
pub(crate) struct Leading {
    pub(crate) leader_epoch: i32,
    pub(crate) partition_epoch: i32,
    /// The log end when this broker became leader at `leader_epoch`: the epoch's first offset.
    pub(crate) epoch_start_offset: i64,
    pub(crate) replicas: Vec<i32>,
    pub(crate) isr: Vec<i32>,
    pub(crate) state: LeaderState,
}

/// The role of one hosted partition on this broker.
pub(crate) enum Role {
    /// Nobody leads it (leader -1), or the image no longer names this broker a replica.
    Idle,
    /// Another broker leads it; a fetcher pulls from that broker.
    Follower {
        leader_id: i32,
        leader_epoch: i32,
    },
    Leader(Box<Leading>),
}

/// A hosted partition's role and the watch its waiters follow.
pub struct ReplicaCell {
    pub(crate) role: Mutex<Role>,
    pub(crate) view: watch::Sender<RoleView>,
}

impl Default for ReplicaCell {
    fn default() -> Self {
        ReplicaCell {
            role: Mutex::new(Role::Idle),
            view: watch::channel(RoleView {
                leader_epoch: None,
                high_watermark: -1,
                maximal_isr_len: 0,
            })
            .0,
        }
    }
}

impl ReplicaCell {
    pub fn subscribe(&self) -> watch::Receiver<RoleView> {
        self.view.subscribe()
    }

    /// The leader epoch and its start offset while this broker leads the partition.
    pub fn leader_epoch_start(&self) -> Option<(i32, i64)> {
        match &*self.role.lock().expect("role lock") {
            Role::Leader(l) => Some((l.leader_epoch, l.epoch_start_offset)),
            _ => None,
        }
    }

    /// The leader this broker follows for the partition, at which epoch.
    pub fn following(&self) -> Option<(i32, i32)> {
        match &*self.role.lock().expect("role lock") {
            Role::Follower {
                leader_id,
                leader_epoch,
            } => Some((*leader_id, *leader_epoch)),
            _ => None,
        }
    }
}

impl crate::partitions::Partition {
    /// Brings the role in line with the image's assignment `a` (the metadata applier calls it
    /// for every hosted partition before publishing the image). Becoming leader at epoch E:
    /// the log's epoch cache gets (E, log end) before any append at E, then a fresh
    /// `LeaderState` from the image's replicas and ISR. Same epoch, new partition epoch: the
    /// leader state hears the committed ISR.
    /// `image` is the image `a` comes from: this broker's registration epoch (sent with itself
    /// in ISR proposals) and the followers' registrations (a fenced, shutting-down or
    /// re-registered follower stops counting for the high watermark at once, as Kafka's
    /// `isReplicaIsrEligible` reads its metadata cache).
    pub(crate) fn sync_role(&self, a: &PartitionAssignment, image: &Image, now_ms: i64) {
        let hub = &self.replication;
        let me = hub.node_id();
        let broker_epoch = image.brokers.get(&me).map_or(-1, |b| b.epoch);
        let mut role = self.replica.role.lock().expect("role lock");
        if a.leader == me {
            if let Role::Leader(l) = &mut *role {
                if l.leader_epoch == a.leader_epoch {
                    if l.partition_epoch != a.partition_epoch
                        || l.isr != a.isr
                        || l.replicas != a.replicas
                    {
                        l.partition_epoch = a.partition_epoch;
                        l.isr = a.isr.clone();
                        l.replicas = a.replicas.clone();
                        let effects = l.state.on_metadata(
                            a.partition_epoch,
                            a.replicas.clone(),
                            a.isr.clone(),
                            now_ms,
                        );
                        self.apply_effects(l, effects, now_ms);
                    }
                    self.sync_eligibility(l, image, now_ms);
                    return;
                }
            }
            let log_end = self.log.log_end_offset();
            if let Err(e) = self.log.assign_leader_epoch(a.leader_epoch, log_end) {
                error!(topic = %self.topic, partition = self.index, leader_epoch = a.leader_epoch, "cannot record the new leader epoch; not serving as leader: {e}");
                *role = Role::Idle;
                self.publish_view(None);
                return;
            }
            let settings = ReplicaSettings {
                replica_lag_time_max_ms: hub.lag_time_max_ms(),
                min_insync_replicas: self.min_insync_replicas(),
            };
            let mut state = LeaderState::new(
                me,
                a.leader_epoch,
                a.partition_epoch,
                a.replicas.clone(),
                a.isr.clone(),
                log_end,
                self.log.high_watermark(),
                log_end,
                settings,
                now_ms,
            );
            state.set_local_broker_epoch(broker_epoch);
            let mut leading = Box::new(Leading {
                leader_epoch: a.leader_epoch,
                partition_epoch: a.partition_epoch,
                epoch_start_offset: log_end,
                replicas: a.replicas.clone(),
                isr: a.isr.clone(),
                state,
            });
            info!(topic = %self.topic, partition = self.index, leader_epoch = a.leader_epoch, log_end, high_watermark = leading.state.high_watermark(), isr = ?a.isr, "leading");
            let effects = leading.state.on_local_append(log_end, now_ms);
            self.apply_effects(&mut leading, effects, now_ms);
            self.sync_eligibility(&mut leading, image, now_ms);
            self.publish_view(Some(&leading));
            *role = Role::Leader(leading);
            return;
        }
        let next = if a.leader != PartitionAssignment::NO_LEADER && a.replicas.contains(&me) {
            Role::Follower {
                leader_id: a.leader,
                leader_epoch: a.leader_epoch,
            }
        } else {
            Role::Idle
        };
        if let (Role::Leader(l), Role::Follower { leader_id, .. }) = (&*role, &next) {
            info!(topic = %self.topic, partition = self.index, was_leader_epoch = l.leader_epoch, leader = leader_id, leader_epoch = a.leader_epoch, "following");
        }
        *role = next;
        self.publish_view(None);
    }

    /// Hands the leader state every follower's registration as `image` holds it.
    fn sync_eligibility(&self, l: &mut Leading, image: &Image, now_ms: i64) {
        let me = self.replication.node_id();
        let followers: Vec<i32> = l.replicas.iter().copied().filter(|&r| r != me).collect();
        for r in followers {
            let registration = image.brokers.get(&r);
            let effects = l.state.on_replica_eligibility(
                r,
                registration.map(|b| b.epoch),
                registration.is_some_and(|b| b.is_eligible()),
                now_ms,
            );
            if !effects.is_empty() {
                self.apply_effects(l, effects, now_ms);
            }
        }
    }

    /// `min.insync.replicas` changed (AlterConfigs): the leader state applies it at once.
    pub(crate) fn on_min_insync_changed(&self, min_insync_replicas: i32) {
        let now_ms = crate::clock::now_ms();
        let mut role = self.replica.role.lock().expect("role lock");
        if let Role::Leader(l) = &mut *role {
            let effects = l.state.set_min_insync_replicas(min_insync_replicas, now_ms);
            self.apply_effects(l, effects, now_ms);
        }
    }

    /// The partition is going away (its topic's deletion applied): idle from now on, so that
    /// no leader or follower append reaches its log, and acks=-1 waiters hear
    /// NOT_LEADER_OR_FOLLOWER.
    pub(crate) fn retire(&self) {
        *self.replica.role.lock().expect("role lock") = Role::Idle;
        self.publish_view(None);
    }

    /// Carries out a leader state's effects: a new high watermark goes to the log and wakes
    /// waiters; an ISR proposal goes to the proposer task.
    pub(crate) fn apply_effects(&self, l: &mut Leading, effects: Vec<Effect>, now_ms: i64) {
        let mut queue = effects;
        // A full proposal queue answers the proposal at once as retriable, which may bring
        // more effects: bounded by the rounds below (each round drains a finite list).
        for _ in 0..limits::REPLICA_EFFECT_ROUNDS_MAX {
            if queue.is_empty() {
                break;
            }
            let mut next = Vec::new();
            for effect in queue {
                match effect {
                    Effect::HighWatermark(hw) => {
                        let stored = self.log.set_high_watermark(hw);
                        if stored != hw {
                            warn!(topic = %self.topic, partition = self.index, wanted = hw, stored, "the log clamped the high watermark");
                        }
                        self.replication.notify_hw_move();
                    }
                    Effect::ProposeIsr {
                        leader_epoch,
                        partition_epoch,
                        new_isr,
                    } => {
                        let proposal = IsrProposal {
                            topic_id: self.topic_id,
                            topic: self.topic.clone(),
                            partition: self.index,
                            leader_epoch,
                            partition_epoch,
                            new_isr,
                        };
                        if let Err(e) = self.replication.proposals.try_send(proposal) {
                            warn!(topic = %self.topic, partition = self.index, "ISR proposal not sent ({e}); retried later");
                            next.extend(l.state.on_alter_partition_result(
                                Err(josefine_replica::AlterError::Retriable),
                                now_ms,
                            ));
                        }
                    }
                }
            }
            queue = next;
        }
        self.publish_view(Some(l));
    }

    fn publish_view(&self, l: Option<&Leading>) {
        let view = match l {
            Some(l) => RoleView {
                leader_epoch: Some(l.leader_epoch),
                high_watermark: l.state.high_watermark(),
                maximal_isr_len: l.state.maximal_isr().len(),
            },
            None => RoleView {
                leader_epoch: None,
                high_watermark: -1,
                maximal_isr_len: 0,
            },
        };
        self.replica.view.send_if_modified(|v| {
            let changed = *v != view;
            *v = view;
            changed
        });
    }
}

impl crate::partitions::PartitionRegistry {
    /// Brings every hosted partition's role in line with `image` (see
    /// [`crate::partitions::Partition::sync_role`]). Called by the metadata applier before it
    /// publishes `image`.
    pub fn sync_roles(&self, image: &Image) {
        let settings = self.effective_settings(image);
        self.replication()
            .set_lag_time_max_ms(settings.replica_lag_time_max_ms);
        let now = crate::clock::now_ms();
        for p in self.all() {
            match image.partition(p.topic_id, p.index) {
                Some(a) => p.sync_role(a, image, now),
                None => p.sync_role(&idle_assignment(p.index), image, now),
            }
        }
    }
}

/// The assignment of a partition the image no longer holds (its deletion is being applied).
fn idle_assignment(partition: i32) -> PartitionAssignment {
    PartitionAssignment {
        partition,
        replicas: vec![],
        leader: PartitionAssignment::NO_LEADER,
        leader_epoch: -1,
        partition_epoch: -1,
        isr: vec![],
    }
}

/// Starts the replication tasks: the fetcher manager, the ISR proposer and the lag ticker. They stop when `stop` turns true.
pub fn start(broker: &Arc<Broker>, stop: watch::Receiver<bool>) {
    let proposals = broker
        .partitions
        .replication()
        .proposals_rx
        .lock()
        .expect("proposals lock")
        .take()
        .expect("replication started twice");
    tokio::spawn(fetcher::run(broker.clone(), stop.clone()));
    tokio::spawn(leader::run_proposer(
        broker.clone(),
        proposals,
        stop.clone(),
    ));
    tokio::spawn(leader::run_ticker(broker.clone(), stop));
}

//! The controller's decisions, as a pure state machine: registration, broker sessions
//! (heartbeats), fencing and unfencing, controlled shutdown, leader elections, producer-id
//! blocks.
//!
//! Owns: the soft state Kafka keeps out of the metadata log (the last heartbeat of each broker,
//! rebuilt on activation: every unfenced broker gets a fresh session then, because a new
//! controller cannot know the old heartbeats) and the rules that turn requests and the passage
//! of time into [`Command`]s. Every decision is computed from the image passed in and names
//! the epochs it saw, so a stale decision fails `Image::apply` and is a no-op; the runtime
//! proposes the commands one at a time, each after the previous one applied, and calls every
//! method with the latest applied image.
//! Josefine's session-close rule (not Kafka's; [`ControllerSettings::session_close_grace_ms`],
//! 0 turns it off): the runtime reports when the connection that carried a broker's latest
//! heartbeat is closed by the peer (EOF or reset: the kernel closes a killed process's sockets
//! at once, while a network partition or a paused process leaves them open); the broker is
//! fenced `session_close_grace_ms` later unless a heartbeat of the same registration arrives
//! on another connection first. Only connections that carried a heartbeat to this activation
//! count, so a controller change fences nobody through it; a new controller may instead be
//! told that a node closed its chain connection to this one before the activation
//! ([`Controller::process_closed`]: the old controller's own process, killed), which starts
//! the same grace, never ending sooner than one heartbeat interval after the activation.
//! Election rule (Kafka's `PartitionChangeBuilder`, see [`partition_change`]): keep the leader
//! if it is still eligible; else the first replica in assignment order that is in the ISR and
//! eligible (registered, unfenced, not shutting down); else, where the topic allows it
//! (`unclean.leader.election.enable`), the first eligible replica alone as ISR; else no
//! leader, and the ISR keeps its last member (it is never emptied). A broker leaving (fenced,
//! shutting down, re-registered) leaves every ISR it is not the last member of. Timers (in
//! `tick`): session expiry, the periodic unclean round, the preferred-leader rebalance; no
//! timer elects leaderless partitions cleanly (unfencing does, as in Kafka). ISR changes a
//! leader asks for are decided in [`alter_partition`].
//! Must never: do I/O, read clocks (time is `now_ms`, an input) or randomness, or change the
//! image itself: it only proposes.

pub mod alter_partition;

use std::collections::BTreeMap;

use crate::command::{Command, PartitionAssignment, TopicId};
use crate::image::Image;
use crate::MetaError;

/// Controller settings (Kafka names in the docs of each field).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ControllerSettings {
    /// `broker.session.timeout.ms`: a broker without a heartbeat for this long is fenced.
    pub session_timeout_ms: u64,
    /// `broker.heartbeat.interval.ms`: how often brokers heartbeat (for their runtime).
    pub heartbeat_interval_ms: u64,
    /// `broker.session.close.grace.ms` (Josefine's, Kafka has no such rule): a broker whose
    /// session connection was closed by its end (EOF or reset, as when its process dies) is
    /// fenced this long after the close unless it heartbeats again meanwhile; 0 turns the rule
    /// off (Kafka's behaviour: only the session timeout fences). Must exceed the heartbeat
    /// interval, so a live broker that reopened its connection heartbeats in time.
    pub session_close_grace_ms: u64,
    /// Producer ids per AllocateProducerIds block (Kafka's `ProducerIdsBlock.PRODUCER_ID_BLOCK_SIZE`).
    pub producer_id_block_size: i64,
    /// `unclean.leader.election.enable` of the controller's static config: the default under
    /// the cluster-wide dynamic value and each topic's override ([`unclean_election_enabled`]).
    pub unclean_leader_election_enable: bool,
    /// `unclean.leader.election.interval.ms`: how often leaderless partitions of topics that
    /// allow it get an unclean election (for topics where it was enabled after they lost
    /// their leader; a fencing with it enabled elects at once).
    pub unclean_leader_election_interval_ms: u64,
    /// `auto.leader.rebalance.enable`: move leadership back to the preferred replica.
    pub auto_leader_rebalance_enable: bool,
    /// `leader.imbalance.check.interval.seconds`, in ms: how often that is done.
    pub leader_imbalance_check_interval_ms: u64,
}

impl Default for ControllerSettings {
    fn default() -> Self {
        ControllerSettings {
            session_timeout_ms: 9_000,
            heartbeat_interval_ms: 2_000,
            session_close_grace_ms: 3_000,
            producer_id_block_size: 1_000,
            unclean_leader_election_enable: false,
            unclean_leader_election_interval_ms: 300_000,
            auto_leader_rebalance_enable: true,
            leader_imbalance_check_interval_ms: 300_000,
        }
    }
}

/// Most preferred-leader elections one rebalance round proposes (Kafka's
/// `maxElectionsPerImbalance`); more wait for the next round, which then comes at once.
pub const ELECTIONS_PER_ROUND_MAX: usize = 1_000;

/// The topic config (and broker config) that allows electing a leader outside the ISR.
pub const UNCLEAN_LEADER_ELECTION_ENABLE: &str = "unclean.leader.election.enable";

/// Whether topic `topic_id` allows an unclean election: its own config, else the cluster-wide
/// dynamic broker config, else the controller's static `default` (Kafka's
/// `uncleanLeaderElectionEnabledForTopic`).
pub fn unclean_election_enabled(image: &Image, topic_id: TopicId, default: bool) -> bool {
    let topic = image
        .topics
        .get(&topic_id)
        .and_then(|t| t.configs.get(UNCLEAN_LEADER_ELECTION_ENABLE));
    let cluster = image
        .cluster_broker_configs
        .get(UNCLEAN_LEADER_ELECTION_ENABLE);
    match topic.or(cluster) {
        Some(v) => v.eq_ignore_ascii_case("true"),
        None => default,
    }
}

/// The unclean elections `cmd` makes on `image`: (topic, partition, new leader) for every
/// partition change that elects a leader outside the partition's current ISR. For the
/// runtime's warning log (data acknowledged by the old ISR may be lost).
pub fn unclean_elections(image: &Image, cmd: &Command) -> Vec<(TopicId, i32, i32)> {
    let one = |c: &Command| match c {
        Command::ChangePartition {
            topic_id,
            partition,
            leader: Some(leader),
            ..
        } if *leader != PartitionAssignment::NO_LEADER => image
            .partition(*topic_id, *partition)
            .filter(|p| !p.isr.contains(leader))
            .map(|_| (*topic_id, *partition, *leader)),
        _ => None,
    };
    match cmd {
        Command::Batch(all) => all.iter().filter_map(one).collect(),
        c => one(c).into_iter().collect(),
    }
}

/// A BrokerRegistration request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Registration {
    pub node_id: i32,
    pub incarnation_id: u128,
    /// The inter-broker endpoint (what replicas dial).
    pub host: String,
    pub port: i32,
    pub rack: Option<String>,
    /// Every named listener (empty: the one PLAINTEXT endpoint `host`/`port`, as before named
    /// listeners).
    pub listeners: Vec<crate::command::ListenerEndpoint>,
}

/// What to do with a registration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RegisterDecision {
    /// This incarnation is already registered: answer with its epoch, propose nothing.
    Existing { epoch: i64 },
    /// Propose this; the broker epoch is the position at which it applies.
    Propose(Command),
}

/// A BrokerHeartbeat request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Heartbeat {
    pub node_id: i32,
    pub broker_epoch: i64,
    /// The broker's applied image position (Kafka's `current_metadata_offset`).
    pub current_position: u64,
    pub want_fence: bool,
    pub want_shutdown: bool,
}

/// The answer to a heartbeat, as it will stand once the command that comes with it (if any)
/// has applied.
#[derive(Debug)]
pub struct HeartbeatReply {
    /// BROKER_ID_NOT_REGISTERED or STALE_BROKER_EPOCH (`MetaError::kafka_error_code`).
    pub error: Option<MetaError>,
    pub is_caught_up: bool,
    pub is_fenced: bool,
    pub should_shut_down: bool,
}

/// Identifies one connection of the runtime's control server (unique per process, never
/// [`NO_CONNECTION`]).
pub type ConnectionId = u64;

/// Stands for "no control connection" in a pending close fence ([`Controller::process_closed`]).
const NO_CONNECTION: ConnectionId = 0;

/// The controller's soft state.
#[derive(Debug, Clone)]
pub struct Controller {
    settings: ControllerSettings,
    /// Last heartbeat (ms) of each broker with a session. Unfenced brokers always get one
    /// (at the latest on the next `tick`); fenced ones only while they heartbeat.
    last_heartbeat_ms: BTreeMap<i32, u64>,
    /// The connection each broker's latest accepted heartbeat came on (this activation only).
    session_connection: BTreeMap<i32, ConnectionId>,
    /// Brokers whose session connection was closed by their end: (that connection, when). A
    /// heartbeat on another connection clears it; `tick` fences at `when + grace`.
    session_closed: BTreeMap<i32, (ConnectionId, u64)>,
    /// When the next preferred-leader rebalance round is due.
    next_rebalance_ms: u64,
    /// When the next periodic unclean election round is due.
    next_unclean_ms: u64,
}

impl Controller {
    /// Starts controlling `image`: every registered unfenced broker gets a session from now.
    pub fn activate(image: &Image, now_ms: u64, settings: ControllerSettings) -> Controller {
        Controller {
            settings,
            last_heartbeat_ms: image
                .unfenced_brokers()
                .map(|b| (b.node_id, now_ms))
                .collect(),
            session_connection: BTreeMap::new(),
            session_closed: BTreeMap::new(),
            // Kafka defers both tasks by their interval after activation.
            next_rebalance_ms: now_ms.saturating_add(settings.leader_imbalance_check_interval_ms),
            next_unclean_ms: now_ms.saturating_add(settings.unclean_leader_election_interval_ms),
        }
    }

    pub fn settings(&self) -> &ControllerSettings {
        &self.settings
    }

    /// Decides a BrokerRegistration. Errors: the node is not a voter or the registration is
    /// invalid (INVALID_REGISTRATION); another incarnation is registered unfenced with a live
    /// session (DUPLICATE_BROKER_REGISTRATION, Kafka's rule). A new incarnation replaces the
    /// old one: the registration goes with the leader and ISR changes that take the old
    /// incarnation out of its partitions.
    pub fn register(
        &mut self,
        image: &Image,
        req: Registration,
        voter_ids: &[i32],
        now_ms: u64,
    ) -> Result<RegisterDecision, MetaError> {
        if !voter_ids.contains(&req.node_id) {
            return Err(MetaError::InvalidBrokerRegistration(format!(
                "node {} is not a voter of this cluster",
                req.node_id
            )));
        }
        if let Some(existing) = image.brokers.get(&req.node_id) {
            if existing.incarnation_id == req.incarnation_id {
                return Ok(RegisterDecision::Existing {
                    epoch: existing.epoch,
                });
            }
            // Kafka's DUPLICATE_BROKER_REGISTRATION: the registered incarnation is unfenced
            // and its session still runs (its process may be alive); the new one retries
            // until that session expires and the old registration is fenced.
            if !existing.fenced && self.has_live_session(req.node_id, now_ms) {
                return Err(MetaError::BrokerIdInUse(req.node_id));
            }
        }
        let node_id = req.node_id;
        let first = Command::RegisterBroker {
            node_id,
            incarnation_id: req.incarnation_id,
            host: req.host,
            port: req.port,
            rack: req.rack,
        };
        let mut cmd = with_broker_leaving(image, node_id, first, self.unclean_default());
        if !req.listeners.is_empty() {
            let Command::Batch(batch) = &mut cmd else {
                unreachable!("with_broker_leaving makes a batch")
            };
            batch.insert(
                1,
                Command::SetBrokerListeners {
                    node_id,
                    incarnation_id: req.incarnation_id,
                    listeners: req.listeners,
                },
            );
        }
        // The registration is the caller's input: refuse it rather than propose a no-op. It
        // applies in a later block than the image's, so check it there (a registration needs
        // a newer position than the one it replaces).
        let mut next = image.clone();
        next.advance_to(image.position + 1);
        next.validate(&cmd)?;
        self.last_heartbeat_ms.insert(node_id, now_ms);
        // The old incarnation's connection says nothing about this one.
        self.session_connection.remove(&node_id);
        self.session_closed.remove(&node_id);
        Ok(RegisterDecision::Propose(cmd))
    }

    /// Decides a BrokerHeartbeat: refreshes the session and returns the reply and, maybe, a
    /// command (unfence with elections, begin controlled shutdown with leader moves, fence).
    /// For callers without a connection (the single-node bootstrap, tests); the runtime uses
    /// [`Self::heartbeat_on`].
    pub fn heartbeat(
        &mut self,
        image: &Image,
        req: Heartbeat,
        now_ms: u64,
    ) -> (HeartbeatReply, Option<Command>) {
        self.heartbeat_via(image, req, None, now_ms)
    }

    /// [`Self::heartbeat`] for one that came on `connection`: that becomes the broker's session
    /// connection, and a pending session-close fence of the broker is cancelled unless the
    /// heartbeat came on the connection that closed (it was sent before the close).
    pub fn heartbeat_on(
        &mut self,
        image: &Image,
        req: Heartbeat,
        connection: ConnectionId,
        now_ms: u64,
    ) -> (HeartbeatReply, Option<Command>) {
        self.heartbeat_via(image, req, Some(connection), now_ms)
    }

    /// Notes that `connection` was closed by its peer (EOF or reset) at `now_ms`. When it is
    /// the session connection of a broker with a session, `tick` fences that broker
    /// `session_close_grace_ms` from now unless it heartbeats on another connection first.
    /// Closes of other connections, or with the rule off, change nothing. Returns the broker
    /// now due to be fenced at `now_ms + session_close_grace_ms`, if any.
    pub fn connection_closed(&mut self, connection: ConnectionId, now_ms: u64) -> Option<i32> {
        if self.settings.session_close_grace_ms == 0 {
            return None;
        }
        let node_id = self
            .session_connection
            .iter()
            .find(|(_, c)| **c == connection)
            .map(|(n, _)| *n)?;
        self.session_connection.remove(&node_id);
        if !self.last_heartbeat_ms.contains_key(&node_id) {
            return None;
        }
        self.session_closed.insert(node_id, (connection, now_ms));
        Some(node_id)
    }

    /// Right after [`Self::activate`]: node `node_id` closed its chain connection to this one at
    /// `closed_at_ms` (EOF or reset) and has not opened another since, so its process probably
    /// died (a killed controller's, typically: no broker had a session connection to this
    /// controller yet). Treated as a session-connection close: the broker is fenced at
    /// `max(closed_at_ms + grace, now_ms + heartbeat interval)` (a live broker needs about one
    /// interval to find the new controller) unless it heartbeats first. Returns whether a fence
    /// is now pending (the rule is on, the broker has a session, no heartbeat came yet).
    pub fn process_closed(&mut self, node_id: i32, closed_at_ms: u64, now_ms: u64) -> bool {
        let grace = self.settings.session_close_grace_ms;
        if grace == 0
            || !self.last_heartbeat_ms.contains_key(&node_id)
            || self.session_connection.contains_key(&node_id)
        {
            return false;
        }
        let earliest = now_ms
            .saturating_add(self.settings.heartbeat_interval_ms)
            .saturating_sub(grace);
        self.session_closed
            .insert(node_id, (NO_CONNECTION, closed_at_ms.max(earliest)));
        true
    }

    fn heartbeat_via(
        &mut self,
        image: &Image,
        req: Heartbeat,
        connection: Option<ConnectionId>,
        now_ms: u64,
    ) -> (HeartbeatReply, Option<Command>) {
        let node_id = req.node_id;
        let Some(reg) = image.brokers.get(&node_id) else {
            return (refusal(MetaError::BrokerNotRegistered(node_id)), None);
        };
        if reg.epoch != req.broker_epoch {
            let stale = MetaError::StaleBrokerEpoch {
                node_id,
                current: reg.epoch,
                given: req.broker_epoch,
            };
            return (refusal(stale), None);
        }
        self.last_heartbeat_ms.insert(node_id, now_ms);
        if let Some(connection) = connection {
            let closed = self.session_closed.get(&node_id).map(|(c, _)| *c);
            if closed != Some(connection) {
                self.session_closed.remove(&node_id);
                self.session_connection.insert(node_id, connection);
            }
        }
        // Kafka's rule: caught up once its image reached its own registration.
        let is_caught_up = req.current_position >= reg.epoch as u64;
        let epoch = reg.epoch;
        let mut reply = HeartbeatReply {
            error: None,
            is_caught_up,
            is_fenced: reg.fenced,
            should_shut_down: false,
        };
        let cmd = if reg.fenced {
            if req.want_shutdown {
                // A fenced broker leads nothing: it may go at once.
                reply.should_shut_down = true;
                None
            } else if is_caught_up && !req.want_fence && !reg.in_controlled_shutdown {
                reply.is_fenced = false;
                Some(unfence(image, node_id, epoch, self.unclean_default()))
            } else {
                None
            }
        } else if req.want_fence {
            reply.is_fenced = true;
            self.last_heartbeat_ms.remove(&node_id);
            Some(fence(image, node_id, epoch, self.unclean_default()))
        } else if req.want_shutdown {
            if !reg.in_controlled_shutdown {
                Some(with_broker_leaving(
                    image,
                    node_id,
                    Command::BeginControlledShutdown { node_id, epoch },
                    self.unclean_default(),
                ))
            } else {
                // In controlled shutdown it leads nothing (an image invariant): done.
                reply.should_shut_down = true;
                reply.is_fenced = true;
                self.last_heartbeat_ms.remove(&node_id);
                Some(fence(image, node_id, epoch, self.unclean_default()))
            }
        } else {
            None
        };
        if let Some(cmd) = &cmd {
            assert_decision_valid(image, cmd);
        }
        (reply, cmd)
    }

    /// Fences the brokers whose session expired, or whose session connection closed
    /// `session_close_grace_ms` ago without a heartbeat since (one batch each, with their leader and ISR
    /// changes); every `unclean.leader.election.interval.ms`, elects leaders outside the ISR
    /// for leaderless partitions of topics that allow it; every
    /// `leader.imbalance.check.interval.seconds` (with `auto.leader.rebalance.enable`), moves
    /// leadership back to preferred replicas that are in sync. The commands are meant to be
    /// proposed in order: each is computed on the image as the ones before it leave it.
    pub fn tick(&mut self, image: &Image, now_ms: u64) -> Vec<Command> {
        // Sessions of brokers that are gone or fenced stop mattering; unfenced brokers without
        // one (unfenced by another controller, or a fence that failed) get one from now.
        self.last_heartbeat_ms
            .retain(|node_id, _| image.brokers.get(node_id).is_some_and(|b| !b.fenced));
        for b in image.unfenced_brokers() {
            self.last_heartbeat_ms.entry(b.node_id).or_insert(now_ms);
        }
        let sessions = &self.last_heartbeat_ms;
        self.session_closed.retain(|n, _| sessions.contains_key(n));
        self.session_connection
            .retain(|n, _| sessions.contains_key(n));
        let timeout = self.settings.session_timeout_ms;
        let grace = self.settings.session_close_grace_ms;
        let expired: Vec<i32> = self
            .last_heartbeat_ms
            .iter()
            .filter(|(node_id, last)| {
                now_ms.saturating_sub(**last) > timeout
                    || self
                        .session_closed
                        .get(node_id)
                        .is_some_and(|(_, at)| now_ms.saturating_sub(*at) >= grace)
            })
            .map(|(node_id, _)| *node_id)
            .collect();
        let mut commands = Vec::new();
        let mut scratch: Option<Image> = None;
        for node_id in expired {
            self.last_heartbeat_ms.remove(&node_id);
            self.session_closed.remove(&node_id);
            self.session_connection.remove(&node_id);
            let current = scratch.as_ref().unwrap_or(image);
            let epoch = current.brokers[&node_id].epoch;
            let cmd = fence(current, node_id, epoch, self.unclean_default());
            let next = scratch.get_or_insert_with(|| image.clone());
            if let Err(e) = next.apply(&cmd) {
                panic!("controller decided an invalid fence of broker {node_id}: {cmd:?}: {e}");
            }
            commands.push(cmd);
        }
        // No clean election of leaderless partitions here (Kafka's controller has none
        // either): a partition loses its leader only when no ISR member is eligible, and one
        // becomes eligible again only by being unfenced, which elects it in the same batch.
        if now_ms >= self.next_unclean_ms {
            self.next_unclean_ms =
                now_ms.saturating_add(self.settings.unclean_leader_election_interval_ms);
            let current = scratch.as_ref().unwrap_or(image);
            let default = self.unclean_default();
            let elections: Vec<Command> = current
                .partitions()
                .filter(|(topic_id, p)| {
                    p.leader == PartitionAssignment::NO_LEADER
                        && unclean_election_enabled(current, *topic_id, default)
                })
                .filter_map(|(topic_id, p)| {
                    partition_change_with(topic_id, p, |r| current.is_eligible(r), None, true)
                })
                .take(ELECTIONS_PER_ROUND_MAX)
                .collect();
            if !elections.is_empty() {
                let cmd = Command::Batch(elections);
                let next = scratch.get_or_insert_with(|| image.clone());
                if let Err(e) = next.apply(&cmd) {
                    panic!("controller decided invalid unclean elections: {cmd:?}: {e}");
                }
                commands.push(cmd);
            }
        }
        if self.settings.auto_leader_rebalance_enable && now_ms >= self.next_rebalance_ms {
            let current = scratch.as_ref().unwrap_or(image);
            let elections = preferred_leader_elections(current);
            // A full round leaves more to do: the next one comes at once (Kafka's IMMEDIATELY).
            self.next_rebalance_ms = if elections.len() >= ELECTIONS_PER_ROUND_MAX {
                now_ms
            } else {
                now_ms.saturating_add(self.settings.leader_imbalance_check_interval_ms)
            };
            if !elections.is_empty() {
                let cmd = Command::Batch(elections);
                assert_decision_valid(current, &cmd);
                commands.push(cmd);
            }
        }
        commands
    }

    /// When `tick` next has something to do (the earliest session expiry or periodic round).
    pub fn next_deadline_ms(&self) -> Option<u64> {
        let sessions = self
            .last_heartbeat_ms
            .values()
            .min()
            .map(|last| last.saturating_add(self.settings.session_timeout_ms + 1));
        let closed = self
            .session_closed
            .values()
            .map(|(_, at)| at.saturating_add(self.settings.session_close_grace_ms))
            .min();
        let rebalance = self
            .settings
            .auto_leader_rebalance_enable
            .then_some(self.next_rebalance_ms);
        [sessions, closed, rebalance, Some(self.next_unclean_ms)]
            .into_iter()
            .flatten()
            .min()
    }

    /// Kafka's `hasValidSession`: the broker heartbeat (or got a session at activation) within
    /// the session timeout.
    fn has_live_session(&self, node_id: i32, now_ms: u64) -> bool {
        self.last_heartbeat_ms
            .get(&node_id)
            .is_some_and(|last| now_ms.saturating_sub(*last) <= self.settings.session_timeout_ms)
    }

    fn unclean_default(&self) -> bool {
        self.settings.unclean_leader_election_enable
    }

    /// Decides an AllocateProducerIds request: the next block, starting where the image says.
    pub fn allocate_producer_ids(
        &self,
        image: &Image,
        broker_id: i32,
        broker_epoch: i64,
    ) -> Result<Command, MetaError> {
        let reg = image
            .brokers
            .get(&broker_id)
            .ok_or(MetaError::BrokerNotRegistered(broker_id))?;
        if reg.epoch != broker_epoch {
            return Err(MetaError::StaleBrokerEpoch {
                node_id: broker_id,
                current: reg.epoch,
                given: broker_epoch,
            });
        }
        let cmd = Command::AllocateProducerIds {
            broker_id,
            first_id: image.next_producer_id,
            count: self.settings.producer_id_block_size,
        };
        image.validate(&cmd)?;
        Ok(cmd)
    }
}

fn refusal(error: MetaError) -> HeartbeatReply {
    HeartbeatReply {
        error: Some(error),
        is_caught_up: false,
        is_fenced: true,
        should_shut_down: false,
    }
}

/// A decision computed from `image` is valid on `image`: anything else is a controller bug.
fn assert_decision_valid(image: &Image, cmd: &Command) {
    if let Err(e) = image.validate(cmd) {
        panic!("the controller decided a command its own image refuses: {cmd:?}: {e}");
    }
}

/// The change that brings partition `p` in line with the election rule, with `leaving` taken
/// out of its ISR (unless it is the last member) and never chosen as leader, and `eligible`
/// saying who may lead. `None` when nothing changes. Kafka's `PartitionChangeBuilder`:
/// keep an eligible leader; else the first replica, in assignment order, that is in the ISR
/// and eligible; else no leader.
pub fn partition_change(
    topic_id: TopicId,
    p: &PartitionAssignment,
    eligible: impl Fn(i32) -> bool,
    leaving: Option<i32>,
) -> Option<Command> {
    partition_change_with(topic_id, p, eligible, leaving, false)
}

/// [`partition_change`], with `unclean` allowing (Kafka's `Election.UNCLEAN`), when no ISR
/// member may lead, the first eligible replica in assignment order to lead as the only ISR
/// member (acknowledged writes the old ISR held may be lost: the runtime logs a warning).
pub fn partition_change_with(
    topic_id: TopicId,
    p: &PartitionAssignment,
    eligible: impl Fn(i32) -> bool,
    leaving: Option<i32>,
    unclean: bool,
) -> Option<Command> {
    let eligible = |r: i32| Some(r) != leaving && eligible(r);
    let mut isr = p.isr.clone();
    if let Some(gone) = leaving {
        if isr.len() > 1 {
            isr.retain(|r| *r != gone);
        }
    }
    let mut leader = if p.leader != PartitionAssignment::NO_LEADER
        && eligible(p.leader)
        && isr.contains(&p.leader)
    {
        p.leader
    } else {
        p.replicas
            .iter()
            .copied()
            .find(|r| isr.contains(r) && eligible(*r))
            .unwrap_or(PartitionAssignment::NO_LEADER)
    };
    if leader == PartitionAssignment::NO_LEADER && unclean {
        if let Some(r) = p.replicas.iter().copied().find(|r| eligible(*r)) {
            leader = r;
            isr = vec![r];
        }
    }
    assert!(!isr.is_empty(), "an election never empties the ISR");
    assert!(
        leader == PartitionAssignment::NO_LEADER || isr.contains(&leader),
        "an elected leader is in the ISR"
    );
    if leader == p.leader && isr == p.isr {
        return None;
    }
    Some(Command::ChangePartition {
        topic_id,
        partition: p.partition,
        expected_partition_epoch: p.partition_epoch,
        leader: (leader != p.leader).then_some(leader),
        isr: (isr != p.isr).then_some(isr),
    })
}

/// The leader and ISR changes that take `node_id` out of every partition it leads or is in
/// sync for (with an unclean election where the topic allows it and no ISR member is left).
fn leaving_changes(image: &Image, node_id: i32, unclean_default: bool) -> Vec<Command> {
    image
        .partitions()
        .filter(|(_, p)| p.leader == node_id || p.isr.contains(&node_id))
        .filter_map(|(topic_id, p)| {
            let unclean = unclean_election_enabled(image, topic_id, unclean_default);
            partition_change_with(
                topic_id,
                p,
                |r| image.is_eligible(r),
                Some(node_id),
                unclean,
            )
        })
        .collect()
}

/// `first` (which makes `node_id` ineligible) batched with the changes it requires.
fn with_broker_leaving(
    image: &Image,
    node_id: i32,
    first: Command,
    unclean_default: bool,
) -> Command {
    let mut batch = vec![first];
    batch.extend(leaving_changes(image, node_id, unclean_default));
    Command::Batch(batch)
}

fn fence(image: &Image, node_id: i32, epoch: i64, unclean_default: bool) -> Command {
    with_broker_leaving(
        image,
        node_id,
        Command::FenceBroker { node_id, epoch },
        unclean_default,
    )
}

/// Unfences `node_id` and elects leaders for the leaderless partitions it is in sync for, or
/// (Kafka's unclean election, where the topic allows it) merely a replica of.
fn unfence(image: &Image, node_id: i32, epoch: i64, unclean_default: bool) -> Command {
    let eligible = |r: i32| r == node_id || image.is_eligible(r);
    let mut batch = vec![Command::UnfenceBroker { node_id, epoch }];
    batch.extend(
        image
            .partitions()
            .filter(|(_, p)| {
                p.leader == PartitionAssignment::NO_LEADER && p.replicas.contains(&node_id)
            })
            .filter_map(|(topic_id, p)| {
                let unclean = unclean_election_enabled(image, topic_id, unclean_default);
                if !unclean && !p.isr.contains(&node_id) {
                    return None;
                }
                partition_change_with(topic_id, p, eligible, None, unclean)
            }),
    );
    Command::Batch(batch)
}

/// Kafka's preferred-leader rebalance round: every partition whose leader is not its
/// preferred (first) replica while that replica is in the ISR and eligible gets it as leader
/// (at most [`ELECTIONS_PER_ROUND_MAX`]).
fn preferred_leader_elections(image: &Image) -> Vec<Command> {
    image
        .partitions()
        .filter_map(|(topic_id, p)| {
            let preferred = *p.replicas.first()?;
            let movable = p.leader != preferred
                && p.isr.contains(&preferred)
                && image.is_eligible(preferred)
                && p.leader_epoch < i32::MAX;
            movable.then_some(Command::ChangePartition {
                topic_id,
                partition: p.partition,
                expected_partition_epoch: p.partition_epoch,
                leader: Some(preferred),
                isr: None,
            })
        })
        .take(ELECTIONS_PER_ROUND_MAX)
        .collect()
}

#[cfg(test)]
pub(crate) mod tests;

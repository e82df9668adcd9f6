//! The controller runtime: runs meta's pure [`Controller`] on the chain leader and serves the
//! controller RPCs (registration, heartbeats, producer-id blocks, ISR changes from partition
//! leaders (`alter_partition`), forwarded admin requests).
//!
//! Owns: when this node is the active controller (chain leader whose image has applied its
//! own term's first block), the controller's soft state (broker sessions), the timer that
//! fences silent brokers, reporting control connections their peer closed to the pure
//! controller (Josefine's session-close rule, `broker.session.close.grace.ms`: a killed
//! broker is fenced after that grace instead of the whole session timeout), and turning each
//! decision into one chain proposal answered only once applied. Must never: decide anything itself (every decision is the pure controller's
//! or an admin handler's, re-validated by `Image::apply`), propose while not the chain leader,
//! or hold the controller lock while waiting on anything but its own proposal.
//!
//! Every node runs this (every node is a voter); at most one is active at a time, and one
//! that lost the chain stops at once (its proposals would fail anyway). Requests that reach
//! an inactive node answer NOT_CONTROLLER, which the caller's client retries at the new leader.

mod alter_partition;
pub mod forward;
pub mod lifecycle;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use josefine_meta::controller::{
    unclean_elections, ConnectionId, Controller, ControllerSettings, Heartbeat, RegisterDecision,
    Registration,
};
use josefine_meta::{Applied, Command, MetaError};
use kafka_protocol::messages::{
    AllocateProducerIdsRequest, AllocateProducerIdsResponse, BrokerHeartbeatRequest,
    BrokerHeartbeatResponse, BrokerRegistrationRequest, BrokerRegistrationResponse, RequestKind,
    ResponseKind,
};
use tokio::sync::{Mutex, Notify};
use tracing::{info, warn};

use crate::broker::Broker;
use crate::clock::now_ms;
use crate::control::{BoxFuture, ControlAnswer, ControlHandler};
use crate::handlers::code;

/// Kafka's NOT_CONTROLLER: the caller retries at the chain leader.
pub const NOT_CONTROLLER: i16 = 41;
/// Kafka's REQUEST_TIMED_OUT: a proposal whose outcome is unknown.
pub const REQUEST_TIMED_OUT: i16 = 7;
/// Kafka's INCONSISTENT_CLUSTER_ID.
pub const INCONSISTENT_CLUSTER_ID: i16 = 104;

/// The controller side of one node.
pub struct ControllerRuntime {
    settings: ControllerSettings,
    voter_ids: Vec<i32>,
    /// `Some` while this node is the active controller.
    active: Mutex<Option<Controller>>,
    /// Mirrors `active.is_some()` for lock-free checks by the request path.
    is_active: AtomicBool,
    /// Tests that stage partition states by hand (a leaderless partition, say) pause the
    /// timer's decisions, which would otherwise repair them at once.
    timer_paused: AtomicBool,
    /// Wakes the timer task when a deadline came nearer (a session connection closed).
    wake: Notify,
}

impl ControllerRuntime {
    pub fn new(settings: ControllerSettings, voter_ids: Vec<i32>) -> ControllerRuntime {
        ControllerRuntime {
            settings,
            voter_ids,
            active: Mutex::new(None),
            is_active: AtomicBool::new(false),
            timer_paused: AtomicBool::new(false),
            wake: Notify::new(),
        }
    }

    /// Stops (or resumes) the timer's decisions (session expiry). For tests that
    /// stage partition states by hand; RPCs are still served.
    pub fn pause_timer(&self, paused: bool) {
        self.timer_paused.store(paused, Ordering::Release);
    }

    /// True while this node is the active controller.
    pub fn is_active(&self) -> bool {
        self.is_active.load(Ordering::Acquire)
    }

    /// Serves one controller RPC (from a peer over JCTRL001 `connection`, or from this node
    /// itself: `None`).
    pub async fn serve(
        broker: &Arc<Broker>,
        version: i16,
        request: RequestKind,
        connection: Option<ConnectionId>,
    ) -> ResponseKind {
        let rt = &broker.controller;
        match request {
            RequestKind::BrokerRegistration(r) => {
                ResponseKind::BrokerRegistration(rt.register(broker, r).await)
            }
            RequestKind::BrokerHeartbeat(r) => {
                ResponseKind::BrokerHeartbeat(rt.heartbeat(broker, r, connection).await)
            }
            RequestKind::AllocateProducerIds(r) => {
                ResponseKind::AllocateProducerIds(rt.allocate_producer_ids(broker, r).await)
            }
            RequestKind::AlterPartition(r) => {
                ResponseKind::AlterPartition(rt.alter_partition(broker, r).await)
            }
            admin => {
                if !rt.is_active() {
                    return forward::not_controller_response(&admin);
                }
                forward::serve_admin_locally(broker, version, admin).await
            }
        }
    }

    async fn register(
        &self,
        broker: &Arc<Broker>,
        r: BrokerRegistrationRequest,
    ) -> BrokerRegistrationResponse {
        let answer = |error_code: i16, epoch: i64| {
            BrokerRegistrationResponse::default()
                .with_error_code(error_code)
                .with_broker_epoch(epoch)
        };
        let mut guard = self.active.lock().await;
        let Some(controller) = guard.as_mut() else {
            return answer(NOT_CONTROLLER, -1);
        };
        let image = broker.metadata.image();
        if image.cluster_id.as_deref() != Some(r.cluster_id.as_str()) {
            warn!(
                broker = r.broker_id.0,
                theirs = %r.cluster_id.as_str(),
                ours = image.cluster_id.as_deref().unwrap_or(""),
                "refused a registration from another cluster"
            );
            return answer(INCONSISTENT_CLUSTER_ID, -1);
        }
        let Some(listener) = r.listeners.first() else {
            return answer(code::INVALID_REQUEST, -1);
        };
        // The broker lists its inter-broker listener first: its endpoint is what replicas dial.
        let registration = Registration {
            node_id: r.broker_id.0,
            incarnation_id: r.incarnation_id.as_u128(),
            host: listener.host.to_string(),
            port: i32::from(listener.port),
            rack: r.rack.as_ref().map(|s| s.to_string()),
            listeners: r
                .listeners
                .iter()
                .map(|l| josefine_meta::ListenerEndpoint {
                    name: l.name.to_string(),
                    host: l.host.to_string(),
                    port: i32::from(l.port),
                    security_protocol: l.security_protocol,
                })
                .collect(),
        };
        match controller.register(&image, registration, &self.voter_ids, now_ms() as u64) {
            Ok(RegisterDecision::Existing { epoch }) => answer(code::NONE, epoch),
            Ok(RegisterDecision::Propose(cmd)) => match propose(broker, cmd).await {
                Ok(applied) => match registered_epoch(&applied) {
                    Some(epoch) => {
                        info!(broker = r.broker_id.0, epoch, "broker registered (fenced)");
                        answer(code::NONE, epoch)
                    }
                    None => answer(code::UNKNOWN_SERVER_ERROR, -1),
                },
                Err(e) => answer(e, -1),
            },
            Err(e) => answer(meta_code(&e), -1),
        }
    }

    async fn heartbeat(
        &self,
        broker: &Arc<Broker>,
        r: BrokerHeartbeatRequest,
        connection: Option<ConnectionId>,
    ) -> BrokerHeartbeatResponse {
        let mut guard = self.active.lock().await;
        let Some(controller) = guard.as_mut() else {
            return BrokerHeartbeatResponse::default()
                .with_error_code(NOT_CONTROLLER)
                .with_is_fenced(true);
        };
        let image = broker.metadata.image();
        let request = Heartbeat {
            node_id: r.broker_id.0,
            broker_epoch: r.broker_epoch,
            current_position: r.current_metadata_offset.max(0) as u64,
            want_fence: r.want_fence,
            want_shutdown: r.want_shut_down,
        };
        let now = now_ms() as u64;
        let (reply, cmd) = match connection {
            Some(c) => controller.heartbeat_on(&image, request, c, now),
            None => controller.heartbeat(&image, request, now),
        };
        let mut response = BrokerHeartbeatResponse::default()
            .with_error_code(reply.error.as_ref().map_or(code::NONE, meta_code))
            .with_is_caught_up(reply.is_caught_up)
            .with_is_fenced(reply.is_fenced)
            .with_should_shut_down(reply.should_shut_down);
        if let Some(cmd) = cmd {
            if let Err(e) = propose(broker, cmd).await {
                // The broker heartbeats again; the decision is recomputed then.
                response = response.with_error_code(e);
            }
        }
        response
    }

    /// A peer closed control connection `connection`: when it carried a broker's session, that
    /// broker is fenced after `broker.session.close.grace.ms` unless it heartbeats again.
    async fn connection_closed(&self, connection: ConnectionId) {
        let mut guard = self.active.lock().await;
        let Some(controller) = guard.as_mut() else {
            return;
        };
        if let Some(node_id) = controller.connection_closed(connection, now_ms() as u64) {
            info!(
                broker = node_id,
                grace_ms = self.settings.session_close_grace_ms,
                "the broker's session connection was closed by its end; fencing it after the grace unless it heartbeats again"
            );
            self.wake.notify_one();
        }
    }

    async fn allocate_producer_ids(
        &self,
        broker: &Arc<Broker>,
        r: AllocateProducerIdsRequest,
    ) -> AllocateProducerIdsResponse {
        let answer =
            |error_code: i16| AllocateProducerIdsResponse::default().with_error_code(error_code);
        let guard = self.active.lock().await;
        let Some(controller) = guard.as_ref() else {
            return answer(NOT_CONTROLLER);
        };
        let image = broker.metadata.image();
        let cmd = match controller.allocate_producer_ids(&image, r.broker_id.0, r.broker_epoch) {
            Ok(cmd) => cmd,
            Err(e) => return answer(meta_code(&e)),
        };
        match propose(broker, cmd).await {
            Ok(Applied::ProducerIdsAllocated {
                first_id, count, ..
            }) => answer(code::NONE)
                .with_producer_id_start(first_id.into())
                .with_producer_id_len(count as i32),
            Ok(other) => {
                warn!("AllocateProducerIds applied as {other:?}");
                answer(code::UNKNOWN_SERVER_ERROR)
            }
            Err(e) => answer(e),
        }
    }

    /// Activates or deactivates with the chain leadership and fences silent brokers; runs
    /// until the broker stops.
    pub async fn run(broker: Arc<Broker>, mut stop: tokio::sync::watch::Receiver<bool>) {
        let rt = &broker.controller;
        let mut chain = broker.metadata.watch_chain_status();
        let mut images = broker.metadata.subscribe_image();
        loop {
            let leads = chain.borrow_and_update().leader == Some(broker.config.node_id as u64);
            if leads && !rt.is_active() {
                rt.try_activate(&broker).await;
            } else if !leads && rt.is_active() {
                rt.deactivate().await;
            }
            if rt.is_active() {
                rt.tick(&broker).await;
            }
            let wait_ms = rt.next_wake_ms().await;
            tokio::select! {
                _ = stop.changed() => return,
                _ = chain.changed() => {}
                // A caught-up image may be what activation waits for.
                _ = images.changed(), if leads && !rt.is_active() => {}
                _ = tokio::time::sleep(Duration::from_millis(wait_ms)) => {}
                _ = rt.wake.notified() => {}
            }
        }
    }

    /// Becomes the active controller once this node's image has applied everything committed
    /// before its term (the chain leader commits a block of its own term first, so waiting for
    /// the commit point is enough), and sets the cluster id if the chain has none.
    async fn try_activate(&self, broker: &Arc<Broker>) {
        let status = broker.metadata.chain_status();
        let image = broker.metadata.image();
        if status.commit.term != status.term || image.position < status.commit.height {
            return;
        }
        let mut guard = self.active.lock().await;
        if guard.is_some() {
            return;
        }
        if image.cluster_id.is_none() {
            let cluster_id = broker
                .config
                .broker
                .cluster_id
                .clone()
                .unwrap_or_else(crate::broker::new_cluster_id);
            if let Err(e) = broker
                .metadata
                .propose(Command::InitCluster { cluster_id })
                .await
            {
                warn!("setting the cluster id failed ({e}); trying again");
                return;
            }
        }
        let image = broker.metadata.image();
        let now = now_ms() as u64;
        let mut controller = Controller::activate(&image, now, self.settings);
        // Nodes that closed their chain connection to this one (a killed process: typically
        // the old controller) and have not reconnected: fenced after the session-close grace
        // unless they heartbeat (no broker has a session connection to this controller yet).
        let me = broker.config.node_id;
        for &node in self.voter_ids.iter().filter(|n| **n != me) {
            let closed = crate::raft::transport::chain_peer_closed_at(me as u64, node as u64);
            let Some(closed) =
                closed.filter(|t| now.saturating_sub(*t) <= self.settings.session_timeout_ms)
            else {
                continue;
            };
            if controller.process_closed(node, closed, now) {
                info!(
                    broker = node,
                    closed_ms_ago = now.saturating_sub(closed),
                    "the node closed its chain connection before this activation; fencing it after the grace unless it heartbeats"
                );
            }
        }
        *guard = Some(controller);
        self.is_active.store(true, Ordering::Release);
        info!(
            term = status.term,
            position = image.position,
            "controller active: this node leads the chain"
        );
    }

    async fn deactivate(&self) {
        let mut guard = self.active.lock().await;
        if guard.take().is_some() {
            info!("controller inactive: this node no longer leads the chain");
        }
        self.is_active.store(false, Ordering::Release);
    }

    /// Fences brokers whose session expired; the periodic unclean election and preferred-leader
    /// rounds.
    async fn tick(&self, broker: &Arc<Broker>) {
        if self.timer_paused.load(Ordering::Acquire) {
            return;
        }
        let mut guard = self.active.lock().await;
        let Some(controller) = guard.as_mut() else {
            return;
        };
        let image = broker.metadata.image();
        for cmd in controller.tick(&image, now_ms() as u64) {
            info!("controller: {}", describe(&cmd));
            if let Err(e) = propose(broker, cmd).await {
                warn!(
                    error = e,
                    "controller proposal failed; retried at the next tick"
                );
                break;
            }
        }
    }

    async fn next_wake_ms(&self) -> u64 {
        let guard = self.active.lock().await;
        let now = now_ms() as u64;
        let next = guard
            .as_ref()
            .and_then(Controller::next_deadline_ms)
            .map_or(CONTROLLER_IDLE_WAKE_MS, |d| d.saturating_sub(now));
        next.clamp(1, CONTROLLER_IDLE_WAKE_MS)
    }
}

/// The longest the controller task sleeps with nothing due (it also wakes on chain changes).
const CONTROLLER_IDLE_WAKE_MS: u64 = 250;

/// A short log line for a controller decision.
fn describe(cmd: &Command) -> String {
    match cmd {
        Command::Batch(all) => {
            let parts: Vec<String> = all.iter().map(describe).collect();
            parts.join(", ")
        }
        Command::FenceBroker { node_id, epoch } => {
            format!("fence broker {node_id} (epoch {epoch})")
        }
        Command::UnfenceBroker { node_id, epoch } => {
            format!("unfence broker {node_id} (epoch {epoch})")
        }
        Command::ChangePartition {
            topic_id,
            partition,
            leader,
            ..
        } => format!("partition {topic_id}-{partition} leader {leader:?}"),
        other => format!("{other:?}"),
    }
}

/// Proposes on the chain and waits for this node's image to apply it; errors as Kafka codes.
/// An unclean election in it is logged as a warning once applied (Kafka logs it too: writes
/// the old ISR acknowledged may be gone).
async fn propose(broker: &Broker, cmd: Command) -> Result<Applied, i16> {
    let unclean = unclean_elections(&broker.metadata.image(), &cmd);
    let applied = broker
        .metadata
        .propose(cmd)
        .await
        .map_err(|e| meta_code(&e))?;
    for (topic_id, partition, leader) in unclean {
        warn!(
            %topic_id,
            partition,
            leader,
            "unclean leader election: a replica outside the ISR leads; acknowledged writes may be lost"
        );
    }
    Ok(applied)
}

fn meta_code(e: &MetaError) -> i16 {
    match e.kafka_error_code() {
        -1 => code::UNKNOWN_SERVER_ERROR,
        c => c,
    }
}

fn registered_epoch(applied: &Applied) -> Option<i64> {
    match applied {
        Applied::BrokerRegistered { epoch, .. } => Some(*epoch),
        Applied::Batch(all) => all.iter().find_map(registered_epoch),
        _ => None,
    }
}

/// The JCTRL001 service: peers' controller RPCs, answered with this node's image position.
pub struct ControlService {
    pub broker: Arc<Broker>,
}

impl ControlHandler for ControlService {
    fn handle(
        &self,
        _peer: std::net::SocketAddr,
        connection: u64,
        header: kafka_protocol::messages::RequestHeader,
        request: RequestKind,
    ) -> BoxFuture<'static, ControlAnswer> {
        let broker = self.broker.clone();
        Box::pin(async move {
            let response = ControllerRuntime::serve(
                &broker,
                header.request_api_version,
                request,
                Some(connection),
            )
            .await;
            ControlAnswer::Respond {
                response,
                metadata_position: broker.metadata.image().position,
            }
        })
    }

    fn closed_by_peer(&self, _peer: std::net::SocketAddr, connection: u64) {
        let broker = self.broker.clone();
        tokio::spawn(async move { broker.controller.connection_closed(connection).await });
    }
}

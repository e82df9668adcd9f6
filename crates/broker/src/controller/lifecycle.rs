//! The broker side of membership: register with the controller, heartbeat, and shut down in a
//! controlled way.
//!
//! Owns: this process's incarnation id and broker epoch, the heartbeat loop (every
//! `broker.heartbeat.interval.ms`; sooner while waiting to be unfenced or to be let go), and
//! the wish to shut down. Must never: change the image (only the controller's commands do), or
//! trust a heartbeat answer over the image: whether this broker is fenced, and what it leads,
//! is read from the applied image; answers are hints about when to ask again.

use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use kafka_protocol::messages::broker_registration_request::Listener;
use kafka_protocol::messages::{
    BrokerHeartbeatRequest, BrokerId, BrokerRegistrationRequest, RequestKind, ResponseKind,
};
use kafka_protocol::protocol::StrBytes;
use tokio::sync::watch;
use tracing::{info, warn};
use uuid::Uuid;

use super::forward::call_controller;
use super::INCONSISTENT_CLUSTER_ID;
use crate::broker::Broker;
use crate::handlers::code;

/// Versions of the membership RPCs this broker sends (the newest kafka-protocol encodes).
const REGISTRATION_VERSION: i16 = 3;
const HEARTBEAT_VERSION: i16 = 1;
/// Kafka's STALE_BROKER_EPOCH and BROKER_ID_NOT_REGISTERED: register again.
const STALE_BROKER_EPOCH: i16 = 77;
const BROKER_ID_NOT_REGISTERED: i16 = 102;
/// Kafka's DUPLICATE_BROKER_REGISTRATION: an older incarnation still holds the node id.
const DUPLICATE_BROKER_REGISTRATION: i16 = 101;
/// Heartbeat pause while an answer is awaited quickly: fenced and caught up, or shutting down.
pub const HEARTBEAT_FAST_MS: u64 = 50;
/// Pause between registration attempts while no controller answers.
const REGISTER_RETRY_MS: u64 = 200;

/// What the lifecycle task knows (hints; the image is the authority).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LifecycleState {
    /// The broker epoch of this incarnation's registration, once registered.
    pub epoch: Option<i64>,
    /// The controller let this broker go (controlled shutdown done).
    pub should_shut_down: bool,
}

/// This broker's membership: incarnation, state, and the wish to shut down.
pub struct Lifecycle {
    pub incarnation_id: Uuid,
    state: watch::Sender<LifecycleState>,
    want_shutdown: watch::Sender<bool>,
}

impl Default for Lifecycle {
    fn default() -> Self {
        Lifecycle {
            incarnation_id: Uuid::new_v4(),
            state: watch::channel(LifecycleState::default()).0,
            want_shutdown: watch::channel(false).0,
        }
    }
}

impl Lifecycle {
    pub fn state(&self) -> LifecycleState {
        *self.state.borrow()
    }

    /// True once the image shows this incarnation registered and unfenced.
    pub fn is_unfenced(&self, broker: &Broker) -> bool {
        let image = broker.metadata.image();
        let Some(epoch) = self.state().epoch else {
            return false;
        };
        image
            .brokers
            .get(&broker.config.node_id)
            .is_some_and(|b| b.epoch == epoch && !b.fenced)
    }

    /// Waits until the image shows this broker registered and unfenced (start-up: Kafka opens
    /// its client listener only then, too).
    pub async fn wait_unfenced(&self, broker: &Broker) {
        let mut images = broker.metadata.subscribe_image();
        let mut states = self.state.subscribe();
        let mut last_log = Instant::now();
        while !self.is_unfenced(broker) {
            tokio::select! {
                _ = images.changed() => {}
                _ = states.changed() => {}
                _ = tokio::time::sleep(Duration::from_secs(5)) => {}
            }
            if last_log.elapsed() >= Duration::from_secs(5) {
                info!("waiting to be registered and unfenced by the controller (is a quorum of voters up?)");
                last_log = Instant::now();
            }
        }
    }

    /// Controlled shutdown: asks the controller to move leadership off this broker and waits
    /// until it lets the broker go, at most `timeout`. Returns whether it did.
    pub async fn controlled_shutdown(&self, timeout: Duration) -> bool {
        self.want_shutdown.send_replace(true);
        let mut states = self.state.subscribe();
        let wait = async {
            while !states.borrow_and_update().should_shut_down {
                if states.changed().await.is_err() {
                    return false;
                }
            }
            true
        };
        tokio::time::timeout(timeout, wait).await.unwrap_or(false)
    }

    /// Registers, then heartbeats until `stop`; registers again when the controller no longer
    /// knows this registration.
    pub async fn run(broker: Arc<Broker>, mut stop: watch::Receiver<bool>) {
        let me = &broker.lifecycle;
        let mut shutdown_wish = me.want_shutdown.subscribe();
        loop {
            let epoch = tokio::select! {
                e = me.register(&broker) => e,
                _ = stop.changed() => return,
            };
            me.state.send_modify(|s| s.epoch = Some(epoch));
            loop {
                let pause = tokio::select! {
                    p = me.heartbeat(&broker, epoch) => p,
                    _ = stop.changed() => return,
                };
                let Some(pause) = pause else { break };
                tokio::select! {
                    _ = tokio::time::sleep(pause) => {}
                    _ = stop.changed() => return,
                    _ = shutdown_wish.changed() => {}
                }
            }
        }
    }

    async fn register(&self, broker: &Arc<Broker>) -> i64 {
        let mut images = broker.metadata.subscribe_image();
        let mut waiting_for_old_session = false;
        loop {
            // The cluster id comes from the chain: wait until this node has applied it.
            let cluster_id = images.borrow_and_update().cluster_id.clone();
            let Some(cluster_id) = cluster_id else {
                let _ = tokio::time::timeout(
                    Duration::from_millis(REGISTER_RETRY_MS),
                    images.changed(),
                )
                .await;
                continue;
            };
            let request = BrokerRegistrationRequest::default()
                .with_broker_id(BrokerId(broker.config.node_id))
                .with_cluster_id(StrBytes::from_string(cluster_id))
                .with_incarnation_id(self.incarnation_id)
                .with_listeners(
                    broker
                        .listeners
                        .iter()
                        .map(|l| {
                            Listener::default()
                                .with_name(StrBytes::from_string(l.name.clone()))
                                .with_host(StrBytes::from_string(l.host.clone()))
                                .with_port(l.port as u16)
                                .with_security_protocol(l.security_protocol)
                        })
                        .collect(),
                )
                .with_rack(broker.config.rack.clone().map(StrBytes::from_string))
                .with_previous_broker_epoch(-1);
            let deadline = Instant::now() + self.rpc_timeout(broker);
            match call_controller(
                broker,
                REGISTRATION_VERSION,
                RequestKind::BrokerRegistration(request),
                deadline,
            )
            .await
            {
                Ok((ResponseKind::BrokerRegistration(r), _)) if r.error_code == code::NONE => {
                    info!(epoch = r.broker_epoch, incarnation = %self.incarnation_id, "registered with the controller");
                    return r.broker_epoch;
                }
                Ok((ResponseKind::BrokerRegistration(r), _)) => {
                    if r.error_code == INCONSISTENT_CLUSTER_ID {
                        tracing::error!("the controller belongs to another cluster; check --voters and the data directory");
                    } else if r.error_code == DUPLICATE_BROKER_REGISTRATION {
                        // Kafka's rule: the previous incarnation (a crashed process, or one
                        // still running with this node id) keeps the id until its session
                        // expires (`broker.session.timeout.ms`) and the controller fences it.
                        if !waiting_for_old_session {
                            warn!("another incarnation of this node id is registered with a live session; retrying until it expires");
                            waiting_for_old_session = true;
                        }
                    } else {
                        warn!(error = r.error_code, "registration refused; trying again");
                    }
                }
                Ok((other, _)) => warn!("registration answered with {other:?}"),
                Err(e) => info!("registration not answered yet: {e}"),
            }
            tokio::time::sleep(Duration::from_millis(REGISTER_RETRY_MS)).await;
        }
    }

    /// Sends one heartbeat; returns when to send the next, or None to register again.
    async fn heartbeat(&self, broker: &Arc<Broker>, epoch: i64) -> Option<Duration> {
        let interval = Duration::from_millis(broker.config.broker.broker_heartbeat_interval_ms);
        let want_shutdown = *self.want_shutdown.borrow();
        let request = BrokerHeartbeatRequest::default()
            .with_broker_id(BrokerId(broker.config.node_id))
            .with_broker_epoch(epoch)
            .with_current_metadata_offset(broker.metadata.image().position as i64)
            .with_want_fence(false)
            .with_want_shut_down(want_shutdown);
        let deadline = Instant::now() + self.rpc_timeout(broker);
        let answer = call_controller(
            broker,
            HEARTBEAT_VERSION,
            RequestKind::BrokerHeartbeat(request),
            deadline,
        )
        .await;
        let fast = Duration::from_millis(HEARTBEAT_FAST_MS).min(interval);
        match answer {
            Ok((ResponseKind::BrokerHeartbeat(r), _)) => match r.error_code {
                code::NONE => {
                    if r.should_shut_down {
                        self.state.send_modify(|s| s.should_shut_down = true);
                    }
                    // Unfencing waits for this broker's image: ask again soon.
                    let soon = want_shutdown || (r.is_fenced && !r.should_shut_down);
                    Some(if soon { fast } else { interval })
                }
                STALE_BROKER_EPOCH | BROKER_ID_NOT_REGISTERED => {
                    warn!(
                        error = r.error_code,
                        epoch,
                        "the controller no longer knows this registration; registering again"
                    );
                    None
                }
                e => {
                    info!(error = e, "heartbeat refused; trying again");
                    Some(fast.max(Duration::from_millis(REGISTER_RETRY_MS)))
                }
            },
            Ok((other, _)) => {
                warn!("heartbeat answered with {other:?}");
                Some(interval)
            }
            Err(e) => {
                info!("heartbeat not answered: {e}");
                Some(Duration::from_millis(REGISTER_RETRY_MS))
            }
        }
    }

    /// One RPC may take at most this long: a session's worth, so a slow answer cannot make the
    /// broker miss its own session.
    fn rpc_timeout(&self, broker: &Broker) -> Duration {
        Duration::from_millis(
            broker
                .config
                .broker
                .broker_heartbeat_interval_ms
                .max(HEARTBEAT_FAST_MS),
        )
    }
}

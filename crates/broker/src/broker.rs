//! The broker's shared state: configuration, metadata, hosted partitions, producer ids, and the
//! append notifications fetch long-polls wait on.
//!
//! Owns: the start-up sequence (see [`Broker::start`]) and the helpers handlers share.
//! Must never: hold a lock across an await, or run file I/O that can wait on the disk on an
//! async worker (fsync, directory scans, large reads and writes: see [`Broker::blocking`]). The
//! one exception is Produce's append of at most 1 MiB that needs no fsync (`handlers::produce`):
//! a page-cache write of microseconds, cheaper than the hand-off to the blocking pool
//! (measured: 1.48 -> 1.35 CPU s/GB together with the other session-2 changes in
//! BENCHMARKS.md).

use std::sync::atomic::Ordering;
use std::sync::Arc;

use std::time::Duration;

use josefine_meta::controller::ControllerSettings;
use josefine_meta::MetaError;
use tokio::sync::{watch, Mutex, Semaphore};
use tracing::{info, warn};

use crate::config::Config;
use crate::control::status::render_status;
use crate::control::{ControlClient, ControlServer, StatusSource};
use crate::controller::lifecycle::Lifecycle;
use crate::controller::{ControlService, ControllerRuntime};
use crate::error::BrokerError;
use crate::limits;
use crate::maintenance::{Maintenance, MaintenanceSettings};
use crate::metadata::{import, MetadataStore, StoreSettings};
use crate::partitions::PartitionRegistry;
use crate::raft::transport;

/// Producer ids this broker may hand out without asking the controller.
#[derive(Debug, Default)]
struct ProducerIdBlock {
    next: i64,
    end: i64,
    /// The next block, asked for before this one runs out.
    prefetched: Option<(i64, i64)>,
    prefetching: bool,
}

/// Shared broker state.
pub struct Broker {
    pub config: Config,
    /// The inter-broker listener's advertised endpoint (`listeners[0]`).
    pub advertised_host: String,
    pub advertised_port: i32,
    /// Every advertised listener as registered, the inter-broker one first.
    pub listeners: Vec<josefine_meta::ListenerEndpoint>,
    pub metadata: MetadataStore,
    pub partitions: Arc<PartitionRegistry>,
    /// The controller side of this node (active only while it leads the chain).
    pub controller: ControllerRuntime,
    /// This broker's registration, heartbeats and controlled shutdown.
    pub lifecycle: Lifecycle,
    /// Calls to the controller on another node (JCTRL001 on its raft address).
    pub control_client: ControlClient,
    producer_ids: Mutex<ProducerIdBlock>,
    /// Bumped after every successful append; fetch long-polls wait for it to change.
    appends: watch::Sender<u64>,
    /// Bounds parked fetches ([`limits::FETCH_WAITERS_MAX`]).
    pub fetch_waiters: Semaphore,
    io_permits: Arc<Semaphore>,
    /// Background retention and cleaning ([`crate::maintenance`]); taken and stopped at shutdown.
    maintenance: std::sync::Mutex<Option<Maintenance>>,
    /// The group coordinator runtime ([`crate::groups`]), set once at start-up.
    groups: std::sync::OnceLock<crate::groups::Groups>,
    /// The transaction coordinator runtime ([`crate::txn`]), set once at start-up.
    txn: std::sync::OnceLock<crate::txn::Txn>,
    /// Stops the controller, lifecycle and control-server tasks.
    tasks_stop: watch::Sender<bool>,
    /// Every metric of this process ([`crate::metrics`]).
    pub metrics: Arc<crate::metrics::Metrics>,
}

impl Broker {
    /// Starts the broker on its data directory, in this order:
    /// 1. scan the data directory's partition logs (none is opened yet);
    /// 2. open the chain (`<data-dir>/chain`), bind the raft address, start the applier: the
    ///    image starts from the chain's snapshot and follows every committed block;
    /// 3. wait until the image has caught up with the chain (a one-voter chain elects itself
    ///    at its first tick and commits everything it holds);
    /// 4. import a legacy `metadata.log` once, if there is one;
    /// 5. go live: open the logs the image names; on a one-voter chain (caught up for certain)
    ///    rename the ones it does not name to `-stray` (B1: never before, never deleted; on a
    ///    multi-voter chain that waits until step 6 has unfenced this broker);
    /// 6. serve the raft address's controller RPCs, run the controller (active while this node
    ///    leads the chain), register with the controller and heartbeat; wait until the image
    ///    shows this broker unfenced (Kafka opens its client listener only then, too);
    /// 7. start the group coordinator and background maintenance.
    ///
    /// A single node goes through the same steps: it is a one-voter chain whose controller is
    /// itself.
    pub async fn start(
        config: Config,
        listeners: Vec<josefine_meta::ListenerEndpoint>,
        metrics: Arc<crate::metrics::Metrics>,
    ) -> Result<Arc<Broker>, BrokerError> {
        std::fs::create_dir_all(&config.data_dir)?;
        let data_dir = config.data_dir.clone();
        let node_id = config.node_id;
        let settings = config.broker.clone();
        let partitions = tokio::task::spawn_blocking(move || {
            PartitionRegistry::open(&data_dir, node_id, settings).map(Arc::new)
        })
        .await
        .expect("start-up task panicked")?;
        let (non_chain_tx, non_chain_rx) = transport::non_chain_channel();
        let store_settings = StoreSettings {
            non_chain: Some(non_chain_tx),
            ..StoreSettings::from_config(&config)
        };
        let metadata = MetadataStore::open(store_settings, partitions.clone()).await?;
        metadata.wait_caught_up().await?;
        metrics.ready.image_applied.store(true, Ordering::Relaxed);
        if import::pending(&config.data_dir) {
            import::import_legacy_log(&metadata, &config.data_dir).await?;
        }
        metadata.go_live(metadata.is_sole_voter()).await?;
        metrics.ready.logs_recovered.store(true, Ordering::Relaxed);
        let voter_ids: Vec<i32> = config
            .voter_addrs
            .iter()
            .map(|(id, _)| *id as i32)
            .collect();
        let controller_settings = ControllerSettings {
            session_timeout_ms: config.broker.broker_session_timeout_ms,
            heartbeat_interval_ms: config.broker.broker_heartbeat_interval_ms,
            session_close_grace_ms: config.broker.broker_session_close_grace_ms,
            producer_id_block_size: limits::PRODUCER_ID_BLOCK_SIZE,
            unclean_leader_election_enable: config.broker.unclean_leader_election_enable,
            unclean_leader_election_interval_ms: config.broker.unclean_leader_election_interval_ms,
            auto_leader_rebalance_enable: config.broker.auto_leader_rebalance_enable,
            leader_imbalance_check_interval_ms: config
                .broker
                .leader_imbalance_check_interval_seconds
                .saturating_mul(1000),
        };
        let grace = controller_settings.session_close_grace_ms;
        if grace != 0 && grace <= controller_settings.heartbeat_interval_ms {
            tracing::warn!(
                grace_ms = grace,
                heartbeat_interval_ms = controller_settings.heartbeat_interval_ms,
                "broker.session.close.grace.ms is not above broker.heartbeat.interval.ms: a live broker that reopens its controller connection may be fenced"
            );
        }
        let control_client = ControlClient::new(
            &format!("josefine-{}", config.node_id),
            &config.voter_addrs,
            metadata.watch_chain_status(),
            Duration::from_millis(config.broker.broker_heartbeat_interval_ms.max(1_000)),
        )
        .with_tls(config.security.raft_tls.clone());
        let broker = Arc::new(Broker {
            advertised_host: listeners[0].host.clone(),
            advertised_port: listeners[0].port,
            listeners,
            controller: ControllerRuntime::new(controller_settings, voter_ids),
            lifecycle: Lifecycle::default(),
            control_client,
            config,
            metadata,
            partitions,
            producer_ids: Mutex::new(ProducerIdBlock::default()),
            appends: watch::channel(0).0,
            fetch_waiters: Semaphore::new(limits::FETCH_WAITERS_MAX),
            io_permits: Arc::new(Semaphore::new(limits::BLOCKING_IO_IN_FLIGHT_MAX)),
            maintenance: std::sync::Mutex::new(None),
            groups: std::sync::OnceLock::new(),
            txn: std::sync::OnceLock::new(),
            tasks_stop: watch::channel(false).0,
            metrics,
        });
        let server = ControlServer::new(
            Arc::new(ControlService {
                broker: broker.clone(),
            }),
            status_source(&broker),
        );
        tokio::spawn(server.run(non_chain_rx));
        tokio::spawn(ControllerRuntime::run(
            broker.clone(),
            broker.tasks_stop.subscribe(),
        ));
        tokio::spawn(Lifecycle::run(
            broker.clone(),
            broker.tasks_stop.subscribe(),
        ));
        crate::replication::start(&broker, broker.tasks_stop.subscribe());
        broker.lifecycle.wait_unfenced(&broker).await;
        if !broker.metadata.is_sole_voter() {
            // Unfenced means the image holds everything committed before this registration: now
            // (never before, B1) logs it does not name can be set aside as strays.
            broker.metadata.go_live(true).await?;
        }
        let groups = crate::groups::Groups::start(&broker)?;
        assert!(broker.groups.set(groups).is_ok(), "groups started twice");
        let txn = crate::txn::Txn::start(&broker)?;
        assert!(broker.txn.set(txn).is_ok(), "txn started twice");
        let maintenance = Maintenance::start(
            broker.clone(),
            MaintenanceSettings::from_broker_settings(&broker.config.broker),
        )?;
        *broker.maintenance.lock().expect("maintenance lock") = Some(maintenance);
        info!(
            node_id = broker.config.node_id,
            cluster_id = broker.metadata.image().cluster_id.as_deref().unwrap_or(""),
            position = broker.metadata.position(),
            epoch = broker.lifecycle.state().epoch,
            partitions = broker.partitions.all().len(),
            "broker started"
        );
        Ok(broker)
    }

    /// Runs blocking file I/O on the blocking pool, at most
    /// [`limits::BLOCKING_IO_IN_FLIGHT_MAX`] at a time.
    pub async fn blocking<F, R>(&self, f: F) -> R
    where
        F: FnOnce() -> R + Send + 'static,
        R: Send + 'static,
    {
        let queued = self.metrics.blocking_pool.queued();
        let permit = self
            .io_permits
            .clone()
            .acquire_owned()
            .await
            .expect("io semaphore never closes");
        drop(queued);
        let metrics = self.metrics.clone();
        let result = tokio::task::spawn_blocking(move || {
            let _in_use = metrics.blocking_pool.in_use();
            let r = f();
            drop(permit);
            r
        })
        .await;
        match result {
            Ok(r) => r,
            // Propagate a panic in storage code: it means a broken invariant.
            Err(e) => std::panic::resume_unwind(e.into_panic()),
        }
    }

    /// Tells fetch long-polls that data was appended.
    pub fn notify_append(&self) {
        self.appends.send_modify(|n| *n = n.wrapping_add(1));
    }

    /// A receiver that changes on every append.
    pub fn subscribe_appends(&self) -> watch::Receiver<u64> {
        self.appends.subscribe()
    }

    /// A new producer id from this broker's block, asking the controller for the next block
    /// (AllocateProducerIds) when it runs out: blocks are disjoint cluster-wide because only the
    /// controller hands them out.
    pub async fn allocate_producer_id(self: &Arc<Self>) -> Result<i64, MetaError> {
        let mut block = self.producer_ids.lock().await;
        if block.next >= block.end {
            let (first_id, count) = match block.prefetched.take() {
                Some(b) => b,
                None => self.fetch_producer_id_block().await?,
            };
            block.next = first_id;
            block.end = first_id + count;
        }
        let id = block.next;
        block.next += 1;
        if block.end - block.next <= limits::PRODUCER_ID_PREFETCH_REMAINING
            && block.prefetched.is_none()
            && !block.prefetching
        {
            block.prefetching = true;
            let broker = self.clone();
            tokio::spawn(async move {
                let next = broker.fetch_producer_id_block().await;
                let mut block = broker.producer_ids.lock().await;
                block.prefetching = false;
                match next {
                    Ok(b) => block.prefetched = Some(b),
                    // Asked for again when the block runs out.
                    Err(e) => warn!("prefetching a producer id block failed: {e}"),
                }
            });
        }
        Ok(id)
    }

    /// A fresh block of producer ids `(first, count)` from the controller (also the
    /// transaction coordinator's source).
    pub(crate) async fn fetch_producer_id_block(self: &Arc<Self>) -> Result<(i64, i64), MetaError> {
        use kafka_protocol::messages::{
            AllocateProducerIdsRequest, BrokerId, RequestKind, ResponseKind,
        };
        let epoch = self.lifecycle.state().epoch.unwrap_or(-1);
        let request = AllocateProducerIdsRequest::default()
            .with_broker_id(BrokerId(self.config.node_id))
            .with_broker_epoch(epoch);
        let deadline = tokio::time::Instant::now()
            + Duration::from_millis(crate::controller::forward::INTERNAL_CREATE_TIMEOUT_MS);
        let answer = crate::controller::forward::call_controller(
            self,
            0,
            RequestKind::AllocateProducerIds(request),
            deadline,
        )
        .await
        .map_err(MetaError::TimedOut)?;
        match answer {
            (ResponseKind::AllocateProducerIds(r), _) if r.error_code == 0 => {
                Ok((r.producer_id_start.0, i64::from(r.producer_id_len)))
            }
            (ResponseKind::AllocateProducerIds(r), _) => Err(MetaError::TimedOut(format!(
                "the controller refused a producer id block: error {}",
                r.error_code
            ))),
            (other, _) => Err(MetaError::TimedOut(format!(
                "unexpected AllocateProducerIds answer {other:?}"
            ))),
        }
    }

    /// The group coordinator runtime.
    pub fn groups(&self) -> &crate::groups::Groups {
        self.groups
            .get()
            .expect("the group coordinator starts with the broker")
    }

    /// The transaction coordinator runtime.
    pub fn txn(&self) -> &crate::txn::Txn {
        self.txn
            .get()
            .expect("the transaction coordinator starts with the broker")
    }

    /// Clean shutdown: a controlled shutdown through the controller (leaderships move off
    /// this broker), chain leadership handed over if held, then every partition log closed.
    pub async fn shutdown(self: &Arc<Self>) {
        let session = Duration::from_millis(self.config.broker.broker_session_timeout_ms);
        if !self.lifecycle.controlled_shutdown(session).await {
            warn!(
                "the controller did not confirm the controlled shutdown in time; stopping anyway"
            );
        }
        if !self.metadata.hand_over_leadership(session).await {
            info!("chain leadership not handed over (no caught-up voter); the others will elect");
        }
        self.tasks_stop.send_replace(true);
        // No retention or cleaning step may race the logs' close.
        let maintenance = self.maintenance.lock().expect("maintenance lock").take();
        if let Some(m) = maintenance {
            let _ = tokio::task::spawn_blocking(move || m.stop()).await;
        }
        // Nor may a group coordinator append.
        if let Some(groups) = self.groups.get() {
            groups.shutdown().await;
        }
        if let Some(txn) = self.txn.get() {
            txn.shutdown().await;
        }
        // Nor may a metadata block open or delete a log: stop the chain and its applier first.
        self.metadata.shutdown().await;
        let partitions = self.partitions.clone();
        let _ = tokio::task::spawn_blocking(move || partitions.close_all()).await;
    }
}

/// The `josefine cluster-status` document of this node, rendered on the blocking pool.
fn status_source(broker: &Arc<Broker>) -> StatusSource {
    let weak = Arc::downgrade(broker);
    let me = broker.config.node_id as u64;
    Arc::new(move || match weak.upgrade() {
        Some(b) => {
            let progress = b.metadata.watch_progress().borrow().clone();
            render_status(
                me,
                &b.metadata.chain_status(),
                &progress,
                &b.metadata.image(),
            )
        }
        None => "this node is shutting down\n".to_string(),
    })
}

/// A Kafka-style cluster id: a random UUID in URL-safe base64 without padding (22 chars).
pub fn new_cluster_id() -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let v = u128::from_be_bytes(uuid::Uuid::new_v4().into_bytes());
    let mut out = Vec::with_capacity(22);
    // 128 bits = 21 full sextets plus 2 bits, which base64 pads with zeros to a 22nd sextet.
    for i in 0..22i32 {
        let shift = 128 - 6 * (i + 1);
        let sextet = if shift >= 0 {
            (v >> shift) & 0x3f
        } else {
            (v << -shift) & 0x3f
        };
        out.push(ALPHABET[sextet as usize]);
    }
    String::from_utf8(out).expect("ascii")
}

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

use std::sync::Arc;

use josefine_meta::{Applied, Command, MetaError};
use tokio::sync::{watch, Mutex, Semaphore};
use tracing::{info, warn};

use crate::config::Config;
use crate::error::BrokerError;
use crate::limits;
use crate::maintenance::{Maintenance, MaintenanceSettings};
use crate::metadata::bootstrap::{self, Endpoint};
use crate::metadata::{import, MetadataStore, StoreSettings};
use crate::partitions::PartitionRegistry;

/// Producer ids this broker may hand out without asking the metadata store.
#[derive(Debug, Default)]
struct ProducerIdBlock {
    next: i64,
    end: i64,
}

/// Shared broker state.
pub struct Broker {
    pub config: Config,
    pub advertised_host: String,
    pub advertised_port: i32,
    pub metadata: MetadataStore,
    pub partitions: Arc<PartitionRegistry>,
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
    ///    rename the ones it does not name to `-stray` (B1: never before, never deleted);
    /// 6. one-voter chain only: the bootstrap path stands in for the controller (cluster id,
    ///    registration, unfencing);
    /// 7. start the group coordinator and background maintenance.
    pub async fn start(config: Config, advertised_port: i32) -> Result<Arc<Broker>, BrokerError> {
        std::fs::create_dir_all(&config.data_dir)?;
        let data_dir = config.data_dir.clone();
        let node_id = config.node_id;
        let settings = config.broker.clone();
        let partitions = tokio::task::spawn_blocking(move || {
            PartitionRegistry::open(&data_dir, node_id, settings).map(Arc::new)
        })
        .await
        .expect("start-up task panicked")?;
        let metadata =
            MetadataStore::open(StoreSettings::from_config(&config), partitions.clone()).await?;
        metadata.wait_caught_up().await?;
        if import::pending(&config.data_dir) {
            import::import_legacy_log(&metadata, &config.data_dir).await?;
        }
        metadata.go_live(metadata.is_sole_voter()).await?;
        let broker = Arc::new(Broker {
            advertised_host: config.advertise_host.clone(),
            advertised_port,
            config,
            metadata,
            partitions,
            producer_ids: Mutex::new(ProducerIdBlock::default()),
            appends: watch::channel(0).0,
            fetch_waiters: Semaphore::new(limits::FETCH_WAITERS_MAX),
            io_permits: Arc::new(Semaphore::new(limits::BLOCKING_IO_IN_FLIGHT_MAX)),
            maintenance: std::sync::Mutex::new(None),
            groups: std::sync::OnceLock::new(),
        });
        if broker.metadata.is_sole_voter() {
            let endpoint = Endpoint {
                node_id: broker.config.node_id,
                host: broker.advertised_host.clone(),
                port: broker.advertised_port,
                rack: broker.config.rack.clone(),
            };
            let configured = broker.config.broker.cluster_id.clone();
            bootstrap::bootstrap_single_node(
                &broker.metadata,
                || configured.unwrap_or_else(new_cluster_id),
                &endpoint,
            )
            .await?;
        } else {
            warn!(
                "a multi-voter chain: cluster id and broker registration wait for the controller"
            );
        }
        let groups = crate::groups::Groups::start(&broker)?;
        assert!(broker.groups.set(groups).is_ok(), "groups started twice");
        let maintenance = Maintenance::start(
            broker.clone(),
            MaintenanceSettings::from_broker_settings(&broker.config.broker),
        )?;
        *broker.maintenance.lock().expect("maintenance lock") = Some(maintenance);
        info!(
            node_id = broker.config.node_id,
            cluster_id = broker.metadata.image().cluster_id.as_deref().unwrap_or(""),
            position = broker.metadata.position(),
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
        let permit = self
            .io_permits
            .clone()
            .acquire_owned()
            .await
            .expect("io semaphore never closes");
        let result = tokio::task::spawn_blocking(move || {
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

    /// A new producer id from this broker's block, allocating a new block through the metadata
    /// state machine when it runs out (so a cluster hands out disjoint blocks).
    pub async fn allocate_producer_id(&self) -> Result<i64, MetaError> {
        let mut block = self.producer_ids.lock().await;
        if block.next >= block.end {
            let first_id = self.metadata.image().next_producer_id;
            let cmd = Command::AllocateProducerIds {
                broker_id: self.config.node_id,
                first_id,
                count: limits::PRODUCER_ID_BLOCK_SIZE,
            };
            match self.metadata.propose(cmd).await? {
                Applied::ProducerIdsAllocated {
                    first_id, count, ..
                } => {
                    block.next = first_id;
                    block.end = first_id + count;
                }
                other => panic!("AllocateProducerIds applied as {other:?}"),
            }
        }
        let id = block.next;
        block.next += 1;
        Ok(id)
    }

    /// The group coordinator runtime.
    pub fn groups(&self) -> &crate::groups::Groups {
        self.groups
            .get()
            .expect("the group coordinator starts with the broker")
    }

    /// Clean shutdown: close every partition log.
    pub async fn shutdown(self: &Arc<Self>) {
        // No retention or cleaning step may race the logs' close.
        let maintenance = self.maintenance.lock().expect("maintenance lock").take();
        if let Some(m) = maintenance {
            let _ = tokio::task::spawn_blocking(move || m.stop()).await;
        }
        // Nor may a group coordinator append.
        if let Some(groups) = self.groups.get() {
            groups.shutdown().await;
        }
        // Nor may a metadata block open or delete a log: stop the chain and its applier first.
        self.metadata.shutdown().await;
        let partitions = self.partitions.clone();
        let _ = tokio::task::spawn_blocking(move || partitions.close_all()).await;
    }
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

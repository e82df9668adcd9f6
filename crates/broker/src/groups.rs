//! The group coordinator runtime: drives the pure `josefine_group::Coordinator` with real
//! requests, time, storage and the applied metadata image.
//!
//! Owns: the one task that owns the coordinator (every call to it happens there, in order), the
//! appender task that writes its records to `__consumer_offsets`, the loaders that replay a
//! partition of that topic into it, the choice of which partitions it serves, and the creation
//! of the topic on the first FindCoordinator. Handlers talk to it through [`Groups`]: they send
//! the decoded request and await its response, which may come much later (a JoinGroup waits for
//! the rebalance). That parks only the sending connection: connections serve one request at a
//! time, as Kafka's do, and clients expect exactly that.
//!
//! Which partitions: the coordinator of a group is the leader of its `__consumer_offsets`
//! partition, so the task follows the applied image (its watch): a partition this node starts
//! leading is loaded (its groups answer COORDINATOR_LOAD_IN_PROGRESS meanwhile), one it stops
//! leading is unloaded (NOT_COORDINATOR), and one whose leader epoch changed while led here is
//! unloaded and loaded again, since another leader may have written to it in between. A load
//! starts only once every append issued before it has finished, so it reads all of them; a
//! load finishing for a partition no longer led at its epoch is discarded.
//!
//! Must never: append to a partition this node does not lead at the epoch its state was loaded
//! at (the appender checks the image right before each append and stamps the batch with that
//! leader epoch; a stale coordinator writing over a new leader's records would lose commits),
//! acknowledge an append for a partition unloaded since it was issued (its caller hears
//! NOT_COORDINATOR at the unload), block the coordinator task on storage (appends and loads
//! run on the blocking pool via [`Broker::blocking`], and their results come back as
//! messages), acknowledge a commit before its append is durable per the log's flush policy (the
//! coordinator only releases a response on `on_append_complete`; a topic deletion's caller
//! hears back once its tombstones are reported), reorder appends to one
//! partition (one appender, FIFO: compaction keeps the *last* record per key), or queue without
//! a bound (see `limits`).

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use josefine_group::{
    AppendId, AppendOutcome, Coordinator, Effect, GroupConfig, GroupRequest, GroupResponse,
    OffsetsRecord, RequestContext, RequestId,
};
use josefine_log::batch::BatchHeader;
use josefine_log::limits::BATCH_HEADER_BYTES;
use josefine_log::{LogError, PartitionLog};
use josefine_meta::{Image, TopicId};
use kafka_protocol::records::{
    Compression, Record, RecordBatchDecoder, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use tracing::{error, info, warn};

use crate::broker::Broker;
use crate::clock::now_ms;
use crate::controller::forward;
use crate::limits;
use crate::replication::leader::LeaderAppendError;

/// The internal topic holding group metadata and committed offsets.
pub const OFFSETS_TOPIC: &str = "__consumer_offsets";

/// Kafka 4's floor for the `segment.bytes` topic config (1 MiB).
const SEGMENT_BYTES_TOPIC_MIN: u64 = 1024 * 1024;

/// Seed for member ids: any fixed value works (ids only need to be unique per coordinator);
/// mixing in the start time keeps ids from repeating across restarts.
const MEMBER_ID_SEED: u64 = 0x6a6f_7365_6669_6e65;

/// The per-request facts the coordinator needs besides the body.
#[derive(Clone, Debug)]
pub struct GroupCaller {
    pub api_version: i16,
    pub client_id: String,
    pub peer: Option<SocketAddr>,
}

enum Msg {
    Request {
        caller: GroupCaller,
        /// Boxed: requests are large and most messages are not requests.
        request: Box<GroupRequest>,
        reply: oneshot::Sender<GroupResponse>,
    },
    /// Follow the image the store holds now (without waiting for the watch to deliver it).
    FollowImage {
        reply: oneshot::Sender<()>,
    },
    TopicDeleted {
        /// Answered once the tombstones of the deletion are appended (or failed).
        done: oneshot::Sender<()>,
    },
    /// A transaction marker was written to `__consumer_offsets` partition `partition`.
    TxnMarker {
        partition: i32,
        producer_id: i64,
        commit: bool,
        done: oneshot::Sender<()>,
    },
    Shutdown,
}

/// Names one append handed to the appender (the coordinator's [`AppendId`]s restart with a
/// new coordinator; these never do).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
struct JobId(u64);

/// Results flowing back into the coordinator task from its helpers.
enum Internal {
    Appended(Vec<(JobId, AppendOutcome)>),
    LoadStep {
        partition: i32,
        load_id: u64,
        records: Vec<LoadItem>,
    },
    LoadDone {
        partition: i32,
        load_id: u64,
        ok: bool,
    },
}

struct AppendJob {
    job: JobId,
    topic_id: TopicId,
    partition: i32,
    /// The epoch this node led the partition at when the coordinator's state of it was loaded:
    /// the append happens only if the image still says so, stamped with it.
    leader_epoch: i32,
    records: Vec<OffsetsRecord>,
    /// A transactional batch of this producer (id, epoch): TxnOffsetCommit.
    producer: Option<(i64, i16)>,
}

/// One `__consumer_offsets` partition this node leads per the image last followed.
struct Led {
    leader_epoch: i32,
    /// Tells this load's steps from those of an earlier load of the same partition.
    load_id: u64,
    phase: Phase,
    /// Transaction markers written to the partition while it loads (producer id, commit):
    /// applied once loaded, after the records the load read (which precede them).
    markers_while_loading: Vec<(i64, bool)>,
}

enum Phase {
    /// Waiting for appends issued before the load to finish, so the loader reads them.
    Draining,
    /// The loader is reading it; set `cancelled` to stop it.
    Loading {
        cancelled: Arc<AtomicBool>,
    },
    Loaded,
}

/// An append handed to the appender and not reported back yet.
struct InFlight {
    partition: i32,
    /// `None` once its caller was answered at an unload: the appender's report is then dropped.
    append_id: Option<AppendId>,
}

/// One partition for a loader to read.
struct LoadTask {
    partition: i32,
    load_id: u64,
    cancelled: Arc<AtomicBool>,
}

/// Handle to the group coordinator runtime, shared by every handler.
pub struct Groups {
    requests: mpsc::Sender<Msg>,
    /// The `__consumer_offsets` topic id in the image the coordinator task last followed.
    served_topic: watch::Receiver<Option<TopicId>>,
    /// `offsets.topic.num.partitions` in effect (the existing topic's count wins).
    offsets_partitions: i32,
    task: std::sync::Mutex<Option<JoinHandle<()>>>,
    /// What the coordinator task last published for `/metrics` and `/health/ready`.
    stats: watch::Receiver<Arc<GroupStats>>,
}

/// The coordinator runtime's figures, published on a watch after its events (metrics and
/// readiness read them without queueing into the task).
#[derive(Debug, Default, Clone)]
pub struct GroupStats {
    /// `__consumer_offsets` partitions led here and not loaded yet (draining or loading):
    /// published after every event.
    pub loading_partitions: usize,
    /// The coordinator's figures: refreshed at most every
    /// [`limits::GROUP_STATS_INTERVAL_MS`] (they cost a walk of every committed offset).
    pub coordinator: Arc<josefine_group::CoordinatorStats>,
}

/// The coordinator settings from the broker's (Kafka-named) settings. `partitions` is the
/// existing topic's partition count if there is one: groups must hash to where their records
/// are, whatever `offsets.topic.num.partitions` says now.
pub fn group_config(broker: &Broker, partitions: Option<i32>) -> GroupConfig {
    let s = &broker.config.broker;
    let defaults = GroupConfig::default();
    let clamp_i32 = |v: u64| v.min(i32::MAX as u64) as i32;
    GroupConfig {
        offsets_topic_partitions: partitions.unwrap_or(s.offsets_topic_num_partitions),
        initial_rebalance_delay_ms: s.group_initial_rebalance_delay_ms.min(i64::MAX as u64) as i64,
        session_timeout_min_ms: clamp_i32(s.group_min_session_timeout_ms),
        session_timeout_max_ms: clamp_i32(s.group_max_session_timeout_ms),
        // Kafka's default is unbounded; the coordinator's own bound (see GroupConfig) caps it.
        group_max_size: (s.group_max_size as usize).min(defaults.group_max_size),
        offset_metadata_max_bytes: s.offset_metadata_max_bytes as usize,
        offsets_retention_ms: s.offsets_retention_minutes.saturating_mul(60_000),
        offsets_retention_check_interval_ms: s
            .offsets_retention_check_interval_ms
            .min(i64::MAX as u64) as i64,
        ..defaults
    }
}

impl Groups {
    /// Starts the coordinator task. The `__consumer_offsets` partitions this node leads start
    /// loading at once; their groups answer COORDINATOR_LOAD_IN_PROGRESS until loaded.
    pub fn start(broker: &Arc<Broker>) -> Result<Groups, josefine_group::GroupError> {
        let (mut runtime, channels) = Runtime::new(broker)?;
        let offsets_partitions = runtime.coordinator_partitions;
        let (requests_tx, requests_rx) = mpsc::channel(limits::GROUP_REQUESTS_QUEUED_MAX);
        let appender = tokio::spawn(run_appender(
            broker.clone(),
            channels.appends,
            runtime.internal_tx.clone(),
        ));
        let mut images = broker.metadata.subscribe_image();
        let image = images.borrow_and_update().clone();
        runtime.follow(&image);
        runtime.publish_stats();
        let task = tokio::spawn(runtime.run(requests_rx, channels.internal, images, appender));
        Ok(Groups {
            requests: requests_tx,
            served_topic: channels.served,
            offsets_partitions,
            task: std::sync::Mutex::new(Some(task)),
            stats: channels.stats,
        })
    }

    /// The coordinator's last published figures.
    pub fn stats(&self) -> Arc<GroupStats> {
        self.stats.borrow().clone()
    }

    /// Requests queued for the coordinator task (`group_coordinator_queue_depth`).
    pub fn queue_depth(&self) -> usize {
        self.requests.max_capacity() - self.requests.capacity()
    }

    /// Every `__consumer_offsets` partition led here is loaded (readiness).
    pub fn all_loaded(&self) -> bool {
        self.stats.borrow().loading_partitions == 0
    }

    /// Partitions of `__consumer_offsets` (what `partition_for` hashes over).
    pub fn offsets_partitions(&self) -> i32 {
        self.offsets_partitions
    }

    /// Hands a request to the coordinator and waits for its response. `None` when the
    /// coordinator is shutting down (the connection then closes, and the client reconnects).
    pub async fn call(&self, caller: GroupCaller, request: GroupRequest) -> Option<GroupResponse> {
        let (reply, rx) = oneshot::channel();
        self.requests
            .send(Msg::Request {
                caller,
                request: Box::new(request),
                reply,
            })
            .await
            .ok()?;
        rx.await.ok()
    }

    /// Makes sure `__consumer_offsets` exists (creating it as Kafka does on the first
    /// FindCoordinator) and that the coordinator task has followed an image holding it, so the
    /// partitions this node leads are loading or loaded. Errors are for the client's
    /// COORDINATOR_NOT_AVAILABLE message.
    pub async fn ensure_offsets_topic(&self, broker: &Arc<Broker>) -> Result<(), String> {
        let image = broker.metadata.image();
        let topic_id = match image.topic_by_name(OFFSETS_TOPIC) {
            Some(t) => t.topic_id,
            None => {
                self.create_offsets_topic(broker).await?;
                match broker.metadata.image().topic_by_name(OFFSETS_TOPIC) {
                    Some(t) => t.topic_id,
                    None => return Err(format!("{OFFSETS_TOPIC} was deleted while created")),
                }
            }
        };
        if *self.served_topic.borrow() == Some(topic_id) {
            return Ok(());
        }
        let (reply, rx) = oneshot::channel();
        self.requests
            .send(Msg::FollowImage { reply })
            .await
            .map_err(|_| "the group coordinator is shutting down".to_string())?;
        rx.await
            .map_err(|_| "the group coordinator is shutting down".to_string())
    }

    /// Has the controller create the topic with its configs (as Kafka's coordinator does on
    /// the first FindCoordinator).
    async fn create_offsets_topic(&self, broker: &Arc<Broker>) -> Result<(), String> {
        let rf =
            offsets_topic_replication_factor(broker.config.broker.offsets_topic_replication_factor);
        offsets_topic_placeable(&broker.metadata.image(), rf)?;
        // `offsets.topic.segment.bytes`: small segments, so the cleaner (which never touches
        // the active segment) keeps the topic compact. Below the topic-level floor (1 MiB in
        // Kafka 4) it goes in as `internal.segment.bytes`, as Kafka's own tests do.
        let segment_bytes = broker.config.broker.offsets_topic_segment_bytes;
        let segment_key = if segment_bytes < SEGMENT_BYTES_TOPIC_MIN {
            "internal.segment.bytes"
        } else {
            "segment.bytes"
        };
        let configs = vec![
            ("cleanup.policy".to_string(), "compact".to_string()),
            (segment_key.to_string(), segment_bytes.to_string()),
            ("compression.type".to_string(), "producer".to_string()),
        ];
        match forward::create_topic(broker, OFFSETS_TOPIC, self.offsets_partitions, rf, configs)
            .await
        {
            Ok(()) => {
                info!(
                    partitions = self.offsets_partitions,
                    "{OFFSETS_TOPIC} exists"
                );
                Ok(())
            }
            Err((code, message)) => {
                error!(code, "cannot create {OFFSETS_TOPIC}: {message}");
                Err(format!("cannot create {OFFSETS_TOPIC}: {message}"))
            }
        }
    }

    /// A topic deletion was applied to this broker's image: its committed offsets go (or, for
    /// `__consumer_offsets` itself, every group this coordinator served) as on every broker
    /// when its image drops the topic. Returns once every tombstone issued so far is appended
    /// (durable per the log's flush policy) or failed: the coordinator forgets the offsets at
    /// once, so a caller answered before that could see them gone and then, after a clean
    /// shutdown that took the leadership away first, loaded back from the log.
    pub async fn topic_deleted(&self) {
        let (done, rx) = oneshot::channel();
        let msg = Msg::TopicDeleted { done };
        if self.requests.send(msg).await.is_ok() {
            // Dropped unanswered when the coordinator stops first.
            let _ = rx.await;
        }
    }

    /// A transaction marker of `producer_id` (COMMIT when `commit`) was written to partition
    /// `partition` of `__consumer_offsets` by this broker as its leader: the producer's
    /// transactional offsets there become committed or are dropped (Kafka's
    /// `onTransactionCompleted`). Returns once the coordinator has applied it.
    pub async fn txn_marker_written(&self, partition: i32, producer_id: i64, commit: bool) {
        let (done, rx) = oneshot::channel();
        let msg = Msg::TxnMarker {
            partition,
            producer_id,
            commit,
            done,
        };
        if self.requests.send(msg).await.is_ok() {
            let _ = rx.await;
        }
    }

    /// Stops the coordinator and waits until no append is in flight, so the partition logs can
    /// be closed. Requests still waiting are dropped (their connections close).
    pub async fn shutdown(&self) {
        let _ = self.requests.send(Msg::Shutdown).await;
        let task = self.task.lock().expect("groups task lock").take();
        if let Some(task) = task {
            let _ = task.await;
        }
    }
}

/// The replication factor `__consumer_offsets` is created with: the configured one
/// (`offsets.topic.replication.factor`), never fewer replicas once replication is on. While
/// replication is switched off (`handlers::replication_factor_supported`), 1: a higher factor
/// would be refused and the coordinator would never start.
pub fn offsets_topic_replication_factor(configured: i16) -> i16 {
    if crate::handlers::replication_factor_supported(configured) {
        configured
    } else {
        1
    }
}

/// Kafka's rule for creating `__consumer_offsets`: only once `replication_factor` brokers are
/// unfenced (eligible), else the caller answers COORDINATOR_NOT_AVAILABLE and tries again on
/// the next FindCoordinator; checked here so an early client does not cost a controller call.
pub fn offsets_topic_placeable(image: &Image, replication_factor: i16) -> Result<(), String> {
    let eligible = image.eligible_brokers().count();
    if (eligible as i64) < i64::from(replication_factor) {
        return Err(format!(
            "{OFFSETS_TOPIC} needs {replication_factor} unfenced broker(s) \
             (offsets.topic.replication.factor) and {eligible} are"
        ));
    }
    Ok(())
}

/// The leader epoch of `__consumer_offsets` partition `partition` (topic `topic_id`) if the
/// image says `node_id` leads it.
fn led_epoch(image: &Image, node_id: i32, topic_id: TopicId, partition: i32) -> Option<i32> {
    image
        .partition(topic_id, partition)
        .filter(|p| p.leader == node_id)
        .map(|p| p.leader_epoch)
}

/// The receiving ends a [`Runtime`] needs besides itself.
struct RuntimeChannels {
    appends: mpsc::Receiver<AppendJob>,
    internal: mpsc::Receiver<Internal>,
    served: watch::Receiver<Option<TopicId>>,
    stats: watch::Receiver<Arc<GroupStats>>,
}

struct Runtime {
    broker: Arc<Broker>,
    coordinator: Coordinator,
    /// The partition count the coordinator hashes group ids over.
    coordinator_partitions: i32,
    /// Responses owed, by request id: at most one per connection (one request in progress each).
    waiting: HashMap<RequestId, oneshot::Sender<GroupResponse>>,
    next_request_id: u64,
    /// The `__consumer_offsets` topic (id, partition count) in the image last followed.
    served: Option<(TopicId, i32)>,
    served_tx: watch::Sender<Option<TopicId>>,
    /// Position of the image last followed: an older one is never followed after a newer one.
    followed_position: Option<u64>,
    /// Every topic (name, id) in the image last followed: a topic gone from the next image was
    /// deleted and its committed offsets go, on every broker whatever took the deletion in.
    topics: BTreeMap<String, TopicId>,
    /// The partitions served: those this node leads per the image last followed.
    led: BTreeMap<i32, Led>,
    next_load_id: u64,
    /// Appends handed to the appender and not reported back, in issue order.
    in_flight: BTreeMap<JobId, InFlight>,
    /// Topic deletions waiting for their tombstones: the last append each issued, and whom to
    /// tell once no append up to it is in flight. At most one per connection (one request in
    /// progress each).
    deletions: Vec<(JobId, oneshot::Sender<()>)>,
    next_job: u64,
    appends: mpsc::Sender<AppendJob>,
    internal_tx: mpsc::Sender<Internal>,
    /// Loader tasks, awaited at shutdown so no load reads a log while it is being closed.
    loaders: Vec<JoinHandle<()>>,
    stats_tx: watch::Sender<Arc<GroupStats>>,
    /// When the coordinator's figures are next refreshed, if an event changed them since.
    stats_due_ms: i64,
    stats_dirty: bool,
}

impl Runtime {
    /// A runtime serving no partition yet: [`Runtime::follow`] an image to start.
    fn new(broker: &Arc<Broker>) -> Result<(Runtime, RuntimeChannels), josefine_group::GroupError> {
        let existing = broker
            .metadata
            .image()
            .topic_by_name(OFFSETS_TOPIC)
            .map(|t| t.partitions.len() as i32);
        let config = group_config(broker, existing);
        let coordinator_partitions = config.offsets_topic_partitions;
        let coordinator = Coordinator::new(config, MEMBER_ID_SEED ^ now_ms() as u64)?;
        let (internal_tx, internal) = mpsc::channel(limits::GROUP_LOAD_STEPS_QUEUED_MAX);
        let (appends_tx, appends) = mpsc::channel(limits::GROUP_APPENDS_QUEUED_MAX);
        let (served_tx, served) = watch::channel(None);
        // Loading until the first image is followed and published.
        let (stats_tx, stats) = watch::channel(Arc::new(GroupStats {
            loading_partitions: 1,
            ..GroupStats::default()
        }));
        let runtime = Runtime {
            broker: broker.clone(),
            coordinator,
            coordinator_partitions,
            waiting: HashMap::new(),
            next_request_id: 1,
            served: None,
            served_tx,
            followed_position: None,
            topics: BTreeMap::new(),
            led: BTreeMap::new(),
            next_load_id: 1,
            in_flight: BTreeMap::new(),
            deletions: Vec::new(),
            next_job: 1,
            appends: appends_tx,
            internal_tx,
            loaders: Vec::new(),
            stats_tx,
            stats_due_ms: 0,
            stats_dirty: true,
        };
        let channels = RuntimeChannels {
            appends,
            internal,
            served,
            stats,
        };
        Ok((runtime, channels))
    }

    async fn run(
        mut self,
        mut requests: mpsc::Receiver<Msg>,
        mut internal: mpsc::Receiver<Internal>,
        mut images: watch::Receiver<Arc<Image>>,
        appender: JoinHandle<()>,
    ) {
        let mut following = true;
        loop {
            // At least 1 ms: a timer the coordinator left due cannot make this loop spin.
            let wait_ms = self
                .coordinator
                .next_deadline_ms()
                .into_iter()
                .chain(self.stats_dirty.then_some(self.stats_due_ms))
                .min()
                .map(|d| (d - now_ms()).max(1) as u64);
            tokio::select! {
                msg = requests.recv() => match msg {
                    None | Some(Msg::Shutdown) => break,
                    Some(msg) => self.on_msg(msg),
                },
                Some(i) = internal.recv() => self.on_internal(i),
                changed = images.changed(), if following => match changed {
                    Ok(()) => {
                        let image = images.borrow_and_update().clone();
                        self.follow(&image);
                    }
                    // The store stopped: the broker is shutting down, and Shutdown follows.
                    Err(_) => following = false,
                },
                _ = sleep_ms(wait_ms) => {
                    let effects = self.coordinator.tick(now_ms());
                    self.carry_out(effects);
                }
            }
            self.publish_stats();
        }
        for led in self.led.values() {
            if let Phase::Loading { cancelled } = &led.phase {
                cancelled.store(true, Ordering::Relaxed);
            }
        }
        // Let the appender finish what it holds, so no append races the logs' close.
        drop(self.appends);
        drop(internal);
        let _ = appender.await;
        for loader in self.loaders {
            // Cancelled, and its next send fails now that `internal` is gone: it stops after
            // the current step.
            let _ = loader.await;
        }
        info!("group coordinator stopped");
    }

    /// Publishes the figures `/metrics` and `/health/ready` read: the loading count at once
    /// when it changes (readiness must not lag a load), the coordinator's figures when due.
    fn publish_stats(&mut self) {
        let loading_partitions = self
            .led
            .values()
            .filter(|l| !matches!(l.phase, Phase::Loaded))
            .count();
        self.stats_dirty = true;
        let now = now_ms();
        let due = now >= self.stats_due_ms;
        let previous = self.stats_tx.borrow().clone();
        if !due && previous.loading_partitions == loading_partitions {
            return;
        }
        let coordinator = if due {
            self.stats_due_ms = now + limits::GROUP_STATS_INTERVAL_MS;
            self.stats_dirty = false;
            Arc::new(self.coordinator.stats(limits::METRICS_GROUP_LAG_SERIES_MAX))
        } else {
            previous.coordinator.clone()
        };
        self.stats_tx.send_replace(Arc::new(GroupStats {
            loading_partitions,
            coordinator,
        }));
    }

    fn on_msg(&mut self, msg: Msg) {
        match msg {
            Msg::Request {
                caller,
                request,
                reply,
            } => {
                let request_id = RequestId(self.next_request_id);
                self.next_request_id += 1;
                let ctx = RequestContext {
                    request_id,
                    api_version: caller.api_version,
                    client_id: caller.client_id,
                    client_host: caller
                        .peer
                        .map_or_else(|| "/unknown".to_string(), |p| format!("/{}", p.ip())),
                };
                self.waiting.insert(request_id, reply);
                let effects = self.coordinator.handle(ctx, *request, now_ms());
                self.carry_out(effects);
            }
            Msg::FollowImage { reply } => {
                let image = self.broker.metadata.image();
                self.follow(&image);
                let _ = reply.send(());
            }
            Msg::TopicDeleted { done } => {
                // The deletion is applied to the local image before its proposer returns:
                // following that image purges the topic's offsets (if the image watch has not
                // already), and the answer waits for every tombstone issued so far.
                let image = self.broker.metadata.image();
                self.follow(&image);
                match self.in_flight.keys().next_back() {
                    Some(&last) => self.deletions.push((last, done)),
                    None => {
                        let _ = done.send(());
                    }
                }
            }
            Msg::TxnMarker {
                partition,
                producer_id,
                commit,
                done,
            } => {
                match self.led.get_mut(&partition) {
                    Some(led) if matches!(led.phase, Phase::Loaded) => self
                        .coordinator
                        .on_txn_marker(partition, producer_id, commit),
                    Some(led) => led.markers_while_loading.push((producer_id, commit)),
                    // Not led here: whoever loads it next replays the marker from the log.
                    None => {}
                }
                let _ = done.send(());
            }
            Msg::Shutdown => unreachable!("handled by the loop"),
        }
    }

    fn on_internal(&mut self, msg: Internal) {
        match msg {
            Internal::Appended(results) => {
                for (job, outcome) in results {
                    let done = self
                        .in_flight
                        .remove(&job)
                        .unwrap_or_else(|| panic!("append {job:?} reported twice or never sent"));
                    if let Some(append_id) = done.append_id {
                        let effects =
                            self.coordinator
                                .on_append_complete(append_id, outcome, now_ms());
                        self.carry_out(effects);
                    }
                }
                self.answer_deletions();
                self.start_drained_loads();
            }
            Internal::LoadStep {
                partition,
                load_id,
                records,
            } => {
                if !self.is_loading(partition, load_id) {
                    return; // a load of a partition no longer led at that epoch
                }
                for item in records {
                    let loaded = match item {
                        LoadItem::Record {
                            key,
                            value,
                            producer_id: None,
                        } => self
                            .coordinator
                            .load_record(partition, &key, value.as_deref()),
                        LoadItem::Record {
                            key,
                            value,
                            producer_id: Some(pid),
                        } => self.coordinator.load_transactional_record(
                            partition,
                            pid,
                            &key,
                            value.as_deref(),
                        ),
                        LoadItem::Marker {
                            producer_id,
                            commit,
                        } => {
                            self.coordinator
                                .load_txn_marker(partition, producer_id, commit);
                            Ok(())
                        }
                    };
                    if let Err(e) = loaded {
                        // Kafka fails the load; skipping one record keeps every other group.
                        error!(partition, "skipping a {OFFSETS_TOPIC} record: {e}");
                    }
                }
            }
            Internal::LoadDone {
                partition,
                load_id,
                ok,
            } => {
                if !self.is_loading(partition, load_id) {
                    return;
                }
                if !ok {
                    // Its groups stay COORDINATOR_LOAD_IN_PROGRESS: serving half-read offsets
                    // would make consumers re-read or skip data.
                    error!(
                        partition,
                        "loading {OFFSETS_TOPIC} failed; its groups stay unavailable until its leadership changes"
                    );
                    return;
                }
                match self.coordinator.complete_load(partition, now_ms()) {
                    Ok(effects) => {
                        // Loaded before its effects run: they may append to it (tombstones).
                        if let Some(led) = self.led.get_mut(&partition) {
                            led.phase = Phase::Loaded;
                            for (producer_id, commit) in led.markers_while_loading.drain(..) {
                                self.coordinator
                                    .on_txn_marker(partition, producer_id, commit);
                            }
                        }
                        info!(partition, "{OFFSETS_TOPIC} partition loaded");
                        self.carry_out(effects);
                    }
                    Err(e) => error!(partition, "completing the load: {e}"),
                }
            }
        }
    }

    /// Tells the deletions whose appends are all reported back.
    fn answer_deletions(&mut self) {
        let in_flight = &self.in_flight;
        let (done, waiting): (Vec<_>, Vec<_>) = std::mem::take(&mut self.deletions)
            .into_iter()
            .partition(|(last, _)| in_flight.range(..=*last).next().is_none());
        self.deletions = waiting;
        for (_, tell) in done {
            let _ = tell.send(());
        }
    }

    fn is_loading(&self, partition: i32, load_id: u64) -> bool {
        self.led
            .get(&partition)
            .is_some_and(|led| led.load_id == load_id && matches!(led.phase, Phase::Loading { .. }))
    }

    /// Purges the committed offsets of every topic deleted since the image last followed (a
    /// name gone, or now naming another topic id): Kafka's onPartitionsDeleted, which every
    /// broker's coordinator runs when its metadata drops the topic. `__consumer_offsets` itself
    /// is handled by [`Runtime::follow`] (everything served is unloaded).
    fn purge_deleted_topics(&mut self, image: &Image) {
        let deleted: Vec<String> = self
            .topics
            .iter()
            .filter(|(name, id)| image.topic_ids_by_name.get(*name) != Some(*id))
            .map(|(name, _)| name.clone())
            .filter(|name| name != OFFSETS_TOPIC)
            .collect();
        if self.topics.len() != image.topic_ids_by_name.len() || !deleted.is_empty() {
            self.topics = image.topic_ids_by_name.clone();
        }
        for topic in deleted {
            let effects = self.coordinator.on_topic_deleted(&topic, now_ms());
            self.carry_out(effects);
        }
    }

    /// Brings the partitions served in line with `image`: unloads those this node no longer
    /// leads at the epoch they were loaded at, and loads those it newly leads.
    fn follow(&mut self, image: &Image) {
        if self.followed_position.is_some_and(|p| image.position < p) {
            return;
        }
        self.followed_position = Some(image.position);
        self.purge_deleted_topics(image);
        let topic = image.topic_by_name(OFFSETS_TOPIC);
        let served = topic.map(|t| (t.topic_id, t.partitions.len() as i32));
        if served != self.served {
            // Created, deleted or recreated: nothing of the old topic is served any more.
            self.unload_all();
            self.served = served;
            self.served_tx.send_replace(served.map(|s| s.0));
            if let Some((_, count)) = served {
                self.fit_coordinator(count);
            }
        }
        let Some(topic) = topic else {
            return;
        };
        if topic.partitions.len() as i32 != self.coordinator_partitions {
            return; // could not build a coordinator for it (logged once when it appeared)
        }
        let node_id = self.broker.config.node_id;
        let leading: BTreeMap<i32, i32> = topic
            .partitions
            .iter()
            .filter(|p| p.leader == node_id)
            .map(|p| (p.partition, p.leader_epoch))
            .collect();
        let lost: Vec<i32> = self
            .led
            .iter()
            .filter(|(p, led)| leading.get(p) != Some(&led.leader_epoch))
            .map(|(p, _)| *p)
            .collect();
        for &partition in &lost {
            self.unload(partition);
        }
        let gained: Vec<(i32, i32)> = leading
            .into_iter()
            .filter(|(p, _)| !self.led.contains_key(p))
            .collect();
        if !lost.is_empty() || !gained.is_empty() {
            info!(
                unloaded = ?lost,
                loading = ?gained.iter().map(|g| g.0).collect::<Vec<_>>(),
                position = image.position,
                "{OFFSETS_TOPIC} leadership changed"
            );
        }
        let ready: Vec<LoadTask> = gained
            .into_iter()
            .filter_map(|(partition, epoch)| self.begin_load(partition, epoch))
            .collect();
        self.spawn_loader(ready);
    }

    /// Hashes group ids over `count` partitions (a topic created with a count other than
    /// `offsets.topic.num.partitions`). Only called with nothing served.
    fn fit_coordinator(&mut self, count: i32) {
        if count == self.coordinator_partitions {
            return;
        }
        warn!(
            count,
            "{OFFSETS_TOPIC} has a partition count other than offsets.topic.num.partitions"
        );
        let config = group_config(&self.broker, Some(count));
        match Coordinator::new(config, MEMBER_ID_SEED ^ now_ms() as u64) {
            Ok(c) => {
                self.coordinator = c;
                self.coordinator_partitions = count;
            }
            Err(e) => error!("cannot serve {OFFSETS_TOPIC} with {count} partitions: {e}"),
        }
    }

    /// Starts serving `partition` (led here at `leader_epoch`): loading, or draining first if
    /// appends issued before are still in flight. The load to start now, if any.
    fn begin_load(&mut self, partition: i32, leader_epoch: i32) -> Option<LoadTask> {
        let effects = self.coordinator.begin_load(partition);
        self.carry_out(effects);
        let load_id = self.next_load_id;
        self.next_load_id += 1;
        let draining = self.in_flight.values().any(|f| f.partition == partition);
        let (phase, task) = if draining {
            (Phase::Draining, None)
        } else {
            let cancelled = Arc::new(AtomicBool::new(false));
            let task = LoadTask {
                partition,
                load_id,
                cancelled: cancelled.clone(),
            };
            (Phase::Loading { cancelled }, Some(task))
        };
        let led = Led {
            leader_epoch,
            load_id,
            phase,
            markers_while_loading: Vec::new(),
        };
        self.led.insert(partition, led);
        task
    }

    /// Starts the loads whose partitions have no append in flight any more.
    fn start_drained_loads(&mut self) {
        let mut ready = Vec::new();
        for (&partition, led) in self.led.iter_mut() {
            if !matches!(led.phase, Phase::Draining)
                || self.in_flight.values().any(|f| f.partition == partition)
            {
                continue;
            }
            let cancelled = Arc::new(AtomicBool::new(false));
            ready.push(LoadTask {
                partition,
                load_id: led.load_id,
                cancelled: cancelled.clone(),
            });
            led.phase = Phase::Loading { cancelled };
        }
        self.spawn_loader(ready);
    }

    fn spawn_loader(&mut self, loads: Vec<LoadTask>) {
        let Some((topic_id, _)) = self.served else {
            return;
        };
        if loads.is_empty() {
            return;
        }
        self.loaders.retain(|l| !l.is_finished());
        self.loaders.push(tokio::spawn(run_loader(
            self.broker.clone(),
            topic_id,
            loads,
            self.internal_tx.clone(),
        )));
    }

    /// Stops serving `partition`: its groups answer NOT_COORDINATOR, and so do the callers
    /// of its appends still in flight (whatever the appender reports for them is dropped).
    fn unload(&mut self, partition: i32) {
        let Some(led) = self.led.remove(&partition) else {
            return;
        };
        if let Phase::Loading { cancelled } = &led.phase {
            cancelled.store(true, Ordering::Relaxed);
        }
        let effects = self.coordinator.unload(partition);
        self.carry_out(effects);
        let orphans: Vec<AppendId> = self
            .in_flight
            .values_mut()
            .filter(|f| f.partition == partition)
            .filter_map(|f| f.append_id.take())
            .collect();
        for append_id in orphans {
            let effects =
                self.coordinator
                    .on_append_complete(append_id, AppendOutcome::NotLeader, now_ms());
            self.carry_out(effects);
        }
    }

    fn unload_all(&mut self) {
        let partitions: Vec<i32> = self.led.keys().copied().collect();
        for partition in partitions {
            self.unload(partition);
        }
    }

    /// Carries out effects, including those of appends failed at once (not served, queue
    /// full).
    fn carry_out(&mut self, effects: Vec<Effect>) {
        let mut work: VecDeque<Effect> = effects.into();
        while let Some(effect) = work.pop_front() {
            match effect {
                Effect::Respond {
                    request_id,
                    response,
                    ..
                } => {
                    if let Some(reply) = self.waiting.remove(&request_id) {
                        // The connection may be gone; nothing to do then.
                        let _ = reply.send(response);
                    }
                }
                Effect::Append {
                    append_id,
                    partition,
                    records,
                    producer,
                } => {
                    let failed = match self.append_job(partition, records, producer) {
                        Some(job) => {
                            let id = job.job;
                            match self.appends.try_send(job) {
                                Ok(()) => {
                                    let f = InFlight {
                                        partition,
                                        append_id: Some(append_id),
                                    };
                                    self.in_flight.insert(id, f);
                                    continue;
                                }
                                Err(_) => {
                                    warn!("{OFFSETS_TOPIC} append queue full; failing the append");
                                    AppendOutcome::Unavailable
                                }
                            }
                        }
                        None => AppendOutcome::NotLeader,
                    };
                    let more = self
                        .coordinator
                        .on_append_complete(append_id, failed, now_ms());
                    work.extend(more);
                }
            }
        }
    }

    /// The appender's job for an append to `partition`, if it is loaded here.
    fn append_job(
        &mut self,
        partition: i32,
        records: Vec<OffsetsRecord>,
        producer: Option<(i64, i16)>,
    ) -> Option<AppendJob> {
        let (topic_id, _) = self.served?;
        let led = self.led.get(&partition)?;
        if !matches!(led.phase, Phase::Loaded) {
            return None;
        }
        let job = JobId(self.next_job);
        self.next_job += 1;
        Some(AppendJob {
            job,
            topic_id,
            partition,
            leader_epoch: led.leader_epoch,
            records,
            producer,
        })
    }
}

async fn sleep_ms(ms: Option<u64>) {
    match ms {
        Some(ms) => tokio::time::sleep(Duration::from_millis(ms)).await,
        None => std::future::pending().await,
    }
}

// ---- Appending -------------------------------------------------------------------------------

/// Writes coordinator records in queue order, a round of jobs per blocking call.
async fn run_appender(
    broker: Arc<Broker>,
    mut jobs: mpsc::Receiver<AppendJob>,
    done: mpsc::Sender<Internal>,
) {
    while let Some(first) = jobs.recv().await {
        let mut round = vec![first];
        while round.len() < limits::GROUP_APPENDS_PER_ROUND_MAX {
            match jobs.try_recv() {
                Ok(job) => round.push(job),
                Err(_) => break,
            }
        }
        let b = broker.clone();
        let (mut results, waits) = broker.blocking(move || append_round(&b, round)).await;
        broker.notify_append();
        // Answered only once the high watermark covers them (Kafka's coordinator writes with
        // acks=-1): with replicas, the followers have them then.
        let deadline = tokio::time::Instant::now()
            + Duration::from_millis(limits::GROUP_APPEND_COMMIT_TIMEOUT_MS);
        for (result, wait) in results.iter_mut().zip(waits) {
            let Some((partition, leader_epoch, required)) = wait else {
                continue;
            };
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            result.1 = match partition
                .wait_for_high_watermark(leader_epoch, required, left)
                .await
            {
                0 => AppendOutcome::Appended,
                crate::handlers::code::NOT_LEADER_OR_FOLLOWER => AppendOutcome::NotLeader,
                _ => AppendOutcome::Unavailable,
            };
        }
        if done.send(Internal::Appended(results)).await.is_err() {
            return; // the coordinator stopped
        }
    }
}

/// A successful append's wait: the partition, its leader epoch and the offset the high
/// watermark must reach.
type HighWatermarkWait = Option<(Arc<crate::partitions::Partition>, i32, i64)>;

fn append_round(
    broker: &Broker,
    round: Vec<AppendJob>,
) -> (Vec<(JobId, AppendOutcome)>, Vec<HighWatermarkWait>) {
    let node_id = broker.config.node_id;
    let now = now_ms();
    let mut results = Vec::with_capacity(round.len());
    let mut waits = Vec::with_capacity(round.len());
    // Logs to flush after the round, and for each result the log it waits on.
    let mut to_flush: Vec<Arc<PartitionLog>> = Vec::new();
    let mut flush_of: Vec<Option<usize>> = Vec::with_capacity(round.len());
    for job in round {
        // Right before the append: a coordinator loaded at another epoch (or not leading at
        // all) must not write over what the partition's real leader wrote.
        let image = broker.metadata.image();
        let leads = led_epoch(&image, node_id, job.topic_id, job.partition);
        let partition = match leads == Some(job.leader_epoch) {
            true => broker.partitions.get(job.topic_id, job.partition),
            false => None,
        };
        let Some(partition) = partition else {
            results.push((job.job, AppendOutcome::NotLeader));
            flush_of.push(None);
            waits.push(None);
            continue;
        };
        let log = partition.log.clone();
        let mut wait = None;
        // A TxnOffsetCommit is a transactional batch of the producer, numbered after the last
        // batch this log holds of it (only this appender writes that producer here).
        let transactional = job.producer.map(|(producer_id, epoch)| {
            let next = log
                .producers()
                .into_iter()
                .find(|p| p.producer_id == producer_id && p.producer_epoch == epoch)
                .filter(|p| p.last_sequence >= 0)
                .map_or(0, |p| p.last_sequence.checked_add(1).unwrap_or(0));
            (producer_id, epoch, next)
        });
        let append = match transactional {
            Some(_) => crate::partitions::Partition::append_transactional_as_leader,
            None => crate::partitions::Partition::append_as_leader,
        };
        let outcome = match encode_batch_as(&job.records, transactional) {
            Err(e) => {
                error!("cannot encode {OFFSETS_TOPIC} records: {e:#}");
                AppendOutcome::TooLarge
            }
            Ok(batch) => match append(&partition, &batch, job.leader_epoch, true, now) {
                Ok(o) => {
                    wait = Some((partition.clone(), job.leader_epoch, o.last_offset + 1));
                    AppendOutcome::Appended
                }
                Err(LeaderAppendError::Log(e)) => append_outcome(job.partition, &e),
                Err(LeaderAppendError::NotLeader) => AppendOutcome::NotLeader,
                Err(LeaderAppendError::NotEnoughReplicas { .. }) => AppendOutcome::Unavailable,
            },
        };
        waits.push(wait);
        let mut waits_on = None;
        if outcome == AppendOutcome::Appended && log.needs_flush_after_append() {
            let i = match to_flush.iter().position(|l| Arc::ptr_eq(l, &log)) {
                Some(i) => i,
                None => {
                    to_flush.push(log);
                    to_flush.len() - 1
                }
            };
            waits_on = Some(i);
        }
        results.push((job.job, outcome));
        flush_of.push(waits_on);
    }
    // One flush per partition after all of the round's appends (a group commit).
    for (i, log) in to_flush.iter().enumerate() {
        if let Err(e) = crate::metrics::timed_flush(log) {
            error!("flushing {OFFSETS_TOPIC}: {e}");
            for (result, waits_on) in results.iter_mut().zip(&flush_of) {
                if *waits_on == Some(i) {
                    result.1 = AppendOutcome::Unavailable;
                }
            }
        }
    }
    for (result, wait) in results.iter().zip(waits.iter_mut()) {
        if result.1 != AppendOutcome::Appended {
            *wait = None;
        }
    }
    (results, waits)
}

fn append_outcome(partition: i32, e: &LogError) -> AppendOutcome {
    match e {
        LogError::MessageTooLarge { .. } | LogError::RecordListTooLarge(_) => {
            AppendOutcome::TooLarge
        }
        other => {
            warn!(partition, "{OFFSETS_TOPIC} append failed: {other}");
            AppendOutcome::Unavailable
        }
    }
}

/// One uncompressed v2 batch, no producer id, offsets 0..n-1 (the log assigns the real ones).
pub fn encode_batch(records: &[OffsetsRecord]) -> anyhow::Result<Bytes> {
    encode_batch_as(records, None)
}

/// [`encode_batch`], or with `transactional` (producer id, epoch, base sequence) a
/// transactional batch of that producer.
fn encode_batch_as(
    records: &[OffsetsRecord],
    transactional: Option<(i64, i16, i32)>,
) -> anyhow::Result<Bytes> {
    // The encoder derives the base sequence from the first record and starts a new batch when
    // offset - sequence changes: sequence base + i keeps every record in one batch (base -1:
    // no sequence).
    let (producer_id, producer_epoch, base_sequence) = transactional.unwrap_or((-1, -1, -1));
    let records: Vec<Record> = records
        .iter()
        .enumerate()
        .map(|(i, r)| Record {
            transactional: transactional.is_some(),
            control: false,
            delete_horizon: false,
            partition_leader_epoch: -1,
            producer_id,
            producer_epoch,
            timestamp_type: TimestampType::Creation,
            offset: i as i64,
            sequence: base_sequence.wrapping_add(i as i32),
            timestamp: r.timestamp_ms,
            key: Some(r.key.clone()),
            value: r.value.clone(),
            headers: Default::default(),
        })
        .collect();
    let mut buf = BytesMut::new();
    RecordBatchEncoder::encode(
        &mut buf,
        &records,
        &RecordEncodeOptions {
            version: 2,
            compression: Compression::None,
        },
    )?;
    Ok(buf.freeze())
}

// ---- Loading ---------------------------------------------------------------------------------

/// Replays each partition from its log start to its end into the coordinator, one bounded
/// step at a time, then reports it done. A cancelled load stops at its next step, unreported.
async fn run_loader(
    broker: Arc<Broker>,
    topic_id: TopicId,
    loads: Vec<LoadTask>,
    tx: mpsc::Sender<Internal>,
) {
    for load in loads {
        let ok = load_partition(&broker, topic_id, &load, &tx).await;
        if load.cancelled.load(Ordering::Relaxed) {
            continue;
        }
        let done = Internal::LoadDone {
            partition: load.partition,
            load_id: load.load_id,
            ok,
        };
        if tx.send(done).await.is_err() {
            return;
        }
    }
}

async fn load_partition(
    broker: &Arc<Broker>,
    topic_id: TopicId,
    load: &LoadTask,
    tx: &mpsc::Sender<Internal>,
) -> bool {
    let partition = load.partition;
    let Some(p) = broker.partitions.get(topic_id, partition) else {
        error!(partition, "{OFFSETS_TOPIC} partition log is not open");
        return false;
    };
    let log = p.log.clone();
    let (mut from, end) = (log.log_start_offset(), log.log_end_offset());
    while from < end {
        if load.cancelled.load(Ordering::Relaxed) {
            return false;
        }
        let l = log.clone();
        let step = broker.blocking(move || read_step(&l, from, end)).await;
        match step {
            Ok((records, next)) => {
                assert!(next > from, "a load step must advance");
                from = next;
                let msg = Internal::LoadStep {
                    partition,
                    load_id: load.load_id,
                    records,
                };
                if tx.send(msg).await.is_err() {
                    return false;
                }
            }
            Err(e) => {
                error!(partition, from, "reading {OFFSETS_TOPIC}: {e}");
                return false;
            }
        }
    }
    true
}

/// Records (key, value) of the batches from `from`, and the offset to continue at.
type LoadStep = (Vec<LoadItem>, i64);

/// What a load replays, in log order.
enum LoadItem {
    /// A keyed record; `producer_id` when it is in a transactional batch (TxnOffsetCommit).
    Record {
        key: Bytes,
        value: Option<Bytes>,
        producer_id: Option<i64>,
    },
    /// A transaction marker of `producer_id`.
    Marker { producer_id: i64, commit: bool },
}

fn read_step(log: &PartitionLog, from: i64, end: i64) -> Result<LoadStep, String> {
    let read = log
        .read(from, limits::GROUP_LOAD_READ_BYTES_MAX, end)
        .map_err(|e| e.to_string())?;
    let mut buf = read.records;
    if buf.is_empty() {
        return Ok((Vec::new(), end)); // the rest was compacted away
    }
    let mut next = from;
    let mut out = Vec::new();
    while buf.len() >= BATCH_HEADER_BYTES {
        let header = BatchHeader::parse(&buf).map_err(|e| e.to_string())?;
        let size = header.total_bytes();
        if size > buf.len() {
            break;
        }
        let mut batch = buf.split_to(size);
        next = next.max(header.last_offset() + 1);
        if header.is_control() {
            if header.last_offset() < from {
                continue;
            }
            match josefine_log::control::decode_marker(&batch, &header) {
                Ok(Some(marker)) => out.push(LoadItem::Marker {
                    producer_id: header.producer_id,
                    commit: marker.commit,
                }),
                Ok(None) => {}
                Err(e) => warn!(
                    base_offset = header.base_offset,
                    "skipping an unreadable {OFFSETS_TOPIC} control batch: {e}"
                ),
            }
            continue;
        }
        let producer_id = header.is_transactional().then_some(header.producer_id);
        let set = RecordBatchDecoder::decode_with_custom_compression(
            &mut batch,
            Some(|b: &mut Bytes, c: Compression| -> anyhow::Result<Bytes> {
                // The coordinator writes uncompressed batches and clients cannot produce here.
                match c {
                    Compression::None => Ok(b.split_off(0)),
                    other => anyhow::bail!("compressed ({other:?}) batch in {OFFSETS_TOPIC}"),
                }
            }),
        );
        match set {
            Ok(set) => out.extend(
                set.records
                    .into_iter()
                    .filter(|r| r.offset >= from)
                    .filter_map(|r| {
                        r.key.map(|key| LoadItem::Record {
                            key,
                            value: r.value,
                            producer_id,
                        })
                    }),
            ),
            Err(e) => warn!(
                base_offset = header.base_offset,
                "skipping an unreadable {OFFSETS_TOPIC} batch: {e:#}"
            ),
        }
    }
    if next <= from {
        return Err(format!("no complete batch at offset {from}"));
    }
    Ok((out, next))
}

#[cfg(test)]
mod tests {
    //! The runtime driven by hand (no task, no appender): appends stay in flight exactly as
    //! long as a test wants while leadership changes under them.

    use josefine_meta::{Command, PartitionAssignment};
    use kafka_protocol::messages::offset_commit_request::{
        OffsetCommitRequestPartition, OffsetCommitRequestTopic,
    };
    use kafka_protocol::messages::offset_fetch_request::OffsetFetchRequestTopic;
    use kafka_protocol::messages::{
        GroupId, JoinGroupRequest, OffsetCommitRequest, OffsetFetchRequest, TopicName,
    };
    use kafka_protocol::protocol::StrBytes;

    use super::*;
    use crate::config::{Config, ServeArgs};
    use crate::server::RunningBroker;

    const NOT_COORDINATOR: i16 = 16;
    const COORDINATOR_LOAD_IN_PROGRESS: i16 = 14;

    fn s(v: &str) -> StrBytes {
        StrBytes::from_string(v.to_string())
    }

    async fn start() -> (RunningBroker, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let config = Config::resolve(ServeArgs {
            listen: Some("127.0.0.1:0".into()),
            raft_listen: Some("127.0.0.1:0".into()),
            data_dir: Some(dir.path().to_path_buf()),
            set: vec![
                "offsets.topic.num.partitions=1".into(),
                "group.initial.rebalance.delay.ms=0".into(),
            ],
            ..ServeArgs::default()
        })
        .unwrap();
        let running = crate::server::start(config).await.unwrap();
        let broker = running.broker.clone();
        broker.groups().ensure_offsets_topic(&broker).await.unwrap();
        (running, dir)
    }

    /// A runtime of its own on the broker (the broker's own one serves nobody here).
    fn runtime(broker: &Arc<Broker>) -> (Runtime, RuntimeChannels) {
        // These tests stage leaderless partitions; the controller would re-elect them.
        broker.controller.pause_timer(true);
        let (mut rt, ch) = Runtime::new(broker).unwrap();
        rt.follow(&broker.metadata.image());
        (rt, ch)
    }

    fn offsets_partition(broker: &Broker) -> (TopicId, PartitionAssignment) {
        let image = broker.metadata.image();
        let t = image.topic_by_name(OFFSETS_TOPIC).unwrap();
        (t.topic_id, t.partitions[0].clone())
    }

    /// Changes the leader of `__consumer_offsets` partition 0 (several changes commit as one).
    async fn set_leaders(broker: &Broker, leaders: &[i32]) {
        let (topic_id, p) = offsets_partition(broker);
        let changes: Vec<Command> = leaders
            .iter()
            .enumerate()
            .map(|(i, &leader)| Command::ChangePartition {
                topic_id,
                partition: 0,
                expected_partition_epoch: p.partition_epoch + i as i32,
                leader: Some(leader),
                isr: None,
            })
            .collect();
        let cmd = match changes.len() {
            1 => changes.into_iter().next().unwrap(),
            _ => Command::Batch(changes),
        };
        broker.metadata.propose(cmd).await.unwrap();
    }

    fn log_of(broker: &Broker) -> Arc<PartitionLog> {
        let (topic_id, _) = offsets_partition(broker);
        broker.partitions.get(topic_id, 0).unwrap().log.clone()
    }

    /// Feeds the loader's messages in until partition 0 is loaded.
    async fn settle(rt: &mut Runtime, ch: &mut RuntimeChannels) {
        let wait = Duration::from_secs(10);
        while !matches!(rt.led.get(&0).map(|l| &l.phase), Some(Phase::Loaded)) {
            let msg = tokio::time::timeout(wait, ch.internal.recv()).await;
            rt.on_internal(msg.expect("the load finishes").expect("loader alive"));
        }
    }

    fn request(
        rt: &mut Runtime,
        version: i16,
        request: GroupRequest,
    ) -> oneshot::Receiver<GroupResponse> {
        let (reply, rx) = oneshot::channel();
        let caller = GroupCaller {
            api_version: version,
            client_id: "unit".into(),
            peer: None,
        };
        rt.on_msg(Msg::Request {
            caller,
            request: Box::new(request),
            reply,
        });
        rx
    }

    fn commit(rt: &mut Runtime, offset: i64) -> oneshot::Receiver<GroupResponse> {
        let req = OffsetCommitRequest::default()
            .with_group_id(GroupId(s("g")))
            .with_generation_id_or_member_epoch(-1)
            .with_topics(vec![OffsetCommitRequestTopic::default()
                .with_name(TopicName(s("t")))
                .with_partitions(vec![OffsetCommitRequestPartition::default()
                    .with_partition_index(0)
                    .with_committed_offset(offset)])]);
        request(rt, 8, GroupRequest::OffsetCommit(req))
    }

    fn commit_error(mut rx: oneshot::Receiver<GroupResponse>) -> i16 {
        match rx.try_recv().expect("answered") {
            GroupResponse::OffsetCommit(r) => r.topics[0].partitions[0].error_code,
            other => panic!("{other:?}"),
        }
    }

    /// (error, committed offset of t-0) from an OffsetFetch v7.
    fn fetch(rt: &mut Runtime) -> (i16, i64) {
        let req = OffsetFetchRequest::default()
            .with_group_id(GroupId(s("g")))
            .with_topics(Some(vec![OffsetFetchRequestTopic::default()
                .with_name(TopicName(s("t")))
                .with_partition_indexes(vec![0])]));
        match request(rt, 7, GroupRequest::OffsetFetch(req)).try_recv() {
            Ok(GroupResponse::OffsetFetch(r)) => {
                let offset = r
                    .topics
                    .first()
                    .map_or(-1, |t| t.partitions[0].committed_offset);
                (r.error_code, offset)
            }
            other => panic!("{other:?}"),
        }
    }

    /// Hands the appender's jobs to the real append code and reports back, as the appender
    /// (one replica: the high watermark already covers every append).
    fn append(rt: &mut Runtime, broker: &Broker, jobs: Vec<AppendJob>) -> Vec<AppendOutcome> {
        let (results, waits) = append_round(broker, jobs);
        for (partition, _, required) in waits.into_iter().flatten() {
            assert!(partition.log.high_watermark() >= required);
        }
        let outcomes = results.iter().map(|r| r.1).collect();
        rt.on_internal(Internal::Appended(results));
        outcomes
    }

    #[test]
    fn the_offsets_topic_waits_for_as_many_unfenced_brokers_as_its_replication_factor() {
        let mut image = Image::default();
        for node_id in 1..=3 {
            image.advance_to(image.position + 1);
            image
                .apply(&Command::RegisterBroker {
                    node_id,
                    incarnation_id: 1,
                    host: "h".into(),
                    port: 1,
                    rack: None,
                })
                .unwrap();
        }
        // Registered but fenced brokers do not count.
        let err = offsets_topic_placeable(&image, 1).unwrap_err();
        assert!(
            err.contains("needs 1 unfenced broker(s)") && err.contains("0 are"),
            "{err}"
        );
        for node_id in 1..=2 {
            let epoch = image.brokers[&node_id].epoch;
            image
                .apply(&Command::UnfenceBroker { node_id, epoch })
                .unwrap();
        }
        assert!(offsets_topic_placeable(&image, 2).is_ok());
        let err = offsets_topic_placeable(&image, 3).unwrap_err();
        assert!(err.contains("needs 3") && err.contains("2 are"), "{err}");
        // While replication is switched off the topic is created with one replica.
        assert_eq!(
            offsets_topic_replication_factor(3),
            if crate::handlers::replication_factor_supported(3) {
                3
            } else {
                1
            }
        );
        assert_eq!(offsets_topic_replication_factor(1), 1);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn losing_leadership_fails_the_commit_in_flight_and_never_writes_it() {
        let (running, _dir) = start().await;
        let broker = running.broker.clone();
        let (mut rt, mut ch) = runtime(&broker);
        settle(&mut rt, &mut ch).await;

        let acked = commit(&mut rt, 5);
        let job = ch.appends.try_recv().unwrap();
        assert_eq!(
            append(&mut rt, &broker, vec![job]),
            [AppendOutcome::Appended]
        );
        assert_eq!(commit_error(acked), 0);
        let log_end = log_of(&broker).log_end_offset();

        // A commit is in flight (with the appender) when the image takes the partition away.
        let mut in_flight = commit(&mut rt, 6);
        let job = ch.appends.try_recv().unwrap();
        assert!(
            in_flight.try_recv().is_err(),
            "not answered before its append"
        );
        set_leaders(&broker, &[PartitionAssignment::NO_LEADER]).await;
        rt.follow(&broker.metadata.image());
        assert_eq!(commit_error(in_flight), NOT_COORDINATOR);
        assert!(rt.led.is_empty());

        // The appender reaches it later: refused by the image, nothing written, nobody told.
        assert_eq!(
            append(&mut rt, &broker, vec![job]),
            [AppendOutcome::NotLeader]
        );
        assert_eq!(log_of(&broker).log_end_offset(), log_end);
        assert!(rt.in_flight.is_empty());

        // Its groups are somebody else's now.
        assert_eq!(fetch(&mut rt).0, NOT_COORDINATOR);
        assert_eq!(commit_error(commit(&mut rt, 7)), NOT_COORDINATOR);
        let join = JoinGroupRequest::default()
            .with_group_id(GroupId(s("g")))
            .with_session_timeout_ms(10_000)
            .with_rebalance_timeout_ms(10_000)
            .with_protocol_type(s("consumer"));
        match request(&mut rt, 9, GroupRequest::JoinGroup(join)).try_recv() {
            Ok(GroupResponse::JoinGroup(r)) => assert_eq!(r.error_code, NOT_COORDINATOR),
            other => panic!("{other:?}"),
        }
        assert!(
            ch.appends.try_recv().is_err(),
            "nothing sent to the appender"
        );
        running.shutdown().await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn gaining_leadership_loads_and_a_new_epoch_reloads_after_the_appends_drain() {
        let (running, _dir) = start().await;
        let broker = running.broker.clone();
        let (mut rt, mut ch) = runtime(&broker);
        settle(&mut rt, &mut ch).await;
        commit(&mut rt, 5);
        let job = ch.appends.try_recv().unwrap();
        append(&mut rt, &broker, vec![job]);

        // Not led, then led again (a new epoch): loaded from the log, as after a restart.
        set_leaders(&broker, &[PartitionAssignment::NO_LEADER]).await;
        rt.follow(&broker.metadata.image());
        set_leaders(&broker, &[1]).await;
        rt.follow(&broker.metadata.image());
        assert_eq!(fetch(&mut rt).0, COORDINATOR_LOAD_IN_PROGRESS);
        settle(&mut rt, &mut ch).await;
        assert_eq!(fetch(&mut rt), (0, 5));
        let epoch = offsets_partition(&broker).1.leader_epoch;
        assert_eq!(rt.led[&0].leader_epoch, epoch);

        // A commit in flight when the epoch moves on while this node still leads.
        let in_flight = commit(&mut rt, 6);
        let stale = ch.appends.try_recv().unwrap();
        set_leaders(&broker, &[PartitionAssignment::NO_LEADER, 1]).await;
        rt.follow(&broker.metadata.image());
        assert_eq!(commit_error(in_flight), NOT_COORDINATOR);
        // The reload waits until that append is done, so it reads whatever the append wrote.
        assert!(matches!(rt.led[&0].phase, Phase::Draining));
        assert_eq!(fetch(&mut rt).0, COORDINATOR_LOAD_IN_PROGRESS);
        // Meanwhile "another leader" wrote to the partition at the new epoch.
        let new_epoch = offsets_partition(&broker).1.leader_epoch;
        assert_eq!(new_epoch, epoch + 2);
        let theirs = OffsetsRecord {
            key: josefine_group::records::encode_offset_key("g", "t", 0),
            value: Some(josefine_group::records::encode_offset_value(
                &josefine_group::records::OffsetCommitValue {
                    offset: 9,
                    leader_epoch: -1,
                    metadata: String::new(),
                    commit_timestamp_ms: now_ms(),
                    expire_timestamp_ms: None,
                },
            )),
            timestamp_ms: now_ms(),
        };
        let batch = encode_batch(&[theirs]).unwrap();
        log_of(&broker).append(&batch, new_epoch, now_ms()).unwrap();
        // The stale append is refused (another epoch), and only then does the load start.
        assert_eq!(
            append(&mut rt, &broker, vec![stale]),
            [AppendOutcome::NotLeader]
        );
        assert!(matches!(rt.led[&0].phase, Phase::Loading { .. }));
        // A step or completion of an earlier load of the partition is discarded.
        let load_id = rt.led[&0].load_id;
        rt.on_internal(Internal::LoadDone {
            partition: 0,
            load_id: load_id - 1,
            ok: true,
        });
        assert_eq!(fetch(&mut rt).0, COORDINATOR_LOAD_IN_PROGRESS);
        settle(&mut rt, &mut ch).await;
        assert_eq!(
            fetch(&mut rt),
            (0, 9),
            "the reload read the other leader's commit"
        );

        // New appends are stamped with the new leader epoch.
        let acked = commit(&mut rt, 10);
        let job = ch.appends.try_recv().unwrap();
        assert_eq!(job.leader_epoch, new_epoch);
        append(&mut rt, &broker, vec![job]);
        assert_eq!(commit_error(acked), 0);
        let log = log_of(&broker);
        let last = log.log_end_offset() - 1;
        let read = log.read(last, 1 << 20, last + 1).unwrap();
        let header = BatchHeader::parse(&read.records).unwrap();
        assert_eq!(header.partition_leader_epoch, new_epoch);
        assert_eq!(fetch(&mut rt), (0, 10));
        running.shutdown().await;
    }

    /// Creates topic `t` (one partition), whose offsets the tests commit.
    async fn create_t(broker: &Arc<Broker>) -> TopicId {
        crate::controller::forward::create_topic(broker, "t", 1, 1, vec![])
            .await
            .unwrap();
        broker.metadata.image().topic_by_name("t").unwrap().topic_id
    }

    async fn delete(broker: &Arc<Broker>, topic_id: TopicId) {
        broker
            .metadata
            .propose(josefine_meta::Command::DeleteTopic { topic_id })
            .await
            .unwrap();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_topic_deletion_is_answered_only_once_its_tombstones_are_appended() {
        let (running, _dir) = start().await;
        let broker = running.broker.clone();
        let topic_id = create_t(&broker).await;
        let (mut rt, mut ch) = runtime(&broker);
        settle(&mut rt, &mut ch).await;
        commit(&mut rt, 5);
        let job = ch.appends.try_recv().unwrap();
        append(&mut rt, &broker, vec![job]);
        let log_end = log_of(&broker).log_end_offset();

        // The offsets are gone from memory at once, but the caller (DeleteTopics) waits: a
        // shutdown right after its answer must find the tombstones in the log.
        delete(&broker, topic_id).await;
        let (done, mut answered) = oneshot::channel();
        rt.on_msg(Msg::TopicDeleted { done });
        assert_eq!(fetch(&mut rt), (0, -1));
        let tombstones = ch.appends.try_recv().unwrap();
        assert!(answered.try_recv().is_err(), "answered before the append");
        assert_eq!(
            append(&mut rt, &broker, vec![tombstones]),
            [AppendOutcome::Appended]
        );
        answered.try_recv().expect("answered once appended");
        assert_eq!(log_of(&broker).log_end_offset(), log_end + 1);

        // Nothing left to delete: answered at once.
        let (done, mut answered) = oneshot::channel();
        rt.on_msg(Msg::TopicDeleted { done });
        answered.try_recv().expect("answered at once");
        assert!(ch.appends.try_recv().is_err());
        running.shutdown().await;
    }

    /// A broker that did not take the DeleteTopics in (in a cluster: any coordinator but the
    /// one that handled it) purges the offsets when its image drops the topic.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_deletion_seen_only_in_the_image_purges_the_offsets() {
        let (running, _dir) = start().await;
        let broker = running.broker.clone();
        let topic_id = create_t(&broker).await;
        let (mut rt, mut ch) = runtime(&broker);
        settle(&mut rt, &mut ch).await;
        commit(&mut rt, 5);
        let job = ch.appends.try_recv().unwrap();
        append(&mut rt, &broker, vec![job]);
        assert_eq!(fetch(&mut rt), (0, 5));

        delete(&broker, topic_id).await;
        assert_eq!(fetch(&mut rt), (0, 5), "not followed yet");
        rt.follow(&broker.metadata.image());
        assert_eq!(fetch(&mut rt), (0, -1));
        let tombstones = ch.appends.try_recv().expect("tombstones issued");
        assert_eq!(
            append(&mut rt, &broker, vec![tombstones]),
            [AppendOutcome::Appended]
        );
        running.shutdown().await;
    }
}

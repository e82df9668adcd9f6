//! The group coordinator runtime: drives the pure `josefine_group::Coordinator` with real
//! requests, time, storage and the applied metadata image.
//!
//! Owns: the one task that owns the coordinator (every call to it happens there, in order), the
//! purge of a deleted topic's committed offsets, and the creation of `__consumer_offsets` on the
//! first FindCoordinator. Handlers talk to it through [`Groups`]: they send the decoded request
//! and await its response, which may come much later (a JoinGroup waits for the rebalance).
//! That parks only the sending connection: connections serve one request at a time, as
//! Kafka's do, and clients expect exactly that.
//!
//! Which partitions: the coordinator of a group is the leader of its `__consumer_offsets`
//! partition. Following the image, loading, unloading and appending are
//! [`crate::coordinator_partitions`]'s, shared with the transaction coordinator; this runtime
//! implements its [`Serve`] over the group coordinator.
//!
//! Must never: acknowledge a commit before its append is durable (the coordinator only
//! releases a response on `on_append_complete`; a topic deletion's caller hears back once its
//! tombstones are reported), or block the coordinator task (see
//! [`crate::coordinator_partitions`] for the appends and loads).

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use josefine_group::{
    AppendId, AppendOutcome, Coordinator, Effect, GroupConfig, GroupRequest, GroupResponse,
    RequestContext, RequestId,
};
use josefine_meta::{Image, TopicId};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use tracing::{error, info};

use crate::broker::Broker;
use crate::clock::now_ms;
use crate::coordinator_partitions::{
    self, Channels, Event, Inbox, LoadItem, Partitions, Phase, Report, Serve, Waiting,
};
use crate::limits;

/// The internal topic holding group metadata and committed offsets.
pub const OFFSETS_TOPIC: &str = "__consumer_offsets";

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
        let offsets_partitions = runtime.core.coordinator_partitions;
        let (requests_tx, requests_rx) = mpsc::channel(limits::GROUP_REQUESTS_QUEUED_MAX);
        let appender = runtime.parts.spawn_appender(channels.parts.appends);
        let mut images = broker.metadata.subscribe_image();
        let image = images.borrow_and_update().clone();
        runtime.follow(&image);
        runtime.publish_stats();
        // The group coordinator has no helper tasks of its own.
        let (_, internal) = mpsc::channel(1);
        let inbox = Inbox::new(requests_rx, channels.parts.reports, internal, images);
        let task = tokio::spawn(runtime.run(inbox, appender));
        Ok(Groups {
            requests: requests_tx,
            served_topic: channels.parts.served,
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
        let s = &broker.config.broker;
        let rf = offsets_topic_replication_factor(s.offsets_topic_replication_factor);
        offsets_topic_placeable(&broker.metadata.image(), rf)?;
        coordinator_partitions::create_topic(
            broker,
            OFFSETS_TOPIC,
            self.offsets_partitions,
            rf,
            s.offsets_topic_segment_bytes,
            Vec::new(),
        )
        .await
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

/// Kafka's rule for creating `__consumer_offsets` ([`coordinator_partitions::placeable`]).
pub fn offsets_topic_placeable(image: &Image, replication_factor: i16) -> Result<(), String> {
    coordinator_partitions::placeable(
        image,
        OFFSETS_TOPIC,
        replication_factor,
        "offsets.topic.replication.factor",
    )
}

/// The receiving ends a [`Runtime`] needs besides itself.
struct RuntimeChannels {
    parts: Channels,
    stats: watch::Receiver<Arc<GroupStats>>,
}

struct Runtime {
    /// The `__consumer_offsets` partitions served, their loads and appends.
    parts: Partitions<AppendId>,
    core: Core,
}

/// The coordinator and what it answers with: [`Serve`] for [`Partitions`].
struct Core {
    broker: Arc<Broker>,
    coordinator: Coordinator,
    /// The partition count the coordinator hashes group ids over.
    coordinator_partitions: i32,
    waiting: Waiting<GroupResponse>,
    /// Every topic (name, id) in the image last followed: a topic gone from the next image was
    /// deleted and its committed offsets go, on every broker whatever took the deletion in.
    topics: BTreeMap<String, TopicId>,
    /// Transaction markers written to a partition while it loads (producer id, commit):
    /// applied once loaded, after the records the load read (which precede them).
    markers_while_loading: BTreeMap<i32, Vec<(i64, bool)>>,
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
        let (parts, channels) = Partitions::new(
            broker,
            OFFSETS_TOPIC,
            limits::GROUP_APPENDS_QUEUED_MAX,
            limits::GROUP_LOAD_STEPS_QUEUED_MAX,
        );
        // Loading until the first image is followed and published.
        let (stats_tx, stats) = watch::channel(Arc::new(GroupStats {
            loading_partitions: 1,
            ..GroupStats::default()
        }));
        let core = Core {
            broker: broker.clone(),
            coordinator,
            coordinator_partitions,
            waiting: Waiting::new(),
            topics: BTreeMap::new(),
            markers_while_loading: BTreeMap::new(),
            stats_tx,
            stats_due_ms: 0,
            stats_dirty: true,
        };
        let channels = RuntimeChannels {
            parts: channels,
            stats,
        };
        Ok((Runtime { parts, core }, channels))
    }

    async fn run(mut self, mut inbox: Inbox<Msg, Infallible>, appender: JoinHandle<()>) {
        loop {
            let deadline_ms = self
                .core
                .coordinator
                .next_deadline_ms()
                .into_iter()
                .chain(self.core.stats_dirty.then_some(self.core.stats_due_ms))
                .min();
            match inbox.next(deadline_ms).await {
                Event::Msg(None | Some(Msg::Shutdown)) => break,
                Event::Msg(Some(msg)) => self.on_msg(msg),
                Event::Report(r) => self.on_report(r),
                Event::Internal(never) => match never {},
                Event::Image(image) => self.follow(&image),
                Event::Tick => {
                    let effects = self.core.coordinator.tick(now_ms());
                    self.parts.carry_out(&mut self.core, effects);
                }
            }
            self.publish_stats();
        }
        self.parts.shutdown(inbox, appender).await;
        info!("group coordinator stopped");
    }

    /// Publishes the figures `/metrics` and `/health/ready` read: the loading count at once
    /// when it changes (readiness must not lag a load), the coordinator's figures when due.
    fn publish_stats(&mut self) {
        let loading_partitions = self.parts.loading_count();
        let core = &mut self.core;
        core.stats_dirty = true;
        let now = now_ms();
        let due = now >= core.stats_due_ms;
        let previous = core.stats_tx.borrow().clone();
        if !due && previous.loading_partitions == loading_partitions {
            return;
        }
        let coordinator = if due {
            core.stats_due_ms = now + limits::GROUP_STATS_INTERVAL_MS;
            core.stats_dirty = false;
            Arc::new(core.coordinator.stats(limits::METRICS_GROUP_LAG_SERIES_MAX))
        } else {
            previous.coordinator.clone()
        };
        core.stats_tx.send_replace(Arc::new(GroupStats {
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
                let core = &mut self.core;
                let request_id = RequestId(core.waiting.register(reply));
                let ctx = RequestContext {
                    request_id,
                    api_version: caller.api_version,
                    client_id: caller.client_id,
                    client_host: caller
                        .peer
                        .map_or_else(|| "/unknown".to_string(), |p| format!("/{}", p.ip())),
                };
                let effects = core.coordinator.handle(ctx, *request, now_ms());
                self.parts.carry_out(core, effects);
            }
            Msg::FollowImage { reply } => {
                let image = self.core.broker.metadata.image();
                self.follow(&image);
                let _ = reply.send(());
            }
            Msg::TopicDeleted { done } => {
                // The deletion is applied to the local image before its proposer returns:
                // following that image purges the topic's offsets (if the image watch has not
                // already), and the answer waits for every tombstone issued so far.
                let image = self.core.broker.metadata.image();
                self.follow(&image);
                self.parts.when_appended(done);
            }
            Msg::TxnMarker {
                partition,
                producer_id,
                commit,
                done,
            } => {
                let core = &mut self.core;
                match self.parts.phase(partition) {
                    Some(Phase::Loaded) => {
                        core.coordinator
                            .on_txn_marker(partition, producer_id, commit)
                    }
                    Some(_) => core
                        .markers_while_loading
                        .entry(partition)
                        .or_default()
                        .push((producer_id, commit)),
                    // Not led here: whoever loads it next replays the marker from the log.
                    None => {}
                }
                let _ = done.send(());
            }
            Msg::Shutdown => unreachable!("handled by the loop"),
        }
    }

    fn on_report(&mut self, report: Report) {
        self.parts.on_report(&mut self.core, report);
    }

    /// Purges the offsets of topics deleted since the last image, then brings the partitions
    /// served in line with `image`.
    fn follow(&mut self, image: &Image) {
        self.core.purge_deleted_topics(&mut self.parts, image);
        self.parts.follow(&mut self.core, image);
    }
}

impl Core {
    /// Purges the committed offsets of every topic deleted since the image last followed (a
    /// name gone, or now naming another topic id): Kafka's onPartitionsDeleted, which every
    /// broker's coordinator runs when its metadata drops the topic. `__consumer_offsets` itself
    /// is handled by [`Partitions::follow`] (everything served is unloaded).
    fn purge_deleted_topics(&mut self, parts: &mut Partitions<AppendId>, image: &Image) {
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
            parts.carry_out(self, effects);
        }
    }
}

impl Serve for Core {
    type AppendId = AppendId;
    type Effect = Effect;

    fn partition_count(&self) -> i32 {
        self.coordinator_partitions
    }

    fn fit(&mut self, count: i32) {
        let config = group_config(&self.broker, Some(count));
        match Coordinator::new(config, MEMBER_ID_SEED ^ now_ms() as u64) {
            Ok(c) => {
                self.coordinator = c;
                self.coordinator_partitions = count;
            }
            Err(e) => error!("cannot serve {OFFSETS_TOPIC} with {count} partitions: {e}"),
        }
    }

    fn begin_load(&mut self, partition: i32) -> Vec<Effect> {
        self.markers_while_loading.remove(&partition);
        self.coordinator.begin_load(partition)
    }

    fn load(&mut self, partition: i32, items: Vec<LoadItem>) {
        for item in items {
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

    fn complete_load(&mut self, partition: i32, _leader_epoch: i32) -> Result<Vec<Effect>, String> {
        let effects = self
            .coordinator
            .complete_load(partition, now_ms())
            .map_err(|e| e.to_string())?;
        // The markers written while it loaded follow the records the load read.
        let markers = self.markers_while_loading.remove(&partition);
        for (producer_id, commit) in markers.unwrap_or_default() {
            self.coordinator
                .on_txn_marker(partition, producer_id, commit);
        }
        Ok(effects)
    }

    fn unload(&mut self, partition: i32) -> Vec<Effect> {
        self.markers_while_loading.remove(&partition);
        self.coordinator.unload(partition)
    }

    fn append_done(&mut self, append_id: AppendId, outcome: AppendOutcome) -> Vec<Effect> {
        self.coordinator
            .on_append_complete(append_id, outcome, now_ms())
    }

    fn carry_out(
        &mut self,
        parts: &mut Partitions<AppendId>,
        effect: Effect,
    ) -> Result<(), (AppendId, AppendOutcome)> {
        match effect {
            Effect::Respond {
                request_id,
                response,
                ..
            } => self.waiting.respond(request_id.0, response),
            Effect::Append {
                append_id,
                partition,
                records,
                producer,
            } => {
                let submitted = parts.submit(append_id, partition, records, producer);
                return submitted.map_err(|failed| (append_id, failed));
            }
        }
        Ok(())
    }
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

    use std::time::Duration;

    use josefine_group::OffsetsRecord;
    use josefine_log::batch::BatchHeader;
    use josefine_log::PartitionLog;

    use super::*;
    use crate::config::{Config, ServeArgs};
    use crate::coordinator_partitions::{append_round, encode_batch, AppendJob};
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
        while !matches!(rt.parts.phase(0), Some(Phase::Loaded)) {
            let msg = tokio::time::timeout(wait, ch.parts.reports.recv()).await;
            rt.on_report(msg.expect("the load finishes").expect("loader alive"));
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
        let (results, waits) = append_round(broker, OFFSETS_TOPIC, jobs);
        for (partition, _, required) in waits.into_iter().flatten() {
            assert!(partition.log.high_watermark() >= required);
        }
        let outcomes = results.iter().map(|r| r.1).collect();
        rt.on_report(Report::Appended(results));
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
        let job = ch.parts.appends.try_recv().unwrap();
        assert_eq!(
            append(&mut rt, &broker, vec![job]),
            [AppendOutcome::Appended]
        );
        assert_eq!(commit_error(acked), 0);
        let log_end = log_of(&broker).log_end_offset();

        // A commit is in flight (with the appender) when the image takes the partition away.
        let mut in_flight = commit(&mut rt, 6);
        let job = ch.parts.appends.try_recv().unwrap();
        assert!(
            in_flight.try_recv().is_err(),
            "not answered before its append"
        );
        set_leaders(&broker, &[PartitionAssignment::NO_LEADER]).await;
        rt.follow(&broker.metadata.image());
        assert_eq!(commit_error(in_flight), NOT_COORDINATOR);
        assert!(rt.parts.led.is_empty());

        // The appender reaches it later: refused by the image, nothing written, nobody told.
        assert_eq!(
            append(&mut rt, &broker, vec![job]),
            [AppendOutcome::NotLeader]
        );
        assert_eq!(log_of(&broker).log_end_offset(), log_end);
        assert!(rt.parts.in_flight_count() == 0);

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
            ch.parts.appends.try_recv().is_err(),
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
        let job = ch.parts.appends.try_recv().unwrap();
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
        assert_eq!(rt.parts.led[&0].leader_epoch, epoch);

        // A commit in flight when the epoch moves on while this node still leads.
        let in_flight = commit(&mut rt, 6);
        let stale = ch.parts.appends.try_recv().unwrap();
        set_leaders(&broker, &[PartitionAssignment::NO_LEADER, 1]).await;
        rt.follow(&broker.metadata.image());
        assert_eq!(commit_error(in_flight), NOT_COORDINATOR);
        // The reload waits until that append is done, so it reads whatever the append wrote.
        assert!(matches!(rt.parts.led[&0].phase, Phase::Draining));
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
        assert!(matches!(rt.parts.led[&0].phase, Phase::Loading { .. }));
        // A step or completion of an earlier load of the partition is discarded.
        let load_id = rt.parts.led[&0].load_id;
        rt.on_report(Report::LoadDone {
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
        let job = ch.parts.appends.try_recv().unwrap();
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
        let job = ch.parts.appends.try_recv().unwrap();
        append(&mut rt, &broker, vec![job]);
        let log_end = log_of(&broker).log_end_offset();

        // The offsets are gone from memory at once, but the caller (DeleteTopics) waits: a
        // shutdown right after its answer must find the tombstones in the log.
        delete(&broker, topic_id).await;
        let (done, mut answered) = oneshot::channel();
        rt.on_msg(Msg::TopicDeleted { done });
        assert_eq!(fetch(&mut rt), (0, -1));
        let tombstones = ch.parts.appends.try_recv().unwrap();
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
        assert!(ch.parts.appends.try_recv().is_err());
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
        let job = ch.parts.appends.try_recv().unwrap();
        append(&mut rt, &broker, vec![job]);
        assert_eq!(fetch(&mut rt), (0, 5));

        delete(&broker, topic_id).await;
        assert_eq!(fetch(&mut rt), (0, 5), "not followed yet");
        rt.follow(&broker.metadata.image());
        assert_eq!(fetch(&mut rt), (0, -1));
        let tombstones = ch.parts.appends.try_recv().expect("tombstones issued");
        assert_eq!(
            append(&mut rt, &broker, vec![tombstones]),
            [AppendOutcome::Appended]
        );
        running.shutdown().await;
    }
}

//! The group coordinator runtime: drives the pure `josefine_group::Coordinator` with real
//! requests, time and storage.
//!
//! Owns: the one task that owns the coordinator (every call to it happens there, in order), the
//! appender task that writes its records to `__consumer_offsets`, the loader that replays that
//! topic into it at start-up (or when the topic first appears), and the lazy creation of the
//! topic on the first FindCoordinator. Handlers talk to it through [`Groups`]: they send the
//! decoded request and await its response, which may come much later (a JoinGroup waits for the
//! rebalance). That parks only the sending connection: connections serve one request at a
//! time, as Kafka's do, and clients expect exactly that.
//!
//! Must never: block the coordinator task on storage (appends and loads run on the blocking
//! pool via [`Broker::blocking`], and their results come back as messages), acknowledge a
//! commit before its append is durable per the log's flush policy (the coordinator only releases
//! a response on `on_append_complete`), reorder appends to one partition (one appender, FIFO:
//! compaction keeps the *last* record per key), or queue without a bound (see `limits`).

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
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
use josefine_meta::{Command, MetaError, TopicId};
use kafka_protocol::records::{
    Compression, Record, RecordBatchDecoder, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use tracing::{error, info, warn};

use crate::broker::Broker;
use crate::clock::now_ms;
use crate::handlers::create_topics::{assign_partitions, new_topic_id};
use crate::limits;

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
    /// Serve the `__consumer_offsets` topic the image names now (load it if new).
    EnsureLoaded {
        reply: oneshot::Sender<()>,
    },
    TopicDeleted {
        topic: String,
    },
    Shutdown,
}

/// Results flowing back into the coordinator task from its helpers.
enum Internal {
    Appended(Vec<(AppendId, AppendOutcome)>),
    LoadStep {
        topic_id: TopicId,
        partition: i32,
        records: Vec<(Bytes, Option<Bytes>)>,
    },
    LoadDone {
        topic_id: TopicId,
        partition: i32,
        ok: bool,
    },
}

struct AppendJob {
    append_id: AppendId,
    partition: i32,
    records: Vec<OffsetsRecord>,
}

/// Handle to the group coordinator runtime, shared by every handler.
pub struct Groups {
    requests: mpsc::Sender<Msg>,
    /// The `__consumer_offsets` topic id whose partitions the coordinator serves (or is loading).
    served_topic: watch::Receiver<Option<TopicId>>,
    /// `offsets.topic.num.partitions` in effect (the existing topic's count wins).
    offsets_partitions: i32,
    task: std::sync::Mutex<Option<JoinHandle<()>>>,
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
    /// Starts the coordinator task. If `__consumer_offsets` exists its partitions start loading
    /// at once; their groups answer COORDINATOR_LOAD_IN_PROGRESS until loaded.
    pub fn start(broker: &Arc<Broker>) -> Result<Groups, josefine_group::GroupError> {
        let image = broker.metadata.image();
        let existing = image
            .topic_by_name(OFFSETS_TOPIC)
            .map(|t| t.partitions.len() as i32);
        let config = group_config(broker, existing);
        let offsets_partitions = config.offsets_topic_partitions;
        let seed = MEMBER_ID_SEED ^ now_ms() as u64;
        let coordinator = Coordinator::new(config, seed)?;
        let (requests_tx, requests_rx) = mpsc::channel(limits::GROUP_REQUESTS_QUEUED_MAX);
        let (internal_tx, internal_rx) = mpsc::channel(limits::GROUP_LOAD_STEPS_QUEUED_MAX);
        let (appends_tx, appends_rx) = mpsc::channel(limits::GROUP_APPENDS_QUEUED_MAX);
        let (served_tx, served_rx) = watch::channel(None);
        let appender = tokio::spawn(run_appender(
            broker.clone(),
            appends_rx,
            internal_tx.clone(),
        ));
        let mut runtime = Runtime {
            broker: broker.clone(),
            coordinator,
            waiting: HashMap::new(),
            next_request_id: 1,
            served: None,
            served_tx,
            appends: appends_tx,
            internal_tx,
            loaders: Vec::new(),
        };
        runtime.ensure_loaded();
        let task = tokio::spawn(runtime.run(requests_rx, internal_rx, appender));
        Ok(Groups {
            requests: requests_tx,
            served_topic: served_rx,
            offsets_partitions,
            task: std::sync::Mutex::new(Some(task)),
        })
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
    /// FindCoordinator) and that the coordinator serves it. Errors are for the client's
    /// COORDINATOR_NOT_AVAILABLE message.
    pub async fn ensure_offsets_topic(&self, broker: &Broker) -> Result<(), String> {
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
            .send(Msg::EnsureLoaded { reply })
            .await
            .map_err(|_| "the group coordinator is shutting down".to_string())?;
        rx.await
            .map_err(|_| "the group coordinator is shutting down".to_string())
    }

    async fn create_offsets_topic(&self, broker: &Broker) -> Result<(), String> {
        let image = broker.metadata.image();
        // `offsets.topic.replication.factor` (Kafka's default 3) clamped to the registered
        // brokers (one today), where Kafka would wait until enough brokers exist.
        let rf = broker
            .config
            .broker
            .offsets_topic_replication_factor
            .min(image.brokers.len().max(1) as i16);
        let partitions = assign_partitions(&image, self.offsets_partitions, rf)?;
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
        let cmd = Command::CreateTopic {
            topic_id: new_topic_id(&image),
            name: OFFSETS_TOPIC.to_string(),
            partitions,
            configs,
        };
        match broker.metadata.propose(cmd).await {
            Ok(_) => {
                info!(
                    partitions = self.offsets_partitions,
                    "created {OFFSETS_TOPIC}"
                );
                Ok(())
            }
            Err(MetaError::TopicAlreadyExists(_)) => Ok(()),
            Err(e) => {
                error!("cannot create {OFFSETS_TOPIC}: {e}");
                Err(format!("cannot create {OFFSETS_TOPIC}: {e}"))
            }
        }
    }

    /// A topic was deleted: its committed offsets go (or, for `__consumer_offsets` itself,
    /// every group this coordinator served).
    pub async fn topic_deleted(&self, topic: &str) {
        let _ = self
            .requests
            .send(Msg::TopicDeleted {
                topic: topic.to_string(),
            })
            .await;
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

struct Runtime {
    broker: Arc<Broker>,
    coordinator: Coordinator,
    /// Responses owed, by request id: at most one per connection (one request in progress each).
    waiting: HashMap<RequestId, oneshot::Sender<GroupResponse>>,
    next_request_id: u64,
    /// The `__consumer_offsets` topic being served and its partition count.
    served: Option<(TopicId, i32)>,
    served_tx: watch::Sender<Option<TopicId>>,
    appends: mpsc::Sender<AppendJob>,
    internal_tx: mpsc::Sender<Internal>,
    /// Loader tasks, awaited at shutdown so no load reads a log while it is being closed.
    loaders: Vec<JoinHandle<()>>,
}

impl Runtime {
    async fn run(
        mut self,
        mut requests: mpsc::Receiver<Msg>,
        mut internal: mpsc::Receiver<Internal>,
        appender: JoinHandle<()>,
    ) {
        loop {
            // At least 1 ms: a timer the coordinator left due cannot make this loop spin.
            let wait_ms = self
                .coordinator
                .next_deadline_ms()
                .map(|d| (d - now_ms()).max(1) as u64);
            tokio::select! {
                msg = requests.recv() => match msg {
                    None | Some(Msg::Shutdown) => break,
                    Some(msg) => self.on_msg(msg),
                },
                Some(i) = internal.recv() => self.on_internal(i),
                _ = sleep_ms(wait_ms) => {
                    let effects = self.coordinator.tick(now_ms());
                    self.carry_out(effects);
                }
            }
        }
        // Let the appender finish what it holds, so no append races the logs' close.
        drop(self.appends);
        drop(internal);
        let _ = appender.await;
        for loader in self.loaders {
            // Its next send fails now that `internal` is gone: it stops after the current step.
            let _ = loader.await;
        }
        info!("group coordinator stopped");
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
            Msg::EnsureLoaded { reply } => {
                self.ensure_loaded();
                let _ = reply.send(());
            }
            Msg::TopicDeleted { topic } => {
                if topic == OFFSETS_TOPIC {
                    self.unload_all();
                    self.ensure_loaded();
                } else {
                    let effects = self.coordinator.on_topic_deleted(&topic, now_ms());
                    self.carry_out(effects);
                }
            }
            Msg::Shutdown => unreachable!("handled by the loop"),
        }
    }

    fn on_internal(&mut self, msg: Internal) {
        match msg {
            Internal::Appended(results) => {
                for (append_id, outcome) in results {
                    let effects = self
                        .coordinator
                        .on_append_complete(append_id, outcome, now_ms());
                    self.carry_out(effects);
                }
            }
            Internal::LoadStep {
                topic_id,
                partition,
                records,
            } => {
                if self.served.map(|s| s.0) != Some(topic_id) {
                    return; // a load of a topic we no longer serve
                }
                for (key, value) in records {
                    if let Err(e) = self
                        .coordinator
                        .load_record(partition, &key, value.as_deref())
                    {
                        // Kafka fails the load; skipping one record keeps every other group.
                        error!(partition, "skipping a {OFFSETS_TOPIC} record: {e}");
                    }
                }
            }
            Internal::LoadDone {
                topic_id,
                partition,
                ok,
            } => {
                if self.served.map(|s| s.0) != Some(topic_id) {
                    return;
                }
                if !ok {
                    // Its groups stay COORDINATOR_LOAD_IN_PROGRESS: serving half-read offsets
                    // would make consumers re-read or skip data.
                    error!(
                        partition,
                        "loading {OFFSETS_TOPIC} failed; its groups stay unavailable until restart"
                    );
                    return;
                }
                match self.coordinator.complete_load(partition, now_ms()) {
                    Ok(effects) => self.carry_out(effects),
                    Err(e) => error!(partition, "completing the load: {e}"),
                }
            }
        }
    }

    /// Starts serving the `__consumer_offsets` topic in the image, if it is not served yet.
    fn ensure_loaded(&mut self) {
        let image = self.broker.metadata.image();
        let Some(topic) = image.topic_by_name(OFFSETS_TOPIC) else {
            return;
        };
        let count = topic.partitions.len() as i32;
        if self.served == Some((topic.topic_id, count)) {
            return;
        }
        self.unload_all();
        if count != self.coordinator_partitions() {
            // Created by a client with another partition count: hash groups over what exists.
            warn!(
                count,
                "{OFFSETS_TOPIC} has a partition count other than offsets.topic.num.partitions"
            );
            let config = group_config(&self.broker, Some(count));
            match Coordinator::new(config, MEMBER_ID_SEED ^ now_ms() as u64) {
                Ok(c) => self.coordinator = c,
                Err(e) => {
                    error!("cannot serve {OFFSETS_TOPIC} with {count} partitions: {e}");
                    return;
                }
            }
        }
        let mut mine = Vec::new();
        for p in &topic.partitions {
            // The leader serves the partition's groups; one node leads everything for now.
            if p.replicas.first() == Some(&self.broker.config.node_id) {
                let effects = self.coordinator.begin_load(p.partition);
                self.carry_out(effects);
                mine.push(p.partition);
            }
        }
        self.served = Some((topic.topic_id, count));
        self.served_tx.send_replace(Some(topic.topic_id));
        info!(partitions = mine.len(), "loading {OFFSETS_TOPIC}");
        self.loaders.retain(|l| !l.is_finished());
        self.loaders.push(tokio::spawn(run_loader(
            self.broker.clone(),
            topic.topic_id,
            mine,
            self.internal_tx.clone(),
        )));
    }

    fn coordinator_partitions(&self) -> i32 {
        // Any group id hashes into [0, count); the count itself is the config's.
        self.served.map_or_else(
            || group_config(&self.broker, None).offsets_topic_partitions,
            |s| s.1,
        )
    }

    fn unload_all(&mut self) {
        if let Some((_, count)) = self.served.take() {
            for p in 0..count {
                let effects = self.coordinator.unload(p);
                self.carry_out(effects);
            }
            self.served_tx.send_replace(None);
        }
    }

    /// Carries out effects, including those of appends failed at once (queue full).
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
                } => {
                    let job = AppendJob {
                        append_id,
                        partition,
                        records,
                    };
                    if self.appends.try_send(job).is_err() {
                        warn!("{OFFSETS_TOPIC} append queue full; failing the append");
                        let more = self.coordinator.on_append_complete(
                            append_id,
                            AppendOutcome::Unavailable,
                            now_ms(),
                        );
                        work.extend(more);
                    }
                }
            }
        }
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
        let results = broker.blocking(move || append_round(&b, round)).await;
        broker.notify_append();
        if done.send(Internal::Appended(results)).await.is_err() {
            return; // the coordinator stopped
        }
    }
}

fn append_round(broker: &Broker, round: Vec<AppendJob>) -> Vec<(AppendId, AppendOutcome)> {
    let image = broker.metadata.image();
    let topic_id = image.topic_by_name(OFFSETS_TOPIC).map(|t| t.topic_id);
    let now = now_ms();
    let mut results = Vec::with_capacity(round.len());
    // Logs to flush after the round, and for each result the log it waits on.
    let mut to_flush: Vec<Arc<PartitionLog>> = Vec::new();
    let mut flush_of: Vec<Option<usize>> = Vec::with_capacity(round.len());
    for job in round {
        let log = topic_id.and_then(|id| broker.partitions.get(id, job.partition));
        let Some(log) = log.map(|p| p.log.clone()) else {
            results.push((job.append_id, AppendOutcome::NotLeader));
            flush_of.push(None);
            continue;
        };
        let outcome = match encode_batch(&job.records) {
            Err(e) => {
                error!("cannot encode {OFFSETS_TOPIC} records: {e:#}");
                AppendOutcome::TooLarge
            }
            Ok(batch) => match log.append(&batch, LEADER_EPOCH, now) {
                Ok(_) => AppendOutcome::Appended,
                Err(e) => append_outcome(job.partition, &e),
            },
        };
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
        results.push((job.append_id, outcome));
        flush_of.push(waits_on);
    }
    // One flush per partition after all of the round's appends (a group commit).
    for (i, log) in to_flush.iter().enumerate() {
        if let Err(e) = log.flush() {
            error!("flushing {OFFSETS_TOPIC}: {e}");
            for (result, waits_on) in results.iter_mut().zip(&flush_of) {
                if *waits_on == Some(i) {
                    result.1 = AppendOutcome::Unavailable;
                }
            }
        }
    }
    results
}

/// Leader epoch stamped into the batches (as produce: epoch 0 until leader changes exist).
const LEADER_EPOCH: i32 = 0;

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
    let records: Vec<Record> = records
        .iter()
        .enumerate()
        .map(|(i, r)| Record {
            transactional: false,
            control: false,
            delete_horizon: false,
            partition_leader_epoch: -1,
            producer_id: -1,
            producer_epoch: -1,
            timestamp_type: TimestampType::Creation,
            offset: i as i64,
            // The encoder derives the base sequence from the first record and starts a new
            // batch when offset - sequence changes: sequence i-1 gives base sequence -1 (none)
            // and keeps every record in one batch.
            sequence: i as i32 - 1,
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
/// step at a time, then reports it done.
async fn run_loader(
    broker: Arc<Broker>,
    topic_id: TopicId,
    partitions: Vec<i32>,
    tx: mpsc::Sender<Internal>,
) {
    for partition in partitions {
        let ok = load_partition(&broker, topic_id, partition, &tx).await;
        let done = Internal::LoadDone {
            topic_id,
            partition,
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
    partition: i32,
    tx: &mpsc::Sender<Internal>,
) -> bool {
    let Some(p) = broker.partitions.get(topic_id, partition) else {
        error!(partition, "{OFFSETS_TOPIC} partition log is not open");
        return false;
    };
    let log = p.log.clone();
    let (mut from, end) = (log.log_start_offset(), log.log_end_offset());
    while from < end {
        let l = log.clone();
        let step = broker.blocking(move || read_step(&l, from, end)).await;
        match step {
            Ok((records, next)) => {
                assert!(next > from, "a load step must advance");
                from = next;
                let msg = Internal::LoadStep {
                    topic_id,
                    partition,
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
type LoadStep = (Vec<(Bytes, Option<Bytes>)>, i64);

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
            continue;
        }
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
                    .filter_map(|r| r.key.map(|k| (k, r.value))),
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

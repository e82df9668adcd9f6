//! The transaction coordinator runtime: drives the pure `josefine_txn::Coordinator` with real
//! requests, time, storage, the applied metadata image and the other brokers.
//!
//! Owns: the one task that owns the coordinator (every call to it happens there, in order), the
//! appender task that writes its records to `__transaction_state`, the loaders that replay a
//! partition of that topic into it, the marker senders (WriteTxnMarkers to every partition
//! leader: the local handler for partitions led here, a Kafka request over a [`Peer`] for the
//! others), producer id blocks for it (from the controller, as the idempotent path gets them),
//! and the creation of the topic on the first FindCoordinator with key type 1. Handlers talk to
//! it through [`Txn`]: they send the decoded request and await its response, which may come
//! much later (an InitProducerId that aborts an ongoing transaction first).
//!
//! Placement follows `crate::groups`: the coordinator of a transactional id is the leader of
//! partition `partition_for(id)` of `__transaction_state`; a partition this node starts leading
//! is loaded (its ids answer COORDINATOR_LOAD_IN_PROGRESS meanwhile), one it stops leading is
//! unloaded (NOT_COORDINATOR), and one whose leader epoch changed is unloaded and loaded again.
//! The coordinator epoch every marker carries is that leader epoch.
//!
//! Must never: append to a partition this node does not lead at the epoch its state was loaded
//! at (the appender checks the image right before each append and stamps that epoch), report an
//! append durable before the high watermark covers it (acks=all: the coordinator answers
//! EndTxn only once Prepare* is durable), block the coordinator task on storage or the network
//! (appends, loads and markers run in their own tasks and report back as messages), reorder
//! appends to one partition (one appender, FIFO), or queue without a bound (see `limits`).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use josefine_group::OffsetsRecord;
use josefine_log::batch::BatchHeader;
use josefine_log::limits::BATCH_HEADER_BYTES;
use josefine_log::PartitionLog;
use josefine_meta::{Image, TopicId};
use josefine_txn::{
    AppendId, AppendOutcome, Coordinator, Effect, MarkerId, MarkerResult, RequestContext,
    RequestId, TopicPartition, TxnConfig, TxnRecord, TxnRequest, TxnResponse,
};
use kafka_protocol::messages::write_txn_markers_request::{
    WritableTxnMarker, WritableTxnMarkerTopic,
};
use kafka_protocol::messages::{
    ApiKey, ProducerId, RequestKind, ResponseKind, TopicName, WriteTxnMarkersRequest,
    WriteTxnMarkersResponse,
};
use kafka_protocol::records::{Compression, RecordBatchDecoder};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use tracing::{error, info, warn};

use crate::broker::Broker;
use crate::clock::now_ms;
use crate::controller::forward;
use crate::handlers::{self, code};
use crate::leadership;
use crate::limits;
use crate::replication::leader::LeaderAppendError;
use crate::replication::peer::Peer;

/// The internal topic holding the transaction coordinator's state.
pub const TRANSACTION_STATE_TOPIC: &str = "__transaction_state";

/// Kafka 4's floor for the `segment.bytes` topic config (1 MiB).
const SEGMENT_BYTES_TOPIC_MIN: u64 = 1024 * 1024;

/// The transaction version coordinator-initiated aborts use. Josefine finalizes no
/// `transaction.version` feature yet (ApiVersions lists none), so clients run transactions
/// version 1 (Java with no finalized feature, librdkafka always); TV2 waits for Produce v12's
/// implicit add (issue 16).
const TRANSACTION_VERSION: i16 = 1;

enum Msg {
    Request {
        api_version: i16,
        unknown_partitions: BTreeSet<TopicPartition>,
        /// Boxed: requests are large and most messages are not requests.
        request: Box<TxnRequest>,
        reply: oneshot::Sender<TxnResponse>,
    },
    /// Follow the image the store holds now (without waiting for the watch to deliver it).
    FollowImage {
        reply: oneshot::Sender<()>,
    },
    Shutdown,
}

/// Names one append handed to the appender (the coordinator's [`AppendId`]s restart with a
/// new coordinator; these never do).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
struct JobId(u64);

/// Results flowing back into the coordinator task from its helpers.
enum Internal {
    Appended(JobId, AppendOutcome),
    Markers(MarkerId, Vec<(TopicPartition, MarkerResult)>),
    ProducerIds(Option<(i64, u64)>),
    LoadStep {
        partition: i32,
        load_id: u64,
        records: Vec<(Bytes, Option<Bytes>)>,
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
    leader_epoch: i32,
    records: Vec<TxnRecord>,
}

/// One `__transaction_state` partition this node leads per the image last followed.
struct Led {
    leader_epoch: i32,
    load_id: u64,
    phase: Phase,
}

enum Phase {
    /// Waiting for appends issued before the load to finish, so the loader reads them.
    Draining,
    Loading {
        cancelled: Arc<AtomicBool>,
    },
    Loaded,
}

/// An append handed to the appender and not reported back yet.
struct InFlight {
    partition: i32,
    /// `None` once its caller was told NotLeader at an unload.
    append_id: Option<AppendId>,
}

/// Handle to the transaction coordinator runtime, shared by every handler.
pub struct Txn {
    requests: mpsc::Sender<Msg>,
    served_topic: watch::Receiver<Option<TopicId>>,
    /// Partitions of `__transaction_state` the coordinator hashes ids over.
    state_partitions: i32,
    task: std::sync::Mutex<Option<JoinHandle<()>>>,
    /// Connections to other brokers' coordinators, for produce verification.
    peers: Arc<PeerPool>,
}

/// The coordinator settings from the broker's (Kafka-named) settings.
fn txn_config(broker: &Broker, partitions: Option<i32>) -> TxnConfig {
    let s = &broker.config.broker;
    let existing_offsets = broker
        .metadata
        .image()
        .topic_by_name(crate::groups::OFFSETS_TOPIC)
        .map(|t| t.partitions.len() as i32);
    TxnConfig {
        state_log_partitions: partitions.unwrap_or(s.transaction_state_log_num_partitions),
        offsets_topic_partitions: existing_offsets.unwrap_or(s.offsets_topic_num_partitions),
        max_timeout_ms: s.transaction_max_timeout_ms,
        transactional_id_expiration_ms: s.transactional_id_expiration_ms,
        abort_timed_out_transaction_cleanup_interval_ms: s
            .transaction_abort_timed_out_transaction_cleanup_interval_ms,
        remove_expired_transaction_cleanup_interval_ms: s
            .transaction_remove_expired_transaction_cleanup_interval_ms,
        transaction_version: TRANSACTION_VERSION,
        ..TxnConfig::default()
    }
}

impl Txn {
    /// Starts the coordinator task; the `__transaction_state` partitions this node leads start
    /// loading at once.
    pub fn start(broker: &Arc<Broker>) -> Result<Txn, josefine_txn::TxnError> {
        let existing = broker
            .metadata
            .image()
            .topic_by_name(TRANSACTION_STATE_TOPIC)
            .map(|t| t.partitions.len() as i32);
        let config = txn_config(broker, existing);
        let state_partitions = config.state_log_partitions;
        let coordinator = Coordinator::new(config)?;
        let (internal_tx, internal) = mpsc::channel(limits::TXN_INTERNAL_QUEUED_MAX);
        let (appends_tx, appends) = mpsc::channel(limits::TXN_APPENDS_QUEUED_MAX);
        let (served_tx, served_topic) = watch::channel(None);
        let (requests_tx, requests_rx) = mpsc::channel(limits::TXN_REQUESTS_QUEUED_MAX);
        let appender = tokio::spawn(run_appender(broker.clone(), appends, internal_tx.clone()));
        let mut runtime = Runtime {
            broker: broker.clone(),
            coordinator,
            state_partitions,
            waiting: HashMap::new(),
            next_request_id: 1,
            served: None,
            served_tx,
            followed_position: None,
            led: BTreeMap::new(),
            next_load_id: 1,
            in_flight: BTreeMap::new(),
            next_job: 1,
            appends: appends_tx,
            internal_tx,
            loaders: Vec::new(),
            peers: Arc::new(PeerPool::new("josefine-txn-markers")),
        };
        let mut images = broker.metadata.subscribe_image();
        let image = images.borrow_and_update().clone();
        runtime.follow(&image);
        let task = tokio::spawn(runtime.run(requests_rx, internal, images, appender));
        Ok(Txn {
            requests: requests_tx,
            served_topic,
            state_partitions,
            task: std::sync::Mutex::new(Some(task)),
            peers: Arc::new(PeerPool::new("josefine-txn-verify")),
        })
    }

    /// Partitions of `__transaction_state` (what `partition_for` hashes over).
    pub fn state_partitions(&self) -> i32 {
        self.state_partitions
    }

    /// Hands a request to the coordinator and waits for its response. `None` when the
    /// coordinator is shutting down (the connection then closes, and the client reconnects).
    pub async fn call(
        &self,
        api_version: i16,
        unknown_partitions: BTreeSet<TopicPartition>,
        request: TxnRequest,
    ) -> Option<TxnResponse> {
        let (reply, rx) = oneshot::channel();
        self.requests
            .send(Msg::Request {
                api_version,
                unknown_partitions,
                request: Box::new(request),
                reply,
            })
            .await
            .ok()?;
        rx.await.ok()
    }

    /// Makes sure `__transaction_state` exists (creating it as Kafka does on the first
    /// FindCoordinator for a transactional id) and that the coordinator task follows an image
    /// holding it. Errors are for the client's COORDINATOR_NOT_AVAILABLE message.
    pub async fn ensure_state_topic(&self, broker: &Arc<Broker>) -> Result<(), String> {
        let topic_id = match broker
            .metadata
            .image()
            .topic_by_name(TRANSACTION_STATE_TOPIC)
        {
            Some(t) => t.topic_id,
            None => {
                self.create_state_topic(broker).await?;
                match broker
                    .metadata
                    .image()
                    .topic_by_name(TRANSACTION_STATE_TOPIC)
                {
                    Some(t) => t.topic_id,
                    None => {
                        return Err(format!(
                            "{TRANSACTION_STATE_TOPIC} was deleted while created"
                        ))
                    }
                }
            }
        };
        if *self.served_topic.borrow() == Some(topic_id) {
            return Ok(());
        }
        let (reply, rx) = oneshot::channel();
        let stopping = |_| "the transaction coordinator is shutting down".to_string();
        self.requests
            .send(Msg::FollowImage { reply })
            .await
            .map_err(|_| stopping(()))?;
        rx.await.map_err(|_| stopping(()))
    }

    async fn create_state_topic(&self, broker: &Arc<Broker>) -> Result<(), String> {
        let s = &broker.config.broker;
        let rf = crate::groups::offsets_topic_replication_factor(
            s.transaction_state_log_replication_factor,
        );
        let eligible = broker.metadata.image().eligible_brokers().count();
        if (eligible as i64) < i64::from(rf) {
            return Err(format!(
                "{TRANSACTION_STATE_TOPIC} needs {rf} unfenced broker(s) \
                 (transaction.state.log.replication.factor) and {eligible} are"
            ));
        }
        let segment_bytes = s.transaction_state_log_segment_bytes;
        let segment_key = if segment_bytes < SEGMENT_BYTES_TOPIC_MIN {
            "internal.segment.bytes"
        } else {
            "segment.bytes"
        };
        let configs = vec![
            ("cleanup.policy".to_string(), "compact".to_string()),
            (segment_key.to_string(), segment_bytes.to_string()),
            ("compression.type".to_string(), "producer".to_string()),
            (
                "min.insync.replicas".to_string(),
                s.transaction_state_log_min_isr.min(rf).to_string(),
            ),
            (
                "unclean.leader.election.enable".to_string(),
                "false".to_string(),
            ),
        ];
        match forward::create_topic(
            broker,
            TRANSACTION_STATE_TOPIC,
            self.state_partitions,
            rf,
            configs,
        )
        .await
        {
            Ok(()) => {
                info!(
                    partitions = self.state_partitions,
                    "{TRANSACTION_STATE_TOPIC} exists"
                );
                Ok(())
            }
            Err((code, message)) => {
                error!(code, "cannot create {TRANSACTION_STATE_TOPIC}: {message}");
                Err(format!(
                    "cannot create {TRANSACTION_STATE_TOPIC}: {message}"
                ))
            }
        }
    }

    /// The broker coordinating `transactional_id` per the image (its state partition's leader),
    /// if live.
    pub fn coordinator_of(
        &self,
        image: &Image,
        transactional_id: &str,
    ) -> Option<josefine_meta::BrokerRegistration> {
        let partition = josefine_group::partition_for(transactional_id, self.state_partitions);
        let topic = image.topic_by_name(TRANSACTION_STATE_TOPIC)?;
        let led = leadership::leader_of(image, topic.topic_id, partition);
        leadership::live_broker(image, led.leader_id).cloned()
    }

    /// Stops the coordinator and waits until no append is in flight.
    pub async fn shutdown(&self) {
        let _ = self.requests.send(Msg::Shutdown).await;
        let task = self.task.lock().expect("txn task lock").take();
        if let Some(task) = task {
            let _ = task.await;
        }
    }
}

/// Connections to other brokers, one per broker, one call at a time each. The coordinator's
/// markers and a leader's verifications use separate pools, so a produce never waits behind a
/// marker write (which waits for its high watermark).
struct PeerPool {
    peers: std::sync::Mutex<HashMap<(i32, String), SharedPeer>>,
    /// The client id the connections announce.
    client_id: &'static str,
}

/// One connection, locked for the length of a call.
type SharedPeer = Arc<tokio::sync::Mutex<Peer>>;

impl PeerPool {
    fn new(client_id: &'static str) -> PeerPool {
        PeerPool {
            peers: std::sync::Mutex::new(HashMap::new()),
            client_id,
        }
    }

    fn get(&self, node_id: i32, addr: String) -> SharedPeer {
        let mut peers = self.peers.lock().expect("marker peers lock");
        peers
            .entry((node_id, addr.clone()))
            .or_insert_with(|| {
                Arc::new(tokio::sync::Mutex::new(Peer::new(
                    addr,
                    self.client_id.to_string(),
                )))
            })
            .clone()
    }
}

struct Runtime {
    broker: Arc<Broker>,
    coordinator: Coordinator,
    state_partitions: i32,
    waiting: HashMap<RequestId, oneshot::Sender<TxnResponse>>,
    next_request_id: u64,
    served: Option<(TopicId, i32)>,
    served_tx: watch::Sender<Option<TopicId>>,
    followed_position: Option<u64>,
    led: BTreeMap<i32, Led>,
    next_load_id: u64,
    in_flight: BTreeMap<JobId, InFlight>,
    next_job: u64,
    appends: mpsc::Sender<AppendJob>,
    internal_tx: mpsc::Sender<Internal>,
    loaders: Vec<JoinHandle<()>>,
    peers: Arc<PeerPool>,
}

impl Runtime {
    async fn run(
        mut self,
        mut requests: mpsc::Receiver<Msg>,
        mut internal: mpsc::Receiver<Internal>,
        mut images: watch::Receiver<Arc<Image>>,
        appender: JoinHandle<()>,
    ) {
        // A first block of producer ids, so the first InitProducerId need not wait for one;
        // only where transactions are in use (no block, hence no chain command, on every start
        // of a broker that never served one). Otherwise the coordinator asks on first need and
        // the client retries COORDINATOR_LOAD_IN_PROGRESS meanwhile.
        if self.served.is_some() {
            self.allocate_producer_ids();
        }
        let mut following = true;
        loop {
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
                changed = images.changed(), if following => match changed {
                    Ok(()) => {
                        let image = images.borrow_and_update().clone();
                        self.follow(&image);
                    }
                    Err(_) => following = false,
                },
                _ = sleep_ms(wait_ms) => {
                    let effects = self.coordinator.tick(now_ms());
                    self.carry_out(effects);
                }
            }
        }
        for led in self.led.values() {
            if let Phase::Loading { cancelled } = &led.phase {
                cancelled.store(true, Ordering::Relaxed);
            }
        }
        drop(self.appends);
        drop(internal);
        let _ = appender.await;
        for loader in self.loaders {
            let _ = loader.await;
        }
        info!("transaction coordinator stopped");
    }

    fn on_msg(&mut self, msg: Msg) {
        match msg {
            Msg::Request {
                api_version,
                unknown_partitions,
                request,
                reply,
            } => {
                let request_id = RequestId(self.next_request_id);
                self.next_request_id += 1;
                let ctx = RequestContext {
                    request_id,
                    api_version,
                    unknown_partitions,
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
            Msg::Shutdown => unreachable!("handled by the loop"),
        }
    }

    fn on_internal(&mut self, msg: Internal) {
        match msg {
            Internal::Appended(job, outcome) => {
                let done = self
                    .in_flight
                    .remove(&job)
                    .unwrap_or_else(|| panic!("append {job:?} reported twice or never sent"));
                if let Some(append_id) = done.append_id {
                    let effects = self
                        .coordinator
                        .on_append_complete(append_id, outcome, now_ms());
                    self.carry_out(effects);
                }
                self.start_drained_loads();
            }
            Internal::Markers(marker_id, results) => {
                let effects = self
                    .coordinator
                    .on_markers_complete(marker_id, results, now_ms());
                self.carry_out(effects);
            }
            Internal::ProducerIds(Some((first, count))) => {
                let effects = self.coordinator.on_producer_ids(first, count);
                self.carry_out(effects);
            }
            Internal::ProducerIds(None) => self.coordinator.on_producer_ids_failed(),
            Internal::LoadStep {
                partition,
                load_id,
                records,
            } => {
                if !self.is_loading(partition, load_id) {
                    return;
                }
                for (key, value) in records {
                    if let Err(e) = self
                        .coordinator
                        .load_record(partition, &key, value.as_deref())
                    {
                        error!(
                            partition,
                            "skipping a {TRANSACTION_STATE_TOPIC} record: {e}"
                        );
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
                    error!(
                        partition,
                        "loading {TRANSACTION_STATE_TOPIC} failed; its ids stay unavailable until its leadership changes"
                    );
                    return;
                }
                let epoch = self.led[&partition].leader_epoch;
                match self.coordinator.complete_load(partition, epoch, now_ms()) {
                    Ok(effects) => {
                        if let Some(led) = self.led.get_mut(&partition) {
                            led.phase = Phase::Loaded;
                        }
                        info!(
                            partition,
                            epoch, "{TRANSACTION_STATE_TOPIC} partition loaded"
                        );
                        self.carry_out(effects);
                    }
                    Err(e) => error!(partition, "completing the load: {e}"),
                }
            }
        }
    }

    fn is_loading(&self, partition: i32, load_id: u64) -> bool {
        self.led
            .get(&partition)
            .is_some_and(|led| led.load_id == load_id && matches!(led.phase, Phase::Loading { .. }))
    }

    /// Brings the partitions served in line with `image` (see the module docs).
    fn follow(&mut self, image: &Image) {
        if self.followed_position.is_some_and(|p| image.position < p) {
            return;
        }
        self.followed_position = Some(image.position);
        let topic = image.topic_by_name(TRANSACTION_STATE_TOPIC);
        let served = topic.map(|t| (t.topic_id, t.partitions.len() as i32));
        if served != self.served {
            self.unload_all();
            self.served = served;
            self.served_tx.send_replace(served.map(|s| s.0));
            if let Some((_, count)) = served {
                if count != self.state_partitions {
                    warn!(
                        count,
                        "{TRANSACTION_STATE_TOPIC} has a partition count other than transaction.state.log.num.partitions"
                    );
                    match Coordinator::new(txn_config(&self.broker, Some(count))) {
                        Ok(c) => {
                            self.coordinator = c;
                            self.state_partitions = count;
                            self.allocate_producer_ids();
                        }
                        Err(e) => error!("cannot serve {TRANSACTION_STATE_TOPIC}: {e}"),
                    }
                }
            }
        }
        let Some(topic) = topic else {
            return;
        };
        if topic.partitions.len() as i32 != self.state_partitions {
            return;
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
                "{TRANSACTION_STATE_TOPIC} leadership changed"
            );
        }
        let ready: Vec<LoadTask> = gained
            .into_iter()
            .filter_map(|(partition, epoch)| self.begin_load(partition, epoch))
            .collect();
        self.spawn_loader(ready);
    }

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
        self.led.insert(
            partition,
            Led {
                leader_epoch,
                load_id,
                phase,
            },
        );
        task
    }

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

    fn allocate_producer_ids(&self) {
        let broker = self.broker.clone();
        let tx = self.internal_tx.clone();
        tokio::spawn(async move {
            let block = match broker.fetch_producer_id_block().await {
                Ok((first, count)) => Some((first, count.max(0) as u64)),
                Err(e) => {
                    warn!("allocating producer ids for the transaction coordinator: {e}");
                    None
                }
            };
            let _ = tx.send(Internal::ProducerIds(block)).await;
        });
    }

    fn carry_out(&mut self, effects: Vec<Effect>) {
        let mut work: std::collections::VecDeque<Effect> = effects.into();
        while let Some(effect) = work.pop_front() {
            match effect {
                Effect::Respond {
                    request_id,
                    response,
                    ..
                } => {
                    if let Some(reply) = self.waiting.remove(&request_id) {
                        let _ = reply.send(response);
                    }
                }
                Effect::Append {
                    append_id,
                    partition,
                    records,
                } => {
                    let failed = match self.append_job(partition, records) {
                        Some(job) => {
                            let id = job.job;
                            match self.appends.try_send(job) {
                                Ok(()) => {
                                    self.in_flight.insert(
                                        id,
                                        InFlight {
                                            partition,
                                            append_id: Some(append_id),
                                        },
                                    );
                                    continue;
                                }
                                Err(_) => {
                                    warn!("{TRANSACTION_STATE_TOPIC} append queue full; failing the append");
                                    AppendOutcome::Unavailable
                                }
                            }
                        }
                        None => AppendOutcome::NotLeader,
                    };
                    work.extend(
                        self.coordinator
                            .on_append_complete(append_id, failed, now_ms()),
                    );
                }
                Effect::SendMarkers {
                    marker_id,
                    transactional_id: _,
                    producer_id,
                    producer_epoch,
                    coordinator_epoch,
                    commit,
                    partitions,
                } => {
                    let marker = MarkerJob {
                        producer_id,
                        producer_epoch,
                        coordinator_epoch,
                        commit,
                        partitions,
                    };
                    let broker = self.broker.clone();
                    let peers = self.peers.clone();
                    let tx = self.internal_tx.clone();
                    tokio::spawn(async move {
                        let results = send_markers(&broker, &peers, marker).await;
                        let _ = tx.send(Internal::Markers(marker_id, results)).await;
                    });
                }
                Effect::AllocateProducerIds => self.allocate_producer_ids(),
            }
        }
    }

    fn append_job(&mut self, partition: i32, records: Vec<TxnRecord>) -> Option<AppendJob> {
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

/// Writes coordinator records in queue order; each job's wait for the high watermark runs on
/// its own, so one slow replication does not hold back the appends behind it.
async fn run_appender(
    broker: Arc<Broker>,
    mut jobs: mpsc::Receiver<AppendJob>,
    done: mpsc::Sender<Internal>,
) {
    while let Some(job) = jobs.recv().await {
        let b = broker.clone();
        let job_id = job.job;
        let (outcome, wait) = broker.blocking(move || append_one(&b, job)).await;
        broker.notify_append();
        let done = done.clone();
        match wait {
            None => {
                if done
                    .send(Internal::Appended(job_id, outcome))
                    .await
                    .is_err()
                {
                    return;
                }
            }
            Some((partition, leader_epoch, required)) => {
                tokio::spawn(async move {
                    let timeout = Duration::from_millis(limits::TXN_APPEND_COMMIT_TIMEOUT_MS);
                    let outcome = match partition
                        .wait_for_high_watermark(leader_epoch, required, timeout)
                        .await
                    {
                        0 => AppendOutcome::Appended,
                        code::NOT_LEADER_OR_FOLLOWER => AppendOutcome::NotLeader,
                        _ => AppendOutcome::Unavailable,
                    };
                    let _ = done.send(Internal::Appended(job_id, outcome)).await;
                });
            }
        }
    }
}

type HighWatermarkWait = Option<(Arc<crate::partitions::Partition>, i32, i64)>;

fn append_one(broker: &Broker, job: AppendJob) -> (AppendOutcome, HighWatermarkWait) {
    let image = broker.metadata.image();
    let leads = image
        .partition(job.topic_id, job.partition)
        .filter(|p| p.leader == broker.config.node_id)
        .map(|p| p.leader_epoch);
    let partition = match leads == Some(job.leader_epoch) {
        true => broker.partitions.get(job.topic_id, job.partition),
        false => None,
    };
    let Some(partition) = partition else {
        return (AppendOutcome::NotLeader, None);
    };
    let records: Vec<OffsetsRecord> = job
        .records
        .into_iter()
        .map(|r| OffsetsRecord {
            key: r.key,
            value: r.value,
            timestamp_ms: r.timestamp_ms,
        })
        .collect();
    let batch = match crate::groups::encode_batch(&records) {
        Ok(b) => b,
        Err(e) => {
            error!("cannot encode {TRANSACTION_STATE_TOPIC} records: {e:#}");
            return (AppendOutcome::TooLarge, None);
        }
    };
    let outcome = match partition.append_as_leader(&batch, job.leader_epoch, true, now_ms()) {
        Ok(o) => o,
        Err(LeaderAppendError::Log(e)) => {
            warn!(
                partition = job.partition,
                "{TRANSACTION_STATE_TOPIC} append failed: {e}"
            );
            let outcome = match e {
                josefine_log::LogError::MessageTooLarge { .. }
                | josefine_log::LogError::RecordListTooLarge(_) => AppendOutcome::TooLarge,
                _ => AppendOutcome::Unavailable,
            };
            return (outcome, None);
        }
        Err(LeaderAppendError::NotLeader) => return (AppendOutcome::NotLeader, None),
        Err(LeaderAppendError::NotEnoughReplicas { .. }) => {
            return (AppendOutcome::Unavailable, None)
        }
    };
    if partition.log.needs_flush_after_append() {
        if let Err(e) = crate::metrics::timed_flush(&partition.log) {
            error!("flushing {TRANSACTION_STATE_TOPIC}: {e}");
            return (AppendOutcome::Unavailable, None);
        }
    }
    (
        AppendOutcome::Appended,
        Some((partition, job.leader_epoch, outcome.last_offset + 1)),
    )
}

// ---- Markers ---------------------------------------------------------------------------------

struct MarkerJob {
    producer_id: i64,
    producer_epoch: i16,
    coordinator_epoch: i32,
    commit: bool,
    partitions: Vec<TopicPartition>,
}

/// Sends one transaction's markers: one WriteTxnMarkers request per partition leader, all at
/// once, and reads each partition's result the way Kafka's marker channel does.
async fn send_markers(
    broker: &Arc<Broker>,
    peers: &Arc<PeerPool>,
    marker: MarkerJob,
) -> Vec<(TopicPartition, MarkerResult)> {
    let image = broker.metadata.image();
    let mut results = Vec::new();
    let mut by_leader: BTreeMap<i32, Vec<TopicPartition>> = BTreeMap::new();
    for tp in marker.partitions {
        let Some(topic) = image.topic_by_name(&tp.topic) else {
            results.push((tp, MarkerResult::PartitionGone));
            continue;
        };
        if image.partition(topic.topic_id, tp.partition).is_none() {
            results.push((tp, MarkerResult::PartitionGone));
            continue;
        }
        let led = leadership::leader_of(&image, topic.topic_id, tp.partition);
        match leadership::live_broker(&image, led.leader_id) {
            Some(_) => by_leader.entry(led.leader_id).or_default().push(tp),
            None => results.push((tp, MarkerResult::Retriable)),
        }
    }
    let mut sends = tokio::task::JoinSet::new();
    for (leader, partitions) in by_leader {
        let mut topics: BTreeMap<String, Vec<i32>> = BTreeMap::new();
        for tp in &partitions {
            topics
                .entry(tp.topic.clone())
                .or_default()
                .push(tp.partition);
        }
        let request =
            WriteTxnMarkersRequest::default().with_markers(vec![WritableTxnMarker::default()
                .with_producer_id(ProducerId(marker.producer_id))
                .with_producer_epoch(marker.producer_epoch)
                .with_transaction_result(marker.commit)
                .with_coordinator_epoch(marker.coordinator_epoch)
                .with_topics(
                    topics
                        .into_iter()
                        .map(|(name, partition_indexes)| {
                            WritableTxnMarkerTopic::default()
                                .with_name(TopicName(handlers::str_bytes(name)))
                                .with_partition_indexes(partition_indexes)
                        })
                        .collect(),
                )]);
        let addr =
            leadership::live_broker(&image, leader).map(|b| format!("{}:{}", b.host, b.port));
        let broker = broker.clone();
        let peers = peers.clone();
        sends.spawn(async move {
            let answer = if leader == broker.config.node_id {
                Ok(handlers::write_txn_markers::handle(&broker, request).await)
            } else {
                let addr = addr.expect("a live leader has an address");
                call_write_txn_markers(&peers, leader, addr, request).await
            };
            read_marker_results(partitions, answer)
        });
    }
    while let Some(r) = sends.join_next().await {
        match r {
            Ok(r) => results.extend(r),
            Err(e) => std::panic::resume_unwind(e.into_panic()),
        }
    }
    results
}

async fn call_write_txn_markers(
    peers: &PeerPool,
    node_id: i32,
    addr: String,
    request: WriteTxnMarkersRequest,
) -> Result<WriteTxnMarkersResponse, String> {
    let peer = peers.get(node_id, addr);
    let mut peer = peer.lock().await;
    let deadline = tokio::time::Instant::now()
        + Duration::from_millis(limits::WRITE_TXN_MARKERS_TIMEOUT_MS + 5_000);
    match peer
        .call(
            ApiKey::WriteTxnMarkers,
            1,
            &RequestKind::WriteTxnMarkers(request),
            limits::TXN_PEER_ANSWER_BYTES_MAX,
            deadline,
        )
        .await
    {
        Ok(ResponseKind::WriteTxnMarkers(r)) => Ok(r),
        Ok(other) => Err(format!("unexpected answer {other:?}")),
        Err(e) => Err(e.to_string()),
    }
}

fn read_marker_results(
    partitions: Vec<TopicPartition>,
    answer: Result<WriteTxnMarkersResponse, String>,
) -> Vec<(TopicPartition, MarkerResult)> {
    let answer = match answer {
        Ok(a) => a,
        Err(e) => {
            warn!("WriteTxnMarkers failed: {e}; retrying");
            return partitions
                .into_iter()
                .map(|tp| (tp, MarkerResult::Retriable))
                .collect();
        }
    };
    let mut codes: HashMap<(String, i32), i16> = HashMap::new();
    for m in answer.markers {
        for t in m.topics {
            for p in t.partitions {
                codes.insert((t.name.0.to_string(), p.partition_index), p.error_code);
            }
        }
    }
    partitions
        .into_iter()
        .map(|tp| {
            let result = match codes.get(&(tp.topic.clone(), tp.partition)) {
                Some(&c) => {
                    if c != code::NONE {
                        warn!(topic = %tp.topic, partition = tp.partition, error = c, "transaction marker not written");
                    }
                    MarkerResult::from_error_code(c)
                }
                None => MarkerResult::Retriable,
            };
            (tp, result)
        })
        .collect()
}

// ---- Loading ---------------------------------------------------------------------------------

struct LoadTask {
    partition: i32,
    load_id: u64,
    cancelled: Arc<AtomicBool>,
}

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
        error!(
            partition,
            "{TRANSACTION_STATE_TOPIC} partition log is not open"
        );
        return false;
    };
    let log = p.log.clone();
    let (mut from, end) = (log.log_start_offset(), log.log_end_offset());
    while from < end {
        if load.cancelled.load(Ordering::Relaxed) {
            return false;
        }
        let l = log.clone();
        match broker.blocking(move || read_step(&l, from, end)).await {
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
                error!(partition, from, "reading {TRANSACTION_STATE_TOPIC}: {e}");
                return false;
            }
        }
    }
    true
}

type LoadStep = (Vec<(Bytes, Option<Bytes>)>, i64);

/// The keyed records of the batches from `from`, and where the next step starts. Control
/// batches carry no coordinator state and are skipped; an unreadable batch is logged and
/// skipped (its ids keep their earlier state), never a panic.
fn read_step(log: &PartitionLog, from: i64, end: i64) -> Result<LoadStep, String> {
    let read = log
        .read(from, limits::TXN_LOAD_READ_BYTES_MAX, end)
        .map_err(|e| e.to_string())?;
    let mut buf = read.records;
    if buf.is_empty() {
        return Ok((Vec::new(), end));
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
                match c {
                    Compression::None => Ok(b.split_off(0)),
                    other => anyhow::bail!("compressed ({other:?}) batch"),
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
                "skipping an unreadable {TRANSACTION_STATE_TOPIC} batch: {e:#}"
            ),
        }
    }
    if next <= from {
        return Err(format!("no complete batch at offset {from}"));
    }
    Ok((out, next))
}

// ---- Produce verification (KIP-890 part 1) ---------------------------------------------------

/// Asks the coordinator of `transactional_id` whether `partitions` are in the ongoing
/// transaction of `producer_id` at `producer_epoch` (AddPartitionsToTxn v4, `verify_only`),
/// as a partition leader does before the first transactional batch of a producer. Returns the
/// error of each partition the coordinator did not verify (none: all verified), already mapped
/// as Kafka's `AddPartitionsToTxnManager` does for the produce path: PRODUCER_FENCED becomes
/// INVALID_PRODUCER_EPOCH, and a failed call fails every partition with NETWORK_EXCEPTION or
/// COORDINATOR_NOT_AVAILABLE.
pub async fn verify_transaction(
    broker: &Arc<Broker>,
    transactional_id: &str,
    producer_id: i64,
    producer_epoch: i16,
    partitions: &[TopicPartition],
) -> HashMap<TopicPartition, i16> {
    use kafka_protocol::messages::add_partitions_to_txn_request::{
        AddPartitionsToTxnTopic, AddPartitionsToTxnTransaction,
    };
    use kafka_protocol::messages::{AddPartitionsToTxnRequest, TransactionalId};
    let all = |error: i16| partitions.iter().map(|tp| (tp.clone(), error)).collect();
    let txn = broker.txn();
    let Some(coordinator) = txn.coordinator_of(&broker.metadata.image(), transactional_id) else {
        return all(code::COORDINATOR_NOT_AVAILABLE);
    };
    let mut topics: BTreeMap<&str, Vec<i32>> = BTreeMap::new();
    for tp in partitions {
        topics.entry(&tp.topic).or_default().push(tp.partition);
    }
    let request = AddPartitionsToTxnRequest::default().with_transactions(vec![
        AddPartitionsToTxnTransaction::default()
            .with_transactional_id(TransactionalId(handlers::str_bytes(transactional_id)))
            .with_producer_id(ProducerId(producer_id))
            .with_producer_epoch(producer_epoch)
            .with_verify_only(true)
            .with_topics(
                topics
                    .into_iter()
                    .map(|(name, partitions)| {
                        AddPartitionsToTxnTopic::default()
                            .with_name(TopicName(handlers::str_bytes(name)))
                            .with_partitions(partitions)
                    })
                    .collect(),
            ),
    ]);
    const VERSION: i16 = 4;
    let timeout = Duration::from_millis(limits::TXN_VERIFY_TIMEOUT_MS);
    let answer = if coordinator.node_id == broker.config.node_id {
        let call = txn.call(
            VERSION,
            BTreeSet::new(),
            TxnRequest::AddPartitionsToTxn(request),
        );
        match tokio::time::timeout(timeout, call).await {
            Ok(Some(TxnResponse::AddPartitionsToTxn(r))) => r,
            Ok(_) => return all(code::COORDINATOR_NOT_AVAILABLE),
            Err(_) => return all(code::NETWORK_EXCEPTION),
        }
    } else {
        let addr = format!("{}:{}", coordinator.host, coordinator.port);
        let peer = txn.peers.get(coordinator.node_id, addr);
        let mut peer = peer.lock().await;
        let deadline = tokio::time::Instant::now() + timeout;
        match peer
            .call(
                ApiKey::AddPartitionsToTxn,
                VERSION,
                &RequestKind::AddPartitionsToTxn(request),
                limits::TXN_PEER_ANSWER_BYTES_MAX,
                deadline,
            )
            .await
        {
            Ok(ResponseKind::AddPartitionsToTxn(r)) => r,
            Ok(_) | Err(_) => return all(code::NETWORK_EXCEPTION),
        }
    };
    if answer.error_code != code::NONE {
        return all(answer.error_code);
    }
    let mut unverified = HashMap::new();
    for t in answer.results_by_transaction {
        for topic in t.topic_results {
            for p in topic.results_by_partition {
                if p.partition_error_code != code::NONE {
                    let error = match p.partition_error_code {
                        code::PRODUCER_FENCED => code::INVALID_PRODUCER_EPOCH,
                        other => other,
                    };
                    let tp = TopicPartition::new(topic.name.0.to_string(), p.partition_index);
                    unverified.insert(tp, error);
                }
            }
        }
    }
    unverified
}

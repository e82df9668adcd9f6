//! The transaction coordinator runtime: drives the pure `josefine_txn::Coordinator` with real
//! requests, time, storage, the applied metadata image and the other brokers.
//!
//! Owns: the one task that owns the coordinator (every call to it happens there, in order), the
//! marker senders (WriteTxnMarkers to every partition leader: the local handler for partitions
//! led here, a Kafka request over a [`Peer`] for the others), producer id blocks for it (from
//! the controller, as the idempotent path gets them), and the creation of the topic on the
//! first FindCoordinator with key type 1. Handlers talk to it through [`Txn`]: they send the
//! decoded request and await its response, which may come much later (an InitProducerId that
//! aborts an ongoing transaction first).
//!
//! Placement follows `crate::groups`: the coordinator of a transactional id is the leader of
//! partition `partition_for(id)` of `__transaction_state`. Following the image, loading,
//! unloading and appending are [`crate::coordinator_partitions`]'s, shared with the group
//! coordinator; this runtime implements its [`Serve`] over the transaction coordinator. The
//! coordinator epoch every marker carries is the partition's leader epoch it was loaded at.
//!
//! Must never: report an append durable before the high watermark covers it (acks=all: the
//! coordinator answers EndTxn only once Prepare* is durable), block the coordinator task on
//! storage or the network (appends, loads and markers run in their own tasks and report back
//! as messages), or queue without a bound (see `limits`).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use josefine_group::OffsetsRecord;
use josefine_meta::{Image, TopicId};
use josefine_txn::{
    AppendId, AppendOutcome, Coordinator, Effect, MarkerId, MarkerResult, RequestContext,
    RequestId, TopicPartition, TxnConfig, TxnRequest, TxnResponse,
};
use kafka_protocol::messages::write_txn_markers_request::{
    WritableTxnMarker, WritableTxnMarkerTopic,
};
use kafka_protocol::messages::{
    ApiKey, ProducerId, RequestKind, ResponseKind, TopicName, WriteTxnMarkersRequest,
    WriteTxnMarkersResponse,
};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use tracing::{error, info, warn};

use crate::broker::Broker;
use crate::clock::now_ms;
use crate::coordinator_partitions::{self, Event, Inbox, LoadItem, Partitions, Serve, Waiting};
use crate::handlers::{self, code};
use crate::leadership;
use crate::limits;
use crate::replication::peer::Peer;

/// The internal topic holding the transaction coordinator's state.
pub const TRANSACTION_STATE_TOPIC: &str = "__transaction_state";

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

/// Results flowing back into the coordinator task from its own helpers (the appender's and
/// the loaders' go to [`Partitions`]).
enum Internal {
    Markers(MarkerId, Vec<(TopicPartition, MarkerResult)>),
    ProducerIds(Option<(i64, u64)>),
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
        let (requests_tx, requests_rx) = mpsc::channel(limits::TXN_REQUESTS_QUEUED_MAX);
        let (parts, channels) = Partitions::new(
            broker,
            TRANSACTION_STATE_TOPIC,
            limits::TXN_APPENDS_QUEUED_MAX,
            limits::TXN_INTERNAL_QUEUED_MAX,
        );
        let appender = parts.spawn_appender(channels.appends);
        let core = Core {
            broker: broker.clone(),
            coordinator,
            state_partitions,
            waiting: Waiting::new(),
            internal_tx,
            peers: Arc::new(PeerPool::new("josefine-txn-markers")),
        };
        let mut runtime = Runtime { parts, core };
        let mut images = broker.metadata.subscribe_image();
        let image = images.borrow_and_update().clone();
        runtime.follow(&image);
        let inbox = Inbox::new(requests_rx, channels.reports, internal, images);
        let task = tokio::spawn(runtime.run(inbox, appender));
        Ok(Txn {
            requests: requests_tx,
            served_topic: channels.served,
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
        coordinator_partitions::placeable(
            &broker.metadata.image(),
            TRANSACTION_STATE_TOPIC,
            rf,
            "transaction.state.log.replication.factor",
        )?;
        let extra = vec![
            (
                "min.insync.replicas".to_string(),
                s.transaction_state_log_min_isr.min(rf).to_string(),
            ),
            (
                "unclean.leader.election.enable".to_string(),
                "false".to_string(),
            ),
        ];
        coordinator_partitions::create_topic(
            broker,
            TRANSACTION_STATE_TOPIC,
            self.state_partitions,
            rf,
            s.transaction_state_log_segment_bytes,
            extra,
        )
        .await
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
    /// The `__transaction_state` partitions served, their loads and appends.
    parts: Partitions<AppendId>,
    core: Core,
}

/// The coordinator and what it answers with: [`Serve`] for [`Partitions`].
struct Core {
    broker: Arc<Broker>,
    coordinator: Coordinator,
    /// The partition count the coordinator hashes transactional ids over.
    state_partitions: i32,
    waiting: Waiting<TxnResponse>,
    internal_tx: mpsc::Sender<Internal>,
    peers: Arc<PeerPool>,
}

impl Runtime {
    async fn run(mut self, mut inbox: Inbox<Msg, Internal>, appender: JoinHandle<()>) {
        // A first block of producer ids, so the first InitProducerId need not wait for one;
        // only where transactions are in use (no block, hence no chain command, on every start
        // of a broker that never served one). Otherwise the coordinator asks on first need and
        // the client retries COORDINATOR_LOAD_IN_PROGRESS meanwhile.
        if self.parts.served().is_some() {
            self.core.allocate_producer_ids();
        }
        loop {
            match inbox.next(self.core.coordinator.next_deadline_ms()).await {
                Event::Msg(None | Some(Msg::Shutdown)) => break,
                Event::Msg(Some(msg)) => self.on_msg(msg),
                Event::Report(r) => self.parts.on_report(&mut self.core, r),
                Event::Internal(i) => self.on_internal(i),
                Event::Image(image) => self.follow(&image),
                Event::Tick => {
                    let effects = self.core.coordinator.tick(now_ms());
                    self.parts.carry_out(&mut self.core, effects);
                }
            }
        }
        self.parts.shutdown(inbox, appender).await;
        info!("transaction coordinator stopped");
    }

    fn follow(&mut self, image: &Image) {
        self.parts.follow(&mut self.core, image);
    }

    fn on_msg(&mut self, msg: Msg) {
        match msg {
            Msg::Request {
                api_version,
                unknown_partitions,
                request,
                reply,
            } => {
                let core = &mut self.core;
                let request_id = RequestId(core.waiting.register(reply));
                let ctx = RequestContext {
                    request_id,
                    api_version,
                    unknown_partitions,
                };
                let effects = core.coordinator.handle(ctx, *request, now_ms());
                self.parts.carry_out(core, effects);
            }
            Msg::FollowImage { reply } => {
                let image = self.core.broker.metadata.image();
                self.follow(&image);
                let _ = reply.send(());
            }
            Msg::Shutdown => unreachable!("handled by the loop"),
        }
    }

    fn on_internal(&mut self, msg: Internal) {
        let core = &mut self.core;
        match msg {
            Internal::Markers(marker_id, results) => {
                let effects = core
                    .coordinator
                    .on_markers_complete(marker_id, results, now_ms());
                self.parts.carry_out(core, effects);
            }
            Internal::ProducerIds(Some((first, count))) => {
                let effects = core.coordinator.on_producer_ids(first, count);
                self.parts.carry_out(core, effects);
            }
            Internal::ProducerIds(None) => core.coordinator.on_producer_ids_failed(),
        }
    }
}

impl Core {
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
}

impl Serve for Core {
    type AppendId = AppendId;
    type Effect = Effect;

    fn partition_count(&self) -> i32 {
        self.state_partitions
    }

    fn fit(&mut self, count: i32) {
        match Coordinator::new(txn_config(&self.broker, Some(count))) {
            Ok(c) => {
                self.coordinator = c;
                self.state_partitions = count;
                self.allocate_producer_ids();
            }
            Err(e) => error!("cannot serve {TRANSACTION_STATE_TOPIC} with {count} partitions: {e}"),
        }
    }

    fn begin_load(&mut self, partition: i32) -> Vec<Effect> {
        self.coordinator.begin_load(partition)
    }

    fn load(&mut self, partition: i32, items: Vec<LoadItem>) {
        for item in items {
            // Markers carry no coordinator state.
            let LoadItem::Record { key, value, .. } = item else {
                continue;
            };
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

    fn complete_load(&mut self, partition: i32, leader_epoch: i32) -> Result<Vec<Effect>, String> {
        self.coordinator
            .complete_load(partition, leader_epoch, now_ms())
            .map_err(|e| e.to_string())
    }

    fn unload(&mut self, partition: i32) -> Vec<Effect> {
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
            } => {
                let records = records
                    .into_iter()
                    .map(|r| OffsetsRecord {
                        key: r.key,
                        value: r.value,
                        timestamp_ms: r.timestamp_ms,
                    })
                    .collect();
                let submitted = parts.submit(append_id, partition, records, None);
                return submitted.map_err(|failed| (append_id, failed));
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
        Ok(())
    }
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

//! Every metric the broker exports on `GET /metrics`, each defined once, and how it is counted.
//!
//! Owns: the counters the request path bumps (plain atomics: no lock, no label lookup; a
//! partition's counters live on its [`crate::partitions::Partition`], an API version's
//! histogram is created at its first use and read through a `OnceLock` afterwards), and the
//! scrape-time [`Collector`] that computes every gauge from the partition registry, the image,
//! the chain status and the group coordinator's published stats. Names are `josefine_` plus the
//! issue's names; units are seconds and bytes; `docs/metrics.md` maps Kafka's names to these.
//! Must never: take a lock or look up a label set on the request path, queue work into the
//! chain or the group coordinator to answer a scrape (gauges read watches and atomics), keep
//! the series of a deleted topic (its partitions, and so its counters, leave the registry), or
//! export more than [`limits::METRICS_PARTITION_SERIES_MAX`] partitions' series.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock, Weak};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use kafka_protocol::error::ParseResponseErrorCode;
use kafka_protocol::messages::ApiKey;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric, NoLabelSet};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::{Registry, Unit};

use crate::broker::Broker;
use crate::codec::ResponseBody;
use crate::limits;

/// Upper bounds of the latency histograms, seconds: 0.5 ms (a page-cache append) to 10 s
/// (beyond a default request timeout's third), roughly 2.5x apart as Prometheus suggests.
const LATENCY_BUCKETS_SECONDS: [f64; 14] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// Kafka API keys with a request-metrics slot (0..=this-1; Kafka 4.1 ends at 92).
const API_KEY_SLOTS: usize = 100;
/// API versions with a histogram slot (Fetch, the highest, is at 18).
const API_VERSION_SLOTS: usize = 24;
/// Error codes counted per API: -1 (UNKNOWN_SERVER_ERROR) to 158; Kafka 4.1 ends at 133.
const ERROR_CODE_SLOTS: usize = 160;

/// A latency histogram that observes with two atomic adds (no lock, unlike prometheus-client's
/// `Histogram`).
#[derive(Debug, Default)]
pub struct LatencyHistogram {
    /// Per-bucket (not cumulative) counts; the last one is +Inf.
    buckets: [AtomicU64; LATENCY_BUCKETS_SECONDS.len() + 1],
    sum_ns: AtomicU64,
}

impl LatencyHistogram {
    const fn new() -> LatencyHistogram {
        LatencyHistogram {
            buckets: [const { AtomicU64::new(0) }; LATENCY_BUCKETS_SECONDS.len() + 1],
            sum_ns: AtomicU64::new(0),
        }
    }

    pub fn observe(&self, elapsed: Duration) {
        let seconds = elapsed.as_secs_f64();
        let bucket = LATENCY_BUCKETS_SECONDS
            .iter()
            .position(|b| seconds <= *b)
            .unwrap_or(LATENCY_BUCKETS_SECONDS.len());
        self.buckets[bucket].fetch_add(1, Ordering::Relaxed);
        let ns = u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX);
        self.sum_ns.fetch_add(ns, Ordering::Relaxed);
    }

    fn encode(&self, mut encoder: prometheus_client::encoding::MetricEncoder) -> std::fmt::Result {
        let mut buckets = Vec::with_capacity(self.buckets.len());
        let mut count = 0;
        for (i, b) in self.buckets.iter().enumerate() {
            let n = b.load(Ordering::Relaxed);
            count += n;
            let bound = LATENCY_BUCKETS_SECONDS.get(i).copied().unwrap_or(f64::MAX);
            buckets.push((bound, n));
        }
        let sum = self.sum_ns.load(Ordering::Relaxed) as f64 / 1e9;
        encoder.encode_histogram::<NoLabelSet>(sum, count, &buckets, None)
    }
}

/// Log fsyncs (`log_flush_duration_seconds`): produce with `flush.messages` reached, the group
/// coordinator's commits, a follower's appends, and the log's own tick (`flush.ms` intervals,
/// rolled segments). Process-wide (the flush sites hold a log, not the broker).
static LOG_FLUSH: LatencyHistogram = LatencyHistogram::new();

/// The chain store's persist-and-fsync of each `Ready` (`chain_persist_duration_seconds`),
/// timed by `raft/mod.rs`.
static CHAIN_PERSIST: LatencyHistogram = LatencyHistogram::new();

/// From a proposal to its commit as this node's proposer sees it
/// (`chain_commit_duration_seconds`; committed proposals only), timed by `raft/mod.rs`.
static CHAIN_COMMIT: LatencyHistogram = LatencyHistogram::new();

/// Records one chain persist (`raft/mod.rs`).
pub fn chain_persisted(elapsed: Duration) {
    CHAIN_PERSIST.observe(elapsed);
}

/// Records one committed proposal's latency (`raft/mod.rs`).
pub fn chain_committed(elapsed: Duration) {
    CHAIN_COMMIT.observe(elapsed);
}

/// Heights above the commit point holding competing blocks (`chain_forks`), as the chain
/// loop last saw its tree. One chain server per broker process.
static CHAIN_FORKS: AtomicU64 = AtomicU64::new(0);

/// Publishes the chain's current fork count (`raft/mod.rs`, after each round of work).
pub fn chain_forks_set(forks: u64) {
    CHAIN_FORKS.store(forks, Ordering::Relaxed);
}

/// `log.flush()`, timed into `log_flush_duration_seconds`.
pub fn timed_flush(
    log: &josefine_log::PartitionLog,
) -> std::result::Result<(), josefine_log::LogError> {
    let started = std::time::Instant::now();
    let result = log.flush();
    LOG_FLUSH.observe(started.elapsed());
    result
}

/// Why a Kafka client connection ended (`connections_closed_total{reason}`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseReason {
    /// The client closed it.
    Client,
    /// `connections.max.idle.ms` passed without a request (or a frame did not complete).
    Idle,
    /// A read or write failed (reset, broken pipe).
    Io,
    /// The client broke the protocol: bad frame length, undecodable request, or a request
    /// whose answer is to close (Kafka closes on those too).
    Protocol,
    /// Refused at accept: `max.connections` reached.
    Limit,
}

impl CloseReason {
    const ALL: [CloseReason; 5] = [
        CloseReason::Client,
        CloseReason::Idle,
        CloseReason::Io,
        CloseReason::Protocol,
        CloseReason::Limit,
    ];

    fn label(self) -> &'static str {
        match self {
            CloseReason::Client => "client",
            CloseReason::Idle => "idle",
            CloseReason::Io => "io",
            CloseReason::Protocol => "protocol",
            CloseReason::Limit => "limit",
        }
    }
}

/// Kafka client connections (`server.rs`).
#[derive(Debug, Default)]
pub struct ConnectionMetrics {
    open: AtomicI64,
    accepted: AtomicU64,
    closed: [AtomicU64; CloseReason::ALL.len()],
}

impl ConnectionMetrics {
    /// A connection was accepted and is served.
    pub fn opened(&self) {
        self.accepted.fetch_add(1, Ordering::Relaxed);
        self.open.fetch_add(1, Ordering::Relaxed);
    }

    /// A served connection ended.
    pub fn closed(&self, reason: CloseReason) {
        self.open.fetch_sub(1, Ordering::Relaxed);
        self.closed[reason as usize].fetch_add(1, Ordering::Relaxed);
    }

    /// A connection was accepted and closed at once (`max.connections`).
    pub fn refused(&self) {
        self.accepted.fetch_add(1, Ordering::Relaxed);
        self.closed[CloseReason::Limit as usize].fetch_add(1, Ordering::Relaxed);
    }
}

/// One API's request metrics: a histogram per version, error counts per code.
#[derive(Debug, Default)]
struct ApiSlot {
    versions: [OnceLock<Box<LatencyHistogram>>; API_VERSION_SLOTS],
    errors: OnceLock<Box<[AtomicU64; ERROR_CODE_SLOTS]>>,
}

/// `request_duration_seconds{api,version}` and `request_errors_total{api,error}`.
#[derive(Debug)]
pub struct RequestMetrics {
    apis: Box<[ApiSlot]>,
}

impl Default for RequestMetrics {
    fn default() -> Self {
        RequestMetrics {
            apis: (0..API_KEY_SLOTS).map(|_| ApiSlot::default()).collect(),
        }
    }
}

impl RequestMetrics {
    /// One request of `api_key` v`version` took `elapsed` from its last byte read to its
    /// response's last byte written (Kafka's TotalTimeMs, minus the socket read).
    pub fn observe(&self, api_key: i16, version: i16, elapsed: Duration) {
        let (Ok(api), Ok(v)) = (usize::try_from(api_key), usize::try_from(version)) else {
            return;
        };
        if let Some(slot) = self.apis.get(api).and_then(|s| s.versions.get(v)) {
            slot.get_or_init(Box::default).observe(elapsed);
        }
    }

    /// Counts every error code `response` carries (top-level, per topic, per partition).
    pub fn count_errors(&self, api_key: ApiKey, response: &ResponseBody) {
        let Some(slot) = self.apis.get(api_key as usize) else {
            return;
        };
        for_each_error_code(response, &mut |code| {
            if code == 0 {
                return;
            }
            let index = usize::try_from(i32::from(code) + 1).unwrap_or(usize::MAX);
            if index < ERROR_CODE_SLOTS {
                let counts = slot
                    .errors
                    .get_or_init(|| Box::new(std::array::from_fn(|_| AtomicU64::new(0))));
                counts[index].fetch_add(1, Ordering::Relaxed);
            }
        });
    }
}

/// Calls `f` with every error code in a response: Kafka's `ErrorsPerSec` counts each one.
fn for_each_error_code(response: &ResponseBody, f: &mut dyn FnMut(i16)) {
    use kafka_protocol::messages::ResponseKind as R;
    match response {
        R::Produce(r) => r
            .responses
            .iter()
            .flat_map(|t| &t.partition_responses)
            .for_each(|p| f(p.error_code)),
        R::Fetch(r) => {
            f(r.error_code);
            r.responses
                .iter()
                .flat_map(|t| &t.partitions)
                .for_each(|p| f(p.error_code));
        }
        R::ListOffsets(r) => r
            .topics
            .iter()
            .flat_map(|t| &t.partitions)
            .for_each(|p| f(p.error_code)),
        R::Metadata(r) => {
            for t in &r.topics {
                f(t.error_code);
                t.partitions.iter().for_each(|p| f(p.error_code));
            }
        }
        R::ApiVersions(r) => f(r.error_code),
        R::CreateTopics(r) => r.topics.iter().for_each(|t| f(t.error_code)),
        R::DeleteTopics(r) => r.responses.iter().for_each(|t| f(t.error_code)),
        R::InitProducerId(r) => f(r.error_code),
        R::DescribeConfigs(r) => r.results.iter().for_each(|x| f(x.error_code)),
        R::AlterConfigs(r) => r.responses.iter().for_each(|x| f(x.error_code)),
        R::IncrementalAlterConfigs(r) => r.responses.iter().for_each(|x| f(x.error_code)),
        R::CreatePartitions(r) => r.results.iter().for_each(|x| f(x.error_code)),
        R::FindCoordinator(r) => {
            f(r.error_code);
            r.coordinators.iter().for_each(|c| f(c.error_code));
        }
        R::JoinGroup(r) => f(r.error_code),
        R::SyncGroup(r) => f(r.error_code),
        R::Heartbeat(r) => f(r.error_code),
        R::LeaveGroup(r) => {
            f(r.error_code);
            r.members.iter().for_each(|m| f(m.error_code));
        }
        R::OffsetCommit(r) => r
            .topics
            .iter()
            .flat_map(|t| &t.partitions)
            .for_each(|p| f(p.error_code)),
        R::OffsetFetch(r) => {
            f(r.error_code);
            r.topics
                .iter()
                .flat_map(|t| &t.partitions)
                .for_each(|p| f(p.error_code));
            for g in &r.groups {
                f(g.error_code);
                g.topics
                    .iter()
                    .flat_map(|t| &t.partitions)
                    .for_each(|p| f(p.error_code));
            }
        }
        R::DescribeGroups(r) => r.groups.iter().for_each(|g| f(g.error_code)),
        R::ListGroups(r) => f(r.error_code),
        R::DeleteGroups(r) => r.results.iter().for_each(|g| f(g.error_code)),
        R::OffsetDelete(r) => {
            f(r.error_code);
            r.topics
                .iter()
                .flat_map(|t| &t.partitions)
                .for_each(|p| f(p.error_code));
        }
        R::DeleteRecords(r) => r
            .topics
            .iter()
            .flat_map(|t| &t.partitions)
            .for_each(|p| f(p.error_code)),
        R::DescribeLogDirs(r) => {
            f(r.error_code);
            r.results.iter().for_each(|d| f(d.error_code));
        }
        R::OffsetForLeaderEpoch(r) => r
            .topics
            .iter()
            .flat_map(|t| &t.partitions)
            .for_each(|p| f(p.error_code)),
        R::ListPartitionReassignments(r) => f(r.error_code),
        R::DescribeCluster(r) => f(r.error_code),
        R::DescribeTopicPartitions(r) => {
            for t in &r.topics {
                f(t.error_code);
                t.partitions.iter().for_each(|p| f(p.error_code));
            }
        }
        // Broker-to-controller answers and APIs this broker does not serve to clients.
        _ => {}
    }
}

/// Kafka's name of an error code (`MESSAGE_TOO_LARGE`), from kafka-protocol's variant name.
pub(crate) fn error_name(code: i16) -> String {
    let Some(error) = code.err() else {
        return "NONE".into();
    };
    let camel = format!("{error:?}");
    if camel.starts_with("Unknown(") {
        return format!("UNKNOWN_CODE_{code}");
    }
    let mut out = String::with_capacity(camel.len() + 8);
    for (i, c) in camel.chars().enumerate() {
        if c.is_ascii_uppercase() && i > 0 {
            out.push('_');
        }
        out.push(c.to_ascii_uppercase());
    }
    out
}

/// One hosted partition's traffic, bumped by the produce and fetch handlers (created with the
/// partition, dropped with it: a deleted topic's series go with its partitions).
#[derive(Debug, Default)]
pub struct PartitionMetrics {
    records_in: AtomicU64,
    bytes_in: AtomicU64,
    records_out: AtomicU64,
    bytes_out: AtomicU64,
}

impl PartitionMetrics {
    /// A client's batch of `records` records, `bytes` bytes, was appended (not a duplicate).
    pub fn appended(&self, records: i64, bytes: usize) {
        self.records_in
            .fetch_add(records.max(0) as u64, Ordering::Relaxed);
        self.bytes_in.fetch_add(bytes as u64, Ordering::Relaxed);
    }

    /// Record batches were sent to a consumer (not a follower): counted from the batch
    /// headers, without decompressing.
    pub fn fetched(&self, batches: &[u8]) {
        self.fetched_counts(batches.len() as u64, records_in_batches(batches));
    }

    /// `bytes` of record batches holding `records` records were sent to a consumer (a
    /// zero-copy fetch counts them from the batches' offsets, not their headers).
    pub fn fetched_counts(&self, bytes: u64, records: u64) {
        self.bytes_out.fetch_add(bytes, Ordering::Relaxed);
        self.records_out.fetch_add(records, Ordering::Relaxed);
    }
}

/// Sum of the `records count` fields of the whole v2 batches in `batches` (Kafka's batch
/// header: base offset 8, length 4, ..., records count at byte 57).
fn records_in_batches(mut batches: &[u8]) -> u64 {
    const LENGTH_AT: usize = 8;
    const COUNT_AT: usize = 57;
    let mut records = 0u64;
    while batches.len() >= COUNT_AT + 4 {
        let length = i32::from_be_bytes(
            batches[LENGTH_AT..LENGTH_AT + 4]
                .try_into()
                .expect("4 bytes"),
        );
        let total = 12 + length.max(0) as usize;
        if total > batches.len() {
            break; // a partial trailing batch: the client discards it
        }
        let count =
            i32::from_be_bytes(batches[COUNT_AT..COUNT_AT + 4].try_into().expect("4 bytes"));
        records += count.max(0) as u64;
        batches = &batches[total..];
    }
    records
}

/// Background log work (`maintenance.rs`).
#[derive(Debug, Default)]
pub struct StorageMetrics {
    retention_segments_deleted: AtomicU64,
    retention_bytes_deleted: AtomicU64,
    cleaner_bytes_read: AtomicU64,
    cleaner_bytes_written: AtomicU64,
    /// Unix seconds of the cleaner's last clean call; 0 before the first.
    cleaner_last_run_unix_s: AtomicU64,
    /// f64 bits: the highest dirty ratio among the logs due for cleaning at the last check.
    cleaner_max_dirty_ratio: AtomicU64,
    cleaner_uncleanable_partitions: AtomicU64,
}

impl StorageMetrics {
    /// A retention pass over one log deleted `segments` segments of `bytes` bytes.
    pub fn retained(&self, segments: usize, bytes: u64) {
        self.retention_segments_deleted
            .fetch_add(segments as u64, Ordering::Relaxed);
        self.retention_bytes_deleted
            .fetch_add(bytes, Ordering::Relaxed);
    }

    /// The cleaner looked for work: the dirtiest due log's ratio (0: none due) and the logs
    /// it skips after a failure.
    pub fn cleaner_checked(&self, max_dirty_ratio: f64, uncleanable: usize) {
        self.cleaner_max_dirty_ratio
            .store(max_dirty_ratio.to_bits(), Ordering::Relaxed);
        self.cleaner_uncleanable_partitions
            .store(uncleanable as u64, Ordering::Relaxed);
    }

    /// One clean call read and wrote these many bytes.
    pub fn cleaned(&self, read: u64, written: u64) {
        self.cleaner_bytes_read.fetch_add(read, Ordering::Relaxed);
        self.cleaner_bytes_written
            .fetch_add(written, Ordering::Relaxed);
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        self.cleaner_last_run_unix_s.store(now, Ordering::Relaxed);
    }
}

/// The blocking pool as the broker uses it ([`Broker::blocking`]).
#[derive(Debug, Default)]
pub struct BlockingPoolMetrics {
    in_use: AtomicI64,
    queued: AtomicI64,
}

/// Decrements a pool gauge when dropped.
pub struct GaugeGuard<'a>(&'a AtomicI64);

impl Drop for GaugeGuard<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

impl BlockingPoolMetrics {
    /// A call waits for an I/O permit until the guard drops.
    pub fn queued(&self) -> GaugeGuard<'_> {
        self.queued.fetch_add(1, Ordering::Relaxed);
        GaugeGuard(&self.queued)
    }

    /// A call runs on the pool until the guard drops.
    pub fn in_use(&self) -> GaugeGuard<'_> {
        self.in_use.fetch_add(1, Ordering::Relaxed);
        GaugeGuard(&self.in_use)
    }
}

/// The facts `/health/ready` is made of that only the start-up and shutdown sequence know.
#[derive(Debug, Default)]
pub struct Readiness {
    /// The image has caught up with the chain's commit point at start-up.
    pub image_applied: AtomicBool,
    /// Every partition log the image names is open (recovered).
    pub logs_recovered: AtomicBool,
    /// The Kafka listener's accept loop runs.
    pub kafka_listener: AtomicBool,
    /// SIGTERM (or SIGINT) arrived: ready stays false from here on.
    pub shutting_down: AtomicBool,
}

/// Every metric of one broker process.
#[derive(Debug)]
pub struct Metrics {
    pub connections: ConnectionMetrics,
    pub requests: RequestMetrics,
    pub storage: StorageMetrics,
    pub blocking_pool: BlockingPoolMetrics,
    pub ready: Readiness,
    /// The chain leader changed (counted by [`watch_chain`]).
    chain_leader_changes: AtomicU64,
    isr_shrinks: AtomicU64,
    isr_expands: AtomicU64,
    broker: OnceLock<Weak<Broker>>,
    /// The registry whose collector renders everything at scrape time.
    registry: OnceLock<Registry>,
    started_unix_s: f64,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics {
            connections: ConnectionMetrics::default(),
            requests: RequestMetrics::default(),
            storage: StorageMetrics::default(),
            blocking_pool: BlockingPoolMetrics::default(),
            ready: Readiness::default(),
            chain_leader_changes: AtomicU64::new(0),
            isr_shrinks: AtomicU64::new(0),
            isr_expands: AtomicU64::new(0),
            broker: OnceLock::new(),
            registry: OnceLock::new(),
            started_unix_s: unix_seconds(SystemTime::now()),
        }
    }
}

fn unix_seconds(t: SystemTime) -> f64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

impl Metrics {
    pub fn new() -> Arc<Metrics> {
        let metrics = Arc::new(Metrics::default());
        let mut registry = Registry::with_prefix("josefine");
        registry.register_collector(Box::new(Scrape(Arc::downgrade(&metrics))));
        assert!(metrics.registry.set(registry).is_ok(), "registry set twice");
        metrics
    }

    /// The broker has started: gauges read it from now on, and the chain's leader changes are
    /// counted.
    pub fn set_broker(self: &Arc<Self>, broker: &Arc<Broker>) {
        if self.broker.set(Arc::downgrade(broker)).is_ok() {
            tokio::spawn(watch_chain(
                self.clone(),
                broker.metadata.watch_chain_status(),
            ));
            let me = broker.config.node_id;
            tokio::spawn(watch_isr(
                self.clone(),
                me,
                broker.metadata.subscribe_image(),
            ));
        }
    }

    /// The broker, once started and until it is dropped.
    pub fn broker(&self) -> Option<Arc<Broker>> {
        self.broker.get().and_then(Weak::upgrade)
    }

    /// The OpenMetrics text of every metric (ends with `# EOF`).
    pub fn render(&self) -> String {
        let mut out = String::with_capacity(64 * 1024);
        let registry = self.registry.get().expect("registry set at construction");
        // Writing to a String cannot fail; a collector error would be a bug in this module.
        prometheus_client::encoding::text::encode(&mut out, registry)
            .expect("metrics encode into a String");
        out
    }
}

/// Counts chain leader changes from the chain's status watch (a counter needs every change,
/// not the state at scrape time). Ends with the chain.
async fn watch_chain(
    metrics: Arc<Metrics>,
    mut status: tokio::sync::watch::Receiver<crate::raft::ChainStatus>,
) {
    let mut leader = status.borrow_and_update().leader;
    while status.changed().await.is_ok() {
        let now = status.borrow_and_update().leader;
        if now.is_some() && now != leader {
            metrics.chain_leader_changes.fetch_add(1, Ordering::Relaxed);
        }
        leader = now;
    }
}

/// Counts ISR shrinks and expansions of the partitions this node leads, whoever made them
/// (this leader's AlterPartition, or the controller dropping a fenced replica), by comparing
/// each applied image with the previous one. Images the watch skips are not compared: a
/// shrink and an expansion between two looks are not seen. Ends with the metadata store.
async fn watch_isr(
    metrics: Arc<Metrics>,
    me: i32,
    mut images: tokio::sync::watch::Receiver<Arc<josefine_meta::Image>>,
) {
    let mut previous = images.borrow_and_update().clone();
    while images.changed().await.is_ok() {
        let image = images.borrow_and_update().clone();
        for topic in image.topics.values() {
            for p in topic.partitions.iter().filter(|p| p.leader == me) {
                let Some(before) = previous.partition(topic.topic_id, p.partition) else {
                    continue;
                };
                let counter = match p.isr.len().cmp(&before.isr.len()) {
                    std::cmp::Ordering::Less => &metrics.isr_shrinks,
                    std::cmp::Ordering::Greater => &metrics.isr_expands,
                    std::cmp::Ordering::Equal => continue,
                };
                counter.fetch_add(1, Ordering::Relaxed);
            }
        }
        previous = image;
    }
}

/// The scrape-time collector (holds the metrics weakly: the registry lives inside them).
#[derive(Debug)]
struct Scrape(Weak<Metrics>);

type Result = std::fmt::Result;

/// Writes one metric without labels.
fn single(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    unit: Option<&Unit>,
    metric: &impl EncodeMetric,
) -> Result {
    let e = encoder.encode_descriptor(name, help, unit, metric.metric_type())?;
    metric.encode(e)
}

fn counter(v: u64) -> ConstCounter<u64> {
    ConstCounter::new(v)
}

fn gauge(v: i64) -> ConstGauge<i64> {
    ConstGauge::new(v)
}

/// Writes a labelled family: `rows` of (labels, value).
fn family<L: prometheus_client::encoding::EncodeLabelSet, M: EncodeMetric>(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    unit: Option<&Unit>,
    metric_type: MetricType,
    rows: impl IntoIterator<Item = (L, M)>,
) -> Result {
    let mut e = encoder.encode_descriptor(name, help, unit, metric_type)?;
    for (labels, metric) in rows {
        metric.encode(e.encode_family(&labels)?)?;
    }
    Ok(())
}

impl Collector for Scrape {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result {
        let Some(metrics) = self.0.upgrade() else {
            return Ok(());
        };
        let e = &mut encoder;
        encode_process(e, &metrics)?;
        encode_connections(e, &metrics.connections)?;
        encode_requests(e, &metrics.requests)?;
        encode_storage_counters(e, &metrics.storage)?;
        encode_runtime(e, &metrics)?;
        if let Some(broker) = metrics.broker() {
            encode_partitions(e, &broker)?;
            encode_groups(e, &broker)?;
            encode_cluster(e, &broker, &metrics)?;
        }
        Ok(())
    }
}

fn encode_process(e: &mut DescriptorEncoder, metrics: &Metrics) -> Result {
    let mut d = e.encode_descriptor("build", "Build of this broker.", None, MetricType::Info)?;
    d.encode_info(&[("version", env!("CARGO_PKG_VERSION"))])?;
    single(
        e,
        "process_start_time_seconds",
        "Start time of the process since the Unix epoch.",
        None,
        &ConstGauge::new(metrics.started_unix_s),
    )?;
    let process = ProcessStats::read();
    if let Some(cpu) = process.cpu_seconds {
        single(
            e,
            "process_cpu_seconds",
            "User and system CPU time spent.",
            None,
            &ConstCounter::new(cpu),
        )?;
    }
    if let Some(rss) = process.resident_bytes {
        single(
            e,
            "process_resident_memory",
            "Resident memory size.",
            Some(&Unit::Bytes),
            &gauge(rss),
        )?;
    }
    if let Some(fds) = process.open_fds {
        single(
            e,
            "process_open_fds",
            "Open file descriptors.",
            None,
            &gauge(fds),
        )?;
    }
    if let Some(max) = process.max_fds {
        single(
            e,
            "process_max_fds",
            "Limit on open file descriptors.",
            None,
            &gauge(max),
        )?;
    }
    Ok(())
}

/// Process figures from /proc (Linux; absent elsewhere).
struct ProcessStats {
    cpu_seconds: Option<f64>,
    resident_bytes: Option<i64>,
    open_fds: Option<i64>,
    max_fds: Option<i64>,
}

impl ProcessStats {
    fn read() -> ProcessStats {
        let ticks = rustix::param::clock_ticks_per_second() as f64;
        let page = rustix::param::page_size() as i64;
        let stat = std::fs::read_to_string("/proc/self/stat").ok();
        // Fields after the command name (which may hold spaces), from field 3 on.
        let after = stat
            .as_deref()
            .and_then(|s| s.rsplit_once(')'))
            .map(|(_, rest)| rest.split_whitespace().collect::<Vec<_>>());
        let field = |n: usize| -> Option<f64> { after.as_ref()?.get(n - 3)?.parse().ok() };
        let cpu_seconds = match (field(14), field(15)) {
            (Some(u), Some(s)) if ticks > 0.0 => Some((u + s) / ticks),
            _ => None,
        };
        let resident_bytes = field(24).map(|pages| pages as i64 * page);
        let open_fds = std::fs::read_dir("/proc/self/fd")
            .ok()
            .map(|d| d.count() as i64);
        let max_fds = std::fs::read_to_string("/proc/self/limits")
            .ok()
            .and_then(|l| {
                l.lines()
                    .find(|l| l.starts_with("Max open files"))
                    .and_then(|l| l.split_whitespace().nth(3)?.parse().ok())
            });
        ProcessStats {
            cpu_seconds,
            resident_bytes,
            open_fds,
            max_fds,
        }
    }
}

fn encode_connections(e: &mut DescriptorEncoder, c: &ConnectionMetrics) -> Result {
    single(
        e,
        "connections",
        "Open Kafka client connections.",
        None,
        &gauge(c.open.load(Ordering::Relaxed)),
    )?;
    single(
        e,
        "connections_accepted",
        "Kafka client connections accepted (including those refused at max.connections).",
        None,
        &counter(c.accepted.load(Ordering::Relaxed)),
    )?;
    family(
        e,
        "connections_closed",
        "Kafka client connections closed, by reason.",
        None,
        MetricType::Counter,
        CloseReason::ALL.iter().map(|r| {
            (
                [("reason", r.label())],
                counter(c.closed[*r as usize].load(Ordering::Relaxed)),
            )
        }),
    )
}

fn api_name(api: usize) -> Option<String> {
    let key = ApiKey::try_from(i16::try_from(api).ok()?).ok()?;
    Some(format!("{key:?}"))
}

fn encode_requests(e: &mut DescriptorEncoder, r: &RequestMetrics) -> Result {
    let mut d = e.encode_descriptor(
        "request_duration",
        "Kafka requests from their last byte read to their response's last byte written.",
        Some(&Unit::Seconds),
        MetricType::Histogram,
    )?;
    for (api, slot) in r.apis.iter().enumerate() {
        let Some(name) = api_name(api) else { continue };
        for (version, h) in slot.versions.iter().enumerate() {
            if let Some(h) = h.get() {
                let labels = [("api", name.clone()), ("version", version.to_string())];
                h.encode(d.encode_family(&labels)?)?;
            }
        }
    }
    let mut rows = Vec::new();
    for (api, slot) in r.apis.iter().enumerate() {
        let (Some(name), Some(errors)) = (api_name(api), slot.errors.get()) else {
            continue;
        };
        for (i, n) in errors.iter().enumerate() {
            let n = n.load(Ordering::Relaxed);
            if n > 0 {
                let code = i as i16 - 1;
                rows.push((
                    [("api", name.clone()), ("error", error_name(code))],
                    counter(n),
                ));
            }
        }
    }
    family(
        e,
        "request_errors",
        "Error codes carried by Kafka responses (each topic or partition entry counts once).",
        None,
        MetricType::Counter,
        rows,
    )
}

fn encode_storage_counters(e: &mut DescriptorEncoder, s: &StorageMetrics) -> Result {
    let d = e.encode_descriptor(
        "log_flush_duration",
        "fsyncs of partition logs (produce with flush.messages, group commits, follower appends, flush.ms intervals and rolled segments).",
        Some(&Unit::Seconds),
        MetricType::Histogram,
    )?;
    LOG_FLUSH.encode(d)?;
    let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
    single(
        e,
        "retention_segments_deleted",
        "Log segments deleted by retention (time, size, log start).",
        None,
        &counter(load(&s.retention_segments_deleted)),
    )?;
    single(
        e,
        "retention_bytes_deleted",
        "Bytes of the segments deleted by retention.",
        None,
        &counter(load(&s.retention_bytes_deleted)),
    )?;
    single(
        e,
        "cleaner_bytes_read",
        "Bytes the log cleaner read.",
        None,
        &counter(load(&s.cleaner_bytes_read)),
    )?;
    single(
        e,
        "cleaner_bytes_written",
        "Bytes the log cleaner wrote.",
        None,
        &counter(load(&s.cleaner_bytes_written)),
    )?;
    single(
        e,
        "cleaner_max_dirty_ratio",
        "Highest dirty ratio among the logs due for cleaning at the cleaner's last check.",
        None,
        &ConstGauge::new(f64::from_bits(load(&s.cleaner_max_dirty_ratio))),
    )?;
    single(
        e,
        "cleaner_uncleanable_partitions",
        "Logs the cleaner skips for a while after a failed clean.",
        None,
        &gauge(load(&s.cleaner_uncleanable_partitions) as i64),
    )?;
    single(
        e,
        "cleaner_last_run_timestamp_seconds",
        "Unix time of the log cleaner's last pass (0: none yet).",
        None,
        &gauge(load(&s.cleaner_last_run_unix_s) as i64),
    )
}

fn encode_runtime(e: &mut DescriptorEncoder, metrics: &Metrics) -> Result {
    if let Ok(handle) = tokio::runtime::Handle::try_current() {
        let rt = handle.metrics();
        family(
            e,
            "runtime_worker_busy_seconds",
            "Time each tokio worker spent busy (1 - Kafka's idle ratio, as a rate).",
            None,
            MetricType::Counter,
            (0..rt.num_workers()).map(|w| {
                (
                    [("worker", w.to_string())],
                    ConstCounter::new(rt.worker_total_busy_duration(w).as_secs_f64()),
                )
            }),
        )?;
        single(
            e,
            "runtime_alive_tasks",
            "Tasks alive on the tokio runtime.",
            None,
            &gauge(rt.num_alive_tasks() as i64),
        )?;
        single(
            e,
            "runtime_global_queue_depth",
            "Tasks waiting in the runtime's global queue.",
            None,
            &gauge(rt.global_queue_depth() as i64),
        )?;
    }
    let pool = &metrics.blocking_pool;
    single(
        e,
        "blocking_pool_in_use",
        "Storage calls running on the blocking pool.",
        None,
        &gauge(pool.in_use.load(Ordering::Relaxed)),
    )?;
    single(
        e,
        "blocking_pool_queued",
        "Storage calls waiting for one of the broker's blocking-I/O permits.",
        None,
        &gauge(pool.queued.load(Ordering::Relaxed)),
    )
}

fn encode_partitions(e: &mut DescriptorEncoder, broker: &Broker) -> Result {
    let mut partitions = broker.partitions.all();
    partitions.sort_by(|a, b| (&a.topic, a.index).cmp(&(&b.topic, b.index)));
    // Per-topic sums: traffic counters and size, for every topic whatever the cap.
    let mut topics: Vec<(&str, [u64; 5])> = Vec::new();
    for p in &partitions {
        let m = &p.metrics;
        let v = [
            m.bytes_in.load(Ordering::Relaxed),
            m.records_in.load(Ordering::Relaxed),
            m.bytes_out.load(Ordering::Relaxed),
            m.records_out.load(Ordering::Relaxed),
            p.log.size_bytes(),
        ];
        match topics.last_mut() {
            Some((t, sums)) if *t == p.topic => sums.iter_mut().zip(v).for_each(|(s, x)| *s += x),
            _ => topics.push((&p.topic, v)),
        }
    }
    let per_topic = [
        (
            "topic_bytes_in",
            "Record batch bytes produced by clients (after compression).",
        ),
        ("topic_records_in", "Records produced by clients."),
        (
            "topic_bytes_out",
            "Record batch bytes fetched by consumers (not followers).",
        ),
        (
            "topic_records_out",
            "Records in the batches fetched by consumers.",
        ),
    ];
    for (i, (name, help)) in per_topic.iter().enumerate() {
        family(
            e,
            name,
            help,
            None,
            MetricType::Counter,
            topics.iter().map(|(t, v)| ([("topic", *t)], counter(v[i]))),
        )?;
    }
    family(
        e,
        "topic_size",
        "Bytes of all segments of the topic's partitions hosted here.",
        Some(&Unit::Bytes),
        MetricType::Gauge,
        topics
            .iter()
            .map(|(t, v)| ([("topic", *t)], gauge(v[4] as i64))),
    )?;
    let shown = partitions.len().min(limits::METRICS_PARTITION_SERIES_MAX);
    single(
        e,
        "metrics_partitions_truncated",
        "Hosted partitions left out of the per-partition series (over the series cap).",
        None,
        &gauge((partitions.len() - shown) as i64),
    )?;
    let shown = &partitions[..shown];
    let labels = |p: &crate::partitions::Partition| {
        [
            ("topic", p.topic.clone()),
            ("partition", p.index.to_string()),
        ]
    };
    type Get = fn(&crate::partitions::Partition) -> i64;
    let gauges: [(&str, &str, Option<&Unit>, Get); 5] = [
        (
            "partition_size",
            "Bytes of the partition's segments.",
            Some(&Unit::Bytes),
            |p| p.log.size_bytes() as i64,
        ),
        (
            "partition_segments",
            "Segments of the partition's log.",
            None,
            |p| p.log.segment_count() as i64,
        ),
        (
            "partition_log_start_offset",
            "First offset of the partition's log.",
            None,
            |p| p.log.log_start_offset(),
        ),
        (
            "partition_log_end_offset",
            "Offset the partition's next record gets.",
            None,
            |p| p.log.log_end_offset(),
        ),
        (
            "partition_high_watermark",
            "The partition's high watermark (what consumers may read below).",
            None,
            |p| p.log.high_watermark(),
        ),
    ];
    for (name, help, unit, get) in gauges {
        family(
            e,
            name,
            help,
            unit,
            MetricType::Gauge,
            shown.iter().map(|p| (labels(p), gauge(get(p)))),
        )?;
    }
    Ok(())
}

fn encode_groups(e: &mut DescriptorEncoder, broker: &Broker) -> Result {
    let groups = broker.groups();
    let stats = groups.stats();
    let c = &stats.coordinator;
    family(
        e,
        "groups",
        "Consumer groups this broker coordinates, by state.",
        None,
        MetricType::Gauge,
        c.groups
            .iter()
            .map(|(state, n)| ([("state", state.as_str())], gauge(*n as i64))),
    )?;
    single(
        e,
        "group_members",
        "Members of the consumer groups this broker coordinates.",
        None,
        &gauge(c.members as i64),
    )?;
    single(
        e,
        "group_rebalances",
        "Rebalances begun by the groups this broker coordinates (since it began coordinating).",
        None,
        &counter(c.rebalances_total),
    )?;
    single(
        e,
        "offset_commits",
        "Committed offsets made durable (each partition of a commit counts once).",
        None,
        &counter(c.offset_commits_total),
    )?;
    single(
        e,
        "offsets_expired",
        "Committed offsets removed by offsets.retention.minutes.",
        None,
        &counter(c.offsets_expired_total),
    )?;
    single(
        e,
        "group_coordinator_queue_depth",
        "Group requests queued for the coordinator task.",
        None,
        &gauge(groups.queue_depth() as i64),
    )?;
    single(
        e,
        "group_coordinator_loading_partitions",
        "__consumer_offsets partitions led here and still loading.",
        None,
        &gauge(stats.loading_partitions as i64),
    )?;
    let image = broker.metadata.image();
    let mut rows = Vec::new();
    for (group, topic, partition, committed) in &c.committed {
        // The end a consumer can reach: the high watermark, as `kafka-consumer-groups` shows.
        let hosted = image
            .topic_by_name(topic)
            .and_then(|t| broker.partitions.get(t.topic_id, *partition));
        if let Some(p) = hosted {
            let lag = (p.log.high_watermark() - committed).max(0);
            let labels = [
                ("group", group.clone()),
                ("topic", topic.clone()),
                ("partition", partition.to_string()),
            ];
            rows.push((labels, gauge(lag)));
        }
    }
    family(
        e,
        "consumer_group_lag",
        "High watermark minus committed offset, per group and partition hosted here.",
        None,
        MetricType::Gauge,
        rows,
    )?;
    single(
        e,
        "consumer_group_lag_truncated",
        "Committed offsets left out of consumer_group_lag (over the series cap).",
        None,
        &gauge(c.committed_truncated as i64),
    )
}

fn encode_cluster(e: &mut DescriptorEncoder, broker: &Broker, metrics: &Metrics) -> Result {
    let chain = broker.metadata.chain_status();
    single(
        e,
        "chain_term",
        "The chain's current term.",
        None,
        &gauge(chain.term as i64),
    )?;
    single(
        e,
        "chain_head_height",
        "Height of this node's chain head.",
        None,
        &gauge(chain.head.height as i64),
    )?;
    single(
        e,
        "chain_commit_height",
        "Height of the chain's commit point as this node knows it.",
        None,
        &gauge(chain.commit.height as i64),
    )?;
    single(
        e,
        "chain_uncommitted_blocks",
        "Blocks between the commit point and this node's head.",
        None,
        &gauge(chain.head.height.saturating_sub(chain.commit.height) as i64),
    )?;
    single(
        e,
        "chain_forks",
        "Heights above the commit point where this node holds competing blocks (uncommitted forks).",
        None,
        &gauge(CHAIN_FORKS.load(Ordering::Relaxed) as i64),
    )?;
    let d = e.encode_descriptor(
        "chain_commit_duration",
        "From a proposal on this node to its commit (committed proposals only).",
        Some(&Unit::Seconds),
        MetricType::Histogram,
    )?;
    CHAIN_COMMIT.encode(d)?;
    let d = e.encode_descriptor(
        "chain_persist_duration",
        "Persisting and fsyncing one round of chain work (blocks, votes) to the chain store.",
        Some(&Unit::Seconds),
        MetricType::Histogram,
    )?;
    CHAIN_PERSIST.encode(d)?;
    single(
        e,
        "chain_dead_blocks_collected",
        "Dead-branch blocks collected since this node started.",
        None,
        &counter(chain.collected_total),
    )?;
    single(
        e,
        "chain_leader_changes",
        "Times this node saw a new chain leader.",
        None,
        &counter(metrics.chain_leader_changes.load(Ordering::Relaxed)),
    )?;
    let progress = broker.metadata.watch_progress().borrow().clone();
    family(
        e,
        "chain_voter_lag_blocks",
        "Blocks each voter is behind the leader's head (reported by the chain leader only).",
        None,
        MetricType::Gauge,
        progress.iter().filter_map(|p| {
            let behind = chain.head.height.saturating_sub(p.matched?.height);
            Some(([("voter", p.id.to_string())], gauge(behind as i64)))
        }),
    )?;
    single(
        e,
        "isr_shrinks",
        "ISR shrinks of partitions led here (by this leader or by the controller fencing a replica).",
        None,
        &counter(metrics.isr_shrinks.load(Ordering::Relaxed)),
    )?;
    single(
        e,
        "isr_expands",
        "ISR expansions of partitions led here.",
        None,
        &counter(metrics.isr_expands.load(Ordering::Relaxed)),
    )?;
    single(
        e,
        "replica_fetch_batches_refused",
        "Fetch answers whose batches this broker refused as a follower (its partition then waits for a new leader epoch).",
        None,
        &counter(crate::replication::follower_batches_refused()),
    )?;
    single(
        e,
        "controller_active",
        "1 while this node is the active controller.",
        None,
        &gauge(i64::from(broker.controller.is_active())),
    )?;
    let image = broker.metadata.image();
    let mut states = [("unfenced", 0i64), ("fenced", 0), ("shutting_down", 0)];
    for b in image.brokers.values() {
        let i = if b.in_controlled_shutdown {
            2
        } else if b.fenced {
            1
        } else {
            0
        };
        states[i].1 += 1;
    }
    family(
        e,
        "brokers",
        "Registered brokers by state, as this node's image holds them.",
        None,
        MetricType::Gauge,
        states.iter().map(|(s, n)| ([("state", *s)], gauge(*n))),
    )?;
    let me = broker.config.node_id;
    let (mut led, mut offline, mut under_replicated, mut under_min_isr) = (0, 0, 0, 0);
    for topic in image.topics.values() {
        for p in &topic.partitions {
            if p.leader < 0 {
                offline += 1;
            }
            if p.leader != me {
                continue;
            }
            led += 1;
            if p.isr.len() < p.replicas.len() {
                under_replicated += 1;
            }
            let min_isr = broker
                .partitions
                .get(topic.topic_id, p.partition)
                .map_or(1, |x| x.min_insync_replicas());
            if (p.isr.len() as i64) < i64::from(min_isr) {
                under_min_isr += 1;
            }
        }
    }
    single(
        e,
        "partitions_led",
        "Partitions this broker leads.",
        None,
        &gauge(led),
    )?;
    single(
        e,
        "partitions_offline",
        "Partitions without a leader (reported by the active controller only, as Kafka's).",
        None,
        &gauge(if broker.controller.is_active() {
            offline
        } else {
            0
        }),
    )?;
    single(
        e,
        "partitions_under_replicated",
        "Partitions led here whose ISR is smaller than their replica set.",
        None,
        &gauge(under_replicated),
    )?;
    single(
        e,
        "partitions_under_min_isr",
        "Partitions led here whose ISR is smaller than min.insync.replicas.",
        None,
        &gauge(under_min_isr),
    )
}

/// Writes a JSON-escaped string (for the readiness document).
pub(crate) fn json_string(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_names_are_kafkas() {
        assert_eq!(error_name(10), "MESSAGE_TOO_LARGE");
        assert_eq!(error_name(6), "NOT_LEADER_OR_FOLLOWER");
        assert_eq!(error_name(-1), "UNKNOWN_SERVER_ERROR");
        assert_eq!(error_name(999), "UNKNOWN_CODE_999");
    }

    #[test]
    fn histogram_buckets_and_sum() {
        let h = LatencyHistogram::default();
        h.observe(Duration::from_micros(100));
        h.observe(Duration::from_millis(3));
        h.observe(Duration::from_secs(60));
        let counts: Vec<u64> = h
            .buckets
            .iter()
            .map(|b| b.load(Ordering::Relaxed))
            .collect();
        assert_eq!(counts[0], 1);
        assert_eq!(counts[3], 1, "3 ms falls in the 5 ms bucket");
        assert_eq!(*counts.last().unwrap(), 1, "60 s is +Inf");
        assert_eq!(h.sum_ns.load(Ordering::Relaxed), 60_003_100_000);
    }

    #[test]
    fn records_are_counted_from_batch_headers() {
        let batch = |records: i32, body: usize| {
            let mut b = vec![0u8; 61 + body];
            b[8..12].copy_from_slice(&((49 + body) as i32).to_be_bytes());
            b[57..61].copy_from_slice(&records.to_be_bytes());
            b
        };
        let mut two = batch(3, 10);
        two.extend(batch(4, 0));
        assert_eq!(records_in_batches(&two), 7);
        let partial = &two[..two.len() - 1];
        assert_eq!(records_in_batches(partial), 3, "a cut batch is not counted");
    }

    #[test]
    fn a_fresh_registry_renders_strict_openmetrics_shape() {
        let m = Metrics::new();
        m.connections.opened();
        m.requests.observe(0, 9, Duration::from_millis(2));
        let text = m.render();
        assert!(text.ends_with("# EOF\n"), "{text}");
        assert!(text.contains("josefine_connections 1\n"), "{text}");
        assert!(
            text.contains("josefine_connections_accepted_total 1\n"),
            "{text}"
        );
        assert!(
            text.contains("josefine_request_duration_seconds_bucket{le=\"0.0025\",api=\"Produce\",version=\"9\"} 1"),
            "{text}"
        );
        assert!(text.contains("josefine_build_info{version=\""), "{text}");
    }
}

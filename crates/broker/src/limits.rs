//! Every network-side limit of the broker, named once, each with the reason for its number.
//!
//! Owns: the constants that bound memory and work per connection and per broker. Storage limits
//! live in `josefine_log::limits`. Must never: be bypassed by an unbounded queue or a
//! `Vec::with_capacity` of a peer-declared size elsewhere in the broker.

/// Default request size cap (Kafka `socket.request.max.bytes`, 100 MiB). Checked against the
/// 4-byte frame length before any buffer is allocated.
pub const REQUEST_BYTES_MAX_DEFAULT: u32 = 100 * 1024 * 1024;

/// Highest value `socket.request.max.bytes` may be set to. The allocator guard's threshold
/// ([`crate::alloc_guard::GUARD_THRESHOLD_BYTES`]) must stay well above it so no legitimate
/// allocation is ever served from the guard's reserve-only mappings.
pub const REQUEST_BYTES_MAX_CEILING: u32 = 512 * 1024 * 1024;

/// Default cap on concurrent client connections. Kafka's `max.connections` is unlimited by
/// default; Josefine always keeps a cap so a connection flood cannot exhaust file descriptors.
pub const CONNECTIONS_MAX_DEFAULT: u32 = 4096;

/// Highest value `max.connections` may be set to (beyond typical fd limits anyway).
pub const CONNECTIONS_MAX_CEILING: u32 = 1 << 20;

/// Default number of requests read ahead on one connection while earlier ones are handled.
/// Responses still go back in request order; the bound keeps one pipelining client from
/// queueing unbounded work (worst case memory: this times `socket.request.max.bytes`).
pub const IN_FLIGHT_REQUESTS_PER_CONNECTION_DEFAULT: u32 = 16;

/// Highest value `queued.max.requests` may be set to.
pub const IN_FLIGHT_REQUESTS_PER_CONNECTION_CEILING: u32 = 1024;

/// Most partitions a single topic may have; bounds per-topic memory and the CreateTopics work
/// one request can cause. Kafka has no hard cap, but a single-node broker with one log (3 open
/// files) per partition cannot sensibly hold more.
pub const PARTITIONS_PER_TOPIC_MAX: i32 = 10_000;

/// Most topics a single CreateTopics/DeleteTopics/Metadata request may name. Each name costs
/// work and, for auto-creation, a metadata proposal; real clients send a handful.
pub const TOPICS_PER_REQUEST_MAX: usize = 10_000;

/// Longest `max_wait_ms` a Fetch may park for. Clients use 500 ms by default; a hostile value
/// of i32::MAX would pin a waiter for weeks.
pub const FETCH_MAX_WAIT_MS_CEILING: u64 = 30_000;

/// Most Fetch requests parked waiting for data at once, broker-wide. Beyond this a fetch is
/// answered immediately with what is there (still correct, just less efficient).
pub const FETCH_WAITERS_MAX: usize = 10_000;

/// A fetched partition's records of at least this many bytes go from the segment file to a
/// plaintext socket by `sendfile` (zero-copy); smaller ones are read into the response, where
/// one `write` costs less than the extra `sendfile` calls (one per partition).
pub const ZERO_COPY_MIN_BYTES: usize = 16 * 1024;

/// Applied results of recent metadata blocks kept for their proposers (`metadata::store`). A
/// proposer takes its result as soon as the image it waits for is published; the chain leader
/// holds at most `josefine_chain::limits::PENDING_PROPOSALS_MAX` (1024) proposals, so as many
/// results means none is dropped before its proposer looks.
pub const METADATA_RESULTS_KEPT_MAX: usize = 1024;

/// ...and at most this many payload bytes of their blocks (a result, a created topic say, is
/// about as large as its command, at most 1 MiB): a burst of the largest creations costs at
/// most 64 MiB. A result dropped unread answers its proposer "outcome unknown".
pub const METADATA_RESULTS_KEPT_BYTES_MAX: usize = 64 << 20;

/// How long a proposer waits for its committed block to be applied by this broker's image
/// before answering "outcome unknown" (REQUEST_TIMED_OUT): applying is local CPU work plus
/// partition file effects, far below this unless the disk stalls.
pub const METADATA_APPLY_WAIT_MS: u64 = 30_000;

/// Metadata blocks applied between image snapshots (chain compaction). Each snapshot encodes
/// the whole image; 1000 blocks keeps a restart's replay short and the encoding rare.
pub const METADATA_SNAPSHOT_EVERY_BLOCKS: u64 = 1000;

/// ...or this many payload bytes of applied blocks, whichever comes first (Kafka's
/// `metadata.log.max.record.bytes.between.snapshots` is 20 MiB; big creations snapshot sooner).
pub const METADATA_SNAPSHOT_EVERY_BYTES: u64 = 16 << 20;

/// Blocks the applier applies in a row before it publishes the image: publishing clones the
/// image, so a replay publishes every this many blocks instead of after each one.
pub const METADATA_APPLY_PUBLISH_EVERY_MAX: usize = 1024;

/// Producer ids allocated through the metadata state machine per block. Big enough that
/// InitProducerId rarely needs a proposal, small enough that a crash wastes few ids.
pub const PRODUCER_ID_BLOCK_SIZE: i64 = 1000;

/// Ids left in the current block when the next one is asked for in the background (Kafka asks
/// at 90% use), so InitProducerId rarely waits on the controller.
pub const PRODUCER_ID_PREFETCH_REMAINING: i64 = PRODUCER_ID_BLOCK_SIZE / 10;

/// Longest topic name, as Kafka (249: a partition dir name must fit in 255 bytes).
pub const TOPIC_NAME_BYTES_MAX: usize = 249;

/// Threads for blocking file I/O (appends, reads, fsync) off the async workers. tokio's
/// blocking pool is itself bounded (512 by default); this is the in-flight cap we enforce
/// with a semaphore so a burst cannot spawn hundreds of threads on a 2-core machine.
pub const BLOCKING_IO_IN_FLIGHT_MAX: usize = 64;

/// How often the background ticker calls `PartitionLog::tick` (time rolls, interval flushes).
pub const LOG_TICK_INTERVAL_MS: u64 = 1_000;

/// Group requests queued to the group coordinator task. Each connection has at most one request
/// in progress, so this only fills when thousands of connections send group requests at once;
/// senders then wait (back-pressure) instead of growing a queue.
pub const GROUP_REQUESTS_QUEUED_MAX: usize = 1024;

/// `__consumer_offsets` appends queued between the coordinator task and its appender. Beyond
/// this the coordinator fails the append at once (COORDINATOR_NOT_AVAILABLE to the client, who
/// retries) rather than waiting, so the coordinator task itself never blocks on storage.
pub const GROUP_APPENDS_QUEUED_MAX: usize = 1024;

/// Appends a coordinator's appender (`coordinator_partitions`, for `__consumer_offsets` and
/// `__transaction_state`) writes in one blocking round (one flush per partition per round
/// when `log.flush.interval.messages=1`): amortises the blocking-pool hop under commit load.
pub const COORDINATOR_APPENDS_PER_ROUND_MAX: usize = 64;

/// Appended rounds waiting for the high watermark behind the appender, which keeps appending
/// meanwhile; beyond this it waits too (back-pressure on the coordinator's append queue).
pub const COORDINATOR_ROUNDS_WAITING_MAX: usize = 64;

/// How long a coordinator's append waits for the high watermark to cover it before it counts
/// as failed (COORDINATOR_NOT_AVAILABLE-style errors to the client, who retries): Kafka's
/// `offsets.commit.timeout.ms` default, 5 s, for both coordinators.
pub const COORDINATOR_APPEND_COMMIT_TIMEOUT_MS: u64 = 5_000;

/// Bytes of an internal topic (`__consumer_offsets`, `__transaction_state`) read per step while
/// loading a partition; bounds the memory a load holds (one step's records are handed to the
/// coordinator, then dropped).
pub const COORDINATOR_LOAD_READ_BYTES_MAX: usize = 1 << 20;

/// Load steps queued from the loader to the coordinator task.
pub const GROUP_LOAD_STEPS_QUEUED_MAX: usize = 16;

/// Most ISR changes of one AlterPartition proposed as one metadata batch: a partition change
/// encodes in about 50 bytes, so this stays far below the 1 MiB chain block, and a leader of
/// thousands of partitions still needs only a few blocks.
pub const ALTER_PARTITION_CHANGES_PER_BLOCK_MAX: usize = 1_000;

/// Highest value `replica.fetch.response.max.bytes` may be set to: a follower reads the
/// leader's answer frame into memory, so its size stays bounded (Kafka's default is 10 MiB).
pub const REPLICA_FETCH_RESPONSE_BYTES_CEILING: i32 = 256 << 20;

/// Bytes a follower accepts in a leader's Fetch answer beyond `replica.fetch.response.max.bytes`:
/// the leader may add one whole batch past the limit so that a follower always makes progress
/// (a batch is at most `max.message.bytes`, 1 MiB by default), plus the response's own framing.
/// Also the cap on a leader's ListOffsets answer to a follower.
pub const REPLICA_FETCH_FRAME_SLACK_BYTES: usize = 64 << 20;

/// ISR proposals (AlterPartition) queued from the leader states to the proposer task. Each
/// partition has at most one in flight, so this only fills when that many partitions change
/// their ISR at once; a proposal that finds it full is answered "retriable" and proposed again
/// by its leader state later.
pub const ISR_PROPOSALS_QUEUED_MAX: usize = 16_384;

/// Rounds of effects a leader state's effects may cause in one go (a refused proposal is
/// answered at once, which may bring another effect): a bound on a loop that ends after one or
/// two rounds in practice.
pub const REPLICA_EFFECT_ROUNDS_MAX: usize = 4;

/// Bounds on the period of the leader states' lag check (half `replica.lag.time.max.ms`, as
/// Kafka's ISR expiration): never busier than every 100 ms, never lazier than every 5 s.
pub const REPLICA_TICK_MS_MIN: u64 = 100;
pub const REPLICA_TICK_MS_MAX: u64 = 5_000;

/// How long a WriteTxnMarkers marker waits for the high watermark to cover it before its
/// partition answers REQUEST_TIMED_OUT (Kafka uses `request.timeout.ms`, 30 s).
pub const WRITE_TXN_MARKERS_TIMEOUT_MS: u64 = 30_000;

/// Most hosted partitions exported with per-partition series on `/metrics`; beyond it only
/// per-topic series (and `metrics_partitions_truncated`). Five gauges of ~90 bytes each make
/// 2,000 partitions about 1 MB a scrape: past that, a 15 s scrape costs Prometheus more than
/// the per-partition detail is worth (Kafka's JMX exporter setups usually filter them too).
pub const METRICS_PARTITION_SERIES_MAX: usize = 2_000;

/// Most `consumer_group_lag` series on `/metrics` (one per group and partition committed):
/// the same budget as the partition series.
pub const METRICS_GROUP_LAG_SERIES_MAX: usize = 2_000;

/// Largest HTTP request head (request line and headers) the HTTP listener reads; larger gets
/// 431. Browsers and Prometheus send well under 4 KiB; 16 KiB leaves room for long cookies.
pub const HTTP_HEADER_BYTES_MAX: usize = 16 * 1024;

/// Largest HTTP request body read; larger gets 413. No endpoint takes a body yet (the JSON API
/// will take small ones), so 1 MiB only bounds memory.
pub const HTTP_BODY_BYTES_MAX: usize = 1024 * 1024;

/// Concurrent HTTP connections; more are closed at accept. A few scrapers and probes need a
/// handful; the cap keeps a flood from costing the Kafka listener file descriptors.
pub const HTTP_CONNECTIONS_MAX: usize = 64;

/// Time a client has to send a whole HTTP request (head and body; also the idle time allowed
/// on a kept-alive connection): a slow-loris holds a connection slot this long at most.
pub const HTTP_REQUEST_TIMEOUT_MS: u64 = 10_000;

/// How often the group coordinator's figures (groups, members, committed offsets for the lag
/// series) are refreshed for `/metrics` while events arrive: they cost a walk of every
/// committed offset, too much for every OffsetCommit; a scrape every 15 s (or 1 s) sees figures
/// at most this old.
pub const GROUP_STATS_INTERVAL_MS: i64 = 1_000;

/// Transaction coordinator requests queued for its task; senders wait beyond this (their
/// connections park), which bounds memory under a flood. As the group coordinator's queue.
pub const TXN_REQUESTS_QUEUED_MAX: usize = 1024;

/// `__transaction_state` appends queued for the appender; more fail at once with
/// COORDINATOR_NOT_AVAILABLE (clients retry). The coordinator's own pending-append limit
/// (`josefine_txn::limits::PENDING_APPENDS_MAX`) usually binds first.
pub const TXN_APPENDS_QUEUED_MAX: usize = 1024;

/// Completions (appends, markers, load steps) queued back to the coordinator task. Their
/// senders are helper tasks that wait when it is full, never the task itself.
pub const TXN_INTERNAL_QUEUED_MAX: usize = 256;

/// Largest WriteTxnMarkers / AddPartitionsToTxn answer frame read from another broker: one
/// error code per partition, so 1 MiB holds tens of thousands.
pub const TXN_PEER_ANSWER_BYTES_MAX: usize = 1 << 20;

/// How long a partition leader waits for the transaction coordinator to verify a
/// transactional produce (KIP-890, AddPartitionsToTxn v4 verify_only); past it the produce
/// gets NOT_ENOUGH_REPLICAS, which producers retry (Kafka's mapping of coordinator errors).
pub const TXN_VERIFY_TIMEOUT_MS: u64 = 10_000;

/// Most records one message-browser page returns (`/api/v1/topics/T/messages`): a screenful
/// many times over, and a bound on the JSON built for one request.
pub const CONSOLE_PAGE_RECORDS_MAX: usize = 500;

/// Most record bytes (keys, values, headers as stored) one message-browser page reads: one
/// Fetch's worth, so a page of large records cannot hold more than this in memory.
pub const CONSOLE_PAGE_BYTES_MAX: usize = 4 * 1024 * 1024;

/// Longest key or value the message browser shows; the rest is cut and the record marked
/// `truncated` (a browser tab rendering megabytes of hex helps nobody).
pub const CONSOLE_VALUE_BYTES_SHOWN_MAX: usize = 64 * 1024;

/// How long one console API call may take (the Kafka requests it makes carry this as their
/// own timeout where they have one): answered 504 after it.
pub const CONSOLE_CALL_TIMEOUT_MS: u64 = 30_000;

/// Time a client has to complete a request frame once its first byte arrived (the 4-byte length
/// and the body). `connections.max.idle.ms` (10 minutes) still bounds the wait *between*
/// requests; without this bound, thousands of connections each sending a length and nothing
/// more held their slots for those 10 minutes. A 100 MiB frame (`socket.request.max.bytes`)
/// needs 1.7 MB/s to arrive in time; real producers send 1 MiB.
pub const FRAME_COMPLETION_TIMEOUT_MS: u64 = 60_000;

/// Time a new connection has to finish its TLS handshake and, on a SASL listener, its SASL
/// authentication (Kafka bounds neither; a stalled handshake here gives its slot back after
/// this). Real clients need milliseconds; 10 s allows for a loaded machine and slow links.
pub const CONNECTION_SETUP_TIMEOUT_MS: u64 = 10_000;

/// Largest frame a SASL listener reads before the connection has authenticated (Kafka's
/// `sasl.server.max.receive.size` default, 512 KiB): a larger declared length closes the
/// connection before any buffer is sized for it.
pub const SASL_RECEIVE_BYTES_MAX: usize = 524_288;

/// How long a failed SASL authentication waits between its error answer and the close (Kafka's
/// `connection.failed.authentication.delay.ms` default), slowing password guessing.
pub const FAILED_AUTHENTICATION_DELAY_MS: u64 = 100;

//! josefine-log: the durable partition log.
//!
//! A partition is a directory of segments (`<base offset, 20 digits>.log` holding record
//! batches exactly as produced except for the broker-stamped base offset, leader epoch and,
//! for LogAppendTime topics, max timestamp), each with a sparse offset index (`.index`) and time
//! index (`.timeindex`), plus a producer-state snapshot, a recovery-point checkpoint and a
//! clean-shutdown marker. Read it in this order: [`batch`] (what a batch is and what we accept),
//! `records` (the records inside), `segment` (one file trio), `producer_state` (idempotence
//! and open transactions), [`control`] and [`txn_index`] (transaction markers and aborts),
//! [`PartitionLog`] (append/read/flush/recovery, retention, DeleteRecords), [`cleaner`]
//! (compaction), [`LogManager`] (the data directory).
//!
//! This crate must never: know about sockets, tokio or the Kafka request framing; recompress a
//! batch on the produce path (only the cleaner rewrites batches, see below); serve bytes beyond
//! what an append completed; allocate in proportion to a count or length read from the wire
//! before checking it against the bytes present; run a thread or read the clock (the broker
//! drives `tick`, `enforce_retention` and `clean` with `now_ms`).
//!
//! # Durability policy
//!
//! The default is Kafka's: `flush_interval_messages = i64::MAX`, `flush_interval_ms = None`,
//! i.e. no fsync on the write path. An append is one `writev` into the page cache; the OS writes
//! it back. A crash of the *process* (SIGKILL, panic) loses nothing, because the page cache
//! belongs to the kernel. A crash of the *machine* can lose the last few seconds of
//! acknowledged writes; Kafka accepts that because replication, not fsync, is what makes data
//! durable in a cluster. For a single node that must not lose acknowledged writes on power
//! loss, set `flush_interval_messages = 1`: then [`PartitionLog::needs_flush_after_append`] is
//! true and the broker calls [`PartitionLog::flush`] before acknowledging. Flushes are group
//! commits: concurrent callers share one `fdatasync`, so throughput degrades gracefully with
//! many producers instead of one fsync per request. `flush_interval_ms` makes [`PartitionLog::tick`]
//! flush at most that long after the data was written.
//!
//! Recovery: `close()` flushes, writes a producer-state snapshot, the recovery point and a
//! clean-shutdown marker. On open without the marker, every batch after the recovery point
//! (the last offset known to be fsynced) is validated (structure and CRC); the log is truncated
//! at the first invalid byte and the indexes of the recovered segments are rebuilt.
//!
//! # Replication
//!
//! - High watermark: stored, not derived. [`PartitionLog::set_high_watermark`] (the
//!   replication layer, or the leader of a single replica after every append) clamps it to
//!   [log start, log end]; reads report it; retention, DeleteRecords and the cleaner never act
//!   at or above it. [`LogManager`] keeps one `replication-offset-checkpoint` per data
//!   directory (Kafka's format, written by [`LogManager::checkpoint_high_watermarks`]); a
//!   partition opens with HW = min(checkpoint, log end), or its log start without one.
//! - Leader-epoch cache (`leader-epoch-checkpoint`, Kafka's `LeaderEpochFileCache`): epoch ->
//!   start offset, rewritten atomically on every change; appends assign their stamped epoch,
//!   the log start trims it from the front, truncation from the back. Derived once from the
//!   batch headers when the file is missing.
//! - Followers ([`follower`](PartitionLog::append_as_follower)): `append_as_follower` writes a
//!   leader's batches as they are (offsets, epochs, timestamps kept; CRC checked; offsets from
//!   the log end on, with the gaps a leader's cleaner leaves accepted and made durable in the
//!   cleaner checkpoint first so recovery accepts them too). `truncate_to` and
//!   `truncate_fully_and_start_at` cut the log back crash-safely (the steps are in
//!   `follower.rs`): a crash anywhere recovers a prefix of the old log, with its epoch cache
//!   and producer state rebuilt from what is left.

//! # Where this differs from Kafka, and why
//!
//! - Records inside a batch must have offset deltas 0..n-1. Kafka would recompress the batch to
//!   renumber them; we never recompress, and every client writes dense deltas.
//! - Bytes after the one batch of a produce are refused (INVALID_RECORD / CORRUPT_MESSAGE);
//!   Kafka silently ignores a trailing partial batch.
//! - Time-based roll counts from the wall-clock time of a segment's first append, not from the
//!   producer's timestamp, so a client with a bad clock cannot make every append roll.
//! - A compressed batch may not decompress past [`limits::DECOMPRESSED_BATCH_BYTES_MAX`].
//! - The cleaner rewrites a batch that loses records *uncompressed* (Kafka recompresses with
//!   the original codec), keeps its lastOffsetDelta (Kafka shrinks it to the last kept
//!   record), and cleans each segment into one segment of the same base offset (Kafka merges
//!   small cleaned segments). Tombstone expiry is timed by the cleaner checkpoint's history
//!   rather than a delete-horizon stamped into the batch (KIP-534), for transaction markers
//!   too. When one pass would have to look up more than `CLEANER_ABORTED_TXNS_MAX` aborted
//!   transactions, it keeps transactional data and markers whole instead.
//! - Control batches from clients are refused (INVALID_RECORD); transactional ones too
//!   (INVALID_TXN_STATE) through [`PartitionLog::append`], the broker's produce path until its
//!   transaction coordinator verifies transactions; [`PartitionLog::append_allowing_transactions`]
//!   takes them.
//! - The leader-epoch cache ignores an epoch at or below its latest one (Kafka replaces the
//!   later entries with a "non-monotonic update" warning); truncation trims it first, so a
//!   follower never needs that.
//! - `truncate_to` an offset inside a batch removes the whole batch (the log end becomes its
//!   base offset; Kafka sets the log end to the requested offset).
//! - Follower appends roll segments by the broker's last given time, not the batches'
//!   timestamps (as the leader's time-based roll).
//! - Recovery and segment files follow Kafka's names (`<offset>.log/.index/.timeindex`,
//!   `.txnindex`, `partition.metadata`); the recovery point, clean marker and producer snapshots are kept per
//!   partition directory (`recovery-point`, `clean-shutdown`, `<offset>.snapshot`) in our own
//!   formats.

//! # Transactions
//!
//! As Kafka 4.1's `ProducerStateManager` / `UnifiedLog`: a transactional batch opens its
//! producer's transaction at its offset; [`PartitionLog::append_control_marker`] (the
//! partition-leader side of WriteTxnMarkers) writes a COMMIT or ABORT control batch that ends
//! it, checked against the producer epoch (INVALID_PRODUCER_EPOCH) and the coordinator epoch of
//! the last marker (TRANSACTION_COORDINATOR_FENCED); followers take the leader's markers as
//! they are. [`PartitionLog::last_stable_offset`] is the first offset of the oldest transaction
//! still open, or ended by a marker the high watermark has not passed, capped by the high
//! watermark (= the high watermark without transactions). Each abort is indexed in the
//! `<base>.txnindex` of the segment holding its marker; [`PartitionLog::aborted_transactions`]
//! searches those files for a read_committed fetch. The producer snapshot (v2) keeps each
//! producer's coordinator epoch and open transaction; opening replays the log after the
//! snapshot (markers included) and rebuilds the transaction index of every recovered or
//! damaged segment in the same pass; truncation cuts the index with the log and replays.

//! # Retention and compaction
//!
//! Files in a partition directory besides the segments: `log-start-offset`
//! (`"0\n<offset>\n"`, written atomically and fsynced whenever the log start moves:
//! DeleteRecords can put it inside a segment), `cleaner-checkpoint`
//! (`"0\n<cleaned up to>\n<rewritten below>\n<n>\n"` then n lines `"<offset> <ms>"`: the offset below which a cleaner pass completed, the offset below
//! which segments may have been rewritten, and when each cleaned point was reached, which times
//! tombstone removal). Transient: `<name>.deleted`, `<base>.log.cleaned`, `<base>.log.swap`,
//! `<base>.txnindex.cleaned` (a transaction index the cleaner is rewriting).
//!
//! Retention ([`PartitionLog::enforce_retention`], only with `cleanup.policy` delete or
//! compact,delete) deletes whole segments from the oldest: by `retention.ms` (largest record
//! timestamp older than now - retention.ms), then `retention.bytes` (while the log minus the
//! segment stays at or above the limit), then segments wholly below the log start. As in
//! Kafka the active segment qualifies too: when every segment is to go, a new empty active
//! segment is rolled first, so the log end never moves back. DeleteRecords
//! ([`PartitionLog::delete_records_before`]) fsyncs the new log start first, then deletes the
//! covered segments. Deleting a segment: remove it from the list (readers keep their open file),
//! rename its three files to `.deleted`, fsync the directory, checkpoint the log start, remove
//! the files. Recovery removes any `.deleted` file and takes the log start as the larger of the
//! checkpoint and the first segment's base, so a crash at any step leaves either the old state
//! or the new one. A read below the log start is OFFSET_OUT_OF_RANGE, including one that raced
//! with a deletion.
//!
//! Compaction ([`PartitionLog::clean`], see [`cleaner`] for the pass and the swap steps) rewrites
//! sealed segments into `.cleaned` copies, renames each to `.swap` (the commit point) and then
//! over the `.log` after deleting its indexes. Recovery deletes `.cleaned` files (roll back) and
//! completes `.swap` files (roll forward); indexes of a swapped segment are rebuilt from it.
//! Cleaned segments may have offset gaps between and inside batches; recovery accepts gaps only
//! in segments below the checkpoint's "rewritten below" offset, which is fsynced before the
//! first swap of a pass. Offsets never change, so consumers and the producer state see the same
//! offsets before and after.

pub mod batch;
pub mod cleaner;
#[cfg(test)]
mod cleaner_tests;
pub mod control;
mod error;
mod file_slice;
#[cfg(test)]
mod file_slice_tests;
mod follower;
#[cfg(test)]
mod follower_tests;
mod index;
mod leader_epochs;
pub mod limits;
mod manager;
mod partition;
#[cfg(test)]
mod partition_tests;
mod producer_state;
pub mod recompress;
mod records;
#[cfg(test)]
mod replication_tests;
#[cfg(test)]
mod retention_tests;
mod segment;
#[cfg(test)]
mod segment_props;
#[doc(hidden)]
pub mod testkit;
pub mod txn_index;
#[cfg(test)]
mod txn_tests;

pub use error::{LogError, RecordError};
pub use file_slice::{FileRead, FileSlice};
pub use manager::{LogManager, HIGH_WATERMARK_CHECKPOINT_FILE};
pub use partition::PartitionLog;
pub use records::{decompress, RecordVisit};

/// Kafka's `message.timestamp.type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TimestampType {
    /// Keep the producer's timestamps (validated against the before/after windows).
    #[default]
    CreateTime,
    /// Stamp every batch with the broker's append time.
    LogAppendTime,
}

/// Per-partition log settings. Field comments give the Kafka setting; `Default` is Kafka's.
#[derive(Debug, Clone, PartialEq)]
pub struct LogConfig {
    /// `log.segment.bytes` (1 GiB).
    pub segment_bytes: u64,
    /// `log.roll.ms` (7 days).
    pub segment_ms: i64,
    /// `log.index.interval.bytes` (4096).
    pub index_interval_bytes: u32,
    /// `message.max.bytes` (1048588), per batch after compression.
    pub max_message_bytes: u32,
    /// `log.flush.interval.messages` (i64::MAX as u64: never force). 1 = fsync before every ack.
    pub flush_interval_messages: u64,
    /// `log.flush.interval.ms` (None: leave it to the OS).
    pub flush_interval_ms: Option<i64>,
    /// `message.timestamp.type` (CreateTime).
    pub timestamp_type: TimestampType,
    /// `log.retention.ms` (7 days; -1 unlimited). Enforced by [`PartitionLog::enforce_retention`]
    /// when `cleanup_policy` includes delete.
    pub retention_ms: i64,
    /// `log.retention.bytes` (-1 unlimited). Enforced like `retention_ms`.
    pub retention_bytes: i64,
    /// `cleanup.policy` (delete).
    pub cleanup_policy: CleanupPolicy,
    /// `delete.retention.ms` (1 day): how long a tombstone stays after its offset was cleaned.
    pub delete_retention_ms: i64,
    /// `min.cleanable.dirty.ratio` (0.5), in [0, 1]: the driver cleans when `dirty_ratio()`
    /// reaches it (or when `max_compaction_lag_ms` forces it).
    pub min_cleanable_dirty_ratio: f64,
    /// `min.compaction.lag.ms` (0): a segment whose newest record is younger is not cleaned.
    pub min_compaction_lag_ms: i64,
    /// `max.compaction.lag.ms` (i64::MAX): a dirty record older than this makes the log
    /// cleanable whatever its dirty ratio ([`PartitionLog::cleaning_due`]).
    pub max_compaction_lag_ms: i64,
    /// `message.timestamp.before.max.ms` (i64::MAX: any past CreateTime is accepted).
    pub timestamp_before_max_ms: i64,
    /// `message.timestamp.after.max.ms` (1 hour, Kafka 4).
    pub timestamp_after_max_ms: i64,
    /// `compression.type` and `compression.{gzip,lz4,zstd}.level` (producer: keep the batch's
    /// codec).
    pub compression: recompress::CompressionConfig,
}

/// `LogConfig` is compared in tests and by the broker; its one float is validated to lie in
/// [0, 1] (never NaN), so equality is reflexive.
impl Eq for LogConfig {}

/// Kafka's `cleanup.policy`: `delete`, `compact` or `compact,delete`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CleanupPolicy {
    /// Retention by time and size deletes old segments.
    #[default]
    Delete,
    /// The log cleaner keeps the latest record per key; no retention.
    Compact,
    /// Both: compaction, and retention deletes whole old segments.
    CompactDelete,
}

impl CleanupPolicy {
    /// Parse Kafka's list syntax ("compact,delete" in either order, spaces allowed).
    pub fn parse(value: &str) -> Result<CleanupPolicy, LogError> {
        let (mut delete, mut compact) = (false, false);
        for part in value.split(',').map(str::trim) {
            match part {
                "delete" => delete = true,
                "compact" => compact = true,
                _ => {
                    return Err(LogError::InvalidConfig(format!(
                        "cleanup.policy value {value:?}: {part:?} is not delete or compact"
                    )))
                }
            }
        }
        match (compact, delete) {
            (true, true) => Ok(CleanupPolicy::CompactDelete),
            (true, false) => Ok(CleanupPolicy::Compact),
            (false, true) => Ok(CleanupPolicy::Delete),
            (false, false) => Err(LogError::InvalidConfig("cleanup.policy is empty".into())),
        }
    }
    pub fn compacts(self) -> bool {
        matches!(self, CleanupPolicy::Compact | CleanupPolicy::CompactDelete)
    }
    pub fn deletes(self) -> bool {
        matches!(self, CleanupPolicy::Delete | CleanupPolicy::CompactDelete)
    }
    /// Kafka's spelling, for DescribeConfigs.
    pub fn as_str(self) -> &'static str {
        match self {
            CleanupPolicy::Delete => "delete",
            CleanupPolicy::Compact => "compact",
            CleanupPolicy::CompactDelete => "compact,delete",
        }
    }
}

/// What one [`PartitionLog::enforce_retention`] call removed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RetentionOutcome {
    pub segments_deleted: usize,
    pub bytes_deleted: u64,
    pub new_log_start_offset: i64,
}

/// Per-call bounds of [`PartitionLog::clean`], set by the driver.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CleanerLimits {
    /// Keys the offset map may hold (memory ~ 48 bytes each). Capped by
    /// [`limits::CLEANER_OFFSET_MAP_ENTRIES_MAX`]. When the dirty section has more keys, a
    /// prefix of it is cleaned and `more` is returned.
    pub offset_map_entries_max: usize,
    /// Segment bytes one call may read and write while rewriting; at least one segment is
    /// always processed so every call makes progress. The driver throttles by sleeping
    /// `(bytes_read + bytes_written) / bytes_per_second` after each call.
    pub io_bytes_max: u64,
}

impl Default for CleanerLimits {
    fn default() -> Self {
        CleanerLimits {
            offset_map_entries_max: limits::CLEANER_OFFSET_MAP_ENTRIES_DEFAULT,
            io_bytes_max: limits::CLEANER_IO_BYTES_PER_CALL_DEFAULT,
        }
    }
}

/// What one [`PartitionLog::clean`] call did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CleanOutcome {
    pub bytes_read: u64,
    pub bytes_written: u64,
    /// Records dropped (superseded, expired tombstones, keyless).
    pub records_removed: u64,
    /// Segments swapped for a cleaned copy.
    pub segments_rewritten: usize,
    /// True when the call stopped on its budget or map limit: call again (after throttling).
    pub more: bool,
}

impl CleanOutcome {
    /// How long the driver should sleep after this call to keep the cleaner's disk traffic at
    /// `bytes_per_second` (Kafka's `log.cleaner.io.max.bytes.per.second`); 0 when unlimited.
    pub fn throttle_ms(&self, bytes_per_second: u64) -> u64 {
        if bytes_per_second == 0 || bytes_per_second == u64::MAX {
            return 0;
        }
        let bytes = self.bytes_read.saturating_add(self.bytes_written) as u128;
        (bytes * 1000 / bytes_per_second as u128).min(u64::MAX as u128) as u64
    }
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            segment_bytes: 1_073_741_824,
            segment_ms: 7 * 24 * 3_600_000,
            index_interval_bytes: 4096,
            max_message_bytes: 1_048_588,
            flush_interval_messages: i64::MAX as u64,
            flush_interval_ms: None,
            timestamp_type: TimestampType::CreateTime,
            retention_ms: 7 * 24 * 3_600_000,
            retention_bytes: -1,
            cleanup_policy: CleanupPolicy::Delete,
            delete_retention_ms: 86_400_000,
            min_cleanable_dirty_ratio: 0.5,
            min_compaction_lag_ms: 0,
            max_compaction_lag_ms: i64::MAX,
            timestamp_before_max_ms: limits::TIMESTAMP_BEFORE_MAX_MS_DEFAULT,
            timestamp_after_max_ms: limits::TIMESTAMP_AFTER_MAX_MS_DEFAULT,
            compression: recompress::CompressionConfig::default(),
        }
    }
}

/// Result of a successful append (or of a recognised duplicate).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AppendOutcome {
    pub base_offset: i64,
    pub last_offset: i64,
    /// The broker's append time for LogAppendTime topics, -1 for CreateTime (and duplicates).
    pub log_append_time_ms: i64,
    pub log_start_offset: i64,
    /// True when the batch was already in the log (idempotent retry): offsets are the original
    /// ones and nothing was written.
    pub duplicate: bool,
}

/// What one [`PartitionLog::append_as_follower`] call wrote. With no whole batch in the input,
/// `batches` is 0, `first_offset` = `log_end_offset` and `last_offset` = `log_end_offset - 1`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FollowerAppend {
    pub first_offset: i64,
    pub last_offset: i64,
    pub log_end_offset: i64,
    pub batches: usize,
}

/// One producer's state in a partition, as Kafka's DescribeProducers reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProducerInfo {
    pub producer_id: i64,
    pub producer_epoch: i16,
    /// Last sequence of its newest remembered batch (-1: none, e.g. only markers).
    pub last_sequence: i32,
    pub last_timestamp: i64,
    /// Coordinator epoch of its last marker (-1: none).
    pub coordinator_epoch: i32,
    /// First offset of its open transaction (-1: none).
    pub current_txn_start_offset: i64,
}

/// Whole batches for a fetch, plus the offsets the response reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadResult {
    pub records: bytes::Bytes,
    pub high_watermark: i64,
    pub log_start_offset: i64,
    pub log_end_offset: i64,
}

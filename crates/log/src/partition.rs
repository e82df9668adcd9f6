//! One partition's log: append, read, flush (group commit), roll, recovery.
//!
//! Owns: the ordered segments of one partition, the log end offset, producer state and the
//! durability bookkeeping (recovery point, clean-shutdown marker, producer snapshots).
//!
//! Concurrency: appends are serialised by the `writer` mutex (validation and decompression run
//! before it is taken). Reads take the segment-list lock only to clone an `Arc<Segment>`, then
//! `pread` with no lock held. An append publishes the segment's committed size and then the
//! log end offset with Release stores; readers load the end offset first (Acquire), so any
//! offset below it is fully written. Flushes coalesce: one caller fsyncs while the others wait
//! for its result if it covers their data (group commit).
//!
//! Must never: let a reader see bytes of an append that has not fully completed, hold a lock
//! across a read's pread, or acknowledge an append whose bytes could be served half-written.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, RwLock};

use crate::batch::{self, BatchHeader, ValidationConfig};
use crate::control::{self, EndTxnMarker};
use crate::leader_epochs::{LeaderEpochCache, LEADER_EPOCH_FILE};
use crate::limits::{BATCH_HEADER_BYTES, SEGMENT_BYTES_MAX};
use crate::producer_state::{CompletedTxn, ProducerStates, SequenceCheck, TxnOffsets};
use crate::recompress;
use crate::segment::{file_stem, Segment};
use crate::txn_index::AbortedTxn;
use crate::{AppendOutcome, LogConfig, LogError, ReadResult, RetentionOutcome, TimestampType};

pub(crate) const RECOVERY_POINT_FILE: &str = "recovery-point";
const CLEAN_SHUTDOWN_FILE: &str = "clean-shutdown";
pub(crate) const SNAPSHOT_SUFFIX: &str = ".snapshot";
/// The log start offset checkpoint: "0\n<offset>\n". Needed because DeleteRecords can put the
/// log start inside a segment, where the first segment's base offset no longer says it.
const LOG_START_FILE: &str = "log-start-offset";
/// Suffix of segment files being deleted (renamed first, removed second; recovery removes any).
pub(crate) const DELETED_SUFFIX: &str = ".deleted";
/// Producer snapshots kept: the newest plus one older in case the newest is damaged.
const SNAPSHOTS_RETAINED: usize = 2;

/// A partition's durable log. `Send + Sync`; every method takes `&self`.
pub struct PartitionLog {
    pub(crate) dir: PathBuf,
    topic_id: [u8; 16],
    /// Swapped whole by `update_config`; readers clone it (every field is plain data).
    config: RwLock<LogConfig>,
    pub(crate) segments: RwLock<Vec<Arc<Segment>>>,
    pub(crate) log_end_offset: AtomicI64,
    pub(crate) log_start_offset: AtomicI64,
    /// The stored high watermark, in [log start, log end] (read lock-free).
    pub(crate) high_watermark: AtomicI64,
    /// Serialises changes of the high watermark against truncation lowering the log end, so a
    /// `set_high_watermark` clamped to a stale log end cannot land after it. Lock order:
    /// `writer`, then this.
    pub(crate) high_watermark_update: Mutex<()>,
    /// The latest `now_ms` the broker gave this log (open, append, tick): the time of follower
    /// appends, which take none (this crate never reads the clock).
    pub(crate) clock_ms: AtomicI64,
    /// Truncations started since open: a read that failed while this moved retries (the
    /// file it read may have been cut under it).
    pub(crate) truncations: Arc<AtomicU64>,
    /// The leader-epoch cache, mirrored in `leader-epoch-checkpoint` after every change. Lock
    /// order: `writer`, then this.
    pub(crate) epochs: Mutex<LeaderEpochCache>,
    pub(crate) size_bytes: AtomicU64,
    pub(crate) unflushed_messages: AtomicU64,
    /// fsync rounds run by `flush` (a metric: compare with flush calls to see group commit).
    flush_rounds: AtomicU64,
    /// (largest timestamp, its offset) over the whole log.
    pub(crate) max_timestamp: Mutex<(i64, i64)>,
    pub(crate) writer: Mutex<Writer>,
    /// The log cleaner's checkpoint and pending pass (only `clean` takes it, never under
    /// `writer`; `clean` takes `writer` inside it only to swap).
    pub(crate) cleaner: Mutex<crate::cleaner::CleanerState>,
    /// Serialises removing or replacing sealed segments' files (retention, DeleteRecords,
    /// cleaner swaps). Lock order: `writer`, then this.
    pub(crate) segment_files: Mutex<()>,
    pub(crate) flush_state: Mutex<FlushState>,
    pub(crate) flush_done: Condvar,
    /// Open and not-yet-replicated ended transactions, for the LSO (changed only under
    /// `writer`, read alone by fetches). Lock order: `writer`, then this.
    pub(crate) txns: Mutex<TxnOffsets>,
}

pub(crate) struct Writer {
    pub(crate) producers: ProducerStates,
    /// A failed write could not be undone: refuse writes until reopened (and recovered).
    pub(crate) offline: bool,
    pub(crate) closed: bool,
    pub(crate) checkpointed_recovery_point: i64,
    last_interval_flush_ms: i64,
}

pub(crate) struct FlushState {
    /// Every offset below this is on disk.
    pub(crate) flushed_offset: i64,
    pub(crate) in_progress: bool,
}

pub(crate) fn io_err(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> LogError {
    let context = context.into();
    move |e| LogError::storage(context, e)
}

/// The index entry of an aborted transaction, with the LSO Kafka stores in it. Call before
/// `TxnOffsets::ended`.
pub(crate) fn aborted_entry(txns: &TxnOffsets, txn: &CompletedTxn) -> AbortedTxn {
    AbortedTxn {
        producer_id: txn.producer_id,
        first_offset: txn.first_offset,
        last_offset: txn.last_offset,
        last_stable_offset: txns.index_lso(txn),
    }
}

/// Write `bytes` to `path` atomically: temp file, fsync, rename.
pub(crate) fn write_file_atomically(path: &Path, bytes: &[u8]) -> Result<(), LogError> {
    let tmp = path.with_extension("tmp");
    let write = || -> std::io::Result<()> {
        let mut f = fs::File::create(&tmp)?;
        std::io::Write::write_all(&mut f, bytes)?;
        f.sync_all()?;
        fs::rename(&tmp, path)
    };
    write().map_err(io_err(format!("writing {}", path.display())))
}

pub(crate) fn sync_dir(dir: &Path) -> Result<(), LogError> {
    fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_err(format!("fsync directory {}", dir.display())))
}

fn read_recovery_point(dir: &Path) -> i64 {
    read_offset_file(dir, RECOVERY_POINT_FILE)
}

/// Read a "0\n<offset>\n" (version, offset) file. Anything else reads as 0: for the recovery
/// point that means "recover everything", for the log start "the first segment's base".
fn read_offset_file(dir: &Path, name: &str) -> i64 {
    let Ok(text) = fs::read_to_string(dir.join(name)) else {
        return 0;
    };
    let mut lines = text.lines();
    match (
        lines.next(),
        lines.next().and_then(|l| l.trim().parse::<i64>().ok()),
    ) {
        (Some("0"), Some(offset)) if offset >= 0 => offset,
        _ => 0,
    }
}

/// Parse `<20 digits><suffix>` file names.
pub(crate) fn offset_from_name(name: &str, suffix: &str) -> Option<i64> {
    let stem = name.strip_suffix(suffix)?;
    if stem.len() != 20 || !stem.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    stem.parse().ok()
}

/// INVALID_CONFIG for settings the log cannot honour (checked at open and on update).
fn validate_config(config: &LogConfig) -> Result<(), LogError> {
    if !(0.0..=1.0).contains(&config.min_cleanable_dirty_ratio) {
        return Err(LogError::InvalidConfig(format!(
            "min.cleanable.dirty.ratio {} outside [0, 1]",
            config.min_cleanable_dirty_ratio
        )));
    }
    if config.delete_retention_ms < 0
        || config.min_compaction_lag_ms < 0
        || config.max_compaction_lag_ms < 1
        || config.timestamp_before_max_ms < 0
        || config.timestamp_after_max_ms < 0
    {
        return Err(LogError::InvalidConfig(format!(
            "delete.retention.ms {}, min.compaction.lag.ms {}, max.compaction.lag.ms {}, message.timestamp.before/after.max.ms {}/{} must not be negative (max.compaction.lag.ms at least 1)",
            config.delete_retention_ms,
            config.min_compaction_lag_ms,
            config.max_compaction_lag_ms,
            config.timestamp_before_max_ms,
            config.timestamp_after_max_ms
        )));
    }
    if config.retention_ms < -1 || config.retention_bytes < -1 {
        return Err(LogError::InvalidConfig(format!(
            "retention.ms {} and retention.bytes {} must be -1 (unlimited) or >= 0",
            config.retention_ms, config.retention_bytes
        )));
    }
    {
        if config.segment_bytes < crate::limits::SEGMENT_BYTES_MIN
            || config.segment_bytes > SEGMENT_BYTES_MAX
        {
            return Err(LogError::InvalidConfig(format!(
                "segment_bytes {} outside [{}, {SEGMENT_BYTES_MAX}]",
                config.segment_bytes,
                crate::limits::SEGMENT_BYTES_MIN
            )));
        }
        if config.segment_ms <= 0 || config.index_interval_bytes == 0 {
            return Err(LogError::InvalidConfig(format!(
                "segment_ms {} and index_interval_bytes {} must be positive",
                config.segment_ms, config.index_interval_bytes
            )));
        }
    }
    Ok(())
}

impl PartitionLog {
    /// Create the log in `dir` or recover the one there (see the crate doc for the rules), with
    /// no checkpointed high watermark: it starts at the log start.
    pub fn open(
        dir: &Path,
        topic_id: [u8; 16],
        config: LogConfig,
        now_ms: i64,
    ) -> Result<Self, LogError> {
        Self::open_with_high_watermark(dir, topic_id, config, now_ms, None)
    }

    /// [`PartitionLog::open`] with the high watermark last checkpointed for this partition
    /// (`replication-offset-checkpoint`, see [`crate::LogManager`]): the log starts with
    /// HW = min(checkpoint, log end), or the log start without one.
    pub fn open_with_high_watermark(
        dir: &Path,
        topic_id: [u8; 16],
        config: LogConfig,
        now_ms: i64,
        checkpointed_high_watermark: Option<i64>,
    ) -> Result<Self, LogError> {
        validate_config(&config)?;
        fs::create_dir_all(dir).map_err(io_err(format!("creating {}", dir.display())))?;
        // Finish or undo what a crash interrupted: segment deletions and cleaner swaps.
        crate::cleaner::recover_files(dir)?;
        let cleaner = crate::cleaner::CleanerState::load(dir);
        let mut bases = Vec::new();
        let mut snapshots = Vec::new();
        for entry in fs::read_dir(dir).map_err(io_err(format!("listing {}", dir.display())))? {
            let entry = entry.map_err(io_err(format!("listing {}", dir.display())))?;
            let name = entry.file_name();
            let name = name.to_string_lossy();
            if let Some(base) = offset_from_name(&name, ".log") {
                bases.push(base);
            } else if let Some(off) = offset_from_name(&name, SNAPSHOT_SUFFIX) {
                snapshots.push(off);
            }
        }
        bases.sort_unstable();
        snapshots.sort_unstable();
        let clean = dir.join(CLEAN_SHUTDOWN_FILE).exists();
        let recovery_point = read_recovery_point(dir);
        let interval = config.index_interval_bytes;

        let mut segments: Vec<Arc<Segment>> = Vec::new();
        // Segments whose transaction index is rebuilt from the log: recovered ones (their
        // tail may hold markers the index never saw) and those whose index is damaged.
        let mut txn_index_rebuild = Vec::new();
        let mut discard_from = None;
        for (i, &base) in bases.iter().enumerate() {
            if let Some(prev) = segments.last() {
                // A cleaned segment may end before the next base (its last batches were
                // superseded); anywhere else a gap means lost data.
                let continues = if cleaner.may_have_gaps(prev.base_offset) {
                    prev.next_offset() <= base
                } else {
                    prev.next_offset() == base
                };
                if !continues {
                    tracing::warn!(dir = %dir.display(), base, expected = prev.next_offset(), "segment does not continue the log; discarding it and later ones");
                    discard_from = Some(i);
                    break;
                }
            }
            // A segment is trusted when it ended before the last fsynced offset (its indexes
            // were fsynced when it was sealed), or when the last shutdown was clean.
            let trust = clean || bases.get(i + 1).is_some_and(|&next| next < recovery_point);
            let (seg, truncated) = Segment::open(
                dir,
                base,
                trust,
                interval,
                now_ms,
                cleaner.may_have_gaps(base),
            )?;
            if !trust || seg.txn_index_damaged.is_some() {
                txn_index_rebuild.push(base);
            }
            segments.push(Arc::new(seg));
            if truncated {
                discard_from = Some(i + 1);
                break;
            }
        }
        if let Some(from) = discard_from {
            for &base in &bases[from..] {
                Segment::delete_files(dir, base)
                    .map_err(io_err("deleting segments after a truncation"))?;
            }
        }
        let log_start_checkpoint = read_offset_file(dir, LOG_START_FILE);
        if segments.is_empty() {
            // Retention and DeleteRecords never remove the last segment, so an empty directory
            // is a new log, or one whose segments were all lost: start at the checkpointed
            // log start so offsets never go backwards.
            segments.push(Arc::new(Segment::create(
                dir,
                log_start_checkpoint,
                now_ms,
            )?));
        }
        let mut log_end_offset = segments.last().expect("one segment").next_offset();
        if log_start_checkpoint > log_end_offset {
            // The log start was made durable (DeleteRecords, retention) but batches below it were
            // not, and a machine crash tore them: everything left is below the start, i.e.
            // already deleted. Offsets reported deleted must never be handed out again, so the
            // log continues empty at the checkpointed start, and the producer state of the
            // deleted batches goes with them (Kafka: LogLoader
            // deleteSegmentsIfLogStartGreaterThanLogEnd, truncateFullyAndStartAt).
            tracing::warn!(dir = %dir.display(), log_start_checkpoint, log_end_offset, "log start is past the recovered log end; emptying the log at the log start");
            for seg in segments.drain(..) {
                Segment::delete_files(dir, seg.base_offset)
                    .map_err(io_err("deleting segments below the log start"))?;
            }
            for off in snapshots.drain(..) {
                let path = dir.join(format!("{}{SNAPSHOT_SUFFIX}", file_stem(off)));
                let _ = fs::remove_file(path);
            }
            segments.push(Arc::new(Segment::create(
                dir,
                log_start_checkpoint,
                now_ms,
            )?));
            log_end_offset = log_start_checkpoint;
        }
        let log_start_offset = log_start_checkpoint
            .max(segments[0].base_offset)
            .min(log_end_offset);
        let high_watermark = checkpointed_high_watermark.map_or(log_start_offset, |hw| {
            hw.clamp(log_start_offset, log_end_offset)
        });
        let size_bytes = segments.iter().map(|s| s.size_bytes()).sum();
        let max_timestamp = segments
            .iter()
            .map(|s| s.max_timestamp())
            .fold((-1, -1), |a, b| if b.0 > a.0 { b } else { a });

        let log = PartitionLog {
            dir: dir.to_path_buf(),
            topic_id,
            config: RwLock::new(config),
            segments: RwLock::new(segments),
            log_end_offset: AtomicI64::new(log_end_offset),
            log_start_offset: AtomicI64::new(log_start_offset),
            high_watermark: AtomicI64::new(high_watermark),
            high_watermark_update: Mutex::new(()),
            clock_ms: AtomicI64::new(now_ms),
            truncations: Arc::new(AtomicU64::new(0)),
            epochs: Mutex::new(LeaderEpochCache::default()),
            size_bytes: AtomicU64::new(size_bytes),
            unflushed_messages: AtomicU64::new(0),
            flush_rounds: AtomicU64::new(0),
            max_timestamp: Mutex::new(max_timestamp),
            cleaner: Mutex::new(cleaner),
            segment_files: Mutex::new(()),
            writer: Mutex::new(Writer {
                producers: ProducerStates::default(),
                offline: false,
                closed: false,
                checkpointed_recovery_point: recovery_point,
                last_interval_flush_ms: now_ms,
            }),
            flush_state: Mutex::new(FlushState {
                flushed_offset: recovery_point.min(log_end_offset),
                in_progress: false,
            }),
            flush_done: Condvar::new(),
            txns: Mutex::new(TxnOffsets::default()),
        };
        txn_index_rebuild.retain(|&base| base < log_end_offset);
        let (producers, txns) = log.load_producer_state(&snapshots, &txn_index_rebuild)?;
        log.writer.lock().expect("writer lock").producers = producers;
        *log.txns.lock().expect("txns lock") = txns;
        let epochs = log.load_epoch_cache()?;
        *log.epochs.lock().expect("epochs lock") = epochs;

        // Make everything recovered durable (a process crash leaves it only in the page cache),
        // then drop the clean marker: from here on a stop without close() is unclean.
        log.sync_segments()?;
        log.flush_state.lock().expect("flush lock").flushed_offset = log_end_offset;
        log.write_recovery_point()?;
        match fs::remove_file(dir.join(CLEAN_SHUTDOWN_FILE)) {
            Ok(()) => sync_dir(dir)?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(LogError::storage("removing the clean-shutdown marker", e)),
        }
        Ok(log)
    }

    /// Newest usable snapshot at or below the log end, then replay the batches after it
    /// (headers; control batches' markers too) to rebuild the producer state and the open
    /// transactions. The transaction indexes of the segments based at `txn_index_rebuild` are
    /// rebuilt by the same replay, so it starts at a snapshot at or below the first of them.
    pub(crate) fn load_producer_state(
        &self,
        snapshots: &[i64],
        txn_index_rebuild: &[i64],
    ) -> Result<(ProducerStates, TxnOffsets), LogError> {
        let leo = self.log_end_offset();
        let mut state = ProducerStates::default();
        let mut from = self.log_start_offset();
        let replay_from_at_most = txn_index_rebuild.iter().copied().min().unwrap_or(i64::MAX);
        for &off in snapshots.iter().rev() {
            let path = self.snapshot_path(off);
            if off > leo {
                // The log was truncated below it: it describes batches that no longer exist.
                let _ = fs::remove_file(&path);
                continue;
            }
            if off > replay_from_at_most {
                continue;
            }
            let Ok(bytes) = fs::read(&path) else { continue };
            if bytes.len() as u64 > crate::limits::PRODUCER_SNAPSHOT_BYTES_MAX {
                continue;
            }
            if let Some((s, at)) = ProducerStates::from_snapshot(&bytes) {
                if at == off {
                    state = s;
                    from = off;
                    break;
                }
            }
        }
        let mut txns = TxnOffsets::from_producers(&state);
        let high_watermark = self.high_watermark();
        let segments = self.segments.read().expect("segments lock").clone();
        for seg in &segments {
            if txn_index_rebuild.contains(&seg.base_offset) {
                seg.reset_txn_index(&self.dir)?;
            }
        }
        let mut rebuilt_entries = 0usize;
        for seg in segments.iter().filter(|s| s.next_offset() > from) {
            let start = if seg.base_offset >= from {
                0
            } else {
                seg.index_position(from)
            };
            let rebuild = txn_index_rebuild.contains(&seg.base_offset);
            let mut index_error = None;
            seg.walk(start, seg.size_bytes(), |_, bytes| {
                let h = BatchHeader::parse(bytes)?;
                if h.last_offset() < from || !h.has_producer_id() {
                    return Ok(true);
                }
                if !h.is_control() {
                    if let Some(first) =
                        state.record(&h, h.base_offset, h.last_offset(), h.max_timestamp)
                    {
                        txns.opened(h.producer_id, first);
                    }
                    return Ok(true);
                }
                let marker = match control::decode_marker(bytes, &h) {
                    Ok(Some(m)) => m,
                    Ok(None) => return Ok(true),
                    Err(e) => {
                        tracing::warn!(dir = %self.dir.display(), offset = h.base_offset, error = %e, "unreadable transaction marker skipped while loading producer state");
                        return Ok(true);
                    }
                };
                let ended = state.record_marker(
                    h.producer_id,
                    h.producer_epoch,
                    marker,
                    h.base_offset,
                    h.max_timestamp,
                );
                if let Some(txn) = ended {
                    if rebuild && txn.aborted {
                        rebuilt_entries += 1;
                        if let Err(e) = seg.append_aborted(&aborted_entry(&txns, &txn)) {
                            index_error = Some(e);
                            return Ok(false);
                        }
                    }
                    txns.ended(&txn, high_watermark);
                }
                Ok(true)
            })
            .map_err(|b| b.error)?;
            if let Some(e) = index_error {
                return Err(e);
            }
            if rebuild {
                seg.sync_indexes()?;
            }
        }
        if !txn_index_rebuild.is_empty() {
            tracing::info!(dir = %self.dir.display(), segments = txn_index_rebuild.len(), aborted = rebuilt_entries, "rebuilt transaction indexes");
        }
        Ok((state, txns))
    }

    /// The leader-epoch cache from `leader-epoch-checkpoint`, or derived from the batch headers
    /// when the file is missing or damaged (an epoch starts at the first batch stamped with
    /// it); then trimmed to [log start, log end) and written back if anything changed.
    fn load_epoch_cache(&self) -> Result<LeaderEpochCache, LogError> {
        let path = self.dir.join(LEADER_EPOCH_FILE);
        let loaded = fs::read_to_string(&path)
            .ok()
            .and_then(|text| LeaderEpochCache::decode(&text));
        let (mut cache, mut changed) = match loaded {
            Some(cache) => (cache, false),
            None => {
                if path.exists() {
                    tracing::warn!(dir = %self.dir.display(), "damaged leader-epoch-checkpoint; deriving it from the batch headers");
                }
                (self.derive_epoch_cache()?, true)
            }
        };
        changed |= cache.truncate_from_end(self.log_end_offset());
        changed |= cache.truncate_from_start(self.log_start_offset());
        if changed {
            self.persist_epochs(&cache)?;
        }
        Ok(cache)
    }

    fn derive_epoch_cache(&self) -> Result<LeaderEpochCache, LogError> {
        let start = self.log_start_offset();
        let mut cache = LeaderEpochCache::default();
        let segments = self.segments.read().expect("segments lock").clone();
        for seg in segments.iter().filter(|s| s.next_offset() > start) {
            seg.walk(0, seg.size_bytes(), |_, bytes| {
                let h = BatchHeader::parse(bytes)?;
                if h.last_offset() >= start {
                    cache.assign(h.partition_leader_epoch, h.base_offset.max(start));
                }
                Ok(true)
            })
            .map_err(|b| b.error)?;
        }
        Ok(cache)
    }

    /// Write the cache file atomically (temp file, fsync, rename, fsync the directory).
    fn persist_epochs(&self, cache: &LeaderEpochCache) -> Result<(), LogError> {
        write_file_atomically(&self.dir.join(LEADER_EPOCH_FILE), &cache.encode())?;
        sync_dir(&self.dir)
    }

    /// Change the cache with `change` and persist it when it changed; on a failed write the
    /// cache is put back as it was, so memory never claims more than the file.
    pub(crate) fn update_epochs(
        &self,
        change: impl FnOnce(&mut LeaderEpochCache) -> bool,
    ) -> Result<(), LogError> {
        let mut cache = self.epochs.lock().expect("epochs lock");
        let before = cache.clone();
        if !change(&mut cache) {
            return Ok(());
        }
        if let Err(e) = self.persist_epochs(&cache) {
            *cache = before;
            return Err(e);
        }
        Ok(())
    }

    /// Kafka's `LeaderEpochFileCache.assign`: `epoch` starts at `start_offset`. A no-op when
    /// `epoch` is not above the latest cached epoch. A new leader calls it with its epoch and
    /// the log end before it accepts writes; appends call it for the epochs they write. The
    /// file is rewritten (atomically) before this returns.
    pub fn assign_leader_epoch(&self, epoch: i32, start_offset: i64) -> Result<(), LogError> {
        let w = self.writer.lock().expect("writer lock");
        if w.offline || w.closed {
            return Err(LogError::Offline);
        }
        self.update_epochs(|c| c.assign(epoch, start_offset))
    }

    /// The latest epoch in the leader-epoch cache.
    pub fn latest_leader_epoch(&self) -> Option<i32> {
        self.epochs.lock().expect("epochs lock").latest_epoch()
    }

    /// Kafka's `LeaderEpochFileCache.endOffsetFor(epoch, logEndOffset)`: `(epoch', end)` where
    /// epoch' is the largest cached epoch <= `epoch` and end the start of the next cached
    /// epoch, or the log end when `epoch` is the latest. When `epoch` is below every cached
    /// epoch (their records were deleted), `(epoch, start of the first cached epoch)`, as
    /// Kafka. None (Kafka's UNDEFINED_EPOCH answer) for an empty cache, `epoch` = -1, or an
    /// epoch above the latest.
    pub fn end_offset_for_epoch(&self, epoch: i32) -> Option<(i32, i64)> {
        let cache = self.epochs.lock().expect("epochs lock");
        cache.end_offset_for(epoch, self.log_end_offset())
    }

    /// Where exactly `epoch` starts in this log, if the cache has it.
    pub fn epoch_start_offset(&self, epoch: i32) -> Option<i64> {
        self.epochs.lock().expect("epochs lock").start_offset(epoch)
    }

    pub(crate) fn snapshot_path(&self, offset: i64) -> PathBuf {
        self.dir
            .join(format!("{}{SNAPSHOT_SUFFIX}", file_stem(offset)))
    }

    fn write_snapshot(&self, w: &Writer, offset: i64, durable: bool) -> Result<(), LogError> {
        let bytes = w.producers.to_snapshot(offset);
        let path = self.snapshot_path(offset);
        if durable {
            write_file_atomically(&path, &bytes)?;
        } else {
            fs::write(&path, &bytes).map_err(io_err(format!("writing {}", path.display())))?;
        }
        // Drop all but the newest few.
        let offs = self.snapshot_offsets()?;
        let keep_from = offs.len().saturating_sub(SNAPSHOTS_RETAINED);
        for off in &offs[..keep_from] {
            let _ = fs::remove_file(self.snapshot_path(*off));
        }
        Ok(())
    }

    fn validation_config(config: &LogConfig, allow_transactional: bool) -> ValidationConfig {
        ValidationConfig {
            max_message_bytes: config.max_message_bytes,
            timestamp_type: config.timestamp_type,
            timestamp_before_max_ms: config.timestamp_before_max_ms,
            timestamp_after_max_ms: config.timestamp_after_max_ms,
            require_keys: config.cleanup_policy.compacts(),
            allow_transactional,
        }
    }

    /// The current settings (a copy: `update_config` may replace them at any time).
    pub fn config(&self) -> LogConfig {
        self.config.read().expect("config lock").clone()
    }

    /// Append one produced batch: `records` is the Produce request's records field for this
    /// partition and must hold exactly one v2 batch (Kafka's rule for produce v3+). Validates,
    /// runs the idempotence checks, stamps offset / leader epoch / (LogAppendTime) timestamp,
    /// and writes it without copying the records (`Segment::append`). A recognised retry
    /// returns the original offsets with `duplicate: true` and writes nothing. Transactional
    /// batches are INVALID_TXN_STATE here (see [`PartitionLog::append_allowing_transactions`]).
    pub fn append(
        &self,
        records: &[u8],
        leader_epoch: i32,
        now_ms: i64,
    ) -> Result<AppendOutcome, LogError> {
        self.append_client_batch(records, leader_epoch, now_ms, false)
    }

    /// [`PartitionLog::append`] that also takes transactional batches: the first one of a
    /// producer since its last marker opens a transaction at its offset, which holds the last
    /// stable offset back until a marker ([`PartitionLog::append_control_marker`]) ends it. For
    /// the broker once its transaction coordinator has verified the producer's transaction
    /// (KIP-890); a non-transactional batch of a producer whose transaction is open is
    /// INVALID_TXN_STATE either way.
    pub fn append_allowing_transactions(
        &self,
        records: &[u8],
        leader_epoch: i32,
        now_ms: i64,
    ) -> Result<AppendOutcome, LogError> {
        self.append_client_batch(records, leader_epoch, now_ms, true)
    }

    fn append_client_batch(
        &self,
        records: &[u8],
        leader_epoch: i32,
        now_ms: i64,
        allow_transactional: bool,
    ) -> Result<AppendOutcome, LogError> {
        let config = self.config();
        self.clock_ms.fetch_max(now_ms, Ordering::Relaxed);
        let header = BatchHeader::parse(records)?;
        if header.total_bytes() > records.len() {
            return Err(LogError::InvalidRecord(
                "produce requests must have at least one complete record batch per partition"
                    .into(),
            ));
        }
        if header.total_bytes() < records.len() {
            return Err(LogError::InvalidRecord(
                "produce requests are only allowed to contain exactly one record batch per partition".into(),
            ));
        }
        // The directory is named "topic-partition" (manager.rs), Kafka's TopicPartition text.
        let topic_partition = self.dir.file_name().map(|n| n.to_string_lossy());
        let summary = batch::validate_client_batch_for(
            records,
            &Self::validation_config(&config, allow_transactional),
            now_ms,
            topic_partition.as_deref().unwrap_or_default(),
        )?;
        // The topic's compression.type (Kafka's LogValidator: after validation, before the
        // offsets); a rebuilt batch is checked against message.max.bytes again, as Kafka does.
        let rebuilt = recompress::rebuild_if_needed(records, &summary.header, &config.compression)?;
        let (records, summary, header) = match &rebuilt {
            None => (records, summary, header),
            Some((batch, summary)) => {
                let max_bytes =
                    (config.max_message_bytes as u64).min(crate::limits::BATCH_BYTES_MAX);
                if batch.len() as u64 > max_bytes {
                    return Err(LogError::MessageTooLarge {
                        size_bytes: batch.len() as u64,
                        max_bytes,
                    });
                }
                (batch.as_slice(), *summary, summary.header)
            }
        };
        // Everything under the CRC is settled before the lock: only the base offset and leader
        // epoch (outside the CRC) depend on the log's state. Only the 61-byte header is
        // rewritten, in a copy; the records after it are written from the caller's buffer.
        let mut head = [0u8; BATCH_HEADER_BYTES];
        head.copy_from_slice(&records[..BATCH_HEADER_BYTES]);
        let tail = &records[BATCH_HEADER_BYTES..];
        let (log_append_time_ms, max_ts) = match config.timestamp_type {
            TimestampType::LogAppendTime => (now_ms, now_ms),
            TimestampType::CreateTime => (-1, summary.max_timestamp),
        };
        batch::set_max_timestamp_split(&mut head, tail, config.timestamp_type, max_ts);

        let mut w = self.writer.lock().expect("writer lock");
        if w.offline || w.closed {
            return Err(LogError::Offline);
        }
        if let SequenceCheck::Duplicate(m) = w.producers.check(&header)? {
            return Ok(AppendOutcome {
                base_offset: m.first_offset,
                last_offset: m.last_offset,
                log_append_time_ms: -1,
                log_start_offset: self.log_start_offset(),
                duplicate: true,
            });
        }
        let base_offset = self.log_end_offset.load(Ordering::Relaxed);
        self.learn_epoch_before_write(leader_epoch, base_offset)?;
        batch::set_offset_and_epoch(&mut head, base_offset, leader_epoch);
        let max_ts_offset = match config.timestamp_type {
            TimestampType::LogAppendTime => base_offset,
            TimestampType::CreateTime => base_offset + summary.max_timestamp_offset_delta as i64,
        };
        let h = BatchHeader::parse(&head).expect("rewritten header parses");
        self.write_stamped(&mut w, &config, &head, tail, &h, max_ts_offset, now_ms)?;
        if let Some(first) = w.producers.record(&h, base_offset, h.last_offset(), max_ts) {
            self.txns
                .lock()
                .expect("txns lock")
                .opened(h.producer_id, first);
        }
        let unflushed = self.publish_leader_append(&h, records.len(), max_ts, max_ts_offset);
        drop(w);
        let interval = config.flush_interval_messages;
        if interval > 1 && unflushed >= interval {
            self.flush()?;
        }
        Ok(AppendOutcome {
            base_offset,
            last_offset: h.last_offset(),
            log_append_time_ms,
            log_start_offset: self.log_start_offset(),
            duplicate: false,
        })
    }

    /// Write a transaction marker (Kafka's `appendAsLeader` with origin COORDINATOR, for one
    /// WriteTxnMarkers entry): one control batch as Kafka encodes it ([`control`]) for
    /// `producer_id` at `producer_epoch`, COMMIT when `commit`, else ABORT, stamped with
    /// `leader_epoch` and `now_ms` (LogAppendTime topics: the append time, as any batch). It
    /// ends the producer's open transaction: an abort is added to the active segment's
    /// transaction index, and the LSO passes the transaction once the high watermark passes
    /// the marker. A marker with no transaction open is still written (a coordinator resends
    /// markers after a failover) and only updates the epochs. INVALID_PRODUCER_EPOCH when
    /// `producer_epoch` is older than the producer's, TRANSACTION_COORDINATOR_FENCED when
    /// `coordinator_epoch` is older than its last marker's; nothing is written then.
    pub fn append_control_marker(
        &self,
        producer_id: i64,
        producer_epoch: i16,
        coordinator_epoch: i32,
        commit: bool,
        leader_epoch: i32,
        now_ms: i64,
    ) -> Result<AppendOutcome, LogError> {
        if producer_id < 0 || producer_epoch < 0 {
            return Err(LogError::InvalidRecord(format!(
                "a transaction marker needs a producer id and epoch, got {producer_id}/{producer_epoch}"
            )));
        }
        let config = self.config();
        self.clock_ms.fetch_max(now_ms, Ordering::Relaxed);
        let marker = EndTxnMarker {
            commit,
            coordinator_epoch,
        };
        let mut bytes = control::encode_marker_batch(producer_id, producer_epoch, marker, now_ms);
        let log_append_time_ms = match config.timestamp_type {
            TimestampType::LogAppendTime => {
                batch::set_max_timestamp(&mut bytes, TimestampType::LogAppendTime, now_ms);
                now_ms
            }
            TimestampType::CreateTime => -1,
        };
        let mut w = self.writer.lock().expect("writer lock");
        if w.offline || w.closed {
            return Err(LogError::Offline);
        }
        w.producers
            .check_marker(producer_id, producer_epoch, coordinator_epoch)?;
        let base_offset = self.log_end_offset.load(Ordering::Relaxed);
        self.learn_epoch_before_write(leader_epoch, base_offset)?;
        batch::set_offset_and_epoch(&mut bytes, base_offset, leader_epoch);
        let h = BatchHeader::parse(&bytes).expect("a marker parses");
        let (head, tail) = bytes.split_at(BATCH_HEADER_BYTES);
        let active = self.write_stamped(&mut w, &config, head, tail, &h, base_offset, now_ms)?;
        let ended = w.producers.record_marker(
            producer_id,
            producer_epoch,
            marker,
            base_offset,
            h.max_timestamp,
        );
        self.note_marker(&mut w, &active, ended)?;
        let unflushed = self.publish_leader_append(&h, bytes.len(), h.max_timestamp, base_offset);
        drop(w);
        let interval = config.flush_interval_messages;
        if interval > 1 && unflushed >= interval {
            self.flush()?;
        }
        Ok(AppendOutcome {
            base_offset,
            last_offset: base_offset,
            log_append_time_ms,
            log_start_offset: self.log_start_offset(),
            duplicate: false,
        })
    }

    /// The leader-epoch cache learns `leader_epoch` before its first batch is written (Kafka's
    /// order): a crash in between leaves an entry at the log end, which opening trims.
    fn learn_epoch_before_write(
        &self,
        leader_epoch: i32,
        base_offset: i64,
    ) -> Result<(), LogError> {
        if self
            .epochs
            .lock()
            .expect("epochs lock")
            .would_assign(leader_epoch)
        {
            self.update_epochs(|c| c.assign(leader_epoch, base_offset))?;
        }
        Ok(())
    }

    /// Write one stamped batch (`head` = its rewritten header) at the log end, rolling first
    /// when due; a write that could not be undone takes the log offline. Returns the segment
    /// it went to.
    #[allow(clippy::too_many_arguments)]
    fn write_stamped(
        &self,
        w: &mut Writer,
        config: &LogConfig,
        head: &[u8],
        tail: &[u8],
        h: &BatchHeader,
        max_ts_offset: i64,
        now_ms: i64,
    ) -> Result<Arc<Segment>, LogError> {
        let batch_bytes = (head.len() + tail.len()) as u64;
        let active = self.maybe_roll(w, config, batch_bytes, h.last_offset(), now_ms)?;
        if let Err((e, repaired)) = active.append(
            head,
            tail,
            h,
            max_ts_offset,
            config.index_interval_bytes,
            now_ms,
            true,
        ) {
            if !repaired {
                w.offline = true;
            }
            tracing::error!(dir = %self.dir.display(), error = %e, repaired, "append failed");
            return Err(e);
        }
        Ok(active)
    }

    /// After a leader's write (under `writer`): the log's max timestamp, size and unflushed
    /// count, then the new log end, published last. Returns the unflushed message count.
    fn publish_leader_append(
        &self,
        h: &BatchHeader,
        batch_bytes: usize,
        max_ts: i64,
        max_ts_offset: i64,
    ) -> u64 {
        {
            let mut m = self.max_timestamp.lock().expect("ts lock");
            if max_ts > m.0 {
                *m = (max_ts, max_ts_offset);
            }
        }
        self.size_bytes
            .fetch_add(batch_bytes as u64, Ordering::Relaxed);
        let unflushed = self
            .unflushed_messages
            .fetch_add(h.records_count as u64, Ordering::Relaxed)
            + h.records_count as u64;
        self.log_end_offset
            .store(h.last_offset() + 1, Ordering::Release);
        unflushed
    }

    /// A marker just written to `segment` ended `ended` (if a transaction was open): index an
    /// abort, and move the transaction from open to ended-awaiting-the-high-watermark. A
    /// failed index write takes the log offline: serving fetches without the abort would show
    /// aborted records to read_committed consumers; reopening rebuilds the index.
    pub(crate) fn note_marker(
        &self,
        w: &mut Writer,
        segment: &Segment,
        ended: Option<CompletedTxn>,
    ) -> Result<(), LogError> {
        let Some(txn) = ended else {
            return Ok(());
        };
        let mut txns = self.txns.lock().expect("txns lock");
        if txn.aborted {
            if let Err(e) = segment.append_aborted(&aborted_entry(&txns, &txn)) {
                w.offline = true;
                tracing::error!(dir = %self.dir.display(), error = %e, "transaction index append failed; log offline until reopened");
                return Err(e);
            }
        }
        txns.ended(&txn, self.high_watermark());
        Ok(())
    }

    /// The last stable offset (Kafka's `UnifiedLog.lastStableOffset`): the first offset of
    /// the oldest transaction that is open, or ended by a marker the high watermark has not
    /// passed yet, when that is below the high watermark (and not below the log start);
    /// otherwise the high watermark. read_committed consumers read below it. Equals the high
    /// watermark on a log without transactions.
    pub fn last_stable_offset(&self) -> i64 {
        let mut txns = self.txns.lock().expect("txns lock");
        let high_watermark = self.high_watermark();
        match txns.first_unstable(high_watermark) {
            Some(first) => first.max(self.log_start_offset()).min(high_watermark),
            None => high_watermark,
        }
    }

    /// One producer's state, if this partition remembers it: whether it has a transaction
    /// open here (`current_txn_start_offset`), at which epoch, its last sequence. A lookup,
    /// not a walk of every producer: the transactional produce path asks it per batch.
    pub fn producer(&self, producer_id: i64) -> Option<crate::ProducerInfo> {
        self.writer
            .lock()
            .expect("writer lock")
            .producers
            .get(producer_id)
    }

    /// Every producer this partition remembers (idempotent and transactional), by producer
    /// id: what DescribeProducers and `kafka-transactions find-hanging` read.
    pub fn producers(&self) -> Vec<crate::ProducerInfo> {
        self.writer
            .lock()
            .expect("writer lock")
            .producers
            .describe()
    }

    /// The aborted transactions a read_committed fetch of [fetch_offset, upper_bound) must
    /// report (Kafka's `collectAbortedTransactions`): from the transaction index of the
    /// segment holding `fetch_offset` on, every abort overlapping the range, until an entry
    /// whose LSO reaches `upper_bound`. Reads only `.txnindex` files, never records.
    pub fn aborted_transactions(
        &self,
        fetch_offset: i64,
        upper_bound: i64,
    ) -> Result<Vec<AbortedTxn>, LogError> {
        let mut out = Vec::new();
        if upper_bound <= fetch_offset {
            return Ok(out);
        }
        let segs = self.segments.read().expect("segments lock").clone();
        let first = segs
            .partition_point(|s| s.base_offset <= fetch_offset)
            .saturating_sub(1);
        for seg in &segs[first..] {
            if seg.collect_aborted(fetch_offset, upper_bound, &mut out)? {
                break;
            }
        }
        Ok(out)
    }

    /// The segment to append `batch_bytes` ending at `last_offset` to, rolling first when the
    /// active one is full by size, old by time, or would overflow 32-bit relative offsets.
    pub(crate) fn maybe_roll(
        &self,
        w: &Writer,
        config: &LogConfig,
        batch_bytes: u64,
        last_offset: i64,
        now_ms: i64,
    ) -> Result<Arc<Segment>, LogError> {
        let active = self.active_segment();
        if active.is_empty() {
            return Ok(active);
        }
        let size = active.size_bytes();
        let full = size + batch_bytes > config.segment_bytes;
        let old = now_ms - active.rolling_base_ms.load(Ordering::Relaxed) >= config.segment_ms;
        let offsets_overflow = last_offset - active.base_offset > i32::MAX as i64;
        if !(full || old || offsets_overflow) {
            return Ok(active);
        }
        self.roll(w, &active, now_ms)
    }

    fn roll(
        &self,
        w: &Writer,
        active: &Arc<Segment>,
        now_ms: i64,
    ) -> Result<Arc<Segment>, LogError> {
        let log_end = self.log_end_offset.load(Ordering::Relaxed);
        self.roll_at(w, active, log_end, now_ms)
    }

    /// Roll to a new segment based at `new_base`: the log end, or past it only for a follower
    /// copying a leader's cleaned batch whose offset is too far from the log end for 32-bit
    /// relative offsets (the gap between the segments is the cleaner's).
    pub(crate) fn roll_at(
        &self,
        w: &Writer,
        active: &Arc<Segment>,
        new_base: i64,
        now_ms: i64,
    ) -> Result<Arc<Segment>, LogError> {
        let log_end = self.log_end_offset.load(Ordering::Relaxed);
        assert_eq!(
            active.next_offset(),
            log_end,
            "active segment must end at the log end"
        );
        assert!(new_base >= log_end, "segments never go back");
        active.seal();
        let seg = Arc::new(Segment::create(&self.dir, new_base, now_ms)?);
        self.segments
            .write()
            .expect("segments lock")
            .push(seg.clone());
        // Kafka snapshots producer state at every roll so recovery replays one segment at most.
        if let Err(e) = self.write_snapshot(w, new_base, false) {
            tracing::warn!(dir = %self.dir.display(), error = %e, "producer snapshot at roll failed");
        }
        tracing::debug!(dir = %self.dir.display(), base_offset = new_base, "rolled segment");
        Ok(seg)
    }

    /// Whole batches from the one containing `fetch_offset`, at most `max_bytes` unless the
    /// first batch alone is larger (then exactly that batch), none with an offset at or past
    /// `max_offset_exclusive`. OFFSET_OUT_OF_RANGE outside [log start, log end].
    pub fn read(
        &self,
        fetch_offset: i64,
        max_bytes: usize,
        max_offset_exclusive: i64,
    ) -> Result<ReadResult, LogError> {
        let (records, r) = self.read_segments(
            fetch_offset,
            max_offset_exclusive,
            |seg, limit, interval, _| seg.read(fetch_offset, max_bytes, limit, interval),
        )?;
        Ok(ReadResult {
            records: records.unwrap_or_default(),
            high_watermark: r.high_watermark,
            log_start_offset: r.log_start_offset,
            log_end_offset: r.log_end_offset,
        })
    }

    /// The walk `read` and `read_file` share: offset checks, the segment holding
    /// `fetch_offset` (or the next one with data after it), and retries when a truncation may
    /// have cut a file under the read. `read_segment(segment, offset limit, index interval,
    /// truncations when the attempt started)` reads one segment (None: nothing at or after
    /// `fetch_offset` there). Returns what it read (None: no batches) and the offsets to
    /// report (`records` of the latter is empty).
    pub(crate) fn read_segments<T>(
        &self,
        fetch_offset: i64,
        max_offset_exclusive: i64,
        read_segment: impl Fn(&Arc<Segment>, i64, u32, u64) -> Result<Option<T>, LogError>,
    ) -> Result<(Option<T>, ReadResult), LogError> {
        let mut attempt = 0;
        loop {
            let truncations = self.truncations.load(Ordering::Acquire);
            let result = self.read_once(
                fetch_offset,
                max_offset_exclusive,
                truncations,
                &read_segment,
            );
            attempt += 1;
            match result {
                // A truncation may have cut the file under this read: read again from the new
                // state (each retry needs another truncation to race with).
                Err(LogError::Storage { .. })
                    if self.truncations.load(Ordering::Acquire) != truncations
                        && attempt < crate::limits::READ_ATTEMPTS_MAX => {}
                other => return other,
            }
        }
    }

    fn read_once<T>(
        &self,
        fetch_offset: i64,
        max_offset_exclusive: i64,
        truncations: u64,
        read_segment: &impl Fn(&Arc<Segment>, i64, u32, u64) -> Result<Option<T>, LogError>,
    ) -> Result<(Option<T>, ReadResult), LogError> {
        let log_end_offset = self.log_end_offset();
        let log_start_offset = self.log_start_offset();
        let high_watermark = self.high_watermark().min(log_end_offset);
        let result = |records| {
            Ok((
                records,
                ReadResult {
                    records: bytes::Bytes::new(),
                    high_watermark,
                    log_start_offset,
                    log_end_offset,
                },
            ))
        };
        if fetch_offset < log_start_offset || fetch_offset > log_end_offset {
            return Err(LogError::OffsetOutOfRange {
                offset: fetch_offset,
                log_start_offset,
                log_end_offset,
            });
        }
        let limit = max_offset_exclusive.min(log_end_offset);
        if fetch_offset >= limit {
            return result(None);
        }
        let interval = self.config().index_interval_bytes;
        // Normally the first or second segment answers; after compaction whole segments may be
        // empty (every record superseded), so walk on until one has data.
        let mut base = fetch_offset;
        loop {
            let seg = {
                let segs = self.segments.read().expect("segments lock");
                let i = segs
                    .partition_point(|s| s.base_offset <= base)
                    .saturating_sub(1);
                let mut i = i;
                // Skip segments that end at or before `base` (possible after cleaning).
                while i + 1 < segs.len() && segs[i].next_offset() <= base {
                    i += 1;
                }
                segs[i].clone()
            };
            if let Some(b) = read_segment(&seg, limit, interval, truncations)? {
                let now_start = self.log_start_offset();
                if fetch_offset < now_start {
                    // Retention or DeleteRecords moved the log start while we read.
                    return Err(LogError::OffsetOutOfRange {
                        offset: fetch_offset,
                        log_start_offset: now_start,
                        log_end_offset,
                    });
                }
                return result(Some(b));
            }
            // Nothing at or after `base` in this segment: continue from the next one.
            let next_base = {
                let segs = self.segments.read().expect("segments lock");
                segs.iter()
                    .map(|s| s.base_offset)
                    .find(|&b| b > seg.base_offset)
            };
            match next_base {
                Some(b) if b < limit => base = base.max(b),
                _ => return result(None),
            }
        }
    }

    /// Apply new settings (AlterConfigs): segment size/time, flush policy, timestamps,
    /// retention and cleaner settings all take effect from the next append / tick / clean.
    /// INVALID_CONFIG leaves the old settings in place.
    pub fn update_config(&self, config: LogConfig) -> Result<(), LogError> {
        validate_config(&config)?;
        *self.config.write().expect("config lock") = config;
        Ok(())
    }

    /// Retention (only when `cleanup.policy` includes delete): delete whole segments from the
    /// oldest while (a) the segment's largest record timestamp (its creation time when it has
    /// none) is more than `retention.ms` before `now_ms`, then (b) the log exceeds
    /// `retention.bytes` by at least the segment's size, then (c) the segment lies wholly below
    /// the log start offset (after DeleteRecords). As Kafka does, the active segment counts:
    /// when every segment qualifies, a new empty active segment is rolled first so the log end
    /// offset is kept. The log start offset moves to the first remaining segment. Call it from
    /// a background timer (Kafka: every `log.retention.check.interval.ms`, 5 minutes).
    pub fn enforce_retention(&self, now_ms: i64) -> Result<RetentionOutcome, LogError> {
        let config = self.config();
        let w = self.writer.lock().expect("writer lock");
        let mut outcome = RetentionOutcome {
            new_log_start_offset: self.log_start_offset(),
            ..RetentionOutcome::default()
        };
        if w.closed || w.offline {
            return Ok(outcome);
        }
        let segs = self.segments.read().expect("segments lock").clone();
        let last = segs.len() - 1;
        let mut count = 0;
        if config.cleanup_policy.deletes() && config.retention_ms >= 0 {
            while count < segs.len() {
                let seg = &segs[count];
                if count == last && seg.is_empty() {
                    break;
                }
                let (ts, _) = seg.max_timestamp();
                let largest_ms = if ts >= 0 {
                    ts
                } else {
                    seg.rolling_base_ms.load(Ordering::Relaxed)
                };
                if now_ms.saturating_sub(largest_ms) <= config.retention_ms {
                    break;
                }
                count += 1;
            }
        }
        if config.cleanup_policy.deletes() && config.retention_bytes >= 0 {
            let kept: u64 = segs[count..].iter().map(|s| s.size_bytes()).sum();
            let mut excess = kept as i128 - config.retention_bytes as i128;
            while count < segs.len() {
                let seg = &segs[count];
                if (count == last && seg.is_empty()) || excess < seg.size_bytes() as i128 {
                    break;
                }
                excess -= seg.size_bytes() as i128;
                count += 1;
            }
        }
        let log_start = self.log_start_offset();
        while count < last && segs[count + 1].base_offset <= log_start {
            count += 1;
        }
        // Never at or above the high watermark: a segment goes only when every offset in it is
        // below the HW (Kafka's `deletableSegments` bound), the active one only when HW = end.
        let high_watermark = self.high_watermark();
        let below_hw = (0..segs.len())
            .take_while(|&i| {
                let upper = segs
                    .get(i + 1)
                    .map_or(self.log_end_offset(), |n| n.base_offset);
                upper <= high_watermark
            })
            .count();
        count = count.min(below_hw);
        if count == 0 {
            return Ok(outcome);
        }
        if count == segs.len() {
            self.roll(&w, &segs[last], now_ms)?;
        }
        let (n, bytes) = self.delete_oldest_segments(&w, count, log_start)?;
        outcome.segments_deleted = n;
        outcome.bytes_deleted = bytes;
        outcome.new_log_start_offset = self.log_start_offset();
        tracing::info!(dir = %self.dir.display(), segments = n, bytes, log_start_offset = outcome.new_log_start_offset, "retention deleted segments");
        Ok(outcome)
    }

    /// DeleteRecords: make `offset` the log start offset (-1 means the high watermark), delete
    /// the segments wholly below it, and return the new low watermark. Never moves the log
    /// start backwards (an offset at or below it answers the current one). The new log start
    /// is fsynced before this returns. OFFSET_OUT_OF_RANGE for an offset above the high
    /// watermark or negative (other than -1); POLICY_VIOLATION when `cleanup.policy` does not
    /// include delete (Kafka refuses DeleteRecords on compact-only topics).
    pub fn delete_records_before(&self, offset: i64) -> Result<i64, LogError> {
        if !self.config().cleanup_policy.deletes() {
            return Err(LogError::PolicyViolation(
                "records of a partition with cleanup.policy=compact cannot be deleted".into(),
            ));
        }
        self.advance_log_start_offset(offset)
    }

    /// A follower following its leader's log start (Kafka's `maybeIncrementLogStartOffset`
    /// for `LeaderOffsetIncremented`): DeleteRecords' rules (never backwards, never above the
    /// high watermark, -1 = the HW, covered segments deleted, the new start fsynced first)
    /// without its policy check, since whatever moved the leader's start was allowed there.
    pub fn advance_log_start_offset(&self, offset: i64) -> Result<i64, LogError> {
        // Under the writer lock: only truncation (which takes it) lowers the high watermark.
        let w = self.writer.lock().expect("writer lock");
        let high_watermark = self.high_watermark();
        let target = if offset == -1 { high_watermark } else { offset };
        if target < 0 || target > high_watermark {
            return Err(LogError::OffsetOutOfRange {
                offset,
                log_start_offset: self.log_start_offset(),
                log_end_offset: self.log_end_offset(),
            });
        }
        if w.closed || w.offline {
            return Err(LogError::Offline);
        }
        let current = self.log_start_offset();
        if target <= current {
            return Ok(current);
        }
        self.write_log_start_offset(target)?;
        self.log_start_offset.store(target, Ordering::Release);
        self.update_epochs(|c| c.truncate_from_start(target))?;
        let segs = self.segments.read().expect("segments lock").clone();
        let count = (0..segs.len() - 1)
            .take_while(|&i| segs[i + 1].base_offset <= target)
            .count();
        if count > 0 {
            self.delete_oldest_segments(&w, count, target)?;
        }
        Ok(target)
    }

    /// Remove the `count` oldest segments (fewer than all: callers roll first), crash-safely:
    /// drop them from the list (readers holding one keep reading its open file), rename their
    /// files to `.deleted`, checkpoint the new log start, then remove the files. A crash at any
    /// point leaves either the segment (still below the checkpointed log start, deleted by the
    /// next retention run) or `.deleted` files (removed by recovery).
    fn delete_oldest_segments(
        &self,
        _w: &Writer,
        count: usize,
        log_start_floor: i64,
    ) -> Result<(usize, u64), LogError> {
        let _files = self.segment_files.lock().expect("segment files lock");
        let removed: Vec<Arc<Segment>> = {
            let mut segs = self.segments.write().expect("segments lock");
            assert!(count < segs.len(), "the active segment is never deleted");
            let new_start = log_start_floor.max(segs[count].base_offset);
            // Publish the new start before the segments go, so a read that raced with this
            // deletion and looked up a segment list without them sees it and answers
            // OFFSET_OUT_OF_RANGE (read re-checks the log start after reading).
            self.log_start_offset.store(new_start, Ordering::Release);
            segs.drain(..count).collect()
        };
        let bytes: u64 = removed.iter().map(|s| s.size_bytes()).sum();
        self.size_bytes.fetch_sub(bytes, Ordering::Relaxed);
        for seg in &removed {
            Segment::rename_to_deleted(&self.dir, seg.base_offset)
                .map_err(io_err("renaming a segment to .deleted"))?;
        }
        sync_dir(&self.dir)?;
        self.write_log_start_offset(self.log_start_offset())?;
        self.update_epochs(|c| c.truncate_from_start(self.log_start_offset()))?;
        for seg in &removed {
            crate::cleaner::remove_deleted_files(&self.dir, seg.base_offset)
                .map_err(io_err("removing .deleted segment files"))?;
        }
        self.recompute_max_timestamp();
        Ok((removed.len(), bytes))
    }

    /// After segments were removed or rewritten, the log's max timestamp may be gone with them.
    pub(crate) fn recompute_max_timestamp(&self) {
        let segs = self.segments.read().expect("segments lock");
        let max = segs
            .iter()
            .map(|s| s.max_timestamp())
            .fold((-1, -1), |a, b| if b.0 > a.0 { b } else { a });
        *self.max_timestamp.lock().expect("ts lock") = max;
    }

    pub(crate) fn write_log_start_offset(&self, offset: i64) -> Result<(), LogError> {
        write_file_atomically(
            &self.dir.join(LOG_START_FILE),
            format!("0\n{offset}\n").as_bytes(),
        )?;
        sync_dir(&self.dir)
    }

    pub fn log_start_offset(&self) -> i64 {
        self.log_start_offset.load(Ordering::Acquire)
    }
    pub fn log_end_offset(&self) -> i64 {
        self.log_end_offset.load(Ordering::Acquire)
    }
    /// The stored high watermark: consumers read below it, retention, DeleteRecords and the
    /// cleaner stay below it. Set by the replication layer ([`PartitionLog::set_high_watermark`]);
    /// starts at min(checkpoint, log end) or the log start.
    pub fn high_watermark(&self) -> i64 {
        self.high_watermark.load(Ordering::Acquire)
    }

    /// Store `hw` clamped to [log start, log end] and return the stored value. No monotonicity
    /// here: the leader's logic keeps it from moving back; truncation lowers it.
    pub fn set_high_watermark(&self, hw: i64) -> i64 {
        let _update = self
            .high_watermark_update
            .lock()
            .expect("high watermark lock");
        let stored = hw.clamp(self.log_start_offset(), self.log_end_offset());
        self.high_watermark.store(stored, Ordering::Release);
        stored
    }

    /// First record with timestamp >= `ts_ms`: (offset, timestamp), via the time index.
    pub fn offset_for_timestamp(&self, ts_ms: i64) -> Option<(i64, i64)> {
        let segs = self.segments.read().expect("segments lock").clone();
        for seg in segs {
            match seg.offset_for_timestamp(ts_ms) {
                // Kafka answers at least the log start offset (DeleteRecords may put it inside
                // the segment holding the match).
                Ok(Some((offset, ts))) => return Some((offset.max(self.log_start_offset()), ts)),
                Ok(None) => {}
                Err(e) => {
                    tracing::warn!(dir = %self.dir.display(), error = %e, "timestamp lookup failed");
                    return None;
                }
            }
        }
        None
    }

    /// Largest timestamp in the log and the offset of its (first) record.
    pub fn max_timestamp(&self) -> Option<(i64, i64)> {
        let m = *self.max_timestamp.lock().expect("ts lock");
        (m.1 >= 0).then_some(m)
    }

    /// fsync everything appended so far. Concurrent callers coalesce: while one fsync runs,
    /// later callers wait and the next fsync covers all of them (group commit).
    pub fn flush(&self) -> Result<(), LogError> {
        let target = self.log_end_offset();
        let mut st = self.flush_state.lock().expect("flush lock");
        loop {
            if st.flushed_offset >= target {
                return Ok(());
            }
            if st.in_progress {
                st = self.flush_done.wait(st).expect("flush lock");
                continue;
            }
            st.in_progress = true;
            drop(st);
            let upto = self.log_end_offset();
            self.unflushed_messages.store(0, Ordering::Relaxed);
            let result = self.sync_segments();
            self.flush_rounds.fetch_add(1, Ordering::Relaxed);
            st = self.flush_state.lock().expect("flush lock");
            st.in_progress = false;
            if result.is_ok() {
                st.flushed_offset = st.flushed_offset.max(upto);
            }
            self.flush_done.notify_all();
            result?;
        }
    }

    fn sync_segments(&self) -> Result<(), LogError> {
        let segs = self.segments.read().expect("segments lock").clone();
        let active_base = segs.last().expect("one segment").base_offset;
        for seg in &segs {
            seg.sync_log()?;
            if seg.base_offset != active_base && !seg.indexes_synced.load(Ordering::Acquire) {
                seg.sync_indexes()?;
            }
        }
        Ok(())
    }

    /// True when every append must be fsynced before it is acknowledged
    /// (`flush_interval_messages` = 1): the broker then calls `flush()` before replying.
    pub fn needs_flush_after_append(&self) -> bool {
        self.config().flush_interval_messages <= 1
    }

    /// Whether appending `records` (one produced batch) rebuilds it in the topic's codec
    /// (`compression.type`): decompression and compression, CPU the broker keeps off its async
    /// workers. Reads the batch header only.
    pub fn recompresses(&self, records: &[u8]) -> bool {
        let codec = &self.config.read().expect("config lock").compression;
        BatchHeader::parse(records).is_ok_and(|h| codec.rebuild_target(&h).is_some())
    }

    /// Periodic work: roll by time, flush by interval and after a roll (as Kafka flushes a
    /// rolled segment), and checkpoint the recovery point.
    pub fn tick(&self, now_ms: i64) -> Result<(), LogError> {
        self.tick_with(now_ms, PartitionLog::flush)
    }

    /// [`PartitionLog::tick`] with the flush it decides on done by `flush` (given this log):
    /// the broker times it (this crate reads no clock).
    pub fn tick_with(
        &self,
        now_ms: i64,
        flush: impl FnOnce(&PartitionLog) -> Result<(), LogError>,
    ) -> Result<(), LogError> {
        self.clock_ms.fetch_max(now_ms, Ordering::Relaxed);
        let mut flush_now = false;
        {
            let config = self.config();
            let mut w = self.writer.lock().expect("writer lock");
            if w.closed || w.offline {
                return Ok(());
            }
            let active = self.active_segment();
            if !active.is_empty()
                && now_ms - active.rolling_base_ms.load(Ordering::Relaxed) >= config.segment_ms
            {
                self.roll(&w, &active, now_ms)?;
            }
            if let Some(ms) = config.flush_interval_ms {
                if now_ms - w.last_interval_flush_ms >= ms {
                    w.last_interval_flush_ms = now_ms;
                    flush_now = true;
                }
            }
        }
        let segs = self.segments.read().expect("segments lock").clone();
        let sealed_unsynced = segs[..segs.len() - 1]
            .iter()
            .any(|s| s.dirty.load(Ordering::Acquire) || !s.indexes_synced.load(Ordering::Acquire));
        if flush_now || sealed_unsynced {
            flush(self)?;
        }
        self.write_recovery_point()
    }

    fn write_recovery_point(&self) -> Result<(), LogError> {
        let flushed = self.flush_state.lock().expect("flush lock").flushed_offset;
        let mut w = self.writer.lock().expect("writer lock");
        if w.checkpointed_recovery_point == flushed && self.dir.join(RECOVERY_POINT_FILE).exists() {
            return Ok(());
        }
        write_file_atomically(
            &self.dir.join(RECOVERY_POINT_FILE),
            format!("0\n{flushed}\n").as_bytes(),
        )?;
        w.checkpointed_recovery_point = flushed;
        Ok(())
    }

    /// Clean shutdown: refuse further appends, fsync everything, write the producer snapshot,
    /// the recovery point and the clean-shutdown marker.
    pub fn close(&self) -> Result<(), LogError> {
        let mut w = self.writer.lock().expect("writer lock");
        if w.closed {
            return Ok(());
        }
        w.closed = true;
        if w.offline {
            return Ok(());
        }
        let segs = self.segments.read().expect("segments lock").clone();
        let active = segs.last().expect("one segment");
        active.seal();
        drop(w);
        self.flush()?;
        for seg in &segs {
            seg.sync_log()?;
            seg.sync_indexes()?;
        }
        let w = self.writer.lock().expect("writer lock");
        let leo = self.log_end_offset();
        self.write_snapshot(&w, leo, true)?;
        drop(w);
        self.write_recovery_point()?;
        if segs.iter().any(|s| s.index_files_stale()) {
            tracing::warn!(dir = %self.dir.display(), "index files are stale; next open will rebuild them");
        } else {
            write_file_atomically(&self.dir.join(CLEAN_SHUTDOWN_FILE), b"")?;
        }
        sync_dir(&self.dir)
    }

    /// Bytes of all segments.
    pub fn size_bytes(&self) -> u64 {
        self.size_bytes.load(Ordering::Relaxed)
    }

    pub fn topic_id(&self) -> [u8; 16] {
        self.topic_id
    }

    /// The directory holding this partition's files.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// fsync rounds `flush` has run since open; fewer than flush calls means calls coalesced.
    pub fn flush_rounds(&self) -> u64 {
        self.flush_rounds.load(Ordering::Relaxed)
    }

    /// Number of segments (for tests and metrics).
    pub fn segment_count(&self) -> usize {
        self.segments.read().expect("segments lock").len()
    }

    /// The segment appends go to (the last one).
    pub(crate) fn active_segment(&self) -> Arc<Segment> {
        self.segments
            .read()
            .expect("segments lock")
            .last()
            .expect("one segment")
            .clone()
    }

    #[cfg(test)]
    pub(crate) fn flush_state_flushed_offset(&self) -> i64 {
        self.flush_state.lock().expect("flush lock").flushed_offset
    }

    #[cfg(test)]
    pub(crate) fn producer_count(&self) -> usize {
        self.writer.lock().expect("writer lock").producers.len()
    }
}

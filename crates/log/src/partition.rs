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
use crate::limits::SEGMENT_BYTES_MAX;
use crate::producer_state::{ProducerStates, SequenceCheck};
use crate::segment::{file_stem, Segment};
use crate::{AppendOutcome, LogConfig, LogError, ReadResult, TimestampType};

const RECOVERY_POINT_FILE: &str = "recovery-point";
const CLEAN_SHUTDOWN_FILE: &str = "clean-shutdown";
const SNAPSHOT_SUFFIX: &str = ".snapshot";
/// Producer snapshots kept: the newest plus one older in case the newest is damaged.
const SNAPSHOTS_RETAINED: usize = 2;

/// A partition's durable log. `Send + Sync`; every method takes `&self`.
pub struct PartitionLog {
    dir: PathBuf,
    topic_id: [u8; 16],
    config: LogConfig,
    segments: RwLock<Vec<Arc<Segment>>>,
    log_end_offset: AtomicI64,
    log_start_offset: AtomicI64,
    size_bytes: AtomicU64,
    unflushed_messages: AtomicU64,
    /// fsync rounds run by `flush` (a metric: compare with flush calls to see group commit).
    flush_rounds: AtomicU64,
    /// (largest timestamp, its offset) over the whole log.
    max_timestamp: Mutex<(i64, i64)>,
    writer: Mutex<Writer>,
    flush_state: Mutex<FlushState>,
    flush_done: Condvar,
}

struct Writer {
    producers: ProducerStates,
    /// A failed write could not be undone: refuse writes until reopened (and recovered).
    offline: bool,
    closed: bool,
    checkpointed_recovery_point: i64,
    last_interval_flush_ms: i64,
}

struct FlushState {
    /// Every offset below this is on disk.
    flushed_offset: i64,
    in_progress: bool,
}

fn io_err(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> LogError {
    let context = context.into();
    move |e| LogError::storage(context, e)
}

/// Write `bytes` to `path` atomically: temp file, fsync, rename.
fn write_file_atomically(path: &Path, bytes: &[u8]) -> Result<(), LogError> {
    let tmp = path.with_extension("tmp");
    let write = || -> std::io::Result<()> {
        let mut f = fs::File::create(&tmp)?;
        std::io::Write::write_all(&mut f, bytes)?;
        f.sync_all()?;
        fs::rename(&tmp, path)
    };
    write().map_err(io_err(format!("writing {}", path.display())))
}

fn sync_dir(dir: &Path) -> Result<(), LogError> {
    fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_err(format!("fsync directory {}", dir.display())))
}

fn read_recovery_point(dir: &Path) -> i64 {
    // Format: "0\n<offset>\n" (version, offset). Anything else means "recover everything".
    let Ok(text) = fs::read_to_string(dir.join(RECOVERY_POINT_FILE)) else {
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
fn offset_from_name(name: &str, suffix: &str) -> Option<i64> {
    let stem = name.strip_suffix(suffix)?;
    if stem.len() != 20 || !stem.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    stem.parse().ok()
}

impl PartitionLog {
    /// Create the log in `dir` or recover the one there (see the crate doc for the rules).
    pub fn open(
        dir: &Path,
        topic_id: [u8; 16],
        config: LogConfig,
        now_ms: i64,
    ) -> Result<Self, LogError> {
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
        fs::create_dir_all(dir).map_err(io_err(format!("creating {}", dir.display())))?;
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
        let mut discard_from = None;
        for (i, &base) in bases.iter().enumerate() {
            if let Some(prev) = segments.last() {
                if prev.next_offset() != base {
                    tracing::warn!(dir = %dir.display(), base, expected = prev.next_offset(), "segment does not continue the log; discarding it and later ones");
                    discard_from = Some(i);
                    break;
                }
            }
            // A segment is trusted when it ended before the last fsynced offset (its indexes
            // were fsynced when it was sealed), or when the last shutdown was clean.
            let trust = clean || bases.get(i + 1).is_some_and(|&next| next < recovery_point);
            let (seg, truncated) = Segment::open(dir, base, trust, interval, now_ms)?;
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
        if segments.is_empty() {
            segments.push(Arc::new(Segment::create(dir, 0, now_ms)?));
        }
        let log_end_offset = segments.last().expect("one segment").next_offset();
        let log_start_offset = segments[0].base_offset;
        let size_bytes = segments.iter().map(|s| s.size_bytes()).sum();
        let max_timestamp = segments
            .iter()
            .map(|s| s.max_timestamp())
            .fold((-1, -1), |a, b| if b.0 > a.0 { b } else { a });

        let log = PartitionLog {
            dir: dir.to_path_buf(),
            topic_id,
            config,
            segments: RwLock::new(segments),
            log_end_offset: AtomicI64::new(log_end_offset),
            log_start_offset: AtomicI64::new(log_start_offset),
            size_bytes: AtomicU64::new(size_bytes),
            unflushed_messages: AtomicU64::new(0),
            flush_rounds: AtomicU64::new(0),
            max_timestamp: Mutex::new(max_timestamp),
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
        };
        let producers = log.load_producer_state(&snapshots)?;
        log.writer.lock().expect("writer lock").producers = producers;

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

    /// Newest usable snapshot at or below the log end, then replay batch headers after it.
    fn load_producer_state(&self, snapshots: &[i64]) -> Result<ProducerStates, LogError> {
        let leo = self.log_end_offset();
        let mut state = ProducerStates::default();
        let mut from = self.log_start_offset();
        for &off in snapshots.iter().rev() {
            let path = self.snapshot_path(off);
            if off > leo {
                // The log was truncated below it: it describes batches that no longer exist.
                let _ = fs::remove_file(&path);
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
        let segments = self.segments.read().expect("segments lock").clone();
        for seg in segments.iter().filter(|s| s.next_offset() > from) {
            let start = if seg.base_offset >= from {
                0
            } else {
                seg.index_position(from)
            };
            seg.walk(start, seg.size_bytes(), |_, bytes| {
                let h = BatchHeader::parse(bytes)?;
                if h.last_offset() >= from {
                    state.record(&h, h.base_offset, h.last_offset(), h.max_timestamp);
                }
                Ok(true)
            })
            .map_err(|b| b.error)?;
        }
        Ok(state)
    }

    fn snapshot_path(&self, offset: i64) -> PathBuf {
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
        let mut offs: Vec<i64> = fs::read_dir(&self.dir)
            .map_err(io_err("listing snapshots"))?
            .filter_map(|e| e.ok())
            .filter_map(|e| offset_from_name(&e.file_name().to_string_lossy(), SNAPSHOT_SUFFIX))
            .collect();
        offs.sort_unstable();
        let keep_from = offs.len().saturating_sub(SNAPSHOTS_RETAINED);
        for off in &offs[..keep_from] {
            let _ = fs::remove_file(self.snapshot_path(*off));
        }
        Ok(())
    }

    fn validation_config(&self) -> ValidationConfig {
        ValidationConfig {
            max_message_bytes: self.config.max_message_bytes,
            timestamp_type: self.config.timestamp_type,
            // Kafka 4 defaults of log.message.timestamp.{before,after}.max.ms; not yet
            // configurable (LogConfig is built by struct literal in the broker).
            timestamp_before_max_ms: crate::limits::TIMESTAMP_BEFORE_MAX_MS_DEFAULT,
            timestamp_after_max_ms: crate::limits::TIMESTAMP_AFTER_MAX_MS_DEFAULT,
        }
    }

    /// Append one produced batch: `records` is the Produce request's records field for this
    /// partition and must hold exactly one v2 batch (Kafka's rule for produce v3+). Validates,
    /// runs the idempotence checks, stamps offset / leader epoch / (LogAppendTime) timestamp,
    /// and writes it with one `pwrite`. A recognised retry returns the original offsets with
    /// `duplicate: true` and writes nothing.
    pub fn append(
        &self,
        records: &[u8],
        leader_epoch: i32,
        now_ms: i64,
    ) -> Result<AppendOutcome, LogError> {
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
        let summary = batch::validate_client_batch(records, &self.validation_config(), now_ms)?;
        // Everything under the CRC is settled before the lock: only the base offset and leader
        // epoch (outside the CRC) depend on the log's state.
        let mut bytes = records.to_vec();
        let (log_append_time_ms, max_ts) = match self.config.timestamp_type {
            TimestampType::LogAppendTime => (now_ms, now_ms),
            TimestampType::CreateTime => (-1, summary.max_timestamp),
        };
        batch::set_max_timestamp(&mut bytes, self.config.timestamp_type, max_ts);

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
        batch::set_offset_and_epoch(&mut bytes, base_offset, leader_epoch);
        let max_ts_offset = match self.config.timestamp_type {
            TimestampType::LogAppendTime => base_offset,
            TimestampType::CreateTime => base_offset + summary.max_timestamp_offset_delta as i64,
        };
        let h = BatchHeader::parse(&bytes).expect("rewritten header parses");
        let active = self.maybe_roll(&w, bytes.len() as u64, h.last_offset(), now_ms)?;
        if let Err((e, repaired)) = active.append(
            &bytes,
            &h,
            max_ts_offset,
            self.config.index_interval_bytes,
            now_ms,
        ) {
            if !repaired {
                w.offline = true;
            }
            tracing::error!(dir = %self.dir.display(), error = %e, repaired, "append failed");
            return Err(e);
        }
        w.producers.record(&h, base_offset, h.last_offset(), max_ts);
        {
            let mut m = self.max_timestamp.lock().expect("ts lock");
            if max_ts > m.0 {
                *m = (max_ts, max_ts_offset);
            }
        }
        self.size_bytes
            .fetch_add(bytes.len() as u64, Ordering::Relaxed);
        let unflushed = self
            .unflushed_messages
            .fetch_add(h.records_count as u64, Ordering::Relaxed)
            + h.records_count as u64;
        self.log_end_offset
            .store(h.last_offset() + 1, Ordering::Release);
        drop(w);
        let interval = self.config.flush_interval_messages;
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

    /// The segment to append `batch_bytes` ending at `last_offset` to, rolling first when the
    /// active one is full by size, old by time, or would overflow 32-bit relative offsets.
    fn maybe_roll(
        &self,
        w: &Writer,
        batch_bytes: u64,
        last_offset: i64,
        now_ms: i64,
    ) -> Result<Arc<Segment>, LogError> {
        let active = self
            .segments
            .read()
            .expect("segments lock")
            .last()
            .expect("one segment")
            .clone();
        if active.is_empty() {
            return Ok(active);
        }
        let size = active.size_bytes();
        let full = size + batch_bytes > self.config.segment_bytes;
        let old = now_ms - active.rolling_base_ms.load(Ordering::Relaxed) >= self.config.segment_ms;
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
        let new_base = self.log_end_offset.load(Ordering::Relaxed);
        assert_eq!(
            active.next_offset(),
            new_base,
            "active segment must end at the log end"
        );
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
        let log_end_offset = self.log_end_offset();
        let log_start_offset = self.log_start_offset();
        let result = |records| ReadResult {
            records,
            high_watermark: log_end_offset,
            log_start_offset,
            log_end_offset,
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
            return Ok(result(bytes::Bytes::new()));
        }
        let candidates: Vec<Arc<Segment>> = {
            let segs = self.segments.read().expect("segments lock");
            let i = segs
                .partition_point(|s| s.base_offset <= fetch_offset)
                .saturating_sub(1);
            segs[i..].iter().take(2).cloned().collect()
        };
        for seg in candidates {
            if let Some(b) = seg.read(
                fetch_offset,
                max_bytes,
                limit,
                self.config.index_interval_bytes,
            )? {
                return Ok(result(b));
            }
        }
        Ok(result(bytes::Bytes::new()))
    }

    pub fn log_start_offset(&self) -> i64 {
        self.log_start_offset.load(Ordering::Acquire)
    }
    pub fn log_end_offset(&self) -> i64 {
        self.log_end_offset.load(Ordering::Acquire)
    }
    /// Equal to the log end offset on a single node (every append is fully replicated).
    pub fn high_watermark(&self) -> i64 {
        self.log_end_offset()
    }

    /// First record with timestamp >= `ts_ms`: (offset, timestamp), via the time index.
    pub fn offset_for_timestamp(&self, ts_ms: i64) -> Option<(i64, i64)> {
        let segs = self.segments.read().expect("segments lock").clone();
        for seg in segs {
            match seg.offset_for_timestamp(ts_ms) {
                Ok(Some(found)) => return Some(found),
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
        self.config.flush_interval_messages <= 1
    }

    /// Periodic work: roll by time, flush by interval and after a roll (as Kafka flushes a
    /// rolled segment), and checkpoint the recovery point.
    pub fn tick(&self, now_ms: i64) -> Result<(), LogError> {
        let mut flush_now = false;
        {
            let mut w = self.writer.lock().expect("writer lock");
            if w.closed || w.offline {
                return Ok(());
            }
            let active = self
                .segments
                .read()
                .expect("segments lock")
                .last()
                .expect("one")
                .clone();
            if !active.is_empty()
                && now_ms - active.rolling_base_ms.load(Ordering::Relaxed) >= self.config.segment_ms
            {
                self.roll(&w, &active, now_ms)?;
            }
            if let Some(ms) = self.config.flush_interval_ms {
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
            self.flush()?;
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

    #[cfg(test)]
    pub(crate) fn active_segment(&self) -> Arc<Segment> {
        self.segments
            .read()
            .expect("segments lock")
            .last()
            .expect("one")
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

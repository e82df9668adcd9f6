//! One segment: `<base offset>.log` plus its `.index`, `.timeindex` and (once a transaction
//! aborts in it) `.txnindex`.
//!
//! Owns: the bytes of a contiguous offset range, appends at the committed end (one `writev`),
//! reads by `pread`, walking batch headers from an index position, and recovery of a torn tail.
//! The transaction index is loaded here and flagged when it cannot be trusted; rebuilding it
//! needs the producer state before the segment, so the partition does that.
//!
//! Must never: expose bytes at or past `size_bytes` (the committed end: an append in progress or
//! one that failed half way lives there), or rewrite committed bytes. `size_bytes` and
//! `next_offset` are published with Release after the write completes; readers load them with
//! Acquire first, so everything below them is complete and immutable.

use std::fs::{File, OpenOptions};
use std::io::{IoSlice, Seek, SeekFrom, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::Mutex;

use bytes::Bytes;

use crate::batch::{self, be_i32, be_i64, BatchHeader, LOG_OVERHEAD_BYTES};
use crate::error::LogError;
use crate::index::SegmentIndex;
use crate::limits::{BATCH_BYTES_MAX, BATCH_HEADER_BYTES};
use crate::records;
use crate::txn_index::{AbortedTxn, TxnIndex};
use crate::TimestampType;

/// Bytes read per `pread` when walking batch headers (recovery, timestamp lookup).
const WALK_CHUNK_BYTES: usize = 256 * 1024;

/// File name stem: the base offset as 20 zero-padded digits, as Kafka names segments.
pub(crate) fn file_stem(base_offset: i64) -> String {
    format!("{base_offset:020}")
}

pub(crate) struct Segment {
    pub(crate) base_offset: i64,
    log: File,
    log_path: PathBuf,
    index: Mutex<SegmentIndex>,
    size_bytes: AtomicU64,
    next_offset: AtomicI64,
    /// (largest timestamp, offset of the first record carrying it); (-1, -1) when empty.
    max_timestamp: Mutex<(i64, i64)>,
    /// Time-based roll counts from here: the first batch's max timestamp, or creation time.
    pub(crate) rolling_base_ms: AtomicI64,
    /// Written since the last fdatasync of `.log`.
    pub(crate) dirty: AtomicBool,
    /// Index files fsynced since last written (appends and the seal write them; a segment
    /// reopened from disk starts synced). The flush fsyncs those of sealed segments only.
    pub(crate) indexes_synced: AtomicBool,
    /// Only touched by the single appender (under the partition's append lock).
    bytes_since_index_entry: AtomicU64,
    /// The aborted transactions whose marker is in this segment.
    txn_index: Mutex<TxnIndex>,
    /// Set by `open` when `.txnindex` failed its check (why): the partition rebuilds it.
    pub(crate) txn_index_damaged: Option<String>,
    #[cfg(test)]
    fail_next_write_after: Mutex<Option<usize>>,
}

/// Why a walk stopped early on bad bytes.
pub(crate) struct BadBatch {
    pub(crate) position: u64,
    pub(crate) error: LogError,
}

fn corrupt_on_disk(what: String) -> LogError {
    LogError::storage(
        what,
        std::io::Error::new(std::io::ErrorKind::InvalidData, "corrupt segment"),
    )
}

impl Segment {
    pub(crate) fn paths(dir: &Path, base_offset: i64) -> (PathBuf, PathBuf, PathBuf) {
        let stem = file_stem(base_offset);
        (
            dir.join(format!("{stem}.log")),
            dir.join(format!("{stem}.index")),
            dir.join(format!("{stem}.timeindex")),
        )
    }

    /// A new empty segment (any same-named files are truncated).
    pub(crate) fn create(dir: &Path, base_offset: i64, now_ms: i64) -> Result<Segment, LogError> {
        let (log_path, index_path, time_path) = Self::paths(dir, base_offset);
        let io = |e| LogError::storage(format!("creating segment {}", log_path.display()), e);
        let log = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&log_path)
            .map_err(io)?;
        let index = SegmentIndex::create(&index_path, &time_path).map_err(io)?;
        let txn_index = TxnIndex::create(dir, base_offset).map_err(io)?;
        Ok(Segment {
            base_offset,
            log,
            log_path,
            index: Mutex::new(index),
            size_bytes: AtomicU64::new(0),
            next_offset: AtomicI64::new(base_offset),
            max_timestamp: Mutex::new((-1, -1)),
            rolling_base_ms: AtomicI64::new(now_ms),
            dirty: AtomicBool::new(false),
            indexes_synced: AtomicBool::new(false),
            bytes_since_index_entry: AtomicU64::new(0),
            txn_index: Mutex::new(txn_index),
            txn_index_damaged: None,
            #[cfg(test)]
            fail_next_write_after: Mutex::new(None),
        })
    }

    /// Open an existing segment. With `trust_index`, the index files are loaded and only the
    /// tail after the last index entry is walked; otherwise (or if the index is malformed)
    /// every batch is validated (header, CRC, counts, offset contiguity), the file is truncated
    /// at the first invalid byte and the indexes are rebuilt. Returns the segment and whether
    /// anything was truncated. `cleaned`: the log cleaner may have rewritten this segment, so
    /// batches may leave offset gaps between them and hold fewer records than their offset
    /// range (anywhere else a gap is corruption).
    pub(crate) fn open(
        dir: &Path,
        base_offset: i64,
        trust_index: bool,
        index_interval_bytes: u32,
        now_ms: i64,
        cleaned: bool,
    ) -> Result<(Segment, bool), LogError> {
        let (log_path, index_path, time_path) = Self::paths(dir, base_offset);
        let io = |e| LogError::storage(format!("opening segment {}", log_path.display()), e);
        let log = OpenOptions::new()
            .read(true)
            .write(true)
            .open(&log_path)
            .map_err(io)?;
        let file_bytes = log.metadata().map_err(io)?.len();
        let loaded = if trust_index {
            SegmentIndex::load(&index_path, &time_path, file_bytes.max(1)).map_err(io)?
        } else {
            None
        };
        let rebuild = loaded.is_none();
        let index = match loaded {
            Some(i) => i,
            None => SegmentIndex::create(&index_path, &time_path).map_err(io)?,
        };
        let mut seg = Segment {
            base_offset,
            log,
            log_path: log_path.clone(),
            index: Mutex::new(index),
            size_bytes: AtomicU64::new(file_bytes),
            next_offset: AtomicI64::new(base_offset),
            max_timestamp: Mutex::new((-1, -1)),
            rolling_base_ms: AtomicI64::new(now_ms),
            dirty: AtomicBool::new(false),
            indexes_synced: AtomicBool::new(true),
            bytes_since_index_entry: AtomicU64::new(0),
            // Loaded once the segment's end is known (below).
            txn_index: Mutex::new(TxnIndex::create_unopened(dir, base_offset)),
            txn_index_damaged: None,
            #[cfg(test)]
            fail_next_write_after: Mutex::new(None),
        };
        let (start_pos, start_offset) = if rebuild {
            (0u64, base_offset)
        } else {
            let idx = seg.index.lock().expect("index lock");
            if let Some((ts, rel)) = idx.last_time_entry() {
                *seg.max_timestamp.lock().expect("ts lock") = (ts, base_offset + rel as i64);
            }
            match idx.last_offset_entry() {
                Some((rel, pos)) => (pos as u64, base_offset + rel as i64),
                None => (0, base_offset),
            }
        };
        // Walk [start_pos, end): validate, rebuild index entries when rebuilding, find the end.
        let mut expected = start_offset;
        let mut first = true;
        let mut max_position = None;
        let walked = seg.walk(start_pos, file_bytes, |pos, bytes| {
            let h = BatchHeader::parse(bytes)?;
            batch::check_crc(bytes, &h)?;
            if cleaned {
                batch::check_counts_cleaned(&h, bytes.len())?;
            } else {
                batch::check_counts(&h, bytes.len())?;
            }
            let in_place = if cleaned {
                h.base_offset >= expected
            } else {
                h.base_offset == expected
            };
            if !in_place {
                return Err(LogError::CorruptMessage(format!(
                    "batch at position {pos} has base offset {} where {expected} was expected",
                    h.base_offset
                )));
            }
            if h.last_offset() - base_offset > u32::MAX as i64 {
                return Err(LogError::CorruptMessage(
                    "offset too far from segment base".into(),
                ));
            }
            expected = h.last_offset() + 1;
            let already_indexed = !rebuild && first;
            first = false;
            if h.max_timestamp > seg.max_timestamp().0 {
                max_position = Some(pos);
            }
            // The batch's base offset stands in for its max-timestamp record (a conservative
            // time index entry: lookups start at or before it); the exact record offset is
            // computed once, below, for the segment's max only, so recovery does not
            // decompress every compressed batch.
            seg.note_batch(
                pos,
                bytes.len() as u64,
                &h,
                index_interval_bytes,
                !already_indexed,
                h.base_offset,
            );
            Ok(true)
        });
        let (valid_end, truncated) = match walked {
            Ok(end) => (end, end < file_bytes),
            Err(bad) => {
                if let LogError::Storage { .. } = bad.error {
                    return Err(bad.error);
                }
                tracing::warn!(
                    segment = %log_path.display(),
                    position = bad.position,
                    error = %bad.error,
                    "truncating invalid tail"
                );
                (bad.position, true)
            }
        };
        if truncated && !rebuild {
            // The trusted index may point into the truncated part: rebuild from scratch.
            drop(seg);
            return Self::open(
                dir,
                base_offset,
                false,
                index_interval_bytes,
                now_ms,
                cleaned,
            );
        }
        if truncated {
            seg.log.set_len(valid_end).map_err(io)?;
            seg.log.sync_all().map_err(io)?;
        }
        seg.size_bytes.store(valid_end, Ordering::Release);
        seg.next_offset.store(expected, Ordering::Release);
        match TxnIndex::open(dir, base_offset, expected).map_err(io)? {
            Ok(txn_index) => *seg.txn_index.get_mut().expect("txn index lock") = txn_index,
            Err(why) => {
                tracing::warn!(segment = %log_path.display(), problem = %why, "damaged transaction index; rebuilding it from the log");
                seg.txn_index_damaged = Some(why);
            }
        }
        if let Some(pos) = max_position {
            let exact = seg.walk(pos, valid_end, |_, bytes| {
                let h = BatchHeader::parse(bytes)?;
                *seg.max_timestamp.lock().expect("ts lock") =
                    (h.max_timestamp, max_timestamp_offset(bytes, &h));
                Ok(false)
            });
            exact.map_err(|b| b.error)?;
        }
        if rebuild {
            seg.index.lock().expect("index lock").sync().map_err(io)?;
            // What we walked may exist only in the page cache (the process died, not the
            // machine): fsync it before the recovery point moves past it.
            seg.dirty.store(true, Ordering::Release);
        }
        Ok((seg, truncated))
    }

    /// Index bookkeeping for a batch now at `position` (append and recovery share it).
    fn note_batch(
        &self,
        position: u64,
        batch_bytes: u64,
        h: &BatchHeader,
        interval: u32,
        add_index: bool,
        max_ts_offset: i64,
    ) {
        let rel = (h.base_offset - self.base_offset) as u32;
        let since = self.bytes_since_index_entry.load(Ordering::Relaxed);
        let mut idx = self.index.lock().expect("index lock");
        if add_index && position > 0 && since >= interval as u64 {
            idx.append_offset(rel, position as u32);
            let (ts, off) = *self.max_timestamp.lock().expect("ts lock");
            if ts >= 0 {
                idx.maybe_append_time(ts, (off - self.base_offset) as u32);
            }
            self.bytes_since_index_entry.store(0, Ordering::Relaxed);
        }
        self.bytes_since_index_entry
            .fetch_add(batch_bytes, Ordering::Relaxed);
        drop(idx);
        let mut max = self.max_timestamp.lock().expect("ts lock");
        if h.max_timestamp > max.0 {
            *max = (h.max_timestamp, max_ts_offset);
        }
    }

    pub(crate) fn size_bytes(&self) -> u64 {
        self.size_bytes.load(Ordering::Acquire)
    }
    pub(crate) fn next_offset(&self) -> i64 {
        self.next_offset.load(Ordering::Acquire)
    }
    pub(crate) fn max_timestamp(&self) -> (i64, i64) {
        *self.max_timestamp.lock().expect("ts lock")
    }
    pub(crate) fn is_empty(&self) -> bool {
        self.size_bytes() == 0
    }

    /// Append one rewritten batch at the committed end, given as its (stamped) header and the
    /// untouched rest of the produced bytes: one `lseek` + `writev`, so the produce path never
    /// copies a batch (std has no stable `pwritev`; appends are serialised by the partition's
    /// writer lock and nothing else uses this file's cursor). On failure the file is cut back
    /// to the committed end so no half batch remains; if even that fails the error says so and
    /// the caller must take the log offline. `dense`: the batch must start exactly at the
    /// segment's next offset (always, except a follower copying a leader's cleaned batches,
    /// which may start later).
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn append(
        &self,
        head: &[u8],
        tail: &[u8],
        header: &BatchHeader,
        max_ts_offset: i64,
        index_interval_bytes: u32,
        now_ms: i64,
        dense: bool,
    ) -> Result<(), (LogError, bool)> {
        let position = self.size_bytes.load(Ordering::Relaxed);
        let batch_bytes = (head.len() + tail.len()) as u64;
        let next = self.next_offset.load(Ordering::Relaxed);
        if dense {
            assert_eq!(header.base_offset, next, "offsets must be dense");
        } else {
            assert!(header.base_offset >= next, "offsets must increase");
        }
        assert_eq!(header.total_bytes() as u64, batch_bytes, "one whole batch");
        if let Err(e) = self.write_at(head, tail, position) {
            let repaired = self.log.set_len(position).is_ok();
            return Err((
                LogError::storage(format!("appending to {}", self.log_path.display()), e),
                repaired,
            ));
        }
        if position == 0 {
            // Wall clock, not the producer's timestamp: a client with a bogus clock must not
            // make every append roll a segment.
            self.rolling_base_ms.store(now_ms, Ordering::Relaxed);
        }
        self.note_batch(
            position,
            batch_bytes,
            header,
            index_interval_bytes,
            true,
            max_ts_offset,
        );
        self.dirty.store(true, Ordering::Release);
        // Its indexes may have moved too: once rolled, they must be fsynced before the
        // recovery point passes them (a reopened active segment starts out synced).
        self.indexes_synced.store(false, Ordering::Release);
        self.size_bytes
            .store(position + batch_bytes, Ordering::Release);
        self.next_offset
            .store(header.last_offset() + 1, Ordering::Release);
        Ok(())
    }

    /// Truncation is about to cut this segment's file at `position` (a batch boundary) and
    /// replace it: readers still holding it stop there, and below `next_offset`, from now on.
    pub(crate) fn retire_from(&self, position: u64, next_offset: i64) {
        if next_offset < self.next_offset() {
            self.next_offset.store(next_offset, Ordering::Release);
        }
        if position < self.size_bytes() {
            self.size_bytes.store(position, Ordering::Release);
        }
    }

    /// Cut the file at `position` and fsync it (truncation: the caller reopens the segment
    /// afterwards to rebuild its indexes).
    pub(crate) fn cut_file(&self, position: u64) -> Result<(), LogError> {
        let io = |e| LogError::storage(format!("truncating {}", self.log_path.display()), e);
        self.log.set_len(position).map_err(io)?;
        self.log.sync_all().map_err(io)
    }

    /// Called once when this segment stops being the active one: record the final max
    /// timestamp in the time index, as Kafka does on roll.
    pub(crate) fn seal(&self) {
        let (ts, off) = self.max_timestamp();
        if ts >= 0 {
            self.indexes_synced.store(false, Ordering::Release);
            self.index
                .lock()
                .expect("index lock")
                .maybe_append_time(ts, (off - self.base_offset) as u32);
        }
    }

    pub(crate) fn sync_log(&self) -> Result<(), LogError> {
        if self.dirty.swap(false, Ordering::AcqRel) {
            if let Err(e) = self.log.sync_data() {
                self.dirty.store(true, Ordering::Release);
                return Err(LogError::storage(
                    format!("fsync {}", self.log_path.display()),
                    e,
                ));
            }
        }
        Ok(())
    }

    pub(crate) fn sync_indexes(&self) -> Result<(), LogError> {
        let idx = self.index.lock().expect("index lock");
        idx.sync().map_err(|e| {
            LogError::storage(format!("fsync index of {}", self.log_path.display()), e)
        })?;
        self.txn_index
            .lock()
            .expect("txn index lock")
            .sync()
            .map_err(|e| {
                LogError::storage(
                    format!("fsync transaction index of {}", self.log_path.display()),
                    e,
                )
            })?;
        self.indexes_synced.store(true, Ordering::Release);
        Ok(())
    }

    pub(crate) fn index_files_stale(&self) -> bool {
        self.index.lock().expect("index lock").files_stale
    }

    /// Call `f(position, whole batch bytes)` for each batch in [from, end) until it returns
    /// Ok(false). Returns where the walk stopped, or the position of the first batch that is
    /// torn, malformed, or rejected by `f`.
    pub(crate) fn walk(
        &self,
        from: u64,
        end: u64,
        mut f: impl FnMut(u64, &[u8]) -> Result<bool, LogError>,
    ) -> Result<u64, BadBatch> {
        let mut pos = from;
        let mut buf: Vec<u8> = Vec::new();
        let mut buf_start = u64::MAX;
        while pos < end {
            // Make sure the header is in the buffer.
            let have = |buf: &Vec<u8>, buf_start: u64, pos: u64, n: u64| {
                buf_start != u64::MAX && pos >= buf_start && pos + n <= buf_start + buf.len() as u64
            };
            let header_need = (BATCH_HEADER_BYTES as u64).min(end - pos);
            if !have(&buf, buf_start, pos, header_need) {
                let len = (WALK_CHUNK_BYTES as u64).min(end - pos) as usize;
                buf.resize(len, 0);
                self.read_exact_at(&mut buf, pos)
                    .map_err(|error| BadBatch {
                        position: pos,
                        error,
                    })?;
                buf_start = pos;
            }
            if end - pos < BATCH_HEADER_BYTES as u64 {
                return Err(BadBatch {
                    position: pos,
                    error: LogError::CorruptMessage(format!("{} trailing bytes", end - pos)),
                });
            }
            let at = (pos - buf_start) as usize;
            let length = be_i32(&buf, at + batch::LENGTH_AT);
            let total = LOG_OVERHEAD_BYTES as u64 + length.max(0) as u64;
            if length < (BATCH_HEADER_BYTES - LOG_OVERHEAD_BYTES) as i32
                || total > BATCH_BYTES_MAX
                || pos + total > end
            {
                return Err(BadBatch {
                    position: pos,
                    error: LogError::CorruptMessage(format!("bad batch length {length} at {pos}")),
                });
            }
            if !have(&buf, buf_start, pos, total) {
                let len = (WALK_CHUNK_BYTES as u64).max(total).min(end - pos) as usize;
                buf.resize(len, 0);
                self.read_exact_at(&mut buf, pos)
                    .map_err(|error| BadBatch {
                        position: pos,
                        error,
                    })?;
                buf_start = pos;
            }
            let at = (pos - buf_start) as usize;
            let bytes = &buf[at..at + total as usize];
            match f(pos, bytes) {
                Ok(true) => pos += total,
                Ok(false) => return Ok(pos),
                Err(error) => {
                    return Err(BadBatch {
                        position: pos,
                        error,
                    })
                }
            }
        }
        Ok(pos)
    }

    /// Write `head` then `tail` at `position` (see `append` for why a cursor write).
    fn write_at(&self, head: &[u8], tail: &[u8], position: u64) -> std::io::Result<()> {
        #[cfg(test)]
        if let Some(written) = self
            .fail_next_write_after
            .lock()
            .expect("fault lock")
            .take()
        {
            // Simulate a disk that fills up part way through the write.
            let bytes = [head, tail].concat();
            self.log
                .write_all_at(&bytes[..written.min(bytes.len())], position)?;
            return Err(std::io::Error::from_raw_os_error(28));
        }
        let mut file = &self.log;
        file.seek(SeekFrom::Start(position))?;
        let mut slices = [IoSlice::new(head), IoSlice::new(tail)];
        let mut rest = &mut slices[..];
        IoSlice::advance_slices(&mut rest, 0); // drops leading empty slices
        while !rest.is_empty() {
            match file.write_vectored(rest) {
                Ok(0) => return Err(std::io::ErrorKind::WriteZero.into()),
                Ok(n) => IoSlice::advance_slices(&mut rest, n),
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Test hook: the next append writes this many bytes and then fails with ENOSPC.
    #[cfg(test)]
    pub(crate) fn fail_next_write_after(&self, bytes: usize) {
        *self.fail_next_write_after.lock().expect("fault lock") = Some(bytes);
    }

    fn read_exact_at(&self, buf: &mut [u8], pos: u64) -> Result<(), LogError> {
        self.log.read_exact_at(buf, pos).map_err(|e| {
            LogError::storage(format!("reading {} at {pos}", self.log_path.display()), e)
        })
    }

    /// Whole batches starting with the one containing `offset`: at most `max_bytes` unless the
    /// first batch alone is larger, only batches with base offset < `max_offset_exclusive`.
    /// None when `offset` is at or past this segment's end. Normally one `pread` (plus one when
    /// the first batch is larger than what the first read covered).
    pub(crate) fn read(
        &self,
        offset: i64,
        max_bytes: usize,
        max_offset_exclusive: i64,
        index_interval_bytes: u32,
    ) -> Result<Option<Bytes>, LogError> {
        let committed = self.size_bytes();
        if offset >= self.next_offset() || committed == 0 {
            return Ok(None);
        }
        let rel = (offset - self.base_offset).max(0) as u32;
        let (_, index_pos) = self.index.lock().expect("index lock").lookup_offset(rel);
        let mut pos = index_pos as u64;
        if pos >= committed {
            // Only after a truncation retired this segment's tail (its index still covers it).
            return Ok(None);
        }
        loop {
            let want = (index_interval_bytes as u64)
                .saturating_add(max_bytes as u64)
                .saturating_add(BATCH_HEADER_BYTES as u64)
                .min(committed - pos)
                .min(crate::limits::READ_BYTES_MAX as u64) as usize;
            let mut buf = vec![0u8; want];
            self.read_exact_at(&mut buf, pos)?;
            let mut at = 0usize;
            // Skip batches entirely before `offset`.
            if buf.len() < 27 {
                return Err(corrupt_on_disk(format!(
                    "{} torn at {pos}",
                    self.log_path.display()
                )));
            }
            let start = loop {
                if buf.len() - at < 27 {
                    break None;
                }
                let length = be_i32(&buf, at + batch::LENGTH_AT);
                let total = LOG_OVERHEAD_BYTES + length.max(0) as usize;
                let last = be_i64(&buf, at)
                    .saturating_add(be_i32(&buf, at + batch::LAST_OFFSET_DELTA_AT) as i64);
                if length < (BATCH_HEADER_BYTES - LOG_OVERHEAD_BYTES) as i32
                    || pos + (at + total) as u64 > committed
                {
                    return Err(corrupt_on_disk(format!(
                        "{} at {}",
                        self.log_path.display(),
                        pos + at as u64
                    )));
                }
                if last >= offset {
                    break Some(at);
                }
                if buf.len() - at < total {
                    // The next batch starts past the buffer: read again from there.
                    pos += (at + total) as u64;
                    at = usize::MAX;
                    break None;
                }
                at += total;
            };
            let Some(s) = start else {
                if at == usize::MAX {
                    continue;
                }
                pos += at as u64;
                if pos >= committed {
                    return Ok(None);
                }
                continue;
            };
            // Take whole batches from s.
            let mut e = s;
            while buf.len() - e >= 27 {
                let length = be_i32(&buf, e + batch::LENGTH_AT);
                let total = LOG_OVERHEAD_BYTES + length.max(0) as usize;
                if length < (BATCH_HEADER_BYTES - LOG_OVERHEAD_BYTES) as i32
                    || pos + (e + total) as u64 > committed
                {
                    return Err(corrupt_on_disk(format!(
                        "{} at {}",
                        self.log_path.display(),
                        pos + e as u64
                    )));
                }
                let base = be_i64(&buf, e);
                if base >= max_offset_exclusive {
                    break;
                }
                if e > s && e + total - s > max_bytes {
                    break;
                }
                if buf.len() - e < total {
                    if e == s {
                        // The first batch is bigger than the buffer: read exactly it.
                        let mut one = vec![0u8; total];
                        self.read_exact_at(&mut one, pos + s as u64)?;
                        return Ok(Some(Bytes::from(one)));
                    }
                    break;
                }
                e += total;
            }
            if e == s {
                return Ok(Some(Bytes::new()));
            }
            return Ok(Some(Bytes::from(buf).slice(s..e)));
        }
    }

    /// Where [`Segment::read`] would take its batches from, found by reading batch headers
    /// only (the zero-copy fetch sends the range from the file): the same batches, the same
    /// limits, the same errors for a bad length field, and the same windows (the copying read
    /// takes at most `index_interval_bytes + max_bytes + BATCH_HEADER_BYTES` bytes from its
    /// index position and its batches must lie inside them; the walk here keeps those bounds
    /// without reading the bytes between headers). Between the first batch and the end, whole
    /// stretches of batches are skipped through the offset index: every indexed position within
    /// the limits is a batch boundary before which every batch passes them. Unlike the copying
    /// read, a bad length field inside a skipped stretch is not noticed (the client checks
    /// every batch's CRC).
    pub(crate) fn locate(
        &self,
        offset: i64,
        max_bytes: usize,
        max_offset_exclusive: i64,
        index_interval_bytes: u32,
    ) -> Result<Option<Located>, LogError> {
        let committed = self.size_bytes();
        if offset >= self.next_offset() || committed == 0 {
            return Ok(None);
        }
        let rel = (offset - self.base_offset).max(0) as u32;
        let (_, index_pos) = self.index.lock().expect("index lock").lookup_offset(rel);
        let mut pos = index_pos as u64;
        if pos >= committed {
            return Ok(None);
        }
        let mut headers = HeaderCursor::default();
        let corrupt = |at: u64| corrupt_on_disk(format!("{} at {at}", self.log_path.display()));
        loop {
            let want = (index_interval_bytes as u64)
                .saturating_add(max_bytes as u64)
                .saturating_add(BATCH_HEADER_BYTES as u64)
                .min(committed - pos)
                .min(crate::limits::READ_BYTES_MAX as u64);
            // The copying read's buffer: [pos, window_end).
            let window_end = pos + want;
            if want < BATCH_PREFIX_BYTES as u64 {
                return Err(corrupt_on_disk(format!(
                    "{} torn at {pos}",
                    self.log_path.display()
                )));
            }
            // Skip batches entirely before `offset`.
            let mut at = pos;
            let start = loop {
                if window_end - at < BATCH_PREFIX_BYTES as u64 {
                    break Walked::Exhausted(at);
                }
                let h = headers.at(self, at, committed)?;
                if h.length < (BATCH_HEADER_BYTES - LOG_OVERHEAD_BYTES) as i32
                    || at + h.total() > committed
                {
                    return Err(corrupt(at));
                }
                if h.last_offset() >= offset {
                    break Walked::Found(at, h);
                }
                if window_end - at < h.total() {
                    break Walked::Restart(at + h.total());
                }
                at += h.total();
            };
            let (s, first) = match start {
                Walked::Found(s, h) => (s, h),
                Walked::Restart(p) => {
                    pos = p;
                    continue;
                }
                Walked::Exhausted(p) => {
                    pos = p;
                    if pos >= committed {
                        return Ok(None);
                    }
                    continue;
                }
            };
            let located = |end: u64, last: i64| Located {
                position: s,
                len: end - s,
                first_base: first.base_offset,
                last_offset: last,
            };
            // Take whole batches from s, first jumping over the indexed stretch that passes
            // every limit.
            let limit = window_end.min(s.saturating_add(max_bytes as u64));
            let mut e = self
                .index
                .lock()
                .expect("index lock")
                .jump(s, limit, max_offset_exclusive - self.base_offset)
                .map_or(s, |p| p as u64);
            let mut last = -1;
            while window_end - e >= BATCH_PREFIX_BYTES as u64 {
                let h = headers.at(self, e, committed)?;
                if h.length < (BATCH_HEADER_BYTES - LOG_OVERHEAD_BYTES) as i32
                    || e + h.total() > committed
                {
                    return Err(corrupt(e));
                }
                if h.base_offset >= max_offset_exclusive {
                    break;
                }
                if e > s && e + h.total() - s > max_bytes as u64 {
                    break;
                }
                if window_end - e < h.total() {
                    if e == s {
                        // The first batch is bigger than the window: exactly it.
                        return Ok(Some(located(s + h.total(), h.last_offset())));
                    }
                    break;
                }
                last = h.last_offset();
                e += h.total();
            }
            return Ok(Some(located(e, last)));
        }
    }

    /// The segment file (the zero-copy fetch sends ranges of it).
    pub(crate) fn file(&self) -> &File {
        &self.log
    }

    /// First record with timestamp >= `ts` in this segment: (offset, timestamp).
    pub(crate) fn offset_for_timestamp(&self, ts: i64) -> Result<Option<(i64, i64)>, LogError> {
        if self.max_timestamp().0 < ts {
            return Ok(None);
        }
        let (pos, committed) = {
            let idx = self.index.lock().expect("index lock");
            let rel = idx.lookup_time(ts);
            (idx.lookup_offset(rel).1 as u64, self.size_bytes())
        };
        let mut found = None;
        let walked = self.walk(pos, committed, |_, bytes| {
            let h = BatchHeader::parse(bytes)?;
            if h.max_timestamp < ts {
                return Ok(true);
            }
            if h.timestamp_type() == TimestampType::LogAppendTime {
                found = Some((h.base_offset, h.max_timestamp));
                return Ok(false);
            }
            records::visit_records(bytes, &h, |r| {
                if r.timestamp >= ts {
                    found = Some((h.base_offset + r.offset_delta as i64, r.timestamp));
                    return Ok(false);
                }
                Ok(true)
            })?;
            Ok(found.is_none())
        });
        walked.map_err(|b| b.error)?;
        Ok(found)
    }

    /// File position of the indexed batch at or before `offset`.
    pub(crate) fn index_position(&self, offset: i64) -> u64 {
        let rel = (offset - self.base_offset).max(0) as u32;
        self.index.lock().expect("index lock").lookup_offset(rel).1 as u64
    }

    /// Index an aborted transaction whose marker was just written to this segment.
    pub(crate) fn append_aborted(&self, txn: &AbortedTxn) -> Result<(), LogError> {
        // Synced with the other indexes when the segment is sealed (or the log closed).
        self.indexes_synced.store(false, Ordering::Release);
        self.txn_index
            .lock()
            .expect("txn index lock")
            .append(txn)
            .map_err(|e| {
                LogError::storage(
                    format!(
                        "appending to the transaction index of {}",
                        self.log_path.display()
                    ),
                    e,
                )
            })
    }

    /// Empty the transaction index before rebuilding it from the log.
    pub(crate) fn reset_txn_index(&self, dir: &Path) -> Result<(), LogError> {
        let fresh = TxnIndex::create(dir, self.base_offset).map_err(|e| {
            LogError::storage(
                format!(
                    "resetting the transaction index of {}",
                    self.log_path.display()
                ),
                e,
            )
        })?;
        *self.txn_index.lock().expect("txn index lock") = fresh;
        Ok(())
    }

    /// Drop the index entries whose marker is at or past `offset` (truncation).
    pub(crate) fn truncate_txn_index(&self, offset: i64) -> Result<(), LogError> {
        self.txn_index
            .lock()
            .expect("txn index lock")
            .truncate_to(offset)
            .map_err(|e| {
                LogError::storage(
                    format!(
                        "truncating the transaction index of {}",
                        self.log_path.display()
                    ),
                    e,
                )
            })
    }

    /// This segment's aborts overlapping [fetch_offset, upper_bound) into `out`; true when the
    /// search is complete (see `TxnIndex::collect`).
    pub(crate) fn collect_aborted(
        &self,
        fetch_offset: i64,
        upper_bound: i64,
        out: &mut Vec<AbortedTxn>,
    ) -> Result<bool, LogError> {
        self.txn_index
            .lock()
            .expect("txn index lock")
            .collect(fetch_offset, upper_bound, out)
            .map_err(|e| {
                LogError::storage(
                    format!(
                        "reading the transaction index of {}",
                        self.log_path.display()
                    ),
                    e,
                )
            })
    }

    /// The cleaner removed the abort markers at `markers`: rewrite the transaction index
    /// without their entries, atomically (temporary file, fsync, rename, fsync the directory).
    pub(crate) fn remove_aborted_entries(
        &self,
        dir: &Path,
        markers: &[i64],
    ) -> Result<(), LogError> {
        let io = |e| {
            LogError::storage(
                format!(
                    "rewriting the transaction index of {}",
                    self.log_path.display()
                ),
                e,
            )
        };
        let mut idx = self.txn_index.lock().expect("txn index lock");
        let all = idx.all().map_err(io)?;
        let kept: Vec<AbortedTxn> = all
            .iter()
            .filter(|t| !markers.contains(&t.last_offset))
            .copied()
            .collect();
        if kept.len() == all.len() {
            return Ok(());
        }
        let bytes: Vec<u8> = kept.iter().flat_map(|t| t.encode()).collect();
        let path = TxnIndex::path(dir, self.base_offset);
        let tmp = TxnIndex::rewrite_path(dir, self.base_offset);
        let write = || -> std::io::Result<()> {
            let mut f = File::create(&tmp)?;
            f.write_all(&bytes)?;
            f.sync_all()?;
            std::fs::rename(&tmp, &path)
        };
        write().map_err(io)?;
        crate::partition::sync_dir(dir)?;
        match TxnIndex::open(dir, self.base_offset, self.next_offset()).map_err(io)? {
            Ok(reopened) => *idx = reopened,
            Err(why) => {
                return Err(io(std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    why,
                )));
            }
        }
        Ok(())
    }

    /// Every entry of the transaction index (tests).
    #[cfg(test)]
    pub(crate) fn aborted_entries(&self) -> Vec<AbortedTxn> {
        self.txn_index
            .lock()
            .expect("txn index lock")
            .all()
            .expect("readable")
    }

    /// First step of deleting a segment (retention, DeleteRecords): rename its files to
    /// `<name>.deleted`, so a crash before the removal leaves files recovery knows to remove
    /// rather than a segment it would load back.
    pub(crate) fn rename_to_deleted(dir: &Path, base_offset: i64) -> std::io::Result<()> {
        let (l, i, t) = Self::paths(dir, base_offset);
        let x = TxnIndex::path(dir, base_offset);
        // The .log last: a crash part way leaves a whole segment whose missing indexes are
        // rebuilt, never index files without their log. (A segment that lost its .txnindex
        // this way is below the log start being checkpointed: no fetch reads it again.)
        for p in [i, t, x, l] {
            let mut to = p.clone().into_os_string();
            to.push(crate::partition::DELETED_SUFFIX);
            match std::fs::rename(&p, &to) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Remove the segment's files (after the segment was dropped from the log).
    pub(crate) fn delete_files(dir: &Path, base_offset: i64) -> std::io::Result<()> {
        let (l, i, t) = Self::paths(dir, base_offset);
        for p in [l, i, t, TxnIndex::path(dir, base_offset)] {
            match std::fs::remove_file(&p) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }
}

/// Offset of the first record carrying the batch's max timestamp (Kafka's
/// offsetOfMaxTimestamp): the base offset for LogAppendTime, else found by walking records.
pub(crate) fn max_timestamp_offset(bytes: &[u8], h: &BatchHeader) -> i64 {
    if h.timestamp_type() == TimestampType::LogAppendTime {
        return h.base_offset;
    }
    let mut found = h.last_offset();
    let _ = records::visit_records(bytes, h, |r| {
        if r.timestamp == h.max_timestamp {
            found = h.base_offset + r.offset_delta as i64;
            return Ok(false);
        }
        Ok(true)
    });
    found
}

/// Bytes of a batch's header [`Segment::locate`] reads: base offset, length, partition leader
/// epoch, magic, CRC, attributes, last offset delta.
const BATCH_PREFIX_BYTES: usize = 27;

/// Bytes read per `pread` by [`HeaderCursor`]: the next headers of small batches come with
/// the first; large batches cost one small read each.
const HEADER_READ_BYTES: usize = 1024;

/// What [`Segment::locate`] found: batches at `[position, position + len)` of the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Located {
    pub(crate) position: u64,
    pub(crate) len: u64,
    /// The base offset of the first batch (taken or not).
    pub(crate) first_base: i64,
    /// The last offset of the last batch taken; -1 when none is.
    pub(crate) last_offset: i64,
}

enum Walked {
    Found(u64, Prefix),
    Restart(u64),
    Exhausted(u64),
}

/// The fields of a batch header the walk needs.
#[derive(Clone, Copy)]
struct Prefix {
    base_offset: i64,
    length: i32,
    last_offset_delta: i32,
}

impl Prefix {
    fn total(&self) -> u64 {
        LOG_OVERHEAD_BYTES as u64 + self.length.max(0) as u64
    }
    fn last_offset(&self) -> i64 {
        self.base_offset
            .saturating_add(self.last_offset_delta as i64)
    }
}

/// Reads batch headers through a small buffer: `HEADER_READ_BYTES` from a header's position
/// (never past the committed end), reused while the next header lies inside it.
#[derive(Default)]
struct HeaderCursor {
    buf: Vec<u8>,
    at: u64,
}

impl HeaderCursor {
    /// The header at `pos` (the caller checked `pos + BATCH_PREFIX_BYTES <= committed`).
    fn at(&mut self, seg: &Segment, pos: u64, committed: u64) -> Result<Prefix, LogError> {
        let inside =
            pos >= self.at && pos + BATCH_PREFIX_BYTES as u64 <= self.at + self.buf.len() as u64;
        if !inside {
            let n = (committed - pos).min(HEADER_READ_BYTES as u64) as usize;
            self.buf.resize(n, 0);
            seg.read_exact_at(&mut self.buf, pos)?;
            self.at = pos;
        }
        let b = &self.buf[(pos - self.at) as usize..];
        Ok(Prefix {
            base_offset: be_i64(b, 0),
            length: be_i32(b, batch::LENGTH_AT),
            last_offset_delta: be_i32(b, batch::LAST_OFFSET_DELTA_AT),
        })
    }
}

//! The log cleaner (compaction) for `cleanup.policy=compact` partitions, and the recovery of
//! interrupted segment deletions and cleaner swaps.
//!
//! Owns: the cleaner checkpoint (`cleaner-checkpoint`), the bounded offset map of one pass, the
//! rewriting of sealed segments into `<base>.log.cleaned` copies, and the crash-safe swap
//! `.cleaned` -> `.swap` -> `.log`. A pass is synchronous and driven from outside
//! ([`PartitionLog::clean`]); it never touches the active segment, never changes an offset, and
//! holds at most one batch (decompressed) plus the offset map in memory.
//!
//! Must never: drop the latest committed record of a key or an idempotent producer's newest
//! batch header; let an aborted record supersede anything; clean at or above the last stable
//! offset; remove a tombstone or a transaction marker before it has been in the cleaned
//! section for `delete.retention.ms`, or a marker while any batch of its transaction is still
//! in the log (or its `.txnindex` entry after it); let a crash at any step lose or duplicate
//! data.
//!
//! Transactions (Kafka's `LogCleaner` with `CleanedTransactionMetadata`): the aborted
//! transactions below the pass's end come from the `.txnindex` files when the pass starts.
//! Their records never enter the offset map and their batches are removed (an idempotent
//! producer's newest batch stays, empty); committed transactional records are cleaned like
//! any other. A marker goes once a pass walks from the log start to it without meeting a batch
//! of its transaction (a previous pass removed them all) and its offset has been clean for
//! `delete.retention.ms`, as tombstones; an abort's `.txnindex` entry goes with its marker,
//! rewritten atomically before the log is swapped (a crash in between leaves a kept marker
//! without an entry, which hides nothing: its transaction has no data left).
//!
//! A pass: (1) the dirty section is [max(cleaned up to, log start), first uncleanable offset),
//! where the first uncleanable offset is the active segment's base, the first segment reaching
//! the high watermark, or the first segment whose newest record is younger than
//! `min.compaction.lag.ms`. (2) Build a map key hash -> latest
//! offset over the dirty section, at most `offset_map_entries_max` keys; when it fills, the
//! pass covers only the prefix [.., map end) and says `more`. (3) Rewrite every sealed segment
//! below the map end, oldest first, keeping a record unless a later offset of its key is in the
//! map, it has no key, or it is a tombstone whose offset was cleaned more than
//! `delete.retention.ms` ago. Batches keeping every record are copied byte for byte; the others
//! are re-encoded *uncompressed* with their original base offset, offset range (lastOffsetDelta),
//! base timestamp, producer id/epoch/base sequence, so offsets stay sparse and ordered and an
//! idempotent producer's sequence range is unchanged. (4) Record the map end as cleaned.
//!
//! Swap (per segment, under the partition's `segment_files` lock):
//! 1. write `<base>.log.cleaned`, fsync. A crash leaves a `.cleaned` file: recovery deletes it
//!    (roll back: the original is untouched).
//! 2. rename it to `<base>.log.swap`, fsync the directory. From here the new copy is complete:
//!    recovery completes the swap.
//! 3. delete `<base>.index` / `.timeindex` (they describe the old file positions).
//! 4. rename `.swap` over `<base>.log`, fsync the directory.
//! 5. open the new segment (rebuilding its indexes) and replace the old one in the list;
//!    readers holding the old segment keep reading its (unlinked) file.
//!
//! Before the first swap of a pass the checkpoint records that segments below the map end may
//! hold offset gaps (`rewritten below`), so recovery accepts them there and only there.

use std::collections::{HashMap, HashSet};
use std::fs;
use std::hash::{Hash, Hasher};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::Arc;

use crate::batch::{self, BatchHeader, Compression, ATTRIBUTES_AT, CRC_AT};
use crate::limits::{
    BATCH_HEADER_BYTES, CLEANER_ABORTED_TXNS_MAX, CLEANER_HISTORY_ENTRIES_MAX,
    CLEANER_OFFSET_MAP_ENTRIES_MAX,
};
use crate::partition::{io_err, offset_from_name, sync_dir, write_file_atomically, DELETED_SUFFIX};
use crate::records;
use crate::segment::{file_stem, Segment};
use crate::{CleanOutcome, CleanerLimits, LogError, PartitionLog, TimestampType};

const CHECKPOINT_FILE: &str = "cleaner-checkpoint";
const CLEANED_SUFFIX: &str = ".log.cleaned";
const SWAP_SUFFIX: &str = ".log.swap";

/// The cleaner's per-partition state: what is clean, and the pass in progress.
pub(crate) struct CleanerState {
    /// Every offset below this went through a completed pass (Kafka's cleaner checkpoint).
    cleaned_upto: i64,
    /// Segments with a base offset below this may have been rewritten (may hold gaps).
    rewritten_below: i64,
    /// (cleaned up to, when), increasing in both: a tombstone at offset o may be dropped once
    /// some entry with up-to > o is older than `delete.retention.ms`.
    history: Vec<(i64, i64)>,
    pending: Option<Pass>,
    /// Test hook: fail (as a crash would stop) right after this swap step (1..=4).
    #[cfg(test)]
    pub(crate) crash_after_step: Option<u8>,
}

/// Producer id -> (first offset, marker offset) of its aborted transactions.
type AbortedByProducer = HashMap<i64, Vec<(i64, i64)>>;

/// A pass whose map is built and whose rewrites are under way.
struct Pass {
    map: HashMap<u128, i64>,
    /// Producer id -> (first offset, marker offset) of its aborted transactions below the
    /// pass's end. None: more than `CLEANER_ABORTED_TXNS_MAX`; this pass then keeps every
    /// transactional batch and marker whole and maps no transactional record.
    aborted: Option<AbortedByProducer>,
    /// Producers with a transactional batch met since their last marker in this pass's walk
    /// from the log start (their open transaction's marker must stay).
    txn_seen: HashSet<i64>,
    /// The map covers every keyed record in [first dirty, map_end).
    map_end: i64,
    /// The map stopped before the dirty section's end: another pass is needed.
    map_full: bool,
    /// Next segment to rewrite: the first with a base offset >= this.
    next_base: i64,
}

fn key_hash(key: &[u8]) -> u128 {
    // Two independently salted 64-bit SipHashes: a collision would drop a live record, so
    // 128 bits (as Kafka's MD5-based map) rather than 64.
    let mut a = std::collections::hash_map::DefaultHasher::new();
    (0u8, key).hash(&mut a);
    let mut b = std::collections::hash_map::DefaultHasher::new();
    (1u8, key).hash(&mut b);
    ((a.finish() as u128) << 64) | b.finish() as u128
}

impl CleanerState {
    /// Read the checkpoint. A missing file means "never cleaned"; an unreadable one means
    /// "anything may have been rewritten" (gaps accepted everywhere, nothing counted clean),
    /// which can only cost work, never data.
    pub(crate) fn load(dir: &Path) -> CleanerState {
        let mut st = CleanerState {
            cleaned_upto: 0,
            rewritten_below: 0,
            history: Vec::new(),
            pending: None,
            #[cfg(test)]
            crash_after_step: None,
        };
        let text = match fs::read_to_string(dir.join(CHECKPOINT_FILE)) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return st,
            Err(_) => {
                st.rewritten_below = i64::MAX;
                return st;
            }
        };
        match parse_checkpoint(&text) {
            Some((upto, below, history)) => {
                st.cleaned_upto = upto;
                st.rewritten_below = below;
                st.history = history;
            }
            None => {
                tracing::warn!(dir = %dir.display(), "unreadable cleaner checkpoint; accepting gaps everywhere");
                st.rewritten_below = i64::MAX;
            }
        }
        st
    }

    /// True when the segment at `base_offset` may have been rewritten by the cleaner.
    pub(crate) fn may_have_gaps(&self, base_offset: i64) -> bool {
        base_offset < self.rewritten_below
    }

    /// The log was truncated to end at `log_end` (Kafka's `maybeTruncateCheckpoint`): nothing
    /// at or above it is clean any more, and a pass planned over the old records is dropped.
    /// Saved when anything changed.
    pub(crate) fn truncate_to(&mut self, dir: &Path, log_end: i64) -> Result<(), LogError> {
        let had_pass = self.pending.take().is_some();
        let mut changed = false;
        if self.cleaned_upto > log_end {
            self.cleaned_upto = log_end;
            changed = true;
        }
        // Each entry's time is when everything below its offset was clean; below the new end
        // that stays true, so clamp and keep the oldest time of the entries that collapse.
        let before = self.history.len();
        for entry in self.history.iter_mut() {
            if entry.0 > log_end {
                entry.0 = log_end;
                changed = true;
            }
        }
        self.history.dedup_by_key(|e| e.0);
        changed |= self.history.len() != before;
        if changed || had_pass {
            self.save(dir)?;
        }
        Ok(())
    }

    /// A follower is about to write batches with offset gaps (the leader's cleaned segments)
    /// into segments based below `below`: make recovery accept gaps there, durably, first.
    pub(crate) fn allow_gaps_below(&mut self, dir: &Path, below: i64) -> Result<(), LogError> {
        if below <= self.rewritten_below {
            return Ok(());
        }
        let before = self.rewritten_below;
        self.rewritten_below = below;
        if let Err(e) = self.save(dir) {
            self.rewritten_below = before;
            return Err(e);
        }
        Ok(())
    }

    fn save(&self, dir: &Path) -> Result<(), LogError> {
        let mut text = format!(
            "0\n{}\n{}\n{}\n",
            self.cleaned_upto,
            self.rewritten_below,
            self.history.len()
        );
        for (upto, ms) in &self.history {
            text.push_str(&format!("{upto} {ms}\n"));
        }
        write_file_atomically(&dir.join(CHECKPOINT_FILE), text.as_bytes())?;
        sync_dir(dir)
    }

    /// Tombstones below this offset have been clean for `delete_retention_ms`.
    fn tombstones_expired_below(&self, now_ms: i64, delete_retention_ms: i64) -> i64 {
        self.history
            .iter()
            .filter(|(_, ms)| ms.saturating_add(delete_retention_ms) <= now_ms)
            .map(|(upto, _)| *upto)
            .max()
            .unwrap_or(i64::MIN)
    }

    fn record_pass(&mut self, upto: i64, now_ms: i64) {
        if upto <= self.cleaned_upto && !self.history.is_empty() {
            return;
        }
        self.cleaned_upto = self.cleaned_upto.max(upto);
        let ms = self.history.last().map_or(now_ms, |l| l.1.max(now_ms));
        self.history.push((upto, ms));
        // Dropping the oldest entry makes offsets below it wait for a later (newer) entry:
        // tombstones are kept longer, never removed early.
        while self.history.len() > CLEANER_HISTORY_ENTRIES_MAX {
            self.history.remove(0);
        }
    }
}

/// (cleaned up to, rewritten below, history) as stored in the checkpoint file.
type Checkpoint = (i64, i64, Vec<(i64, i64)>);

fn parse_checkpoint(text: &str) -> Option<Checkpoint> {
    let mut lines = text.lines();
    if lines.next()? != "0" {
        return None;
    }
    let upto: i64 = lines.next()?.trim().parse().ok()?;
    let below: i64 = lines.next()?.trim().parse().ok()?;
    let n: usize = lines.next()?.trim().parse().ok()?;
    if n > CLEANER_HISTORY_ENTRIES_MAX {
        return None;
    }
    let mut history = Vec::with_capacity(n);
    for _ in 0..n {
        let mut parts = lines.next()?.split(' ');
        let u: i64 = parts.next()?.parse().ok()?;
        let t: i64 = parts.next()?.parse().ok()?;
        history.push((u, t));
    }
    Some((upto, below, history))
}

fn suffixed(dir: &Path, base_offset: i64, suffix: &str) -> PathBuf {
    dir.join(format!("{}{suffix}", file_stem(base_offset)))
}

/// Remove the `.deleted` files of the segment at `base_offset` (last step of a deletion).
pub(crate) fn remove_deleted_files(dir: &Path, base_offset: i64) -> std::io::Result<()> {
    for ext in [
        ".log",
        ".index",
        ".timeindex",
        crate::txn_index::TXN_INDEX_SUFFIX,
    ] {
        let p = suffixed(dir, base_offset, &format!("{ext}{DELETED_SUFFIX}"));
        match fs::remove_file(&p) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Recovery, before segments are loaded: remove `.deleted` files (deletions that were
/// decided), remove `.cleaned` files (swaps that had not committed), and complete `.swap`
/// files (swaps that had: the old indexes go, the copy becomes the segment).
pub(crate) fn recover_files(dir: &Path) -> Result<(), LogError> {
    let mut changed = false;
    let listing = fs::read_dir(dir).map_err(io_err(format!("listing {}", dir.display())))?;
    for entry in listing {
        let entry = entry.map_err(io_err(format!("listing {}", dir.display())))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let path = entry.path();
        if name.ends_with(DELETED_SUFFIX)
            || name.ends_with(CLEANED_SUFFIX)
            || name.ends_with(crate::txn_index::TXN_INDEX_REWRITE_SUFFIX)
        {
            tracing::info!(file = %path.display(), "removing leftover of an interrupted deletion or clean");
            fs::remove_file(&path).map_err(io_err(format!("removing {}", path.display())))?;
            changed = true;
        } else if let Some(base) = offset_from_name(&name, SWAP_SUFFIX) {
            tracing::info!(file = %path.display(), "completing an interrupted cleaner swap");
            let (log, index, time) = Segment::paths(dir, base);
            for p in [index, time] {
                match fs::remove_file(&p) {
                    Ok(()) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => {
                        return Err(LogError::storage(format!("removing {}", p.display()), e))
                    }
                }
            }
            fs::rename(&path, &log).map_err(io_err(format!("renaming {}", path.display())))?;
            changed = true;
        }
    }
    if changed {
        sync_dir(dir)?;
    }
    Ok(())
}

/// The dirty section [first_dirty, first_uncleanable) and its byte accounting.
struct Sections {
    first_dirty: i64,
    first_uncleanable: i64,
    clean_bytes: u64,
    dirty_bytes: u64,
    /// Wall time of the first append to the oldest dirty segment (for max.compaction.lag.ms).
    oldest_dirty_ms: Option<i64>,
}

impl PartitionLog {
    fn sections(&self, st: &CleanerState, segs: &[Arc<Segment>], now_ms: i64) -> Sections {
        let config = self.config();
        let first_dirty = st.cleaned_upto.max(self.log_start_offset());
        let last = segs.len() - 1;
        let mut first_uncleanable = segs[last].base_offset;
        let mut out = Sections {
            first_dirty,
            first_uncleanable,
            clean_bytes: 0,
            dirty_bytes: 0,
            oldest_dirty_ms: None,
        };
        // At most the high watermark: records above it may still be truncated, and those of
        // undecided transactions may yet be aborted.
        let last_stable = self.last_stable_offset();
        for (i, seg) in segs[..last].iter().enumerate() {
            let end = segs[i + 1].base_offset;
            if end <= first_dirty {
                out.clean_bytes += seg.size_bytes();
                continue;
            }
            // Never at or above the last stable offset.
            if end > last_stable {
                first_uncleanable = seg.base_offset.max(first_dirty);
                break;
            }
            // Kafka checks the lag only when one is set: with 0, a producer's clock running
            // ahead must not make a segment uncleanable.
            let newest_ms = seg.max_timestamp().0;
            if config.min_compaction_lag_ms > 0
                && newest_ms > now_ms.saturating_sub(config.min_compaction_lag_ms)
            {
                first_uncleanable = seg.base_offset.max(first_dirty);
                break;
            }
            out.dirty_bytes += seg.size_bytes();
            if out.oldest_dirty_ms.is_none() {
                out.oldest_dirty_ms = Some(seg.rolling_base_ms.load(Ordering::Relaxed));
            }
        }
        out.first_uncleanable = first_uncleanable;
        out
    }

    /// Dirty bytes / (clean + dirty bytes) over the sealed, cleanable segments (0 when there
    /// are none): the driver picks the partition with the highest ratio, as Kafka's does.
    pub fn dirty_ratio(&self, now_ms: i64) -> f64 {
        let st = self.cleaner.lock().expect("cleaner lock");
        let segs = self.segments.read().expect("segments lock").clone();
        let s = self.sections(&st, &segs, now_ms);
        let total = s.clean_bytes + s.dirty_bytes;
        if total == 0 {
            0.0
        } else {
            s.dirty_bytes as f64 / total as f64
        }
    }

    /// True when `clean` has work: the topic compacts, and either the dirty ratio reached
    /// `min.cleanable.dirty.ratio`, the oldest dirty segment is older than
    /// `max.compaction.lag.ms`, or a pass is half done.
    pub fn cleaning_due(&self, now_ms: i64) -> bool {
        let config = self.config();
        if !config.cleanup_policy.compacts() {
            return false;
        }
        let st = self.cleaner.lock().expect("cleaner lock");
        if st.pending.is_some() {
            return true;
        }
        let segs = self.segments.read().expect("segments lock").clone();
        let s = self.sections(&st, &segs, now_ms);
        if s.dirty_bytes == 0 {
            return false;
        }
        let ratio = s.dirty_bytes as f64 / (s.clean_bytes + s.dirty_bytes) as f64;
        let overdue = s
            .oldest_dirty_ms
            .is_some_and(|ms| now_ms.saturating_sub(ms) > config.max_compaction_lag_ms);
        ratio >= config.min_cleanable_dirty_ratio || overdue
    }

    /// Offset below which every record went through a completed cleaner pass.
    pub fn cleaned_upto(&self) -> i64 {
        self.cleaner.lock().expect("cleaner lock").cleaned_upto
    }

    /// One bounded step of compaction (no-op unless `cleanup.policy` includes compact). Builds
    /// the offset map when no pass is under way, then rewrites sealed segments oldest first
    /// until `limits.io_bytes_max` is spent (at least one segment per call). Returns `more`
    /// when the pass is unfinished or the map could not hold the whole dirty section: call
    /// again after sleeping `(bytes_read + bytes_written) / bytes_per_second`. Errors are
    /// storage errors (the pass is abandoned; the log stays consistent) or INVALID_CONFIG when
    /// the map limit is smaller than one batch's record count.
    pub fn clean(&self, now_ms: i64, limits: &CleanerLimits) -> Result<CleanOutcome, LogError> {
        let config = self.config();
        let mut out = CleanOutcome::default();
        if !config.cleanup_policy.compacts() {
            return Ok(out);
        }
        {
            let w = self.writer.lock().expect("writer lock");
            if w.closed || w.offline {
                return Ok(out);
            }
        }
        let mut st = self.cleaner.lock().expect("cleaner lock");
        let segs = self.segments.read().expect("segments lock").clone();
        if st.pending.is_none() {
            let s = self.sections(&st, &segs, now_ms);
            if s.first_dirty >= s.first_uncleanable {
                return Ok(out);
            }
            let max_entries = limits
                .offset_map_entries_max
                .clamp(1, CLEANER_OFFSET_MAP_ENTRIES_MAX);
            let pass = self.build_map(
                &segs,
                s.first_dirty,
                s.first_uncleanable,
                max_entries,
                &mut out,
            )?;
            if pass.map_end > st.rewritten_below {
                // Durable before any rewritten segment exists, so recovery accepts its gaps.
                st.rewritten_below = pass.map_end;
                st.save(&self.dir)?;
            }
            st.pending = Some(pass);
        }
        let drop_tombstones_below = st.tombstones_expired_below(now_ms, config.delete_retention_ms);
        let mut processed = 0usize;
        loop {
            let pass = st.pending.as_ref().expect("pass under way");
            let next = {
                let segs = self.segments.read().expect("segments lock");
                let last = segs.len() - 1;
                segs[..last]
                    .iter()
                    .find(|s| s.base_offset >= pass.next_base && s.base_offset < pass.map_end)
                    .cloned()
            };
            let Some(seg) = next else {
                let pass = st.pending.take().expect("pass under way");
                st.record_pass(pass.map_end, now_ms);
                st.save(&self.dir)?;
                out.more = pass.map_full;
                tracing::info!(dir = %self.dir.display(), cleaned_upto = pass.map_end, "cleaner pass complete");
                return Ok(out);
            };
            // At least one segment per call, so a small budget still makes progress.
            if processed > 0 && out.bytes_read + out.bytes_written >= limits.io_bytes_max {
                out.more = true;
                return Ok(out);
            }
            processed += 1;
            #[cfg(test)]
            let crash_after = st.crash_after_step;
            #[cfg(not(test))]
            let crash_after = None;
            let pass = st.pending.as_mut().expect("pass under way");
            let rewritten = self.rewrite_segment(&seg, pass, drop_tombstones_below, &mut out)?;
            if let Some(cleaned_path) = rewritten {
                self.swap_in(&seg, &cleaned_path, crash_after)?;
                out.segments_rewritten += 1;
            }
            st.pending.as_mut().expect("pass under way").next_base = seg.base_offset + 1;
        }
    }

    fn build_map(
        &self,
        segs: &[Arc<Segment>],
        first_dirty: i64,
        first_uncleanable: i64,
        max_entries: usize,
        out: &mut CleanOutcome,
    ) -> Result<Pass, LogError> {
        let mut map: HashMap<u128, i64> = HashMap::new();
        let mut map_end = first_dirty;
        let mut full = false;
        let aborted = self.aborted_below(first_uncleanable)?;
        for (i, seg) in segs.iter().enumerate() {
            let end = segs.get(i + 1).map_or(i64::MAX, |n| n.base_offset);
            if end <= first_dirty {
                continue;
            }
            if seg.base_offset >= first_uncleanable {
                break;
            }
            let walked = seg.walk(0, seg.size_bytes(), |_, bytes| {
                let h = BatchHeader::parse(bytes)?;
                if h.last_offset() < first_dirty {
                    return Ok(true);
                }
                if h.base_offset >= first_uncleanable {
                    return Ok(false);
                }
                out.bytes_read += bytes.len() as u64;
                let skip = h.is_control()
                    || h.records_count == 0
                    || (h.is_transactional()
                        && aborted
                            .as_ref()
                            .is_none_or(|a| is_aborted(a, h.producer_id, h.base_offset)));
                if skip {
                    map_end = h.last_offset() + 1;
                    return Ok(true);
                }
                if map.len() + h.records_count as usize > max_entries {
                    if map.is_empty() {
                        return Err(LogError::InvalidConfig(format!(
                            "cleaner offset map of {max_entries} entries cannot hold one batch of {} records",
                            h.records_count
                        )));
                    }
                    full = true;
                    return Ok(false);
                }
                let raw = records::decompressed_records(bytes, &h)?;
                records::for_each_stored_record(&raw, &h, |r| {
                    if let Some(k) = r.key {
                        let offset = h.base_offset + r.offset_delta as i64;
                        map.insert(key_hash(&raw[k]), offset);
                    }
                    Ok(())
                })?;
                map_end = h.last_offset() + 1;
                Ok(true)
            });
            walked.map_err(|b| b.error)?;
            if full {
                break;
            }
            // Everything up to the segment's end is covered (gaps left by earlier cleaning
            // included), unless the walk stopped at the uncleanable boundary.
            if end <= first_uncleanable {
                map_end = map_end.max(end);
            }
        }
        Ok(Pass {
            map,
            aborted,
            txn_seen: HashSet::new(),
            map_end: map_end.min(first_uncleanable),
            map_full: full,
            next_base: i64::MIN,
        })
    }

    /// The aborted transactions with a first offset below `end`, by producer (None when there
    /// are more than `CLEANER_ABORTED_TXNS_MAX`).
    fn aborted_below(&self, end: i64) -> Result<Option<AbortedByProducer>, LogError> {
        let list = self.aborted_transactions(self.log_start_offset(), end)?;
        if list.len() > CLEANER_ABORTED_TXNS_MAX {
            tracing::warn!(dir = %self.dir.display(), aborted = list.len(), "too many aborted transactions for one cleaner pass; transactional data kept whole this pass");
            return Ok(None);
        }
        let mut by_producer = AbortedByProducer::new();
        for t in list {
            by_producer
                .entry(t.producer_id)
                .or_default()
                .push((t.first_offset, t.last_offset));
        }
        Ok(Some(by_producer))
    }

    /// Write the cleaned copy of `seg` to `<base>.log.cleaned` (fsynced) and return its path,
    /// or None when nothing in it can be removed.
    fn rewrite_segment(
        &self,
        seg: &Arc<Segment>,
        pass: &mut Pass,
        drop_tombstones_below: i64,
        out: &mut CleanOutcome,
    ) -> Result<Option<PathBuf>, LogError> {
        let mut dropped_markers = Vec::new();
        let path = suffixed(&self.dir, seg.base_offset, CLEANED_SUFFIX);
        let file =
            fs::File::create(&path).map_err(io_err(format!("creating {}", path.display())))?;
        let mut writer = std::io::BufWriter::with_capacity(256 * 1024, file);
        let mut removed = 0u64;
        let mut written = 0u64;
        let walked = seg.walk(0, seg.size_bytes(), |_, bytes| {
            out.bytes_read += bytes.len() as u64;
            let h = BatchHeader::parse(bytes)?;
            let kept = self.filter_batch(bytes, &h, pass, drop_tombstones_below)?;
            let (new_bytes, dropped) = match kept {
                Filtered::Unchanged => (None, 0),
                Filtered::Rewritten(b, dropped) => (Some(b), dropped),
                Filtered::Dropped(dropped) => {
                    if h.is_control() {
                        dropped_markers.push(h.base_offset);
                    }
                    removed += dropped;
                    return Ok(true);
                }
            };
            removed += dropped;
            let b = new_bytes.as_deref().unwrap_or(bytes);
            writer
                .write_all(b)
                .map_err(|e| LogError::storage(format!("writing {}", path.display()), e))?;
            written += b.len() as u64;
            Ok(true)
        });
        let finish = |w: std::io::BufWriter<fs::File>| -> std::io::Result<()> {
            let f = w.into_inner().map_err(|e| e.into_error())?;
            f.sync_all()
        };
        match walked {
            Ok(_) => {}
            Err(bad) => {
                drop(writer);
                let _ = fs::remove_file(&path);
                return Err(bad.error);
            }
        }
        if removed == 0 {
            drop(writer);
            fs::remove_file(&path).map_err(io_err(format!("removing {}", path.display())))?;
            return Ok(None);
        }
        finish(writer).map_err(io_err(format!("fsync {}", path.display())))?;
        if !dropped_markers.is_empty() {
            // Before the swap: an entry must never outlive its marker.
            seg.remove_aborted_entries(&self.dir, &dropped_markers)?;
        }
        out.bytes_written += written;
        out.records_removed += removed;
        Ok(Some(path))
    }

    fn filter_batch(
        &self,
        bytes: &[u8],
        h: &BatchHeader,
        pass: &mut Pass,
        drop_tombstones_below: i64,
    ) -> Result<Filtered, LogError> {
        if h.is_control() {
            // A marker: kept while a batch of its transaction was met in this walk, or while
            // it has not been clean for delete.retention.ms.
            let data_left = pass.txn_seen.remove(&h.producer_id);
            if pass.aborted.is_none()
                || data_left
                || h.records_count == 0
                || h.last_offset() >= drop_tombstones_below
            {
                return Ok(Filtered::Unchanged);
            }
            return Ok(Filtered::Dropped(h.records_count as u64));
        }
        if h.is_transactional() {
            pass.txn_seen.insert(h.producer_id);
            let Some(aborted) = &pass.aborted else {
                return Ok(Filtered::Unchanged);
            };
            if is_aborted(aborted, h.producer_id, h.base_offset) {
                let dropped = h.records_count.max(0) as u64;
                if self.is_producers_last_batch(h) {
                    if h.records_count == 0 {
                        return Ok(Filtered::Unchanged);
                    }
                    return Ok(Filtered::Rewritten(
                        encode_cleaned(h, &[], 0, h.max_timestamp),
                        dropped,
                    ));
                }
                return Ok(Filtered::Dropped(dropped));
            }
        }
        if h.records_count == 0 {
            return Ok(Filtered::Unchanged);
        }
        let raw = records::decompressed_records(bytes, h)?;
        // Kept records are copied into `body` as they are found: memory is bounded by the
        // decompressed batch, not by its record count.
        let mut body = Vec::new();
        let (mut kept, mut dropped) = (0i32, 0u64);
        let mut max_kept_ms = i64::MIN;
        records::for_each_stored_record(&raw, h, |r| {
            let offset = h.base_offset + r.offset_delta as i64;
            let retain = match &r.key {
                // Kafka's cleaner drops keyless records: no key, no "latest version" to keep.
                None => false,
                Some(k) => {
                    let superseded = pass
                        .map
                        .get(&key_hash(&raw[k.clone()]))
                        .is_some_and(|&latest| latest > offset);
                    let expired_tombstone = r.tombstone && offset < drop_tombstones_below;
                    !superseded && !expired_tombstone
                }
            };
            if retain {
                body.extend_from_slice(&raw[r.encoded.clone()]);
                kept += 1;
                max_kept_ms = max_kept_ms.max(r.timestamp);
            } else {
                dropped += 1;
            }
            Ok(())
        })?;
        if dropped == 0 {
            return Ok(Filtered::Unchanged);
        }
        if kept == 0 && !self.is_producers_last_batch(h) {
            return Ok(Filtered::Dropped(dropped));
        }
        let max_timestamp = match h.timestamp_type() {
            TimestampType::LogAppendTime => h.max_timestamp,
            TimestampType::CreateTime if kept > 0 => max_kept_ms,
            TimestampType::CreateTime => h.max_timestamp,
        };
        Ok(Filtered::Rewritten(
            encode_cleaned(h, &body, kept, max_timestamp),
            dropped,
        ))
    }

    /// An idempotent producer's newest batch is kept (even empty) so its sequence survives
    /// recovery from the log, as Kafka's cleaner does.
    fn is_producers_last_batch(&self, h: &BatchHeader) -> bool {
        if !h.has_producer_id() {
            return false;
        }
        let w = self.writer.lock().expect("writer lock");
        w.producers
            .last_offset(h.producer_id)
            .is_none_or(|last| last <= h.last_offset())
    }

    /// Steps 2-5 of the swap (see the module doc).
    fn swap_in(
        &self,
        old: &Arc<Segment>,
        cleaned: &Path,
        crash_after: Option<u8>,
    ) -> Result<(), LogError> {
        let _files = self.segment_files.lock().expect("segment files lock");
        let still_there = self
            .segments
            .read()
            .expect("segments lock")
            .iter()
            .any(|s| Arc::ptr_eq(s, old));
        if !still_there {
            // Retention deleted it meanwhile.
            fs::remove_file(cleaned).map_err(io_err(format!("removing {}", cleaned.display())))?;
            return Ok(());
        }
        let crash = |step: u8| -> Result<(), LogError> {
            if crash_after == Some(step) {
                return Err(LogError::storage(
                    format!("simulated crash after swap step {step}"),
                    std::io::Error::other("test"),
                ));
            }
            Ok(())
        };
        crash(1)?;
        let base = old.base_offset;
        let swap = suffixed(&self.dir, base, SWAP_SUFFIX);
        fs::rename(cleaned, &swap).map_err(io_err(format!("renaming {}", cleaned.display())))?;
        sync_dir(&self.dir)?;
        crash(2)?;
        let (log, index, time) = Segment::paths(&self.dir, base);
        for p in [index, time] {
            match fs::remove_file(&p) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(LogError::storage(format!("removing {}", p.display()), e)),
            }
        }
        crash(3)?;
        fs::rename(&swap, &log).map_err(io_err(format!("renaming {}", swap.display())))?;
        sync_dir(&self.dir)?;
        crash(4)?;
        let config = self.config();
        let (seg, truncated) = Segment::open(
            &self.dir,
            base,
            false,
            config.index_interval_bytes,
            old.rolling_base_ms.load(Ordering::Relaxed),
            true,
        )?;
        assert!(
            !truncated,
            "a cleaned segment we just fsynced must read back whole"
        );
        let new = Arc::new(seg);
        new.sync_indexes()?;
        let mut segs = self.segments.write().expect("segments lock");
        let at = segs
            .iter()
            .position(|s| Arc::ptr_eq(s, old))
            .expect("segment files lock keeps the segment in the list");
        self.size_bytes
            .fetch_sub(old.size_bytes(), Ordering::Relaxed);
        self.size_bytes
            .fetch_add(new.size_bytes(), Ordering::Relaxed);
        segs[at] = new;
        drop(segs);
        self.recompute_max_timestamp();
        Ok(())
    }
}

/// Whether `producer_id`'s batch at `offset` belongs to one of its aborted transactions
/// (first offset <= offset <= marker: a producer's transactions never overlap).
fn is_aborted(aborted: &AbortedByProducer, producer_id: i64, offset: i64) -> bool {
    aborted.get(&producer_id).is_some_and(|txns| {
        txns.iter()
            .any(|&(first, last)| first <= offset && offset <= last)
    })
}

enum Filtered {
    Unchanged,
    Rewritten(Vec<u8>, u64),
    Dropped(u64),
}

/// Re-encode a batch around `body` (`kept` of its records, in order, as encoded), uncompressed,
/// with every header field that gives offsets and sequences their meaning unchanged.
fn encode_cleaned(h: &BatchHeader, body: &[u8], kept: i32, max_timestamp: i64) -> Vec<u8> {
    let mut b = Vec::with_capacity(BATCH_HEADER_BYTES + body.len());
    let attributes = h.attributes & !0x07 | Compression::None.id();
    b.extend_from_slice(&h.base_offset.to_be_bytes());
    b.extend_from_slice(&((BATCH_HEADER_BYTES - 12 + body.len()) as i32).to_be_bytes());
    b.extend_from_slice(&h.partition_leader_epoch.to_be_bytes());
    b.push(2);
    b.extend_from_slice(&0u32.to_be_bytes());
    b.extend_from_slice(&attributes.to_be_bytes());
    b.extend_from_slice(&h.last_offset_delta.to_be_bytes());
    b.extend_from_slice(&h.base_timestamp.to_be_bytes());
    b.extend_from_slice(&max_timestamp.to_be_bytes());
    b.extend_from_slice(&h.producer_id.to_be_bytes());
    b.extend_from_slice(&h.producer_epoch.to_be_bytes());
    b.extend_from_slice(&h.base_sequence.to_be_bytes());
    b.extend_from_slice(&kept.to_be_bytes());
    b.extend_from_slice(body);
    let crc = crc32c::crc32c(&b[ATTRIBUTES_AT..]);
    b[CRC_AT..CRC_AT + 4].copy_from_slice(&crc.to_be_bytes());
    debug_assert!(batch::check_crc(&b, &BatchHeader::parse(&b).expect("header")).is_ok());
    b
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testkit::{BatchBuilder, Rec};

    fn rec(key: &str) -> Rec {
        Rec {
            key: Some(key.as_bytes().to_vec()),
            value: Some(b"v".to_vec()),
            headers: vec![],
        }
    }

    fn pass_superseding(keys: &[&str]) -> Pass {
        Pass {
            map: keys
                .iter()
                .map(|k| (key_hash(k.as_bytes()), 1000))
                .collect(),
            aborted: Some(HashMap::new()),
            txn_seen: HashSet::new(),
            map_end: 1001,
            map_full: false,
            next_base: 0,
        }
    }

    #[test]
    fn committed_transactional_data_is_filtered_and_markers_wait_for_their_data_and_horizon() {
        let dir = tempfile::tempdir().unwrap();
        let log = PartitionLog::open(dir.path(), [1; 16], crate::LogConfig::default(), 0).unwrap();
        // Every key is superseded at offset 1000.
        let mut pass = pass_superseding(&["a", "b"]);
        let plain = BatchBuilder::new(0)
            .custom_records(vec![rec("a"), rec("b")])
            .build();
        let h = BatchHeader::parse(&plain).unwrap();
        assert!(matches!(
            log.filter_batch(&plain, &h, &mut pass, i64::MIN).unwrap(),
            Filtered::Dropped(2)
        ));
        let with_bits = |bits| {
            let b = BatchBuilder::new(0)
                .custom_records(vec![rec("a"), rec("b")])
                .producer(9, 0, 0)
                .attributes_extra(bits)
                .build();
            let h = BatchHeader::parse(&b).unwrap();
            (b, h)
        };
        // A committed transactional batch is cleaned like any other (its producer's newest
        // batch stays, empty).
        let (b, h) = with_bits(0x10);
        assert!(matches!(
            log.filter_batch(&b, &h, &mut pass, i64::MAX).unwrap(),
            Filtered::Rewritten(_, 2)
        ));
        // Its marker stays: this walk met the transaction's data.
        let (m, mh) = with_bits(0x30);
        assert!(matches!(
            log.filter_batch(&m, &mh, &mut pass, i64::MAX).unwrap(),
            Filtered::Unchanged
        ));
        // A marker whose data is gone: kept until its offset has been clean long enough.
        assert!(matches!(
            log.filter_batch(&m, &mh, &mut pass, 0).unwrap(),
            Filtered::Unchanged
        ));
        assert!(matches!(
            log.filter_batch(&m, &mh, &mut pass, i64::MAX).unwrap(),
            Filtered::Dropped(2)
        ));
        // Too many aborts to look up: transactional data and markers stay whole.
        pass.aborted = None;
        for bits in [0x10, 0x30] {
            let (b, h) = with_bits(bits);
            assert!(
                matches!(
                    log.filter_batch(&b, &h, &mut pass, i64::MAX).unwrap(),
                    Filtered::Unchanged
                ),
                "attributes {bits:#x}"
            );
        }
    }

    #[test]
    fn a_partly_kept_compressed_batch_is_rewritten_uncompressed_with_its_offset_range() {
        let dir = tempfile::tempdir().unwrap();
        let log = PartitionLog::open(dir.path(), [1; 16], crate::LogConfig::default(), 0).unwrap();
        let mut pass = pass_superseding(&["a"]);
        let mut b = BatchBuilder::new(50)
            .compression(Compression::Zstd)
            .custom_records(vec![rec("a"), rec("b"), rec("a"), rec("c")])
            .producer(4, 2, 10)
            .build();
        batch::set_offset_and_epoch(&mut b, 500, 3);
        let h = BatchHeader::parse(&b).unwrap();
        let Filtered::Rewritten(out, dropped) =
            log.filter_batch(&b, &h, &mut pass, i64::MIN).unwrap()
        else {
            panic!("expected a rewrite");
        };
        assert_eq!(dropped, 2);
        let n = BatchHeader::parse(&out).unwrap();
        batch::check_crc(&out, &n).unwrap();
        batch::check_counts_cleaned(&n, out.len()).unwrap();
        assert_eq!(n.compression(), Compression::None);
        assert_eq!(
            (
                n.base_offset,
                n.last_offset(),
                n.partition_leader_epoch,
                n.records_count
            ),
            (500, 503, 3, 2)
        );
        assert_eq!(
            (
                n.producer_id,
                n.producer_epoch,
                n.base_sequence,
                n.last_sequence()
            ),
            (4, 2, 10, 13)
        );
        let raw = records::decompressed_records(&out, &n).unwrap();
        let kept: Vec<(i32, Vec<u8>, i64)> = records::stored_records(&raw, &n)
            .unwrap()
            .into_iter()
            .map(|r| (r.offset_delta, raw[r.key.unwrap()].to_vec(), r.timestamp))
            .collect();
        assert_eq!(kept, vec![(1, b"b".to_vec(), 51), (3, b"c".to_vec(), 53)]);
        assert_eq!(n.max_timestamp, 53);
    }
}

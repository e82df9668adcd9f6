//! What a follower replica does to its log: append the leader's batches exactly as the leader
//! stored them, and cut the log back when it diverged from the leader's (truncation).
//!
//! Owns: [`PartitionLog::append_as_follower`], [`PartitionLog::truncate_to`] and
//! [`PartitionLog::truncate_fully_and_start_at`], and the order of their file operations, which
//! is what makes them crash-safe.
//!
//! Must never: change a byte of a leader's batch (offsets, leader epochs and timestamps stay as
//! the leader stamped them, so replicas agree byte for byte); write anything from an input that
//! holds an invalid or misplaced batch; or leave, after a crash at any step, a log that is not
//! a prefix of the log before the operation (truncation) or of the log after it (append).
//!
//! Truncation, step by step (a crash after any step recovers to a consistent log ending
//! somewhere in [new end, old end], whose leader-epoch cache and producer state are rebuilt
//! from it): (1) producer snapshots above the cut are removed (they describe batches about to
//! go; recovery rebuilds from an older one); (2) the new log end, high watermark and recovery
//! point are published and the recovery point made durable, so no later append is trusted
//! without a check; (3) whole segments above the cut are renamed to `.deleted`, newest first, so
//! what remains is always a prefix; (4) the segment holding the cut is cut at a batch boundary,
//! fsynced and reopened (its indexes rebuilt); (5) the `.deleted` files are removed; (6) the
//! leader-epoch cache is trimmed from the end (opening trims entries past the log end too), the
//! producer state rebuilt from the newest snapshot at or below the cut plus a replay, and the
//! cleaner checkpoint lowered.
//!
//! Where this differs from Kafka: a cut inside a batch removes the whole batch (the new log end
//! is that batch's base offset; Kafka sets the log end to the requested offset). Truncation
//! offsets are batch boundaries in practice (epoch starts, log ends).

use std::fs;
use std::sync::atomic::Ordering;
use std::sync::{Arc, MutexGuard};

use crate::batch::{self, BatchHeader, HEADER_BYTES_UP_TO_MAGIC};
use crate::cleaner::CleanerState;
use crate::control::{self, EndTxnMarker};
use crate::limits::{BATCH_BYTES_MAX, BATCH_HEADER_BYTES};
use crate::partition::{io_err, offset_from_name, sync_dir, write_file_atomically, Writer};
use crate::partition::{RECOVERY_POINT_FILE, SNAPSHOT_SUFFIX};
use crate::producer_state::{ProducerStates, TxnOffsets};
use crate::segment::{max_timestamp_offset, Segment};
use crate::{FollowerAppend, LogError, PartitionLog};

/// One batch of a follower's input, checked.
struct Checked<'a> {
    header: BatchHeader,
    bytes: &'a [u8],
    /// Starts after the previous batch's end (the leader's cleaner removed records there) or
    /// holds fewer records than offsets.
    gapped: bool,
    /// A control batch's transaction marker.
    marker: Option<EndTxnMarker>,
}

/// Split a Fetch response's records into whole batches and check each: structure, CRC, record
/// counts, offsets increasing from `log_end`. A trailing partial batch (a fetch cut by its byte
/// limit) is ignored; anything else wrong fails the whole input. `empty`: the log holds nothing
/// (log start = log end), so a first batch holding `log_end` may start before it (a leader's
/// log start inside a batch, after DeleteRecords).
fn check_batches(records: &[u8], log_end: i64, empty: bool) -> Result<Vec<Checked<'_>>, LogError> {
    let mut out = Vec::new();
    let mut at = 0usize;
    let mut expected = log_end;
    while records.len() - at >= BATCH_HEADER_BYTES {
        let rest = &records[at..];
        let header = BatchHeader::parse(rest)?;
        if header.base_offset < 0 || header.last_offset() == i64::MAX {
            return Err(LogError::CorruptMessage(format!(
                "batch offsets {}..{} out of range",
                header.base_offset,
                header.last_offset()
            )));
        }
        let total = header.total_bytes();
        if total as u64 > BATCH_BYTES_MAX {
            return Err(LogError::CorruptMessage(format!(
                "batch at offset {} declares {total} bytes",
                header.base_offset
            )));
        }
        if total > rest.len() {
            break;
        }
        let bytes = &rest[..total];
        batch::check_crc(bytes, &header)?;
        let dense = header.records_count as i64 == header.last_offset_delta as i64 + 1;
        if dense {
            batch::check_counts(&header, total)?;
        } else {
            batch::check_counts_cleaned(&header, total)?;
        }
        let straddles = empty && out.is_empty() && header.last_offset() >= log_end;
        if header.base_offset < expected && !straddles {
            return Err(LogError::InvalidRecord(format!(
                "batch at offset {} does not follow the log end {expected}",
                header.base_offset
            )));
        }
        let gapped = !dense || header.base_offset > expected;
        expected = header.last_offset() + 1;
        // A marker the producer state cannot read would leave its transaction open forever.
        let marker = if header.is_control() && header.has_producer_id() {
            control::decode_marker(bytes, &header)?
        } else {
            None
        };
        out.push(Checked {
            header,
            bytes,
            gapped,
            marker,
        });
        at += total;
    }
    // Fewer bytes than a header left: a partial batch, unless they cannot even start one.
    let rest = &records[at..];
    if rest.len() >= HEADER_BYTES_UP_TO_MAGIC && rest[batch::MAGIC_AT] as i8 != 2 {
        return Err(LogError::CorruptMessage(format!(
            "{} bytes that do not start a v2 batch",
            rest.len()
        )));
    }
    Ok(out)
}

impl PartitionLog {
    /// Append the records of a Fetch response from the leader (0..n v2 batches; a trailing
    /// partial batch is ignored). Each batch keeps the offsets, leader epoch and timestamps
    /// the leader stamped: its CRC is checked and its base offset must be at or after the log
    /// end (after it only where the leader's cleaner left a gap). The epochs extend the
    /// leader-epoch cache, the producer state records every batch (no duplicate refusal: the
    /// leader decided), indexes and the max timestamp are updated and the flush policy is the
    /// one of [`PartitionLog::append`]. A bad batch anywhere fails the call
    /// (CORRUPT_MESSAGE / INVALID_RECORD) with nothing written. Empty input: nothing to do.
    ///
    /// One exception to "at or after the log end", as Kafka: an empty log (log start = log end,
    /// e.g. just after `truncate_fully_and_start_at` at a leader's log start that DeleteRecords
    /// put inside a batch) takes a first batch that holds its log end whole; its log start
    /// stays where it was, inside that batch.
    ///
    /// A segment rolled here counts its age from the last time the broker gave this log
    /// (open, append, tick), since this crate never reads the clock.
    pub fn append_as_follower(&self, records: &[u8]) -> Result<FollowerAppend, LogError> {
        let config = self.config();
        let now_ms = self.clock_ms.load(Ordering::Relaxed);
        let log_end = self.log_end_offset();
        let log_start = self.log_start_offset();
        let checked = check_batches(records, log_end, log_start == log_end)?;
        if checked.is_empty() {
            return Ok(FollowerAppend {
                first_offset: log_end,
                last_offset: log_end - 1,
                log_end_offset: log_end,
                batches: 0,
            });
        }
        let last_offset = checked.last().expect("one batch").header.last_offset();
        // Lock order: cleaner, then writer. Only an input with gaps needs the cleaner's state.
        let cleaner = checked
            .iter()
            .any(|c| c.gapped)
            .then(|| self.cleaner.lock().expect("cleaner lock"));
        let mut w = self.writer.lock().expect("writer lock");
        if w.offline || w.closed {
            return Err(LogError::Offline);
        }
        if self.log_end_offset() != log_end {
            // Another caller appended or truncated meanwhile (the broker runs one fetcher per
            // partition, so this is a caller's bug, refused rather than written).
            return Err(LogError::InvalidRecord(format!(
                "the log end moved from {log_end} to {} during a follower append",
                self.log_end_offset()
            )));
        }
        if self.log_start_offset() != log_start {
            return Err(LogError::InvalidRecord(format!(
                "the log start moved from {log_start} during a follower append"
            )));
        }
        if let Some(mut st) = cleaner {
            st.allow_gaps_below(&self.dir, last_offset + 1)?;
        }
        let first_base = checked[0].header.base_offset;
        if first_base < log_end {
            // An empty log and a first batch holding its start (Kafka's
            // UnexpectedAppendOffsetException case): restart the log at the batch, write, then
            // move the log start back to where it was, inside the batch.
            self.truncate_fully_locked(&mut w, first_base)?;
        }
        // The cache learns the epochs before their batches are written (as `append`).
        let new_epoch = {
            let cache = self.epochs.lock().expect("epochs lock");
            checked
                .iter()
                .any(|b| cache.would_assign(b.header.partition_leader_epoch))
        };
        if new_epoch {
            self.update_epochs(|c| {
                let mut changed = false;
                for b in &checked {
                    changed |= c.assign(b.header.partition_leader_epoch, b.header.base_offset);
                }
                changed
            })?;
        }
        let mut unflushed = 0;
        for b in &checked {
            unflushed = self.write_follower_batch(&mut w, &config, b, now_ms)?;
        }
        if first_base < log_start {
            self.write_log_start_offset(log_start)?;
            self.publish_end(self.log_end_offset(), Some(log_start));
            self.update_epochs(|c| c.truncate_from_start(log_start))?;
        }
        drop(w);
        let interval = config.flush_interval_messages;
        if interval > 1 && unflushed >= interval {
            self.flush()?;
        }
        Ok(FollowerAppend {
            first_offset: checked[0].header.base_offset,
            last_offset,
            log_end_offset: last_offset + 1,
            batches: checked.len(),
        })
    }

    /// One checked batch at the log end; returns the unflushed message count after it.
    fn write_follower_batch(
        &self,
        w: &mut Writer,
        config: &crate::LogConfig,
        b: &Checked<'_>,
        now_ms: i64,
    ) -> Result<u64, LogError> {
        let h = &b.header;
        let batch_bytes = b.bytes.len() as u64;
        let log_end = self.log_end_offset();
        let active = if h.last_offset() - log_end > i32::MAX as i64 {
            // A gap wider than a segment's relative offsets: start a segment at the batch.
            let active = self.active_segment();
            self.roll_at(w, &active, h.base_offset, now_ms)?
        } else {
            self.maybe_roll(w, config, batch_bytes, h.last_offset(), now_ms)?
        };
        // The exact record is looked up (decompressing) only when it is the log's new maximum.
        let log_max_ms = self.max_timestamp.lock().expect("ts lock").0;
        let max_ts_offset = if h.max_timestamp > log_max_ms {
            max_timestamp_offset(b.bytes, h)
        } else {
            h.base_offset
        };
        if let Err((e, repaired)) = active.append(
            &b.bytes[..BATCH_HEADER_BYTES],
            &b.bytes[BATCH_HEADER_BYTES..],
            h,
            max_ts_offset,
            config.index_interval_bytes,
            now_ms,
            !b.gapped,
        ) {
            if !repaired {
                w.offline = true;
            }
            tracing::error!(dir = %self.dir.display(), error = %e, repaired, "follower append failed");
            return Err(e);
        }
        if let Some(marker) = b.marker {
            // What the leader wrote stands: no epoch checks (Kafka's REPLICATION origin).
            let ended = w.producers.record_marker(
                h.producer_id,
                h.producer_epoch,
                marker,
                h.base_offset,
                h.max_timestamp,
            );
            self.note_marker(w, &active, ended)?;
        } else if !h.is_control() {
            if let Some(first) =
                w.producers
                    .record(h, h.base_offset, h.last_offset(), h.max_timestamp)
            {
                self.txns
                    .lock()
                    .expect("txns lock")
                    .opened(h.producer_id, first);
            }
        }
        {
            let mut m = self.max_timestamp.lock().expect("ts lock");
            if h.max_timestamp > m.0 {
                *m = (h.max_timestamp, max_ts_offset);
            }
        }
        self.size_bytes.fetch_add(batch_bytes, Ordering::Relaxed);
        let unflushed = self
            .unflushed_messages
            .fetch_add(h.records_count.max(0) as u64, Ordering::Relaxed)
            + h.records_count.max(0) as u64;
        self.log_end_offset
            .store(h.last_offset() + 1, Ordering::Release);
        Ok(unflushed)
    }

    /// Cut the log so it ends at `offset` (a follower whose log diverged from the leader's):
    /// a no-op at or past the log end; below the log start, [`PartitionLog::truncate_fully_and_start_at`].
    /// Removes the segments after the cut, cuts the one holding it (at the start of the batch
    /// holding `offset`, so the new end may be below `offset` when it falls inside a batch),
    /// rebuilds its indexes, lowers the log end, high watermark and recovery point, trims the
    /// leader-epoch cache from the end and rebuilds the producer state (snapshot at or below
    /// the new end plus a replay). Crash-safe: see the module doc.
    pub fn truncate_to(&self, offset: i64) -> Result<(), LogError> {
        let (mut cleaner, mut w) = self.truncation_locks(offset)?;
        if offset >= self.log_end_offset() {
            return Ok(());
        }
        if offset < self.log_start_offset() {
            let result = self.truncate_fully_locked(&mut w, offset);
            drop(w);
            result?;
            return cleaner.truncate_to(&self.dir, offset);
        }
        let result = self.truncate_locked(&mut w, &cleaner, offset);
        if result.is_err() {
            // Half done: memory and files may disagree until recovery reconciles them.
            w.offline = true;
        }
        let new_end = result?;
        drop(w);
        tracing::info!(dir = %self.dir.display(), offset, log_end_offset = new_end, "truncated");
        cleaner.truncate_to(&self.dir, new_end)
    }

    fn truncate_locked(
        &self,
        w: &mut Writer,
        cleaner: &CleanerState,
        offset: i64,
    ) -> Result<i64, LogError> {
        let _files = self.segment_files.lock().expect("segment files lock");
        let segs = self.segments.read().expect("segments lock").clone();
        // The segment holding the cut: the last one starting at or before it (offset >= log
        // start >= the first segment's base).
        let keep = segs.partition_point(|s| s.base_offset <= offset);
        assert!(keep >= 1, "the log start is in the first segment");
        let holder = segs[keep - 1].clone();
        let mut cut = None;
        holder
            .walk(
                holder.index_position(offset),
                holder.size_bytes(),
                |pos, bytes| {
                    let h = BatchHeader::parse(bytes)?;
                    if h.last_offset() >= offset {
                        cut = Some(pos);
                        return Ok(false);
                    }
                    Ok(true)
                },
            )
            .map_err(|b| b.error)?;
        let cut = cut.unwrap_or(holder.size_bytes());

        // (1) Snapshots above the cut describe batches about to go.
        self.remove_snapshots_above(offset)?;
        // (2) Publish the lower end (readers stop before the doomed bytes) and make the
        // recovery point durable below it before any file changes.
        self.truncations.fetch_add(1, Ordering::AcqRel);
        let provisional_end = offset.min(holder.next_offset());
        holder.retire_from(cut, provisional_end);
        for seg in &segs[keep..] {
            seg.retire_from(0, seg.base_offset);
        }
        self.publish_end(provisional_end, None);
        let flushed = self.lower_flushed_offset(offset);
        self.write_recovery_point_locked(w, flushed)?;
        // (3) Whole segments after the cut, newest first: what is left is always a prefix.
        for seg in segs[keep..].iter().rev() {
            Segment::rename_to_deleted(&self.dir, seg.base_offset)
                .map_err(io_err("renaming a truncated segment to .deleted"))?;
        }
        sync_dir(&self.dir)?;
        // (4) Cut the holder and reopen it to rebuild its indexes and find its exact end. Its
        // transaction index is cut first: it must never name a marker the log lacks (a crash
        // between the two leaves the holder past the recovery point, so its index is rebuilt).
        holder.truncate_txn_index(offset)?;
        holder.cut_file(cut)?;
        let cleaned = cleaner.may_have_gaps(holder.base_offset);
        let (reopened, truncated) = Segment::open(
            &self.dir,
            holder.base_offset,
            false,
            self.config().index_interval_bytes,
            self.clock_ms.load(Ordering::Relaxed),
            cleaned,
        )?;
        assert!(
            !truncated,
            "a segment cut at a batch boundary reads back whole"
        );
        let reopened = Arc::new(reopened);
        let new_end = reopened.next_offset();
        {
            let mut list = self.segments.write().expect("segments lock");
            list.truncate(keep);
            list[keep - 1] = reopened;
        }
        self.publish_end(new_end, None);
        self.size_bytes.store(
            self.segments
                .read()
                .expect("segments lock")
                .iter()
                .map(|s| s.size_bytes())
                .sum(),
            Ordering::Relaxed,
        );
        // (5) The files of the removed segments.
        for seg in &segs[keep..] {
            crate::cleaner::remove_deleted_files(&self.dir, seg.base_offset)
                .map_err(io_err("removing .deleted segment files"))?;
        }
        self.recompute_max_timestamp();
        // (6) Epoch cache, producer state.
        self.update_epochs(|c| c.truncate_from_end(new_end))?;
        let rebuild: Vec<i64> = self
            .segments
            .read()
            .expect("segments lock")
            .iter()
            .filter(|s| s.txn_index_damaged.is_some())
            .map(|s| s.base_offset)
            .collect();
        let (producers, txns) = self.load_producer_state(&self.snapshot_offsets()?, &rebuild)?;
        w.producers = producers;
        *self.txns.lock().expect("txns lock") = txns;
        Ok(new_end)
    }

    /// Empty the log and start it at `offset` (a follower whose log end is below the leader's
    /// log start, or that must drop everything): log start = log end = high watermark =
    /// `offset`, no producer state, an empty leader-epoch cache. Crash-safe: a crash leaves the
    /// old log, an empty log at the old log start, or the new one.
    pub fn truncate_fully_and_start_at(&self, offset: i64) -> Result<(), LogError> {
        let (mut cleaner, mut w) = self.truncation_locks(offset)?;
        let result = self.truncate_fully_locked(&mut w, offset);
        drop(w);
        result?;
        cleaner.truncate_to(&self.dir, offset)
    }

    fn truncate_fully_locked(&self, w: &mut Writer, offset: i64) -> Result<(), LogError> {
        let result = (|| {
            let _files = self.segment_files.lock().expect("segment files lock");
            let segs = self.segments.read().expect("segments lock").clone();
            self.remove_snapshots_above(-1)?;
            self.truncations.fetch_add(1, Ordering::AcqRel);
            for seg in segs.iter().rev() {
                seg.retire_from(0, seg.base_offset);
                Segment::rename_to_deleted(&self.dir, seg.base_offset)
                    .map_err(io_err("renaming a segment to .deleted"))?;
            }
            sync_dir(&self.dir)?;
            self.write_log_start_offset(offset)?;
            let fresh = Arc::new(Segment::create(
                &self.dir,
                offset,
                self.clock_ms.load(Ordering::Relaxed),
            )?);
            sync_dir(&self.dir)?;
            *self.segments.write().expect("segments lock") = vec![fresh];
            self.publish_end(offset, Some(offset));
            self.lower_flushed_offset(offset);
            self.flush_state.lock().expect("flush lock").flushed_offset = offset;
            self.write_recovery_point_locked(w, offset)?;
            for seg in &segs {
                crate::cleaner::remove_deleted_files(&self.dir, seg.base_offset)
                    .map_err(io_err("removing .deleted segment files"))?;
            }
            self.size_bytes.store(0, Ordering::Relaxed);
            *self.max_timestamp.lock().expect("ts lock") = (-1, -1);
            self.update_epochs(|c| c.clear())?;
            w.producers = ProducerStates::default();
            *self.txns.lock().expect("txns lock") = TxnOffsets::default();
            Ok(())
        })();
        match &result {
            Ok(()) => {
                tracing::info!(dir = %self.dir.display(), offset, "truncated fully");
            }
            Err(e) => {
                tracing::error!(dir = %self.dir.display(), offset, error = %e, "full truncation failed; log offline until reopened");
                w.offline = true;
            }
        }
        result
    }

    /// The locks a truncation holds, in their order: cleaner, writer (then segment files).
    /// Holding the cleaner keeps a pass planned over the records about to go from rewriting
    /// anything with them.
    fn truncation_locks(
        &self,
        offset: i64,
    ) -> Result<(MutexGuard<'_, CleanerState>, MutexGuard<'_, Writer>), LogError> {
        if offset < 0 {
            return Err(LogError::OffsetOutOfRange {
                offset,
                log_start_offset: self.log_start_offset(),
                log_end_offset: self.log_end_offset(),
            });
        }
        let cleaner = self.cleaner.lock().expect("cleaner lock");
        let w = self.writer.lock().expect("writer lock");
        if w.offline || w.closed {
            return Err(LogError::Offline);
        }
        Ok((cleaner, w))
    }

    /// Store a new log end (and log start), lowering the high watermark to stay inside.
    fn publish_end(&self, log_end: i64, log_start: Option<i64>) {
        let _update = self
            .high_watermark_update
            .lock()
            .expect("high watermark lock");
        if let Some(start) = log_start {
            self.log_start_offset.store(start, Ordering::Release);
        }
        self.log_end_offset.store(log_end, Ordering::Release);
        let start = self.log_start_offset();
        let hw = self.high_watermark().min(log_end).max(start);
        self.high_watermark.store(hw, Ordering::Release);
    }

    /// Waits for a flush under way (it may cover the offsets being cut), then lowers the
    /// flushed offset to at most `log_end`; returns it.
    fn lower_flushed_offset(&self, log_end: i64) -> i64 {
        let mut st = self.flush_state.lock().expect("flush lock");
        while st.in_progress {
            st = self.flush_done.wait(st).expect("flush lock");
        }
        st.flushed_offset = st.flushed_offset.min(log_end);
        st.flushed_offset
    }

    fn write_recovery_point_locked(&self, w: &mut Writer, offset: i64) -> Result<(), LogError> {
        write_file_atomically(
            &self.dir.join(RECOVERY_POINT_FILE),
            format!("0\n{offset}\n").as_bytes(),
        )?;
        sync_dir(&self.dir)?;
        w.checkpointed_recovery_point = offset;
        Ok(())
    }

    pub(crate) fn snapshot_offsets(&self) -> Result<Vec<i64>, LogError> {
        let mut offs: Vec<i64> = fs::read_dir(&self.dir)
            .map_err(io_err("listing snapshots"))?
            .filter_map(|e| e.ok())
            .filter_map(|e| offset_from_name(&e.file_name().to_string_lossy(), SNAPSHOT_SUFFIX))
            .collect();
        offs.sort_unstable();
        Ok(offs)
    }

    /// Remove producer snapshots taken above `offset` (they cover offsets at or past it).
    fn remove_snapshots_above(&self, offset: i64) -> Result<(), LogError> {
        for off in self.snapshot_offsets()? {
            if off > offset {
                let path = self.snapshot_path(off);
                match fs::remove_file(&path) {
                    Ok(()) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => {
                        return Err(LogError::storage(format!("removing {}", path.display()), e))
                    }
                }
            }
        }
        Ok(())
    }
}

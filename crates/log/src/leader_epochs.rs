//! Leader epochs read back from the log's batch headers: where the epochs stamped on the
//! batches pass a given epoch ([`PartitionLog::epoch_boundary`]), the question Kafka's
//! leader-epoch cache (`LeaderEpochFileCache`) answers for OffsetForLeaderEpoch.
//!
//! Owns: that search and its exactness argument. Must never: write anything, or hold a lock
//! across a read (it only calls [`PartitionLog::read`]).
//!
//! Kafka's cache maps each epoch to the offset where it starts: an epoch is added when the
//! first batch stamped with it is appended, and entries below the log start are trimmed
//! (`truncateFromStart` keeps the entry holding the log start, moved to it). There is no such
//! file here yet, but while the epochs stamped on a log never decrease along its offsets (one
//! replica, which stamps every append with its current leader epoch, and epochs only grow),
//! the cache is a function of the batch headers: an epoch starts at the base offset of the
//! first batch stamped with it. The boundary is then found by binary search over offsets with
//! the log's single-batch reads, O(log n) batch reads, without an index. Replication will
//! truncate and copy logs from other replicas; it brings Kafka's persisted cache and replaces
//! this derivation.

use crate::batch::BatchHeader;
use crate::{LogError, PartitionLog};

/// Where the leader epochs stamped on a log pass an epoch E (see
/// [`PartitionLog::epoch_boundary`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EpochBoundary {
    /// The largest epoch <= E stamped on a batch that holds an offset at or after the log
    /// start (Kafka's `floorEntry`); None when there is none.
    pub floor_epoch: Option<i32>,
    /// The start of the first batch stamped with an epoch above E, never below the log start
    /// (Kafka's `higherEntry` start offset); when no batch is, the log end offset the search
    /// covered, where the next batch, stamped above E or not, will start.
    pub next_epoch_start: i64,
}

/// Searches that restart because retention or DeleteRecords moved the log start under them
/// before one is given up (each restart needs another concurrent deletion).
const SEARCH_ATTEMPTS_MAX: usize = 4;

impl PartitionLog {
    /// Where the leader epochs stamped on this log's batches pass `epoch`: the largest epoch at
    /// or below it and the start of the first epoch above it, over the batches from the log
    /// start to the log end as of the call. A batch stamped with a negative epoch (Kafka's
    /// NO_PARTITION_LEADER_EPOCH) has no epoch: it is neither above `epoch` nor its floor.
    ///
    /// Exact while the stamps never decrease along the log (see the module doc); reads
    /// O(log(log end - log start)) batches. Errors are the reads' (storage errors; a log start
    /// that keeps moving during the search).
    pub fn epoch_boundary(&self, epoch: i32) -> Result<EpochBoundary, LogError> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            match self.search_epoch_boundary(epoch) {
                Err(LogError::OffsetOutOfRange { .. }) if attempt < SEARCH_ATTEMPTS_MAX => {}
                other => return other,
            }
        }
    }

    fn search_epoch_boundary(&self, epoch: i32) -> Result<EpochBoundary, LogError> {
        let above =
            |h: &BatchHeader| h.partition_leader_epoch >= 0 && h.partition_leader_epoch > epoch;
        let start = self.log_start_offset();
        let end = self.log_end_offset();
        // Invariants: every batch holding an offset in [start, lo) is not above `epoch`; no
        // batch starts in [hi, first_above's base) (reads at or after an offset return the batch
        // holding it or the next one, so a compaction gap is skipped); `floor` is the largest
        // epoch of the batches read that are not above it.
        let (mut lo, mut hi) = (start, end);
        let mut first_above: Option<BatchHeader> = None;
        let mut floor: Option<i32> = None;
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            let read = self.read(mid, 1, end)?;
            if read.records.is_empty() {
                // Nothing at or after `mid` below the end: compaction emptied the tail.
                hi = mid;
                continue;
            }
            let h = BatchHeader::parse(&read.records)?;
            if above(&h) {
                // The answer is this batch unless one before `mid` is above too.
                hi = h.base_offset.clamp(lo, mid);
                first_above = Some(h);
            } else {
                if h.partition_leader_epoch >= 0 {
                    floor = floor.max(Some(h.partition_leader_epoch));
                }
                lo = h.last_offset() + 1;
            }
        }
        // The batch just before `first_above` (if it holds an offset at or after the log
        // start) set `lo` last, so its epoch is in `floor`.
        Ok(EpochBoundary {
            floor_epoch: floor,
            next_epoch_start: first_above.map_or(end, |h| h.base_offset.max(start)),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::batch::tests::Rng;
    use crate::testkit::{BatchBuilder, Rec};
    use crate::{CleanerLimits, CleanupPolicy, LogConfig};

    const NOW: i64 = 1_700_000_000_000;
    const ID: [u8; 16] = [9; 16];

    fn config() -> LogConfig {
        LogConfig {
            segment_bytes: 1024,
            index_interval_bytes: 128,
            ..LogConfig::default()
        }
    }

    /// A batch of `n` records with keys `key-{first}..`.
    fn batch(n: usize, first: usize) -> Vec<u8> {
        BatchBuilder::new(NOW)
            .custom_records(
                (first..first + n)
                    .map(|k| Rec {
                        key: Some(format!("key-{}", k % 5).into_bytes()),
                        value: Some(vec![b'v'; 40]),
                        headers: vec![],
                    })
                    .collect(),
            )
            .build()
    }

    /// Appends batches of (records, stamped epoch); returns each batch's (base, last).
    fn append(log: &PartitionLog, batches: &[(usize, i32)]) -> Vec<(i64, i64)> {
        let mut first = 0;
        batches
            .iter()
            .map(|&(n, epoch)| {
                let out = log.append(&batch(n, first), epoch, NOW).unwrap();
                first += n;
                (out.base_offset, out.last_offset)
            })
            .collect()
    }

    fn boundary(floor_epoch: Option<i32>, next_epoch_start: i64) -> EpochBoundary {
        EpochBoundary {
            floor_epoch,
            next_epoch_start,
        }
    }

    /// The answer by a linear scan over every batch from the log start: what the search must
    /// find.
    fn scan(log: &PartitionLog, epoch: i32) -> EpochBoundary {
        let start = log.log_start_offset();
        let mut next = start;
        let mut floor = None;
        while next < log.log_end_offset() {
            let r = log.read(next, 1, i64::MAX).unwrap();
            if r.records.is_empty() {
                break;
            }
            let h = BatchHeader::parse(&r.records).unwrap();
            let stamp = h.partition_leader_epoch;
            if stamp >= 0 && stamp > epoch {
                return boundary(floor, h.base_offset.max(start));
            }
            if stamp >= 0 {
                floor = Some(stamp);
            }
            next = h.last_offset() + 1;
        }
        boundary(floor, log.log_end_offset())
    }

    #[test]
    fn finds_the_floor_epoch_and_the_start_of_the_next() {
        let dir = tempfile::tempdir().unwrap();
        let log = PartitionLog::open(dir.path(), ID, config(), NOW).unwrap();
        assert_eq!(log.epoch_boundary(0).unwrap(), boundary(None, 0));
        // Epoch 1 at 0-5, 3 at 6-13, 7 at 14-16 (over several segments).
        let at = append(
            &log,
            &[(2, 1), (4, 1), (3, 3), (1, 3), (4, 3), (2, 7), (1, 7)],
        );
        assert_eq!(at[2], (6, 8));
        assert_eq!(at[5], (14, 15));
        assert!(log.segment_count() > 1);
        assert_eq!(log.epoch_boundary(0).unwrap(), boundary(None, 0));
        assert_eq!(log.epoch_boundary(1).unwrap(), boundary(Some(1), 6));
        assert_eq!(log.epoch_boundary(2).unwrap(), boundary(Some(1), 6));
        assert_eq!(log.epoch_boundary(3).unwrap(), boundary(Some(3), 14));
        assert_eq!(log.epoch_boundary(6).unwrap(), boundary(Some(3), 14));
        assert_eq!(log.epoch_boundary(7).unwrap(), boundary(Some(7), 17));
        assert_eq!(log.epoch_boundary(9).unwrap(), boundary(Some(7), 17));
        assert_eq!(log.epoch_boundary(-1).unwrap(), boundary(None, 0));
        assert_eq!(log.epoch_boundary(-9).unwrap(), boundary(None, 0));
    }

    #[test]
    fn unstamped_batches_have_no_epoch() {
        let dir = tempfile::tempdir().unwrap();
        let log = PartitionLog::open(dir.path(), ID, config(), NOW).unwrap();
        append(&log, &[(3, -1), (2, -1), (2, 4), (2, 5)]);
        assert_eq!(log.epoch_boundary(-1).unwrap(), boundary(None, 5));
        assert_eq!(log.epoch_boundary(2).unwrap(), boundary(None, 5));
        assert_eq!(log.epoch_boundary(4).unwrap(), boundary(Some(4), 7));
    }

    /// Kafka's `truncateFromStart`: epochs wholly below the log start are gone, and the epoch
    /// holding it starts there.
    #[test]
    fn the_log_start_trims_epochs_as_kafka_does() {
        let dir = tempfile::tempdir().unwrap();
        let log = PartitionLog::open(dir.path(), ID, config(), NOW).unwrap();
        // Epoch 1 at 0-3, 2 at 4-9, 5 at 10-13.
        append(&log, &[(4, 1), (6, 2), (4, 5)]);
        log.delete_records_before(6).unwrap();
        assert_eq!(log.epoch_boundary(0).unwrap(), boundary(None, 6));
        assert_eq!(log.epoch_boundary(1).unwrap(), boundary(None, 6));
        assert_eq!(log.epoch_boundary(2).unwrap(), boundary(Some(2), 10));
        log.delete_records_before(10).unwrap();
        assert_eq!(log.epoch_boundary(3).unwrap(), boundary(None, 10));
        log.delete_records_before(14).unwrap();
        assert_eq!(log.epoch_boundary(3).unwrap(), boundary(None, 14));
    }

    /// Random logs (epochs that never decrease, some unstamped batches first, several
    /// segments, DeleteRecords anywhere, compaction gaps): the search agrees with the scan for
    /// every epoch around the ones present.
    #[test]
    fn the_search_agrees_with_a_scan_of_every_batch() {
        let mut gapped = 0;
        for seed in 1..=24u64 {
            let mut rng = Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15));
            let dir = tempfile::tempdir().unwrap();
            let compact = seed.is_multiple_of(3);
            let cfg = LogConfig {
                cleanup_policy: if compact {
                    CleanupPolicy::Compact
                } else {
                    CleanupPolicy::Delete
                },
                ..config()
            };
            let log = PartitionLog::open(dir.path(), ID, cfg, NOW).unwrap();
            let mut epoch = if rng.below(2) == 0 { -1 } else { 0 };
            let mut batches = Vec::new();
            for _ in 0..5 + rng.below(40) {
                if rng.below(4) == 0 {
                    epoch += 1 + rng.below(3) as i32;
                }
                batches.push((1 + rng.below(5), epoch));
            }
            append(&log, &batches);
            if compact {
                let later = NOW + 8 * 86_400_000;
                log.tick(later).unwrap();
                loop {
                    let out = log.clean(later, &CleanerLimits::default()).unwrap();
                    gapped += usize::from(out.records_removed > 0);
                    if !out.more {
                        break;
                    }
                }
            } else if rng.below(2) == 0 {
                let to = rng.below(log.log_end_offset() as usize + 1) as i64;
                log.delete_records_before(to).unwrap();
            }
            for e in -2..=epoch + 2 {
                assert_eq!(
                    log.epoch_boundary(e).unwrap(),
                    scan(&log, e),
                    "seed {seed}, epoch {e}, batches {batches:?}, log start {}",
                    log.log_start_offset()
                );
            }
        }
        assert!(gapped > 0, "no history had compaction gaps");
    }
}

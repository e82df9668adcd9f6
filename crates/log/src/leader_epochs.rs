//! The leader-epoch cache of one partition (Kafka's `LeaderEpochFileCache`): for every leader
//! epoch that wrote to the log, the offset where it started, persisted in the partition
//! directory as `leader-epoch-checkpoint` (`0\n<n>\n<epoch> <start offset>\n`...).
//!
//! Owns: the entries, the rules that change them (assign, trim from the start, trim from the
//! end), the `endOffsetFor` answer that OffsetForLeaderEpoch and follower truncation are built
//! on, and the file format. The partition ([`crate::PartitionLog`]) decides when they change and
//! writes the file (atomically) after every change.
//!
//! Must never: hold two entries with the same epoch or with non-increasing start offsets (both
//! increase strictly along the entries), or do I/O: the partition does that.
//!
//! Why it is a file and not the batch headers: a replica's log can be truncated and refilled
//! from another replica, and an epoch can be elected without writing anything (the new leader
//! records `(epoch, log end)` before it accepts writes); neither is visible in the batches. A log
//! without the file (written before the cache existed) derives it once from its batch headers:
//! an epoch starts at the first batch stamped with it.

/// Kafka's `UNDEFINED_EPOCH`: a batch stamped with a negative epoch belongs to none.
const UNDEFINED_EPOCH: i32 = -1;

/// The cache file name (Kafka's `LeaderEpochCheckpointFile.LEADER_EPOCH_CHECKPOINT_FILENAME`).
pub(crate) const LEADER_EPOCH_FILE: &str = "leader-epoch-checkpoint";

/// Epoch -> start offset, both strictly increasing along the vector.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct LeaderEpochCache {
    entries: Vec<(i32, i64)>,
}

impl LeaderEpochCache {
    /// Kafka's `assign`: record that `epoch` starts at `start_offset`. A no-op (false) for a
    /// negative epoch or offset and for an epoch at or below the latest one (the log's epochs
    /// only grow: a replica truncates the cache before it writes an older epoch's batches).
    /// Entries starting at or after `start_offset` are replaced: an epoch elected without
    /// writing anything is superseded by the next one at the same offset.
    pub(crate) fn assign(&mut self, epoch: i32, start_offset: i64) -> bool {
        if epoch < 0 || start_offset < 0 {
            return false;
        }
        if let Some(&(latest, _)) = self.entries.last() {
            if epoch <= latest {
                if epoch < latest {
                    tracing::debug!(
                        epoch,
                        latest,
                        start_offset,
                        "older leader epoch not assigned"
                    );
                }
                return false;
            }
        }
        while self
            .entries
            .last()
            .is_some_and(|&(_, start)| start >= start_offset)
        {
            self.entries.pop();
        }
        self.entries.push((epoch, start_offset));
        true
    }

    /// True when [`LeaderEpochCache::assign`] of `epoch` would change the cache: a cheap check
    /// before the copy an update makes (appends call it for every batch).
    pub(crate) fn would_assign(&self, epoch: i32) -> bool {
        epoch >= 0 && self.latest_epoch().is_none_or(|latest| epoch > latest)
    }

    pub(crate) fn latest_epoch(&self) -> Option<i32> {
        self.entries.last().map(|e| e.0)
    }

    /// The start offset of exactly `epoch`.
    pub(crate) fn start_offset(&self, epoch: i32) -> Option<i64> {
        self.entries
            .binary_search_by_key(&epoch, |e| e.0)
            .ok()
            .map(|i| self.entries[i].1)
    }

    /// Kafka's `LeaderEpochFileCache.endOffsetFor(epoch, logEndOffset)`, with its
    /// `(UNDEFINED_EPOCH, UNDEFINED_EPOCH_OFFSET)` answer as None:
    /// - `epoch` is the latest cached epoch: `(epoch, log_end)`;
    /// - `epoch` above the latest, `UNDEFINED_EPOCH`, or an empty cache: None;
    /// - `epoch` below every cached epoch: `(epoch, start of the first cached epoch)` (the older
    ///   epochs went with their records; Kafka answers so a follower replicates from there);
    /// - otherwise `(largest cached epoch <= epoch, start of the next cached epoch)`.
    pub(crate) fn end_offset_for(&self, epoch: i32, log_end: i64) -> Option<(i32, i64)> {
        let &(latest, _) = self.entries.last()?;
        if epoch == UNDEFINED_EPOCH || epoch > latest {
            return None;
        }
        if epoch == latest {
            return Some((epoch, log_end));
        }
        // First entry above `epoch` (exists: the latest is above it).
        let higher = self.entries.partition_point(|e| e.0 <= epoch);
        let next_start = self.entries[higher].1;
        match higher.checked_sub(1) {
            None => Some((epoch, next_start)),
            Some(floor) => Some((self.entries[floor].0, next_start)),
        }
    }

    /// Kafka's `truncateFromStart`: the log now starts at `log_start`. Entries wholly below it
    /// go; the one holding it starts there. True when anything changed.
    pub(crate) fn truncate_from_start(&mut self, log_start: i64) -> bool {
        let holding = self.entries.partition_point(|e| e.1 <= log_start);
        let Some(keep) = holding.checked_sub(1) else {
            return false;
        };
        if keep == 0 && self.entries[0].1 == log_start {
            return false;
        }
        self.entries.drain(..keep);
        self.entries[0].1 = log_start;
        true
    }

    /// Kafka's `truncateFromEnd`: the log now ends at `log_end`; entries starting at or after it
    /// go. True when anything changed.
    pub(crate) fn truncate_from_end(&mut self, log_end: i64) -> bool {
        let keep = self.entries.partition_point(|e| e.1 < log_end);
        if keep == self.entries.len() {
            return false;
        }
        self.entries.truncate(keep);
        true
    }

    pub(crate) fn clear(&mut self) -> bool {
        let changed = !self.entries.is_empty();
        self.entries.clear();
        changed
    }

    #[cfg(test)]
    pub(crate) fn entries(&self) -> &[(i32, i64)] {
        &self.entries
    }

    /// The file's bytes: Kafka's checkpoint text format, version 0.
    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut out = format!("0\n{}\n", self.entries.len());
        for (epoch, start) in &self.entries {
            out.push_str(&format!("{epoch} {start}\n"));
        }
        out.into_bytes()
    }

    /// Parse a cache file; None when it is damaged in any way (the caller derives the cache
    /// from the batch headers instead).
    pub(crate) fn decode(text: &str) -> Option<LeaderEpochCache> {
        let mut lines = text.lines();
        if lines.next()?.trim() != "0" {
            return None;
        }
        let n: usize = lines.next()?.trim().parse().ok()?;
        if n > crate::limits::LEADER_EPOCH_ENTRIES_MAX {
            return None;
        }
        let mut entries: Vec<(i32, i64)> = Vec::new();
        for _ in 0..n {
            let line = lines.next()?;
            let mut parts = line.split_whitespace();
            let epoch: i32 = parts.next()?.parse().ok()?;
            let start: i64 = parts.next()?.parse().ok()?;
            if parts.next().is_some() || epoch < 0 || start < 0 {
                return None;
            }
            if entries
                .last()
                .is_some_and(|&(e, s)| e >= epoch || s >= start)
            {
                return None;
            }
            entries.push((epoch, start));
        }
        if lines.any(|l| !l.trim().is_empty()) {
            return None;
        }
        Some(LeaderEpochCache { entries })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cache(entries: &[(i32, i64)]) -> LeaderEpochCache {
        let mut c = LeaderEpochCache::default();
        for &(e, s) in entries {
            assert!(c.assign(e, s));
        }
        c
    }

    #[test]
    fn assign_keeps_epochs_and_offsets_increasing() {
        let mut c = LeaderEpochCache::default();
        assert!(c.assign(1, 0));
        assert!(!c.assign(1, 5), "the same epoch again is a no-op");
        assert!(!c.assign(0, 7), "an older epoch is a no-op");
        assert!(!c.assign(-1, 9), "unstamped batches have no epoch");
        assert!(c.assign(3, 10));
        // Epoch 3 was elected at 10 and never wrote; epoch 4 at the same offset replaces it.
        assert!(c.assign(4, 10));
        assert_eq!(c.entries(), &[(1, 0), (4, 10)]);
        assert_eq!(c.latest_epoch(), Some(4));
        assert_eq!(c.start_offset(4), Some(10));
        assert_eq!(c.start_offset(3), None);
    }

    /// Kafka's `LeaderEpochFileCacheTest` endOffsetFor cases.
    #[test]
    fn end_offset_for_follows_kafka() {
        let empty = LeaderEpochCache::default();
        assert_eq!(empty.end_offset_for(0, 100), None, "empty cache");
        let c = cache(&[(2, 6), (3, 8), (5, 12)]);
        let leo = 20;
        assert_eq!(c.end_offset_for(5, leo), Some((5, leo)), "latest: log end");
        assert_eq!(c.end_offset_for(6, leo), None, "above the latest");
        assert_eq!(c.end_offset_for(-1, leo), None, "UNDEFINED_EPOCH");
        assert_eq!(c.end_offset_for(2, leo), Some((2, 8)));
        assert_eq!(c.end_offset_for(3, leo), Some((3, 12)));
        assert_eq!(
            c.end_offset_for(4, leo),
            Some((3, 12)),
            "an epoch that never wrote: the floor's end"
        );
        assert_eq!(
            c.end_offset_for(1, leo),
            Some((1, 6)),
            "below every epoch: the first start"
        );
        assert_eq!(c.end_offset_for(0, leo), Some((0, 6)));
    }

    #[test]
    fn truncation_from_the_start_moves_the_holding_entry() {
        let mut c = cache(&[(1, 0), (2, 5), (4, 10)]);
        assert!(!c.truncate_from_start(0));
        assert!(c.truncate_from_start(7));
        assert_eq!(c.entries(), &[(2, 7), (4, 10)]);
        assert!(c.truncate_from_start(10));
        assert_eq!(c.entries(), &[(4, 10)]);
        assert!(!c.truncate_from_start(10));
        assert!(c.truncate_from_start(15));
        assert_eq!(c.entries(), &[(4, 15)]);
        let mut c = cache(&[(3, 10)]);
        assert!(
            !c.truncate_from_start(4),
            "a start below every entry changes nothing"
        );
    }

    #[test]
    fn truncation_from_the_end_drops_entries_at_or_after_it() {
        let mut c = cache(&[(1, 0), (2, 5), (4, 10)]);
        assert!(!c.truncate_from_end(11));
        assert!(c.truncate_from_end(10));
        assert_eq!(c.entries(), &[(1, 0), (2, 5)]);
        assert!(c.truncate_from_end(3));
        assert_eq!(c.entries(), &[(1, 0)]);
        assert!(c.truncate_from_end(0));
        assert!(c.entries().is_empty());
        assert!(!c.clear());
        let mut c = cache(&[(1, 0)]);
        assert!(c.clear());
        assert!(c.entries().is_empty());
    }

    #[test]
    fn the_file_round_trips_and_damage_is_refused() {
        let c = cache(&[(0, 0), (2, 17), (9, 1_000_000_000_000)]);
        let bytes = c.encode();
        assert_eq!(
            std::str::from_utf8(&bytes).unwrap(),
            "0\n3\n0 0\n2 17\n9 1000000000000\n"
        );
        assert_eq!(
            LeaderEpochCache::decode(std::str::from_utf8(&bytes).unwrap()),
            Some(c)
        );
        assert_eq!(
            LeaderEpochCache::decode("0\n0\n"),
            Some(LeaderEpochCache::default())
        );
        for bad in [
            "",
            "1\n0\n",
            "0\n2\n1 0\n",
            "0\n1\n1 0 3\n",
            "0\n2\n2 5\n1 9\n",
            "0\n2\n1 5\n2 5\n",
            "0\n1\n-1 0\n",
            "0\n1\n1 0\nextra\n",
            "0\n99999999999\n",
        ] {
            assert_eq!(LeaderEpochCache::decode(bad), None, "{bad:?}");
        }
    }
}

//! The in-memory partition log of one replica in the replication simulation: records as
//! (leader epoch, value), a flushed prefix (a crash keeps only that), a high watermark, and the
//! leader-epoch cache with Kafka's `LeaderEpochFileCache` rules.
//!
//! Owns: what a crash loses and how truncation trims the epoch cache. Prefix hashes make "do
//! these two logs agree below offset n" a constant-time question, so the checks can run after
//! every step. Must never: hold a record the caller did not append, or keep an epoch-cache
//! entry that starts at or beyond the log end after a truncation (Kafka `truncateFromEnd`).

/// One record: the leader epoch it was written in and its unique value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Entry {
    pub epoch: i32,
    pub value: u64,
}

#[derive(Clone, Debug, Default)]
pub(crate) struct ReplicaLog {
    entries: Vec<Entry>,
    /// `hashes[i]`: hash of entries `0..=i`.
    hashes: Vec<u64>,
    flushed: usize,
    pub hw: i64,
    /// (epoch, start offset), epochs strictly increasing.
    epochs: Vec<(i32, i64)>,
}

/// The hash of a prefix extended by one entry (SplitMix64's finaliser over both words).
pub(crate) fn chain_hash(prev: u64, e: Entry) -> u64 {
    let mut z = prev ^ (e.value.wrapping_mul(0x9E37_79B9_7F4A_7C15)) ^ ((e.epoch as u64) << 40);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

impl ReplicaLog {
    pub fn end(&self) -> i64 {
        self.entries.len() as i64
    }

    pub fn entries(&self) -> &[Entry] {
        &self.entries
    }

    /// The hash of entries `0..n` (0 for the empty prefix); None if the log is shorter.
    pub fn prefix_hash(&self, n: usize) -> Option<u64> {
        match n {
            0 => Some(0),
            n if n <= self.hashes.len() => Some(self.hashes[n - 1]),
            _ => None,
        }
    }

    pub fn latest_epoch(&self) -> Option<i32> {
        self.epochs.last().map(|&(e, _)| e)
    }

    /// Kafka `assign`: a new leader epoch starting at `start`; older or equal epochs ignored.
    pub fn assign_epoch(&mut self, epoch: i32, start: i64) {
        if self.latest_epoch().is_none_or(|latest| epoch > latest) {
            self.epochs.push((epoch, start));
        }
    }

    /// Appends records as written (leader) or fetched (follower); unflushed until `flush`.
    pub fn append(&mut self, entries: &[Entry]) {
        for &e in entries {
            let offset = self.end();
            self.assign_epoch(e.epoch, offset);
            let prev = self.hashes.last().copied().unwrap_or(0);
            self.hashes.push(chain_hash(prev, e));
            self.entries.push(e);
        }
    }

    pub fn flush(&mut self) {
        self.flushed = self.entries.len();
    }

    /// Kafka `LeaderEpochFileCache.endOffsetFor` over this log.
    pub fn end_offset_for_epoch(&self, epoch: i32) -> Option<(i32, i64)> {
        if epoch < 0 {
            return None;
        }
        let latest = self.latest_epoch()?;
        if epoch == latest {
            return Some((epoch, self.end()));
        }
        let higher = self.epochs.iter().find(|&&(e, _)| e > epoch)?;
        match self.epochs.iter().rev().find(|&&(e, _)| e <= epoch) {
            Some(&(floor, _)) => Some((floor, higher.1)),
            None => Some((epoch, higher.1)),
        }
    }

    /// Drops every record from `offset` on, with the epoch-cache entries starting there or later.
    pub fn truncate_to(&mut self, offset: i64) {
        if offset >= self.end() {
            return;
        }
        let n = offset.max(0) as usize;
        self.entries.truncate(n);
        self.hashes.truncate(n);
        self.flushed = self.flushed.min(n);
        self.hw = self.hw.min(offset);
        self.epochs.retain(|&(_, start)| start < offset);
    }

    /// A crash: the unflushed tail is gone, and with it epoch-cache entries past the new end.
    pub fn crash(&mut self) {
        let flushed = self.flushed as i64;
        self.truncate_to(flushed);
        self.epochs.retain(|&(_, start)| start < flushed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn e(epoch: i32, value: u64) -> Entry {
        Entry { epoch, value }
    }

    #[test]
    fn end_offset_for_epoch_follows_kafka() {
        let mut log = ReplicaLog::default();
        log.append(&[e(1, 1), e(1, 2), e(3, 3), e(3, 4), e(5, 5)]);
        assert_eq!(log.end_offset_for_epoch(5), Some((5, 5)));
        assert_eq!(log.end_offset_for_epoch(3), Some((3, 4)));
        assert_eq!(log.end_offset_for_epoch(4), Some((3, 4)));
        assert_eq!(log.end_offset_for_epoch(1), Some((1, 2)));
        assert_eq!(
            log.end_offset_for_epoch(0),
            Some((0, 0)),
            "below every epoch"
        );
        assert_eq!(log.end_offset_for_epoch(6), None);
    }

    #[test]
    fn truncation_and_crash_trim_the_epoch_cache() {
        let mut log = ReplicaLog::default();
        log.append(&[e(1, 1), e(2, 2)]);
        log.flush();
        log.append(&[e(3, 3)]);
        log.assign_epoch(4, 3);
        log.crash();
        assert_eq!(log.end(), 2);
        assert_eq!(log.latest_epoch(), Some(2));
        log.truncate_to(1);
        assert_eq!(log.latest_epoch(), Some(1));
        assert_eq!(log.prefix_hash(1), Some(chain_hash(0, e(1, 1))));
        assert_eq!(log.prefix_hash(2), None);
    }
}

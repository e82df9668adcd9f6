//! The sparse offset index (`.index`) and time index (`.timeindex`) of one segment.
//!
//! Owns: mapping an offset to a file position at or before its batch, and a timestamp to an
//! offset at or before the first record with that timestamp. Entries are Kafka's layout:
//! offset index = (relative offset u32, position u32), time index = (timestamp i64, relative
//! offset u32), big-endian. Both are kept in memory and appended to their files.
//!
//! Must never: return a position after the batch holding the looked-up offset (lookups are
//! "at or before", the caller scans forward), or be trusted after an unclean stop for a segment
//! past the recovery point (those are rebuilt from the log).

use std::fs::{File, OpenOptions};
use std::io::Read;
use std::os::unix::fs::FileExt;
use std::path::Path;

const OFFSET_ENTRY_BYTES: usize = 8;
const TIME_ENTRY_BYTES: usize = 12;

/// In-memory copy of both indexes, plus their files.
pub(crate) struct SegmentIndex {
    /// (relative offset of a batch's base offset, file position of that batch)
    offsets: Vec<(u32, u32)>,
    /// (largest timestamp of all batches up to an indexed point, relative offset of the record
    /// carrying it); strictly increasing in timestamp.
    times: Vec<(i64, u32)>,
    offset_file: File,
    time_file: File,
    /// A file write failed: the in-memory copy is right, the files are not.
    pub(crate) files_stale: bool,
}

fn open_rw(path: &Path, truncate: bool) -> std::io::Result<File> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(truncate)
        .open(path)
}

impl SegmentIndex {
    /// Fresh, empty index files (truncating any left over).
    pub(crate) fn create(offset_path: &Path, time_path: &Path) -> std::io::Result<Self> {
        Ok(SegmentIndex {
            offsets: Vec::new(),
            times: Vec::new(),
            offset_file: open_rw(offset_path, true)?,
            time_file: open_rw(time_path, true)?,
            files_stale: false,
        })
    }

    /// Load both files. Returns None when either is malformed (odd length, not increasing,
    /// positions past `log_bytes`): the caller rebuilds from the log.
    pub(crate) fn load(
        offset_path: &Path,
        time_path: &Path,
        log_bytes: u64,
    ) -> std::io::Result<Option<Self>> {
        let mut offset_file = open_rw(offset_path, false)?;
        let mut time_file = open_rw(time_path, false)?;
        let mut ob = Vec::new();
        offset_file.read_to_end(&mut ob)?;
        let mut tb = Vec::new();
        time_file.read_to_end(&mut tb)?;
        if ob.len() % OFFSET_ENTRY_BYTES != 0 || tb.len() % TIME_ENTRY_BYTES != 0 {
            return Ok(None);
        }
        let offsets: Vec<(u32, u32)> = ob
            .chunks_exact(OFFSET_ENTRY_BYTES)
            .map(|c| {
                (
                    u32::from_be_bytes(c[..4].try_into().expect("4")),
                    u32::from_be_bytes(c[4..].try_into().expect("4")),
                )
            })
            .collect();
        let times: Vec<(i64, u32)> = tb
            .chunks_exact(TIME_ENTRY_BYTES)
            .map(|c| {
                (
                    i64::from_be_bytes(c[..8].try_into().expect("8")),
                    u32::from_be_bytes(c[8..].try_into().expect("4")),
                )
            })
            .collect();
        let offsets_ok = offsets
            .windows(2)
            .all(|w| w[0].0 < w[1].0 && w[0].1 < w[1].1)
            && offsets.iter().all(|e| (e.1 as u64) < log_bytes);
        let times_ok = times.windows(2).all(|w| w[0].0 < w[1].0);
        if !offsets_ok || !times_ok {
            return Ok(None);
        }
        Ok(Some(SegmentIndex {
            offsets,
            times,
            offset_file,
            time_file,
            files_stale: false,
        }))
    }

    /// Add an offset entry for the batch at `position`. Entries must increase.
    pub(crate) fn append_offset(&mut self, relative_offset: u32, position: u32) {
        if let Some(last) = self.offsets.last() {
            assert!(
                last.0 < relative_offset && last.1 < position,
                "offset index must increase: {last:?} then ({relative_offset}, {position})"
            );
        }
        let mut e = [0u8; OFFSET_ENTRY_BYTES];
        e[..4].copy_from_slice(&relative_offset.to_be_bytes());
        e[4..].copy_from_slice(&position.to_be_bytes());
        let at = (self.offsets.len() * OFFSET_ENTRY_BYTES) as u64;
        if self.offset_file.write_all_at(&e, at).is_err() {
            self.files_stale = true;
        }
        self.offsets.push((relative_offset, position));
    }

    /// Add a time entry if `timestamp` is larger than the last one.
    pub(crate) fn maybe_append_time(&mut self, timestamp: i64, relative_offset: u32) {
        if self.times.last().is_some_and(|last| last.0 >= timestamp) {
            return;
        }
        let mut e = [0u8; TIME_ENTRY_BYTES];
        e[..8].copy_from_slice(&timestamp.to_be_bytes());
        e[8..].copy_from_slice(&relative_offset.to_be_bytes());
        let at = (self.times.len() * TIME_ENTRY_BYTES) as u64;
        if self.time_file.write_all_at(&e, at).is_err() {
            self.files_stale = true;
        }
        self.times.push((timestamp, relative_offset));
    }

    /// (relative offset, position) of the last indexed batch starting at or before
    /// `relative_offset`; (0, 0) when none is.
    pub(crate) fn lookup_offset(&self, relative_offset: u32) -> (u32, u32) {
        let i = self.offsets.partition_point(|e| e.0 <= relative_offset);
        if i == 0 {
            (0, 0)
        } else {
            self.offsets[i - 1]
        }
    }

    /// Where a walk over the batches from position `from` may continue without reading the
    /// headers in between: the second-to-last indexed position p with `from < p <= limit`
    /// whose batch has a relative offset below `rel_exclusive` (every batch before such a
    /// position ends at or before it and has a smaller offset; the walk from p still takes the
    /// batch at p, so its caller sees at least one header). None: walk from `from`.
    pub(crate) fn jump(&self, from: u64, limit: u64, rel_exclusive: i64) -> Option<u32> {
        let lo = self.offsets.partition_point(|e| e.1 as u64 <= from);
        let hi = self.offsets.partition_point(|e| e.1 as u64 <= limit).min(
            self.offsets
                .partition_point(|e| (e.0 as i64) < rel_exclusive),
        );
        (hi >= lo + 2).then(|| self.offsets[hi - 2].1)
    }

    /// Relative offset from which to scan for the first record with timestamp >= `ts`: every
    /// record before it has a smaller timestamp.
    pub(crate) fn lookup_time(&self, ts: i64) -> u32 {
        let i = self.times.partition_point(|e| e.0 < ts);
        if i == 0 {
            0
        } else {
            self.times[i - 1].1
        }
    }

    pub(crate) fn last_time_entry(&self) -> Option<(i64, u32)> {
        self.times.last().copied()
    }

    pub(crate) fn last_offset_entry(&self) -> Option<(u32, u32)> {
        self.offsets.last().copied()
    }

    pub(crate) fn sync(&self) -> std::io::Result<()> {
        self.offset_file.sync_data()?;
        self.time_file.sync_data()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookups_are_at_or_before_and_survive_reload() {
        let dir = tempfile::tempdir().unwrap();
        let (o, t) = (dir.path().join("a.index"), dir.path().join("a.timeindex"));
        let mut idx = SegmentIndex::create(&o, &t).unwrap();
        idx.append_offset(10, 4100);
        idx.append_offset(20, 8200);
        idx.maybe_append_time(100, 5);
        idx.maybe_append_time(90, 12); // not larger: skipped
        idx.maybe_append_time(200, 15);
        assert_eq!(idx.lookup_offset(5), (0, 0));
        assert_eq!(idx.lookup_offset(10), (10, 4100));
        assert_eq!(idx.lookup_offset(19), (10, 4100));
        assert_eq!(idx.lookup_offset(25), (20, 8200));
        assert_eq!(idx.lookup_time(50), 0);
        assert_eq!(idx.lookup_time(100), 0);
        assert_eq!(idx.lookup_time(101), 5);
        assert_eq!(idx.lookup_time(1000), 15);
        drop(idx);
        let idx = SegmentIndex::load(&o, &t, 10_000).unwrap().unwrap();
        assert_eq!(idx.lookup_offset(25), (20, 8200));
        assert_eq!(idx.last_time_entry(), Some((200, 15)));
        // A position past the log's size means the index is not trustworthy.
        assert!(SegmentIndex::load(&o, &t, 8000).unwrap().is_none());
        // A torn entry likewise.
        std::fs::OpenOptions::new()
            .append(true)
            .open(&o)
            .unwrap()
            .write_all_at(&[1], 16)
            .unwrap();
        assert!(SegmentIndex::load(&o, &t, 10_000).unwrap().is_none());
    }
}

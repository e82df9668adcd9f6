//! The transaction index of one segment: `<base>.txnindex`, Kafka's `TransactionIndex`.
//!
//! Owns: the file of aborted transactions whose abort marker is in this segment, as Kafka's
//! 34-byte `AbortedTxn` entries (big-endian: version i16 = 0, producer id i64, first offset
//! i64, last offset (the marker's) i64, last stable offset i64 at the abort), in increasing
//! last offset; and the search read_committed fetches use (Kafka's `collectAbortedTxns`): every
//! entry overlapping [fetch offset, upper bound), stopping at the first entry whose LSO reaches
//! the upper bound, since no later abort can then start below it.
//!
//! The file is created at the first abort of the segment (a missing file is an empty index,
//! as Kafka), appended with a positioned write, fsynced with the segment's other indexes, cut
//! with the log on truncation, renamed and deleted with its segment. A file that fails
//! [`decode_entries`] (torn length, unknown version, offsets out of order or outside the
//! segment) is rebuilt from the log by the partition (`PartitionLog::open`).
//!
//! Must never: serve an entry for a marker that is not in the log (entries are written after
//! their marker, and cut before the log on truncation), or read more than a bounded chunk at
//! once (`TXN_INDEX_READ_CHUNK_BYTES`).

use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use crate::limits::{TXN_INDEX_BYTES_MAX, TXN_INDEX_READ_CHUNK_BYTES};
use crate::segment::file_stem;

/// Suffix of a segment's transaction index file.
pub(crate) const TXN_INDEX_SUFFIX: &str = ".txnindex";
/// Suffix of a transaction index being rewritten by the cleaner (renamed over the index when
/// complete; a leftover is removed on open).
pub(crate) const TXN_INDEX_REWRITE_SUFFIX: &str = ".txnindex.cleaned";
/// Bytes of one entry (Kafka's `AbortedTxn.TOTAL_SIZE`).
pub const ABORTED_TXN_BYTES: usize = 34;
/// The only entry version (Kafka's `AbortedTxn.CURRENT_VERSION`).
const ENTRY_VERSION: i16 = 0;

/// One aborted transaction, as the index stores it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AbortedTxn {
    pub producer_id: i64,
    pub first_offset: i64,
    /// The abort marker's offset.
    pub last_offset: i64,
    /// The partition's LSO once this abort was written (see `TxnOffsets::index_lso`).
    pub last_stable_offset: i64,
}

impl AbortedTxn {
    pub fn encode(&self) -> [u8; ABORTED_TXN_BYTES] {
        let mut b = [0u8; ABORTED_TXN_BYTES];
        b[0..2].copy_from_slice(&ENTRY_VERSION.to_be_bytes());
        b[2..10].copy_from_slice(&self.producer_id.to_be_bytes());
        b[10..18].copy_from_slice(&self.first_offset.to_be_bytes());
        b[18..26].copy_from_slice(&self.last_offset.to_be_bytes());
        b[26..34].copy_from_slice(&self.last_stable_offset.to_be_bytes());
        b
    }

    /// One entry; Err names what is wrong (a version other than 0, first after last).
    pub fn decode(b: &[u8; ABORTED_TXN_BYTES]) -> Result<AbortedTxn, String> {
        let i64_at = |at: usize| i64::from_be_bytes(b[at..at + 8].try_into().expect("8 bytes"));
        let version = i16::from_be_bytes([b[0], b[1]]);
        if version != ENTRY_VERSION {
            return Err(format!("entry version {version}"));
        }
        let txn = AbortedTxn {
            producer_id: i64_at(2),
            first_offset: i64_at(10),
            last_offset: i64_at(18),
            last_stable_offset: i64_at(26),
        };
        if txn.first_offset < 0 || txn.first_offset > txn.last_offset {
            return Err(format!(
                "first offset {} after last offset {}",
                txn.first_offset, txn.last_offset
            ));
        }
        Ok(txn)
    }
}

/// Decode and check a whole index file of the segment `[base_offset, next_offset)` (Kafka's
/// `sanityCheck`, stricter): whole entries only, version 0, last offsets increasing and inside
/// the segment. Err says what is wrong, for the log line before the rebuild.
pub fn decode_entries(
    bytes: &[u8],
    base_offset: i64,
    next_offset: i64,
) -> Result<Vec<AbortedTxn>, String> {
    if !bytes.len().is_multiple_of(ABORTED_TXN_BYTES) {
        return Err(format!(
            "{} bytes is not a whole number of {ABORTED_TXN_BYTES}-byte entries",
            bytes.len()
        ));
    }
    let mut out = Vec::with_capacity(bytes.len() / ABORTED_TXN_BYTES);
    let mut previous: Option<i64> = None;
    for chunk in bytes.chunks_exact(ABORTED_TXN_BYTES) {
        let txn = AbortedTxn::decode(chunk.try_into().expect("whole entry"))?;
        if txn.last_offset < base_offset || txn.last_offset >= next_offset {
            return Err(format!(
                "marker offset {} outside the segment [{base_offset}, {next_offset})",
                txn.last_offset
            ));
        }
        if previous.is_some_and(|p| p >= txn.last_offset) {
            return Err(format!(
                "marker offset {} does not follow {}",
                txn.last_offset,
                previous.unwrap_or_default()
            ));
        }
        previous = Some(txn.last_offset);
        out.push(txn);
    }
    Ok(out)
}

/// A segment's transaction index. Appends and cuts happen under the partition's writer lock;
/// searches take this struct's lock (in `Segment`) only for the file handle and length.
pub(crate) struct TxnIndex {
    path: PathBuf,
    /// None until the first entry (or when the file does not exist).
    file: Option<File>,
    /// Whole entries in the file.
    entries: u64,
    /// The last entry's marker offset.
    last_offset: Option<i64>,
    /// Written since the last fsync.
    dirty: bool,
}

impl TxnIndex {
    pub(crate) fn path(dir: &Path, base_offset: i64) -> PathBuf {
        dir.join(format!("{}{TXN_INDEX_SUFFIX}", file_stem(base_offset)))
    }

    /// An empty index (no file until the first abort); any file of that name is removed.
    pub(crate) fn create(dir: &Path, base_offset: i64) -> std::io::Result<TxnIndex> {
        let path = Self::path(dir, base_offset);
        match std::fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        Ok(TxnIndex {
            path,
            file: None,
            entries: 0,
            last_offset: None,
            dirty: false,
        })
    }

    /// Where the cleaner writes a new index before renaming it over the old one.
    pub(crate) fn rewrite_path(dir: &Path, base_offset: i64) -> PathBuf {
        dir.join(format!(
            "{}{TXN_INDEX_REWRITE_SUFFIX}",
            file_stem(base_offset)
        ))
    }

    /// A placeholder that touches no file (replaced by `open`'s result).
    pub(crate) fn create_unopened(dir: &Path, base_offset: i64) -> TxnIndex {
        TxnIndex {
            path: Self::path(dir, base_offset),
            file: None,
            entries: 0,
            last_offset: None,
            dirty: false,
        }
    }

    /// Open the index of the segment `[base_offset, next_offset)`. `Ok(Err(why))` when the file
    /// is damaged: the caller rebuilds it (`create` then `append`).
    pub(crate) fn open(
        dir: &Path,
        base_offset: i64,
        next_offset: i64,
    ) -> std::io::Result<Result<TxnIndex, String>> {
        let path = Self::path(dir, base_offset);
        let file = match OpenOptions::new().read(true).write(true).open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Ok(Ok(TxnIndex {
                    path,
                    file: None,
                    entries: 0,
                    last_offset: None,
                    dirty: false,
                }))
            }
            Err(e) => return Err(e),
        };
        let len = file.metadata()?.len();
        if len > TXN_INDEX_BYTES_MAX {
            return Ok(Err(format!(
                "{len} bytes, above the {TXN_INDEX_BYTES_MAX}-byte limit"
            )));
        }
        let mut bytes = vec![0u8; len as usize];
        file.read_exact_at(&mut bytes, 0)?;
        Ok(match decode_entries(&bytes, base_offset, next_offset) {
            Ok(entries) => Ok(TxnIndex {
                path,
                file: Some(file),
                entries: entries.len() as u64,
                last_offset: entries.last().map(|t| t.last_offset),
                dirty: false,
            }),
            Err(why) => Err(why),
        })
    }

    /// Add an abort whose marker was just written to this segment. Markers come in offset
    /// order, so entries do too.
    pub(crate) fn append(&mut self, txn: &AbortedTxn) -> std::io::Result<()> {
        assert!(
            self.last_offset.is_none_or(|l| l < txn.last_offset),
            "transaction index entries in marker order"
        );
        if self.file.is_none() {
            self.file = Some(
                OpenOptions::new()
                    .read(true)
                    .write(true)
                    .create(true)
                    .truncate(true)
                    .open(&self.path)?,
            );
            self.entries = 0;
        }
        let file = self.file.as_ref().expect("opened above");
        let at = self.entries * ABORTED_TXN_BYTES as u64;
        if let Err(e) = file.write_all_at(&txn.encode(), at) {
            // Leave no partial entry behind (a torn one would fail the next open's check).
            let _ = file.set_len(at);
            return Err(e);
        }
        self.entries += 1;
        self.last_offset = Some(txn.last_offset);
        self.dirty = true;
        Ok(())
    }

    /// Remove the entries whose marker is at or past `offset` (Kafka's `truncateTo`).
    pub(crate) fn truncate_to(&mut self, offset: i64) -> std::io::Result<()> {
        if self.last_offset.is_none_or(|l| l < offset) {
            return Ok(());
        }
        let mut keep = 0u64;
        let mut last = None;
        self.scan(|i, txn| {
            if txn.last_offset >= offset {
                return false;
            }
            keep = i + 1;
            last = Some(txn.last_offset);
            true
        })?;
        let file = self.file.as_ref().expect("entries exist");
        file.set_len(keep * ABORTED_TXN_BYTES as u64)?;
        file.sync_all()?;
        self.entries = keep;
        self.last_offset = last;
        self.dirty = false;
        Ok(())
    }

    /// Call `f(entry number, entry)` for each entry in order until it returns false; reads in
    /// bounded chunks.
    fn scan(&self, mut f: impl FnMut(u64, AbortedTxn) -> bool) -> std::io::Result<()> {
        let Some(file) = &self.file else {
            return Ok(());
        };
        let per_chunk = (TXN_INDEX_READ_CHUNK_BYTES / ABORTED_TXN_BYTES) as u64;
        let mut buf = Vec::new();
        let mut next = 0u64;
        while next < self.entries {
            let n = per_chunk.min(self.entries - next);
            buf.resize(n as usize * ABORTED_TXN_BYTES, 0);
            file.read_exact_at(&mut buf, next * ABORTED_TXN_BYTES as u64)?;
            for (i, chunk) in buf.chunks_exact(ABORTED_TXN_BYTES).enumerate() {
                let txn =
                    AbortedTxn::decode(chunk.try_into().expect("whole entry")).map_err(|why| {
                        std::io::Error::new(
                            std::io::ErrorKind::InvalidData,
                            format!("{}: {why}", self.path.display()),
                        )
                    })?;
                if !f(next + i as u64, txn) {
                    return Ok(());
                }
            }
            next += n;
        }
        Ok(())
    }

    /// Kafka's `collectAbortedTxns`: the entries overlapping [fetch_offset, upper_bound), and
    /// whether the search is complete (an entry's LSO reached the upper bound: later segments
    /// cannot hold an abort that starts below it).
    pub(crate) fn collect(
        &self,
        fetch_offset: i64,
        upper_bound: i64,
        out: &mut Vec<AbortedTxn>,
    ) -> std::io::Result<bool> {
        let mut complete = false;
        self.scan(|_, txn| {
            if txn.last_offset >= fetch_offset && txn.first_offset < upper_bound {
                out.push(txn);
            }
            if txn.last_stable_offset >= upper_bound {
                complete = true;
                return false;
            }
            true
        })?;
        Ok(complete)
    }

    /// Every entry (at most `TXN_INDEX_BYTES_MAX / 34`).
    pub(crate) fn all(&self) -> std::io::Result<Vec<AbortedTxn>> {
        let mut out = Vec::new();
        self.scan(|_, t| {
            out.push(t);
            true
        })?;
        Ok(out)
    }

    pub(crate) fn sync(&mut self) -> std::io::Result<()> {
        if self.dirty {
            if let Some(f) = &self.file {
                f.sync_all()?;
            }
            self.dirty = false;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn txn(pid: i64, first: i64, last: i64, lso: i64) -> AbortedTxn {
        AbortedTxn {
            producer_id: pid,
            first_offset: first,
            last_offset: last,
            last_stable_offset: lso,
        }
    }

    #[test]
    fn entries_are_kafkas_34_bytes() {
        let t = txn(0x0102030405060708, 10, 20, 21);
        let b = t.encode();
        assert_eq!(&b[..2], &[0, 0]);
        assert_eq!(&b[2..10], &[1, 2, 3, 4, 5, 6, 7, 8]);
        assert_eq!(&b[10..18], &10i64.to_be_bytes());
        assert_eq!(&b[18..26], &20i64.to_be_bytes());
        assert_eq!(&b[26..34], &21i64.to_be_bytes());
        assert_eq!(AbortedTxn::decode(&b), Ok(t));
        let mut v1 = b;
        v1[1] = 1;
        assert!(AbortedTxn::decode(&v1).is_err());
    }

    #[test]
    fn decode_entries_refuses_torn_unordered_and_foreign_entries() {
        let a = txn(1, 100, 105, 106).encode();
        let b = txn(2, 101, 110, 111).encode();
        let ok = [a, b].concat();
        assert_eq!(decode_entries(&ok, 100, 200).unwrap().len(), 2);
        assert!(decode_entries(&ok[..50], 100, 200).is_err());
        assert!(decode_entries(&[b, a].concat(), 100, 200).is_err());
        assert!(decode_entries(&[a, a].concat(), 100, 200).is_err());
        assert!(
            decode_entries(&ok, 106, 200).is_err(),
            "marker below the base"
        );
        assert!(
            decode_entries(&ok, 100, 110).is_err(),
            "marker past the end"
        );
    }

    #[test]
    fn append_collect_truncate_and_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let mut idx = TxnIndex::create(dir.path(), 100).unwrap();
        assert!(!TxnIndex::path(dir.path(), 100).exists(), "created lazily");
        idx.append(&txn(1, 90, 105, 95)).unwrap();
        idx.append(&txn(2, 95, 110, 111)).unwrap();
        idx.append(&txn(3, 120, 130, 131)).unwrap();
        let mut out = Vec::new();
        // [100, 112): the first two overlap; the second's LSO 111 < 112, the third's 131
        // ends the search.
        assert!(idx.collect(100, 112, &mut out).unwrap());
        assert_eq!(
            out.iter().map(|t| t.producer_id).collect::<Vec<_>>(),
            [1, 2]
        );
        out.clear();
        // Nothing reaches 200: not complete, the next segment must be searched.
        assert!(!idx.collect(106, 200, &mut out).unwrap());
        assert_eq!(
            out.iter().map(|t| t.producer_id).collect::<Vec<_>>(),
            [2, 3]
        );
        idx.truncate_to(110).unwrap();
        assert_eq!(idx.all().unwrap(), vec![txn(1, 90, 105, 95)]);
        idx.append(&txn(4, 108, 112, 113)).unwrap();
        idx.sync().unwrap();
        let back = TxnIndex::open(dir.path(), 100, 113).unwrap().unwrap();
        assert_eq!(
            back.all().unwrap(),
            vec![txn(1, 90, 105, 95), txn(4, 108, 112, 113)]
        );
        // A torn tail is reported, not trusted.
        let path = TxnIndex::path(dir.path(), 100);
        let len = std::fs::metadata(&path).unwrap().len();
        std::fs::OpenOptions::new()
            .write(true)
            .open(&path)
            .unwrap()
            .set_len(len - 3)
            .unwrap();
        assert!(TxnIndex::open(dir.path(), 100, 113).unwrap().is_err());
    }
}

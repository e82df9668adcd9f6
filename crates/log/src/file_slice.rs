//! Record batches located in a segment file, not read: the zero-copy fetch.
//!
//! Owns: [`PartitionLog::read_file`], which picks exactly the batches [`PartitionLog::read`]
//! would return (same limits, same errors) by reading only batch headers, and answers a
//! [`FileSlice`]: an open segment file and a byte range of it that the broker sends to a socket
//! straight from the page cache (`sendfile`), or reads with [`FileSlice::read`] where it
//! cannot.
//!
//! Why a slice stays valid: it holds the segment (and so its open file) until it is dropped.
//! Retention, DeleteRecords and the cleaner only unlink or rename segment files, and a roll
//! only seals one, so the bytes of an open file below its committed end never change under a
//! slice. The one exception is truncation (a follower cutting its log back, then appending
//! the new leader's batches in place): a slice records the partition's truncation count when
//! it was located and [`FileSlice::intact`] says whether one has started since; a sender that
//! finds it moved must not complete the response (the broker closes the connection, as
//! Kafka's `FileRecords.writeTo` fails when the file shrank).
//!
//! Must never: hand out a range past a segment's committed end, or one the copying read
//! would not return byte for byte.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use bytes::Bytes;

use crate::segment::Segment;
use crate::{LogError, PartitionLog};

/// Batches `[position, position + len)` of one segment file.
#[derive(Clone)]
pub struct FileSlice {
    segment: Arc<Segment>,
    position: u64,
    len: u64,
    first_base: i64,
    last_offset: i64,
    truncations: Arc<AtomicU64>,
    truncations_at: u64,
}

impl std::fmt::Debug for FileSlice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FileSlice")
            .field("segment", &self.segment.base_offset)
            .field("position", &self.position)
            .field("len", &self.len)
            .finish()
    }
}

impl FileSlice {
    /// The bytes in the range.
    pub fn len(&self) -> usize {
        self.len as usize
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The open segment file.
    pub fn file(&self) -> &File {
        self.segment.file()
    }

    /// Where the range starts in [`FileSlice::file`].
    pub fn position(&self) -> u64 {
        self.position
    }

    /// The last offset of the last batch; None when the slice is empty.
    pub fn last_offset(&self) -> Option<i64> {
        (self.len > 0).then_some(self.last_offset)
    }

    /// The records in the slice as counted from its offsets (last offset - first batch's base
    /// offset + 1): exact except where the cleaner left batches with fewer records than
    /// their offset range.
    pub fn records_by_offsets(&self) -> u64 {
        if self.len == 0 {
            return 0;
        }
        (self.last_offset - self.first_base + 1).max(0) as u64
    }

    /// True while no truncation of the partition has started since the slice was located:
    /// the file still holds the located bytes.
    pub fn intact(&self) -> bool {
        self.truncations.load(Ordering::Acquire) == self.truncations_at
    }

    /// Reads `buf.len()` bytes of the slice from `from` (relative to the slice).
    pub fn read_at(&self, buf: &mut [u8], from: u64) -> std::io::Result<()> {
        if from + buf.len() as u64 > self.len {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                "read past the end of a file slice",
            ));
        }
        self.file().read_exact_at(buf, self.position + from)
    }

    /// The whole slice, copied (for a socket that cannot take it from the file). Err when a
    /// truncation may have changed the bytes since the slice was located.
    pub fn read(&self) -> std::io::Result<Bytes> {
        let mut buf = vec![0u8; self.len as usize];
        self.read_at(&mut buf, 0)?;
        if !self.intact() {
            return Err(std::io::Error::other(
                "the partition was truncated while its records were read",
            ));
        }
        Ok(Bytes::from(buf))
    }
}

/// [`PartitionLog::read_file`]'s answer: a [`crate::ReadResult`] whose records are a slice.
#[derive(Debug, Clone)]
pub struct FileRead {
    /// None when there are no batches to return.
    pub slice: Option<FileSlice>,
    pub high_watermark: i64,
    pub log_start_offset: i64,
    pub log_end_offset: i64,
}

impl PartitionLog {
    /// [`PartitionLog::read`], located instead of read: the same batches (or none), the same
    /// errors, the same offsets reported.
    pub fn read_file(
        &self,
        fetch_offset: i64,
        max_bytes: usize,
        max_offset_exclusive: i64,
    ) -> Result<FileRead, LogError> {
        let (slice, r) = self.read_segments(
            fetch_offset,
            max_offset_exclusive,
            |seg, limit, interval, truncations_at| {
                let found = seg.locate(fetch_offset, max_bytes, limit, interval)?;
                Ok(found.map(|found| {
                    (found.len > 0).then(|| FileSlice {
                        segment: seg.clone(),
                        position: found.position,
                        len: found.len,
                        first_base: found.first_base,
                        last_offset: found.last_offset,
                        truncations: self.truncations.clone(),
                        truncations_at,
                    })
                }))
            },
        )?;
        Ok(FileRead {
            slice: slice.flatten(),
            high_watermark: r.high_watermark,
            log_start_offset: r.log_start_offset,
            log_end_offset: r.log_end_offset,
        })
    }
}

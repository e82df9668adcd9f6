//! One partition's log: append, read, flush (group commit), roll, recovery.
//!
//! Owns: the ordered segments of one partition, the next offset, producer state and the
//! durability bookkeeping. Must never: let a reader see bytes of an append that has not fully
//! completed, or hold a lock across a read's pread.

use std::path::Path;

use crate::{AppendOutcome, LogConfig, LogError, ReadResult};

/// A partition's durable log. `Send + Sync`; every method takes `&self`.
pub struct PartitionLog {
    _private: (),
}

impl PartitionLog {
    /// Create the log in `dir` or recover the one there.
    pub fn open(
        dir: &Path,
        topic_id: [u8; 16],
        config: LogConfig,
        now_ms: i64,
    ) -> Result<Self, LogError> {
        let _ = (dir, topic_id, config, now_ms);
        todo!()
    }
    /// Append one produced batch (the Produce request's records for this partition).
    pub fn append(
        &self,
        records: &[u8],
        leader_epoch: i32,
        now_ms: i64,
    ) -> Result<AppendOutcome, LogError> {
        let _ = (records, leader_epoch, now_ms);
        todo!()
    }
    /// Whole batches from the one containing `fetch_offset`, up to `max_bytes` (at least one).
    pub fn read(
        &self,
        fetch_offset: i64,
        max_bytes: usize,
        max_offset_exclusive: i64,
    ) -> Result<ReadResult, LogError> {
        let _ = (fetch_offset, max_bytes, max_offset_exclusive);
        todo!()
    }
    pub fn log_start_offset(&self) -> i64 {
        todo!()
    }
    pub fn log_end_offset(&self) -> i64 {
        todo!()
    }
    pub fn high_watermark(&self) -> i64 {
        todo!()
    }
    pub fn offset_for_timestamp(&self, ts_ms: i64) -> Option<(i64, i64)> {
        let _ = ts_ms;
        todo!()
    }
    pub fn max_timestamp(&self) -> Option<(i64, i64)> {
        todo!()
    }
    pub fn flush(&self) -> Result<(), LogError> {
        todo!()
    }
    pub fn needs_flush_after_append(&self) -> bool {
        todo!()
    }
    pub fn tick(&self, now_ms: i64) -> Result<(), LogError> {
        let _ = now_ms;
        todo!()
    }
    pub fn close(&self) -> Result<(), LogError> {
        todo!()
    }
    pub fn size_bytes(&self) -> u64 {
        todo!()
    }
    pub fn topic_id(&self) -> [u8; 16] {
        todo!()
    }
}

//! The data directory: one `<topic>-<partition>` directory per partition, each with a
//! `partition.metadata` file naming its topic id (as Kafka does).
//!
//! Owns: finding, creating and deleting partition directories. Must never: open a partition
//! twice (two writers on one log would interleave appends).

use std::path::Path;
use std::sync::Arc;

use crate::{LogConfig, LogError, PartitionLog};

/// The set of partition logs under one data directory.
pub struct LogManager {
    _private: (),
}

impl LogManager {
    /// Scan `data_dir` (creating it if missing) for partition directories; opens none.
    pub fn open(data_dir: &Path, now_ms: i64) -> Result<Self, LogError> {
        let _ = (data_dir, now_ms);
        todo!()
    }
    /// Partitions found on disk: (topic, partition, topic id).
    pub fn existing(&self) -> Vec<(String, i32, [u8; 16])> {
        todo!()
    }
    /// Open (creating or recovering) one partition's log; the same Arc for repeated calls.
    pub fn open_partition(
        &self,
        topic: &str,
        partition: i32,
        topic_id: [u8; 16],
        config: LogConfig,
        now_ms: i64,
    ) -> Result<Arc<PartitionLog>, LogError> {
        let _ = (topic, partition, topic_id, config, now_ms);
        todo!()
    }
    /// Rename the partition's directory to `<dir>.<uuid>-delete`, then remove it.
    pub fn delete_partition(&self, topic: &str, partition: i32) -> Result<(), LogError> {
        let _ = (topic, partition);
        todo!()
    }
}

//! DescribeLogDirs: the broker's one log directory (the data dir), the size of every hosted
//! partition in it, and (v4+) the file system's total and usable bytes (kafka-log-dirs,
//! `AdminClient.describeLogDirs`).
//!
//! As Kafka's `ReplicaManager.describeLogDirs`: null topics means every hosted partition;
//! named partitions this broker does not host are simply absent; a topic with no listed
//! partition is left out; `offset_lag` is 0 and `is_future_key` false (no replica moves
//! between directories). A directory whose file system cannot be queried is answered with
//! KAFKA_STORAGE_ERROR and no topics. Must never: touch the disk on an async worker (statvfs
//! runs through `Broker::blocking`; partition sizes are kept in memory by the log).

use std::collections::{BTreeMap, HashSet};
use std::path::Path;
use std::sync::Arc;

use kafka_protocol::messages::describe_log_dirs_response::{
    DescribeLogDirsPartition, DescribeLogDirsResult, DescribeLogDirsTopic,
};
use kafka_protocol::messages::{DescribeLogDirsRequest, DescribeLogDirsResponse};
use tracing::warn;

use super::{code, str_bytes, topic_name};
use crate::broker::Broker;

/// Kafka's `DescribeLogDirsResponse.UNKNOWN_VOLUME_BYTES`, sent when the sizes are unknown.
const UNKNOWN_VOLUME_BYTES: i64 = -1;

/// Total and usable bytes of the file system holding `path`, as Java's `FileStore`
/// `getTotalSpace` / `getUsableSpace` (blocks and blocks available to unprivileged users,
/// times the fragment size). Values past i64 are reported as i64::MAX, as Kafka does.
fn volume_bytes(path: &Path) -> std::io::Result<(i64, i64)> {
    let st = rustix::fs::statvfs(path)?;
    let bytes = |blocks: u64| {
        i64::try_from(u128::from(blocks) * u128::from(st.f_frsize)).unwrap_or(i64::MAX)
    };
    Ok((bytes(st.f_blocks), bytes(st.f_bavail)))
}

pub async fn handle(
    broker: &Arc<Broker>,
    request: DescribeLogDirsRequest,
) -> DescribeLogDirsResponse {
    let wanted: Option<HashSet<(String, i32)>> = request.topics.map(|topics| {
        topics
            .iter()
            .flat_map(|t| t.partitions.iter().map(|p| (t.topic.0.to_string(), *p)))
            .collect()
    });
    let mut by_topic: BTreeMap<String, Vec<DescribeLogDirsPartition>> = BTreeMap::new();
    for p in broker.partitions.all() {
        if wanted
            .as_ref()
            .is_some_and(|w| !w.contains(&(p.topic.clone(), p.index)))
        {
            continue;
        }
        let size = i64::try_from(p.log.size_bytes()).unwrap_or(i64::MAX);
        by_topic.entry(p.topic.clone()).or_default().push(
            DescribeLogDirsPartition::default()
                .with_partition_index(p.index)
                .with_partition_size(size)
                .with_offset_lag(0)
                .with_is_future_key(false),
        );
    }
    let topics: Vec<DescribeLogDirsTopic> = by_topic
        .into_iter()
        .map(|(name, mut partitions)| {
            partitions.sort_by_key(|p| p.partition_index);
            DescribeLogDirsTopic::default()
                .with_name(topic_name(&name))
                .with_partitions(partitions)
        })
        .collect();
    let data_dir = broker.config.data_dir.clone();
    let log_dir = std::path::absolute(&data_dir).unwrap_or_else(|_| data_dir.clone());
    let volume = {
        let log_dir = log_dir.clone();
        broker.blocking(move || volume_bytes(&log_dir)).await
    };
    let result = DescribeLogDirsResult::default()
        .with_log_dir(str_bytes(log_dir.to_string_lossy().into_owned()));
    let result = match volume {
        Ok((total_bytes, usable_bytes)) => result
            .with_error_code(code::NONE)
            .with_topics(topics)
            .with_total_bytes(total_bytes)
            .with_usable_bytes(usable_bytes),
        Err(e) => {
            warn!(dir = %log_dir.display(), "cannot read the log dir's file system: {e}");
            result
                .with_error_code(code::KAFKA_STORAGE_ERROR)
                .with_total_bytes(UNKNOWN_VOLUME_BYTES)
                .with_usable_bytes(UNKNOWN_VOLUME_BYTES)
        }
    };
    DescribeLogDirsResponse::default()
        .with_error_code(code::NONE)
        .with_results(vec![result])
}

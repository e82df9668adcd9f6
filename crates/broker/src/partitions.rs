//! The partitions this broker hosts: one open `PartitionLog` per (topic id, partition), on
//! every broker in the partition's replica list (leader and followers alike; the role lives in
//! `Partition::replica`, see [`crate::replication`]).
//!
//! Owns: the mapping from metadata to open logs. It follows the metadata image: a created topic
//! opens its logs, a deleted topic (an applied DeleteTopic) closes and deletes them. At
//! start-up, once the image has caught up with the chain, logs on disk the image does not name
//! are renamed `<dir>.<n>-stray` (Kafka's suffix) and kept, never deleted: an image that is
//! stale or empty (a lost chain directory, a bug) must not cost data, and a crash between a
//! DeleteTopic and the file removal still cannot resurrect the topic (a stray is never opened).
//! Must never: create a log the image does not name, delete a log for any reason but an
//! applied deletion, or be consulted for topic names (the image is the authority; this only
//! holds files). All methods block on file I/O: call them off the async workers.

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::{Arc, RwLock};

use josefine_log::recompress::CompressionConfig;
use josefine_log::{CleanupPolicy, LogConfig, LogManager, PartitionLog, TimestampType};
use josefine_meta::{Applied, Image, Topic, TopicId};
use tracing::warn;

use crate::config::BrokerSettings;
use crate::error::BrokerError;

/// One hosted partition.
pub struct Partition {
    pub topic: String,
    pub topic_id: TopicId,
    pub index: i32,
    pub log: Arc<PartitionLog>,
    /// Effective `min.insync.replicas` (topic override or broker default), updated in place
    /// by config changes.
    min_insync_replicas: AtomicI32,
    /// This broker's role for the partition (leader, follower, idle) and its waiters.
    pub replica: crate::replication::ReplicaCell,
    pub(crate) replication: Arc<crate::replication::Replication>,
    /// Client traffic counters (`/metrics`), gone with the partition.
    pub metrics: crate::metrics::PartitionMetrics,
}

impl Partition {
    /// Effective `min.insync.replicas` (topic override or broker default).
    pub fn min_insync_replicas(&self) -> i32 {
        self.min_insync_replicas.load(Ordering::Relaxed)
    }
}

/// Hosted partitions by (topic id, partition index).
pub struct PartitionRegistry {
    node_id: i32,
    settings: BrokerSettings,
    logs: LogManager,
    partitions: RwLock<HashMap<(TopicId, i32), Arc<Partition>>>,
    replication: Arc<crate::replication::Replication>,
}

/// Overlays one topic config (validated by the metadata image, so parse failures cannot
/// happen; a value that somehow does not parse keeps the broker default) onto `c`.
fn apply_topic_config(c: &mut LogConfig, key: &str, value: &str) {
    let v = value.trim();
    let int = || v.parse::<i64>().ok();
    match key {
        "segment.bytes" => c.segment_bytes = int().map_or(c.segment_bytes, |x| x as u64),
        "segment.ms" => c.segment_ms = int().unwrap_or(c.segment_ms),
        // Kafka allows 0 (an index entry per batch); the log wants >= 1, which means the same.
        "index.interval.bytes" => {
            c.index_interval_bytes = int().map_or(c.index_interval_bytes, |x| x.max(1) as u32)
        }
        "max.message.bytes" => {
            c.max_message_bytes = int().map_or(c.max_message_bytes, |x| x as u32)
        }
        "flush.messages" => {
            c.flush_interval_messages = int().map_or(c.flush_interval_messages, |x| x as u64)
        }
        "flush.ms" => c.flush_interval_ms = int().or(c.flush_interval_ms),
        "retention.ms" => c.retention_ms = int().unwrap_or(c.retention_ms),
        "retention.bytes" => c.retention_bytes = int().unwrap_or(c.retention_bytes),
        "message.timestamp.type" => {
            c.timestamp_type = if v == "LogAppendTime" {
                TimestampType::LogAppendTime
            } else {
                TimestampType::CreateTime
            }
        }
        "message.timestamp.before.max.ms" => {
            c.timestamp_before_max_ms = int().unwrap_or(c.timestamp_before_max_ms)
        }
        "message.timestamp.after.max.ms" => {
            c.timestamp_after_max_ms = int().unwrap_or(c.timestamp_after_max_ms)
        }
        "cleanup.policy" => c.cleanup_policy = CleanupPolicy::parse(v).unwrap_or(c.cleanup_policy),
        "delete.retention.ms" => c.delete_retention_ms = int().unwrap_or(c.delete_retention_ms),
        "min.cleanable.dirty.ratio" => {
            c.min_cleanable_dirty_ratio = v
                .parse::<f64>()
                .ok()
                .filter(|r| (0.0..=1.0).contains(r))
                .unwrap_or(c.min_cleanable_dirty_ratio)
        }
        "min.compaction.lag.ms" => {
            c.min_compaction_lag_ms = int().unwrap_or(c.min_compaction_lag_ms)
        }
        "max.compaction.lag.ms" => {
            c.max_compaction_lag_ms = int().unwrap_or(c.max_compaction_lag_ms)
        }
        "compression.type" => {
            if let Some(codec) = CompressionConfig::codec_named(v) {
                c.compression.codec = codec;
            }
        }
        "compression.gzip.level" => {
            c.compression.gzip_level = int().map_or(c.compression.gzip_level, |x| x as i32)
        }
        "compression.lz4.level" => {
            c.compression.lz4_level = int().map_or(c.compression.lz4_level, |x| x as i32)
        }
        "compression.zstd.level" => {
            c.compression.zstd_level = int().map_or(c.compression.zstd_level, |x| x as i32)
        }
        // The rest are stored for Kafka compatibility
        // (min.insync.replicas is read by the produce path, not the log).
        _ => {}
    }
}

fn now_ms() -> i64 {
    crate::clock::now_ms()
}

impl PartitionRegistry {
    pub fn open(
        data_dir: &Path,
        node_id: i32,
        settings: BrokerSettings,
    ) -> Result<Self, BrokerError> {
        let logs = LogManager::open(data_dir, now_ms())?;
        let replication =
            crate::replication::Replication::new(node_id, settings.replica_lag_time_max_ms);
        Ok(PartitionRegistry {
            node_id,
            settings,
            logs,
            partitions: RwLock::new(HashMap::new()),
            replication,
        })
    }

    /// The replication hub the hosted partitions share.
    pub fn replication(&self) -> &Arc<crate::replication::Replication> {
        &self.replication
    }

    /// This broker's effective settings under the image's dynamic broker configs.
    pub fn effective_settings(&self, image: &Image) -> BrokerSettings {
        self.settings.effective(image, self.node_id)
    }

    /// The log configuration for one topic: the effective broker settings (static and dynamic)
    /// overlaid with the topic's configs.
    pub fn log_config_for(&self, topic: &Topic, image: &Image) -> LogConfig {
        self.log_config_with(topic, &self.effective_settings(image))
    }

    fn log_config_with(&self, topic: &Topic, settings: &BrokerSettings) -> LogConfig {
        let mut c = settings.log_config();
        for (k, v) in &topic.configs {
            apply_topic_config(&mut c, k, v);
        }
        // Kafka: the test-only size wins over segment.bytes whatever the order.
        if let Some(v) = topic.configs.get("internal.segment.bytes") {
            c.segment_bytes = v.trim().parse().unwrap_or(c.segment_bytes);
        }
        c
    }

    fn min_insync_for(topic: &Topic, settings: &BrokerSettings) -> i32 {
        topic
            .configs
            .get("min.insync.replicas")
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(settings.min_insync_replicas)
    }

    fn open_topic(&self, topic: &Topic, image: &Image) -> Result<(), BrokerError> {
        let settings = self.effective_settings(image);
        let config = self.log_config_with(topic, &settings);
        for p in &topic.partitions {
            if !p.replicas.contains(&self.node_id) {
                continue;
            }
            let key = (topic.topic_id, p.partition);
            if self
                .partitions
                .read()
                .expect("registry lock")
                .contains_key(&key)
            {
                continue;
            }
            let log = self.logs.open_partition(
                &topic.name,
                p.partition,
                topic.topic_id.0,
                config.clone(),
                now_ms(),
            )?;
            let partition = Arc::new(Partition {
                topic: topic.name.clone(),
                topic_id: topic.topic_id,
                index: p.partition,
                log,
                min_insync_replicas: AtomicI32::new(Self::min_insync_for(topic, &settings)),
                replica: Default::default(),
                replication: self.replication.clone(),
                metrics: Default::default(),
            });
            self.partitions
                .write()
                .expect("registry lock")
                .insert(key, partition);
        }
        Ok(())
    }

    fn delete_topic(&self, topic: &Topic) -> Result<(), BrokerError> {
        for p in &topic.partitions {
            let removed = self
                .partitions
                .write()
                .expect("registry lock")
                .remove(&(topic.topic_id, p.partition));
            if let Some(partition) = removed {
                // No append (leader or follower) may reach the log once it closes.
                partition.retire();
                if let Err(e) = partition.log.close() {
                    warn!(topic = %topic.name, partition = p.partition, "closing deleted partition: {e}");
                }
                self.logs.delete_partition(&topic.name, p.partition)?;
            }
        }
        Ok(())
    }

    /// Start-up, once `image` has caught up with the chain's commit: renames the logs the
    /// image does not name to `-stray` (kept, never deleted), then opens the ones it does.
    pub fn reconcile(&self, image: &Image) -> Result<(), BrokerError> {
        for (name, partition, topic_id) in self.logs.existing() {
            let hosted = image.topics.get(&TopicId(topic_id)).is_some_and(|t| {
                t.name == name
                    && t.partitions
                        .iter()
                        .any(|p| p.partition == partition && p.replicas.contains(&self.node_id))
            });
            if !hosted && self.get(TopicId(topic_id), partition).is_none() {
                let stray = self.logs.stray_partition(&name, partition)?;
                warn!(topic = %name, partition, topic_id = %TopicId(topic_id), kept_as = %stray.display(), "partition log not in the metadata: kept aside as a stray");
            }
        }
        self.open_all(image)
    }

    /// Opens every log the image assigns to this broker (none is closed or deleted).
    pub fn open_all(&self, image: &Image) -> Result<(), BrokerError> {
        let mut first_error = None;
        for topic in image.topics.values() {
            if let Err(e) = self.open_topic(topic, image) {
                // One unopenable log (say another topic id on disk) must not hide the others.
                warn!(topic = %topic.name, "cannot open partition logs: {e}");
                first_error.get_or_insert(e);
            }
        }
        match first_error {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// The image was replaced by a snapshot from the chain leader: delete the logs of topics
    /// it no longer has (their deletion was committed), open the new ones, push configs.
    pub fn on_image_replaced(&self, previous: &Image, next: &Image) -> Result<(), BrokerError> {
        for topic in previous.topics.values() {
            if !next.topics.contains_key(&topic.topic_id) {
                self.delete_topic(topic)?;
            }
        }
        self.open_all(next)?;
        let settings = self.effective_settings(next);
        for topic in next.topics.values() {
            self.reconfigure_topic(topic, &settings);
        }
        Ok(())
    }

    /// Pushes the topic's current effective configuration into its open logs (AlterConfigs):
    /// the log applies it from its next append, tick or clean. `min.insync.replicas` lives on
    /// the [`Partition`] and changes in place.
    fn reconfigure_topic(&self, topic: &Topic, settings: &BrokerSettings) {
        let config = self.log_config_with(topic, settings);
        let min_insync_replicas = Self::min_insync_for(topic, settings);
        for p in &topic.partitions {
            let Some(partition) = self.get(topic.topic_id, p.partition) else {
                continue;
            };
            if partition.log.config() != config {
                if let Err(e) = partition.log.update_config(config.clone()) {
                    warn!(topic = %topic.name, partition = p.partition, "config update refused by the log: {e}");
                }
            }
            if partition
                .min_insync_replicas
                .swap(min_insync_replicas, Ordering::Relaxed)
                != min_insync_replicas
            {
                partition.on_min_insync_changed(min_insync_replicas);
            }
        }
    }

    /// Carries out the file-side effects of an applied metadata command; `image` is the image
    /// after it.
    pub fn on_applied(&self, applied: &Applied, image: &Image) -> Result<(), BrokerError> {
        match applied {
            Applied::TopicCreated { topic } | Applied::PartitionsCreated { topic, .. } => {
                self.open_topic(topic, image)
            }
            Applied::TopicDeleted { topic } => self.delete_topic(topic),
            Applied::TopicConfigsAltered { topic } => {
                self.reconfigure_topic(topic, &self.effective_settings(image));
                Ok(())
            }
            Applied::BrokerConfigsAltered { broker_id } => {
                if broker_id.is_none_or(|id| id == self.node_id) {
                    let settings = self.effective_settings(image);
                    for topic in image.topics.values() {
                        self.reconfigure_topic(topic, &settings);
                    }
                }
                Ok(())
            }
            Applied::Batch(all) => all.iter().try_for_each(|a| self.on_applied(a, image)),
            Applied::ClusterInitialized { .. }
            | Applied::BrokerRegistered { .. }
            | Applied::ProducerIdsAllocated { .. }
            | Applied::BrokerFenced { .. }
            | Applied::BrokerUnfenced { .. }
            | Applied::ControlledShutdownBegun { .. }
            | Applied::PartitionChanged { .. }
            | Applied::AclsCreated { .. }
            | Applied::AclsDeleted { .. }
            | Applied::BrokerListenersSet { .. }
            | Applied::GroupConfigsAltered { .. }
            | Applied::ScramCredentialsAltered { .. } => Ok(()),
        }
    }

    pub fn get(&self, topic_id: TopicId, partition: i32) -> Option<Arc<Partition>> {
        self.partitions
            .read()
            .expect("registry lock")
            .get(&(topic_id, partition))
            .cloned()
    }

    pub fn all(&self) -> Vec<Arc<Partition>> {
        self.partitions
            .read()
            .expect("registry lock")
            .values()
            .cloned()
            .collect()
    }

    /// Writes every hosted partition's high watermark to the data directory's
    /// `replication-offset-checkpoint` (Kafka's `checkpointHighWatermarks`); a failure is
    /// logged, the next call retries. Blocks on file I/O.
    pub fn checkpoint_high_watermarks(&self) {
        let entries: Vec<(String, i32, i64)> = self
            .all()
            .iter()
            .map(|p| (p.topic.clone(), p.index, p.log.high_watermark()))
            .collect();
        if let Err(e) = self.logs.checkpoint_high_watermarks(&entries) {
            warn!("high watermark checkpoint failed: {e}");
        }
    }

    /// Clean shutdown: checkpoint the high watermarks, then flush and close every log (writes
    /// the clean-shutdown markers).
    pub fn close_all(&self) {
        self.checkpoint_high_watermarks();
        for p in self.all() {
            if let Err(e) = p.log.close() {
                warn!(topic = %p.topic, partition = p.index, "close failed: {e}");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use josefine_meta::topic_config::{validate_topic_config, TOPIC_CONFIGS};

    /// Topic configs Josefine stores but that change nothing in the log (documented as such in
    /// the README), or that live outside it.
    const NOT_IN_LOG_CONFIG: &[&str] = &[
        "min.insync.replicas", // on Partition, read by produce
        "file.delete.delay.ms",
        "preallocate",
        "segment.index.bytes",
        "segment.jitter.ms",
        "unclean.leader.election.enable",
    ];

    /// A valid value different from Kafka's default.
    fn other_value(name: &str) -> &'static str {
        match name {
            "cleanup.policy" => "compact",
            "compression.type" => "zstd",
            "compression.gzip.level" => "5",
            "compression.lz4.level" => "4",
            "compression.zstd.level" => "7",
            "message.timestamp.type" => "LogAppendTime",
            "min.cleanable.dirty.ratio" => "0.25",
            "segment.bytes" | "internal.segment.bytes" => "2097152",
            "max.compaction.lag.ms" | "flush.messages" | "message.timestamp.before.max.ms" => {
                "5000"
            }
            _ => "4242",
        }
    }

    #[test]
    fn every_honoured_topic_config_reaches_the_log_config() {
        for def in TOPIC_CONFIGS {
            if NOT_IN_LOG_CONFIG.contains(&def.name) {
                continue;
            }
            let value = other_value(def.name);
            validate_topic_config(def.name, value).unwrap();
            let mut c = LogConfig::default();
            if def.name == "internal.segment.bytes" {
                // Applied after the loop in log_config_with; emulate it.
                c.segment_bytes = value.parse().unwrap();
            } else {
                apply_topic_config(&mut c, def.name, value);
            }
            assert_ne!(c, LogConfig::default(), "{} is not mapped", def.name);
        }
        let mut c = LogConfig::default();
        apply_topic_config(&mut c, "cleanup.policy", "delete,compact");
        assert_eq!(c.cleanup_policy, CleanupPolicy::CompactDelete);
        apply_topic_config(&mut c, "index.interval.bytes", "0");
        assert_eq!(c.index_interval_bytes, 1, "Kafka's 0 means every batch");
    }
}

//! The data directory: one `<topic>-<partition>` directory per partition, each with a
//! `partition.metadata` file naming its topic id as Kafka writes it
//! (`version: 0` / `topic_id: <url-safe base64 uuid>`), and one
//! `replication-offset-checkpoint` holding every partition's high watermark in Kafka's format
//! (`0\n<n>\n<topic> <partition> <hw>\n`...).
//!
//! Owns: finding, creating and deleting partition directories, the map of open logs, and the
//! high-watermark checkpoint (read at `open`, handed to each partition as it opens, rewritten
//! atomically by [`LogManager::checkpoint_high_watermarks`]).
//! Must never: open a partition twice (two writers on one log would interleave appends), or
//! leave a half-deleted partition that looks live (deletion renames first, then removes).

use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use crate::{LogConfig, LogError, PartitionLog};

const METADATA_FILE: &str = "partition.metadata";
const DELETE_SUFFIX: &str = "-delete";
/// Suffix of a partition directory kept aside because the metadata did not name it (Kafka's
/// `UnifiedLog.StrayDirSuffix`); never opened or deleted by the broker.
pub const STRAY_SUFFIX: &str = "-stray";

/// Lock file in the data directory, held (flock) for the manager's lifetime as Kafka holds
/// `.lock`: a second broker process on the same directory would interleave appends.
const LOCK_FILE: &str = ".lock";

/// Kafka's `ReplicaManager.HighWatermarkFilename`: the high watermarks of the data directory.
pub const HIGH_WATERMARK_CHECKPOINT_FILE: &str = "replication-offset-checkpoint";

/// Parse Kafka's offset checkpoint text (`0\n<n>\n<topic> <partition> <offset>\n`...); None
/// when damaged.
fn parse_high_watermarks(text: &str) -> Option<HashMap<(String, i32), i64>> {
    let mut lines = text.lines();
    if lines.next()?.trim() != "0" {
        return None;
    }
    let n: usize = lines.next()?.trim().parse().ok()?;
    if n > crate::limits::HIGH_WATERMARK_ENTRIES_MAX {
        return None;
    }
    let mut out = HashMap::new();
    for _ in 0..n {
        let mut parts = lines.next()?.split_whitespace();
        let topic = parts.next()?.to_string();
        let partition: i32 = parts.next()?.parse().ok()?;
        let offset: i64 = parts.next()?.parse().ok()?;
        if parts.next().is_some() || partition < 0 {
            return None;
        }
        out.insert((topic, partition), offset);
    }
    Some(out)
}

fn encode_high_watermarks(entries: &[(String, i32, i64)]) -> String {
    let mut out = format!("0\n{}\n", entries.len());
    for (topic, partition, hw) in entries {
        out.push_str(&format!("{topic} {partition} {hw}\n"));
    }
    out
}

/// The set of partition logs under one data directory.
pub struct LogManager {
    data_dir: PathBuf,
    /// Held open to keep the exclusive lock.
    _lock: fs::File,
    found: Vec<(String, i32, [u8; 16])>,
    open: Mutex<HashMap<(String, i32), Arc<PartitionLog>>>,
    /// The last checkpointed high watermark of each partition (as read at `open`, then as
    /// last written): what a partition opened from now on starts with.
    high_watermarks: Mutex<HashMap<(String, i32), i64>>,
}

const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/// Kafka's `Uuid.toString`: URL-safe base64 without padding (22 characters).
pub fn topic_id_to_string(id: &[u8; 16]) -> String {
    let mut out = String::with_capacity(22);
    let mut bits: u32 = 0;
    let mut n = 0;
    for &b in id {
        bits = (bits << 8) | b as u32;
        n += 8;
        while n >= 6 {
            n -= 6;
            out.push(B64[((bits >> n) & 63) as usize] as char);
        }
    }
    if n > 0 {
        out.push(B64[((bits << (6 - n)) & 63) as usize] as char);
    }
    out
}

/// Inverse of [`topic_id_to_string`].
pub fn topic_id_from_string(s: &str) -> Option<[u8; 16]> {
    if s.len() != 22 {
        return None;
    }
    let mut out = [0u8; 16];
    let (mut bits, mut n, mut i) = (0u32, 0, 0);
    for c in s.bytes() {
        let v = B64.iter().position(|&x| x == c)? as u32;
        bits = (bits << 6) | v;
        n += 6;
        if n >= 8 {
            n -= 8;
            if i < 16 {
                out[i] = (bits >> n) as u8;
            }
            i += 1;
        }
    }
    (i == 16).then_some(out)
}

fn parse_dir_name(name: &str) -> Option<(String, i32)> {
    let (topic, partition) = name.rsplit_once('-')?;
    let partition: i32 = partition.parse().ok()?;
    (!topic.is_empty() && partition >= 0).then(|| (topic.to_string(), partition))
}

fn read_metadata(dir: &Path) -> Option<[u8; 16]> {
    let text = fs::read_to_string(dir.join(METADATA_FILE)).ok()?;
    let mut version_ok = false;
    let mut id = None;
    for line in text.lines() {
        if let Some(v) = line.strip_prefix("version:") {
            version_ok = v.trim() == "0";
        } else if let Some(v) = line.strip_prefix("topic_id:") {
            id = topic_id_from_string(v.trim());
        }
    }
    if version_ok {
        id
    } else {
        None
    }
}

fn io_err(context: String) -> impl FnOnce(std::io::Error) -> LogError {
    move |e| LogError::storage(context, e)
}

impl LogManager {
    /// Scan `data_dir` (creating it if missing) for partition directories; opens none.
    /// Finishes deletions interrupted by a crash.
    pub fn open(data_dir: &Path, now_ms: i64) -> Result<Self, LogError> {
        let _ = now_ms;
        fs::create_dir_all(data_dir).map_err(io_err(format!("creating {}", data_dir.display())))?;
        let lock_path = data_dir.join(LOCK_FILE);
        let lock = fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(io_err(format!("opening {}", lock_path.display())))?;
        lock.try_lock().map_err(|e| {
            LogError::storage(
                format!("{} is in use by another process", data_dir.display()),
                std::io::Error::new(std::io::ErrorKind::WouldBlock, e.to_string()),
            )
        })?;
        let mut found = Vec::new();
        for entry in
            fs::read_dir(data_dir).map_err(io_err(format!("listing {}", data_dir.display())))?
        {
            let entry = entry.map_err(io_err(format!("listing {}", data_dir.display())))?;
            if !entry.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                continue;
            }
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.ends_with(DELETE_SUFFIX) {
                if let Err(e) = fs::remove_dir_all(entry.path()) {
                    tracing::warn!(dir = name, error = %e, "could not finish deleting a partition");
                }
                continue;
            }
            let Some((topic, partition)) = parse_dir_name(&name) else {
                continue;
            };
            match read_metadata(&entry.path()) {
                Some(id) => found.push((topic, partition, id)),
                None => tracing::warn!(
                    dir = name,
                    "partition directory without a readable partition.metadata; ignored"
                ),
            }
        }
        found.sort();
        let hw_path = data_dir.join(HIGH_WATERMARK_CHECKPOINT_FILE);
        let high_watermarks = match fs::read_to_string(&hw_path) {
            Ok(text) => parse_high_watermarks(&text).unwrap_or_else(|| {
                // Kafka fails the directory here; every HW then starts at its log start, which
                // only delays consumers until the leader moves it again.
                tracing::warn!(path = %hw_path.display(), "damaged high-watermark checkpoint ignored");
                HashMap::new()
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => HashMap::new(),
            Err(e) => return Err(LogError::storage(format!("reading {}", hw_path.display()), e)),
        };
        Ok(LogManager {
            data_dir: data_dir.to_path_buf(),
            _lock: lock,
            found,
            open: Mutex::new(HashMap::new()),
            high_watermarks: Mutex::new(high_watermarks),
        })
    }

    /// Write `entries` (topic, partition, high watermark), one per hosted partition, as the
    /// directory's `replication-offset-checkpoint`, atomically (temp file, fsync, rename, fsync
    /// the directory): a crash leaves the old file or the new one. An open partition not
    /// listed is dropped from it; one not opened yet since `open` (the broker opens logs as its
    /// metadata catches up) keeps its entry, so an early checkpoint cannot lose it. The broker
    /// calls this every `replica.high.watermark.checkpoint.interval.ms` and at clean shutdown.
    pub fn checkpoint_high_watermarks(
        &self,
        entries: &[(String, i32, i64)],
    ) -> Result<(), LogError> {
        let open: std::collections::HashSet<(String, i32)> = self
            .open
            .lock()
            .expect("manager lock")
            .keys()
            .cloned()
            .collect();
        let mut current = self.high_watermarks.lock().expect("high watermarks lock");
        let mut next: HashMap<(String, i32), i64> = current
            .iter()
            .filter(|(key, _)| !open.contains(*key))
            .map(|(key, hw)| (key.clone(), *hw))
            .collect();
        next.extend(entries.iter().map(|(t, p, hw)| ((t.clone(), *p), *hw)));
        let mut all: Vec<(String, i32, i64)> = next
            .iter()
            .map(|((t, p), hw)| (t.clone(), *p, *hw))
            .collect();
        all.sort();
        let path = self.data_dir.join(HIGH_WATERMARK_CHECKPOINT_FILE);
        crate::partition::write_file_atomically(&path, encode_high_watermarks(&all).as_bytes())?;
        crate::partition::sync_dir(&self.data_dir)?;
        *current = next;
        Ok(())
    }

    /// The high watermark last checkpointed for a partition (read at `open` or last written).
    pub fn checkpointed_high_watermark(&self, topic: &str, partition: i32) -> Option<i64> {
        self.high_watermarks
            .lock()
            .expect("high watermarks lock")
            .get(&(topic.to_string(), partition))
            .copied()
    }

    /// Partitions found on disk at `open`: (topic, partition, topic id).
    pub fn existing(&self) -> Vec<(String, i32, [u8; 16])> {
        self.found.clone()
    }

    fn partition_dir(&self, topic: &str, partition: i32) -> PathBuf {
        self.data_dir.join(format!("{topic}-{partition}"))
    }

    /// Open (creating or recovering) one partition's log; the same Arc for repeated calls.
    /// A directory holding another topic id (a deleted and re-created topic whose deletion did
    /// not finish) is an error rather than silently reused.
    pub fn open_partition(
        &self,
        topic: &str,
        partition: i32,
        topic_id: [u8; 16],
        config: LogConfig,
        now_ms: i64,
    ) -> Result<Arc<PartitionLog>, LogError> {
        if topic.is_empty() || topic.contains('/') || topic == "." || topic == ".." || partition < 0
        {
            return Err(LogError::InvalidRecord(format!(
                "bad partition name {topic}-{partition}"
            )));
        }
        let mut open = self.open.lock().expect("manager lock");
        let key = (topic.to_string(), partition);
        if let Some(log) = open.get(&key) {
            if log.topic_id() != topic_id {
                return Err(LogError::InconsistentTopicId(format!(
                    "{topic}-{partition} is open with another topic id"
                )));
            }
            return Ok(log.clone());
        }
        let dir = self.partition_dir(topic, partition);
        fs::create_dir_all(&dir).map_err(io_err(format!("creating {}", dir.display())))?;
        match read_metadata(&dir) {
            Some(id) if id != topic_id => {
                return Err(LogError::InconsistentTopicId(format!(
                    "{} holds topic id {}, expected {}",
                    dir.display(),
                    topic_id_to_string(&id),
                    topic_id_to_string(&topic_id)
                )));
            }
            Some(_) => {}
            None => {
                let text = format!("version: 0\ntopic_id: {}\n", topic_id_to_string(&topic_id));
                let tmp = dir.join("partition.metadata.tmp");
                let write = || -> std::io::Result<()> {
                    let mut f = fs::File::create(&tmp)?;
                    std::io::Write::write_all(&mut f, text.as_bytes())?;
                    f.sync_all()?;
                    fs::rename(&tmp, dir.join(METADATA_FILE))?;
                    fs::File::open(&dir)?.sync_all()?;
                    fs::File::open(&self.data_dir)?.sync_all()
                };
                write().map_err(io_err(format!("writing {}/{METADATA_FILE}", dir.display())))?;
            }
        }
        let checkpointed = self.checkpointed_high_watermark(topic, partition);
        let log = Arc::new(PartitionLog::open_with_high_watermark(
            &dir,
            topic_id,
            config,
            now_ms,
            checkpointed,
        )?);
        open.insert(key, log.clone());
        Ok(log)
    }

    /// Keeps a partition's directory out of the way without deleting it: renames
    /// `<topic>-<partition>` to `<topic>-<partition>.<n>-stray` (Kafka's stray suffix), which
    /// `open` ignores from then on. For logs the metadata does not name at start-up: the data
    /// stays on disk for an operator to inspect or restore. Returns the new path.
    pub fn stray_partition(&self, topic: &str, partition: i32) -> Result<PathBuf, LogError> {
        let mut open = self.open.lock().expect("manager lock");
        if let Some(log) = open.remove(&(topic.to_string(), partition)) {
            let _ = log.close();
        }
        self.high_watermarks
            .lock()
            .expect("high watermarks lock")
            .remove(&(topic.to_string(), partition));
        let dir = self.partition_dir(topic, partition);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        let stray = self
            .data_dir
            .join(format!("{topic}-{partition}.{nanos:x}{STRAY_SUFFIX}"));
        fs::rename(&dir, &stray)
            .map_err(io_err(format!("renaming {} to a stray", dir.display())))?;
        fs::File::open(&self.data_dir)
            .and_then(|d| d.sync_all())
            .map_err(io_err("fsync data dir".into()))?;
        Ok(stray)
    }

    /// Close and forget the partition, rename its directory to `<name>.<n>-delete`, then
    /// remove it. A crash in between leaves a `-delete` directory that `open` removes.
    pub fn delete_partition(&self, topic: &str, partition: i32) -> Result<(), LogError> {
        let mut open = self.open.lock().expect("manager lock");
        if let Some(log) = open.remove(&(topic.to_string(), partition)) {
            // Stop writes; any reader still holding the Arc keeps its open files until dropped.
            let _ = log.close();
        }
        // A topic re-created under the same name must not inherit this HW.
        self.high_watermarks
            .lock()
            .expect("high watermarks lock")
            .remove(&(topic.to_string(), partition));
        let dir = self.partition_dir(topic, partition);
        if !dir.exists() {
            return Ok(());
        }
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        let doomed = self
            .data_dir
            .join(format!("{topic}-{partition}.{nanos:x}{DELETE_SUFFIX}"));
        fs::rename(&dir, &doomed)
            .map_err(io_err(format!("renaming {} for deletion", dir.display())))?;
        fs::File::open(&self.data_dir)
            .and_then(|d| d.sync_all())
            .map_err(io_err("fsync data dir".into()))?;
        fs::remove_dir_all(&doomed).map_err(io_err(format!("removing {}", doomed.display())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topic_id_base64_matches_kafka_format() {
        // Kafka: Uuid(0, 1).toString() == "AAAAAAAAAAAAAAAAAAAAAQ"
        let mut id = [0u8; 16];
        id[15] = 1;
        assert_eq!(topic_id_to_string(&id), "AAAAAAAAAAAAAAAAAAAAAQ");
        let id: [u8; 16] = core::array::from_fn(|i| (i * 37 + 11) as u8);
        let s = topic_id_to_string(&id);
        assert_eq!(s.len(), 22);
        assert_eq!(topic_id_from_string(&s), Some(id));
        assert_eq!(topic_id_from_string("not-an-id"), None);
    }

    #[test]
    fn dir_names_split_on_the_last_dash() {
        assert_eq!(parse_dir_name("my-topic-12"), Some(("my-topic".into(), 12)));
        assert_eq!(parse_dir_name("t-x"), None);
        assert_eq!(parse_dir_name("-3"), None);
    }

    #[test]
    fn a_stray_partition_keeps_its_data_and_is_not_found_again() {
        let dir = tempfile::tempdir().unwrap();
        let id = [9u8; 16];
        {
            let m = LogManager::open(dir.path(), 0).unwrap();
            let log = m
                .open_partition("orders", 3, id, LogConfig::default(), 0)
                .unwrap();
            log.close().unwrap();
        }
        let stray = {
            let m = LogManager::open(dir.path(), 0).unwrap();
            assert_eq!(m.existing(), vec![("orders".to_string(), 3, id)]);
            m.stray_partition("orders", 3).unwrap()
        };
        let name = stray.file_name().unwrap().to_string_lossy().into_owned();
        assert!(
            name.starts_with("orders-3.") && name.ends_with(STRAY_SUFFIX),
            "{name}"
        );
        assert!(stray.join(METADATA_FILE).exists(), "the data stays");
        assert!(!dir.path().join("orders-3").exists());
        let m = LogManager::open(dir.path(), 0).unwrap();
        assert!(m.existing().is_empty(), "a stray is never opened");
        assert!(stray.exists(), "nor deleted");
    }

    #[test]
    fn open_existing_and_delete() {
        let dir = tempfile::tempdir().unwrap();
        let id = [7u8; 16];
        {
            let m = LogManager::open(dir.path(), 0).unwrap();
            assert!(m.existing().is_empty());
            let a = m
                .open_partition("orders-v1", 0, id, LogConfig::default(), 0)
                .unwrap();
            let b = m
                .open_partition("orders-v1", 0, id, LogConfig::default(), 0)
                .unwrap();
            assert!(Arc::ptr_eq(&a, &b));
            m.open_partition("orders-v1", 1, id, LogConfig::default(), 0)
                .unwrap();
            let other = m.open_partition("orders-v1", 0, [8; 16], LogConfig::default(), 0);
            assert_eq!(other.err().unwrap().kafka_error_code(), 103);
            a.close().unwrap();
        }
        let m = LogManager::open(dir.path(), 0).unwrap();
        // A second manager on the same directory is refused while the first one lives.
        assert_eq!(
            LogManager::open(dir.path(), 0)
                .err()
                .unwrap()
                .kafka_error_code(),
            56
        );
        assert_eq!(
            m.existing(),
            vec![
                ("orders-v1".to_string(), 0, id),
                ("orders-v1".to_string(), 1, id)
            ]
        );
        // Another topic id on disk is refused, not reused.
        assert_eq!(
            m.open_partition("orders-v1", 0, [9; 16], LogConfig::default(), 0)
                .err()
                .unwrap()
                .kafka_error_code(),
            103
        );
        m.delete_partition("orders-v1", 0).unwrap();
        assert!(!dir.path().join("orders-v1-0").exists());
        // A leftover -delete directory from a crash is removed on open.
        fs::create_dir_all(dir.path().join("x-0.abc-delete")).unwrap();
        drop(m);
        let m = LogManager::open(dir.path(), 0).unwrap();
        assert!(!dir.path().join("x-0.abc-delete").exists());
        assert_eq!(m.existing(), vec![("orders-v1".to_string(), 1, id)]);
    }
}

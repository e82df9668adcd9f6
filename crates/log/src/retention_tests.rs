//! Tests of retention, DeleteRecords, the log start checkpoint and runtime config updates.

use crate::batch::{BatchHeader, Compression};
use crate::testkit::{committed, BatchBuilder, Rec};
use crate::{CleanupPolicy, LogConfig, PartitionLog};

const NOW: i64 = 1_700_000_000_000;
const ID: [u8; 16] = [4; 16];

fn config() -> LogConfig {
    LogConfig {
        segment_bytes: 2048,
        index_interval_bytes: 256,
        ..LogConfig::default()
    }
}

fn batch(ts: i64, i: usize) -> Vec<u8> {
    BatchBuilder::new(ts)
        .compression(if i.is_multiple_of(2) {
            Compression::None
        } else {
            Compression::Lz4
        })
        .sized_records(3, 100)
        .build()
}

/// Append `n` batches with timestamp `ts` (appended at wall time `ts`).
fn fill(log: &PartitionLog, ts: i64, n: usize) {
    for i in 0..n {
        log.append(&batch(ts, i), 0, ts).unwrap();
    }
}

fn segment_files(dir: &std::path::Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains(".log") || n.contains(".index") || n.contains(".deleted"))
        .collect();
    v.sort();
    v
}

fn oor(log: &PartitionLog, offset: i64) -> bool {
    matches!(log.read(offset, 1 << 20, i64::MAX), Err(e) if e.kafka_error_code() == 1)
}

#[test]
fn retention_ms_deletes_only_expired_segments_and_moves_the_log_start() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = LogConfig {
        retention_ms: 60_000,
        ..config()
    };
    let log = PartitionLog::open(dir.path(), ID, cfg, NOW).unwrap();
    fill(&log, NOW, 40); // old data: several segments
    let old_end = log.log_end_offset();
    fill(&log, NOW + 100_000, 40); // newer data
    let segments_before = log.segment_count();
    let size_before = log.size_bytes();
    // At NOW + 120_000 the old batches are 120 s old (> 60 s), the new ones 20 s.
    let out = committed(&log).enforce_retention(NOW + 120_000).unwrap();
    assert!(out.segments_deleted > 0, "{out:?}");
    assert_eq!(log.segment_count(), segments_before - out.segments_deleted);
    assert_eq!(log.size_bytes(), size_before - out.bytes_deleted);
    let start = log.log_start_offset();
    assert_eq!(out.new_log_start_offset, start);
    // Only segments wholly made of old data went: the start is at or below the first new offset.
    assert!(
        start > 0 && start <= old_end,
        "start {start} old end {old_end}"
    );
    assert!(oor(&log, 0));
    assert!(oor(&log, start - 1));
    let r = log.read(start, 1 << 20, i64::MAX).unwrap();
    assert_eq!(BatchHeader::parse(&r.records).unwrap().base_offset, start);
    assert_eq!(r.log_start_offset, start);
    // Every record from the first new one on is still readable.
    assert!(log.read(old_end, 1 << 20, i64::MAX).is_ok());
    // Nothing to do a second time at the same instant.
    assert_eq!(
        committed(&log)
            .enforce_retention(NOW + 120_000)
            .unwrap()
            .segments_deleted,
        0
    );
    // The deleted segments' files are gone, with no .deleted leftovers.
    let files = segment_files(dir.path());
    assert!(files.iter().all(|f| !f.ends_with(".deleted")), "{files:?}");
    assert!(!files.contains(&format!("{:020}.log", 0)), "{files:?}");
    // The start survives a clean and an unclean restart.
    drop(log);
    let log = PartitionLog::open(dir.path(), ID, config(), NOW + 120_000).unwrap();
    assert_eq!(log.log_start_offset(), start);
    log.close().unwrap();
    let log = PartitionLog::open(dir.path(), ID, config(), NOW + 120_000).unwrap();
    assert_eq!(log.log_start_offset(), start);
}

#[test]
fn an_expired_active_segment_is_rolled_then_deleted_keeping_the_log_end() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = LogConfig {
        retention_ms: 1_000,
        segment_bytes: 1 << 20,
        ..config()
    };
    let log = PartitionLog::open(dir.path(), ID, cfg, NOW).unwrap();
    fill(&log, NOW, 5);
    assert_eq!(log.segment_count(), 1);
    let end = log.log_end_offset();
    // The newest record is at NOW + 2. Not expired yet at exactly retention.ms old (the rule
    // is "older than"), expired one millisecond later.
    assert_eq!(
        committed(&log)
            .enforce_retention(NOW + 1_002)
            .unwrap()
            .segments_deleted,
        0
    );
    let out = committed(&log).enforce_retention(NOW + 1_003).unwrap();
    assert_eq!(out.segments_deleted, 1);
    assert_eq!(log.segment_count(), 1, "a fresh active segment replaces it");
    assert_eq!(log.log_end_offset(), end);
    assert_eq!(log.log_start_offset(), end);
    assert_eq!(log.size_bytes(), 0);
    assert!(oor(&log, 0));
    let again = log.append(&batch(NOW + 2_000, 0), 0, NOW + 2_000).unwrap();
    assert_eq!(again.base_offset, end);
    assert_eq!(again.log_start_offset, end);
    // An empty active segment is never "expired".
    drop(log);
    let log = PartitionLog::open(
        dir.path(),
        ID,
        LogConfig {
            retention_ms: 1_000,
            ..config()
        },
        NOW,
    )
    .unwrap();
    assert_eq!(log.log_start_offset(), end);
    assert_eq!(log.log_end_offset(), end + 3);
}

#[test]
fn retention_bytes_deletes_oldest_segments_while_the_log_stays_over_the_limit() {
    let dir = tempfile::tempdir().unwrap();
    let log = PartitionLog::open(dir.path(), ID, config(), NOW).unwrap();
    fill(&log, NOW, 60);
    let before = log.size_bytes();
    let limit = (before / 2) as i64;
    log.update_config(LogConfig {
        retention_bytes: limit,
        ..config()
    })
    .unwrap();
    let out = committed(&log).enforce_retention(NOW).unwrap();
    assert!(out.segments_deleted > 0);
    let after = log.size_bytes();
    assert_eq!(after, before - out.bytes_deleted);
    // Kafka's rule: delete a segment only if the log stays at or above the limit without it.
    assert!(after as i64 >= limit, "{after} < {limit}");
    let segs = log.segments.read().unwrap().clone();
    assert!(
        (after - segs[0].size_bytes()) < limit as u64,
        "one more could have gone"
    );
    assert_eq!(log.log_start_offset(), segs[0].base_offset);
}

#[test]
fn compact_only_topics_and_unexpired_data_are_never_deleted() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = LogConfig {
        retention_ms: 1_000,
        retention_bytes: 0,
        cleanup_policy: CleanupPolicy::Compact,
        ..config()
    };
    let log = PartitionLog::open(dir.path(), ID, cfg.clone(), NOW).unwrap();
    for _ in 0..20 {
        log.append(
            &BatchBuilder::new(NOW).sized_records(3, 100).build(),
            0,
            NOW,
        )
        .unwrap();
    }
    assert_eq!(
        committed(&log)
            .enforce_retention(NOW + 10_000_000)
            .unwrap()
            .segments_deleted,
        0
    );
    assert_eq!(log.log_start_offset(), 0);
    // compact,delete deletes again.
    log.update_config(LogConfig {
        cleanup_policy: CleanupPolicy::CompactDelete,
        retention_bytes: -1,
        ..cfg
    })
    .unwrap();
    assert_eq!(
        committed(&log)
            .enforce_retention(NOW + 500)
            .unwrap()
            .segments_deleted,
        0,
        "unexpired"
    );
    assert!(
        committed(&log)
            .enforce_retention(NOW + 10_000)
            .unwrap()
            .segments_deleted
            > 0
    );
}

#[test]
fn delete_records_moves_the_log_start_deletes_covered_segments_and_persists() {
    let dir = tempfile::tempdir().unwrap();
    let log = PartitionLog::open(dir.path(), ID, config(), NOW).unwrap();
    fill(&log, NOW, 40);
    let segs_before = log.segment_count();
    assert!(segs_before > 3);
    let hw = committed(&log).high_watermark();
    // Above the high watermark, or negative other than -1: OFFSET_OUT_OF_RANGE.
    assert_eq!(
        committed(&log)
            .delete_records_before(hw + 1)
            .unwrap_err()
            .kafka_error_code(),
        1
    );
    assert_eq!(
        committed(&log)
            .delete_records_before(-2)
            .unwrap_err()
            .kafka_error_code(),
        1
    );
    // Inside a batch inside a middle segment.
    let target = hw / 2 + 1;
    assert_eq!(
        committed(&log).delete_records_before(target).unwrap(),
        target
    );
    assert_eq!(log.log_start_offset(), target);
    assert!(
        log.segment_count() < segs_before,
        "covered segments deleted"
    );
    assert!(log.segments.read().unwrap()[0].base_offset <= target);
    assert!(oor(&log, target - 1));
    // The batch holding the start is served whole (the client skips earlier records).
    let r = log.read(target, 1 << 20, i64::MAX).unwrap();
    let h = BatchHeader::parse(&r.records).unwrap();
    assert!(h.base_offset <= target && h.last_offset() >= target);
    assert_eq!(r.log_start_offset, target);
    // Never backwards.
    assert_eq!(committed(&log).delete_records_before(1).unwrap(), target);
    assert_eq!(log.log_start_offset(), target);
    // Unclean restart: the start inside a segment survives through the checkpoint.
    drop(log);
    let log = PartitionLog::open(dir.path(), ID, config(), NOW).unwrap();
    assert_eq!(log.log_start_offset(), target);
    assert!(oor(&log, target - 1));
    // ListOffsets by timestamp never answers below the log start.
    assert!(log.offset_for_timestamp(0).unwrap().0 >= target);
    // -1 = the high watermark: everything goes, appends continue at the end.
    assert_eq!(committed(&log).delete_records_before(-1).unwrap(), hw);
    assert_eq!(log.log_start_offset(), hw);
    assert_eq!(log.segment_count(), 1, "only the active segment is left");
    assert_eq!(log.append(&batch(NOW, 0), 0, NOW).unwrap().base_offset, hw);
    log.close().unwrap();
    let log = PartitionLog::open(dir.path(), ID, config(), NOW).unwrap();
    assert_eq!(log.log_start_offset(), hw);
}

#[test]
fn recovery_removes_deleted_leftovers_and_honours_a_checkpoint_ahead_of_the_segments() {
    let dir = tempfile::tempdir().unwrap();
    let log = PartitionLog::open(dir.path(), ID, config(), NOW).unwrap();
    fill(&log, NOW, 40);
    let segs = log.segments.read().unwrap().clone();
    let second = segs[1].base_offset;
    let third = segs[2].base_offset;
    drop(segs);
    drop(log);
    // A crash after the log start checkpoint was written but before the files were renamed:
    // the segments are still there, the checkpoint says they are gone.
    std::fs::write(dir.path().join("log-start-offset"), format!("0\n{third}\n")).unwrap();
    // And a crash after a rename but before the removal.
    std::fs::write(dir.path().join("00000000000000000999.log.deleted"), b"junk").unwrap();
    std::fs::write(
        dir.path().join("00000000000000000999.index.deleted"),
        b"junk",
    )
    .unwrap();
    let log = PartitionLog::open(dir.path(), ID, config(), NOW).unwrap();
    assert_eq!(log.log_start_offset(), third);
    assert!(oor(&log, second));
    assert!(segment_files(dir.path())
        .iter()
        .all(|f| !f.ends_with(".deleted")));
    // The next retention run deletes the segments wholly below the start.
    let out = committed(&log).enforce_retention(NOW).unwrap();
    assert_eq!(out.segments_deleted, 2);
    assert_eq!(log.segments.read().unwrap()[0].base_offset, third);
}

#[test]
fn config_updates_apply_at_runtime_and_bad_ones_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let log = PartitionLog::open(dir.path(), ID, config(), NOW).unwrap();
    // message.timestamp.after.max.ms: 2 hours ahead is refused by default (1 hour)...
    let future = BatchBuilder::new(NOW + 7_200_000).records(1).build();
    assert_eq!(
        log.append(&future, 0, NOW).unwrap_err().kafka_error_code(),
        32
    );
    // ...and accepted once the setting allows it.
    log.update_config(LogConfig {
        timestamp_after_max_ms: 10_000_000,
        ..config()
    })
    .unwrap();
    log.append(&future, 0, NOW).unwrap();
    // before.max.ms: an hour-old record refused with a 1-minute window.
    log.update_config(LogConfig {
        timestamp_before_max_ms: 60_000,
        ..config()
    })
    .unwrap();
    let past = BatchBuilder::new(NOW - 3_600_000).records(1).build();
    assert_eq!(
        log.append(&past, 0, NOW).unwrap_err().kafka_error_code(),
        32
    );
    // Keyless records: fine on delete topics, INVALID_RECORD on compacted ones.
    let keyless = BatchBuilder::new(NOW)
        .custom_records(vec![Rec {
            key: None,
            value: Some(b"v".to_vec()),
            headers: vec![],
        }])
        .build();
    log.update_config(config()).unwrap();
    log.append(&keyless, 0, NOW).unwrap();
    for policy in [CleanupPolicy::Compact, CleanupPolicy::CompactDelete] {
        log.update_config(LogConfig {
            cleanup_policy: policy,
            ..config()
        })
        .unwrap();
        let e = log.append(&keyless, 0, NOW).unwrap_err();
        assert_eq!(e.kafka_error_code(), 87, "{e}");
        log.append(&BatchBuilder::new(NOW).records(2).build(), 0, NOW)
            .unwrap();
    }
    // Invalid settings are INVALID_CONFIG and leave the old ones in place.
    for bad in [
        LogConfig {
            min_cleanable_dirty_ratio: 1.5,
            ..config()
        },
        LogConfig {
            delete_retention_ms: -1,
            ..config()
        },
        LogConfig {
            retention_ms: -2,
            ..config()
        },
        LogConfig {
            segment_bytes: 1,
            ..config()
        },
        LogConfig {
            max_compaction_lag_ms: 0,
            ..config()
        },
    ] {
        assert_eq!(log.update_config(bad).unwrap_err().kafka_error_code(), 40);
    }
    assert_eq!(log.config().cleanup_policy, CleanupPolicy::CompactDelete);
}

#[test]
fn cleanup_policy_parses_kafka_spellings() {
    assert_eq!(
        CleanupPolicy::parse("delete").unwrap(),
        CleanupPolicy::Delete
    );
    assert_eq!(
        CleanupPolicy::parse("compact").unwrap(),
        CleanupPolicy::Compact
    );
    assert_eq!(
        CleanupPolicy::parse("delete, compact").unwrap(),
        CleanupPolicy::CompactDelete
    );
    assert_eq!(
        CleanupPolicy::parse("compact,delete").unwrap().as_str(),
        "compact,delete"
    );
    assert_eq!(CleanupPolicy::parse("").unwrap_err().kafka_error_code(), 40);
    assert_eq!(
        CleanupPolicy::parse("compact,shred")
            .unwrap_err()
            .kafka_error_code(),
        40
    );
}

//! Tests of what replication needs from a partition log: the stored high watermark and its
//! checkpoint, the leader-epoch cache and its file, and the bounds the HW puts on retention,
//! DeleteRecords and the cleaner.

use std::sync::Arc;

use crate::batch::{BatchHeader, Compression};
use crate::leader_epochs::LEADER_EPOCH_FILE;
use crate::testkit::{committed, BatchBuilder, Rec};
use crate::{
    CleanerLimits, CleanupPolicy, LogConfig, LogManager, PartitionLog,
    HIGH_WATERMARK_CHECKPOINT_FILE,
};

const NOW: i64 = 1_700_000_000_000;
const ID: [u8; 16] = [5; 16];

fn config() -> LogConfig {
    LogConfig {
        segment_bytes: 2048,
        index_interval_bytes: 256,
        ..LogConfig::default()
    }
}

fn batch(i: usize) -> Vec<u8> {
    BatchBuilder::new(NOW + i as i64)
        .compression(if i.is_multiple_of(3) {
            Compression::Zstd
        } else {
            Compression::None
        })
        .sized_records(1 + i % 3, 90)
        .build()
}

/// Appends `epochs.len()` batches, the i-th stamped with `epochs[i]`; returns (base, last).
fn append(log: &PartitionLog, epochs: &[i32]) -> Vec<(i64, i64)> {
    epochs
        .iter()
        .enumerate()
        .map(|(i, &e)| {
            let out = log.append(&batch(i), e, NOW).unwrap();
            (out.base_offset, out.last_offset)
        })
        .collect()
}

#[test]
fn the_high_watermark_is_stored_clamped_and_reported_by_reads() {
    let dir = tempfile::tempdir().unwrap();
    let log = PartitionLog::open(dir.path(), ID, config(), NOW).unwrap();
    append(&log, &[0; 10]);
    let end = log.log_end_offset();
    assert_eq!(log.high_watermark(), 0, "appends do not move it");
    assert_eq!(log.read(0, 100, i64::MAX).unwrap().high_watermark, 0);
    assert_eq!(log.set_high_watermark(5), 5);
    assert_eq!(log.high_watermark(), 5);
    assert_eq!(log.read(0, 100, i64::MAX).unwrap().high_watermark, 5);
    assert_eq!(
        log.set_high_watermark(end + 100),
        end,
        "clamped to the log end"
    );
    assert_eq!(log.set_high_watermark(3), 3, "no monotonicity in the log");
    assert_eq!(log.set_high_watermark(-7), 0, "clamped to the log start");
    log.set_high_watermark(4);
    log.delete_records_before(4).unwrap();
    assert_eq!(log.set_high_watermark(1), 4);
    // Without a checkpoint a reopened log starts at its log start.
    log.close().unwrap();
    drop(log);
    let log = PartitionLog::open(dir.path(), ID, config(), NOW).unwrap();
    assert_eq!(log.high_watermark(), 4);
    let log2 = PartitionLog::open_with_high_watermark(
        tempfile::tempdir().unwrap().path(),
        ID,
        config(),
        NOW,
        Some(9),
    )
    .unwrap();
    assert_eq!(log2.high_watermark(), 0, "min(checkpoint, log end)");
    drop(log);
    let log =
        PartitionLog::open_with_high_watermark(dir.path(), ID, config(), NOW, Some(7)).unwrap();
    assert_eq!(log.high_watermark(), 7);
    let log_end = log.log_end_offset();
    drop(log);
    let log =
        PartitionLog::open_with_high_watermark(dir.path(), ID, config(), NOW, Some(log_end + 50))
            .unwrap();
    assert_eq!(log.high_watermark(), log_end, "min(checkpoint, log end)");
}

#[test]
fn the_high_watermark_checkpoint_round_trips_through_the_manager() {
    let dir = tempfile::tempdir().unwrap();
    let id = [7u8; 16];
    let end = {
        let m = LogManager::open(dir.path(), NOW).unwrap();
        let a = m.open_partition("orders", 0, id, config(), NOW).unwrap();
        let b = m.open_partition("orders", 1, id, config(), NOW).unwrap();
        append(&a, &[1; 6]);
        append(&b, &[1; 3]);
        a.set_high_watermark(4);
        b.set_high_watermark(b.log_end_offset());
        m.checkpoint_high_watermarks(&[
            ("orders".into(), 0, a.high_watermark()),
            ("orders".into(), 1, b.high_watermark()),
        ])
        .unwrap();
        // Kafka's text format.
        let text =
            std::fs::read_to_string(dir.path().join(HIGH_WATERMARK_CHECKPOINT_FILE)).unwrap();
        assert_eq!(
            text,
            format!("0\n2\norders 0 4\norders 1 {}\n", b.log_end_offset())
        );
        // Appends after the checkpoint, then a crash (no close).
        append(&b, &[1; 2]);
        b.set_high_watermark(b.log_end_offset());
        b.log_end_offset()
    };
    let m = LogManager::open(dir.path(), NOW).unwrap();
    let a = m.open_partition("orders", 0, id, config(), NOW).unwrap();
    let b = m.open_partition("orders", 1, id, config(), NOW).unwrap();
    assert_eq!(a.high_watermark(), 4);
    assert!(
        b.high_watermark() < end,
        "the checkpoint, not the last value"
    );
    let c = m.open_partition("other", 0, id, config(), NOW).unwrap();
    assert_eq!(c.high_watermark(), 0, "no entry: the log start");
    // A partition not opened yet keeps its entry; an open one not listed loses it.
    drop((a, b, c, m));
    let m = LogManager::open(dir.path(), NOW).unwrap();
    let b = m.open_partition("orders", 1, id, config(), NOW).unwrap();
    let c = m.open_partition("other", 0, id, config(), NOW).unwrap();
    m.checkpoint_high_watermarks(&[("orders".into(), 1, 3)])
        .unwrap();
    let text = std::fs::read_to_string(dir.path().join(HIGH_WATERMARK_CHECKPOINT_FILE)).unwrap();
    assert_eq!(
        text, "0\n2\norders 0 4\norders 1 3\n",
        "orders-0 is not open: kept"
    );
    let a = m.open_partition("orders", 0, id, config(), NOW).unwrap();
    assert_eq!(a.high_watermark(), 4);
    m.checkpoint_high_watermarks(&[("orders".into(), 1, 3)])
        .unwrap();
    let text = std::fs::read_to_string(dir.path().join(HIGH_WATERMARK_CHECKPOINT_FILE)).unwrap();
    assert_eq!(
        text, "0\n1\norders 1 3\n",
        "orders-0 is open and not listed: dropped"
    );
    // A deleted partition's entry is not inherited by a re-created one.
    m.delete_partition("orders", 0).unwrap();
    let a = m
        .open_partition("orders", 0, [8; 16], config(), NOW)
        .unwrap();
    assert_eq!(a.high_watermark(), 0);
    drop((a, b, c, m));
    // A damaged checkpoint is ignored: every HW starts at its log start.
    std::fs::write(
        dir.path().join(HIGH_WATERMARK_CHECKPOINT_FILE),
        "0\n2\norders 1\n",
    )
    .unwrap();
    let m = LogManager::open(dir.path(), NOW).unwrap();
    let b = m.open_partition("orders", 1, id, config(), NOW).unwrap();
    assert_eq!(b.high_watermark(), 0);
}

#[test]
fn retention_delete_records_and_the_cleaner_stay_below_the_high_watermark() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = LogConfig {
        retention_ms: 1,
        ..config()
    };
    let log = PartitionLog::open(dir.path(), ID, cfg, NOW).unwrap();
    append(&log, &[0; 40]);
    assert!(log.segment_count() > 4);
    let bases: Vec<i64> = log
        .segments
        .read()
        .unwrap()
        .iter()
        .map(|s| s.base_offset)
        .collect();
    // HW inside the third segment: only the first two may go.
    let hw = bases[2] + 1;
    log.set_high_watermark(hw);
    let out = log.enforce_retention(NOW + 10_000).unwrap();
    assert_eq!(out.segments_deleted, 2);
    assert_eq!(log.log_start_offset(), bases[2]);
    // DeleteRecords above the HW: OFFSET_OUT_OF_RANGE, -1 means the HW.
    assert_eq!(
        log.delete_records_before(hw + 1)
            .unwrap_err()
            .kafka_error_code(),
        1
    );
    assert_eq!(log.delete_records_before(-1).unwrap(), hw);
    assert_eq!(
        log.advance_log_start_offset(hw + 1)
            .unwrap_err()
            .kafka_error_code(),
        1
    );
    // Everything goes once the HW is the log end (the active segment rolls first).
    let end = committed(&log).log_end_offset();
    log.enforce_retention(NOW + 10_000).unwrap();
    assert_eq!(log.log_start_offset(), end);

    // The cleaner: a segment reaching the HW is not cleaned.
    let dir = tempfile::tempdir().unwrap();
    let cfg = LogConfig {
        cleanup_policy: CleanupPolicy::Compact,
        ..config()
    };
    let log = PartitionLog::open(dir.path(), ID, cfg, NOW).unwrap();
    let same_key = |i: usize| {
        BatchBuilder::new(NOW)
            .custom_records(vec![Rec {
                key: Some(b"k".to_vec()),
                value: Some(vec![i as u8; 200]),
                headers: vec![],
            }])
            .build()
    };
    for i in 0..40 {
        log.append(&same_key(i), 0, NOW).unwrap();
    }
    assert!(log.segment_count() > 3);
    assert_eq!(
        log.dirty_ratio(NOW),
        0.0,
        "HW at the log start: nothing cleanable"
    );
    assert_eq!(
        log.clean(NOW, &CleanerLimits::default())
            .unwrap()
            .records_removed,
        0
    );
    let second = log.segments.read().unwrap()[1].base_offset;
    log.set_high_watermark(second);
    // A follower follows its leader's log start on a compacted topic too (DeleteRecords is
    // refused there).
    assert_eq!(
        log.delete_records_before(1).unwrap_err().kafka_error_code(),
        44
    );
    assert_eq!(log.advance_log_start_offset(1).unwrap(), 1);
    assert_eq!(log.log_start_offset(), 1);
    let out = log.clean(NOW, &CleanerLimits::default()).unwrap();
    assert!(out.records_removed > 0);
    // Every record at or above the HW is still there.
    for offset in second..log.log_end_offset() {
        let r = log.read(offset, 1, i64::MAX).unwrap();
        assert_eq!(BatchHeader::parse(&r.records).unwrap().base_offset, offset);
    }
}

#[test]
fn appends_assign_their_epochs_and_the_cache_survives_reopening() {
    let dir = tempfile::tempdir().unwrap();
    let log = PartitionLog::open(dir.path(), ID, config(), NOW).unwrap();
    assert_eq!(log.latest_leader_epoch(), None);
    assert_eq!(log.end_offset_for_epoch(0), None);
    let at = append(&log, &[-1, 1, 1, 3, 3, 3, 7]);
    assert_eq!(log.latest_leader_epoch(), Some(7));
    assert_eq!(log.epoch_start_offset(1), Some(at[1].0));
    assert_eq!(log.epoch_start_offset(3), Some(at[3].0));
    assert_eq!(log.epoch_start_offset(2), None);
    assert_eq!(log.end_offset_for_epoch(1), Some((1, at[3].0)));
    assert_eq!(log.end_offset_for_epoch(2), Some((1, at[3].0)));
    assert_eq!(log.end_offset_for_epoch(5), Some((3, at[6].0)));
    assert_eq!(log.end_offset_for_epoch(7), Some((7, log.log_end_offset())));
    assert_eq!(log.end_offset_for_epoch(8), None);
    assert_eq!(log.end_offset_for_epoch(0), Some((0, at[1].0)));
    // A new leader records its epoch at the log end before it writes.
    log.assign_leader_epoch(9, log.log_end_offset()).unwrap();
    log.assign_leader_epoch(8, 0).unwrap(); // older: no-op
    assert_eq!(log.latest_leader_epoch(), Some(9));
    assert_eq!(log.end_offset_for_epoch(7), Some((7, log.log_end_offset())));
    let text = std::fs::read_to_string(dir.path().join(LEADER_EPOCH_FILE)).unwrap();
    assert_eq!(
        text,
        format!(
            "0\n4\n1 {}\n3 {}\n7 {}\n9 {}\n",
            at[1].0,
            at[3].0,
            at[6].0,
            log.log_end_offset()
        )
    );
    let at9 = append(&log, &[9]);
    assert_eq!(log.epoch_start_offset(9), Some(at9[0].0));
    log.close().unwrap();
    drop(log);
    let log = PartitionLog::open(dir.path(), ID, config(), NOW).unwrap();
    assert_eq!(
        std::fs::read_to_string(dir.path().join(LEADER_EPOCH_FILE)).unwrap(),
        text
    );
    assert_eq!(log.end_offset_for_epoch(3), Some((3, at[6].0)));
    // DeleteRecords trims the cache from the start.
    let end = committed(&log).log_end_offset();
    log.delete_records_before(at[4].0).unwrap();
    assert_eq!(log.epoch_start_offset(1), None);
    assert_eq!(log.epoch_start_offset(3), Some(at[4].0));
    assert_eq!(log.end_offset_for_epoch(1), Some((1, at[4].0)));
    log.delete_records_before(end).unwrap();
    assert_eq!(log.epoch_start_offset(9), Some(end));
    assert_eq!(log.latest_leader_epoch(), Some(9));
}

#[test]
fn a_log_without_the_cache_file_derives_it_once_from_the_batch_headers() {
    let dir = tempfile::tempdir().unwrap();
    let log = PartitionLog::open(dir.path(), ID, config(), NOW).unwrap();
    let at = append(&log, &[0, 0, 2, 2, 2, 2, 2, 2, 2, 2, 4, 5, 5, 5, 5, 5]);
    assert!(log.segment_count() > 2);
    let expected: Vec<_> = [0, 2, 4, 5]
        .iter()
        .map(|&e| log.end_offset_for_epoch(e))
        .collect();
    log.close().unwrap();
    drop(log);
    let file = dir.path().join(LEADER_EPOCH_FILE);
    for damage in [None, Some("0\n3\n1 0\n")] {
        match damage {
            None => std::fs::remove_file(&file).unwrap(),
            Some(text) => std::fs::write(&file, text).unwrap(),
        }
        let log = PartitionLog::open(dir.path(), ID, config(), NOW).unwrap();
        let got: Vec<_> = [0, 2, 4, 5]
            .iter()
            .map(|&e| log.end_offset_for_epoch(e))
            .collect();
        assert_eq!(got, expected, "{damage:?}");
        assert_eq!(log.epoch_start_offset(4), Some(at[10].0));
        assert!(file.exists(), "persisted after deriving");
    }
}

#[test]
fn an_entry_past_the_log_end_is_trimmed_at_open() {
    // A crash after the cache learnt an epoch and before its first batch was written.
    let dir = tempfile::tempdir().unwrap();
    let log = PartitionLog::open(dir.path(), ID, config(), NOW).unwrap();
    append(&log, &[1, 1]);
    let end = log.log_end_offset();
    log.assign_leader_epoch(2, end).unwrap();
    drop(log);
    std::fs::write(
        dir.path().join(LEADER_EPOCH_FILE),
        format!("0\n3\n1 0\n2 {end}\n3 {}\n", end + 5),
    )
    .unwrap();
    let log = PartitionLog::open(dir.path(), ID, config(), NOW).unwrap();
    assert_eq!(log.latest_leader_epoch(), Some(1));
    assert_eq!(log.end_offset_for_epoch(1), Some((1, end)));
}

#[test]
fn set_high_watermark_races_with_appends_stay_within_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let log = Arc::new(PartitionLog::open(dir.path(), ID, config(), NOW).unwrap());
    let writer = {
        let log = log.clone();
        std::thread::spawn(move || {
            for i in 0..200 {
                log.append(&batch(i), 0, NOW).unwrap();
                log.set_high_watermark(log.log_end_offset());
            }
        })
    };
    while !writer.is_finished() {
        let hw = log.high_watermark();
        assert!(hw <= log.log_end_offset());
        let r = log.read(0, 1 << 16, i64::MAX).unwrap();
        assert!(r.high_watermark <= r.log_end_offset);
    }
    writer.join().unwrap();
    assert_eq!(log.high_watermark(), log.log_end_offset());
}

//! Tests of `PartitionLog` as a whole: append/read, roll, indexes, recovery after torn or
//! corrupt tails, idempotence across restarts, durability bookkeeping and storage failures.

use std::path::Path;
use std::sync::Arc;

use crate::batch::{self, BatchHeader, Compression};
use crate::testkit::{committed, BatchBuilder};
use crate::{LogConfig, PartitionLog, TimestampType};

const NOW: i64 = 1_700_000_000_000;
const ID: [u8; 16] = [3; 16];

fn small_config() -> LogConfig {
    LogConfig {
        segment_bytes: 4096,
        index_interval_bytes: 256,
        ..LogConfig::default()
    }
}

/// Split a read result into batches, checking each is whole and CRC-valid.
fn batches(bytes: &[u8]) -> Vec<(BatchHeader, Vec<u8>)> {
    let mut out = Vec::new();
    let mut at = 0;
    while at < bytes.len() {
        let h = BatchHeader::parse(&bytes[at..]).expect("header");
        let b = &bytes[at..at + h.total_bytes()];
        batch::check_crc(b, &h).expect("crc");
        out.push((h, b.to_vec()));
        at += h.total_bytes();
    }
    out
}

/// Read everything from `from` to the end, batch by batch.
fn read_all(log: &PartitionLog, from: i64) -> Vec<(BatchHeader, Vec<u8>)> {
    let mut out = Vec::new();
    let mut next = from;
    while next < log.log_end_offset() {
        let r = log.read(next, 1000, i64::MAX).unwrap();
        let got = batches(&r.records);
        assert!(!got.is_empty(), "no progress at {next}");
        next = got.last().unwrap().0.last_offset() + 1;
        out.extend(got);
    }
    out
}

fn batch_n(i: usize) -> Vec<u8> {
    let codecs = [
        Compression::None,
        Compression::Gzip,
        Compression::Snappy,
        Compression::Lz4,
        Compression::Zstd,
    ];
    BatchBuilder::new(NOW + i as i64 * 10)
        .compression(codecs[i % 5])
        .sized_records(1 + i % 4, 20 + i * 3)
        .build()
}

#[test]
fn append_assigns_offsets_and_read_returns_whole_batches() {
    let dir = tempfile::tempdir().unwrap();
    let log = PartitionLog::open(dir.path(), ID, LogConfig::default(), NOW).unwrap();
    let mut expected_base = 0;
    for i in 0..20 {
        let b = batch_n(i);
        let n = BatchHeader::parse(&b).unwrap().records_count as i64;
        let out = log.append(&b, 5, NOW).unwrap();
        assert_eq!(out.base_offset, expected_base);
        assert_eq!(out.last_offset, expected_base + n - 1);
        assert_eq!(out.log_append_time_ms, -1);
        assert!(!out.duplicate);
        expected_base += n;
    }
    assert_eq!(log.log_end_offset(), expected_base);
    let all = read_all(&log, 0);
    assert_eq!(all.len(), 20);
    for (i, (h, bytes)) in all.iter().enumerate() {
        assert_eq!(h.partition_leader_epoch, 5);
        // Everything after the header's rewritten fields is the produced bytes.
        assert_eq!(
            &bytes[batch::ATTRIBUTES_AT..],
            &batch_n(i)[batch::ATTRIBUTES_AT..],
            "batch {i}"
        );
    }
    // Fetch from the middle of a batch starts at that batch.
    let mid = all[7].0.base_offset + all[7].0.last_offset_delta as i64;
    let r = log.read(mid, 1, i64::MAX).unwrap();
    let got = batches(&r.records);
    assert_eq!(got.len(), 1, "max_bytes=1 still returns one whole batch");
    assert_eq!(got[0].0.base_offset, all[7].0.base_offset);
    // max_bytes limits to whole batches.
    let two = all[3].1.len() + all[4].1.len();
    let got = batches(
        &log.read(all[3].0.base_offset, two, i64::MAX)
            .unwrap()
            .records,
    );
    assert_eq!(got.len(), 2);
    let got = batches(
        &log.read(all[3].0.base_offset, two - 1, i64::MAX)
            .unwrap()
            .records,
    );
    assert_eq!(got.len(), 1);
    // The high-watermark bound excludes batches at or past it.
    let got = batches(&log.read(0, 1 << 20, all[2].0.base_offset).unwrap().records);
    assert_eq!(got.len(), 2);
    // Out of range above the end; empty at the end.
    assert_eq!(
        log.read(expected_base + 1, 100, i64::MAX)
            .unwrap_err()
            .kafka_error_code(),
        1
    );
    assert!(log
        .read(expected_base, 100, i64::MAX)
        .unwrap()
        .records
        .is_empty());
    assert_eq!(
        log.read(-1, 100, i64::MAX).unwrap_err().kafka_error_code(),
        1
    );
}

#[test]
fn rejects_bad_produce_shapes_without_writing() {
    let dir = tempfile::tempdir().unwrap();
    let log = PartitionLog::open(dir.path(), ID, LogConfig::default(), NOW).unwrap();
    let b = batch_n(0);
    let mut two = b.clone();
    two.extend_from_slice(&b);
    assert_eq!(log.append(&two, 0, NOW).unwrap_err().kafka_error_code(), 87);
    assert_eq!(
        log.append(&b[..b.len() - 1], 0, NOW)
            .unwrap_err()
            .kafka_error_code(),
        87
    );
    assert_eq!(log.append(&[], 0, NOW).unwrap_err().kafka_error_code(), 2);
    let mut bad = b.clone();
    *bad.last_mut().unwrap() ^= 1;
    assert_eq!(log.append(&bad, 0, NOW).unwrap_err().kafka_error_code(), 2);
    assert_eq!(log.log_end_offset(), 0);
    assert_eq!(log.size_bytes(), 0);
}

#[test]
fn rolls_by_size_and_indexes_find_every_offset_after_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let log = PartitionLog::open(dir.path(), ID, small_config(), NOW).unwrap();
    for i in 0..200 {
        log.append(&batch_n(i), 0, NOW).unwrap();
    }
    assert!(log.segment_count() > 5, "segments: {}", log.segment_count());
    let leo = log.log_end_offset();
    let check = |log: &PartitionLog| {
        for off in 0..leo {
            let got = batches(&log.read(off, 1, i64::MAX).unwrap().records);
            assert_eq!(got.len(), 1);
            let h = got[0].0;
            assert!(
                h.base_offset <= off && off <= h.last_offset(),
                "offset {off} in {h:?}"
            );
        }
    };
    check(&log);
    let names: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(names.contains(&"00000000000000000000.log".to_string()));
    assert!(names.contains(&"00000000000000000000.index".to_string()));
    assert!(names.contains(&"00000000000000000000.timeindex".to_string()));
    log.close().unwrap();
    drop(log);
    let log = PartitionLog::open(dir.path(), ID, small_config(), NOW).unwrap();
    assert_eq!(log.log_end_offset(), leo);
    check(&log);
    // Appends continue where the log ended.
    assert_eq!(log.append(&batch_n(1), 0, NOW).unwrap().base_offset, leo);
}

#[test]
fn rolls_by_time_on_tick() {
    let dir = tempfile::tempdir().unwrap();
    let config = LogConfig {
        segment_ms: 1000,
        ..LogConfig::default()
    };
    let log = PartitionLog::open(dir.path(), ID, config, NOW).unwrap();
    log.tick(NOW + 5000).unwrap();
    assert_eq!(log.segment_count(), 1, "an empty segment never rolls");
    log.append(&batch_n(0), 0, NOW).unwrap();
    log.tick(NOW + 999).unwrap();
    assert_eq!(log.segment_count(), 1);
    log.tick(NOW + 1000).unwrap();
    assert_eq!(log.segment_count(), 2);
    // An append long after the last one also rolls.
    log.append(&batch_n(1), 0, NOW + 1000).unwrap();
    log.append(&batch_n(2), 0, NOW + 2500).unwrap();
    assert_eq!(log.segment_count(), 3);
    assert_eq!(read_all(&log, 0).len(), 3);
}

#[test]
fn log_append_time_is_stamped_with_a_valid_crc() {
    let dir = tempfile::tempdir().unwrap();
    let config = LogConfig {
        timestamp_type: TimestampType::LogAppendTime,
        ..LogConfig::default()
    };
    let log = PartitionLog::open(dir.path(), ID, config, NOW).unwrap();
    let out = log.append(&batch_n(2), 0, NOW + 42).unwrap();
    assert_eq!(out.log_append_time_ms, NOW + 42);
    let got = batches(&log.read(0, 1000, i64::MAX).unwrap().records);
    assert_eq!(got[0].0.timestamp_type(), TimestampType::LogAppendTime);
    assert_eq!(got[0].0.max_timestamp, NOW + 42);
    assert_eq!(log.max_timestamp(), Some((NOW + 42, 0)));
}

#[test]
fn timestamp_lookup_and_max_timestamp() {
    let dir = tempfile::tempdir().unwrap();
    let log = PartitionLog::open(dir.path(), ID, small_config(), NOW).unwrap();
    // Batch i holds records with timestamps NOW + 100*i + j.
    let mut firsts = Vec::new();
    for i in 0..60 {
        let b = BatchBuilder::new(NOW + 100 * i)
            .sized_records(3, 40)
            .build();
        firsts.push(log.append(&b, 0, NOW).unwrap().base_offset);
    }
    assert!(log.segment_count() > 2);
    assert_eq!(log.offset_for_timestamp(0), Some((0, NOW)));
    assert_eq!(log.offset_for_timestamp(NOW + 1), Some((1, NOW + 1)));
    assert_eq!(log.offset_for_timestamp(NOW + 3), Some((3, NOW + 100)));
    assert_eq!(
        log.offset_for_timestamp(NOW + 100 * 37 + 2),
        Some((firsts[37] + 2, NOW + 3702))
    );
    assert_eq!(log.offset_for_timestamp(NOW + 100 * 59 + 3), None);
    assert_eq!(log.max_timestamp(), Some((NOW + 5902, firsts[59] + 2)));
    log.close().unwrap();
    drop(log);
    let log = PartitionLog::open(dir.path(), ID, small_config(), NOW).unwrap();
    assert_eq!(
        log.offset_for_timestamp(NOW + 100 * 37 + 2),
        Some((firsts[37] + 2, NOW + 3702))
    );
    assert_eq!(log.max_timestamp(), Some((NOW + 5902, firsts[59] + 2)));
    drop(log);
    // Unclean, with no recovery point: every segment is walked and its indexes rebuilt.
    std::fs::remove_file(dir.path().join("recovery-point")).unwrap();
    std::fs::remove_file(dir.path().join("clean-shutdown")).ok();
    let log = PartitionLog::open(dir.path(), ID, small_config(), NOW).unwrap();
    assert_eq!(
        log.offset_for_timestamp(NOW + 3702),
        Some((firsts[37] + 2, NOW + 3702))
    );
    assert_eq!(log.offset_for_timestamp(NOW + 1), Some((1, NOW + 1)));
    assert_eq!(log.max_timestamp(), Some((NOW + 5902, firsts[59] + 2)));
}

/// A temp dir on tmpfs when there is one: the recovery sweep opens hundreds of logs and each
/// open fsyncs; on tmpfs that costs nothing and the logic under test is the same.
fn fast_tempdir() -> tempfile::TempDir {
    let shm = Path::new("/dev/shm");
    if shm.is_dir() {
        if let Ok(d) = tempfile::tempdir_in(shm) {
            return d;
        }
    }
    tempfile::tempdir().unwrap()
}

/// Build a log, stop it uncleanly, damage the last segment at `pos` with `damage`, reopen, and
/// check the log holds exactly the batches that ended before `pos`, byte for byte.
fn damage_and_recover(pos: u64, corrupt: bool, originals: &[(BatchHeader, Vec<u8>)], src: &Path) {
    let dir = fast_tempdir();
    for e in std::fs::read_dir(src).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), dir.path().join(e.file_name())).unwrap();
    }
    let mut logs: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "log"))
        .collect();
    logs.sort();
    let last = logs.last().unwrap();
    let seg_base: i64 = last.file_stem().unwrap().to_str().unwrap().parse().unwrap();
    let mut data = std::fs::read(last).unwrap();
    if corrupt {
        data[pos as usize] ^= 0x5a;
    } else {
        data.truncate(pos as usize);
    }
    std::fs::write(last, &data).unwrap();

    let log = PartitionLog::open(dir.path(), ID, small_config(), NOW).unwrap();
    // Batches of the damaged segment that end at or before `pos` survive; nothing after.
    let mut seg_pos = 0u64;
    let mut keep = 0;
    for (h, b) in originals {
        if h.base_offset < seg_base {
            keep += 1;
            continue;
        }
        let end = seg_pos + b.len() as u64;
        // Truncated at `pos` or corrupted at `pos`: either way a batch ending by `pos` is whole.
        let intact = end <= pos;
        if !intact {
            break;
        }
        keep += 1;
        seg_pos = end;
    }
    let expected_leo = if keep == 0 {
        0
    } else {
        originals[keep - 1].0.last_offset() + 1
    };
    assert_eq!(
        log.log_end_offset(),
        expected_leo,
        "pos {pos} corrupt {corrupt}"
    );
    let got = read_all(&log, 0);
    assert_eq!(got.len(), keep, "pos {pos} corrupt {corrupt}");
    for (g, o) in got.iter().zip(originals) {
        assert_eq!(g.1, o.1, "pos {pos}: served bytes differ");
    }
    // The recovered log accepts appends at the right offset and serves them.
    let out = log.append(&batch_n(3), 0, NOW).unwrap();
    assert_eq!(out.base_offset, expected_leo);
    assert_eq!(read_all(&log, 0).len(), keep + 1);
}

#[test]
fn recovery_truncates_torn_and_corrupt_tails_at_every_position() {
    let src = tempfile::tempdir().unwrap();
    let log = PartitionLog::open(src.path(), ID, small_config(), NOW).unwrap();
    let mut i = 0;
    while log.segment_count() < 3 {
        log.append(&batch_n(i), 0, NOW).unwrap();
        i += 1;
    }
    // Checkpoint a recovery point past the sealed segments, so reopening trusts them and only
    // the active segment is walked.
    log.flush().unwrap();
    log.tick(NOW).unwrap();
    for _ in 0..8 {
        log.append(&batch_n(i), 0, NOW).unwrap();
        i += 1;
    }
    assert_eq!(log.segment_count(), 3);
    let originals = read_all(&log, 0);
    let last_size = log.active_segment().size_bytes();
    let last_base = log.active_segment().base_offset;
    drop(log); // no close(): an unclean stop
               // Start positions (within the last segment) of its batches: the 4-byte leader epoch at
               // +12 is outside the CRC in the v2 format, so flipping it is undetectable (as in Kafka).
    let mut epoch_bytes = Vec::new();
    let mut at = 0u64;
    for (_, b) in originals.iter().filter(|b| b.0.base_offset >= last_base) {
        epoch_bytes.extend(at + 12..at + 16);
        at += b.len() as u64;
    }
    assert_eq!(
        at, last_size,
        "batches from the last base fill the last segment"
    );
    // Every 4th byte, plus both sides of every batch boundary and of its header fields.
    let mut positions: Vec<u64> = (0..last_size).step_by(4).collect();
    let mut at = 0u64;
    for (_, b) in originals.iter().filter(|b| b.0.base_offset >= last_base) {
        for d in [0, 1, 8, 11, 16, 17, 21, 23, 57, 60, 61, 62] {
            positions.push(at + d);
        }
        at += b.len() as u64;
        positions.push(at - 1);
    }
    positions.retain(|&p| p < last_size);
    positions.sort_unstable();
    positions.dedup();
    for pos in positions {
        damage_and_recover(pos, false, &originals, src.path());
        if !epoch_bytes.contains(&pos) {
            damage_and_recover(pos, true, &originals, src.path());
        }
    }
}

#[test]
fn idempotent_duplicates_return_original_offsets_across_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let pid = 4242;
    let mk = |seq: i32, n: usize| {
        BatchBuilder::new(NOW)
            .producer(pid, 0, seq)
            .records(n)
            .build()
    };
    {
        let log = PartitionLog::open(dir.path(), ID, small_config(), NOW).unwrap();
        assert_eq!(log.append(&mk(0, 3), 0, NOW).unwrap().base_offset, 0);
        assert_eq!(log.append(&batch_n(0), 0, NOW).unwrap().base_offset, 3); // another client
        assert_eq!(log.append(&mk(3, 2), 0, NOW).unwrap().base_offset, 4);
        let dup = log.append(&mk(0, 3), 0, NOW).unwrap();
        assert!(dup.duplicate);
        assert_eq!((dup.base_offset, dup.last_offset), (0, 2));
        assert_eq!(log.log_end_offset(), 6, "a duplicate writes nothing");
        assert_eq!(
            log.append(&mk(9, 1), 0, NOW)
                .unwrap_err()
                .kafka_error_code(),
            45
        );
        log.close().unwrap();
    }
    {
        // Clean restart: state from the snapshot.
        let log = PartitionLog::open(dir.path(), ID, small_config(), NOW).unwrap();
        assert_eq!(log.producer_count(), 1);
        let dup = log.append(&mk(3, 2), 0, NOW).unwrap();
        assert!(dup.duplicate && dup.base_offset == 4);
        assert_eq!(log.append(&mk(5, 1), 0, NOW).unwrap().base_offset, 6);
        // Unclean stop: no close.
    }
    {
        let log = PartitionLog::open(dir.path(), ID, small_config(), NOW).unwrap();
        let dup = log.append(&mk(5, 1), 0, NOW).unwrap();
        assert!(
            dup.duplicate && dup.base_offset == 6,
            "state rebuilt from the log tail: {dup:?}"
        );
        assert_eq!(
            log.append(&mk(7, 1), 0, NOW)
                .unwrap_err()
                .kafka_error_code(),
            45
        );
        // An older epoch is fenced; a newer epoch starts at 0.
        let old = BatchBuilder::new(NOW)
            .producer(pid, 0, 6)
            .records(1)
            .build();
        assert!(!log.append(&old, 0, NOW).unwrap().duplicate);
        let e1 = BatchBuilder::new(NOW)
            .producer(pid, 1, 3)
            .records(1)
            .build();
        assert_eq!(log.append(&e1, 0, NOW).unwrap_err().kafka_error_code(), 45);
        let e1 = BatchBuilder::new(NOW)
            .producer(pid, 1, 0)
            .records(1)
            .build();
        log.append(&e1, 0, NOW).unwrap();
        let stale = BatchBuilder::new(NOW)
            .producer(pid, 0, 7)
            .records(1)
            .build();
        assert_eq!(
            log.append(&stale, 0, NOW).unwrap_err().kafka_error_code(),
            47
        );
    }
}

#[test]
fn producer_state_survives_many_rolls_with_snapshots() {
    let dir = tempfile::tempdir().unwrap();
    let pid = 7;
    {
        let log = PartitionLog::open(dir.path(), ID, small_config(), NOW).unwrap();
        for seq in 0..100 {
            let b = BatchBuilder::new(NOW)
                .producer(pid, 2, seq)
                .sized_records(1, 100)
                .build();
            log.append(&b, 0, NOW).unwrap();
        }
        assert!(log.segment_count() > 3);
        let snaps = std::fs::read_dir(dir.path())
            .unwrap()
            .filter(|e| {
                e.as_ref()
                    .unwrap()
                    .file_name()
                    .to_string_lossy()
                    .ends_with(".snapshot")
            })
            .count();
        assert!((1..=2).contains(&snaps), "snapshots kept: {snaps}");
    }
    let log = PartitionLog::open(dir.path(), ID, small_config(), NOW).unwrap();
    let retry = BatchBuilder::new(NOW)
        .producer(pid, 2, 97)
        .sized_records(1, 100)
        .build();
    let out = log.append(&retry, 0, NOW).unwrap();
    assert!(out.duplicate);
    assert_eq!(out.base_offset, 97);
}

#[test]
fn failed_write_leaves_no_half_batch_and_the_log_keeps_working() {
    let dir = tempfile::tempdir().unwrap();
    let log = PartitionLog::open(dir.path(), ID, LogConfig::default(), NOW).unwrap();
    log.append(&batch_n(0), 0, NOW).unwrap();
    let size = log.size_bytes();
    let b = batch_n(1);
    log.active_segment().fail_next_write_after(b.len() / 2);
    let e = log.append(&b, 0, NOW).unwrap_err();
    assert_eq!(e.kafka_error_code(), 56);
    assert_eq!(log.log_end_offset(), 1);
    assert_eq!(log.size_bytes(), size);
    assert_eq!(
        std::fs::metadata(dir.path().join("00000000000000000000.log"))
            .unwrap()
            .len(),
        size
    );
    assert_eq!(read_all(&log, 0).len(), 1);
    // The same offset is assigned to the next successful append.
    assert_eq!(log.append(&b, 0, NOW).unwrap().base_offset, 1);
    drop(log);
    let log = PartitionLog::open(dir.path(), ID, LogConfig::default(), NOW).unwrap();
    assert_eq!(read_all(&log, 0).len(), 2);
}

#[test]
fn flush_policy_and_clean_marker() {
    let dir = tempfile::tempdir().unwrap();
    let log = PartitionLog::open(dir.path(), ID, LogConfig::default(), NOW).unwrap();
    assert!(!log.needs_flush_after_append());
    log.append(&batch_n(0), 0, NOW).unwrap();
    assert!(!dir.path().join("clean-shutdown").exists());
    log.flush().unwrap();
    log.tick(NOW).unwrap();
    let rp = std::fs::read_to_string(dir.path().join("recovery-point")).unwrap();
    assert_eq!(rp, "0\n1\n");
    log.close().unwrap();
    assert!(dir.path().join("clean-shutdown").exists());
    assert_eq!(
        log.append(&batch_n(1), 0, NOW)
            .unwrap_err()
            .kafka_error_code(),
        56
    );
    drop(log);
    let config = LogConfig {
        flush_interval_messages: 1,
        ..LogConfig::default()
    };
    let log = PartitionLog::open(dir.path(), ID, config, NOW).unwrap();
    assert!(log.needs_flush_after_append());
    assert!(
        !dir.path().join("clean-shutdown").exists(),
        "marker removed while the log is open"
    );
}

#[test]
fn concurrent_appends_flushes_and_reads_see_only_whole_batches() {
    let dir = tempfile::tempdir().unwrap();
    let config = LogConfig {
        flush_interval_messages: 1,
        ..small_config()
    };
    let log = Arc::new(PartitionLog::open(dir.path(), ID, config, NOW).unwrap());
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let reader = {
        let (log, stop) = (log.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut reads = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let leo = log.log_end_offset();
                if leo > 0 {
                    let got = read_all(&log, 0);
                    assert!(got.last().unwrap().0.last_offset() + 1 >= leo);
                    reads += 1;
                }
            }
            reads
        })
    };
    let writers: Vec<_> = (0..4)
        .map(|t| {
            let log = log.clone();
            std::thread::spawn(move || {
                for i in 0..50 {
                    let out = log.append(&batch_n(t * 50 + i), 0, NOW).unwrap();
                    log.flush().unwrap();
                    assert!(log.flush_state_flushed_offset() > out.last_offset);
                }
            })
        })
        .collect();
    for w in writers {
        w.join().unwrap();
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    assert!(reader.join().unwrap() > 0);
    let all = read_all(&log, 0);
    assert_eq!(all.len(), 200);
    for w in all.windows(2) {
        assert_eq!(w[0].0.last_offset() + 1, w[1].0.base_offset);
    }
}

#[test]
fn flush_interval_messages_and_ms_trigger_flushes() {
    let dir = tempfile::tempdir().unwrap();
    let config = LogConfig {
        flush_interval_messages: 10,
        flush_interval_ms: Some(1000),
        ..LogConfig::default()
    };
    let log = PartitionLog::open(dir.path(), ID, config, NOW).unwrap();
    let five = BatchBuilder::new(NOW).records(5).build();
    let rounds0 = log.flush_rounds();
    log.append(&five, 0, NOW).unwrap();
    assert_eq!(log.flush_rounds(), rounds0, "5 unflushed messages < 10");
    log.append(&five, 0, NOW).unwrap();
    assert_eq!(
        log.flush_rounds(),
        rounds0 + 1,
        "10 messages reach the interval"
    );
    log.append(&five, 0, NOW).unwrap();
    assert_eq!(log.flush_rounds(), rounds0 + 1);
    log.tick(NOW + 999).unwrap();
    assert_eq!(log.flush_rounds(), rounds0 + 1);
    log.tick(NOW + 1000).unwrap();
    assert_eq!(log.flush_rounds(), rounds0 + 2, "flush.interval.ms elapsed");
    // Nothing new: a flush is a no-op, not another fsync round.
    log.flush().unwrap();
    assert_eq!(log.flush_rounds(), rounds0 + 2);
}

#[test]
fn damage_in_an_unflushed_middle_segment_truncates_there_and_drops_later_segments() {
    let dir = tempfile::tempdir().unwrap();
    let log = PartitionLog::open(dir.path(), ID, small_config(), NOW).unwrap();
    let mut i = 0;
    while log.segment_count() < 4 {
        log.append(&batch_n(i), 0, NOW).unwrap();
        i += 1;
    }
    let originals = read_all(&log, 0);
    drop(log); // unclean, and nothing was flushed: the recovery point is still 0
    let mut logs: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "log"))
        .collect();
    logs.sort();
    let second_base: i64 = logs[1]
        .file_stem()
        .unwrap()
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    // Corrupt the value bytes of the second batch of the second segment.
    let victim = originals
        .iter()
        .position(|b| b.0.base_offset == second_base)
        .unwrap()
        + 1;
    let at = originals[victim - 1].1.len() + originals[victim].1.len() - 3;
    let mut data = std::fs::read(&logs[1]).unwrap();
    data[at] ^= 0xff;
    std::fs::write(&logs[1], &data).unwrap();

    let log = PartitionLog::open(dir.path(), ID, small_config(), NOW).unwrap();
    assert_eq!(log.log_end_offset(), originals[victim].0.base_offset);
    assert_eq!(
        log.segment_count(),
        2,
        "segments after the damaged one are gone"
    );
    assert!(!logs[2].exists() && !logs[3].exists());
    let got = read_all(&log, 0);
    assert_eq!(got.len(), victim);
    for (g, o) in got.iter().zip(&originals) {
        assert_eq!(g.1, o.1);
    }
}

#[test]
fn shared_types_are_send_and_sync() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<PartitionLog>();
    assert_send_sync::<crate::LogManager>();
    assert_send_sync::<crate::LogError>();
}

#[test]
fn timestamp_lookup_with_log_append_time_uses_the_append_time() {
    let dir = tempfile::tempdir().unwrap();
    let config = LogConfig {
        timestamp_type: TimestampType::LogAppendTime,
        ..small_config()
    };
    let log = PartitionLog::open(dir.path(), ID, config, NOW).unwrap();
    // Producer timestamps are ignored: batch i is stamped NOW + 10 * i.
    for i in 0..40 {
        let b = BatchBuilder::new(5).sized_records(3, 50).build();
        log.append(&b, 0, NOW + 10 * i).unwrap();
    }
    assert_eq!(log.offset_for_timestamp(NOW + 15), Some((6, NOW + 20)));
    assert_eq!(log.offset_for_timestamp(NOW + 390), Some((117, NOW + 390)));
    assert_eq!(log.offset_for_timestamp(NOW + 391), None);
    assert_eq!(log.max_timestamp(), Some((NOW + 390, 117)));
}

#[test]
fn a_length_corrupted_on_disk_under_a_running_log_is_a_storage_error_not_garbage() {
    let dir = tempfile::tempdir().unwrap();
    let log = PartitionLog::open(dir.path(), ID, LogConfig::default(), NOW).unwrap();
    let first = batch_n(0);
    log.append(&first, 0, NOW).unwrap();
    log.append(&batch_n(1), 0, NOW).unwrap();
    let path = dir.path().join("00000000000000000000.log");
    for bad_length in [-1i32, 3, i32::MAX] {
        let mut data = std::fs::read(&path).unwrap();
        data[first.len() + 8..first.len() + 12].copy_from_slice(&bad_length.to_be_bytes());
        std::fs::write(&path, &data).unwrap();
        let e = log.read(1, 1 << 20, i64::MAX).unwrap_err();
        assert_eq!(e.kafka_error_code(), 56, "length {bad_length}: {e}");
    }
}

#[test]
fn impossible_configs_are_invalid_config() {
    let dir = tempfile::tempdir().unwrap();
    for config in [
        LogConfig {
            segment_bytes: 10,
            ..LogConfig::default()
        },
        LogConfig {
            segment_bytes: 1 << 40,
            ..LogConfig::default()
        },
        LogConfig {
            segment_ms: 0,
            ..LogConfig::default()
        },
        LogConfig {
            index_interval_bytes: 0,
            ..LogConfig::default()
        },
    ] {
        let e = PartitionLog::open(dir.path(), ID, config.clone(), NOW)
            .err()
            .unwrap();
        assert_eq!(e.kafka_error_code(), 40, "{config:?}");
    }
}

/// DeleteRecords made the log start durable, then a machine crash tore the unflushed batches
/// below it: recovery keeps the start (offsets reported deleted are never reused), continues
/// the log there, and drops the producer state of the deleted batches.
#[test]
fn torn_tail_below_a_durable_log_start_keeps_the_start() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("p");
    let log = PartitionLog::open(&dir, ID, LogConfig::default(), NOW).unwrap();
    for i in 0..3 {
        let b = BatchBuilder::new(NOW).producer(7, 0, i).records(1).build();
        log.append(&b, 0, NOW).unwrap();
    }
    assert_eq!(committed(&log).delete_records_before(3).unwrap(), 3);
    drop(log); // crash: no close, no recovery point past 0
    let path = dir.join(format!("{}.log", crate::segment::file_stem(0)));
    let first = BatchHeader::parse(&std::fs::read(&path).unwrap())
        .unwrap()
        .total_bytes();
    let f = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
    f.set_len(first as u64 + 5).unwrap(); // batch 0 survives, 1 is torn, 2 is gone

    let log = PartitionLog::open(&dir, ID, LogConfig::default(), NOW).unwrap();
    assert_eq!((log.log_start_offset(), log.log_end_offset()), (3, 3));
    // The producer's sequence 0..2 went with the deleted batches: a new sequence 0 from the
    // same producer is a fresh start, not a duplicate of offset 0.
    let again = BatchBuilder::new(NOW).producer(7, 0, 0).records(1).build();
    let o = log.append(&again, 0, NOW).unwrap();
    assert_eq!((o.base_offset, o.duplicate), (3, false));
    log.close().unwrap();
    let log = PartitionLog::open(&dir, ID, LogConfig::default(), NOW).unwrap();
    assert_eq!((log.log_start_offset(), log.log_end_offset()), (3, 4));
}

#[test]
fn a_reopened_active_segment_written_then_rolled_gets_its_indexes_fsynced() {
    let dir = tempfile::tempdir().unwrap();
    let log = PartitionLog::open(dir.path(), ID, small_config(), NOW).unwrap();
    log.append(&batch_n(0), 0, NOW).unwrap();
    log.close().unwrap();
    drop(log);
    let log = PartitionLog::open(dir.path(), ID, small_config(), NOW).unwrap();
    let first = log.segments.read().unwrap()[0].clone();
    assert_eq!(log.segment_count(), 1);
    let synced = || {
        first
            .indexes_synced
            .load(std::sync::atomic::Ordering::Acquire)
    };
    assert!(synced(), "reopened from a clean close");
    // Written to while active, then rolled: its indexes changed since they were fsynced.
    let mut i = 1;
    while log.segment_count() == 1 {
        log.append(&batch_n(i), 0, NOW).unwrap();
        i += 1;
    }
    assert!(
        !synced(),
        "written since reopened: the flush must fsync its indexes"
    );
    // The tick after a roll flushes the sealed segment, indexes included.
    log.tick(NOW).unwrap();
    assert!(synced());
}

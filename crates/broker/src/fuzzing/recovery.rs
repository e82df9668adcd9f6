//! The `partition_recovery` target: a damaged partition directory opened by the log.

use std::fs;
use std::path::Path;

use josefine_log::batch::BatchHeader;
use josefine_log::testkit::{committed, BatchBuilder};
use josefine_log::{LogConfig, PartitionLog, TimestampType};

use super::batches::CODECS;
use super::NOW_MS;

/// Largest file chunk a `partition_recovery` input can carry: keeps one input's files small so
/// an execution stays fast.
const CHUNK_BYTES_MAX: usize = u16::MAX as usize;

/// Batches at most a read of the recovered log may return before the walk gives up; a log
/// built from one fuzz input holds far fewer.
const RECOVERED_BATCHES_MAX: usize = 100_000;

/// What a chunk of a `partition_recovery` input writes, by `kind % 16`. `Based` files take
/// their base offset from the chunk's first 4 bytes (a u32: realistic offsets; the bytes
/// inside the files are unrestricted).
fn chunk_file(kind: u8, payload: &[u8]) -> Option<(String, &[u8])> {
    let based = |suffix: &str| -> Option<(String, &[u8])> {
        let (base, rest) = payload.split_at_checked(4)?;
        let base = u32::from_be_bytes(base.try_into().expect("4 bytes"));
        Some((format!("{base:020}{suffix}"), rest))
    };
    let zero = |suffix: &str| Some((format!("{:020}{suffix}", 0), payload));
    match kind % 16 {
        0 => zero(".log"),
        1 => zero(".index"),
        2 => zero(".timeindex"),
        3 => based(".log"),
        4 => based(".index"),
        5 => based(".timeindex"),
        6 => Some(("recovery-point".into(), payload)),
        7 => Some(("log-start-offset".into(), payload)),
        8 => Some(("cleaner-checkpoint".into(), payload)),
        9 => based(".snapshot"),
        10 => based(".log.cleaned"),
        11 => based(".log.swap"),
        12 => based(".log.deleted"),
        13 => Some(("partition.metadata".into(), payload)),
        14 => based(".txnindex"),
        _ => None,
    }
}

/// Writes a partition directory from an input. Byte 0 holds flags: bit 0 clean-shutdown marker,
/// bit 1 index every batch (index interval 1), bit 2 LogAppendTime, bit 3 compacted topic
/// (`cleanup.policy=compact,delete`). The rest is chunks of
/// `kind u8 | len u16 | payload` (a short last chunk takes what is left).
fn write_partition_dir(dir: &Path, data: &[u8]) -> Option<LogConfig> {
    let _ = fs::remove_dir_all(dir);
    fs::create_dir_all(dir).expect("scratch directory");
    let (&flags, mut rest) = data.split_first()?;
    if flags & 1 != 0 {
        fs::write(dir.join("clean-shutdown"), b"").expect("scratch write");
    }
    while let Some((&kind, after)) = rest.split_first() {
        let (len, after) = match after.split_at_checked(2) {
            Some((l, a)) => (u16::from_be_bytes([l[0], l[1]]) as usize, a),
            None => (after.len(), &[][..]),
        };
        let (payload, after) = after.split_at(len.min(after.len()));
        if let Some((name, bytes)) = chunk_file(kind, payload) {
            fs::write(dir.join(name), bytes).expect("scratch write");
        }
        rest = after;
    }
    Some(LogConfig {
        index_interval_bytes: if flags & 2 != 0 { 1 } else { 4096 },
        timestamp_type: if flags & 4 != 0 {
            TimestampType::LogAppendTime
        } else {
            TimestampType::CreateTime
        },
        segment_bytes: 64 * 1024,
        cleanup_policy: if flags & 8 != 0 {
            josefine_log::CleanupPolicy::CompactDelete
        } else {
            josefine_log::CleanupPolicy::Delete
        },
        ..LogConfig::default()
    })
}

/// Reads every batch from the log start to the log end. With `strict`, checks that batches
/// come whole, parse, and move forward below the log end; otherwise only that reading does not
/// panic (a log the broker trusts without validation, after a clean shutdown or below the
/// recovery point, serves its bytes as they are, as Kafka does).
fn read_whole_log(log: &PartitionLog, strict: bool) -> usize {
    let end = log.log_end_offset();
    let mut offset = log.log_start_offset();
    let mut batches = 0;
    while offset < end && batches < RECOVERED_BATCHES_MAX {
        let r = match log.read(offset, 1 << 20, i64::MAX) {
            Ok(r) => r,
            Err(e) if strict => panic!(
                "reading offset {offset} of [{}, {end}): {e}",
                log.log_start_offset()
            ),
            Err(_) => return batches,
        };
        if r.records.is_empty() {
            break;
        }
        let mut at = 0;
        while at < r.records.len() {
            let h = match BatchHeader::parse(&r.records[at..]) {
                Ok(h) => h,
                Err(e) if strict => panic!("a served batch does not parse: {e}"),
                Err(_) => return batches,
            };
            let well_formed = at + h.total_bytes() <= r.records.len()
                && h.last_offset() >= offset
                && h.last_offset() < end;
            if strict {
                assert!(
                    at + h.total_bytes() <= r.records.len(),
                    "a served batch is whole"
                );
                assert!(
                    h.last_offset() >= offset,
                    "a served batch ends at or after the fetch offset"
                );
                assert!(
                    h.last_offset() < end,
                    "a served batch ends below the log end"
                );
            } else if !well_formed {
                return batches;
            }
            offset = h.last_offset() + 1;
            at += h.total_bytes();
            batches += 1;
        }
    }
    batches
}

/// Opens a damaged partition directory with `PartitionLog::open`, as a broker restart does.
/// Invariants: no panic; a log that opens has log start <= log end, an LSO at most its high
/// watermark, answers the aborted-transaction search (damaged `.txnindex` files are rebuilt), accepts a new append at its
/// log end, and after a clean close reopens with the same offsets. When nothing was trusted (no
/// clean-shutdown marker, no recovery point), recovery validated every batch, so the log must
/// also serve whole, well-formed batches from its start to its end.
pub fn partition_recovery(dir: &Path, data: &[u8]) -> bool {
    let Some(config) = write_partition_dir(dir, data) else {
        return false;
    };
    let validated = !dir.join("clean-shutdown").exists() && !dir.join("recovery-point").exists();
    let Ok(log) = PartitionLog::open(dir, [7; 16], config.clone(), NOW_MS) else {
        return false;
    };
    let (start, end) = (log.log_start_offset(), log.log_end_offset());
    assert!(start <= end, "log start {start} past log end {end}");
    assert!(log.high_watermark() <= end);
    read_whole_log(&log, validated);
    let lso = log.last_stable_offset();
    assert!(
        lso <= log.high_watermark(),
        "LSO {lso} above the high watermark"
    );
    if let Ok(aborted) = log.aborted_transactions(start, end) {
        assert!(aborted.iter().all(|t| t.first_offset <= t.last_offset));
    }
    for ts in [-1, 0, NOW_MS, i64::MAX] {
        let _ = log.offset_for_timestamp(ts);
    }
    let _ = log.max_timestamp();
    let batch = BatchBuilder::new(NOW_MS).records(2).build();
    let appended = log
        .append(&batch, 0, NOW_MS)
        .unwrap_or_else(|e| panic!("a recovered log refuses an append at {end}: {e}"));
    assert_eq!(
        appended.base_offset, end,
        "append lands at the recovered log end"
    );
    assert_eq!(log.log_end_offset(), end + 2);
    log.close().expect("close");
    drop(log);
    let log = PartitionLog::open(dir, [7; 16], config, NOW_MS).expect("clean reopen");
    assert_eq!(
        (log.log_start_offset(), log.log_end_offset()),
        (start, end + 2),
        "a clean reopen keeps the offsets"
    );
    read_whole_log(&log, validated);
    true
}

/// Serialises a partition directory into a `partition_recovery` input (files the layout can
/// name only).
fn partition_dir_input(dir: &Path, flags: u8) -> Vec<u8> {
    let mut input = vec![flags];
    let mut names: Vec<_> = fs::read_dir(dir)
        .expect("seed directory")
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    for name in names {
        let bytes = fs::read(dir.join(&name)).expect("seed file");
        let (stem, suffix) = name.split_at(name.find('.').unwrap_or(name.len()));
        let kind = match suffix {
            ".log" => 3,
            ".index" => 4,
            ".timeindex" => 5,
            ".snapshot" => 9,
            ".txnindex" => 14,
            _ => match name.as_str() {
                "recovery-point" => 6,
                "log-start-offset" => 7,
                "cleaner-checkpoint" => 8,
                "partition.metadata" => 13,
                _ => continue,
            },
        };
        let mut payload = Vec::new();
        if (3..=5).contains(&kind) || kind == 9 || kind == 14 {
            let Ok(base) = stem.parse::<u32>() else {
                continue;
            };
            payload.extend_from_slice(&base.to_be_bytes());
        }
        payload.extend_from_slice(&bytes);
        if payload.len() > CHUNK_BYTES_MAX {
            continue;
        }
        input.push(kind);
        input.extend_from_slice(&(payload.len() as u16).to_be_bytes());
        input.extend_from_slice(&payload);
    }
    input
}

pub(super) fn seeds(scratch: &Path) -> Vec<Vec<u8>> {
    let mut out = vec![vec![0], vec![1]];
    let config = LogConfig {
        segment_bytes: josefine_log::limits::SEGMENT_BYTES_MIN,
        index_interval_bytes: 1,
        ..LogConfig::default()
    };
    for (round, codec) in CODECS.into_iter().enumerate() {
        let dir = scratch.join(format!("seed-{round}"));
        let _ = fs::remove_dir_all(&dir);
        let log = PartitionLog::open(&dir, [7; 16], config.clone(), NOW_MS).expect("seed log");
        let mut sequence = 0;
        for i in 0..6 {
            // Idempotent batches: each starts at the sequence after the previous one.
            let records = 1 + i as usize;
            let b = BatchBuilder::new(NOW_MS + i)
                .compression(codec)
                .sized_records(records, 60)
                .producer(5, 0, sequence)
                .build();
            sequence += records as i32;
            log.append(&b, 0, NOW_MS + i).expect("seed append");
        }
        // A transaction aborted across a roll: a marker and a `.txnindex` in the seed.
        let t = BatchBuilder::new(NOW_MS)
            .compression(codec)
            .sized_records(2, 60)
            .producer(6, 0, 0)
            .attributes_extra(0x10)
            .build();
        log.append_allowing_transactions(&t, 0, NOW_MS)
            .expect("seed transaction");
        log.append_control_marker(6, 0, 0, false, 0, NOW_MS)
            .expect("seed marker");
        // Unclean: no marker, every batch after the recovery point is re-validated.
        out.push(partition_dir_input(&dir, 0));
        log.close().expect("seed close");
        out.push(partition_dir_input(&dir, 0x03));
        drop(log);
        let _ = fs::remove_dir_all(&dir);
    }
    // A compacted log: the cleaner rewrote sealed segments (offset gaps, a cleaner checkpoint).
    let dir = scratch.join("seed-compacted");
    let _ = fs::remove_dir_all(&dir);
    let compacted = LogConfig {
        cleanup_policy: josefine_log::CleanupPolicy::CompactDelete,
        ..config
    };
    let log = PartitionLog::open(&dir, [7; 16], compacted, NOW_MS).expect("seed log");
    for i in 0..12 {
        // Keys k0..k2 again and again: most records are superseded.
        let b = BatchBuilder::new(NOW_MS + i).records(3).build();
        log.append(&b, 0, NOW_MS + i).expect("seed append");
    }
    committed(&log)
        .clean(NOW_MS + 1_000, &josefine_log::CleanerLimits::default())
        .expect("seed clean");
    out.push(partition_dir_input(&dir, 0x08));
    log.close().expect("seed close");
    out.push(partition_dir_input(&dir, 0x09));
    drop(log);
    let _ = fs::remove_dir_all(&dir);
    out
}

//! Tests of the zero-copy read (`PartitionLog::read_file`): it must pick exactly the bytes the
//! copying read (`PartitionLog::read`) returns, and its slices must survive retention and
//! rolls and notice truncations.

use crate::batch::{self, Compression};
use crate::testkit::{committed, BatchBuilder, Rng};
use crate::{LogConfig, LogError, PartitionLog};

const NOW: i64 = 1_700_000_000_000;
const ID: [u8; 16] = [7; 16];

/// A read as a comparable value: (records, high watermark, log start, log end) or the error.
type Read = Result<(Vec<u8>, i64, i64, i64), i16>;

/// The copying read and the located one, and the slice's (last offset, record count).
fn both(
    log: &PartitionLog,
    offset: i64,
    max_bytes: usize,
    max_offset_exclusive: i64,
) -> (Read, Read, Option<(Option<i64>, u64)>) {
    let code = |e: LogError| e.kafka_error_code();
    let copied = log
        .read(offset, max_bytes, max_offset_exclusive)
        .map(|r| {
            (
                r.records.to_vec(),
                r.high_watermark,
                r.log_start_offset,
                r.log_end_offset,
            )
        })
        .map_err(code);
    let file = log.read_file(offset, max_bytes, max_offset_exclusive);
    let meta = file.as_ref().ok().map(|f| {
        f.slice
            .as_ref()
            .map_or((None, 0), |s| (s.last_offset(), s.records_by_offsets()))
    });
    let located = file
        .map(|f| {
            let bytes = f.slice.map_or(Vec::new(), |s| s.read().unwrap().to_vec());
            (
                bytes,
                f.high_watermark,
                f.log_start_offset,
                f.log_end_offset,
            )
        })
        .map_err(code);
    (copied, located, meta)
}

/// Sum of the record counts of the whole batches in `records`.
fn record_count(records: &[u8]) -> u64 {
    let mut at = 0;
    let mut n = 0;
    while let Ok(h) = batch::BatchHeader::parse(&records[at..]) {
        n += h.records_count as u64;
        at += h.total_bytes();
        if at >= records.len() {
            break;
        }
    }
    n
}

/// Random logs (batch sizes from one small record to several KiB, compressed or not, segments
/// and index intervals from tiny to default), random fetch offsets, byte limits and offset
/// limits: the located bytes equal the copied ones, with the same offsets and errors, and the
/// slice's last offset and record count agree with the copied batches.
#[test]
fn located_reads_equal_copied_reads_for_random_logs_and_limits() {
    let started = std::time::Instant::now();
    for seed in 1..=12u64 {
        let mut rng = Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15));
        let dir = tempfile::tempdir().unwrap();
        let config = LogConfig {
            segment_bytes: [2048, 16 * 1024, 256 * 1024][rng.below(3) as usize],
            index_interval_bytes: [64, 512, 4096][rng.below(3) as usize],
            ..LogConfig::default()
        };
        let log = PartitionLog::open(dir.path(), ID, config, NOW).unwrap();
        let batches = 40 + rng.below(160);
        for i in 0..batches {
            let records = 1 + rng.below(12) as usize;
            let value = [0, 10, 100, 700, 3000][rng.below(5) as usize];
            let b = BatchBuilder::new(NOW + i as i64)
                .compression(if rng.below(4) == 0 {
                    Compression::Lz4
                } else {
                    Compression::None
                })
                .sized_records(records, value)
                .build();
            log.append(&b, 0, NOW).unwrap();
        }
        committed(&log);
        let end = log.log_end_offset();
        for _ in 0..300 {
            let offset = rng.below(end as u64 + 3) as i64 - 1;
            let max_bytes = match rng.below(4) {
                0 => 1 + rng.below(100) as usize,
                1 => 1 + rng.below(5_000) as usize,
                2 => 1 + rng.below(100_000) as usize,
                _ => 1 << 20,
            };
            let max_offset_exclusive = match rng.below(3) {
                0 => i64::MAX,
                _ => offset + rng.below(60) as i64,
            };
            let (copied, located, meta) = both(&log, offset, max_bytes, max_offset_exclusive);
            assert_eq!(
                copied, located,
                "seed {seed}: read({offset}, {max_bytes}, {max_offset_exclusive})"
            );
            if let (Ok((bytes, ..)), Some((last, count))) = (&copied, meta) {
                assert_eq!(last, batch::last_offset_of(bytes), "seed {seed}");
                assert_eq!(count, record_count(bytes), "seed {seed}");
            }
        }
    }
    assert!(started.elapsed().as_secs() < 60, "keep this test short");
}

/// A slice holds its segment open: retention deleting the segment and rolls of the log while
/// the slice is held change none of its bytes.
#[test]
fn slices_survive_retention_and_rolls() {
    let dir = tempfile::tempdir().unwrap();
    let config = LogConfig {
        segment_bytes: 4096,
        index_interval_bytes: 256,
        retention_ms: 60_000,
        ..LogConfig::default()
    };
    let log = PartitionLog::open(dir.path(), ID, config, NOW).unwrap();
    let batch = |ts| BatchBuilder::new(ts).sized_records(3, 300).build();
    for _ in 0..20 {
        log.append(&batch(NOW), 0, NOW).unwrap();
    }
    committed(&log);
    let first = log.read_file(0, 1 << 20, i64::MAX).unwrap().slice.unwrap();
    let expected = log.read(0, 1 << 20, i64::MAX).unwrap().records;
    assert_eq!(first.read().unwrap(), expected);
    // The active segment's slice: the log rolls past it while it is held.
    let active_start = log.log_end_offset() - 3;
    let tail = log.read_file(active_start, 1 << 20, i64::MAX).unwrap();
    let tail = tail.slice.unwrap();
    let tail_bytes = tail.read().unwrap();
    let segments = log.segment_count();
    for _ in 0..20 {
        log.append(&batch(NOW + 100_000), 0, NOW + 100_000).unwrap();
    }
    committed(&log);
    assert!(log.segment_count() > segments, "the log rolled");
    // Retention deletes every old segment, the one the first slice is in among them.
    let out = log.enforce_retention(NOW + 120_000).unwrap();
    assert!(
        out.segments_deleted > 0 && log.log_start_offset() > 0,
        "{out:?}"
    );
    assert!(matches!(
        log.read(0, 1 << 20, i64::MAX),
        Err(LogError::OffsetOutOfRange { .. })
    ));
    assert!(first.intact() && tail.intact());
    assert_eq!(first.read().unwrap(), expected);
    assert_eq!(tail.read().unwrap(), tail_bytes);
}

/// A follower truncation after a slice was located: the slice says it may no longer hold its
/// bytes, and reading it fails rather than return what was appended in their place.
#[test]
fn a_truncation_marks_slices_not_intact() {
    let dir = tempfile::tempdir().unwrap();
    let log = PartitionLog::open(dir.path(), ID, LogConfig::default(), NOW).unwrap();
    for _ in 0..4 {
        log.append(&BatchBuilder::new(NOW).records(2).build(), 0, NOW)
            .unwrap();
    }
    let slice = log.read_file(4, 1 << 20, i64::MAX).unwrap().slice.unwrap();
    assert!(slice.intact());
    log.truncate_to(4).unwrap();
    assert!(!slice.intact());
    assert!(slice.read().is_err());
}

//! Property tests of segments and their indexes under random appends, rolls, crashes with torn
//! tails, and recoveries, checked against a model of what was appended.
//!
//! Properties, each checked after every step of a random history:
//! - offset lookup: a read at any offset in [log start, log end) starts with the batch that
//!   contains that offset, and every offset index entry on disk points at the start of the
//!   batch with exactly that base offset;
//! - time index: entries on disk are strictly increasing in timestamp and non-decreasing in
//!   offset, each points at or before the record carrying its timestamp (in that record's
//!   batch) with no later timestamp before it, and `offset_for_timestamp` agrees with the model
//!   (the first record in log order at or after the timestamp);
//! - recovery: cutting the active segment's file at any byte and reopening without a clean
//!   shutdown keeps exactly the batches that were complete before the cut, byte for byte, and
//!   the log end moves back to the end of the last of them (never below the log start);
//! - DeleteRecords: the log start moves, reads below it fail, and it survives restarts.
//!
//! Histories come from a seeded xorshift generator; a failure prints its seed and step.

use std::fs;
use std::path::Path;

use crate::batch::{tests::Rng, BatchHeader, Compression};
use crate::testkit::{committed, BatchBuilder};
use crate::{LogConfig, PartitionLog};

const NOW: i64 = 1_700_000_000_000;
const ID: [u8; 16] = [5; 16];
/// Histories per test run and steps per history: a few seconds in a debug build.
const HISTORIES: u64 = 20;
const STEPS: usize = 60;

/// One appended record: its offset and timestamp.
#[derive(Debug, Clone, Copy)]
struct ModelRecord {
    offset: i64,
    timestamp: i64,
}

/// What the log must hold: every record, and the bytes of every batch as stored.
#[derive(Default)]
struct Model {
    /// The log start offset (DeleteRecords moves it forward).
    start: i64,
    records: Vec<ModelRecord>,
    /// (base offset, last offset) of each batch in order.
    batches: Vec<(i64, i64)>,
}

impl Model {
    fn end(&self) -> i64 {
        self.batches
            .last()
            .map_or(self.start, |b| b.1 + 1)
            .max(self.start)
    }
    fn first_at_or_after(&self, ts: i64) -> Option<(i64, i64)> {
        self.records
            .iter()
            .find(|r| r.timestamp >= ts)
            .map(|r| (r.offset, r.timestamp))
    }
    fn truncate_to(&mut self, end: i64) {
        self.batches.retain(|b| b.1 < end);
        self.records.retain(|r| r.offset < end);
    }
}

fn random_batch(rng: &mut Rng, clock: &mut i64) -> (Vec<u8>, i64, usize) {
    let codecs = [
        Compression::None,
        Compression::Gzip,
        Compression::Snappy,
        Compression::Lz4,
        Compression::Zstd,
    ];
    // Mostly forward, sometimes back in time: the time index only grows on new maxima.
    *clock += rng.below(50) as i64 - 10;
    let records = 1 + rng.below(5);
    let b = BatchBuilder::new(*clock)
        .compression(codecs[rng.below(codecs.len())])
        .sized_records(records, rng.below(300))
        .build();
    (b, *clock, records)
}

/// Whole log from its start, batch by batch, as (header, bytes).
fn read_all(log: &PartitionLog) -> Vec<(BatchHeader, Vec<u8>)> {
    let mut out = Vec::new();
    let mut next = log.log_start_offset();
    while next < log.log_end_offset() {
        let r = log.read(next, 1 << 20, i64::MAX).expect("read");
        let mut at = 0;
        assert!(!r.records.is_empty(), "no progress at {next}");
        while at < r.records.len() {
            let h = BatchHeader::parse(&r.records[at..]).expect("served batch parses");
            out.push((h, r.records[at..at + h.total_bytes()].to_vec()));
            next = h.last_offset() + 1;
            at += h.total_bytes();
        }
    }
    out
}

fn segment_bases(dir: &Path) -> Vec<i64> {
    let mut bases: Vec<i64> = fs::read_dir(dir)
        .expect("partition dir")
        .filter_map(|e| {
            let name = e.ok()?.file_name().to_string_lossy().into_owned();
            crate::partition::offset_from_name(&name, ".log")
        })
        .collect();
    bases.sort_unstable();
    bases
}

fn be_u32(b: &[u8]) -> u32 {
    u32::from_be_bytes(b.try_into().expect("4 bytes"))
}

/// The on-disk indexes of every segment against its log file and the model.
fn check_indexes(dir: &Path, model: &Model, ctx: &str) {
    for base in segment_bases(dir) {
        let stem = crate::segment::file_stem(base);
        let log = fs::read(dir.join(format!("{stem}.log"))).expect("segment log");
        let offsets = fs::read(dir.join(format!("{stem}.index"))).expect("offset index");
        let times = fs::read(dir.join(format!("{stem}.timeindex"))).expect("time index");
        assert_eq!(offsets.len() % 8, 0, "{ctx}: offset index length");
        assert_eq!(times.len() % 12, 0, "{ctx}: time index length");
        for e in offsets.chunks(8) {
            let (rel, pos) = (be_u32(&e[..4]) as i64, be_u32(&e[4..]) as usize);
            let h = BatchHeader::parse(&log[pos..]).unwrap_or_else(|e| {
                panic!("{ctx}: index entry ({rel}, {pos}) is not a batch: {e}")
            });
            assert_eq!(
                h.base_offset,
                base + rel,
                "{ctx}: index entry names its batch"
            );
        }
        let mut last: Option<(i64, i64)> = None;
        for e in times.chunks(12) {
            let ts = i64::from_be_bytes(e[..8].try_into().expect("8 bytes"));
            let offset = base + be_u32(&e[8..]) as i64;
            if let Some((lts, loff)) = last {
                assert!(ts > lts && offset >= loff, "{ctx}: time index not monotone");
            }
            // The entry is the maximum timestamp so far and a place at or before the record
            // carrying it, in that record's batch (appends name the record; recovery names
            // the batch's base rather than decompress every batch). Nothing before it is
            // later in the segment, which is what makes "scan from the entry" lookups exact.
            let (batch_base, batch_last) = *model
                .batches
                .iter()
                .find(|b| b.0 <= offset && offset <= b.1)
                .unwrap_or_else(|| panic!("{ctx}: time entry names unknown offset {offset}"));
            assert!(
                model
                    .records
                    .iter()
                    .any(|r| r.offset >= offset && r.offset <= batch_last && r.timestamp == ts),
                "{ctx}: time entry ({ts}, {offset}) is not in the batch [{batch_base}, {batch_last}] carrying it"
            );
            assert!(
                model
                    .records
                    .iter()
                    .all(|r| r.offset < base || r.offset >= offset || r.timestamp <= ts),
                "{ctx}: a record of the segment before time entry ({ts}, {offset}) is later"
            );
            last = Some((ts, offset));
        }
    }
}

/// Reads at random offsets start with the containing batch; timestamp lookups match the model.
fn check_lookups(rng: &mut Rng, log: &PartitionLog, model: &Model, ctx: &str) {
    assert_eq!(log.log_end_offset(), model.end(), "{ctx}: log end");
    assert_eq!(log.log_start_offset(), model.start, "{ctx}: log start");
    if model.start > 0 {
        let below = rng.below(model.start as usize) as i64;
        assert!(
            log.read(below, 1, i64::MAX).is_err(),
            "{ctx}: read below the log start"
        );
    }
    for _ in 0..8 {
        if model.end() == model.start {
            break;
        }
        let offset = model.start + rng.below((model.end() - model.start) as usize) as i64;
        let r = log.read(offset, 1, i64::MAX).expect("read");
        let h = BatchHeader::parse(&r.records).expect("a batch");
        assert!(
            h.base_offset <= offset && offset <= h.last_offset(),
            "{ctx}: read at {offset} started with [{}, {}]",
            h.base_offset,
            h.last_offset()
        );
        assert!(model.batches.contains(&(h.base_offset, h.last_offset())));
    }
    if model.start > 0 {
        // Below the log start the model no longer knows which records the remaining segments
        // still hold; the lookup only has to answer at or above the log start.
        for ts in [NOW - 200_000, NOW] {
            if let Some((offset, _)) = log.offset_for_timestamp(ts) {
                assert!(
                    offset >= model.start,
                    "{ctx}: timestamp lookup below the log start"
                );
            }
        }
        return;
    }
    let lo = model
        .records
        .iter()
        .map(|r| r.timestamp)
        .min()
        .unwrap_or(NOW);
    let hi = model
        .records
        .iter()
        .map(|r| r.timestamp)
        .max()
        .unwrap_or(NOW);
    for _ in 0..8 {
        let ts = lo - 2 + rng.below((hi - lo + 5) as usize) as i64;
        assert_eq!(
            log.offset_for_timestamp(ts),
            model.first_at_or_after(ts),
            "{ctx}: offset for timestamp {ts}"
        );
    }
}

/// Offset after the last batch that ends within the first `cut` bytes of a segment file.
fn complete_end(log: &[u8], base: i64, cut: usize) -> i64 {
    let mut at = 0;
    let mut end = base;
    while at + crate::limits::BATCH_HEADER_BYTES <= cut {
        let h = BatchHeader::parse(&log[at..]).expect("an intact segment parses");
        if at + h.total_bytes() > cut {
            break;
        }
        end = h.last_offset() + 1;
        at += h.total_bytes();
    }
    end
}

/// Simulates a crash mid-write: the process dies (no close), and the active segment's file is
/// cut at a random byte, possibly below the log start (unflushed batches under a durable
/// DeleteRecords start). Returns the model's log end after recovery.
fn crash_with_torn_tail(rng: &mut Rng, dir: &Path, model: &mut Model) -> i64 {
    let bases = segment_bases(dir);
    let active = *bases.last().expect("a segment");
    let path = dir.join(format!("{}.log", crate::segment::file_stem(active)));
    let log = fs::read(&path).expect("active segment");
    let cut = rng.below(log.len() + 1);
    let file = fs::OpenOptions::new()
        .write(true)
        .open(&path)
        .expect("open");
    file.set_len(cut as u64).expect("truncate");
    let end = complete_end(&log, active, cut);
    model.truncate_to(end);
    // Kafka (LogLoader.deleteSegmentsIfLogStartGreaterThanLogEnd): a log start checkpoint past
    // the recovered end empties the log at the log start; offsets never go back.
    end.max(model.start)
}

/// A tmpfs when the machine has one: closes and recoveries fsync, which costs milliseconds on a
/// disk and nothing in memory (what is tested is the file contents, not their durability).
fn scratch_dir() -> tempfile::TempDir {
    let shm = Path::new("/dev/shm");
    if shm.is_dir() {
        if let Ok(dir) = tempfile::tempdir_in(shm) {
            return dir;
        }
    }
    tempfile::tempdir().expect("tempdir")
}

fn run_history(seed: u64) {
    let tmp = scratch_dir();
    let dir = tmp.path().join("p");
    let mut rng = Rng(seed);
    let config = LogConfig {
        segment_bytes: crate::limits::SEGMENT_BYTES_MIN,
        index_interval_bytes: [1, 100, 700, 4096][rng.below(4)],
        ..LogConfig::default()
    };
    let mut log = PartitionLog::open(&dir, ID, config.clone(), NOW).expect("open");
    let mut model = Model::default();
    let mut clock = NOW - 100_000;
    for step in 0..STEPS {
        let ctx = format!("seed {seed:#x} step {step}");
        match rng.below(10) {
            0 => {
                // Crash with a torn tail, then recover.
                let before = read_all(&log);
                drop(log);
                let end = crash_with_torn_tail(&mut rng, &dir, &mut model);
                log = PartitionLog::open(&dir, ID, config.clone(), NOW).expect("recover");
                assert_eq!(
                    (log.log_start_offset(), log.log_end_offset()),
                    (model.start, end),
                    "{ctx}: recovered log start and end"
                );
                let after = read_all(&log);
                let kept: Vec<_> = before
                    .into_iter()
                    .filter(|(h, _)| h.last_offset() < end)
                    .collect();
                assert_eq!(after.len(), kept.len(), "{ctx}: complete batches kept");
                for ((_, a), (_, b)) in after.iter().zip(&kept) {
                    assert_eq!(a, b, "{ctx}: a kept batch changed");
                }
            }
            2 if model.end() > model.start && rng.below(3) == 0 => {
                // DeleteRecords: the log start moves forward, whole segments below it go.
                let to = model.start + 1 + rng.below((model.end() - model.start) as usize) as i64;
                assert_eq!(
                    committed(&log)
                        .delete_records_before(to)
                        .expect("delete records"),
                    to
                );
                model.start = to;
            }
            1 => {
                // Clean restart: nothing changes.
                let before = read_all(&log);
                log.close().expect("close");
                drop(log);
                log = PartitionLog::open(&dir, ID, config.clone(), NOW).expect("reopen");
                assert!(
                    read_all(&log) == before,
                    "{ctx}: clean restart changed the log"
                );
            }
            _ => {
                let (b, base_ts, n) = random_batch(&mut rng, &mut clock);
                let out = log.append(&b, 0, NOW).expect("append");
                assert_eq!(out.base_offset, model.end(), "{ctx}: appended at the end");
                for i in 0..n {
                    model.records.push(ModelRecord {
                        offset: out.base_offset + i as i64,
                        timestamp: base_ts + i as i64,
                    });
                }
                model.batches.push((out.base_offset, out.last_offset));
            }
        }
        check_lookups(&mut rng, &log, &model, &ctx);
        check_indexes(&dir, &model, &ctx);
    }
    assert!(
        log.segment_count() > 1,
        "seed {seed:#x}: the history never rolled"
    );
}

#[test]
fn indexes_and_recovery_hold_over_random_histories() {
    for i in 0..HISTORIES {
        run_history(0x5e9_0000 + i * 0x9e37_79b9);
    }
}

/// Found by this property: DeleteRecords fsyncs the new log start, but the batches below it may
/// still be unflushed (Kafka's default: no fsync per append). A machine crash that tears the
/// tail below the new log start used to move the log start back to the torn end, handing out
/// deleted offsets again; like Kafka (`LogLoader.deleteSegmentsIfLogStartGreaterThanLogEnd`)
/// recovery now keeps the checkpointed start and continues the log empty there (c7edddb).
#[test]
fn torn_tail_below_the_log_start_keeps_the_log_start() {
    let tmp = scratch_dir();
    let dir = tmp.path().join("p");
    let log = PartitionLog::open(&dir, ID, LogConfig::default(), NOW).expect("open");
    for i in 0..3 {
        log.append(&BatchBuilder::new(NOW + i).records(1).build(), 0, NOW)
            .expect("append");
    }
    assert_eq!(
        committed(&log)
            .delete_records_before(3)
            .expect("delete records"),
        3
    );
    drop(log); // crash: no close
    let path = dir.join(format!("{}.log", crate::segment::file_stem(0)));
    let bytes = fs::read(&path).expect("segment");
    let first = BatchHeader::parse(&bytes).expect("batch").total_bytes();
    fs::OpenOptions::new()
        .write(true)
        .open(&path)
        .expect("open")
        .set_len(first as u64 + 5)
        .expect("tear");
    let log = PartitionLog::open(&dir, ID, LogConfig::default(), NOW).expect("recover");
    assert_eq!(
        (log.log_start_offset(), log.log_end_offset()),
        (3, 3),
        "the log start must not move back"
    );
}

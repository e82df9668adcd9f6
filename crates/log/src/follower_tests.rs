//! Tests of the follower side of a log: appending a leader's batches (byte-identical
//! segments, bad input writes nothing), truncation (then re-append, crash at every step,
//! producer state that dedups exactly like the original) and full truncation.

use std::collections::BTreeMap;
use std::path::Path;

use crate::batch::tests::Rng;
use crate::batch::{self, BatchHeader, Compression};
use crate::leader_epochs::LEADER_EPOCH_FILE;
use crate::testkit::{committed, BatchBuilder, Rec};
use crate::{CleanerLimits, CleanupPolicy, LogConfig, PartitionLog};

const NOW: i64 = 1_700_000_000_000;
const ID: [u8; 16] = [6; 16];

fn config() -> LogConfig {
    LogConfig {
        segment_bytes: 2048,
        index_interval_bytes: 200,
        ..LogConfig::default()
    }
}

fn fast_tempdir() -> tempfile::TempDir {
    let shm = Path::new("/dev/shm");
    if shm.is_dir() {
        if let Ok(d) = tempfile::tempdir_in(shm) {
            return d;
        }
    }
    tempfile::tempdir().unwrap()
}

fn open(dir: &Path) -> PartitionLog {
    PartitionLog::open(dir, ID, config(), NOW).unwrap()
}

/// Batch `i` of a history: varied codecs and sizes; every third from an idempotent producer
/// (pid 100 + i % 2), whose sequences the caller tracks in `seqs`.
fn produced(i: usize, seqs: &mut BTreeMap<i64, i32>) -> Vec<u8> {
    let codecs = [
        Compression::None,
        Compression::Gzip,
        Compression::Snappy,
        Compression::Lz4,
        Compression::Zstd,
    ];
    let n = 1 + i % 4;
    let b = BatchBuilder::new(NOW + i as i64 * 7)
        .compression(codecs[i % 5])
        .sized_records(n, 30 + (i * 13) % 90);
    if i.is_multiple_of(3) {
        let pid = 100 + (i % 2) as i64;
        let seq = seqs.entry(pid).or_insert(0);
        let out = b.producer(pid, 0, *seq).build();
        *seq += n as i32;
        out
    } else {
        b.build()
    }
}

/// Everything the leader has from `from`, as fetch responses of at most `max_bytes` (at least
/// one whole batch each), sometimes with a partial batch appended as a cut fetch would have.
fn fetches(leader: &PartitionLog, from: i64, rng: &mut Rng) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let mut next = from;
    while next < leader.log_end_offset() {
        let max_bytes = 1 + rng.below(3000);
        let r = leader.read(next, max_bytes, i64::MAX).unwrap();
        let mut bytes = r.records.to_vec();
        let mut at = 0;
        while at < bytes.len() {
            let h = BatchHeader::parse(&bytes[at..]).unwrap();
            next = h.last_offset() + 1;
            at += h.total_bytes();
        }
        if rng.below(3) == 0 && next < leader.log_end_offset() {
            let more = leader.read(next, 1, i64::MAX).unwrap().records;
            let cut = 1 + rng.below(more.len() - 1);
            bytes.extend_from_slice(&more[..cut]);
        }
        out.push(bytes);
    }
    out
}

/// Copy everything the leader has past the follower's log end.
fn replicate(leader: &PartitionLog, follower: &PartitionLog, rng: &mut Rng) {
    for f in fetches(leader, follower.log_end_offset(), rng) {
        let before = follower.log_end_offset();
        let out = follower.append_as_follower(&f).unwrap();
        assert!(out.batches >= 1);
        assert!(out.last_offset >= before);
        assert_eq!(out.log_end_offset, follower.log_end_offset());
        assert_eq!(out.last_offset + 1, out.log_end_offset);
    }
    assert_eq!(follower.log_end_offset(), leader.log_end_offset());
}

/// (file name, bytes) of every segment `.log` file.
fn segment_files(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut v: Vec<(String, Vec<u8>)> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap())
        .filter(|e| e.file_name().to_string_lossy().ends_with(".log"))
        .map(|e| {
            (
                e.file_name().to_string_lossy().into_owned(),
                std::fs::read(e.path()).unwrap(),
            )
        })
        .collect();
    v.sort();
    v
}

/// Every batch from the log start, whole and CRC-checked.
fn all_batches(log: &PartitionLog) -> Vec<(BatchHeader, Vec<u8>)> {
    let mut out = Vec::new();
    let mut next = log.log_start_offset();
    while next < log.log_end_offset() {
        let r = log.read(next, 1 << 20, i64::MAX).unwrap();
        if r.records.is_empty() {
            break;
        }
        let mut at = 0;
        while at < r.records.len() {
            let h = BatchHeader::parse(&r.records[at..]).unwrap();
            let b = r.records[at..at + h.total_bytes()].to_vec();
            batch::check_crc(&b, &h).unwrap();
            next = h.last_offset() + 1;
            at += h.total_bytes();
            out.push((h, b));
        }
    }
    out
}

/// The answers of the epoch cache for every epoch around the ones present.
fn epoch_answers(log: &PartitionLog) -> Vec<Option<(i32, i64)>> {
    (-1..12).map(|e| log.end_offset_for_epoch(e)).collect()
}

fn copy_dir(from: &Path, to: &Path) {
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
    }
}

/// A leader log of `n` batches whose epochs step up every 7 batches (starting at
/// `first_epoch`); also returns the producers' next sequences and their last batches.
fn leader_history(dir: &Path, n: usize, first_epoch: i32) -> (PartitionLog, History) {
    let log = open(dir);
    let mut history = History::default();
    for i in 0..n {
        let epoch = first_epoch + (i / 7) as i32;
        let b = produced(i, &mut history.seqs);
        let h = BatchHeader::parse(&b).unwrap();
        log.append(&b, epoch, NOW).unwrap();
        if h.has_producer_id() {
            history.last.insert(h.producer_id, b);
        }
    }
    (log, history)
}

#[derive(Default)]
struct History {
    seqs: BTreeMap<i64, i32>,
    last: BTreeMap<i64, Vec<u8>>,
}

#[test]
fn a_follower_copy_of_a_leader_log_is_byte_identical() {
    for seed in 1..=6u64 {
        let mut rng = Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15));
        let (ld, fd) = (fast_tempdir(), fast_tempdir());
        let (leader, history) = leader_history(ld.path(), 40 + rng.below(30), 1);
        let follower = open(fd.path());
        // Nothing at all, and a lone partial batch: nothing written.
        assert_eq!(follower.append_as_follower(&[]).unwrap().batches, 0);
        let first = leader.read(0, 1, i64::MAX).unwrap().records;
        let out = follower.append_as_follower(&first[..40]).unwrap();
        assert_eq!((out.batches, out.log_end_offset), (0, 0));
        replicate(&leader, &follower, &mut rng);
        assert!(leader.segment_count() > 3);
        assert_eq!(
            segment_files(fd.path()),
            segment_files(ld.path()),
            "seed {seed}"
        );
        assert_eq!(epoch_answers(&follower), epoch_answers(&leader));
        assert_eq!(follower.max_timestamp(), leader.max_timestamp());
        for ts in [NOW, NOW + 50, NOW + 200] {
            assert_eq!(
                follower.offset_for_timestamp(ts),
                leader.offset_for_timestamp(ts)
            );
        }
        // The follower's HW is the replication layer's business: appends leave it alone.
        assert_eq!(follower.high_watermark(), 0);
        // Unclean stop; the recovered follower is still identical, and as the new leader it
        // recognises the old leader's idempotent batches as duplicates.
        drop(follower);
        let follower = open(fd.path());
        assert_eq!(segment_files(fd.path()), segment_files(ld.path()));
        let n = leader.log_end_offset();
        assert_eq!(history.last.len(), 2);
        for (pid, b) in &history.last {
            let out = follower.append(b, 9, NOW).unwrap();
            assert!(out.duplicate, "seed {seed}, producer {pid}");
        }
        assert_eq!(follower.log_end_offset(), n);
    }
}

#[test]
fn bad_leader_input_writes_nothing() {
    let (ld, fd) = (fast_tempdir(), fast_tempdir());
    let (leader, _) = leader_history(ld.path(), 12, 1);
    let follower = open(fd.path());
    let all = leader.read(0, 1 << 20, i64::MAX).unwrap().records.to_vec();
    let batches = all_batches(&leader);
    let three: usize = batches[..3].iter().map(|b| b.1.len()).sum();
    let second_at = batches[0].1.len();
    let before = segment_files(fd.path());
    let mut cases: Vec<(&str, Vec<u8>, i16)> = Vec::new();
    // A CRC mismatch in the second batch.
    let mut crc = all[..three].to_vec();
    crc[second_at + batch::ATTRIBUTES_AT + 3] ^= 1;
    cases.push(("crc", crc, 2));
    // Going backwards inside the input.
    let mut back = all[..three].to_vec();
    back.extend_from_slice(&batches[1].1);
    cases.push(("backwards", back, 87));
    // Garbage after valid batches.
    let mut garbage = all[..three].to_vec();
    garbage.extend_from_slice(&[0u8; 30]);
    cases.push(("garbage tail", garbage, 2));
    // A count that does not match the offsets (and is not a cleaner's batch).
    let mut counts = batches[0].1.clone();
    counts[batch::RECORDS_COUNT_AT + 3] = counts[batch::RECORDS_COUNT_AT + 3].wrapping_add(5);
    let crc = crc32c::crc32c(&counts[batch::ATTRIBUTES_AT..]);
    counts[batch::CRC_AT..batch::CRC_AT + 4].copy_from_slice(&crc.to_be_bytes());
    cases.push(("counts", counts, 2));
    for (name, input, code) in cases {
        let e = follower.append_as_follower(&input).unwrap_err();
        assert_eq!(e.kafka_error_code(), code, "{name}: {e}");
        assert_eq!(follower.log_end_offset(), 0, "{name}");
        assert_eq!(segment_files(fd.path()), before, "{name}");
        assert_eq!(follower.latest_leader_epoch(), None, "{name}");
    }
    // Once the follower holds the first batches, the same input again is behind its end.
    follower.append_as_follower(&all[..three]).unwrap();
    let end = follower.log_end_offset();
    let e = follower.append_as_follower(&all[..three]).unwrap_err();
    assert_eq!(e.kafka_error_code(), 87);
    assert_eq!(follower.log_end_offset(), end);
}

/// A follower of a compacted leader copies its cleaned batches (offset gaps between and inside
/// batches) exactly, and recovers them after an unclean stop.
#[test]
fn cleaned_batches_with_offset_gaps_are_copied_and_recovered() {
    let (ld, fd) = (fast_tempdir(), fast_tempdir());
    let cfg = LogConfig {
        cleanup_policy: CleanupPolicy::Compact,
        ..config()
    };
    let leader = PartitionLog::open(ld.path(), ID, cfg.clone(), NOW).unwrap();
    for i in 0..60usize {
        let recs = (0..3)
            .map(|j| Rec {
                // Every fourth batch only updates shared keys (it goes entirely); the others
                // keep one record of their own (they lose the others: gaps inside).
                key: Some(if j == 0 && !i.is_multiple_of(4) {
                    format!("own{i}").into_bytes()
                } else {
                    format!("k{}", (i * 3 + j) % 7).into_bytes()
                }),
                value: Some(vec![i as u8; 60]),
                headers: vec![],
            })
            .collect();
        let b = BatchBuilder::new(NOW + i as i64)
            .custom_records(recs)
            .build();
        leader.append(&b, 1 + (i / 20) as i32, NOW).unwrap();
    }
    loop {
        let out = committed(&leader)
            .clean(NOW, &CleanerLimits::default())
            .unwrap();
        if !out.more {
            break;
        }
    }
    let follower = PartitionLog::open(fd.path(), ID, cfg.clone(), NOW).unwrap();
    let mut rng = Rng(7);
    replicate(&leader, &follower, &mut rng);
    // The leader keeps emptied segments, the follower cannot know them: the batches, not the
    // files, are identical.
    assert!(all_batches(&follower) == all_batches(&leader));
    let gapped = all_batches(&leader)
        .windows(2)
        .any(|w| w[1].0.base_offset > w[0].0.last_offset() + 1);
    assert!(gapped, "the leader's cleaning left gaps");
    drop(follower);
    let follower = PartitionLog::open(fd.path(), ID, cfg, NOW).unwrap();
    assert_eq!(follower.log_end_offset(), leader.log_end_offset());
    let batches = all_batches(&leader);
    assert!(all_batches(&follower) == batches);
    // The follower learns an epoch where its first surviving batch starts; the leader where
    // it first wrote. The answers differ only across offsets the cleaner emptied (as Kafka).
    for (f, l) in epoch_answers(&follower)
        .into_iter()
        .zip(epoch_answers(&leader))
    {
        let (Some((fe, fo)), Some((le, lo))) = (f, l) else {
            assert_eq!(f, l);
            continue;
        };
        assert_eq!(fe, le);
        let (lo, hi) = (fo.min(lo), fo.max(lo));
        assert!(
            batches
                .iter()
                .all(|b| b.0.last_offset() < lo || b.0.base_offset >= hi),
            "a batch in [{lo}, {hi})"
        );
    }
}

#[test]
fn truncation_then_reappend_converges_on_the_leader() {
    for seed in 1..=8u64 {
        let mut rng = Rng(seed.wrapping_mul(0x2545_f491_4f6c_dd1d));
        let (ld, fd) = (fast_tempdir(), fast_tempdir());
        let (leader, history) = leader_history(ld.path(), 30, 1);
        let follower = open(fd.path());
        replicate(&leader, &follower, &mut rng);
        // The follower, leader for a while at epoch 8, wrote batches no one else has.
        let common = follower.log_end_offset();
        follower.assign_leader_epoch(8, common).unwrap();
        let mut own = history.seqs.clone();
        for i in 0..5 + rng.below(25) {
            follower
                .append(&produced(100 + i, &mut own), 8, NOW)
                .unwrap();
        }
        follower.set_high_watermark(common);
        // Meanwhile the real leader moved on at epoch 9.
        leader.assign_leader_epoch(9, common).unwrap();
        let mut more = history.seqs.clone();
        for i in 0..5 + rng.below(25) {
            leader
                .append(&produced(200 + i, &mut more), 9, NOW)
                .unwrap();
        }
        // Diverging epoch: the leader's end for epoch 8 is where 9 starts.
        let (epoch, end) = leader.end_offset_for_epoch(8).unwrap();
        assert_eq!((epoch, end), (5, common));
        follower.truncate_to(end).unwrap();
        assert_eq!(follower.log_end_offset(), common);
        assert_eq!(follower.high_watermark(), common);
        assert_eq!(follower.latest_leader_epoch(), Some(5));
        assert_eq!(follower.epoch_start_offset(8), None);
        let rp: i64 = std::fs::read_to_string(fd.path().join("recovery-point"))
            .unwrap()
            .lines()
            .nth(1)
            .unwrap()
            .parse()
            .unwrap();
        assert!(
            rp <= common,
            "recovery point {rp} above the new end {common}"
        );
        replicate(&leader, &follower, &mut rng);
        assert_eq!(
            segment_files(fd.path()),
            segment_files(ld.path()),
            "seed {seed}"
        );
        assert_eq!(epoch_answers(&follower), epoch_answers(&leader));
        // A truncation at or past the end changes nothing.
        follower.truncate_to(follower.log_end_offset() + 3).unwrap();
        assert_eq!(segment_files(fd.path()), segment_files(ld.path()));
        drop(follower);
        let follower = open(fd.path());
        assert_eq!(segment_files(fd.path()), segment_files(ld.path()));
        assert_eq!(epoch_answers(&follower), epoch_answers(&leader));
    }
}

#[test]
fn a_cut_inside_a_batch_removes_the_whole_batch() {
    let (ld, fd) = (fast_tempdir(), fast_tempdir());
    let (leader, _) = leader_history(ld.path(), 20, 1);
    let follower = open(fd.path());
    replicate(&leader, &follower, &mut Rng(3));
    let multi = all_batches(&leader)
        .into_iter()
        .find(|b| b.0.last_offset_delta > 1 && b.0.base_offset > 10)
        .unwrap()
        .0;
    follower.truncate_to(multi.base_offset + 1).unwrap();
    assert_eq!(follower.log_end_offset(), multi.base_offset);
    let last = all_batches(&follower).pop().unwrap().0;
    assert_eq!(last.last_offset() + 1, multi.base_offset);
    // Truncating to the log start leaves an empty log there, still appendable.
    follower.truncate_to(0).unwrap();
    assert_eq!(follower.log_end_offset(), 0);
    assert_eq!(follower.segment_count(), 1);
    assert_eq!(follower.latest_leader_epoch(), None);
    replicate(&leader, &follower, &mut Rng(4));
    assert_eq!(segment_files(fd.path()), segment_files(ld.path()));
}

/// Producer state after truncating to X answers every append exactly as a log that only ever
/// had the batches below X.
#[test]
fn producer_state_after_truncation_dedups_like_the_original() {
    let dir_all = fast_tempdir();
    let mut seqs = BTreeMap::new();
    let produced_all: Vec<Vec<u8>> = (0..60).map(|i| produced(i, &mut seqs)).collect();
    let full = open(dir_all.path());
    let mut ends = Vec::new();
    for b in &produced_all {
        ends.push(full.append(b, 1, NOW).unwrap().last_offset + 1);
    }
    assert!(full.segment_count() > 4, "snapshots at rolls");
    for cut_batch in [0usize, 5, 17, 33, 58] {
        let x = ends[cut_batch];
        // The original: only the batches below X.
        let od = fast_tempdir();
        let original = open(od.path());
        for b in &produced_all[..=cut_batch] {
            original.append(b, 1, NOW).unwrap();
        }
        // The truncated: everything, then cut to X (after a restart, from snapshots).
        let td = fast_tempdir();
        copy_dir(dir_all.path(), td.path());
        let truncated = open(td.path());
        truncated.truncate_to(x).unwrap();
        assert_eq!(truncated.log_end_offset(), x);
        // Same answer to: every batch retried, every producer's next and later sequences.
        let mut probes: Vec<Vec<u8>> = produced_all.clone();
        for pid in [100i64, 101] {
            for seq in [0, 1, 3, 6, 9, 12, 20, 40] {
                probes.push(
                    BatchBuilder::new(NOW)
                        .producer(pid, 0, seq)
                        .records(3)
                        .build(),
                );
            }
        }
        for (i, p) in probes.iter().enumerate() {
            let a = original.append(p, 1, NOW).map_err(|e| e.kafka_error_code());
            let b = truncated
                .append(p, 1, NOW)
                .map_err(|e| e.kafka_error_code());
            assert_eq!(a, b, "cut after batch {cut_batch}, probe {i}");
        }
    }
}

/// The file states a crash can leave part way through `truncate_to`, each opened: a log that is
/// a prefix of the original ending in [new end, old end], whose epoch cache agrees with its
/// batches and whose producer state matches its batches.
#[test]
fn a_crash_in_the_middle_of_truncation_recovers_consistently() {
    let src = fast_tempdir();
    let (leader, _) = leader_history(src.path(), 50, 1);
    let original = all_batches(&leader);
    let segs = leader.segment_count();
    assert!(segs > 4);
    let cut_batch = original.len() / 3;
    let cut = original[cut_batch].0.base_offset;
    let bases: Vec<i64> = leader
        .segments
        .read()
        .unwrap()
        .iter()
        .map(|s| s.base_offset)
        .collect();
    let holder = bases.partition_point(|&b| b <= cut) - 1;
    leader.close().unwrap();
    drop(leader);
    let stem = |b: i64| format!("{b:020}");
    // Steps: k of the later segments renamed (newest first), then the holder cut.
    let later = segs - holder - 1;
    for step in 0..=later + 2 {
        let dir = fast_tempdir();
        copy_dir(src.path(), dir.path());
        std::fs::remove_file(dir.path().join("clean-shutdown")).ok();
        if step >= 1 {
            std::fs::write(dir.path().join("recovery-point"), format!("0\n{cut}\n")).unwrap();
        }
        for k in 0..step.min(later) {
            let base = bases[segs - 1 - k];
            for ext in ["index", "timeindex", "log"] {
                let from = dir.path().join(format!("{}.{ext}", stem(base)));
                let to = dir.path().join(format!("{}.{ext}.deleted", stem(base)));
                std::fs::rename(from, to).unwrap();
            }
        }
        if step > later {
            // The holder cut at the batch boundary, its indexes left as they were.
            let pos: usize = original
                .iter()
                .filter(|b| b.0.base_offset >= bases[holder] && b.0.base_offset < cut)
                .map(|b| b.1.len())
                .sum();
            let path = dir.path().join(format!("{}.log", stem(bases[holder])));
            let f = std::fs::OpenOptions::new().write(true).open(path).unwrap();
            f.set_len(pos as u64).unwrap();
        }
        if step > later + 1 {
            // Everything done but the cache trim and the .deleted removal.
            for e in std::fs::read_dir(dir.path()).unwrap() {
                let e = e.unwrap();
                if e.file_name().to_string_lossy().ends_with(".snapshot") {
                    let off: i64 = e.file_name().to_string_lossy()[..20].parse().unwrap();
                    if off > cut {
                        std::fs::remove_file(e.path()).unwrap();
                    }
                }
            }
        }
        let log = open(dir.path());
        let end = log.log_end_offset();
        assert!(end >= cut, "step {step}: end {end} below the cut");
        let got = all_batches(&log);
        assert_eq!(
            got,
            original[..got.len()].to_vec(),
            "step {step}: not a prefix of the original"
        );
        assert_eq!(got.last().map_or(0, |b| b.0.last_offset() + 1), end);
        assert!(
            std::fs::read_dir(dir.path()).unwrap().all(|e| !e
                .unwrap()
                .file_name()
                .to_string_lossy()
                .ends_with(".deleted")),
            "step {step}: leftovers removed"
        );
        // The epoch cache agrees with a cache derived from the batches left.
        let answers = epoch_answers(&log);
        drop(log);
        std::fs::remove_file(dir.path().join(LEADER_EPOCH_FILE)).unwrap();
        let log = open(dir.path());
        assert_eq!(epoch_answers(&log), answers, "step {step}");
        // Finishing the truncation now gives the same log as an uninterrupted one.
        log.truncate_to(cut).unwrap();
        assert_eq!(all_batches(&log), original[..cut_batch].to_vec());
    }
}

#[test]
fn truncate_fully_starts_an_empty_log_anywhere() {
    let (ld, fd) = (fast_tempdir(), fast_tempdir());
    let (leader, _) = leader_history(ld.path(), 40, 2);
    let follower = open(fd.path());
    replicate(&leader, &follower, &mut Rng(11));
    follower.set_high_watermark(10);
    // The leader deleted records far past the follower's end: start over at its log start.
    let start = leader.log_end_offset() - 5;
    let start = all_batches(&leader)
        .iter()
        .map(|b| b.0.base_offset)
        .rfind(|&b| b <= start)
        .unwrap();
    committed(&leader).delete_records_before(start).unwrap();
    follower.truncate_fully_and_start_at(start).unwrap();
    assert_eq!(
        (
            follower.log_start_offset(),
            follower.log_end_offset(),
            follower.high_watermark()
        ),
        (start, start, start)
    );
    assert_eq!(follower.latest_leader_epoch(), None);
    assert_eq!(follower.segment_count(), 1);
    assert_eq!(follower.size_bytes(), 0);
    assert_eq!(follower.max_timestamp(), None);
    assert_eq!(
        follower
            .read(start - 1, 100, i64::MAX)
            .unwrap_err()
            .kafka_error_code(),
        1
    );
    replicate(&leader, &follower, &mut Rng(12));
    assert_eq!(all_batches(&follower), all_batches(&leader));
    assert_eq!(epoch_answers(&follower), epoch_answers(&leader));
    drop(follower);
    let follower = open(fd.path());
    assert_eq!(follower.log_start_offset(), start);
    assert_eq!(all_batches(&follower), all_batches(&leader));
    // Back below the log start: truncate_to empties the log there.
    follower.truncate_to(3).unwrap();
    assert_eq!(
        (follower.log_start_offset(), follower.log_end_offset()),
        (3, 3)
    );
    // A crash after the segments were renamed but before the log start moved: an empty log at
    // the old start.
    let dir = fast_tempdir();
    copy_dir(fd.path(), dir.path());
    drop(follower);
    let mut stems = Vec::new();
    for e in std::fs::read_dir(dir.path()).unwrap() {
        let name = e.unwrap().file_name().to_string_lossy().into_owned();
        if let Some(stem) = name.strip_suffix(".log") {
            stems.push(stem.to_string());
        }
    }
    for stem in stems {
        for ext in ["index", "timeindex", "log"] {
            let from = dir.path().join(format!("{stem}.{ext}"));
            let to = dir.path().join(format!("{stem}.{ext}.deleted"));
            std::fs::rename(from, to).unwrap();
        }
    }
    std::fs::write(dir.path().join("log-start-offset"), "0\n40\n").unwrap();
    let log = open(dir.path());
    assert_eq!((log.log_start_offset(), log.log_end_offset()), (40, 40));
    assert_eq!(log.latest_leader_epoch(), None);
}

/// Readers racing with follower appends, truncations and high-watermark moves see only whole
/// batches the leader wrote at those offsets, and consistent offsets.
#[test]
fn reads_racing_with_appends_and_truncations_see_only_leader_batches() {
    let (ld, fd) = (fast_tempdir(), fast_tempdir());
    let (leader, _) = leader_history(ld.path(), 120, 1);
    let by_base: BTreeMap<i64, Vec<u8>> = all_batches(&leader)
        .into_iter()
        .map(|(h, b)| (h.base_offset, b))
        .collect();
    let end = leader.log_end_offset();
    let follower = std::sync::Arc::new(open(fd.path()));
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let reader = {
        let (follower, done) = (follower.clone(), done.clone());
        let by_base = by_base.clone();
        std::thread::spawn(move || {
            let mut rng = Rng(99);
            let mut served = 0;
            while !done.load(std::sync::atomic::Ordering::Relaxed) {
                let at = rng.below(end as usize + 1) as i64;
                match follower.read(at, 1 + rng.below(4000), i64::MAX) {
                    Ok(r) => {
                        assert!(r.log_start_offset <= r.high_watermark);
                        assert!(r.high_watermark <= r.log_end_offset);
                        let mut pos = 0;
                        while pos < r.records.len() {
                            let h = BatchHeader::parse(&r.records[pos..]).unwrap();
                            let b = &r.records[pos..pos + h.total_bytes()];
                            assert_eq!(Some(&b.to_vec()), by_base.get(&h.base_offset));
                            pos += h.total_bytes();
                            served += 1;
                        }
                    }
                    Err(e) => assert_eq!(e.kafka_error_code(), 1, "{e}"),
                }
            }
            served
        })
    };
    let mut rng = Rng(5);
    for round in 0..150 {
        for f in fetches(&leader, follower.log_end_offset(), &mut rng)
            .into_iter()
            .take(1 + rng.below(6))
        {
            follower.append_as_follower(&f).unwrap();
        }
        let leo = follower.log_end_offset();
        follower.set_high_watermark(leo - rng.below(30) as i64);
        if round % 3 == 0 {
            let hw = follower.high_watermark();
            follower
                .truncate_to(hw + rng.below((leo - hw) as usize + 1) as i64)
                .unwrap();
        }
    }
    replicate(&leader, &follower, &mut rng);
    done.store(true, std::sync::atomic::Ordering::Relaxed);
    assert!(reader.join().unwrap() > 0);
    assert_eq!(segment_files(fd.path()), segment_files(ld.path()));
}

/// Random histories: a follower copies a leader in random slices, truncates to random offsets
/// (sometimes below its log start), and stops uncleanly now and then. After every step its
/// batches are the leader's at the same offsets and its epoch cache answers as one derived from
/// those batches; at the end it holds the leader's segments byte for byte.
#[test]
fn random_copies_truncations_and_restarts_keep_the_follower_a_prefix_of_the_leader() {
    for seed in 1..=12u64 {
        let mut rng = Rng(seed.wrapping_mul(0xd1b5_4a32_d192_ed03));
        let (ld, fd) = (fast_tempdir(), fast_tempdir());
        let (leader, _) = leader_history(ld.path(), 60 + rng.below(60), rng.below(3) as i32);
        let by_base: BTreeMap<i64, Vec<u8>> = all_batches(&leader)
            .into_iter()
            .map(|(h, b)| (h.base_offset, b))
            .collect();
        let mut follower = open(fd.path());
        for step in 0..30 {
            match rng.below(6) {
                0..=2 => {
                    for f in fetches(&leader, follower.log_end_offset(), &mut rng)
                        .into_iter()
                        .take(1 + rng.below(4))
                    {
                        follower.append_as_follower(&f).unwrap();
                    }
                }
                3 => {
                    let to = rng.below(follower.log_end_offset() as usize + 1) as i64;
                    follower.truncate_to(to).unwrap();
                    assert!(follower.log_end_offset() <= to.max(follower.log_start_offset()));
                }
                4 => {
                    drop(follower);
                    follower = open(fd.path());
                }
                _ => {
                    let to = *by_base
                        .keys()
                        .nth(rng.below(by_base.len() / 4 + 1))
                        .unwrap();
                    follower.truncate_fully_and_start_at(to).unwrap();
                }
            }
            let got = all_batches(&follower);
            for (h, b) in &got {
                assert_eq!(
                    Some(b),
                    by_base.get(&h.base_offset),
                    "seed {seed} step {step}: a batch the leader does not have"
                );
            }
            let answers = epoch_answers(&follower);
            let derived = {
                let copy = fast_tempdir();
                copy_dir(fd.path(), copy.path());
                std::fs::remove_file(copy.path().join(LEADER_EPOCH_FILE)).unwrap();
                let log = open(copy.path());
                // The copy's log start is at a batch base: the derived cache starts there too.
                epoch_answers(&log)
            };
            assert_eq!(answers, derived, "seed {seed} step {step}");
        }
        if follower.log_start_offset() > leader.log_start_offset() {
            follower.truncate_fully_and_start_at(0).unwrap();
        }
        replicate(&leader, &follower, &mut rng);
        assert!(
            all_batches(&follower) == all_batches(&leader),
            "seed {seed}"
        );
    }
}

/// Kafka's UnexpectedAppendOffsetException case: the leader's log start is inside a batch
/// (DeleteRecords), so a follower starting there is sent a batch that begins before its empty
/// log. It takes the batch whole and keeps its log start inside it.
#[test]
fn an_empty_follower_starting_inside_a_batch_takes_the_whole_batch() {
    let (ld, fd) = (fast_tempdir(), fast_tempdir());
    let (leader, _) = leader_history(ld.path(), 30, 1);
    let inside = all_batches(&leader)
        .into_iter()
        .find(|b| b.0.last_offset_delta >= 2 && b.0.base_offset > 20)
        .unwrap()
        .0;
    let start = inside.base_offset + 1;
    committed(&leader).delete_records_before(start).unwrap();
    let follower = open(fd.path());
    follower.truncate_fully_and_start_at(start).unwrap();
    // Not empty: a batch before the log end is refused.
    let first = leader.read(start, 1, i64::MAX).unwrap().records;
    replicate(&leader, &follower, &mut Rng(21));
    assert_eq!(follower.log_start_offset(), start);
    assert!(all_batches(&follower) == all_batches(&leader));
    assert_eq!(all_batches(&follower)[0].0.base_offset, inside.base_offset);
    assert_eq!(epoch_answers(&follower), epoch_answers(&leader));
    assert_eq!(
        follower
            .append_as_follower(&first)
            .unwrap_err()
            .kafka_error_code(),
        87
    );
    drop(follower);
    let follower = open(fd.path());
    assert_eq!(follower.log_start_offset(), start);
    assert!(all_batches(&follower) == all_batches(&leader));
}

/// A leader batch whose offset is more than 2^31 past the follower's log end (a cleaned
/// stretch that long) starts a segment of its own, and the log recovers with it.
#[test]
fn a_gap_wider_than_relative_offsets_starts_a_new_segment() {
    let fd = fast_tempdir();
    let follower = open(fd.path());
    let mut seqs = BTreeMap::new();
    let mut input = produced(1, &mut seqs);
    batch::set_offset_and_epoch(&mut input, 0, 3);
    let first_end = BatchHeader::parse(&input).unwrap().last_offset() + 1;
    let far = 5_000_000_000i64;
    let mut second = produced(2, &mut seqs);
    batch::set_offset_and_epoch(&mut second, far, 4);
    input.extend_from_slice(&second);
    let out = follower.append_as_follower(&input).unwrap();
    assert_eq!(out.batches, 2);
    let end = out.log_end_offset;
    assert!(end > far);
    assert_eq!(follower.segment_count(), 2);
    let r = follower.read(first_end, 1 << 20, i64::MAX).unwrap();
    assert_eq!(BatchHeader::parse(&r.records).unwrap().base_offset, far);
    assert_eq!(follower.end_offset_for_epoch(3), Some((3, far)));
    drop(follower);
    let follower = open(fd.path());
    assert_eq!(follower.log_end_offset(), end);
    assert_eq!(all_batches(&follower).len(), 2);
    // Offsets that would overflow are refused.
    let mut last = produced(3, &mut seqs);
    batch::set_offset_and_epoch(&mut last, i64::MAX - 1, 4);
    assert_eq!(
        follower
            .append_as_follower(&last)
            .unwrap_err()
            .kafka_error_code(),
        2
    );
}

/// Damaged leader bytes (random flips, with and without a recomputed CRC): never a panic, and
/// whatever is accepted leaves a log that reads back whole, batch by batch, to its end.
#[test]
fn hostile_leader_bytes_never_panic() {
    let (ld, fd) = (fast_tempdir(), fast_tempdir());
    let (leader, _) = leader_history(ld.path(), 12, 1);
    let clean = leader.read(0, 1 << 20, i64::MAX).unwrap().records.to_vec();
    let follower = open(fd.path());
    let mut rng = Rng(0xfeed);
    let mut accepted = 0;
    for _ in 0..400 {
        let mut bytes = clean.clone();
        for _ in 0..1 + rng.below(3) {
            let at = rng.below(bytes.len());
            bytes[at] ^= 1 << rng.below(8);
        }
        if rng.below(2) == 0 {
            // Fix every CRC so the damage reaches the checks behind it.
            let mut at = 0;
            while bytes.len() - at >= 61 {
                let Ok(h) = BatchHeader::parse(&bytes[at..]) else {
                    break;
                };
                if h.total_bytes() > bytes.len() - at || h.total_bytes() < 61 {
                    break;
                }
                let end = at + h.total_bytes();
                let crc = crc32c::crc32c(&bytes[at + batch::ATTRIBUTES_AT..end]);
                bytes[at + batch::CRC_AT..at + batch::CRC_AT + 4]
                    .copy_from_slice(&crc.to_be_bytes());
                at = end;
            }
        }
        if rng.below(4) == 0 {
            bytes.truncate(rng.below(bytes.len()));
        }
        if follower.append_as_follower(&bytes).is_ok() {
            accepted += 1;
            let got = all_batches(&follower);
            let end = follower.log_end_offset();
            assert_eq!(got.last().map_or(0, |b| b.0.last_offset() + 1), end);
        }
        follower.truncate_fully_and_start_at(0).unwrap();
    }
    assert!(accepted > 0);
}

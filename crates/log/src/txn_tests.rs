//! Tests of transactions in the log, one rule each: transactional batches open a
//! transaction, markers end it (and their epoch checks), the last stable offset, the
//! transaction index (written on abort, searched by fetches, rebuilt when recovered or
//! damaged, cut by truncation, deleted with its segment), and followers ending up with the
//! leader's state.

use std::path::Path;

use crate::batch::BatchHeader;
use crate::testkit::{committed, BatchBuilder};
use crate::txn_index::{AbortedTxn, TxnIndex};
use crate::{LogConfig, PartitionLog};

const NOW: i64 = 1_700_000_000_000;
const ID: [u8; 16] = [7; 16];

fn config() -> LogConfig {
    LogConfig {
        segment_bytes: 4096,
        index_interval_bytes: 200,
        ..LogConfig::default()
    }
}

fn open(dir: &Path) -> PartitionLog {
    PartitionLog::open(dir, ID, config(), NOW).unwrap()
}

/// `n` records from `pid`'s transaction (epoch `epoch`, first sequence `seq`).
fn txn_batch(pid: i64, epoch: i16, seq: i32, n: usize) -> Vec<u8> {
    BatchBuilder::new(NOW)
        .records(n)
        .producer(pid, epoch, seq)
        .attributes_extra(0x10)
        .build()
}

fn plain(n: usize) -> Vec<u8> {
    BatchBuilder::new(NOW).records(n).build()
}

/// Append a transactional batch; returns its base offset.
fn txn(log: &PartitionLog, pid: i64, seq: i32, n: usize) -> i64 {
    log.append_allowing_transactions(&txn_batch(pid, 0, seq, n), 0, NOW)
        .unwrap()
        .base_offset
}

fn marker(log: &PartitionLog, pid: i64, commit: bool) -> i64 {
    log.append_control_marker(pid, 0, 0, commit, 0, NOW)
        .unwrap()
        .base_offset
}

fn aborted(log: &PartitionLog, from: i64, upper: i64) -> Vec<(i64, i64)> {
    log.aborted_transactions(from, upper)
        .unwrap()
        .iter()
        .map(|t| (t.producer_id, t.first_offset))
        .collect()
}

fn all_aborted(log: &PartitionLog) -> Vec<AbortedTxn> {
    log.segments
        .read()
        .unwrap()
        .iter()
        .flat_map(|s| s.aborted_entries())
        .collect()
}

#[test]
fn without_transactions_the_lso_is_the_high_watermark() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path());
    log.append(&plain(3), 0, NOW).unwrap();
    assert_eq!(log.last_stable_offset(), 0);
    committed(&log);
    assert_eq!(log.last_stable_offset(), 3);
    // An idempotent, non-transactional producer opens nothing either.
    log.append(
        &BatchBuilder::new(NOW).records(2).producer(5, 0, 0).build(),
        0,
        NOW,
    )
    .unwrap();
    assert_eq!(committed(&log).last_stable_offset(), 5);
    assert!(aborted(&log, 0, 5).is_empty());
}

#[test]
fn an_open_transaction_holds_the_lso_until_its_marker_is_below_the_high_watermark() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path());
    log.append(&plain(2), 0, NOW).unwrap(); // 0..=1
    let first = txn(&log, 1, 0, 3); // 2..=4
    assert_eq!(first, 2);
    log.append(&plain(1), 0, NOW).unwrap(); // 5
    txn(&log, 1, 3, 1); // 6: same transaction, LSO stays at its first offset
    assert_eq!(committed(&log).last_stable_offset(), 2);
    // The commit marker at 7: the transaction ended, but until the high watermark passes the
    // marker it could be lost with a leader change, so the LSO does not move yet.
    log.set_high_watermark(7);
    assert_eq!(marker(&log, 1, true), 7);
    assert_eq!(log.last_stable_offset(), 2);
    log.set_high_watermark(8);
    assert_eq!(log.last_stable_offset(), 8);
    // A committed transaction leaves no index entry.
    assert!(all_aborted(&log).is_empty());
}

#[test]
fn the_lso_is_the_oldest_open_transaction_of_any_producer() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path());
    txn(&log, 1, 0, 1); // 0
    txn(&log, 2, 0, 1); // 1
    committed(&log);
    assert_eq!(log.last_stable_offset(), 0);
    marker(&log, 1, false); // 2: aborts pid 1; pid 2's transaction (from 1) still open
    assert_eq!(committed(&log).last_stable_offset(), 1);
    // The abort's index entry carries the LSO at the abort: pid 2's first offset.
    assert_eq!(
        all_aborted(&log),
        vec![AbortedTxn {
            producer_id: 1,
            first_offset: 0,
            last_offset: 2,
            last_stable_offset: 1,
        }]
    );
    marker(&log, 2, false); // 3
    assert_eq!(committed(&log).last_stable_offset(), 4);
    assert_eq!(
        all_aborted(&log)[1].last_stable_offset,
        4,
        "no other open: marker + 1"
    );
}

#[test]
fn a_non_transactional_batch_during_a_transaction_is_invalid_txn_state() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path());
    txn(&log, 1, 0, 1);
    let idempotent = BatchBuilder::new(NOW).records(1).producer(1, 0, 1).build();
    let e = log
        .append_allowing_transactions(&idempotent, 0, NOW)
        .unwrap_err();
    assert_eq!(e.kafka_error_code(), 48);
    marker(&log, 1, true);
    log.append(&idempotent, 0, NOW).unwrap();
}

#[test]
fn clients_cannot_write_markers_and_append_refuses_transactions() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path());
    let control = BatchBuilder::new(NOW)
        .records(1)
        .producer(1, 0, 0)
        .attributes_extra(0x30)
        .build();
    for allow in [false, true] {
        let r = if allow {
            log.append_allowing_transactions(&control, 0, NOW)
        } else {
            log.append(&control, 0, NOW)
        };
        assert_eq!(r.unwrap_err().kafka_error_code(), 87);
    }
    let e = log.append(&txn_batch(1, 0, 0, 1), 0, NOW).unwrap_err();
    assert_eq!(e.kafka_error_code(), 48);
    assert_eq!(log.log_end_offset(), 0);
}

#[test]
fn markers_check_producer_and_coordinator_epochs_and_write_nothing_when_refused() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path());
    log.append_allowing_transactions(&txn_batch(1, 3, 0, 1), 0, NOW)
        .unwrap();
    log.append_control_marker(1, 3, 5, false, 0, NOW).unwrap(); // 1
    let end = log.log_end_offset();
    // Older producer epoch: Kafka's INVALID_PRODUCER_EPOCH.
    let e = log
        .append_control_marker(1, 2, 5, true, 0, NOW)
        .unwrap_err();
    assert_eq!(e.kafka_error_code(), 47);
    // Older coordinator epoch: TRANSACTION_COORDINATOR_FENCED.
    let e = log
        .append_control_marker(1, 3, 4, true, 0, NOW)
        .unwrap_err();
    assert_eq!(e.kafka_error_code(), 52);
    assert_eq!(log.log_end_offset(), end);
    // The same coordinator epoch again (a resend) and a newer one are fine, with nothing
    // open: written, no index entry, LSO unaffected.
    log.append_control_marker(1, 3, 5, false, 0, NOW).unwrap();
    log.append_control_marker(1, 4, 6, true, 0, NOW).unwrap();
    assert_eq!(log.log_end_offset(), end + 2);
    assert_eq!(all_aborted(&log).len(), 1);
    assert_eq!(committed(&log).last_stable_offset(), end + 2);
    // A marker for a producer the log never saw is written too.
    log.append_control_marker(99, 0, 0, false, 0, NOW).unwrap();
}

#[test]
fn a_marker_is_kafkas_control_batch_stamped_like_any_batch() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path());
    txn(&log, 7, 0, 2);
    let at = log
        .append_control_marker(7, 0, 3, true, 4, NOW + 5)
        .unwrap();
    assert_eq!((at.base_offset, at.last_offset), (2, 2));
    let r = log.read(2, 1 << 20, i64::MAX).unwrap();
    let h = BatchHeader::parse(&r.records).unwrap();
    assert!(h.is_control() && h.is_transactional());
    assert_eq!((h.base_offset, h.partition_leader_epoch), (2, 4));
    assert_eq!(
        (h.producer_id, h.producer_epoch, h.base_sequence),
        (7, 0, -1)
    );
    assert_eq!(h.max_timestamp, NOW + 5);
    let m = crate::control::decode_marker(&r.records, &h)
        .unwrap()
        .unwrap();
    assert!(m.commit);
    assert_eq!(m.coordinator_epoch, 3);
    assert_eq!(log.latest_leader_epoch(), Some(4));
}

/// pid 1 aborts [0, 3), pid 2 commits, pid 3 aborts [5, 9) across other data.
fn history(log: &PartitionLog) {
    txn(log, 1, 0, 2); // 0..=1
    marker(log, 1, false); // 2
    txn(log, 2, 0, 1); // 3
    marker(log, 2, true); // 4
    txn(log, 3, 0, 1); // 5
    log.append(&plain(2), 0, NOW).unwrap(); // 6..=7
    txn(log, 3, 1, 1); // 8
    marker(log, 3, false); // 9
    log.append(&plain(1), 0, NOW).unwrap(); // 10
    committed(log);
}

#[test]
fn aborted_transactions_are_those_overlapping_the_fetched_range() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path());
    history(&log);
    assert_eq!(aborted(&log, 0, 11), vec![(1, 0), (3, 5)]);
    assert_eq!(aborted(&log, 0, 2), vec![(1, 0)]);
    assert_eq!(
        aborted(&log, 2, 3),
        vec![(1, 0)],
        "the marker itself overlaps"
    );
    assert_eq!(aborted(&log, 3, 5), vec![]);
    assert_eq!(aborted(&log, 3, 6), vec![(3, 5)]);
    assert_eq!(
        aborted(&log, 7, 8),
        vec![(3, 5)],
        "fetching inside the transaction"
    );
    assert_eq!(aborted(&log, 10, 11), vec![]);
    assert_eq!(aborted(&log, 5, 5), vec![]);
}

#[test]
fn aborts_are_indexed_in_the_segment_of_their_marker_and_found_across_segments() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path());
    // Transactions spanning rolls (4 KiB segments, ~700-byte batches).
    let mut expected = Vec::new();
    for round in 0..12i64 {
        let pid = 10 + round;
        let first = log
            .append_allowing_transactions(
                &BatchBuilder::new(NOW)
                    .sized_records(3, 200)
                    .producer(pid, 0, 0)
                    .attributes_extra(0x10)
                    .build(),
                0,
                NOW,
            )
            .unwrap()
            .base_offset;
        log.append(
            &BatchBuilder::new(NOW).sized_records(2, 300).build(),
            0,
            NOW,
        )
        .unwrap();
        let abort = round % 3 != 0;
        let at = marker(&log, pid, !abort);
        if abort {
            expected.push((pid, first, at));
        }
    }
    committed(&log);
    assert!(log.segment_count() > 3);
    // Every entry sits in the segment holding its marker.
    for seg in log.segments.read().unwrap().iter() {
        for e in seg.aborted_entries() {
            assert!(e.last_offset >= seg.base_offset && e.last_offset < seg.next_offset());
        }
    }
    let all: Vec<(i64, i64)> = expected.iter().map(|&(p, f, _)| (p, f)).collect();
    assert_eq!(aborted(&log, 0, log.log_end_offset()), all);
    // From every offset, exactly the aborts whose range reaches it.
    for from in 0..log.log_end_offset() {
        let want: Vec<(i64, i64)> = expected
            .iter()
            .filter(|&&(_, _, last)| last >= from)
            .map(|&(p, f, _)| (p, f))
            .collect();
        assert_eq!(
            aborted(&log, from, log.log_end_offset()),
            want,
            "from {from}"
        );
    }
}

#[test]
fn open_transactions_and_epochs_survive_a_clean_restart() {
    let dir = tempfile::tempdir().unwrap();
    {
        let log = open(dir.path());
        history(&log);
        txn(&log, 4, 0, 1); // 11: open
        log.append_control_marker(5, 0, 9, true, 0, NOW).unwrap(); // 12: coordinator epoch 9
        committed(&log);
        assert_eq!(log.last_stable_offset(), 11);
        log.close().unwrap();
    }
    let log =
        PartitionLog::open_with_high_watermark(dir.path(), ID, config(), NOW, Some(13)).unwrap();
    assert_eq!(log.last_stable_offset(), 11);
    assert_eq!(aborted(&log, 0, 13), vec![(1, 0), (3, 5)]);
    let e = log
        .append_control_marker(5, 0, 8, true, 0, NOW)
        .unwrap_err();
    assert_eq!(
        e.kafka_error_code(),
        52,
        "the coordinator epoch came back from the snapshot"
    );
    marker(&log, 4, false);
    assert_eq!(committed(&log).last_stable_offset(), 14);
}

/// Damage the transaction index of the segment based at `base` with `damage`, reopen, and
/// check the index was rebuilt to what it was.
fn reopen_after(damage: impl Fn(&Path), clean: bool) {
    let dir = tempfile::tempdir().unwrap();
    let before;
    {
        let log = open(dir.path());
        history(&log);
        txn(&log, 4, 0, 1); // 11, open
        before = all_aborted(&log);
        assert_eq!(before.len(), 2);
        if clean {
            log.close().unwrap();
        }
    }
    damage(dir.path());
    let log =
        PartitionLog::open_with_high_watermark(dir.path(), ID, config(), NOW, Some(12)).unwrap();
    assert_eq!(all_aborted(&log), before);
    assert_eq!(aborted(&log, 0, 12), vec![(1, 0), (3, 5)]);
    assert_eq!(log.last_stable_offset(), 11);
}

fn index_path(dir: &Path) -> std::path::PathBuf {
    TxnIndex::path(dir, 0)
}

#[test]
fn a_recovered_segment_rebuilds_its_transaction_index() {
    // Unclean: the segment is past the recovery point; its index is rebuilt even untouched,
    // missing, or torn.
    reopen_after(|_| {}, false);
    reopen_after(|d| std::fs::remove_file(index_path(d)).unwrap(), false);
    reopen_after(
        |d| {
            let f = std::fs::OpenOptions::new()
                .write(true)
                .open(index_path(d))
                .unwrap();
            f.set_len(40).unwrap();
        },
        false,
    );
}

#[test]
fn a_damaged_transaction_index_is_rebuilt_even_after_a_clean_shutdown() {
    // Torn, an unknown version, a marker outside the segment, garbage: a log line and a
    // rebuild, never a panic or a wrong answer.
    reopen_after(
        |d| {
            let f = std::fs::OpenOptions::new()
                .write(true)
                .open(index_path(d))
                .unwrap();
            f.set_len(50).unwrap();
        },
        true,
    );
    reopen_after(
        |d| {
            let mut b = std::fs::read(index_path(d)).unwrap();
            b[1] = 9;
            std::fs::write(index_path(d), b).unwrap();
        },
        true,
    );
    reopen_after(
        |d| {
            let mut b = std::fs::read(index_path(d)).unwrap();
            b[18..26].copy_from_slice(&1_000i64.to_be_bytes());
            std::fs::write(index_path(d), b).unwrap();
        },
        true,
    );
    reopen_after(
        |d| std::fs::write(index_path(d), vec![0xab; 68]).unwrap(),
        true,
    );
}

#[test]
fn truncation_cuts_the_index_and_reopens_the_transactions_it_cut_the_markers_of() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path());
    history(&log);
    // Cut the abort marker of pid 3 (at 9): its transaction is open again from 5.
    log.truncate_to(9).unwrap();
    assert_eq!(aborted(&log, 0, 9), vec![(1, 0)]);
    assert_eq!(all_aborted(&log).len(), 1);
    assert_eq!(committed(&log).last_stable_offset(), 5);
    // Cut into the transaction's data: still open, from 5.
    log.truncate_to(7).unwrap();
    assert_eq!(committed(&log).last_stable_offset(), 5);
    // Cut below its first batch: gone, the LSO is the high watermark again.
    log.truncate_to(5).unwrap();
    assert_eq!(committed(&log).last_stable_offset(), 5);
    txn(&log, 3, 0, 1); // 5 again
    marker(&log, 3, false); // 6
    assert_eq!(aborted(&log, 0, 7), vec![(1, 0), (3, 5)]);
    // And the whole thing survives an unclean restart.
    drop(log);
    let log =
        PartitionLog::open_with_high_watermark(dir.path(), ID, config(), NOW, Some(7)).unwrap();
    assert_eq!(aborted(&log, 0, 7), vec![(1, 0), (3, 5)]);
    assert_eq!(log.last_stable_offset(), 7);
    // Full truncation forgets every transaction.
    txn(&log, 8, 0, 1);
    log.truncate_fully_and_start_at(20).unwrap();
    assert_eq!(committed(&log).last_stable_offset(), 20);
    assert!(all_aborted(&log).is_empty());
}

#[test]
fn deleting_a_segment_deletes_its_transaction_index() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path());
    history(&log);
    assert!(index_path(dir.path()).exists());
    // Move on to a new segment, then delete everything below it.
    log.append(
        &BatchBuilder::new(NOW).sized_records(2, 2000).build(),
        0,
        NOW,
    )
    .unwrap();
    log.append(
        &BatchBuilder::new(NOW).sized_records(2, 2000).build(),
        0,
        NOW,
    )
    .unwrap();
    committed(&log);
    assert!(log.segment_count() > 1);
    log.delete_records_before(log.high_watermark()).unwrap();
    assert!(!index_path(dir.path()).exists());
    assert!(std::fs::read_dir(dir.path()).unwrap().all(|e| !e
        .unwrap()
        .file_name()
        .to_string_lossy()
        .contains(".deleted")));
}

#[test]
fn a_follower_copying_the_leaders_batches_ends_with_the_leaders_state() {
    let (ld, fd) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let leader = open(ld.path());
    let follower = open(fd.path());
    history(&leader);
    txn(&leader, 4, 0, 1); // 11, open
    leader
        .append_control_marker(6, 0, 2, false, 0, NOW)
        .unwrap(); // 12, nothing open
    committed(&leader);
    let mut next = 0;
    while next < leader.log_end_offset() {
        let r = leader.read(next, 300, i64::MAX).unwrap();
        next = follower
            .append_as_follower(&r.records)
            .unwrap()
            .log_end_offset;
    }
    follower.set_high_watermark(leader.high_watermark());
    assert_eq!(follower.last_stable_offset(), leader.last_stable_offset());
    assert_eq!(follower.last_stable_offset(), 11);
    assert_eq!(all_aborted(&follower), all_aborted(&leader));
    assert_eq!(
        std::fs::read(index_path(fd.path())).unwrap(),
        std::fs::read(index_path(ld.path())).unwrap()
    );
    {
        let (l, f) = (
            leader.writer.lock().unwrap(),
            follower.writer.lock().unwrap(),
        );
        assert_eq!(l.producers, f.producers);
    }
    assert_eq!(*follower.txns.lock().unwrap(), *leader.txns.lock().unwrap());
    // Promoted, the follower checks the coordinator epoch the leader's markers recorded.
    let e = follower
        .append_control_marker(6, 0, 1, true, 1, NOW)
        .unwrap_err();
    assert_eq!(e.kafka_error_code(), 52);
}

#[test]
fn a_follower_refuses_a_control_batch_that_is_not_a_readable_marker() {
    let dir = tempfile::tempdir().unwrap();
    let follower = open(dir.path());
    let bad = BatchBuilder::new(NOW)
        .records(1)
        .producer(1, 0, -1)
        .attributes_extra(0x30)
        .build();
    assert!(follower.append_as_follower(&bad).is_err());
    assert_eq!(follower.log_end_offset(), 0);
}

// The cleaner and transactions.

const DAY_MS: i64 = 86_400_000;

fn compacted() -> LogConfig {
    LogConfig {
        segment_bytes: 1024,
        index_interval_bytes: 128,
        cleanup_policy: crate::CleanupPolicy::Compact,
        ..LogConfig::default()
    }
}

/// One keyed record as a batch: plain, or transactional from `pid`.
fn keyed(key: &str, value: &str, txn_pid: Option<(i64, i32)>) -> Vec<u8> {
    let b = BatchBuilder::new(NOW).custom_records(vec![crate::testkit::Rec {
        key: Some(key.as_bytes().to_vec()),
        value: Some(value.as_bytes().to_vec()),
        headers: vec![],
    }]);
    match txn_pid {
        Some((pid, seq)) => b.producer(pid, 0, seq).attributes_extra(0x10).build(),
        None => b.build(),
    }
}

/// What a reader of the whole log sees: (offset, key or "<marker>", value).
fn contents(log: &PartitionLog) -> Vec<(i64, String, String)> {
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
            let b = &r.records[at..at + h.total_bytes()];
            if h.is_control() {
                let m = crate::control::decode_marker(b, &h).unwrap().unwrap();
                let what = if m.commit { "commit" } else { "abort" };
                out.push((
                    h.base_offset,
                    "<marker>".into(),
                    format!("{what} {}", h.producer_id),
                ));
            } else {
                let raw = crate::records::decompressed_records(b, &h).unwrap();
                for rec in crate::records::stored_records(&raw, &h).unwrap() {
                    let text = |r: Option<std::ops::Range<usize>>| {
                        r.map_or(String::new(), |r| {
                            String::from_utf8(raw[r].to_vec()).unwrap()
                        })
                    };
                    out.push((
                        h.base_offset + rec.offset_delta as i64,
                        text(rec.key),
                        text(rec.value),
                    ));
                }
            }
            next = h.last_offset() + 1;
            at += h.total_bytes();
        }
    }
    out
}

/// Roll so everything so far is in sealed segments, commit it, and clean until done.
fn seal_and_clean(log: &PartitionLog, now_ms: i64) {
    log.append(&keyed("filler", "x", None), 0, now_ms).unwrap();
    log.tick(now_ms + 8 * DAY_MS).unwrap();
    committed(log);
    for _ in 0..100 {
        if !log
            .clean(now_ms, &crate::CleanerLimits::default())
            .unwrap()
            .more
        {
            return;
        }
    }
    panic!("cleaner never finished");
}

fn offsets_of(c: &[(i64, String, String)], key: &str) -> Vec<i64> {
    c.iter().filter(|r| r.1 == key).map(|r| r.0).collect()
}

#[test]
fn the_cleaner_drops_aborted_data_never_lets_it_supersede_and_keeps_markers_for_delete_retention() {
    let dir = tempfile::tempdir().unwrap();
    let log = PartitionLog::open(dir.path(), ID, compacted(), NOW).unwrap();
    log.append(&keyed("k", "committed", None), 0, NOW).unwrap(); // 0
    log.append_allowing_transactions(&keyed("k", "aborted", Some((1, 0))), 0, NOW)
        .unwrap(); // 1
    log.append_control_marker(1, 0, 0, false, 0, NOW).unwrap(); // 2
    log.append_allowing_transactions(&keyed("j", "in-commit", Some((2, 0))), 0, NOW)
        .unwrap(); // 3
    log.append_control_marker(2, 0, 0, true, 0, NOW).unwrap(); // 4
                                                               // pid 1 writes again, so its aborted batch is not its newest (that one would stay, empty,
                                                               // for its sequence, and with it the abort marker, as in Kafka).
    log.append_allowing_transactions(&keyed("m", "later", Some((1, 1))), 0, NOW)
        .unwrap(); // 5
    log.append_control_marker(1, 0, 0, true, 0, NOW).unwrap(); // 6
    let t0 = NOW + 1_000;
    seal_and_clean(&log, t0);
    let c = contents(&log);
    // The aborted value is gone and did not supersede the committed one; both markers stay
    // (this pass still met their data), and so does the abort's index entry.
    assert_eq!(offsets_of(&c, "k"), vec![0]);
    assert_eq!(c[0].2, "committed");
    assert_eq!(offsets_of(&c, "j"), vec![3]);
    assert_eq!(offsets_of(&c, "<marker>"), vec![2, 4, 6]);
    assert_eq!(aborted(&log, 0, log.log_end_offset()), vec![(1, 1)]);
    // Data gone, but delete.retention.ms not passed since offset 2 was cleaned: kept.
    seal_and_clean(&log, t0 + DAY_MS - 1);
    assert_eq!(offsets_of(&contents(&log), "<marker>"), vec![2, 4, 6]);
    // Past it: the abort marker and its index entry go; the commit markers stay with their
    // data.
    seal_and_clean(&log, t0 + DAY_MS + 1);
    let c = contents(&log);
    assert_eq!(offsets_of(&c, "<marker>"), vec![4, 6]);
    assert_eq!(offsets_of(&c, "k"), vec![0]);
    assert!(aborted(&log, 0, log.log_end_offset()).is_empty());
    // The same after an unclean restart (indexes rebuilt) and a clean one.
    let end = log.log_end_offset();
    drop(log);
    let log = PartitionLog::open_with_high_watermark(dir.path(), ID, compacted(), NOW, Some(end))
        .unwrap();
    assert_eq!(contents(&log), c);
    assert!(aborted(&log, 0, end).is_empty());
    assert_eq!(log.last_stable_offset(), end);
    log.close().unwrap();
    // A rewrite interrupted by a crash leaves a `.txnindex.cleaned`: removed on open.
    let leftover = TxnIndex::rewrite_path(dir.path(), 0);
    std::fs::write(&leftover, [1u8; 34]).unwrap();
    let log = PartitionLog::open_with_high_watermark(dir.path(), ID, compacted(), NOW, Some(end))
        .unwrap();
    assert_eq!(contents(&log), c);
    assert!(!leftover.exists());
}

#[test]
fn the_cleaner_never_cleans_at_or_above_the_last_stable_offset() {
    let dir = tempfile::tempdir().unwrap();
    let log = PartitionLog::open(dir.path(), ID, compacted(), NOW).unwrap();
    log.append_allowing_transactions(&keyed("t", "open", Some((3, 0))), 0, NOW)
        .unwrap(); // 0: holds the LSO
    for i in 0..6 {
        log.append(&keyed("k", &format!("v{i}"), None), 0, NOW)
            .unwrap();
    }
    seal_and_clean(&log, NOW + 1_000);
    assert_eq!(log.last_stable_offset(), 0);
    assert_eq!(
        offsets_of(&contents(&log), "k").len(),
        6,
        "nothing above the LSO cleaned"
    );
    log.append_control_marker(3, 0, 0, true, 0, NOW).unwrap();
    seal_and_clean(&log, NOW + 2_000);
    let c = contents(&log);
    assert_eq!(
        offsets_of(&c, "k").len(),
        1,
        "cleaned once the transaction is decided"
    );
    assert_eq!(
        offsets_of(&c, "t"),
        vec![0],
        "committed transactional data is kept"
    );
}

/// The transactions a random history should leave: aborted (pid, first, marker) and the open
/// ones (pid -> first).
#[derive(Default)]
struct TxnModel {
    open: std::collections::BTreeMap<i64, i64>,
    aborted: Vec<(i64, i64, i64)>,
    seq: std::collections::BTreeMap<i64, i32>,
}

impl TxnModel {
    /// Aborts overlapping [from, upper), in marker order.
    fn aborted_between(&self, from: i64, upper: i64) -> Vec<(i64, i64)> {
        self.aborted
            .iter()
            .filter(|&&(_, first, last)| last >= from && first < upper)
            .map(|&(pid, first, _)| (pid, first))
            .collect()
    }

    fn lso(&self, high_watermark: i64) -> i64 {
        self.open
            .values()
            .copied()
            .min()
            .map_or(high_watermark, |f| f.min(high_watermark))
    }
}

/// One random step on `log`, mirrored in `model`: a plain batch, a transactional batch (opening
/// its producer's transaction), or a marker (ending it, or ending nothing).
fn random_step(log: &PartitionLog, model: &mut TxnModel, rng: &mut crate::batch::tests::Rng) {
    let pid = 1 + rng.below(4) as i64;
    match rng.below(5) {
        0 => {
            log.append(
                &BatchBuilder::new(NOW)
                    .sized_records(1 + rng.below(3), 50)
                    .build(),
                0,
                NOW,
            )
            .unwrap();
        }
        1 | 2 => {
            let seq = model.seq.entry(pid).or_insert(0);
            let n = 1 + rng.below(3);
            let b = BatchBuilder::new(NOW)
                .sized_records(n, 40 + rng.below(200))
                .producer(pid, 0, *seq)
                .attributes_extra(0x10)
                .build();
            let at = log
                .append_allowing_transactions(&b, 0, NOW)
                .unwrap()
                .base_offset;
            *seq += n as i32;
            model.open.entry(pid).or_insert(at);
        }
        _ => {
            let commit = rng.below(2) == 0;
            let at = log
                .append_control_marker(pid, 0, 0, commit, 0, NOW)
                .unwrap()
                .base_offset;
            if let Some(first) = model.open.remove(&pid) {
                if !commit {
                    model.aborted.push((pid, first, at));
                }
            }
        }
    }
}

/// Copy the leader's log from the follower's end.
fn catch_up(leader: &PartitionLog, follower: &PartitionLog) {
    let mut next = follower.log_end_offset();
    while next < leader.log_end_offset() {
        let r = leader.read(next, 700, i64::MAX).unwrap();
        next = follower
            .append_as_follower(&r.records)
            .unwrap()
            .log_end_offset;
    }
    follower.set_high_watermark(leader.high_watermark());
}

#[test]
fn random_transaction_histories_agree_with_a_model_on_leader_follower_and_after_restarts() {
    let mut rng = crate::batch::tests::Rng(0x51ed_2701_a5a5_1234);
    for round in 0..4 {
        let (ld, fd) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let mut leader = open(ld.path());
        let mut follower = open(fd.path());
        let mut model = TxnModel::default();
        for step in 0..300 {
            random_step(&leader, &mut model, &mut rng);
            committed(&leader);
            if step % 37 == 0 {
                // A follower that diverged by losing its tail: cut it back, then catch up.
                catch_up(&leader, &follower);
                let cut = rng.below(follower.log_end_offset() as usize + 1) as i64;
                follower.truncate_to(cut).unwrap();
            }
            if step % 101 == 100 {
                // Crash and reopen both (no clean shutdown): indexes and state rebuilt.
                let (hw, fhw) = (leader.high_watermark(), follower.high_watermark());
                drop(leader);
                drop(follower);
                leader =
                    PartitionLog::open_with_high_watermark(ld.path(), ID, config(), NOW, Some(hw))
                        .unwrap();
                follower =
                    PartitionLog::open_with_high_watermark(fd.path(), ID, config(), NOW, Some(fhw))
                        .unwrap();
            }
            let end = leader.log_end_offset();
            assert_eq!(
                leader.last_stable_offset(),
                model.lso(end),
                "round {round} step {step}"
            );
            if step % 13 == 0 {
                let from = rng.below(end as usize) as i64;
                let upper = from + 1 + rng.below((end - from) as usize) as i64;
                assert_eq!(
                    aborted(&leader, from, upper),
                    model.aborted_between(from, upper),
                    "round {round} step {step}: [{from}, {upper})"
                );
            }
        }
        catch_up(&leader, &follower);
        let end = leader.log_end_offset();
        assert!(leader.segment_count() > 3, "the history spans segments");
        assert_eq!(aborted(&follower, 0, end), model.aborted_between(0, end));
        assert_eq!(all_aborted(&follower), all_aborted(&leader));
        assert_eq!(follower.last_stable_offset(), leader.last_stable_offset());
        assert_eq!(*follower.txns.lock().unwrap(), *leader.txns.lock().unwrap());
    }
}

#[test]
fn the_lso_never_falls_below_the_log_start() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path());
    txn(&log, 1, 0, 1); // 0: open
    log.append(&plain(3), 0, NOW).unwrap(); // 1..=3
    assert_eq!(committed(&log).last_stable_offset(), 0);
    // DeleteRecords past the open transaction's start (Kafka: maybeIncrementFirstUnstableOffset
    // takes the log start then).
    log.delete_records_before(2).unwrap();
    assert_eq!(log.last_stable_offset(), 2);
    marker(&log, 1, true);
    assert_eq!(committed(&log).last_stable_offset(), 5);
}

#[test]
fn producers_are_described_as_describe_producers_reports_them() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path());
    log.append_allowing_transactions(&txn_batch(1, 2, 0, 3), 0, NOW)
        .unwrap(); // 0..=2, open
    log.append(
        &BatchBuilder::new(NOW).records(2).producer(2, 0, 5).build(),
        0,
        NOW,
    )
    .unwrap(); // 3..=4
    log.append_control_marker(3, 1, 7, false, 0, NOW + 9)
        .unwrap(); // 5: markers only
    let info = log.producers();
    // One producer's state is the same, looked up by id.
    for p in &info {
        assert_eq!(log.producer(p.producer_id).as_ref(), Some(p));
    }
    assert_eq!(log.producer(4), None);
    assert_eq!(
        info,
        vec![
            crate::ProducerInfo {
                producer_id: 1,
                producer_epoch: 2,
                last_sequence: 2,
                last_timestamp: NOW + 2,
                coordinator_epoch: -1,
                current_txn_start_offset: 0,
            },
            crate::ProducerInfo {
                producer_id: 2,
                producer_epoch: 0,
                last_sequence: 6,
                last_timestamp: NOW + 1,
                coordinator_epoch: -1,
                current_txn_start_offset: -1,
            },
            crate::ProducerInfo {
                producer_id: 3,
                producer_epoch: 1,
                last_sequence: -1,
                last_timestamp: NOW + 9,
                coordinator_epoch: 7,
                current_txn_start_offset: -1,
            },
        ]
    );
}

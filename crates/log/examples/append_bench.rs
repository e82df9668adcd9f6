//! Prints append and read throughput of a `PartitionLog`, and how well group commit coalesces
//! fsyncs when every append must be flushed (`flush_interval_messages = 1`).
//!
//! Run: `cargo run --release -p josefine-log --example append_bench [dir]`
//! (default dir: a temp dir under the current directory, so it measures the real disk).

use std::sync::Arc;
use std::time::Instant;

use josefine_log::testkit::BatchBuilder;
use josefine_log::{LogConfig, PartitionLog};

fn main() {
    let base = std::env::args().nth(1).unwrap_or_else(|| ".".into());
    let now = 1_700_000_000_000;
    // Small records (the profile's 100 B produce) first: per-record costs show there.
    let small_records = BatchBuilder::new(now).sized_records(100, 100).build();
    {
        let dir = tempfile::tempdir_in(&base).expect("temp dir");
        let log = PartitionLog::open(dir.path(), [1; 16], LogConfig::default(), now).expect("open");
        time_appends(
            &log,
            &small_records,
            20_000,
            now,
            "no fsync, 100 x 100 B records",
        );
    }
    let batch = BatchBuilder::new(now).sized_records(100, 1000).build();
    {
        let dir = tempfile::tempdir_in(&base).expect("temp dir");
        let log = PartitionLog::open(dir.path(), [1; 16], LogConfig::default(), now).expect("open");
        time_appends(&log, &batch, 2000, now, "no fsync (default policy)");
        let start = Instant::now();
        let mut next = 0;
        let mut bytes = 0usize;
        while next < log.log_end_offset() {
            let r = log.read(next, 1 << 20, i64::MAX).expect("read");
            bytes += r.records.len();
            let mut at = 0;
            while at < r.records.len() {
                let h = josefine_log::batch::BatchHeader::parse(&r.records[at..]).expect("batch");
                next = h.last_offset() + 1;
                at += h.total_bytes();
            }
        }
        let secs = start.elapsed().as_secs_f64();
        println!(
            "read (1 MiB fetches, page cache): {:.0} MB/s",
            bytes as f64 / secs / 1e6
        );
        // A follower copying the whole log in 1 MiB fetch responses (CRC-checked, stored as is).
        let fetches: Vec<bytes::Bytes> = {
            let mut out = Vec::new();
            let mut next = 0;
            while next < log.log_end_offset() {
                let r = log.read(next, 1 << 20, i64::MAX).expect("read");
                let mut at = 0;
                while at < r.records.len() {
                    let h =
                        josefine_log::batch::BatchHeader::parse(&r.records[at..]).expect("batch");
                    next = h.last_offset() + 1;
                    at += h.total_bytes();
                }
                out.push(r.records);
            }
            out
        };
        let follower_dir = tempfile::tempdir_in(&base).expect("temp dir");
        let follower = PartitionLog::open(follower_dir.path(), [1; 16], LogConfig::default(), now)
            .expect("open");
        let start = Instant::now();
        for f in &fetches {
            follower.append_as_follower(f).expect("follower append");
        }
        let secs = start.elapsed().as_secs_f64();
        println!(
            "follower append (1 MiB fetch responses): {:.0} MB/s",
            log.size_bytes() as f64 / secs / 1e6
        );
        // Unclean stop with no recovery point: reopening validates (CRC) every batch.
        let size = log.size_bytes();
        drop(log);
        std::fs::remove_file(dir.path().join("recovery-point")).expect("checkpoint");
        let start = Instant::now();
        let log =
            PartitionLog::open(dir.path(), [1; 16], LogConfig::default(), now).expect("reopen");
        let secs = start.elapsed().as_secs_f64();
        assert_eq!(log.size_bytes(), size);
        println!(
            "unclean recovery of {} MB: {:.2} s ({:.0} MB/s)",
            size / 1_000_000,
            secs,
            size as f64 / secs / 1e6
        );
    }
    for threads in [1usize, 4, 16] {
        let dir = tempfile::tempdir_in(&base).expect("temp dir");
        let config = LogConfig {
            flush_interval_messages: 1,
            ..LogConfig::default()
        };
        let log = Arc::new(PartitionLog::open(dir.path(), [1; 16], config, now).expect("open"));
        let small = BatchBuilder::new(now).sized_records(10, 100).build();
        let per_thread = 1600 / threads;
        let start = Instant::now();
        let handles: Vec<_> = (0..threads)
            .map(|_| {
                let (log, small) = (log.clone(), small.clone());
                std::thread::spawn(move || {
                    for _ in 0..per_thread {
                        log.append(&small, 0, now).expect("append");
                        log.flush().expect("flush");
                    }
                })
            })
            .collect();
        for h in handles {
            h.join().expect("thread");
        }
        let secs = start.elapsed().as_secs_f64();
        let acks = threads * per_thread;
        println!(
            "fsync before ack, {threads:>2} producers: {:.0} acked appends/s, {} flush calls -> {} fsync rounds",
            acks as f64 / secs,
            acks,
            log.flush_rounds()
        );
    }
}

/// Appends `batch` `batches` times and prints the rate.
fn time_appends(log: &PartitionLog, batch: &[u8], batches: usize, now: i64, label: &str) {
    let start = Instant::now();
    for _ in 0..batches {
        log.append(batch, 0, now).expect("append");
    }
    let secs = start.elapsed().as_secs_f64();
    println!(
        "append, {label}: {batches} batches of {} bytes: {:.0} MB/s, {:.0} batches/s",
        batch.len(),
        (batches * batch.len()) as f64 / secs / 1e6,
        batches as f64 / secs
    );
}

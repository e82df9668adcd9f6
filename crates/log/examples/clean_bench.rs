//! Prints the log cleaner's throughput and effect: a compacted partition receives many versions
//! of a set of keys (lz4 batches, as clients send them), then `clean` runs to completion.
//!
//! Run: `cargo run --release -p josefine-log --example clean_bench [dir] [keys] [versions]`
//! (defaults: a temp dir under the current directory, 10000 keys, 20 versions).

use std::time::Instant;

use josefine_log::batch::Compression;
use josefine_log::testkit::{committed, BatchBuilder, Rec};
use josefine_log::{CleanerLimits, CleanupPolicy, LogConfig, PartitionLog};

fn main() {
    let mut args = std::env::args().skip(1);
    let base = args.next().unwrap_or_else(|| ".".into());
    let keys: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(10_000);
    let versions: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(20);
    let now = 1_700_000_000_000;
    let dir = tempfile::tempdir_in(&base).expect("temp dir");
    let config = LogConfig {
        segment_bytes: 16 * 1024 * 1024,
        cleanup_policy: CleanupPolicy::Compact,
        ..LogConfig::default()
    };
    let log = PartitionLog::open(dir.path(), [1; 16], config.clone(), now).expect("open");
    let per_batch = 50;
    for v in 0..versions {
        for chunk in (0..keys).collect::<Vec<_>>().chunks(per_batch) {
            let recs = chunk
                .iter()
                .map(|k| Rec {
                    key: Some(format!("key-{k:08}").into_bytes()),
                    value: Some(format!("version-{v}-{}", "x".repeat(200)).into_bytes()),
                    headers: vec![],
                })
                .collect();
            let b = BatchBuilder::new(now)
                .compression(Compression::Lz4)
                .custom_records(recs)
                .build();
            log.append(&b, 0, now).expect("append");
        }
    }
    log.tick(now + config.segment_ms).expect("roll");
    let before = log.size_bytes();
    let limits = CleanerLimits::default();
    let start = Instant::now();
    let (mut read, mut written, mut removed, mut calls) = (0u64, 0u64, 0u64, 0);
    loop {
        let out = committed(&log).clean(now, &limits).expect("clean");
        read += out.bytes_read;
        written += out.bytes_written;
        removed += out.records_removed;
        calls += 1;
        if !out.more {
            break;
        }
    }
    let secs = start.elapsed().as_secs_f64();
    println!(
        "clean: {keys} keys x {versions} versions, {} segments, {:.1} MB -> {:.1} MB in {calls} calls, {secs:.2} s",
        log.segment_count(),
        before as f64 / 1e6,
        log.size_bytes() as f64 / 1e6
    );
    println!(
        "  read {:.1} MB ({:.0} MB/s), wrote {:.1} MB, removed {removed} records ({:.0} records/s)",
        read as f64 / 1e6,
        read as f64 / 1e6 / secs,
        written as f64 / 1e6,
        removed as f64 / secs
    );
}

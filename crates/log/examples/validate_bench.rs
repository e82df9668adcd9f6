//! Prints the cost of validating a produced batch (`batch::validate_client_batch`: CRC32C,
//! header checks and a walk of every record, decompressing when compressed) per codec.
//!
//! Run: `cargo run --release -p josefine-log --example validate_bench`
//! Throughput is reported against the uncompressed record bytes (what the client produced)
//! and against the wire bytes (what arrived in the request), per second of this thread's CPU
//! time (`/proc/thread-self/schedstat`), so the figures hold on a machine shared with builds.

use std::time::{Duration, Instant};

use josefine_log::batch::{validate_client_batch, Compression, ValidationConfig};
use josefine_log::testkit::BatchBuilder;
use josefine_log::TimestampType;

fn main() {
    let now = 1_700_000_000_000;
    let cfg = ValidationConfig {
        max_message_bytes: 16 << 20,
        timestamp_type: TimestampType::CreateTime,
        timestamp_before_max_ms: i64::MAX,
        timestamp_after_max_ms: 3_600_000,
        require_keys: false,
        allow_transactional: false,
    };
    println!(
        "{:<8} {:>8} {:>10} {:>11} {:>14} {:>12}",
        "codec", "records", "value_B", "wire_bytes", "payload_MB/s", "wire_MB/s"
    );
    for (records, value_bytes) in [(1000usize, 1000usize), (100, 100), (1, 100)] {
        for codec in [
            Compression::None,
            Compression::Gzip,
            Compression::Snappy,
            Compression::Lz4,
            Compression::Zstd,
        ] {
            let batch = BatchBuilder::new(now)
                .compression(codec)
                .sized_records(records, value_bytes)
                .build();
            let uncompressed = BatchBuilder::new(now)
                .sized_records(records, value_bytes)
                .build()
                .len();
            validate_client_batch(&batch, &cfg, now).expect("valid");
            let mut iterations = 0u64;
            let start = Instant::now();
            let cpu_start = thread_cpu_ns();
            while start.elapsed() < Duration::from_millis(700) {
                for _ in 0..16 {
                    std::hint::black_box(
                        validate_client_batch(std::hint::black_box(&batch), &cfg, now).unwrap(),
                    );
                }
                iterations += 16;
            }
            let secs = (thread_cpu_ns() - cpu_start) as f64 / 1e9;
            let payload = uncompressed as f64 * iterations as f64 / secs / 1e6;
            let wire = batch.len() as f64 * iterations as f64 / secs / 1e6;
            println!(
                "{:<8} {:>8} {:>10} {:>11} {:>14.0} {:>12.0}",
                format!("{codec:?}"),
                records,
                value_bytes,
                batch.len(),
                payload,
                wire
            );
        }
    }
}

/// CPU time this thread has run, in ns (first field of the scheduler's per-thread stats).
fn thread_cpu_ns() -> u64 {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .expect("schedstat (Linux)")
        .split_whitespace()
        .next()
        .and_then(|n| n.parse().ok())
        .expect("schedstat run time")
}

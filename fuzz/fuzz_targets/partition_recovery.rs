//! Fuzzes log recovery: a partition directory of damaged segment, index, checkpoint and
//! snapshot files opened with `PartitionLog::open`, then read, appended to, closed and reopened.
//! Layout and invariants: `josefine::fuzzing::partition_recovery`. Files go to a per-process
//! directory under `$TMPDIR` (scripts/fuzz points it at /dev/shm).
#![no_main]

use std::path::PathBuf;
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;

static SCRATCH: OnceLock<PathBuf> = OnceLock::new();

fuzz_target!(|data: &[u8]| {
    let dir = SCRATCH.get_or_init(|| josefine::fuzzing::process_scratch_dir("partition_recovery"));
    josefine::fuzzing::partition_recovery(dir, data);
});

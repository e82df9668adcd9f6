//! Fuzzes chain (consensus) storage recovery: a directory of damaged segment and snapshot files
//! opened with `ChainStore::open`. Layout and invariants: `josefine::fuzzing::chain_store`.
#![no_main]

use std::path::PathBuf;
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;

static SCRATCH: OnceLock<PathBuf> = OnceLock::new();

fuzz_target!(|data: &[u8]| {
    let dir = SCRATCH.get_or_init(|| josefine::fuzzing::process_scratch_dir("chain_store"));
    josefine::fuzzing::chain_store(dir, data);
});

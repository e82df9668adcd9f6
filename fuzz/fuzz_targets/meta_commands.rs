//! Fuzzes the metadata command codec, the image's validate/apply, and command log replay of a
//! damaged file. Layout and invariants: `josefine::fuzzing::meta_commands`.
#![no_main]

use std::path::PathBuf;
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;

static SCRATCH: OnceLock<PathBuf> = OnceLock::new();

fuzz_target!(|data: &[u8]| {
    let dir = SCRATCH.get_or_init(|| josefine::fuzzing::process_scratch_dir("meta_commands"));
    josefine::fuzzing::meta_commands(dir, data);
});

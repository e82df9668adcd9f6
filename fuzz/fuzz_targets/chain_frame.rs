//! Fuzzes the chain (consensus) peer frame decoder. Layout and invariants:
//! `josefine::fuzzing::chain_frame`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    josefine::fuzzing::chain_frame(data);
});

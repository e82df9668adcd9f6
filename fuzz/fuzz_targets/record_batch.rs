//! Fuzzes produced record batch validation (`josefine_log::batch::validate_client_batch`,
//! every codec: gzip, snappy (xerial and raw), lz4, zstd) and the header rewrite done on
//! append. Layout and invariants: `josefine::fuzzing::record_batch`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    josefine::fuzzing::record_batch(data);
});

//! Fuzzes `josefine::codec::decode_request`, the exact function the server runs on every
//! frame, with the broker's allocator guard installed (it comes with the `josefine` crate).
//! The input layout and the invariants (no panic, no leaked guarded mapping, every decoded
//! body round-trips) are in `josefine::fuzzing::decode_request`, which the stable smoke test
//! `crates/broker/tests/fuzz_smoke.rs` runs too.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    josefine::fuzzing::decode_request(data);
});

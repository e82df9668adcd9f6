//! Fuzzes the SCRAM server (`josefine::security::scram`): client-first and client-final
//! messages as a SASL listener receives them. Layout and invariants:
//! `josefine::fuzzing::scram_messages`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    josefine::fuzzing::scram_messages(data);
});

//! Fuzzes the controller RPC frame decoders (JCTRL001 requests and responses). Layout and
//! invariants: `josefine::fuzzing::control_frame`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    josefine::fuzzing::control_frame(data);
});

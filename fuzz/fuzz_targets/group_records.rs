//! Fuzzes the `__consumer_offsets` record codec (`josefine_group::records`): keys, offset
//! values and group metadata values as the coordinator reads them back from disk. Layout and
//! invariants: `josefine::fuzzing::group_records`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    josefine::fuzzing::group_records(data);
});

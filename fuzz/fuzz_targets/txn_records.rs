//! Fuzzes the `__transaction_state` record codec (`josefine_txn::records`): keys and values as
//! the transaction coordinator reads them back from disk. Layout and invariants:
//! `josefine::fuzzing::txn_records`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    josefine::fuzzing::txn_records(data);
});

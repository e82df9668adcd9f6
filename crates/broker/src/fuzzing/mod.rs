//! Fuzz entry points: every decoder the broker process runs on bytes from the wire or the disk,
//! as plain functions over `&[u8]`.
//!
//! Owns: the input layout of each fuzz target, the invariants checked after each decode, and
//! the seed inputs. The cargo-fuzz targets in `fuzz/` (nightly, libFuzzer) and the stable
//! smoke test `tests/fuzz_smoke.rs` call exactly these functions, so a short CI run and a long
//! fuzzing run test the same code, and a crash file from either replays with
//! `cargo test -p josefine --test fuzz_smoke` once it is copied to `fuzz/regressions/<target>/`.
//! Must never: be called by the server (the functions `assert!` their invariants on purpose:
//! an assertion failure is a finding), or keep state between calls other than the scratch
//! directory the caller hands in.
//!
//! Lives in the broker crate because the broker links every other crate: one place reaches
//! the request codec, the log's batch validation and recovery, the metadata command codec, the
//! chain's wire codec and the control frame codec through their public APIs.

use std::path::Path;

mod batches;
mod chain;
mod control;
mod group;
mod meta;
mod recovery;
mod requests;
mod scram;
mod txn;

pub use batches::record_batch;
pub use chain::{chain_frame, chain_store};
pub use control::control_frame;
pub use group::group_records;
pub use meta::meta_commands;
pub use recovery::partition_recovery;
pub use requests::{decode_request, request_frame};
pub use scram::scram_messages;
pub use txn::txn_records;

/// The clock every target uses: batches are stamped near it so CreateTime checks pass.
pub const NOW_MS: i64 = 1_700_000_000_000;

/// The fuzz targets, by the name of their cargo-fuzz binary.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// [`decode_request`]: request header + body for every served API and version.
    DecodeRequest,
    /// [`record_batch`]: produced record batch validation, every codec.
    RecordBatch,
    /// [`partition_recovery`]: a partition directory of damaged files opened by the log.
    PartitionRecovery,
    /// [`meta_commands`]: metadata commands and image snapshots decoded, applied, and replayed
    /// from a command log.
    MetaCommands,
    /// [`chain_frame`]: a chain peer's frame.
    ChainFrame,
    /// [`group_records`]: `__consumer_offsets` keys and values read back from disk.
    GroupRecords,
    /// [`chain_store`]: a damaged chain (consensus) directory opened by `ChainStore::open`.
    ChainStore,
    /// [`control_frame`]: a controller RPC request or response frame (JCTRL001).
    ControlFrame,
    /// [`txn_records`]: `__transaction_state` keys and values read back from disk.
    TxnRecords,
    /// [`scram_messages`]: SCRAM client messages through the server's exchange.
    ScramMessages,
}

impl Target {
    pub const ALL: [Target; 10] = [
        Target::DecodeRequest,
        Target::RecordBatch,
        Target::PartitionRecovery,
        Target::MetaCommands,
        Target::ChainFrame,
        Target::GroupRecords,
        Target::ChainStore,
        Target::ControlFrame,
        Target::TxnRecords,
        Target::ScramMessages,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Target::DecodeRequest => "decode_request",
            Target::RecordBatch => "record_batch",
            Target::PartitionRecovery => "partition_recovery",
            Target::MetaCommands => "meta_commands",
            Target::ChainFrame => "chain_frame",
            Target::GroupRecords => "group_records",
            Target::ChainStore => "chain_store",
            Target::ControlFrame => "control_frame",
            Target::TxnRecords => "txn_records",
            Target::ScramMessages => "scram_messages",
        }
    }

    /// Runs one input; true when the decoder under test accepted it (see each function).
    /// `scratch` is a directory the target may wipe and fill.
    pub fn run(self, scratch: &Path, data: &[u8]) -> bool {
        match self {
            Target::DecodeRequest => decode_request(data),
            Target::RecordBatch => record_batch(data),
            Target::PartitionRecovery => partition_recovery(scratch, data),
            Target::MetaCommands => meta_commands(scratch, data),
            Target::ChainFrame => chain_frame(data),
            Target::GroupRecords => group_records(data),
            Target::ChainStore => chain_store(scratch, data),
            Target::ControlFrame => control_frame(data),
            Target::TxnRecords => txn_records(data),
            Target::ScramMessages => scram_messages(data),
        }
    }

    /// Valid (and a few deliberately borderline) inputs that reach deep into the decoder.
    pub fn seeds(self, scratch: &Path) -> Vec<Vec<u8>> {
        match self {
            Target::DecodeRequest => requests::seeds(),
            Target::RecordBatch => batches::seeds(),
            Target::PartitionRecovery => recovery::seeds(scratch),
            Target::MetaCommands => meta::seeds(),
            Target::ChainFrame => chain::frame_seeds(),
            Target::GroupRecords => group::seeds(),
            Target::ChainStore => chain::store_seeds(),
            Target::ControlFrame => control::seeds(),
            Target::TxnRecords => txn::seeds(),
            Target::ScramMessages => scram::seeds(),
        }
    }
}

/// Runs a decode that may meet hostile array counts and checks that no guarded (reserve-only)
/// mapping outlives it. The mapping count is process-wide, so such decodes are serialised: the
/// smoke test runs the targets on parallel threads.
pub(crate) fn guarded_decode<T>(decode: impl FnOnce() -> T) -> T {
    static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _serial = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let out = decode();
    assert_eq!(
        crate::alloc_guard::guarded_bytes_mapped(),
        0,
        "a guarded mapping outlived the decode"
    );
    out
}

/// A scratch directory for one fuzzing process: `$TMPDIR/josefine-fuzz-<target>-<pid>`, so
/// parallel libFuzzer jobs never share files.
pub fn process_scratch_dir(target: &str) -> std::path::PathBuf {
    std::env::temp_dir().join(format!("josefine-fuzz-{target}-{}", std::process::id()))
}

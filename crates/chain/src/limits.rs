//! Every limit of the chain crate, in one place, with the reason for its value.

/// Largest encoded message frame accepted from the wire. An InstallSnapshot carries the whole
/// metadata state; 64 MiB is far above any metadata image we expect and still bounds memory.
pub const FRAME_BYTES_MAX: usize = 64 * 1024 * 1024;

/// Largest payload of one proposal. Metadata commands are small; 1 MiB leaves room for large
/// batched records while keeping one Append bounded.
pub const PAYLOAD_BYTES_MAX: usize = 1024 * 1024;

/// Default blocks per Append run: bounds one message (with PAYLOAD_BYTES_MAX, 64 MiB) and lets
/// catch-up proceed in steps the follower can fsync quickly.
pub const BLOCKS_PER_APPEND_MAX: usize = 64;

/// Default Append runs in flight per follower while it catches up: enough to keep a LAN
/// round trip busy, few enough that a lost run costs little to resend.
pub const APPENDS_INFLIGHT_MAX: usize = 8;

/// Default bound on proposals awaiting commit on a leader: back-pressure instead of an
/// unbounded queue when followers are slow.
pub const PENDING_PROPOSALS_MAX: usize = 1024;

/// Largest voter set: a metadata quorum is a handful of brokers; this bounds per-peer state.
pub const VOTERS_MAX: usize = 64;

/// Largest on-disk record (a block with a maximal payload plus headers).
pub const RECORD_BYTES_MAX: usize = PAYLOAD_BYTES_MAX + 1024;

/// Storage segment size before rolling to a new file: small enough that space is reclaimed
/// promptly by deleting whole files after GC and snapshots.
pub const SEGMENT_BYTES_MAX: u64 = 8 * 1024 * 1024;

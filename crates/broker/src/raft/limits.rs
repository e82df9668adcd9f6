//! Limits of the chain transport and runtime, each with the reason for its value.

/// Frames queued per peer before new ones are dropped. Raft tolerates loss (heartbeats
/// retransmit); a dead or slow peer must cost bounded memory and never block the core.
pub const PEER_QUEUE_FRAMES_MAX: usize = 1024;

/// Inbound messages queued for the core. Beyond it messages are dropped (as the network might).
pub const INBOUND_QUEUE_MAX: usize = 4096;

/// Proposals queued for the core loop; `propose` waits for room (back-pressure).
pub const PROPOSAL_QUEUE_MAX: usize = 1024;

/// Committed blocks queued for the application before the core loop waits for it: the chain
/// must not run ahead of the state machine without bound.
pub const COMMITTED_QUEUE_MAX: usize = 1024;

/// Concurrent inbound connections on the raft address: voters are few; this bounds fds.
pub const INBOUND_CONNECTIONS_MAX: usize = 64;

/// Reconnect back-off: start, cap. Quick first retry for a restarting peer, capped so a
/// returning peer is found within a couple of seconds.
pub const RECONNECT_BACKOFF_MIN_MS: u64 = 50;
pub const RECONNECT_BACKOFF_MAX_MS: u64 = 2_000;

/// A connect or a frame write taking longer than this counts as a dead peer.
pub const PEER_IO_TIMEOUT_MS: u64 = 2_000;

/// Time a new connection on the raft address has to send its 8-byte preface. Peers send it
/// with the connect; the bound frees the slot of a silent or half-open connection quickly.
pub const PREFACE_TIMEOUT_MS: u64 = 2_000;

/// Non-chain connections (controller RPCs, status) queued between the raft listener and their
/// server. Beyond it they are closed: the server is overloaded or not running, and the client
/// retries.
pub const NON_CHAIN_HANDOFF_QUEUE_MAX: usize = 16;

/// Socket read buffer per inbound chain connection: a heartbeat Append (~60 bytes) and the next
/// frame's length arrive in one `read`.
pub const CHAIN_READ_BUFFER_BYTES: usize = 16 * 1024;

/// At most one log line per this interval for each kind of refused connection (bad preface,
/// too many connections), carrying the count, so a port scan cannot flood the log.
pub const REFUSAL_LOG_INTERVAL_MS: u64 = 10_000;

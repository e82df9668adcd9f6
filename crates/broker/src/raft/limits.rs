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
/// TCP_USER_TIMEOUT of the node-to-node connections a node opens (chain, controller RPCs,
/// replica fetches): data the peer's kernel has not acknowledged for this long aborts the
/// connection, which is then reopened. Without it a connection through a cut that healed
/// waits for TCP's doubled retransmission timeout (up to ~13 s after a 15 s cut) instead of
/// reconnecting at once (Kafka gets the same from its request timeouts).
pub const PEER_TCP_USER_TIMEOUT_MS: u32 = 5_000;

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

// Controller RPCs (JCTRL001) and the status document (JSTAT001): `crate::control`.

/// Largest controller RPC request frame. Equal to the client listener's cap for non-Produce
/// requests (`codec::NON_PRODUCE_REQUEST_BYTES_MAX`), under which a forwarded admin request was
/// decoded before it was forwarded; it also bounds decode amplification the same way.
pub const CONTROL_REQUEST_BYTES_MAX: usize = 1 << 20;

/// Largest controller RPC response frame the client reads. A CreateTopics answer for the
/// largest request (10,000 topics with error messages and configs) stays below it; a peer
/// declaring more is dropped before anything is sized.
pub const CONTROL_RESPONSE_BYTES_MAX: usize = 16 << 20;

/// Concurrent JCTRL001 connections served. Each broker keeps one to each voter it calls, so a
/// cluster of a few dozen brokers fits; beyond it new ones are closed and the caller retries.
pub const CONTROL_CONNECTIONS_MAX: usize = 32;

/// Requests handled at once on one control connection. Above 1 so a heartbeat never waits
/// behind an admin request that waits for a commit; bounded so one peer cannot queue unbounded
/// work. Beyond it the server stops reading that connection (TCP back-pressure).
pub const CONTROL_IN_FLIGHT_PER_CONNECTION_MAX: usize = 16;

/// Calls waiting for an answer on the client's connection to one peer; beyond it a call fails
/// at once (`RpcError::Busy`) instead of queueing without bound.
pub const CONTROL_CLIENT_IN_FLIGHT_MAX: usize = 64;

/// A control connection with no request for this long is closed (Kafka's
/// `connections.max.idle.ms` default). Heartbeats keep a live peer's connection busy.
pub const CONTROL_IDLE_TIMEOUT_MS: u64 = 600_000;

/// A frame whose length arrived must arrive whole within this (slow-loris bound), and a
/// response write must complete within it.
pub const CONTROL_FRAME_IO_TIMEOUT_MS: u64 = 10_000;

/// Connecting to a peer and writing the preface. A live peer on a LAN answers in
/// milliseconds; a dead one should cost a retry soon, not a full call timeout.
pub const CONTROL_CONNECT_TIMEOUT_MS: u64 = 2_000;

/// Back-off between `call_controller` attempts: quick first retry (a new leader is usually
/// known within one election), capped so a deadline is still used by several attempts.
pub const CONTROL_RETRY_BACKOFF_MIN_MS: u64 = 25;
pub const CONTROL_RETRY_BACKOFF_MAX_MS: u64 = 500;

/// Socket read buffer of a control connection (either side): a small request or answer and
/// the next frame's length arrive in one `read`.
pub const CONTROL_READ_BUFFER_BYTES: usize = 16 * 1024;

/// Status documents rendered at once; each renders the whole image on the blocking pool.
pub const STATUS_CONNECTIONS_MAX: usize = 4;

/// Largest status document `josefine cluster-status` reads (a 10,000-partition image renders
/// to about 1 MiB); a server sending more is cut off with a note.
pub const STATUS_DOCUMENT_BYTES_MAX: usize = 64 << 20;

/// Connecting, rendering and transferring one status document.
pub const STATUS_IO_TIMEOUT_MS: u64 = 10_000;

/// Dead branches the runtime remembers for status pages (the console's chain page shows
/// them): enough to see a flapping leadership's history, bounded however long it flaps.
pub const DEAD_BRANCHES_KEPT: usize = 50;

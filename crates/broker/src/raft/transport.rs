//! The raft listener and the chain transport: connection prefaces, and length-prefixed,
//! versioned chain frames (`josefine_chain::codec`) over TCP on the raft address.
//!
//! Owns the sockets of the raft address, and their TLS ([`RaftTls`]: when the controller
//! listener is SSL every connection, accepted or opened, is mutual TLS, and a peer without a
//! certificate this node trusts is closed in the handshake, before its preface is read). Every
//! connection opens with an 8-byte [`Preface`]
//! naming its protocol (docs/chain-format.md, "Connections on the raft address"): the listener
//! reads it within `PREFACE_TIMEOUT_MS`, keeps `JCHAIN01` connections and feeds their decoded
//! messages to the core through a bounded queue, and hands `JCTRL001` and `JSTAT001`
//! connections to whoever serves them (the `control` module) through another bounded queue.
//! One task per peer owns the outgoing chain connection (preface first), with a bounded queue,
//! reconnect with back-off, and timeouts. Also notes, per peer, when its latest inbound chain
//! connection was closed by that peer ([`chain_peer_closed_at`]: a new controller's hint that
//! the node's process died, for Josefine's session-close rule).
//! Must never block the core: everything the core hands over goes through `try_send`, and a full
//! queue drops the frame (Raft retransmits). Must never size a buffer from a length a peer
//! declared: frames grow with the bytes that actually arrive.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use josefine_chain::codec;
use josefine_chain::{Envelope, NodeId};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, OwnedSemaphorePermit, Semaphore};

use super::limits::*;
use crate::connection::read_frame_body;

/// Length of every connection preface on the raft address.
pub const PREFACE_BYTES: usize = 8;

/// The protocol a connection on the raft address speaks, named by its first 8 bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Preface {
    /// `JCHAIN01`: chain frames (`josefine_chain::codec`), one direction, sender to receiver.
    Chain,
    /// `JCTRL001`: controller RPCs, Kafka request frames in, position-stamped responses out.
    Control,
    /// `JSTAT001`: the server writes one UTF-8 status document and closes.
    Status,
}

impl Preface {
    pub const ALL: [Preface; 3] = [Preface::Chain, Preface::Control, Preface::Status];

    /// The bytes a client writes first.
    pub const fn bytes(self) -> &'static [u8; PREFACE_BYTES] {
        match self {
            Preface::Chain => b"JCHAIN01",
            Preface::Control => b"JCTRL001",
            Preface::Status => b"JSTAT001",
        }
    }

    /// The protocol these bytes name; None for anything else (the connection is closed).
    pub fn parse(bytes: &[u8; PREFACE_BYTES]) -> Option<Preface> {
        Preface::ALL.into_iter().find(|p| p.bytes() == bytes)
    }
}

/// A node-to-node byte stream: TCP, or TLS over TCP when the controller listener is SSL.
pub trait RaftIo: AsyncRead + AsyncWrite + Send + Unpin {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin> RaftIo for T {}

/// A connection on the raft address, plain or TLS.
pub type RaftStream = Box<dyn RaftIo>;

/// Mutual TLS on the raft address (`controller.listener.names` mapped to SSL): every
/// connection, accepted or opened, is TLS with a certificate the other node's truststore
/// verifies; a peer without one cannot get past the handshake.
#[derive(Clone)]
pub struct RaftTls {
    acceptor: tokio_rustls::TlsAcceptor,
    connector: tokio_rustls::TlsConnector,
}

impl std::fmt::Debug for RaftTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RaftTls")
    }
}

impl RaftTls {
    /// `server` must require client certificates.
    pub fn new(server: Arc<rustls::ServerConfig>, client: Arc<rustls::ClientConfig>) -> RaftTls {
        RaftTls {
            acceptor: tokio_rustls::TlsAcceptor::from(server),
            connector: tokio_rustls::TlsConnector::from(client),
        }
    }
}

/// The stream of a connection this node opened to `addr`: TLS (the peer's certificate checked
/// against its IP address) when `tls` is set.
pub async fn client_stream(
    tls: Option<&RaftTls>,
    addr: SocketAddr,
    s: TcpStream,
) -> std::io::Result<RaftStream> {
    match tls {
        None => Ok(Box::new(s)),
        Some(tls) => {
            let name = rustls_pki_types::ServerName::IpAddress(addr.ip().into());
            Ok(Box::new(tls.connector.connect(name, s).await?))
        }
    }
}

/// A connection on the raft address that is not a chain connection, handed to its server after
/// its preface was read.
pub struct RaftConnection {
    /// `Control` or `Status`.
    pub preface: Preface,
    pub stream: RaftStream,
    pub peer: SocketAddr,
    /// The listener's connection slot: held for as long as the connection lives.
    pub slot: OwnedSemaphorePermit,
}

impl std::fmt::Debug for RaftConnection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RaftConnection")
            .field("preface", &self.preface)
            .field("peer", &self.peer)
            .finish()
    }
}

/// A bounded channel for `ChainNodeConfig::non_chain`, sized by `NON_CHAIN_HANDOFF_QUEUE_MAX`.
pub fn non_chain_channel() -> (mpsc::Sender<RaftConnection>, mpsc::Receiver<RaftConnection>) {
    mpsc::channel(NON_CHAIN_HANDOFF_QUEUE_MAX)
}

/// The sending half for one peer.
#[derive(Clone)]
pub struct PeerSender {
    pub id: NodeId,
    tx: mpsc::Sender<Bytes>,
}

impl PeerSender {
    /// Queues a frame; false if the queue is full (the frame is dropped).
    pub fn send(&self, frame: Bytes) -> bool {
        self.tx.try_send(frame).is_ok()
    }
}

/// Starts the outgoing task for `peer` at `addr`. It ends when every sender is dropped.
pub fn spawn_peer(id: NodeId, addr: SocketAddr, tls: Option<RaftTls>) -> PeerSender {
    let (tx, rx) = mpsc::channel(PEER_QUEUE_FRAMES_MAX);
    tokio::spawn(peer_task(id, addr, rx, tls));
    PeerSender { id, tx }
}

/// Sets [`PEER_TCP_USER_TIMEOUT_MS`] on a node-to-node connection this node opened (best
/// effort: where the option is missing the connection keeps TCP's own timeouts).
pub fn set_peer_user_timeout(s: &TcpStream) {
    if let Err(e) = rustix::net::sockopt::set_tcp_user_timeout(s, PEER_TCP_USER_TIMEOUT_MS) {
        tracing::debug!("TCP_USER_TIMEOUT not set: {e}");
    }
}

/// Connects and writes the chain preface, both within `io_timeout`.
async fn connect_chain(
    addr: SocketAddr,
    io_timeout: Duration,
    tls: Option<&RaftTls>,
) -> Option<RaftStream> {
    let s = tokio::time::timeout(io_timeout, TcpStream::connect(addr))
        .await
        .ok()?
        .ok()?;
    let _ = s.set_nodelay(true);
    set_peer_user_timeout(&s);
    let mut s = match tokio::time::timeout(io_timeout, client_stream(tls, addr, s)).await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => {
            tracing::debug!(%addr, error = %e, "chain peer TLS handshake failed");
            return None;
        }
        Err(_) => return None,
    };
    tokio::time::timeout(io_timeout, s.write_all(Preface::Chain.bytes()))
        .await
        .ok()?
        .ok()?;
    Some(s)
}

async fn peer_task(
    id: NodeId,
    addr: SocketAddr,
    mut rx: mpsc::Receiver<Bytes>,
    tls: Option<RaftTls>,
) {
    let io_timeout = Duration::from_millis(PEER_IO_TIMEOUT_MS);
    let mut backoff_ms = RECONNECT_BACKOFF_MIN_MS;
    let mut conn: Option<RaftStream> = None;
    while let Some(frame) = rx.recv().await {
        if conn.is_none() {
            match connect_chain(addr, io_timeout, tls.as_ref()).await {
                Some(s) => {
                    tracing::debug!(peer = id, %addr, "chain peer connected");
                    conn = Some(s);
                    backoff_ms = RECONNECT_BACKOFF_MIN_MS;
                }
                None => {
                    // Down: wait, and drop what queued meanwhile (stale by the time it lands).
                    tokio::time::sleep(Duration::from_millis(backoff_ms)).await;
                    backoff_ms = (backoff_ms * 2).min(RECONNECT_BACKOFF_MAX_MS);
                    while rx.try_recv().is_ok() {}
                    continue;
                }
            }
        }
        let stream = conn.as_mut().expect("connected above");
        let ok = matches!(
            tokio::time::timeout(io_timeout, stream.write_all(&frame)).await,
            Ok(Ok(()))
        );
        if !ok {
            tracing::debug!(peer = id, %addr, "chain peer write failed; reconnecting");
            conn = None;
        }
    }
}

/// Per (this node, peer): when the peer's latest inbound chain connection sent its first frame,
/// and when the peer closed it (EOF or reset), in ms since the epoch.
type PeerConnections = BTreeMap<(NodeId, NodeId), (u64, Option<u64>)>;

static CHAIN_PEERS: Mutex<PeerConnections> = Mutex::new(BTreeMap::new());

fn chain_peers() -> std::sync::MutexGuard<'static, PeerConnections> {
    CHAIN_PEERS.lock().unwrap_or_else(|e| e.into_inner())
}

/// When `peer` closed its chain connection to node `me` (EOF or reset: what the kernel does
/// for a killed process), if it has not opened another one since.
pub fn chain_peer_closed_at(me: NodeId, peer: NodeId) -> Option<u64> {
    chain_peers()
        .get(&(me, peer))
        .and_then(|(_, closed)| *closed)
}

fn note_chain_peer(me: NodeId, peer: NodeId, opened: bool) {
    let now = crate::clock::now_ms().max(0) as u64;
    let mut peers = chain_peers();
    if opened {
        peers.insert((me, peer), (now, None));
    } else if let Some(entry) = peers.get_mut(&(me, peer)) {
        entry.1 = Some(now);
    }
}

/// Accepts connections on the raft address: reads each one's preface, serves chain connections
/// here (decoded messages go to `inbound`) and hands the others to `non_chain` (None: they are
/// closed).
pub async fn serve(
    listener: TcpListener,
    me: NodeId,
    inbound: mpsc::Sender<Envelope>,
    non_chain: Option<mpsc::Sender<RaftConnection>>,
    tls: Option<RaftTls>,
) {
    let slots = Arc::new(Semaphore::new(INBOUND_CONNECTIONS_MAX));
    loop {
        let Ok((stream, peer)) = listener.accept().await else {
            continue;
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            REFUSALS.note(|n| tracing::warn!(%peer, refused = n, "too many connections on the raft address; refusing"));
            continue;
        };
        let inbound = inbound.clone();
        let non_chain = non_chain.clone();
        let tls = tls.clone();
        tokio::spawn(async move {
            let _ = stream.set_nodelay(true);
            let mut stream: RaftStream = match &tls {
                None => Box::new(stream),
                Some(tls) => {
                    let handshake = tokio::time::timeout(
                        Duration::from_millis(PREFACE_TIMEOUT_MS),
                        tls.acceptor.accept(stream),
                    )
                    .await;
                    match handshake {
                        Ok(Ok(s)) => Box::new(s),
                        Ok(Err(e)) => {
                            REFUSALS.note(|n| tracing::warn!(%peer, error = %e, refused = n, "TLS handshake failed on the raft address; closing"));
                            return;
                        }
                        Err(_) => {
                            tracing::debug!(%peer, "raft-address TLS handshake timed out; closing");
                            return;
                        }
                    }
                }
            };
            let Some(preface) = read_preface(&mut stream, peer).await else {
                return;
            };
            match preface {
                Preface::Chain => {
                    let mut from = None;
                    if let Err(e) = read_frames(stream, me, inbound, &mut from).await {
                        tracing::debug!(%peer, error = %e, "chain connection closed");
                        let by_peer = e.downcast_ref::<std::io::Error>().is_some_and(|e| {
                            matches!(
                                e.kind(),
                                std::io::ErrorKind::UnexpectedEof
                                    | std::io::ErrorKind::ConnectionReset
                                    | std::io::ErrorKind::ConnectionAborted
                            )
                        });
                        if let (true, Some(node)) = (by_peer, from) {
                            note_chain_peer(me, node, false);
                        }
                    }
                    drop(slot);
                }
                Preface::Control | Preface::Status => {
                    let conn = RaftConnection {
                        preface,
                        stream,
                        peer,
                        slot,
                    };
                    let handed = non_chain.as_ref().map(|tx| tx.try_send(conn));
                    if !matches!(handed, Some(Ok(()))) {
                        REFUSALS.note(|n| {
                            tracing::warn!(%peer, ?preface, refused = n, "no server for this protocol on the raft address, or its queue is full; closing")
                        });
                    }
                }
            }
        });
    }
}

/// Reads the 8-byte preface within `PREFACE_TIMEOUT_MS`. None (logged, rate-limited): timeout,
/// early close or unknown bytes; the caller drops the connection.
async fn read_preface(stream: &mut RaftStream, peer: SocketAddr) -> Option<Preface> {
    let mut bytes = [0u8; PREFACE_BYTES];
    let read = tokio::time::timeout(
        Duration::from_millis(PREFACE_TIMEOUT_MS),
        stream.read_exact(&mut bytes),
    )
    .await;
    let preface = match read {
        Ok(Ok(_)) => Preface::parse(&bytes),
        Ok(Err(_)) | Err(_) => {
            tracing::debug!(%peer, "raft-address connection sent no preface in time; closing");
            return None;
        }
    };
    if preface.is_none() {
        BAD_PREFACES.note(|n| {
            tracing::warn!(%peer, first_bytes = ?bytes, refused = n, "unknown preface on the raft address (expected JCHAIN01, JCTRL001 or JSTAT001); closing")
        });
    }
    preface
}

/// Reads chain frames until the connection ends; `from` is set to the sender of the first one.
async fn read_frames(
    stream: RaftStream,
    me: NodeId,
    inbound: mpsc::Sender<Envelope>,
    from: &mut Option<NodeId>,
) -> anyhow::Result<()> {
    let mut reader = BufReader::with_capacity(CHAIN_READ_BUFFER_BYTES, stream);
    let mut prefix = [0u8; 4];
    loop {
        reader.read_exact(&mut prefix).await?;
        // Refuses an oversized frame before allocating anything for it; the buffer then grows
        // with the bytes that arrive, so a lying length costs nothing.
        let total = codec::frame_len(&prefix)?.expect("4 bytes present");
        let Some(body) = read_frame_body(&mut reader, total - prefix.len(), None).await? else {
            return Ok(());
        };
        let mut buf = BytesMut::with_capacity(total);
        buf.extend_from_slice(&prefix);
        buf.extend_from_slice(&body);
        let env = codec::decode(buf.freeze())?;
        if env.to != me {
            anyhow::bail!("frame for server {} arrived at {me}", env.to);
        }
        if from.is_none() {
            *from = Some(env.from);
            note_chain_peer(me, env.from, true);
        }
        if inbound.try_send(env).is_err() && inbound.is_closed() {
            return Ok(());
        }
    }
}

/// Logs a repeated warning at most once per `REFUSAL_LOG_INTERVAL_MS`, with the number of
/// occurrences since the last line, so a port scanner or a misconfigured peer cannot flood
/// the log.
pub(crate) struct RateLimitedLog {
    last_ms: AtomicU64,
    count: AtomicU64,
}

static BAD_PREFACES: RateLimitedLog = RateLimitedLog::new();
static REFUSALS: RateLimitedLog = RateLimitedLog::new();

impl RateLimitedLog {
    pub(crate) const fn new() -> Self {
        RateLimitedLog {
            last_ms: AtomicU64::new(0),
            count: AtomicU64::new(0),
        }
    }

    /// Counts one occurrence; calls `log` with the count when a line is due.
    pub(crate) fn note(&self, log: impl FnOnce(u64)) {
        static START: OnceLock<Instant> = OnceLock::new();
        let now_ms = START.get_or_init(Instant::now).elapsed().as_millis() as u64 + 1;
        self.count.fetch_add(1, Ordering::Relaxed);
        let last = self.last_ms.load(Ordering::Relaxed);
        let due = last == 0 || now_ms.saturating_sub(last) >= REFUSAL_LOG_INTERVAL_MS;
        if due
            && self
                .last_ms
                .compare_exchange(last, now_ms, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            log(self.count.swap(0, Ordering::Relaxed));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefaces_parse_to_themselves_and_nothing_else_parses() {
        for p in Preface::ALL {
            assert_eq!(Preface::parse(p.bytes()), Some(p));
        }
        for bad in [
            b"JCHAIN02",
            b"jchain01",
            b"\0\0\0\x10\0\x01\0\0",
            b"GET / HT",
        ] {
            assert_eq!(Preface::parse(bad), None);
        }
    }

    #[test]
    fn rate_limited_log_speaks_once_per_interval_with_the_count() {
        let log = RateLimitedLog::new();
        let mut lines = Vec::new();
        for _ in 0..5 {
            log.note(|n| lines.push(n));
        }
        assert_eq!(lines, vec![1], "one line for a burst");
    }
}

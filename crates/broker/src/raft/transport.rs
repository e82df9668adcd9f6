//! Chain transport: length-prefixed, versioned frames (`josefine_chain::codec`) over TCP on
//! the raft address.
//!
//! Owns the sockets. One listener accepts peers' connections and feeds decoded messages to the
//! core through a bounded queue; one task per peer owns the outgoing connection, with a bounded
//! queue, reconnect with back-off, and timeouts. It must never block the core: everything the
//! core hands over goes through `try_send`, and a full queue drops the frame (Raft retransmits).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use josefine_chain::codec;
use josefine_chain::{Envelope, NodeId};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, Semaphore};

use super::limits::*;

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
pub fn spawn_peer(id: NodeId, addr: SocketAddr) -> PeerSender {
    let (tx, rx) = mpsc::channel(PEER_QUEUE_FRAMES_MAX);
    tokio::spawn(peer_task(id, addr, rx));
    PeerSender { id, tx }
}

async fn peer_task(id: NodeId, addr: SocketAddr, mut rx: mpsc::Receiver<Bytes>) {
    let io_timeout = Duration::from_millis(PEER_IO_TIMEOUT_MS);
    let mut backoff_ms = RECONNECT_BACKOFF_MIN_MS;
    let mut conn: Option<TcpStream> = None;
    while let Some(frame) = rx.recv().await {
        if conn.is_none() {
            match tokio::time::timeout(io_timeout, TcpStream::connect(addr)).await {
                Ok(Ok(s)) => {
                    let _ = s.set_nodelay(true);
                    tracing::debug!(peer = id, %addr, "chain peer connected");
                    conn = Some(s);
                    backoff_ms = RECONNECT_BACKOFF_MIN_MS;
                }
                _ => {
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

/// Accepts peers' connections on `listener` and forwards every decoded message to `inbound`.
pub async fn serve(listener: TcpListener, me: NodeId, inbound: mpsc::Sender<Envelope>) {
    let slots = Arc::new(Semaphore::new(INBOUND_CONNECTIONS_MAX));
    loop {
        let Ok((stream, peer_addr)) = listener.accept().await else {
            continue;
        };
        let Ok(permit) = slots.clone().try_acquire_owned() else {
            tracing::warn!(%peer_addr, "too many chain connections; refusing");
            continue;
        };
        let inbound = inbound.clone();
        tokio::spawn(async move {
            let _ = stream.set_nodelay(true);
            if let Err(e) = read_frames(stream, me, inbound).await {
                tracing::debug!(%peer_addr, error = %e, "chain connection closed");
            }
            drop(permit);
        });
    }
}

async fn read_frames(
    mut stream: TcpStream,
    me: NodeId,
    inbound: mpsc::Sender<Envelope>,
) -> anyhow::Result<()> {
    let mut prefix = [0u8; 4];
    loop {
        stream.read_exact(&mut prefix).await?;
        // Refuses an oversized frame before allocating anything for it.
        let total = codec::frame_len(&prefix)?.expect("4 bytes present");
        let mut buf = BytesMut::with_capacity(total);
        buf.extend_from_slice(&prefix);
        buf.resize(total, 0);
        stream.read_exact(&mut buf[4..]).await?;
        let env = codec::decode(buf.freeze())?;
        if env.to != me {
            anyhow::bail!("frame for server {} arrived at {me}", env.to);
        }
        if inbound.try_send(env).is_err() && inbound.is_closed() {
            return Ok(());
        }
    }
}

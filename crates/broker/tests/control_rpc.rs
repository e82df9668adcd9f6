//! The raft address over real sockets: connection prefaces, and (below) controller RPCs and the
//! status document. Every hostile case must close that connection only; the listener keeps
//! serving new ones.

use std::net::SocketAddr;
use std::time::Duration;

use josefine::raft::transport::{self, Preface, RaftConnection};
use josefine_chain::{Envelope, Message};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

/// A raft listener for node 1 without a chain core: what arrives on chain connections goes to
/// the returned receiver, non-chain connections to the other one.
async fn raft_listener() -> (
    SocketAddr,
    mpsc::Receiver<Envelope>,
    mpsc::Receiver<RaftConnection>,
) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (inbound_tx, inbound_rx) = mpsc::channel(16);
    let (conn_tx, conn_rx) = transport::non_chain_channel();
    tokio::spawn(transport::serve(listener, 1, inbound_tx, Some(conn_tx)));
    (addr, inbound_rx, conn_rx)
}

/// True when the server closes the connection (EOF or reset) within 5 s.
async fn closed_by_server(stream: &mut TcpStream) -> bool {
    let mut buf = [0u8; 64];
    matches!(
        tokio::time::timeout(Duration::from_secs(5), stream.read(&mut buf)).await,
        Ok(Ok(0)) | Ok(Err(_))
    )
}

fn heartbeat(to: u64) -> Envelope {
    Envelope {
        from: 2,
        to,
        message: Message::TimeoutNow { term: 3, leader: 2 },
    }
}

#[tokio::test]
async fn chain_preface_then_frames_reach_the_core() {
    let (addr, mut inbound, _conns) = raft_listener().await;
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(Preface::Chain.bytes()).await.unwrap();
    s.write_all(&josefine_chain::codec::encode(&heartbeat(1)))
        .await
        .unwrap();
    let got = tokio::time::timeout(Duration::from_secs(5), inbound.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(got, heartbeat(1));
}

#[tokio::test]
async fn frames_without_the_chain_preface_are_closed_unread() {
    let (addr, mut inbound, _conns) = raft_listener().await;
    // Today's frame without a preface: its first 8 bytes are not a preface.
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(&josefine_chain::codec::encode(&heartbeat(1)))
        .await
        .unwrap();
    assert!(closed_by_server(&mut s).await);
    for bad in [
        &b"JCHAIN02"[..],
        b"GET / HTTP/1.1\r\n",
        b"\x16\x03\x01\x02\x00\x01\x00\x01",
    ] {
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(bad).await.unwrap();
        assert!(closed_by_server(&mut s).await, "{bad:?} left open");
    }
    // A preface that never completes is closed after PREFACE_TIMEOUT_MS.
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(b"JCH").await.unwrap();
    assert!(closed_by_server(&mut s).await);
    assert!(inbound.try_recv().is_err(), "nothing reached the core");
    // Still serving.
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(Preface::Chain.bytes()).await.unwrap();
    s.write_all(&josefine_chain::codec::encode(&heartbeat(1)))
        .await
        .unwrap();
    assert!(tokio::time::timeout(Duration::from_secs(5), inbound.recv())
        .await
        .unwrap()
        .is_some());
}

#[tokio::test]
async fn control_and_status_connections_are_handed_over_with_their_preface() {
    let (addr, _inbound, mut conns) = raft_listener().await;
    for p in [Preface::Control, Preface::Status] {
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(p.bytes()).await.unwrap();
        let c = tokio::time::timeout(Duration::from_secs(5), conns.recv())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(c.preface, p);
    }
}

#[tokio::test]
async fn control_preface_without_a_control_server_is_closed() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (inbound_tx, _inbound_rx) = mpsc::channel(16);
    tokio::spawn(transport::serve(listener, 1, inbound_tx, None));
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(Preface::Control.bytes()).await.unwrap();
    assert!(closed_by_server(&mut s).await);
}

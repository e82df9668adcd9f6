//! The control client: a broker's calls to a peer's control server, and to the controller.
//!
//! Owns: one connection per peer raft address, opened on first use and reopened after it
//! fails (requests multiplexed on it by correlation id, at most `CONTROL_CLIENT_IN_FLIGHT_MAX`
//! waiting), the per-call timeout, and [`ControlClient::call_controller`]'s retry loop: find the
//! chain leader in the `ChainStatus` watch, call it, and on a connection error, no known
//! leader, or a NOT_CONTROLLER answer ([`not_controller`]) try again after a short back-off,
//! until a deadline.
//! Must never: retry an answer that is not NOT_CONTROLLER, or a call that timed out (its outcome
//! is unknown and the caller's budget is spent); block without a bound (every wait has a
//! timeout or a deadline); or size a buffer from a length the peer declared.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use josefine_chain::NodeId;
use kafka_protocol::messages::{
    AlterPartitionRequest, AlterPartitionResponse, ApiKey, RequestHeader, RequestKind, ResponseKind,
};
use kafka_protocol::protocol::StrBytes;
use tokio::io::WriteHalf;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

use crate::raft::transport::{RaftStream, RaftTls};
use tokio::sync::{oneshot, watch};
use tokio::time::Instant;

use super::frame::{self, ControlResponse, ALTER_PARTITION_VERSION};
use crate::connection::read_frame_body;
use crate::raft::limits::*;
use crate::raft::transport::Preface;
use crate::raft::ChainStatus;

/// Kafka's NOT_CONTROLLER.
const NOT_CONTROLLER: i16 = 41;

/// Why a call has no answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RpcError {
    #[error("node {0} is not a voter")]
    UnknownNode(NodeId),
    #[error("not a controller RPC: {0}")]
    BadRequest(String),
    #[error("cannot connect to node {node} at {addr}: {reason}")]
    Connect {
        node: NodeId,
        addr: SocketAddr,
        reason: String,
    },
    #[error(
        "connection to node {node} closed before the answer (the request may have been served)"
    )]
    ConnectionLost { node: NodeId },
    #[error(
        "node {node} did not answer within {timeout_ms} ms (the request may have been served)"
    )]
    TimedOut { node: NodeId, timeout_ms: u64 },
    #[error("too many calls waiting on node {0}")]
    Busy(NodeId),
    #[error("bad answer from node {node}: {reason}")]
    BadAnswer { node: NodeId, reason: String },
    #[error("no controller answered before the deadline (last attempt: {last})")]
    NoController { last: String },
}

impl RpcError {
    /// Whether `call_controller` tries again: the peer was unreachable or went away.
    pub fn is_connection_error(&self) -> bool {
        matches!(
            self,
            RpcError::Connect { .. } | RpcError::ConnectionLost { .. }
        )
    }
}

/// True when `response` says the node called is not the controller: the top-level error code
/// is NOT_CONTROLLER (BrokerRegistration, BrokerHeartbeat, AllocateProducerIds,
/// AlterPartition), or every per-item error code is (CreateTopics `topics`, DeleteTopics
/// `responses`, CreatePartitions `results`, AlterConfigs and IncrementalAlterConfigs
/// `responses`, AlterPartition partitions: Kafka's answer when the request names epochs newer
/// than the controller's image; an answer with no items is not). A partly-served answer is not retried: resending it would turn the items already done
/// into errors; its NOT_CONTROLLER items reach the client, for which that code is retriable.
pub fn not_controller(response: &ResponseKind) -> bool {
    fn every(codes: impl Iterator<Item = i16>) -> bool {
        let mut any = false;
        for c in codes {
            if c != NOT_CONTROLLER {
                return false;
            }
            any = true;
        }
        any
    }
    match response {
        ResponseKind::BrokerRegistration(r) => r.error_code == NOT_CONTROLLER,
        ResponseKind::BrokerHeartbeat(r) => r.error_code == NOT_CONTROLLER,
        ResponseKind::AllocateProducerIds(r) => r.error_code == NOT_CONTROLLER,
        ResponseKind::AlterPartition(r) => {
            r.error_code == NOT_CONTROLLER
                || every(
                    r.topics
                        .iter()
                        .flat_map(|t| t.partitions.iter().map(|p| p.error_code)),
                )
        }
        ResponseKind::CreateTopics(r) => every(r.topics.iter().map(|t| t.error_code)),
        ResponseKind::DeleteTopics(r) => every(r.responses.iter().map(|t| t.error_code)),
        ResponseKind::CreatePartitions(r) => every(r.results.iter().map(|t| t.error_code)),
        ResponseKind::AlterConfigs(r) => every(r.responses.iter().map(|t| t.error_code)),
        ResponseKind::IncrementalAlterConfigs(r) => every(r.responses.iter().map(|t| t.error_code)),
        ResponseKind::CreateAcls(r) => every(r.results.iter().map(|t| t.error_code)),
        ResponseKind::DeleteAcls(r) => every(r.filter_results.iter().map(|t| t.error_code)),
        ResponseKind::AlterUserScramCredentials(r) => every(r.results.iter().map(|t| t.error_code)),
        _ => false,
    }
}

/// Calls peers' control servers. Cheap to share (`Arc`); calls run concurrently.
pub struct ControlClient {
    client_id: StrBytes,
    peers: BTreeMap<NodeId, Peer>,
    chain: watch::Receiver<ChainStatus>,
    call_timeout: Duration,
    next_correlation_id: AtomicI32,
}

impl ControlClient {
    /// `client_id` names this broker in the peers' request headers; `voters` are every voter's
    /// raft address; `chain` tells who leads the chain (the controller); `call_timeout` bounds
    /// each call (connect, send and answer).
    pub fn new(
        client_id: &str,
        voters: &[(NodeId, SocketAddr)],
        chain: watch::Receiver<ChainStatus>,
        call_timeout: Duration,
    ) -> ControlClient {
        ControlClient {
            client_id: StrBytes::from_string(client_id.to_owned()),
            peers: voters
                .iter()
                .map(|&(id, addr)| (id, Peer::new(id, addr)))
                .collect(),
            chain,
            call_timeout,
            next_correlation_id: AtomicI32::new(0),
        }
    }

    /// Opens every connection with mutual TLS (`controller.listener.names` mapped to SSL).
    pub fn with_tls(mut self, tls: Option<RaftTls>) -> ControlClient {
        for peer in self.peers.values_mut() {
            peer.tls = tls.clone();
        }
        self
    }

    /// Calls node `node` once: sends `request` at `api_version` and waits for the answer and
    /// the controller's metadata position, at most the client's call timeout.
    pub async fn call(
        &self,
        node: NodeId,
        api_version: i16,
        request: RequestKind,
    ) -> Result<(ResponseKind, u64), RpcError> {
        self.call_until(
            node,
            api_version,
            &request,
            Instant::now() + self.call_timeout,
        )
        .await
    }

    /// Calls the controller (the chain leader) until it answers something other than
    /// NOT_CONTROLLER ([`not_controller`]) or `deadline` passes. Tried again: connection errors,
    /// no known leader, NOT_CONTROLLER answers. Not tried again: a timed-out call, `Busy`, a
    /// bad answer.
    pub async fn call_controller(
        &self,
        api_version: i16,
        request: RequestKind,
        deadline: Instant,
    ) -> Result<(ResponseKind, u64), RpcError> {
        self.call_controller_retrying(api_version, request, deadline, not_controller)
            .await
    }

    /// Sends an AlterPartition (v3, [`ALTER_PARTITION_VERSION`]) to the controller, retrying
    /// like [`Self::call_controller`] until `deadline`. The answer comes once the controller's
    /// image has applied the change; the returned position is that image's, so a caller that
    /// must see the change in its own image waits for it (`MetadataStore::wait_for_position`).
    /// Per-partition errors are Kafka's (`josefine_meta::controller::alter_partition`).
    pub async fn alter_partition(
        &self,
        request: AlterPartitionRequest,
        deadline: Instant,
    ) -> Result<(AlterPartitionResponse, u64), RpcError> {
        let (response, position) = self
            .call_controller(ALTER_PARTITION_VERSION, request.into(), deadline)
            .await?;
        match response {
            ResponseKind::AlterPartition(r) => Ok((r, position)),
            other => Err(RpcError::BadAnswer {
                node: self.chain.borrow().leader.unwrap_or_default(),
                reason: format!("AlterPartition answered with {other:?}")
                    .chars()
                    .take(80)
                    .collect(),
            }),
        }
    }

    /// [`Self::call_controller`] with another test for answers to retry (`retry_answer`
    /// returning true sends the request again, to whoever leads then).
    pub async fn call_controller_retrying(
        &self,
        api_version: i16,
        request: RequestKind,
        deadline: Instant,
        retry_answer: impl Fn(&ResponseKind) -> bool,
    ) -> Result<(ResponseKind, u64), RpcError> {
        let mut chain = self.chain.clone();
        let mut backoff = Duration::from_millis(CONTROL_RETRY_BACKOFF_MIN_MS);
        let mut last: Option<String> = None;
        loop {
            if let Some(last) = last.take() {
                if Instant::now() >= deadline {
                    return Err(RpcError::NoController { last });
                }
            }
            let leader = chain.borrow_and_update().leader;
            let outcome = match leader {
                None => "no chain leader known".to_string(),
                Some(node) => {
                    let until = deadline.min(Instant::now() + self.call_timeout);
                    match self.call_until(node, api_version, &request, until).await {
                        Ok((response, position)) if !retry_answer(&response) => {
                            return Ok((response, position))
                        }
                        Ok(_) => format!("node {node} answered NOT_CONTROLLER"),
                        Err(e) if e.is_connection_error() => e.to_string(),
                        Err(e) => return Err(e),
                    }
                }
            };
            last = Some(outcome);
            // Back off, but go at once when the leader changes.
            let until = deadline.min(Instant::now() + backoff);
            let _ = tokio::time::timeout_at(until, async {
                while chain.changed().await.is_ok() {
                    if chain.borrow().leader != leader {
                        return;
                    }
                }
                std::future::pending::<()>().await // the chain stopped: wait out the back-off
            })
            .await;
            backoff = (backoff * 2).min(Duration::from_millis(CONTROL_RETRY_BACKOFF_MAX_MS));
        }
    }

    async fn call_until(
        &self,
        node: NodeId,
        api_version: i16,
        request: &RequestKind,
        deadline: Instant,
    ) -> Result<(ResponseKind, u64), RpcError> {
        let peer = self.peers.get(&node).ok_or(RpcError::UnknownNode(node))?;
        let api_key = frame::request_api_key(request).ok_or_else(|| {
            RpcError::BadRequest(format!("{request:?}").chars().take(80).collect())
        })?;
        let correlation_id = self.next_correlation_id.fetch_add(1, Ordering::Relaxed);
        let header = RequestHeader::default()
            .with_request_api_key(api_key as i16)
            .with_request_api_version(api_version)
            .with_correlation_id(correlation_id)
            .with_client_id(Some(self.client_id.clone()));
        let bytes = frame::encode_request(&header, request)
            .map_err(|e| RpcError::BadRequest(e.to_string()))?
            .freeze();
        let budget_ms = deadline
            .saturating_duration_since(Instant::now())
            .as_millis() as u64;
        let timed_out = || RpcError::TimedOut {
            node,
            timeout_ms: budget_ms,
        };
        let waiter = Waiter {
            api_key,
            api_version,
            reply: None,
        };
        let (conn, answer) =
            tokio::time::timeout_at(deadline, peer.send(correlation_id, waiter, bytes))
                .await
                .map_err(|_| timed_out())??;
        match tokio::time::timeout_at(deadline, answer).await {
            Ok(Ok(Ok(r))) => Ok((r.body, r.metadata_position)),
            Ok(Ok(Err(e))) => Err(e),
            Ok(Err(_)) => Err(RpcError::ConnectionLost { node }),
            Err(_) => {
                conn.forget(correlation_id);
                Err(timed_out())
            }
        }
    }
}

type Answer = Result<ControlResponse, RpcError>;

/// A call waiting for its answer.
struct Waiter {
    api_key: ApiKey,
    api_version: i16,
    reply: Option<oneshot::Sender<Answer>>,
}

/// The calls waiting on one connection. `closed`: the connection is gone; no more waiters.
#[derive(Default)]
struct Waiting {
    calls: HashMap<i32, Waiter>,
    closed: bool,
}

/// The shared half of one connection: its waiting calls.
struct Conn {
    node: NodeId,
    waiting: Mutex<Waiting>,
}

impl Conn {
    fn lock(&self) -> std::sync::MutexGuard<'_, Waiting> {
        self.waiting.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn is_closed(&self) -> bool {
        self.lock().closed
    }

    fn forget(&self, correlation_id: i32) {
        self.lock().calls.remove(&correlation_id);
    }

    /// Marks the connection gone and fails every waiting call.
    fn close(&self) {
        let calls = {
            let mut w = self.lock();
            w.closed = true;
            std::mem::take(&mut w.calls)
        };
        for (_, mut waiter) in calls {
            if let Some(reply) = waiter.reply.take() {
                let _ = reply.send(Err(RpcError::ConnectionLost { node: self.node }));
            }
        }
    }
}

/// One peer: its address and its current connection, if any.
struct Peer {
    node: NodeId,
    addr: SocketAddr,
    /// Mutual TLS when the controller listener is SSL.
    tls: Option<RaftTls>,
    live: tokio::sync::Mutex<Option<Live>>,
}

/// An open connection: the write half (used under `Peer::live`'s lock) and the reader task.
struct Live {
    writer: WriteHalf<RaftStream>,
    conn: Arc<Conn>,
    reader: tokio::task::JoinHandle<()>,
    /// Set while a frame is being written: if the write is cancelled half-way (the call was
    /// dropped), the stream is unusable and is replaced on next use.
    writing: bool,
}

impl Drop for Live {
    fn drop(&mut self) {
        self.reader.abort();
        self.conn.close();
    }
}

impl Peer {
    fn new(node: NodeId, addr: SocketAddr) -> Peer {
        Peer {
            node,
            addr,
            tls: None,
            live: tokio::sync::Mutex::new(None),
        }
    }

    /// Registers the call and writes its frame, connecting first if needed. Returns the
    /// connection (to forget the call on timeout) and where its answer will arrive.
    async fn send(
        &self,
        correlation_id: i32,
        mut waiter: Waiter,
        bytes: Bytes,
    ) -> Result<(Arc<Conn>, oneshot::Receiver<Answer>), RpcError> {
        let mut live = self.live.lock().await;
        if live
            .as_ref()
            .is_some_and(|l| l.writing || l.conn.is_closed())
        {
            *live = None;
        }
        if live.is_none() {
            *live = Some(self.connect().await?);
        }
        let l = live.as_mut().expect("connected above");
        let (tx, rx) = oneshot::channel();
        waiter.reply = Some(tx);
        {
            let mut w = l.conn.lock();
            if w.calls.len() >= CONTROL_CLIENT_IN_FLIGHT_MAX {
                return Err(RpcError::Busy(self.node));
            }
            w.calls.insert(correlation_id, waiter);
        }
        l.writing = true;
        if l.writer.write_all(&bytes).await.is_err() {
            *live = None; // fails every waiting call, this one included
            return Err(RpcError::ConnectionLost { node: self.node });
        }
        l.writing = false;
        Ok((l.conn.clone(), rx))
    }

    async fn connect(&self) -> Result<Live, RpcError> {
        let failed = |reason: String| RpcError::Connect {
            node: self.node,
            addr: self.addr,
            reason,
        };
        let mut stream =
            tokio::time::timeout(Duration::from_millis(CONTROL_CONNECT_TIMEOUT_MS), async {
                let s = TcpStream::connect(self.addr).await?;
                s.set_nodelay(true)?;
                crate::raft::transport::set_peer_user_timeout(&s);
                let tls = self.tls.as_ref();
                let mut s = crate::raft::transport::client_stream(tls, self.addr, s).await?;
                s.write_all(Preface::Control.bytes()).await?;
                Ok::<_, std::io::Error>(s)
            })
            .await
            .map_err(|_| failed("timed out".into()))?
            .map_err(|e| failed(e.to_string()))?;
        let _ = stream.flush().await;
        let (reader, writer) = tokio::io::split(stream);
        let conn = Arc::new(Conn {
            node: self.node,
            waiting: Mutex::new(Waiting::default()),
        });
        let reader = tokio::spawn(read_answers(
            BufReader::with_capacity(CONTROL_READ_BUFFER_BYTES, reader),
            conn.clone(),
        ));
        tracing::debug!(node = self.node, addr = %self.addr, "control connection open");
        Ok(Live {
            writer,
            conn,
            reader,
            writing: false,
        })
    }
}

/// Reads answers and hands each to its call until the connection fails; then fails the rest.
async fn read_answers(mut reader: impl AsyncRead + Unpin, conn: Arc<Conn>) {
    if let Err(e) = read_answers_until_error(&mut reader, &conn).await {
        tracing::debug!(node = conn.node, error = %e, "control connection closed");
    }
    conn.close();
}

async fn read_answers_until_error(
    reader: &mut (impl AsyncRead + Unpin),
    conn: &Conn,
) -> anyhow::Result<()> {
    loop {
        let mut prefix = [0u8; 4];
        reader.read_exact(&mut prefix).await?;
        let len = frame::frame_len(prefix, CONTROL_RESPONSE_BYTES_MAX)?;
        let body = tokio::time::timeout(
            Duration::from_millis(CONTROL_FRAME_IO_TIMEOUT_MS),
            read_frame_body(reader, len, None),
        )
        .await
        .map_err(|_| anyhow::anyhow!("answer not completed in time"))??
        .ok_or_else(|| anyhow::anyhow!("closed mid-answer"))?;
        let correlation_id = frame::response_correlation_id(&body)
            .ok_or_else(|| anyhow::anyhow!("answer of {len} bytes is too short"))?;
        // An answer nobody waits for any more (its call timed out) is dropped.
        let Some(mut waiter) = conn.lock().calls.remove(&correlation_id) else {
            continue;
        };
        let answer =
            frame::decode_response(body, waiter.api_key, waiter.api_version).map_err(|e| {
                RpcError::BadAnswer {
                    node: conn.node,
                    reason: e.to_string(),
                }
            });
        if let Some(reply) = waiter.reply.take() {
            let _ = reply.send(answer);
        }
    }
}

//! The control server: serves the JCTRL001 and JSTAT001 connections the raft listener hands
//! over.
//!
//! Owns: per connection, reading request frames (length checked against
//! `CONTROL_REQUEST_BYTES_MAX` before anything is read, buffers growing with the bytes that
//! arrive), decoding them with [`frame::decode_request`], running the [`ControlHandler`] on up
//! to `CONTROL_IN_FLIGHT_PER_CONNECTION_MAX` of them at once, and writing each answer as it
//! completes. For status connections: rendering the document and writing it.
//! Must never: keep serving a connection after a bad frame (it is closed, nothing answered),
//! or let a closed connection's handler work run on (it is aborted with the connection).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use kafka_protocol::messages::ApiKey;
use tokio::io::WriteHalf;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt, BufReader};

use crate::raft::transport::RaftStream;
use tokio::sync::{mpsc, Semaphore};
use tokio::task::JoinSet;

use super::frame::{self, ControlFrameError};
use super::{ControlAnswer, ControlHandler};
use crate::connection::read_frame_body;
use crate::raft::limits::*;
use crate::raft::transport::{Preface, RaftConnection, RateLimitedLog};

/// Renders the status document (the broker supplies it; it runs on the blocking pool).
pub type StatusSource = Arc<dyn Fn() -> String + Send + Sync>;

static BAD_REQUESTS: RateLimitedLog = RateLimitedLog::new();
static REFUSED: RateLimitedLog = RateLimitedLog::new();

/// Serves the control and status connections of one raft address.
pub struct ControlServer {
    handler: Arc<dyn ControlHandler>,
    status: StatusSource,
}

impl ControlServer {
    pub fn new(handler: Arc<dyn ControlHandler>, status: StatusSource) -> Self {
        ControlServer { handler, status }
    }

    /// Serves every connection `connections` delivers (from `raft::transport::serve`, through
    /// `ChainNodeConfig::non_chain`) until it closes; open connections end with it.
    pub async fn run(self, mut connections: mpsc::Receiver<RaftConnection>) {
        let control_slots = Arc::new(Semaphore::new(CONTROL_CONNECTIONS_MAX));
        let status_slots = Arc::new(Semaphore::new(STATUS_CONNECTIONS_MAX));
        let mut tasks = JoinSet::new();
        loop {
            let conn = tokio::select! {
                c = connections.recv() => match c {
                    Some(c) => c,
                    None => break,
                },
                Some(_) = tasks.join_next() => continue,
            };
            let slots = match conn.preface {
                Preface::Control => &control_slots,
                Preface::Status => &status_slots,
                Preface::Chain => continue, // never handed over; dropping closes it
            };
            let Ok(permit) = slots.clone().try_acquire_owned() else {
                REFUSED.note(|n| {
                    tracing::warn!(peer = %conn.peer, preface = ?conn.preface, refused = n, "too many control or status connections; closing")
                });
                continue;
            };
            match conn.preface {
                Preface::Control => {
                    let handler = self.handler.clone();
                    tasks.spawn(async move {
                        serve_control(conn.stream, conn.peer, handler).await;
                        drop((permit, conn.slot));
                    });
                }
                _ => {
                    let status = self.status.clone();
                    tasks.spawn(async move {
                        serve_status(conn.stream, conn.peer, status).await;
                        drop((permit, conn.slot));
                    });
                }
            }
        }
    }
}

/// Serves one JCTRL001 connection until the peer closes, sends a bad frame, idles out, or the
/// handler answers `Close`.
async fn serve_control(stream: RaftStream, peer: SocketAddr, handler: Arc<dyn ControlHandler>) {
    let connection = NEXT_CONNECTION.fetch_add(1, Ordering::Relaxed);
    let mut closed_by_peer = false;
    let (reader, writer) = tokio::io::split(stream);
    let mut reader = BufReader::with_capacity(CONTROL_READ_BUFFER_BYTES, reader);
    // One slot per answer in progress, so the writer's queue never fills.
    let (answers, answers_rx) = mpsc::channel(CONTROL_IN_FLIGHT_PER_CONNECTION_MAX);
    let mut writer = tokio::spawn(write_answers(writer, answers_rx));
    let in_flight = Arc::new(Semaphore::new(CONTROL_IN_FLIGHT_PER_CONNECTION_MAX));
    let mut handlers = JoinSet::new();
    loop {
        while handlers.try_join_next().is_some() {}
        let permit = tokio::select! {
            p = in_flight.clone().acquire_owned() => p.expect("the semaphore is never closed"),
            _ = &mut writer => break,
        };
        let read = tokio::select! {
            r = read_request(&mut reader) => r,
            _ = &mut writer => break,
        };
        let frame = match read {
            Ok(Some(frame)) => frame,
            Ok(None) | Err(ReadError::Truncated | ReadError::Io(_)) => {
                closed_by_peer = true;
                break;
            }
            Err(e) => {
                BAD_REQUESTS.note(|n| tracing::warn!(%peer, error = %e, refused = n, "control connection: bad request; closing"));
                break;
            }
        };
        let request = match frame::decode_request(frame) {
            Ok(r) => r,
            Err(e) => {
                BAD_REQUESTS.note(|n| tracing::warn!(%peer, error = %e, refused = n, "control connection: bad request; closing"));
                break;
            }
        };
        let (api_key, api_version) = (request.api_key, request.header.request_api_version);
        let correlation_id = request.header.correlation_id;
        let answer = handler.handle(peer, connection, request.header, request.body);
        let answers = answers.clone();
        handlers.spawn(async move {
            let out = encode_answer(answer.await, api_key, api_version, correlation_id);
            let _ = answers.send(out).await;
            drop(permit);
        });
    }
    // The handlers of a closed connection are aborted (and waited for, so that the close is
    // reported after anything they did).
    handlers.shutdown().await;
    writer.abort();
    if closed_by_peer {
        handler.closed_by_peer(peer, connection);
    }
}

/// Identifies control connections (for [`ControlHandler::closed_by_peer`]).
static NEXT_CONNECTION: AtomicU64 = AtomicU64::new(1);

/// The bytes to send for an answer; None closes the connection.
fn encode_answer(
    answer: ControlAnswer,
    api_key: ApiKey,
    api_version: i16,
    correlation_id: i32,
) -> Option<BytesMut> {
    let ControlAnswer::Respond {
        response,
        metadata_position,
    } = answer
    else {
        return None;
    };
    if frame::response_api_key(&response) != Some(api_key) {
        // A handler bug: answering another API would desynchronise the peer.
        tracing::error!(
            ?api_key,
            "control handler answered with another API's response; closing"
        );
        debug_assert!(
            false,
            "control handler answered {api_key:?} with another API's response"
        );
        return None;
    }
    match frame::encode_response(metadata_position, api_version, correlation_id, &response) {
        Ok(out) => Some(out),
        Err(e) => {
            tracing::error!(?api_key, api_version, error = %e, "control answer does not encode; closing");
            None
        }
    }
}

/// Reads one request frame: None when the peer closed cleanly between frames.
async fn read_request(
    reader: &mut (impl AsyncRead + Unpin),
) -> Result<Option<bytes::Bytes>, ReadError> {
    let mut prefix = [0u8; 4];
    match tokio::time::timeout(
        Duration::from_millis(CONTROL_IDLE_TIMEOUT_MS),
        reader.read_exact(&mut prefix),
    )
    .await
    {
        Err(_) => return Err(ReadError::Idle),
        Ok(Err(e)) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Ok(Err(e)) => return Err(ReadError::Io(e)),
        Ok(Ok(_)) => {}
    }
    let len = frame::frame_len(prefix, CONTROL_REQUEST_BYTES_MAX)?;
    match tokio::time::timeout(
        Duration::from_millis(CONTROL_FRAME_IO_TIMEOUT_MS),
        read_frame_body(reader, len, None),
    )
    .await
    {
        Err(_) => Err(ReadError::Slow),
        Ok(Err(e)) => Err(ReadError::Io(e)),
        Ok(Ok(None)) => Err(ReadError::Truncated),
        Ok(Ok(Some(frame))) => Ok(Some(frame)),
    }
}

#[derive(Debug, thiserror::Error)]
enum ReadError {
    #[error(transparent)]
    Frame(#[from] ControlFrameError),
    #[error("no request for CONTROL_IDLE_TIMEOUT_MS")]
    Idle,
    #[error("frame not completed within CONTROL_FRAME_IO_TIMEOUT_MS")]
    Slow,
    #[error("connection closed mid-frame")]
    Truncated,
    #[error("read: {0}")]
    Io(std::io::Error),
}

/// Writes answers in completion order; None (or a failed write) ends the connection.
async fn write_answers(
    mut writer: WriteHalf<RaftStream>,
    mut answers: mpsc::Receiver<Option<BytesMut>>,
) {
    let io_timeout = Duration::from_millis(CONTROL_FRAME_IO_TIMEOUT_MS);
    while let Some(Some(out)) = answers.recv().await {
        if !matches!(
            tokio::time::timeout(io_timeout, writer.write_all(&out)).await,
            Ok(Ok(()))
        ) {
            return;
        }
    }
    let _ = tokio::time::timeout(io_timeout, writer.shutdown()).await;
}

/// Writes the status document and closes.
async fn serve_status(mut stream: RaftStream, peer: SocketAddr, status: StatusSource) {
    let io_timeout = Duration::from_millis(STATUS_IO_TIMEOUT_MS);
    let rendered =
        tokio::time::timeout(io_timeout, tokio::task::spawn_blocking(move || status())).await;
    let Ok(Ok(document)) = rendered else {
        tracing::warn!(%peer, "status document not rendered in time; closing");
        return;
    };
    let written = tokio::time::timeout(io_timeout, async {
        stream.write_all(document.as_bytes()).await?;
        stream.shutdown().await
    })
    .await;
    if !matches!(written, Ok(Ok(()))) {
        tracing::debug!(%peer, "status document not delivered");
    }
}

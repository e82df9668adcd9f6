//! One client connection: bytes <-> frames, pipelining, ordering.
//!
//! Owns: reading 4-byte-length frames through a read buffer (one `read` syscall serves many
//! small pipelined frames; length checked against `socket.request.max.bytes` BEFORE any frame
//! buffer is sized; negative lengths close), then decoding and handling them one
//! at a time in arrival order, writing each reply before starting the next request. Frames
//! are read ahead while an earlier request is handled (pipelining), at most
//! `queued.max.requests` of them; beyond that the read loop waits (TCP back-pressure).
//! Handling strictly in order is not only about reply order: an idempotent producer pipelines
//! up to 5 Produce requests on one connection and relies on them being *appended* in order
//! (Kafka mutes a connection while a request is in progress for the same reason), so
//! concurrent handling would turn in-order sequences into OUT_OF_ORDER_SEQUENCE_NUMBER.
//! A connection may idle `connections.max.idle.ms` between requests, but a frame whose first
//! byte arrived must be complete within `limits::FRAME_COMPLETION_TIMEOUT_MS`. Generic over
//! the stream ([`serve`] takes a TCP or TLS stream's halves); every request is handled for the
//! connection's [`Caller`].
//! A malformed frame, an unknown or unimplemented API, or an idle timeout closes this
//! connection only, with a log line; nothing here can stop the broker.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tracing::{debug, info, warn};

use crate::broker::Broker;
use crate::codec::{decode_request, encode_response, Decoded, RequestBody, ResponseBody};
use crate::dispatch::{self, Reply};
use crate::limits;
use crate::metrics::CloseReason;
use crate::security::sasl::{Exchange, Outcome, SaslServer};
use crate::security::{Caller, Principal};
use crate::zero_copy::{write_chunks, ConnectionWriter, ZERO_COPY_MIN_BYTES};
use kafka_protocol::messages::{ApiKey, SaslAuthenticateResponse, SaslHandshakeResponse};
use kafka_protocol::protocol::StrBytes;
use std::sync::atomic::{AtomicBool, Ordering};

/// Initial receive buffer for a frame; it grows with the bytes actually received, so a peer
/// that declares 100 MiB and sends nothing costs this much, not 100 MiB.
const FRAME_BUFFER_INITIAL_BYTES: usize = 64 * 1024;

/// Socket read buffer per connection: a frame length and a small request (or several
/// pipelined ones) arrive in one `read` instead of two per frame. Bodies larger than this are
/// read straight into their frame buffer (tokio's `BufReader` bypasses its buffer then), so it
/// only costs this much memory per connection.
const READ_BUFFER_BYTES: usize = 16 * 1024;

/// A frame buffer whose request has been handled goes back to the read loop for the next
/// frame, if it is at most this large: a fresh buffer per frame cost page faults on every
/// write into it and an munmap on free (~15 % of broker CPU for 1 MiB produce requests in the
/// profile). Kafka's default `max.request.size` is 1 MiB, so this covers a producer's frames;
/// larger buffers are freed rather than kept per connection.
const POOLED_FRAME_BYTES_MAX: usize = 1 << 20;
/// Handled frame buffers waiting for reuse, per connection (one is read while one is handled).
const POOLED_FRAMES_MAX: usize = 2;

/// Serves one TCP connection until the peer closes, errs, or idles out; says which.
pub async fn run(
    stream: TcpStream,
    caller: Arc<Caller>,
    sasl: Option<SaslServer>,
    broker: Arc<Broker>,
) -> CloseReason {
    let _ = stream.set_nodelay(true);
    let (reader, writer) = stream.into_split();
    serve(reader, writer, caller, sasl, broker).await
}

/// Serves one connection, given as its read and write halves (a TCP stream's, or a TLS
/// stream's), for `caller`; on a SASL listener (`sasl`) the client authenticates first.
pub async fn serve<R, W>(
    reader: R,
    writer: W,
    caller: Arc<Caller>,
    sasl: Option<SaslServer>,
    broker: Arc<Broker>,
) -> CloseReason
where
    R: AsyncRead + Unpin + Send,
    W: ConnectionWriter,
{
    let peer = caller
        .peer
        .unwrap_or_else(|| SocketAddr::from(([0, 0, 0, 0], 0)));
    let mut reader = BufReader::with_capacity(READ_BUFFER_BYTES, reader);
    let settings = &broker.config.broker;
    let max_frame = settings.socket_request_max_bytes as usize;
    let idle = Duration::from_millis(settings.connections_max_idle_ms);
    let frame_time = Duration::from_millis(limits::FRAME_COMPLETION_TIMEOUT_MS);
    let (tx, rx) = mpsc::channel::<(Bytes, Instant)>(settings.queued_max_requests as usize);
    let (spare_tx, mut spare_rx) = mpsc::channel::<BytesMut>(POOLED_FRAMES_MAX);
    // Until a SASL connection has authenticated, frames are capped at SASL_RECEIVE_BYTES_MAX.
    let authenticated = Arc::new(AtomicBool::new(sasl.is_none()));
    let mut write_task = tokio::spawn(handle_loop(
        broker.clone(),
        caller,
        sasl,
        authenticated.clone(),
        writer,
        rx,
        spare_tx,
    ));
    let mut reason = CloseReason::Client;
    loop {
        // Between requests a connection may idle for connections.max.idle.ms; once a frame's
        // first byte is in, the whole frame must arrive within FRAME_COMPLETION_TIMEOUT_MS.
        let first = tokio::select! {
            r = tokio::time::timeout(idle, async { reader.fill_buf().await.map(|b| b.is_empty()) }) => r,
            // The writer failed or closed: stop reading.
            r = &mut write_task => return r.ok().flatten().unwrap_or(CloseReason::Io),
        };
        match first {
            Err(_) => {
                debug!(%peer, "closing idle connection");
                reason = CloseReason::Idle;
                break;
            }
            Ok(Err(e)) => {
                debug!(%peer, "read error: {e}");
                reason = CloseReason::Io;
                break;
            }
            Ok(Ok(true)) => break, // closed by the client between requests
            Ok(Ok(false)) => {}
        }
        let deadline = tokio::time::Instant::now() + frame_time;
        let mut len_bytes = [0u8; 4];
        match tokio::time::timeout_at(deadline, reader.read_exact(&mut len_bytes)).await {
            Err(_) => {
                warn!(%peer, "frame length not completed within {} ms; closing", frame_time.as_millis());
                reason = CloseReason::Idle;
                break;
            }
            Ok(Err(e)) => {
                if e.kind() != std::io::ErrorKind::UnexpectedEof {
                    debug!(%peer, "read error: {e}");
                    reason = CloseReason::Io;
                }
                break;
            }
            Ok(Ok(_)) => {}
        }
        let len = i32::from_be_bytes(len_bytes);
        if len < 0 {
            warn!(%peer, len, "negative frame length; closing connection");
            reason = CloseReason::Protocol;
            break;
        }
        let max_frame = if authenticated.load(Ordering::Acquire) {
            max_frame
        } else {
            max_frame.min(limits::SASL_RECEIVE_BYTES_MAX)
        };
        if len as usize > max_frame {
            let hint = if len_bytes[0] == 0x16 && len_bytes[1] == 0x03 {
                " (this looks like a TLS ClientHello: the listener is plaintext)"
            } else {
                ""
            };
            warn!(%peer, len, max = max_frame, "frame larger than socket.request.max.bytes{hint}; closing connection");
            reason = CloseReason::Protocol;
            break;
        }
        // The frame deadline also bounds a frame that trickles in (slow-loris).
        let spare = spare_rx.try_recv().ok();
        let body =
            tokio::time::timeout_at(deadline, read_frame_body(&mut reader, len as usize, spare))
                .await;
        let frame = match body {
            Ok(Ok(Some(frame))) => frame,
            Ok(Ok(None)) => {
                debug!(%peer, "connection closed mid-frame");
                break;
            }
            Ok(Err(e)) => {
                debug!(%peer, "read error mid-frame: {e}");
                reason = CloseReason::Io;
                break;
            }
            Err(_) => {
                warn!(%peer, len, "frame not completed within {} ms; closing", frame_time.as_millis());
                reason = CloseReason::Idle;
                break;
            }
        };
        if tx.send((frame, Instant::now())).await.is_err() {
            break; // the handler loop ended (write error or a Close reply)
        }
    }
    drop(tx);
    match write_task.await {
        Ok(Some(handler_reason)) => handler_reason,
        _ => reason,
    }
}

/// Reads a frame body of `len` bytes (already checked against the limit) into `spare` (a
/// handled frame's buffer) or a new buffer; either grows with the bytes received, not with the
/// declared length. None if the peer closed first. The buffer is not zeroed before reading
/// (`read_buf` fills spare capacity).
pub(crate) async fn read_frame_body(
    reader: &mut (impl AsyncRead + Unpin),
    len: usize,
    spare: Option<BytesMut>,
) -> std::io::Result<Option<Bytes>> {
    let mut buf = match spare {
        Some(mut b) => {
            b.clear();
            b
        }
        None => BytesMut::with_capacity(len.min(FRAME_BUFFER_INITIAL_BYTES)),
    };
    while buf.len() < len {
        if buf.len() == buf.capacity() {
            // Double, up to what is still missing.
            buf.reserve((len - buf.len()).min(buf.len().max(FRAME_BUFFER_INITIAL_BYTES)));
        }
        let missing = (len - buf.len()) as u64;
        if (&mut *reader).take(missing).read_buf(&mut buf).await? == 0 {
            return Ok(None);
        }
    }
    Ok(Some(buf.freeze()))
}

/// Handles requests one at a time, in arrival order, writing each reply before the next.
/// Frames are decoded here rather than by the read loop: a decoded request can be several times
/// larger than its frame, so only the request in progress is ever held decoded. Returns why it
/// ended the connection, or None when the read side ended it.
#[allow(clippy::too_many_arguments)]
async fn handle_loop<W: ConnectionWriter>(
    broker: Arc<Broker>,
    caller: Arc<Caller>,
    sasl: Option<SaslServer>,
    authenticated: Arc<AtomicBool>,
    mut writer: W,
    mut frames: mpsc::Receiver<(Bytes, Instant)>,
    spare: mpsc::Sender<BytesMut>,
) -> Option<CloseReason> {
    let caller = match sasl {
        None => caller,
        Some(sasl) => match authenticate(&broker, caller, &sasl, &mut writer, &mut frames).await {
            Ok(c) => {
                authenticated.store(true, Ordering::Release);
                c
            }
            Err(reason) => {
                let _ = writer.shutdown().await;
                return Some(reason);
            }
        },
    };
    while let Some((frame, read_at)) = frames.recv().await {
        // The header's first fields, read before decoding consumes the frame.
        let api = (frame.len() >= 4).then(|| {
            let field = |at: usize| i16::from_be_bytes([frame[at], frame[at + 1]]);
            (field(0), field(2))
        });
        // A second handle on the frame's buffer: once the request and its reply are gone it is
        // the only one left and the buffer can be reused for a later frame.
        let buffer = frame.clone();
        let decoded = match decode_request(frame) {
            Ok(d) => d,
            Err(e) => {
                warn!(peer = ?caller.peer, "closing connection: {e}");
                let _ = writer.shutdown().await;
                return Some(CloseReason::Protocol);
            }
        };
        let reply = if writer.sendfile_socket().is_some() {
            let handled = dispatch::handle_for(&broker, decoded, &caller);
            ZERO_COPY_MIN_BYTES
                .scope(limits::ZERO_COPY_MIN_BYTES, handled)
                .await
        } else {
            dispatch::handle_for(&broker, decoded, &caller).await
        };
        match reply {
            Reply::Frame(frame) => {
                if let Err(e) = writer.write_all(&frame).await {
                    debug!("write error: {e}");
                    return Some(CloseReason::Io);
                }
            }
            Reply::Chunks(chunks) => {
                if let Err(e) = write_chunks(&mut writer, &chunks).await {
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::Other | std::io::ErrorKind::UnexpectedEof
                    ) {
                        warn!(peer = ?caller.peer, "closing connection: {e}");
                    } else {
                        debug!("write error: {e}");
                    }
                    return Some(CloseReason::Io);
                }
            }
            Reply::Nothing => {}
            Reply::Close => {
                info!("closing connection after a request that requires it");
                let _ = writer.shutdown().await;
                return Some(CloseReason::Protocol);
            }
        }
        if let Some((api_key, version)) = api {
            broker
                .metrics
                .requests
                .observe(api_key, version, read_at.elapsed());
        }
        if let Ok(buffer) = buffer.try_into_mut() {
            if buffer.capacity() <= POOLED_FRAME_BYTES_MAX {
                let _ = spare.try_send(buffer); // pool full: just free it
            }
        }
    }
    let _ = writer.shutdown().await;
    None
}

async fn write_response<W: AsyncWrite + Unpin>(
    writer: &mut W,
    api: (ApiKey, i16, i32),
    body: ResponseBody,
) -> Result<(), CloseReason> {
    let frame = encode_response(api.0, api.1, api.2, &body).map_err(|e| {
        warn!("cannot encode {:?} v{}: {e:#}", api.0, api.1);
        CloseReason::Protocol
    })?;
    writer.write_all(&frame).await.map_err(|_| CloseReason::Io)
}

/// Writes a raw SASL token (after a v0 SaslHandshake): a 4-byte length, then the bytes.
async fn write_raw_token<W: AsyncWrite + Unpin>(
    writer: &mut W,
    token: &[u8],
) -> Result<(), CloseReason> {
    let mut frame = Vec::with_capacity(4 + token.len());
    frame.extend_from_slice(&(token.len() as u32).to_be_bytes());
    frame.extend_from_slice(token);
    writer.write_all(&frame).await.map_err(|_| CloseReason::Io)
}

/// Kafka's SASL flow on a SASL listener, before any other request: ApiVersions is answered,
/// SaslHandshake (v0-1) picks an enabled mechanism (else UNSUPPORTED_SASL_MECHANISM with the
/// enabled list, then close), then the tokens (one for PLAIN, two for SCRAM, each answered with
/// the server's token) come in SaslAuthenticate requests (v1 handshake) or as raw
/// length-prefixed frames (v0). Anything else closes the connection. A failed
/// authentication is answered SASL_AUTHENTICATION_FAILED with Kafka's message and closed
/// `FAILED_AUTHENTICATION_DELAY_MS` later. The whole exchange must end within
/// `CONNECTION_SETUP_TIMEOUT_MS`. Returns the caller with its authenticated principal.
async fn authenticate<W: ConnectionWriter>(
    broker: &Arc<Broker>,
    caller: Arc<Caller>,
    sasl: &SaslServer,
    writer: &mut W,
    frames: &mut mpsc::Receiver<(Bytes, Instant)>,
) -> Result<Arc<Caller>, CloseReason> {
    const UNSUPPORTED_SASL_MECHANISM: i16 = 33;
    const SASL_AUTHENTICATION_FAILED: i16 = 58;
    let peer = caller.peer;
    let deadline =
        tokio::time::Instant::now() + Duration::from_millis(limits::CONNECTION_SETUP_TIMEOUT_MS);
    let delay = Duration::from_millis(limits::FAILED_AUTHENTICATION_DELAY_MS);
    let authenticated = |user: String| {
        let mut c = (*caller).clone();
        c.principal = Principal::user(user);
        Arc::new(c)
    };
    // The chosen mechanism's exchange, and whether its tokens come raw (SaslHandshake v0).
    let mut chosen: Option<(Exchange, bool)> = None;
    loop {
        let (frame, _) = match tokio::time::timeout_at(deadline, frames.recv()).await {
            Err(_) => {
                info!(?peer, "SASL authentication not completed in time; closing");
                return Err(CloseReason::Idle);
            }
            Ok(None) => return Err(CloseReason::Client),
            Ok(Some(f)) => f,
        };
        if let Some((exchange, true)) = chosen.as_mut() {
            let image = broker.metadata.image();
            return match exchange.step(sasl, &frame, &image.scram) {
                Outcome::Continue(challenge) => {
                    write_raw_token(writer, &challenge).await?;
                    continue;
                }
                Outcome::Done { user, token } => {
                    write_raw_token(writer, &token).await?;
                    Ok(authenticated(user))
                }
                Outcome::Failed { reason, .. } => {
                    info!(?peer, listener = %caller.listener, mechanism = ?exchange, "SASL authentication failed: {reason}");
                    tokio::time::sleep(delay).await;
                    Err(CloseReason::Protocol)
                }
            };
        }
        let request = match decode_request(frame) {
            Ok(Decoded::Request(r)) => r,
            Ok(other) => {
                // Too-new ApiVersions and the like: answered as usual.
                match dispatch::handle_for(broker, other, &caller).await {
                    Reply::Frame(f) => writer.write_all(&f).await.map_err(|_| CloseReason::Io)?,
                    Reply::Chunks(c) => write_chunks(writer, &c)
                        .await
                        .map_err(|_| CloseReason::Io)?,
                    Reply::Nothing => {}
                    Reply::Close => return Err(CloseReason::Protocol),
                }
                continue;
            }
            Err(e) => {
                warn!(?peer, "closing connection: {e}");
                return Err(CloseReason::Protocol);
            }
        };
        let api = (request.api_key, request.api_version, request.correlation_id);
        match request.body {
            RequestBody::ApiVersions(_) => {
                match dispatch::handle_for(broker, Decoded::Request(request), &caller).await {
                    Reply::Frame(f) => writer.write_all(&f).await.map_err(|_| CloseReason::Io)?,
                    Reply::Chunks(c) => write_chunks(writer, &c)
                        .await
                        .map_err(|_| CloseReason::Io)?,
                    Reply::Nothing => {}
                    Reply::Close => return Err(CloseReason::Protocol),
                }
            }
            RequestBody::SaslHandshake(r) if chosen.is_none() => {
                let enabled = sasl
                    .mechanisms
                    .iter()
                    .map(|m| StrBytes::from_static_str(m.name()))
                    .collect();
                let found = sasl.mechanism(r.mechanism.as_str());
                let response = SaslHandshakeResponse::default()
                    .with_error_code(if found.is_some() {
                        0
                    } else {
                        UNSUPPORTED_SASL_MECHANISM
                    })
                    .with_mechanisms(enabled);
                write_response(writer, api, ResponseBody::SaslHandshake(response)).await?;
                let Some(mechanism) = found else {
                    info!(?peer, mechanism = %r.mechanism.as_str(), "unsupported SASL mechanism; closing");
                    return Err(CloseReason::Protocol);
                };
                chosen = Some((Exchange::new(mechanism), api.1 == 0));
            }
            RequestBody::SaslAuthenticate(r) if matches!(chosen, Some((_, false))) => {
                let (exchange, _) = chosen.as_mut().expect("matched");
                let image = broker.metadata.image();
                let ok = |token: Vec<u8>| {
                    SaslAuthenticateResponse::default()
                        .with_error_code(0)
                        .with_auth_bytes(Bytes::from(token))
                        .with_session_lifetime_ms(0)
                };
                match exchange.step(sasl, &r.auth_bytes, &image.scram) {
                    Outcome::Continue(challenge) => {
                        write_response(writer, api, ResponseBody::SaslAuthenticate(ok(challenge)))
                            .await?;
                    }
                    Outcome::Done { user, token } => {
                        write_response(writer, api, ResponseBody::SaslAuthenticate(ok(token)))
                            .await?;
                        return Ok(authenticated(user));
                    }
                    Outcome::Failed { message, reason } => {
                        info!(?peer, listener = %caller.listener, mechanism = ?exchange, "SASL authentication failed: {reason}");
                        let response = SaslAuthenticateResponse::default()
                            .with_error_code(SASL_AUTHENTICATION_FAILED)
                            .with_error_message(Some(StrBytes::from_string(message)));
                        write_response(writer, api, ResponseBody::SaslAuthenticate(response))
                            .await?;
                        tokio::time::sleep(delay).await;
                        return Err(CloseReason::Protocol);
                    }
                }
            }
            _ => {
                warn!(?peer, api = ?api.0, "request before SASL authentication; closing");
                return Err(CloseReason::Protocol);
            }
        }
    }
}

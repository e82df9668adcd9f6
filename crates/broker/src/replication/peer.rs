//! A follower's connection to a leader's Kafka listener: one request at a time, Kafka framing.
//!
//! Owns: the TCP connection a fetcher keeps to its source broker, encoding a request with the
//! request header its API version implies, reading the answer frame (its length checked against
//! the caller's cap before anything is allocated) and decoding it with kafka-protocol.
//! Must never: size a buffer from the peer's declared length beyond the cap, or wait without a
//! bound (every call has a deadline; a connection that missed one is dropped, since the answer
//! may still arrive on it).

use bytes::BytesMut;
use kafka_protocol::messages::{ApiKey, RequestHeader, RequestKind, ResponseHeader, ResponseKind};
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};
use tokio::io::{AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::time::Instant;

use crate::codec;
use crate::connection::read_frame_body;

/// Why a call has no answer. Every one of them closes the connection.
#[derive(Debug, thiserror::Error)]
pub enum PeerError {
    #[error("cannot connect to {addr}: {reason}")]
    Connect { addr: String, reason: String },
    #[error("connection to {addr}: {reason}")]
    Io { addr: String, reason: String },
    #[error("{addr} did not answer in time")]
    TimedOut { addr: String },
    #[error("answer of {len} bytes from {addr} is over the {max}-byte cap")]
    TooLarge {
        addr: String,
        len: usize,
        max: usize,
    },
    #[error("bad answer from {addr}: {reason}")]
    BadAnswer { addr: String, reason: String },
}

/// One connection to a broker's Kafka listener.
pub struct Peer {
    addr: String,
    client_id: StrBytes,
    stream: Option<BufReader<TcpStream>>,
    next_correlation_id: i32,
}

impl Peer {
    pub fn new(addr: String, client_id: String) -> Peer {
        Peer {
            addr,
            client_id: StrBytes::from_string(client_id),
            stream: None,
            next_correlation_id: 0,
        }
    }

    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// Sends `request` at `api_version` and waits for its answer until `deadline`; an answer
    /// frame over `frame_bytes_max` is refused. Connects first when not connected.
    pub async fn call(
        &mut self,
        api_key: ApiKey,
        api_version: i16,
        request: &RequestKind,
        frame_bytes_max: usize,
        deadline: Instant,
    ) -> Result<ResponseKind, PeerError> {
        let r = tokio::time::timeout_at(
            deadline,
            self.call_inner(api_key, api_version, request, frame_bytes_max),
        )
        .await;
        let r = r.unwrap_or_else(|_| {
            Err(PeerError::TimedOut {
                addr: self.addr.clone(),
            })
        });
        if r.is_err() {
            self.stream = None;
        }
        r
    }

    async fn call_inner(
        &mut self,
        api_key: ApiKey,
        api_version: i16,
        request: &RequestKind,
        frame_bytes_max: usize,
    ) -> Result<ResponseKind, PeerError> {
        let io = |e: std::io::Error| PeerError::Io {
            addr: self.addr.clone(),
            reason: e.to_string(),
        };
        let bad = |reason: String| PeerError::BadAnswer {
            addr: self.addr.clone(),
            reason,
        };
        if self.stream.is_none() {
            let s = TcpStream::connect(&self.addr)
                .await
                .map_err(|e| PeerError::Connect {
                    addr: self.addr.clone(),
                    reason: e.to_string(),
                })?;
            let _ = s.set_nodelay(true);
            crate::raft::transport::set_peer_user_timeout(&s);
            self.stream = Some(BufReader::new(s));
        }
        let correlation_id = self.next_correlation_id;
        self.next_correlation_id = self.next_correlation_id.wrapping_add(1);
        let header = RequestHeader::default()
            .with_request_api_key(api_key as i16)
            .with_request_api_version(api_version)
            .with_correlation_id(correlation_id)
            .with_client_id(Some(self.client_id.clone()));
        let mut out = BytesMut::with_capacity(512);
        out.extend_from_slice(&[0; 4]);
        header
            .encode(&mut out, api_key.request_header_version(api_version))
            .map_err(|e| bad(format!("encoding the request header: {e:#}")))?;
        request
            .encode(&mut out, api_version)
            .map_err(|e| bad(format!("encoding the request: {e:#}")))?;
        codec::finish_frame(&mut out).map_err(|e| bad(format!("{e:#}")))?;
        let addr = self.addr.clone();
        let stream = self.stream.as_mut().expect("connected above");
        stream.get_mut().write_all(&out).await.map_err(io)?;
        let len = stream.read_i32().await.map_err(io)?;
        let len = usize::try_from(len).map_err(|_| bad(format!("negative frame length {len}")))?;
        if len > frame_bytes_max {
            return Err(PeerError::TooLarge {
                addr,
                len,
                max: frame_bytes_max,
            });
        }
        let mut frame = read_frame_body(stream, len, None)
            .await
            .map_err(io)?
            .ok_or_else(|| PeerError::Io {
                addr: addr.clone(),
                reason: "closed by the peer".into(),
            })?;
        let response_header =
            ResponseHeader::decode(&mut frame, api_key.response_header_version(api_version))
                .map_err(|e| bad(format!("response header: {e:#}")))?;
        if response_header.correlation_id != correlation_id {
            return Err(bad(format!(
                "correlation id {} answers request {correlation_id}",
                response_header.correlation_id
            )));
        }
        ResponseKind::decode(api_key, &mut frame, api_version).map_err(|e| bad(format!("{e:#}")))
    }
}

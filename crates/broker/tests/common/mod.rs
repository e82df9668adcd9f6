//! Shared helpers for the broker's raw-socket integration tests: an in-process broker on an
//! ephemeral port with a temporary data dir, and a minimal client that speaks frames.
#![allow(dead_code)]

use std::time::Duration;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use josefine::config::{Config, ServeArgs};
use josefine::server::RunningBroker;
use kafka_protocol::messages::{ApiKey, RequestHeader, ResponseHeader};
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};
use kafka_protocol::records::{
    Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

pub const READ_TIMEOUT: Duration = Duration::from_secs(10);

pub async fn start_broker(extra: &[&str]) -> (RunningBroker, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let args = ServeArgs {
        listen: Some("127.0.0.1:0".into()),
        raft_listen: Some("127.0.0.1:0".into()),
        data_dir: Some(dir.path().to_path_buf()),
        set: extra.iter().map(|s| s.to_string()).collect(),
        ..ServeArgs::default()
    };
    let config = Config::resolve(args).unwrap();
    let running = josefine::server::start(config).await.unwrap();
    (running, dir)
}

/// Registers node `node_id` in the broker's image (a broker that never runs) and unfences it,
/// as a controller would. Callers pause the controller timer, or its session would expire.
pub async fn add_unfenced_node(broker: &RunningBroker, node_id: i32, rack: Option<String>) {
    let propose = |cmd| broker.broker.metadata.propose(cmd);
    propose(josefine_meta::Command::RegisterBroker {
        node_id,
        incarnation_id: 9000 + node_id as u128,
        host: "127.0.0.1".into(),
        port: 1,
        rack,
    })
    .await
    .unwrap();
    let epoch = broker.broker.metadata.image().brokers[&node_id].epoch;
    propose(josefine_meta::Command::UnfenceBroker { node_id, epoch })
        .await
        .unwrap();
}

pub struct Client {
    pub stream: TcpStream,
    next_correlation_id: i32,
}

impl Client {
    pub async fn connect(broker: &RunningBroker) -> Client {
        Client {
            stream: TcpStream::connect(broker.local_addr).await.unwrap(),
            next_correlation_id: 1,
        }
    }

    /// A connection to one listener's address.
    pub async fn connect_addr(addr: std::net::SocketAddr) -> Client {
        Client {
            stream: TcpStream::connect(addr).await.unwrap(),
            next_correlation_id: 1,
        }
    }

    pub async fn send_raw(&mut self, bytes: &[u8]) {
        // The broker may already have closed: ignore write errors, the read tells.
        let _ = self.stream.write_all(bytes).await;
    }

    /// Sends a framed request with a proper header; returns its correlation id.
    pub async fn send<T: Encodable>(&mut self, api_key: ApiKey, version: i16, body: &T) -> i32 {
        let correlation_id = self.next_correlation_id;
        self.next_correlation_id += 1;
        let mut buf = BytesMut::new();
        buf.put_i32(0);
        RequestHeader::default()
            .with_request_api_key(api_key as i16)
            .with_request_api_version(version)
            .with_correlation_id(correlation_id)
            .with_client_id(Some(StrBytes::from_static_str("raw-test")))
            .encode(&mut buf, api_key.request_header_version(version))
            .unwrap();
        body.encode(&mut buf, version).unwrap();
        let len = (buf.len() - 4) as i32;
        buf[..4].copy_from_slice(&len.to_be_bytes());
        self.send_raw(&buf).await;
        correlation_id
    }

    /// Sends any request body (kafka-protocol's enum over every API).
    pub async fn send_kind(
        &mut self,
        api_key: ApiKey,
        version: i16,
        body: &kafka_protocol::messages::RequestKind,
    ) -> i32 {
        let mut encoded = BytesMut::new();
        body.encode(&mut encoded, version).unwrap();
        self.send(api_key, version, &Raw(encoded.freeze())).await
    }

    /// Reads one response frame; None if the connection closed (or timed out).
    pub async fn read_frame(&mut self) -> Option<Bytes> {
        let mut len = [0u8; 4];
        match tokio::time::timeout(READ_TIMEOUT, self.stream.read_exact(&mut len)).await {
            Ok(Ok(_)) => {}
            _ => return None,
        }
        let mut buf = vec![0u8; i32::from_be_bytes(len) as usize];
        match tokio::time::timeout(READ_TIMEOUT, self.stream.read_exact(&mut buf)).await {
            Ok(Ok(_)) => Some(Bytes::from(buf)),
            _ => None,
        }
    }

    /// Reads and decodes a response: (correlation id, body).
    pub async fn recv<T: Decodable>(&mut self, api_key: ApiKey, version: i16) -> (i32, T) {
        let mut frame = self
            .read_frame()
            .await
            .expect("connection closed instead of a response");
        let header =
            ResponseHeader::decode(&mut frame, api_key.response_header_version(version)).unwrap();
        let body = T::decode(&mut frame, version).unwrap();
        assert!(
            !frame.has_remaining(),
            "trailing bytes in {api_key:?} v{version} response"
        );
        (header.correlation_id, body)
    }

    /// True when the broker closed the connection (EOF or reset) within the timeout.
    pub async fn is_closed(&mut self) -> bool {
        let mut byte = [0u8; 1];
        matches!(
            tokio::time::timeout(READ_TIMEOUT, self.stream.read(&mut byte)).await,
            Ok(Ok(0)) | Ok(Err(_))
        )
    }
}

/// A v2 record batch of uncompressed records (key, value), optionally idempotent.
pub fn batch(records: &[(&str, &str)], producer: Option<(i64, i16, i32)>) -> Bytes {
    let (producer_id, producer_epoch, first_sequence) = producer.unwrap_or((-1, -1, -1));
    let records: Vec<Record> = records
        .iter()
        .enumerate()
        .map(|(i, (k, v))| Record {
            transactional: false,
            control: false,
            delete_horizon: false,
            partition_leader_epoch: 0,
            producer_id,
            producer_epoch,
            timestamp_type: TimestampType::Creation,
            offset: i as i64,
            // kafka-protocol groups records into one batch while offset - sequence is constant;
            // the batch's base sequence is the first record's (-1 = not idempotent).
            sequence: first_sequence + i as i32,
            timestamp: 1_700_000_000_000 + i as i64,
            key: Some(Bytes::copy_from_slice(k.as_bytes())),
            value: Some(Bytes::copy_from_slice(v.as_bytes())),
            headers: Default::default(),
        })
        .collect();
    let mut buf = BytesMut::new();
    RecordBatchEncoder::encode(
        &mut buf,
        &records,
        &RecordEncodeOptions {
            version: 2,
            compression: Compression::None,
        },
    )
    .unwrap();
    buf.freeze()
}

/// Pre-encoded body bytes.
struct Raw(Bytes);

impl Encodable for Raw {
    fn encode<B: kafka_protocol::protocol::buf::ByteBufMut>(
        &self,
        buf: &mut B,
        _version: i16,
    ) -> anyhow::Result<()> {
        buf.put_slice(&self.0);
        Ok(())
    }
    fn compute_size(&self, _version: i16) -> anyhow::Result<usize> {
        Ok(self.0.len())
    }
}

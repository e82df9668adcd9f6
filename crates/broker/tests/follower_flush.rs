//! A follower with `flush.messages=1` (`log.flush.interval.messages=1`) fsyncs the batches it
//! appended before its next fetch acknowledges them to the leader, as Kafka flushes a
//! follower's appends by the same rule as a leader's. The leader is a fake on a socket (node 2
//! in the image); it answers the first Fetch with one batch and notes, when the next Fetch
//! (whose fetch offset acknowledges the batch) arrives, how many fsync rounds the follower's
//! log has run.

mod common;

use std::time::Duration;

use bytes::{Buf, BufMut, BytesMut};
use common::{batch, start_broker};
use josefine_meta::{Command, PartitionAssignment, TopicId};
use kafka_protocol::messages::fetch_response::{FetchableTopicResponse, PartitionData};
use kafka_protocol::messages::{
    ApiKey, FetchRequest, FetchResponse, RequestHeader, ResponseHeader,
};
use kafka_protocol::protocol::{Decodable, Encodable};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::mpsc;

const TOPIC_ID: TopicId = TopicId([0x31; 16]);

/// Serves Fetch on one connection: the first answer carries `records` at offset 0, later ones
/// are empty after a short wait; every request's fetch offset for partition 0 is sent on
/// `offsets`.
async fn fake_leader(
    listener: TcpListener,
    records: bytes::Bytes,
    offsets: mpsc::UnboundedSender<i64>,
) {
    let (mut s, _) = listener.accept().await.unwrap();
    let mut sent = false;
    loop {
        let mut len = [0u8; 4];
        if s.read_exact(&mut len).await.is_err() {
            return;
        }
        let mut body = vec![0u8; i32::from_be_bytes(len) as usize];
        s.read_exact(&mut body).await.unwrap();
        let mut buf = bytes::Bytes::from(body);
        let api_key = (&buf[..2]).get_i16();
        let version = (&buf[2..4]).get_i16();
        assert_eq!(api_key, ApiKey::Fetch as i16, "the follower only fetches");
        let header =
            RequestHeader::decode(&mut buf, ApiKey::Fetch.request_header_version(version)).unwrap();
        let req = FetchRequest::decode(&mut buf, version).unwrap();
        let offset = req.topics[0].partitions[0].fetch_offset;
        let _ = offsets.send(offset);
        let part = if !sent {
            sent = true;
            PartitionData::default()
                .with_partition_index(0)
                .with_high_watermark(0)
                .with_records(Some(records.clone()))
        } else {
            tokio::time::sleep(Duration::from_millis(100)).await;
            PartitionData::default()
                .with_partition_index(0)
                .with_high_watermark(offset)
        };
        let resp = FetchResponse::default().with_responses(vec![FetchableTopicResponse::default()
            .with_topic_id(uuid::Uuid::from_bytes(TOPIC_ID.0))
            .with_partitions(vec![part])]);
        let mut out = BytesMut::new();
        out.put_i32(0);
        ResponseHeader::default()
            .with_correlation_id(header.correlation_id)
            .encode(&mut out, ApiKey::Fetch.response_header_version(version))
            .unwrap();
        resp.encode(&mut out, version).unwrap();
        let n = (out.len() - 4) as i32;
        out[..4].copy_from_slice(&n.to_be_bytes());
        if s.write_all(&out).await.is_err() {
            return;
        }
    }
}

async fn flush_rounds_when_acknowledged(flush_messages: &str) -> u64 {
    let (broker, _dir) =
        start_broker(&[&format!("log.flush.interval.messages={flush_messages}")]).await;
    // Node 2 never heartbeats: the controller's timer would fence it.
    broker.broker.controller.pause_timer(true);
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let (tx, mut offsets) = mpsc::unbounded_channel();
    tokio::spawn(fake_leader(
        listener,
        batch(&[("k", "a"), ("k", "b"), ("k", "c")], None),
        tx,
    ));
    let propose = |cmd| broker.broker.metadata.propose(cmd);
    propose(Command::RegisterBroker {
        node_id: 2,
        incarnation_id: 1002,
        host: "127.0.0.1".into(),
        port: i32::from(port),
        rack: None,
    })
    .await
    .unwrap();
    let epoch = broker.broker.metadata.image().brokers[&2].epoch;
    propose(Command::UnfenceBroker { node_id: 2, epoch })
        .await
        .unwrap();
    propose(Command::CreateTopic {
        topic_id: TOPIC_ID,
        name: "followed".into(),
        partitions: vec![PartitionAssignment::led_by_first(0, vec![2, 1])],
        configs: vec![],
    })
    .await
    .unwrap();
    let partition = broker.broker.partitions.get(TOPIC_ID, 0).expect("hosted");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let offset = tokio::time::timeout_at(deadline, offsets.recv())
            .await
            .expect("the follower fetches")
            .unwrap();
        if offset == 3 {
            // This fetch acknowledges the three records.
            let rounds = partition.log.flush_rounds();
            broker.shutdown().await;
            return rounds;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follower_with_flush_messages_1_fsyncs_before_acknowledging() {
    assert!(flush_rounds_when_acknowledged("1").await >= 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follower_with_the_default_flush_leaves_it_to_the_os() {
    assert_eq!(
        flush_rounds_when_acknowledged("9223372036854775807").await,
        0
    );
}

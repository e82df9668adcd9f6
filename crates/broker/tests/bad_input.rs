//! Hostile and malformed input over real sockets: each case gets the right error or a closed
//! connection, and a fresh connection is still served afterwards.

mod common;

use bytes::{BufMut, BytesMut};
use common::{batch, start_broker, Client};
use josefine::server::RunningBroker;
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{
    ApiKey, ApiVersionsRequest, ApiVersionsResponse, CreateTopicsRequest, CreateTopicsResponse,
    ProduceRequest, ProduceResponse, TopicName,
};
use kafka_protocol::protocol::StrBytes;

/// Proves the broker still answers a well-formed request on a new connection.
async fn still_serving(broker: &RunningBroker) {
    let mut c = Client::connect(broker).await;
    let id = c
        .send(ApiKey::ApiVersions, 3, &ApiVersionsRequest::default())
        .await;
    let (got, r): (i32, ApiVersionsResponse) = c.recv(ApiKey::ApiVersions, 3).await;
    assert_eq!(got, id);
    assert_eq!(r.error_code, 0);
}

async fn closes_then_serves(broker: &RunningBroker, bytes: &[u8]) {
    let mut c = Client::connect(broker).await;
    c.send_raw(bytes).await;
    assert!(
        c.is_closed().await,
        "connection stayed open after {:02x?}",
        &bytes[..bytes.len().min(16)]
    );
    still_serving(broker).await;
}

fn frame(body: &[u8]) -> Vec<u8> {
    let mut f = (body.len() as i32).to_be_bytes().to_vec();
    f.extend_from_slice(body);
    f
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn truncated_frame_closes_only_that_connection() {
    let (broker, _dir) = start_broker(&[]).await;
    let mut c = Client::connect(&broker).await;
    let mut f = 100i32.to_be_bytes().to_vec();
    f.extend_from_slice(&[0, 18, 0, 3, 0, 0, 0, 1]); // 8 of the promised 100 bytes
    c.send_raw(&f).await;
    c.stream.shutdown().await.ok();
    assert!(c.is_closed().await);
    still_serving(&broker).await;
    broker.shutdown().await;
}

use tokio::io::AsyncWriteExt;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversize_negative_garbage_unknown_api_tls_all_close() {
    let (broker, _dir) = start_broker(&[]).await;
    // Larger than socket.request.max.bytes (100 MiB): closed before allocating.
    closes_then_serves(&broker, &(200i32 << 20).to_be_bytes()).await;
    // Negative length.
    closes_then_serves(&broker, &(-5i32).to_be_bytes()).await;
    // Too short for a header.
    closes_then_serves(&broker, &frame(&[1, 2, 3])).await;
    // Unknown API key 999.
    closes_then_serves(&broker, &frame(&[0x03, 0xe7, 0, 0, 0, 0, 0, 1, 0xff, 0xff])).await;
    // A known but unimplemented API (EndTxn = 26).
    closes_then_serves(&broker, &frame(&[0, 26, 0, 0, 0, 0, 0, 1, 0xff, 0xff])).await;
    // Garbage body for a real API (Fetch v4 with random bytes).
    closes_then_serves(
        &broker,
        &frame(&[0, 1, 0, 4, 0, 0, 0, 1, 0xff, 0xff, 0xde, 0xad, 0xbe, 0xef]),
    )
    .await;
    // A TLS 1.2 ClientHello start on the plaintext port.
    closes_then_serves(
        &broker,
        &[
            0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc, 0x03, 0x03,
        ],
    )
    .await;
    broker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn too_new_api_versions_gets_unsupported_version_with_a_v0_body() {
    let (broker, _dir) = start_broker(&[]).await;
    let mut c = Client::connect(&broker).await;
    // ApiVersions v99, header v2-shaped; only the correlation id matters to the broker.
    c.send_raw(&frame(&[0, 18, 0, 99, 0, 0, 0, 42, 0xff, 0xff, 0]))
        .await;
    let (id, r): (i32, ApiVersionsResponse) = c.recv(ApiKey::ApiVersions, 0).await;
    assert_eq!(id, 42);
    assert_eq!(r.error_code, 35);
    let produce = r.api_keys.iter().find(|k| k.api_key == 0).unwrap();
    assert_eq!((produce.min_version, produce.max_version), (0, 13));
    still_serving(&broker).await;
    broker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn produce_v2_gets_unsupported_version() {
    let (broker, _dir) = start_broker(&[]).await;
    let mut c = Client::connect(&broker).await;
    let mut b = BytesMut::new();
    b.put_slice(&[0, 0, 0, 2, 0, 0, 0, 5, 0xff, 0xff]); // Produce v2, corr 5, null client id
    b.put_i16(1); // acks
    b.put_i32(1000);
    b.put_i32(1);
    b.put_i16(1);
    b.put_slice(b"t");
    b.put_i32(1);
    b.put_i32(0);
    b.put_i32(-1); // null records
    c.send_raw(&frame(&b)).await;
    let f = c.read_frame().await.expect("a response");
    assert_eq!(&f[0..4], &5i32.to_be_bytes());
    // [corr][topics=1]["t"][partitions=1][index 0][error 35]
    assert_eq!(&f[4..8], &1i32.to_be_bytes());
    assert_eq!(&f[19..21], &35i16.to_be_bytes());
    broker.shutdown().await;
}

async fn create_topic(c: &mut Client, name: &str) {
    let topic = kafka_protocol::messages::create_topics_request::CreatableTopic::default()
        .with_name(TopicName(StrBytes::from_string(name.into())))
        .with_num_partitions(1)
        .with_replication_factor(1);
    c.send(
        ApiKey::CreateTopics,
        7,
        &CreateTopicsRequest::default()
            .with_topics(vec![topic])
            .with_timeout_ms(5000),
    )
    .await;
    let (_, r): (i32, CreateTopicsResponse) = c.recv(ApiKey::CreateTopics, 7).await;
    assert_eq!(r.topics[0].error_code, 0, "{:?}", r.topics[0].error_message);
}

fn produce_request(topic: &str, records: bytes::Bytes) -> ProduceRequest {
    ProduceRequest::default()
        .with_acks(-1)
        .with_timeout_ms(5000)
        .with_topic_data(vec![TopicProduceData::default()
            .with_name(TopicName(StrBytes::from_string(topic.into())))
            .with_partition_data(vec![PartitionProduceData::default()
                .with_index(0)
                .with_records(Some(records))])])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corrupt_crc_and_wrong_record_count_get_partition_errors() {
    let (broker, _dir) = start_broker(&[]).await;
    let mut c = Client::connect(&broker).await;
    create_topic(&mut c, "bad").await;
    let good = batch(&[("k", "v"), ("k2", "v2")], None);

    let mut corrupt = good.to_vec();
    let last = corrupt.len() - 1;
    corrupt[last] ^= 0xff; // inside the CRC-covered records
    c.send(ApiKey::Produce, 9, &produce_request("bad", corrupt.into()))
        .await;
    let (_, r): (i32, ProduceResponse) = c.recv(ApiKey::Produce, 9).await;
    let p = &r.responses[0].partition_responses[0];
    assert_eq!(
        p.error_code, 2,
        "CORRUPT_MESSAGE expected, got {} {:?}",
        p.error_code, p.error_message
    );

    // Record count field (offset 57) says 3 but there are 2 records; CRC recomputed so only the
    // count is wrong.
    let mut wrong = good.to_vec();
    wrong[57..61].copy_from_slice(&3i32.to_be_bytes());
    let crc = crc32c_of(&wrong[21..]);
    wrong[17..21].copy_from_slice(&crc.to_be_bytes());
    c.send(ApiKey::Produce, 9, &produce_request("bad", wrong.into()))
        .await;
    let (_, r): (i32, ProduceResponse) = c.recv(ApiKey::Produce, 9).await;
    let p = &r.responses[0].partition_responses[0];
    assert!(
        matches!(p.error_code, 2 | 87),
        "CORRUPT_MESSAGE or INVALID_RECORD expected, got {}",
        p.error_code
    );

    // Huge record count (2^31-1) with a valid CRC: rejected, nothing allocated.
    let mut huge = good.to_vec();
    huge[57..61].copy_from_slice(&i32::MAX.to_be_bytes());
    let crc = crc32c_of(&huge[21..]);
    huge[17..21].copy_from_slice(&crc.to_be_bytes());
    c.send(ApiKey::Produce, 9, &produce_request("bad", huge.into()))
        .await;
    let (_, r): (i32, ProduceResponse) = c.recv(ApiKey::Produce, 9).await;
    assert_ne!(r.responses[0].partition_responses[0].error_code, 0);

    // The same connection still works, and a good batch lands at offset 0.
    c.send(ApiKey::Produce, 9, &produce_request("bad", good))
        .await;
    let (_, r): (i32, ProduceResponse) = c.recv(ApiKey::Produce, 9).await;
    let p = &r.responses[0].partition_responses[0];
    assert_eq!((p.error_code, p.base_offset), (0, 0));
    broker.shutdown().await;
}

/// CRC-32C (Castagnoli), bitwise, to forge batches in tests without another dependency.
fn crc32c_of(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in data {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0x82f6_3b78
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

//! Produce/fetch round trips over a real socket with kafka-protocol's client-side encoding:
//! auto-creation, idempotent produce and duplicates, fetch (including long poll), ListOffsets,
//! pipelining order, acks=0, topic ids (v13), and deletion.

mod common;

use std::time::Duration;

use bytes::Bytes;
use common::{batch, start_broker, Client};
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{
    ApiKey, ApiVersionsRequest, ApiVersionsResponse, DeleteTopicsRequest, DeleteTopicsResponse,
    FetchRequest, FetchResponse, InitProducerIdRequest, InitProducerIdResponse, ListOffsetsRequest,
    ListOffsetsResponse, MetadataRequest, MetadataResponse, ProduceRequest, ProduceResponse,
    TopicName,
};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::records::RecordBatchDecoder;
use uuid::Uuid;

fn name(s: &str) -> TopicName {
    TopicName(StrBytes::from_string(s.into()))
}

fn produce(topic: &str, topic_id: Uuid, acks: i16, records: Bytes) -> ProduceRequest {
    ProduceRequest::default()
        .with_acks(acks)
        .with_timeout_ms(5000)
        .with_topic_data(vec![TopicProduceData::default()
            .with_name(name(topic))
            .with_topic_id(topic_id)
            .with_partition_data(vec![PartitionProduceData::default()
                .with_index(0)
                .with_records(Some(records))])])
}

fn fetch(
    topic: &str,
    topic_id: Uuid,
    offset: i64,
    max_wait_ms: i32,
    min_bytes: i32,
) -> FetchRequest {
    FetchRequest::default()
        .with_max_wait_ms(max_wait_ms)
        .with_min_bytes(min_bytes)
        .with_max_bytes(1 << 20)
        .with_session_epoch(-1)
        .with_topics(vec![FetchTopic::default()
            .with_topic(name(topic))
            .with_topic_id(topic_id)
            .with_partitions(vec![FetchPartition::default()
                .with_partition(0)
                .with_fetch_offset(offset)
                .with_partition_max_bytes(1 << 20)])])
}

fn values(records: &Bytes) -> Vec<String> {
    let mut buf = records.clone();
    let mut out = Vec::new();
    while !buf.is_empty() {
        let set = RecordBatchDecoder::decode(&mut buf).unwrap();
        for r in set.records {
            out.push(String::from_utf8(r.value.unwrap().to_vec()).unwrap());
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn produce_fetch_list_offsets_round_trip() {
    let (broker, _dir) = start_broker(&["num.partitions=1"]).await;
    let mut c = Client::connect(&broker).await;

    // Metadata auto-creates the topic and returns its id.
    let req = MetadataRequest::default()
        .with_topics(Some(vec![
            MetadataRequestTopic::default().with_name(Some(name("rt")))
        ]))
        .with_allow_auto_topic_creation(true);
    c.send(ApiKey::Metadata, 12, &req).await;
    let (_, md): (i32, MetadataResponse) = c.recv(ApiKey::Metadata, 12).await;
    assert_eq!(md.topics[0].error_code, 0);
    assert_eq!(md.topics[0].partitions.len(), 1);
    assert_eq!(md.controller_id.0, 1);
    assert!(md.cluster_id.is_some());
    let topic_id = md.topics[0].topic_id;
    assert!(!topic_id.is_nil());

    // Idempotent producer.
    c.send(
        ApiKey::InitProducerId,
        4,
        &InitProducerIdRequest::default()
            .with_transactional_id(None)
            .with_transaction_timeout_ms(60000),
    )
    .await;
    let (_, pid): (i32, InitProducerIdResponse) = c.recv(ApiKey::InitProducerId, 4).await;
    assert_eq!(pid.error_code, 0);
    let producer = (pid.producer_id.0, pid.producer_epoch, 0);

    let first = batch(&[("a", "v0"), ("b", "v1")], Some(producer));
    c.send(
        ApiKey::Produce,
        9,
        &produce("rt", Uuid::nil(), -1, first.clone()),
    )
    .await;
    let (_, r): (i32, ProduceResponse) = c.recv(ApiKey::Produce, 9).await;
    let p = &r.responses[0].partition_responses[0];
    assert_eq!((p.error_code, p.base_offset), (0, 0));

    // A retry of the same batch is a duplicate: success with the ORIGINAL offset.
    c.send(ApiKey::Produce, 9, &produce("rt", Uuid::nil(), -1, first))
        .await;
    let (_, r): (i32, ProduceResponse) = c.recv(ApiKey::Produce, 9).await;
    let p = &r.responses[0].partition_responses[0];
    assert_eq!((p.error_code, p.base_offset), (0, 0));

    // v13 addresses the topic by id.
    let second = batch(&[("c", "v2")], Some((producer.0, producer.1, 2)));
    c.send(ApiKey::Produce, 13, &produce("", topic_id, 1, second))
        .await;
    let (_, r): (i32, ProduceResponse) = c.recv(ApiKey::Produce, 13).await;
    let p = &r.responses[0].partition_responses[0];
    assert_eq!(
        (p.error_code, p.base_offset),
        (0, 2),
        "{:?}",
        p.error_message
    );

    // Fetch by name (v12) and by id (v13).
    c.send(ApiKey::Fetch, 12, &fetch("rt", Uuid::nil(), 0, 0, 1))
        .await;
    let (_, f): (i32, FetchResponse) = c.recv(ApiKey::Fetch, 12).await;
    let part = &f.responses[0].partitions[0];
    assert_eq!(
        (
            part.error_code,
            part.high_watermark,
            part.last_stable_offset
        ),
        (0, 3, 3)
    );
    assert_eq!(
        values(part.records.as_ref().unwrap()),
        vec!["v0", "v1", "v2"]
    );
    c.send(ApiKey::Fetch, 13, &fetch("", topic_id, 2, 0, 1))
        .await;
    let (_, f): (i32, FetchResponse) = c.recv(ApiKey::Fetch, 13).await;
    assert_eq!(
        values(f.responses[0].partitions[0].records.as_ref().unwrap()),
        vec!["v2"]
    );

    // Out of range.
    c.send(ApiKey::Fetch, 12, &fetch("rt", Uuid::nil(), 99, 0, 1))
        .await;
    let (_, f): (i32, FetchResponse) = c.recv(ApiKey::Fetch, 12).await;
    assert_eq!(f.responses[0].partitions[0].error_code, 1);

    // ListOffsets earliest/latest/max-timestamp/by-timestamp.
    let lo = |ts: i64| {
        ListOffsetsRequest::default()
            .with_replica_id(kafka_protocol::messages::BrokerId(-1))
            .with_topics(vec![ListOffsetsTopic::default()
                .with_name(name("rt"))
                .with_partitions(vec![ListOffsetsPartition::default()
                    .with_partition_index(0)
                    .with_timestamp(ts)])])
    };
    let mut got = Vec::new();
    for ts in [-2, -1, -3, 1_700_000_000_001] {
        c.send(ApiKey::ListOffsets, 7, &lo(ts)).await;
        let (_, r): (i32, ListOffsetsResponse) = c.recv(ApiKey::ListOffsets, 7).await;
        let p = &r.topics[0].partitions[0];
        assert_eq!(p.error_code, 0);
        got.push(p.offset);
    }
    assert_eq!(got[0], 0, "earliest");
    assert_eq!(got[1], 3, "latest");
    assert!(got[2] >= 0, "max timestamp offset");
    assert!(got[3] >= 0 && got[3] <= 1, "by timestamp: {}", got[3]);
    broker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipelined_requests_are_answered_in_order_and_acks_0_gets_no_response() {
    let (broker, _dir) = start_broker(&[]).await;
    let mut c = Client::connect(&broker).await;
    let req = MetadataRequest::default().with_topics(Some(vec![
        MetadataRequestTopic::default().with_name(Some(name("p")))
    ]));
    c.send(ApiKey::Metadata, 9, &req).await;
    let _: (i32, MetadataResponse) = c.recv(ApiKey::Metadata, 9).await;

    // Pipelined: an acks=0 produce, a fetch, an ApiVersions, all sent before reading. They are
    // handled in order (the fetch sees the record) and the acks=0 produce gets no reply.
    let acks0_id = c
        .send(
            ApiKey::Produce,
            9,
            &produce("p", Uuid::nil(), 0, batch(&[("k", "x")], None)),
        )
        .await;
    let fetch_id = c
        .send(ApiKey::Fetch, 11, &fetch("p", Uuid::nil(), 0, 2000, 1))
        .await;
    let versions_id = c
        .send(ApiKey::ApiVersions, 3, &ApiVersionsRequest::default())
        .await;
    assert!(acks0_id < fetch_id && fetch_id < versions_id);
    let (id1, f): (i32, FetchResponse) = c.recv(ApiKey::Fetch, 11).await;
    assert_eq!(id1, fetch_id);
    assert_eq!(
        values(f.responses[0].partitions[0].records.as_ref().unwrap()),
        vec!["x"]
    );
    let (id2, _): (i32, ApiVersionsResponse) = c.recv(ApiKey::ApiVersions, 3).await;
    assert_eq!(id2, versions_id);

    // Long poll: a fetch parked on one connection is woken by an append from another.
    let mut waiter = Client::connect(&broker).await;
    let parked_id = waiter
        .send(ApiKey::Fetch, 11, &fetch("p", Uuid::nil(), 1, 10_000, 1))
        .await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    c.send(
        ApiKey::Produce,
        9,
        &produce("p", Uuid::nil(), 1, batch(&[("k", "y")], None)),
    )
    .await;
    let _: (i32, ProduceResponse) = c.recv(ApiKey::Produce, 9).await;
    let (id3, f): (i32, FetchResponse) = waiter.recv(ApiKey::Fetch, 11).await;
    assert_eq!(id3, parked_id);
    // Had it timed out instead of waking, it would carry the (empty) read from before the append.
    assert_eq!(
        values(f.responses[0].partitions[0].records.as_ref().unwrap()),
        vec!["y"]
    );
    broker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_poll_times_out_with_nothing_and_delete_topic_removes_it() {
    let (broker, _dir) = start_broker(&[]).await;
    let mut c = Client::connect(&broker).await;
    let req = MetadataRequest::default().with_topics(Some(vec![
        MetadataRequestTopic::default().with_name(Some(name("d")))
    ]));
    c.send(ApiKey::Metadata, 9, &req).await;
    let _: (i32, MetadataResponse) = c.recv(ApiKey::Metadata, 9).await;
    let started = tokio::time::Instant::now();
    c.send(ApiKey::Fetch, 11, &fetch("d", Uuid::nil(), 0, 300, 1))
        .await;
    let (_, f): (i32, FetchResponse) = c.recv(ApiKey::Fetch, 11).await;
    assert!(
        started.elapsed() >= Duration::from_millis(250),
        "returned before max_wait"
    );
    assert_eq!(
        f.responses[0].partitions[0]
            .records
            .as_ref()
            .map_or(0, |r| r.len()),
        0
    );

    c.send(
        ApiKey::DeleteTopics,
        4,
        &DeleteTopicsRequest::default().with_topic_names(vec![name("d"), name("nope")]),
    )
    .await;
    let (_, d): (i32, DeleteTopicsResponse) = c.recv(ApiKey::DeleteTopics, 4).await;
    assert_eq!(d.responses[0].error_code, 0);
    assert_eq!(d.responses[1].error_code, 3);
    let req = MetadataRequest::default()
        .with_topics(Some(vec![
            MetadataRequestTopic::default().with_name(Some(name("d")))
        ]))
        .with_allow_auto_topic_creation(false);
    c.send(ApiKey::Metadata, 9, &req).await;
    let (_, md): (i32, MetadataResponse) = c.recv(ApiKey::Metadata, 9).await;
    assert_eq!(md.topics[0].error_code, 3);
    broker.shutdown().await;
}

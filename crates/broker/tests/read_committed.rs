//! read_committed over a real socket (issue 16): Fetch isolation_level 1 stops at the last
//! stable offset and lists the aborted transactions overlapping what it returns, both levels
//! report the LSO, a parked read_committed fetch wakes when a marker moves the LSO, and
//! ListOffsets latest is the LSO for read_committed. The transactional batches go into the
//! partition's log directly (as the verified produce path writes them; the coordinator-driven
//! path is tests/transactions.rs) and the markers through the leader's marker path
//! (`Partition::append_marker_as_leader`) or over the wire with WriteTxnMarkers; everything
//! read is read over the wire.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{batch, start_broker, Client};
use josefine::clock::now_ms;
use josefine::partitions::Partition;
use josefine::server::RunningBroker;
use josefine_log::batch::BatchHeader;
use josefine_log::testkit::BatchBuilder;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::write_txn_markers_request::{
    WritableTxnMarker, WritableTxnMarkerTopic,
};
use kafka_protocol::messages::{
    ApiKey, ApiVersionsRequest, ApiVersionsResponse, BrokerId, FetchRequest, FetchResponse,
    ListOffsetsRequest, ListOffsetsResponse, MetadataRequest, MetadataResponse, ProduceRequest,
    ProduceResponse, ProducerId, TopicName, WriteTxnMarkersRequest, WriteTxnMarkersResponse,
};
use kafka_protocol::protocol::StrBytes;

const TOPIC: &str = "rc";

fn name() -> TopicName {
    TopicName(StrBytes::from_static_str(TOPIC))
}

fn fetch(offset: i64, isolation_level: i8, max_wait_ms: i32) -> FetchRequest {
    FetchRequest::default()
        .with_max_wait_ms(max_wait_ms)
        .with_min_bytes(1)
        .with_max_bytes(1 << 20)
        .with_isolation_level(isolation_level)
        .with_session_epoch(-1)
        .with_topics(vec![FetchTopic::default()
            .with_topic(name())
            .with_partitions(vec![FetchPartition::default()
                .with_partition(0)
                .with_current_leader_epoch(-1)
                .with_fetch_offset(offset)
                .with_partition_max_bytes(1 << 20)])])
}

/// What one partition of a Fetch answered.
#[derive(Debug, PartialEq, Eq)]
struct Answer {
    error: i16,
    high_watermark: i64,
    last_stable_offset: i64,
    /// (base offset, last offset) of every batch returned.
    batches: Vec<(i64, i64)>,
    /// (producer id, first offset); None when the field is null (read_uncommitted).
    aborted: Option<Vec<(i64, i64)>>,
}

async fn fetched(c: &mut Client, request: FetchRequest) -> Answer {
    c.send(ApiKey::Fetch, 12, &request).await;
    let (_, f): (i32, FetchResponse) = c.recv(ApiKey::Fetch, 12).await;
    let p = &f.responses[0].partitions[0];
    let records = p.records.clone().unwrap_or_default();
    let mut batches = Vec::new();
    let mut at = 0;
    while at < records.len() {
        let h = BatchHeader::parse(&records[at..]).unwrap();
        batches.push((h.base_offset, h.last_offset()));
        at += h.total_bytes();
    }
    Answer {
        error: p.error_code,
        high_watermark: p.high_watermark,
        last_stable_offset: p.last_stable_offset,
        batches,
        aborted: p.aborted_transactions.as_ref().map(|a| {
            a.iter()
                .map(|t| (t.producer_id.0, t.first_offset))
                .collect()
        }),
    }
}

async fn latest(c: &mut Client, isolation_level: i8) -> i64 {
    let req = ListOffsetsRequest::default()
        .with_replica_id(BrokerId(-1))
        .with_isolation_level(isolation_level)
        .with_topics(vec![ListOffsetsTopic::default()
            .with_name(name())
            .with_partitions(vec![ListOffsetsPartition::default()
                .with_partition_index(0)
                .with_current_leader_epoch(-1)
                .with_timestamp(-1)])]);
    c.send(ApiKey::ListOffsets, 7, &req).await;
    let (_, r): (i32, ListOffsetsResponse) = c.recv(ApiKey::ListOffsets, 7).await;
    let p = &r.topics[0].partitions[0];
    assert_eq!(p.error_code, 0);
    p.offset
}

async fn produce_plain(c: &mut Client, value: &str) -> i64 {
    let req = ProduceRequest::default()
        .with_acks(1)
        .with_timeout_ms(5000)
        .with_topic_data(vec![TopicProduceData::default()
            .with_name(name())
            .with_partition_data(vec![PartitionProduceData::default()
                .with_index(0)
                .with_records(Some(batch(&[("k", value)], None)))])]);
    c.send(ApiKey::Produce, 9, &req).await;
    let (_, r): (i32, ProduceResponse) = c.recv(ApiKey::Produce, 9).await;
    let p = &r.responses[0].partition_responses[0];
    assert_eq!(p.error_code, 0, "{:?}", p.error_message);
    p.base_offset
}

/// The partition and the leader epoch it is led at.
async fn partition(broker: &RunningBroker, c: &mut Client) -> (Arc<Partition>, i32) {
    let req = MetadataRequest::default()
        .with_topics(Some(vec![
            MetadataRequestTopic::default().with_name(Some(name()))
        ]))
        .with_allow_auto_topic_creation(true);
    c.send(ApiKey::Metadata, 12, &req).await;
    let (_, md): (i32, MetadataResponse) = c.recv(ApiKey::Metadata, 12).await;
    assert_eq!(md.topics[0].error_code, 0);
    let image = broker.broker.metadata.image();
    let topic = image.topic_by_name(TOPIC).unwrap();
    let epoch = image.partition(topic.topic_id, 0).unwrap().leader_epoch;
    (
        broker.broker.partitions.get(topic.topic_id, 0).unwrap(),
        epoch,
    )
}

/// A transactional batch of `n` records from `pid`, written as the leader would.
fn transactional(p: &Partition, pid: i64, seq: i32, n: usize, leader_epoch: i32) -> i64 {
    let b = BatchBuilder::new(1_700_000_000_000)
        .records(n)
        .producer(pid, 0, seq)
        .attributes_extra(0x10)
        .build();
    p.log
        .append_allowing_transactions(&b, leader_epoch, now_ms())
        .unwrap()
        .base_offset
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_committed_stops_at_the_lso_and_reports_aborted_transactions() {
    let (broker, _dir) = start_broker(&["num.partitions=1"]).await;
    let mut c = Client::connect(&broker).await;
    let (p, epoch) = partition(&broker, &mut c).await;

    assert_eq!(produce_plain(&mut c, "a").await, 0);
    assert_eq!(transactional(&p, 100, 0, 2, epoch), 1); // 1..=2, open
    assert_eq!(produce_plain(&mut c, "b").await, 3); // the high watermark passes the open txn

    // read_committed: only below the LSO (the open transaction's first offset).
    let committed = fetched(&mut c, fetch(0, 1, 0)).await;
    assert_eq!(
        committed,
        Answer {
            error: 0,
            high_watermark: 4,
            last_stable_offset: 1,
            batches: vec![(0, 0)],
            aborted: Some(vec![]),
        }
    );
    // read_uncommitted: everything below the high watermark, and the same LSO reported.
    let uncommitted = fetched(&mut c, fetch(0, 0, 0)).await;
    assert_eq!(uncommitted.batches, vec![(0, 0), (1, 2), (3, 3)]);
    assert_eq!(
        (uncommitted.last_stable_offset, uncommitted.aborted),
        (1, None)
    );
    assert_eq!(latest(&mut c, 1).await, 1);
    assert_eq!(latest(&mut c, 0).await, 4);

    // A read_committed fetch at the LSO parks; the abort marker moves the high watermark and
    // with it the LSO, which wakes it.
    let waiter = {
        let mut w = Client::connect(&broker).await;
        tokio::spawn(async move {
            let started = Instant::now();
            let answer = fetched(&mut w, fetch(1, 1, 8_000)).await;
            (answer, started.elapsed())
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        !waiter.is_finished(),
        "nothing committed yet: the fetch waits"
    );
    let at = p
        .append_marker_as_leader(100, 0, 0, false, epoch, now_ms())
        .unwrap();
    assert_eq!(at.base_offset, 4);
    let (answer, waited) = waiter.await.unwrap();
    assert!(
        waited < Duration::from_secs(5),
        "woken by the LSO move, not the timeout: {waited:?}"
    );
    assert_eq!(
        answer,
        Answer {
            error: 0,
            high_watermark: 5,
            last_stable_offset: 5,
            batches: vec![(1, 2), (3, 3), (4, 4)],
            aborted: Some(vec![(100, 1)]),
        }
    );
    assert_eq!(latest(&mut c, 1).await, 5);

    // A committed transaction is reported nowhere; the abort only where it overlaps.
    assert_eq!(transactional(&p, 200, 0, 1, epoch), 5);
    p.append_marker_as_leader(200, 0, 0, true, epoch, now_ms())
        .unwrap();
    let later = fetched(&mut c, fetch(5, 1, 0)).await;
    assert_eq!(
        (later.last_stable_offset, later.batches, later.aborted),
        (7, vec![(5, 5), (6, 6)], Some(vec![]))
    );
    let whole = fetched(&mut c, fetch(0, 1, 0)).await;
    assert_eq!(whole.batches.len(), 6);
    assert_eq!(whole.aborted, Some(vec![(100, 1)]));
    let inside = fetched(&mut c, fetch(3, 1, 0)).await;
    assert_eq!(
        inside.aborted,
        Some(vec![(100, 1)]),
        "the marker at 4 is fetched"
    );
    // A stale coordinator epoch is fenced at the leader; nothing is written.
    let e = p
        .append_marker_as_leader(200, 0, -1, true, epoch, now_ms())
        .unwrap_err();
    assert_eq!(e.error_code(), 52);
    assert_eq!(latest(&mut c, 0).await, 7);
    broker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_transactions_read_committed_sees_what_read_uncommitted_sees() {
    let (broker, _dir) = start_broker(&["num.partitions=1"]).await;
    let mut c = Client::connect(&broker).await;
    let _ = partition(&broker, &mut c).await;
    for v in ["a", "b", "c"] {
        produce_plain(&mut c, v).await;
    }
    let committed = fetched(&mut c, fetch(0, 1, 0)).await;
    let uncommitted = fetched(&mut c, fetch(0, 0, 0)).await;
    assert_eq!(committed.batches, uncommitted.batches);
    assert_eq!(
        (committed.high_watermark, committed.last_stable_offset),
        (3, 3)
    );
    assert_eq!(uncommitted.last_stable_offset, 3);
    assert_eq!(latest(&mut c, 1).await, latest(&mut c, 0).await);
    broker.shutdown().await;
}

/// One WriteTxnMarkers v1 marker for partition 0 of each of `topics`.
fn markers(pid: i64, coordinator_epoch: i32, commit: bool, topics: &[&str]) -> WritableTxnMarker {
    WritableTxnMarker::default()
        .with_producer_id(ProducerId(pid))
        .with_producer_epoch(0)
        .with_transaction_result(commit)
        .with_coordinator_epoch(coordinator_epoch)
        .with_topics(
            topics
                .iter()
                .map(|t| {
                    WritableTxnMarkerTopic::default()
                        .with_name(TopicName(StrBytes::from_string(t.to_string())))
                        .with_partition_indexes(vec![0])
                })
                .collect(),
        )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn write_txn_markers_is_served_at_the_leader_and_advertised() {
    let (broker, _dir) = start_broker(&["num.partitions=1"]).await;
    let mut c = Client::connect(&broker).await;
    let (p, epoch) = partition(&broker, &mut c).await;
    c.send(ApiKey::ApiVersions, 3, &ApiVersionsRequest::default())
        .await;
    let (_, versions): (i32, ApiVersionsResponse) = c.recv(ApiKey::ApiVersions, 3).await;
    // Listed as Kafka lists it on the broker listener (v1 only).
    let listed = versions.api_keys.iter().find(|k| k.api_key == 27).unwrap();
    assert_eq!((listed.min_version, listed.max_version), (1, 1));

    assert_eq!(transactional(&p, 300, 0, 2, epoch), 0); // 0..=1
    produce_plain(&mut c, "a").await; // 2
    assert_eq!(latest(&mut c, 1).await, 0);
    let req = WriteTxnMarkersRequest::default().with_markers(vec![
        markers(300, 4, false, &[TOPIC, "no-such-topic"]),
        markers(300, 3, true, &[TOPIC]),
    ]);
    c.send(ApiKey::WriteTxnMarkers, 1, &req).await;
    let (_, r): (i32, WriteTxnMarkersResponse) = c.recv(ApiKey::WriteTxnMarkers, 1).await;
    let codes: Vec<Vec<i16>> = r
        .markers
        .iter()
        .map(|m| {
            m.topics
                .iter()
                .map(|t| t.partitions[0].error_code)
                .collect()
        })
        .collect();
    // Written (answered once the high watermark covers it); unknown topic; then an older
    // coordinator epoch is fenced.
    assert_eq!(codes, vec![vec![0, 3], vec![52]]);
    assert_eq!(r.markers[0].producer_id.0, 300);
    let after = fetched(&mut c, fetch(0, 1, 0)).await;
    assert_eq!(after.last_stable_offset, 4);
    assert_eq!(after.batches, vec![(0, 1), (2, 2), (3, 3)]);
    assert_eq!(after.aborted, Some(vec![(300, 0)]));
    broker.shutdown().await;
}

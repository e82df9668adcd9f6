//! The background maintenance thread in-process: retention runs on its own schedule and the
//! thread stops at shutdown even in the middle of an hour-long backoff. (The end-to-end
//! retention and compaction checks with real clients are tests/integration/test_retention.py.)

mod common;

use std::time::{Duration, Instant};

use common::{batch, start_broker, Client};
use kafka_protocol::messages::create_topics_request::{CreatableTopic, CreatableTopicConfig};
use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{
    ApiKey, CreateTopicsRequest, CreateTopicsResponse, ListOffsetsRequest, ListOffsetsResponse,
    ProduceRequest, ProduceResponse, TopicName,
};
use kafka_protocol::protocol::StrBytes;

fn name(s: &str) -> TopicName {
    TopicName(StrBytes::from_string(s.into()))
}

fn config(k: &str, v: &str) -> CreatableTopicConfig {
    CreatableTopicConfig::default()
        .with_name(StrBytes::from_string(k.into()))
        .with_value(Some(StrBytes::from_string(v.into())))
}

async fn earliest(c: &mut Client, topic: &str) -> i64 {
    let req = ListOffsetsRequest::default().with_topics(vec![ListOffsetsTopic::default()
        .with_name(name(topic))
        .with_partitions(vec![ListOffsetsPartition::default()
            .with_partition_index(0)
            .with_timestamp(-2)])]);
    c.send(ApiKey::ListOffsets, 7, &req).await;
    let (_, r): (i32, ListOffsetsResponse) = c.recv(ApiKey::ListOffsets, 7).await;
    let p = &r.topics[0].partitions[0];
    assert_eq!(p.error_code, 0);
    p.offset
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_runs_on_the_check_interval() {
    let (broker, _dir) = start_broker(&["log.retention.check.interval.ms=100"]).await;
    let mut c = Client::connect(&broker).await;
    let req = CreateTopicsRequest::default()
        .with_timeout_ms(5000)
        .with_topics(vec![CreatableTopic::default()
            .with_name(name("old"))
            .with_num_partitions(1)
            .with_replication_factor(1)
            .with_configs(vec![config("retention.ms", "60000")])]);
    c.send(ApiKey::CreateTopics, 7, &req).await;
    let (_, r): (i32, CreateTopicsResponse) = c.recv(ApiKey::CreateTopics, 7).await;
    assert_eq!(r.topics[0].error_code, 0);

    // The test batches carry 2023 timestamps: older than retention.ms the moment they land.
    let produce = ProduceRequest::default()
        .with_acks(1)
        .with_timeout_ms(5000)
        .with_topic_data(vec![TopicProduceData::default()
            .with_name(name("old"))
            .with_partition_data(vec![PartitionProduceData::default()
                .with_index(0)
                .with_records(Some(batch(&[("k", "a"), ("k", "b")], None)))])]);
    c.send(ApiKey::Produce, 9, &produce).await;
    let (_, r): (i32, ProduceResponse) = c.recv(ApiKey::Produce, 9).await;
    assert_eq!(r.responses[0].partition_responses[0].error_code, 0);

    let deadline = Instant::now() + Duration::from_secs(30);
    while earliest(&mut c, "old").await != 2 {
        assert!(
            Instant::now() < deadline,
            "retention did not run within 30 s"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    broker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_interrupts_an_hour_long_backoff() {
    let (broker, _dir) = start_broker(&[
        "log.retention.check.interval.ms=3600000",
        "log.cleaner.backoff.ms=3600000",
    ])
    .await;
    // Let the thread reach its first sleep.
    tokio::time::sleep(Duration::from_millis(200)).await;
    tokio::time::timeout(Duration::from_secs(20), broker.shutdown())
        .await
        .expect("shutdown waited for the maintenance thread's backoff");
}

/// `replica.high.watermark.checkpoint.interval.ms`: the data directory's
/// `replication-offset-checkpoint` (Kafka's format) follows every partition's high watermark.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn high_watermarks_are_checkpointed_on_the_interval() {
    let (broker, dir) = start_broker(&["replica.high.watermark.checkpoint.interval.ms=100"]).await;
    let mut c = Client::connect(&broker).await;
    let req = CreateTopicsRequest::default()
        .with_timeout_ms(5000)
        .with_topics(vec![CreatableTopic::default()
            .with_name(name("hw"))
            .with_num_partitions(2)
            .with_replication_factor(1)]);
    c.send(ApiKey::CreateTopics, 7, &req).await;
    let (_, r): (i32, CreateTopicsResponse) = c.recv(ApiKey::CreateTopics, 7).await;
    assert_eq!(r.topics[0].error_code, 0);
    let produce = ProduceRequest::default()
        .with_acks(1)
        .with_timeout_ms(5000)
        .with_topic_data(vec![TopicProduceData::default()
            .with_name(name("hw"))
            .with_partition_data(vec![PartitionProduceData::default()
                .with_index(1)
                .with_records(Some(batch(
                    &[("k", "a"), ("k", "b"), ("k", "c")],
                    None,
                )))])]);
    c.send(ApiKey::Produce, 9, &produce).await;
    let (_, r): (i32, ProduceResponse) = c.recv(ApiKey::Produce, 9).await;
    assert_eq!(r.responses[0].partition_responses[0].error_code, 0);

    let path = dir
        .path()
        .join(josefine_log::HIGH_WATERMARK_CHECKPOINT_FILE);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let text = std::fs::read_to_string(&path).unwrap_or_default();
        let mut lines: Vec<&str> = text.lines().collect();
        if lines.len() >= 2 && lines[..2] == ["0", "2"] {
            lines[2..].sort();
            if lines[2..] == ["hw 0 0", "hw 1 3"] {
                break;
            }
        }
        assert!(
            Instant::now() < deadline,
            "no checkpoint with both partitions within 30 s: {text:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    broker.shutdown().await;
}

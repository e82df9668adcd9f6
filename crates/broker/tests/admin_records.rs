//! DeleteRecords, DescribeCluster, DescribeLogDirs and ListPartitionReassignments edge cases
//! over a real socket: the answers the Java tools and librdkafka never provoke (endpoint
//! types, internal topics, negative offsets, unknown partitions in filters), checked against
//! Kafka 4.1.2's handler code (see each handler's doc).

mod common;

use std::time::{Duration, Instant};

use common::{start_broker, Client};
use kafka_protocol::messages::create_topics_request::CreatableTopic;
use kafka_protocol::messages::delete_records_request::{
    DeleteRecordsPartition, DeleteRecordsTopic,
};
use kafka_protocol::messages::describe_log_dirs_request::DescribableLogDirTopic;
use kafka_protocol::messages::list_partition_reassignments_request::ListPartitionReassignmentsTopics;
use kafka_protocol::messages::{
    ApiKey, BrokerId, CreateTopicsRequest, CreateTopicsResponse, DeleteRecordsRequest,
    DeleteRecordsResponse, DescribeClusterRequest, DescribeClusterResponse, DescribeLogDirsRequest,
    DescribeLogDirsResponse, FindCoordinatorRequest, FindCoordinatorResponse,
    ListPartitionReassignmentsRequest, ListPartitionReassignmentsResponse, TopicName,
};
use kafka_protocol::protocol::StrBytes;

fn name(s: &str) -> TopicName {
    TopicName(StrBytes::from_string(s.into()))
}

async fn create(c: &mut Client, topic: &str, partitions: i32) {
    let req = CreateTopicsRequest::default()
        .with_topics(vec![CreatableTopic::default()
            .with_name(name(topic))
            .with_num_partitions(partitions)
            .with_replication_factor(1)])
        .with_timeout_ms(5000);
    c.send(ApiKey::CreateTopics, 7, &req).await;
    let (_, r): (i32, CreateTopicsResponse) = c.recv(ApiKey::CreateTopics, 7).await;
    assert_eq!(r.topics[0].error_code, 0);
}

async fn describe_cluster(
    c: &mut Client,
    version: i16,
    req: DescribeClusterRequest,
) -> DescribeClusterResponse {
    c.send(ApiKey::DescribeCluster, version, &req).await;
    c.recv(ApiKey::DescribeCluster, version).await.1
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn describe_cluster_brokers_controller_and_endpoint_types() {
    let (broker, _dir) = start_broker(&[]).await;
    let mut c = Client::connect(&broker).await;
    let port = i32::from(broker.local_addr.port());

    let r = describe_cluster(&mut c, 2, DescribeClusterRequest::default()).await;
    assert_eq!(r.error_code, 0);
    assert_eq!(r.endpoint_type, 1);
    assert_eq!(r.controller_id, BrokerId(1));
    assert!(!r.cluster_id.is_empty());
    let brokers: Vec<_> = r
        .brokers
        .iter()
        .map(|b| (b.broker_id, b.host.to_string(), b.port, b.is_fenced))
        .collect();
    assert_eq!(
        brokers,
        vec![(BrokerId(1), "127.0.0.1".to_string(), port, false)]
    );
    assert_eq!(r.cluster_authorized_operations, i32::MIN, "not asked for");

    let asked = DescribeClusterRequest::default().with_include_cluster_authorized_operations(true);
    let r = describe_cluster(&mut c, 0, asked).await;
    // CREATE, ALTER, DESCRIBE, CLUSTER_ACTION, DESCRIBE_CONFIGS, ALTER_CONFIGS, IDEMPOTENT_WRITE.
    assert_eq!(r.cluster_authorized_operations, 8096);

    let controllers = DescribeClusterRequest::default().with_endpoint_type(2);
    let r = describe_cluster(&mut c, 1, controllers).await;
    assert_eq!((r.error_code, r.controller_id), (114, BrokerId(-1)));
    assert!(r.brokers.is_empty());
    let unknown = DescribeClusterRequest::default().with_endpoint_type(7);
    assert_eq!(describe_cluster(&mut c, 2, unknown).await.error_code, 115);
    broker.shutdown().await;
}

fn delete_request(topics: &[(&str, &[(i32, i64)])]) -> DeleteRecordsRequest {
    DeleteRecordsRequest::default()
        .with_timeout_ms(5000)
        .with_topics(
            topics
                .iter()
                .map(|(t, parts)| {
                    DeleteRecordsTopic::default()
                        .with_name(name(t))
                        .with_partitions(
                            parts
                                .iter()
                                .map(|(p, o)| {
                                    DeleteRecordsPartition::default()
                                        .with_partition_index(*p)
                                        .with_offset(*o)
                                })
                                .collect(),
                        )
                })
                .collect(),
        )
}

/// (topic, partition, low watermark, error) for every answered partition.
async fn delete_records(c: &mut Client, req: DeleteRecordsRequest) -> Vec<(String, i32, i64, i16)> {
    c.send(ApiKey::DeleteRecords, 2, &req).await;
    let (_, r): (i32, DeleteRecordsResponse) = c.recv(ApiKey::DeleteRecords, 2).await;
    r.topics
        .iter()
        .flat_map(|t| {
            t.partitions.iter().map(|p| {
                (
                    t.name.0.to_string(),
                    p.partition_index,
                    p.low_watermark,
                    p.error_code,
                )
            })
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delete_records_errors_per_partition() {
    let (broker, _dir) = start_broker(&[]).await;
    let mut c = Client::connect(&broker).await;
    create(&mut c, "t", 2).await;
    let answered = delete_records(
        &mut c,
        delete_request(&[("t", &[(0, 0), (1, -1), (2, 0)]), ("nope", &[(0, 0)])]),
    )
    .await;
    assert_eq!(
        answered,
        vec![
            ("t".to_string(), 0, 0, 0),
            ("t".to_string(), 1, 0, 0),
            ("t".to_string(), 2, -1, 3),
            ("nope".to_string(), 0, -1, 3),
        ]
    );
    // Past the high watermark (0) or negative other than -1: OFFSET_OUT_OF_RANGE.
    let answered = delete_records(&mut c, delete_request(&[("t", &[(0, 1), (1, -2)])])).await;
    assert_eq!(
        answered,
        vec![("t".to_string(), 0, -1, 1), ("t".to_string(), 1, -1, 1)]
    );

    // Internal topics are refused (INVALID_TOPIC_EXCEPTION) once they exist: FindCoordinator
    // creates __consumer_offsets.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let req = FindCoordinatorRequest::default().with_key(StrBytes::from_static_str("g"));
        c.send(ApiKey::FindCoordinator, 3, &req).await;
        let (_, r): (i32, FindCoordinatorResponse) = c.recv(ApiKey::FindCoordinator, 3).await;
        if r.error_code == 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no group coordinator: {}",
            r.error_code
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let answered = delete_records(
        &mut c,
        delete_request(&[("__consumer_offsets", &[(0, -1)])]),
    )
    .await;
    assert_eq!(
        answered,
        vec![("__consumer_offsets".to_string(), 0, -1, 17)]
    );
    broker.shutdown().await;
}

/// Partition names ("topic-p") per log dir, and the v4 volume sizes.
async fn describe_log_dirs(
    c: &mut Client,
    version: i16,
    topics: Option<Vec<(&str, Vec<i32>)>>,
) -> (Vec<Vec<String>>, Vec<(i64, i64)>) {
    let req = DescribeLogDirsRequest::default().with_topics(topics.map(|ts| {
        ts.into_iter()
            .map(|(t, ps)| {
                DescribableLogDirTopic::default()
                    .with_topic(name(t))
                    .with_partitions(ps)
            })
            .collect()
    }));
    c.send(ApiKey::DescribeLogDirs, version, &req).await;
    let (_, r): (i32, DescribeLogDirsResponse) = c.recv(ApiKey::DescribeLogDirs, version).await;
    assert_eq!(r.error_code, 0);
    let names = r
        .results
        .iter()
        .map(|d| {
            assert_eq!(d.error_code, 0);
            assert!(
                d.log_dir.starts_with('/'),
                "absolute log dir: {}",
                d.log_dir.as_str()
            );
            d.topics
                .iter()
                .flat_map(|t| {
                    t.partitions
                        .iter()
                        .map(move |p| format!("{}-{}", t.name.0, p.partition_index))
                })
                .collect()
        })
        .collect();
    let volumes = r
        .results
        .iter()
        .map(|d| (d.total_bytes, d.usable_bytes))
        .collect();
    (names, volumes)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn describe_log_dirs_filters_and_volume_sizes() {
    let (broker, _dir) = start_broker(&[]).await;
    let mut c = Client::connect(&broker).await;
    create(&mut c, "a", 2).await;
    create(&mut c, "b", 1).await;

    let (names, volumes) = describe_log_dirs(&mut c, 4, None).await;
    assert_eq!(names, vec![vec!["a-0", "a-1", "b-0"]]);
    let [(total, usable)] = volumes[..] else {
        panic!("one log dir: {volumes:?}")
    };
    assert!(
        total > 0 && usable >= 0 && usable <= total,
        "{total} {usable}"
    );

    // Named partitions that are not hosted (a-7, nope-0) are absent, and so is a topic with
    // none listed.
    let filter = Some(vec![("a", vec![1, 7]), ("nope", vec![0]), ("b", vec![])]);
    let (names, _) = describe_log_dirs(&mut c, 1, filter).await;
    assert_eq!(names, vec![vec!["a-1"]]);
    broker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_partition_reassignments_is_empty() {
    let (broker, _dir) = start_broker(&[]).await;
    let mut c = Client::connect(&broker).await;
    create(&mut c, "a", 1).await;
    for topics in [
        None,
        Some(vec![
            ListPartitionReassignmentsTopics::default()
                .with_name(name("a"))
                .with_partition_indexes(vec![0, 3]),
            ListPartitionReassignmentsTopics::default()
                .with_name(name("nope"))
                .with_partition_indexes(vec![0]),
        ]),
    ] {
        let req = ListPartitionReassignmentsRequest::default()
            .with_timeout_ms(5000)
            .with_topics(topics);
        c.send(ApiKey::ListPartitionReassignments, 0, &req).await;
        let (_, r): (i32, ListPartitionReassignmentsResponse) =
            c.recv(ApiKey::ListPartitionReassignments, 0).await;
        assert_eq!(r.error_code, 0);
        assert!(r.topics.is_empty());
    }
    broker.shutdown().await;
}

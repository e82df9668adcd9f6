//! Leadership from the image, over a real socket: a broker (node 1) whose image also holds a
//! live node 2 and a fenced node 3 serves only the partitions the image says it leads, checks
//! client leader epochs, stamps the image's leader epoch, and describes the cluster (Metadata,
//! DescribeCluster, DescribeTopicPartitions, FindCoordinator) as the image states it.
//! The image is driven directly through the broker's metadata store, as a controller would
//! drive it: registrations, a topic placed over the three nodes, leader changes, a fencing.

mod common;

use bytes::Bytes;
use common::{batch, start_broker, Client};
use josefine::server::RunningBroker;
use josefine_meta::{Command, PartitionAssignment, TopicId};
use kafka_protocol::messages::delete_records_request::{
    DeleteRecordsPartition, DeleteRecordsTopic,
};
use kafka_protocol::messages::describe_topic_partitions_request::TopicRequest;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{
    ApiKey, BrokerId, DeleteRecordsRequest, DeleteRecordsResponse, DescribeClusterRequest,
    DescribeClusterResponse, DescribeTopicPartitionsRequest, DescribeTopicPartitionsResponse,
    FetchRequest, FetchResponse, FindCoordinatorRequest, FindCoordinatorResponse,
    ListOffsetsRequest, ListOffsetsResponse, MetadataRequest, MetadataResponse, ProduceRequest,
    ProduceResponse, TopicName,
};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::records::RecordBatchDecoder;

const TOPIC: &str = "spread";
const TOPIC_ID: TopicId = TopicId([0x51; 16]);
const NOT_LEADER_OR_FOLLOWER: i16 = 6;
const LEADER_NOT_AVAILABLE: i16 = 5;
const FENCED_LEADER_EPOCH: i16 = 74;
const UNKNOWN_LEADER_EPOCH: i16 = 76;
const COORDINATOR_NOT_AVAILABLE: i16 = 15;
const NOT_ENOUGH_REPLICAS: i16 = 19;

fn name(s: &str) -> TopicName {
    TopicName(StrBytes::from_string(s.into()))
}

fn str_bytes(s: &str) -> StrBytes {
    StrBytes::from_string(s.into())
}

/// Proposes `cmd` to the broker's metadata store, as a controller would.
async fn propose(broker: &RunningBroker, cmd: Command) {
    broker.broker.metadata.propose(cmd).await.unwrap();
}

/// Registers node `node_id` (a broker that never answers) and makes sure it is unfenced.
async fn register(broker: &RunningBroker, node_id: i32, rack: &str) {
    propose(
        broker,
        Command::RegisterBroker {
            node_id,
            incarnation_id: 1000 + node_id as u128,
            host: "127.0.0.1".into(),
            port: 1,
            rack: Some(rack.into()),
        },
    )
    .await;
    let image = broker.broker.metadata.image();
    let reg = &image.brokers[&node_id];
    if reg.fenced {
        let epoch = reg.epoch;
        propose(broker, Command::UnfenceBroker { node_id, epoch }).await;
    }
}

/// Sets the leader of partition `partition` of `topic_id` (the leader epoch goes up by one).
/// The broker's own controller runs beside the test and elects a leader for a leaderless
/// partition whose ISR member is live: a change it already made counts, and a proposal it
/// overtook is decided again on the newer image.
async fn change_leader(broker: &RunningBroker, topic_id: TopicId, partition: i32, leader: i32) {
    loop {
        let image = broker.broker.metadata.image();
        let p = image.partition(topic_id, partition).unwrap();
        if p.leader == leader {
            return;
        }
        let cmd = Command::ChangePartition {
            topic_id,
            partition,
            expected_partition_epoch: p.partition_epoch,
            leader: Some(leader),
            isr: None,
        };
        match broker.broker.metadata.propose(cmd).await {
            Ok(_) => return,
            Err(josefine_meta::MetaError::StalePartitionEpoch { .. }) => continue,
            Err(e) => panic!("changing the leader of {topic_id}-{partition}: {e}"),
        }
    }
}

/// Node 1 (this broker), node 2 (live, rack r2), node 3 (fenced) and topic `spread`:
/// partition 0 on node 1 at leader epoch 2, partition 1 on node 2 at epoch 0, partition 2 on
/// node 3, leaderless since node 3 was fenced (epoch 1). Before any of that, the offsets topic
/// (one partition, on node 1).
async fn cluster() -> (RunningBroker, tempfile::TempDir) {
    let (broker, dir) = start_broker(&["offsets.topic.num.partitions=1"]).await;
    // The test stages a leaderless partition; the controller's timer would re-elect it.
    broker.broker.controller.pause_timer(true);
    broker
        .broker
        .groups()
        .ensure_offsets_topic(&broker.broker)
        .await
        .unwrap();
    register(&broker, 2, "r2").await;
    register(&broker, 3, "r3").await;
    propose(
        &broker,
        Command::CreateTopic {
            topic_id: TOPIC_ID,
            name: TOPIC.into(),
            partitions: (0..3)
                .map(|i| PartitionAssignment::led_by_first(i, vec![i + 1]))
                .collect(),
            configs: vec![],
        },
    )
    .await;
    change_leader(&broker, TOPIC_ID, 0, PartitionAssignment::NO_LEADER).await;
    change_leader(&broker, TOPIC_ID, 0, 1).await;
    let image = broker.broker.metadata.image();
    let p2 = image.partition(TOPIC_ID, 2).unwrap();
    propose(
        &broker,
        Command::Batch(vec![
            Command::FenceBroker {
                node_id: 3,
                epoch: image.brokers[&3].epoch,
            },
            Command::ChangePartition {
                topic_id: TOPIC_ID,
                partition: 2,
                expected_partition_epoch: p2.partition_epoch,
                leader: Some(PartitionAssignment::NO_LEADER),
                isr: None,
            },
        ]),
    )
    .await;
    let image = broker.broker.metadata.image();
    let state = |i| {
        let p = image.partition(TOPIC_ID, i).unwrap();
        (p.leader, p.leader_epoch)
    };
    assert_eq!((state(0), state(1), state(2)), ((1, 2), (2, 0), (-1, 1)));
    assert!(image.brokers[&3].fenced && !image.brokers[&2].fenced);
    (broker, dir)
}

fn produce(partitions: &[i32], acks: i16, topic: &str) -> ProduceRequest {
    ProduceRequest::default()
        .with_acks(acks)
        .with_timeout_ms(5000)
        .with_topic_data(vec![TopicProduceData::default()
            .with_name(name(topic))
            .with_partition_data(
                partitions
                    .iter()
                    .map(|i| {
                        PartitionProduceData::default()
                            .with_index(*i)
                            .with_records(Some(batch(&[("k", "v")], None)))
                    })
                    .collect(),
            )])
}

/// A fetch of partitions (index, current_leader_epoch) of `spread` from offset 0.
fn fetch(partitions: &[(i32, i32)]) -> FetchRequest {
    FetchRequest::default()
        .with_max_wait_ms(0)
        .with_min_bytes(1)
        .with_max_bytes(1 << 20)
        .with_session_epoch(-1)
        .with_topics(vec![FetchTopic::default()
            .with_topic(name(TOPIC))
            .with_topic_id(uuid::Uuid::from_bytes(TOPIC_ID.0))
            .with_partitions(
                partitions
                    .iter()
                    .map(|(i, epoch)| {
                        FetchPartition::default()
                            .with_partition(*i)
                            .with_current_leader_epoch(*epoch)
                            .with_fetch_offset(0)
                            .with_partition_max_bytes(1 << 20)
                    })
                    .collect(),
            )])
}

/// ListOffsets of partitions (index, current_leader_epoch, timestamp) of `spread`.
fn list_offsets(partitions: &[(i32, i32, i64)]) -> ListOffsetsRequest {
    ListOffsetsRequest::default()
        .with_replica_id(BrokerId(-1))
        .with_topics(vec![ListOffsetsTopic::default()
            .with_name(name(TOPIC))
            .with_partitions(
                partitions
                    .iter()
                    .map(|(i, epoch, ts)| {
                        ListOffsetsPartition::default()
                            .with_partition_index(*i)
                            .with_current_leader_epoch(*epoch)
                            .with_timestamp(*ts)
                    })
                    .collect(),
            )])
}

/// The partition leader epochs stamped on the batches of `records`.
fn batch_epochs(records: &Bytes) -> Vec<i32> {
    let mut buf = records.clone();
    let mut out = Vec::new();
    while !buf.is_empty() {
        let set = RecordBatchDecoder::decode(&mut buf).unwrap();
        out.extend(set.records.iter().map(|r| r.partition_leader_epoch));
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn produce_is_served_only_by_the_leader_and_stamped_with_its_epoch() {
    let (broker, _dir) = cluster().await;
    let mut c = Client::connect(&broker).await;

    // v12: NOT_LEADER_OR_FOLLOWER carries the image's leader (KIP-951) and a live leader's
    // endpoint; a leaderless partition is NOT_LEADER_OR_FOLLOWER too (Kafka's
    // appendRecordsToLeader), with leader -1.
    c.send(ApiKey::Produce, 12, &produce(&[0, 1, 2, 3], 1, TOPIC))
        .await;
    let (_, r): (i32, ProduceResponse) = c.recv(ApiKey::Produce, 12).await;
    let parts = &r.responses[0].partition_responses;
    let summary: Vec<(i32, i16, i64, i32, i32)> = parts
        .iter()
        .map(|p| {
            (
                p.index,
                p.error_code,
                p.base_offset,
                p.current_leader.leader_id.0,
                p.current_leader.leader_epoch,
            )
        })
        .collect();
    assert_eq!(
        summary,
        vec![
            (0, 0, 0, -1, -1),
            (1, NOT_LEADER_OR_FOLLOWER, -1, 2, 0),
            (2, NOT_LEADER_OR_FOLLOWER, -1, -1, 1),
            (3, 3, -1, -1, -1),
        ]
    );
    assert!(parts[1]
        .error_message
        .as_ref()
        .is_some_and(|m| m.contains("broker 2")));
    let endpoints: Vec<(i32, i32, Option<String>)> = r
        .node_endpoints
        .iter()
        .map(|e| (e.node_id.0, e.port, e.rack.as_ref().map(|r| r.to_string())))
        .collect();
    assert_eq!(endpoints, vec![(2, 1, Some("r2".to_string()))]);

    // v9 has no current leader: same errors, nothing else.
    c.send(ApiKey::Produce, 9, &produce(&[0, 1], 1, TOPIC))
        .await;
    let (_, r): (i32, ProduceResponse) = c.recv(ApiKey::Produce, 9).await;
    let parts = &r.responses[0].partition_responses;
    assert_eq!(
        (parts[0].error_code, parts[0].base_offset),
        (0, 1),
        "the leader appends"
    );
    assert_eq!(parts[1].error_code, NOT_LEADER_OR_FOLLOWER);

    // The appended batches carry the image's leader epoch (2), not 0.
    c.send(ApiKey::Fetch, 12, &fetch(&[(0, 2)])).await;
    let (_, f): (i32, FetchResponse) = c.recv(ApiKey::Fetch, 12).await;
    let p = &f.responses[0].partitions[0];
    assert_eq!(p.error_code, 0);
    assert_eq!(batch_epochs(p.records.as_ref().unwrap()), vec![2, 2]);
    broker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acks_all_is_refused_while_the_image_isr_is_below_min_insync() {
    let (broker, _dir) = cluster().await;
    let strict = TopicId([0x52; 16]);
    propose(
        &broker,
        Command::CreateTopic {
            topic_id: strict,
            name: "strict".into(),
            // Kafka 4 caps min.insync.replicas at the replica count (`effectiveMinIsr`): two
            // replicas, only the leader in sync.
            partitions: vec![PartitionAssignment {
                isr: vec![1],
                ..PartitionAssignment::led_by_first(0, vec![1, 2])
            }],
            configs: vec![("min.insync.replicas".into(), "2".into())],
        },
    )
    .await;
    let mut c = Client::connect(&broker).await;
    c.send(ApiKey::Produce, 9, &produce(&[0], -1, "strict"))
        .await;
    let (_, r): (i32, ProduceResponse) = c.recv(ApiKey::Produce, 9).await;
    let p = &r.responses[0].partition_responses[0];
    assert_eq!(p.error_code, NOT_ENOUGH_REPLICAS);
    assert!(p
        .error_message
        .as_ref()
        .is_some_and(|m| m.contains("ISR : 1") && m.contains("strict-0")));
    c.send(ApiKey::Produce, 9, &produce(&[0], 1, "strict"))
        .await;
    let (_, r): (i32, ProduceResponse) = c.recv(ApiKey::Produce, 9).await;
    assert_eq!(r.responses[0].partition_responses[0].error_code, 0);
    broker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fetch_checks_leadership_and_client_epochs() {
    let (broker, _dir) = cluster().await;
    let mut c = Client::connect(&broker).await;
    c.send(ApiKey::Produce, 9, &produce(&[0], 1, TOPIC)).await;
    let _: (i32, ProduceResponse) = c.recv(ApiKey::Produce, 9).await;

    // v16: (partition, current_leader_epoch) -> error and reported leader.
    let asked = [
        (0, -1),
        (0, 2),
        (0, 1),
        (0, 3),
        (1, -1),
        (1, 0),
        (2, 1),
        (7, -1),
    ];
    c.send(ApiKey::Fetch, 16, &fetch(&asked)).await;
    let (_, f): (i32, FetchResponse) = c.recv(ApiKey::Fetch, 16).await;
    let got: Vec<(i32, i16, i32, i32)> = f.responses[0]
        .partitions
        .iter()
        .map(|p| {
            (
                p.partition_index,
                p.error_code,
                p.current_leader.leader_id.0,
                p.current_leader.leader_epoch,
            )
        })
        .collect();
    assert_eq!(
        got,
        vec![
            (0, 0, -1, -1),
            (0, 0, -1, -1),
            (0, FENCED_LEADER_EPOCH, 1, 2),
            // Kafka reports the current leader with NOT_LEADER and FENCED only.
            (0, UNKNOWN_LEADER_EPOCH, -1, -1),
            (1, NOT_LEADER_OR_FOLLOWER, 2, 0),
            (1, NOT_LEADER_OR_FOLLOWER, 2, 0),
            (2, NOT_LEADER_OR_FOLLOWER, -1, 1),
            (7, 3, -1, -1),
        ]
    );
    let served = &f.responses[0].partitions[0];
    assert_eq!(batch_epochs(served.records.as_ref().unwrap()), vec![2]);
    assert_eq!(served.high_watermark, 1);
    let refused = &f.responses[0].partitions[4];
    assert_eq!(refused.high_watermark, -1);
    assert!(refused.records.as_ref().is_some_and(|r| r.is_empty()));
    let endpoints: Vec<i32> = f.node_endpoints.iter().map(|e| e.node_id.0).collect();
    assert_eq!(endpoints, vec![1, 2], "live leaders named above, once each");

    // Below v16 the errors are the same and no leader is reported.
    c.send(ApiKey::Fetch, 12, &fetch(&[(0, 1), (1, -1)])).await;
    let (_, f): (i32, FetchResponse) = c.recv(ApiKey::Fetch, 12).await;
    let got: Vec<(i16, i32)> = f.responses[0]
        .partitions
        .iter()
        .map(|p| (p.error_code, p.current_leader.leader_id.0))
        .collect();
    assert_eq!(
        got,
        vec![(FENCED_LEADER_EPOCH, -1), (NOT_LEADER_OR_FOLLOWER, -1)]
    );
    broker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_offsets_checks_leadership_and_reports_real_epochs() {
    let (broker, _dir) = cluster().await;
    let mut c = Client::connect(&broker).await;
    // An empty log first: earliest and latest both answer the leader's epoch.
    c.send(
        ApiKey::ListOffsets,
        7,
        &list_offsets(&[(0, -1, -2), (0, -1, -1)]),
    )
    .await;
    let (_, r): (i32, ListOffsetsResponse) = c.recv(ApiKey::ListOffsets, 7).await;
    let got: Vec<(i16, i64, i32)> = r.topics[0]
        .partitions
        .iter()
        .map(|p| (p.error_code, p.offset, p.leader_epoch))
        .collect();
    assert_eq!(got, vec![(0, 0, 2), (0, 0, 2)]);

    // A batch at epoch 2, then a leader change to epoch 4 (1 -> none -> 1), another batch.
    c.send(ApiKey::Produce, 9, &produce(&[0], 1, TOPIC)).await;
    let _: (i32, ProduceResponse) = c.recv(ApiKey::Produce, 9).await;
    change_leader(&broker, TOPIC_ID, 0, PartitionAssignment::NO_LEADER).await;
    change_leader(&broker, TOPIC_ID, 0, 1).await;
    c.send(ApiKey::Produce, 9, &produce(&[0], 1, TOPIC)).await;
    let _: (i32, ProduceResponse) = c.recv(ApiKey::Produce, 9).await;

    // (partition, current_leader_epoch, timestamp): earliest is in epoch 2, latest is at the
    // leader's epoch 4, lookups by timestamp answer the epoch of the batch found (both
    // batches have the same timestamps: the first); stale and future client epochs, other
    // leaders and no leader are refused.
    let asked = [
        (0, -1, -2),
        (0, 4, -1),
        (0, -1, -3),
        (0, -1, 1_700_000_000_000),
        (0, 2, -1),
        (0, 5, -1),
        (1, -1, -1),
        (2, -1, -1),
        (9, -1, -1),
    ];
    c.send(ApiKey::ListOffsets, 7, &list_offsets(&asked)).await;
    let (_, r): (i32, ListOffsetsResponse) = c.recv(ApiKey::ListOffsets, 7).await;
    let got: Vec<(i16, i64, i32)> = r.topics[0]
        .partitions
        .iter()
        .map(|p| (p.error_code, p.offset, p.leader_epoch))
        .collect();
    assert_eq!(
        got,
        vec![
            (0, 0, 2),
            (0, 2, 4),
            (0, 0, 2),
            (0, 0, 2),
            (FENCED_LEADER_EPOCH, -1, -1),
            (UNKNOWN_LEADER_EPOCH, -1, -1),
            (NOT_LEADER_OR_FOLLOWER, -1, -1),
            (NOT_LEADER_OR_FOLLOWER, -1, -1),
            (3, -1, -1),
        ]
    );
    // v1 has neither epoch field: still served by the leader only.
    c.send(
        ApiKey::ListOffsets,
        1,
        &list_offsets(&[(0, -1, -1), (1, -1, -1)]),
    )
    .await;
    let (_, r): (i32, ListOffsetsResponse) = c.recv(ApiKey::ListOffsets, 1).await;
    let got: Vec<(i16, i64)> = r.topics[0]
        .partitions
        .iter()
        .map(|p| (p.error_code, p.offset))
        .collect();
    assert_eq!(got, vec![(0, 2), (NOT_LEADER_OR_FOLLOWER, -1)]);
    broker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delete_records_only_on_the_leader() {
    let (broker, _dir) = cluster().await;
    let mut c = Client::connect(&broker).await;
    let req = DeleteRecordsRequest::default()
        .with_timeout_ms(5000)
        .with_topics(vec![DeleteRecordsTopic::default()
            .with_name(name(TOPIC))
            .with_partitions(
                (0..3)
                    .map(|i| {
                        DeleteRecordsPartition::default()
                            .with_partition_index(i)
                            .with_offset(0)
                    })
                    .collect(),
            )]);
    c.send(ApiKey::DeleteRecords, 2, &req).await;
    let (_, r): (i32, DeleteRecordsResponse) = c.recv(ApiKey::DeleteRecords, 2).await;
    let got: Vec<i16> = r.topics[0]
        .partitions
        .iter()
        .map(|p| p.error_code)
        .collect();
    assert_eq!(got, vec![0, NOT_LEADER_OR_FOLLOWER, NOT_LEADER_OR_FOLLOWER]);
    broker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metadata_reports_the_image() {
    let (broker, _dir) = cluster().await;
    let mut c = Client::connect(&broker).await;
    let req = MetadataRequest::default().with_topics(Some(vec![
        MetadataRequestTopic::default().with_name(Some(name(TOPIC)))
    ]));
    c.send(ApiKey::Metadata, 12, &req).await;
    let (_, md): (i32, MetadataResponse) = c.recv(ApiKey::Metadata, 12).await;
    let brokers: Vec<(i32, Option<String>)> = md
        .brokers
        .iter()
        .map(|b| (b.node_id.0, b.rack.as_ref().map(|r| r.to_string())))
        .collect();
    assert_eq!(
        brokers,
        vec![(1, None), (2, Some("r2".to_string()))],
        "fenced node 3 is not listed"
    );
    assert_eq!(md.controller_id, BrokerId(1));
    type Row = (i16, i32, i32, Vec<i32>, Vec<i32>, Vec<i32>);
    let ids = |v: &[BrokerId]| v.iter().map(|b| b.0).collect::<Vec<_>>();
    let rows: Vec<Row> = md.topics[0]
        .partitions
        .iter()
        .map(|p| {
            (
                p.error_code,
                p.leader_id.0,
                p.leader_epoch,
                ids(&p.replica_nodes),
                ids(&p.isr_nodes),
                ids(&p.offline_replicas),
            )
        })
        .collect();
    assert_eq!(
        rows,
        vec![
            (0, 1, 2, vec![1], vec![1], vec![]),
            (0, 2, 0, vec![2], vec![2], vec![]),
            (LEADER_NOT_AVAILABLE, -1, 1, vec![3], vec![3], vec![3]),
        ]
    );

    // v0 lists only live replicas and ISR members (Kafka's errorUnavailableEndpoints).
    c.send(ApiKey::Metadata, 0, &req).await;
    let (_, md): (i32, MetadataResponse) = c.recv(ApiKey::Metadata, 0).await;
    let rows: Vec<(i16, i32, Vec<i32>, Vec<i32>)> = md.topics[0]
        .partitions
        .iter()
        .map(|p| {
            (
                p.error_code,
                p.leader_id.0,
                ids(&p.replica_nodes),
                ids(&p.isr_nodes),
            )
        })
        .collect();
    assert_eq!(
        rows,
        vec![
            (0, 1, vec![1], vec![1]),
            (0, 2, vec![2], vec![2]),
            (LEADER_NOT_AVAILABLE, -1, vec![], vec![]),
        ]
    );
    broker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn describe_cluster_and_topic_partitions_report_the_image() {
    let (broker, _dir) = cluster().await;
    let mut c = Client::connect(&broker).await;
    for (version, include_fenced, expected) in [
        (2, true, vec![(1, false), (2, false), (3, true)]),
        (2, false, vec![(1, false), (2, false)]),
        (1, false, vec![(1, false), (2, false)]),
    ] {
        let req = DescribeClusterRequest::default()
            .with_endpoint_type(1)
            .with_include_fenced_brokers(include_fenced);
        c.send(ApiKey::DescribeCluster, version, &req).await;
        let (_, r): (i32, DescribeClusterResponse) = c.recv(ApiKey::DescribeCluster, version).await;
        assert_eq!((r.error_code, r.controller_id), (0, BrokerId(1)));
        let got: Vec<(i32, bool)> = r
            .brokers
            .iter()
            .map(|b| (b.broker_id.0, b.is_fenced))
            .collect();
        assert_eq!(got, expected, "v{version} include_fenced={include_fenced}");
    }

    let req = DescribeTopicPartitionsRequest::default()
        .with_topics(vec![TopicRequest::default().with_name(name(TOPIC))])
        .with_response_partition_limit(100);
    c.send(ApiKey::DescribeTopicPartitions, 0, &req).await;
    let (_, r): (i32, DescribeTopicPartitionsResponse) =
        c.recv(ApiKey::DescribeTopicPartitions, 0).await;
    let ids = |v: &[BrokerId]| v.iter().map(|b| b.0).collect::<Vec<_>>();
    // (error, leader, leader epoch, ISR, offline replicas, ELR and last known ELR empty)
    type Row = (i16, i32, i32, Vec<i32>, Vec<i32>, bool);
    let rows: Vec<Row> = r.topics[0]
        .partitions
        .iter()
        .map(|p| {
            (
                p.error_code,
                p.leader_id.0,
                p.leader_epoch,
                ids(&p.isr_nodes),
                ids(&p.offline_replicas),
                p.eligible_leader_replicas
                    .as_ref()
                    .is_some_and(|e| e.is_empty())
                    && p.last_known_elr.as_ref().is_some_and(|e| e.is_empty()),
            )
        })
        .collect();
    assert_eq!(
        rows,
        vec![
            (0, 1, 2, vec![1], vec![], true),
            (0, 2, 0, vec![2], vec![], true),
            // DescribeTopicPartitions sets no partition error for a leaderless partition.
            (0, -1, 1, vec![3], vec![3], true),
        ]
    );
    broker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn find_coordinator_follows_the_offsets_partition_leader() {
    let (broker, _dir) = cluster().await;
    let mut c = Client::connect(&broker).await;
    let req = FindCoordinatorRequest::default()
        .with_key_type(0)
        .with_coordinator_keys(vec![str_bytes("g")]);
    c.send(ApiKey::FindCoordinator, 4, &req).await;
    let (_, r): (i32, FindCoordinatorResponse) = c.recv(ApiKey::FindCoordinator, 4).await;
    let co = &r.coordinators[0];
    assert_eq!(
        (co.error_code, co.node_id, co.port),
        (0, BrokerId(1), broker.local_addr.port() as i32)
    );

    // Nobody leads the offsets partition: COORDINATOR_NOT_AVAILABLE with Kafka's no-node.
    let offsets = broker
        .broker
        .metadata
        .image()
        .topic_by_name("__consumer_offsets")
        .unwrap()
        .topic_id;
    change_leader(&broker, offsets, 0, PartitionAssignment::NO_LEADER).await;
    c.send(ApiKey::FindCoordinator, 4, &req).await;
    let (_, r): (i32, FindCoordinatorResponse) = c.recv(ApiKey::FindCoordinator, 4).await;
    let co = &r.coordinators[0];
    assert_eq!(
        (co.error_code, co.node_id, co.port),
        (COORDINATOR_NOT_AVAILABLE, BrokerId(-1), -1)
    );
    broker.shutdown().await;
}

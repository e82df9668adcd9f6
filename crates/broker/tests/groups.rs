//! The group coordinator over a real socket, raw protocol: FindCoordinator creates
//! `__consumer_offsets`, a member joins (MEMBER_ID_REQUIRED first), syncs, heartbeats,
//! commits and fetches offsets; the offsets survive a broker restart (loaded back from the
//! internal topic) and go away with their topic.

mod common;

use std::time::Duration;

use bytes::Bytes;
use common::{start_broker, Client};
use josefine::config::{Config, ServeArgs};
use josefine::server::RunningBroker;
use kafka_protocol::messages::join_group_request::JoinGroupRequestProtocol;
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::offset_commit_request::{
    OffsetCommitRequestPartition, OffsetCommitRequestTopic,
};
use kafka_protocol::messages::offset_fetch_request::{
    OffsetFetchRequestGroup, OffsetFetchRequestTopic, OffsetFetchRequestTopics,
};
use kafka_protocol::messages::sync_group_request::SyncGroupRequestAssignment;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;

const MEMBER_ID_REQUIRED: i16 = 79;
const INVALID_REQUEST: i16 = 42;
const COORDINATOR_LOAD_IN_PROGRESS: i16 = 14;
const ILLEGAL_GENERATION: i16 = 22;

fn s(v: &str) -> StrBytes {
    StrBytes::from_string(v.to_string())
}

fn topic(v: &str) -> TopicName {
    TopicName(s(v))
}

/// Round trip of one request on its own connection.
async fn call<Req, Resp>(broker: &RunningBroker, key: ApiKey, version: i16, req: &Req) -> Resp
where
    Req: kafka_protocol::protocol::Encodable,
    Resp: kafka_protocol::protocol::Decodable,
{
    let mut c = Client::connect(broker).await;
    c.send(key, version, req).await;
    c.recv::<Resp>(key, version).await.1
}

async fn create_topic(broker: &RunningBroker, name: &str) {
    let req = MetadataRequest::default()
        .with_topics(Some(vec![
            MetadataRequestTopic::default().with_name(Some(topic(name)))
        ]))
        .with_allow_auto_topic_creation(true);
    let resp: MetadataResponse = call(broker, ApiKey::Metadata, 12, &req).await;
    assert_eq!(resp.topics[0].error_code, 0);
}

async fn restart(broker: RunningBroker, dir: &tempfile::TempDir) -> RunningBroker {
    broker.shutdown().await;
    let args = ServeArgs {
        listen: Some("127.0.0.1:0".into()),
        raft_listen: Some("127.0.0.1:0".into()),
        data_dir: Some(dir.path().to_path_buf()),
        set: vec!["group.initial.rebalance.delay.ms=0".into()],
        ..ServeArgs::default()
    };
    // Connections still closing hold the old broker (and its data dir lock) for a moment.
    for _ in 0..100 {
        match josefine::server::start(Config::resolve(args.clone()).unwrap()).await {
            Ok(b) => return b,
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
    panic!("the broker did not restart on its data dir");
}

fn fetch_v9(group: &str, t: &str) -> OffsetFetchRequest {
    OffsetFetchRequest::default().with_groups(vec![OffsetFetchRequestGroup::default()
        .with_group_id(GroupId(s(group)))
        .with_topics(Some(vec![OffsetFetchRequestTopics::default()
            .with_name(topic(t))
            .with_partition_indexes(vec![0, 1])]))])
}

/// (partition, offset, leader epoch, metadata) from a v9 fetch, retried while the coordinator
/// is still loading after a restart.
async fn fetched(broker: &RunningBroker, group: &str, t: &str) -> Vec<(i32, i64, i32, String)> {
    for _ in 0..100 {
        let resp: OffsetFetchResponse =
            call(broker, ApiKey::OffsetFetch, 9, &fetch_v9(group, t)).await;
        let g = &resp.groups[0];
        if g.error_code == COORDINATOR_LOAD_IN_PROGRESS {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        }
        assert_eq!(g.error_code, 0);
        return g.topics[0]
            .partitions
            .iter()
            .map(|p| {
                assert_eq!(p.error_code, 0);
                let metadata = p.metadata.as_ref().map_or("", |m| m.as_str()).to_string();
                (
                    p.partition_index,
                    p.committed_offset,
                    p.committed_leader_epoch,
                    metadata,
                )
            })
            .collect();
    }
    panic!("the coordinator never finished loading");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn join_sync_heartbeat_commit_fetch_and_restart() {
    let (broker, dir) =
        start_broker(&["group.initial.rebalance.delay.ms=0", "num.partitions=2"]).await;
    create_topic(&broker, "orders").await;

    // FindCoordinator (batched form) creates __consumer_offsets and names this broker.
    let req = FindCoordinatorRequest::default().with_coordinator_keys(vec![s("g1")]);
    let resp: FindCoordinatorResponse = call(&broker, ApiKey::FindCoordinator, 4, &req).await;
    let c = &resp.coordinators[0];
    assert_eq!((c.error_code, c.node_id.0), (0, 1));
    assert_eq!(c.port, i32::from(broker.local_addr.port()));
    let all = MetadataRequest::default().with_topics(None);
    let md: MetadataResponse = call(&broker, ApiKey::Metadata, 12, &all).await;
    let offsets = md
        .topics
        .iter()
        .find(|t| {
            t.name
                .as_ref()
                .is_some_and(|n| n.0.as_str() == "__consumer_offsets")
        })
        .expect("__consumer_offsets listed");
    assert!(offsets.is_internal);
    assert_eq!(offsets.partitions.len(), 50);

    // Join: first without a member id (v4+: MEMBER_ID_REQUIRED), then with the given id.
    let join = |member: &str| {
        JoinGroupRequest::default()
            .with_group_id(GroupId(s("g1")))
            .with_session_timeout_ms(10_000)
            .with_rebalance_timeout_ms(10_000)
            .with_member_id(s(member))
            .with_protocol_type(s("consumer"))
            .with_protocols(vec![JoinGroupRequestProtocol::default()
                .with_name(s("range"))
                .with_metadata(Bytes::from_static(b"subscription"))])
    };
    let first: JoinGroupResponse = call(&broker, ApiKey::JoinGroup, 9, &join("")).await;
    assert_eq!(first.error_code, MEMBER_ID_REQUIRED);
    let member = first.member_id.to_string();
    assert!(member.starts_with("raw-test-"), "{member}");
    let joined: JoinGroupResponse = call(&broker, ApiKey::JoinGroup, 9, &join(&member)).await;
    assert_eq!(joined.error_code, 0);
    assert_eq!(joined.generation_id, 1);
    assert_eq!(joined.leader.as_str(), member);
    assert_eq!(joined.protocol_name.as_ref().unwrap().as_str(), "range");
    assert_eq!(joined.members.len(), 1);

    // Sync as the leader: the assignment comes back.
    let sync = SyncGroupRequest::default()
        .with_group_id(GroupId(s("g1")))
        .with_generation_id(1)
        .with_member_id(s(&member))
        .with_protocol_type(Some(s("consumer")))
        .with_protocol_name(Some(s("range")))
        .with_assignments(vec![SyncGroupRequestAssignment::default()
            .with_member_id(s(&member))
            .with_assignment(Bytes::from_static(b"orders-0-1"))]);
    let synced: SyncGroupResponse = call(&broker, ApiKey::SyncGroup, 5, &sync).await;
    assert_eq!(synced.error_code, 0);
    assert_eq!(&synced.assignment[..], b"orders-0-1");

    let hb = |generation| {
        HeartbeatRequest::default()
            .with_group_id(GroupId(s("g1")))
            .with_generation_id(generation)
            .with_member_id(s(&member))
    };
    let ok: HeartbeatResponse = call(&broker, ApiKey::Heartbeat, 4, &hb(1)).await;
    assert_eq!(ok.error_code, 0);
    let stale: HeartbeatResponse = call(&broker, ApiKey::Heartbeat, 4, &hb(0)).await;
    assert_eq!(stale.error_code, ILLEGAL_GENERATION);

    // Commit with the generation, then read back through both OffsetFetch shapes.
    let commit = OffsetCommitRequest::default()
        .with_group_id(GroupId(s("g1")))
        .with_generation_id_or_member_epoch(1)
        .with_member_id(s(&member))
        .with_topics(vec![OffsetCommitRequestTopic::default()
            .with_name(topic("orders"))
            .with_partitions(vec![
                OffsetCommitRequestPartition::default()
                    .with_partition_index(0)
                    .with_committed_offset(42)
                    .with_committed_leader_epoch(0)
                    .with_committed_metadata(Some(s("m0"))),
                OffsetCommitRequestPartition::default()
                    .with_partition_index(1)
                    .with_committed_offset(7)
                    .with_committed_leader_epoch(-1)
                    .with_committed_metadata(None),
            ])]);
    let committed: OffsetCommitResponse = call(&broker, ApiKey::OffsetCommit, 9, &commit).await;
    let codes: Vec<i16> = committed.topics[0]
        .partitions
        .iter()
        .map(|p| p.error_code)
        .collect();
    assert_eq!(codes, vec![0, 0]);
    let expected = vec![(0, 42, 0, "m0".to_string()), (1, 7, -1, String::new())];
    assert_eq!(fetched(&broker, "g1", "orders").await, expected);
    // Unknown topics and partitions are refused before the coordinator (Kafka 4.1).
    let mut unknown = commit.clone();
    unknown.topics[0].partitions[1].partition_index = 99;
    unknown.topics.push(
        OffsetCommitRequestTopic::default()
            .with_name(topic("no-such-topic"))
            .with_partitions(vec![OffsetCommitRequestPartition::default()
                .with_partition_index(0)
                .with_committed_offset(1)]),
    );
    let r: OffsetCommitResponse = call(&broker, ApiKey::OffsetCommit, 9, &unknown).await;
    let codes: Vec<Vec<i16>> = r
        .topics
        .iter()
        .map(|t| t.partitions.iter().map(|p| p.error_code).collect())
        .collect();
    assert_eq!(codes, vec![vec![0, 3], vec![3]]);
    let old = OffsetFetchRequest::default()
        .with_group_id(GroupId(s("g1")))
        .with_topics(Some(vec![OffsetFetchRequestTopic::default()
            .with_name(topic("orders"))
            .with_partition_indexes(vec![0])]));
    let v1: OffsetFetchResponse = call(&broker, ApiKey::OffsetFetch, 1, &old).await;
    assert_eq!(v1.topics[0].partitions[0].committed_offset, 42);

    // DescribeGroups and ListGroups see the stable group.
    let describe = DescribeGroupsRequest::default()
        .with_groups(vec![GroupId(s("g1"))])
        .with_include_authorized_operations(true);
    let described: DescribeGroupsResponse =
        call(&broker, ApiKey::DescribeGroups, 5, &describe).await;
    let g = &described.groups[0];
    assert_eq!((g.error_code, g.group_state.as_str()), (0, "Stable"));
    assert_eq!(g.members.len(), 1);
    assert_eq!(g.members[0].client_host.as_str(), "/127.0.0.1");
    // READ, DELETE, DESCRIBE, DESCRIBE_CONFIGS, ALTER_CONFIGS: all a group supports.
    let ops = (1 << 3) | (1 << 6) | (1 << 8) | (1 << 10) | (1 << 11);
    assert_eq!(g.authorized_operations, ops);
    let listed: ListGroupsResponse = call(
        &broker,
        ApiKey::ListGroups,
        4,
        &ListGroupsRequest::default(),
    )
    .await;
    assert!(listed.groups.iter().any(|l| l.group_id.0.as_str() == "g1"));

    // Restart: the offsets (and the group) are loaded back from __consumer_offsets.
    let broker = restart(broker, &dir).await;
    assert_eq!(fetched(&broker, "g1", "orders").await, expected);

    // Deleting the topic deletes its committed offsets, durably.
    let del = DeleteTopicsRequest::default().with_topic_names(vec![topic("orders")]);
    let deleted: DeleteTopicsResponse = call(&broker, ApiKey::DeleteTopics, 5, &del).await;
    assert_eq!(deleted.responses[0].error_code, 0);
    let gone = vec![(0, -1, -1, String::new()), (1, -1, -1, String::new())];
    assert_eq!(fetched(&broker, "g1", "orders").await, gone);
    let broker = restart(broker, &dir).await;
    assert_eq!(fetched(&broker, "g1", "orders").await, gone);
    broker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn find_coordinator_versions_and_key_types() {
    let (broker, _dir) = start_broker(&[]).await;
    let port = i32::from(broker.local_addr.port());
    for v in 0..=3 {
        let req = FindCoordinatorRequest::default().with_key(s("g"));
        let resp: FindCoordinatorResponse = call(&broker, ApiKey::FindCoordinator, v, &req).await;
        assert_eq!(
            (resp.error_code, resp.node_id.0, resp.port),
            (0, 1, port),
            "v{v}"
        );
    }
    // Transactional ids (key type 1): this node leads every `__transaction_state` partition.
    for v in [1, 3] {
        let req = FindCoordinatorRequest::default()
            .with_key(s("tx"))
            .with_key_type(1);
        let resp: FindCoordinatorResponse = call(&broker, ApiKey::FindCoordinator, v, &req).await;
        assert_eq!((resp.error_code, resp.node_id.0, resp.port), (0, 1, port));
    }
    let req = FindCoordinatorRequest::default()
        .with_key_type(1)
        .with_coordinator_keys(vec![s("a"), s("b")]);
    let resp: FindCoordinatorResponse = call(&broker, ApiKey::FindCoordinator, 6, &req).await;
    assert_eq!(resp.coordinators.len(), 2);
    assert!(resp
        .coordinators
        .iter()
        .all(|c| c.error_code == 0 && c.node_id.0 == 1));
    // An unknown key type: a clear, non-retriable answer.
    let req = FindCoordinatorRequest::default()
        .with_key_type(2)
        .with_coordinator_keys(vec![s("a")]);
    let resp: FindCoordinatorResponse = call(&broker, ApiKey::FindCoordinator, 6, &req).await;
    assert_eq!(
        (
            resp.coordinators[0].error_code,
            resp.coordinators[0].node_id.0
        ),
        (INVALID_REQUEST, -1)
    );
    broker.shutdown().await;
}

/// Every commit appends a record to `__consumer_offsets`; the log cleaner keeps only the latest
/// per key, so a group committing the same partition over and over does not grow the topic.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compaction_bounds_the_offsets_topic() {
    let (broker, dir) = start_broker(&[
        "group.initial.rebalance.delay.ms=0",
        "offsets.topic.num.partitions=1",
        "offsets.topic.segment.bytes=2048",
        "log.cleaner.backoff.ms=50",
        "log.cleaner.min.cleanable.ratio=0.1",
    ])
    .await;
    create_topic(&broker, "t").await;
    let req = FindCoordinatorRequest::default().with_key(s("g"));
    let resp: FindCoordinatorResponse = call(&broker, ApiKey::FindCoordinator, 3, &req).await;
    assert_eq!(resp.error_code, 0);

    const COMMITS: i64 = 1000;
    let mut c = Client::connect(&broker).await;
    for offset in 0..COMMITS {
        // A commit without generation or member (assign mode), as Kafka accepts for empty groups.
        let commit = OffsetCommitRequest::default()
            .with_group_id(GroupId(s("g")))
            .with_generation_id_or_member_epoch(-1)
            .with_topics(vec![OffsetCommitRequestTopic::default()
                .with_name(topic("t"))
                .with_partitions(vec![OffsetCommitRequestPartition::default()
                    .with_partition_index(0)
                    .with_committed_offset(offset)])]);
        c.send(ApiKey::OffsetCommit, 8, &commit).await;
        let (_, r) = c
            .recv::<OffsetCommitResponse>(ApiKey::OffsetCommit, 8)
            .await;
        assert_eq!(r.topics[0].partitions[0].error_code, 0);
    }
    let log = broker
        .broker
        .partitions
        .all()
        .into_iter()
        .find(|p| p.topic == "__consumer_offsets")
        .expect("__consumer_offsets partition 0")
        .log
        .clone();
    assert_eq!(log.log_end_offset(), COMMITS, "one record per commit");
    let one_record_bytes = 100;
    let mut size = log.size_bytes();
    for _ in 0..600 {
        if size < 8 * 1024 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        size = log.size_bytes();
    }
    // Uncompacted the log holds COMMITS records (> 100 KB); compacted, the active segment
    // (<= 2 KiB) and the one live record of the sealed ones.
    assert!(
        size < 8 * 1024 && (size as i64) < COMMITS * one_record_bytes / 10,
        "__consumer_offsets still holds {size} bytes after cleaning"
    );
    let last = vec![
        (0, COMMITS - 1, -1, String::new()),
        (1, -1, -1, String::new()),
    ];
    assert_eq!(fetched(&broker, "g", "t").await, last);
    drop((c, log));
    let broker = restart(broker, &dir).await;
    assert_eq!(fetched(&broker, "g", "t").await, last);
    broker.shutdown().await;
}

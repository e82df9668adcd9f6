//! CreateAcls / DescribeAcls / DeleteAcls over a real socket: SECURITY_DISABLED without an
//! authorizer, Kafka's per-creation refusals, MATCH/ANY filters, deletion answers, and ACLs
//! surviving a restart (they live in the metadata image and its snapshot).

mod common;

use common::{start_broker, Client};
use kafka_protocol::messages::create_acls_request::AclCreation;
use kafka_protocol::messages::delete_acls_request::DeleteAclsFilter;
use kafka_protocol::messages::{
    ApiKey, CreateAclsRequest, CreateAclsResponse, DeleteAclsRequest, DeleteAclsResponse,
    DescribeAclsRequest, DescribeAclsResponse,
};
use kafka_protocol::protocol::StrBytes;

const AUTHORIZER: &str =
    "authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer";

/// Lets the test's connections (User:ANONYMOUS) manage ACLs whatever the ACLs say.
const SUPER_ANONYMOUS: &str = "super.users=User:ANONYMOUS";

fn s(v: &str) -> StrBytes {
    StrBytes::from_string(v.to_string())
}

/// (resource type, name, pattern, principal, host, operation, permission)
type Spec<'a> = (i8, &'a str, i8, &'a str, &'a str, i8, i8);

fn creation(c: Spec) -> AclCreation {
    AclCreation::default()
        .with_resource_type(c.0)
        .with_resource_name(s(c.1))
        .with_resource_pattern_type(c.2)
        .with_principal(s(c.3))
        .with_host(s(c.4))
        .with_operation(c.5)
        .with_permission_type(c.6)
}

async fn create(c: &mut Client, specs: &[Spec<'_>]) -> Vec<i16> {
    let req =
        CreateAclsRequest::default().with_creations(specs.iter().copied().map(creation).collect());
    c.send(ApiKey::CreateAcls, 3, &req).await;
    let (_, r): (i32, CreateAclsResponse) = c.recv(ApiKey::CreateAcls, 3).await;
    r.results.iter().map(|r| r.error_code).collect()
}

/// Describe with (resource type, name, pattern) and everything else ANY: the (type, name,
/// pattern, principal, operation) of each ACL returned.
async fn describe(
    c: &mut Client,
    rtype: i8,
    name: Option<&str>,
    pattern: i8,
) -> (i16, Vec<(i8, String, i8, String, i8)>) {
    let req = DescribeAclsRequest::default()
        .with_resource_type_filter(rtype)
        .with_resource_name_filter(name.map(s))
        .with_pattern_type_filter(pattern)
        .with_principal_filter(None)
        .with_host_filter(None)
        .with_operation(1)
        .with_permission_type(1);
    c.send(ApiKey::DescribeAcls, 3, &req).await;
    let (_, r): (i32, DescribeAclsResponse) = c.recv(ApiKey::DescribeAcls, 3).await;
    let mut out = Vec::new();
    for res in &r.resources {
        for a in &res.acls {
            out.push((
                res.resource_type,
                res.resource_name.to_string(),
                res.pattern_type,
                a.principal.to_string(),
                a.operation,
            ));
        }
    }
    out.sort();
    (r.error_code, out)
}

async fn delete(c: &mut Client, filters: Vec<DeleteAclsFilter>) -> DeleteAclsResponse {
    c.send(
        ApiKey::DeleteAcls,
        3,
        &DeleteAclsRequest::default().with_filters(filters),
    )
    .await;
    c.recv(ApiKey::DeleteAcls, 3).await.1
}

fn filter(rtype: i8, name: Option<&str>, pattern: i8) -> DeleteAclsFilter {
    DeleteAclsFilter::default()
        .with_resource_type_filter(rtype)
        .with_resource_name_filter(name.map(s))
        .with_pattern_type_filter(pattern)
        .with_principal_filter(None)
        .with_host_filter(None)
        .with_operation(1)
        .with_permission_type(1)
}

/// Starts a broker again on `dir` (the old one's last handles release the data directory lock
/// asynchronously after shutdown).
async fn restart(dir: &tempfile::TempDir, extra: &[&str]) -> josefine::server::RunningBroker {
    let args = josefine::config::ServeArgs {
        listen: Some("127.0.0.1:0".into()),
        raft_listen: Some("127.0.0.1:0".into()),
        data_dir: Some(dir.path().to_path_buf()),
        set: extra.iter().map(|s| s.to_string()).collect(),
        ..Default::default()
    };
    for _ in 0..100 {
        let config = josefine::config::Config::resolve(args.clone()).unwrap();
        if let Ok(b) = josefine::server::start(config).await {
            return b;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    panic!("restart failed");
}

const TOPIC: i8 = 2;
const CLUSTER: i8 = 4;
const ANY: i8 = 1;
const MATCH: i8 = 2;
const LITERAL: i8 = 3;
const PREFIXED: i8 = 4;
const READ: i8 = 3;
const WRITE: i8 = 4;
const ALLOW: i8 = 3;
const DENY: i8 = 2;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_an_authorizer_the_acl_apis_answer_security_disabled() {
    let (broker, _dir) = start_broker(&[]).await;
    let mut c = Client::connect(&broker).await;
    let spec = (TOPIC, "t", LITERAL, "User:alice", "*", READ, ALLOW);
    assert_eq!(create(&mut c, &[spec]).await, vec![54]);
    assert_eq!(describe(&mut c, ANY, None, ANY).await.0, 54);
    let r = delete(&mut c, vec![filter(ANY, None, ANY)]).await;
    assert_eq!(r.filter_results[0].error_code, 54);
    assert!(broker.broker.metadata.image().acls.is_empty());
    broker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acls_are_created_described_deleted_and_survive_a_restart() {
    let (broker, dir) = start_broker(&[AUTHORIZER, SUPER_ANONYMOUS]).await;
    let mut c = Client::connect(&broker).await;
    let good = [
        (TOPIC, "orders", LITERAL, "User:alice", "*", READ, ALLOW),
        (TOPIC, "ord", PREFIXED, "User:bob", "10.0.0.1", WRITE, DENY),
        (TOPIC, "*", LITERAL, "User:*", "*", READ, ALLOW),
        (
            CLUSTER,
            "kafka-cluster",
            LITERAL,
            "User:alice",
            "*",
            7,
            ALLOW,
        ),
    ];
    let bad = [
        (1, "orders", LITERAL, "User:alice", "*", READ, ALLOW), // ANY resource type
        (TOPIC, "orders", MATCH, "User:alice", "*", READ, ALLOW), // MATCH pattern
        (TOPIC, "orders", ANY, "User:alice", "*", READ, ALLOW), // ANY pattern
        (TOPIC, "orders", LITERAL, "User:alice", "*", 1, ALLOW), // ANY operation
        (TOPIC, "orders", LITERAL, "User:alice", "*", 0, ALLOW), // UNKNOWN operation
        (TOPIC, "orders", LITERAL, "User:alice", "*", READ, 1), // ANY permission
        (TOPIC, "orders", LITERAL, "alice", "*", READ, ALLOW),  // no principal type
        (TOPIC, "orders", LITERAL, "", "*", READ, ALLOW),       // empty principal
        (TOPIC, "", LITERAL, "User:alice", "*", READ, ALLOW),   // empty name
        (CLUSTER, "other", LITERAL, "User:alice", "*", 7, ALLOW), // not kafka-cluster
    ];
    let mut all: Vec<Spec> = good.to_vec();
    all.extend(bad);
    // The good ones are created, each bad one refused on its own.
    let codes = create(&mut c, &all).await;
    assert_eq!(&codes[..4], &[0, 0, 0, 0]);
    assert_eq!(&codes[4..], &[42; 10], "{codes:?}");
    assert_eq!(broker.broker.metadata.image().acls.len(), 4);
    // Creating an existing ACL again succeeds without a change.
    assert_eq!(create(&mut c, &good[..1]).await, vec![0]);
    assert_eq!(broker.broker.metadata.image().acls.len(), 4);

    let (code, every) = describe(&mut c, ANY, None, ANY).await;
    assert_eq!((code, every.len()), (0, 4));
    // ANY with a name: exactly that name; MATCH: everything that applies to it.
    let (_, exact) = describe(&mut c, TOPIC, Some("orders"), ANY).await;
    assert_eq!(exact.len(), 1);
    let (_, applies) = describe(&mut c, TOPIC, Some("orders"), MATCH).await;
    let names: Vec<&str> = applies.iter().map(|a| a.1.as_str()).collect();
    assert_eq!(names, vec!["*", "ord", "orders"]);
    let (_, prefixed) = describe(&mut c, TOPIC, None, PREFIXED).await;
    assert_eq!(prefixed.len(), 1);
    // A filter with an UNKNOWN element is INVALID_REQUEST.
    assert_eq!(describe(&mut c, 0, None, ANY).await.0, 42);

    // Delete: per-filter answers; an ACL two filters match is listed under both.
    let r = delete(
        &mut c,
        vec![
            filter(TOPIC, Some("orders"), MATCH),
            filter(TOPIC, Some("ord"), PREFIXED),
            filter(TOPIC, None, 0),
        ],
    )
    .await;
    let counts: Vec<(i16, usize)> = r
        .filter_results
        .iter()
        .map(|f| (f.error_code, f.matching_acls.len()))
        .collect();
    assert_eq!(counts, vec![(0, 3), (0, 1), (42, 0)]);
    let (_, left) = describe(&mut c, ANY, None, ANY).await;
    assert_eq!(left.len(), 1, "{left:?}");
    assert_eq!(left[0].0, CLUSTER);
    broker.shutdown().await;

    drop(c);
    let broker = restart(&dir, &[AUTHORIZER, SUPER_ANONYMOUS]).await;
    let mut c = Client::connect(&broker).await;
    let (_, after) = describe(&mut c, ANY, None, ANY).await;
    assert_eq!(after, left);
    broker.shutdown().await;
}

/// Stores ACLs as CreateAcls would, without asking the (denying) authorizer.
async fn grant(broker: &josefine::server::RunningBroker, acls: &[Spec<'_>]) {
    use josefine_meta::acl::{Acl, AclId, Operation, PatternType, Permission, ResourceType};
    let acls = acls
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let id = AclId(broker.broker.metadata.image().acls.len() as u128 + 1000 + i as u128);
            let acl = Acl {
                resource_type: ResourceType::from_code(c.0).unwrap(),
                resource_name: c.1.into(),
                pattern_type: PatternType::from_code(c.2).unwrap(),
                principal: c.3.into(),
                host: c.4.into(),
                operation: Operation::from_code(c.5).unwrap(),
                permission: Permission::from_code(c.6).unwrap(),
            };
            (id, acl)
        })
        .collect();
    broker
        .broker
        .metadata
        .propose(josefine_meta::Command::CreateAcls { acls })
        .await
        .unwrap();
}

const CREATE: i8 = 5;
const ALL: i8 = 2;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_are_enforced_for_the_anonymous_principal() {
    use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
    use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
    use kafka_protocol::messages::{
        DescribeClusterRequest, DescribeClusterResponse, MetadataRequest, MetadataResponse,
        ProduceRequest, ProduceResponse, TopicName,
    };
    let (broker, _dir) = start_broker(&[
        AUTHORIZER,
        "allow.everyone.if.no.acl.found=false",
        "auto.create.topics.enable=true",
    ])
    .await;
    let anon = "User:ANONYMOUS";
    // May create and describe "open*", nothing else; never "open-denied".
    grant(
        &broker,
        &[
            (TOPIC, "open", PREFIXED, anon, "127.0.0.1", ALL, ALLOW),
            (TOPIC, "open-denied", LITERAL, anon, "*", WRITE, DENY),
            (TOPIC, "elsewhere", LITERAL, anon, "10.9.9.9", ALL, ALLOW),
        ],
    )
    .await;
    let mut c = Client::connect(&broker).await;
    let metadata = |names: Option<Vec<&str>>, create: bool| {
        MetadataRequest::default()
            .with_topics(names.map(|n| {
                n.into_iter()
                    .map(|n| MetadataRequestTopic::default().with_name(Some(TopicName(s(n)))))
                    .collect()
            }))
            .with_allow_auto_topic_creation(create)
            .with_include_topic_authorized_operations(true)
    };
    c.send(
        ApiKey::Metadata,
        12,
        &metadata(
            Some(vec!["open-a", "open-denied", "secret", "elsewhere"]),
            true,
        ),
    )
    .await;
    let (_, r): (i32, MetadataResponse) = c.recv(ApiKey::Metadata, 12).await;
    let codes: Vec<i16> = r.topics.iter().map(|t| t.error_code).collect();
    // open-a auto-created (CREATE via the prefixed ALL), open-denied too (DENY is WRITE only),
    // secret unauthorized (it does not exist: the same answer), elsewhere another host's.
    assert_eq!(codes, vec![0, 0, 29, 29]);
    let ops = r.topics[0].topic_authorized_operations;
    assert_eq!(ops & (1 << WRITE), 1 << WRITE, "{ops:b}");
    assert_eq!(r.topics[1].topic_authorized_operations & (1 << WRITE), 0);
    // Created by a super user path: a topic the caller may not describe.
    grant(
        &broker,
        &[(TOPIC, "hidden", LITERAL, "User:admin", "*", ALL, ALLOW)],
    )
    .await;
    let image = broker.broker.metadata.image();
    assert!(image.topic_by_name("hidden").is_none());
    broker
        .broker
        .metadata
        .propose(josefine_meta::Command::CreateTopic {
            topic_id: josefine_meta::TopicId([9; 16]),
            name: "hidden".into(),
            partitions: vec![josefine_meta::PartitionAssignment::led_by_first(
                0,
                vec![broker.broker.config.node_id],
            )],
            configs: vec![],
        })
        .await
        .unwrap();
    c.send(ApiKey::Metadata, 12, &metadata(None, false)).await;
    let (_, r): (i32, MetadataResponse) = c.recv(ApiKey::Metadata, 12).await;
    let mut names: Vec<String> = r
        .topics
        .iter()
        .map(|t| t.name.as_ref().unwrap().0.to_string())
        .collect();
    names.sort();
    assert_eq!(names, vec!["open-a", "open-denied"], "hidden is left out");

    // Produce: allowed, denied by DENY WRITE, and a topic without ACLs.
    let produce = |topic: &str| {
        ProduceRequest::default()
            .with_acks(1)
            .with_timeout_ms(5000)
            .with_topic_data(vec![TopicProduceData::default()
                .with_name(TopicName(s(topic)))
                .with_partition_data(vec![PartitionProduceData::default()
                    .with_index(0)
                    .with_records(Some(common::batch(&[("k", "v")], None)))])])
    };
    for (topic, expected) in [("open-a", 0), ("open-denied", 29), ("hidden", 29)] {
        c.send(ApiKey::Produce, 9, &produce(topic)).await;
        let (_, r): (i32, ProduceResponse) = c.recv(ApiKey::Produce, 9).await;
        let code = r.responses[0].partition_responses[0].error_code;
        assert_eq!(code, expected, "{topic}");
    }
    let hidden = broker
        .broker
        .metadata
        .image()
        .topic_by_name("hidden")
        .unwrap()
        .topic_id;
    let log_end = broker
        .broker
        .partitions
        .get(hidden, 0)
        .unwrap()
        .log
        .log_end_offset();
    assert_eq!(log_end, 0, "nothing was appended to the refused topic");

    // Cluster APIs: refused as a whole without DESCRIBE/ALTER on the cluster.
    c.send(
        ApiKey::DescribeCluster,
        0,
        &DescribeClusterRequest::default(),
    )
    .await;
    let (_, r): (i32, DescribeClusterResponse) = c.recv(ApiKey::DescribeCluster, 0).await;
    assert_eq!(r.error_code, 31);
    assert_eq!(describe(&mut c, ANY, None, ANY).await.0, 31);
    let spec = (TOPIC, "x", LITERAL, anon, "*", READ, ALLOW);
    assert_eq!(create(&mut c, &[spec]).await, vec![31]);
    grant(
        &broker,
        &[(CLUSTER, "kafka-cluster", LITERAL, anon, "*", CREATE, ALLOW)],
    )
    .await;
    // ALTER is still missing; DESCRIBE is not implied by CREATE.
    assert_eq!(create(&mut c, &[spec]).await, vec![31]);
    assert_eq!(describe(&mut c, ANY, None, ANY).await.0, 31);
    grant(
        &broker,
        &[(CLUSTER, "kafka-cluster", LITERAL, anon, "*", 7, ALLOW)],
    )
    .await;
    assert_eq!(create(&mut c, &[spec]).await, vec![0]);
    assert_eq!(
        describe(&mut c, ANY, None, ANY).await.0,
        0,
        "ALTER implies DESCRIBE"
    );
    broker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn topic_admin_requests_are_authorized_per_topic() {
    use kafka_protocol::messages::create_topics_request::CreatableTopic;
    use kafka_protocol::messages::{
        CreateTopicsRequest, CreateTopicsResponse, DeleteTopicsRequest, DeleteTopicsResponse,
        TopicName,
    };
    let (broker, _dir) = start_broker(&[AUTHORIZER, "allow.everyone.if.no.acl.found=false"]).await;
    let anon = "User:ANONYMOUS";
    grant(
        &broker,
        &[(TOPIC, "mine", PREFIXED, anon, "*", CREATE, ALLOW)],
    )
    .await;
    let mut c = Client::connect(&broker).await;
    let req = CreateTopicsRequest::default()
        .with_timeout_ms(5000)
        .with_topics(
            ["mine-1", "theirs-1"]
                .iter()
                .map(|n| {
                    CreatableTopic::default()
                        .with_name(TopicName(s(n)))
                        .with_num_partitions(1)
                        .with_replication_factor(1)
                })
                .collect(),
        );
    c.send(ApiKey::CreateTopics, 7, &req).await;
    let (_, r): (i32, CreateTopicsResponse) = c.recv(ApiKey::CreateTopics, 7).await;
    let mut codes: Vec<(String, i16)> = r
        .topics
        .iter()
        .map(|t| (t.name.0.to_string(), t.error_code))
        .collect();
    codes.sort();
    assert_eq!(codes, vec![("mine-1".into(), 0), ("theirs-1".into(), 29)]);
    let image = broker.broker.metadata.image();
    assert!(image.topic_by_name("mine-1").is_some());
    assert!(image.topic_by_name("theirs-1").is_none());
    // CREATE does not give DELETE.
    let req = DeleteTopicsRequest::default()
        .with_timeout_ms(5000)
        .with_topic_names(vec![TopicName(s("mine-1"))]);
    c.send(ApiKey::DeleteTopics, 5, &req).await;
    let (_, r): (i32, DeleteTopicsResponse) = c.recv(ApiKey::DeleteTopics, 5).await;
    assert_eq!(r.responses[0].error_code, 29);
    assert!(broker
        .broker
        .metadata
        .image()
        .topic_by_name("mine-1")
        .is_some());
    grant(&broker, &[(TOPIC, "mine-1", LITERAL, anon, "*", 6, ALLOW)]).await;
    c.send(ApiKey::DeleteTopics, 5, &req).await;
    let (_, r): (i32, DeleteTopicsResponse) = c.recv(ApiKey::DeleteTopics, 5).await;
    assert_eq!(r.responses[0].error_code, 0);
    assert!(broker
        .broker
        .metadata
        .image()
        .topic_by_name("mine-1")
        .is_none());
    broker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn group_requests_need_read_on_the_group_and_commits_on_the_topic() {
    use kafka_protocol::messages::offset_commit_request::{
        OffsetCommitRequestPartition, OffsetCommitRequestTopic,
    };
    use kafka_protocol::messages::{
        GroupId, HeartbeatRequest, HeartbeatResponse, OffsetCommitRequest, OffsetCommitResponse,
        TopicName,
    };
    let (broker, _dir) = start_broker(&[AUTHORIZER, "allow.everyone.if.no.acl.found=false"]).await;
    let anon = "User:ANONYMOUS";
    grant(
        &broker,
        &[
            (3, "g", LITERAL, anon, "*", READ, ALLOW),
            (TOPIC, "ok", LITERAL, anon, "*", READ, ALLOW),
        ],
    )
    .await;
    let mut c = Client::connect(&broker).await;
    let hb = |g: &str| HeartbeatRequest::default().with_group_id(GroupId(s(g)));
    c.send(ApiKey::Heartbeat, 4, &hb("other")).await;
    let (_, r): (i32, HeartbeatResponse) = c.recv(ApiKey::Heartbeat, 4).await;
    assert_eq!(r.error_code, 30, "no READ on the group");
    c.send(ApiKey::Heartbeat, 4, &hb("g")).await;
    let (_, r): (i32, HeartbeatResponse) = c.recv(ApiKey::Heartbeat, 4).await;
    assert_ne!(
        r.error_code, 30,
        "READ on the group: the coordinator answers"
    );

    let commit = |g: &str| {
        OffsetCommitRequest::default()
            .with_group_id(GroupId(s(g)))
            .with_generation_id_or_member_epoch(-1)
            .with_topics(
                ["ok", "secret"]
                    .iter()
                    .map(|t| {
                        OffsetCommitRequestTopic::default()
                            .with_name(TopicName(s(t)))
                            .with_partitions(vec![OffsetCommitRequestPartition::default()
                                .with_partition_index(0)
                                .with_committed_offset(1)])
                    })
                    .collect(),
            )
    };
    c.send(ApiKey::OffsetCommit, 8, &commit("other")).await;
    let (_, r): (i32, OffsetCommitResponse) = c.recv(ApiKey::OffsetCommit, 8).await;
    let codes: Vec<i16> = r
        .topics
        .iter()
        .map(|t| t.partitions[0].error_code)
        .collect();
    assert_eq!(codes, vec![30, 30]);
    c.send(ApiKey::OffsetCommit, 8, &commit("g")).await;
    let (_, r): (i32, OffsetCommitResponse) = c.recv(ApiKey::OffsetCommit, 8).await;
    let by_topic: Vec<(String, i16)> = r
        .topics
        .iter()
        .map(|t| (t.name.0.to_string(), t.partitions[0].error_code))
        .collect();
    // "ok" reaches the coordinator (the topic does not exist: UNKNOWN_TOPIC_OR_PARTITION),
    // "secret" is refused before.
    assert_eq!(by_topic, vec![("ok".into(), 3), ("secret".into(), 29)]);
    broker.shutdown().await;
}

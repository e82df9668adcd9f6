//! CreateTopics / DeleteTopics / Metadata / DescribeConfigs error handling over a real socket,
//! and metadata surviving a restart.

mod common;

use common::{start_broker, Client};
use josefine::config::{Config, ServeArgs};
use kafka_protocol::messages::create_topics_request::{CreatableTopic, CreatableTopicConfig};
use kafka_protocol::messages::delete_topics_request::DeleteTopicState;
use kafka_protocol::messages::describe_configs_request::DescribeConfigsResource;
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::{
    ApiKey, CreateTopicsRequest, CreateTopicsResponse, DeleteTopicsRequest, DeleteTopicsResponse,
    DescribeConfigsRequest, DescribeConfigsResponse, MetadataRequest, MetadataResponse, TopicName,
};
use kafka_protocol::protocol::StrBytes;

fn name(s: &str) -> TopicName {
    TopicName(StrBytes::from_string(s.into()))
}

fn topic(n: &str, partitions: i32, rf: i16, configs: &[(&str, &str)]) -> CreatableTopic {
    CreatableTopic::default()
        .with_name(name(n))
        .with_num_partitions(partitions)
        .with_replication_factor(rf)
        .with_configs(
            configs
                .iter()
                .map(|(k, v)| {
                    CreatableTopicConfig::default()
                        .with_name(StrBytes::from_string(k.to_string()))
                        .with_value(Some(StrBytes::from_string(v.to_string())))
                })
                .collect(),
        )
}

async fn create(
    c: &mut Client,
    topics: Vec<CreatableTopic>,
    validate_only: bool,
) -> Vec<(i16, i32)> {
    let req = CreateTopicsRequest::default()
        .with_topics(topics)
        .with_timeout_ms(5000)
        .with_validate_only(validate_only);
    c.send(ApiKey::CreateTopics, 7, &req).await;
    let (_, r): (i32, CreateTopicsResponse) = c.recv(ApiKey::CreateTopics, 7).await;
    r.topics
        .iter()
        .map(|t| (t.error_code, t.num_partitions))
        .collect()
}

async fn metadata(c: &mut Client, topic: &str, auto_create: bool) -> MetadataResponse {
    let req = MetadataRequest::default()
        .with_topics(Some(vec![
            MetadataRequestTopic::default().with_name(Some(name(topic)))
        ]))
        .with_allow_auto_topic_creation(auto_create);
    c.send(ApiKey::Metadata, 12, &req).await;
    c.recv::<MetadataResponse>(ApiKey::Metadata, 12).await.1
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_topics_errors_match_kafka() {
    let (broker, _dir) = start_broker(&["num.partitions=3"]).await;
    let mut c = Client::connect(&broker).await;
    // validate_only: success, nothing created.
    assert_eq!(
        create(&mut c, vec![topic("v", 2, 1, &[])], true).await,
        vec![(0, 2)]
    );
    assert_eq!(metadata(&mut c, "v", false).await.topics[0].error_code, 3);
    // -1 means the broker defaults (num.partitions=3).
    assert_eq!(
        create(
            &mut c,
            vec![topic("d", -1, -1, &[("retention.ms", "1000")])],
            false
        )
        .await,
        vec![(0, 3)]
    );
    let results = create(
        &mut c,
        vec![
            topic("d", 1, 1, &[]),                            // exists
            topic("bad name", 1, 1, &[]),                     // invalid name
            topic("zero", 0, 1, &[]),                         // invalid partitions
            topic("rf3", 1, 3, &[]),                          // rf > brokers
            topic("cfg", 1, 1, &[("retention.msx", "1")]),    // unknown config
            topic("cfg2", 1, 1, &[("retention.ms", "soon")]), // bad value
        ],
        false,
    )
    .await;
    let codes: Vec<i16> = results.iter().map(|r| r.0).collect();
    assert_eq!(codes, vec![36, 17, 37, 38, 40, 40]);
    // Duplicate names in one request: INVALID_REQUEST for both.
    let codes: Vec<i16> = create(
        &mut c,
        vec![topic("dup", 1, 1, &[]), topic("dup", 1, 1, &[])],
        false,
    )
    .await
    .iter()
    .map(|r| r.0)
    .collect();
    assert_eq!(codes, vec![42, 42]);

    // Metadata: invalid name, unknown with auto-create off, auto-create on.
    assert_eq!(
        metadata(&mut c, "no/slash", true).await.topics[0].error_code,
        17
    );
    assert_eq!(
        metadata(&mut c, "auto", false).await.topics[0].error_code,
        3
    );
    let md = metadata(&mut c, "auto", true).await;
    assert_eq!(
        (md.topics[0].error_code, md.topics[0].partitions.len()),
        (0, 3)
    );

    // DescribeConfigs shows the explicit config as dynamic and the rest as defaults.
    let req =
        DescribeConfigsRequest::default().with_resources(vec![DescribeConfigsResource::default()
            .with_resource_type(2)
            .with_resource_name(StrBytes::from_static_str("d"))]);
    c.send(ApiKey::DescribeConfigs, 4, &req).await;
    let (_, r): (i32, DescribeConfigsResponse) = c.recv(ApiKey::DescribeConfigs, 4).await;
    let retention = r.results[0]
        .configs
        .iter()
        .find(|e| e.name.as_str() == "retention.ms")
        .unwrap();
    assert_eq!(
        (retention.value.as_deref(), retention.config_source),
        (Some("1000"), 1)
    );

    // DeleteTopics v6 by id, and an unknown id.
    let id = metadata(&mut c, "d", false).await.topics[0].topic_id;
    let req = DeleteTopicsRequest::default().with_topics(vec![
        DeleteTopicState::default()
            .with_name(None)
            .with_topic_id(id),
        DeleteTopicState::default()
            .with_name(None)
            .with_topic_id(uuid::Uuid::from_u128(7)),
    ]);
    c.send(ApiKey::DeleteTopics, 6, &req).await;
    let (_, r): (i32, DeleteTopicsResponse) = c.recv(ApiKey::DeleteTopics, 6).await;
    assert_eq!(
        (r.responses[0].error_code, r.responses[1].error_code),
        (0, 100)
    );
    assert_eq!(
        r.responses[0].name.as_ref().map(|n| n.0.to_string()),
        Some("d".to_string())
    );
    broker.shutdown().await;
}

/// Kafka's `ReplicationControlManager.createTopic`: a replication factor of 0 or below -1 is
/// INVALID_REPLICATION_FACTOR with its message, checked before the partition count.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replication_factor_of_0_or_below_minus_1_is_refused_as_kafka_does() {
    let (broker, _dir) = start_broker(&[]).await;
    let mut c = Client::connect(&broker).await;
    let req = CreateTopicsRequest::default()
        .with_topics(vec![
            topic("rf0", 1, 0, &[]),
            topic("rfm2", 1, -2, &[]),
            topic("both0", 0, 0, &[]),
            topic("p0", 0, 1, &[]),
        ])
        .with_timeout_ms(5000);
    c.send(ApiKey::CreateTopics, 7, &req).await;
    let (_, r): (i32, CreateTopicsResponse) = c.recv(ApiKey::CreateTopics, 7).await;
    let got: Vec<(i16, Option<String>)> = r
        .topics
        .iter()
        .map(|t| {
            (
                t.error_code,
                t.error_message.as_ref().map(|m| m.to_string()),
            )
        })
        .collect();
    let rf = Some(
        "Replication factor must be larger than 0, or -1 to use the default value.".to_string(),
    );
    let partitions =
        Some("Number of partitions was set to an invalid non-positive value.".to_string());
    assert_eq!(
        got,
        vec![
            (38, rf.clone()),
            (38, rf.clone()),
            (38, rf),
            (37, partitions)
        ]
    );
    assert_eq!(metadata(&mut c, "rf0", false).await.topics[0].error_code, 3);
    broker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn topics_survive_a_restart_with_the_same_id() {
    let (broker, dir) = start_broker(&[]).await;
    let mut c = Client::connect(&broker).await;
    assert_eq!(
        create(&mut c, vec![topic("keep", 2, 1, &[])], false).await,
        vec![(0, 2)]
    );
    let before = metadata(&mut c, "keep", false).await;
    let cluster_before = before.cluster_id.clone();
    drop(c);
    broker.shutdown().await;

    let args = ServeArgs {
        listen: Some("127.0.0.1:0".into()),
        raft_listen: Some("127.0.0.1:0".into()),
        data_dir: Some(dir.path().to_path_buf()),
        ..ServeArgs::default()
    };
    // The old broker's last handles (connection tasks, the metadata thread) release the data
    // directory lock asynchronously after shutdown; a new process would not have to wait.
    let mut attempt = 0;
    let broker = loop {
        match josefine::server::start(Config::resolve(args.clone()).unwrap()).await {
            Ok(b) => break b,
            Err(_) if attempt < 100 => {
                attempt += 1;
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
            Err(e) => panic!("restart failed: {e:#}"),
        }
    };
    let mut c = Client::connect(&broker).await;
    let after = metadata(&mut c, "keep", false).await;
    assert_eq!(after.topics[0].error_code, 0);
    assert_eq!(after.topics[0].topic_id, before.topics[0].topic_id);
    assert_eq!(after.topics[0].partitions.len(), 2);
    assert_eq!(after.cluster_id, cluster_before);
    broker.shutdown().await;
}

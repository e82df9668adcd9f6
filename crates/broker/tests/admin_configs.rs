//! DescribeConfigs / AlterConfigs / IncrementalAlterConfigs / CreatePartitions over a real
//! socket, for what client libraries cannot send: duplicate resources and keys, null values,
//! unknown operations and resource types, and the v3+ `config_type`/`documentation` fields.
//! (The client-facing behaviour is in tests/integration/test_configs.py and
//! test_create_partitions.py, checked against Kafka.)

mod common;

use common::{start_broker, Client};
use kafka_protocol::messages::create_partitions_request::CreatePartitionsTopic;
use kafka_protocol::messages::create_topics_request::CreatableTopic;
use kafka_protocol::messages::describe_configs_request::DescribeConfigsResource;
use kafka_protocol::messages::incremental_alter_configs_request::{
    AlterConfigsResource, AlterableConfig,
};
use kafka_protocol::messages::{
    ApiKey, CreatePartitionsRequest, CreatePartitionsResponse, CreateTopicsRequest,
    CreateTopicsResponse, DescribeConfigsRequest, DescribeConfigsResponse,
    IncrementalAlterConfigsRequest, IncrementalAlterConfigsResponse, TopicName,
};
use kafka_protocol::protocol::StrBytes;

const INVALID_REQUEST: i16 = 42;

fn s(v: &str) -> StrBytes {
    StrBytes::from_string(v.to_string())
}

async fn create_topic(c: &mut Client, name: &str) {
    let req = CreateTopicsRequest::default()
        .with_topics(vec![CreatableTopic::default()
            .with_name(TopicName(s(name)))
            .with_num_partitions(1)
            .with_replication_factor(1)])
        .with_timeout_ms(5000);
    c.send(ApiKey::CreateTopics, 7, &req).await;
    let (_, r): (i32, CreateTopicsResponse) = c.recv(ApiKey::CreateTopics, 7).await;
    assert_eq!(r.topics[0].error_code, 0);
}

fn op(name: &str, operation: i8, value: Option<&str>) -> AlterableConfig {
    AlterableConfig::default()
        .with_name(s(name))
        .with_config_operation(operation)
        .with_value(value.map(s))
}

async fn incremental(c: &mut Client, resources: Vec<AlterConfigsResource>) -> Vec<i16> {
    let req = IncrementalAlterConfigsRequest::default().with_resources(resources);
    c.send(ApiKey::IncrementalAlterConfigs, 1, &req).await;
    let (_, r): (i32, IncrementalAlterConfigsResponse) =
        c.recv(ApiKey::IncrementalAlterConfigs, 1).await;
    r.responses.iter().map(|r| r.error_code).collect()
}

fn resource(resource_type: i8, name: &str, configs: Vec<AlterableConfig>) -> AlterConfigsResource {
    AlterConfigsResource::default()
        .with_resource_type(resource_type)
        .with_resource_name(s(name))
        .with_configs(configs)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn describe_v4_has_types_documentation_and_static_sources() {
    let (broker, _dir) = start_broker(&["log.retention.hours=2"]).await;
    let mut c = Client::connect(&broker).await;
    create_topic(&mut c, "t").await;
    let req = DescribeConfigsRequest::default()
        .with_resources(vec![DescribeConfigsResource::default()
            .with_resource_type(2)
            .with_resource_name(s("t"))
            .with_configuration_keys(None)])
        .with_include_synonyms(true)
        .with_include_documentation(true);
    c.send(ApiKey::DescribeConfigs, 4, &req).await;
    let (_, r): (i32, DescribeConfigsResponse) = c.recv(ApiKey::DescribeConfigs, 4).await;
    let configs = &r.results[0].configs;
    let get = |n: &str| configs.iter().find(|e| e.name.as_str() == n).unwrap();
    let retention = get("retention.ms");
    // --set log.retention.hours=2 reaches the topic as 2 h, reported as a static broker config.
    assert_eq!(retention.value.as_deref(), Some("7200000"));
    assert_eq!(retention.config_source, 4);
    assert_eq!(retention.config_type, 5, "LONG");
    assert!(retention
        .documentation
        .as_ref()
        .is_some_and(|d| !d.is_empty()));
    let synonyms: Vec<(&str, i8)> = retention
        .synonyms
        .iter()
        .map(|s| (s.name.as_str(), s.source))
        .collect();
    assert_eq!(
        synonyms,
        vec![("log.retention.hours", 4), ("log.retention.ms", 5)],
        "static synonym, then the Kafka default"
    );
    assert_eq!(get("cleanup.policy").config_type, 7, "LIST");
    assert_eq!(get("min.cleanable.dirty.ratio").config_type, 6, "DOUBLE");
    assert_eq!(get("segment.bytes").config_type, 3, "INT");
    assert!(
        configs.iter().all(|e| !e.read_only && !e.is_sensitive),
        "topic configs are alterable"
    );
    assert!(
        configs
            .iter()
            .all(|e| e.name.as_str() != "internal.segment.bytes"),
        "the test-only config is hidden unless set"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_alters_are_invalid_request() {
    let (broker, _dir) = start_broker(&[]).await;
    let mut c = Client::connect(&broker).await;
    create_topic(&mut c, "t").await;
    let set = |v| op("retention.ms", 0, Some(v));
    // The same resource twice: both refused, neither applied.
    assert_eq!(
        incremental(
            &mut c,
            vec![
                resource(2, "t", vec![set("1000")]),
                resource(2, "t", vec![set("2000")])
            ]
        )
        .await,
        vec![INVALID_REQUEST, INVALID_REQUEST]
    );
    for configs in [
        vec![set("1000"), op("retention.ms", 1, None)], // one key twice
        vec![op("retention.ms", 0, None)],              // SET without a value
        vec![op("retention.ms", 9, Some("1"))],         // no such operation
    ] {
        assert_eq!(
            incremental(&mut c, vec![resource(2, "t", configs.clone())]).await,
            vec![INVALID_REQUEST],
            "{configs:?}"
        );
    }
    assert_eq!(
        incremental(&mut c, vec![resource(4, "abc", vec![set("1")])]).await,
        vec![INVALID_REQUEST],
        "broker names are numeric"
    );
    assert_eq!(
        incremental(&mut c, vec![resource(8, "1", vec![set("1")])]).await,
        vec![INVALID_REQUEST],
        "no broker loggers"
    );
    // None of that changed the topic.
    let req =
        DescribeConfigsRequest::default().with_resources(vec![DescribeConfigsResource::default()
            .with_resource_type(2)
            .with_resource_name(s("t"))
            .with_configuration_keys(Some(vec![s("retention.ms")]))]);
    c.send(ApiKey::DescribeConfigs, 1, &req).await;
    let (_, r): (i32, DescribeConfigsResponse) = c.recv(ApiKey::DescribeConfigs, 1).await;
    assert_eq!(r.results[0].configs.len(), 1);
    assert_eq!(r.results[0].configs[0].config_source, 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_partitions_refuses_a_topic_named_twice() {
    let (broker, _dir) = start_broker(&[]).await;
    let mut c = Client::connect(&broker).await;
    create_topic(&mut c, "t").await;
    let grow = |count| {
        CreatePartitionsTopic::default()
            .with_name(TopicName(s("t")))
            .with_count(count)
            .with_assignments(None)
    };
    let req = CreatePartitionsRequest::default()
        .with_topics(vec![grow(2), grow(3)])
        .with_timeout_ms(5000);
    c.send(ApiKey::CreatePartitions, 3, &req).await;
    let (_, r): (i32, CreatePartitionsResponse) = c.recv(ApiKey::CreatePartitions, 3).await;
    let codes: Vec<i16> = r.results.iter().map(|t| t.error_code).collect();
    assert_eq!(codes, vec![INVALID_REQUEST, INVALID_REQUEST]);
    let req = CreatePartitionsRequest::default()
        .with_topics(vec![grow(3)])
        .with_timeout_ms(5000);
    c.send(ApiKey::CreatePartitions, 0, &req).await;
    let (_, r): (i32, CreatePartitionsResponse) = c.recv(ApiKey::CreatePartitions, 0).await;
    assert_eq!(
        r.results[0].error_code, 0,
        "v0 works and the duplicates changed nothing"
    );
}

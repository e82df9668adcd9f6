//! Replica placement through the admin APIs on a broker whose image holds three nodes (node 1,
//! this broker; nodes 2 and 3 registered and unfenced by hand, racks r1-r3): CreateTopics and
//! CreatePartitions place over the eligible brokers with Kafka's errors; the one switch
//! (`handlers::replication_factor_supported`) lets any factor through now that partitions
//! replicate.

mod common;

use common::{add_unfenced_node, start_broker, Client};
use josefine::controller::ControllerRuntime;
use josefine_meta::{Command, PartitionAssignment, TopicId};
use kafka_protocol::messages::create_partitions_request::{
    CreatePartitionsAssignment, CreatePartitionsTopic,
};
use kafka_protocol::messages::create_topics_request::CreatableTopic;
use kafka_protocol::messages::{
    ApiKey, BrokerHeartbeatRequest, BrokerId, CreatePartitionsRequest, CreatePartitionsResponse,
    CreateTopicsRequest, CreateTopicsResponse, ResponseKind, TopicName,
};
use kafka_protocol::protocol::StrBytes;

const TOPIC_ID: TopicId = TopicId([0x77; 16]);

fn name(s: &str) -> TopicName {
    TopicName(StrBytes::from_string(s.into()))
}

async fn create_topic(c: &mut Client, topic: &str, partitions: i32, rf: i16) -> (i16, String) {
    let req = CreateTopicsRequest::default()
        .with_topics(vec![CreatableTopic::default()
            .with_name(name(topic))
            .with_num_partitions(partitions)
            .with_replication_factor(rf)])
        .with_timeout_ms(5000);
    c.send(ApiKey::CreateTopics, 7, &req).await;
    let (_, r): (i32, CreateTopicsResponse) = c.recv(ApiKey::CreateTopics, 7).await;
    let t = &r.topics[0];
    (
        t.error_code,
        t.error_message
            .as_ref()
            .map(|m| m.to_string())
            .unwrap_or_default(),
    )
}

async fn create_partitions(
    c: &mut Client,
    count: i32,
    manual: Option<Vec<Vec<i32>>>,
) -> (i16, String) {
    let req = CreatePartitionsRequest::default()
        .with_topics(vec![CreatePartitionsTopic::default()
            .with_name(name("placed"))
            .with_count(count)
            .with_assignments(manual.map(|m| {
                m.into_iter()
                    .map(|replicas| {
                        CreatePartitionsAssignment::default()
                            .with_broker_ids(replicas.into_iter().map(BrokerId).collect())
                    })
                    .collect()
            }))])
        .with_timeout_ms(5000);
    c.send(ApiKey::CreatePartitions, 3, &req).await;
    let (_, r): (i32, CreatePartitionsResponse) = c.recv(ApiKey::CreatePartitions, 3).await;
    let t = &r.results[0];
    (
        t.error_code,
        t.error_message
            .as_ref()
            .map(|m| m.to_string())
            .unwrap_or_default(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn placement_uses_eligible_brokers() {
    let (broker, _dir) = start_broker(&[]).await;
    // Nodes 2 and 3 never heartbeat: keep the session timer from fencing them.
    broker.broker.controller.pause_timer(true);
    for node in [2, 3] {
        add_unfenced_node(&broker, node, Some(format!("r{node}"))).await;
    }
    let mut c = Client::connect(&broker).await;

    // Three eligible brokers: RF 3 is placed, every partition on all three.
    let (error, message) = create_topic(&mut c, "rf3", 3, 3).await;
    assert_eq!(error, 0, "{message}");
    assert!(josefine::handlers::replication_factor_supported(3));
    assert!(josefine::handlers::replication_factor_supported(1));
    let image = broker.broker.metadata.image();
    for p in &image.topic_by_name("rf3").unwrap().partitions {
        let mut replicas = p.replicas.clone();
        replicas.sort();
        assert_eq!(replicas, vec![1, 2, 3], "{p:?}");
    }
    // RF 4: Kafka's placer message, prefixed as Kafka's CreateTopics does.
    let (error, message) = create_topic(&mut c, "rf4", 1, 4).await;
    assert_eq!(error, 38);
    assert_eq!(
        message,
        "Unable to replicate the partition 4 time(s): The target replication factor of 4 \
         cannot be reached because only 3 broker(s) are registered."
    );
    // RF 1 spreads leaders over the three brokers.
    assert_eq!(create_topic(&mut c, "rf1", 3, 1).await.0, 0);
    let image = broker.broker.metadata.image();
    let mut leaders: Vec<i32> = image
        .topic_by_name("rf1")
        .unwrap()
        .partitions
        .iter()
        .map(|p| p.leader)
        .collect();
    leaders.sort();
    assert_eq!(leaders, vec![1, 2, 3]);

    // An RF=3 topic staged directly: CreatePartitions places the
    // new partitions on three different brokers, all in sync, led by the first.
    broker
        .broker
        .metadata
        .propose(Command::CreateTopic {
            topic_id: TOPIC_ID,
            name: "placed".into(),
            partitions: vec![PartitionAssignment::led_by_first(0, vec![1, 2, 3])],
            configs: vec![],
        })
        .await
        .unwrap();
    assert_eq!(create_partitions(&mut c, 3, None).await.0, 0);
    let image = broker.broker.metadata.image();
    for p in &image.topic_by_name("placed").unwrap().partitions[1..] {
        let mut replicas = p.replicas.clone();
        replicas.sort();
        assert_eq!(replicas, vec![1, 2, 3], "{p:?}");
        assert_eq!((p.leader, &p.isr), (p.replicas[0], &p.replicas), "{p:?}");
    }

    // Node 3 fenced: only two eligible brokers, so RF 3 cannot be placed (Kafka's
    // CreatePartitions message has no prefix), and a manual assignment is in sync only on
    // the eligible replicas, led by the first of them. Fenced as the controller fences: node
    // 3 asks for it (its leader and ISR changes come in the same batch).
    let heartbeat = BrokerHeartbeatRequest::default()
        .with_broker_id(BrokerId(3))
        .with_broker_epoch(image.brokers[&3].epoch)
        .with_current_metadata_offset(image.position as i64)
        .with_want_fence(true);
    let answer = ControllerRuntime::serve(&broker.broker, 1, heartbeat.into(), None).await;
    assert!(
        matches!(&answer, ResponseKind::BrokerHeartbeat(r) if r.error_code == 0 && r.is_fenced),
        "{answer:?}"
    );
    let (error, message) = create_partitions(&mut c, 4, None).await;
    assert_eq!(error, 38);
    assert_eq!(
        message,
        "The target replication factor of 3 cannot be reached because only 2 broker(s) are \
         registered."
    );
    assert_eq!(
        create_partitions(&mut c, 4, Some(vec![vec![3, 2, 1]]))
            .await
            .0,
        0
    );
    let image = broker.broker.metadata.image();
    let p = &image.topic_by_name("placed").unwrap().partitions[3];
    assert_eq!(
        (p.replicas.clone(), p.leader, p.isr.clone()),
        (vec![3, 2, 1], 2, vec![2, 1])
    );
    broker.shutdown().await;
}

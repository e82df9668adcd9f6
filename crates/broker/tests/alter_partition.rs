//! AlterPartition (API 56 v3) against a real controller over the control channel: a one-voter
//! broker (node 1, the active controller) whose image also holds nodes 2 and 3 (registered and
//! unfenced by hand, as a controller would) and a topic on [1, 2, 3] led by node 1. The test
//! plays node 1's partition leader and calls `ControlClient::alter_partition` at the node's own
//! raft address: success, stale partition epoch, fenced leader epoch, ineligible replicas, a
//! stale requester; and the client listener does not serve the API.

mod common;

use std::time::Duration;

use common::{add_unfenced_node, start_broker, Client};
use josefine::control::ControlClient;
use josefine::server::RunningBroker;
use josefine_meta::{Command, PartitionAssignment, TopicId};
use kafka_protocol::messages::alter_partition_request::{BrokerState, PartitionData, TopicData};
use kafka_protocol::messages::{AlterPartitionRequest, AlterPartitionResponse, ApiKey, BrokerId};
use tokio::time::Instant;

const TOPIC_ID: TopicId = TopicId([0x5a; 16]);

async fn propose(broker: &RunningBroker, cmd: Command) {
    broker.broker.metadata.propose(cmd).await.unwrap();
}

fn epoch_of(broker: &RunningBroker, node: i32) -> i64 {
    broker.broker.metadata.image().brokers[&node].epoch
}

/// Node 1's AlterPartition for partition 0 of the topic.
fn request(
    broker: &RunningBroker,
    leader_epoch: i32,
    partition_epoch: i32,
    isr: &[(i32, i64)],
) -> AlterPartitionRequest {
    AlterPartitionRequest::default()
        .with_broker_id(BrokerId(1))
        .with_broker_epoch(epoch_of(broker, 1))
        .with_topics(vec![TopicData::default()
            .with_topic_id(uuid::Uuid::from_bytes(TOPIC_ID.0))
            .with_partitions(vec![PartitionData::default()
                .with_partition_index(0)
                .with_leader_epoch(leader_epoch)
                .with_partition_epoch(partition_epoch)
                .with_new_isr_with_epochs(
                    isr.iter()
                        .map(|&(id, epoch)| {
                            BrokerState::default()
                                .with_broker_id(BrokerId(id))
                                .with_broker_epoch(epoch)
                        })
                        .collect(),
                )])])
}

/// The one partition's answer: (error, leader, leader epoch, partition epoch, ISR).
fn outcome(r: &AlterPartitionResponse) -> (i16, i32, i32, i32, Vec<i32>) {
    assert_eq!(r.error_code, 0, "{r:?}");
    let p = &r.topics[0].partitions[0];
    (
        p.error_code,
        p.leader_id.0,
        p.leader_epoch,
        p.partition_epoch,
        p.isr.iter().map(|b| b.0).collect(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alter_partition_is_decided_by_the_controller_and_answered_once_applied() {
    let (broker, _dir) = start_broker(&[]).await;
    // Nodes 2 and 3 never heartbeat: keep the session timer from fencing them.
    broker.broker.controller.pause_timer(true);
    for node in [2, 3] {
        add_unfenced_node(&broker, node, None).await;
    }
    propose(
        &broker,
        Command::CreateTopic {
            topic_id: TOPIC_ID,
            name: "isr".into(),
            partitions: vec![PartitionAssignment::led_by_first(0, vec![1, 2, 3])],
            configs: vec![],
        },
    )
    .await;
    let client = ControlClient::new(
        "josefine-test",
        &[(1, broker.broker.metadata.raft_addr())],
        broker.broker.metadata.watch_chain_status(),
        Duration::from_secs(5),
    );
    let call = |req: AlterPartitionRequest| {
        let client = &client;
        async move {
            client
                .alter_partition(req, Instant::now() + Duration::from_secs(10))
                .await
                .unwrap()
        }
    };
    let (e1, e2, e3) = (
        epoch_of(&broker, 1),
        epoch_of(&broker, 2),
        epoch_of(&broker, 3),
    );

    // Success: a shrink keeps leader and leader epoch, bumps the partition epoch, and the
    // answer's position covers the change.
    let (r, position) = call(request(&broker, 0, 0, &[(1, e1), (2, e2)])).await;
    assert_eq!(outcome(&r), (0, 1, 0, 1, vec![1, 2]));
    let image = broker.broker.metadata.image();
    assert!(image.position >= position);
    assert_eq!(image.partition(TOPIC_ID, 0).unwrap().isr, vec![1, 2]);

    // A stale partition epoch: INVALID_UPDATE_VERSION, the newer ISR stays.
    let (r, _) = call(request(&broker, 0, 0, &[(1, e1), (3, e3)])).await;
    assert_eq!(outcome(&r).0, 95);
    let image = broker.broker.metadata.image();
    assert_eq!(image.partition(TOPIC_ID, 0).unwrap().isr, vec![1, 2]);

    // An ineligible replica: a broker epoch that is not its registration's.
    let (r, _) = call(request(&broker, 0, 1, &[(1, e1), (2, e2), (3, e3 + 1)])).await;
    assert_eq!(outcome(&r).0, 107);
    // Fenced: node 3 may not join.
    propose(
        &broker,
        Command::FenceBroker {
            node_id: 3,
            epoch: e3,
        },
    )
    .await;
    let (r, _) = call(request(&broker, 0, 1, &[(1, e1), (2, e2), (3, e3)])).await;
    assert_eq!(outcome(&r).0, 107);

    // A fenced leader epoch: leadership moved to 2 and back (leader epoch 2).
    for leader in [2, 1] {
        let pe = broker
            .broker
            .metadata
            .image()
            .partition(TOPIC_ID, 0)
            .unwrap()
            .partition_epoch;
        propose(
            &broker,
            Command::ChangePartition {
                topic_id: TOPIC_ID,
                partition: 0,
                expected_partition_epoch: pe,
                leader: Some(leader),
                isr: None,
            },
        )
        .await;
    }
    let (r, _) = call(request(&broker, 1, 3, &[(1, e1)])).await;
    assert_eq!(outcome(&r).0, 74);
    // At the current epochs the same change goes through.
    let (r, _) = call(request(&broker, 2, 3, &[(1, e1)])).await;
    assert_eq!(outcome(&r), (0, 1, 2, 4, vec![1]));

    // A requester with another broker epoch: STALE_BROKER_EPOCH for the whole request.
    let stale = request(&broker, 2, 4, &[(1, e1), (2, e2)]).with_broker_epoch(e1 + 100);
    let (r, _) = call(stale).await;
    assert_eq!(r.error_code, 77, "{r:?}");
    assert!(r.topics.is_empty());

    // Not a client API: the Kafka listener closes the connection.
    let mut kafka = Client::connect(&broker).await;
    kafka
        .send(
            ApiKey::AlterPartition,
            3,
            &request(&broker, 2, 4, &[(1, e1)]),
        )
        .await;
    assert!(kafka.is_closed().await);

    broker.shutdown().await;
}

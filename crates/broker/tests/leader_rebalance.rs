//! The controller's preferred-leader rebalance on a real broker: with
//! `leader.imbalance.check.interval.seconds=1` (set like any broker setting), a partition whose
//! in-sync preferred replica does not lead gets it back as leader within a few rounds.

mod common;

use std::time::Duration;

use common::{add_unfenced_node, start_broker};
use josefine_meta::{Command, PartitionAssignment, TopicId};

const TOPIC_ID: TopicId = TopicId([0x3b; 16]);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_controller_moves_leadership_back_to_the_preferred_replica() {
    let (broker, _dir) = start_broker(&[
        "leader.imbalance.check.interval.seconds=1",
        // Nodes 2 and 3 never heartbeat: their sessions outlast the test.
        "broker.session.timeout.ms=120000",
    ])
    .await;
    for node in [2, 3] {
        add_unfenced_node(&broker, node, None).await;
    }
    let metadata = &broker.broker.metadata;
    metadata
        .propose(Command::CreateTopic {
            topic_id: TOPIC_ID,
            name: "rebalanced".into(),
            partitions: vec![PartitionAssignment::led_by_first(0, vec![1, 2, 3])],
            configs: vec![],
        })
        .await
        .unwrap();
    let pe = metadata
        .image()
        .partition(TOPIC_ID, 0)
        .unwrap()
        .partition_epoch;
    metadata
        .propose(Command::ChangePartition {
            topic_id: TOPIC_ID,
            partition: 0,
            expected_partition_epoch: pe,
            leader: Some(2),
            isr: None,
        })
        .await
        .unwrap();
    let led_by = || metadata.image().partition(TOPIC_ID, 0).unwrap().leader;
    assert_eq!(led_by(), 2);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while led_by() != 1 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "no rebalance within 10 s"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let p = metadata.image().partition(TOPIC_ID, 0).unwrap().clone();
    assert_eq!((p.leader, p.leader_epoch, p.isr), (1, 2, vec![1, 2, 3]));
    broker.shutdown().await;
}

//! OffsetForLeaderEpoch over a real socket: a broker (node 1) whose partition log holds batches
//! at leader epochs 0, 2 and 6 while the image says it leads at epoch 8 answers every requested
//! epoch as Kafka's `LeaderEpochFileCache.endOffsetFor` would, before and after DeleteRecords
//! moved the log start into an epoch, and refuses as Fetch does (stale or future client epochs,
//! other leaders, no leader, unknown topics and partitions). The leader epoch is driven through
//! the broker's metadata store (the controller's timer paused), as the controller drives it when
//! a broker restarts.

mod common;

use common::{batch, start_broker, Client};
use josefine::server::RunningBroker;
use josefine_meta::{Command, PartitionAssignment, TopicId};
use kafka_protocol::messages::delete_records_request::{
    DeleteRecordsPartition, DeleteRecordsTopic,
};
use kafka_protocol::messages::offset_for_leader_epoch_request::{
    OffsetForLeaderPartition, OffsetForLeaderTopic,
};
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{
    ApiKey, BrokerId, DeleteRecordsRequest, DeleteRecordsResponse, OffsetForLeaderEpochRequest,
    OffsetForLeaderEpochResponse, ProduceRequest, ProduceResponse, TopicName,
};
use kafka_protocol::protocol::StrBytes;

const TOPIC: &str = "epochs";
const TOPIC_ID: TopicId = TopicId([0x23; 16]);
const UNKNOWN_TOPIC_OR_PARTITION: i16 = 3;
const NOT_LEADER_OR_FOLLOWER: i16 = 6;
const FENCED_LEADER_EPOCH: i16 = 74;
const UNKNOWN_LEADER_EPOCH: i16 = 76;
/// `current_leader_epoch` -1: not checked.
const UNCHECKED: i32 = -1;

/// Partitions of `epochs`: the one with data (led by node 1), one led by node 2, one led by
/// node 1 with an empty log, one with no leader.
const DATA: i32 = 0;
const OTHER: i32 = 1;
const EMPTY: i32 = 2;
const LEADERLESS: i32 = 3;

fn name(s: &str) -> TopicName {
    TopicName(StrBytes::from_string(s.into()))
}

async fn propose(broker: &RunningBroker, cmd: Command) {
    broker.broker.metadata.propose(cmd).await.unwrap();
}

/// Sets the leader of `partition` (the leader epoch goes up by one).
async fn change_leader(broker: &RunningBroker, partition: i32, leader: i32) {
    let image = broker.broker.metadata.image();
    let p = image.partition(TOPIC_ID, partition).unwrap();
    propose(
        broker,
        Command::ChangePartition {
            topic_id: TOPIC_ID,
            partition,
            expected_partition_epoch: p.partition_epoch,
            leader: Some(leader),
            isr: None,
        },
    )
    .await;
}

/// What a broker restart does to the partitions it leads: no leader, then leader again, two
/// leader epochs later.
async fn bounce(broker: &RunningBroker, partition: i32) {
    change_leader(broker, partition, PartitionAssignment::NO_LEADER).await;
    change_leader(broker, partition, 1).await;
}

fn leader_epoch(broker: &RunningBroker, partition: i32) -> i32 {
    let image = broker.broker.metadata.image();
    image.partition(TOPIC_ID, partition).unwrap().leader_epoch
}

/// Produces `batches` batches of two records to `partition`, each in its own request.
async fn produce(c: &mut Client, partition: i32, batches: usize) {
    for _ in 0..batches {
        let req = ProduceRequest::default()
            .with_acks(1)
            .with_timeout_ms(5000)
            .with_topic_data(vec![TopicProduceData::default()
                .with_name(name(TOPIC))
                .with_partition_data(vec![PartitionProduceData::default()
                    .with_index(partition)
                    .with_records(Some(batch(&[("k", "a"), ("k", "b")], None)))])]);
        c.send(ApiKey::Produce, 9, &req).await;
        let (_, r): (i32, ProduceResponse) = c.recv(ApiKey::Produce, 9).await;
        assert_eq!(r.responses[0].partition_responses[0].error_code, 0);
    }
}

/// Node 1 (this broker) and a live node 2; topic `epochs` as described at [`DATA`]. The data
/// partition holds epoch 0 at offsets 0-3, epoch 2 at 4-9, epoch 6 at 10-11 (two-record
/// batches), and is led at epoch 8 with nothing written in it yet: log end 12. The empty
/// partition is led at epoch 2.
async fn cluster() -> (RunningBroker, tempfile::TempDir) {
    let (broker, dir) = start_broker(&[]).await;
    // The test stages leader changes, a leaderless partition and a node 2 that never
    // heartbeats; the controller's timer would repair or fence them.
    broker.broker.controller.pause_timer(true);
    propose(
        &broker,
        Command::RegisterBroker {
            node_id: 2,
            incarnation_id: 1002,
            host: "127.0.0.1".into(),
            port: 1,
            rack: None,
        },
    )
    .await;
    let epoch = broker.broker.metadata.image().brokers[&2].epoch;
    propose(&broker, Command::UnfenceBroker { node_id: 2, epoch }).await;
    propose(
        &broker,
        Command::CreateTopic {
            topic_id: TOPIC_ID,
            name: TOPIC.into(),
            partitions: vec![
                PartitionAssignment::led_by_first(DATA, vec![1]),
                PartitionAssignment::led_by_first(OTHER, vec![2]),
                PartitionAssignment::led_by_first(EMPTY, vec![1]),
                PartitionAssignment::led_by_first(LEADERLESS, vec![1]),
            ],
            configs: vec![],
        },
    )
    .await;
    let mut c = Client::connect(&broker).await;
    produce(&mut c, DATA, 2).await;
    bounce(&broker, DATA).await;
    produce(&mut c, DATA, 3).await;
    bounce(&broker, DATA).await;
    bounce(&broker, DATA).await;
    produce(&mut c, DATA, 1).await;
    bounce(&broker, DATA).await;
    assert_eq!(leader_epoch(&broker, DATA), 8);
    bounce(&broker, EMPTY).await;
    change_leader(&broker, LEADERLESS, PartitionAssignment::NO_LEADER).await;
    (broker, dir)
}

/// A request for partitions (index, current_leader_epoch, leader_epoch) of `topic`.
fn request(topic: &str, partitions: &[(i32, i32, i32)]) -> OffsetForLeaderEpochRequest {
    OffsetForLeaderEpochRequest::default()
        .with_replica_id(BrokerId(-1))
        .with_topics(vec![OffsetForLeaderTopic::default()
            .with_topic(name(topic))
            .with_partitions(
                partitions
                    .iter()
                    .map(|&(partition, current, epoch)| {
                        OffsetForLeaderPartition::default()
                            .with_partition(partition)
                            .with_current_leader_epoch(current)
                            .with_leader_epoch(epoch)
                    })
                    .collect(),
            )])
}

/// One partition's answer: (index, error, leader epoch, end offset).
type Answer = (i32, i16, i32, i64);

/// Sends `req` at `version`; returns each partition's answer.
async fn ask(c: &mut Client, version: i16, req: &OffsetForLeaderEpochRequest) -> Vec<Answer> {
    c.send(ApiKey::OffsetForLeaderEpoch, version, req).await;
    let (_, r): (i32, OffsetForLeaderEpochResponse) =
        c.recv(ApiKey::OffsetForLeaderEpoch, version).await;
    assert_eq!(r.topics.len(), 1);
    assert_eq!(r.topics[0].topic, req.topics[0].topic);
    r.topics[0]
        .partitions
        .iter()
        .map(|p| (p.partition, p.error_code, p.leader_epoch, p.end_offset))
        .collect()
}

/// Cases (requested epoch, expected leader epoch, expected end offset) of the data partition
/// asked at its current leader epoch: the request's partitions and the expected answers.
fn expect_all(cases: &[(i32, i32, i64)]) -> (Vec<(i32, i32, i32)>, Vec<Answer>) {
    let asked = cases.iter().map(|&(e, _, _)| (DATA, 8, e)).collect();
    let want = cases
        .iter()
        .map(|&(_, epoch, end)| (DATA, 0, epoch, end))
        .collect();
    (asked, want)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_requested_epoch_answers_as_kafkas_epoch_cache() {
    let (broker, _dir) = cluster().await;
    let mut c = Client::connect(&broker).await;
    // Kafka's cache here: {0: 0, 2: 4, 6: 10, 8: 12}.
    let (asked, want) = expect_all(&[
        // The current epoch ends at the log end.
        (8, 8, 12),
        // Above the current epoch, and UNDEFINED_EPOCH: (-1, -1) without an error.
        (9, -1, -1),
        (-1, -1, -1),
        // An older epoch ends where the next one starts; an epoch with no batches answers the
        // largest one below it; the last epoch with batches ends where the leader's starts.
        (0, 0, 4),
        (1, 0, 4),
        (2, 2, 10),
        (5, 2, 10),
        (6, 6, 12),
        (7, 6, 12),
        // Below every epoch: the requested epoch and the start of the first epoch.
        (-2, -2, 0),
    ]);
    for version in 2..=4 {
        assert_eq!(
            ask(&mut c, version, &request(TOPIC, &asked)).await,
            want,
            "v{version}"
        );
    }
    // A follower (replica id >= 0, v3+) is answered the same way, from the leader.
    let follower = request(TOPIC, &asked).with_replica_id(BrokerId(2));
    assert_eq!(ask(&mut c, 4, &follower).await, want);

    // An empty log led at epoch 2 (Kafka's cache: {2: 0}).
    let asked = [(EMPTY, 2, 0), (EMPTY, 2, 1), (EMPTY, 2, 2), (EMPTY, 2, 3)];
    assert_eq!(
        ask(&mut c, 4, &request(TOPIC, &asked)).await,
        vec![
            (EMPTY, 0, 0, 0),
            (EMPTY, 0, 1, 0),
            (EMPTY, 0, 2, 0),
            (EMPTY, 0, -1, -1)
        ]
    );
    broker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn epochs_below_the_log_start_are_gone_as_in_kafka() {
    let (broker, _dir) = cluster().await;
    let mut c = Client::connect(&broker).await;
    // Move the log start inside the first batch of epoch 2 (offsets 4-5): Kafka's
    // truncateFromStart leaves {2: 5, 6: 10, 8: 12}.
    let delete = DeleteRecordsRequest::default()
        .with_timeout_ms(5000)
        .with_topics(vec![DeleteRecordsTopic::default()
            .with_name(name(TOPIC))
            .with_partitions(vec![DeleteRecordsPartition::default()
                .with_partition_index(DATA)
                .with_offset(5)])]);
    c.send(ApiKey::DeleteRecords, 2, &delete).await;
    let (_, r): (i32, DeleteRecordsResponse) = c.recv(ApiKey::DeleteRecords, 2).await;
    assert_eq!(r.topics[0].partitions[0].low_watermark, 5);
    let (asked, want) = expect_all(&[(0, 0, 5), (1, 1, 5), (2, 2, 10), (6, 6, 12), (8, 8, 12)]);
    assert_eq!(ask(&mut c, 4, &request(TOPIC, &asked)).await, want);
    broker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_are_fetchs() {
    let (broker, _dir) = cluster().await;
    let mut c = Client::connect(&broker).await;
    let asked = [
        // The client's leader epoch: current, stale, from the future.
        (DATA, 8, 2),
        (DATA, 7, 2),
        (DATA, 9, 2),
        (DATA, UNCHECKED, 2),
        // Led by node 2; led by nobody; no such partition.
        (OTHER, UNCHECKED, 0),
        (OTHER, 0, 0),
        (LEADERLESS, UNCHECKED, 0),
        (9, UNCHECKED, 0),
    ];
    assert_eq!(
        ask(&mut c, 4, &request(TOPIC, &asked)).await,
        vec![
            (DATA, 0, 2, 10),
            (DATA, FENCED_LEADER_EPOCH, -1, -1),
            (DATA, UNKNOWN_LEADER_EPOCH, -1, -1),
            (DATA, 0, 2, 10),
            (OTHER, NOT_LEADER_OR_FOLLOWER, -1, -1),
            (OTHER, NOT_LEADER_OR_FOLLOWER, -1, -1),
            (LEADERLESS, NOT_LEADER_OR_FOLLOWER, -1, -1),
            (9, UNKNOWN_TOPIC_OR_PARTITION, -1, -1),
        ]
    );
    // An unknown topic: every partition says so, under the topic's name.
    assert_eq!(
        ask(&mut c, 2, &request("nope", &[(0, UNCHECKED, 0), (1, 3, 1)])).await,
        vec![
            (0, UNKNOWN_TOPIC_OR_PARTITION, -1, -1),
            (1, UNKNOWN_TOPIC_OR_PARTITION, -1, -1),
        ]
    );
    broker.shutdown().await;
}

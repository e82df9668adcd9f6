//! The group coordinator follows the leadership of `__consumer_offsets` in the applied image,
//! over a real socket: a partition this broker stops leading answers NOT_COORDINATOR for its
//! groups; led again it is loaded from the log (what another leader wrote meanwhile
//! included); a new leader epoch while led reloads it; appends carry the image's epoch.
//! Leadership is changed by proposing `ChangePartition` straight to the metadata store, as a
//! controller would.

mod common;

use std::time::Duration;

use common::{start_broker, Client};
use josefine::coordinator_partitions::encode_batch;
use josefine::groups::OFFSETS_TOPIC;
use josefine::server::RunningBroker;
use josefine_group::records::{encode_offset_key, encode_offset_value, OffsetCommitValue};
use josefine_group::OffsetsRecord;
use josefine_log::batch::BatchHeader;
use josefine_meta::{Command, PartitionAssignment, TopicId};
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::offset_commit_request::{
    OffsetCommitRequestPartition, OffsetCommitRequestTopic,
};
use kafka_protocol::messages::offset_fetch_request::OffsetFetchRequestTopic;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;

const NOT_COORDINATOR: i16 = 16;
const COORDINATOR_LOAD_IN_PROGRESS: i16 = 14;

fn s(v: &str) -> StrBytes {
    StrBytes::from_string(v.to_string())
}

async fn call<Req, Resp>(broker: &RunningBroker, key: ApiKey, version: i16, req: &Req) -> Resp
where
    Req: kafka_protocol::protocol::Encodable,
    Resp: kafka_protocol::protocol::Decodable,
{
    let mut c = Client::connect(broker).await;
    c.send(key, version, req).await;
    c.recv::<Resp>(key, version).await.1
}

/// Error code of an assign-mode commit of `offset` for group "g", t-0.
async fn commit(broker: &RunningBroker, offset: i64) -> i16 {
    let req = OffsetCommitRequest::default()
        .with_group_id(GroupId(s("g")))
        .with_generation_id_or_member_epoch(-1)
        .with_topics(vec![OffsetCommitRequestTopic::default()
            .with_name(TopicName(s("t")))
            .with_partitions(vec![OffsetCommitRequestPartition::default()
                .with_partition_index(0)
                .with_committed_offset(offset)])]);
    let r: OffsetCommitResponse = call(broker, ApiKey::OffsetCommit, 8, &req).await;
    r.topics[0].partitions[0].error_code
}

/// (error, committed offset of t-0) for group "g".
async fn fetch(broker: &RunningBroker) -> (i16, i64) {
    let req = OffsetFetchRequest::default()
        .with_group_id(GroupId(s("g")))
        .with_topics(Some(vec![OffsetFetchRequestTopic::default()
            .with_name(TopicName(s("t")))
            .with_partition_indexes(vec![0])]));
    let r: OffsetFetchResponse = call(broker, ApiKey::OffsetFetch, 7, &req).await;
    let offset = r
        .topics
        .first()
        .map_or(-1, |t| t.partitions[0].committed_offset);
    (r.error_code, offset)
}

/// Fetches until the answer is `want`: the coordinator follows the image asynchronously.
async fn fetch_until(broker: &RunningBroker, want: (i16, i64)) {
    let mut last = (0, 0);
    for _ in 0..200 {
        last = fetch(broker).await;
        if last == want {
            return;
        }
        assert!(
            [0, NOT_COORDINATOR, COORDINATOR_LOAD_IN_PROGRESS].contains(&last.0),
            "{last:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("OffsetFetch answers {last:?}, never {want:?}");
}

fn offsets_partition(broker: &RunningBroker) -> (TopicId, PartitionAssignment) {
    let image = broker.broker.metadata.image();
    let t = image.topic_by_name(OFFSETS_TOPIC).unwrap();
    (t.topic_id, t.partitions[0].clone())
}

/// Sets the leader of `__consumer_offsets` partition 0 to each of `leaders` in turn, in one
/// metadata change.
async fn set_leaders(broker: &RunningBroker, leaders: &[i32]) {
    let (topic_id, p) = offsets_partition(broker);
    let changes: Vec<Command> = leaders
        .iter()
        .enumerate()
        .map(|(i, &leader)| Command::ChangePartition {
            topic_id,
            partition: 0,
            expected_partition_epoch: p.partition_epoch + i as i32,
            leader: Some(leader),
            isr: None,
        })
        .collect();
    let cmd = match changes.len() {
        1 => changes.into_iter().next().unwrap(),
        _ => Command::Batch(changes),
    };
    broker.broker.metadata.propose(cmd).await.unwrap();
}

/// Appends a commit of `offset` for g/t-0 to the offsets log at `leader_epoch`, as another
/// leader of the partition would have.
fn write_as_other_leader(broker: &RunningBroker, offset: i64, leader_epoch: i32) {
    let (topic_id, _) = offsets_partition(broker);
    let now = 1_700_000_000_000;
    let record = OffsetsRecord {
        key: encode_offset_key("g", "t", 0),
        value: Some(encode_offset_value(&OffsetCommitValue {
            offset,
            leader_epoch: -1,
            metadata: String::new(),
            commit_timestamp_ms: now,
            expire_timestamp_ms: None,
        })),
        timestamp_ms: now,
    };
    let log = broker
        .broker
        .partitions
        .get(topic_id, 0)
        .unwrap()
        .log
        .clone();
    log.append(&encode_batch(&[record]).unwrap(), leader_epoch, now)
        .unwrap();
}

/// The leader epoch stamped on the last batch of the offsets log.
fn last_batch_epoch(broker: &RunningBroker) -> i32 {
    let (topic_id, _) = offsets_partition(broker);
    let log = broker
        .broker
        .partitions
        .get(topic_id, 0)
        .unwrap()
        .log
        .clone();
    let last = log.log_end_offset() - 1;
    let read = log.read(last, 1 << 20, last + 1).unwrap();
    BatchHeader::parse(&read.records)
        .unwrap()
        .partition_leader_epoch
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn coordinator_follows_offsets_partition_leadership() {
    let (broker, _dir) = start_broker(&[
        "group.initial.rebalance.delay.ms=0",
        "offsets.topic.num.partitions=1",
    ])
    .await;
    // The test stages leaderless partitions; the controller's timer would re-elect them.
    broker.broker.controller.pause_timer(true);
    let md = MetadataRequest::default()
        .with_topics(Some(vec![
            MetadataRequestTopic::default().with_name(Some(TopicName(s("t"))))
        ]))
        .with_allow_auto_topic_creation(true);
    let _: MetadataResponse = call(&broker, ApiKey::Metadata, 12, &md).await;
    let find = FindCoordinatorRequest::default().with_key(s("g"));
    let found: FindCoordinatorResponse = call(&broker, ApiKey::FindCoordinator, 3, &find).await;
    assert_eq!(found.error_code, 0);
    fetch_until(&broker, (0, -1)).await;
    assert_eq!(commit(&broker, 5).await, 0);
    assert_eq!(fetch(&broker).await, (0, 5));
    let epoch = offsets_partition(&broker).1.leader_epoch;
    assert_eq!(last_batch_epoch(&broker), epoch);

    // Leadership moves away: its groups are not served here any more.
    set_leaders(&broker, &[PartitionAssignment::NO_LEADER]).await;
    fetch_until(&broker, (NOT_COORDINATOR, -1)).await;
    assert_eq!(commit(&broker, 6).await, NOT_COORDINATOR);
    let join = JoinGroupRequest::default()
        .with_group_id(GroupId(s("g")))
        .with_session_timeout_ms(10_000)
        .with_rebalance_timeout_ms(10_000)
        .with_member_id(s(""))
        .with_protocol_type(s("consumer"));
    let joined: JoinGroupResponse = call(&broker, ApiKey::JoinGroup, 9, &join).await;
    assert_eq!(joined.error_code, NOT_COORDINATOR);

    // It comes back (epoch + 1) after another leader committed 9: loaded from the log.
    write_as_other_leader(&broker, 9, epoch + 1);
    set_leaders(&broker, &[1]).await;
    fetch_until(&broker, (0, 9)).await;

    // A new epoch while still led (another leader may have written in between): reloaded.
    let epoch = offsets_partition(&broker).1.leader_epoch;
    write_as_other_leader(&broker, 11, epoch + 2);
    set_leaders(&broker, &[PartitionAssignment::NO_LEADER, 1]).await;
    fetch_until(&broker, (0, 11)).await;

    // Its appends carry the image's leader epoch.
    assert_eq!(commit(&broker, 12).await, 0);
    assert_eq!(fetch(&broker).await, (0, 12));
    assert_eq!(last_batch_epoch(&broker), epoch + 2);
    assert_eq!(offsets_partition(&broker).1.leader_epoch, epoch + 2);
    broker.shutdown().await;
}

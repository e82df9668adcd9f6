//! Transactional offset commits: pending until the transaction's marker, visible after a
//! commit marker, dropped by an abort, and UNSTABLE_OFFSET_COMMIT to `require_stable` fetches
//! meanwhile.

mod harness;

use harness::*;
use josefine_group::{partition_for, GroupConfig, GroupRequest, GroupResponse};
use kafka_protocol::messages::offset_fetch_request::OffsetFetchRequestTopic;
use kafka_protocol::messages::txn_offset_commit_request::{
    TxnOffsetCommitRequestPartition, TxnOffsetCommitRequestTopic,
};
use kafka_protocol::messages::*;
use kafka_protocol::ResponseError;

const G: &str = "g";

fn txn_commit(h: &mut Harness, producer_id: i64, offset: i64) -> Vec<i16> {
    let req = TxnOffsetCommitRequest::default()
        .with_transactional_id(TransactionalId(s("tx")))
        .with_group_id(GroupId(s(G)))
        .with_producer_id(ProducerId(producer_id))
        .with_producer_epoch(0)
        .with_generation_id(-1)
        .with_member_id(s(""))
        .with_topics(vec![TxnOffsetCommitRequestTopic::default()
            .with_name(TopicName(s("t")))
            .with_partitions(vec![TxnOffsetCommitRequestPartition::default()
                .with_partition_index(0)
                .with_committed_offset(offset)])]);
    let id = h.send(3, GroupRequest::TxnOffsetCommit(req));
    match h.take(id).expect("answered once appended") {
        GroupResponse::TxnOffsetCommit(r) => r
            .topics
            .iter()
            .flat_map(|t| t.partitions.iter().map(|p| p.error_code))
            .collect(),
        other => panic!("{other:?}"),
    }
}

/// OffsetFetch v7 of t-0: (offset, partition error).
fn fetch(h: &mut Harness, require_stable: bool) -> (i64, i16) {
    let req = OffsetFetchRequest::default()
        .with_group_id(GroupId(s(G)))
        .with_require_stable(require_stable)
        .with_topics(Some(vec![OffsetFetchRequestTopic::default()
            .with_name(TopicName(s("t")))
            .with_partition_indexes(vec![0])]));
    let id = h.send(7, GroupRequest::OffsetFetch(req));
    match h.take(id).expect("answered at once") {
        GroupResponse::OffsetFetch(r) => {
            let p = &r.topics[0].partitions[0];
            (p.committed_offset, p.error_code)
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn transactional_offsets_wait_for_their_marker() {
    let mut h = Harness::new();
    let partition = partition_for(G, GroupConfig::default().offsets_topic_partitions);
    let unstable = ResponseError::UnstableOffsetCommit.code();

    assert_eq!(txn_commit(&mut h, 7, 5), vec![0]);
    assert_eq!(fetch(&mut h, false), (-1, 0));
    assert_eq!(fetch(&mut h, true), (-1, unstable));
    h.c.on_txn_marker(partition, 7, true);
    assert_eq!(fetch(&mut h, true), (5, 0));

    assert_eq!(txn_commit(&mut h, 8, 9), vec![0]);
    assert_eq!(fetch(&mut h, true), (-1, unstable));
    assert_eq!(fetch(&mut h, false), (5, 0));
    // Another producer's marker changes nothing; this producer's abort drops the offset.
    h.c.on_txn_marker(partition, 7, true);
    assert_eq!(fetch(&mut h, true), (-1, unstable));
    h.c.on_txn_marker(partition, 8, false);
    assert_eq!(fetch(&mut h, true), (5, 0));
}

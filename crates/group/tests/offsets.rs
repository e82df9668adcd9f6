//! Committed offsets: commit/fetch in every request shape, durability through restart,
//! retention, deletion, and the load-in-progress and ownership errors.

mod harness;

use std::collections::BTreeMap;

use bytes::Bytes;
use harness::*;
use josefine_group::{AppendOutcome, GroupConfig, GroupRequest, GroupResponse, GroupState};
use kafka_protocol::messages::offset_commit_request::{
    OffsetCommitRequestPartition, OffsetCommitRequestTopic,
};
use kafka_protocol::messages::offset_delete_request::{
    OffsetDeleteRequestPartition, OffsetDeleteRequestTopic,
};
use kafka_protocol::messages::offset_fetch_request::{
    OffsetFetchRequestGroup, OffsetFetchRequestTopic, OffsetFetchRequestTopics,
};
use kafka_protocol::messages::*;
use kafka_protocol::ResponseError;

const G: &str = "g";

fn commit_request(
    group: &str,
    generation: i32,
    member: &str,
    offsets: &[(&str, i32, i64, i32, &str)],
) -> OffsetCommitRequest {
    let mut by_topic: BTreeMap<&str, Vec<OffsetCommitRequestPartition>> = BTreeMap::new();
    for (t, p, o, epoch, meta) in offsets {
        by_topic.entry(t).or_default().push(
            OffsetCommitRequestPartition::default()
                .with_partition_index(*p)
                .with_committed_offset(*o)
                .with_committed_leader_epoch(*epoch)
                .with_committed_metadata(Some(s(meta))),
        );
    }
    OffsetCommitRequest::default()
        .with_group_id(GroupId(s(group)))
        .with_generation_id_or_member_epoch(generation)
        .with_member_id(s(member))
        .with_retention_time_ms(-1)
        .with_topics(
            by_topic
                .into_iter()
                .map(|(t, ps)| {
                    OffsetCommitRequestTopic::default()
                        .with_name(TopicName(s(t)))
                        .with_partitions(ps)
                })
                .collect(),
        )
}

/// Commits at v8 and returns per-partition error codes (None if no response yet).
fn commit(h: &mut Harness, req: OffsetCommitRequest) -> Option<Vec<i16>> {
    let id = h.send(8, GroupRequest::OffsetCommit(req));
    commit_result(h, id)
}

fn commit_result(h: &mut Harness, id: josefine_group::RequestId) -> Option<Vec<i16>> {
    match h.take(id)? {
        GroupResponse::OffsetCommit(r) => Some(
            r.topics
                .iter()
                .flat_map(|t| t.partitions.iter().map(|p| p.error_code))
                .collect(),
        ),
        other => panic!("{other:?}"),
    }
}

/// (topic, partition) -> (offset, leader epoch, metadata, error).
type Fetched = BTreeMap<(String, i32), (i64, i32, String, i16)>;

/// Fetches with v5 (single group) and returns (topic, partition) -> (offset, epoch, metadata, error).
fn fetch_v5(h: &mut Harness, group: &str, topics: Option<&[(&str, &[i32])]>) -> (i16, Fetched) {
    let req = OffsetFetchRequest::default()
        .with_group_id(GroupId(s(group)))
        .with_topics(topics.map(|ts| {
            ts.iter()
                .map(|(t, ps)| {
                    OffsetFetchRequestTopic::default()
                        .with_name(TopicName(s(t)))
                        .with_partition_indexes(ps.to_vec())
                })
                .collect()
        }));
    let id = h.send(5, GroupRequest::OffsetFetch(req));
    let Some(GroupResponse::OffsetFetch(r)) = h.take(id) else {
        panic!("no fetch response")
    };
    let mut out = BTreeMap::new();
    for t in &r.topics {
        for p in &t.partitions {
            out.insert(
                (t.name.0.to_string(), p.partition_index),
                (
                    p.committed_offset,
                    p.committed_leader_epoch,
                    p.metadata.as_deref().unwrap_or("").to_string(),
                    p.error_code,
                ),
            );
        }
    }
    (r.error_code, out)
}

#[test]
fn simple_consumer_commit_is_acknowledged_only_after_append() {
    let mut h = Harness::new();
    h.auto_ack = false;
    let id = h.send(
        8,
        GroupRequest::OffsetCommit(commit_request(
            G,
            -1,
            "",
            &[("t", 0, 42, 3, "m"), ("t", 1, 7, -1, "")],
        )),
    );
    assert!(
        h.responses.is_empty(),
        "no response before the append is durable"
    );
    assert_eq!(h.held.len(), 1);
    let (_, before) = fetch_v5(&mut h, G, Some(&[("t", &[0])]));
    assert_eq!(
        before[&("t".to_string(), 0)].0,
        -1,
        "not visible before durable"
    );
    h.ack_held(AppendOutcome::Appended);
    assert_eq!(commit_result(&mut h, id), Some(vec![0, 0]));
    let (error, after) = fetch_v5(&mut h, G, Some(&[("t", &[0, 1, 2])]));
    assert_eq!(error, 0);
    assert_eq!(after[&("t".to_string(), 0)], (42, 3, "m".to_string(), 0));
    assert_eq!(after[&("t".to_string(), 1)], (7, -1, String::new(), 0));
    assert_eq!(after[&("t".to_string(), 2)].0, -1, "never committed");
    assert_eq!(h.c.group_state(G), Some(GroupState::Empty));
}

#[test]
fn failed_append_fails_the_commit_and_keeps_old_offset() {
    let mut h = Harness::new();
    assert_eq!(
        commit(&mut h, commit_request(G, -1, "", &[("t", 0, 1, -1, "")])),
        Some(vec![0])
    );
    h.auto_ack = false;
    let id = h.send(
        8,
        GroupRequest::OffsetCommit(commit_request(G, -1, "", &[("t", 0, 99, -1, "")])),
    );
    h.ack_held(AppendOutcome::NotLeader);
    assert_eq!(
        commit_result(&mut h, id),
        Some(vec![ResponseError::NotCoordinator.code()])
    );
    assert_eq!(fetch_v5(&mut h, G, None).1[&("t".to_string(), 0)].0, 1);
}

#[test]
fn require_stable_reports_in_flight_commits() {
    let mut h = Harness::new();
    h.auto_ack = false;
    h.send(
        8,
        GroupRequest::OffsetCommit(commit_request(G, -1, "", &[("t", 0, 5, -1, "")])),
    );
    let req = OffsetFetchRequest::default()
        .with_group_id(GroupId(s(G)))
        .with_topics(Some(vec![OffsetFetchRequestTopic::default()
            .with_name(TopicName(s("t")))
            .with_partition_indexes(vec![0])]))
        .with_require_stable(true);
    let id = h.send(7, GroupRequest::OffsetFetch(req));
    let Some(GroupResponse::OffsetFetch(r)) = h.take(id) else {
        panic!()
    };
    assert_eq!(
        r.topics[0].partitions[0].error_code,
        ResponseError::UnstableOffsetCommit.code()
    );
}

#[test]
fn offsets_and_groups_survive_restart_through_the_log() {
    let mut h = Harness::new();
    let (ids, generation, leader) = h.form_group(G, 2, &[("range", subscription(&["t"]))]);
    h.sync_all(G, &ids, generation, &leader);
    let offsets = [
        ("t", 0, 100, 2, "meta-0"),
        ("t", 1, 200, 2, ""),
        ("u", 0, 5, -1, "x"),
    ];
    assert_eq!(
        commit(&mut h, commit_request(G, generation, &ids[0], &offsets)),
        Some(vec![0, 0, 0])
    );
    // Overwrite one offset; the later record must win on replay.
    assert_eq!(
        commit(
            &mut h,
            commit_request(G, generation, &ids[1], &[("t", 1, 250, 3, "new")])
        ),
        Some(vec![0])
    );
    assert_eq!(
        commit(
            &mut h,
            commit_request("other", -1, "", &[("t", 0, 9, -1, "")])
        ),
        Some(vec![0])
    );

    let mut h2 = h.restart();
    let (_, all) = fetch_v5(&mut h2, G, None);
    assert_eq!(all.len(), 3);
    assert_eq!(
        all[&("t".to_string(), 0)],
        (100, 2, "meta-0".to_string(), 0)
    );
    assert_eq!(all[&("t".to_string(), 1)], (250, 3, "new".to_string(), 0));
    assert_eq!(all[&("u".to_string(), 0)], (5, -1, "x".to_string(), 0));
    // Batched multi-group fetch (v8) sees both groups.
    let req = OffsetFetchRequest::default().with_groups(vec![
        OffsetFetchRequestGroup::default()
            .with_group_id(GroupId(s(G)))
            .with_topics(Some(vec![OffsetFetchRequestTopics::default()
                .with_name(TopicName(s("t")))
                .with_partition_indexes(vec![1])])),
        OffsetFetchRequestGroup::default()
            .with_group_id(GroupId(s("other")))
            .with_topics(None),
        OffsetFetchRequestGroup::default()
            .with_group_id(GroupId(s("missing")))
            .with_topics(None),
    ]);
    let id = h2.send(8, GroupRequest::OffsetFetch(req));
    let Some(GroupResponse::OffsetFetch(r)) = h2.take(id) else {
        panic!()
    };
    assert_eq!(r.groups.len(), 3);
    assert_eq!(r.groups[0].topics[0].partitions[0].committed_offset, 250);
    assert_eq!(r.groups[1].topics[0].partitions[0].committed_offset, 9);
    assert!(r.groups[2].topics.is_empty());
    assert_eq!(r.groups[2].error_code, 0);
    // The members are back too, so their commits with the old generation still work.
    assert_eq!(
        commit(
            &mut h2,
            commit_request(G, generation, &ids[0], &[("t", 0, 101, 2, "")])
        ),
        Some(vec![0])
    );
}

#[test]
fn commit_validation_follows_group_state() {
    let mut h = Harness::new();
    let (ids, generation, leader) = h.form_group(G, 2, &[("range", subscription(&["t"]))]);
    // CompletingRebalance: known member, right generation -> REBALANCE_IN_PROGRESS.
    let r = commit(
        &mut h,
        commit_request(G, generation, &ids[0], &[("t", 0, 1, -1, "")]),
    );
    assert_eq!(r, Some(vec![ResponseError::RebalanceInProgress.code()]));
    h.sync_all(G, &ids, generation, &leader);
    let r = commit(
        &mut h,
        commit_request(G, generation - 1, &ids[0], &[("t", 0, 1, -1, "")]),
    );
    assert_eq!(r, Some(vec![ResponseError::IllegalGeneration.code()]));
    let r = commit(
        &mut h,
        commit_request(G, generation, "stranger", &[("t", 0, 1, -1, "")]),
    );
    assert_eq!(r, Some(vec![ResponseError::UnknownMemberId.code()]));
    // An assign() consumer cannot commit into an active group.
    let r = commit(&mut h, commit_request(G, -1, "", &[("t", 0, 1, -1, "")]));
    assert_eq!(r, Some(vec![ResponseError::UnknownMemberId.code()]));
    // Metadata over offset.metadata.max.bytes fails only that partition.
    let big = "x".repeat(4097);
    let r = commit(
        &mut h,
        commit_request(
            G,
            generation,
            &ids[0],
            &[("t", 0, 1, -1, &big), ("t", 1, 1, -1, "ok")],
        ),
    );
    assert_eq!(
        r,
        Some(vec![ResponseError::OffsetMetadataTooLarge.code(), 0])
    );
    // A member commit to a group that does not exist: ILLEGAL_GENERATION before v9.
    let r = commit(
        &mut h,
        commit_request("nope", 3, "m", &[("t", 0, 1, -1, "")]),
    );
    assert_eq!(r, Some(vec![ResponseError::IllegalGeneration.code()]));
}

#[test]
fn offsets_of_empty_groups_expire_after_retention() {
    let mut h = Harness::new();
    assert_eq!(
        commit(&mut h, commit_request(G, -1, "", &[("t", 0, 1, -1, "")])),
        Some(vec![0])
    );
    let (ids, generation, leader) = h.form_group("active", 1, &[("range", subscription(&["t"]))]);
    h.sync_all("active", &ids, generation, &leader);
    assert_eq!(
        commit(
            &mut h,
            commit_request("active", generation, &ids[0], &[("t", 0, 1, -1, "")])
        ),
        Some(vec![0])
    );
    // A week minus ten minutes, the active member heartbeating every 5 s.
    for _ in 0..((7 * 24 * 6 - 1) * 120) {
        h.advance(5_000);
        assert_eq!(h.heartbeat("active", &ids[0], None, generation), 0);
    }
    assert_eq!(
        fetch_v5(&mut h, G, None).1.len(),
        1,
        "a week minus ten minutes: kept"
    );
    for _ in 0..240 {
        h.advance(5_000);
        h.heartbeat("active", &ids[0], None, generation);
    }
    assert!(fetch_v5(&mut h, G, None).1.is_empty(), "expired");
    assert_eq!(
        h.c.group_state(G),
        None,
        "empty group without offsets is deleted"
    );
    // The active (Stable) group still subscribes to t: its offset stays.
    assert_eq!(fetch_v5(&mut h, "active", None).1.len(), 1);
    // Durable: a restart does not bring the expired offsets back.
    let mut h2 = h.restart();
    assert!(fetch_v5(&mut h2, G, None).1.is_empty());
    assert_eq!(h2.c.group_state(G), None);
}

#[test]
fn deleted_topic_offsets_are_removed_durably() {
    let mut h = Harness::new();
    commit(
        &mut h,
        commit_request(G, -1, "", &[("gone", 0, 1, -1, ""), ("kept", 0, 2, -1, "")]),
    );
    let effects = h.c.on_topic_deleted("gone", h.now_ms);
    h.process(effects);
    assert_eq!(fetch_v5(&mut h, G, None).1.len(), 1);
    let mut h2 = h.restart();
    let (_, all) = fetch_v5(&mut h2, G, None);
    assert_eq!(
        all.keys().cloned().collect::<Vec<_>>(),
        vec![("kept".to_string(), 0)]
    );
}

#[test]
fn delete_groups_requires_empty_and_writes_tombstones() {
    let mut h = Harness::new();
    commit(&mut h, commit_request(G, -1, "", &[("t", 0, 1, -1, "")]));
    let (ids, generation, leader) = h.form_group("busy", 1, &[("range", subscription(&["t"]))]);
    h.sync_all("busy", &ids, generation, &leader);
    let req = DeleteGroupsRequest::default().with_groups_names(vec![
        GroupId(s(G)),
        GroupId(s("busy")),
        GroupId(s("missing")),
    ]);
    let id = h.send(2, GroupRequest::DeleteGroups(req));
    let Some(GroupResponse::DeleteGroups(r)) = h.take(id) else {
        panic!()
    };
    let codes: Vec<i16> = r.results.iter().map(|g| g.error_code).collect();
    assert_eq!(
        codes,
        vec![
            0,
            ResponseError::NonEmptyGroup.code(),
            ResponseError::GroupIdNotFound.code()
        ]
    );
    assert_eq!(h.c.group_state(G), None);
    let mut h2 = h.restart();
    assert_eq!(h2.c.group_state(G), None);
    assert!(fetch_v5(&mut h2, G, None).1.is_empty());
    assert_eq!(h2.c.group_state("busy"), Some(GroupState::Stable));
}

#[test]
fn offset_delete_refuses_subscribed_topics() {
    let mut h = Harness::new();
    let (ids, generation, leader) = h.form_group(G, 1, &[("range", subscription(&["t"]))]);
    h.sync_all(G, &ids, generation, &leader);
    commit(
        &mut h,
        commit_request(
            G,
            generation,
            &ids[0],
            &[("t", 0, 1, -1, ""), ("old", 0, 1, -1, "")],
        ),
    );
    let req = OffsetDeleteRequest::default()
        .with_group_id(GroupId(s(G)))
        .with_topics(
            ["t", "old"]
                .iter()
                .map(|t| {
                    OffsetDeleteRequestTopic::default()
                        .with_name(TopicName(s(t)))
                        .with_partitions(vec![
                            OffsetDeleteRequestPartition::default().with_partition_index(0)
                        ])
                })
                .collect(),
        );
    let id = h.send(0, GroupRequest::OffsetDelete(req));
    let Some(GroupResponse::OffsetDelete(r)) = h.take(id) else {
        panic!()
    };
    assert_eq!(r.error_code, 0);
    assert_eq!(
        r.topics[0].partitions[0].error_code,
        ResponseError::GroupSubscribedToTopic.code()
    );
    assert_eq!(r.topics[1].partitions[0].error_code, 0);
    let (_, left) = fetch_v5(&mut h, G, None);
    assert_eq!(
        left.keys().cloned().collect::<Vec<_>>(),
        vec![("t".to_string(), 0)]
    );
    let missing = OffsetDeleteRequest::default().with_group_id(GroupId(s("missing")));
    let id = h.send(0, GroupRequest::OffsetDelete(missing));
    let Some(GroupResponse::OffsetDelete(r)) = h.take(id) else {
        panic!()
    };
    assert_eq!(r.error_code, ResponseError::GroupIdNotFound.code());
}

#[test]
fn list_and_describe_groups() {
    let mut h = Harness::new();
    commit(
        &mut h,
        commit_request("simple", -1, "", &[("t", 0, 1, -1, "")]),
    );
    let (ids, generation, leader) = h.form_group(G, 2, &[("range", subscription(&["t"]))]);
    h.sync_all(G, &ids, generation, &leader);

    let id = h.send(
        5,
        GroupRequest::ListGroups(
            ListGroupsRequest::default().with_states_filter(vec![s("stable")]),
        ),
    );
    let Some(GroupResponse::ListGroups(r)) = h.take(id) else {
        panic!()
    };
    assert_eq!(r.groups.len(), 1);
    assert_eq!(
        (
            r.groups[0].group_id.as_str(),
            r.groups[0].group_state.as_str()
        ),
        (G, "Stable")
    );
    assert_eq!(r.groups[0].group_type.as_str(), "classic");
    let id = h.send(0, GroupRequest::ListGroups(ListGroupsRequest::default()));
    let Some(GroupResponse::ListGroups(r)) = h.take(id) else {
        panic!()
    };
    assert_eq!(r.groups.len(), 2);
    let id = h.send(
        5,
        GroupRequest::ListGroups(
            ListGroupsRequest::default().with_types_filter(vec![s("consumer")]),
        ),
    );
    let Some(GroupResponse::ListGroups(r)) = h.take(id) else {
        panic!()
    };
    assert!(
        r.groups.is_empty(),
        "classic groups are not KIP-848 consumer groups"
    );

    let req =
        DescribeGroupsRequest::default().with_groups(vec![GroupId(s(G)), GroupId(s("missing"))]);
    let id = h.send(5, GroupRequest::DescribeGroups(req.clone()));
    let Some(GroupResponse::DescribeGroups(r)) = h.take(id) else {
        panic!()
    };
    let g = &r.groups[0];
    assert_eq!(
        (
            g.group_state.as_str(),
            g.protocol_type.as_str(),
            g.protocol_data.as_str()
        ),
        ("Stable", "consumer", "range")
    );
    assert_eq!(g.members.len(), 2);
    assert!(g.members.iter().all(|m| !m.member_assignment.is_empty()));
    assert_eq!(g.members[0].client_host.as_str(), "/127.0.0.1");
    assert_eq!(
        (r.groups[1].error_code, r.groups[1].group_state.as_str()),
        (0, "Dead")
    );
    let id = h.send(6, GroupRequest::DescribeGroups(req));
    let Some(GroupResponse::DescribeGroups(r)) = h.take(id) else {
        panic!()
    };
    assert_eq!(
        r.groups[1].error_code,
        ResponseError::GroupIdNotFound.code()
    );
}

#[test]
fn load_in_progress_and_not_coordinator() {
    let config = GroupConfig::default();
    let mut c = josefine_group::Coordinator::new(config, 1).unwrap();
    let p = c.partition_for(G);
    let ctx = |id| josefine_group::RequestContext {
        request_id: josefine_group::RequestId(id),
        api_version: 4,
        client_id: "c".into(),
        client_host: "/h".into(),
    };
    let hb = || {
        GroupRequest::Heartbeat(
            HeartbeatRequest::default()
                .with_group_id(GroupId(s(G)))
                .with_member_id(s("m")),
        )
    };
    let code_of = |effects: Vec<josefine_group::Effect>| match &effects[..] {
        [josefine_group::Effect::Respond {
            response: GroupResponse::Heartbeat(r),
            ..
        }] => r.error_code,
        other => panic!("{other:?}"),
    };
    assert_eq!(
        code_of(c.handle(ctx(1), hb(), 0)),
        ResponseError::NotCoordinator.code()
    );
    assert!(c.begin_load(p).is_empty());
    assert_eq!(
        code_of(c.handle(ctx(2), hb(), 0)),
        ResponseError::CoordinatorLoadInProgress.code()
    );
    assert!(c.complete_load(p, 0).unwrap().is_empty());
    assert_eq!(
        code_of(c.handle(ctx(3), hb(), 0)),
        ResponseError::UnknownMemberId.code()
    );
    let effects = c.unload(p);
    assert!(effects.is_empty());
    assert_eq!(
        code_of(c.handle(ctx(4), hb(), 0)),
        ResponseError::NotCoordinator.code()
    );
    assert!(
        c.load_record(p, &[0, 2, 0, 1, b'g'], None).is_err(),
        "not loading"
    );
}

#[test]
fn unload_answers_waiting_joins_with_not_coordinator() {
    let mut h = Harness::new();
    let j = h.join(3, G, "", None, &[("range", Bytes::new())]);
    let p = h.c.partition_for(G);
    let effects = h.c.unload(p);
    h.process(effects);
    assert_eq!(
        h.join_response(j).unwrap().error_code,
        ResponseError::NotCoordinator.code()
    );
}

#[test]
fn old_versions_shape_responses_correctly() {
    let mut h = Harness::new();
    commit(&mut h, commit_request(G, -1, "", &[("t", 0, 5, 9, "m")]));
    // v1 fetch: no leader epoch, no top-level error field; still encodable (checked by the
    // harness) and the offset is there.
    let req = OffsetFetchRequest::default()
        .with_group_id(GroupId(s(G)))
        .with_topics(Some(vec![OffsetFetchRequestTopic::default()
            .with_name(TopicName(s("t")))
            .with_partition_indexes(vec![0])]));
    let id = h.send(1, GroupRequest::OffsetFetch(req));
    let Some(GroupResponse::OffsetFetch(r)) = h.take(id) else {
        panic!()
    };
    assert_eq!(r.topics[0].partitions[0].committed_offset, 5);
    assert_eq!(r.topics[0].partitions[0].committed_leader_epoch, -1);
    // JoinGroup v0..v9 all produce encodable responses (protocol name non-null before v7).
    for v in 0..=9 {
        let j = h.join(v, &format!("g{v}"), "", None, &[("range", Bytes::new())]);
        h.advance(3_000);
        let r = h.join_response(j).unwrap();
        assert!(
            r.error_code == 0 || (v >= 4 && r.error_code == ResponseError::MemberIdRequired.code())
        );
    }
}

#[test]
fn topic_deleted_during_load_is_purged_when_load_completes() {
    let mut h = Harness::new();
    commit(
        &mut h,
        commit_request(G, -1, "", &[("gone", 0, 1, -1, ""), ("kept", 0, 2, -1, "")]),
    );
    let log = h.log.clone();
    let mut c = josefine_group::Coordinator::new(GroupConfig::default(), 3).unwrap();
    let p = c.partition_for(G);
    assert!(c.begin_load(p).is_empty());
    for r in &log[&p] {
        c.load_record(p, &r.key, r.value.as_deref()).unwrap();
    }
    assert!(
        c.on_topic_deleted("gone", 5).is_empty(),
        "nothing to append while loading"
    );
    let effects = c.complete_load(p, 5).unwrap();
    match &effects[..] {
        [josefine_group::Effect::Append {
            partition, records, ..
        }] => {
            assert_eq!(*partition, p);
            assert_eq!(records.len(), 1);
            assert!(records[0].value.is_none(), "a tombstone");
            assert_eq!(
                josefine_group::records::decode_key(&records[0].key).unwrap(),
                Some(josefine_group::records::RecordKey::OffsetCommit {
                    group_id: G.into(),
                    topic: "gone".into(),
                    partition: 0
                })
            );
        }
        other => panic!("{other:?}"),
    }
}

/// Kafka 4.1 accepts commits for the group id "" (a simple group), unlike JoinGroup.
#[test]
fn commits_accept_the_empty_group_id() {
    let mut h = Harness::new();
    let codes = commit(&mut h, commit_request("", -1, "", &[("t", 0, 5, -1, "m")]));
    assert_eq!(codes, Some(vec![0]));
    let (error, fetched) = fetch_v5(&mut h, "", Some(&[("t", &[0])]));
    assert_eq!(error, 0);
    assert_eq!(fetched[&("t".to_string(), 0)].0, 5);
}

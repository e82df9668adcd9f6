//! Rebalance protocol scenarios under simulated time.

mod harness;

use bytes::Bytes;
use harness::*;
use josefine_group::{GroupRequest, GroupResponse, GroupState};
use kafka_protocol::messages::leave_group_request::MemberIdentity;
use kafka_protocol::messages::*;
use kafka_protocol::ResponseError;

const G: &str = "g";

fn range() -> Vec<(&'static str, Bytes)> {
    vec![("range", subscription(&["t"]))]
}

fn code(e: ResponseError) -> i16 {
    e.code()
}

#[test]
fn first_join_needs_member_id_then_waits_for_initial_delay() {
    let mut h = Harness::new();
    let first = h.join(5, G, "", None, &range());
    let r = h.join_response(first).unwrap();
    assert_eq!(r.error_code, code(ResponseError::MemberIdRequired));
    assert!(r.member_id.starts_with("client-"));
    let id = r.member_id.to_string();

    let join = h.join(5, G, &id, None, &range());
    h.advance(2_999);
    assert!(
        h.join_response(join).is_none(),
        "initial rebalance delay is 3000 ms"
    );
    h.advance(1);
    let r = h.join_response(join).unwrap();
    assert_eq!((r.error_code, r.generation_id), (0, 1));
    assert_eq!(r.leader.as_str(), id);
    assert_eq!(r.protocol_name.as_deref(), Some("range"));
    assert_eq!(
        r.members.len(),
        1,
        "the leader gets every member's metadata"
    );
    assert_eq!(h.c.group_state(G), Some(GroupState::CompletingRebalance));

    let sync = h.sync(5, G, &id, None, 1, &[(&id, b"assignment")]);
    let r = h.sync_response(sync).unwrap();
    assert_eq!((r.error_code, &r.assignment[..]), (0, &b"assignment"[..]));
    assert_eq!(h.c.group_state(G), Some(GroupState::Stable));
    assert_eq!(h.heartbeat(G, &id, None, 1), 0);
}

#[test]
fn old_clients_join_without_member_id_round_trip() {
    let mut h = Harness::new();
    let join = h.join(3, G, "", None, &range());
    assert!(
        h.join_response(join).is_none(),
        "v3 member is added directly and waits"
    );
    h.advance(3_000);
    let r = h.join_response(join).unwrap();
    assert_eq!((r.error_code, r.generation_id), (0, 1));
    assert_eq!(r.leader, r.member_id);
}

#[test]
fn initial_delay_extends_while_members_keep_arriving() {
    let mut h = Harness::new();
    let a = h.join(3, G, "", None, &range());
    h.advance(2_000);
    let b = h.join(3, G, "", None, &range());
    h.advance(1_500); // t=3500: the first delay expired with a new member added -> wait again
    assert!(h.join_response(a).is_none());
    h.advance(1_500); // t=5000... second delay runs to 3000+3000
    assert!(h.join_response(a).is_none());
    h.advance(1_000);
    let (ra, rb) = (h.join_response(a).unwrap(), h.join_response(b).unwrap());
    assert_eq!((ra.generation_id, rb.generation_id), (1, 1));
    assert_eq!(
        ra.members.len() + rb.members.len(),
        2,
        "only the leader gets members"
    );
}

#[test]
fn protocol_is_voted_among_protocols_all_members_support() {
    let mut h = Harness::new();
    let sub = subscription(&["t"]);
    let prefs: [Vec<(&str, Bytes)>; 3] = [
        vec![
            ("range", sub.clone()),
            ("roundrobin", sub.clone()),
            ("sticky", sub.clone()),
        ],
        vec![("roundrobin", sub.clone()), ("range", sub.clone())],
        vec![
            ("roundrobin", sub.clone()),
            ("range", sub.clone()),
            ("sticky", sub.clone()),
        ],
    ];
    let joins: Vec<_> = prefs.iter().map(|p| h.join(3, G, "", None, p)).collect();
    h.advance(3_000);
    assert!(
        h.responses.is_empty(),
        "members joined during the delay: it is extended"
    );
    h.advance(3_000);
    for j in joins {
        let r = h.join_response(j).unwrap();
        assert_eq!(
            r.protocol_name.as_deref(),
            Some("roundrobin"),
            "2 votes beat 1"
        );
    }
    // A member supporting none of the group's protocols is refused.
    let bad = h.join(5, G, "", None, &[("cooperative-sticky", sub.clone())]);
    assert_eq!(
        h.join_response(bad).unwrap().error_code,
        code(ResponseError::InconsistentGroupProtocol)
    );
    // So is a different protocol type.
    let mut req = JoinGroupRequest::default()
        .with_group_id(GroupId(s(G)))
        .with_session_timeout_ms(SESSION_MS)
        .with_protocol_type(s("connect"));
    req.protocols = vec![
        kafka_protocol::messages::join_group_request::JoinGroupRequestProtocol::default()
            .with_name(s("range")),
    ];
    let id = h.send(5, GroupRequest::JoinGroup(req));
    match h.take(id) {
        Some(GroupResponse::JoinGroup(r)) => {
            assert_eq!(r.error_code, code(ResponseError::InconsistentGroupProtocol))
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn session_timeout_removes_silent_member_and_rebalances() {
    let mut h = Harness::new();
    let (ids, generation, leader) = h.form_group(G, 2, &range());
    h.sync_all(G, &ids, generation, &leader);
    let (alive, silent) = (&ids[0], &ids[1]);
    for _ in 0..4 {
        h.advance(3_000);
        let e = h.heartbeat(G, alive, None, generation);
        if h.c.group_state(G) == Some(GroupState::Stable) {
            assert_eq!(e, 0);
        } else {
            assert_eq!(e, code(ResponseError::RebalanceInProgress));
        }
    }
    // 12 s > 10 s session timeout: the silent member is gone and a rebalance is running.
    assert_eq!(h.c.group_state(G), Some(GroupState::PreparingRebalance));
    assert_eq!(
        h.heartbeat(G, silent, None, generation),
        code(ResponseError::UnknownMemberId)
    );
    let rejoin = h.join(5, G, alive, None, &range());
    let r = h
        .join_response(rejoin)
        .expect("only remaining member rejoined: completes now");
    assert_eq!((r.generation_id, r.members.len()), (generation + 1, 1));
    assert_eq!(r.leader.as_str(), alive.as_str());
}

#[test]
fn rebalance_timeout_drops_members_that_do_not_rejoin() {
    let mut h = Harness::new();
    let (ids, generation, leader) = h.form_group(G, 3, &range());
    h.sync_all(G, &ids, generation, &leader);
    // Everyone heartbeats, but only two rejoin after a member's metadata change.
    let follower: Vec<&String> = ids.iter().filter(|i| **i != leader).collect();
    let j1 = h.join(
        5,
        G,
        follower[0],
        None,
        &[("range", subscription(&["t", "u"]))],
    );
    assert_eq!(h.c.group_state(G), Some(GroupState::PreparingRebalance));
    let j2 = h.join(5, G, follower[1], None, &range());
    for _ in 0..10 {
        h.advance(3_000); // heartbeats keep the non-rejoining leader's session alive
        for id in &ids {
            h.heartbeat(G, id, None, generation);
        }
    }
    let (r1, r2) = (h.join_response(j1).unwrap(), h.join_response(j2).unwrap());
    assert_eq!(
        (r1.generation_id, r2.generation_id),
        (generation + 1, generation + 1)
    );
    assert_ne!(
        r1.leader.as_str(),
        leader,
        "old leader did not rejoin: a joined member leads"
    );
    assert_eq!(
        r1.members.len() + r2.members.len(),
        2,
        "old leader was removed"
    );
    assert_eq!(
        h.heartbeat(G, &leader, None, generation + 1),
        code(ResponseError::UnknownMemberId)
    );
}

#[test]
fn leader_leaving_mid_rebalance_hands_over_leadership() {
    let mut h = Harness::new();
    let (ids, generation, leader) = h.form_group(G, 3, &range());
    h.sync_all(G, &ids, generation, &leader);
    let followers: Vec<String> = ids.iter().filter(|i| **i != leader).cloned().collect();
    // New metadata (a new subscription) makes the follower's join start a rebalance.
    let j1 = h.join(
        5,
        G,
        &followers[0],
        None,
        &[("range", subscription(&["t", "u"]))],
    );
    let leave = LeaveGroupRequest::default()
        .with_group_id(GroupId(s(G)))
        .with_members(vec![MemberIdentity::default().with_member_id(s(&leader))]);
    let lid = h.send(3, GroupRequest::LeaveGroup(leave));
    match h.take(lid) {
        Some(GroupResponse::LeaveGroup(r)) => {
            assert_eq!(r.error_code, 0);
            assert_eq!(r.members.len(), 1);
            assert_eq!(r.members[0].error_code, 0);
        }
        other => panic!("{other:?}"),
    }
    assert!(h.join_response(j1).is_none());
    let j2 = h.join(5, G, &followers[1], None, &range());
    // All remaining members have joined: completes without waiting for the timeout.
    let (r1, r2) = (h.join_response(j1).unwrap(), h.join_response(j2).unwrap());
    assert_eq!(r1.generation_id, generation + 1);
    assert!(followers.contains(&r1.leader.to_string()));
    let leader_response = if r1.leader == r1.member_id { &r1 } else { &r2 };
    assert_eq!(leader_response.members.len(), 2);
    let new_leader = r1.leader.to_string();
    h.sync_all(G, &followers, generation + 1, &new_leader);
    assert_eq!(h.c.group_state(G), Some(GroupState::Stable));
}

#[test]
fn stale_generation_and_unknown_member_are_rejected() {
    let mut h = Harness::new();
    let (ids, generation, leader) = h.form_group(G, 2, &range());
    h.sync_all(G, &ids, generation, &leader);
    assert_eq!(
        h.heartbeat(G, &ids[0], None, generation - 1),
        code(ResponseError::IllegalGeneration)
    );
    let sync = h.sync(5, G, &ids[0], None, generation + 7, &[]);
    assert_eq!(
        h.sync_response(sync).unwrap().error_code,
        code(ResponseError::IllegalGeneration)
    );
    assert_eq!(
        h.heartbeat(G, "nobody", None, generation),
        code(ResponseError::UnknownMemberId)
    );
    let join = h.join(5, G, "nobody", None, &range());
    assert_eq!(
        h.join_response(join).unwrap().error_code,
        code(ResponseError::UnknownMemberId)
    );
    // Sync with the right generation but a wrong protocol name (v5 check).
    let mut req = SyncGroupRequest::default()
        .with_group_id(GroupId(s(G)))
        .with_generation_id(generation)
        .with_member_id(s(&ids[0]));
    req.protocol_name = Some(s("roundrobin"));
    let id = h.send(5, GroupRequest::SyncGroup(req));
    assert_eq!(
        h.sync_response(id).unwrap().error_code,
        code(ResponseError::InconsistentGroupProtocol)
    );
}

#[test]
fn sync_during_preparing_rebalance_says_rebalance_in_progress() {
    let mut h = Harness::new();
    let (ids, generation, leader) = h.form_group(G, 2, &range());
    // The leader syncs, the follower has not yet; the leader then rejoins: the follower's
    // pending sync must be answered REBALANCE_IN_PROGRESS, not left hanging.
    let follower = ids.iter().find(|i| **i != leader).unwrap().clone();
    // A rejoin with unchanged metadata in CompletingRebalance is answered with the current
    // generation (a lost join response); changed metadata restarts the rebalance.
    let retry = h.join(5, G, &leader, None, &range());
    assert_eq!(h.join_response(retry).unwrap().generation_id, generation);
    assert_eq!(h.c.group_state(G), Some(GroupState::CompletingRebalance));
    let leader_rejoin = h.join(5, G, &leader, None, &[("range", subscription(&["u"]))]);
    assert_eq!(h.c.group_state(G), Some(GroupState::PreparingRebalance));
    let sync = h.sync(5, G, &follower, None, generation, &[]);
    assert_eq!(
        h.sync_response(sync).unwrap().error_code,
        code(ResponseError::RebalanceInProgress)
    );
    let frejoin = h.join(5, G, &follower, None, &range());
    assert_eq!(
        h.join_response(leader_rejoin).unwrap().generation_id,
        generation + 1
    );
    assert_eq!(
        h.join_response(frejoin).unwrap().generation_id,
        generation + 1
    );
}

#[test]
fn rejoin_storm_converges_to_one_generation() {
    let mut h = Harness::new();
    let (ids, mut generation, mut leader) = h.form_group(G, 5, &range());
    h.sync_all(G, &ids, generation, &leader);
    for round in 0..20 {
        // The leader's join starts each rebalance (a follower rejoining with unchanged
        // metadata in Stable just gets the current generation back). The others follow in
        // a rotating order; one of them retries, which supersedes its first join.
        let mut order = vec![leader.clone()];
        order.extend(
            (0..ids.len())
                .map(|k| ids[(k + round) % ids.len()].clone())
                .filter(|id| *id != leader),
        );
        let mut joins = Vec::new();
        for (k, id) in order.iter().enumerate() {
            let j = h.join(5, G, id, None, &range());
            if k == 1 {
                let retry = h.join(5, G, id, None, &range());
                let r = h.join_response(j).expect("superseded join is answered");
                assert_eq!(r.error_code, code(ResponseError::RebalanceInProgress));
                joins.push(retry);
            } else {
                joins.push(j);
            }
        }
        let responses: Vec<JoinGroupResponse> = joins
            .iter()
            .map(|j| h.join_response(*j).expect("completed"))
            .collect();
        assert!(responses.iter().all(|r| r.error_code == 0));
        assert!(responses.iter().all(|r| r.generation_id == generation + 1));
        generation += 1;
        leader = responses[0].leader.to_string();
        assert_eq!(
            responses.iter().filter(|r| !r.members.is_empty()).count(),
            1
        );
        h.sync_all(G, &ids, generation, &leader);
        assert_eq!(h.c.group_state(G), Some(GroupState::Stable));
    }
    assert_eq!(generation, 21);
}

#[test]
fn member_that_never_syncs_is_removed_after_rebalance_timeout() {
    let mut h = Harness::new();
    let (ids, generation, leader) = h.form_group(G, 2, &range());
    let lazy = ids.iter().find(|i| **i != leader).unwrap().clone();
    let sync = h.sync(5, G, &leader, None, generation, &[(&leader, b"a")]);
    assert_eq!(h.sync_response(sync).unwrap().error_code, 0);
    for _ in 0..11 {
        h.advance(3_000);
        h.heartbeat(G, &leader, None, generation);
    }
    assert_eq!(
        h.heartbeat(G, &lazy, None, generation),
        code(ResponseError::UnknownMemberId)
    );
    assert_eq!(h.c.group_state(G), Some(GroupState::PreparingRebalance));
}

#[test]
fn static_member_restart_keeps_generation_and_fences_old_id() {
    let mut h = Harness::new();
    let j1 = h.join(5, G, "", Some("i1"), &range());
    let j2 = h.join(5, G, "", Some("i2"), &range());
    h.advance(6_000);
    let (r1, r2) = (h.join_response(j1).unwrap(), h.join_response(j2).unwrap());
    assert_eq!(r1.error_code, 0, "static members skip MEMBER_ID_REQUIRED");
    assert!(r1.member_id.starts_with("i1-"));
    let (id1, id2) = (r1.member_id.to_string(), r2.member_id.to_string());
    let leader = r1.leader.to_string();
    let generation = r1.generation_id;
    let s1 = h.sync(
        5,
        G,
        &id1,
        Some("i1"),
        generation,
        &[(&id1, b"p0"), (&id2, b"p1")],
    );
    let s2 = h.sync(
        5,
        G,
        &id2,
        Some("i2"),
        generation,
        &[(&id1, b"p0"), (&id2, b"p1")],
    );
    h.sync_response(s1).unwrap();
    h.sync_response(s2).unwrap();
    assert_eq!(h.c.group_state(G), Some(GroupState::Stable));

    // The follower restarts: new id, no rebalance, same generation and assignment.
    let follower_instance = if leader == id1 { "i2" } else { "i1" };
    let old_follower_id = if leader == id1 { &id2 } else { &id1 };
    let rejoin = h.join(5, G, "", Some(follower_instance), &range());
    let r = h
        .join_response(rejoin)
        .expect("answered once the new id is durable");
    assert_eq!((r.error_code, r.generation_id), (0, generation));
    assert_ne!(r.member_id.as_str(), old_follower_id.as_str());
    assert!(r.members.is_empty());
    assert_eq!(h.c.group_state(G), Some(GroupState::Stable));
    let new_id = r.member_id.to_string();
    let sync = h.sync(5, G, &new_id, Some(follower_instance), generation, &[]);
    let expected: &[u8] = if leader == id1 { b"p1" } else { b"p0" };
    assert_eq!(&h.sync_response(sync).unwrap().assignment[..], expected);
    // The zombie with the old id is fenced.
    assert_eq!(
        h.heartbeat(G, old_follower_id, Some(follower_instance), generation),
        code(ResponseError::FencedInstanceId)
    );
    assert_eq!(
        h.heartbeat(G, &leader, None, generation),
        0,
        "no rebalance for others"
    );

    // The static leader restarts (v9): members are returned, with skip_assignment.
    let leader_instance = if leader == id1 { "i1" } else { "i2" };
    let rejoin = h.join(9, G, "", Some(leader_instance), &range());
    let r = h.join_response(rejoin).unwrap();
    assert_eq!((r.error_code, r.generation_id), (0, generation));
    assert!(r.skip_assignment);
    assert_eq!(r.leader, r.member_id);
    assert_eq!(r.members.len(), 2);
    assert_eq!(h.c.group_state(G), Some(GroupState::Stable));
}

#[test]
fn static_member_with_new_protocol_triggers_rebalance() {
    let mut h = Harness::new();
    let j1 = h.join(5, G, "", Some("i1"), &range());
    h.advance(3_000);
    let r = h.join_response(j1).unwrap();
    let id = r.member_id.to_string();
    h.sync(5, G, &id, Some("i1"), 1, &[(&id, b"x")]);
    let sub = subscription(&["t"]);
    let rejoin = h.join(
        5,
        G,
        "",
        Some("i1"),
        &[("roundrobin", sub.clone()), ("range", sub)],
    );
    // Protocol would change: full rebalance (only member, so it completes at once).
    let r = h.join_response(rejoin).unwrap();
    assert_eq!(r.generation_id, 2);
    assert_eq!(r.protocol_name.as_deref(), Some("roundrobin"));
}

#[test]
fn cooperative_two_round_rebalance_flows_through() {
    let coop = || vec![("cooperative-sticky", subscription(&["t"]))];
    let mut h = Harness::new();
    let (ids, generation, leader) = h.form_group(G, 2, &coop());
    h.sync_all(G, &ids, generation, &leader);
    // A third member joins; existing members learn through heartbeats and rejoin.
    let j = h.join(5, G, "", None, &coop());
    let new_id = h.join_response(j).unwrap().member_id.to_string();
    let j_new = h.join(5, G, &new_id, None, &coop());
    assert_eq!(
        h.heartbeat(G, &ids[0], None, generation),
        code(ResponseError::RebalanceInProgress)
    );
    let joins: Vec<_> = ids
        .iter()
        .map(|id| h.join(5, G, id, None, &coop()))
        .collect();
    let mut all_ids = ids.clone();
    all_ids.push(new_id.clone());
    let r_new = h.join_response(j_new).unwrap();
    for j in joins {
        assert_eq!(h.join_response(j).unwrap().generation_id, generation + 1);
    }
    let leader = r_new.leader.to_string();
    // Round 1: the leader revokes partitions moving to the new member (assigns nothing new).
    h.sync_all(G, &all_ids, generation + 1, &leader);
    // Round 2: members that revoked rejoin at once; the group rebalances again cleanly.
    let joins: Vec<_> = all_ids
        .iter()
        .map(|id| h.join(5, G, id, None, &coop()))
        .collect();
    for j in joins {
        let r = h.join_response(j).unwrap();
        assert_eq!((r.error_code, r.generation_id), (0, generation + 2));
    }
    h.sync_all(G, &all_ids, generation + 2, &leader);
    assert_eq!(h.c.group_state(G), Some(GroupState::Stable));
}

#[test]
fn group_max_size_is_enforced() {
    let config = josefine_group::GroupConfig {
        group_max_size: 2,
        ..Default::default()
    };
    let mut h = Harness::with_config(config, Default::default());
    let (ids, generation, leader) = h.form_group(G, 2, &range());
    h.sync_all(G, &ids, generation, &leader);
    let extra = h.join(3, G, "", None, &range());
    assert_eq!(
        h.join_response(extra).unwrap().error_code,
        code(ResponseError::GroupMaxSizeReached)
    );
    // Pending ids handed out by MEMBER_ID_REQUIRED are bounded too.
    let mut codes = Vec::new();
    for _ in 0..3 {
        let j = h.join(5, "other", "", None, &range());
        codes.push(h.join_response(j).unwrap().error_code);
    }
    let required = code(ResponseError::MemberIdRequired);
    let full = code(ResponseError::GroupMaxSizeReached);
    assert_eq!(codes, vec![required, required, full]);
}

#[test]
fn leave_group_batch_reports_per_member_errors() {
    let mut h = Harness::new();
    let j = h.join(5, G, "", Some("i1"), &range());
    h.advance(3_000);
    let id = h.join_response(j).unwrap().member_id.to_string();
    let leave = LeaveGroupRequest::default()
        .with_group_id(GroupId(s(G)))
        .with_members(vec![
            MemberIdentity::default().with_member_id(s("ghost")),
            MemberIdentity::default()
                .with_member_id(s("wrong-id"))
                .with_group_instance_id(Some(s("i1"))),
            MemberIdentity::default()
                .with_member_id(s(&id))
                .with_group_instance_id(Some(s("i1"))),
        ]);
    let lid = h.send(4, GroupRequest::LeaveGroup(leave));
    let Some(GroupResponse::LeaveGroup(r)) = h.take(lid) else {
        panic!()
    };
    let codes: Vec<i16> = r.members.iter().map(|m| m.error_code).collect();
    assert_eq!(
        codes,
        vec![
            code(ResponseError::UnknownMemberId),
            code(ResponseError::FencedInstanceId),
            0
        ]
    );
    // Last member left: the group goes Empty with a bumped generation, durably.
    assert_eq!(h.c.group_state(G), Some(GroupState::Empty));
    // v0 form: single member id, error at top level.
    let leave = LeaveGroupRequest::default()
        .with_group_id(GroupId(s(G)))
        .with_member_id(s("ghost"));
    let lid = h.send(0, GroupRequest::LeaveGroup(leave));
    let Some(GroupResponse::LeaveGroup(r)) = h.take(lid) else {
        panic!()
    };
    assert_eq!(r.error_code, code(ResponseError::UnknownMemberId));
}

#[test]
fn membership_survives_coordinator_restart() {
    let mut h = Harness::new();
    let (ids, generation, leader) = h.form_group(G, 2, &range());
    let assigned = h.sync_all(G, &ids, generation, &leader);
    let mut h2 = h.restart();
    assert_eq!(h2.c.group_state(G), Some(GroupState::Stable));
    for id in &ids {
        assert_eq!(h2.heartbeat(G, id, None, generation), 0);
    }
    // A follower's sync in Stable returns the assignment stored in the record.
    let follower = ids.iter().position(|i| *i != leader).unwrap();
    let sync = h2.sync(5, G, &ids[follower], None, generation, &[]);
    assert_eq!(
        h2.sync_response(sync).unwrap().assignment,
        assigned[follower]
    );
    // Members that never come back expire after the session timeout.
    h2.advance(SESSION_MS as i64 + 1);
    h2.advance(REBALANCE_MS as i64 + 1);
    assert_eq!(h2.c.group_state(G), Some(GroupState::Empty));
}

#[test]
fn pending_member_arriving_after_the_join_completes_starts_the_next_rebalance() {
    let mut h = Harness::new();
    let ja = h.join(5, G, "", None, &range());
    let jb = h.join(5, G, "", None, &range());
    let a = h.join_response(ja).unwrap().member_id.to_string();
    let b = h.join_response(jb).unwrap().member_id.to_string();
    let ja = h.join(5, G, &a, None, &range());
    h.advance(3_000); // the initial delay ends without b
    let r = h.join_response(ja).unwrap();
    assert_eq!((r.generation_id, r.members.len()), (1, 1));
    h.sync_all(G, std::slice::from_ref(&a), 1, &a);
    h.advance(2_000);
    // b is late but within its session timeout: still a valid pending id.
    let jb = h.join(5, G, &b, None, &range());
    assert_eq!(h.c.group_state(G), Some(GroupState::PreparingRebalance));
    assert_eq!(
        h.heartbeat(G, &a, None, 1),
        code(ResponseError::RebalanceInProgress)
    );
    let ja = h.join(5, G, &a, None, &range());
    let (ra, rb) = (h.join_response(ja).unwrap(), h.join_response(jb).unwrap());
    assert_eq!((ra.generation_id, rb.generation_id), (2, 2));
    // A pending id not used within the session timeout is forgotten.
    let jc = h.join(5, G, "", None, &range());
    let c = h.join_response(jc).unwrap().member_id.to_string();
    h.advance(SESSION_MS as i64 + 1);
    let jc = h.join(5, G, &c, None, &range());
    assert_eq!(
        h.join_response(jc).unwrap().error_code,
        code(ResponseError::UnknownMemberId)
    );
}

#[test]
fn failed_assignment_append_fails_syncs_and_rebalances() {
    let mut h = Harness::new();
    let (ids, generation, leader) = h.form_group(G, 2, &range());
    let follower = ids.iter().find(|i| **i != leader).unwrap().clone();
    let fsync = h.sync(5, G, &follower, None, generation, &[]);
    h.auto_ack = false;
    let lsync = h.sync(
        5,
        G,
        &leader,
        None,
        generation,
        &[(&leader, b"a"), (&follower, b"b")],
    );
    assert!(h.sync_response(fsync).is_none() && h.sync_response(lsync).is_none());
    h.ack_held(josefine_group::AppendOutcome::Unavailable);
    let unavailable = code(ResponseError::CoordinatorNotAvailable);
    assert_eq!(h.sync_response(fsync).unwrap().error_code, unavailable);
    assert_eq!(h.sync_response(lsync).unwrap().error_code, unavailable);
    assert_eq!(h.c.group_state(G), Some(GroupState::PreparingRebalance));
}

#[test]
fn failed_static_rejoin_append_keeps_the_old_member_id() {
    let mut h = Harness::new();
    let j = h.join(5, G, "", Some("i1"), &range());
    h.advance(3_000);
    let old_id = h.join_response(j).unwrap().member_id.to_string();
    let sync = h.sync(5, G, &old_id, Some("i1"), 1, &[(&old_id, b"x")]);
    assert_eq!(h.sync_response(sync).unwrap().error_code, 0);
    h.auto_ack = false;
    let rejoin = h.join(5, G, "", Some("i1"), &range());
    assert!(
        h.join_response(rejoin).is_none(),
        "answered only once durable"
    );
    h.ack_held(josefine_group::AppendOutcome::NotLeader);
    assert_eq!(
        h.join_response(rejoin).unwrap().error_code,
        code(ResponseError::NotCoordinator)
    );
    h.auto_ack = true;
    assert_eq!(
        h.heartbeat(G, &old_id, Some("i1"), 1),
        0,
        "old id still valid"
    );
}

#[test]
fn pending_id_cannot_claim_an_existing_static_instance() {
    let mut h = Harness::new();
    let j = h.join(5, G, "", Some("i1"), &range());
    h.advance(3_000);
    assert_eq!(h.join_response(j).unwrap().error_code, 0);
    let first = h.join(5, G, "", None, &range());
    let pending = h.join_response(first).unwrap().member_id.to_string();
    let claim = h.join(5, G, &pending, Some("i1"), &range());
    assert_eq!(
        h.join_response(claim).unwrap().error_code,
        code(ResponseError::FencedInstanceId)
    );
}

/// Kafka 4.1 (checked with examples/group_probe in the broker crate): error answers carry a
/// null protocol from v7 on, "" before (the field is not nullable there).
#[test]
fn join_errors_carry_no_protocol() {
    let mut h = Harness::new();
    for (v, expected) in [(9, None), (7, None), (6, Some("")), (4, Some(""))] {
        let first = h.join(v, G, "", None, &range());
        let r = h.join_response(first).unwrap();
        assert_eq!(r.error_code, code(ResponseError::MemberIdRequired));
        assert_eq!(r.protocol_name.as_deref(), expected, "v{v}");
        assert_eq!(r.protocol_type, None, "v{v}");
    }
}

/// Kafka 4.1 refuses a SyncGroup v5+ without protocol type and name before looking at the
/// group (checked with examples/group_probe in the broker crate); v4 has no such fields.
#[test]
fn sync_v5_needs_protocol_type_and_name() {
    let mut h = Harness::new();
    let (ids, generation, _) = h.form_group(G, 1, &range());
    for group in [G, "no-such-group"] {
        let bare = SyncGroupRequest::default()
            .with_group_id(GroupId(s(group)))
            .with_generation_id(generation)
            .with_member_id(s(&ids[0]));
        let id = h.send(5, GroupRequest::SyncGroup(bare.clone()));
        assert_eq!(
            h.sync_response(id).unwrap().error_code,
            code(ResponseError::InconsistentGroupProtocol),
            "{group}"
        );
    }
    let sync = h.sync(4, G, &ids[0], None, generation, &[(&ids[0], b"a")]);
    assert_eq!(h.sync_response(sync).unwrap().error_code, 0);
}

//! Seeded randomized clients against the coordinator: crashes, pauses longer than the session
//! timeout, leaves, rejoin storms. Checks that every waiting request is answered exactly once,
//! that a member only ever receives the assignment the leader made for it, and that once the
//! chaos stops the group converges to one Stable generation containing exactly the live
//! clients. A failure prints the seed; rerun with that seed to replay it.

mod harness;

use std::collections::BTreeSet;

use bytes::Bytes;
use harness::*;
use josefine_group::{GroupRequest, GroupResponse, GroupState, RequestId};
use kafka_protocol::messages::leave_group_request::MemberIdentity;
use kafka_protocol::messages::*;
use kafka_protocol::ResponseError;

const G: &str = "chaos";

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

#[derive(Debug)]
enum Phase {
    Idle,
    Joining(RequestId),
    Syncing(RequestId, i32),
    Stable(i32),
    /// Crashed or paused: silent until this time.
    Silent(i64),
}

struct Client {
    member_id: String,
    /// Static members (group.instance.id) keep their assignment across restarts.
    instance: Option<String>,
    phase: Phase,
}

impl Client {
    /// What the leader assigns this client: its identity, so it can check what it receives.
    fn identity(&self) -> &[u8] {
        self.instance
            .as_deref()
            .unwrap_or(&self.member_id)
            .as_bytes()
    }
}

fn protocols() -> Vec<(&'static str, Bytes)> {
    vec![("range", subscription(&["t"]))]
}

fn step_client(h: &mut Harness, c: &mut Client) {
    match c.phase {
        Phase::Idle => {
            let (id, instance) = (c.member_id.clone(), c.instance.clone());
            let j = h.join(5, G, &id, instance.as_deref(), &protocols());
            c.phase = Phase::Joining(j);
        }
        Phase::Joining(j) => {
            let Some(r) = h.join_response(j) else { return };
            match r.error_code {
                0 => {
                    c.member_id = r.member_id.to_string();
                    // The leader assigns every member its own id, so each member can check
                    // that what it receives was made for it.
                    let plan: Vec<(String, Vec<u8>)> = r
                        .members
                        .iter()
                        .map(|m| {
                            let identity = m.group_instance_id.as_ref().unwrap_or(&m.member_id);
                            (m.member_id.to_string(), identity.as_bytes().to_vec())
                        })
                        .collect();
                    let refs: Vec<(&str, &[u8])> = plan
                        .iter()
                        .map(|(m, a)| (m.as_str(), a.as_slice()))
                        .collect();
                    let (id, instance) = (c.member_id.clone(), c.instance.clone());
                    let sid = h.sync(5, G, &id, instance.as_deref(), r.generation_id, &refs);
                    c.phase = Phase::Syncing(sid, r.generation_id);
                }
                e if e == ResponseError::MemberIdRequired.code() => {
                    c.member_id = r.member_id.to_string();
                    c.phase = Phase::Idle;
                }
                e if e == ResponseError::RebalanceInProgress.code() => c.phase = Phase::Idle,
                _ => {
                    c.member_id.clear();
                    c.phase = Phase::Idle;
                }
            }
        }
        Phase::Syncing(sid, generation) => {
            let Some(r) = h.sync_response(sid) else {
                return;
            };
            match r.error_code {
                0 => {
                    assert_eq!(
                        &r.assignment[..],
                        c.identity(),
                        "a member received an assignment made for another member"
                    );
                    c.phase = Phase::Stable(generation);
                }
                e if e == ResponseError::RebalanceInProgress.code() => c.phase = Phase::Idle,
                _ => {
                    c.member_id.clear();
                    c.phase = Phase::Idle;
                }
            }
        }
        Phase::Stable(generation) => {
            let (id, instance) = (c.member_id.clone(), c.instance.clone());
            match h.heartbeat(G, &id, instance.as_deref(), generation) {
                0 => {}
                e if e == ResponseError::RebalanceInProgress.code() => c.phase = Phase::Idle,
                _ => {
                    c.member_id.clear();
                    c.phase = Phase::Idle;
                }
            }
        }
        Phase::Silent(until) => {
            if h.now_ms >= until {
                c.phase = Phase::Idle;
            }
        }
    }
}

fn run(seed: u64) {
    let mut rng = Rng(seed | 1);
    let mut h = Harness::new();
    let mut clients: Vec<Client> = (0..6)
        .map(|i| Client {
            member_id: String::new(),
            instance: (i % 2 == 0).then(|| format!("instance-{i}")),
            phase: Phase::Idle,
        })
        .collect();
    // Chaos for ten simulated minutes.
    for _ in 0..1_200 {
        h.advance(100 + rng.below(900) as i64);
        for c in clients.iter_mut() {
            match rng.below(200) {
                0 => {
                    // Crash: forget everything; the old member lingers until its session ends.
                    c.member_id.clear();
                    c.phase = Phase::Silent(h.now_ms + rng.below(20_000) as i64);
                }
                1 => {
                    // Long pause (GC, network): may exceed the session timeout.
                    c.phase = Phase::Silent(h.now_ms + rng.below(25_000) as i64);
                }
                2 if !c.member_id.is_empty() => {
                    let leave = LeaveGroupRequest::default()
                        .with_group_id(GroupId(s(G)))
                        .with_members(vec![MemberIdentity::default()
                            .with_member_id(s(&c.member_id))
                            .with_group_instance_id(c.instance.as_deref().map(s))]);
                    let id = h.send(3, GroupRequest::LeaveGroup(leave));
                    assert!(matches!(h.take(id), Some(GroupResponse::LeaveGroup(_))));
                    c.member_id.clear();
                    c.phase = Phase::Silent(h.now_ms + rng.below(5_000) as i64);
                }
                _ => step_client(&mut h, c),
            }
        }
    }
    // Calm: everyone behaves; the group must converge.
    for _ in 0..400 {
        h.advance(250);
        for c in clients.iter_mut() {
            step_client(&mut h, c);
        }
    }
    let generations: BTreeSet<i32> = clients
        .iter()
        .map(|c| match c.phase {
            Phase::Stable(g) => g,
            ref other => panic!("seed {seed}: client not stable after calm period: {other:?}"),
        })
        .collect();
    assert_eq!(
        generations.len(),
        1,
        "seed {seed}: clients disagree on the generation"
    );
    let final_generation = *generations.first().expect("six clients");
    assert!(
        final_generation >= 10,
        "seed {seed}: only {final_generation} generations: the chaos did not cause rebalances"
    );
    assert_eq!(h.c.group_state(G), Some(GroupState::Stable), "seed {seed}");
    let ids: BTreeSet<&str> = clients.iter().map(|c| c.member_id.as_str()).collect();
    assert_eq!(
        ids.len(),
        clients.len(),
        "seed {seed}: member ids must be distinct"
    );
    // Everyone leaves: the group empties and no request is left unanswered.
    for c in &clients {
        let leave = LeaveGroupRequest::default()
            .with_group_id(GroupId(s(G)))
            .with_members(vec![MemberIdentity::default()
                .with_member_id(s(&c.member_id))
                .with_group_instance_id(c.instance.as_deref().map(s))]);
        let id = h.send(3, GroupRequest::LeaveGroup(leave));
        let Some(GroupResponse::LeaveGroup(r)) = h.take(id) else {
            panic!()
        };
        assert_eq!(r.members[0].error_code, 0, "seed {seed}");
    }
    assert_eq!(h.c.group_state(G), Some(GroupState::Empty), "seed {seed}");
    for c in &clients {
        if let Phase::Joining(id) | Phase::Syncing(id, _) = c.phase {
            panic!("seed {seed}: request {id:?} still waiting");
        }
    }
}

#[test]
fn chaotic_clients_converge() {
    let seeds: Vec<u64> = match std::env::var("CHAOS_SEED") {
        Ok(s) => vec![s.parse().expect("CHAOS_SEED is a u64")],
        Err(_) => (1..=20).map(|i| i * 0x9E37_79B9).collect(),
    };
    for seed in seeds {
        run(seed);
    }
}

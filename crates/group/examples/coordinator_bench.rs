//! Prints how fast the coordinator handles heartbeats and offset commits, and what
//! `next_deadline_ms` costs, with many groups loaded. A program that prints numbers, not a
//! test: run with `cargo run --release -p josefine-group --example coordinator_bench`.

use std::time::Instant;

use bytes::Bytes;
use josefine_group::{
    AppendOutcome, Coordinator, Effect, GroupConfig, GroupRequest, GroupResponse, RequestContext,
    RequestId,
};
use kafka_protocol::messages::join_group_request::JoinGroupRequestProtocol;
use kafka_protocol::messages::offset_commit_request::{
    OffsetCommitRequestPartition, OffsetCommitRequestTopic,
};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;

const GROUPS: usize = 2_000;
const MEMBERS: usize = 5;

fn s(v: &str) -> StrBytes {
    StrBytes::from_string(v.to_string())
}

struct Driver {
    c: Coordinator,
    next: u64,
    now_ms: i64,
    last: Vec<(RequestId, GroupResponse)>,
}

impl Driver {
    fn run(&mut self, effects: Vec<Effect>) {
        let mut queue = effects;
        while !queue.is_empty() {
            let mut next = Vec::new();
            for e in queue {
                match e {
                    Effect::Respond {
                        request_id,
                        response,
                        ..
                    } => self.last.push((request_id, response)),
                    Effect::Append { append_id, .. } => next.extend(self.c.on_append_complete(
                        append_id,
                        AppendOutcome::Appended,
                        self.now_ms,
                    )),
                }
            }
            queue = next;
        }
    }
    fn send(&mut self, v: i16, r: GroupRequest) -> RequestId {
        self.next += 1;
        let ctx = RequestContext {
            request_id: RequestId(self.next),
            api_version: v,
            client_id: "bench".into(),
            client_host: "/127.0.0.1".into(),
        };
        let effects = self.c.handle(ctx, r, self.now_ms);
        self.run(effects);
        RequestId(self.next)
    }
    fn advance(&mut self, ms: i64) {
        self.now_ms += ms;
        let effects = self.c.tick(self.now_ms);
        self.run(effects);
    }
}

fn main() {
    let config = GroupConfig::default();
    let partitions = config.offsets_topic_partitions;
    let mut d = Driver {
        c: Coordinator::new(config, 1).expect("valid config"),
        next: 0,
        now_ms: 0,
        last: Vec::new(),
    };
    for p in 0..partitions {
        d.c.begin_load(p);
        d.c.complete_load(p, 0).expect("loading");
    }
    // Form GROUPS groups of MEMBERS members each (v3 joins: no MEMBER_ID_REQUIRED round).
    let start = Instant::now();
    let mut group_of = std::collections::BTreeMap::new();
    for g in 0..GROUPS {
        for _ in 0..MEMBERS {
            let join = JoinGroupRequest::default()
                .with_group_id(GroupId(s(&format!("group-{g}"))))
                .with_session_timeout_ms(45_000)
                .with_rebalance_timeout_ms(60_000)
                .with_protocol_type(s("consumer"))
                .with_protocols(vec![JoinGroupRequestProtocol::default()
                    .with_name(s("range"))
                    .with_metadata(Bytes::from_static(&[0, 0, 0, 0, 0, 0]))]);
            let id = d.send(3, GroupRequest::JoinGroup(join));
            group_of.insert(id, format!("group-{g}"));
        }
    }
    d.last.clear();
    // Members joining during the initial delay extend it (up to the rebalance timeout).
    while d.last.len() < GROUPS * MEMBERS && d.now_ms < 60_000 {
        d.advance(1_000);
    }
    let mut ids: Vec<(String, String, i32)> = Vec::new();
    for (request_id, r) in d.last.drain(..) {
        if let GroupResponse::JoinGroup(r) = r {
            ids.push((
                group_of[&request_id].clone(),
                r.member_id.to_string(),
                r.generation_id,
            ));
        }
    }
    println!(
        "formed {GROUPS} groups x {MEMBERS} members: {} join responses in {:?}",
        ids.len(),
        start.elapsed()
    );

    let rounds = 5;
    let start = Instant::now();
    for _ in 0..rounds {
        for (g, m, gen) in &ids {
            let hb = HeartbeatRequest::default()
                .with_group_id(GroupId(s(g)))
                .with_member_id(s(m))
                .with_generation_id(*gen);
            d.send(4, GroupRequest::Heartbeat(hb));
        }
    }
    let n = rounds * ids.len();
    let elapsed = start.elapsed();
    let errors = d
        .last
        .drain(..)
        .filter(|(_, r)| !matches!(r, GroupResponse::Heartbeat(h) if h.error_code == 0))
        .count();
    println!(
        "heartbeats: {n} in {elapsed:?} = {:.0}/s ({errors} not NONE)",
        n as f64 / elapsed.as_secs_f64()
    );

    // Offset commits from a simple consumer (no generation), 10 partitions each.
    let start = Instant::now();
    let commits = 20_000;
    for i in 0..commits {
        let commit = OffsetCommitRequest::default()
            .with_group_id(GroupId(s(&format!("simple-{}", i % 500))))
            .with_generation_id_or_member_epoch(-1)
            .with_topics(vec![OffsetCommitRequestTopic::default()
                .with_name(TopicName(s("topic")))
                .with_partitions(
                    (0..10)
                        .map(|p| {
                            OffsetCommitRequestPartition::default()
                                .with_partition_index(p)
                                .with_committed_offset(i as i64)
                        })
                        .collect(),
                )]);
        d.send(8, GroupRequest::OffsetCommit(commit));
    }
    let elapsed = start.elapsed();
    println!(
        "offset commits (10 partitions each, append acknowledged inline): {commits} in {elapsed:?} = {:.0}/s",
        commits as f64 / elapsed.as_secs_f64()
    );

    let start = Instant::now();
    let calls = 100_000;
    let mut sink = 0i64;
    for _ in 0..calls {
        sink = sink.wrapping_add(d.c.next_deadline_ms().unwrap_or(0));
    }
    let elapsed = start.elapsed();
    println!(
        "next_deadline_ms with {} groups: {:.0} ns/call (checksum {sink})",
        d.c.group_count(),
        elapsed.as_nanos() as f64 / calls as f64
    );
}

//! A simulated driver for the coordinator: it plays the broker (appends to an in-memory
//! `__consumer_offsets`, acknowledges appends, advances simulated time, runs timers) and checks
//! that every emitted response encodes at its API version.

#![allow(dead_code)]

use std::collections::BTreeMap;

use bytes::{BufMut, Bytes, BytesMut};
use josefine_group::{
    AppendId, AppendOutcome, Coordinator, Effect, GroupConfig, GroupRequest, GroupResponse,
    OffsetsRecord, RequestContext, RequestId,
};
use kafka_protocol::messages::join_group_request::JoinGroupRequestProtocol;
use kafka_protocol::messages::sync_group_request::SyncGroupRequestAssignment;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::{Encodable, StrBytes};

pub const SESSION_MS: i32 = 10_000;
pub const REBALANCE_MS: i32 = 30_000;

pub fn s(v: &str) -> StrBytes {
    StrBytes::from_string(v.to_string())
}

/// ConsumerProtocolSubscription v0: version, topics, null user data.
pub fn subscription(topics: &[&str]) -> Bytes {
    let mut b = BytesMut::new();
    b.put_i16(0);
    b.put_i32(topics.len() as i32);
    for t in topics {
        b.put_i16(t.len() as i16);
        b.put_slice(t.as_bytes());
    }
    b.put_i32(-1);
    b.freeze()
}

pub struct Harness {
    pub c: Coordinator,
    pub now_ms: i64,
    next_request: u64,
    pub responses: BTreeMap<RequestId, GroupResponse>,
    /// The simulated `__consumer_offsets` log, per partition.
    pub log: BTreeMap<i32, Vec<OffsetsRecord>>,
    /// When false, appends wait in `held` until `ack_held`.
    pub auto_ack: bool,
    pub held: Vec<AppendId>,
    /// The protocol of the last successful join: SyncGroup v5+ must name it (Kafka refuses a
    /// v5+ sync without protocol type and name).
    pub protocol: String,
}

impl Harness {
    pub fn new() -> Self {
        Self::with_config(GroupConfig::default(), BTreeMap::new())
    }

    /// A coordinator that owns every partition, loaded from `log`.
    pub fn with_config(config: GroupConfig, log: BTreeMap<i32, Vec<OffsetsRecord>>) -> Self {
        let partitions = config.offsets_topic_partitions;
        let mut c = Coordinator::new(config, 42).unwrap();
        let mut effects = Vec::new();
        for p in 0..partitions {
            assert!(c.begin_load(p).is_empty());
            for r in log.get(&p).into_iter().flatten() {
                c.load_record(p, &r.key, r.value.as_deref()).unwrap();
            }
            effects.extend(c.complete_load(p, 1_000).unwrap());
        }
        let mut h = Harness {
            c,
            now_ms: 1_000,
            next_request: 1,
            responses: BTreeMap::new(),
            log,
            auto_ack: true,
            held: Vec::new(),
            protocol: String::new(),
        };
        h.process(effects);
        h
    }

    /// Simulates a broker restart: a fresh coordinator loaded from the log written so far.
    pub fn restart(&self) -> Self {
        let mut h = Self::with_config(GroupConfig::default(), self.log.clone());
        h.now_ms = self.now_ms;
        // The clients remember their protocol across the broker restart.
        h.protocol = self.protocol.clone();
        h
    }

    pub fn process(&mut self, effects: Vec<Effect>) {
        let mut queue = effects;
        while !queue.is_empty() {
            let mut next = Vec::new();
            for e in queue {
                match e {
                    Effect::Respond {
                        request_id,
                        api_version,
                        response,
                    } => {
                        assert_encodes(&response, api_version);
                        if let GroupResponse::JoinGroup(r) = &response {
                            if let (0, Some(p)) = (r.error_code, &r.protocol_name) {
                                self.protocol = p.to_string();
                            }
                        }
                        let previous = self.responses.insert(request_id, response);
                        assert!(previous.is_none(), "two responses for {request_id:?}");
                    }
                    Effect::Append {
                        append_id,
                        partition,
                        records,
                        ..
                    } => {
                        self.log.entry(partition).or_default().extend(records);
                        if self.auto_ack {
                            next.extend(self.c.on_append_complete(
                                append_id,
                                AppendOutcome::Appended,
                                self.now_ms,
                            ));
                        } else {
                            self.held.push(append_id);
                        }
                    }
                }
            }
            queue = next;
        }
    }

    pub fn ack_held(&mut self, outcome: AppendOutcome) {
        for id in std::mem::take(&mut self.held) {
            let effects = self.c.on_append_complete(id, outcome, self.now_ms);
            self.process(effects);
        }
    }

    pub fn send(&mut self, api_version: i16, request: GroupRequest) -> RequestId {
        let request_id = RequestId(self.next_request);
        self.next_request += 1;
        let ctx = RequestContext {
            request_id,
            api_version,
            client_id: "client".into(),
            client_host: "/127.0.0.1".into(),
        };
        let effects = self.c.handle(ctx, request, self.now_ms);
        self.process(effects);
        request_id
    }

    /// Advances simulated time by `ms`, firing every timer at its deadline.
    pub fn advance(&mut self, ms: i64) {
        let target = self.now_ms + ms;
        while let Some(deadline) = self.c.next_deadline_ms().filter(|&d| d <= target) {
            self.now_ms = self.now_ms.max(deadline);
            let effects = self.c.tick(self.now_ms);
            self.process(effects);
        }
        self.now_ms = target;
    }

    /// Advances time in 100 ms steps until `done` holds (at most one rebalance timeout).
    pub fn advance_until(&mut self, done: impl Fn(&Self) -> bool) {
        for _ in 0..(REBALANCE_MS / 100) {
            if done(self) {
                return;
            }
            self.advance(100);
        }
        assert!(
            done(self),
            "condition not reached within the rebalance timeout"
        );
    }

    pub fn take(&mut self, id: RequestId) -> Option<GroupResponse> {
        self.responses.remove(&id)
    }

    pub fn join_response(&mut self, id: RequestId) -> Option<JoinGroupResponse> {
        self.take(id).map(|r| match r {
            GroupResponse::JoinGroup(r) => r,
            other => panic!("expected JoinGroup, got {other:?}"),
        })
    }

    pub fn sync_response(&mut self, id: RequestId) -> Option<SyncGroupResponse> {
        self.take(id).map(|r| match r {
            GroupResponse::SyncGroup(r) => r,
            other => panic!("expected SyncGroup, got {other:?}"),
        })
    }

    // ---- Client-side requests -----------------------------------------------------------------

    pub fn join(
        &mut self,
        v: i16,
        group: &str,
        member_id: &str,
        instance: Option<&str>,
        protocols: &[(&str, Bytes)],
    ) -> RequestId {
        let req = JoinGroupRequest::default()
            .with_group_id(GroupId(s(group)))
            .with_session_timeout_ms(SESSION_MS)
            .with_rebalance_timeout_ms(REBALANCE_MS)
            .with_member_id(s(member_id))
            .with_group_instance_id(instance.map(s))
            .with_protocol_type(s("consumer"))
            .with_protocols(
                protocols
                    .iter()
                    .map(|(n, m)| {
                        JoinGroupRequestProtocol::default()
                            .with_name(s(n))
                            .with_metadata(m.clone())
                    })
                    .collect(),
            );
        self.send(v, GroupRequest::JoinGroup(req))
    }

    pub fn sync(
        &mut self,
        v: i16,
        group: &str,
        member_id: &str,
        instance: Option<&str>,
        generation: i32,
        assignments: &[(&str, &[u8])],
    ) -> RequestId {
        let req = SyncGroupRequest::default()
            .with_group_id(GroupId(s(group)))
            .with_generation_id(generation)
            .with_member_id(s(member_id))
            .with_group_instance_id(instance.map(s))
            .with_assignments(
                assignments
                    .iter()
                    .map(|(m, a)| {
                        SyncGroupRequestAssignment::default()
                            .with_member_id(s(m))
                            .with_assignment(Bytes::copy_from_slice(a))
                    })
                    .collect(),
            );
        let req = if v >= 5 {
            req.with_protocol_type(Some(s("consumer")))
                .with_protocol_name(Some(s(&self.protocol)))
        } else {
            req
        };
        self.send(v, GroupRequest::SyncGroup(req))
    }

    pub fn heartbeat(
        &mut self,
        group: &str,
        member_id: &str,
        instance: Option<&str>,
        generation: i32,
    ) -> i16 {
        let req = HeartbeatRequest::default()
            .with_group_id(GroupId(s(group)))
            .with_generation_id(generation)
            .with_member_id(s(member_id))
            .with_group_instance_id(instance.map(s));
        let id = self.send(4, GroupRequest::Heartbeat(req));
        match self.take(id) {
            Some(GroupResponse::Heartbeat(r)) => r.error_code,
            other => panic!("heartbeat answered with {other:?}"),
        }
    }

    /// Full dynamic join (MEMBER_ID_REQUIRED round trip included) for `n` members that join
    /// together; returns (member ids, generation, leader) once the rebalance completes.
    pub fn form_group(
        &mut self,
        group: &str,
        n: usize,
        protocols: &[(&str, Bytes)],
    ) -> (Vec<String>, i32, String) {
        let mut ids = Vec::new();
        for _ in 0..n {
            let first = self.join(5, group, "", None, protocols);
            let r = self
                .join_response(first)
                .expect("MEMBER_ID_REQUIRED is immediate");
            assert_eq!(r.error_code, 79, "MEMBER_ID_REQUIRED");
            ids.push(r.member_id.to_string());
        }
        let joins: Vec<RequestId> = ids
            .iter()
            .map(|id| self.join(5, group, id, None, protocols))
            .collect();
        self.advance_until(|h| joins.iter().all(|j| h.responses.contains_key(j)));
        let responses: Vec<JoinGroupResponse> = joins
            .iter()
            .map(|j| self.join_response(*j).expect("join completed"))
            .collect();
        let generation = responses[0].generation_id;
        let leader = responses[0].leader.to_string();
        for r in &responses {
            assert_eq!(r.error_code, 0);
            assert_eq!(r.generation_id, generation);
        }
        (ids, generation, leader)
    }

    /// Every member syncs; the leader hands `assign(i)` to member i. Returns assignments.
    pub fn sync_all(
        &mut self,
        group: &str,
        ids: &[String],
        generation: i32,
        leader: &str,
    ) -> Vec<Bytes> {
        let plan: Vec<(String, Vec<u8>)> = ids
            .iter()
            .enumerate()
            .map(|(i, id)| (id.clone(), vec![i as u8]))
            .collect();
        let plan_refs: Vec<(&str, &[u8])> = plan
            .iter()
            .map(|(m, a)| (m.as_str(), a.as_slice()))
            .collect();
        let syncs: Vec<RequestId> = ids
            .iter()
            .map(|id| {
                let a: &[(&str, &[u8])] = if id == leader { &plan_refs } else { &[] };
                self.sync(5, group, id, None, generation, a)
            })
            .collect();
        syncs
            .iter()
            .map(|sid| {
                let r = self.sync_response(*sid).expect("sync answered");
                assert_eq!(r.error_code, 0);
                r.assignment
            })
            .collect()
    }
}

/// kafka-protocol refuses to encode fields a version lacks; Java would choke on nulls in
/// non-nullable strings. Every response must encode at its own version.
pub fn assert_encodes(response: &GroupResponse, v: i16) {
    let mut buf = BytesMut::new();
    let result = match response {
        GroupResponse::JoinGroup(r) => r.encode(&mut buf, v),
        GroupResponse::SyncGroup(r) => r.encode(&mut buf, v),
        GroupResponse::Heartbeat(r) => r.encode(&mut buf, v),
        GroupResponse::LeaveGroup(r) => r.encode(&mut buf, v),
        GroupResponse::OffsetCommit(r) => r.encode(&mut buf, v),
        GroupResponse::OffsetFetch(r) => r.encode(&mut buf, v),
        GroupResponse::DescribeGroups(r) => r.encode(&mut buf, v),
        GroupResponse::ListGroups(r) => r.encode(&mut buf, v),
        GroupResponse::DeleteGroups(r) => r.encode(&mut buf, v),
        GroupResponse::OffsetDelete(r) => r.encode(&mut buf, v),
        GroupResponse::TxnOffsetCommit(r) => r.encode(&mut buf, v),
    };
    result.unwrap_or_else(|e| panic!("response does not encode at v{v}: {e}: {response:?}"));
    if let GroupResponse::JoinGroup(r) = response {
        if v < 7 {
            assert!(
                r.protocol_name.is_some(),
                "protocol_name is non-nullable before v7"
            );
        }
    }
}

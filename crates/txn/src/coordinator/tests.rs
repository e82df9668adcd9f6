//! Rule-by-rule tests of the coordinator with simulated time (issue 16, acceptance test 11):
//! every transition and every error code, through the public driver protocol.

use std::collections::{BTreeSet, VecDeque};

use kafka_protocol::messages::add_partitions_to_txn_request::{
    AddPartitionsToTxnTopic, AddPartitionsToTxnTransaction,
};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;

use super::*;
use crate::records::TxnRecord;

pub(super) const T0: i64 = 1_700_000_000_000;
const PARTITION: i32 = 0;
const EPOCH: i32 = 7;

pub(super) fn tid(s: &str) -> TransactionalId {
    TransactionalId(StrBytes::from_string(s.to_string()))
}

pub(super) fn tp(topic: &str, partition: i32) -> TopicPartition {
    TopicPartition::new(topic, partition)
}

/// One transaction of a v4+ AddPartitionsToTxn: id, producer id, epoch, verify_only, partitions.
pub(super) type AddSpec<'a> = (&'a str, i64, i16, bool, &'a [(&'a str, i32)]);

/// A driver: one `__transaction_state` partition, a durable log, queues of effects.
pub(super) struct Sim {
    pub c: Coordinator,
    pub now: i64,
    next_request: u64,
    pub responses: Vec<(RequestId, TxnResponse)>,
    pub appends: VecDeque<(AppendId, Vec<TxnRecord>)>,
    pub markers: VecDeque<Effect>,
    pub allocations: usize,
    /// Every record appended successfully, in order (the partition's log).
    pub log: Vec<TxnRecord>,
}

impl Sim {
    pub fn new() -> Sim {
        Sim::with_config(TxnConfig {
            state_log_partitions: 1,
            ..TxnConfig::default()
        })
    }

    pub fn with_config(config: TxnConfig) -> Sim {
        let mut sim = Sim {
            c: Coordinator::new(config).unwrap(),
            now: T0,
            next_request: 1,
            responses: Vec::new(),
            appends: VecDeque::new(),
            markers: VecDeque::new(),
            allocations: 0,
            log: Vec::new(),
        };
        let e = sim.c.begin_load(PARTITION);
        sim.absorb(e);
        let e = sim.c.complete_load(PARTITION, EPOCH, sim.now).unwrap();
        sim.absorb(e);
        let e = sim.c.on_producer_ids(1000, 1000);
        sim.absorb(e);
        sim
    }

    pub fn absorb(&mut self, effects: Vec<Effect>) {
        for e in effects {
            match e {
                Effect::Respond {
                    request_id,
                    response,
                    ..
                } => self.responses.push((request_id, response)),
                Effect::Append {
                    append_id,
                    partition,
                    records,
                } => {
                    assert_eq!(partition, PARTITION);
                    self.appends.push_back((append_id, records));
                }
                m @ Effect::SendMarkers { .. } => self.markers.push_back(m),
                Effect::AllocateProducerIds => self.allocations += 1,
            }
        }
    }

    pub fn send(&mut self, api_version: i16, request: TxnRequest) -> RequestId {
        self.send_ctx(api_version, request, BTreeSet::new())
    }

    pub fn send_ctx(
        &mut self,
        api_version: i16,
        request: TxnRequest,
        unknown_partitions: BTreeSet<TopicPartition>,
    ) -> RequestId {
        let request_id = RequestId(self.next_request);
        self.next_request += 1;
        let ctx = RequestContext {
            request_id,
            api_version,
            unknown_partitions,
        };
        let e = self.c.handle(ctx, request, self.now);
        self.absorb(e);
        request_id
    }

    pub fn take_response(&mut self, id: RequestId) -> Option<TxnResponse> {
        let i = self.responses.iter().position(|(r, _)| *r == id)?;
        Some(self.responses.remove(i).1)
    }

    /// Completes the oldest pending append with `outcome`.
    pub fn complete_append(&mut self, outcome: AppendOutcome) -> Vec<TxnRecord> {
        let (id, records) = self.appends.pop_front().expect("an append is pending");
        if outcome == AppendOutcome::Appended {
            self.log.extend(records.iter().cloned());
        }
        let e = self.c.on_append_complete(id, outcome, self.now);
        self.absorb(e);
        records
    }

    /// Completes every pending append (and those they trigger) successfully.
    pub fn flush(&mut self) {
        while !self.appends.is_empty() {
            self.complete_append(AppendOutcome::Appended);
        }
    }

    /// Answers the oldest marker request, every partition with `result`.
    pub fn ack_markers(&mut self, result: MarkerResult) -> Effect {
        let m = self.markers.pop_front().expect("markers are pending");
        let Effect::SendMarkers {
            marker_id,
            ref partitions,
            ..
        } = m
        else {
            unreachable!()
        };
        let results = partitions.iter().map(|p| (p.clone(), result)).collect();
        let e = self.c.on_markers_complete(marker_id, results, self.now);
        self.absorb(e);
        m
    }

    pub fn advance(&mut self, ms: i64) {
        self.now += ms;
        while let Some(t) = self.c.next_deadline_ms() {
            if t > self.now {
                break;
            }
            let e = self.c.tick(self.now);
            self.absorb(e);
        }
    }

    // ---- Requests ----------------------------------------------------------------------------

    pub fn init(&mut self, v: i16, id: &str, pid_epoch: Option<(i64, i16)>) -> RequestId {
        let (pid, epoch) = pid_epoch.unwrap_or((-1, -1));
        let r = InitProducerIdRequest::default()
            .with_transactional_id(Some(tid(id)))
            .with_transaction_timeout_ms(60_000)
            .with_producer_id(ProducerId(pid))
            .with_producer_epoch(epoch);
        self.send(v, TxnRequest::InitProducerId(r))
    }

    /// InitProducerId, completed: (error, producer id, epoch).
    pub fn init_now(&mut self, v: i16, id: &str, pid_epoch: Option<(i64, i16)>) -> (i16, i64, i16) {
        let r = self.init(v, id, pid_epoch);
        self.flush();
        match self.take_response(r) {
            Some(TxnResponse::InitProducerId(r)) => {
                (r.error_code, r.producer_id.0, r.producer_epoch)
            }
            other => panic!("no InitProducerId response: {other:?}"),
        }
    }

    pub fn add_v3(
        &mut self,
        v: i16,
        id: &str,
        pid: i64,
        epoch: i16,
        parts: &[(&str, i32)],
    ) -> RequestId {
        let mut topics: Vec<AddPartitionsToTxnTopic> = Vec::new();
        for (t, p) in parts {
            match topics.iter_mut().find(|x| x.name.0.as_str() == *t) {
                Some(x) => x.partitions.push(*p),
                None => topics.push(
                    AddPartitionsToTxnTopic::default()
                        .with_name(TopicName(StrBytes::from_string(t.to_string())))
                        .with_partitions(vec![*p]),
                ),
            }
        }
        let r = AddPartitionsToTxnRequest::default()
            .with_v3_and_below_transactional_id(tid(id))
            .with_v3_and_below_producer_id(ProducerId(pid))
            .with_v3_and_below_producer_epoch(epoch)
            .with_v3_and_below_topics(topics);
        self.send(v, TxnRequest::AddPartitionsToTxn(r))
    }

    /// AddPartitionsToTxn v0-3, completed: every partition's error.
    pub fn add_now(
        &mut self,
        v: i16,
        id: &str,
        pid: i64,
        epoch: i16,
        parts: &[(&str, i32)],
    ) -> Vec<(TopicPartition, i16)> {
        let r = self.add_v3(v, id, pid, epoch, parts);
        self.flush();
        match self.take_response(r) {
            Some(TxnResponse::AddPartitionsToTxn(r)) => flatten(&r.results_by_topic_v3_and_below),
            other => panic!("no AddPartitionsToTxn response: {other:?}"),
        }
    }

    pub fn add_v5(&mut self, txns: Vec<AddSpec<'_>>) -> RequestId {
        let transactions = txns
            .into_iter()
            .map(|(id, pid, epoch, verify, parts)| {
                let topics = parts
                    .iter()
                    .map(|(t, p)| {
                        AddPartitionsToTxnTopic::default()
                            .with_name(TopicName(StrBytes::from_string(t.to_string())))
                            .with_partitions(vec![*p])
                    })
                    .collect();
                AddPartitionsToTxnTransaction::default()
                    .with_transactional_id(tid(id))
                    .with_producer_id(ProducerId(pid))
                    .with_producer_epoch(epoch)
                    .with_verify_only(verify)
                    .with_topics(topics)
            })
            .collect();
        let r = AddPartitionsToTxnRequest::default().with_transactions(transactions);
        self.send(5, TxnRequest::AddPartitionsToTxn(r))
    }

    pub fn end(&mut self, v: i16, id: &str, pid: i64, epoch: i16, commit: bool) -> RequestId {
        let r = EndTxnRequest::default()
            .with_transactional_id(tid(id))
            .with_producer_id(ProducerId(pid))
            .with_producer_epoch(epoch)
            .with_committed(commit);
        self.send(v, TxnRequest::EndTxn(r))
    }

    /// EndTxn, with appends completed (markers left pending): (error, pid, epoch).
    pub fn end_now(
        &mut self,
        v: i16,
        id: &str,
        pid: i64,
        epoch: i16,
        commit: bool,
    ) -> (i16, i64, i16) {
        let r = self.end(v, id, pid, epoch, commit);
        self.flush();
        match self.take_response(r) {
            Some(TxnResponse::EndTxn(r)) => (r.error_code, r.producer_id.0, r.producer_epoch),
            other => panic!("no EndTxn response: {other:?}"),
        }
    }

    /// Acknowledges every pending marker and completes the Complete* appends.
    pub fn finish_markers(&mut self) {
        while !self.markers.is_empty() {
            self.ack_markers(MarkerResult::Written);
            self.flush();
        }
    }

    pub fn state(&self, id: &str) -> Option<TxnState> {
        self.c.transaction(id).map(|m| m.state)
    }

    pub fn epoch(&self, id: &str) -> i16 {
        self.c.transaction(id).unwrap().producer_epoch
    }
}

pub(super) fn flatten(
    topics: &[add_partitions_to_txn_response::AddPartitionsToTxnTopicResult],
) -> Vec<(TopicPartition, i16)> {
    topics
        .iter()
        .flat_map(|t| {
            t.results_by_partition.iter().map(|p| {
                (
                    tp(t.name.0.as_str(), p.partition_index),
                    p.partition_error_code,
                )
            })
        })
        .collect()
}

fn errors_of(v: &[(TopicPartition, i16)]) -> BTreeSet<i16> {
    v.iter().map(|(_, e)| *e).collect()
}

// ---- InitProducerId --------------------------------------------------------------------------

#[test]
fn init_producer_id_is_answered_only_once_durable() {
    let mut s = Sim::new();
    let r = s.init(4, "t", None);
    assert!(s.responses.is_empty(), "no answer before the append");
    let records = s.complete_append(AppendOutcome::Appended);
    let v = records::decode_value(records[0].value.as_ref().unwrap()).unwrap();
    assert_eq!(
        (v.state, v.producer_id, v.producer_epoch),
        (TxnState::Empty, 1000, 0)
    );
    assert_eq!(
        records::decode_key(&records[0].key).unwrap().as_deref(),
        Some("t")
    );
    let Some(TxnResponse::InitProducerId(resp)) = s.take_response(r) else {
        panic!()
    };
    assert_eq!(
        (resp.error_code, resp.producer_id.0, resp.producer_epoch),
        (0, 1000, 0)
    );
    // Again: same producer id, epoch + 1.
    assert_eq!(s.init_now(4, "t", None), (0, 1000, 1));
}

#[test]
fn init_producer_id_errors() {
    let mut s = Sim::new();
    let bad_timeout = InitProducerIdRequest::default()
        .with_transactional_id(Some(tid("t")))
        .with_transaction_timeout_ms(900_001);
    let r = s.send(4, TxnRequest::InitProducerId(bad_timeout));
    let Some(TxnResponse::InitProducerId(resp)) = s.take_response(r) else {
        panic!()
    };
    assert_eq!(resp.error_code, codes::INVALID_TRANSACTION_TIMEOUT);
    assert_eq!(s.init_now(4, "", None).0, codes::INVALID_REQUEST);
    // Only one of producer id / epoch: INVALID_REQUEST.
    let r = InitProducerIdRequest::default()
        .with_transactional_id(Some(tid("t")))
        .with_transaction_timeout_ms(1000)
        .with_producer_id(ProducerId(5));
    let r = s.send(4, TxnRequest::InitProducerId(r));
    let Some(TxnResponse::InitProducerId(resp)) = s.take_response(r) else {
        panic!()
    };
    assert_eq!(resp.error_code, codes::INVALID_REQUEST);
    // No transactional id: a fresh producer id, epoch 0, no state.
    let r = InitProducerIdRequest::default()
        .with_transactional_id(None)
        .with_transaction_timeout_ms(1000)
        .with_producer_id(ProducerId(-1))
        .with_producer_epoch(-1);
    let r = s.send(4, TxnRequest::InitProducerId(r));
    let Some(TxnResponse::InitProducerId(resp)) = s.take_response(r) else {
        panic!()
    };
    assert_eq!(
        (resp.error_code, resp.producer_id.0, resp.producer_epoch),
        (0, 1000, 0)
    );
    assert_eq!(s.c.transaction_count(), 0);
}

#[test]
fn kip360_init_with_producer_id_and_epoch() {
    let mut s = Sim::new();
    let (_, pid, e0) = s.init_now(4, "t", None);
    // Matching epoch: bump.
    assert_eq!(s.init_now(4, "t", Some((pid, e0))), (0, pid, 1));
    // The previous epoch again (a retry whose answer was lost): same answer, no bump.
    assert_eq!(s.init_now(4, "t", Some((pid, e0))), (0, pid, 1));
    // A stale epoch: fenced; spelled INVALID_PRODUCER_EPOCH before v4.
    assert_eq!(s.init_now(4, "t", Some((pid, 9))).0, codes::PRODUCER_FENCED);
    assert_eq!(
        s.init_now(3, "t", Some((pid, 9))).0,
        codes::INVALID_PRODUCER_EPOCH
    );
    // Another producer id: fenced.
    assert_eq!(
        s.init_now(4, "t", Some((pid + 5, 1))).0,
        codes::PRODUCER_FENCED
    );
    // A new id with a pid/epoch (recovering from UNKNOWN_PRODUCER_ID): accepted.
    assert_eq!(s.init_now(4, "u", Some((77, 3))).0, codes::NONE);
}

#[test]
fn init_during_prepare_is_concurrent_and_during_ongoing_fences_and_aborts() {
    let mut s = Sim::new();
    let (_, pid, e) = s.init_now(3, "t", None);
    assert_eq!(
        errors_of(&s.add_now(3, "t", pid, e, &[("a", 0)])),
        BTreeSet::from([0])
    );
    // Ongoing: the epoch is bumped, the transaction aborted, the client told to retry.
    assert_eq!(s.init_now(3, "t", None).0, codes::CONCURRENT_TRANSACTIONS);
    assert_eq!(s.state("t"), Some(TxnState::PrepareAbort));
    let Effect::SendMarkers {
        producer_epoch,
        commit,
        ..
    } = s.markers[0].clone()
    else {
        panic!()
    };
    assert!(!commit);
    assert!(producer_epoch > e, "markers carry the fenced epoch");
    // Markers in flight: CONCURRENT_TRANSACTIONS again.
    assert_eq!(s.init_now(3, "t", None).0, codes::CONCURRENT_TRANSACTIONS);
    s.finish_markers();
    assert_eq!(s.state("t"), Some(TxnState::CompleteAbort));
    let (err, pid2, e2) = s.init_now(3, "t", None);
    assert_eq!((err, pid2), (0, pid));
    assert!(e2 > producer_epoch);
    // The zombie is fenced everywhere.
    assert_eq!(
        errors_of(&s.add_now(3, "t", pid, e, &[("a", 0)])),
        BTreeSet::from([codes::PRODUCER_FENCED])
    );
    assert_eq!(s.end_now(3, "t", pid, e, true).0, codes::PRODUCER_FENCED);
    assert_eq!(
        s.end_now(1, "t", pid, e, true).0,
        codes::INVALID_PRODUCER_EPOCH
    );
}

#[test]
fn epoch_exhaustion_rotates_the_producer_id() {
    let mut s = Sim::new();
    s.init_now(4, "t", None);
    s.c.txns.get_mut("t").unwrap().producer_epoch = crate::state::EPOCH_EXHAUSTED_AT;
    let (err, pid, epoch) = s.init_now(4, "t", Some((1000, crate::state::EPOCH_EXHAUSTED_AT)));
    assert_eq!((err, pid, epoch), (0, 1001, 0));
    // A retry from the old id at the exhausted epoch is recognised (previous producer id).
    let meta = s.c.transaction("t").unwrap();
    assert_eq!(
        (meta.previous_producer_id, meta.last_producer_epoch),
        (1000, crate::state::EPOCH_EXHAUSTED_AT)
    );
}

#[test]
fn running_out_of_producer_ids_asks_for_a_block() {
    let mut s = Sim::new();
    let e = s.c.on_producer_ids(5, 1);
    s.absorb(e);
    let before = s.allocations;
    assert_eq!(s.init_now(4, "a", None), (0, 5, 0));
    assert_eq!(
        s.allocations,
        before + 1,
        "asked for more below the low water mark"
    );
    assert_eq!(
        s.init_now(4, "b", None).0,
        codes::COORDINATOR_LOAD_IN_PROGRESS
    );
    assert_eq!(s.allocations, before + 1, "asked once");
    let e = s.c.on_producer_ids(500, 1000);
    s.absorb(e);
    assert_eq!(s.init_now(4, "b", None), (0, 500, 0));
}

// ---- AddPartitionsToTxn / AddOffsetsToTxn ----------------------------------------------------

#[test]
fn add_partitions_errors_per_version() {
    let mut s = Sim::new();
    assert_eq!(
        errors_of(&s.add_now(3, "t", 1, 0, &[("a", 0)])),
        BTreeSet::from([codes::INVALID_PRODUCER_ID_MAPPING])
    );
    let (_, pid, e) = s.init_now(3, "t", None);
    assert_eq!(
        errors_of(&s.add_now(3, "t", pid + 1, e, &[("a", 0)])),
        BTreeSet::from([codes::INVALID_PRODUCER_ID_MAPPING])
    );
    assert_eq!(
        errors_of(&s.add_now(2, "t", pid, e + 1, &[("a", 0)])),
        BTreeSet::from([codes::PRODUCER_FENCED])
    );
    assert_eq!(
        errors_of(&s.add_now(1, "t", pid, e + 1, &[("a", 0)])),
        BTreeSet::from([codes::INVALID_PRODUCER_EPOCH])
    );
    assert_eq!(
        errors_of(&s.add_now(3, "", pid, e, &[("a", 0)])),
        BTreeSet::from([codes::INVALID_REQUEST])
    );
    // An unknown partition fails the whole request; the others were not attempted.
    let r = s.send_ctx(
        3,
        TxnRequest::AddPartitionsToTxn(
            AddPartitionsToTxnRequest::default()
                .with_v3_and_below_transactional_id(tid("t"))
                .with_v3_and_below_producer_id(ProducerId(pid))
                .with_v3_and_below_producer_epoch(e)
                .with_v3_and_below_topics(vec![AddPartitionsToTxnTopic::default()
                    .with_name(TopicName(StrBytes::from_static_str("a")))
                    .with_partitions(vec![0, 1])]),
        ),
        BTreeSet::from([tp("a", 1)]),
    );
    let Some(TxnResponse::AddPartitionsToTxn(resp)) = s.take_response(r) else {
        panic!()
    };
    assert_eq!(
        flatten(&resp.results_by_topic_v3_and_below),
        vec![
            (tp("a", 0), codes::OPERATION_NOT_ATTEMPTED),
            (tp("a", 1), codes::UNKNOWN_TOPIC_OR_PARTITION)
        ]
    );
    assert!(s.appends.is_empty());
    assert_eq!(s.state("t"), Some(TxnState::Empty));
    // Success: Ongoing once durable; adding a subset again needs no append.
    let r = s.add_v3(3, "t", pid, e, &[("a", 0), ("b", 2)]);
    assert!(s.take_response(r).is_none());
    s.flush();
    assert!(matches!(
        s.take_response(r),
        Some(TxnResponse::AddPartitionsToTxn(_))
    ));
    assert_eq!(s.state("t"), Some(TxnState::Ongoing));
    let r = s.add_v3(3, "t", pid, e, &[("b", 2)]);
    assert!(s.appends.is_empty());
    let Some(TxnResponse::AddPartitionsToTxn(resp)) = s.take_response(r) else {
        panic!()
    };
    assert_eq!(
        flatten(&resp.results_by_topic_v3_and_below),
        vec![(tp("b", 2), 0)]
    );
    // A second add while the first is being appended: CONCURRENT_TRANSACTIONS.
    let r1 = s.add_v3(3, "t", pid, e, &[("c", 0)]);
    let r2 = s.add_v3(3, "t", pid, e, &[("d", 0)]);
    let Some(TxnResponse::AddPartitionsToTxn(resp)) = s.take_response(r2) else {
        panic!()
    };
    assert_eq!(
        errors_of(&flatten(&resp.results_by_topic_v3_and_below)),
        BTreeSet::from([codes::CONCURRENT_TRANSACTIONS])
    );
    s.flush();
    assert!(s.take_response(r1).is_some());
    // In Prepare*: CONCURRENT_TRANSACTIONS.
    s.end_now(3, "t", pid, e, true);
    assert_eq!(
        errors_of(&s.add_now(3, "t", pid, e, &[("a", 0)])),
        BTreeSet::from([codes::CONCURRENT_TRANSACTIONS])
    );
}

#[test]
fn add_partitions_v4_batches_and_verify_only() {
    let mut s = Sim::new();
    let (_, pid, e) = s.init_now(4, "t", None);
    let (_, pid_u, e_u) = s.init_now(4, "u", None);
    let r = s.add_v5(vec![
        ("t", pid, e, false, &[("a", 0)]),
        ("u", pid_u, e_u + 3, false, &[("a", 0)]),
        ("nobody", 1, 0, true, &[("a", 0)]),
    ]);
    assert!(s.take_response(r).is_none(), "waits for t's append");
    s.flush();
    let Some(TxnResponse::AddPartitionsToTxn(resp)) = s.take_response(r) else {
        panic!()
    };
    let by_id: std::collections::BTreeMap<String, BTreeSet<i16>> = resp
        .results_by_transaction
        .iter()
        .map(|t| {
            (
                t.transactional_id.0.to_string(),
                errors_of(&flatten(&t.topic_results)),
            )
        })
        .collect();
    assert_eq!(by_id["t"], BTreeSet::from([0]));
    assert_eq!(by_id["u"], BTreeSet::from([codes::PRODUCER_FENCED]));
    assert_eq!(
        by_id["nobody"],
        BTreeSet::from([codes::INVALID_PRODUCER_ID_MAPPING])
    );
    // v4+ adds are TV2 transactions.
    assert_eq!(s.c.transaction("t").unwrap().client_transaction_version, 2);
    // verify_only: in the transaction or TRANSACTION_ABORTABLE; nothing appended.
    let r = s.add_v5(vec![("t", pid, e, true, &[("a", 0), ("b", 0)])]);
    assert!(s.appends.is_empty());
    let Some(TxnResponse::AddPartitionsToTxn(resp)) = s.take_response(r) else {
        panic!()
    };
    assert_eq!(
        flatten(&resp.results_by_transaction[0].topic_results),
        vec![(tp("a", 0), 0), (tp("b", 0), codes::TRANSACTION_ABORTABLE)]
    );
    let r = s.add_v5(vec![("t", pid, e + 1, true, &[("a", 0)])]);
    let Some(TxnResponse::AddPartitionsToTxn(resp)) = s.take_response(r) else {
        panic!()
    };
    assert_eq!(
        flatten(&resp.results_by_transaction[0].topic_results),
        vec![(tp("a", 0), codes::PRODUCER_FENCED)]
    );
}

#[test]
fn add_offsets_adds_the_groups_offsets_partition() {
    let mut s = Sim::new();
    let (_, pid, e) = s.init_now(3, "t", None);
    let r = AddOffsetsToTxnRequest::default()
        .with_transactional_id(tid("t"))
        .with_producer_id(ProducerId(pid))
        .with_producer_epoch(e)
        .with_group_id(GroupId(StrBytes::from_static_str("my-group")));
    let r = s.send(3, TxnRequest::AddOffsetsToTxn(r));
    s.flush();
    let Some(TxnResponse::AddOffsetsToTxn(resp)) = s.take_response(r) else {
        panic!()
    };
    assert_eq!(resp.error_code, 0);
    // Kafka: abs("my-group".hashCode) % 50 = 12.
    assert!(s
        .c
        .transaction("t")
        .unwrap()
        .partitions
        .contains(&tp("__consumer_offsets", 12)));
    let r = AddOffsetsToTxnRequest::default()
        .with_transactional_id(tid("t"))
        .with_producer_id(ProducerId(pid))
        .with_producer_epoch(e + 1)
        .with_group_id(GroupId(StrBytes::from_static_str("g")));
    let r = s.send(1, TxnRequest::AddOffsetsToTxn(r));
    let Some(TxnResponse::AddOffsetsToTxn(resp)) = s.take_response(r) else {
        panic!()
    };
    assert_eq!(resp.error_code, codes::INVALID_PRODUCER_EPOCH);
}

// ---- EndTxn ----------------------------------------------------------------------------------

#[test]
fn tv1_commit_prepare_markers_complete() {
    let mut s = Sim::new();
    let (_, pid, e) = s.init_now(3, "t", None);
    s.add_now(3, "t", pid, e, &[("a", 0), ("b", 1)]);
    let r = s.end(3, "t", pid, e, true);
    assert!(
        s.take_response(r).is_none(),
        "EndTxn waits for Prepare* to be durable"
    );
    assert!(s.markers.is_empty(), "no marker before Prepare* is durable");
    let records = s.complete_append(AppendOutcome::Appended);
    let v = records::decode_value(records[0].value.as_ref().unwrap()).unwrap();
    assert_eq!(v.state, TxnState::PrepareCommit);
    let Some(TxnResponse::EndTxn(resp)) = s.take_response(r) else {
        panic!()
    };
    assert_eq!(resp.error_code, 0);
    let Effect::SendMarkers {
        producer_id,
        producer_epoch,
        coordinator_epoch,
        commit,
        partitions,
        ..
    } = s.markers[0].clone()
    else {
        panic!()
    };
    assert_eq!(
        (producer_id, producer_epoch, coordinator_epoch, commit),
        (pid, e, EPOCH, true)
    );
    assert_eq!(partitions, vec![tp("a", 0), tp("b", 1)]);
    // Retries while markers are in flight.
    assert_eq!(
        s.end_now(3, "t", pid, e, true).0,
        codes::CONCURRENT_TRANSACTIONS
    );
    assert_eq!(
        s.end_now(3, "t", pid, e, false).0,
        codes::CONCURRENT_TRANSACTIONS,
        "pending Complete*"
    );
    s.ack_markers(MarkerResult::Written);
    let records = s.complete_append(AppendOutcome::Appended);
    let v = records::decode_value(records[0].value.as_ref().unwrap()).unwrap();
    assert_eq!((v.state, v.partitions.len()), (TxnState::CompleteCommit, 0));
    assert_eq!(s.state("t"), Some(TxnState::CompleteCommit));
    // Same result again: success; the other one, or commit with nothing: INVALID_TXN_STATE.
    assert_eq!(s.end_now(3, "t", pid, e, true).0, 0);
    assert_eq!(s.end_now(3, "t", pid, e, false).0, codes::INVALID_TXN_STATE);
    s.init_now(3, "t", None);
    assert_eq!(
        s.end_now(3, "t", pid, e + 1, true).0,
        codes::INVALID_TXN_STATE,
        "commit in Empty"
    );
    assert_eq!(
        s.end_now(3, "t", pid, e + 1, false).0,
        codes::INVALID_TXN_STATE,
        "TV1 abort in Empty"
    );
    assert_eq!(
        s.end_now(3, "t", pid + 1, e + 1, false).0,
        codes::INVALID_PRODUCER_ID_MAPPING
    );
    assert_eq!(
        s.end_now(3, "nobody", pid, e, false).0,
        codes::INVALID_PRODUCER_ID_MAPPING
    );
    assert_eq!(s.end_now(3, "", pid, e, false).0, codes::INVALID_REQUEST);
}

#[test]
fn tv2_end_bumps_the_epoch_and_recognises_retries() {
    let mut s = Sim::new();
    let (_, pid, e) = s.init_now(5, "t", None);
    s.add_v5(vec![("t", pid, e, false, &[("a", 0)])]);
    s.flush();
    let (err, rpid, repoch) = s.end_now(5, "t", pid, e, true);
    assert_eq!(
        (err, rpid, repoch),
        (0, pid, e + 1),
        "the bumped epoch is returned"
    );
    let Effect::SendMarkers { producer_epoch, .. } = s.markers[0].clone() else {
        panic!()
    };
    assert_eq!(producer_epoch, e + 1, "markers carry the bumped epoch");
    // A retry with the old epoch while markers are in flight: CONCURRENT_TRANSACTIONS.
    assert_eq!(
        s.end_now(5, "t", pid, e, true).0,
        codes::CONCURRENT_TRANSACTIONS
    );
    s.finish_markers();
    // A retry after completion: success with the current epoch; the other result: ITS.
    assert_eq!(s.end_now(5, "t", pid, e, true), (0, pid, e + 1));
    assert_eq!(s.end_now(5, "t", pid, e, false).0, codes::INVALID_TXN_STATE);
    // A delayed EndTxn of the old epoch cannot end the next transaction (KAFKA-17754).
    s.add_v5(vec![("t", pid, e + 1, false, &[("a", 0)])]);
    s.flush();
    assert_eq!(s.end_now(5, "t", pid, e, true).0, codes::PRODUCER_FENCED);
    assert_eq!(s.end_now(5, "t", pid, e + 1, false), (0, pid, e + 2));
    s.finish_markers();
    // TV2 abort with no transaction: an epoch bump, no markers.
    assert_eq!(s.end_now(5, "t", pid, e + 2, false), (0, pid, e + 3));
    assert!(s.markers.is_empty());
    s.flush();
    assert_eq!(s.state("t"), Some(TxnState::CompleteAbort));
    assert_eq!(
        s.end_now(5, "t", pid, e + 3, true).0,
        codes::INVALID_TXN_STATE
    );
}

#[test]
fn tv2_epoch_exhaustion_moves_to_the_next_producer_id() {
    let mut s = Sim::new();
    let (_, pid, _) = s.init_now(5, "t", None);
    let last = crate::state::EPOCH_EXHAUSTED_AT;
    s.c.txns.get_mut("t").unwrap().producer_epoch = last;
    s.add_v5(vec![("t", pid, last, false, &[("a", 0)])]);
    s.flush();
    let (err, rpid, repoch) = s.end_now(5, "t", pid, last, true);
    assert_eq!((err, rpid, repoch), (0, pid, i16::MAX));
    s.finish_markers();
    let meta = s.c.transaction("t").unwrap();
    assert_eq!((meta.producer_id, meta.producer_epoch), (1001, 0));
    // The retry of that EndTxn (old id, exhausted epoch) is recognised as the overflow retry.
    assert_eq!(s.end_now(5, "t", pid, last, true), (0, 1001, 0));
}

#[test]
fn append_failures_reach_the_client_and_leave_no_trace() {
    let mut s = Sim::new();
    let r = s.init(4, "t", None);
    s.complete_append(AppendOutcome::NotLeader);
    let Some(TxnResponse::InitProducerId(resp)) = s.take_response(r) else {
        panic!()
    };
    assert_eq!(resp.error_code, codes::NOT_COORDINATOR);
    assert!(!s.c.transaction("t").unwrap().pending());
    let r = s.init(4, "t", None);
    s.complete_append(AppendOutcome::Unavailable);
    let Some(TxnResponse::InitProducerId(resp)) = s.take_response(r) else {
        panic!()
    };
    assert_eq!(resp.error_code, codes::COORDINATOR_NOT_AVAILABLE);
    let (_, pid, e) = s.init_now(4, "t", None);
    assert_eq!(e, 0, "failed bumps were never applied");
    s.add_now(3, "t", pid, e, &[("a", 0)]);
    let r = s.end(3, "t", pid, e, true);
    s.complete_append(AppendOutcome::TooLarge);
    let Some(TxnResponse::EndTxn(resp)) = s.take_response(r) else {
        panic!()
    };
    assert_eq!(resp.error_code, codes::UNKNOWN_SERVER_ERROR);
    assert_eq!(s.state("t"), Some(TxnState::Ongoing));
    assert!(s.markers.is_empty());
}

// ---- Markers ---------------------------------------------------------------------------------

#[test]
fn markers_retry_skip_gone_partitions_and_stop_when_fenced() {
    let mut s = Sim::new();
    let (_, pid, e) = s.init_now(3, "t", None);
    s.add_now(3, "t", pid, e, &[("a", 0), ("b", 0), ("c", 0)]);
    s.end_now(3, "t", pid, e, false);
    let Effect::SendMarkers { marker_id, .. } = s.markers.pop_front().unwrap() else {
        panic!()
    };
    let e1 = s.c.on_markers_complete(
        marker_id,
        vec![
            (tp("a", 0), MarkerResult::Written),
            (tp("b", 0), MarkerResult::Retriable),
            (tp("c", 0), MarkerResult::PartitionGone),
        ],
        s.now,
    );
    s.absorb(e1);
    assert!(
        s.markers.is_empty() && s.appends.is_empty(),
        "b waits for the backoff"
    );
    assert_eq!(s.c.next_deadline_ms(), Some(s.now + 100));
    s.advance(100);
    let Effect::SendMarkers { partitions, .. } = s.markers[0].clone() else {
        panic!()
    };
    assert_eq!(partitions, vec![tp("b", 0)]);
    s.ack_markers(MarkerResult::Written);
    assert_eq!(
        s.appends.len(),
        1,
        "Complete* only once every marker is written"
    );
    // Complete* append unavailable: retried after the backoff, still pending meanwhile.
    s.complete_append(AppendOutcome::Unavailable);
    assert_eq!(s.state("t"), Some(TxnState::PrepareAbort));
    s.advance(100);
    s.flush();
    assert_eq!(s.state("t"), Some(TxnState::CompleteAbort));

    // Fenced: stop; the transaction stays in Prepare* until the partition is loaded again.
    let (_, pid, e) = s.init_now(3, "t", None);
    s.add_now(3, "t", pid, e, &[("a", 0)]);
    s.end_now(3, "t", pid, e, true);
    s.ack_markers(MarkerResult::Fenced);
    assert!(s.appends.is_empty() && s.markers.is_empty());
    assert_eq!(s.c.pending_marker_count(), 0);
    assert_eq!(s.state("t"), Some(TxnState::PrepareCommit));
}

#[test]
fn marker_result_codes_follow_kafka() {
    assert_eq!(MarkerResult::from_error_code(0), MarkerResult::Written);
    for c in [
        codes::NOT_LEADER_OR_FOLLOWER,
        codes::UNKNOWN_TOPIC_OR_PARTITION,
        codes::NOT_ENOUGH_REPLICAS,
        codes::REQUEST_TIMED_OUT,
        codes::KAFKA_STORAGE_ERROR,
        codes::NOT_ENOUGH_REPLICAS_AFTER_APPEND,
    ] {
        assert_eq!(
            MarkerResult::from_error_code(c),
            MarkerResult::Retriable,
            "{c}"
        );
    }
    for c in [
        codes::INVALID_PRODUCER_EPOCH,
        codes::TRANSACTION_COORDINATOR_FENCED,
    ] {
        assert_eq!(MarkerResult::from_error_code(c), MarkerResult::Fenced);
    }
    for c in [
        codes::UNSUPPORTED_FOR_MESSAGE_FORMAT,
        codes::UNSUPPORTED_VERSION,
    ] {
        assert_eq!(
            MarkerResult::from_error_code(c),
            MarkerResult::PartitionGone
        );
    }
}

// ---- Loading ---------------------------------------------------------------------------------

/// A fresh coordinator loading `log` at coordinator epoch `epoch`.
fn reload(log: &[TxnRecord], epoch: i32, now: i64) -> Sim {
    let mut s = Sim::new();
    let e = s.c.begin_load(PARTITION);
    s.absorb(e);
    for r in log {
        s.c.load_record(PARTITION, &r.key, r.value.as_deref())
            .unwrap();
    }
    s.now = now;
    let e = s.c.complete_load(PARTITION, epoch, now).unwrap();
    s.absorb(e);
    s.log = log.to_vec();
    s
}

#[test]
fn loading_resumes_prepare_by_resending_markers() {
    let mut s = Sim::new();
    let (_, pid, e) = s.init_now(3, "t", None);
    s.add_now(3, "t", pid, e, &[("a", 0), ("b", 0)]);
    s.end_now(3, "t", pid, e, true);
    // One marker written, then the coordinator dies.
    let mut s2 = reload(&s.log, EPOCH + 1, s.now);
    assert_eq!(s2.state("t"), Some(TxnState::PrepareCommit));
    let Effect::SendMarkers {
        coordinator_epoch,
        commit,
        partitions,
        producer_epoch,
        ..
    } = s2.markers[0].clone()
    else {
        panic!()
    };
    assert_eq!(
        (coordinator_epoch, commit, producer_epoch),
        (EPOCH + 1, true, e)
    );
    assert_eq!(partitions, vec![tp("a", 0), tp("b", 0)]);
    s2.finish_markers();
    assert_eq!(s2.state("t"), Some(TxnState::CompleteCommit));
}

#[test]
fn load_states_not_coordinator_and_stale_appends() {
    let mut s = Sim::new();
    let (_, pid, e) = s.init_now(3, "t", None);
    // A request while loading, and for a partition we do not lead.
    let ev = s.c.begin_load(PARTITION);
    s.absorb(ev);
    assert_eq!(
        s.init_now(3, "t", None).0,
        codes::COORDINATOR_LOAD_IN_PROGRESS
    );
    let r = s.send(
        0,
        TxnRequest::ListTransactions(ListTransactionsRequest::default()),
    );
    let Some(TxnResponse::ListTransactions(resp)) = s.take_response(r) else {
        panic!()
    };
    assert_eq!(resp.error_code, codes::COORDINATOR_LOAD_IN_PROGRESS);
    let ev = s.c.unload(PARTITION);
    s.absorb(ev);
    assert_eq!(s.init_now(3, "t", None).0, codes::NOT_COORDINATOR);
    // An append issued before an unload/reload completes as NOT_COORDINATOR.
    let log = s.log.clone();
    let mut s = reload(&log, EPOCH + 1, s.now);
    let r = s.add_v3(3, "t", pid, e, &[("a", 0)]);
    let ev = s.c.unload(PARTITION);
    s.absorb(ev);
    s.complete_append(AppendOutcome::Appended);
    let Some(TxnResponse::AddPartitionsToTxn(resp)) = s.take_response(r) else {
        panic!()
    };
    assert_eq!(
        errors_of(&flatten(&resp.results_by_topic_v3_and_below)),
        BTreeSet::from([codes::NOT_COORDINATOR])
    );
    // Corrupt records are errors; unknown key versions are skipped; tombstones delete.
    let ev = s.c.begin_load(PARTITION);
    s.absorb(ev);
    assert!(s
        .c
        .load_record(PARTITION, &[0, 0, 0, 1, b't'], Some(&[0, 9]))
        .is_err());
    assert!(s
        .c
        .load_record(PARTITION, &[0, 3, 1, 2], Some(&[0, 9]))
        .is_ok());
    assert!(s.c.load_record(PARTITION + 1, &[0, 3], None).is_err());
    for r in &log {
        s.c.load_record(PARTITION, &r.key, r.value.as_deref())
            .unwrap();
    }
    s.c.load_record(PARTITION, &records::encode_key("t"), None)
        .unwrap();
    let ev = s.c.complete_load(PARTITION, EPOCH + 2, s.now).unwrap();
    s.absorb(ev);
    assert_eq!(s.state("t"), None);
}

// ---- Timers ----------------------------------------------------------------------------------

#[test]
fn timed_out_transactions_are_fenced_and_aborted() {
    let mut s = Sim::new();
    let r = InitProducerIdRequest::default()
        .with_transactional_id(Some(tid("t")))
        .with_transaction_timeout_ms(5_000);
    let r = s.send(3, TxnRequest::InitProducerId(r));
    s.flush();
    let Some(TxnResponse::InitProducerId(init)) = s.take_response(r) else {
        panic!()
    };
    let (pid, e) = (init.producer_id.0, init.producer_epoch);
    s.add_now(3, "t", pid, e, &[("a", 0)]);
    s.advance(5_000);
    assert_eq!(
        s.state("t"),
        Some(TxnState::Ongoing),
        "not yet past the timeout at a check"
    );
    s.advance(10_000);
    assert_eq!(
        s.state("t"),
        Some(TxnState::Ongoing),
        "the abort waits for its Prepare* append"
    );
    s.flush();
    assert_eq!(s.state("t"), Some(TxnState::PrepareAbort));
    // Fenced (TV2 server: +1 for the fence, +1 for the TV2 end).
    assert_eq!(s.epoch("t"), e + 2);
    s.finish_markers();
    assert_eq!(s.state("t"), Some(TxnState::CompleteAbort));
    assert_eq!(s.end_now(3, "t", pid, e, true).0, codes::PRODUCER_FENCED);
    assert_eq!(
        errors_of(&s.add_now(3, "t", pid, e, &[("a", 0)])),
        BTreeSet::from([codes::PRODUCER_FENCED])
    );
}

#[test]
fn timed_out_transactions_under_tv1_bump_once() {
    let mut s = Sim::with_config(TxnConfig {
        state_log_partitions: 1,
        transaction_version: 1,
        ..TxnConfig::default()
    });
    let (_, pid, e) = s.init_now(3, "t", None);
    s.add_now(3, "t", pid, e, &[("a", 0)]);
    s.advance(70_000);
    s.flush();
    assert_eq!(
        (s.state("t"), s.epoch("t")),
        (Some(TxnState::PrepareAbort), e + 1)
    );
    let record = s.log.last().unwrap();
    let v = records::decode_value(record.value.as_ref().unwrap()).unwrap();
    assert_eq!((v.producer_epoch, v.client_transaction_version), (e + 1, 0));
}

#[test]
fn idle_ids_expire_with_tombstones() {
    let mut s = Sim::new();
    s.init_now(3, "t", None);
    s.now += 604_800_000;
    s.advance(3_600_000);
    assert_eq!(
        s.state("t"),
        Some(TxnState::Empty),
        "kept until the tombstone is durable"
    );
    assert!(s.c.transaction("t").unwrap().pending());
    let records = s.complete_append(AppendOutcome::Appended);
    assert_eq!(
        records,
        vec![TxnRecord {
            key: records::encode_key("t"),
            value: None,
            timestamp_ms: s.now
        }]
    );
    assert_eq!(s.state("t"), None);
    let r = DescribeTransactionsRequest::default().with_transactional_ids(vec![tid("t")]);
    let r = s.send(0, TxnRequest::DescribeTransactions(r));
    let Some(TxnResponse::DescribeTransactions(resp)) = s.take_response(r) else {
        panic!()
    };
    assert_eq!(
        resp.transaction_states[0].error_code,
        codes::TRANSACTIONAL_ID_NOT_FOUND
    );
    // An ongoing transaction never expires.
    let (_, pid, e) = s.init_now(3, "u", None);
    s.add_now(3, "u", pid, e, &[("a", 0)]);
    s.c.txns.get_mut("u").unwrap().txn_timeout_ms = i32::MAX;
    s.now += 604_800_000;
    s.advance(3_600_000);
    s.flush();
    assert_eq!(s.state("u"), Some(TxnState::Ongoing));
}

// ---- Describe / List -------------------------------------------------------------------------

#[test]
fn describe_and_list_with_every_filter() {
    let mut s = Sim::new();
    let (_, pid, e) = s.init_now(3, "orders-1", None);
    s.add_now(3, "orders-1", pid, e, &[("a", 1), ("a", 0), ("b", 3)]);
    let (_, pid2, _) = s.init_now(3, "payments-1", None);
    let r = DescribeTransactionsRequest::default()
        .with_transactional_ids(vec![tid("orders-1"), tid("")]);
    let r = s.send(0, TxnRequest::DescribeTransactions(r));
    let Some(TxnResponse::DescribeTransactions(resp)) = s.take_response(r) else {
        panic!()
    };
    let d = &resp.transaction_states[0];
    assert_eq!(
        (d.error_code, d.producer_id.0, d.transaction_state.as_str()),
        (0, pid, "Ongoing")
    );
    assert_eq!(d.topics.len(), 2);
    assert_eq!(d.topics[0].partitions, vec![0, 1]);
    assert_eq!(d.transaction_start_time_ms, s.now);
    assert_eq!(
        resp.transaction_states[1].error_code,
        codes::INVALID_REQUEST
    );

    let list = |s: &mut Sim, r: ListTransactionsRequest| {
        let r = s.send(2, TxnRequest::ListTransactions(r));
        let Some(TxnResponse::ListTransactions(resp)) = s.take_response(r) else {
            panic!()
        };
        resp
    };
    let ids = |resp: &ListTransactionsResponse| -> Vec<String> {
        resp.transaction_states
            .iter()
            .map(|t| t.transactional_id.0.to_string())
            .collect()
    };
    let all = list(
        &mut s,
        ListTransactionsRequest::default().with_duration_filter(-1),
    );
    assert_eq!(ids(&all), vec!["orders-1", "payments-1"]);
    let by_state = list(
        &mut s,
        ListTransactionsRequest::default()
            .with_duration_filter(-1)
            .with_state_filters(vec![
                StrBytes::from_static_str("Ongoing"),
                StrBytes::from_static_str("Bogus"),
            ]),
    );
    assert_eq!(ids(&by_state), vec!["orders-1"]);
    assert_eq!(
        by_state.unknown_state_filters,
        vec![StrBytes::from_static_str("Bogus")]
    );
    let by_pid = list(
        &mut s,
        ListTransactionsRequest::default()
            .with_duration_filter(-1)
            .with_producer_id_filters(vec![ProducerId(pid2)]),
    );
    assert_eq!(ids(&by_pid), vec!["payments-1"]);
    let by_pattern = list(
        &mut s,
        ListTransactionsRequest::default()
            .with_duration_filter(-1)
            .with_transactional_id_pattern(Some(StrBytes::from_static_str("orders-.*"))),
    );
    assert_eq!(ids(&by_pattern), vec!["orders-1"]);
    let partial = list(
        &mut s,
        ListTransactionsRequest::default()
            .with_duration_filter(-1)
            .with_transactional_id_pattern(Some(StrBytes::from_static_str("orders"))),
    );
    assert!(
        ids(&partial).is_empty(),
        "the pattern must match the whole id"
    );
    let bad = list(
        &mut s,
        ListTransactionsRequest::default()
            .with_duration_filter(-1)
            .with_transactional_id_pattern(Some(StrBytes::from_static_str("("))),
    );
    assert_eq!(bad.error_code, codes::INVALID_REGULAR_EXPRESSION);
    // Duration: only transactions running longer than the filter.
    s.now += 10_000;
    let long = list(
        &mut s,
        ListTransactionsRequest::default().with_duration_filter(5_000),
    );
    // payments-1 never started: its start time is -1, which Kafka's filter counts as long ago.
    assert_eq!(ids(&long), vec!["orders-1", "payments-1"]);
    let recent = list(
        &mut s,
        ListTransactionsRequest::default().with_duration_filter(i64::MAX / 2),
    );
    assert!(ids(&recent).is_empty());
}

// ---- Limits ----------------------------------------------------------------------------------

#[test]
fn limits_answer_retriable_errors() {
    let mut s = Sim::with_config(TxnConfig {
        state_log_partitions: 1,
        transactional_ids_max: 1,
        partitions_per_transaction_max: 2,
        pending_marker_transactions_max: 1,
        ..TxnConfig::default()
    });
    let (_, pid, e) = s.init_now(3, "t", None);
    assert_eq!(s.init_now(3, "u", None).0, codes::COORDINATOR_NOT_AVAILABLE);
    assert_eq!(
        errors_of(&s.add_now(3, "t", pid, e, &[("a", 0), ("a", 1), ("a", 2)])),
        BTreeSet::from([codes::INVALID_REQUEST])
    );
    s.add_now(3, "t", pid, e, &[("a", 0)]);
    s.end_now(3, "t", pid, e, true);
    assert_eq!(s.c.pending_marker_count(), 1);
}

#[test]
fn a_failed_epoch_fence_is_not_bumped_twice() {
    let mut s = Sim::new();
    let (_, pid, e) = s.init_now(3, "t", None);
    s.add_now(3, "t", pid, e, &[("a", 0)]);
    // InitProducerId fences: the PrepareAbort append fails.
    let r = s.init(3, "t", None);
    s.complete_append(AppendOutcome::Unavailable);
    let Some(TxnResponse::InitProducerId(resp)) = s.take_response(r) else {
        panic!()
    };
    assert_eq!(resp.error_code, codes::COORDINATOR_NOT_AVAILABLE);
    let meta = s.c.transaction("t").unwrap();
    assert_eq!(
        (meta.state, meta.producer_epoch),
        (TxnState::Ongoing, e + 1)
    );
    assert!(meta.has_failed_epoch_fence && !meta.pending());
    // The next fence reuses the bumped epoch (TV2 server: +1 more for the TV2 end).
    assert_eq!(s.init_now(3, "t", None).0, codes::CONCURRENT_TRANSACTIONS);
    assert_eq!(s.epoch("t"), e + 2);
    s.finish_markers();
    assert!(!s.c.transaction("t").unwrap().has_failed_epoch_fence);
}

#[test]
fn requests_while_loading_or_elsewhere() {
    let mut s = Sim::with_config(TxnConfig {
        state_log_partitions: 2,
        ..TxnConfig::default()
    });
    // "t" and "u" map to different partitions; only partition 0 is loaded.
    let on_other = (0..100)
        .map(|i| format!("id-{i}"))
        .find(|id| s.c.partition_for(id) == 1)
        .unwrap();
    assert_eq!(s.init_now(3, &on_other, None).0, codes::NOT_COORDINATOR);
    assert_eq!(
        errors_of(&s.add_now(3, &on_other, 1, 0, &[("a", 0)])),
        BTreeSet::from([codes::NOT_COORDINATOR])
    );
    let ev = s.c.begin_load(1);
    s.absorb(ev);
    assert_eq!(
        s.end_now(3, &on_other, 1, 0, true).0,
        codes::COORDINATOR_LOAD_IN_PROGRESS
    );
    let r = s.add_v5(vec![(&on_other, 1, 0, true, &[("a", 0)])]);
    let Some(TxnResponse::AddPartitionsToTxn(resp)) = s.take_response(r) else {
        panic!()
    };
    assert_eq!(
        errors_of(&flatten(&resp.results_by_transaction[0].topic_results)),
        BTreeSet::from([codes::COORDINATOR_LOAD_IN_PROGRESS])
    );
    let r = DescribeTransactionsRequest::default().with_transactional_ids(vec![tid(&on_other)]);
    let r = s.send(0, TxnRequest::DescribeTransactions(r));
    let Some(TxnResponse::DescribeTransactions(resp)) = s.take_response(r) else {
        panic!()
    };
    assert_eq!(
        resp.transaction_states[0].error_code,
        codes::COORDINATOR_LOAD_IN_PROGRESS
    );
}

#[test]
fn verify_only_in_prepare_and_for_other_producers() {
    let mut s = Sim::new();
    let (_, pid, e) = s.init_now(5, "t", None);
    s.add_v5(vec![("t", pid, e, false, &[("a", 0)])]);
    s.flush();
    let r = s.add_v5(vec![("t", pid + 1, e, true, &[("a", 0)])]);
    let Some(TxnResponse::AddPartitionsToTxn(resp)) = s.take_response(r) else {
        panic!()
    };
    assert_eq!(
        flatten(&resp.results_by_transaction[0].topic_results),
        vec![(tp("a", 0), codes::INVALID_PRODUCER_ID_MAPPING)]
    );
    s.end_now(5, "t", pid, e, true);
    // Prepare*: the bumped epoch is current, the partition is still awaiting its marker.
    let r = s.add_v5(vec![("t", pid, e + 1, true, &[("a", 0)])]);
    let Some(TxnResponse::AddPartitionsToTxn(resp)) = s.take_response(r) else {
        panic!()
    };
    assert_eq!(
        flatten(&resp.results_by_transaction[0].topic_results),
        vec![(tp("a", 0), codes::CONCURRENT_TRANSACTIONS)]
    );
    // A TV2 retry of EndTxn with an epoch older than the bump: fenced.
    assert_eq!(
        s.end_now(5, "t", pid, e - 1, true).0,
        codes::PRODUCER_FENCED
    );
    // Nothing verify_only did reached the log.
    assert_eq!(s.appends.len(), 0);
}

#[test]
fn a_tv2_fence_at_the_last_epoch_moves_to_a_new_producer_id() {
    let mut s = Sim::new();
    let (_, pid, _) = s.init_now(5, "t", None);
    let last = crate::state::EPOCH_EXHAUSTED_AT;
    s.c.txns.get_mut("t").unwrap().producer_epoch = last;
    s.add_v5(vec![("t", pid, last, false, &[("a", 0)])]);
    s.flush();
    // Timed out: fenced to i16::MAX, aborted under TV2 without overflowing.
    s.advance(70_000);
    s.flush();
    assert_eq!(
        (s.state("t"), s.epoch("t")),
        (Some(TxnState::PrepareAbort), i16::MAX)
    );
    let Effect::SendMarkers { producer_epoch, .. } = s.markers[0].clone() else {
        panic!()
    };
    assert_eq!(
        producer_epoch,
        i16::MAX,
        "the zombie at the last epoch is fenced"
    );
    s.finish_markers();
    let meta = s.c.transaction("t").unwrap();
    assert_eq!(
        (meta.state, meta.producer_id, meta.producer_epoch),
        (TxnState::CompleteAbort, 1001, 0)
    );
}

#[test]
fn hostile_timestamps_do_not_overflow() {
    let mut s = Sim::new();
    let (_, pid, e) = s.init_now(3, "t", None);
    s.add_now(3, "t", pid, e, &[("a", 0)]);
    let meta = s.c.txns.get_mut("t").unwrap();
    meta.txn_start_timestamp_ms = i64::MAX;
    s.advance(20_000);
    meta_start(&mut s, i64::MIN);
    let r = s.send(
        1,
        TxnRequest::ListTransactions(ListTransactionsRequest::default().with_duration_filter(5)),
    );
    assert!(s.take_response(r).is_some());
    s.advance(20_000);
}

fn meta_start(s: &mut Sim, start: i64) {
    s.c.txns.get_mut("t").unwrap().txn_start_timestamp_ms = start;
}

#[test]
fn a_failed_tombstone_keeps_the_id_and_complete_ids_expire_too() {
    let mut s = Sim::new();
    let (_, pid, e) = s.init_now(3, "t", None);
    s.add_now(3, "t", pid, e, &[("a", 0)]);
    s.end_now(3, "t", pid, e, true);
    s.finish_markers();
    s.now += 604_800_000;
    s.advance(3_600_000);
    s.complete_append(AppendOutcome::Unavailable);
    let meta = s.c.transaction("t").unwrap();
    assert_eq!(
        (meta.state, meta.pending()),
        (TxnState::CompleteCommit, false)
    );
    // The next pass tries again, and a durable tombstone forgets the id.
    s.advance(3_600_000);
    s.complete_append(AppendOutcome::Appended);
    assert_eq!(s.state("t"), None);
    // A new InitProducerId starts over with a fresh producer id.
    assert_eq!(s.init_now(3, "t", None), (0, 1001, 0));
}

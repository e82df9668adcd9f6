//! InitProducerId, AddPartitionsToTxn (v0-5), AddOffsetsToTxn, DescribeTransactions and
//! ListTransactions: Kafka 4.1's checks, in Kafka's order, with its error codes per version.
//!
//! Owns the request-side rules only. A check that passes ends in a prepared transition handed
//! to `append_transition`; the answer goes out from `on_append_complete`. Must never change
//! an id's state directly: only through `state.rs`'s prepare/complete pair.

use std::collections::BTreeSet;

use kafka_protocol::messages::add_partitions_to_txn_response::{
    AddPartitionsToTxnPartitionResult, AddPartitionsToTxnResult, AddPartitionsToTxnTopicResult,
};
use kafka_protocol::messages::describe_transactions_response::{TopicData, TransactionState};
use kafka_protocol::messages::list_transactions_response::TransactionState as ListedState;
use kafka_protocol::messages::{
    AddOffsetsToTxnRequest, AddOffsetsToTxnResponse, AddPartitionsToTxnRequest,
    AddPartitionsToTxnResponse, DescribeTransactionsRequest, DescribeTransactionsResponse,
    EndTxnRequest, InitProducerIdRequest, InitProducerIdResponse, ListTransactionsRequest,
    ListTransactionsResponse, ProducerId, TopicName, TransactionalId,
};
use kafka_protocol::protocol::StrBytes;

use super::end_txn::EndTxnCaller;
use super::{fenced_for, Coordinator, PartitionLoad, Reply, Then, TxnResponse};
use crate::codes;
use crate::limits;
use crate::state::{TopicPartition, Transit, TxnMetadata, TxnState, EPOCH_EXHAUSTED_AT};

/// The topic AddOffsetsToTxn adds a partition of.
const CONSUMER_OFFSETS_TOPIC: &str = "__consumer_offsets";

/// Where an AddPartitionsToTxn/AddOffsetsToTxn answer goes.
#[derive(Debug)]
pub(super) enum AddReply {
    /// AddPartitionsToTxn v0-3: one transaction, per-partition errors.
    Single {
        reply: Reply,
        partitions: BTreeSet<TopicPartition>,
    },
    /// AddPartitionsToTxn v4+: one transaction of a batch.
    Batch {
        aggregate: u64,
        transactional_id: String,
        partitions: BTreeSet<TopicPartition>,
    },
    /// AddOffsetsToTxn: one error.
    Offsets(Reply),
}

/// A batched (v4+) AddPartitionsToTxn waiting for its transactions' results.
#[derive(Debug)]
pub(super) struct AddAggregate {
    reply: Reply,
    waiting: usize,
    results: Vec<AddPartitionsToTxnResult>,
}

fn topic_results(
    errors: impl IntoIterator<Item = (TopicPartition, i16)>,
) -> Vec<AddPartitionsToTxnTopicResult> {
    let mut out: Vec<AddPartitionsToTxnTopicResult> = Vec::new();
    for (tp, code) in errors {
        let result = AddPartitionsToTxnPartitionResult::default()
            .with_partition_index(tp.partition)
            .with_partition_error_code(code);
        match out.last_mut() {
            Some(t) if t.name.0.as_str() == tp.topic => t.results_by_partition.push(result),
            _ => out.push(
                AddPartitionsToTxnTopicResult::default()
                    .with_name(TopicName(StrBytes::from_string(tp.topic)))
                    .with_results_by_partition(vec![result]),
            ),
        }
    }
    out
}

/// One transaction of an AddPartitionsToTxn request, normalized over the versions.
struct AddTxn {
    transactional_id: String,
    producer_id: i64,
    producer_epoch: i16,
    verify_only: bool,
    partitions: BTreeSet<TopicPartition>,
}

fn partitions_of(
    topics: &[kafka_protocol::messages::add_partitions_to_txn_request::AddPartitionsToTxnTopic],
) -> BTreeSet<TopicPartition> {
    topics
        .iter()
        .flat_map(|t| {
            t.partitions
                .iter()
                .map(|&p| TopicPartition::new(t.name.0.to_string(), p))
        })
        .collect()
}

impl Coordinator {
    // ---- InitProducerId ----------------------------------------------------------------------

    pub(super) fn respond_init(&mut self, reply: Reply, error: i16, producer_id: i64, epoch: i16) {
        let response = InitProducerIdResponse::default()
            .with_error_code(fenced_for(error, reply.api_version, 4))
            .with_producer_id(ProducerId(producer_id))
            .with_producer_epoch(epoch);
        self.respond(reply, TxnResponse::InitProducerId(response));
    }

    pub(super) fn init_producer_id(
        &mut self,
        ctx: &super::RequestContext,
        r: InitProducerIdRequest,
        now_ms: i64,
    ) {
        let reply = Reply {
            request_id: ctx.request_id,
            api_version: ctx.api_version,
        };
        let expected = match (r.producer_id.0, r.producer_epoch) {
            (-1, -1) => None,
            (-1, _) | (_, -1) => return self.respond_init(reply, codes::INVALID_REQUEST, -1, -1),
            (id, epoch) => Some((id, epoch)),
        };
        let Some(transactional_id) = r.transactional_id.map(|t| t.0.to_string()) else {
            // Idempotent producers: a new id, epoch 0, whatever was passed (Kafka does this).
            return match self.take_producer_id() {
                Some(id) => self.respond_init(reply, codes::NONE, id, 0),
                None => self.respond_init(reply, codes::COORDINATOR_LOAD_IN_PROGRESS, -1, -1),
            };
        };
        if transactional_id.is_empty()
            || transactional_id.len() > limits::TRANSACTIONAL_ID_BYTES_MAX
        {
            return self.respond_init(reply, codes::INVALID_REQUEST, -1, -1);
        }
        let timeout_ms = r.transaction_timeout_ms;
        if timeout_ms <= 0 || timeout_ms > self.config.max_timeout_ms {
            return self.respond_init(reply, codes::INVALID_TRANSACTION_TIMEOUT, -1, -1);
        }
        let (partition, coordinator_epoch) = match self.coordinator_for(&transactional_id) {
            Ok(p) => p,
            Err(e) => return self.respond_init(reply, e, -1, -1),
        };
        if self.appends_full() {
            return self.respond_init(reply, codes::COORDINATOR_NOT_AVAILABLE, -1, -1);
        }
        if !self.txns.contains_key(&transactional_id) {
            if self.txns.len() >= self.config.transactional_ids_max {
                return self.respond_init(reply, codes::COORDINATOR_NOT_AVAILABLE, -1, -1);
            }
            let Some(producer_id) = self.take_producer_id() else {
                return self.respond_init(reply, codes::COORDINATOR_LOAD_IN_PROGRESS, -1, -1);
            };
            let meta = TxnMetadata::new(transactional_id.clone(), producer_id, timeout_ms, now_ms);
            self.txns.insert(transactional_id.clone(), meta);
        }
        match self.prepare_init(&transactional_id, timeout_ms, expected, now_ms) {
            Err(e) => self.respond_init(reply, e, -1, -1),
            Ok(InitPlan::Transit(transit)) => self.append_transition(
                &transactional_id,
                partition,
                coordinator_epoch,
                transit,
                Then::InitProducerId(reply),
                now_ms,
            ),
            Ok(InitPlan::FenceOngoing { fenced_epoch }) => {
                let meta = &self.txns[&transactional_id];
                let producer_id = meta.producer_id;
                let tv = self.config.transaction_version;
                self.end_transaction(
                    &transactional_id,
                    producer_id,
                    fenced_epoch,
                    false,
                    tv,
                    EndTxnCaller::InitProducerIdFence(reply),
                    now_ms,
                );
            }
        }
    }

    /// `prepareInitProducerIdTransit`.
    fn prepare_init(
        &mut self,
        transactional_id: &str,
        timeout_ms: i32,
        expected: Option<(i64, i16)>,
        now_ms: i64,
    ) -> Result<InitPlan, i16> {
        let meta = &self.txns[transactional_id];
        let valid_producer_id = |(id, epoch): (i64, i16)| {
            meta.producer_epoch == crate::state::NO_PRODUCER_EPOCH
                || id == meta.producer_id
                || (id == meta.previous_producer_id && epoch >= EPOCH_EXHAUSTED_AT)
        };
        if meta.pending() {
            return Err(codes::CONCURRENT_TRANSACTIONS);
        }
        if !expected.is_none_or(valid_producer_id) {
            return Err(codes::PRODUCER_FENCED);
        }
        match meta.state {
            TxnState::PrepareAbort | TxnState::PrepareCommit => Err(codes::CONCURRENT_TRANSACTIONS),
            TxnState::CompleteAbort | TxnState::CompleteCommit | TxnState::Empty => {
                if meta.is_epoch_exhausted()
                    && expected.is_none_or(|(_, e)| e == meta.producer_epoch)
                {
                    let Some(new_id) = self.take_producer_id() else {
                        return Err(codes::COORDINATOR_LOAD_IN_PROGRESS);
                    };
                    let meta = self.txns.get_mut(transactional_id).expect("present");
                    Ok(InitPlan::Transit(meta.prepare_producer_id_rotation(
                        new_id,
                        timeout_ms,
                        now_ms,
                        expected.is_some(),
                    )))
                } else if meta.is_epoch_exhausted() {
                    // Exhausted, and the expected epoch is not the current one: Kafka's epoch
                    // bump throws here, answered as UNKNOWN_SERVER_ERROR.
                    Err(codes::UNKNOWN_SERVER_ERROR)
                } else {
                    let meta = self.txns.get_mut(transactional_id).expect("present");
                    meta.prepare_increment_producer_epoch(timeout_ms, expected.map(|e| e.1), now_ms)
                        .map(InitPlan::Transit)
                }
            }
            TxnState::Ongoing => {
                if meta.producer_epoch == i16::MAX {
                    // Kafka throws here (no epoch left to fence with); it answers as this.
                    return Err(codes::UNKNOWN_SERVER_ERROR);
                }
                let meta = self.txns.get_mut(transactional_id).expect("present");
                let fence = meta.prepare_fence_producer_epoch();
                Ok(InitPlan::FenceOngoing {
                    fenced_epoch: fence.producer_epoch,
                })
            }
            TxnState::Dead | TxnState::PrepareEpochFence => unreachable!(
                "{transactional_id}: {:?} is never held (Dead is removed, the fence pending only)",
                meta.state
            ),
        }
    }

    // ---- AddPartitionsToTxn / AddOffsetsToTxn ------------------------------------------------

    pub(super) fn add_partitions_to_txn(
        &mut self,
        ctx: &super::RequestContext,
        r: AddPartitionsToTxnRequest,
        now_ms: i64,
    ) {
        let reply = Reply {
            request_id: ctx.request_id,
            api_version: ctx.api_version,
        };
        if ctx.api_version < 4 {
            let txn = AddTxn {
                transactional_id: r.v3_and_below_transactional_id.0.to_string(),
                producer_id: r.v3_and_below_producer_id.0,
                producer_epoch: r.v3_and_below_producer_epoch,
                verify_only: false,
                partitions: partitions_of(&r.v3_and_below_topics),
            };
            let add_reply = AddReply::Single {
                reply,
                partitions: txn.partitions.clone(),
            };
            return self.add_one(ctx, txn, add_reply, 0, now_ms);
        }
        let aggregate = self.next_aggregate_id;
        self.next_aggregate_id += 1;
        self.add_aggregates.insert(
            aggregate,
            AddAggregate {
                reply,
                waiting: r.transactions.len(),
                results: Vec::new(),
            },
        );
        if r.transactions.is_empty() {
            self.finish_aggregate(aggregate);
            return;
        }
        for t in r.transactions {
            let txn = AddTxn {
                transactional_id: t.transactional_id.0.to_string(),
                producer_id: t.producer_id.0,
                producer_epoch: t.producer_epoch,
                verify_only: t.verify_only,
                partitions: partitions_of(&t.topics),
            };
            let add_reply = AddReply::Batch {
                aggregate,
                transactional_id: txn.transactional_id.clone(),
                partitions: txn.partitions.clone(),
            };
            // Version 4+ comes from brokers adding for TV2 producers (KIP-890).
            self.add_one(ctx, txn, add_reply, 2, now_ms);
        }
    }

    pub(super) fn add_offsets_to_txn(
        &mut self,
        ctx: &super::RequestContext,
        r: AddOffsetsToTxnRequest,
        now_ms: i64,
    ) {
        let reply = Reply {
            request_id: ctx.request_id,
            api_version: ctx.api_version,
        };
        let partition = josefine_group::partition_for(
            r.group_id.0.as_str(),
            self.config.offsets_topic_partitions,
        );
        let txn = AddTxn {
            transactional_id: r.transactional_id.0.to_string(),
            producer_id: r.producer_id.0,
            producer_epoch: r.producer_epoch,
            verify_only: false,
            partitions: BTreeSet::from([TopicPartition::new(CONSUMER_OFFSETS_TOPIC, partition)]),
        };
        // The offsets partition always exists: no unknown-partition check.
        let ctx = super::RequestContext {
            unknown_partitions: BTreeSet::new(),
            ..ctx.clone()
        };
        self.add_one(&ctx, txn, AddReply::Offsets(reply), 0, now_ms);
    }

    fn add_one(
        &mut self,
        ctx: &super::RequestContext,
        txn: AddTxn,
        reply: AddReply,
        client_transaction_version: i16,
        now_ms: i64,
    ) {
        let unknown: BTreeSet<&TopicPartition> = txn
            .partitions
            .iter()
            .filter(|tp| ctx.unknown_partitions.contains(*tp))
            .collect();
        if !unknown.is_empty() {
            let errors = txn.partitions.iter().map(|tp| {
                let code = if unknown.contains(tp) {
                    codes::UNKNOWN_TOPIC_OR_PARTITION
                } else {
                    codes::OPERATION_NOT_ATTEMPTED
                };
                (tp.clone(), code)
            });
            let errors: Vec<_> = errors.collect();
            return self.respond_add_each(reply, errors);
        }
        if txn.verify_only {
            let errors = self.verify_partitions(&txn);
            return self.respond_add_each(reply, errors);
        }
        match self.prepare_add(&txn, client_transaction_version, now_ms) {
            Err(e) => self.respond_add(reply, e),
            Ok((partition, coordinator_epoch, transit)) => self.append_transition(
                &txn.transactional_id,
                partition,
                coordinator_epoch,
                transit,
                Then::AddPartitions(reply),
                now_ms,
            ),
        }
    }

    /// `handleAddPartitionsToTransaction`: `Err(NONE)` when nothing needs appending.
    fn prepare_add(
        &mut self,
        txn: &AddTxn,
        client_transaction_version: i16,
        now_ms: i64,
    ) -> Result<(i32, i32, Transit), i16> {
        if txn.transactional_id.is_empty() {
            return Err(codes::INVALID_REQUEST);
        }
        let (partition, coordinator_epoch) = self.coordinator_for(&txn.transactional_id)?;
        let full = self.appends_full();
        let max = self.config.partitions_per_transaction_max;
        let Some(meta) = self.txns.get_mut(&txn.transactional_id) else {
            return Err(codes::INVALID_PRODUCER_ID_MAPPING);
        };
        if meta.pending() {
            return Err(codes::CONCURRENT_TRANSACTIONS);
        }
        if meta.producer_id != txn.producer_id {
            return Err(codes::INVALID_PRODUCER_ID_MAPPING);
        }
        if meta.producer_epoch != txn.producer_epoch {
            return Err(codes::PRODUCER_FENCED);
        }
        if matches!(meta.state, TxnState::PrepareCommit | TxnState::PrepareAbort) {
            return Err(codes::CONCURRENT_TRANSACTIONS);
        }
        if meta.state == TxnState::Ongoing && txn.partitions.is_subset(&meta.partitions) {
            return Err(codes::NONE);
        }
        if meta.partitions.union(&txn.partitions).count() > max {
            return Err(codes::INVALID_REQUEST);
        }
        if full {
            return Err(codes::COORDINATOR_NOT_AVAILABLE);
        }
        let transit =
            meta.prepare_add_partitions(&txn.partitions, now_ms, client_transaction_version);
        Ok((partition, coordinator_epoch, transit))
    }

    /// `handleVerifyPartitionsInTransaction` (v4+ `verify_only`): changes nothing.
    fn verify_partitions(&self, txn: &AddTxn) -> Vec<(TopicPartition, i16)> {
        let all = |code: i16| txn.partitions.iter().map(|tp| (tp.clone(), code)).collect();
        if txn.transactional_id.is_empty() {
            return all(codes::INVALID_REQUEST);
        }
        if let Err(e) = self.coordinator_for(&txn.transactional_id) {
            return all(e);
        }
        let Some(meta) = self.txns.get(&txn.transactional_id) else {
            return all(codes::INVALID_PRODUCER_ID_MAPPING);
        };
        if meta.producer_id != txn.producer_id {
            return all(codes::INVALID_PRODUCER_ID_MAPPING);
        }
        if meta.producer_epoch != txn.producer_epoch {
            return all(codes::PRODUCER_FENCED);
        }
        if matches!(meta.state, TxnState::PrepareCommit | TxnState::PrepareAbort) {
            return all(codes::CONCURRENT_TRANSACTIONS);
        }
        // Kafka 4.1 answers TRANSACTION_ABORTABLE (not INVALID_TXN_STATE) for a partition
        // outside the transaction.
        txn.partitions
            .iter()
            .map(|tp| {
                let code = if meta.partitions.contains(tp) {
                    codes::NONE
                } else {
                    codes::TRANSACTION_ABORTABLE
                };
                (tp.clone(), code)
            })
            .collect()
    }

    /// Answers an add with one error for every partition.
    pub(super) fn respond_add(&mut self, reply: AddReply, error: i16) {
        let errors = match &reply {
            AddReply::Single { partitions, .. } | AddReply::Batch { partitions, .. } => {
                partitions.iter().map(|tp| (tp.clone(), error)).collect()
            }
            AddReply::Offsets(reply) => {
                let error = fenced_for(error, reply.api_version, 2);
                let response = AddOffsetsToTxnResponse::default().with_error_code(error);
                return self.respond(*reply, TxnResponse::AddOffsetsToTxn(response));
            }
        };
        self.respond_add_each(reply, errors);
    }

    /// Answers an add with an error per partition (AddOffsetsToTxn: its one partition's).
    fn respond_add_each(&mut self, reply: AddReply, errors: Vec<(TopicPartition, i16)>) {
        match reply {
            AddReply::Offsets(_) => {
                let error = errors.first().map_or(codes::NONE, |e| e.1);
                self.respond_add(reply, error);
            }
            AddReply::Single { reply, .. } => {
                let errors = errors
                    .into_iter()
                    .map(|(tp, e)| (tp, fenced_for(e, reply.api_version, 2)));
                let response = AddPartitionsToTxnResponse::default()
                    .with_results_by_topic_v3_and_below(topic_results(errors));
                self.respond(reply, TxnResponse::AddPartitionsToTxn(response));
            }
            AddReply::Batch {
                aggregate,
                transactional_id,
                ..
            } => {
                let result = AddPartitionsToTxnResult::default()
                    .with_transactional_id(TransactionalId(StrBytes::from_string(transactional_id)))
                    .with_topic_results(topic_results(errors));
                let agg = self
                    .add_aggregates
                    .get_mut(&aggregate)
                    .expect("an aggregate lives until its last transaction answers");
                agg.results.push(result);
                agg.waiting -= 1;
                if agg.waiting == 0 {
                    self.finish_aggregate(aggregate);
                }
            }
        }
    }

    fn finish_aggregate(&mut self, aggregate: u64) {
        let agg = self
            .add_aggregates
            .remove(&aggregate)
            .expect("finished once");
        let response =
            AddPartitionsToTxnResponse::default().with_results_by_transaction(agg.results);
        self.respond(agg.reply, TxnResponse::AddPartitionsToTxn(response));
    }

    // ---- EndTxn ------------------------------------------------------------------------------

    pub(super) fn end_txn(&mut self, ctx: &super::RequestContext, r: EndTxnRequest, now_ms: i64) {
        let reply = Reply {
            request_id: ctx.request_id,
            api_version: ctx.api_version,
        };
        // EndTxn v5 comes only from TV2 clients.
        let tv = if ctx.api_version > 4 { 2 } else { 0 };
        self.end_transaction(
            r.transactional_id.0.as_str(),
            r.producer_id.0,
            r.producer_epoch,
            r.committed,
            tv,
            EndTxnCaller::Client(reply),
            now_ms,
        );
    }

    // ---- DescribeTransactions / ListTransactions ---------------------------------------------

    pub(super) fn describe_transactions(
        &mut self,
        ctx: &super::RequestContext,
        r: DescribeTransactionsRequest,
    ) {
        let reply = Reply {
            request_id: ctx.request_id,
            api_version: ctx.api_version,
        };
        let states = r
            .transactional_ids
            .into_iter()
            .map(|id| self.describe_one(id))
            .collect();
        let response = DescribeTransactionsResponse::default().with_transaction_states(states);
        self.respond(reply, TxnResponse::DescribeTransactions(response));
    }

    fn describe_one(&self, id: TransactionalId) -> TransactionState {
        let state = TransactionState::default().with_transactional_id(id.clone());
        let id = id.0.as_str();
        if id.is_empty() {
            return state.with_error_code(codes::INVALID_REQUEST);
        }
        if let Err(e) = self.coordinator_for(id) {
            return state.with_error_code(e);
        }
        let Some(meta) = self.txns.get(id) else {
            return state.with_error_code(codes::TRANSACTIONAL_ID_NOT_FOUND);
        };
        let mut topics: Vec<TopicData> = Vec::new();
        for tp in &meta.partitions {
            match topics.last_mut() {
                Some(t) if t.topic.0.as_str() == tp.topic => t.partitions.push(tp.partition),
                _ => topics.push(
                    TopicData::default()
                        .with_topic(TopicName(StrBytes::from_string(tp.topic.clone())))
                        .with_partitions(vec![tp.partition]),
                ),
            }
        }
        state
            .with_error_code(codes::NONE)
            .with_producer_id(ProducerId(meta.producer_id))
            .with_producer_epoch(meta.producer_epoch)
            .with_transaction_state(StrBytes::from_static_str(meta.state.name()))
            .with_transaction_timeout_ms(meta.txn_timeout_ms)
            .with_transaction_start_time_ms(meta.txn_start_timestamp_ms)
            .with_topics(topics)
    }

    pub(super) fn list_transactions(
        &mut self,
        ctx: &super::RequestContext,
        r: ListTransactionsRequest,
        now_ms: i64,
    ) {
        let reply = Reply {
            request_id: ctx.request_id,
            api_version: ctx.api_version,
        };
        let mut response = ListTransactionsResponse::default();
        if self
            .partitions
            .values()
            .any(|l| *l == PartitionLoad::Loading)
        {
            response.error_code = codes::COORDINATOR_LOAD_IN_PROGRESS;
            return self.respond(reply, TxnResponse::ListTransactions(response));
        }
        let mut states = BTreeSet::new();
        for name in &r.state_filters {
            match TxnState::from_name(name.as_str()) {
                Some(s) => {
                    states.insert(s);
                }
                None => response.unknown_state_filters.push(name.clone()),
            }
        }
        // Kafka compiles the pattern with RE2/J and requires a whole-id match.
        let pattern = match r
            .transactional_id_pattern
            .as_ref()
            .filter(|p| !p.is_empty())
        {
            None => None,
            Some(p) => match regex::Regex::new(&format!("^(?:{})$", p.as_str())) {
                Ok(re) => Some(re),
                Err(_) => {
                    let response = ListTransactionsResponse::default()
                        .with_error_code(codes::INVALID_REGULAR_EXPRESSION);
                    return self.respond(reply, TxnResponse::ListTransactions(response));
                }
            },
        };
        let producer_ids: BTreeSet<i64> = r.producer_id_filters.iter().map(|p| p.0).collect();
        for meta in self.txns.values() {
            let excluded = (!producer_ids.is_empty() && !producer_ids.contains(&meta.producer_id))
                || (!r.state_filters.is_empty() && !states.contains(&meta.state))
                || (r.duration_filter >= 0
                    && now_ms.saturating_sub(meta.txn_start_timestamp_ms) <= r.duration_filter)
                || pattern
                    .as_ref()
                    .is_some_and(|re| !re.is_match(&meta.transactional_id));
            if !excluded {
                response.transaction_states.push(
                    ListedState::default()
                        .with_transactional_id(TransactionalId(StrBytes::from_string(
                            meta.transactional_id.clone(),
                        )))
                        .with_producer_id(ProducerId(meta.producer_id))
                        .with_transaction_state(StrBytes::from_static_str(meta.state.name())),
                );
            }
        }
        self.respond(reply, TxnResponse::ListTransactions(response));
    }
}

/// What InitProducerId does once its checks pass.
enum InitPlan {
    Transit(Transit),
    /// An ongoing transaction is fenced (epoch bumped) and aborted; the client retries.
    FenceOngoing {
        fenced_epoch: i16,
    },
}

//! The coordinator: dispatch, partition ownership and loading, appends, timers, producer ids.
//!
//! Owns every transactional id of the `__transaction_state` partitions this broker leads, and
//! the bookkeeping that ties delayed responses to appends, markers and timers. It must never
//! block, sleep, read a clock or do I/O: the driver passes `now_ms` into every call, carries
//! out the returned [`Effect`]s and reports their completions. A state change is applied only
//! once its record is durable ([`Coordinator::on_append_complete`]), and a response that
//! depends on it is only emitted then, so a client never sees a transition a crash could lose.
//!
//! The request rules live in `requests.rs`, EndTxn in `end_txn.rs`, markers and the Complete*
//! write in `markers.rs`, timeouts and id expiry in `timers.rs`.

mod end_txn;
mod markers;
mod requests;
mod timers;

#[cfg(test)]
mod random_tests;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, BTreeSet};

use kafka_protocol::messages::{
    AddOffsetsToTxnRequest, AddOffsetsToTxnResponse, AddPartitionsToTxnRequest,
    AddPartitionsToTxnResponse, DescribeTransactionsRequest, DescribeTransactionsResponse,
    EndTxnRequest, EndTxnResponse, InitProducerIdRequest, InitProducerIdResponse,
    ListTransactionsRequest, ListTransactionsResponse,
};

use crate::codes;
use crate::config::TxnConfig;
use crate::limits;
use crate::records::{self, TxnRecord};
use crate::state::{TopicPartition, Transit, TxnMetadata, TxnState};
use crate::TxnError;

pub use markers::MarkerResult;

/// The driver's handle for one request, echoed back on its response. Opaque to the
/// coordinator; the broker typically packs connection id and correlation id into it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RequestId(pub u64);

/// Names one [`Effect::Append`]; passed back in `on_append_complete`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct AppendId(pub u64);

/// Names one [`Effect::SendMarkers`]; passed back in `on_markers_complete`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct MarkerId(pub u64);

/// Per-request facts that are not in the request body.
#[derive(Clone, Debug, Default)]
pub struct RequestContext {
    pub request_id: RequestId,
    /// The request's API version: it changes behaviour (TV2 from AddPartitionsToTxn v4 and
    /// EndTxn v5, PRODUCER_FENCED spelled INVALID_PRODUCER_EPOCH for old clients), not just
    /// encoding.
    pub api_version: i16,
    /// AddPartitionsToTxn only: the partitions of the request that the metadata image does not
    /// have. Kafka's request handler checks them before the coordinator; the coordinator has
    /// no metadata view, so the driver fills this in.
    pub unknown_partitions: BTreeSet<TopicPartition>,
}

/// The requests the coordinator handles, as decoded by kafka-protocol.
#[derive(Clone, Debug)]
pub enum TxnRequest {
    InitProducerId(InitProducerIdRequest),
    AddPartitionsToTxn(AddPartitionsToTxnRequest),
    AddOffsetsToTxn(AddOffsetsToTxnRequest),
    EndTxn(EndTxnRequest),
    DescribeTransactions(DescribeTransactionsRequest),
    ListTransactions(ListTransactionsRequest),
}

/// Responses, shaped for the request's API version (encodable at that version).
#[derive(Clone, Debug, PartialEq)]
pub enum TxnResponse {
    InitProducerId(InitProducerIdResponse),
    AddPartitionsToTxn(AddPartitionsToTxnResponse),
    AddOffsetsToTxn(AddOffsetsToTxnResponse),
    EndTxn(EndTxnResponse),
    DescribeTransactions(DescribeTransactionsResponse),
    ListTransactions(ListTransactionsResponse),
}

/// What the driver must do.
#[derive(Clone, Debug, PartialEq)]
pub enum Effect {
    /// Send `response` for the request `request_id`, encoded at `api_version`.
    Respond {
        request_id: RequestId,
        api_version: i16,
        response: TxnResponse,
    },
    /// Append `records` (in order, as one batch, acks=all) to partition `partition` of
    /// `__transaction_state`, then call `on_append_complete(append_id, ..)` whatever happens
    /// (also after the partition was unloaded).
    Append {
        append_id: AppendId,
        partition: i32,
        records: Vec<TxnRecord>,
    },
    /// Write a transaction marker (WriteTxnMarkers v1: this producer id and epoch, `commit`
    /// or abort, this coordinator epoch) to every partition in `partitions`, grouped by their
    /// leaders, then call `on_markers_complete(marker_id, ..)` with one result per partition.
    SendMarkers {
        marker_id: MarkerId,
        transactional_id: String,
        producer_id: i64,
        producer_epoch: i16,
        coordinator_epoch: i32,
        commit: bool,
        partitions: Vec<TopicPartition>,
    },
    /// The coordinator is running low on producer ids: allocate a block (from the chain) and
    /// hand it in with `on_producer_ids`, or report `on_producer_ids_failed`. Emitted again
    /// only after one of those calls.
    AllocateProducerIds,
}

/// How an append ended: the group coordinator's type, as both coordinators' appends go
/// through the same runtime (the broker's `coordinator_partitions`).
pub use josefine_group::AppendOutcome;

/// The error a client sees for a failed append (Kafka's `appendTransactionToLog` mapping).
fn append_error(outcome: AppendOutcome) -> i16 {
    match outcome {
        AppendOutcome::Appended => codes::NONE,
        AppendOutcome::NotLeader => codes::NOT_COORDINATOR,
        AppendOutcome::Unavailable => codes::COORDINATOR_NOT_AVAILABLE,
        AppendOutcome::TooLarge => codes::UNKNOWN_SERVER_ERROR,
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum PartitionLoad {
    Loading,
    /// `load` numbers the load, so an append issued before an unload and reload at the same
    /// coordinator epoch is still recognised as stale.
    Loaded {
        coordinator_epoch: i32,
        load: u64,
    },
}

/// Where a response goes.
#[derive(Clone, Copy, Debug)]
struct Reply {
    request_id: RequestId,
    api_version: i16,
}

/// What to do once a transition's record is durable (or failed).
#[derive(Debug)]
enum Then {
    InitProducerId(Reply),
    AddPartitions(requests::AddReply),
    EndTxn(end_txn::EndTxnAfter),
    /// The Complete* record after every marker was written.
    Complete,
}

#[derive(Debug)]
enum AfterAppend {
    Transition {
        transactional_id: String,
        transit: Transit,
        then: Then,
    },
    /// Tombstones of expired ids, with the epoch each was expired at.
    Expire { ids: Vec<(String, i16)> },
}

#[derive(Debug)]
struct PendingAppend {
    partition: i32,
    coordinator_epoch: i32,
    load: u64,
    after: AfterAppend,
}

/// Producer ids handed in by the driver, used in order.
#[derive(Debug, Default)]
struct ProducerIdPool {
    next: i64,
    end: i64,
    requested: bool,
}

/// The transaction coordinator. See the crate documentation for the driver protocol.
#[derive(Debug)]
pub struct Coordinator {
    config: TxnConfig,
    partitions: BTreeMap<i32, PartitionLoad>,
    /// Ids of loaded partitions.
    txns: BTreeMap<String, TxnMetadata>,
    /// Ids read so far from partitions being loaded.
    loading: BTreeMap<i32, BTreeMap<String, TxnMetadata>>,
    pending_appends: BTreeMap<AppendId, PendingAppend>,
    next_append_id: u64,
    next_load: u64,
    add_aggregates: BTreeMap<u64, requests::AddAggregate>,
    next_aggregate_id: u64,
    markers: markers::Markers,
    producer_ids: ProducerIdPool,
    next_abort_check_ms: Option<i64>,
    next_expire_check_ms: Option<i64>,
    effects: Vec<Effect>,
}

impl Coordinator {
    /// A coordinator owning no partitions and holding no producer ids.
    pub fn new(config: TxnConfig) -> Result<Self, TxnError> {
        config.validate()?;
        Ok(Coordinator {
            config,
            partitions: BTreeMap::new(),
            txns: BTreeMap::new(),
            loading: BTreeMap::new(),
            pending_appends: BTreeMap::new(),
            next_append_id: 1,
            next_load: 1,
            add_aggregates: BTreeMap::new(),
            next_aggregate_id: 1,
            markers: markers::Markers::default(),
            producer_ids: ProducerIdPool::default(),
            next_abort_check_ms: None,
            next_expire_check_ms: None,
            effects: Vec::new(),
        })
    }

    /// The `__transaction_state` partition that owns `transactional_id` (what FindCoordinator
    /// with key type 1 needs): Kafka's `Utils.abs(hashCode) % partitions`.
    pub fn partition_for(&self, transactional_id: &str) -> i32 {
        josefine_group::partition_for(transactional_id, self.config.state_log_partitions)
    }

    /// The metadata of an id, if this coordinator serves it (tests, metrics, admin).
    pub fn transaction(&self, transactional_id: &str) -> Option<&TxnMetadata> {
        self.txns.get(transactional_id)
    }

    /// Number of ids held (loaded partitions only).
    pub fn transaction_count(&self) -> usize {
        self.txns.len()
    }

    /// Transactions whose markers are being written.
    pub fn pending_marker_count(&self) -> usize {
        self.markers.len()
    }

    // ---- Producer ids ------------------------------------------------------------------------

    /// A block of producer ids `[first, first + count)` allocated by the driver.
    pub fn on_producer_ids(&mut self, first: i64, count: u64) -> Vec<Effect> {
        assert!(first >= 0, "producer ids are non-negative");
        let count = i64::try_from(count).expect("a block fits in i64");
        self.producer_ids = ProducerIdPool {
            next: first,
            end: first
                .checked_add(count)
                .expect("producer id block overflows"),
            requested: false,
        };
        std::mem::take(&mut self.effects)
    }

    /// The allocation asked for by [`Effect::AllocateProducerIds`] failed; the next request
    /// that needs an id asks again.
    pub fn on_producer_ids_failed(&mut self) {
        self.producer_ids.requested = false;
    }

    /// Takes a producer id; `None` (COORDINATOR_LOAD_IN_PROGRESS to the client, as Kafka's
    /// id manager answers while its next block is on the way) when none is in hand.
    fn take_producer_id(&mut self) -> Option<i64> {
        let pool = &mut self.producer_ids;
        let id = (pool.next < pool.end).then(|| {
            pool.next += 1;
            pool.next - 1
        });
        let remaining = u64::try_from(pool.end - pool.next).unwrap_or(0);
        if remaining < limits::PRODUCER_IDS_LOW_WATER && !pool.requested {
            pool.requested = true;
            self.effects.push(Effect::AllocateProducerIds);
        }
        id
    }

    // ---- Partition ownership and loading -----------------------------------------------------

    /// Starts loading partition `partition`: its ids answer COORDINATOR_LOAD_IN_PROGRESS until
    /// `complete_load`. Any state previously held for it is dropped.
    pub fn begin_load(&mut self, partition: i32) -> Vec<Effect> {
        self.drop_partition(partition);
        self.partitions.insert(partition, PartitionLoad::Loading);
        self.loading.insert(partition, BTreeMap::new());
        std::mem::take(&mut self.effects)
    }

    /// Replays one record of the partition, in log order (`value` `None` for a tombstone).
    /// Unknown key versions are skipped. A corrupt record is an error and changes nothing:
    /// the driver logs it and goes on with the next record.
    pub fn load_record(
        &mut self,
        partition: i32,
        key: &[u8],
        value: Option<&[u8]>,
    ) -> Result<(), TxnError> {
        let Some(loaded) = self.loading.get_mut(&partition) else {
            return Err(TxnError::NotLoading(partition));
        };
        let Some(transactional_id) = records::decode_key(key)? else {
            return Ok(());
        };
        let Some(value) = value else {
            loaded.remove(&transactional_id);
            return Ok(());
        };
        let value = records::decode_value(value)?;
        match value.state {
            // Kafka writes tombstones, never these; a Dead value means the id is gone.
            TxnState::Dead => {
                loaded.remove(&transactional_id);
            }
            TxnState::PrepareEpochFence => {
                return Err(TxnError::CorruptRecord(format!(
                    "{transactional_id}: PrepareEpochFence is never written"
                )));
            }
            _ => {
                let meta = TxnMetadata::from_log(transactional_id.clone(), value);
                loaded.insert(transactional_id, meta);
            }
        }
        Ok(())
    }

    /// Finishes loading: ids become servable, and transactions found in Prepare* resume:
    /// their markers are sent again (idempotent at the leaders) and Complete* follows.
    pub fn complete_load(
        &mut self,
        partition: i32,
        coordinator_epoch: i32,
        now_ms: i64,
    ) -> Result<Vec<Effect>, TxnError> {
        let Some(loaded) = self.loading.remove(&partition) else {
            return Err(TxnError::NotLoading(partition));
        };
        let load = self.next_load;
        self.next_load += 1;
        self.partitions.insert(
            partition,
            PartitionLoad::Loaded {
                coordinator_epoch,
                load,
            },
        );
        let mut resume = Vec::new();
        for (id, meta) in loaded {
            if matches!(meta.state, TxnState::PrepareCommit | TxnState::PrepareAbort) {
                resume.push(id.clone());
            }
            self.txns.insert(id, meta);
        }
        for id in resume {
            self.start_markers(&id, partition, coordinator_epoch, now_ms);
        }
        self.next_abort_check_ms
            .get_or_insert(now_ms + self.config.abort_timed_out_transaction_cleanup_interval_ms);
        self.next_expire_check_ms
            .get_or_insert(now_ms + self.config.remove_expired_transaction_cleanup_interval_ms);
        Ok(std::mem::take(&mut self.effects))
    }

    /// Gives up partition `partition` (leadership moved). Requests waiting on its appends get
    /// NOT_COORDINATOR when those complete; its markers stop (the next coordinator resends).
    pub fn unload(&mut self, partition: i32) -> Vec<Effect> {
        self.drop_partition(partition);
        std::mem::take(&mut self.effects)
    }

    fn drop_partition(&mut self, partition: i32) {
        self.partitions.remove(&partition);
        self.loading.remove(&partition);
        let ids: Vec<String> = self
            .txns
            .keys()
            .filter(|id| self.partition_for(id) == partition)
            .cloned()
            .collect();
        for id in ids {
            self.txns.remove(&id);
            self.markers.remove(&id);
        }
    }

    /// The partition and coordinator epoch serving `transactional_id`, or the error to answer.
    fn coordinator_for(&self, transactional_id: &str) -> Result<(i32, i32), i16> {
        let partition = self.partition_for(transactional_id);
        match self.partitions.get(&partition) {
            Some(PartitionLoad::Loaded {
                coordinator_epoch, ..
            }) => Ok((partition, *coordinator_epoch)),
            Some(PartitionLoad::Loading) => Err(codes::COORDINATOR_LOAD_IN_PROGRESS),
            None => Err(codes::NOT_COORDINATOR),
        }
    }

    /// The coordinator epoch and load number of a loaded partition.
    fn loaded(&self, partition: i32) -> Option<(i32, u64)> {
        match self.partitions.get(&partition) {
            Some(PartitionLoad::Loaded {
                coordinator_epoch,
                load,
            }) => Some((*coordinator_epoch, *load)),
            _ => None,
        }
    }

    // ---- Requests ----------------------------------------------------------------------------

    /// Handles one request. Responses may come back now or from a later call.
    pub fn handle(&mut self, ctx: RequestContext, request: TxnRequest, now_ms: i64) -> Vec<Effect> {
        match request {
            TxnRequest::InitProducerId(r) => self.init_producer_id(&ctx, r, now_ms),
            TxnRequest::AddPartitionsToTxn(r) => self.add_partitions_to_txn(&ctx, r, now_ms),
            TxnRequest::AddOffsetsToTxn(r) => self.add_offsets_to_txn(&ctx, r, now_ms),
            TxnRequest::EndTxn(r) => self.end_txn(&ctx, r, now_ms),
            TxnRequest::DescribeTransactions(r) => self.describe_transactions(&ctx, r),
            TxnRequest::ListTransactions(r) => self.list_transactions(&ctx, r, now_ms),
        }
        std::mem::take(&mut self.effects)
    }

    // ---- Appends -----------------------------------------------------------------------------

    /// The driver reports how `append_id` ended; what waited on it proceeds now.
    pub fn on_append_complete(
        &mut self,
        append_id: AppendId,
        outcome: AppendOutcome,
        now_ms: i64,
    ) -> Vec<Effect> {
        let pending = self
            .pending_appends
            .remove(&append_id)
            .unwrap_or_else(|| panic!("append {append_id:?} completed twice or never issued"));
        // A partition we no longer lead at that epoch cannot vouch for what was appended.
        let current =
            self.loaded(pending.partition) == Some((pending.coordinator_epoch, pending.load));
        let error = if current {
            append_error(outcome)
        } else {
            codes::NOT_COORDINATOR
        };
        match pending.after {
            AfterAppend::Expire { ids } => self.complete_expiry(ids, current, error),
            AfterAppend::Transition {
                transactional_id,
                transit,
                then,
            } => {
                if current {
                    let meta = self
                        .txns
                        .get_mut(&transactional_id)
                        .expect("an id with a pending transition is never dropped while loaded");
                    if error == codes::NONE {
                        meta.complete_transition(&transit);
                    } else if !(matches!(then, Then::Complete) && error != codes::NOT_COORDINATOR) {
                        // The pending Complete* stays while its append is retried.
                        meta.abort_transition();
                    }
                }
                match then {
                    Then::InitProducerId(reply) => {
                        if error == codes::NONE {
                            self.respond_init(
                                reply,
                                codes::NONE,
                                transit.producer_id,
                                transit.producer_epoch,
                            );
                        } else {
                            self.respond_init(reply, error, -1, -1);
                        }
                    }
                    Then::AddPartitions(reply) => self.respond_add(reply, error),
                    Then::EndTxn(after) => self.after_prepare(
                        &transactional_id,
                        pending.coordinator_epoch,
                        after,
                        error,
                        current,
                        now_ms,
                    ),
                    Then::Complete => self.after_complete(&transactional_id, error, now_ms),
                }
            }
        }
        std::mem::take(&mut self.effects)
    }

    /// Appends `transit` as the record of `transactional_id`, to be applied once durable.
    fn append_transition(
        &mut self,
        transactional_id: &str,
        partition: i32,
        coordinator_epoch: i32,
        transit: Transit,
        then: Then,
        now_ms: i64,
    ) {
        let record = TxnRecord {
            key: records::encode_key(transactional_id),
            value: Some(records::encode_value(&transit.log_value())),
            timestamp_ms: now_ms,
        };
        self.append(
            partition,
            coordinator_epoch,
            vec![record],
            AfterAppend::Transition {
                transactional_id: transactional_id.to_string(),
                transit,
                then,
            },
        );
    }

    fn append(
        &mut self,
        partition: i32,
        coordinator_epoch: i32,
        records: Vec<TxnRecord>,
        after: AfterAppend,
    ) {
        assert!(!records.is_empty(), "appends carry at least one record");
        let append_id = AppendId(self.next_append_id);
        self.next_append_id += 1;
        let load = self.loaded(partition).map_or(0, |(_, load)| load);
        self.pending_appends.insert(
            append_id,
            PendingAppend {
                partition,
                coordinator_epoch,
                load,
                after,
            },
        );
        self.effects.push(Effect::Append {
            append_id,
            partition,
            records,
        });
    }

    /// Whether another state-changing append may start (the pending-appends limit).
    fn appends_full(&self) -> bool {
        self.pending_appends.len() >= self.config.pending_appends_max
    }

    fn respond(&mut self, reply: Reply, response: TxnResponse) {
        self.effects.push(Effect::Respond {
            request_id: reply.request_id,
            api_version: reply.api_version,
            response,
        });
    }
}

/// PRODUCER_FENCED is spelled INVALID_PRODUCER_EPOCH to clients older than `first_version`
/// (Kafka's request handlers do the same).
fn fenced_for(error: i16, api_version: i16, first_version: i16) -> i16 {
    if error == codes::PRODUCER_FENCED && api_version < first_version {
        codes::INVALID_PRODUCER_EPOCH
    } else {
        error
    }
}

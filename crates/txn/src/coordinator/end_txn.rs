//! Ending a transaction: EndTxn from a client, and the aborts the coordinator starts itself
//! (InitProducerId fencing an ongoing transaction, transaction timeouts).
//!
//! Owns Kafka 4.1's two EndTxn tables, `endTransactionWithTV1` and the TV2 `endTransaction`
//! (epoch bumped at every end, retries recognised by the bumped epoch, abort allowed with no
//! transaction), and what follows a durable Prepare*: the answer, then the markers. Must never
//! answer EndTxn before its Prepare* record is durable.

use kafka_protocol::messages::{EndTxnResponse, ProducerId};

use super::{fenced_for, Coordinator, Reply, Then, TxnResponse};
use crate::codes;
use crate::state::{supports_epoch_bump, TxnState, EPOCH_EXHAUSTED_AT, NO_PRODUCER_ID};

/// Who asked for the end.
#[derive(Clone, Copy, Debug)]
pub(super) enum EndTxnCaller {
    /// An EndTxn request.
    Client(Reply),
    /// InitProducerId found the transaction ongoing: it is aborted, and the InitProducerId
    /// answered CONCURRENT_TRANSACTIONS once the abort is durable (the client retries).
    InitProducerIdFence(Reply),
    /// The transaction outlived its timeout.
    Timeout,
}

/// What a Prepare* append carries to its completion.
#[derive(Debug)]
pub(super) struct EndTxnAfter {
    caller: EndTxnCaller,
    producer_id: i64,
    producer_epoch: i16,
    commit: bool,
    tv2: bool,
    is_epoch_fence: bool,
}

impl Coordinator {
    fn respond_end(&mut self, caller: EndTxnCaller, error: i16, producer_id: i64, epoch: i16) {
        match caller {
            EndTxnCaller::Client(reply) => {
                let mut response = EndTxnResponse::default().with_error_code(fenced_for(
                    error,
                    reply.api_version,
                    2,
                ));
                if reply.api_version >= 5 {
                    response.producer_id = ProducerId(producer_id);
                    response.producer_epoch = epoch;
                }
                self.respond(reply, TxnResponse::EndTxn(response));
            }
            EndTxnCaller::InitProducerIdFence(reply) => {
                let error = if error == codes::NONE {
                    codes::CONCURRENT_TRANSACTIONS
                } else {
                    error
                };
                self.respond_init(reply, error, -1, -1);
            }
            EndTxnCaller::Timeout => {}
        }
    }

    /// `endTransaction`: `from_client` is false for the coordinator's own aborts, whose
    /// `epoch` is the fenced (bumped) one.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn end_transaction(
        &mut self,
        transactional_id: &str,
        producer_id: i64,
        epoch: i16,
        commit: bool,
        client_transaction_version: i16,
        caller: EndTxnCaller,
        now_ms: i64,
    ) {
        let from_client = matches!(caller, EndTxnCaller::Client(_));
        let fail = |c: &mut Coordinator, e: i16| c.respond_end(caller, e, NO_PRODUCER_ID, -1);
        if transactional_id.is_empty() {
            return fail(self, codes::INVALID_REQUEST);
        }
        let (partition, coordinator_epoch) = match self.coordinator_for(transactional_id) {
            Ok(p) => p,
            Err(e) => return fail(self, e),
        };
        let markers_full = self.markers.len() >= self.config.pending_marker_transactions_max;
        let appends_full = self.appends_full();
        let Some(meta) = self.txns.get(transactional_id) else {
            return fail(self, codes::INVALID_PRODUCER_ID_MAPPING);
        };
        let tv2 = supports_epoch_bump(client_transaction_version);
        let is_epoch_fence = meta.pending_state == Some(TxnState::PrepareEpochFence);
        let (valid_epoch, is_retry, retry_on_overflow) = if tv2 {
            let retry_on_overflow = !is_epoch_fence
                && meta.previous_producer_id == producer_id
                && epoch == EPOCH_EXHAUSTED_AT
                && meta.producer_epoch == 0;
            let retry_on_bump =
                !is_epoch_fence && i32::from(meta.producer_epoch) == i32::from(epoch) + 1;
            let valid = if is_epoch_fence {
                (!from_client || epoch == meta.producer_epoch) && epoch >= meta.producer_epoch
            } else {
                match meta.state {
                    TxnState::PrepareCommit | TxnState::PrepareAbort => retry_on_bump,
                    TxnState::CompleteCommit | TxnState::CompleteAbort => {
                        retry_on_bump || retry_on_overflow || epoch == meta.producer_epoch
                    }
                    _ => epoch == meta.producer_epoch,
                }
            };
            (valid, retry_on_bump || retry_on_overflow, retry_on_overflow)
        } else {
            let valid =
                !(from_client && epoch != meta.producer_epoch) && epoch >= meta.producer_epoch;
            (valid, false, false)
        };
        if meta.producer_id != producer_id && !retry_on_overflow {
            return fail(self, codes::INVALID_PRODUCER_ID_MAPPING);
        }
        if !valid_epoch {
            return fail(self, codes::PRODUCER_FENCED);
        }
        if meta.pending() && !is_epoch_fence {
            return fail(self, codes::CONCURRENT_TRANSACTIONS);
        }
        use TxnState::*;
        let target = match (meta.state, commit) {
            (Ongoing, true) => Some((PrepareCommit, false)),
            (Ongoing, false) => Some((PrepareAbort, false)),
            // The same end again, already complete (TV2: only as a retry of the bumped epoch).
            (CompleteCommit, true) | (CompleteAbort, false) if !tv2 || is_retry => None,
            (CompleteCommit, false) if tv2 && is_retry => {
                return fail(self, codes::INVALID_TXN_STATE)
            }
            // TV2 may abort with no transaction ongoing (an epoch bump, no markers).
            (CompleteCommit | CompleteAbort | Empty, false) if tv2 => Some((PrepareAbort, true)),
            (PrepareCommit, true) | (PrepareAbort, false) => {
                return fail(self, codes::CONCURRENT_TRANSACTIONS)
            }
            _ => return fail(self, codes::INVALID_TXN_STATE),
        };
        let Some((next, no_partition_added)) = target else {
            let (pid, e) = (meta.producer_id, meta.producer_epoch);
            return self.respond_end(caller, codes::NONE, pid, e);
        };
        if markers_full || appends_full {
            // Our limits: the client retries CONCURRENT_TRANSACTIONS; a timeout waits a pass.
            let error = if markers_full {
                codes::CONCURRENT_TRANSACTIONS
            } else {
                codes::COORDINATOR_NOT_AVAILABLE
            };
            if is_epoch_fence {
                self.txns
                    .get_mut(transactional_id)
                    .expect("present")
                    .abort_transition();
            }
            return fail(self, error);
        }
        if tv2 && !is_epoch_fence && meta.producer_epoch == i16::MAX {
            // Kafka would overflow the epoch here and fail the request; the producer has to
            // initialize again (which rotates its producer id).
            return fail(self, codes::PRODUCER_FENCED);
        }
        // Kafka 4.1 skips this for a fence, which lets a fence at i16::MAX - 1 overflow the
        // epoch; later Kafka (and we) move to a new producer id whenever the epochs run out.
        let next_producer_id = if tv2 && meta.is_epoch_exhausted() {
            match self.take_producer_id() {
                Some(id) => id,
                None => return fail(self, codes::COORDINATOR_LOAD_IN_PROGRESS),
            }
        } else {
            NO_PRODUCER_ID
        };
        let meta = self.txns.get_mut(transactional_id).expect("present");
        if is_epoch_fence {
            assert_eq!(next, PrepareAbort, "a fence only ever aborts");
            meta.begin_epoch_fence_abort(epoch);
        }
        // Kafka's `endTransactionWithTV1` stamps TV0 on the record, also on a TV1 cluster.
        let stamped_version = if tv2 { client_transaction_version } else { 0 };
        let transit = meta.prepare_abort_or_commit(
            next,
            stamped_version,
            next_producer_id,
            now_ms,
            no_partition_added,
        );
        let after = EndTxnAfter {
            caller,
            producer_id,
            producer_epoch: epoch,
            commit,
            tv2,
            is_epoch_fence,
        };
        self.append_transition(
            transactional_id,
            partition,
            coordinator_epoch,
            transit,
            Then::EndTxn(after),
            now_ms,
        );
    }

    /// The Prepare* append ended: answer, and on success start the markers.
    pub(super) fn after_prepare(
        &mut self,
        transactional_id: &str,
        coordinator_epoch: i32,
        after: EndTxnAfter,
        error: i16,
        current: bool,
        now_ms: i64,
    ) {
        let fail = |c: &mut Coordinator, e: i16| c.respond_end(after.caller, e, NO_PRODUCER_ID, -1);
        if error != codes::NONE {
            if after.is_epoch_fence && current {
                // The bumped epoch may or may not be on disk: the next fence reuses it.
                if let Some(meta) = self.txns.get_mut(transactional_id) {
                    meta.has_failed_epoch_fence = true;
                }
            }
            return fail(self, error);
        }
        let Some(meta) = self.txns.get(transactional_id) else {
            return fail(self, codes::NOT_COORDINATOR);
        };
        let epoch_ok = if after.tv2 {
            meta.producer_epoch == after.producer_epoch
                || i32::from(meta.producer_epoch) == i32::from(after.producer_epoch) + 1
        } else {
            meta.producer_epoch == after.producer_epoch
        };
        let expected = if after.commit {
            TxnState::PrepareCommit
        } else {
            TxnState::PrepareAbort
        };
        if meta.producer_id != after.producer_id {
            return fail(self, codes::INVALID_PRODUCER_ID_MAPPING);
        }
        if !epoch_ok {
            return fail(self, codes::PRODUCER_FENCED);
        }
        if meta.pending() {
            return fail(self, codes::CONCURRENT_TRANSACTIONS);
        }
        if meta.state != expected {
            return fail(self, codes::INVALID_TXN_STATE);
        }
        let (pid, epoch) = if after.tv2 {
            (meta.producer_id, meta.producer_epoch)
        } else {
            (NO_PRODUCER_ID, -1)
        };
        self.respond_end(after.caller, codes::NONE, pid, epoch);
        let partition = self.partition_for(transactional_id);
        self.start_markers(transactional_id, partition, coordinator_epoch, now_ms);
    }
}

//! One transactional id's state and Kafka's transition rules (`TransactionMetadata`).
//!
//! Owns the eight states, which state may follow which, and the two-step transition every
//! change takes: `prepare_*` computes the target ([`Transit`]) and marks it pending; the
//! coordinator appends the target to `__transaction_state`; only once that append is durable
//! does `complete_transition` apply it. While a transition is pending no other may start
//! (requests get CONCURRENT_TRANSACTIONS), so memory never runs ahead of the log, with one
//! exception copied from Kafka: an epoch fence writes the bumped epoch into memory before its
//! append (see [`TxnMetadata::begin_epoch_fence_abort`]).
//!
//! Never decides what a request means or which error it gets (the coordinator does); a call
//! that breaks a rule here is a bug in the coordinator, so it panics (`assert!`) rather than
//! returning an error.

use std::collections::BTreeSet;

use crate::records::TxnLogValue;

/// Producer epochs at or beyond this are exhausted: Kafka keeps `i16::MAX` free so the
/// coordinator can always fence once more (`TransactionMetadata.isEpochExhausted`).
pub const EPOCH_EXHAUSTED_AT: i16 = i16::MAX - 1;
/// No producer id (`RecordBatch.NO_PRODUCER_ID`).
pub const NO_PRODUCER_ID: i64 = -1;
/// No producer epoch (`RecordBatch.NO_PRODUCER_EPOCH`).
pub const NO_PRODUCER_EPOCH: i16 = -1;

/// Whether a transaction version bumps the epoch at every transaction end (TV2, KIP-890).
pub fn supports_epoch_bump(transaction_version: i16) -> bool {
    transaction_version >= 2
}

/// A topic partition in a transaction.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TopicPartition {
    pub topic: String,
    pub partition: i32,
}

impl TopicPartition {
    pub fn new(topic: impl Into<String>, partition: i32) -> Self {
        TopicPartition {
            topic: topic.into(),
            partition,
        }
    }
}

/// Kafka's transaction states, with their on-disk ids and DescribeTransactions names.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum TxnState {
    Empty,
    Ongoing,
    PrepareCommit,
    PrepareAbort,
    CompleteCommit,
    CompleteAbort,
    Dead,
    PrepareEpochFence,
}

impl TxnState {
    pub const ALL: [TxnState; 8] = [
        TxnState::Empty,
        TxnState::Ongoing,
        TxnState::PrepareCommit,
        TxnState::PrepareAbort,
        TxnState::CompleteCommit,
        TxnState::CompleteAbort,
        TxnState::Dead,
        TxnState::PrepareEpochFence,
    ];

    /// The `TransactionStatus` byte of `TransactionLogValue`.
    pub fn id(self) -> i8 {
        match self {
            TxnState::Empty => 0,
            TxnState::Ongoing => 1,
            TxnState::PrepareCommit => 2,
            TxnState::PrepareAbort => 3,
            TxnState::CompleteCommit => 4,
            TxnState::CompleteAbort => 5,
            TxnState::Dead => 6,
            TxnState::PrepareEpochFence => 7,
        }
    }

    pub fn from_id(id: i8) -> Option<TxnState> {
        TxnState::ALL.into_iter().find(|s| s.id() == id)
    }

    /// The name DescribeTransactions and ListTransactions show (and filter on).
    pub fn name(self) -> &'static str {
        match self {
            TxnState::Empty => "Empty",
            TxnState::Ongoing => "Ongoing",
            TxnState::PrepareCommit => "PrepareCommit",
            TxnState::PrepareAbort => "PrepareAbort",
            TxnState::CompleteCommit => "CompleteCommit",
            TxnState::CompleteAbort => "CompleteAbort",
            TxnState::Dead => "Dead",
            TxnState::PrepareEpochFence => "PrepareEpochFence",
        }
    }

    pub fn from_name(name: &str) -> Option<TxnState> {
        TxnState::ALL.into_iter().find(|s| s.name() == name)
    }

    /// The states a transition into `self` may start from (Kafka 4.1's `validPreviousStates`;
    /// PrepareAbort from Empty/Complete* is TV2's abort without a transaction).
    pub fn valid_previous(self) -> &'static [TxnState] {
        use TxnState::*;
        match self {
            Empty => &[Empty, CompleteCommit, CompleteAbort],
            Ongoing => &[Ongoing, Empty, CompleteCommit, CompleteAbort],
            PrepareCommit => &[Ongoing],
            PrepareAbort => &[
                Ongoing,
                PrepareEpochFence,
                Empty,
                CompleteCommit,
                CompleteAbort,
            ],
            CompleteCommit => &[PrepareCommit],
            CompleteAbort => &[PrepareAbort],
            Dead => &[Empty, CompleteAbort, CompleteCommit],
            PrepareEpochFence => &[Ongoing],
        }
    }

    /// Whether an idle id in this state may expire (`isExpirationAllowed`).
    pub fn expiration_allowed(self) -> bool {
        matches!(
            self,
            TxnState::Empty | TxnState::CompleteCommit | TxnState::CompleteAbort
        )
    }
}

/// The target of a transition: what gets appended, and applied once durable
/// (`TxnTransitMetadata`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Transit {
    pub producer_id: i64,
    /// The producer id before this transition (always the current one).
    pub prev_producer_id: i64,
    pub next_producer_id: i64,
    pub producer_epoch: i16,
    pub last_producer_epoch: i16,
    pub txn_timeout_ms: i32,
    pub state: TxnState,
    pub partitions: BTreeSet<TopicPartition>,
    pub txn_start_timestamp_ms: i64,
    pub txn_last_update_timestamp_ms: i64,
    pub client_transaction_version: i16,
}

impl Transit {
    /// The record value for this transition. Like Kafka 4.1 we leave PreviousProducerId out;
    /// unlike it we keep NextProducerId when set (epoch exhaustion under TV2), so a coordinator
    /// that takes over in Prepare* completes onto the new producer id. Kafka reads both tags.
    pub fn log_value(&self) -> TxnLogValue {
        TxnLogValue {
            producer_id: self.producer_id,
            previous_producer_id: NO_PRODUCER_ID,
            next_producer_id: self.next_producer_id,
            producer_epoch: self.producer_epoch,
            transaction_timeout_ms: self.txn_timeout_ms,
            state: self.state,
            partitions: if self.state == TxnState::Empty {
                BTreeSet::new()
            } else {
                self.partitions.clone()
            },
            last_update_timestamp_ms: self.txn_last_update_timestamp_ms,
            start_timestamp_ms: self.txn_start_timestamp_ms,
            client_transaction_version: self.client_transaction_version,
        }
    }
}

/// The state of one transactional id (`TransactionMetadata`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TxnMetadata {
    pub transactional_id: String,
    pub producer_id: i64,
    pub previous_producer_id: i64,
    pub next_producer_id: i64,
    pub producer_epoch: i16,
    pub last_producer_epoch: i16,
    pub txn_timeout_ms: i32,
    pub state: TxnState,
    pub partitions: BTreeSet<TopicPartition>,
    pub txn_start_timestamp_ms: i64,
    pub txn_last_update_timestamp_ms: i64,
    pub client_transaction_version: i16,
    /// The state a prepared, not yet durable transition moves to.
    pub pending_state: Option<TxnState>,
    /// A fence's bumped epoch may not be durable: the next fence reuses it instead of bumping
    /// again (it was never handed to a client).
    pub has_failed_epoch_fence: bool,
}

impl TxnMetadata {
    /// A brand-new id: Empty, no epoch yet (the first InitProducerId makes it 0).
    pub fn new(transactional_id: String, producer_id: i64, timeout_ms: i32, now_ms: i64) -> Self {
        TxnMetadata {
            transactional_id,
            producer_id,
            previous_producer_id: NO_PRODUCER_ID,
            next_producer_id: NO_PRODUCER_ID,
            producer_epoch: NO_PRODUCER_EPOCH,
            last_producer_epoch: NO_PRODUCER_EPOCH,
            txn_timeout_ms: timeout_ms,
            state: TxnState::Empty,
            partitions: BTreeSet::new(),
            txn_start_timestamp_ms: -1,
            txn_last_update_timestamp_ms: now_ms,
            client_transaction_version: 0,
            pending_state: None,
            has_failed_epoch_fence: false,
        }
    }

    /// The state loaded from a record (the last epoch is not stored: Kafka loads -1).
    pub fn from_log(transactional_id: String, v: TxnLogValue) -> Self {
        TxnMetadata {
            transactional_id,
            producer_id: v.producer_id,
            previous_producer_id: v.previous_producer_id,
            next_producer_id: v.next_producer_id,
            producer_epoch: v.producer_epoch,
            last_producer_epoch: NO_PRODUCER_EPOCH,
            txn_timeout_ms: v.transaction_timeout_ms,
            state: v.state,
            partitions: v.partitions,
            txn_start_timestamp_ms: v.start_timestamp_ms,
            txn_last_update_timestamp_ms: v.last_update_timestamp_ms,
            client_transaction_version: v.client_transaction_version,
            pending_state: None,
            has_failed_epoch_fence: false,
        }
    }

    pub fn is_epoch_exhausted(&self) -> bool {
        self.producer_epoch >= EPOCH_EXHAUSTED_AT
    }

    pub fn pending(&self) -> bool {
        self.pending_state.is_some()
    }

    /// Ongoing or ending: a transaction holds partitions that await markers or data.
    fn has_pending_transaction(&self) -> bool {
        matches!(
            self.state,
            TxnState::Ongoing | TxnState::PrepareAbort | TxnState::PrepareCommit
        )
    }

    /// Builds a transit into `state` from the current metadata, marking it pending.
    #[allow(clippy::too_many_arguments)]
    fn prepare(
        &mut self,
        state: TxnState,
        producer_id: i64,
        next_producer_id: i64,
        producer_epoch: i16,
        last_producer_epoch: i16,
        txn_timeout_ms: i32,
        partitions: BTreeSet<TopicPartition>,
        txn_start_timestamp_ms: i64,
        now_ms: i64,
        client_transaction_version: i16,
    ) -> Transit {
        assert!(
            self.pending_state.is_none(),
            "{}: transition to {state:?} while {:?} is pending",
            self.transactional_id,
            self.pending_state
        );
        assert!(producer_id >= 0, "illegal producer id {producer_id}");
        assert!(
            state == TxnState::Dead || producer_epoch >= 0,
            "illegal producer epoch {producer_epoch}"
        );
        assert!(
            state.valid_previous().contains(&self.state),
            "{}: {:?} -> {state:?} is not a valid transition",
            self.transactional_id,
            self.state
        );
        self.pending_state = Some(state);
        Transit {
            producer_id,
            prev_producer_id: self.producer_id,
            next_producer_id,
            producer_epoch,
            last_producer_epoch,
            txn_timeout_ms,
            state,
            partitions,
            txn_start_timestamp_ms,
            txn_last_update_timestamp_ms: now_ms,
            client_transaction_version,
        }
    }

    /// Bumps the epoch to fence the current producer out of its ongoing transaction, which is
    /// then aborted (InitProducerId during a transaction, transaction timeout).
    pub fn prepare_fence_producer_epoch(&mut self) -> Transit {
        assert!(
            self.producer_epoch != i16::MAX,
            "fencing epoch i16::MAX would overflow"
        );
        let epoch = if self.has_failed_epoch_fence {
            self.producer_epoch
        } else {
            self.producer_epoch + 1
        };
        self.prepare(
            TxnState::PrepareEpochFence,
            self.producer_id,
            NO_PRODUCER_ID,
            epoch,
            NO_PRODUCER_EPOCH,
            self.txn_timeout_ms,
            self.partitions.clone(),
            self.txn_start_timestamp_ms,
            self.txn_last_update_timestamp_ms,
            self.client_transaction_version,
        )
    }

    /// InitProducerId's epoch bump (KIP-360 when `expected_epoch` is given): PRODUCER_FENCED
    /// (as `Err(code)`) when the expected epoch is neither the current nor the previous one.
    pub fn prepare_increment_producer_epoch(
        &mut self,
        timeout_ms: i32,
        expected_epoch: Option<i16>,
        now_ms: i64,
    ) -> Result<Transit, i16> {
        assert!(
            !self.is_epoch_exhausted(),
            "no epochs left for producer id {}",
            self.producer_id
        );
        let bumped = self.producer_epoch + 1;
        let (epoch, last_epoch) = match expected_epoch {
            None => (bumped, NO_PRODUCER_EPOCH),
            Some(e) if self.producer_epoch == NO_PRODUCER_EPOCH || e == self.producer_epoch => {
                (bumped, self.producer_epoch)
            }
            // A retry of a bump whose answer was lost: hand out the same epoch again.
            Some(e) if e == self.last_producer_epoch => {
                (self.producer_epoch, self.last_producer_epoch)
            }
            Some(_) => return Err(crate::codes::PRODUCER_FENCED),
        };
        Ok(self.prepare(
            TxnState::Empty,
            self.producer_id,
            NO_PRODUCER_ID,
            epoch,
            last_epoch,
            timeout_ms,
            BTreeSet::new(),
            -1,
            now_ms,
            self.client_transaction_version,
        ))
    }

    /// A new producer id at epoch 0 once the epochs of the current one are exhausted.
    pub fn prepare_producer_id_rotation(
        &mut self,
        new_producer_id: i64,
        timeout_ms: i32,
        now_ms: i64,
        record_last_epoch: bool,
    ) -> Transit {
        assert!(
            !self.has_pending_transaction(),
            "cannot rotate producer ids during a transaction"
        );
        let last = if record_last_epoch {
            self.producer_epoch
        } else {
            NO_PRODUCER_EPOCH
        };
        self.prepare(
            TxnState::Empty,
            new_producer_id,
            NO_PRODUCER_ID,
            0,
            last,
            timeout_ms,
            BTreeSet::new(),
            -1,
            now_ms,
            self.client_transaction_version,
        )
    }

    /// Adds partitions; the transaction starts now if none was ongoing.
    pub fn prepare_add_partitions(
        &mut self,
        added: &BTreeSet<TopicPartition>,
        now_ms: i64,
        client_transaction_version: i16,
    ) -> Transit {
        let start = match self.state {
            TxnState::Empty | TxnState::CompleteAbort | TxnState::CompleteCommit => now_ms,
            _ => self.txn_start_timestamp_ms,
        };
        let partitions = self.partitions.union(added).cloned().collect();
        self.prepare(
            TxnState::Ongoing,
            self.producer_id,
            NO_PRODUCER_ID,
            self.producer_epoch,
            self.last_producer_epoch,
            self.txn_timeout_ms,
            partitions,
            start,
            now_ms,
            client_transaction_version,
        )
    }

    /// Ends the transaction (PrepareCommit or PrepareAbort). TV2 bumps the epoch here;
    /// `next_producer_id` is the id to move to when that bump exhausts the epochs.
    pub fn prepare_abort_or_commit(
        &mut self,
        state: TxnState,
        client_transaction_version: i16,
        next_producer_id: i64,
        now_ms: i64,
        no_partition_added: bool,
    ) -> Transit {
        let (epoch, last) = if supports_epoch_bump(client_transaction_version) {
            // Only a fence at the last epoch reaches i16::MAX here; it then stays there and
            // the completion moves to `next_producer_id`.
            (self.producer_epoch.saturating_add(1), self.producer_epoch)
        } else {
            (self.producer_epoch, self.last_producer_epoch)
        };
        // TV2 may abort with no transaction: its start time is then now.
        let start = if no_partition_added {
            now_ms
        } else {
            self.txn_start_timestamp_ms
        };
        self.prepare(
            state,
            self.producer_id,
            next_producer_id,
            epoch,
            last,
            self.txn_timeout_ms,
            self.partitions.clone(),
            start,
            now_ms,
            client_transaction_version,
        )
    }

    /// Complete* after every marker is written. At TV2 epoch exhaustion the producer moves
    /// to `next_producer_id` at epoch 0.
    pub fn prepare_complete(&mut self, now_ms: i64) -> Transit {
        let state = if self.state == TxnState::PrepareCommit {
            TxnState::CompleteCommit
        } else {
            TxnState::CompleteAbort
        };
        self.has_failed_epoch_fence = false;
        let (producer_id, epoch) = if supports_epoch_bump(self.client_transaction_version)
            && self.next_producer_id != NO_PRODUCER_ID
        {
            (self.next_producer_id, 0)
        } else {
            (self.producer_id, self.producer_epoch)
        };
        self.prepare(
            state,
            producer_id,
            NO_PRODUCER_ID,
            epoch,
            self.last_producer_epoch,
            self.txn_timeout_ms,
            BTreeSet::new(),
            self.txn_start_timestamp_ms,
            now_ms,
            self.client_transaction_version,
        )
    }

    /// Expiry of an idle id: the tombstone's transition.
    pub fn prepare_dead(&mut self) -> Transit {
        self.prepare(
            TxnState::Dead,
            self.producer_id,
            NO_PRODUCER_ID,
            self.producer_epoch,
            self.last_producer_epoch,
            self.txn_timeout_ms,
            BTreeSet::new(),
            self.txn_start_timestamp_ms,
            self.txn_last_update_timestamp_ms,
            self.client_transaction_version,
        )
    }

    /// The epoch fence turns into the abort that follows it: Kafka drops the pending fence and
    /// writes the fenced epoch into memory before the PrepareAbort append (never returned to a
    /// client; `has_failed_epoch_fence` covers the append failing).
    pub fn begin_epoch_fence_abort(&mut self, fenced_epoch: i16) {
        assert_eq!(self.pending_state, Some(TxnState::PrepareEpochFence));
        self.pending_state = None;
        self.producer_epoch = fenced_epoch;
        self.last_producer_epoch = NO_PRODUCER_EPOCH;
    }

    /// A marker for `tp` is written: it leaves the set still awaiting markers.
    pub fn remove_partition(&mut self, tp: &TopicPartition) {
        assert!(
            matches!(self.state, TxnState::PrepareCommit | TxnState::PrepareAbort),
            "{}: removing a marked partition in {:?}",
            self.transactional_id,
            self.state
        );
        self.partitions.remove(tp);
    }

    /// Drops the pending transition after its append failed.
    pub fn abort_transition(&mut self) {
        self.pending_state = None;
    }

    /// Applies a durable transition (`completeTransitionTo`), checking it is the one pending
    /// and fits the current state.
    pub fn complete_transition(&mut self, t: &Transit) {
        let to = self.pending_state.unwrap_or_else(|| {
            panic!("{}: completing with nothing pending", self.transactional_id)
        });
        assert_eq!(
            to, t.state,
            "{}: completing another transition",
            self.transactional_id
        );
        let tv2 = supports_epoch_bump(t.client_transaction_version);
        match to {
            TxnState::Empty => {
                assert!(
                    (self.producer_epoch == t.producer_epoch || self.valid_epoch_bump(t))
                        && t.partitions.is_empty()
                        && t.txn_start_timestamp_ms == -1,
                    "{}: invalid InitProducerId transition {t:?}",
                    self.transactional_id
                );
                self.txn_timeout_ms = t.txn_timeout_ms;
                self.producer_epoch = t.producer_epoch;
                self.last_producer_epoch = t.last_producer_epoch;
                self.producer_id = t.producer_id;
                self.previous_producer_id = t.prev_producer_id;
            }
            TxnState::Ongoing => {
                assert!(
                    self.valid_producer_epoch(t)
                        && self.partitions.is_subset(&t.partitions)
                        && self.txn_timeout_ms == t.txn_timeout_ms,
                    "{}: invalid AddPartitions transition {t:?}",
                    self.transactional_id
                );
                self.txn_start_timestamp_ms = t.txn_start_timestamp_ms;
                self.partitions.extend(t.partitions.iter().cloned());
            }
            TxnState::PrepareAbort | TxnState::PrepareCommit => {
                let allowed_empty_abort = to == TxnState::PrepareAbort
                    && tv2
                    && matches!(
                        self.state,
                        TxnState::Empty | TxnState::CompleteCommit | TxnState::CompleteAbort
                    );
                assert!(
                    self.valid_producer_epoch(t)
                        && self.partitions == t.partitions
                        && self.txn_timeout_ms == t.txn_timeout_ms
                        && (self.txn_start_timestamp_ms == t.txn_start_timestamp_ms
                            || allowed_empty_abort),
                    "{}: invalid EndTxn transition {t:?}",
                    self.transactional_id
                );
                if tv2 {
                    self.producer_epoch = t.producer_epoch;
                    self.last_producer_epoch = t.last_producer_epoch;
                    self.next_producer_id = t.next_producer_id;
                    self.txn_start_timestamp_ms = t.txn_start_timestamp_ms;
                }
            }
            TxnState::CompleteAbort | TxnState::CompleteCommit => {
                assert!(
                    self.valid_producer_epoch(t)
                        && self.txn_timeout_ms == t.txn_timeout_ms
                        && t.txn_start_timestamp_ms != -1,
                    "{}: invalid completion {t:?}",
                    self.transactional_id
                );
                self.txn_start_timestamp_ms = t.txn_start_timestamp_ms;
                self.partitions.clear();
                if tv2 {
                    self.producer_epoch = t.producer_epoch;
                    self.last_producer_epoch = t.last_producer_epoch;
                    self.previous_producer_id = t.prev_producer_id;
                    self.producer_id = t.producer_id;
                    self.next_producer_id = t.next_producer_id;
                }
            }
            TxnState::PrepareEpochFence | TxnState::Dead => panic!(
                "{}: {to:?} is never completed (the fence becomes an abort, Dead a removal)",
                self.transactional_id
            ),
        }
        self.client_transaction_version = t.client_transaction_version;
        self.txn_last_update_timestamp_ms = t.txn_last_update_timestamp_ms;
        self.pending_state = None;
        self.state = to;
    }

    fn valid_producer_epoch(&self, t: &Transit) -> bool {
        let tv2 = supports_epoch_bump(t.client_transaction_version);
        match t.state {
            TxnState::CompleteCommit | TxnState::CompleteAbort if tv2 && t.producer_epoch == 0 => {
                t.last_producer_epoch == self.last_producer_epoch
                    && t.prev_producer_id == self.producer_id
            }
            TxnState::PrepareCommit | TxnState::PrepareAbort if tv2 => {
                t.last_producer_epoch == self.producer_epoch && t.producer_id == self.producer_id
            }
            _ => t.producer_epoch == self.producer_epoch && t.producer_id == self.producer_id,
        }
    }

    fn valid_epoch_bump(&self, t: &Transit) -> bool {
        i32::from(t.producer_epoch) == i32::from(self.producer_epoch) + 1
            || (t.producer_epoch == 0 && t.producer_id != self.producer_id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tp(t: &str, p: i32) -> TopicPartition {
        TopicPartition::new(t, p)
    }

    fn fresh() -> TxnMetadata {
        TxnMetadata::new("t".into(), 10, 60_000, 0)
    }

    fn apply(m: &mut TxnMetadata, t: Transit) -> Transit {
        m.complete_transition(&t);
        t
    }

    #[test]
    fn ids_and_names_round_trip() {
        for s in TxnState::ALL {
            assert_eq!(TxnState::from_id(s.id()), Some(s));
            assert_eq!(TxnState::from_name(s.name()), Some(s));
        }
        assert_eq!(TxnState::from_id(8), None);
        assert_eq!(
            TxnState::from_name("ongoing"),
            None,
            "names are case-sensitive"
        );
    }

    #[test]
    fn tv1_lifecycle_keeps_the_epoch_through_the_transaction() {
        let mut m = fresh();
        let t = m.prepare_increment_producer_epoch(60_000, None, 1).unwrap();
        assert_eq!((t.producer_epoch, t.last_producer_epoch), (0, -1));
        apply(&mut m, t);
        let added = BTreeSet::from([tp("a", 0)]);
        let t = m.prepare_add_partitions(&added, 2, 0);
        apply(&mut m, t);
        assert_eq!(m.state, TxnState::Ongoing);
        assert_eq!(m.txn_start_timestamp_ms, 2);
        let t = m.prepare_abort_or_commit(TxnState::PrepareCommit, 0, NO_PRODUCER_ID, 3, false);
        assert_eq!(t.producer_epoch, 0);
        apply(&mut m, t);
        m.remove_partition(&tp("a", 0));
        let t = m.prepare_complete(4);
        apply(&mut m, t);
        assert_eq!((m.state, m.producer_epoch), (TxnState::CompleteCommit, 0));
        assert!(m.partitions.is_empty());
    }

    #[test]
    fn tv2_bumps_the_epoch_at_every_end_and_rotates_at_exhaustion() {
        let mut m = fresh();
        let t = m.prepare_increment_producer_epoch(60_000, None, 1).unwrap();
        apply(&mut m, t);
        m.producer_epoch = EPOCH_EXHAUSTED_AT - 1;
        let t = m.prepare_add_partitions(&BTreeSet::from([tp("a", 0)]), 2, 2);
        apply(&mut m, t);
        let t = m.prepare_abort_or_commit(TxnState::PrepareAbort, 2, NO_PRODUCER_ID, 3, false);
        assert_eq!(
            (t.producer_epoch, t.last_producer_epoch),
            (EPOCH_EXHAUSTED_AT, EPOCH_EXHAUSTED_AT - 1)
        );
        apply(&mut m, t);
        assert!(m.is_epoch_exhausted());
        let t = m.prepare_complete(4);
        apply(&mut m, t);
        // Next transaction at exhaustion: the end moves to the next producer id.
        let t = m.prepare_add_partitions(&BTreeSet::from([tp("a", 0)]), 5, 2);
        apply(&mut m, t);
        m.producer_epoch = EPOCH_EXHAUSTED_AT;
        m.last_producer_epoch = EPOCH_EXHAUSTED_AT - 1;
        let t = m.prepare_abort_or_commit(TxnState::PrepareCommit, 2, 77, 6, false);
        assert_eq!(t.producer_epoch, i16::MAX);
        apply(&mut m, t);
        m.remove_partition(&tp("a", 0));
        let t = m.prepare_complete(7);
        assert_eq!((t.producer_id, t.producer_epoch), (77, 0));
        apply(&mut m, t);
        assert_eq!(
            (m.producer_id, m.producer_epoch, m.previous_producer_id),
            (77, 0, 10)
        );
    }

    #[test]
    fn kip360_epoch_checks() {
        let mut m = fresh();
        let t = m.prepare_increment_producer_epoch(1, None, 1).unwrap();
        apply(&mut m, t);
        let t = m.prepare_increment_producer_epoch(1, Some(0), 2).unwrap();
        assert_eq!((t.producer_epoch, t.last_producer_epoch), (1, 0));
        apply(&mut m, t);
        // Retry with the previous epoch: same answer, no bump.
        let t = m.prepare_increment_producer_epoch(1, Some(0), 3).unwrap();
        assert_eq!((t.producer_epoch, t.last_producer_epoch), (1, 0));
        m.abort_transition();
        assert_eq!(
            m.prepare_increment_producer_epoch(1, Some(7), 3),
            Err(crate::codes::PRODUCER_FENCED)
        );
        assert!(!m.pending());
    }

    #[test]
    #[should_panic(expected = "not a valid transition")]
    fn commit_from_empty_is_a_bug() {
        let mut m = fresh();
        m.producer_epoch = 0;
        m.prepare_abort_or_commit(TxnState::PrepareCommit, 0, NO_PRODUCER_ID, 1, false);
    }

    #[test]
    #[should_panic(expected = "is pending")]
    fn one_pending_transition_at_a_time() {
        let mut m = fresh();
        let _ = m.prepare_increment_producer_epoch(1, None, 1);
        let _ = m.prepare_dead();
    }

    #[test]
    fn every_transition_table_entry() {
        use TxnState::*;
        // Kafka 4.1's validPreviousStates, written out as (from, to) pairs.
        let kafka: BTreeSet<(TxnState, TxnState)> = [
            (Empty, Empty),
            (CompleteCommit, Empty),
            (CompleteAbort, Empty),
            (Ongoing, Ongoing),
            (Empty, Ongoing),
            (CompleteCommit, Ongoing),
            (CompleteAbort, Ongoing),
            (Ongoing, PrepareCommit),
            (Ongoing, PrepareAbort),
            (PrepareEpochFence, PrepareAbort),
            (Empty, PrepareAbort),
            (CompleteCommit, PrepareAbort),
            (CompleteAbort, PrepareAbort),
            (PrepareCommit, CompleteCommit),
            (PrepareAbort, CompleteAbort),
            (Empty, Dead),
            (CompleteAbort, Dead),
            (CompleteCommit, Dead),
            (Ongoing, PrepareEpochFence),
        ]
        .into_iter()
        .collect();
        for to in TxnState::ALL {
            for from in TxnState::ALL {
                let allowed = to.valid_previous().contains(&from);
                assert_eq!(allowed, kafka.contains(&(from, to)), "{from:?} -> {to:?}");
                if allowed {
                    // prepare accepts every allowed pair (refusals: the should_panic tests).
                    let mut m = fresh();
                    m.state = from;
                    m.producer_epoch = 3;
                    let t = m.prepare(to, 10, -1, 3, -1, 1, BTreeSet::new(), -1, 0, 0);
                    assert_eq!((t.state, m.pending_state), (to, Some(to)));
                }
            }
        }
    }
}

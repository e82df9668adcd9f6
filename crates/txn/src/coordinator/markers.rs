//! Transaction markers: sending them, their results, retries, and the Complete* write.
//!
//! Owns the coordinator half of Kafka's `TransactionMarkerChannelManager` and its completion
//! handler. Once Prepare* is durable the Complete* transition is prepared at once (so the id
//! stays busy: EndTxn, InitProducerId and AddPartitionsToTxn answer CONCURRENT_TRANSACTIONS),
//! one [`Effect::SendMarkers`](super::Effect::SendMarkers) names every partition still
//! unmarked, each acknowledged partition leaves the transaction, failed ones are sent again
//! after a backoff, and Complete* is appended only when no partition is left. Must never
//! write Complete* while a partition lacks its marker, nor write markers into logs itself
//! (the driver sends WriteTxnMarkers to each leader, this broker included).

use std::collections::{BTreeMap, BTreeSet};

use super::{Coordinator, Effect, MarkerId, Then};
use crate::codes;
use crate::state::{TopicPartition, Transit};

/// How writing one partition's marker ended, as the driver reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MarkerResult {
    /// The leader appended the marker (acks=all).
    Written,
    /// Send again later: NOT_LEADER_OR_FOLLOWER, UNKNOWN_TOPIC_OR_PARTITION, NOT_ENOUGH_REPLICAS
    /// (also after append), REQUEST_TIMED_OUT, KAFKA_STORAGE_ERROR, an unreachable leader.
    Retriable,
    /// The partition is gone (no leader because the topic was deleted), or the leader cannot
    /// hold markers (UNSUPPORTED_FOR_MESSAGE_FORMAT, UNSUPPORTED_VERSION): nothing to mark.
    PartitionGone,
    /// INVALID_PRODUCER_EPOCH or TRANSACTION_COORDINATOR_FENCED: a newer producer or coordinator
    /// owns this transaction; stop sending its markers.
    Fenced,
}

impl MarkerResult {
    /// Kafka's reading of a WriteTxnMarkers partition error code. Codes Kafka treats as fatal
    /// (CORRUPT_MESSAGE, MESSAGE_TOO_LARGE, RECORD_LIST_TOO_LARGE, INVALID_REQUIRED_ACKS, and
    /// unknown ones) stop its marker thread; here they are retried, and the driver logs them.
    pub fn from_error_code(code: i16) -> MarkerResult {
        match code {
            codes::NONE => MarkerResult::Written,
            codes::UNSUPPORTED_FOR_MESSAGE_FORMAT | codes::UNSUPPORTED_VERSION => {
                MarkerResult::PartitionGone
            }
            codes::INVALID_PRODUCER_EPOCH | codes::TRANSACTION_COORDINATOR_FENCED => {
                MarkerResult::Fenced
            }
            _ => MarkerResult::Retriable,
        }
    }
}

/// One transaction whose markers are being written.
#[derive(Debug)]
pub(super) struct PendingMarkers {
    coordinator_epoch: i32,
    partition: i32,
    producer_id: i64,
    producer_epoch: i16,
    commit: bool,
    /// The prepared Complete* transition, appended once every marker is written.
    complete: Transit,
    in_flight: BTreeMap<MarkerId, BTreeSet<TopicPartition>>,
    retry: BTreeSet<TopicPartition>,
    /// When to send `retry` again, or to retry the Complete* append.
    retry_at_ms: Option<i64>,
    /// The Complete* append is in flight.
    completing: bool,
}

/// All transactions with markers in flight, by transactional id.
#[derive(Debug, Default)]
pub(super) struct Markers {
    by_id: BTreeMap<String, PendingMarkers>,
    owner: BTreeMap<MarkerId, String>,
    next_marker_id: u64,
}

impl Markers {
    pub(super) fn len(&self) -> usize {
        self.by_id.len()
    }

    pub(super) fn remove(&mut self, transactional_id: &str) {
        if let Some(p) = self.by_id.remove(transactional_id) {
            for id in p.in_flight.keys() {
                self.owner.remove(id);
            }
        }
    }

    pub(super) fn next_retry_ms(&self) -> Option<i64> {
        self.by_id.values().filter_map(|p| p.retry_at_ms).min()
    }
}

impl Coordinator {
    /// Starts writing the markers of `transactional_id`, which is in a durable Prepare*.
    pub(super) fn start_markers(
        &mut self,
        transactional_id: &str,
        partition: i32,
        coordinator_epoch: i32,
        now_ms: i64,
    ) {
        let meta = self.txns.get_mut(transactional_id).expect("present");
        let commit = meta.state == crate::TxnState::PrepareCommit;
        let (producer_id, producer_epoch) = (meta.producer_id, meta.producer_epoch);
        let partitions = meta.partitions.clone();
        let complete = meta.prepare_complete(now_ms);
        self.markers.remove(transactional_id);
        self.markers.by_id.insert(
            transactional_id.to_string(),
            PendingMarkers {
                coordinator_epoch,
                partition,
                producer_id,
                producer_epoch,
                commit,
                complete,
                in_flight: BTreeMap::new(),
                retry: BTreeSet::new(),
                retry_at_ms: None,
                completing: false,
            },
        );
        if partitions.is_empty() {
            self.write_completion(transactional_id, now_ms);
        } else {
            self.send_markers(transactional_id, partitions);
        }
    }

    fn send_markers(&mut self, transactional_id: &str, partitions: BTreeSet<TopicPartition>) {
        let marker_id = MarkerId(self.markers.next_marker_id);
        self.markers.next_marker_id += 1;
        let p = self
            .markers
            .by_id
            .get_mut(transactional_id)
            .expect("sending for a pending transaction");
        p.in_flight.insert(marker_id, partitions.clone());
        self.markers
            .owner
            .insert(marker_id, transactional_id.to_string());
        self.effects.push(Effect::SendMarkers {
            marker_id,
            transactional_id: transactional_id.to_string(),
            producer_id: p.producer_id,
            producer_epoch: p.producer_epoch,
            coordinator_epoch: p.coordinator_epoch,
            commit: p.commit,
            partitions: partitions.into_iter().collect(),
        });
    }

    /// The driver reports the outcome of `marker_id`, one result per partition it named
    /// (a partition left out counts as retriable). Results for a transaction this coordinator
    /// no longer tracks (unloaded, fenced) are ignored.
    pub fn on_markers_complete(
        &mut self,
        marker_id: MarkerId,
        results: Vec<(TopicPartition, MarkerResult)>,
        now_ms: i64,
    ) -> Vec<Effect> {
        let Some(transactional_id) = self.markers.owner.remove(&marker_id) else {
            return std::mem::take(&mut self.effects);
        };
        let p = self
            .markers
            .by_id
            .get_mut(&transactional_id)
            .expect("an owned marker id has its transaction");
        let mut sent = p
            .in_flight
            .remove(&marker_id)
            .expect("an owned marker id is in flight");
        let meta = self
            .txns
            .get_mut(&transactional_id)
            .expect("a transaction with markers is loaded");
        let mut fenced = false;
        for (tp, result) in results {
            if !sent.remove(&tp) {
                continue; // not a partition of this send
            }
            match result {
                MarkerResult::Written | MarkerResult::PartitionGone => meta.remove_partition(&tp),
                MarkerResult::Retriable => {
                    p.retry.insert(tp);
                }
                MarkerResult::Fenced => fenced = true,
            }
        }
        p.retry.extend(sent);
        if fenced {
            // Kafka drops the transaction's markers; it stays in Prepare* (with Complete*
            // pending) until a coordinator loads the partition again.
            self.markers.remove(&transactional_id);
        } else if !p.retry.is_empty() {
            p.retry_at_ms
                .get_or_insert(now_ms + self.config.marker_retry_backoff_ms);
        } else if p.in_flight.is_empty() && meta.partitions.is_empty() {
            self.write_completion(&transactional_id, now_ms);
        }
        std::mem::take(&mut self.effects)
    }

    /// Appends the prepared Complete* record.
    fn write_completion(&mut self, transactional_id: &str, now_ms: i64) {
        let p = self
            .markers
            .by_id
            .get_mut(transactional_id)
            .expect("completing a pending transaction");
        assert!(
            p.in_flight.is_empty() && p.retry.is_empty(),
            "markers outstanding"
        );
        p.completing = true;
        p.retry_at_ms = None;
        let (partition, coordinator_epoch, transit) =
            (p.partition, p.coordinator_epoch, p.complete.clone());
        self.append_transition(
            transactional_id,
            partition,
            coordinator_epoch,
            transit,
            Then::Complete,
            now_ms,
        );
    }

    /// The Complete* append ended: done, or retried after the backoff (Kafka's retry queue,
    /// for COORDINATOR_NOT_AVAILABLE; other errors stop Kafka's marker thread, we retry them
    /// too). NOT_COORDINATOR means the partition moved: its next coordinator finishes the
    /// transaction from the Prepare* record.
    pub(super) fn after_complete(&mut self, transactional_id: &str, error: i16, now_ms: i64) {
        let retry = error != codes::NONE && error != codes::NOT_COORDINATOR;
        match self.markers.by_id.get_mut(transactional_id) {
            Some(p) if retry && p.completing => {
                p.completing = false;
                p.retry_at_ms = Some(now_ms + self.config.marker_retry_backoff_ms);
            }
            Some(_) => self.markers.remove(transactional_id),
            None => {}
        }
    }

    /// Resends due marker retries and Complete* appends.
    pub(super) fn run_marker_retries(&mut self, now_ms: i64) {
        let due: Vec<String> = self
            .markers
            .by_id
            .iter()
            .filter(|(_, p)| p.retry_at_ms.is_some_and(|t| t <= now_ms))
            .map(|(id, _)| id.clone())
            .collect();
        for id in due {
            let p = self.markers.by_id.get_mut(&id).expect("listed above");
            p.retry_at_ms = None;
            let retry = std::mem::take(&mut p.retry);
            if !retry.is_empty() {
                self.send_markers(&id, retry);
            } else if p.in_flight.is_empty() && !p.completing {
                self.write_completion(&id, now_ms);
            }
        }
    }
}

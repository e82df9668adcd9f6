//! Time: aborting transactions past their timeout, expiring idle ids, marker retries.
//!
//! Owns the coordinator's periodic work, Kafka's two scheduled tasks
//! (`transaction.abort.timed.out.transaction.cleanup.interval.ms` and
//! `transaction.remove.expired.transaction.cleanup.interval.ms`) plus the marker backoff.
//! Never reads a clock: `tick(now_ms)` runs whatever is due at `now_ms`, and
//! `next_deadline_ms()` says when to call it next.

use super::end_txn::EndTxnCaller;
use super::{AfterAppend, Coordinator, Effect};
use crate::codes;
use crate::records::{self, TxnRecord};
use crate::state::TxnState;

/// Tombstones per append: keeps each expiry batch far below `max.message.bytes` (1 MiB) even
/// with the longest ids Kafka clients use.
const TOMBSTONES_PER_APPEND_MAX: usize = 1_000;

impl Coordinator {
    /// The earliest time at which `tick` has work, if any.
    pub fn next_deadline_ms(&self) -> Option<i64> {
        [
            self.next_abort_check_ms,
            self.next_expire_check_ms,
            self.markers.next_retry_ms(),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// Runs everything due at `now_ms`.
    pub fn tick(&mut self, now_ms: i64) -> Vec<Effect> {
        self.run_marker_retries(now_ms);
        if self.next_abort_check_ms.is_some_and(|t| t <= now_ms) {
            self.abort_timed_out_transactions(now_ms);
            self.next_abort_check_ms =
                Some(now_ms + self.config.abort_timed_out_transaction_cleanup_interval_ms);
        }
        if self.next_expire_check_ms.is_some_and(|t| t <= now_ms) {
            self.expire_transactional_ids(now_ms);
            self.next_expire_check_ms =
                Some(now_ms + self.config.remove_expired_transaction_cleanup_interval_ms);
        }
        std::mem::take(&mut self.effects)
    }

    /// Ongoing transactions older than their timeout are fenced (epoch + 1, so the producer's
    /// next request fails) and aborted with the finalized transaction version, as Kafka does.
    fn abort_timed_out_transactions(&mut self, now_ms: i64) {
        let due: Vec<String> = self
            .txns
            .values()
            .filter(|m| {
                m.pending_state.is_none()
                    && m.state == TxnState::Ongoing
                    && m.txn_start_timestamp_ms
                        .saturating_add(i64::from(m.txn_timeout_ms))
                        < now_ms
            })
            .map(|m| m.transactional_id.clone())
            .collect();
        for id in due {
            let meta = self.txns.get_mut(&id).expect("listed above");
            let producer_id = meta.producer_id;
            if meta.producer_epoch == i16::MAX {
                // No epoch left to fence with: abort at the same epoch (TV1 rules).
                let epoch = meta.producer_epoch;
                self.end_transaction(
                    &id,
                    producer_id,
                    epoch,
                    false,
                    0,
                    EndTxnCaller::Timeout,
                    now_ms,
                );
                continue;
            }
            let fence = meta.prepare_fence_producer_epoch();
            let tv = self.config.transaction_version;
            self.end_transaction(
                &id,
                producer_id,
                fence.producer_epoch,
                false,
                tv,
                EndTxnCaller::Timeout,
                now_ms,
            );
        }
    }

    /// Ids idle past `transactional.id.expiration.ms` in Empty or Complete* are tombstoned,
    /// and forgotten once the tombstones are durable.
    fn expire_transactional_ids(&mut self, now_ms: i64) {
        let cutoff = now_ms.saturating_sub(self.config.transactional_id_expiration_ms);
        let mut by_partition: std::collections::BTreeMap<i32, Vec<String>> = Default::default();
        for m in self.txns.values() {
            if m.pending_state.is_none()
                && m.state.expiration_allowed()
                && m.txn_last_update_timestamp_ms <= cutoff
            {
                by_partition
                    .entry(self.partition_for(&m.transactional_id))
                    .or_default()
                    .push(m.transactional_id.clone());
            }
        }
        for (partition, ids) in by_partition {
            let Some((coordinator_epoch, _)) = self.loaded(partition) else {
                continue;
            };
            for chunk in ids.chunks(TOMBSTONES_PER_APPEND_MAX) {
                let mut expired = Vec::with_capacity(chunk.len());
                let mut tombstones = Vec::with_capacity(chunk.len());
                for id in chunk {
                    let meta = self.txns.get_mut(id).expect("listed above");
                    let dead = meta.prepare_dead();
                    expired.push((id.clone(), dead.producer_epoch));
                    tombstones.push(TxnRecord {
                        key: records::encode_key(id),
                        value: None,
                        timestamp_ms: now_ms,
                    });
                }
                self.append(
                    partition,
                    coordinator_epoch,
                    tombstones,
                    AfterAppend::Expire { ids: expired },
                );
            }
        }
    }

    /// The tombstones' append ended: forget the ids, or keep them (pending cleared) on failure.
    pub(super) fn complete_expiry(&mut self, ids: Vec<(String, i16)>, current: bool, error: i16) {
        if !current {
            return;
        }
        for (id, epoch) in ids {
            let Some(meta) = self.txns.get_mut(&id) else {
                continue;
            };
            if error == codes::NONE
                && meta.pending_state == Some(TxnState::Dead)
                && meta.producer_epoch == epoch
            {
                self.txns.remove(&id);
            } else {
                meta.abort_transition();
            }
        }
    }
}

//! Transaction coordinator settings, with Kafka's names and defaults.
//!
//! Owns the tunable numbers and their validation. Never read from the environment here: the
//! broker builds a `TxnConfig` from its own configuration and hands it in.

use crate::limits;
use crate::TxnError;

/// `transaction.state.log.num.partitions`: partitions of `__transaction_state`.
pub const TRANSACTION_STATE_PARTITIONS_DEFAULT: i32 = 50;

/// Transaction coordinator configuration. Field names follow Kafka's broker settings.
#[derive(Clone, Debug)]
pub struct TxnConfig {
    /// `transaction.state.log.num.partitions`; changing it after ids exist moves them, as in
    /// Kafka.
    pub state_log_partitions: i32,
    /// `offsets.topic.num.partitions`: AddOffsetsToTxn adds the group's `__consumer_offsets`
    /// partition to the transaction.
    pub offsets_topic_partitions: i32,
    /// `transaction.max.timeout.ms`: the longest `transaction.timeout.ms` a producer may ask
    /// for (InitProducerId answers INVALID_TRANSACTION_TIMEOUT above it).
    pub max_timeout_ms: i32,
    /// `transactional.id.expiration.ms`: ids idle (no transaction, no update) this long are
    /// tombstoned.
    pub transactional_id_expiration_ms: i64,
    /// `transaction.abort.timed.out.transaction.cleanup.interval.ms`: how often transactions
    /// past their timeout are looked for and aborted.
    pub abort_timed_out_transaction_cleanup_interval_ms: i64,
    /// `transaction.remove.expired.transaction.cleanup.interval.ms`: how often expired ids
    /// are looked for.
    pub remove_expired_transaction_cleanup_interval_ms: i64,
    /// `transaction.version` as finalized: 0-2. Decides the transaction version of
    /// coordinator-initiated aborts (timeouts, InitProducerId fencing), as in Kafka.
    pub transaction_version: i16,
    /// Backoff before markers that failed retriably (or a Complete* append that found the log
    /// unavailable) are sent again: Kafka's inter-broker `retry.backoff.ms` default.
    pub marker_retry_backoff_ms: i64,
    /// Ids held at most ([`limits::TRANSACTIONAL_IDS_MAX`] caps it).
    pub transactional_ids_max: usize,
    /// Partitions per transaction at most ([`limits::PARTITIONS_PER_TRANSACTION_MAX`] caps it).
    pub partitions_per_transaction_max: usize,
    /// Transactions with markers in flight at most
    /// ([`limits::PENDING_MARKER_TRANSACTIONS_MAX`] caps it).
    pub pending_marker_transactions_max: usize,
    /// Appends in flight at most ([`limits::PENDING_APPENDS_MAX`] caps it).
    pub pending_appends_max: usize,
}

impl Default for TxnConfig {
    fn default() -> Self {
        TxnConfig {
            state_log_partitions: TRANSACTION_STATE_PARTITIONS_DEFAULT,
            offsets_topic_partitions: josefine_group::OFFSETS_TOPIC_PARTITIONS_DEFAULT,
            max_timeout_ms: 900_000,
            transactional_id_expiration_ms: 604_800_000,
            abort_timed_out_transaction_cleanup_interval_ms: 10_000,
            remove_expired_transaction_cleanup_interval_ms: 3_600_000,
            transaction_version: 2,
            marker_retry_backoff_ms: 100,
            transactional_ids_max: limits::TRANSACTIONAL_IDS_MAX,
            partitions_per_transaction_max: limits::PARTITIONS_PER_TRANSACTION_MAX,
            pending_marker_transactions_max: limits::PENDING_MARKER_TRANSACTIONS_MAX,
            pending_appends_max: limits::PENDING_APPENDS_MAX,
        }
    }
}

impl TxnConfig {
    /// Checks the settings are usable; the broker should fail at startup otherwise.
    pub fn validate(&self) -> Result<(), TxnError> {
        let bad = |what: &str| Err(TxnError::InvalidConfig(what.to_string()));
        if self.state_log_partitions <= 0 || self.offsets_topic_partitions <= 0 {
            return bad("transaction.state.log.num.partitions and offsets.topic.num.partitions must be positive");
        }
        if self.max_timeout_ms <= 0 {
            return bad("transaction.max.timeout.ms must be positive");
        }
        if self.transactional_id_expiration_ms <= 0 {
            return bad("transactional.id.expiration.ms must be positive");
        }
        if self.abort_timed_out_transaction_cleanup_interval_ms <= 0
            || self.remove_expired_transaction_cleanup_interval_ms <= 0
            || self.marker_retry_backoff_ms <= 0
        {
            return bad("cleanup intervals and the marker retry backoff must be positive");
        }
        if !(0..=2).contains(&self.transaction_version) {
            return bad("transaction.version must be 0, 1 or 2");
        }
        let within = |v: usize, max: usize| v > 0 && v <= max;
        if !within(self.transactional_ids_max, limits::TRANSACTIONAL_IDS_MAX)
            || !within(
                self.partitions_per_transaction_max,
                limits::PARTITIONS_PER_TRANSACTION_MAX,
            )
            || !within(
                self.pending_marker_transactions_max,
                limits::PENDING_MARKER_TRANSACTIONS_MAX,
            )
            || !within(self.pending_appends_max, limits::PENDING_APPENDS_MAX)
        {
            return bad("coordinator limits must be positive and within crates/txn/src/limits.rs");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_kafkas_and_valid() {
        let c = TxnConfig::default();
        c.validate().unwrap();
        assert_eq!(c.max_timeout_ms, 900_000);
        assert_eq!(c.transactional_id_expiration_ms, 604_800_000);
        assert_eq!(c.abort_timed_out_transaction_cleanup_interval_ms, 10_000);
        assert_eq!(c.remove_expired_transaction_cleanup_interval_ms, 3_600_000);
        assert_eq!(c.state_log_partitions, 50);
        let mut bad = c.clone();
        bad.pending_appends_max = limits::PENDING_APPENDS_MAX + 1;
        assert!(bad.validate().is_err());
        let mut bad = c;
        bad.transaction_version = 3;
        assert!(bad.validate().is_err());
    }
}

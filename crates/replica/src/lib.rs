//! Partition replication rules as a pure state machine: the leader's high watermark and ISR
//! changes, and the epoch arithmetic of fetch-driven truncation.
//!
//! Owns: the decisions Kafka 4.1 makes in `Partition.scala` (`maybeIncrementLeaderHW`,
//! `maybeExpandIsr`, `maybeShrinkIsr`, `getOutOfSyncReplicas`, the AlterPartition in-flight
//! states of KIP-497), `Replica.scala` (a follower's last caught-up time), the leader's
//! diverging-epoch answer (`Partition.readRecords`) and the follower's truncation offset
//! (`AbstractFetcherThread.getOffsetTruncationState`).
//!
//! Must never: do I/O, read a clock, draw randomness or depend on another crate. Log positions,
//! broker eligibility and `now_ms` come in as arguments; what the caller must do comes back as
//! [`Effect`]s. That is what lets the broker runtime (`crates/broker/src/replication/`) and the
//! simulator (`crates/sim`, `--replication`) run exactly the same rules.
//!
//! # Driving a [`LeaderState`] (what the broker does)
//!
//! - Becoming leader at a new leader epoch: the log first assigns `(leader_epoch, log end)` to
//!   its epoch cache, then [`LeaderState::new`] with that log end as `epoch_start_offset` and
//!   the log's stored high watermark, then [`LeaderState::tick`] once (Kafka's `makeLeader`
//!   ends with `maybeIncrementLeaderHW`: a leader alone in a large enough ISR moves its HW
//!   at once). A later leader epoch is a new `LeaderState`.
//! - Committed metadata for the partition at the same leader epoch: [`LeaderState::on_metadata`].
//! - After each local append: [`LeaderState::on_local_append`].
//! - After serving a replica fetch *that did not answer a diverging epoch and was not refused*
//!   (a fetch whose broker epoch is older than the follower's registration is served as an
//!   ordinary fetch and never passed in): [`LeaderState::on_follower_fetch`] with the leader's
//!   log end as it was before the read.
//! - Periodically (Kafka: every `replica.lag.time.max.ms / 2`): [`LeaderState::tick`].
//! - Every [`Effect::ProposeIsr`] is sent as one AlterPartition and answered by exactly one
//!   [`LeaderState::on_alter_partition_result`]; until then no other proposal is made.
//! - [`Effect::HighWatermark`]: store it on the log, then wake acks=all produces
//!   ([`LeaderState::acks_all_status`]) and consumer long-polls.
//!
//! Followers use [`truncation_offset`] and [`follower_high_watermark`]; the leader answers
//! fetches with [`check_fetch_epoch`] / [`diverging_epoch`].

mod epochs;
mod leader;

pub use epochs::{
    check_fetch_epoch, diverging_epoch, follower_high_watermark, truncation_offset, FetchEpochCheck,
};
pub use leader::{AckStatus, LeaderState};

/// The topic/broker settings the rules depend on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReplicaSettings {
    /// `replica.lag.time.max.ms`: a follower not caught up with the leader's log end for longer
    /// than this leaves the ISR.
    pub replica_lag_time_max_ms: i64,
    /// `min.insync.replicas` (topic config): acks=all admission and HW advancement need a
    /// committed ISR at least this large (capped at the replica count, as Kafka).
    pub min_insync_replicas: i32,
}

/// What the caller must do after a call into [`LeaderState`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Effect {
    /// The high watermark moved up to this offset: set it on the log, wake waiters.
    HighWatermark(i64),
    /// Send AlterPartition with this ISR (replica id, broker epoch; -1 = unknown, which the
    /// controller accepts without the epoch check) at these epochs.
    ProposeIsr {
        leader_epoch: i32,
        partition_epoch: i32,
        new_isr: Vec<(i32, i64)>,
    },
}

/// Why an AlterPartition did not commit (the runtime maps Kafka error codes onto these).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AlterError {
    /// Timeout, NOT_CONTROLLER, connection lost, an unexpected error: the same proposal is
    /// sent again.
    Retriable,
    /// FENCED_LEADER_EPOCH / INVALID_UPDATE_VERSION: our view is stale; the proposal stays
    /// pending (ISR changes paused) until newer metadata arrives.
    Fenced,
    /// INELIGIBLE_REPLICA / OPERATION_NOT_ATTEMPTED: the controller states it did not apply
    /// the change at the current partition epoch; back to the committed ISR.
    Ineligible,
    /// Anything else that will not succeed by retrying (UNKNOWN_TOPIC_OR_PARTITION,
    /// INVALID_REQUEST, NEW_LEADER_ELECTED): wait for metadata, as Fenced.
    Other,
}

/// acks=all refused before appending: the committed ISR is below `min.insync.replicas`
/// (Kafka NOT_ENOUGH_REPLICAS).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NotEnoughReplicas {
    pub isr_size: usize,
    pub min_insync_replicas: usize,
}

impl std::fmt::Display for NotEnoughReplicas {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "the in-sync replica set has {} members, fewer than min.insync.replicas {}",
            self.isr_size, self.min_insync_replicas
        )
    }
}

impl std::error::Error for NotEnoughReplicas {}

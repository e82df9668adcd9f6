//! The leader side of one partition at one leader epoch: follower fetch state, the high
//! watermark and ISR change proposals.
//!
//! Owns Kafka 4.1's rules (`Partition.scala`, `Replica.scala`):
//! - HW = min log end over the leader, the *maximal* ISR (committed ISR plus a pending
//!   addition; a pending removal still counts until it is committed, KIP-497) and every
//!   follower that is caught up and ISR-eligible; it only moves up, and not at all while the
//!   committed ISR is smaller than `min.insync.replicas`.
//! - Expand: a follower outside the committed ISR whose log end is >= HW and >= the start of
//!   this leader epoch, eligible (unfenced, not shutting down, broker epoch = registration).
//! - Shrink: committed ISR members not caught up with the leader's log end for
//!   `replica.lag.time.max.ms` (last caught-up time as `Replica.updateFetchStateOrThrow`).
//! - One AlterPartition in flight; its outcome or newer committed metadata resolves it.
//!
//! Must never: compute the HW from an ISR smaller than the one the controller may have
//! committed (a pending shrink counts the removed members; a pending expand counts the new
//! one), lower the HW, or have two proposals in flight (a stale answer could then be taken
//! for the newer proposal).

use std::collections::BTreeMap;

use crate::{AlterError, Effect, NotEnoughReplicas, ReplicaSettings};

/// What the leader knows about one follower, from its fetches (Kafka `ReplicaState`).
#[derive(Clone, Debug)]
struct FollowerState {
    /// The fetch offset of its last counted fetch; `None` until the first one this epoch.
    log_end: Option<i64>,
    /// The leader's log end at the previous fetch (-1 before any), for the caught-up time.
    last_fetch_leader_log_end: i64,
    last_fetch_time_ms: i64,
    /// The largest time t at which its fetch offset was >= the leader's log end at t.
    last_caught_up_time_ms: i64,
    broker_epoch: Option<i64>,
    /// As the caller judged it at the last fetch (unfenced, not shutting down, epoch matches).
    eligible: bool,
}

impl FollowerState {
    /// Kafka `resetReplicaState` for a new leader: ISR members count as just caught up.
    fn new(in_isr: bool, now_ms: i64) -> FollowerState {
        FollowerState {
            log_end: None,
            last_fetch_leader_log_end: -1,
            last_fetch_time_ms: 0,
            last_caught_up_time_ms: if in_isr { now_ms } else { 0 },
            broker_epoch: None,
            eligible: false,
        }
    }

    /// Kafka `ReplicaState.isCaughtUp`.
    fn is_caught_up(&self, leader_log_end: i64, now_ms: i64, max_lag_ms: i64) -> bool {
        self.log_end == Some(leader_log_end) || now_ms - self.last_caught_up_time_ms <= max_lag_ms
    }
}

/// An ISR change sent to the controller and not yet known to be committed (KIP-497).
#[derive(Clone, Debug, PartialEq, Eq)]
enum Pending {
    /// Maximal ISR = committed ISR + this replica.
    Expand { replica: i32, proposal: Proposal },
    /// Maximal ISR = committed ISR (the removed members still count).
    Shrink { proposal: Proposal },
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct Proposal {
    partition_epoch: i32,
    new_isr: Vec<(i32, i64)>,
}

impl Pending {
    fn proposal(&self) -> &Proposal {
        match self {
            Pending::Expand { proposal, .. } | Pending::Shrink { proposal } => proposal,
        }
    }
}

/// Where an acks=all produce stands (Kafka `checkEnoughReplicasReachOffset`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AckStatus {
    /// The HW has not reached the batch yet: keep waiting.
    Waiting,
    /// The HW covers the batch: answer success.
    Done,
    /// The HW covers the batch but the maximal ISR fell below `min.insync.replicas` meanwhile:
    /// NOT_ENOUGH_REPLICAS_AFTER_APPEND.
    NotEnoughReplicasAfterAppend,
}

/// A partition this broker leads at one leader epoch.
#[derive(Clone, Debug)]
pub struct LeaderState {
    local_id: i32,
    local_broker_epoch: i64,
    leader_epoch: i32,
    partition_epoch: i32,
    replicas: Vec<i32>,
    /// The committed ISR (what the controller last told us, or confirmed).
    isr: Vec<i32>,
    pending: Option<Pending>,
    /// A ProposeIsr was emitted and its result has not come back (may outlive `pending` when
    /// newer metadata superseded the proposal).
    proposal_outstanding: bool,
    followers: BTreeMap<i32, FollowerState>,
    log_end: i64,
    high_watermark: i64,
    epoch_start_offset: i64,
    settings: ReplicaSettings,
}

impl LeaderState {
    /// A partition led here from now on at `leader_epoch`, whose log already has
    /// `(leader_epoch, epoch_start_offset)` in its epoch cache.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        local_id: i32,
        leader_epoch: i32,
        partition_epoch: i32,
        replicas: Vec<i32>,
        isr: Vec<i32>,
        log_end: i64,
        high_watermark: i64,
        epoch_start_offset: i64,
        settings: ReplicaSettings,
        now_ms: i64,
    ) -> LeaderState {
        assert!(
            high_watermark <= log_end,
            "high watermark {high_watermark} above the log end {log_end}"
        );
        let followers = replicas
            .iter()
            .filter(|&&id| id != local_id)
            .map(|&id| (id, FollowerState::new(isr.contains(&id), now_ms)))
            .collect();
        LeaderState {
            local_id,
            local_broker_epoch: -1,
            leader_epoch,
            partition_epoch,
            replicas,
            isr,
            pending: None,
            proposal_outstanding: false,
            followers,
            log_end,
            high_watermark,
            epoch_start_offset,
            settings,
        }
    }

    /// This broker's own epoch, sent with itself in proposed ISRs (default -1: unchecked).
    pub fn set_local_broker_epoch(&mut self, broker_epoch: i64) {
        self.local_broker_epoch = broker_epoch;
    }

    /// Committed metadata for this partition at the same leader epoch (ISR / replicas /
    /// partition epoch changed). Older partition epochs are ignored. A pending proposal is
    /// resolved once the partition epoch passes the one it was sent at: the controller either
    /// committed it (this metadata includes it) or will refuse it as stale.
    pub fn on_metadata(
        &mut self,
        partition_epoch: i32,
        replicas: Vec<i32>,
        isr: Vec<i32>,
        now_ms: i64,
    ) -> Vec<Effect> {
        if partition_epoch < self.partition_epoch {
            return Vec::new();
        }
        if self
            .pending
            .as_ref()
            .is_some_and(|p| partition_epoch > p.proposal().partition_epoch)
        {
            self.pending = None;
        }
        self.followers.retain(|id, _| replicas.contains(id));
        for &id in &replicas {
            if id != self.local_id {
                // A replica new to the assignment starts unknown (Kafka `Replica` with empty state).
                self.followers
                    .entry(id)
                    .or_insert_with(|| FollowerState::new(false, now_ms));
            }
        }
        self.partition_epoch = partition_epoch;
        self.replicas = replicas;
        self.isr = isr;
        self.maybe_increment_hw(now_ms).into_iter().collect()
    }

    /// The leader appended; `log_end` is its new log end.
    pub fn on_local_append(&mut self, log_end: i64, now_ms: i64) -> Vec<Effect> {
        self.observe_log_end(log_end);
        self.maybe_increment_hw(now_ms).into_iter().collect()
    }

    /// A replica fetch at `fetch_offset` (= the follower's log end) that was served records
    /// (not a diverging-epoch answer). `leader_log_end` is the leader's log end before the
    /// read. `eligible`: the caller checked unfenced, not shutting down, broker epoch == its
    /// registration epoch. Fetches from non-replicas, with a broker epoch older than one
    /// already seen from that replica, or beyond the leader's log end are not counted.
    pub fn on_follower_fetch(
        &mut self,
        replica_id: i32,
        broker_epoch: i64,
        fetch_offset: i64,
        leader_log_end: i64,
        eligible: bool,
        now_ms: i64,
    ) -> Vec<Effect> {
        self.observe_log_end(leader_log_end);
        let Some(follower) = self.followers.get_mut(&replica_id) else {
            return Vec::new();
        };
        let stale_epoch = broker_epoch != -1
            && follower
                .broker_epoch
                .is_some_and(|seen| seen > broker_epoch);
        if stale_epoch || fetch_offset > self.log_end {
            return Vec::new();
        }
        // Kafka `Replica.updateFetchStateOrThrow`.
        if fetch_offset >= leader_log_end {
            follower.last_caught_up_time_ms = follower.last_caught_up_time_ms.max(now_ms);
        } else if fetch_offset >= follower.last_fetch_leader_log_end {
            follower.last_caught_up_time_ms = follower
                .last_caught_up_time_ms
                .max(follower.last_fetch_time_ms);
        }
        follower.last_fetch_leader_log_end = follower.last_fetch_leader_log_end.max(leader_log_end);
        follower.last_fetch_time_ms = now_ms;
        follower.log_end = Some(fetch_offset);
        follower.broker_epoch = Some(broker_epoch);
        follower.eligible = eligible;

        let mut effects: Vec<Effect> = self.maybe_expand_isr(replica_id).into_iter().collect();
        effects.extend(self.maybe_increment_hw(now_ms));
        effects
    }

    /// The partition's `min.insync.replicas` changed (AlterConfigs): Kafka reads it from the
    /// log config at every check, so it applies from the next admission and HW computation.
    pub fn set_min_insync_replicas(
        &mut self,
        min_insync_replicas: i32,
        now_ms: i64,
    ) -> Vec<Effect> {
        self.settings.min_insync_replicas = min_insync_replicas;
        self.maybe_increment_hw(now_ms).into_iter().collect()
    }

    /// The metadata's view of follower `replica_id`'s broker changed (fenced, shutting down,
    /// registered again): Kafka's `isReplicaIsrEligible` reads its metadata cache at every
    /// high-watermark computation, so a dead broker that was caught up stops holding the high
    /// watermark once it is fenced, not only `replica.lag.time.max.ms` later. `registered_epoch`
    /// is its registration's broker epoch (None: not registered), `eligible` whether that
    /// registration is unfenced and not shutting down; a broker epoch seen in its fetches that
    /// differs from the registration makes it ineligible too. The next fetch sets it again.
    pub fn on_replica_eligibility(
        &mut self,
        replica_id: i32,
        registered_epoch: Option<i64>,
        eligible: bool,
        now_ms: i64,
    ) -> Vec<Effect> {
        let Some(follower) = self.followers.get_mut(&replica_id) else {
            return Vec::new();
        };
        let epoch_matches = match (registered_epoch, follower.broker_epoch) {
            (None, _) => false,
            (Some(_), None) | (Some(_), Some(-1)) => true,
            (Some(registered), Some(seen)) => registered == seen,
        };
        follower.eligible = follower.eligible && eligible && epoch_matches;
        self.maybe_increment_hw(now_ms).into_iter().collect()
    }

    /// Periodic check: propose removing ISR members that lag (Kafka `maybeShrinkIsr`), and
    /// re-evaluate the HW (a caught-up non-ISR follower stops holding it once it lags).
    pub fn tick(&mut self, leader_log_end: i64, now_ms: i64) -> Vec<Effect> {
        self.observe_log_end(leader_log_end);
        let mut effects: Vec<Effect> = self.maybe_shrink_isr(now_ms).into_iter().collect();
        effects.extend(self.maybe_increment_hw(now_ms));
        effects
    }

    /// Outcome of the in-flight ISR proposal (Ok = the controller committed it; the matching
    /// `on_metadata` may come before or after).
    pub fn on_alter_partition_result(
        &mut self,
        result: Result<(), AlterError>,
        now_ms: i64,
    ) -> Vec<Effect> {
        if !self.proposal_outstanding {
            return Vec::new();
        }
        self.proposal_outstanding = false;
        let Some(pending) = self.pending.clone() else {
            // Newer metadata already resolved the proposal: nothing to learn from the answer.
            return self.maybe_increment_hw(now_ms).into_iter().collect();
        };
        match result {
            Ok(()) => {
                let proposal = pending.proposal();
                self.isr = proposal.new_isr.iter().map(|&(id, _)| id).collect();
                // A committed change moves the partition epoch by exactly one.
                self.partition_epoch = proposal.partition_epoch + 1;
                self.pending = None;
                self.maybe_increment_hw(now_ms).into_iter().collect()
            }
            Err(AlterError::Retriable) => {
                self.proposal_outstanding = true;
                vec![self.propose_effect(pending.proposal())]
            }
            Err(AlterError::Ineligible) => {
                self.pending = None;
                Vec::new()
            }
            Err(AlterError::Fenced) | Err(AlterError::Other) => Vec::new(),
        }
    }

    pub fn high_watermark(&self) -> i64 {
        self.high_watermark
    }

    pub fn committed_isr(&self) -> &[i32] {
        &self.isr
    }

    /// Committed ISR plus a pending addition (a pending removal has not removed anyone yet).
    pub fn maximal_isr(&self) -> Vec<i32> {
        let mut isr = self.isr.clone();
        if let Some(Pending::Expand { replica, .. }) = &self.pending {
            if !isr.contains(replica) {
                isr.push(*replica);
            }
        }
        isr
    }

    /// acks=all admission: Err when committed ISR < min.insync.replicas.
    pub fn check_enough_replicas(&self) -> Result<(), NotEnoughReplicas> {
        let min = self.effective_min_isr();
        if self.isr.len() < min {
            return Err(NotEnoughReplicas {
                isr_size: self.isr.len(),
                min_insync_replicas: min,
            });
        }
        Ok(())
    }

    /// An acks=all produce whose last offset is `required_offset - 1`.
    pub fn acks_all_status(&self, required_offset: i64) -> AckStatus {
        if self.high_watermark < required_offset {
            AckStatus::Waiting
        } else if self.maximal_isr().len() >= self.effective_min_isr() {
            AckStatus::Done
        } else {
            AckStatus::NotEnoughReplicasAfterAppend
        }
    }

    pub fn leader_epoch(&self) -> i32 {
        self.leader_epoch
    }

    pub fn partition_epoch(&self) -> i32 {
        self.partition_epoch
    }

    /// Where this leader epoch starts; ListOffsets answers OFFSET_NOT_AVAILABLE while the HW
    /// is below it.
    pub fn epoch_start_offset(&self) -> i64 {
        self.epoch_start_offset
    }

    pub fn replicas(&self) -> &[i32] {
        &self.replicas
    }

    /// The leader's log end as last reported.
    pub fn log_end(&self) -> i64 {
        self.log_end
    }

    /// A follower's log end as the leader knows it (None before its first fetch this epoch).
    pub fn follower_log_end(&self, replica_id: i32) -> Option<i64> {
        self.followers.get(&replica_id).and_then(|f| f.log_end)
    }

    /// An ISR change is pending (sent, or refused with Fenced/Other and awaiting metadata).
    pub fn isr_change_pending(&self) -> bool {
        self.pending.is_some()
    }

    /// A ProposeIsr has not been answered yet.
    pub fn proposal_outstanding(&self) -> bool {
        self.proposal_outstanding
    }

    /// Kafka `effectiveMinIsr`: min.insync.replicas capped at the replica count.
    fn effective_min_isr(&self) -> usize {
        let min = usize::try_from(self.settings.min_insync_replicas.max(1)).unwrap_or(1);
        min.min(self.followers.len() + 1)
    }

    /// The caller may hand in a log end read before a concurrent append; the largest wins.
    fn observe_log_end(&mut self, log_end: i64) {
        self.log_end = self.log_end.max(log_end);
    }

    fn can_propose(&self) -> bool {
        self.pending.is_none() && !self.proposal_outstanding
    }

    /// Kafka `maybeExpandIsr` / `isFollowerInSync` / `isReplicaIsrEligible`.
    fn maybe_expand_isr(&mut self, replica_id: i32) -> Option<Effect> {
        if !self.can_propose() || self.isr.contains(&replica_id) {
            return None;
        }
        let follower = self.followers.get(&replica_id)?;
        let end = follower.log_end?;
        if !follower.eligible || end < self.high_watermark || end < self.epoch_start_offset {
            return None;
        }
        let mut ids = self.isr.clone();
        ids.push(replica_id);
        let proposal = Proposal {
            partition_epoch: self.partition_epoch,
            new_isr: self.with_broker_epochs(&ids),
        };
        let effect = self.propose_effect(&proposal);
        self.pending = Some(Pending::Expand {
            replica: replica_id,
            proposal,
        });
        self.proposal_outstanding = true;
        Some(effect)
    }

    /// Kafka `maybeShrinkIsr` / `getOutOfSyncReplicas`.
    fn maybe_shrink_isr(&mut self, now_ms: i64) -> Option<Effect> {
        if !self.can_propose() {
            return None;
        }
        let lag_ms = self.settings.replica_lag_time_max_ms;
        let out_of_sync: Vec<i32> = self
            .isr
            .iter()
            .copied()
            .filter(|&id| id != self.local_id)
            .filter(|id| {
                self.followers
                    .get(id)
                    .is_none_or(|f| !f.is_caught_up(self.log_end, now_ms, lag_ms))
            })
            .collect();
        if out_of_sync.is_empty() {
            return None;
        }
        let ids: Vec<i32> = self
            .isr
            .iter()
            .copied()
            .filter(|id| !out_of_sync.contains(id))
            .collect();
        let proposal = Proposal {
            partition_epoch: self.partition_epoch,
            new_isr: self.with_broker_epochs(&ids),
        };
        let effect = self.propose_effect(&proposal);
        self.pending = Some(Pending::Shrink { proposal });
        self.proposal_outstanding = true;
        Some(effect)
    }

    /// Kafka `maybeIncrementLeaderHW`.
    fn maybe_increment_hw(&mut self, now_ms: i64) -> Option<Effect> {
        if self.isr.len() < self.effective_min_isr() {
            return None;
        }
        let maximal = self.maximal_isr();
        let lag_ms = self.settings.replica_lag_time_max_ms;
        let mut candidate = self.log_end;
        for (id, follower) in &self.followers {
            let counts = maximal.contains(id)
                || (follower.eligible && follower.is_caught_up(self.log_end, now_ms, lag_ms));
            if counts {
                // A member whose end we do not know yet holds the HW where it is.
                candidate = candidate.min(follower.log_end.unwrap_or(-1));
            }
        }
        // An ISR member that is not a follower we track (not in the replicas) is unknown too.
        if maximal
            .iter()
            .any(|id| *id != self.local_id && !self.followers.contains_key(id))
        {
            return None;
        }
        if candidate > self.high_watermark {
            self.high_watermark = candidate;
            Some(Effect::HighWatermark(candidate))
        } else {
            None
        }
    }

    fn with_broker_epochs(&self, ids: &[i32]) -> Vec<(i32, i64)> {
        ids.iter()
            .map(|&id| {
                let epoch = if id == self.local_id {
                    self.local_broker_epoch
                } else {
                    self.followers
                        .get(&id)
                        .and_then(|f| f.broker_epoch)
                        .unwrap_or(-1)
                };
                (id, epoch)
            })
            .collect()
    }

    fn propose_effect(&self, proposal: &Proposal) -> Effect {
        Effect::ProposeIsr {
            leader_epoch: self.leader_epoch,
            partition_epoch: proposal.partition_epoch,
            new_isr: proposal.new_isr.clone(),
        }
    }
}

#[cfg(test)]
mod tests;

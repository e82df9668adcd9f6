//! The leader side of replication: appends, follower fetch positions, the high watermark and
//! its waiters, ISR proposals.
//!
//! Owns: [`Partition::append_as_leader`] and [`Partition::append_marker_as_leader`] (the only
//! ways a leader appends, through one path: role and epoch checked
//! and the append done under the role lock, acks=all admission against the committed ISR and
//! `min.insync.replicas`), [`Partition::on_replica_fetch`] (a follower's fetch offset into the
//! leader state), [`Partition::wait_for_high_watermark`] (acks=all and coordinator writes park
//! there until the high watermark passes them), the proposer task that sends the leader
//! state's ISR proposals to the controller (AlterPartition through `ControlClient`) and feeds
//! the outcome back, and the ticker that lets leader states shrink the ISR of lagging
//! followers (`replica.lag.time.max.ms`).
//! Must never: answer an acks=all produce before the high watermark passes its last offset,
//! hand an AlterPartition outcome to a leader state of another leader epoch, or let two
//! proposals of one partition be in flight (the leader state keeps one; a stale answer is
//! dropped here).

use std::sync::Arc;
use std::time::Duration;

use josefine_log::{AppendOutcome, LogError};
use josefine_replica::{AckStatus, AlterError};
use kafka_protocol::messages::alter_partition_request::{BrokerState, PartitionData, TopicData};
use kafka_protocol::messages::{AlterPartitionRequest, BrokerId};
use tokio::sync::{mpsc, watch};
use tracing::{debug, warn};

use super::{IsrProposal, Role};
use crate::broker::Broker;
use crate::clock::now_ms;
use crate::handlers::{code, uuid_of};
use crate::partitions::Partition;

/// Why a leader append did not happen.
#[derive(Debug)]
pub enum LeaderAppendError {
    /// This broker does not lead the partition at the epoch the append is stamped with.
    NotLeader,
    /// acks=all and the committed ISR is smaller than `min.insync.replicas`.
    NotEnoughReplicas {
        isr: usize,
        min_insync: usize,
    },
    Log(LogError),
}

impl LeaderAppendError {
    pub fn error_code(&self) -> i16 {
        match self {
            LeaderAppendError::NotLeader => code::NOT_LEADER_OR_FOLLOWER,
            LeaderAppendError::NotEnoughReplicas { .. } => code::NOT_ENOUGH_REPLICAS,
            LeaderAppendError::Log(e) => e.kafka_error_code(),
        }
    }
}

/// A follower's fetch of one partition, as the leader state hears it.
#[derive(Debug, Clone, Copy)]
pub struct FollowerFetch {
    /// The leader epoch this broker leads the partition at, per the image the fetch was checked
    /// against.
    pub leader_epoch: i32,
    pub replica_id: i32,
    pub broker_epoch: i64,
    /// The follower's log end.
    pub fetch_offset: i64,
    /// This log's end before the read (Kafka: appends after the read must not keep a follower
    /// out of sync).
    pub leader_log_end: i64,
    /// Unfenced, not shutting down, fetched with its registered broker epoch (KIP-841/903).
    pub eligible: bool,
}

impl Partition {
    /// Appends `records` as the leader at `leader_epoch` (stamping that epoch), then lets the
    /// leader state move the high watermark. `acks_all`: refused before appending with
    /// NOT_ENOUGH_REPLICAS when the committed ISR is smaller than `min.insync.replicas`
    /// (Kafka's `Partition.appendRecordsToLeader`).
    pub fn append_as_leader(
        &self,
        records: &[u8],
        leader_epoch: i32,
        acks_all: bool,
        now_ms: i64,
    ) -> Result<AppendOutcome, LeaderAppendError> {
        self.append_under_leader(leader_epoch, acks_all, now_ms, |log| {
            log.append(records, leader_epoch, now_ms)
        })
    }

    /// [`Partition::append_as_leader`] for a batch the transaction coordinator has verified
    /// (KIP-890): transactional batches are taken, opening or continuing the producer's
    /// transaction in this log (`PartitionLog::append_allowing_transactions`).
    pub fn append_transactional_as_leader(
        &self,
        records: &[u8],
        leader_epoch: i32,
        acks_all: bool,
        now_ms: i64,
    ) -> Result<AppendOutcome, LeaderAppendError> {
        self.append_under_leader(leader_epoch, acks_all, now_ms, |log| {
            log.append_allowing_transactions(records, leader_epoch, now_ms)
        })
    }

    /// Writes the control marker ending `producer_id`'s transaction (COMMIT when `commit`) as
    /// the leader at `leader_epoch`, the same way: role and epoch checked, written under the
    /// role lock, then the leader state moves the high watermark. The log's
    /// INVALID_PRODUCER_EPOCH / TRANSACTION_COORDINATOR_FENCED come back as they are.
    pub fn append_marker_as_leader(
        &self,
        producer_id: i64,
        producer_epoch: i16,
        coordinator_epoch: i32,
        commit: bool,
        leader_epoch: i32,
        now_ms: i64,
    ) -> Result<AppendOutcome, LeaderAppendError> {
        self.append_under_leader(leader_epoch, true, now_ms, |log| {
            log.append_control_marker(
                producer_id,
                producer_epoch,
                coordinator_epoch,
                commit,
                leader_epoch,
                now_ms,
            )
        })
    }

    /// The one leader append path: NOT_LEADER_OR_FOLLOWER unless this broker leads at
    /// `leader_epoch`; `acks_all` admission against the committed ISR; `append` runs under the
    /// role lock (a demotion cannot slip in between); then the leader state sees the new log end.
    fn append_under_leader(
        &self,
        leader_epoch: i32,
        acks_all: bool,
        now_ms: i64,
        append: impl FnOnce(&josefine_log::PartitionLog) -> Result<AppendOutcome, LogError>,
    ) -> Result<AppendOutcome, LeaderAppendError> {
        let mut role = self.replica.role.lock().expect("role lock");
        let Role::Leader(l) = &mut *role else {
            return Err(LeaderAppendError::NotLeader);
        };
        if l.leader_epoch != leader_epoch {
            return Err(LeaderAppendError::NotLeader);
        }
        if acks_all {
            if let Err(e) = l.state.check_enough_replicas() {
                return Err(LeaderAppendError::NotEnoughReplicas {
                    isr: e.isr_size,
                    min_insync: e.min_insync_replicas,
                });
            }
        }
        let outcome = append(&self.log).map_err(LeaderAppendError::Log)?;
        let effects = l.state.on_local_append(self.log.log_end_offset(), now_ms);
        self.apply_effects(l, effects, now_ms);
        Ok(outcome)
    }

    /// A follower's fetch reached this leader (see [`FollowerFetch`]). Returns false when this
    /// broker does not lead the partition at the fetch's leader epoch (nothing is recorded
    /// then).
    pub fn on_replica_fetch(&self, f: &FollowerFetch, now_ms: i64) -> bool {
        let mut role = self.replica.role.lock().expect("role lock");
        let Role::Leader(l) = &mut *role else {
            return false;
        };
        if l.leader_epoch != f.leader_epoch {
            return false;
        }
        let effects = l.state.on_follower_fetch(
            f.replica_id,
            f.broker_epoch,
            f.fetch_offset,
            f.leader_log_end,
            f.eligible,
            now_ms,
        );
        self.apply_effects(l, effects, now_ms);
        true
    }

    /// Lets the leader state check its followers' lag (ISR shrink).
    fn tick_leader(&self, now_ms: i64) {
        let mut role = self.replica.role.lock().expect("role lock");
        if let Role::Leader(l) = &mut *role {
            let effects = l.state.tick(self.log.log_end_offset(), now_ms);
            self.apply_effects(l, effects, now_ms);
        }
    }

    /// The controller's answer to this partition's ISR proposal made at `leader_epoch`.
    fn on_alter_partition_result(
        &self,
        leader_epoch: i32,
        result: Result<(), AlterError>,
        now_ms: i64,
    ) {
        let mut role = self.replica.role.lock().expect("role lock");
        if let Role::Leader(l) = &mut *role {
            if l.leader_epoch == leader_epoch {
                let effects = l.state.on_alter_partition_result(result, now_ms);
                self.apply_effects(l, effects, now_ms);
            }
        }
    }

    /// Waits until the high watermark reaches `required_offset` (the last appended offset + 1)
    /// while this broker leads at `leader_epoch`, as Kafka's `DelayedProduce`: NONE; the
    /// maximal ISR fell below `min.insync.replicas` meanwhile: NOT_ENOUGH_REPLICAS_AFTER_APPEND;
    /// leadership lost: NOT_LEADER_OR_FOLLOWER; `timeout` passed: REQUEST_TIMED_OUT.
    pub async fn wait_for_high_watermark(
        &self,
        leader_epoch: i32,
        required_offset: i64,
        timeout: Duration,
    ) -> i16 {
        let mut view = self.replica.subscribe();
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            view.borrow_and_update();
            let status = match &*self.replica.role.lock().expect("role lock") {
                Role::Leader(l) if l.leader_epoch == leader_epoch => {
                    l.state.acks_all_status(required_offset)
                }
                _ => return code::NOT_LEADER_OR_FOLLOWER,
            };
            match status {
                AckStatus::Done => return code::NONE,
                AckStatus::NotEnoughReplicasAfterAppend => {
                    return code::NOT_ENOUGH_REPLICAS_AFTER_APPEND
                }
                AckStatus::Waiting => {}
            }
            match tokio::time::timeout_at(deadline, view.changed()).await {
                Ok(Ok(())) => continue,
                Ok(Err(_)) => return code::NOT_LEADER_OR_FOLLOWER,
                Err(_) => {
                    if let Role::Leader(l) = &*self.replica.role.lock().expect("role lock") {
                        let followers: Vec<(i32, Option<i64>)> = l
                            .replicas
                            .iter()
                            .map(|&r| (r, l.state.follower_log_end(r)))
                            .collect();
                        warn!(topic = %self.topic, partition = self.index, required_offset, high_watermark = l.state.high_watermark(), log_end = self.log.log_end_offset(), isr = ?l.state.committed_isr(), maximal_isr = ?l.state.maximal_isr(), ?followers, "acks=-1 produce timed out waiting for the high watermark");
                    }
                    return code::REQUEST_TIMED_OUT;
                }
            }
        }
    }
}

/// Sends the leader states' ISR proposals to the controller, each in its own task (at most
/// one per partition is ever in flight), and hands the outcome back.
pub(super) async fn run_proposer(
    broker: Arc<Broker>,
    mut proposals: mpsc::Receiver<IsrProposal>,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        let proposal = tokio::select! {
            p = proposals.recv() => match p {
                Some(p) => p,
                None => return,
            },
            _ = stop.wait_for(|s| *s) => return,
        };
        let broker = broker.clone();
        tokio::spawn(async move {
            let result = send_proposal(&broker, &proposal).await;
            debug!(topic = %proposal.topic, partition = proposal.partition, isr = ?proposal.new_isr, ?result, "AlterPartition answered");
            if let Some(p) = broker.partitions.get(proposal.topic_id, proposal.partition) {
                p.on_alter_partition_result(proposal.leader_epoch, result, now_ms());
            }
        });
    }
}

/// One AlterPartition call through the controller client (retried at a new controller on
/// NOT_CONTROLLER), its outcome in the leader state's terms.
async fn send_proposal(broker: &Arc<Broker>, p: &IsrProposal) -> Result<(), AlterError> {
    let broker_epoch = broker.lifecycle.state().epoch.unwrap_or(-1);
    let deadline = tokio::time::Instant::now()
        + Duration::from_millis(broker.config.broker.replica_socket_timeout_ms);
    let request = AlterPartitionRequest::default()
        .with_broker_id(BrokerId(broker.config.node_id))
        .with_broker_epoch(broker_epoch)
        .with_topics(vec![TopicData::default()
            .with_topic_id(uuid_of(p.topic_id))
            .with_partitions(vec![PartitionData::default()
                .with_partition_index(p.partition)
                .with_leader_epoch(p.leader_epoch)
                .with_partition_epoch(p.partition_epoch)
                .with_new_isr_with_epochs(
                    p.new_isr
                        .iter()
                        .map(|&(id, epoch)| {
                            BrokerState::default()
                                .with_broker_id(BrokerId(id))
                                .with_broker_epoch(epoch)
                        })
                        .collect(),
                )])]);
    let answer = match broker
        .control_client
        .alter_partition(request, deadline)
        .await
    {
        Ok((answer, _)) => answer,
        Err(e) => {
            debug!(topic = %p.topic, partition = p.partition, "AlterPartition not answered: {e}");
            return Err(AlterError::Retriable);
        }
    };
    let error = match answer.error_code {
        code::NONE => answer
            .topics
            .iter()
            .flat_map(|t| t.partitions.iter())
            .find(|x| x.partition_index == p.partition)
            .map_or(code::UNKNOWN_SERVER_ERROR, |x| x.error_code),
        top => top,
    };
    match error {
        code::NONE => Ok(()),
        code::FENCED_LEADER_EPOCH | code::INVALID_UPDATE_VERSION => Err(AlterError::Fenced),
        code::INELIGIBLE_REPLICA | code::OPERATION_NOT_ATTEMPTED => Err(AlterError::Ineligible),
        code::NOT_CONTROLLER | code::REQUEST_TIMED_OUT | code::UNKNOWN_SERVER_ERROR => {
            Err(AlterError::Retriable)
        }
        other => {
            warn!(topic = %p.topic, partition = p.partition, error = other, "AlterPartition refused");
            Err(AlterError::Other)
        }
    }
}

/// Ticks every leader state at half `replica.lag.time.max.ms` (Kafka's ISR-expiration
/// period), so a follower lagging that long leaves the ISR within 1.5 times the setting.
pub(super) async fn run_ticker(broker: Arc<Broker>, mut stop: watch::Receiver<bool>) {
    loop {
        let lag = broker.partitions.replication().lag_time_max_ms();
        let every = Duration::from_millis((lag / 2).clamp(
            crate::limits::REPLICA_TICK_MS_MIN as i64,
            crate::limits::REPLICA_TICK_MS_MAX as i64,
        ) as u64);
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = stop.wait_for(|s| *s) => return,
        }
        let now = now_ms();
        for p in broker.partitions.all() {
            p.tick_leader(now);
        }
    }
}

//! The coordinator: dispatch, partition ownership and loading, timers, append completion.
//!
//! Owns every group of the `__consumer_offsets` partitions this broker leads, and the
//! bookkeeping that ties delayed responses to appends and timers. It must never block, sleep,
//! read a clock or do I/O: the driver (the broker) passes `now_ms` into every call, carries
//! out the returned [`Effect`]s, and calls [`Coordinator::on_append_complete`] when an append
//! is durable. Responses that depend on an append are only emitted after that call, so a
//! client never sees a commit or an assignment that a crash could lose.
//!
//! Driver loop, in short: `begin_load(p)`, `load_record(p, ..)` for every record of the
//! partition, `complete_load(p, now)`; then `handle(ctx, request, now)` per request,
//! `tick(now)` whenever `next_deadline_ms()` passes, `on_append_complete(id, outcome, now)`
//! per finished append, `on_topic_deleted(topic, now)` when a topic goes, `unload(p)` when
//! leadership of a partition moves away.

mod admin;
mod membership;
mod offsets;
mod txn_offsets;
mod versions;

use std::collections::{BTreeMap, BTreeSet};

use bytes::Bytes;
use kafka_protocol::messages::{
    DeleteGroupsRequest, DeleteGroupsResponse, DescribeGroupsRequest, DescribeGroupsResponse,
    HeartbeatRequest, HeartbeatResponse, JoinGroupRequest, JoinGroupResponse, LeaveGroupRequest,
    LeaveGroupResponse, ListGroupsRequest, ListGroupsResponse, OffsetCommitRequest,
    OffsetCommitResponse, OffsetDeleteRequest, OffsetDeleteResponse, OffsetFetchRequest,
    OffsetFetchResponse, SyncGroupRequest, SyncGroupResponse, TxnOffsetCommitRequest,
    TxnOffsetCommitResponse,
};
use kafka_protocol::ResponseError;

use crate::config::GroupConfig;
use crate::group::{CommittedOffset, Group, GroupState, Member};
use crate::partition::partition_for;
use crate::records::{self, OffsetsRecord, RecordKey};
use crate::GroupError;

/// The driver's handle for one request, echoed back on its response. Opaque to the
/// coordinator; the broker typically packs connection id and correlation id into it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RequestId(pub u64);

/// Names one `Effect::Append`; passed back in `on_append_complete`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct AppendId(pub u64);

/// Per-request facts that are not in the request body.
#[derive(Clone, Debug)]
pub struct RequestContext {
    pub request_id: RequestId,
    /// The request's API version: it changes behaviour, not just encoding.
    pub api_version: i16,
    /// From the request header; part of generated member ids and shown by DescribeGroups.
    pub client_id: String,
    /// The client's address as Kafka shows it, e.g. "/127.0.0.1".
    pub client_host: String,
}

/// The requests the coordinator handles, as decoded by kafka-protocol.
#[derive(Clone, Debug)]
pub enum GroupRequest {
    JoinGroup(JoinGroupRequest),
    SyncGroup(SyncGroupRequest),
    Heartbeat(HeartbeatRequest),
    LeaveGroup(LeaveGroupRequest),
    OffsetCommit(OffsetCommitRequest),
    OffsetFetch(OffsetFetchRequest),
    DescribeGroups(DescribeGroupsRequest),
    ListGroups(ListGroupsRequest),
    DeleteGroups(DeleteGroupsRequest),
    OffsetDelete(OffsetDeleteRequest),
    TxnOffsetCommit(TxnOffsetCommitRequest),
}

/// Responses, already shaped for the request's API version (encodable at that version).
#[derive(Clone, Debug, PartialEq)]
pub enum GroupResponse {
    JoinGroup(JoinGroupResponse),
    SyncGroup(SyncGroupResponse),
    Heartbeat(HeartbeatResponse),
    LeaveGroup(LeaveGroupResponse),
    OffsetCommit(OffsetCommitResponse),
    OffsetFetch(OffsetFetchResponse),
    DescribeGroups(DescribeGroupsResponse),
    ListGroups(ListGroupsResponse),
    DeleteGroups(DeleteGroupsResponse),
    OffsetDelete(OffsetDeleteResponse),
    TxnOffsetCommit(TxnOffsetCommitResponse),
}

/// What the driver must do.
#[derive(Clone, Debug, PartialEq)]
pub enum Effect {
    /// Send `response` for the request `request_id`, encoded at `api_version`.
    Respond {
        request_id: RequestId,
        api_version: i16,
        response: GroupResponse,
    },
    /// Append `records` (in order, as one batch) to partition `partition` of
    /// `__consumer_offsets`, then call `on_append_complete(append_id, ..)`. With `producer`
    /// (producer id, epoch) the batch is a transactional batch of that producer (TxnOffsetCommit):
    /// its offsets count only once a commit marker follows it.
    Append {
        append_id: AppendId,
        partition: i32,
        records: Vec<OffsetsRecord>,
        producer: Option<(i64, i16)>,
    },
}

/// How an append ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AppendOutcome {
    /// Durable (committed per the partition's replication policy).
    Appended,
    /// This broker no longer leads the partition.
    NotLeader,
    /// Transient: not enough replicas, timeout, storage error.
    Unavailable,
    /// The batch was rejected as too large.
    TooLarge,
}

impl AppendOutcome {
    /// The error a client sees for a failed group-metadata append (Kafka's mapping).
    fn group_error(self) -> i16 {
        match self {
            AppendOutcome::Appended => 0,
            AppendOutcome::NotLeader => ResponseError::NotCoordinator.code(),
            AppendOutcome::Unavailable => ResponseError::CoordinatorNotAvailable.code(),
            AppendOutcome::TooLarge => ResponseError::UnknownServerError.code(),
        }
    }

    /// The error a client sees for a failed offset-commit append (Kafka's mapping).
    fn commit_error(self) -> i16 {
        match self {
            AppendOutcome::TooLarge => ResponseError::InvalidCommitOffsetSize.code(),
            other => other.group_error(),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum PartitionLoad {
    Loading,
    Loaded,
}

/// What to do when an append completes.
#[derive(Debug)]
enum AfterAppend {
    /// Nothing waits on it (expiry, empty-generation records, topic deletion).
    Nothing,
    OffsetCommit(offsets::PendingCommit),
    TxnOffsetCommit(txn_offsets::PendingTxnCommit),
    SyncLeader {
        group_id: String,
        generation_id: i32,
        assignments: BTreeMap<String, Bytes>,
    },
    StaticRejoin(membership::PendingStaticRejoin),
    OffsetDelete {
        request_id: RequestId,
        api_version: i16,
        response: OffsetDeleteResponse,
    },
    DeleteGroups {
        aggregate: u64,
        group_ids: Vec<String>,
    },
}

#[derive(Debug)]
struct PendingAppend {
    partition: i32,
    after: AfterAppend,
}

/// The classic group coordinator. See the module documentation for the driver protocol.
#[derive(Debug)]
pub struct Coordinator {
    config: GroupConfig,
    /// splitmix64 state for member ids: injected seed, so runs replay exactly.
    member_id_state: u64,
    partitions: BTreeMap<i32, PartitionLoad>,
    groups: BTreeMap<String, Group>,
    pending_appends: BTreeMap<AppendId, PendingAppend>,
    next_append_id: u64,
    delete_aggregates: BTreeMap<u64, admin::DeleteAggregate>,
    next_aggregate_id: u64,
    next_expiry_check_ms: Option<i64>,
    /// Timer index: (earliest deadline, group) for every loaded group that has one, so
    /// `next_deadline_ms` and `tick` do not scan every group and member.
    timers: BTreeSet<(i64, String)>,
    /// The deadline each group is indexed under in `timers`.
    timer_of: BTreeMap<String, i64>,
    /// Topics deleted while a partition was loading, purged when its load completes.
    deleted_while_loading: BTreeMap<i32, BTreeSet<String>>,
    effects: Vec<Effect>,
    /// Running totals for [`Coordinator::stats`].
    totals: Totals,
}

/// Counts since this coordinator was created (the broker exports them as counters).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Totals {
    rebalances: u64,
    offset_commits: u64,
    offsets_expired: u64,
}

/// What [`Coordinator::stats`] reports: plain numbers, no clock (the broker times and exports).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct CoordinatorStats {
    /// Groups held, per state.
    pub groups: Vec<(GroupState, usize)>,
    /// Members of every group held.
    pub members: usize,
    /// Rebalances begun (a group entering PreparingRebalance).
    pub rebalances_total: u64,
    /// Committed offsets made durable (each partition of a commit counts once).
    pub offset_commits_total: u64,
    /// Committed offsets removed by retention.
    pub offsets_expired_total: u64,
    /// (group, topic, partition, committed offset), at most the `committed_max` asked for, in
    /// group then topic then partition order.
    pub committed: Vec<(String, String, i32, i64)>,
    /// Committed offsets held beyond `committed_max`.
    pub committed_truncated: usize,
}

impl Coordinator {
    /// A coordinator owning no partitions. `member_id_seed` drives member id generation.
    pub fn new(config: GroupConfig, member_id_seed: u64) -> Result<Self, GroupError> {
        config.validate()?;
        Ok(Coordinator {
            config,
            member_id_state: member_id_seed,
            partitions: BTreeMap::new(),
            groups: BTreeMap::new(),
            pending_appends: BTreeMap::new(),
            next_append_id: 1,
            delete_aggregates: BTreeMap::new(),
            next_aggregate_id: 1,
            next_expiry_check_ms: None,
            timers: BTreeSet::new(),
            timer_of: BTreeMap::new(),
            deleted_while_loading: BTreeMap::new(),
            effects: Vec::new(),
            totals: Totals::default(),
        })
    }

    /// The `__consumer_offsets` partition that owns `group_id` (what FindCoordinator needs).
    pub fn partition_for(&self, group_id: &str) -> i32 {
        partition_for(group_id, self.config.offsets_topic_partitions)
    }

    /// The state of a group, if this coordinator holds it (for tests, metrics and admin).
    pub fn group_state(&self, group_id: &str) -> Option<GroupState> {
        self.groups.get(group_id).map(|g| g.state)
    }

    /// Number of groups held.
    pub fn group_count(&self) -> usize {
        self.groups.len()
    }

    /// Figures for metrics: groups per state, members, running totals and up to
    /// `committed_max` committed offsets. Costs a walk of every group and committed offset.
    pub fn stats(&self, committed_max: usize) -> CoordinatorStats {
        let states = [
            GroupState::Empty,
            GroupState::PreparingRebalance,
            GroupState::CompletingRebalance,
            GroupState::Stable,
            GroupState::Dead,
        ];
        let mut stats = CoordinatorStats {
            groups: states.iter().map(|s| (*s, 0)).collect(),
            rebalances_total: self.totals.rebalances,
            offset_commits_total: self.totals.offset_commits,
            offsets_expired_total: self.totals.offsets_expired,
            ..CoordinatorStats::default()
        };
        for g in self.groups.values() {
            if let Some(slot) = stats.groups.iter_mut().find(|(s, _)| *s == g.state) {
                slot.1 += 1;
            }
            stats.members += g.members.len();
            for ((topic, partition), o) in &g.offsets {
                if stats.committed.len() < committed_max {
                    let row = (g.group_id.clone(), topic.clone(), *partition, o.offset);
                    stats.committed.push(row);
                } else {
                    stats.committed_truncated += 1;
                }
            }
        }
        stats
    }

    // ---- Partition ownership and loading -------------------------------------------------

    /// Starts loading partition `partition`: its groups answer COORDINATOR_LOAD_IN_PROGRESS
    /// until `complete_load`. Any state previously held for it is dropped.
    /// Returns responses for requests that were waiting on groups of a previous load.
    pub fn begin_load(&mut self, partition: i32) -> Vec<Effect> {
        self.drop_partition(partition);
        self.deleted_while_loading.remove(&partition);
        self.partitions.insert(partition, PartitionLoad::Loading);
        std::mem::take(&mut self.effects)
    }

    /// Replays one record of a transactional batch of `producer_id` (a TxnOffsetCommit): its
    /// offset stays pending until [`Coordinator::load_txn_marker`] replays the marker after it.
    pub fn load_transactional_record(
        &mut self,
        partition: i32,
        producer_id: i64,
        key: &[u8],
        value: Option<&[u8]>,
    ) -> Result<(), GroupError> {
        if self.partitions.get(&partition) != Some(&PartitionLoad::Loading) {
            return Err(GroupError::NotLoading(partition));
        }
        match (records::decode_key(key)?, value) {
            (
                Some(RecordKey::OffsetCommit {
                    group_id,
                    topic,
                    partition: topic_partition,
                }),
                Some(v),
            ) => {
                let v = records::decode_offset_value(v)?;
                let value = CommittedOffset {
                    offset: v.offset,
                    leader_epoch: v.leader_epoch,
                    metadata: v.metadata,
                    commit_timestamp_ms: v.commit_timestamp_ms,
                    expire_timestamp_ms: v.expire_timestamp_ms,
                };
                let key = (topic, topic_partition);
                self.load_txn_offset(partition, producer_id, group_id, key, value);
                Ok(())
            }
            _ => self.load_record(partition, key, value),
        }
    }

    /// Replays one record of the partition, in log order. Records of other group types
    /// (unknown key versions) are skipped.
    pub fn load_record(
        &mut self,
        partition: i32,
        key: &[u8],
        value: Option<&[u8]>,
    ) -> Result<(), GroupError> {
        if self.partitions.get(&partition) != Some(&PartitionLoad::Loading) {
            return Err(GroupError::NotLoading(partition));
        }
        match records::decode_key(key)? {
            None => {}
            Some(RecordKey::OffsetCommit {
                group_id,
                topic,
                partition: topic_partition,
            }) => match value {
                Some(v) => {
                    let v = records::decode_offset_value(v)?;
                    let group = self
                        .groups
                        .entry(group_id.clone())
                        .or_insert_with(|| Group::new(group_id, partition, -1));
                    group.offsets.insert(
                        (topic, topic_partition),
                        CommittedOffset {
                            offset: v.offset,
                            leader_epoch: v.leader_epoch,
                            metadata: v.metadata,
                            commit_timestamp_ms: v.commit_timestamp_ms,
                            expire_timestamp_ms: v.expire_timestamp_ms,
                        },
                    );
                }
                None => {
                    if let Some(group) = self.groups.get_mut(&group_id) {
                        group.offsets.remove(&(topic, topic_partition));
                    }
                }
            },
            Some(RecordKey::GroupMetadata { group_id }) => match value {
                Some(v) => {
                    let v = records::decode_group_value(v)?;
                    let offsets = self
                        .groups
                        .remove(&group_id)
                        .map(|g| g.offsets)
                        .unwrap_or_default();
                    let mut group = Group::new(group_id.clone(), partition, -1);
                    group.offsets = offsets;
                    group.generation_id = v.generation_id;
                    group.protocol_type = Some(v.protocol_type).filter(|t| !t.is_empty());
                    group.protocol_name = v.protocol_name;
                    group.leader_id = v.leader_id;
                    group.state_timestamp_ms = v.current_state_timestamp_ms;
                    let protocol = group.protocol_name.clone().unwrap_or_default();
                    for m in v.members {
                        if let Some(instance) = &m.group_instance_id {
                            group
                                .static_members
                                .insert(instance.clone(), m.member_id.clone());
                        }
                        group.members.insert(
                            m.member_id.clone(),
                            Member {
                                member_id: m.member_id,
                                group_instance_id: m.group_instance_id,
                                client_id: m.client_id,
                                client_host: m.client_host,
                                rebalance_timeout_ms: m.rebalance_timeout_ms,
                                session_timeout_ms: m.session_timeout_ms,
                                protocols: vec![(protocol.clone(), m.subscription)],
                                assignment: m.assignment,
                                awaiting_join: None,
                                awaiting_sync: None,
                                is_new: false,
                                session_deadline_ms: 0,
                            },
                        );
                    }
                    group.state = if group.members.is_empty() {
                        GroupState::Empty
                    } else {
                        GroupState::Stable
                    };
                    self.groups.insert(group_id, group);
                }
                None => {
                    // The group was deleted; offsets written after the deletion stay with a
                    // fresh simple group, as Kafka keeps them.
                    if let Some(old) = self.groups.remove(&group_id) {
                        if !old.offsets.is_empty() {
                            let mut group = Group::new(group_id.clone(), partition, -1);
                            group.offsets = old.offsets;
                            self.groups.insert(group_id, group);
                        }
                    }
                }
            },
        }
        Ok(())
    }

    /// Finishes loading: groups become servable and members get a fresh session timeout
    /// (they cannot have heartbeated to a coordinator that did not exist).
    /// Returns tombstones for offsets of topics deleted during the load.
    pub fn complete_load(
        &mut self,
        partition: i32,
        now_ms: i64,
    ) -> Result<Vec<Effect>, GroupError> {
        if self.partitions.get(&partition) != Some(&PartitionLoad::Loading) {
            return Err(GroupError::NotLoading(partition));
        }
        for group in self
            .groups
            .values_mut()
            .filter(|g| g.partition == partition)
        {
            if group.state_timestamp_ms < 0 {
                group.state_timestamp_ms = now_ms;
            }
            for m in group.members.values_mut() {
                m.session_deadline_ms = now_ms + i64::from(m.session_timeout_ms);
            }
            group.subscribed_topics = group.compute_subscribed_topics();
        }
        self.partitions.insert(partition, PartitionLoad::Loaded);
        let ids: Vec<String> = self
            .groups
            .values()
            .filter(|g| g.partition == partition)
            .map(|g| g.group_id.clone())
            .collect();
        for id in ids {
            self.reindex(&id);
        }
        if self.next_expiry_check_ms.is_none() {
            self.next_expiry_check_ms =
                Some(now_ms + self.config.offsets_retention_check_interval_ms);
        }
        if let Some(topics) = self.deleted_while_loading.remove(&partition) {
            self.purge_topics(partition, &topics, now_ms);
        }
        Ok(std::mem::take(&mut self.effects))
    }

    /// Gives up partition `partition` (leadership moved): waiting requests get
    /// NOT_COORDINATOR so clients look the coordinator up again.
    pub fn unload(&mut self, partition: i32) -> Vec<Effect> {
        self.partitions.remove(&partition);
        self.deleted_while_loading.remove(&partition);
        self.drop_partition(partition);
        std::mem::take(&mut self.effects)
    }

    /// Forgets the partition's groups, answering their waiting requests NOT_COORDINATOR.
    fn drop_partition(&mut self, partition: i32) {
        let ids: Vec<String> = self
            .groups
            .values()
            .filter(|g| g.partition == partition)
            .map(|g| g.group_id.clone())
            .collect();
        let not_coordinator = ResponseError::NotCoordinator.code();
        for id in ids {
            let group = self.groups.remove(&id).expect("listed above");
            self.reindex(&id);
            for m in group.members.values() {
                if let Some(w) = m.awaiting_join {
                    self.respond_join_error(w, &m.member_id, not_coordinator);
                }
                if let Some(w) = m.awaiting_sync {
                    self.respond_sync_error(w, not_coordinator);
                }
            }
        }
    }

    /// Outcome for a group id: the partition if we serve it now, else the error code.
    fn coordinator_for(&self, group_id: &str) -> Result<i32, i16> {
        let partition = self.partition_for(group_id);
        match self.partitions.get(&partition) {
            Some(PartitionLoad::Loaded) => Ok(partition),
            Some(PartitionLoad::Loading) => Err(ResponseError::CoordinatorLoadInProgress.code()),
            None => Err(ResponseError::NotCoordinator.code()),
        }
    }

    // ---- Requests ----------------------------------------------------------------------------

    /// Handles one request. Responses may come back now or from a later call.
    pub fn handle(
        &mut self,
        ctx: RequestContext,
        request: GroupRequest,
        now_ms: i64,
    ) -> Vec<Effect> {
        match request {
            GroupRequest::JoinGroup(r) => self.join_group(&ctx, r, now_ms),
            GroupRequest::SyncGroup(r) => self.sync_group(&ctx, r, now_ms),
            GroupRequest::Heartbeat(r) => self.heartbeat(&ctx, r, now_ms),
            GroupRequest::LeaveGroup(r) => self.leave_group(&ctx, r, now_ms),
            GroupRequest::OffsetCommit(r) => self.offset_commit(&ctx, r, now_ms),
            GroupRequest::OffsetFetch(r) => self.offset_fetch(&ctx, r),
            GroupRequest::DescribeGroups(r) => self.describe_groups(&ctx, r),
            GroupRequest::ListGroups(r) => self.list_groups(&ctx, r),
            GroupRequest::DeleteGroups(r) => self.delete_groups(&ctx, r, now_ms),
            GroupRequest::OffsetDelete(r) => self.offset_delete(&ctx, r, now_ms),
            GroupRequest::TxnOffsetCommit(r) => self.txn_offset_commit(&ctx, r, now_ms),
        }
        std::mem::take(&mut self.effects)
    }

    // ---- Time --------------------------------------------------------------------------------

    /// The earliest time at which `tick` has work, if any.
    pub fn next_deadline_ms(&self) -> Option<i64> {
        let groups = self.timers.first().map(|(deadline, _)| *deadline);
        debug_assert_eq!(
            groups,
            self.scan_next_deadline_ms(),
            "timer index out of date"
        );
        groups.into_iter().chain(self.next_expiry_check_ms).min()
    }

    /// The timer index recomputed from scratch (debug check of the index).
    fn scan_next_deadline_ms(&self) -> Option<i64> {
        self.groups
            .values()
            .filter(|g| self.partitions.get(&g.partition) == Some(&PartitionLoad::Loaded))
            .filter_map(Group::next_deadline_ms)
            .min()
    }

    /// Runs every timer due at `now_ms`: session expiry, rebalance and sync timeouts, the
    /// initial rebalance delay, offset retention.
    pub fn tick(&mut self, now_ms: i64) -> Vec<Effect> {
        // Handling a timer can arm another one for `now_ms` (a zero timeout); a few rounds
        // settle that without risking a livelock.
        for _ in 0..4 {
            let due: Vec<String> = self
                .timers
                .iter()
                .take_while(|(deadline, _)| *deadline <= now_ms)
                .map(|(_, id)| id.clone())
                .collect();
            if due.is_empty() {
                break;
            }
            for id in due {
                self.with_group(&id, |c, g| c.run_group_timers(g, now_ms));
            }
        }
        if self.next_expiry_check_ms.is_some_and(|t| t <= now_ms) {
            self.expire_offsets(now_ms);
            self.next_expiry_check_ms =
                Some(now_ms + self.config.offsets_retention_check_interval_ms);
        }
        std::mem::take(&mut self.effects)
    }

    // ---- Appends -----------------------------------------------------------------------------

    /// The driver reports how `append_id` ended; responses waiting on it go out now.
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
        // A partition we no longer lead cannot vouch for what was appended.
        let outcome = if self.partitions.get(&pending.partition) == Some(&PartitionLoad::Loaded) {
            outcome
        } else if outcome == AppendOutcome::Appended {
            AppendOutcome::NotLeader
        } else {
            outcome
        };
        match pending.after {
            AfterAppend::Nothing => {}
            AfterAppend::OffsetCommit(commit) => self.complete_commit(commit, outcome, now_ms),
            AfterAppend::TxnOffsetCommit(commit) => self.complete_txn_commit(commit, outcome),
            AfterAppend::SyncLeader {
                group_id,
                generation_id,
                assignments,
            } => {
                self.with_group(&group_id, |c, g| {
                    c.complete_sync_leader(g, generation_id, assignments, outcome, now_ms)
                });
            }
            AfterAppend::StaticRejoin(pending) => {
                let group_id = pending.group_id.clone();
                self.with_group(&group_id, |c, g| {
                    c.complete_static_rejoin(g, pending, outcome, now_ms)
                });
            }
            AfterAppend::OffsetDelete {
                request_id,
                api_version,
                mut response,
            } => {
                if outcome != AppendOutcome::Appended {
                    response.error_code = outcome.group_error();
                    response.topics.clear();
                }
                self.respond(
                    request_id,
                    api_version,
                    GroupResponse::OffsetDelete(response),
                );
            }
            AfterAppend::DeleteGroups {
                aggregate,
                group_ids,
            } => self.complete_delete_groups(aggregate, group_ids, outcome),
        }
        std::mem::take(&mut self.effects)
    }

    /// A topic was deleted: its committed offsets go, in memory and on disk. Partitions still
    /// loading remember the topic and purge it when their load completes.
    pub fn on_topic_deleted(&mut self, topic: &str, now_ms: i64) -> Vec<Effect> {
        for (partition, load) in &self.partitions {
            if *load == PartitionLoad::Loading {
                let topics = self.deleted_while_loading.entry(*partition).or_default();
                // Bounded by the number of topics deleted during one load.
                topics.insert(topic.to_string());
            }
        }
        let loaded: Vec<i32> = self
            .partitions
            .iter()
            .filter(|(_, l)| **l == PartitionLoad::Loaded)
            .map(|(p, _)| *p)
            .collect();
        let topics = BTreeSet::from([topic.to_string()]);
        for partition in loaded {
            self.purge_topics(partition, &topics, now_ms);
        }
        std::mem::take(&mut self.effects)
    }

    /// Drops the offsets of `topics` held by groups of `partition`, with tombstones.
    fn purge_topics(&mut self, partition: i32, topics: &BTreeSet<String>, now_ms: i64) {
        let mut tombstones = Vec::new();
        for group in self
            .groups
            .values_mut()
            .filter(|g| g.partition == partition)
        {
            let doomed: Vec<(String, i32)> = group
                .offsets
                .keys()
                .filter(|(t, _)| topics.contains(t))
                .cloned()
                .collect();
            for key in doomed {
                group.offsets.remove(&key);
                tombstones.push(OffsetsRecord {
                    key: records::encode_offset_key(&group.group_id, &key.0, key.1),
                    value: None,
                    timestamp_ms: now_ms,
                });
            }
        }
        if !tombstones.is_empty() {
            self.append(partition, tombstones, AfterAppend::Nothing);
        }
    }

    // ---- Internal plumbing -------------------------------------------------------------------

    /// Runs `f` with the group taken out of the map, so `f` can use `&mut self` freely. The
    /// group goes back unless `f` marked it Dead.
    fn with_group<R>(
        &mut self,
        group_id: &str,
        f: impl FnOnce(&mut Self, &mut Group) -> R,
    ) -> Option<R> {
        let mut group = self.groups.remove(group_id)?;
        let result = f(self, &mut group);
        if group.state != GroupState::Dead {
            self.groups.insert(group_id.to_string(), group);
        }
        self.reindex(group_id);
        Some(result)
    }

    /// Re-files `group_id` in the timer index after its state changed or it went away.
    fn reindex(&mut self, group_id: &str) {
        if let Some(old) = self.timer_of.remove(group_id) {
            let removed = self.timers.remove(&(old, group_id.to_string()));
            assert!(removed, "timer index and its reverse map disagree");
        }
        let Some(group) = self.groups.get(group_id) else {
            return;
        };
        if self.partitions.get(&group.partition) != Some(&PartitionLoad::Loaded) {
            return;
        }
        if let Some(deadline) = group.next_deadline_ms() {
            self.timers.insert((deadline, group_id.to_string()));
            self.timer_of.insert(group_id.to_string(), deadline);
        }
    }

    fn respond(&mut self, request_id: RequestId, api_version: i16, response: GroupResponse) {
        let response = versions::fit(response, api_version);
        self.effects.push(Effect::Respond {
            request_id,
            api_version,
            response,
        });
    }

    fn append(
        &mut self,
        partition: i32,
        records: Vec<OffsetsRecord>,
        after: AfterAppend,
    ) -> AppendId {
        self.append_as(partition, None, records, after)
    }

    /// [`Coordinator::append`] as a transactional batch of `producer` (id, epoch).
    fn append_transactional(
        &mut self,
        partition: i32,
        producer: (i64, i16),
        records: Vec<OffsetsRecord>,
        after: AfterAppend,
    ) -> AppendId {
        self.append_as(partition, Some(producer), records, after)
    }

    fn append_as(
        &mut self,
        partition: i32,
        producer: Option<(i64, i16)>,
        records: Vec<OffsetsRecord>,
        after: AfterAppend,
    ) -> AppendId {
        assert!(!records.is_empty(), "appends carry at least one record");
        let append_id = AppendId(self.next_append_id);
        self.next_append_id += 1;
        self.pending_appends
            .insert(append_id, PendingAppend { partition, after });
        self.effects.push(Effect::Append {
            append_id,
            partition,
            records,
            producer,
        });
        append_id
    }

    /// Kafka-style member id: `<client or instance id>-<uuid>`, the uuid from the seeded
    /// generator (splitmix64) so a run is reproducible.
    fn generate_member_id(&mut self, prefix: &str) -> String {
        let mut next = || {
            self.member_id_state = self.member_id_state.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = self.member_id_state;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^ (z >> 31)
        };
        let (hi, lo) = (next(), next());
        format!(
            "{prefix}-{:08x}-{:04x}-4{:03x}-{:04x}-{:012x}",
            hi >> 32,
            (hi >> 16) & 0xffff,
            hi & 0x0fff,
            (lo >> 48) & 0x3fff | 0x8000,
            lo & 0xffff_ffff_ffff
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn member_ids_are_seeded_and_distinct() {
        let mut a = Coordinator::new(GroupConfig::default(), 7).unwrap();
        let mut b = Coordinator::new(GroupConfig::default(), 7).unwrap();
        let a1 = a.generate_member_id("c");
        assert_eq!(a1, b.generate_member_id("c"));
        assert_ne!(a1, a.generate_member_id("c"));
        assert!(a1.starts_with("c-"));
        assert_eq!(a1.len(), 2 + 36);
    }
}

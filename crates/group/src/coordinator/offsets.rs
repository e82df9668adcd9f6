//! Committed offsets: OffsetCommit, OffsetFetch, OffsetDelete and retention.
//!
//! Owns the rules for who may commit (members of the current generation, or anyone while the
//! group is Empty: "simple" consumers using assign()), what a fetch returns, and when offsets
//! expire (`offsets.retention.minutes` after an Empty group went empty, or after the commit
//! for groups with no protocol; unsubscribed topics of Stable consumer groups). A commit only
//! becomes visible, and is only acknowledged, after its record is durable.

use std::collections::{BTreeMap, BTreeSet};

use kafka_protocol::messages::offset_commit_response::{
    OffsetCommitResponsePartition, OffsetCommitResponseTopic,
};
use kafka_protocol::messages::offset_delete_response::{
    OffsetDeleteResponsePartition, OffsetDeleteResponseTopic,
};
use kafka_protocol::messages::offset_fetch_response::{
    OffsetFetchResponseGroup, OffsetFetchResponsePartition, OffsetFetchResponsePartitions,
    OffsetFetchResponseTopic, OffsetFetchResponseTopics,
};
use kafka_protocol::messages::{
    OffsetCommitRequest, OffsetCommitResponse, OffsetDeleteRequest, OffsetDeleteResponse,
    OffsetFetchRequest, OffsetFetchResponse, TopicName,
};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;

use super::{AfterAppend, AppendOutcome, Coordinator, GroupResponse, RequestContext, RequestId};
use crate::config::STRING_BYTES_MAX;
use crate::group::{CommittedOffset, Group, GroupState};
use crate::records::{self, OffsetCommitValue, OffsetsRecord};

/// A commit whose records are being appended.
#[derive(Debug)]
pub(super) struct PendingCommit {
    request_id: RequestId,
    api_version: i16,
    group_id: String,
    partition: i32,
    /// Partitions being written, applied to memory once durable.
    offsets: Vec<((String, i32), CommittedOffset)>,
    /// Per topic, per partition error (0 for those being written).
    results: Vec<(String, Vec<(i32, i16)>)>,
}

/// Per topic, per partition error (0 for those being written).
pub(super) type CommitResults = Vec<(String, Vec<(i32, i16)>)>;

/// An OffsetCommit or a TxnOffsetCommit, decoded (versions applied).
pub(super) struct CommitRequest {
    pub group_id: String,
    pub member_id: String,
    pub instance: Option<String>,
    pub generation: i32,
    /// A TxnOffsetCommit: Kafka's `doTxnCommitOffsets` rules.
    pub transactional: bool,
    pub expire_timestamp_ms: Option<i64>,
    pub topics: Vec<(String, Vec<CommitPartition>)>,
}

pub(super) struct CommitPartition {
    pub partition: i32,
    pub offset: i64,
    pub leader_epoch: i32,
    pub metadata: String,
}

impl CommitRequest {
    /// Every partition of the request failed with `code`.
    fn fail_all(&self, code: i16) -> CommitResults {
        self.topics
            .iter()
            .map(|(t, ps)| (t.clone(), ps.iter().map(|p| (p.partition, code)).collect()))
            .collect()
    }
}

/// A checked commit: its `__consumer_offsets` partition, the offsets and records to write
/// (none if every partition failed) and the per-partition results.
pub(super) struct PreparedCommit {
    pub group_id: String,
    pub partition: i32,
    pub offsets: Vec<((String, i32), CommittedOffset)>,
    pub records: Vec<OffsetsRecord>,
    pub results: CommitResults,
}

/// One group's fetch result: group error, then per topic the partitions.
type FetchResult = (i16, Vec<(String, Vec<FetchedPartition>)>);

struct FetchedPartition {
    partition: i32,
    offset: i64,
    leader_epoch: i32,
    metadata: String,
    error: i16,
}

fn s(v: &str) -> StrBytes {
    StrBytes::from_string(v.to_string())
}

impl Coordinator {
    // ---- OffsetCommit ------------------------------------------------------------------------

    pub(super) fn offset_commit(
        &mut self,
        ctx: &RequestContext,
        req: OffsetCommitRequest,
        now_ms: i64,
    ) {
        let v = ctx.api_version;
        let commit = CommitRequest {
            group_id: req.group_id.0.to_string(),
            member_id: req.member_id.to_string(),
            instance: req.group_instance_id.as_ref().map(|s| s.to_string()),
            generation: req.generation_id_or_member_epoch,
            transactional: false,
            expire_timestamp_ms: (v <= 4 && req.retention_time_ms >= 0)
                .then(|| now_ms + req.retention_time_ms),
            topics: req
                .topics
                .iter()
                .map(|t| {
                    let partitions = t.partitions.iter().map(|p| CommitPartition {
                        partition: p.partition_index,
                        offset: p.committed_offset,
                        leader_epoch: if v >= 6 { p.committed_leader_epoch } else { -1 },
                        metadata: p.committed_metadata.as_deref().unwrap_or("").to_string(),
                    });
                    (t.name.0.to_string(), partitions.collect())
                })
                .collect(),
        };
        let prepared = match self.prepare_commit(v, commit, now_ms) {
            Ok(p) => p,
            Err(results) => return self.respond_commit(ctx.request_id, v, results),
        };
        if prepared.records.is_empty() {
            return self.respond_commit(ctx.request_id, v, prepared.results);
        }
        let pending = PendingCommit {
            request_id: ctx.request_id,
            api_version: v,
            group_id: prepared.group_id,
            partition: prepared.partition,
            offsets: prepared.offsets,
            results: prepared.results,
        };
        let partition = prepared.partition;
        self.append(
            partition,
            prepared.records,
            AfterAppend::OffsetCommit(pending),
        );
    }

    /// Checks an OffsetCommit or a TxnOffsetCommit (`commit.transactional`, Kafka's
    /// `doTxnCommitOffsets`) and turns it into records; the offsets written count as pending
    /// commits of the group. `Err`: the whole request failed, with these per-partition results.
    pub(super) fn prepare_commit(
        &mut self,
        v: i16,
        commit: CommitRequest,
        now_ms: i64,
    ) -> Result<PreparedCommit, CommitResults> {
        let group_id = &commit.group_id;
        // Kafka 4.1 accepts "" in OffsetCommit (a simple group named ""), unlike JoinGroup and
        // TxnOffsetCommit.
        if (commit.transactional && group_id.is_empty()) || group_id.len() > STRING_BYTES_MAX {
            return Err(commit.fail_all(ResponseError::InvalidGroupId.code()));
        }
        let partition = self
            .coordinator_for(group_id)
            .map_err(|code| commit.fail_all(code))?;
        if self.pending_appends.len() >= self.config.pending_appends_max {
            return Err(commit.fail_all(ResponseError::CoordinatorNotAvailable.code()));
        }
        let generation = commit.generation;
        if !self.groups.contains_key(group_id) {
            if generation >= 0 && !commit.transactional {
                // v9+ says the group is unknown; older clients only understand this one.
                let code = if v >= 9 {
                    ResponseError::GroupIdNotFound.code()
                } else {
                    ResponseError::IllegalGeneration.code()
                };
                return Err(commit.fail_all(code));
            }
            if self.groups.len() >= self.config.groups_max {
                return Err(commit.fail_all(ResponseError::CoordinatorNotAvailable.code()));
            }
            // A consumer without group management (assign()), an admin client or a
            // transactional producer: the group exists only to hold offsets.
            self.groups.insert(
                group_id.clone(),
                Group::new(group_id.clone(), partition, now_ms),
            );
        }
        let (member_id, instance) = (&commit.member_id, commit.instance.as_deref());
        let transactional = commit.transactional;
        self.with_group(group_id, |_, g| {
            validate_commit(g, member_id, instance, generation, transactional)?;
            if let Some(m) = g.members.get_mut(member_id).filter(|_| !transactional) {
                // A commit proves the member is alive, as a heartbeat does.
                m.session_deadline_ms = now_ms + i64::from(m.session_timeout_ms);
            }
            Ok(())
        })
        .expect("group present")
        .map_err(|code| commit.fail_all(code))?;

        let mut offsets = Vec::new();
        let mut records_out = Vec::new();
        let mut results = Vec::new();
        for (name, topic) in commit.topics {
            let mut partitions = Vec::with_capacity(topic.len());
            for p in topic {
                if p.metadata.len() > self.config.offset_metadata_max_bytes {
                    let code = ResponseError::OffsetMetadataTooLarge.code();
                    partitions.push((p.partition, code));
                    continue;
                }
                if name.len() > STRING_BYTES_MAX / 2 {
                    let code = ResponseError::InvalidTopicException.code();
                    partitions.push((p.partition, code));
                    continue;
                }
                let value = CommittedOffset {
                    offset: p.offset,
                    leader_epoch: p.leader_epoch,
                    metadata: p.metadata,
                    commit_timestamp_ms: now_ms,
                    expire_timestamp_ms: commit.expire_timestamp_ms,
                };
                records_out.push(OffsetsRecord {
                    key: records::encode_offset_key(group_id, &name, p.partition),
                    value: Some(records::encode_offset_value(&OffsetCommitValue {
                        offset: value.offset,
                        leader_epoch: value.leader_epoch,
                        metadata: value.metadata.clone(),
                        commit_timestamp_ms: value.commit_timestamp_ms,
                        expire_timestamp_ms: value.expire_timestamp_ms,
                    })),
                    timestamp_ms: now_ms,
                });
                offsets.push(((name.clone(), p.partition), value));
                partitions.push((p.partition, 0));
            }
            results.push((name, partitions));
        }
        if !records_out.is_empty() {
            let g = self.groups.get_mut(group_id).expect("group present");
            for (key, _) in &offsets {
                *g.pending_commits.entry(key.clone()).or_default() += 1;
            }
        }
        Ok(PreparedCommit {
            group_id: commit.group_id,
            partition,
            offsets,
            records: records_out,
            results,
        })
    }

    pub(super) fn complete_commit(
        &mut self,
        commit: PendingCommit,
        outcome: AppendOutcome,
        now_ms: i64,
    ) {
        let PendingCommit {
            request_id,
            api_version,
            group_id,
            partition,
            offsets,
            mut results,
        } = commit;
        let loaded = self.coordinator_for(&group_id).is_ok();
        if loaded && !self.groups.contains_key(&group_id) {
            // Deleted while the commit was in flight: the durable commit recreates it, as
            // replaying the log would.
            self.groups.insert(
                group_id.clone(),
                Group::new(group_id.clone(), partition, now_ms),
            );
        }
        if let Some(g) = self.groups.get_mut(&group_id) {
            for (key, value) in offsets {
                if let Some(n) = g.pending_commits.get_mut(&key) {
                    *n -= 1;
                    if *n == 0 {
                        g.pending_commits.remove(&key);
                    }
                }
                if outcome == AppendOutcome::Appended {
                    g.offsets.insert(key, value);
                    self.totals.offset_commits += 1;
                }
            }
        }
        if outcome != AppendOutcome::Appended {
            let code = outcome.commit_error();
            for (_, partitions) in &mut results {
                for (_, error) in partitions.iter_mut().filter(|(_, e)| *e == 0) {
                    *error = code;
                }
            }
        }
        self.respond_commit(request_id, api_version, results);
    }

    fn respond_commit(
        &mut self,
        request_id: RequestId,
        v: i16,
        results: Vec<(String, Vec<(i32, i16)>)>,
    ) {
        let topics = results
            .into_iter()
            .map(|(name, partitions)| {
                OffsetCommitResponseTopic::default()
                    .with_name(TopicName(s(&name)))
                    .with_partitions(
                        partitions
                            .into_iter()
                            .map(|(p, e)| {
                                OffsetCommitResponsePartition::default()
                                    .with_partition_index(p)
                                    .with_error_code(e)
                            })
                            .collect(),
                    )
            })
            .collect();
        let response = OffsetCommitResponse::default().with_topics(topics);
        self.respond(request_id, v, GroupResponse::OffsetCommit(response));
    }

    // ---- OffsetFetch -------------------------------------------------------------------------

    pub(super) fn offset_fetch(&mut self, ctx: &RequestContext, req: OffsetFetchRequest) {
        let v = ctx.api_version;
        let require_stable = v >= 7 && req.require_stable;
        if v >= 8 {
            let groups = req
                .groups
                .iter()
                .map(|rg| {
                    let topics = rg.topics.as_ref().map(|ts| {
                        ts.iter()
                            .map(|t| (t.name.0.to_string(), t.partition_indexes.clone()))
                            .collect::<Vec<_>>()
                    });
                    let (error, topics) =
                        self.fetch_group(&rg.group_id.0, topics.as_deref(), require_stable);
                    OffsetFetchResponseGroup::default()
                        .with_group_id(rg.group_id.clone())
                        .with_error_code(error)
                        .with_topics(
                            topics
                                .into_iter()
                                .map(|(name, ps)| {
                                    OffsetFetchResponseTopics::default()
                                        .with_name(TopicName(s(&name)))
                                        .with_partitions(
                                            ps.into_iter().map(partitions_v8).collect(),
                                        )
                                })
                                .collect(),
                        )
                })
                .collect();
            let response = OffsetFetchResponse::default().with_groups(groups);
            return self.respond(ctx.request_id, v, GroupResponse::OffsetFetch(response));
        }
        let topics = req.topics.as_ref().map(|ts| {
            ts.iter()
                .map(|t| (t.name.0.to_string(), t.partition_indexes.clone()))
                .collect::<Vec<_>>()
        });
        let (error, fetched) = self.fetch_group(&req.group_id.0, topics.as_deref(), require_stable);
        let mut response = OffsetFetchResponse::default();
        if error != 0 && v < 2 {
            // v1 has no group-level error: report it on every requested partition.
            let fetched = topics.unwrap_or_default().into_iter().map(|(name, ps)| {
                let ps = ps
                    .into_iter()
                    .map(|p| FetchedPartition {
                        partition: p,
                        offset: -1,
                        leader_epoch: -1,
                        metadata: String::new(),
                        error,
                    })
                    .collect();
                (name, ps)
            });
            response.topics = fetched.map(topic_v1).collect();
        } else {
            response.error_code = error;
            response.topics = fetched.into_iter().map(topic_v1).collect();
        }
        self.respond(ctx.request_id, v, GroupResponse::OffsetFetch(response));
    }

    /// Offsets of one group: the listed partitions (unknown ones as -1), or all when `None`.
    fn fetch_group(
        &self,
        group_id: &str,
        topics: Option<&[(String, Vec<i32>)]>,
        require_stable: bool,
    ) -> FetchResult {
        if let Err(code) = self.coordinator_for(group_id) {
            return (code, Vec::new());
        }
        let group = self
            .groups
            .get(group_id)
            .filter(|g| g.state != GroupState::Dead);
        let lookup = |topic: &str, partition: i32| -> FetchedPartition {
            let unstable = require_stable
                && group.is_some_and(|g| {
                    let key = (topic.to_string(), partition);
                    g.pending_commits.contains_key(&key)
                        || super::txn_offsets::has_pending_txn_offset(&g.pending_txn_offsets, &key)
                });
            let committed = group.and_then(|g| g.offsets.get(&(topic.to_string(), partition)));
            match committed {
                _ if unstable => FetchedPartition {
                    partition,
                    offset: -1,
                    leader_epoch: -1,
                    metadata: String::new(),
                    error: ResponseError::UnstableOffsetCommit.code(),
                },
                Some(c) => FetchedPartition {
                    partition,
                    offset: c.offset,
                    leader_epoch: c.leader_epoch,
                    metadata: c.metadata.clone(),
                    error: 0,
                },
                None => FetchedPartition {
                    partition,
                    offset: -1,
                    leader_epoch: -1,
                    metadata: String::new(),
                    error: 0,
                },
            }
        };
        let result = match topics {
            Some(topics) => topics
                .iter()
                .map(|(name, ps)| (name.clone(), ps.iter().map(|&p| lookup(name, p)).collect()))
                .collect(),
            None => {
                let mut by_topic: BTreeMap<String, Vec<FetchedPartition>> = BTreeMap::new();
                if let Some(g) = group {
                    for (topic, partition) in g.offsets.keys() {
                        by_topic
                            .entry(topic.clone())
                            .or_default()
                            .push(lookup(topic, *partition));
                    }
                }
                by_topic.into_iter().collect()
            }
        };
        (0, result)
    }

    // ---- OffsetDelete ------------------------------------------------------------------------

    pub(super) fn offset_delete(
        &mut self,
        ctx: &RequestContext,
        req: OffsetDeleteRequest,
        now_ms: i64,
    ) {
        let group_id = req.group_id.0.to_string();
        let error_response = |code: i16| OffsetDeleteResponse::default().with_error_code(code);
        if let Err(code) = self.coordinator_for(&group_id) {
            let r = error_response(code);
            return self.respond(
                ctx.request_id,
                ctx.api_version,
                GroupResponse::OffsetDelete(r),
            );
        }
        let outcome = self.with_group(&group_id, |_, g| {
            match g.state {
                GroupState::Dead => return Err(ResponseError::GroupIdNotFound.code()),
                GroupState::Empty => {}
                _ if !g.uses_consumer_protocol() => return Err(ResponseError::NonEmptyGroup.code()),
                _ => {}
            }
            let mut tombstones = Vec::new();
            let topics = req
                .topics
                .iter()
                .map(|t| {
                    let name = t.name.0.to_string();
                    let subscribed = g.is_subscribed_to(&name);
                    let partitions = t
                        .partitions
                        .iter()
                        .map(|p| {
                            let code = if subscribed {
                                ResponseError::GroupSubscribedToTopic.code()
                            } else {
                                if g.offsets
                                    .remove(&(name.clone(), p.partition_index))
                                    .is_some()
                                {
                                    tombstones.push(records::encode_offset_key(
                                        &g.group_id,
                                        &name,
                                        p.partition_index,
                                    ));
                                }
                                0
                            };
                            OffsetDeleteResponsePartition::default()
                                .with_partition_index(p.partition_index)
                                .with_error_code(code)
                        })
                        .collect();
                    OffsetDeleteResponseTopic::default()
                        .with_name(t.name.clone())
                        .with_partitions(partitions)
                })
                .collect();
            Ok((g.partition, tombstones, topics))
        });
        match outcome {
            None => {
                let r = error_response(ResponseError::GroupIdNotFound.code());
                self.respond(
                    ctx.request_id,
                    ctx.api_version,
                    GroupResponse::OffsetDelete(r),
                );
            }
            Some(Err(code)) => {
                let r = error_response(code);
                self.respond(
                    ctx.request_id,
                    ctx.api_version,
                    GroupResponse::OffsetDelete(r),
                );
            }
            Some(Ok((partition, tombstones, topics))) => {
                let response = OffsetDeleteResponse::default().with_topics(topics);
                if tombstones.is_empty() {
                    return self.respond(
                        ctx.request_id,
                        ctx.api_version,
                        GroupResponse::OffsetDelete(response),
                    );
                }
                let records = tombstones
                    .into_iter()
                    .map(|key| OffsetsRecord {
                        key,
                        value: None,
                        timestamp_ms: now_ms,
                    })
                    .collect();
                let after = AfterAppend::OffsetDelete {
                    request_id: ctx.request_id,
                    api_version: ctx.api_version,
                    response,
                };
                self.append(partition, records, after);
            }
        }
    }

    // ---- Retention ---------------------------------------------------------------------------

    /// Expires offsets past retention and deletes Empty groups left with nothing.
    pub(super) fn expire_offsets(&mut self, now_ms: i64) {
        let retention_ms = self.config.offsets_retention_ms;
        let mut by_partition: BTreeMap<i32, Vec<OffsetsRecord>> = BTreeMap::new();
        let mut dead_groups = Vec::new();
        let loaded: BTreeSet<i32> = self
            .partitions
            .iter()
            .filter(|(_, l)| **l == super::PartitionLoad::Loaded)
            .map(|(p, _)| *p)
            .collect();
        for g in self
            .groups
            .values_mut()
            .filter(|g| loaded.contains(&g.partition))
        {
            // Kafka's offsetExpirationCondition for classic groups: which timestamp an
            // offset's age counts from, if its offsets may expire at all right now.
            let group_ts = g.state_timestamp_ms;
            let base_of = |o: &CommittedOffset| -> Option<i64> {
                match &g.protocol_type {
                    None => Some(o.commit_timestamp_ms),
                    Some(_) if g.state == GroupState::Empty => Some(if group_ts >= 0 {
                        group_ts
                    } else {
                        o.commit_timestamp_ms
                    }),
                    Some(_)
                        if g.state == GroupState::Stable
                            && g.uses_consumer_protocol()
                            && g.subscribed_topics.is_some() =>
                    {
                        Some(o.commit_timestamp_ms)
                    }
                    Some(_) => None,
                }
            };
            {
                let only_unsubscribed = g.state == GroupState::Stable;
                let expired: Vec<(String, i32)> = g
                    .offsets
                    .iter()
                    .filter(|(key, _)| !g.pending_commits.contains_key(*key))
                    .filter(|(key, _)| !(only_unsubscribed && g.is_subscribed_to(&key.0)))
                    .filter(|(_, o)| match (o.expire_timestamp_ms, base_of(o)) {
                        (_, None) => false,
                        (Some(t), Some(_)) => now_ms >= t,
                        (None, Some(base)) => now_ms - base >= retention_ms,
                    })
                    .map(|(key, _)| key.clone())
                    .collect();
                self.totals.offsets_expired += expired.len() as u64;
                for key in expired {
                    g.offsets.remove(&key);
                    by_partition
                        .entry(g.partition)
                        .or_default()
                        .push(OffsetsRecord {
                            key: records::encode_offset_key(&g.group_id, &key.0, key.1),
                            value: None,
                            timestamp_ms: now_ms,
                        });
                }
            }
            if g.state == GroupState::Empty
                && g.offsets.is_empty()
                && g.pending_commits.is_empty()
                && g.pending_join_members.is_empty()
            {
                by_partition
                    .entry(g.partition)
                    .or_default()
                    .push(OffsetsRecord {
                        key: records::encode_group_key(&g.group_id),
                        value: None,
                        timestamp_ms: now_ms,
                    });
                dead_groups.push(g.group_id.clone());
            }
        }
        for id in dead_groups {
            self.groups.remove(&id);
            self.reindex(&id);
        }
        for (partition, recs) in by_partition {
            self.append(partition, recs, AfterAppend::Nothing);
        }
    }
}

/// Who may commit. OffsetCommit: members of the current generation, or anyone while the
/// group is Empty (simple consumers using assign(), admin clients). TxnOffsetCommit
/// (`transactional`, Kafka's `doTxnCommitOffsets`, KIP-447): a member id must be a member (or
/// the static member of its instance id), and a generation must be the group's current one.
fn validate_commit(
    g: &Group,
    member_id: &str,
    instance: Option<&str>,
    generation: i32,
    transactional: bool,
) -> Result<(), i16> {
    if g.state == GroupState::Dead {
        return Err(ResponseError::CoordinatorNotAvailable.code());
    }
    if transactional {
        if !member_id.is_empty() || instance.is_some() {
            super::membership::validate_member(g, member_id, instance)?;
        }
        if generation >= 0 && generation != g.generation_id {
            return Err(ResponseError::IllegalGeneration.code());
        }
        return Ok(());
    }
    if generation < 0 && g.state == GroupState::Empty {
        return Ok(()); // Admin client or assign() consumer on an empty group.
    }
    if generation >= 0 || !member_id.is_empty() || instance.is_some() {
        super::membership::validate_member(g, member_id, instance)?;
        if generation != g.generation_id {
            return Err(ResponseError::IllegalGeneration.code());
        }
    } else if g.state != GroupState::Empty {
        return Err(ResponseError::UnknownMemberId.code());
    }
    if g.state == GroupState::CompletingRebalance {
        // The member knows the new generation but has no assignment yet.
        return Err(ResponseError::RebalanceInProgress.code());
    }
    Ok(())
}

fn topic_v1((name, ps): (String, Vec<FetchedPartition>)) -> OffsetFetchResponseTopic {
    OffsetFetchResponseTopic::default()
        .with_name(TopicName(s(&name)))
        .with_partitions(
            ps.into_iter()
                .map(|p| {
                    OffsetFetchResponsePartition::default()
                        .with_partition_index(p.partition)
                        .with_committed_offset(p.offset)
                        .with_committed_leader_epoch(p.leader_epoch)
                        .with_metadata(Some(s(&p.metadata)))
                        .with_error_code(p.error)
                })
                .collect(),
        )
}

fn partitions_v8(p: FetchedPartition) -> OffsetFetchResponsePartitions {
    OffsetFetchResponsePartitions::default()
        .with_partition_index(p.partition)
        .with_committed_offset(p.offset)
        .with_committed_leader_epoch(p.leader_epoch)
        .with_metadata(Some(s(&p.metadata)))
        .with_error_code(p.error)
}

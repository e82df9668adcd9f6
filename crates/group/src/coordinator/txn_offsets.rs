//! Transactional offset commits: TxnOffsetCommit, and their fate at the transaction's marker.
//!
//! Owns: the rules for who may commit offsets inside a transaction (Kafka's
//! `doTxnCommitOffsets`: the group is created if missing, a member id must be a member, a
//! generation must be the current one; KIP-447 from v3), the offsets pending per producer
//! until the transaction ends, and what a marker on a `__consumer_offsets` partition does to
//! them (commit: they become the committed offsets; abort: they are dropped). The records are a
//! transactional batch of the producer ([`Effect::Append`] with `producer`), so a reload finds
//! them pending and applies the markers that follow them in the log.
//!
//! Must never: show a pending offset to OffsetFetch (with `require_stable` the partition answers
//! UNSTABLE_OFFSET_COMMIT until the marker), or apply one before its record is durable.

use std::collections::BTreeMap;

use kafka_protocol::messages::txn_offset_commit_response::{
    TxnOffsetCommitResponsePartition, TxnOffsetCommitResponseTopic,
};
use kafka_protocol::messages::{TopicName, TxnOffsetCommitRequest, TxnOffsetCommitResponse};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;

use super::{AfterAppend, AppendOutcome, Coordinator, GroupResponse, RequestContext, RequestId};
use crate::config::STRING_BYTES_MAX;
use crate::group::{CommittedOffset, Group, GroupState};
use crate::records::{self, OffsetCommitValue, OffsetsRecord};

/// A transactional commit whose records are being appended.
#[derive(Debug)]
pub(super) struct PendingTxnCommit {
    request_id: RequestId,
    api_version: i16,
    group_id: String,
    producer_id: i64,
    offsets: Vec<((String, i32), CommittedOffset)>,
    results: Vec<(String, Vec<(i32, i16)>)>,
}

impl Coordinator {
    pub(super) fn txn_offset_commit(
        &mut self,
        ctx: &RequestContext,
        req: TxnOffsetCommitRequest,
        now_ms: i64,
    ) {
        let v = ctx.api_version;
        let group_id = req.group_id.0.to_string();
        let requested: Vec<(String, Vec<i32>)> = req
            .topics
            .iter()
            .map(|t| {
                let ps = t.partitions.iter().map(|p| p.partition_index).collect();
                (t.name.0.to_string(), ps)
            })
            .collect();
        let fail_all = |c: &mut Self, code: i16| {
            let results = requested
                .iter()
                .map(|(t, ps)| (t.clone(), ps.iter().map(|&p| (p, code)).collect()))
                .collect();
            c.respond_txn_commit(ctx.request_id, v, results);
        };
        if group_id.is_empty() || group_id.len() > STRING_BYTES_MAX {
            return fail_all(self, ResponseError::InvalidGroupId.code());
        }
        let partition = match self.coordinator_for(&group_id) {
            Ok(p) => p,
            Err(code) => return fail_all(self, code),
        };
        if self.pending_appends.len() >= self.config.pending_appends_max {
            return fail_all(self, ResponseError::CoordinatorNotAvailable.code());
        }
        if !self.groups.contains_key(&group_id) {
            if self.groups.len() >= self.config.groups_max {
                return fail_all(self, ResponseError::CoordinatorNotAvailable.code());
            }
            // Kafka creates the group to hold the offsets, as for a simple consumer.
            self.groups.insert(
                group_id.clone(),
                Group::new(group_id.clone(), partition, now_ms),
            );
        }
        let (member_id, generation) = if v >= 3 {
            (req.member_id.to_string(), req.generation_id)
        } else {
            (String::new(), -1)
        };
        let instance = req
            .group_instance_id
            .as_ref()
            .filter(|_| v >= 3)
            .map(|s| s.to_string());
        let group = &self.groups[&group_id];
        let validation = validate_txn_commit(group, &member_id, instance.as_deref(), generation);
        if let Err(code) = validation {
            return fail_all(self, code);
        }

        let mut offsets = Vec::new();
        let mut records_out = Vec::new();
        let mut results = Vec::new();
        for topic in &req.topics {
            let name = topic.name.0.to_string();
            let mut partitions = Vec::with_capacity(topic.partitions.len());
            for p in &topic.partitions {
                let metadata = p.committed_metadata.as_deref().unwrap_or("").to_string();
                if metadata.len() > self.config.offset_metadata_max_bytes {
                    let code = ResponseError::OffsetMetadataTooLarge.code();
                    partitions.push((p.partition_index, code));
                    continue;
                }
                if name.len() > STRING_BYTES_MAX / 2 {
                    let code = ResponseError::InvalidTopicException.code();
                    partitions.push((p.partition_index, code));
                    continue;
                }
                let value = CommittedOffset {
                    offset: p.committed_offset,
                    leader_epoch: if v >= 2 { p.committed_leader_epoch } else { -1 },
                    metadata,
                    commit_timestamp_ms: now_ms,
                    expire_timestamp_ms: None,
                };
                records_out.push(OffsetsRecord {
                    key: records::encode_offset_key(&group_id, &name, p.partition_index),
                    value: Some(records::encode_offset_value(&OffsetCommitValue {
                        offset: value.offset,
                        leader_epoch: value.leader_epoch,
                        metadata: value.metadata.clone(),
                        commit_timestamp_ms: value.commit_timestamp_ms,
                        expire_timestamp_ms: None,
                    })),
                    timestamp_ms: now_ms,
                });
                offsets.push(((name.clone(), p.partition_index), value));
                partitions.push((p.partition_index, 0));
            }
            results.push((name, partitions));
        }
        if records_out.is_empty() {
            return self.respond_txn_commit(ctx.request_id, v, results);
        }
        if let Some(g) = self.groups.get_mut(&group_id) {
            for (key, _) in &offsets {
                *g.pending_commits.entry(key.clone()).or_default() += 1;
            }
        }
        let pending = PendingTxnCommit {
            request_id: ctx.request_id,
            api_version: v,
            group_id,
            producer_id: req.producer_id.0,
            offsets,
            results,
        };
        let producer = (req.producer_id.0, req.producer_epoch);
        self.append_transactional(
            partition,
            producer,
            records_out,
            AfterAppend::TxnOffsetCommit(pending),
        );
    }

    pub(super) fn complete_txn_commit(&mut self, commit: PendingTxnCommit, outcome: AppendOutcome) {
        let PendingTxnCommit {
            request_id,
            api_version,
            group_id,
            producer_id,
            offsets,
            mut results,
        } = commit;
        if let Some(g) = self.groups.get_mut(&group_id) {
            for (key, value) in offsets {
                if let Some(n) = g.pending_commits.get_mut(&key) {
                    *n -= 1;
                    if *n == 0 {
                        g.pending_commits.remove(&key);
                    }
                }
                if outcome == AppendOutcome::Appended {
                    g.pending_txn_offsets
                        .entry(producer_id)
                        .or_default()
                        .insert(key, value);
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
        self.respond_txn_commit(request_id, api_version, results);
    }

    /// A transaction marker of `producer_id` was written to `__consumer_offsets` partition
    /// `partition` (by this broker, as its leader): its pending offsets there become the
    /// committed ones (`commit`) or are dropped. Kafka's `handleTxnCompletion`.
    pub fn on_txn_marker(&mut self, partition: i32, producer_id: i64, commit: bool) {
        self.apply_txn_marker(partition, producer_id, commit);
    }

    /// Replays a transaction marker read from the log while loading `partition`.
    pub fn load_txn_marker(&mut self, partition: i32, producer_id: i64, commit: bool) {
        self.apply_txn_marker(partition, producer_id, commit);
    }

    fn apply_txn_marker(&mut self, partition: i32, producer_id: i64, commit: bool) {
        for g in self
            .groups
            .values_mut()
            .filter(|g| g.partition == partition)
        {
            let Some(pending) = g.pending_txn_offsets.remove(&producer_id) else {
                continue;
            };
            if commit {
                self.totals.offset_commits += pending.len() as u64;
                g.offsets.extend(pending);
            }
        }
    }

    /// Replays an offset record of a transactional batch of `producer_id`: pending until its
    /// marker (a tombstone in a transaction is not something Kafka writes; it is ignored).
    pub(super) fn load_txn_offset(
        &mut self,
        partition: i32,
        producer_id: i64,
        group_id: String,
        key: (String, i32),
        value: CommittedOffset,
    ) {
        let group = self
            .groups
            .entry(group_id.clone())
            .or_insert_with(|| Group::new(group_id, partition, -1));
        group
            .pending_txn_offsets
            .entry(producer_id)
            .or_default()
            .insert(key, value);
    }

    fn respond_txn_commit(
        &mut self,
        request_id: RequestId,
        v: i16,
        results: Vec<(String, Vec<(i32, i16)>)>,
    ) {
        let topics = results
            .into_iter()
            .map(|(name, partitions)| {
                TxnOffsetCommitResponseTopic::default()
                    .with_name(TopicName(StrBytes::from_string(name)))
                    .with_partitions(
                        partitions
                            .into_iter()
                            .map(|(p, e)| {
                                TxnOffsetCommitResponsePartition::default()
                                    .with_partition_index(p)
                                    .with_error_code(e)
                            })
                            .collect(),
                    )
            })
            .collect();
        let response = TxnOffsetCommitResponse::default().with_topics(topics);
        self.respond(request_id, v, GroupResponse::TxnOffsetCommit(response));
    }
}

/// Whether `pending` offsets of any producer touch `key` (OffsetFetch `require_stable`).
pub(super) fn has_pending_txn_offset(
    pending: &BTreeMap<i64, BTreeMap<(String, i32), CommittedOffset>>,
    key: &(String, i32),
) -> bool {
    pending.values().any(|offsets| offsets.contains_key(key))
}

/// Kafka's `doTxnCommitOffsets` checks (KIP-447): a member id must be a member (or the static
/// member of its instance id), and a generation must be the group's current one.
fn validate_txn_commit(
    g: &Group,
    member_id: &str,
    instance: Option<&str>,
    generation: i32,
) -> Result<(), i16> {
    if g.state == GroupState::Dead {
        return Err(ResponseError::CoordinatorNotAvailable.code());
    }
    if !member_id.is_empty() || instance.is_some() {
        super::membership::validate_member(g, member_id, instance)?;
    }
    if generation >= 0 && generation != g.generation_id {
        return Err(ResponseError::IllegalGeneration.code());
    }
    Ok(())
}

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

use super::offsets::{CommitPartition, CommitRequest};
use super::{AfterAppend, AppendOutcome, Coordinator, GroupResponse, RequestContext, RequestId};
use crate::group::{CommittedOffset, Group};

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
        // v3+ (KIP-447) carry the member and generation; older ones commit as no member.
        let commit = CommitRequest {
            group_id: req.group_id.0.to_string(),
            member_id: if v >= 3 {
                req.member_id.to_string()
            } else {
                String::new()
            },
            instance: req
                .group_instance_id
                .as_ref()
                .filter(|_| v >= 3)
                .map(|s| s.to_string()),
            generation: if v >= 3 { req.generation_id } else { -1 },
            transactional: true,
            expire_timestamp_ms: None,
            topics: req
                .topics
                .iter()
                .map(|t| {
                    let partitions = t.partitions.iter().map(|p| CommitPartition {
                        partition: p.partition_index,
                        offset: p.committed_offset,
                        leader_epoch: if v >= 2 { p.committed_leader_epoch } else { -1 },
                        metadata: p.committed_metadata.as_deref().unwrap_or("").to_string(),
                    });
                    (t.name.0.to_string(), partitions.collect())
                })
                .collect(),
        };
        let prepared = match self.prepare_commit(v, commit, now_ms) {
            Ok(p) => p,
            Err(results) => return self.respond_txn_commit(ctx.request_id, v, results),
        };
        if prepared.records.is_empty() {
            return self.respond_txn_commit(ctx.request_id, v, prepared.results);
        }
        let pending = PendingTxnCommit {
            request_id: ctx.request_id,
            api_version: v,
            group_id: prepared.group_id,
            producer_id: req.producer_id.0,
            offsets: prepared.offsets,
            results: prepared.results,
        };
        let producer = (req.producer_id.0, req.producer_epoch);
        self.append_transactional(
            prepared.partition,
            producer,
            prepared.records,
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

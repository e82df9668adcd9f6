//! One classic group's in-memory state: members, generation, protocol, committed offsets.
//!
//! Owns the data and the small rules that need nothing but the group itself (protocol votes,
//! which members still have to rejoin, the record image of the group). It never emits
//! responses or records: the coordinator decides when state changes become visible.

use std::collections::{BTreeMap, BTreeSet};

use bytes::Bytes;

use crate::records::{subscription_topics, GroupMetadataValue, MemberMetadataValue};
use crate::RequestId;

/// The classic group states, named as Kafka names them on the wire.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GroupState {
    Empty,
    PreparingRebalance,
    CompletingRebalance,
    Stable,
    Dead,
}

impl GroupState {
    /// The state string DescribeGroups and ListGroups return.
    pub fn as_str(self) -> &'static str {
        match self {
            GroupState::Empty => "Empty",
            GroupState::PreparingRebalance => "PreparingRebalance",
            GroupState::CompletingRebalance => "CompletingRebalance",
            GroupState::Stable => "Stable",
            GroupState::Dead => "Dead",
        }
    }
}

/// A JoinGroup or SyncGroup request whose response waits for the rebalance.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Waiter {
    pub request_id: RequestId,
    pub api_version: i16,
}

#[derive(Clone, Debug)]
pub(crate) struct Member {
    pub member_id: String,
    pub group_instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub rebalance_timeout_ms: i32,
    pub session_timeout_ms: i32,
    /// (name, metadata) in the member's order of preference.
    pub protocols: Vec<(String, Bytes)>,
    pub assignment: Bytes,
    pub awaiting_join: Option<Waiter>,
    pub awaiting_sync: Option<Waiter>,
    /// Joined with a fresh id and has not yet received a join response.
    pub is_new: bool,
    /// When the member is removed unless it heartbeats (or is waiting on a rebalance).
    pub session_deadline_ms: i64,
}

impl Member {
    /// Kafka's hasSatisfiedHeartbeat: members parked in a rebalance are alive by definition,
    /// except brand-new ones, which get a fixed join timeout instead.
    pub fn heartbeat_satisfied(&self) -> bool {
        !self.is_new && (self.awaiting_join.is_some() || self.awaiting_sync.is_some())
    }

    pub fn metadata_for(&self, protocol: &str) -> Bytes {
        self.protocols
            .iter()
            .find(|(name, _)| name == protocol)
            .map(|(_, m)| m.clone())
            .unwrap_or_default()
    }

    /// Same protocols, same order, same metadata.
    pub fn matches(&self, protocols: &[(String, Bytes)]) -> bool {
        self.protocols == protocols
    }

    /// The member's first preference among the candidates.
    fn vote(&self, candidates: &BTreeSet<&str>) -> Option<&str> {
        self.protocols
            .iter()
            .map(|(name, _)| name.as_str())
            .find(|name| candidates.contains(name))
    }
}

/// Rebalance (join phase) timer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum JoinTimer {
    /// `group.initial.rebalance.delay.ms` for a group that was Empty: waits even if everyone
    /// has joined, extended while new members keep arriving, up to the rebalance timeout.
    Initial {
        deadline_ms: i64,
        delay_ms: i64,
        remaining_ms: i64,
    },
    /// Waits for all known members up to the rebalance timeout.
    Regular { deadline_ms: i64 },
}

impl JoinTimer {
    pub fn deadline_ms(self) -> i64 {
        match self {
            JoinTimer::Initial { deadline_ms, .. } | JoinTimer::Regular { deadline_ms } => {
                deadline_ms
            }
        }
    }
}

/// A committed offset as held in memory.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct CommittedOffset {
    pub offset: i64,
    pub leader_epoch: i32,
    pub metadata: String,
    pub commit_timestamp_ms: i64,
    pub expire_timestamp_ms: Option<i64>,
}

#[derive(Debug)]
pub(crate) struct Group {
    pub group_id: String,
    /// The `__consumer_offsets` partition holding this group.
    pub partition: i32,
    pub state: GroupState,
    pub state_timestamp_ms: i64,
    pub protocol_type: Option<String>,
    pub protocol_name: Option<String>,
    pub generation_id: i32,
    pub leader_id: Option<String>,
    pub members: BTreeMap<String, Member>,
    /// group.instance.id -> member id.
    pub static_members: BTreeMap<String, String>,
    /// Members given an id by MEMBER_ID_REQUIRED that have not joined yet, with their deadline.
    pub pending_join_members: BTreeMap<String, i64>,
    /// Members of the current generation that have not sent SyncGroup yet.
    pub pending_sync_members: BTreeSet<String>,
    pub pending_sync_deadline_ms: Option<i64>,
    pub join_timer: Option<JoinTimer>,
    pub new_member_added: bool,
    pub subscribed_topics: Option<BTreeSet<String>>,
    pub offsets: BTreeMap<(String, i32), CommittedOffset>,
    /// In-flight commit appends per partition, for OffsetFetch require_stable.
    pub pending_commits: BTreeMap<(String, i32), u32>,
    /// Offsets committed inside transactions, per producer id, durable but not visible until
    /// the transaction's commit marker (dropped at an abort).
    pub pending_txn_offsets: BTreeMap<i64, BTreeMap<(String, i32), CommittedOffset>>,
}

impl Group {
    pub fn new(group_id: String, partition: i32, now_ms: i64) -> Self {
        Group {
            group_id,
            partition,
            state: GroupState::Empty,
            state_timestamp_ms: now_ms,
            protocol_type: None,
            protocol_name: None,
            generation_id: 0,
            leader_id: None,
            members: BTreeMap::new(),
            static_members: BTreeMap::new(),
            pending_join_members: BTreeMap::new(),
            pending_sync_members: BTreeSet::new(),
            pending_sync_deadline_ms: None,
            join_timer: None,
            new_member_added: false,
            subscribed_topics: None,
            offsets: BTreeMap::new(),
            pending_commits: BTreeMap::new(),
            pending_txn_offsets: BTreeMap::new(),
        }
    }

    pub fn transition(&mut self, to: GroupState, now_ms: i64) {
        use GroupState::*;
        let valid_from: &[GroupState] = match to {
            Empty => &[PreparingRebalance],
            PreparingRebalance => &[Stable, CompletingRebalance, Empty],
            CompletingRebalance => &[PreparingRebalance],
            Stable => &[CompletingRebalance],
            Dead => &[Stable, PreparingRebalance, CompletingRebalance, Empty, Dead],
        };
        assert!(
            valid_from.contains(&self.state),
            "group {}: illegal transition {:?} -> {:?}",
            self.group_id,
            self.state,
            to
        );
        self.state = to;
        self.state_timestamp_ms = now_ms;
    }

    pub fn is_leader(&self, member_id: &str) -> bool {
        self.leader_id.as_deref() == Some(member_id)
    }

    pub fn uses_consumer_protocol(&self) -> bool {
        self.protocol_type.as_deref() == Some("consumer")
    }

    pub fn awaiting_join_count(&self) -> usize {
        self.members
            .values()
            .filter(|m| m.awaiting_join.is_some())
            .count()
    }

    pub fn all_members_joined(&self) -> bool {
        self.pending_join_members.is_empty()
            && self.members.values().all(|m| m.awaiting_join.is_some())
    }

    /// The rebalance timeout is the largest any member asked for.
    pub fn rebalance_timeout_ms(&self) -> i64 {
        self.members
            .values()
            .map(|m| i64::from(m.rebalance_timeout_ms))
            .max()
            .unwrap_or(0)
    }

    /// Kafka's supportsProtocols: an empty group takes any non-empty type and protocol list;
    /// otherwise the type must match and one protocol must be supported by every member.
    pub fn supports_protocols(&self, protocol_type: &str, protocols: &[(String, Bytes)]) -> bool {
        if self.state == GroupState::Empty {
            return !protocol_type.is_empty() && !protocols.is_empty();
        }
        self.protocol_type.as_deref() == Some(protocol_type)
            && protocols.iter().any(|(name, _)| {
                self.members
                    .values()
                    .all(|m| m.protocols.iter().any(|(n, _)| n == name))
            })
    }

    /// Protocols every member supports, each member votes for its first preference among
    /// them, most votes wins. Ties go to the lexicographically smallest name so the choice is
    /// deterministic (Kafka breaks ties by hash-map order, which is arbitrary too).
    pub fn select_protocol(&self) -> String {
        assert!(
            !self.members.is_empty(),
            "cannot select a protocol for an empty group"
        );
        let mut candidates: BTreeSet<&str> = self
            .members
            .values()
            .next()
            .expect("non-empty")
            .protocols
            .iter()
            .map(|(n, _)| n.as_str())
            .collect();
        for m in self.members.values() {
            candidates.retain(|c| m.protocols.iter().any(|(n, _)| n == c));
        }
        let mut votes: BTreeMap<&str, usize> = BTreeMap::new();
        for m in self.members.values() {
            if let Some(v) = m.vote(&candidates) {
                *votes.entry(v).or_default() += 1;
            }
        }
        let best = votes.values().copied().max().unwrap_or(0);
        let chosen = votes
            .iter()
            .find(|(_, &n)| n == best)
            .map(|(name, _)| name.to_string());
        chosen.expect("join validation guarantees a protocol every member supports")
    }

    pub fn compute_subscribed_topics(&self) -> Option<BTreeSet<String>> {
        if !self.uses_consumer_protocol() {
            return None;
        }
        if self.members.is_empty() {
            return Some(BTreeSet::new());
        }
        let protocol = self.protocol_name.as_deref()?;
        let mut topics = BTreeSet::new();
        for m in self.members.values() {
            topics.extend(subscription_topics(&m.metadata_for(protocol))?);
        }
        Some(topics)
    }

    /// Kafka's rule: unknown subscriptions count as subscribed only for consumer groups.
    pub fn is_subscribed_to(&self, topic: &str) -> bool {
        match &self.subscribed_topics {
            Some(topics) => topics.contains(topic),
            None => self.uses_consumer_protocol(),
        }
    }

    /// Removes a member and its static mapping, moving leadership to another member.
    pub fn remove_member(&mut self, member_id: &str) -> Option<Member> {
        let removed = self.members.remove(member_id);
        if let Some(m) = &removed {
            if let Some(instance) = &m.group_instance_id {
                if self.static_members.get(instance).map(String::as_str) == Some(member_id) {
                    self.static_members.remove(instance);
                }
            }
        }
        if self.is_leader(member_id) {
            self.leader_id = self.members.keys().next().cloned();
        }
        self.pending_join_members.remove(member_id);
        self.pending_sync_members.remove(member_id);
        removed
    }

    /// If the leader did not rejoin, hands leadership to a member that did. False when no
    /// member has rejoined at all.
    pub fn maybe_elect_new_joined_leader(&mut self) -> bool {
        let Some(leader) = self.leader_id.clone() else {
            return false;
        };
        let leader_joined = self
            .members
            .get(&leader)
            .is_some_and(|m| m.awaiting_join.is_some());
        if leader_joined {
            return true;
        }
        match self.members.values().find(|m| m.awaiting_join.is_some()) {
            Some(m) => {
                self.leader_id = Some(m.member_id.clone());
                true
            }
            None => false,
        }
    }

    /// The GroupMetadataValue image of this group, with the given assignments.
    pub fn to_record_value(&self, assignments: &BTreeMap<String, Bytes>) -> GroupMetadataValue {
        let protocol = self.protocol_name.clone();
        GroupMetadataValue {
            protocol_type: self.protocol_type.clone().unwrap_or_default(),
            generation_id: self.generation_id,
            protocol_name: protocol.clone(),
            leader_id: self.leader_id.clone(),
            current_state_timestamp_ms: self.state_timestamp_ms,
            members: self
                .members
                .values()
                .map(|m| MemberMetadataValue {
                    member_id: m.member_id.clone(),
                    group_instance_id: m.group_instance_id.clone(),
                    client_id: m.client_id.clone(),
                    client_host: m.client_host.clone(),
                    rebalance_timeout_ms: m.rebalance_timeout_ms,
                    session_timeout_ms: m.session_timeout_ms,
                    subscription: protocol
                        .as_deref()
                        .map(|p| m.metadata_for(p))
                        .unwrap_or_default(),
                    assignment: assignments.get(&m.member_id).cloned().unwrap_or_default(),
                })
                .collect(),
        }
    }

    pub fn current_assignments(&self) -> BTreeMap<String, Bytes> {
        self.members
            .iter()
            .map(|(id, m)| (id.clone(), m.assignment.clone()))
            .collect()
    }

    /// The earliest time this group needs `tick`.
    pub fn next_deadline_ms(&self) -> Option<i64> {
        let members = self
            .members
            .values()
            .filter(|m| !m.heartbeat_satisfied())
            .map(|m| m.session_deadline_ms);
        let pending = self.pending_join_members.values().copied();
        members
            .chain(pending)
            .chain(self.join_timer.map(JoinTimer::deadline_ms))
            .chain(self.pending_sync_deadline_ms)
            .min()
    }
}

//! Group membership: JoinGroup, SyncGroup, Heartbeat, LeaveGroup, rebalances and their timers.
//!
//! Owns the classic rebalance protocol as Kafka 4.x runs it: MEMBER_ID_REQUIRED (v4+),
//! protocol votes, generations, the initial rebalance delay, rebalance and pending-sync
//! timeouts, session expiry, and static membership (a restarting static member takes over its
//! old member id without a rebalance). It must never assign partitions: assignment runs in the
//! group leader's client (range, sticky, cooperative-sticky alike), which is why cooperative
//! rebalancing needs nothing special here beyond not disturbing the two join rounds.

use std::collections::BTreeMap;

use bytes::Bytes;
use kafka_protocol::messages::join_group_response::JoinGroupResponseMember;
use kafka_protocol::messages::leave_group_response::MemberResponse;
use kafka_protocol::messages::{
    HeartbeatRequest, HeartbeatResponse, JoinGroupRequest, JoinGroupResponse, LeaveGroupRequest,
    LeaveGroupResponse, SyncGroupRequest, SyncGroupResponse,
};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;

use super::{AfterAppend, AppendOutcome, Coordinator, GroupResponse, RequestContext};
use crate::config::{NEW_MEMBER_JOIN_TIMEOUT_MS, STRING_BYTES_MAX};
use crate::group::{Group, GroupState, JoinTimer, Member, Waiter};
use crate::records::{self, OffsetsRecord};

/// State kept while a static member's id replacement is being made durable.
#[derive(Debug)]
pub(super) struct PendingStaticRejoin {
    pub group_id: String,
    pub generation_id: i32,
    pub old_member_id: String,
    pub new_member_id: String,
    pub old_protocols: Vec<(String, Bytes)>,
    pub old_rebalance_timeout_ms: i32,
    pub old_session_timeout_ms: i32,
}

/// A validated JoinGroup, in owned types.
struct Join {
    waiter: Waiter,
    member_id: String,
    group_instance_id: Option<String>,
    client_id: String,
    client_host: String,
    session_timeout_ms: i32,
    rebalance_timeout_ms: i32,
    protocol_type: String,
    protocols: Vec<(String, Bytes)>,
}

fn s(v: &str) -> StrBytes {
    StrBytes::from_string(v.to_string())
}

impl Coordinator {
    // ---- JoinGroup ---------------------------------------------------------------------------

    pub(super) fn join_group(&mut self, ctx: &RequestContext, req: JoinGroupRequest, now_ms: i64) {
        let waiter = Waiter {
            request_id: ctx.request_id,
            api_version: ctx.api_version,
        };
        let group_id = req.group_id.0.to_string();
        let member_id = req.member_id.to_string();
        let join = Join {
            waiter,
            member_id: member_id.clone(),
            group_instance_id: req.group_instance_id.as_ref().map(|s| s.to_string()),
            client_id: ctx.client_id.clone(),
            client_host: ctx.client_host.clone(),
            session_timeout_ms: req.session_timeout_ms,
            // v0 has no rebalance timeout: Kafka uses the session timeout.
            rebalance_timeout_ms: if ctx.api_version == 0 || req.rebalance_timeout_ms <= 0 {
                req.session_timeout_ms
            } else {
                req.rebalance_timeout_ms
            },
            protocol_type: req.protocol_type.to_string(),
            protocols: req
                .protocols
                .iter()
                .map(|p| (p.name.to_string(), p.metadata.clone()))
                .collect(),
        };
        if group_id.is_empty() || group_id.len() > STRING_BYTES_MAX {
            return self.respond_join_error(
                waiter,
                &member_id,
                ResponseError::InvalidGroupId.code(),
            );
        }
        // Everything here ends up in int16-length strings of the group record.
        let too_long = [&join.client_id, &join.client_host, &join.protocol_type]
            .into_iter()
            .chain(join.group_instance_id.as_ref())
            .chain(join.protocols.iter().map(|(name, _)| name))
            .any(|v| v.len() > STRING_BYTES_MAX / 2);
        if too_long {
            return self.respond_join_error(
                waiter,
                &member_id,
                ResponseError::InvalidRequest.code(),
            );
        }
        let partition = match self.coordinator_for(&group_id) {
            Ok(p) => p,
            Err(code) => return self.respond_join_error(waiter, &member_id, code),
        };
        if join.session_timeout_ms < self.config.session_timeout_min_ms
            || join.session_timeout_ms > self.config.session_timeout_max_ms
        {
            return self.respond_join_error(
                waiter,
                &member_id,
                ResponseError::InvalidSessionTimeout.code(),
            );
        }
        if !self.groups.contains_key(&group_id) {
            if !member_id.is_empty() {
                return self.respond_join_error(
                    waiter,
                    &member_id,
                    ResponseError::UnknownMemberId.code(),
                );
            }
            if self.groups.len() >= self.config.groups_max {
                return self.respond_join_error(
                    waiter,
                    &member_id,
                    ResponseError::CoordinatorNotAvailable.code(),
                );
            }
            self.groups.insert(
                group_id.clone(),
                Group::new(group_id.clone(), partition, now_ms),
            );
        }
        self.with_group(&group_id, |c, g| {
            c.join_in_group(g, join, now_ms);
            if g.state == GroupState::Empty
                && g.generation_id == 0
                && g.members.is_empty()
                && g.pending_join_members.is_empty()
                && g.offsets.is_empty()
                && g.pending_commits.is_empty()
            {
                // Created by a join that failed: never persisted, so just forget it rather
                // than let failed joins fill the group table.
                g.state = GroupState::Dead;
            }
        });
    }

    fn join_in_group(&mut self, g: &mut Group, join: Join, now_ms: i64) {
        if !self.accept_joining_member(g, &join.member_id) {
            let code = ResponseError::GroupMaxSizeReached.code();
            return self.respond_join_error(join.waiter, &join.member_id, code);
        }
        if join.member_id.is_empty() {
            self.join_unknown_member(g, join, now_ms)
        } else {
            self.join_existing_member(g, join, now_ms)
        }
    }

    /// Kafka's acceptJoiningMember: counts waiting members while preparing (members that do
    /// not rejoin are about to go), the whole membership otherwise.
    fn accept_joining_member(&self, g: &Group, member_id: &str) -> bool {
        let max = self.config.group_max_size;
        match g.state {
            GroupState::Empty | GroupState::Dead => true,
            GroupState::PreparingRebalance => {
                g.members
                    .get(member_id)
                    .is_some_and(|m| m.awaiting_join.is_some())
                    || g.awaiting_join_count() < max
            }
            GroupState::CompletingRebalance | GroupState::Stable => {
                g.members.contains_key(member_id) || g.members.len() < max
            }
        }
    }

    fn join_unknown_member(&mut self, g: &mut Group, join: Join, now_ms: i64) {
        if g.state == GroupState::Dead {
            let code = ResponseError::CoordinatorNotAvailable.code();
            return self.respond_join_error(join.waiter, "", code);
        }
        if !g.supports_protocols(&join.protocol_type, &join.protocols) {
            let code = ResponseError::InconsistentGroupProtocol.code();
            return self.respond_join_error(join.waiter, "", code);
        }
        let prefix = join.group_instance_id.as_deref().unwrap_or(&join.client_id);
        let new_member_id = self.generate_member_id(prefix);
        if let Some(instance) = join.group_instance_id.clone() {
            if let Some(old_member_id) = g.static_members.get(&instance).cloned() {
                return self.replace_static_member(g, join, old_member_id, new_member_id, now_ms);
            }
            // A new static member joins directly: no MEMBER_ID_REQUIRED round trip.
            return self.add_member_and_rebalance(g, join, new_member_id, now_ms);
        }
        if join.waiter.api_version >= 4 {
            if g.pending_join_members.len() >= self.config.group_max_size {
                // Each pending id is held for a session timeout; without this bound a client
                // looping on empty-id joins would grow the group without limit.
                let code = ResponseError::GroupMaxSizeReached.code();
                return self.respond_join_error(join.waiter, "", code);
            }
            // The client must come back with this id; until then it holds up the rebalance
            // only for one session timeout.
            g.pending_join_members.insert(
                new_member_id.clone(),
                now_ms + i64::from(join.session_timeout_ms),
            );
            let code = ResponseError::MemberIdRequired.code();
            return self.respond_join_error(join.waiter, &new_member_id, code);
        }
        self.add_member_and_rebalance(g, join, new_member_id, now_ms)
    }

    fn join_existing_member(&mut self, g: &mut Group, join: Join, now_ms: i64) {
        let member_id = join.member_id.clone();
        if g.state == GroupState::Dead {
            let code = ResponseError::CoordinatorNotAvailable.code();
            return self.respond_join_error(join.waiter, &member_id, code);
        }
        if !g.supports_protocols(&join.protocol_type, &join.protocols) {
            let code = ResponseError::InconsistentGroupProtocol.code();
            return self.respond_join_error(join.waiter, &member_id, code);
        }
        if g.pending_join_members.contains_key(&member_id) {
            // Pending ids are only handed to dynamic members; one claiming the instance id of
            // an existing static member is an impostor.
            let instance_taken = join
                .group_instance_id
                .as_ref()
                .is_some_and(|i| g.static_members.contains_key(i));
            if instance_taken {
                let code = ResponseError::FencedInstanceId.code();
                return self.respond_join_error(join.waiter, &member_id, code);
            }
            return self.add_member_and_rebalance(g, join, member_id, now_ms);
        }
        if let Err(code) = validate_member(g, &member_id, join.group_instance_id.as_deref()) {
            return self.respond_join_error(join.waiter, &member_id, code);
        }
        let (is_leader, matches) = {
            let m = &g.members[&member_id];
            (g.is_leader(&member_id), m.matches(&join.protocols))
        };
        match g.state {
            GroupState::PreparingRebalance => self.update_member_and_rebalance(g, join, now_ms),
            GroupState::CompletingRebalance if matches => {
                // A retry of a join whose response was lost: answer with the current generation.
                self.touch_session(g, &member_id, now_ms);
                self.respond_join_current(g, join.waiter, &member_id, is_leader, false);
            }
            GroupState::Stable if !is_leader && matches => {
                // Followers with unchanged metadata just get the current generation back; a
                // leader's join always rebalances (it may have seen topic metadata change).
                self.touch_session(g, &member_id, now_ms);
                self.respond_join_current(g, join.waiter, &member_id, false, false);
            }
            GroupState::CompletingRebalance | GroupState::Stable => {
                self.update_member_and_rebalance(g, join, now_ms)
            }
            GroupState::Empty | GroupState::Dead => {
                let code = ResponseError::UnknownMemberId.code();
                self.respond_join_error(join.waiter, &member_id, code)
            }
        }
    }

    fn add_member_and_rebalance(
        &mut self,
        g: &mut Group,
        join: Join,
        member_id: String,
        now_ms: i64,
    ) {
        if g.members.is_empty() {
            g.protocol_type = Some(join.protocol_type.clone());
        }
        if g.leader_id.is_none() {
            g.leader_id = Some(member_id.clone());
        }
        if let Some(instance) = &join.group_instance_id {
            let previous = g.static_members.insert(instance.clone(), member_id.clone());
            assert!(previous.is_none(), "static member {instance} added twice");
        }
        if matches!(g.join_timer, Some(JoinTimer::Initial { .. })) {
            g.new_member_added = true;
        }
        g.pending_join_members.remove(&member_id);
        g.members.insert(
            member_id.clone(),
            Member {
                member_id,
                group_instance_id: join.group_instance_id,
                client_id: join.client_id,
                client_host: join.client_host,
                rebalance_timeout_ms: join.rebalance_timeout_ms,
                session_timeout_ms: join.session_timeout_ms,
                protocols: join.protocols,
                assignment: Bytes::new(),
                awaiting_join: Some(join.waiter),
                awaiting_sync: None,
                is_new: true,
                session_deadline_ms: now_ms + NEW_MEMBER_JOIN_TIMEOUT_MS,
            },
        );
        self.prepare_rebalance_or_complete_join(g, now_ms);
    }

    fn update_member_and_rebalance(&mut self, g: &mut Group, join: Join, now_ms: i64) {
        let m = g
            .members
            .get_mut(&join.member_id)
            .expect("validated member");
        m.protocols = join.protocols;
        m.rebalance_timeout_ms = join.rebalance_timeout_ms;
        m.session_timeout_ms = join.session_timeout_ms;
        let superseded = m.awaiting_join.replace(join.waiter);
        if let Some(old) = superseded {
            // A client has one join in flight; a second one means the first was abandoned.
            let code = ResponseError::RebalanceInProgress.code();
            self.respond_join_error(old, &join.member_id, code);
        }
        self.prepare_rebalance_or_complete_join(g, now_ms);
    }

    /// A known static member restarted with a fresh member id: fence the old id, keep the
    /// member's assignment, and only rebalance if the group's protocol would change.
    fn replace_static_member(
        &mut self,
        g: &mut Group,
        join: Join,
        old_member_id: String,
        new_member_id: String,
        now_ms: i64,
    ) {
        let mut member = g
            .members
            .remove(&old_member_id)
            .expect("static map points at a member");
        let fenced = ResponseError::FencedInstanceId.code();
        if let Some(w) = member.awaiting_join.take() {
            self.respond_join_error(w, &old_member_id, fenced);
        }
        if let Some(w) = member.awaiting_sync.take() {
            self.respond_sync_error(w, fenced);
        }
        let pending = PendingStaticRejoin {
            group_id: g.group_id.clone(),
            generation_id: g.generation_id,
            old_member_id: old_member_id.clone(),
            new_member_id: new_member_id.clone(),
            old_protocols: member.protocols.clone(),
            old_rebalance_timeout_ms: member.rebalance_timeout_ms,
            old_session_timeout_ms: member.session_timeout_ms,
        };
        member.member_id = new_member_id.clone();
        member.protocols = join.protocols;
        member.rebalance_timeout_ms = join.rebalance_timeout_ms;
        member.session_timeout_ms = join.session_timeout_ms;
        member.client_id = join.client_id;
        member.client_host = join.client_host;
        member.awaiting_join = Some(join.waiter);
        member.session_deadline_ms = now_ms + i64::from(member.session_timeout_ms);
        g.members.insert(new_member_id.clone(), member);
        rename_member(g, &old_member_id, &new_member_id);
        let instance = join.group_instance_id.expect("static join");
        g.static_members.insert(instance, new_member_id.clone());

        match g.state {
            GroupState::Stable => {
                if g.protocol_name.as_deref() == Some(g.select_protocol().as_str()) {
                    // Persist the new id before answering, so a coordinator restart cannot
                    // resurrect the fenced id.
                    let value = g.to_record_value(&g.current_assignments());
                    let record = OffsetsRecord {
                        key: records::encode_group_key(&g.group_id),
                        value: Some(records::encode_group_value(&value)),
                        timestamp_ms: now_ms,
                    };
                    self.append(
                        g.partition,
                        vec![record],
                        AfterAppend::StaticRejoin(pending),
                    );
                } else {
                    self.prepare_rebalance(g, now_ms);
                }
            }
            GroupState::CompletingRebalance => self.prepare_rebalance(g, now_ms),
            GroupState::PreparingRebalance => self.maybe_complete_join(g, now_ms),
            GroupState::Empty | GroupState::Dead => {
                unreachable!("a group with a static member is neither Empty nor Dead")
            }
        }
    }

    pub(super) fn complete_static_rejoin(
        &mut self,
        g: &mut Group,
        p: PendingStaticRejoin,
        outcome: AppendOutcome,
        _now_ms: i64,
    ) {
        let Some(member) = g.members.get_mut(&p.new_member_id) else {
            return; // Left or expired meanwhile; its waiter was answered then.
        };
        let Some(waiter) = member.awaiting_join else {
            return;
        };
        if g.state != GroupState::Stable || g.generation_id != p.generation_id {
            return; // A rebalance started meanwhile and will answer the waiting join.
        }
        if outcome != AppendOutcome::Appended {
            // Undo the replacement: the old id is still the durable one.
            member.awaiting_join = None;
            member.member_id = p.old_member_id.clone();
            member.protocols = p.old_protocols;
            member.rebalance_timeout_ms = p.old_rebalance_timeout_ms;
            member.session_timeout_ms = p.old_session_timeout_ms;
            let member = g.members.remove(&p.new_member_id).expect("present above");
            let instance = member.group_instance_id.clone().expect("static member");
            g.members.insert(p.old_member_id.clone(), member);
            rename_member(g, &p.new_member_id, &p.old_member_id);
            g.static_members.insert(instance, p.old_member_id);
            return self.respond_join_error(waiter, &p.new_member_id, outcome.group_error());
        }
        member.awaiting_join = None;
        let is_leader = g.is_leader(&p.new_member_id);
        // KIP-814: the static leader gets the member list but is told not to reassign.
        self.respond_join_current(g, waiter, &p.new_member_id, is_leader, is_leader);
    }

    // ---- Rebalance machinery -------------------------------------------------------------------

    fn prepare_rebalance_or_complete_join(&mut self, g: &mut Group, now_ms: i64) {
        match g.state {
            GroupState::Stable | GroupState::CompletingRebalance | GroupState::Empty => {
                self.prepare_rebalance(g, now_ms)
            }
            GroupState::PreparingRebalance => self.maybe_complete_join(g, now_ms),
            GroupState::Dead => {}
        }
    }

    fn prepare_rebalance(&mut self, g: &mut Group, now_ms: i64) {
        if g.state == GroupState::CompletingRebalance {
            // The assignment being computed is for a generation that is now over.
            self.reset_and_propagate_assignment_error(g, ResponseError::RebalanceInProgress.code());
        }
        g.pending_sync_members.clear();
        g.pending_sync_deadline_ms = None;
        let rebalance_timeout_ms = g.rebalance_timeout_ms();
        g.join_timer = Some(if g.state == GroupState::Empty {
            // Kafka waits the full delay even when the rebalance timeout is shorter.
            let delay_ms = self.config.initial_rebalance_delay_ms;
            g.new_member_added = false;
            JoinTimer::Initial {
                deadline_ms: now_ms + delay_ms,
                delay_ms: self.config.initial_rebalance_delay_ms,
                remaining_ms: (rebalance_timeout_ms - self.config.initial_rebalance_delay_ms)
                    .max(0),
            }
        } else {
            JoinTimer::Regular {
                deadline_ms: now_ms + rebalance_timeout_ms,
            }
        });
        g.transition(GroupState::PreparingRebalance, now_ms);
        self.totals.rebalances += 1;
        self.maybe_complete_join(g, now_ms);
    }

    /// Completes the join phase early when every member has rejoined, except during the
    /// initial delay, which exists precisely to wait for members not known yet.
    fn maybe_complete_join(&mut self, g: &mut Group, now_ms: i64) {
        if g.state == GroupState::PreparingRebalance
            && g.all_members_joined()
            && !matches!(g.join_timer, Some(JoinTimer::Initial { .. }))
        {
            self.complete_join(g, now_ms);
        }
    }

    fn on_join_timer(&mut self, g: &mut Group, now_ms: i64) {
        match g.join_timer {
            Some(JoinTimer::Initial {
                delay_ms,
                remaining_ms,
                ..
            }) if g.new_member_added && remaining_ms > 0 => {
                // Members are still arriving: wait another delay, within the rebalance timeout.
                g.new_member_added = false;
                let next_delay_ms = delay_ms.min(remaining_ms);
                g.join_timer = Some(JoinTimer::Initial {
                    deadline_ms: now_ms + next_delay_ms,
                    delay_ms,
                    remaining_ms: remaining_ms - next_delay_ms,
                });
            }
            Some(_) => self.complete_join(g, now_ms),
            None => unreachable!("join timer fired without being armed"),
        }
    }

    fn complete_join(&mut self, g: &mut Group, now_ms: i64) {
        assert_eq!(g.state, GroupState::PreparingRebalance);
        // Dynamic members that did not rejoin in time are gone; static members keep their
        // place until their session expires (KIP-345).
        let gone: Vec<String> = g
            .members
            .values()
            .filter(|m| m.awaiting_join.is_none() && m.group_instance_id.is_none())
            .map(|m| m.member_id.clone())
            .collect();
        for id in gone {
            g.remove_member(&id);
        }
        if !g.maybe_elect_new_joined_leader() && !g.members.is_empty() {
            // Nobody rejoined (only silent static members remain): wait for them to join or
            // for their sessions to expire.
            g.join_timer = Some(JoinTimer::Regular {
                deadline_ms: now_ms + g.rebalance_timeout_ms(),
            });
            return;
        }
        g.join_timer = None;
        // Members still pending (MEMBER_ID_REQUIRED sent, not back yet) stay pending until
        // their own deadline: when they come back they start the next rebalance.
        g.generation_id += 1;
        if g.members.is_empty() {
            g.protocol_name = None;
            g.transition(GroupState::Empty, now_ms);
        } else {
            g.protocol_name = Some(g.select_protocol());
            g.transition(GroupState::CompletingRebalance, now_ms);
        }
        g.subscribed_topics = g.compute_subscribed_topics();
        g.pending_sync_members.clear();
        if g.state == GroupState::Empty {
            let value = g.to_record_value(&BTreeMap::new());
            let record = OffsetsRecord {
                key: records::encode_group_key(&g.group_id),
                value: Some(records::encode_group_value(&value)),
                timestamp_ms: now_ms,
            };
            self.append(g.partition, vec![record], AfterAppend::Nothing);
            return;
        }
        let ids: Vec<String> = g.members.keys().cloned().collect();
        for id in ids {
            let m = g.members.get_mut(&id).expect("listed above");
            let waiter = m.awaiting_join.take();
            m.is_new = false;
            m.session_deadline_ms = now_ms + i64::from(m.session_timeout_ms);
            if let Some(w) = waiter {
                let is_leader = g.is_leader(&id);
                self.respond_join_current(g, w, &id, is_leader, false);
            }
            g.pending_sync_members.insert(id);
        }
        g.pending_sync_deadline_ms = Some(now_ms + g.rebalance_timeout_ms());
    }

    /// Answers a join with the group's current generation. The leader gets every member's
    /// metadata for the selected protocol; followers get none.
    fn respond_join_current(
        &mut self,
        g: &Group,
        w: Waiter,
        member_id: &str,
        with_members: bool,
        skip_assignment: bool,
    ) {
        let protocol = g.protocol_name.clone().unwrap_or_default();
        let members = if with_members {
            g.members
                .values()
                .map(|m| {
                    JoinGroupResponseMember::default()
                        .with_member_id(s(&m.member_id))
                        .with_group_instance_id(m.group_instance_id.as_deref().map(s))
                        .with_metadata(m.metadata_for(&protocol))
                })
                .collect()
        } else {
            Vec::new()
        };
        let response = JoinGroupResponse::default()
            .with_generation_id(g.generation_id)
            .with_protocol_type(g.protocol_type.as_deref().map(s))
            .with_protocol_name(g.protocol_name.as_deref().map(s))
            .with_leader(s(g.leader_id.as_deref().unwrap_or("")))
            .with_skip_assignment(skip_assignment)
            .with_member_id(s(member_id))
            .with_members(members);
        self.respond(
            w.request_id,
            w.api_version,
            GroupResponse::JoinGroup(response),
        );
    }

    pub(super) fn respond_join_error(&mut self, w: Waiter, member_id: &str, code: i16) {
        let response = JoinGroupResponse::default()
            .with_error_code(code)
            .with_generation_id(-1)
            .with_member_id(s(member_id));
        self.respond(
            w.request_id,
            w.api_version,
            GroupResponse::JoinGroup(response),
        );
    }

    pub(super) fn respond_sync_error(&mut self, w: Waiter, code: i16) {
        let response = SyncGroupResponse::default().with_error_code(code);
        self.respond(
            w.request_id,
            w.api_version,
            GroupResponse::SyncGroup(response),
        );
    }

    fn respond_sync_assignment(&mut self, g: &Group, w: Waiter, assignment: Bytes) {
        let response = SyncGroupResponse::default()
            .with_protocol_type(g.protocol_type.as_deref().map(s))
            .with_protocol_name(g.protocol_name.as_deref().map(s))
            .with_assignment(assignment);
        self.respond(
            w.request_id,
            w.api_version,
            GroupResponse::SyncGroup(response),
        );
    }

    fn reset_and_propagate_assignment_error(&mut self, g: &mut Group, code: i16) {
        let waiters: Vec<Waiter> = g
            .members
            .values_mut()
            .filter_map(|m| {
                m.assignment = Bytes::new();
                m.awaiting_sync.take()
            })
            .collect();
        for w in waiters {
            self.respond_sync_error(w, code);
        }
    }

    fn touch_session(&mut self, g: &mut Group, member_id: &str, now_ms: i64) {
        if let Some(m) = g.members.get_mut(member_id) {
            m.session_deadline_ms = now_ms + i64::from(m.session_timeout_ms);
        }
    }

    /// Removes a member and moves the group on: a rebalance if it was settled, an earlier
    /// join completion if it was waiting for this member.
    pub(super) fn remove_member_and_update_group(
        &mut self,
        g: &mut Group,
        member_id: &str,
        now_ms: i64,
    ) {
        if let Some(m) = g.remove_member(member_id) {
            let unknown = ResponseError::UnknownMemberId.code();
            if let Some(w) = m.awaiting_join {
                self.respond_join_error(w, member_id, unknown);
            }
            if let Some(w) = m.awaiting_sync {
                self.respond_sync_error(w, unknown);
            }
        }
        match g.state {
            GroupState::Stable | GroupState::CompletingRebalance => {
                self.prepare_rebalance(g, now_ms)
            }
            GroupState::PreparingRebalance => self.maybe_complete_join(g, now_ms),
            GroupState::Empty | GroupState::Dead => {}
        }
    }

    /// Runs this group's due timers.
    pub(super) fn run_group_timers(&mut self, g: &mut Group, now_ms: i64) {
        let expired_pending: Vec<String> = g
            .pending_join_members
            .iter()
            .filter(|(_, &deadline)| deadline <= now_ms)
            .map(|(id, _)| id.clone())
            .collect();
        if !expired_pending.is_empty() {
            for id in &expired_pending {
                g.pending_join_members.remove(id);
            }
            self.maybe_complete_join(g, now_ms);
        }
        let expired: Vec<String> = g
            .members
            .values()
            .filter(|m| !m.heartbeat_satisfied() && m.session_deadline_ms <= now_ms)
            .map(|m| m.member_id.clone())
            .collect();
        for id in expired {
            self.remove_member_and_update_group(g, &id, now_ms);
        }
        if g.join_timer.is_some_and(|t| t.deadline_ms() <= now_ms)
            && g.state == GroupState::PreparingRebalance
        {
            self.on_join_timer(g, now_ms);
        }
        if g.pending_sync_deadline_ms.is_some_and(|d| d <= now_ms) {
            g.pending_sync_deadline_ms = None;
            if matches!(
                g.state,
                GroupState::CompletingRebalance | GroupState::Stable
            ) {
                // Members that got a join response but never synced are gone.
                let laggards: Vec<String> = g.pending_sync_members.iter().cloned().collect();
                for id in laggards {
                    self.remove_member_and_update_group(g, &id, now_ms);
                }
            }
        }
    }

    // ---- SyncGroup ---------------------------------------------------------------------------

    pub(super) fn sync_group(&mut self, ctx: &RequestContext, req: SyncGroupRequest, now_ms: i64) {
        let w = Waiter {
            request_id: ctx.request_id,
            api_version: ctx.api_version,
        };
        // Kafka requires both from v5 on (SyncGroupRequest.areMandatoryProtocolTypeAndNamePresent),
        // before looking at the group.
        if ctx.api_version >= 5 && (req.protocol_type.is_none() || req.protocol_name.is_none()) {
            return self.respond_sync_error(w, ResponseError::InconsistentGroupProtocol.code());
        }
        let group_id = req.group_id.0.to_string();
        if group_id.is_empty() {
            return self.respond_sync_error(w, ResponseError::InvalidGroupId.code());
        }
        if let Err(code) = self.coordinator_for(&group_id) {
            return self.respond_sync_error(w, code);
        }
        let handled = self.with_group(&group_id, |c, g| c.sync_in_group(g, w, req, now_ms));
        if handled.is_none() {
            self.respond_sync_error(w, ResponseError::UnknownMemberId.code());
        }
    }

    fn sync_in_group(&mut self, g: &mut Group, w: Waiter, req: SyncGroupRequest, now_ms: i64) {
        let member_id = req.member_id.to_string();
        if g.state == GroupState::Dead {
            return self.respond_sync_error(w, ResponseError::CoordinatorNotAvailable.code());
        }
        let instance = req.group_instance_id.as_deref();
        if let Err(code) = validate_member(g, &member_id, instance) {
            return self.respond_sync_error(w, code);
        }
        if req.generation_id != g.generation_id {
            return self.respond_sync_error(w, ResponseError::IllegalGeneration.code());
        }
        let type_mismatch = req
            .protocol_type
            .as_deref()
            .is_some_and(|t| g.protocol_type.as_deref() != Some(t));
        let name_mismatch = req
            .protocol_name
            .as_deref()
            .is_some_and(|n| g.protocol_name.as_deref() != Some(n));
        if type_mismatch || name_mismatch {
            return self.respond_sync_error(w, ResponseError::InconsistentGroupProtocol.code());
        }
        match g.state {
            GroupState::Empty => self.respond_sync_error(w, ResponseError::UnknownMemberId.code()),
            GroupState::PreparingRebalance => {
                self.respond_sync_error(w, ResponseError::RebalanceInProgress.code())
            }
            GroupState::CompletingRebalance => {
                g.pending_sync_members.remove(&member_id);
                if g.pending_sync_members.is_empty() {
                    g.pending_sync_deadline_ms = None;
                }
                let m = g.members.get_mut(&member_id).expect("validated");
                m.session_deadline_ms = now_ms + i64::from(m.session_timeout_ms);
                if let Some(old) = m.awaiting_sync.replace(w) {
                    self.respond_sync_error(old, ResponseError::RebalanceInProgress.code());
                }
                if g.is_leader(&member_id) {
                    let mut assignments: BTreeMap<String, Bytes> = req
                        .assignments
                        .into_iter()
                        .filter(|a| g.members.contains_key(a.member_id.as_str()))
                        .map(|a| (a.member_id.to_string(), a.assignment))
                        .collect();
                    for id in g.members.keys() {
                        assignments.entry(id.clone()).or_default();
                    }
                    let value = g.to_record_value(&assignments);
                    let record = OffsetsRecord {
                        key: records::encode_group_key(&g.group_id),
                        value: Some(records::encode_group_value(&value)),
                        timestamp_ms: now_ms,
                    };
                    let after = AfterAppend::SyncLeader {
                        group_id: g.group_id.clone(),
                        generation_id: g.generation_id,
                        assignments,
                    };
                    self.append(g.partition, vec![record], after);
                }
            }
            GroupState::Stable => {
                g.pending_sync_members.remove(&member_id);
                if g.pending_sync_members.is_empty() {
                    g.pending_sync_deadline_ms = None;
                }
                self.touch_session(g, &member_id, now_ms);
                let assignment = g.members[&member_id].assignment.clone();
                self.respond_sync_assignment(g, w, assignment);
            }
            GroupState::Dead => unreachable!("checked above"),
        }
    }

    pub(super) fn complete_sync_leader(
        &mut self,
        g: &mut Group,
        generation_id: i32,
        assignments: BTreeMap<String, Bytes>,
        outcome: AppendOutcome,
        now_ms: i64,
    ) {
        if g.state != GroupState::CompletingRebalance || g.generation_id != generation_id {
            return; // Superseded by a newer rebalance, which answered the waiters.
        }
        if outcome != AppendOutcome::Appended {
            self.reset_and_propagate_assignment_error(g, outcome.group_error());
            return self.prepare_rebalance(g, now_ms);
        }
        for (id, m) in g.members.iter_mut() {
            m.assignment = assignments.get(id).cloned().unwrap_or_default();
        }
        g.transition(GroupState::Stable, now_ms);
        let waiting: Vec<(String, Waiter)> = g
            .members
            .iter_mut()
            .filter_map(|(id, m)| m.awaiting_sync.take().map(|w| (id.clone(), w)))
            .collect();
        for (id, w) in waiting {
            self.touch_session(g, &id, now_ms);
            let assignment = g.members[&id].assignment.clone();
            self.respond_sync_assignment(g, w, assignment);
        }
    }

    // ---- Heartbeat ---------------------------------------------------------------------------

    pub(super) fn heartbeat(&mut self, ctx: &RequestContext, req: HeartbeatRequest, now_ms: i64) {
        let group_id = req.group_id.0.to_string();
        let code = if group_id.is_empty() {
            ResponseError::InvalidGroupId.code()
        } else if let Err(code) = self.coordinator_for(&group_id) {
            code
        } else {
            self.with_group(&group_id, |c, g| c.heartbeat_in_group(g, &req, now_ms))
                .unwrap_or(ResponseError::UnknownMemberId.code())
        };
        let response = HeartbeatResponse::default().with_error_code(code);
        self.respond(
            ctx.request_id,
            ctx.api_version,
            GroupResponse::Heartbeat(response),
        );
    }

    fn heartbeat_in_group(&mut self, g: &mut Group, req: &HeartbeatRequest, now_ms: i64) -> i16 {
        let member_id = req.member_id.as_str();
        if g.state == GroupState::Dead {
            return ResponseError::CoordinatorNotAvailable.code();
        }
        if let Err(code) = validate_member(g, member_id, req.group_instance_id.as_deref()) {
            return code;
        }
        if req.generation_id != g.generation_id {
            return ResponseError::IllegalGeneration.code();
        }
        match g.state {
            GroupState::Empty => ResponseError::UnknownMemberId.code(),
            GroupState::PreparingRebalance => {
                self.touch_session(g, member_id, now_ms);
                ResponseError::RebalanceInProgress.code()
            }
            // After a join response the member may heartbeat before syncing: it is alive.
            GroupState::CompletingRebalance | GroupState::Stable => {
                self.touch_session(g, member_id, now_ms);
                0
            }
            GroupState::Dead => unreachable!("checked above"),
        }
    }

    // ---- LeaveGroup --------------------------------------------------------------------------

    pub(super) fn leave_group(
        &mut self,
        ctx: &RequestContext,
        req: LeaveGroupRequest,
        now_ms: i64,
    ) {
        let v = ctx.api_version;
        let identities: Vec<(String, Option<String>)> = if v >= 3 {
            req.members
                .iter()
                .map(|m| {
                    (
                        m.member_id.to_string(),
                        m.group_instance_id.as_ref().map(|s| s.to_string()),
                    )
                })
                .collect()
        } else {
            vec![(req.member_id.to_string(), None)]
        };
        let group_id = req.group_id.0.to_string();
        let (top_error, member_errors) = if group_id.is_empty() {
            (ResponseError::InvalidGroupId.code(), Vec::new())
        } else if let Err(code) = self.coordinator_for(&group_id) {
            (code, Vec::new())
        } else {
            match self.with_group(&group_id, |c, g| c.leave_in_group(g, &identities, now_ms)) {
                Some(result) => result,
                None => {
                    let unknown = ResponseError::UnknownMemberId.code();
                    (0, identities.iter().map(|_| unknown).collect())
                }
            }
        };
        let mut response = LeaveGroupResponse::default().with_error_code(top_error);
        if v >= 3 {
            response.members = identities
                .iter()
                .zip(member_errors)
                .map(|((member_id, instance), code)| {
                    MemberResponse::default()
                        .with_member_id(s(member_id))
                        .with_group_instance_id(instance.as_deref().map(s))
                        .with_error_code(code)
                })
                .collect();
        } else if top_error == 0 {
            response.error_code = member_errors.first().copied().unwrap_or(0);
        }
        self.respond(ctx.request_id, v, GroupResponse::LeaveGroup(response));
    }

    fn leave_in_group(
        &mut self,
        g: &mut Group,
        identities: &[(String, Option<String>)],
        now_ms: i64,
    ) -> (i16, Vec<i16>) {
        if g.state == GroupState::Dead {
            return (ResponseError::CoordinatorNotAvailable.code(), Vec::new());
        }
        let mut errors = Vec::with_capacity(identities.len());
        for (member_id, instance) in identities {
            let code = match instance {
                None => {
                    if g.pending_join_members.remove(member_id).is_some() {
                        self.maybe_complete_join(g, now_ms);
                        0
                    } else if g.members.contains_key(member_id) {
                        self.remove_member_and_update_group(g, member_id, now_ms);
                        0
                    } else {
                        ResponseError::UnknownMemberId.code()
                    }
                }
                Some(instance) => match g.static_members.get(instance).cloned() {
                    None => ResponseError::UnknownMemberId.code(),
                    Some(existing) if !member_id.is_empty() && existing != *member_id => {
                        ResponseError::FencedInstanceId.code()
                    }
                    Some(existing) => {
                        self.remove_member_and_update_group(g, &existing, now_ms);
                        0
                    }
                },
            };
            errors.push(code);
        }
        (0, errors)
    }
}

/// Kafka's validateMember: a static member must present the id its instance currently maps
/// to (else it is a zombie: FENCED_INSTANCE_ID); any member must exist.
pub(super) fn validate_member(
    g: &Group,
    member_id: &str,
    instance: Option<&str>,
) -> Result<(), i16> {
    if let Some(instance) = instance {
        match g.static_members.get(instance) {
            None => return Err(ResponseError::UnknownMemberId.code()),
            Some(existing) if existing != member_id => {
                return Err(ResponseError::FencedInstanceId.code())
            }
            Some(_) => {}
        }
    }
    if !g.members.contains_key(member_id) {
        return Err(ResponseError::UnknownMemberId.code());
    }
    Ok(())
}

/// Carries a member's id change into the group's id-keyed sets.
fn rename_member(g: &mut Group, from: &str, to: &str) {
    if g.is_leader(from) {
        g.leader_id = Some(to.to_string());
    }
    if g.pending_sync_members.remove(from) {
        g.pending_sync_members.insert(to.to_string());
    }
}

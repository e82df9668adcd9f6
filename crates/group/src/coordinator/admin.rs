//! Group administration: DescribeGroups, ListGroups, DeleteGroups.
//!
//! Owns the read-only views of groups and group deletion. Deletion is only allowed for Empty
//! groups (NON_EMPTY_GROUP otherwise) and writes tombstones for the group and all its offsets,
//! answering only once every affected partition has made them durable.

use std::collections::BTreeMap;

use kafka_protocol::messages::delete_groups_response::DeletableGroupResult;
use kafka_protocol::messages::describe_groups_response::{DescribedGroup, DescribedGroupMember};
use kafka_protocol::messages::list_groups_response::ListedGroup;
use kafka_protocol::messages::{
    DeleteGroupsRequest, DeleteGroupsResponse, DescribeGroupsRequest, DescribeGroupsResponse,
    GroupId, ListGroupsRequest, ListGroupsResponse,
};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;

use super::{
    AfterAppend, AppendOutcome, Coordinator, GroupResponse, PartitionLoad, RequestContext,
    RequestId,
};
use crate::group::GroupState;
use crate::records::{self, OffsetsRecord};

/// The group type ListGroups v5+ reports for every group this coordinator holds.
const GROUP_TYPE_CLASSIC: &str = "classic";

/// A DeleteGroups request waiting for its appends (one per affected partition).
#[derive(Debug)]
pub(super) struct DeleteAggregate {
    request_id: RequestId,
    api_version: i16,
    /// Per requested group, in request order: its error (final unless awaiting an append).
    results: Vec<(String, i16)>,
    outstanding_appends: usize,
}

fn s(v: &str) -> StrBytes {
    StrBytes::from_string(v.to_string())
}

impl Coordinator {
    pub(super) fn describe_groups(&mut self, ctx: &RequestContext, req: DescribeGroupsRequest) {
        let v = ctx.api_version;
        let described = req
            .groups
            .iter()
            .map(|id| {
                let base = DescribedGroup::default().with_group_id(id.clone());
                if let Err(code) = self.coordinator_for(id) {
                    return base.with_error_code(code);
                }
                let Some(g) = self
                    .groups
                    .get(id.as_str())
                    .filter(|g| g.state != GroupState::Dead)
                else {
                    let dead = base.with_group_state(s(GroupState::Dead.as_str()));
                    return if v >= 6 {
                        dead.with_error_code(ResponseError::GroupIdNotFound.code())
                            .with_error_message(Some(s(&format!(
                                "Group {} not found.",
                                id.as_str()
                            ))))
                    } else {
                        dead
                    };
                };
                let stable = g.state == GroupState::Stable;
                let protocol = g.protocol_name.clone().unwrap_or_default();
                let members = g
                    .members
                    .values()
                    .map(|m| {
                        let d = DescribedGroupMember::default()
                            .with_member_id(s(&m.member_id))
                            .with_group_instance_id(m.group_instance_id.as_deref().map(s))
                            .with_client_id(s(&m.client_id))
                            .with_client_host(s(&m.client_host));
                        // Metadata and assignment are only meaningful for a settled generation.
                        if stable {
                            d.with_member_metadata(m.metadata_for(&protocol))
                                .with_member_assignment(m.assignment.clone())
                        } else {
                            d
                        }
                    })
                    .collect();
                base.with_group_state(s(g.state.as_str()))
                    .with_protocol_type(s(g.protocol_type.as_deref().unwrap_or("")))
                    .with_protocol_data(s(if stable { &protocol } else { "" }))
                    .with_members(members)
            })
            .collect();
        let response = DescribeGroupsResponse::default().with_groups(described);
        self.respond(ctx.request_id, v, GroupResponse::DescribeGroups(response));
    }

    pub(super) fn list_groups(&mut self, ctx: &RequestContext, req: ListGroupsRequest) {
        let v = ctx.api_version;
        let states: Vec<String> = if v >= 4 {
            req.states_filter.iter().map(|s| s.to_lowercase()).collect()
        } else {
            Vec::new()
        };
        let types: Vec<String> = if v >= 5 {
            req.types_filter.iter().map(|s| s.to_lowercase()).collect()
        } else {
            Vec::new()
        };
        let loading = self
            .partitions
            .values()
            .any(|l| *l == PartitionLoad::Loading);
        let groups = self
            .groups
            .values()
            .filter(|g| self.partitions.get(&g.partition) == Some(&PartitionLoad::Loaded))
            .filter(|g| g.state != GroupState::Dead)
            .filter(|g| states.is_empty() || states.contains(&g.state.as_str().to_lowercase()))
            .filter(|_| types.is_empty() || types.iter().any(|t| t == GROUP_TYPE_CLASSIC))
            .map(|g| {
                ListedGroup::default()
                    .with_group_id(GroupId(s(&g.group_id)))
                    .with_protocol_type(s(g.protocol_type.as_deref().unwrap_or("")))
                    .with_group_state(s(g.state.as_str()))
                    .with_group_type(s(GROUP_TYPE_CLASSIC))
            })
            .collect();
        let error = if loading {
            ResponseError::CoordinatorLoadInProgress.code()
        } else {
            0
        };
        let response = ListGroupsResponse::default()
            .with_error_code(error)
            .with_groups(groups);
        self.respond(ctx.request_id, v, GroupResponse::ListGroups(response));
    }

    pub(super) fn delete_groups(
        &mut self,
        ctx: &RequestContext,
        req: DeleteGroupsRequest,
        now_ms: i64,
    ) {
        let mut results = Vec::with_capacity(req.groups_names.len());
        let mut by_partition: BTreeMap<i32, (Vec<OffsetsRecord>, Vec<String>)> = BTreeMap::new();
        for id in &req.groups_names {
            let id = id.0.to_string();
            let code = match self.coordinator_for(&id) {
                Err(code) => code,
                Ok(_) => match self.groups.get(&id).map(|g| g.state) {
                    None | Some(GroupState::Dead) => ResponseError::GroupIdNotFound.code(),
                    Some(GroupState::Empty) => {
                        let g = self.groups.remove(&id).expect("present");
                        self.reindex(&id);
                        let (records_out, ids) = by_partition.entry(g.partition).or_default();
                        for (topic, partition) in g.offsets.keys() {
                            records_out.push(OffsetsRecord {
                                key: records::encode_offset_key(&id, topic, *partition),
                                value: None,
                                timestamp_ms: now_ms,
                            });
                        }
                        records_out.push(OffsetsRecord {
                            key: records::encode_group_key(&id),
                            value: None,
                            timestamp_ms: now_ms,
                        });
                        ids.push(id.clone());
                        0
                    }
                    Some(_) => ResponseError::NonEmptyGroup.code(),
                },
            };
            results.push((id, code));
        }
        if by_partition.is_empty() {
            return self.respond_delete_groups(ctx.request_id, ctx.api_version, results);
        }
        let aggregate = self.next_aggregate_id;
        self.next_aggregate_id += 1;
        self.delete_aggregates.insert(
            aggregate,
            DeleteAggregate {
                request_id: ctx.request_id,
                api_version: ctx.api_version,
                results,
                outstanding_appends: by_partition.len(),
            },
        );
        for (partition, (records_out, group_ids)) in by_partition {
            self.append(
                partition,
                records_out,
                AfterAppend::DeleteGroups {
                    aggregate,
                    group_ids,
                },
            );
        }
    }

    pub(super) fn complete_delete_groups(
        &mut self,
        aggregate: u64,
        group_ids: Vec<String>,
        outcome: AppendOutcome,
    ) {
        let agg = self
            .delete_aggregates
            .get_mut(&aggregate)
            .expect("aggregate lives until its last append completes");
        if outcome != AppendOutcome::Appended {
            for (id, code) in agg.results.iter_mut() {
                if group_ids.contains(id) {
                    *code = outcome.group_error();
                }
            }
        }
        agg.outstanding_appends -= 1;
        if agg.outstanding_appends == 0 {
            let agg = self.delete_aggregates.remove(&aggregate).expect("present");
            self.respond_delete_groups(agg.request_id, agg.api_version, agg.results);
        }
    }

    fn respond_delete_groups(
        &mut self,
        request_id: RequestId,
        v: i16,
        results: Vec<(String, i16)>,
    ) {
        let results = results
            .into_iter()
            .map(|(id, code)| {
                DeletableGroupResult::default()
                    .with_group_id(GroupId(s(&id)))
                    .with_error_code(code)
            })
            .collect();
        let response = DeleteGroupsResponse::default().with_results(results);
        self.respond(request_id, v, GroupResponse::DeleteGroups(response));
    }
}

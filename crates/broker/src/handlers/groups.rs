//! The classic consumer-group APIs: JoinGroup, SyncGroup, Heartbeat, LeaveGroup, OffsetCommit,
//! OffsetFetch, DescribeGroups, ListGroups, DeleteGroups, OffsetDelete.
//!
//! Deliberately thin: every one of them is a request to the group coordinator runtime
//! ([`crate::groups`]), whose pure state machine (`josefine_group`) shapes the response for the
//! request's version. This file only converts between kafka-protocol's request/response enums
//! and the coordinator's, and never decides anything about groups itself.

use std::net::SocketAddr;
use std::sync::Arc;

use josefine_group::{GroupRequest, GroupResponse};
use kafka_protocol::messages::{RequestKind, ResponseKind};

use super::authorized_operations;
use crate::broker::Broker;
use crate::groups::GroupCaller;

/// Kafka `AclOperation` codes a group supports (`AclEntry.supportedOperations` for GROUP in
/// Kafka 4.1): READ, DELETE, DESCRIBE, DESCRIBE_CONFIGS, ALTER_CONFIGS.
const GROUP_OPERATIONS: &[u8] = &[3, 6, 8, 10, 11];

/// True for the request kinds this file handles (dispatch routes them all here).
pub fn is_group_request(body: &RequestKind) -> bool {
    matches!(
        body,
        RequestKind::JoinGroup(_)
            | RequestKind::SyncGroup(_)
            | RequestKind::Heartbeat(_)
            | RequestKind::LeaveGroup(_)
            | RequestKind::OffsetCommit(_)
            | RequestKind::OffsetFetch(_)
            | RequestKind::DescribeGroups(_)
            | RequestKind::ListGroups(_)
            | RequestKind::DeleteGroups(_)
            | RequestKind::OffsetDelete(_)
    )
}

fn to_group_request(body: RequestKind) -> GroupRequest {
    match body {
        RequestKind::JoinGroup(r) => GroupRequest::JoinGroup(r),
        RequestKind::SyncGroup(r) => GroupRequest::SyncGroup(r),
        RequestKind::Heartbeat(r) => GroupRequest::Heartbeat(r),
        RequestKind::LeaveGroup(r) => GroupRequest::LeaveGroup(r),
        RequestKind::OffsetCommit(r) => GroupRequest::OffsetCommit(r),
        RequestKind::OffsetFetch(r) => GroupRequest::OffsetFetch(r),
        RequestKind::DescribeGroups(r) => GroupRequest::DescribeGroups(r),
        RequestKind::ListGroups(r) => GroupRequest::ListGroups(r),
        RequestKind::DeleteGroups(r) => GroupRequest::DeleteGroups(r),
        RequestKind::OffsetDelete(r) => GroupRequest::OffsetDelete(r),
        other => panic!("dispatch routed a non-group request here: {other:?}"),
    }
}

fn to_response_kind(response: GroupResponse) -> ResponseKind {
    match response {
        GroupResponse::JoinGroup(r) => ResponseKind::JoinGroup(r),
        GroupResponse::SyncGroup(r) => ResponseKind::SyncGroup(r),
        GroupResponse::Heartbeat(r) => ResponseKind::Heartbeat(r),
        GroupResponse::LeaveGroup(r) => ResponseKind::LeaveGroup(r),
        GroupResponse::OffsetCommit(r) => ResponseKind::OffsetCommit(r),
        GroupResponse::OffsetFetch(r) => ResponseKind::OffsetFetch(r),
        GroupResponse::DescribeGroups(r) => ResponseKind::DescribeGroups(r),
        GroupResponse::ListGroups(r) => ResponseKind::ListGroups(r),
        GroupResponse::DeleteGroups(r) => ResponseKind::DeleteGroups(r),
        GroupResponse::OffsetDelete(r) => ResponseKind::OffsetDelete(r),
    }
}

/// Handles one group request. `None` means the coordinator is shutting down: the connection
/// closes and the client reconnects and looks the coordinator up again.
pub async fn handle(
    broker: &Arc<Broker>,
    api_version: i16,
    client_id: Option<&str>,
    peer: Option<SocketAddr>,
    body: RequestKind,
) -> Option<ResponseKind> {
    // ACLs are a broker concern, not group state: answered here.
    let include_operations =
        matches!(&body, RequestKind::DescribeGroups(r) if r.include_authorized_operations);
    let request = to_group_request(body);
    let caller = GroupCaller {
        api_version,
        client_id: client_id.unwrap_or_default().to_string(),
        peer,
    };
    let mut response = broker.groups().call(caller, request).await?;
    if let GroupResponse::DescribeGroups(r) = &mut response {
        if include_operations {
            // Without an authorizer Kafka grants every operation a group supports.
            for g in &mut r.groups {
                g.authorized_operations = authorized_operations(GROUP_OPERATIONS);
            }
        }
    }
    Some(to_response_kind(response))
}

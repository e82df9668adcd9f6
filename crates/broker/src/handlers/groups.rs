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

use josefine_meta::Image;
use kafka_protocol::messages::offset_commit_response::{
    OffsetCommitResponsePartition, OffsetCommitResponseTopic,
};
use kafka_protocol::messages::offset_delete_response::{
    OffsetDeleteResponsePartition, OffsetDeleteResponseTopic,
};
use kafka_protocol::messages::{OffsetCommitResponse, TopicName};

use super::{authorized_operations, code};
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
        GroupResponse::TxnOffsetCommit(r) => ResponseKind::TxnOffsetCommit(r),
    }
}

/// Removes the partitions of unknown topics (or beyond a topic's partition count) from a
/// request's `topics`, returning the request's [`Shape`]. A macro because OffsetCommit and
/// OffsetDelete topics are different types with the same field names.
macro_rules! drop_unknown {
    ($image:expr, $topics:expr) => {{
        let shape = shape_of(
            $image,
            $topics
                .iter()
                .map(|t| (&t.name, t.partitions.iter().map(|p| p.partition_index))),
        );
        for t in $topics.iter_mut() {
            t.partitions
                .retain(|p| known($image, &t.name, p.partition_index));
        }
        $topics.retain(|t| !t.partitions.is_empty());
        shape
    }};
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
    let mut request = to_group_request(body);
    // Kafka checks the partitions of commits and offset deletions against the metadata
    // before the coordinator sees them: unknown ones get UNKNOWN_TOPIC_OR_PARTITION.
    let image = broker.metadata.image();
    let shape = match &mut request {
        GroupRequest::OffsetCommit(r) => {
            let shape = drop_unknown!(&image, r.topics);
            if r.topics.is_empty() {
                // Nothing left to commit: answered without the coordinator, as Kafka does.
                return Some(ResponseKind::OffsetCommit(commit_response(&shape, &[])));
            }
            Some(shape)
        }
        GroupRequest::OffsetDelete(r) => Some(drop_unknown!(&image, r.topics)),
        _ => None,
    };
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
    match (&shape, &mut response) {
        (Some(shape), GroupResponse::OffsetCommit(r)) => {
            *r = commit_response(shape, &r.topics);
        }
        (Some(shape), GroupResponse::OffsetDelete(r)) if r.error_code == code::NONE => {
            r.topics = delete_response_topics(shape, &r.topics);
        }
        _ => {}
    }
    Some(to_response_kind(response))
}

/// The partitions of an OffsetCommit or OffsetDelete in request order, each with whether its
/// topic and partition exist.
type Shape = Vec<(TopicName, Vec<(i32, bool)>)>;

fn known(image: &Image, topic: &TopicName, partition: i32) -> bool {
    let count = image
        .topic_by_name(&topic.0)
        .map_or(0, |t| t.partitions.len());
    partition >= 0 && (partition as usize) < count
}

fn shape_of<'a, P: Iterator<Item = i32>>(
    image: &Image,
    topics: impl Iterator<Item = (&'a TopicName, P)>,
) -> Shape {
    topics
        .map(|(name, partitions)| {
            let partitions = partitions.map(|p| (p, known(image, name, p))).collect();
            (name.clone(), partitions)
        })
        .collect()
}

/// Error codes in the request's shape: the coordinator's answer (`(topic, partition, error)`)
/// for known partitions, UNKNOWN_TOPIC_OR_PARTITION for the others.
fn merged(shape: &Shape, answered: &[(&TopicName, i32, i16)]) -> Vec<(TopicName, Vec<(i32, i16)>)> {
    let answer = |topic: &TopicName, partition: i32| {
        answered
            .iter()
            .find(|(t, p, _)| *t == topic && *p == partition)
            .map_or(code::UNKNOWN_SERVER_ERROR, |a| a.2)
    };
    shape
        .iter()
        .map(|(name, partitions)| {
            let codes = partitions
                .iter()
                .map(|&(p, known)| match known {
                    true => (p, answer(name, p)),
                    false => (p, code::UNKNOWN_TOPIC_OR_PARTITION),
                })
                .collect();
            (name.clone(), codes)
        })
        .collect()
}

fn delete_response_topics(
    shape: &Shape,
    answered: &[OffsetDeleteResponseTopic],
) -> Vec<OffsetDeleteResponseTopic> {
    let answered: Vec<_> = answered
        .iter()
        .flat_map(|t| {
            t.partitions
                .iter()
                .map(move |p| (&t.name, p.partition_index, p.error_code))
        })
        .collect();
    merged(shape, &answered)
        .into_iter()
        .map(|(name, codes)| {
            OffsetDeleteResponseTopic::default()
                .with_name(name)
                .with_partitions(
                    codes
                        .into_iter()
                        .map(|(p, e)| {
                            OffsetDeleteResponsePartition::default()
                                .with_partition_index(p)
                                .with_error_code(e)
                        })
                        .collect(),
                )
        })
        .collect()
}

fn commit_response(shape: &Shape, answered: &[OffsetCommitResponseTopic]) -> OffsetCommitResponse {
    let answered: Vec<_> = answered
        .iter()
        .flat_map(|t| {
            t.partitions
                .iter()
                .map(move |p| (&t.name, p.partition_index, p.error_code))
        })
        .collect();
    let topics = merged(shape, &answered)
        .into_iter()
        .map(|(name, codes)| {
            OffsetCommitResponseTopic::default()
                .with_name(name)
                .with_partitions(
                    codes
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
    OffsetCommitResponse::default().with_topics(topics)
}

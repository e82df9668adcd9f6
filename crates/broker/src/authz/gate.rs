//! The authorization of one decoded request before its handler runs ([`gate`]): each API's
//! row of [`super::OPERATIONS`] applied as Kafka 4.1's `KafkaApis` (and, for the APIs the
//! controller serves, `ControllerApis`) applies it. A request is refused as a whole, or served
//! without the items the caller may not touch, whose refusals are put back into the handler's
//! answer afterwards ([`Amend`]) in Kafka's shapes, codes and order.
//!
//! Owns: which items of a request the caller may act on, and the answers of the refused ones.
//! Must never: decide by itself (every decision is [`Authz`]'s, i.e. `josefine_meta::acl`), let
//! a refused item reach a handler, or touch a request or an answer when no authorizer is
//! configured (then every API behaves as without this module).

use std::collections::HashSet;
use std::sync::Arc;

use josefine_meta::acl::Operation::{self, *};
use josefine_meta::acl::ResourceType::*;
use kafka_protocol::messages::{
    AddOffsetsToTxnResponse, AddPartitionsToTxnResponse, EndTxnResponse, FindCoordinatorResponse,
    InitProducerIdResponse, OffsetDeleteResponse, OffsetFetchResponse, RequestKind, ResponseKind,
    TxnOffsetCommitResponse, WriteTxnMarkersResponse,
};
use kafka_protocol::protocol::StrBytes;

use super::Authz;
use crate::broker::Broker;
use crate::handlers::{code, str_bytes};

/// Puts refused items back into a handler's answer.
pub type Amend = Box<dyn FnOnce(&mut ResponseKind) + Send>;

/// What authorization leaves of a request.
// Built once per request and matched at once: boxing the refusal would only add an allocation.
#[allow(clippy::large_enum_variant)]
pub enum Gate {
    /// Serve the (possibly narrowed) request, then apply the amendment to its answer.
    Serve(Option<Amend>),
    /// Refused as a whole: this is the answer.
    Refuse(ResponseKind),
}

/// Authorizes `request` (API version `version`) for the caller of this task, taking out of it
/// what the caller may not do.
pub fn gate(broker: &Arc<Broker>, version: i16, request: &mut RequestKind) -> Gate {
    if !broker.config.broker.authorizer_enabled {
        return Gate::Serve(None);
    }
    if let Some(denied) = super::cluster_denied(broker, version, request) {
        return Gate::Refuse(denied);
    }
    if matches!(
        request,
        RequestKind::JoinGroup(_)
            | RequestKind::SyncGroup(_)
            | RequestKind::Heartbeat(_)
            | RequestKind::LeaveGroup(_)
            | RequestKind::OffsetCommit(_)
    ) {
        return match super::authorize_group_request(broker, request) {
            Err(denied) => Gate::Refuse(*denied),
            Ok(refused) if refused.is_empty() => Gate::Serve(None),
            Ok(refused) => amend(move |r| {
                if let ResponseKind::OffsetCommit(r) = r {
                    r.topics.extend(refused);
                }
            }),
        };
    }
    let authz = Authz::of(broker);
    match request {
        RequestKind::DescribeConfigs(r) => configs::describe(authz, r),
        RequestKind::AlterConfigs(r) => configs::alter(authz, r),
        RequestKind::IncrementalAlterConfigs(r) => configs::incremental_alter(authz, r),
        RequestKind::OffsetFetch(r) => groups::offset_fetch(authz, version, r),
        RequestKind::DescribeGroups(r) => groups::describe(authz, version, r),
        RequestKind::ListGroups(_) => groups::list(authz),
        RequestKind::DeleteGroups(r) => groups::delete(authz, r),
        RequestKind::OffsetDelete(r) => groups::offset_delete(authz, r),
        RequestKind::FindCoordinator(r) => groups::find_coordinator(authz, version, r),
        RequestKind::InitProducerId(r) => txn::init_producer_id(authz, r),
        RequestKind::AddPartitionsToTxn(r) => txn::add_partitions(authz, version, r),
        RequestKind::AddOffsetsToTxn(r) => txn::add_offsets(authz, r),
        RequestKind::EndTxn(r) => txn::end(authz, r),
        RequestKind::TxnOffsetCommit(r) => txn::offset_commit(authz, r),
        RequestKind::WriteTxnMarkers(r) => txn::write_markers(authz, r),
        RequestKind::DescribeTransactions(r) => txn::describe(authz, r),
        RequestKind::ListTransactions(_) => txn::list(authz),
        RequestKind::DescribeProducers(r) => topics::describe_producers(authz, r),
        RequestKind::DeleteRecords(r) => topics::delete_records(authz, r),
        RequestKind::OffsetForLeaderEpoch(r) => topics::offset_for_leader_epoch(authz, r),
        RequestKind::DescribeTopicPartitions(r) => topics::describe_topic_partitions(authz, r),
        RequestKind::DescribeCluster(r) if r.include_cluster_authorized_operations => {
            amend(move |r| {
                if let ResponseKind::DescribeCluster(r) = r {
                    r.cluster_authorized_operations = authz
                        .authorized_operations(Cluster, josefine_meta::acl::CLUSTER_RESOURCE_NAME);
                }
            })
        }
        _ => Gate::Serve(None),
    }
}

fn amend(f: impl FnOnce(&mut ResponseKind) + Send + 'static) -> Gate {
    Gate::Serve(Some(Box::new(f)))
}

/// Kafka's message of an authorization error code (`Errors.message()`).
fn message(error: i16) -> Option<StrBytes> {
    Some(str_bytes(match error {
        code::TOPIC_AUTHORIZATION_FAILED => "Topic authorization failed.",
        code::GROUP_AUTHORIZATION_FAILED => "Group authorization failed.",
        code::CLUSTER_AUTHORIZATION_FAILED => "Cluster authorization failed.",
        code::TRANSACTIONAL_ID_AUTHORIZATION_FAILED => "Transactional Id authorization failed.",
        _ => return None,
    }))
}

/// Takes the items `allowed` refuses out of `items`, with the positions they had.
fn split<T>(items: &mut Vec<T>, mut allowed: impl FnMut(&T) -> bool) -> Vec<(usize, T)> {
    let mut refused = Vec::new();
    let mut kept = Vec::with_capacity(items.len());
    for (i, item) in std::mem::take(items).into_iter().enumerate() {
        match allowed(&item) {
            true => kept.push(item),
            false => refused.push((i, item)),
        }
    }
    *items = kept;
    refused
}

/// Puts refused items back at the positions [`split`] took them from (the handler answered the
/// others in request order).
fn reinsert<T>(items: &mut Vec<T>, refused: Vec<(usize, T)>) {
    for (i, item) in refused {
        let at = i.min(items.len());
        items.insert(at, item);
    }
}

impl Authz {
    fn topic(&self, op: Operation, name: &StrBytes) -> bool {
        self.allows(op, Topic, name)
    }
    fn group(&self, op: Operation, name: &StrBytes) -> bool {
        self.allows(op, Group, name)
    }
    fn transactional_id(&self, op: Operation, name: &StrBytes) -> bool {
        self.allows(op, TransactionalId, name)
    }
}

mod configs {
    //! DescribeConfigs, AlterConfigs, IncrementalAlterConfigs: per resource, BROKER,
    //! BROKER_LOGGER and CLIENT_METRICS on the cluster, TOPIC and GROUP on themselves.

    use kafka_protocol::messages::alter_configs_request::AlterConfigsResource as LegacyResource;
    use kafka_protocol::messages::alter_configs_response::AlterConfigsResourceResponse as Legacy;
    use kafka_protocol::messages::describe_configs_request::DescribeConfigsResource;
    use kafka_protocol::messages::describe_configs_response::DescribeConfigsResult;
    use kafka_protocol::messages::incremental_alter_configs_request::AlterConfigsResource;
    use kafka_protocol::messages::incremental_alter_configs_response::AlterConfigsResourceResponse;
    use kafka_protocol::messages::{
        AlterConfigsRequest, DescribeConfigsRequest, IncrementalAlterConfigsRequest,
    };

    use super::*;

    /// The error a resource of this type is refused with, if the caller may not do `op`
    /// (`None`: allowed, or a type the handler refuses itself).
    fn refusal(authz: &Authz, op: Operation, resource_type: i8, name: &StrBytes) -> Option<i16> {
        let (allowed, error) = match resource_type {
            // BROKER, BROKER_LOGGER, CLIENT_METRICS
            4 | 8 | 16 => (authz.allows_cluster(op), code::CLUSTER_AUTHORIZATION_FAILED),
            2 => (authz.topic(op, name), code::TOPIC_AUTHORIZATION_FAILED),
            32 => (authz.group(op, name), code::GROUP_AUTHORIZATION_FAILED),
            _ => return None,
        };
        (!allowed).then_some(error)
    }

    /// Takes the resources the caller may not `op` out of a request; their answers (built by
    /// `answer` from the error, type and name) with their request positions.
    fn refuse<T, R>(
        authz: &Authz,
        op: Operation,
        resources: &mut Vec<T>,
        key: fn(&T) -> (i8, &StrBytes),
        answer: impl Fn(i16, i8, StrBytes) -> R,
    ) -> Vec<(usize, R)> {
        let refused = split(resources, |c| {
            let (resource_type, name) = key(c);
            refusal(authz, op, resource_type, name).is_none()
        });
        refused
            .into_iter()
            .map(|(i, c)| {
                let (resource_type, name) = key(&c);
                let error = refusal(authz, op, resource_type, name).expect("refused above");
                (i, answer(error, resource_type, name.clone()))
            })
            .collect()
    }

    pub(super) fn describe(authz: Authz, r: &mut DescribeConfigsRequest) -> Gate {
        let key: fn(&DescribeConfigsResource) -> (i8, &StrBytes) =
            |c| (c.resource_type, &c.resource_name);
        let results = refuse(&authz, DescribeConfigs, &mut r.resources, key, |e, t, n| {
            DescribeConfigsResult::default()
                .with_error_code(e)
                .with_error_message(message(e))
                .with_resource_type(t)
                .with_resource_name(n)
        });
        // Kafka answers the authorized resources, then the refused ones.
        amend(move |r| {
            if let ResponseKind::DescribeConfigs(r) = r {
                r.results.extend(results.into_iter().map(|(_, c)| c));
            }
        })
    }

    pub(super) fn alter(authz: Authz, r: &mut AlterConfigsRequest) -> Gate {
        let key: fn(&LegacyResource) -> (i8, &StrBytes) = |c| (c.resource_type, &c.resource_name);
        let results = refuse(&authz, AlterConfigs, &mut r.resources, key, |e, t, n| {
            Legacy::default()
                .with_error_code(e)
                .with_error_message(message(e))
                .with_resource_type(t)
                .with_resource_name(n)
        });
        // Kafka's controller answers the refused resources first.
        amend(move |r| {
            if let ResponseKind::AlterConfigs(r) = r {
                r.responses
                    .splice(0..0, results.into_iter().map(|(_, c)| c));
            }
        })
    }

    pub(super) fn incremental_alter(authz: Authz, r: &mut IncrementalAlterConfigsRequest) -> Gate {
        let key: fn(&AlterConfigsResource) -> (i8, &StrBytes) =
            |c| (c.resource_type, &c.resource_name);
        let results = refuse(&authz, AlterConfigs, &mut r.resources, key, |e, t, n| {
            AlterConfigsResourceResponse::default()
                .with_error_code(e)
                .with_error_message(message(e))
                .with_resource_type(t)
                .with_resource_name(n)
        });
        amend(move |r| {
            if let ResponseKind::IncrementalAlterConfigs(r) = r {
                reinsert(&mut r.responses, results);
            }
        })
    }
}

mod groups {
    //! OffsetFetch, DescribeGroups, ListGroups, DeleteGroups, OffsetDelete, FindCoordinator.

    use kafka_protocol::messages::delete_groups_response::DeletableGroupResult;
    use kafka_protocol::messages::describe_groups_response::DescribedGroup;
    use kafka_protocol::messages::find_coordinator_response::Coordinator;
    use kafka_protocol::messages::offset_delete_response::{
        OffsetDeleteResponsePartition, OffsetDeleteResponseTopic,
    };
    use kafka_protocol::messages::offset_fetch_response::{
        OffsetFetchResponseGroup, OffsetFetchResponsePartition, OffsetFetchResponsePartitions,
        OffsetFetchResponseTopic, OffsetFetchResponseTopics,
    };
    use kafka_protocol::messages::{
        DeleteGroupsRequest, DescribeGroupsRequest, FindCoordinatorRequest, OffsetDeleteRequest,
        OffsetFetchRequest,
    };

    use super::*;

    const TOPIC_DENIED: i16 = code::TOPIC_AUTHORIZATION_FAILED;
    const GROUP_DENIED: i16 = code::GROUP_AUTHORIZATION_FAILED;

    /// GROUP DESCRIBE, then TOPIC DESCRIBE: refused topics answer TOPIC_AUTHORIZATION_FAILED
    /// per partition; of an all-topics fetch only the topics the caller may describe are shown.
    pub(super) fn offset_fetch(authz: Authz, version: i16, r: &mut OffsetFetchRequest) -> Gate {
        if version < 8 {
            if !authz.group(Describe, &r.group_id) {
                return Gate::Refuse(ResponseKind::OffsetFetch(
                    OffsetFetchResponse::default().with_error_code(GROUP_DENIED),
                ));
            }
            let refused = match &mut r.topics {
                None => None,
                Some(topics) => Some(split(topics, |t| authz.topic(Describe, &t.name))),
            };
            return amend(move |response| {
                let ResponseKind::OffsetFetch(response) = response else {
                    return;
                };
                if response.error_code != code::NONE {
                    return;
                }
                match refused {
                    None => response.topics.retain(|t| authz.topic(Describe, &t.name)),
                    Some(refused) => response.topics.extend(refused.into_iter().map(|(_, t)| {
                        OffsetFetchResponseTopic::default()
                            .with_name(t.name)
                            .with_partitions(
                                t.partition_indexes
                                    .iter()
                                    .map(|&p| {
                                        OffsetFetchResponsePartition::default()
                                            .with_partition_index(p)
                                            .with_committed_offset(-1)
                                            .with_error_code(TOPIC_DENIED)
                                    })
                                    .collect(),
                            )
                    })),
                }
            });
        }
        let denied_groups = split(&mut r.groups, |g| authz.group(Describe, &g.group_id));
        // Per group left: None = all topics (filter the answer), else the refused topics.
        let mut refused_topics = Vec::with_capacity(r.groups.len());
        for g in &mut r.groups {
            let refused = g
                .topics
                .as_mut()
                .map(|topics| split(topics, |t| authz.topic(Describe, &t.name)));
            refused_topics.push((g.group_id.clone(), refused));
        }
        amend(move |response| {
            let ResponseKind::OffsetFetch(response) = response else {
                return;
            };
            for g in &mut response.groups {
                if g.error_code != code::NONE {
                    continue;
                }
                let Some((_, refused)) =
                    refused_topics.iter_mut().find(|(id, _)| *id == g.group_id)
                else {
                    continue;
                };
                match refused.take() {
                    None => g.topics.retain(|t| authz.topic(Describe, &t.name)),
                    Some(refused) => g.topics.extend(refused.into_iter().map(|(_, t)| {
                        OffsetFetchResponseTopics::default()
                            .with_name(t.name)
                            .with_partitions(
                                t.partition_indexes
                                    .iter()
                                    .map(|&p| {
                                        OffsetFetchResponsePartitions::default()
                                            .with_partition_index(p)
                                            .with_committed_offset(-1)
                                            .with_error_code(TOPIC_DENIED)
                                    })
                                    .collect(),
                            )
                    })),
                }
            }
            let denied = denied_groups.into_iter().map(|(i, g)| {
                let group = OffsetFetchResponseGroup::default()
                    .with_group_id(g.group_id)
                    .with_error_code(GROUP_DENIED);
                (i, group)
            });
            reinsert(&mut response.groups, denied.collect());
        })
    }

    /// DESCRIBE on each group; refused groups come first in Kafka's answer. The others get
    /// their `authorized_operations` when asked for (v3+).
    pub(super) fn describe(authz: Authz, version: i16, r: &mut DescribeGroupsRequest) -> Gate {
        let refused = split(&mut r.groups, |g| authz.group(Describe, g));
        let operations = version >= 3 && r.include_authorized_operations;
        amend(move |response| {
            let ResponseKind::DescribeGroups(response) = response else {
                return;
            };
            if operations {
                for g in &mut response.groups {
                    if g.error_code == code::NONE {
                        g.authorized_operations = authz.authorized_operations(Group, &g.group_id);
                    }
                }
            }
            let denied = refused.into_iter().map(|(_, id)| {
                DescribedGroup::default()
                    .with_group_id(id)
                    .with_error_code(GROUP_DENIED)
            });
            response.groups.splice(0..0, denied);
        })
    }

    /// DESCRIBE on the cluster lists every group; else only the groups the caller may DESCRIBE.
    pub(super) fn list(authz: Authz) -> Gate {
        if authz.allows_cluster(Describe) {
            return Gate::Serve(None);
        }
        amend(move |response| {
            if let ResponseKind::ListGroups(response) = response {
                response
                    .groups
                    .retain(|g| authz.group(Describe, &g.group_id));
            }
        })
    }

    /// DELETE on each (distinct) group; the refused ones follow the coordinator's results.
    pub(super) fn delete(authz: Authz, r: &mut DeleteGroupsRequest) -> Gate {
        let refused = split(&mut r.groups_names, |g| authz.group(Delete, g));
        if refused.is_empty() {
            return Gate::Serve(None);
        }
        let mut seen = HashSet::new();
        let results: Vec<_> = refused
            .into_iter()
            .filter(|(_, g)| seen.insert(g.clone()))
            .map(|(_, g)| {
                DeletableGroupResult::default()
                    .with_group_id(g)
                    .with_error_code(GROUP_DENIED)
            })
            .collect();
        amend(move |response| {
            if let ResponseKind::DeleteGroups(response) = response {
                response.results.extend(results);
            }
        })
    }

    /// DELETE on the group (GROUP_AUTHORIZATION_FAILED for all), then READ on each topic.
    pub(super) fn offset_delete(authz: Authz, r: &mut OffsetDeleteRequest) -> Gate {
        if !authz.group(Delete, &r.group_id) {
            return Gate::Refuse(ResponseKind::OffsetDelete(
                OffsetDeleteResponse::default().with_error_code(GROUP_DENIED),
            ));
        }
        let refused = split(&mut r.topics, |t| authz.topic(Read, &t.name));
        if refused.is_empty() {
            return Gate::Serve(None);
        }
        let topics: Vec<_> = refused
            .into_iter()
            .map(|(_, t)| {
                OffsetDeleteResponseTopic::default()
                    .with_name(t.name)
                    .with_partitions(
                        t.partitions
                            .iter()
                            .map(|p| {
                                OffsetDeleteResponsePartition::default()
                                    .with_partition_index(p.partition_index)
                                    .with_error_code(TOPIC_DENIED)
                            })
                            .collect(),
                    )
            })
            .collect();
        amend(move |response| {
            if let ResponseKind::OffsetDelete(response) = response {
                // A group-level error replaces every partition answer, as in Kafka.
                if response.error_code == code::NONE {
                    response.topics.extend(topics);
                }
            }
        })
    }

    /// The error a coordinator key is refused with (GROUP or TRANSACTIONAL_ID DESCRIBE).
    fn key_refusal(authz: &Authz, key_type: i8, key: &StrBytes) -> Option<i16> {
        match key_type {
            0 => (!authz.group(Describe, key)).then_some(GROUP_DENIED),
            1 => (!authz.transactional_id(Describe, key))
                .then_some(code::TRANSACTIONAL_ID_AUTHORIZATION_FAILED),
            _ => None,
        }
    }

    pub(super) fn find_coordinator(
        authz: Authz,
        version: i16,
        r: &mut FindCoordinatorRequest,
    ) -> Gate {
        if version < 4 {
            return match key_refusal(&authz, r.key_type, &r.key) {
                None => Gate::Serve(None),
                Some(error) => Gate::Refuse(ResponseKind::FindCoordinator(
                    FindCoordinatorResponse::default()
                        .with_error_code(error)
                        .with_error_message(message(error))
                        .with_node_id((-1).into())
                        .with_host(StrBytes::default())
                        .with_port(-1),
                )),
            };
        }
        let key_type = r.key_type;
        let refused = split(&mut r.coordinator_keys, |k| {
            key_refusal(&authz, key_type, k).is_none()
        });
        if refused.is_empty() {
            return Gate::Serve(None);
        }
        let coordinators: Vec<_> = refused
            .into_iter()
            .map(|(i, key)| {
                let error = key_refusal(&authz, key_type, &key).expect("refused above");
                let coordinator = Coordinator::default()
                    .with_key(key)
                    .with_error_code(error)
                    .with_node_id((-1).into())
                    .with_host(StrBytes::default())
                    .with_port(-1);
                (i, coordinator)
            })
            .collect();
        amend(move |response| {
            if let ResponseKind::FindCoordinator(response) = response {
                reinsert(&mut response.coordinators, coordinators);
            }
        })
    }
}

mod txn {
    //! InitProducerId and the transaction APIs.

    use kafka_protocol::messages::add_partitions_to_txn_response::{
        AddPartitionsToTxnPartitionResult, AddPartitionsToTxnTopicResult,
    };
    use kafka_protocol::messages::describe_transactions_response::TransactionState;
    use kafka_protocol::messages::txn_offset_commit_response::{
        TxnOffsetCommitResponsePartition, TxnOffsetCommitResponseTopic,
    };
    use kafka_protocol::messages::write_txn_markers_response::{
        WritableTxnMarkerPartitionResult, WritableTxnMarkerResult, WritableTxnMarkerTopicResult,
    };
    use kafka_protocol::messages::{
        AddOffsetsToTxnRequest, AddPartitionsToTxnRequest, DescribeTransactionsRequest,
        EndTxnRequest, InitProducerIdRequest, TxnOffsetCommitRequest, WriteTxnMarkersRequest,
    };

    use super::*;

    const TXN_DENIED: i16 = code::TRANSACTIONAL_ID_AUTHORIZATION_FAILED;

    /// With a transactional id WRITE on it; else IDEMPOTENT_WRITE on the cluster or WRITE on
    /// any topic.
    pub(super) fn init_producer_id(authz: Authz, r: &InitProducerIdRequest) -> Gate {
        let error = match &r.transactional_id {
            Some(id) if !authz.transactional_id(Write, id) => TXN_DENIED,
            Some(_) => return Gate::Serve(None),
            None if authz.allows_cluster(IdempotentWrite) || authz.allows_any(Write, Topic) => {
                return Gate::Serve(None)
            }
            None => code::CLUSTER_AUTHORIZATION_FAILED,
        };
        Gate::Refuse(ResponseKind::InitProducerId(
            InitProducerIdResponse::default()
                .with_error_code(error)
                .with_producer_id((-1).into())
                .with_producer_epoch(-1),
        ))
    }

    /// v0-3 (clients): WRITE on the transactional id, then on each topic (any refused topic
    /// fails the whole request: refused TOPIC_AUTHORIZATION_FAILED, unknown
    /// UNKNOWN_TOPIC_OR_PARTITION, the rest OPERATION_NOT_ATTEMPTED). v4+ (brokers):
    /// CLUSTER_ACTION.
    pub(super) fn add_partitions(
        authz: Authz,
        version: i16,
        r: &AddPartitionsToTxnRequest,
    ) -> Gate {
        if version >= 4 {
            if authz.allows_cluster(ClusterAction) {
                return Gate::Serve(None);
            }
            return Gate::Refuse(ResponseKind::AddPartitionsToTxn(
                AddPartitionsToTxnResponse::default()
                    .with_error_code(code::CLUSTER_AUTHORIZATION_FAILED),
            ));
        }
        let all_denied = !authz.transactional_id(Write, &r.v3_and_below_transactional_id);
        let topic_denied = |name: &StrBytes| !authz.topic(Write, name);
        if !all_denied && !r.v3_and_below_topics.iter().any(|t| topic_denied(&t.name)) {
            return Gate::Serve(None);
        }
        let topics = r
            .v3_and_below_topics
            .iter()
            .map(|t| {
                let known = authz.image.topic_by_name(&t.name);
                let partition_error = |p: i32| match () {
                    _ if all_denied => TXN_DENIED,
                    _ if topic_denied(&t.name) => code::TOPIC_AUTHORIZATION_FAILED,
                    _ if known.is_none_or(|k| p < 0 || p as usize >= k.partitions.len()) => {
                        code::UNKNOWN_TOPIC_OR_PARTITION
                    }
                    _ => code::OPERATION_NOT_ATTEMPTED,
                };
                AddPartitionsToTxnTopicResult::default()
                    .with_name(t.name.clone())
                    .with_results_by_partition(
                        t.partitions
                            .iter()
                            .map(|&p| {
                                AddPartitionsToTxnPartitionResult::default()
                                    .with_partition_index(p)
                                    .with_partition_error_code(partition_error(p))
                            })
                            .collect(),
                    )
            })
            .collect();
        Gate::Refuse(ResponseKind::AddPartitionsToTxn(
            AddPartitionsToTxnResponse::default().with_results_by_topic_v3_and_below(topics),
        ))
    }

    /// WRITE on the transactional id, then READ on the group.
    pub(super) fn add_offsets(authz: Authz, r: &AddOffsetsToTxnRequest) -> Gate {
        let error = if !authz.transactional_id(Write, &r.transactional_id) {
            TXN_DENIED
        } else if !authz.group(Read, &r.group_id) {
            code::GROUP_AUTHORIZATION_FAILED
        } else {
            return Gate::Serve(None);
        };
        Gate::Refuse(ResponseKind::AddOffsetsToTxn(
            AddOffsetsToTxnResponse::default().with_error_code(error),
        ))
    }

    /// WRITE on the transactional id.
    pub(super) fn end(authz: Authz, r: &EndTxnRequest) -> Gate {
        if authz.transactional_id(Write, &r.transactional_id) {
            return Gate::Serve(None);
        }
        Gate::Refuse(ResponseKind::EndTxn(
            EndTxnResponse::default().with_error_code(TXN_DENIED),
        ))
    }

    /// WRITE on the transactional id, READ on the group (either refused: every partition
    /// answers the error), then READ on each topic (refused topics answered, the rest served).
    pub(super) fn offset_commit(authz: Authz, r: &mut TxnOffsetCommitRequest) -> Gate {
        let answer = |t: &kafka_protocol::messages::txn_offset_commit_request::TxnOffsetCommitRequestTopic,
                      error: i16| {
            TxnOffsetCommitResponseTopic::default()
                .with_name(t.name.clone())
                .with_partitions(
                    t.partitions
                        .iter()
                        .map(|p| {
                            TxnOffsetCommitResponsePartition::default()
                                .with_partition_index(p.partition_index)
                                .with_error_code(error)
                        })
                        .collect(),
                )
        };
        let whole = if !authz.transactional_id(Write, &r.transactional_id) {
            Some(TXN_DENIED)
        } else if !authz.group(Read, &r.group_id) {
            Some(code::GROUP_AUTHORIZATION_FAILED)
        } else {
            None
        };
        if let Some(error) = whole {
            return Gate::Refuse(ResponseKind::TxnOffsetCommit(
                TxnOffsetCommitResponse::default()
                    .with_topics(r.topics.iter().map(|t| answer(t, error)).collect()),
            ));
        }
        let refused = split(&mut r.topics, |t| authz.topic(Read, &t.name));
        if refused.is_empty() {
            return Gate::Serve(None);
        }
        let topics: Vec<_> = refused
            .iter()
            .map(|(_, t)| answer(t, code::TOPIC_AUTHORIZATION_FAILED))
            .collect();
        amend(move |response| {
            if let ResponseKind::TxnOffsetCommit(response) = response {
                response.topics.extend(topics);
            }
        })
    }

    /// ALTER or CLUSTER_ACTION on the cluster; refused: every partition
    /// CLUSTER_AUTHORIZATION_FAILED.
    pub(super) fn write_markers(authz: Authz, r: &WriteTxnMarkersRequest) -> Gate {
        if authz.allows_cluster(Alter) || authz.allows_cluster(ClusterAction) {
            return Gate::Serve(None);
        }
        let markers = r
            .markers
            .iter()
            .map(|m| {
                WritableTxnMarkerResult::default()
                    .with_producer_id(m.producer_id)
                    .with_topics(
                        m.topics
                            .iter()
                            .map(|t| {
                                WritableTxnMarkerTopicResult::default()
                                    .with_name(t.name.clone())
                                    .with_partitions(
                                        t.partition_indexes
                                            .iter()
                                            .map(|&p| {
                                                WritableTxnMarkerPartitionResult::default()
                                                    .with_partition_index(p)
                                                    .with_error_code(
                                                        code::CLUSTER_AUTHORIZATION_FAILED,
                                                    )
                                            })
                                            .collect(),
                                    )
                            })
                            .collect(),
                    )
            })
            .collect();
        Gate::Refuse(ResponseKind::WriteTxnMarkers(
            WriteTxnMarkersResponse::default().with_markers(markers),
        ))
    }

    /// DESCRIBE on each transactional id; of each transaction only the topics the caller may
    /// DESCRIBE are shown.
    pub(super) fn describe(authz: Authz, r: &mut DescribeTransactionsRequest) -> Gate {
        let refused = split(&mut r.transactional_ids, |id| {
            authz.transactional_id(Describe, id)
        });
        amend(move |response| {
            let ResponseKind::DescribeTransactions(response) = response else {
                return;
            };
            for s in &mut response.transaction_states {
                s.topics.retain(|t| authz.topic(Describe, &t.topic));
            }
            let denied = refused.into_iter().map(|(i, id)| {
                let state = TransactionState::default()
                    .with_transactional_id(id)
                    .with_error_code(TXN_DENIED);
                (i, state)
            });
            reinsert(&mut response.transaction_states, denied.collect());
        })
    }

    /// Only the transactional ids the caller may DESCRIBE.
    pub(super) fn list(authz: Authz) -> Gate {
        amend(move |response| {
            if let ResponseKind::ListTransactions(response) = response {
                response
                    .transaction_states
                    .retain(|s| authz.transactional_id(Describe, &s.transactional_id));
            }
        })
    }
}

mod topics {
    //! DescribeProducers, DeleteRecords, OffsetForLeaderEpoch, DescribeTopicPartitions.

    use kafka_protocol::messages::delete_records_response::{
        DeleteRecordsPartitionResult, DeleteRecordsTopicResult,
    };
    use kafka_protocol::messages::describe_producers_response::{PartitionResponse, TopicResponse};
    use kafka_protocol::messages::describe_topic_partitions_request::TopicRequest;
    use kafka_protocol::messages::describe_topic_partitions_response::DescribeTopicPartitionsResponseTopic;
    use kafka_protocol::messages::offset_for_leader_epoch_response::{
        EpochEndOffset, OffsetForLeaderTopicResult,
    };
    use kafka_protocol::messages::{
        DeleteRecordsRequest, DescribeProducersRequest, DescribeTopicPartitionsRequest,
        DescribeTopicPartitionsResponse, OffsetForLeaderEpochRequest,
    };

    use crate::handlers::topic_name;

    use super::*;

    const DENIED: i16 = code::TOPIC_AUTHORIZATION_FAILED;

    /// READ on each topic; refused partitions carry Kafka's message.
    pub(super) fn describe_producers(authz: Authz, r: &mut DescribeProducersRequest) -> Gate {
        let refused = split(&mut r.topics, |t| authz.topic(Read, &t.name));
        if refused.is_empty() {
            return Gate::Serve(None);
        }
        let topics: Vec<_> = refused
            .into_iter()
            .map(|(i, t)| {
                let partitions = t
                    .partition_indexes
                    .iter()
                    .map(|&p| {
                        PartitionResponse::default()
                            .with_partition_index(p)
                            .with_error_code(DENIED)
                            .with_error_message(message(DENIED))
                    })
                    .collect();
                (
                    i,
                    TopicResponse::default()
                        .with_name(t.name)
                        .with_partitions(partitions),
                )
            })
            .collect();
        amend(move |response| {
            if let ResponseKind::DescribeProducers(response) = response {
                reinsert(&mut response.topics, topics);
            }
        })
    }

    /// DELETE on each topic.
    pub(super) fn delete_records(authz: Authz, r: &mut DeleteRecordsRequest) -> Gate {
        let refused = split(&mut r.topics, |t| authz.topic(Delete, &t.name));
        if refused.is_empty() {
            return Gate::Serve(None);
        }
        let topics: Vec<_> = refused
            .into_iter()
            .map(|(_, t)| {
                DeleteRecordsTopicResult::default()
                    .with_name(t.name)
                    .with_partitions(
                        t.partitions
                            .iter()
                            .map(|p| {
                                DeleteRecordsPartitionResult::default()
                                    .with_partition_index(p.partition_index)
                                    .with_low_watermark(-1)
                                    .with_error_code(DENIED)
                            })
                            .collect(),
                    )
            })
            .collect();
        amend(move |response| {
            if let ResponseKind::DeleteRecords(response) = response {
                response.topics.extend(topics);
            }
        })
    }

    /// CLUSTER_ACTION on the cluster covers every topic; else DESCRIBE on each.
    pub(super) fn offset_for_leader_epoch(
        authz: Authz,
        r: &mut OffsetForLeaderEpochRequest,
    ) -> Gate {
        if authz.allows_cluster(ClusterAction) {
            return Gate::Serve(None);
        }
        let refused = split(&mut r.topics, |t| authz.topic(Describe, &t.topic));
        if refused.is_empty() {
            return Gate::Serve(None);
        }
        let topics: Vec<_> = refused
            .into_iter()
            .map(|(_, t)| {
                OffsetForLeaderTopicResult::default()
                    .with_topic(t.topic)
                    .with_partitions(
                        t.partitions
                            .iter()
                            .map(|p| {
                                EpochEndOffset::default()
                                    .with_partition(p.partition)
                                    .with_error_code(DENIED)
                            })
                            .collect(),
                    )
            })
            .collect();
        amend(move |response| {
            if let ResponseKind::OffsetForLeaderEpoch(response) = response {
                response.topics.extend(topics);
            }
        })
    }

    fn operations(authz: &Authz, topics: &mut [DescribeTopicPartitionsResponseTopic]) {
        for t in topics {
            if let Some(name) = &t.name {
                t.topic_authorized_operations = authz.authorized_operations(Topic, name);
            }
        }
    }

    /// DESCRIBE on each topic: all topics shows only those; named ones without it follow the
    /// answer as TOPIC_AUTHORIZATION_FAILED (no id). `topic_authorized_operations` computed.
    pub(super) fn describe_topic_partitions(
        authz: Authz,
        r: &mut DescribeTopicPartitionsRequest,
    ) -> Gate {
        let cursor = r.cursor.as_ref().map(|c| c.topic_name.clone());
        if r.topics.is_empty() {
            // All topics: asked as the list of those the caller may describe (from the cursor
            // on), so pages and the next cursor count only those, as in Kafka.
            let from = cursor.as_ref().map_or("", |c| c.as_str());
            r.topics = authz
                .image
                .topic_ids_by_name
                .keys()
                .filter(|name| name.as_str() >= from && authz.allows(Describe, Topic, name))
                .map(|name| TopicRequest::default().with_name(topic_name(name)))
                .collect();
            if r.topics.is_empty() {
                return Gate::Refuse(ResponseKind::DescribeTopicPartitions(
                    DescribeTopicPartitionsResponse::default(),
                ));
            }
            if cursor.is_some_and(|c| r.topics[0].name != c) {
                r.cursor = None;
            }
            return amend(move |response| {
                if let ResponseKind::DescribeTopicPartitions(response) = response {
                    operations(&authz, &mut response.topics);
                }
            });
        }
        let mut refused = split(&mut r.topics, |t| authz.topic(Describe, &t.name));
        if let Some(cursor) = cursor {
            // Kafka leaves out the topics before the cursor, refused or not; a refused cursor
            // topic is skipped as if the cursor pointed at the next topic.
            refused.retain(|(_, t)| t.name.0 >= cursor.0);
            if refused.iter().any(|(_, t)| t.name == cursor) {
                r.topics.retain(|t| t.name.0 > cursor.0);
                r.cursor = None;
            }
        }
        let denied: Vec<_> = refused
            .into_iter()
            .map(|(_, t)| {
                DescribeTopicPartitionsResponseTopic::default()
                    .with_error_code(DENIED)
                    .with_name(Some(t.name))
                    .with_topic_id(uuid::Uuid::nil())
                    .with_is_internal(false)
            })
            .collect();
        amend(move |response| {
            let ResponseKind::DescribeTopicPartitions(response) = response else {
                return;
            };
            operations(&authz, &mut response.topics);
            let mut denied = denied;
            denied.sort_by(|a, b| a.name.cmp(&b.name));
            response.topics.extend(denied);
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_and_reinsert_keep_request_order() {
        let mut items = vec![1, 2, 3, 4, 5, 6];
        let refused = split(&mut items, |i| i % 2 == 0);
        assert_eq!(items, vec![2, 4, 6]);
        assert_eq!(refused, vec![(0, 1), (2, 3), (4, 5)]);
        reinsert(&mut items, refused);
        assert_eq!(items, vec![1, 2, 3, 4, 5, 6]);
    }

    #[test]
    fn messages_are_kafkas() {
        assert_eq!(
            message(code::TRANSACTIONAL_ID_AUTHORIZATION_FAILED)
                .unwrap()
                .as_str(),
            "Transactional Id authorization failed."
        );
        assert_eq!(message(code::NONE), None);
    }
}

//! Authorization of client requests: the operation every served API requires ([`OPERATIONS`],
//! Kafka 4.1's, next to `api_versions::SUPPORTED_APIS`), and the one call handlers make
//! ([`Authz::of`] then [`Authz::allows`] and friends).
//!
//! Owns: who the caller is for the decision (the connection's principal from
//! `crate::security::current`, `User:ANONYMOUS` when there is none, and the peer address as Java
//! prints it), and the answers of requests refused as a whole for a missing CLUSTER operation
//! ([`cluster_denied`]). The decision itself is `josefine_meta::acl` over this broker's applied
//! image, so every broker decides alike once it applied the same ACLs.
//! Must never: authorize anything ad hoc in a handler without a row here, or grant when the
//! authorizer is on and the caller is unknown (an unknown caller is ANONYMOUS, never a super
//! user). Without `authorizer.class.name` every check passes, as in Kafka.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use josefine_meta::acl::{Operation, Requester, ResourceType, CLUSTER_RESOURCE_NAME};
use josefine_meta::Image;
use kafka_protocol::messages::{
    ApiKey, CreateAclsResponse, DeleteAclsResponse, DescribeAclsResponse, DescribeClusterResponse,
    DescribeLogDirsResponse, ListPartitionReassignmentsResponse, RequestKind, ResponseKind,
};

use kafka_protocol::messages::offset_commit_response::OffsetCommitResponseTopic;

use crate::broker::Broker;
use crate::handlers::{code, str_bytes};

mod gate;
pub use gate::{gate, Amend, Gate};

use Operation::*;
use ResourceType::*;

/// What one API requires, as Kafka 4.1 checks it (`KafkaApis`, the security docs' "Operations
/// and Resources on Protocols"). `checks` are the (resource, operation) pairs a handler asks;
/// `rule` says how they combine.
#[derive(Debug, Clone, Copy)]
pub struct ApiOperations {
    pub key: ApiKey,
    pub checks: &'static [(ResourceType, Operation)],
    pub rule: &'static str,
}

const fn row(
    key: ApiKey,
    checks: &'static [(ResourceType, Operation)],
    rule: &'static str,
) -> ApiOperations {
    ApiOperations { key, checks, rule }
}

/// One row per API this broker serves (a test keeps it complete).
pub const OPERATIONS: &[ApiOperations] = &[
    row(ApiKey::Produce, &[(Topic, Write), (TransactionalId, Write)],
        "WRITE on each topic (TOPIC_AUTHORIZATION_FAILED per partition); with a transactional id also WRITE on it (TRANSACTIONAL_ID_AUTHORIZATION_FAILED for all)"),
    row(ApiKey::Fetch, &[(Cluster, ClusterAction), (Topic, Read)],
        "a follower: CLUSTER_ACTION on the cluster (CLUSTER_AUTHORIZATION_FAILED); a consumer: READ on each topic"),
    row(ApiKey::ListOffsets, &[(Topic, Describe)], "DESCRIBE on each topic"),
    row(ApiKey::Metadata, &[(Topic, Describe), (Cluster, Create), (Topic, Create)],
        "DESCRIBE on each topic (all topics: the others are left out; named: TOPIC_AUTHORIZATION_FAILED whether it exists or not); auto-creation needs CREATE on the cluster or the topic"),
    row(ApiKey::OffsetCommit, &[(Group, Read), (Topic, Read)],
        "READ on the group (GROUP_AUTHORIZATION_FAILED), then READ on each topic"),
    row(ApiKey::OffsetFetch, &[(Group, Describe), (Topic, Describe)],
        "DESCRIBE on the group, then DESCRIBE on each topic (unauthorized ones left out of all-topics answers)"),
    row(ApiKey::FindCoordinator, &[(Group, Describe), (TransactionalId, Describe)],
        "DESCRIBE on the group (key type 0) or the transactional id (key type 1)"),
    row(ApiKey::JoinGroup, &[(Group, Read)], "READ on the group"),
    row(ApiKey::Heartbeat, &[(Group, Read)], "READ on the group"),
    row(ApiKey::LeaveGroup, &[(Group, Read)], "READ on the group"),
    row(ApiKey::SyncGroup, &[(Group, Read)], "READ on the group"),
    row(ApiKey::DescribeGroups, &[(Group, Describe)], "DESCRIBE on each group"),
    row(ApiKey::ListGroups, &[(Cluster, Describe), (Group, Describe)],
        "DESCRIBE on the cluster lists all; else only the groups the caller may DESCRIBE"),
    row(ApiKey::ApiVersions, &[], "none"),
    row(ApiKey::CreateTopics, &[(Cluster, Create), (Topic, Create)],
        "CREATE on the cluster or on each topic (TOPIC_AUTHORIZATION_FAILED)"),
    row(ApiKey::DeleteTopics, &[(Topic, Delete)], "DELETE on each topic"),
    row(ApiKey::DeleteRecords, &[(Topic, Delete)], "DELETE on each topic"),
    row(ApiKey::InitProducerId, &[(TransactionalId, Write), (Cluster, IdempotentWrite), (Topic, Write)],
        "with a transactional id WRITE on it; else IDEMPOTENT_WRITE on the cluster or WRITE on any topic (CLUSTER_AUTHORIZATION_FAILED)"),
    row(ApiKey::OffsetForLeaderEpoch, &[(Cluster, ClusterAction), (Topic, Describe)],
        "CLUSTER_ACTION on the cluster covers every topic (followers); else DESCRIBE on each topic"),
    row(ApiKey::AddPartitionsToTxn, &[(TransactionalId, Write), (Topic, Write), (Cluster, ClusterAction)],
        "v0-3: WRITE on the transactional id and each topic; v4+ (brokers verifying): CLUSTER_ACTION"),
    row(ApiKey::AddOffsetsToTxn, &[(TransactionalId, Write), (Group, Read)],
        "WRITE on the transactional id, READ on the group"),
    row(ApiKey::EndTxn, &[(TransactionalId, Write)], "WRITE on the transactional id"),
    row(ApiKey::WriteTxnMarkers, &[(Cluster, Alter), (Cluster, ClusterAction)],
        "ALTER or CLUSTER_ACTION on the cluster (CLUSTER_AUTHORIZATION_FAILED per partition)"),
    row(ApiKey::TxnOffsetCommit, &[(TransactionalId, Write), (Group, Read), (Topic, Read)],
        "WRITE on the transactional id, READ on the group and each topic"),
    row(ApiKey::DescribeAcls, &[(Cluster, Describe)], "DESCRIBE on the cluster"),
    row(ApiKey::CreateAcls, &[(Cluster, Alter)], "ALTER on the cluster"),
    row(ApiKey::DeleteAcls, &[(Cluster, Alter)], "ALTER on the cluster"),
    row(ApiKey::DescribeConfigs, &[(Cluster, DescribeConfigs), (Topic, DescribeConfigs), (Group, DescribeConfigs)],
        "DESCRIBE_CONFIGS on the cluster (broker resources), the topic or the group"),
    row(ApiKey::AlterConfigs, &[(Cluster, AlterConfigs), (Topic, AlterConfigs), (Group, AlterConfigs)],
        "ALTER_CONFIGS on the cluster (broker resources), the topic or the group"),
    row(ApiKey::IncrementalAlterConfigs, &[(Cluster, AlterConfigs), (Topic, AlterConfigs), (Group, AlterConfigs)],
        "ALTER_CONFIGS on the cluster (broker resources), the topic or the group"),
    row(ApiKey::DescribeLogDirs, &[(Cluster, Describe)], "DESCRIBE on the cluster"),
    row(ApiKey::CreatePartitions, &[(Topic, Alter)], "ALTER on each topic"),
    row(ApiKey::DeleteGroups, &[(Group, Delete)], "DELETE on each group"),
    row(ApiKey::ListPartitionReassignments, &[(Cluster, Describe)], "DESCRIBE on the cluster"),
    row(ApiKey::OffsetDelete, &[(Group, Delete), (Topic, Read)],
        "DELETE on the group, READ on each topic"),
    row(ApiKey::DescribeCluster, &[(Cluster, Describe)], "DESCRIBE on the cluster"),
    row(ApiKey::DescribeProducers, &[(Topic, Read)], "READ on each topic"),
    row(ApiKey::DescribeTransactions, &[(TransactionalId, Describe)],
        "DESCRIBE on each transactional id"),
    row(ApiKey::ListTransactions, &[(TransactionalId, Describe)],
        "only the transactional ids the caller may DESCRIBE"),
    row(ApiKey::DescribeTopicPartitions, &[(Topic, Describe)], "DESCRIBE on each topic"),
    row(ApiKey::SaslHandshake, &[], "none (before authentication)"),
    row(ApiKey::SaslAuthenticate, &[], "none (before authentication)"),
    row(ApiKey::DescribeUserScramCredentials, &[(Cluster, Describe)], "DESCRIBE on the cluster"),
    row(ApiKey::AlterUserScramCredentials, &[(Cluster, Alter)], "ALTER on the cluster"),
    row(ApiKey::DescribeClientQuotas, &[(Cluster, DescribeConfigs)], "DESCRIBE_CONFIGS on the cluster"),
];

/// The row of `key`, if the table has one.
pub fn operations_of(key: ApiKey) -> Option<&'static ApiOperations> {
    OPERATIONS.iter().find(|r| r.key == key)
}

/// A client address as Java's `InetAddress.getHostAddress` prints it, the form ACL hosts are
/// compared in: dotted IPv4 (also for IPv4-mapped IPv6), and IPv6 as eight lower-case hex
/// groups without zero compression.
pub fn java_host_address(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => v4.to_string(),
            None => v6
                .segments()
                .iter()
                .map(|s| format!("{s:x}"))
                .collect::<Vec<_>>()
                .join(":"),
        },
    }
}

/// One request's authorization context: the caller, the settings and the image its checks read.
pub struct Authz {
    enabled: bool,
    principal: String,
    host: String,
    image: Arc<Image>,
    broker: Arc<Broker>,
}

impl Authz {
    /// The context of the request this task is handling.
    pub fn of(broker: &Arc<Broker>) -> Authz {
        let caller = crate::security::current();
        let principal = caller.as_ref().map_or_else(
            || crate::security::Principal::anonymous().to_string(),
            |c| c.principal.to_string(),
        );
        let host = caller
            .as_ref()
            .and_then(|c| c.peer)
            .map_or_else(String::new, |p: SocketAddr| java_host_address(p.ip()));
        Authz {
            enabled: broker.config.broker.authorizer_enabled,
            principal,
            host,
            image: broker.metadata.image(),
            broker: Arc::clone(broker),
        }
    }

    fn requester(&self) -> Requester<'_> {
        Requester {
            principal: &self.principal,
            host: &self.host,
        }
    }

    /// May the caller do `op` on the named resource?
    pub fn allows(&self, op: Operation, resource_type: ResourceType, name: &str) -> bool {
        !self.enabled
            || self.image.acls.authorize(
                &self.broker.config.broker.authorizer,
                &self.requester(),
                op,
                resource_type,
                name,
            )
    }

    /// May the caller do `op` on the cluster?
    pub fn allows_cluster(&self, op: Operation) -> bool {
        self.allows(op, Cluster, CLUSTER_RESOURCE_NAME)
    }

    /// May the caller do `op` on at least one resource of this type (Kafka's
    /// `authorizeByResourceType`)?
    pub fn allows_any(&self, op: Operation, resource_type: ResourceType) -> bool {
        !self.enabled
            || self.image.acls.authorize_by_resource_type(
                &self.broker.config.broker.authorizer,
                &self.requester(),
                op,
                resource_type,
            )
    }

    /// Kafka's `*_authorized_operations` bit field for a resource: every supported operation
    /// without an authorizer.
    pub fn authorized_operations(&self, resource_type: ResourceType, name: &str) -> i32 {
        if !self.enabled {
            return resource_type
                .supported_operations()
                .iter()
                .fold(0, |bits, op| bits | (1 << op.code()));
        }
        self.image.acls.authorized_operations(
            &self.broker.config.broker.authorizer,
            &self.requester(),
            resource_type,
            name,
        )
    }
}

/// The answer to a request refused as a whole because the caller lacks the CLUSTER operation
/// its row names, or None when allowed (or not a whole-request cluster API).
fn cluster_denied(
    broker: &Arc<Broker>,
    version: i16,
    request: &RequestKind,
) -> Option<ResponseKind> {
    let op = match request {
        RequestKind::DescribeAcls(_)
        | RequestKind::DescribeCluster(_)
        | RequestKind::DescribeLogDirs(_)
        | RequestKind::ListPartitionReassignments(_)
        | RequestKind::DescribeUserScramCredentials(_) => Describe,
        RequestKind::CreateAcls(_)
        | RequestKind::DeleteAcls(_)
        | RequestKind::AlterUserScramCredentials(_) => Alter,
        RequestKind::DescribeClientQuotas(_) => DescribeConfigs,
        _ => return None,
    };
    if Authz::of(broker).allows_cluster(op) {
        return None;
    }
    const DENIED: i16 = code::CLUSTER_AUTHORIZATION_FAILED;
    let message = || Some(str_bytes("Cluster authorization failed."));
    Some(match request {
        RequestKind::DescribeAcls(_) => ResponseKind::DescribeAcls(
            DescribeAclsResponse::default()
                .with_error_code(DENIED)
                .with_error_message(message()),
        ),
        RequestKind::CreateAcls(r) => ResponseKind::CreateAcls(
            CreateAclsResponse::default().with_results(
                r.creations
                    .iter()
                    .map(|_| {
                        kafka_protocol::messages::create_acls_response::AclCreationResult::default()
                            .with_error_code(DENIED)
                            .with_error_message(message())
                    })
                    .collect(),
            ),
        ),
        RequestKind::DeleteAcls(r) => ResponseKind::DeleteAcls(
            DeleteAclsResponse::default().with_filter_results(
                r.filters
                    .iter()
                    .map(|_| {
                        kafka_protocol::messages::delete_acls_response::DeleteAclsFilterResult::default()
                            .with_error_code(DENIED)
                            .with_error_message(message())
                    })
                    .collect(),
            ),
        ),
        RequestKind::DescribeCluster(_) => ResponseKind::DescribeCluster(
            DescribeClusterResponse::default()
                .with_error_code(DENIED)
                .with_error_message(message()),
        ),
        // v0-2 have no top-level error: Kafka answers no log dirs.
        RequestKind::DescribeLogDirs(_) => ResponseKind::DescribeLogDirs(
            DescribeLogDirsResponse::default()
                .with_error_code(if version >= 3 { DENIED } else { code::NONE }),
        ),
        RequestKind::ListPartitionReassignments(_) => ResponseKind::ListPartitionReassignments(
            ListPartitionReassignmentsResponse::default()
                .with_error_code(DENIED)
                .with_error_message(message()),
        ),
        RequestKind::DescribeUserScramCredentials(_) => ResponseKind::DescribeUserScramCredentials(
            kafka_protocol::messages::DescribeUserScramCredentialsResponse::default()
                .with_error_code(DENIED)
                .with_error_message(message()),
        ),
        RequestKind::DescribeClientQuotas(_) => ResponseKind::DescribeClientQuotas(
            kafka_protocol::messages::DescribeClientQuotasResponse::default()
                .with_error_code(DENIED)
                .with_error_message(message()),
        ),
        RequestKind::AlterUserScramCredentials(r) => ResponseKind::AlterUserScramCredentials(
            crate::handlers::alter_user_scram_credentials::every_user(
                r,
                DENIED,
                Some("Cluster authorization failed."),
            ),
        ),
        _ => unreachable!("matched above"),
    })
}

/// Serves a topic admin request (CreateTopics, DeleteTopics, CreatePartitions) for the caller:
/// the topics it may not change answer TOPIC_AUTHORIZATION_FAILED here, the rest go to the
/// controller (`forward::admin`), which serves them without a caller of its own. Kafka checks
/// the same on the receiving broker before forwarding.
pub async fn admin_topics(
    broker: &Arc<Broker>,
    version: i16,
    request: RequestKind,
    timeout_ms: Option<i32>,
) -> ResponseKind {
    use kafka_protocol::messages::create_partitions_response::CreatePartitionsTopicResult;
    use kafka_protocol::messages::create_topics_response::CreatableTopicResult;
    use kafka_protocol::messages::delete_topics_response::DeletableTopicResult;
    use kafka_protocol::messages::{
        CreatePartitionsResponse, CreateTopicsResponse, DeleteTopicsResponse,
    };

    use crate::controller::forward;

    const DENIED: i16 = code::TOPIC_AUTHORIZATION_FAILED;
    let message = || Some(str_bytes("Topic authorization failed."));
    let authz = Authz::of(broker);
    let forward = |request: RequestKind| forward::admin(broker, version, request, timeout_ms);
    match request {
        RequestKind::CreateTopics(mut r) => {
            let cluster = authz.allows_cluster(Create);
            let (allowed, denied): (Vec<_>, Vec<_>) = r
                .topics
                .into_iter()
                .partition(|t| cluster || authz.allows(Create, Topic, &t.name.0));
            r.topics = allowed;
            let mut response = match r.topics.is_empty() {
                true => CreateTopicsResponse::default(),
                false => match forward(RequestKind::CreateTopics(r)).await {
                    ResponseKind::CreateTopics(response) => response,
                    other => return other,
                },
            };
            response.topics.extend(denied.into_iter().map(|t| {
                CreatableTopicResult::default()
                    .with_name(t.name)
                    .with_error_code(DENIED)
                    .with_error_message(message())
                    .with_num_partitions(-1)
                    .with_replication_factor(-1)
            }));
            ResponseKind::CreateTopics(response)
        }
        RequestKind::DeleteTopics(mut r) => {
            let may_delete = |name: &str| authz.allows(Delete, Topic, name);
            let (names, denied_names): (Vec<_>, Vec<_>) =
                r.topic_names.into_iter().partition(|n| may_delete(&n.0));
            // v6 names a topic or its id; an id names the topic it has in the image (an unknown
            // id is left to the handler: UNKNOWN_TOPIC_ID).
            let (states, denied_states): (Vec<_>, Vec<_>) =
                r.topics.into_iter().partition(|t| match &t.name {
                    Some(n) => may_delete(&n.0),
                    None => authz
                        .image
                        .topics
                        .get(&crate::handlers::topic_id_of(t.topic_id))
                        .is_none_or(|topic| may_delete(&topic.name)),
                });
            r.topic_names = names;
            r.topics = states;
            let mut response = match r.topic_names.is_empty() && r.topics.is_empty() {
                true => DeleteTopicsResponse::default(),
                false => match forward(RequestKind::DeleteTopics(r)).await {
                    ResponseKind::DeleteTopics(response) => response,
                    other => return other,
                },
            };
            let refused = denied_names
                .into_iter()
                .map(|n| (Some(n), uuid::Uuid::nil()))
                .chain(denied_states.into_iter().map(|t| (t.name, t.topic_id)));
            response.responses.extend(refused.map(|(name, topic_id)| {
                DeletableTopicResult::default()
                    .with_name(name)
                    .with_topic_id(topic_id)
                    .with_error_code(DENIED)
                    .with_error_message(message())
            }));
            ResponseKind::DeleteTopics(response)
        }
        RequestKind::CreatePartitions(mut r) => {
            let (allowed, denied): (Vec<_>, Vec<_>) = r
                .topics
                .into_iter()
                .partition(|t| authz.allows(Alter, Topic, &t.name.0));
            r.topics = allowed;
            let mut response = match r.topics.is_empty() {
                true => CreatePartitionsResponse::default(),
                false => match forward(RequestKind::CreatePartitions(r)).await {
                    ResponseKind::CreatePartitions(response) => response,
                    other => return other,
                },
            };
            response.results.extend(denied.into_iter().map(|t| {
                CreatePartitionsTopicResult::default()
                    .with_name(t.name)
                    .with_error_code(DENIED)
                    .with_error_message(message())
            }));
            ResponseKind::CreatePartitions(response)
        }
        other => forward(other).await,
    }
}

/// A group request's authorization (JoinGroup, SyncGroup, Heartbeat, LeaveGroup, OffsetCommit:
/// READ on the group, else GROUP_AUTHORIZATION_FAILED for the whole request). An OffsetCommit's
/// topics without READ are taken out of the request and returned answered
/// TOPIC_AUTHORIZATION_FAILED, for the caller to add to the coordinator's answer, as Kafka
/// commits the others. `Err` is the whole answer.
fn authorize_group_request(
    broker: &Arc<Broker>,
    request: &mut RequestKind,
) -> Result<Vec<OffsetCommitResponseTopic>, Box<ResponseKind>> {
    use kafka_protocol::messages::offset_commit_response::OffsetCommitResponsePartition;
    use kafka_protocol::messages::{
        HeartbeatResponse, JoinGroupResponse, LeaveGroupResponse, OffsetCommitResponse,
        SyncGroupResponse,
    };
    const DENIED: i16 = code::GROUP_AUTHORIZATION_FAILED;
    let group = match &*request {
        RequestKind::JoinGroup(r) => &r.group_id,
        RequestKind::SyncGroup(r) => &r.group_id,
        RequestKind::Heartbeat(r) => &r.group_id,
        RequestKind::LeaveGroup(r) => &r.group_id,
        RequestKind::OffsetCommit(r) => &r.group_id,
        _ => return Ok(Vec::new()),
    };
    let authz = Authz::of(broker);
    let refused =
        |t: &kafka_protocol::messages::offset_commit_request::OffsetCommitRequestTopic,
         error: i16| {
            OffsetCommitResponseTopic::default()
                .with_name(t.name.clone())
                .with_partitions(
                    t.partitions
                        .iter()
                        .map(|p| {
                            OffsetCommitResponsePartition::default()
                                .with_partition_index(p.partition_index)
                                .with_error_code(error)
                        })
                        .collect(),
                )
        };
    if !authz.allows(Read, Group, &group.0) {
        return Err(Box::new(match &*request {
            RequestKind::JoinGroup(_) => ResponseKind::JoinGroup(
                JoinGroupResponse::default()
                    .with_error_code(DENIED)
                    .with_generation_id(-1),
            ),
            RequestKind::SyncGroup(_) => {
                ResponseKind::SyncGroup(SyncGroupResponse::default().with_error_code(DENIED))
            }
            RequestKind::Heartbeat(_) => {
                ResponseKind::Heartbeat(HeartbeatResponse::default().with_error_code(DENIED))
            }
            RequestKind::LeaveGroup(_) => {
                ResponseKind::LeaveGroup(LeaveGroupResponse::default().with_error_code(DENIED))
            }
            RequestKind::OffsetCommit(r) => ResponseKind::OffsetCommit(
                OffsetCommitResponse::default()
                    .with_topics(r.topics.iter().map(|t| refused(t, DENIED)).collect()),
            ),
            _ => unreachable!("matched above"),
        }));
    }
    let RequestKind::OffsetCommit(r) = request else {
        return Ok(Vec::new());
    };
    let (allowed, denied): (Vec<_>, Vec<_>) = std::mem::take(&mut r.topics)
        .into_iter()
        .partition(|t| authz.allows(Read, Topic, &t.name.0));
    r.topics = allowed;
    Ok(denied
        .iter()
        .map(|t| refused(t, code::TOPIC_AUTHORIZATION_FAILED))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api_versions::{SERVED_NOT_ADVERTISED, SUPPORTED_APIS};

    #[test]
    fn every_served_api_has_exactly_one_row() {
        for api in SUPPORTED_APIS.iter().chain(SERVED_NOT_ADVERTISED) {
            let rows = OPERATIONS.iter().filter(|r| r.key == api.key).count();
            assert_eq!(rows, 1, "{:?} needs one row in authz::OPERATIONS", api.key);
        }
    }

    #[test]
    fn rows_name_operations_their_resources_support() {
        for r in OPERATIONS {
            for (t, op) in r.checks {
                assert!(
                    t.supported_operations().contains(op),
                    "{:?}: {op:?} is not a {t:?} operation",
                    r.key
                );
            }
            assert!(!r.rule.is_empty());
        }
    }

    #[test]
    fn hosts_print_as_java_does() {
        assert_eq!(java_host_address("10.1.2.3".parse().unwrap()), "10.1.2.3");
        assert_eq!(java_host_address("::1".parse().unwrap()), "0:0:0:0:0:0:0:1");
        assert_eq!(
            java_host_address("fe80::1:abcd".parse().unwrap()),
            "fe80:0:0:0:0:0:1:abcd"
        );
        assert_eq!(
            java_host_address("::ffff:10.0.0.1".parse().unwrap()),
            "10.0.0.1"
        );
    }
}

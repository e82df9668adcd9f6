//! Issue 15, acceptance 5: for every served API with a row in `authz::OPERATIONS`, a principal
//! without ACLs (`User:mallory` over SASL/PLAIN, `allow.everyone.if.no.acl.found=false`) gets
//! Kafka's authorization error, and topics, configs, offsets, groups, transactions, SCRAM
//! credentials and ACLs read back byte-equal afterwards. The setup and the reads are done by a super user (ANONYMOUS on
//! the PLAINTEXT listener). An API added to the table without a case here fails the test.

mod common;

use bytes::Bytes;
use common::Client;
use josefine::config::{Config, ServeArgs};
use josefine::server::RunningBroker;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::{Decodable, StrBytes};

const TOPIC: &str = "acl-t";
const GROUP: &str = "acl-g";
const TXN: &str = "acl-tx";

const TOPIC_DENIED: i16 = 29;
const GROUP_DENIED: i16 = 30;
const CLUSTER_DENIED: i16 = 31;
const TXN_DENIED: i16 = 53;

fn s(v: &str) -> StrBytes {
    StrBytes::from_string(v.to_string())
}
fn topic() -> TopicName {
    TopicName(s(TOPIC))
}
fn group() -> GroupId {
    GroupId(s(GROUP))
}
fn txn() -> TransactionalId {
    TransactionalId(s(TXN))
}

async fn start() -> (RunningBroker, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let jaas = "org.apache.kafka.common.security.plain.PlainLoginModule required \
                user_mallory=\"mallory-pw\";";
    let set = [
        "listeners=PLAINTEXT://127.0.0.1:0,SASL_PLAINTEXT://127.0.0.1:0".to_string(),
        "inter.broker.listener.name=PLAINTEXT".into(),
        "sasl.enabled.mechanisms=PLAIN".into(),
        format!("listener.name.sasl_plaintext.plain.sasl.jaas.config={jaas}"),
        "authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer".into(),
        "allow.everyone.if.no.acl.found=false".into(),
        "super.users=User:ANONYMOUS".into(),
        "num.partitions=1".into(),
    ];
    let args = ServeArgs {
        raft_listen: Some("127.0.0.1:0".into()),
        data_dir: Some(dir.path().to_path_buf()),
        set: set.to_vec(),
        ..ServeArgs::default()
    };
    let config = Config::resolve(args).unwrap();
    (josefine::server::start(config).await.unwrap(), dir)
}

fn listener(b: &RunningBroker, name: &str) -> std::net::SocketAddr {
    b.listener_addrs.iter().find(|(n, _)| n == name).unwrap().1
}

async fn connect(addr: std::net::SocketAddr) -> Client {
    Client::connect_addr(addr).await
}

/// A SASL/PLAIN connection as `User:mallory`.
async fn mallory(b: &RunningBroker) -> Client {
    let mut c = connect(listener(b, "SASL_PLAINTEXT")).await;
    let hs = SaslHandshakeRequest::default().with_mechanism(s("PLAIN"));
    c.send(ApiKey::SaslHandshake, 1, &hs).await;
    let (_, r): (i32, SaslHandshakeResponse) = c.recv(ApiKey::SaslHandshake, 1).await;
    assert_eq!(r.error_code, 0);
    let auth = SaslAuthenticateRequest::default()
        .with_auth_bytes(Bytes::from_static(b"\0mallory\0mallory-pw"));
    c.send(ApiKey::SaslAuthenticate, 2, &auth).await;
    let (_, r): (i32, SaslAuthenticateResponse) = c.recv(ApiKey::SaslAuthenticate, 2).await;
    assert_eq!(r.error_code, 0, "{r:?}");
    c
}

/// Sends one request and returns the encoded response body and its decoded form.
async fn call(
    c: &mut Client,
    key: ApiKey,
    version: i16,
    req: &RequestKind,
) -> (Bytes, ResponseKind) {
    c.send_kind(key, version, req).await;
    let mut frame = c
        .read_frame()
        .await
        .unwrap_or_else(|| panic!("{key:?} v{version}: closed"));
    ResponseHeader::decode(&mut frame, key.response_header_version(version)).unwrap();
    let body = frame.clone();
    let decoded = ResponseKind::decode(key, &mut frame, version)
        .unwrap_or_else(|e| panic!("{key:?} v{version}: {e:#}"));
    (body, decoded)
}

fn one_record() -> Bytes {
    common::batch(&[("k", "v")], None)
}

async fn setup(admin: &mut Client) {
    let create = CreateTopicsRequest::default()
        .with_topics(vec![create_topics_request::CreatableTopic::default()
            .with_name(topic())
            .with_num_partitions(2)
            .with_replication_factor(1)])
        .with_timeout_ms(10_000);
    let (_, r) = call(
        admin,
        ApiKey::CreateTopics,
        7,
        &RequestKind::CreateTopics(create),
    )
    .await;
    let ResponseKind::CreateTopics(r) = r else {
        unreachable!()
    };
    assert_eq!(r.topics[0].error_code, 0, "{r:?}");
    for (key, version, req) in [
        (ApiKey::Produce, 12, RequestKind::Produce(produce(None))),
        (
            ApiKey::FindCoordinator,
            6,
            RequestKind::FindCoordinator(find_coordinator(0, GROUP)),
        ),
        (
            ApiKey::FindCoordinator,
            6,
            RequestKind::FindCoordinator(find_coordinator(1, TXN)),
        ),
        (
            ApiKey::OffsetCommit,
            9,
            RequestKind::OffsetCommit(offset_commit()),
        ),
        (
            ApiKey::CreateAcls,
            3,
            RequestKind::CreateAcls(create_acls()),
        ),
        (
            ApiKey::IncrementalAlterConfigs,
            1,
            RequestKind::IncrementalAlterConfigs(alter_topic_config()),
        ),
        (
            ApiKey::InitProducerId,
            5,
            RequestKind::InitProducerId(init_producer_id(Some(txn()))),
        ),
        (
            ApiKey::AlterUserScramCredentials,
            0,
            RequestKind::AlterUserScramCredentials(upsert_credential()),
        ),
    ] {
        // Coordinators load their internal topic first: retried until served.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        loop {
            let (_, r) = call(admin, key, version, &req).await;
            if error_codes(&r).iter().all(|&c| c == 0) {
                break;
            }
            assert!(std::time::Instant::now() < deadline, "setup {key:?}: {r:?}");
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
    }
}

/// A SCRAM-SHA-256 credential for `carol` (what `kafka-configs --add-config` sends).
fn upsert_credential() -> AlterUserScramCredentialsRequest {
    AlterUserScramCredentialsRequest::default().with_upsertions(vec![
        alter_user_scram_credentials_request::ScramCredentialUpsertion::default()
            .with_name(s("carol"))
            .with_mechanism(1)
            .with_iterations(4096)
            .with_salt(Bytes::from_static(b"0123456789abcdef"))
            .with_salted_password(Bytes::from_static(&[7; 32])),
    ])
}

fn find_coordinator(key_type: i8, key: &str) -> FindCoordinatorRequest {
    FindCoordinatorRequest::default()
        .with_key_type(key_type)
        .with_coordinator_keys(vec![s(key)])
}

fn produce(transactional_id: Option<TransactionalId>) -> ProduceRequest {
    ProduceRequest::default()
        .with_transactional_id(transactional_id)
        .with_acks(-1)
        .with_timeout_ms(5000)
        .with_topic_data(vec![produce_request::TopicProduceData::default()
            .with_name(topic())
            .with_partition_data(vec![
                produce_request::PartitionProduceData::default()
                    .with_index(0)
                    .with_records(Some(one_record())),
            ])])
}

fn offset_commit() -> OffsetCommitRequest {
    OffsetCommitRequest::default()
        .with_group_id(group())
        .with_generation_id_or_member_epoch(-1)
        .with_topics(vec![
            offset_commit_request::OffsetCommitRequestTopic::default()
                .with_name(topic())
                .with_partitions(vec![
                    offset_commit_request::OffsetCommitRequestPartition::default()
                        .with_partition_index(0)
                        .with_committed_offset(1),
                ]),
        ])
}

fn create_acls() -> CreateAclsRequest {
    CreateAclsRequest::default().with_creations(vec![create_acls_request::AclCreation::default()
        .with_resource_type(2)
        .with_resource_name(s(TOPIC))
        .with_resource_pattern_type(3)
        .with_principal(s("User:alice"))
        .with_host(s("*"))
        .with_operation(3)
        .with_permission_type(3)])
}

fn alter_topic_config() -> IncrementalAlterConfigsRequest {
    use incremental_alter_configs_request::{AlterConfigsResource, AlterableConfig};
    IncrementalAlterConfigsRequest::default().with_resources(vec![AlterConfigsResource::default()
        .with_resource_type(2)
        .with_resource_name(s(TOPIC))
        .with_configs(vec![AlterableConfig::default()
            .with_name(s("retention.ms"))
            .with_config_operation(0)
            .with_value(Some(s("123456")))])])
}

fn init_producer_id(transactional_id: Option<TransactionalId>) -> InitProducerIdRequest {
    InitProducerIdRequest::default()
        .with_transactional_id(transactional_id)
        .with_transaction_timeout_ms(60_000)
        .with_producer_id((-1).into())
        .with_producer_epoch(-1)
}

/// Everything a refused request must leave alone, read by the super user: the encoded answers.
async fn state(admin: &mut Client) -> Vec<(ApiKey, Bytes)> {
    use describe_configs_request::DescribeConfigsResource;
    use list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
    let reads = [
        (
            ApiKey::Metadata,
            12,
            RequestKind::Metadata(MetadataRequest::default().with_topics(None)),
        ),
        (
            ApiKey::DescribeConfigs,
            4,
            RequestKind::DescribeConfigs(DescribeConfigsRequest::default().with_resources(vec![
                DescribeConfigsResource::default()
                    .with_resource_type(2)
                    .with_resource_name(s(TOPIC))
                    .with_configuration_keys(None),
                DescribeConfigsResource::default()
                    .with_resource_type(32)
                    .with_resource_name(s(GROUP))
                    .with_configuration_keys(None),
            ])),
        ),
        (
            ApiKey::OffsetFetch,
            9,
            RequestKind::OffsetFetch(OffsetFetchRequest::default().with_groups(vec![
                offset_fetch_request::OffsetFetchRequestGroup::default()
                    .with_group_id(group())
                    .with_topics(None),
            ])),
        ),
        (
            ApiKey::ListOffsets,
            9,
            RequestKind::ListOffsets(
                ListOffsetsRequest::default()
                    .with_replica_id((-1).into())
                    .with_topics(vec![ListOffsetsTopic::default()
                        .with_name(topic())
                        .with_partitions(
                            (0..2)
                                .flat_map(|p| {
                                    [-1, -2].map(|ts| {
                                        ListOffsetsPartition::default()
                                            .with_partition_index(p)
                                            .with_timestamp(ts)
                                    })
                                })
                                .collect(),
                        )]),
            ),
        ),
        (
            ApiKey::DescribeAcls,
            3,
            RequestKind::DescribeAcls(
                DescribeAclsRequest::default()
                    .with_resource_type_filter(1)
                    .with_pattern_type_filter(1)
                    .with_operation(1)
                    .with_permission_type(1),
            ),
        ),
        (
            ApiKey::DescribeGroups,
            5,
            RequestKind::DescribeGroups(
                DescribeGroupsRequest::default().with_groups(vec![group()]),
            ),
        ),
        (
            ApiKey::ListGroups,
            5,
            RequestKind::ListGroups(ListGroupsRequest::default()),
        ),
        (
            ApiKey::DescribeUserScramCredentials,
            0,
            RequestKind::DescribeUserScramCredentials(
                DescribeUserScramCredentialsRequest::default().with_users(None),
            ),
        ),
        (
            ApiKey::DescribeTransactions,
            0,
            RequestKind::DescribeTransactions(
                DescribeTransactionsRequest::default().with_transactional_ids(vec![txn()]),
            ),
        ),
    ];
    let mut out = Vec::new();
    for (key, version, req) in reads {
        let (bytes, decoded) = call(admin, key, version, &req).await;
        assert!(
            error_codes(&decoded).iter().all(|&c| c == 0),
            "{key:?}: {decoded:?}"
        );
        out.push((key, bytes));
    }
    out
}

/// Every `error_code` / `partition_error_code` in an answer (its Debug form).
fn error_codes(r: &ResponseKind) -> Vec<i16> {
    let text = format!("{r:?}");
    text.match_indices("error_code: ")
        .map(|(i, m)| {
            let rest = &text[i + m.len()..];
            let end = rest
                .find(|c: char| c != '-' && !c.is_ascii_digit())
                .unwrap();
            rest[..end].parse().unwrap()
        })
        .collect()
}

/// What a refused request must answer.
enum Expect {
    /// This code somewhere, and no other than it or NONE.
    Code(i16),
    /// Served, but nothing of the test's resources shown (filtered lists).
    Hidden,
}

struct Case {
    version: i16,
    request: RequestKind,
    expect: Expect,
}

fn case(version: i16, request: RequestKind, expect: Expect) -> Case {
    Case {
        version,
        request,
        expect,
    }
}

/// The refused requests of one API (at least one per API with checks).
fn cases(key: ApiKey) -> Vec<Case> {
    use Expect::*;
    use RequestKind as R;
    match key {
        ApiKey::Produce => vec![
            case(12, R::Produce(produce(None)), Code(TOPIC_DENIED)),
            case(12, R::Produce(produce(Some(txn()))), Code(TXN_DENIED)),
        ],
        ApiKey::Fetch => vec![case(
            12,
            R::Fetch(
                FetchRequest::default()
                    .with_replica_id((-1).into())
                    .with_max_wait_ms(0)
                    .with_topics(vec![fetch_request::FetchTopic::default()
                        .with_topic(topic())
                        .with_partitions(vec![fetch_request::FetchPartition::default()
                            .with_partition(0)
                            .with_partition_max_bytes(1 << 20)])]),
            ),
            Code(TOPIC_DENIED),
        )],
        ApiKey::ListOffsets => vec![case(
            10,
            R::ListOffsets(
                ListOffsetsRequest::default()
                    .with_replica_id((-1).into())
                    .with_topics(vec![list_offsets_request::ListOffsetsTopic::default()
                        .with_name(topic())
                        .with_partitions(vec![
                            list_offsets_request::ListOffsetsPartition::default()
                                .with_timestamp(-1),
                        ])]),
            ),
            Code(TOPIC_DENIED),
        )],
        ApiKey::Metadata => vec![
            case(
                13,
                R::Metadata(MetadataRequest::default().with_topics(Some(vec![
                    metadata_request::MetadataRequestTopic::default().with_name(Some(topic())),
                ]))),
                Code(TOPIC_DENIED),
            ),
            case(
                13,
                R::Metadata(MetadataRequest::default().with_topics(None)),
                Hidden,
            ),
        ],
        ApiKey::OffsetCommit => vec![case(
            9,
            R::OffsetCommit(offset_commit()),
            Code(GROUP_DENIED),
        )],
        ApiKey::OffsetFetch => vec![
            case(
                9,
                R::OffsetFetch(OffsetFetchRequest::default().with_groups(vec![
                    offset_fetch_request::OffsetFetchRequestGroup::default()
                        .with_group_id(group())
                        .with_topics(None),
                ])),
                Code(GROUP_DENIED),
            ),
            case(
                7,
                R::OffsetFetch(
                    OffsetFetchRequest::default()
                        .with_group_id(group())
                        .with_topics(None),
                ),
                Code(GROUP_DENIED),
            ),
        ],
        ApiKey::FindCoordinator => vec![
            case(
                6,
                R::FindCoordinator(
                    FindCoordinatorRequest::default()
                        .with_key_type(0)
                        .with_coordinator_keys(vec![s(GROUP)]),
                ),
                Code(GROUP_DENIED),
            ),
            case(
                3,
                R::FindCoordinator(
                    FindCoordinatorRequest::default()
                        .with_key_type(1)
                        .with_key(s(TXN)),
                ),
                Code(TXN_DENIED),
            ),
        ],
        ApiKey::JoinGroup => vec![case(
            9,
            R::JoinGroup(
                JoinGroupRequest::default()
                    .with_group_id(group())
                    .with_session_timeout_ms(10_000)
                    .with_rebalance_timeout_ms(10_000)
                    .with_protocol_type(s("consumer"))
                    .with_protocols(vec![join_group_request::JoinGroupRequestProtocol::default(
                    )
                    .with_name(s("range"))]),
            ),
            Code(GROUP_DENIED),
        )],
        ApiKey::Heartbeat => vec![case(
            4,
            R::Heartbeat(
                HeartbeatRequest::default()
                    .with_group_id(group())
                    .with_member_id(s("m")),
            ),
            Code(GROUP_DENIED),
        )],
        ApiKey::LeaveGroup => vec![case(
            5,
            R::LeaveGroup(
                LeaveGroupRequest::default()
                    .with_group_id(group())
                    .with_members(vec![
                        leave_group_request::MemberIdentity::default().with_member_id(s("m"))
                    ]),
            ),
            Code(GROUP_DENIED),
        )],
        ApiKey::SyncGroup => vec![case(
            5,
            R::SyncGroup(
                SyncGroupRequest::default()
                    .with_group_id(group())
                    .with_member_id(s("m"))
                    .with_protocol_type(Some(s("consumer")))
                    .with_protocol_name(Some(s("range"))),
            ),
            Code(GROUP_DENIED),
        )],
        ApiKey::DescribeGroups => vec![case(
            5,
            R::DescribeGroups(DescribeGroupsRequest::default().with_groups(vec![group()])),
            Code(GROUP_DENIED),
        )],
        ApiKey::ListGroups => vec![case(5, R::ListGroups(ListGroupsRequest::default()), Hidden)],
        ApiKey::CreateTopics => vec![case(
            7,
            R::CreateTopics(
                CreateTopicsRequest::default()
                    .with_topics(vec![create_topics_request::CreatableTopic::default()
                        .with_name(TopicName(s("acl-new")))
                        .with_num_partitions(1)
                        .with_replication_factor(1)])
                    .with_timeout_ms(5000),
            ),
            Code(TOPIC_DENIED),
        )],
        ApiKey::DeleteTopics => vec![case(
            6,
            R::DeleteTopics(
                DeleteTopicsRequest::default()
                    .with_topics(vec![
                        delete_topics_request::DeleteTopicState::default().with_name(Some(topic()))
                    ])
                    .with_timeout_ms(5000),
            ),
            Code(TOPIC_DENIED),
        )],
        ApiKey::DeleteRecords => vec![case(
            2,
            R::DeleteRecords(
                DeleteRecordsRequest::default()
                    .with_topics(vec![delete_records_request::DeleteRecordsTopic::default()
                        .with_name(topic())
                        .with_partitions(vec![
                            delete_records_request::DeleteRecordsPartition::default()
                                .with_partition_index(0)
                                .with_offset(1),
                        ])])
                    .with_timeout_ms(5000),
            ),
            Code(TOPIC_DENIED),
        )],
        ApiKey::InitProducerId => vec![
            case(
                5,
                R::InitProducerId(init_producer_id(None)),
                Code(CLUSTER_DENIED),
            ),
            case(
                5,
                R::InitProducerId(init_producer_id(Some(txn()))),
                Code(TXN_DENIED),
            ),
        ],
        ApiKey::OffsetForLeaderEpoch => vec![case(
            4,
            R::OffsetForLeaderEpoch(
                OffsetForLeaderEpochRequest::default()
                    .with_replica_id((-1).into())
                    .with_topics(vec![
                        offset_for_leader_epoch_request::OffsetForLeaderTopic::default()
                            .with_topic(topic())
                            .with_partitions(vec![
                                offset_for_leader_epoch_request::OffsetForLeaderPartition::default(
                                )
                                .with_leader_epoch(0),
                            ]),
                    ]),
            ),
            Code(TOPIC_DENIED),
        )],
        ApiKey::AddPartitionsToTxn => {
            let topics = vec![
                add_partitions_to_txn_request::AddPartitionsToTxnTopic::default()
                    .with_name(topic())
                    .with_partitions(vec![0]),
            ];
            vec![
                case(
                    3,
                    R::AddPartitionsToTxn(
                        AddPartitionsToTxnRequest::default()
                            .with_v3_and_below_transactional_id(txn())
                            .with_v3_and_below_topics(topics.clone()),
                    ),
                    Code(TXN_DENIED),
                ),
                case(
                    5,
                    R::AddPartitionsToTxn(AddPartitionsToTxnRequest::default().with_transactions(
                        vec![
                        add_partitions_to_txn_request::AddPartitionsToTxnTransaction::default()
                            .with_transactional_id(txn())
                            .with_verify_only(true)
                            .with_topics(topics),
                    ],
                    )),
                    Code(CLUSTER_DENIED),
                ),
            ]
        }
        ApiKey::AddOffsetsToTxn => vec![case(
            4,
            R::AddOffsetsToTxn(
                AddOffsetsToTxnRequest::default()
                    .with_transactional_id(txn())
                    .with_group_id(group()),
            ),
            Code(TXN_DENIED),
        )],
        ApiKey::EndTxn => vec![case(
            5,
            R::EndTxn(
                EndTxnRequest::default()
                    .with_transactional_id(txn())
                    .with_committed(true),
            ),
            Code(TXN_DENIED),
        )],
        ApiKey::WriteTxnMarkers => vec![case(
            1,
            R::WriteTxnMarkers(WriteTxnMarkersRequest::default().with_markers(vec![
                write_txn_markers_request::WritableTxnMarker::default().with_topics(vec![
                    write_txn_markers_request::WritableTxnMarkerTopic::default()
                        .with_name(topic())
                        .with_partition_indexes(vec![0]),
                ]),
            ])),
            Code(CLUSTER_DENIED),
        )],
        ApiKey::TxnOffsetCommit => vec![case(
            4,
            R::TxnOffsetCommit(
                TxnOffsetCommitRequest::default()
                    .with_transactional_id(txn())
                    .with_group_id(group())
                    .with_topics(vec![
                        txn_offset_commit_request::TxnOffsetCommitRequestTopic::default()
                            .with_name(topic())
                            .with_partitions(vec![
                            txn_offset_commit_request::TxnOffsetCommitRequestPartition::default()
                                .with_committed_offset(1),
                        ]),
                    ]),
            ),
            Code(TXN_DENIED),
        )],
        ApiKey::DescribeAcls => vec![case(
            3,
            R::DescribeAcls(
                DescribeAclsRequest::default()
                    .with_resource_type_filter(1)
                    .with_pattern_type_filter(1)
                    .with_operation(1)
                    .with_permission_type(1),
            ),
            Code(CLUSTER_DENIED),
        )],
        ApiKey::CreateAcls => vec![case(3, R::CreateAcls(create_acls()), Code(CLUSTER_DENIED))],
        ApiKey::DescribeUserScramCredentials => vec![case(
            0,
            R::DescribeUserScramCredentials(
                kafka_protocol::messages::DescribeUserScramCredentialsRequest::default(),
            ),
            Code(CLUSTER_DENIED),
        )],
        ApiKey::AlterUserScramCredentials => vec![case(
            0,
            R::AlterUserScramCredentials(
                kafka_protocol::messages::AlterUserScramCredentialsRequest::default()
                    .with_upsertions(vec![
                    kafka_protocol::messages::alter_user_scram_credentials_request::ScramCredentialUpsertion::default()
                        .with_name(s("mallory"))
                        .with_mechanism(1)
                        .with_iterations(4096)
                        .with_salt(Bytes::from_static(b"salt"))
                        .with_salted_password(Bytes::from_static(b"salted")),
                ]),
            ),
            Code(CLUSTER_DENIED),
        )],
        ApiKey::DescribeClientQuotas => vec![case(
            1,
            R::DescribeClientQuotas(
                kafka_protocol::messages::DescribeClientQuotasRequest::default(),
            ),
            Code(CLUSTER_DENIED),
        )],
        ApiKey::DeleteAcls => vec![case(
            3,
            R::DeleteAcls(DeleteAclsRequest::default().with_filters(vec![
                delete_acls_request::DeleteAclsFilter::default()
                    .with_resource_type_filter(1)
                    .with_pattern_type_filter(1)
                    .with_operation(1)
                    .with_permission_type(1),
            ])),
            Code(CLUSTER_DENIED),
        )],
        ApiKey::DescribeConfigs => {
            let describe = |rtype, name: &str| {
                R::DescribeConfigs(DescribeConfigsRequest::default().with_resources(vec![
                    describe_configs_request::DescribeConfigsResource::default()
                        .with_resource_type(rtype)
                        .with_resource_name(s(name))
                        .with_configuration_keys(None),
                ]))
            };
            vec![
                case(4, describe(2, TOPIC), Code(TOPIC_DENIED)),
                case(4, describe(4, "1"), Code(CLUSTER_DENIED)),
                case(4, describe(32, GROUP), Code(GROUP_DENIED)),
            ]
        }
        ApiKey::AlterConfigs => vec![case(
            2,
            R::AlterConfigs(AlterConfigsRequest::default().with_resources(vec![
                alter_configs_request::AlterConfigsResource::default()
                    .with_resource_type(2)
                    .with_resource_name(s(TOPIC))
                    .with_configs(vec![alter_configs_request::AlterableConfig::default()
                        .with_name(s("retention.ms"))
                        .with_value(Some(s("1")))]),
            ])),
            Code(TOPIC_DENIED),
        )],
        ApiKey::IncrementalAlterConfigs => {
            let mut broker = alter_topic_config();
            broker.resources[0].resource_type = 4;
            broker.resources[0].resource_name = s("");
            broker.resources[0].configs[0].name = s("log.retention.ms");
            vec![
                case(
                    1,
                    R::IncrementalAlterConfigs(alter_topic_config()),
                    Code(TOPIC_DENIED),
                ),
                case(1, R::IncrementalAlterConfigs(broker), Code(CLUSTER_DENIED)),
            ]
        }
        ApiKey::DescribeLogDirs => vec![case(
            4,
            R::DescribeLogDirs(DescribeLogDirsRequest::default().with_topics(None)),
            Code(CLUSTER_DENIED),
        )],
        ApiKey::CreatePartitions => vec![case(
            3,
            R::CreatePartitions(
                CreatePartitionsRequest::default()
                    .with_topics(vec![
                        create_partitions_request::CreatePartitionsTopic::default()
                            .with_name(topic())
                            .with_count(3),
                    ])
                    .with_timeout_ms(5000),
            ),
            Code(TOPIC_DENIED),
        )],
        ApiKey::DeleteGroups => vec![case(
            2,
            R::DeleteGroups(DeleteGroupsRequest::default().with_groups_names(vec![group()])),
            Code(GROUP_DENIED),
        )],
        ApiKey::ListPartitionReassignments => vec![case(
            0,
            R::ListPartitionReassignments(
                ListPartitionReassignmentsRequest::default()
                    .with_timeout_ms(5000)
                    .with_topics(None),
            ),
            Code(CLUSTER_DENIED),
        )],
        ApiKey::OffsetDelete => vec![case(
            0,
            R::OffsetDelete(
                OffsetDeleteRequest::default()
                    .with_group_id(group())
                    .with_topics(vec![
                        offset_delete_request::OffsetDeleteRequestTopic::default()
                            .with_name(topic())
                            .with_partitions(vec![
                                offset_delete_request::OffsetDeleteRequestPartition::default(),
                            ]),
                    ]),
            ),
            Code(GROUP_DENIED),
        )],
        ApiKey::DescribeCluster => vec![case(
            2,
            R::DescribeCluster(DescribeClusterRequest::default()),
            Code(CLUSTER_DENIED),
        )],
        ApiKey::DescribeProducers => vec![case(
            0,
            R::DescribeProducers(DescribeProducersRequest::default().with_topics(vec![
                describe_producers_request::TopicRequest::default()
                    .with_name(topic())
                    .with_partition_indexes(vec![0]),
            ])),
            Code(TOPIC_DENIED),
        )],
        ApiKey::DescribeTransactions => vec![case(
            0,
            R::DescribeTransactions(
                DescribeTransactionsRequest::default().with_transactional_ids(vec![txn()]),
            ),
            Code(TXN_DENIED),
        )],
        ApiKey::ListTransactions => {
            vec![case(
                2,
                R::ListTransactions(ListTransactionsRequest::default()),
                Hidden,
            )]
        }
        ApiKey::DescribeTopicPartitions => vec![
            case(
                0,
                R::DescribeTopicPartitions(
                    DescribeTopicPartitionsRequest::default()
                        .with_topics(vec![
                            describe_topic_partitions_request::TopicRequest::default()
                                .with_name(topic()),
                        ])
                        .with_response_partition_limit(100),
                ),
                Code(TOPIC_DENIED),
            ),
            case(
                0,
                R::DescribeTopicPartitions(
                    DescribeTopicPartitionsRequest::default().with_response_partition_limit(100),
                ),
                Hidden,
            ),
        ],
        _ => Vec::new(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_principal_without_acls_is_refused_everything_and_changes_nothing() {
    let (b, _dir) = start().await;
    let mut admin = connect(listener(&b, "PLAINTEXT")).await;
    setup(&mut admin).await;
    let before = state(&mut admin).await;
    let mut m = mallory(&b).await;
    let mut tried = 0;
    for row in josefine::authz::OPERATIONS {
        if row.checks.is_empty() || josefine::api_versions::support_for(row.key).is_none() {
            continue;
        }
        let cases = cases(row.key);
        assert!(
            !cases.is_empty(),
            "{:?} has a row but no refused case here",
            row.key
        );
        for c in cases {
            let (_, r) = call(&mut m, row.key, c.version, &c.request).await;
            let codes = error_codes(&r);
            match c.expect {
                Expect::Code(code) => assert!(
                    codes.contains(&code) && codes.iter().all(|&c| c == 0 || c == code),
                    "{:?} v{}: expected {code}, got {r:?}",
                    row.key,
                    c.version
                ),
                Expect::Hidden => {
                    let text = format!("{r:?}");
                    assert!(
                        !text.contains(TOPIC) && !text.contains(GROUP) && !text.contains(TXN),
                        "{:?} v{} shows the test's resources: {r:?}",
                        row.key,
                        c.version
                    );
                }
            }
            tried += 1;
        }
    }
    assert!(tried >= 40, "{tried} cases");
    let after = state(&mut admin).await;
    for ((key, a), (_, b)) in before.iter().zip(&after) {
        assert_eq!(a, b, "{key:?} changed");
    }
    b.shutdown().await;
}

/// `*_authorized_operations` are what the caller's ACLs allow, implied operations included
/// (READ implies DESCRIBE), everywhere Kafka computes them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn authorized_operations_are_the_callers() {
    let (b, _dir) = start().await;
    let mut admin = connect(listener(&b, "PLAINTEXT")).await;
    setup(&mut admin).await;
    // mallory: READ on the topic, DESCRIBE on the group and the cluster.
    let grant = |resource_type: i8, name: &str, operation: i8| {
        create_acls_request::AclCreation::default()
            .with_resource_type(resource_type)
            .with_resource_name(s(name))
            .with_resource_pattern_type(3)
            .with_principal(s("User:mallory"))
            .with_host(s("*"))
            .with_operation(operation)
            .with_permission_type(3)
    };
    let acls = CreateAclsRequest::default().with_creations(vec![
        grant(2, TOPIC, 3),
        grant(3, GROUP, 8),
        grant(4, "kafka-cluster", 8),
    ]);
    let (_, r) = call(
        &mut admin,
        ApiKey::CreateAcls,
        3,
        &RequestKind::CreateAcls(acls),
    )
    .await;
    assert!(error_codes(&r).iter().all(|&c| c == 0), "{r:?}");
    const READ_DESCRIBE: i32 = (1 << 3) | (1 << 8);
    const DESCRIBE: i32 = 1 << 8;

    let mut m = mallory(&b).await;
    let metadata = MetadataRequest::default()
        .with_topics(Some(vec![metadata_request::MetadataRequestTopic::default(
        )
        .with_name(Some(topic()))]))
        .with_include_topic_authorized_operations(true)
        .with_include_cluster_authorized_operations(true);
    let (_, r) = call(
        &mut m,
        ApiKey::Metadata,
        10,
        &RequestKind::Metadata(metadata),
    )
    .await;
    let ResponseKind::Metadata(r) = r else {
        unreachable!()
    };
    assert_eq!(
        r.topics[0].topic_authorized_operations, READ_DESCRIBE,
        "{r:?}"
    );
    assert_eq!(r.cluster_authorized_operations, DESCRIBE);

    let dtp = DescribeTopicPartitionsRequest::default()
        .with_topics(vec![
            describe_topic_partitions_request::TopicRequest::default().with_name(topic()),
        ])
        .with_response_partition_limit(100);
    let (_, r) = call(
        &mut m,
        ApiKey::DescribeTopicPartitions,
        0,
        &RequestKind::DescribeTopicPartitions(dtp),
    )
    .await;
    let ResponseKind::DescribeTopicPartitions(r) = r else {
        unreachable!()
    };
    assert_eq!(r.topics[0].error_code, 0, "{r:?}");
    assert_eq!(r.topics[0].topic_authorized_operations, READ_DESCRIBE);

    let groups = DescribeGroupsRequest::default()
        .with_groups(vec![group()])
        .with_include_authorized_operations(true);
    let (_, r) = call(
        &mut m,
        ApiKey::DescribeGroups,
        5,
        &RequestKind::DescribeGroups(groups),
    )
    .await;
    let ResponseKind::DescribeGroups(r) = r else {
        unreachable!()
    };
    assert_eq!(r.groups[0].error_code, 0, "{r:?}");
    assert_eq!(r.groups[0].authorized_operations, DESCRIBE);

    let cluster =
        DescribeClusterRequest::default().with_include_cluster_authorized_operations(true);
    let (_, r) = call(
        &mut m,
        ApiKey::DescribeCluster,
        1,
        &RequestKind::DescribeCluster(cluster),
    )
    .await;
    let ResponseKind::DescribeCluster(r) = r else {
        unreachable!()
    };
    assert_eq!(r.error_code, 0, "{r:?}");
    assert_eq!(r.cluster_authorized_operations, DESCRIBE);
    b.shutdown().await;
}

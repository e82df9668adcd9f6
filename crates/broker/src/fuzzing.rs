//! Fuzz entry points: every decoder the broker process runs on bytes from the wire or the disk,
//! as plain functions over `&[u8]`.
//!
//! Owns: the input layout of each fuzz target, the invariants checked after each decode, and
//! the seed inputs. The cargo-fuzz targets in `fuzz/` (nightly, libFuzzer) and the stable
//! smoke test `tests/fuzz_smoke.rs` call exactly these functions, so a short CI run and a long
//! fuzzing run test the same code, and a crash file from either replays with
//! `cargo test -p josefine --test fuzz_smoke` once it is copied to `fuzz/regressions/<target>/`.
//! Must never: be called by the server (the functions `assert!` their invariants on purpose:
//! an assertion failure is a finding), or keep state between calls other than the scratch
//! directory the caller hands in.
//!
//! Lives in the broker crate because the broker links every other crate: one place reaches
//! the request codec, the log's batch validation and recovery, the metadata command codec and
//! the chain's wire codec through their public APIs.

use std::fs;
use std::path::Path;

use bytes::{BufMut, Bytes, BytesMut};
use josefine_log::batch::{self, BatchHeader, Compression, ValidationConfig};
use josefine_log::testkit::{BatchBuilder, Rec};
use josefine_log::{LogConfig, PartitionLog, TimestampType};
use kafka_protocol::messages::create_partitions_request::{
    CreatePartitionsAssignment, CreatePartitionsTopic,
};
use kafka_protocol::messages::create_topics_request::{
    CreatableReplicaAssignment, CreatableTopic, CreatableTopicConfig,
};
use kafka_protocol::messages::delete_records_request::{
    DeleteRecordsPartition, DeleteRecordsTopic,
};
use kafka_protocol::messages::delete_topics_request::DeleteTopicState;
use kafka_protocol::messages::describe_configs_request::DescribeConfigsResource;
use kafka_protocol::messages::describe_log_dirs_request::DescribableLogDirTopic;
use kafka_protocol::messages::describe_topic_partitions_request::TopicRequest;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::join_group_request::JoinGroupRequestProtocol;
use kafka_protocol::messages::leave_group_request::MemberIdentity;
use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::list_partition_reassignments_request::ListPartitionReassignmentsTopics;
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::offset_commit_request::{
    OffsetCommitRequestPartition, OffsetCommitRequestTopic,
};
use kafka_protocol::messages::offset_delete_request::{
    OffsetDeleteRequestPartition, OffsetDeleteRequestTopic,
};
use kafka_protocol::messages::offset_fetch_request::{
    OffsetFetchRequestGroup, OffsetFetchRequestTopic,
};
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::sync_group_request::SyncGroupRequestAssignment;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::{Encodable, StrBytes};
use uuid::Uuid;

use crate::api_versions::{support_for, SUPPORTED_APIS};
use crate::codec::{self, Decoded};

/// The clock every target uses: batches are stamped near it so CreateTime checks pass.
pub const NOW_MS: i64 = 1_700_000_000_000;

/// Correlation id written into every synthesized request header.
const CORRELATION_ID: i32 = 7;

/// Largest chunk a multi-file or multi-command input can carry: keeps one input's files small
/// so an execution stays fast.
const CHUNK_BYTES_MAX: usize = u16::MAX as usize;

/// Batches at most a read of the recovered log may return before the walk gives up; a log
/// built from one fuzz input holds far fewer.
const RECOVERED_BATCHES_MAX: usize = 100_000;

/// The fuzz targets, by the name of their cargo-fuzz binary.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// [`decode_request`]: request header + body for every served API and version.
    DecodeRequest,
    /// [`record_batch`]: produced record batch validation, every codec.
    RecordBatch,
    /// [`partition_recovery`]: a partition directory of damaged files opened by the log.
    PartitionRecovery,
    /// [`meta_commands`]: metadata commands decoded, applied, and replayed from a command log.
    MetaCommands,
    /// [`chain_frame`]: a chain peer's frame.
    ChainFrame,
    /// [`group_records`]: `__consumer_offsets` keys and values read back from disk.
    GroupRecords,
    /// [`chain_store`]: a damaged chain (consensus) directory opened by `ChainStore::open`.
    ChainStore,
}

impl Target {
    pub const ALL: [Target; 7] = [
        Target::DecodeRequest,
        Target::RecordBatch,
        Target::PartitionRecovery,
        Target::MetaCommands,
        Target::ChainFrame,
        Target::GroupRecords,
        Target::ChainStore,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Target::DecodeRequest => "decode_request",
            Target::RecordBatch => "record_batch",
            Target::PartitionRecovery => "partition_recovery",
            Target::MetaCommands => "meta_commands",
            Target::ChainFrame => "chain_frame",
            Target::GroupRecords => "group_records",
            Target::ChainStore => "chain_store",
        }
    }

    /// Runs one input; true when the decoder under test accepted it (see each function).
    /// `scratch` is a directory the target may wipe and fill.
    pub fn run(self, scratch: &Path, data: &[u8]) -> bool {
        match self {
            Target::DecodeRequest => decode_request(data),
            Target::RecordBatch => record_batch(data),
            Target::PartitionRecovery => partition_recovery(scratch, data),
            Target::MetaCommands => meta_commands(scratch, data),
            Target::ChainFrame => chain_frame(data),
            Target::GroupRecords => group_records(data),
            Target::ChainStore => chain_store(scratch, data),
        }
    }

    /// Valid (and a few deliberately borderline) inputs that reach deep into the decoder.
    pub fn seeds(self, scratch: &Path) -> Vec<Vec<u8>> {
        match self {
            Target::DecodeRequest => decode_request_seeds(),
            Target::RecordBatch => record_batch_seeds(),
            Target::PartitionRecovery => partition_recovery_seeds(scratch),
            Target::MetaCommands => meta_commands_seeds(),
            Target::ChainFrame => chain_frame_seeds(),
            Target::GroupRecords => group_records_seeds(),
            Target::ChainStore => chain_store_seeds(),
        }
    }
}

/// A scratch directory for one fuzzing process: `$TMPDIR/josefine-fuzz-<target>-<pid>`, so
/// parallel libFuzzer jobs never share files.
pub fn process_scratch_dir(target: &str) -> std::path::PathBuf {
    std::env::temp_dir().join(format!("josefine-fuzz-{target}-{}", std::process::id()))
}

// ---------------------------------------------------------------------------------------------
// Requests

/// Builds the frame a `decode_request` input stands for. Byte 0 with its top bit set: the rest
/// is a raw frame (any key, any version, any header). Otherwise byte 0 is the API key (one we
/// serve; any other value picks a served API by index), byte 1 the version (taken as is when
/// served, else mapped into the served range), and the rest follows a valid header prefix
/// (key, version, correlation id): client id, header tags and body. Keyed by the API key rather
/// than a table index, so seeds stay meaningful when rows are added.
pub fn request_frame(data: &[u8]) -> Option<Bytes> {
    let (&selector, rest) = data.split_first()?;
    if selector & 0x80 != 0 {
        return Some(Bytes::copy_from_slice(rest));
    }
    let api = ApiKey::try_from(selector as i16)
        .ok()
        .and_then(support_for)
        .unwrap_or(&SUPPORTED_APIS[selector as usize % SUPPORTED_APIS.len()]);
    let (&v, body) = rest.split_first()?;
    let v = v as i16;
    let version = if (api.served_min..=api.max).contains(&v) {
        v
    } else {
        api.served_min + v % (api.max - api.served_min + 1)
    };
    let mut f = BytesMut::with_capacity(8 + body.len());
    f.put_i16(api.key as i16);
    f.put_i16(version);
    f.put_i32(CORRELATION_ID);
    f.put_slice(body);
    Some(f.freeze())
}

/// Decodes one request exactly as a connection does. Invariants: no panic or abort; no guarded
/// (hostile-count) mapping outlives the decode; a decoded body re-encodes and decodes back to
/// the same value with nothing left over (the decoder read what the client wrote, no more, no
/// less; one documented exception below); an old Produce answered UNSUPPORTED_VERSION is
/// answered or refused, never panics.
pub fn decode_request(data: &[u8]) -> bool {
    let Some(frame) = request_frame(data) else {
        return false;
    };
    let decoded = codec::decode_request(frame);
    assert_eq!(
        crate::alloc_guard::guarded_bytes_mapped(),
        0,
        "a guarded mapping outlived the decode"
    );
    match decoded {
        Ok(Decoded::Request(r)) => {
            // kafka-protocol reads a tagged-field tag above i32::MAX into a negative i32 key
            // and then writes it back as a different varint (fuzz/regressions/decode_request/
            // fetch-v16-tag-above-i32-max, produce-v10-negative-tag). Josefine never re-encodes
            // a request and ignores unknown tags, so such bodies skip the round trip. A
            // negative key sorts first in the BTreeMap, hence the Debug pattern.
            if format!("{:?}", r.body).contains("unknown_tagged_fields: {-") {
                return true;
            }
            let mut again = BytesMut::new();
            r.body
                .encode(&mut again, r.api_version)
                .unwrap_or_else(|e| {
                    panic!(
                        "{:?} v{} decoded but does not re-encode: {e:#}",
                        r.api_key, r.api_version
                    )
                });
            let mut again = again.freeze();
            let back =
                RequestKind::decode(r.api_key, &mut again, r.api_version).unwrap_or_else(|e| {
                    panic!(
                        "{:?} v{} re-encoding does not decode: {e:#}",
                        r.api_key, r.api_version
                    )
                });
            assert!(
                again.is_empty(),
                "{:?} v{} re-encoding has trailing bytes",
                r.api_key,
                r.api_version
            );
            assert_eq!(
                back, r.body,
                "{:?} v{} round trip",
                r.api_key, r.api_version
            );
            true
        }
        Ok(Decoded::UnsupportedVersion {
            api_key: ApiKey::Produce,
            api_version,
            correlation_id,
            body,
        }) => {
            if let Some(out) =
                codec::encode_old_produce_unsupported(api_version, correlation_id, body)
            {
                let len = i32::from_be_bytes([out[0], out[1], out[2], out[3]]);
                assert_eq!(len as usize, out.len() - 4, "old produce answer framing");
            }
            true
        }
        Ok(Decoded::UnsupportedVersion { .. }) => true,
        Err(_) => false,
    }
}

fn s(v: &str) -> StrBytes {
    StrBytes::from_string(v.to_owned())
}

fn topic(v: &str) -> TopicName {
    TopicName(s(v))
}

const TOPIC_ID: Uuid = Uuid::from_u128(0x0123_4567_89ab_cdef_0123_4567_89ab_cdef);

/// Non-trivial request bodies for an API (besides the default one). Fields a version lacks
/// make the encode fail at that version, which drops the sample there; that is how one list
/// serves every version.
fn sample_requests(key: ApiKey) -> Vec<RequestKind> {
    let batch = Bytes::from(
        BatchBuilder::new(NOW_MS)
            .compression(Compression::Lz4)
            .records(3)
            .build(),
    );
    match key {
        ApiKey::Produce => vec![
            RequestKind::Produce(
                ProduceRequest::default()
                    .with_acks(-1)
                    .with_timeout_ms(30_000)
                    .with_topic_data(vec![TopicProduceData::default()
                        .with_name(topic("orders"))
                        .with_partition_data(vec![
                            PartitionProduceData::default()
                                .with_index(0)
                                .with_records(Some(batch.clone())),
                            PartitionProduceData::default().with_index(1),
                        ])]),
            ),
            RequestKind::Produce(
                ProduceRequest::default()
                    .with_acks(1)
                    .with_topic_data(vec![TopicProduceData::default()
                        .with_topic_id(TOPIC_ID)
                        .with_partition_data(vec![PartitionProduceData::default()
                            .with_index(0)
                            .with_records(Some(batch.clone()))])]),
            ),
        ],
        ApiKey::Fetch => {
            let part = FetchPartition::default()
                .with_partition(0)
                .with_fetch_offset(5)
                .with_partition_max_bytes(1 << 20)
                .with_current_leader_epoch(-1)
                .with_log_start_offset(-1)
                .with_last_fetched_epoch(-1);
            vec![
                RequestKind::Fetch(
                    FetchRequest::default()
                        .with_max_wait_ms(500)
                        .with_min_bytes(1)
                        .with_max_bytes(50 << 20)
                        .with_session_epoch(-1)
                        .with_topics(vec![FetchTopic::default()
                            .with_topic(topic("orders"))
                            .with_partitions(vec![part.clone()])]),
                ),
                RequestKind::Fetch(
                    FetchRequest::default()
                        .with_session_epoch(-1)
                        .with_isolation_level(1)
                        .with_topics(vec![FetchTopic::default()
                            .with_topic_id(TOPIC_ID)
                            .with_partitions(vec![part])])
                        .with_rack_id(s("rack-a")),
                ),
            ]
        }
        ApiKey::ListOffsets => vec![RequestKind::ListOffsets(
            ListOffsetsRequest::default()
                .with_replica_id(BrokerId(-1))
                .with_topics(vec![ListOffsetsTopic::default()
                    .with_name(topic("orders"))
                    .with_partitions(vec![
                        ListOffsetsPartition::default().with_timestamp(-1),
                        ListOffsetsPartition::default()
                            .with_partition_index(1)
                            .with_timestamp(-2),
                    ])]),
        )],
        ApiKey::Metadata => vec![
            RequestKind::Metadata(MetadataRequest::default().with_topics(None)),
            RequestKind::Metadata(
                MetadataRequest::default()
                    .with_topics(Some(vec![
                        MetadataRequestTopic::default().with_name(Some(topic("orders"))),
                        MetadataRequestTopic::default().with_name(Some(topic("payments"))),
                    ]))
                    .with_allow_auto_topic_creation(true),
            ),
            RequestKind::Metadata(MetadataRequest::default().with_topics(Some(vec![
                MetadataRequestTopic::default().with_topic_id(TOPIC_ID),
            ]))),
        ],
        ApiKey::ApiVersions => vec![RequestKind::ApiVersions(
            ApiVersionsRequest::default()
                .with_client_software_name(s("librdkafka"))
                .with_client_software_version(s("2.12.1")),
        )],
        ApiKey::CreateTopics => vec![RequestKind::CreateTopics(
            CreateTopicsRequest::default()
                .with_timeout_ms(30_000)
                .with_topics(vec![
                    CreatableTopic::default()
                        .with_name(topic("orders"))
                        .with_num_partitions(3)
                        .with_replication_factor(1)
                        .with_configs(vec![
                            CreatableTopicConfig::default()
                                .with_name(s("retention.ms"))
                                .with_value(Some(s("60000"))),
                            CreatableTopicConfig::default()
                                .with_name(s("cleanup.policy"))
                                .with_value(Some(s("compact,delete"))),
                        ]),
                    CreatableTopic::default()
                        .with_name(topic("assigned"))
                        .with_num_partitions(-1)
                        .with_replication_factor(-1)
                        .with_assignments(vec![CreatableReplicaAssignment::default()
                            .with_partition_index(0)
                            .with_broker_ids(vec![BrokerId(1)])]),
                ])
                .with_validate_only(true),
        )],
        ApiKey::DeleteTopics => vec![
            RequestKind::DeleteTopics(
                DeleteTopicsRequest::default()
                    .with_topic_names(vec![topic("orders"), topic("payments")])
                    .with_timeout_ms(30_000),
            ),
            RequestKind::DeleteTopics(DeleteTopicsRequest::default().with_topics(vec![
                DeleteTopicState::default().with_name(Some(topic("orders"))),
                DeleteTopicState::default().with_topic_id(TOPIC_ID),
            ])),
        ],
        ApiKey::InitProducerId => vec![RequestKind::InitProducerId(
            InitProducerIdRequest::default()
                .with_transaction_timeout_ms(60_000)
                .with_producer_id(ProducerId(1000))
                .with_producer_epoch(3),
        )],
        ApiKey::DescribeConfigs => vec![RequestKind::DescribeConfigs(
            DescribeConfigsRequest::default()
                .with_resources(vec![
                    DescribeConfigsResource::default()
                        .with_resource_type(2)
                        .with_resource_name(s("orders"))
                        .with_configuration_keys(Some(vec![s("retention.ms")])),
                    DescribeConfigsResource::default()
                        .with_resource_type(4)
                        .with_resource_name(s("1"))
                        .with_configuration_keys(None),
                ])
                .with_include_synonyms(true)
                .with_include_documentation(true),
        )],
        ApiKey::AlterConfigs => vec![RequestKind::AlterConfigs(
            AlterConfigsRequest::default().with_resources(vec![
                kafka_protocol::messages::alter_configs_request::AlterConfigsResource::default()
                    .with_resource_type(2)
                    .with_resource_name(s("orders"))
                    .with_configs(vec![
                        kafka_protocol::messages::alter_configs_request::AlterableConfig::default()
                            .with_name(s("retention.ms"))
                            .with_value(Some(s("1000"))),
                    ]),
            ]),
        )],
        ApiKey::IncrementalAlterConfigs => vec![RequestKind::IncrementalAlterConfigs(
            IncrementalAlterConfigsRequest::default().with_resources(vec![
                kafka_protocol::messages::incremental_alter_configs_request::AlterConfigsResource::default()
                    .with_resource_type(2)
                    .with_resource_name(s("orders"))
                    .with_configs(vec![
                        kafka_protocol::messages::incremental_alter_configs_request::AlterableConfig::default()
                            .with_name(s("cleanup.policy"))
                            .with_config_operation(2)
                            .with_value(Some(s("compact"))),
                    ]),
            ]),
        )],
        ApiKey::CreatePartitions => vec![RequestKind::CreatePartitions(
            CreatePartitionsRequest::default()
                .with_topics(vec![CreatePartitionsTopic::default()
                    .with_name(topic("orders"))
                    .with_count(6)
                    .with_assignments(Some(vec![CreatePartitionsAssignment::default()
                        .with_broker_ids(vec![BrokerId(1)])]))])
                .with_validate_only(true),
        )],
        ApiKey::DeleteRecords => vec![RequestKind::DeleteRecords(
            DeleteRecordsRequest::default().with_topics(vec![DeleteRecordsTopic::default()
                .with_name(topic("orders"))
                .with_partitions(vec![DeleteRecordsPartition::default()
                    .with_partition_index(0)
                    .with_offset(-1)])]),
        )],
        ApiKey::DescribeLogDirs => vec![RequestKind::DescribeLogDirs(
            DescribeLogDirsRequest::default().with_topics(Some(vec![
                DescribableLogDirTopic::default()
                    .with_topic(topic("orders"))
                    .with_partitions(vec![0, 1]),
            ])),
        )],
        ApiKey::DescribeTopicPartitions => vec![RequestKind::DescribeTopicPartitions(
            DescribeTopicPartitionsRequest::default()
                .with_topics(vec![TopicRequest::default().with_name(topic("orders"))])
                .with_response_partition_limit(2000)
                .with_cursor(Some(
                    kafka_protocol::messages::describe_topic_partitions_request::Cursor::default()
                        .with_topic_name(topic("orders"))
                        .with_partition_index(1),
                )),
        )],
        ApiKey::ListPartitionReassignments => vec![RequestKind::ListPartitionReassignments(
            ListPartitionReassignmentsRequest::default().with_topics(Some(vec![
                ListPartitionReassignmentsTopics::default()
                    .with_name(topic("orders"))
                    .with_partition_indexes(vec![0]),
            ])),
        )],
        ApiKey::FindCoordinator => vec![
            RequestKind::FindCoordinator(FindCoordinatorRequest::default().with_key(s("group-1"))),
            RequestKind::FindCoordinator(
                FindCoordinatorRequest::default().with_coordinator_keys(vec![s("group-1")]),
            ),
        ],
        ApiKey::JoinGroup => vec![RequestKind::JoinGroup(
            JoinGroupRequest::default()
                .with_group_id(GroupId(s("group-1")))
                .with_session_timeout_ms(45_000)
                .with_rebalance_timeout_ms(300_000)
                .with_protocol_type(s("consumer"))
                .with_protocols(vec![JoinGroupRequestProtocol::default()
                    .with_name(s("range"))
                    .with_metadata(Bytes::from_static(&[0, 3, 0, 0, 0, 1, 0, 6, b'o', b'r', b'd', b'e', b'r', b's', 0xff, 0xff, 0xff, 0xff]))])
                .with_reason(Some(s("rebalance"))),
        )],
        ApiKey::SyncGroup => vec![RequestKind::SyncGroup(
            SyncGroupRequest::default()
                .with_group_id(GroupId(s("group-1")))
                .with_generation_id(1)
                .with_member_id(s("m-1"))
                .with_protocol_type(Some(s("consumer")))
                .with_protocol_name(Some(s("range")))
                .with_assignments(vec![SyncGroupRequestAssignment::default()
                    .with_member_id(s("m-1"))
                    .with_assignment(Bytes::from_static(&[0, 3, 0, 0, 0, 0]))]),
        )],
        ApiKey::Heartbeat => vec![RequestKind::Heartbeat(
            HeartbeatRequest::default()
                .with_group_id(GroupId(s("group-1")))
                .with_generation_id(1)
                .with_member_id(s("m-1")),
        )],
        ApiKey::LeaveGroup => vec![
            RequestKind::LeaveGroup(
                LeaveGroupRequest::default()
                    .with_group_id(GroupId(s("group-1")))
                    .with_member_id(s("m-1")),
            ),
            RequestKind::LeaveGroup(
                LeaveGroupRequest::default()
                    .with_group_id(GroupId(s("group-1")))
                    .with_members(vec![MemberIdentity::default().with_member_id(s("m-1"))]),
            ),
        ],
        ApiKey::OffsetCommit => vec![RequestKind::OffsetCommit(
            OffsetCommitRequest::default()
                .with_group_id(GroupId(s("group-1")))
                .with_generation_id_or_member_epoch(1)
                .with_member_id(s("m-1"))
                .with_topics(vec![OffsetCommitRequestTopic::default()
                    .with_name(topic("orders"))
                    .with_partitions(vec![OffsetCommitRequestPartition::default()
                        .with_committed_offset(42)
                        .with_committed_metadata(Some(s("meta")))])]),
        )],
        ApiKey::OffsetFetch => vec![
            RequestKind::OffsetFetch(
                OffsetFetchRequest::default()
                    .with_group_id(GroupId(s("group-1")))
                    .with_topics(Some(vec![OffsetFetchRequestTopic::default()
                        .with_name(topic("orders"))
                        .with_partition_indexes(vec![0, 1])])),
            ),
            RequestKind::OffsetFetch(OffsetFetchRequest::default().with_groups(vec![
                OffsetFetchRequestGroup::default()
                    .with_group_id(GroupId(s("group-1")))
                    .with_topics(None),
            ])),
        ],
        ApiKey::DescribeGroups => vec![RequestKind::DescribeGroups(
            DescribeGroupsRequest::default().with_groups(vec![GroupId(s("group-1"))]),
        )],
        ApiKey::ListGroups => vec![RequestKind::ListGroups(
            ListGroupsRequest::default().with_states_filter(vec![s("Stable")]),
        )],
        ApiKey::DescribeCluster => vec![RequestKind::DescribeCluster(
            DescribeClusterRequest::default()
                .with_include_cluster_authorized_operations(true)
                .with_endpoint_type(1),
        )],
        ApiKey::OffsetDelete => vec![RequestKind::OffsetDelete(
            OffsetDeleteRequest::default()
                .with_group_id(GroupId(s("group-1")))
                .with_topics(vec![OffsetDeleteRequestTopic::default()
                    .with_name(topic("orders"))
                    .with_partitions(vec![
                        OffsetDeleteRequestPartition::default().with_partition_index(1),
                    ])]),
        )],
        ApiKey::DeleteGroups => vec![RequestKind::DeleteGroups(
            DeleteGroupsRequest::default().with_groups_names(vec![GroupId(s("group-1"))]),
        )],
        _ => Vec::new(),
    }
}

/// The shortest all-zero body that decodes, re-encoded: a default-valued request for any API,
/// including one added to the table after this file was written.
fn zero_body_request(key: ApiKey, version: i16) -> Option<RequestKind> {
    (0..64).find_map(|len| {
        let mut b = Bytes::from(vec![0u8; len]);
        let r = RequestKind::decode(key, &mut b, version).ok()?;
        b.is_empty().then_some(r)
    })
}

/// Every served API and version: the default request, a zero-body request and the samples,
/// each as a `decode_request` input (key, version, then header rest and body), plus raw frames.
fn decode_request_seeds() -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    for api in SUPPORTED_APIS {
        for version in api.served_min..=api.max {
            let mut bodies = sample_requests(api.key);
            bodies.extend(zero_body_request(api.key, version));
            for body in bodies {
                let header = RequestHeader::default()
                    .with_request_api_key(api.key as i16)
                    .with_request_api_version(version)
                    .with_correlation_id(CORRELATION_ID)
                    .with_client_id(Some(s("fuzz-seed")));
                let mut frame = BytesMut::new();
                if header
                    .encode(&mut frame, api.key.request_header_version(version))
                    .is_err()
                    || body.encode(&mut frame, version).is_err()
                {
                    continue;
                }
                let mut input = vec![api.key as i16 as u8, version as u8];
                input.extend_from_slice(&frame[8..]);
                out.push(input);
            }
        }
    }
    // Raw frames: too-new ApiVersions, an old Produce v2 answered UNSUPPORTED_VERSION.
    out.push(vec![0x80, 0, 18, 0, 99, 0, 0, 0, 1]);
    let mut old_produce = vec![0x80, 0, 0, 0, 2, 0, 0, 0, 9, 0, 0];
    old_produce.extend_from_slice(&[0, 1, 0, 0, 3, 0xe8, 0, 0, 0, 1, 0, 1, b't']);
    old_produce.extend_from_slice(&[0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 3, 1, 2, 3]);
    out.push(old_produce);
    out
}

// ---------------------------------------------------------------------------------------------
// Record batches

/// Validates one produced batch as the log does before an append. Byte 0 holds flags: bit 0
/// recompute the CRC (so damage reaches the decompressors and record walker instead of stopping
/// at the CRC check), bit 1 compacted topic (keys required), bit 2 LogAppendTime, bit 3 a small
/// `max.message.bytes`. Invariants: no panic; an accepted batch is exactly its declared length,
/// passes the produce shape check (v7+), and its rewritten header (offset, epoch, max
/// timestamp) still carries a valid CRC and re-validates with the same summary.
pub fn record_batch(data: &[u8]) -> bool {
    let Some((&flags, rest)) = data.split_first() else {
        return false;
    };
    let mut b = rest.to_vec();
    if flags & 1 != 0 && b.len() > batch::ATTRIBUTES_AT {
        let crc = crc32c::crc32c(&b[batch::ATTRIBUTES_AT..]);
        b[batch::CRC_AT..batch::CRC_AT + 4].copy_from_slice(&crc.to_be_bytes());
    }
    let cfg = ValidationConfig {
        max_message_bytes: if flags & 8 != 0 { 1000 } else { 1_048_588 },
        timestamp_type: if flags & 4 != 0 {
            TimestampType::LogAppendTime
        } else {
            TimestampType::CreateTime
        },
        timestamp_before_max_ms: i64::MAX,
        timestamp_after_max_ms: 3_600_000,
        require_keys: flags & 2 != 0,
    };
    if let Ok(h) = BatchHeader::parse(&b) {
        let _ = (h.last_offset(), h.last_sequence(), h.timestamp_type());
        if h.total_bytes() <= b.len() {
            let _ = batch::check_crc(&b, &h);
            let _ = batch::check_counts(&h, h.total_bytes());
            let _ = batch::check_counts_cleaned(&h, h.total_bytes());
        }
    }
    for version in [3, 7, 13] {
        let _ = batch::validate_produce_shape(version, &b);
    }
    let Ok(summary) = batch::validate_client_batch(&b, &cfg, NOW_MS) else {
        return false;
    };
    assert_eq!(summary.header.total_bytes(), b.len(), "accepted length");
    assert!(summary.header.records_count > 0, "accepted an empty batch");
    batch::validate_produce_shape(13, &b).expect("an accepted batch has the produce shape");
    let mut stamped = b.clone();
    batch::set_offset_and_epoch(&mut stamped, 1_000, 3);
    batch::set_max_timestamp(&mut stamped, cfg.timestamp_type, summary.max_timestamp);
    let h = BatchHeader::parse(&stamped).expect("stamped header parses");
    batch::check_crc(&stamped, &h).expect("stamping keeps the CRC valid");
    assert_eq!((h.base_offset, h.partition_leader_epoch), (1_000, 3));
    assert_eq!(h.max_timestamp, summary.max_timestamp);
    true
}

/// Every codec a batch may use: seeds cover each.
const CODECS: [Compression; 5] = [
    Compression::None,
    Compression::Gzip,
    Compression::Snappy,
    Compression::Lz4,
    Compression::Zstd,
];

fn record_batch_seeds() -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    for codec in CODECS {
        let keyed = (0..4)
            .map(|i| Rec {
                key: Some(format!("k{i}").into_bytes()),
                value: (i != 2).then(|| vec![b'v'; 10 * i]),
                headers: vec![(b"h".to_vec(), Some(b"x".to_vec())), (b"n".to_vec(), None)],
            })
            .collect();
        let builders = [
            BatchBuilder::new(NOW_MS).compression(codec).records(1),
            BatchBuilder::new(NOW_MS)
                .compression(codec)
                .custom_records(keyed),
            BatchBuilder::new(NOW_MS)
                .compression(codec)
                .sized_records(20, 100)
                .producer(1000, 0, 5),
        ];
        for (i, builder) in builders.iter().enumerate() {
            let mut input = vec![[0u8, 3, 5][i]];
            input.extend_from_slice(&builder.build());
            out.push(input);
        }
    }
    out.push(
        [
            &[0u8][..],
            &BatchBuilder::new(NOW_MS)
                .raw_snappy()
                .compression(Compression::Snappy)
                .records(2)
                .build(),
        ]
        .concat(),
    );
    out
}

// ---------------------------------------------------------------------------------------------
// Partition recovery

/// What a chunk of a `partition_recovery` input writes, by `kind % 16`. `Based` files take
/// their base offset from the chunk's first 4 bytes (a u32: realistic offsets; the bytes
/// inside the files are unrestricted).
fn chunk_file(kind: u8, payload: &[u8]) -> Option<(String, &[u8])> {
    let based = |suffix: &str| -> Option<(String, &[u8])> {
        let (base, rest) = payload.split_at_checked(4)?;
        let base = u32::from_be_bytes(base.try_into().expect("4 bytes"));
        Some((format!("{base:020}{suffix}"), rest))
    };
    let zero = |suffix: &str| Some((format!("{:020}{suffix}", 0), payload));
    match kind % 16 {
        0 => zero(".log"),
        1 => zero(".index"),
        2 => zero(".timeindex"),
        3 => based(".log"),
        4 => based(".index"),
        5 => based(".timeindex"),
        6 => Some(("recovery-point".into(), payload)),
        7 => Some(("log-start-offset".into(), payload)),
        8 => Some(("cleaner-checkpoint".into(), payload)),
        9 => based(".snapshot"),
        10 => based(".log.cleaned"),
        11 => based(".log.swap"),
        12 => based(".log.deleted"),
        13 => Some(("partition.metadata".into(), payload)),
        _ => None,
    }
}

/// Writes a partition directory from an input. Byte 0 holds flags: bit 0 clean-shutdown marker,
/// bit 1 index every batch (index interval 1), bit 2 LogAppendTime, bit 3 compacted topic
/// (`cleanup.policy=compact,delete`). The rest is chunks of
/// `kind u8 | len u16 | payload` (a short last chunk takes what is left).
fn write_partition_dir(dir: &Path, data: &[u8]) -> Option<LogConfig> {
    let _ = fs::remove_dir_all(dir);
    fs::create_dir_all(dir).expect("scratch directory");
    let (&flags, mut rest) = data.split_first()?;
    if flags & 1 != 0 {
        fs::write(dir.join("clean-shutdown"), b"").expect("scratch write");
    }
    while let Some((&kind, after)) = rest.split_first() {
        let (len, after) = match after.split_at_checked(2) {
            Some((l, a)) => (u16::from_be_bytes([l[0], l[1]]) as usize, a),
            None => (after.len(), &[][..]),
        };
        let (payload, after) = after.split_at(len.min(after.len()));
        if let Some((name, bytes)) = chunk_file(kind, payload) {
            fs::write(dir.join(name), bytes).expect("scratch write");
        }
        rest = after;
    }
    Some(LogConfig {
        index_interval_bytes: if flags & 2 != 0 { 1 } else { 4096 },
        timestamp_type: if flags & 4 != 0 {
            TimestampType::LogAppendTime
        } else {
            TimestampType::CreateTime
        },
        segment_bytes: 64 * 1024,
        cleanup_policy: if flags & 8 != 0 {
            josefine_log::CleanupPolicy::CompactDelete
        } else {
            josefine_log::CleanupPolicy::Delete
        },
        ..LogConfig::default()
    })
}

/// Reads every batch from the log start to the log end. With `strict`, checks that batches
/// come whole, parse, and move forward below the log end; otherwise only that reading does not
/// panic (a log the broker trusts without validation, after a clean shutdown or below the
/// recovery point, serves its bytes as they are, as Kafka does).
fn read_whole_log(log: &PartitionLog, strict: bool) -> usize {
    let end = log.log_end_offset();
    let mut offset = log.log_start_offset();
    let mut batches = 0;
    while offset < end && batches < RECOVERED_BATCHES_MAX {
        let r = match log.read(offset, 1 << 20, i64::MAX) {
            Ok(r) => r,
            Err(e) if strict => panic!(
                "reading offset {offset} of [{}, {end}): {e}",
                log.log_start_offset()
            ),
            Err(_) => return batches,
        };
        if r.records.is_empty() {
            break;
        }
        let mut at = 0;
        while at < r.records.len() {
            let h = match BatchHeader::parse(&r.records[at..]) {
                Ok(h) => h,
                Err(e) if strict => panic!("a served batch does not parse: {e}"),
                Err(_) => return batches,
            };
            let well_formed = at + h.total_bytes() <= r.records.len()
                && h.last_offset() >= offset
                && h.last_offset() < end;
            if strict {
                assert!(
                    at + h.total_bytes() <= r.records.len(),
                    "a served batch is whole"
                );
                assert!(
                    h.last_offset() >= offset,
                    "a served batch ends at or after the fetch offset"
                );
                assert!(
                    h.last_offset() < end,
                    "a served batch ends below the log end"
                );
            } else if !well_formed {
                return batches;
            }
            offset = h.last_offset() + 1;
            at += h.total_bytes();
            batches += 1;
        }
    }
    batches
}

/// Opens a damaged partition directory with `PartitionLog::open`, as a broker restart does.
/// Invariants: no panic; a log that opens has log start <= log end, accepts a new append at its
/// log end, and after a clean close reopens with the same offsets. When nothing was trusted (no
/// clean-shutdown marker, no recovery point), recovery validated every batch, so the log must
/// also serve whole, well-formed batches from its start to its end.
pub fn partition_recovery(dir: &Path, data: &[u8]) -> bool {
    let Some(config) = write_partition_dir(dir, data) else {
        return false;
    };
    let validated = !dir.join("clean-shutdown").exists() && !dir.join("recovery-point").exists();
    let Ok(log) = PartitionLog::open(dir, [7; 16], config.clone(), NOW_MS) else {
        return false;
    };
    let (start, end) = (log.log_start_offset(), log.log_end_offset());
    assert!(start <= end, "log start {start} past log end {end}");
    assert!(log.high_watermark() <= end);
    read_whole_log(&log, validated);
    for ts in [-1, 0, NOW_MS, i64::MAX] {
        let _ = log.offset_for_timestamp(ts);
    }
    let _ = log.max_timestamp();
    let batch = BatchBuilder::new(NOW_MS).records(2).build();
    let appended = log
        .append(&batch, 0, NOW_MS)
        .unwrap_or_else(|e| panic!("a recovered log refuses an append at {end}: {e}"));
    assert_eq!(
        appended.base_offset, end,
        "append lands at the recovered log end"
    );
    assert_eq!(log.log_end_offset(), end + 2);
    log.close().expect("close");
    drop(log);
    let log = PartitionLog::open(dir, [7; 16], config, NOW_MS).expect("clean reopen");
    assert_eq!(
        (log.log_start_offset(), log.log_end_offset()),
        (start, end + 2),
        "a clean reopen keeps the offsets"
    );
    read_whole_log(&log, validated);
    true
}

/// Serialises a partition directory into a `partition_recovery` input (files the layout can
/// name only).
fn partition_dir_input(dir: &Path, flags: u8) -> Vec<u8> {
    let mut input = vec![flags];
    let mut names: Vec<_> = fs::read_dir(dir)
        .expect("seed directory")
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    for name in names {
        let bytes = fs::read(dir.join(&name)).expect("seed file");
        let (stem, suffix) = name.split_at(name.find('.').unwrap_or(name.len()));
        let kind = match suffix {
            ".log" => 3,
            ".index" => 4,
            ".timeindex" => 5,
            ".snapshot" => 9,
            _ => match name.as_str() {
                "recovery-point" => 6,
                "log-start-offset" => 7,
                "cleaner-checkpoint" => 8,
                "partition.metadata" => 13,
                _ => continue,
            },
        };
        let mut payload = Vec::new();
        if (3..=5).contains(&kind) || kind == 9 {
            let Ok(base) = stem.parse::<u32>() else {
                continue;
            };
            payload.extend_from_slice(&base.to_be_bytes());
        }
        payload.extend_from_slice(&bytes);
        if payload.len() > CHUNK_BYTES_MAX {
            continue;
        }
        input.push(kind);
        input.extend_from_slice(&(payload.len() as u16).to_be_bytes());
        input.extend_from_slice(&payload);
    }
    input
}

fn partition_recovery_seeds(scratch: &Path) -> Vec<Vec<u8>> {
    let mut out = vec![vec![0], vec![1]];
    let config = LogConfig {
        segment_bytes: josefine_log::limits::SEGMENT_BYTES_MIN,
        index_interval_bytes: 1,
        ..LogConfig::default()
    };
    for (round, codec) in CODECS.into_iter().enumerate() {
        let dir = scratch.join(format!("seed-{round}"));
        let _ = fs::remove_dir_all(&dir);
        let log = PartitionLog::open(&dir, [7; 16], config.clone(), NOW_MS).expect("seed log");
        let mut sequence = 0;
        for i in 0..6 {
            // Idempotent batches: each starts at the sequence after the previous one.
            let records = 1 + i as usize;
            let b = BatchBuilder::new(NOW_MS + i)
                .compression(codec)
                .sized_records(records, 60)
                .producer(5, 0, sequence)
                .build();
            sequence += records as i32;
            log.append(&b, 0, NOW_MS + i).expect("seed append");
        }
        // Unclean: no marker, every batch after the recovery point is re-validated.
        out.push(partition_dir_input(&dir, 0));
        log.close().expect("seed close");
        out.push(partition_dir_input(&dir, 0x03));
        drop(log);
        let _ = fs::remove_dir_all(&dir);
    }
    // A compacted log: the cleaner rewrote sealed segments (offset gaps, a cleaner checkpoint).
    let dir = scratch.join("seed-compacted");
    let _ = fs::remove_dir_all(&dir);
    let compacted = LogConfig {
        cleanup_policy: josefine_log::CleanupPolicy::CompactDelete,
        ..config
    };
    let log = PartitionLog::open(&dir, [7; 16], compacted, NOW_MS).expect("seed log");
    for i in 0..12 {
        // Keys k0..k2 again and again: most records are superseded.
        let b = BatchBuilder::new(NOW_MS + i).records(3).build();
        log.append(&b, 0, NOW_MS + i).expect("seed append");
    }
    log.clean(NOW_MS + 1_000, &josefine_log::CleanerLimits::default())
        .expect("seed clean");
    out.push(partition_dir_input(&dir, 0x08));
    log.close().expect("seed close");
    out.push(partition_dir_input(&dir, 0x09));
    drop(log);
    let _ = fs::remove_dir_all(&dir);
    out
}

// ---------------------------------------------------------------------------------------------
// Metadata commands

/// Decodes metadata commands and applies them to an image, then replays them from a command
/// log file. Byte 0 bit 0: recompute each command's CRC (so damage reaches the body decoder).
/// The rest is chunks of `len u16 | command bytes`. Invariants: no panic; a decoded command
/// re-encodes to a value that decodes back equal; `apply` succeeds exactly when `validate`
/// does; the command log replays exactly the leading decodable commands and truncates the rest.
pub fn meta_commands(dir: &Path, data: &[u8]) -> bool {
    use josefine_meta::{Command, CommandLog, Image};
    let Some((&flags, mut rest)) = data.split_first() else {
        return false;
    };
    let mut chunks = Vec::new();
    while rest.len() >= 2 && chunks.len() < 64 {
        let len = (u16::from_be_bytes([rest[0], rest[1]]) as usize).min(rest.len() - 2);
        let mut c = rest[2..2 + len].to_vec();
        if flags & 1 != 0 && c.len() >= 5 {
            let crc = crc32c::crc32c(&c[5..]);
            c[1..5].copy_from_slice(&crc.to_be_bytes());
        }
        chunks.push(c);
        rest = &rest[2 + len..];
    }
    let mut image = Image::default();
    let mut leading = Vec::new();
    let mut all_decoded = true;
    for c in &chunks {
        match Command::decode(c) {
            Ok(cmd) => {
                let again = Command::decode(&cmd.encode()).expect("a re-encoded command decodes");
                assert_eq!(again, cmd, "command round trip");
                let valid = image.validate(&cmd).is_ok();
                let applied = image.apply(&cmd);
                assert_eq!(
                    valid,
                    applied.is_ok(),
                    "apply agrees with validate: {cmd:?}"
                );
                if all_decoded {
                    leading.push(cmd);
                }
            }
            Err(_) => all_decoded = false,
        }
    }
    let _ = fs::remove_dir_all(dir);
    fs::create_dir_all(dir).expect("scratch directory");
    let path = dir.join("commands");
    let mut file = Vec::new();
    for c in &chunks {
        file.extend_from_slice(&(c.len() as u32).to_be_bytes());
        file.extend_from_slice(c);
    }
    fs::write(&path, &file).expect("scratch write");
    let (log, replay) = CommandLog::open(&path).expect("opening a damaged command log");
    assert_eq!(
        replay.commands, leading,
        "replay keeps exactly the leading valid commands"
    );
    assert_eq!(log.entries(), leading.len() as u64);
    let kept = file.len() as u64 - replay.truncated_bytes;
    assert_eq!(fs::metadata(&path).expect("command log").len(), kept);
    all_decoded && !chunks.is_empty()
}

fn meta_commands_seeds() -> Vec<Vec<u8>> {
    use josefine_meta::{Command, PartitionAssignment, TopicId};
    let topic_id = TopicId([9; 16]);
    let commands = vec![
        Command::InitCluster {
            cluster_id: "c-1".into(),
        },
        Command::RegisterBroker {
            node_id: 1,
            host: "localhost".into(),
            port: 9092,
            rack: Some("r1".into()),
        },
        Command::CreateTopic {
            topic_id,
            name: "orders".into(),
            partitions: (0..3)
                .map(|p| PartitionAssignment {
                    partition: p,
                    replicas: vec![1],
                })
                .collect(),
            configs: vec![("retention.ms".into(), "60000".into())],
        },
        Command::AllocateProducerIds {
            broker_id: 1,
            first_id: 0,
            count: 1000,
        },
        Command::AlterTopicConfigs {
            topic_id,
            replace_all: false,
            set: vec![("cleanup.policy".into(), "compact,delete".into())],
            delete: vec!["retention.ms".into()],
        },
        Command::AlterBrokerConfigs {
            broker_id: Some(1),
            replace_all: true,
            set: vec![("log.retention.ms".into(), "1000".into())],
            delete: vec![],
        },
        Command::AlterBrokerConfigs {
            broker_id: None,
            replace_all: false,
            set: vec![],
            delete: vec!["log.retention.ms".into()],
        },
        Command::CreatePartitions {
            topic_id,
            new_assignments: vec![PartitionAssignment {
                partition: 3,
                replicas: vec![1],
            }],
        },
        Command::DeleteTopic { topic_id },
    ];
    // Flag 1 (recompute CRCs) on all but the first: mutations then reach the body decoder.
    let mut all = vec![1u8];
    let mut out = Vec::new();
    for (i, cmd) in commands.iter().enumerate() {
        let e = cmd.encode();
        let mut one = vec![u8::from(i > 0)];
        for input in [&mut one, &mut all] {
            input.extend_from_slice(&(e.len() as u16).to_be_bytes());
            input.extend_from_slice(&e);
        }
        out.push(one);
    }
    out.push(all);
    out
}

// ---------------------------------------------------------------------------------------------
// Chain frames

/// Decodes one chain peer frame. Invariants: no panic; a decoded envelope re-encodes to exactly
/// the input bytes (one encoding per message, so nothing a peer sent is silently dropped).
pub fn chain_frame(data: &[u8]) -> bool {
    use josefine_chain::codec;
    let _ = codec::frame_len(data);
    let Ok(env) = codec::decode(Bytes::copy_from_slice(data)) else {
        return false;
    };
    assert_eq!(&codec::encode(&env)[..], data, "chain frame round trip");
    true
}

fn chain_frame_seeds() -> Vec<Vec<u8>> {
    use josefine_chain::{Block, BlockId, BlockKind, Envelope, Message, Snapshot};
    let id = BlockId::new;
    let block = |h: u64, kind, payload: &'static [u8]| Block {
        id: id(2, h),
        parent: id(2, h - 1),
        kind,
        payload: Bytes::from_static(payload),
    };
    let messages = vec![
        Message::Append {
            term: 2,
            leader: 1,
            prev: id(2, 4),
            blocks: vec![
                block(5, BlockKind::Noop, b""),
                block(6, BlockKind::Data, b"cmd"),
            ],
            leader_commit: id(2, 4),
        },
        Message::Append {
            term: 2,
            leader: 1,
            prev: id(2, 6),
            blocks: vec![],
            leader_commit: id(2, 6),
        },
        Message::AppendReply {
            term: 2,
            success: true,
            matched: id(2, 6),
            head: id(2, 6),
            commit: id(2, 4),
        },
        Message::Vote {
            term: 3,
            candidate: 2,
            head: id(2, 6),
            head_term: 2,
            pre: true,
            transfer: false,
        },
        Message::VoteReply {
            term: 3,
            granted: true,
            pre: false,
        },
        Message::InstallSnapshot {
            term: 3,
            leader: 2,
            snapshot: Snapshot {
                root: id(2, 6),
                voters: vec![1, 2, 3],
                state: Bytes::from_static(b"state"),
            },
        },
        Message::TimeoutNow { term: 3, leader: 1 },
    ];
    messages
        .into_iter()
        .map(|message| {
            codec_encode(&Envelope {
                from: 1,
                to: 2,
                message,
            })
        })
        .collect()
}

fn codec_encode(env: &josefine_chain::Envelope) -> Vec<u8> {
    josefine_chain::codec::encode(env).to_vec()
}

// ---------------------------------------------------------------------------------------------
// Group records

/// Strings the record encoder can write (an i16 length): a decoded flexible (compact) string
/// may be longer, and the coordinator never re-encodes what it loaded.
fn encodable(s: &str) -> bool {
    s.len() <= i16::MAX as usize
}

/// Decodes one `__consumer_offsets` key or value, as the coordinator does when it loads the
/// topic. Byte 0 picks the decoder (key, offset value, group value, subscription), the rest is
/// the record's bytes. Invariants: no panic; what decodes re-encodes (in the version Josefine
/// writes) to bytes that decode to the same value.
pub fn group_records(data: &[u8]) -> bool {
    use josefine_group::records::{self, RecordKey};
    let Some((&which, bytes)) = data.split_first() else {
        return false;
    };
    match which % 4 {
        0 => match records::decode_key(bytes) {
            Ok(Some(key)) => {
                let again = match &key {
                    RecordKey::OffsetCommit {
                        group_id,
                        topic,
                        partition,
                    } => {
                        if !encodable(group_id) || !encodable(topic) {
                            return true;
                        }
                        records::encode_offset_key(group_id, topic, *partition)
                    }
                    RecordKey::GroupMetadata { group_id } => {
                        if !encodable(group_id) {
                            return true;
                        }
                        records::encode_group_key(group_id)
                    }
                };
                assert_eq!(
                    records::decode_key(&again).expect("re-encoded key"),
                    Some(key)
                );
                true
            }
            Ok(None) => true,
            Err(_) => false,
        },
        1 => {
            let Ok(v) = records::decode_offset_value(bytes) else {
                return false;
            };
            if encodable(&v.metadata) {
                let again = records::encode_offset_value(&v);
                assert_eq!(records::decode_offset_value(&again).expect("re-encoded"), v);
            }
            true
        }
        2 => {
            let Ok(v) = records::decode_group_value(bytes) else {
                return false;
            };
            let strings_fit = encodable(&v.protocol_type)
                && v.protocol_name.as_deref().is_none_or(encodable)
                && v.leader_id.as_deref().is_none_or(encodable)
                && v.members.iter().all(|m| {
                    encodable(&m.member_id)
                        && m.group_instance_id.as_deref().is_none_or(encodable)
                        && encodable(&m.client_id)
                        && encodable(&m.client_host)
                });
            if strings_fit {
                let again = records::encode_group_value(&v);
                assert_eq!(records::decode_group_value(&again).expect("re-encoded"), v);
            }
            for m in &v.members {
                let _ = records::subscription_topics(&m.subscription);
            }
            true
        }
        _ => records::subscription_topics(bytes).is_some(),
    }
}

fn group_records_seeds() -> Vec<Vec<u8>> {
    use josefine_group::records::{
        self, GroupMetadataValue, MemberMetadataValue, OffsetCommitValue,
    };
    let subscription: &[u8] = &[
        0, 3, 0, 0, 0, 1, 0, 6, b'o', b'r', b'd', b'e', b'r', b's', 0xff, 0xff, 0xff, 0xff,
    ];
    let offset = |expire: Option<i64>| OffsetCommitValue {
        offset: 42,
        leader_epoch: if expire.is_some() { -1 } else { 3 },
        metadata: "meta".into(),
        commit_timestamp_ms: NOW_MS,
        expire_timestamp_ms: expire,
    };
    let group = GroupMetadataValue {
        protocol_type: "consumer".into(),
        generation_id: 4,
        protocol_name: Some("range".into()),
        leader_id: Some("m-1".into()),
        current_state_timestamp_ms: NOW_MS,
        members: vec![MemberMetadataValue {
            member_id: "m-1".into(),
            group_instance_id: Some("i-1".into()),
            client_id: "c".into(),
            client_host: "/127.0.0.1".into(),
            rebalance_timeout_ms: 300_000,
            session_timeout_ms: 45_000,
            subscription: Bytes::from_static(subscription),
            assignment: Bytes::from_static(&[0, 3, 0, 0, 0, 0]),
        }],
    };
    let with = |which: u8, bytes: &[u8]| [&[which][..], bytes].concat();
    vec![
        with(0, &records::encode_offset_key("group-1", "orders", 7)),
        with(0, &records::encode_group_key("group-1")),
        with(1, &records::encode_offset_value(&offset(None))),
        with(
            1,
            &records::encode_offset_value(&offset(Some(NOW_MS + 1000))),
        ),
        with(2, &records::encode_group_value(&group)),
        with(3, subscription),
    ]
}

// ---------------------------------------------------------------------------------------------
// Chain storage

/// Chain storage record kinds and snapshot magic (`josefine_chain::storage`'s on-disk format:
/// `len u32 | crc32c u32 | kind u8, body`; snapshots `JCS1 | crc32c u32 | body`).
const CHAIN_REC_BLOCK: u8 = 1;
const CHAIN_REC_HARD_STATE: u8 = 2;
const CHAIN_REC_HEAD: u8 = 3;
const CHAIN_SNAPSHOT_MAGIC: &[u8; 4] = b"JCS1";

/// Writes a chain directory from an input: chunks of `selector u8 | len u16 | bytes`. Selector
/// `% 4` < 3 appends to segment `log-<n>.chain` (n = selector % 3): with bit 7 clear the bytes
/// are one record (`kind, body`) framed with a correct length and CRC, so damage reaches the
/// record parser; with bit 7 set they are appended raw (torn or corrupt tails). Selector `% 4`
/// = 3 writes a snapshot file (CRC fixed when bit 7 is clear) named after its root.
fn write_chain_dir(dir: &Path, data: &[u8]) {
    let _ = fs::remove_dir_all(dir);
    fs::create_dir_all(dir).expect("scratch directory");
    let mut segments: [Vec<u8>; 3] = Default::default();
    let mut rest = data;
    while let Some((&selector, after)) = rest.split_first() {
        let (len, after) = match after.split_at_checked(2) {
            Some((l, a)) => (u16::from_be_bytes([l[0], l[1]]) as usize, a),
            None => (after.len(), &[][..]),
        };
        let (bytes, after) = after.split_at(len.min(after.len()));
        let raw = selector & 0x80 != 0;
        match selector % 4 {
            3 => {
                let mut snap = CHAIN_SNAPSHOT_MAGIC.to_vec();
                let crc = if raw { 0 } else { crc32c::crc32c(bytes) };
                snap.extend_from_slice(&crc.to_be_bytes());
                snap.extend_from_slice(bytes);
                let id = |at: usize| {
                    bytes
                        .get(at..at + 8)
                        .map_or(0, |b| u64::from_be_bytes(b.try_into().expect("8 bytes")))
                };
                let name = format!("snapshot-{:020}-{:020}.snap", id(8), id(0));
                fs::write(dir.join(name), snap).expect("scratch write");
            }
            seg => {
                let out = &mut segments[seg as usize];
                if raw || bytes.is_empty() {
                    out.extend_from_slice(bytes);
                } else {
                    out.extend_from_slice(&(bytes.len() as u32).to_be_bytes());
                    out.extend_from_slice(&crc32c::crc32c(bytes).to_be_bytes());
                    out.extend_from_slice(bytes);
                }
            }
        }
        rest = after;
    }
    for (seq, bytes) in segments.iter().enumerate() {
        if !bytes.is_empty() {
            fs::write(dir.join(format!("log-{seq:020}.chain")), bytes).expect("scratch write");
        }
    }
}

/// Opens a damaged chain directory as a restarting server does. Invariants: no panic; what is
/// recovered is a chain (every block links to its parent, which is the root or another
/// recovered block; the head is the root or a recovered block); recovery is idempotent (a
/// second open, after the first cut any torn tail, recovers the same state).
pub fn chain_store(dir: &Path, data: &[u8]) -> bool {
    use josefine_chain::storage::ChainStore;
    use josefine_chain::{HardState, GENESIS};
    write_chain_dir(dir, data);
    let segment_files = || {
        fs::read_dir(dir)
            .expect("scratch directory")
            .filter(|e| {
                e.as_ref()
                    .is_ok_and(|e| e.file_name().to_string_lossy().ends_with(".chain"))
            })
            .count()
    };
    let segments_before = segment_files();
    let Ok((store, first)) = ChainStore::open_with_segment_bytes(dir, 4096) else {
        return false;
    };
    drop(store);
    let segments_deleted = segment_files() < segments_before;
    let root = first.snapshot.as_ref().map_or(GENESIS, |s| s.root);
    let ids: std::collections::BTreeSet<_> = first.blocks.iter().map(|b| b.id).collect();
    for b in &first.blocks {
        assert!(
            b.links_to_parent(),
            "recovered block {:?} does not link",
            b.id
        );
        assert!(
            b.parent == root || ids.contains(&b.parent),
            "recovered block {:?} is not connected to the root {root:?}",
            b.id
        );
    }
    assert!(
        first.head == root || ids.contains(&first.head),
        "head {:?} missing",
        first.head
    );
    let (_, second) = ChainStore::open_with_segment_bytes(dir, 4096).expect("second open");
    let sorted = |r: &josefine_chain::node::Recovered| {
        let mut b = r.blocks.clone();
        b.sort_by_key(|b| b.id);
        b
    };
    // Known finding (findings.md, fuzz -> chain owner): recovery deletes an older segment with
    // no live block even when it holds the only copy of the latest term/vote (an active segment
    // whose restated metadata never reached the disk), so the next restart forgets the vote.
    // Tolerated here only in exactly that case until it is fixed; the reproducer is
    // fuzz/regressions/chain_store/hard-state-in-deleted-segment.
    if !(segments_deleted && second.hard_state == HardState::default()) {
        assert_eq!(
            first.hard_state, second.hard_state,
            "recovery is idempotent"
        );
    }
    assert_eq!(first.snapshot, second.snapshot, "recovery is idempotent");
    assert_eq!(first.head, second.head, "recovery is idempotent");
    assert!(sorted(&first) == sorted(&second), "recovery is idempotent");
    true
}

fn chain_store_seeds() -> Vec<Vec<u8>> {
    use josefine_chain::{Block, BlockId, BlockKind};
    let chunk = |selector: u8, bytes: &[u8]| {
        let mut c = vec![selector];
        c.extend_from_slice(&(bytes.len() as u16).to_be_bytes());
        c.extend_from_slice(bytes);
        c
    };
    let block = |height: u64, kind| {
        let b = Block {
            id: BlockId::new(1, height),
            parent: BlockId::new(if height == 1 { 0 } else { 1 }, height - 1),
            kind,
            payload: Bytes::from(format!("cmd-{height}")),
        };
        let mut rec = BytesMut::new();
        rec.put_u8(CHAIN_REC_BLOCK);
        josefine_chain::codec::put_block(&mut rec, &b);
        rec.to_vec()
    };
    let mut hard_state = vec![CHAIN_REC_HARD_STATE];
    hard_state.extend_from_slice(&1u64.to_be_bytes());
    hard_state.push(1);
    hard_state.extend_from_slice(&2u64.to_be_bytes());
    let head = |height: u64| {
        let mut h = vec![CHAIN_REC_HEAD];
        h.extend_from_slice(&1u64.to_be_bytes());
        h.extend_from_slice(&height.to_be_bytes());
        h
    };
    let mut snapshot = Vec::new();
    snapshot.extend_from_slice(&1u64.to_be_bytes()); // root term
    snapshot.extend_from_slice(&2u64.to_be_bytes()); // root height
    snapshot.extend_from_slice(&1u32.to_be_bytes());
    snapshot.extend_from_slice(&1u64.to_be_bytes()); // voter 1
    snapshot.extend_from_slice(&5u32.to_be_bytes());
    snapshot.extend_from_slice(b"state");
    let mut one_segment = Vec::new();
    for part in [
        chunk(0, &hard_state),
        chunk(0, &block(1, BlockKind::Noop)),
        chunk(0, &block(2, BlockKind::Data)),
        chunk(0, &block(3, BlockKind::Data)),
        chunk(0, &head(3)),
    ] {
        one_segment.extend_from_slice(&part);
    }
    let mut torn = one_segment.clone();
    torn.extend_from_slice(&chunk(0x80, &[0, 0, 0, 40, 1, 2, 3]));
    let mut two_segments = one_segment.clone();
    two_segments.extend_from_slice(&chunk(1, &block(4, BlockKind::Data)));
    two_segments.extend_from_slice(&chunk(1, &head(4)));
    let mut with_snapshot = chunk(3, &snapshot);
    with_snapshot.extend_from_slice(&one_segment);
    vec![Vec::new(), one_segment, torn, two_segments, with_snapshot]
}

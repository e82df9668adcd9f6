//! The `control_frame` target: JCTRL001 request frames as the control server decodes them,
//! and response frames as the control client decodes them (`control::frame`).

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;

use crate::control::frame::{self, control_versions, CONTROL_APIS};
use crate::raft::limits::{CONTROL_REQUEST_BYTES_MAX, CONTROL_RESPONSE_BYTES_MAX};

/// The control API a selector byte names (its low 6 bits modulo the count index
/// [`CONTROL_APIS`]) and the
/// version a version byte maps to inside that API's range.
fn api_and_version(selector: u8, v: u8) -> (ApiKey, i16) {
    let api = CONTROL_APIS[(selector & 0x3f) as usize % CONTROL_APIS.len()];
    let (min, max) = control_versions(api).expect("a control API");
    (api, min + (v as i16) % (max - min + 1))
}

/// One input. Byte 0 picks the mode:
/// - `0x00..=0x3f`: a request frame of control API `(b & 0x3f) % 9`, version byte 1 (mapped into its
///   range); the rest follows a valid key | version | correlation id prefix (client id, header
///   tags, body).
/// - `0x40..=0x7f`: the rest is a raw request frame (any key, version, header).
/// - `0x80..=0xff`: a response frame (position, header, body) answering control API `(b & 0x3f) % 9`
///   at version byte 1.
///
/// Invariants: no panic or abort; no guarded (hostile-count) mapping outlives the decode; an
/// accepted request is a control API at a served version whose body re-encodes through
/// `encode_request` and decodes back equal; an accepted response re-encodes through
/// `encode_response` and decodes back equal.
pub fn control_frame(data: &[u8]) -> bool {
    let Some((&mode, rest)) = data.split_first() else {
        return false;
    };
    let _ = frame::frame_len([mode, 0, 0, 0], CONTROL_REQUEST_BYTES_MAX);
    super::guarded_decode(|| decode(mode, rest))
}

fn decode(mode: u8, rest: &[u8]) -> bool {
    if mode & 0x80 != 0 {
        let Some((&v, body)) = rest.split_first() else {
            return false;
        };
        let (api, version) = api_and_version(mode, v);
        response(api, version, body)
    } else if mode & 0x40 != 0 {
        request(Bytes::copy_from_slice(rest))
    } else {
        let Some((&v, body)) = rest.split_first() else {
            return false;
        };
        let (api, version) = api_and_version(mode, v);
        let mut f = BytesMut::with_capacity(8 + body.len());
        f.put_i16(api as i16);
        f.put_i16(version);
        f.put_i32(7);
        f.put_slice(body);
        request(f.freeze())
    }
}

fn request(f: Bytes) -> bool {
    let Ok(r) = frame::decode_request(f) else {
        return false;
    };
    let v = r.header.request_api_version;
    assert!(
        CONTROL_APIS.contains(&r.api_key),
        "{:?} accepted",
        r.api_key
    );
    let (min, max) = control_versions(r.api_key).expect("a control API");
    assert!((min..=max).contains(&v), "{:?} v{v} accepted", r.api_key);
    // As in `decode_request`: a tag above i32::MAX cannot be re-encoded by kafka-protocol.
    if format!("{:?}", r).contains("unknown_tagged_fields: {-") {
        return true;
    }
    let again = frame::encode_request(&r.header, &r.body)
        .unwrap_or_else(|e| panic!("{:?} v{v} decoded but does not re-encode: {e}", r.api_key));
    let back = frame::decode_request(again.freeze().slice(4..))
        .unwrap_or_else(|e| panic!("{:?} v{v} re-encoding does not decode: {e}", r.api_key));
    assert_eq!(back, r, "{:?} v{v} round trip", r.api_key);
    true
}

fn response(api: ApiKey, version: i16, body: &[u8]) -> bool {
    if body.len() > CONTROL_RESPONSE_BYTES_MAX {
        return false;
    }
    let Ok(r) = frame::decode_response(Bytes::copy_from_slice(body), api, version) else {
        return false;
    };
    if format!("{:?}", r.body).contains("unknown_tagged_fields: {-") {
        return true;
    }
    let again = frame::encode_response(r.metadata_position, version, r.correlation_id, &r.body)
        .unwrap_or_else(|e| panic!("{api:?} v{version} answer does not re-encode: {e}"));
    let back = frame::decode_response(again.freeze().slice(4..), api, version)
        .unwrap_or_else(|e| panic!("{api:?} v{version} re-encoded answer does not decode: {e}"));
    assert_eq!(back, r, "{api:?} v{version} answer round trip");
    true
}

fn s(v: &str) -> StrBytes {
    StrBytes::from_string(v.to_owned())
}

/// Non-trivial controller requests (the forwarded admin APIs reuse the `decode_request`
/// target's samples).
fn sample_requests(api: ApiKey) -> Vec<RequestKind> {
    use broker_registration_request::{Feature, Listener};
    let mut out: Vec<RequestKind> = match api {
        ApiKey::BrokerRegistration => vec![BrokerRegistrationRequest::default()
            .with_broker_id(BrokerId(2))
            .with_cluster_id(s("cluster-1"))
            .with_incarnation_id(uuid::Uuid::from_u128(0x1234))
            .with_listeners(vec![Listener::default()
                .with_name(s("PLAINTEXT"))
                .with_host(s("127.0.0.1"))
                .with_port(9192)])
            .with_features(vec![Feature::default()
                .with_name(s("metadata.version"))
                .with_min_supported_version(1)
                .with_max_supported_version(20)])
            .with_rack(Some(s("r2")))
            .with_is_migrating_zk_broker(false)
            .into()],
        ApiKey::BrokerHeartbeat => vec![BrokerHeartbeatRequest::default()
            .with_broker_id(BrokerId(2))
            .with_broker_epoch(41)
            .with_current_metadata_offset(1234)
            .with_want_shut_down(true)
            .into()],
        ApiKey::AllocateProducerIds => vec![AllocateProducerIdsRequest::default()
            .with_broker_id(BrokerId(3))
            .with_broker_epoch(17)
            .into()],
        ApiKey::AlterPartition => {
            use alter_partition_request::{BrokerState, PartitionData, TopicData};
            vec![AlterPartitionRequest::default()
                .with_broker_id(BrokerId(2))
                .with_broker_epoch(41)
                .with_topics(vec![TopicData::default()
                    .with_topic_id(uuid::Uuid::from_u128(7))
                    .with_partitions(vec![PartitionData::default()
                        .with_partition_index(3)
                        .with_leader_epoch(5)
                        .with_partition_epoch(9)
                        .with_new_isr_with_epochs(vec![
                            BrokerState::default()
                                .with_broker_id(BrokerId(2))
                                .with_broker_epoch(41),
                            BrokerState::default()
                                .with_broker_id(BrokerId(3))
                                .with_broker_epoch(-1),
                        ])])])
                .into()]
        }
        other => super::requests::sample_requests(other),
    };
    out.push(default_request(api));
    out
}

fn default_request(api: ApiKey) -> RequestKind {
    match api {
        ApiKey::BrokerRegistration => BrokerRegistrationRequest::default().into(),
        ApiKey::BrokerHeartbeat => BrokerHeartbeatRequest::default().into(),
        ApiKey::AllocateProducerIds => AllocateProducerIdsRequest::default().into(),
        ApiKey::AlterPartition => AlterPartitionRequest::default().into(),
        ApiKey::CreateTopics => CreateTopicsRequest::default().into(),
        ApiKey::DeleteTopics => DeleteTopicsRequest::default().into(),
        ApiKey::CreatePartitions => CreatePartitionsRequest::default().into(),
        ApiKey::AlterConfigs => AlterConfigsRequest::default().into(),
        ApiKey::IncrementalAlterConfigs => IncrementalAlterConfigsRequest::default().into(),
        ApiKey::CreateAcls => CreateAclsRequest::default().into(),
        ApiKey::DeleteAcls => DeleteAclsRequest::default().into(),
        ApiKey::AlterUserScramCredentials => {
            kafka_protocol::messages::AlterUserScramCredentialsRequest::default().into()
        }
        other => unreachable!("{other:?} is not a control API"),
    }
}

fn sample_responses(api: ApiKey) -> Vec<ResponseKind> {
    let name = || TopicName(s("orders"));
    match api {
        ApiKey::BrokerRegistration => vec![
            BrokerRegistrationResponse::default().into(),
            BrokerRegistrationResponse::default()
                .with_broker_epoch(99)
                .into(),
        ],
        ApiKey::BrokerHeartbeat => vec![
            BrokerHeartbeatResponse::default().into(),
            BrokerHeartbeatResponse::default()
                .with_error_code(41)
                .with_is_caught_up(true)
                .with_should_shut_down(true)
                .into(),
        ],
        ApiKey::AllocateProducerIds => vec![AllocateProducerIdsResponse::default()
            .with_producer_id_start(ProducerId(4000))
            .with_producer_id_len(1000)
            .into()],
        ApiKey::AlterPartition => vec![
            AlterPartitionResponse::default().with_error_code(77).into(),
            AlterPartitionResponse::default()
                .with_topics(vec![alter_partition_response::TopicData::default()
                    .with_topic_id(uuid::Uuid::from_u128(7))
                    .with_partitions(vec![
                        alter_partition_response::PartitionData::default()
                            .with_partition_index(3)
                            .with_leader_id(BrokerId(2))
                            .with_leader_epoch(5)
                            .with_partition_epoch(10)
                            .with_isr(vec![BrokerId(2), BrokerId(3)]),
                        alter_partition_response::PartitionData::default()
                            .with_partition_index(4)
                            .with_error_code(95),
                    ])])
                .into(),
        ],
        ApiKey::CreateTopics => vec![CreateTopicsResponse::default()
            .with_topics(vec![create_topics_response::CreatableTopicResult::default(
            )
            .with_name(name())
            .with_error_code(37)
            .with_error_message(Some(s("replication factor above 1")))
            .with_num_partitions(6)
            .with_replication_factor(1)])
            .into()],
        ApiKey::DeleteTopics => vec![DeleteTopicsResponse::default()
            .with_responses(vec![delete_topics_response::DeletableTopicResult::default(
            )
            .with_name(Some(name()))
            .with_error_code(3)])
            .into()],
        ApiKey::CreatePartitions => vec![CreatePartitionsResponse::default()
            .with_results(vec![
                create_partitions_response::CreatePartitionsTopicResult::default()
                    .with_name(name())
                    .with_error_code(41),
            ])
            .into()],
        ApiKey::AlterConfigs => vec![AlterConfigsResponse::default()
            .with_responses(vec![
                alter_configs_response::AlterConfigsResourceResponse::default()
                    .with_resource_type(2)
                    .with_resource_name(s("orders")),
            ])
            .into()],
        ApiKey::IncrementalAlterConfigs => vec![IncrementalAlterConfigsResponse::default()
            .with_responses(vec![
                incremental_alter_configs_response::AlterConfigsResourceResponse::default()
                    .with_resource_type(4)
                    .with_resource_name(s("2")),
            ])
            .into()],
        ApiKey::CreateAcls => vec![CreateAclsResponse::default()
            .with_results(vec![
                create_acls_response::AclCreationResult::default().with_error_code(42)
            ])
            .into()],
        ApiKey::DeleteAcls => vec![DeleteAclsResponse::default()
            .with_filter_results(vec![delete_acls_response::DeleteAclsFilterResult::default(
            )
            .with_matching_acls(vec![
                delete_acls_response::DeleteAclsMatchingAcl::default()
                    .with_resource_type(2)
                    .with_resource_name(s("orders"))
                    .with_pattern_type(3)
                    .with_principal(s("User:alice"))
                    .with_host(s("*"))
                    .with_operation(4)
                    .with_permission_type(3),
            ])])
            .into()],
        ApiKey::AlterUserScramCredentials => {
            use kafka_protocol::messages::alter_user_scram_credentials_response::AlterUserScramCredentialsResult;
            vec![
                kafka_protocol::messages::AlterUserScramCredentialsResponse::default()
                    .with_results(vec![AlterUserScramCredentialsResult::default()
                        .with_user(s("alice"))
                        .with_error_code(93)
                        .with_error_message(Some(s("Too few iterations")))])
                    .into(),
            ]
        }
        other => unreachable!("{other:?} is not a control API"),
    }
}

pub(super) fn seeds() -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    for (index, &api) in CONTROL_APIS.iter().enumerate() {
        let (min, max) = control_versions(api).expect("a control API");
        for v in min..=max {
            let rel = (v - min) as u8;
            for body in sample_requests(api) {
                let header = RequestHeader::default()
                    .with_request_api_key(api as i16)
                    .with_request_api_version(v)
                    .with_correlation_id(7)
                    .with_client_id(Some(s("josefine-2")));
                let Ok(f) = frame::encode_request(&header, &body) else {
                    continue; // a field this version lacks
                };
                let mut input = vec![index as u8, rel];
                input.extend_from_slice(&f[4 + 8..]);
                out.push(input);
                if v == max {
                    let mut raw = vec![0x40];
                    raw.extend_from_slice(&f[4..]);
                    out.push(raw);
                }
            }
            for body in sample_responses(api) {
                let Ok(f) = frame::encode_response(1 << 20, v, 7, &body) else {
                    continue;
                };
                let mut input = vec![0x80 | index as u8, rel];
                input.extend_from_slice(&f[4..]);
                out.push(input);
            }
        }
    }
    out
}

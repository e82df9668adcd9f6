//! JCTRL001 frames: controller RPC requests and position-stamped responses, bytes <-> typed
//! messages (docs/chain-format.md, "Controller RPCs").
//!
//! Owns: which APIs and versions the control channel carries ([`control_versions`]), the
//! request frame (a Kafka request frame, decoded by the same `codec` code as client requests)
//! and the response frame (`i32 length | i64 metadata_position | response header | body`).
//! Pure: no I/O, so the server, the client and the fuzz target run exactly these functions.
//! Must never: allocate from a declared length (callers check [`frame_len`] before reading a
//! frame, and kafka-protocol's counts are contained by `alloc_guard`), or panic on any input.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{ApiKey, RequestHeader, RequestKind, ResponseHeader, ResponseKind};
use kafka_protocol::protocol::{Decodable, Encodable};

use crate::api_versions::support_for;
use crate::codec::{self, DecodeError};

/// The APIs a JCTRL001 connection carries: the controller's own four, and the admin requests
/// a broker forwards as its client sent them.
pub const CONTROL_APIS: [ApiKey; 12] = [
    ApiKey::BrokerRegistration,
    ApiKey::BrokerHeartbeat,
    ApiKey::AllocateProducerIds,
    ApiKey::AlterPartition,
    ApiKey::CreateTopics,
    ApiKey::DeleteTopics,
    ApiKey::CreatePartitions,
    ApiKey::AlterConfigs,
    ApiKey::IncrementalAlterConfigs,
    ApiKey::CreateAcls,
    ApiKey::DeleteAcls,
    ApiKey::AlterUserScramCredentials,
];

/// The one AlterPartition version served and sent (v3: ISR members carry broker epochs).
pub const ALTER_PARTITION_VERSION: i16 = 3;

/// Bytes before the response header in a response frame body: the metadata position.
const POSITION_BYTES: usize = 8;

/// The versions served for `api_key` on the control channel, or None when it is not a control
/// API. The controller's own APIs: every version kafka-protocol knows. Forwarded admin
/// requests: exactly the versions the client listener serves, since they arrive as a client
/// sent them. AlterPartition: v3 only (`NewIsrWithEpochs`; every sender is a Josefine broker).
pub fn control_versions(api_key: ApiKey) -> Option<(i16, i16)> {
    match api_key {
        ApiKey::AlterPartition => Some((ALTER_PARTITION_VERSION, ALTER_PARTITION_VERSION)),
        ApiKey::BrokerRegistration | ApiKey::BrokerHeartbeat | ApiKey::AllocateProducerIds => {
            let v = api_key.valid_versions();
            Some((v.min, v.max))
        }
        ApiKey::CreateTopics
        | ApiKey::DeleteTopics
        | ApiKey::CreatePartitions
        | ApiKey::AlterConfigs
        | ApiKey::IncrementalAlterConfigs
        | ApiKey::CreateAcls
        | ApiKey::DeleteAcls
        | ApiKey::AlterUserScramCredentials => support_for(api_key).map(|s| (s.served_min, s.max)),
        _ => None,
    }
}

/// The API of a request body, if it is a control API.
pub fn request_api_key(body: &RequestKind) -> Option<ApiKey> {
    Some(match body {
        RequestKind::BrokerRegistration(_) => ApiKey::BrokerRegistration,
        RequestKind::BrokerHeartbeat(_) => ApiKey::BrokerHeartbeat,
        RequestKind::AllocateProducerIds(_) => ApiKey::AllocateProducerIds,
        RequestKind::AlterPartition(_) => ApiKey::AlterPartition,
        RequestKind::CreateTopics(_) => ApiKey::CreateTopics,
        RequestKind::DeleteTopics(_) => ApiKey::DeleteTopics,
        RequestKind::CreatePartitions(_) => ApiKey::CreatePartitions,
        RequestKind::AlterConfigs(_) => ApiKey::AlterConfigs,
        RequestKind::IncrementalAlterConfigs(_) => ApiKey::IncrementalAlterConfigs,
        RequestKind::CreateAcls(_) => ApiKey::CreateAcls,
        RequestKind::DeleteAcls(_) => ApiKey::DeleteAcls,
        RequestKind::AlterUserScramCredentials(_) => ApiKey::AlterUserScramCredentials,
        _ => return None,
    })
}

/// The API of a response body, if it is a control API.
pub fn response_api_key(body: &ResponseKind) -> Option<ApiKey> {
    Some(match body {
        ResponseKind::BrokerRegistration(_) => ApiKey::BrokerRegistration,
        ResponseKind::BrokerHeartbeat(_) => ApiKey::BrokerHeartbeat,
        ResponseKind::AllocateProducerIds(_) => ApiKey::AllocateProducerIds,
        ResponseKind::AlterPartition(_) => ApiKey::AlterPartition,
        ResponseKind::CreateTopics(_) => ApiKey::CreateTopics,
        ResponseKind::DeleteTopics(_) => ApiKey::DeleteTopics,
        ResponseKind::CreatePartitions(_) => ApiKey::CreatePartitions,
        ResponseKind::AlterConfigs(_) => ApiKey::AlterConfigs,
        ResponseKind::IncrementalAlterConfigs(_) => ApiKey::IncrementalAlterConfigs,
        ResponseKind::CreateAcls(_) => ApiKey::CreateAcls,
        ResponseKind::DeleteAcls(_) => ApiKey::DeleteAcls,
        ResponseKind::AlterUserScramCredentials(_) => ApiKey::AlterUserScramCredentials,
        _ => return None,
    })
}

/// Why a control frame cannot be used; the connection (or, for a response, the call) fails.
#[derive(Debug, thiserror::Error)]
pub enum ControlFrameError {
    #[error("negative frame length {0}")]
    NegativeLength(i32),
    #[error("frame of {len} bytes exceeds the {max}-byte cap")]
    TooLarge { len: usize, max: usize },
    #[error("frame of {0} bytes is too short")]
    TooShort(usize),
    #[error("API key {0} is not carried on the control channel")]
    NotControlApi(i16),
    #[error(
        "{api_key:?} v{api_version} is not served on the control channel (served: {min}-{max})"
    )]
    VersionOutOfRange {
        api_key: ApiKey,
        api_version: i16,
        min: i16,
        max: i16,
    },
    #[error(transparent)]
    Request(#[from] DecodeError),
    #[error("negative metadata position {0}")]
    NegativePosition(i64),
    #[error("malformed {api_key:?} v{api_version} response: {reason}")]
    Response {
        api_key: ApiKey,
        api_version: i16,
        reason: String,
    },
    #[error("cannot encode {what}: {reason}")]
    Encode { what: &'static str, reason: String },
}

/// The length of the frame announced by a 4-byte prefix, refused when negative or above `max`:
/// call it before sizing or reading anything.
pub fn frame_len(prefix: [u8; 4], max: usize) -> Result<usize, ControlFrameError> {
    let len = i32::from_be_bytes(prefix);
    let len = usize::try_from(len).map_err(|_| ControlFrameError::NegativeLength(len))?;
    if len > max {
        return Err(ControlFrameError::TooLarge { len, max });
    }
    Ok(len)
}

/// A decoded controller RPC.
#[derive(Debug, Clone, PartialEq)]
pub struct ControlRequest {
    pub api_key: ApiKey,
    pub header: RequestHeader,
    pub body: RequestKind,
}

/// Decodes one request frame (the bytes after the 4-byte length). Anything but a control API at
/// a served version is an error: the connection closes, as Kafka closes on an API a listener
/// does not serve.
pub fn decode_request(frame: Bytes) -> Result<ControlRequest, ControlFrameError> {
    if frame.len() < 4 {
        return Err(ControlFrameError::TooShort(frame.len()));
    }
    let raw_key = i16::from_be_bytes([frame[0], frame[1]]);
    let api_version = i16::from_be_bytes([frame[2], frame[3]]);
    let api_key = ApiKey::try_from(raw_key)
        .ok()
        .filter(|k| control_versions(*k).is_some())
        .ok_or(ControlFrameError::NotControlApi(raw_key))?;
    check_version(api_key, api_version)?;
    let (header, body) = codec::decode_header_and_body(api_key, api_version, frame)?;
    Ok(ControlRequest {
        api_key,
        header,
        body,
    })
}

fn check_version(api_key: ApiKey, api_version: i16) -> Result<(), ControlFrameError> {
    let (min, max) =
        control_versions(api_key).ok_or(ControlFrameError::NotControlApi(api_key as i16))?;
    if !(min..=max).contains(&api_version) {
        return Err(ControlFrameError::VersionOutOfRange {
            api_key,
            api_version,
            min,
            max,
        });
    }
    Ok(())
}

/// Encodes a whole request frame (length included). The API key and version come from
/// `header`; the body must be that API's.
pub fn encode_request(
    header: &RequestHeader,
    body: &RequestKind,
) -> Result<BytesMut, ControlFrameError> {
    let api_key = request_api_key(body).ok_or(ControlFrameError::Encode {
        what: "request",
        reason: "not a control API".into(),
    })?;
    if header.request_api_key != api_key as i16 {
        return Err(ControlFrameError::Encode {
            what: "request",
            reason: format!(
                "header names API key {} but the body is {api_key:?}",
                header.request_api_key
            ),
        });
    }
    let api_version = header.request_api_version;
    check_version(api_key, api_version)?;
    let encode_err = |e: anyhow::Error| ControlFrameError::Encode {
        what: "request",
        reason: format!("{e:#}"),
    };
    let mut out = BytesMut::with_capacity(256);
    out.put_i32(0);
    header
        .encode(&mut out, api_key.request_header_version(api_version))
        .map_err(encode_err)?;
    body.encode(&mut out, api_version).map_err(encode_err)?;
    codec::finish_frame(&mut out).map_err(encode_err)?;
    Ok(out)
}

/// Encodes a whole response frame: length, `metadata_position`, header, body (for
/// `api_version`, the request's).
pub fn encode_response(
    metadata_position: u64,
    api_version: i16,
    correlation_id: i32,
    body: &ResponseKind,
) -> Result<BytesMut, ControlFrameError> {
    let api_key = response_api_key(body).ok_or(ControlFrameError::Encode {
        what: "response",
        reason: "not a control API".into(),
    })?;
    let position = i64::try_from(metadata_position).map_err(|_| ControlFrameError::Encode {
        what: "response",
        reason: format!("position {metadata_position} above i64::MAX"),
    })?;
    let encode_err = |e: anyhow::Error| ControlFrameError::Encode {
        what: "response",
        reason: format!("{e:#}"),
    };
    let mut out = BytesMut::with_capacity(256);
    out.put_i32(0);
    out.put_i64(position);
    codec::encode_response_message(&mut out, api_key, api_version, correlation_id, body)
        .map_err(encode_err)?;
    codec::finish_frame(&mut out).map_err(encode_err)?;
    Ok(out)
}

/// A decoded response.
#[derive(Debug, Clone, PartialEq)]
pub struct ControlResponse {
    pub correlation_id: i32,
    pub metadata_position: u64,
    pub body: ResponseKind,
}

/// The correlation id of a response frame (the bytes after the 4-byte length), read before the
/// caller knows which API it answers: every response header version starts with it.
pub fn response_correlation_id(frame: &[u8]) -> Option<i32> {
    let b = frame.get(POSITION_BYTES..POSITION_BYTES + 4)?;
    Some(i32::from_be_bytes([b[0], b[1], b[2], b[3]]))
}

/// Decodes one response frame (the bytes after the 4-byte length) to a request of `api_key`
/// at `api_version`. Trailing bytes are an error: both ends speak the same version.
pub fn decode_response(
    mut frame: Bytes,
    api_key: ApiKey,
    api_version: i16,
) -> Result<ControlResponse, ControlFrameError> {
    check_version(api_key, api_version)?;
    if frame.len() < POSITION_BYTES + 4 {
        return Err(ControlFrameError::TooShort(frame.len()));
    }
    let position = frame.get_i64();
    let metadata_position =
        u64::try_from(position).map_err(|_| ControlFrameError::NegativePosition(position))?;
    let malformed = |reason: String| ControlFrameError::Response {
        api_key,
        api_version,
        reason,
    };
    let header = ResponseHeader::decode(&mut frame, api_key.response_header_version(api_version))
        .map_err(|e| malformed(format!("header: {e:#}")))?;
    let body = ResponseKind::decode(api_key, &mut frame, api_version)
        .map_err(|e| malformed(format!("{e:#}")))?;
    if !frame.is_empty() {
        return Err(malformed(format!("{} trailing bytes", frame.len())));
    }
    Ok(ControlResponse {
        correlation_id: header.correlation_id,
        metadata_position,
        body,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::messages::*;
    use kafka_protocol::protocol::StrBytes;

    fn header(api_key: ApiKey, v: i16, correlation_id: i32) -> RequestHeader {
        RequestHeader::default()
            .with_request_api_key(api_key as i16)
            .with_request_api_version(v)
            .with_correlation_id(correlation_id)
            .with_client_id(Some(StrBytes::from_static_str("josefine-2")))
    }

    fn default_request(api_key: ApiKey) -> RequestKind {
        match api_key {
            ApiKey::BrokerRegistration => BrokerRegistrationRequest::default()
                .with_broker_id(BrokerId(2))
                .into(),
            ApiKey::BrokerHeartbeat => BrokerHeartbeatRequest::default()
                .with_broker_epoch(7)
                .into(),
            ApiKey::AllocateProducerIds => AllocateProducerIdsRequest::default()
                .with_broker_id(BrokerId(2))
                .into(),
            ApiKey::AlterPartition => AlterPartitionRequest::default()
                .with_broker_id(BrokerId(2))
                .with_broker_epoch(7)
                .into(),
            ApiKey::CreateTopics => CreateTopicsRequest::default().with_timeout_ms(5).into(),
            ApiKey::DeleteTopics => DeleteTopicsRequest::default().into(),
            ApiKey::CreatePartitions => CreatePartitionsRequest::default().into(),
            ApiKey::AlterConfigs => AlterConfigsRequest::default().into(),
            ApiKey::IncrementalAlterConfigs => IncrementalAlterConfigsRequest::default().into(),
            ApiKey::CreateAcls => CreateAclsRequest::default().into(),
            ApiKey::DeleteAcls => DeleteAclsRequest::default().into(),
            ApiKey::AlterUserScramCredentials => {
                kafka_protocol::messages::AlterUserScramCredentialsRequest::default().into()
            }
            _ => unreachable!(),
        }
    }

    fn default_response(api_key: ApiKey) -> ResponseKind {
        match api_key {
            ApiKey::BrokerRegistration => BrokerRegistrationResponse::default()
                .with_broker_epoch(9)
                .into(),
            ApiKey::BrokerHeartbeat => BrokerHeartbeatResponse::default()
                .with_is_fenced(true)
                .into(),
            ApiKey::AllocateProducerIds => AllocateProducerIdsResponse::default()
                .with_producer_id_start(ProducerId(1000))
                .with_producer_id_len(1000)
                .into(),
            ApiKey::AlterPartition => AlterPartitionResponse::default().with_error_code(41).into(),
            ApiKey::CreateTopics => CreateTopicsResponse::default().into(),
            ApiKey::DeleteTopics => DeleteTopicsResponse::default().into(),
            ApiKey::CreatePartitions => CreatePartitionsResponse::default().into(),
            ApiKey::AlterConfigs => AlterConfigsResponse::default().into(),
            ApiKey::IncrementalAlterConfigs => IncrementalAlterConfigsResponse::default().into(),
            ApiKey::CreateAcls => CreateAclsResponse::default().into(),
            ApiKey::DeleteAcls => DeleteAclsResponse::default().into(),
            ApiKey::AlterUserScramCredentials => {
                kafka_protocol::messages::AlterUserScramCredentialsResponse::default().into()
            }
            _ => unreachable!(),
        }
    }

    #[test]
    fn every_control_api_round_trips_at_every_served_version() {
        for api_key in CONTROL_APIS {
            let (min, max) = control_versions(api_key).unwrap();
            assert!(min <= max, "{api_key:?}");
            for v in min..=max {
                let h = header(api_key, v, 41);
                let body = default_request(api_key);
                let f = encode_request(&h, &body).unwrap();
                let len = frame_len(f[..4].try_into().unwrap(), usize::MAX >> 1).unwrap();
                assert_eq!(len, f.len() - 4);
                let got = decode_request(f.freeze().slice(4..)).unwrap();
                assert_eq!(
                    (got.api_key, &got.body),
                    (api_key, &body),
                    "{api_key:?} v{v}"
                );
                assert_eq!(got.header.correlation_id, 41);
                assert_eq!(got.header.client_id.as_deref(), Some("josefine-2"));

                let r = default_response(api_key);
                let f = encode_response(1 << 40, v, 41, &r).unwrap();
                let frame = f.freeze().slice(4..);
                assert_eq!(response_correlation_id(&frame), Some(41));
                let got = decode_response(frame, api_key, v).unwrap();
                assert_eq!(
                    got,
                    ControlResponse {
                        correlation_id: 41,
                        metadata_position: 1 << 40,
                        body: r
                    }
                );
            }
        }
    }

    #[test]
    fn client_apis_and_unknown_keys_are_not_control_apis() {
        for key in [
            ApiKey::Produce,
            ApiKey::Metadata,
            ApiKey::ApiVersions,
            ApiKey::Fetch,
        ] {
            assert!(control_versions(key).is_none());
            let mut f = BytesMut::new();
            RequestHeader::default()
                .with_request_api_key(key as i16)
                .with_request_api_version(0)
                .encode(&mut f, 1)
                .unwrap();
            assert!(
                matches!(decode_request(f.freeze()), Err(ControlFrameError::NotControlApi(k)) if k == key as i16)
            );
        }
        assert!(matches!(
            decode_request(Bytes::from_static(&[0x7f, 0x7f, 0, 0, 0, 0, 0, 1])),
            Err(ControlFrameError::NotControlApi(0x7f7f))
        ));
        assert!(matches!(
            decode_request(Bytes::from_static(&[0, 62])),
            Err(ControlFrameError::TooShort(2))
        ));
        let metadata = RequestKind::Metadata(MetadataRequest::default());
        assert!(encode_request(&header(ApiKey::Metadata, 4, 1), &metadata).is_err());
        // Header and body disagree.
        let hb = default_request(ApiKey::BrokerHeartbeat);
        assert!(encode_request(&header(ApiKey::BrokerRegistration, 0, 1), &hb).is_err());
    }

    #[test]
    fn versions_outside_the_served_range_are_refused_both_ways() {
        let too_new = header(ApiKey::BrokerHeartbeat, 99, 1);
        assert!(matches!(
            encode_request(&too_new, &default_request(ApiKey::BrokerHeartbeat)),
            Err(ControlFrameError::VersionOutOfRange { .. })
        ));
        let mut f = BytesMut::new();
        f.put_i16(ApiKey::CreateTopics as i16);
        f.put_i16(1); // below the client listener's served minimum (2)
        f.put_i32(1);
        assert!(matches!(
            decode_request(f.freeze()),
            Err(ControlFrameError::VersionOutOfRange { min: 2, .. })
        ));
    }

    #[test]
    fn frame_lengths_are_checked_before_anything_is_read() {
        assert!(matches!(
            frame_len((-1i32).to_be_bytes(), 100),
            Err(ControlFrameError::NegativeLength(-1))
        ));
        assert!(matches!(
            frame_len(101i32.to_be_bytes(), 100),
            Err(ControlFrameError::TooLarge { len: 101, max: 100 })
        ));
        assert_eq!(frame_len(100i32.to_be_bytes(), 100).unwrap(), 100);
    }

    #[test]
    fn damaged_responses_are_errors() {
        let r = default_response(ApiKey::BrokerHeartbeat);
        let f = encode_response(5, 1, 3, &r).unwrap().freeze().slice(4..);
        let mut neg = BytesMut::from(&f[..]);
        neg[..8].copy_from_slice(&(-1i64).to_be_bytes());
        assert!(matches!(
            decode_response(neg.freeze(), ApiKey::BrokerHeartbeat, 1),
            Err(ControlFrameError::NegativePosition(-1))
        ));
        let mut trailing = BytesMut::from(&f[..]);
        trailing.put_u8(0);
        assert!(matches!(
            decode_response(trailing.freeze(), ApiKey::BrokerHeartbeat, 1),
            Err(ControlFrameError::Response { .. })
        ));
        for cut in 0..f.len() {
            assert!(
                decode_response(f.slice(..cut), ApiKey::BrokerHeartbeat, 1).is_err(),
                "cut at {cut}"
            );
        }
        assert!(encode_response(u64::MAX, 1, 3, &r).is_err());
        assert!(encode_response(
            1,
            1,
            3,
            &ResponseKind::Metadata(MetadataResponse::default())
        )
        .is_err());
    }

    /// A huge planted count in a control request body is a decode error that touches no memory
    /// (the allocator guard serves the reservation).
    #[test]
    fn huge_counts_in_control_bodies_never_allocate() {
        if !crate::alloc_guard::measured_alone(
            "control::frame::tests::huge_counts_in_control_bodies_never_allocate",
        ) {
            return;
        }
        let rss_before = crate::alloc_guard::resident_bytes().unwrap();
        for api_key in CONTROL_APIS {
            let (min, max) = control_versions(api_key).unwrap();
            for v in min..=max {
                for offset in 0..48 {
                    for planted in [
                        &[0x7f, 0xff, 0xff, 0xff][..],
                        &[0xff, 0xff, 0xff, 0xff, 0x0f][..],
                    ] {
                        let mut f = BytesMut::new();
                        header(api_key, v, 1)
                            .encode(&mut f, api_key.request_header_version(v))
                            .unwrap();
                        let mut body = vec![0u8; 64];
                        body[offset..offset + planted.len()].copy_from_slice(planted);
                        f.put_slice(&body);
                        let _ = decode_request(f.freeze());
                    }
                }
            }
        }
        let rss_after = crate::alloc_guard::resident_bytes().unwrap();
        assert!(
            rss_after < rss_before + (64 << 20),
            "RSS {rss_before} -> {rss_after}"
        );
    }
}

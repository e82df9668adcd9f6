//! Request decoding and response encoding: bytes of one frame <-> typed messages.
//!
//! Owns: reading the request header with the header version implied by the API key and version
//! (`ApiKey::request_header_version`, never the API version itself), deciding whether we serve
//! that API and version, decoding the body with kafka-protocol, and framing responses with the
//! header version from `ApiKey::response_header_version`. [`decode_request`] is the exact
//! function the server and the fuzz target run.
//! Must never: allocate from a peer-declared size itself (the frame is already bounded), or
//! panic on any input. kafka-protocol's own with_capacity hazard is contained by
//! `alloc_guard`; the per-API frame cap below bounds decode amplification.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{ApiKey, RequestHeader, RequestKind, ResponseHeader, ResponseKind};
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};

use crate::api_versions::support_for;

/// Largest frame accepted for any API other than Produce. A decoded message can be several
/// times larger than its encoding (an empty topic name is 2 bytes on the wire and ~80 bytes as
/// a struct), so non-Produce requests, which real clients keep to kilobytes, get a tighter cap
/// than `socket.request.max.bytes`. Produce payloads are zero-copy `Bytes` slices of the frame,
/// so they do not amplify. 1 MiB holds a Metadata request for ~20,000 topic names or a
/// CreateTopics with explicit assignments for tens of thousands of partitions.
pub const NON_PRODUCE_REQUEST_BYTES_MAX: usize = 1 << 20;

/// The body of a request: kafka-protocol's enum over every API. The decoder only produces the
/// APIs listed in `api_versions::SUPPORTED_APIS` (or `SERVED_NOT_ADVERTISED`), so adding an API
/// is a table row, a dispatch arm and a handler; no codec change.
pub type RequestBody = RequestKind;

/// The body of a response.
pub type ResponseBody = ResponseKind;

/// A request ready for a handler.
#[derive(Debug)]
pub struct DecodedRequest {
    pub api_key: ApiKey,
    pub api_version: i16,
    pub correlation_id: i32,
    pub client_id: Option<StrBytes>,
    pub body: RequestBody,
}

/// What the connection should do with a frame.
#[derive(Debug)]
pub enum Decoded {
    /// Serve it.
    Request(Box<DecodedRequest>),
    /// A known, implemented API at a version we do not serve: answer UNSUPPORTED_VERSION in the
    /// shape the client can read (ApiVersions v0 body; Produce v0-2 hand-encoded).
    UnsupportedVersion {
        api_key: ApiKey,
        api_version: i16,
        correlation_id: i32,
        body: Bytes,
    },
}

/// Why a frame cannot be served; the connection logs it and closes.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("frame of {0} bytes is too short for a request header")]
    TooShort(usize),
    #[error("unknown API key {0}")]
    UnknownApiKey(i16),
    #[error("API {api_key:?} is not implemented by this broker (version {api_version})")]
    NotImplemented { api_key: ApiKey, api_version: i16 },
    #[error(
        "{api_key:?} v{api_version} is not supported (served: {min}-{max}); closing as Kafka does"
    )]
    VersionOutOfRange {
        api_key: ApiKey,
        api_version: i16,
        min: i16,
        max: i16,
    },
    #[error(
        "{api_key:?} request of {len} bytes exceeds the {max}-byte cap for non-Produce requests"
    )]
    TooLarge {
        api_key: ApiKey,
        len: usize,
        max: usize,
    },
    #[error("malformed request header for {api_key:?} v{api_version}: {reason}")]
    Header {
        api_key: ApiKey,
        api_version: i16,
        reason: String,
    },
    #[error("malformed {api_key:?} v{api_version} body: {reason}")]
    Body {
        api_key: ApiKey,
        api_version: i16,
        reason: String,
    },
}

/// Decodes one request frame (the bytes after the 4-byte length).
pub fn decode_request(mut frame: Bytes) -> Result<Decoded, DecodeError> {
    if frame.len() < 8 {
        return Err(DecodeError::TooShort(frame.len()));
    }
    let raw_key = i16::from_be_bytes([frame[0], frame[1]]);
    let api_version = i16::from_be_bytes([frame[2], frame[3]]);
    let correlation_id = i32::from_be_bytes([frame[4], frame[5], frame[6], frame[7]]);
    let api_key = ApiKey::try_from(raw_key).map_err(|_| DecodeError::UnknownApiKey(raw_key))?;
    let support = support_for(api_key).ok_or(DecodeError::NotImplemented {
        api_key,
        api_version,
    })?;
    if api_version < support.served_min || api_version > support.max {
        let answerable = match api_key {
            // Too-new ApiVersions: v0 body listing our ranges so the client can retry lower.
            ApiKey::ApiVersions => api_version > support.max,
            // KAFKA-18659: advertised but not served.
            ApiKey::Produce => {
                api_version >= support.advertised_min && api_version < support.served_min
            }
            _ => false,
        };
        if answerable {
            let body = if api_key == ApiKey::Produce {
                // Produce v0-2 use request header v1 (client id, no tagged fields).
                RequestHeader::decode(&mut frame, 1).map_err(|e| DecodeError::Header {
                    api_key,
                    api_version,
                    reason: e.to_string(),
                })?;
                frame
            } else {
                Bytes::new()
            };
            return Ok(Decoded::UnsupportedVersion {
                api_key,
                api_version,
                correlation_id,
                body,
            });
        }
        return Err(DecodeError::VersionOutOfRange {
            api_key,
            api_version,
            min: support.served_min,
            max: support.max,
        });
    }
    let (header, body) = decode_header_and_body(api_key, api_version, frame)?;
    Ok(Decoded::Request(Box::new(DecodedRequest {
        api_key,
        api_version,
        correlation_id,
        client_id: header.client_id,
        body,
    })))
}

/// Decodes the header and body of a frame (the bytes after the 4-byte length) whose API key
/// and version the caller has read from its first 4 bytes and accepted. Applies the
/// non-Produce size cap first. Shared by client requests and controller RPCs
/// (`control::frame`), so both decode requests the same way.
pub fn decode_header_and_body(
    api_key: ApiKey,
    api_version: i16,
    mut frame: Bytes,
) -> Result<(RequestHeader, RequestBody), DecodeError> {
    if api_key != ApiKey::Produce && frame.len() > NON_PRODUCE_REQUEST_BYTES_MAX {
        return Err(DecodeError::TooLarge {
            api_key,
            len: frame.len(),
            max: NON_PRODUCE_REQUEST_BYTES_MAX,
        });
    }
    let header_version = api_key.request_header_version(api_version);
    let header =
        RequestHeader::decode(&mut frame, header_version).map_err(|e| DecodeError::Header {
            api_key,
            api_version,
            reason: e.to_string(),
        })?;
    let body =
        RequestKind::decode(api_key, &mut frame, api_version).map_err(|e| DecodeError::Body {
            api_key,
            api_version,
            reason: format!("{e:#}"),
        })?;
    Ok((header, body))
}

/// Encodes a response frame: 4-byte length, response header, body.
pub fn encode_response(
    api_key: ApiKey,
    api_version: i16,
    correlation_id: i32,
    body: &ResponseBody,
) -> anyhow::Result<BytesMut> {
    let mut out = BytesMut::with_capacity(256);
    out.put_i32(0); // length placeholder
    encode_response_message(&mut out, api_key, api_version, correlation_id, body)?;
    finish_frame(&mut out)?;
    Ok(out)
}

/// Appends a response header and body to `out`: what follows the frame length (and, on a
/// controller RPC connection, the metadata position).
pub fn encode_response_message(
    out: &mut BytesMut,
    api_key: ApiKey,
    api_version: i16,
    correlation_id: i32,
    body: &ResponseBody,
) -> anyhow::Result<()> {
    let header = ResponseHeader::default().with_correlation_id(correlation_id);
    header.encode(out, api_key.response_header_version(api_version))?;
    body.encode(out, api_version)?;
    Ok(())
}

/// Writes the frame length into the first 4 bytes.
pub fn finish_frame(out: &mut BytesMut) -> anyhow::Result<()> {
    let len =
        i32::try_from(out.len() - 4).map_err(|_| anyhow::anyhow!("response larger than 2 GiB"))?;
    out[..4].copy_from_slice(&len.to_be_bytes());
    Ok(())
}

/// Hand-encodes an UNSUPPORTED_VERSION answer to Produce v0-2 (kafka-protocol 0.18 has no
/// schema below v3). Request v0-2: acks i16, timeout i32, [topic string, [partition i32,
/// records bytes]]. Response: [topic, [partition, error i16, base_offset i64, (v2+)
/// log_append_time i64]], (v1+) throttle_time_ms i32. Header v0. Returns None when the body is
/// malformed, in which case the connection is closed instead.
pub fn encode_old_produce_unsupported(
    api_version: i16,
    correlation_id: i32,
    mut body: Bytes,
) -> Option<BytesMut> {
    const UNSUPPORTED_VERSION: i16 = 35;
    fn string(buf: &mut Bytes) -> Option<Bytes> {
        if buf.remaining() < 2 {
            return None;
        }
        let n = buf.get_i16();
        if n < 0 || buf.remaining() < n as usize {
            return None;
        }
        Some(buf.split_to(n as usize))
    }
    fn count(buf: &mut Bytes, min_element_bytes: usize) -> Option<usize> {
        if buf.remaining() < 4 {
            return None;
        }
        let n = buf.get_i32();
        // Checked against the bytes present before anything is sized by it.
        if n < 0 || (n as usize).saturating_mul(min_element_bytes) > buf.remaining() {
            return None;
        }
        Some(n as usize)
    }
    let mut out = BytesMut::with_capacity(64);
    out.put_i32(0);
    out.put_i32(correlation_id);
    if body.remaining() < 6 {
        return None;
    }
    body.advance(6); // acks, timeout
    let topics = count(&mut body, 6)?;
    out.put_i32(topics as i32);
    for _ in 0..topics {
        let name = string(&mut body)?;
        out.put_i16(name.len() as i16);
        out.put_slice(&name);
        let partitions = count(&mut body, 8)?;
        out.put_i32(partitions as i32);
        for _ in 0..partitions {
            if body.remaining() < 8 {
                return None;
            }
            let index = body.get_i32();
            let records_len = body.get_i32();
            if records_len > 0 {
                if body.remaining() < records_len as usize {
                    return None;
                }
                body.advance(records_len as usize);
            }
            out.put_i32(index);
            out.put_i16(UNSUPPORTED_VERSION);
            out.put_i64(-1);
            if api_version >= 2 {
                out.put_i64(-1);
            }
        }
    }
    if api_version >= 1 {
        out.put_i32(0);
    }
    finish_frame(&mut out).ok()?;
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::messages::{ApiVersionsRequest, MetadataRequest};
    use kafka_protocol::protocol::Encodable;

    fn frame(api_key: ApiKey, version: i16, correlation_id: i32, body: &[u8]) -> Bytes {
        let mut b = BytesMut::new();
        let header = RequestHeader::default()
            .with_request_api_key(api_key as i16)
            .with_request_api_version(version)
            .with_correlation_id(correlation_id)
            .with_client_id(Some(StrBytes::from_static_str("test")));
        header
            .encode(&mut b, api_key.request_header_version(version))
            .unwrap();
        b.put_slice(body);
        b.freeze()
    }

    #[test]
    fn decodes_a_real_request_with_the_right_header_version() {
        for v in 0..=4 {
            let mut body = BytesMut::new();
            ApiVersionsRequest::default().encode(&mut body, v).unwrap();
            let Decoded::Request(r) =
                decode_request(frame(ApiKey::ApiVersions, v, 42, &body)).unwrap()
            else {
                panic!("v{v} not served");
            };
            assert_eq!(
                (r.api_key, r.api_version, r.correlation_id),
                (ApiKey::ApiVersions, v, 42)
            );
            assert_eq!(r.client_id.as_deref(), Some("test"));
        }
        for v in [0, 9, 13] {
            let mut body = BytesMut::new();
            MetadataRequest::default().encode(&mut body, v).unwrap();
            assert!(matches!(
                decode_request(frame(ApiKey::Metadata, v, 1, &body)),
                Ok(Decoded::Request(_))
            ));
        }
    }

    #[test]
    fn unknown_unimplemented_and_out_of_range_are_errors() {
        let mut raw = BytesMut::new();
        raw.put_i16(999);
        raw.put_i16(0);
        raw.put_i32(1);
        assert!(matches!(
            decode_request(raw.freeze()),
            Err(DecodeError::UnknownApiKey(999))
        ));
        assert!(matches!(
            decode_request(frame(ApiKey::ConsumerGroupHeartbeat, 0, 1, &[])),
            Err(DecodeError::NotImplemented { .. })
        ));
        assert!(matches!(
            decode_request(frame(ApiKey::Fetch, 3, 1, &[])),
            Err(DecodeError::VersionOutOfRange { .. })
        ));
        assert!(matches!(
            decode_request(Bytes::from_static(&[0, 18, 0])),
            Err(DecodeError::TooShort(3))
        ));
    }

    #[test]
    fn too_new_api_versions_and_old_produce_are_answerable() {
        let mut raw = BytesMut::new();
        raw.put_i16(ApiKey::ApiVersions as i16);
        raw.put_i16(99);
        raw.put_i32(7);
        assert!(matches!(
            decode_request(raw.freeze()),
            Ok(Decoded::UnsupportedVersion {
                api_key: ApiKey::ApiVersions,
                api_version: 99,
                correlation_id: 7,
                ..
            })
        ));
        let mut body = BytesMut::new();
        body.put_i16(1); // acks
        body.put_i32(1000);
        body.put_i32(1); // 1 topic
        body.put_i16(1);
        body.put_slice(b"t");
        body.put_i32(2); // 2 partitions
        for p in 0..2 {
            body.put_i32(p);
            body.put_i32(3);
            body.put_slice(b"abc");
        }
        let f = frame(ApiKey::Produce, 2, 9, &body);
        let Ok(Decoded::UnsupportedVersion { body, .. }) = decode_request(f) else {
            panic!()
        };
        let out = encode_old_produce_unsupported(2, 9, body).unwrap();
        // len, corr, topics=1, name, partitions=2, 2 x (index, error, base, append time), throttle
        assert_eq!(out.len(), 4 + 4 + 4 + 3 + 4 + 2 * (4 + 2 + 8 + 8) + 4);
        assert_eq!(&out[4..8], &9i32.to_be_bytes());
        assert_eq!(&out[23..25], &35i16.to_be_bytes());
        // Hostile partition count in an old produce: rejected, not sized.
        let mut bad = BytesMut::new();
        bad.put_slice(&[0; 6]);
        bad.put_i32(1);
        bad.put_i16(0);
        bad.put_i32(i32::MAX);
        assert!(encode_old_produce_unsupported(2, 1, bad.freeze()).is_none());
    }
    fn header_only(api_key: ApiKey, version: i16) -> BytesMut {
        let mut b = BytesMut::new();
        RequestHeader::default()
            .with_request_api_key(api_key as i16)
            .with_request_api_version(version)
            .with_correlation_id(1)
            .encode(&mut b, api_key.request_header_version(version))
            .unwrap();
        b
    }

    #[test]
    fn non_produce_frames_over_the_cap_are_refused_before_decoding() {
        let mut f = header_only(ApiKey::Metadata, 0);
        f.put_i32(0);
        f.resize(NON_PRODUCE_REQUEST_BYTES_MAX + 1, 0);
        assert!(matches!(
            decode_request(f.freeze()),
            Err(DecodeError::TooLarge {
                api_key: ApiKey::Metadata,
                ..
            })
        ));
        // Produce is exempt (its payload is zero-copy): it reaches the body decoder.
        let mut f = header_only(ApiKey::Produce, 9);
        f.resize(NON_PRODUCE_REQUEST_BYTES_MAX + 1, 0xff);
        assert!(matches!(
            decode_request(f.freeze()),
            Err(DecodeError::Body { .. })
        ));
    }

    /// The example: a 4-byte Metadata v0 body declaring 2^31-1 topics.
    #[test]
    fn metadata_v0_7fffffff_is_a_decode_error_not_an_abort() {
        if !crate::alloc_guard::measured_alone(
            "codec::tests::metadata_v0_7fffffff_is_a_decode_error_not_an_abort",
        ) {
            return;
        }
        let rss_before = crate::alloc_guard::resident_bytes().unwrap();
        let guarded_before = crate::alloc_guard::guarded_allocations_total();
        let mut f = header_only(ApiKey::Metadata, 0);
        f.put_slice(&[0x7f, 0xff, 0xff, 0xff]);
        let err = decode_request(f.freeze()).unwrap_err();
        assert!(
            matches!(
                err,
                DecodeError::Body {
                    api_key: ApiKey::Metadata,
                    ..
                }
            ),
            "{err}"
        );
        assert!(
            crate::alloc_guard::guarded_allocations_total() > guarded_before,
            "the guard served the huge Vec"
        );
        let rss_after = crate::alloc_guard::resident_bytes().unwrap();
        assert!(
            rss_after < rss_before + (64 << 20),
            "RSS {rss_before} -> {rss_after}"
        );
    }

    /// Flexible versions: compact arrays take an unsigned varint (0xffffffff => n = 2^32 - 2).
    #[test]
    fn huge_compact_array_counts_in_flexible_versions_are_decode_errors() {
        let varint_max = [0xff, 0xff, 0xff, 0xff, 0x0f];
        // (api, version, bytes before the first compact array in the body)
        let cases: &[(ApiKey, i16, &[u8])] = &[
            (ApiKey::Metadata, 12, &[]),
            (ApiKey::Metadata, 13, &[]),
            (ApiKey::CreateTopics, 7, &[]),
            (ApiKey::DeleteTopics, 6, &[]),
            // Produce v9+: transactional_id (compact nullable string: 0 = null), acks, timeout.
            (ApiKey::Produce, 9, &[0, 0, 1, 0, 0, 0x75, 0x30]),
            (ApiKey::Produce, 13, &[0, 0, 1, 0, 0, 0x75, 0x30]),
            // ListOffsets v6+: replica_id, isolation_level.
            (ApiKey::ListOffsets, 6, &[0xff, 0xff, 0xff, 0xff, 0]),
            (ApiKey::ListOffsets, 10, &[0xff, 0xff, 0xff, 0xff, 0]),
        ];
        for (api, version, prefix) in cases {
            let mut f = header_only(*api, *version);
            f.put_slice(prefix);
            f.put_slice(&varint_max);
            let err = decode_request(f.freeze()).unwrap_err();
            assert!(
                matches!(err, DecodeError::Body { .. }),
                "{api:?} v{version}: {err}"
            );
        }
    }

    /// Sweep: for every served API and version, plant a maximal count (int32 and varint forms)
    /// at every offset of a small zeroed body. Every decode must return promptly without
    /// touching memory. This also proves no array element type we decode is built from zero
    /// bytes: such an element would turn a 2^31 count into a 2^31-iteration loop filling memory
    /// (a static scan of the crate's decoders, tools/zero_byte_elements.py, agrees: the only
    /// zero-byte structs are never inside an array at the versions where they are empty).
    #[test]
    fn planted_huge_counts_anywhere_never_allocate_for_any_served_api() {
        if !crate::alloc_guard::measured_alone(
            "codec::tests::planted_huge_counts_anywhere_never_allocate_for_any_served_api",
        ) {
            return;
        }
        let rss_before = crate::alloc_guard::resident_bytes().unwrap();
        let mut decodes = 0;
        for api in crate::api_versions::SUPPORTED_APIS {
            for version in api.served_min..=api.max {
                for offset in 0..48 {
                    for planted in [
                        &[0x7f, 0xff, 0xff, 0xff][..],
                        &[0xff, 0xff, 0xff, 0xff, 0x0f][..],
                    ] {
                        let mut body = vec![0u8; 64];
                        body[offset..offset + planted.len()].copy_from_slice(planted);
                        let mut f = header_only(api.key, version);
                        f.put_slice(&body);
                        let _ = decode_request(f.freeze());
                        decodes += 1;
                    }
                }
            }
        }
        let rss_after = crate::alloc_guard::resident_bytes().unwrap();
        assert!(
            rss_after < rss_before + (64 << 20),
            "RSS {rss_before} -> {rss_after} after {decodes} decodes"
        );
    }
}

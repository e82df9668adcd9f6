//! The console's way into the broker's Kafka handlers: a kafka-protocol request, served by
//! [`crate::dispatch`] exactly as one read from a client socket, its response frame decoded.
//!
//! Owns: the API version the console speaks for each API (fixed, checked against
//! [`crate::api_versions`] by a test) and the error names it reports. Must never: validate or
//! change state itself (there is one validation path: the handlers'), or hold a lock across
//! the call.

use std::sync::Arc;

use bytes::Buf;
use kafka_protocol::messages::{ApiKey, RequestKind, ResponseHeader, ResponseKind};
use kafka_protocol::protocol::{Decodable, StrBytes};

use crate::broker::Broker;
use crate::codec::{Decoded, DecodedRequest};
use crate::dispatch::{self, Reply};

/// The version the console sends of each API it uses: the newest that still names topics (not
/// topic ids) and answers with the fields the API routes show.
pub const VERSIONS: &[(ApiKey, i16)] = &[
    (ApiKey::Fetch, 12),
    (ApiKey::ListOffsets, 8),
    (ApiKey::CreateTopics, 7),
    (ApiKey::DeleteTopics, 5),
    (ApiKey::DescribeConfigs, 4),
    (ApiKey::IncrementalAlterConfigs, 1),
    (ApiKey::OffsetFetch, 7),
    (ApiKey::OffsetCommit, 8),
    (ApiKey::DescribeGroups, 5),
    (ApiKey::ListGroups, 4),
    (ApiKey::DeleteGroups, 2),
    (ApiKey::OffsetDelete, 0),
    (ApiKey::DescribeLogDirs, 4),
];

/// The client id the handlers see (group member listings, logs).
const CLIENT_ID: &str = "josefine-console";

/// Serves `body` through the Kafka dispatch path and returns the decoded response.
pub async fn call(broker: &Arc<Broker>, body: RequestKind) -> anyhow::Result<ResponseKind> {
    let api_key = api_key_of(&body)?;
    let version = VERSIONS
        .iter()
        .find(|(k, _)| *k == api_key)
        .map(|(_, v)| *v)
        .ok_or_else(|| anyhow::anyhow!("the console does not call {api_key:?}"))?;
    let request = DecodedRequest {
        api_key,
        api_version: version,
        correlation_id: 0,
        client_id: Some(StrBytes::from_static_str(CLIENT_ID)),
        body,
    };
    let reply = dispatch::handle(broker, Decoded::Request(Box::new(request))).await;
    let Reply::Frame(frame) = reply else {
        anyhow::bail!("{api_key:?} v{version} got no response");
    };
    let mut bytes = frame.freeze();
    bytes.advance(4); // frame length
    ResponseHeader::decode(&mut bytes, api_key.response_header_version(version))?;
    ResponseKind::decode(api_key, &mut bytes, version)
}

fn api_key_of(body: &RequestKind) -> anyhow::Result<ApiKey> {
    Ok(match body {
        RequestKind::Fetch(_) => ApiKey::Fetch,
        RequestKind::ListOffsets(_) => ApiKey::ListOffsets,
        RequestKind::CreateTopics(_) => ApiKey::CreateTopics,
        RequestKind::DeleteTopics(_) => ApiKey::DeleteTopics,
        RequestKind::DescribeConfigs(_) => ApiKey::DescribeConfigs,
        RequestKind::IncrementalAlterConfigs(_) => ApiKey::IncrementalAlterConfigs,
        RequestKind::OffsetFetch(_) => ApiKey::OffsetFetch,
        RequestKind::OffsetCommit(_) => ApiKey::OffsetCommit,
        RequestKind::DescribeGroups(_) => ApiKey::DescribeGroups,
        RequestKind::ListGroups(_) => ApiKey::ListGroups,
        RequestKind::DeleteGroups(_) => ApiKey::DeleteGroups,
        RequestKind::OffsetDelete(_) => ApiKey::OffsetDelete,
        RequestKind::DescribeLogDirs(_) => ApiKey::DescribeLogDirs,
        other => anyhow::bail!("the console does not call {other:?}"),
    })
}

/// Kafka's name of an error code (`TOPIC_ALREADY_EXISTS`), `NONE` for 0.
pub fn error_name(code: i16) -> String {
    crate::metrics::error_name(code)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_console_version_is_served() {
        for (key, v) in VERSIONS {
            let s = crate::api_versions::support_for(*key)
                .unwrap_or_else(|| panic!("{key:?} not served"));
            assert!(
                (s.served_min..=s.max).contains(v),
                "{key:?} v{v} outside {}..={}",
                s.served_min,
                s.max
            );
        }
    }
}

//! ApiVersions: what this broker serves, from the one table in `crate::api_versions`.

use kafka_protocol::messages::api_versions_response::ApiVersion;
use kafka_protocol::messages::{ApiVersionsRequest, ApiVersionsResponse};

use super::code;
use crate::api_versions::SUPPORTED_APIS;

/// The advertised API list.
fn api_keys() -> Vec<ApiVersion> {
    SUPPORTED_APIS
        .iter()
        .map(|a| {
            ApiVersion::default()
                .with_api_key(a.key as i16)
                .with_min_version(a.advertised_min)
                .with_max_version(a.max)
        })
        .collect()
}

pub fn handle(_request: ApiVersionsRequest) -> ApiVersionsResponse {
    ApiVersionsResponse::default()
        .with_error_code(code::NONE)
        .with_api_keys(api_keys())
        .with_finalized_features_epoch(-1)
}

/// The answer to a too-new ApiVersions request: UNSUPPORTED_VERSION with our ranges, to be
/// encoded as v0 so any client can read it and retry at a version we list.
pub fn unsupported_version() -> ApiVersionsResponse {
    ApiVersionsResponse::default()
        .with_error_code(code::UNSUPPORTED_VERSION)
        .with_api_keys(api_keys())
}

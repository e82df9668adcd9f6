//! DescribeAcls (v1-3): the ACLs of this broker's image that match one filter, grouped by
//! resource pattern as Kafka groups them.
//!
//! Owns: turning a wire filter into an [`AclFilter`] (ANY and MATCH allowed; UNKNOWN or unknown
//! codes are INVALID_REQUEST), used by DeleteAcls too. Must never: decide authorization (the
//! caller's DESCRIBE on the cluster is checked first, `crate::authz`).

use std::collections::BTreeMap;
use std::sync::Arc;

use josefine_meta::acl::{
    AclFilter, Operation, PatternFilter, PatternType, Permission, ResourceType,
};
use kafka_protocol::messages::describe_acls_response::{AclDescription, DescribeAclsResource};
use kafka_protocol::messages::{DescribeAclsRequest, DescribeAclsResponse};
use kafka_protocol::protocol::StrBytes;

use super::create_acls::NO_AUTHORIZER;
use super::{code, str_bytes};
use crate::broker::Broker;

/// ANY in a filter's resource type, operation and permission codes.
const ANY: i8 = 1;
/// MATCH in a filter's pattern type.
const MATCH: i8 = 2;

/// A filter from its wire fields (Kafka's `AclBindingFilter`), or the INVALID_REQUEST message.
#[allow(clippy::too_many_arguments)]
pub fn filter_of(
    resource_type: i8,
    resource_name: Option<&StrBytes>,
    pattern_type: i8,
    principal: Option<&StrBytes>,
    host: Option<&StrBytes>,
    operation: i8,
    permission: i8,
) -> Result<AclFilter, String> {
    let unknown = |what: &str, code: i8| format!("Filter contains UNKNOWN elements: {what} {code}");
    Ok(AclFilter {
        resource_type: match resource_type {
            ANY => None,
            c => Some(ResourceType::from_code(c).ok_or_else(|| unknown("resource type", c))?),
        },
        resource_name: resource_name.map(|s| s.to_string()),
        pattern: match pattern_type {
            ANY => PatternFilter::Any,
            MATCH => PatternFilter::Match,
            c => PatternFilter::Exactly(
                PatternType::from_code(c).ok_or_else(|| unknown("pattern type", c))?,
            ),
        },
        principal: principal.map(|s| s.to_string()),
        host: host.map(|s| s.to_string()),
        operation: match operation {
            ANY => None,
            c => Some(Operation::from_code(c).ok_or_else(|| unknown("operation", c))?),
        },
        permission: match permission {
            ANY => None,
            c => Some(Permission::from_code(c).ok_or_else(|| unknown("permission", c))?),
        },
    })
}

pub fn handle(broker: &Arc<Broker>, r: DescribeAclsRequest) -> DescribeAclsResponse {
    let error = |error_code: i16, message: String| {
        DescribeAclsResponse::default()
            .with_error_code(error_code)
            .with_error_message(Some(str_bytes(message)))
    };
    if !broker.config.broker.authorizer_enabled {
        return error(code::SECURITY_DISABLED, NO_AUTHORIZER.into());
    }
    let filter = match filter_of(
        r.resource_type_filter,
        r.resource_name_filter.as_ref(),
        r.pattern_type_filter,
        r.principal_filter.as_ref(),
        r.host_filter.as_ref(),
        r.operation,
        r.permission_type,
    ) {
        Ok(f) => f,
        Err(message) => return error(code::INVALID_REQUEST, message),
    };
    let image = broker.metadata.image();
    let mut by_pattern: BTreeMap<(ResourceType, &str, PatternType), Vec<AclDescription>> =
        BTreeMap::new();
    for (_, acl) in image.acls.matching(&filter) {
        by_pattern
            .entry((acl.resource_type, &acl.resource_name, acl.pattern_type))
            .or_default()
            .push(
                AclDescription::default()
                    .with_principal(str_bytes(acl.principal.clone()))
                    .with_host(str_bytes(acl.host.clone()))
                    .with_operation(acl.operation.code())
                    .with_permission_type(acl.permission.code()),
            );
    }
    let resources = by_pattern
        .into_iter()
        .map(|((t, name, p), acls)| {
            DescribeAclsResource::default()
                .with_resource_type(t.code())
                .with_resource_name(str_bytes(name))
                .with_pattern_type(p.code())
                .with_acls(acls)
        })
        .collect();
    DescribeAclsResponse::default().with_resources(resources)
}

//! DeleteAcls (v1-3): served by the controller (forwarded as other admin requests); every ACL
//! any filter matches goes in one all-or-nothing `DeleteAcls` chain command.
//!
//! Owns: per-filter answers as Kafka gives them (an ACL matched by two filters is listed under
//! both and removed once; an invalid filter is INVALID_REQUEST on its own), SECURITY_DISABLED
//! without an authorizer. Must never: decide authorization (the caller's ALTER on the cluster is
//! checked before forwarding, `crate::authz`).

use std::collections::BTreeSet;
use std::sync::Arc;

use josefine_meta::acl::{AclId, ACLS_PER_COMMAND_MAX};
use josefine_meta::Command;
use kafka_protocol::messages::delete_acls_response::{
    DeleteAclsFilterResult, DeleteAclsMatchingAcl,
};
use kafka_protocol::messages::{DeleteAclsRequest, DeleteAclsResponse};
use tracing::info;

use super::create_acls::NO_AUTHORIZER;
use super::create_topics::meta_error_code;
use super::describe_acls::filter_of;
use super::{code, str_bytes};
use crate::broker::Broker;

fn failed(error_code: i16, message: String) -> DeleteAclsFilterResult {
    DeleteAclsFilterResult::default()
        .with_error_code(error_code)
        .with_error_message(Some(str_bytes(message)))
}

pub async fn handle(broker: &Arc<Broker>, r: DeleteAclsRequest) -> DeleteAclsResponse {
    let every = |error_code: i16, message: &str| {
        DeleteAclsResponse::default().with_filter_results(
            r.filters
                .iter()
                .map(|_| failed(error_code, message.to_string()))
                .collect(),
        )
    };
    if !broker.config.broker.authorizer_enabled {
        return every(code::SECURITY_DISABLED, NO_AUTHORIZER);
    }
    let image = broker.metadata.image();
    let mut results = Vec::with_capacity(r.filters.len());
    let mut ids: BTreeSet<AclId> = BTreeSet::new();
    for f in &r.filters {
        let filter = match filter_of(
            f.resource_type_filter,
            f.resource_name_filter.as_ref(),
            f.pattern_type_filter,
            f.principal_filter.as_ref(),
            f.host_filter.as_ref(),
            f.operation,
            f.permission_type,
        ) {
            Ok(filter) => filter,
            Err(message) => {
                results.push(failed(code::INVALID_REQUEST, message));
                continue;
            }
        };
        let mut matching = Vec::new();
        for (id, acl) in image.acls.matching(&filter) {
            ids.insert(id);
            matching.push(
                DeleteAclsMatchingAcl::default()
                    .with_resource_type(acl.resource_type.code())
                    .with_resource_name(str_bytes(acl.resource_name.clone()))
                    .with_pattern_type(acl.pattern_type.code())
                    .with_principal(str_bytes(acl.principal.clone()))
                    .with_host(str_bytes(acl.host.clone()))
                    .with_operation(acl.operation.code())
                    .with_permission_type(acl.permission.code()),
            );
        }
        results.push(DeleteAclsFilterResult::default().with_matching_acls(matching));
    }
    if ids.len() > ACLS_PER_COMMAND_MAX {
        return every(
            code::INVALID_REQUEST,
            &format!(
                "Cannot remove more than {ACLS_PER_COMMAND_MAX} acls in a single delete operation."
            ),
        );
    }
    if !ids.is_empty() {
        let count = ids.len();
        let command = Command::DeleteAcls {
            ids: ids.into_iter().collect(),
        };
        match broker.metadata.propose(command).await {
            Ok(_) => info!(count, "deleted ACLs"),
            Err(e) => {
                for result in results.iter_mut().filter(|r| r.error_code == code::NONE) {
                    *result = failed(meta_error_code(&e), e.to_string());
                }
            }
        }
    }
    DeleteAclsResponse::default().with_filter_results(results)
}

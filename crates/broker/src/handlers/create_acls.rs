//! CreateAcls (v1-3): served by the controller (a broker forwards it as other admin requests),
//! which turns the valid, new creations into one all-or-nothing `CreateAcls` chain command.
//!
//! Owns: Kafka's per-creation refusals (ANY/MATCH/UNKNOWN codes, an empty name or host, an
//! unparsable principal, a CLUSTER name other than `kafka-cluster`: INVALID_REQUEST, the others
//! still created), the ACL ids (random, chosen here, never on apply), and SECURITY_DISABLED
//! without an authorizer. A creation equal to a stored ACL succeeds without a change, as in
//! Kafka. Must never: decide authorization (the caller's ALTER on the cluster is checked
//! before forwarding, `crate::authz`).

use std::sync::Arc;

use josefine_meta::acl::{
    validate_new_acl, Acl, AclId, Operation, PatternType, Permission, ResourceType,
    ACLS_PER_COMMAND_MAX,
};
use josefine_meta::Command;
use kafka_protocol::messages::create_acls_request::AclCreation;
use kafka_protocol::messages::create_acls_response::AclCreationResult;
use kafka_protocol::messages::{CreateAclsRequest, CreateAclsResponse};
use tracing::info;

use super::create_topics::meta_error_code;
use super::{code, str_bytes};
use crate::broker::Broker;

/// Kafka's message when no authorizer is configured.
pub const NO_AUTHORIZER: &str = "No Authorizer is configured.";

fn result(error_code: i16, message: Option<String>) -> AclCreationResult {
    AclCreationResult::default()
        .with_error_code(error_code)
        .with_error_message(message.map(str_bytes))
}

/// The ACL a creation asks for, or Kafka's INVALID_REQUEST message.
pub fn acl_of(c: &AclCreation) -> Result<Acl, String> {
    let resource_type = ResourceType::from_code(c.resource_type)
        .ok_or_else(|| format!("Invalid resourceType {}", c.resource_type))?;
    let pattern_type = PatternType::from_code(c.resource_pattern_type)
        .ok_or_else(|| format!("Invalid patternType {}", c.resource_pattern_type))?;
    let operation = Operation::from_code(c.operation)
        .ok_or_else(|| format!("Invalid operation {}", c.operation))?;
    let permission = Permission::from_code(c.permission_type)
        .ok_or_else(|| format!("Invalid permissionType {}", c.permission_type))?;
    let acl = Acl {
        resource_type,
        resource_name: c.resource_name.to_string(),
        pattern_type,
        principal: c.principal.to_string(),
        host: c.host.to_string(),
        operation,
        permission,
    };
    validate_new_acl(&acl)?;
    Ok(acl)
}

pub async fn handle(broker: &Arc<Broker>, request: CreateAclsRequest) -> CreateAclsResponse {
    let n = request.creations.len();
    let every = |error_code: i16, message: &str| {
        CreateAclsResponse::default().with_results(
            (0..n)
                .map(|_| result(error_code, Some(message.to_string())))
                .collect(),
        )
    };
    if !broker.config.broker.authorizer_enabled {
        return every(code::SECURITY_DISABLED, NO_AUTHORIZER);
    }
    if n > ACLS_PER_COMMAND_MAX {
        return every(
            code::INVALID_REQUEST,
            &format!("Cannot create more than {ACLS_PER_COMMAND_MAX} ACLs in one request."),
        );
    }
    let image = broker.metadata.image();
    let mut results = Vec::with_capacity(n);
    let mut new: Vec<(AclId, Acl)> = Vec::new();
    // Indexes of the results that stand or fall with the proposal.
    let mut proposed = Vec::new();
    for c in &request.creations {
        match acl_of(c) {
            Err(message) => results.push(result(code::INVALID_REQUEST, Some(message))),
            Ok(acl) => {
                if image.acls.id_of(&acl).is_none() && new.iter().all(|(_, a)| *a != acl) {
                    let mut id = AclId(uuid::Uuid::new_v4().as_u128());
                    while image.acls.get(id).is_some() || new.iter().any(|(i, _)| *i == id) {
                        id = AclId(uuid::Uuid::new_v4().as_u128());
                    }
                    new.push((id, acl));
                }
                proposed.push(results.len());
                results.push(result(code::NONE, None));
            }
        }
    }
    if !new.is_empty() {
        let count = new.len();
        match broker
            .metadata
            .propose(Command::CreateAcls { acls: new })
            .await
        {
            Ok(_) => info!(count, "created ACLs"),
            Err(e) => {
                for i in proposed {
                    results[i] = result(meta_error_code(&e), Some(e.to_string()));
                }
            }
        }
    }
    CreateAclsResponse::default().with_results(results)
}

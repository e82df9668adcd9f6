//! AlterUserScramCredentials (v0): served by the controller (a broker forwards it as other
//! admin requests), which turns the valid changes into one all-or-nothing
//! `AlterScramCredentials` chain command.
//!
//! Owns: Kafka's checks (`ScramControlManager`), one result per user: a user named twice in a
//! request (deletion or upsertion, any mechanism) → DUPLICATE_RESOURCE; an empty name →
//! UNACCEPTABLE_CREDENTIAL; a mechanism other than SCRAM-SHA-256/512 →
//! UNSUPPORTED_SASL_MECHANISM; iterations outside 4096-16384 → UNACCEPTABLE_CREDENTIAL;
//! deleting a missing credential → RESOURCE_NOT_FOUND. The client sends salt and salted
//! password; only salt, StoredKey, ServerKey and iterations are derived and proposed.
//! Must never: store, log or echo a salted password; decide authorization (ALTER on the
//! cluster is checked before forwarding, `crate::authz`).

use std::collections::BTreeMap;
use std::sync::Arc;

use josefine_meta::scram::{
    credential_problem, ScramMechanism, SCRAM_ITERATIONS_MAX, SCRAM_ITERATIONS_MIN,
};
use josefine_meta::Command;
use kafka_protocol::messages::alter_user_scram_credentials_response::AlterUserScramCredentialsResult;
use kafka_protocol::messages::{
    AlterUserScramCredentialsRequest, AlterUserScramCredentialsResponse,
};
use tracing::info;

use super::create_topics::meta_error_code;
use super::{code, str_bytes};
use crate::broker::Broker;
use crate::security::scram;

/// Kafka's UNSUPPORTED_SASL_MECHANISM, DUPLICATE_RESOURCE, RESOURCE_NOT_FOUND and
/// UNACCEPTABLE_CREDENTIAL.
pub const UNSUPPORTED_SASL_MECHANISM: i16 = 33;
pub const DUPLICATE_RESOURCE: i16 = 92;
pub const RESOURCE_NOT_FOUND: i16 = 91;
pub const UNACCEPTABLE_CREDENTIAL: i16 = 93;

fn result(user: &str, error: Option<(i16, String)>) -> AlterUserScramCredentialsResult {
    let (error_code, message) = match error {
        Some((c, m)) => (c, Some(str_bytes(m))),
        None => (code::NONE, None),
    };
    AlterUserScramCredentialsResult::default()
        .with_user(str_bytes(user))
        .with_error_code(error_code)
        .with_error_message(message)
}

fn mechanism_of(name: &str, code: i8) -> Result<ScramMechanism, (i16, String)> {
    if name.is_empty() {
        return Err((UNACCEPTABLE_CREDENTIAL, "Username must not be empty".into()));
    }
    ScramMechanism::from_code(code)
        .ok_or_else(|| (UNSUPPORTED_SASL_MECHANISM, "Unknown SCRAM mechanism".into()))
}

/// The answer with `code` for every user the request names (each once), e.g. when it is
/// refused as a whole.
pub fn every_user(
    request: &AlterUserScramCredentialsRequest,
    code: i16,
    message: Option<&str>,
) -> AlterUserScramCredentialsResponse {
    let mut users: Vec<&str> = Vec::new();
    let names = request.deletions.iter().map(|d| d.name.as_str());
    for name in names.chain(request.upsertions.iter().map(|u| u.name.as_str())) {
        if !users.contains(&name) {
            users.push(name);
        }
    }
    AlterUserScramCredentialsResponse::default().with_results(
        users
            .into_iter()
            .map(|u| result(u, Some((code, message.unwrap_or_default().to_string()))))
            .collect(),
    )
}

/// One user's change, once it passed the checks.
enum Change {
    Delete(ScramMechanism),
    Upsert(ScramMechanism, josefine_meta::scram::ScramCredential),
}

pub async fn handle(
    broker: &Arc<Broker>,
    request: AlterUserScramCredentialsRequest,
) -> AlterUserScramCredentialsResponse {
    let image = broker.metadata.image();
    // Per user, in first-seen order: its change or its error.
    let mut order: Vec<String> = Vec::new();
    let mut outcome: BTreeMap<String, Result<Change, (i16, String)>> = BTreeMap::new();
    let duplicate = || {
        Err((
            DUPLICATE_RESOURCE,
            "A user credential cannot be altered twice in the same request".to_string(),
        ))
    };
    for d in &request.deletions {
        let name = d.name.to_string();
        let entry = match outcome.get(&name) {
            Some(Err(_)) => continue,
            Some(Ok(_)) => duplicate(),
            None => {
                order.push(name.clone());
                mechanism_of(&name, d.mechanism).and_then(|m| {
                    if image.scram.get(&name, m).is_some() {
                        Ok(Change::Delete(m))
                    } else {
                        Err((
                            RESOURCE_NOT_FOUND,
                            "Attempt to delete a user credential that does not exist".into(),
                        ))
                    }
                })
            }
        };
        outcome.insert(name, entry);
    }
    for u in &request.upsertions {
        let name = u.name.to_string();
        let entry = match outcome.get(&name) {
            Some(Err(_)) => continue,
            Some(Ok(_)) => duplicate(),
            None => {
                order.push(name.clone());
                mechanism_of(&name, u.mechanism).and_then(|m| {
                    if u.iterations < SCRAM_ITERATIONS_MIN {
                        return Err((UNACCEPTABLE_CREDENTIAL, "Too few iterations".into()));
                    }
                    if u.iterations > SCRAM_ITERATIONS_MAX {
                        return Err((UNACCEPTABLE_CREDENTIAL, "Too many iterations".into()));
                    }
                    let c =
                        scram::credential_from_salted(m, &u.salt, &u.salted_password, u.iterations);
                    match credential_problem(&name, m, &c) {
                        Some(p) => Err((UNACCEPTABLE_CREDENTIAL, p)),
                        None => Ok(Change::Upsert(m, c)),
                    }
                })
            }
        };
        outcome.insert(name, entry);
    }
    let mut upsertions = Vec::new();
    let mut deletions = Vec::new();
    for (name, o) in &outcome {
        match o {
            Ok(Change::Delete(m)) => deletions.push((name.clone(), *m)),
            Ok(Change::Upsert(m, c)) => upsertions.push((name.clone(), *m, c.clone())),
            Err(_) => {}
        }
    }
    let proposal_error = if upsertions.is_empty() && deletions.is_empty() {
        None
    } else {
        let (ups, dels) = (upsertions.len(), deletions.len());
        match broker
            .metadata
            .propose(Command::AlterScramCredentials {
                upsertions,
                deletions,
            })
            .await
        {
            Ok(_) => {
                info!(upserted = ups, deleted = dels, "altered SCRAM credentials");
                None
            }
            Err(e) => Some((meta_error_code(&e), e.to_string())),
        }
    };
    let results = order
        .iter()
        .map(|name| match &outcome[name] {
            Ok(_) => result(name, proposal_error.clone()),
            Err(e) => result(name, Some(e.clone())),
        })
        .collect();
    AlterUserScramCredentialsResponse::default().with_results(results)
}

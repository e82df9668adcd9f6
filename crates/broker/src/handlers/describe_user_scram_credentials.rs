//! DescribeUserScramCredentials (v0): each user's SCRAM mechanisms and iterations from this
//! broker's image, as Kafka's `ScramImage.describe`: no users named → every user with a
//! credential; a user named twice → DUPLICATE_RESOURCE; a user without credentials →
//! RESOURCE_NOT_FOUND. Must never: return a salt or a key.

use std::sync::Arc;

use kafka_protocol::messages::describe_user_scram_credentials_response::{
    CredentialInfo, DescribeUserScramCredentialsResult,
};
use kafka_protocol::messages::{
    DescribeUserScramCredentialsRequest, DescribeUserScramCredentialsResponse,
};

use super::alter_user_scram_credentials::{DUPLICATE_RESOURCE, RESOURCE_NOT_FOUND};
use super::str_bytes;
use crate::broker::Broker;

pub fn handle(
    broker: &Arc<Broker>,
    request: DescribeUserScramCredentialsRequest,
) -> DescribeUserScramCredentialsResponse {
    let image = broker.metadata.image();
    // (user, named twice), in first-seen order.
    let mut users: Vec<(String, bool)> = Vec::new();
    match request.users.as_deref() {
        None | Some([]) => {
            for (user, _, _) in image.scram.iter() {
                if users.last().is_none_or(|(u, _)| u != user) {
                    users.push((user.to_string(), false));
                }
            }
        }
        Some(named) => {
            for u in named {
                let name = u.name.to_string();
                match users.iter_mut().find(|(n, _)| *n == name) {
                    Some((_, twice)) => *twice = true,
                    None => users.push((name, false)),
                }
            }
        }
    }
    let results = users
        .into_iter()
        .map(|(user, twice)| {
            let result = DescribeUserScramCredentialsResult::default().with_user(str_bytes(&user));
            if twice {
                return result.with_error_code(DUPLICATE_RESOURCE).with_error_message(Some(
                    str_bytes(format!(
                        "Cannot describe SCRAM credentials for the same user twice in a single request: {user}"
                    )),
                ));
            }
            let infos: Vec<CredentialInfo> = image
                .scram
                .of_user(&user)
                .into_iter()
                .map(|(m, iterations)| {
                    CredentialInfo::default()
                        .with_mechanism(m.code())
                        .with_iterations(iterations)
                })
                .collect();
            if infos.is_empty() {
                result.with_error_code(RESOURCE_NOT_FOUND).with_error_message(Some(str_bytes(
                    format!("Attempt to describe a user credential that does not exist: {user}"),
                )))
            } else {
                result.with_credential_infos(infos)
            }
        })
        .collect();
    DescribeUserScramCredentialsResponse::default().with_results(results)
}

//! `--add-scram`: SCRAM credentials given at start, in the syntax of Kafka's
//! `kafka-storage format --add-scram` (`SCRAM-SHA-512=[name=admin,password=admin-secret]`,
//! optionally `iterations=8192`, `salt="<base64>"`, or `saltedpassword="<base64>"` with a salt
//! instead of a password), stored once through the controller if that user has no credential
//! for that mechanism yet.
//!
//! Owns: parsing the flag (errors name the flag, never the password) and the start-up task that
//! applies each seed with an AlterUserScramCredentials request to the controller.
//! Must never: log a password, salt or salted password; replace a credential that exists (a
//! password changed later with kafka-configs stays changed across restarts).

use std::sync::Arc;
use std::time::Duration;

use base64ct::{Base64, Encoding};
use josefine_meta::scram::{ScramMechanism, SCRAM_ITERATIONS_MAX, SCRAM_ITERATIONS_MIN};
use kafka_protocol::messages::alter_user_scram_credentials_request::ScramCredentialUpsertion;
use kafka_protocol::messages::{AlterUserScramCredentialsRequest, RequestKind, ResponseKind};
use tracing::{info, warn};

use super::scram;
use crate::broker::Broker;
use crate::handlers::str_bytes;

/// Iterations when the seed names none (Kafka's `kafka-storage` default).
pub const SEED_ITERATIONS_DEFAULT: i32 = 4096;
/// How long the start-up task keeps trying to reach a controller.
const SEED_APPLY_DEADLINE_MS: u64 = 120_000;
/// Pause between its tries.
const SEED_RETRY_PAUSE_MS: u64 = 250;

/// One `--add-scram` credential: the salted password is derived at parse time, so the password
/// itself is not kept.
#[derive(Clone, PartialEq, Eq)]
pub struct ScramSeed {
    pub mechanism: ScramMechanism,
    pub name: String,
    pub salt: Vec<u8>,
    pub salted_password: Vec<u8>,
    pub iterations: i32,
}

impl std::fmt::Debug for ScramSeed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ScramSeed")
            .field("mechanism", &self.mechanism)
            .field("name", &self.name)
            .field("iterations", &self.iterations)
            .finish_non_exhaustive()
    }
}

/// `key=value` pairs separated by commas; values may be double-quoted (then `,` and `]` are
/// literal and `\"` escapes a quote).
fn pairs(body: &str) -> Result<Vec<(String, String)>, String> {
    let mut out = Vec::new();
    let mut chars = body.chars().peekable();
    loop {
        let mut key = String::new();
        for c in chars.by_ref() {
            if c == '=' {
                break;
            }
            key.push(c);
        }
        let key = key.trim().to_ascii_lowercase();
        if key.is_empty() {
            return Err("expected key=value".into());
        }
        let mut value = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            let mut closed = false;
            while let Some(c) = chars.next() {
                match c {
                    '\\' => value.extend(chars.next()),
                    '"' => {
                        closed = true;
                        break;
                    }
                    c => value.push(c),
                }
            }
            if !closed {
                return Err(format!("unterminated quoted value of {key}"));
            }
            match chars.next() {
                None => {
                    out.push((key, value));
                    return Ok(out);
                }
                Some(',') => {}
                Some(_) => return Err(format!("expected `,` after the value of {key}")),
            }
        } else {
            let mut end = true;
            for c in chars.by_ref() {
                if c == ',' {
                    end = false;
                    break;
                }
                value.push(c);
            }
            if end {
                out.push((key, value));
                return Ok(out);
            }
        }
        out.push((key, value));
    }
}

/// Parses one `--add-scram` value; the error never holds the password.
pub fn parse_seed(text: &str) -> Result<ScramSeed, String> {
    let (mechanism, rest) = text
        .split_once('=')
        .ok_or("expected SCRAM-SHA-256=[name=...,password=...] or SCRAM-SHA-512=[...]")?;
    let mechanism = ScramMechanism::from_name(mechanism.trim()).ok_or_else(|| {
        format!(
            "unknown mechanism {} (SCRAM-SHA-256 or SCRAM-SHA-512)",
            mechanism.trim()
        )
    })?;
    let body = rest
        .trim()
        .strip_prefix('[')
        .and_then(|r| r.strip_suffix(']'))
        .ok_or("the credential is written in brackets: [name=...,password=...]")?;
    let mut name = None;
    let mut password = None;
    let mut salt = None;
    let mut salted = None;
    let mut iterations = SEED_ITERATIONS_DEFAULT;
    for (k, v) in pairs(body)? {
        match k.as_str() {
            "name" => name = Some(v),
            "password" => password = Some(v),
            "salt" => {
                salt = Some(Base64::decode_vec(&v).map_err(|_| "salt is not base64".to_string())?)
            }
            "saltedpassword" => {
                salted = Some(
                    Base64::decode_vec(&v)
                        .map_err(|_| "saltedpassword is not base64".to_string())?,
                )
            }
            "iterations" => {
                iterations = v
                    .parse()
                    .map_err(|_| format!("iterations {v} is not a number"))?
            }
            other => return Err(format!("unknown key {other}")),
        }
    }
    let name = name.filter(|n| !n.is_empty()).ok_or("name= is required")?;
    if !(SCRAM_ITERATIONS_MIN..=SCRAM_ITERATIONS_MAX).contains(&iterations) {
        return Err(format!(
            "iterations {iterations} not in [{SCRAM_ITERATIONS_MIN}, {SCRAM_ITERATIONS_MAX}]"
        ));
    }
    let (salt, salted_password) = match (password, salted) {
        (Some(p), None) => {
            let salt = salt.unwrap_or_else(|| scram::random_bytes(scram::SALT_BYTES));
            let salted = scram::salted_password(mechanism, p.as_bytes(), &salt, iterations as u32);
            (salt, salted)
        }
        (None, Some(s)) => (salt.ok_or("saltedpassword= needs salt=")?, s),
        _ => return Err("give exactly one of password= and saltedpassword=".into()),
    };
    if salt.is_empty() {
        return Err("empty salt".into());
    }
    Ok(ScramSeed {
        mechanism,
        name,
        salt,
        salted_password,
        iterations,
    })
}

/// Stores each seed whose (user, mechanism) has no credential yet, through the controller;
/// retries until a controller answers (the task runs beside the listeners).
pub async fn apply_seeds(broker: Arc<Broker>, seeds: Vec<ScramSeed>) {
    let give_up = tokio::time::Instant::now() + Duration::from_millis(SEED_APPLY_DEADLINE_MS);
    for seed in seeds {
        loop {
            if broker
                .metadata
                .image()
                .scram
                .get(&seed.name, seed.mechanism)
                .is_some()
            {
                break;
            }
            let request = AlterUserScramCredentialsRequest::default().with_upsertions(vec![
                ScramCredentialUpsertion::default()
                    .with_name(str_bytes(seed.name.as_str()))
                    .with_mechanism(seed.mechanism.code())
                    .with_iterations(seed.iterations)
                    .with_salt(seed.salt.clone().into())
                    .with_salted_password(seed.salted_password.clone().into()),
            ]);
            let deadline = tokio::time::Instant::now() + Duration::from_millis(5_000);
            let answer = crate::controller::forward::call_controller(
                &broker,
                0,
                RequestKind::AlterUserScramCredentials(request),
                deadline,
            )
            .await;
            match answer {
                Ok((ResponseKind::AlterUserScramCredentials(r), _))
                    if r.results.iter().all(|r| r.error_code == 0) =>
                {
                    info!(user = %seed.name, mechanism = seed.mechanism.name(), "stored the --add-scram credential");
                    break;
                }
                Ok((ResponseKind::AlterUserScramCredentials(r), _))
                    if r.results
                        .iter()
                        .any(|r| r.error_code != 41 && r.error_code != 7) =>
                {
                    let e = r.results.first().map(|r| r.error_code).unwrap_or(-1);
                    warn!(user = %seed.name, "the controller refused the --add-scram credential: error {e}");
                    break;
                }
                _ => {}
            }
            if tokio::time::Instant::now() >= give_up {
                warn!(user = %seed.name, "could not store the --add-scram credential: no controller answered");
                break;
            }
            tokio::time::sleep(Duration::from_millis(SEED_RETRY_PAUSE_MS)).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seeds_parse_as_kafka_storage_writes_them() {
        let s = parse_seed("SCRAM-SHA-512=[name=admin,password=admin-secret]").unwrap();
        assert_eq!(s.mechanism, ScramMechanism::Sha512);
        assert_eq!(s.name, "admin");
        assert_eq!(s.iterations, 4096);
        assert_eq!(s.salt.len(), scram::SALT_BYTES);
        assert_eq!(
            s.salted_password,
            scram::salted_password(ScramMechanism::Sha512, b"admin-secret", &s.salt, 4096)
        );
        let s = parse_seed(
            r#"SCRAM-SHA-256=[name=alice,iterations=8192,salt="MWx0ZXN0",password="a,b]\"c"]"#,
        )
        .unwrap();
        assert_eq!(s.iterations, 8192);
        assert_eq!(s.salt, b"1ltest");
        assert_eq!(
            s.salted_password,
            scram::salted_password(ScramMechanism::Sha256, br#"a,b]"c"#, b"1ltest", 8192)
        );
        let s = parse_seed(r#"SCRAM-SHA-256=[name=bob,salt="MWx0ZXN0",saltedpassword="AAEC"]"#)
            .unwrap();
        assert_eq!(s.salted_password, vec![0, 1, 2]);
        for bad in [
            "SCRAM-SHA-1=[name=a,password=b]",
            "SCRAM-SHA-256=name=a,password=b",
            "SCRAM-SHA-256=[password=b]",
            "SCRAM-SHA-256=[name=a]",
            "SCRAM-SHA-256=[name=a,password=b,iterations=100]",
            "SCRAM-SHA-256=[name=a,password=b,color=red]",
            "SCRAM-SHA-256=[name=a,saltedpassword=\"AAEC\"]",
            "SCRAM-SHA-256=[name=a,password=\"b]",
        ] {
            let e = parse_seed(bad).unwrap_err();
            assert!(!e.contains("password=b"), "{e}");
        }
        assert!(!format!(
            "{:?}",
            parse_seed("SCRAM-SHA-256=[name=a,password=hunter2]").unwrap()
        )
        .contains("salt"));
    }
}

//! SASL on `SASL_PLAINTEXT` and `SASL_SSL` listeners: the mechanisms a listener enables, the
//! server side of PLAIN, and one connection's exchange ([`Exchange`], PLAIN or SCRAM).
//!
//! Owns: `sasl.enabled.mechanisms` (PLAIN, SCRAM-SHA-256, SCRAM-SHA-512; GSSAPI and
//! OAUTHBEARER refused as unsupported), the PLAIN users of
//! `listener.name.<l>.plain.sasl.jaas.config` (only `PlainLoginModule required
//! user_<name>="<password>" ...;` is parsed; needed only when PLAIN is enabled), and checking
//! one PLAIN token (`authzid NUL username NUL password`) with Kafka's messages. Passwords are
//! compared in constant time (subtle). SCRAM credentials come from the metadata image (the
//! SCRAM math: `super::scram`).
//! Must never: log or put in an error a password or a token.

use std::collections::HashMap;

use subtle::ConstantTimeEq;

use josefine_meta::scram::{ScramIndex, ScramMechanism};

use super::listeners::ListenerConfig;
use super::scram::{self, ScramServer, Step};
use crate::config::ConfigError;

/// Kafka's answer to a wrong PLAIN username or password.
pub const PLAIN_FAILED: &str = "Authentication failed: Invalid username or password";

/// The SASL settings a listener may have (also per listener as `listener.name.<l>.<key>`).
pub const KEYS: &[&str] = &[
    "sasl.enabled.mechanisms",
    "plain.sasl.jaas.config",
    "sasl.mechanism.inter.broker.protocol",
];

/// A SASL mechanism this broker serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mechanism {
    Plain,
    Scram(ScramMechanism),
}

impl Mechanism {
    pub fn name(self) -> &'static str {
        match self {
            Mechanism::Plain => "PLAIN",
            Mechanism::Scram(m) => m.name(),
        }
    }
}

/// What a connection's exchange answers to one client token.
#[derive(Debug)]
pub enum Outcome {
    /// Send this challenge and wait for the next token.
    Continue(Vec<u8>),
    /// Authenticated as `user`; send `token` (possibly empty).
    Done { user: String, token: Vec<u8> },
    /// Failed: answer Kafka's `message`; `reason` is for the log (never a secret).
    Failed { message: String, reason: String },
}

/// The server secret unknown SCRAM users' salts derive from: random per process (so such a
/// salt is stable while the broker runs, and differs between brokers and restarts).
fn server_secret() -> &'static [u8] {
    static SECRET: std::sync::OnceLock<Vec<u8>> = std::sync::OnceLock::new();
    SECRET.get_or_init(|| scram::random_bytes(32))
}

/// One connection's SASL exchange for the mechanism its handshake chose.
pub enum Exchange {
    Plain,
    Scram(ScramServer),
}

impl std::fmt::Debug for Exchange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Exchange::Plain => f.write_str("Exchange::Plain"),
            Exchange::Scram(s) => write!(f, "Exchange::Scram({})", s.mechanism().name()),
        }
    }
}

impl Exchange {
    pub fn new(mechanism: Mechanism) -> Exchange {
        match mechanism {
            Mechanism::Plain => Exchange::Plain,
            Mechanism::Scram(m) => Exchange::Scram(ScramServer::new(m)),
        }
    }

    /// Handles one client token; `credentials` is the current image's SCRAM index.
    pub fn step(&mut self, sasl: &SaslServer, token: &[u8], credentials: &ScramIndex) -> Outcome {
        match self {
            Exchange::Plain => match sasl.authenticate_plain(token) {
                Ok(user) => Outcome::Done {
                    user,
                    token: Vec::new(),
                },
                Err(message) => Outcome::Failed {
                    message: message.to_string(),
                    reason: message.to_string(),
                },
            },
            Exchange::Scram(server) => {
                let m = server.mechanism();
                let lookup = |user: &str| credentials.get(user, m).cloned();
                match server.step(token, lookup, &scram::server_nonce(), server_secret()) {
                    Ok(Step::Challenge(c)) => Outcome::Continue(c),
                    Ok(Step::Done { user, server_final }) => Outcome::Done {
                        user,
                        token: server_final,
                    },
                    Err(f) => Outcome::Failed {
                        message: f.message,
                        reason: f.reason.to_string(),
                    },
                }
            }
        }
    }
}

/// A SASL listener's mechanisms and PLAIN users.
#[derive(Clone)]
pub struct SaslServer {
    pub mechanisms: Vec<Mechanism>,
    plain_users: HashMap<String, String>,
}

impl std::fmt::Debug for SaslServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SaslServer")
            .field("mechanisms", &self.mechanisms)
            .field("plain_users", &self.plain_users.len())
            .finish()
    }
}

fn invalid(key: &str, value: &str, reason: impl Into<String>) -> ConfigError {
    ConfigError::InvalidValue {
        key: key.to_string(),
        value: value.to_string(),
        reason: reason.into(),
    }
}

/// The `user_<name>="<password>"` options of a `PlainLoginModule` JAAS entry.
pub fn parse_plain_jaas(text: &str) -> Result<HashMap<String, String>, String> {
    let text = text.trim();
    let rest = text
        .strip_prefix("org.apache.kafka.common.security.plain.PlainLoginModule")
        .ok_or("expected org.apache.kafka.common.security.plain.PlainLoginModule required ...;")?;
    let rest = rest.trim_start();
    let rest = ["required", "requisite", "sufficient", "optional"]
        .iter()
        .find_map(|f| rest.strip_prefix(f))
        .ok_or("expected a control flag (required) after the login module")?;
    let rest = rest
        .trim_end()
        .strip_suffix(';')
        .ok_or("a JAAS entry ends with `;`")?;
    let mut users = HashMap::new();
    let mut chars = rest.trim().char_indices().peekable();
    let body = rest.trim();
    while let Some((start, c)) = chars.next() {
        if c.is_whitespace() {
            continue;
        }
        // name=value, value quoted or bare.
        let mut end = start;
        while let Some((i, c)) = chars.peek().copied() {
            if c == '=' {
                end = i;
                break;
            }
            chars.next();
        }
        if end == start || chars.next().is_none() {
            return Err("expected name=\"value\" options".into());
        }
        let name = body[start..end].trim();
        let mut value = String::new();
        if chars.peek().map(|(_, c)| *c) == Some('"') {
            chars.next();
            let mut closed = false;
            while let Some((_, c)) = chars.next() {
                match c {
                    '\\' => {
                        if let Some((_, e)) = chars.next() {
                            value.push(e);
                        }
                    }
                    '"' => {
                        closed = true;
                        break;
                    }
                    c => value.push(c),
                }
            }
            if !closed {
                return Err(format!("unterminated value of {name}"));
            }
        } else {
            while let Some((_, c)) = chars.peek().copied() {
                if c.is_whitespace() {
                    break;
                }
                value.push(c);
                chars.next();
            }
        }
        if let Some(user) = name.strip_prefix("user_") {
            users.insert(user.to_string(), value);
        }
    }
    Ok(users)
}

impl SaslServer {
    /// Builds listener `l`'s SASL side from its settings; errors name the setting.
    pub fn from_listener(l: &ListenerConfig) -> Result<SaslServer, ConfigError> {
        let key = format!(
            "listener.name.{}.sasl.enabled.mechanisms",
            l.name.to_ascii_lowercase()
        );
        let given = l.get("sasl.enabled.mechanisms").unwrap_or("GSSAPI");
        let mut mechanisms = Vec::new();
        for m in given.split(',').map(str::trim).filter(|m| !m.is_empty()) {
            match m.to_ascii_uppercase().as_str() {
                "PLAIN" => mechanisms.push(Mechanism::Plain),
                "SCRAM-SHA-256" => mechanisms.push(Mechanism::Scram(ScramMechanism::Sha256)),
                "SCRAM-SHA-512" => mechanisms.push(Mechanism::Scram(ScramMechanism::Sha512)),
                other @ ("GSSAPI" | "OAUTHBEARER") => {
                    return Err(invalid(
                        &key,
                        given,
                        format!(
                            "{other} is not supported (PLAIN, SCRAM-SHA-256 and SCRAM-SHA-512 are)"
                        ),
                    ))
                }
                other => return Err(invalid(&key, given, format!("unknown mechanism {other}"))),
            }
        }
        if mechanisms.is_empty() {
            return Err(invalid(
                &key,
                given,
                format!(
                    "listener {} uses {} and enables no mechanism",
                    l.name,
                    l.protocol.name()
                ),
            ));
        }
        let jaas_key = format!(
            "listener.name.{}.plain.sasl.jaas.config",
            l.name.to_ascii_lowercase()
        );
        let plain_users = match l.get("plain.sasl.jaas.config") {
            Some(text) => parse_plain_jaas(text).map_err(|e| invalid(&jaas_key, "(hidden)", e))?,
            None if !mechanisms.contains(&Mechanism::Plain) => HashMap::new(),
            None => {
                return Err(invalid(
                    &jaas_key,
                    "",
                    "PLAIN needs its users: org.apache.kafka.common.security.plain.PlainLoginModule required user_<name>=\"<password>\";",
                ))
            }
        };
        Ok(SaslServer {
            mechanisms,
            plain_users,
        })
    }

    /// The enabled mechanism named `name`.
    pub fn mechanism(&self, name: &str) -> Option<Mechanism> {
        self.mechanisms.iter().copied().find(|m| m.name() == name)
    }

    /// Checks one PLAIN token: the authenticated user name, or Kafka's failure message.
    pub fn authenticate_plain(&self, token: &[u8]) -> Result<String, &'static str> {
        let mut parts = token.split(|b| *b == 0);
        let (Some(authzid), Some(user), Some(password), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err("Invalid SASL/PLAIN response: expected 3 tokens");
        };
        let (Ok(authzid), Ok(user)) = (std::str::from_utf8(authzid), std::str::from_utf8(user))
        else {
            return Err(PLAIN_FAILED);
        };
        if user.is_empty() {
            return Err("Authentication failed: username not specified");
        }
        if password.is_empty() {
            return Err("Authentication failed: password not specified");
        }
        if !authzid.is_empty() && authzid != user {
            return Err(
                "Authentication failed: Client requested an authorization id that is different from username",
            );
        }
        let expected = self.plain_users.get(user).map(String::as_bytes);
        // Compare against something of the same shape for unknown users too.
        let ok = match expected {
            Some(e) => e.ct_eq(password).into(),
            None => {
                let _ = password.ct_eq(password);
                false
            }
        };
        if ok {
            Ok(user.to_string())
        } else {
            Err(PLAIN_FAILED)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_jaas_users_parse() {
        let users = parse_plain_jaas(
            r#"org.apache.kafka.common.security.plain.PlainLoginModule required username="admin" password="admin-secret" user_admin="admin-secret" user_alice="a \"q\" b";"#,
        )
        .unwrap();
        assert_eq!(users.len(), 2);
        assert_eq!(users["admin"], "admin-secret");
        assert_eq!(users["alice"], r#"a "q" b"#);
        for bad in [
            "PlainLoginModule required;",
            "org.apache.kafka.common.security.plain.PlainLoginModule user_a=\"b\";",
            "org.apache.kafka.common.security.plain.PlainLoginModule required user_a=\"b\"",
            "org.apache.kafka.common.security.plain.PlainLoginModule required user_a=\"b;",
        ] {
            assert!(parse_plain_jaas(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn plain_tokens_as_kafka() {
        let s = SaslServer {
            mechanisms: vec![Mechanism::Plain],
            plain_users: [("alice".to_string(), "pw".to_string())].into(),
        };
        assert_eq!(s.authenticate_plain(b"\0alice\0pw").unwrap(), "alice");
        assert_eq!(s.authenticate_plain(b"alice\0alice\0pw").unwrap(), "alice");
        assert_eq!(s.authenticate_plain(b"\0alice\0bad"), Err(PLAIN_FAILED));
        assert_eq!(s.authenticate_plain(b"\0bob\0pw"), Err(PLAIN_FAILED));
        assert!(s
            .authenticate_plain(b"bob\0alice\0pw")
            .unwrap_err()
            .contains("authorization id"));
        assert!(s.authenticate_plain(b"\0alice").is_err());
        assert!(s.authenticate_plain(b"\0alice\0pw\0x").is_err());
    }
}

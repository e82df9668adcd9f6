//! Who is on the other end of a client connection, and the listeners they come in through.
//!
//! Owns: the [`Caller`] every request is handled for (listener, principal, peer), the
//! security protocols, and the parsed listener configuration ([`listeners`]). The connection
//! (`crate::connection`) builds the caller once its handshakes are done and hands it to
//! `dispatch`, which makes it the current caller of the request's task
//! ([`with_caller`]), so a handler deep down can ask which listener a request came in on
//! ([`current`]) without every signature carrying it.
//! Must never: hold or log a secret (passwords, keys, tokens) in a `Debug` or `Display` form.

pub mod connections;
pub mod credentials;
pub mod listeners;
pub mod principal;
pub mod sasl;
pub mod scram;
pub mod tls;

use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;

pub use listeners::{ListenerConfig, SecurityConfig};

/// Kafka's security protocols, with their wire ids (BrokerRegistration, DescribeCluster).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SecurityProtocol {
    Plaintext,
    Ssl,
    SaslPlaintext,
    SaslSsl,
}

impl SecurityProtocol {
    /// Kafka's name (`listener.security.protocol.map` values).
    pub fn name(self) -> &'static str {
        match self {
            SecurityProtocol::Plaintext => "PLAINTEXT",
            SecurityProtocol::Ssl => "SSL",
            SecurityProtocol::SaslPlaintext => "SASL_PLAINTEXT",
            SecurityProtocol::SaslSsl => "SASL_SSL",
        }
    }

    /// Parses Kafka's name, case-insensitively as Kafka does.
    pub fn parse(name: &str) -> Option<SecurityProtocol> {
        Some(match name.to_ascii_uppercase().as_str() {
            "PLAINTEXT" => SecurityProtocol::Plaintext,
            "SSL" => SecurityProtocol::Ssl,
            "SASL_PLAINTEXT" => SecurityProtocol::SaslPlaintext,
            "SASL_SSL" => SecurityProtocol::SaslSsl,
            _ => return None,
        })
    }

    /// Kafka's id (`SecurityProtocol.id`).
    pub fn id(self) -> i16 {
        match self {
            SecurityProtocol::Plaintext => 0,
            SecurityProtocol::Ssl => 1,
            SecurityProtocol::SaslPlaintext => 2,
            SecurityProtocol::SaslSsl => 3,
        }
    }

    /// TLS on the wire.
    pub fn uses_tls(self) -> bool {
        matches!(self, SecurityProtocol::Ssl | SecurityProtocol::SaslSsl)
    }

    /// SASL authentication before any other request.
    pub fn uses_sasl(self) -> bool {
        matches!(
            self,
            SecurityProtocol::SaslPlaintext | SecurityProtocol::SaslSsl
        )
    }
}

/// A Kafka principal (`KafkaPrincipal`): a type (always `User` here) and a name. Displays as
/// Kafka prints it, `User:alice`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Principal {
    pub kind: String,
    pub name: String,
}

impl Principal {
    /// `User:ANONYMOUS`: an unauthenticated connection (PLAINTEXT, or SSL without a client
    /// certificate), as in Kafka.
    pub fn anonymous() -> Principal {
        Principal::user("ANONYMOUS")
    }

    /// `User:<name>`.
    pub fn user(name: impl Into<String>) -> Principal {
        Principal {
            kind: "User".to_string(),
            name: name.into(),
        }
    }
}

impl fmt::Display for Principal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.kind, self.name)
    }
}

/// Who a request is handled for: the listener it came in on, the authenticated principal and
/// the peer address. One per connection, fixed once its handshakes are done.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    /// The listener name, upper case (`PLAINTEXT`, `SASL_SSL`, `INTERNAL`, ...).
    pub listener: Arc<str>,
    pub security_protocol: SecurityProtocol,
    pub principal: Principal,
    /// The client's address (None for in-process callers, e.g. tests).
    pub peer: Option<SocketAddr>,
}

impl Caller {
    /// An anonymous caller on listener `listener`.
    pub fn anonymous(
        listener: &str,
        security_protocol: SecurityProtocol,
        peer: Option<SocketAddr>,
    ) -> Caller {
        Caller {
            listener: Arc::from(listener),
            security_protocol,
            principal: Principal::anonymous(),
            peer,
        }
    }
}

tokio::task_local! {
    static CURRENT: Arc<Caller>;
}

/// Runs `f` with `caller` as the current caller (see [`current`]).
pub async fn with_caller<F: std::future::Future>(caller: Arc<Caller>, f: F) -> F::Output {
    CURRENT.scope(caller, f).await
}

/// The caller of the request this task is handling, if it came through a connection (None
/// for in-process requests: tests, the controller's own calls).
pub fn current() -> Option<Arc<Caller>> {
    CURRENT.try_with(Arc::clone).ok()
}

/// The endpoint clients of the current request are given for `broker`: the one of the
/// listener the request came in on (None if that broker has no such listener: it is left out,
/// as in Kafka). In-process requests get the registration's own endpoint.
pub fn client_endpoint(broker: &josefine_meta::BrokerRegistration) -> Option<(String, i32)> {
    let endpoint = match current() {
        Some(caller) => broker.endpoint(&caller.listener),
        None => Some((broker.host.as_str(), broker.port)),
    };
    endpoint.map(|(h, p)| (h.to_string(), p))
}

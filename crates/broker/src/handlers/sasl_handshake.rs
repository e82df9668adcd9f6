//! SaslHandshake (v0-1) outside a connection's authentication: on a listener without SASL, or
//! after a connection authenticated, Kafka answers ILLEGAL_SASL_STATE. The handshake itself is
//! the connection's (`crate::connection`, `crate::security::sasl`): it holds the state.

use kafka_protocol::messages::{SaslHandshakeRequest, SaslHandshakeResponse};

/// Kafka's ILLEGAL_SASL_STATE.
pub const ILLEGAL_SASL_STATE: i16 = 34;

pub fn handle(_request: SaslHandshakeRequest) -> SaslHandshakeResponse {
    SaslHandshakeResponse::default().with_error_code(ILLEGAL_SASL_STATE)
}

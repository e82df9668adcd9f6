//! SaslAuthenticate (v0-2) outside a connection's authentication: ILLEGAL_SASL_STATE, as Kafka
//! answers on a listener without SASL or after authentication. The exchange itself is the
//! connection's (`crate::connection`, `crate::security::sasl`).

use kafka_protocol::messages::{SaslAuthenticateRequest, SaslAuthenticateResponse};
use kafka_protocol::protocol::StrBytes;

use super::sasl_handshake::ILLEGAL_SASL_STATE;

pub fn handle(_request: SaslAuthenticateRequest) -> SaslAuthenticateResponse {
    SaslAuthenticateResponse::default()
        .with_error_code(ILLEGAL_SASL_STATE)
        .with_error_message(Some(StrBytes::from_static_str(
            "Unexpected SASL authentication: this connection is not authenticating",
        )))
}

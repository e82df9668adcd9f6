//! InitProducerId for idempotent producers.
//!
//! Without a transactional id, Kafka (TransactionCoordinator.handleInitProducerId) always hands
//! out a *new* producer id with epoch 0, even when the client passes its current id and epoch
//! (KIP-360 epoch bumps apply to transactional producers only); we do the same. Ids come from a
//! block allocated through the metadata state machine, so brokers of a future cluster never
//! hand out the same id.
//! With a transactional id the answer is TRANSACTIONAL_ID_AUTHORIZATION_FAILED until
//! transactions exist: Java clients and librdkafka treat it as fatal with a clear message,
//! whereas COORDINATOR_NOT_AVAILABLE would make them retry until their timeout.

use std::sync::Arc;

use kafka_protocol::messages::{InitProducerIdRequest, InitProducerIdResponse, ProducerId};
use tracing::warn;

use super::code;
use crate::broker::Broker;

pub async fn handle(
    broker: &Arc<Broker>,
    request: InitProducerIdRequest,
) -> InitProducerIdResponse {
    let failed = |error| {
        InitProducerIdResponse::default()
            .with_error_code(error)
            .with_producer_id(ProducerId(-1))
            .with_producer_epoch(-1)
    };
    if request.transactional_id.is_some() {
        return failed(code::TRANSACTIONAL_ID_AUTHORIZATION_FAILED);
    }
    match broker.allocate_producer_id().await {
        Ok(id) => InitProducerIdResponse::default()
            .with_error_code(code::NONE)
            .with_producer_id(ProducerId(id))
            .with_producer_epoch(0),
        Err(e) => {
            warn!("producer id allocation failed: {e}");
            failed(code::COORDINATOR_NOT_AVAILABLE)
        }
    }
}

//! InitProducerId for idempotent producers.
//!
//! Without a transactional id, Kafka (TransactionCoordinator.handleInitProducerId) always hands
//! out a *new* producer id with epoch 0, even when the client passes its current id and epoch
//! (KIP-360 epoch bumps apply to transactional producers only); we do the same. Ids come from a
//! block allocated through the metadata state machine, so brokers of a future cluster never
//! hand out the same id.
//! With a transactional id the request goes to the transaction coordinator (`crate::txn`),
//! which owns every rule of it (epoch bumps, fencing, KIP-360).

use std::sync::Arc;

use josefine_txn::{TxnRequest, TxnResponse};
use kafka_protocol::messages::{InitProducerIdRequest, InitProducerIdResponse, ProducerId};
use tracing::warn;

use super::code;
use crate::broker::Broker;

/// The answer; `None` when the transaction coordinator is shutting down (the connection
/// closes).
pub async fn handle(
    broker: &Arc<Broker>,
    version: i16,
    request: InitProducerIdRequest,
) -> Option<InitProducerIdResponse> {
    let failed = |error| {
        InitProducerIdResponse::default()
            .with_error_code(error)
            .with_producer_id(ProducerId(-1))
            .with_producer_epoch(-1)
    };
    if request.transactional_id.is_some() {
        let request = TxnRequest::InitProducerId(request);
        return match broker
            .txn()
            .call(version, Default::default(), request)
            .await?
        {
            TxnResponse::InitProducerId(r) => Some(r),
            other => unreachable!("InitProducerId answered with {other:?}"),
        };
    }
    Some(match broker.allocate_producer_id().await {
        Ok(id) => InitProducerIdResponse::default()
            .with_error_code(code::NONE)
            .with_producer_id(ProducerId(id))
            .with_producer_epoch(0),
        Err(e) => {
            warn!("producer id allocation failed: {e}");
            failed(code::COORDINATOR_NOT_AVAILABLE)
        }
    })
}

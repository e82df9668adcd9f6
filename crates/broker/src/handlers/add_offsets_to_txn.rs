//! AddOffsetsToTxn: adds the group's `__consumer_offsets` partition to the producer's
//! transaction (`sendOffsetsToTransaction`), through the transaction coordinator, which owns
//! every rule of it.

use std::sync::Arc;

use josefine_txn::{TxnRequest, TxnResponse};
use kafka_protocol::messages::{AddOffsetsToTxnRequest, AddOffsetsToTxnResponse};

use crate::broker::Broker;

/// The coordinator's answer; `None` when it is shutting down (the connection closes).
pub async fn handle(
    broker: &Arc<Broker>,
    version: i16,
    request: AddOffsetsToTxnRequest,
) -> Option<AddOffsetsToTxnResponse> {
    let request = TxnRequest::AddOffsetsToTxn(request);
    match broker
        .txn()
        .call(version, Default::default(), request)
        .await?
    {
        TxnResponse::AddOffsetsToTxn(r) => Some(r),
        other => unreachable!("AddOffsetsToTxn answered with {other:?}"),
    }
}

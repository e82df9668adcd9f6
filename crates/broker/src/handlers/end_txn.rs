//! EndTxn: commit or abort the producer's transaction, through the transaction coordinator
//! (answered once Prepare* is durable; the markers follow, then Complete*).

use std::sync::Arc;

use josefine_txn::{TxnRequest, TxnResponse};
use kafka_protocol::messages::{EndTxnRequest, EndTxnResponse};

use crate::broker::Broker;

/// The coordinator's answer; `None` when it is shutting down (the connection closes).
pub async fn handle(
    broker: &Arc<Broker>,
    version: i16,
    request: EndTxnRequest,
) -> Option<EndTxnResponse> {
    let request = TxnRequest::EndTxn(request);
    match broker
        .txn()
        .call(version, Default::default(), request)
        .await?
    {
        TxnResponse::EndTxn(r) => Some(r),
        other => unreachable!("EndTxn answered with {other:?}"),
    }
}

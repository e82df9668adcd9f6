//! DescribeTransactions (v0) and ListTransactions (v0-2): the transaction coordinator's view
//! of the ids it serves (Kafka's state names; an id it does not serve is
//! TRANSACTIONAL_ID_NOT_FOUND or NOT_COORDINATOR, as in Kafka). The admin client asks every
//! broker for ListTransactions and each answers for the `__transaction_state` partitions it
//! leads. Every rule lives in `josefine_txn`.

use std::sync::Arc;

use josefine_txn::{TxnRequest, TxnResponse};
use kafka_protocol::messages::{
    DescribeTransactionsRequest, DescribeTransactionsResponse, ListTransactionsRequest,
    ListTransactionsResponse,
};

use crate::broker::Broker;

/// DescribeTransactions; `None` when the coordinator is shutting down.
pub async fn describe(
    broker: &Arc<Broker>,
    version: i16,
    request: DescribeTransactionsRequest,
) -> Option<DescribeTransactionsResponse> {
    let request = TxnRequest::DescribeTransactions(request);
    match broker
        .txn()
        .call(version, Default::default(), request)
        .await?
    {
        TxnResponse::DescribeTransactions(r) => Some(r),
        other => unreachable!("DescribeTransactions answered with {other:?}"),
    }
}

/// ListTransactions; `None` when the coordinator is shutting down.
pub async fn list(
    broker: &Arc<Broker>,
    version: i16,
    request: ListTransactionsRequest,
) -> Option<ListTransactionsResponse> {
    let request = TxnRequest::ListTransactions(request);
    match broker
        .txn()
        .call(version, Default::default(), request)
        .await?
    {
        TxnResponse::ListTransactions(r) => Some(r),
        other => unreachable!("ListTransactions answered with {other:?}"),
    }
}

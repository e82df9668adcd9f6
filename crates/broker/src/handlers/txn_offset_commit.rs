//! TxnOffsetCommit: offsets committed inside a producer's transaction
//! (`sendOffsetsToTransaction`), handed to the group coordinator, which keeps them pending
//! until the transaction's marker reaches the group's `__consumer_offsets` partition
//! (`write_txn_markers` tells it).

use std::net::SocketAddr;
use std::sync::Arc;

use josefine_group::{GroupRequest, GroupResponse};
use kafka_protocol::messages::{TxnOffsetCommitRequest, TxnOffsetCommitResponse};

use crate::broker::Broker;
use crate::groups::GroupCaller;

/// The coordinator's answer; `None` when it is shutting down (the connection closes).
pub async fn handle(
    broker: &Arc<Broker>,
    version: i16,
    client_id: Option<&str>,
    peer: Option<SocketAddr>,
    request: TxnOffsetCommitRequest,
) -> Option<TxnOffsetCommitResponse> {
    let caller = GroupCaller {
        api_version: version,
        client_id: client_id.unwrap_or_default().to_string(),
        peer,
    };
    let request = GroupRequest::TxnOffsetCommit(request);
    match broker.groups().call(caller, request).await? {
        GroupResponse::TxnOffsetCommit(r) => Some(r),
        other => unreachable!("TxnOffsetCommit answered with {other:?}"),
    }
}

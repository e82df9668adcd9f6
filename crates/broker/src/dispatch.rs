//! Routes a decoded request to its handler and frames the response.
//!
//! Owns: the match from API to handler, and turning handler results into a [`Reply`]. Must
//! never: contain API logic (that lives in `handlers/`).

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::BytesMut;
use kafka_protocol::messages::ApiKey;
use tracing::{error, warn};

use crate::broker::Broker;
use crate::codec::{
    encode_old_produce_unsupported, encode_response, Decoded, DecodedRequest, RequestBody,
    ResponseBody,
};
use crate::controller::forward;
use crate::handlers::{self, produce::ProduceOutcome};
use crate::security::Caller;

/// What the connection writes back for one request.
pub enum Reply {
    Frame(BytesMut),
    /// A frame made of encoded bytes and segment file ranges (a zero-copy Fetch response:
    /// [`crate::zero_copy`]).
    Chunks(Vec<crate::zero_copy::Chunk>),
    /// Nothing (acks=0 produce).
    Nothing,
    /// Close the connection after earlier replies.
    Close,
}

/// Handles one decoded frame.
pub async fn handle(broker: &Arc<Broker>, decoded: Decoded) -> Reply {
    handle_from(broker, decoded, None).await
}

/// Handles one decoded frame for `caller` (a connection's): it is the current caller
/// ([`crate::security::current`]) while the request is handled.
pub async fn handle_for(broker: &Arc<Broker>, decoded: Decoded, caller: &Arc<Caller>) -> Reply {
    crate::security::with_caller(caller.clone(), handle_from(broker, decoded, caller.peer)).await
}

/// Handles one decoded frame from `peer` (group membership shows the client's host).
pub async fn handle_from(
    broker: &Arc<Broker>,
    decoded: Decoded,
    peer: Option<SocketAddr>,
) -> Reply {
    match decoded {
        Decoded::Request(request) => handle_request(broker, *request, peer).await,
        Decoded::UnsupportedVersion {
            api_key: ApiKey::ApiVersions,
            correlation_id,
            ..
        } => {
            // v0 body, v0 header, whatever version was asked for.
            let body = ResponseBody::ApiVersions(handlers::api_versions::unsupported_version());
            let encoded = encode_response(ApiKey::ApiVersions, 0, correlation_id, &body);
            frame((ApiKey::ApiVersions, 0), encoded)
        }
        Decoded::UnsupportedVersion {
            api_key: ApiKey::Produce,
            api_version,
            correlation_id,
            body,
        } => match encode_old_produce_unsupported(api_version, correlation_id, body) {
            Some(f) => Reply::Frame(f),
            None => {
                warn!("malformed Produce v{api_version} request; closing");
                Reply::Close
            }
        },
        Decoded::UnsupportedVersion {
            api_key,
            api_version,
            ..
        } => {
            panic!(
                "decoder returned an unanswerable unsupported version {api_key:?} v{api_version}"
            )
        }
    }
}

fn frame(api: (ApiKey, i16), result: anyhow::Result<BytesMut>) -> Reply {
    match result {
        Ok(f) => Reply::Frame(f),
        Err(e) => {
            error!(
                "cannot encode {:?} v{} response: {e:#}; closing",
                api.0, api.1
            );
            Reply::Close
        }
    }
}

async fn handle_request(
    broker: &Arc<Broker>,
    request: DecodedRequest,
    peer: Option<SocketAddr>,
) -> Reply {
    let DecodedRequest {
        api_key,
        api_version: v,
        correlation_id,
        body,
        client_id,
    } = request;
    // Authorization (crate::authz::OPERATIONS): refused as a whole, or served without what
    // the caller may not touch, whose refusals `amend` puts back into the answer.
    let mut body = body;
    let amend = match crate::authz::gate(broker, v, &mut body) {
        crate::authz::Gate::Serve(amend) => amend,
        crate::authz::Gate::Refuse(denied) => {
            broker.metrics.requests.count_errors(api_key, &denied);
            return frame(
                (api_key, v),
                encode_response(api_key, v, correlation_id, &denied),
            );
        }
    };
    let mut response = match body {
        RequestBody::ApiVersions(r) => ResponseBody::ApiVersions(handlers::api_versions::handle(r)),
        RequestBody::SaslHandshake(r) => {
            ResponseBody::SaslHandshake(handlers::sasl_handshake::handle(r))
        }
        RequestBody::SaslAuthenticate(r) => {
            ResponseBody::SaslAuthenticate(handlers::sasl_authenticate::handle(r))
        }
        RequestBody::Metadata(r) => {
            ResponseBody::Metadata(handlers::metadata::handle(broker, v, r).await)
        }
        // Admin requests change metadata: the controller serves them (in-process when this
        // node is the controller), and the answer waits for this node's image.
        RequestBody::CreateTopics(r) => {
            let timeout = Some(r.timeout_ms);
            crate::authz::admin_topics(broker, v, RequestBody::CreateTopics(r), timeout).await
        }
        RequestBody::DeleteTopics(r) => {
            let timeout = Some(r.timeout_ms);
            crate::authz::admin_topics(broker, v, RequestBody::DeleteTopics(r), timeout).await
        }
        RequestBody::Produce(r) => match handlers::produce::handle(broker, v, r).await {
            ProduceOutcome::Respond(r) => ResponseBody::Produce(r),
            ProduceOutcome::NoResponse => return Reply::Nothing,
            ProduceOutcome::Close => return Reply::Close,
        },
        RequestBody::Fetch(r) => {
            let fetched = handlers::fetch::handle(broker, v, r).await;
            if fetched.slices.is_empty() {
                ResponseBody::Fetch(fetched.response)
            } else {
                return fetch_chunks(broker, v, correlation_id, fetched);
            }
        }
        RequestBody::WriteTxnMarkers(r) => {
            ResponseBody::WriteTxnMarkers(handlers::write_txn_markers::handle(broker, r).await)
        }
        RequestBody::ListOffsets(r) => {
            ResponseBody::ListOffsets(handlers::list_offsets::handle(broker, v, r).await)
        }
        // Transactions: the coordinator may answer much later; `None` = it is stopping.
        RequestBody::InitProducerId(r) => {
            match handlers::init_producer_id::handle(broker, v, r).await {
                Some(r) => ResponseBody::InitProducerId(r),
                None => return Reply::Close,
            }
        }
        RequestBody::AddPartitionsToTxn(r) => {
            match handlers::add_partitions_to_txn::handle(broker, v, r).await {
                Some(r) => ResponseBody::AddPartitionsToTxn(r),
                None => return Reply::Close,
            }
        }
        RequestBody::AddOffsetsToTxn(r) => {
            match handlers::add_offsets_to_txn::handle(broker, v, r).await {
                Some(r) => ResponseBody::AddOffsetsToTxn(r),
                None => return Reply::Close,
            }
        }
        RequestBody::TxnOffsetCommit(r) => {
            let client_id = client_id.as_deref();
            match handlers::txn_offset_commit::handle(broker, v, client_id, peer, r).await {
                Some(r) => ResponseBody::TxnOffsetCommit(r),
                None => return Reply::Close,
            }
        }
        RequestBody::DescribeTransactions(r) => {
            match handlers::describe_transactions::describe(broker, v, r).await {
                Some(r) => ResponseBody::DescribeTransactions(r),
                None => return Reply::Close,
            }
        }
        RequestBody::ListTransactions(r) => {
            match handlers::describe_transactions::list(broker, v, r).await {
                Some(r) => ResponseBody::ListTransactions(r),
                None => return Reply::Close,
            }
        }
        RequestBody::DescribeProducers(r) => {
            ResponseBody::DescribeProducers(handlers::describe_producers::handle(broker, r))
        }
        RequestBody::EndTxn(r) => match handlers::end_txn::handle(broker, v, r).await {
            Some(r) => ResponseBody::EndTxn(r),
            None => return Reply::Close,
        },
        RequestBody::DescribeConfigs(r) => {
            ResponseBody::DescribeConfigs(handlers::describe_configs::handle(broker, r))
        }
        body @ (RequestBody::AlterConfigs(_) | RequestBody::IncrementalAlterConfigs(_)) => {
            forward::admin(broker, v, body, None).await
        }
        RequestBody::CreatePartitions(r) => {
            let timeout = Some(r.timeout_ms);
            crate::authz::admin_topics(broker, v, RequestBody::CreatePartitions(r), timeout).await
        }
        body @ (RequestBody::CreateAcls(_)
        | RequestBody::DeleteAcls(_)
        | RequestBody::AlterUserScramCredentials(_)) => forward::admin(broker, v, body, None).await,
        RequestBody::DescribeClientQuotas(r) => {
            ResponseBody::DescribeClientQuotas(handlers::describe_client_quotas::handle(r))
        }
        RequestBody::DescribeUserScramCredentials(r) => ResponseBody::DescribeUserScramCredentials(
            handlers::describe_user_scram_credentials::handle(broker, r),
        ),
        RequestBody::DescribeAcls(r) => {
            ResponseBody::DescribeAcls(handlers::describe_acls::handle(broker, r))
        }
        RequestBody::DeleteRecords(r) => {
            ResponseBody::DeleteRecords(handlers::delete_records::handle(broker, r).await)
        }
        RequestBody::DescribeLogDirs(r) => {
            ResponseBody::DescribeLogDirs(handlers::describe_log_dirs::handle(broker, r).await)
        }
        RequestBody::OffsetForLeaderEpoch(r) => ResponseBody::OffsetForLeaderEpoch(
            handlers::offset_for_leader_epoch::handle(broker, r).await,
        ),
        RequestBody::ListPartitionReassignments(r) => ResponseBody::ListPartitionReassignments(
            handlers::list_partition_reassignments::handle(r),
        ),
        RequestBody::DescribeCluster(r) => {
            ResponseBody::DescribeCluster(handlers::describe_cluster::handle(broker, v, r))
        }
        RequestBody::DescribeTopicPartitions(r) => ResponseBody::DescribeTopicPartitions(
            handlers::describe_topic_partitions::handle(broker, r),
        ),
        RequestBody::FindCoordinator(r) => {
            ResponseBody::FindCoordinator(handlers::find_coordinator::handle(broker, v, r).await)
        }
        body if handlers::groups::is_group_request(&body) => {
            let client_id = client_id.as_deref();
            match handlers::groups::handle(broker, v, client_id, peer, body).await {
                Some(response) => response,
                None => return Reply::Close,
            }
        }
        // The decoder only yields APIs in SUPPORTED_APIS (and SERVED_NOT_ADVERTISED);
        // `every_supported_api_is_dispatched` (tests/every_api.rs) keeps this arm unreachable.
        other => {
            error!("no handler for decoded {api_key:?} v{v} request ({other:?}); closing");
            return Reply::Close;
        }
    };
    if let Some(amend) = amend {
        amend(&mut response);
    }
    broker.metrics.requests.count_errors(api_key, &response);
    frame(
        (api_key, v),
        encode_response(api_key, v, correlation_id, &response),
    )
}

/// A Fetch response with partitions answered from files, framed as chunks.
fn fetch_chunks(
    broker: &Arc<Broker>,
    v: i16,
    correlation_id: i32,
    fetched: handlers::fetch::Fetched,
) -> Reply {
    let response = ResponseBody::Fetch(fetched.response);
    broker
        .metrics
        .requests
        .count_errors(ApiKey::Fetch, &response);
    let ResponseBody::Fetch(response) = response else {
        unreachable!("a Fetch body");
    };
    match crate::zero_copy::encode_fetch(v, correlation_id, response, fetched.slices) {
        Ok(chunks) => Reply::Chunks(chunks),
        Err(e) => {
            error!("cannot encode Fetch v{v} response from files: {e:#}; closing");
            Reply::Close
        }
    }
}

//! Reaching the controller: admin requests a client sent to any broker, and this broker's own
//! controller RPCs (registration, heartbeats, producer-id blocks, creations it needs).
//!
//! Owns: choosing between serving in-process (this node leads the chain) and calling the chain
//! leader over the control channel, retrying NOT_CONTROLLER until the caller's deadline, and
//! read-your-writes: a forwarded answer is returned only once this node's image has applied
//! what the controller had applied when it answered. Must never: propose anything itself (the
//! controller does), or answer a client before its own image shows the change.

use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use kafka_protocol::messages::alter_configs_response::AlterConfigsResourceResponse;
use kafka_protocol::messages::create_partitions_response::CreatePartitionsTopicResult;
use kafka_protocol::messages::create_topics_response::CreatableTopicResult;
use kafka_protocol::messages::delete_topics_response::DeletableTopicResult;
use kafka_protocol::messages::incremental_alter_configs_response::AlterConfigsResourceResponse as IncrementalResult;
use kafka_protocol::messages::{
    AlterConfigsResponse, CreatePartitionsResponse, CreateTopicsResponse, DeleteTopicsResponse,
    IncrementalAlterConfigsResponse, RequestKind, ResponseKind,
};
use kafka_protocol::protocol::StrBytes;

use super::{ControllerRuntime, NOT_CONTROLLER, REQUEST_TIMED_OUT};
use crate::broker::Broker;
use crate::control::not_controller;
use crate::handlers;

/// How long a call to the controller may take when the request names no timeout.
pub const CONTROLLER_CALL_DEFAULT_TIMEOUT_MS: u64 = 30_000;
/// Pause between tries while no controller is active.
const RETRY_PAUSE_MS: u64 = 50;

/// Runs an admin request on this node, which is the active controller.
pub async fn serve_admin_locally(
    broker: &Arc<Broker>,
    version: i16,
    request: RequestKind,
) -> ResponseKind {
    match request {
        RequestKind::CreateTopics(r) => {
            ResponseKind::CreateTopics(handlers::create_topics::handle(broker, version, r).await)
        }
        RequestKind::DeleteTopics(r) => {
            ResponseKind::DeleteTopics(handlers::delete_topics::handle(broker, version, r).await)
        }
        RequestKind::CreatePartitions(r) => {
            ResponseKind::CreatePartitions(handlers::create_partitions::handle(broker, r).await)
        }
        RequestKind::AlterConfigs(r) => {
            ResponseKind::AlterConfigs(handlers::alter_configs::handle(broker, r).await)
        }
        RequestKind::IncrementalAlterConfigs(r) => ResponseKind::IncrementalAlterConfigs(
            handlers::incremental_alter_configs::handle(broker, r).await,
        ),
        RequestKind::CreateAcls(r) => {
            ResponseKind::CreateAcls(handlers::create_acls::handle(broker, r).await)
        }
        RequestKind::DeleteAcls(r) => {
            ResponseKind::DeleteAcls(handlers::delete_acls::handle(broker, r).await)
        }
        RequestKind::AlterUserScramCredentials(r) => ResponseKind::AlterUserScramCredentials(
            handlers::alter_user_scram_credentials::handle(broker, r).await,
        ),
        other => error_response(&other, crate::handlers::code::INVALID_REQUEST, None)
            .expect("the control server only passes controller APIs"),
    }
}

/// Sends `request` to the active controller (in-process when this node is it) and waits for
/// the answer, retrying NOT_CONTROLLER until `deadline`. Returns the answer and the
/// controller's image position when it answered.
pub async fn call_controller(
    broker: &Arc<Broker>,
    version: i16,
    request: RequestKind,
    deadline: Instant,
) -> Result<(ResponseKind, u64), String> {
    loop {
        let leader = broker.metadata.chain_status().leader;
        let outcome = if leader == Some(broker.config.node_id as u64) {
            let response = ControllerRuntime::serve(broker, version, request.clone(), None).await;
            Ok((response, broker.metadata.image().position))
        } else if leader.is_some() {
            broker
                .control_client
                .call_controller(version, request.clone(), deadline)
                .await
                .map_err(|e| e.to_string())
        } else {
            Err("no chain leader known".to_string())
        };
        match outcome {
            Ok((response, position)) if !not_controller(&response) => {
                return Ok((response, position))
            }
            Ok(_) => {}
            Err(e) if Instant::now() >= deadline => return Err(e),
            Err(_) => {}
        }
        if Instant::now() >= deadline {
            return Err("no active controller answered in time".into());
        }
        tokio::time::sleep(Duration::from_millis(RETRY_PAUSE_MS)).await;
    }
}

/// Serves a client's admin request through the controller: in-process when this node is the
/// active controller, else forwarded as it came. Answers once this node's image has applied
/// the change; REQUEST_TIMED_OUT per item when no controller answers within the request's
/// timeout (nothing is proposed twice: the controller re-validates a retried request).
pub async fn admin(
    broker: &Arc<Broker>,
    version: i16,
    request: RequestKind,
    timeout_ms: Option<i32>,
) -> ResponseKind {
    if broker.controller.is_active() {
        let response = serve_admin_locally(broker, version, request.clone()).await;
        if !not_controller(&response) {
            return response;
        }
    }
    let timeout = timeout_ms
        .filter(|t| *t > 0)
        .map_or(CONTROLLER_CALL_DEFAULT_TIMEOUT_MS, |t| t as u64);
    let deadline = Instant::now() + Duration::from_millis(timeout);
    match call_controller(broker, version, request.clone(), deadline).await {
        Ok((response, position)) => {
            let until = deadline;
            if let Err(e) = broker.metadata.wait_for_position(position, until).await {
                tracing::warn!("the controller answered but this broker's image lags: {e}");
            }
            response
        }
        Err(e) => {
            tracing::warn!("admin request not served by a controller: {e}");
            error_response(
                &request,
                REQUEST_TIMED_OUT,
                Some(format!("no controller answered in time: {e}")),
            )
            .expect("admin requests have error responses")
        }
    }
}

/// NOT_CONTROLLER for every item of an admin request (answered by a node that is not the
/// active controller); the caller retries at the chain leader.
pub fn not_controller_response(request: &RequestKind) -> ResponseKind {
    error_response(
        request,
        NOT_CONTROLLER,
        Some("this node is not the active controller".into()),
    )
    .expect("the control server only passes controller APIs")
}

/// `code` for every item of an admin request, or None for other APIs.
pub fn error_response(
    request: &RequestKind,
    code: i16,
    message: Option<String>,
) -> Option<ResponseKind> {
    let msg = || message.clone().map(StrBytes::from_string);
    Some(match request {
        RequestKind::CreateTopics(r) => ResponseKind::CreateTopics(
            CreateTopicsResponse::default().with_topics(
                r.topics
                    .iter()
                    .map(|t| {
                        CreatableTopicResult::default()
                            .with_name(t.name.clone())
                            .with_error_code(code)
                            .with_error_message(msg())
                            .with_num_partitions(-1)
                            .with_replication_factor(-1)
                    })
                    .collect(),
            ),
        ),
        RequestKind::DeleteTopics(r) => {
            let by_name = r.topic_names.iter().map(|n| {
                DeletableTopicResult::default()
                    .with_name(Some(n.clone()))
                    .with_error_code(code)
                    .with_error_message(msg())
            });
            let by_state = r.topics.iter().map(|t| {
                DeletableTopicResult::default()
                    .with_name(t.name.clone())
                    .with_topic_id(t.topic_id)
                    .with_error_code(code)
                    .with_error_message(msg())
            });
            ResponseKind::DeleteTopics(
                DeleteTopicsResponse::default().with_responses(by_name.chain(by_state).collect()),
            )
        }
        RequestKind::CreatePartitions(r) => ResponseKind::CreatePartitions(
            CreatePartitionsResponse::default().with_results(
                r.topics
                    .iter()
                    .map(|t| {
                        CreatePartitionsTopicResult::default()
                            .with_name(t.name.clone())
                            .with_error_code(code)
                            .with_error_message(msg())
                    })
                    .collect(),
            ),
        ),
        RequestKind::AlterConfigs(r) => ResponseKind::AlterConfigs(
            AlterConfigsResponse::default().with_responses(
                r.resources
                    .iter()
                    .map(|c| {
                        AlterConfigsResourceResponse::default()
                            .with_resource_type(c.resource_type)
                            .with_resource_name(c.resource_name.clone())
                            .with_error_code(code)
                            .with_error_message(msg())
                    })
                    .collect(),
            ),
        ),
        RequestKind::IncrementalAlterConfigs(r) => ResponseKind::IncrementalAlterConfigs(
            IncrementalAlterConfigsResponse::default().with_responses(
                r.resources
                    .iter()
                    .map(|c| {
                        IncrementalResult::default()
                            .with_resource_type(c.resource_type)
                            .with_resource_name(c.resource_name.clone())
                            .with_error_code(code)
                            .with_error_message(msg())
                    })
                    .collect(),
            ),
        ),
        RequestKind::CreateAcls(r) => ResponseKind::CreateAcls(
            kafka_protocol::messages::CreateAclsResponse::default().with_results(
                r.creations
                    .iter()
                    .map(|_| {
                        kafka_protocol::messages::create_acls_response::AclCreationResult::default()
                            .with_error_code(code)
                            .with_error_message(msg())
                    })
                    .collect(),
            ),
        ),
        RequestKind::DeleteAcls(r) => ResponseKind::DeleteAcls(
            kafka_protocol::messages::DeleteAclsResponse::default().with_filter_results(
                r.filters
                    .iter()
                    .map(|_| {
                        kafka_protocol::messages::delete_acls_response::DeleteAclsFilterResult::default()
                            .with_error_code(code)
                            .with_error_message(msg())
                    })
                    .collect(),
            ),
        ),
        RequestKind::AlterUserScramCredentials(r) => ResponseKind::AlterUserScramCredentials(
            handlers::alter_user_scram_credentials::every_user(r, code, message.as_deref()),
        ),
        RequestKind::BrokerRegistration(_) => ResponseKind::BrokerRegistration(
            kafka_protocol::messages::BrokerRegistrationResponse::default()
                .with_error_code(code)
                .with_broker_epoch(-1),
        ),
        RequestKind::BrokerHeartbeat(_) => ResponseKind::BrokerHeartbeat(
            kafka_protocol::messages::BrokerHeartbeatResponse::default()
                .with_error_code(code)
                .with_is_fenced(true),
        ),
        RequestKind::AllocateProducerIds(_) => ResponseKind::AllocateProducerIds(
            kafka_protocol::messages::AllocateProducerIdsResponse::default().with_error_code(code),
        ),
        _ => return None,
    })
}

/// How long a creation this broker needs (auto-creation, `__consumer_offsets`) may wait for
/// the controller before the client is told to retry.
pub const INTERNAL_CREATE_TIMEOUT_MS: u64 = 5_000;

/// Creates a topic through the controller, as a client's CreateTopics would (auto-creation on
/// Metadata/Produce, `__consumer_offsets` on the first FindCoordinator). An existing topic of
/// that name is success. Errors carry Kafka's code and message.
pub async fn create_topic(
    broker: &Arc<Broker>,
    name: &str,
    num_partitions: i32,
    replication_factor: i16,
    configs: Vec<(String, String)>,
) -> Result<(), (i16, String)> {
    use kafka_protocol::messages::create_topics_request::{CreatableTopic, CreatableTopicConfig};
    use kafka_protocol::messages::CreateTopicsRequest;
    let topic = CreatableTopic::default()
        .with_name(handlers::topic_name(name))
        .with_num_partitions(num_partitions)
        .with_replication_factor(replication_factor)
        .with_configs(
            configs
                .into_iter()
                .map(|(k, v)| {
                    CreatableTopicConfig::default()
                        .with_name(StrBytes::from_string(k))
                        .with_value(Some(StrBytes::from_string(v)))
                })
                .collect(),
        );
    let timeout_ms = INTERNAL_CREATE_TIMEOUT_MS as i32;
    let request = CreateTopicsRequest::default()
        .with_topics(vec![topic])
        .with_timeout_ms(timeout_ms);
    let response = admin(
        broker,
        CREATE_TOPICS_VERSION,
        RequestKind::CreateTopics(request),
        Some(timeout_ms),
    )
    .await;
    let ResponseKind::CreateTopics(r) = response else {
        return Err((
            crate::handlers::code::UNKNOWN_SERVER_ERROR,
            "unexpected answer".into(),
        ));
    };
    match r.topics.first() {
        Some(t) if t.error_code == crate::handlers::code::NONE => Ok(()),
        Some(t) if t.error_code == crate::handlers::code::TOPIC_ALREADY_EXISTS => Ok(()),
        Some(t) => Err((
            t.error_code,
            t.error_message
                .as_ref()
                .map_or_else(String::new, |m| m.to_string()),
        )),
        None => Err((
            crate::handlers::code::UNKNOWN_SERVER_ERROR,
            "empty answer".into(),
        )),
    }
}

/// The CreateTopics version internal creations use (every field they need exists).
const CREATE_TOPICS_VERSION: i16 = 7;

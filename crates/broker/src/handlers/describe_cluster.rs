//! DescribeCluster: the cluster id, the live brokers and a controller id
//! (`AdminClient.describeCluster`, kafka-cluster, kafka-ui style consoles).
//!
//! As Kafka's `AuthHelper.computeDescribeClusterResponse` for a broker endpoint: endpoint type
//! 1 (brokers) is served; 2 (controllers) gets MISMATCHED_ENDPOINT_TYPE and any other value
//! UNSUPPORTED_ENDPOINT_TYPE (both INVALID_REQUEST at v0, which has no such field). Brokers and
//! controller come from the image through [`leadership`], as for Metadata: the unfenced
//! brokers with their racks (v2 `include_fenced_brokers` adds the fenced ones, `is_fenced`
//! set, KIP-1073), and [`leadership::controller_id`], a live broker's id as KRaft brokers
//! report (clients cannot reach the controller directly, KIP-590). Must never: report a
//! controller that is not a live broker (Kafka answers -1 then).

use std::sync::Arc;

use kafka_protocol::messages::describe_cluster_response::DescribeClusterBroker;
use kafka_protocol::messages::{BrokerId, DescribeClusterRequest, DescribeClusterResponse};

use super::{authorized_operations, code, str_bytes, CLUSTER_OPERATIONS};
use crate::broker::Broker;
use crate::leadership;

const ENDPOINT_TYPE_BROKER: i8 = 1;
const ENDPOINT_TYPE_CONTROLLER: i8 = 2;

/// The schema default for `cluster_authorized_operations` when it was not asked for.
const AUTHORIZED_OPERATIONS_OMITTED: i32 = i32::MIN;

pub fn handle(
    broker: &Arc<Broker>,
    version: i16,
    request: DescribeClusterRequest,
) -> DescribeClusterResponse {
    let refusal = match request.endpoint_type {
        ENDPOINT_TYPE_BROKER => None,
        ENDPOINT_TYPE_CONTROLLER => Some((
            code::MISMATCHED_ENDPOINT_TYPE,
            "The request was sent to an endpoint of type BROKER, but we wanted an endpoint of type CONTROLLER"
                .to_string(),
        )),
        other => Some((
            code::UNSUPPORTED_ENDPOINT_TYPE,
            format!("Unsupported endpoint type {other}"),
        )),
    };
    if let Some((error, message)) = refusal {
        let error = if version == 0 {
            code::INVALID_REQUEST
        } else {
            error
        };
        return DescribeClusterResponse::default()
            .with_error_code(error)
            .with_error_message(Some(str_bytes(message)))
            .with_controller_id(BrokerId(-1));
    }
    let image = broker.metadata.image();
    let include_fenced = version >= 2 && request.include_fenced_brokers;
    let brokers: Vec<DescribeClusterBroker> = image
        .brokers
        .values()
        .filter(|b| include_fenced || !b.fenced)
        .filter_map(|b| {
            let (host, port) = crate::security::client_endpoint(b)?;
            Some(
                DescribeClusterBroker::default()
                    .with_broker_id(BrokerId(b.node_id))
                    .with_host(str_bytes(host))
                    .with_port(port)
                    .with_rack(b.rack.clone().map(str_bytes))
                    .with_is_fenced(b.fenced),
            )
        })
        .collect();
    let controller_id = leadership::controller_id(&image, broker.controller_hint());
    let cluster_authorized_operations = if request.include_cluster_authorized_operations {
        authorized_operations(CLUSTER_OPERATIONS)
    } else {
        AUTHORIZED_OPERATIONS_OMITTED
    };
    DescribeClusterResponse::default()
        .with_error_code(code::NONE)
        .with_endpoint_type(ENDPOINT_TYPE_BROKER)
        .with_cluster_id(str_bytes(image.cluster_id.clone().unwrap_or_default()))
        .with_controller_id(BrokerId(controller_id))
        .with_brokers(brokers)
        .with_cluster_authorized_operations(cluster_authorized_operations)
}

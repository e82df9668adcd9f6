//! DescribeConfigs (read-only, topics and this broker): enough for `kafka-topics --describe`
//! and clients that read a topic's effective settings. Altering configs is a later issue.
//!
//! Topic resources list the topic's explicit configs (source DYNAMIC_TOPIC_CONFIG) followed by
//! the effective defaults of the settings Josefine honours (source DEFAULT_CONFIG). The broker
//! resource lists the Kafka-named broker settings (source STATIC_BROKER_CONFIG).

use std::sync::Arc;

use kafka_protocol::messages::describe_configs_response::{
    DescribeConfigsResourceResult, DescribeConfigsResult,
};
use kafka_protocol::messages::{DescribeConfigsRequest, DescribeConfigsResponse};

use super::{code, str_bytes};
use crate::broker::Broker;
use crate::config::TimestampKind;

const RESOURCE_TOPIC: i8 = 2;
const RESOURCE_BROKER: i8 = 4;
const SOURCE_DYNAMIC_TOPIC_CONFIG: i8 = 1;
const SOURCE_STATIC_BROKER_CONFIG: i8 = 4;
const SOURCE_DEFAULT_CONFIG: i8 = 5;

fn entry(name: &str, value: String, source: i8) -> DescribeConfigsResourceResult {
    DescribeConfigsResourceResult::default()
        .with_name(str_bytes(name))
        .with_value(Some(str_bytes(value)))
        .with_read_only(source != SOURCE_DYNAMIC_TOPIC_CONFIG)
        .with_config_source(source)
}

fn topic_defaults(broker: &Broker) -> Vec<(&'static str, String)> {
    let s = &broker.config.broker;
    let timestamp_type = match s.log_message_timestamp_type {
        TimestampKind::CreateTime => "CreateTime",
        TimestampKind::LogAppendTime => "LogAppendTime",
    };
    vec![
        ("cleanup.policy", "delete".to_string()),
        ("compression.type", "producer".to_string()),
        ("max.message.bytes", s.message_max_bytes.to_string()),
        ("message.timestamp.type", timestamp_type.to_string()),
        ("min.insync.replicas", s.min_insync_replicas.to_string()),
        ("retention.bytes", s.log_retention_bytes.to_string()),
        ("retention.ms", s.log_retention_ms.to_string()),
        ("segment.bytes", s.log_segment_bytes.to_string()),
        ("segment.ms", s.log_roll_ms.to_string()),
        (
            "index.interval.bytes",
            s.log_index_interval_bytes.to_string(),
        ),
        ("flush.messages", s.log_flush_interval_messages.to_string()),
    ]
}

fn broker_settings(broker: &Broker) -> Vec<(&'static str, String)> {
    let s = &broker.config.broker;
    vec![
        ("num.partitions", s.num_partitions.to_string()),
        (
            "default.replication.factor",
            s.default_replication_factor.to_string(),
        ),
        (
            "auto.create.topics.enable",
            s.auto_create_topics_enable.to_string(),
        ),
        ("min.insync.replicas", s.min_insync_replicas.to_string()),
        ("message.max.bytes", s.message_max_bytes.to_string()),
        ("log.segment.bytes", s.log_segment_bytes.to_string()),
        ("log.roll.ms", s.log_roll_ms.to_string()),
        ("log.retention.ms", s.log_retention_ms.to_string()),
        ("log.retention.bytes", s.log_retention_bytes.to_string()),
        (
            "log.index.interval.bytes",
            s.log_index_interval_bytes.to_string(),
        ),
        (
            "log.flush.interval.messages",
            s.log_flush_interval_messages.to_string(),
        ),
        (
            "socket.request.max.bytes",
            s.socket_request_max_bytes.to_string(),
        ),
        ("fetch.max.bytes", s.fetch_max_bytes.to_string()),
        (
            "connections.max.idle.ms",
            s.connections_max_idle_ms.to_string(),
        ),
        ("max.connections", s.max_connections.to_string()),
        ("queued.max.requests", s.queued_max_requests.to_string()),
    ]
}

pub fn handle(broker: &Arc<Broker>, request: DescribeConfigsRequest) -> DescribeConfigsResponse {
    let image = broker.metadata.image();
    let results = request
        .resources
        .iter()
        .take(crate::limits::TOPICS_PER_REQUEST_MAX)
        .map(|r| {
            let result = DescribeConfigsResult::default()
                .with_resource_type(r.resource_type)
                .with_resource_name(r.resource_name.clone());
            let wanted = |name: &str| {
                // null or empty = every config, as in Kafka's ConfigHelper.
                r.configuration_keys
                    .as_ref()
                    .is_none_or(|keys| keys.is_empty() || keys.iter().any(|k| k.as_str() == name))
            };
            let configs: Vec<DescribeConfigsResourceResult> = match r.resource_type {
                RESOURCE_TOPIC => {
                    let Some(topic) = image.topic_by_name(&r.resource_name) else {
                        return result
                            .with_error_code(code::UNKNOWN_TOPIC_OR_PARTITION)
                            .with_error_message(Some(str_bytes(format!(
                                "Topic '{}' does not exist.",
                                &*r.resource_name
                            ))));
                    };
                    let explicit = topic
                        .configs
                        .iter()
                        .map(|(k, v)| entry(k, v.clone(), SOURCE_DYNAMIC_TOPIC_CONFIG));
                    let defaults = topic_defaults(broker)
                        .into_iter()
                        .filter(|(k, _)| !topic.configs.contains_key(*k))
                        .map(|(k, v)| entry(k, v, SOURCE_DEFAULT_CONFIG));
                    explicit
                        .chain(defaults)
                        .filter(|e| wanted(&e.name))
                        .collect()
                }
                RESOURCE_BROKER => {
                    let name = r.resource_name.as_str();
                    if !name.is_empty() && name != broker.config.node_id.to_string() {
                        return result
                            .with_error_code(code::INVALID_REQUEST)
                            .with_error_message(Some(str_bytes(format!(
                                "unknown broker '{name}'"
                            ))));
                    }
                    broker_settings(broker)
                        .into_iter()
                        .map(|(k, v)| entry(k, v, SOURCE_STATIC_BROKER_CONFIG))
                        .filter(|e| wanted(&e.name))
                        .collect()
                }
                other => {
                    return result
                        .with_error_code(code::INVALID_REQUEST)
                        .with_error_message(Some(str_bytes(format!(
                            "resource type {other} is not supported"
                        ))));
                }
            };
            result.with_error_code(code::NONE).with_configs(configs)
        })
        .collect();
    DescribeConfigsResponse::default().with_results(results)
}

//! CreateTopics: validates each topic, chooses its id and replica assignment, and proposes a
//! `CreateTopic` command (or only validates, with `validate_only`).

use std::collections::HashMap;
use std::sync::Arc;

use josefine_meta::placement::manual_assignment;
use josefine_meta::topic_config::validate_topic_config;
use josefine_meta::{validate_topic_name, Command, Image, MetaError, PartitionAssignment, TopicId};
use kafka_protocol::messages::create_topics_request::CreatableTopic;
use kafka_protocol::messages::create_topics_response::{
    CreatableTopicConfigs, CreatableTopicResult,
};
use kafka_protocol::messages::{CreateTopicsRequest, CreateTopicsResponse};
use tracing::info;

use super::{code, str_bytes, topic_name, uuid_of};
use crate::broker::Broker;
use crate::limits;

/// Round-robin assignment over the eligible brokers (`josefine_meta::placement`, rack-aware),
/// chosen before proposing so the command is deterministic.
pub fn assign_partitions(
    image: &Image,
    partitions: i32,
    replication_factor: i16,
) -> Result<Vec<PartitionAssignment>, String> {
    let count = usize::try_from(partitions).unwrap_or(0);
    let rf = usize::try_from(replication_factor).unwrap_or(0);
    josefine_meta::placement::place(image, 0, count, rf, 0).map_err(|e| match e {
        // Kafka's CreateTopics names the factor before the placer's reason.
        MetaError::InvalidReplicationFactor(m) => {
            format!("Unable to replicate the partition {replication_factor} time(s): {m}")
        }
        other => other.to_string(),
    })
}

/// A fresh random topic id not in use. Like Kafka, avoid ids whose base64 form starts with '-'
/// (they look like command-line flags).
pub fn new_topic_id(image: &Image) -> TopicId {
    loop {
        let id = TopicId(uuid::Uuid::new_v4().into_bytes());
        if id != TopicId::ZERO && id.0[0] >> 2 != 62 && !image.topics.contains_key(&id) {
            return id;
        }
    }
}

struct Rejection(i16, String);

/// A replication factor the broker cannot keep yet ([`super::replication_factor_supported`])
/// is refused rather than silently reduced.
fn refuse_replication(replication_factor: usize) -> Result<(), Rejection> {
    let supported =
        i16::try_from(replication_factor).is_ok_and(super::replication_factor_supported);
    if !supported {
        return Err(Rejection(
            code::INVALID_REPLICATION_FACTOR,
            format!(
                "Replication factor {replication_factor} is not supported: this Josefine version does not replicate partitions yet; use replication factor 1."
            ),
        ));
    }
    Ok(())
}

/// Builds the CreateTopic command for one requested topic, or the error to return.
fn build_command(broker: &Broker, image: &Image, t: &CreatableTopic) -> Result<Command, Rejection> {
    let name = t.name.0.to_string();
    validate_topic_name(&name)
        .map_err(|e| Rejection(code::INVALID_TOPIC_EXCEPTION, e.to_string()))?;
    if image.topic_by_name(&name).is_some() {
        return Err(Rejection(
            code::TOPIC_ALREADY_EXISTS,
            format!("Topic '{name}' already exists."),
        ));
    }
    let settings = &broker.config.broker;
    let partitions = if !t.assignments.is_empty() {
        if t.num_partitions != -1 || t.replication_factor != -1 {
            return Err(Rejection(
                code::INVALID_REQUEST,
                "Both numPartitions or replicationFactor and replicasAssignments were set. Both cannot be used at the same time.".into(),
            ));
        }
        let mut assignments: Vec<PartitionAssignment> = Vec::with_capacity(t.assignments.len());
        for a in &t.assignments {
            let replicas: Vec<i32> = a.broker_ids.iter().map(|b| b.0).collect();
            if replicas.is_empty() || replicas.iter().any(|r| !image.brokers.contains_key(r)) {
                // Unknown brokers and empty lists: the image's own check names them below.
                assignments.push(PartitionAssignment::led_by_first(
                    a.partition_index,
                    replicas,
                ));
                continue;
            }
            let p = manual_assignment(image, a.partition_index, replicas).ok_or_else(|| {
                Rejection(
                    code::INVALID_REPLICA_ASSIGNMENT,
                    format!(
                        "All brokers specified in the manual partition assignment for partition {} are fenced or in controlled shutdown.",
                        a.partition_index
                    ),
                )
            })?;
            assignments.push(p);
        }
        assignments.sort_by_key(|a| a.partition);
        if let Some(a) = assignments.iter().find(|a| a.replicas.len() > 1) {
            refuse_replication(a.replicas.len())?;
        }
        assignments
    } else {
        // Kafka checks the replication factor before the partition count.
        let rf = if t.replication_factor == -1 {
            settings.default_replication_factor
        } else {
            t.replication_factor
        };
        if rf <= 0 {
            return Err(Rejection(
                code::INVALID_REPLICATION_FACTOR,
                "Replication factor must be larger than 0, or -1 to use the default value.".into(),
            ));
        }
        let n = if t.num_partitions == -1 {
            settings.num_partitions
        } else {
            t.num_partitions
        };
        if n <= 0 {
            return Err(Rejection(
                code::INVALID_PARTITIONS,
                "Number of partitions was set to an invalid non-positive value.".into(),
            ));
        }
        if n > limits::PARTITIONS_PER_TOPIC_MAX {
            return Err(Rejection(
                code::INVALID_PARTITIONS,
                format!(
                    "Number of partitions {n} exceeds this broker's limit of {}.",
                    limits::PARTITIONS_PER_TOPIC_MAX
                ),
            ));
        }
        // Kafka's message for more replicas than brokers first (a single node answers as
        // Kafka's does), then the refusal of replication itself.
        let assignments = assign_partitions(image, n, rf)
            .map_err(|m| Rejection(code::INVALID_REPLICATION_FACTOR, m))?;
        refuse_replication(rf as usize)?;
        assignments
    };
    let mut configs = Vec::with_capacity(t.configs.len().min(64));
    for c in &t.configs {
        let key = c.name.to_string();
        let Some(value) = c.value.as_ref().map(|v| v.to_string()) else {
            return Err(Rejection(
                code::INVALID_CONFIG,
                format!("Null value not supported for topic configs: {key}"),
            ));
        };
        validate_topic_config(&key, &value).map_err(|m| Rejection(code::INVALID_CONFIG, m))?;
        configs.push((key, value));
    }
    let cmd = Command::CreateTopic {
        topic_id: new_topic_id(image),
        name,
        partitions,
        configs,
    };
    image
        .validate(&cmd)
        .map_err(|e| Rejection(meta_error_code(&e), e.to_string()))?;
    Ok(cmd)
}

pub(crate) fn meta_error_code(e: &MetaError) -> i16 {
    match e.kafka_error_code() {
        -1 => code::UNKNOWN_SERVER_ERROR,
        c => c,
    }
}

fn result_for(name: &str, error: i16, message: Option<String>) -> CreatableTopicResult {
    CreatableTopicResult::default()
        .with_name(topic_name(name))
        .with_error_code(error)
        .with_error_message(message.map(str_bytes))
        .with_num_partitions(-1)
        .with_replication_factor(-1)
}

pub async fn handle(
    broker: &Arc<Broker>,
    version: i16,
    request: CreateTopicsRequest,
) -> CreateTopicsResponse {
    let mut counts: HashMap<String, usize> = HashMap::new();
    for t in &request.topics {
        *counts.entry(t.name.0.to_string()).or_default() += 1;
    }
    let mut results = Vec::with_capacity(request.topics.len().min(limits::TOPICS_PER_REQUEST_MAX));
    for (i, t) in request.topics.iter().enumerate() {
        let name = t.name.0.to_string();
        if i >= limits::TOPICS_PER_REQUEST_MAX {
            results.push(result_for(
                &name,
                code::INVALID_REQUEST,
                Some("too many topics in one request".into()),
            ));
            continue;
        }
        if counts[&name] > 1 {
            results.push(result_for(
                &name,
                code::INVALID_REQUEST,
                Some(format!("Create topics request from client contains multiple entries for the following topics: {name}")),
            ));
            continue;
        }
        let image = broker.metadata.image();
        let cmd = match build_command(broker, &image, t) {
            Ok(cmd) => cmd,
            Err(Rejection(error, message)) => {
                results.push(result_for(&name, error, Some(message)));
                continue;
            }
        };
        let Command::CreateTopic {
            topic_id,
            partitions,
            configs,
            ..
        } = &cmd
        else {
            unreachable!()
        };
        let mut ok = result_for(&name, code::NONE, None)
            .with_topic_id(uuid_of(*topic_id))
            .with_num_partitions(partitions.len() as i32)
            .with_replication_factor(partitions[0].replicas.len() as i16)
            // Config entries exist from v5; encoding them earlier is an error.
            .with_configs(if version < 5 {
                None
            } else {
                Some(
                    configs
                        .iter()
                        .map(|(k, v)| {
                            CreatableTopicConfigs::default()
                                .with_name(str_bytes(k.clone()))
                                .with_value(Some(str_bytes(v.clone())))
                                .with_config_source(1) // DYNAMIC_TOPIC_CONFIG
                        })
                        .collect(),
                )
            });
        if request.validate_only {
            results.push(ok);
            continue;
        }
        match broker.metadata.propose(cmd).await {
            Ok(_) => {
                info!(topic = %name, partitions = ok.num_partitions, "created topic");
                results.push(ok);
            }
            Err(e) => {
                ok = result_for(&name, meta_error_code(&e), Some(e.to_string()));
                results.push(ok);
            }
        }
    }
    CreateTopicsResponse::default().with_topics(results)
}

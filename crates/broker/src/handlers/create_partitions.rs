//! CreatePartitions (v0-3): grows a topic to `count` partitions, with the new partitions'
//! replicas given by the client (in sync where eligible) or placed by Kafka's striped,
//! rack-aware rule over the eligible brokers (`josefine_meta::placement`), through
//! one `CreatePartitions` metadata command per topic (or only validated, with `validate_only`).
//!
//! Errors and messages follow Kafka 4.1: a count that is not an increase INVALID_PARTITIONS,
//! a bad manual assignment INVALID_REPLICA_ASSIGNMENT, unknown topic
//! UNKNOWN_TOPIC_OR_PARTITION, a topic named twice INVALID_REQUEST, a proposal that outlives
//! `timeout_ms` REQUEST_TIMED_OUT (the command may still apply, as in Kafka). The metadata
//! applier opens the new partition logs before the proposal resolves, so they are writable as
//! soon as the answer is sent. Must never: renumber or move existing partitions.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use josefine_meta::image::PARTITIONS_PER_TOPIC_MAX;
use josefine_meta::{Command, Image, PartitionAssignment, Topic};
use kafka_protocol::messages::create_partitions_request::CreatePartitionsTopic;
use kafka_protocol::messages::create_partitions_response::CreatePartitionsTopicResult;
use kafka_protocol::messages::{CreatePartitionsRequest, CreatePartitionsResponse};
use tracing::info;

use super::{code, str_bytes};
use crate::broker::Broker;
use crate::limits;

const REQUEST_TIMED_OUT: i16 = 7;

struct Rejection(i16, Option<String>);

fn reject(code: i16, message: String) -> Rejection {
    Rejection(code, Some(message))
}

/// The assignments of the new partitions `current..count`, checked like Kafka does.
fn new_assignments(
    image: &Image,
    topic: &Topic,
    t: &CreatePartitionsTopic,
) -> Result<Vec<PartitionAssignment>, Rejection> {
    let current = topic.partitions.len() as i32;
    let name = topic.name.as_str();
    if t.count < current {
        return Err(reject(
            code::INVALID_PARTITIONS,
            format!(
                "The topic {name} currently has {current} partition(s); {} would not be an increase.",
                t.count
            ),
        ));
    }
    if t.count == current {
        return Err(reject(
            code::INVALID_PARTITIONS,
            format!("Topic already has {current} partition(s)."),
        ));
    }
    if t.count as usize > PARTITIONS_PER_TOPIC_MAX {
        return Err(reject(
            code::INVALID_PARTITIONS,
            format!("Josefine allows at most {PARTITIONS_PER_TOPIC_MAX} partitions per topic"),
        ));
    }
    let added = (t.count - current) as usize;
    let replication_factor = topic.partitions.first().map_or(1, |p| p.replicas.len());
    let Some(manual) = &t.assignments else {
        // Kafka's striped placer over the eligible brokers, continuing the topic's rotation.
        return josefine_meta::placement::place(
            image,
            current,
            added,
            replication_factor,
            current as u64,
        )
        .map_err(|e| reject(super::create_topics::meta_error_code(&e), e.to_string()));
    };
    if manual.len() != added {
        return Err(reject(
            code::INVALID_REPLICA_ASSIGNMENT,
            format!(
                "Attempted to add {added} additional partition(s), but only {} assignment(s) were specified.",
                manual.len()
            ),
        ));
    }
    let mut out = Vec::with_capacity(added);
    for (i, a) in manual.iter().enumerate() {
        let replicas: Vec<i32> = a.broker_ids.iter().map(|b| b.0).collect();
        if replicas.is_empty() {
            return Err(reject(
                code::INVALID_REPLICA_ASSIGNMENT,
                "The manual partition assignment includes an empty replica list.".into(),
            ));
        }
        for (j, r) in replicas.iter().enumerate() {
            if !image.brokers.contains_key(r) {
                return Err(reject(
                    code::INVALID_REPLICA_ASSIGNMENT,
                    format!("The manual partition assignment includes broker {r}, but no such broker is registered."),
                ));
            }
            if replicas[..j].contains(r) {
                return Err(reject(
                    code::INVALID_REPLICA_ASSIGNMENT,
                    format!(
                        "The manual partition assignment includes the broker {r} more than once."
                    ),
                ));
            }
        }
        if replicas.len() != replication_factor {
            return Err(reject(
                code::INVALID_REPLICA_ASSIGNMENT,
                format!(
                    "The manual partition assignment includes a partition with {} replica(s), but this is not consistent with previous partitions, which have {replication_factor} replica(s).",
                    replicas.len()
                ),
            ));
        }
        let partition = current + i as i32;
        let Some(p) = josefine_meta::placement::manual_assignment(image, partition, replicas)
        else {
            return Err(reject(
                code::INVALID_REPLICA_ASSIGNMENT,
                format!("All brokers specified in the manual partition assignment for partition {partition} are fenced or in controlled shutdown."),
            ));
        };
        out.push(p);
    }
    Ok(out)
}

async fn create_one(
    broker: &Arc<Broker>,
    t: &CreatePartitionsTopic,
    validate_only: bool,
    timeout_ms: i32,
) -> Result<(), Rejection> {
    let image = broker.metadata.image();
    let Some(topic) = image.topic_by_name(&t.name.0) else {
        // Kafka sends no message here; clients print the code's text.
        return Err(Rejection(code::UNKNOWN_TOPIC_OR_PARTITION, None));
    };
    let cmd = Command::CreatePartitions {
        topic_id: topic.topic_id,
        new_assignments: new_assignments(&image, topic, t)?,
    };
    let meta_rejection = |e: josefine_meta::MetaError| {
        reject(super::create_topics::meta_error_code(&e), e.to_string())
    };
    image.validate(&cmd).map_err(meta_rejection)?;
    if validate_only {
        return Ok(());
    }
    let proposal = broker.metadata.propose(cmd);
    let applied = if timeout_ms > 0 {
        match tokio::time::timeout(Duration::from_millis(timeout_ms as u64), proposal).await {
            Ok(r) => r,
            Err(_) => {
                return Err(reject(
                    REQUEST_TIMED_OUT,
                    format!(
                        "Timed out after {timeout_ms} ms waiting for the partitions to be created."
                    ),
                ))
            }
        }
    } else {
        proposal.await
    };
    applied.map_err(meta_rejection)?;
    info!(topic = %topic.name, count = t.count, "partitions created");
    Ok(())
}

pub async fn handle(
    broker: &Arc<Broker>,
    request: CreatePartitionsRequest,
) -> CreatePartitionsResponse {
    let mut counts: HashMap<&str, usize> = HashMap::new();
    for t in &request.topics {
        *counts.entry(t.name.0.as_str()).or_default() += 1;
    }
    let mut results = Vec::with_capacity(request.topics.len());
    for (i, t) in request.topics.iter().enumerate() {
        let outcome = if i >= limits::TOPICS_PER_REQUEST_MAX {
            Err(reject(
                code::INVALID_REQUEST,
                "too many topics in one request".into(),
            ))
        } else if counts[t.name.0.as_str()] > 1 {
            Err(reject(
                code::INVALID_REQUEST,
                "Duplicate topic in request.".into(),
            ))
        } else {
            create_one(broker, t, request.validate_only, request.timeout_ms).await
        };
        let (error_code, message) = match outcome {
            Ok(()) => (code::NONE, None),
            Err(Rejection(c, m)) => (c, m.map(str_bytes)),
        };
        results.push(
            CreatePartitionsTopicResult::default()
                .with_name(t.name.clone())
                .with_error_code(error_code)
                .with_error_message(message),
        );
    }
    CreatePartitionsResponse::default().with_results(results)
}

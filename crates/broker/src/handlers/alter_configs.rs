//! AlterConfigs (v0-2, the legacy full-replacement form) and what it shares with
//! IncrementalAlterConfigs: resolving a resource, Kafka's per-resource error codes, and
//! proposing the alter through the metadata store.
//!
//! A topic resource's configs become exactly the request's (unnamed overrides are deleted, as
//! in Kafka); a broker resource (`""` = cluster default, `"<id>"` = one broker) changes dynamic
//! broker configs the same way. Errors follow Kafka 4.1: topic configs INVALID_CONFIG, broker
//! configs INVALID_REQUEST (including a setting that is not dynamic), unknown topic
//! UNKNOWN_TOPIC_OR_PARTITION, a resource named twice INVALID_REQUEST. Must never: apply part of
//! one resource's changes (one command per resource), or propose with `validate_only`.

use std::collections::HashMap;
use std::sync::Arc;

use josefine_meta::broker_config::validate_dynamic_broker_config_at;
use josefine_meta::group_config::validate_group_config;
use josefine_meta::topic_config::validate_topic_config;
use josefine_meta::{Command, Image, MetaError, TopicId};
use kafka_protocol::messages::alter_configs_response::AlterConfigsResourceResponse;
use kafka_protocol::messages::{AlterConfigsRequest, AlterConfigsResponse};
use kafka_protocol::protocol::StrBytes;
use tracing::info;

use super::{code, str_bytes};
use crate::broker::Broker;
use crate::limits;

pub(crate) const RESOURCE_TOPIC: i8 = 2;
pub(crate) const RESOURCE_BROKER: i8 = 4;
pub(crate) const RESOURCE_BROKER_LOGGER: i8 = 8;
/// KIP-848 group configs.
pub(crate) const RESOURCE_GROUP: i8 = 32;

/// A per-resource error: Kafka code and message.
pub(crate) struct Rejection(pub i16, pub String);

/// What an alter request names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Target {
    Topic(TopicId),
    /// `None`: the cluster-wide default (resource name "").
    Broker(Option<i32>),
    /// A group (its id is the resource name; it need not exist, as in Kafka).
    Group,
}

impl Target {
    /// The code Kafka gives a config rejected for this kind of resource.
    fn config_error(self) -> i16 {
        match self {
            Target::Topic(_) | Target::Group => code::INVALID_CONFIG,
            Target::Broker(_) => code::INVALID_REQUEST,
        }
    }
}

/// Resolves a resource of an alter request against the image.
pub(crate) fn resolve(image: &Image, resource_type: i8, name: &str) -> Result<Target, Rejection> {
    match resource_type {
        RESOURCE_TOPIC => match image.topic_by_name(name) {
            Some(t) => Ok(Target::Topic(t.topic_id)),
            None => Err(Rejection(
                code::UNKNOWN_TOPIC_OR_PARTITION,
                format!("The topic '{name}' does not exist."),
            )),
        },
        RESOURCE_BROKER if name.is_empty() => Ok(Target::Broker(None)),
        RESOURCE_BROKER => match name.parse::<i32>() {
            Ok(id) if id >= 0 => Ok(Target::Broker(Some(id))),
            _ => Err(Rejection(
                code::INVALID_REQUEST,
                format!("Unexpected broker id, expected a numeric id or the empty string, but received {name}"),
            )),
        },
        RESOURCE_GROUP if name.is_empty() => Err(Rejection(
            code::INVALID_REQUEST,
            "Group name can't be empty.".into(),
        )),
        RESOURCE_GROUP => Ok(Target::Group),
        RESOURCE_BROKER_LOGGER => Err(Rejection(
            code::INVALID_REQUEST,
            "Josefine has no dynamic broker loggers".into(),
        )),
        other => Err(Rejection(
            code::INVALID_REQUEST,
            format!("Unsupported resource type {other}"),
        )),
    }
}

/// Checks one value to be set on `target`.
pub(crate) fn check_value(target: Target, key: &str, value: &str) -> Result<(), Rejection> {
    let checked = match target {
        Target::Topic(_) => validate_topic_config(key, value),
        Target::Broker(id) => validate_dynamic_broker_config_at(key, value, id.is_some()),
        Target::Group => validate_group_config(key, value),
    };
    checked.map_err(|m| Rejection(target.config_error(), m))
}

/// The command for an alter of `target` (resource `name`).
pub(crate) fn command(
    target: Target,
    name: &str,
    replace_all: bool,
    set: Vec<(String, String)>,
    delete: Vec<String>,
) -> Command {
    match target {
        Target::Topic(topic_id) => Command::AlterTopicConfigs {
            topic_id,
            replace_all,
            set,
            delete,
        },
        Target::Broker(broker_id) => Command::AlterBrokerConfigs {
            broker_id,
            replace_all,
            set,
            delete,
        },
        Target::Group => Command::AlterGroupConfigs {
            group_id: name.to_string(),
            replace_all,
            set,
            delete,
        },
    }
}

fn meta_rejection(target: Target, e: MetaError) -> Rejection {
    match e {
        MetaError::InvalidConfig(m) => Rejection(target.config_error(), m),
        MetaError::UnknownTopicId(_) => Rejection(
            code::UNKNOWN_TOPIC_OR_PARTITION,
            "The topic does not exist.".into(),
        ),
        other => Rejection(
            super::create_topics::meta_error_code(&other),
            other.to_string(),
        ),
    }
}

/// Validates `cmd` against the current image (whole-result rules such as the compaction lags)
/// and, unless `validate_only`, proposes it.
pub(crate) async fn submit(
    broker: &Arc<Broker>,
    target: Target,
    cmd: Command,
    validate_only: bool,
) -> Result<(), Rejection> {
    broker
        .metadata
        .image()
        .validate(&cmd)
        .map_err(|e| meta_rejection(target, e))?;
    if validate_only {
        return Ok(());
    }
    broker
        .metadata
        .propose(cmd)
        .await
        .map_err(|e| meta_rejection(target, e))?;
    info!(?target, "configs altered");
    Ok(())
}

/// The request-level refusals of each resource, in order: past the per-request limit, or
/// named twice (Kafka: INVALID_REQUEST for every copy). `None`: go ahead.
pub(crate) fn precheck<'a>(
    resources: impl Iterator<Item = (i8, &'a StrBytes)> + Clone,
) -> Vec<Option<Rejection>> {
    let mut counts: HashMap<(i8, &str), usize> = HashMap::new();
    for (t, n) in resources.clone() {
        *counts.entry((t, n.as_str())).or_default() += 1;
    }
    resources
        .enumerate()
        .map(|(i, (t, n))| {
            if i >= limits::TOPICS_PER_REQUEST_MAX {
                Some(Rejection(
                    code::INVALID_REQUEST,
                    "too many resources in one request".into(),
                ))
            } else if counts[&(t, n.as_str())] > 1 {
                Some(Rejection(
                    code::INVALID_REQUEST,
                    "Duplicate resource in the request".into(),
                ))
            } else {
                None
            }
        })
        .collect()
}

/// The error code and message a resource's outcome is answered with.
pub(crate) fn answer(outcome: Result<(), Rejection>) -> (i16, Option<StrBytes>) {
    match outcome {
        Ok(()) => (code::NONE, None),
        Err(Rejection(c, m)) => (c, Some(str_bytes(m))),
    }
}

/// Refuses a config key named twice in one resource (Kafka: INVALID_REQUEST).
pub(crate) fn check_unique_keys<'a>(keys: impl Iterator<Item = &'a str>) -> Result<(), Rejection> {
    let mut seen = std::collections::HashSet::new();
    for k in keys {
        if !seen.insert(k) {
            return Err(Rejection(
                code::INVALID_REQUEST,
                format!("Error due to duplicate config keys: {k}"),
            ));
        }
    }
    Ok(())
}

async fn alter_one(
    broker: &Arc<Broker>,
    resource: &kafka_protocol::messages::alter_configs_request::AlterConfigsResource,
    validate_only: bool,
) -> Result<(), Rejection> {
    let target = resolve(
        &broker.metadata.image(),
        resource.resource_type,
        &resource.resource_name,
    )?;
    check_unique_keys(resource.configs.iter().map(|c| c.name.as_str()))?;
    let mut set = Vec::with_capacity(resource.configs.len());
    for c in &resource.configs {
        let Some(value) = &c.value else {
            return Err(Rejection(
                code::INVALID_REQUEST,
                format!("Null value not supported for : {}", c.name.as_str()),
            ));
        };
        check_value(target, &c.name, value)?;
        set.push((c.name.to_string(), value.to_string()));
    }
    submit(
        broker,
        target,
        command(target, &resource.resource_name, true, set, vec![]),
        validate_only,
    )
    .await
}

pub async fn handle(broker: &Arc<Broker>, request: AlterConfigsRequest) -> AlterConfigsResponse {
    let prechecks = precheck(
        request
            .resources
            .iter()
            .map(|r| (r.resource_type, &r.resource_name)),
    );
    let mut responses = Vec::with_capacity(request.resources.len());
    for (r, refused) in request.resources.iter().zip(prechecks) {
        let outcome = match refused {
            Some(rejection) => Err(rejection),
            None => alter_one(broker, r, request.validate_only).await,
        };
        let (error_code, message) = answer(outcome);
        responses.push(
            AlterConfigsResourceResponse::default()
                .with_error_code(error_code)
                .with_error_message(message)
                .with_resource_type(r.resource_type)
                .with_resource_name(r.resource_name.clone()),
        );
    }
    AlterConfigsResponse::default().with_responses(responses)
}

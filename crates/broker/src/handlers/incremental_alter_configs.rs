//! IncrementalAlterConfigs (v0-1): SET, DELETE, APPEND and SUBTRACT on topic configs and
//! dynamic broker configs, one metadata command per resource.
//!
//! APPEND/SUBTRACT apply only to LIST-typed configs (`cleanup.policy`, `log.cleanup.policy`);
//! they start from the current override, or Kafka's default when there is none, and arrive at
//! the metadata store as a SET of the resulting list. Shared resource handling and error rules
//! are in [`super::alter_configs`]. Must never: apply part of a resource's operations.

use std::sync::Arc;

use josefine_meta::broker_config::dynamic_broker_config_type;
use josefine_meta::group_config::group_config_def;
use josefine_meta::kafka_broker_configs::kafka_broker_config;
use josefine_meta::topic_config::{list_items, topic_config_def, ConfigType};
use josefine_meta::Image;
use kafka_protocol::messages::incremental_alter_configs_request::AlterConfigsResource;
use kafka_protocol::messages::incremental_alter_configs_response::AlterConfigsResourceResponse;
use kafka_protocol::messages::{IncrementalAlterConfigsRequest, IncrementalAlterConfigsResponse};

use super::alter_configs::{
    answer, check_unique_keys, check_value, command, precheck, resolve, submit, Rejection, Target,
};
use super::code;
use crate::broker::Broker;

const OP_SET: i8 = 0;
const OP_DELETE: i8 = 1;
const OP_APPEND: i8 = 2;
const OP_SUBTRACT: i8 = 3;

/// The current override of `key` on `target`, else Kafka's default, for APPEND/SUBTRACT; or
/// the rejection for a key that is not a list.
fn current_list(
    image: &Image,
    target: Target,
    key: &str,
    op_name: &str,
) -> Result<String, Rejection> {
    let (config_type, current, default) = match target {
        Target::Topic(id) => {
            let def = topic_config_def(key).ok_or_else(|| {
                Rejection(
                    code::INVALID_CONFIG,
                    format!("Unknown topic config name: {key}"),
                )
            })?;
            let current = image.topics.get(&id).and_then(|t| t.configs.get(key));
            (def.config_type, current.cloned(), def.kafka_default)
        }
        Target::Broker(id) => {
            let config_type = dynamic_broker_config_type(key).ok_or_else(|| {
                Rejection(
                    code::INVALID_REQUEST,
                    format!("Cannot update these configs dynamically: Set({key})"),
                )
            })?;
            let current = image
                .dynamic_broker_configs(id)
                .and_then(|c| c.get(key))
                .cloned();
            let default = kafka_broker_config(key).and_then(|c| c.default);
            (config_type, current, default.unwrap_or(""))
        }
        // Kafka's group configs are all INT or STRING.
        Target::Group => {
            let def = group_config_def(key).ok_or_else(|| {
                Rejection(
                    code::INVALID_CONFIG,
                    format!("Unknown group config name: {key}"),
                )
            })?;
            (def.config_type, None, def.default)
        }
    };
    if config_type != ConfigType::List {
        // Kafka 4.1's two wordings: the topic check and the broker-side one.
        let message = match target {
            Target::Topic(_) | Target::Group => {
                format!("Can't {op_name} to key {key} because its type is not LIST.")
            }
            Target::Broker(_) => format!(
                "Config value {} is not allowed for config key: {key}",
                op_name.to_ascii_lowercase()
            ),
        };
        return Err(Rejection(code::INVALID_CONFIG, message));
    }
    Ok(current.unwrap_or_else(|| default.to_string()))
}

/// Serializes incremental alters on this broker: APPEND/SUBTRACT read the current list from
/// the image and propose the result, so two concurrent ones on the same key must not both start
/// from the same snapshot (the second would drop the first's change).
static ALTERS: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

async fn alter_one(
    broker: &Arc<Broker>,
    resource: &AlterConfigsResource,
    validate_only: bool,
) -> Result<(), Rejection> {
    let _serialized = ALTERS.lock().await;
    let image = broker.metadata.image();
    let target = resolve(&image, resource.resource_type, &resource.resource_name)?;
    check_unique_keys(resource.configs.iter().map(|c| c.name.as_str()))?;
    let mut set = Vec::new();
    let mut delete = Vec::new();
    for c in &resource.configs {
        let key = c.name.as_str();
        let value = c.value.as_ref().map(|v| v.as_str());
        match c.config_operation {
            OP_DELETE => delete.push(key.to_string()),
            OP_SET | OP_APPEND | OP_SUBTRACT => {
                let Some(value) = value else {
                    return Err(Rejection(
                        code::INVALID_REQUEST,
                        format!("Null value not supported for : {key}"),
                    ));
                };
                let value = if c.config_operation == OP_SET {
                    value.to_string()
                } else {
                    let append = c.config_operation == OP_APPEND;
                    let op_name = if append { "APPEND" } else { "SUBTRACT" };
                    let current = current_list(&image, target, key, op_name)?;
                    let mut items: Vec<&str> = list_items(&current);
                    let given = list_items(value);
                    if append {
                        for g in given {
                            if !items.contains(&g) {
                                items.push(g);
                            }
                        }
                    } else {
                        items.retain(|i| !given.contains(i));
                    }
                    items.join(",")
                };
                check_value(target, key, &value)?;
                set.push((key.to_string(), value));
            }
            other => {
                return Err(Rejection(
                    code::INVALID_REQUEST,
                    format!("Unknown config operation {other} for {key}"),
                ))
            }
        }
    }
    submit(
        broker,
        target,
        command(target, &resource.resource_name, false, set, delete),
        validate_only,
    )
    .await
}

pub async fn handle(
    broker: &Arc<Broker>,
    request: IncrementalAlterConfigsRequest,
) -> IncrementalAlterConfigsResponse {
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
    IncrementalAlterConfigsResponse::default().with_responses(responses)
}

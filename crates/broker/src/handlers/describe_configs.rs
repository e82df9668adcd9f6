//! DescribeConfigs (v1-4): every topic config, every Kafka-named broker setting and every
//! group config (KIP-848, resource type 32; stored only) with its
//! effective value, where that value comes from, and (on request) its synonyms, type and
//! documentation.
//!
//! Sources, highest first, as in Kafka: the topic's override (DYNAMIC_TOPIC_CONFIG), this
//! broker's dynamic config (DYNAMIC_BROKER_CONFIG), the cluster-wide dynamic default
//! (DYNAMIC_DEFAULT_BROKER_CONFIG), `--set`/the config file (STATIC_BROKER_CONFIG), Kafka's
//! default (DEFAULT_CONFIG). A topic config's broker-level synonym (`retention.ms` ->
//! `log.retention.ms`) supplies its value when the topic has no override. The BROKER resource
//! "" is the cluster default and lists only the dynamic defaults, like Kafka. Must never:
//! describe a value other than the one the partitions use (both come from
//! `BrokerSettings::effective` and the image).

use std::collections::BTreeMap;
use std::sync::Arc;

use josefine_meta::broker_config::{
    dynamic_broker_config_type, is_honoured, is_sensitive_broker_config,
};
use josefine_meta::group_config::GROUP_CONFIGS;
use josefine_meta::kafka_broker_configs::{kafka_broker_config, KAFKA_BROKER_CONFIGS};
use josefine_meta::topic_config::{ConfigDef, TOPIC_CONFIGS};
use josefine_meta::Image;
use kafka_protocol::messages::describe_configs_response::{
    DescribeConfigsResourceResult, DescribeConfigsResult, DescribeConfigsSynonym,
};
use kafka_protocol::messages::{DescribeConfigsRequest, DescribeConfigsResponse};

use super::alter_configs::{
    RESOURCE_BROKER, RESOURCE_BROKER_LOGGER, RESOURCE_GROUP, RESOURCE_TOPIC,
};
use super::{code, str_bytes};
use crate::broker::Broker;
use crate::config::BrokerSettings;

const SOURCE_DYNAMIC_TOPIC_CONFIG: i8 = 1;
const SOURCE_DYNAMIC_BROKER_CONFIG: i8 = 2;
const SOURCE_DYNAMIC_DEFAULT_BROKER_CONFIG: i8 = 3;
const SOURCE_STATIC_BROKER_CONFIG: i8 = 4;
const SOURCE_DEFAULT_CONFIG: i8 = 5;
const SOURCE_GROUP_CONFIG: i8 = 8;

/// Broker settings that are other units of the same value (Kafka lists them as synonyms).
fn unit_synonyms(key: &str) -> &'static [&'static str] {
    match key {
        "log.retention.ms" => &[
            "log.retention.ms",
            "log.retention.minutes",
            "log.retention.hours",
        ],
        "log.roll.ms" => &["log.roll.ms", "log.roll.hours"],
        _ => &[],
    }
}

/// The layers a broker-level value can come from, for one broker.
struct Layers<'a> {
    own: Option<&'a BTreeMap<String, String>>,
    cluster: &'a BTreeMap<String, String>,
    /// Static settings: the broker's and the security ones (listeners, ssl.*, sasl.*).
    static_values: BTreeMap<String, String>,
    effective: BrokerSettings,
}

impl<'a> Layers<'a> {
    fn new(broker: &'a Broker, image: &'a Image) -> Self {
        let settings = &broker.config.broker;
        Layers {
            own: image.broker_configs.get(&broker.config.node_id),
            cluster: &image.cluster_broker_configs,
            static_values: settings
                .static_values
                .iter()
                .chain(broker.config.security_values.iter())
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            effective: settings.effective(image, broker.config.node_id),
        }
    }

    /// Synonyms of broker setting `key` in precedence order: (name, value, source).
    fn synonyms(&self, key: &str) -> Vec<(String, Option<String>, i8)> {
        let names: Vec<&str> = match unit_synonyms(key) {
            [] => vec![key],
            units => units.to_vec(),
        };
        let mut out = Vec::new();
        for (layer, source) in [
            (self.own, SOURCE_DYNAMIC_BROKER_CONFIG),
            (Some(self.cluster), SOURCE_DYNAMIC_DEFAULT_BROKER_CONFIG),
            (Some(&self.static_values), SOURCE_STATIC_BROKER_CONFIG),
        ] {
            let Some(layer) = layer else { continue };
            for n in &names {
                if let Some(v) = layer.get(*n) {
                    out.push((n.to_string(), Some(v.clone()), source));
                }
            }
        }
        let default = if BrokerSettings::KEYS.contains(&key) {
            BrokerSettings::default().value_of(key)
        } else {
            kafka_broker_config(key).and_then(|c| c.default.map(str::to_string))
        };
        if let Some(v) = default {
            out.push((key.to_string(), Some(v), SOURCE_DEFAULT_CONFIG));
        }
        out
    }

    /// The broker setting's effective value and the source of the layer that set it. A
    /// dynamic value Josefine only stores is shown as set (Kafka shows it so too).
    fn value(&self, key: &str) -> (Option<String>, i8) {
        let synonyms = self.synonyms(key);
        let source = synonyms.first().map_or(SOURCE_DEFAULT_CONFIG, |s| s.2);
        let stored_only = matches!(
            source,
            SOURCE_DYNAMIC_BROKER_CONFIG | SOURCE_DYNAMIC_DEFAULT_BROKER_CONFIG
        ) && !is_honoured(key);
        if BrokerSettings::KEYS.contains(&key) && !stored_only {
            return (self.effective.value_of(key), source);
        }
        (synonyms.into_iter().next().and_then(|s| s.1), source)
    }
}

fn synonym_entries(synonyms: Vec<(String, Option<String>, i8)>) -> Vec<DescribeConfigsSynonym> {
    synonyms
        .into_iter()
        .map(|(name, value, source)| {
            DescribeConfigsSynonym::default()
                .with_name(str_bytes(name))
                .with_value(value.map(str_bytes))
                .with_source(source)
        })
        .collect()
}

/// The shape of one described config, whatever the resource.
struct Entry<'a> {
    name: &'a str,
    value: Option<String>,
    read_only: bool,
    source: i8,
    sensitive: bool,
    synonyms: Vec<(String, Option<String>, i8)>,
    config_type: josefine_meta::topic_config::ConfigType,
}

impl Entry<'_> {
    /// The wire entry, with synonyms and documentation (made only when asked for) as requested.
    fn into_result(
        self,
        detail: Detail,
        doc: impl FnOnce() -> String,
    ) -> DescribeConfigsResourceResult {
        DescribeConfigsResourceResult::default()
            .with_name(str_bytes(self.name))
            .with_value(self.value.map(str_bytes))
            .with_read_only(self.read_only)
            .with_config_source(self.source)
            .with_is_sensitive(self.sensitive)
            .with_synonyms(if detail.synonyms {
                synonym_entries(self.synonyms)
            } else {
                vec![]
            })
            .with_config_type(self.config_type.kafka_code())
            .with_documentation(detail.documentation.then(|| str_bytes(doc())))
    }
}

/// How much of each entry the request asked for.
#[derive(Clone, Copy)]
struct Detail {
    synonyms: bool,
    documentation: bool,
}

/// One topic config entry: override, else the broker synonym's layers, else Kafka's default.
fn topic_entry(
    def: &ConfigDef,
    overrides: &BTreeMap<String, String>,
    layers: &Layers,
    detail: Detail,
) -> DescribeConfigsResourceResult {
    let mut synonyms = Vec::new();
    if let Some(v) = overrides.get(def.name) {
        synonyms.push((
            def.name.to_string(),
            Some(v.clone()),
            SOURCE_DYNAMIC_TOPIC_CONFIG,
        ));
    }
    if let Some(k) = def.broker_synonym {
        // Only the layers that really set it: the broker's built-in default may differ from
        // the topic default Kafka prints (flush.ms), so the default comes from the table.
        synonyms.extend(
            layers
                .synonyms(k)
                .into_iter()
                .filter(|s| s.2 != SOURCE_DEFAULT_CONFIG),
        );
    }
    let (value, source) = match synonyms.first() {
        Some((_, v, SOURCE_DYNAMIC_TOPIC_CONFIG)) => (v.clone(), SOURCE_DYNAMIC_TOPIC_CONFIG),
        // A broker layer: show the resolved value (log.retention.hours=2 -> 7200000).
        Some((_, raw, source)) => (
            def.broker_synonym
                .and_then(|k| layers.effective.value_of(k))
                .or_else(|| raw.clone()),
            *source,
        ),
        None => (Some(def.kafka_default.to_string()), SOURCE_DEFAULT_CONFIG),
    };
    if let Some(k) = def.broker_synonym {
        synonyms.push((
            k.to_string(),
            Some(def.kafka_default.to_string()),
            SOURCE_DEFAULT_CONFIG,
        ));
    }
    if source == SOURCE_DYNAMIC_TOPIC_CONFIG {
        // Kafka 4.1 lists only the override as the synonym of an overridden topic config.
        synonyms.truncate(1);
    }
    Entry {
        name: def.name,
        value,
        read_only: false,
        source,
        sensitive: false,
        synonyms,
        config_type: def.config_type,
    }
    .into_result(detail, || def.doc.to_string())
}

fn broker_doc(key: &str) -> String {
    match TOPIC_CONFIGS.iter().find(|d| d.broker_synonym == Some(key)) {
        Some(d) => format!("Broker default of topic config {}: {}", d.name, d.doc),
        None if BrokerSettings::KEYS.contains(&key) => {
            format!("Josefine broker setting {key} (see `josefine --help`).")
        }
        None => format!(
            "Kafka broker config {key}: accepted and stored for compatibility; Josefine does not act on it."
        ),
    }
}

fn broker_entry(
    key: &str,
    value: Option<String>,
    source: i8,
    synonyms: Vec<(String, Option<String>, i8)>,
    detail: Detail,
) -> DescribeConfigsResourceResult {
    // Kafka never shows a password's value, in the entry or its synonyms (also per listener
    // and per mechanism: `listener.name.<l>.<mechanism>.sasl.jaas.config`).
    let sensitive = is_sensitive_broker_config(key) || crate::security::tls::is_sensitive(key);
    let hide = |v: Option<String>| v.filter(|_| !sensitive);
    let synonyms = synonyms
        .into_iter()
        .map(|(n, v, s)| (n, hide(v), s))
        .collect();
    let config_type = kafka_broker_config(key)
        .map_or_else(|| BrokerSettings::config_type(key), |c| c.config_type);
    Entry {
        name: key,
        value: hide(value),
        read_only: dynamic_broker_config_type(key).is_none(),
        source,
        sensitive,
        synonyms,
        config_type,
    }
    .into_result(detail, || broker_doc(key))
}

fn describe_topic(
    name: &str,
    image: &Image,
    layers: &Layers,
    detail: Detail,
) -> Result<Vec<DescribeConfigsResourceResult>, (i16, String)> {
    let Some(topic) = image.topic_by_name(name) else {
        return Err((
            code::UNKNOWN_TOPIC_OR_PARTITION,
            format!("Topic '{name}' does not exist."),
        ));
    };
    Ok(TOPIC_CONFIGS
        .iter()
        // Kafka hides its test-only setting unless the topic sets it.
        .filter(|d| d.name != "internal.segment.bytes" || topic.configs.contains_key(d.name))
        .map(|d| topic_entry(d, &topic.configs, layers, detail))
        .collect())
}

/// A group's configs: its override (GROUP_CONFIG) or Kafka's default, each with itself as the
/// only synonym, as Kafka 4.1 answers; a group that does not exist has the defaults.
fn describe_group(
    name: &str,
    image: &Image,
    detail: Detail,
) -> Result<Vec<DescribeConfigsResourceResult>, (i16, String)> {
    if name.is_empty() {
        return Err((code::INVALID_REQUEST, "Group name can't be empty.".into()));
    }
    let overrides = image.group_configs.get(name);
    Ok(GROUP_CONFIGS
        .iter()
        .map(|d| {
            let (value, source) = match overrides.and_then(|o| o.get(d.name)) {
                Some(v) => (v.clone(), SOURCE_GROUP_CONFIG),
                None => (d.default.to_string(), SOURCE_DEFAULT_CONFIG),
            };
            let synonyms = vec![(d.name.to_string(), Some(value.clone()), source)];
            Entry {
                name: d.name,
                value: Some(value),
                read_only: false,
                source,
                sensitive: false,
                synonyms,
                config_type: d.config_type,
            }
            .into_result(detail, || d.doc.to_string())
        })
        .collect())
}

fn describe_broker(
    name: &str,
    broker: &Broker,
    image: &Image,
    layers: &Layers,
    detail: Detail,
) -> Result<Vec<DescribeConfigsResourceResult>, (i16, String)> {
    if name.is_empty() {
        return Ok(image
            .cluster_broker_configs
            .iter()
            .map(|(k, v)| {
                let synonyms = vec![(
                    k.clone(),
                    Some(v.clone()),
                    SOURCE_DYNAMIC_DEFAULT_BROKER_CONFIG,
                )];
                broker_entry(
                    k,
                    Some(v.clone()),
                    SOURCE_DYNAMIC_DEFAULT_BROKER_CONFIG,
                    synonyms,
                    detail,
                )
            })
            .collect());
    }
    if name != broker.config.node_id.to_string() {
        return Err((
            code::INVALID_REQUEST,
            // Kafka's ConfigHelper wording.
            format!(
                "Unexpected broker id, expected {} or empty string, but received {name}",
                broker.config.node_id
            ),
        ));
    }
    // Kafka's broker configs, Josefine's own settings, and any stored listener override.
    let mut keys: std::collections::BTreeSet<&str> =
        KAFKA_BROKER_CONFIGS.iter().map(|c| c.name).collect();
    keys.extend(BrokerSettings::KEYS.iter().copied());
    keys.extend(layers.cluster.keys().map(String::as_str));
    keys.extend(broker.config.security_values.keys().map(String::as_str));
    keys.extend(
        layers
            .own
            .into_iter()
            .flat_map(|l| l.keys().map(String::as_str)),
    );
    Ok(keys
        .into_iter()
        .map(|key| {
            let (value, source) = layers.value(key);
            broker_entry(key, value, source, layers.synonyms(key), detail)
        })
        .collect())
}

pub fn handle(broker: &Arc<Broker>, request: DescribeConfigsRequest) -> DescribeConfigsResponse {
    let image = broker.metadata.image();
    let layers = Layers::new(broker, &image);
    let detail = Detail {
        synonyms: request.include_synonyms,
        documentation: request.include_documentation,
    };
    let results = request
        .resources
        .iter()
        .take(crate::limits::TOPICS_PER_REQUEST_MAX)
        .map(|r| {
            let result = DescribeConfigsResult::default()
                .with_resource_type(r.resource_type)
                .with_resource_name(r.resource_name.clone());
            let described = match r.resource_type {
                RESOURCE_TOPIC => describe_topic(&r.resource_name, &image, &layers, detail),
                RESOURCE_BROKER => {
                    describe_broker(&r.resource_name, broker, &image, &layers, detail)
                }
                RESOURCE_GROUP => describe_group(&r.resource_name, &image, detail),
                // kafka-configs --entity-type broker-loggers: Josefine's logging is `RUST_LOG`,
                // not dynamic log4j loggers, so this broker has none to list.
                RESOURCE_BROKER_LOGGER
                    if r.resource_name.as_str() == broker.config.node_id.to_string() =>
                {
                    Ok(vec![])
                }
                other => Err((
                    code::INVALID_REQUEST,
                    format!("resource type {other} is not supported"),
                )),
            };
            match described {
                Ok(configs) => {
                    // null or empty = every config, as in Kafka's ConfigHelper.
                    let wanted = |name: &str| {
                        r.configuration_keys.as_ref().is_none_or(|keys| {
                            keys.is_empty() || keys.iter().any(|k| k.as_str() == name)
                        })
                    };
                    let configs = configs.into_iter().filter(|e| wanted(&e.name)).collect();
                    result.with_error_code(code::NONE).with_configs(configs)
                }
                Err((error, message)) => result
                    .with_error_code(error)
                    .with_error_message(Some(str_bytes(message))),
            }
        })
        .collect();
    DescribeConfigsResponse::default().with_results(results)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_topic_config_with_a_broker_synonym_names_a_known_setting() {
        // A synonym the broker does not know would show a topic default that no broker
        // setting can change; the stored-only ones are listed here on purpose.
        let stored_only = [
            "log.segment.delete.delay.ms",
            "log.preallocate",
            "log.index.size.max.bytes",
            "log.roll.jitter.ms",
            "unclean.leader.election.enable",
        ];
        for d in TOPIC_CONFIGS {
            if let Some(k) = d.broker_synonym {
                assert!(
                    BrokerSettings::KEYS.contains(&k) || stored_only.contains(&k),
                    "{} -> {k}",
                    d.name
                );
            }
        }
    }
}

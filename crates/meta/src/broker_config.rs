//! Dynamic broker configs: the Kafka broker settings that AlterConfigs may change at run time
//! (for one broker or as the cluster-wide default), which of them Josefine acts on, and the
//! rules Kafka 4.1's `DynamicBrokerConfig.validateConfigs` applies to an alter.
//!
//! Owns: which broker settings are dynamic and what values they take. Every config Kafka marks
//! dynamic (`kafka_broker_configs.rs`) is accepted and stored; the ones in
//! [`DYNAMIC_BROKER_CONFIGS`] are honoured at once with Kafka's ranges, the others are checked
//! by type only and stored (README lists them). `listener.name.<listener>.<config>` overrides are
//! stored like Kafka's. The broker resolves effective settings as per-broker dynamic, then
//! cluster-default dynamic, then static (`--set`, file), then Kafka default. Must never: accept
//! a setting that Kafka does not allow to change dynamically (`num.partitions`,
//! `log.retention.hours`, ...), a per-broker one (listeners, SSL, SASL) at the cluster level, or
//! a name Kafka does not know; pure like the rest of the crate.

use crate::kafka_broker_configs::kafka_broker_config;
use crate::topic_config::{validate_value, ConfigType, Kind, COMPRESSION_TYPES};

/// One dynamic broker config.
#[derive(Debug, Clone, Copy)]
pub struct DynamicBrokerConfigDef {
    pub name: &'static str,
    pub config_type: ConfigType,
    pub kind: Kind,
}

const fn def(name: &'static str, config_type: ConfigType, kind: Kind) -> DynamicBrokerConfigDef {
    DynamicBrokerConfigDef {
        name,
        config_type,
        kind,
    }
}

use ConfigType as T;

const I32_MAX: i64 = i32::MAX as i64;

/// Kafka 4.1's dynamic broker configs (DynamicBrokerConfig.AllDynamicConfigs) that Josefine
/// honours, with Kafka's ranges, sorted by name.
pub const DYNAMIC_BROKER_CONFIGS: &[DynamicBrokerConfigDef] = &[
    def("compression.gzip.level", T::Int, Kind::IntegerOr(1, 9, -1)),
    def("compression.lz4.level", T::Int, Kind::Integer(1, 17)),
    def(
        "compression.type",
        T::String,
        Kind::OneOf(COMPRESSION_TYPES),
    ),
    def("compression.zstd.level", T::Int, Kind::Integer(-131072, 22)),
    def(
        "log.cleaner.backoff.ms",
        T::Long,
        Kind::Integer(0, i64::MAX),
    ),
    def(
        "log.cleaner.dedupe.buffer.size",
        T::Long,
        Kind::Integer(1, i64::MAX),
    ),
    def(
        "log.cleaner.delete.retention.ms",
        T::Long,
        Kind::Integer(0, i64::MAX),
    ),
    def(
        "log.cleaner.io.max.bytes.per.second",
        T::Double,
        Kind::Double(1.0, f64::MAX),
    ),
    def(
        "log.cleaner.max.compaction.lag.ms",
        T::Long,
        Kind::Integer(1, i64::MAX),
    ),
    def(
        "log.cleaner.min.cleanable.ratio",
        T::Double,
        Kind::Double(0.0, 1.0),
    ),
    def(
        "log.cleaner.min.compaction.lag.ms",
        T::Long,
        Kind::Integer(0, i64::MAX),
    ),
    def(
        "log.cleanup.policy",
        T::List,
        Kind::ListOf(&["compact", "delete"]),
    ),
    def(
        "log.flush.interval.messages",
        T::Long,
        Kind::Integer(1, i64::MAX),
    ),
    def("log.flush.interval.ms", T::Long, Kind::Integer(0, i64::MAX)),
    def(
        "log.index.interval.bytes",
        T::Int,
        Kind::Integer(0, I32_MAX),
    ),
    def(
        "log.message.timestamp.after.max.ms",
        T::Long,
        Kind::Integer(0, i64::MAX),
    ),
    def(
        "log.message.timestamp.before.max.ms",
        T::Long,
        Kind::Integer(0, i64::MAX),
    ),
    def(
        "log.message.timestamp.type",
        T::String,
        Kind::OneOf(&["CreateTime", "LogAppendTime"]),
    ),
    def("log.retention.bytes", T::Long, Kind::Integer(-1, i64::MAX)),
    def("log.retention.ms", T::Long, Kind::Integer(-1, i64::MAX)),
    def("log.roll.ms", T::Long, Kind::Integer(1, i64::MAX)),
    def("log.segment.bytes", T::Int, Kind::Integer(1 << 20, I32_MAX)),
    def("message.max.bytes", T::Int, Kind::Integer(0, I32_MAX)),
    def("min.insync.replicas", T::Int, Kind::Integer(1, I32_MAX)),
    def("unclean.leader.election.enable", T::Boolean, Kind::Bool),
];

/// The definition of a dynamic broker config Josefine honours, if it is one.
pub fn dynamic_broker_config_def(name: &str) -> Option<&'static DynamicBrokerConfigDef> {
    DYNAMIC_BROKER_CONFIGS.iter().find(|d| d.name == name)
}

/// Kafka's `ListenerMechanismConfigs`: under a listener prefix they also carry a SASL mechanism
/// (`listener.name.sasl_ssl.plain.sasl.jaas.config`).
const LISTENER_MECHANISM_CONFIGS: &[&str] = &[
    "sasl.jaas.config",
    "sasl.login.callback.handler.class",
    "sasl.login.class",
    "sasl.server.callback.handler.class",
    "connections.max.reauth.ms",
];

/// Kafka's `SslConfigs.RECONFIGURABLE_CONFIGS`: dynamic only under a listener prefix.
const LISTENER_ONLY_SECURITY_CONFIGS: &[&str] = &[
    "ssl.key.password",
    "ssl.keystore.certificate.chain",
    "ssl.keystore.key",
    "ssl.keystore.location",
    "ssl.keystore.password",
    "ssl.keystore.type",
    "ssl.truststore.certificates",
    "ssl.truststore.location",
    "ssl.truststore.password",
    "ssl.truststore.type",
];

/// Kafka's `ClusterLevelListenerConfigs`: listener configs that may be set cluster-wide.
const CLUSTER_LEVEL_LISTENER_CONFIGS: &[&str] = &[
    "max.connections",
    "max.connection.creation.rate",
    "num.network.threads",
];

/// The config a `listener.name.<listener>.<config>` override stands for (Kafka's
/// `ListenerConfigRegex`: the listener name has no dot), with any SASL mechanism dropped.
fn listener_base(name: &str) -> Option<&str> {
    let rest = name.strip_prefix("listener.name.")?;
    let (_, base) = rest.split_once('.')?;
    Some(
        LISTENER_MECHANISM_CONFIGS
            .iter()
            .find(|m| base.ends_with(*m))
            .copied()
            .unwrap_or(base),
    )
}

/// Kafka's `PerBrokerConfigs`: the SSL, SASL and listener configs, which differ per broker.
fn per_broker_only(name: &str) -> bool {
    if let Some(base) = listener_base(name) {
        return !CLUSTER_LEVEL_LISTENER_CONFIGS.contains(&base);
    }
    kafka_broker_config(name).is_some_and(|c| c.dynamic)
        && (name.starts_with("ssl.")
            || name.starts_with("sasl.")
            || matches!(
                name,
                "listeners"
                    | "advertised.listeners"
                    | "listener.security.protocol.map"
                    | "principal.builder.class"
            ))
}

/// Kafka's type of dynamic broker config `name` (listener overrides: their base config's;
/// a base Kafka does not define is a STRING), None when it is not dynamic.
pub fn dynamic_broker_config_type(name: &str) -> Option<ConfigType> {
    if let Some(d) = dynamic_broker_config_def(name) {
        return Some(d.config_type);
    }
    if let Some(base) = listener_base(name) {
        return Some(kafka_broker_config(base).map_or(ConfigType::String, |c| c.config_type));
    }
    kafka_broker_config(name)
        .filter(|c| c.dynamic)
        .map(|c| c.config_type)
}

/// Whether Kafka reports broker config `name` as sensitive (a password, also under a listener
/// prefix: Kafka's `isPasswordConfig` matches the name's end).
pub fn is_sensitive_broker_config(name: &str) -> bool {
    let base = listener_base(name).unwrap_or(name);
    kafka_broker_config(base).is_some_and(|c| c.sensitive)
}

/// Whether Josefine acts on a dynamic change of `name` (the others are stored and described).
pub fn is_honoured(name: &str) -> bool {
    dynamic_broker_config_def(name).is_some()
}

/// Checks one dynamic broker config's name and value; the error names the key.
pub fn validate_dynamic_broker_config(key: &str, value: &str) -> Result<(), String> {
    if let Some(d) = dynamic_broker_config_def(key) {
        return validate_value(key, d.kind, value);
    }
    if dynamic_broker_config_type(key).is_none() {
        return Err(format!(
            "Cannot update these configs dynamically: Set({key})"
        ));
    }
    if LISTENER_ONLY_SECURITY_CONFIGS.contains(&key) {
        return Err(format!(
            "These security configs can be dynamically updated only per-listener using the listener prefix: Set({key})"
        ));
    }
    // Kafka's own validator for the config (or, under a listener prefix, for its base config);
    // a base Kafka does not define is a free STRING. Kafka's relative checks on live thread
    // pools (at most double or half the running count) have no pool here to relate to.
    let base = listener_base(key).unwrap_or(key);
    validate_value(
        key,
        kafka_broker_config(base).map_or(Kind::Any, |c| c.kind),
        value,
    )
}

/// [`validate_dynamic_broker_config`] for one broker (`per_broker`) or the cluster default,
/// where Kafka refuses the per-broker configs.
pub fn validate_dynamic_broker_config_at(
    key: &str,
    value: &str,
    per_broker: bool,
) -> Result<(), String> {
    validate_dynamic_broker_config(key, value)?;
    if !per_broker && per_broker_only(key) {
        return Err(format!(
            "Cannot update these configs at default cluster level, broker id must be specified: Set({key})"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dynamic_keys_validate_and_static_ones_are_refused() {
        assert!(validate_dynamic_broker_config("log.retention.ms", "1000").is_ok());
        assert!(validate_dynamic_broker_config("log.cleanup.policy", "compact,delete").is_ok());
        assert!(
            validate_dynamic_broker_config("log.cleaner.io.max.bytes.per.second", "1e6").is_ok()
        );
        assert!(validate_dynamic_broker_config("log.retention.ms", "x").is_err());
        assert!(validate_dynamic_broker_config("log.segment.bytes", "1024").is_err());
        for fixed in [
            "num.partitions",
            "log.retention.hours",
            "node.id",
            "nonsense",
        ] {
            let e = validate_dynamic_broker_config(fixed, "1").unwrap_err();
            assert!(e.contains(fixed), "{e}");
        }
        for w in DYNAMIC_BROKER_CONFIGS.windows(2) {
            assert!(w[0].name < w[1].name);
        }
    }

    #[test]
    fn every_kafka_dynamic_config_is_accepted_by_type_where_kafka_allows_it() {
        use crate::kafka_broker_configs::KAFKA_BROKER_CONFIGS;
        for w in KAFKA_BROKER_CONFIGS.windows(2) {
            assert!(w[0].name < w[1].name, "sorted for the binary search");
        }
        let dynamic = KAFKA_BROKER_CONFIGS.iter().filter(|c| c.dynamic).count();
        assert!(dynamic > 80, "{dynamic}");
        assert!(validate_dynamic_broker_config("num.io.threads", "16").is_ok());
        let e = validate_dynamic_broker_config("num.io.threads", "many").unwrap_err();
        assert!(e.ends_with("Not a number of type INT"), "{e}");
        assert!(
            validate_dynamic_broker_config("sasl.kerberos.min.time.before.relogin", "1").is_ok()
        );
        assert!(validate_dynamic_broker_config("log.cleaner.threads", "2").is_ok());
        assert!(validate_dynamic_broker_config("ssl.cipher.suites", "A,B").is_ok());
        let e = validate_dynamic_broker_config("ssl.keystore.location", "/k").unwrap_err();
        assert!(e.contains("only per-listener"), "{e}");
        assert!(
            validate_dynamic_broker_config("listener.name.ext.ssl.keystore.location", "/k").is_ok()
        );
        assert!(
            validate_dynamic_broker_config("listener.name.ext.plain.sasl.jaas.config", "x").is_ok()
        );
        assert!(is_sensitive_broker_config(
            "listener.name.ext.plain.sasl.jaas.config"
        ));
        assert!(is_sensitive_broker_config("ssl.keystore.password"));
        assert!(!is_sensitive_broker_config("ssl.keystore.type"));
        let e =
            validate_dynamic_broker_config("listener.name.ext.max.connections", "x").unwrap_err();
        assert!(e.contains("Not a number of type INT"), "{e}");
        // Per-broker configs are refused at the cluster level only.
        let e = validate_dynamic_broker_config_at("ssl.cipher.suites", "A", false).unwrap_err();
        assert!(
            e.starts_with("Cannot update these configs at default cluster level"),
            "{e}"
        );
        assert!(validate_dynamic_broker_config_at("ssl.cipher.suites", "A", true).is_ok());
        assert!(validate_dynamic_broker_config_at("max.connections", "5", false).is_ok());
        assert!(
            validate_dynamic_broker_config_at("listener.name.ext.max.connections", "5", false)
                .is_ok()
        );
        assert!(
            validate_dynamic_broker_config_at("listener.name.ext.ssl.protocol", "TLS", false)
                .is_err()
        );
        assert!(validate_dynamic_broker_config_at("num.io.threads", "4", false).is_ok());
        assert!(is_honoured("log.retention.ms") && !is_honoured("num.io.threads"));
    }

    #[test]
    fn store_only_configs_are_range_checked_with_kafkas_validators() {
        // Each message as Kafka 4.1.2 answered the same IncrementalAlterConfigs.
        for (key, value, message) in [
            ("num.io.threads", "0", "Invalid value 0 for configuration num.io.threads: Value must be at least 1"),
            ("max.connections", "-1", "Invalid value -1 for configuration max.connections: Value must be at least 0"),
            ("log.cleaner.min.cleanable.ratio", "2", "Invalid value 2.0 for configuration log.cleaner.min.cleanable.ratio: Value must be no more than 1"),
            ("compression.gzip.level", "12", "Invalid value 12 for configuration compression.gzip.level: Value must be between 1 and 9 or equal to -1"),
            ("ssl.client.auth", "x", "Invalid value x for configuration ssl.client.auth: String must be one of: required, requested, none"),
            ("log.index.size.max.bytes", "2", "Invalid value 2 for configuration log.index.size.max.bytes: Value must be at least 4"),
        ] {
            assert_eq!(validate_dynamic_broker_config(key, value).unwrap_err(), message);
        }
        // A listener override is checked by its base config's validator.
        let e =
            validate_dynamic_broker_config("listener.name.ext.ssl.client.auth", "x").unwrap_err();
        assert!(
            e.ends_with("String must be one of: required, requested, none"),
            "{e}"
        );
        assert!(
            validate_dynamic_broker_config("listener.name.ext.ssl.client.auth", "required").is_ok()
        );
        assert!(validate_dynamic_broker_config("num.io.threads", "1").is_ok());
    }
}

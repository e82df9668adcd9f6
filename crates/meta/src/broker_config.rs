//! Dynamic broker configs: the Kafka broker settings that AlterConfigs may change at run time
//! (for one broker or as the cluster-wide default) and that Josefine honours.
//!
//! Owns: which broker settings are dynamic and what values they take. The broker resolves
//! effective settings as per-broker dynamic, then cluster-default dynamic, then static (`--set`,
//! file), then Kafka default. Must never: accept a setting that Kafka does not allow to change
//! dynamically (`num.partitions`, `log.retention.hours`, ...) or one the broker would store but
//! not apply; pure like the rest of the crate.

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

/// The definition of a dynamic broker config, if it is one.
pub fn dynamic_broker_config_def(name: &str) -> Option<&'static DynamicBrokerConfigDef> {
    DYNAMIC_BROKER_CONFIGS.iter().find(|d| d.name == name)
}

/// Checks one dynamic broker config; the error names the key.
pub fn validate_dynamic_broker_config(key: &str, value: &str) -> Result<(), String> {
    let Some(d) = dynamic_broker_config_def(key) else {
        return Err(format!(
            "Cannot update these configs dynamically: Set({key})"
        ));
    };
    validate_value(key, d.kind, value)
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
            "broker.id",
            "nonsense",
        ] {
            let e = validate_dynamic_broker_config(fixed, "1").unwrap_err();
            assert!(e.contains(fixed), "{e}");
        }
        for w in DYNAMIC_BROKER_CONFIGS.windows(2) {
            assert!(w[0].name < w[1].name);
        }
    }
}

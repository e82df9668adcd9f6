//! Group configs (KIP-848, resource type GROUP = 32): the per-group overrides Kafka 4.1 accepts
//! through IncrementalAlterConfigs/AlterConfigs and reports with DescribeConfigs.
//!
//! Owns: the names, types and defaults of Kafka 4.1's group configs and Kafka's validation of a
//! group's whole resulting set (`GroupConfig.validate`: each value's type and ConfigDef bound,
//! then the broker-level bounds `group.consumer.min/max.session.timeout.ms`, ..., then session
//! timeout above heartbeat interval). The broker-level bounds are Kafka's defaults: Josefine has
//! no consumer/share/streams group protocol, so it has no such broker settings to change them.
//! The values are stored and described only; they take effect when the KIP-848 protocols land.
//! Must never: accept a name Kafka does not know, or depend on anything but its arguments.

use std::collections::BTreeMap;

use crate::topic_config::{validate_value, ConfigType, Kind};

/// One group config.
#[derive(Debug, Clone, Copy)]
pub struct GroupConfigDef {
    pub name: &'static str,
    pub config_type: ConfigType,
    pub kind: Kind,
    /// Kafka's default (the broker-level `group.*` setting's default).
    pub default: &'static str,
    /// The broker settings bounding it (Kafka's names, Kafka's default values), if any.
    pub bounds: Option<(&'static str, i64, &'static str, i64)>,
    pub doc: &'static str,
}

const I32_MAX: i64 = i32::MAX as i64;

/// Kafka 4.1's group configs, sorted by name.
pub const GROUP_CONFIGS: &[GroupConfigDef] = &[
    GroupConfigDef {
        name: "consumer.heartbeat.interval.ms",
        config_type: ConfigType::Int,
        kind: Kind::Integer(1, I32_MAX),
        default: "5000",
        bounds: Some((
            "group.consumer.min.heartbeat.interval.ms",
            5000,
            "group.consumer.max.heartbeat.interval.ms",
            15000,
        )),
        doc: "Heartbeat interval of this consumer group's members (KIP-848; stored only).",
    },
    GroupConfigDef {
        name: "consumer.session.timeout.ms",
        config_type: ConfigType::Int,
        kind: Kind::Integer(1, I32_MAX),
        default: "45000",
        bounds: Some((
            "group.consumer.min.session.timeout.ms",
            45000,
            "group.consumer.max.session.timeout.ms",
            60000,
        )),
        doc: "Session timeout of this consumer group's members (KIP-848; stored only).",
    },
    GroupConfigDef {
        name: "share.auto.offset.reset",
        config_type: ConfigType::String,
        kind: Kind::Any,
        default: "latest",
        bounds: None,
        doc: "Where a share group starts reading a partition it has no offset for (stored only).",
    },
    GroupConfigDef {
        name: "share.heartbeat.interval.ms",
        config_type: ConfigType::Int,
        kind: Kind::Integer(1, I32_MAX),
        default: "5000",
        bounds: Some((
            "group.share.min.heartbeat.interval.ms",
            5000,
            "group.share.max.heartbeat.interval.ms",
            15000,
        )),
        doc: "Heartbeat interval of this share group's members (stored only).",
    },
    GroupConfigDef {
        name: "share.isolation.level",
        config_type: ConfigType::String,
        kind: Kind::OneOf(&["read_committed", "read_uncommitted"]),
        default: "read_uncommitted",
        bounds: None,
        doc: "Which records a share group reads (stored only).",
    },
    GroupConfigDef {
        name: "share.record.lock.duration.ms",
        config_type: ConfigType::Int,
        kind: Kind::Integer(1000, I32_MAX),
        default: "30000",
        bounds: Some((
            "group.share.min.record.lock.duration.ms",
            15000,
            "group.share.max.record.lock.duration.ms",
            60000,
        )),
        doc: "How long a share group member holds an acquired record (stored only).",
    },
    GroupConfigDef {
        name: "share.session.timeout.ms",
        config_type: ConfigType::Int,
        kind: Kind::Integer(1, I32_MAX),
        default: "45000",
        bounds: Some((
            "group.share.min.session.timeout.ms",
            45000,
            "group.share.max.session.timeout.ms",
            60000,
        )),
        doc: "Session timeout of this share group's members (stored only).",
    },
    GroupConfigDef {
        name: "streams.heartbeat.interval.ms",
        config_type: ConfigType::Int,
        kind: Kind::Integer(1, I32_MAX),
        default: "5000",
        bounds: Some((
            "group.streams.min.heartbeat.interval.ms",
            5000,
            "group.streams.max.heartbeat.interval.ms",
            15000,
        )),
        doc: "Heartbeat interval of this streams group's members (stored only).",
    },
    GroupConfigDef {
        name: "streams.num.standby.replicas",
        config_type: ConfigType::Int,
        kind: Kind::Integer(0, I32_MAX),
        default: "0",
        bounds: Some((
            "group.streams.min.num.standby.replicas",
            0,
            "group.streams.max.standby.replicas",
            2,
        )),
        doc: "Standby replicas of this streams group's tasks (stored only).",
    },
    GroupConfigDef {
        name: "streams.session.timeout.ms",
        config_type: ConfigType::Int,
        kind: Kind::Integer(1, I32_MAX),
        default: "45000",
        bounds: Some((
            "group.streams.min.session.timeout.ms",
            45000,
            "group.streams.max.session.timeout.ms",
            60000,
        )),
        doc: "Session timeout of this streams group's members (stored only).",
    },
];

/// The definition of group config `name`, if Kafka has one.
pub fn group_config_def(name: &str) -> Option<&'static GroupConfigDef> {
    GROUP_CONFIGS.iter().find(|d| d.name == name)
}

/// One value: a known name and a value of its type within its ConfigDef bound (Kafka's
/// wording); the broker-level bounds are checked over the whole set.
pub fn validate_group_config(key: &str, value: &str) -> Result<(), String> {
    let Some(d) = group_config_def(key) else {
        return Err(format!("Unknown group config name: {key}"));
    };
    if key == "share.auto.offset.reset" {
        return validate_auto_offset_reset(key, value);
    }
    validate_value(key, d.kind, value)
}

/// Kafka's `ShareGroupAutoOffsetResetStrategy` values: earliest, latest or by_duration:<ISO-8601
/// duration> (checked for its shape: `P`, then date and time parts).
fn validate_auto_offset_reset(key: &str, value: &str) -> Result<(), String> {
    let v = value.trim();
    let duration_ok = v.strip_prefix("by_duration:").is_some_and(|d| {
        let d = d.strip_prefix('-').unwrap_or(d);
        d.len() > 1
            && d.starts_with('P')
            && d[1..]
                .chars()
                .all(|c| c.is_ascii_digit() || "DTHMS.".contains(c))
    });
    if matches!(v, "earliest" | "latest") || duration_ok {
        return Ok(());
    }
    Err(format!(
        "Invalid value {value} for configuration {key}: Invalid value `{value}` for configuration {key}. The value must be either 'earliest', 'latest' or of the format 'by_duration:<PnDTnHnMn.nS>'."
    ))
}

/// A group's whole resulting set of overrides, as Kafka's `GroupConfig.validate` checks it:
/// every entry, then the broker-level bounds in Kafka's order, then each session timeout above
/// its heartbeat interval (defaults stand in for what the group does not set).
pub fn validate_group_configs(configs: &BTreeMap<String, String>) -> Result<(), String> {
    for (k, v) in configs {
        validate_group_config(k, v)?;
    }
    let value = |name: &str| -> i64 {
        let d = group_config_def(name).expect("known group config");
        configs
            .get(name)
            .map_or(d.default, String::as_str)
            .trim()
            .parse()
            .expect("validated integer")
    };
    for name in [
        "consumer.heartbeat.interval.ms",
        "consumer.session.timeout.ms",
        "share.heartbeat.interval.ms",
        "share.session.timeout.ms",
        "share.record.lock.duration.ms",
        "streams.heartbeat.interval.ms",
        "streams.session.timeout.ms",
        "streams.num.standby.replicas",
    ] {
        let (min_name, min, max_name, max) = group_config_def(name)
            .and_then(|d| d.bounds)
            .expect("bounded");
        let v = value(name);
        if v < min {
            return Err(format!(
                "{name} must be greater than or equal to {min_name}"
            ));
        }
        if v > max {
            return Err(format!("{name} must be less than or equal to {max_name}"));
        }
    }
    for kind in ["consumer", "share", "streams"] {
        let session = format!("{kind}.session.timeout.ms");
        let heartbeat = format!("{kind}.heartbeat.interval.ms");
        if value(&session) <= value(&heartbeat) {
            return Err(format!("{session} must be greater than {heartbeat}"));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(pairs: &[(&str, &str)]) -> Result<(), String> {
        validate_group_configs(
            &pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        )
    }

    /// The messages Kafka 4.1.2 answered for the same values (tests/integration/test_group_configs.py).
    #[test]
    fn kafkas_values_and_refusals() {
        assert!(set(&[]).is_ok());
        assert!(set(&[("consumer.session.timeout.ms", "50000")]).is_ok());
        let e = set(&[("consumer.session.timeout.ms", "1000")]).unwrap_err();
        assert_eq!(
            e,
            "consumer.session.timeout.ms must be greater than or equal to group.consumer.min.session.timeout.ms"
        );
        let e = set(&[("consumer.session.timeout.ms", "x")]).unwrap_err();
        assert_eq!(
            e,
            "Invalid value x for configuration consumer.session.timeout.ms: Not a number of type INT"
        );
        let e = set(&[("consumer.heartbeat.interval.ms", "60000")]).unwrap_err();
        assert!(e.ends_with("less than or equal to group.consumer.max.heartbeat.interval.ms"));
        let e = set(&[("share.record.lock.duration.ms", "1")]).unwrap_err();
        assert!(e.ends_with("Value must be at least 1000"), "{e}");
        let e = set(&[("share.auto.offset.reset", "bogus")]).unwrap_err();
        assert!(e.contains("'by_duration:<PnDTnHnMn.nS>'"), "{e}");
        assert!(set(&[("share.auto.offset.reset", "by_duration:PT1H")]).is_ok());
        assert!(set(&[("share.isolation.level", "x")]).is_err());
        let e = set(&[("nonsense", "1")]).unwrap_err();
        assert_eq!(e, "Unknown group config name: nonsense");
        let e = set(&[("streams.num.standby.replicas", "9")]).unwrap_err();
        assert!(e.ends_with("less than or equal to group.streams.max.standby.replicas"));
        for w in GROUP_CONFIGS.windows(2) {
            assert!(w[0].name < w[1].name);
        }
        for d in GROUP_CONFIGS {
            assert!(
                validate_group_config(d.name, d.default).is_ok(),
                "{}",
                d.name
            );
        }
    }
}

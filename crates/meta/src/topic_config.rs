//! Topic-level configs (Kafka names): which exist, what values they take, their Kafka type,
//! default and broker-level synonym, and their validation.
//!
//! Owns: the topic config table used by CreateTopics, AlterConfigs, IncrementalAlterConfigs
//! and DescribeConfigs, and the checks that a set of topic configs is acceptable. The broker
//! turns validated configs into a partition `LogConfig`. Must never: accept an unknown name or a
//! value the log cannot honour, or depend on anything but its arguments (the metadata image and
//! the fuzz/property tests call these functions; they must stay pure).

use std::collections::BTreeSet;

/// Kafka's `ConfigType` (DescribeConfigs v3+ `config_type`), with its wire code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConfigType {
    Boolean,
    String,
    Int,
    Short,
    Long,
    Double,
    List,
    Class,
    Password,
}

impl ConfigType {
    /// The code DescribeConfigs puts on the wire.
    pub fn kafka_code(self) -> i8 {
        match self {
            ConfigType::Boolean => 1,
            ConfigType::String => 2,
            ConfigType::Int => 3,
            ConfigType::Short => 4,
            ConfigType::Long => 5,
            ConfigType::Double => 6,
            ConfigType::List => 7,
            ConfigType::Class => 8,
            ConfigType::Password => 9,
        }
    }
}

/// The values a config accepts.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Kind {
    /// Integer within an inclusive range.
    Integer(i64, i64),
    /// Floating point number within an inclusive range.
    Double(f64, f64),
    Bool,
    /// One of a fixed set of strings.
    OneOf(&'static [&'static str]),
    /// A comma-separated list whose items come from a fixed set (APPEND/SUBTRACT apply).
    ListOf(&'static [&'static str]),
    /// Integer within an inclusive range, or one extra value (Kafka's gzip level: 1..9 or -1).
    IntegerOr(i64, i64, i64),
    /// Any string (Kafka's STRING, CLASS and PASSWORD configs Josefine only stores).
    Any,
}

/// One topic config.
#[derive(Debug, Clone, Copy)]
pub struct ConfigDef {
    pub name: &'static str,
    pub config_type: ConfigType,
    pub kind: Kind,
    /// Kafka's default, as DescribeConfigs prints it when no broker setting overrides it.
    pub kafka_default: &'static str,
    /// The broker setting that supplies the default (Kafka's ServerTopicConfigSynonyms), if any.
    pub broker_synonym: Option<&'static str>,
    /// One line for DescribeConfigs `documentation` (our words, not Kafka's).
    pub doc: &'static str,
}

impl ConfigDef {
    /// Whether IncrementalAlterConfigs APPEND/SUBTRACT apply (Kafka: LIST-typed configs only).
    pub fn is_list(&self) -> bool {
        self.config_type == ConfigType::List
    }
}

const I32_MAX: i64 = i32::MAX as i64;

/// `segment.bytes` floor: Kafka 4's 1 MiB (tests use `internal.segment.bytes` to go lower).
pub const SEGMENT_BYTES_MIN: i64 = 1 << 20;

/// `internal.segment.bytes` floor: the log crate refuses segments under 1 KiB (Kafka has no
/// floor for this test-only setting).
pub const INTERNAL_SEGMENT_BYTES_MIN: i64 = 1024;

/// Kafka's `compression.type` values (`BrokerCompressionType`, in Kafka's order).
pub const COMPRESSION_TYPES: &[&str] =
    &["uncompressed", "zstd", "lz4", "snappy", "gzip", "producer"];

const fn def(
    name: &'static str,
    config_type: ConfigType,
    kind: Kind,
    kafka_default: &'static str,
    broker_synonym: Option<&'static str>,
    doc: &'static str,
) -> ConfigDef {
    ConfigDef {
        name,
        config_type,
        kind,
        kafka_default,
        broker_synonym,
        doc,
    }
}

use ConfigType as T;

/// Every accepted topic config, sorted by name. Ranges and defaults are Kafka 4.1's.
pub const TOPIC_CONFIGS: &[ConfigDef] = &[
    def("cleanup.policy", T::List, Kind::ListOf(&["compact", "delete"]), "delete", Some("log.cleanup.policy"),
        "delete: old segments are removed by retention.ms/retention.bytes; compact: the log cleaner keeps the latest record per key; both may be given."),
    def("compression.gzip.level", T::Int, Kind::IntegerOr(1, 9, -1), "-1", Some("compression.gzip.level"),
        "Level of gzip when compression.type is gzip: 1 to 9, or -1 for the codec's default (6)."),
    def("compression.lz4.level", T::Int, Kind::Integer(1, 17), "9", Some("compression.lz4.level"),
        "Level of lz4 when compression.type is lz4 (stored; Josefine's lz4 encoder has one level)."),
    def("compression.type", T::String, Kind::OneOf(COMPRESSION_TYPES), "producer", Some("compression.type"),
        "Codec of stored batches: producer keeps each batch's codec; any other value makes the leader recompress batches in another codec."),
    def("compression.zstd.level", T::Int, Kind::Integer(-131072, 22), "3", Some("compression.zstd.level"),
        "Level of zstd when compression.type is zstd: -131072 to 22."),
    def("delete.retention.ms", T::Long, Kind::Integer(0, i64::MAX), "86400000", Some("log.cleaner.delete.retention.ms"),
        "How long a tombstone stays readable after the cleaner reached it, on compacted topics."),
    def("file.delete.delay.ms", T::Long, Kind::Integer(0, i64::MAX), "60000", Some("log.segment.delete.delay.ms"),
        "Stored for compatibility; Josefine deletes segment files as soon as no reader needs them."),
    def("flush.messages", T::Long, Kind::Integer(1, i64::MAX), "9223372036854775807", Some("log.flush.interval.messages"),
        "Force an fsync after this many messages; 1 means every acknowledged write is on disk."),
    def("flush.ms", T::Long, Kind::Integer(0, i64::MAX), "9223372036854775807", Some("log.flush.interval.ms"),
        "Force an fsync when unflushed data is older than this."),
    def("index.interval.bytes", T::Int, Kind::Integer(0, I32_MAX), "4096", Some("log.index.interval.bytes"),
        "Bytes of log between two offset index entries."),
    def("internal.segment.bytes", T::Int, Kind::Integer(INTERNAL_SEGMENT_BYTES_MIN, I32_MAX), "", None,
        "Test-only segment size that overrides segment.bytes without its 1 MiB floor."),
    def("max.compaction.lag.ms", T::Long, Kind::Integer(1, i64::MAX), "9223372036854775807", Some("log.cleaner.max.compaction.lag.ms"),
        "A record stays uncompacted at most this long, whatever the dirty ratio."),
    def("max.message.bytes", T::Int, Kind::Integer(0, I32_MAX), "1048588", Some("message.max.bytes"),
        "Largest record batch accepted, after compression."),
    def("message.timestamp.after.max.ms", T::Long, Kind::Integer(0, i64::MAX), "3600000", Some("log.message.timestamp.after.max.ms"),
        "A CreateTime timestamp may be at most this far ahead of the broker clock."),
    def("message.timestamp.before.max.ms", T::Long, Kind::Integer(0, i64::MAX), "9223372036854775807", Some("log.message.timestamp.before.max.ms"),
        "A CreateTime timestamp may be at most this far behind the broker clock."),
    def("message.timestamp.type", T::String, Kind::OneOf(&["CreateTime", "LogAppendTime"]), "CreateTime", Some("log.message.timestamp.type"),
        "CreateTime keeps the producer's timestamps; LogAppendTime stamps batches with the broker's time."),
    def("min.cleanable.dirty.ratio", T::Double, Kind::Double(0.0, 1.0), "0.5", Some("log.cleaner.min.cleanable.ratio"),
        "The cleaner compacts a log when this share of it is uncleaned."),
    def("min.compaction.lag.ms", T::Long, Kind::Integer(0, i64::MAX), "0", Some("log.cleaner.min.compaction.lag.ms"),
        "A record stays uncompacted at least this long."),
    def("min.insync.replicas", T::Int, Kind::Integer(1, I32_MAX), "1", Some("min.insync.replicas"),
        "Replicas that must have a write for acks=all to succeed."),
    def("preallocate", T::Boolean, Kind::Bool, "false", Some("log.preallocate"),
        "Stored for compatibility; Josefine does not preallocate segment files."),
    def("retention.bytes", T::Long, Kind::Integer(-1, i64::MAX), "-1", Some("log.retention.bytes"),
        "Largest size of a partition before old segments are deleted; -1 is unlimited."),
    def("retention.ms", T::Long, Kind::Integer(-1, i64::MAX), "604800000", Some("log.retention.ms"),
        "Age after which segments are deleted; -1 is unlimited."),
    def("segment.bytes", T::Int, Kind::Integer(SEGMENT_BYTES_MIN, I32_MAX), "1073741824", Some("log.segment.bytes"),
        "Size at which a new segment is rolled."),
    def("segment.index.bytes", T::Int, Kind::Integer(4, I32_MAX), "10485760", Some("log.index.size.max.bytes"),
        "Stored for compatibility; Josefine's index files grow as needed."),
    def("segment.jitter.ms", T::Long, Kind::Integer(0, i64::MAX), "0", Some("log.roll.jitter.ms"),
        "Stored for compatibility; Josefine rolls without jitter."),
    def("segment.ms", T::Long, Kind::Integer(1, i64::MAX), "604800000", Some("log.roll.ms"),
        "Age at which a new segment is rolled."),
    def("unclean.leader.election.enable", T::Boolean, Kind::Bool, "false", Some("unclean.leader.election.enable"),
        "Elect a replica outside the ISR when no in-sync replica is left (acknowledged writes may be lost)."),
];

/// The definition of a topic config, if it exists.
pub fn topic_config_def(name: &str) -> Option<&'static ConfigDef> {
    TOPIC_CONFIGS.iter().find(|d| d.name == name)
}

/// Splits a Kafka list value: comma separated, items trimmed, empty items dropped.
pub fn list_items(value: &str) -> Vec<&str> {
    value
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .collect()
}

/// A double as Java's `Double.toString` prints it, for the ranges configs use.
fn java_double(x: f64) -> String {
    if x.fract() == 0.0 && x.abs() < 1e7 {
        format!("{x:.1}")
    } else {
        format!("{x}")
    }
}

/// A range bound as Kafka's config definitions write it (integers where they are whole).
fn bound(x: f64) -> String {
    if x.fract() == 0.0 && x.abs() < 1e15 {
        format!("{}", x as i64)
    } else {
        format!("{x}")
    }
}

/// Checks one value against a kind; the error says what is wrong, naming the key.
pub fn validate_value(key: &str, kind: Kind, value: &str) -> Result<(), String> {
    let v = value.trim();
    match kind {
        // Kafka's ConfigDef wording; the table's INT configs are exactly those capped at
        // i32::MAX.
        Kind::Integer(min, max) => {
            let type_name = if max <= i32::MAX as i64 { "INT" } else { "LONG" };
            match v.parse::<i64>() {
                Err(_) => Err(format!(
                    "Invalid value {value} for configuration {key}: Not a number of type {type_name}"
                )),
                Ok(x) if x < min => Err(format!(
                    "Invalid value {value} for configuration {key}: Value must be at least {min}"
                )),
                Ok(x) if x > max => Err(format!(
                    "Invalid value {value} for configuration {key}: Value must be no more than {max}"
                )),
                Ok(_) => Ok(()),
            }
        }
        // Kafka's Range wording, the value as Java prints the parsed double and the bounds as
        // Kafka's definitions give them (whole numbers: `between(0, 1)`).
        Kind::Double(min, max) => match v.parse::<f64>() {
            Ok(x) if x >= min && x <= max => Ok(()),
            Ok(x) => Err(format!(
                "Invalid value {} for configuration {key}: Value must be {}",
                java_double(x),
                if x < min {
                    format!("at least {}", bound(min))
                } else {
                    format!("no more than {}", bound(max))
                }
            )),
            Err(_) => Err(format!(
                "Invalid value {value} for configuration {key}: Not a number of type DOUBLE"
            )),
        },
        Kind::Bool => match v.to_ascii_lowercase().as_str() {
            "true" | "false" => Ok(()),
            _ => Err(format!(
                "Invalid value {value} for configuration {key}: expected true or false"
            )),
        },
        Kind::OneOf(allowed) => {
            if allowed.contains(&v) {
                Ok(())
            } else {
                Err(format!(
                    "Invalid value {value} for configuration {key}: String must be one of: {}",
                    allowed.join(", ")
                ))
            }
        }
        Kind::ListOf(allowed) => {
            let items = list_items(v);
            if items.is_empty() {
                // Kafka 4.1 accepts an empty cleanup.policy (keep everything forever); the log
                // has no such mode, so refuse it rather than silently delete.
                return Err(format!(
                    "Invalid value {value} for configuration {key}: Josefine needs at least one of {}",
                    allowed.join(", ")
                ));
            }
            match items.iter().find(|i| !allowed.contains(i)) {
                None => Ok(()),
                Some(bad) => Err(format!(
                    "Invalid value {bad} for configuration {key}: String must be one of: {}",
                    allowed.join(", ")
                )),
            }
        }
        Kind::Any => Ok(()),
        Kind::IntegerOr(min, max, extra) => match v.parse::<i64>() {
            Err(_) => Err(format!(
                "Invalid value {value} for configuration {key}: Not a number of type INT"
            )),
            Ok(x) if x == extra || (min..=max).contains(&x) => Ok(()),
            Ok(_) => Err(format!(
                "Invalid value {value} for configuration {key}: Value must be between {min} and {max} or equal to {extra}"
            )),
        },
    }
}

/// Checks one topic config; the error says what is wrong, naming the key.
pub fn validate_topic_config(key: &str, value: &str) -> Result<(), String> {
    let Some(d) = topic_config_def(key) else {
        return Err(format!("Unknown topic config name: {key}"));
    };
    validate_value(key, d.kind, value)
}

/// Checks a complete set of topic overrides: every entry, no name twice, and the rules that
/// relate two configs (Kafka: min.compaction.lag.ms must not exceed max.compaction.lag.ms).
pub fn validate_topic_configs<'a>(
    configs: impl IntoIterator<Item = (&'a str, &'a str)>,
) -> Result<(), String> {
    let mut seen = BTreeSet::new();
    let (mut min_lag, mut max_lag) = (0i64, i64::MAX);
    for (k, v) in configs {
        validate_topic_config(k, v)?;
        if !seen.insert(k) {
            return Err(format!("Config {k} is given more than once"));
        }
        match k {
            "min.compaction.lag.ms" => min_lag = v.trim().parse().expect("validated integer"),
            "max.compaction.lag.ms" => max_lag = v.trim().parse().expect("validated integer"),
            _ => {}
        }
    }
    if min_lag > max_lag {
        return Err(format!(
            "conflict topic config setting min.compaction.lag.ms ({min_lag}) > max.compaction.lag.ms ({max_lag})"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_good_values_pass_and_bad_ones_name_the_key() {
        assert!(validate_topic_config("retention.ms", "1000").is_ok());
        assert!(validate_topic_config("retention.ms", "-1").is_ok());
        assert!(validate_topic_config("message.timestamp.type", "LogAppendTime").is_ok());
        let e = validate_topic_config("retention.msx", "1").unwrap_err();
        assert!(e.contains("retention.msx"));
        assert!(validate_topic_config("retention.ms", "soon").is_err());
        assert!(validate_topic_config("segment.bytes", "1").is_err());
        let e = validate_topic_config("segment.bytes", "1048575").unwrap_err();
        assert!(e.ends_with("Value must be at least 1048576"), "{e}");
        let e = validate_topic_config("retention.ms", "abc").unwrap_err();
        assert!(e.ends_with("Not a number of type LONG"), "{e}");
        assert!(validate_topic_config("segment.bytes", "1048576").is_ok());
        assert!(validate_topic_config("internal.segment.bytes", "1024").is_ok());
        assert!(validate_topic_config("internal.segment.bytes", "1023").is_err());
        assert!(validate_topic_config("preallocate", "yes").is_err());
    }

    #[test]
    fn cleanup_policy_is_a_list_of_compact_and_delete() {
        for ok in [
            "delete",
            "compact",
            "compact,delete",
            "delete,compact",
            " compact , delete ",
        ] {
            assert!(validate_topic_config("cleanup.policy", ok).is_ok(), "{ok}");
        }
        for bad in ["", ",", "compactt", "delete,forever"] {
            let e = validate_topic_config("cleanup.policy", bad).unwrap_err();
            assert!(e.contains("cleanup.policy"), "{e}");
        }
        assert!(topic_config_def("cleanup.policy").unwrap().is_list());
        assert!(!topic_config_def("retention.ms").unwrap().is_list());
    }

    #[test]
    fn compression_codecs_and_levels_take_kafkas_values() {
        for codec in COMPRESSION_TYPES {
            assert!(
                validate_topic_config("compression.type", codec).is_ok(),
                "{codec}"
            );
        }
        let e = validate_topic_config("compression.type", "brotli").unwrap_err();
        assert!(
            e.ends_with("String must be one of: uncompressed, zstd, lz4, snappy, gzip, producer"),
            "{e}"
        );
        assert!(validate_topic_config("compression.type", "GZIP").is_err());
        for ok in ["-1", "1", "9"] {
            assert!(
                validate_topic_config("compression.gzip.level", ok).is_ok(),
                "{ok}"
            );
        }
        let e = validate_topic_config("compression.gzip.level", "0").unwrap_err();
        assert!(
            e.ends_with("Value must be between 1 and 9 or equal to -1"),
            "{e}"
        );
        assert!(validate_topic_config("compression.gzip.level", "10").is_err());
        assert!(validate_topic_config("compression.lz4.level", "17").is_ok());
        assert!(validate_topic_config("compression.lz4.level", "18").is_err());
        assert!(validate_topic_config("compression.zstd.level", "-131072").is_ok());
        assert!(validate_topic_config("compression.zstd.level", "23").is_err());
    }

    #[test]
    fn dirty_ratio_is_a_double_in_0_1() {
        for ok in ["0", "0.01", "0.5", "1", "1.0"] {
            assert!(
                validate_topic_config("min.cleanable.dirty.ratio", ok).is_ok(),
                "{ok}"
            );
        }
        for bad in ["-0.1", "1.01", "NaN", "half"] {
            assert!(
                validate_topic_config("min.cleanable.dirty.ratio", bad).is_err(),
                "{bad}"
            );
        }
    }

    #[test]
    fn sets_reject_duplicates_and_conflicting_compaction_lags() {
        assert!(validate_topic_configs([("retention.ms", "1"), ("segment.ms", "1")]).is_ok());
        assert!(validate_topic_configs([("retention.ms", "1"), ("retention.ms", "2")]).is_err());
        assert!(validate_topic_configs([
            ("min.compaction.lag.ms", "10"),
            ("max.compaction.lag.ms", "5")
        ])
        .is_err());
        assert!(validate_topic_configs([
            ("min.compaction.lag.ms", "5"),
            ("max.compaction.lag.ms", "5")
        ])
        .is_ok());
    }

    #[test]
    fn table_is_sorted_and_defaults_validate() {
        for w in TOPIC_CONFIGS.windows(2) {
            assert!(w[0].name < w[1].name, "{} before {}", w[0].name, w[1].name);
        }
        for d in TOPIC_CONFIGS {
            if !d.kafka_default.is_empty() {
                assert!(
                    validate_value(d.name, d.kind, d.kafka_default).is_ok(),
                    "default of {}",
                    d.name
                );
            }
        }
    }
}

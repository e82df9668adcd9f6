//! Topic-level configs (Kafka names) accepted by CreateTopics, and their validation.
//!
//! Owns: which topic config names exist and what values they take. The broker turns validated
//! configs into a partition `LogConfig`. Must never: accept an unknown name or a value the log
//! cannot honour (an operator asking for `cleanup.policy=compact` must not silently get delete).

/// The kind of value a topic config takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// Integer within an inclusive range.
    Long(i64, i64),
    Bool,
    /// One of a fixed set of strings.
    OneOf(&'static [&'static str]),
}

/// Every accepted topic config name and its value kind.
const TOPIC_CONFIGS: &[(&str, Kind)] = &[
    ("cleanup.policy", Kind::OneOf(&["delete"])),
    ("compression.type", Kind::OneOf(&["producer"])),
    ("delete.retention.ms", Kind::Long(0, i64::MAX)),
    ("file.delete.delay.ms", Kind::Long(0, i64::MAX)),
    ("flush.messages", Kind::Long(1, i64::MAX)),
    ("flush.ms", Kind::Long(0, i64::MAX)),
    ("index.interval.bytes", Kind::Long(0, i32::MAX as i64)),
    ("max.message.bytes", Kind::Long(0, i32::MAX as i64)),
    (
        "message.timestamp.type",
        Kind::OneOf(&["CreateTime", "LogAppendTime"]),
    ),
    ("min.insync.replicas", Kind::Long(1, i32::MAX as i64)),
    ("preallocate", Kind::Bool),
    ("retention.bytes", Kind::Long(-1, i64::MAX)),
    ("retention.ms", Kind::Long(-1, i64::MAX)),
    ("segment.bytes", Kind::Long(14, i32::MAX as i64)),
    ("segment.index.bytes", Kind::Long(4, i32::MAX as i64)),
    ("segment.jitter.ms", Kind::Long(0, i64::MAX)),
    ("segment.ms", Kind::Long(1, i64::MAX)),
    ("unclean.leader.election.enable", Kind::Bool),
];

/// Checks one topic config; the error says what is wrong, naming the key.
pub fn validate_topic_config(key: &str, value: &str) -> Result<(), String> {
    let Some((_, kind)) = TOPIC_CONFIGS.iter().find(|(name, _)| *name == key) else {
        return Err(format!("unknown topic config name '{key}'"));
    };
    match *kind {
        Kind::Long(min, max) => match value.trim().parse::<i64>() {
            Ok(v) if v >= min && v <= max => Ok(()),
            _ => Err(format!(
                "invalid value '{value}' for '{key}': expected an integer in [{min}, {max}]"
            )),
        },
        Kind::Bool => match value.trim() {
            "true" | "false" => Ok(()),
            _ => Err(format!(
                "invalid value '{value}' for '{key}': expected true or false"
            )),
        },
        Kind::OneOf(allowed) => {
            if allowed.contains(&value.trim()) {
                Ok(())
            } else {
                Err(format!(
                    "unsupported value '{value}' for '{key}': Josefine supports {}",
                    allowed.join(", ")
                ))
            }
        }
    }
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
        assert!(validate_topic_config("cleanup.policy", "compact").is_err());
        assert!(validate_topic_config("preallocate", "yes").is_err());
    }
}

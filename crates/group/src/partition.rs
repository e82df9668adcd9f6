//! Which `__consumer_offsets` partition owns a group.
//!
//! Owns the group → partition mapping and nothing else. It must match Kafka bit for bit:
//! clients never compute it, but a mixed or migrated deployment (and Kafka's own tools reading
//! our topic) must find a group's records in the same partition Kafka would have used, so the
//! hash is Java's `String.hashCode` over UTF-16 code units and the absolute value is Kafka's
//! `Utils.abs` (which maps `i32::MIN` to 0 rather than overflowing).

/// Java's `String.hashCode`: `s[0]*31^(n-1) + ... + s[n-1]` over UTF-16 code units, with
/// wrapping 32-bit arithmetic. Characters outside the BMP count as two surrogate units.
pub fn java_string_hash(s: &str) -> i32 {
    s.encode_utf16().fold(0i32, |hash, unit| {
        hash.wrapping_mul(31).wrapping_add(i32::from(unit))
    })
}

/// Kafka's `Utils.abs`: absolute value, except `i32::MIN` (which has none) becomes 0.
fn kafka_abs(n: i32) -> i32 {
    if n == i32::MIN {
        0
    } else {
        n.abs()
    }
}

/// The `__consumer_offsets` partition for `group_id`, given `offsets.topic.num.partitions`.
pub fn partition_for(group_id: &str, partition_count: i32) -> i32 {
    assert!(
        partition_count > 0,
        "offsets topic must have at least one partition"
    );
    kafka_abs(java_string_hash(group_id)) % partition_count
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn java_hash_vectors() {
        // Values computed by java.lang.String.hashCode.
        assert_eq!(java_string_hash(""), 0);
        assert_eq!(java_string_hash("a"), 97);
        assert_eq!(java_string_hash("hello"), 99_162_322);
        assert_eq!(java_string_hash("my-group"), -1_906_497_762);
        // Overflowing wrap-around: "polygenelubricants" is the classic i32::MIN example.
        assert_eq!(java_string_hash("polygenelubricants"), i32::MIN);
        // A non-BMP character is two UTF-16 units (surrogate pair 0xD83D 0xDE00).
        assert_eq!(java_string_hash("\u{1F600}"), 0xD83D * 31 + 0xDE00);
        // Non-ASCII BMP: 'é' is one unit (0xE9), not two UTF-8 bytes.
        assert_eq!(java_string_hash("é"), 0xE9);
    }

    #[test]
    fn partition_mapping() {
        // abs(i32::MIN) is 0 in Kafka, not a panic or a negative partition.
        assert_eq!(partition_for("polygenelubricants", 50), 0);
        assert_eq!(partition_for("my-group", 50), 12);
        // Computed with Java's String.hashCode and Kafka 4.1.2's Utils.abs(h) % 50.
        let kafka = [
            ("hello", 22),
            ("console-consumer-1", 24),
            ("\u{1F600}", 49),
            ("é", 33),
            ("group-with-long-name", 21),
        ];
        for (group, partition) in kafka {
            assert_eq!(partition_for(group, 50), partition, "{group}");
        }
    }
}

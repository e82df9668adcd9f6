//! The one table of APIs and versions this broker implements.
//!
//! Owns: what ApiVersions advertises and what the request decoder accepts. The README's API
//! table is checked against [`SUPPORTED_APIS`] by a test (`readme_table_matches`), so docs cannot
//! drift from the code. Must never: advertise an API or version without a handler for it.
//!
//! Ranges run from the Kafka 4 baseline (KIP-896) to kafka-protocol 0.18's maxima (Kafka 4.1
//! schemas). Produce is advertised from v0 as Kafka does (KAFKA-18659: old librdkafka refuses to
//! compress unless Produce v0 is listed) but only v3+ is served; v0-2 get UNSUPPORTED_VERSION.

use kafka_protocol::messages::ApiKey;

/// One implemented API: the advertised range and the range actually served.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ApiSupport {
    pub key: ApiKey,
    /// Lowest version listed in ApiVersions.
    pub advertised_min: i16,
    /// Lowest version actually served (differs only for Produce).
    pub served_min: i16,
    pub max: i16,
}

const fn api(key: ApiKey, min: i16, max: i16) -> ApiSupport {
    ApiSupport {
        key,
        advertised_min: min,
        served_min: min,
        max,
    }
}

/// Every API the broker implements.
pub const SUPPORTED_APIS: &[ApiSupport] = &[
    ApiSupport {
        key: ApiKey::Produce,
        advertised_min: 0,
        served_min: 3,
        max: 13,
    },
    api(ApiKey::Fetch, 4, 18),
    api(ApiKey::ListOffsets, 1, 10),
    api(ApiKey::Metadata, 0, 13),
    api(ApiKey::ApiVersions, 0, 4),
    api(ApiKey::CreateTopics, 2, 7),
    api(ApiKey::DeleteTopics, 1, 6),
    // v6 (KIP-939 two-phase commit) has no request schema in kafka-protocol 0.18.
    api(ApiKey::InitProducerId, 0, 5),
    api(ApiKey::DescribeConfigs, 1, 4),
    api(ApiKey::AlterConfigs, 0, 2),
    api(ApiKey::IncrementalAlterConfigs, 0, 1),
    api(ApiKey::CreatePartitions, 0, 3),
    // Consumer groups (classic protocol): Kafka 4.1's ranges, OffsetCommit/OffsetFetch v10
    // (topic ids, KIP-848) have no schema in kafka-protocol 0.18.
    api(ApiKey::FindCoordinator, 0, 6),
    api(ApiKey::JoinGroup, 0, 9),
    api(ApiKey::SyncGroup, 0, 5),
    api(ApiKey::Heartbeat, 0, 4),
    api(ApiKey::LeaveGroup, 0, 5),
    api(ApiKey::OffsetCommit, 2, 9),
    api(ApiKey::OffsetFetch, 1, 9),
    api(ApiKey::DescribeGroups, 0, 6),
    api(ApiKey::ListGroups, 0, 5),
    api(ApiKey::DeleteGroups, 0, 2),
    api(ApiKey::OffsetDelete, 0, 0),
    api(ApiKey::DeleteRecords, 0, 2),
    api(ApiKey::DescribeLogDirs, 1, 4),
    api(ApiKey::ListPartitionReassignments, 0, 0),
    // Kafka 4.0 removed v0-1 (KIP-896); consumers use it since KIP-320 (v2+).
    api(ApiKey::OffsetForLeaderEpoch, 2, 4),
    api(ApiKey::DescribeCluster, 0, 2),
    api(ApiKey::DescribeTopicPartitions, 0, 0),
    // Kafka 4.0 removed v0 (KIP-896).
    api(ApiKey::DescribeAcls, 1, 3),
    api(ApiKey::CreateAcls, 1, 3),
    api(ApiKey::DeleteAcls, 1, 3),
    // SCRAM credentials (issue 15): AlterScramCredentials chain commands.
    api(ApiKey::DescribeUserScramCredentials, 0, 0),
    api(ApiKey::AlterUserScramCredentials, 0, 0),
    // No quotas: every filter matches nothing (kafka-configs --describe --entity-type users).
    api(ApiKey::DescribeClientQuotas, 0, 1),
    // Transactions (issue 16): the coordinator in crates/txn, driven by broker/src/txn.rs.
    api(ApiKey::AddPartitionsToTxn, 0, 5),
    api(ApiKey::AddOffsetsToTxn, 0, 4),
    api(ApiKey::EndTxn, 0, 5),
    // v5 (transaction version 2) adds the offsets partition implicitly: not yet.
    api(ApiKey::TxnOffsetCommit, 0, 4),
    // Kafka lists it on the broker listener: the transaction coordinator sends it, and so does
    // `kafka-transactions abort` (an Admin client).
    api(ApiKey::WriteTxnMarkers, 1, 1),
    api(ApiKey::DescribeProducers, 0, 0),
    api(ApiKey::DescribeTransactions, 0, 0),
    api(ApiKey::ListTransactions, 0, 2),
    // SASL (issue 15): served by the connection before authentication on SASL listeners;
    // elsewhere, and after authentication, ILLEGAL_SASL_STATE as in Kafka.
    api(ApiKey::SaslHandshake, 0, 1),
    api(ApiKey::SaslAuthenticate, 0, 2),
];

/// APIs the decoder accepts and a handler serves but ApiVersions does not list: parts of a
/// feature that is not finished (clients must not discover them), reachable by the broker's own
/// callers and by a client that sends them anyway. None at the moment.
pub const SERVED_NOT_ADVERTISED: &[ApiSupport] = &[];

/// The support entry for an API key, if we serve it (advertised or not).
pub fn support_for(key: ApiKey) -> Option<&'static ApiSupport> {
    SUPPORTED_APIS
        .iter()
        .chain(SERVED_NOT_ADVERTISED)
        .find(|a| a.key == key)
}

/// The README table rows (`| Name | key | min-max |`), generated from [`SUPPORTED_APIS`].
pub fn readme_table() -> String {
    let mut out = String::from("| API | Key | Versions |\n|---|---|---|\n");
    let mut by_key: Vec<&ApiSupport> = SUPPORTED_APIS.iter().collect();
    by_key.sort_by_key(|a| a.key as i16);
    for a in by_key {
        let note = if a.served_min != a.advertised_min {
            format!(
                " (advertised from {}, served from {})",
                a.advertised_min, a.served_min
            )
        } else {
            String::new()
        };
        out.push_str(&format!(
            "| {:?} | {} | {}-{}{} |\n",
            a.key, a.key as i16, a.served_min, a.max, note
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn served_but_unadvertised_apis_are_not_in_the_advertised_table() {
        for a in SERVED_NOT_ADVERTISED {
            assert!(SUPPORTED_APIS.iter().all(|s| s.key != a.key), "{:?}", a.key);
            assert_eq!(support_for(a.key), Some(a));
        }
    }

    #[test]
    fn ranges_are_within_what_the_crate_can_decode() {
        for a in SUPPORTED_APIS.iter().chain(SERVED_NOT_ADVERTISED) {
            let crate_range = a.key.valid_versions();
            assert!(a.served_min >= crate_range.min, "{:?}", a.key);
            assert!(a.max <= crate_range.max, "{:?}", a.key);
            assert!(a.advertised_min <= a.served_min && a.served_min <= a.max);
        }
    }

    #[test]
    fn kafka4_baseline_and_produce_exception() {
        let p = support_for(ApiKey::Produce).unwrap();
        assert_eq!((p.advertised_min, p.served_min), (0, 3));
        assert_eq!(support_for(ApiKey::Fetch).unwrap().served_min, 4);
        assert_eq!(support_for(ApiKey::ListOffsets).unwrap().served_min, 1);
        assert!(support_for(ApiKey::ConsumerGroupHeartbeat).is_none());
    }

    /// The README must carry exactly the generated table (between the markers).
    #[test]
    fn readme_table_matches() {
        let readme_path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../README.md");
        let Ok(readme) = std::fs::read_to_string(readme_path) else {
            panic!("README.md missing at {readme_path}");
        };
        let begin = "<!-- api-table:begin -->\n";
        let end = "<!-- api-table:end -->";
        let (Some(b), Some(e)) = (readme.find(begin), readme.find(end)) else {
            panic!(
                "README.md must contain the API table between {begin:?} and {end:?}; generate it with \
                 `cargo run -p josefine -- api-table`:\n{}",
                readme_table()
            );
        };
        assert_eq!(
            &readme[b + begin.len()..e],
            readme_table(),
            "README API table is stale"
        );
    }
}

//! The `group_records` target: `__consumer_offsets` keys and values read back from disk.

use bytes::Bytes;

use super::NOW_MS;

/// Strings the record encoder can write (an i16 length): a decoded flexible (compact) string
/// may be longer, and the coordinator never re-encodes what it loaded.
fn encodable(s: &str) -> bool {
    s.len() <= i16::MAX as usize
}

/// Decodes one `__consumer_offsets` key or value, as the coordinator does when it loads the
/// topic. Byte 0 picks the decoder (key, offset value, group value, subscription), the rest is
/// the record's bytes. Invariants: no panic; what decodes re-encodes (in the version Josefine
/// writes) to bytes that decode to the same value.
pub fn group_records(data: &[u8]) -> bool {
    use josefine_group::records::{self, RecordKey};
    let Some((&which, bytes)) = data.split_first() else {
        return false;
    };
    match which % 4 {
        0 => match records::decode_key(bytes) {
            Ok(Some(key)) => {
                let again = match &key {
                    RecordKey::OffsetCommit {
                        group_id,
                        topic,
                        partition,
                    } => {
                        if !encodable(group_id) || !encodable(topic) {
                            return true;
                        }
                        records::encode_offset_key(group_id, topic, *partition)
                    }
                    RecordKey::GroupMetadata { group_id } => {
                        if !encodable(group_id) {
                            return true;
                        }
                        records::encode_group_key(group_id)
                    }
                };
                assert_eq!(
                    records::decode_key(&again).expect("re-encoded key"),
                    Some(key)
                );
                true
            }
            Ok(None) => true,
            Err(_) => false,
        },
        1 => {
            let Ok(v) = records::decode_offset_value(bytes) else {
                return false;
            };
            if encodable(&v.metadata) {
                let again = records::encode_offset_value(&v);
                assert_eq!(records::decode_offset_value(&again).expect("re-encoded"), v);
            }
            true
        }
        2 => {
            let Ok(v) = records::decode_group_value(bytes) else {
                return false;
            };
            let strings_fit = encodable(&v.protocol_type)
                && v.protocol_name.as_deref().is_none_or(encodable)
                && v.leader_id.as_deref().is_none_or(encodable)
                && v.members.iter().all(|m| {
                    encodable(&m.member_id)
                        && m.group_instance_id.as_deref().is_none_or(encodable)
                        && encodable(&m.client_id)
                        && encodable(&m.client_host)
                });
            if strings_fit {
                let again = records::encode_group_value(&v);
                assert_eq!(records::decode_group_value(&again).expect("re-encoded"), v);
            }
            for m in &v.members {
                let _ = records::subscription_topics(&m.subscription);
            }
            true
        }
        _ => records::subscription_topics(bytes).is_some(),
    }
}

pub(super) fn seeds() -> Vec<Vec<u8>> {
    use josefine_group::records::{
        self, GroupMetadataValue, MemberMetadataValue, OffsetCommitValue,
    };
    let subscription: &[u8] = &[
        0, 3, 0, 0, 0, 1, 0, 6, b'o', b'r', b'd', b'e', b'r', b's', 0xff, 0xff, 0xff, 0xff,
    ];
    let offset = |expire: Option<i64>| OffsetCommitValue {
        offset: 42,
        leader_epoch: if expire.is_some() { -1 } else { 3 },
        metadata: "meta".into(),
        commit_timestamp_ms: NOW_MS,
        expire_timestamp_ms: expire,
    };
    let group = GroupMetadataValue {
        protocol_type: "consumer".into(),
        generation_id: 4,
        protocol_name: Some("range".into()),
        leader_id: Some("m-1".into()),
        current_state_timestamp_ms: NOW_MS,
        members: vec![MemberMetadataValue {
            member_id: "m-1".into(),
            group_instance_id: Some("i-1".into()),
            client_id: "c".into(),
            client_host: "/127.0.0.1".into(),
            rebalance_timeout_ms: 300_000,
            session_timeout_ms: 45_000,
            subscription: Bytes::from_static(subscription),
            assignment: Bytes::from_static(&[0, 3, 0, 0, 0, 0]),
        }],
    };
    let with = |which: u8, bytes: &[u8]| [&[which][..], bytes].concat();
    vec![
        with(0, &records::encode_offset_key("group-1", "orders", 7)),
        with(0, &records::encode_group_key("group-1")),
        with(1, &records::encode_offset_value(&offset(None))),
        with(
            1,
            &records::encode_offset_value(&offset(Some(NOW_MS + 1000))),
        ),
        with(2, &records::encode_group_value(&group)),
        with(3, subscription),
    ]
}

//! Prints sample `__consumer_offsets` records as `<kind> <key hex> <value hex or ->`, one per
//! line, for `compat/check_records.sh`, which decodes them with Kafka's own record classes.

use bytes::Bytes;
use josefine_group::records::{
    encode_group_key, encode_group_value, encode_offset_key, encode_offset_value,
    GroupMetadataValue, MemberMetadataValue, OffsetCommitValue,
};

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn main() {
    let offset = OffsetCommitValue {
        offset: 1234,
        leader_epoch: 7,
        metadata: "meta".into(),
        commit_timestamp_ms: 1_700_000_000_000,
        expire_timestamp_ms: None,
    };
    println!(
        "offset {} {}",
        hex(&encode_offset_key("my-group", "orders", 3)),
        hex(&encode_offset_value(&offset))
    );
    let expiring = OffsetCommitValue {
        expire_timestamp_ms: Some(1_700_000_600_000),
        leader_epoch: -1,
        ..offset
    };
    println!(
        "offset {} {}",
        hex(&encode_offset_key("my-group", "orders", 4)),
        hex(&encode_offset_value(&expiring))
    );
    println!(
        "offset {} -",
        hex(&encode_offset_key("my-group", "orders", 5))
    );
    let group = GroupMetadataValue {
        protocol_type: "consumer".into(),
        generation_id: 5,
        protocol_name: Some("range".into()),
        leader_id: Some("c-1".into()),
        current_state_timestamp_ms: 1_700_000_000_123,
        members: vec![
            MemberMetadataValue {
                member_id: "c-1".into(),
                group_instance_id: None,
                client_id: "c".into(),
                client_host: "/127.0.0.1".into(),
                rebalance_timeout_ms: 300_000,
                session_timeout_ms: 45_000,
                subscription: Bytes::from_static(&[0, 1, 2]),
                assignment: Bytes::from_static(&[9, 8]),
            },
            MemberMetadataValue {
                member_id: "i-2".into(),
                group_instance_id: Some("i".into()),
                client_id: "c".into(),
                client_host: "/10.0.0.2".into(),
                rebalance_timeout_ms: 60_000,
                session_timeout_ms: 10_000,
                subscription: Bytes::new(),
                assignment: Bytes::new(),
            },
        ],
    };
    println!(
        "group {} {}",
        hex(&encode_group_key("my-group")),
        hex(&encode_group_value(&group))
    );
    let empty = GroupMetadataValue {
        protocol_name: None,
        leader_id: None,
        members: Vec::new(),
        ..group
    };
    println!(
        "group {} {}",
        hex(&encode_group_key("empty-group")),
        hex(&encode_group_value(&empty))
    );
    println!("group {} -", hex(&encode_group_key("gone")));
}

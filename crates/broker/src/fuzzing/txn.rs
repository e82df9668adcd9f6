//! The `txn_records` target: `__transaction_state` keys and values read back from disk.

use std::collections::BTreeSet;

use josefine_txn::records::{self, TxnLogValue};
use josefine_txn::{TopicPartition, TxnState};

use super::NOW_MS;

/// Decodes one `__transaction_state` key or value, as the transaction coordinator does when it
/// loads the topic. Byte 0 picks the decoder (even: key, odd: value), the rest is the record's
/// bytes. Invariants: no panic; a decoded Empty value holds no partitions; what decodes
/// re-encodes (v1, and v0 when it has no tagged fields) to bytes that decode to the same value.
pub fn txn_records(data: &[u8]) -> bool {
    let Some((&which, bytes)) = data.split_first() else {
        return false;
    };
    if which % 2 == 0 {
        return match records::decode_key(bytes) {
            Ok(Some(id)) => {
                if id.len() <= i16::MAX as usize {
                    let again = records::encode_key(&id);
                    assert_eq!(records::decode_key(&again).expect("re-encoded"), Some(id));
                }
                true
            }
            Ok(None) => true,
            Err(_) => false,
        };
    }
    let Ok(v) = records::decode_value(bytes) else {
        return false;
    };
    assert!(
        v.state != TxnState::Empty || v.partitions.is_empty(),
        "an Empty value kept its partitions"
    );
    // Compact strings may be longer than the v0 layout holds; v1 re-encodes any of them.
    let again = records::encode_value(&v);
    assert_eq!(records::decode_value(&again).expect("re-encoded"), v);
    let tagless = v.previous_producer_id == -1
        && v.next_producer_id == -1
        && v.client_transaction_version == 0;
    let topics_fit = v
        .partitions
        .iter()
        .all(|tp| tp.topic.len() <= i16::MAX as usize);
    if tagless && topics_fit {
        let v0 = records::encode_value_version(&v, 0);
        assert_eq!(records::decode_value(&v0).expect("re-encoded v0"), v);
    }
    true
}

pub(super) fn seeds() -> Vec<Vec<u8>> {
    let value = |state: TxnState, partitions: &[(&str, i32)], tv: i16| TxnLogValue {
        producer_id: 4000,
        previous_producer_id: -1,
        next_producer_id: if tv == 2 { 4001 } else { -1 },
        producer_epoch: 3,
        transaction_timeout_ms: 60_000,
        state,
        partitions: partitions
            .iter()
            .map(|(t, p)| TopicPartition::new(*t, *p))
            .collect::<BTreeSet<_>>(),
        last_update_timestamp_ms: NOW_MS,
        start_timestamp_ms: NOW_MS - 10,
        client_transaction_version: tv,
    };
    let with = |which: u8, bytes: &[u8]| [&[which][..], bytes].concat();
    vec![
        with(0, &records::encode_key("txn-1")),
        with(1, &records::encode_value(&value(TxnState::Empty, &[], 0))),
        with(
            1,
            &records::encode_value(&value(
                TxnState::Ongoing,
                &[("orders", 0), ("orders", 3), ("__consumer_offsets", 12)],
                2,
            )),
        ),
        with(
            1,
            &records::encode_value_version(&value(TxnState::PrepareAbort, &[("orders", 1)], 0), 0),
        ),
    ]
}

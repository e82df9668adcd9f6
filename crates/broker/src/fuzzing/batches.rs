//! The `record_batch` target: produced record batch validation in every codec.

use josefine_log::batch::{self, BatchHeader, Compression, ValidationConfig};
use josefine_log::testkit::{BatchBuilder, Rec};
use josefine_log::TimestampType;

use super::NOW_MS;

/// Validates one produced batch as the log does before an append. Byte 0 holds flags: bit 0
/// recompute the CRC (so damage reaches the decompressors and record walker instead of stopping
/// at the CRC check), bit 1 compacted topic (keys required), bit 2 LogAppendTime, bit 3 a small
/// `max.message.bytes`, bit 4 transactional batches allowed. The bytes are also read as a
/// transaction marker (control batches) and as a `.txnindex` file. Invariants: no panic; an accepted batch is exactly its declared length,
/// passes the produce shape check (v7+), and its rewritten header (offset, epoch, max
/// timestamp) still carries a valid CRC and re-validates with the same summary.
pub fn record_batch(data: &[u8]) -> bool {
    let Some((&flags, rest)) = data.split_first() else {
        return false;
    };
    let mut b = rest.to_vec();
    if flags & 1 != 0 && b.len() > batch::ATTRIBUTES_AT {
        let crc = crc32c::crc32c(&b[batch::ATTRIBUTES_AT..]);
        b[batch::CRC_AT..batch::CRC_AT + 4].copy_from_slice(&crc.to_be_bytes());
    }
    let cfg = ValidationConfig {
        max_message_bytes: if flags & 8 != 0 { 1000 } else { 1_048_588 },
        timestamp_type: if flags & 4 != 0 {
            TimestampType::LogAppendTime
        } else {
            TimestampType::CreateTime
        },
        timestamp_before_max_ms: i64::MAX,
        timestamp_after_max_ms: 3_600_000,
        require_keys: flags & 2 != 0,
        allow_transactional: flags & 16 != 0,
    };
    if let Ok(h) = BatchHeader::parse(&b) {
        let _ = (h.last_offset(), h.last_sequence(), h.timestamp_type());
        if h.total_bytes() <= b.len() {
            let _ = batch::check_crc(&b, &h);
            let _ = batch::check_counts(&h, h.total_bytes());
            let _ = batch::check_counts_cleaned(&h, h.total_bytes());
            // Transaction markers: a control batch's key and value, read as the producer
            // state and a follower do.
            if h.is_control() && batch::check_crc(&b, &h).is_ok() {
                let _ = josefine_log::control::decode_marker(&b[..h.total_bytes()], &h);
            }
        }
    }
    // The same bytes as a `.txnindex` file: 34-byte entries, checked, never trusted blindly.
    if let Ok(entries) = josefine_log::txn_index::decode_entries(&b, 0, i64::MAX) {
        assert_eq!(
            entries.len() * josefine_log::txn_index::ABORTED_TXN_BYTES,
            b.len()
        );
        for e in &entries {
            assert_eq!(
                josefine_log::txn_index::AbortedTxn::decode(&e.encode()),
                Ok(*e),
                "an accepted entry round-trips"
            );
        }
    }
    for version in [3, 7, 13] {
        let _ = batch::validate_produce_shape(version, &b);
    }
    let Ok(summary) = batch::validate_client_batch(&b, &cfg, NOW_MS) else {
        return false;
    };
    assert_eq!(summary.header.total_bytes(), b.len(), "accepted length");
    assert!(summary.header.records_count > 0, "accepted an empty batch");
    batch::validate_produce_shape(13, &b).expect("an accepted batch has the produce shape");
    let mut stamped = b.clone();
    batch::set_offset_and_epoch(&mut stamped, 1_000, 3);
    batch::set_max_timestamp(&mut stamped, cfg.timestamp_type, summary.max_timestamp);
    let h = BatchHeader::parse(&stamped).expect("stamped header parses");
    batch::check_crc(&stamped, &h).expect("stamping keeps the CRC valid");
    assert_eq!((h.base_offset, h.partition_leader_epoch), (1_000, 3));
    assert_eq!(h.max_timestamp, summary.max_timestamp);
    true
}

/// Every codec a batch may use: seeds cover each.
pub(super) const CODECS: [Compression; 5] = [
    Compression::None,
    Compression::Gzip,
    Compression::Snappy,
    Compression::Lz4,
    Compression::Zstd,
];

pub(super) fn seeds() -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    for codec in CODECS {
        let keyed = (0..4)
            .map(|i| Rec {
                key: Some(format!("k{i}").into_bytes()),
                value: (i != 2).then(|| vec![b'v'; 10 * i]),
                headers: vec![(b"h".to_vec(), Some(b"x".to_vec())), (b"n".to_vec(), None)],
            })
            .collect();
        let builders = [
            BatchBuilder::new(NOW_MS).compression(codec).records(1),
            BatchBuilder::new(NOW_MS)
                .compression(codec)
                .custom_records(keyed),
            BatchBuilder::new(NOW_MS)
                .compression(codec)
                .sized_records(20, 100)
                .producer(1000, 0, 5),
        ];
        for (i, builder) in builders.iter().enumerate() {
            let mut input = vec![[0u8, 3, 5][i]];
            input.extend_from_slice(&builder.build());
            out.push(input);
        }
    }
    out.push(
        [
            &[0u8][..],
            &BatchBuilder::new(NOW_MS)
                .raw_snappy()
                .compression(Compression::Snappy)
                .records(2)
                .build(),
        ]
        .concat(),
    );
    out
}

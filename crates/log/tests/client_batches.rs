//! Batches built by a real client library (kafka-python's record builder, see
//! fixtures/make_fixtures.py) pass validation for every codec, append unchanged except for the
//! broker-stamped header fields, and read back byte-identical.

use josefine_log::batch::{
    self, validate_client_batch, BatchHeader, Compression, ValidationConfig,
};
use josefine_log::{LogConfig, PartitionLog, TimestampType};

const NOW: i64 = 1_700_000_000_100;

fn fixture(name: &str) -> Vec<u8> {
    let path = format!(
        "{}/tests/fixtures/kafka_python_{name}.bin",
        env!("CARGO_MANIFEST_DIR")
    );
    std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

#[test]
fn kafka_python_batches_validate_for_every_codec() {
    let cfg = ValidationConfig {
        max_message_bytes: 1_048_588,
        timestamp_type: TimestampType::CreateTime,
        timestamp_before_max_ms: i64::MAX,
        timestamp_after_max_ms: 3_600_000,
        require_keys: false,
        allow_transactional: false,
    };
    for (name, codec) in [
        ("none", Compression::None),
        ("gzip", Compression::Gzip),
        ("snappy", Compression::Snappy),
        ("lz4", Compression::Lz4),
        ("zstd", Compression::Zstd),
    ] {
        let b = fixture(name);
        let s = validate_client_batch(&b, &cfg, NOW).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(s.header.compression(), codec, "{name}");
        assert_eq!(s.header.records_count, 50, "{name}");
        assert_eq!(s.header.producer_id, 1000, "{name}");
        assert_eq!(s.max_timestamp, 1_700_000_000_049, "{name}");
        assert_eq!(s.max_timestamp_offset_delta, 49, "{name}");
    }
}

#[test]
fn kafka_python_batches_round_trip_through_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let log = PartitionLog::open(dir.path(), [1; 16], LogConfig::default(), NOW).unwrap();
    let names = ["none", "gzip", "snappy", "lz4", "zstd"];
    for (i, name) in names.iter().enumerate() {
        // One producer: sequences must continue, so restamp producer id per codec.
        let mut b = fixture(name);
        b[batch::PRODUCER_ID_AT..batch::PRODUCER_ID_AT + 8]
            .copy_from_slice(&(i as i64 + 1).to_be_bytes());
        let crc = crc32c::crc32c(&b[batch::ATTRIBUTES_AT..]);
        b[batch::CRC_AT..batch::CRC_AT + 4].copy_from_slice(&crc.to_be_bytes());
        let out = log.append(&b, 3, NOW).unwrap();
        assert_eq!(out.base_offset, i as i64 * 50, "{name}");
        let again = log.append(&b, 3, NOW).unwrap();
        assert!(again.duplicate, "{name}: a resend is recognised");
        let r = log.read(out.base_offset, 1, i64::MAX).unwrap();
        let h = BatchHeader::parse(&r.records).unwrap();
        assert_eq!(h.base_offset, out.base_offset);
        assert_eq!(h.partition_leader_epoch, 3);
        assert_eq!(
            &r.records[batch::ATTRIBUTES_AT..],
            &b[batch::ATTRIBUTES_AT..],
            "{name}: stored as produced"
        );
    }
    assert_eq!(log.log_end_offset(), 250);
}

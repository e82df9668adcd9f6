//! Broker-side recompression: a topic's `compression.type` (and the KIP-390 levels) applied to
//! a produced batch, as Kafka's `LogValidator` does on the leader.
//!
//! Owns: the decision whether a validated client batch is stored as sent or rebuilt, the
//! rebuild itself (records re-encoded with offset deltas 0..n-1, the first record's timestamp
//! as base timestamp, attributes 0; key, value, headers, timestamps, producer id/epoch/base
//! sequence and the transactional flag kept; CRC recomputed) and the encoders Kafka's clients
//! read (gzip, xerial-framed snappy as snappy-java writes it, the lz4 frame format with
//! independent 64 KiB blocks, zstd).
//!
//! Kafka's rule (`LogValidator.validateMessagesAndAssignOffsets`): a batch is rebuilt when the
//! topic names a codec other than the batch's. Kafka also rebuilds a compressed batch whose
//! inner offset deltas are not 0..n-1 (in the batch's own codec); Josefine's record walk
//! refuses such a batch with INVALID_RECORD before it gets here (no client writes one).
//!
//! Must never: run on anything but a batch `batch::validate_client_batch_for` accepted (the
//! record walk trusts its structure), decompress past `DECOMPRESSED_BATCH_BYTES_MAX`, or change
//! a record's key, value, headers or timestamp. lz4 has no level here: `lz4_flex` has one
//! (fast) mode, so `compression.lz4.level` is stored and reported but does not change output.

use std::io::Write;

use crate::batch::{BatchHeader, BatchSummary, Compression, ATTRIBUTES_AT, CRC_AT};
use crate::error::LogError;
use crate::limits::BATCH_HEADER_BYTES;
use crate::records;

/// Kafka's `compression.gzip.level` default (`Deflater.DEFAULT_COMPRESSION`, level 6).
pub const GZIP_LEVEL_DEFAULT: i32 = -1;
/// Kafka's `compression.lz4.level` default.
pub const LZ4_LEVEL_DEFAULT: i32 = 9;
/// Kafka's `compression.zstd.level` default.
pub const ZSTD_LEVEL_DEFAULT: i32 = 3;

/// snappy-java's `SnappyOutputStream` block size (what Kafka's producer and broker write).
const XERIAL_BLOCK_BYTES: usize = 32 * 1024;
/// snappy-java's stream header: magic, version 1, compatible version 1.
const XERIAL_HEADER: [u8; 16] = [
    0x82, b'S', b'N', b'A', b'P', b'P', b'Y', 0, 0, 0, 0, 1, 0, 0, 0, 1,
];

/// A topic's `compression.type` with its levels (Kafka's `LogConfig.compression`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CompressionConfig {
    /// None is `producer`: keep the batch's codec.
    pub codec: Option<Compression>,
    pub gzip_level: i32,
    pub lz4_level: i32,
    pub zstd_level: i32,
}

impl Default for CompressionConfig {
    fn default() -> Self {
        CompressionConfig {
            codec: None,
            gzip_level: GZIP_LEVEL_DEFAULT,
            lz4_level: LZ4_LEVEL_DEFAULT,
            zstd_level: ZSTD_LEVEL_DEFAULT,
        }
    }
}

impl CompressionConfig {
    /// Parses Kafka's `compression.type` names (`producer`, `uncompressed`, `gzip`, `snappy`,
    /// `lz4`, `zstd`); None for anything else.
    pub fn codec_named(name: &str) -> Option<Option<Compression>> {
        Some(match name.trim() {
            "producer" => None,
            "uncompressed" => Some(Compression::None),
            "gzip" => Some(Compression::Gzip),
            "snappy" => Some(Compression::Snappy),
            "lz4" => Some(Compression::Lz4),
            "zstd" => Some(Compression::Zstd),
            _ => return None,
        })
    }

    /// Kafka's `compression.type` name of `codec`.
    pub fn codec_name(&self) -> &'static str {
        match self.codec {
            None => "producer",
            Some(Compression::None) => "uncompressed",
            Some(Compression::Gzip) => "gzip",
            Some(Compression::Snappy) => "snappy",
            Some(Compression::Lz4) => "lz4",
            Some(Compression::Zstd) => "zstd",
        }
    }

    /// The codec and level a batch with this header is rebuilt with, None when it is stored
    /// as sent (header only: cheap enough for the broker to decide where the append runs).
    pub fn rebuild_target(&self, header: &BatchHeader) -> Option<(Compression, i32)> {
        let codec = self.codec.filter(|c| *c != header.compression())?;
        let level = match codec {
            Compression::Gzip => self.gzip_level,
            Compression::Lz4 => self.lz4_level,
            Compression::Zstd => self.zstd_level,
            Compression::None | Compression::Snappy => 0,
        };
        Some((codec, level))
    }
}

/// The batch `batch` (validated, base offset 0) as the topic stores it: None when it is kept
/// as sent, else the rebuilt batch and its summary (largest timestamp and the offset delta of
/// its first record). Errors are CORRUPT_MESSAGE (a decompression failure the
/// validation walk did not meet) and leave nothing changed.
pub fn rebuild_if_needed(
    batch: &[u8],
    header: &BatchHeader,
    config: &CompressionConfig,
) -> Result<Option<(Vec<u8>, BatchSummary)>, LogError> {
    let Some((codec, level)) = config.rebuild_target(header) else {
        return Ok(None);
    };
    let raw = records::decompressed_records(batch, header)?;
    let r = reencode(&raw, header)?;
    let compressed = compress(codec, level, &r.body)?;
    let rebuilt = encode_batch(
        header,
        codec,
        &compressed,
        r.base_timestamp,
        r.max_timestamp,
    );
    let summary = BatchSummary {
        header: BatchHeader::parse(&rebuilt)?,
        max_timestamp: r.max_timestamp,
        max_timestamp_offset_delta: r.max_timestamp_offset_delta,
    };
    Ok(Some((rebuilt, summary)))
}

/// The re-encoded records section and what the new header says about it.
struct Reencoded {
    body: Vec<u8>,
    base_timestamp: i64,
    max_timestamp: i64,
    max_timestamp_offset_delta: i32,
}

/// Every record re-encoded with offset delta = its index and timestamps relative to the first
/// record's.
fn reencode(raw: &[u8], header: &BatchHeader) -> Result<Reencoded, LogError> {
    let mut out = Reencoded {
        body: Vec::with_capacity(raw.len() + raw.len() / 16),
        base_timestamp: header.base_timestamp,
        max_timestamp: i64::MIN,
        max_timestamp_offset_delta: 0,
    };
    let mut index = 0i32;
    let mut record = Vec::new();
    records::for_each_stored_record(raw, header, |r| {
        if index == 0 {
            out.base_timestamp = r.timestamp;
        }
        if r.timestamp > out.max_timestamp {
            out.max_timestamp = r.timestamp;
            out.max_timestamp_offset_delta = index;
        }
        let tail = records::after_offset_delta(&raw[r.encoded.clone()])
            .ok_or_else(|| LogError::CorruptMessage("record fields overrun the record".into()))?;
        record.clear();
        record.push(0); // attributes: unused in v2 records
        put_varlong(&mut record, r.timestamp.wrapping_sub(out.base_timestamp));
        put_varlong(&mut record, index as i64);
        record.extend_from_slice(tail);
        put_varlong(&mut out.body, record.len() as i64);
        out.body.extend_from_slice(&record);
        index += 1;
        Ok(())
    })?;
    Ok(out)
}

/// Zigzag varint (Kafka's `ByteUtils.writeVarlong`; a varint is the same encoding).
fn put_varlong(out: &mut Vec<u8>, v: i64) {
    let mut z = ((v << 1) ^ (v >> 63)) as u64;
    while z >= 0x80 {
        out.push((z as u8) | 0x80);
        z >>= 7;
    }
    out.push(z as u8);
}

/// The records section compressed with `codec` at `level` (as Kafka's producer would write it).
pub fn compress(codec: Compression, level: i32, raw: &[u8]) -> Result<Vec<u8>, LogError> {
    let failed = |e: std::io::Error| LogError::CorruptMessage(format!("recompression failed: {e}"));
    Ok(match codec {
        Compression::None => raw.to_vec(),
        Compression::Gzip => {
            let level = match level {
                GZIP_LEVEL_DEFAULT => flate2::Compression::default(),
                l => flate2::Compression::new(l.clamp(1, 9) as u32),
            };
            let mut e = flate2::write::GzEncoder::new(Vec::with_capacity(raw.len() / 2), level);
            e.write_all(raw).map_err(failed)?;
            e.finish().map_err(failed)?
        }
        Compression::Snappy => {
            let mut out = Vec::with_capacity(raw.len() / 2 + XERIAL_HEADER.len());
            out.extend_from_slice(&XERIAL_HEADER);
            let mut enc = snap::raw::Encoder::new();
            for chunk in raw.chunks(XERIAL_BLOCK_BYTES) {
                let c = enc
                    .compress_vec(chunk)
                    .map_err(|e| LogError::CorruptMessage(format!("snappy: {e}")))?;
                out.extend_from_slice(&(c.len() as i32).to_be_bytes());
                out.extend_from_slice(&c);
            }
            out
        }
        Compression::Lz4 => {
            let mut e = lz4_flex::frame::FrameEncoder::new(Vec::with_capacity(raw.len() / 2));
            e.write_all(raw).map_err(failed)?;
            e.finish()
                .map_err(|e| LogError::CorruptMessage(format!("lz4: {e}")))?
        }
        Compression::Zstd => zstd::bulk::compress(raw, level).map_err(failed)?,
    })
}

/// A v2 batch around `records` (the compressed records section) with `header`'s producer
/// fields, flags, record count and offset range, the new codec and timestamps; base offset 0
/// and leader epoch -1 like a produced batch (the log stamps both), CRC computed.
fn encode_batch(
    h: &BatchHeader,
    codec: Compression,
    records: &[u8],
    base_timestamp: i64,
    max_timestamp: i64,
) -> Vec<u8> {
    let mut b = Vec::with_capacity(BATCH_HEADER_BYTES + records.len());
    let attributes = (h.attributes & !0x07) | codec.id();
    b.extend_from_slice(&0i64.to_be_bytes());
    b.extend_from_slice(&((BATCH_HEADER_BYTES - 12 + records.len()) as i32).to_be_bytes());
    b.extend_from_slice(&h.partition_leader_epoch.to_be_bytes());
    b.push(2);
    b.extend_from_slice(&0u32.to_be_bytes());
    b.extend_from_slice(&attributes.to_be_bytes());
    b.extend_from_slice(&(h.records_count - 1).to_be_bytes());
    b.extend_from_slice(&base_timestamp.to_be_bytes());
    b.extend_from_slice(&max_timestamp.to_be_bytes());
    b.extend_from_slice(&h.producer_id.to_be_bytes());
    b.extend_from_slice(&h.producer_epoch.to_be_bytes());
    b.extend_from_slice(&h.base_sequence.to_be_bytes());
    b.extend_from_slice(&h.records_count.to_be_bytes());
    b.extend_from_slice(records);
    let crc = crc32c::crc32c(&b[ATTRIBUTES_AT..]);
    b[CRC_AT..CRC_AT + 4].copy_from_slice(&crc.to_be_bytes());
    b
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::batch::{validate_client_batch, ValidationConfig};
    use crate::testkit::{BatchBuilder, Rec};
    use crate::TimestampType;

    const CODECS: [Compression; 5] = [
        Compression::None,
        Compression::Gzip,
        Compression::Snappy,
        Compression::Lz4,
        Compression::Zstd,
    ];

    fn cfg(codec: Option<Compression>) -> CompressionConfig {
        CompressionConfig {
            codec,
            ..CompressionConfig::default()
        }
    }

    fn validation() -> ValidationConfig {
        ValidationConfig {
            max_message_bytes: 1 << 30,
            timestamp_type: TimestampType::CreateTime,
            timestamp_before_max_ms: i64::MAX,
            timestamp_after_max_ms: i64::MAX,
            require_keys: false,
            allow_transactional: true,
        }
    }

    /// (offset delta, timestamp, key, value, bytes after the offset delta) of every record.
    type Fields = Vec<(i32, i64, Option<Vec<u8>>, Option<Vec<u8>>, Vec<u8>)>;

    fn fields(batch: &[u8]) -> Fields {
        let h = BatchHeader::parse(batch).unwrap();
        let raw = records::decompressed_records(batch, &h).unwrap();
        let mut out = Vec::new();
        records::for_each_stored_record(&raw, &h, |r| {
            let tail = records::after_offset_delta(&raw[r.encoded.clone()]).unwrap();
            out.push((
                r.offset_delta,
                r.timestamp,
                r.key.map(|k| raw[k].to_vec()),
                r.value.map(|v| raw[v].to_vec()),
                tail.to_vec(),
            ));
            Ok(())
        })
        .unwrap();
        out
    }

    fn sample(codec: Compression) -> Vec<u8> {
        BatchBuilder::new(1_700_000_000_000)
            .compression(codec)
            .producer(42, 3, 17)
            .timestamp_deltas(vec![5, 0, 9])
            .custom_records(vec![
                Rec {
                    key: Some(b"k0".to_vec()),
                    value: Some(b"v0 v0 v0 v0 v0 v0".to_vec()),
                    headers: vec![(b"h".to_vec(), Some(b"x".to_vec())), (b"n".to_vec(), None)],
                },
                Rec {
                    key: None,
                    value: None,
                    headers: vec![],
                },
                Rec {
                    key: Some(b"k2".to_vec()),
                    value: Some(vec![7; 100_000]),
                    headers: vec![],
                },
            ])
            .build()
    }

    #[test]
    fn every_codec_pair_keeps_records_and_producer_fields() {
        for from in CODECS {
            let sent = sample(from);
            let sent_header = BatchHeader::parse(&sent).unwrap();
            for to in CODECS {
                let out = rebuild_if_needed(&sent, &sent_header, &cfg(Some(to))).unwrap();
                let Some((out, summary)) = out else {
                    assert_eq!(from, to, "{from:?} -> {to:?} kept as sent");
                    continue;
                };
                assert_ne!(from, to, "{from:?} rebuilt although the codec matches");
                // The client-batch validation (CRC, counts, structure) accepts the rebuild.
                let s = validate_client_batch(&out, &validation(), 0).unwrap();
                let h = s.header;
                assert_eq!(h.compression(), to);
                assert_eq!(
                    (h.producer_id, h.producer_epoch, h.base_sequence),
                    (42, 3, 17)
                );
                assert_eq!((h.records_count, h.last_offset_delta), (3, 2));
                assert_eq!(h.base_timestamp, 1_700_000_000_005, "first record's");
                assert_eq!(h.max_timestamp, 1_700_000_000_009);
                assert_eq!(summary, s);
                assert_eq!(summary.max_timestamp_offset_delta, 2);
                assert_eq!(fields(&out), fields(&sent), "{from:?} -> {to:?}");
            }
        }
    }

    #[test]
    fn producer_and_a_matching_codec_keep_the_batch() {
        for codec in CODECS {
            let sent = sample(codec);
            let h = BatchHeader::parse(&sent).unwrap();
            assert_eq!(rebuild_if_needed(&sent, &h, &cfg(None)).unwrap(), None);
            let c = cfg(Some(codec));
            assert_eq!(
                CompressionConfig::codec_named(c.codec_name()),
                Some(c.codec)
            );
            assert_eq!(
                rebuild_if_needed(&sent, &h, &cfg(Some(codec))).unwrap(),
                None
            );
        }
        let plain = sample(Compression::None);
        let h = BatchHeader::parse(&plain).unwrap();
        assert_eq!(cfg(Some(Compression::None)).rebuild_target(&h), None);
        assert_eq!(
            cfg(Some(Compression::Zstd)).rebuild_target(&h),
            Some((Compression::Zstd, ZSTD_LEVEL_DEFAULT))
        );
    }

    #[test]
    fn levels_change_the_output_where_the_codec_has_them() {
        let raw: Vec<u8> = (0..200_000u32)
            .flat_map(|i| (i % 251).to_be_bytes())
            .collect();
        let gz1 = compress(Compression::Gzip, 1, &raw).unwrap();
        let gz9 = compress(Compression::Gzip, 9, &raw).unwrap();
        assert_ne!(gz1, gz9);
        let z1 = compress(Compression::Zstd, 1, &raw).unwrap();
        let z19 = compress(Compression::Zstd, 19, &raw).unwrap();
        assert!(z19.len() < z1.len(), "{} vs {}", z19.len(), z1.len());
    }

    /// Through the log: a gzip batch appended to an lz4 topic is stored as lz4 with its
    /// offsets, idempotent producer state and (LogAppendTime) timestamp stamped; a size over
    /// message.max.bytes after recompression is MESSAGE_TOO_LARGE and nothing is written.
    #[test]
    fn the_log_stores_the_topics_codec() {
        let dir = tempfile::tempdir().unwrap();
        let config = crate::LogConfig {
            compression: cfg(Some(Compression::Lz4)),
            timestamp_type: TimestampType::LogAppendTime,
            ..crate::LogConfig::default()
        };
        let log = crate::PartitionLog::open(dir.path(), [1; 16], config.clone(), 0).unwrap();
        let now = 1_700_000_000_100;
        let first = log.append(&sample(Compression::Gzip), 4, now).unwrap();
        assert_eq!((first.base_offset, first.last_offset), (0, 2));
        let again = log.append(&sample(Compression::Gzip), 4, now).unwrap();
        assert!(
            again.duplicate,
            "the producer's sequence survived the rebuild"
        );
        let read = log.read(0, 1 << 20, i64::MAX).unwrap();
        let h = BatchHeader::parse(&read.records).unwrap();
        assert_eq!(h.total_bytes(), read.records.len(), "one batch");
        crate::batch::check_crc(&read.records, &h).unwrap();
        assert_eq!(h.compression(), Compression::Lz4);
        assert_eq!((h.base_offset, h.partition_leader_epoch), (0, 4));
        assert_eq!(h.timestamp_type(), TimestampType::LogAppendTime);
        assert_eq!(h.max_timestamp, now);
        assert_eq!(fields(&read.records), fields(&sample(Compression::Gzip)));

        // 100 KB of one byte repeated: small as gzip, over 20 KB uncompressed.
        log.update_config(crate::LogConfig {
            compression: cfg(Some(Compression::None)),
            max_message_bytes: 20_000,
            ..config
        })
        .unwrap();
        let e = log.append(&sample(Compression::Zstd), 4, now).unwrap_err();
        assert!(matches!(e, LogError::MessageTooLarge { .. }), "{e}");
        assert_eq!(log.log_end_offset(), 3);
    }
}

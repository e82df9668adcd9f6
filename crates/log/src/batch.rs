//! Record batch (magic v2) header parsing, validation and in-place rewriting.
//!
//! Owns: the byte layout of a v2 batch header, the checks Kafka's broker runs on a produced
//! batch (`ProduceRequest.validateRecords`, `UnifiedLog.analyzeAndValidateRecords`,
//! `LogValidator`), and the few header fields the broker rewrites (base offset, leader epoch,
//! max timestamp / timestamp type with a CRC recompute). Public so the broker can read producer
//! ids and flags off a batch without re-implementing the layout.
//!
//! Must never: allocate in proportion to a declared count or length before checking it against
//! the bytes actually present (the hostile-count hazard), or recompress a batch (that is
//! `recompress.rs`'s, for topics whose `compression.type` names another codec).
//!
//! Layout (big-endian), offsets in bytes:
//! ```text
//!  0 baseOffset i64        8 batchLength i32     12 partitionLeaderEpoch i32   16 magic i8
//! 17 crc u32 (CRC32C of bytes 21..end)           21 attributes i16             23 lastOffsetDelta i32
//! 27 baseTimestamp i64    35 maxTimestamp i64    43 producerId i64             51 producerEpoch i16
//! 53 baseSequence i32     57 recordsCount i32    61 records...
//! ```

use crate::error::{LogError, RecordError};
use crate::limits::{BATCH_HEADER_BYTES, RECORD_BYTES_MIN};
use crate::records::{self, RecordVisit};
use crate::TimestampType;

pub const BASE_OFFSET_AT: usize = 0;
pub const LENGTH_AT: usize = 8;
pub const LEADER_EPOCH_AT: usize = 12;
pub const MAGIC_AT: usize = 16;
pub const CRC_AT: usize = 17;
pub const ATTRIBUTES_AT: usize = 21;
pub const LAST_OFFSET_DELTA_AT: usize = 23;
pub const BASE_TIMESTAMP_AT: usize = 27;
pub const MAX_TIMESTAMP_AT: usize = 35;
pub const PRODUCER_ID_AT: usize = 43;
pub const PRODUCER_EPOCH_AT: usize = 51;
pub const BASE_SEQUENCE_AT: usize = 53;
pub const RECORDS_COUNT_AT: usize = 57;

/// baseOffset + batchLength: the bytes before the length-counted part (Kafka's LOG_OVERHEAD).
pub const LOG_OVERHEAD_BYTES: usize = 12;
/// Bytes up to and including magic (Kafka's HEADER_SIZE_UP_TO_MAGIC): below this a batch
/// cannot even say what format it is.
pub const HEADER_BYTES_UP_TO_MAGIC: usize = 17;

const ATTR_COMPRESSION_MASK: i16 = 0x07;
const ATTR_TIMESTAMP_TYPE: i16 = 0x08;
const ATTR_TRANSACTIONAL: i16 = 0x10;
const ATTR_CONTROL: i16 = 0x20;

/// `RecordBatch.NO_PRODUCER_ID`.
pub const NO_PRODUCER_ID: i64 = -1;
/// `RecordBatch.NO_PRODUCER_EPOCH`.
pub const NO_PRODUCER_EPOCH: i16 = -1;
/// `RecordBatch.NO_SEQUENCE`.
pub const NO_SEQUENCE: i32 = -1;
/// `RecordBatch.NO_TIMESTAMP`.
pub const NO_TIMESTAMP: i64 = -1;

/// The codec in attribute bits 0-2.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    None,
    Gzip,
    Snappy,
    Lz4,
    Zstd,
}

impl Compression {
    fn from_attributes(attributes: i16) -> Result<Self, LogError> {
        match attributes & ATTR_COMPRESSION_MASK {
            0 => Ok(Compression::None),
            1 => Ok(Compression::Gzip),
            2 => Ok(Compression::Snappy),
            3 => Ok(Compression::Lz4),
            4 => Ok(Compression::Zstd),
            other => Err(LogError::CorruptMessage(format!(
                "unknown compression codec id {other}"
            ))),
        }
    }

    /// The attribute bits for this codec.
    pub fn id(self) -> i16 {
        match self {
            Compression::None => 0,
            Compression::Gzip => 1,
            Compression::Snappy => 2,
            Compression::Lz4 => 3,
            Compression::Zstd => 4,
        }
    }
}

/// A parsed v2 batch header. Parsing checks only what is needed to trust the field values as
/// numbers (length, magic, codec); `validate_client_batch` does the rest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchHeader {
    pub base_offset: i64,
    pub batch_length: i32,
    pub partition_leader_epoch: i32,
    pub magic: i8,
    pub crc: u32,
    pub attributes: i16,
    pub last_offset_delta: i32,
    pub base_timestamp: i64,
    pub max_timestamp: i64,
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub base_sequence: i32,
    pub records_count: i32,
}

pub(crate) fn be_i64(b: &[u8], at: usize) -> i64 {
    i64::from_be_bytes(b[at..at + 8].try_into().expect("8 bytes"))
}
pub(crate) fn be_i32(b: &[u8], at: usize) -> i32 {
    i32::from_be_bytes(b[at..at + 4].try_into().expect("4 bytes"))
}
pub(crate) fn be_i16(b: &[u8], at: usize) -> i16 {
    i16::from_be_bytes(b[at..at + 2].try_into().expect("2 bytes"))
}

impl BatchHeader {
    /// Parse the 61-byte header at the start of `buf`. Requires magic 2 and a length that is
    /// at least a whole header; does not require the whole batch to be present.
    pub fn parse(buf: &[u8]) -> Result<BatchHeader, LogError> {
        if buf.len() < HEADER_BYTES_UP_TO_MAGIC {
            return Err(LogError::CorruptMessage(format!(
                "{} bytes cannot hold a record batch header",
                buf.len()
            )));
        }
        let magic = buf[MAGIC_AT] as i8;
        if magic != 2 {
            // Kafka 4 (ProduceRequest.validateRecords): v3+ produce requests may only carry
            // magic v2 batches, answered with INVALID_RECORD.
            return Err(LogError::InvalidRecord(format!(
                "only record batches with magic version 2 are accepted, got magic {magic}"
            )));
        }
        if buf.len() < BATCH_HEADER_BYTES {
            return Err(LogError::CorruptMessage(format!(
                "{} bytes cannot hold a v2 record batch header of {BATCH_HEADER_BYTES}",
                buf.len()
            )));
        }
        let batch_length = be_i32(buf, LENGTH_AT);
        if (batch_length as i64) < (BATCH_HEADER_BYTES - LOG_OVERHEAD_BYTES) as i64 {
            return Err(LogError::CorruptMessage(format!(
                "batch length {batch_length} is less than the v2 header"
            )));
        }
        let attributes = be_i16(buf, ATTRIBUTES_AT);
        Compression::from_attributes(attributes)?;
        Ok(BatchHeader {
            base_offset: be_i64(buf, BASE_OFFSET_AT),
            batch_length,
            partition_leader_epoch: be_i32(buf, LEADER_EPOCH_AT),
            magic,
            crc: u32::from_be_bytes(buf[CRC_AT..CRC_AT + 4].try_into().expect("4 bytes")),
            attributes,
            last_offset_delta: be_i32(buf, LAST_OFFSET_DELTA_AT),
            base_timestamp: be_i64(buf, BASE_TIMESTAMP_AT),
            max_timestamp: be_i64(buf, MAX_TIMESTAMP_AT),
            producer_id: be_i64(buf, PRODUCER_ID_AT),
            producer_epoch: be_i16(buf, PRODUCER_EPOCH_AT),
            base_sequence: be_i32(buf, BASE_SEQUENCE_AT),
            records_count: be_i32(buf, RECORDS_COUNT_AT),
        })
    }

    /// Whole batch size in bytes, header included.
    pub fn total_bytes(&self) -> usize {
        LOG_OVERHEAD_BYTES + self.batch_length as usize
    }
    pub fn compression(&self) -> Compression {
        Compression::from_attributes(self.attributes).expect("checked in parse")
    }
    pub fn timestamp_type(&self) -> TimestampType {
        if self.attributes & ATTR_TIMESTAMP_TYPE != 0 {
            TimestampType::LogAppendTime
        } else {
            TimestampType::CreateTime
        }
    }
    pub fn is_transactional(&self) -> bool {
        self.attributes & ATTR_TRANSACTIONAL != 0
    }
    pub fn is_control(&self) -> bool {
        self.attributes & ATTR_CONTROL != 0
    }
    /// Idempotent or transactional producer (`RecordBatch.hasProducerId`).
    pub fn has_producer_id(&self) -> bool {
        self.producer_id > NO_PRODUCER_ID
    }
    pub fn last_offset(&self) -> i64 {
        self.base_offset
            .saturating_add(self.last_offset_delta as i64)
    }
    /// Last sequence of the batch, wrapping past i32::MAX to 0 as Kafka does
    /// (`DefaultRecordBatch.incrementSequence`).
    pub fn last_sequence(&self) -> i32 {
        if self.base_sequence == NO_SEQUENCE {
            return NO_SEQUENCE;
        }
        increment_sequence(self.base_sequence, self.last_offset_delta)
    }
}

/// The last offset of the last whole batch in `records` (a read's answer: whole batches one
/// after another); None when no whole batch parses from the start.
pub fn last_offset_of(records: &[u8]) -> Option<i64> {
    let mut at = 0usize;
    let mut last = None;
    while let Ok(h) = BatchHeader::parse(&records[at..]) {
        let end = at.checked_add(h.total_bytes())?;
        if end > records.len() {
            break;
        }
        last = Some(h.last_offset());
        at = end;
    }
    last
}

/// `sequence + increment` wrapping past i32::MAX to 0.
pub fn increment_sequence(sequence: i32, increment: i32) -> i32 {
    // i64 so that hostile (negative) inputs cannot overflow; valid inputs are both >= 0.
    let next = sequence as i64 + increment as i64;
    if next > i32::MAX as i64 {
        (next - i32::MAX as i64 - 1) as i32
    } else {
        next as i32
    }
}

/// Checks Kafka's `ProduceRequest.validateRecords` runs on a produce request's records for one
/// partition, given the request's API version: exactly one batch, magic 2, no zstd before v7.
/// `PartitionLog::append` repeats the first two checks, so calling this is only needed for the
/// version-dependent zstd rule.
pub fn validate_produce_shape(api_version: i16, records: &[u8]) -> Result<(), LogError> {
    let header = BatchHeader::parse(records)?;
    if api_version < 7 && header.compression() == Compression::Zstd {
        return Err(LogError::UnsupportedCompressionType(format!(
            "produce requests with version {api_version} are not allowed to use ZStandard compression"
        )));
    }
    if records.len() > header.total_bytes() {
        return Err(LogError::InvalidRecord(
            "produce requests are only allowed to contain exactly one record batch per partition"
                .into(),
        ));
    }
    Ok(())
}

/// What the broker needs to know about a batch it is about to append.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchSummary {
    pub header: BatchHeader,
    /// Largest record timestamp (before any LogAppendTime rewrite).
    pub max_timestamp: i64,
    /// Offset delta of the first record carrying `max_timestamp`.
    pub max_timestamp_offset_delta: i32,
}

/// Per-append validation settings taken from the topic config.
#[derive(Debug, Clone, Copy)]
pub struct ValidationConfig {
    pub max_message_bytes: u32,
    pub timestamp_type: TimestampType,
    /// `log.message.timestamp.before.max.ms`: how far in the past a CreateTime may be.
    pub timestamp_before_max_ms: i64,
    /// `log.message.timestamp.after.max.ms`: how far in the future a CreateTime may be.
    pub timestamp_after_max_ms: i64,
    /// Compacted topics: a record without a key is INVALID_RECORD (Kafka's rule; the cleaner
    /// could never decide which version of "no key" to keep).
    pub require_keys: bool,
    /// Transactional batches are accepted (the broker verified the producer's transaction);
    /// otherwise they are INVALID_TXN_STATE.
    pub allow_transactional: bool,
}

/// Validate one complete batch from a client, as Kafka's broker does, in this order:
/// magic, base offset 0, size vs `message.max.bytes`, CRC32C, offset range vs record count,
/// control/transactional flags, sequence, then every record's structure (decompressing with a
/// hard cap when compressed) and CreateTime timestamps. `batch` must be exactly one batch.
/// Record errors name no partition (tools, fuzzing); the log uses
/// [`validate_client_batch_for`].
pub fn validate_client_batch(
    batch: &[u8],
    cfg: &ValidationConfig,
    now_ms: i64,
) -> Result<BatchSummary, LogError> {
    validate_client_batch_for(batch, cfg, now_ms, "")
}

/// [`validate_client_batch`] whose record errors name `topic_partition` ("topic-N") as
/// Kafka's do. Record-level refusals (a missing key on a compacted topic, a CreateTime
/// outside the window) are collected over the whole batch, one per record (the key first,
/// as Kafka), and returned together as [`LogError::RecordErrors`]; so is every record of a
/// batch the producer flagged LogAppendTime that Kafka would refuse. Structural errors still
/// stop at the first.
pub fn validate_client_batch_for(
    batch: &[u8],
    cfg: &ValidationConfig,
    now_ms: i64,
    topic_partition: &str,
) -> Result<BatchSummary, LogError> {
    let header = BatchHeader::parse(batch)?;
    if header.total_bytes() != batch.len() {
        return Err(LogError::CorruptMessage(format!(
            "batch length field says {} bytes but {} are present",
            header.total_bytes(),
            batch.len()
        )));
    }
    if header.base_offset != 0 {
        return Err(LogError::InvalidRecord(format!(
            "the baseOffset of a produced record batch should be 0, but it is {}",
            header.base_offset
        )));
    }
    // Never above BATCH_BYTES_MAX, whatever the config says: recovery treats longer batches as
    // corrupt, so accepting one would lose it at the next unclean restart.
    let max_bytes = (cfg.max_message_bytes as u64).min(crate::limits::BATCH_BYTES_MAX);
    if batch.len() as u64 > max_bytes {
        return Err(LogError::MessageTooLarge {
            size_bytes: batch.len() as u64,
            max_bytes,
        });
    }
    check_crc(batch, &header)?;
    check_counts(&header, batch.len())?;
    if header.is_control() {
        return Err(LogError::InvalidRecord(
            "clients are not allowed to write control records".into(),
        ));
    }
    if header.is_transactional() && !cfg.allow_transactional {
        return Err(LogError::InvalidTxnState(
            "transactional produce is not supported yet (no transaction coordinator)".into(),
        ));
    }
    if header.has_producer_id() && header.base_sequence < 0 {
        return Err(LogError::InvalidRecord(format!(
            "invalid sequence number {} in a batch from producer {}",
            header.base_sequence, header.producer_id
        )));
    }
    let mut summary = BatchSummary {
        header,
        max_timestamp: i64::MIN,
        max_timestamp_offset_delta: 0,
    };
    let check_time = cfg.timestamp_type == TimestampType::CreateTime;
    let producer_log_append = header.timestamp_type() == TimestampType::LogAppendTime;
    let mut record_errors: Vec<RecordError> = Vec::new();
    let mut timestamp_error = false;
    let mut batch_index = 0i32;
    records::visit_records(batch, &header, |r: RecordVisit| {
        let index = batch_index;
        batch_index += 1;
        if cfg.require_keys && r.key_len < 0 {
            record_errors.push(RecordError {
                batch_index: index,
                message: format!(
                    "Compacted topic cannot accept message without key in topic partition {topic_partition}"
                ),
            });
            return Ok(true);
        }
        // A record of a batch flagged LogAppendTime reads as the batch's max timestamp (Kafka's
        // DefaultRecordBatch); with a CreateTime topic only a record without a timestamp is
        // then refused, with a LogAppendTime topic every one (Kafka's validateTimestamp).
        let timestamp = if producer_log_append {
            header.max_timestamp
        } else {
            r.timestamp
        };
        // Kafka's bounds, wrapping as Java's long arithmetic does in the message.
        let out_of_window = timestamp > now_ms.saturating_add(cfg.timestamp_after_max_ms)
            || timestamp < now_ms.saturating_sub(cfg.timestamp_before_max_ms);
        if check_time && timestamp != NO_TIMESTAMP {
            if out_of_window {
                timestamp_error = true;
                record_errors.push(RecordError {
                    batch_index: index,
                    // The base offset is 0 (checked above), so the record's offset is its delta.
                    message: format!(
                        "Timestamp {} of message with offset {} is out of range. The timestamp should be within [{}, {}]",
                        timestamp,
                        r.offset_delta,
                        now_ms.wrapping_sub(cfg.timestamp_before_max_ms),
                        now_ms.wrapping_add(cfg.timestamp_after_max_ms)
                    ),
                });
                return Ok(true);
            }
        } else if producer_log_append {
            timestamp_error = true;
            record_errors.push(RecordError {
                batch_index: index,
                message: format!(
                    "Invalid timestamp type in message DefaultRecord(offset={}, timestamp={}, key={} bytes, value={} bytes). Producer should not set timestamp type to LogAppendTime.",
                    r.offset_delta,
                    timestamp,
                    r.key_len.max(0),
                    r.value_len.max(0)
                ),
            });
            return Ok(true);
        }
        if timestamp > summary.max_timestamp {
            summary.max_timestamp = timestamp;
            summary.max_timestamp_offset_delta = r.offset_delta;
        }
        Ok(true)
    })?;
    if !record_errors.is_empty() {
        return Err(LogError::RecordErrors {
            timestamp: timestamp_error,
            errors: record_errors,
        });
    }
    Ok(summary)
}

/// CRC32C over attributes..end must match the header (CORRUPT_MESSAGE otherwise).
pub fn check_crc(batch: &[u8], header: &BatchHeader) -> Result<(), LogError> {
    let computed = crc32c::crc32c(&batch[ATTRIBUTES_AT..header.total_bytes()]);
    if computed != header.crc {
        return Err(LogError::CorruptMessage(format!(
            "record batch CRC {:#010x} does not match computed {computed:#010x}",
            header.crc
        )));
    }
    Ok(())
}

/// Record count vs lastOffsetDelta, and the count vs the bytes that could hold it: done before
/// any record is looked at, so a hostile count costs nothing.
pub fn check_counts(header: &BatchHeader, batch_bytes: usize) -> Result<(), LogError> {
    if header.records_count <= 0 {
        return Err(LogError::InvalidRecord(format!(
            "invalid reported count for record batch: {}",
            header.records_count
        )));
    }
    if header.last_offset_delta < 0
        || header.last_offset_delta as i64 + 1 != header.records_count as i64
    {
        return Err(LogError::InvalidRecord(format!(
            "inconsistent batch offset range: lastOffsetDelta {} with {} records",
            header.last_offset_delta, header.records_count
        )));
    }
    if header.compression() == Compression::None {
        let records_bytes = batch_bytes - BATCH_HEADER_BYTES;
        if header.records_count as u64 * RECORD_BYTES_MIN as u64 > records_bytes as u64 {
            return Err(LogError::CorruptMessage(format!(
                "record count {} cannot fit in {records_bytes} bytes",
                header.records_count
            )));
        }
    } else if header.records_count as u64 * RECORD_BYTES_MIN as u64
        > crate::limits::DECOMPRESSED_BATCH_BYTES_MAX
    {
        return Err(LogError::CorruptMessage(format!(
            "record count {} exceeds what the decompression cap can hold",
            header.records_count
        )));
    }
    Ok(())
}

/// `check_counts` for a batch the cleaner may have rewritten: it keeps its offset range
/// (lastOffsetDelta) but may hold fewer records, or none (an emptied batch kept to preserve
/// an idempotent producer's last sequence).
pub fn check_counts_cleaned(header: &BatchHeader, batch_bytes: usize) -> Result<(), LogError> {
    if header.last_offset_delta < 0
        || header.records_count < 0
        || header.records_count as i64 > header.last_offset_delta as i64 + 1
    {
        return Err(LogError::CorruptMessage(format!(
            "cleaned batch holds {} records in lastOffsetDelta {}",
            header.records_count, header.last_offset_delta
        )));
    }
    if header.compression() == Compression::None
        && header.records_count as u64 * RECORD_BYTES_MIN as u64
            > (batch_bytes - BATCH_HEADER_BYTES) as u64
    {
        return Err(LogError::CorruptMessage(format!(
            "record count {} cannot fit in the batch",
            header.records_count
        )));
    }
    Ok(())
}

/// Stamp the broker-assigned base offset and leader epoch: both live outside the CRC.
pub fn set_offset_and_epoch(batch: &mut [u8], base_offset: i64, leader_epoch: i32) {
    batch[BASE_OFFSET_AT..BASE_OFFSET_AT + 8].copy_from_slice(&base_offset.to_be_bytes());
    batch[LEADER_EPOCH_AT..LEADER_EPOCH_AT + 4].copy_from_slice(&leader_epoch.to_be_bytes());
}

/// Make the header's timestamp type and max timestamp say what the topic decided, as Kafka's
/// `setMaxTimestamp` does; recomputes the CRC only when a byte under it changed.
/// Returns true when the bytes were changed.
pub fn set_max_timestamp(
    batch: &mut [u8],
    timestamp_type: TimestampType,
    max_timestamp: i64,
) -> bool {
    let (head, tail) = batch.split_at_mut(BATCH_HEADER_BYTES);
    set_max_timestamp_split(head, tail, timestamp_type, max_timestamp)
}

/// [`set_max_timestamp`] for a batch held as its header (`BATCH_HEADER_BYTES`, rewritten) and
/// the records after it (only read, for the CRC): lets the append path stamp a copy of the
/// 61-byte header instead of copying the whole batch.
pub fn set_max_timestamp_split(
    head: &mut [u8],
    tail: &[u8],
    timestamp_type: TimestampType,
    max_timestamp: i64,
) -> bool {
    assert_eq!(head.len(), BATCH_HEADER_BYTES, "a whole v2 header");
    let attributes = be_i16(head, ATTRIBUTES_AT);
    let wanted_attributes = match timestamp_type {
        TimestampType::CreateTime => attributes & !ATTR_TIMESTAMP_TYPE,
        TimestampType::LogAppendTime => attributes | ATTR_TIMESTAMP_TYPE,
    };
    if wanted_attributes == attributes && be_i64(head, MAX_TIMESTAMP_AT) == max_timestamp {
        return false;
    }
    head[ATTRIBUTES_AT..ATTRIBUTES_AT + 2].copy_from_slice(&wanted_attributes.to_be_bytes());
    head[MAX_TIMESTAMP_AT..MAX_TIMESTAMP_AT + 8].copy_from_slice(&max_timestamp.to_be_bytes());
    let crc = crc32c::crc32c_append(crc32c::crc32c(&head[ATTRIBUTES_AT..]), tail);
    head[CRC_AT..CRC_AT + 4].copy_from_slice(&crc.to_be_bytes());
    true
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::testkit::{BatchBuilder, Rec};

    fn cfg() -> ValidationConfig {
        ValidationConfig {
            max_message_bytes: 1_048_588,
            timestamp_type: TimestampType::CreateTime,
            timestamp_before_max_ms: i64::MAX,
            timestamp_after_max_ms: 3_600_000,
            require_keys: false,
            allow_transactional: false,
        }
    }

    const NOW: i64 = 1_700_000_000_000;

    #[test]
    fn accepts_a_well_formed_batch_for_every_codec() {
        for codec in [
            Compression::None,
            Compression::Gzip,
            Compression::Snappy,
            Compression::Lz4,
            Compression::Zstd,
        ] {
            let b = BatchBuilder::new(NOW)
                .compression(codec)
                .records(10)
                .build();
            let s =
                validate_client_batch(&b, &cfg(), NOW).unwrap_or_else(|e| panic!("{codec:?}: {e}"));
            assert_eq!(s.header.records_count, 10);
            assert_eq!(s.max_timestamp, NOW + 9);
            assert_eq!(s.max_timestamp_offset_delta, 9);
        }
    }

    #[test]
    fn raw_snappy_without_xerial_framing_is_accepted() {
        let b = BatchBuilder::new(NOW)
            .compression(Compression::Snappy)
            .raw_snappy()
            .records(3)
            .build();
        validate_client_batch(&b, &cfg(), NOW).unwrap();
    }

    #[test]
    fn magic_0_and_1_are_invalid_record() {
        for magic in [0u8, 1] {
            let mut b = BatchBuilder::new(NOW).records(1).build();
            b[MAGIC_AT] = magic;
            let e = validate_client_batch(&b, &cfg(), NOW).unwrap_err();
            assert_eq!(e.kafka_error_code(), 87, "{e}");
        }
    }

    #[test]
    fn corrupt_crc_is_corrupt_message() {
        let mut b = BatchBuilder::new(NOW).records(2).build();
        let last = b.len() - 1;
        b[last] ^= 0xff;
        let e = validate_client_batch(&b, &cfg(), NOW).unwrap_err();
        assert_eq!(e.kafka_error_code(), 2, "{e}");
    }

    #[test]
    fn length_mismatch_is_corrupt_message() {
        let mut b = BatchBuilder::new(NOW).records(2).build();
        b.push(0);
        assert_eq!(
            validate_client_batch(&b, &cfg(), NOW)
                .unwrap_err()
                .kafka_error_code(),
            2
        );
        let b = BatchBuilder::new(NOW).records(2).build();
        assert_eq!(
            validate_client_batch(&b[..b.len() - 1], &cfg(), NOW)
                .unwrap_err()
                .kafka_error_code(),
            2
        );
    }

    #[test]
    fn last_offset_delta_must_match_count() {
        let b = BatchBuilder::new(NOW)
            .records(3)
            .last_offset_delta(5)
            .build();
        assert_eq!(
            validate_client_batch(&b, &cfg(), NOW)
                .unwrap_err()
                .kafka_error_code(),
            87
        );
    }

    #[test]
    fn hostile_record_count_is_rejected_before_any_work() {
        for codec in [Compression::None, Compression::Zstd] {
            let b = BatchBuilder::new(NOW)
                .compression(codec)
                .records(1)
                .declared_count(i32::MAX)
                .last_offset_delta(i32::MAX - 1)
                .build();
            let e = validate_client_batch(&b, &cfg(), NOW).unwrap_err();
            assert_eq!(e.kafka_error_code(), 2, "{codec:?}: {e}");
        }
    }

    #[test]
    fn declared_count_larger_than_records_present_is_rejected() {
        for codec in [Compression::None, Compression::Gzip, Compression::Lz4] {
            let b = BatchBuilder::new(NOW)
                .compression(codec)
                .records(2)
                .declared_count(3)
                .last_offset_delta(2)
                .build();
            let e = validate_client_batch(&b, &cfg(), NOW).unwrap_err();
            assert!(matches!(e.kafka_error_code(), 2 | 87), "{codec:?}: {e}");
        }
    }

    #[test]
    fn fewer_declared_records_than_present_is_rejected() {
        for codec in [Compression::None, Compression::Snappy] {
            let b = BatchBuilder::new(NOW)
                .compression(codec)
                .records(3)
                .declared_count(2)
                .last_offset_delta(1)
                .build();
            let e = validate_client_batch(&b, &cfg(), NOW).unwrap_err();
            assert!(matches!(e.kafka_error_code(), 2 | 87), "{codec:?}: {e}");
        }
    }

    #[test]
    fn too_large_is_message_too_large() {
        let b = BatchBuilder::new(NOW).records(100).build();
        let mut c = cfg();
        c.max_message_bytes = (b.len() - 1) as u32;
        assert_eq!(
            validate_client_batch(&b, &c, NOW)
                .unwrap_err()
                .kafka_error_code(),
            10
        );
        c.max_message_bytes = b.len() as u32;
        validate_client_batch(&b, &c, NOW).unwrap();
    }

    #[test]
    fn last_offset_of_walks_whole_batches_only() {
        let mut a = BatchBuilder::new(NOW).records(3).build();
        set_offset_and_epoch(&mut a, 10, 0);
        let mut b = BatchBuilder::new(NOW).records(2).build();
        set_offset_and_epoch(&mut b, 13, 0);
        assert_eq!(last_offset_of(&a), Some(12));
        let both = [a.clone(), b.clone()].concat();
        assert_eq!(last_offset_of(&both), Some(14));
        assert_eq!(
            last_offset_of(&both[..both.len() - 1]),
            Some(12),
            "a cut batch"
        );
        assert_eq!(last_offset_of(&[]), None);
        assert_eq!(last_offset_of(&a[..20]), None);
    }

    #[test]
    fn control_and_transactional_batches_are_refused() {
        let b = BatchBuilder::new(NOW)
            .records(1)
            .attributes_extra(ATTR_CONTROL)
            .build();
        assert_eq!(
            validate_client_batch(&b, &cfg(), NOW)
                .unwrap_err()
                .kafka_error_code(),
            87
        );
        let b = BatchBuilder::new(NOW)
            .records(1)
            .producer(7, 0, 0)
            .attributes_extra(ATTR_TRANSACTIONAL)
            .build();
        assert_eq!(
            validate_client_batch(&b, &cfg(), NOW)
                .unwrap_err()
                .kafka_error_code(),
            48
        );
    }

    #[test]
    fn nonzero_base_offset_is_invalid() {
        let mut b = BatchBuilder::new(NOW).records(1).build();
        b[7] = 5;
        assert_eq!(
            validate_client_batch(&b, &cfg(), NOW)
                .unwrap_err()
                .kafka_error_code(),
            87
        );
    }

    #[test]
    fn producer_with_negative_sequence_is_invalid() {
        let b = BatchBuilder::new(NOW).records(1).producer(7, 0, -1).build();
        assert_eq!(
            validate_client_batch(&b, &cfg(), NOW)
                .unwrap_err()
                .kafka_error_code(),
            87
        );
    }

    #[test]
    fn future_create_time_is_invalid_timestamp() {
        let b = BatchBuilder::new(NOW + 3_600_001).records(1).build();
        assert_eq!(
            validate_client_batch(&b, &cfg(), NOW)
                .unwrap_err()
                .kafka_error_code(),
            32
        );
        let mut c = cfg();
        c.timestamp_type = TimestampType::LogAppendTime;
        validate_client_batch(&b, &c, NOW).unwrap();
    }

    /// 100 records, every tenth without a key.
    fn every_tenth_keyless() -> Vec<Rec> {
        (0..100)
            .map(|i| Rec {
                key: (i % 10 != 3).then(|| format!("k{i}").into_bytes()),
                value: Some(b"v".to_vec()),
                headers: vec![],
            })
            .collect()
    }

    #[test]
    fn record_errors_name_every_keyless_record_of_a_compacted_batch() {
        let mut c = cfg();
        c.require_keys = true;
        for codec in [Compression::None, Compression::Lz4] {
            let b = BatchBuilder::new(NOW)
                .compression(codec)
                .custom_records(every_tenth_keyless())
                .build();
            let Err(LogError::RecordErrors { timestamp, errors }) =
                validate_client_batch_for(&b, &c, NOW, "t-0")
            else {
                panic!("keyless records on a compacted topic are record errors");
            };
            assert!(!timestamp);
            let indexes: Vec<i32> = errors.iter().map(|e| e.batch_index).collect();
            assert_eq!(indexes, (0..10).map(|i| i * 10 + 3).collect::<Vec<_>>());
            assert_eq!(
                errors[0].message,
                "Compacted topic cannot accept message without key in topic partition t-0"
            );
        }
    }

    #[test]
    fn a_producer_may_not_flag_its_batch_log_append_time() {
        // Kafka's validateTimestamp: such a record reads as the batch's max timestamp; a
        // CreateTime topic checks it against the window like any other (an in-window one
        // passes), a LogAppendTime topic refuses every record by name.
        let mut b = BatchBuilder::new(NOW).records(3).build();
        assert!(set_max_timestamp(
            &mut b,
            TimestampType::LogAppendTime,
            NOW + 2
        ));
        assert!(validate_client_batch_for(&b, &cfg(), NOW, "t-0").is_ok());
        let mut c = cfg();
        c.timestamp_type = TimestampType::LogAppendTime;
        let Err(LogError::RecordErrors { timestamp, errors }) =
            validate_client_batch_for(&b, &c, NOW, "t-0")
        else {
            panic!("a LogAppendTime batch on a LogAppendTime topic is refused per record");
        };
        assert!(timestamp);
        assert_eq!(
            errors.iter().map(|e| e.batch_index).collect::<Vec<_>>(),
            [0, 1, 2]
        );
        assert!(
            errors[1].message.starts_with(&format!(
                "Invalid timestamp type in message DefaultRecord(offset=1, timestamp={}, key=",
                NOW + 2
            )),
            "{}",
            errors[1].message
        );
        assert!(errors[1]
            .message
            .ends_with("Producer should not set timestamp type to LogAppendTime."));
        // A CreateTime batch on a LogAppendTime topic is fine: the broker stamps it.
        let plain = BatchBuilder::new(NOW).records(3).build();
        assert!(validate_client_batch_for(&plain, &c, NOW, "t-0").is_ok());
    }

    #[test]
    fn a_timestamp_error_among_key_errors_makes_the_batch_invalid_timestamp() {
        let mut c = cfg();
        c.require_keys = true;
        c.timestamp_after_max_ms = 50;
        // Record i has timestamp NOW + i: from index 51 on they are too far in the future.
        let b = BatchBuilder::new(NOW)
            .custom_records(every_tenth_keyless())
            .build();
        let Err(LogError::RecordErrors { timestamp, errors }) =
            validate_client_batch_for(&b, &c, NOW, "t-0")
        else {
            panic!("record errors expected");
        };
        assert!(timestamp);
        // One error per record, the key first (as Kafka): 3, 13, 23, 33, 43, then 51..=99.
        assert_eq!(errors.len(), 5 + 49);
        assert_eq!(errors[5].batch_index, 51);
        assert_eq!(
            errors[5].message,
            format!(
                "Timestamp {} of message with offset 51 is out of range. The timestamp should be within [{}, {}]",
                NOW + 51,
                NOW.wrapping_sub(i64::MAX),
                NOW + 50
            )
        );
        assert_eq!(errors[7].batch_index, 53);
        assert!(errors[7].message.starts_with("Compacted topic"));
    }

    #[test]
    fn a_batch_with_record_errors_appends_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("compacted-7");
        let config = crate::LogConfig {
            cleanup_policy: crate::CleanupPolicy::Compact,
            ..crate::LogConfig::default()
        };
        let log = crate::PartitionLog::open(&path, [1; 16], config, NOW).unwrap();
        let b = BatchBuilder::new(NOW)
            .custom_records(every_tenth_keyless())
            .build();
        let e = log.append(&b, 0, NOW).unwrap_err();
        assert_eq!(e.kafka_error_code(), 87);
        let LogError::RecordErrors { errors, .. } = &e else {
            panic!("record errors expected, got {e}");
        };
        assert_eq!(errors.len(), 10);
        assert!(errors[9]
            .message
            .ends_with("in topic partition compacted-7"));
        assert!(e
            .to_string()
            .starts_with("One or more records have been rejected due to 10 record errors"));
        assert_eq!(log.log_end_offset(), 0);
        let keyed = BatchBuilder::new(NOW).records(100).build();
        assert_eq!(log.append(&keyed, 0, NOW).unwrap().base_offset, 0);
    }

    #[test]
    fn malformed_record_varints_are_rejected() {
        // A record whose key length claims more bytes than its body holds.
        let b = BatchBuilder::new(NOW)
            .custom_records(vec![Rec {
                key: None,
                value: Some(vec![1, 2, 3]),
                headers: vec![],
            }])
            .corrupt_first_record_key_len(100)
            .build();
        assert_eq!(
            validate_client_batch(&b, &cfg(), NOW)
                .unwrap_err()
                .kafka_error_code(),
            87
        );
        // A 6-byte varint (continuation bits forever) in the first record length.
        let b = BatchBuilder::new(NOW)
            .records(2)
            .overwrite_records_prefix(&[0xff; 6])
            .build();
        assert!(matches!(
            validate_client_batch(&b, &cfg(), NOW)
                .unwrap_err()
                .kafka_error_code(),
            2 | 87
        ));
    }

    #[test]
    fn headers_and_null_keys_values_validate() {
        let recs = vec![
            Rec {
                key: None,
                value: None,
                headers: vec![],
            },
            Rec {
                key: Some(b"k".to_vec()),
                value: Some(vec![]),
                headers: vec![(b"h".to_vec(), None)],
            },
            Rec {
                key: Some(vec![]),
                value: Some(vec![9; 300]),
                headers: vec![(b"a".to_vec(), Some(b"b".to_vec())), (vec![], Some(vec![]))],
            },
        ];
        for codec in [Compression::None, Compression::Gzip, Compression::Zstd] {
            let b = BatchBuilder::new(NOW)
                .compression(codec)
                .custom_records(recs.clone())
                .build();
            validate_client_batch(&b, &cfg(), NOW).unwrap();
        }
    }

    #[test]
    fn decompression_bomb_hits_the_cap() {
        // 200 MiB of zeros in one record value compresses to a few hundred KiB with zstd.
        let big = vec![Rec {
            key: None,
            value: Some(vec![0; 200 << 20]),
            headers: vec![],
        }];
        let b = BatchBuilder::new(NOW)
            .compression(Compression::Zstd)
            .custom_records(big)
            .build();
        let mut c = cfg();
        c.max_message_bytes = i32::MAX as u32;
        let e = validate_client_batch(&b, &c, NOW).unwrap_err();
        assert_eq!(e.kafka_error_code(), 87, "{e}");
        assert!(e.to_string().contains("decompress"), "{e}");
    }

    #[test]
    fn rewrite_keeps_crc_valid() {
        let mut b = BatchBuilder::new(NOW).records(4).build();
        set_offset_and_epoch(&mut b, 1234, 7);
        assert!(set_max_timestamp(
            &mut b,
            TimestampType::LogAppendTime,
            NOW + 99
        ));
        let h = BatchHeader::parse(&b).unwrap();
        assert_eq!(h.base_offset, 1234);
        assert_eq!(h.partition_leader_epoch, 7);
        assert_eq!(h.max_timestamp, NOW + 99);
        assert_eq!(h.timestamp_type(), TimestampType::LogAppendTime);
        check_crc(&b, &h).unwrap();
        assert!(!set_max_timestamp(
            &mut b,
            TimestampType::LogAppendTime,
            NOW + 99
        ));
    }

    /// xorshift64*: a deterministic generator so a failure replays from its seed.
    pub(crate) struct Rng(pub(crate) u64);
    impl Rng {
        pub(crate) fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
        }
        pub(crate) fn below(&mut self, n: usize) -> usize {
            (self.next() % n as u64) as usize
        }
    }

    /// Random damage to valid batches, with the CRC fixed up afterwards so the damage reaches
    /// the header checks, the decompressors and the record walker: every outcome must be an
    /// `Err` or a consistent `Ok`, never a panic, hang or huge allocation.
    #[test]
    fn mutated_batches_never_panic() {
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        let mut accepted = 0;
        for round in 0..3000 {
            let codec = [
                Compression::None,
                Compression::Gzip,
                Compression::Snappy,
                Compression::Lz4,
                Compression::Zstd,
            ][round % 5];
            let mut b = BatchBuilder::new(NOW)
                .compression(codec)
                .sized_records(1 + rng.below(20), rng.below(200))
                .build();
            for _ in 0..1 + rng.below(4) {
                let i = if rng.below(3) == 0 {
                    rng.below(BATCH_HEADER_BYTES)
                } else {
                    rng.below(b.len())
                };
                b[i] = rng.next() as u8;
            }
            if rng.below(4) == 0 {
                let cut = rng.below(b.len());
                b.truncate(cut.max(1));
            }
            if b.len() > CRC_AT + 4 {
                let crc = crc32c::crc32c(&b[ATTRIBUTES_AT.min(b.len())..]);
                b[CRC_AT..CRC_AT + 4].copy_from_slice(&crc.to_be_bytes());
            }
            if let Ok(s) = validate_client_batch(&b, &cfg(), NOW) {
                accepted += 1;
                assert_eq!(s.header.total_bytes(), b.len(), "seed round {round}");
            }
            let _ = BatchHeader::parse(&b).map(|h| (h.last_sequence(), h.last_offset()));
        }
        // Some mutations (inside values) keep the batch valid: the test saw both outcomes.
        assert!(accepted > 0 && accepted < 3000, "accepted {accepted}");
    }

    #[test]
    fn sequence_wraps_at_i32_max() {
        assert_eq!(increment_sequence(i32::MAX, 1), 0);
        assert_eq!(increment_sequence(i32::MAX - 1, 3), 1);
        assert_eq!(increment_sequence(5, 4), 9);
        // Hostile values do not overflow.
        let _ = increment_sequence(i32::MAX, -5);
        let _ = increment_sequence(-7, i32::MAX);
    }

    #[test]
    fn produce_shape_rules() {
        let b = BatchBuilder::new(NOW)
            .compression(Compression::Zstd)
            .records(1)
            .build();
        assert_eq!(
            validate_produce_shape(6, &b)
                .unwrap_err()
                .kafka_error_code(),
            76
        );
        validate_produce_shape(7, &b).unwrap();
        let mut two = b.clone();
        two.extend_from_slice(&b);
        assert_eq!(
            validate_produce_shape(9, &two)
                .unwrap_err()
                .kafka_error_code(),
            87
        );
    }
}

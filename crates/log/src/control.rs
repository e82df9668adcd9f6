//! Transaction markers: the control batches that end a transaction in a partition log.
//!
//! Owns: the byte format of an end-transaction marker as Kafka writes it
//! (`MemoryRecords.withEndTransactionMarker`): one uncompressed v2 batch with the control and
//! transactional attribute bits, the producer id and epoch, base sequence -1, and one record
//! whose key is the control record key v0 (`version` i16 = 0, `type` i16: 0 abort, 1 commit)
//! and whose value is `EndTxnMarker` v0 (`version` i16 = 0, `coordinator_epoch` i32). Reading
//! follows Kafka's `ControlRecordType.parse` / `EndTransactionMarker.deserializeValue`: a
//! negative version is corrupt, a higher one is read as v0 (only the first fields are used).
//!
//! Must never: panic or allocate beyond the batch on hostile bytes (the decoder is fuzzed);
//! build markers for anything but the marker path (clients' control batches are refused in
//! `batch::validate_client_batch`).

use crate::batch::{self, BatchHeader, ATTRIBUTES_AT, CRC_AT};
use crate::error::LogError;
use crate::limits::BATCH_HEADER_BYTES;
use crate::records;

/// Control record type of an abort marker (`ControlRecordType.ABORT`).
pub const CONTROL_TYPE_ABORT: i16 = 0;
/// Control record type of a commit marker (`ControlRecordType.COMMIT`).
pub const CONTROL_TYPE_COMMIT: i16 = 1;
/// Attribute bits of a marker batch: transactional (0x10) and control (0x20).
const MARKER_ATTRIBUTES: i16 = 0x30;
/// Control record key v0: version i16 + type i16.
const CONTROL_KEY_BYTES: usize = 4;
/// EndTxnMarker value v0: version i16 + coordinator epoch i32.
const MARKER_VALUE_BYTES: usize = 6;

/// What a transaction marker says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EndTxnMarker {
    /// True for COMMIT, false for ABORT.
    pub commit: bool,
    /// The epoch of the transaction coordinator that wrote it (its partition's leader epoch).
    pub coordinator_epoch: i32,
}

/// One marker batch for `producer_id`/`producer_epoch`, base offset 0 and leader epoch -1
/// (stamped at append), timestamp `now_ms`.
pub fn encode_marker_batch(
    producer_id: i64,
    producer_epoch: i16,
    marker: EndTxnMarker,
    now_ms: i64,
) -> Vec<u8> {
    let control_type = if marker.commit {
        CONTROL_TYPE_COMMIT
    } else {
        CONTROL_TYPE_ABORT
    };
    // The record: length varint, attributes 0, timestamp delta 0, offset delta 0, key, value,
    // no headers. Every varint here is one byte (zigzag of 0, 4, 6 and the body length 16).
    let mut record = vec![0u8, 0, 0, (CONTROL_KEY_BYTES as u8) << 1];
    record.extend_from_slice(&0i16.to_be_bytes());
    record.extend_from_slice(&control_type.to_be_bytes());
    record.push((MARKER_VALUE_BYTES as u8) << 1);
    record.extend_from_slice(&0i16.to_be_bytes());
    record.extend_from_slice(&marker.coordinator_epoch.to_be_bytes());
    record.push(0);
    let mut b = Vec::with_capacity(BATCH_HEADER_BYTES + 1 + record.len());
    b.extend_from_slice(&0i64.to_be_bytes());
    b.extend_from_slice(&((BATCH_HEADER_BYTES - 12 + 1 + record.len()) as i32).to_be_bytes());
    b.extend_from_slice(&(-1i32).to_be_bytes());
    b.push(2);
    b.extend_from_slice(&0u32.to_be_bytes());
    b.extend_from_slice(&MARKER_ATTRIBUTES.to_be_bytes());
    b.extend_from_slice(&0i32.to_be_bytes());
    b.extend_from_slice(&now_ms.to_be_bytes());
    b.extend_from_slice(&now_ms.to_be_bytes());
    b.extend_from_slice(&producer_id.to_be_bytes());
    b.extend_from_slice(&producer_epoch.to_be_bytes());
    b.extend_from_slice(&batch::NO_SEQUENCE.to_be_bytes());
    b.extend_from_slice(&1i32.to_be_bytes());
    b.push((record.len() as u8) << 1);
    b.extend_from_slice(&record);
    let crc = crc32c::crc32c(&b[ATTRIBUTES_AT..]);
    b[CRC_AT..CRC_AT + 4].copy_from_slice(&crc.to_be_bytes());
    b
}

/// Read the marker of a control batch (`h` parsed from `bytes`, the whole batch, CRC checked
/// by the caller). `Ok(None)`: no record (the cleaner removed the marker's transaction whole,
/// Kafka's "empty control batch") or a control type that is not a transaction marker.
/// INVALID_RECORD / CORRUPT_MESSAGE for a key or value that cannot be a marker.
pub fn decode_marker(bytes: &[u8], h: &BatchHeader) -> Result<Option<EndTxnMarker>, LogError> {
    if !h.is_control() {
        return Err(LogError::InvalidRecord(
            "not a control batch: no transaction marker".into(),
        ));
    }
    if h.records_count <= 0 {
        return Ok(None);
    }
    if bytes.len() < h.total_bytes() {
        return Err(LogError::CorruptMessage(format!(
            "control batch of {} bytes declares {}",
            bytes.len(),
            h.total_bytes()
        )));
    }
    let raw = records::decompressed_records(bytes, h)?;
    let mut found: Option<Result<Option<EndTxnMarker>, LogError>> = None;
    records::for_each_stored_record(&raw, h, |r| {
        if found.is_none() {
            let key = r.key.map(|k| &raw[k]);
            let value = r.value.map(|v| &raw[v]);
            found = Some(parse_marker(key, value));
        }
        Ok(())
    })?;
    found.unwrap_or(Ok(None))
}

fn parse_marker(
    key: Option<&[u8]>,
    value: Option<&[u8]>,
) -> Result<Option<EndTxnMarker>, LogError> {
    let key = key.unwrap_or_default();
    if key.len() < CONTROL_KEY_BYTES {
        return Err(LogError::InvalidRecord(format!(
            "control record key of {} bytes, at least {CONTROL_KEY_BYTES} expected",
            key.len()
        )));
    }
    let key_version = batch::be_i16(key, 0);
    if key_version < 0 {
        return Err(LogError::CorruptMessage(format!(
            "control record key version {key_version}"
        )));
    }
    let commit = match batch::be_i16(key, 2) {
        CONTROL_TYPE_ABORT => false,
        CONTROL_TYPE_COMMIT => true,
        _ => return Ok(None),
    };
    let value = value.unwrap_or_default();
    if value.len() < MARKER_VALUE_BYTES {
        return Err(LogError::InvalidRecord(format!(
            "end transaction marker value of {} bytes, at least {MARKER_VALUE_BYTES} expected",
            value.len()
        )));
    }
    let value_version = batch::be_i16(value, 0);
    if value_version < 0 {
        return Err(LogError::CorruptMessage(format!(
            "end transaction marker version {value_version}"
        )));
    }
    Ok(Some(EndTxnMarker {
        commit,
        coordinator_epoch: batch::be_i32(value, 2),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testkit::{BatchBuilder, Rec};

    #[test]
    fn a_marker_batch_is_kafkas_bytes_and_reads_back() {
        for commit in [false, true] {
            let m = EndTxnMarker {
                commit,
                coordinator_epoch: 7,
            };
            let b = encode_marker_batch(42, 3, m, 1_000);
            let h = BatchHeader::parse(&b).unwrap();
            batch::check_crc(&b, &h).unwrap();
            batch::check_counts(&h, b.len()).unwrap();
            assert!(h.is_control() && h.is_transactional());
            assert_eq!(
                (h.producer_id, h.producer_epoch, h.base_sequence),
                (42, 3, -1)
            );
            assert_eq!((h.records_count, h.last_offset_delta), (1, 0));
            // Kafka's size (`CURRENT_END_TXN_SCHEMA_RECORD_SIZE`): 61-byte header + a 17-byte
            // record (length varint + 16).
            assert_eq!(b.len(), 61 + 17);
            // Key: version 0, type; value: version 0, coordinator epoch.
            let key_at = 61 + 1 + 4;
            assert_eq!(&b[key_at..key_at + 4], &[0, 0, 0, commit as u8]);
            assert_eq!(&b[key_at + 5..key_at + 11], &[0, 0, 0, 0, 0, 7]);
            assert_eq!(decode_marker(&b, &h).unwrap(), Some(m));
        }
    }

    fn control_batch(key: Option<Vec<u8>>, value: Option<Vec<u8>>) -> Vec<u8> {
        BatchBuilder::new(0)
            .custom_records(vec![Rec {
                key,
                value,
                headers: vec![],
            }])
            .producer(1, 0, -1)
            .attributes_extra(0x30)
            .build()
    }

    #[test]
    fn bad_keys_and_values_are_refused_and_other_control_types_ignored() {
        let decode = |b: Vec<u8>| decode_marker(&b, &BatchHeader::parse(&b).unwrap());
        assert!(decode(control_batch(Some(vec![0, 0, 0]), Some(vec![0; 6]))).is_err());
        assert!(decode(control_batch(None, Some(vec![0; 6]))).is_err());
        assert!(decode(control_batch(Some(vec![0xff, 0, 0, 1]), Some(vec![0; 6]))).is_err());
        assert!(decode(control_batch(Some(vec![0, 0, 0, 1]), Some(vec![0; 5]))).is_err());
        assert!(decode(control_batch(Some(vec![0, 0, 0, 1]), None)).is_err());
        assert!(decode(control_batch(
            Some(vec![0, 0, 0, 1]),
            Some(vec![0x80, 0, 0, 0, 0, 1])
        ))
        .is_err());
        // LEADER_CHANGE and friends: not a transaction marker.
        assert_eq!(
            decode(control_batch(Some(vec![0, 0, 0, 2]), Some(vec![0; 6]))).unwrap(),
            None
        );
        // A later version is read as v0 (Kafka logs and parses the known prefix).
        assert_eq!(
            decode(control_batch(
                Some(vec![0, 1, 0, 0]),
                Some(vec![0, 1, 0, 0, 0, 9, 9])
            ))
            .unwrap(),
            Some(EndTxnMarker {
                commit: false,
                coordinator_epoch: 9
            })
        );
        // A data batch is not a marker.
        let data = BatchBuilder::new(0).records(1).build();
        assert!(decode(data).is_err());
    }
}

//! The one error type of the log crate, and its mapping to Kafka error codes.
//!
//! Owns: every way a log operation can fail, split into "the client sent bad bytes" (answered
//! with a precise Kafka code) and "the disk failed" (KAFKA_STORAGE_ERROR). Must never: hide an
//! internal invariant break as an error; those are `assert!`s because serving corrupt data is
//! worse than crashing.

use std::io;

/// Everything that can go wrong in the log. `kafka_error_code` gives the wire code.
#[derive(Debug, thiserror::Error)]
pub enum LogError {
    /// CRC mismatch, truncated batch, bad length: the bytes were damaged (CORRUPT_MESSAGE).
    #[error("corrupt record batch: {0}")]
    CorruptMessage(String),
    /// Structurally readable but not acceptable: wrong counts, bad varints, control batch...
    #[error("invalid record: {0}")]
    InvalidRecord(String),
    /// Records of a produced batch refused one by one, as Kafka's `RecordValidationException`:
    /// the whole batch is refused (nothing appended) and each culprit is named by its index in
    /// the batch. INVALID_TIMESTAMP when any of them is a timestamp error, else INVALID_RECORD.
    /// Displays as Kafka's error message for the partition response.
    #[error("{}", record_errors_message(*timestamp, errors))]
    RecordErrors {
        /// At least one of `errors` is a timestamp outside the topic's window.
        timestamp: bool,
        /// Every refused record, in batch order (never empty).
        errors: Vec<RecordError>,
    },
    /// One batch is larger than `message.max.bytes`.
    #[error("record batch of {size_bytes} bytes exceeds message.max.bytes {max_bytes}")]
    MessageTooLarge { size_bytes: u64, max_bytes: u64 },
    /// The whole records field is larger than the log accepts in one append.
    #[error("record list too large: {0}")]
    RecordListTooLarge(String),
    /// Fetch or lookup outside [log start, log end].
    #[error("offset {offset} out of range [{log_start_offset}, {log_end_offset}]")]
    OffsetOutOfRange {
        offset: i64,
        log_start_offset: i64,
        log_end_offset: i64,
    },
    /// Idempotence: a sequence gap or a new epoch not starting at 0.
    #[error("out of order sequence: {0}")]
    OutOfOrderSequence(String),
    /// Idempotence: the batch is older than the last batches we remember.
    #[error("duplicate sequence: {0}")]
    DuplicateSequence(String),
    /// Idempotence: the producer epoch is older than the one we know.
    #[error("invalid producer epoch: {0}")]
    InvalidProducerEpoch(String),
    /// Idempotence: no state for this producer and the request needs it.
    #[error("unknown producer id: {0}")]
    UnknownProducerId(String),
    /// A record timestamp outside the accepted window.
    #[error("invalid timestamp: {0}")]
    InvalidTimestamp(String),
    /// Message format v0/v1 or a feature this format does not carry.
    #[error("unsupported for message format: {0}")]
    UnsupportedForMessageFormat(String),
    /// A transactional write out of place: a client's transactional batch where transactions
    /// are not enabled, or a non-transactional batch while the producer's transaction is open.
    #[error("invalid transaction state: {0}")]
    InvalidTxnState(String),
    /// A transaction marker from a coordinator epoch older than the last marker's.
    #[error("transaction coordinator fenced: {0}")]
    TransactionCoordinatorFenced(String),
    /// zstd in a produce request older than v7 (Kafka's UNSUPPORTED_COMPRESSION_TYPE).
    #[error("unsupported compression type: {0}")]
    UnsupportedCompressionType(String),
    /// The topic's settings forbid the operation, e.g. DeleteRecords on a topic whose
    /// `cleanup.policy` does not include delete (POLICY_VIOLATION, as Kafka).
    #[error("policy violation: {0}")]
    PolicyViolation(String),
    /// A log setting outside what the log can honour (INVALID_CONFIG).
    #[error("invalid log config: {0}")]
    InvalidConfig(String),
    /// The partition directory (or the open log) belongs to another topic id.
    #[error("inconsistent topic id: {0}")]
    InconsistentTopicId(String),
    /// The disk failed (ENOSPC, EIO, ...). The log stays consistent; the append did not happen.
    #[error("storage error during {context}: {source}")]
    Storage {
        context: String,
        #[source]
        source: io::Error,
    },
    /// A previous storage failure left this log unable to guarantee consistency; it refuses
    /// further writes until it is reopened (and recovered).
    #[error("log is offline after an earlier storage failure")]
    Offline,
}

/// One refused record of a produced batch (Kafka's `ProduceResponse.RecordError`; the
/// Produce v8+ `record_errors` entry).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordError {
    /// Position of the record in its batch, from 0.
    pub batch_index: i32,
    pub message: String,
}

/// Kafka's `LogValidator.processRecordErrors` message: the count and the first three errors
/// in Java's `List.toString` form, or a fixed sentence when any error is a timestamp error.
fn record_errors_message(timestamp: bool, errors: &[RecordError]) -> String {
    if timestamp {
        return "One or more records have been rejected due to invalid timestamp".into();
    }
    let shown: Vec<String> = errors
        .iter()
        .take(3)
        .map(|e| {
            format!(
                "RecordError(batchIndex={}, message='{}')",
                e.batch_index, e.message
            )
        })
        .collect();
    format!(
        "One or more records have been rejected due to {} record errors in total, and only showing the first three errors at most: [{}]",
        errors.len(),
        shown.join(", ")
    )
}

impl LogError {
    /// The Kafka protocol error code to put in the response.
    pub fn kafka_error_code(&self) -> i16 {
        match self {
            LogError::CorruptMessage(_) => 2,
            LogError::InvalidRecord(_) => 87,
            LogError::RecordErrors {
                timestamp: true, ..
            } => 32,
            LogError::RecordErrors {
                timestamp: false, ..
            } => 87,
            LogError::MessageTooLarge { .. } => 10,
            LogError::RecordListTooLarge(_) => 18,
            LogError::OffsetOutOfRange { .. } => 1,
            LogError::OutOfOrderSequence(_) => 45,
            LogError::DuplicateSequence(_) => 46,
            LogError::InvalidProducerEpoch(_) => 47,
            LogError::UnknownProducerId(_) => 59,
            LogError::InvalidTimestamp(_) => 32,
            LogError::UnsupportedForMessageFormat(_) => 43,
            LogError::InvalidTxnState(_) => 48,
            LogError::TransactionCoordinatorFenced(_) => 52,
            LogError::UnsupportedCompressionType(_) => 76,
            LogError::InconsistentTopicId(_) => 103,
            LogError::InvalidConfig(_) => 40,
            LogError::PolicyViolation(_) => 44,
            LogError::Storage { .. } | LogError::Offline => 56,
        }
    }

    pub(crate) fn storage(context: impl Into<String>, source: io::Error) -> Self {
        LogError::Storage {
            context: context.into(),
            source,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_match_kafka() {
        assert_eq!(
            LogError::CorruptMessage(String::new()).kafka_error_code(),
            2
        );
        assert_eq!(
            LogError::InvalidRecord(String::new()).kafka_error_code(),
            87
        );
        assert_eq!(
            LogError::MessageTooLarge {
                size_bytes: 2,
                max_bytes: 1
            }
            .kafka_error_code(),
            10
        );
        assert_eq!(
            LogError::OutOfOrderSequence(String::new()).kafka_error_code(),
            45
        );
        assert_eq!(
            LogError::InvalidProducerEpoch(String::new()).kafka_error_code(),
            47
        );
        assert_eq!(
            LogError::storage("x", io::Error::from_raw_os_error(libc_enospc())).kafka_error_code(),
            56
        );
    }

    #[test]
    fn record_errors_read_as_kafka_reports_them() {
        let errors: Vec<RecordError> = (0..4)
            .map(|i| RecordError {
                batch_index: i * 10,
                message: format!("m{i}"),
            })
            .collect();
        let e = LogError::RecordErrors {
            timestamp: false,
            errors: errors.clone(),
        };
        assert_eq!(e.kafka_error_code(), 87);
        assert_eq!(
            e.to_string(),
            "One or more records have been rejected due to 4 record errors in total, and only \
             showing the first three errors at most: [RecordError(batchIndex=0, message='m0'), \
             RecordError(batchIndex=10, message='m1'), RecordError(batchIndex=20, message='m2')]"
        );
        let e = LogError::RecordErrors {
            timestamp: true,
            errors,
        };
        assert_eq!(e.kafka_error_code(), 32);
        assert_eq!(
            e.to_string(),
            "One or more records have been rejected due to invalid timestamp"
        );
    }

    fn libc_enospc() -> i32 {
        28
    }
}

//! Hard limits of the transaction coordinator, each with the reason for its value.
//!
//! Owns every bound the coordinator enforces on its own memory and work, in one place so they
//! can be reviewed together. Kafka has none of these; without them a client looping over fresh
//! transactional ids, or one transaction touching every partition, grows memory without bound.
//! The broker may lower them through [`crate::TxnConfig`]; it never raises them past these.

/// Transactional ids one coordinator holds across all its `__transaction_state` partitions.
/// 100,000 ids of ~200 bytes each is ~20 MB, far above what any deployment we serve uses
/// (Kafka Streams with exactly-once v2 uses one id per stream thread). A new id beyond it gets
/// COORDINATOR_NOT_AVAILABLE, which clients retry.
pub const TRANSACTIONAL_IDS_MAX: usize = 100_000;

/// Partitions one transaction may hold. The whole set is rewritten in every state record,
/// so the record must stay well below `max.message.bytes` (1 MiB): 10,000 partitions of a
/// 40-byte topic name is ~450 KB. Beyond it AddPartitionsToTxn answers INVALID_REQUEST.
pub const PARTITIONS_PER_TRANSACTION_MAX: usize = 10_000;

/// Transactions with markers in flight. Each holds its partitions and a timer; beyond it a
/// client EndTxn gets CONCURRENT_TRANSACTIONS (retried by every client) and a timed-out
/// transaction waits for the next abort pass. Transactions resumed by a load are never refused.
pub const PENDING_MARKER_TRANSACTIONS_MAX: usize = 10_000;

/// Appends awaiting `on_append_complete`. Beyond it state-changing requests get
/// COORDINATOR_NOT_AVAILABLE, so a stalled log cannot queue unbounded responses.
pub const PENDING_APPENDS_MAX: usize = 10_000;

/// Longest transactional id: the key layout has an int16 length.
pub const TRANSACTIONAL_ID_BYTES_MAX: usize = i16::MAX as usize;

/// Producer ids the coordinator keeps in hand (see the crate docs): it asks for more when
/// fewer than this remain, so a block arrives before the last id is used.
pub const PRODUCER_IDS_LOW_WATER: u64 = 100;

//! Every storage limit as a named constant, with why the number is what it is.
//!
//! Owns: the hard bounds the log enforces regardless of configuration. Must never: be bypassed
//! by a configuration value; a config may only tighten these.

/// Size of the fixed v2 record batch header (baseOffset .. recordCount). Kafka's
/// `RECORD_BATCH_OVERHEAD`: a batch shorter than this cannot be parsed at all.
pub const BATCH_HEADER_BYTES: usize = 61;

/// Smallest possible encoded record: a 1-byte length varint plus a 6-byte body (attributes,
/// timestamp delta, offset delta, key length -1, value length -1, header count 0). Dividing the
/// bytes present by this bounds a declared record count before anything is done with it, so a
/// hostile count of 2^31 is rejected without a loop or an allocation.
pub const RECORD_BYTES_MIN: usize = 7;

/// Hard cap on the bytes a compressed batch may decompress to while we validate it. Bounds the
/// CPU a single produce can burn (a zstd "bomb" of 1 MiB can expand to gigabytes). 128 MiB is
/// >100x the default message.max.bytes, far above real compression ratios of record data.
pub const DECOMPRESSED_BATCH_BYTES_MAX: u64 = 128 * 1024 * 1024;

/// Largest batch accepted regardless of `message.max.bytes`: batch lengths are i32 on the wire
/// and segment positions are u32 in the offset index, so a batch must fit well inside both.
pub const BATCH_BYTES_MAX: u64 = 1 << 30;

/// Largest segment file: offset index positions are 32-bit, as in Kafka.
pub const SEGMENT_BYTES_MAX: u64 = i32::MAX as u64;

/// Smallest segment size we accept from config (Kafka's log.segment.bytes minimum is 1 MiB;
/// tests use smaller values, so only a sanity floor is enforced here).
pub const SEGMENT_BYTES_MIN: u64 = 1024;

/// Batches remembered per producer for duplicate detection. Kafka's
/// `ProducerStateEntry.NUM_BATCHES_TO_RETAIN`; clients cap in-flight requests at 5 to match.
pub const PRODUCER_BATCHES_RETAINED: usize = 5;

/// Most producer ids a partition tracks. Bounds memory and snapshot size; the oldest (by last
/// append time) is evicted first. Kafka bounds this only by producer.id.expiration.ms.
pub const PRODUCERS_PER_PARTITION_MAX: usize = 100_000;

/// Largest producer-state snapshot file we will read (entries are ~100 bytes each).
pub const PRODUCER_SNAPSHOT_BYTES_MAX: u64 = 64 * 1024 * 1024;

/// Largest records field accepted by one `read`'s result when the first batch alone is larger
/// than max_bytes: one batch can be at most this big, so at most this much is read.
pub const READ_BYTES_MAX: usize = BATCH_BYTES_MAX as usize;

/// Default `log.message.timestamp.after.max.ms` in Kafka 4 (KIP-937/1030): a CreateTime record
/// more than one hour in the future is rejected with INVALID_TIMESTAMP.
pub const TIMESTAMP_AFTER_MAX_MS_DEFAULT: i64 = 3_600_000;

/// Default `log.message.timestamp.before.max.ms`: any past CreateTime is accepted.
pub const TIMESTAMP_BEFORE_MAX_MS_DEFAULT: i64 = i64::MAX;

/// Largest zstd window (log2) a batch may ask for: the decoder allocates a window of this size,
/// so an unbounded one lets a 20-byte frame demand 2 GiB. 2^24 = 16 MiB covers every client
/// default (they compress batches of at most a few MiB at levels 1-9).
pub const ZSTD_WINDOW_LOG_MAX: u32 = 24;

/// Largest ratio of decompressed to compressed bytes a raw snappy block can have (its longest
/// copy op is 3 bytes for 64 bytes of output, ~21x; 32 leaves margin). A block declaring more is
/// refused before the decoder allocates the declared length.
pub const SNAPPY_EXPANSION_MAX: u64 = 32;

/// Hard cap on the cleaner's offset map (keys per pass). Each entry is a 16-byte key hash and
/// an 8-byte offset in a hash map (~48 bytes with overhead): 4M entries bound one pass to
/// ~200 MiB, Kafka's default `log.cleaner.dedupe.buffer.size` territory (128 MiB for 24-byte
/// entries at 0.9 load). A `CleanerLimits` may only ask for less.
pub const CLEANER_OFFSET_MAP_ENTRIES_MAX: usize = 4 * 1024 * 1024;

/// Default map size per pass: 1M keys (~48 MiB), enough for `__consumer_offsets` partitions.
pub const CLEANER_OFFSET_MAP_ENTRIES_DEFAULT: usize = 1024 * 1024;

/// Default segment bytes one `clean` call reads and writes before returning "more": small
/// enough that the driver's throttle sleeps are frequent, large enough to swap whole segments.
pub const CLEANER_IO_BYTES_PER_CALL_DEFAULT: u64 = 64 * 1024 * 1024;

/// Entries of the cleaner's "cleaned point" history (offset cleaned up to, at what time) kept
/// to time tombstone removal. Merging two entries only delays removal, never hastens it, so a
/// small bound is safe: 64 covers a week of hourly passes at a 1-day delete.retention.ms.
pub const CLEANER_HISTORY_ENTRIES_MAX: usize = 64;

/// Entries a `leader-epoch-checkpoint` may declare: one per leader election that wrote to the
/// log; a partition whose leader changed every second for a year has fewer. Bounds what a
/// damaged file can make `open` allocate (the cache is then derived from the batches).
pub const LEADER_EPOCH_ENTRIES_MAX: usize = 1 << 25;

/// Entries a `replication-offset-checkpoint` may declare: one per partition in the data
/// directory, far above what one broker hosts. Bounds what a damaged file can make
/// `LogManager::open` allocate.
pub const HIGH_WATERMARK_ENTRIES_MAX: usize = 1 << 24;

/// Times a read restarts because a truncation cut a segment file under it (it then sees the
/// new log end). Each restart needs another truncation racing with it, so a few suffice.
pub const READ_ATTEMPTS_MAX: usize = 4;

/// Largest `.txnindex` file opened: 34 bytes per aborted transaction whose marker is in the
/// segment. 64 MiB is ~2M aborts in one segment, each needing at least a data batch and a
/// marker (~140 bytes): a 1 GiB segment of nothing but one-record aborted transactions stays
/// under it; a larger file is damaged and rebuilt from the log.
pub const TXN_INDEX_BYTES_MAX: u64 = 64 * 1024 * 1024;

/// Bytes of `.txnindex` read per `pread` while searching it (a whole number of 34-byte
/// entries is taken from it): a fetch's search holds at most this much.
pub const TXN_INDEX_READ_CHUNK_BYTES: usize = 34 * 1024;

/// Aborted transactions one cleaner pass looks up (each ~40 bytes in its map): beyond this,
/// the pass keeps transactional data and markers whole (as before transactions) rather than
/// hold an unbounded list; a later pass over a shorter stretch cleans them.
pub const CLEANER_ABORTED_TXNS_MAX: usize = 1 << 20;

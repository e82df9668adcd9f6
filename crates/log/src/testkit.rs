//! Building v2 record batches the way clients do, for tests and benches (also the broker's).
//!
//! Owns: an encoder for batches with every codec and deliberate defects (wrong counts, bad
//! varints). Must never: be used on the produce path; the broker never builds batches for
//! clients' data.

use std::io::Write;

use crate::batch::{self, Compression, ATTRIBUTES_AT, CRC_AT};
use crate::limits::BATCH_HEADER_BYTES as BATCH_HEADER_AT_RECORDS;

/// One record to encode.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rec {
    pub key: Option<Vec<u8>>,
    pub value: Option<Vec<u8>>,
    pub headers: Vec<(Vec<u8>, Option<Vec<u8>>)>,
}

/// Builds one batch. Defaults: uncompressed, CreateTime, no producer id, base offset 0.
#[derive(Debug, Clone)]
pub struct BatchBuilder {
    base_timestamp: i64,
    compression: Compression,
    raw_snappy: bool,
    records: Vec<Rec>,
    declared_count: Option<i32>,
    last_offset_delta: Option<i32>,
    producer: (i64, i16, i32),
    attributes_extra: i16,
    corrupt_key_len: Option<i32>,
    prefix: Option<Vec<u8>>,
    timestamp_deltas: Option<Vec<i64>>,
}

fn put_varint(out: &mut Vec<u8>, v: i64) {
    let mut z = ((v << 1) ^ (v >> 63)) as u64;
    loop {
        if z < 0x80 {
            out.push(z as u8);
            return;
        }
        out.push((z as u8 & 0x7f) | 0x80);
        z >>= 7;
    }
}

fn put_bytes(out: &mut Vec<u8>, b: &Option<Vec<u8>>) {
    match b {
        None => put_varint(out, -1),
        Some(b) => {
            put_varint(out, b.len() as i64);
            out.extend_from_slice(b);
        }
    }
}

impl BatchBuilder {
    pub fn new(base_timestamp: i64) -> Self {
        BatchBuilder {
            base_timestamp,
            compression: Compression::None,
            raw_snappy: false,
            records: Vec::new(),
            declared_count: None,
            last_offset_delta: None,
            producer: (
                batch::NO_PRODUCER_ID,
                batch::NO_PRODUCER_EPOCH,
                batch::NO_SEQUENCE,
            ),
            attributes_extra: 0,
            corrupt_key_len: None,
            prefix: None,
            timestamp_deltas: None,
        }
    }
    pub fn compression(mut self, c: Compression) -> Self {
        self.compression = c;
        self
    }
    /// Snappy without the xerial framing (a bare raw block).
    pub fn raw_snappy(mut self) -> Self {
        self.raw_snappy = true;
        self
    }
    /// `n` records with key "k{i}", value "value-{i}" and timestamp base + i.
    pub fn records(mut self, n: usize) -> Self {
        self.records = (0..n)
            .map(|i| Rec {
                key: Some(format!("k{i}").into_bytes()),
                value: Some(format!("value-{i}").into_bytes()),
                headers: vec![],
            })
            .collect();
        self
    }
    /// `n` records each with a value of `value_bytes` mildly compressible bytes.
    pub fn sized_records(mut self, n: usize, value_bytes: usize) -> Self {
        self.records = (0..n)
            .map(|i| Rec {
                key: Some(format!("key-{i}").into_bytes()),
                value: Some(
                    (0..value_bytes)
                        .map(|j| ((i * 31 + j * 7) % 251) as u8 ^ ((j / 13) as u8))
                        .collect(),
                ),
                headers: vec![],
            })
            .collect();
        self
    }
    pub fn custom_records(mut self, r: Vec<Rec>) -> Self {
        self.records = r;
        self
    }
    pub fn declared_count(mut self, n: i32) -> Self {
        self.declared_count = Some(n);
        self
    }
    pub fn last_offset_delta(mut self, d: i32) -> Self {
        self.last_offset_delta = Some(d);
        self
    }
    /// Idempotent producer id, epoch and base sequence.
    pub fn producer(mut self, id: i64, epoch: i16, base_sequence: i32) -> Self {
        self.producer = (id, epoch, base_sequence);
        self
    }
    pub fn attributes_extra(mut self, bits: i16) -> Self {
        self.attributes_extra = bits;
        self
    }
    /// Rewrite the first record's key length varint (1 byte; must stay < 64).
    pub fn corrupt_first_record_key_len(mut self, len: i32) -> Self {
        self.corrupt_key_len = Some(len);
        self
    }
    /// Record i gets timestamp delta `d[i]` instead of i (maxTimestamp stays base + n - 1).
    pub fn timestamp_deltas(mut self, d: Vec<i64>) -> Self {
        self.timestamp_deltas = Some(d);
        self
    }
    /// Overwrite the first bytes of the (uncompressed) records section.
    pub fn overwrite_records_prefix(mut self, p: &[u8]) -> Self {
        self.prefix = Some(p.to_vec());
        self
    }

    fn encode_records(&self) -> Vec<u8> {
        let mut out = Vec::new();
        for (i, r) in self.records.iter().enumerate() {
            let mut body = Vec::new();
            body.push(0);
            let ts_delta = self.timestamp_deltas.as_ref().map_or(i as i64, |d| d[i]);
            put_varint(&mut body, ts_delta);
            put_varint(&mut body, i as i64);
            let key_at = body.len();
            put_bytes(&mut body, &r.key);
            if i == 0 {
                if let Some(l) = self.corrupt_key_len {
                    body[key_at] = ((l << 1) ^ (l >> 31)) as u8;
                }
            }
            put_bytes(&mut body, &r.value);
            put_varint(&mut body, r.headers.len() as i64);
            for (k, v) in &r.headers {
                put_bytes(&mut body, &Some(k.clone()));
                put_bytes(&mut body, v);
            }
            put_varint(&mut out, body.len() as i64);
            out.extend_from_slice(&body);
        }
        if let Some(p) = &self.prefix {
            out[..p.len()].copy_from_slice(p);
        }
        out
    }

    fn compress(&self, raw: Vec<u8>) -> Vec<u8> {
        match self.compression {
            Compression::None => raw,
            Compression::Gzip => {
                let mut e =
                    flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
                e.write_all(&raw).expect("in memory");
                e.finish().expect("in memory")
            }
            Compression::Snappy if self.raw_snappy => snap::raw::Encoder::new()
                .compress_vec(&raw)
                .expect("in memory"),
            Compression::Snappy => {
                // xerial framing as snappy-java writes it: magic, version 1, compatible 1,
                // then 32 KiB blocks each prefixed by its compressed length.
                let mut out = vec![
                    0x82, b'S', b'N', b'A', b'P', b'P', b'Y', 0, 0, 0, 0, 1, 0, 0, 0, 1,
                ];
                let mut enc = snap::raw::Encoder::new();
                for chunk in raw.chunks(32 * 1024) {
                    let c = enc.compress_vec(chunk).expect("in memory");
                    out.extend_from_slice(&(c.len() as i32).to_be_bytes());
                    out.extend_from_slice(&c);
                }
                out
            }
            Compression::Lz4 => {
                let mut e = lz4_flex::frame::FrameEncoder::new(Vec::new());
                e.write_all(&raw).expect("in memory");
                e.finish().expect("in memory")
            }
            Compression::Zstd => zstd::bulk::compress(&raw, 3).expect("in memory"),
        }
    }

    pub fn build(&self) -> Vec<u8> {
        let records = self.compress(self.encode_records());
        let n = self.records.len() as i32;
        let max_ts = self.base_timestamp + (n.max(1) - 1) as i64;
        let mut b = Vec::with_capacity(BATCH_HEADER_AT_RECORDS + records.len());
        b.extend_from_slice(&0i64.to_be_bytes());
        b.extend_from_slice(&((BATCH_HEADER_AT_RECORDS - 12 + records.len()) as i32).to_be_bytes());
        b.extend_from_slice(&(-1i32).to_be_bytes());
        b.push(2);
        b.extend_from_slice(&0u32.to_be_bytes());
        b.extend_from_slice(&(self.compression.id() | self.attributes_extra).to_be_bytes());
        b.extend_from_slice(&self.last_offset_delta.unwrap_or(n - 1).to_be_bytes());
        b.extend_from_slice(&self.base_timestamp.to_be_bytes());
        b.extend_from_slice(&max_ts.to_be_bytes());
        b.extend_from_slice(&self.producer.0.to_be_bytes());
        b.extend_from_slice(&self.producer.1.to_be_bytes());
        b.extend_from_slice(&self.producer.2.to_be_bytes());
        b.extend_from_slice(&self.declared_count.unwrap_or(n).to_be_bytes());
        b.extend_from_slice(&records);
        let crc = crc32c::crc32c(&b[ATTRIBUTES_AT..]);
        b[CRC_AT..CRC_AT + 4].copy_from_slice(&crc.to_be_bytes());
        b
    }
}

/// Sets the high watermark to the log end, as the leader of a single-replica partition does
/// after every append, and returns the log: for tests of retention, DeleteRecords and the
/// cleaner, which never act at or above the high watermark.
pub fn committed(log: &crate::PartitionLog) -> &crate::PartitionLog {
    log.set_high_watermark(log.log_end_offset());
    log
}

/// A small deterministic generator (xorshift64*) for fuzz-style tests: a case is reproduced
/// from its seed.
pub struct Rng(pub u64);

impl Rng {
    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// Uniform enough in [0, n) (0 when n is 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }
}

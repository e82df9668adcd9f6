//! Walking the records inside a v2 batch: varint structure, offset deltas, timestamps, and
//! decompression of gzip / snappy (xerial-framed and raw) / lz4 frame / zstd.
//!
//! Owns: the per-record wire format and the decompression readers. Must never: hold more than a
//! fixed-size buffer of decompressed bytes (records are streamed and skipped, not collected), let
//! decompression run past `DECOMPRESSED_BATCH_BYTES_MAX`, or allocate per record. Raw snappy is
//! the one codec without a streaming decoder: it is decompressed whole after its declared length
//! is checked against the cap.

use std::io::Read;

use crate::batch::{BatchHeader, Compression};
use crate::error::LogError;
use crate::limits::{
    BATCH_HEADER_BYTES, DECOMPRESSED_BATCH_BYTES_MAX, SNAPPY_EXPANSION_MAX, ZSTD_WINDOW_LOG_MAX,
};

/// What a visitor learns about one record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordVisit {
    pub offset_delta: i32,
    pub timestamp: i64,
    /// -1 for a null key (refused on compacted topics).
    pub key_len: i32,
    /// -1 for a null value (a tombstone).
    pub value_len: i32,
}

/// Walk every record of a complete batch (header already parsed and CRC-checked by the caller),
/// checking structure. `visit` returns Ok(false) to stop early; the end-of-batch checks are then
/// skipped. Never allocates per record.
pub fn visit_records(
    batch: &[u8],
    header: &BatchHeader,
    visit: impl FnMut(RecordVisit) -> Result<bool, LogError>,
) -> Result<(), LogError> {
    let body = &batch[BATCH_HEADER_BYTES..header.total_bytes()];
    match header.compression() {
        Compression::None => walk_uncompressed(body, header, visit),
        Compression::Gzip => walk(
            &mut StreamSource::new(flate2::bufread::GzDecoder::new(body)),
            header,
            visit,
        ),
        Compression::Lz4 => walk(
            &mut StreamSource::new(lz4_flex::frame::FrameDecoder::new(body)),
            header,
            visit,
        ),
        Compression::Zstd => ZSTD_CONTEXT.with(|cell| {
            // Reuse this thread's decompression context: creating one per batch dominated the
            // cost of validating small zstd batches. A nested use falls back to a fresh one.
            let mut fresh;
            let mut borrowed = cell.try_borrow_mut();
            let context = match borrowed.as_deref_mut() {
                Ok(Some(c)) => c,
                Ok(slot) => {
                    *slot = Some(new_zstd_context()?);
                    slot.as_mut().expect("just set")
                }
                Err(_) => {
                    fresh = new_zstd_context()?;
                    &mut fresh
                }
            };
            let mut source =
                StreamSource::new(zstd::stream::read::Decoder::with_context(body, context));
            // Bound to a local so `source` (which borrows the context) drops before the borrow
            // guard does; as a tail expression it would outlive it.
            #[allow(clippy::let_and_return)]
            let result = walk(&mut source, header, visit);
            result
        }),
        Compression::Snappy => {
            if body.starts_with(&XERIAL_MAGIC) {
                walk(
                    &mut StreamSource::new(XerialReader::new(body)?),
                    header,
                    visit,
                )
            } else {
                let len = snap::raw::decompress_len(body)
                    .map_err(|e| LogError::CorruptMessage(format!("snappy: {e}")))?;
                if len as u64 > DECOMPRESSED_BATCH_BYTES_MAX {
                    return Err(cap_exceeded());
                }
                if !snappy_len_plausible(len, body.len()) {
                    return Err(LogError::CorruptMessage(format!(
                        "snappy block of {} bytes cannot decompress to the {len} bytes it declares",
                        body.len()
                    )));
                }
                let raw = snap::raw::Decoder::new()
                    .decompress_vec(body)
                    .map_err(|e| LogError::CorruptMessage(format!("snappy: {e}")))?;
                walk_uncompressed(&raw, header, visit)
            }
        }
    }
}

thread_local! {
    static ZSTD_CONTEXT: std::cell::RefCell<Option<zstd::zstd_safe::DCtx<'static>>> =
        const { std::cell::RefCell::new(None) };
}

fn new_zstd_context() -> Result<zstd::zstd_safe::DCtx<'static>, LogError> {
    let mut c = zstd::zstd_safe::DCtx::create();
    c.set_parameter(zstd::zstd_safe::DParameter::WindowLogMax(
        ZSTD_WINDOW_LOG_MAX,
    ))
    .map_err(|code| LogError::CorruptMessage(format!("zstd context: error {code}")))?;
    Ok(c)
}

/// Snappy allocates the declared decompressed length up front; a declared length beyond what
/// the compressed bytes could possibly expand to is a lie told to make us allocate.
fn snappy_len_plausible(declared: usize, compressed: usize) -> bool {
    declared as u64 <= compressed as u64 * SNAPPY_EXPANSION_MAX + 64
}

fn cap_exceeded() -> LogError {
    LogError::InvalidRecord(format!(
        "batch would decompress to more than {DECOMPRESSED_BATCH_BYTES_MAX} bytes"
    ))
}

/// A byte source the record walker reads from: a slice (uncompressed) or a decompressor.
trait Source {
    fn byte(&mut self) -> Result<u8, LogError>;
    fn skip(&mut self, n: usize) -> Result<(), LogError>;
    /// Bytes consumed so far (to check each record's declared size).
    fn consumed(&self) -> u64;
    fn at_end(&mut self) -> Result<bool, LogError>;
}

fn short() -> LogError {
    LogError::InvalidRecord("record extends past the end of the batch".into())
}

struct SliceSource<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl Source for SliceSource<'_> {
    #[inline]
    fn byte(&mut self) -> Result<u8, LogError> {
        let b = *self.buf.get(self.pos).ok_or_else(short)?;
        self.pos += 1;
        Ok(b)
    }
    #[inline]
    fn skip(&mut self, n: usize) -> Result<(), LogError> {
        if self.buf.len() - self.pos < n {
            return Err(short());
        }
        self.pos += n;
        Ok(())
    }
    fn consumed(&self) -> u64 {
        self.pos as u64
    }
    fn at_end(&mut self) -> Result<bool, LogError> {
        Ok(self.pos == self.buf.len())
    }
}

/// Buffered reader over a decompressor that counts every decompressed byte against the cap.
struct StreamSource<R: Read> {
    inner: R,
    buf: Box<[u8; STREAM_BUFFER_BYTES]>,
    pos: usize,
    len: usize,
    /// Bytes handed to the walker before `buf[..pos]`.
    consumed_before: u64,
    produced: u64,
    eof: bool,
}

/// Decompressed bytes buffered at a time while validating a compressed batch.
const STREAM_BUFFER_BYTES: usize = 16 * 1024;

impl<R: Read> StreamSource<R> {
    fn new(inner: R) -> Self {
        StreamSource {
            inner,
            buf: Box::new([0; STREAM_BUFFER_BYTES]),
            pos: 0,
            len: 0,
            consumed_before: 0,
            produced: 0,
            eof: false,
        }
    }

    /// Refill when empty; false at end of stream.
    fn fill(&mut self) -> Result<bool, LogError> {
        if self.pos < self.len {
            return Ok(true);
        }
        if self.eof {
            return Ok(false);
        }
        self.consumed_before += self.len as u64;
        self.pos = 0;
        self.len = 0;
        let n = loop {
            match self.inner.read(&mut self.buf[..]) {
                Ok(n) => break n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    return Err(LogError::CorruptMessage(format!(
                        "decompression failed: {e}"
                    )))
                }
            }
        };
        if n == 0 {
            self.eof = true;
            return Ok(false);
        }
        self.produced += n as u64;
        if self.produced > DECOMPRESSED_BATCH_BYTES_MAX {
            return Err(cap_exceeded());
        }
        self.len = n;
        Ok(true)
    }
}

impl<R: Read> Source for StreamSource<R> {
    #[inline]
    fn byte(&mut self) -> Result<u8, LogError> {
        if !self.fill()? {
            return Err(short());
        }
        let b = self.buf[self.pos];
        self.pos += 1;
        Ok(b)
    }
    fn skip(&mut self, mut n: usize) -> Result<(), LogError> {
        while n > 0 {
            if !self.fill()? {
                return Err(short());
            }
            let step = n.min(self.len - self.pos);
            self.pos += step;
            n -= step;
        }
        Ok(())
    }
    fn consumed(&self) -> u64 {
        self.consumed_before + self.pos as u64
    }
    fn at_end(&mut self) -> Result<bool, LogError> {
        Ok(!self.fill()?)
    }
}

/// Zigzag varint of at most 5 bytes (Kafka's `ByteUtils.readVarint`).
#[inline]
fn varint(src: &mut impl Source) -> Result<i32, LogError> {
    let mut raw: u32 = 0;
    for i in 0..5 {
        let b = src.byte()?;
        raw |= ((b & 0x7f) as u32) << (7 * i);
        if b & 0x80 == 0 {
            return Ok(((raw >> 1) as i32) ^ -((raw & 1) as i32));
        }
    }
    Err(LogError::InvalidRecord(
        "varint is longer than 5 bytes".into(),
    ))
}

/// Zigzag varlong of at most 10 bytes.
#[inline]
fn varlong(src: &mut impl Source) -> Result<i64, LogError> {
    let mut raw: u64 = 0;
    for i in 0..10 {
        let b = src.byte()?;
        raw |= ((b & 0x7f) as u64) << (7 * i);
        if b & 0x80 == 0 {
            return Ok(((raw >> 1) as i64) ^ -((raw & 1) as i64));
        }
    }
    Err(LogError::InvalidRecord(
        "varlong is longer than 10 bytes".into(),
    ))
}

fn walk(
    src: &mut impl Source,
    header: &BatchHeader,
    mut visit: impl FnMut(RecordVisit) -> Result<bool, LogError>,
) -> Result<(), LogError> {
    // Batches the cleaner rewrote keep their offset range but hold fewer records, with
    // increasing deltas; clients' batches (check_counts) are dense.
    let dense = header.records_count as i64 == header.last_offset_delta as i64 + 1;
    let mut previous_delta = -1i32;
    for index in 0..header.records_count {
        let size = varint(src)?;
        if size < 0 {
            return Err(LogError::InvalidRecord(format!(
                "invalid record size {size}"
            )));
        }
        let start = src.consumed();
        let end = start + size as u64;
        let _attributes = src.byte()?;
        let timestamp_delta = varlong(src)?;
        let offset_delta = varint(src)?;
        let in_order = if dense {
            offset_delta == index
        } else {
            offset_delta > previous_delta && offset_delta <= header.last_offset_delta
        };
        if !in_order {
            // Kafka would rebuild the batch to renumber; every client writes dense deltas, so
            // a gap is refused rather than stored.
            return Err(LogError::InvalidRecord(format!(
                "record {index} has offset delta {offset_delta}"
            )));
        }
        previous_delta = offset_delta;
        let key_len = varint(src)?;
        if key_len >= 0 {
            let n = within(src.consumed(), end, key_len as i64)?;
            src.skip(n)?;
        }
        let value_len = varint(src)?;
        if value_len >= 0 {
            let n = within(src.consumed(), end, value_len as i64)?;
            src.skip(n)?;
        }
        let header_count = varint(src)?;
        if header_count < 0 {
            return Err(LogError::InvalidRecord(format!(
                "invalid header count {header_count}"
            )));
        }
        // Each header takes at least 2 bytes: bound the loop by the bytes the record has left.
        within(src.consumed(), end, header_count as i64 * 2)?;
        for _ in 0..header_count {
            let key_len = varint(src)?;
            if key_len < 0 {
                return Err(LogError::InvalidRecord(
                    "invalid negative header key size".into(),
                ));
            }
            let n = within(src.consumed(), end, key_len as i64)?;
            src.skip(n)?;
            let value_len = varint(src)?;
            if value_len >= 0 {
                let n = within(src.consumed(), end, value_len as i64)?;
                src.skip(n)?;
            }
        }
        if src.consumed() != end {
            return Err(LogError::InvalidRecord(format!(
                "invalid record size: expected to read {size} bytes in record payload, but read {}",
                src.consumed() - start
            )));
        }
        let keep_going = visit(RecordVisit {
            offset_delta,
            timestamp: header.base_timestamp.wrapping_add(timestamp_delta),
            key_len,
            value_len,
        })?;
        if !keep_going {
            return Ok(());
        }
    }
    if !src.at_end()? {
        return Err(LogError::InvalidRecord(
            "incorrect declared batch size, records still remaining after the declared count"
                .into(),
        ));
    }
    Ok(())
}

/// `walk` over records already in memory: the dense case (every client batch) takes
/// [`walk_dense_slice`], a single tight pass; anything it cannot accept is walked again by the
/// byte-source walker, which names the exact problem. So both paths accept the same batches
/// (checked by `fast_walk_agrees_with_the_reference_walk`) and errors read the same.
fn walk_uncompressed(
    body: &[u8],
    header: &BatchHeader,
    mut visit: impl FnMut(RecordVisit) -> Result<bool, LogError>,
) -> Result<(), LogError> {
    if header.records_count as i64 == header.last_offset_delta as i64 + 1 {
        if let FastWalk::Done = walk_dense_slice(body, header, &mut visit)? {
            return Ok(());
        }
    }
    walk(&mut SliceSource { buf: body, pos: 0 }, header, visit)
}

/// Outcome of the fast walk: finished, or a structural problem for the reference walk to name.
enum FastWalk {
    Done,
    Malformed,
}

/// The record checks of `walk` for a dense, uncompressed records section, written for speed:
/// each record is cut out by its size varint once, and every field is read from that record's
/// slice with plain index arithmetic (no per-byte `Result`, no per-field bounds re-check against
/// the batch). The profile of last session had the generic walker at 27 % of append time.
/// Visitor errors are returned as they are; structural problems return `Malformed` without
/// building an error.
fn walk_dense_slice(
    body: &[u8],
    header: &BatchHeader,
    visit: &mut impl FnMut(RecordVisit) -> Result<bool, LogError>,
) -> Result<FastWalk, LogError> {
    let mut pos = 0usize;
    for index in 0..header.records_count {
        let Some(size) = slice_varint(body, &mut pos) else {
            return Ok(FastWalk::Malformed);
        };
        let Some(rec) = usize::try_from(size)
            .ok()
            .and_then(|n| body.get(pos..pos.checked_add(n)?))
        else {
            return Ok(FastWalk::Malformed);
        };
        pos += rec.len();
        let Some(fields) = dense_record_fields(rec, index) else {
            return Ok(FastWalk::Malformed);
        };
        let keep_going = visit(RecordVisit {
            offset_delta: index,
            timestamp: header.base_timestamp.wrapping_add(fields.timestamp_delta),
            key_len: fields.key_len,
            value_len: fields.value_len,
        })?;
        if !keep_going {
            return Ok(FastWalk::Done);
        }
    }
    Ok(if pos == body.len() {
        FastWalk::Done
    } else {
        FastWalk::Malformed
    })
}

struct DenseFields {
    timestamp_delta: i64,
    key_len: i32,
    value_len: i32,
}

/// One record's fields after its size varint (`rec` is exactly the declared size), or None if
/// anything is out of place: offset delta != `index`, a length past the record, a negative
/// header count or header key, or bytes left over.
#[inline(always)]
fn dense_record_fields(rec: &[u8], index: i32) -> Option<DenseFields> {
    let mut at = 1; // attributes: unused by the broker
    if rec.is_empty() {
        return None;
    }
    let timestamp_delta = slice_varlong(rec, &mut at)?;
    if slice_varint(rec, &mut at)? != index {
        return None;
    }
    let key_len = slice_varint(rec, &mut at)?;
    skip_nullable(rec, &mut at, key_len)?;
    let value_len = slice_varint(rec, &mut at)?;
    skip_nullable(rec, &mut at, value_len)?;
    let header_count = slice_varint(rec, &mut at)?;
    if header_count < 0 || header_count as usize > (rec.len() - at) / 2 {
        return None;
    }
    for _ in 0..header_count {
        let header_key_len = slice_varint(rec, &mut at)?;
        if header_key_len < 0 {
            return None;
        }
        skip_nullable(rec, &mut at, header_key_len)?;
        let header_value_len = slice_varint(rec, &mut at)?;
        skip_nullable(rec, &mut at, header_value_len)?;
    }
    (at == rec.len()).then_some(DenseFields {
        timestamp_delta,
        key_len,
        value_len,
    })
}

/// Skip `len` bytes (nothing for a negative, i.e. null, length) if they are inside `rec`.
#[inline(always)]
fn skip_nullable(rec: &[u8], at: &mut usize, len: i32) -> Option<()> {
    if len > 0 {
        if len as usize > rec.len() - *at {
            return None;
        }
        *at += len as usize;
    }
    Some(())
}

/// The bytes of an encoded record (size varint first) after its offset delta: key, value and
/// headers as encoded. None when the fields run past the record.
pub(crate) fn after_offset_delta(record: &[u8]) -> Option<&[u8]> {
    let mut at = 0;
    slice_varint(record, &mut at)?; // size
    at += 1; // attributes
    slice_varlong(record, &mut at)?; // timestamp delta
    slice_varint(record, &mut at)?; // offset delta
    record.get(at..)
}

/// `varint` over a slice: None when it runs past the slice or is longer than 5 bytes.
#[inline(always)]
fn slice_varint(buf: &[u8], at: &mut usize) -> Option<i32> {
    let first = *buf.get(*at)?;
    if first < 0x80 {
        // Most lengths and deltas of small records fit in one byte.
        *at += 1;
        return Some(((first >> 1) as i32) ^ -((first & 1) as i32));
    }
    let mut raw: u32 = 0;
    for i in 0..5 {
        let b = *buf.get(*at + i)?;
        raw |= ((b & 0x7f) as u32) << (7 * i);
        if b & 0x80 == 0 {
            *at += i + 1;
            return Some(((raw >> 1) as i32) ^ -((raw & 1) as i32));
        }
    }
    None
}

/// `varlong` over a slice: None when it runs past the slice or is longer than 10 bytes.
#[inline(always)]
fn slice_varlong(buf: &[u8], at: &mut usize) -> Option<i64> {
    let mut raw: u64 = 0;
    for i in 0..10 {
        let b = *buf.get(*at + i)?;
        raw |= ((b & 0x7f) as u64) << (7 * i);
        if b & 0x80 == 0 {
            *at += i + 1;
            return Some(((raw >> 1) as i64) ^ -((raw & 1) as i64));
        }
    }
    None
}

/// One record of a decompressed records section, for the cleaner: where its encoded bytes
/// (size varint included) are, so a kept record is copied verbatim (its offset and timestamp
/// deltas stay valid because the rewritten batch keeps the base offset and base timestamp).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct StoredRecord {
    pub(crate) encoded: std::ops::Range<usize>,
    pub(crate) offset_delta: i32,
    pub(crate) timestamp: i64,
    /// None for a null key.
    pub(crate) key: Option<std::ops::Range<usize>>,
    /// None for a null value (a tombstone).
    pub(crate) value: Option<std::ops::Range<usize>>,
    pub(crate) tombstone: bool,
}

/// The records section of a batch, decompressed (bounded by `DECOMPRESSED_BATCH_BYTES_MAX`).
pub(crate) fn decompressed_records(
    batch: &[u8],
    header: &BatchHeader,
) -> Result<Vec<u8>, LogError> {
    decompress(
        header.compression(),
        &batch[BATCH_HEADER_BYTES..header.total_bytes()],
    )
}

/// A batch's records section (`body`, compressed with `compression`), decompressed under the
/// same cap: for readers outside the log that decode records themselves (the console).
pub fn decompress(compression: Compression, body: &[u8]) -> Result<Vec<u8>, LogError> {
    let cap = DECOMPRESSED_BATCH_BYTES_MAX;
    let read_capped = |r: &mut dyn Read| -> Result<Vec<u8>, LogError> {
        let mut out = Vec::new();
        r.take(cap + 1)
            .read_to_end(&mut out)
            .map_err(|e| LogError::CorruptMessage(format!("decompression failed: {e}")))?;
        if out.len() as u64 > cap {
            return Err(cap_exceeded());
        }
        Ok(out)
    };
    match compression {
        Compression::None => Ok(body.to_vec()),
        Compression::Gzip => read_capped(&mut flate2::bufread::GzDecoder::new(body)),
        Compression::Lz4 => read_capped(&mut lz4_flex::frame::FrameDecoder::new(body)),
        Compression::Zstd => {
            let mut context = new_zstd_context()?;
            let mut d = zstd::stream::read::Decoder::with_context(body, &mut context);
            read_capped(&mut d)
        }
        Compression::Snappy if body.starts_with(&XERIAL_MAGIC) => {
            read_capped(&mut XerialReader::new(body)?)
        }
        Compression::Snappy => {
            let len = snap::raw::decompress_len(body)
                .map_err(|e| LogError::CorruptMessage(format!("snappy: {e}")))?;
            if len as u64 > cap || !snappy_len_plausible(len, body.len()) {
                return Err(cap_exceeded());
            }
            snap::raw::Decoder::new()
                .decompress_vec(body)
                .map_err(|e| LogError::CorruptMessage(format!("snappy: {e}")))
        }
    }
}

/// Call `each` for every record of a decompressed records section, after checking its
/// structure like [`visit_records`]. Holds nothing per record, so memory stays at the
/// decompressed batch whatever its record count.
pub(crate) fn for_each_stored_record(
    raw: &[u8],
    header: &BatchHeader,
    mut each: impl FnMut(StoredRecord) -> Result<(), LogError>,
) -> Result<(), LogError> {
    // First pass validates structure (shared with produce validation), so the second can
    // trust every length it reads.
    walk_uncompressed(raw, header, |_| Ok(true))?;
    let src = &mut SliceSource { buf: raw, pos: 0 };
    for _ in 0..header.records_count {
        let at = src.pos;
        let size = varint(src)?;
        let end = src.pos + size as usize;
        let _attributes = src.byte()?;
        let timestamp_delta = varlong(src)?;
        let offset_delta = varint(src)?;
        let key_len = varint(src)?;
        let key = (key_len >= 0).then(|| src.pos..src.pos + key_len as usize);
        src.pos += key_len.max(0) as usize;
        let value_len = varint(src)?;
        let value = (value_len >= 0).then(|| src.pos..src.pos + value_len as usize);
        src.pos = end;
        each(StoredRecord {
            encoded: at..end,
            offset_delta,
            timestamp: header.base_timestamp.wrapping_add(timestamp_delta),
            key,
            tombstone: value.is_none(),
            value,
        })?;
    }
    Ok(())
}

/// All records of a decompressed section (tests; the cleaner streams).
#[cfg(test)]
pub(crate) fn stored_records(
    raw: &[u8],
    header: &BatchHeader,
) -> Result<Vec<StoredRecord>, LogError> {
    let mut out = Vec::new();
    for_each_stored_record(raw, header, |r| {
        out.push(r);
        Ok(())
    })?;
    Ok(out)
}

/// Every length inside a record must fit in the bytes the record declared (`at..end`).
#[inline]
fn within(at: u64, end: u64, n: i64) -> Result<usize, LogError> {
    if n as u64 > end.saturating_sub(at) {
        return Err(LogError::InvalidRecord(format!(
            "a field of {n} bytes overruns its record ({} bytes left)",
            end.saturating_sub(at)
        )));
    }
    Ok(n as usize)
}

/// The framing snappy-java's `SnappyOutputStream` writes (what the Java client sends): an
/// 8-byte magic, two i32 version fields, then blocks of [i32 compressed length][raw snappy].
const XERIAL_MAGIC: [u8; 8] = [0x82, b'S', b'N', b'A', b'P', b'P', b'Y', 0];
const XERIAL_HEADER_BYTES: usize = 16;

struct XerialReader<'a> {
    rest: &'a [u8],
    block: Vec<u8>,
    block_pos: usize,
    decoder: snap::raw::Decoder,
}

impl<'a> XerialReader<'a> {
    fn new(body: &'a [u8]) -> Result<Self, LogError> {
        if body.len() < XERIAL_HEADER_BYTES {
            return Err(LogError::CorruptMessage(
                "truncated xerial snappy header".into(),
            ));
        }
        Ok(XerialReader {
            rest: &body[XERIAL_HEADER_BYTES..],
            block: Vec::new(),
            block_pos: 0,
            decoder: snap::raw::Decoder::new(),
        })
    }
}

impl Read for XerialReader<'_> {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        while self.block_pos == self.block.len() {
            if self.rest.is_empty() {
                return Ok(0);
            }
            let bad = |m: String| std::io::Error::new(std::io::ErrorKind::InvalidData, m);
            if self.rest.len() < 4 {
                return Err(bad("truncated xerial block length".into()));
            }
            let n = i32::from_be_bytes(self.rest[..4].try_into().expect("4 bytes"));
            if n < 0 || n as usize > self.rest.len() - 4 {
                return Err(bad(format!("xerial block length {n} overruns the batch")));
            }
            let compressed = &self.rest[4..4 + n as usize];
            self.rest = &self.rest[4 + n as usize..];
            let len = snap::raw::decompress_len(compressed).map_err(|e| bad(e.to_string()))?;
            if len as u64 > DECOMPRESSED_BATCH_BYTES_MAX
                || !snappy_len_plausible(len, compressed.len())
            {
                return Err(bad(format!(
                    "xerial block of {n} bytes declares {len} decompressed bytes"
                )));
            }
            self.block.resize(len, 0);
            self.decoder
                .decompress(compressed, &mut self.block)
                .map_err(|e| bad(e.to_string()))?;
            self.block_pos = 0;
        }
        let n = out.len().min(self.block.len() - self.block_pos);
        out[..n].copy_from_slice(&self.block[self.block_pos..self.block_pos + n]);
        self.block_pos += n;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testkit::BatchBuilder;

    #[test]
    fn snappy_declaring_a_huge_length_is_refused_before_allocating() {
        // Raw snappy starts with the decompressed length as a varint: claim 100 MiB in 8 bytes.
        let mut b = BatchBuilder::new(0)
            .compression(Compression::Snappy)
            .raw_snappy()
            .records(1)
            .build();
        let body_at = BATCH_HEADER_BYTES;
        let lie = [0x80, 0x80, 0x80, 0x32, 0, 0, 0, 0]; // varint 0x32 << 21 = 100 MiB
        b.truncate(body_at);
        b.extend_from_slice(&lie);
        let len = (b.len() - 12) as i32;
        b[8..12].copy_from_slice(&len.to_be_bytes());
        let h = BatchHeader::parse(&b).unwrap();
        let e = visit_records(&b, &h, |_| Ok(true)).unwrap_err();
        assert_eq!(e.kafka_error_code(), 2, "{e}");
        assert!(e.to_string().contains("declares"), "{e}");
    }

    /// Random records (null/empty/long keys and values, headers, multi-byte varints), then
    /// random damage to the records section: the fast walk must accept exactly what the
    /// reference walk accepts and report the same records, and fall back on everything else.
    #[test]
    fn fast_walk_agrees_with_the_reference_walk() {
        use crate::batch::tests::Rng;
        use crate::testkit::Rec;
        let mut rng = Rng(0x51_7cc1_b727_220a);
        let bytes = |rng: &mut Rng| match rng.below(4) {
            0 => None,
            1 => Some(vec![]),
            2 => Some(vec![7; rng.below(20)]),
            _ => Some(vec![3; 100 + rng.below(300)]),
        };
        let (mut accepted, mut rejected) = (0, 0);
        for round in 0..4000 {
            let recs: Vec<Rec> = (0..1 + rng.below(12))
                .map(|_| Rec {
                    key: bytes(&mut rng),
                    value: bytes(&mut rng),
                    headers: (0..rng.below(3))
                        .map(|_| (bytes(&mut rng).unwrap_or_default(), bytes(&mut rng)))
                        .collect(),
                })
                .collect();
            let mut b = BatchBuilder::new(1_700_000_000_000)
                .custom_records(recs)
                .build();
            if round % 8 != 0 {
                for _ in 0..1 + rng.below(3) {
                    let i = BATCH_HEADER_BYTES + rng.below(b.len() - BATCH_HEADER_BYTES);
                    b[i] = match rng.below(3) {
                        0 => rng.next() as u8,
                        1 => b[i] ^ 0x80,
                        _ => b[i].wrapping_add(1),
                    };
                }
            }
            let h = BatchHeader::parse(&b).unwrap();
            let body = &b[BATCH_HEADER_BYTES..];
            let mut fast_seen = Vec::new();
            let fast = walk_dense_slice(body, &h, &mut |r| {
                fast_seen.push(r);
                Ok(true)
            })
            .unwrap();
            let mut reference_seen = Vec::new();
            let reference = walk(&mut SliceSource { buf: body, pos: 0 }, &h, |r| {
                reference_seen.push(r);
                Ok(true)
            });
            match fast {
                FastWalk::Done => {
                    assert!(
                        reference.is_ok(),
                        "round {round}: fast accepted, reference {reference:?}"
                    );
                    assert_eq!(fast_seen, reference_seen, "round {round}");
                    accepted += 1;
                }
                FastWalk::Malformed => {
                    assert!(
                        reference.is_err(),
                        "round {round}: fast refused a batch the reference accepts"
                    );
                    rejected += 1;
                }
            }
            // The public entry point gives the reference walk's verdict either way.
            assert_eq!(
                visit_records(&b, &h, |_| Ok(true)).map_err(|e| e.to_string()),
                reference.map_err(|e| e.to_string()),
                "round {round}"
            );
        }
        assert!(
            accepted > 500 && rejected > 200,
            "accepted {accepted}, rejected {rejected}"
        );
    }

    #[test]
    fn varints_decode_like_kafka() {
        let mut src = SliceSource {
            buf: &[
                0x01, 0x02, 0xfe, 0xff, 0xff, 0xff, 0x0f, 0x80, 0x80, 0x80, 0x80, 0x80,
            ],
            pos: 0,
        };
        assert_eq!(varint(&mut src).unwrap(), -1);
        assert_eq!(varint(&mut src).unwrap(), 1);
        assert_eq!(varint(&mut src).unwrap(), i32::MAX);
        assert!(varint(&mut src).is_err(), "6-byte varint");
    }
}

//! Zero-copy fetch: responses written as encoded bytes and ranges of segment files.
//!
//! Owns: the framing of a Fetch response whose partitions' records are file slices
//! ([`encode_fetch`]: the response header, top-level fields and per-partition headers are
//! encoded by kafka-protocol as usual; each slice's records field becomes its length prefix
//! and the file range, in response order), and writing such a response
//! ([`write_chunks`]): encoded bytes with `write`, file ranges with `sendfile(2)` straight from
//! the page cache to the socket on Linux (rustix's safe wrapper; tokio has no sendfile), or
//! read and written where the socket cannot take them (a TLS stream: its bytes are encrypted
//! in user space). A connection that can send from files handles its requests within
//! [`ZERO_COPY_MIN_BYTES`]; only then does the Fetch handler answer with slices (`fetch.rs`
//! decides which: records of at least `limits::ZERO_COPY_MIN_BYTES`), so TLS connections, other
//! operating systems and in-process callers keep the copying path.
//!
//! How the records fields are found: the response is encoded twice, once with every slice's
//! records as an empty value and once as null. Both encode to the same length (`bytes`: i32
//! 0 / -1; compact `bytes`: varint 1 / 0) and differ exactly in those fields, in order; the
//! frame is checked to have one such difference per slice and nothing else, else it is not
//! sent (the connection closes with an error log: it would be a bug).
//!
//! Must never: send a frame whose length disagrees with its bytes, or complete a response
//! whose slices may have changed under it: a truncation of a partition after its slice was
//! located ([`josefine_log::FileSlice::intact`]) or a file shorter than its range fails the
//! write before the frame's last byte is sent, and the connection closes (the client retries),
//! as Kafka's `FileRecords.writeTo` fails when the file shrank.

use std::io;

use bytes::{BufMut, Bytes, BytesMut};
use josefine_log::FileSlice;
use kafka_protocol::messages::{ApiKey, FetchResponse};
use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::codec::{encode_response, ResponseBody};

tokio::task_local! {
    /// Set while a request of a connection that can send from files is handled: a Fetch may
    /// answer partitions whose records are at least this many bytes with file slices.
    pub static ZERO_COPY_MIN_BYTES: usize;
}

/// A partition answered from a file: `file` holds the records of
/// `response.responses[topic].partitions[partition]`.
#[derive(Debug, Clone)]
pub struct Slice {
    pub topic: usize,
    pub partition: usize,
    pub file: FileSlice,
}

/// A piece of a response frame, in order.
#[derive(Debug, Clone)]
pub enum Chunk {
    Bytes(Bytes),
    File(FileSlice),
}

impl Chunk {
    pub fn len(&self) -> usize {
        match self {
            Chunk::Bytes(b) => b.len(),
            Chunk::File(f) => f.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The write half of a connection.
pub trait ConnectionWriter: AsyncWrite + Unpin + Send + 'static {
    /// The plaintext TCP socket this writer writes to, when file ranges may be sent to it
    /// with `sendfile`; None for a stream that transforms its bytes (TLS).
    fn sendfile_socket(&self) -> Option<&TcpStream> {
        None
    }
}

impl ConnectionWriter for tokio::net::tcp::OwnedWriteHalf {
    fn sendfile_socket(&self) -> Option<&TcpStream> {
        cfg!(target_os = "linux").then(|| self.as_ref())
    }
}

/// The write half of a split stream (a TLS connection's): copies.
impl<T: tokio::io::AsyncRead + AsyncWrite + Send + 'static> ConnectionWriter
    for tokio::io::WriteHalf<T>
{
}

/// Frames a Fetch response (v`version`) whose `slices` answer some of its partitions: the
/// frame, as the copying path would encode it with each slice read into its partition.
pub fn encode_fetch(
    version: i16,
    correlation_id: i32,
    mut response: FetchResponse,
    slices: Vec<Slice>,
) -> anyhow::Result<Vec<Chunk>> {
    let mut set = |records: Option<Bytes>| -> anyhow::Result<()> {
        for s in &slices {
            let p = response
                .responses
                .get_mut(s.topic)
                .and_then(|t| t.partitions.get_mut(s.partition))
                .ok_or_else(|| anyhow::anyhow!("a file slice names no partition"))?;
            p.records = records.clone();
        }
        Ok(())
    };
    set(Some(Bytes::new()))?;
    let body = ResponseBody::Fetch(response);
    let empty = encode_response(ApiKey::Fetch, version, correlation_id, &body)?;
    let ResponseBody::Fetch(mut response) = body else {
        unreachable!("a Fetch body");
    };
    let mut set = |records: Option<Bytes>| {
        for s in &slices {
            response.responses[s.topic].partitions[s.partition].records = records.clone();
        }
    };
    set(None);
    let null = encode_response(
        ApiKey::Fetch,
        version,
        correlation_id,
        &ResponseBody::Fetch(response),
    )?;
    anyhow::ensure!(
        empty.len() == null.len(),
        "null and empty records encode to different lengths"
    );
    // The records field of a slice: (its bytes when empty, when null).
    let (when_empty, when_null): (&[u8], &[u8]) = if version >= 12 {
        (&[1], &[0])
    } else {
        (&[0, 0, 0, 0], &[0xff, 0xff, 0xff, 0xff])
    };
    let width = when_empty.len();
    let mut chunks = Vec::with_capacity(2 * slices.len() + 1);
    let mut pending = BytesMut::with_capacity(empty.len() + 5 * slices.len());
    pending.put_i32(0); // the frame length, set below
    let mut slices = slices.into_iter();
    let (mut from, mut at) = (4, 4);
    while at < empty.len() {
        if empty[at] == null[at] {
            at += 1;
            continue;
        }
        let slice = slices
            .next()
            .ok_or_else(|| anyhow::anyhow!("more records fields differ than there are slices"))?;
        anyhow::ensure!(
            empty.get(at..at + width) == Some(when_empty)
                && null.get(at..at + width) == Some(when_null),
            "an encoded records field is not where expected"
        );
        pending.put_slice(&empty[from..at]);
        let len = slice.file.len();
        if version >= 12 {
            put_unsigned_varint(&mut pending, len as u64 + 1);
        } else {
            pending.put_i32(i32::try_from(len)?);
        }
        chunks.push(Chunk::Bytes(pending.split().freeze()));
        chunks.push(Chunk::File(slice.file));
        at += width;
        from = at;
    }
    anyhow::ensure!(
        slices.next().is_none(),
        "fewer records fields differ than there are slices"
    );
    pending.put_slice(&empty[from..]);
    chunks.push(Chunk::Bytes(pending.freeze()));
    let body_len: usize = chunks.iter().map(Chunk::len).sum::<usize>() - 4;
    let length = i32::try_from(body_len)
        .map_err(|_| anyhow::anyhow!("response larger than 2 GiB"))?
        .to_be_bytes();
    let Some(Chunk::Bytes(first)) = chunks.first_mut() else {
        unreachable!("the first chunk holds the frame length");
    };
    let mut with_length = BytesMut::from(&first[..]);
    with_length[..4].copy_from_slice(&length);
    *first = with_length.freeze();
    Ok(chunks)
}

fn put_unsigned_varint(out: &mut BytesMut, mut v: u64) {
    while v >= 0x80 {
        out.put_u8((v as u8) | 0x80);
        v >>= 7;
    }
    out.put_u8(v as u8);
}

/// The chunks as one buffer (the copying path's frame; tests compare them).
pub fn flatten(chunks: &[Chunk]) -> io::Result<BytesMut> {
    let mut out = BytesMut::with_capacity(chunks.iter().map(Chunk::len).sum());
    for c in chunks {
        match c {
            Chunk::Bytes(b) => out.put_slice(b),
            Chunk::File(f) => out.put_slice(&f.read()?),
        }
    }
    Ok(out)
}

/// Writes a framed response: bytes with `write`, file ranges with `sendfile` where the writer
/// has a plaintext socket, else read and written. The frame's last byte is written only once
/// every slice is known to have been sent intact; an error leaves the frame incomplete (the
/// caller closes the connection).
pub async fn write_chunks<W: ConnectionWriter>(writer: &mut W, chunks: &[Chunk]) -> io::Result<()> {
    let intact = || {
        chunks.iter().all(|c| match c {
            Chunk::File(f) => f.intact(),
            Chunk::Bytes(_) => true,
        })
    };
    let changed = || io::Error::other("a partition was truncated while its records were sent");
    for (i, chunk) in chunks.iter().enumerate() {
        let last = i + 1 == chunks.len();
        let next_is_file = matches!(chunks.get(i + 1), Some(Chunk::File(_)));
        match chunk {
            Chunk::Bytes(b) => {
                if last && !intact() {
                    return Err(changed());
                }
                write_bytes(writer, b, next_is_file).await?;
            }
            Chunk::File(f) => {
                // The frame's last byte waits for the check below.
                let held = usize::from(last && !f.is_empty());
                send_file(writer, f, (f.len() - held) as u64).await?;
                if held == 1 {
                    if !intact() {
                        return Err(changed());
                    }
                    let mut byte = [0u8; 1];
                    f.read_at(&mut byte, f.len() as u64 - 1)?;
                    writer.write_all(&byte).await?;
                }
            }
        }
    }
    Ok(())
}

/// Writes `b`; `more`: a file range follows, so a plaintext socket holds these bytes back to
/// go out with it (`MSG_MORE`) rather than as a small packet of their own.
async fn write_bytes<W: ConnectionWriter>(writer: &mut W, b: &[u8], more: bool) -> io::Result<()> {
    #[cfg(target_os = "linux")]
    if more {
        if let Some(socket) = writer.sendfile_socket() {
            let mut sent = 0;
            while sent < b.len() {
                socket.writable().await?;
                let result = socket.try_io(tokio::io::Interest::WRITABLE, || {
                    rustix::net::send(socket, &b[sent..], rustix::net::SendFlags::MORE)
                        .map_err(io::Error::from)
                });
                match result {
                    Ok(n) => sent += n,
                    Err(e) if retry(&e) => {}
                    Err(e) => return Err(e),
                }
            }
            return Ok(());
        }
    }
    let _ = more;
    writer.write_all(b).await
}

fn retry(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
    )
}

/// Sends the first `len` bytes of `f`.
async fn send_file<W: ConnectionWriter>(writer: &mut W, f: &FileSlice, len: u64) -> io::Result<()> {
    #[cfg(target_os = "linux")]
    if let Some(socket) = writer.sendfile_socket() {
        let mut position = f.position();
        let end = f.position() + len;
        while position < end {
            socket.writable().await?;
            let result = socket.try_io(tokio::io::Interest::WRITABLE, || {
                let count = (end - position).min(SENDFILE_CALL_BYTES_MAX) as usize;
                rustix::fs::sendfile(socket, f.file(), Some(&mut position), count)
                    .map_err(io::Error::from)
            });
            match result {
                Ok(0) => {
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "a segment file ended before its fetched range (truncated)",
                    ))
                }
                Ok(_) => {}
                Err(e) if retry(&e) => {}
                Err(e) => return Err(e),
            }
        }
        return Ok(());
    }
    // Copying: in pieces, so a large range does not need a buffer of its size.
    let mut buf = vec![0u8; (len.min(COPY_PIECE_BYTES)) as usize];
    let mut from = 0u64;
    while from < len {
        let n = (len - from).min(COPY_PIECE_BYTES) as usize;
        f.read_at(&mut buf[..n], from)?;
        writer.write_all(&buf[..n]).await?;
        from += n as u64;
    }
    Ok(())
}

/// Most bytes one `sendfile` call is asked for (Linux sends at most 0x7ffff000 per call).
#[cfg(target_os = "linux")]
const SENDFILE_CALL_BYTES_MAX: u64 = 0x7fff_f000;

/// Piece size when a file range is read and written instead.
const COPY_PIECE_BYTES: u64 = 256 * 1024;

#[cfg(test)]
mod tests {
    use josefine_log::testkit::BatchBuilder;
    use josefine_log::{LogConfig, PartitionLog};
    use tokio::io::AsyncReadExt;

    use super::*;

    const NOW: i64 = 1_700_000_000_000;

    fn log(dir: &std::path::Path) -> PartitionLog {
        let log = PartitionLog::open(dir, [3; 16], LogConfig::default(), NOW).unwrap();
        for _ in 0..8 {
            let b = BatchBuilder::new(NOW).sized_records(5, 3000).build();
            log.append(&b, 0, NOW).unwrap();
        }
        log
    }

    /// What `write_chunks` writes to a writer without a plaintext socket (the copying
    /// fallback: TLS, other systems), read back through the other end of a pipe.
    async fn written(chunks: Vec<Chunk>) -> (io::Result<()>, Vec<u8>) {
        let (client, server) = tokio::io::duplex(1 << 20);
        let (_server_read, mut server_write) = tokio::io::split(server);
        let result = write_chunks(&mut server_write, &chunks).await;
        drop(server_write);
        drop(_server_read);
        let mut out = Vec::new();
        let mut client = client;
        client.read_to_end(&mut out).await.unwrap();
        (result, out)
    }

    /// The copying fallback writes the frame `flatten` gives (bytes, then each file range).
    #[tokio::test]
    async fn the_copying_fallback_writes_the_flattened_frame() {
        let dir = tempfile::tempdir().unwrap();
        let log = log(dir.path());
        let slice = log.read_file(7, 1 << 20, i64::MAX).unwrap().slice.unwrap();
        assert!(slice.len() > 30_000);
        let chunks = vec![
            Chunk::Bytes(Bytes::from_static(b"head")),
            Chunk::File(slice.clone()),
            Chunk::Bytes(Bytes::from_static(b"middle")),
            Chunk::File(slice),
        ];
        let expected = flatten(&chunks).unwrap();
        let (result, out) = written(chunks).await;
        result.unwrap();
        assert_eq!(out, expected.to_vec());
    }

    /// A truncation after the slices were located (here past the slice: its bytes are still
    /// in the file, only the truncation count says they may not be): the frame's last byte is
    /// never written.
    #[tokio::test]
    async fn a_truncated_partition_leaves_the_frame_incomplete() {
        let dir = tempfile::tempdir().unwrap();
        let log = log(dir.path());
        // One batch (offsets 5..=9).
        let slice = log.read_file(7, 1, i64::MAX).unwrap().slice.unwrap();
        let len = slice.len();
        for tail in [None, Some(Bytes::from_static(b"tail"))] {
            let mut chunks = vec![
                Chunk::Bytes(Bytes::from_static(b"head")),
                Chunk::File(slice.clone()),
            ];
            chunks.extend(tail.clone().map(Chunk::Bytes));
            let (result, out) = written(chunks.clone()).await;
            result.unwrap();
            assert_eq!(out.len(), 4 + len + tail.as_ref().map_or(0, |t| t.len()));
        }
        log.truncate_to(30).unwrap();
        for tail in [None, Some(Bytes::from_static(b"tail"))] {
            let mut chunks = vec![
                Chunk::Bytes(Bytes::from_static(b"head")),
                Chunk::File(slice.clone()),
            ];
            chunks.extend(tail.map(Chunk::Bytes));
            let total: usize = chunks.iter().map(Chunk::len).sum();
            let (result, out) = written(chunks).await;
            assert!(result.is_err());
            assert!(out.len() < total, "{} of {total} bytes written", out.len());
        }
    }
}

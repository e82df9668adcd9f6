//! The wire encoding of every message: length-prefixed, versioned, big-endian binary.
//!
//! Pure functions over bytes; no I/O. Decoding treats input as hostile: every length is
//! checked against the bytes actually present before anything is allocated, and frames above
//! [`limits::FRAME_BYTES_MAX`] are refused. The layout is documented in `docs/chain-format.md`.
//!
//! Frame: `u32 length` (of everything after it) | `u8 version` | `u8 kind` | `u64 from` |
//! `u64 to` | body.

use bytes::{Buf, BufMut, Bytes, BytesMut};

use crate::block::{Block, BlockId, BlockKind, NodeId, Snapshot};
use crate::error::ChainError;
use crate::limits;
use crate::message::{Envelope, Message};

/// The only version this build speaks. A peer sending another is refused, not guessed at.
pub const VERSION: u8 = 1;

const KIND_APPEND: u8 = 1;
const KIND_APPEND_REPLY: u8 = 2;
const KIND_VOTE: u8 = 3;
const KIND_VOTE_REPLY: u8 = 4;
const KIND_INSTALL_SNAPSHOT: u8 = 5;
const KIND_TIMEOUT_NOW: u8 = 6;

/// Smallest encoded block (ids, kind, empty payload): bounds how many a count can claim.
const BLOCK_BYTES_MIN: usize = 16 + 16 + 1 + 4;

fn put_id(b: &mut BytesMut, id: BlockId) {
    b.put_u64(id.term);
    b.put_u64(id.height);
}

fn put_bytes(b: &mut BytesMut, data: &[u8]) {
    b.put_u32(data.len() as u32);
    b.put_slice(data);
}

/// Encodes a block (also used by the storage module).
pub fn put_block(b: &mut BytesMut, block: &Block) {
    put_id(b, block.id);
    put_id(b, block.parent);
    b.put_u8(block.kind.to_u8());
    put_bytes(b, &block.payload);
}

fn put_snapshot(b: &mut BytesMut, s: &Snapshot) {
    put_id(b, s.root);
    b.put_u32(s.voters.len() as u32);
    for v in &s.voters {
        b.put_u64(*v);
    }
    put_bytes(b, &s.state);
}

/// Encodes one envelope as a complete frame, length prefix included.
pub fn encode(env: &Envelope) -> Bytes {
    let mut b = BytesMut::with_capacity(64);
    b.put_u32(0); // patched below
    b.put_u8(VERSION);
    let kind = match &env.message {
        Message::Append { .. } => KIND_APPEND,
        Message::AppendReply { .. } => KIND_APPEND_REPLY,
        Message::Vote { .. } => KIND_VOTE,
        Message::VoteReply { .. } => KIND_VOTE_REPLY,
        Message::InstallSnapshot { .. } => KIND_INSTALL_SNAPSHOT,
        Message::TimeoutNow { .. } => KIND_TIMEOUT_NOW,
    };
    b.put_u8(kind);
    b.put_u64(env.from);
    b.put_u64(env.to);
    match &env.message {
        Message::Append {
            term,
            leader,
            prev,
            blocks,
            leader_commit,
        } => {
            b.put_u64(*term);
            b.put_u64(*leader);
            put_id(&mut b, *prev);
            put_id(&mut b, *leader_commit);
            b.put_u32(blocks.len() as u32);
            for blk in blocks {
                put_block(&mut b, blk);
            }
        }
        Message::AppendReply {
            term,
            success,
            matched,
            head,
            commit,
        } => {
            b.put_u64(*term);
            b.put_u8(u8::from(*success));
            put_id(&mut b, *matched);
            put_id(&mut b, *head);
            put_id(&mut b, *commit);
        }
        Message::Vote {
            term,
            candidate,
            head,
            head_term,
            pre,
            transfer,
        } => {
            b.put_u64(*term);
            b.put_u64(*candidate);
            put_id(&mut b, *head);
            b.put_u64(*head_term);
            b.put_u8(u8::from(*pre) | (u8::from(*transfer) << 1));
        }
        Message::VoteReply { term, granted, pre } => {
            b.put_u64(*term);
            b.put_u8(u8::from(*granted) | (u8::from(*pre) << 1));
        }
        Message::InstallSnapshot {
            term,
            leader,
            snapshot,
        } => {
            b.put_u64(*term);
            b.put_u64(*leader);
            put_snapshot(&mut b, snapshot);
        }
        Message::TimeoutNow { term, leader } => {
            b.put_u64(*term);
            b.put_u64(*leader);
        }
    }
    let len = (b.len() - 4) as u32;
    b[0..4].copy_from_slice(&len.to_be_bytes());
    b.freeze()
}

/// A bounds-checked reader over untrusted bytes. Payloads are zero-copy slices of the input.
pub struct Reader {
    buf: Bytes,
}

impl Reader {
    pub fn new(buf: Bytes) -> Reader {
        Reader { buf }
    }
    pub fn remaining(&self) -> usize {
        self.buf.len()
    }
    fn need(&self, n: usize) -> Result<(), ChainError> {
        if self.buf.len() < n {
            Err(ChainError::Malformed("truncated"))
        } else {
            Ok(())
        }
    }
    pub fn u8(&mut self) -> Result<u8, ChainError> {
        self.need(1)?;
        Ok(self.buf.get_u8())
    }
    pub fn u32(&mut self) -> Result<u32, ChainError> {
        self.need(4)?;
        Ok(self.buf.get_u32())
    }
    pub fn u64(&mut self) -> Result<u64, ChainError> {
        self.need(8)?;
        Ok(self.buf.get_u64())
    }
    pub fn id(&mut self) -> Result<BlockId, ChainError> {
        let term = self.u64()?;
        let height = self.u64()?;
        Ok(BlockId::new(term, height))
    }
    pub fn bytes(&mut self) -> Result<Bytes, ChainError> {
        let len = self.u32()? as usize;
        self.need(len)?;
        Ok(self.buf.split_to(len))
    }
    pub fn bool(&mut self) -> Result<bool, ChainError> {
        match self.u8()? {
            0 => Ok(false),
            1 => Ok(true),
            _ => Err(ChainError::Malformed("bad bool")),
        }
    }
    pub fn block(&mut self) -> Result<Block, ChainError> {
        let id = self.id()?;
        let parent = self.id()?;
        let kind = BlockKind::from_u8(self.u8()?).ok_or(ChainError::Malformed("block kind"))?;
        let payload = self.bytes()?;
        if payload.len() > limits::PAYLOAD_BYTES_MAX {
            return Err(ChainError::Malformed("payload too large"));
        }
        Ok(Block {
            id,
            parent,
            kind,
            payload,
        })
    }
    fn snapshot(&mut self) -> Result<Snapshot, ChainError> {
        let root = self.id()?;
        let n = self.u32()? as usize;
        if n > limits::VOTERS_MAX || n * 8 > self.remaining() {
            return Err(ChainError::Malformed("voter count"));
        }
        let mut voters = Vec::with_capacity(n);
        for _ in 0..n {
            voters.push(self.u64()?);
        }
        let state = self.bytes()?;
        Ok(Snapshot {
            root,
            voters,
            state,
        })
    }
}

/// Length of the frame at the start of `buf`, once its 4-byte prefix is present: lets a
/// transport wait for exactly the bytes it needs and refuse oversized frames before reading.
pub fn frame_len(buf: &[u8]) -> Result<Option<usize>, ChainError> {
    if buf.len() < 4 {
        return Ok(None);
    }
    let len = u32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]) as usize;
    if len > limits::FRAME_BYTES_MAX {
        return Err(ChainError::FrameTooLarge {
            len,
            max: limits::FRAME_BYTES_MAX,
        });
    }
    Ok(Some(4 + len))
}

/// Decodes one complete frame (length prefix included) that must fill `frame` exactly.
pub fn decode(frame: Bytes) -> Result<Envelope, ChainError> {
    let total = match frame_len(&frame)? {
        Some(t) => t,
        None => {
            return Err(ChainError::Incomplete {
                needed: 4 - frame.len(),
            })
        }
    };
    if frame.len() < total {
        return Err(ChainError::Incomplete {
            needed: total - frame.len(),
        });
    }
    if frame.len() > total {
        return Err(ChainError::Malformed("trailing bytes after frame"));
    }
    let mut r = Reader::new(frame.slice(4..));
    let version = r.u8()?;
    if version != VERSION {
        return Err(ChainError::UnsupportedVersion(version));
    }
    let kind = r.u8()?;
    let from: NodeId = r.u64()?;
    let to: NodeId = r.u64()?;
    let message = match kind {
        KIND_APPEND => {
            let term = r.u64()?;
            let leader = r.u64()?;
            let prev = r.id()?;
            let leader_commit = r.id()?;
            let n = r.u32()? as usize;
            // Never trust a count: it cannot exceed what the remaining bytes could hold.
            if n > r.remaining() / BLOCK_BYTES_MIN {
                return Err(ChainError::Malformed("block count exceeds frame"));
            }
            let mut blocks = Vec::with_capacity(n);
            for _ in 0..n {
                blocks.push(r.block()?);
            }
            Message::Append {
                term,
                leader,
                prev,
                blocks,
                leader_commit,
            }
        }
        KIND_APPEND_REPLY => Message::AppendReply {
            term: r.u64()?,
            success: r.bool()?,
            matched: r.id()?,
            head: r.id()?,
            commit: r.id()?,
        },
        KIND_VOTE => {
            let term = r.u64()?;
            let candidate = r.u64()?;
            let head = r.id()?;
            let head_term = r.u64()?;
            let flags = r.u8()?;
            if flags > 3 {
                return Err(ChainError::Malformed("vote flags"));
            }
            Message::Vote {
                term,
                candidate,
                head,
                head_term,
                pre: flags & 1 != 0,
                transfer: flags & 2 != 0,
            }
        }
        KIND_VOTE_REPLY => {
            let term = r.u64()?;
            let flags = r.u8()?;
            if flags > 3 {
                return Err(ChainError::Malformed("vote reply flags"));
            }
            Message::VoteReply {
                term,
                granted: flags & 1 != 0,
                pre: flags & 2 != 0,
            }
        }
        KIND_INSTALL_SNAPSHOT => Message::InstallSnapshot {
            term: r.u64()?,
            leader: r.u64()?,
            snapshot: r.snapshot()?,
        },
        KIND_TIMEOUT_NOW => Message::TimeoutNow {
            term: r.u64()?,
            leader: r.u64()?,
        },
        _ => return Err(ChainError::Malformed("unknown message kind")),
    };
    if r.remaining() != 0 {
        return Err(ChainError::Malformed("trailing bytes in body"));
    }
    Ok(Envelope { from, to, message })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::block::GENESIS;
    use crate::rng::SplitMix64;

    fn samples() -> Vec<Envelope> {
        let blk = |t, h, p| Block {
            id: BlockId::new(t, h),
            parent: p,
            kind: BlockKind::Data,
            payload: Bytes::from(vec![h as u8; h as usize]),
        };
        let msgs = vec![
            Message::Append {
                term: 3,
                leader: 1,
                prev: GENESIS,
                blocks: vec![blk(2, 1, GENESIS), blk(3, 2, BlockId::new(2, 1))],
                leader_commit: BlockId::new(2, 1),
            },
            Message::Append {
                term: 3,
                leader: 1,
                prev: BlockId::new(3, 9),
                blocks: vec![],
                leader_commit: BlockId::new(3, 8),
            },
            Message::AppendReply {
                term: 4,
                success: true,
                matched: BlockId::new(3, 2),
                head: BlockId::new(3, 5),
                commit: BlockId::new(2, 1),
            },
            Message::Vote {
                term: 5,
                candidate: 2,
                head: BlockId::new(4, 10),
                head_term: 4,
                pre: true,
                transfer: false,
            },
            Message::Vote {
                term: 5,
                candidate: 2,
                head: BlockId::new(4, 10),
                head_term: 4,
                pre: false,
                transfer: true,
            },
            Message::VoteReply {
                term: 5,
                granted: true,
                pre: false,
            },
            Message::InstallSnapshot {
                term: 6,
                leader: 3,
                snapshot: Snapshot {
                    root: BlockId::new(5, 100),
                    voters: vec![1, 2, 3],
                    state: Bytes::from_static(b"state"),
                },
            },
            Message::TimeoutNow { term: 7, leader: 1 },
        ];
        msgs.into_iter()
            .enumerate()
            .map(|(i, message)| Envelope {
                from: i as u64,
                to: 99,
                message,
            })
            .collect()
    }

    #[test]
    fn every_message_round_trips() {
        for env in samples() {
            let bytes = encode(&env);
            assert_eq!(frame_len(&bytes).unwrap(), Some(bytes.len()));
            assert_eq!(decode(bytes).unwrap(), env);
        }
    }

    #[test]
    fn truncation_and_bad_version_are_errors_not_panics() {
        for env in samples() {
            let bytes = encode(&env);
            for cut in 0..bytes.len() {
                assert!(decode(bytes.slice(..cut)).is_err(), "cut at {cut}");
            }
            let mut v = bytes.to_vec();
            v[4] = 9;
            assert!(matches!(
                decode(Bytes::from(v)),
                Err(ChainError::UnsupportedVersion(9))
            ));
        }
    }

    #[test]
    fn random_garbage_never_panics_and_huge_counts_are_refused() {
        let mut rng = SplitMix64::new(42);
        for _ in 0..20_000 {
            let len = rng.range(0, 200) as usize;
            let mut v: Vec<u8> = (0..len).map(|_| rng.next_u64() as u8).collect();
            if v.len() >= 6 {
                let body = (v.len() - 4) as u32;
                v[0..4].copy_from_slice(&body.to_be_bytes());
                v[4] = VERSION;
                v[5] = (rng.range(1, 7)) as u8;
            }
            let _ = decode(Bytes::from(v));
        }
        // An Append claiming 2^32-1 blocks in a tiny frame.
        let env = &samples()[1];
        let mut v = encode(env).to_vec();
        let count_at = v.len() - 4;
        v[count_at..].copy_from_slice(&u32::MAX.to_be_bytes());
        assert!(matches!(
            decode(Bytes::from(v)),
            Err(ChainError::Malformed("block count exceeds frame"))
        ));
        let big = ((limits::FRAME_BYTES_MAX + 1) as u32).to_be_bytes();
        assert!(matches!(
            frame_len(&big),
            Err(ChainError::FrameTooLarge { .. })
        ));
    }
}

//! The `chain_frame` and `chain_store` targets: a chain peer's frame, and a damaged chain
//! directory opened by consensus storage recovery.

use std::fs;
use std::path::Path;

use bytes::{BufMut, Bytes, BytesMut};
use josefine_chain::codec::Reader;

/// Decodes one chain peer frame. Invariants: no panic; a decoded envelope re-encodes to exactly
/// the input bytes (one encoding per message, so nothing a peer sent is silently dropped).
pub fn chain_frame(data: &[u8]) -> bool {
    use josefine_chain::codec;
    let _ = codec::frame_len(data);
    let Ok(env) = codec::decode(Bytes::copy_from_slice(data)) else {
        return false;
    };
    assert_eq!(&codec::encode(&env)[..], data, "chain frame round trip");
    true
}

pub(super) fn frame_seeds() -> Vec<Vec<u8>> {
    use josefine_chain::{Block, BlockId, BlockKind, Envelope, Message, Snapshot};
    let id = BlockId::new;
    let block = |h: u64, kind, payload: &'static [u8]| Block {
        id: id(2, h),
        parent: id(2, h - 1),
        kind,
        payload: Bytes::from_static(payload),
    };
    let messages = vec![
        Message::Append {
            term: 2,
            leader: 1,
            prev: id(2, 4),
            blocks: vec![
                block(5, BlockKind::Noop, b""),
                block(6, BlockKind::Data, b"cmd"),
            ],
            leader_commit: id(2, 4),
        },
        Message::Append {
            term: 2,
            leader: 1,
            prev: id(2, 6),
            blocks: vec![],
            leader_commit: id(2, 6),
        },
        Message::AppendReply {
            term: 2,
            success: true,
            matched: id(2, 6),
            head: id(2, 6),
            commit: id(2, 4),
        },
        Message::Vote {
            term: 3,
            candidate: 2,
            head: id(2, 6),
            head_term: 2,
            pre: true,
            transfer: false,
        },
        Message::VoteReply {
            term: 3,
            granted: true,
            pre: false,
        },
        Message::InstallSnapshot {
            term: 3,
            leader: 2,
            snapshot: Snapshot {
                root: id(2, 6),
                voters: vec![1, 2, 3],
                state: Bytes::from_static(b"state"),
            },
        },
        Message::TimeoutNow { term: 3, leader: 1 },
    ];
    messages
        .into_iter()
        .map(|message| {
            codec_encode(&Envelope {
                from: 1,
                to: 2,
                message,
            })
        })
        .collect()
}

fn codec_encode(env: &josefine_chain::Envelope) -> Vec<u8> {
    josefine_chain::codec::encode(env).to_vec()
}

/// Chain storage record kinds and snapshot magic (`josefine_chain::storage`'s on-disk format:
/// `len u32 | crc32c u32 | kind u8, body`; snapshots `JCS1 | crc32c u32 | body`).
const CHAIN_REC_BLOCK: u8 = 1;
const CHAIN_REC_HARD_STATE: u8 = 2;
const CHAIN_REC_HEAD: u8 = 3;
const CHAIN_SNAPSHOT_MAGIC: &[u8; 4] = b"JCS1";

/// Writes a chain directory from an input: chunks of `selector u8 | len u16 | bytes`. Selector
/// `% 4` < 3 appends to segment `log-<n>.chain` (n = selector % 3): with bit 7 clear the bytes
/// are one record (`kind, body`) framed with a correct length and CRC, so damage reaches the
/// record parser; with bit 7 set they are appended raw (torn or corrupt tails). Selector `% 4`
/// = 3 writes a snapshot file (CRC fixed when bit 7 is clear) named after its root.
fn write_chain_dir(dir: &Path, data: &[u8]) -> bool {
    let _ = fs::remove_dir_all(dir);
    fs::create_dir_all(dir).expect("scratch directory");
    let mut segments: [Vec<u8>; 3] = Default::default();
    let mut blocks = std::collections::BTreeMap::new();
    let mut conflicting_ids = false;
    let mut rest = data;
    while let Some((&selector, after)) = rest.split_first() {
        let (len, after) = match after.split_at_checked(2) {
            Some((l, a)) => (u16::from_be_bytes([l[0], l[1]]) as usize, a),
            None => (after.len(), &[][..]),
        };
        let (bytes, after) = after.split_at(len.min(after.len()));
        let raw = selector & 0x80 != 0;
        match selector % 4 {
            3 => {
                let mut snap = CHAIN_SNAPSHOT_MAGIC.to_vec();
                let crc = if raw { 0 } else { crc32c::crc32c(bytes) };
                snap.extend_from_slice(&crc.to_be_bytes());
                snap.extend_from_slice(bytes);
                let id = |at: usize| {
                    bytes
                        .get(at..at + 8)
                        .map_or(0, |b| u64::from_be_bytes(b.try_into().expect("8 bytes")))
                };
                let name = format!("snapshot-{:020}-{:020}.snap", id(8), id(0));
                fs::write(dir.join(name), snap).expect("scratch write");
            }
            seg => {
                let out = &mut segments[seg as usize];
                if raw || bytes.is_empty() {
                    out.extend_from_slice(bytes);
                } else {
                    out.extend_from_slice(&(bytes.len() as u32).to_be_bytes());
                    out.extend_from_slice(&crc32c::crc32c(bytes).to_be_bytes());
                    out.extend_from_slice(bytes);
                    if bytes[0] == CHAIN_REC_BLOCK {
                        let mut r = Reader::new(Bytes::copy_from_slice(&bytes[1..]));
                        if let Ok(b) = r.block() {
                            if let Some(other) = blocks.insert(b.id, b.clone()) {
                                conflicting_ids |= other != b;
                            }
                        }
                    }
                }
            }
        }
        rest = after;
    }
    for (seq, bytes) in segments.iter().enumerate() {
        if !bytes.is_empty() {
            fs::write(dir.join(format!("log-{seq:020}.chain")), bytes).expect("scratch write");
        }
    }
    conflicting_ids
}

/// Opens a damaged chain directory as a restarting server does. Invariants: no panic; what is
/// recovered is a chain (every block links to its parent, which is the root or another
/// recovered block; the head is the root or a recovered block); recovery is idempotent (a
/// second open, after the first cut any torn tail, recovers the same state).
pub fn chain_store(dir: &Path, data: &[u8]) -> bool {
    use josefine_chain::storage::ChainStore;
    use josefine_chain::GENESIS;
    // Two different blocks with one id (which no server ever writes: an id names one block)
    // make recovery keep whichever the segment order says, and deleting a segment changes that
    // order's outcome; block equality across reopenings is only checked without them.
    let conflicting_ids = write_chain_dir(dir, data);
    let Ok((store, first)) = ChainStore::open_with_segment_bytes(dir, 4096) else {
        return false;
    };
    drop(store);
    let root = first.snapshot.as_ref().map_or(GENESIS, |s| s.root);
    let ids: std::collections::BTreeSet<_> = first.blocks.iter().map(|b| b.id).collect();
    for b in &first.blocks {
        assert!(
            b.links_to_parent(),
            "recovered block {:?} does not link",
            b.id
        );
        assert!(
            b.parent == root || ids.contains(&b.parent),
            "recovered block {:?} is not connected to the root {root:?}",
            b.id
        );
    }
    assert!(
        first.head == root || ids.contains(&first.head),
        "head {:?} missing",
        first.head
    );
    let (_, second) = ChainStore::open_with_segment_bytes(dir, 4096).expect("second open");
    let sorted = |r: &josefine_chain::node::Recovered| {
        let mut b = r.blocks.clone();
        b.sort_by_key(|b| b.id);
        b
    };
    // Term and vote survive a reopening (fuzz/regressions/chain_store/
    // hard-state-in-deleted-segment: recovery used to delete the only copy, fixed in 1de3519).
    assert_eq!(
        first.hard_state, second.hard_state,
        "recovery is idempotent"
    );
    assert_eq!(first.snapshot, second.snapshot, "recovery is idempotent");
    assert!(
        conflicting_ids || first.head == second.head,
        "recovery is idempotent"
    );
    assert!(
        conflicting_ids || sorted(&first) == sorted(&second),
        "recovery is idempotent"
    );
    true
}

pub(super) fn store_seeds() -> Vec<Vec<u8>> {
    use josefine_chain::{Block, BlockId, BlockKind};
    let chunk = |selector: u8, bytes: &[u8]| {
        let mut c = vec![selector];
        c.extend_from_slice(&(bytes.len() as u16).to_be_bytes());
        c.extend_from_slice(bytes);
        c
    };
    let block = |height: u64, kind| {
        let b = Block {
            id: BlockId::new(1, height),
            parent: BlockId::new(if height == 1 { 0 } else { 1 }, height - 1),
            kind,
            payload: Bytes::from(format!("cmd-{height}")),
        };
        let mut rec = BytesMut::new();
        rec.put_u8(CHAIN_REC_BLOCK);
        josefine_chain::codec::put_block(&mut rec, &b);
        rec.to_vec()
    };
    let mut hard_state = vec![CHAIN_REC_HARD_STATE];
    hard_state.extend_from_slice(&1u64.to_be_bytes());
    hard_state.push(1);
    hard_state.extend_from_slice(&2u64.to_be_bytes());
    let head = |height: u64| {
        let mut h = vec![CHAIN_REC_HEAD];
        h.extend_from_slice(&1u64.to_be_bytes());
        h.extend_from_slice(&height.to_be_bytes());
        h
    };
    let mut snapshot = Vec::new();
    snapshot.extend_from_slice(&1u64.to_be_bytes()); // root term
    snapshot.extend_from_slice(&2u64.to_be_bytes()); // root height
    snapshot.extend_from_slice(&1u32.to_be_bytes());
    snapshot.extend_from_slice(&1u64.to_be_bytes()); // voter 1
    snapshot.extend_from_slice(&5u32.to_be_bytes());
    snapshot.extend_from_slice(b"state");
    let mut one_segment = Vec::new();
    for part in [
        chunk(0, &hard_state),
        chunk(0, &block(1, BlockKind::Noop)),
        chunk(0, &block(2, BlockKind::Data)),
        chunk(0, &block(3, BlockKind::Data)),
        chunk(0, &head(3)),
    ] {
        one_segment.extend_from_slice(&part);
    }
    let mut torn = one_segment.clone();
    torn.extend_from_slice(&chunk(0x80, &[0, 0, 0, 40, 1, 2, 3]));
    let mut two_segments = one_segment.clone();
    two_segments.extend_from_slice(&chunk(1, &block(4, BlockKind::Data)));
    two_segments.extend_from_slice(&chunk(1, &head(4)));
    let mut with_snapshot = chunk(3, &snapshot);
    with_snapshot.extend_from_slice(&one_segment);
    vec![Vec::new(), one_segment, torn, two_segments, with_snapshot]
}

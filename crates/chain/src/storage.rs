//! The on-disk chain store: append-only segment files plus snapshot files (std::fs, sync).
//!
//! It owns the bytes on disk and nothing else: what to write comes from the core's [`Ready`].
//! Blocks are never rewritten. Term/vote, blocks and head are records appended to one log and
//! fsynced once before the driver sends the Ready's messages; recovery scans records in order
//! and stops at the first torn or corrupt one in the last segment, so a durable head record
//! implies every earlier record (its blocks included) is durable too. Space is reclaimed only
//! by deleting whole files: a segment goes once every block in it is dead or below the
//! snapshot root. Each new segment starts with a copy of the current term/vote and head, and
//! before any file is deleted they are restated into the active segment and fsynced, so a
//! deleted file never held the only durable copy of them (a crash right after a roll loses the
//! unsynced restatement). The format is in `docs/chain-format.md`.
//!
//! It must never be called from the pure core, and never on an async executor thread.

use std::collections::{BTreeMap, HashMap};
use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use bytes::{BufMut, Bytes, BytesMut};

use crate::block::{Block, BlockId, Snapshot, GENESIS};
use crate::codec::{put_block, Reader};
use crate::error::ChainError;
use crate::limits;
use crate::node::{HardState, Ready, Recovered};

const REC_BLOCK: u8 = 1;
const REC_HARD_STATE: u8 = 2;
const REC_HEAD: u8 = 3;
/// `u32 len | u32 crc32c`, then `len` bytes of type + body.
const REC_HEADER_BYTES: usize = 8;
const SNAPSHOT_MAGIC: &[u8; 4] = b"JCS1";

struct Segment {
    path: PathBuf,
    /// Blocks in this file still needed (neither dead nor below the root).
    live: usize,
}

/// An open chain directory.
pub struct ChainStore {
    dir: PathBuf,
    segments: BTreeMap<u64, Segment>,
    active: File,
    active_seq: u64,
    active_bytes: u64,
    segment_bytes_max: u64,
    /// Which segment holds each live block.
    block_segment: HashMap<BlockId, u64>,
    hard_state: HardState,
    head: BlockId,
    snapshot_root: BlockId,
}

fn segment_name(seq: u64) -> String {
    format!("log-{seq:020}.chain")
}

fn snapshot_name(root: BlockId) -> String {
    format!("snapshot-{:020}-{:020}.snap", root.height, root.term)
}

fn sync_dir(dir: &Path) -> Result<(), ChainError> {
    File::open(dir)?.sync_all()?;
    Ok(())
}

fn encode_record(kind: u8, body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(REC_HEADER_BYTES + 1 + body.len());
    let mut payload = Vec::with_capacity(1 + body.len());
    payload.push(kind);
    payload.extend_from_slice(body);
    out.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    out.extend_from_slice(&crc32c::crc32c(&payload).to_be_bytes());
    out.extend_from_slice(&payload);
    out
}

fn hard_state_body(hs: HardState) -> Vec<u8> {
    let mut b = Vec::with_capacity(17);
    b.extend_from_slice(&hs.term.to_be_bytes());
    match hs.voted_for {
        Some(v) => {
            b.push(1);
            b.extend_from_slice(&v.to_be_bytes());
        }
        None => {
            b.push(0);
            b.extend_from_slice(&0u64.to_be_bytes());
        }
    }
    b
}

fn id_body(id: BlockId) -> Vec<u8> {
    let mut b = Vec::with_capacity(16);
    b.extend_from_slice(&id.term.to_be_bytes());
    b.extend_from_slice(&id.height.to_be_bytes());
    b
}

enum Record {
    Block(Block),
    HardState(HardState),
    Head(BlockId),
}

/// Parses the records of one segment. Returns them and the byte length of the valid prefix.
fn scan(data: &[u8]) -> (Vec<Record>, usize) {
    let mut out = Vec::new();
    let mut pos = 0;
    while data.len() - pos >= REC_HEADER_BYTES {
        let len = u32::from_be_bytes(data[pos..pos + 4].try_into().expect("4")) as usize;
        let crc = u32::from_be_bytes(data[pos + 4..pos + 8].try_into().expect("4"));
        if len == 0 || len > limits::RECORD_BYTES_MAX || data.len() - pos - REC_HEADER_BYTES < len {
            break;
        }
        let payload = &data[pos + REC_HEADER_BYTES..pos + REC_HEADER_BYTES + len];
        if crc32c::crc32c(payload) != crc {
            break;
        }
        let Some(rec) = parse_record(payload) else {
            break;
        };
        out.push(rec);
        pos += REC_HEADER_BYTES + len;
    }
    (out, pos)
}

fn parse_record(payload: &[u8]) -> Option<Record> {
    let mut r = Reader::new(Bytes::copy_from_slice(&payload[1..]));
    let rec = match payload[0] {
        REC_BLOCK => Record::Block(r.block().ok()?),
        REC_HARD_STATE => {
            let term = r.u64().ok()?;
            let flag = r.u8().ok()?;
            let v = r.u64().ok()?;
            let voted_for = match flag {
                0 => None,
                1 => Some(v),
                _ => return None,
            };
            Record::HardState(HardState { term, voted_for })
        }
        REC_HEAD => Record::Head(r.id().ok()?),
        _ => return None,
    };
    if r.remaining() != 0 {
        return None;
    }
    Some(rec)
}

fn encode_snapshot(s: &Snapshot) -> Vec<u8> {
    let mut b = BytesMut::new();
    b.put_u64(s.root.term);
    b.put_u64(s.root.height);
    b.put_u32(s.voters.len() as u32);
    for v in &s.voters {
        b.put_u64(*v);
    }
    b.put_u32(s.state.len() as u32);
    b.put_slice(&s.state);
    let mut out = Vec::with_capacity(b.len() + 8);
    out.extend_from_slice(SNAPSHOT_MAGIC);
    out.extend_from_slice(&crc32c::crc32c(&b).to_be_bytes());
    out.extend_from_slice(&b);
    out
}

fn decode_snapshot(data: Vec<u8>) -> Option<Snapshot> {
    if data.len() < 8 || &data[0..4] != SNAPSHOT_MAGIC {
        return None;
    }
    let crc = u32::from_be_bytes(data[4..8].try_into().expect("4"));
    if crc32c::crc32c(&data[8..]) != crc {
        return None;
    }
    let mut r = Reader::new(Bytes::from(data).slice(8..));
    let root = r.id().ok()?;
    let n = r.u32().ok()? as usize;
    if n > limits::VOTERS_MAX || n * 8 > r.remaining() {
        return None;
    }
    let mut voters = Vec::with_capacity(n);
    for _ in 0..n {
        voters.push(r.u64().ok()?);
    }
    let state = r.bytes().ok()?;
    (r.remaining() == 0).then_some(Snapshot {
        root,
        voters,
        state,
    })
}

impl ChainStore {
    /// Opens (or creates) a chain directory and recovers what it holds. A torn tail of the
    /// last segment is cut off; blocks not connected to the snapshot root are dropped.
    pub fn open(dir: &Path) -> Result<(ChainStore, Recovered), ChainError> {
        ChainStore::open_with_segment_bytes(dir, limits::SEGMENT_BYTES_MAX)
    }

    pub fn open_with_segment_bytes(
        dir: &Path,
        segment_bytes_max: u64,
    ) -> Result<(ChainStore, Recovered), ChainError> {
        fs::create_dir_all(dir)?;
        let mut seg_seqs = Vec::new();
        let mut snaps = Vec::new();
        for entry in fs::read_dir(dir)? {
            let entry = entry?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if let Some(seq) = name
                .strip_prefix("log-")
                .and_then(|s| s.strip_suffix(".chain"))
                .and_then(|s| s.parse::<u64>().ok())
            {
                seg_seqs.push(seq);
            } else if name.ends_with(".snap") {
                snaps.push(entry.path());
            } else if name.ends_with(".tmp") {
                // A snapshot whose rename never happened: never became durable.
                fs::remove_file(entry.path())?;
            }
        }
        seg_seqs.sort_unstable();
        snaps.sort();
        // Newest valid snapshot wins (names sort by height).
        let mut snapshot = None;
        for p in snaps.iter().rev() {
            let mut data = Vec::new();
            File::open(p)?.read_to_end(&mut data)?;
            if let Some(s) = decode_snapshot(data) {
                snapshot = Some(s);
                break;
            }
        }
        let root = snapshot.as_ref().map_or(GENESIS, |s| s.root);

        let mut hard_state = HardState::default();
        let mut head = None;
        let mut blocks: BTreeMap<BlockId, (Block, u64)> = BTreeMap::new();
        let last = seg_seqs.last().copied();
        for &seq in &seg_seqs {
            let path = dir.join(segment_name(seq));
            let data = fs::read(&path)?;
            let (records, valid) = scan(&data);
            if valid < data.len() {
                if Some(seq) != last {
                    return Err(ChainError::Corrupt(format!(
                        "{} is damaged at byte {valid} but is not the last segment",
                        path.display()
                    )));
                }
                // Torn tail: cut it so new records follow the valid prefix.
                let f = OpenOptions::new().write(true).open(&path)?;
                f.set_len(valid as u64)?;
                f.sync_all()?;
            }
            for rec in records {
                match rec {
                    Record::Block(b) => {
                        blocks.insert(b.id, (b, seq));
                    }
                    Record::HardState(hs) => hard_state = hs,
                    Record::Head(h) => head = Some(h),
                }
            }
        }
        // Keep blocks connected to the root; count them per segment.
        let mut kept: BTreeMap<BlockId, Block> = BTreeMap::new();
        let mut block_segment = HashMap::new();
        let mut live: BTreeMap<u64, usize> = BTreeMap::new();
        for (id, (b, seq)) in blocks {
            let connected = id.height > root.height
                && b.links_to_parent()
                && (b.parent == root || kept.contains_key(&b.parent));
            if connected {
                block_segment.insert(id, seq);
                *live.entry(seq).or_default() += 1;
                kept.insert(id, b);
            }
        }
        let head = match head {
            Some(h) if h.height >= root.height => h,
            _ => root,
        };
        if head != root && !kept.contains_key(&head) {
            return Err(ChainError::HeadMissing(head));
        }
        let mut segments = BTreeMap::new();
        for &seq in &seg_seqs {
            segments.insert(
                seq,
                Segment {
                    path: dir.join(segment_name(seq)),
                    live: live.get(&seq).copied().unwrap_or(0),
                },
            );
        }
        let active_seq = last.unwrap_or(0);
        let active_path = dir.join(segment_name(active_seq));
        let active = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&active_path)?;
        let active_bytes = active.metadata()?.len();
        segments.entry(active_seq).or_insert(Segment {
            path: active_path,
            live: 0,
        });
        if last.is_none() {
            sync_dir(dir)?;
        }
        let mut store = ChainStore {
            dir: dir.to_path_buf(),
            segments,
            active,
            active_seq,
            active_bytes,
            segment_bytes_max,
            block_segment,
            hard_state,
            head,
            snapshot_root: root,
        };
        // Old segments that hold nothing live can go now (their metadata is superseded).
        store.delete_free_segments()?;
        let rec = Recovered {
            hard_state,
            snapshot,
            blocks: kept.into_values().collect(),
            head,
        };
        Ok((store, rec))
    }

    pub fn head(&self) -> BlockId {
        self.head
    }

    pub fn hard_state(&self) -> HardState {
        self.hard_state
    }

    /// Number of segment files on disk (for tests and metrics).
    pub fn segment_count(&self) -> usize {
        self.segments.len()
    }

    fn append(&mut self, kind: u8, body: &[u8]) -> Result<(), ChainError> {
        let rec = encode_record(kind, body);
        self.active.write_all(&rec)?;
        self.active_bytes += rec.len() as u64;
        Ok(())
    }

    fn roll_if_full(&mut self) -> Result<(), ChainError> {
        if self.active_bytes < self.segment_bytes_max {
            return Ok(());
        }
        self.active.sync_data()?;
        let seq = self.active_seq + 1;
        let path = self.dir.join(segment_name(seq));
        self.active = OpenOptions::new().create(true).append(true).open(&path)?;
        sync_dir(&self.dir)?;
        self.active_seq = seq;
        self.active_bytes = 0;
        self.segments.insert(seq, Segment { path, live: 0 });
        // Each segment restates the metadata so older ones never hold the latest copy.
        self.append(REC_HARD_STATE, &hard_state_body(self.hard_state))?;
        self.append(REC_HEAD, &id_body(self.head))?;
        Ok(())
    }

    /// Step 1 of a Ready: the snapshot file, then term/vote, blocks and head as log records,
    /// then one fsync (skipped only when `ready.sync` is false, which production never sets).
    pub fn persist(&mut self, ready: &Ready) -> Result<(), ChainError> {
        if let Some(s) = &ready.snapshot {
            self.write_snapshot(s)?;
        }
        let mut wrote = false;
        if let Some(hs) = ready.hard_state {
            self.roll_if_full()?;
            self.append(REC_HARD_STATE, &hard_state_body(hs))?;
            self.hard_state = hs;
            wrote = true;
        }
        for b in &ready.blocks {
            self.roll_if_full()?;
            let mut body = BytesMut::new();
            put_block(&mut body, b);
            self.append(REC_BLOCK, &body)?;
            self.block_segment.insert(b.id, self.active_seq);
            self.segments
                .get_mut(&self.active_seq)
                .expect("active segment")
                .live += 1;
            wrote = true;
        }
        if let Some(h) = ready.head {
            self.roll_if_full()?;
            self.append(REC_HEAD, &id_body(h))?;
            self.head = h;
            wrote = true;
        }
        if wrote && ready.sync {
            self.active.sync_data()?;
        }
        Ok(())
    }

    fn write_snapshot(&mut self, s: &Snapshot) -> Result<(), ChainError> {
        let name = snapshot_name(s.root);
        let tmp = self.dir.join(format!("{name}.tmp"));
        let mut f = File::create(&tmp)?;
        f.write_all(&encode_snapshot(s))?;
        f.sync_all()?;
        fs::rename(&tmp, self.dir.join(&name))?;
        sync_dir(&self.dir)?;
        self.snapshot_root = s.root;
        Ok(())
    }

    /// Step 5 of a Ready: forget dead blocks and those below the new root, then delete every
    /// file that no longer holds anything live. Never rewrites a file.
    pub fn reclaim(&mut self, ready: &Ready) -> Result<(), ChainError> {
        for id in &ready.dead {
            self.forget(*id);
        }
        if let Some(root) = ready.compacted_to {
            let below: Vec<BlockId> = self
                .block_segment
                .keys()
                .filter(|id| id.height <= root.height)
                .copied()
                .collect();
            for id in below {
                self.forget(id);
            }
            // Older snapshots are superseded once the new one is durable (persist did that).
            for entry in fs::read_dir(&self.dir)? {
                let entry = entry?;
                let name = entry.file_name().to_string_lossy().into_owned();
                if name.ends_with(".snap") && name != snapshot_name(self.snapshot_root) {
                    fs::remove_file(entry.path())?;
                }
            }
        }
        self.delete_free_segments()
    }

    fn forget(&mut self, id: BlockId) {
        if let Some(seq) = self.block_segment.remove(&id) {
            if let Some(seg) = self.segments.get_mut(&seq) {
                seg.live -= 1;
            }
        }
    }

    fn delete_free_segments(&mut self) -> Result<(), ChainError> {
        let free: Vec<u64> = self
            .segments
            .iter()
            .filter(|(&seq, s)| seq != self.active_seq && s.live == 0)
            .map(|(&seq, _)| seq)
            .collect();
        if free.is_empty() {
            return Ok(());
        }
        // A file about to go may hold the only durable copy of term/vote and head: the copy a
        // roll restated into the active segment reaches disk only with the next fsync, and a
        // crash before it leaves the active segment without them. Restate and fsync them here,
        // before any deletion, so they never depend on a file being deleted.
        self.append(REC_HARD_STATE, &hard_state_body(self.hard_state))?;
        self.append(REC_HEAD, &id_body(self.head))?;
        self.active.sync_data()?;
        for seq in free {
            let seg = self.segments.remove(&seq).expect("listed");
            fs::remove_file(&seg.path)?;
        }
        sync_dir(&self.dir)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::block::BlockKind;

    fn blk(term: u64, height: u64, parent: BlockId, len: usize) -> Block {
        Block {
            id: BlockId::new(term, height),
            parent,
            kind: BlockKind::Data,
            payload: Bytes::from(vec![height as u8; len]),
        }
    }

    fn ready_with(blocks: Vec<Block>, hs: Option<HardState>) -> Ready {
        let head = blocks.last().map(|b| b.id);
        Ready {
            hard_state: hs,
            blocks,
            head,
            sync: true,
            ..Ready::default()
        }
    }

    fn chain(from: BlockId, term: u64, n: u64, len: usize) -> Vec<Block> {
        let mut out = Vec::new();
        let mut parent = from;
        for i in 1..=n {
            let b = blk(term, from.height + i, parent, len);
            parent = b.id;
            out.push(b);
        }
        out
    }

    #[test]
    fn recovers_blocks_hard_state_and_head() {
        let dir = tempfile::tempdir().unwrap();
        let hs = HardState {
            term: 3,
            voted_for: Some(2),
        };
        {
            let (mut s, rec) = ChainStore::open(dir.path()).unwrap();
            assert_eq!(rec.head, GENESIS);
            s.persist(&ready_with(chain(GENESIS, 3, 5, 10), Some(hs)))
                .unwrap();
        }
        let (_, rec) = ChainStore::open(dir.path()).unwrap();
        assert_eq!(rec.hard_state, hs);
        assert_eq!(rec.head, BlockId::new(3, 5));
        assert_eq!(rec.blocks.len(), 5);
    }

    /// Cut the file at every byte of the last Ready's records: recovery must return exactly
    /// the state before or after that Ready, never an error or something in between.
    #[test]
    fn torn_tail_at_every_byte_recovers_a_prefix() {
        let dir = tempfile::tempdir().unwrap();
        let first = chain(GENESIS, 1, 3, 7);
        let second = chain(BlockId::new(1, 3), 2, 3, 7);
        let hs2 = HardState {
            term: 2,
            voted_for: None,
        };
        let (before_len, full) = {
            let (mut s, _) = ChainStore::open(dir.path()).unwrap();
            s.persist(&ready_with(first.clone(), None)).unwrap();
            let path = dir.path().join(segment_name(0));
            let before = fs::metadata(&path).unwrap().len();
            s.persist(&ready_with(second.clone(), Some(hs2))).unwrap();
            (before, fs::read(&path).unwrap())
        };
        let path = dir.path().join(segment_name(0));
        for cut in before_len..=full.len() as u64 {
            fs::write(&path, &full[..cut as usize]).unwrap();
            let (mut s, rec) = ChainStore::open(dir.path()).unwrap();
            let n = rec.blocks.len();
            assert!((3..=6).contains(&n), "cut {cut}: {n} blocks");
            if cut == full.len() as u64 {
                assert_eq!(rec.head, BlockId::new(2, 6));
                assert_eq!(rec.hard_state, hs2);
            } else {
                // The head record is last: any cut before its end leaves the old head.
                assert_eq!(rec.head, BlockId::new(1, 3), "cut {cut}");
                assert!(rec.blocks.iter().all(|b| b.id.height <= 6));
            }
            // The torn tail was cut off: the store appends after the valid prefix.
            let next = chain(rec.head, 9, 1, 3);
            s.persist(&ready_with(next.clone(), None)).unwrap();
            drop(s);
            let (_, again) = ChainStore::open(dir.path()).unwrap();
            assert_eq!(again.head, next[0].id, "cut {cut}");
        }
    }

    #[test]
    fn gc_and_snapshots_reclaim_whole_files() {
        let dir = tempfile::tempdir().unwrap();
        let (mut s, _) = ChainStore::open_with_segment_bytes(dir.path(), 512).unwrap();
        let blocks = chain(GENESIS, 1, 40, 100);
        for b in &blocks {
            s.persist(&ready_with(vec![b.clone()], None)).unwrap();
        }
        let many = s.segment_count();
        assert!(many > 5, "only {many} segments");
        // A dead branch off block 1.2, written after the main chain, then collected.
        let dead = chain(BlockId::new(1, 2), 2, 30, 100);
        for b in &dead {
            s.persist(&ready_with(vec![b.clone()], None)).unwrap();
        }
        let with_dead = s.segment_count();
        let gc = Ready {
            dead: dead.iter().map(|b| b.id).collect(),
            head: Some(BlockId::new(1, 40)),
            sync: true,
            ..Ready::default()
        };
        s.persist(&gc).unwrap();
        s.reclaim(&gc).unwrap();
        assert!(
            s.segment_count() <= many + 1,
            "dead-branch segments not deleted"
        );
        assert!(with_dead > many + 3);
        let root = BlockId::new(1, 35);
        let snap = Snapshot {
            root,
            voters: vec![1, 2, 3],
            state: Bytes::from_static(b"state-at-35"),
        };
        let r = Ready {
            snapshot: Some(snap.clone()),
            compacted_to: Some(root),
            sync: true,
            ..Ready::default()
        };
        s.persist(&r).unwrap();
        s.reclaim(&r).unwrap();
        let few = s.segment_count();
        assert!(few < many / 2, "{few} segments left of {many}");
        drop(s);
        let (_, rec) = ChainStore::open_with_segment_bytes(dir.path(), 512).unwrap();
        assert_eq!(rec.snapshot, Some(snap));
        assert_eq!(rec.head, BlockId::new(1, 40));
        let heights: Vec<u64> = rec.blocks.iter().map(|b| b.id.height).collect();
        assert_eq!(heights, vec![36, 37, 38, 39, 40]);
    }

    /// A machine crash right after a roll loses the active segment's restated term/vote (not
    /// yet fsynced). If every older block is below the snapshot root, recovery deletes the older
    /// segments; the vote they hold must survive that, or the node could vote twice in a term.
    #[test]
    fn vote_survives_recovery_deleting_the_segment_that_held_it() {
        let dir = tempfile::tempdir().unwrap();
        let hs = HardState {
            term: 1,
            voted_for: Some(2),
        };
        let root = BlockId::new(1, 3);
        {
            let (mut s, _) = ChainStore::open_with_segment_bytes(dir.path(), 256).unwrap();
            s.persist(&ready_with(chain(GENESIS, 1, 3, 100), Some(hs)))
                .unwrap();
            let snap = Snapshot {
                root,
                voters: vec![1, 2, 3],
                state: Bytes::from_static(b"state"),
            };
            // Written but not reclaimed: the crash comes before reclaim runs.
            s.persist(&Ready {
                snapshot: Some(snap),
                sync: true,
                ..Ready::default()
            })
            .unwrap();
        }
        let mut seqs: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .filter_map(|e| {
                let name = e.unwrap().file_name().to_string_lossy().into_owned();
                name.ends_with(".chain").then_some(name)
            })
            .collect();
        seqs.sort();
        assert!(seqs.len() >= 2, "the blocks must have rolled: {seqs:?}");
        // The unsynced restatement in the active segment is lost in the crash.
        fs::write(dir.path().join(seqs.last().unwrap()), b"").unwrap();
        let (_, first) = ChainStore::open_with_segment_bytes(dir.path(), 256).unwrap();
        assert_eq!(first.hard_state, hs);
        let (s, second) = ChainStore::open_with_segment_bytes(dir.path(), 256).unwrap();
        assert_eq!(
            second.hard_state, hs,
            "vote forgotten by the second restart"
        );
        assert_eq!(second.head, root);
        assert_eq!(s.segment_count(), 1, "free segments were not reclaimed");
    }

    #[test]
    fn damage_in_an_older_segment_is_an_error_not_silent_loss() {
        let dir = tempfile::tempdir().unwrap();
        {
            let (mut s, _) = ChainStore::open_with_segment_bytes(dir.path(), 256).unwrap();
            for b in chain(GENESIS, 1, 10, 100) {
                s.persist(&ready_with(vec![b], None)).unwrap();
            }
        }
        let path = dir.path().join(segment_name(0));
        let mut data = fs::read(&path).unwrap();
        data[20] ^= 0xff;
        fs::write(&path, data).unwrap();
        assert!(matches!(
            ChainStore::open_with_segment_bytes(dir.path(), 256),
            Err(ChainError::Corrupt(_))
        ));
    }
}

//! Simulated storage: what a disk keeps across a crash and what it loses.
//!
//! Writes go to a volatile buffer; `sync` makes them durable in order. A crash keeps a random
//! prefix of the unsynced writes (the page cache may have flushed some) and loses the rest. It
//! never models corruption of synced data: that is the on-disk store's job to detect.

use std::collections::BTreeMap;

use josefine_chain::{Block, BlockId, HardState, Recovered, Snapshot, GENESIS};

#[derive(Clone, Debug)]
enum Write {
    HardState(HardState),
    Snapshot(Snapshot),
    Block(Block),
    Head(BlockId),
    Delete(BlockId),
    CompactTo(BlockId),
}

#[derive(Clone, Debug, Default)]
struct Durable {
    hard_state: HardState,
    snapshot: Option<Snapshot>,
    blocks: BTreeMap<BlockId, Block>,
    head: Option<BlockId>,
}

#[derive(Clone, Debug, Default)]
pub struct SimStorage {
    durable: Durable,
    unsynced: Vec<Write>,
}

impl SimStorage {
    pub fn write_hard_state(&mut self, hs: HardState) {
        self.unsynced.push(Write::HardState(hs));
    }
    pub fn write_snapshot(&mut self, s: Snapshot) {
        self.unsynced.push(Write::Snapshot(s));
    }
    pub fn write_block(&mut self, b: Block) {
        self.unsynced.push(Write::Block(b));
    }
    pub fn write_head(&mut self, h: BlockId) {
        self.unsynced.push(Write::Head(h));
    }
    pub fn delete_block(&mut self, id: BlockId) {
        self.unsynced.push(Write::Delete(id));
    }
    pub fn compact_to(&mut self, root: BlockId) {
        self.unsynced.push(Write::CompactTo(root));
    }

    pub fn has_unsynced(&self) -> bool {
        !self.unsynced.is_empty()
    }

    pub fn sync(&mut self) {
        let writes = std::mem::take(&mut self.unsynced);
        for w in writes {
            self.apply(w);
        }
    }

    fn apply(&mut self, w: Write) {
        let d = &mut self.durable;
        match w {
            Write::HardState(hs) => d.hard_state = hs,
            Write::Snapshot(s) => d.snapshot = Some(s),
            Write::Block(b) => {
                d.blocks.insert(b.id, b);
            }
            Write::Head(h) => d.head = Some(h),
            Write::Delete(id) => {
                d.blocks.remove(&id);
            }
            Write::CompactTo(root) => d.blocks.retain(|id, _| id.height > root.height),
        }
    }

    /// A crash: the first `keep` unsynced writes reach the disk, the rest are lost.
    pub fn crash(&mut self, keep: usize) {
        let writes = std::mem::take(&mut self.unsynced);
        for w in writes.into_iter().take(keep) {
            self.apply(w);
        }
    }

    pub fn unsynced_len(&self) -> usize {
        self.unsynced.len()
    }

    pub fn recover(&self) -> Recovered {
        let d = &self.durable;
        Recovered {
            hard_state: d.hard_state,
            snapshot: d.snapshot.clone(),
            blocks: d.blocks.values().cloned().collect(),
            head: d.head.unwrap_or(GENESIS),
        }
    }

    pub fn durable_term(&self) -> u64 {
        self.durable.hard_state.term
    }
}

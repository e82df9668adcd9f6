//! The in-memory block tree: every block a server holds above its root, keyed by id.
//!
//! It answers ancestry questions (walking parent links), extracts runs along a chain, and
//! removes dead branches (GC) and the prefix below a new root (compaction). It never decides
//! what is committed: the core tells it. Every stored block's parent is the root or another
//! stored block; a block at or below the root is never stored.

use std::collections::{BTreeMap, BTreeSet, HashSet};

use crate::block::{Block, BlockId};

#[derive(Debug, Clone)]
pub struct BlockTree {
    root: BlockId,
    /// Keyed by id; `BlockId` orders by height first, so ranges walk the tree level by level.
    blocks: BTreeMap<BlockId, Block>,
    /// Number of stored blocks at each height; a count above one means a fork.
    per_height: BTreeMap<u64, u32>,
    /// Heights holding more than one block: where GC may find dead branches.
    forks: BTreeSet<u64>,
}

impl BlockTree {
    pub fn new(root: BlockId) -> BlockTree {
        BlockTree {
            root,
            blocks: BTreeMap::new(),
            per_height: BTreeMap::new(),
            forks: BTreeSet::new(),
        }
    }

    pub fn root(&self) -> BlockId {
        self.root
    }

    pub fn len(&self) -> usize {
        self.blocks.len()
    }

    pub fn is_empty(&self) -> bool {
        self.blocks.is_empty()
    }

    pub fn contains(&self, id: BlockId) -> bool {
        id == self.root || self.blocks.contains_key(&id)
    }

    pub fn get(&self, id: BlockId) -> Option<&Block> {
        self.blocks.get(&id)
    }

    pub fn blocks(&self) -> impl Iterator<Item = &Block> {
        self.blocks.values()
    }

    /// Stores a block whose parent is held. Returns false if it was already there. A known id
    /// with different content means two leaders created blocks in one term: fatal.
    pub fn insert(&mut self, block: Block) -> bool {
        assert!(
            self.contains(block.parent),
            "block {} inserted without its parent {}",
            block.id,
            block.parent
        );
        assert!(
            block.links_to_parent(),
            "block {} does not link to its parent",
            block.id
        );
        if let Some(existing) = self.blocks.get(&block.id) {
            assert!(
                *existing == block,
                "block {} arrived with different content: two leaders in one term",
                block.id
            );
            return false;
        }
        let h = block.id.height;
        let count = self.per_height.entry(h).or_insert(0);
        *count += 1;
        if *count > 1 {
            self.forks.insert(h);
        }
        self.blocks.insert(block.id, block);
        true
    }

    fn remove(&mut self, id: BlockId) {
        if self.blocks.remove(&id).is_none() {
            return;
        }
        let h = id.height;
        let count = self.per_height.get_mut(&h).expect("height count");
        *count -= 1;
        if *count <= 1 {
            self.forks.remove(&h);
        }
        if *count == 0 {
            self.per_height.remove(&h);
        }
    }

    /// The parent of a stored block (None for the root or an unknown id).
    pub fn parent(&self, id: BlockId) -> Option<BlockId> {
        self.blocks.get(&id).map(|b| b.parent)
    }

    /// The ancestor-or-self of `id` at height `h`; None if `id` is unknown or `h` is below the
    /// root.
    pub fn ancestor_at(&self, id: BlockId, h: u64) -> Option<BlockId> {
        if h < self.root.height || !self.contains(id) || h > id.height {
            return None;
        }
        if h == id.height {
            return Some(id);
        }
        if h == self.root.height {
            return Some(self.root);
        }
        // Every ancestor of a stored block is stored, so a height holding a single block holds
        // the ancestor. Jump to the lowest fork-free height at or above `h` instead of walking
        // the whole chain; only runs of forked heights are walked.
        let mut g = h;
        for &f in self.forks.range(h..) {
            if f == g {
                g += 1;
            } else {
                break;
            }
        }
        let mut cur = if g >= id.height {
            id
        } else {
            self.unique_at(g)?
        };
        while cur.height > h {
            cur = self.parent(cur)?;
        }
        Some(cur)
    }

    /// The only block stored at height `h` (the caller knows there is no fork there).
    fn unique_at(&self, h: u64) -> Option<BlockId> {
        self.blocks
            .range(BlockId::new(0, h)..=BlockId::new(u64::MAX, h))
            .next()
            .map(|(id, _)| *id)
    }

    /// True when `a` is `b` or one of its ancestors (both must be held).
    pub fn is_ancestor_or_equal(&self, a: BlockId, b: BlockId) -> bool {
        self.contains(a) && self.ancestor_at(b, a.height) == Some(a)
    }

    /// The deepest block that is an ancestor-or-equal of both `a` and `b`, if both are held.
    pub fn common_ancestor(&self, a: BlockId, b: BlockId) -> Option<BlockId> {
        let h = a.height.min(b.height);
        let mut x = self.ancestor_at(a, h)?;
        let mut y = self.ancestor_at(b, h)?;
        while x != y {
            if x == self.root || y == self.root {
                return None;
            }
            x = self.parent(x)?;
            y = self.parent(y)?;
        }
        Some(x)
    }

    /// The blocks strictly after `from` up to and including `to`, in chain order, at most
    /// `max` of them (the first ones). None unless `from` is an ancestor-or-equal of `to`.
    pub fn run(&self, from: BlockId, to: BlockId, max: usize) -> Option<Vec<Block>> {
        if !self.is_ancestor_or_equal(from, to) {
            return None;
        }
        let end_height = to.height.min(from.height.saturating_add(max as u64));
        let mut cur = self.ancestor_at(to, end_height)?;
        let mut out = Vec::with_capacity((end_height - from.height).min(1024) as usize);
        while cur != from {
            let b = self.blocks.get(&cur)?;
            out.push(b.clone());
            cur = b.parent;
        }
        out.reverse();
        Some(out)
    }

    /// Removes every block that is neither an ancestor-or-equal nor a descendant of `commit`.
    /// Returns the ids removed. Cheap when no fork lies at or below `commit`.
    pub fn collect_dead(&mut self, commit: BlockId) -> Vec<BlockId> {
        let lowest_fork = match self.forks.iter().next() {
            Some(&h) if h <= commit.height => h,
            _ => return Vec::new(),
        };
        // The committed path from `commit` down to the lowest fork.
        let mut on_path = HashSet::new();
        let mut cur = commit;
        while cur.height >= lowest_fork && cur != self.root {
            on_path.insert(cur);
            cur = match self.parent(cur) {
                Some(p) => p,
                None => break,
            };
        }
        let mut descendants: HashSet<BlockId> = HashSet::new();
        let mut dead = Vec::new();
        for (id, b) in self.blocks.range(BlockId::new(0, lowest_fork)..) {
            let alive = if id.height <= commit.height {
                on_path.contains(id)
            } else {
                b.parent == commit || descendants.contains(&b.parent)
            };
            if alive {
                if id.height > commit.height {
                    descendants.insert(*id);
                }
            } else {
                dead.push(*id);
            }
        }
        for id in &dead {
            self.remove(*id);
        }
        dead
    }

    /// Makes `new_root` the base: removes every block at or below its height and every block
    /// not descending from it. Returns the ids removed.
    pub fn rebase(&mut self, new_root: BlockId) -> Vec<BlockId> {
        assert!(new_root.height >= self.root.height, "root moved backwards");
        let mut keep: HashSet<BlockId> = HashSet::new();
        keep.insert(new_root);
        let mut removed = Vec::new();
        for (id, b) in self.blocks.iter() {
            if id.height > new_root.height && keep.contains(&b.parent) {
                keep.insert(*id);
            } else {
                removed.push(*id);
            }
        }
        for id in &removed {
            self.remove(*id);
        }
        self.root = new_root;
        removed
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::block::{BlockKind, GENESIS};
    use bytes::Bytes;

    fn blk(term: u64, height: u64, parent: BlockId) -> Block {
        Block {
            id: BlockId::new(term, height),
            parent,
            kind: BlockKind::Data,
            payload: Bytes::from(format!("{term}.{height}")),
        }
    }

    /// genesis - 1.1 - 1.2 - 1.3
    ///                    \- 2.3 - 2.4
    fn forked() -> BlockTree {
        let mut t = BlockTree::new(GENESIS);
        t.insert(blk(1, 1, GENESIS));
        t.insert(blk(1, 2, BlockId::new(1, 1)));
        t.insert(blk(1, 3, BlockId::new(1, 2)));
        t.insert(blk(2, 3, BlockId::new(1, 2)));
        t.insert(blk(2, 4, BlockId::new(2, 3)));
        t
    }

    #[test]
    fn ancestry_and_runs_follow_parent_links() {
        let t = forked();
        assert!(t.is_ancestor_or_equal(BlockId::new(1, 2), BlockId::new(2, 4)));
        assert!(!t.is_ancestor_or_equal(BlockId::new(1, 3), BlockId::new(2, 4)));
        assert!(t.is_ancestor_or_equal(GENESIS, BlockId::new(1, 3)));
        assert_eq!(
            t.common_ancestor(BlockId::new(1, 3), BlockId::new(2, 4)),
            Some(BlockId::new(1, 2))
        );
        let run = t.run(BlockId::new(1, 1), BlockId::new(2, 4), 10).unwrap();
        let ids: Vec<_> = run.iter().map(|b| b.id).collect();
        assert_eq!(
            ids,
            vec![BlockId::new(1, 2), BlockId::new(2, 3), BlockId::new(2, 4)]
        );
        let short = t.run(BlockId::new(1, 1), BlockId::new(2, 4), 2).unwrap();
        assert_eq!(short.len(), 2);
        assert_eq!(short[1].id, BlockId::new(2, 3));
        assert!(t.run(BlockId::new(1, 3), BlockId::new(2, 4), 10).is_none());
    }

    #[test]
    fn gc_removes_only_the_dead_branch_once_commit_passes_the_fork() {
        let mut t = forked();
        assert!(
            t.collect_dead(BlockId::new(1, 2)).is_empty(),
            "fork above commit"
        );
        let dead = t.collect_dead(BlockId::new(2, 3));
        assert_eq!(dead, vec![BlockId::new(1, 3)]);
        assert!(t.contains(BlockId::new(2, 4)));
        assert_eq!(t.len(), 4);
        assert!(t.collect_dead(BlockId::new(2, 4)).is_empty());
    }

    #[test]
    fn rebase_drops_prefix_and_non_descendants() {
        let mut t = forked();
        let removed = t.rebase(BlockId::new(2, 3));
        assert_eq!(removed.len(), 4);
        assert_eq!(t.root(), BlockId::new(2, 3));
        assert!(t.contains(BlockId::new(2, 4)));
        assert!(!t.contains(BlockId::new(1, 3)));
        assert_eq!(t.ancestor_at(BlockId::new(2, 4), 2), None);
    }

    #[test]
    #[should_panic(expected = "different content")]
    fn same_id_different_content_is_fatal() {
        let mut t = forked();
        let mut b = blk(1, 3, BlockId::new(1, 2));
        b.payload = Bytes::from_static(b"other");
        t.insert(b);
    }
}

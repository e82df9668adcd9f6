//! The safety properties of `docs/chain-protocol.md`, one check per property, run by the
//! simulator after every step. Each returns the violations it found; none may ever fire on an
//! unmutated core. They observe the cluster from outside and keep their own history (which
//! leader held which term, which block was committed at which height): never trust the node
//! to report on itself.

use std::collections::BTreeMap;

use josefine_chain::{BlockId, Node, NodeId};

/// A broken property: its name, what was seen, and when.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Violation {
    pub property: &'static str,
    pub detail: String,
    pub time_ms: u64,
}

/// The cluster-wide history the checks compare against.
#[derive(Debug, Default)]
pub struct Observer {
    /// term -> the leader seen in it.
    pub leaders: BTreeMap<u64, NodeId>,
    /// height -> (committed block, lowest term in which any server saw it committed).
    pub committed: BTreeMap<u64, (BlockId, u64)>,
    /// term -> highest height first seen committed in that term (index for the above).
    pub committed_height_by_term: BTreeMap<u64, u64>,
    /// height -> digest of the payload applied there.
    pub applied: BTreeMap<u64, u64>,
    /// (voter, term) -> the candidate it granted.
    pub votes: BTreeMap<(NodeId, u64), NodeId>,
    pub now_ms: u64,
    pub violations: Vec<Violation>,
}

impl Observer {
    pub(crate) fn fail(&mut self, property: &'static str, detail: String) {
        self.violations.push(Violation {
            property,
            detail,
            time_ms: self.now_ms,
        });
    }
}

/// What the simulator remembers about one server between steps (across restarts for terms).
#[derive(Clone, Debug, Default)]
pub struct NodeMemory {
    pub last_term: u64,
    /// Commit seen in the current incarnation (commit is lazy across restarts).
    pub last_commit: Option<BlockId>,
}

/// At most one leader per term.
pub fn election_safety(obs: &mut Observer, node: &Node) {
    if !node.is_leader() {
        return;
    }
    match obs.leaders.get(&node.term()) {
        Some(&l) if l != node.id() => obs.fail(
            "election_safety",
            format!("term {}: leaders {l} and {}", node.term(), node.id()),
        ),
        Some(_) => {}
        None => {
            obs.leaders.insert(node.term(), node.id());
        }
    }
}

/// Committed blocks form one chain: every block a server has committed matches what any
/// server committed at that height, walking parent links from its commit.
pub fn chain_safety(obs: &mut Observer, node: &Node, mem: &NodeMemory) {
    let commit = node.commit();
    let from_height = mem.last_commit.map_or(0, |c| c.height);
    if commit.height <= from_height && mem.last_commit.is_some() {
        return;
    }
    let tree = node.tree();
    let mut cur = commit;
    loop {
        if cur.height == 0 {
            break;
        }
        match obs.committed.get(&cur.height) {
            Some(&(id, _)) if id != cur => {
                obs.fail(
                    "chain_safety",
                    format!(
                        "server {} committed {cur} where {id} was committed",
                        node.id()
                    ),
                );
                return;
            }
            Some(&(_, t)) if t <= node.term() => {}
            _ => {
                obs.committed.insert(cur.height, (cur, node.term()));
                let top = obs.committed_height_by_term.entry(node.term()).or_insert(0);
                *top = (*top).max(cur.height);
            }
        }
        if cur.height <= from_height + 1 && mem.last_commit.is_some() {
            break;
        }
        match tree.parent(cur) {
            Some(p) => cur = p,
            None => break, // reached the root: blocks below it were checked when committed
        }
    }
}

/// Every block committed in an earlier term is on the head chain of every later leader.
pub fn leader_completeness(obs: &mut Observer, node: &Node) {
    if !node.is_leader() {
        return;
    }
    let term = node.term();
    // The highest block committed in an earlier term; its ancestors come with it.
    let Some(height) = obs
        .committed_height_by_term
        .range(..term)
        .map(|(_, &h)| h)
        .max()
    else {
        return;
    };
    let block = obs.committed[&height].0;
    let root = node.root();
    let ok = if block.height >= root.height {
        node.tree().ancestor_at(node.head(), block.height) == Some(block)
    } else {
        // Below the root: the root itself is committed, so chain safety covers the rest.
        obs.committed.get(&root.height).map(|c| c.0) == Some(root)
    };
    if !ok {
        obs.fail(
            "leader_completeness",
            format!(
                "leader {} of term {term} with head {} lacks committed {block}",
                node.id(),
                node.head()
            ),
        );
    }
}

/// No two servers apply different payloads at one height, and a server applies heights in
/// order without gaps.
pub fn state_machine_safety(
    obs: &mut Observer,
    node_id: NodeId,
    expected_height: u64,
    height: u64,
    digest: u64,
) {
    if height != expected_height {
        obs.fail(
            "state_machine_safety",
            format!("server {node_id} applied height {height}, expected {expected_height}"),
        );
        return;
    }
    match obs.applied.get(&height) {
        Some(&d) if d != digest => obs.fail(
            "state_machine_safety",
            format!("server {node_id} applied a different payload at height {height}"),
        ),
        Some(_) => {}
        None => {
            obs.applied.insert(height, digest);
        }
    }
}

/// `commit` only moves forward and is always an ancestor-or-equal of `head`.
pub fn commit_monotonic_and_on_head(obs: &mut Observer, node: &Node, mem: &NodeMemory) {
    let commit = node.commit();
    if let Some(last) = mem.last_commit {
        if commit.height < last.height {
            obs.fail(
                "commit_monotonic_and_on_head",
                format!("server {}: commit {last} -> {commit}", node.id()),
            );
        } else if last.height >= node.root().height
            && !node.tree().is_ancestor_or_equal(last, commit)
        {
            obs.fail(
                "commit_monotonic_and_on_head",
                format!(
                    "server {}: commit {commit} does not descend from {last}",
                    node.id()
                ),
            );
        }
    }
    if !node.tree().is_ancestor_or_equal(commit, node.head()) {
        obs.fail(
            "commit_monotonic_and_on_head",
            format!(
                "server {}: commit {commit} not on head {}",
                node.id(),
                node.head()
            ),
        );
    }
}

/// `current_term` never decreases, across restarts too.
pub fn term_monotonic(obs: &mut Observer, node: &Node, mem: &NodeMemory) {
    if node.term() < mem.last_term {
        obs.fail(
            "term_monotonic",
            format!(
                "server {}: term {} -> {}",
                node.id(),
                mem.last_term,
                node.term()
            ),
        );
    }
}

/// A server grants at most one vote per term (checked on the wire: every granted VoteReply).
pub fn vote_once_per_term(obs: &mut Observer, voter: NodeId, term: u64, candidate: NodeId) {
    match obs.votes.get(&(voter, term)) {
        Some(&c) if c != candidate => obs.fail(
            "vote_once_per_term",
            format!("server {voter} voted for {c} and {candidate} in term {term}"),
        ),
        Some(_) => {}
        None => {
            obs.votes.insert((voter, term), candidate);
        }
    }
}

//! `GET /api/v1/chain`: this node's view of the metadata chain for the console's chain page:
//! role, term, leader, head, commit, each voter's progress (known to the leader only), the
//! blocks above the commit point with their kind and metadata command, and the dead branches
//! lately collected.
//!
//! Owns: that JSON shape and naming a block's command. Reads only the chain runtime's watches
//! (status, progress, tree): never asks the chain loop anything, so a busy or stuck chain
//! cannot stall the page, and the page cannot slow the chain.

use std::sync::Arc;

use josefine_chain::{Block, BlockId, BlockKind};
use josefine_meta::Command;
use serde_json::{json, Value};

use crate::broker::Broker;
use crate::raft::limits::DEAD_BRANCHES_KEPT;

/// The chain page's data.
pub fn chain(broker: &Arc<Broker>) -> Value {
    let status = broker.metadata.chain_status();
    let tree = broker.metadata.watch_chain_tree().borrow().clone();
    let progress = broker.metadata.watch_progress().borrow().clone();
    let voters: Vec<Value> = progress
        .iter()
        .map(|v| {
            json!({
                "id": v.id,
                "matched": v.matched.map(id),
                "lag_blocks": v.matched.map(|m| status.head.height.saturating_sub(m.height)),
            })
        })
        .collect();
    json!({
        "node_id": broker.config.node_id,
        "voter_ids": broker.config.voter_addrs.iter().map(|(id, _)| id).collect::<Vec<_>>(),
        "role": format!("{:?}", status.role),
        "term": status.term,
        "leader": status.leader,
        "head": id(status.head),
        "commit": id(status.commit),
        "voters": voters,
        // The tree as last published: its commit point may trail `commit` by a block.
        "tree_commit": id(tree.commit),
        "uncommitted": tree.uncommitted.iter().map(block).collect::<Vec<_>>(),
        "dead_blocks_collected": status.collected_total,
        "dead_branches_kept": DEAD_BRANCHES_KEPT,
        "dead_branches": tree.dead_branches.iter().rev().map(|d| json!({
            "collected_at_ms": d.collected_at_ms,
            "blocks": d.blocks.iter().map(block).collect::<Vec<_>>(),
        })).collect::<Vec<_>>(),
    })
}

fn id(b: BlockId) -> Value {
    json!({"height": b.height, "term": b.term})
}

fn block(b: &Block) -> Value {
    json!({
        "height": b.id.height,
        "term": b.id.term,
        "parent": id(b.parent),
        "kind": format!("{:?}", b.kind),
        "command": command_name(b),
    })
}

/// The metadata command a data block carries (`CreateTopic`), "undecodable" for a payload the
/// applier would skip, None for a no-op or config block.
fn command_name(b: &Block) -> Option<String> {
    if b.kind != BlockKind::Data {
        return None;
    }
    Some(match Command::decode(&b.payload) {
        Ok(cmd) => variant_name(&format!("{cmd:?}")).to_string(),
        Err(_) => "undecodable".to_string(),
    })
}

/// `CreateTopic { .. }` -> `CreateTopic`: the variant's name from its Debug form, so a command
/// added to the meta crate is named here without a list to keep in step.
fn variant_name(debug: &str) -> &str {
    let end = debug
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .unwrap_or(debug.len());
    &debug[..end]
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn data(cmd: &Command) -> Block {
        Block {
            id: BlockId::new(2, 5),
            parent: BlockId::new(2, 4),
            kind: BlockKind::Data,
            payload: Bytes::from(cmd.encode()),
        }
    }

    #[test]
    fn a_data_block_is_named_by_its_command() {
        let b = data(&Command::InitCluster {
            cluster_id: "x".into(),
        });
        assert_eq!(command_name(&b).as_deref(), Some("InitCluster"));
        let v = block(&b);
        assert_eq!(v["kind"], "Data");
        assert_eq!(v["parent"], json!({"height": 4, "term": 2}));
        let garbage = Block {
            payload: Bytes::from_static(b"\x09garbage"),
            ..b.clone()
        };
        assert_eq!(command_name(&garbage).as_deref(), Some("undecodable"));
        let noop = Block {
            kind: BlockKind::Noop,
            payload: Bytes::new(),
            ..b
        };
        assert_eq!(command_name(&noop), None);
    }

    #[test]
    fn variant_names() {
        assert_eq!(variant_name("CreateTopic { name: \"x\" }"), "CreateTopic");
        assert_eq!(variant_name("Unit"), "Unit");
        assert_eq!(variant_name("Tuple(1)"), "Tuple");
    }
}

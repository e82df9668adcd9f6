//! The metadata properties of the cluster design (section 2.11), one check per property, run
//! by the simulator on every image after every block it applies (and after every snapshot it
//! installs), plus the producer-id and lost-update checks where those things happen. Like the
//! chain checks they observe from outside and keep their own history; they read the image only
//! through its public fields and `check_consistency`/`digest`, never through the controller.
//! Property names are the `Violation::property` strings, so a failure names what broke.

use std::collections::BTreeMap;

use josefine_chain::NodeId;
use josefine_meta::{Image, PartitionAssignment, TopicId};

use crate::invariants::Observer;

/// What the metadata checks remember across steps, servers and restarts.
#[derive(Debug, Default)]
pub struct MetaHistory {
    /// (topic, partition, leader epoch) -> the leader (or `NO_LEADER`) any image showed there.
    leaders_by_epoch: BTreeMap<(TopicId, i32, i32), (i32, NodeId, u64)>,
    /// Image position -> (digest, server that first showed it).
    digests: BTreeMap<u64, (u64, NodeId)>,
    /// (server, topic, partition) -> (position, leader epoch, partition epoch) last seen there.
    epochs_seen: BTreeMap<(NodeId, TopicId, i32), (u64, i32, i32)>,
    /// Producer-id blocks handed to brokers: first id -> (end, chain height that allocated it).
    producer_id_blocks: BTreeMap<i64, (i64, u64)>,
    /// (payload digest, topic, partition, occurrence in the payload) -> the partition epoch of
    /// the image the controller decided that change on.
    decided_on: BTreeMap<(u64, TopicId, i32, usize), i32>,
}

/// No fenced, shutting-down or unregistered broker leads a partition (KIP-841; the fence batch
/// moves every leadership of the fenced broker in the same block).
pub fn no_ineligible_leader(obs: &mut Observer, node: NodeId, image: &Image) {
    for (topic_id, p) in image.partitions() {
        if p.leader == PartitionAssignment::NO_LEADER {
            continue;
        }
        let state = match image.brokers.get(&p.leader) {
            None => "unregistered",
            Some(b) if b.fenced => "fenced",
            Some(b) if b.in_controlled_shutdown => "shutting down",
            Some(_) => continue,
        };
        obs.fail(
            "no_ineligible_leader",
            format!(
                "server {node} image at {}: {state} broker {} leads {topic_id}-{} (epoch {})",
                image.position, p.leader, p.partition, p.leader_epoch
            ),
        );
        return;
    }
}

/// Every ISR is non-empty, without repeats, a subset of the replicas, and holds the leader.
pub fn isr_well_formed(obs: &mut Observer, node: NodeId, image: &Image) {
    for (topic_id, p) in image.partitions() {
        let dup = p
            .isr
            .iter()
            .enumerate()
            .any(|(j, r)| p.isr[..j].contains(r));
        let problem = if p.isr.is_empty() {
            "the ISR is empty".to_string()
        } else if dup {
            "the ISR repeats a member".to_string()
        } else if let Some(r) = p.isr.iter().find(|r| !p.replicas.contains(r)) {
            format!("ISR member {r} is not a replica")
        } else if p.leader != PartitionAssignment::NO_LEADER && !p.isr.contains(&p.leader) {
            format!("leader {} is not in the ISR", p.leader)
        } else {
            continue;
        };
        obs.fail(
            "isr_well_formed",
            format!(
                "server {node} image at {}: {topic_id}-{}: {problem} (replicas {:?}, isr {:?})",
                image.position, p.partition, p.replicas, p.isr
            ),
        );
        return;
    }
}

/// Every image invariant `Image::check_consistency` knows (broker epochs within the position,
/// topic index, partition numbering, ...): the catch-all after the specific checks above.
pub fn image_consistency(obs: &mut Observer, node: NodeId, image: &Image) {
    if let Err(e) = image.check_consistency() {
        obs.fail(
            "image_consistency",
            format!("server {node} image at {}: {e}", image.position),
        );
    }
}

/// Per server, a partition's leader epoch and partition epoch never decrease as its image
/// moves forward. A restart may take the image back to an older position (its last
/// snapshot); the history then continues from there.
pub fn epochs_monotonic(obs: &mut Observer, hist: &mut MetaHistory, node: NodeId, image: &Image) {
    for (topic_id, p) in image.partitions() {
        let key = (node, topic_id, p.partition);
        let now = (image.position, p.leader_epoch, p.partition_epoch);
        if let Some(&(pos, le, pe)) = hist.epochs_seen.get(&key) {
            if image.position >= pos && (p.leader_epoch < le || p.partition_epoch < pe) {
                obs.fail(
                    "epochs_monotonic",
                    format!(
                        "server {node}: {topic_id}-{}: leader/partition epoch {le}/{pe} at \
                         position {pos} became {}/{} at position {}",
                        p.partition, p.leader_epoch, p.partition_epoch, image.position
                    ),
                );
                return;
            }
        }
        hist.epochs_seen.insert(key, now);
    }
}

/// At most one leader per (partition, leader epoch) across all images: every image showing a
/// partition at a leader epoch shows the same leader there (no leader included). A leader
/// change without an epoch bump, or two controllers electing different leaders at one epoch,
/// breaks it.
pub fn one_leader_per_epoch(
    obs: &mut Observer,
    hist: &mut MetaHistory,
    node: NodeId,
    image: &Image,
) {
    for (topic_id, p) in image.partitions() {
        let key = (topic_id, p.partition, p.leader_epoch);
        match hist.leaders_by_epoch.get(&key) {
            Some(&(leader, by, at)) if leader != p.leader => {
                obs.fail(
                    "one_leader_per_epoch",
                    format!(
                        "{topic_id}-{} leader epoch {}: leader {leader} (server {by} at \
                         position {at}) and leader {} (server {node} at position {})",
                        p.partition, p.leader_epoch, p.leader, image.position
                    ),
                );
                return;
            }
            Some(_) => {}
            None => {
                hist.leaders_by_epoch
                    .insert(key, (p.leader, node, image.position));
            }
        }
    }
}

/// All images at one position are identical (same digest), on every server and across each
/// server's restarts: the image is a pure function of the chain prefix.
pub fn images_equal_at_equal_positions(
    obs: &mut Observer,
    hist: &mut MetaHistory,
    node: NodeId,
    image: &Image,
) {
    let digest = image.digest();
    match hist.digests.get(&image.position) {
        Some(&(d, by)) if d != digest => obs.fail(
            "images_equal_at_equal_positions",
            format!(
                "server {node} image at position {} has digest {digest:016x}, server {by} had \
                 {d:016x} there",
                image.position
            ),
        ),
        Some(_) => {}
        None => {
            hist.digests.insert(image.position, (digest, node));
        }
    }
}

/// Producer-id blocks handed to brokers are pairwise disjoint, cluster-wide. `height` is the
/// chain height of the allocation: the same block delivered twice (a duplicated reply) is one
/// block.
pub fn producer_id_blocks_disjoint(
    obs: &mut Observer,
    hist: &mut MetaHistory,
    broker: NodeId,
    first_id: i64,
    count: i64,
    height: u64,
) {
    let end = first_id.saturating_add(count);
    if count < 1 {
        obs.fail(
            "producer_id_blocks_disjoint",
            format!("broker {broker} got an empty block {first_id}+{count} (height {height})"),
        );
        return;
    }
    // The blocks so far are disjoint, so only the one starting last before `end` can overlap.
    if let Some((&f, &(e, h))) = hist.producer_id_blocks.range(..end).next_back() {
        if e > first_id && !(h == height && f == first_id && e == end) {
            obs.fail(
                "producer_id_blocks_disjoint",
                format!(
                    "broker {broker} got ids {first_id}..{end} (height {height}), overlapping \
                     {f}..{e} allocated at height {h}"
                ),
            );
            return;
        }
    }
    hist.producer_id_blocks.insert(first_id, (end, height));
}

/// Remembers the partition epoch the controller decided a change on (from the image it
/// decided with, independently of what the command says it expects).
pub fn note_decision(
    hist: &mut MetaHistory,
    payload_digest: u64,
    changes: &[(TopicId, i32, usize, i32)],
) {
    for &(topic_id, partition, occurrence, epoch) in changes {
        hist.decided_on
            .entry((payload_digest, topic_id, partition, occurrence))
            .or_insert(epoch);
    }
}

/// A partition change applies only to the partition state it was decided on: the partition
/// epoch before it applies equals the epoch in the image the controller decided it with. This
/// is what `expected_partition_epoch` guards; a controller deciding on a stale image and
/// stamping the current epoch (a lost update) breaks it.
pub fn no_lost_partition_update(
    obs: &mut Observer,
    hist: &MetaHistory,
    node: NodeId,
    payload_digest: u64,
    applied: &[(TopicId, i32, usize, i32)],
) {
    for &(topic_id, partition, occurrence, before) in applied {
        let key = (payload_digest, topic_id, partition, occurrence);
        if let Some(&decided) = hist.decided_on.get(&key) {
            if decided != before {
                obs.fail(
                    "no_lost_partition_update",
                    format!(
                        "server {node}: a change of {topic_id}-{partition} decided on partition \
                         epoch {decided} applied at partition epoch {before}"
                    ),
                );
                return;
            }
        }
    }
}

//! The replication invariants (cluster design 2.11, 7-12), one function per property, checked
//! after every step of `ReplWorld` and on the events they concern.
//!
//! The reference is the *committed prefix* of each partition: the records below the largest
//! HW any leader has announced, copied from that leader when its HW moved. Every check compares
//! against it, in constant time through prefix hashes. Must never: read anything but the
//! world's observable state (logs, HWs, the controller's image, what clients were told).

use std::collections::BTreeMap;

use josefine_meta::PartitionAssignment;
use josefine_replica::LeaderState;

use super::log::{chain_hash, Entry, ReplicaLog};
use super::{ReplWorld, Role};
use crate::invariants::Violation;

#[derive(Debug, Default)]
pub(crate) struct History {
    /// Per partition: the committed records and their prefix hashes.
    committed: BTreeMap<i32, (Vec<Entry>, Vec<u64>)>,
    /// (broker, partition, leader epoch) -> the HW last seen on that leader.
    leader_hws: BTreeMap<(i32, i32, i32), i64>,
    /// Per partition: acknowledged (offset, value).
    acked: BTreeMap<i32, Vec<(i64, u64)>>,
}

fn violation(property: &'static str, time_ms: u64, detail: String) -> Violation {
    Violation {
        property,
        detail,
        time_ms,
    }
}

impl History {
    fn committed_len(&self, partition: i32) -> usize {
        self.committed.get(&partition).map_or(0, |(e, _)| e.len())
    }

    fn committed_hash(&self, partition: i32, n: usize) -> u64 {
        match n {
            0 => 0,
            n => self.committed[&partition].1[n - 1],
        }
    }

    /// A leader's HW after one of its calls: `leader_hw_monotonic` and
    /// `committed_prefix_stable` (the leader agrees with everything committed so far).
    pub(crate) fn leader_hw(
        &mut self,
        broker: i32,
        partition: i32,
        leader_epoch: i32,
        log: &ReplicaLog,
        now_ms: u64,
    ) -> Option<Violation> {
        let hw = log.hw;
        let last = self
            .leader_hws
            .insert((broker, partition, leader_epoch), hw);
        if let Some(last) = last {
            if hw < last {
                return Some(violation(
                    "leader_hw_monotonic",
                    now_ms,
                    format!("partition {partition}: leader {broker} at epoch {leader_epoch} moved its HW from {last} to {hw}"),
                ));
            }
            if hw == last {
                return None;
            }
        }
        let len = self.committed_len(partition);
        let shared = len.min(hw as usize);
        if log.prefix_hash(shared) != Some(self.committed_hash(partition, shared)) {
            return Some(violation(
                "committed_prefix_stable",
                now_ms,
                format!(
                    "partition {partition}: leader {broker} at epoch {leader_epoch} announces HW {hw} over a log that differs from the committed prefix below {shared}"
                ),
            ));
        }
        let (entries, hashes) = self.committed.entry(partition).or_default();
        for &e in &log.entries()[len.min(hw as usize)..hw as usize] {
            let prev = hashes.last().copied().unwrap_or(0);
            hashes.push(chain_hash(prev, e));
            entries.push(e);
        }
        None
    }

    /// An acknowledged acks=all write: it must be committed with that value (`acked_write_kept`).
    pub(crate) fn acked(&mut self, partition: i32, offset: i64, value: u64) -> Option<Violation> {
        self.acked
            .entry(partition)
            .or_default()
            .push((offset, value));
        let committed = self
            .committed
            .get(&partition)
            .and_then(|(e, _)| e.get(offset as usize));
        (committed.map(|e| e.value) != Some(value)).then(|| {
            violation(
                "acked_write_kept",
                0,
                format!("partition {partition}: acknowledged value {value} at offset {offset}, committed {committed:?}"),
            )
        })
    }

    /// A consumer read: below the HW, and the committed record (`read_below_hw`).
    pub(crate) fn read(
        &self,
        partition: i32,
        offset: i64,
        entry: Entry,
        hw: i64,
        now_ms: u64,
    ) -> Option<Violation> {
        let committed = self
            .committed
            .get(&partition)
            .and_then(|(e, _)| e.get(offset as usize));
        if offset >= hw || committed != Some(&entry) {
            return Some(violation(
                "read_below_hw",
                now_ms,
                format!("partition {partition}: read {entry:?} at offset {offset} (HW {hw}), committed {committed:?}"),
            ));
        }
        None
    }
}

/// `hw_frozen_below_min_isr`: a leader's HW moves only while its committed ISR has at least
/// `min.insync.replicas` members (capped at the replica count).
pub(crate) fn hw_frozen_below_min_isr(
    broker: i32,
    partition: i32,
    state: &LeaderState,
    hw: i64,
    now_ms: u64,
) -> Option<Violation> {
    let min = (super::MIN_INSYNC_REPLICAS as usize).min(state.replicas().len());
    (state.committed_isr().len() < min).then(|| {
        violation(
            "hw_frozen_below_min_isr",
            now_ms,
            format!(
                "partition {partition}: leader {broker} moved its HW to {hw} with committed ISR {:?}",
                state.committed_isr()
            ),
        )
    })
}

/// `leader_from_isr`: a committed change that gives a partition a new leader takes it from the
/// ISR before the change (unclean election is off).
pub(crate) fn leader_from_isr(
    old: &PartitionAssignment,
    new: &PartitionAssignment,
    now_ms: u64,
) -> Option<Violation> {
    let elected = new.leader != old.leader && new.leader != PartitionAssignment::NO_LEADER;
    (elected && !old.isr.contains(&new.leader)).then(|| {
        violation(
            "leader_from_isr",
            now_ms,
            format!(
                "partition {}: {} elected at leader epoch {} outside the ISR {:?}",
                new.partition, new.leader, new.leader_epoch, old.isr
            ),
        )
    })
}

/// Every check that looks at the whole world, after every step.
pub(crate) fn after_step(w: &ReplWorld) -> Vec<Violation> {
    let mut out = Vec::new();
    out.extend(isr_holds_committed(w));
    out.extend(replicas_agree_below_hw(w));
    out.extend(acked_write_kept(w));
    out
}

fn replica_log(w: &ReplWorld, broker: i32, partition: i32) -> Option<&ReplicaLog> {
    w.broker(broker).replicas.get(&partition).map(|r| &r.log)
}

/// `isr_holds_committed`: every member of the ISR the controller committed holds the whole
/// committed prefix: whoever is elected next loses nothing.
fn isr_holds_committed(w: &ReplWorld) -> Vec<Violation> {
    let mut out = Vec::new();
    // A broker that has not opened the partition yet holds an empty log.
    let empty = ReplicaLog::default();
    for (_, p) in w.ctrl.image.partitions() {
        let len = w.hist.committed_len(p.partition);
        let want = w.hist.committed_hash(p.partition, len);
        for &m in &p.isr {
            let log = replica_log(w, m, p.partition).unwrap_or(&empty);
            if log.prefix_hash(len) != Some(want) {
                let end = log.end();
                out.push(violation(
                    "isr_holds_committed",
                    w.now_ms,
                    format!(
                        "partition {}: ISR member {m} (ISR {:?}, partition epoch {}) has log end {end} and lacks or differs from the committed prefix of {len}",
                        p.partition, p.isr, p.partition_epoch
                    ),
                ));
            }
        }
    }
    out
}

/// `replicas_agree_below_hw`: every replica's log below its own HW is the committed prefix,
/// so any two replicas agree below the smaller of their HWs.
fn replicas_agree_below_hw(w: &ReplWorld) -> Vec<Violation> {
    let mut out = Vec::new();
    for b in &w.brokers {
        for (&partition, r) in &b.replicas {
            let hw = r.log.hw.max(0) as usize;
            let len = w.hist.committed_len(partition);
            if hw > len || r.log.prefix_hash(hw) != Some(w.hist.committed_hash(partition, hw)) {
                out.push(violation(
                    "replicas_agree_below_hw",
                    w.now_ms,
                    format!(
                        "partition {partition}: broker {} has HW {hw} (log end {}) over records that differ from the committed prefix of {len}",
                        b.id,
                        r.log.end()
                    ),
                ));
            }
        }
    }
    out
}

/// `acked_write_kept`: the partition's current leader (per the controller) holds every
/// acknowledged write once it acts as leader at that epoch.
fn acked_write_kept(w: &ReplWorld) -> Vec<Violation> {
    let mut out = Vec::new();
    for (_, p) in w.ctrl.image.partitions() {
        if p.leader == PartitionAssignment::NO_LEADER {
            continue;
        }
        let b = w.broker(p.leader);
        let Some(r) = b.replicas.get(&p.partition) else {
            continue;
        };
        let leading = matches!(&r.role, Some(Role::Leader { leader_epoch, .. }) if *leader_epoch == p.leader_epoch);
        if !leading || b.down_until_ms.is_some() {
            continue;
        }
        let Some(&(offset, value)) = w.hist.acked.get(&p.partition).and_then(|a| a.iter().max())
        else {
            continue;
        };
        let n = offset as usize + 1;
        if r.log.prefix_hash(n) != Some(w.hist.committed_hash(p.partition, n)) {
            out.push(violation(
                "acked_write_kept",
                w.now_ms,
                format!(
                    "partition {}: leader {} at epoch {} (log end {}) lost acknowledged records up to value {value} at offset {offset}",
                    p.partition,
                    p.leader,
                    p.leader_epoch,
                    r.log.end()
                ),
            ));
        }
    }
    out
}

/// After the heal: every partition has a leader acting at its epoch, holding each acknowledged
/// write at its offset (`acked_write_kept`), and the cluster made progress (`liveness`).
pub(crate) fn at_end(w: &ReplWorld) -> Vec<Violation> {
    let mut out = Vec::new();
    for (_, p) in w.ctrl.image.partitions() {
        let leader_log = (p.leader != PartitionAssignment::NO_LEADER)
            .then(|| w.broker(p.leader))
            .and_then(|b| b.replicas.get(&p.partition))
            .filter(|r| matches!(&r.role, Some(Role::Leader { leader_epoch, .. }) if *leader_epoch == p.leader_epoch))
            .map(|r| &r.log);
        let Some(log) = leader_log else {
            out.push(violation(
                "liveness",
                w.now_ms,
                format!(
                    "partition {}: no acting leader after the heal (image leader {}, ISR {:?})",
                    p.partition, p.leader, p.isr
                ),
            ));
            continue;
        };
        for &(offset, value) in w
            .hist
            .acked
            .get(&p.partition)
            .map_or(&[][..], |a| a.as_slice())
        {
            if log.entries().get(offset as usize).map(|e| e.value) != Some(value) {
                out.push(violation(
                    "acked_write_kept",
                    w.now_ms,
                    format!("partition {}: acknowledged value {value} at offset {offset} is not in the final leader's log", p.partition),
                ));
            }
        }
    }
    out
}

//! Replica placement for new partitions: which brokers hold them, who leads first.
//!
//! Owns: the placement rule. Candidates are the eligible brokers (registered, unfenced, not
//! shutting down), in node id order. Without racks it is round-robin: partition `p`'s replicas
//! are the candidates from index `start + p` on. With racks it follows Kafka's striped placer:
//! the candidates are interleaved rack by rack (first broker of each rack, then the second
//! ...), and each partition takes one replica per rack before a second from any rack. The first
//! replica leads, every replica is in sync, epochs 0. `start` spreads leaders across calls; the
//! runtime passes a random number (this module takes it as an input to stay deterministic).
//! Must never: place a replica on a fenced or shutting-down broker, read randomness or time.

use std::collections::BTreeMap;

use crate::command::PartitionAssignment;
use crate::image::{Image, PARTITIONS_PER_TOPIC_MAX};
use crate::MetaError;

/// Places partitions `first_partition .. first_partition + count` with `replication_factor`
/// replicas each over the eligible brokers of `image`, starting the rotation at `start`.
/// Errors: INVALID_REPLICATION_FACTOR when the factor is below 1 or above the eligible broker
/// count; INVALID_PARTITIONS when `count` is below 1 or above the per-topic limit.
pub fn place(
    image: &Image,
    first_partition: i32,
    count: usize,
    replication_factor: usize,
    start: u64,
) -> Result<Vec<PartitionAssignment>, MetaError> {
    let candidates = rack_interleaved(image);
    if replication_factor < 1 || replication_factor > candidates.len() {
        // Kafka's `StripedReplicaPlacer` message; CreateTopics prefixes it with "Unable to
        // replicate the partition N time(s): ", CreatePartitions does not.
        return Err(MetaError::InvalidReplicationFactor(format!(
            "The target replication factor of {replication_factor} cannot be reached because \
             only {} broker(s) are registered.",
            candidates.len()
        )));
    }
    let last = usize::try_from(first_partition)
        .ok()
        .and_then(|first| first.checked_add(count));
    if count < 1 || last.is_none_or(|last| last > PARTITIONS_PER_TOPIC_MAX) {
        return Err(MetaError::InvalidPartitions(format!(
            "cannot place {count} partition(s) from {first_partition}: a topic has 1 to \
             {PARTITIONS_PER_TOPIC_MAX} partitions"
        )));
    }
    let racks = candidates
        .iter()
        .map(|(_, rack)| *rack)
        .collect::<std::collections::BTreeSet<_>>()
        .len();
    let n = candidates.len();
    let offset = (start % n as u64) as usize;
    Ok((0..count)
        .map(|i| {
            let first = (offset + i) % n;
            let order = (0..n).map(|k| (first + k) % n);
            let mut replicas: Vec<i32> = Vec::with_capacity(replication_factor);
            let mut used_racks = Vec::with_capacity(racks);
            // Pass 1: one replica per rack, in rotation order; pass 2: fill from the rest.
            for (node, rack) in order.clone().map(|k| candidates[k]) {
                if replicas.len() < replication_factor && !used_racks.contains(&rack) {
                    used_racks.push(rack);
                    replicas.push(node);
                }
            }
            for (node, _) in order.map(|k| candidates[k]) {
                if replicas.len() < replication_factor && !replicas.contains(&node) {
                    replicas.push(node);
                }
            }
            assert_eq!(
                replicas.len(),
                replication_factor,
                "placement fills every replica"
            );
            PartitionAssignment::led_by_first(first_partition + i as i32, replicas)
        })
        .collect())
}

/// A manually assigned partition as Kafka's controller registers it: the ISR is the eligible
/// replicas (unfenced, not shutting down) in assignment order, the first of them leads, epochs
/// 0. None when no replica is eligible (Kafka: INVALID_REPLICA_ASSIGNMENT, "All brokers
/// specified in the manual partition assignment for partition N are fenced or in controlled
/// shutdown.").
pub fn manual_assignment(
    image: &Image,
    partition: i32,
    replicas: Vec<i32>,
) -> Option<PartitionAssignment> {
    let isr: Vec<i32> = replicas
        .iter()
        .copied()
        .filter(|r| image.is_eligible(*r))
        .collect();
    Some(PartitionAssignment {
        partition,
        leader: *isr.first()?,
        leader_epoch: 0,
        partition_epoch: 0,
        isr,
        replicas,
    })
}

/// Eligible brokers as `(node id, rack)`, interleaved by rack: the first broker of each rack
/// (racks in name order, no rack first), then the second of each, and so on.
fn rack_interleaved(image: &Image) -> Vec<(i32, Option<&str>)> {
    let mut by_rack: BTreeMap<Option<&str>, Vec<i32>> = BTreeMap::new();
    for b in image.eligible_brokers() {
        by_rack
            .entry(b.rack.as_deref())
            .or_default()
            .push(b.node_id);
    }
    let deepest = by_rack.values().map(Vec::len).max().unwrap_or(0);
    (0..deepest)
        .flat_map(|depth| {
            by_rack
                .iter()
                .filter_map(move |(rack, nodes)| nodes.get(depth).map(|n| (*n, *rack)))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::command::Command;

    /// Brokers `(id, rack)` registered and unfenced.
    fn image(brokers: &[(i32, Option<&str>)]) -> Image {
        let mut image = Image::default();
        for (id, rack) in brokers {
            image.advance_to(image.position + 1);
            image
                .apply(&Command::RegisterBroker {
                    node_id: *id,
                    incarnation_id: 1,
                    host: "h".into(),
                    port: 1,
                    rack: rack.map(str::to_string),
                })
                .unwrap();
            let epoch = image.brokers[id].epoch;
            image
                .apply(&Command::UnfenceBroker {
                    node_id: *id,
                    epoch,
                })
                .unwrap();
        }
        image
    }

    fn replicas(placed: &[PartitionAssignment]) -> Vec<Vec<i32>> {
        placed.iter().map(|p| p.replicas.clone()).collect()
    }

    #[test]
    fn without_racks_it_is_round_robin_from_start() {
        let image = image(&[(1, None), (2, None), (3, None)]);
        let placed = place(&image, 0, 4, 2, 0).unwrap();
        assert_eq!(
            replicas(&placed),
            vec![vec![1, 2], vec![2, 3], vec![3, 1], vec![1, 2]]
        );
        let placed = place(&image, 5, 2, 1, 7).unwrap();
        assert_eq!(replicas(&placed), vec![vec![2], vec![3]]);
        assert_eq!(placed[0].partition, 5);
    }

    #[test]
    fn each_partition_is_led_by_its_first_replica_all_in_sync_at_epochs_0() {
        let image = image(&[(1, None), (2, None), (3, None)]);
        for p in place(&image, 0, 3, 3, 1).unwrap() {
            assert_eq!(p.leader, p.replicas[0]);
            assert_eq!(p.isr, p.replicas);
            assert_eq!((p.leader_epoch, p.partition_epoch), (0, 0));
        }
    }

    #[test]
    fn racks_get_one_replica_each_before_any_gets_two() {
        // Rack a: 1, 2; rack b: 3; rack c: 4, 5, 6.
        let image = image(&[
            (1, Some("a")),
            (2, Some("a")),
            (3, Some("b")),
            (4, Some("c")),
            (5, Some("c")),
            (6, Some("c")),
        ]);
        assert_eq!(
            rack_interleaved(&image)
                .iter()
                .map(|(n, _)| *n)
                .collect::<Vec<_>>(),
            vec![1, 3, 4, 2, 5, 6]
        );
        let rack = |n: i32| image.brokers[&n].rack.clone();
        for start in 0..6 {
            for p in place(&image, 0, 6, 3, start).unwrap() {
                let mut racks: Vec<_> = p.replicas.iter().map(|n| rack(*n)).collect();
                racks.sort();
                racks.dedup();
                assert_eq!(racks.len(), 3, "{:?} spans every rack", p.replicas);
            }
        }
        // Four replicas over three racks: every rack once, then a second from one of them.
        for p in place(&image, 0, 6, 4, 0).unwrap() {
            let mut racks: Vec<_> = p.replicas.iter().map(|n| rack(*n)).collect();
            racks.sort();
            racks.dedup();
            assert_eq!(racks.len(), 3);
        }
        // Leaders rotate over the interleaved order.
        let leaders: Vec<i32> = place(&image, 0, 6, 1, 0)
            .unwrap()
            .iter()
            .map(|p| p.leader)
            .collect();
        assert_eq!(leaders, vec![1, 3, 4, 2, 5, 6]);
    }

    #[test]
    fn fenced_and_shutting_down_brokers_get_nothing() {
        let mut image = image(&[(1, None), (2, None), (3, None)]);
        let epoch = |image: &Image, n: i32| image.brokers[&n].epoch;
        let e = epoch(&image, 2);
        image
            .apply(&Command::FenceBroker {
                node_id: 2,
                epoch: e,
            })
            .unwrap();
        let e = epoch(&image, 3);
        image
            .apply(&Command::BeginControlledShutdown {
                node_id: 3,
                epoch: e,
            })
            .unwrap();
        assert_eq!(
            replicas(&place(&image, 0, 3, 1, 0).unwrap()),
            vec![vec![1]; 3]
        );
        let e = place(&image, 0, 1, 2, 0).unwrap_err();
        assert!(matches!(e, MetaError::InvalidReplicationFactor(_)), "{e:?}");
    }

    #[test]
    fn bad_factors_and_counts_are_refused_with_kafka_codes() {
        let image = image(&[(1, None), (2, None)]);
        for rf in [0, 3] {
            let e = place(&image, 0, 1, rf, 0).unwrap_err();
            assert_eq!(e.kafka_error_code(), 38, "{e}");
            assert!(e.to_string().contains("only 2 broker(s)"), "{e}");
        }
        for (first, count) in [(0, 0), (0, PARTITIONS_PER_TOPIC_MAX + 1), (-1, 1)] {
            let e = place(&image, first, count, 1, 0).unwrap_err();
            assert_eq!(e.kafka_error_code(), 37, "{e}");
        }
        let e = place(&Image::default(), 0, 1, 1, 0).unwrap_err();
        assert_eq!(e.kafka_error_code(), 38);
    }

    #[test]
    fn a_manual_assignment_is_in_sync_on_its_eligible_replicas_led_by_the_first() {
        let mut image = image(&[(1, None), (2, None), (3, None)]);
        let e = image.brokers[&1].epoch;
        image
            .apply(&Command::FenceBroker {
                node_id: 1,
                epoch: e,
            })
            .unwrap();
        let p = manual_assignment(&image, 4, vec![1, 3, 2]).unwrap();
        assert_eq!((p.partition, p.leader, p.isr), (4, 3, vec![3, 2]));
        assert_eq!(p.replicas, vec![1, 3, 2]);
        assert!(manual_assignment(&image, 0, vec![1]).is_none());
    }

    #[test]
    fn placements_are_valid_creations() {
        let image = image(&[(1, Some("a")), (2, Some("b")), (3, None)]);
        let placed = place(&image, 0, 5, 2, 9).unwrap();
        image
            .validate(&Command::CreateTopic {
                topic_id: crate::TopicId([1; 16]),
                name: "t".into(),
                partitions: placed,
                configs: vec![],
            })
            .unwrap();
    }
}

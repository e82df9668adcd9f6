//! Property tests of the metadata image over random command sequences, through the public API.
//!
//! Properties, checked after every command: `apply` never panics and agrees with `validate`; a
//! refused command leaves the image unchanged; every image invariant holds
//! (`Image::check_consistency`); leader and partition epochs and broker epochs never decrease;
//! commands survive their encoding; the snapshot round-trips exactly (same image, same bytes)
//! and a replica that installs it and applies the rest ends identical; equal command sequences
//! give equal digests. Commands are half plausible (current epochs, controller-like batches)
//! and half noise, from a seeded xorshift generator, so a failure names its seed.

use std::collections::BTreeMap;

use josefine_meta::{Command, Image, PartitionAssignment, TopicId};

mod common;
use common::Rng;

const NODES: i32 = 5;

fn topic_id(n: usize) -> TopicId {
    TopicId([1 + n as u8; 16])
}

/// Distinct nodes from 0..NODES, 1 to 3 of them.
fn some_nodes(rng: &mut Rng) -> Vec<i32> {
    let mut nodes: Vec<i32> = (0..NODES).collect();
    for i in (1..nodes.len()).rev() {
        nodes.swap(i, rng.below(i + 1));
    }
    nodes.truncate(1 + rng.below(3));
    nodes
}

fn any_partition<'a>(
    rng: &mut Rng,
    image: &'a Image,
) -> Option<(TopicId, &'a PartitionAssignment)> {
    let all: Vec<_> = image.partitions().collect();
    (!all.is_empty()).then(|| all[rng.below(all.len())])
}

fn epoch_of(rng: &mut Rng, image: &Image, node_id: i32) -> i64 {
    match image.brokers.get(&node_id) {
        Some(b) if rng.percent(80) => b.epoch,
        _ => rng.below(4) as i64,
    }
}

/// A new partition as a controller would place it (sometimes on ineligible brokers).
fn new_partition(rng: &mut Rng, image: &Image, partition: i32) -> PartitionAssignment {
    let eligible: Vec<i32> = image.eligible_brokers().map(|b| b.node_id).collect();
    let replicas = if !eligible.is_empty() && rng.percent(80) {
        let start = rng.below(eligible.len());
        let rf = 1 + rng.below(eligible.len());
        (0..rf)
            .map(|j| eligible[(start + j) % eligible.len()])
            .collect()
    } else {
        some_nodes(rng)
    };
    PartitionAssignment::led_by_first(partition, replicas)
}

/// The leader changes a controller makes to take `node_id` out of leadership.
fn move_leaders_off(image: &Image, node_id: i32) -> Vec<Command> {
    image
        .broker_leads(node_id)
        .map(|(topic_id, p)| {
            let next = p
                .replicas
                .iter()
                .copied()
                .find(|r| *r != node_id && p.isr.contains(r) && image.is_eligible(*r));
            Command::ChangePartition {
                topic_id,
                partition: p.partition,
                expected_partition_epoch: p.partition_epoch,
                leader: Some(next.unwrap_or(PartitionAssignment::NO_LEADER)),
                isr: next.map(|_| p.isr.iter().copied().filter(|r| *r != node_id).collect()),
            }
        })
        .collect()
}

fn single(rng: &mut Rng, image: &Image) -> Command {
    let node_id = rng.below(NODES as usize) as i32;
    match rng.below(12) {
        0 => Command::RegisterBroker {
            node_id,
            incarnation_id: rng.below(3) as u128,
            host: "h".into(),
            port: 9092,
            rack: rng.percent(50).then(|| format!("r{}", rng.below(2))),
        },
        1 => Command::FenceBroker {
            node_id,
            epoch: epoch_of(rng, image, node_id),
        },
        2 | 3 => Command::UnfenceBroker {
            node_id,
            epoch: epoch_of(rng, image, node_id),
        },
        4 => Command::BeginControlledShutdown {
            node_id,
            epoch: epoch_of(rng, image, node_id),
        },
        5 | 6 => match any_partition(rng, image) {
            Some((topic_id, p)) => {
                let expected_partition_epoch = if rng.percent(80) {
                    p.partition_epoch
                } else {
                    rng.below(3) as i32
                };
                let leader = match rng.below(4) {
                    0 => None,
                    1 => Some(-1),
                    2 => Some(p.replicas[rng.below(p.replicas.len())]),
                    _ => Some(rng.below(NODES as usize + 1) as i32 - 1),
                };
                let isr = match rng.below(3) {
                    0 => None,
                    1 => Some(
                        p.replicas
                            .iter()
                            .copied()
                            .filter(|r| Some(*r) == leader || rng.percent(60))
                            .collect(),
                    ),
                    _ => Some(some_nodes(rng)),
                };
                Command::ChangePartition {
                    topic_id,
                    partition: p.partition,
                    expected_partition_epoch,
                    leader,
                    isr,
                }
            }
            None => Command::DeleteTopic {
                topic_id: topic_id(0),
            },
        },
        7 => {
            let n = 1 + rng.below(3);
            Command::CreateTopic {
                topic_id: topic_id(rng.below(4)),
                name: format!("t{}", rng.below(4)),
                partitions: (0..n as i32)
                    .map(|p| new_partition(rng, image, p))
                    .collect(),
                configs: vec![],
            }
        }
        8 => {
            let t = topic_id(rng.below(4));
            let first = image
                .topics
                .get(&t)
                .map_or(0, |t| t.partitions.len() as i32);
            let rf = image.topics.get(&t).map(|t| t.partitions[0].replicas.len());
            Command::CreatePartitions {
                topic_id: t,
                new_assignments: (0..1 + rng.below(2) as i32)
                    .map(|i| {
                        let mut p = new_partition(rng, image, first + i);
                        if let Some(rf) = rf.filter(|_| rng.percent(70)) {
                            if p.replicas.len() >= rf {
                                p.replicas.truncate(rf);
                                p.isr = p.replicas.clone();
                            }
                        }
                        p
                    })
                    .collect(),
            }
        }
        9 => Command::DeleteTopic {
            topic_id: topic_id(rng.below(4)),
        },
        10 => Command::AllocateProducerIds {
            broker_id: node_id,
            first_id: if rng.percent(80) {
                image.next_producer_id
            } else {
                rng.below(3) as i64
            },
            count: 1 + rng.below(1000) as i64,
        },
        _ => Command::InitCluster {
            cluster_id: "c".into(),
        },
    }
}

/// What a controller would batch: a fence, shutdown or re-registration with the leader changes
/// it needs (current epochs), or an unfence followed by elections.
fn controller_batch(rng: &mut Rng, image: &Image) -> Command {
    let node_id = rng.below(NODES as usize) as i32;
    let epoch = image.brokers.get(&node_id).map_or(0, |b| b.epoch);
    let first = match rng.below(4) {
        0 => Command::FenceBroker { node_id, epoch },
        1 => Command::BeginControlledShutdown { node_id, epoch },
        2 => Command::RegisterBroker {
            node_id,
            incarnation_id: 10 + rng.below(1000) as u128,
            host: "h".into(),
            port: 1,
            rack: None,
        },
        _ => {
            let mut batch = vec![Command::UnfenceBroker { node_id, epoch }];
            batch.extend(
                image
                    .partitions()
                    .filter(|(_, p)| p.leader == -1 && p.isr.contains(&node_id))
                    .map(|(topic_id, p)| Command::ChangePartition {
                        topic_id,
                        partition: p.partition,
                        expected_partition_epoch: p.partition_epoch,
                        leader: Some(node_id),
                        isr: None,
                    }),
            );
            return Command::Batch(batch);
        }
    };
    let mut batch = vec![first];
    batch.extend(move_leaders_off(image, node_id));
    Command::Batch(batch)
}

fn random_command(rng: &mut Rng, image: &Image) -> Command {
    match rng.below(10) {
        0..=2 => controller_batch(rng, image),
        3 => {
            let mut batch: Vec<Command> =
                (0..1 + rng.below(3)).map(|_| single(rng, image)).collect();
            if rng.percent(10) {
                batch.push(Command::Batch(vec![]));
            }
            Command::Batch(batch)
        }
        _ => single(rng, image),
    }
}

/// Epochs that must never decrease, keyed by what they belong to.
fn epochs(image: &Image) -> BTreeMap<String, i64> {
    let mut out = BTreeMap::new();
    for (id, b) in &image.brokers {
        out.insert(format!("broker {id}"), b.epoch);
    }
    for (t, p) in image.partitions() {
        out.insert(format!("{t}-{} leader", p.partition), p.leader_epoch as i64);
        out.insert(
            format!("{t}-{} partition", p.partition),
            p.partition_epoch as i64,
        );
    }
    out
}

#[test]
fn random_command_sequences_keep_every_invariant_and_snapshots_round_trip() {
    let mut outcomes = BTreeMap::<String, usize>::new();
    for seed in 1..=300u64 {
        let mut rng = Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
        let mut image = Image::default();
        let mut commands = Vec::new();
        let mut replica: Option<Image> = None;
        for step in 0..80u64 {
            let cmd = random_command(&mut rng, &image);
            if !contains_nested(&cmd) {
                let decoded = Command::decode(&cmd.encode());
                assert_eq!(decoded.ok().as_ref(), Some(&cmd), "seed {seed}: encoding");
            }
            let before = image.clone();
            let before_epochs = epochs(&image);
            image.advance_to(step + 1);
            let valid = image.validate(&cmd);
            let result = image.apply(&cmd);
            assert_eq!(valid.is_ok(), result.is_ok(), "seed {seed}: {cmd:?}");
            let kind = format!("{:?}", cmd)
                .split([' ', '('])
                .next()
                .unwrap()
                .to_string();
            *outcomes
                .entry(format!("{kind} {}", result.is_ok()))
                .or_default() += 1;
            if result.is_err() {
                let mut expected = before;
                expected.advance_to(step + 1);
                assert_eq!(
                    image, expected,
                    "seed {seed}: refused {cmd:?} changed the image"
                );
            }
            if let Err(e) = image.check_consistency() {
                panic!("seed {seed} step {step}: {cmd:?} broke an invariant: {e}");
            }
            for (what, epoch) in before_epochs {
                if let Some(now) = epochs(&image).get(&what) {
                    assert!(*now >= epoch, "seed {seed}: {what} went back");
                }
            }
            commands.push(cmd);
            let bytes = image.encode_snapshot();
            let back = Image::decode_snapshot(&bytes).expect("a snapshot decodes");
            assert_eq!(back, image, "seed {seed} step {step}");
            assert_eq!(back.encode_snapshot(), bytes, "seed {seed}: canonical");
            if step == 30 {
                replica = Some(back);
            }
            if let Some(r) = replica.as_mut().filter(|_| step > 30) {
                r.advance_to(step + 1);
                let _ = r.apply(commands.last().unwrap());
            }
        }
        assert_eq!(
            replica.as_ref(),
            Some(&image),
            "seed {seed}: replica from snapshot"
        );
        // Replaying the same commands at the same heights gives the same digest.
        let mut again = Image::default();
        for (step, cmd) in commands.iter().enumerate() {
            again.advance_to(step as u64 + 1);
            let _ = again.apply(cmd);
        }
        assert_eq!(again.digest(), image.digest(), "seed {seed}");
    }
    // The generator reaches success and refusal of every command kind.
    for kind in [
        "RegisterBroker",
        "FenceBroker",
        "UnfenceBroker",
        "BeginControlledShutdown",
        "ChangePartition",
        "CreateTopic",
        "CreatePartitions",
        "DeleteTopic",
        "AllocateProducerIds",
        "Batch",
    ] {
        for ok in [true, false] {
            assert!(
                outcomes
                    .get(&format!("{kind} {ok}"))
                    .is_some_and(|n| *n > 0),
                "{kind} {ok} never happened: {outcomes:?}"
            );
        }
    }
}

fn contains_nested(cmd: &Command) -> bool {
    match cmd {
        Command::Batch(all) => all.iter().any(|c| matches!(c, Command::Batch(_))),
        _ => false,
    }
}

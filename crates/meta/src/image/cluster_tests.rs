//! Rule-by-rule tests of the cluster commands: registration, fencing, controlled shutdown,
//! partition changes, batches, and the leader/ISR rules of topic creation.

use super::*;

const T: TopicId = TopicId([1; 16]);

fn register(node_id: i32, incarnation_id: u128) -> Command {
    Command::RegisterBroker {
        node_id,
        incarnation_id,
        host: format!("h{node_id}"),
        port: 9092,
        rack: None,
    }
}

fn fence(node_id: i32, epoch: i64) -> Command {
    Command::FenceBroker { node_id, epoch }
}

fn unfence(node_id: i32, epoch: i64) -> Command {
    Command::UnfenceBroker { node_id, epoch }
}

fn shutdown(node_id: i32, epoch: i64) -> Command {
    Command::BeginControlledShutdown { node_id, epoch }
}

fn change(partition: i32, expected: i32, leader: Option<i32>, isr: Option<Vec<i32>>) -> Command {
    Command::ChangePartition {
        topic_id: T,
        partition,
        expected_partition_epoch: expected,
        leader,
        isr,
    }
}

/// Applies at the next height, as the store does.
fn step(image: &mut Image, cmd: &Command) -> Result<Applied, MetaError> {
    image.advance_to(image.position + 1);
    image.apply(cmd)
}

/// Brokers 1, 2, 3 registered at epochs 1, 2, 3 and unfenced; topic T with partition 0 on
/// [1, 2, 3], partition 1 on [2, 3, 1], partition 2 on [3] (each led by its first replica).
fn cluster() -> Image {
    let mut image = Image::default();
    for node in 1..=3 {
        step(&mut image, &register(node, node as u128)).unwrap();
    }
    for node in 1..=3 {
        step(&mut image, &unfence(node, node as i64)).unwrap();
    }
    step(
        &mut image,
        &Command::CreateTopic {
            topic_id: T,
            name: "t".into(),
            partitions: vec![
                PartitionAssignment::led_by_first(0, vec![1, 2, 3]),
                PartitionAssignment::led_by_first(1, vec![2, 3, 1]),
                PartitionAssignment::led_by_first(2, vec![3]),
            ],
            configs: vec![],
        },
    )
    .unwrap();
    image
}

/// Fences broker 3 of [`cluster`], leaving partition 2 (which it alone leads) leaderless.
fn fence_broker_3(image: &mut Image) {
    image
        .apply(&Command::Batch(vec![
            fence(3, 3),
            change(2, 0, Some(-1), None),
        ]))
        .unwrap();
}

fn p(image: &Image, partition: i32) -> &PartitionAssignment {
    image.partition(T, partition).unwrap()
}

/// Asserts `cmd` is refused by both validate and apply, leaving the image unchanged.
#[track_caller]
fn refused(image: &mut Image, cmd: &Command) -> MetaError {
    let before = image.clone();
    let v = image.validate(cmd).expect_err("validate refuses");
    let a = image.apply(cmd).expect_err("apply refuses");
    assert_eq!(v.to_string(), a.to_string());
    assert_eq!(*image, before, "a refused command changed the image");
    a
}

// ---- position ----

#[test]
fn advance_to_moves_forward_or_stays() {
    let mut image = Image::default();
    image.advance_to(5);
    image.advance_to(5);
    assert_eq!(image.position, 5);
}

#[test]
#[should_panic(expected = "went back")]
fn advance_to_never_goes_back() {
    let mut image = Image::default();
    image.advance_to(5);
    image.advance_to(4);
}

// ---- RegisterBroker ----

#[test]
fn registration_starts_fenced_with_the_position_as_epoch() {
    let mut image = Image::default();
    image.advance_to(41);
    let applied = image
        .apply(&Command::RegisterBroker {
            node_id: 4,
            incarnation_id: 9,
            host: "h".into(),
            port: 1,
            rack: Some("r1".into()),
        })
        .unwrap();
    assert_eq!(
        applied,
        Applied::BrokerRegistered {
            node_id: 4,
            epoch: 41
        }
    );
    let b = &image.brokers[&4];
    assert_eq!(
        (b.epoch, b.fenced, b.in_controlled_shutdown),
        (41, true, false)
    );
    assert_eq!((b.incarnation_id, b.rack.as_deref()), (9, Some("r1")));
    assert_eq!(image.unfenced_brokers().count(), 0);
}

#[test]
fn the_same_incarnation_registering_again_is_a_duplicate_naming_its_epoch() {
    let mut image = cluster();
    image.advance_to(100);
    let e = refused(&mut image, &register(2, 2));
    assert!(
        matches!(
            e,
            MetaError::DuplicateBrokerRegistration {
                node_id: 2,
                epoch: 2
            }
        ),
        "{e:?}"
    );
    assert_eq!(e.kafka_error_code(), 101);
}

#[test]
fn a_new_incarnation_replaces_the_registration_fenced_with_a_new_epoch() {
    let mut image = Image::default();
    step(&mut image, &register(1, 1)).unwrap();
    step(&mut image, &unfence(1, 1)).unwrap();
    step(&mut image, &register(1, 2)).unwrap();
    let b = &image.brokers[&1];
    assert_eq!((b.incarnation_id, b.epoch, b.fenced), (2, 3, true));
}

#[test]
fn a_new_incarnation_is_refused_while_the_old_one_leads() {
    let mut image = cluster();
    image.advance_to(100);
    let e = refused(&mut image, &register(3, 33));
    assert!(matches!(e, MetaError::IneligibleReplica(_)), "{e:?}");
    // Batched with moving its leaderships off, it is accepted.
    let batch = Command::Batch(vec![
        register(3, 33),
        change(1, 0, Some(2), Some(vec![2, 1])),
        change(2, 0, Some(-1), None),
    ]);
    image.apply(&batch).unwrap();
    assert_eq!(image.brokers[&3].epoch, 100);
    assert!(image.brokers[&3].fenced);
    assert_eq!(image.broker_leads(3).count(), 0);
}

#[test]
fn a_registration_needs_a_newer_position_than_the_one_it_replaces() {
    let mut image = Image::default();
    image.apply(&register(1, 1)).unwrap();
    let e = refused(&mut image, &register(1, 2));
    assert!(
        matches!(e, MetaError::InvalidBrokerRegistration(_)),
        "{e:?}"
    );
}

#[test]
fn registrations_with_bad_ids_or_endpoints_are_refused() {
    let mut image = Image::default();
    let mut bad = register(-1, 1);
    refused(&mut image, &bad);
    if let Command::RegisterBroker { node_id, host, .. } = &mut bad {
        *node_id = 1;
        host.clear();
    }
    let e = refused(&mut image, &bad);
    assert_eq!(e.kafka_error_code(), 119);
}

// ---- FenceBroker ----

#[test]
fn fencing_needs_the_current_epoch_and_an_unfenced_broker() {
    let mut image = Image::default();
    step(&mut image, &register(1, 1)).unwrap();
    let e = refused(&mut image, &fence(1, 1));
    assert!(matches!(e, MetaError::InvalidBrokerState { .. }), "{e:?}");
    step(&mut image, &unfence(1, 1)).unwrap();
    let e = refused(&mut image, &fence(1, 0));
    assert!(
        matches!(
            e,
            MetaError::StaleBrokerEpoch {
                node_id: 1,
                current: 1,
                given: 0
            }
        ),
        "{e:?}"
    );
    assert_eq!(e.kafka_error_code(), 77);
    let e = refused(&mut image, &fence(7, 1));
    assert!(matches!(e, MetaError::BrokerNotRegistered(7)), "{e:?}");
    assert_eq!(e.kafka_error_code(), 102);
    assert_eq!(
        image.apply(&fence(1, 1)).unwrap(),
        Applied::BrokerFenced { node_id: 1 }
    );
    assert!(image.brokers[&1].fenced);
}

#[test]
fn a_leader_is_fenced_only_together_with_its_leader_changes() {
    let mut image = cluster();
    let e = refused(&mut image, &fence(3, 3));
    assert!(matches!(e, MetaError::IneligibleReplica(_)), "{e:?}");
    // The batch may fence first and move leaderships after: invariants hold at its end.
    let batch = Command::Batch(vec![
        fence(3, 3),
        change(1, 0, None, Some(vec![2, 1])),
        change(2, 0, Some(-1), None),
    ]);
    let applied = image.apply(&batch).unwrap();
    assert_eq!(
        applied,
        Applied::Batch(vec![
            Applied::BrokerFenced { node_id: 3 },
            Applied::PartitionChanged {
                topic_id: T,
                partition: 1
            },
            Applied::PartitionChanged {
                topic_id: T,
                partition: 2
            },
        ])
    );
    // The last ISR member stays in the ISR of a leaderless partition.
    assert_eq!((p(&image, 2).leader, &p(&image, 2).isr), (-1, &vec![3]));
    assert_eq!(
        (p(&image, 1).leader_epoch, p(&image, 1).partition_epoch),
        (0, 1)
    );
    assert_eq!(p(&image, 2).leader_epoch, 1);
}

#[test]
fn a_batch_that_leaves_a_fenced_leader_is_refused_whole() {
    let mut image = cluster();
    let batch = Command::Batch(vec![fence(3, 3), change(1, 0, None, Some(vec![2, 1]))]);
    let e = refused(&mut image, &batch);
    assert!(matches!(e, MetaError::IneligibleReplica(_)), "{e:?}");
}

// ---- UnfenceBroker ----

#[test]
fn unfencing_needs_the_current_epoch_a_fenced_broker_not_shutting_down() {
    let mut image = Image::default();
    step(&mut image, &register(1, 1)).unwrap();
    let e = refused(&mut image, &unfence(1, 0));
    assert!(matches!(e, MetaError::StaleBrokerEpoch { .. }), "{e:?}");
    refused(&mut image, &unfence(2, 1));
    assert_eq!(
        image.apply(&unfence(1, 1)).unwrap(),
        Applied::BrokerUnfenced { node_id: 1 }
    );
    assert!(image.is_eligible(1));
    let e = refused(&mut image, &unfence(1, 1));
    assert!(matches!(e, MetaError::InvalidBrokerState { .. }), "{e:?}");
    image.apply(&shutdown(1, 1)).unwrap();
    image.apply(&fence(1, 1)).unwrap();
    let e = refused(&mut image, &unfence(1, 1));
    assert!(e.to_string().contains("shutting down"), "{e}");
}

// ---- BeginControlledShutdown ----

#[test]
fn controlled_shutdown_needs_the_current_epoch_and_an_unfenced_broker() {
    let mut image = Image::default();
    step(&mut image, &register(1, 1)).unwrap();
    let e = refused(&mut image, &shutdown(1, 1));
    assert!(e.to_string().contains("fenced"), "{e}");
    step(&mut image, &unfence(1, 1)).unwrap();
    refused(&mut image, &shutdown(1, 2));
    assert_eq!(
        image.apply(&shutdown(1, 1)).unwrap(),
        Applied::ControlledShutdownBegun { node_id: 1 }
    );
    let b = &image.brokers[&1];
    assert!(b.in_controlled_shutdown && !b.fenced && !b.is_eligible());
    assert_eq!(image.unfenced_brokers().count(), 1);
    assert_eq!(image.eligible_brokers().count(), 0);
    let e = refused(&mut image, &shutdown(1, 1));
    assert!(e.to_string().contains("already"), "{e}");
}

#[test]
fn a_leader_begins_shutdown_only_together_with_its_leader_changes() {
    let mut image = cluster();
    refused(&mut image, &shutdown(2, 2));
    image
        .apply(&Command::Batch(vec![
            shutdown(2, 2),
            change(1, 0, Some(3), Some(vec![3, 1])),
            change(0, 0, None, Some(vec![1, 3])),
        ]))
        .unwrap();
    assert_eq!(image.broker_leads(2).count(), 0);
    // A shutting-down broker may not join an ISR again.
    let e = refused(&mut image, &change(0, 1, None, Some(vec![1, 3, 2])));
    assert!(matches!(e, MetaError::IneligibleReplica(_)), "{e:?}");
    assert_eq!(e.kafka_error_code(), 107);
}

// ---- ChangePartition ----

#[test]
fn a_leader_change_bumps_both_epochs_an_isr_change_only_the_partition_epoch() {
    let mut image = cluster();
    image.apply(&change(0, 0, None, Some(vec![1, 2]))).unwrap();
    assert_eq!(
        (
            p(&image, 0).leader,
            p(&image, 0).leader_epoch,
            p(&image, 0).partition_epoch
        ),
        (1, 0, 1)
    );
    image.apply(&change(0, 1, Some(2), None)).unwrap();
    assert_eq!(
        (
            p(&image, 0).leader,
            p(&image, 0).leader_epoch,
            p(&image, 0).partition_epoch
        ),
        (2, 1, 2)
    );
    // Naming the current leader is no leader change.
    image.apply(&change(0, 2, Some(2), Some(vec![2]))).unwrap();
    assert_eq!(
        (p(&image, 0).leader_epoch, p(&image, 0).partition_epoch),
        (1, 3)
    );
    // Leaderless with a non-empty ISR is a valid state; leading again bumps the epoch.
    image.apply(&change(0, 3, Some(-1), None)).unwrap();
    image.apply(&change(0, 4, Some(2), None)).unwrap();
    assert_eq!(
        (p(&image, 0).leader_epoch, p(&image, 0).partition_epoch),
        (3, 5)
    );
}

#[test]
fn a_change_names_the_current_partition_epoch() {
    let mut image = cluster();
    image.apply(&change(0, 0, None, Some(vec![1, 2]))).unwrap();
    let e = refused(&mut image, &change(0, 0, None, Some(vec![1])));
    assert!(
        matches!(
            e,
            MetaError::StalePartitionEpoch {
                current: 1,
                expected: 0,
                ..
            }
        ),
        "{e:?}"
    );
    assert_eq!(e.kafka_error_code(), 95);
}

#[test]
fn a_change_of_an_unknown_partition_is_refused() {
    let mut image = cluster();
    for partition in [-1, 3] {
        let e = refused(&mut image, &change(partition, 0, Some(1), None));
        assert!(matches!(e, MetaError::UnknownPartition { .. }), "{e:?}");
    }
    let mut other = change(0, 0, Some(1), None);
    if let Command::ChangePartition { topic_id, .. } = &mut other {
        *topic_id = TopicId([2; 16]);
    }
    refused(&mut image, &other);
}

#[test]
fn a_change_that_changes_nothing_is_refused() {
    let mut image = cluster();
    refused(&mut image, &change(0, 0, None, None));
    refused(&mut image, &change(0, 0, Some(1), Some(vec![1, 2, 3])));
}

#[test]
fn the_isr_stays_a_non_empty_subset_of_the_replicas_without_repeats() {
    let mut image = cluster();
    for isr in [vec![], vec![1, 1], vec![1, 4], vec![2, 3]] {
        let e = refused(&mut image, &change(2 - 2, 0, None, Some(isr.clone())));
        assert!(
            matches!(
                e,
                MetaError::InvalidPartitionChange(_) | MetaError::IneligibleReplica(_)
            ),
            "{isr:?}: {e:?}"
        );
    }
    let e = refused(&mut image, &change(2, 0, Some(-1), Some(vec![])));
    assert!(matches!(e, MetaError::InvalidPartitionChange(_)), "{e:?}");
}

#[test]
fn the_leader_is_an_eligible_isr_member() {
    let mut image = cluster();
    let e = refused(&mut image, &change(0, 0, Some(3), Some(vec![1, 2])));
    assert!(matches!(e, MetaError::InvalidPartitionChange(_)), "{e:?}");
    refused(&mut image, &change(0, 0, Some(-2), None));
    refused(&mut image, &change(0, 0, Some(4), None));
    // Broker 2 fenced (it leads partition 1: move it in the same batch).
    image
        .apply(&Command::Batch(vec![
            fence(2, 2),
            change(1, 0, Some(3), None),
        ]))
        .unwrap();
    let e = refused(&mut image, &change(0, 0, Some(2), None));
    assert!(matches!(e, MetaError::IneligibleReplica(_)), "{e:?}");
}

#[test]
fn a_fenced_broker_may_stay_in_the_isr_but_never_join_it() {
    let mut image = cluster();
    fence_broker_3(&mut image);
    // Partition 0 keeps fenced 3 in its ISR while shrinking another member.
    image.apply(&change(0, 0, None, Some(vec![1, 3]))).unwrap();
    // Removing 3 and adding it back: it may not rejoin while fenced.
    image.apply(&change(0, 1, None, Some(vec![1]))).unwrap();
    let e = refused(&mut image, &change(0, 2, None, Some(vec![1, 3])));
    assert!(matches!(e, MetaError::IneligibleReplica(_)), "{e:?}");
}

#[test]
fn exhausted_epochs_are_refused() {
    let mut image = cluster();
    let t = image.topics.get_mut(&T).unwrap();
    t.partitions[0].leader_epoch = i32::MAX;
    refused(&mut image, &change(0, 0, Some(2), None));
    // An ISR change does not need a leader epoch.
    image.apply(&change(0, 0, None, Some(vec![1, 2]))).unwrap();
    let t = image.topics.get_mut(&T).unwrap();
    t.partitions[0].partition_epoch = i32::MAX;
    refused(&mut image, &change(0, i32::MAX, None, Some(vec![1])));
}

// ---- CreateTopic / CreatePartitions: leader and ISR ----

fn create_one(assignment: PartitionAssignment) -> Command {
    Command::CreateTopic {
        topic_id: TopicId([9; 16]),
        name: "n".into(),
        partitions: vec![assignment],
        configs: vec![],
    }
}

#[test]
fn a_new_partition_is_led_by_an_eligible_isr_member_at_epochs_0() {
    let mut image = cluster();
    // Fence broker 3 (moving its leaderships) so it may not lead or be in sync.
    fence_broker_3(&mut image);
    let ok = PartitionAssignment {
        partition: 0,
        replicas: vec![3, 1, 2],
        leader: 1,
        leader_epoch: 0,
        partition_epoch: 0,
        isr: vec![1, 2],
    };
    image.validate(&create_one(ok.clone())).unwrap();
    let bads = [
        PartitionAssignment {
            leader: 3,
            isr: vec![3, 1],
            ..ok.clone()
        },
        PartitionAssignment {
            isr: vec![1, 2, 3],
            ..ok.clone()
        },
        PartitionAssignment {
            leader: 2,
            isr: vec![1],
            ..ok.clone()
        },
        PartitionAssignment {
            leader: -1,
            ..ok.clone()
        },
        PartitionAssignment {
            isr: vec![],
            ..ok.clone()
        },
        PartitionAssignment {
            isr: vec![1, 1],
            ..ok.clone()
        },
        PartitionAssignment {
            replicas: vec![1, 3],
            ..ok.clone()
        },
        PartitionAssignment {
            leader_epoch: 1,
            ..ok.clone()
        },
        PartitionAssignment {
            partition_epoch: 1,
            ..ok.clone()
        },
    ];
    for bad in bads {
        refused(&mut image, &create_one(bad.clone()));
        let add = Command::CreatePartitions {
            topic_id: T,
            new_assignments: vec![PartitionAssignment {
                partition: 3,
                ..bad.clone()
            }],
        };
        refused(&mut image, &add);
    }
    let add = Command::CreatePartitions {
        topic_id: T,
        new_assignments: vec![PartitionAssignment {
            partition: 3,
            replicas: vec![3, 1, 2],
            ..ok
        }],
    };
    image.apply(&add).unwrap();
    assert_eq!(p(&image, 3).leader, 1);
}

// ---- Batch ----

#[test]
fn a_batch_is_all_or_nothing() {
    let mut image = cluster();
    let batch = Command::Batch(vec![
        change(0, 0, None, Some(vec![1, 2])),
        Command::DeleteTopic { topic_id: T },
        change(0, 1, None, Some(vec![1])), // the topic is gone
    ]);
    let e = refused(&mut image, &batch);
    assert!(
        matches!(
            e,
            MetaError::UnknownTopicId(_) | MetaError::UnknownPartition { .. }
        ),
        "{e:?}"
    );
}

#[test]
fn later_commands_of_a_batch_see_the_earlier_ones() {
    let mut image = cluster();
    image
        .apply(&Command::Batch(vec![
            change(0, 0, None, Some(vec![1, 2])),
            change(0, 1, Some(2), None),
            Command::AllocateProducerIds {
                broker_id: 1,
                first_id: 0,
                count: 10,
            },
            Command::AllocateProducerIds {
                broker_id: 2,
                first_id: 10,
                count: 10,
            },
        ]))
        .unwrap();
    assert_eq!((p(&image, 0).leader, p(&image, 0).partition_epoch), (2, 2));
    assert_eq!(image.next_producer_id, 20);
}

#[test]
fn batches_are_non_empty_bounded_and_flat() {
    let mut image = cluster();
    let e = refused(&mut image, &Command::Batch(vec![]));
    assert!(matches!(e, MetaError::InvalidBatch(_)), "{e:?}");
    let e = refused(
        &mut image,
        &Command::Batch(vec![Command::Batch(vec![change(
            0,
            0,
            None,
            Some(vec![1]),
        )])]),
    );
    assert!(matches!(e, MetaError::InvalidBatch(_)), "{e:?}");
    let too_many = Command::Batch(vec![
        Command::DeleteTopic {
            topic_id: TopicId([5; 16])
        };
        BATCH_COMMANDS_MAX + 1
    ]);
    let e = refused(&mut image, &too_many);
    assert!(matches!(e, MetaError::InvalidBatch(_)), "{e:?}");
}

// ---- queries ----

#[test]
fn queries_name_partitions_leaders_and_eligible_brokers() {
    let mut image = cluster();
    assert_eq!(p(&image, 1).replicas, vec![2, 3, 1]);
    assert!(image.partition(T, 3).is_none());
    assert!(image.partition(TopicId([2; 16]), 0).is_none());
    assert_eq!(image.partitions().count(), 3);
    let leads: Vec<i32> = image.broker_leads(3).map(|(_, p)| p.partition).collect();
    assert_eq!(leads, vec![2]);
    fence_broker_3(&mut image);
    let unfenced: Vec<i32> = image.unfenced_brokers().map(|b| b.node_id).collect();
    assert_eq!(unfenced, vec![1, 2]);
    assert!(!image.is_eligible(3) && image.is_eligible(2) && !image.is_eligible(9));
}

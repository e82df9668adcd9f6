//! Rule-by-rule tests of the controller: each test names the rule it checks.

use super::*;

const T: TopicId = TopicId([1; 16]);
const TIMEOUT: u64 = 9_000;

fn settings() -> ControllerSettings {
    ControllerSettings::default()
}

/// Applies at the next height, as the store does; the command must apply.
#[track_caller]
pub(crate) fn step(image: &mut Image, cmd: &Command) {
    image.advance_to(image.position + 1);
    if let Err(e) = image.apply(cmd) {
        panic!("{cmd:?} did not apply: {e}");
    }
}

fn registration(node_id: i32, incarnation_id: u128) -> Registration {
    Registration {
        node_id,
        incarnation_id,
        host: format!("h{node_id}"),
        port: 9092,
        rack: None,
        listeners: Vec::new(),
    }
}

fn heartbeat(node_id: i32, broker_epoch: i64, current_position: u64) -> Heartbeat {
    Heartbeat {
        node_id,
        broker_epoch,
        current_position,
        want_fence: false,
        want_shutdown: false,
    }
}

/// Brokers 1, 2, 3 registered (epochs 1, 2, 3) and unfenced through the controller; topic T
/// with partition 0 on [1, 2, 3], 1 on [2, 3, 1], 2 on [3] (led by their first replicas).
pub(crate) fn cluster() -> (Image, Controller) {
    let mut image = Image::default();
    let mut c = Controller::activate(&image, 0, settings());
    for node in 1..=3 {
        match c.register(&image, registration(node, 10 + node as u128), &[1, 2, 3], 0) {
            Ok(RegisterDecision::Propose(cmd)) => step(&mut image, &cmd),
            other => panic!("{other:?}"),
        }
    }
    for node in 1..=3 {
        let (reply, cmd) = c.heartbeat(&image, heartbeat(node, node as i64, image.position), 0);
        assert!(reply.error.is_none() && !reply.is_fenced);
        step(&mut image, &cmd.expect("unfence"));
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
    );
    (image, c)
}

/// Lets only `node`'s session expire (the others heartbeat at 5 s) and applies its fence.
fn expire_only(image: &mut Image, c: &mut Controller, node: i32) {
    for other in (1..=3).filter(|n| *n != node) {
        c.heartbeat(image, heartbeat(other, other as i64, image.position), 5_000);
    }
    let commands = c.tick(image, TIMEOUT + 1);
    assert_eq!(
        commands.len(),
        1,
        "only broker {node} expired: {commands:?}"
    );
    step(image, &commands[0]);
    assert!(image.brokers[&node].fenced);
}

fn p(image: &Image, partition: i32) -> &PartitionAssignment {
    image.partition(T, partition).unwrap()
}

fn leader_isr(image: &Image, partition: i32) -> (i32, Vec<i32>) {
    (p(image, partition).leader, p(image, partition).isr.clone())
}

// ---- activation and sessions ----

#[test]
fn activation_gives_every_unfenced_broker_a_session_from_now() {
    let (mut image, _) = cluster();
    step(
        &mut image,
        &Command::Batch(vec![
            Command::FenceBroker {
                node_id: 3,
                epoch: 3,
            },
            Command::ChangePartition {
                topic_id: T,
                partition: 2,
                expected_partition_epoch: 0,
                leader: Some(-1),
                isr: None,
            },
        ]),
    );
    let mut c = Controller::activate(&image, 50_000, settings());
    assert_eq!(c.next_deadline_ms(), Some(50_000 + TIMEOUT + 1));
    assert!(c.tick(&image, 50_000 + TIMEOUT).is_empty());
    // Brokers 1 and 2 expire; fenced broker 3 had no session to expire.
    let fences = c.tick(&image, 50_000 + TIMEOUT + 1);
    assert_eq!(fences.len(), 2, "{fences:?}");
    // No session left: only the periodic rounds (unclean, rebalance) remain due.
    assert_eq!(c.next_deadline_ms(), Some(50_000 + 300_000));
}

#[test]
fn heartbeats_keep_a_session_alive() {
    let (image, mut c) = cluster();
    for now in (2_000..=40_000).step_by(2_000) {
        for node in 1..=3 {
            let (reply, cmd) =
                c.heartbeat(&image, heartbeat(node, node as i64, image.position), now);
            assert!(reply.error.is_none() && cmd.is_none());
        }
        assert!(c.tick(&image, now).is_empty());
    }
    assert_eq!(c.next_deadline_ms(), Some(40_000 + TIMEOUT + 1));
}

// ---- Josefine's session-close rule (broker.session.close.grace.ms) ----

const GRACE: u64 = 3_000;

/// Every broker heartbeats at `now`, broker n on connection 100 + n.
fn heartbeat_all_on_connections(image: &Image, c: &mut Controller, now: u64) {
    for node in 1..=3 {
        let (reply, cmd) = c.heartbeat_on(
            image,
            heartbeat(node, node as i64, image.position),
            100 + node as u64,
            now,
        );
        assert!(reply.error.is_none() && cmd.is_none());
    }
}

#[test]
fn a_closed_session_connection_fences_after_the_grace_without_a_new_heartbeat() {
    let (mut image, mut c) = cluster();
    assert_eq!(c.settings().session_close_grace_ms, GRACE);
    heartbeat_all_on_connections(&image, &mut c, 1_000);
    assert_eq!(c.connection_closed(101, 1_500), Some(1));
    assert_eq!(c.next_deadline_ms(), Some(1_500 + GRACE));
    assert!(c.tick(&image, 1_500 + GRACE - 1).is_empty());
    let fences = c.tick(&image, 1_500 + GRACE);
    assert_eq!(fences.len(), 1, "{fences:?}");
    step(&mut image, &fences[0]);
    assert!(image.brokers[&1].fenced && !image.brokers[&2].fenced);
    // Partition 0 moved to the next ISR member, as on a session expiry.
    assert_eq!(leader_isr(&image, 0), (2, vec![2, 3]));
    // The others keep Kafka's session timeout.
    assert!(c.tick(&image, 1_000 + TIMEOUT).is_empty());
}

#[test]
fn a_heartbeat_on_another_connection_cancels_the_close_fence() {
    let (image, mut c) = cluster();
    heartbeat_all_on_connections(&image, &mut c, 1_000);
    c.connection_closed(101, 1_500);
    // The broker is alive: it reopened its connection and heartbeats within the grace.
    let (reply, _) = c.heartbeat_on(&image, heartbeat(1, 1, image.position), 201, 3_000);
    assert!(reply.error.is_none());
    assert!(c.tick(&image, 1_500 + GRACE).is_empty());
    heartbeat_all_on_connections(&image, &mut c, 6_000);
    assert!(c.tick(&image, 14_000).is_empty());
}

#[test]
fn a_heartbeat_from_the_closed_connection_or_another_registration_does_not_cancel() {
    let (image, mut c) = cluster();
    heartbeat_all_on_connections(&image, &mut c, 1_000);
    c.connection_closed(101, 1_500);
    // Sent before the close, handled after it: says nothing about the process now.
    c.heartbeat_on(&image, heartbeat(1, 1, image.position), 101, 1_600);
    // A stale epoch is refused and keeps nothing alive.
    let (reply, _) = c.heartbeat_on(&image, heartbeat(1, 0, image.position), 202, 1_700);
    assert!(reply.error.is_some());
    let fences = c.tick(&image, 1_500 + GRACE);
    assert_eq!(fences.len(), 1, "{fences:?}");
}

#[test]
fn only_the_connection_of_the_latest_heartbeat_counts() {
    let (image, mut c) = cluster();
    heartbeat_all_on_connections(&image, &mut c, 1_000);
    // Broker 1 moved to a new connection; the old one closing later means nothing.
    c.heartbeat_on(&image, heartbeat(1, 1, image.position), 301, 1_200);
    assert_eq!(c.connection_closed(101, 1_500), None);
    assert_eq!(c.connection_closed(999, 1_500), None);
    assert!(c.tick(&image, 1_500 + GRACE).is_empty());
    assert_eq!(c.next_deadline_ms(), Some(1_000 + TIMEOUT + 1));
}

#[test]
fn with_the_rule_off_only_the_session_timeout_fences() {
    let (image, _) = cluster();
    let off = ControllerSettings {
        session_close_grace_ms: 0,
        ..settings()
    };
    let mut c = Controller::activate(&image, 0, off);
    heartbeat_all_on_connections(&image, &mut c, 1_000);
    assert_eq!(c.connection_closed(101, 1_500), None);
    assert!(c.tick(&image, 1_000 + TIMEOUT).is_empty());
    assert_eq!(c.tick(&image, 1_000 + TIMEOUT + 1).len(), 3);
}

#[test]
fn a_controller_change_fences_nobody_through_closed_connections() {
    let (image, mut old) = cluster();
    heartbeat_all_on_connections(&image, &mut old, 1_000);
    // A new controller knows no session connection: every close before the brokers'
    // next heartbeats (the connections to the old controller, say) is ignored.
    let mut c = Controller::activate(&image, 2_000, settings());
    for conn in [101, 102, 103] {
        assert_eq!(c.connection_closed(conn, 2_100), None);
    }
    assert!(c.tick(&image, 2_000 + TIMEOUT).is_empty());
    assert_eq!(c.next_deadline_ms(), Some(2_000 + TIMEOUT + 1));
}

#[test]
fn a_fenced_broker_closing_its_connection_is_not_fenced_again() {
    let (mut image, mut c) = cluster();
    heartbeat_all_on_connections(&image, &mut c, 1_000);
    fence_by_request(&mut image, &mut c, 1);
    assert_eq!(c.connection_closed(101, 1_500), None);
    heartbeat_all_on_connections_except(&image, &mut c, 1, 2_000);
    assert!(c.tick(&image, 1_500 + GRACE).is_empty());
}

#[test]
fn a_new_controller_told_of_a_closed_chain_connection_fences_after_the_grace() {
    let (mut image, _) = cluster();
    // Node 1 (the old controller) closed its chain connection at 10 s; this controller
    // activates at 11 s: fenced at 10 s + grace, no heartbeat having come.
    let mut c = Controller::activate(&image, 11_000, settings());
    assert!(c.process_closed(1, 10_000, 11_000));
    assert_eq!(c.next_deadline_ms(), Some(10_000 + GRACE));
    assert!(c.tick(&image, 10_000 + GRACE - 1).is_empty());
    let fences = c.tick(&image, 10_000 + GRACE);
    assert_eq!(fences.len(), 1, "{fences:?}");
    step(&mut image, &fences[0]);
    assert!(image.brokers[&1].fenced);
}

#[test]
fn a_closed_chain_connection_leaves_a_live_broker_a_heartbeat_interval_after_activation() {
    let (image, _) = cluster();
    let mut c = Controller::activate(&image, 20_000, settings());
    // Closed long ago: the broker still gets one heartbeat interval to find this controller.
    assert!(c.process_closed(2, 1_000, 20_000));
    assert_eq!(c.next_deadline_ms(), Some(20_000 + 2_000));
    // It heartbeats: alive, nothing fenced.
    c.heartbeat_on(&image, heartbeat(2, 2, image.position), 7, 21_000);
    assert!(c.tick(&image, 23_000).is_empty());
    // Without a session (fenced, unknown) or with the rule off, nothing is pending.
    assert!(!c.process_closed(9, 1_000, 20_000));
    let off = ControllerSettings {
        session_close_grace_ms: 0,
        ..settings()
    };
    let mut c = Controller::activate(&image, 20_000, off);
    assert!(!c.process_closed(1, 19_000, 20_000));
    assert!(c.tick(&image, 20_000 + TIMEOUT).is_empty());
}

fn heartbeat_all_on_connections_except(image: &Image, c: &mut Controller, except: i32, now: u64) {
    for node in (1..=3).filter(|n| *n != except) {
        c.heartbeat_on(
            image,
            heartbeat(node, node as i64, image.position),
            100 + node as u64,
            now,
        );
    }
}

#[test]
fn an_expired_session_fences_the_broker_with_its_leader_and_isr_changes() {
    let (mut image, mut c) = cluster();
    expire_only(&mut image, &mut c, 1);
    // Partition 0: led by 1 -> first eligible ISR replica in assignment order, 1 leaves the ISR.
    assert_eq!(leader_isr(&image, 0), (2, vec![2, 3]));
    assert_eq!(p(&image, 0).leader_epoch, 1);
    // Partition 1: leader 2 stays; 1 leaves the ISR without a leader epoch bump.
    assert_eq!(leader_isr(&image, 1), (2, vec![2, 3]));
    assert_eq!(
        (p(&image, 1).leader_epoch, p(&image, 1).partition_epoch),
        (0, 1)
    );
    // The fenced broker's session is gone: nothing more to do until someone else expires.
    assert!(c.tick(&image, TIMEOUT + 2).is_empty());
    assert_eq!(c.next_deadline_ms(), Some(5_000 + TIMEOUT + 1));
}

#[test]
fn the_last_isr_member_stays_when_fenced_and_the_partition_goes_leaderless() {
    let (mut image, mut c) = cluster();
    expire_only(&mut image, &mut c, 3);
    assert_eq!(leader_isr(&image, 2), (-1, vec![3]));
    assert_eq!(p(&image, 2).leader_epoch, 1);
}

#[test]
fn brokers_expiring_together_get_batches_that_apply_in_order() {
    let (mut image, mut c) = cluster();
    c.heartbeat(&image, heartbeat(3, 3, image.position), 5_000);
    let commands = c.tick(&image, TIMEOUT + 1);
    assert_eq!(commands.len(), 2, "{commands:?}");
    for cmd in &commands {
        step(&mut image, cmd);
    }
    assert!(image.brokers[&1].fenced && image.brokers[&2].fenced);
    assert_eq!(leader_isr(&image, 0), (3, vec![3]));
    assert_eq!(leader_isr(&image, 1), (3, vec![3]));
    image.check_consistency().unwrap();
}

#[test]
fn tick_elects_nobody_only_unfencing_elects_leaderless_partitions() {
    // Kafka's controller has no timer electing leaderless partitions: a partition loses its
    // leader only when no ISR member is eligible, and unfencing one elects it.
    let (mut image, mut c) = cluster();
    step(
        &mut image,
        &Command::ChangePartition {
            topic_id: T,
            partition: 0,
            expected_partition_epoch: 0,
            leader: Some(-1),
            isr: None,
        },
    );
    assert!(c.tick(&image, 1).is_empty());
    assert_eq!(leader_isr(&image, 0), (-1, vec![1, 2, 3]));
}

#[test]
fn a_stale_decision_fails_apply_and_changes_nothing() {
    let (mut image, mut c) = cluster();
    let commands = c.tick(&image, TIMEOUT + 1);
    // Meanwhile (another controller) partition 1 changed.
    step(
        &mut image,
        &Command::ChangePartition {
            topic_id: T,
            partition: 1,
            expected_partition_epoch: 0,
            leader: None,
            isr: Some(vec![2, 3]),
        },
    );
    let before = image.clone();
    image.advance_to(image.position + 1);
    assert!(image.apply(&commands[0]).is_err());
    assert_eq!(image.brokers, before.brokers);
    assert_eq!(image.topics, before.topics);
}

// ---- registration ----

#[test]
fn a_node_outside_the_voters_may_not_register() {
    let (image, mut c) = cluster();
    let e = c
        .register(&image, registration(4, 1), &[1, 2, 3], 0)
        .unwrap_err();
    assert_eq!(e.kafka_error_code(), 119, "{e}");
}

#[test]
fn the_same_incarnation_gets_its_existing_epoch_and_no_command() {
    let (image, mut c) = cluster();
    assert_eq!(
        c.register(&image, registration(2, 12), &[1, 2, 3], 0)
            .unwrap(),
        RegisterDecision::Existing { epoch: 2 }
    );
}

#[test]
fn a_bad_endpoint_is_refused_not_proposed() {
    let (image, mut c) = cluster();
    let mut r = registration(2, 99);
    r.port = 70_000;
    // After the old incarnation's session (else DUPLICATE_BROKER_REGISTRATION comes first).
    let e = c.register(&image, r, &[1, 2, 3], TIMEOUT + 1).unwrap_err();
    assert_eq!(e.kafka_error_code(), 119, "{e}");
}

#[test]
fn a_new_incarnation_registers_fenced_and_leaves_the_partitions_of_the_old_one() {
    let (mut image, mut c) = cluster();
    // The old incarnation's session has run out (its fence may not have applied yet).
    let RegisterDecision::Propose(cmd) = c
        .register(&image, registration(3, 99), &[1, 2, 3], TIMEOUT + 1)
        .unwrap()
    else {
        panic!("a new incarnation is proposed")
    };
    step(&mut image, &cmd);
    let b = &image.brokers[&3];
    assert_eq!(
        (b.incarnation_id, b.epoch, b.fenced),
        (99, image.position as i64, true)
    );
    // RF=1 partition: leaderless, ISR kept; others: 3 left their ISRs.
    assert_eq!(leader_isr(&image, 2), (-1, vec![3]));
    assert_eq!(leader_isr(&image, 0), (1, vec![1, 2]));
    assert_eq!(leader_isr(&image, 1), (2, vec![2, 1]));
}

#[test]
fn another_incarnation_is_refused_while_the_unfenced_one_has_a_live_session() {
    let (mut image, mut c) = cluster();
    // Broker 3 heartbeat at 5 s: a second process (or a restart) is refused until 14 s.
    c.heartbeat(&image, heartbeat(3, 3, image.position), 5_000);
    for now in [0, 5_000, 5_000 + TIMEOUT] {
        let e = c
            .register(&image, registration(3, 99), &[1, 2, 3], now)
            .unwrap_err();
        assert_eq!(e.kafka_error_code(), 101, "{e}");
        assert!(
            e.to_string().contains("Another broker is registered"),
            "{e}"
        );
    }
    assert!(matches!(
        c.register(&image, registration(3, 99), &[1, 2, 3], 5_001 + TIMEOUT),
        Ok(RegisterDecision::Propose(_))
    ));
    // A new controller gives every unfenced broker a fresh session: refused again.
    let mut fresh = Controller::activate(&image, 50_000, settings());
    let e = fresh
        .register(&image, registration(3, 99), &[1, 2, 3], 50_000)
        .unwrap_err();
    assert_eq!(e.kafka_error_code(), 101);
    // A fenced old incarnation has no session to protect (a controlled shutdown ends so).
    fence_by_request(&mut image, &mut c, 3);
    assert!(matches!(
        c.register(&image, registration(3, 99), &[1, 2, 3], 5_001),
        Ok(RegisterDecision::Propose(_))
    ));
}

#[test]
fn a_new_incarnation_right_after_the_old_registration_is_accepted() {
    let mut image = Image::default();
    let mut c = Controller::activate(&image, 0, settings());
    for incarnation in [1, 2] {
        let RegisterDecision::Propose(cmd) = c
            .register(&image, registration(1, incarnation), &[1], 0)
            .unwrap()
        else {
            panic!()
        };
        step(&mut image, &cmd);
    }
    assert_eq!(image.brokers[&1].incarnation_id, 2);
}

// ---- heartbeats: errors, unfencing ----

#[test]
fn heartbeats_of_unknown_brokers_or_stale_epochs_are_refused_without_a_session() {
    let (image, mut c) = cluster();
    let (reply, cmd) = c.heartbeat(&image, heartbeat(9, 1, 100), 1);
    assert_eq!(reply.error.unwrap().kafka_error_code(), 102);
    assert!(cmd.is_none());
    let (reply, cmd) = c.heartbeat(&image, heartbeat(1, 2, 100), 5_000);
    assert_eq!(reply.error.unwrap().kafka_error_code(), 77);
    assert!(cmd.is_none() && reply.is_fenced);
    // The stale heartbeat did not refresh broker 1's session.
    assert_eq!(c.next_deadline_ms(), Some(TIMEOUT + 1));
}

#[test]
fn a_fenced_broker_is_unfenced_once_caught_up_to_its_registration() {
    let mut image = Image::default();
    let mut c = Controller::activate(&image, 0, settings());
    image.advance_to(41);
    let RegisterDecision::Propose(cmd) = c.register(&image, registration(1, 1), &[1], 0).unwrap()
    else {
        panic!()
    };
    step(&mut image, &cmd);
    let epoch = image.brokers[&1].epoch;
    assert_eq!(epoch, 42);
    let (reply, cmd) = c.heartbeat(&image, heartbeat(1, epoch, 41), 1);
    assert!(!reply.is_caught_up && reply.is_fenced && cmd.is_none());
    let (reply, cmd) = c.heartbeat(&image, heartbeat(1, epoch, 42), 2);
    assert!(reply.is_caught_up && !reply.is_fenced);
    step(&mut image, &cmd.unwrap());
    assert!(image.is_eligible(1));
}

#[test]
fn an_unfenced_broker_leads_again_the_partitions_it_is_the_isr_survivor_of() {
    let (mut image, mut c) = cluster();
    expire_only(&mut image, &mut c, 3);
    assert_eq!(leader_isr(&image, 2), (-1, vec![3]));
    let (reply, cmd) = c.heartbeat(&image, heartbeat(3, 3, image.position), TIMEOUT + 2);
    assert!(!reply.is_fenced);
    step(&mut image, &cmd.unwrap());
    assert_eq!(leader_isr(&image, 2), (3, vec![3]));
    assert_eq!(p(&image, 2).leader_epoch, 2, "fenced: +1, led again: +1");
}

#[test]
fn a_fenced_broker_asking_to_stay_fenced_stays_fenced() {
    let mut image = Image::default();
    let mut c = Controller::activate(&image, 0, settings());
    let RegisterDecision::Propose(cmd) = c.register(&image, registration(1, 1), &[1], 0).unwrap()
    else {
        panic!()
    };
    step(&mut image, &cmd);
    let mut hb = heartbeat(1, 1, 100);
    hb.want_fence = true;
    let (reply, cmd) = c.heartbeat(&image, hb, 1);
    assert!(reply.is_fenced && cmd.is_none());
}

#[test]
fn an_unfenced_broker_asking_to_be_fenced_is_fenced_with_its_changes() {
    let (mut image, mut c) = cluster();
    let mut hb = heartbeat(1, 1, image.position);
    hb.want_fence = true;
    let (reply, cmd) = c.heartbeat(&image, hb, 1);
    assert!(reply.is_fenced);
    step(&mut image, &cmd.unwrap());
    assert!(image.brokers[&1].fenced);
    assert_eq!(leader_isr(&image, 0), (2, vec![2, 3]));
}

// ---- controlled shutdown ----

#[test]
fn controlled_shutdown_moves_leaderships_off_then_fences_and_lets_go() {
    let (mut image, mut c) = cluster();
    let mut hb = heartbeat(3, 3, image.position);
    hb.want_shutdown = true;
    let (reply, cmd) = c.heartbeat(&image, hb, 1);
    assert!(!reply.should_shut_down && !reply.is_fenced);
    step(&mut image, &cmd.unwrap());
    assert!(image.brokers[&3].in_controlled_shutdown);
    assert_eq!(image.broker_leads(3).count(), 0);
    assert_eq!(leader_isr(&image, 2), (-1, vec![3]), "RF=1: leaderless");
    assert_eq!(leader_isr(&image, 1), (2, vec![2, 1]), "3 left the ISR");
    let (reply, cmd) = c.heartbeat(&image, hb, 2);
    assert!(reply.should_shut_down && reply.is_fenced);
    step(&mut image, &cmd.unwrap());
    assert!(image.brokers[&3].fenced);
    // Fenced now: it may go, nothing more to propose.
    let (reply, cmd) = c.heartbeat(&image, hb, 3);
    assert!(reply.should_shut_down && cmd.is_none());
}

#[test]
fn a_shutting_down_broker_is_not_unfenced_or_elected() {
    let (mut image, mut c) = cluster();
    let mut hb = heartbeat(3, 3, image.position);
    hb.want_shutdown = true;
    let (_, cmd) = c.heartbeat(&image, hb, 1);
    step(&mut image, &cmd.unwrap());
    // Partition 2 stays leaderless: its only ISR member is shutting down.
    assert!(c.tick(&image, 2).is_empty());
    let (_, cmd) = c.heartbeat(&image, hb, 3);
    step(&mut image, &cmd.unwrap());
    let (reply, cmd) = c.heartbeat(&image, heartbeat(3, 3, image.position), 4);
    assert!(reply.is_fenced && cmd.is_none());
}

// ---- producer ids ----

#[test]
fn producer_id_blocks_start_where_the_image_says() {
    let (mut image, c) = cluster();
    let cmd = c.allocate_producer_ids(&image, 2, 2).unwrap();
    assert_eq!(
        cmd,
        Command::AllocateProducerIds {
            broker_id: 2,
            first_id: 0,
            count: 1_000
        }
    );
    step(&mut image, &cmd);
    let cmd = c.allocate_producer_ids(&image, 1, 1).unwrap();
    assert!(matches!(
        cmd,
        Command::AllocateProducerIds {
            first_id: 1_000,
            ..
        }
    ));
    assert_eq!(
        c.allocate_producer_ids(&image, 1, 0)
            .unwrap_err()
            .kafka_error_code(),
        77
    );
    assert_eq!(
        c.allocate_producer_ids(&image, 7, 0)
            .unwrap_err()
            .kafka_error_code(),
        102
    );
}

// ---- the election rule ----

fn part(replicas: &[i32], leader: i32, isr: &[i32]) -> PartitionAssignment {
    PartitionAssignment {
        partition: 0,
        replicas: replicas.to_vec(),
        leader,
        leader_epoch: 4,
        partition_epoch: 7,
        isr: isr.to_vec(),
    }
}

fn change_of(cmd: Option<Command>) -> Option<(Option<i32>, Option<Vec<i32>>)> {
    cmd.map(|c| match c {
        Command::ChangePartition {
            leader,
            isr,
            expected_partition_epoch,
            ..
        } => {
            assert_eq!(expected_partition_epoch, 7);
            (leader, isr)
        }
        other => panic!("{other:?}"),
    })
}

#[test]
fn election_keeps_an_eligible_leader() {
    let all = |_| true;
    assert_eq!(
        change_of(partition_change(T, &part(&[1, 2], 2, &[1, 2]), all, None)),
        None
    );
    assert_eq!(
        change_of(partition_change(
            T,
            &part(&[1, 2], 2, &[1, 2]),
            all,
            Some(1)
        )),
        Some((None, Some(vec![2])))
    );
}

#[test]
fn election_takes_the_first_eligible_isr_replica_in_assignment_order() {
    let not_1 = |r| r != 1;
    // ISR order [3, 2] but assignment order [1, 2, 3]: 2 wins.
    assert_eq!(
        change_of(partition_change(
            T,
            &part(&[1, 2, 3], 1, &[3, 2, 1]),
            not_1,
            None
        )),
        Some((Some(2), None))
    );
    assert_eq!(
        change_of(partition_change(
            T,
            &part(&[1, 2, 3], 1, &[3, 2, 1]),
            |_| true,
            Some(1)
        )),
        Some((Some(2), Some(vec![3, 2])))
    );
}

#[test]
fn election_without_an_eligible_member_leaves_no_leader_and_keeps_the_last_member() {
    let none = |_| false;
    assert_eq!(
        change_of(partition_change(T, &part(&[1], 1, &[1]), none, Some(1))),
        Some((Some(-1), None))
    );
    assert_eq!(
        change_of(partition_change(
            T,
            &part(&[1, 2], 1, &[1, 2]),
            none,
            Some(1)
        )),
        Some((Some(-1), Some(vec![2])))
    );
    assert_eq!(
        change_of(partition_change(T, &part(&[1], -1, &[1]), none, None)),
        None
    );
}

#[test]
fn election_never_elects_the_leaving_broker() {
    assert_eq!(
        change_of(partition_change(
            T,
            &part(&[1], -1, &[1]),
            |_| true,
            Some(1)
        )),
        None
    );
}

// ---- unclean elections ----

/// Sets partition 0's ISR to `isr` (leader 1 stays: it must be in it).
fn shrink_isr(image: &mut Image, isr: &[i32]) {
    let pe = p(image, 0).partition_epoch;
    step(
        image,
        &Command::ChangePartition {
            topic_id: T,
            partition: 0,
            expected_partition_epoch: pe,
            leader: None,
            isr: Some(isr.to_vec()),
        },
    );
}

fn set_topic_config(image: &mut Image, key: &str, value: &str) {
    step(
        image,
        &Command::AlterTopicConfigs {
            topic_id: T,
            replace_all: false,
            set: vec![(key.into(), value.into())],
            delete: vec![],
        },
    );
}

/// Broker `node` asks to be fenced; the controller's batch applied.
fn fence_by_request(image: &mut Image, c: &mut Controller, node: i32) {
    let mut hb = heartbeat(node, node as i64, image.position);
    hb.want_fence = true;
    let (_, cmd) = c.heartbeat(image, hb, 1);
    step(image, &cmd.expect("a fence"));
}

#[test]
fn without_unclean_election_the_last_isr_member_keeps_the_partition_offline() {
    let (mut image, mut c) = cluster();
    shrink_isr(&mut image, &[1]);
    fence_by_request(&mut image, &mut c, 1);
    assert_eq!(leader_isr(&image, 0), (-1, vec![1]));
}

#[test]
fn a_topic_allowing_unclean_election_elects_the_first_eligible_replica_alone_on_fence() {
    let (mut image, mut c) = cluster();
    shrink_isr(&mut image, &[1]);
    set_topic_config(&mut image, UNCLEAN_LEADER_ELECTION_ENABLE, "true");
    let epoch_before = p(&image, 0).leader_epoch;
    let mut hb = heartbeat(1, 1, image.position);
    hb.want_fence = true;
    let (_, cmd) = c.heartbeat(&image, hb, 1);
    let cmd = cmd.unwrap();
    assert_eq!(unclean_elections(&image, &cmd), vec![(T, 0, 2)]);
    step(&mut image, &cmd);
    assert_eq!(leader_isr(&image, 0), (2, vec![2]));
    assert_eq!(p(&image, 0).leader_epoch, epoch_before + 1);
}

#[test]
fn the_cluster_wide_broker_config_enables_it_and_a_topic_override_wins() {
    let (mut image, mut c) = cluster();
    shrink_isr(&mut image, &[1]);
    step(
        &mut image,
        &Command::AlterBrokerConfigs {
            broker_id: None,
            replace_all: false,
            set: vec![(UNCLEAN_LEADER_ELECTION_ENABLE.into(), "true".into())],
            delete: vec![],
        },
    );
    assert!(unclean_election_enabled(&image, T, false));
    set_topic_config(&mut image, UNCLEAN_LEADER_ELECTION_ENABLE, "false");
    assert!(!unclean_election_enabled(&image, T, true));
    fence_by_request(&mut image, &mut c, 1);
    assert_eq!(leader_isr(&image, 0), (-1, vec![1]));
    // The controller's static default applies when neither is set.
    let (image, _) = cluster();
    assert!(unclean_election_enabled(&image, T, true));
    assert!(!unclean_election_enabled(&image, T, false));
}

#[test]
fn unfencing_a_mere_replica_elects_it_uncleanly_where_allowed() {
    let (mut image, mut c) = cluster();
    shrink_isr(&mut image, &[1]);
    fence_by_request(&mut image, &mut c, 1);
    fence_by_request(&mut image, &mut c, 2);
    assert_eq!(leader_isr(&image, 0), (-1, vec![1]));
    // Not allowed: unfencing 2 (not in the ISR) elects nobody.
    let mut quiet = image.clone();
    let (_, cmd) = c.heartbeat(&quiet, heartbeat(2, 2, quiet.position), 2);
    step(&mut quiet, &cmd.unwrap());
    assert_eq!(leader_isr(&quiet, 0), (-1, vec![1]));
    // Allowed: it leads alone.
    set_topic_config(&mut image, UNCLEAN_LEADER_ELECTION_ENABLE, "true");
    let (_, cmd) = c.heartbeat(&image, heartbeat(2, 2, image.position), 3);
    step(&mut image, &cmd.unwrap());
    assert_eq!(leader_isr(&image, 0), (2, vec![2]));
}

#[test]
fn the_periodic_unclean_round_elects_once_a_topic_allows_it() {
    let mut s = settings();
    s.unclean_leader_election_interval_ms = 1_000;
    let (mut image, _) = cluster();
    let mut c = Controller::activate(&image, 0, s);
    shrink_isr(&mut image, &[1]);
    fence_by_request(&mut image, &mut c, 1);
    assert_eq!(leader_isr(&image, 0), (-1, vec![1]));
    set_topic_config(&mut image, UNCLEAN_LEADER_ELECTION_ENABLE, "true");
    assert!(c.tick(&image, 999).is_empty(), "not before the interval");
    let commands = c.tick(&image, 1_000);
    assert_eq!(commands.len(), 1, "{commands:?}");
    step(&mut image, &commands[0]);
    assert_eq!(leader_isr(&image, 0), (2, vec![2]));
    assert!(c.tick(&image, 2_000).is_empty());
}

// ---- preferred-leader rebalance ----

fn move_leader(image: &mut Image, partition: i32, leader: i32) {
    let pe = p(image, partition).partition_epoch;
    step(
        image,
        &Command::ChangePartition {
            topic_id: T,
            partition,
            expected_partition_epoch: pe,
            leader: Some(leader),
            isr: None,
        },
    );
}

#[test]
fn rebalance_moves_leadership_back_to_in_sync_preferred_replicas_every_interval() {
    let mut s = settings();
    s.leader_imbalance_check_interval_ms = 1_000;
    let (mut image, _) = cluster();
    let mut c = Controller::activate(&image, 0, s);
    move_leader(&mut image, 0, 3);
    move_leader(&mut image, 1, 3);
    // Partition 1's preferred replica (2) is out of sync: it stays with 3.
    let pe = p(&image, 1).partition_epoch;
    step(
        &mut image,
        &Command::ChangePartition {
            topic_id: T,
            partition: 1,
            expected_partition_epoch: pe,
            leader: None,
            isr: Some(vec![3, 1]),
        },
    );
    assert_eq!(c.next_deadline_ms(), Some(1_000));
    assert!(c.tick(&image, 999).is_empty(), "not before the interval");
    let commands = c.tick(&image, 1_000);
    assert_eq!(commands.len(), 1, "{commands:?}");
    step(&mut image, &commands[0]);
    assert_eq!(leader_isr(&image, 0), (1, vec![1, 2, 3]));
    assert_eq!(p(&image, 0).leader_epoch, 2);
    assert_eq!(leader_isr(&image, 1), (3, vec![3, 1]));
    // The next round is an interval later.
    move_leader(&mut image, 0, 2);
    assert!(c.tick(&image, 1_500).is_empty());
    assert_eq!(c.tick(&image, 2_000).len(), 1);
}

#[test]
fn rebalance_can_be_switched_off() {
    let mut s = settings();
    s.leader_imbalance_check_interval_ms = 1_000;
    s.auto_leader_rebalance_enable = false;
    let (mut image, _) = cluster();
    let mut c = Controller::activate(&image, 0, s);
    move_leader(&mut image, 0, 3);
    assert!(c.tick(&image, 5_000).is_empty());
}

// ---- controlled shutdown with RF=3 ----

#[test]
fn controlled_shutdown_of_a_leader_moves_rf3_leaderships_and_leaves_isrs_then_rebalance_returns_them(
) {
    let mut s = settings();
    s.leader_imbalance_check_interval_ms = 1_000;
    let (mut image, _) = cluster();
    let mut c = Controller::activate(&image, 0, s);
    // Broker 1 leads partition 0 ([1, 2, 3]) and follows partition 1 ([2, 3, 1]).
    let mut hb = heartbeat(1, 1, image.position);
    hb.want_shutdown = true;
    let (_, cmd) = c.heartbeat(&image, hb, 1);
    step(&mut image, &cmd.unwrap());
    assert_eq!(leader_isr(&image, 0), (2, vec![2, 3]));
    assert_eq!(
        p(&image, 0).leader_epoch,
        1,
        "a leader change bumps the epoch"
    );
    assert_eq!(leader_isr(&image, 1), (2, vec![2, 3]));
    assert_eq!(p(&image, 1).leader_epoch, 0, "an ISR change does not");
    let (reply, cmd) = c.heartbeat(&image, hb, 2);
    assert!(reply.should_shut_down);
    step(&mut image, &cmd.unwrap());
    // Broker 1 comes back (a new incarnation), is unfenced, and catches up: the leader of
    // partition 0 adds it back to the ISR through AlterPartition.
    let RegisterDecision::Propose(cmd) = c
        .register(&image, registration(1, 77), &[1, 2, 3], 3)
        .unwrap()
    else {
        panic!("a new incarnation")
    };
    step(&mut image, &cmd);
    let epoch = image.brokers[&1].epoch;
    let (_, cmd) = c.heartbeat(&image, heartbeat(1, epoch, image.position), 4);
    step(&mut image, &cmd.unwrap());
    assert_eq!(
        leader_isr(&image, 0),
        (2, vec![2, 3]),
        "unfencing alone moves nothing"
    );
    let pa = p(&image, 0).clone();
    let expand = alter_partition::decide_isr_change(
        &image,
        2,
        &alter_partition::IsrChangeRequest {
            topic_id: T,
            partition: 0,
            leader_epoch: pa.leader_epoch,
            partition_epoch: pa.partition_epoch,
            new_isr: vec![(2, 2), (3, 3), (1, epoch)],
        },
    )
    .unwrap()
    .unwrap();
    step(&mut image, &expand);
    // The rebalance round gives partition 0 back to its preferred replica.
    let commands = c.tick(&image, 1_000);
    assert_eq!(commands.len(), 1, "{commands:?}");
    step(&mut image, &commands[0]);
    assert_eq!(leader_isr(&image, 0), (1, vec![2, 3, 1]));
    assert_eq!(p(&image, 0).leader_epoch, 2);
}

#[test]
fn a_registration_carries_every_named_listener() {
    let mut image = Image::default();
    let mut c = Controller::activate(&image, 0, settings());
    let endpoint = |name: &str, port, protocol| crate::command::ListenerEndpoint {
        name: name.into(),
        host: "h1".into(),
        port,
        security_protocol: protocol,
    };
    let mut reg = registration(1, 11);
    reg.listeners = vec![endpoint("INTERNAL", 9092, 0), endpoint("SSL", 9093, 1)];
    match c.register(&image, reg.clone(), &[1], 0) {
        Ok(RegisterDecision::Propose(cmd)) => step(&mut image, &cmd),
        other => panic!("{other:?}"),
    }
    let b = &image.brokers[&1];
    assert_eq!(b.listeners, reg.listeners);
    assert_eq!(b.endpoint("SSL"), Some(("h1", 9093)));
    assert_eq!(b.endpoint("SASL_SSL"), None, "a listener it lacks");
    // Duplicate names, a bad protocol and another incarnation are refused.
    let mut bad = reg.clone();
    bad.incarnation_id = 12;
    bad.listeners.push(endpoint("SSL", 9094, 1));
    assert!(c.register(&image, bad, &[1], 0).is_err());
    let set = |incarnation_id, listeners| Command::SetBrokerListeners {
        node_id: 1,
        incarnation_id,
        listeners,
    };
    assert!(image.validate(&set(11, vec![endpoint("X", 1, 7)])).is_err());
    assert!(image.validate(&set(99, vec![endpoint("X", 1, 0)])).is_err());
    assert!(image.validate(&set(11, vec![])).is_err());
    // A registration from before named listeners answers its one endpoint for any name.
    let mut legacy = image.brokers[&1].clone();
    legacy.listeners.clear();
    assert_eq!(legacy.endpoint("ANY"), Some(("h1", 9092)));
}

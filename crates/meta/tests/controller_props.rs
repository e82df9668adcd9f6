//! Property test of the controller driven like its runtime does, through the public API.
//!
//! Random events over time (registrations of new or known incarnations, heartbeats with random
//! flags and positions, some with stale epochs, ticks, producer-id and topic requests placed by
//! `placement`); every command the controller decides from the latest image is applied at once.
//! Properties: every decision applies (a serial controller never proposes a stale command);
//! every image invariant holds after each; a heartbeat is refused exactly when its epoch is not
//! the registered one; once every broker heartbeats caught up, one tick leaves no partition
//! without a leader while its ISR has an eligible member. Seeded, so a failure names its seed.

mod common;
use std::cell::RefCell;
use std::collections::BTreeMap;

use common::Rng;

use josefine_meta::controller::{
    Controller, ControllerSettings, Heartbeat, RegisterDecision, Registration,
};
use josefine_meta::{placement, Applied, Command, Image, TopicId};

const VOTERS: [i32; 4] = [1, 2, 3, 4];

thread_local! {
    /// How often each kind of outcome applied, to show the generator reaches them all.
    static SEEN: RefCell<BTreeMap<String, usize>> = RefCell::default();
}

fn tally(applied: &Applied) {
    if let Applied::Batch(all) = applied {
        all.iter().for_each(tally);
    }
    let kind = format!("{applied:?}");
    let kind = kind
        .split([' ', '('])
        .next()
        .unwrap_or_default()
        .to_string();
    SEEN.with(|seen| *seen.borrow_mut().entry(kind).or_default() += 1);
}

#[track_caller]
fn apply(image: &mut Image, cmd: &Command, seed: u64) {
    image.advance_to(image.position + 1);
    match image.apply(cmd) {
        Ok(applied) => tally(&applied),
        Err(e) => panic!("seed {seed}: a fresh controller decision failed: {cmd:?}: {e}"),
    }
    if let Err(e) = image.check_consistency() {
        panic!("seed {seed}: {cmd:?} broke an invariant: {e}");
    }
}

#[test]
fn fresh_decisions_always_apply_and_keep_the_invariants() {
    for seed in 1..=200u64 {
        let mut rng = Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
        let settings = ControllerSettings::default();
        let mut image = Image::default();
        let mut c = Controller::activate(&image, 0, settings);
        let mut now_ms = 0u64;
        let mut incarnations = [0u128; 5];
        let mut topics = 0u8;
        for _ in 0..150 {
            now_ms += rng.below(3_000) as u64;
            let node_id = *rng.pick(&VOTERS);
            match rng.below(10) {
                0 => {
                    if rng.chance(2) {
                        incarnations[node_id as usize] += 1;
                    }
                    let req = Registration {
                        node_id: if rng.chance(20) { 9 } else { node_id },
                        incarnation_id: incarnations[node_id as usize],
                        host: "h".into(),
                        port: 9092,
                        rack: Some(format!("r{}", node_id % 2)),
                        listeners: Vec::new(),
                    };
                    match c.register(&image, req, &VOTERS, now_ms) {
                        Ok(RegisterDecision::Propose(cmd)) => apply(&mut image, &cmd, seed),
                        Ok(RegisterDecision::Existing { epoch }) => {
                            assert_eq!(image.brokers[&node_id].epoch, epoch);
                        }
                        // INVALID_REGISTRATION, or DUPLICATE_BROKER_REGISTRATION while the
                        // registered incarnation is unfenced with a live session.
                        Err(e) => assert!(
                            [119, 101].contains(&e.kafka_error_code()),
                            "seed {seed}: {e}"
                        ),
                    }
                }
                1..=5 => {
                    let registered = image.brokers.get(&node_id).map(|b| b.epoch);
                    let broker_epoch = match registered {
                        Some(epoch) if !rng.chance(10) => epoch,
                        _ => rng.below(5) as i64,
                    };
                    let req = Heartbeat {
                        node_id,
                        broker_epoch,
                        current_position: image.position.saturating_sub(rng.below(3) as u64),
                        want_fence: rng.chance(30),
                        want_shutdown: rng.chance(15),
                    };
                    let (reply, cmd) = c.heartbeat(&image, req, now_ms);
                    assert_eq!(
                        reply.error.is_some(),
                        registered != Some(broker_epoch),
                        "seed {seed}: {req:?}"
                    );
                    if let Some(cmd) = cmd {
                        apply(&mut image, &cmd, seed);
                    }
                }
                6 | 7 => {
                    for cmd in c.tick(&image, now_ms) {
                        apply(&mut image, &cmd, seed);
                    }
                }
                8 => {
                    let broker_epoch = image.brokers.get(&node_id).map_or(0, |b| b.epoch);
                    if let Ok(cmd) = c.allocate_producer_ids(&image, node_id, broker_epoch) {
                        apply(&mut image, &cmd, seed);
                    }
                }
                _ => {
                    let rf = 1 + rng.below(3);
                    let count = 1 + rng.below(4);
                    if let Ok(partitions) = placement::place(&image, 0, count, rf, rng.next()) {
                        topics += 1;
                        let cmd = Command::CreateTopic {
                            topic_id: TopicId([topics; 16]),
                            name: format!("t{topics}"),
                            partitions,
                            configs: vec![],
                        };
                        apply(&mut image, &cmd, seed);
                    }
                }
            }
        }
        // Liveness: every registered broker heartbeats, caught up, wanting nothing.
        now_ms += 1;
        for node_id in VOTERS {
            if let Some(b) = image.brokers.get(&node_id) {
                let req = Heartbeat {
                    node_id,
                    broker_epoch: b.epoch,
                    current_position: image.position,
                    want_fence: false,
                    want_shutdown: false,
                };
                if let (_, Some(cmd)) = c.heartbeat(&image, req, now_ms) {
                    apply(&mut image, &cmd, seed);
                }
            }
        }
        for cmd in c.tick(&image, now_ms) {
            apply(&mut image, &cmd, seed);
        }
        for (topic_id, p) in image.partitions() {
            if p.isr.iter().any(|r| image.is_eligible(*r)) {
                assert!(
                    image.is_eligible(p.leader),
                    "seed {seed}: {topic_id}-{} has an eligible ISR member but no leader: {p:?}",
                    p.partition
                );
            }
        }
    }
    SEEN.with(|seen| {
        let seen = seen.borrow();
        for kind in [
            "BrokerRegistered",
            "BrokerFenced",
            "BrokerUnfenced",
            "ControlledShutdownBegun",
            "PartitionChanged",
            "TopicCreated",
            "ProducerIdsAllocated",
        ] {
            assert!(seen.get(kind).is_some_and(|n| *n > 10), "{kind}: {seen:?}");
        }
    });
}

//! Seeded randomized test: a leader and two followers that fetch, lag, pause, crash and come
//! back, with a controller that commits, refuses, loses and delays AlterPartition and fences
//! brokers that stop heartbeating. After every step: the HW never decreases, it never exceeds
//! the log end of any maximal-ISR member (as the leader knows it, and as the follower has it),
//! no member of the ISR the controller committed is below it, it never advances while the
//! committed ISR is below min.insync.replicas, no ineligible replica is proposed for the ISR,
//! and there is never more than one proposal in flight.
//!
//! Crashes here are kill -9 (the page cache keeps the log); losing unsynced data is the
//! simulator's business (`crates/sim`, replication mode). Seeds: `REPLICA_SEEDS=n` (default
//! 200); a failure names its seed.

use std::collections::VecDeque;

use josefine_replica::{AlterError, Effect, LeaderState, ReplicaSettings};

const LAG_MS: i64 = 1_000;
const SESSION_TIMEOUT_MS: i64 = 600;
const MIN_ISR: i32 = 2;
const LEADER: i32 = 1;
const FOLLOWERS: [i32; 2] = [2, 3];

/// splitmix64: enough randomness for a test, no dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Life {
    Up,
    /// SIGSTOP until this time: no fetches, no heartbeats.
    Paused(i64),
    /// Dead until this time; restarts with a new broker epoch.
    Down(i64),
}

struct Follower {
    id: i32,
    log_end: i64,
    life: Life,
    /// Fetches get at most this many records (a slow follower lags).
    fetch_max: i64,
    last_heartbeat_ms: i64,
    broker_epoch: i64,
}

/// The controller's view: registrations, the committed partition state.
struct Controller {
    partition_epoch: i32,
    isr: Vec<i32>,
    registered_epoch: [i64; 4],
    fenced: [bool; 4],
    unfence_at_ms: [i64; 4],
}

impl Controller {
    fn eligible(&self, id: i32, broker_epoch: i64) -> bool {
        let i = id as usize;
        !self.fenced[i] && self.registered_epoch[i] == broker_epoch
    }
}

enum InFlight {
    /// The request is on its way; the controller decides at `at_ms`.
    Request {
        at_ms: i64,
        leader_epoch: i32,
        partition_epoch: i32,
        new_isr: Vec<(i32, i64)>,
    },
    /// The answer is on its way back.
    Answer {
        at_ms: i64,
        result: Result<(), AlterError>,
    },
}

struct World {
    rng: Rng,
    now_ms: i64,
    leader_end: i64,
    leader: LeaderState,
    followers: Vec<Follower>,
    ctrl: Controller,
    in_flight: Option<InFlight>,
    /// Committed (partition epoch, ISR) on its way to the leader's image.
    metadata: VecDeque<(i64, i32, Vec<i32>)>,
    last_hw: i64,
    expands: u32,
    shrinks: u32,
}

impl World {
    fn new(seed: u64) -> World {
        let settings = ReplicaSettings {
            replica_lag_time_max_ms: LAG_MS,
            min_insync_replicas: MIN_ISR,
        };
        let leader = LeaderState::new(
            LEADER,
            5,
            0,
            vec![1, 2, 3],
            vec![1, 2, 3],
            0,
            0,
            0,
            settings,
            0,
        );
        World {
            rng: Rng(seed),
            now_ms: 0,
            leader_end: 0,
            leader,
            followers: FOLLOWERS
                .iter()
                .map(|&id| Follower {
                    id,
                    log_end: 0,
                    life: Life::Up,
                    fetch_max: 10,
                    last_heartbeat_ms: 0,
                    broker_epoch: 1,
                })
                .collect(),
            ctrl: Controller {
                partition_epoch: 0,
                isr: vec![1, 2, 3],
                registered_epoch: [0, 1, 1, 1],
                fenced: [false; 4],
                unfence_at_ms: [0; 4],
            },
            in_flight: None,
            metadata: VecDeque::new(),
            last_hw: 0,
            expands: 0,
            shrinks: 0,
        }
    }

    fn step(&mut self) {
        self.now_ms += 1 + self.rng.below(60) as i64;
        let now = self.now_ms;
        match self.rng.below(100) {
            0..=29 => {
                let n = 1 + self.rng.below(4) as i64;
                self.leader_end += n;
                let effects = self.leader.on_local_append(self.leader_end, now);
                self.handle(effects, None);
            }
            30..=69 => {
                let i = self.rng.below(2) as usize;
                self.follower_fetch(i);
            }
            70..=79 => {
                let effects = self.leader.tick(self.leader_end, now);
                self.handle(effects, None);
            }
            80..=84 => {
                let i = self.rng.below(2) as usize;
                let f = &mut self.followers[i];
                if f.life == Life::Up {
                    f.life = if self.rng.chance(50) {
                        Life::Paused(now + self.rng.below(3 * LAG_MS as u64) as i64)
                    } else {
                        Life::Down(now + self.rng.below(3 * LAG_MS as u64) as i64)
                    };
                }
            }
            85..=87 => {
                let i = self.rng.below(2) as usize;
                self.followers[i].fetch_max = [1, 2, 10, 50][self.rng.below(4) as usize];
            }
            _ => {}
        }
        self.lifecycle();
        self.deliver();
        self.check_state();
    }

    fn follower_fetch(&mut self, i: usize) {
        let now = self.now_ms;
        let f = &self.followers[i];
        if f.life != Life::Up {
            return;
        }
        let (id, epoch, offset) = (f.id, f.broker_epoch, f.log_end);
        let eligible = self.ctrl.eligible(id, epoch);
        let was_in_committed_isr = self.leader.committed_isr().contains(&id);
        let effects =
            self.leader
                .on_follower_fetch(id, epoch, offset, self.leader_end, eligible, now);
        for e in &effects {
            if let Effect::ProposeIsr { new_isr, .. } = e {
                let added: Vec<i32> = new_isr
                    .iter()
                    .map(|&(r, _)| r)
                    .filter(|r| !self.leader.committed_isr().contains(r))
                    .collect();
                if !added.is_empty() {
                    assert_eq!(added, vec![id], "only the fetching replica can be added");
                    assert!(!was_in_committed_isr);
                    assert!(
                        eligible,
                        "replica {id} proposed for the ISR while ineligible"
                    );
                    assert!(offset >= self.leader.high_watermark(), "added below the HW");
                    assert!(
                        offset >= self.leader.epoch_start_offset(),
                        "added below the epoch start"
                    );
                }
            }
        }
        self.handle(effects, None);
        let got = (self.leader_end - offset).clamp(0, self.followers[i].fetch_max);
        self.followers[i].log_end = offset + got;
        self.followers[i].last_heartbeat_ms = now;
    }

    /// Restarts, unpauses, fencing by session timeout, unfencing after registration.
    fn lifecycle(&mut self) {
        let now = self.now_ms;
        for i in 0..self.followers.len() {
            let id = self.followers[i].id as usize;
            match self.followers[i].life {
                Life::Paused(until) if now >= until => self.followers[i].life = Life::Up,
                Life::Down(until) if now >= until => {
                    // A new incarnation registers (fenced) with a new broker epoch.
                    let f = &mut self.followers[i];
                    f.life = Life::Up;
                    f.broker_epoch += 10;
                    f.last_heartbeat_ms = now;
                    self.ctrl.registered_epoch[id] = f.broker_epoch;
                    self.ctrl.fenced[id] = true;
                    self.ctrl.unfence_at_ms[id] = now + 100;
                    self.remove_from_isr(id as i32);
                }
                _ => {}
            }
            let f = &self.followers[i];
            if f.life == Life::Up {
                self.followers[i].last_heartbeat_ms = now;
                if self.ctrl.fenced[id] && now >= self.ctrl.unfence_at_ms[id] {
                    self.ctrl.fenced[id] = false;
                }
            } else if !self.ctrl.fenced[id] && now - f.last_heartbeat_ms > SESSION_TIMEOUT_MS {
                self.ctrl.fenced[id] = true;
                self.ctrl.unfence_at_ms[id] = i64::MAX;
                self.remove_from_isr(id as i32);
            }
        }
    }

    /// The controller takes a fenced broker out of the ISR (never the last member).
    fn remove_from_isr(&mut self, id: i32) {
        if self.ctrl.isr.contains(&id) && self.ctrl.isr.len() > 1 {
            self.ctrl.isr.retain(|&r| r != id);
            self.commit();
        }
    }

    fn commit(&mut self) {
        self.ctrl.partition_epoch += 1;
        let delay = self.rng.below(300) as i64;
        self.metadata.push_back((
            self.now_ms + delay,
            self.ctrl.partition_epoch,
            self.ctrl.isr.clone(),
        ));
    }

    /// The controller's AlterPartition decision (Kafka `ReplicationControlManager`).
    fn decide(
        &mut self,
        leader_epoch: i32,
        partition_epoch: i32,
        new_isr: &[(i32, i64)],
    ) -> Result<(), AlterError> {
        if leader_epoch != 5 || partition_epoch != self.ctrl.partition_epoch {
            return Err(AlterError::Fenced);
        }
        for &(id, epoch) in new_isr {
            let i = id as usize;
            let added = !self.ctrl.isr.contains(&id);
            if (added && self.ctrl.fenced[i])
                || (epoch != -1 && epoch != self.ctrl.registered_epoch[i])
            {
                return Err(AlterError::Ineligible);
            }
        }
        let ids: Vec<i32> = new_isr.iter().map(|&(id, _)| id).collect();
        if ids.len() > self.ctrl.isr.len() {
            self.expands += 1;
        } else {
            self.shrinks += 1;
        }
        self.ctrl.isr = ids;
        self.commit();
        Ok(())
    }

    fn deliver(&mut self) {
        let now = self.now_ms;
        while self.metadata.front().is_some_and(|(at, _, _)| *at <= now) {
            let (_, pe, isr) = self.metadata.pop_front().expect("checked");
            let effects = self.leader.on_metadata(pe, vec![1, 2, 3], isr, now);
            self.handle(effects, None);
        }
        match self.in_flight.take() {
            Some(InFlight::Request {
                at_ms,
                leader_epoch,
                partition_epoch,
                new_isr,
            }) if at_ms <= now => {
                let result = if self.rng.chance(10) {
                    Err(AlterError::Retriable) // lost before the controller saw it
                } else {
                    let decided = self.decide(leader_epoch, partition_epoch, &new_isr);
                    if self.rng.chance(10) {
                        Err(AlterError::Retriable) // the answer was lost
                    } else {
                        decided
                    }
                };
                let at_ms = now + self.rng.below(100) as i64;
                self.in_flight = Some(InFlight::Answer { at_ms, result });
            }
            Some(InFlight::Answer { at_ms, result }) if at_ms <= now => {
                let effects = self.leader.on_alter_partition_result(result, now);
                self.handle(effects, Some(result));
            }
            other => self.in_flight = other,
        }
    }

    fn handle(&mut self, effects: Vec<Effect>, answered: Option<Result<(), AlterError>>) {
        for effect in effects {
            match effect {
                Effect::HighWatermark(hw) => {
                    assert!(
                        hw > self.last_hw,
                        "HW effect {hw} not above {}",
                        self.last_hw
                    );
                    assert!(
                        self.leader.committed_isr().len() >= MIN_ISR as usize,
                        "HW advanced with committed ISR {:?}",
                        self.leader.committed_isr()
                    );
                }
                Effect::ProposeIsr {
                    leader_epoch,
                    partition_epoch,
                    new_isr,
                } => {
                    let retry = answered == Some(Err(AlterError::Retriable));
                    assert!(
                        self.in_flight.is_none() || retry,
                        "two ISR proposals in flight"
                    );
                    let at_ms = self.now_ms + self.rng.below(100) as i64;
                    self.in_flight = Some(InFlight::Request {
                        at_ms,
                        leader_epoch,
                        partition_epoch,
                        new_isr,
                    });
                }
            }
        }
    }

    fn check_state(&mut self) {
        let hw = self.leader.high_watermark();
        assert!(
            hw >= self.last_hw,
            "HW went back from {} to {hw}",
            self.last_hw
        );
        self.last_hw = hw;
        assert!(hw <= self.leader_end);
        for id in self.leader.maximal_isr() {
            if id == LEADER {
                continue;
            }
            let f = self
                .followers
                .iter()
                .find(|f| f.id == id)
                .expect("a follower");
            assert!(
                hw <= f.log_end,
                "HW {hw} above maximal-ISR member {id}'s log end {}",
                f.log_end
            );
            if let Some(seen) = self.leader.follower_log_end(id) {
                assert!(
                    hw <= seen,
                    "HW {hw} above the end {seen} the leader knows for {id}"
                );
            }
        }
        for &id in &self.ctrl.isr {
            if let Some(f) = self.followers.iter().find(|f| f.id == id) {
                assert!(
                    hw <= f.log_end,
                    "HW {hw} above committed ISR member {id}'s log end {}",
                    f.log_end
                );
            }
        }
        assert!(self.leader.committed_isr().contains(&LEADER));
    }
}

#[test]
fn leader_with_two_followers_keeps_its_invariants() {
    let seeds: u64 = std::env::var("REPLICA_SEEDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(200);
    let (mut expands, mut shrinks, mut hw_total) = (0, 0, 0);
    for seed in 0..seeds {
        let result = std::panic::catch_unwind(|| {
            let mut world = World::new(seed);
            for _ in 0..2_000 {
                world.step();
            }
            (world.expands, world.shrinks, world.leader.high_watermark())
        });
        match result {
            Ok((e, s, hw)) => {
                expands += e;
                shrinks += s;
                hw_total += hw;
            }
            Err(_) => panic!(
                "seed {seed} failed (rerun: REPLICA_SEEDS={} and read the message above)",
                seed + 1
            ),
        }
    }
    // The runs must exercise what they check.
    assert!(
        expands > seeds as u32,
        "only {expands} ISR expansions over {seeds} seeds"
    );
    assert!(
        shrinks > seeds as u32,
        "only {shrinks} ISR shrinks over {seeds} seeds"
    );
    assert!(
        hw_total > 100 * seeds as i64,
        "the HW barely moved: {hw_total}"
    );
}

//! Deterministic whole-cluster simulator for the Chained Raft core, the metadata plane on it,
//! and partition replication.
//!
//! One thread, one seed: 3- or 5-node clusters of the real `josefine_chain::Node`, simulated
//! disks that lose unsynced writes on crash, and a network that drops, delays, reorders,
//! duplicates and partitions. With `RunOptions::controller` every server also applies the chain
//! to a `josefine_meta::Image`, runs a broker process, and the chain leader runs the pure
//! controller. `replication` runs partition replication (`josefine_replica`) under the real
//! controller decisions, with acks=all producers and consumers. Every invariant of the spec and of the cluster design is checked after every
//! step; a failing run reports its seed and replays exactly from it. This crate must never use
//! threads, clocks or unseeded randomness: that would break replay.
//!
//! Replay a seed: `cargo run --release -p josefine-sim --bin chain-sim -- --start SEED --seeds 1`.

pub mod invariants;
pub mod meta_invariants;
pub mod replication;
pub mod storage;
pub mod world;

pub use invariants::Violation;
pub use josefine_chain::Mutation;
pub use world::{MetaCounts, MetaMutation, Profile, RunOptions, RunReport, World};

/// Runs one seed to completion.
pub fn run_seed(opts: RunOptions) -> RunReport {
    World::new(opts).run()
}

/// Totals over many runs.
#[derive(Clone, Debug, Default)]
pub struct Totals {
    pub seeds: u64,
    pub sim_time_ms: u64,
    pub elections: u64,
    pub blocks_committed: u64,
    pub dead_blocks_collected: u64,
    pub crashes: u64,
    pub snapshots_installed: u64,
    pub violations: u64,
    pub failing_seeds: Vec<u64>,
    pub meta: MetaCounts,
    /// The longest time the metadata plane took to settle after the heal.
    pub settled_after_heal_ms_max: u64,
}

impl Totals {
    pub fn add(&mut self, r: &RunReport) {
        self.seeds += 1;
        self.sim_time_ms += r.sim_time_ms;
        self.elections += r.elections;
        self.blocks_committed += r.blocks_committed;
        self.dead_blocks_collected += r.dead_blocks_collected;
        self.crashes += r.crashes;
        self.snapshots_installed += r.snapshots_installed;
        self.violations += r.violations.len() as u64;
        self.meta.add(&r.meta);
        self.settled_after_heal_ms_max = self
            .settled_after_heal_ms_max
            .max(r.settled_after_heal_ms.unwrap_or(0));
        if !r.violations.is_empty() {
            self.failing_seeds.push(r.seed);
        }
    }
}

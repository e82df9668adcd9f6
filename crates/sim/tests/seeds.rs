//! The simulator as a test: a few hundred seeds must hold every invariant, a seed must replay
//! exactly, and every deliberately broken core must be caught within a bounded number of seeds
//! (proof that the checks can fail).

use josefine_sim::{run_seed, Mutation, Profile, RunOptions, RunReport};

fn report_failure(r: &RunReport, mutation: Mutation) -> String {
    let v = &r.violations[0];
    format!(
        "seed {} ({} nodes, {mutation:?}) violated {} at {} ms: {}\nreplay: cargo run --release -p josefine-sim --bin chain-sim -- --start {} --seeds 1",
        r.seed, r.nodes, v.property, v.time_ms, v.detail, r.seed
    )
}

#[test]
fn three_hundred_seeds_hold_every_invariant() {
    let mut committed = 0;
    let mut elections = 0;
    for seed in 0..300 {
        let mut opts = RunOptions::new(seed);
        opts.fault_ms = 3_000;
        let r = run_seed(opts);
        assert!(
            r.violations.is_empty(),
            "{}",
            report_failure(&r, Mutation::None)
        );
        committed += r.blocks_committed;
        elections += r.elections;
    }
    // The runs must have done real work, or the zero above means nothing.
    assert!(committed > 10_000, "only {committed} blocks committed");
    assert!(elections > 300, "only {elections} elections");
}

#[test]
fn a_seed_replays_exactly() {
    let a = run_seed(RunOptions::new(12345));
    let b = run_seed(RunOptions::new(12345));
    assert_eq!(format!("{a:?}"), format!("{b:?}"));
    let c = run_seed(RunOptions::new(12346));
    assert_ne!(format!("{a:?}"), format!("{c:?}"));
}

#[test]
fn leader_churn_seeds_hold_every_invariant() {
    for seed in 0..20 {
        let mut opts = RunOptions::new(seed);
        opts.profile = Profile::LeaderChurn;
        opts.fault_ms = 10_000;
        let r = run_seed(opts);
        assert!(
            r.violations.is_empty(),
            "{}",
            report_failure(&r, Mutation::None)
        );
    }
}

/// Runs leader-churn seeds from 0 until the mutation is caught; fails if none of the first
/// `bound` seeds catches it. The bounds are about twice the first catching seed measured
/// with `chain-sim --profile churn --fault-ms 30000 --mutation ...`.
fn caught_within(mutation: Mutation, bound: u64) -> u64 {
    for seed in 0..bound {
        let mut opts = RunOptions::new(seed);
        opts.mutation = mutation;
        opts.profile = Profile::LeaderChurn;
        opts.fault_ms = 30_000;
        let r = run_seed(opts);
        if let Some(v) = r.violations.first() {
            println!(
                "{mutation:?} caught by seed {seed} ({} seeds run): {} at {} ms: {}",
                seed + 1,
                v.property,
                v.time_ms,
                v.detail
            );
            return seed;
        }
    }
    panic!("{mutation:?} not caught within {bound} seeds");
}

#[test]
fn mutation_vote_on_last_appended_term_is_caught() {
    caught_within(Mutation::VoteOnLastAppendedTerm, 20);
}

#[test]
fn mutation_vote_without_up_to_date_check_is_caught() {
    caught_within(Mutation::VoteWithoutUpToDateCheck, 20);
}

#[test]
fn mutation_commit_older_term_by_count_is_caught() {
    caught_within(Mutation::CommitOlderTermByCount, 80);
}

#[test]
fn mutation_ack_before_fsync_is_caught() {
    caught_within(Mutation::AckBeforeFsync, 20);
}

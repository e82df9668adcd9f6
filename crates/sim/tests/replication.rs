//! The replication simulation (`--replication`): seeds must hold every replication invariant
//! while doing real work (acks, HW moves, ISR shrinks and expands, leader changes, truncations),
//! a seed must replay exactly, and every deliberately broken replication rule must be caught by
//! its own check within a few seeds. The long run is `chain-sim --replication --seeds 1000`.

use josefine_sim::replication::{
    run_replication_seed, ReplCounts, ReplMutation, ReplOptions, ReplReport,
};

fn describe(r: &ReplReport, mutation: ReplMutation) -> String {
    let v = &r.violations[0];
    format!(
        "seed {} ({}) violated {} at {} ms: {}\nreplay: cargo run --release -p josefine-sim --bin chain-sim -- --replication --start {} --seeds 1 --mutation {}",
        r.seed,
        mutation.name(),
        v.property,
        v.time_ms,
        v.detail,
        r.seed,
        mutation.name()
    )
}

#[test]
fn replication_seeds_hold_every_invariant() {
    let mut counts = ReplCounts::default();
    for seed in 0..6 {
        let r = run_replication_seed(ReplOptions::new(seed));
        assert!(
            r.violations.is_empty(),
            "{}",
            describe(&r, ReplMutation::None)
        );
        counts.add(&r.counts);
    }
    println!("{counts:?}");
    // The runs must have exercised every path, or the zero violations above mean little.
    assert!(counts.acked > 1_000, "{counts:?}");
    assert!(counts.consumer_reads > 1_000, "{counts:?}");
    assert!(counts.isr_shrinks > 10, "{counts:?}");
    assert!(counts.isr_expands > 10, "{counts:?}");
    assert!(counts.leader_changes > 10, "{counts:?}");
    assert!(counts.truncations > 2, "{counts:?}");
    assert!(
        counts.crashes > 5 && counts.pauses > 5 && counts.cuts > 5,
        "{counts:?}"
    );
    assert!(counts.refused_not_enough_replicas > 0, "{counts:?}");
    assert!(counts.controlled_shutdowns > 2, "{counts:?}");
}

#[test]
fn a_replication_seed_replays_exactly() {
    let a = run_replication_seed(ReplOptions::new(4242));
    let b = run_replication_seed(ReplOptions::new(4242));
    assert_eq!(format!("{a:?}"), format!("{b:?}"));
    let c = run_replication_seed(ReplOptions::new(4243));
    assert_ne!(format!("{a:?}"), format!("{c:?}"));
}

/// Runs seeds from 0 until the mutation is caught; its first violation must come from the check
/// it breaks, and a seed below `bound` must catch it. The bounds are several times the first
/// catching seed measured with `chain-sim --replication --mutation ...` over 500 seeds.
fn caught_within(mutation: ReplMutation, bound: u64) {
    for seed in 0..bound {
        let r = run_replication_seed(ReplOptions {
            mutation,
            ..ReplOptions::new(seed)
        });
        if let Some(v) = r.violations.first() {
            println!(
                "{} caught by seed {seed}: {} at {} ms: {}",
                mutation.name(),
                v.property,
                v.time_ms,
                v.detail
            );
            assert_eq!(
                v.property,
                mutation.caught_by(),
                "{}",
                describe(&r, mutation)
            );
            return;
        }
    }
    panic!("mutation {} survived seeds 0..{bound}", mutation.name());
}

#[test]
fn hw_at_log_end_is_caught() {
    caught_within(ReplMutation::HwAtLogEnd, 5);
}

#[test]
fn leader_outside_isr_is_caught() {
    caught_within(ReplMutation::LeaderOutsideIsr, 5);
}

#[test]
fn truncate_to_hw_is_caught() {
    caught_within(ReplMutation::TruncateToHw, 10);
}

#[test]
fn no_partition_epoch_check_is_caught() {
    caught_within(ReplMutation::NoPartitionEpochCheck, 30);
}

//! One test per rule of `LeaderState`; each names the rule it pins down.

use super::*;

const LAG_MS: i64 = 10_000;

fn settings(min_insync_replicas: i32) -> ReplicaSettings {
    ReplicaSettings {
        replica_lag_time_max_ms: LAG_MS,
        min_insync_replicas,
    }
}

/// Leader 1 of replicas [1, 2, 3] at leader epoch 5, partition epoch 7, started at t=0.
fn leader(isr: &[i32], log_end: i64, hw: i64, epoch_start: i64, min_isr: i32) -> LeaderState {
    LeaderState::new(
        1,
        5,
        7,
        vec![1, 2, 3],
        isr.to_vec(),
        log_end,
        hw,
        epoch_start,
        settings(min_isr),
        0,
    )
}

fn hw_effects(effects: &[Effect]) -> Vec<i64> {
    effects
        .iter()
        .filter_map(|e| match e {
            Effect::HighWatermark(hw) => Some(*hw),
            _ => None,
        })
        .collect()
}

fn proposals(effects: &[Effect]) -> Vec<(i32, Vec<i32>)> {
    effects
        .iter()
        .filter_map(|e| match e {
            Effect::ProposeIsr {
                partition_epoch,
                new_isr,
                ..
            } => Some((
                *partition_epoch,
                new_isr.iter().map(|&(id, _)| id).collect(),
            )),
            _ => None,
        })
        .collect()
}

/// Follower `id` fetches at `offset` with broker epoch 100 + id, eligible.
fn fetch(l: &mut LeaderState, id: i32, offset: i64, now_ms: i64) -> Vec<Effect> {
    let end = l.log_end();
    l.on_follower_fetch(id, 100 + i64::from(id), offset, end, true, now_ms)
}

#[test]
fn hw_is_the_smallest_log_end_of_the_isr() {
    let mut l = leader(&[1, 2, 3], 10, 0, 0, 1);
    assert!(
        hw_effects(&fetch(&mut l, 2, 7, 1)).is_empty(),
        "3 has not fetched yet"
    );
    assert_eq!(hw_effects(&fetch(&mut l, 3, 5, 2)), vec![5]);
    assert_eq!(l.high_watermark(), 5);
    assert_eq!(hw_effects(&fetch(&mut l, 3, 10, 3)), vec![7]);
    assert_eq!(hw_effects(&fetch(&mut l, 2, 10, 4)), vec![10]);
}

#[test]
fn hw_waits_for_an_isr_member_that_has_not_fetched_this_epoch() {
    let mut l = leader(&[1, 2, 3], 10, 4, 10, 1);
    assert!(hw_effects(&fetch(&mut l, 2, 10, 1)).is_empty());
    assert!(hw_effects(&l.on_local_append(12, 2)).is_empty());
    assert!(hw_effects(&l.tick(12, 3)).is_empty());
    assert_eq!(l.high_watermark(), 4);
}

#[test]
fn hw_never_decreases_when_an_isr_member_reports_less() {
    let mut l = leader(&[1, 2, 3], 10, 0, 0, 1);
    fetch(&mut l, 2, 10, 1);
    fetch(&mut l, 3, 8, 2);
    assert_eq!(l.high_watermark(), 8);
    // Replica 3 lost its tail (power loss) and comes back with a new broker epoch.
    let effects = l.on_follower_fetch(3, 200, 3, 10, true, 3);
    assert!(hw_effects(&effects).is_empty());
    assert_eq!(l.high_watermark(), 8);
}

#[test]
fn hw_does_not_advance_while_the_committed_isr_is_below_min_insync() {
    let mut l = leader(&[1], 10, 2, 0, 2);
    assert!(hw_effects(&l.on_local_append(12, 1)).is_empty());
    assert_eq!(l.high_watermark(), 2);
    // Once the controller commits a second member it advances.
    fetch(&mut l, 2, 12, 2);
    assert_eq!(
        l.high_watermark(),
        2,
        "a pending expand does not count for min.insync"
    );
    assert_eq!(
        hw_effects(&l.on_alter_partition_result(Ok(()), 3)),
        vec![12]
    );
}

#[test]
fn min_insync_is_capped_at_the_replica_count() {
    let mut l = LeaderState::new(1, 0, 0, vec![1], vec![1], 0, 0, 0, settings(3), 0);
    assert_eq!(hw_effects(&l.on_local_append(4, 1)), vec![4]);
    assert!(l.check_enough_replicas().is_ok());
}

#[test]
fn a_pending_expand_holds_the_hw_at_the_new_members_end() {
    let mut l = leader(&[1, 2], 10, 10, 0, 1);
    fetch(&mut l, 2, 10, 1);
    assert_eq!(
        proposals(&fetch(&mut l, 3, 10, 2)),
        vec![(7, vec![1, 2, 3])]
    );
    assert_eq!(l.maximal_isr(), vec![1, 2, 3]);
    assert_eq!(l.committed_isr(), &[1, 2]);
    l.on_local_append(20, 3);
    assert!(
        hw_effects(&fetch(&mut l, 2, 20, 4)).is_empty(),
        "3 (pending) is at 10"
    );
    assert_eq!(l.high_watermark(), 10);
}

#[test]
fn a_pending_shrink_still_counts_the_removed_member() {
    let mut l = leader(&[1, 2, 3], 10, 0, 0, 1);
    fetch(&mut l, 2, 10, 1);
    fetch(&mut l, 3, 10, 1);
    l.on_local_append(20, 2);
    fetch(&mut l, 2, 20, 3);
    // 3 stops fetching; past the lag time it is proposed for removal.
    assert_eq!(proposals(&l.tick(20, 3 + LAG_MS)), vec![(7, vec![1, 2])]);
    assert_eq!(l.maximal_isr(), vec![1, 2, 3]);
    assert_eq!(
        l.high_watermark(),
        10,
        "3 is still counted until the shrink commits"
    );
    assert_eq!(
        hw_effects(&l.on_alter_partition_result(Ok(()), 4 + LAG_MS)),
        vec![20]
    );
    assert_eq!(l.committed_isr(), &[1, 2]);
    assert_eq!(l.partition_epoch(), 8);
}

#[test]
fn expand_needs_the_follower_at_or_above_the_hw() {
    let mut l = leader(&[1, 2], 10, 10, 0, 1);
    assert!(proposals(&fetch(&mut l, 3, 9, 1)).is_empty());
    assert_eq!(
        proposals(&fetch(&mut l, 3, 10, 2)),
        vec![(7, vec![1, 2, 3])]
    );
}

#[test]
fn expand_needs_the_follower_at_or_above_the_epoch_start() {
    // A new leader whose HW (5) is below its epoch start (10).
    let mut l = leader(&[1, 2], 12, 5, 10, 1);
    assert!(
        proposals(&fetch(&mut l, 3, 7, 1)).is_empty(),
        "7 >= HW but < epoch start"
    );
    assert_eq!(
        proposals(&fetch(&mut l, 3, 10, 2)),
        vec![(7, vec![1, 2, 3])]
    );
}

#[test]
fn expand_needs_an_eligible_follower() {
    let mut l = leader(&[1, 2], 10, 10, 0, 1);
    let effects = l.on_follower_fetch(3, 103, 10, 10, false, 1);
    assert!(proposals(&effects).is_empty());
    assert_eq!(l.maximal_isr(), vec![1, 2]);
}

#[test]
fn a_caught_up_eligible_follower_outside_the_isr_holds_the_hw() {
    // ISR {1}; 2's expand is in flight, so 3 cannot be proposed, but it is caught up.
    let mut l = leader(&[1], 10, 10, 0, 1);
    assert_eq!(proposals(&fetch(&mut l, 2, 10, 1)), vec![(7, vec![1, 2])]);
    assert!(
        proposals(&fetch(&mut l, 3, 10, 1)).is_empty(),
        "one proposal in flight"
    );
    l.on_local_append(20, 2);
    fetch(&mut l, 2, 20, 3);
    assert_eq!(
        l.high_watermark(),
        10,
        "3 is caught up (within the lag time) and eligible"
    );
    // An ineligible caught-up follower would not hold it: past the lag time 3 stops counting.
    assert_eq!(hw_effects(&l.tick(20, 1 + LAG_MS + 1)), vec![20]);
}

#[test]
fn an_ineligible_follower_outside_the_isr_does_not_hold_the_hw() {
    let mut l = leader(&[1, 2], 10, 10, 0, 1);
    l.on_follower_fetch(3, 103, 10, 10, false, 1);
    l.on_local_append(20, 2);
    assert_eq!(hw_effects(&fetch(&mut l, 2, 20, 3)), vec![20]);
}

#[test]
fn shrink_after_the_lag_time_without_catching_up() {
    let mut l = leader(&[1, 2, 3], 10, 0, 0, 1);
    fetch(&mut l, 2, 10, 0);
    fetch(&mut l, 3, 10, 0);
    l.on_local_append(20, 1);
    fetch(&mut l, 2, 20, 2);
    // 3 keeps fetching but never reaches the leader's log end (appends keep coming).
    for t in [1000, 3000, 6000] {
        let end = l.log_end();
        l.on_local_append(end + 10, t);
        l.on_follower_fetch(3, 103, end - 5, end + 10, true, t);
        fetch(&mut l, 2, end + 10, t);
    }
    assert!(
        proposals(&l.tick(l.log_end(), LAG_MS)).is_empty(),
        "exactly the lag time is still in sync"
    );
    assert_eq!(
        proposals(&l.tick(l.log_end(), LAG_MS + 1)),
        vec![(7, vec![1, 2])]
    );
}

#[test]
fn reaching_the_leader_end_seen_at_the_previous_fetch_counts_as_caught_up_then() {
    let mut l = leader(&[1, 2], 10, 0, 0, 1);
    fetch(&mut l, 2, 5, 100); // the leader's end was 10 at t=100
    l.on_local_append(15, 150);
    fetch(&mut l, 2, 10, 200); // 10 >= 10: caught up as of the previous fetch (t=100)
    assert!(proposals(&l.tick(15, 100 + LAG_MS)).is_empty());
    assert_eq!(proposals(&l.tick(15, 101 + LAG_MS)), vec![(7, vec![1])]);
}

#[test]
fn a_follower_at_the_leader_end_is_in_sync_however_long_ago_it_fetched() {
    let mut l = leader(&[1, 2], 10, 0, 0, 1);
    fetch(&mut l, 2, 10, 0);
    assert!(proposals(&l.tick(10, 10 * LAG_MS)).is_empty());
}

#[test]
fn an_isr_member_that_never_fetches_is_removed_after_the_lag_time() {
    let mut l = leader(&[1, 2], 10, 0, 0, 1);
    assert!(
        proposals(&l.tick(10, LAG_MS)).is_empty(),
        "caught up as of becoming leader"
    );
    assert_eq!(proposals(&l.tick(10, LAG_MS + 1)), vec![(7, vec![1])]);
}

#[test]
fn one_proposal_in_flight() {
    let mut l = leader(&[1], 10, 10, 0, 1);
    assert_eq!(proposals(&fetch(&mut l, 2, 10, 1)).len(), 1);
    assert!(proposals(&fetch(&mut l, 3, 10, 2)).is_empty());
    assert!(proposals(&l.tick(10, 10 * LAG_MS)).is_empty());
    assert!(l.proposal_outstanding());
    l.on_alter_partition_result(Ok(()), 3);
    assert!(!l.proposal_outstanding());
    assert_eq!(
        proposals(&fetch(&mut l, 3, 10, 4)),
        vec![(8, vec![1, 2, 3])]
    );
}

#[test]
fn a_retriable_failure_sends_the_same_proposal_again() {
    let mut l = leader(&[1], 10, 10, 0, 1);
    let first = fetch(&mut l, 2, 10, 1);
    let again = l.on_alter_partition_result(Err(AlterError::Retriable), 2);
    assert_eq!(proposals(&first), proposals(&again));
    assert!(l.proposal_outstanding());
    assert_eq!(l.maximal_isr(), vec![1, 2]);
}

#[test]
fn an_ineligible_answer_returns_to_the_committed_isr() {
    let mut l = leader(&[1], 10, 10, 0, 1);
    fetch(&mut l, 2, 10, 1);
    assert!(l
        .on_alter_partition_result(Err(AlterError::Ineligible), 2)
        .is_empty());
    assert_eq!(l.maximal_isr(), vec![1]);
    assert!(!l.isr_change_pending());
    assert_eq!(
        proposals(&fetch(&mut l, 2, 10, 3)).len(),
        1,
        "may propose again"
    );
}

#[test]
fn a_fenced_answer_waits_for_newer_metadata() {
    let mut l = leader(&[1, 2, 3], 10, 0, 0, 1);
    fetch(&mut l, 2, 10, 0);
    assert_eq!(proposals(&l.tick(10, LAG_MS + 1)), vec![(7, vec![1, 2])]);
    assert!(l
        .on_alter_partition_result(Err(AlterError::Fenced), LAG_MS + 2)
        .is_empty());
    assert!(l.isr_change_pending());
    assert!(
        proposals(&l.tick(10, LAG_MS + 3)).is_empty(),
        "paused until metadata"
    );
    // Metadata at the same partition epoch cannot contain the change: still pending.
    l.on_metadata(7, vec![1, 2, 3], vec![1, 2, 3], LAG_MS + 4);
    assert!(l.isr_change_pending());
    // A newer partition epoch resolves it (here the controller removed 3 itself).
    assert_eq!(
        hw_effects(&l.on_metadata(8, vec![1, 2, 3], vec![1, 2], LAG_MS + 5)),
        vec![10]
    );
    assert!(!l.isr_change_pending());
}

#[test]
fn metadata_with_an_older_partition_epoch_is_ignored() {
    let mut l = leader(&[1, 2, 3], 10, 0, 0, 1);
    l.on_metadata(6, vec![1, 2, 3], vec![1], 1);
    assert_eq!(l.committed_isr(), &[1, 2, 3]);
    assert_eq!(l.partition_epoch(), 7);
}

#[test]
fn superseded_proposal_blocks_new_ones_until_its_answer_arrives() {
    let mut l = leader(&[1], 10, 10, 0, 1);
    fetch(&mut l, 2, 10, 1);
    // The controller committed it; the leader sees the metadata before the answer.
    l.on_metadata(8, vec![1, 2, 3], vec![1, 2], 2);
    assert!(!l.isr_change_pending());
    assert!(
        proposals(&fetch(&mut l, 3, 10, 3)).is_empty(),
        "the old answer is still due"
    );
    // A late answer changes nothing (the metadata already told us), then proposals resume.
    assert!(l
        .on_alter_partition_result(Err(AlterError::Fenced), 4)
        .is_empty());
    assert_eq!(l.committed_isr(), &[1, 2]);
    assert_eq!(l.partition_epoch(), 8);
    assert_eq!(
        proposals(&fetch(&mut l, 3, 10, 5)),
        vec![(8, vec![1, 2, 3])]
    );
}

#[test]
fn an_answer_after_the_metadata_does_not_move_the_partition_epoch_back() {
    let mut l = leader(&[1], 10, 10, 0, 1);
    fetch(&mut l, 2, 10, 1);
    l.on_metadata(9, vec![1, 2, 3], vec![1, 2], 2);
    l.on_alter_partition_result(Ok(()), 3);
    assert_eq!(l.partition_epoch(), 9);
}

#[test]
fn a_shrink_committed_by_the_controller_lets_the_hw_advance() {
    let mut l = leader(&[1, 2, 3], 10, 0, 0, 1);
    fetch(&mut l, 2, 10, 1);
    assert_eq!(l.high_watermark(), 0, "3 never fetched");
    assert_eq!(
        hw_effects(&l.on_metadata(8, vec![1, 2, 3], vec![1, 2], 2)),
        vec![10]
    );
}

#[test]
fn enough_replicas_counts_the_committed_isr_only() {
    let mut l = leader(&[1], 10, 10, 0, 2);
    assert_eq!(
        l.check_enough_replicas(),
        Err(NotEnoughReplicas {
            isr_size: 1,
            min_insync_replicas: 2
        })
    );
    fetch(&mut l, 2, 10, 1);
    assert_eq!(l.maximal_isr().len(), 2);
    assert!(
        l.check_enough_replicas().is_err(),
        "the expand is not committed yet"
    );
    l.on_alter_partition_result(Ok(()), 2);
    assert!(l.check_enough_replicas().is_ok());
}

#[test]
fn acks_all_status_follows_the_hw_and_the_maximal_isr() {
    let mut l = leader(&[1, 2], 10, 10, 0, 2);
    fetch(&mut l, 2, 10, 0);
    l.on_local_append(15, 1);
    assert_eq!(l.acks_all_status(15), AckStatus::Waiting);
    fetch(&mut l, 2, 15, 2);
    assert_eq!(l.acks_all_status(15), AckStatus::Done);
    l.on_metadata(8, vec![1, 2, 3], vec![1], 3);
    assert_eq!(
        l.acks_all_status(15),
        AckStatus::NotEnoughReplicasAfterAppend
    );
}

#[test]
fn fetches_that_must_not_count() {
    let mut l = leader(&[1, 2], 10, 0, 0, 1);
    assert!(
        l.on_follower_fetch(9, 1, 10, 10, true, 1).is_empty(),
        "not a replica"
    );
    assert!(
        l.on_follower_fetch(2, 5, 11, 10, true, 1).is_empty(),
        "beyond the leader's end"
    );
    assert_eq!(l.follower_log_end(2), None);
    assert_eq!(
        hw_effects(&l.on_follower_fetch(2, 5, 4, 10, true, 2)),
        vec![4]
    );
    assert!(
        l.on_follower_fetch(2, 4, 10, 10, true, 3).is_empty(),
        "an older broker epoch"
    );
    assert_eq!(l.follower_log_end(2), Some(4));
}

#[test]
fn proposals_carry_the_broker_epochs_seen_in_fetches() {
    let mut l = leader(&[1, 2], 10, 10, 0, 1);
    l.set_local_broker_epoch(42);
    let effects = l.on_follower_fetch(3, 77, 10, 10, true, 1);
    assert_eq!(
        effects,
        vec![Effect::ProposeIsr {
            leader_epoch: 5,
            partition_epoch: 7,
            new_isr: vec![(1, 42), (2, -1), (3, 77)]
        }]
    );
}

#[test]
fn a_replica_added_by_metadata_starts_unknown() {
    let mut l = LeaderState::new(1, 0, 0, vec![1, 2], vec![1, 2], 10, 10, 0, settings(1), 0);
    fetch(&mut l, 2, 10, 1);
    l.on_metadata(1, vec![1, 2, 4], vec![1, 2], 2);
    assert_eq!(l.follower_log_end(4), None);
    l.on_local_append(12, 3);
    assert_eq!(
        hw_effects(&fetch(&mut l, 2, 12, 4)),
        vec![12],
        "4 is neither in the ISR nor caught up"
    );
    l.on_metadata(2, vec![1, 4], vec![1, 4], 5);
    assert_eq!(l.follower_log_end(2), None, "2 left the assignment");
}

#[test]
fn a_tick_right_after_becoming_leader_moves_the_hw_when_the_isr_allows() {
    // Leader alone in the ISR with min.insync 1: the HW catches up to the log end at once.
    let mut alone = leader(&[1], 10, 4, 10, 1);
    assert_eq!(hw_effects(&alone.tick(10, 0)), vec![10]);
    // With followers in the ISR it waits for their fetches.
    let mut with_followers = leader(&[1, 2], 10, 4, 10, 1);
    assert!(hw_effects(&with_followers.tick(10, 0)).is_empty());
}

/// A caught-up, eligible follower outside the ISR holds the HW (Kafka
/// `shouldWaitForReplicaToJoinIsr`) only while its broker stays eligible: once the metadata
/// fences it, the HW moves on without waiting out `replica.lag.time.max.ms`.
#[test]
fn a_fenced_follower_stops_holding_the_hw_at_once() {
    let mut l = leader(&[1, 2, 3], 10, 10, 0, 2);
    fetch(&mut l, 2, 10, 100);
    fetch(&mut l, 3, 10, 100);
    l.on_local_append(12, 200);
    fetch(&mut l, 2, 12, 300);
    // The controller fenced 3 and took it out of the ISR; it was caught up 100 ms ago.
    let effects = l.on_metadata(8, vec![1, 2, 3], vec![1, 2], 400);
    assert!(
        hw_effects(&effects).is_empty(),
        "3 still counts while eligible"
    );
    assert_eq!(l.high_watermark(), 10);
    let effects = l.on_replica_eligibility(3, Some(103), false, 500);
    assert_eq!(hw_effects(&effects), vec![12]);
    // Registered again under a new broker epoch: still not eligible until it fetches with it.
    let mut l = leader(&[1, 2, 3], 10, 10, 0, 2);
    fetch(&mut l, 2, 10, 100);
    fetch(&mut l, 3, 10, 100);
    l.on_local_append(12, 200);
    fetch(&mut l, 2, 12, 300);
    l.on_metadata(8, vec![1, 2, 3], vec![1, 2], 400);
    assert_eq!(
        hw_effects(&l.on_replica_eligibility(3, Some(999), true, 500)),
        vec![12]
    );
}

/// `min.insync.replicas` changed by AlterConfigs applies at once: admission and the HW freeze.
#[test]
fn a_changed_min_insync_applies_to_admission_and_the_hw() {
    let mut l = leader(&[1], 10, 10, 0, 1);
    assert!(l.check_enough_replicas().is_ok());
    l.on_local_append(12, 100);
    assert_eq!(l.high_watermark(), 12);
    assert!(l.set_min_insync_replicas(2, 200).is_empty());
    assert!(l.check_enough_replicas().is_err());
    l.on_local_append(14, 300);
    assert_eq!(l.high_watermark(), 12, "frozen under min.insync.replicas");
    assert_eq!(hw_effects(&l.set_min_insync_replicas(1, 400)), vec![14]);
}

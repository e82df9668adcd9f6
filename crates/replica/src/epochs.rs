//! Leader epochs on the fetch path: the leader's diverging-epoch answer, the follower's
//! truncation offset and the follower's high watermark.
//!
//! Owns the arithmetic of Kafka's truncate-on-fetch (KIP-595 style, Kafka >= 2.7):
//! `Partition.readRecords` on the leader, `AbstractFetcherThread.getOffsetTruncationState` on
//! the follower. Must never truncate to the local high watermark: a follower that did so could
//! drop records the new leader's HW already covers and then be elected with a hole.
//!
//! All offsets are "end offsets" (one past the last record); `(epoch, end_offset)` pairs are
//! what `end_offset_for_epoch` returns: the largest cached epoch <= the requested one and the
//! start offset of the next higher epoch (the log end for the latest epoch). -1 means
//! undefined, as on the wire.

/// What the leader does with a replica fetch, given the follower's `last_fetched_epoch`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FetchEpochCheck {
    /// The follower's log is consistent with ours up to its fetch offset: read records.
    Read,
    /// Answer `diverging_epoch { epoch, end_offset }` with no records; the follower truncates.
    Diverging { epoch: i32, end_offset: i64 },
    /// Kafka answers OFFSET_OUT_OF_RANGE: the leader cannot place the follower's epoch.
    OffsetOutOfRange,
}

/// Leader side of a replica fetch (Kafka `Partition.readRecords`).
///
/// `last_fetched_epoch` is the Fetch request's field (-1: the follower has no epoch yet, no
/// check). `leader_end_for_epoch` is the leader log's `end_offset_for_epoch(last_fetched_epoch)`
/// with Kafka's `LeaderEpochFileCache.endOffsetFor` meaning; for an epoch below every cached
/// epoch Kafka answers `(requested epoch, start offset of the first cached epoch)`. `None`
/// (unknown) is OFFSET_OUT_OF_RANGE. A fetch offset below the log start is OFFSET_OUT_OF_RANGE
/// too, checked by the caller before this.
pub fn check_fetch_epoch(
    last_fetched_epoch: i32,
    fetch_offset: i64,
    leader_end_for_epoch: Option<(i32, i64)>,
) -> FetchEpochCheck {
    if last_fetched_epoch < 0 {
        return FetchEpochCheck::Read;
    }
    match leader_end_for_epoch {
        Some((epoch, end_offset)) if epoch >= 0 && end_offset >= 0 => {
            if epoch < last_fetched_epoch || end_offset < fetch_offset {
                FetchEpochCheck::Diverging { epoch, end_offset }
            } else {
                FetchEpochCheck::Read
            }
        }
        _ => FetchEpochCheck::OffsetOutOfRange,
    }
}

/// Leader side of a replica fetch: `Some((epoch, end_offset))` ⇒ answer `diverging_epoch`.
///
/// `None` means "read" *or* OFFSET_OUT_OF_RANGE (when `leader_end_for_epoch` is `None` for a
/// defined `last_fetched_epoch`); use [`check_fetch_epoch`] to tell them apart.
pub fn diverging_epoch(
    last_fetched_epoch: i32,
    fetch_offset: i64,
    leader_end_for_epoch: Option<(i32, i64)>,
) -> Option<(i32, i64)> {
    match check_fetch_epoch(last_fetched_epoch, fetch_offset, leader_end_for_epoch) {
        FetchEpochCheck::Diverging { epoch, end_offset } => Some((epoch, end_offset)),
        FetchEpochCheck::Read | FetchEpochCheck::OffsetOutOfRange => None,
    }
}

/// Follower side: the offset to truncate the local log to after the leader answered
/// `diverging` = `(epoch, end_offset)`. `local_end_for_epoch` is the local log's
/// `end_offset_for_epoch(diverging.0)`, `log_end` the local log end.
///
/// Kafka `getOffsetTruncationState`: when the follower knows the leader's epoch, truncate to
/// the smaller of both ends of it; when it does not, truncate to the end of its largest epoch
/// below it and fetch again (the next answer narrows it down); an undefined end offset means
/// "keep the log" (the fetch offset). Never the local high watermark.
pub fn truncation_offset(
    diverging: (i32, i64),
    local_end_for_epoch: Option<(i32, i64)>,
    log_end: i64,
) -> i64 {
    let (leader_epoch, leader_end) = diverging;
    if leader_end < 0 {
        return log_end;
    }
    if leader_epoch < 0 {
        return leader_end.min(log_end);
    }
    match local_end_for_epoch {
        Some((local_epoch, local_end)) if local_epoch != leader_epoch => local_end.min(log_end),
        Some((_, local_end)) => local_end.min(leader_end).min(log_end),
        None => leader_end.min(log_end),
    }
}

/// A follower's high watermark after a fetch response: the leader's, capped at the local log
/// end (the log clamps it at the log start).
pub fn follower_high_watermark(leader_hw: i64, log_end: i64) -> i64 {
    leader_hw.min(log_end)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_last_fetched_epoch_means_no_check() {
        assert_eq!(check_fetch_epoch(-1, 50, None), FetchEpochCheck::Read);
        assert_eq!(diverging_epoch(-1, 50, Some((0, 10))), None);
    }

    #[test]
    fn same_epoch_ending_at_or_after_the_fetch_offset_reads() {
        // Leader: epoch 3 ends at 100 (epoch 4 starts there). Follower at 80 in epoch 3.
        assert_eq!(
            check_fetch_epoch(3, 80, Some((3, 100))),
            FetchEpochCheck::Read
        );
        assert_eq!(
            check_fetch_epoch(3, 100, Some((3, 100))),
            FetchEpochCheck::Read
        );
    }

    #[test]
    fn epoch_ending_before_the_fetch_offset_diverges() {
        // The follower has epoch-3 records up to 120; the leader's epoch 3 ended at 100.
        assert_eq!(diverging_epoch(3, 120, Some((3, 100))), Some((3, 100)));
    }

    #[test]
    fn epoch_unknown_to_the_leader_diverges_at_its_floor_epoch() {
        // The follower wrote epoch 5 as a leader that never committed; the leader knows 4 then 6.
        assert_eq!(diverging_epoch(5, 120, Some((4, 110))), Some((4, 110)));
        // Even when the floor epoch ends after the fetch offset, a smaller epoch diverges.
        assert_eq!(diverging_epoch(5, 100, Some((4, 110))), Some((4, 110)));
    }

    #[test]
    fn unknown_epoch_is_offset_out_of_range() {
        assert_eq!(
            check_fetch_epoch(2, 10, None),
            FetchEpochCheck::OffsetOutOfRange
        );
        assert_eq!(
            check_fetch_epoch(2, 10, Some((-1, -1))),
            FetchEpochCheck::OffsetOutOfRange
        );
        assert_eq!(diverging_epoch(2, 10, None), None);
    }

    #[test]
    fn truncation_to_the_smaller_end_of_a_shared_epoch() {
        // Leader's epoch 3 ends at 100, ours at 120: truncate to 100.
        assert_eq!(truncation_offset((3, 100), Some((3, 120)), 150), 100);
        // Ours ends first (we never saw its tail): truncate to our end of it.
        assert_eq!(truncation_offset((3, 100), Some((3, 90)), 150), 90);
        // Never above the log end.
        assert_eq!(truncation_offset((3, 100), Some((3, 120)), 95), 95);
    }

    #[test]
    fn truncation_when_we_do_not_know_the_leaders_epoch() {
        // Leader answers epoch 4 (end 110); our largest epoch <= 4 is 2, ending at 70.
        assert_eq!(truncation_offset((4, 110), Some((2, 70)), 150), 70);
        // No epoch <= 4 locally: the leader's end offset.
        assert_eq!(truncation_offset((4, 110), None, 150), 110);
        assert_eq!(truncation_offset((4, 110), None, 50), 50);
    }

    #[test]
    fn undefined_answers_never_fall_back_to_the_high_watermark() {
        // Undefined end: keep the log (Kafka truncates to the fetch offset = the log end).
        assert_eq!(truncation_offset((3, -1), Some((3, 10)), 150), 150);
        // Undefined epoch with an end: the leader's end, capped at ours.
        assert_eq!(truncation_offset((-1, 80), Some((3, 10)), 150), 80);
    }

    #[test]
    fn follower_hw_is_capped_at_its_log_end() {
        assert_eq!(follower_high_watermark(100, 80), 80);
        assert_eq!(follower_high_watermark(60, 80), 60);
    }
}

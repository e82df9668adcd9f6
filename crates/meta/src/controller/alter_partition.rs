//! The controller's AlterPartition decision (Kafka API 56): a partition leader asks to change
//! its partition's ISR.
//!
//! Owns: the rules of Kafka's `ReplicationControlManager.alterPartition` /
//! `validateAlterPartitionData`, in Kafka's order, as a pure function of the image: the
//! requester's broker epoch (STALE_BROKER_EPOCH for the whole request), then per partition
//! UNKNOWN_TOPIC_ID, UNKNOWN_TOPIC_OR_PARTITION, NOT_CONTROLLER when the request names epochs
//! newer than this image (this controller is behind), FENCED_LEADER_EPOCH for an older leader
//! epoch, INVALID_REQUEST when the requester does not lead the partition, INVALID_UPDATE_VERSION
//! for an older partition epoch, INVALID_REQUEST for a new ISR that is not a set of replicas or
//! lacks the leader, INELIGIBLE_REPLICA for a member that is unregistered, fenced, shutting down
//! or named with another broker epoch than its registration's (-1 skips that check, as in
//! Kafka). The result is a [`Command::ChangePartition`] of the ISR only: the leader and the
//! leader epoch stay, the partition epoch is bumped on apply.
//! Must never: change the leader (an ISR change does not bump the leader epoch) or decide
//! from anything but the image passed in. The command names the partition epoch it saw, and
//! `Image::validate` re-checks it and the eligibility of joining members when the command
//! applies, so a stale request can never overwrite a newer ISR even if another change got in
//! between.

use crate::command::{Command, PartitionAssignment, TopicId};
use crate::image::Image;
use crate::MetaError;

/// One partition of an AlterPartition request (v3: `NewIsrWithEpochs`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IsrChangeRequest {
    pub topic_id: TopicId,
    pub partition: i32,
    /// The leader epoch the requester leads at.
    pub leader_epoch: i32,
    /// The partition epoch the requester's ISR is based on.
    pub partition_epoch: i32,
    /// The proposed ISR: (broker id, broker epoch the leader saw it fetch with; -1 = unchecked).
    pub new_isr: Vec<(i32, i64)>,
}

/// Why one partition's ISR change is refused. `kafka_error_code` is what AlterPartition answers.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IsrChangeError {
    #[error("unknown topic id {0}")]
    UnknownTopicId(TopicId),
    #[error("unknown partition {0}")]
    UnknownPartition(i32),
    /// The request names a newer epoch than this image: the caller may find a newer controller.
    #[error("the request names epochs newer than this controller's image")]
    NotController,
    #[error("leader epoch {given} is older than the current {current}")]
    FencedLeaderEpoch { current: i32, given: i32 },
    #[error("partition epoch {given} is older than the current {current}")]
    InvalidUpdateVersion { current: i32, given: i32 },
    #[error("{0}")]
    InvalidRequest(String),
    #[error("{0}")]
    IneligibleReplica(String),
}

impl IsrChangeError {
    /// Kafka's error code for this refusal.
    pub fn kafka_error_code(&self) -> i16 {
        match self {
            IsrChangeError::UnknownTopicId(_) => 100, // UNKNOWN_TOPIC_ID
            IsrChangeError::UnknownPartition(_) => 3, // UNKNOWN_TOPIC_OR_PARTITION
            IsrChangeError::NotController => 41,      // NOT_CONTROLLER
            IsrChangeError::FencedLeaderEpoch { .. } => 74, // FENCED_LEADER_EPOCH
            IsrChangeError::InvalidUpdateVersion { .. } => 95, // INVALID_UPDATE_VERSION
            IsrChangeError::InvalidRequest(_) => 42,  // INVALID_REQUEST
            IsrChangeError::IneligibleReplica(_) => 107, // INELIGIBLE_REPLICA
        }
    }
}

/// The whole-request check: the requester is registered with `broker_epoch` (Kafka's
/// `checkBrokerEpoch`; STALE_BROKER_EPOCH otherwise, for every partition at once).
pub fn check_requester(image: &Image, broker_id: i32, broker_epoch: i64) -> Result<(), MetaError> {
    let current = image.brokers.get(&broker_id).map_or(-1, |b| b.epoch);
    if current != broker_epoch || current < 0 {
        return Err(MetaError::StaleBrokerEpoch {
            node_id: broker_id,
            current,
            given: broker_epoch,
        });
    }
    Ok(())
}

/// Decides one partition of an AlterPartition from broker `broker_id` (already checked with
/// [`check_requester`]). `Ok(None)`: the ISR already is the requested one, nothing to propose
/// (Kafka answers success with the current state).
pub fn decide_isr_change(
    image: &Image,
    broker_id: i32,
    req: &IsrChangeRequest,
) -> Result<Option<Command>, IsrChangeError> {
    if !image.topics.contains_key(&req.topic_id) {
        return Err(IsrChangeError::UnknownTopicId(req.topic_id));
    }
    let p = image
        .partition(req.topic_id, req.partition)
        .ok_or(IsrChangeError::UnknownPartition(req.partition))?;
    if req.leader_epoch > p.leader_epoch || req.partition_epoch > p.partition_epoch {
        return Err(IsrChangeError::NotController);
    }
    if req.leader_epoch < p.leader_epoch {
        return Err(IsrChangeError::FencedLeaderEpoch {
            current: p.leader_epoch,
            given: req.leader_epoch,
        });
    }
    if broker_id != p.leader {
        return Err(IsrChangeError::InvalidRequest(format!(
            "broker {broker_id} does not lead partition {} (leader {})",
            req.partition, p.leader
        )));
    }
    if req.partition_epoch < p.partition_epoch {
        return Err(IsrChangeError::InvalidUpdateVersion {
            current: p.partition_epoch,
            given: req.partition_epoch,
        });
    }
    let new_isr: Vec<i32> = req.new_isr.iter().map(|(id, _)| *id).collect();
    check_isr_shape(p, &new_isr)?;
    let ineligible: Vec<String> = req
        .new_isr
        .iter()
        .filter_map(|&(id, epoch)| {
            ineligibility(image, id, epoch).map(|why| format!("{id} ({why})"))
        })
        .collect();
    if !ineligible.is_empty() {
        return Err(IsrChangeError::IneligibleReplica(format!(
            "partition {}: ineligible replicas in the new ISR {new_isr:?}: {}",
            req.partition,
            ineligible.join(", ")
        )));
    }
    if new_isr == p.isr {
        return Ok(None);
    }
    Ok(Some(Command::ChangePartition {
        topic_id: req.topic_id,
        partition: req.partition,
        expected_partition_epoch: p.partition_epoch,
        leader: None,
        isr: Some(new_isr),
    }))
}

/// Kafka's `Replicas.validateIsr` plus "the ISR holds the leader": non-empty, no repeats, only
/// replicas, the current leader among them.
fn check_isr_shape(p: &PartitionAssignment, new_isr: &[i32]) -> Result<(), IsrChangeError> {
    let bad = |why: String| Err(IsrChangeError::InvalidRequest(why));
    if new_isr.is_empty() {
        return bad(format!("partition {}: the new ISR is empty", p.partition));
    }
    for (j, r) in new_isr.iter().enumerate() {
        if new_isr[..j].contains(r) {
            return bad(format!(
                "partition {}: the new ISR lists {r} twice",
                p.partition
            ));
        }
        if !p.replicas.contains(r) {
            return bad(format!(
                "partition {}: {r} in the new ISR is not a replica {:?}",
                p.partition, p.replicas
            ));
        }
    }
    if !new_isr.contains(&p.leader) {
        return bad(format!(
            "partition {}: the new ISR {new_isr:?} does not hold the leader {}",
            p.partition, p.leader
        ));
    }
    Ok(())
}

/// Why `node_id`, named with `broker_epoch`, may not be in an ISR; None if it may.
fn ineligibility(image: &Image, node_id: i32, broker_epoch: i64) -> Option<String> {
    let Some(reg) = image.brokers.get(&node_id) else {
        return Some("not registered".into());
    };
    if reg.in_controlled_shutdown {
        return Some("shutting down".into());
    }
    if reg.fenced {
        return Some("fenced".into());
    }
    if broker_epoch != -1 && broker_epoch != reg.epoch {
        return Some(format!(
            "broker epoch {broker_epoch}, registered with {}",
            reg.epoch
        ));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::controller::tests::{cluster, step};

    const T: TopicId = TopicId([1; 16]);

    /// Partition 0 of the test cluster: replicas [1, 2, 3], leader 1, ISR [1, 2, 3], epochs 0;
    /// brokers 1, 2, 3 at broker epochs 1, 2, 3.
    fn req(leader_epoch: i32, partition_epoch: i32, new_isr: &[(i32, i64)]) -> IsrChangeRequest {
        IsrChangeRequest {
            topic_id: T,
            partition: 0,
            leader_epoch,
            partition_epoch,
            new_isr: new_isr.to_vec(),
        }
    }

    /// Broker `node` (broker epoch = node id) asks to be fenced, or to shut down; applied.
    fn leave(image: &mut Image, c: &mut crate::controller::Controller, node: i32, shutdown: bool) {
        let hb = crate::controller::Heartbeat {
            node_id: node,
            broker_epoch: node as i64,
            current_position: image.position,
            want_fence: !shutdown,
            want_shutdown: shutdown,
        };
        let (_, cmd) = c.heartbeat(image, hb, 0);
        step(image, &cmd.expect("a fence or shutdown"));
    }

    fn isr(image: &Image) -> (i32, i32, i32, Vec<i32>) {
        let p = image.partition(T, 0).unwrap();
        (p.leader, p.leader_epoch, p.partition_epoch, p.isr.clone())
    }

    #[test]
    fn a_shrink_changes_the_isr_keeps_the_leader_epoch_and_bumps_the_partition_epoch() {
        let (mut image, _) = cluster();
        let cmd = decide_isr_change(&image, 1, &req(0, 0, &[(1, 1), (2, 2)]))
            .unwrap()
            .expect("a change");
        step(&mut image, &cmd);
        assert_eq!(isr(&image), (1, 0, 1, vec![1, 2]));
        // Expanding back, from the new partition epoch.
        let cmd = decide_isr_change(&image, 1, &req(0, 1, &[(1, 1), (2, 2), (3, 3)]))
            .unwrap()
            .expect("a change");
        step(&mut image, &cmd);
        assert_eq!(isr(&image), (1, 0, 2, vec![1, 2, 3]));
    }

    #[test]
    fn the_same_isr_is_answered_without_a_change() {
        let (image, _) = cluster();
        let same = decide_isr_change(&image, 1, &req(0, 0, &[(1, 1), (2, 2), (3, 3)]));
        assert_eq!(same, Ok(None));
    }

    #[test]
    fn an_older_leader_epoch_is_fenced_and_a_newer_one_means_this_controller_is_behind() {
        let (mut image, _) = cluster();
        // Move leadership to 2 and back to 1: leader epoch 2.
        for leader in [2, 1] {
            let p = image.partition(T, 0).unwrap().clone();
            step(
                &mut image,
                &Command::ChangePartition {
                    topic_id: T,
                    partition: 0,
                    expected_partition_epoch: p.partition_epoch,
                    leader: Some(leader),
                    isr: None,
                },
            );
        }
        let refused = decide_isr_change(&image, 1, &req(1, 2, &[(1, 1)]));
        assert_eq!(refused.unwrap_err().kafka_error_code(), 74);
        let ahead = decide_isr_change(&image, 1, &req(3, 2, &[(1, 1)]));
        assert_eq!(ahead, Err(IsrChangeError::NotController));
        let ahead = decide_isr_change(&image, 1, &req(2, 3, &[(1, 1)]));
        assert_eq!(ahead, Err(IsrChangeError::NotController));
    }

    #[test]
    fn only_the_leader_may_change_the_isr() {
        let (image, _) = cluster();
        let refused = decide_isr_change(&image, 2, &req(0, 0, &[(1, 1), (2, 2)]));
        assert_eq!(refused.unwrap_err().kafka_error_code(), 42);
    }

    #[test]
    fn an_older_partition_epoch_is_an_invalid_update_version() {
        let (mut image, _) = cluster();
        let cmd = decide_isr_change(&image, 1, &req(0, 0, &[(1, 1), (2, 2)]))
            .unwrap()
            .unwrap();
        step(&mut image, &cmd);
        let stale = decide_isr_change(&image, 1, &req(0, 0, &[(1, 1), (3, 3)]));
        assert_eq!(
            stale,
            Err(IsrChangeError::InvalidUpdateVersion {
                current: 1,
                given: 0
            })
        );
    }

    #[test]
    fn the_new_isr_must_be_distinct_replicas_holding_the_leader() {
        let (image, _) = cluster();
        for bad in [
            vec![],
            vec![(2, 2), (3, 3)],
            vec![(1, 1), (1, 1)],
            vec![(1, 1), (4, 4)],
        ] {
            let refused = decide_isr_change(&image, 1, &req(0, 0, &bad));
            assert_eq!(refused.unwrap_err().kafka_error_code(), 42, "{bad:?}");
        }
    }

    #[test]
    fn fenced_shutting_down_or_other_incarnation_members_are_ineligible() {
        let (mut image, mut c) = cluster();
        // A wrong broker epoch for 3.
        let refused = decide_isr_change(&image, 1, &req(0, 0, &[(1, 1), (2, 2), (3, 7)]));
        assert_eq!(refused.unwrap_err().kafka_error_code(), 107);
        // -1 skips the epoch check.
        let cmd = decide_isr_change(&image, 1, &req(0, 0, &[(1, -1), (2, 2)]))
            .unwrap()
            .unwrap();
        step(&mut image, &cmd);
        // 3 fenced: may not rejoin.
        leave(&mut image, &mut c, 3, false);
        let pe = image.partition(T, 0).unwrap().partition_epoch;
        let refused = decide_isr_change(&image, 1, &req(0, pe, &[(1, 1), (2, 2), (3, 3)]));
        let err = refused.unwrap_err();
        assert_eq!(err.kafka_error_code(), 107);
        assert!(err.to_string().contains("fenced"), "{err}");
        // 2 shutting down: ineligible too (it left the ISR with its shutdown).
        leave(&mut image, &mut c, 2, true);
        let p = image.partition(T, 0).unwrap().clone();
        assert_eq!(p.isr, vec![1]);
        let refused = decide_isr_change(
            &image,
            1,
            &req(p.leader_epoch, p.partition_epoch, &[(1, 1), (2, 2)]),
        );
        let err = refused.unwrap_err();
        assert!(err.to_string().contains("shutting down"), "{err}");
    }

    #[test]
    fn unknown_topics_partitions_and_stale_requesters_are_refused() {
        let (image, _) = cluster();
        let mut r = req(0, 0, &[(1, 1)]);
        r.topic_id = TopicId([9; 16]);
        assert_eq!(
            decide_isr_change(&image, 1, &r)
                .unwrap_err()
                .kafka_error_code(),
            100
        );
        let mut r = req(0, 0, &[(1, 1)]);
        r.partition = 7;
        assert_eq!(
            decide_isr_change(&image, 1, &r)
                .unwrap_err()
                .kafka_error_code(),
            3
        );
        assert!(check_requester(&image, 1, 1).is_ok());
        assert_eq!(
            check_requester(&image, 1, 2)
                .unwrap_err()
                .kafka_error_code(),
            77
        );
        assert_eq!(
            check_requester(&image, 9, 1)
                .unwrap_err()
                .kafka_error_code(),
            77
        );
    }

    /// Two leaders' requests decided on the same image (as two racing requests could be): the
    /// first applies, the second, now stale, fails on apply and changes nothing, and decided
    /// again it is refused with INVALID_UPDATE_VERSION. A stale ISR never overwrites a newer one.
    #[test]
    fn a_stale_request_never_overwrites_a_newer_isr() {
        let (mut image, _) = cluster();
        let first = decide_isr_change(&image, 1, &req(0, 0, &[(1, 1), (2, 2)]))
            .unwrap()
            .unwrap();
        let second = decide_isr_change(&image, 1, &req(0, 0, &[(1, 1), (3, 3)]))
            .unwrap()
            .unwrap();
        step(&mut image, &first);
        let before = image.clone();
        image.advance_to(image.position + 1);
        let err = image.apply(&second).unwrap_err();
        assert_eq!(err.kafka_error_code(), 95, "{err}");
        assert_eq!(image.topics, before.topics);
        assert_eq!(isr(&image), (1, 0, 1, vec![1, 2]));
        let again = decide_isr_change(&image, 1, &req(0, 0, &[(1, 1), (3, 3)]));
        assert_eq!(again.unwrap_err().kafka_error_code(), 95);
    }

    /// A member fenced between the decision and the apply: the image refuses the join.
    #[test]
    fn a_member_fenced_after_the_decision_cannot_join_on_apply() {
        let (mut image, mut c) = cluster();
        let shrink = decide_isr_change(&image, 1, &req(0, 0, &[(1, 1), (2, 2)]))
            .unwrap()
            .unwrap();
        step(&mut image, &shrink);
        let expand = decide_isr_change(&image, 1, &req(0, 1, &[(1, 1), (2, 2), (3, 3)]))
            .unwrap()
            .unwrap();
        // 3 is fenced in between; it was in no ISR of partition 0, so the partition epoch
        // stays and only the image's eligibility check stands between the stale expand and
        // the ISR.
        leave(&mut image, &mut c, 3, false);
        assert_eq!(image.partition(T, 0).unwrap().partition_epoch, 1);
        image.advance_to(image.position + 1);
        let err = image.apply(&expand).unwrap_err();
        assert_eq!(err.kafka_error_code(), 107, "{err}");
        assert_eq!(isr(&image), (1, 0, 1, vec![1, 2]));
    }
}

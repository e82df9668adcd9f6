//! Partition leadership and client routing, read from the applied metadata image.
//!
//! Owns: the one answer to "who leads this partition, at which epoch, and may this broker serve
//! it" ([`check`]: Produce, consumer Fetch, ListOffsets and DeleteRecords ask it), and the
//! routing view clients are given from the same image ([`live_brokers`], [`live_broker`],
//! [`offline_replicas`], [`controller_id`]: Metadata, DescribeCluster, DescribeTopicPartitions,
//! FindCoordinator; the chain leader comes in from [`Broker::controller_hint`]). Every function
//! is pure over the [`Image`] it is handed, so two brokers that applied the same position answer
//! alike, and the rules are unit-tested on hand-built images.
//!
//! The rules are Kafka 4.1's: `Partition.getLocalLog` checks the client's leader epoch first
//! (older: FENCED_LEADER_EPOCH, newer: UNKNOWN_LEADER_EPOCH) and leadership second
//! (NOT_LEADER_OR_FOLLOWER, also when nobody leads: `appendRecordsToLeader` and
//! `ReplicaManager.getPartitionOrError` never answer LEADER_NOT_AVAILABLE; only Metadata does);
//! `KRaftMetadataCache` lists unfenced brokers only and counts fenced or unregistered replicas
//! as offline.
//!
//! Must never: decide leadership (the controller does, through the chain), consult the open
//! partition logs (a hosted log is not leadership: a fenced broker keeps its replicas' logs),
//! or answer from anything but the image it is given.

use josefine_meta::{BrokerRegistration, Image, PartitionAssignment, TopicId};

use crate::broker::Broker;
use crate::handlers::code;

/// A partition's leader and leader epoch as the image holds them (Kafka's `LeaderAndEpoch`,
/// the KIP-951 `current_leader` of Produce and Fetch responses).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LeaderAndEpoch {
    /// The leading broker, or -1 when nobody leads.
    pub leader_id: i32,
    pub leader_epoch: i32,
}

impl LeaderAndEpoch {
    /// What Kafka reports for a partition its image does not hold: leader -1, epoch -1.
    pub const UNKNOWN: LeaderAndEpoch = LeaderAndEpoch {
        leader_id: PartitionAssignment::NO_LEADER,
        leader_epoch: -1,
    };

    pub fn of(p: &PartitionAssignment) -> LeaderAndEpoch {
        LeaderAndEpoch {
            leader_id: p.leader,
            leader_epoch: p.leader_epoch,
        }
    }
}

/// Why this broker may not serve a partition as its leader.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The image holds no such partition (the topic is known, the index is not).
    UnknownPartition,
    /// Another broker leads the partition, or nobody does (`leader_id` -1).
    NotLeader(LeaderAndEpoch),
    /// The client's leader epoch is older than the image's: its metadata is stale.
    FencedLeaderEpoch(LeaderAndEpoch),
    /// The client's leader epoch is newer than the image's: this broker has not applied it yet.
    UnknownLeaderEpoch(LeaderAndEpoch),
}

impl Refusal {
    pub fn error_code(&self) -> i16 {
        match self {
            Refusal::UnknownPartition => code::UNKNOWN_TOPIC_OR_PARTITION,
            Refusal::NotLeader(_) => code::NOT_LEADER_OR_FOLLOWER,
            Refusal::FencedLeaderEpoch(_) => code::FENCED_LEADER_EPOCH,
            Refusal::UnknownLeaderEpoch(_) => code::UNKNOWN_LEADER_EPOCH,
        }
    }

    /// The leader the image names, for a response's `current_leader`.
    pub fn current_leader(&self) -> LeaderAndEpoch {
        match *self {
            Refusal::UnknownPartition => LeaderAndEpoch::UNKNOWN,
            Refusal::NotLeader(l)
            | Refusal::FencedLeaderEpoch(l)
            | Refusal::UnknownLeaderEpoch(l) => l,
        }
    }

    /// A one-line reason for a response's error message.
    pub fn message(&self, node_id: i32) -> String {
        match self {
            Refusal::UnknownPartition => "This server does not host this topic-partition.".into(),
            Refusal::NotLeader(l) if l.leader_id == PartitionAssignment::NO_LEADER => {
                format!("The partition has no leader (leader epoch {}); broker {node_id} does not lead it", l.leader_epoch)
            }
            Refusal::NotLeader(l) => format!(
                "Broker {node_id} is not the leader of this partition: broker {} is, at leader epoch {}",
                l.leader_id, l.leader_epoch
            ),
            Refusal::FencedLeaderEpoch(l) => format!(
                "The request's leader epoch is older than the current leader epoch {}",
                l.leader_epoch
            ),
            Refusal::UnknownLeaderEpoch(l) => format!(
                "The request's leader epoch is newer than the leader epoch {} broker {node_id} knows",
                l.leader_epoch
            ),
        }
    }
}

/// Whether broker `node_id` may serve partition `partition` of `topic_id` as its leader to a
/// client that believes the leader epoch is `current_leader_epoch` (`None`: not checked).
/// Returns the leader epoch: the one to stamp on appended batches and to report.
pub fn check(
    image: &Image,
    node_id: i32,
    topic_id: TopicId,
    partition: i32,
    current_leader_epoch: Option<i32>,
) -> Result<i32, Refusal> {
    let p = image
        .partition(topic_id, partition)
        .ok_or(Refusal::UnknownPartition)?;
    let current = LeaderAndEpoch::of(p);
    match current_leader_epoch {
        Some(e) if e < p.leader_epoch => return Err(Refusal::FencedLeaderEpoch(current)),
        Some(e) if e > p.leader_epoch => return Err(Refusal::UnknownLeaderEpoch(current)),
        _ => {}
    }
    if p.leader != node_id {
        return Err(Refusal::NotLeader(current));
    }
    Ok(p.leader_epoch)
}

/// Who leads partition `partition` of `topic_id`, at which epoch
/// ([`LeaderAndEpoch::UNKNOWN`] when the image does not hold it).
pub fn leader_of(image: &Image, topic_id: TopicId, partition: i32) -> LeaderAndEpoch {
    image
        .partition(topic_id, partition)
        .map_or(LeaderAndEpoch::UNKNOWN, LeaderAndEpoch::of)
}

/// The brokers clients may route to: registered and unfenced (shutting-down ones included, as
/// Kafka's `getAliveBrokerNodes`), in node id order.
pub fn live_brokers(image: &Image) -> impl Iterator<Item = &BrokerRegistration> {
    image.unfenced_brokers()
}

/// The registration of `node_id` if it is live (registered and unfenced): the endpoint a client
/// is sent to for a leader or a coordinator.
pub fn live_broker(image: &Image, node_id: i32) -> Option<&BrokerRegistration> {
    image.brokers.get(&node_id).filter(|b| !b.fenced)
}

/// The replicas of `p` that are fenced or not registered, in assignment order.
pub fn offline_replicas(image: &Image, p: &PartitionAssignment) -> Vec<i32> {
    p.replicas
        .iter()
        .copied()
        .filter(|r| live_broker(image, *r).is_none())
        .collect()
}

/// The controller id clients are told: the chain leader `chain_leader` when it is a live
/// broker, else the live broker with the lowest id (clients cannot reach the controller anyway,
/// KIP-590; admin requests are forwarded), else -1. Kafka picks a random live broker; the
/// lowest id keeps every broker's answer identical at the same image position.
pub fn controller_id(image: &Image, chain_leader: i32) -> i32 {
    if live_broker(image, chain_leader).is_some() {
        return chain_leader;
    }
    live_brokers(image).next().map_or(-1, |b| b.node_id)
}

impl Broker {
    /// The node id of the chain leader as this broker knows it (-1: unknown), the input of
    /// [`controller_id`].
    pub fn controller_hint(&self) -> i32 {
        self.metadata.chain_status().leader.map_or(-1, |l| l as i32)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use josefine_meta::Command;

    const T: TopicId = TopicId([7; 16]);

    fn register(image: &mut Image, node_id: i32, rack: Option<&str>) -> i64 {
        image.advance_to(image.position + 1);
        image
            .apply(&Command::RegisterBroker {
                node_id,
                incarnation_id: u128::from(image.position as u32) << 32 | node_id as u128,
                host: format!("h{node_id}"),
                port: 9000 + node_id,
                rack: rack.map(str::to_string),
            })
            .unwrap();
        let epoch = image.brokers[&node_id].epoch;
        image
            .apply(&Command::UnfenceBroker { node_id, epoch })
            .unwrap();
        epoch
    }

    /// Brokers 1, 2, 3 (all live) and topic T with partition i led by broker i + 1.
    fn image() -> Image {
        let mut image = Image::default();
        for id in 1..=3 {
            register(&mut image, id, Some("r"));
        }
        image
            .apply(&Command::CreateTopic {
                topic_id: T,
                name: "t".into(),
                partitions: (0..3)
                    .map(|i| PartitionAssignment::led_by_first(i, vec![i + 1]))
                    .collect(),
                configs: vec![],
            })
            .unwrap();
        image
    }

    /// Moves partition `partition`'s leadership to `leader` (bumps its leader epoch).
    fn change_leader(image: &mut Image, partition: i32, leader: i32) {
        let p = image.partition(T, partition).unwrap();
        let cmd = Command::ChangePartition {
            topic_id: T,
            partition,
            expected_partition_epoch: p.partition_epoch,
            leader: Some(leader),
            isr: None,
        };
        image.apply(&cmd).unwrap();
    }

    /// Fences `node_id` and takes every leadership it holds away, as the controller does.
    fn fence(image: &mut Image, node_id: i32) {
        let epoch = image.brokers[&node_id].epoch;
        let mut batch = vec![Command::FenceBroker { node_id, epoch }];
        batch.extend(
            image
                .broker_leads(node_id)
                .map(|(topic_id, p)| Command::ChangePartition {
                    topic_id,
                    partition: p.partition,
                    expected_partition_epoch: p.partition_epoch,
                    leader: Some(PartitionAssignment::NO_LEADER),
                    isr: None,
                }),
        );
        image.apply(&Command::Batch(batch)).unwrap();
    }

    #[test]
    fn the_leader_serves_at_its_epoch_and_nobody_else_does() {
        let image = image();
        assert_eq!(check(&image, 1, T, 0, None), Ok(0));
        assert_eq!(check(&image, 1, T, 0, Some(0)), Ok(0));
        let led_by_2 = LeaderAndEpoch {
            leader_id: 2,
            leader_epoch: 0,
        };
        assert_eq!(
            check(&image, 1, T, 1, None),
            Err(Refusal::NotLeader(led_by_2))
        );
        assert_eq!(check(&image, 1, T, 3, None), Err(Refusal::UnknownPartition));
        assert_eq!(
            check(&image, 1, TopicId([9; 16]), 0, None),
            Err(Refusal::UnknownPartition)
        );
        assert_eq!(
            check(&image, 1, T, -1, None),
            Err(Refusal::UnknownPartition)
        );
    }

    #[test]
    fn client_epochs_are_checked_before_leadership() {
        let mut image = image();
        // Partition 1: 2 -> none -> 2, leader epoch 2.
        fence(&mut image, 2);
        let epoch = register(&mut image, 2, None);
        assert!(epoch > 0);
        change_leader(&mut image, 1, 2);
        let now = LeaderAndEpoch {
            leader_id: 2,
            leader_epoch: 2,
        };
        assert_eq!(check(&image, 2, T, 1, Some(2)), Ok(2));
        assert_eq!(
            check(&image, 2, T, 1, Some(1)),
            Err(Refusal::FencedLeaderEpoch(now))
        );
        assert_eq!(
            check(&image, 2, T, 1, Some(3)),
            Err(Refusal::UnknownLeaderEpoch(now))
        );
        // On a broker that does not lead it, a wrong epoch is still reported as the epoch error
        // (Kafka's order), a right one as NOT_LEADER_OR_FOLLOWER.
        assert_eq!(
            check(&image, 1, T, 1, Some(0)),
            Err(Refusal::FencedLeaderEpoch(now))
        );
        assert_eq!(
            check(&image, 1, T, 1, Some(2)),
            Err(Refusal::NotLeader(now))
        );
    }

    #[test]
    fn a_leaderless_partition_is_served_by_nobody() {
        let mut image = image();
        fence(&mut image, 3);
        let none = LeaderAndEpoch {
            leader_id: -1,
            leader_epoch: 1,
        };
        for node in 1..=3 {
            let refusal = check(&image, node, T, 2, None).unwrap_err();
            assert_eq!(refusal, Refusal::NotLeader(none));
            assert_eq!(refusal.error_code(), code::NOT_LEADER_OR_FOLLOWER);
            assert_eq!(refusal.current_leader(), none);
        }
        assert_eq!(leader_of(&image, T, 2), none);
        assert_eq!(leader_of(&image, T, 9), LeaderAndEpoch::UNKNOWN);
    }

    #[test]
    fn error_codes() {
        let l = LeaderAndEpoch {
            leader_id: 1,
            leader_epoch: 4,
        };
        assert_eq!(Refusal::UnknownPartition.error_code(), 3);
        assert_eq!(Refusal::NotLeader(l).error_code(), 6);
        assert_eq!(Refusal::FencedLeaderEpoch(l).error_code(), 74);
        assert_eq!(Refusal::UnknownLeaderEpoch(l).error_code(), 76);
        assert_eq!(
            Refusal::UnknownPartition.current_leader(),
            LeaderAndEpoch::UNKNOWN
        );
    }

    #[test]
    fn fenced_and_unregistered_replicas_are_offline_and_not_listed() {
        let mut image = image();
        fence(&mut image, 2);
        let ids: Vec<i32> = live_brokers(&image).map(|b| b.node_id).collect();
        assert_eq!(ids, vec![1, 3]);
        assert!(live_broker(&image, 2).is_none());
        assert_eq!(live_broker(&image, 3).map(|b| b.port), Some(9003));
        assert!(live_broker(&image, 4).is_none());
        let p = image.partition(T, 1).unwrap().clone();
        assert_eq!(offline_replicas(&image, &p), vec![2]);
        let unknown = PartitionAssignment::led_by_first(0, vec![1, 5, 2]);
        assert_eq!(offline_replicas(&image, &unknown), vec![5, 2]);
        // A shutting-down broker is still live (listed, not offline), as in Kafka.
        let epoch = image.brokers[&3].epoch;
        fence(&mut image, 3);
        image
            .apply(&Command::UnfenceBroker { node_id: 3, epoch })
            .unwrap();
        image
            .apply(&Command::BeginControlledShutdown { node_id: 3, epoch })
            .unwrap();
        assert!(live_broker(&image, 3).is_some());
    }

    #[test]
    fn controller_is_the_live_chain_leader_else_the_lowest_live_broker() {
        let mut image = image();
        assert_eq!(controller_id(&image, 2), 2);
        assert_eq!(controller_id(&image, -1), 1);
        assert_eq!(controller_id(&image, 7), 1);
        fence(&mut image, 2);
        assert_eq!(controller_id(&image, 2), 1);
        fence(&mut image, 1);
        fence(&mut image, 3);
        assert_eq!(controller_id(&image, 2), -1);
        assert_eq!(controller_id(&Image::default(), 1), -1);
    }
}

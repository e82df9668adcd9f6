//! DescribeTopicPartitions (KIP-966): topics and their partitions, paged. The Java admin
//! client (kafka-topics 4.x `--describe`, `Admin.describeTopics`) uses it instead of Metadata.
//!
//! Paging exactly as Kafka's `DescribeTopicPartitionsRequestHandler` and
//! `KRaftMetadataCache.getTopicMetadataForDescribeTopicResponse`: the topics (all, or the
//! named ones) at or after the cursor's topic, deduplicated and sorted by name; the cursor's
//! topic starts at the cursor's partition, every later one at 0; at most
//! min(`response_partition_limit`, [`PARTITIONS_PER_RESPONSE_MAX`]) partitions are answered.
//! `next_cursor` names the first partition left out: inside a topic that did not fit, or
//! partition 0 of the next topic when the budget ran out exactly at a topic's end. A cursor
//! whose topic is not among the named ones is INVALID_REQUEST on every named topic, as Kafka.
//! Named topics that do not exist get UNKNOWN_TOPIC_OR_PARTITION (INVALID_TOPIC_EXCEPTION for
//! an illegal name) with a zero topic id; when listing all topics there are none such.
//!
//! Each partition is described from the image through [`leadership`], as Kafka's
//! `getPartitionMetadataForDescribeTopicResponse`: the leader (-1 when nobody leads, with no
//! partition error, unlike Metadata) and its epoch, replicas, ISR, and as offline replicas the
//! fenced or unregistered ones; eligible leader replicas and last known ELR are empty (no
//! KIP-966 ELR yet).
//!
//! Must never: answer more partitions than the budget, or skip a partition between pages.

use std::collections::BTreeSet;
use std::sync::Arc;

use josefine_meta::{validate_topic_name, Image, PartitionAssignment, Topic};
use kafka_protocol::messages::describe_topic_partitions_response::{
    Cursor, DescribeTopicPartitionsResponsePartition, DescribeTopicPartitionsResponseTopic,
};
use kafka_protocol::messages::{
    BrokerId, DescribeTopicPartitionsRequest, DescribeTopicPartitionsResponse,
};
use uuid::Uuid;

use super::{
    authorized_operations, code, is_internal_topic, topic_name, uuid_of, TOPIC_OPERATIONS,
};
use crate::broker::Broker;
use crate::leadership;

/// Kafka's `max.request.partition.size.limit` default: the most partitions one response may
/// describe, whatever the client asks for. Bounds the response size of a cluster-wide describe.
pub const PARTITIONS_PER_RESPONSE_MAX: i32 = 2000;

pub fn handle(
    broker: &Arc<Broker>,
    request: DescribeTopicPartitionsRequest,
) -> DescribeTopicPartitionsResponse {
    describe(&broker.metadata.image(), request)
}

/// The whole answer from one metadata image (pure, so paging is unit-tested without a broker).
pub fn describe(
    image: &Image,
    request: DescribeTopicPartitionsRequest,
) -> DescribeTopicPartitionsResponse {
    let fetch_all = request.topics.is_empty();
    let cursor = request.cursor.as_ref();
    let cursor_topic = cursor
        .map(|c| c.topic_name.0.to_string())
        .unwrap_or_default();
    let names: BTreeSet<String> = if fetch_all {
        image
            .topic_ids_by_name
            .keys()
            .filter(|n| n.as_str() >= cursor_topic.as_str())
            .cloned()
            .collect()
    } else {
        let named: BTreeSet<String> = request
            .topics
            .iter()
            .map(|t| t.name.0.to_string())
            .filter(|n| n.as_str() >= cursor_topic.as_str())
            .collect();
        if cursor.is_some() && !named.contains(&cursor_topic) {
            return invalid_cursor(&request);
        }
        named
    };
    let mut remaining = request
        .response_partition_limit
        .min(PARTITIONS_PER_RESPONSE_MAX);
    let mut topics = Vec::new();
    let mut next_cursor = None;
    for name in names {
        if remaining == 0 {
            // The previous topic ended exactly at the budget: the next page starts here.
            next_cursor = Some(cursor_at(&name, 0));
            break;
        }
        if remaining < 0 {
            continue;
        }
        let Some(topic) = image.topic_by_name(&name) else {
            if !fetch_all {
                let error = if validate_topic_name(&name).is_ok() {
                    code::UNKNOWN_TOPIC_OR_PARTITION
                } else {
                    code::INVALID_TOPIC_EXCEPTION
                };
                topics.push(topic_entry(&name, Uuid::nil(), error, Vec::new()));
            }
            continue;
        };
        let start = if cursor.is_some() && name == cursor_topic {
            cursor.map_or(0, |c| c.partition_index)
        } else {
            0
        };
        let count = topic.partitions.len() as i64;
        let upper = count.min(i64::from(start) + i64::from(remaining));
        let partitions: Vec<_> = (i64::from(start).max(0)..upper)
            .map(|i| partition_entry(image, topic, i as usize))
            .collect();
        let answered = partitions.len() as i32;
        topics.push(topic_entry(
            &name,
            uuid_of(topic.topic_id),
            code::NONE,
            partitions,
        ));
        if upper < count {
            next_cursor = Some(cursor_at(&name, upper as i32));
            break;
        }
        remaining -= answered;
    }
    DescribeTopicPartitionsResponse::default()
        .with_topics(topics)
        .with_next_cursor(next_cursor)
}

fn cursor_at(name: &str, partition_index: i32) -> Cursor {
    Cursor::default()
        .with_topic_name(topic_name(name))
        .with_partition_index(partition_index)
}

fn topic_entry(
    name: &str,
    topic_id: Uuid,
    error: i16,
    partitions: Vec<DescribeTopicPartitionsResponsePartition>,
) -> DescribeTopicPartitionsResponseTopic {
    DescribeTopicPartitionsResponseTopic::default()
        .with_error_code(error)
        .with_name(Some(topic_name(name)))
        .with_topic_id(topic_id)
        .with_is_internal(is_internal_topic(name))
        .with_partitions(partitions)
        .with_topic_authorized_operations(authorized_operations(TOPIC_OPERATIONS))
}

fn partition_entry(
    image: &Image,
    topic: &Topic,
    index: usize,
) -> DescribeTopicPartitionsResponsePartition {
    let p = &topic.partitions[index];
    let ids = |ids: &[i32]| ids.iter().copied().map(BrokerId).collect::<Vec<_>>();
    let offline = ids(&leadership::offline_replicas(image, p));
    let leader = leadership::live_broker(image, p.leader)
        .map_or(PartitionAssignment::NO_LEADER, |b| b.node_id);
    DescribeTopicPartitionsResponsePartition::default()
        .with_error_code(code::NONE)
        .with_partition_index(p.partition)
        .with_leader_id(BrokerId(leader))
        .with_leader_epoch(p.leader_epoch)
        .with_isr_nodes(ids(&p.isr))
        .with_replica_nodes(ids(&p.replicas))
        .with_eligible_leader_replicas(Some(Vec::new()))
        .with_last_known_elr(Some(Vec::new()))
        .with_offline_replicas(offline)
}

/// Kafka's `DescribeTopicPartitionsRequest.getErrorResponse` for the InvalidRequestException
/// of a cursor outside the named topics: every named topic with INVALID_REQUEST.
fn invalid_cursor(request: &DescribeTopicPartitionsRequest) -> DescribeTopicPartitionsResponse {
    let topics = request
        .topics
        .iter()
        .map(|t| {
            DescribeTopicPartitionsResponseTopic::default()
                .with_error_code(code::INVALID_REQUEST)
                .with_name(Some(t.name.clone()))
                .with_topic_id(Uuid::nil())
                .with_is_internal(false)
        })
        .collect();
    DescribeTopicPartitionsResponse::default().with_topics(topics)
}

#[cfg(test)]
mod tests {
    use super::*;
    use josefine_meta::{Command, TopicId};
    use kafka_protocol::messages::describe_topic_partitions_request::{self as req, TopicRequest};

    fn image(topics: &[(&str, i32)]) -> Image {
        let mut image = Image::default();
        image
            .apply(&Command::RegisterBroker {
                node_id: 1,
                incarnation_id: 1,
                host: "h".into(),
                port: 9092,
                rack: None,
            })
            .unwrap();
        image
            .apply(&Command::UnfenceBroker {
                node_id: 1,
                epoch: 0,
            })
            .unwrap();
        for (i, (name, n)) in topics.iter().enumerate() {
            image
                .apply(&Command::CreateTopic {
                    topic_id: TopicId([i as u8 + 1; 16]),
                    name: name.to_string(),
                    partitions: (0..*n)
                        .map(|p| PartitionAssignment::led_by_first(p, vec![1]))
                        .collect(),
                    configs: vec![],
                })
                .unwrap();
        }
        image
    }

    fn request(
        names: &[&str],
        limit: i32,
        cursor: Option<(&str, i32)>,
    ) -> DescribeTopicPartitionsRequest {
        DescribeTopicPartitionsRequest::default()
            .with_topics(
                names
                    .iter()
                    .map(|n| TopicRequest::default().with_name(topic_name(n)))
                    .collect(),
            )
            .with_response_partition_limit(limit)
            .with_cursor(cursor.map(|(t, p)| {
                req::Cursor::default()
                    .with_topic_name(topic_name(t))
                    .with_partition_index(p)
            }))
    }

    /// (topic, [partition indexes], error) per answered topic.
    type Answered = Vec<(String, Vec<i32>, i16)>;

    /// What a response answered, and the next cursor.
    fn summary(r: &DescribeTopicPartitionsResponse) -> (Answered, Option<(String, i32)>) {
        let topics = r
            .topics
            .iter()
            .map(|t| {
                (
                    t.name.as_ref().unwrap().0.to_string(),
                    t.partitions.iter().map(|p| p.partition_index).collect(),
                    t.error_code,
                )
            })
            .collect();
        let cursor = r
            .next_cursor
            .as_ref()
            .map(|c| (c.topic_name.0.to_string(), c.partition_index));
        (topics, cursor)
    }

    #[test]
    fn all_topics_sorted_and_paged_without_gaps() {
        let img = image(&[("b", 3), ("a", 2), ("c", 1)]);
        // Pages of 2 over a(2) b(3) c(1): every partition exactly once, in order.
        let mut seen = Vec::new();
        let mut cursor: Option<(String, i32)> = None;
        for _ in 0..10 {
            let r = describe(
                &img,
                request(&[], 2, cursor.as_ref().map(|(t, p)| (t.as_str(), *p))),
            );
            let (topics, next) = summary(&r);
            assert!(topics.iter().map(|t| t.1.len()).sum::<usize>() <= 2);
            for (name, parts, error) in topics {
                assert_eq!(error, code::NONE);
                seen.extend(parts.into_iter().map(|p| (name.clone(), p)));
            }
            cursor = next;
            if cursor.is_none() {
                break;
            }
        }
        let expected: Vec<(String, i32)> =
            [("a", 0), ("a", 1), ("b", 0), ("b", 1), ("b", 2), ("c", 0)]
                .iter()
                .map(|(t, p)| (t.to_string(), *p))
                .collect();
        assert_eq!(seen, expected);
    }

    #[test]
    fn budget_ending_at_a_topic_end_points_at_the_next_topic() {
        let img = image(&[("a", 2), ("b", 1)]);
        let (topics, next) = summary(&describe(&img, request(&[], 2, None)));
        assert_eq!(topics, vec![("a".to_string(), vec![0, 1], code::NONE)]);
        assert_eq!(next, Some(("b".to_string(), 0)));
        let (_, next) = summary(&describe(&img, request(&[], 3, None)));
        assert_eq!(next, None);
    }

    #[test]
    fn named_topics_unknown_and_invalid_and_the_limit_cap() {
        let img = image(&[("a", 2)]);
        let (topics, next) = summary(&describe(
            &img,
            request(&["zz", "a", "a", "bad/name"], 5000, None),
        ));
        assert_eq!(
            topics,
            vec![
                ("a".to_string(), vec![0, 1], code::NONE),
                (
                    "bad/name".to_string(),
                    vec![],
                    code::INVALID_TOPIC_EXCEPTION
                ),
                ("zz".to_string(), vec![], code::UNKNOWN_TOPIC_OR_PARTITION),
            ]
        );
        assert_eq!(next, None);
        let big = image(&[("big", 2500)]);
        let (topics, next) = summary(&describe(&big, request(&["big"], i32::MAX, None)));
        assert_eq!(topics[0].1.len(), PARTITIONS_PER_RESPONSE_MAX as usize);
        assert_eq!(next, Some(("big".to_string(), PARTITIONS_PER_RESPONSE_MAX)));
    }

    #[test]
    fn cursor_must_name_a_requested_topic() {
        let img = image(&[("a", 1), ("b", 1)]);
        let r = describe(&img, request(&["b"], 10, Some(("a", 0))));
        let (topics, next) = summary(&r);
        assert_eq!(
            topics,
            vec![("b".to_string(), vec![], code::INVALID_REQUEST)]
        );
        assert_eq!(next, None);
        // A cursor inside a named topic starts there.
        let (topics, _) = summary(&describe(&img, request(&["a", "b"], 10, Some(("b", 0)))));
        assert_eq!(topics, vec![("b".to_string(), vec![0], code::NONE)]);
    }

    #[test]
    fn partition_fields_and_authorized_operations() {
        let img = image(&[("a", 1)]);
        let r = describe(&img, request(&["a"], 10, None));
        let t = &r.topics[0];
        assert!(!t.is_internal);
        assert_eq!(t.topic_id, uuid_of(TopicId([1; 16])));
        assert_eq!(t.topic_authorized_operations, 3576);
        let p = &t.partitions[0];
        assert_eq!(p.leader_id, BrokerId(1));
        assert_eq!(p.replica_nodes, vec![BrokerId(1)]);
        assert_eq!(p.isr_nodes, vec![BrokerId(1)]);
        assert_eq!(p.eligible_leader_replicas, Some(vec![]));
        assert!(p.offline_replicas.is_empty());
    }
}

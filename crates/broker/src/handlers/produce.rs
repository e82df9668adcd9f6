//! Produce: the write path. connection -> dispatch -> here -> `PartitionLog::append` -> reply.
//!
//! For each partition: resolve it (by name, or by topic id in v13+), ask [`leadership`] whether
//! the image lets this broker lead it (else NOT_LEADER_OR_FOLLOWER, with the current leader in
//! v10+ as KIP-951; also when nobody leads, as Kafka's `Partition.appendRecordsToLeader`),
//! validate the produce shape for the request version, and append through
//! `Partition::append_as_leader` stamped with the image's leader epoch (which refuses acks=-1
//! with NOT_ENOUGH_REPLICAS while the committed ISR is smaller than `min.insync.replicas`, and
//! lets the leader state move the high watermark), then flush before acknowledging when the
//! log's durability policy asks for it (`log.flush.interval.messages=1`; concurrent flushes
//! are group-committed by the log). acks=1 is answered after the leader's append; acks=-1
//! parks until the high watermark passes the last appended offset
//! (`Partition::wait_for_high_watermark`: NOT_ENOUGH_REPLICAS_AFTER_APPEND when the ISR fell
//! below `min.insync.replicas` meanwhile, NOT_LEADER_OR_FOLLOWER when leadership moved,
//! REQUEST_TIMED_OUT after the request's `timeout_ms`).
//! Appends run inline on the runtime thread when the request needs no fsync and carries at most
//! `INLINE_APPEND_BYTES_MAX` record bytes: a page-cache write of microseconds, cheaper than the
//! hand-off to the blocking pool (see BENCHMARKS.md). Everything else goes to the blocking pool.
//! The known cost: when the kernel throttles a writer for dirty pages, or a segment rolls, that
//! worker waits too (milliseconds, rare).
//! A batch the log refuses record by record (KIP-467: no key on a compacted topic, a timestamp
//! outside the window) is refused whole with the log's message, and v8+ names each culprit in
//! `record_errors` so clients fail those and resend the rest.
//! Transactional batches (a request with a `transactional_id`) go through KIP-890's
//! verification first when `transaction.partition.verification.enable` is on: a partition
//! whose log has no ongoing transaction of that producer id and epoch asks the transaction
//! coordinator (`txn::verify_transaction`, AddPartitionsToTxn v4 verify_only) whether the
//! partition is in the producer's transaction, and refuses the batch (INVALID_TXN_STATE, or
//! NOT_ENOUGH_REPLICAS for coordinator errors a producer must retry) unless it is. Only a
//! verified batch, or one continuing an open transaction, may open or extend a transaction in
//! the log.
//! Internal topics (`__consumer_offsets`, ...) are refused with INVALID_TOPIC_EXCEPTION, as
//! Kafka's `ReplicaManager` does for clients (Kafka lets a client id of `__admin_client`
//! through; Josefine writes its internal topics directly, never through Produce, so it makes
//! no exception).
//! acks=0 gets no response at all; if any partition failed, the connection is closed instead,
//! as Kafka does, because that is the only signal an acks=0 producer can receive.
//! With replication factor 1 the ISR is the leader alone, so the high watermark follows the
//! append and acks=-1 is answered at once. Must never: append to a partition this broker does
//! not lead at the image's leader epoch, stamp a batch with any other epoch, or answer acks=-1
//! before the high watermark covers the batch.

use std::collections::BTreeMap;
use std::sync::Arc;

use bytes::Bytes;
use std::time::Duration;

use josefine_log::batch::{validate_produce_shape, BatchHeader};
use josefine_log::LogError;
use josefine_meta::acl::{Operation, ResourceType};
use josefine_txn::TopicPartition;
use kafka_protocol::messages::produce_response::{
    BatchIndexAndErrorMessage, LeaderIdAndEpoch, NodeEndpoint, PartitionProduceResponse,
    TopicProduceResponse,
};
use kafka_protocol::messages::{BrokerId, ProduceRequest, ProduceResponse};
use tracing::debug;

use super::{code, is_internal_topic, str_bytes, topic_id_of};
use crate::broker::Broker;
use crate::clock::now_ms;
use crate::leadership::{self, LeaderAndEpoch};
use crate::partitions::Partition;
use crate::replication::leader::LeaderAppendError;

/// What the connection should do after a produce.
pub enum ProduceOutcome {
    Respond(ProduceResponse),
    /// acks=0 and everything succeeded.
    NoResponse,
    /// acks=0 and something failed.
    Close,
}

/// A partition to append to, with the leader epoch its batches are stamped with.
struct Target {
    partition: Arc<Partition>,
    records: Bytes,
    leader_epoch: i32,
    /// A transactional batch allowed into the log (verified, or its transaction already open).
    transactional: bool,
}

struct Slot {
    partition_index: i32,
    target: Result<Target, (i16, String)>,
    /// The leader the image names, reported with NOT_LEADER_OR_FOLLOWER (v10+, KIP-951).
    current_leader: Option<LeaderAndEpoch>,
    result: Result<josefine_log::AppendOutcome, (i16, String)>,
    /// The records the log refused one by one (KIP-467: `record_errors`, Produce v8+).
    record_errors: Vec<josefine_log::RecordError>,
}

/// Produce requests carrying at most this many record bytes (and needing no fsync) append on the
/// runtime thread: a page-cache write of this size takes microseconds, less than the thread
/// hand-off to the blocking pool (measured: the hand-off was a visible share of small-record
/// produce CPU). Larger requests go to the blocking pool so one request cannot hold a runtime
/// thread for long.
const INLINE_APPEND_BYTES_MAX: usize = 1 << 20;

pub async fn handle(broker: &Arc<Broker>, version: i16, request: ProduceRequest) -> ProduceOutcome {
    let acks = request.acks;
    let timeout_ms = request.timeout_ms;
    let image = broker.metadata.image();
    let node_id = broker.config.node_id;
    let request_error: Option<(i16, String)> = if !matches!(acks, -1..=1) {
        Some((
            code::INVALID_REQUIRED_ACKS,
            format!("invalid acks {acks}: use 0, 1 or -1"),
        ))
    } else {
        None
    };
    let transactional_id = request.transactional_id.as_ref().map(|t| t.0.to_string());
    // WRITE on the transactional id and each topic (crate::authz::OPERATIONS).
    let authz = crate::authz::Authz::of(broker);
    let request_error = request_error.or_else(|| {
        let id = transactional_id.as_deref()?;
        (!authz.allows(Operation::Write, ResourceType::TransactionalId, id)).then(|| {
            (
                code::TRANSACTIONAL_ID_AUTHORIZATION_FAILED,
                "Transactional Id authorization failed.".to_string(),
            )
        })
    });

    // Resolve every partition first; keep the request's order for the response.
    let mut topics: TopicSlots = Vec::new();
    for t in request.topic_data {
        let topic = if version >= 13 {
            image.topics.get(&topic_id_of(t.topic_id))
        } else {
            image.topic_by_name(&t.name.0)
        };
        let unknown = if version >= 13 {
            code::UNKNOWN_TOPIC_ID
        } else {
            code::UNKNOWN_TOPIC_OR_PARTITION
        };
        let name = topic.map_or(t.name.0.as_str(), |x| x.name.as_str());
        let topic_denied = (topic.is_some() || version < 13)
            && !authz.allows(Operation::Write, ResourceType::Topic, name);
        let mut slots = Vec::new();
        for p in t.partition_data {
            let mut current_leader = None;
            let target = if let Some(e) = &request_error {
                Err(e.clone())
            } else if topic_denied {
                Err((
                    code::TOPIC_AUTHORIZATION_FAILED,
                    "Topic authorization failed.".into(),
                ))
            } else if let Some(name) = topic.map(|x| &x.name).filter(|n| is_internal_topic(n)) {
                Err((
                    code::INVALID_TOPIC_EXCEPTION,
                    format!("Cannot append to internal topic {name}"),
                ))
            } else if let Some(topic) = topic {
                // Produce carries no leader epoch to check.
                match leadership::check(&image, node_id, topic.topic_id, p.index, None) {
                    Err(refusal) => {
                        if refusal.error_code() == code::NOT_LEADER_OR_FOLLOWER {
                            current_leader = Some(refusal.current_leader());
                        }
                        Err((refusal.error_code(), refusal.message(node_id)))
                    }
                    Ok(leader_epoch) => {
                        leader_target(broker, topic, p.index, p.records, leader_epoch)
                    }
                }
            } else {
                Err((
                    unknown,
                    "This server does not host this topic-partition.".into(),
                ))
            };
            slots.push(Slot {
                partition_index: p.index,
                target,
                current_leader,
                result: Err((code::UNKNOWN_SERVER_ERROR, String::new())),
                record_errors: Vec::new(),
            });
        }
        let topic_id = topic.map_or(t.topic_id, |x| super::uuid_of(x.topic_id));
        topics.push((t.name, topic_id, slots));
    }

    if let Some(transactional_id) = transactional_id {
        admit_transactional(broker, version, &transactional_id, &mut topics).await;
    }

    // Append (and flush if required): inline when that is only a short page-cache write.
    let mut record_bytes = 0usize;
    let mut must_flush = false;
    for slot in topics.iter().flat_map(|(_, _, s)| s) {
        if let Ok(target) = &slot.target {
            record_bytes += target.records.len();
            must_flush |= acks != 0 && target.partition.log.needs_flush_after_append();
            must_flush |= target.partition.log.recompresses(&target.records); // CPU: off the runtime
        }
    }
    let mut topics = if must_flush || record_bytes > INLINE_APPEND_BYTES_MAX {
        broker
            .blocking(move || append_all(topics, version, acks))
            .await
    } else {
        append_all(topics, version, acks)
    };
    broker.notify_append();
    if acks == -1 {
        // Kafka's DelayedProduce: every appended partition waits for its high watermark, all
        // against the request's one deadline.
        let timeout = Duration::from_millis(timeout_ms.max(0) as u64);
        let deadline = tokio::time::Instant::now() + timeout;
        for slot in topics.iter_mut().flat_map(|(_, _, s)| s.iter_mut()) {
            let (Ok(target), Ok(outcome)) = (&slot.target, &slot.result) else {
                continue;
            };
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            let error = target
                .partition
                .wait_for_high_watermark(target.leader_epoch, outcome.last_offset + 1, left)
                .await;
            if error != code::NONE {
                let message = match error {
                    code::NOT_ENOUGH_REPLICAS_AFTER_APPEND => "Written to the leader but the in-sync replicas fell below min.insync.replicas before the high watermark passed it",
                    code::REQUEST_TIMED_OUT => "The high watermark did not pass the write before the request's timeout",
                    _ => "Leadership moved before the high watermark passed the write",
                };
                slot.result = Err((error, message.to_string()));
            }
        }
    }

    let any_error = topics
        .iter()
        .flat_map(|(_, _, s)| s)
        .any(|s| s.result.is_err());
    if acks == 0 {
        if any_error {
            debug!("acks=0 produce failed; closing the connection as Kafka does");
            return ProduceOutcome::Close;
        }
        return ProduceOutcome::NoResponse;
    }
    // The endpoints of the leaders named in `current_leader` (KIP-951), as Kafka's
    // `getAliveBrokerNode`: live brokers only.
    let mut node_endpoints = BTreeMap::new();
    let responses = topics
        .into_iter()
        .map(|(name, topic_id, slots)| {
            let partitions = slots
                .into_iter()
                .map(|slot| {
                    let mut r =
                        PartitionProduceResponse::default().with_index(slot.partition_index);
                    if let Some(leader) = slot.current_leader.filter(|_| version >= 10) {
                        if let Some((b, (host, port))) =
                            leadership::live_broker(&image, leader.leader_id)
                                .and_then(|b| Some((b, crate::security::client_endpoint(b)?)))
                        {
                            node_endpoints.insert(
                                b.node_id,
                                NodeEndpoint::default()
                                    .with_node_id(BrokerId(b.node_id))
                                    .with_host(str_bytes(host))
                                    .with_port(port)
                                    .with_rack(b.rack.clone().map(str_bytes)),
                            );
                        }
                        r = r.with_current_leader(
                            LeaderIdAndEpoch::default()
                                .with_leader_id(BrokerId(leader.leader_id))
                                .with_leader_epoch(leader.leader_epoch),
                        );
                    }
                    match slot.result {
                        Ok(o) => r
                            .with_error_code(code::NONE)
                            .with_base_offset(o.base_offset)
                            .with_log_append_time_ms(o.log_append_time_ms)
                            .with_log_start_offset(o.log_start_offset),
                        Err((error, message)) => r
                            .with_error_code(error)
                            .with_error_message(Some(str_bytes(message)))
                            .with_record_errors(if version >= 8 {
                                slot.record_errors
                                    .into_iter()
                                    .map(|e| {
                                        BatchIndexAndErrorMessage::default()
                                            .with_batch_index(e.batch_index)
                                            .with_batch_index_error_message(Some(str_bytes(
                                                e.message,
                                            )))
                                    })
                                    .collect()
                            } else {
                                Vec::new()
                            })
                            .with_base_offset(-1)
                            .with_log_append_time_ms(-1)
                            .with_log_start_offset(-1),
                    }
                })
                .collect();
            TopicProduceResponse::default()
                .with_name(name)
                .with_topic_id(topic_id)
                .with_partition_responses(partitions)
        })
        .collect();
    ProduceOutcome::Respond(
        ProduceResponse::default()
            .with_responses(responses)
            .with_node_endpoints(node_endpoints.into_values().collect()),
    )
}

/// The target of a partition this broker leads at `leader_epoch`, or why it cannot take the
/// append: its log is not open, or the request carries no records. (acks=-1 admission against
/// the committed ISR happens in `Partition::append_as_leader`, under the role lock.)
fn leader_target(
    broker: &Broker,
    topic: &josefine_meta::Topic,
    index: i32,
    records: Option<Bytes>,
    leader_epoch: i32,
) -> Result<Target, (i16, String)> {
    let Some(partition) = broker.partitions.get(topic.topic_id, index) else {
        return Err((
            code::KAFKA_STORAGE_ERROR,
            "partition log is not open on this broker".into(),
        ));
    };
    let Some(records) = records else {
        return Err((
            code::INVALID_RECORD,
            "produce request without records".into(),
        ));
    };
    Ok(Target {
        partition,
        records,
        leader_epoch,
        transactional: false,
    })
}

/// Lets the transactional batches of a request into their logs, or refuses them (see the module
/// docs). Batches that are not transactional are left to the log's own checks.
async fn admit_transactional(
    broker: &Arc<Broker>,
    version: i16,
    transactional_id: &str,
    topics: &mut TopicSlots,
) {
    let verify = broker
        .config
        .broker
        .transaction_partition_verification_enable;
    let mut to_verify: Vec<(TopicPartition, i64, i16)> = Vec::new();
    for (name, _, slots) in topics.iter_mut() {
        for slot in slots.iter_mut() {
            let Ok(target) = &mut slot.target else {
                continue;
            };
            let Ok(header) = BatchHeader::parse(&target.records) else {
                continue; // the log refuses it with the right error
            };
            if !header.is_transactional() {
                continue;
            }
            let (producer_id, producer_epoch) = (header.producer_id, header.producer_epoch);
            let open = target.partition.log.producer(producer_id).is_some_and(|p| {
                p.producer_epoch == producer_epoch && p.current_txn_start_offset >= 0
            });
            target.transactional = true;
            if verify && !open {
                let tp = TopicPartition::new(name.0.to_string(), slot.partition_index);
                to_verify.push((tp, producer_id, producer_epoch));
            }
        }
    }
    let Some(&(_, producer_id, producer_epoch)) = to_verify.first() else {
        return;
    };
    // One producer per request: a batch of another id or epoch is checked against the first's.
    let partitions: Vec<TopicPartition> = to_verify.into_iter().map(|v| v.0).collect();
    let unverified = crate::txn::verify_transaction(
        broker,
        transactional_id,
        producer_id,
        producer_epoch,
        &partitions,
    )
    .await;
    if unverified.is_empty() {
        return;
    }
    for (name, _, slots) in topics.iter_mut() {
        for slot in slots.iter_mut() {
            let tp = TopicPartition::new(name.0.to_string(), slot.partition_index);
            let Some(&error) = unverified.get(&tp) else {
                continue;
            };
            // Kafka's ReplicaManager: coordinator trouble becomes an error every producer
            // retries without a metadata refresh; TRANSACTION_ABORTABLE is for TV2 clients.
            slot.target = Err(match error {
                code::CONCURRENT_TRANSACTIONS
                | code::NETWORK_EXCEPTION
                | code::COORDINATOR_LOAD_IN_PROGRESS
                | code::COORDINATOR_NOT_AVAILABLE
                | code::NOT_COORDINATOR => (
                    code::NOT_ENOUGH_REPLICAS,
                    format!("Unable to verify the partition has been added to the transaction. Underlying error: {error}"),
                ),
                code::INVALID_TXN_STATE => (
                    code::INVALID_TXN_STATE,
                    "Partition was not added to the transaction".into(),
                ),
                code::TRANSACTION_ABORTABLE if version < 12 => (
                    code::INVALID_TXN_STATE,
                    "Partition was not added to the transaction".into(),
                ),
                other => (other, "The transaction coordinator did not verify the partition".into()),
            });
        }
    }
}

/// The error message of a refused leader append (Kafka's wording for NOT_ENOUGH_REPLICAS,
/// from `Partition.appendRecordsToLeader`).
fn leader_append_message(e: &LeaderAppendError, t: &Target) -> String {
    match e {
        LeaderAppendError::NotEnoughReplicas { isr, min_insync } => format!(
            "The size of the current ISR : {isr} is insufficient to satisfy the min.isr requirement of {min_insync} for partition {}-{}",
            t.partition.topic, t.partition.index
        ),
        LeaderAppendError::NotLeader => {
            "This broker no longer leads the partition at the request's leader epoch".into()
        }
        LeaderAppendError::Log(e) => e.to_string(),
    }
}

type TopicSlots = Vec<(kafka_protocol::messages::TopicName, uuid::Uuid, Vec<Slot>)>;

/// Appends every resolved partition in request order, then flushes the partitions whose
/// durability policy requires it before the acknowledgement.
fn append_all(mut topics: TopicSlots, version: i16, acks: i16) -> TopicSlots {
    let now = now_ms();
    let mut to_flush: Vec<Arc<Partition>> = Vec::new();
    for (_, _, slots) in topics.iter_mut() {
        for slot in slots.iter_mut() {
            slot.result = match &slot.target {
                Err(e) => Err(e.clone()),
                Ok(t) => validate_produce_shape(version, &t.records)
                    .map_err(|e| (e.kafka_error_code(), e.to_string()))
                    .and_then(|_| {
                        let append = match t.transactional {
                            true => Partition::append_transactional_as_leader,
                            false => Partition::append_as_leader,
                        };
                        append(&t.partition, &t.records, t.leader_epoch, acks == -1, now).map_err(
                            |e| {
                                let refusal = (e.error_code(), leader_append_message(&e, t));
                                if let LeaderAppendError::Log(LogError::RecordErrors {
                                    errors,
                                    ..
                                }) = e
                                {
                                    slot.record_errors = errors;
                                }
                                refusal
                            },
                        )
                    }),
            };
            if let (Ok(o), Ok(t)) = (&slot.result, &slot.target) {
                if !o.duplicate {
                    t.partition
                        .metrics
                        .appended(o.last_offset - o.base_offset + 1, t.records.len());
                }
                if !o.duplicate && acks != 0 && t.partition.log.needs_flush_after_append() {
                    to_flush.push(t.partition.clone());
                }
            }
        }
    }
    for partition in &to_flush {
        if let Err(e) = crate::metrics::timed_flush(&partition.log) {
            for (_, _, slots) in topics.iter_mut() {
                for slot in slots.iter_mut() {
                    if matches!(&slot.target, Ok(t) if Arc::ptr_eq(&t.partition, partition)) {
                        slot.result = Err((e.kafka_error_code(), e.to_string()));
                    }
                }
            }
        }
    }
    topics
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use josefine_log::testkit::BatchBuilder;
    use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
    use kafka_protocol::messages::{ProduceRequest, TopicName};

    use super::*;

    fn request(topic: &str) -> ProduceRequest {
        let records = Bytes::from(BatchBuilder::new(now_ms()).records(3).build());
        ProduceRequest::default()
            .with_acks(-1)
            .with_topic_data(vec![TopicProduceData::default()
                .with_name(TopicName(str_bytes(topic)))
                .with_partition_data(vec![PartitionProduceData::default()
                    .with_index(0)
                    .with_records(Some(records))])])
    }

    fn error_of(outcome: ProduceOutcome) -> (i16, i64) {
        let ProduceOutcome::Respond(r) = outcome else {
            panic!("acks=-1 always gets a response");
        };
        let p = &r.responses[0].partition_responses[0];
        (p.error_code, p.base_offset)
    }

    /// Kafka refuses client appends to its internal topics with INVALID_TOPIC_EXCEPTION once
    /// the topic exists (before it exists the partition is simply unknown).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn clients_cannot_produce_to_internal_topics() {
        let dir = tempfile::tempdir().unwrap();
        let running = crate::handlers::testing::single_node(dir.path()).await;
        let broker = running.broker.clone();
        let topic = crate::groups::OFFSETS_TOPIC;
        assert_eq!(
            error_of(handle(&broker, 9, request(topic)).await).0,
            code::UNKNOWN_TOPIC_OR_PARTITION
        );
        broker.groups().ensure_offsets_topic(&broker).await.unwrap();
        assert_eq!(
            error_of(handle(&broker, 9, request(topic)).await),
            (code::INVALID_TOPIC_EXCEPTION, -1)
        );
        running.shutdown().await;
    }
}

//! Fetch: the read path, with long polling, for consumers and for follower replicas.
//!
//! Consumers: whole batches from each requested partition up to the high watermark
//! (read_uncommitted) or the last stable offset (read_committed, `isolation_level` 1: the LSO
//! is the high watermark while no transaction is open), within the response `max_bytes` (capped by
//! `fetch.max.bytes`) and each partition's `partition_max_bytes`. The first partition that has
//! data may exceed both limits by one batch, so a consumer always makes progress; later
//! partitions that would exceed them return no records this time. If fewer than `min_bytes`
//! are available, the request parks until a high watermark moves or `max_wait_ms` passes
//! (capped by `limits::FETCH_MAX_WAIT_MS_CEILING`; at most `limits::FETCH_WAITERS_MAX` parked at
//! once). Every partition reports `last_stable_offset` (Kafka does at both isolation levels);
//! a read_committed answer lists in `aborted_transactions` every aborted transaction
//! overlapping the offsets of the batches it returns, from the log's transaction indexes
//! (`PartitionLog::aborted_transactions`, never a scan of the records). The LSO moves only when
//! the high watermark does (a marker is written at the log end, and its transaction counts as
//! open until the high watermark passes the marker), so the high-watermark wake-ups serve
//! read_committed long polls too.
//!
//! Replica fetches (Kafka's `FetchParams.isFromFollower`): the request names a replica (v15+
//! `ReplicaState.replica_id` >= 0 with `replica_epoch`; before v15 the top-level `replica_id`,
//! without a broker epoch) whose broker epoch equals its registration in the image, and the
//! partition lists that broker among its replicas. Such a partition is read up to the log end,
//! not the high watermark; `last_fetched_epoch` is checked against the leader-epoch cache first
//! (an epoch the cache cannot place: OFFSET_OUT_OF_RANGE; the follower's epoch ends earlier
//! here: `diverging_epoch` and no records, Kafka's `Partition.readRecords`), and otherwise the
//! fetch offset goes to the leader state (`Partition::on_replica_fetch`: follower log end,
//! caught-up time, ISR expansion, high watermark). A replica fetch parks on appends. A fetch
//! naming a broker that is not a replica of the partition, or with a stale broker epoch, is
//! served exactly as a consumer's and never counted.
//! Zero-copy: on a connection that sends from files ([`zero_copy::ZERO_COPY_MIN_BYTES`] set: a
//! plaintext socket on Linux) a partition's batches are located, not read
//! (`PartitionLog::read_file`: the same batches, limits and errors as `read`), and those of at
//! least `limits::ZERO_COPY_MIN_BYTES` are answered as a file slice that the connection sends
//! with `sendfile`; the response is otherwise the same, byte for byte (no fetch version needs
//! a transformation of the stored batches: down-conversion to magic 0/1 is not served, as
//! Fetch below v4 is not). The consumer record count of a slice comes from its offsets.
//! Fetch sessions (KIP-227) are declined: we always answer session_id 0, so clients send full
//! fetch requests; a request naming a session gets FETCH_SESSION_ID_NOT_FOUND.
//!
//! A partition is read only if [`leadership::check`] says the image lets this broker lead it
//! at the request's `current_leader_epoch` (negative: not checked, as Kafka's
//! `FetchRequest.optionalEpoch`); otherwise the partition answers NOT_LEADER_OR_FOLLOWER,
//! FENCED_LEADER_EPOCH or UNKNOWN_LEADER_EPOCH, and from v16 the first two carry the leader the
//! image names (`current_leader`, with its endpoint in `node_endpoints` when it is live), as
//! Kafka's `KafkaApis.handleFetchRequest` (KIP-951). Leadership is decided once per request, from
//! the image current when it arrives. Must never: read a partition the image does not say this
//! broker leads (consumers read from leaders only; follower reads, KIP-392, are not offered).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use kafka_protocol::messages::fetch_response::{
    AbortedTransaction, EpochEndOffset, FetchableTopicResponse, LeaderIdAndEpoch, NodeEndpoint,
    PartitionData,
};
use kafka_protocol::messages::{BrokerId, FetchRequest, FetchResponse, ProducerId, TopicName};
use uuid::Uuid;

use super::{code, str_bytes, topic_id_of, uuid_of};
use crate::broker::Broker;
use crate::clock::now_ms;
use crate::leadership::{self, LeaderAndEpoch};
use crate::limits;
use crate::partitions::Partition;
use crate::replication::leader::FollowerFetch;
use crate::zero_copy;
use josefine_log::FileSlice;
use josefine_meta::acl::{Operation, ResourceType};

/// Why a partition is not read: its error code and, where the response reports it, the leader
/// the image names.
type Unread = (i16, Option<LeaderAndEpoch>);

struct Target {
    partition_index: i32,
    fetch_offset: i64,
    partition_max_bytes: usize,
    partition: Result<Arc<Partition>, Unread>,
    /// Set when a follower replica of this partition fetches it.
    replica: Option<ReplicaRead>,
}

/// A follower's read of a partition this broker leads.
#[derive(Clone, Copy)]
struct ReplicaRead {
    replica_id: i32,
    broker_epoch: i64,
    /// Unfenced and not shutting down (KIP-841): may join the ISR.
    eligible: bool,
    leader_epoch: i32,
    /// -1: not given.
    last_fetched_epoch: i32,
}

/// The follower a fetch comes from: the replica id and broker epoch it names, when they match
/// a registration in the image.
#[derive(Clone, Copy)]
struct Follower {
    replica_id: i32,
    broker_epoch: i64,
    eligible: bool,
}

fn follower_of(
    image: &josefine_meta::Image,
    version: i16,
    request: &FetchRequest,
) -> Option<Follower> {
    let (replica_id, broker_epoch) = if version >= 15 {
        (
            request.replica_state.replica_id.0,
            request.replica_state.replica_epoch,
        )
    } else {
        (request.replica_id.0, -1)
    };
    if replica_id < 0 {
        return None;
    }
    let registration = image.brokers.get(&replica_id)?;
    (registration.epoch == broker_epoch).then(|| Follower {
        replica_id,
        broker_epoch,
        eligible: registration.is_eligible(),
    })
}

struct TopicTargets {
    name: TopicName,
    topic_id: Uuid,
    targets: Vec<Target>,
}

fn error_partition(index: i32, (error, current_leader): Unread) -> PartitionData {
    let data = PartitionData::default()
        .with_partition_index(index)
        .with_error_code(error)
        .with_high_watermark(-1)
        .with_last_stable_offset(-1)
        .with_log_start_offset(-1)
        .with_records(Some(Bytes::new()));
    match current_leader {
        Some(l) => data.with_current_leader(
            LeaderIdAndEpoch::default()
                .with_leader_id(BrokerId(l.leader_id))
                .with_leader_epoch(l.leader_epoch),
        ),
        None => data,
    }
}

/// A partition's records while the response is built: bytes read into memory, or a slice of
/// a segment file that the connection sends from the file.
enum Records {
    Memory(Bytes),
    File(FileSlice),
}

impl Records {
    fn len(&self) -> usize {
        match self {
            Records::Memory(b) => b.len(),
            Records::File(f) => f.len(),
        }
    }
}

/// Reads a partition's batches: located as a file slice when the connection sends from
/// files (`zero_copy`: the smallest slice worth it; smaller ones are read into memory),
/// otherwise read into memory. Returns the records and the log start offset.
fn read_records(
    log: &josefine_log::PartitionLog,
    fetch_offset: i64,
    max_bytes: usize,
    read_until: i64,
    zero_copy: Option<usize>,
) -> Result<(Records, i64), josefine_log::LogError> {
    if let Some(min) = zero_copy {
        let r = log.read_file(fetch_offset, max_bytes, read_until)?;
        match r.slice {
            None => return Ok((Records::Memory(Bytes::new()), r.log_start_offset)),
            Some(s) if s.len() >= min => return Ok((Records::File(s), r.log_start_offset)),
            Some(s) => {
                if let Ok(b) = s.read() {
                    return Ok((Records::Memory(b), r.log_start_offset));
                }
                // A truncation raced with it: the copying read below retries.
            }
        }
    }
    let r = log.read(fetch_offset, max_bytes, read_until)?;
    Ok((Records::Memory(r.records), r.log_start_offset))
}

/// One pass over all partitions: the topic responses, the file slices answering some of
/// their partitions (whose `records` are empty placeholders here), the record bytes gathered
/// and whether any partition failed.
/// `first_pass`: replica fetch offsets are handed to the leader states (once per request).
fn read_all(
    topics: &[TopicTargets],
    response_max_bytes: usize,
    read_committed: bool,
    first_pass: bool,
    zero_copy: Option<usize>,
) -> ReadPass {
    let mut total = 0usize;
    let mut any_error = false;
    let mut slices = Vec::new();
    let mut out = Vec::with_capacity(topics.len());
    for t in topics {
        let mut partitions = Vec::with_capacity(t.targets.len());
        for target in &t.targets {
            let partition = match &target.partition {
                Err(unread) => {
                    any_error = true;
                    partitions.push(error_partition(target.partition_index, *unread));
                    continue;
                }
                Ok(p) => p,
            };
            let log = &partition.log;
            // Read before the high watermark: the LSO never passes the high watermark read
            // after it.
            let last_stable = log.last_stable_offset();
            // A follower reads up to the log end; its fetch offset moves the leader state.
            let mut read_until = if read_committed && target.replica.is_none() {
                last_stable
            } else {
                log.high_watermark()
            };
            if let Some(r) = target.replica {
                let leader_log_end = log.log_end_offset();
                match replica_check(log, &r, target.fetch_offset) {
                    ReplicaCheck::Read => {}
                    ReplicaCheck::Refuse(error) => {
                        any_error = true;
                        partitions.push(error_partition(target.partition_index, (error, None)));
                        continue;
                    }
                    ReplicaCheck::Diverging(epoch, end_offset) => {
                        any_error = true;
                        let hw = log.high_watermark();
                        partitions.push(
                            PartitionData::default()
                                .with_partition_index(target.partition_index)
                                .with_high_watermark(hw)
                                .with_last_stable_offset(last_stable)
                                .with_log_start_offset(log.log_start_offset())
                                .with_diverging_epoch(
                                    EpochEndOffset::default()
                                        .with_epoch(epoch)
                                        .with_end_offset(end_offset),
                                )
                                .with_preferred_read_replica(BrokerId(-1))
                                .with_records(Some(Bytes::new())),
                        );
                        continue;
                    }
                }
                if first_pass {
                    let fetch = FollowerFetch {
                        leader_epoch: r.leader_epoch,
                        replica_id: r.replica_id,
                        broker_epoch: r.broker_epoch,
                        fetch_offset: target.fetch_offset,
                        leader_log_end,
                        eligible: r.eligible,
                    };
                    partition.on_replica_fetch(&fetch, now_ms());
                }
                read_until = i64::MAX;
            }
            let high_watermark = log.high_watermark();
            let limit = target
                .partition_max_bytes
                .min(response_max_bytes.saturating_sub(total));
            let base = PartitionData::default()
                .with_partition_index(target.partition_index)
                .with_aborted_transactions(if read_committed { Some(vec![]) } else { None })
                .with_preferred_read_replica(kafka_protocol::messages::BrokerId(-1));
            if limit == 0 && total > 0 {
                partitions.push(
                    base.with_high_watermark(high_watermark)
                        .with_last_stable_offset(last_stable)
                        .with_log_start_offset(log.log_start_offset())
                        .with_records(Some(Bytes::new())),
                );
                continue;
            }
            let read = read_records(
                log,
                target.fetch_offset,
                limit.max(1),
                read_until,
                zero_copy,
            );
            match read {
                Ok((records, log_start_offset)) => {
                    // Only the first partition with data may go over the limits.
                    let records = if total > 0 && records.len() > limit {
                        Records::Memory(Bytes::new())
                    } else {
                        records
                    };
                    total += records.len();
                    let last_offset = match &records {
                        Records::Memory(b) => josefine_log::batch::last_offset_of(b),
                        Records::File(f) => f.last_offset(),
                    };
                    let aborted = if read_committed && target.replica.is_none() {
                        match aborted_in(log, target.fetch_offset, last_offset) {
                            Ok(aborted) => Some(aborted),
                            Err(e) => {
                                any_error = true;
                                partitions.push(
                                    base.with_error_code(e.kafka_error_code())
                                        .with_high_watermark(high_watermark)
                                        .with_last_stable_offset(last_stable)
                                        .with_log_start_offset(log.log_start_offset())
                                        .with_records(Some(Bytes::new())),
                                );
                                continue;
                            }
                        }
                    } else {
                        base.aborted_transactions.clone()
                    };
                    let records = match records {
                        Records::Memory(b) => b,
                        Records::File(file) => {
                            slices.push(zero_copy::Slice {
                                topic: out.len(),
                                partition: partitions.len(),
                                file,
                            });
                            Bytes::new()
                        }
                    };
                    partitions.push(
                        base.with_error_code(code::NONE)
                            .with_high_watermark(high_watermark)
                            .with_last_stable_offset(last_stable)
                            .with_log_start_offset(log_start_offset)
                            .with_aborted_transactions(aborted)
                            .with_records(Some(records)),
                    );
                }
                Err(e) => {
                    any_error = true;
                    partitions.push(
                        base.with_error_code(e.kafka_error_code())
                            .with_high_watermark(high_watermark)
                            .with_last_stable_offset(last_stable)
                            .with_log_start_offset(log.log_start_offset())
                            .with_records(Some(Bytes::new())),
                    );
                }
            }
        }
        // A topic listed without partitions gets no entry, as in Kafka (the Java client flags a
        // topic id in a full fetch response that covers none of its requested partitions).
        if partitions.is_empty() {
            continue;
        }
        out.push(
            FetchableTopicResponse::default()
                .with_topic(t.name.clone())
                .with_topic_id(t.topic_id)
                .with_partitions(partitions),
        );
    }
    ReadPass {
        responses: out,
        slices,
        total,
        any_error,
    }
}

/// What one pass over the partitions gathered (see [`read_all`]).
struct ReadPass {
    responses: Vec<FetchableTopicResponse>,
    slices: Vec<zero_copy::Slice>,
    total: usize,
    any_error: bool,
}

/// The aborted transactions overlapping the batches read from `fetch_offset` up to
/// `last_offset` (the last batch's): [fetch_offset, last_offset + 1), as Kafka bounds its
/// search by the fetched data. None read: none reported.
fn aborted_in(
    log: &josefine_log::PartitionLog,
    fetch_offset: i64,
    last_offset: Option<i64>,
) -> Result<Vec<AbortedTransaction>, josefine_log::LogError> {
    let Some(last) = last_offset else {
        return Ok(Vec::new());
    };
    Ok(log
        .aborted_transactions(fetch_offset, last + 1)?
        .into_iter()
        .map(|t| {
            AbortedTransaction::default()
                .with_producer_id(ProducerId(t.producer_id))
                .with_first_offset(t.first_offset)
        })
        .collect())
}

/// Counts the record batches a consumer (not a follower) is sent, per partition: `responses`
/// holds one entry per topic with targets and one partition per target, in request order;
/// `slices` answer some of them from files (counted by bytes and offsets: see
/// [`FileSlice::records_by_offsets`]).
fn count_consumer_reads(
    topics: &[TopicTargets],
    responses: &[FetchableTopicResponse],
    slices: &[zero_copy::Slice],
) {
    let topics: Vec<&TopicTargets> = topics.iter().filter(|t| !t.targets.is_empty()).collect();
    for (t, r) in topics.iter().zip(responses) {
        for (target, data) in t.targets.iter().zip(&r.partitions) {
            if let (Ok(p), None, Some(records)) = (&target.partition, target.replica, &data.records)
            {
                p.metrics.fetched(records);
            }
        }
    }
    for s in slices {
        let target = topics.get(s.topic).and_then(|t| t.targets.get(s.partition));
        if let Some(Target {
            partition: Ok(p),
            replica: None,
            ..
        }) = target
        {
            p.metrics
                .fetched_counts(s.file.len() as u64, s.file.records_by_offsets());
        }
    }
}

/// What a leader does with a follower's partition before reading it.
enum ReplicaCheck {
    Read,
    Refuse(i16),
    /// The follower's `last_fetched_epoch` ends earlier in this log: (epoch, end offset).
    Diverging(i32, i64),
}

/// Kafka's `Partition.readRecords` for a follower with a `last_fetched_epoch`: the epoch's end
/// in this log's epoch cache; an epoch it cannot place, or a fetch offset below the log start,
/// is OFFSET_OUT_OF_RANGE; an epoch ending before the fetch offset (or only a lower epoch
/// known) answers `diverging_epoch`.
fn replica_check(
    log: &josefine_log::PartitionLog,
    r: &ReplicaRead,
    fetch_offset: i64,
) -> ReplicaCheck {
    if r.last_fetched_epoch < 0 {
        return ReplicaCheck::Read;
    }
    let Some(end) = log.end_offset_for_epoch(r.last_fetched_epoch) else {
        return ReplicaCheck::Refuse(code::OFFSET_OUT_OF_RANGE);
    };
    if fetch_offset < log.log_start_offset() {
        return ReplicaCheck::Refuse(code::OFFSET_OUT_OF_RANGE);
    }
    match josefine_replica::diverging_epoch(r.last_fetched_epoch, fetch_offset, Some(end)) {
        Some((epoch, end_offset)) => ReplicaCheck::Diverging(epoch, end_offset),
        None => ReplicaCheck::Read,
    }
}

/// A fetch's answer: the response, and the file slices that answer some of its partitions
/// (their `records` in `response` are empty placeholders; [`zero_copy::encode_fetch`] frames
/// both). No slices unless the request is handled within [`zero_copy::ZERO_COPY_MIN_BYTES`].
pub struct Fetched {
    pub response: FetchResponse,
    pub slices: Vec<zero_copy::Slice>,
}

impl Fetched {
    /// The response with every slice read into its partition's `records`: what the copying
    /// path answers (tests compare the two).
    pub fn into_copied(mut self) -> std::io::Result<FetchResponse> {
        for s in self.slices {
            self.response.responses[s.topic].partitions[s.partition].records = Some(s.file.read()?);
        }
        Ok(self.response)
    }
}

pub async fn handle(broker: &Arc<Broker>, version: i16, request: FetchRequest) -> Fetched {
    if request.session_id != 0 {
        return Fetched {
            response: FetchResponse::default()
                .with_error_code(code::FETCH_SESSION_ID_NOT_FOUND)
                .with_session_id(0),
            slices: Vec::new(),
        };
    }
    let zero_copy = zero_copy::ZERO_COPY_MIN_BYTES.try_with(|m| *m).ok();
    let image = broker.metadata.image();
    let response_max_bytes = if request.max_bytes > 0 {
        (request.max_bytes as u32).min(broker.config.broker.fetch_max_bytes) as usize
    } else {
        broker.config.broker.fetch_max_bytes as usize
    };
    let max_wait = Duration::from_millis(
        (request.max_wait_ms.max(0) as u64).min(limits::FETCH_MAX_WAIT_MS_CEILING),
    );
    let min_bytes = request.min_bytes.max(0) as usize;
    let read_committed = request.isolation_level == 1;

    let node_id = broker.config.node_id;
    let follower = follower_of(&image, version, &request);
    // A fetch naming a replica needs CLUSTER_ACTION, a consumer's READ on each topic
    // (crate::authz::OPERATIONS); refused partitions answer TOPIC_AUTHORIZATION_FAILED.
    let authz = crate::authz::Authz::of(broker);
    let claims_replica = if version >= 15 {
        request.replica_state.replica_id.0 >= 0
    } else {
        request.replica_id.0 >= 0
    };
    let cluster_action = claims_replica && authz.allows_cluster(Operation::ClusterAction);
    // The endpoints of the leaders reported in `current_leader` (v16+), live brokers only.
    let mut node_endpoints = BTreeMap::new();
    let mut topics = Vec::with_capacity(request.topics.len());
    for t in request.topics {
        let topic = if version >= 13 {
            image.topics.get(&topic_id_of(t.topic_id))
        } else {
            image.topic_by_name(&t.topic.0)
        };
        let unknown = if version >= 13 {
            code::UNKNOWN_TOPIC_ID
        } else {
            code::UNKNOWN_TOPIC_OR_PARTITION
        };
        let name = topic.map_or(t.topic.0.as_str(), |x| x.name.as_str());
        let denied = if claims_replica {
            !cluster_action
        } else {
            (topic.is_some() || version < 13)
                && !authz.allows(Operation::Read, ResourceType::Topic, name)
        };
        let targets = t
            .partitions
            .iter()
            .map(|p| Target {
                partition_index: p.partition,
                fetch_offset: p.fetch_offset,
                partition_max_bytes: p.partition_max_bytes.max(0) as usize,
                replica: match (follower, topic) {
                    (Some(f), Some(topic)) => image
                        .partition(topic.topic_id, p.partition)
                        .filter(|a| a.leader == node_id && a.replicas.contains(&f.replica_id))
                        .map(|a| ReplicaRead {
                            replica_id: f.replica_id,
                            broker_epoch: f.broker_epoch,
                            eligible: f.eligible,
                            leader_epoch: a.leader_epoch,
                            last_fetched_epoch: if version >= 12 {
                                p.last_fetched_epoch
                            } else {
                                -1
                            },
                        }),
                    _ => None,
                },
                partition: match topic {
                    _ if denied => Err((code::TOPIC_AUTHORIZATION_FAILED, None)),
                    None => Err((unknown, None)),
                    Some(topic) => {
                        let epoch = (p.current_leader_epoch >= 0).then_some(p.current_leader_epoch);
                        match leadership::check(&image, node_id, topic.topic_id, p.partition, epoch)
                        {
                            Ok(_) => broker
                                .partitions
                                .get(topic.topic_id, p.partition)
                                .ok_or((code::KAFKA_STORAGE_ERROR, None)),
                            Err(refusal) => {
                                let error = refusal.error_code();
                                let reported = version >= 16
                                    && (error == code::NOT_LEADER_OR_FOLLOWER
                                        || error == code::FENCED_LEADER_EPOCH);
                                let leader = reported.then(|| refusal.current_leader());
                                if let Some((b, (host, port))) = leader
                                    .and_then(|l| leadership::live_broker(&image, l.leader_id))
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
                                Err((error, leader))
                            }
                        }
                    }
                },
            })
            .collect();
        let topic_id = topic.map_or(t.topic_id, |x| uuid_of(x.topic_id));
        topics.push(TopicTargets {
            name: t.topic,
            topic_id,
            targets,
        });
    }
    let topics = Arc::new(topics);
    let node_endpoints: Vec<NodeEndpoint> = node_endpoints.into_values().collect();

    let deadline = tokio::time::Instant::now() + max_wait;
    // Followers wait for appends, consumers for the high watermark to move.
    let replica_fetch = topics
        .iter()
        .any(|t| t.targets.iter().any(|x| x.replica.is_some()));
    let mut wake = if replica_fetch {
        broker.subscribe_appends()
    } else {
        broker.partitions.replication().subscribe_hw_moves()
    };
    let mut parked: Option<tokio::sync::SemaphorePermit<'_>> = None;
    let mut first_pass = true;
    loop {
        wake.borrow_and_update();
        let t = topics.clone();
        let pass = broker
            .blocking(move || {
                read_all(
                    &t,
                    response_max_bytes,
                    read_committed,
                    first_pass,
                    zero_copy,
                )
            })
            .await;
        first_pass = false;
        let done =
            pass.total >= min_bytes || pass.any_error || tokio::time::Instant::now() >= deadline;
        if !done && parked.is_none() {
            parked = broker.fetch_waiters.try_acquire().ok();
        }
        let respond = |pass: ReadPass| {
            count_consumer_reads(&topics, &pass.responses, &pass.slices);
            Fetched {
                response: FetchResponse::default()
                    .with_error_code(code::NONE)
                    .with_session_id(0)
                    .with_responses(pass.responses)
                    .with_node_endpoints(node_endpoints.clone()),
                slices: pass.slices,
            }
        };
        if done || parked.is_none() {
            return respond(pass);
        }
        match tokio::time::timeout_at(deadline, wake.changed()).await {
            Ok(Ok(())) => continue,
            // Timed out (or the broker is going away): answer with what we have.
            _ => return respond(pass),
        }
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use josefine_log::testkit::BatchBuilder;
    use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic, ReplicaState};
    use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
    use kafka_protocol::messages::{FetchRequest, ProduceRequest, TopicName};

    use super::*;
    use crate::handlers::produce::{self, ProduceOutcome};

    fn fetch(
        topic_id: Uuid,
        replica: Option<(i32, i64)>,
        last_fetched_epoch: i32,
        fetch_offset: i64,
    ) -> FetchRequest {
        let (replica_id, replica_epoch) = replica.unwrap_or((-1, -1));
        FetchRequest::default()
            .with_replica_state(
                ReplicaState::default()
                    .with_replica_id(BrokerId(replica_id))
                    .with_replica_epoch(replica_epoch),
            )
            .with_max_wait_ms(0)
            .with_min_bytes(0)
            .with_max_bytes(1 << 20)
            .with_session_epoch(-1)
            .with_topics(vec![FetchTopic::default()
                .with_topic_id(topic_id)
                .with_partitions(vec![FetchPartition::default()
                    .with_partition(0)
                    .with_current_leader_epoch(-1)
                    .with_fetch_offset(fetch_offset)
                    .with_last_fetched_epoch(last_fetched_epoch)
                    .with_partition_max_bytes(1 << 20)])])
    }

    /// The single partition's answer: (error, diverging epoch and end, record bytes).
    fn answer(r: FetchResponse) -> (i16, (i32, i64), usize) {
        let p = &r.responses[0].partitions[0];
        (
            p.error_code,
            (p.diverging_epoch.epoch, p.diverging_epoch.end_offset),
            p.records.as_ref().map_or(0, |b| b.len()),
        )
    }

    /// A replica fetch is recognised only with the caller's registered broker epoch and when
    /// the partition lists the caller; its `last_fetched_epoch` is checked against the
    /// leader-epoch cache (an epoch this log ends earlier than the fetch offset, or never had:
    /// diverging / out of range). Every other fetch is a consumer's: no epoch check, no
    /// counting.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn replica_fetches_are_recognised_by_replica_id_and_broker_epoch() {
        let dir = tempfile::tempdir().unwrap();
        let running = crate::handlers::testing::single_node(dir.path()).await;
        let broker = running.broker.clone();
        crate::controller::forward::create_topic(&broker, "t", 1, 1, vec![])
            .await
            .unwrap();
        let records = Bytes::from(BatchBuilder::new(now_ms()).records(3).build());
        let produced = produce::handle(
            &broker,
            9,
            ProduceRequest::default()
                .with_acks(-1)
                .with_timeout_ms(5_000)
                .with_topic_data(vec![TopicProduceData::default()
                    .with_name(TopicName(str_bytes("t")))
                    .with_partition_data(vec![PartitionProduceData::default()
                        .with_index(0)
                        .with_records(Some(records))])]),
        )
        .await;
        let ProduceOutcome::Respond(produced) = produced else {
            panic!("acks=-1 is answered");
        };
        assert_eq!(produced.responses[0].partition_responses[0].error_code, 0);
        let image = broker.metadata.image();
        let topic = image.topic_by_name("t").unwrap();
        let topic_id = uuid_of(topic.topic_id);
        let me = broker.config.node_id;
        let epoch = image.brokers[&me].epoch;
        let leader_epoch = image.partition(topic.topic_id, 0).unwrap().leader_epoch;

        let replica = Some((me, epoch));
        // The registered replica, last fetched epoch = the current one: records, no divergence.
        let (error, diverging, bytes) = answer(
            handle(&broker, 17, fetch(topic_id, replica, leader_epoch, 0))
                .await
                .response,
        );
        assert_eq!((error, diverging), (code::NONE, (-1, -1)));
        assert!(bytes > 0);
        // Its epoch ends here at 3, before its fetch offset 5: diverging_epoch, no records.
        let (error, diverging, bytes) = answer(
            handle(&broker, 17, fetch(topic_id, replica, leader_epoch, 5))
                .await
                .response,
        );
        assert_eq!(
            (error, diverging, bytes),
            (code::NONE, (leader_epoch, 3), 0)
        );
        // An epoch this log never had (above its latest): OFFSET_OUT_OF_RANGE.
        let (error, _, bytes) = answer(
            handle(&broker, 17, fetch(topic_id, replica, leader_epoch + 5, 0))
                .await
                .response,
        );
        assert_eq!((error, bytes), (code::OFFSET_OUT_OF_RANGE, 0));
        // A stale broker epoch, an unknown replica, a consumer: served as consumer fetches,
        // whatever their last fetched epoch.
        for other in [Some((me, epoch - 1)), Some((me + 40, 0)), None] {
            let (error, diverging, bytes) = answer(
                handle(&broker, 17, fetch(topic_id, other, leader_epoch + 5, 0))
                    .await
                    .response,
            );
            assert_eq!((error, diverging), (code::NONE, (-1, -1)), "{other:?}");
            assert!(bytes > 0, "{other:?}");
        }
        running.shutdown().await;
    }
}

//! Followers: one fetcher task per source broker pulls every partition this broker follows from
//! that leader, with Kafka's own Fetch (v17) on the leader's Kafka listener.
//!
//! Owns: the manager that follows the applied image and hands each source broker's task the
//! set of partitions it follows there (a partition moves between tasks as leadership moves;
//! a task with nothing left ends), the fetch request (`ReplicaState` = node id and this
//! incarnation's broker epoch, topic ids, `current_leader_epoch`, `last_fetched_epoch` from the
//! log's epoch cache, fetch offset = the log end, `replica.fetch.*` sizes and wait), and what
//! a follower does with each partition of the answer, as Kafka's `AbstractFetcherThread`:
//! records appended as follower (offsets and epochs as the leader stamped them), high
//! watermark = min(leader's, own log end); `diverging_epoch` truncates to
//! `josefine_replica::truncation_offset` (never to the local high watermark); OFFSET_OUT_OF_RANGE
//! asks the leader its log end and start (ListOffsets as a replica) and truncates to the end when
//! it is below ours, else starts over at the leader's log start when that is past our end;
//! NOT_LEADER_OR_FOLLOWER and FENCED_LEADER_EPOCH pause the partition until the image names
//! another leader epoch; other partition errors back it off for `replica.fetch.backoff.ms`; a
//! batch the log refuses (CRC, not contiguous) stops the partition with an error log until the
//! leader epoch changes, nothing of it written.
//! Must never: append to or truncate a partition unless its role is still "follower of this
//! source at this leader epoch" (checked under the role lock, the same lock a leader append
//! takes), or size a read from the leader's declared length beyond
//! `replica.fetch.response.max.bytes` + [`limits::REPLICA_FETCH_FRAME_SLACK_BYTES`].

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use josefine_meta::TopicId;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic, ReplicaState};
use kafka_protocol::messages::fetch_response::PartitionData;
use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::{
    ApiKey, BrokerId, FetchRequest, ListOffsetsRequest, RequestKind, ResponseKind, TopicName,
};
use tokio::sync::watch;
use tokio::time::Instant;
use tracing::{debug, error, info, warn};

use super::peer::Peer;
use super::Role;
use crate::broker::Broker;
use crate::handlers::{code, str_bytes, uuid_of};
use crate::limits;
use crate::partitions::Partition;

/// The Fetch version followers send (v15+ carries `ReplicaState`, KIP-903).
pub const REPLICA_FETCH_VERSION: i16 = 17;
/// The ListOffsets version a follower asks a leader's log end and start with.
const LIST_OFFSETS_VERSION: i16 = 7;

/// A partition this broker follows from one source, at the leader epoch the image names.
#[derive(Clone)]
pub struct FetchTarget {
    pub partition: Arc<Partition>,
    pub leader_epoch: i32,
}

type Key = (TopicId, i32);
type FetchSet = Arc<BTreeMap<Key, FetchTarget>>;

/// Follows the applied image: after each image the roles are current (the applier synced them
/// before publishing), so the followed partitions are grouped by leader and handed to that
/// leader's task.
pub(super) async fn run(broker: Arc<Broker>, mut stop: watch::Receiver<bool>) {
    let mut images = broker.metadata.subscribe_image();
    let mut sources: HashMap<i32, watch::Sender<FetchSet>> = HashMap::new();
    loop {
        images.borrow_and_update();
        let mut sets: BTreeMap<i32, BTreeMap<Key, FetchTarget>> = BTreeMap::new();
        for p in broker.partitions.all() {
            if let Some((leader_id, leader_epoch)) = p.replica.following() {
                sets.entry(leader_id).or_default().insert(
                    (p.topic_id, p.index),
                    FetchTarget {
                        partition: p,
                        leader_epoch,
                    },
                );
            }
        }
        sources.retain(|leader, _| sets.contains_key(leader));
        for (leader_id, set) in sets {
            let set = Arc::new(set);
            match sources.get(&leader_id) {
                Some(tx) => {
                    tx.send_if_modified(|old| {
                        let same = old.len() == set.len()
                            && old.iter().zip(set.iter()).all(|((k1, a), (k2, b))| {
                                k1 == k2
                                    && a.leader_epoch == b.leader_epoch
                                    && Arc::ptr_eq(&a.partition, &b.partition)
                            });
                        if !same {
                            *old = set.clone();
                        }
                        !same
                    });
                }
                None => {
                    let (tx, rx) = watch::channel(set);
                    tokio::spawn(run_source(broker.clone(), leader_id, rx, stop.clone()));
                    sources.insert(leader_id, tx);
                }
            }
        }
        tokio::select! {
            r = images.changed() => if r.is_err() { return },
            _ = stop.wait_for(|s| *s) => return,
        }
    }
}

/// Why a partition is not fetched right now.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Hold {
    /// Fetch it.
    None,
    /// Until this instant (a retriable error).
    Until(Instant),
    /// Until the image names another leader epoch (NOT_LEADER_OR_FOLLOWER, FENCED_LEADER_EPOCH,
    /// or a batch the log refused).
    Stopped,
}

/// What a follower did with one partition of a fetch answer.
#[derive(Debug)]
enum Outcome {
    Done,
    /// The role changed under the fetch: the data was dropped.
    Moved,
    Backoff,
    Stop,
    OutOfRange,
}

/// One source broker's fetcher: fetches the partitions of its set until the set is dropped.
async fn run_source(
    broker: Arc<Broker>,
    leader_id: i32,
    mut set_rx: watch::Receiver<FetchSet>,
    mut stop: watch::Receiver<bool>,
) {
    let settings = broker.config.broker.clone();
    let node_id = broker.config.node_id;
    let backoff = Duration::from_millis(settings.replica_fetch_backoff_ms);
    let client_id = format!("josefine-{node_id}-replica-fetcher-{leader_id}");
    let mut peer: Option<Peer> = None;
    let mut holds: HashMap<Key, (i32, Hold)> = HashMap::new();
    info!(leader = leader_id, "replica fetcher started");
    loop {
        // The manager drops the sender when this source leads nothing followed here any more.
        if *stop.borrow() || set_rx.has_changed().is_err() {
            break;
        }
        let set = set_rx.borrow_and_update().clone();
        holds.retain(|k, (epoch, _)| set.get(k).is_some_and(|t| t.leader_epoch == *epoch));
        let now = Instant::now();
        let mut active = Vec::new();
        let mut next_wake: Option<Instant> = None;
        for (key, target) in set.iter() {
            match holds.get(key).map(|h| h.1).unwrap_or(Hold::None) {
                Hold::None => active.push(target.clone()),
                Hold::Until(t) if t <= now => {
                    holds.remove(key);
                    active.push(target.clone());
                }
                Hold::Until(t) => next_wake = Some(next_wake.map_or(t, |w| w.min(t))),
                Hold::Stopped => {}
            }
        }
        let broker_epoch = broker.lifecycle.state().epoch;
        let image = broker.metadata.image();
        let endpoint = image
            .brokers
            .get(&leader_id)
            .map(|b| format!("{}:{}", b.host, b.port));
        let (Some(broker_epoch), Some(endpoint), false) =
            (broker_epoch, endpoint, active.is_empty())
        else {
            // Nothing to fetch now: wait for a new set, a hold to expire, or the back-off.
            let until = next_wake.unwrap_or(now + backoff.max(Duration::from_millis(100)));
            tokio::select! {
                r = set_rx.changed() => if r.is_err() { break },
                _ = tokio::time::sleep_until(until) => {}
                _ = stop.wait_for(|s| *s) => return,
            }
            continue;
        };
        if peer.as_ref().is_none_or(|p| p.addr() != endpoint) {
            peer = Some(Peer::new(endpoint, client_id.clone()));
        }
        let conn = peer.as_mut().expect("set above");
        let request = fetch_request(node_id, broker_epoch, &settings, &active);
        let frame_max = settings.replica_fetch_response_max_bytes.max(0) as usize
            + limits::REPLICA_FETCH_FRAME_SLACK_BYTES;
        let deadline = Instant::now()
            + Duration::from_millis(
                settings.replica_fetch_wait_max_ms.max(0) as u64
                    + settings.replica_socket_timeout_ms,
            );
        // A new set (leadership moved) or a stop abandons the fetch in flight: a stopped or
        // paused leader would otherwise hold this task for the whole socket timeout.
        let request = RequestKind::Fetch(request);
        let answer = tokio::select! {
            a = conn.call(ApiKey::Fetch, REPLICA_FETCH_VERSION, &request, frame_max, deadline) => Some(a),
            _ = set_rx.changed() => None,
            _ = stop.wait_for(|s| *s) => return,
        };
        let Some(answer) = answer else {
            // The abandoned answer may still arrive on that connection: never reuse it.
            peer = None;
            continue;
        };
        let response = match answer {
            Ok(ResponseKind::Fetch(r)) if r.error_code == code::NONE => r,
            other => {
                match other {
                    Ok(ResponseKind::Fetch(r)) => {
                        warn!(
                            leader = leader_id,
                            error = r.error_code,
                            "replica fetch refused"
                        )
                    }
                    Ok(_) => warn!(
                        leader = leader_id,
                        "replica fetch answered with another API"
                    ),
                    Err(e) => warn!(leader = leader_id, "replica fetch failed: {e}"),
                }
                tokio::select! {
                    _ = tokio::time::sleep(backoff) => {}
                    _ = stop.wait_for(|s| *s) => return,
                }
                continue;
            }
        };
        debug!(
            leader = leader_id,
            partitions = active.len(),
            "replica fetch answered"
        );
        let mut work = Vec::new();
        for t in response.responses {
            for p in t.partitions {
                let key = (
                    josefine_meta::TopicId(*t.topic_id.as_bytes()),
                    p.partition_index,
                );
                if let Some(target) = active
                    .iter()
                    .find(|a| (a.partition.topic_id, a.partition.index) == key)
                {
                    work.push((target.clone(), p));
                }
            }
        }
        if work.is_empty() {
            continue;
        }
        let outcomes = broker
            .blocking(move || {
                work.into_iter()
                    .map(|(target, data)| {
                        let outcome = apply_partition(leader_id, &target, data);
                        (target, outcome)
                    })
                    .collect::<Vec<_>>()
            })
            .await;
        for (target, outcome) in outcomes {
            let key = (target.partition.topic_id, target.partition.index);
            match outcome {
                Outcome::Done | Outcome::Moved => {}
                Outcome::Backoff => {
                    holds.insert(
                        key,
                        (target.leader_epoch, Hold::Until(Instant::now() + backoff)),
                    );
                }
                Outcome::Stop => {
                    holds.insert(key, (target.leader_epoch, Hold::Stopped));
                }
                Outcome::OutOfRange => {
                    let hold = match out_of_range(&broker, leader_id, conn, &target).await {
                        true => Hold::None,
                        false => Hold::Until(Instant::now() + backoff),
                    };
                    holds.insert(key, (target.leader_epoch, hold));
                }
            }
        }
    }
    info!(leader = leader_id, "replica fetcher stopped");
}

fn fetch_request(
    node_id: i32,
    broker_epoch: i64,
    settings: &crate::config::BrokerSettings,
    targets: &[FetchTarget],
) -> FetchRequest {
    let mut topics: BTreeMap<TopicId, Vec<FetchPartition>> = BTreeMap::new();
    for t in targets {
        let log = &t.partition.log;
        topics.entry(t.partition.topic_id).or_default().push(
            FetchPartition::default()
                .with_partition(t.partition.index)
                .with_current_leader_epoch(t.leader_epoch)
                .with_fetch_offset(log.log_end_offset())
                .with_last_fetched_epoch(log.latest_leader_epoch().unwrap_or(-1))
                .with_log_start_offset(log.log_start_offset())
                .with_partition_max_bytes(settings.replica_fetch_max_bytes),
        );
    }
    FetchRequest::default()
        .with_replica_state(
            ReplicaState::default()
                .with_replica_id(BrokerId(node_id))
                .with_replica_epoch(broker_epoch),
        )
        .with_max_wait_ms(settings.replica_fetch_wait_max_ms)
        .with_min_bytes(settings.replica_fetch_min_bytes)
        .with_max_bytes(settings.replica_fetch_response_max_bytes)
        .with_isolation_level(0)
        .with_session_id(0)
        .with_session_epoch(-1)
        .with_topics(
            topics
                .into_iter()
                .map(|(topic_id, partitions)| {
                    FetchTopic::default()
                        .with_topic_id(uuid_of(topic_id))
                        .with_partitions(partitions)
                })
                .collect(),
        )
}

/// Carries out one partition of a fetch answer (file I/O: on the blocking pool), under the
/// role lock so that the role cannot change in between.
fn apply_partition(leader_id: i32, target: &FetchTarget, data: PartitionData) -> Outcome {
    let p = &target.partition;
    let role = p.replica.role.lock().expect("role lock");
    match &*role {
        Role::Follower {
            leader_id: l,
            leader_epoch: e,
        } if *l == leader_id && *e == target.leader_epoch => {}
        _ => return Outcome::Moved,
    }
    let log = &p.log;
    match data.error_code {
        code::NONE => {}
        code::OFFSET_OUT_OF_RANGE => return Outcome::OutOfRange,
        code::NOT_LEADER_OR_FOLLOWER | code::FENCED_LEADER_EPOCH => {
            debug!(topic = %p.topic, partition = p.index, leader = leader_id, error = data.error_code, "replica fetch paused until the leader epoch changes");
            return Outcome::Stop;
        }
        other => {
            debug!(topic = %p.topic, partition = p.index, leader = leader_id, error = other, "replica fetch backs off");
            return Outcome::Backoff;
        }
    }
    if data.diverging_epoch.epoch >= 0 {
        let diverging = (data.diverging_epoch.epoch, data.diverging_epoch.end_offset);
        let log_end = log.log_end_offset();
        let local = log.end_offset_for_epoch(diverging.0);
        let to = josefine_replica::truncation_offset(diverging, local, log_end);
        info!(topic = %p.topic, partition = p.index, leader = leader_id, diverging_epoch = diverging.0, diverging_end = diverging.1, log_end, truncate_to = to, "log diverged from the leader's: truncating");
        if let Err(e) = log.truncate_to(to) {
            error!(topic = %p.topic, partition = p.index, "truncation failed; partition stopped: {e}");
            return Outcome::Stop;
        }
        return Outcome::Done;
    }
    if let Some(records) = data.records.filter(|r| !r.is_empty()) {
        if let Err(e) = log.append_as_follower(&records) {
            super::FOLLOWER_BATCHES_REFUSED.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            // The first batch's base offset (a batch starts with it); -1 when too short.
            let offset = records
                .get(..8)
                .map_or(-1, |b| i64::from_be_bytes(b.try_into().expect("8 bytes")));
            error!(topic = %p.topic, partition = p.index, offset, leader = leader_id, log_end = log.log_end_offset(), reason = %e, "batches from the leader refused; partition stopped until the leader epoch changes");
            return Outcome::Stop;
        }
        // `flush.messages=1`: fsynced before the next fetch acknowledges them to the leader
        // (Kafka flushes a follower's appends by the same rule as a leader's; the log leaves
        // interval 1 to its caller).
        if log.needs_flush_after_append() {
            if let Err(e) = crate::metrics::timed_flush(log) {
                error!(topic = %p.topic, partition = p.index, leader = leader_id, "flushing appended batches failed; partition stopped: {e}");
                return Outcome::Stop;
            }
        }
    }
    if data.high_watermark >= 0 {
        let hw =
            josefine_replica::follower_high_watermark(data.high_watermark, log.log_end_offset());
        log.set_high_watermark(hw);
    }
    // The leader's log start moved (retention, DeleteRecords): follow it below our HW.
    if data.log_start_offset > log.log_start_offset()
        && data.log_start_offset <= log.high_watermark()
    {
        if let Err(e) = log.advance_log_start_offset(data.log_start_offset) {
            warn!(topic = %p.topic, partition = p.index, "following the leader's log start: {e}");
        }
    }
    Outcome::Done
}

/// OFFSET_OUT_OF_RANGE: Kafka's `fetchOffsetAndTruncate`. Returns whether the partition can be
/// fetched again at once.
async fn out_of_range(
    broker: &Arc<Broker>,
    leader_id: i32,
    conn: &mut Peer,
    target: &FetchTarget,
) -> bool {
    let Some(leader_end) = list_offset(broker, conn, target, -1).await else {
        return false;
    };
    let p = &target.partition;
    let own_end = p.log.log_end_offset();
    let leader_start = if leader_end < own_end {
        None
    } else {
        match list_offset(broker, conn, target, -2).await {
            Some(s) => Some(s),
            None => return false,
        }
    };
    let t = target.clone();
    broker
        .blocking(move || {
            let p = &t.partition;
            let role = p.replica.role.lock().expect("role lock");
            if !matches!(&*role, Role::Follower { leader_id: l, leader_epoch: e } if *l == leader_id && *e == t.leader_epoch)
            {
                return false;
            }
            let own_end = p.log.log_end_offset();
            let r = match leader_start {
                None if leader_end < own_end => {
                    warn!(topic = %p.topic, partition = p.index, leader_end, own_end, "the leader's log ends below ours: truncating to it");
                    p.log.truncate_to(leader_end)
                }
                Some(start) if start > own_end => {
                    warn!(topic = %p.topic, partition = p.index, leader_start = start, own_end, "our log ends before the leader's start: starting over there");
                    p.log.truncate_fully_and_start_at(start)
                }
                _ => return false,
            };
            match r {
                Ok(()) => true,
                Err(e) => {
                    error!(topic = %p.topic, partition = p.index, "truncation failed: {e}");
                    false
                }
            }
        })
        .await
}

/// The leader's offset for `timestamp` (-1: its log end, as a replica asks; -2: its log start).
async fn list_offset(
    broker: &Arc<Broker>,
    conn: &mut Peer,
    target: &FetchTarget,
    timestamp: i64,
) -> Option<i64> {
    let p = &target.partition;
    let request = ListOffsetsRequest::default()
        .with_replica_id(BrokerId(broker.config.node_id))
        .with_isolation_level(0)
        .with_topics(vec![ListOffsetsTopic::default()
            .with_name(TopicName(str_bytes(p.topic.clone())))
            .with_partitions(vec![ListOffsetsPartition::default()
                .with_partition_index(p.index)
                .with_current_leader_epoch(target.leader_epoch)
                .with_timestamp(timestamp)])]);
    let deadline =
        Instant::now() + Duration::from_millis(broker.config.broker.replica_socket_timeout_ms);
    let answer = conn
        .call(
            ApiKey::ListOffsets,
            LIST_OFFSETS_VERSION,
            &RequestKind::ListOffsets(request),
            limits::REPLICA_FETCH_FRAME_SLACK_BYTES,
            deadline,
        )
        .await;
    match answer {
        Ok(ResponseKind::ListOffsets(r)) => {
            let part = r.topics.first()?.partitions.first()?;
            if part.error_code != code::NONE {
                debug!(topic = %p.topic, partition = p.index, error = part.error_code, "ListOffsets to the leader refused");
                return None;
            }
            Some(part.offset)
        }
        Ok(_) => None,
        Err(e) => {
            warn!(topic = %p.topic, partition = p.index, "ListOffsets to the leader failed: {e}");
            None
        }
    }
}

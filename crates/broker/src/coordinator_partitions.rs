//! The partitions of a coordinator's internal topic, as the group coordinator
//! (`__consumer_offsets`, [`crate::groups`]) and the transaction coordinator
//! (`__transaction_state`, [`crate::txn`]) both serve them: one runtime for both, so a fix
//! reaches both.
//!
//! Owns: following the applied metadata image for the topic (which partitions this node leads,
//! at which leader epoch), the load of each partition it starts leading (a loader task replays
//! the log, control batches included, into the coordinator), the appender task that writes the
//! coordinator's records (in order, a round of jobs per blocking call, one flush per partition
//! per round) and reports each append once the high watermark covers it (acks=all), the
//! appends in flight, and the waits for "every append issued so far" (a topic deletion's
//! tombstones). The coordinator itself stays with its runtime, which implements [`Serve`]:
//! [`Partitions`] calls it when a partition starts loading, is loaded, is unloaded, and when an
//! append ends.
//!
//! The rules: a partition this node starts leading is loaded (its keys answer
//! COORDINATOR_LOAD_IN_PROGRESS meanwhile), one it stops leading is unloaded (NOT_COORDINATOR),
//! and one whose leader epoch changed while led here is unloaded and loaded again, since another
//! leader may have written to it in between. A load starts only once every append issued
//! before it has finished, so it reads all of them; a load finishing for a partition no longer
//! led at its epoch is discarded. The topic deleted or recreated: everything served is
//! unloaded.
//!
//! Must never: append to a partition this node does not lead at the epoch its state was loaded
//! at (the appender checks the image right before each append and stamps the batch with that
//! leader epoch; a stale coordinator writing over a new leader's records would lose commits),
//! report an append of a partition unloaded since it was issued (its caller heard
//! NOT_COORDINATOR at the unload), report an append durable before the high watermark covers
//! it, block the coordinator task on storage (appends and loads run on the blocking pool via
//! [`Broker::blocking`] and report back as messages), reorder appends to one partition (one
//! appender, FIFO: compaction keeps the *last* record per key, and reports come back in issue
//! order), or queue without a bound (see `limits`).

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use josefine_group::{AppendOutcome, OffsetsRecord};
use josefine_log::batch::BatchHeader;
use josefine_log::limits::BATCH_HEADER_BYTES;
use josefine_log::{LogError, PartitionLog};
use josefine_meta::{Image, TopicId};
use kafka_protocol::records::{
    Compression, Record, RecordBatchDecoder, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use tracing::{error, info, warn};

use crate::broker::Broker;
use crate::clock::now_ms;
use crate::controller::forward;
use crate::handlers::code;
use crate::limits;
use crate::replication::leader::LeaderAppendError;

/// Kafka 4's floor for the `segment.bytes` topic config (1 MiB).
const SEGMENT_BYTES_TOPIC_MIN: u64 = 1024 * 1024;

/// Names one append handed to the appender (a coordinator's own append ids restart with a new
/// coordinator; these never do).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct JobId(u64);

/// One batch for the appender.
pub struct AppendJob {
    pub job: JobId,
    pub topic_id: TopicId,
    pub partition: i32,
    /// The epoch this node led the partition at when the coordinator's state of it was loaded:
    /// the append happens only if the image still says so, stamped with it.
    pub leader_epoch: i32,
    pub records: Vec<OffsetsRecord>,
    /// A transactional batch of this producer (id, epoch): TxnOffsetCommit.
    pub producer: Option<(i64, i16)>,
}

/// What the appender and the loaders report back to the coordinator task
/// ([`Partitions::on_report`]).
pub enum Report {
    /// A round of appends, in issue order.
    Appended(Vec<(JobId, AppendOutcome)>),
    LoadStep {
        partition: i32,
        load_id: u64,
        records: Vec<LoadItem>,
    },
    LoadDone {
        partition: i32,
        load_id: u64,
        ok: bool,
    },
}

/// What a load replays, in log order.
#[derive(Debug)]
pub enum LoadItem {
    /// A keyed record; `producer_id` when it is in a transactional batch (TxnOffsetCommit).
    Record {
        key: Bytes,
        value: Option<Bytes>,
        producer_id: Option<i64>,
    },
    /// A transaction marker of `producer_id`.
    Marker { producer_id: i64, commit: bool },
}

/// One partition this node leads per the image last followed.
pub struct Led {
    pub leader_epoch: i32,
    /// Tells this load's steps from those of an earlier load of the same partition.
    pub load_id: u64,
    pub phase: Phase,
}

pub enum Phase {
    /// Waiting for appends issued before the load to finish, so the loader reads them.
    Draining,
    /// The loader is reading it; set `cancelled` to stop it.
    Loading {
        cancelled: Arc<AtomicBool>,
    },
    Loaded,
}

/// An append handed to the appender and not reported back yet.
struct InFlight<A> {
    partition: i32,
    /// `None` once its caller was answered at an unload: the appender's report is then dropped.
    append_id: Option<A>,
}

/// One partition for a loader to read.
struct LoadTask {
    partition: i32,
    load_id: u64,
    cancelled: Arc<AtomicBool>,
}

/// The coordinator side of [`Partitions`]: what happens to the coordinator at each event.
/// Implemented by each coordinator runtime over its pure coordinator: each event returns the
/// coordinator's effects, which [`Partitions::carry_out`] then carries out one by one with
/// [`Serve::carry_out`].
pub trait Serve {
    /// The coordinator's name for an append.
    type AppendId: Copy + std::fmt::Debug;
    /// One of the coordinator's effects.
    type Effect;

    /// The partition count the coordinator hashes its keys over.
    fn partition_count(&self) -> i32;
    /// The topic now served has `count` partitions: hash over that many if possible (a topic
    /// created with another count than the setting). Called with nothing served.
    fn fit(&mut self, count: i32);
    /// `partition` starts loading: its keys answer COORDINATOR_LOAD_IN_PROGRESS.
    fn begin_load(&mut self, partition: i32) -> Vec<Self::Effect>;
    /// Replays records read from `partition`'s log.
    fn load(&mut self, partition: i32, items: Vec<LoadItem>);
    /// The whole log of `partition` (led at `leader_epoch`) was replayed: finish the load.
    fn complete_load(
        &mut self,
        partition: i32,
        leader_epoch: i32,
    ) -> Result<Vec<Self::Effect>, String>;
    /// `partition` is no longer served: its keys answer NOT_COORDINATOR. Its appends still in
    /// flight are then failed with [`AppendOutcome::NotLeader`] through [`Serve::append_done`].
    fn unload(&mut self, partition: i32) -> Vec<Self::Effect>;
    /// An append ended.
    fn append_done(
        &mut self,
        append_id: Self::AppendId,
        outcome: AppendOutcome,
    ) -> Vec<Self::Effect>;
    /// Carries out one effect; an append goes through [`Partitions::submit`], and if that
    /// refuses it at once, the refusal is returned (and then reported with
    /// [`Serve::append_done`]).
    fn carry_out(
        &mut self,
        parts: &mut Partitions<Self::AppendId>,
        effect: Self::Effect,
    ) -> Result<(), (Self::AppendId, AppendOutcome)>;
}

/// Responses owed by a coordinator task, by request id (the number in the coordinator's
/// `RequestId`): at most one per connection (one request in progress each).
pub struct Waiting<R> {
    replies: HashMap<u64, oneshot::Sender<R>>,
    next: u64,
}

impl<R> Waiting<R> {
    pub fn new() -> Self {
        Waiting {
            replies: HashMap::new(),
            next: 1,
        }
    }

    /// A new request id whose response goes to `reply`.
    pub fn register(&mut self, reply: oneshot::Sender<R>) -> u64 {
        let id = self.next;
        self.next += 1;
        self.replies.insert(id, reply);
        id
    }

    /// Sends the response of request `id` (the connection may be gone: nothing to do then).
    pub fn respond(&mut self, id: u64, response: R) {
        if let Some(reply) = self.replies.remove(&id) {
            let _ = reply.send(response);
        }
    }
}

impl<R> Default for Waiting<R> {
    fn default() -> Self {
        Self::new()
    }
}

/// The receiving ends a coordinator runtime needs besides [`Partitions`].
pub struct Channels {
    /// For [`run_appender`].
    pub appends: mpsc::Receiver<AppendJob>,
    /// For the runtime's loop: hand each to [`Partitions::on_report`].
    pub reports: mpsc::Receiver<Report>,
    /// The topic id of the image last followed (to know whether a new topic is served yet).
    pub served: watch::Receiver<Option<TopicId>>,
}

/// The partitions of `topic` a coordinator serves, their loads and its appends in flight.
pub struct Partitions<A> {
    broker: Arc<Broker>,
    topic: &'static str,
    /// The topic (id, partition count) in the image last followed.
    served: Option<(TopicId, i32)>,
    served_tx: watch::Sender<Option<TopicId>>,
    /// Position of the image last followed: an older one is never followed after a newer one.
    followed_position: Option<u64>,
    /// The partitions served: those this node leads per the image last followed.
    pub(crate) led: BTreeMap<i32, Led>,
    next_load_id: u64,
    /// Appends handed to the appender and not reported back, in issue order.
    in_flight: BTreeMap<JobId, InFlight<A>>,
    /// Waits for every append issued before them (the last one then): whom to tell once no
    /// append up to it is in flight. At most one per connection (one request in progress each).
    barriers: Vec<(JobId, oneshot::Sender<()>)>,
    next_job: u64,
    appends: mpsc::Sender<AppendJob>,
    reports_tx: mpsc::Sender<Report>,
    /// Loader tasks, awaited at shutdown so no load reads a log while it is being closed.
    loaders: Vec<JoinHandle<()>>,
}

impl<A: Copy + std::fmt::Debug> Partitions<A> {
    /// Serving no partition of `topic` yet: [`Partitions::follow`] an image to start.
    pub fn new(
        broker: &Arc<Broker>,
        topic: &'static str,
        appends_queued_max: usize,
        reports_queued_max: usize,
    ) -> (Partitions<A>, Channels) {
        let (appends_tx, appends) = mpsc::channel(appends_queued_max);
        let (reports_tx, reports) = mpsc::channel(reports_queued_max);
        let (served_tx, served) = watch::channel(None);
        let parts = Partitions {
            broker: broker.clone(),
            topic,
            served: None,
            served_tx,
            followed_position: None,
            led: BTreeMap::new(),
            next_load_id: 1,
            in_flight: BTreeMap::new(),
            barriers: Vec::new(),
            next_job: 1,
            appends: appends_tx,
            reports_tx,
            loaders: Vec::new(),
        };
        let channels = Channels {
            appends,
            reports,
            served,
        };
        (parts, channels)
    }

    /// Starts the appender task writing the jobs of [`Partitions::submit`] (the receiving end
    /// from [`Partitions::new`]).
    pub fn spawn_appender(&self, appends: mpsc::Receiver<AppendJob>) -> JoinHandle<()> {
        tokio::spawn(run_appender(
            self.broker.clone(),
            self.topic,
            appends,
            self.reports_tx.clone(),
        ))
    }

    /// The topic (id, partition count) served, per the image last followed.
    pub fn served(&self) -> Option<(TopicId, i32)> {
        self.served
    }

    /// The phase of `partition` if it is served.
    pub fn phase(&self, partition: i32) -> Option<&Phase> {
        self.led.get(&partition).map(|l| &l.phase)
    }

    /// Partitions led here and not loaded yet (draining or loading).
    pub fn loading_count(&self) -> usize {
        self.led
            .values()
            .filter(|l| !matches!(l.phase, Phase::Loaded))
            .count()
    }

    /// Brings the partitions served in line with `image` (see the module docs).
    pub fn follow<S: Serve<AppendId = A>>(&mut self, serve: &mut S, image: &Image) {
        if self.followed_position.is_some_and(|p| image.position < p) {
            return;
        }
        self.followed_position = Some(image.position);
        let topic = image.topic_by_name(self.topic);
        let served = topic.map(|t| (t.topic_id, t.partitions.len() as i32));
        if served != self.served {
            // Created, deleted or recreated: nothing of the old topic is served any more.
            self.unload_all(serve);
            self.served = served;
            self.served_tx.send_replace(served.map(|s| s.0));
            if let Some((_, count)) = served {
                if count != serve.partition_count() {
                    warn!(
                        count,
                        expected = serve.partition_count(),
                        "{} has a partition count other than its setting",
                        self.topic
                    );
                    serve.fit(count);
                }
            }
        }
        let Some(topic) = topic else {
            return;
        };
        if topic.partitions.len() as i32 != serve.partition_count() {
            return; // could not build a coordinator for it (logged when it appeared)
        }
        let node_id = self.broker.config.node_id;
        let leading: BTreeMap<i32, i32> = topic
            .partitions
            .iter()
            .filter(|p| p.leader == node_id)
            .map(|p| (p.partition, p.leader_epoch))
            .collect();
        let lost: Vec<i32> = self
            .led
            .iter()
            .filter(|(p, led)| leading.get(p) != Some(&led.leader_epoch))
            .map(|(p, _)| *p)
            .collect();
        for &partition in &lost {
            self.unload(serve, partition);
        }
        let gained: Vec<(i32, i32)> = leading
            .into_iter()
            .filter(|(p, _)| !self.led.contains_key(p))
            .collect();
        if !lost.is_empty() || !gained.is_empty() {
            info!(
                unloaded = ?lost,
                loading = ?gained.iter().map(|g| g.0).collect::<Vec<_>>(),
                position = image.position,
                "{} leadership changed",
                self.topic
            );
        }
        let ready: Vec<LoadTask> = gained
            .into_iter()
            .filter_map(|(partition, epoch)| self.begin_load(serve, partition, epoch))
            .collect();
        self.spawn_loader(ready);
    }

    /// Starts serving `partition` (led here at `leader_epoch`): loading, or draining first if
    /// appends issued before are still in flight. The load to start now, if any.
    fn begin_load<S: Serve<AppendId = A>>(
        &mut self,
        serve: &mut S,
        partition: i32,
        leader_epoch: i32,
    ) -> Option<LoadTask> {
        let effects = serve.begin_load(partition);
        self.carry_out(serve, effects);
        let load_id = self.next_load_id;
        self.next_load_id += 1;
        let draining = self.in_flight.values().any(|f| f.partition == partition);
        let (phase, task) = if draining {
            (Phase::Draining, None)
        } else {
            let cancelled = Arc::new(AtomicBool::new(false));
            let task = LoadTask {
                partition,
                load_id,
                cancelled: cancelled.clone(),
            };
            (Phase::Loading { cancelled }, Some(task))
        };
        let led = Led {
            leader_epoch,
            load_id,
            phase,
        };
        self.led.insert(partition, led);
        task
    }

    /// Starts the loads whose partitions have no append in flight any more.
    fn start_drained_loads(&mut self) {
        let mut ready = Vec::new();
        for (&partition, led) in self.led.iter_mut() {
            if !matches!(led.phase, Phase::Draining)
                || self.in_flight.values().any(|f| f.partition == partition)
            {
                continue;
            }
            let cancelled = Arc::new(AtomicBool::new(false));
            ready.push(LoadTask {
                partition,
                load_id: led.load_id,
                cancelled: cancelled.clone(),
            });
            led.phase = Phase::Loading { cancelled };
        }
        self.spawn_loader(ready);
    }

    fn spawn_loader(&mut self, loads: Vec<LoadTask>) {
        let Some((topic_id, _)) = self.served else {
            return;
        };
        if loads.is_empty() {
            return;
        }
        self.loaders.retain(|l| !l.is_finished());
        self.loaders.push(tokio::spawn(run_loader(
            self.broker.clone(),
            self.topic,
            topic_id,
            loads,
            self.reports_tx.clone(),
        )));
    }

    /// Stops serving `partition`: its keys answer NOT_COORDINATOR, and so do the callers of its
    /// appends still in flight (whatever the appender reports for them is dropped).
    fn unload<S: Serve<AppendId = A>>(&mut self, serve: &mut S, partition: i32) {
        let Some(led) = self.led.remove(&partition) else {
            return;
        };
        if let Phase::Loading { cancelled } = &led.phase {
            cancelled.store(true, Ordering::Relaxed);
        }
        let effects = serve.unload(partition);
        self.carry_out(serve, effects);
        let orphans: Vec<A> = self
            .in_flight
            .values_mut()
            .filter(|f| f.partition == partition)
            .filter_map(|f| f.append_id.take())
            .collect();
        for append_id in orphans {
            let effects = serve.append_done(append_id, AppendOutcome::NotLeader);
            self.carry_out(serve, effects);
        }
    }

    fn unload_all<S: Serve<AppendId = A>>(&mut self, serve: &mut S) {
        let partitions: Vec<i32> = self.led.keys().copied().collect();
        for partition in partitions {
            self.unload(serve, partition);
        }
    }

    /// Carries out a coordinator's effects in order, including those of appends it refused at
    /// once (not served here, queue full).
    pub fn carry_out<S: Serve<AppendId = A>>(&mut self, serve: &mut S, effects: Vec<S::Effect>) {
        let mut work: VecDeque<S::Effect> = effects.into();
        while let Some(effect) = work.pop_front() {
            if let Err((append_id, outcome)) = serve.carry_out(self, effect) {
                work.extend(serve.append_done(append_id, outcome));
            }
        }
    }

    /// Hands an append of `records` to `partition` to the appender, reported back as
    /// `append_id`; `producer` makes it a transactional batch of that producer. Refused at once
    /// (the caller fails the append) if the partition is not loaded here or the queue is full.
    pub fn submit(
        &mut self,
        append_id: A,
        partition: i32,
        records: Vec<OffsetsRecord>,
        producer: Option<(i64, i16)>,
    ) -> Result<(), AppendOutcome> {
        let Some((topic_id, _)) = self.served else {
            return Err(AppendOutcome::NotLeader);
        };
        let leader_epoch = match self.led.get(&partition) {
            Some(led) if matches!(led.phase, Phase::Loaded) => led.leader_epoch,
            _ => return Err(AppendOutcome::NotLeader),
        };
        let job = JobId(self.next_job);
        self.next_job += 1;
        let append = AppendJob {
            job,
            topic_id,
            partition,
            leader_epoch,
            records,
            producer,
        };
        if self.appends.try_send(append).is_err() {
            warn!("{} append queue full; failing the append", self.topic);
            return Err(AppendOutcome::Unavailable);
        }
        let f = InFlight {
            partition,
            append_id: Some(append_id),
        };
        self.in_flight.insert(job, f);
        Ok(())
    }

    /// Tells `done` once every append issued so far is reported back (at once if none is in
    /// flight).
    pub fn when_appended(&mut self, done: oneshot::Sender<()>) {
        match self.in_flight.keys().next_back() {
            Some(&last) => self.barriers.push((last, done)),
            None => {
                let _ = done.send(());
            }
        }
    }

    /// Takes in what the appender or a loader reported.
    pub fn on_report<S: Serve<AppendId = A>>(&mut self, serve: &mut S, report: Report) {
        match report {
            Report::Appended(results) => {
                for (job, result) in results {
                    let done = self
                        .in_flight
                        .remove(&job)
                        .unwrap_or_else(|| panic!("append {job:?} reported twice or never sent"));
                    if let Some(append_id) = done.append_id {
                        let effects = serve.append_done(append_id, result);
                        self.carry_out(serve, effects);
                    }
                }
                self.answer_barriers();
                self.start_drained_loads();
            }
            Report::LoadStep {
                partition,
                load_id,
                records,
            } => {
                if self.is_loading(partition, load_id) {
                    serve.load(partition, records);
                } // else a load of a partition no longer led at that epoch
            }
            Report::LoadDone {
                partition,
                load_id,
                ok,
            } => {
                if !self.is_loading(partition, load_id) {
                    return;
                }
                if !ok {
                    // Its keys stay COORDINATOR_LOAD_IN_PROGRESS: serving half-read state
                    // would make clients re-read or skip data.
                    error!(
                        partition,
                        "loading {} failed; the partition stays unavailable until its leadership changes",
                        self.topic
                    );
                    return;
                }
                let epoch = self.led[&partition].leader_epoch;
                match serve.complete_load(partition, epoch) {
                    Ok(effects) => {
                        // Loaded before its effects run: they may append to it.
                        if let Some(led) = self.led.get_mut(&partition) {
                            led.phase = Phase::Loaded;
                        }
                        info!(partition, epoch, "{} partition loaded", self.topic);
                        self.carry_out(serve, effects);
                    }
                    Err(e) => error!(partition, "completing the load of {}: {e}", self.topic),
                }
            }
        }
    }

    /// Tells the barriers whose appends are all reported back.
    fn answer_barriers(&mut self) {
        let in_flight = &self.in_flight;
        let (done, waiting): (Vec<_>, Vec<_>) = std::mem::take(&mut self.barriers)
            .into_iter()
            .partition(|(last, _)| in_flight.range(..=*last).next().is_none());
        self.barriers = waiting;
        for (_, tell) in done {
            let _ = tell.send(());
        }
    }

    fn is_loading(&self, partition: i32, load_id: u64) -> bool {
        self.led
            .get(&partition)
            .is_some_and(|led| led.load_id == load_id && matches!(led.phase, Phase::Loading { .. }))
    }

    /// At the coordinator's stop: cancels the loads, lets the appender finish what it holds (so
    /// no append races the logs' close) and waits for the loaders. The inbox is dropped first,
    /// so every helper's next report fails and it stops.
    pub async fn shutdown<M, I>(self, inbox: Inbox<M, I>, appender: JoinHandle<()>) {
        for led in self.led.values() {
            if let Phase::Loading { cancelled } = &led.phase {
                cancelled.store(true, Ordering::Relaxed);
            }
        }
        drop(self.appends);
        drop(inbox);
        let _ = appender.await;
        for loader in self.loaders {
            // Cancelled, and its next send fails: it stops after the current step.
            let _ = loader.await;
        }
    }

    #[cfg(test)]
    pub(crate) fn in_flight_count(&self) -> usize {
        self.in_flight.len()
    }
}

/// What a coordinator task reacts to next.
pub enum Event<M, I> {
    /// A handler's message (`None`: every handle is gone).
    Msg(Option<M>),
    /// The appender or a loader reported: hand it to [`Partitions::on_report`].
    Report(Report),
    /// One of the runtime's own helper tasks reported.
    Internal(I),
    /// The applied image moved on: follow it.
    Image(Arc<Image>),
    /// The coordinator's next deadline passed: tick it.
    Tick,
}

/// Everything a coordinator task waits on, in one place.
pub struct Inbox<M, I> {
    pub requests: mpsc::Receiver<M>,
    pub reports: mpsc::Receiver<Report>,
    pub internal: mpsc::Receiver<I>,
    pub images: watch::Receiver<Arc<Image>>,
    /// False once the image store stopped (the broker is shutting down: a stop follows).
    following: bool,
}

impl<M, I> Inbox<M, I> {
    pub fn new(
        requests: mpsc::Receiver<M>,
        reports: mpsc::Receiver<Report>,
        internal: mpsc::Receiver<I>,
        images: watch::Receiver<Arc<Image>>,
    ) -> Self {
        Inbox {
            requests,
            reports,
            internal,
            images,
            following: true,
        }
    }

    /// The next event; [`Event::Tick`] once `deadline_ms` (the coordinator's next deadline, at
    /// least 1 ms away so a timer left due cannot make the loop spin) passes.
    pub async fn next(&mut self, deadline_ms: Option<i64>) -> Event<M, I> {
        let wait_ms = deadline_ms.map(|d| (d - now_ms()).max(1) as u64);
        loop {
            tokio::select! {
                msg = self.requests.recv() => return Event::Msg(msg),
                Some(r) = self.reports.recv() => return Event::Report(r),
                Some(i) = self.internal.recv() => return Event::Internal(i),
                changed = self.images.changed(), if self.following => match changed {
                    Ok(()) => return Event::Image(self.images.borrow_and_update().clone()),
                    Err(_) => self.following = false,
                },
                _ = sleep_ms(wait_ms) => return Event::Tick,
            }
        }
    }
}

/// Sleeps `ms`, or forever for `None` (no coordinator deadline).
async fn sleep_ms(ms: Option<u64>) {
    match ms {
        Some(ms) => tokio::time::sleep(Duration::from_millis(ms)).await,
        None => std::future::pending().await,
    }
}

// ---- Creating the topic ----------------------------------------------------------------------

/// Kafka's rule for creating an internal topic: only once `replication_factor` brokers are
/// unfenced (eligible), else the caller answers COORDINATOR_NOT_AVAILABLE and tries again on
/// the next FindCoordinator; checked here so an early client does not cost a controller call.
/// `setting` names the replication factor's setting in the message.
pub fn placeable(
    image: &Image,
    topic: &str,
    replication_factor: i16,
    setting: &str,
) -> Result<(), String> {
    let eligible = image.eligible_brokers().count();
    if (eligible as i64) < i64::from(replication_factor) {
        return Err(format!(
            "{topic} needs {replication_factor} unfenced broker(s) ({setting}) and {eligible} are"
        ));
    }
    Ok(())
}

/// Has the controller create the compacted internal `topic` (as Kafka's coordinators do on the
/// first FindCoordinator), with `extra` configs besides the common ones. Small segments
/// (`segment_bytes`), so the cleaner (which never touches the active segment) keeps the topic
/// compact; below the topic-level floor (1 MiB in Kafka 4) it goes in as
/// `internal.segment.bytes`, as Kafka's own tests do.
pub async fn create_topic(
    broker: &Arc<Broker>,
    topic: &str,
    partitions: i32,
    replication_factor: i16,
    segment_bytes: u64,
    extra: Vec<(String, String)>,
) -> Result<(), String> {
    let segment_key = if segment_bytes < SEGMENT_BYTES_TOPIC_MIN {
        "internal.segment.bytes"
    } else {
        "segment.bytes"
    };
    let mut configs = vec![
        ("cleanup.policy".to_string(), "compact".to_string()),
        (segment_key.to_string(), segment_bytes.to_string()),
        ("compression.type".to_string(), "producer".to_string()),
    ];
    configs.extend(extra);
    match forward::create_topic(broker, topic, partitions, replication_factor, configs).await {
        Ok(()) => {
            info!(partitions, "{topic} exists");
            Ok(())
        }
        Err((code, message)) => {
            error!(code, "cannot create {topic}: {message}");
            Err(format!("cannot create {topic}: {message}"))
        }
    }
}

// ---- Appending -------------------------------------------------------------------------------

/// Writes coordinator records in queue order, a round of jobs per blocking call, and reports
/// each round once the high watermark covers it (Kafka's coordinators write with acks=-1:
/// with replicas, the followers have them then). The waits run in a second task, in order, so
/// the next rounds are appended meanwhile.
async fn run_appender(
    broker: Arc<Broker>,
    topic: &'static str,
    mut jobs: mpsc::Receiver<AppendJob>,
    reports: mpsc::Sender<Report>,
) {
    let (rounds_tx, rounds) = mpsc::channel(limits::COORDINATOR_ROUNDS_WAITING_MAX);
    let waiter = tokio::spawn(wait_rounds(rounds, reports));
    while let Some(first) = jobs.recv().await {
        let mut round = vec![first];
        while round.len() < limits::COORDINATOR_APPENDS_PER_ROUND_MAX {
            match jobs.try_recv() {
                Ok(job) => round.push(job),
                Err(_) => break,
            }
        }
        let b = broker.clone();
        let (results, waits) = broker
            .blocking(move || append_round(&b, topic, round))
            .await;
        broker.notify_append();
        let deadline = tokio::time::Instant::now()
            + Duration::from_millis(limits::COORDINATOR_APPEND_COMMIT_TIMEOUT_MS);
        if rounds_tx.send((results, waits, deadline)).await.is_err() {
            break; // the coordinator stopped
        }
    }
    drop(rounds_tx);
    let _ = waiter.await;
}

/// One appended round waiting for the high watermark: results, waits, and until when.
type Round = (
    Vec<(JobId, AppendOutcome)>,
    Vec<HighWatermarkWait>,
    tokio::time::Instant,
);

async fn wait_rounds(mut rounds: mpsc::Receiver<Round>, reports: mpsc::Sender<Report>) {
    while let Some((mut results, waits, deadline)) = rounds.recv().await {
        for (result, wait) in results.iter_mut().zip(waits) {
            let Some((partition, leader_epoch, required)) = wait else {
                continue;
            };
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            let waited = partition.wait_for_high_watermark(leader_epoch, required, left);
            result.1 = tokio::select! {
                c = waited => match c {
                    code::NONE => AppendOutcome::Appended,
                    code::NOT_LEADER_OR_FOLLOWER => AppendOutcome::NotLeader,
                    _ => AppendOutcome::Unavailable,
                },
                // The coordinator stopped: nobody waits for the answer.
                _ = reports.closed() => return,
            };
        }
        if reports.send(Report::Appended(results)).await.is_err() {
            return;
        }
    }
}

/// A successful append's wait: the partition, its leader epoch and the offset the high
/// watermark must reach.
pub type HighWatermarkWait = Option<(Arc<crate::partitions::Partition>, i32, i64)>;

/// Appends a round of jobs (each only where this node still leads the partition at the job's
/// epoch), then flushes each partition once if its flush policy says so (a group commit).
pub fn append_round(
    broker: &Broker,
    topic: &str,
    round: Vec<AppendJob>,
) -> (Vec<(JobId, AppendOutcome)>, Vec<HighWatermarkWait>) {
    let node_id = broker.config.node_id;
    let now = now_ms();
    let mut results = Vec::with_capacity(round.len());
    let mut waits = Vec::with_capacity(round.len());
    // Logs to flush after the round, and for each result the log it waits on.
    let mut to_flush: Vec<Arc<PartitionLog>> = Vec::new();
    let mut flush_of: Vec<Option<usize>> = Vec::with_capacity(round.len());
    for job in round {
        // Right before the append: a coordinator loaded at another epoch (or not leading at
        // all) must not write over what the partition's real leader wrote.
        let image = broker.metadata.image();
        let leads = image
            .partition(job.topic_id, job.partition)
            .filter(|p| p.leader == node_id)
            .map(|p| p.leader_epoch);
        let partition = match leads == Some(job.leader_epoch) {
            true => broker.partitions.get(job.topic_id, job.partition),
            false => None,
        };
        let Some(partition) = partition else {
            results.push((job.job, AppendOutcome::NotLeader));
            flush_of.push(None);
            waits.push(None);
            continue;
        };
        let log = partition.log.clone();
        let mut wait = None;
        // A TxnOffsetCommit is a transactional batch of the producer, numbered after the last
        // batch this log holds of it (only this appender writes that producer here).
        let transactional = job.producer.map(|(producer_id, epoch)| {
            let next = log
                .producer(producer_id)
                .filter(|p| p.producer_epoch == epoch)
                .filter(|p| p.last_sequence >= 0)
                .map_or(0, |p| p.last_sequence.checked_add(1).unwrap_or(0));
            (producer_id, epoch, next)
        });
        let append = match transactional {
            Some(_) => crate::partitions::Partition::append_transactional_as_leader,
            None => crate::partitions::Partition::append_as_leader,
        };
        let result = match encode_batch_as(&job.records, transactional) {
            Err(e) => {
                error!("cannot encode {topic} records: {e:#}");
                AppendOutcome::TooLarge
            }
            Ok(batch) => match append(&partition, &batch, job.leader_epoch, true, now) {
                Ok(o) => {
                    wait = Some((partition.clone(), job.leader_epoch, o.last_offset + 1));
                    AppendOutcome::Appended
                }
                Err(LeaderAppendError::Log(e)) => log_error_result(topic, job.partition, &e),
                Err(LeaderAppendError::NotLeader) => AppendOutcome::NotLeader,
                Err(LeaderAppendError::NotEnoughReplicas { .. }) => AppendOutcome::Unavailable,
            },
        };
        waits.push(wait);
        let mut waits_on = None;
        if result == AppendOutcome::Appended && log.needs_flush_after_append() {
            let i = match to_flush.iter().position(|l| Arc::ptr_eq(l, &log)) {
                Some(i) => i,
                None => {
                    to_flush.push(log);
                    to_flush.len() - 1
                }
            };
            waits_on = Some(i);
        }
        results.push((job.job, result));
        flush_of.push(waits_on);
    }
    // One flush per partition after all of the round's appends.
    for (i, log) in to_flush.iter().enumerate() {
        if let Err(e) = crate::metrics::timed_flush(log) {
            error!("flushing {topic}: {e}");
            for (result, waits_on) in results.iter_mut().zip(&flush_of) {
                if *waits_on == Some(i) {
                    result.1 = AppendOutcome::Unavailable;
                }
            }
        }
    }
    for (result, wait) in results.iter().zip(waits.iter_mut()) {
        if result.1 != AppendOutcome::Appended {
            *wait = None;
        }
    }
    (results, waits)
}

fn log_error_result(topic: &str, partition: i32, e: &LogError) -> AppendOutcome {
    match e {
        LogError::MessageTooLarge { .. } | LogError::RecordListTooLarge(_) => {
            AppendOutcome::TooLarge
        }
        other => {
            warn!(partition, "{topic} append failed: {other}");
            AppendOutcome::Unavailable
        }
    }
}

/// One uncompressed v2 batch, no producer id, offsets 0..n-1 (the log assigns the real ones).
pub fn encode_batch(records: &[OffsetsRecord]) -> anyhow::Result<Bytes> {
    encode_batch_as(records, None)
}

/// [`encode_batch`], or with `transactional` (producer id, epoch, base sequence) a
/// transactional batch of that producer.
fn encode_batch_as(
    records: &[OffsetsRecord],
    transactional: Option<(i64, i16, i32)>,
) -> anyhow::Result<Bytes> {
    // The encoder derives the base sequence from the first record and starts a new batch when
    // offset - sequence changes: sequence base + i keeps every record in one batch (base -1:
    // no sequence).
    let (producer_id, producer_epoch, base_sequence) = transactional.unwrap_or((-1, -1, -1));
    let records: Vec<Record> = records
        .iter()
        .enumerate()
        .map(|(i, r)| Record {
            transactional: transactional.is_some(),
            control: false,
            delete_horizon: false,
            partition_leader_epoch: -1,
            producer_id,
            producer_epoch,
            timestamp_type: TimestampType::Creation,
            offset: i as i64,
            sequence: base_sequence.wrapping_add(i as i32),
            timestamp: r.timestamp_ms,
            key: Some(r.key.clone()),
            value: r.value.clone(),
            headers: Default::default(),
        })
        .collect();
    let mut buf = BytesMut::new();
    RecordBatchEncoder::encode(
        &mut buf,
        &records,
        &RecordEncodeOptions {
            version: 2,
            compression: Compression::None,
        },
    )?;
    Ok(buf.freeze())
}

// ---- Loading ---------------------------------------------------------------------------------

/// Replays each partition from its log start to its end into the coordinator, one bounded
/// step at a time, then reports it done. A cancelled load stops at its next step, unreported.
async fn run_loader(
    broker: Arc<Broker>,
    topic: &'static str,
    topic_id: TopicId,
    loads: Vec<LoadTask>,
    tx: mpsc::Sender<Report>,
) {
    for load in loads {
        let ok = load_partition(&broker, topic, topic_id, &load, &tx).await;
        if load.cancelled.load(Ordering::Relaxed) {
            continue;
        }
        let done = Report::LoadDone {
            partition: load.partition,
            load_id: load.load_id,
            ok,
        };
        if tx.send(done).await.is_err() {
            return;
        }
    }
}

async fn load_partition(
    broker: &Arc<Broker>,
    topic: &'static str,
    topic_id: TopicId,
    load: &LoadTask,
    tx: &mpsc::Sender<Report>,
) -> bool {
    let partition = load.partition;
    let Some(p) = broker.partitions.get(topic_id, partition) else {
        error!(partition, "{topic} partition log is not open");
        return false;
    };
    let log = p.log.clone();
    let (mut from, end) = (log.log_start_offset(), log.log_end_offset());
    while from < end {
        if load.cancelled.load(Ordering::Relaxed) {
            return false;
        }
        let l = log.clone();
        let step = broker
            .blocking(move || read_step(&l, topic, from, end))
            .await;
        match step {
            Ok((records, next)) => {
                assert!(next > from, "a load step must advance");
                from = next;
                let msg = Report::LoadStep {
                    partition,
                    load_id: load.load_id,
                    records,
                };
                if tx.send(msg).await.is_err() {
                    return false;
                }
            }
            Err(e) => {
                error!(partition, from, "reading {topic}: {e}");
                return false;
            }
        }
    }
    true
}

/// Records of the batches from `from`, and the offset to continue at.
type LoadStep = (Vec<LoadItem>, i64);

/// The keyed records and markers of the batches from `from`, and where the next step starts.
/// An unreadable batch is logged and skipped (its keys keep their earlier state), never a
/// panic.
fn read_step(log: &PartitionLog, topic: &str, from: i64, end: i64) -> Result<LoadStep, String> {
    let read = log
        .read(from, limits::COORDINATOR_LOAD_READ_BYTES_MAX, end)
        .map_err(|e| e.to_string())?;
    let mut buf = read.records;
    if buf.is_empty() {
        return Ok((Vec::new(), end)); // the rest was compacted away
    }
    let mut next = from;
    let mut out = Vec::new();
    while buf.len() >= BATCH_HEADER_BYTES {
        let header = BatchHeader::parse(&buf).map_err(|e| e.to_string())?;
        let size = header.total_bytes();
        if size > buf.len() {
            break;
        }
        let mut batch = buf.split_to(size);
        next = next.max(header.last_offset() + 1);
        if header.is_control() {
            if header.last_offset() < from {
                continue;
            }
            match josefine_log::control::decode_marker(&batch, &header) {
                Ok(Some(marker)) => out.push(LoadItem::Marker {
                    producer_id: header.producer_id,
                    commit: marker.commit,
                }),
                Ok(None) => {}
                Err(e) => warn!(
                    base_offset = header.base_offset,
                    "skipping an unreadable {topic} control batch: {e}"
                ),
            }
            continue;
        }
        let producer_id = header.is_transactional().then_some(header.producer_id);
        let set = RecordBatchDecoder::decode_with_custom_compression(
            &mut batch,
            Some(|b: &mut Bytes, c: Compression| -> anyhow::Result<Bytes> {
                // The coordinators write uncompressed batches and clients cannot produce here.
                match c {
                    Compression::None => Ok(b.split_off(0)),
                    other => anyhow::bail!("compressed ({other:?}) batch"),
                }
            }),
        );
        match set {
            Ok(set) => out.extend(
                set.records
                    .into_iter()
                    .filter(|r| r.offset >= from)
                    .filter_map(|r| {
                        r.key.map(|key| LoadItem::Record {
                            key,
                            value: r.value,
                            producer_id,
                        })
                    }),
            ),
            Err(e) => warn!(
                base_offset = header.base_offset,
                "skipping an unreadable {topic} batch: {e:#}"
            ),
        }
    }
    if next <= from {
        return Err(format!("no complete batch at offset {from}"));
    }
    Ok((out, next))
}

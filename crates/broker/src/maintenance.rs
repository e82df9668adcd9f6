//! Background log maintenance: retention and the log cleaner, on one thread.
//!
//! Owns: *when* retention and compaction run, never *what* they do. Every
//! `log.retention.check.interval.ms` it calls `PartitionLog::enforce_retention(now)` on every
//! hosted partition; every `log.cleaner.backoff.ms` (and straight away again while there is
//! work) it gives one bounded `PartitionLog::clean` step to the compacted partition with the
//! highest dirty ratio among those whose `cleaning_due(now)` is true, then sleeps
//! `CleanOutcome::throttle_ms(log.cleaner.io.max.bytes.per.second)` so the cleaner's disk
//! traffic stays under the limit. The decisions (which segments go, what a pass keeps) live in
//! `josefine_log`. Every `replica.high.watermark.checkpoint.interval.ms` it writes every
//! partition's high watermark to the data directory's `replication-offset-checkpoint`
//! ([`crate::partitions::PartitionRegistry::checkpoint_high_watermarks`]). Time rolls and
//! interval flushes are the server's log ticker, not this.
//!
//! Why a thread and not a tokio task: every step is blocking file I/O (unlink, fsync, segment
//! rewrites). A dedicated thread keeps that off the async workers and out of the request I/O
//! permits, and its sleeps are a condvar wait that `stop` interrupts at once.
//!
//! Must never: work on more than one partition at a time, hold a lock (registry, log) across a
//! sleep, or keep running after [`Maintenance::stop`] returns (the broker closes the logs
//! right after). A partition whose cleaning fails is skipped for [`UNCLEANABLE_RETRY_MS`]
//! rather than retried in a loop (Kafka marks it uncleanable). Errors (a full disk) are logged
//! and the schedule goes on; a panic (a broken log invariant) aborts the process, so a broker
//! never keeps serving without retention or from a log the cleaner found inconsistent.

use std::collections::HashMap;
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use josefine_log::{limits as log_limits, CleanerLimits};
use josefine_meta::TopicId;
use tracing::{error, info, warn};

use crate::broker::Broker;
use crate::clock::now_ms;
use crate::config::BrokerSettings;

/// How long a partition whose cleaning failed (storage error, a batch larger than the offset
/// map) is left alone before the cleaner tries it again. Long enough not to spin on a broken
/// disk, short enough that a fixed config takes effect without a restart.
pub const UNCLEANABLE_RETRY_MS: i64 = 300_000;

/// Longest the thread sleeps before re-reading the effective settings: a dynamic change of
/// the cleaner's settings is picked up within this (Kafka restarts its cleaner threads on
/// such a change), even when the current backoff is hours long.
pub const SETTINGS_RECHECK_MS: u64 = 1_000;

/// Kafka's `log.initial.task.delay.ms` default: the first retention pass runs this long after
/// start-up (or after one check interval, if that is shorter), not a whole interval later.
pub const RETENTION_INITIAL_DELAY_MS: u64 = 30_000;

/// Memory one offset-map entry costs in the log cleaner (see `CleanerLimits`): turns Kafka's
/// `log.cleaner.dedupe.buffer.size` (a byte budget) into a key count.
const OFFSET_MAP_ENTRY_BYTES: u64 = 48;

/// The schedule and budgets, from the broker settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MaintenanceSettings {
    /// `log.retention.check.interval.ms`
    pub retention_check_interval_ms: u64,
    /// `replica.high.watermark.checkpoint.interval.ms`
    pub high_watermark_checkpoint_interval_ms: u64,
    /// `log.cleaner.enable`
    pub cleaner_enabled: bool,
    /// `log.cleaner.backoff.ms`
    pub cleaner_backoff_ms: u64,
    /// `log.cleaner.io.max.bytes.per.second`; u64::MAX = unthrottled (Kafka's default).
    pub cleaner_io_bytes_per_second: u64,
    /// Per-call limits of `PartitionLog::clean`.
    pub cleaner_limits: CleanerLimits,
}

impl MaintenanceSettings {
    /// From the effective broker settings. The thread re-reads them before every step, so
    /// the cleaner settings Kafka lets AlterConfigs change at runtime (`log.cleaner.backoff.ms`,
    /// `log.cleaner.io.max.bytes.per.second`, `log.cleaner.dedupe.buffer.size`) take effect
    /// without a restart; `log.retention.check.interval.ms` and `log.cleaner.enable` are
    /// read-only in Kafka and only their start-up values count.
    pub fn from_broker_settings(settings: &BrokerSettings) -> MaintenanceSettings {
        MaintenanceSettings {
            retention_check_interval_ms: settings.log_retention_check_interval_ms.max(1),
            high_watermark_checkpoint_interval_ms: settings
                .replica_high_watermark_checkpoint_interval_ms
                .max(1),
            cleaner_enabled: settings.log_cleaner_enable,
            cleaner_backoff_ms: settings.log_cleaner_backoff_ms,
            cleaner_io_bytes_per_second: settings.log_cleaner_io_max_bytes_per_second,
            cleaner_limits: CleanerLimits {
                offset_map_entries_max: offset_map_entries(settings.log_cleaner_dedupe_buffer_size),
                io_bytes_max: clean_call_io_bytes(settings.log_cleaner_io_max_bytes_per_second),
            },
        }
    }
}

/// Offset-map keys that fit in a dedupe buffer of `bytes`, within the log crate's hard cap.
pub fn offset_map_entries(bytes: u64) -> usize {
    let entries = (bytes / OFFSET_MAP_ENTRY_BYTES).max(1);
    usize::try_from(entries)
        .unwrap_or(usize::MAX)
        .min(log_limits::CLEANER_OFFSET_MAP_ENTRIES_MAX)
}

/// Bytes one `clean` call may read and write: at most one second's worth of the I/O limit, so
/// the throttle pauses come often and short (as Kafka's throttler checks continuously), and
/// never more than the log crate's default budget.
pub fn clean_call_io_bytes(io_bytes_per_second: u64) -> u64 {
    let default = CleanerLimits::default().io_bytes_max;
    match io_bytes_per_second {
        0 | u64::MAX => default,
        rate => rate.min(default),
    }
}

/// The stop flag the thread sleeps on.
#[derive(Default)]
struct StopSignal {
    stopped: Mutex<bool>,
    wake: Condvar,
}

impl StopSignal {
    /// Sleeps up to `ms`; true when stop was requested (before or during the sleep).
    fn sleep(&self, ms: u64) -> bool {
        let stopped = self.stopped.lock().expect("stop lock");
        let (stopped, _) = self
            .wake
            .wait_timeout_while(stopped, Duration::from_millis(ms), |s| !*s)
            .expect("stop lock");
        *stopped
    }

    fn is_stopped(&self) -> bool {
        *self.stopped.lock().expect("stop lock")
    }

    fn stop(&self) {
        *self.stopped.lock().expect("stop lock") = true;
        self.wake.notify_all();
    }
}

/// The running maintenance thread.
pub struct Maintenance {
    signal: Arc<StopSignal>,
    thread: JoinHandle<()>,
}

impl Maintenance {
    /// Starts the thread. It holds the broker until [`Maintenance::stop`].
    pub fn start(
        broker: Arc<Broker>,
        settings: MaintenanceSettings,
    ) -> std::io::Result<Maintenance> {
        let signal = Arc::new(StopSignal::default());
        let thread = {
            let signal = signal.clone();
            std::thread::Builder::new()
                .name("log-maintenance".into())
                .spawn(move || {
                    let run = std::panic::AssertUnwindSafe(|| {
                        Scheduler::new(broker, settings, signal).run()
                    });
                    if std::panic::catch_unwind(run).is_err() {
                        // A panic here is a broken log invariant (the log crate asserts them).
                        // Carrying on without retention would fill the disk silently; serving
                        // from a log whose invariants broke is worse. Crash, recover on restart.
                        error!("log maintenance hit a broken invariant (panic above); aborting");
                        std::process::abort();
                    }
                })?
        };
        info!(
            retention_check_interval_ms = settings.retention_check_interval_ms,
            cleaner_enabled = settings.cleaner_enabled,
            cleaner_backoff_ms = settings.cleaner_backoff_ms,
            "log maintenance started"
        );
        Ok(Maintenance { signal, thread })
    }

    /// Asks the thread to stop and waits for it: it finishes the one step under way (a
    /// retention pass over one partition or one bounded clean call) and exits. Blocks.
    pub fn stop(self) {
        self.signal.stop();
        if self.thread.join().is_err() {
            warn!("the log maintenance thread panicked");
        }
    }
}

struct Scheduler {
    broker: Arc<Broker>,
    settings: MaintenanceSettings,
    signal: Arc<StopSignal>,
    /// Partitions whose last clean failed, and when they may be tried again.
    uncleanable_until_ms: HashMap<(TopicId, i32), i64>,
}

impl Scheduler {
    fn new(broker: Arc<Broker>, settings: MaintenanceSettings, signal: Arc<StopSignal>) -> Self {
        Scheduler {
            broker,
            settings,
            signal,
            uncleanable_until_ms: HashMap::new(),
        }
    }

    fn run(mut self) {
        let retention_interval = self.settings.retention_check_interval_ms.max(1) as i64;
        let first_delay_ms = RETENTION_INITIAL_DELAY_MS.min(retention_interval as u64) as i64;
        let mut next_retention_ms = now_ms() + first_delay_ms;
        let mut next_clean_ms = now_ms();
        let hw_interval = self.settings.high_watermark_checkpoint_interval_ms.max(1) as i64;
        let mut next_hw_checkpoint_ms = now_ms() + hw_interval;
        loop {
            if self.refresh_cleaner_settings() {
                // As Kafka restarts its cleaner on a reconfiguration: look for work now.
                next_clean_ms = now_ms();
            }
            let now = now_ms();
            if now >= next_hw_checkpoint_ms {
                self.broker.partitions.checkpoint_high_watermarks();
                next_hw_checkpoint_ms = now_ms() + hw_interval;
            }
            if now >= next_retention_ms {
                self.retention_pass();
                next_retention_ms = now_ms() + retention_interval;
            }
            if self.signal.is_stopped() {
                return;
            }
            if self.settings.cleaner_enabled && now_ms() >= next_clean_ms {
                let pause_ms = match self.clean_step() {
                    Some(throttle_ms) => throttle_ms,
                    None => self.settings.cleaner_backoff_ms,
                };
                next_clean_ms = now_ms().saturating_add(pause_ms.min(i64::MAX as u64) as i64);
            }
            let next = if self.settings.cleaner_enabled {
                next_retention_ms.min(next_clean_ms)
            } else {
                next_retention_ms
            }
            .min(next_hw_checkpoint_ms);
            let wait_ms = (next.saturating_sub(now_ms()).max(0) as u64).min(SETTINGS_RECHECK_MS);
            if self.signal.sleep(wait_ms) {
                return;
            }
        }
    }

    /// Picks up dynamic changes (AlterConfigs on the broker) of the cleaner's settings; true
    /// when they changed.
    fn refresh_cleaner_settings(&mut self) -> bool {
        let broker = &self.broker;
        let effective = broker
            .config
            .broker
            .effective(&broker.metadata.image(), broker.config.node_id);
        let fresh = MaintenanceSettings::from_broker_settings(&effective);
        let updated = MaintenanceSettings {
            retention_check_interval_ms: self.settings.retention_check_interval_ms,
            high_watermark_checkpoint_interval_ms: self
                .settings
                .high_watermark_checkpoint_interval_ms,
            cleaner_enabled: self.settings.cleaner_enabled,
            ..fresh
        };
        if updated != self.settings {
            info!(
                cleaner_backoff_ms = updated.cleaner_backoff_ms,
                cleaner_io_bytes_per_second = updated.cleaner_io_bytes_per_second,
                offset_map_entries = updated.cleaner_limits.offset_map_entries_max,
                "log cleaner settings changed"
            );
            self.settings = updated;
            return true;
        }
        false
    }

    /// `enforce_retention` on every hosted partition, one at a time.
    fn retention_pass(&self) {
        for p in self.broker.partitions.all() {
            if self.signal.is_stopped() {
                return;
            }
            let result = p.log.enforce_retention(now_ms());
            if let Ok(o) = &result {
                self.broker
                    .metrics
                    .storage
                    .retained(o.segments_deleted, o.bytes_deleted);
            }
            match result {
                Ok(outcome) if outcome.segments_deleted > 0 => info!(
                    topic = %p.topic,
                    partition = p.index,
                    segments = outcome.segments_deleted,
                    bytes = outcome.bytes_deleted,
                    log_start_offset = outcome.new_log_start_offset,
                    "retention deleted old segments"
                ),
                Ok(_) => {}
                Err(e) => warn!(topic = %p.topic, partition = p.index, "retention failed: {e}"),
            }
        }
    }

    /// One bounded clean call on the dirtiest partition that is due. `Some(throttle_ms)` when
    /// it ran (call again after that pause), `None` when no partition needs cleaning.
    fn clean_step(&mut self) -> Option<u64> {
        let now = now_ms();
        self.uncleanable_until_ms.retain(|_, until| *until > now);
        let candidate = self
            .broker
            .partitions
            .all()
            .into_iter()
            .filter(|p| {
                !self
                    .uncleanable_until_ms
                    .contains_key(&(p.topic_id, p.index))
            })
            .filter(|p| p.log.cleaning_due(now))
            .map(|p| (p.log.dirty_ratio(now), p))
            .max_by(|a, b| a.0.total_cmp(&b.0));
        let uncleanable = self.uncleanable_until_ms.len();
        let max_dirty = candidate.as_ref().map_or(0.0, |c| c.0);
        self.broker
            .metrics
            .storage
            .cleaner_checked(max_dirty, uncleanable);
        let (dirty_ratio, p) = candidate?;
        match p.log.clean(now, &self.settings.cleaner_limits) {
            Ok(outcome) => {
                self.broker
                    .metrics
                    .storage
                    .cleaned(outcome.bytes_read, outcome.bytes_written);
                if outcome.segments_rewritten > 0 || outcome.records_removed > 0 {
                    info!(
                        topic = %p.topic,
                        partition = p.index,
                        dirty_ratio,
                        bytes_read = outcome.bytes_read,
                        bytes_written = outcome.bytes_written,
                        records_removed = outcome.records_removed,
                        segments_rewritten = outcome.segments_rewritten,
                        more = outcome.more,
                        "log cleaner compacted"
                    );
                }
                Some(outcome.throttle_ms(self.settings.cleaner_io_bytes_per_second))
            }
            Err(e) => {
                warn!(
                    topic = %p.topic,
                    partition = p.index,
                    retry_in_ms = UNCLEANABLE_RETRY_MS,
                    "log cleaning failed: {e}"
                );
                self.uncleanable_until_ms
                    .insert((p.topic_id, p.index), now + UNCLEANABLE_RETRY_MS);
                Some(0)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stop_interrupts_a_long_sleep() {
        let signal = Arc::new(StopSignal::default());
        let sleeper = {
            let signal = signal.clone();
            std::thread::spawn(move || signal.sleep(3_600_000))
        };
        signal.stop();
        assert!(sleeper.join().unwrap(), "the sleep must report the stop");
        assert!(signal.sleep(3_600_000), "a stopped signal never sleeps");
    }

    #[test]
    fn unstopped_sleep_times_out() {
        assert!(!StopSignal::default().sleep(1));
    }

    #[test]
    fn clean_calls_stay_within_a_second_of_the_io_limit() {
        let default = CleanerLimits::default().io_bytes_max;
        assert_eq!(clean_call_io_bytes(u64::MAX), default);
        assert_eq!(clean_call_io_bytes(0), default);
        assert_eq!(clean_call_io_bytes(20_000), 20_000);
        assert_eq!(clean_call_io_bytes(default * 4), default);
    }

    #[test]
    fn dedupe_buffer_to_offset_map_entries() {
        assert_eq!(offset_map_entries(48 * 1000), 1000);
        assert_eq!(offset_map_entries(0), 1);
        assert_eq!(
            offset_map_entries(u64::MAX),
            log_limits::CLEANER_OFFSET_MAP_ENTRIES_MAX
        );
    }
}

//! Coordinator settings (Kafka's names, Kafka's defaults) and the hard limits.
//!
//! Owns every number the coordinator bounds itself by, each with the reason for its value, so
//! the limits can be reviewed in one place. Never read from the environment here: the broker
//! builds a `GroupConfig` from its own configuration and hands it in.

/// `offsets.topic.num.partitions`: partitions of `__consumer_offsets`; changing it after groups
/// exist would move them, exactly as in Kafka.
pub const OFFSETS_TOPIC_PARTITIONS_DEFAULT: i32 = 50;

/// Kafka's fixed join timeout for a brand-new member (ClassicGroupMember NEW_MEMBER_JOIN_TIMEOUT):
/// a member that joined with a fresh id but never completed the join is dropped after this.
pub const NEW_MEMBER_JOIN_TIMEOUT_MS: i64 = 5 * 60 * 1000;

/// Longest string Kafka's non-flexible record layouts can hold (int16 length prefix). Group ids,
/// member ids, client ids and topic names longer than this could not be stored.
pub const STRING_BYTES_MAX: usize = i16::MAX as usize;

/// Group coordinator configuration. Field names follow Kafka's broker settings.
#[derive(Clone, Debug)]
pub struct GroupConfig {
    /// `offsets.topic.num.partitions`.
    pub offsets_topic_partitions: i32,
    /// `group.initial.rebalance.delay.ms`: how long a new or empty group waits for more
    /// members before its first rebalance completes, to avoid a rebalance per joining member.
    pub initial_rebalance_delay_ms: i64,
    /// `group.min.session.timeout.ms`.
    pub session_timeout_min_ms: i32,
    /// `group.max.session.timeout.ms`.
    pub session_timeout_max_ms: i32,
    /// `group.max.size`. Kafka's default is unbounded; ours is bounded because every member
    /// costs memory and a pending response.
    pub group_max_size: usize,
    /// Maximum number of groups this coordinator holds. Kafka has no such limit; without one,
    /// a client looping over fresh group ids grows memory without bound.
    pub groups_max: usize,
    /// `offset.metadata.max.bytes`.
    pub offset_metadata_max_bytes: usize,
    /// `offsets.retention.minutes` in ms: offsets of empty groups older than this expire.
    pub offsets_retention_ms: i64,
    /// `offsets.retention.check.interval.ms`: how often expiry runs.
    pub offsets_retention_check_interval_ms: i64,
    /// Appends to `__consumer_offsets` awaiting `on_append_complete`. New offset commits are
    /// refused with COORDINATOR_NOT_AVAILABLE beyond this, so a stalled log cannot queue
    /// unbounded responses; the client retries.
    pub pending_appends_max: usize,
}

impl Default for GroupConfig {
    fn default() -> Self {
        GroupConfig {
            offsets_topic_partitions: OFFSETS_TOPIC_PARTITIONS_DEFAULT,
            initial_rebalance_delay_ms: 3_000,
            session_timeout_min_ms: 6_000,
            session_timeout_max_ms: 1_800_000,
            group_max_size: 1_000,
            groups_max: 10_000,
            offset_metadata_max_bytes: 4_096,
            offsets_retention_ms: 7 * 24 * 60 * 60 * 1000,
            offsets_retention_check_interval_ms: 600_000,
            pending_appends_max: 10_000,
        }
    }
}

impl GroupConfig {
    /// Checks the settings are usable; the broker should fail at startup otherwise.
    pub fn validate(&self) -> Result<(), crate::GroupError> {
        let bad = |what: &str| Err(crate::GroupError::InvalidConfig(what.to_string()));
        if self.offsets_topic_partitions <= 0 {
            return bad("offsets.topic.num.partitions must be positive");
        }
        if self.session_timeout_min_ms > self.session_timeout_max_ms {
            return bad("group.min.session.timeout.ms exceeds group.max.session.timeout.ms");
        }
        if self.offset_metadata_max_bytes > STRING_BYTES_MAX {
            return bad("offset.metadata.max.bytes exceeds what the record format can hold");
        }
        if self.group_max_size == 0 || self.groups_max == 0 || self.pending_appends_max == 0 {
            return bad("group.max.size, groups max and pending appends max must be positive");
        }
        if self.offsets_retention_check_interval_ms <= 0 || self.initial_rebalance_delay_ms < 0 {
            return bad("retention check interval must be positive and rebalance delay >= 0");
        }
        Ok(())
    }
}

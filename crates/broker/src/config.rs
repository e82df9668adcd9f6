//! Command line, environment, TOML file and Kafka-named broker settings.
//!
//! Owns: turning `josefine [serve] --flags`, `JOSEFINE_*` environment variables, an optional TOML
//! file and repeated `--set key=value` into one validated [`Config`].
//! Precedence is flag > env > file > default for every flag; for Kafka-named settings it is
//! `--set` > file `[broker]` table > Kafka's default.
//! Must never: read configuration anywhere else, or accept an unknown or ill-typed setting
//! silently. An operator who misspells `log.retention.ms` must get an error naming the key,
//! not a broker that quietly keeps data forever.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::limits;
use crate::security::SecurityConfig;

/// Flags of `josefine serve` (also accepted without the subcommand).
#[derive(Args, Debug, Clone, Default)]
pub struct ServeArgs {
    /// This broker's node id. [default: 1]
    #[arg(long, env = "JOSEFINE_NODE_ID")]
    pub node_id: Option<i32>,
    /// Directory holding partition logs and metadata. [default: ./josefine-data]
    #[arg(long, env = "JOSEFINE_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// Rack name returned in Metadata responses. [default: none]
    #[arg(long, env = "JOSEFINE_RACK")]
    pub rack: Option<String>,
    /// Address for Kafka clients. [default: 127.0.0.1:9092]
    #[arg(long, env = "JOSEFINE_LISTEN")]
    pub listen: Option<String>,
    /// host:port returned to clients in Metadata. [default: the --listen address]
    #[arg(long, env = "JOSEFINE_ADVERTISE")]
    pub advertise: Option<String>,
    /// Address for broker-to-broker (chain) traffic. [default: this node's address in
    /// --voters, else 127.0.0.1:9093]
    #[arg(long, env = "JOSEFINE_RAFT_LISTEN")]
    pub raft_listen: Option<String>,
    /// The chain's voters as ID@HOST:PORT,... by raft address; must name --node-id once.
    /// Fixed at the first start of a data directory. [default: this node alone]
    #[arg(long, env = "JOSEFINE_VOTERS")]
    pub voters: Option<String>,
    /// The cluster id a new cluster takes; a data directory of another cluster is refused.
    /// Same as --set cluster.id=ID. [default: random at the first start]
    #[arg(long, env = "JOSEFINE_CLUSTER_ID")]
    pub cluster_id: Option<String>,
    /// Address of the HTTP listener (/metrics, /health/live, /health/ready), or `off`. The
    /// default address, when taken by another process, only costs a warning; an address given
    /// explicitly must be free. [default: 127.0.0.1:9644]
    #[arg(long, env = "JOSEFINE_HTTP_LISTEN", value_name = "HOST:PORT|off")]
    pub http_listen: Option<String>,
    /// Log line format on stderr: `text` (ANSI colours only on a terminal without NO_COLOR) or
    /// `json` (one object per line). [default: text]
    #[arg(long, env = "JOSEFINE_LOG_FORMAT", value_name = "text|json")]
    pub log_format: Option<String>,
    /// The web console and JSON API on the HTTP listener: `read-write` (actions allowed; only
    /// on a loopback --http-listen, as there is no authentication yet), `read-only` (mutations
    /// answer 403) or `off`. [default: read-write on a loopback listener, else read-only]
    #[arg(
        long,
        env = "JOSEFINE_CONSOLE",
        value_name = "read-only|read-write|off"
    )]
    pub console: Option<String>,
    /// Log filter in RUST_LOG syntax, e.g. `info,josefine::replication=debug`; beats RUST_LOG.
    /// [default: RUST_LOG, else info]
    #[arg(long = "log", env = "JOSEFINE_LOG", value_name = "FILTER")]
    pub log: Option<String>,
    /// TOML file: the flags above as snake_case keys plus a [broker] table of Kafka-named settings.
    #[arg(long, env = "JOSEFINE_CONFIG")]
    pub config: Option<PathBuf>,
    /// A Kafka-named broker setting, e.g. --set num.partitions=3 (repeatable; beats the file's
    /// [broker] table). Settings and defaults (Kafka's unless noted):
    ///   num.partitions=1                  default.replication.factor=1
    ///   auto.create.topics.enable=true    min.insync.replicas=1
    ///   message.max.bytes=1048588         socket.request.max.bytes=104857600
    ///   log.segment.bytes=1073741824      log.roll.ms (or log.roll.hours=168)
    ///   log.retention.ms (or log.retention.minutes, log.retention.hours=168)
    ///   log.retention.bytes=-1            log.index.interval.bytes=4096
    ///   log.flush.interval.messages=9223372036854775807 (1 = fsync before every ack, group-committed)
    ///   log.flush.interval.ms=(unset: the OS flushes)
    ///   log.message.timestamp.type=CreateTime (or LogAppendTime)
    ///   log.message.timestamp.before.max.ms=9223372036854775807
    ///   log.message.timestamp.after.max.ms=3600000
    ///   log.cleanup.policy=delete (compact, or compact,delete)
    ///   log.retention.check.interval.ms=300000
    ///   replica.high.watermark.checkpoint.interval.ms=5000
    ///   log.cleaner.enable=true           log.cleaner.backoff.ms=15000
    ///   log.cleaner.io.max.bytes.per.second=(unlimited)
    ///   log.cleaner.dedupe.buffer.size=134217728
    ///   log.cleaner.min.cleanable.ratio=0.5
    ///   log.cleaner.delete.retention.ms=86400000
    ///   log.cleaner.min.compaction.lag.ms=0
    ///   log.cleaner.max.compaction.lag.ms=9223372036854775807
    ///   compression.type=producer (keep each batch's codec; uncompressed, gzip, snappy, lz4 or
    ///   zstd make the leader recompress)   compression.gzip.level=-1
    ///   compression.lz4.level=9 (stored; one lz4 level)   compression.zstd.level=3
    ///   offsets.topic.num.partitions=50   offsets.topic.segment.bytes=104857600
    ///   offsets.topic.replication.factor=min(3, number of voters): a single node works with
    ///   no settings, three voters get Kafka's 3 (the topic waits for that many unfenced brokers)
    ///   offsets.retention.minutes=10080   offsets.retention.check.interval.ms=600000
    ///   group.initial.rebalance.delay.ms=3000
    ///   group.min.session.timeout.ms=6000 group.max.session.timeout.ms=1800000
    ///   group.max.size=2147483647         offset.metadata.max.bytes=4096
    ///   transaction.state.log.num.partitions=50 transaction.state.log.segment.bytes=104857600
    ///   transaction.state.log.replication.factor=min(3, number of voters), as
    ///   offsets.topic.replication.factor   transaction.state.log.min.isr=min(2, that factor)
    ///   transaction.max.timeout.ms=900000 transactional.id.expiration.ms=604800000
    ///   transaction.abort.timed.out.transaction.cleanup.interval.ms=10000
    ///   transaction.remove.expired.transaction.cleanup.interval.ms=3600000
    ///   transaction.partition.verification.enable=true
    ///   broker.heartbeat.interval.ms=2000 broker.session.timeout.ms=9000
    ///   broker.session.close.grace.ms=3000 (Josefine's: a broker whose controller connection
    ///   its end closed, as a killed process's is, is fenced after this; 0 = Kafka's behaviour)
    ///   replica.lag.time.max.ms=30000     replica.fetch.wait.max.ms=500
    ///   replica.fetch.min.bytes=1         replica.fetch.max.bytes=1048576
    ///   replica.fetch.response.max.bytes=10485760  replica.fetch.backoff.ms=1000
    ///   replica.socket.timeout.ms=30000
    ///   unclean.leader.election.enable=false unclean.leader.election.interval.ms=300000
    ///   auto.leader.rebalance.enable=true leader.imbalance.check.interval.seconds=300
    ///   leader.imbalance.per.broker.percentage=10 (accepted; unused, as in Kafka's KRaft controller)
    ///   fetch.max.bytes=57671680          connections.max.idle.ms=600000
    ///   max.connections=4096 (Kafka: unlimited; Josefine always keeps a cap)
    ///   queued.max.requests=16 (Josefine: in-flight requests per connection)
    ///   cluster.id=(random on first start, then kept in the metadata log)
    /// Listeners (docs/security.md); --listen/--advertise are the shorthand for one PLAINTEXT
    /// listener and cannot be combined with `listeners`:
    ///   listeners=NAME://HOST:PORT,...    advertised.listeners=(listeners)
    ///   listener.security.protocol.map=PLAINTEXT:PLAINTEXT,SSL:SSL,SASL_PLAINTEXT:SASL_PLAINTEXT,SASL_SSL:SASL_SSL
    ///   inter.broker.listener.name=PLAINTEXT (or the only listener)
    ///   listener.name.<name>.<setting>: a per-listener value of a listener setting
    #[arg(long = "set", value_name = "KEY=VALUE", verbatim_doc_comment)]
    pub set: Vec<String>,
    /// A SCRAM credential stored at start if that user has none for that mechanism yet, in
    /// the syntax of `kafka-storage format --add-scram` (repeatable), e.g.
    /// 'SCRAM-SHA-512=[name=admin,password=admin-secret]' (also iterations=, salt=).
    #[arg(long = "add-scram", value_name = "MECHANISM=[name=...,password=...]")]
    pub add_scram: Vec<String>,
}

/// `josefine`: a Kafka-compatible broker. Running it without a subcommand means `josefine serve`.
#[derive(Parser, Debug)]
#[command(name = "josefine", version, about, long_about = None)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    #[command(flatten)]
    pub serve: ServeArgs,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run the broker (the default).
    Serve(Box<ServeArgs>),
    /// Print the supported-API table (the README's copy is checked against it).
    ApiTable,
    /// Print a running node's view of the cluster: chain leader, term, head, commit,
    /// per-voter progress, blocks collected; brokers; partitions. Exit 1 if unreachable.
    ClusterStatus {
        /// The node's raft address (its --raft-listen), HOST:PORT.
        #[arg(long, value_name = "HOST:PORT")]
        raft: String,
    },
}

impl Cli {
    /// The serve arguments, whichever way they were given.
    pub fn serve_args(self) -> ServeArgs {
        match self.command {
            Some(Command::Serve(args)) => *args,
            Some(Command::ApiTable | Command::ClusterStatus { .. }) | None => self.serve,
        }
    }
}

/// Configuration errors: always name the offending key or value.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("unknown broker setting `{0}` (see `josefine --help` for the supported Kafka-named settings)")]
    UnknownSetting(String),
    #[error("invalid value `{value}` for `{key}`: {reason}")]
    InvalidValue {
        key: String,
        value: String,
        reason: String,
    },
    #[error("`--set {0}` must have the form KEY=VALUE")]
    BadSetSyntax(String),
    #[error("cannot read config file {path}: {source}")]
    ReadFile {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config file {path}: {message}")]
    ParseFile { path: PathBuf, message: String },
    #[error("unknown key `{0}` in config file (expected node_id, data_dir, rack, listen, advertise, raft_listen, voters, cluster_id, http_listen, console, log_format, log or a [broker] table)")]
    UnknownFileKey(String),
    #[error("invalid address `{value}` for {key}: {reason}")]
    BadAddress {
        key: String,
        value: String,
        reason: String,
    },
    #[error("invalid voters `{voters}`: {reason}")]
    BadVoters { voters: String, reason: String },
}

/// How record timestamps are assigned (Kafka `log.message.timestamp.type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimestampKind {
    CreateTime,
    LogAppendTime,
}

/// Kafka-named broker settings, typed. Field docs give the Kafka name.
#[derive(Debug, Clone, PartialEq)]
pub struct BrokerSettings {
    /// num.partitions: partitions of auto-created topics and CreateTopics with -1.
    pub num_partitions: i32,
    /// default.replication.factor
    pub default_replication_factor: i16,
    /// auto.create.topics.enable
    pub auto_create_topics_enable: bool,
    /// min.insync.replicas
    pub min_insync_replicas: i32,
    /// message.max.bytes: largest record batch accepted, after compression.
    pub message_max_bytes: u32,
    /// log.segment.bytes
    pub log_segment_bytes: u64,
    /// log.roll.ms (or log.roll.hours)
    pub log_roll_ms: i64,
    /// log.retention.ms (or .minutes/.hours); -1 = unlimited
    pub log_retention_ms: i64,
    /// log.retention.bytes; -1 = unlimited
    pub log_retention_bytes: i64,
    /// log.index.interval.bytes
    pub log_index_interval_bytes: u32,
    /// log.flush.interval.messages; 1 = fsync (group-committed) before acknowledging each append
    pub log_flush_interval_messages: u64,
    /// log.flush.interval.ms; None = leave flushing to the OS (Kafka's default)
    pub log_flush_interval_ms: Option<i64>,
    /// log.message.timestamp.type
    pub log_message_timestamp_type: TimestampKind,
    /// socket.request.max.bytes: largest request frame accepted, checked before allocating.
    pub socket_request_max_bytes: u32,
    /// fetch.max.bytes: cap on one Fetch response's record bytes.
    pub fetch_max_bytes: u32,
    /// connections.max.idle.ms: idle client connections are closed after this.
    pub connections_max_idle_ms: u64,
    /// max.connections: concurrent client connections.
    pub max_connections: u32,
    /// queued.max.requests: in-flight requests per connection (Josefine meaning, see --help).
    pub queued_max_requests: u32,
    /// cluster.id: None = generated on first start and kept in the data dir.
    pub cluster_id: Option<String>,
    /// log.message.timestamp.before.max.ms
    pub log_message_timestamp_before_max_ms: i64,
    /// log.message.timestamp.after.max.ms
    pub log_message_timestamp_after_max_ms: i64,
    /// log.cleanup.policy: the default `cleanup.policy` of topics.
    pub log_cleanup_policy: josefine_log::CleanupPolicy,
    /// log.retention.check.interval.ms: how often background retention runs.
    pub log_retention_check_interval_ms: u64,
    /// replica.high.watermark.checkpoint.interval.ms: how often every partition's high
    /// watermark is written to `replication-offset-checkpoint`.
    pub replica_high_watermark_checkpoint_interval_ms: u64,
    /// log.cleaner.enable
    pub log_cleaner_enable: bool,
    /// log.cleaner.backoff.ms: sleep of the cleaner when no log needs cleaning.
    pub log_cleaner_backoff_ms: u64,
    /// log.cleaner.io.max.bytes.per.second (Kafka: a double); u64::MAX = unlimited.
    pub log_cleaner_io_max_bytes_per_second: u64,
    /// log.cleaner.dedupe.buffer.size: memory of the cleaner's offset map.
    pub log_cleaner_dedupe_buffer_size: u64,
    /// log.cleaner.min.cleanable.ratio: the default `min.cleanable.dirty.ratio`.
    pub log_cleaner_min_cleanable_ratio: f64,
    /// log.cleaner.delete.retention.ms: the default `delete.retention.ms`.
    pub log_cleaner_delete_retention_ms: i64,
    /// log.cleaner.min.compaction.lag.ms: the default `min.compaction.lag.ms`.
    pub log_cleaner_min_compaction_lag_ms: i64,
    /// log.cleaner.max.compaction.lag.ms: the default `max.compaction.lag.ms`.
    pub log_cleaner_max_compaction_lag_ms: i64,
    /// offsets.topic.num.partitions
    pub offsets_topic_num_partitions: i32,
    /// offsets.topic.segment.bytes
    pub offsets_topic_segment_bytes: u64,
    /// offsets.topic.replication.factor: default min(3, number of chain voters); the offsets
    /// topic is created only once that many brokers are unfenced, never with fewer replicas
    pub offsets_topic_replication_factor: i16,
    /// offsets.retention.minutes
    pub offsets_retention_minutes: i64,
    /// offsets.retention.check.interval.ms
    pub offsets_retention_check_interval_ms: u64,
    /// group.initial.rebalance.delay.ms
    pub group_initial_rebalance_delay_ms: u64,
    /// group.min.session.timeout.ms
    pub group_min_session_timeout_ms: u64,
    /// group.max.session.timeout.ms
    pub group_max_session_timeout_ms: u64,
    /// group.max.size: members per group.
    pub group_max_size: u32,
    /// transaction.state.log.num.partitions
    pub transaction_state_log_num_partitions: i32,
    /// transaction.state.log.replication.factor: default min(3, number of chain voters), the
    /// rule of `offsets.topic.replication.factor`
    pub transaction_state_log_replication_factor: i16,
    /// transaction.state.log.min.isr: default min(2, the replication factor)
    pub transaction_state_log_min_isr: i16,
    /// transaction.state.log.segment.bytes
    pub transaction_state_log_segment_bytes: u64,
    /// transaction.max.timeout.ms: the longest `transaction.timeout.ms` a producer may ask for
    pub transaction_max_timeout_ms: i32,
    /// transactional.id.expiration.ms
    pub transactional_id_expiration_ms: i64,
    /// transaction.abort.timed.out.transaction.cleanup.interval.ms
    pub transaction_abort_timed_out_transaction_cleanup_interval_ms: i64,
    /// transaction.remove.expired.transaction.cleanup.interval.ms
    pub transaction_remove_expired_transaction_cleanup_interval_ms: i64,
    /// transaction.partition.verification.enable (KIP-890 part 1)
    pub transaction_partition_verification_enable: bool,
    /// broker.heartbeat.interval.ms: how often a broker heartbeats to the controller.
    pub broker_heartbeat_interval_ms: u64,
    /// broker.session.timeout.ms: a broker silent this long is fenced by the controller.
    pub broker_session_timeout_ms: u64,
    /// broker.session.close.grace.ms (Josefine's, not Kafka's): a broker whose session
    /// connection to the controller was closed by its end (EOF or reset: a killed process) is
    /// fenced this long after the close unless it heartbeats again; 0 turns it off (only the
    /// session timeout fences, as in Kafka). Meant to exceed the heartbeat interval.
    pub broker_session_close_grace_ms: u64,
    /// offset.metadata.max.bytes: longest commit metadata string.
    pub offset_metadata_max_bytes: u32,
    /// replica.lag.time.max.ms: a follower not caught up with the leader's log end for this
    /// long is removed from the ISR.
    pub replica_lag_time_max_ms: i64,
    /// replica.fetch.wait.max.ms: how long a follower's fetch may park on the leader.
    pub replica_fetch_wait_max_ms: i32,
    /// replica.fetch.min.bytes: bytes a follower's fetch waits for.
    pub replica_fetch_min_bytes: i32,
    /// replica.fetch.max.bytes: record bytes a follower asks for per partition.
    pub replica_fetch_max_bytes: i32,
    /// replica.fetch.response.max.bytes: record bytes a follower asks for per fetch.
    pub replica_fetch_response_max_bytes: i32,
    /// replica.fetch.backoff.ms: pause of a follower's fetcher after an error.
    pub replica_fetch_backoff_ms: u64,
    /// replica.socket.timeout.ms: a follower's fetch waits this long (beyond its
    /// `replica.fetch.wait.max.ms`) for the leader's answer before reconnecting.
    pub replica_socket_timeout_ms: u64,
    /// unclean.leader.election.enable: the controller may elect a leader outside the ISR
    /// (topic config and cluster-wide dynamic config override it).
    pub unclean_leader_election_enable: bool,
    /// unclean.leader.election.interval.ms: the controller's periodic unclean election round.
    pub unclean_leader_election_interval_ms: u64,
    /// auto.leader.rebalance.enable: the controller moves leadership back to preferred replicas.
    pub auto_leader_rebalance_enable: bool,
    /// leader.imbalance.check.interval.seconds: how often it does.
    pub leader_imbalance_check_interval_seconds: u64,
    /// leader.imbalance.per.broker.percentage: accepted and reported; Kafka's KRaft controller
    /// (like Josefine's) rebalances every imbalanced partition and does not read it.
    pub leader_imbalance_per_broker_percentage: u32,
    /// compression.type and compression.{gzip,lz4,zstd}.level: the default of topics.
    pub compression: josefine_log::recompress::CompressionConfig,
    /// authorizer.class.name: empty (no authorizer: everything allowed, the ACL APIs answer
    /// SECURITY_DISABLED) or [`STANDARD_AUTHORIZER`], which turns ACL enforcement on.
    pub authorizer_enabled: bool,
    /// super.users (`User:a;User:b`) and allow.everyone.if.no.acl.found, as the decision in
    /// `josefine_meta::acl` takes them.
    pub authorizer: josefine_meta::acl::AuthorizerSettings,
    /// The Kafka-named settings given by `--set` or the file, as given (DescribeConfigs reports
    /// them as STATIC_BROKER_CONFIG; dynamic configs are resolved on top of them).
    pub static_values: BTreeMap<String, String>,
}

const HOUR_MS: i64 = 60 * 60 * 1000;

/// The one `authorizer.class.name` accepted: Kafka's KRaft authorizer, whose rules
/// `josefine_meta::acl` implements.
pub const STANDARD_AUTHORIZER: &str = "org.apache.kafka.metadata.authorizer.StandardAuthorizer";

impl Default for BrokerSettings {
    fn default() -> Self {
        BrokerSettings {
            num_partitions: 1,
            default_replication_factor: 1,
            auto_create_topics_enable: true,
            min_insync_replicas: 1,
            message_max_bytes: 1_048_588,
            log_segment_bytes: 1 << 30,
            log_roll_ms: 168 * HOUR_MS,
            log_retention_ms: 168 * HOUR_MS,
            log_retention_bytes: -1,
            log_index_interval_bytes: 4096,
            log_flush_interval_messages: i64::MAX as u64,
            log_flush_interval_ms: None,
            log_message_timestamp_type: TimestampKind::CreateTime,
            socket_request_max_bytes: limits::REQUEST_BYTES_MAX_DEFAULT,
            fetch_max_bytes: 57_671_680,
            connections_max_idle_ms: 600_000,
            max_connections: limits::CONNECTIONS_MAX_DEFAULT,
            queued_max_requests: limits::IN_FLIGHT_REQUESTS_PER_CONNECTION_DEFAULT,
            cluster_id: None,
            log_message_timestamp_before_max_ms: i64::MAX,
            log_message_timestamp_after_max_ms: HOUR_MS,
            log_cleanup_policy: josefine_log::CleanupPolicy::Delete,
            log_retention_check_interval_ms: 300_000,
            replica_high_watermark_checkpoint_interval_ms: 5_000,
            log_cleaner_enable: true,
            log_cleaner_backoff_ms: 15_000,
            log_cleaner_io_max_bytes_per_second: u64::MAX,
            log_cleaner_dedupe_buffer_size: 134_217_728,
            log_cleaner_min_cleanable_ratio: 0.5,
            log_cleaner_delete_retention_ms: 86_400_000,
            log_cleaner_min_compaction_lag_ms: 0,
            log_cleaner_max_compaction_lag_ms: i64::MAX,
            offsets_topic_num_partitions: 50,
            offsets_topic_segment_bytes: 104_857_600,
            offsets_topic_replication_factor: 3,
            offsets_retention_minutes: 10_080,
            offsets_retention_check_interval_ms: 600_000,
            group_initial_rebalance_delay_ms: 3_000,
            group_min_session_timeout_ms: 6_000,
            group_max_session_timeout_ms: 1_800_000,
            group_max_size: i32::MAX as u32,
            transaction_state_log_num_partitions: 50,
            transaction_state_log_replication_factor: 3,
            transaction_state_log_min_isr: 2,
            transaction_state_log_segment_bytes: 104_857_600,
            transaction_max_timeout_ms: 900_000,
            transactional_id_expiration_ms: 604_800_000,
            transaction_abort_timed_out_transaction_cleanup_interval_ms: 10_000,
            transaction_remove_expired_transaction_cleanup_interval_ms: 3_600_000,
            transaction_partition_verification_enable: true,
            broker_heartbeat_interval_ms: 2_000,
            broker_session_timeout_ms: 9_000,
            broker_session_close_grace_ms: 3_000,
            replica_lag_time_max_ms: 30_000,
            replica_fetch_wait_max_ms: 500,
            replica_fetch_min_bytes: 1,
            replica_fetch_max_bytes: 1_048_576,
            replica_fetch_response_max_bytes: 10_485_760,
            replica_fetch_backoff_ms: 1_000,
            replica_socket_timeout_ms: 30_000,
            offset_metadata_max_bytes: 4_096,
            unclean_leader_election_enable: false,
            unclean_leader_election_interval_ms: 300_000,
            auto_leader_rebalance_enable: true,
            leader_imbalance_check_interval_seconds: 300,
            leader_imbalance_per_broker_percentage: 10,
            compression: josefine_log::recompress::CompressionConfig::default(),
            authorizer_enabled: false,
            authorizer: josefine_meta::acl::AuthorizerSettings::default(),
            static_values: BTreeMap::new(),
        }
    }
}

fn invalid(key: &str, value: &str, reason: impl Into<String>) -> ConfigError {
    ConfigError::InvalidValue {
        key: key.to_string(),
        value: value.to_string(),
        reason: reason.into(),
    }
}

fn parse_int<T: std::str::FromStr + PartialOrd + Copy + std::fmt::Display>(
    key: &str,
    value: &str,
    min: T,
    max: T,
) -> Result<T, ConfigError> {
    let parsed: T = value
        .trim()
        .parse()
        .map_err(|_| invalid(key, value, "not an integer in range"))?;
    if parsed < min || parsed > max {
        return Err(invalid(
            key,
            value,
            format!("must be between {min} and {max}"),
        ));
    }
    Ok(parsed)
}

fn parse_double(key: &str, value: &str, min: f64, max: f64) -> Result<f64, ConfigError> {
    match value.trim().parse::<f64>() {
        Ok(x) if x >= min && x <= max => Ok(x),
        _ => Err(invalid(
            key,
            value,
            format!("expected a number between {min} and {max}"),
        )),
    }
}

fn parse_bool(key: &str, value: &str) -> Result<bool, ConfigError> {
    match value.trim().to_ascii_lowercase().as_str() {
        "true" => Ok(true),
        "false" => Ok(false),
        _ => Err(invalid(key, value, "expected true or false")),
    }
}

/// Applies Kafka-named settings to the defaults, coarse units first so `log.retention.ms` wins
/// over `.hours` (and `.minutes`) whichever source gave which, as in Kafka.
fn resolve_values(values: &BTreeMap<String, String>) -> Result<BrokerSettings, ConfigError> {
    let order = |k: &str| match k {
        "log.retention.hours" | "log.roll.hours" => 0,
        "log.retention.minutes" => 1,
        _ => 2,
    };
    let mut ordered: Vec<_> = values.iter().collect();
    ordered.sort_by_key(|(k, _)| order(k));
    let mut settings = BrokerSettings::default();
    for (k, v) in ordered {
        settings.set(k, v)?;
    }
    Ok(settings)
}

impl BrokerSettings {
    /// Settings from the static Kafka-named values (`--set` and the file's `[broker]` table).
    pub fn from_static(values: BTreeMap<String, String>) -> Result<BrokerSettings, ConfigError> {
        let mut settings = resolve_values(&values)?;
        settings.static_values = values;
        Ok(settings)
    }

    /// The value of a Kafka-named setting as DescribeConfigs shows it (`None` for an unset
    /// optional one). Alternate-unit keys (`log.retention.hours`, ...) show what was given, or
    /// Kafka's default.
    pub fn value_of(&self, key: &str) -> Option<String> {
        let given = || self.static_values.get(key).cloned();
        Some(match key {
            "num.partitions" => self.num_partitions.to_string(),
            "default.replication.factor" => self.default_replication_factor.to_string(),
            "auto.create.topics.enable" => self.auto_create_topics_enable.to_string(),
            "min.insync.replicas" => self.min_insync_replicas.to_string(),
            "message.max.bytes" => self.message_max_bytes.to_string(),
            "log.segment.bytes" => self.log_segment_bytes.to_string(),
            "log.roll.ms" => self.log_roll_ms.to_string(),
            "log.roll.hours" => given().unwrap_or_else(|| "168".into()),
            "log.retention.ms" => self.log_retention_ms.to_string(),
            "log.retention.minutes" => return given(),
            "log.retention.hours" => given().unwrap_or_else(|| "168".into()),
            "log.retention.bytes" => self.log_retention_bytes.to_string(),
            "log.index.interval.bytes" => self.log_index_interval_bytes.to_string(),
            "log.flush.interval.messages" => self.log_flush_interval_messages.to_string(),
            "log.flush.interval.ms" => return self.log_flush_interval_ms.map(|v| v.to_string()),
            "log.message.timestamp.type" => match self.log_message_timestamp_type {
                TimestampKind::CreateTime => "CreateTime".into(),
                TimestampKind::LogAppendTime => "LogAppendTime".into(),
            },
            "socket.request.max.bytes" => self.socket_request_max_bytes.to_string(),
            "fetch.max.bytes" => self.fetch_max_bytes.to_string(),
            "connections.max.idle.ms" => self.connections_max_idle_ms.to_string(),
            "max.connections" => self.max_connections.to_string(),
            "queued.max.requests" => self.queued_max_requests.to_string(),
            "cluster.id" => return self.cluster_id.clone(),
            "log.message.timestamp.before.max.ms" => {
                self.log_message_timestamp_before_max_ms.to_string()
            }
            "log.message.timestamp.after.max.ms" => {
                self.log_message_timestamp_after_max_ms.to_string()
            }
            "log.cleanup.policy" => self.log_cleanup_policy.as_str().into(),
            "log.retention.check.interval.ms" => self.log_retention_check_interval_ms.to_string(),
            "replica.high.watermark.checkpoint.interval.ms" => self
                .replica_high_watermark_checkpoint_interval_ms
                .to_string(),
            "log.cleaner.enable" => self.log_cleaner_enable.to_string(),
            "log.cleaner.backoff.ms" => self.log_cleaner_backoff_ms.to_string(),
            "log.cleaner.io.max.bytes.per.second" => {
                match self.log_cleaner_io_max_bytes_per_second {
                    u64::MAX => "1.7976931348623157E308".into(),
                    v => format!("{v}.0"),
                }
            }
            "log.cleaner.dedupe.buffer.size" => self.log_cleaner_dedupe_buffer_size.to_string(),
            "log.cleaner.min.cleanable.ratio" => {
                format!("{:?}", self.log_cleaner_min_cleanable_ratio)
            }
            "log.cleaner.delete.retention.ms" => self.log_cleaner_delete_retention_ms.to_string(),
            "log.cleaner.min.compaction.lag.ms" => {
                self.log_cleaner_min_compaction_lag_ms.to_string()
            }
            "log.cleaner.max.compaction.lag.ms" => {
                self.log_cleaner_max_compaction_lag_ms.to_string()
            }
            "compression.type" => self.compression.codec_name().into(),
            "compression.gzip.level" => self.compression.gzip_level.to_string(),
            "compression.lz4.level" => self.compression.lz4_level.to_string(),
            "compression.zstd.level" => self.compression.zstd_level.to_string(),
            "offsets.topic.num.partitions" => self.offsets_topic_num_partitions.to_string(),
            "offsets.topic.segment.bytes" => self.offsets_topic_segment_bytes.to_string(),
            "offsets.topic.replication.factor" => self.offsets_topic_replication_factor.to_string(),
            "offsets.retention.minutes" => self.offsets_retention_minutes.to_string(),
            "offsets.retention.check.interval.ms" => {
                self.offsets_retention_check_interval_ms.to_string()
            }
            "group.initial.rebalance.delay.ms" => self.group_initial_rebalance_delay_ms.to_string(),
            "group.min.session.timeout.ms" => self.group_min_session_timeout_ms.to_string(),
            "group.max.session.timeout.ms" => self.group_max_session_timeout_ms.to_string(),
            "group.max.size" => self.group_max_size.to_string(),
            "transaction.state.log.num.partitions" => {
                self.transaction_state_log_num_partitions.to_string()
            }
            "transaction.state.log.replication.factor" => {
                self.transaction_state_log_replication_factor.to_string()
            }
            "transaction.state.log.min.isr" => self.transaction_state_log_min_isr.to_string(),
            "transaction.state.log.segment.bytes" => {
                self.transaction_state_log_segment_bytes.to_string()
            }
            "transaction.max.timeout.ms" => self.transaction_max_timeout_ms.to_string(),
            "transactional.id.expiration.ms" => self.transactional_id_expiration_ms.to_string(),
            "transaction.abort.timed.out.transaction.cleanup.interval.ms" => self
                .transaction_abort_timed_out_transaction_cleanup_interval_ms
                .to_string(),
            "transaction.remove.expired.transaction.cleanup.interval.ms" => self
                .transaction_remove_expired_transaction_cleanup_interval_ms
                .to_string(),
            "transaction.partition.verification.enable" => {
                self.transaction_partition_verification_enable.to_string()
            }
            "broker.heartbeat.interval.ms" => self.broker_heartbeat_interval_ms.to_string(),
            "broker.session.timeout.ms" => self.broker_session_timeout_ms.to_string(),
            "broker.session.close.grace.ms" => self.broker_session_close_grace_ms.to_string(),
            "offset.metadata.max.bytes" => self.offset_metadata_max_bytes.to_string(),
            "replica.lag.time.max.ms" => self.replica_lag_time_max_ms.to_string(),
            "replica.fetch.wait.max.ms" => self.replica_fetch_wait_max_ms.to_string(),
            "replica.fetch.min.bytes" => self.replica_fetch_min_bytes.to_string(),
            "replica.fetch.max.bytes" => self.replica_fetch_max_bytes.to_string(),
            "replica.fetch.response.max.bytes" => self.replica_fetch_response_max_bytes.to_string(),
            "replica.fetch.backoff.ms" => self.replica_fetch_backoff_ms.to_string(),
            "replica.socket.timeout.ms" => self.replica_socket_timeout_ms.to_string(),
            "unclean.leader.election.enable" => self.unclean_leader_election_enable.to_string(),
            "unclean.leader.election.interval.ms" => {
                self.unclean_leader_election_interval_ms.to_string()
            }
            "auto.leader.rebalance.enable" => self.auto_leader_rebalance_enable.to_string(),
            "leader.imbalance.check.interval.seconds" => {
                self.leader_imbalance_check_interval_seconds.to_string()
            }
            "leader.imbalance.per.broker.percentage" => {
                self.leader_imbalance_per_broker_percentage.to_string()
            }
            "authorizer.class.name" if self.authorizer_enabled => STANDARD_AUTHORIZER.into(),
            "authorizer.class.name" => String::new(),
            "super.users" => given().unwrap_or_default(),
            "allow.everyone.if.no.acl.found" => {
                self.authorizer.allow_everyone_if_no_acl_found.to_string()
            }
            _ => return None,
        })
    }

    /// Kafka's type of a Kafka-named broker setting (DescribeConfigs `config_type`).
    pub fn config_type(key: &str) -> josefine_meta::topic_config::ConfigType {
        use josefine_meta::topic_config::ConfigType as T;
        match key {
            "auto.create.topics.enable"
            | "log.cleaner.enable"
            | "unclean.leader.election.enable"
            | "auto.leader.rebalance.enable"
            | "transaction.partition.verification.enable"
            | "allow.everyone.if.no.acl.found" => T::Boolean,
            "authorizer.class.name" | "super.users" => T::String,
            "log.message.timestamp.type" | "compression.type" | "cluster.id" => T::String,
            "log.cleanup.policy" => T::List,
            "log.cleaner.io.max.bytes.per.second" | "log.cleaner.min.cleanable.ratio" => T::Double,
            "num.partitions"
            | "compression.gzip.level"
            | "compression.lz4.level"
            | "compression.zstd.level"
            | "default.replication.factor"
            | "min.insync.replicas"
            | "message.max.bytes"
            | "log.segment.bytes"
            | "log.roll.hours"
            | "log.retention.minutes"
            | "log.retention.hours"
            | "log.index.interval.bytes"
            | "socket.request.max.bytes"
            | "fetch.max.bytes"
            | "max.connections"
            | "queued.max.requests"
            | "offsets.topic.num.partitions"
            | "offsets.topic.segment.bytes"
            | "offsets.topic.replication.factor"
            | "offsets.retention.minutes"
            | "group.initial.rebalance.delay.ms"
            | "group.min.session.timeout.ms"
            | "group.max.session.timeout.ms"
            | "group.max.size"
            | "transaction.state.log.num.partitions"
            | "transaction.state.log.replication.factor"
            | "transaction.state.log.min.isr"
            | "transaction.state.log.segment.bytes"
            | "transaction.max.timeout.ms"
            | "transactional.id.expiration.ms"
            | "transaction.abort.timed.out.transaction.cleanup.interval.ms"
            | "transaction.remove.expired.transaction.cleanup.interval.ms"
            | "offset.metadata.max.bytes"
            | "broker.heartbeat.interval.ms"
            | "broker.session.timeout.ms"
            | "broker.session.close.grace.ms"
            | "replica.fetch.wait.max.ms"
            | "replica.fetch.min.bytes"
            | "replica.fetch.max.bytes"
            | "replica.fetch.response.max.bytes"
            | "replica.fetch.backoff.ms"
            | "replica.socket.timeout.ms" => T::Int,
            "leader.imbalance.per.broker.percentage" => T::Int,
            _ => T::Long,
        }
    }

    /// The effective settings of broker `node_id` under the image's dynamic broker configs:
    /// per-broker dynamic > cluster-default dynamic > static > Kafka default. A dynamic value
    /// this broker cannot parse (the metadata image validated it, so only a version skew could
    /// cause that) is skipped, keeping the lower layer, rather than failing the broker.
    pub fn effective(&self, image: &josefine_meta::Image, node_id: i32) -> BrokerSettings {
        let own = image.broker_configs.get(&node_id);
        if image.cluster_broker_configs.is_empty() && own.is_none() {
            return self.clone();
        }
        let mut values = self.static_values.clone();
        for layer in std::iter::once(&image.cluster_broker_configs).chain(own) {
            for (k, v) in layer {
                if !josefine_meta::broker_config::is_honoured(k) {
                    continue; // a Kafka dynamic config Josefine stores but does not act on
                }
                let mut probe = BrokerSettings::default();
                if probe.set(k, v).is_ok() {
                    values.insert(k.clone(), v.clone());
                } else {
                    tracing::warn!(key = %k, value = %v, "ignoring a dynamic broker config this broker cannot apply");
                }
            }
        }
        let mut settings = resolve_values(&values).unwrap_or_else(|_| self.clone());
        settings.static_values = self.static_values.clone();
        settings
    }

    /// Every accepted Kafka-named key, for error messages and docs.
    pub const KEYS: &'static [&'static str] = &[
        "num.partitions",
        "default.replication.factor",
        "auto.create.topics.enable",
        "min.insync.replicas",
        "message.max.bytes",
        "log.segment.bytes",
        "log.roll.ms",
        "log.roll.hours",
        "log.retention.ms",
        "log.retention.minutes",
        "log.retention.hours",
        "log.retention.bytes",
        "log.index.interval.bytes",
        "log.flush.interval.messages",
        "log.flush.interval.ms",
        "log.message.timestamp.type",
        "socket.request.max.bytes",
        "fetch.max.bytes",
        "connections.max.idle.ms",
        "max.connections",
        "queued.max.requests",
        "cluster.id",
        "log.message.timestamp.before.max.ms",
        "log.message.timestamp.after.max.ms",
        "log.cleanup.policy",
        "log.retention.check.interval.ms",
        "replica.high.watermark.checkpoint.interval.ms",
        "log.cleaner.enable",
        "log.cleaner.backoff.ms",
        "log.cleaner.io.max.bytes.per.second",
        "log.cleaner.dedupe.buffer.size",
        "log.cleaner.min.cleanable.ratio",
        "log.cleaner.delete.retention.ms",
        "log.cleaner.min.compaction.lag.ms",
        "log.cleaner.max.compaction.lag.ms",
        "compression.type",
        "compression.gzip.level",
        "compression.lz4.level",
        "compression.zstd.level",
        "offsets.topic.num.partitions",
        "offsets.topic.segment.bytes",
        "offsets.topic.replication.factor",
        "offsets.retention.minutes",
        "offsets.retention.check.interval.ms",
        "group.initial.rebalance.delay.ms",
        "group.min.session.timeout.ms",
        "group.max.session.timeout.ms",
        "group.max.size",
        "transaction.state.log.num.partitions",
        "transaction.state.log.replication.factor",
        "transaction.state.log.min.isr",
        "transaction.state.log.segment.bytes",
        "transaction.max.timeout.ms",
        "transactional.id.expiration.ms",
        "transaction.abort.timed.out.transaction.cleanup.interval.ms",
        "transaction.remove.expired.transaction.cleanup.interval.ms",
        "transaction.partition.verification.enable",
        "offset.metadata.max.bytes",
        "broker.heartbeat.interval.ms",
        "broker.session.timeout.ms",
        "broker.session.close.grace.ms",
        "replica.lag.time.max.ms",
        "replica.fetch.wait.max.ms",
        "replica.fetch.min.bytes",
        "replica.fetch.max.bytes",
        "replica.fetch.response.max.bytes",
        "replica.fetch.backoff.ms",
        "replica.socket.timeout.ms",
        "unclean.leader.election.enable",
        "unclean.leader.election.interval.ms",
        "auto.leader.rebalance.enable",
        "leader.imbalance.check.interval.seconds",
        "leader.imbalance.per.broker.percentage",
        "authorizer.class.name",
        "super.users",
        "allow.everyone.if.no.acl.found",
    ];

    /// Sets one Kafka-named setting from its string form. Unknown keys and bad values are errors.
    pub fn set(&mut self, key: &str, value: &str) -> Result<(), ConfigError> {
        let v = value;
        match key {
            "num.partitions" => {
                self.num_partitions = parse_int(key, v, 1, limits::PARTITIONS_PER_TOPIC_MAX)?
            }
            "default.replication.factor" => {
                self.default_replication_factor = parse_int(key, v, 1, i16::MAX)?
            }
            "auto.create.topics.enable" => self.auto_create_topics_enable = parse_bool(key, v)?,
            "min.insync.replicas" => self.min_insync_replicas = parse_int(key, v, 1, i32::MAX)?,
            "message.max.bytes" => self.message_max_bytes = parse_int(key, v, 0, i32::MAX as u32)?,
            "log.segment.bytes" => {
                // Kafka 4.1's floor is 1 MiB; the log's own 1 KiB floor is kept for tests.
                self.log_segment_bytes = parse_int(
                    key,
                    v,
                    josefine_log::limits::SEGMENT_BYTES_MIN,
                    i32::MAX as u64,
                )?
            }
            "log.roll.ms" => self.log_roll_ms = parse_int(key, v, 1, i64::MAX)?,
            "log.roll.hours" => {
                self.log_roll_ms = parse_int(key, v, 1, i64::MAX / HOUR_MS)? * HOUR_MS
            }
            "log.retention.ms" => self.log_retention_ms = parse_int(key, v, -1, i64::MAX)?,
            "log.retention.minutes" => {
                let minutes: i64 = parse_int(key, v, -1, i64::MAX / 60_000)?;
                self.log_retention_ms = if minutes < 0 { -1 } else { minutes * 60_000 };
            }
            "log.retention.hours" => {
                let hours: i64 = parse_int(key, v, -1, i64::MAX / HOUR_MS)?;
                self.log_retention_ms = if hours < 0 { -1 } else { hours * HOUR_MS };
            }
            "log.retention.bytes" => self.log_retention_bytes = parse_int(key, v, -1, i64::MAX)?,
            "log.index.interval.bytes" => {
                self.log_index_interval_bytes = parse_int(key, v, 0, i32::MAX as u32)?
            }
            "log.flush.interval.messages" => {
                self.log_flush_interval_messages = parse_int(key, v, 1, i64::MAX as u64)?
            }
            "log.flush.interval.ms" => {
                self.log_flush_interval_ms = Some(parse_int(key, v, 0, i64::MAX)?)
            }
            "log.message.timestamp.type" => {
                self.log_message_timestamp_type = match v.trim() {
                    "CreateTime" => TimestampKind::CreateTime,
                    "LogAppendTime" => TimestampKind::LogAppendTime,
                    _ => return Err(invalid(key, v, "expected CreateTime or LogAppendTime")),
                }
            }
            "socket.request.max.bytes" => {
                self.socket_request_max_bytes =
                    parse_int(key, v, 1, limits::REQUEST_BYTES_MAX_CEILING)?
            }
            "fetch.max.bytes" => self.fetch_max_bytes = parse_int(key, v, 1024, i32::MAX as u32)?,
            "connections.max.idle.ms" => {
                self.connections_max_idle_ms = parse_int(key, v, 1, u64::MAX / 2)?
            }
            "max.connections" => {
                self.max_connections = parse_int(key, v, 1, limits::CONNECTIONS_MAX_CEILING)?
            }
            "queued.max.requests" => {
                self.queued_max_requests =
                    parse_int(key, v, 1, limits::IN_FLIGHT_REQUESTS_PER_CONNECTION_CEILING)?
            }
            "cluster.id" => {
                let id = v.trim();
                if id.is_empty() || id.len() > 64 {
                    return Err(invalid(key, v, "must be 1 to 64 characters"));
                }
                self.cluster_id = Some(id.to_string());
            }
            "log.message.timestamp.before.max.ms" => {
                self.log_message_timestamp_before_max_ms = parse_int(key, v, 0, i64::MAX)?
            }
            "log.message.timestamp.after.max.ms" => {
                self.log_message_timestamp_after_max_ms = parse_int(key, v, 0, i64::MAX)?
            }
            "log.cleanup.policy" => {
                self.log_cleanup_policy = josefine_log::CleanupPolicy::parse(v)
                    .map_err(|e| invalid(key, v, e.to_string()))?
            }
            "log.retention.check.interval.ms" => {
                self.log_retention_check_interval_ms = parse_int(key, v, 1, i64::MAX as u64)?
            }
            "replica.high.watermark.checkpoint.interval.ms" => {
                self.replica_high_watermark_checkpoint_interval_ms =
                    parse_int(key, v, 1, i64::MAX as u64)?
            }
            "log.cleaner.enable" => self.log_cleaner_enable = parse_bool(key, v)?,
            "log.cleaner.backoff.ms" => {
                self.log_cleaner_backoff_ms = parse_int(key, v, 0, i64::MAX as u64)?
            }
            "log.cleaner.io.max.bytes.per.second" => {
                let rate = parse_double(key, v, 1.0, f64::MAX)?;
                // Kafka's default is Double.MAX_VALUE; anything past u64 is "unlimited".
                self.log_cleaner_io_max_bytes_per_second = if rate >= u64::MAX as f64 {
                    u64::MAX
                } else {
                    rate as u64
                };
            }
            "log.cleaner.dedupe.buffer.size" => {
                self.log_cleaner_dedupe_buffer_size = parse_int(key, v, 1, i64::MAX as u64)?
            }
            "log.cleaner.min.cleanable.ratio" => {
                self.log_cleaner_min_cleanable_ratio = parse_double(key, v, 0.0, 1.0)?
            }
            "log.cleaner.delete.retention.ms" => {
                self.log_cleaner_delete_retention_ms = parse_int(key, v, 0, i64::MAX)?
            }
            "log.cleaner.min.compaction.lag.ms" => {
                self.log_cleaner_min_compaction_lag_ms = parse_int(key, v, 0, i64::MAX)?
            }
            "log.cleaner.max.compaction.lag.ms" => {
                self.log_cleaner_max_compaction_lag_ms = parse_int(key, v, 1, i64::MAX)?
            }
            "compression.type"
            | "compression.gzip.level"
            | "compression.lz4.level"
            | "compression.zstd.level" => {
                // Kafka's ranges and wording, shared with the topic configs of the same names.
                josefine_meta::topic_config::validate_topic_config(key, v).map_err(|e| {
                    let reason = e.split_once(&format!("{key}: ")).map_or(&*e, |(_, r)| r);
                    invalid(key, v, reason)
                })?;
                let c = &mut self.compression;
                match key {
                    "compression.type" => {
                        c.codec = josefine_log::recompress::CompressionConfig::codec_named(v)
                            .expect("validated codec name")
                    }
                    "compression.gzip.level" => c.gzip_level = parse_int(key, v, -1, 9)?,
                    "compression.lz4.level" => c.lz4_level = parse_int(key, v, 1, 17)?,
                    _ => c.zstd_level = parse_int(key, v, -131072, 22)?,
                }
            }
            "offsets.topic.num.partitions" => {
                self.offsets_topic_num_partitions =
                    parse_int(key, v, 1, limits::PARTITIONS_PER_TOPIC_MAX)?
            }
            "offsets.topic.segment.bytes" => {
                self.offsets_topic_segment_bytes = parse_int(key, v, 1024, i32::MAX as u64)?
            }
            "offsets.topic.replication.factor" => {
                self.offsets_topic_replication_factor = parse_int(key, v, 1, i16::MAX)?
            }
            "offsets.retention.minutes" => {
                self.offsets_retention_minutes = parse_int(key, v, 1, i32::MAX as i64)?
            }
            "offsets.retention.check.interval.ms" => {
                self.offsets_retention_check_interval_ms = parse_int(key, v, 1, i64::MAX as u64)?
            }
            "group.initial.rebalance.delay.ms" => {
                self.group_initial_rebalance_delay_ms = parse_int(key, v, 0, i32::MAX as u64)?
            }
            "group.min.session.timeout.ms" => {
                self.group_min_session_timeout_ms = parse_int(key, v, 0, i32::MAX as u64)?
            }
            "group.max.session.timeout.ms" => {
                self.group_max_session_timeout_ms = parse_int(key, v, 0, i32::MAX as u64)?
            }
            "group.max.size" => self.group_max_size = parse_int(key, v, 1, i32::MAX as u32)?,
            "transaction.state.log.num.partitions" => {
                self.transaction_state_log_num_partitions =
                    parse_int(key, v, 1, limits::PARTITIONS_PER_TOPIC_MAX)?
            }
            "transaction.state.log.replication.factor" => {
                self.transaction_state_log_replication_factor = parse_int(key, v, 1, i16::MAX)?
            }
            "transaction.state.log.min.isr" => {
                self.transaction_state_log_min_isr = parse_int(key, v, 1, i16::MAX)?
            }
            "transaction.state.log.segment.bytes" => {
                self.transaction_state_log_segment_bytes = parse_int(key, v, 1024, i32::MAX as u64)?
            }
            "transaction.max.timeout.ms" => {
                self.transaction_max_timeout_ms = parse_int(key, v, 1, i32::MAX)?
            }
            "transactional.id.expiration.ms" => {
                self.transactional_id_expiration_ms = parse_int(key, v, 1, i32::MAX as i64)?
            }
            "transaction.abort.timed.out.transaction.cleanup.interval.ms" => {
                self.transaction_abort_timed_out_transaction_cleanup_interval_ms =
                    parse_int(key, v, 1, i32::MAX as i64)?
            }
            "transaction.remove.expired.transaction.cleanup.interval.ms" => {
                self.transaction_remove_expired_transaction_cleanup_interval_ms =
                    parse_int(key, v, 1, i32::MAX as i64)?
            }
            "transaction.partition.verification.enable" => {
                self.transaction_partition_verification_enable = parse_bool(key, v)?
            }
            "broker.heartbeat.interval.ms" => {
                self.broker_heartbeat_interval_ms = parse_int(key, v, 1, i32::MAX as u64)?
            }
            "broker.session.timeout.ms" => {
                self.broker_session_timeout_ms = parse_int(key, v, 1, i32::MAX as u64)?
            }
            "broker.session.close.grace.ms" => {
                self.broker_session_close_grace_ms = parse_int(key, v, 0, i32::MAX as u64)?
            }
            "offset.metadata.max.bytes" => {
                self.offset_metadata_max_bytes = parse_int(key, v, 0, i32::MAX as u32)?
            }
            "replica.lag.time.max.ms" => {
                self.replica_lag_time_max_ms = parse_int(key, v, 1, i64::MAX / 2)?
            }
            "replica.fetch.wait.max.ms" => {
                self.replica_fetch_wait_max_ms =
                    parse_int(key, v, 0, limits::FETCH_MAX_WAIT_MS_CEILING as i32)?
            }
            "replica.fetch.min.bytes" => {
                self.replica_fetch_min_bytes = parse_int(key, v, 1, i32::MAX)?
            }
            "replica.fetch.max.bytes" => {
                self.replica_fetch_max_bytes = parse_int(key, v, 0, i32::MAX)?
            }
            "replica.fetch.response.max.bytes" => {
                self.replica_fetch_response_max_bytes =
                    parse_int(key, v, 0, limits::REPLICA_FETCH_RESPONSE_BYTES_CEILING)?
            }
            "replica.fetch.backoff.ms" => {
                self.replica_fetch_backoff_ms = parse_int(key, v, 0, i32::MAX as u64)?
            }
            "replica.socket.timeout.ms" => {
                self.replica_socket_timeout_ms = parse_int(key, v, 1, i32::MAX as u64)?
            }
            "unclean.leader.election.enable" => {
                self.unclean_leader_election_enable = parse_bool(key, v)?
            }
            "unclean.leader.election.interval.ms" => {
                self.unclean_leader_election_interval_ms = parse_int(key, v, 1, i64::MAX as u64)?
            }
            "auto.leader.rebalance.enable" => {
                self.auto_leader_rebalance_enable = parse_bool(key, v)?
            }
            "leader.imbalance.check.interval.seconds" => {
                self.leader_imbalance_check_interval_seconds =
                    parse_int(key, v, 1, i64::MAX as u64 / 1000)?
            }
            "leader.imbalance.per.broker.percentage" => {
                self.leader_imbalance_per_broker_percentage = parse_int(key, v, 0, 100)?
            }
            "authorizer.class.name" => {
                self.authorizer_enabled = match v.trim() {
                    "" => false,
                    STANDARD_AUTHORIZER => true,
                    _ => return Err(invalid(
                        key,
                        v,
                        "only org.apache.kafka.metadata.authorizer.StandardAuthorizer is supported",
                    )),
                }
            }
            "super.users" => {
                let users = josefine_meta::acl::AuthorizerSettings::parse_super_users(v);
                if let Some(bad) = users.iter().find(|u| !u.contains(':')) {
                    return Err(invalid(
                        key,
                        v,
                        format!("`{bad}` is not principalType:name"),
                    ));
                }
                self.authorizer.super_users = users;
            }
            "allow.everyone.if.no.acl.found" => {
                self.authorizer.allow_everyone_if_no_acl_found = parse_bool(key, v)?
            }
            _ => return Err(ConfigError::UnknownSetting(key.to_string())),
        }
        Ok(())
    }

    /// The log configuration these settings give a new partition (before topic overrides).
    #[allow(clippy::needless_update)]
    pub fn log_config(&self) -> josefine_log::LogConfig {
        josefine_log::LogConfig {
            segment_bytes: self.log_segment_bytes,
            segment_ms: self.log_roll_ms,
            // Kafka allows 0 (index every batch); the log wants >= 1, which means the same.
            index_interval_bytes: self.log_index_interval_bytes.max(1),
            max_message_bytes: self.message_max_bytes,
            flush_interval_messages: self.log_flush_interval_messages,
            flush_interval_ms: self.log_flush_interval_ms,
            timestamp_type: match self.log_message_timestamp_type {
                TimestampKind::CreateTime => josefine_log::TimestampType::CreateTime,
                TimestampKind::LogAppendTime => josefine_log::TimestampType::LogAppendTime,
            },
            retention_ms: self.log_retention_ms,
            retention_bytes: self.log_retention_bytes,
            cleanup_policy: self.log_cleanup_policy,
            delete_retention_ms: self.log_cleaner_delete_retention_ms,
            min_cleanable_dirty_ratio: self.log_cleaner_min_cleanable_ratio,
            min_compaction_lag_ms: self.log_cleaner_min_compaction_lag_ms,
            max_compaction_lag_ms: self.log_cleaner_max_compaction_lag_ms,
            compression: self.compression,
            timestamp_before_max_ms: self.log_message_timestamp_before_max_ms,
            timestamp_after_max_ms: self.log_message_timestamp_after_max_ms,
            // Keeps Kafka defaults for fields the log crate adds later.
            ..josefine_log::LogConfig::default()
        }
    }
}

/// A voter of the chain: node id and raft address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Voter {
    pub node_id: i32,
    pub raft_addr: String,
}

/// `ID@HOST:PORT,...` in the given order: the form `--voters` takes and the data directory
/// stores.
pub fn voters_to_string(voters: &[Voter]) -> String {
    voters
        .iter()
        .map(|v| format!("{}@{}", v.node_id, v.raft_addr))
        .collect::<Vec<_>>()
        .join(",")
}

/// The fully resolved configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub node_id: i32,
    pub data_dir: PathBuf,
    pub rack: Option<String>,
    /// The inter-broker listener's bind address.
    pub listen: SocketAddr,
    /// The inter-broker listener's advertised host and port (0: the bound port).
    pub advertise_host: String,
    pub advertise_port: i32,
    pub raft_listen: SocketAddr,
    /// Every voter of the chain, this node included (checked: ids distinct, addresses resolve).
    pub voters: Vec<Voter>,
    /// `voters` with resolved addresses, in the same order: what the chain runtime dials.
    pub voter_addrs: Vec<(u64, SocketAddr)>,
    pub broker: BrokerSettings,
    /// Listeners and connection security ([`crate::security`]); `listen` and `advertise_*`
    /// above are its inter-broker listener's.
    pub security: SecurityConfig,
    /// Where the HTTP listener (metrics, health) binds, if anywhere.
    pub http_listen: HttpListen,
    /// What the web console and `/api/v1` may do.
    pub console: ConsoleMode,
    /// The security settings as given (`listeners`, `ssl.*`, `sasl.*`, `listener.name.*`):
    /// DescribeConfigs shows them as static broker configs, secrets as null.
    pub security_values: SecurityValues,
    /// `--add-scram` credentials, stored at start where missing.
    pub scram_seeds: Vec<crate::security::credentials::ScramSeed>,
    pub log_format: LogFormat,
    /// The log filter (RUST_LOG syntax) from `--log`, `JOSEFINE_LOG` or the file, already
    /// checked to parse; None: RUST_LOG, else `info`.
    pub log_filter: Option<String>,
}

/// The security settings as given. `Debug` shows the keys only: values hold passwords.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct SecurityValues(pub BTreeMap<String, String>);

impl std::ops::Deref for SecurityValues {
    type Target = BTreeMap<String, String>;
    fn deref(&self) -> &Self::Target {
        &self.0
    }
}

impl std::fmt::Debug for SecurityValues {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_set().entries(self.0.keys()).finish()
    }
}

/// The default HTTP listener address (Redpanda's admin port, which serves its /metrics too).
pub const HTTP_LISTEN_DEFAULT: &str = "127.0.0.1:9644";

/// `--http-listen`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HttpListen {
    Off,
    /// `explicit`: given by flag, env or file (must bind); otherwise the default (a taken port
    /// is a warning: several brokers on one machine share it).
    On {
        addr: SocketAddr,
        explicit: bool,
    },
}

/// `--console`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConsoleMode {
    Off,
    ReadOnly,
    ReadWrite,
}

/// `--console`: read-write needs a loopback HTTP listener (no authentication until SASL/ACLs
/// reach HTTP); unset, it is read-write on loopback and read-only elsewhere.
fn parse_console(given: Option<String>, http: HttpListen) -> Result<ConsoleMode, ConfigError> {
    let loopback = match http {
        HttpListen::On { addr, .. } => addr.ip().is_loopback(),
        HttpListen::Off => true,
    };
    match given.as_deref().map(str::trim) {
        None if loopback => Ok(ConsoleMode::ReadWrite),
        None | Some("read-only") => Ok(ConsoleMode::ReadOnly),
        Some("off") => Ok(ConsoleMode::Off),
        Some("read-write") if loopback => Ok(ConsoleMode::ReadWrite),
        Some(v @ "read-write") => Err(invalid(
            "console",
            v,
            "read-write needs a loopback --http-listen (the console has no authentication)",
        )),
        Some(other) => Err(invalid(
            "console",
            other,
            "expected read-only, read-write or off",
        )),
    }
}

/// `--log-format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

fn parse_http_listen(given: Option<String>) -> Result<HttpListen, ConfigError> {
    match given {
        None => Ok(HttpListen::On {
            addr: parse_addr("http_listen", HTTP_LISTEN_DEFAULT)?,
            explicit: false,
        }),
        Some(v) if v.trim() == "off" => Ok(HttpListen::Off),
        Some(v) => Ok(HttpListen::On {
            addr: parse_addr("http_listen", v.trim())?,
            explicit: true,
        }),
    }
}

fn parse_log_format(given: Option<String>) -> Result<LogFormat, ConfigError> {
    match given.as_deref().map(str::trim) {
        None | Some("text") => Ok(LogFormat::Text),
        Some("json") => Ok(LogFormat::Json),
        Some(other) => Err(invalid("log_format", other, "expected text or json")),
    }
}

/// Checks a `--log` filter with the parser the logger uses, so a typo stops the start (exit 2)
/// instead of silently logging nothing.
fn check_log_filter(given: Option<String>) -> Result<Option<String>, ConfigError> {
    match given {
        None => Ok(None),
        Some(f) => match tracing_subscriber::EnvFilter::try_new(&f) {
            Ok(_) => Ok(Some(f)),
            Err(e) => Err(invalid("log", &f, e.to_string())),
        },
    }
}

/// Values read from the TOML file, before precedence is applied.
#[derive(Debug, Default)]
struct FileValues {
    flags: ServeArgs,
    broker: Vec<(String, String)>,
}

fn toml_scalar(key: &str, value: &toml::Value) -> Result<String, ConfigError> {
    match value {
        toml::Value::String(s) => Ok(s.clone()),
        toml::Value::Integer(i) => Ok(i.to_string()),
        toml::Value::Boolean(b) => Ok(b.to_string()),
        toml::Value::Float(f) => Ok(f.to_string()),
        other => Err(invalid(
            key,
            &other.to_string(),
            "expected a string, integer or boolean",
        )),
    }
}

/// Flattens `[broker]`: `num.partitions = 3` in TOML is a dotted key, i.e. nested tables, and
/// `"num.partitions" = 3` is a quoted key; both mean the Kafka name `num.partitions`.
fn flatten_broker(
    prefix: &str,
    table: &toml::value::Table,
    out: &mut Vec<(String, String)>,
) -> Result<(), ConfigError> {
    for (k, v) in table {
        let key = if prefix.is_empty() {
            k.clone()
        } else {
            format!("{prefix}.{k}")
        };
        match v {
            toml::Value::Table(inner) => flatten_broker(&key, inner, out)?,
            scalar => out.push((key.clone(), toml_scalar(&key, scalar)?)),
        }
    }
    Ok(())
}

fn parse_file(path: &std::path::Path, text: &str) -> Result<FileValues, ConfigError> {
    let table: toml::value::Table = toml::from_str(text).map_err(|e| ConfigError::ParseFile {
        path: path.to_path_buf(),
        message: e.to_string(),
    })?;
    let mut out = FileValues::default();
    for (key, value) in &table {
        let as_string = || toml_scalar(key, value);
        match key.as_str() {
            "node_id" => {
                let s = as_string()?;
                out.flags.node_id = Some(parse_int("node_id", &s, 0, i32::MAX)?);
            }
            "data_dir" => out.flags.data_dir = Some(PathBuf::from(as_string()?)),
            "rack" => out.flags.rack = Some(as_string()?),
            "listen" => out.flags.listen = Some(as_string()?),
            "advertise" => out.flags.advertise = Some(as_string()?),
            "raft_listen" => out.flags.raft_listen = Some(as_string()?),
            "voters" => out.flags.voters = Some(as_string()?),
            "cluster_id" => out.flags.cluster_id = Some(as_string()?),
            "http_listen" => out.flags.http_listen = Some(as_string()?),
            "console" => out.flags.console = Some(as_string()?),
            "log_format" => out.flags.log_format = Some(as_string()?),
            "log" => out.flags.log = Some(as_string()?),
            "broker" => match value {
                toml::Value::Table(t) => flatten_broker("", t, &mut out.broker)?,
                _ => {
                    return Err(ConfigError::ParseFile {
                        path: path.to_path_buf(),
                        message: "`broker` must be a table".into(),
                    })
                }
            },
            other => return Err(ConfigError::UnknownFileKey(other.to_string())),
        }
    }
    Ok(out)
}

fn parse_addr(key: &str, value: &str) -> Result<SocketAddr, ConfigError> {
    use std::net::ToSocketAddrs;
    value
        .to_socket_addrs()
        .map_err(|e| ConfigError::BadAddress {
            key: key.into(),
            value: value.into(),
            reason: e.to_string(),
        })?
        .next()
        .ok_or_else(|| ConfigError::BadAddress {
            key: key.into(),
            value: value.into(),
            reason: "no address".into(),
        })
}

pub(crate) fn split_host_port(key: &str, value: &str) -> Result<(String, i32), ConfigError> {
    let bad = |reason: &str| ConfigError::BadAddress {
        key: key.into(),
        value: value.into(),
        reason: reason.into(),
    };
    let (host, port) = value
        .rsplit_once(':')
        .ok_or_else(|| bad("expected HOST:PORT"))?;
    let port: u16 = port.parse().map_err(|_| bad("port must be 0-65535"))?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if host.is_empty() {
        return Err(bad("empty host"));
    }
    Ok((host.to_string(), i32::from(port)))
}

fn parse_voters(value: &str) -> Result<Vec<Voter>, ConfigError> {
    let mut voters = Vec::new();
    for part in value.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (id, addr) = part
            .split_once('@')
            .ok_or_else(|| invalid("voters", part, "expected ID@HOST:PORT"))?;
        let node_id = parse_int("voters", id, 0, i32::MAX)?;
        split_host_port("voters", addr)?;
        voters.push(Voter {
            node_id,
            raft_addr: addr.to_string(),
        });
    }
    Ok(voters)
}

/// The voter list must name `node_id` exactly once, hold distinct ids, and have addresses
/// that resolve: a chain started otherwise could never elect, or would elect two leaders.
fn check_voters(node_id: i32, voters: &[Voter]) -> Result<Vec<(u64, SocketAddr)>, ConfigError> {
    let bad = |reason: String| ConfigError::BadVoters {
        voters: voters_to_string(voters),
        reason,
    };
    if voters.is_empty() {
        return Err(bad("no voters given".into()));
    }
    if voters.len() > josefine_chain::limits::VOTERS_MAX {
        return Err(bad(format!(
            "at most {} voters",
            josefine_chain::limits::VOTERS_MAX
        )));
    }
    let mut out: Vec<(u64, SocketAddr)> = Vec::with_capacity(voters.len());
    for v in voters {
        if out.iter().any(|(id, _)| *id == v.node_id as u64) {
            return Err(bad(format!("node id {} is listed twice", v.node_id)));
        }
        out.push((v.node_id as u64, parse_addr("voters", &v.raft_addr)?));
    }
    if !voters.iter().any(|v| v.node_id == node_id) {
        return Err(bad(format!("--node-id {node_id} is not one of the voters")));
    }
    Ok(out)
}

impl Config {
    /// Resolves flags (already merged with env by clap), the optional file and defaults.
    pub fn resolve(args: ServeArgs) -> Result<Config, ConfigError> {
        let file = match &args.config {
            Some(path) => {
                let text =
                    std::fs::read_to_string(path).map_err(|source| ConfigError::ReadFile {
                        path: path.clone(),
                        source,
                    })?;
                parse_file(path, &text)?
            }
            None => FileValues::default(),
        };
        Self::resolve_with(args, file)
    }

    fn resolve_with(args: ServeArgs, file: FileValues) -> Result<Config, ConfigError> {
        let f = file.flags;
        let node_id = args.node_id.or(f.node_id).unwrap_or(1);
        if node_id < 0 {
            return Err(invalid("node_id", &node_id.to_string(), "must be >= 0"));
        }
        let data_dir = args
            .data_dir
            .or(f.data_dir)
            .unwrap_or_else(|| PathBuf::from("./josefine-data"));
        let rack = args.rack.or(f.rack);
        let listen_given = args.listen.or(f.listen);
        let advertise_given = args.advertise.or(f.advertise);
        let voters_given = args.voters.or(f.voters);
        let voters = match &voters_given {
            Some(v) => Some(parse_voters(v)?),
            None => None,
        };
        let own_voter_addr = voters
            .iter()
            .flatten()
            .find(|v| v.node_id == node_id)
            .map(|v| v.raft_addr.clone());
        let raft_s = args
            .raft_listen
            .or(f.raft_listen)
            .or(own_voter_addr)
            .unwrap_or_else(|| "127.0.0.1:9093".to_string());
        let raft_listen = parse_addr("raft_listen", &raft_s)?;
        let voters = voters.unwrap_or_else(|| {
            vec![Voter {
                node_id,
                raft_addr: raft_s.clone(),
            }]
        });
        let voter_addrs = check_voters(node_id, &voters)?;
        let mut sets: BTreeMap<String, String> = BTreeMap::new();
        for (k, v) in file.broker {
            sets.insert(k, v);
        }
        for kv in &args.set {
            let (k, v) = kv
                .split_once('=')
                .ok_or_else(|| ConfigError::BadSetSyntax(kv.clone()))?;
            sets.insert(k.trim().to_string(), v.to_string());
        }
        if let Some(id) = args.cluster_id.or(f.cluster_id) {
            sets.insert("cluster.id".to_string(), id);
        }
        let http_listen = parse_http_listen(args.http_listen.or(f.http_listen))?;
        let console = parse_console(args.console.or(f.console), http_listen)?;
        let log_format = parse_log_format(args.log_format.or(f.log_format))?;
        let log_filter = check_log_filter(args.log.or(f.log))?;
        let scram_seeds = args
            .add_scram
            .iter()
            .map(|s| {
                crate::security::credentials::parse_seed(s)
                    .map_err(|reason| invalid("--add-scram", "(hidden)", reason))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let offsets_rf_given = sets.contains_key("offsets.topic.replication.factor");
        let txn_rf_given = sets.contains_key("transaction.state.log.replication.factor");
        let txn_min_isr_given = sets.contains_key("transaction.state.log.min.isr");
        let (security_values, sets): (BTreeMap<_, _>, BTreeMap<_, _>) = sets
            .into_iter()
            .partition(|(k, _)| crate::security::listeners::is_security_key(k));
        let security = SecurityConfig::resolve(
            &security_values,
            listen_given.as_deref(),
            advertise_given.as_deref(),
            voter_addrs.len(),
        )?;
        let security_values = SecurityValues(security_values.clone());
        let inter = security.inter_broker();
        let listen = inter.bind;
        let (advertise_host, advertise_port) = inter
            .advertised
            .clone()
            .expect("the inter-broker listener is advertised");
        let mut broker = BrokerSettings::from_static(sets)?;
        if !offsets_rf_given {
            broker.offsets_topic_replication_factor =
                offsets_topic_replication_factor_default(voter_addrs.len());
        }
        if !txn_rf_given {
            broker.transaction_state_log_replication_factor =
                offsets_topic_replication_factor_default(voter_addrs.len());
        }
        if !txn_min_isr_given {
            broker.transaction_state_log_min_isr =
                broker.transaction_state_log_replication_factor.min(2);
        }
        Ok(Config {
            node_id,
            data_dir,
            rack,
            listen,
            advertise_host,
            advertise_port,
            raft_listen,
            voters,
            voter_addrs,
            broker,
            security,
            http_listen,
            console,
            security_values,
            scram_seeds,
            log_format,
            log_filter,
        })
    }
}

/// `offsets.topic.replication.factor` when not set: Kafka's 3, but never more than the chain
/// has voters (every broker is a voter), so a single node needs no settings.
pub fn offsets_topic_replication_factor_default(voters: usize) -> i16 {
    voters.clamp(1, 3) as i16
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_topic_replication_factor_defaults_to_at_most_three_voters() {
        let rf = |args: &[&str]| {
            Config::resolve_with(cli(args), FileValues::default())
                .unwrap()
                .broker
                .offsets_topic_replication_factor
        };
        assert_eq!(rf(&[]), 1);
        assert_eq!(rf(&["--voters", "1@127.0.0.1:1,2@127.0.0.1:2"]), 2);
        let four = "1@127.0.0.1:1,2@127.0.0.1:2,3@127.0.0.1:3,4@127.0.0.1:4";
        assert_eq!(rf(&["--voters", four]), 3);
        assert_eq!(
            rf(&[
                "--voters",
                four,
                "--set",
                "offsets.topic.replication.factor=4"
            ]),
            4
        );
        assert_eq!(rf(&["--set", "offsets.topic.replication.factor=2"]), 2);
    }

    fn cli(args: &[&str]) -> ServeArgs {
        let mut full = vec!["josefine"];
        full.extend_from_slice(args);
        Cli::try_parse_from(full).expect("parse").serve_args()
    }

    #[test]
    fn defaults_match_the_issue() {
        let c = Config::resolve_with(ServeArgs::default(), FileValues::default()).unwrap();
        assert_eq!(c.node_id, 1);
        assert_eq!(c.data_dir, PathBuf::from("./josefine-data"));
        assert_eq!(c.listen.to_string(), "127.0.0.1:9092");
        assert_eq!(
            (c.advertise_host.as_str(), c.advertise_port),
            ("127.0.0.1", 9092)
        );
        assert_eq!(c.raft_listen.to_string(), "127.0.0.1:9093");
        assert_eq!(
            c.voters,
            vec![Voter {
                node_id: 1,
                raft_addr: "127.0.0.1:9093".into()
            }]
        );
        assert_eq!(c.broker.socket_request_max_bytes, 104_857_600);
        assert_eq!(c.broker.message_max_bytes, 1_048_588);
        assert!(c.broker.auto_create_topics_enable);
    }

    #[test]
    fn serve_subcommand_and_bare_flags_are_the_same() {
        let a = cli(&["--node-id", "7", "--set", "num.partitions=3"]);
        let b = cli(&["serve", "--node-id", "7", "--set", "num.partitions=3"]);
        let a = Config::resolve_with(a, FileValues::default()).unwrap();
        let b = Config::resolve_with(b, FileValues::default()).unwrap();
        assert_eq!(a.node_id, 7);
        assert_eq!(b.node_id, 7);
        assert_eq!(a.broker.num_partitions, 3);
        assert_eq!(b.broker, a.broker);
    }

    #[test]
    fn flag_beats_file_and_file_beats_default() {
        let text = "node_id = 4\nlisten = \"127.0.0.1:19092\"\n[broker]\nnum.partitions = 5\n\"log.retention.ms\" = 1000\n";
        let file = parse_file(&PathBuf::from("x.toml"), text).unwrap();
        let args = cli(&["--node-id", "9", "--set", "num.partitions=2"]);
        let c = Config::resolve_with(args, file).unwrap();
        assert_eq!(c.node_id, 9);
        assert_eq!(c.listen.to_string(), "127.0.0.1:19092");
        assert_eq!(c.broker.num_partitions, 2);
        assert_eq!(c.broker.log_retention_ms, 1000);
    }

    #[test]
    fn unknown_setting_is_named_in_the_error() {
        let err = Config::resolve_with(
            cli(&["--set", "log.retention.msec=5"]),
            FileValues::default(),
        )
        .unwrap_err();
        assert!(err.to_string().contains("log.retention.msec"), "{err}");
        let err = parse_file(&PathBuf::from("x.toml"), "nodeid = 3").unwrap_err();
        assert!(err.to_string().contains("nodeid"), "{err}");
    }

    #[test]
    fn bad_values_are_rejected() {
        let mut s = BrokerSettings::default();
        assert!(s.set("num.partitions", "0").is_err());
        assert!(s.set("auto.create.topics.enable", "yes").is_err());
        assert!(s.set("log.message.timestamp.type", "Now").is_err());
        assert!(s.set("socket.request.max.bytes", "-1").is_err());
        s.set("log.message.timestamp.type", "LogAppendTime")
            .unwrap();
        assert_eq!(s.log_message_timestamp_type, TimestampKind::LogAppendTime);
    }

    #[test]
    fn cleaner_and_group_settings_parse_with_kafka_defaults() {
        let mut s = BrokerSettings::default();
        assert_eq!(s.log_cleaner_io_max_bytes_per_second, u64::MAX);
        s.set(
            "log.cleaner.io.max.bytes.per.second",
            "1.7976931348623157E308",
        )
        .unwrap();
        assert_eq!(s.log_cleaner_io_max_bytes_per_second, u64::MAX);
        s.set("log.cleaner.io.max.bytes.per.second", "1048576")
            .unwrap();
        assert_eq!(s.log_cleaner_io_max_bytes_per_second, 1_048_576);
        s.set("log.cleanup.policy", "delete,compact").unwrap();
        assert_eq!(
            s.log_config().cleanup_policy,
            josefine_log::CleanupPolicy::CompactDelete
        );
        assert!(s.set("log.cleanup.policy", "forever").is_err());
        assert!(s.set("log.cleaner.min.cleanable.ratio", "1.5").is_err());
        s.set("log.cleaner.min.cleanable.ratio", "0.25").unwrap();
        assert_eq!(s.log_config().min_cleanable_dirty_ratio, 0.25);
        assert!(s.set("compression.type", "brotli").is_err());
        assert!(s.set("compression.gzip.level", "0").is_err());
        s.set("compression.type", "gzip").unwrap();
        s.set("compression.gzip.level", "9").unwrap();
        let c = s.log_config().compression;
        assert_eq!(c.codec, Some(josefine_log::batch::Compression::Gzip));
        assert_eq!(c.gzip_level, 9);
        assert_eq!(s.value_of("compression.type").as_deref(), Some("gzip"));
        s.set("compression.type", "producer").unwrap();
        s.set("offsets.topic.num.partitions", "3").unwrap();
        assert_eq!(s.offsets_topic_num_partitions, 3);
        assert!(s.set("group.max.size", "0").is_err());
        s.set("log.index.interval.bytes", "0").unwrap();
        assert_eq!(s.log_config().index_interval_bytes, 1);
    }

    #[test]
    fn every_key_has_a_value_and_dynamic_layers_override_static() {
        let mut values = BTreeMap::new();
        values.insert("log.retention.hours".to_string(), "2".to_string());
        values.insert("log.cleanup.policy".to_string(), "compact".to_string());
        let s = BrokerSettings::from_static(values).unwrap();
        for key in BrokerSettings::KEYS {
            let optional = matches!(
                *key,
                "log.retention.minutes" | "log.flush.interval.ms" | "cluster.id"
            );
            assert!(optional || s.value_of(key).is_some(), "{key}");
        }
        assert_eq!(s.value_of("log.retention.ms").unwrap(), "7200000");
        let mut image = josefine_meta::Image::default();
        image
            .cluster_broker_configs
            .insert("log.retention.ms".into(), "5000".into());
        let e = s.effective(&image, 1);
        assert_eq!(e.log_retention_ms, 5000, "dynamic ms beats static hours");
        assert_eq!(e.log_cleanup_policy, josefine_log::CleanupPolicy::Compact);
        image.broker_configs.insert(
            1,
            [("log.retention.ms".to_string(), "7000".to_string())].into(),
        );
        assert_eq!(s.effective(&image, 1).log_retention_ms, 7000);
        assert_eq!(s.effective(&image, 2).log_retention_ms, 5000);
        assert_eq!(e.static_values, s.static_values);
    }

    #[test]
    fn retention_ms_wins_over_hours_regardless_of_order() {
        let c = Config::resolve_with(
            cli(&[
                "--set",
                "log.retention.ms=5",
                "--set",
                "log.retention.hours=1",
            ]),
            FileValues::default(),
        )
        .unwrap();
        assert_eq!(c.broker.log_retention_ms, 5);
    }

    #[test]
    fn voters_parse() {
        let c = Config::resolve_with(
            cli(&["--voters", "1@127.0.0.1:1,2@localhost:2"]),
            FileValues::default(),
        )
        .unwrap();
        assert_eq!(c.voters.len(), 2);
        assert_eq!(c.voter_addrs[0], (1, "127.0.0.1:1".parse().unwrap()));
        assert_eq!(c.voter_addrs[1].0, 2);
        assert_eq!(
            c.raft_listen.to_string(),
            "127.0.0.1:1",
            "the raft address defaults to this node's voter address"
        );
        assert!(Config::resolve_with(cli(&["--voters", "x@a:1"]), FileValues::default()).is_err());
    }

    #[test]
    fn bad_voter_lists_are_refused_with_the_reason() {
        let err = |args: &[&str]| {
            Config::resolve_with(cli(args), FileValues::default())
                .unwrap_err()
                .to_string()
        };
        let e = err(&["--node-id", "3", "--voters", "1@127.0.0.1:1,2@127.0.0.1:2"]);
        assert!(e.contains("--node-id 3 is not one of the voters"), "{e}");
        let e = err(&["--voters", "1@127.0.0.1:1,1@127.0.0.1:2"]);
        assert!(e.contains("node id 1 is listed twice"), "{e}");
        let e = err(&["--voters", "1@127.0.0.1:1,2@no-such-host.invalid:2"]);
        assert!(e.contains("no-such-host.invalid"), "{e}");
        let e = err(&["--voters", "1@127.0.0.1"]);
        assert!(e.contains("127.0.0.1"), "{e}");
    }

    #[test]
    fn http_listen_and_log_settings() {
        let c = Config::resolve_with(ServeArgs::default(), FileValues::default()).unwrap();
        assert_eq!(
            c.http_listen,
            HttpListen::On {
                addr: "127.0.0.1:9644".parse().unwrap(),
                explicit: false
            }
        );
        assert_eq!((c.log_format, c.log_filter), (LogFormat::Text, None));
        let c = Config::resolve_with(
            cli(&[
                "--http-listen",
                "off",
                "--log-format",
                "json",
                "--log",
                "debug",
            ]),
            FileValues::default(),
        )
        .unwrap();
        assert_eq!(c.http_listen, HttpListen::Off);
        assert_eq!(c.log_format, LogFormat::Json);
        assert_eq!(c.log_filter.as_deref(), Some("debug"));
        let file = parse_file(
            &PathBuf::from("x.toml"),
            "http_listen = \"127.0.0.1:19644\"\nlog_format = \"json\"\nlog = \"warn\"",
        )
        .unwrap();
        let c = Config::resolve_with(ServeArgs::default(), file).unwrap();
        assert_eq!(
            c.http_listen,
            HttpListen::On {
                addr: "127.0.0.1:19644".parse().unwrap(),
                explicit: true
            }
        );
        assert_eq!(c.log_filter.as_deref(), Some("warn"));
        let err = |args: &[&str]| {
            Config::resolve_with(cli(args), FileValues::default())
                .unwrap_err()
                .to_string()
        };
        assert!(err(&["--log", "info,[["]).contains("`log`"));
        assert!(err(&["--log-format", "xml"]).contains("log_format"));
        assert!(err(&["--http-listen", "nowhere"]).contains("http_listen"));
    }

    #[test]
    fn console_mode_defaults_by_listener_and_read_write_needs_loopback() {
        let mode = |args: &[&str]| {
            Config::resolve_with(cli(args), FileValues::default()).map(|c| c.console)
        };
        assert_eq!(mode(&[]).unwrap(), ConsoleMode::ReadWrite);
        assert_eq!(
            mode(&["--http-listen", "0.0.0.0:9644"]).unwrap(),
            ConsoleMode::ReadOnly
        );
        assert_eq!(
            mode(&["--console", "read-only"]).unwrap(),
            ConsoleMode::ReadOnly
        );
        assert_eq!(mode(&["--console", "off"]).unwrap(), ConsoleMode::Off);
        let e = mode(&["--http-listen", "0.0.0.0:9644", "--console", "read-write"])
            .unwrap_err()
            .to_string();
        assert!(e.contains("console") && e.contains("loopback"), "{e}");
        assert!(mode(&["--console", "admin"]).is_err());
    }

    #[test]
    fn cluster_id_flag_sets_the_setting() {
        let c = Config::resolve_with(cli(&["--cluster-id", "abc"]), FileValues::default()).unwrap();
        assert_eq!(c.broker.cluster_id.as_deref(), Some("abc"));
        let file = parse_file(&PathBuf::from("x.toml"), "cluster_id = \"fromfile\"").unwrap();
        let c = Config::resolve_with(ServeArgs::default(), file).unwrap();
        assert_eq!(c.broker.cluster_id.as_deref(), Some("fromfile"));
    }
}

#[cfg(test)]
mod security_values_tests {
    use super::*;

    #[test]
    fn debug_shows_keys_not_values() {
        let v = SecurityValues([("ssl.key.password".to_string(), "hunter2".to_string())].into());
        let shown = format!("{v:?}");
        assert!(
            shown.contains("ssl.key.password") && !shown.contains("hunter2"),
            "{shown}"
        );
    }
}

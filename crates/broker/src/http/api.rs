//! The JSON API under `/api/v1/`: what the console shows and the actions it offers.
//!
//! Owns: the routes, their JSON shapes (listed in `docs/console.md`) and the mapping of Kafka
//! error codes to HTTP statuses. Reads come from the image, the partition registry and the
//! chain and group watches in-process; configs with their sources, groups and every action go
//! through the Kafka handlers ([`super::kafka::call`]), so there is one validation path and
//! refusals carry Kafka's error names.
//! Must never: change state except through a Kafka handler, answer a mutation unless the
//! console is read-write (the caller checks), or read a record past the high watermark (the
//! message browser reads through Fetch, which stops there).

use std::collections::BTreeMap;
use std::sync::Arc;

use hyper::{Method, StatusCode};
use kafka_protocol::messages::consumer_protocol_assignment::ConsumerProtocolAssignment;
use kafka_protocol::messages::create_topics_request::{CreatableTopic, CreatableTopicConfig};
use kafka_protocol::messages::describe_configs_request::DescribeConfigsResource;
use kafka_protocol::messages::incremental_alter_configs_request::{
    AlterConfigsResource, AlterableConfig,
};
use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::offset_commit_request::{
    OffsetCommitRequestPartition, OffsetCommitRequestTopic,
};
use kafka_protocol::messages::offset_delete_request::{
    OffsetDeleteRequestPartition, OffsetDeleteRequestTopic,
};
use kafka_protocol::messages::{
    BrokerId, CreateTopicsRequest, DeleteGroupsRequest, DeleteTopicsRequest,
    DescribeConfigsRequest, DescribeGroupsRequest, GroupId, IncrementalAlterConfigsRequest,
    ListGroupsRequest, ListOffsetsRequest, OffsetCommitRequest, OffsetDeleteRequest,
    OffsetFetchRequest, RequestKind, ResponseKind, TopicName,
};
use kafka_protocol::protocol::{Decodable, StrBytes};
use serde_json::{json, Value};

use super::kafka::{call, error_name};
use crate::broker::Broker;
use crate::limits;

/// Kafka's internal topic names, flagged in listings.
const OFFSETS_TOPIC: &str = "__consumer_offsets";
const TRANSACTION_STATE_TOPIC: &str = "__transaction_state";
/// DescribeConfigs / IncrementalAlterConfigs resource types.
const RESOURCE_TOPIC: i8 = 2;
const RESOURCE_BROKER: i8 = 4;
/// ListOffsets' special timestamps.
const LATEST: i64 = -1;
const EARLIEST: i64 = -2;

/// An answer: status and JSON body.
pub struct Answer {
    pub status: StatusCode,
    pub body: Value,
}

impl Answer {
    fn ok(body: Value) -> Answer {
        Answer {
            status: StatusCode::OK,
            body,
        }
    }

    /// `{error, message}` with `status`.
    pub fn error(status: StatusCode, error: &str, message: impl Into<String>) -> Answer {
        Answer {
            status,
            body: json!({"error": error, "message": message.into()}),
        }
    }

    /// A Kafka error code from a handler, with Kafka's name and the status it maps to.
    fn kafka(code: i16, message: Option<&StrBytes>) -> Answer {
        let name = error_name(code);
        let status = match name.as_str() {
            "UNKNOWN_TOPIC_OR_PARTITION" | "UNKNOWN_TOPIC_ID" | "GROUP_ID_NOT_FOUND" => {
                StatusCode::NOT_FOUND
            }
            "TOPIC_ALREADY_EXISTS" | "NON_EMPTY_GROUP" | "UNKNOWN_MEMBER_ID" => {
                StatusCode::CONFLICT
            }
            "NOT_COORDINATOR"
            | "COORDINATOR_NOT_AVAILABLE"
            | "COORDINATOR_LOAD_IN_PROGRESS"
            | "NOT_CONTROLLER"
            | "NOT_LEADER_OR_FOLLOWER"
            | "LEADER_NOT_AVAILABLE"
            | "REQUEST_TIMED_OUT" => StatusCode::SERVICE_UNAVAILABLE,
            "TOPIC_AUTHORIZATION_FAILED"
            | "GROUP_AUTHORIZATION_FAILED"
            | "CLUSTER_AUTHORIZATION_FAILED" => StatusCode::FORBIDDEN,
            _ => StatusCode::BAD_REQUEST,
        };
        let message = message.map_or_else(|| name.clone(), |m| m.to_string());
        Answer::error(status, &name, message)
    }

    fn not_found(what: impl Into<String>) -> Answer {
        Answer::error(StatusCode::NOT_FOUND, "NOT_FOUND", what)
    }

    fn bad_request(message: impl Into<String>) -> Answer {
        Answer::error(StatusCode::BAD_REQUEST, "BAD_REQUEST", message)
    }

    fn internal(e: anyhow::Error) -> Answer {
        Answer::error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "INTERNAL",
            format!("{e:#}"),
        )
    }
}

/// Whether `method` on an API path changes state (read-only consoles refuse it).
pub fn is_mutation(method: &Method) -> bool {
    !matches!(*method, Method::GET | Method::HEAD)
}

/// The methods a path answers, for 405's `Allow` (None: no such path).
fn allowed(segments: &[&str]) -> Option<&'static str> {
    Some(match segments {
        ["cluster"] | ["chain"] | ["brokers"] | ["groups"] | ["topics", _, "messages"] => {
            "GET, HEAD"
        }
        ["topics"] => "GET, HEAD, POST",
        ["topics", _] | ["groups", _] => "GET, HEAD, DELETE",
        ["topics", _, "configs"] | ["brokers", _, "configs"] | ["groups", _, "reset"] => "POST",
        ["groups", _, "offsets"] => "DELETE",
        _ => return None,
    })
}

/// Answers one `/api/v1/` request. `path` is what follows `/api/v1/`, `query` the raw query
/// string, `body` the request body (bounded by the listener).
pub async fn answer(
    broker: &Arc<Broker>,
    read_write: bool,
    method: &Method,
    path: &str,
    query: &str,
    body: &[u8],
) -> Answer {
    let decoded: Vec<String> = path
        .split('/')
        .filter(|s| !s.is_empty())
        .map(percent_decode)
        .collect();
    let segments: Vec<&str> = decoded.iter().map(String::as_str).collect();
    let Some(allow) = allowed(&segments) else {
        return Answer::not_found(format!("no API route /api/v1/{path}"));
    };
    let method_name = if *method == Method::HEAD {
        "GET"
    } else {
        method.as_str()
    };
    if !allow.split(", ").any(|m| m == method_name) {
        return Answer::error(
            StatusCode::METHOD_NOT_ALLOWED,
            "METHOD_NOT_ALLOWED",
            format!("{method} not allowed here (allowed: {allow})"),
        );
    }
    let query = parse_query(query);
    let body_json = || -> Result<Value> {
        if body.is_empty() {
            return Ok(json!({}));
        }
        serde_json::from_slice(body).map_err(|e| Answer::bad_request(format!("bad JSON: {e}")))
    };
    if is_mutation(method) && !read_write {
        return Answer::error(
            StatusCode::FORBIDDEN,
            "CONSOLE_READ_ONLY",
            "the console is read-only (--console read-only)",
        );
    }
    let result = match (method_name, segments.as_slice()) {
        ("GET", ["cluster"]) => Ok(cluster(broker, read_write)),
        ("GET", ["chain"]) => Ok(Answer::ok(super::chain::chain(broker))),
        ("GET", ["brokers"]) => brokers(broker).await,
        ("GET", ["topics"]) => Ok(topics(broker)),
        ("GET", ["topics", name]) => topic(broker, name).await,
        ("GET", ["topics", name, "messages"]) => super::messages::page(broker, name, &query).await,
        ("GET", ["groups"]) => groups(broker).await,
        ("GET", ["groups", id]) => group(broker, id).await,
        ("POST", ["topics"]) => match body_json() {
            Ok(b) => create_topic(broker, &b).await,
            Err(a) => Err(a),
        },
        ("DELETE", ["topics", name]) => delete_topic(broker, name).await,
        ("POST", ["topics", name, "configs"]) => match body_json() {
            Ok(b) => alter_configs(broker, RESOURCE_TOPIC, name, &b).await,
            Err(a) => Err(a),
        },
        ("POST", ["brokers", id, "configs"]) => match body_json() {
            Ok(b) => alter_configs(broker, RESOURCE_BROKER, id, &b).await,
            Err(a) => Err(a),
        },
        ("POST", ["groups", id, "reset"]) => match body_json() {
            Ok(b) => reset_offsets(broker, id, &b).await,
            Err(a) => Err(a),
        },
        ("DELETE", ["groups", id]) => delete_group(broker, id).await,
        ("DELETE", ["groups", id, "offsets"]) => delete_offsets(broker, id, &query).await,
        _ => Err(Answer::not_found(format!("no API route /api/v1/{path}"))),
    };
    result.unwrap_or_else(|a| a)
}

type Result<T> = std::result::Result<T, Answer>;

/// Calls a handler, bounded by [`limits::CONSOLE_CALL_TIMEOUT_MS`].
async fn kafka(broker: &Arc<Broker>, body: RequestKind) -> Result<ResponseKind> {
    let deadline = std::time::Duration::from_millis(limits::CONSOLE_CALL_TIMEOUT_MS);
    match tokio::time::timeout(deadline, call(broker, body)).await {
        Ok(Ok(r)) => Ok(r),
        Ok(Err(e)) => Err(Answer::internal(e)),
        Err(_) => Err(Answer::error(
            StatusCode::GATEWAY_TIMEOUT,
            "REQUEST_TIMED_OUT",
            "the broker did not answer in time",
        )),
    }
}

fn unexpected(r: &ResponseKind) -> Answer {
    Answer::internal(anyhow::anyhow!("unexpected response {r:?}"))
}

fn str_bytes(s: &str) -> StrBytes {
    StrBytes::from_string(s.to_string())
}

fn topic_name(s: &str) -> TopicName {
    TopicName(str_bytes(s))
}

fn is_internal(name: &str) -> bool {
    name == OFFSETS_TOPIC || name == TRANSACTION_STATE_TOPIC
}

/// `GET /cluster`: identity, brokers, controller, chain position, partition health.
fn cluster(broker: &Arc<Broker>, read_write: bool) -> Answer {
    let image = broker.metadata.image();
    let chain = broker.metadata.chain_status();
    let controller = crate::leadership::controller_id(&image, broker.controller_hint());
    let (mut partitions, mut offline, mut under_replicated, mut under_min_isr) = (0, 0, 0, 0);
    for t in image.topics.values() {
        let min_isr = t
            .configs
            .get("min.insync.replicas")
            .and_then(|v| v.parse::<usize>().ok())
            .unwrap_or(broker.config.broker.min_insync_replicas.max(1) as usize);
        for p in &t.partitions {
            partitions += 1;
            if p.leader < 0 {
                offline += 1;
            }
            if p.isr.len() < p.replicas.len() {
                under_replicated += 1;
            }
            if p.isr.len() < min_isr {
                under_min_isr += 1;
            }
        }
    }
    let stats = broker.groups().stats();
    Answer::ok(json!({
        "cluster_id": image.cluster_id,
        "version": env!("CARGO_PKG_VERSION"),
        "node_id": broker.config.node_id,
        "controller_id": controller,
        "brokers": image.brokers.values().map(|b| json!({
            "id": b.node_id, "host": b.host, "port": b.port, "rack": b.rack,
            "fenced": b.fenced, "in_controlled_shutdown": b.in_controlled_shutdown,
        })).collect::<Vec<_>>(),
        "topics": image.topics.len(),
        "partitions": {
            "total": partitions, "offline": offline,
            "under_replicated": under_replicated, "under_min_isr": under_min_isr,
        },
        "groups": {
            "members": stats.coordinator.members,
            "by_state": stats.coordinator.groups.iter()
                .map(|(state, n)| (format!("{state:?}"), json!(n)))
                .collect::<serde_json::Map<_, _>>(),
        },
        "chain": {
            "role": format!("{:?}", chain.role),
            "term": chain.term,
            "leader": chain.leader,
            "head_height": chain.head.height,
            "commit_height": chain.commit.height,
            "applied_height": image.position,
            "dead_blocks_collected": chain.collected_total,
        },
        "console": if read_write { "read-write" } else { "read-only" },
    }))
}

/// One DescribeConfigs resource's entries as `{name, value, source, read_only, sensitive}`.
async fn describe_configs(broker: &Arc<Broker>, kind: i8, name: &str) -> Result<Vec<Value>> {
    let request =
        DescribeConfigsRequest::default().with_resources(vec![DescribeConfigsResource::default()
            .with_resource_type(kind)
            .with_resource_name(str_bytes(name))]);
    let r = kafka(broker, RequestKind::DescribeConfigs(request)).await?;
    let ResponseKind::DescribeConfigs(r) = r else {
        return Err(unexpected(&r));
    };
    let Some(result) = r.results.into_iter().next() else {
        return Err(Answer::internal(anyhow::anyhow!(
            "no DescribeConfigs result"
        )));
    };
    if result.error_code != 0 {
        return Err(Answer::kafka(
            result.error_code,
            result.error_message.as_ref(),
        ));
    }
    Ok(result
        .configs
        .iter()
        .map(|c| {
            json!({
                "name": c.name.as_str(),
                "value": if c.is_sensitive { None } else { c.value.as_ref().map(|v| v.as_str()) },
                "source": config_source(c.config_source),
                "read_only": c.read_only,
                "sensitive": c.is_sensitive,
            })
        })
        .collect())
}

/// Kafka's `ConfigSource` names (`kafka-configs --describe --all` prints these).
fn config_source(source: i8) -> &'static str {
    match source {
        1 => "DYNAMIC_TOPIC_CONFIG",
        2 => "DYNAMIC_BROKER_CONFIG",
        3 => "DYNAMIC_DEFAULT_BROKER_CONFIG",
        4 => "STATIC_BROKER_CONFIG",
        5 => "DEFAULT_CONFIG",
        6 => "DYNAMIC_BROKER_LOGGER_CONFIG",
        7 => "CLIENT_METRICS_CONFIG",
        8 => "GROUP_CONFIG",
        _ => "UNKNOWN",
    }
}

/// `GET /brokers`: every registered broker; this node adds its log dir and its full config
/// (DescribeConfigs serves only the broker asked), the others their dynamic overrides.
async fn brokers(broker: &Arc<Broker>) -> Result<Answer> {
    let image = broker.metadata.image();
    let me = broker.config.node_id;
    let own_configs = describe_configs(broker, RESOURCE_BROKER, &me.to_string()).await?;
    let hosted = broker.partitions.all();
    let log_dir = json!({
        "path": broker.config.data_dir.display().to_string(),
        "partitions": hosted.len(),
        "size_bytes": hosted.iter().map(|p| p.log.size_bytes()).sum::<u64>(),
    });
    let out: Vec<Value> = image
        .brokers
        .values()
        .map(|b| {
            let this = b.node_id == me;
            let configs = if this {
                Value::Array(own_configs.clone())
            } else {
                Value::Array(
                    image
                        .broker_configs
                        .get(&b.node_id)
                        .into_iter()
                        .flatten()
                        .map(|(k, v)| {
                            json!({"name": k, "value": v, "source": "DYNAMIC_BROKER_CONFIG",
                                   "read_only": false, "sensitive": false})
                        })
                        .collect(),
                )
            };
            json!({
                "id": b.node_id,
                "host": b.host,
                "port": b.port,
                "rack": b.rack,
                "epoch": b.epoch,
                "fenced": b.fenced,
                "in_controlled_shutdown": b.in_controlled_shutdown,
                "this_node": this,
                "log_dirs": if this { json!([log_dir.clone()]) } else { Value::Null },
                "configs": configs,
            })
        })
        .collect();
    Ok(Answer::ok(json!({ "brokers": out })))
}

/// The hosted log's offsets and size for one partition, or nulls when not hosted here.
fn partition_log(broker: &Broker, topic: &josefine_meta::Topic, partition: i32) -> Value {
    match broker.partitions.get(topic.topic_id, partition) {
        Some(p) => json!({
            "log_start_offset": p.log.log_start_offset(),
            "high_watermark": p.log.high_watermark(),
            "log_end_offset": p.log.log_end_offset(),
            "size_bytes": p.log.size_bytes(),
            "segments": p.log.segment_count(),
        }),
        None => json!({
            "log_start_offset": null, "high_watermark": null, "log_end_offset": null,
            "size_bytes": null, "segments": null,
        }),
    }
}

/// `GET /topics`: every topic with its size and record span as hosted here.
fn topics(broker: &Arc<Broker>) -> Answer {
    let image = broker.metadata.image();
    let out: Vec<Value> = image
        .topics
        .values()
        .map(|t| {
            let (mut size, mut records, mut hosted) = (0u64, 0i64, 0);
            for p in &t.partitions {
                if let Some(h) = broker.partitions.get(t.topic_id, p.partition) {
                    hosted += 1;
                    size += h.log.size_bytes();
                    records += (h.log.high_watermark() - h.log.log_start_offset()).max(0);
                }
            }
            json!({
                "name": t.name,
                "id": t.topic_id.to_string(),
                "internal": is_internal(&t.name),
                "partitions": t.partitions.len(),
                "replication_factor": t.partitions.first().map_or(0, |p| p.replicas.len()),
                "under_replicated": t.partitions.iter().filter(|p| p.isr.len() < p.replicas.len()).count(),
                "offline": t.partitions.iter().filter(|p| p.leader < 0).count(),
                "hosted_partitions": hosted,
                "size_bytes": size,
                "records": records,
            })
        })
        .collect();
    Answer::ok(json!({ "topics": out }))
}

/// `GET /topics/{name}`: partitions (leader, epoch, replicas, ISR, offsets, size, segments)
/// and configs with their sources.
async fn topic(broker: &Arc<Broker>, name: &str) -> Result<Answer> {
    let image = broker.metadata.image();
    let Some(t) = image.topic_by_name(name) else {
        return Err(Answer::kafka(
            kafka_protocol::error::ResponseError::UnknownTopicOrPartition.code(),
            None,
        ));
    };
    let partitions: Vec<Value> = t
        .partitions
        .iter()
        .map(|p| {
            let mut v = json!({
                "partition": p.partition,
                "leader": p.leader,
                "leader_epoch": p.leader_epoch,
                "partition_epoch": p.partition_epoch,
                "replicas": p.replicas,
                "isr": p.isr,
            });
            if let (Value::Object(o), Value::Object(log)) =
                (&mut v, partition_log(broker, t, p.partition))
            {
                o.extend(log);
            }
            v
        })
        .collect();
    let configs = describe_configs(broker, RESOURCE_TOPIC, name).await?;
    Ok(Answer::ok(json!({
        "name": t.name,
        "id": t.topic_id.to_string(),
        "internal": is_internal(&t.name),
        "replication_factor": t.partitions.first().map_or(0, |p| p.replicas.len()),
        "partitions": partitions,
        "configs": configs,
    })))
}

/// `GET /groups`: the groups this node coordinates (ListGroups).
async fn groups(broker: &Arc<Broker>) -> Result<Answer> {
    let r = kafka(
        broker,
        RequestKind::ListGroups(ListGroupsRequest::default()),
    )
    .await?;
    let ResponseKind::ListGroups(r) = r else {
        return Err(unexpected(&r));
    };
    if r.error_code != 0 {
        return Err(Answer::kafka(r.error_code, None));
    }
    let mut out: Vec<Value> = r
        .groups
        .iter()
        .map(|g| {
            json!({
                "group_id": g.group_id.as_str(),
                "state": g.group_state.as_str(),
                "protocol_type": g.protocol_type.as_str(),
                "type": g.group_type.as_str(),
            })
        })
        .collect();
    out.sort_by(|a, b| a["group_id"].as_str().cmp(&b["group_id"].as_str()));
    Ok(Answer::ok(json!({ "groups": out })))
}

/// A group's description (DescribeGroups) or its Kafka error.
async fn describe_group(
    broker: &Arc<Broker>,
    id: &str,
) -> Result<kafka_protocol::messages::describe_groups_response::DescribedGroup> {
    let request = DescribeGroupsRequest::default().with_groups(vec![GroupId(str_bytes(id))]);
    let r = kafka(broker, RequestKind::DescribeGroups(request)).await?;
    let ResponseKind::DescribeGroups(r) = r else {
        return Err(unexpected(&r));
    };
    let Some(g) = r.groups.into_iter().next() else {
        return Err(Answer::internal(anyhow::anyhow!(
            "no DescribeGroups result"
        )));
    };
    if g.error_code != 0 {
        return Err(Answer::kafka(g.error_code, g.error_message.as_ref()));
    }
    Ok(g)
}

/// A group's committed offsets: (topic, partition) -> offset.
async fn committed(broker: &Arc<Broker>, id: &str) -> Result<BTreeMap<(String, i32), i64>> {
    let request = OffsetFetchRequest::default()
        .with_group_id(GroupId(str_bytes(id)))
        .with_topics(None);
    let r = kafka(broker, RequestKind::OffsetFetch(request)).await?;
    let ResponseKind::OffsetFetch(r) = r else {
        return Err(unexpected(&r));
    };
    if r.error_code != 0 {
        return Err(Answer::kafka(r.error_code, None));
    }
    let mut out = BTreeMap::new();
    for t in &r.topics {
        for p in &t.partitions {
            if p.error_code == 0 && p.committed_offset >= 0 {
                out.insert((t.name.to_string(), p.partition_index), p.committed_offset);
            }
        }
    }
    Ok(out)
}

/// The high watermark of a partition hosted here.
fn end_offset(broker: &Broker, topic: &str, partition: i32) -> Option<i64> {
    let image = broker.metadata.image();
    let t = image.topic_by_name(topic)?;
    broker
        .partitions
        .get(t.topic_id, partition)
        .map(|p| p.log.high_watermark())
}

/// `GET /groups/{id}`: state, members with their assignments, committed/end/lag per partition.
async fn group(broker: &Arc<Broker>, id: &str) -> Result<Answer> {
    let g = describe_group(broker, id).await?;
    if g.group_state.as_str() == "Dead" {
        return Err(Answer::kafka(
            kafka_protocol::error::ResponseError::GroupIdNotFound.code(),
            Some(&str_bytes(&format!("group {id} does not exist"))),
        ));
    }
    let members: Vec<Value> = g
        .members
        .iter()
        .map(|m| {
            let assignment = decode_assignment(&g.protocol_type, &m.member_assignment);
            json!({
                "member_id": m.member_id.as_str(),
                "group_instance_id": m.group_instance_id.as_ref().map(|s| s.as_str()),
                "client_id": m.client_id.as_str(),
                "client_host": m.client_host.as_str(),
                "assignment": assignment,
            })
        })
        .collect();
    let offsets: Vec<Value> = committed(broker, id)
        .await?
        .into_iter()
        .map(|((topic, partition), committed)| {
            let end = end_offset(broker, &topic, partition);
            json!({
                "topic": topic,
                "partition": partition,
                "committed": committed,
                "end": end,
                "lag": end.map(|e| (e - committed).max(0)),
            })
        })
        .collect();
    Ok(Answer::ok(json!({
        "group_id": id,
        "state": g.group_state.as_str(),
        "protocol_type": g.protocol_type.as_str(),
        "protocol": g.protocol_data.as_str(),
        "members": members,
        "offsets": offsets,
    })))
}

/// A consumer member's assignment as `[{topic, partitions}]`; other protocols' bytes stay
/// opaque (null).
fn decode_assignment(protocol_type: &StrBytes, bytes: &bytes::Bytes) -> Value {
    if protocol_type.as_str() != "consumer" || bytes.len() < 2 {
        return Value::Null;
    }
    let mut buf = bytes.clone();
    let version = i16::from_be_bytes([buf[0], buf[1]]);
    bytes::Buf::advance(&mut buf, 2);
    match ConsumerProtocolAssignment::decode(&mut buf, version.clamp(0, 3)) {
        Ok(a) => Value::Array(
            a.assigned_partitions
                .iter()
                .map(|tp| json!({"topic": tp.topic.as_str(), "partitions": tp.partitions}))
                .collect(),
        ),
        Err(_) => Value::Null,
    }
}

fn field_str<'a>(body: &'a Value, key: &str) -> Result<&'a str> {
    body.get(key)
        .and_then(Value::as_str)
        .ok_or_else(|| Answer::bad_request(format!("`{key}` (a string) is required")))
}

fn field_i64(body: &Value, key: &str) -> Result<Option<i64>> {
    match body.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => v
            .as_i64()
            .map(Some)
            .ok_or_else(|| Answer::bad_request(format!("`{key}` must be an integer"))),
    }
}

/// `POST /topics {name, partitions?, replication_factor?, configs?: {k: v}}`: CreateTopics
/// (-1 takes the broker defaults, as kafka-topics without the flags).
async fn create_topic(broker: &Arc<Broker>, body: &Value) -> Result<Answer> {
    let name = field_str(body, "name")?;
    let partitions = field_i64(body, "partitions")?.unwrap_or(-1);
    let rf = field_i64(body, "replication_factor")?.unwrap_or(-1);
    let (Ok(partitions), Ok(rf)) = (i32::try_from(partitions), i16::try_from(rf)) else {
        return Err(Answer::bad_request(
            "partitions or replication_factor out of range",
        ));
    };
    let mut configs = Vec::new();
    if let Some(map) = body.get("configs").and_then(Value::as_object) {
        for (k, v) in map {
            let value = match v {
                Value::String(s) => s.clone(),
                Value::Null => continue,
                other => other.to_string(),
            };
            configs.push(
                CreatableTopicConfig::default()
                    .with_name(str_bytes(k))
                    .with_value(Some(StrBytes::from_string(value))),
            );
        }
    }
    let request = CreateTopicsRequest::default()
        .with_timeout_ms(limits::CONSOLE_CALL_TIMEOUT_MS as i32)
        .with_topics(vec![CreatableTopic::default()
            .with_name(topic_name(name))
            .with_num_partitions(partitions)
            .with_replication_factor(rf)
            .with_configs(configs)]);
    let r = kafka(broker, RequestKind::CreateTopics(request)).await?;
    let ResponseKind::CreateTopics(r) = r else {
        return Err(unexpected(&r));
    };
    let Some(t) = r.topics.first() else {
        return Err(Answer::internal(anyhow::anyhow!("no CreateTopics result")));
    };
    if t.error_code != 0 {
        return Err(Answer::kafka(t.error_code, t.error_message.as_ref()));
    }
    Ok(Answer {
        status: StatusCode::CREATED,
        body: json!({
            "name": name,
            "id": t.topic_id.to_string(),
            "partitions": t.num_partitions,
            "replication_factor": t.replication_factor,
        }),
    })
}

/// `DELETE /topics/{name}`: DeleteTopics.
async fn delete_topic(broker: &Arc<Broker>, name: &str) -> Result<Answer> {
    let request = DeleteTopicsRequest::default()
        .with_timeout_ms(limits::CONSOLE_CALL_TIMEOUT_MS as i32)
        .with_topic_names(vec![topic_name(name)]);
    let r = kafka(broker, RequestKind::DeleteTopics(request)).await?;
    let ResponseKind::DeleteTopics(r) = r else {
        return Err(unexpected(&r));
    };
    match r.responses.first() {
        Some(t) if t.error_code != 0 => Err(Answer::kafka(t.error_code, t.error_message.as_ref())),
        Some(_) => Ok(Answer::ok(json!({"deleted": name}))),
        None => Err(Answer::internal(anyhow::anyhow!("no DeleteTopics result"))),
    }
}

/// `POST /topics/{name}/configs` or `/brokers/{id}/configs` with `{"set": {k: v}, "delete":
/// [k], "validate_only": false}`: IncrementalAlterConfigs (SET and DELETE operations).
async fn alter_configs(broker: &Arc<Broker>, kind: i8, name: &str, body: &Value) -> Result<Answer> {
    const SET: i8 = 0;
    const DELETE: i8 = 1;
    let mut configs = Vec::new();
    if let Some(map) = body.get("set").and_then(Value::as_object) {
        for (k, v) in map {
            let value = match v {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            configs.push(
                AlterableConfig::default()
                    .with_name(str_bytes(k))
                    .with_config_operation(SET)
                    .with_value(Some(StrBytes::from_string(value))),
            );
        }
    }
    if let Some(keys) = body.get("delete").and_then(Value::as_array) {
        for k in keys {
            let Some(k) = k.as_str() else {
                return Err(Answer::bad_request("`delete` lists config names (strings)"));
            };
            configs.push(
                AlterableConfig::default()
                    .with_name(str_bytes(k))
                    .with_config_operation(DELETE),
            );
        }
    }
    if configs.is_empty() {
        return Err(Answer::bad_request(
            "nothing to change: give `set` and/or `delete`",
        ));
    }
    let validate_only = body
        .get("validate_only")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    let request = IncrementalAlterConfigsRequest::default()
        .with_validate_only(validate_only)
        .with_resources(vec![AlterConfigsResource::default()
            .with_resource_type(kind)
            .with_resource_name(str_bytes(name))
            .with_configs(configs)]);
    let r = kafka(broker, RequestKind::IncrementalAlterConfigs(request)).await?;
    let ResponseKind::IncrementalAlterConfigs(r) = r else {
        return Err(unexpected(&r));
    };
    match r.responses.first() {
        Some(c) if c.error_code != 0 => Err(Answer::kafka(c.error_code, c.error_message.as_ref())),
        Some(_) => Ok(Answer::ok(
            json!({"altered": name, "validate_only": validate_only}),
        )),
        None => Err(Answer::internal(anyhow::anyhow!(
            "no IncrementalAlterConfigs result"
        ))),
    }
}

/// ListOffsets for the given partitions of `topic` at `timestamp` (or EARLIEST/LATEST):
/// partition -> offset (-1: none at or after that time).
pub async fn list_offsets(
    broker: &Arc<Broker>,
    topic: &str,
    partitions: &[i32],
    timestamp: i64,
) -> Result<BTreeMap<i32, i64>> {
    let request = ListOffsetsRequest::default()
        .with_replica_id(BrokerId(-1))
        .with_timeout_ms(limits::CONSOLE_CALL_TIMEOUT_MS as i32)
        .with_topics(vec![ListOffsetsTopic::default()
            .with_name(topic_name(topic))
            .with_partitions(
                partitions
                    .iter()
                    .map(|p| {
                        ListOffsetsPartition::default()
                            .with_partition_index(*p)
                            .with_current_leader_epoch(-1)
                            .with_timestamp(timestamp)
                    })
                    .collect(),
            )]);
    let r = kafka(broker, RequestKind::ListOffsets(request)).await?;
    let ResponseKind::ListOffsets(r) = r else {
        return Err(unexpected(&r));
    };
    let mut out = BTreeMap::new();
    for t in &r.topics {
        for p in &t.partitions {
            if p.error_code != 0 {
                return Err(Answer::kafka(p.error_code, None));
            }
            out.insert(p.partition_index, p.offset);
        }
    }
    Ok(out)
}

/// `POST /groups/{id}/reset {topic, partitions?, to: earliest|latest|offset|timestamp|shift,
/// value?, dry_run?}`: like `kafka-consumer-groups --reset-offsets`: only for an Empty (or
/// unknown) group; targets from ListOffsets, clamped to the log; committed with OffsetCommit
/// as an admin (generation -1, no member).
async fn reset_offsets(broker: &Arc<Broker>, id: &str, body: &Value) -> Result<Answer> {
    let topic = field_str(body, "topic")?;
    let to = field_str(body, "to")?;
    let value = field_i64(body, "value")?;
    let dry_run = body
        .get("dry_run")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    let g = describe_group(broker, id).await?;
    let state = g.group_state.as_str();
    if !matches!(state, "Empty" | "Dead") {
        return Err(Answer::error(
            StatusCode::CONFLICT,
            "NON_EMPTY_GROUP",
            format!("group {id} is {state}: offsets can be reset only when it is Empty"),
        ));
    }
    let image = broker.metadata.image();
    let Some(t) = image.topic_by_name(topic) else {
        return Err(Answer::kafka(
            kafka_protocol::error::ResponseError::UnknownTopicOrPartition.code(),
            None,
        ));
    };
    let partitions: Vec<i32> = match body.get("partitions").and_then(Value::as_array) {
        Some(list) => list
            .iter()
            .map(|p| {
                p.as_i64()
                    .and_then(|p| i32::try_from(p).ok())
                    .filter(|p| (0..t.partitions.len() as i32).contains(p))
                    .ok_or_else(|| Answer::bad_request(format!("no partition {p} in {topic}")))
            })
            .collect::<Result<_>>()?,
        None => t.partitions.iter().map(|p| p.partition).collect(),
    };
    drop(image);
    let earliest = list_offsets(broker, topic, &partitions, EARLIEST).await?;
    let latest = list_offsets(broker, topic, &partitions, LATEST).await?;
    let current = committed(broker, id).await?;
    let need = |what: &str| {
        value.ok_or_else(|| Answer::bad_request(format!("`value` ({what}) is required")))
    };
    let targets: BTreeMap<i32, i64> = match to {
        "earliest" => earliest.clone(),
        "latest" => latest.clone(),
        "offset" => {
            let v = need("the offset")?;
            partitions.iter().map(|p| (*p, v)).collect()
        }
        "timestamp" => {
            let ts = need("milliseconds since the epoch")?;
            let mut found = list_offsets(broker, topic, &partitions, ts).await?;
            for (p, o) in found.iter_mut() {
                if *o < 0 {
                    *o = latest[p]; // nothing at or after it: the end, as Kafka's tool does
                }
            }
            found
        }
        "shift" => {
            let by = need("the shift")?;
            partitions
                .iter()
                .map(|p| {
                    let from = current
                        .get(&(topic.to_string(), *p))
                        .copied()
                        .unwrap_or(earliest[p]);
                    (*p, from.saturating_add(by))
                })
                .collect()
        }
        other => {
            return Err(Answer::bad_request(format!(
                "`to` must be earliest, latest, offset, timestamp or shift (not {other})"
            )))
        }
    };
    let clamped: BTreeMap<i32, i64> = targets
        .into_iter()
        .map(|(p, o)| (p, o.clamp(earliest[&p], latest[&p].max(earliest[&p]))))
        .collect();
    let rows: Vec<Value> = clamped
        .iter()
        .map(|(p, o)| {
            json!({
                "topic": topic, "partition": p,
                "previous": current.get(&(topic.to_string(), *p)),
                "target": o,
            })
        })
        .collect();
    if !dry_run {
        let request = OffsetCommitRequest::default()
            .with_group_id(GroupId(str_bytes(id)))
            .with_generation_id_or_member_epoch(-1)
            .with_member_id(StrBytes::default())
            .with_retention_time_ms(-1)
            .with_topics(vec![OffsetCommitRequestTopic::default()
                .with_name(topic_name(topic))
                .with_partitions(
                    clamped
                        .iter()
                        .map(|(p, o)| {
                            OffsetCommitRequestPartition::default()
                                .with_partition_index(*p)
                                .with_committed_offset(*o)
                                .with_committed_leader_epoch(-1)
                        })
                        .collect(),
                )]);
        let r = kafka(broker, RequestKind::OffsetCommit(request)).await?;
        let ResponseKind::OffsetCommit(r) = r else {
            return Err(unexpected(&r));
        };
        for t in &r.topics {
            for p in &t.partitions {
                if p.error_code != 0 {
                    return Err(Answer::kafka(p.error_code, None));
                }
            }
        }
    }
    Ok(Answer::ok(json!({
        "group_id": id, "dry_run": dry_run, "offsets": rows,
    })))
}

/// `DELETE /groups/{id}`: DeleteGroups (Kafka refuses a group with members: NON_EMPTY_GROUP).
async fn delete_group(broker: &Arc<Broker>, id: &str) -> Result<Answer> {
    let request = DeleteGroupsRequest::default().with_groups_names(vec![GroupId(str_bytes(id))]);
    let r = kafka(broker, RequestKind::DeleteGroups(request)).await?;
    let ResponseKind::DeleteGroups(r) = r else {
        return Err(unexpected(&r));
    };
    match r.results.first() {
        Some(g) if g.error_code != 0 => Err(Answer::kafka(g.error_code, None)),
        Some(_) => Ok(Answer::ok(json!({"deleted": id}))),
        None => Err(Answer::internal(anyhow::anyhow!("no DeleteGroups result"))),
    }
}

/// `DELETE /groups/{id}/offsets?topic=T[&partition=P]`: OffsetDelete for a topic's partitions.
async fn delete_offsets(
    broker: &Arc<Broker>,
    id: &str,
    query: &BTreeMap<String, String>,
) -> Result<Answer> {
    let Some(topic) = query.get("topic") else {
        return Err(Answer::bad_request("`topic` query parameter is required"));
    };
    let image = broker.metadata.image();
    let partitions: Vec<i32> = match query.get("partition") {
        Some(p) => vec![p
            .parse()
            .map_err(|_| Answer::bad_request("`partition` must be an integer"))?],
        None => match image.topic_by_name(topic) {
            Some(t) => t.partitions.iter().map(|p| p.partition).collect(),
            None => {
                return Err(Answer::kafka(
                    kafka_protocol::error::ResponseError::UnknownTopicOrPartition.code(),
                    None,
                ))
            }
        },
    };
    drop(image);
    let request = OffsetDeleteRequest::default()
        .with_group_id(GroupId(str_bytes(id)))
        .with_topics(vec![OffsetDeleteRequestTopic::default()
            .with_name(topic_name(topic))
            .with_partitions(
                partitions
                    .iter()
                    .map(|p| OffsetDeleteRequestPartition::default().with_partition_index(*p))
                    .collect(),
            )]);
    let r = kafka(broker, RequestKind::OffsetDelete(request)).await?;
    let ResponseKind::OffsetDelete(r) = r else {
        return Err(unexpected(&r));
    };
    if r.error_code != 0 {
        return Err(Answer::kafka(r.error_code, None));
    }
    for t in &r.topics {
        for p in &t.partitions {
            if p.error_code != 0 {
                return Err(Answer::kafka(p.error_code, None));
            }
        }
    }
    Ok(Answer::ok(
        json!({"group_id": id, "topic": topic, "deleted_partitions": partitions}),
    ))
}

/// `a=1&b=x%20y` -> {a: 1, b: "x y"} (later keys win).
pub fn parse_query(query: &str) -> BTreeMap<String, String> {
    query
        .split('&')
        .filter(|kv| !kv.is_empty())
        .map(|kv| {
            let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
            (percent_decode(k), percent_decode(&v.replace('+', " ")))
        })
        .collect()
}

/// Decodes `%XX` escapes (invalid ones stay as written; invalid UTF-8 is replaced).
pub fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    let hex = |b: u8| (b as char).to_digit(16);
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            if let (Some(h), Some(l)) = (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                out.push((h * 16 + l) as u8);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percent_decoding_and_queries() {
        assert_eq!(percent_decode("a%20b%2Fc"), "a b/c");
        assert_eq!(percent_decode("100%"), "100%");
        assert_eq!(percent_decode("%zz"), "%zz");
        let q = parse_query("seek=offset&value=5&filter=a+b");
        assert_eq!(q["seek"], "offset");
        assert_eq!(q["filter"], "a b");
    }

    #[test]
    fn routes_and_their_methods() {
        assert_eq!(allowed(&["topics"]), Some("GET, HEAD, POST"));
        assert_eq!(allowed(&["topics", "t", "messages"]), Some("GET, HEAD"));
        assert_eq!(allowed(&["chain"]), Some("GET, HEAD"));
        assert_eq!(allowed(&["nope"]), None);
        assert!(is_mutation(&Method::POST) && is_mutation(&Method::DELETE));
        assert!(!is_mutation(&Method::GET));
    }

    #[test]
    fn kafka_errors_keep_their_names() {
        let a = Answer::kafka(36, None);
        assert_eq!(a.status, StatusCode::CONFLICT);
        assert_eq!(a.body["error"], "TOPIC_ALREADY_EXISTS");
        let a = Answer::kafka(3, None);
        assert_eq!(a.status, StatusCode::NOT_FOUND);
        assert_eq!(a.body["error"], "UNKNOWN_TOPIC_OR_PARTITION");
    }
}

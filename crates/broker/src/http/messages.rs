//! The message browser: `GET /api/v1/topics/{name}/messages`, one page of a partition's
//! records read through the Kafka handlers (ListOffsets to seek, Fetch to read).
//!
//! Owns: seeking (earliest, latest−N, offset, timestamp), the page bounds
//! ([`limits::CONSOLE_PAGE_RECORDS_MAX`] records, [`limits::CONSOLE_PAGE_BYTES_MAX`] bytes),
//! showing keys, values and headers as JSON, text or hex, and cutting values past
//! [`limits::CONSOLE_VALUE_BYTES_SHOWN_MAX`]. Must never: return a record at or past the high
//! watermark (Fetch as a consumer stops there, and every record is checked against the
//! watermark the same Fetch reported), or hold more than one page of records.

use std::collections::BTreeMap;
use std::sync::Arc;

use bytes::Bytes;
use hyper::StatusCode;
use josefine_log::batch::BatchHeader;
use josefine_log::limits::BATCH_HEADER_BYTES;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::{BrokerId, FetchRequest, RequestKind, ResponseKind, TopicName};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::records::{Compression, Record, RecordBatchDecoder, TimestampType};
use serde_json::{json, Value};

use super::api::{list_offsets, Answer};
use crate::broker::Broker;
use crate::limits;

const LATEST: i64 = -1;
const EARLIEST: i64 = -2;
/// Records a page shows when `limit` is not given.
const PAGE_RECORDS_DEFAULT: usize = 100;

/// How keys and values are shown.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Format {
    /// JSON if it parses, else text if UTF-8, else hex.
    Auto,
    Json,
    Text,
    Hex,
}

/// One page of records; see the module doc for the query parameters.
pub async fn page(
    broker: &Arc<Broker>,
    topic: &str,
    query: &BTreeMap<String, String>,
) -> Result<Answer, Answer> {
    let bad = |m: String| Answer::error(StatusCode::BAD_REQUEST, "BAD_REQUEST", m);
    let int = |key: &str| -> Result<Option<i64>, Answer> {
        query
            .get(key)
            .map(|v| {
                v.parse::<i64>()
                    .map_err(|_| bad(format!("`{key}` must be an integer")))
            })
            .transpose()
    };
    let partition = int("partition")?.unwrap_or(0);
    let partition = i32::try_from(partition).map_err(|_| bad("bad `partition`".into()))?;
    let limit = int("limit")?
        .map_or(PAGE_RECORDS_DEFAULT, |l| l.max(1) as usize)
        .min(limits::CONSOLE_PAGE_RECORDS_MAX);
    let format = match query.get("format").map(String::as_str) {
        None | Some("auto") => Format::Auto,
        Some("json") => Format::Json,
        Some("text") => Format::Text,
        Some("hex") => Format::Hex,
        Some(other) => {
            return Err(bad(format!(
                "`format` must be auto, json, text or hex (not {other})"
            )))
        }
    };
    let filter = query.get("filter").filter(|f| !f.is_empty()).cloned();
    let seek = query.get("seek").map_or("earliest", String::as_str);
    let value = int("value")?;

    let start_of_log = list_offsets(broker, topic, &[partition], EARLIEST).await?[&partition];
    let end = list_offsets(broker, topic, &[partition], LATEST).await?[&partition];
    let start = match seek {
        "earliest" => start_of_log,
        "latest" => end - value.unwrap_or(limit as i64).max(0),
        "offset" => value.ok_or_else(|| bad("`value` (the offset) is required".into()))?,
        "timestamp" => {
            let ts = value.ok_or_else(|| bad("`value` (ms since the epoch) is required".into()))?;
            match list_offsets(broker, topic, &[partition], ts).await?[&partition] {
                -1 => end,
                o => o,
            }
        }
        other => {
            return Err(bad(format!(
                "`seek` must be earliest, latest, offset or timestamp (not {other})"
            )))
        }
    }
    .clamp(start_of_log, end.max(start_of_log));

    let mut records = Vec::new();
    let mut bytes_used = 0usize;
    let mut next = start;
    let mut high_watermark = end;
    let mut scanned = 0usize;
    'fetch: while records.len() < limit && next < high_watermark {
        let room = limits::CONSOLE_PAGE_BYTES_MAX - bytes_used;
        let (hw, data) = fetch(broker, topic, partition, next, room).await?;
        high_watermark = hw;
        let Some(mut data) = data.filter(|d| !d.is_empty()) else {
            break;
        };
        let before = next;
        while data.len() >= BATCH_HEADER_BYTES {
            let Ok(header) = BatchHeader::parse(&data) else {
                break;
            };
            let size = header.total_bytes();
            if size > data.len() {
                break; // a partial batch at the end of the Fetch answer
            }
            let mut batch = data.split_to(size);
            next = next.max(header.last_offset() + 1);
            if header.is_control() {
                continue;
            }
            let set = RecordBatchDecoder::decode_with_custom_compression(
                &mut batch,
                Some(decompress as fn(&mut Bytes, Compression) -> anyhow::Result<Bytes>),
            )
            .map_err(|e| {
                Answer::error(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "CORRUPT_MESSAGE",
                    format!("{e:#}"),
                )
            })?;
            for r in set.records {
                if r.offset < start || r.control {
                    continue;
                }
                if r.offset >= high_watermark {
                    break 'fetch;
                }
                scanned += 1;
                let size = record_bytes(&r);
                if !records.is_empty() && bytes_used + size > limits::CONSOLE_PAGE_BYTES_MAX {
                    next = r.offset;
                    break 'fetch;
                }
                if filter.as_deref().is_some_and(|f| !matches(&r, f)) {
                    next = r.offset + 1;
                    continue;
                }
                bytes_used += size;
                records.push(show(&r, format));
                next = r.offset + 1;
                if records.len() >= limit {
                    break 'fetch;
                }
            }
        }
        if next <= before {
            break; // no progress: nothing complete to read
        }
    }
    Ok(Answer {
        status: StatusCode::OK,
        body: json!({
            "topic": topic,
            "partition": partition,
            "log_start_offset": start_of_log,
            "high_watermark": high_watermark,
            "start": start,
            "next_offset": next,
            "records_scanned": scanned,
            "records": records,
        }),
    })
}

/// One Fetch (as a consumer, read_uncommitted, no wait) at `offset`: (high watermark, records).
async fn fetch(
    broker: &Arc<Broker>,
    topic: &str,
    partition: i32,
    offset: i64,
    max_bytes: usize,
) -> Result<(i64, Option<Bytes>), Answer> {
    let max_bytes = i32::try_from(max_bytes.max(1024)).unwrap_or(i32::MAX);
    let request = FetchRequest::default()
        .with_replica_id(BrokerId(-1))
        .with_max_wait_ms(0)
        .with_min_bytes(0)
        .with_max_bytes(max_bytes)
        .with_isolation_level(0)
        .with_session_epoch(-1)
        .with_topics(vec![FetchTopic::default()
            .with_topic(TopicName(StrBytes::from_string(topic.to_string())))
            .with_partitions(vec![FetchPartition::default()
                .with_partition(partition)
                .with_current_leader_epoch(-1)
                .with_fetch_offset(offset)
                .with_last_fetched_epoch(-1)
                .with_log_start_offset(-1)
                .with_partition_max_bytes(max_bytes)])]);
    let deadline = std::time::Duration::from_millis(limits::CONSOLE_CALL_TIMEOUT_MS);
    let r = match tokio::time::timeout(
        deadline,
        super::kafka::call(broker, RequestKind::Fetch(request)),
    )
    .await
    {
        Ok(Ok(r)) => r,
        Ok(Err(e)) => {
            return Err(Answer::error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "INTERNAL",
                format!("{e:#}"),
            ))
        }
        Err(_) => {
            return Err(Answer::error(
                StatusCode::GATEWAY_TIMEOUT,
                "REQUEST_TIMED_OUT",
                "Fetch did not answer in time",
            ))
        }
    };
    let ResponseKind::Fetch(r) = r else {
        return Err(Answer::error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "INTERNAL",
            "unexpected response to Fetch",
        ));
    };
    let kafka_error = |code: i16| {
        Answer::error(
            StatusCode::BAD_REQUEST,
            &super::kafka::error_name(code),
            format!("Fetch: {}", super::kafka::error_name(code)),
        )
    };
    if r.error_code != 0 {
        return Err(kafka_error(r.error_code));
    }
    let Some(p) = r.responses.into_iter().flat_map(|t| t.partitions).next() else {
        return Err(kafka_error(3));
    };
    if p.error_code != 0 {
        return Err(kafka_error(p.error_code));
    }
    Ok((p.high_watermark, p.records))
}

/// kafka-protocol's decompression hook, served by the log's decompressor (the same codecs and
/// the same decompressed-size cap as produce validation).
fn decompress(body: &mut Bytes, compression: Compression) -> anyhow::Result<Bytes> {
    use josefine_log::batch::Compression as C;
    let c = match compression {
        Compression::None => C::None,
        Compression::Gzip => C::Gzip,
        Compression::Snappy => C::Snappy,
        Compression::Lz4 => C::Lz4,
        Compression::Zstd => C::Zstd,
    };
    Ok(Bytes::from(josefine_log::decompress(c, body)?))
}

/// The bytes a record costs a page: key, value and headers as stored.
fn record_bytes(r: &Record) -> usize {
    r.key.as_ref().map_or(0, Bytes::len)
        + r.value.as_ref().map_or(0, Bytes::len)
        + r.headers
            .iter()
            .map(|(k, v)| k.len() + v.as_ref().map_or(0, Bytes::len))
            .sum::<usize>()
}

/// Whether the key or value contains `needle` (as bytes).
fn matches(r: &Record, needle: &str) -> bool {
    let needle = needle.as_bytes();
    let has = |b: &Option<Bytes>| {
        b.as_ref()
            .is_some_and(|b| b.windows(needle.len()).any(|w| w == needle))
    };
    has(&r.key) || has(&r.value)
}

fn show(r: &Record, format: Format) -> Value {
    json!({
        "offset": r.offset,
        "timestamp": r.timestamp,
        "timestamp_type": match r.timestamp_type {
            TimestampType::Creation => "CreateTime",
            TimestampType::LogAppend => "LogAppendTime",
        },
        "leader_epoch": r.partition_leader_epoch,
        "producer_id": r.producer_id,
        "transactional": r.transactional,
        "key": r.key.as_ref().map(|b| shown(b, format)),
        "value": r.value.as_ref().map(|b| shown(b, format)),
        "headers": r.headers.iter().map(|(k, v)| json!({
            "key": k.as_str(),
            "value": v.as_ref().map(|b| shown(b, format)),
        })).collect::<Vec<_>>(),
    })
}

/// `{encoding, data, size, truncated}` for one key, value or header value.
fn shown(bytes: &Bytes, format: Format) -> Value {
    let size = bytes.len();
    let cut = size > limits::CONSOLE_VALUE_BYTES_SHOWN_MAX;
    let kept = &bytes[..size.min(limits::CONSOLE_VALUE_BYTES_SHOWN_MAX)];
    let text = std::str::from_utf8(kept).ok();
    let parsed = || {
        if cut {
            None
        } else {
            text.and_then(|t| serde_json::from_str::<Value>(t).ok())
        }
    };
    let (encoding, data) = match format {
        Format::Hex => ("hex", Value::String(hex(kept))),
        Format::Json | Format::Auto => match parsed() {
            Some(v) => ("json", v),
            None => match text {
                Some(t) => ("text", Value::String(t.to_string())),
                None if format == Format::Auto => ("hex", Value::String(hex(kept))),
                None => (
                    "text",
                    Value::String(String::from_utf8_lossy(kept).into_owned()),
                ),
            },
        },
        Format::Text => match text {
            Some(t) => ("text", Value::String(t.to_string())),
            // A cut may split a character: show what decodes.
            None => (
                "text",
                Value::String(String::from_utf8_lossy(kept).into_owned()),
            ),
        },
    };
    json!({"encoding": encoding, "data": data, "size": size, "truncated": cut})
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(out, "{b:02x}");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_shown_as_json_text_or_hex_and_cut() {
        let v = shown(&Bytes::from_static(b"{\"a\":1}"), Format::Auto);
        assert_eq!(
            (v["encoding"].as_str(), &v["data"]["a"]),
            (Some("json"), &json!(1))
        );
        let v = shown(&Bytes::from_static(b"hello"), Format::Auto);
        assert_eq!(v["encoding"], "text");
        let v = shown(&Bytes::from_static(&[0xff, 0x00]), Format::Auto);
        assert_eq!(
            (v["encoding"].as_str(), v["data"].as_str()),
            (Some("hex"), Some("ff00"))
        );
        let big = Bytes::from(vec![b'x'; limits::CONSOLE_VALUE_BYTES_SHOWN_MAX + 10]);
        let v = shown(&big, Format::Text);
        assert_eq!(v["truncated"], true);
        assert_eq!(v["size"], limits::CONSOLE_VALUE_BYTES_SHOWN_MAX + 10);
        assert_eq!(
            v["data"].as_str().unwrap().len(),
            limits::CONSOLE_VALUE_BYTES_SHOWN_MAX
        );
    }
}

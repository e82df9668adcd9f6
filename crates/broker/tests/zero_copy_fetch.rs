//! Zero-copy fetch (issue 13): a Fetch answered from segment files with `sendfile` over a
//! plaintext socket is byte for byte the frame the copying path encodes, for every Fetch
//! version, both isolation levels (aborted transactions, LSO), random offsets and limits; and
//! reads racing with rolls and with DeleteRecords/retention deleting the segments being sent
//! only ever return whole, valid batches.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{BufMut, Bytes, BytesMut};
use common::{start_broker, Client};
use josefine::clock::now_ms;
use josefine::codec::decode_request;
use josefine::dispatch::{self, Reply};
use josefine::partitions::Partition;
use josefine::server::RunningBroker;
use josefine::zero_copy::{flatten, ZERO_COPY_MIN_BYTES};
use josefine_log::batch::BatchHeader;
use josefine_log::testkit::{BatchBuilder, Rng};
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::{ApiKey, FetchRequest, RequestHeader, TopicName};
use kafka_protocol::protocol::{Encodable, StrBytes};

const TOPIC: &str = "zc";
const PARTITIONS: i32 = 3;

async fn topic(broker: &RunningBroker) -> (uuid::Uuid, Vec<(Arc<Partition>, i32)>) {
    josefine::controller::forward::create_topic(&broker.broker, TOPIC, PARTITIONS, 1, vec![])
        .await
        .unwrap();
    let image = broker.broker.metadata.image();
    let t = image.topic_by_name(TOPIC).unwrap();
    let partitions = (0..PARTITIONS)
        .map(|i| {
            let epoch = image.partition(t.topic_id, i).unwrap().leader_epoch;
            (broker.broker.partitions.get(t.topic_id, i).unwrap(), epoch)
        })
        .collect();
    (uuid::Uuid::from_bytes(t.topic_id.0), partitions)
}

/// A framed Fetch request (v`version`) for random offsets and limits of every partition.
fn fetch_frame(rng: &mut Rng, version: i16, topic_id: uuid::Uuid, ends: &[i64]) -> Bytes {
    let partitions = (0..PARTITIONS)
        .map(|i| {
            FetchPartition::default()
                .with_partition(i)
                .with_current_leader_epoch(-1)
                .with_fetch_offset(rng.below(ends[i as usize] as u64 + 1) as i64)
                .with_partition_max_bytes(match rng.below(3) {
                    0 => 1 + rng.below(20_000) as i32,
                    1 => 1 + rng.below(300_000) as i32,
                    _ => 1 << 20,
                })
        })
        .collect();
    let request = FetchRequest::default()
        .with_max_wait_ms(0)
        .with_min_bytes(0)
        .with_max_bytes(match rng.below(3) {
            0 => 1 + rng.below(100_000) as i32,
            _ => 50 << 20,
        })
        .with_isolation_level(rng.below(2) as i8)
        .with_session_epoch(-1)
        .with_topics(vec![FetchTopic::default()
            .with_topic(TopicName(StrBytes::from_static_str(TOPIC)))
            .with_topic_id(topic_id)
            .with_partitions(partitions)]);
    let mut buf = BytesMut::new();
    buf.put_i32(0);
    RequestHeader::default()
        .with_request_api_key(ApiKey::Fetch as i16)
        .with_request_api_version(version)
        .with_correlation_id(version as i32 * 1000 + rng.below(1000) as i32)
        .with_client_id(Some(StrBytes::from_static_str("zero-copy-test")))
        .encode(&mut buf, ApiKey::Fetch.request_header_version(version))
        .unwrap();
    request.encode(&mut buf, version).unwrap();
    let len = (buf.len() - 4) as i32;
    buf[..4].copy_from_slice(&len.to_be_bytes());
    buf.freeze()
}

/// The frame the copying path answers `frame` with (in process: no zero-copy), and the one
/// the zero-copy path answers with when every partition with records is a slice.
async fn in_process(broker: &RunningBroker, frame: &Bytes) -> (Bytes, Bytes, bool) {
    let decoded = || decode_request(frame.slice(4..)).unwrap();
    let Reply::Frame(copied) = dispatch::handle(&broker.broker, decoded()).await else {
        panic!("the copying path answers with a frame");
    };
    let sliced = ZERO_COPY_MIN_BYTES
        .scope(1, dispatch::handle(&broker.broker, decoded()))
        .await;
    let (sliced, from_files) = match sliced {
        Reply::Frame(f) => (f, false),
        Reply::Chunks(chunks) => (flatten(&chunks).unwrap(), true),
        _ => panic!("a fetch is answered"),
    };
    (copied.freeze(), sliced.freeze(), from_files)
}

async fn over_the_socket(c: &mut Client, frame: &Bytes) -> Bytes {
    c.send_raw(frame).await;
    let body = c.read_frame().await.expect("a response frame");
    let mut framed = BytesMut::with_capacity(body.len() + 4);
    framed.put_i32(body.len() as i32);
    framed.put_slice(&body);
    framed.freeze()
}

/// Random batches (some transactional, committed or aborted) in three partitions over many
/// small segments; random Fetch requests of every version at both isolation levels: the
/// zero-copy answer, in process (every partition with records from a file) and over a
/// plaintext socket (sendfile for records of 16 KiB and more), equals the copying path's
/// frame byte for byte.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zero_copy_fetch_frames_equal_copied_frames() {
    let (broker, _dir) =
        start_broker(&["log.segment.bytes=131072", "log.index.interval.bytes=1024"]).await;
    let (topic_id, partitions) = topic(&broker).await;
    let mut rng = Rng(0x5eed_0013);
    for (p, epoch) in &partitions {
        let mut pid = 1000;
        for i in 0..120 {
            let records = 1 + rng.below(20) as usize;
            let value = [10, 200, 1000, 4000][rng.below(4) as usize];
            if rng.below(6) == 0 {
                // A transaction of one batch, then its marker (an abort every other time).
                pid += 1;
                let b = BatchBuilder::new(now_ms())
                    .sized_records(records, value)
                    .producer(pid, 0, 0)
                    .attributes_extra(0x10)
                    .build();
                p.log
                    .append_allowing_transactions(&b, *epoch, now_ms())
                    .unwrap();
                p.append_marker_as_leader(pid, 0, 0, i % 2 == 0, *epoch, now_ms())
                    .unwrap();
            } else {
                let b = BatchBuilder::new(now_ms())
                    .sized_records(records, value)
                    .build();
                p.log.append(&b, *epoch, now_ms()).unwrap();
            }
        }
        p.log.set_high_watermark(p.log.log_end_offset());
        assert!(p.log.segment_count() > 3, "several segments");
    }
    let ends: Vec<i64> = partitions
        .iter()
        .map(|(p, _)| p.log.log_end_offset())
        .collect();
    let mut c = Client::connect(&broker).await;
    let (mut from_files, mut sent_from_files) = (0, 0);
    for round in 0..40 {
        for version in 4..=18i16 {
            let frame = fetch_frame(&mut rng, version, topic_id, &ends);
            let (copied, sliced, files) = in_process(&broker, &frame).await;
            assert_eq!(copied, sliced, "round {round}, v{version}: in process");
            from_files += files as usize;
            let received = over_the_socket(&mut c, &frame).await;
            assert_eq!(
                copied, received,
                "round {round}, v{version}: over the socket"
            );
            // A partition with 16 KiB or more of records was sent from its file.
            sent_from_files += usize::from(copied.len() > 3 * 16 * 1024);
        }
    }
    assert!(from_files > 400, "{from_files} responses came from files");
    assert!(sent_from_files > 50, "{sent_from_files} large responses");
    broker.shutdown().await;
}

/// Walks the batches of a partition's records: (base offset, next offset) of each; every
/// batch whole and its CRC right.
fn batches(records: &[u8]) -> Vec<(i64, i64)> {
    let mut out = Vec::new();
    let mut at = 0;
    while at < records.len() {
        let h = BatchHeader::parse(&records[at..]).expect("a whole batch header");
        let end = at + h.total_bytes();
        assert!(end <= records.len(), "a partial batch at {at}");
        let crc = crc32c::crc32c(&records[at + 21..end]);
        assert_eq!(
            crc, h.crc,
            "the batch at offset {} is intact",
            h.base_offset
        );
        out.push((h.base_offset, h.last_offset() + 1));
        at = end;
    }
    out
}

/// A consumer reads the log over the wire from its start, again and again, while the log
/// rolls (appends into small segments) and DeleteRecords plus retention delete the segments
/// under it: every answer holds whole batches with the right CRCs, contiguous from the fetch
/// offset, or OFFSET_OUT_OF_RANGE once the offset was deleted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fetches_racing_with_rolls_and_retention_return_whole_batches() {
    let (broker, _dir) =
        start_broker(&["log.segment.bytes=65536", "log.index.interval.bytes=1024"]).await;
    let (topic_id, partitions) = topic(&broker).await;
    let (p, epoch) = partitions[0].clone();
    let append = move |p: &Partition, n: usize| {
        for _ in 0..n {
            let b = BatchBuilder::new(now_ms()).sized_records(4, 4000).build();
            p.log.append(&b, epoch, now_ms()).unwrap();
        }
        p.log.set_high_watermark(p.log.log_end_offset());
    };
    append(&p, 60);
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writer = {
        let (p, stop) = (p.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut deleted = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                append(&p, 4);
                // Keep about 20 batches: everything older goes, segment by segment.
                let keep_from = p.log.log_end_offset() - 80;
                if keep_from > p.log.log_start_offset() {
                    let segments = p.log.segment_count();
                    p.log.delete_records_before(keep_from).unwrap();
                    p.log.enforce_retention(now_ms()).unwrap();
                    deleted += segments - p.log.segment_count();
                }
                std::thread::sleep(Duration::from_millis(2));
            }
            deleted
        })
    };
    let mut c = Client::connect(&broker).await;
    let mut rng = Rng(0x0dd_ba11);
    let (mut answers, mut out_of_range, mut bytes) = (0, 0, 0usize);
    let started = Instant::now();
    while started.elapsed() < Duration::from_millis(1500) {
        let offset = p.log.log_start_offset() + rng.below(8) as i64;
        let request = FetchRequest::default()
            .with_max_wait_ms(0)
            .with_min_bytes(0)
            .with_max_bytes(50 << 20)
            .with_session_epoch(-1)
            .with_topics(vec![FetchTopic::default()
                .with_topic_id(topic_id)
                .with_partitions(vec![FetchPartition::default()
                    .with_partition(0)
                    .with_current_leader_epoch(-1)
                    .with_fetch_offset(offset)
                    .with_partition_max_bytes(1 << 20)])]);
        c.send(ApiKey::Fetch, 16, &request).await;
        let (_, r): (i32, kafka_protocol::messages::FetchResponse) =
            c.recv(ApiKey::Fetch, 16).await;
        let data = &r.responses[0].partitions[0];
        answers += 1;
        if data.error_code == 1 {
            out_of_range += 1;
            continue;
        }
        assert_eq!(data.error_code, 0);
        let records = data.records.clone().unwrap_or_default();
        bytes += records.len();
        let walked = batches(&records);
        let mut next = None;
        for (base, end) in walked {
            match next {
                None => assert!(base <= offset && offset < end, "starts at {offset}"),
                Some(n) => assert_eq!(base, n, "batches are contiguous"),
            }
            next = Some(end);
        }
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let deleted = writer.join().unwrap();
    assert!(deleted > 10, "retention deleted {deleted} segments");
    assert!(
        answers > 20 && bytes > 20 << 20,
        "{answers} answers, {bytes} bytes"
    );
    eprintln!("{answers} answers ({out_of_range} out of range), {bytes} bytes, {deleted} segments deleted");
    broker.shutdown().await;
}

//! Prints the group coordinator's throughput through a real socket: synchronous OffsetCommits
//! from one connection (latency p50/p99), from many connections at once, and the time to load
//! `__consumer_offsets` back after a restart.
//!
//! ```text
//! cargo run --release -p josefine --example group_commit_bench -- [commits] [connections]
//! ```
//!
//! Each commit is one append to `__consumer_offsets` (no fsync: Kafka's default flush policy).

use std::time::{Duration, Instant};

use bytes::{Buf, BufMut, Bytes, BytesMut};
use josefine::config::{Config, ServeArgs};
use josefine::server::RunningBroker;
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::offset_commit_request::{
    OffsetCommitRequestPartition, OffsetCommitRequestTopic,
};
use kafka_protocol::messages::offset_fetch_request::{
    OffsetFetchRequestGroup, OffsetFetchRequestTopics,
};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const PARTITIONS: i32 = 8;

struct Conn {
    stream: TcpStream,
    correlation_id: i32,
}

impl Conn {
    async fn open(broker: &RunningBroker) -> Conn {
        let stream = TcpStream::connect(broker.local_addr).await.unwrap();
        stream.set_nodelay(true).unwrap();
        Conn {
            stream,
            correlation_id: 0,
        }
    }

    async fn call<Req: Encodable, Resp: Decodable>(
        &mut self,
        key: ApiKey,
        v: i16,
        req: &Req,
    ) -> Resp {
        self.correlation_id += 1;
        let mut buf = BytesMut::new();
        buf.put_i32(0);
        RequestHeader::default()
            .with_request_api_key(key as i16)
            .with_request_api_version(v)
            .with_correlation_id(self.correlation_id)
            .with_client_id(Some(StrBytes::from_static_str("bench")))
            .encode(&mut buf, key.request_header_version(v))
            .unwrap();
        req.encode(&mut buf, v).unwrap();
        let len = (buf.len() - 4) as i32;
        buf[..4].copy_from_slice(&len.to_be_bytes());
        self.stream.write_all(&buf).await.unwrap();
        let len = self.stream.read_i32().await.unwrap();
        let mut body = vec![0u8; len as usize];
        self.stream.read_exact(&mut body).await.unwrap();
        let mut body = Bytes::from(body);
        ResponseHeader::decode(&mut body, key.response_header_version(v)).unwrap();
        let resp = Resp::decode(&mut body, v).unwrap();
        assert!(!body.has_remaining());
        resp
    }
}

fn s(v: &str) -> StrBytes {
    StrBytes::from_string(v.to_string())
}

fn commit(group: &str, offset: i64) -> OffsetCommitRequest {
    OffsetCommitRequest::default()
        .with_group_id(GroupId(s(group)))
        .with_generation_id_or_member_epoch(-1)
        .with_topics(vec![OffsetCommitRequestTopic::default()
            .with_name(TopicName(s("bench")))
            .with_partitions(
                (0..PARTITIONS)
                    .map(|p| {
                        OffsetCommitRequestPartition::default()
                            .with_partition_index(p)
                            .with_committed_offset(offset)
                    })
                    .collect(),
            )])
}

async fn start(dir: &std::path::Path) -> RunningBroker {
    let args = ServeArgs {
        listen: Some("127.0.0.1:0".into()),
        raft_listen: Some("127.0.0.1:0".into()),
        data_dir: Some(dir.to_path_buf()),
        set: vec![format!("num.partitions={PARTITIONS}")],
        ..ServeArgs::default()
    };
    for _ in 0..100 {
        if let Ok(b) = josefine::server::start(Config::resolve(args.clone()).unwrap()).await {
            return b;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("broker did not start");
}

async fn commit_loop(broker: &RunningBroker, group: String, commits: usize) -> Vec<Duration> {
    let mut c = Conn::open(broker).await;
    let mut latencies = Vec::with_capacity(commits);
    for i in 0..commits {
        let t = Instant::now();
        let r: OffsetCommitResponse = c
            .call(ApiKey::OffsetCommit, 8, &commit(&group, i as i64))
            .await;
        latencies.push(t.elapsed());
        assert!(r.topics[0].partitions.iter().all(|p| p.error_code == 0));
    }
    latencies
}

fn percentile(sorted: &[Duration], q: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * q) as usize]
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let mut args = std::env::args().skip(1);
    let commits: usize = args.next().map_or(5_000, |a| a.parse().unwrap());
    let connections: usize = args.next().map_or(16, |a| a.parse().unwrap());
    let dir = tempfile::tempdir().unwrap();
    let broker = start(dir.path()).await;
    let mut c = Conn::open(&broker).await;
    let _: MetadataResponse = c
        .call(
            ApiKey::Metadata,
            12,
            &MetadataRequest::default()
                .with_topics(Some(vec![
                    MetadataRequestTopic::default().with_name(Some(TopicName(s("bench"))))
                ]))
                .with_allow_auto_topic_creation(true),
        )
        .await;
    let _: FindCoordinatorResponse = c
        .call(
            ApiKey::FindCoordinator,
            3,
            &FindCoordinatorRequest::default().with_key(s("g")),
        )
        .await;

    let t = Instant::now();
    let mut lat = commit_loop(&broker, "g-seq".into(), commits).await;
    let secs = t.elapsed().as_secs_f64();
    lat.sort();
    println!(
        "1 connection: {commits} commits of {PARTITIONS} partitions in {secs:.2} s = {:.0} commits/s, p50 {} us, p99 {} us",
        commits as f64 / secs,
        percentile(&lat, 0.5).as_micros(),
        percentile(&lat, 0.99).as_micros()
    );

    let t = Instant::now();
    let per = commits / connections;
    let tasks: Vec<_> = (0..connections)
        .map(|i| {
            let addr = broker.local_addr;
            tokio::spawn(async move {
                let mut c = Conn {
                    stream: TcpStream::connect(addr).await.unwrap(),
                    correlation_id: 0,
                };
                for o in 0..per {
                    let r: OffsetCommitResponse = c
                        .call(
                            ApiKey::OffsetCommit,
                            8,
                            &commit(&format!("g-{i}"), o as i64),
                        )
                        .await;
                    assert!(r.topics[0].partitions.iter().all(|p| p.error_code == 0));
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    let secs = t.elapsed().as_secs_f64();
    println!(
        "{connections} connections: {} commits in {secs:.2} s = {:.0} commits/s",
        per * connections,
        (per * connections) as f64 / secs
    );
    drop(c);

    // Restart: time until every group's offsets are served again.
    let records = (commits + per * connections) * PARTITIONS as usize;
    broker.shutdown().await;
    let t = Instant::now();
    let broker = start(dir.path()).await;
    let started = t.elapsed();
    let mut c = Conn::open(&broker).await;
    let groups: Vec<String> = std::iter::once("g-seq".to_string())
        .chain((0..connections).map(|i| format!("g-{i}")))
        .collect();
    let fetch = OffsetFetchRequest::default().with_groups(
        groups
            .iter()
            .map(|g| {
                OffsetFetchRequestGroup::default()
                    .with_group_id(GroupId(s(g)))
                    .with_topics(Some(vec![OffsetFetchRequestTopics::default()
                        .with_name(TopicName(s("bench")))
                        .with_partition_indexes(vec![0])]))
            })
            .collect(),
    );
    loop {
        let r: OffsetFetchResponse = c.call(ApiKey::OffsetFetch, 8, &fetch).await;
        if r.groups.iter().all(|g| g.error_code == 0) {
            let seq = &r.groups[0].topics[0].partitions[0];
            assert_eq!(seq.committed_offset, commits as i64 - 1);
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    println!(
        "restart: broker up in {} ms, every group served after {} ms ({records} offset records in __consumer_offsets)",
        started.as_millis(),
        t.elapsed().as_millis()
    );
    broker.shutdown().await;
}

//! Differential check of the group APIs against real Apache Kafka: `examples/group_probe.rs`
//! (error paths, every version, static membership, commits, deletes) run against Josefine must
//! print what it printed against Kafka 4.1.2 (`data/group_probe_kafka_4.1.2.txt`). Lines are
//! compared sorted: multi-group answers come in Kafka's coordinator-partition order.
//! Regenerate the reference with a fresh `scripts/kafka-reference` broker:
//! `cargo run -p josefine --example group_probe -- 127.0.0.1:9092 > tests/data/group_probe_kafka_4.1.2.txt`.

mod common;

#[allow(dead_code)]
#[path = "../examples/group_probe.rs"]
mod probe;

use common::start_broker;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn group_answers_match_kafka_4_1() {
    // kafka-reference starts Kafka with group.initial.rebalance.delay.ms=0 as well.
    let (broker, _dir) = start_broker(&["group.initial.rebalance.delay.ms=0"]).await;
    let addr = broker.local_addr.to_string();
    let mut ours = tokio::task::spawn_blocking(move || probe::run(&addr))
        .await
        .unwrap();
    let mut kafka: Vec<String> = include_str!("data/group_probe_kafka_4.1.2.txt")
        .lines()
        .map(str::to_string)
        .collect();
    assert!(kafka.len() > 100, "reference output truncated");
    ours.sort();
    kafka.sort();
    let only_ours: Vec<&String> = ours.iter().filter(|l| !kafka.contains(l)).collect();
    let only_kafka: Vec<&String> = kafka.iter().filter(|l| !ours.contains(l)).collect();
    assert!(
        only_ours.is_empty() && only_kafka.is_empty() && ours.len() == kafka.len(),
        "Josefine differs from Kafka 4.1.2:\nonly Josefine: {only_ours:#?}\nonly Kafka: {only_kafka:#?}"
    );
    broker.shutdown().await;
}

//! Prints how long the coordinator takes to load a `__transaction_state` partition holding
//! 10,000 transactional ids (issue 16's "coordinator load time for 10,000 ids"), each with the
//! records of a few finished transactions, and how long resuming 1,000 Prepare* ones takes.
//! Decoding included, disk reads excluded. A program that prints numbers, not a test: run with
//! `cargo run --release -p josefine-txn --example load_bench`.

use std::collections::BTreeSet;
use std::time::Instant;

use josefine_txn::records::{self, TxnLogValue, TxnRecord};
use josefine_txn::{Coordinator, Effect, TopicPartition, TxnConfig, TxnState};

const IDS: usize = 10_000;
const TRANSACTIONS_PER_ID: usize = 3;
const PREPARED: usize = 1_000;

fn record(
    id: &str,
    state: TxnState,
    epoch: i16,
    partitions: &BTreeSet<TopicPartition>,
) -> TxnRecord {
    let value = TxnLogValue {
        producer_id: 1_000,
        previous_producer_id: -1,
        next_producer_id: -1,
        producer_epoch: epoch,
        transaction_timeout_ms: 60_000,
        state,
        partitions: if state == TxnState::Empty {
            BTreeSet::new()
        } else {
            partitions.clone()
        },
        last_update_timestamp_ms: 1_700_000_000_000,
        start_timestamp_ms: 1_700_000_000_000,
        client_transaction_version: 2,
    };
    TxnRecord {
        key: records::encode_key(id),
        value: Some(records::encode_value(&value)),
        timestamp_ms: 1_700_000_000_000,
    }
}

fn main() {
    let partitions: BTreeSet<TopicPartition> = (0..10)
        .map(|p| TopicPartition::new(format!("topic-{}", p % 3), p))
        .collect();
    let mut log = Vec::new();
    for i in 0..IDS {
        let id = format!("transactional-id-{i}");
        log.push(record(&id, TxnState::Empty, 0, &partitions));
        for t in 0..TRANSACTIONS_PER_ID {
            let epoch = t as i16;
            log.push(record(&id, TxnState::Ongoing, epoch, &partitions));
            log.push(record(&id, TxnState::PrepareCommit, epoch + 1, &partitions));
            let last = i < PREPARED && t == TRANSACTIONS_PER_ID - 1;
            if !last {
                log.push(record(
                    &id,
                    TxnState::CompleteCommit,
                    epoch + 1,
                    &partitions,
                ));
            }
        }
    }
    let bytes: usize = log
        .iter()
        .map(|r| r.key.len() + r.value.as_ref().map_or(0, |v| v.len()))
        .sum();
    let config = TxnConfig {
        state_log_partitions: 1,
        ..TxnConfig::default()
    };
    let mut c = Coordinator::new(config).expect("valid config");
    let start = Instant::now();
    c.begin_load(0);
    for r in &log {
        c.load_record(0, &r.key, r.value.as_deref())
            .expect("valid record");
    }
    let replayed = start.elapsed();
    let effects = c.complete_load(0, 1, 1_700_000_000_000).expect("loading");
    let total = start.elapsed();
    let markers = effects
        .iter()
        .filter(|e| matches!(e, Effect::SendMarkers { .. }))
        .count();
    assert_eq!(c.transaction_count(), IDS);
    assert_eq!(markers, PREPARED);
    println!(
        "load: {IDS} ids, {} records ({:.1} MB): replay {:.1} ms, complete_load (resuming {markers} Prepare*) {:.1} ms, total {:.1} ms",
        log.len(),
        bytes as f64 / 1e6,
        replayed.as_secs_f64() * 1e3,
        (total - replayed).as_secs_f64() * 1e3,
        total.as_secs_f64() * 1e3,
    );
}

//! The transaction coordinator wired into the broker, over real sockets: FindCoordinator key
//! type 1 creates `__transaction_state`, InitProducerId with a transactional id, and the
//! KIP-890 rule of transactional produce: a batch for a partition the coordinator does not
//! have in the producer's transaction is refused (INVALID_TXN_STATE, nothing written), one
//! added with AddPartitionsToTxn is taken and holds the last stable offset back until EndTxn's
//! commit marker.

mod common;

use common::{start_broker, Client};
use josefine_log::testkit::BatchBuilder;
use kafka_protocol::messages::add_partitions_to_txn_request::AddPartitionsToTxnTopic;
use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;

const INVALID_TXN_STATE: i16 = 48;
const TOPIC: &str = "t";

fn s(v: &str) -> StrBytes {
    StrBytes::from_string(v.to_string())
}

async fn lso(c: &mut Client) -> i64 {
    let req = ListOffsetsRequest::default()
        .with_replica_id(BrokerId(-1))
        .with_isolation_level(1)
        .with_topics(vec![ListOffsetsTopic::default()
            .with_name(TopicName(s(TOPIC)))
            .with_partitions(vec![ListOffsetsPartition::default()
                .with_partition_index(0)
                .with_timestamp(-1)])]);
    c.send(ApiKey::ListOffsets, 7, &req).await;
    let (_, r): (i32, ListOffsetsResponse) = c.recv(ApiKey::ListOffsets, 7).await;
    r.topics[0].partitions[0].offset
}

async fn produce(c: &mut Client, pid: i64, seq: i32) -> i16 {
    let records = BatchBuilder::new(1_700_000_000_000)
        .records(2)
        .producer(pid, 0, seq)
        .attributes_extra(0x10) // transactional
        .build();
    let req = ProduceRequest::default()
        .with_transactional_id(Some(TransactionalId(s("tx"))))
        .with_acks(-1)
        .with_timeout_ms(5000)
        .with_topic_data(vec![TopicProduceData::default()
            .with_name(TopicName(s(TOPIC)))
            .with_partition_data(vec![PartitionProduceData::default()
                .with_index(0)
                .with_records(Some(records.into()))])]);
    c.send(ApiKey::Produce, 9, &req).await;
    let (_, r): (i32, ProduceResponse) = c.recv(ApiKey::Produce, 9).await;
    r.responses[0].partition_responses[0].error_code
}

/// Retries a coordinator request while the coordinator loads or lacks producer ids.
async fn until_ready<
    T: kafka_protocol::protocol::Decodable,
    B: kafka_protocol::protocol::Encodable,
>(
    c: &mut Client,
    key: ApiKey,
    v: i16,
    body: &B,
    error: impl Fn(&T) -> i16,
) -> T {
    for _ in 0..200 {
        c.send(key, v, body).await;
        let (_, r): (i32, T) = c.recv(key, v).await;
        if !matches!(error(&r), 14 | 15 | 16 | 51) {
            return r;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    panic!("{key:?} never got past coordinator errors");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transactional_produce_needs_the_partition_in_the_transaction() {
    let (broker, _dir) = start_broker(&["transaction.state.log.num.partitions=1"]).await;
    let mut c = Client::connect(&broker).await;
    let md = MetadataRequest::default()
        .with_topics(Some(vec![
            MetadataRequestTopic::default().with_name(Some(TopicName(s(TOPIC))))
        ]))
        .with_allow_auto_topic_creation(true);
    c.send(ApiKey::Metadata, 12, &md).await;
    let _: (i32, MetadataResponse) = c.recv(ApiKey::Metadata, 12).await;

    let find = FindCoordinatorRequest::default()
        .with_key_type(1)
        .with_coordinator_keys(vec![s("tx")]);
    let r: FindCoordinatorResponse = until_ready(
        &mut c,
        ApiKey::FindCoordinator,
        4,
        &find,
        |r: &FindCoordinatorResponse| r.coordinators[0].error_code,
    )
    .await;
    assert_eq!(r.coordinators[0].error_code, 0);

    let init = InitProducerIdRequest::default()
        .with_transactional_id(Some(TransactionalId(s("tx"))))
        .with_transaction_timeout_ms(60_000)
        .with_producer_id(ProducerId(-1))
        .with_producer_epoch(-1);
    let r: InitProducerIdResponse = until_ready(
        &mut c,
        ApiKey::InitProducerId,
        4,
        &init,
        |r: &InitProducerIdResponse| r.error_code,
    )
    .await;
    assert_eq!((r.error_code, r.producer_epoch), (0, 0));
    let pid = r.producer_id.0;

    // Not added: refused, nothing written.
    assert_eq!(produce(&mut c, pid, 0).await, INVALID_TXN_STATE);
    assert_eq!(lso(&mut c).await, 0);

    let add = AddPartitionsToTxnRequest::default()
        .with_v3_and_below_transactional_id(TransactionalId(s("tx")))
        .with_v3_and_below_producer_id(ProducerId(pid))
        .with_v3_and_below_producer_epoch(0)
        .with_v3_and_below_topics(vec![AddPartitionsToTxnTopic::default()
            .with_name(TopicName(s(TOPIC)))
            .with_partitions(vec![0])]);
    let r: AddPartitionsToTxnResponse = until_ready(
        &mut c,
        ApiKey::AddPartitionsToTxn,
        3,
        &add,
        |r: &AddPartitionsToTxnResponse| {
            r.results_by_topic_v3_and_below[0].results_by_partition[0].partition_error_code
        },
    )
    .await;
    assert_eq!(
        r.results_by_topic_v3_and_below[0].results_by_partition[0].partition_error_code,
        0
    );
    assert_eq!(produce(&mut c, pid, 0).await, 0);
    // The open transaction holds the LSO at its first offset.
    assert_eq!(lso(&mut c).await, 0);

    let end = EndTxnRequest::default()
        .with_transactional_id(TransactionalId(s("tx")))
        .with_producer_id(ProducerId(pid))
        .with_producer_epoch(0)
        .with_committed(true);
    c.send(ApiKey::EndTxn, 3, &end).await;
    let (_, r): (i32, EndTxnResponse) = c.recv(ApiKey::EndTxn, 3).await;
    assert_eq!(r.error_code, 0);
    // Markers follow the answer: two records and the commit marker become stable.
    let mut stable = 0;
    for _ in 0..100 {
        stable = lso(&mut c).await;
        if stable == 3 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(stable, 3);
    broker.shutdown().await;
}

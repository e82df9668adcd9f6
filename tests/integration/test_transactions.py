"""Transactions with confluent-kafka (librdkafka, transaction version 1), on one broker:

- commit and abort: a read_committed consumer sees the committed records only, in order, and a
  read_uncommitted one sees everything;
- fencing: a second producer with the same transactional.id fences the first (its commit fails
  fatally with _FENCED) and the zombie's records never show to read_committed;
- a transaction left open past transaction.timeout.ms is aborted by the coordinator: the last
  stable offset moves on and the silent producer learns it was fenced;
- a broker restart in the middle of a transaction keeps the coordinator's state (reloaded
  from __transaction_state): the transaction commits after the restart;
- consume-transform-produce with send_offsets_to_transaction: an aborted transaction commits
  neither its output nor its offsets, committed ones both, so the output holds every input
  record exactly once and the group's offset is the input's end (also after a restart, which
  reloads the transactional offsets from __consumer_offsets with their markers).

Every test runs against Apache Kafka too (BROKER=kafka).
"""

import time
import uuid

import pytest
from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition

from clients import assign_consumer, create_topic

# Small coordinator settings so tests do not wait for Kafka's defaults (50 partitions, an
# abort check every 10 s).
TXN_SETTINGS = {
    "transaction_state_log_num_partitions": 3,
    "offsets_topic_num_partitions": 3,
    "transaction_abort_timed_out_transaction_cleanup_interval_ms": 1000,
    "group_initial_rebalance_delay_ms": 0,
}


@pytest.fixture(scope="module")
def txn_broker(tmp_path_factory):
    from conftest import BrokerFactory
    root = tmp_path_factory.mktemp("josefine-it-txn-")
    factory = BrokerFactory(root)
    try:
        yield factory(**TXN_SETTINGS)
    finally:
        factory.close()


def producer(bootstrap, transactional_id, **extra):
    conf = {"bootstrap.servers": bootstrap, "transactional.id": transactional_id,
            "linger.ms": 5}
    conf.update(extra)
    return Producer(conf)


def read_all(bootstrap, topic, partitions, isolation, settle_s=2.0, timeout_s=30):
    """Every record of `topic` visible at `isolation`, per partition, as values in order: read
    until the partitions' end offsets (the LSO for read_committed) are reached and nothing
    more arrives for `settle_s`."""
    consumer = assign_consumer(bootstrap, **{"isolation.level": isolation,
                                              "auto.offset.reset": "earliest"})
    try:
        consumer.assign([TopicPartition(topic, p, 0) for p in range(partitions)])
        out = {p: [] for p in range(partitions)}
        deadline = time.monotonic() + timeout_s
        quiet_since = time.monotonic()
        while time.monotonic() < deadline and time.monotonic() - quiet_since < settle_s:
            msgs = consumer.consume(num_messages=1000, timeout=0.5)
            for m in msgs:
                assert m.error() is None, m.error()
                out[m.partition()].append(m.value())
            if msgs:
                quiet_since = time.monotonic()
        return out
    finally:
        consumer.close()


def test_commit_and_abort_read_committed(txn_broker, topic_name):
    bs = txn_broker.bootstrap
    create_topic(bs, topic_name, partitions=2)
    p = producer(bs, f"tx-{uuid.uuid4().hex[:8]}")
    p.init_transactions(60)
    p.begin_transaction()
    for i in range(10):
        p.produce(topic_name, value=b"c1-%d" % i, partition=i % 2)
    p.commit_transaction(60)
    p.begin_transaction()
    for i in range(6):
        p.produce(topic_name, value=b"ab-%d" % i, partition=i % 2)
    p.flush(30)
    p.abort_transaction(60)
    p.begin_transaction()
    for i in range(4):
        p.produce(topic_name, value=b"c2-%d" % i, partition=i % 2)
    p.commit_transaction(60)

    committed = read_all(bs, topic_name, 2, "read_committed")
    assert committed[0] == [b"c1-0", b"c1-2", b"c1-4", b"c1-6", b"c1-8", b"c2-0", b"c2-2"]
    assert committed[1] == [b"c1-1", b"c1-3", b"c1-5", b"c1-7", b"c1-9", b"c2-1", b"c2-3"]
    everything = read_all(bs, topic_name, 2, "read_uncommitted")
    assert everything[0] == committed[0][:5] + [b"ab-0", b"ab-2", b"ab-4"] + committed[0][5:]
    assert everything[1] == committed[1][:5] + [b"ab-1", b"ab-3", b"ab-5"] + committed[1][5:]


def test_second_producer_fences_the_first(txn_broker, topic_name):
    bs = txn_broker.bootstrap
    create_topic(bs, topic_name)
    tid = f"tx-{uuid.uuid4().hex[:8]}"
    zombie = producer(bs, tid)
    zombie.init_transactions(60)
    zombie.begin_transaction()
    zombie.produce(topic_name, value=b"zombie", partition=0)
    zombie.flush(30)

    fresh = producer(bs, tid)
    # Aborts the zombie's open transaction (an epoch bump) before answering.
    fresh.init_transactions(60)
    fresh.begin_transaction()
    fresh.produce(topic_name, value=b"fresh", partition=0)
    fresh.commit_transaction(60)

    with pytest.raises(KafkaException) as info:
        zombie.produce(topic_name, value=b"zombie-2", partition=0)
        zombie.commit_transaction(30)
    err = info.value.args[0]
    assert err.code() == KafkaError._FENCED or err.fatal(), err

    assert read_all(bs, topic_name, 1, "read_committed")[0] == [b"fresh"]


def test_timed_out_transaction_is_aborted(txn_broker, topic_name):
    bs = txn_broker.bootstrap
    create_topic(bs, topic_name)
    silent = producer(bs, f"tx-{uuid.uuid4().hex[:8]}", **{"transaction.timeout.ms": 2000})
    silent.init_transactions(60)
    silent.begin_transaction()
    silent.produce(topic_name, value=b"never", partition=0)
    silent.flush(30)

    other = producer(bs, f"tx-{uuid.uuid4().hex[:8]}")
    other.init_transactions(60)
    other.begin_transaction()
    other.produce(topic_name, value=b"later", partition=0)
    other.commit_transaction(60)

    # The open transaction holds the LSO back until the coordinator aborts it (2 s timeout,
    # checked every second).
    deadline = time.monotonic() + 30
    seen = []
    while time.monotonic() < deadline:
        seen = read_all(bs, topic_name, 1, "read_committed", settle_s=1.0)[0]
        if seen:
            break
    assert seen == [b"later"]

    with pytest.raises(KafkaException) as info:
        silent.commit_transaction(30)
    err = info.value.args[0]
    # librdkafka: the coordinator's epoch bump surfaces as a fenced (fatal) or abortable error.
    assert err.fatal() or err.txn_requires_abort(), err


def test_broker_restart_mid_transaction_keeps_coordinator_state(broker_factory, topic_name):
    broker = broker_factory(**TXN_SETTINGS)
    bs = broker.bootstrap
    create_topic(bs, topic_name)
    p = producer(bs, f"tx-{uuid.uuid4().hex[:8]}")
    p.init_transactions(60)
    p.begin_transaction()
    for i in range(5):
        p.produce(topic_name, value=b"r-%d" % i, partition=0)
    p.flush(30)

    broker.restart()

    p.commit_transaction(120)
    assert read_all(bs, topic_name, 1, "read_committed")[0] == [b"r-%d" % i for i in range(5)]


def _group_consumer(bs, group):
    return Consumer({"bootstrap.servers": bs, "group.id": group,
                     "isolation.level": "read_committed", "enable.auto.commit": False,
                     "auto.offset.reset": "earliest", "session.timeout.ms": 10000})


def _committed(bs, group, topic):
    c = _group_consumer(bs, group)
    try:
        return c.committed([TopicPartition(topic, 0)], timeout=30)[0].offset
    finally:
        c.close()


def _transform_batch(consumer, p, out_topic, commit, max_records=50, timeout_s=30):
    """One transaction: read up to `max_records`, write them transformed, add the consumer's
    positions to the transaction, then commit or abort. Returns how many were read."""
    msgs = []
    deadline = time.monotonic() + timeout_s
    while not msgs and time.monotonic() < deadline:
        msgs = [m for m in consumer.consume(num_messages=max_records, timeout=1.0)
                if m.error() is None]
    if not msgs:
        return 0
    p.begin_transaction()
    for m in msgs:
        p.produce(out_topic, value=b"out-" + m.value(), partition=0)
    p.send_offsets_to_transaction(consumer.position(consumer.assignment()),
                                  consumer.consumer_group_metadata(), 30)
    if commit:
        p.commit_transaction(60)
    else:
        p.abort_transaction(60)
    return len(msgs)


def test_consume_transform_produce_exactly_once(broker_factory, topic_name):
    broker = broker_factory(**TXN_SETTINGS)
    bs = broker.bootstrap
    source, sink, group = topic_name + "-in", topic_name + "-out", topic_name + "-g"
    create_topic(bs, source)
    create_topic(bs, sink)
    total = 200
    plain = Producer({"bootstrap.servers": bs})
    for i in range(total):
        plain.produce(source, value=b"%03d" % i, partition=0)
    assert plain.flush(30) == 0

    # An aborted transaction: neither its output nor its offsets count.
    consumer = _group_consumer(bs, group)
    consumer.subscribe([source])
    p = producer(bs, f"tx-{uuid.uuid4().hex[:8]}")
    p.init_transactions(60)
    assert _transform_batch(consumer, p, sink, commit=False) > 0
    consumer.close()
    assert _committed(bs, group, source) < 0

    # Committed transactions from the group's (absent) committed offset to the end.
    consumer = _group_consumer(bs, group)
    consumer.subscribe([source])
    done = 0
    while done < total:
        n = _transform_batch(consumer, p, sink, commit=True)
        assert n > 0, f"stalled after {done} records"
        done += n
    consumer.close()
    assert done == total
    assert _committed(bs, group, source) == total
    out = read_all(bs, sink, 1, "read_committed")[0]
    assert out == [b"out-%03d" % i for i in range(total)]

    broker.restart()
    assert _committed(bs, group, source) == total

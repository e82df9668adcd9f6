"""Transactions on a 3-broker cluster (confluent-kafka), with the transaction coordinator on
another broker than the data partition's leader, so markers and KIP-890 verification cross
brokers (WriteTxnMarkers and AddPartitionsToTxn between them):

- a committed and an aborted transaction: read_committed sees exactly the committed records;
- the coordinator is killed (SIGKILL) with a transaction open: __transaction_state (RF 3)
  moves to another broker, which loads it, and the producer's commit either succeeds (the
  records show) or fails and the producer aborts (they never show); either way the partition's
  last stable offset is not stuck: a later transaction is visible to read_committed.

Runs against Kafka too (BROKER=kafka).
"""

import time
import uuid

import pytest
from confluent_kafka import KafkaException, Producer
from confluent_kafka.admin import NewTopic

from clients import admin
from cluster import wait_until
from test_transactions import read_all

pytestmark = pytest.mark.cluster

STATE_PARTITIONS = 3
SETTINGS = {
    "transaction.state.log.num.partitions": str(STATE_PARTITIONS),
    "transaction.state.log.replication.factor": "3",
    "transaction.state.log.min.isr": "2",
    "offsets.topic.num.partitions": "3",
}


def java_hash_partition(key: str, partitions: int) -> int:
    """Kafka's `Utils.abs(key.hashCode()) % partitions` (what places a transactional id)."""
    h = 0
    for unit in key.encode("utf-16-be").hex(" ", 2).split():
        h = (31 * h + int(unit, 16)) & 0xFFFFFFFF
    h = h - (1 << 32) if h >= 1 << 31 else h
    return (h & 0x7FFFFFFF if h == -(1 << 31) else abs(h)) % partitions


def producer(bootstrap, transactional_id):
    return Producer({"bootstrap.servers": bootstrap, "transactional.id": transactional_id,
                     "transaction.timeout.ms": 60000, "linger.ms": 5})


def test_coordinator_elsewhere_and_killed(cluster_factory):
    c = cluster_factory(3, settings=SETTINGS)
    bs = c.bootstrap()
    topic = f"txn-data-{uuid.uuid4().hex[:8]}"
    a = admin(bs)
    a.create_topics([NewTopic(topic, 1, 3)])[topic].result(timeout=60)
    c.wait_topic(topic, 1)

    # A first transaction creates __transaction_state; then pick an id it places on a broker
    # that does not lead the data partition.
    first = producer(bs, f"warm-{uuid.uuid4().hex[:8]}")
    first.init_transactions(120)
    first.begin_transaction()
    first.produce(topic, value=b"warm", partition=0)
    first.commit_transaction(120)
    state = c.wait_topic("__transaction_state", STATE_PARTITIONS)
    data_leader = c.leaders(topic, c.running()[0])[0][0]
    tid = next(t for t in (f"tx-{uuid.uuid4().hex[:8]}" for _ in range(1000))
               if state[java_hash_partition(t, STATE_PARTITIONS)][0] != data_leader)
    coordinator = state[java_hash_partition(tid, STATE_PARTITIONS)][0]

    p = producer(bs, tid)
    p.init_transactions(120)
    p.begin_transaction()
    p.produce(topic, value=b"c1", partition=0)
    p.commit_transaction(120)
    p.begin_transaction()
    p.produce(topic, value=b"ab", partition=0)
    p.flush(30)
    p.abort_transaction(120)
    assert read_all(bs, topic, 1, "read_committed")[0] == [b"warm", b"c1"]

    p.begin_transaction()
    p.produce(topic, value=b"c2", partition=0)
    p.flush(60)
    c.node(coordinator).stop(9)
    survivors = ",".join(n.bootstrap for n in c.running())
    try:
        p.commit_transaction(180)
        committed = True
    except KafkaException as exc:
        assert exc.args[0].retriable() or exc.args[0].txn_requires_abort(), exc
        p.abort_transaction(180)
        committed = False

    # The partition's LSO moves on: a later transaction of another producer shows.
    later = producer(survivors, f"later-{uuid.uuid4().hex[:8]}")
    later.init_transactions(180)
    later.begin_transaction()
    later.produce(topic, value=b"later", partition=0)
    later.commit_transaction(180)
    expected = [b"warm", b"c1"] + ([b"c2"] if committed else []) + [b"later"]
    wait_until(lambda: read_all(survivors, topic, 1, "read_committed", settle_s=1.0)[0] == expected,
               f"read_committed {expected}", timeout_s=120, interval_s=1.0)

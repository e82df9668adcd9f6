"""Issue 10, acceptance test 8: InitProducerId (idempotent producers, no transactional id) on
all three brokers at once, many times: no two producer ids are equal.

Each broker hands out ids from blocks it gets from the controller (Kafka and Josefine: 1000
per block), so 1500 requests per broker cross block boundaries on all three at the same time.
While a broker fetches its next block it may answer COORDINATOR_LOAD_IN_PROGRESS (Kafka does,
KAFKA-14694); that and the other errors clients retry for InitProducerId are retried here
and counted, anything else fails the test. A pool of librdkafka idempotent producers on all
brokers at the same time checks the client path (their ids are not visible, only success).
"""

import threading
import time
from collections import Counter

import pytest
from confluent_kafka import Producer

from clients import create_topic
from cluster import init_producer_ids

pytestmark = pytest.mark.cluster

PER_BROKER = 1500


def _init_many(node, count, out, errors, ready):
    try:
        out[node.node_id] = init_producer_ids(node, count, ready=ready)
    except BaseException as exc:  # noqa: BLE001 - reported by the test
        errors.append(repr(exc))


def test_init_producer_id_unique_across_brokers(shared_cluster):
    nodes = shared_cluster.nodes
    out, errors = {}, []
    start = threading.Event()
    threads = [threading.Thread(target=_init_many, args=(n, PER_BROKER, out, errors, start)) for n in nodes]
    for t in threads:
        t.start()
    start.set()
    for t in threads:
        t.join(180)
    assert not errors, errors
    all_ids = [pid for ids, _ in out.values() for pid in ids]
    print({node_id: (len(ids), min(ids), max(ids), dict(errs)) for node_id, (ids, errs) in out.items()})
    assert len(all_ids) == PER_BROKER * len(nodes)
    dup = [pid for pid, k in Counter(all_ids).items() if k > 1]
    assert not dup, f"{len(dup)} producer ids handed out twice, e.g. {dup[:10]}"
    # One broker never repeats itself either (the same check, per broker, for a clear message).
    for node_id, (ids, _) in out.items():
        assert len(set(ids)) == len(ids), f"node {node_id} repeated producer ids"


def test_idempotent_producers_on_every_broker_at_once(shared_cluster):
    """Twelve librdkafka idempotent producers (four bootstrapped on each broker) start at
    once and each writes to its own partition: every delivery succeeds, offsets dense."""
    c = shared_cluster
    topic = f"pids-{time.monotonic_ns()}"
    create_topic(c.node(1).bootstrap, topic, partitions=12)
    c.wait_topic(topic, 12)
    producers = [Producer({"bootstrap.servers": c.nodes[i % 3].bootstrap, "enable.idempotence": True,
                           "acks": "all", "linger.ms": 2}) for i in range(12)]
    delivered = []
    for p, producer in enumerate(producers):
        for i in range(50):
            producer.produce(topic, value=f"{p}:{i}", partition=p,
                             on_delivery=lambda err, msg: delivered.append((err, msg.partition(), msg.offset(), msg.value())))
    for producer in producers:
        assert producer.flush(60) == 0
    assert [d for d in delivered if d[0] is not None] == []
    for p in range(12):
        got = sorted((o, v) for _, part, o, v in delivered if part == p)
        assert got == [(i, f"{p}:{i}".encode()) for i in range(50)], f"partition {p}: {got[:5]}"

"""Restart and crash recovery: data intact after SIGTERM and SIGKILL, and an idempotent
producer that lives across the restart keeps its sequence: no duplicates, no gaps, no
fatal producer errors (the broker must have recovered its producer state)."""

import signal
import time

import pytest
from confluent_kafka import Producer

from clients import DeliveryLog, create_topic, produce_all, read_partition, watermarks

# What a clean stop may exit with: 0, or 128 + SIGTERM as the JVM does after its shutdown
# hooks ran. A bare "killed by signal" (negative code) means SIGTERM was not handled.
CLEAN_EXIT_CODES = {0, 128 + signal.SIGTERM}


def _values(msgs):
    return [m.value() for m in msgs]


def _idempotent_producer(bootstrap):
    return Producer({"bootstrap.servers": bootstrap, "acks": "all", "enable.idempotence": True,
                     "linger.ms": 5, "reconnect.backoff.max.ms": 200})


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL], ids=["sigterm", "sigkill"])
def test_restart_keeps_data_and_producer_state(broker_factory, topic_name, sig):
    broker = broker_factory()
    create_topic(broker.bootstrap, topic_name)
    producer = _idempotent_producer(broker.bootstrap)
    first = [(None, b"before-%05d" % i, None) for i in range(1000)]
    log = produce_all(producer, topic_name, first)
    assert not log.errors(), log.errors()[:3]

    code = broker.stop(sig)
    if sig == signal.SIGTERM:
        assert code in CLEAN_EXIT_CODES, f"exit code {code} after SIGTERM"
    broker.start()

    assert watermarks(broker.bootstrap, topic_name) == (0, 1000)
    # The same producer (same producer id, epoch, next sequence) goes on after the restart.
    second = [(None, b"after-%05d" % i, None) for i in range(1000)]
    log = produce_all(producer, topic_name, second)
    assert not log.errors(), log.errors()[:3]
    assert [r[3] for r in log.reports] == list(range(1000, 2000))

    msgs = read_partition(broker.bootstrap, topic_name, 2000)
    assert _values(msgs) == [v for _, v, _ in first + second]

    # And a second restart of the same data dir still holds everything.
    broker.restart(signal.SIGKILL)
    assert _values(read_partition(broker.bootstrap, topic_name, 2000)) == [v for _, v, _ in first + second]


def test_sigkill_while_producing_no_duplicates_no_loss(broker_factory, topic_name):
    """Kill the broker with requests in flight; the producer retries them against the restarted
    broker, which must answer duplicates with their original offsets instead of appending."""
    broker = broker_factory()
    create_topic(broker.bootstrap, topic_name)
    producer = _idempotent_producer(broker.bootstrap)
    total = 30_000
    log = DeliveryLog()
    for i in range(total):
        while True:
            try:
                producer.produce(topic_name, value=b"m-%06d" % i, partition=0, on_delivery=log)
                break
            except BufferError:
                producer.poll(0.05)
        if i == total // 3:
            # Let some batches land, then crash with the rest queued or in flight.
            deadline = time.monotonic() + 30
            while len(log.reports) < 1000 and time.monotonic() < deadline:
                producer.poll(0.01)
            broker.kill()
            broker.start()
    assert producer.flush(180) == 0
    assert not log.errors(), log.errors()[:5]
    assert len(log.reports) == total

    msgs = read_partition(broker.bootstrap, topic_name, total)
    assert _values(msgs) == [b"m-%06d" % i for i in range(total)], "duplicates, gaps or reordering"
    delivered = sorted((r[3], r[1]) for r in log.reports)
    assert delivered == [(m.offset(), m.value()) for m in msgs], "delivery reports disagree with the log"

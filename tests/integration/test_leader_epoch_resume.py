"""Consumers resume across a leader epoch change (KIP-320). A broker restart gives each
partition it leads a new leader epoch (Kafka: leader none, then leader again); a kafka-python
consumer then validates its position with OffsetForLeaderEpoch before fetching on, and must
neither reset nor rewind: every record is read exactly once. Two paths: a consumer that lives
across the restart (its position carries the epoch of the last record it read, older than the
partition's now, so it validates), and a new consumer that resumes from an offset committed at
the old epoch (kafka-python 3 fetches from it without validating; the Java consumer
validates)."""

import signal
import time

from confluent_kafka import Producer
from kafka import KafkaConsumer, OffsetAndMetadata
from kafka import TopicPartition as KafkaTopicPartition
from kafka.errors import KafkaConnectionError, KafkaTimeoutError

import wire
from clients import create_topic

PARTITIONS = 2
PER_PARTITION = 50
WAIT_S = 60.0


def _produce(bootstrap, topic, phase):
    """PER_PARTITION records "phase:p:i" to each partition."""
    producer = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True,
                         "linger.ms": 5})
    errors = []
    for p in range(PARTITIONS):
        for i in range(PER_PARTITION):
            producer.produce(topic, value=f"{phase}:{p}:{i}", partition=p,
                             on_delivery=lambda err, _msg: err and errors.append(err))
    assert producer.flush(60) == 0, "records still undelivered after 60 s"
    assert not errors, errors[:3]


def _consumer(bootstrap, group, name):
    # assign() rather than subscribe(): no rebalance, so the only thing the restart changes for
    # the consumer is the leader epoch. earliest: an UNDEFINED answer would reset to the start
    # and re-read, which the exactly-once check catches.
    return KafkaConsumer(bootstrap_servers=bootstrap, group_id=group, client_id=name,
                         enable_auto_commit=False, auto_offset_reset="earliest",
                         reconnect_backoff_max_ms=200)


def _read(consumer, count, outage_ok=False):
    """Poll until `count` records arrived (a connection error while the broker restarts is
    retried, as an application would); returns [(partition, offset, leader epoch, value)]."""
    out = []
    deadline = time.monotonic() + WAIT_S
    while len(out) < count and time.monotonic() < deadline:
        try:
            batch = consumer.poll(timeout_ms=200)
        except (KafkaConnectionError, KafkaTimeoutError):
            if not outage_ok:
                raise
            time.sleep(0.2)
            continue
        for records in batch.values():
            out += [(r.partition, r.offset, r.leader_epoch, r.value.decode()) for r in records]
    assert len(out) == count, f"read {len(out)} of {count} records within {WAIT_S:.0f} s: {out[-3:]}"
    return out


def _values(records, phase):
    return sorted(v for _, _, _, v in records if v.startswith(f"{phase}:"))


def _expected(phase):
    return sorted(f"{phase}:{p}:{i}" for p in range(PARTITIONS) for i in range(PER_PARTITION))


def _leader_epochs(broker, topic):
    with wire.Connection(broker.host, broker.port) as conn:
        parts = conn.metadata([topic])["topics"][topic]["partitions"]
    return {p: (v["leader"], v["leader_epoch"]) for p, v in parts.items()}


def _wait_led(broker, topic):
    deadline = time.monotonic() + WAIT_S
    while True:
        try:
            epochs = _leader_epochs(broker, topic)
            if len(epochs) == PARTITIONS and all(leader >= 0 for leader, _ in epochs.values()):
                return {p: e for p, (_, e) in epochs.items()}
        except OSError:
            pass
        assert time.monotonic() < deadline, f"{topic} has no leader {WAIT_S:.0f} s after the restart"
        time.sleep(0.2)


def test_consumers_resume_across_a_leader_epoch_change(broker_factory, topic_name):
    broker = broker_factory()
    bs = broker.bootstrap
    create_topic(bs, topic_name, partitions=PARTITIONS)
    tps = [KafkaTopicPartition(topic_name, p) for p in range(PARTITIONS)]
    group = f"{topic_name}-g"
    _produce(bs, topic_name, "before")
    epochs_before = _wait_led(broker, topic_name)

    live = _consumer(bs, group, "live")
    try:
        live.assign(tps)
        first = _read(live, PARTITIONS * PER_PARTITION)
        assert _values(first, "before") == _expected("before")
        # The commit carries the epoch of the last record read, as the consumer's own does.
        last_epoch = {p: max(e for q, _, e, _ in first if q == p) for p in range(PARTITIONS)}
        live.commit({tp: OffsetAndMetadata(PER_PARTITION, "", last_epoch[tp.partition])
                     for tp in tps})

        broker.restart(signal.SIGKILL)
        epochs_after = _wait_led(broker, topic_name)
        assert all(epochs_after[p] > epochs_before[p] for p in range(PARTITIONS)), \
            f"the restart did not change the leader epochs: {epochs_before} -> {epochs_after}"
        _produce(bs, topic_name, "after")

        # The live consumer validates its position (OffsetForLeaderEpoch) and reads on.
        second = _read(live, PARTITIONS * PER_PARTITION, outage_ok=True)
        assert _values(second, "after") == _expected("after"), second[:5]
        assert all(epoch == epochs_after[p] for p, _, epoch, _ in second)
        assert not [r for r in live.poll(timeout_ms=1000).values() if r], "records read twice"
    finally:
        live.close()

    # A new consumer resumes from the commit made at the old epoch.
    resumed = _consumer(bs, group, "resumed")
    try:
        resumed.assign(tps)
        third = _read(resumed, PARTITIONS * PER_PARTITION)
        assert _values(third, "after") == _expected("after"), third[:5]
        assert {p: min(o for q, o, _, _ in third if q == p) for p in range(PARTITIONS)} == \
            {p: PER_PARTITION for p in range(PARTITIONS)}
        assert not [r for r in resumed.poll(timeout_ms=1000).values() if r], "records read twice"
    finally:
        resumed.close()

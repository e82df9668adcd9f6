"""Retention and compaction observed end to end: the background maintenance deletes whole
old segments by time and by size, and the log cleaner compacts `cleanup.policy=compact`
topics, while clients watch ListOffsets, the log dir sizes and what a consumer reads.

Small segments come from the topic config `internal.segment.bytes` (Kafka 4.1 refuses
segment.bytes below 1 MiB but accepts this one, as does Josefine); the broker runs retention
every 500 ms and the cleaner backs off 200 ms. Every test passes on Kafka 4.1.2
(BROKER=kafka) first. Deadlines are generous and polled, never slept through.
"""

import time

from confluent_kafka import Consumer, Producer, TopicPartition, OFFSET_BEGINNING
from confluent_kafka.admin import AlterConfigOpType, ConfigEntry, ConfigResource, ResourceType

from clients import admin, create_topic, produce_all, read_partition, watermarks
from test_admin_records import earliest_offset, log_dirs

SEGMENT_BYTES = 2048
RETENTION_MS = 15_000
DEADLINE_S = 90
FAST_MAINTENANCE = {"log.retention.check.interval.ms": "500", "log.cleaner.backoff.ms": "200"}


def small_batches_producer(bootstrap):
    # One record per batch, so segments roll often and hold whole records.
    return Producer({"bootstrap.servers": bootstrap, "linger.ms": 0, "batch.num.messages": 1,
                     "enable.idempotence": True})


def produce(bootstrap, topic, records):
    """(key, value) pairs, in order; returns their offsets from the delivery reports."""
    log = produce_all(small_batches_producer(bootstrap), topic, [(k, v, None) for k, v in records])
    assert not log.errors(), log.errors()[:3]
    return [r[3] for r in log.reports]


def poll_until(what, check, deadline_s=DEADLINE_S):
    deadline = time.monotonic() + deadline_s
    last = None
    while time.monotonic() < deadline:
        ok, last = check()
        if ok:
            return last
        time.sleep(0.3)
    raise AssertionError(f"{what} not reached within {deadline_s}s; last seen: {last}")


def read_all(bootstrap, topic, partition=0, timeout_s=60):
    """Every record from the log start to the high watermark: [(offset, key, value)]."""
    low, high = watermarks(bootstrap, topic, partition)
    if low == high:
        return []
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "josefine-tests-unused",
                         "enable.auto.commit": False, "auto.offset.reset": "earliest"})
    try:
        consumer.assign([TopicPartition(topic, partition, OFFSET_BEGINNING)])
        out = []
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline and (not out or out[-1][0] < high - 1):
            for msg in consumer.consume(num_messages=1000, timeout=1.0):
                assert msg.error() is None, msg.error()
                out.append((msg.offset(), msg.key(), msg.value()))
        assert out and out[-1][0] == high - 1, f"read up to {out[-1][0] if out else None}, high watermark {high}"
        return out
    finally:
        consumer.close()


def test_time_retention_deletes_every_expired_segment(broker_factory, topic_name):
    """retention.ms=15000: once every record is older, retention deletes all segments, the
    active one included (it rolls a new empty one): ListOffsets earliest equals the log end,
    the log dir size is 0, a consumer from the beginning sees nothing old, and new produce
    continues at the old log end."""
    broker = broker_factory(**FAST_MAINTENANCE)
    bs = broker.bootstrap
    # Long enough that the checks before expiry (a JVM start for kafka-log-dirs) fit in it.
    create_topic(bs, topic_name, config={"retention.ms": str(RETENTION_MS),
                                         "internal.segment.bytes": str(SEGMENT_BYTES)})
    started = time.monotonic()
    offsets = produce(bs, topic_name, [(None, b"x" * 100 + str(i).encode()) for i in range(60)])
    assert offsets == list(range(60))
    assert watermarks(bs, topic_name) == (0, 60)
    assert log_dirs(bs, topic_name)[f"{topic_name}-0"] > 60 * 100
    assert time.monotonic() - started < RETENTION_MS / 1000, "too slow to see the data before it expired"

    poll_until("earliest == log end", lambda: (lambda e: (e == 60, e))(earliest_offset(bs, topic_name, 0)))
    assert watermarks(bs, topic_name) == (60, 60)
    assert log_dirs(bs, topic_name)[f"{topic_name}-0"] == 0

    assert produce(bs, topic_name, [(None, b"after")]) == [60]
    msgs = read_partition(bs, topic_name, 1, offset=0, **{"auto.offset.reset": "earliest"})
    assert [(m.offset(), m.value()) for m in msgs] == [(60, b"after")]


def test_size_retention_keeps_the_newest_segments(broker_factory, topic_name):
    """retention.bytes=4096 with 2 KiB segments: the oldest whole segments go while the rest
    still holds at least retention.bytes, so the log ends between 4096 and 4096 + one segment;
    earliest moves to a later offset and everything from there to the end reads back intact."""
    retention_bytes = 4096
    broker = broker_factory(**FAST_MAINTENANCE)
    bs = broker.bootstrap
    create_topic(bs, topic_name, config={"retention.bytes": str(retention_bytes),
                                         "internal.segment.bytes": str(SEGMENT_BYTES)})
    values = [b"y" * 100 + str(i).encode() for i in range(150)]
    assert produce(bs, topic_name, [(None, v) for v in values]) == list(range(150))

    def size_within_bounds():
        size = log_dirs(bs, topic_name)[f"{topic_name}-0"]
        return retention_bytes <= size <= retention_bytes + SEGMENT_BYTES, size

    size = poll_until("log size within retention.bytes + one segment", size_within_bounds)
    low, high = watermarks(bs, topic_name)
    assert high == 150 and 0 < low < 150, (low, high)
    assert earliest_offset(bs, topic_name, 0) == low
    # What is left is the newest records, roughly size / record size of them.
    assert (150 - low) * 100 <= size, (low, size)
    records = read_all(bs, topic_name)
    assert [(o, v) for o, _, v in records] == [(i, values[i]) for i in range(low, 150)]


def compaction_workload(bootstrap, topic):
    """10 versions of 30 keys (keys 0-4 end with a tombstone), then 60 records with unique
    keys so every key's last version lies in a sealed, cleanable segment. Returns the records
    a fully compacted log holds: {(offset, key, value)}, plus how many were produced."""
    records = []
    for version in range(10):
        for k in range(30):
            key = f"key-{k}".encode()
            last = version == 9
            value = None if last and k < 5 else f"{k}:{version}:".encode() + b"p" * 60
            records.append((key, value))
    records += [(f"tail-{i}".encode(), b"t" * 60) for i in range(60)]
    offsets = produce(bootstrap, topic, records)
    assert offsets == list(range(len(records)))
    latest = {}
    for offset, (key, value) in zip(offsets, records):
        latest[key] = (offset, key, value)
    return set(latest.values()), len(records)


def wait_compacted(bootstrap, topic, expected):
    def compacted():
        seen = read_all(bootstrap, topic)
        return set(seen) == expected and len(seen) == len(expected), len(seen)
    return poll_until(f"the log compacted to {len(expected)} records", compacted)


COMPACT_TOPIC = {"cleanup.policy": "compact", "internal.segment.bytes": str(SEGMENT_BYTES),
                 "min.cleanable.dirty.ratio": "0.01"}


def test_compaction_keeps_the_latest_value_per_key(broker_factory, topic_name):
    """cleanup.policy=compact: the cleaner leaves exactly the latest record of every key
    (tombstones included, delete.retention.ms has not passed) at its original offset; the log
    end does not move and new produce continues after it."""
    broker = broker_factory(**FAST_MAINTENANCE)
    bs = broker.bootstrap
    create_topic(bs, topic_name, config=COMPACT_TOPIC)
    expected, produced = compaction_workload(bs, topic_name)
    wait_compacted(bs, topic_name, expected)
    assert watermarks(bs, topic_name) == (0, produced)
    assert produce(bs, topic_name, [(b"key-7", b"newest")]) == [produced]


def test_compaction_survives_a_crash_mid_clean(broker_factory, topic_name):
    """The cleaner throttled to 20 kB/s is still working when the broker is SIGKILLed; after
    the restart nothing is lost: the same latest record per key at the same offsets, and
    compaction completes."""
    broker = broker_factory(**FAST_MAINTENANCE, **{"log.cleaner.io.max.bytes.per.second": "20000"})
    bs = broker.bootstrap
    create_topic(bs, topic_name, config=COMPACT_TOPIC)
    expected, produced = compaction_workload(bs, topic_name)
    time.sleep(1.5)  # let the (slow) cleaner start rewriting segments
    broker.kill()
    broker.start()
    low, high = watermarks(bs, topic_name)
    assert (low, high) == (0, produced)
    latest = {key: (offset, value) for offset, key, value in read_all(bs, topic_name)}
    assert latest == {key: (offset, value) for offset, key, value in expected}
    wait_compacted(bs, topic_name, expected)


def test_cleaner_follows_a_dynamic_backoff_change(broker_factory, topic_name):
    """log.cleaner.backoff.ms is dynamic (as in Kafka): a cleaner backing off for an hour
    leaves the log alone; after IncrementalAlterConfigs sets 200 ms on broker 1 it compacts
    within the deadline, without a restart."""
    broker = broker_factory(**{"log.retention.check.interval.ms": "500", "log.cleaner.backoff.ms": "3600000"})
    bs = broker.bootstrap
    create_topic(bs, topic_name, config=COMPACT_TOPIC)
    expected, produced = compaction_workload(bs, topic_name)
    time.sleep(3)
    assert len(read_all(bs, topic_name)) == produced, "cleaned while backing off for an hour"

    resource = ConfigResource(ResourceType.BROKER, "1", incremental_configs=[
        ConfigEntry("log.cleaner.backoff.ms", "200", incremental_operation=AlterConfigOpType.SET)])
    client = admin(bs)  # keep the handle alive until the future resolves
    for future in client.incremental_alter_configs([resource], request_timeout=30).values():
        future.result()
    wait_compacted(bs, topic_name, expected)


def test_delete_records_frees_the_segments_below_the_new_start(broker_factory, topic_name):
    """DeleteRecords in the middle of the log: the whole segments below the new log start
    are deleted (the log dir shrinks to about what is left), the one holding the new start
    stays, and the records from the start on read back with their offsets."""
    broker = broker_factory(**FAST_MAINTENANCE)
    bs = broker.bootstrap
    create_topic(bs, topic_name, config={"internal.segment.bytes": str(SEGMENT_BYTES)})
    values = [b"z" * 100 + str(i).encode() for i in range(60)]
    assert produce(bs, topic_name, [(None, v) for v in values]) == list(range(60))
    before = log_dirs(bs, topic_name)[f"{topic_name}-0"]
    assert before > 3 * SEGMENT_BYTES, before

    client = admin(bs)
    tp = TopicPartition(topic_name, 0, 45)
    assert client.delete_records([tp], request_timeout=30)[tp].result().low_watermark == 45
    per_record = before / 60
    bound = per_record * 15 + SEGMENT_BYTES  # the 15 records kept plus one partial segment

    def shrunk():
        size = log_dirs(bs, topic_name)[f"{topic_name}-0"]
        return size <= bound, size

    size = poll_until(f"the log dir at most {bound:.0f} bytes", shrunk)
    assert size >= per_record * 15 * 0.9, (size, per_record)
    assert watermarks(bs, topic_name) == (45, 60)
    records = read_all(bs, topic_name)
    assert [(o, v) for o, _, v in records] == [(i, values[i]) for i in range(45, 60)]

"""ListOffsets: earliest, latest, max timestamp and by timestamp (the time index), through
confluent-kafka's consumer (offsets_for_times, get_watermark_offsets) and admin list_offsets.
"""

import time

from confluent_kafka import Producer, TopicPartition
from confluent_kafka.admin import OffsetSpec

from clients import admin, assign_consumer, create_topic, watermarks

T0 = int(time.time() * 1000) - 3_600_000  # an hour ago: inside any default retention
STEP_MS = 1000


def _produce_timed(bootstrap, topic):
    """Offsets 0..9 at T0 + i*STEP_MS (0..4 in one batch, 5..9 one batch each), then
    offset 10 with a timestamp older than all but offset 0, so max timestamp is offset 9."""
    producer = Producer({"bootstrap.servers": bootstrap, "acks": "all", "linger.ms": 50})
    errors = []

    def report(err, _msg):
        if err is not None:
            errors.append(err)

    for i in range(5):
        producer.produce(topic, value=b"v%d" % i, partition=0, timestamp=T0 + i * STEP_MS, on_delivery=report)
    assert producer.flush(30) == 0
    for i in range(5, 10):
        producer.produce(topic, value=b"v%d" % i, partition=0, timestamp=T0 + i * STEP_MS, on_delivery=report)
        assert producer.flush(30) == 0
    producer.produce(topic, value=b"late", partition=0, timestamp=T0 + 500, on_delivery=report)
    assert producer.flush(30) == 0
    assert not errors, errors


def test_offsets_for_times_and_watermarks(shared_broker, topic_name):
    create_topic(shared_broker.bootstrap, topic_name)
    _produce_timed(shared_broker.bootstrap, topic_name)

    assert watermarks(shared_broker.bootstrap, topic_name) == (0, 11)
    consumer = assign_consumer(shared_broker.bootstrap)
    try:
        cases = {
            T0 - 1: 0,                   # before everything: the first offset
            T0: 0,                       # exact match
            T0 + 300: 1,                 # first record with timestamp >= target (inside the first batch)
            T0 + 2 * STEP_MS: 2,
            T0 + 2500: 3,
            T0 + 7 * STEP_MS: 7,         # single-record batches
            T0 + 8500: 9,
            T0 + 9 * STEP_MS: 9,
            T0 + 9 * STEP_MS + 1: -1,    # after the max timestamp: no such offset
        }
        for target, expected in cases.items():
            [tp] = consumer.offsets_for_times([TopicPartition(topic_name, 0, target)], timeout=10)
            assert tp.error is None, tp.error
            assert tp.offset == expected, f"timestamp T0{target - T0:+d}: offset {tp.offset}, expected {expected}"
    finally:
        consumer.close()


def test_admin_list_offsets_specs(shared_broker, topic_name):
    create_topic(shared_broker.bootstrap, topic_name)
    _produce_timed(shared_broker.bootstrap, topic_name)
    client = admin(shared_broker.bootstrap)
    tp = TopicPartition(topic_name, 0)

    def one(spec):
        return client.list_offsets({tp: spec}, request_timeout=10)[tp].result(timeout=15)

    assert one(OffsetSpec.earliest()).offset == 0
    assert one(OffsetSpec.latest()).offset == 11
    max_ts = one(OffsetSpec.max_timestamp())
    assert (max_ts.offset, max_ts.timestamp) == (9, T0 + 9 * STEP_MS)
    by_ts = one(OffsetSpec.for_timestamp(T0 + 6500))
    assert (by_ts.offset, by_ts.timestamp) == (7, T0 + 7 * STEP_MS)


def test_list_offsets_of_empty_partition(shared_broker, topic_name):
    create_topic(shared_broker.bootstrap, topic_name)
    assert watermarks(shared_broker.bootstrap, topic_name) == (0, 0)
    consumer = assign_consumer(shared_broker.bootstrap)
    try:
        [tp] = consumer.offsets_for_times([TopicPartition(topic_name, 0, T0)], timeout=10)
        assert tp.error is None and tp.offset == -1, tp
    finally:
        consumer.close()

"""Record-level produce errors (KIP-467) as a librdkafka producer sees them.

A batch with records the log refuses one by one (no key on a compacted topic) is refused whole,
and the Produce response (v8+) names each culprit in `record_errors`, so the client fails exactly
those with INVALID_RECORD and the others with its own "a different record in the batch was
invalid" error: the application knows which records to fix and which to resend. Every check
passes on Apache Kafka 4.1 (BROKER=kafka) first.
"""

import time

from confluent_kafka import KafkaError, Producer

from clients import DeliveryLog, create_topic, produce_all, watermarks


def keyless(i):
    return i % 10 == 3


def test_keyless_records_on_a_compacted_topic_are_named(shared_broker, topic_name):
    """100 records in one batch to a compacted topic, 10 without a key: exactly those 10 report
    INVALID_RECORD, the other 90 a different error, nothing is appended; the 90 resent alone
    are accepted."""
    bs = shared_broker.bootstrap
    create_topic(bs, topic_name, config={"cleanup.policy": "compact"})
    # One batch: the whole set is queued before the linger expires.
    producer = Producer({"bootstrap.servers": bs, "linger.ms": 1000,
                         "batch.num.messages": 1000, "enable.idempotence": False})
    # A first record alone, so the producer is connected and the next 100 go in one batch.
    assert not produce_all(producer, topic_name, [(b"first", b"first", None)]).errors()
    records = [(None if keyless(i) else f"k{i}".encode(), f"v{i}".encode(), None)
               for i in range(100)]
    log = produce_all(producer, topic_name, records)
    assert len(log.reports) == 100
    by_value = {r[1]: r[4] for r in log.reports}
    invalid = sorted(i for i in range(100)
                     if by_value[f"v{i}".encode()].code() == KafkaError.INVALID_RECORD)
    assert invalid == [i for i in range(100) if keyless(i)]
    others = {by_value[f"v{i}".encode()].code() for i in range(100) if not keyless(i)}
    # librdkafka's own error for the innocent records of a refused batch.
    assert others == {KafkaError._INVALID_DIFFERENT_RECORD}, others
    assert watermarks(bs, topic_name) == (0, 1)

    log = produce_all(producer, topic_name, [r for i, r in enumerate(records) if not keyless(i)])
    assert not log.errors(), log.errors()[:3]
    assert watermarks(bs, topic_name) == (0, 91)


def test_future_timestamps_are_named(shared_broker, topic_name):
    """Two records an hour in the future (message.timestamp.after.max.ms = 1 min) among 20: the
    batch is refused whole (INVALID_TIMESTAMP) and record_errors names exactly those two."""
    bs = shared_broker.bootstrap
    create_topic(bs, topic_name, config={"message.timestamp.after.max.ms": "60000"})
    producer = Producer({"bootstrap.servers": bs, "linger.ms": 1000,
                         "batch.num.messages": 1000, "enable.idempotence": False})
    assert not produce_all(producer, topic_name, [(b"k", b"first", None)]).errors()
    now_ms = int(time.time() * 1000)
    log = DeliveryLog()
    for i in range(20):
        ts = now_ms + 3_600_000 if i in (4, 11) else now_ms
        producer.produce(topic_name, key=b"k", value=f"v{i}".encode(), partition=0,
                         timestamp=ts, on_delivery=log)
    assert producer.flush(60) == 0
    codes = {r[1]: r[4] and r[4].code() for r in log.reports}
    # librdkafka fails the records named in record_errors with INVALID_RECORD whatever the
    # partition error (here INVALID_TIMESTAMP), the others with its different-record error.
    assert [i for i in range(20) if codes[f"v{i}".encode()] == KafkaError.INVALID_RECORD] == [4, 11]
    assert {codes[f"v{i}".encode()] for i in range(20) if i not in (4, 11)} == {
        KafkaError._INVALID_DIFFERENT_RECORD}
    assert watermarks(bs, topic_name) == (0, 1)

"""Record contents across clients: every codec, headers, null keys and values, size limits.

Each codec is produced by one client and read by another (confluent-kafka -> kafka-python and
kafka-python -> confluent-kafka; the Java console producer's codecs are in test_java_tools.py),
so a broker that mangles a batch, or a client-specific framing, shows up as a mismatch.
"""

import time

import pytest
from confluent_kafka import KafkaError, Producer
from kafka import KafkaConsumer, KafkaProducer
from kafka import TopicPartition as KpTopicPartition
from kafka.errors import MessageSizeTooLargeError

from clients import create_topic, produce_all, read_partition, watermarks

CODECS = ["gzip", "snappy", "lz4", "zstd"]
RECORDS_PER_CODEC = 500
# Kafka's default message.max.bytes: the largest record batch a broker accepts, counting
# the 12-byte offset + length prefix of the batch.
MESSAGE_MAX_BYTES = 1048588
# Batch header (61 bytes incl. that prefix) plus one record's own framing is < 100 bytes.
NEAR_LIMIT_VALUE_BYTES = MESSAGE_MAX_BYTES - 100
OVER_LIMIT_VALUE_BYTES = MESSAGE_MAX_BYTES + 1


def _expected_records(n, codec):
    """Compressible but not constant values; some null keys, null values and headers.
    Never both null in one record: kafka-python refuses to send that."""
    out = []
    for i in range(n):
        key = None if i % 7 == 1 else f"{codec}-key-{i}".encode()
        value = None if i % 7 == 3 else (f"{codec} value {i} " * (1 + i % 20)).encode()
        headers = [("n", str(i).encode()), ("codec", codec.encode())] if i % 3 == 0 else []
        out.append((key, value, headers))
    return out


def kafka_python_read(bootstrap, topic, count, partition=0, timeout_s=60):
    """Read `count` records from offset 0 with kafka-python in assign mode (no group)."""
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False,
                             auto_offset_reset="none", fetch_max_wait_ms=200)
    tp = KpTopicPartition(topic, partition)
    try:
        consumer.assign([tp])
        consumer.seek(tp, 0)
        out = []
        deadline = time.monotonic() + timeout_s
        while len(out) < count and time.monotonic() < deadline:
            for records in consumer.poll(timeout_ms=500).values():
                out.extend(records)
        assert len(out) == count, f"kafka-python read {len(out)} of {count}"
        return out
    finally:
        consumer.close()


def _headers_of(kp_record):
    return [(k, v) for k, v in (kp_record.headers or [])]


@pytest.mark.parametrize("codec", CODECS)
def test_confluent_compressed_read_by_kafka_python(shared_broker, topic_name, codec):
    create_topic(shared_broker.bootstrap, topic_name)
    expected = _expected_records(RECORDS_PER_CODEC, codec)
    producer = Producer({"bootstrap.servers": shared_broker.bootstrap, "acks": "all",
                         "enable.idempotence": True, "compression.type": codec, "linger.ms": 20})
    log = produce_all(producer, topic_name, expected)
    assert not log.errors(), log.errors()[:3]

    got = kafka_python_read(shared_broker.bootstrap, topic_name, len(expected))
    for i, (rec, (key, value, headers)) in enumerate(zip(got, expected)):
        assert rec.offset == i
        assert (rec.key, rec.value) == (key, value), f"record {i}"
        assert _headers_of(rec) == headers, f"record {i} headers"


@pytest.mark.parametrize("codec", CODECS)
def test_kafka_python_compressed_read_by_confluent(shared_broker, topic_name, codec):
    create_topic(shared_broker.bootstrap, topic_name)
    expected = _expected_records(RECORDS_PER_CODEC, codec)
    producer = KafkaProducer(bootstrap_servers=shared_broker.bootstrap, acks="all",
                             compression_type=codec, linger_ms=20)
    try:
        futures = [producer.send(topic_name, key=k, value=v, headers=h, partition=0) for k, v, h in expected]
        producer.flush(timeout=60)
        offsets = [f.get(timeout=60).offset for f in futures]
    finally:
        producer.close()
    assert offsets == list(range(len(expected)))

    got = read_partition(shared_broker.bootstrap, topic_name, len(expected))
    for i, (msg, (key, value, headers)) in enumerate(zip(got, expected)):
        assert (msg.key(), msg.value()) == (key, value), f"record {i}"
        assert (msg.headers() or []) == headers, f"record {i} headers"


def test_headers_null_key_null_value_uncompressed(shared_broker, topic_name):
    create_topic(shared_broker.bootstrap, topic_name)
    expected = [
        (None, None, []),
        (None, b"value-without-key", []),
        (b"key-without-value", None, []),
        (b"k", b"v", [("a", b"1"), ("a", b"2"), ("empty", b""), ("null", None)]),
        (b"", b"", [("utf8-\u00e9", "\u00e9".encode())]),
    ]
    producer = Producer({"bootstrap.servers": shared_broker.bootstrap, "acks": "all"})
    log = produce_all(producer, topic_name, expected)
    assert not log.errors(), log.errors()

    got = read_partition(shared_broker.bootstrap, topic_name, len(expected))
    for msg, (key, value, headers) in zip(got, expected):
        assert (msg.key(), msg.value(), msg.headers() or []) == (key, value, headers)

    kp = kafka_python_read(shared_broker.bootstrap, topic_name, len(expected))
    for rec, (key, value, headers) in zip(kp, expected):
        assert (rec.key, rec.value, _headers_of(rec)) == (key, value, headers)


def _big_producer(bootstrap):
    # Client-side limits raised well past the broker's, so the broker is what decides.
    return Producer({"bootstrap.servers": bootstrap, "acks": "all", "enable.idempotence": False,
                     "message.max.bytes": 4_000_000, "batch.size": 4_000_000,
                     "compression.type": "none", "linger.ms": 0, "retries": 0})


def test_batch_near_message_max_bytes_is_accepted(shared_broker, topic_name):
    create_topic(shared_broker.bootstrap, topic_name)
    value = bytes(range(256)) * (NEAR_LIMIT_VALUE_BYTES // 256) + b"x" * (NEAR_LIMIT_VALUE_BYTES % 256)
    log = produce_all(_big_producer(shared_broker.bootstrap), topic_name, [(None, value, None)])
    assert not log.errors(), log.errors()
    [msg] = read_partition(shared_broker.bootstrap, topic_name, 1)
    assert msg.value() == value


def test_batch_over_message_max_bytes_is_rejected(shared_broker, topic_name):
    create_topic(shared_broker.bootstrap, topic_name)
    log = produce_all(_big_producer(shared_broker.bootstrap), topic_name,
                      [(None, b"y" * OVER_LIMIT_VALUE_BYTES, None)])
    [(_, _, _, _, err)] = log.reports
    assert err is not None and err.code() == KafkaError.MSG_SIZE_TOO_LARGE, err
    assert watermarks(shared_broker.bootstrap, topic_name) == (0, 0), "rejected batch was appended"

    # kafka-python, also with its own limit raised so the broker's error is what comes back.
    producer = KafkaProducer(bootstrap_servers=shared_broker.bootstrap, acks="all",
                             max_request_size=4_000_000, retries=0)
    try:
        future = producer.send(topic_name, value=b"z" * OVER_LIMIT_VALUE_BYTES, partition=0)
        with pytest.raises(MessageSizeTooLargeError):
            future.get(timeout=30)
    finally:
        producer.close()
    assert watermarks(shared_broker.bootstrap, topic_name) == (0, 0), "rejected batch was appended"

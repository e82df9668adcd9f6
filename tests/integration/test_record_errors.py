"""Record-level produce errors (KIP-467) as a librdkafka producer sees them.

A batch with records the log refuses one by one (no key on a compacted topic) is refused whole,
and the Produce response (v8+) names each culprit in `record_errors`, so the client fails exactly
those with INVALID_RECORD and the others with its own "a different record in the batch was
invalid" error: the application knows which records to fix and which to resend. The same
batches from Kafka 4.1.2's Java producer (tests/java/src/RecordErrors.java) and franz-go
(tests/clients/go, which does not read record_errors and fails every record with the partition
error), and a raw Produce of a batch the producer flagged LogAppendTime (refused per record).
Every check passes on Apache Kafka 4.1 (BROKER=kafka) first.
"""

import os
import struct
import subprocess
import time

import pytest
from confluent_kafka import KafkaError, Producer

from clients import DeliveryLog, create_topic, produce_all, watermarks
from conftest import KAFKA_LIBS, REPO_ROOT
import wire


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


JAVA_SOURCE = REPO_ROOT / "tests" / "java" / "src" / "RecordErrors.java"
JVM_FLAGS = ["-Xmx256m", "-XX:TieredStopAtLevel=1", "-XX:+UseSerialGC",
             "-Dorg.slf4j.simpleLogger.defaultLogLevel=warn"]


def java_outcomes(bootstrap, topic, mode):
    """{outcome text: [record indexes]} as the Java producer's callbacks reported them."""
    if not (KAFKA_LIBS / "kafka-clients-4.1.2.jar").exists():
        pytest.fail(f"Kafka jars missing in {KAFKA_LIBS}: run scripts/install-test-deps")
    proc = subprocess.run(["java", *JVM_FLAGS, "-cp", f"{KAFKA_LIBS}/*", str(JAVA_SOURCE),
                           bootstrap, topic, mode], capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, f"RecordErrors.java failed:\n{proc.stdout}\n{proc.stderr[-3000:]}"
    out = {}
    for line in proc.stdout.splitlines():
        _, indexes, what = line.split(" ", 2)
        out[what] = sorted(int(i) for i in indexes.split(","))
    return out


def test_java_producer_names_the_keyless_records(shared_broker, topic_name):
    bs = shared_broker.bootstrap
    create_topic(bs, topic_name, config={"cleanup.policy": "compact"})
    out = java_outcomes(bs, topic_name, "keyless")
    culprit = ("InvalidRecordException: Compacted topic cannot accept message without key in "
               f"topic partition {topic_name}-0")
    assert out == {
        culprit: [i for i in range(100) if keyless(i)],
        # The Java client's own words for the innocent records of a refused batch.
        "KafkaException: Failed to append record because it was part of a batch which had one "
        "more more invalid records": [i for i in range(100) if not keyless(i)],
    }, out
    assert watermarks(bs, topic_name) == (0, 1)


def test_java_producer_names_the_future_records(shared_broker, topic_name):
    bs = shared_broker.bootstrap
    create_topic(bs, topic_name, config={"message.timestamp.after.max.ms": "60000"})
    out = java_outcomes(bs, topic_name, "future")
    innocent = ("KafkaException: Failed to append record because it was part of a batch which "
                "had one more more invalid records")
    others = [i for i in range(20) if i not in (4, 11)]
    assert out.pop(innocent, None) == others, out
    # Each culprit carries its own record error (its timestamp and offset), as the Java
    # client's InvalidRecordException whatever the partition error (INVALID_TIMESTAMP).
    assert sorted(i for idx in out.values() for i in idx) == [4, 11], out
    for what in out:
        assert what.startswith("InvalidRecordException: Timestamp ") and "is out of range" in what, what
    assert watermarks(bs, topic_name) == (0, 1)


GO_BIN = os.environ.get("GO_CLIENTS_BIN", str(REPO_ROOT / ".cache" / "go-clients" / "clients"))


def test_franz_go_fails_the_whole_batch(shared_broker, topic_name):
    """franz-go ignores record_errors: all 100 records carry INVALID_RECORD, none is appended."""
    if not os.path.exists(GO_BIN):
        pytest.fail(f"{GO_BIN} missing: run scripts/install-test-deps")
    bs = shared_broker.bootstrap
    proc = subprocess.run([GO_BIN, "franz", "record-errors", "-brokers", bs, "-topic", topic_name],
                          capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    outcomes = [line for line in proc.stdout.splitlines() if line.startswith("errors ")]
    assert len(outcomes) == 1 and outcomes[0].startswith("errors 100 ") and "INVALID_RECORD" in outcomes[0], proc.stdout
    assert watermarks(bs, topic_name) == (0, 1)


PRODUCE = 0
INVALID_TIMESTAMP = 32


def _varint(n: int) -> bytes:
    return wire._uvarint_bytes((n << 1) ^ (n >> 63))


def _crc32c(data: bytes) -> int:
    crc = 0xFFFFFFFF
    for b in data:
        crc ^= b
        for _ in range(8):
            crc = (crc >> 1) ^ (0x82F63B78 if crc & 1 else 0)
    return crc ^ 0xFFFFFFFF


def _batch(values, timestamp_ms: int, attributes: int) -> bytes:
    """A v2 record batch of keyed records, all at `timestamp_ms`, with the given attributes
    (0x08: the producer claims LogAppendTime, which no client library lets one send)."""
    records = b""
    for i, v in enumerate(values):
        body = (b"\x00" + _varint(0) + _varint(i) + _varint(1) + b"k" + _varint(len(v)) + v
                + _varint(0))
        records += _varint(len(body)) + body
    after_crc = (struct.pack(">hiqqqhii", attributes, len(values) - 1, timestamp_ms, timestamp_ms,
                             -1, -1, -1, len(values)) + records)
    crc = _crc32c(after_crc)
    rest = struct.pack(">ibI", 0, 2, crc) + after_crc
    return struct.pack(">qi", 0, len(rest)) + rest


def _produce(bootstrap, topic, batch):
    """Produce v9 of one batch to partition 0; returns (error, message, [(index, message)])."""
    host, port = bootstrap.rsplit(":", 1)
    records = wire._uvarint_bytes(len(batch) + 1) + batch
    partition = struct.pack(">i", 0) + records + wire._TAGS
    body = (wire._cstr(None) + struct.pack(">hi", -1, 30000)
            + wire._carray([wire._cstr(topic) + wire._carray([partition]) + wire._TAGS]) + wire._TAGS)
    with wire.Connection(host, int(port)) as conn:
        r = conn.request(PRODUCE, 9, body)
        (topic_result,) = r.carray(lambda: (r.cstr(), r.carray(lambda: _partition(r)), r.tags())[1])
        (result,) = topic_result
        return result


def _partition(r):
    r.i32()
    error = r.i16()
    r.i64(), r.i64(), r.i64()
    errors = r.carray(lambda: (r.i32(), r.cstr(), r.tags())[:2])
    message = r.cstr()
    r.tags()
    return error, message, errors


def test_a_batch_flagged_log_append_time_is_refused_per_record(shared_broker, topic_name):
    """Kafka's validateTimestamp: on a LogAppendTime topic every record of a batch the producer
    flagged LogAppendTime is an INVALID_TIMESTAMP record error naming the record; on a
    CreateTime topic the flag is overwritten and the batch appended."""
    bs = shared_broker.bootstrap
    create_topic(bs, topic_name, config={"message.timestamp.type": "LogAppendTime"})
    now = int(time.time() * 1000)
    error, message, errors = _produce(bs, topic_name, _batch([b"a", b"bb", b"ccc"], now, 0x08))
    assert error == INVALID_TIMESTAMP, (error, message, errors)
    assert [i for i, _ in errors] == [0, 1, 2], errors
    assert errors[2][1] == (f"Invalid timestamp type in message DefaultRecord(offset=2, timestamp={now}, "
                            "key=1 bytes, value=3 bytes). Producer should not set timestamp type to "
                            "LogAppendTime."), errors
    assert message == "One or more records have been rejected due to invalid timestamp", message
    assert watermarks(bs, topic_name) == (0, 0)

    create_topic(bs, topic_name + "-ct")
    error, message, errors = _produce(bs, topic_name + "-ct", _batch([b"a"], now, 0x08))
    assert (error, errors) == (0, []), (error, message, errors)
    assert watermarks(bs, topic_name + "-ct") == (0, 1)

"""Topic and broker `compression.type` (broker-side recompression) and the KIP-390 levels.

A batch whose codec differs from its topic's `compression.type` (anything but `producer`) is
rebuilt by the leader in the topic's codec; every client reads the records back unchanged. The
stored codec is read from the batch attributes of a raw Fetch. Every check passes on Apache
Kafka 4.1 (BROKER=kafka) first.
"""

import os
import struct
import subprocess
import time

import pytest
from confluent_kafka import KafkaException, Producer
from confluent_kafka.admin import AlterConfigOpType, ConfigEntry, ConfigResource

import wire
from clients import admin, create_topic, produce_all, read_partition
from conftest import KAFKA_LIBS

FETCH = 1
CODEC_IDS = {"uncompressed": 0, "gzip": 1, "snappy": 2, "lz4": 3, "zstd": 4}
# librdkafka's names for the producer side ("none" is uncompressed).
PRODUCER_CODECS = ["none", "gzip", "snappy", "lz4", "zstd"]
TOOL_TIMEOUT_S = 120
# Kafka applies an altered config when its broker reads the metadata record, a moment after the
# AlterConfigs answer (Josefine answers once its image has it).
CONFIG_PROPAGATION_S = 1.0


def stored_codecs(broker, topic, partition=0):
    """[(base offset, codec id, record count)] of every batch in the partition, from a raw
    Fetch v12 (what the log stores, as any consumer receives it)."""
    out = []
    offset = 0
    with wire.Connection(broker.host, broker.port) as c:
        while True:
            part = struct.pack(">iiqiqi", partition, -1, offset, -1, -1, 8 << 20) + wire._TAGS
            topics = wire._carray([wire._cstr(topic) + wire._carray([part]) + wire._TAGS])
            body = struct.pack(">iiiibii", -1, 500, 1, 8 << 20, 0, 0, -1) + topics
            body += wire._carray([]) + wire._cstr("") + wire._TAGS
            r = c.request(FETCH, 12, body)
            r.i32(), r.i16(), r.i32()  # throttle, error, session
            assert r.uvarint() == 2, "one topic"
            r.cstr()
            assert r.uvarint() == 2, "one partition"
            r.i32()
            error = r.i16()
            assert error == 0, f"fetch error {error}"
            high_watermark = r.i64()
            r.i64(), r.i64()
            r.carray(lambda: (r.i64(), r.i64(), r.tags()))
            r.i32()
            n = r.uvarint()
            records = r.buf[r.pos:r.pos + max(n - 1, 0)]
            at = 0
            while at + 61 <= len(records):
                base, length = struct.unpack_from(">qi", records, at)
                if at + 12 + length > len(records):
                    break
                attributes, last_delta = struct.unpack_from(">hi", records, at + 21)
                (count,) = struct.unpack_from(">i", records, at + 57)
                out.append((base, attributes & 7, count))
                offset = base + last_delta + 1
                at += 12 + length
            if offset >= high_watermark:
                return out


def produce_batch(bs, topic, codec, n=20, prefix="r", idempotent=False):
    """n records with keys, headers and a compressible value, in one batch with `codec`."""
    p = Producer({"bootstrap.servers": bs, "compression.type": codec, "linger.ms": 500,
                  "batch.num.messages": 10000, "enable.idempotence": idempotent})
    records = [(f"k{i}".encode(), f"{prefix}-{codec}-{i} ".encode() * 20,
                [("h", f"{i}".encode()), ("codec", codec.encode())]) for i in range(n)]
    log = produce_all(p, topic, records)
    assert not log.errors(), log.errors()[:3]
    return records


@pytest.mark.parametrize("topic_codec", ["uncompressed", "gzip", "snappy", "lz4", "zstd", "producer"])
def test_every_producer_codec_into_every_topic_codec(shared_broker, topic_name, topic_codec):
    """One batch per producer codec into a topic of `topic_codec`: each is stored with the
    topic's codec (the producer's under `producer`), and a consumer reads keys, values and
    headers back unchanged."""
    bs = shared_broker.bootstrap
    create_topic(bs, topic_name, config={"compression.type": topic_codec})
    sent = []
    for codec in PRODUCER_CODECS:
        sent += produce_batch(bs, topic_name, codec, idempotent=(codec == "zstd"))
    batches = stored_codecs(shared_broker, topic_name)
    # librdkafka may split a set into more than one batch; each batch holds one codec's records.
    assert sum(b[2] for b in batches) == 100, batches
    for base, codec_id, count in batches:
        producer_codec = PRODUCER_CODECS[base // 20]
        assert (base + count - 1) // 20 == base // 20, batches
        want = CODEC_IDS.get(producer_codec, 0) if topic_codec == "producer" else CODEC_IDS[topic_codec]
        assert codec_id == want, (producer_codec, batches)
    got = read_partition(bs, topic_name, len(sent))
    assert [(m.key(), m.value(), m.headers()) for m in got] == sent
    assert [m.offset() for m in got] == list(range(100))


def kcat(*args, stdin=None):
    proc = subprocess.run(["kcat", *args], input=stdin, capture_output=True, timeout=60)
    assert proc.returncode == 0, proc.stderr.decode(errors="replace")
    return proc.stdout


def java_tool(main_class, *args, stdin=None):
    cmd = ["java", "-Xmx384m", "-XX:TieredStopAtLevel=1",
           "-Dorg.slf4j.simpleLogger.defaultLogLevel=warn", "-cp", f"{KAFKA_LIBS}/*", main_class, *args]
    proc = subprocess.run(cmd, input=stdin, capture_output=True, timeout=TOOL_TIMEOUT_S,
                          env={**os.environ, "LC_ALL": "C.UTF-8"})
    out, err = proc.stdout.decode(errors="replace"), proc.stderr.decode(errors="replace")
    assert proc.returncode == 0, f"{main_class} exited {proc.returncode}\n{out}\n{err}"
    return out


def incremental_alter(bs, resource_type, name, key, value):
    """One IncrementalAlterConfigs SET (DELETE when value is None) through confluent-kafka."""
    op = AlterConfigOpType.DELETE if value is None else AlterConfigOpType.SET
    resource = ConfigResource(resource_type, name, incremental_configs=[
        ConfigEntry(key, value, incremental_operation=op)])
    client = admin(bs)  # kept referenced until the futures resolve
    for f in client.incremental_alter_configs([resource]).values():
        f.result(timeout=30)


def alter_topic_codec(bs, topic, codec):
    incremental_alter(bs, ConfigResource.Type.TOPIC, topic, "compression.type", codec)
    time.sleep(CONFIG_PROPAGATION_S)


def test_altering_a_live_topic_and_three_clients_read_it(shared_broker, topic_name):
    """kafka-topics creates a zstd topic; kcat writes uncompressed, the Java console producer
    gzip; then the codec is altered live (snappy, lz4, uncompressed) and new batches follow
    it. kcat, the Java console consumer and confluent-kafka read every record back."""
    bs = shared_broker.bootstrap
    out = java_tool("org.apache.kafka.tools.TopicCommand", "--bootstrap-server", bs, "--create",
                    "--topic", topic_name, "--partitions", "1", "--replication-factor", "1",
                    "--config", "compression.type=zstd")
    assert f"Created topic {topic_name}." in out
    kcat("-b", bs, "-P", "-t", topic_name, "-p", "0", "-K:", "-z", "none",
         stdin=b"".join(f"k{i}:kcat {i}\n".encode() for i in range(10)))
    java_tool("org.apache.kafka.tools.ConsoleProducer", "--bootstrap-server", bs, "--topic", topic_name,
              "--compression-codec", "gzip", "--property", "parse.key=true", "--property", "key.separator=:",
              stdin="".join(f"k{i}:java {i}\n" for i in range(10)).encode())
    expected = [(f"k{i}", f"kcat {i}") for i in range(10)] + [(f"k{i}", f"java {i}") for i in range(10)]
    for codec in ["snappy", "lz4", "uncompressed"]:
        alter_topic_codec(bs, topic_name, codec)
        records = produce_batch(bs, topic_name, "zstd", n=5, prefix="live")
        expected += [(k.decode(), v.decode()) for k, v, _ in records]
    codecs = [b[1] for b in stored_codecs(shared_broker, topic_name)]
    # kcat's 10 and Java's 10 may each arrive in one or more batches; all are zstd.
    assert set(codecs[:-3]) == {CODEC_IDS["zstd"]}, codecs
    assert codecs[-3:] == [CODEC_IDS["snappy"], CODEC_IDS["lz4"], CODEC_IDS["uncompressed"]], codecs

    got = kcat("-b", bs, "-C", "-t", topic_name, "-p", "0", "-o", "beginning", "-e", "-f", "%k:%s\n")
    assert [tuple(line.split(":", 1)) for line in got.decode().splitlines()] == expected
    got = java_tool("org.apache.kafka.tools.consumer.ConsoleConsumer", "--bootstrap-server", bs,
                    "--topic", topic_name, "--partition", "0", "--offset", "earliest",
                    "--max-messages", str(len(expected)), "--property", "print.key=true",
                    "--property", "key.separator=:")
    assert [tuple(line.split(":", 1)) for line in got.splitlines()] == expected
    got = read_partition(bs, topic_name, len(expected))
    assert [(m.key().decode(), m.value().decode()) for m in got] == expected


def test_bad_codecs_and_levels_are_refused_as_kafka_refuses_them(shared_broker, topic_name):
    bs = shared_broker.bootstrap
    with wire.Connection(shared_broker.host, shared_broker.port) as c:
        got = c.create_topics([(topic_name, 1, 1, {"compression.type": "brotli"})])
        error, message, _ = got[topic_name]
        assert error == 40, got  # INVALID_CONFIG
        assert "brotli" in message and "compression.type" in message, message
        for key, bad in [("compression.gzip.level", "0"), ("compression.gzip.level", "10"),
                         ("compression.lz4.level", "18"), ("compression.zstd.level", "23"),
                         ("compression.zstd.level", "x")]:
            error, message, _ = c.create_topics([(topic_name, 1, 1, {key: bad})])[topic_name]
            assert error == 40, (key, bad, message)
            assert key in message, message
    create_topic(bs, topic_name, config={"compression.type": "gzip", "compression.gzip.level": "9",
                                         "compression.zstd.level": "-5", "compression.lz4.level": "1"})
    with pytest.raises(KafkaException) as e:
        incremental_alter(bs, ConfigResource.Type.TOPIC, topic_name, "compression.type", "deflate")
    assert e.value.args[0].code() == 40, e.value
    client = admin(bs)
    described = client.describe_configs([ConfigResource(ConfigResource.Type.TOPIC, topic_name)])
    entries = list(described.values())[0].result(timeout=30)
    assert entries["compression.type"].value == "gzip"
    assert entries["compression.gzip.level"].value == "9"
    assert entries["compression.zstd.level"].value == "-5"
    assert entries["compression.lz4.level"].value == "1"


def test_the_broker_codec_applies_to_topics_without_one(shared_broker, topic_name):
    """compression.type set on the broker (dynamic, broker 1) is the codec of topics that do
    not set it; removing it returns them to `producer`."""
    bs = shared_broker.bootstrap
    create_topic(bs, topic_name)
    incremental_alter(bs, ConfigResource.Type.BROKER, "1", "compression.type", "lz4")
    time.sleep(CONFIG_PROPAGATION_S)
    try:
        produce_batch(bs, topic_name, "gzip", n=5)
    finally:
        incremental_alter(bs, ConfigResource.Type.BROKER, "1", "compression.type", None)
        time.sleep(CONFIG_PROPAGATION_S)
    produce_batch(bs, topic_name, "gzip", n=5)
    assert [b[1] for b in stored_codecs(shared_broker, topic_name)] == [CODEC_IDS["lz4"], CODEC_IDS["gzip"]]

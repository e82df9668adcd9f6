"""Apache Kafka 4.1's own CLI tools, run from their main classes (named in Kafka's bin/*.sh)
with the jars in .cache/kafka-libs: the Java client exactly as Kafka users run it.

kafka-topics (TopicCommand), the console producer and consumer (assign mode: --partition and
--offset, no group), and ProducerPerformance with its default, idempotent, acks=all producer.
"""

import os
import re
import subprocess

import pytest

from clients import create_topic, read_partition, watermarks
from conftest import KAFKA_LIBS

TOOL_TIMEOUT_S = 180

TOPIC_COMMAND = "org.apache.kafka.tools.TopicCommand"
CONSOLE_PRODUCER = "org.apache.kafka.tools.ConsoleProducer"
CONSOLE_CONSUMER = "org.apache.kafka.tools.consumer.ConsoleConsumer"
PRODUCER_PERFORMANCE = "org.apache.kafka.tools.ProducerPerformance"


@pytest.fixture(scope="module", autouse=True)
def _kafka_jars():
    if not (KAFKA_LIBS / "kafka-tools-4.1.2.jar").exists():
        pytest.fail(f"Kafka CLI jars missing in {KAFKA_LIBS}: run scripts/install-test-deps")


def run_tool(main_class, *args, stdin=None, timeout_s=TOOL_TIMEOUT_S):
    cmd = ["java", "-Xmx384m", "-XX:TieredStopAtLevel=1", "-Dorg.slf4j.simpleLogger.defaultLogLevel=warn",
           "-cp", f"{KAFKA_LIBS}/*", main_class, *args]
    proc = subprocess.run(cmd, input=stdin, capture_output=True, timeout=timeout_s,
                          env={**os.environ, "LC_ALL": "C.UTF-8"})
    out, err = proc.stdout.decode(errors="replace"), proc.stderr.decode(errors="replace")
    assert proc.returncode == 0, f"{main_class} {' '.join(args)} exited {proc.returncode}\nstdout:\n{out}\nstderr:\n{err}"
    return out, err


def test_kafka_topics_create_list(shared_broker, topic_name):
    bs = shared_broker.bootstrap
    out, _ = run_tool(TOPIC_COMMAND, "--bootstrap-server", bs, "--create", "--topic", topic_name,
                      "--partitions", "2", "--replication-factor", "1")
    assert f"Created topic {topic_name}." in out

    out, _ = run_tool(TOPIC_COMMAND, "--bootstrap-server", bs, "--list")
    assert topic_name in out.split()

    # Creating it again must fail with Kafka's error, not silently succeed.
    cmd = ["java", "-Xmx384m", "-Dorg.slf4j.simpleLogger.defaultLogLevel=warn", "-cp", f"{KAFKA_LIBS}/*",
           TOPIC_COMMAND, "--bootstrap-server", bs, "--create", "--topic", topic_name,
           "--partitions", "1", "--replication-factor", "1"]
    proc = subprocess.run(cmd, capture_output=True, timeout=TOOL_TIMEOUT_S)
    assert proc.returncode != 0
    assert b"already exists" in proc.stdout + proc.stderr


def test_kafka_topics_describe(shared_broker, topic_name):
    bs = shared_broker.bootstrap
    create_topic(bs, topic_name, partitions=2)
    out, _ = run_tool(TOPIC_COMMAND, "--bootstrap-server", bs, "--describe", "--topic", topic_name)
    assert re.search(rf"Topic: {re.escape(topic_name)}\s+TopicId: \S+\s+PartitionCount: 2\s+ReplicationFactor: 1", out), out
    for p in (0, 1):
        assert re.search(rf"Partition: {p}\s+Leader: 1\s+Replicas: 1\s+Isr: 1", out), out


@pytest.mark.parametrize("codec", ["none", "gzip", "snappy", "lz4", "zstd"])
def test_console_producer_and_consumer(shared_broker, topic_name, codec):
    bs = shared_broker.bootstrap
    create_topic(bs, topic_name)
    lines = [f"k{i}:java {codec} message {i}" for i in range(300)]
    run_tool(CONSOLE_PRODUCER, "--bootstrap-server", bs, "--topic", topic_name,
             "--compression-codec", codec, "--property", "parse.key=true", "--property", "key.separator=:",
             "--producer-property", "acks=all", stdin=("\n".join(lines) + "\n").encode())

    out, err = run_tool(CONSOLE_CONSUMER, "--bootstrap-server", bs, "--topic", topic_name,
                        "--partition", "0", "--offset", "earliest", "--max-messages", str(len(lines)),
                        "--timeout-ms", "60000", "--property", "print.key=true", "--property", "key.separator=:")
    assert out.splitlines() == lines
    assert f"Processed a total of {len(lines)} messages" in err

    # The Java-compressed batches read back through librdkafka too.
    msgs = read_partition(bs, topic_name, len(lines))
    assert [f"{m.key().decode()}:{m.value().decode()}" for m in msgs] == lines


def test_producer_performance_default_idempotent(shared_broker, topic_name):
    bs = shared_broker.bootstrap
    create_topic(bs, topic_name)
    records = 100_000
    out, err = run_tool(PRODUCER_PERFORMANCE, "--topic", topic_name, "--num-records", str(records),
                        "--record-size", "100", "--throughput", "-1", "--producer-props", f"bootstrap.servers={bs}")
    summary = out.strip().splitlines()[-1]
    assert re.match(rf"{records} records sent, [\d.]+ records/sec", summary), out
    for bad in ("ERROR", "Exception", "Error:"):
        assert bad not in out and bad not in err, f"{bad!r} in ProducerPerformance output:\n{out}\n{err}"
    assert watermarks(bs, topic_name) == (0, records)

"""DeleteRecords, DescribeLogDirs, DescribeCluster and DescribeTopicPartitions from the tools
operators run: Kafka 4.1.2's kafka-delete-records, kafka-log-dirs, kafka-cluster and
kafka-topics (Java admin client), and confluent-kafka's AdminClient.

What each test proves is in its docstring. Every check passes on Apache Kafka 4.1.2
(BROKER=kafka) first, so a failure on Josefine is a difference from Kafka.
"""

import json
import re
import subprocess
import time

import pytest
from confluent_kafka import KafkaError, Producer, TopicCollection, TopicPartition
from confluent_kafka.admin import AclOperation, OffsetSpec

from clients import admin, assign_consumer, create_topic, produce_all, read_partition, watermarks
from conftest import KAFKA_LIBS
from test_java_tools import run_tool

DELETE_RECORDS = "org.apache.kafka.tools.DeleteRecordsCommand"
LOG_DIRS = "org.apache.kafka.tools.LogDirsCommand"
CLUSTER_TOOL = "org.apache.kafka.tools.ClusterTool"
TOPIC_COMMAND = "org.apache.kafka.tools.TopicCommand"
REASSIGN_PARTITIONS = "org.apache.kafka.tools.reassign.ReassignPartitionsCommand"


def produce_values(bootstrap, topic, partition, count, prefix="v"):
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5})
    log = produce_all(producer, topic, [(None, f"{prefix}{i}".encode(), None) for i in range(count)],
                      partition=partition)
    assert not log.errors(), log.errors()[:3]
    return [r[3] for r in log.reports]


def delete_records_tool(bootstrap, tmp_path, offsets):
    """Runs kafka-delete-records; returns {"topic-partition": low watermark or error text}."""
    spec = {"version": 1, "partitions": [{"topic": t, "partition": p, "offset": o} for t, p, o in offsets]}
    path = tmp_path / f"offsets-{time.monotonic_ns()}.json"
    path.write_text(json.dumps(spec))
    out, _ = run_tool(DELETE_RECORDS, "--bootstrap-server", bootstrap, "--offset-json-file", str(path))
    result = {}
    for line in out.splitlines():
        m = re.match(r"partition: (\S+)\s+(low_watermark: (\d+)|error: (.*))$", line)
        if m:
            result[m.group(1)] = int(m.group(3)) if m.group(3) is not None else m.group(4)
    assert len(result) == len(offsets), out
    return result


def earliest_offset(bootstrap, topic, partition):
    client = admin(bootstrap)
    tp = TopicPartition(topic, partition)
    return client.list_offsets({tp: OffsetSpec.earliest()}, request_timeout=30)[tp].result().offset


def test_delete_records_tool_moves_log_start(shared_broker, topic_name, tmp_path):
    """kafka-delete-records: an offset sets the low watermark, -1 means the high watermark, an
    offset above it is OffsetOutOfRange, and an offset below the current start answers the
    current start. Afterwards ListOffsets earliest follows, a consumer resetting to earliest
    starts at the new start with the original offsets and values, a read below the start gets
    OFFSET_OUT_OF_RANGE, and new produce continues at the old log end."""
    bs = shared_broker.bootstrap
    create_topic(bs, topic_name, partitions=2)
    assert produce_values(bs, topic_name, 0, 50) == list(range(50))
    assert produce_values(bs, topic_name, 1, 30) == list(range(30))

    result = delete_records_tool(bs, tmp_path, [(topic_name, 0, 10), (topic_name, 1, -1)])
    assert result == {f"{topic_name}-0": 10, f"{topic_name}-1": 30}
    assert watermarks(bs, topic_name, 0) == (10, 50)
    assert watermarks(bs, topic_name, 1) == (30, 30)
    assert earliest_offset(bs, topic_name, 0) == 10

    result = delete_records_tool(bs, tmp_path, [(topic_name, 0, 51)])
    assert "OffsetOutOfRangeException" in result[f"{topic_name}-0"]
    result = delete_records_tool(bs, tmp_path, [(topic_name, 0, 5)])
    assert result == {f"{topic_name}-0": 10}
    assert watermarks(bs, topic_name, 0) == (10, 50)

    # Consumers from "earliest" start at the low watermark; offsets and values are unchanged.
    msgs = read_partition(bs, topic_name, 40, partition=0, offset=0, **{"auto.offset.reset": "earliest"})
    assert [(m.offset(), m.value()) for m in msgs] == [(i, f"v{i}".encode()) for i in range(10, 50)]

    # A fetch below the log start is OFFSET_OUT_OF_RANGE (with no reset policy the consumer
    # reports it instead of jumping).
    consumer = assign_consumer(bs)
    try:
        consumer.assign([TopicPartition(topic_name, 0, 3)])
        deadline = time.monotonic() + 30
        error = None
        while error is None and time.monotonic() < deadline:
            msg = consumer.poll(1.0)
            if msg is not None:
                assert msg.error() is not None, f"read offset {msg.offset()} below the log start"
                error = msg.error()
        assert error is not None and error.code() == KafkaError._AUTO_OFFSET_RESET, error
        assert "out of range" in error.str().lower(), error.str()
    finally:
        consumer.close()

    # The emptied partition keeps its log end: new records continue at 30.
    assert produce_values(bs, topic_name, 1, 3, prefix="new") == [30, 31, 32]
    msgs = read_partition(bs, topic_name, 3, partition=1, offset=30)
    assert [m.value() for m in msgs] == [b"new0", b"new1", b"new2"]


def test_delete_records_admin_client_errors(shared_broker, topic_name):
    """confluent-kafka delete_records: the low watermark on success; per partition
    UNKNOWN_TOPIC_OR_PART for an unknown topic and OFFSET_OUT_OF_RANGE past the high
    watermark; POLICY_VIOLATION on a cleanup.policy=compact topic (Kafka refuses to delete
    records of compact-only topics)."""
    bs = shared_broker.bootstrap
    create_topic(bs, topic_name)
    compact = f"{topic_name}-compact"
    create_topic(bs, compact, config={"cleanup.policy": "compact"})
    produce_values(bs, topic_name, 0, 20)
    producer = Producer({"bootstrap.servers": bs})
    log = produce_all(producer, compact, [(b"k", b"v", None)])
    assert not log.errors()

    client = admin(bs)

    def error_of(tp):
        # One call per offset: the client refuses two offsets for one partition in a call.
        with pytest.raises(Exception) as exc:
            client.delete_records([tp], request_timeout=30, operation_timeout=30)[tp].result()
        return exc.value.args[0].code()

    # An unknown topic is a per-partition error next to a successful partition.
    ok, unknown = TopicPartition(topic_name, 0, 7), TopicPartition(f"{topic_name}-nope", 0, 1)
    futures = client.delete_records([ok, unknown], request_timeout=30, operation_timeout=30)
    assert futures[ok].result().low_watermark == 7
    with pytest.raises(Exception) as exc:
        futures[unknown].result()
    assert exc.value.args[0].code() == KafkaError.UNKNOWN_TOPIC_OR_PART
    assert error_of(TopicPartition(topic_name, 0, 21)) == KafkaError.OFFSET_OUT_OF_RANGE
    assert error_of(TopicPartition(compact, 0, 1)) == KafkaError.POLICY_VIOLATION
    assert watermarks(bs, topic_name) == (7, 20)
    assert watermarks(bs, compact) == (0, 1)


def log_dirs(bootstrap, *topics):
    """kafka-log-dirs --describe (JSON): {partition name: size} over the broker's log dirs."""
    args = ["--bootstrap-server", bootstrap, "--describe"]
    if topics:
        args += ["--topic-list", ",".join(topics)]
    out, _ = run_tool(LOG_DIRS, *args)
    doc = json.loads(next(line for line in out.splitlines() if line.startswith("{")))
    [b] = doc["brokers"]
    assert b["broker"] == 1
    sizes = {}
    for d in b["logDirs"]:
        assert d["error"] is None and d["logDir"], d
        for p in d["partitions"]:
            assert p["offsetLag"] == 0 and p["isFuture"] is False, p
            sizes[p["partition"]] = p["size"]
    return sizes


def test_log_dirs_sizes_grow(shared_broker, topic_name):
    """kafka-log-dirs: every partition of the topic is listed with its size in bytes (0 when
    empty), sizes grow after produce, and --topic-list leaves other topics out."""
    bs = shared_broker.bootstrap
    other = f"{topic_name}-other"
    create_topic(bs, topic_name, partitions=2)
    create_topic(bs, other)
    before = log_dirs(bs, topic_name)
    assert before == {f"{topic_name}-0": 0, f"{topic_name}-1": 0}

    produce_values(bs, topic_name, 0, 200)
    produce_values(bs, other, 0, 10)
    after = log_dirs(bs, topic_name)
    assert set(after) == set(before)
    assert after[f"{topic_name}-0"] > 200 * 4, after  # at least the values' bytes
    assert after[f"{topic_name}-1"] == 0

    produce_values(bs, topic_name, 1, 50)
    everything = log_dirs(bs)
    assert everything[f"{topic_name}-1"] > 0
    assert everything[f"{topic_name}-0"] == after[f"{topic_name}-0"]
    assert everything[f"{other}-0"] > 0


def test_cluster_tool_and_describe_cluster(shared_broker):
    """kafka-cluster cluster-id and list-endpoints (Java admin DescribeCluster): the cluster id
    the Metadata answer carries, and this broker as the one unfenced broker endpoint."""
    bs = shared_broker.bootstrap
    metadata = admin(bs).list_topics(timeout=30)
    out, _ = run_tool(CLUSTER_TOOL, "cluster-id", "--bootstrap-server", bs)
    assert out.strip() == f"Cluster ID: {metadata.cluster_id}"
    out, _ = run_tool(CLUSTER_TOOL, "list-endpoints", "--bootstrap-server", bs)
    rows = [line.split() for line in out.splitlines()[1:] if line.strip()]
    assert rows == [["1", "127.0.0.1", str(shared_broker.port), "null", "unfenced", "broker"]], out


def test_reassign_partitions_list_is_empty(shared_broker, topic_name):
    """kafka-reassign-partitions --list (ListPartitionReassignments): nothing is being
    reassigned on a single node."""
    bs = shared_broker.bootstrap
    create_topic(bs, topic_name, partitions=2)
    out, _ = run_tool(REASSIGN_PARTITIONS, "--bootstrap-server", bs, "--list")
    assert out.strip() == "No partition reassignments found.", out


def test_kafka_topics_describe_pages_with_describe_topic_partitions(shared_broker, topic_name):
    """kafka-topics --describe uses DescribeTopicPartitions (seen in the Java client's debug
    log) and pages with the cursor: with 2 partitions per response, two topics of 3 and 2
    partitions need 3 requests and every partition is described once, with leader, replicas
    and ISR."""
    bs = shared_broker.bootstrap
    a, b = f"{topic_name}-a", f"{topic_name}-b"
    create_topic(bs, a, partitions=3)
    create_topic(bs, b, partitions=2)
    cmd = ["java", "-Xmx384m", "-XX:TieredStopAtLevel=1", "-Dorg.slf4j.simpleLogger.defaultLogLevel=debug",
           "-cp", f"{KAFKA_LIBS}/*", TOPIC_COMMAND, "--bootstrap-server", bs, "--describe",
           "--partition-size-limit-per-response", "2", "--topic", f"{re.escape(topic_name)}-.*"]
    proc = subprocess.run(cmd, capture_output=True, timeout=180)
    out, err = proc.stdout.decode(), proc.stderr.decode()
    assert proc.returncode == 0, err[-3000:]
    requests = re.findall(r"Sending DESCRIBE_TOPIC_PARTITIONS request .*?cursor=(null|Cursor\([^)]*\))", err)
    assert len(requests) == 3, requests
    assert requests[0] == "null"
    for name, count in ((a, 3), (b, 2)):
        assert re.search(rf"Topic: {re.escape(name)}\s+TopicId: \S+\s+PartitionCount: {count}\s+ReplicationFactor: 1",
                         out), out
        for p in range(count):
            assert len(re.findall(rf"Topic: {re.escape(name)}\s+Partition: {p}\s+Leader: 1\s+Replicas: 1\s+Isr: 1\s",
                                  out)) == 1, out


def test_confluent_describe_cluster_and_topics(shared_broker, topic_name):
    """confluent-kafka describe_cluster and describe_topics (librdkafka sends Metadata for
    both): cluster id, controller and node; the topic's id, partitions, leader, replicas and
    ISR; an unknown topic fails with UNKNOWN_TOPIC_OR_PART; authorized operations with no
    authorizer are every operation the resource supports."""
    bs = shared_broker.bootstrap
    create_topic(bs, topic_name, partitions=2)
    client = admin(bs)
    cluster = client.describe_cluster(include_authorized_operations=True, request_timeout=30).result()
    assert cluster.cluster_id == client.list_topics(timeout=30).cluster_id
    assert cluster.controller.id == 1
    assert [(n.id, n.host, n.port) for n in cluster.nodes] == [(1, "127.0.0.1", shared_broker.port)]

    nope = f"{topic_name}-nope"
    futures = client.describe_topics(TopicCollection([topic_name, nope]), include_authorized_operations=True,
                                     request_timeout=30)
    t = futures[topic_name].result()
    assert t.name == topic_name and not t.is_internal and t.topic_id is not None
    assert [(p.id, p.leader.id, [r.id for r in p.replicas], [r.id for r in p.isr]) for p in t.partitions] == \
        [(0, 1, [1], [1]), (1, 1, [1], [1])]
    with pytest.raises(Exception) as exc:
        futures[nope].result()
    assert exc.value.args[0].code() == KafkaError.UNKNOWN_TOPIC_OR_PART

    assert set(cluster.authorized_operations) == {
        AclOperation.CREATE, AclOperation.ALTER, AclOperation.DESCRIBE, AclOperation.CLUSTER_ACTION,
        AclOperation.DESCRIBE_CONFIGS, AclOperation.ALTER_CONFIGS, AclOperation.IDEMPOTENT_WRITE}
    assert set(t.authorized_operations) == {
        AclOperation.READ, AclOperation.WRITE, AclOperation.CREATE, AclOperation.DELETE, AclOperation.ALTER,
        AclOperation.DESCRIBE, AclOperation.DESCRIBE_CONFIGS, AclOperation.ALTER_CONFIGS}

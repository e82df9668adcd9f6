"""CreatePartitions: confluent-kafka's AdminClient and Kafka 4.1's `kafka-topics --alter
--partitions`. Kafka's errors (INVALID_PARTITIONS for a count that is not an increase,
INVALID_REPLICA_ASSIGNMENT for bad manual assignments, UNKNOWN_TOPIC_OR_PART), validate_only,
new partitions visible in Metadata and writable as soon as the call returns, and kept across a
restart. Every test passes against Kafka 4.1.2 (BROKER=kafka).
"""

import re
import time

import pytest
from confluent_kafka import KafkaError, KafkaException, Producer
from confluent_kafka.admin import NewPartitions

from conftest import BROKER_KIND
from clients import admin, create_topic, produce_all, read_partition, watermarks
from test_java_tools import TOPIC_COMMAND, run_tool, _kafka_jars  # noqa: F401 - the fixture checks the jars

TIMEOUT_S = 30


def create_partitions(bs, topic, count, assignment=None, validate_only=False):
    client = admin(bs)
    new = NewPartitions(topic, count) if assignment is None else \
        NewPartitions(topic, count, replica_assignment=assignment)
    futures = client.create_partitions([new],
                                       validate_only=validate_only, request_timeout=TIMEOUT_S)
    return futures[topic].result(timeout=TIMEOUT_S)


def partition_count(bs, topic):
    return len(admin(bs).list_topics(topic, timeout=TIMEOUT_S).topics[topic].partitions)


def wait_partitions(bs, topic, count):
    """Josefine answers CreatePartitions after the new logs are open, so Metadata shows them at
    once; Kafka propagates metadata to its broker asynchronously, so there we poll."""
    if BROKER_KIND == "josefine":
        assert partition_count(bs, topic) == count
        return
    deadline = time.monotonic() + TIMEOUT_S
    while partition_count(bs, topic) != count:
        assert time.monotonic() < deadline, f"{topic} never showed {count} partitions"
        time.sleep(0.2)


def error_of(*args, **kwargs):
    with pytest.raises(KafkaException) as info:
        create_partitions(*args, **kwargs)
    return info.value.args[0]


def produce_to(bs, topic, partition, values):
    producer = Producer({"bootstrap.servers": bs, "linger.ms": 0, "enable.idempotence": True})
    log = produce_all(producer, topic, [(None, v, None) for v in values], partition=partition)
    assert not log.errors(), log.errors()
    return log


def test_errors_and_validate_only(shared_broker, topic_name):
    bs = shared_broker.bootstrap
    create_topic(bs, topic_name, partitions=2)
    for count, code in [(1, KafkaError.INVALID_PARTITIONS), (2, KafkaError.INVALID_PARTITIONS)]:
        assert error_of(bs, topic_name, count).code() == code, count
    err = error_of(bs, topic_name, 1)
    assert "would not be an increase" in err.str(), err.str()
    assert error_of(bs, topic_name + "-missing", 3).code() == KafkaError.UNKNOWN_TOPIC_OR_PART
    for assignment in ([[7]], [[1, 1]]):
        err = error_of(bs, topic_name, 3, assignment=assignment)
        assert err.code() == KafkaError.INVALID_REPLICA_ASSIGNMENT, (assignment, err)
    assert error_of(bs, topic_name, 4, assignment=[[1]]).code() == KafkaError.INVALID_REPLICA_ASSIGNMENT
    create_partitions(bs, topic_name, 5, validate_only=True)
    time.sleep(0.5)  # Kafka: give a (wrong) change time to show
    assert partition_count(bs, topic_name) == 2, "validate_only changes nothing"


def test_new_partitions_are_visible_and_writable_at_once(shared_broker, topic_name):
    bs = shared_broker.bootstrap
    create_topic(bs, topic_name, partitions=1)
    produce_to(bs, topic_name, 0, [b"p0-before"])
    create_partitions(bs, topic_name, 3)
    wait_partitions(bs, topic_name, 3)
    for p in (1, 2):
        log = produce_to(bs, topic_name, p, [f"p{p}-{i}".encode() for i in range(10)])
        assert [r[3] for r in log.reports] == list(range(10))
        assert [m.value() for m in read_partition(bs, topic_name, 10, partition=p)] == \
            [f"p{p}-{i}".encode() for i in range(10)]
    assert watermarks(bs, topic_name, 0) == (0, 1), "existing partitions untouched"
    # A manual assignment naming this broker is accepted too.
    create_partitions(bs, topic_name, 4, assignment=[[1]])
    wait_partitions(bs, topic_name, 4)
    produce_to(bs, topic_name, 3, [b"p3"])


def test_kafka_topics_alter_partitions(shared_broker, topic_name):
    bs = shared_broker.bootstrap
    create_topic(bs, topic_name, partitions=1)
    run_tool(TOPIC_COMMAND, "--bootstrap-server", bs, "--alter", "--topic", topic_name, "--partitions", "4")
    wait_partitions(bs, topic_name, 4)
    out, _ = run_tool(TOPIC_COMMAND, "--bootstrap-server", bs, "--describe", "--topic", topic_name)
    assert re.search(rf"Topic: {re.escape(topic_name)}\s+TopicId: \S+\s+PartitionCount: 4\s", out), out
    for p in range(4):
        assert re.search(rf"Partition: {p}\s+Leader: 1\s+Replicas: 1\s+Isr: 1", out), out
    produce_to(bs, topic_name, 3, [b"after-alter"])
    assert [m.value() for m in read_partition(bs, topic_name, 1, partition=3)] == [b"after-alter"]


def test_new_partitions_survive_restart(broker_factory, topic_name):
    broker = broker_factory()
    bs = broker.bootstrap
    create_topic(bs, topic_name, partitions=1)
    create_partitions(bs, topic_name, 3)
    wait_partitions(bs, topic_name, 3)
    produce_to(bs, topic_name, 2, [b"a", b"b"])
    broker.restart()
    assert partition_count(bs, topic_name) == 3
    assert watermarks(bs, topic_name, 2) == (0, 2)
    produce_to(bs, topic_name, 2, [b"c"])
    assert [m.value() for m in read_partition(bs, topic_name, 3, partition=2)] == [b"a", b"b", b"c"]

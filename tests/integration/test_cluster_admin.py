"""Issue 10, acceptance test 2: admin requests through each broker in turn.

For each broker (bootstrap = that broker only): Kafka's `kafka-topics` (Java Admin client)
and confluent-kafka's AdminClient create, describe, alter the configs of and delete topics,
and every broker then reports the change. Real clients send admin requests to the controller
they learn from Metadata, so the same is also done with raw CreateTopics / DeleteTopics sent
to that very broker (a non-controller must forward them): a topic created through broker N is
at once in broker N's Metadata (Josefine answers only once its own image has it; Kafka's
broker may answer before its metadata cache has the topic, so there it is polled and the
delay printed). Replication factor above the broker count: INVALID_REPLICATION_FACTOR.
"""

import re
import time
import uuid

import pytest
from confluent_kafka import (Consumer, ConsumerGroupTopicPartitions, KafkaError, KafkaException, TopicCollection,
                             TopicPartition)
from confluent_kafka.admin import AlterConfigOpType, ConfigEntry, ConfigResource, NewTopic, ResourceType

import wire
from clients import admin
from cluster import wait_until
from conftest import BROKER_KIND
from test_java_tools import TOPIC_COMMAND, run_tool, _kafka_jars  # noqa: F401 - the fixture checks the jars

pytestmark = pytest.mark.cluster

CONFIG_COMMAND = "kafka.admin.ConfigCommand"
VISIBLE_S = 15


def _name(prefix):
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def _everywhere(cluster, check, what):
    """Wait until `check(metadata)` holds on every broker's own Metadata."""
    wait_until(lambda: all(check(n.metadata()) for n in cluster.nodes), f"{what} on every broker", VISIBLE_S)


def _has(topic, partitions):
    def check(md):
        t = md["topics"].get(topic)
        return t is not None and len(t["partitions"]) == partitions and \
            all(p["leader"] in md["brokers"] for p in t["partitions"].values())
    return check


def _gone(*topics):
    return lambda md: not set(topics) & set(md["topics"])


def _topic_config(client, topic, key):
    res = ConfigResource(ResourceType.TOPIC, topic)
    return client.describe_configs([res], request_timeout=30)[res].result(timeout=30)[key].value


@pytest.mark.parametrize("via", [1, 2, 3])
def test_admin_through_each_broker(shared_cluster, via):
    c = shared_cluster
    node = c.node(via)
    bs = node.bootstrap
    java_topic, confluent_topic, raw_topic = _name(f"java{via}"), _name(f"conf{via}"), _name(f"raw{via}")

    # --- create -----------------------------------------------------------------------------
    out, _ = run_tool(TOPIC_COMMAND, "--bootstrap-server", bs, "--create", "--topic", java_topic,
                      "--partitions", "3", "--replication-factor", "1", "--config", "retention.ms=100000")
    assert f"Created topic {java_topic}." in out

    client = admin(bs)
    futures = client.create_topics([NewTopic(confluent_topic, num_partitions=2, replication_factor=1,
                                             config={"cleanup.policy": "delete"})], request_timeout=30)
    futures[confluent_topic].result(timeout=30)

    t0 = time.monotonic()
    with wire.Connection(node.host, node.port) as conn:
        result = conn.create_topics([(raw_topic, 4, 1, {"segment.ms": "600000"})])
        assert result[raw_topic][0] == wire.NONE, f"CreateTopics through {node}: {result}"
        md = conn.metadata([raw_topic])
    seen_at_once = _has(raw_topic, 4)(md)
    if BROKER_KIND == "josefine":
        assert seen_at_once, f"{node} answered CreateTopics but its Metadata right after has: {md['topics']}"
    else:
        wait_until(lambda: _has(raw_topic, 4)(node.metadata([raw_topic])), f"{raw_topic} on {node}", VISIBLE_S)
        print(f"Kafka: {raw_topic} in {node}'s Metadata {time.monotonic() - t0:.3f} s after CreateTopics "
              f"(at once: {seen_at_once})")
    for topic, partitions in ((java_topic, 3), (confluent_topic, 2), (raw_topic, 4)):
        _everywhere(c, _has(topic, partitions), f"{topic} with {partitions} led partitions")

    # Already there: TOPIC_ALREADY_EXISTS through this broker too.
    with wire.Connection(node.host, node.port) as conn:
        assert conn.create_topics([(raw_topic, 1, 1, {})])[raw_topic][0] == wire.TOPIC_ALREADY_EXISTS
        # More replicas than brokers: refused (Kafka and Josefine alike).
        too_many = _name(f"rf4-{via}")
        error, message, _ = conn.create_topics([(too_many, 1, 4, {})])[too_many]
        assert error == wire.INVALID_REPLICATION_FACTOR, (error, message)
    assert too_many not in node.metadata()["topics"]

    # --- describe ---------------------------------------------------------------------------
    leaders = {t: c.leaders(t, node) for t in (java_topic, confluent_topic)}
    out, _ = run_tool(TOPIC_COMMAND, "--bootstrap-server", bs, "--describe", "--topic", f"{java_topic}|{confluent_topic}")
    for topic, expect in leaders.items():
        assert re.search(rf"Topic: {re.escape(topic)}\s+TopicId: \S+\s+PartitionCount: {len(expect)}\s+ReplicationFactor: 1", out), out
        for p, (leader, _) in expect.items():
            assert re.search(rf"Topic: {re.escape(topic)}\s+Partition: {p}\s+Leader: {leader}\s+Replicas: {leader}\s+Isr: {leader}", out), out
    described = client.describe_topics(TopicCollection([java_topic, confluent_topic]), request_timeout=30)
    for topic, fut in described.items():
        desc = fut.result(timeout=30)
        assert {p.id: p.leader.id for p in desc.partitions} == {p: leader for p, (leader, _) in leaders[topic].items()}

    # --- alter configs ----------------------------------------------------------------------
    run_tool(CONFIG_COMMAND, "--bootstrap-server", bs, "--alter", "--entity-type", "topics",
             "--entity-name", java_topic, "--add-config", "retention.ms=200000")
    res = ConfigResource(ResourceType.TOPIC, confluent_topic,
                         incremental_configs=[ConfigEntry("cleanup.policy", "compact",
                                                          incremental_operation=AlterConfigOpType.SET)])
    client.incremental_alter_configs([res], request_timeout=30)[res].result(timeout=30)
    for n in c.nodes:
        reader = admin(n.bootstrap)
        wait_until(lambda: _topic_config(reader, java_topic, "retention.ms") == "200000",
                   f"retention.ms=200000 of {java_topic} through {n}", VISIBLE_S)
        wait_until(lambda: _topic_config(reader, confluent_topic, "cleanup.policy") == "compact",
                   f"cleanup.policy=compact of {confluent_topic} through {n}", VISIBLE_S)
    out, _ = run_tool(CONFIG_COMMAND, "--bootstrap-server", bs, "--describe", "--entity-type", "topics",
                      "--entity-name", raw_topic)
    assert "segment.ms=600000" in out, out

    # --- delete -----------------------------------------------------------------------------
    out, _ = run_tool(TOPIC_COMMAND, "--bootstrap-server", bs, "--delete", "--topic", java_topic)
    client.delete_topics([confluent_topic], request_timeout=30)[confluent_topic].result(timeout=30)
    with wire.Connection(node.host, node.port) as conn:
        assert conn.delete_topics([raw_topic])[raw_topic][0] == wire.NONE
    _everywhere(c, _gone(java_topic, confluent_topic, raw_topic), "the three topics gone")
    with wire.Connection(node.host, node.port) as conn:
        assert conn.delete_topics([raw_topic])[raw_topic][0] == wire.UNKNOWN_TOPIC_OR_PARTITION


def test_replication_factor_two_accepted_through_every_broker(shared_cluster):
    """Issue 11: a replication factor of 2 is placed on two brokers, through any broker (on
    Kafka too)."""
    for n in shared_cluster.nodes:
        name = _name(f"rf2-{n.node_id}")
        with wire.Connection(n.host, n.port) as conn:
            error, message, _ = conn.create_topics([(name, 1, 2, {})])[name]
        assert error == wire.NONE, (error, message)
        shared_cluster.wait_topic(name, 1)
        replicas = n.metadata([name])["topics"][name]["partitions"][0]["replicas"]
        assert len(set(replicas)) == 2, replicas
        with wire.Connection(n.host, n.port) as conn:
            assert conn.delete_topics([name])[name][0] == wire.NONE


def _commit(consumer, tp):
    try:
        consumer.commit(offsets=[tp], asynchronous=False)
        return True
    except KafkaException as e:
        if e.args[0].retriable() or e.args[0].code() in (KafkaError.NOT_COORDINATOR,
                                                          KafkaError.COORDINATOR_LOAD_IN_PROGRESS):
            return False
        raise


def test_deleting_a_topic_drops_its_offsets_on_a_coordinator_elsewhere(shared_cluster):
    """Committed offsets of a deleted topic go on the group's coordinator even when the
    DeleteTopics went to (and was decided by) other brokers: every broker's coordinator drops
    them when its metadata drops the topic (Kafka's onPartitionsDeleted). Seen through a
    recreated topic of the same name: its group offsets start empty."""
    c = shared_cluster
    controller = c.wait_controller()
    topic = _name("offsets-gone")
    client = admin(c.bootstrap())
    client.create_topics([NewTopic(topic, num_partitions=1, replication_factor=1)],
                         request_timeout=30)[topic].result(timeout=30)
    _everywhere(c, _has(topic, 1), f"{topic} led")

    # A group whose coordinator is not the controller.
    group = coordinator = None
    for _ in range(40):
        candidate = _name("g")
        consumer = Consumer({"bootstrap.servers": c.bootstrap(), "group.id": candidate,
                             "enable.auto.commit": False})
        try:
            # Kafka: the offsets topic created by the first FindCoordinator may still be
            # electing and loading (NOT_COORDINATOR, COORDINATOR_LOAD_IN_PROGRESS).
            wait_until(lambda: _commit(consumer, TopicPartition(topic, 0, 7)), f"a commit by {candidate}", 60)
        finally:
            consumer.close()
        desc = client.describe_consumer_groups([candidate], request_timeout=30)[candidate].result(timeout=30)
        if desc.coordinator.id != controller:
            group, coordinator = candidate, desc.coordinator.id
            break
    assert group is not None, "no group found whose coordinator is not the controller"

    def committed():
        res = client.list_consumer_group_offsets(
            [ConsumerGroupTopicPartitions(group, [TopicPartition(topic, 0)])], request_timeout=30)
        return res[group].result(timeout=30).topic_partitions[0].offset

    assert committed() == 7
    via = next(n for n in c.nodes if n.node_id != coordinator)
    with wire.Connection(via.host, via.port) as conn:
        assert conn.delete_topics([topic])[topic][0] == wire.NONE
    _everywhere(c, _gone(topic), f"{topic} gone")
    client.create_topics([NewTopic(topic, num_partitions=1, replication_factor=1)],
                         request_timeout=30)[topic].result(timeout=30)
    _everywhere(c, _has(topic, 1), f"{topic} recreated")
    # OFFSET_INVALID (-1001): nothing committed for the new topic of that name.
    wait_until(lambda: committed() == -1001,
               f"group {group} (coordinator {coordinator}) without offsets for the recreated {topic}", VISIBLE_S)

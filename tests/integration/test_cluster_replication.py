"""Issue 11: replication factor 3 on a 3-broker cluster.

An RF=3, min.insync.replicas=2 topic: an idempotent acks=all producer (librdkafka) writes
numbered records; every acknowledgement is recorded. Then:
- every replica's log becomes byte-for-byte the leader's (the partition directories' segment
  files are compared: followers keep the leader's batches as stamped);
- kill -9 the leader: a survivor leads (from the ISR) and serves every acknowledged record at
  its acknowledged offset; acks=all writes go on with two in-sync replicas;
- the old leader restarts, catches up (truncating whatever it held beyond the new leader's log)
  and is back in the ISR, its log equal to the leader's again;
- an RF=2, min.insync.replicas=2 partition whose follower is gone (a third of the voters: the
  controller stays up): its ISR shrinks to the leader, acks=all is refused (NOT_ENOUGH_REPLICAS)
  while acks=1 is still accepted by the leader but not visible to consumers (the high
  watermark does not move under min.insync.replicas).
The same test runs against three Kafka 4.1 nodes (BROKER=kafka) to show it checks Kafka's
behaviour.
"""

import time
import uuid
from pathlib import Path

import pytest
from confluent_kafka import Producer, TopicPartition

import wire
from clients import assign_consumer, read_partition
from cluster import wait_until
from conftest import BROKER_KIND
from groups_util import commit_without_joining, committed_offsets

pytestmark = pytest.mark.cluster

PARTITIONS = 3
# Followers out of sync this long leave the ISR: short, so the test takes seconds.
SETTINGS = {"replica.lag.time.max.ms": "4000"}


def _name(prefix):
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def partition_dir(node, topic: str, partition: int) -> Path:
    base = node.data_dir / "kraft-logs" if BROKER_KIND == "kafka" else node.data_dir
    return base / f"{topic}-{partition}"


def log_bytes(node, topic: str, partition: int) -> bytes:
    """The partition's segment files on `node`, concatenated in offset order."""
    d = partition_dir(node, topic, partition)
    return b"".join(p.read_bytes() for p in sorted(d.glob("*.log")))


def partition_view(node, topic: str, partition: int) -> dict:
    md = node.metadata([topic])["topics"][topic]
    assert md["error"] == wire.NONE, md
    return md["partitions"][partition]


def wait_full_isr(c, topic: str, nodes=None):
    """Every partition's ISR holds all three replicas, as every running node reports."""
    def full():
        for n in nodes or c.running():
            for p in range(PARTITIONS):
                v = partition_view(n, topic, p)
                if sorted(v["isr"]) != sorted(v["replicas"]) or len(v["replicas"]) != 3:
                    return None
        return True

    wait_until(full, f"{topic}: every replica back in every ISR", timeout_s=60)


def wait_logs_equal(c, topic: str, nodes):
    """Every partition's segment bytes are the same on every node in `nodes` (and not empty)."""
    def equal():
        sizes = {}
        for p in range(PARTITIONS):
            logs = [log_bytes(n, topic, p) for n in nodes]
            sizes[p] = [len(x) for x in logs]
            if not logs[0] or any(x != logs[0] for x in logs):
                return None
        return sizes

    return wait_until(equal, f"{topic}: the same log bytes on {nodes}", timeout_s=60)


def produce_acked(bootstrap: str, topic: str, start: int, count: int, acks="all",
                  partitions=PARTITIONS) -> list:
    """Idempotent producer; returns [(partition, offset, value)] of every acknowledged record
    and fails on any delivery error."""
    producer = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": acks == "all",
                         "acks": acks, "linger.ms": 5, "message.timeout.ms": 60000})
    acked, errors = [], []

    def on_delivery(err, msg):
        if err is not None:
            errors.append(err)
        else:
            acked.append((msg.partition(), msg.offset(), msg.value().decode()))

    for seq in range(start, start + count):
        p = seq % partitions
        producer.produce(topic, key=f"k{seq}", value=f"v{seq}", partition=p, on_delivery=on_delivery)
        producer.poll(0)
    assert producer.flush(90) == 0, "records still undelivered after 90 s"
    assert not errors, f"delivery errors: {errors[:5]}"
    return acked


def check_acked(bootstrap: str, topic: str, acked: list):
    """Every acknowledged record is read back at its offset, and the partitions hold nothing
    else."""
    by_partition = {}
    for p, offset, value in acked:
        by_partition.setdefault(p, {})[offset] = value
    for p, want in by_partition.items():
        end = max(want) + 1
        got = {m.offset(): m.value().decode() for m in read_partition(bootstrap, topic, end, partition=p)}
        missing = {o: v for o, v in want.items() if got.get(o) != v}
        assert not missing, f"partition {p}: acknowledged records lost or changed: {sorted(missing.items())[:5]}"
        assert len(got) == len(want), f"partition {p}: {len(got)} records, {len(want)} acknowledged"


def test_rf3_acks_all_survives_the_leader_and_the_old_leader_rejoins(cluster_factory):
    c = cluster_factory(settings=SETTINGS)
    topic = _name("replicated")
    with wire.Connection(c.nodes[0].host, c.nodes[0].port) as conn:
        error, message, _ = conn.create_topics([(topic, PARTITIONS, 3, {"min.insync.replicas": "2"})])[topic]
        assert error == wire.NONE, (error, message)
    c.wait_topic(topic, PARTITIONS)
    wait_full_isr(c, topic)

    acked = produce_acked(c.bootstrap(), topic, 0, 300)
    assert len(acked) == 300
    sizes = wait_logs_equal(c, topic, c.nodes)
    print(f"segment bytes per partition on the three replicas: {sizes}")
    check_acked(c.bootstrap(), topic, acked)

    # kill -9 the leader of partition 0 while a producer keeps writing.
    leader_id = partition_view(c.nodes[0], topic, 0)["leader"]
    victim = c.node(leader_id)
    survivors = c.running(exclude=[victim])
    t0 = time.monotonic()
    victim.kill()
    more = produce_acked(c.bootstrap(survivors), topic, 300, 300)
    print(f"300 acks=all records after kill -9 of leader {leader_id}: {time.monotonic() - t0:.2f} s")

    def new_leader():
        v = partition_view(survivors[0], topic, 0)
        return v["leader"] if v["leader"] in {n.node_id for n in survivors} else None

    new = wait_until(new_leader, "a survivor leads partition 0")
    print(f"partition 0: leader {leader_id} -> {new}")
    acked += more
    check_acked(c.bootstrap(survivors), topic, acked)

    # The old leader returns, truncates if it must, catches up and rejoins every ISR.
    victim.start()
    wait_full_isr(c, topic)
    wait_logs_equal(c, topic, c.nodes)
    acked += produce_acked(c.bootstrap(), topic, 600, 60)
    wait_logs_equal(c, topic, c.nodes)
    check_acked(c.bootstrap(), topic, acked)


def test_acks_all_needs_min_insync_replicas(cluster_factory):
    c = cluster_factory(settings=SETTINGS)
    topic = _name("min-isr")
    with wire.Connection(c.nodes[0].host, c.nodes[0].port) as conn:
        error, message, _ = conn.create_topics([(topic, 1, 2, {"min.insync.replicas": "2"})])[topic]
        assert error == wire.NONE, (error, message)
    c.wait_topic(topic, 1)

    def both_in_sync():
        v = partition_view(c.nodes[0], topic, 0)
        return v if len(v["isr"]) == 2 else None

    v = wait_until(both_in_sync, "both replicas in sync")
    acked = produce_acked(c.bootstrap(), topic, 0, 30, partitions=1)

    # The follower goes away (one voter of three: the controller stays): the ISR shrinks to
    # the leader alone.
    leader = c.node(v["leader"])
    follower = c.node(next(r for r in v["replicas"] if r != leader.node_id))
    follower.kill()
    wait_until(lambda: partition_view(leader, topic, 0)["isr"] == [leader.node_id],
               "partition 0's ISR shrunk to its leader", timeout_s=60)

    producer = Producer({"bootstrap.servers": leader.bootstrap, "acks": "all",
                         "message.timeout.ms": 5000, "retries": 0})
    errors = []
    producer.produce(topic, value=b"refused", partition=0,
                     on_delivery=lambda err, msg: errors.append(err))
    producer.flush(30)
    assert errors and errors[0] is not None, errors
    assert errors[0].name() in ("NOT_ENOUGH_REPLICAS", "NOT_ENOUGH_REPLICAS_AFTER_APPEND"), errors[0]

    # acks=1 is taken by the leader, but its high watermark does not move under min.insync.
    before = TopicPartition(topic, 0)
    consumer = assign_consumer(leader.bootstrap)
    try:
        low, high = consumer.get_watermark_offsets(before, timeout=10, cached=False)
    finally:
        consumer.close()
    ones = produce_acked(leader.bootstrap, topic, 1000, 3, acks="1", partitions=1)
    assert len(ones) == 3
    consumer = assign_consumer(leader.bootstrap)
    try:
        _, high_after = consumer.get_watermark_offsets(before, timeout=10, cached=False)
    finally:
        consumer.close()
    assert high_after == high, f"the high watermark moved from {high} to {high_after} under min.insync.replicas"
    assert len([a for a in acked if a[0] == 0]) == high


def test_group_commits_on_a_replicated_offsets_topic(cluster_factory):
    """`__consumer_offsets` with three replicas (Kafka's default on three brokers): a commit is
    answered once every in-sync replica has it, so it survives kill -9 of the coordinator."""
    c = cluster_factory(settings={**SETTINGS, "offsets.topic.replication.factor": "3",
                                  "offsets.topic.num.partitions": "1"})
    topic = _name("grouped")
    with wire.Connection(c.nodes[0].host, c.nodes[0].port) as conn:
        error, message, _ = conn.create_topics([(topic, PARTITIONS, 3, {})])[topic]
        assert error == wire.NONE, (error, message)
    c.wait_topic(topic, PARTITIONS)
    group = _name("group")
    commit_without_joining(c.bootstrap(), group, [TopicPartition(topic, p, 10 + p) for p in range(PARTITIONS)])
    offsets = c.node(1).metadata(["__consumer_offsets"])["topics"]["__consumer_offsets"]["partitions"][0]
    assert len(offsets["replicas"]) == 3, offsets
    coordinator = c.node(offsets["leader"])
    coordinator.kill()
    survivors = c.running()
    got = committed_offsets(c.bootstrap(survivors), group, topic, PARTITIONS)
    assert got == {p: 10 + p for p in range(PARTITIONS)}, got

"""Consumer groups with confluent-kafka (librdkafka 2.16): a group of three on six partitions
through joins, a leave, a consumer restart and a broker restart (groups_util.group_life_cycle),
and static membership (group.instance.id): a static member restarted within its session
timeout gets its partitions back without a rebalance of the others.
"""

import signal
import time

import pytest
from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition
from confluent_kafka.admin import AdminClient

from groups_util import (BATCHES, NO_OFFSET, PARTITIONS, ConfluentMember, OwnershipLog,
                         check_exactly_once, close_quietly, commit_without_joining, committed,
                         committed_offsets, group_broker, group_life_cycle,
                         live_group_across_broker_restart, new_topic, produce_numbered, unique,
                         wait_consumed, wait_settled, wait_topic_ready, wait_until)

__all__ = ["group_broker"]  # the module-scoped broker fixture, used by name below

# Long enough that a restarted static member is back well before the coordinator would
# expire it; the observation below is what shows "no rebalance", not this number.
STATIC_SESSION_TIMEOUT_MS = 30000
# After the restarted static member has its partitions back, watch the others this long:
# a rebalance reaches them with their next heartbeat (every second).
STATIC_OBSERVE_S = 4.0


def test_group_of_three_life_cycle(group_broker):
    ownership = OwnershipLog()

    def make(name, group, topic):
        return ConfluentMember(name, group_broker.bootstrap, group, topic, ownership)

    # SIGKILL: the commits must be durable, not just flushed by a clean shutdown.
    group_life_cycle(group_broker, make, signal.SIGKILL, ownership=ownership)


def test_static_member_restart_without_rebalance(group_broker):
    bs = group_broker.bootstrap
    topic = new_topic(bs, unique("grp-static"))
    group = unique("static")
    zero = {p: 0 for p in range(PARTITIONS)}

    def make(name, instance):
        return ConfluentMember(name, bs, group, topic, **{
            "group.instance.id": instance, "session.timeout.ms": STATIC_SESSION_TIMEOUT_MS})

    members = [make(f"s{i}", f"instance-{i}") for i in (1, 2, 3)]
    s1, s2, s3 = members
    try:
        before = wait_settled(members, sizes=[2, 2, 2])
        end1 = produce_numbered(bs, topic, zero, BATCHES[0])
        wait_consumed(members, end1)
        marks = {m.name: m.event_count() for m in (s1, s3)}

        # A static member closes without LeaveGroup and comes back with the same instance id.
        s2.close()
        s2b = make("s2b", "instance-2")
        members.append(s2b)
        wait_until(lambda: s2b.assignment() == before["s2"], f"s2b gets s2's partitions {sorted(before['s2'])}",
                   members)
        end2 = produce_numbered(bs, topic, end1, BATCHES[1])
        wait_consumed([s1, s2b, s3], end2, end1)
        time.sleep(STATIC_OBSERVE_S)  # observation window, not a timed assertion
        for m in (s1, s3):
            assert m.events_since(marks[m.name]) == [], f"{m.name} was rebalanced: {m.events_since(marks[m.name])}"
            assert m.assignment() == before[m.name]
        check_exactly_once(members, zero, end2)

        # The coordinator lists the three static instances, the group stable.
        admin = AdminClient({"bootstrap.servers": bs})
        desc = admin.describe_consumer_groups([group], request_timeout=30)[group].result(timeout=60)
        assert str(desc.state).endswith("STABLE"), desc.state
        assert sorted(m.group_instance_id for m in desc.members) == ["instance-1", "instance-2", "instance-3"]
        by_instance = {m.group_instance_id: {tp.partition for tp in m.assignment.topic_partitions}
                       for m in desc.members}
        assert by_instance == {"instance-1": before["s1"], "instance-2": before["s2"], "instance-3": before["s3"]}
    finally:
        close_quietly(members)


def test_live_group_survives_broker_restart(group_broker):
    def make(name, group, topic):
        return ConfluentMember(name, group_broker.bootstrap, group, topic, outage_ok=True)

    live_group_across_broker_restart(group_broker, make)


def test_commit_metadata_and_leader_epoch_survive_restart(group_broker):
    bs = group_broker.bootstrap
    topic = new_topic(bs, unique("grp-meta"), partitions=2)
    group = unique("meta")
    produce_numbered(bs, topic, {0: 0, 1: 0}, {0: 5, 1: 5})
    # Partition 0 with metadata and a leader epoch, partition 1 with neither.
    commit_without_joining(bs, group, [TopicPartition(topic, 0, 3, "checkpoint-0", 0), TopicPartition(topic, 1, 5, "")])
    want = [(0, 3, "checkpoint-0", 0), (1, 5, "", None)]

    def read():
        return [(tp.partition, tp.offset, tp.metadata, tp.leader_epoch) for tp in committed(bs, group, topic, 2)]

    assert read() == want
    group_broker.restart(signal.SIGKILL)
    wait_topic_ready(bs, topic, partitions=2)
    assert read() == want


def test_offsets_of_deleted_topic_are_dropped(group_broker):
    bs = group_broker.bootstrap
    topic = new_topic(bs, unique("grp-deleted"), partitions=2)
    group = unique("deleted")
    produce_numbered(bs, topic, {0: 0, 1: 0}, {0: 5, 1: 5})
    commit_without_joining(bs, group, [TopicPartition(topic, 0, 2), TopicPartition(topic, 1, 4)])
    assert committed_offsets(bs, group, topic, 2) == {0: 2, 1: 4}

    admin = AdminClient({"bootstrap.servers": bs})
    admin.delete_topics([topic], operation_timeout=30)[topic].result(timeout=60)
    gone = {0: NO_OFFSET, 1: NO_OFFSET}
    wait_until(lambda: committed_offsets(bs, group, topic, 2) == gone, "the deleted topic's commits are dropped", [])
    # A new topic of the same name starts without the old topic's commits.
    new_topic(bs, topic, partitions=2)
    assert committed_offsets(bs, group, topic, 2) == gone


OFFSETS_TOPIC = "__consumer_offsets"
# offsets.topic.num.partitions: the Kafka default, which these tests' brokers keep.
OFFSETS_PARTITIONS = 50


def kafka_partition_for(group: str) -> int:
    """Kafka's group -> __consumer_offsets partition: Utils.abs(String.hashCode) % 50."""
    h = 0
    for unit in group.encode("utf-16-be").hex(" ", 2).split():
        h = (31 * h + int(unit, 16)) & 0xFFFFFFFF
    h = h - (1 << 32) if h >= 1 << 31 else h
    return 0 if h == -(1 << 31) else abs(h) % OFFSETS_PARTITIONS


def groups_in_offsets_topic(bootstrap: str) -> dict:
    """{group: set of __consumer_offsets partitions holding a record keyed by it}, read in
    assign mode up to the end of every partition. Keys (version int16, then the group as an
    int16-length string) are the same for offset commits (v0/v1) and group metadata (v2)."""
    reader = Consumer({"bootstrap.servers": bootstrap, "group.id": unique("reader"), "enable.auto.commit": False,
                       "enable.partition.eof": True, "auto.offset.reset": "earliest"})
    out = {}
    try:
        reader.assign([TopicPartition(OFFSETS_TOPIC, p, 0) for p in range(OFFSETS_PARTITIONS)])
        at_end = set()
        deadline = time.monotonic() + 60
        while len(at_end) < OFFSETS_PARTITIONS and time.monotonic() < deadline:
            msg = reader.poll(0.5)
            if msg is None:
                continue
            if msg.error() is not None:
                assert msg.error().code() == KafkaError._PARTITION_EOF, msg.error()
                at_end.add(msg.partition())
                continue
            key = msg.key()
            glen = int.from_bytes(key[2:4], "big")
            out.setdefault(key[4:4 + glen].decode(), set()).add(msg.partition())
        assert len(at_end) == OFFSETS_PARTITIONS, f"only {len(at_end)} partitions of {OFFSETS_TOPIC} read to the end"
    finally:
        reader.close()
    return out


def test_many_groups_by_kafka_hash_survive_restart(group_broker):
    """Thirty groups, each with its own commit: each group's records are in the
    __consumer_offsets partition Kafka's hash names (so a Kafka-format log moves between
    brokers), and every commit survives a broker SIGKILL."""
    bs = group_broker.bootstrap
    topic = new_topic(bs, unique("grp-many"), partitions=1)
    produce_numbered(bs, topic, {0: 0}, {0: 40})
    groups = [unique(f"many{i}") for i in range(30)]
    for i, g in enumerate(groups):
        commit_without_joining(bs, g, [TopicPartition(topic, 0, i + 1)])
    where = groups_in_offsets_topic(bs)
    wrong = {g: (sorted(where.get(g, ())), kafka_partition_for(g)) for g in groups
             if where.get(g) != {kafka_partition_for(g)}}
    assert not wrong, f"groups not (only) in Kafka's partition (found, expected): {wrong}"

    group_broker.restart(signal.SIGKILL)
    wait_topic_ready(bs, topic, partitions=1)
    got = {g: committed_offsets(bs, g, topic, 1)[0] for g in groups}
    assert got == {g: i + 1 for i, g in enumerate(groups)}


def test_commit_to_unknown_topic_or_partition_is_refused(group_broker):
    bs = group_broker.bootstrap
    topic = new_topic(bs, unique("grp-unknown"), partitions=1)
    group = unique("unknown")
    for tp in (TopicPartition(unique("no-such-topic"), 0, 5), TopicPartition(topic, 7, 5)):
        with pytest.raises(KafkaException) as info:
            commit_without_joining(bs, group, [tp])
        assert info.value.args[0].code() == KafkaError.UNKNOWN_TOPIC_OR_PART, info.value


def test_protocol_selection_and_inconsistent_protocol(group_broker):
    """The coordinator picks the assignor every member supports, by the members' votes
    (first preference among those), and refuses a member that shares none with the group
    (INCONSISTENT_GROUP_PROTOCOL) without disturbing the others."""
    bs = group_broker.bootstrap
    topic = new_topic(bs, unique("grp-proto"))
    admin = AdminClient({"bootstrap.servers": bs})

    def assignor(group):
        return admin.describe_consumer_groups([group], request_timeout=30)[group].result(timeout=60).partition_assignor

    # range wins two votes to one; the assignment is range's contiguous pairs.
    group = unique("vote")
    prefs = {"a": "roundrobin,range", "b": "range,roundrobin", "c": "range,roundrobin"}
    members = [ConfluentMember(n, bs, group, topic, **{"partition.assignment.strategy": s}) for n, s in prefs.items()]
    outsider = None
    try:
        settled = wait_settled(members, sizes=[2, 2, 2])
        assert sorted(map(sorted, settled.values())) == [[0, 1], [2, 3], [4, 5]], settled
        assert assignor(group) == "range"
        marks = {m.name: m.event_count() for m in members}
        outsider = ConfluentMember("x", bs, group, topic, **{"partition.assignment.strategy": "cooperative-sticky"})
        wait_until(lambda: outsider.error is not None, "the outsider's JoinGroup is refused", members)
        assert "INCONSISTENT_GROUP_PROTOCOL" in outsider.error, outsider.error
        for m in members:
            assert m.events_since(marks[m.name]) == [], f"{m.name} rebalanced: {m.events_since(marks[m.name])}"
    finally:
        close_quietly(members + ([outsider] if outsider else []))

    # The only common protocol is picked even if it is not the first choice of everyone.
    group = unique("common")
    members = [ConfluentMember("d", bs, group, topic, **{"partition.assignment.strategy": "range,roundrobin"}),
               ConfluentMember("e", bs, group, topic, **{"partition.assignment.strategy": "roundrobin"})]
    try:
        settled = wait_settled(members, sizes=[3, 3])
        assert sorted(map(sorted, settled.values())) == [[0, 2, 4], [1, 3, 5]], settled
        assert assignor(group) == "roundrobin"
    finally:
        close_quietly(members)


def test_commit_without_generation_refused_while_group_active(group_broker):
    """An assign-mode commit (generation -1, no member id) is fine for an empty group (the
    other tests rely on it) but UNKNOWN_MEMBER_ID while the group has members, and it
    changes nothing."""
    bs = group_broker.bootstrap
    topic = new_topic(bs, unique("grp-gen"), partitions=2)
    group = unique("gen")
    member = ConfluentMember("a", bs, group, topic)
    try:
        wait_settled([member], partitions=2)
        with pytest.raises(KafkaException) as info:
            commit_without_joining(bs, group, [TopicPartition(topic, 0, 1)])
        assert info.value.args[0].code() == KafkaError.UNKNOWN_MEMBER_ID, info.value
    finally:
        close_quietly([member])
    assert committed_offsets(bs, group, topic, 2) == {0: NO_OFFSET, 1: NO_OFFSET}

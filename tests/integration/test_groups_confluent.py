"""Consumer groups with confluent-kafka (librdkafka 2.16): a group of three on six partitions
through joins, a leave, a consumer restart and a broker restart (groups_util.group_life_cycle),
and static membership (group.instance.id): a static member restarted within its session
timeout gets its partitions back without a rebalance of the others.
"""

import signal
import time

from confluent_kafka import TopicPartition
from confluent_kafka.admin import AdminClient

from groups_util import (BATCHES, NO_OFFSET, PARTITIONS, ConfluentMember, OwnershipLog,
                         check_exactly_once, commit_without_joining, committed, committed_offsets,
                         group_broker, group_life_cycle, live_group_across_broker_restart, new_topic,
                         produce_numbered, unique, wait_consumed, wait_settled, wait_topic_ready,
                         wait_until)

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
        for m in members:
            if not m.closed:
                m.close()


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

"""Consumer groups through command-line tools: Kafka 4.1.2's kafka-consumer-groups (its main
class ConsumerGroupCommand, as bin/kafka-consumer-groups.sh runs it) and kcat's balanced
consumer (-G).

kafka-consumer-groups: --describe (offsets, lag, member columns) of an active and of an
inactive group, --describe --members/--state, --list, --reset-offsets --to-earliest
--execute on an inactive group (a consumer then re-reads from 0), --delete.
kcat -G: a group consume from the beginning commits on exit; the next run reads only what
was produced since.
"""

import os
import re
import subprocess

import pytest
from confluent_kafka import TopicPartition

from conftest import KAFKA_LIBS
from groups_util import (NO_OFFSET, ConfluentMember, check_exactly_once, commit_without_joining,
                         committed_offsets, group_broker, new_topic, produce_numbered, unique,
                         wait_consumed, wait_settled)

__all__ = ["group_broker"]  # the module-scoped broker fixture, used by name below

CONSUMER_GROUPS = "org.apache.kafka.tools.consumer.group.ConsumerGroupCommand"
TOOL_TIMEOUT_S = 180
KCAT_TIMEOUT_S = 120
COUNTS = {0: 10, 1: 20, 2: 30}
ZERO = {p: 0 for p in COUNTS}


def consumer_groups(bootstrap, *args, stderr=False):
    """Run kafka-consumer-groups; its stdout (and stderr, where it prints notes such as
    "has no active members", when asked)."""
    cmd = ["java", "-Xmx256m", "-XX:TieredStopAtLevel=1", "-Dorg.slf4j.simpleLogger.defaultLogLevel=warn",
           "-cp", f"{KAFKA_LIBS}/*", CONSUMER_GROUPS, "--bootstrap-server", bootstrap, *args]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=TOOL_TIMEOUT_S,
                          env={**os.environ, "LC_ALL": "C.UTF-8"})
    assert proc.returncode == 0, f"kafka-consumer-groups {' '.join(args)} exited {proc.returncode}\n" \
                                 f"stdout:\n{proc.stdout}\nstderr:\n{proc.stderr[-3000:]}"
    return (proc.stdout, proc.stderr) if stderr else proc.stdout


def table(out: str, first_column: str) -> list:
    """Rows of the whitespace-separated table whose header starts with `first_column`, as
    dicts keyed by the header's column names."""
    lines = [line for line in out.splitlines() if line.strip()]
    start = next(i for i, line in enumerate(lines) if line.split()[0] == first_column)
    header = lines[start].split()
    rows = []
    for line in lines[start + 1:]:
        cells = line.split()
        if len(cells) != len(header):
            break
        rows.append(dict(zip(header, cells)))
    return rows


def by_partition(rows) -> dict:
    return {int(r["PARTITION"]): r for r in rows}


@pytest.fixture(scope="module", autouse=True)
def _kafka_jars():
    if not (KAFKA_LIBS / "kafka-tools-4.1.2.jar").exists():
        pytest.fail(f"Kafka CLI jars missing in {KAFKA_LIBS}: run scripts/install-test-deps")


def test_consumer_groups_describe_reset_delete(group_broker):
    bs = group_broker.bootstrap
    topic = new_topic(bs, unique("cli-groups"), partitions=len(COUNTS))
    group = unique("cli")
    end = produce_numbered(bs, topic, ZERO, COUNTS)

    # An active member that consumed everything: lag 0, its id, client id and host listed.
    live = ConfluentMember("live-member", bs, group, topic)
    try:
        wait_settled([live], partitions=len(COUNTS))
        wait_consumed([live], end)
        rows = by_partition(table(consumer_groups(bs, "--describe", "--group", group), "GROUP"))
        assert sorted(rows) == [0, 1, 2], rows
        for p, r in rows.items():
            assert (r["GROUP"], r["TOPIC"]) == (group, topic), r
            assert (int(r["CURRENT-OFFSET"]), int(r["LOG-END-OFFSET"]), int(r["LAG"])) == (end[p], end[p], 0), r
            assert r["CONSUMER-ID"] == live.member_id, (r, live.member_id)
            assert r["HOST"] == "/127.0.0.1", r
            assert r["CLIENT-ID"] == "live-member", r
        [member] = table(consumer_groups(bs, "--describe", "--group", group, "--members"), "GROUP")
        assert (member["CONSUMER-ID"], member["CLIENT-ID"], member["#PARTITIONS"]) == (live.member_id, "live-member", "3")
        [state] = table(consumer_groups(bs, "--describe", "--group", group, "--state"), "GROUP")
        assert (state["STATE"], state["#MEMBERS"], state["ASSIGNMENT-STRATEGY"]) == ("Stable", "1", "range"), state
        stable = {r["GROUP"]: r["STATE"] for r in table(consumer_groups(bs, "--list", "--state", "Stable"), "GROUP")}
        assert stable.get(group) == "Stable", stable

        # What an active group refuses (the tool prints the error and still exits 0).
        out = consumer_groups(bs, "--reset-offsets", "--group", group, "--topic", topic, "--to-earliest", "--execute")
        assert f"Assignments can only be reset if the group '{group}' is inactive, but the current state is Stable." in out
        out = consumer_groups(bs, "--delete", "--group", group)
        assert "GroupNotEmptyException: The group is not empty." in out, out
        out = consumer_groups(bs, "--delete-offsets", "--group", group, "--topic", topic)
        statuses = {int(p): status for _, p, status in
                    (line.split(None, 2) for line in out.splitlines() if line.startswith(topic + " "))}
        assert sorted(statuses) == [0, 1, 2], out
        assert all("GroupSubscribedToTopicException" in status for status in statuses.values()), out
        assert committed_offsets(bs, group, topic, partitions=len(COUNTS)) == end
    finally:
        live.close()

    # Inactive, with commits of our choosing: CURRENT-OFFSET / LOG-END-OFFSET / LAG per partition.
    commit_without_joining(bs, group, [TopicPartition(topic, p, o) for p, o in {0: 4, 1: 20, 2: 7}.items()])
    out, err = consumer_groups(bs, "--describe", "--group", group, stderr=True)
    assert f"Consumer group '{group}' has no active members." in err
    rows = by_partition(table(out, "GROUP"))
    got = {p: (int(r["CURRENT-OFFSET"]), int(r["LOG-END-OFFSET"]), int(r["LAG"]), r["CONSUMER-ID"]) for p, r in rows.items()}
    assert got == {0: (4, 10, 6, "-"), 1: (20, 20, 0, "-"), 2: (7, 30, 23, "-")}, out
    [state] = table(consumer_groups(bs, "--describe", "--group", group, "--state"), "GROUP")
    assert (state["STATE"], state["#MEMBERS"]) == ("Empty", "0"), state
    assert group in consumer_groups(bs, "--list").split()
    assert group not in {r["GROUP"] for r in table(consumer_groups(bs, "--list", "--state", "Stable"), "GROUP")}

    # OffsetDelete of one partition of an inactive group: it leaves the description.
    out = consumer_groups(bs, "--delete-offsets", "--group", group, "--topic", f"{topic}:1")
    assert f"Request succeeded for deleting offsets from group {group}." in out, out
    assert [(r["PARTITION"], r["STATUS"]) for r in table(out, "TOPIC")] == [("1", "Successful")], out
    rows = by_partition(table(consumer_groups(bs, "--describe", "--group", group), "GROUP"))
    assert {p: int(r["CURRENT-OFFSET"]) for p, r in rows.items()} == {0: 4, 2: 7}, rows
    assert committed_offsets(bs, group, topic, partitions=len(COUNTS)) == {0: 4, 1: NO_OFFSET, 2: 7}

    # Reset to the earliest offsets; a member then reads everything again from 0.
    out = consumer_groups(bs, "--reset-offsets", "--group", group, "--topic", topic, "--to-earliest", "--execute")
    assert {p: int(r["NEW-OFFSET"]) for p, r in by_partition(table(out, "GROUP")).items()} == ZERO, out
    assert committed_offsets(bs, group, topic, partitions=len(COUNTS)) == ZERO
    again = ConfluentMember("again", bs, group, topic)
    try:
        wait_consumed([again], end)
    finally:
        again.close()
    check_exactly_once([again], ZERO, end)
    assert committed_offsets(bs, group, topic, partitions=len(COUNTS)) == end

    # Delete: gone from the list, and its offsets with it.
    out = consumer_groups(bs, "--delete", "--group", group)
    assert f"Deletion of requested consumer groups ('{group}') was successful." in out, out
    assert group not in consumer_groups(bs, "--list").split()
    assert committed_offsets(bs, group, topic, partitions=len(COUNTS)) == {p: NO_OFFSET for p in COUNTS}


def test_consumer_groups_describe_unknown_group(group_broker):
    # DescribeGroups v6 answers GROUP_ID_NOT_FOUND for a group that does not exist.
    out, err = consumer_groups(group_broker.bootstrap, "--describe", "--group", unique("no-such-group"), stderr=True)
    assert "GroupIdNotFoundException" in out + err, out + err


def kcat_group_consume(bootstrap, group, topic):
    """kcat -G until every assigned partition is at its end (-e); [(partition, offset, value)]."""
    proc = subprocess.run(["kcat", "-b", bootstrap, "-G", group, "-X", "auto.offset.reset=earliest",
                           "-e", "-q", "-f", "%p %o %s\n", topic], capture_output=True, text=True,
                          timeout=KCAT_TIMEOUT_S)
    assert proc.returncode == 0, f"kcat -G exited {proc.returncode}:\n{proc.stderr}"
    out = []
    for line in proc.stdout.splitlines():
        p, o, v = line.split(" ", 2)
        out.append((int(p), int(o), v))
    return out


class _Read:
    """check_exactly_once wants members; kcat's output is one."""

    name = "kcat"

    def __init__(self, records):
        self.records = records

    def consumed(self):
        return self.records


def test_kcat_group_consume_commits(group_broker):
    bs = group_broker.bootstrap
    topic = new_topic(bs, unique("kcat-group"), partitions=len(COUNTS))
    group = unique("kcat")
    end1 = produce_numbered(bs, topic, ZERO, COUNTS)

    first = kcat_group_consume(bs, group, topic)
    check_exactly_once([_Read(first)], ZERO, end1)
    assert committed_offsets(bs, group, topic, partitions=len(COUNTS)) == end1

    # The next run of the same group starts at the commits: only the new records.
    end2 = produce_numbered(bs, topic, end1, {0: 3, 1: 0, 2: 5})
    second = kcat_group_consume(bs, group, topic)
    check_exactly_once([_Read(second)], end1, end2)
    assert committed_offsets(bs, group, topic, partitions=len(COUNTS)) == end2
    assert re.fullmatch(r"kcat-[0-9a-f]{8}", group)

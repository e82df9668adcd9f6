"""Consumer groups with Kafka 4.1.2's own Java consumer (classic protocol), each member a JVM
running tests/java/src/GroupMember.java (compiled once per module with javac):

- the group life cycle of groups_util with the default assignors (range first, so eager);
- cooperative-sticky: a member joining takes partitions only by incremental revocation (the
  others keep, without a revoke, every partition they do not give up), and a member leaving
  makes the others only gain partitions.
"""

import shutil
import signal
import subprocess
import tempfile
import threading
from pathlib import Path

import pytest

from conftest import KAFKA_LIBS, REPO_ROOT
from groups_util import (BATCHES, HEARTBEAT_INTERVAL_MS, PARTITIONS, SESSION_TIMEOUT_MS, Member,
                         check_exactly_once, check_in_order, close_quietly, committed_offsets,
                         group_broker, group_life_cycle, wait_until,
                         live_group_across_broker_restart, new_topic,
                         produce_numbered, unique, wait_consumed, wait_settled)

__all__ = ["group_broker"]  # the module-scoped broker fixture, used by name below

SOURCE = REPO_ROOT / "tests" / "java" / "src" / "GroupMember.java"
COOPERATIVE = "org.apache.kafka.clients.consumer.CooperativeStickyAssignor"
# A member JVM gets this long to leave the group and exit after "close".
CLOSE_TIMEOUT_S = 60
JVM_FLAGS = ["-Xmx160m", "-XX:TieredStopAtLevel=1", "-XX:+UseSerialGC",
             "-Dorg.slf4j.simpleLogger.defaultLogLevel=warn"]


@pytest.fixture(scope="module")
def member_classes():
    """GroupMember compiled against the Kafka jars into a temp dir."""
    if not (KAFKA_LIBS / "kafka-clients-4.1.2.jar").exists():
        pytest.fail(f"Kafka jars missing in {KAFKA_LIBS}: run scripts/install-test-deps")
    out = Path(tempfile.mkdtemp(prefix="josefine-it-java-"))
    try:
        proc = subprocess.run(["javac", "-d", str(out), "-cp", f"{KAFKA_LIBS}/*", str(SOURCE)],
                              capture_output=True, text=True, timeout=180)
        assert proc.returncode == 0, f"javac failed:\n{proc.stdout}\n{proc.stderr}"
        yield out
    finally:
        shutil.rmtree(out, ignore_errors=True)


class JavaMember(Member):
    """A GroupMember JVM; a reader thread turns its stdout lines into Member events. Lines of
    different JVMs reach us through different pipes, so their relative order is not
    trustworthy: only settled states are checked for Java, no OwnershipLog."""

    def __init__(self, name, classes, bootstrap, group, topic, **conf):
        super().__init__(name)
        settings = {"client.id": name, "session.timeout.ms": SESSION_TIMEOUT_MS,
                    "heartbeat.interval.ms": HEARTBEAT_INTERVAL_MS}
        settings.update(conf)
        cmd = ["java", *JVM_FLAGS, "-cp", f"{KAFKA_LIBS}/*:{classes}", "GroupMember", bootstrap, group, topic,
               *(f"{k}={v}" for k, v in settings.items())]
        self.stderr_path = Path(tempfile.mkstemp(prefix=f"josefine-it-{name}-", suffix=".stderr")[1])
        self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=open(self.stderr_path, "wb"), text=True, bufsize=1)
        self.saw_closed = threading.Event()
        self.commit_retries = 0
        self.reader = threading.Thread(target=self._read, name=f"java-{name}", daemon=True)
        self.reader.start()

    def _read(self):
        for line in self.proc.stdout:
            kind, _, rest = line.rstrip("\n").partition(" ")
            parts = [int(p) for p in rest.split(",") if p] if kind in ("ASSIGNED", "REVOKED", "LOST") else []
            if kind == "ASSIGNED":
                self._assigned(parts)
            elif kind in ("REVOKED", "LOST"):
                self._revoked(parts, kind.lower())
            elif kind == "RECORD":
                p, o, v = rest.split(" ", 2)
                self._record(int(p), int(o), v)
            elif kind == "COMMIT-RETRY":
                self.commit_retries += 1
            elif kind in ("PAUSED", "RESUMED"):
                self._note(kind.lower())
            elif kind == "CLOSED":
                self.saw_closed.set()
        code = self.proc.wait()
        if code != 0 or not self.saw_closed.is_set():
            self.error = f"JVM exited {code} (closed: {self.saw_closed.is_set()}):\n{self.stderr_tail()}"

    def send(self, command: str):
        self.proc.stdin.write(command + "\n")
        self.proc.stdin.flush()

    def stderr_tail(self, lines=30):
        return "\n".join(self.stderr_path.read_text(errors="replace").splitlines()[-lines:])

    def close(self):
        try:
            self.proc.stdin.write("close\n")
            self.proc.stdin.close()
        except BrokenPipeError:
            pass
        try:
            self.proc.wait(CLOSE_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.reader.join(10)
        self._gone()
        self.stderr_path.unlink(missing_ok=True)
        self.check_alive()

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.closed = True


def test_group_of_three_life_cycle(group_broker, member_classes):
    def make(name, group, topic):
        return JavaMember(name, member_classes, group_broker.bootstrap, group, topic)

    group_life_cycle(group_broker, make, signal.SIGKILL)


@pytest.mark.slow  # ~20 s; confluent and kafka-python run the same scenario by default
def test_live_group_survives_broker_restart(group_broker, member_classes):
    def make(name, group, topic):
        return JavaMember(name, member_classes, group_broker.bootstrap, group, topic)

    live_group_across_broker_restart(group_broker, make)


def test_crashed_member_expires(group_broker, member_classes):
    """A member JVM killed with SIGKILL sends no LeaveGroup: the coordinator expires it after
    session.timeout.ms and the two survivors take its partitions from its commits."""
    bs = group_broker.bootstrap
    topic = new_topic(bs, unique("grp-crash"))
    group = unique("crash")
    zero = {p: 0 for p in range(PARTITIONS)}
    members = [JavaMember(n, member_classes, bs, group, topic) for n in ("k1", "k2", "k3")]
    k1, k2, k3 = members
    try:
        wait_settled(members, sizes=[2, 2, 2])
        end1 = produce_numbered(bs, topic, zero, BATCHES[0])
        wait_consumed(members, end1)
        # Its commits are all in before it dies (none is in flight).
        wait_until(lambda: committed_offsets(bs, group, topic) == end1, f"commits reach {end1}", members)
        k2.kill()
        wait_settled([k1, k3], sizes=[3, 3])
        end2 = produce_numbered(bs, topic, end1, BATCHES[1])
        wait_consumed([k1, k3], end2, end1)
        check_in_order(members)
        check_exactly_once(members, zero, end2)
    finally:
        close_quietly(members)


# The slow member stops polling for longer than the session timeout but well within the
# rebalance timeout (max.poll.interval.ms): its heartbeats keep it a member, and the
# coordinator must wait for its JoinGroup instead of completing the rebalance without it.
SLOW_PAUSE_MS = 10000
SLOW_MAX_POLL_INTERVAL_MS = 45000


def test_slow_member_rejoins_within_rebalance_timeout(group_broker, member_classes):
    bs = group_broker.bootstrap
    topic = new_topic(bs, unique("grp-slow"))
    group = unique("slow")
    zero = {p: 0 for p in range(PARTITIONS)}

    def make(name):
        return JavaMember(name, member_classes, bs, group, topic, **{"max.poll.interval.ms": SLOW_MAX_POLL_INTERVAL_MS})

    members = [make(n) for n in ("w1", "w2", "w3")]
    w1 = members[0]
    try:
        wait_settled(members, sizes=[2, 2, 2])
        mark = w1.event_count()
        w1.send(f"pause {SLOW_PAUSE_MS}")
        wait_until(lambda: any(e[1] == "paused" for e in w1.events_since(mark)), "w1 pauses", members)
        members.append(make("w4"))
        wait_settled(members, sizes=[1, 1, 2, 2])
        events = w1.events_since(mark)
        kinds = [e[1] for e in events]
        assert "lost" not in kinds, f"the slow member was dropped instead of waited for: {events}"
        # It took part in the rebalance: revoked (eager) after it resumed, then assigned.
        assert kinds.index("resumed") < kinds.index("revoked") < len(kinds) - kinds[::-1].index("assigned"), events
        end1 = produce_numbered(bs, topic, zero, BATCHES[0])
        wait_consumed(members, end1)
        check_exactly_once(members, zero, end1)
    finally:
        close_quietly(members)


def test_cooperative_sticky_incremental(group_broker, member_classes):
    bs = group_broker.bootstrap
    topic = new_topic(bs, unique("grp-coop"))
    group = unique("coop")
    zero = {p: 0 for p in range(PARTITIONS)}

    def make(name):
        return JavaMember(name, member_classes, bs, group, topic, **{"partition.assignment.strategy": COOPERATIVE})

    members = [make(n) for n in ("c1", "c2", "c3")]
    try:
        before = wait_settled(members, sizes=[2, 2, 2])
        end1 = produce_numbered(bs, topic, zero, BATCHES[0])
        wait_consumed(members, end1)
        marks = {m.name: m.event_count() for m in members}

        # A fourth joins: 6 over 4 is 2,2,1,1; it gets exactly what the others gave up.
        c4 = make("c4")
        old = list(members)
        members.append(c4)
        after = wait_settled(members, sizes=[1, 1, 2, 2])
        given_up = set()
        for m in old:
            events = m.events_since(marks[m.name])
            revoked = {p for (_, kind, parts) in events if kind != "assigned" for p in parts}
            gained = {p for (_, kind, parts) in events if kind == "assigned" for p in parts}
            assert not [e for e in events if e[1] == "lost"], f"{m.name} lost partitions: {events}"
            assert after[m.name] <= before[m.name], f"{m.name} went from {before[m.name]} to {after[m.name]}"
            assert revoked == before[m.name] - after[m.name], \
                f"{m.name} kept {sorted(after[m.name])} but had {sorted(revoked)} revoked: {events}"
            assert not gained, f"{m.name} was assigned {sorted(gained)} while a member joined: {events}"
            given_up |= revoked
        assert given_up == after["c4"], f"c4 owns {sorted(after['c4'])}, the others gave up {sorted(given_up)}"

        # Records keep flowing to whoever owns them.
        end2 = produce_numbered(bs, topic, end1, BATCHES[1])
        wait_consumed(members, end2)
        check_in_order(members)
        check_exactly_once(members, zero, end2)

        # One leaves: the others only gain, nothing of theirs is revoked.
        marks = {m.name: m.event_count() for m in members}
        leaver = next(m for m in old if len(after[m.name]) == 2)
        leaver.close()
        stay = [m for m in members if m is not leaver]
        final = wait_settled(stay, sizes=[2, 2, 2])
        for m in stay:
            events = m.events_since(marks[m.name])
            revoked = [e for e in events if e[1] != "assigned" and e[2]]
            assert not revoked, f"{m.name} had partitions revoked when {leaver.name} left: {events}"
            assert after[m.name] <= final[m.name]
        end3 = produce_numbered(bs, topic, end2, BATCHES[2])
        wait_consumed(stay, end3, end2)
        check_exactly_once(members, zero, end3)
    finally:
        close_quietly(members)

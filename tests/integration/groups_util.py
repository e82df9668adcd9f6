"""Shared machinery for the consumer-group tests (test_groups_*.py).

Owns: a module-scoped broker started with group-friendly settings, numbered records
(value "p:seq" at offset seq of partition p, so any skipped or re-read record is visible),
a client-neutral `Member` (one group member: its current assignment from the rebalance
callbacks, every record it consumed, every rebalance event), the waits ("the group has
settled", "every record has been consumed") and the checks every client's test shares:
ownership, exactly-once consumption, committed offsets, and the whole group life cycle
(join, leave, join, consumer restart, broker restart).

Must never decide a test by timing: waits are generous deadlines (up to 60 s) on conditions
that a broken coordinator does not reach, and a wait that expires fails with a description
of what the group looked like. Members commit every record they consume before their next
poll, and rebalances only happen inside poll, so a correct coordinator gives every record
to the group exactly once; that is what the checks demand.
"""

import os
import shutil
import tempfile
import threading
import time
from pathlib import Path

import pytest
from confluent_kafka import Producer, TopicPartition

from clients import create_topic
from conftest import BrokerFactory

PARTITIONS = 6
# Generous: a group of three JVMs on a busy 2-core machine can take a while to settle.
WAIT_S = 60.0
# A settled group keeps the same assignment for this long before we believe it.
SETTLE_QUIET_S = 2.0
# Settings on every broker these tests start: no initial-join delay (the brief's rule),
# so a rebalance is as fast as the clients make it.
BROKER_SETTINGS = {"group.initial.rebalance.delay.ms": "0"}
# Consumer settings shared by every client (Kafka names): a short session so a dead member
# is noticed within seconds, heartbeats every second so a rebalance is noticed quickly.
SESSION_TIMEOUT_MS = 6000
HEARTBEAT_INTERVAL_MS = 1000
# librdkafka's "no committed offset" (OFFSET_INVALID).
NO_OFFSET = -1001


def start_module_broker(request, **settings):
    """Generator for a module-scoped broker fixture: one broker for every test of a module
    (a Kafka JVM start costs ~20 s here). Logs are kept and printed when a test failed."""
    root = Path(tempfile.mkdtemp(prefix="josefine-it-groups-"))
    factory = BrokerFactory(root)
    failed_before = request.session.testsfailed
    merged = dict(BROKER_SETTINGS)
    merged.update(settings)
    try:
        yield factory(**merged)
    finally:
        factory.close()
        if request.session.testsfailed > failed_before or os.environ.get("KEEP_BROKER_DATA"):
            for b in factory.brokers:
                print(f"\n---- {b.kind} log {b.log_path} ----\n{b.log_tail(80)}")
            print(f"broker data kept in {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="module")
def group_broker(request):
    """A private broker for one test module, with BROKER_SETTINGS."""
    yield from start_module_broker(request)


def unique(prefix: str) -> str:
    return f"{prefix}-{os.urandom(4).hex()}"


# ---------------------------------------------------------------------------------------
# Numbered records


def value_of(partition: int, seq: int) -> str:
    return f"{partition}:{seq}"


def produce_numbered(bootstrap: str, topic: str, start: dict, count: dict) -> dict:
    """Produce count[p] records to each partition p, numbered from start[p]; returns the new
    end offsets. The idempotent producer makes offset == sequence number on a fresh topic,
    and we check that it did, so later checks can compare offsets with values."""
    producer = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True, "linger.ms": 5})
    delivered = []

    def on_delivery(err, msg):
        delivered.append((err, msg.partition(), msg.offset(), msg.value().decode()))

    for p in sorted(count):
        for seq in range(start[p], start[p] + count[p]):
            producer.produce(topic, key=f"k{p}-{seq}", value=value_of(p, seq), partition=p,
                             on_delivery=on_delivery)
    assert producer.flush(60) == 0, "records still undelivered after 60 s"
    errors = [d for d in delivered if d[0] is not None]
    assert not errors, f"delivery errors: {errors[:5]}"
    wrong = [d for d in delivered if d[3] != value_of(d[1], d[2])]
    assert not wrong, f"records not at the offset of their sequence number: {wrong[:5]}"
    return {p: start[p] + count[p] for p in start}


def wait_topic_ready(bootstrap: str, topic: str, partitions: int = PARTITIONS):
    """After a broker restart: wait until Metadata lists every partition of `topic` with a
    leader. Kafka needs a moment after start-up to load its metadata image; a group leader
    that computes an assignment before then (kafka-python's does) assigns nothing."""
    from confluent_kafka.admin import AdminClient

    admin = AdminClient({"bootstrap.servers": bootstrap})
    deadline = time.monotonic() + WAIT_S
    last = None
    while time.monotonic() < deadline:
        try:
            md = admin.list_topics(topic, timeout=10).topics.get(topic)
            last = md
            if md is not None and md.error is None and len(md.partitions) == partitions \
                    and all(p.leader >= 0 and p.error is None for p in md.partitions.values()):
                return
        except Exception as exc:  # noqa: BLE001 - not ready yet
            last = exc
        time.sleep(0.2)
    raise AssertionError(f"topic {topic} not ready within {WAIT_S:.0f} s: {last}")


def new_topic(bootstrap: str, name: str, partitions: int = PARTITIONS) -> str:
    create_topic(bootstrap, name, partitions=partitions)
    return name


# ---------------------------------------------------------------------------------------
# Members


class Member:
    """One group member, whatever the client. Subclasses feed `_assigned`, `_revoked`,
    `_lost` and `_record` from their client's callbacks and poll loop (any thread)."""

    def __init__(self, name: str, ownership=None):
        self.name = name
        self.ownership = ownership
        self.lock = threading.Lock()
        self.parts = set()
        self.records = []  # (partition, offset, value) in consumption order
        self.events = []  # (monotonic time, kind, sorted partitions)
        self.error = None
        self.closed = False

    # -- fed by the client
    def _assigned(self, parts):
        with self.lock:
            if self.ownership is not None:
                self.ownership.assigned(self.name, parts)
            self.parts |= set(parts)
            self.events.append((time.monotonic(), "assigned", sorted(parts)))

    def _revoked(self, parts, kind="revoked"):
        with self.lock:
            if self.ownership is not None:
                self.ownership.released(self.name, parts)
            self.parts -= set(parts)
            self.events.append((time.monotonic(), kind, sorted(parts)))

    def _note(self, kind):
        """An event without partitions (e.g. a Java member pausing)."""
        with self.lock:
            self.events.append((time.monotonic(), kind, []))

    def _gone(self):
        """The member has closed: whatever it still held is no longer owned."""
        self._revoked(self.assignment(), kind="closed")
        self.closed = True

    def _record(self, partition, offset, value):
        with self.lock:
            self.records.append((partition, offset, value))

    # -- read by the tests
    def assignment(self) -> frozenset:
        with self.lock:
            return frozenset(self.parts)

    def consumed(self) -> list:
        with self.lock:
            return list(self.records)

    def event_count(self) -> int:
        with self.lock:
            return len(self.events)

    def events_since(self, index: int) -> list:
        with self.lock:
            return list(self.events[index:])

    def check_alive(self):
        if self.error is not None:
            raise AssertionError(f"member {self.name} failed: {self.error}")

    def close(self):
        """Leave the group (LeaveGroup, unless the client skips it for static members)."""
        raise NotImplementedError

    def describe(self) -> str:
        with self.lock:
            return f"{self.name}: owns {sorted(self.parts)}, {len(self.records)} records, events {self.events[-6:]}"


class OwnershipLog:
    """Who owns which partition, across in-process members, checked at every assignment:
    a partition assigned while another live member still holds it is double ownership.
    Sound only when each member's callbacks run before it (re)joins, which is how every
    client runs eager and cooperative rebalances; used for in-process (Python) members."""

    def __init__(self):
        self.lock = threading.Lock()
        self.owner = {}
        self.violations = []

    def assigned(self, member: str, parts):
        with self.lock:
            for p in parts:
                holder = self.owner.get(p)
                if holder is not None and holder != member:
                    self.violations.append(f"partition {p} assigned to {member} while {holder} owns it")
                self.owner[p] = member

    def released(self, member: str, parts):
        with self.lock:
            for p in parts:
                if self.owner.get(p) == member:
                    del self.owner[p]


def describe_members(members) -> str:
    return "\n".join(m.describe() for m in members)


def wait_until(condition, what: str, members, timeout_s: float = WAIT_S):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        for m in members:
            m.check_alive()
        if condition():
            return
        time.sleep(0.1)
    raise AssertionError(f"not within {timeout_s:.0f} s: {what}\n{describe_members(members)}")


def wait_settled(members, sizes=None, partitions: int = PARTITIONS) -> dict:
    """Wait until the live `members` own every partition exactly once between them (with
    the per-member counts `sizes`, sorted, when given) and nothing changed for
    SETTLE_QUIET_S. Returns {member name: frozenset of partitions}."""
    state = {"snapshot": None, "since": 0.0}

    def settled():
        snap = {m.name: m.assignment() for m in members}
        owned = [p for parts in snap.values() for p in parts]
        ok = sorted(owned) == list(range(partitions))
        if ok and sizes is not None:
            ok = sorted(len(s) for s in snap.values()) == sorted(sizes)
        now = time.monotonic()
        if not ok or snap != state["snapshot"]:
            state["snapshot"], state["since"] = (snap if ok else None), now
            return False
        return now - state["since"] >= SETTLE_QUIET_S

    wait_until(settled, f"group settles with every one of {partitions} partitions owned exactly once"
               + (f", sizes {sorted(sizes)}" if sizes else ""), members)
    return state["snapshot"]


def wait_consumed(members, end: dict, start: dict = None):
    """Wait until the members between them consumed every offset in [start[p], end[p])."""
    start = start or {p: 0 for p in end}
    want = {(p, o) for p in end for o in range(start[p], end[p])}

    def done():
        seen = {(p, o) for m in members for (p, o, _) in m.consumed()}
        return want <= seen

    wait_until(done, f"every record in {start} .. {end} consumed", members)


def check_exactly_once(members, start: dict, end: dict):
    """Every record in [start[p], end[p]) consumed exactly once by the group, with the right
    value, and nothing outside that range (a re-read before start or a duplicate fails)."""
    seen = {}
    for m in members:
        for p, o, v in m.consumed():
            assert v == value_of(p, o), f"{m.name} read value {v!r} at {p}/{o}"
            seen.setdefault((p, o), []).append(m.name)
    dupes = {k: v for k, v in seen.items() if len(v) > 1}
    assert not dupes, f"records consumed more than once: {sorted(dupes.items())[:10]}"
    outside = sorted(k for k in seen if not start[k[0]] <= k[1] < end[k[0]])
    assert not outside, f"records outside [{start}, {end}) consumed (re-read or skipped commit): {outside[:10]}"
    missing = sorted((p, o) for p in end for o in range(start[p], end[p]) if (p, o) not in seen)
    assert not missing, f"records never consumed: {missing[:10]}"


def check_in_order(members):
    """Each member sees each partition's offsets strictly increasing."""
    for m in members:
        last = {}
        for p, o, _ in m.consumed():
            assert o > last.get(p, -1), f"{m.name} read {p}/{o} after {p}/{last[p]}"
            last[p] = o


# Errors Kafka marks retriable for group requests (a coordinator being created, or still
# loading after a restart, answers them); librdkafka's committed() and an assign-mode
# commit() do not retry them themselves.
def _coordinator_retriable():
    from confluent_kafka import KafkaError

    return {KafkaError.NOT_COORDINATOR, KafkaError.COORDINATOR_LOAD_IN_PROGRESS,
            KafkaError.COORDINATOR_NOT_AVAILABLE, KafkaError._TIMED_OUT, KafkaError._TRANSPORT}


def _with_coordinator_retries(call):
    from confluent_kafka import KafkaException

    retriable = _coordinator_retriable()
    deadline = time.monotonic() + WAIT_S
    while True:
        try:
            return call()
        except KafkaException as exc:
            if exc.args[0].code() not in retriable or time.monotonic() > deadline:
                raise
            time.sleep(0.5)


def commit_without_joining(bootstrap: str, group: str, offsets: list):
    """Commit confluent TopicPartitions as a consumer that never joined the group (assign
    mode, generation -1), which Kafka accepts for a group without members."""
    from confluent_kafka import Consumer

    c = Consumer({"bootstrap.servers": bootstrap, "group.id": group, "enable.auto.commit": False})
    try:
        _with_coordinator_retries(lambda: c.commit(offsets=offsets, asynchronous=False))
    finally:
        c.close()


def committed(bootstrap: str, group: str, topic: str, partitions: int = PARTITIONS) -> list:
    """The group's commits for `topic` (OffsetFetch) as confluent TopicPartitions (offset,
    metadata, leader_epoch), read by a consumer that does not join the group, whatever
    client committed them. Not the AdminClient's list_consumer_group_offsets: confluent-kafka
    2.16 segfaults in it when the coordinator answers COORDINATOR_LOAD_IN_PROGRESS right
    after a broker restart (seen on Kafka 4.1.2)."""
    from confluent_kafka import Consumer

    reader = Consumer({"bootstrap.servers": bootstrap, "group.id": group, "enable.auto.commit": False})
    try:
        result = _with_coordinator_retries(
            lambda: reader.committed([TopicPartition(topic, p) for p in range(partitions)], timeout=30))
    finally:
        reader.close()
    for tp in result:
        assert tp.error is None, f"OffsetFetch error for {topic}/{tp.partition}: {tp.error}"
    return sorted(result, key=lambda tp: tp.partition)


def committed_offsets(bootstrap: str, group: str, topic: str, partitions: int = PARTITIONS) -> dict:
    """{partition: committed offset} (librdkafka's -1001 where there is none)."""
    return {tp.partition: tp.offset for tp in committed(bootstrap, group, topic, partitions)}


def close_quietly(members):
    """Teardown: close whatever is still open, ignoring errors (the test already failed or
    will report its own)."""
    for m in members:
        if not m.closed:
            try:
                m.close()
            except Exception:  # noqa: BLE001 - teardown
                pass


def close_all(members):
    for m in members:
        if not m.closed:
            m.close()


# ---------------------------------------------------------------------------------------
# The life cycle every client goes through


# Records per partition per batch: different for each partition, so a coordinator that
# mixes partitions' offsets up is caught.
BATCHES = [
    {p: 5 + 2 * p for p in range(PARTITIONS)},
    {p: 3 + p for p in range(PARTITIONS)},
    {p: 9 - p for p in range(PARTITIONS)},
    {p: 4 + (p % 3) for p in range(PARTITIONS)},
]


def _resume_round(bs, topic, group, make_member, names, start: dict, batch: dict, members: list) -> dict:
    """Members `names` join a group with commits at `start`, settle, and then read exactly the
    records produced after they settled; they close and the commits are the new ends.
    Started members are appended to `members` (for the caller's teardown)."""
    members.extend(make_member(n, group, topic) for n in names)
    wait_settled(members, sizes=[2, 2, 2])
    end = produce_numbered(bs, topic, start, batch)
    wait_consumed(members, end, start)
    check_in_order(members)
    check_exactly_once(members, start, end)
    close_all(members)
    assert committed_offsets(bs, group, topic) == end
    return end


def group_life_cycle(broker, make_member, restart_signal, ownership: OwnershipLog = None):
    """Join, leave, join, consumer restart, broker restart: see the module doc.

    make_member(name, group, topic) starts one member subscribed to topic in group;
    `ownership` (double ownership at any moment) is checked when given.
    """
    bs = broker.bootstrap
    topic = new_topic(bs, unique("grp-life"))
    group = unique("life")
    zero = {p: 0 for p in range(PARTITIONS)}
    members = []
    try:
        # 1. Three members join: two partitions each, every record consumed once.
        end1 = produce_numbered(bs, topic, zero, BATCHES[0])
        m1, m2, m3 = (make_member(n, group, topic) for n in ("m1", "m2", "m3"))
        members = [m1, m2, m3]
        wait_settled([m1, m2, m3], sizes=[2, 2, 2])
        wait_consumed(members, end1)

        # 2. One leaves: the other two cover all six, three each.
        m2.close()
        wait_settled([m1, m3], sizes=[3, 3])

        # 3. A new one joins: back to two each; new records flow to whoever owns them.
        m4 = make_member("m4", group, topic)
        members.append(m4)
        wait_settled([m1, m3, m4], sizes=[2, 2, 2])
        end2 = produce_numbered(bs, topic, end1, BATCHES[1])
        wait_consumed(members, end2)
        check_in_order(members)
        check_exactly_once(members, zero, end2)
        close_all(members)
        assert committed_offsets(bs, group, topic) == end2

        # 4. Consumer restart: a new set of members resumes exactly at the commits.
        members = []
        end3 = _resume_round(bs, topic, group, make_member, ("n1", "n2", "n3"), end2, BATCHES[2], members)

        # 5. Broker restart: the commits survive it, and members resume exactly there.
        broker.restart(restart_signal)
        wait_topic_ready(bs, topic)
        assert committed_offsets(bs, group, topic) == end3
        members = []
        _resume_round(bs, topic, group, make_member, ("r1", "r2", "r3"), end3, BATCHES[3], members)
        if ownership is not None:
            assert not ownership.violations, ownership.violations
    finally:
        close_quietly(members)


def live_group_across_broker_restart(broker, make_member, restart_signal=None):
    """Three members stay up while the broker is killed and restarted under them: once the
    group has settled again, the records produced after the restart are consumed, each
    exactly once, from where the group's commits left off, and the commits keep advancing.
    (Members may lose their session during the outage and rejoin: that is the clients'
    documented behaviour and not checked either way.)"""
    import signal

    bs = broker.bootstrap
    topic = new_topic(bs, unique("grp-live"))
    group = unique("live")
    zero = {p: 0 for p in range(PARTITIONS)}
    members = [make_member(n, group, topic) for n in ("l1", "l2", "l3")]
    try:
        wait_settled(members, sizes=[2, 2, 2])
        end1 = produce_numbered(bs, topic, zero, BATCHES[0])
        wait_consumed(members, end1)
        # Every record's commit is done before the broker goes (so no commit is in flight).
        wait_until(lambda: committed_offsets(bs, group, topic) == end1, f"commits reach {end1}", members)
        broker.restart(restart_signal or signal.SIGKILL)
        end2 = produce_numbered(bs, topic, end1, BATCHES[1])
        wait_consumed(members, end2, end1)
        wait_settled(members, sizes=[2, 2, 2])
        check_in_order(members)
        check_exactly_once(members, zero, end2)
        close_all(members)
        assert committed_offsets(bs, group, topic) == end2
    finally:
        close_quietly(members)


class ThreadMember(Member):
    """A member whose client runs in a thread of this process: `_run` polls until
    `self.stop` is set, then closes the client itself (clients are not thread-safe)."""

    def __init__(self, name: str, ownership=None):
        super().__init__(name, ownership)
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._guarded, name=f"member-{name}", daemon=True)

    def _guarded(self):
        try:
            self._run()
        except BaseException as exc:  # noqa: BLE001 - reported to the test by check_alive
            self.error = repr(exc)

    def _run(self):
        raise NotImplementedError

    def close(self):
        self.stop.set()
        self.thread.join(60)
        assert not self.thread.is_alive(), f"member {self.name} did not close within 60 s"
        self._gone()
        self.check_alive()


def _broker_down_errors():
    from confluent_kafka import KafkaError

    return {KafkaError._TRANSPORT, KafkaError._ALL_BROKERS_DOWN, KafkaError._TIMED_OUT,
            KafkaError._RESOLVE, KafkaError.COORDINATOR_NOT_AVAILABLE, KafkaError.NOT_COORDINATOR,
            KafkaError.COORDINATOR_LOAD_IN_PROGRESS}


# librdkafka's consumer errors while a broker restarts (informational: it recovers by itself).
_BROKER_DOWN = _broker_down_errors()


class ConfluentMember(ThreadMember):
    """confluent-kafka (librdkafka) subscriber with the eager protocol (librdkafka's default
    range,roundrobin assignors). poll() returns one message or serves one rebalance event,
    so each consumed record is committed before the member can be revoked."""

    def __init__(self, name, bootstrap, group, topic, ownership=None, outage_ok=False, **conf):
        """`outage_ok`: the broker goes away for a while (a restart under a live group), so
        librdkafka's informational "broker down" errors are expected, not failures."""
        super().__init__(name, ownership)
        from confluent_kafka import Consumer

        base = {
            "bootstrap.servers": bootstrap,
            "group.id": group,
            "client.id": name,
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
            "session.timeout.ms": SESSION_TIMEOUT_MS,
            "heartbeat.interval.ms": HEARTBEAT_INTERVAL_MS,
        }
        base.update(conf)
        self.topic = topic
        self.outage_ok = outage_ok
        self.outage_errors = []
        self.consumer = Consumer(base)
        self.member_id = None
        self.thread.start()

    def _run(self):
        c = self.consumer
        c.subscribe([self.topic],
                    on_assign=lambda _c, parts: self._assigned([tp.partition for tp in parts]),
                    on_revoke=lambda _c, parts: self._revoked([tp.partition for tp in parts]),
                    on_lost=lambda _c, parts: self._revoked([tp.partition for tp in parts], "lost"))
        try:
            while not self.stop.is_set():
                msg = c.poll(0.2)
                self.member_id = c.memberid() or self.member_id
                if msg is None:
                    continue
                if msg.error() is not None:
                    if self.outage_ok and not msg.error().fatal() and msg.error().code() in _BROKER_DOWN:
                        self.outage_errors.append(msg.error())
                        continue
                    raise AssertionError(f"consume error: {msg.error()}")
                self._record(msg.partition(), msg.offset(), msg.value().decode())
                c.commit(offsets=[TopicPartition(self.topic, msg.partition(), msg.offset() + 1)],
                         asynchronous=False)
        finally:
            c.close()

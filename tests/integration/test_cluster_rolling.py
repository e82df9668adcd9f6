"""Issue 10, acceptance test 7: SIGTERM every broker in turn (a rolling restart) while an
idempotent producer and a two-member consumer group run: the group keeps its committed offsets.

With offsets.topic.replication.factor=1, a group whose coordinator (the leader of its
`__consumer_offsets` partition) is down is unavailable meanwhile, and the data partitions of
the stopped broker are offline; both must resume where they were. The checks:
- each SIGTERM is a clean exit; OffsetFetch after each broker's restart is at or above what
  it was just before the SIGTERM, partition by partition (no commit lost or rolled back);
- the group has commits from the start (offset 0, committed before it joins) and its members
  use `auto.offset.reset=error`, so a lost commit is a consumer error, not a silent reset;
- whenever a member is assigned a partition, the first record it reads there is at an offset
  between the last commit the group got acknowledged and the last it attempted (a commit that
  failed during an outage may or may not have been applied): it resumes from the commits;
- the producer's deliveries are dense (offset = sequence number, no duplicates, no loss) and
  every record produced is consumed; after the last restart the group catches up and its
  committed offsets equal the log ends.
"""

import signal
import threading
import time
import uuid
from collections import Counter

import pytest
from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition

from clients import create_topic
from cluster import wait_until
from groups_util import _BROKER_DOWN, commit_without_joining, committed_offsets, value_of
from test_restart import CLEAN_EXIT_CODES

pytestmark = pytest.mark.cluster

PARTITIONS = 6


class Tracker:
    """Group-wide record of commits and first reads after each assignment."""

    def __init__(self):
        self.lock = threading.Lock()
        self.acked = {p: 0 for p in range(PARTITIONS)}
        self.attempted = {p: 0 for p in range(PARTITIONS)}
        self.consumed = []  # (member, partition, offset, value)
        self.first_reads = []  # (member, partition, offset, acked, attempted) at assignment
        self.violations = []
        self.commit_errors = Counter()
        self.outage_errors = Counter()
        self.assignments = 0


class Member(threading.Thread):
    def __init__(self, name, bootstrap, group, topic, tracker):
        super().__init__(name=f"member-{name}", daemon=True)
        self.member = name
        self.topic = topic
        self.t = tracker
        self.stop = threading.Event()
        self.error = None
        self.pending = {}  # partition -> (acked, attempted) window for its first read
        self.consumer = Consumer({
            "bootstrap.servers": bootstrap, "group.id": group, "client.id": name,
            "enable.auto.commit": False, "auto.offset.reset": "error",
            "session.timeout.ms": 6000, "heartbeat.interval.ms": 1000,
            "reconnect.backoff.max.ms": 500,
        })

    def _assigned(self, parts):
        with self.t.lock:
            self.t.assignments += 1
            for tp in parts:
                self.pending[tp.partition] = (self.t.acked[tp.partition], self.t.attempted[tp.partition])

    def _revoked(self, parts):
        for tp in parts:
            self.pending.pop(tp.partition, None)

    def run(self):
        c = self.consumer
        c.subscribe([self.topic], on_assign=lambda _c, ps: self._assigned(ps),
                    on_revoke=lambda _c, ps: self._revoked(ps), on_lost=lambda _c, ps: self._revoked(ps))
        try:
            while not self.stop.is_set():
                msg = c.poll(0.2)
                if msg is None:
                    continue
                if msg.error() is not None:
                    if not msg.error().fatal() and msg.error().code() in _BROKER_DOWN:
                        with self.t.lock:
                            self.t.outage_errors[msg.error().name()] += 1
                        continue
                    raise AssertionError(f"{self.member}: consume error {msg.error()}")
                p, o = msg.partition(), msg.offset()
                with self.t.lock:
                    if p in self.pending:
                        lo, hi = self.pending.pop(p)
                        self.t.first_reads.append((self.member, p, o, lo, hi))
                        if not lo <= o <= hi:
                            self.t.violations.append(f"{self.member} resumed partition {p} at offset {o}; "
                                                     f"commits acknowledged {lo}, attempted {hi}")
                    self.t.consumed.append((self.member, p, o, msg.value().decode()))
                    self.t.attempted[p] = max(self.t.attempted[p], o + 1)
                try:
                    c.commit(offsets=[TopicPartition(self.topic, p, o + 1)], asynchronous=False)
                except KafkaException as exc:
                    with self.t.lock:
                        self.t.commit_errors[exc.args[0].name()] += 1
                    continue
                with self.t.lock:
                    self.t.acked[p] = max(self.t.acked[p], o + 1)
        except BaseException as exc:  # noqa: BLE001 - reported by the test
            self.error = repr(exc)
        finally:
            c.close()


class NumberedProducer(threading.Thread):
    """Idempotent acks=all producer writing value "p:seq" to partition p, round robin, about
    100 records a second, until stopped; then flushes."""

    def __init__(self, bootstrap, topic):
        super().__init__(name="producer", daemon=True)
        self.topic = topic
        self.stop = threading.Event()
        self.sent = {p: 0 for p in range(PARTITIONS)}
        self.delivered = []
        self.error = None
        self.producer = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True, "acks": "all",
                                  "linger.ms": 5, "message.timeout.ms": 180000, "reconnect.backoff.max.ms": 500})

    def _report(self, err, msg):
        self.delivered.append((err, msg.partition(), msg.offset(), msg.value().decode()))

    def run(self):
        try:
            i = 0
            while not self.stop.is_set():
                p = i % PARTITIONS
                self.producer.produce(self.topic, value=value_of(p, self.sent[p]), partition=p, on_delivery=self._report)
                self.sent[p] += 1
                i += 1
                self.producer.poll(0.01)
            assert self.producer.flush(180) == 0, "records undelivered 180 s after the producer stopped"
        except BaseException as exc:  # noqa: BLE001 - reported by the test
            self.error = repr(exc)

    def delivered_ends(self) -> dict:
        """Per partition, how many records are delivered without a gap from offset 0."""
        ok = {p: set() for p in range(PARTITIONS)}
        for err, p, o, _ in list(self.delivered):
            if err is None:
                ok[p].add(o)
        ends = {}
        for p, offsets in ok.items():
            n = 0
            while n in offsets:
                n += 1
            ends[p] = n
        return ends


def test_rolling_sigterm_restart_group_keeps_commits(cluster_factory):
    c = cluster_factory()
    topic, group = f"roll-{uuid.uuid4().hex[:8]}", f"roll-{uuid.uuid4().hex[:8]}"
    create_topic(c.node(1).bootstrap, topic, partitions=PARTITIONS)
    print(f"leaders {c.wait_topic(topic, PARTITIONS)}")
    bs = c.bootstrap()
    commit_without_joining(bs, group, [TopicPartition(topic, p, 0) for p in range(PARTITIONS)])

    tracker = Tracker()
    producer = NumberedProducer(bs, topic)
    members = [Member(name, bs, group, topic, tracker) for name in ("m1", "m2")]
    threads = [producer] + members
    try:
        for t in threads:
            t.start()

        def caught_up_with(target):
            def check():
                for t in threads:
                    assert t.error is None, f"{t.name}: {t.error}"
                with tracker.lock:
                    return all(tracker.acked[p] >= target[p] for p in range(PARTITIONS))
            return check

        wait_until(caught_up_with({p: 20 for p in range(PARTITIONS)}), "the group consuming and committing", 60)

        for node in sorted(c.nodes, key=lambda _: uuid.uuid4()):
            before = committed_offsets(bs, group, topic)
            t0 = time.monotonic()
            code = node.stop(signal.SIGTERM)
            assert code in CLEAN_EXIT_CODES, f"{node}: exit code {code} after SIGTERM"
            stopped_s = time.monotonic() - t0
            node.start()
            c.wait_topic(topic, PARTITIONS)
            after = committed_offsets(bs, group, topic)
            print(f"{node}: SIGTERM exit {code} in {stopped_s:.1f} s, back after {time.monotonic() - t0:.1f} s; "
                  f"commits {before} -> {after}")
            lost = {p: (before[p], after[p]) for p in range(PARTITIONS) if after[p] < before[p]}
            assert not lost, f"commits went back across the restart of {node}: {lost}"
            # The group resumes: it commits past everything delivered before the restart.
            wait_until(caught_up_with(producer.delivered_ends()), f"the group caught up after restarting {node}", 90)

        producer.stop.set()
        producer.join(200)
        assert producer.error is None, producer.error
        errors = [d for d in producer.delivered if d[0] is not None]
        assert not errors, f"delivery errors: {errors[:5]}"
        ends = dict(producer.sent)
        for p in range(PARTITIONS):
            got = sorted((o, v) for _, part, o, v in producer.delivered if part == p)
            assert got == [(i, value_of(p, i)) for i in range(ends[p])], f"partition {p}: deliveries not dense"

        wait_until(caught_up_with(ends), f"the group committed up to the log ends {ends}", 90)
    finally:
        producer.stop.set()
        for m in members:
            m.stop.set()
        for t in threads:
            t.join(60)
    for m in members:
        assert m.error is None, f"{m.member}: {m.error}"

    print(f"first reads {tracker.first_reads}; commit errors {dict(tracker.commit_errors)}; "
          f"outage errors {dict(tracker.outage_errors)}; assignments {tracker.assignments}")
    assert not tracker.violations, tracker.violations
    consumed = Counter((p, o) for _, p, o, _ in tracker.consumed)
    missing = [(p, o) for p in range(PARTITIONS) for o in range(ends[p]) if (p, o) not in consumed]
    assert not missing, f"{len(missing)} records never consumed, e.g. {missing[:10]}"
    wrong = [(p, o, v) for _, p, o, v in tracker.consumed if v != value_of(p, o)]
    assert not wrong, f"records read with other values than produced: {wrong[:5]}"
    print(f"duplicates (re-read after an unacknowledged commit): {sum(k - 1 for k in consumed.values())}")
    assert committed_offsets(bs, group, topic) == ends

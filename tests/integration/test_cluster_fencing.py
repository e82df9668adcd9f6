"""Issue 10, acceptance tests 5 and 6: a broker that stops heartbeating is fenced, its
partitions go offline, and it leads them again (with a higher leader epoch) once it is back.

5. kill -9 a broker that is not the controller: once its session (3 s here) has expired, the
   survivors' Metadata omits it from `brokers` and shows each of its partitions with leader
   -1, error LEADER_NOT_AVAILABLE, ISR and replicas still [it], `offline_replicas` [it] and a
   leader epoch above the one before; the other partitions keep leader and epoch and stay
   writable. Restarted, it leads them again with a leader epoch above the offline one, and
   every record written before the kill reads back at its offset.
6. SIGSTOP such a broker past its session timeout: fenced as above; SIGCONT: the same process
   (no restart) is unfenced and leads its partitions again with a higher epoch and serves
   produce and fetch there.

Josefine's session-close rule (`broker.session.close.grace.ms`, not Kafka's): the kernel closes
a killed process's sockets at once, so the controller sees the broker's session connection end
and fences it after the grace (1 s here) instead of the session timeout (3 s); a SIGSTOPped
broker's connection stays open and it is fenced only at the session timeout, as in Kafka; with
the grace 0 a killed broker waits for the session timeout too (Kafka's behaviour). A killed
controller is fenced by the new controller after the grace too (it saw the chain connection
closed), instead of a whole session after the election.

The times (kill -> offline, start -> leading again) are printed; the figures script
measures them over many rounds.
"""

import time
import uuid

import pytest

import wire
from clients import read_partition
from cluster import HEARTBEAT_INTERVAL_MS, SESSION_TIMEOUT_MS, wait_until
from conftest import BROKER_KIND
from groups_util import produce_numbered

pytestmark = pytest.mark.cluster

PARTITIONS = 6
SESSION_S = SESSION_TIMEOUT_MS / 1000
# Fencing needs a whole session without a heartbeat, and the last heartbeat can be at most
# one interval old at the kill (a little slack for the controller's check period below).
EARLIEST_FENCE_S = (SESSION_TIMEOUT_MS - HEARTBEAT_INTERVAL_MS) / 1000 - 0.25
# Josefine's session-close rule: a killed broker is fenced this long after its controller
# connection closes (the rule is Josefine's; Kafka ignores the setting).
CLOSE_GRACE_MS = 1000
CLOSE_RULE = BROKER_KIND == "josefine"
SETTINGS = {"broker.session.close.grace.ms": str(CLOSE_GRACE_MS)} if CLOSE_RULE else {}
# Fenced by the close rule: the grace plus proposing the fence and Metadata seeing it, well
# before the session could have expired.
LATEST_CLOSE_FENCE_S = CLOSE_GRACE_MS / 1000 + 1.0


def _setup(c, victim_is_controller=False):
    controller = c.wait_controller()
    victim = c.node(controller if victim_is_controller else next(i for i in (2, 3, 1) if i != controller))
    survivors = c.running(exclude=[victim])
    topic = f"fence-{uuid.uuid4().hex[:8]}"
    with wire.Connection(survivors[0].host, survivors[0].port) as conn:
        assert conn.create_topics([(topic, PARTITIONS, 1, {})])[topic][0] == wire.NONE
    before = c.wait_topic(topic, PARTITIONS)
    mine = sorted(p for p, (leader, _) in before.items() if leader == victim.node_id)
    assert mine, f"node {victim.node_id} leads none of {before}"
    ends = produce_numbered(c.bootstrap(), topic, {p: 0 for p in range(PARTITIONS)},
                            {p: 20 + p for p in range(PARTITIONS)})
    print(f"controller {controller}, victim {victim.node_id} leads {mine}; leaders {before}")
    return victim, survivors, topic, before, mine, ends


def _wait_offline(c, victim, survivors, topic, before, mine, t0):
    """Wait until every survivor reports the victim fenced and its partitions offline; check
    the whole Metadata then. Returns (seconds since t0, {partition: offline leader epoch})."""
    def offline():
        views = []
        for n in survivors:
            md = n.metadata([topic])
            parts = md["topics"][topic]["partitions"]
            if victim.node_id in md["brokers"] or any(parts[p]["leader"] != -1 for p in mine):
                return None
            views.append(md)
        return views

    views = wait_until(offline, f"node {victim.node_id} fenced and partitions {mine} offline on every survivor",
                       timeout_s=SESSION_S + 30, interval_s=0.05)
    elapsed = time.monotonic() - t0
    epochs = {}
    for md in views:
        assert sorted(md["brokers"]) == sorted(n.node_id for n in survivors), md["brokers"]
        parts = md["topics"][topic]["partitions"]
        for p, v in parts.items():
            if p in mine:
                assert v["error"] == wire.LEADER_NOT_AVAILABLE, (p, v)
                assert v["replicas"] == [victim.node_id] and v["isr"] == [victim.node_id], (p, v)
                assert v["offline"] == [victim.node_id], (p, v)
                assert v["leader_epoch"] > before[p][1], f"partition {p}: offline epoch {v['leader_epoch']}, was {before[p][1]}"
                epochs.setdefault(p, v["leader_epoch"])
                assert v["leader_epoch"] == epochs[p], f"survivors disagree on partition {p}'s epoch"
            else:
                assert v["error"] == wire.NONE and (v["leader"], v["leader_epoch"]) == before[p], (p, v, before[p])
    return elapsed, epochs


def _wait_back(c, victim, topic, before, mine, offline_epochs, t0):
    """Wait until every node reports the victim leading its partitions again with a leader
    epoch above the offline one (a node that was paused answers from its stale image for a
    moment, which still shows the old epoch); returns the seconds since t0."""
    def back():
        views = []
        for n in c.nodes:
            md = n.metadata([topic])
            parts = md["topics"][topic]["partitions"]
            if victim.node_id not in md["brokers"] or any(
                    parts[p]["leader"] != victim.node_id or parts[p]["leader_epoch"] <= offline_epochs[p] for p in mine):
                return None
            views.append(parts)
        return views

    views = wait_until(back, f"node {victim.node_id} leading {mine} again on every node", timeout_s=60, interval_s=0.05)
    elapsed = time.monotonic() - t0
    for parts in views:
        for p in mine:
            v = parts[p]
            assert v["error"] == wire.NONE and v["isr"] == [victim.node_id] and v["offline"] == [], (p, v)
    return elapsed


def _read_back(c, topic, ends, via):
    for p, end in ends.items():
        msgs = read_partition(via.bootstrap, topic, end, partition=p)
        assert [m.value().decode() for m in msgs] == [f"{p}:{i}" for i in range(end)], f"partition {p}"


def test_kill_broker_partitions_offline_then_back(cluster_factory):
    c = cluster_factory(settings=SETTINGS)
    victim, survivors, topic, before, mine, ends = _setup(c)

    t0 = time.monotonic()
    victim.kill()
    offline_s, offline_epochs = _wait_offline(c, victim, survivors, topic, before, mine, t0)
    print(f"kill -9 -> partitions {mine} offline: {offline_s:.2f} s (session timeout {SESSION_S} s)")
    if CLOSE_RULE:
        assert offline_s <= LATEST_CLOSE_FENCE_S, \
            f"fenced {offline_s:.2f} s after the kill: not by the session-close rule (grace {CLOSE_GRACE_MS} ms)"
    else:
        assert offline_s >= EARLIEST_FENCE_S, f"fenced {offline_s:.2f} s after the kill, before its session could expire"

    # The survivors' partitions stay writable meanwhile.
    theirs = [p for p in range(PARTITIONS) if p not in mine]
    ends.update(produce_numbered(c.bootstrap(survivors), topic, {p: ends[p] for p in theirs}, {p: 5 for p in theirs}))

    t1 = time.monotonic()
    victim.spawn()
    back_s = _wait_back(c, victim, topic, before, mine, offline_epochs, t1)
    print(f"restart -> leading {mine} again: {back_s:.2f} s")
    _read_back(c, topic, ends, survivors[0])
    # And it takes new writes on its partitions.
    ends.update(produce_numbered(victim.bootstrap, topic, {p: ends[p] for p in mine}, {p: 5 for p in mine}))
    _read_back(c, topic, ends, victim)


def test_sigstop_past_session_fenced_then_unfenced(cluster_factory):
    # The session-close rule is on (Josefine): a paused process keeps its connection open, so
    # it must still be fenced only at the session timeout.
    c = cluster_factory(settings=SETTINGS)
    victim, survivors, topic, before, mine, ends = _setup(c)

    t0 = time.monotonic()
    victim.pause()
    try:
        offline_s, offline_epochs = _wait_offline(c, victim, survivors, topic, before, mine, t0)
    finally:
        victim.resume()
    print(f"SIGSTOP -> partitions {mine} offline: {offline_s:.2f} s")
    assert offline_s >= EARLIEST_FENCE_S, f"fenced {offline_s:.2f} s after SIGSTOP, before its session could expire"

    t1 = time.monotonic()
    back_s = _wait_back(c, victim, topic, before, mine, offline_epochs, t1)
    print(f"SIGCONT -> leading {mine} again: {back_s:.2f} s")
    assert victim.proc.poll() is None and victim.starts == 1, "the paused process must recover by itself"
    ends.update(produce_numbered(c.bootstrap(), topic, {p: ends[p] for p in mine}, {p: 5 for p in mine}))
    _read_back(c, topic, ends, victim)


@pytest.mark.skipif(not CLOSE_RULE, reason="the session-close rule is Josefine's")
def test_kill_with_the_close_rule_off_waits_for_the_session(cluster_factory):
    """broker.session.close.grace.ms=0: Kafka's behaviour, a killed broker is fenced only once
    its session has expired."""
    c = cluster_factory(settings={"broker.session.close.grace.ms": "0"})
    victim, survivors, topic, before, mine, _ = _setup(c)
    t0 = time.monotonic()
    victim.kill()
    offline_s, _ = _wait_offline(c, victim, survivors, topic, before, mine, t0)
    print(f"kill -9 (close rule off) -> partitions {mine} offline: {offline_s:.2f} s")
    assert offline_s >= EARLIEST_FENCE_S, f"fenced {offline_s:.2f} s after the kill, before its session could expire"


@pytest.mark.skipif(not CLOSE_RULE, reason="the session-close rule is Josefine's")
def test_kill_controller_fenced_by_the_new_controller_before_the_session(cluster_factory):
    """A killed controller's broker: the new controller had no session connection from it, but
    saw its chain connection closed by the kernel, and fences it after the grace (not before
    one heartbeat interval after its activation) instead of a whole session after activation."""
    c = cluster_factory(settings=SETTINGS)
    victim, survivors, topic, before, mine, _ = _setup(c, victim_is_controller=True)
    t0 = time.monotonic()
    victim.kill()
    new_controller = c.wait_controller(among=survivors, exclude=[victim.node_id])
    elected_s = time.monotonic() - t0
    offline_s, _ = _wait_offline(c, victim, survivors, topic, before, mine, t0)
    print(f"kill -9 of controller {victim.node_id} -> controller {new_controller} after {elected_s:.2f} s, "
          f"partitions {mine} offline: {offline_s:.2f} s (session timeout {SESSION_S} s)")
    assert offline_s < SESSION_S, \
        f"fenced {offline_s:.2f} s after the kill: not by the session-close rule (a fresh session would take {SESSION_S} s after the election)"

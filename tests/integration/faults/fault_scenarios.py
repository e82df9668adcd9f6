"""The faults of issue 11's fault tests, each run under the workload and judged by the checker.

Owns: one function per fault (kill -9 chasing the leader, follower truncation, SIGSTOP of a
leader past the session timeout, SIGTERM rolling restart, leader isolated from its followers,
controller isolated, one-way cut, delay) that runs it on a started FaultCluster under a running
Workload, marking each fault for the unavailability figures, healing it and waiting until
every replica is back in every ISR; and `run()`, which wraps one of them between topic
creation, the workload, the final read, the checker and the replica comparison.
Must never: leave a node stopped, paused or cut when it returns or raises (the cluster
fixture kills everything anyway), or wait without a deadline.
"""

import json
import signal
import time
import uuid

import fault_replicas
from fault_checker import assert_clean, check
from fault_cluster import PARTITIONS
from fault_workload import Workload

# Restarted brokers must be back in every ISR before the next fault (Kafka: JVM start,
# catch-up, ISR expansion; generous for a 2-core box shared with builds).
RECOVER_TIMEOUT_S = 150.0
# A partition must take acks=all writes again this soon after a fault heals.
ACK_TIMEOUT_S = 120.0
CLEAN_EXIT_CODES = {0, 128 + signal.SIGTERM}


def topic_name(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def session_timeout_s(cluster) -> float:
    return int(cluster.settings.get("broker.session.timeout.ms", 9000)) / 1000.0


def led_by(cluster, topic, node_id) -> list:
    return sorted(p for p, v in cluster.state(topic).items() if v["leader"] == node_id)


def steady(cluster, wl, topic, partition=None, n=20):
    """Every replica back in every ISR and `n` fresh acks (on `partition`)."""
    cluster.wait_isr_full(topic, timeout_s=RECOVER_TIMEOUT_S)
    wl.wait_acks(n, partition=partition, since=time.time(), timeout_s=ACK_TIMEOUT_S)


def kill_leader_chase(cluster, wl, topic, kills: int, partition: int = 0, restart: bool = True) -> list:
    """kill -9 the leader of `partition`, wait for a new leader and the first ack of a write
    sent after the kill, restart the victim (unless `restart` is false: then `kills` must be
    1), wait for full ISRs; `kills` times, each time chasing the current leader.
    Returns per kill {"victim", "new_leader", "leader_s", "ack_s"}."""
    assert restart or kills == 1, "without restarts a second kill leaves one replica: no acks=all"
    rounds = []
    for i in range(kills):
        leader = cluster.leader(topic, partition)
        victim = cluster.node(leader)
        t = wl.mark(f"kill-9 #{i + 1} node {leader}", led_by(cluster, topic, leader))
        victim.kill()
        new = cluster.wait_new_leader(topic, partition, leader, timeout_s=ACK_TIMEOUT_S)
        leader_s = time.time() - t
        first = wl.wait_acks(1, partition=partition, since=t, sent_after=t, timeout_s=ACK_TIMEOUT_S)
        rounds.append({"victim": leader, "new_leader": new, "leader_s": round(leader_s, 3),
                       "ack_s": round(first - t, 3)})
        print(f"kill -9 #{i + 1}: node {leader} -> new leader {new} seen after {leader_s:.2f} s, "
              f"first ack on partition {partition} after {first - t:.2f} s")
        if restart:
            wl.mark(f"restart node {leader}", heal=True)
            cluster.restart(victim)
            steady(cluster, wl, topic, partition)
    return rounds


def follower_truncation(cluster, wl, topic, partition: int = 0, max_pause_s: float = 5.0) -> dict:
    """Give the leader of `partition` a tail its followers never got, kill -9 it, resume them;
    a follower becomes leader and takes new writes at those offsets; the old leader restarts
    with its diverged tail and must truncate it (the replica comparison in `run` fails if it
    did not). The tail: both followers SIGSTOPped, then a fresh acks=all producer (its own
    connection: a broker holds further requests of a connection while an acks=all produce
    waits, so the running writers add at most one batch each) bootstrapped from the leader
    writes 20 records to `partition`, without retries (so its writes can fail but never
    duplicate); the kill comes once the leader's log on disk is ahead of both followers (at
    most `max_pause_s`, below the session timeout)."""
    leader = cluster.leader(topic, partition)
    victim = cluster.node(leader)
    followers = [n for n in cluster.nodes if n.node_id != leader]

    def end(n):
        return fault_replicas.log_end(fault_replicas.partition_dir(n.data_dir, topic, partition))

    t = wl.mark(f"followers paused, kill -9 leader {leader}", led_by(cluster, topic, leader))
    for f in followers:
        f.pause()
    try:
        wl.add_writer(partition=partition, limit=20,
                      conf={"bootstrap.servers": victim.bootstrap, "enable.idempotence": False, "acks": "all",
                            "retries": 0, "linger.ms": 0})
        deadline = time.monotonic() + max_pause_s
        while end(victim) <= max(end(f) for f in followers) and time.monotonic() < deadline:
            time.sleep(0.05)
        victim.kill()
        # everything is still: the logs as the election will find them
        ends = {n.node_id: end(n) for n in cluster.nodes}
    finally:
        for f in followers:
            f.resume()
    new = cluster.wait_new_leader(topic, partition, leader, timeout_s=ACK_TIMEOUT_S)
    wl.wait_acks(5, partition=partition, since=t, sent_after=t, timeout_s=ACK_TIMEOUT_S)
    wl.mark(f"restart node {leader}", heal=True)
    cluster.restart(victim)
    steady(cluster, wl, topic, partition)
    tail = ends[leader] - max(e for n, e in ends.items() if n != leader)
    print(f"log ends at the kill: {ends}: old leader {leader} held {tail} offsets no follower had; "
          f"new leader {new}")
    return {"victim": leader, "new_leader": new, "ends_at_kill": ends, "unreplicated_tail": tail}


def pause_leader(cluster, wl, topic, partition: int = 0, extra_s: float = 4.0):
    """SIGSTOP the leader of `partition` for the session timeout + `extra_s`, then SIGCONT:
    a zombie leader that must not acknowledge anything that is later gone."""
    leader = cluster.leader(topic, partition)
    node = cluster.node(leader)
    pause_s = session_timeout_s(cluster) + extra_s
    t = wl.mark(f"SIGSTOP node {leader} for {pause_s:.0f} s", led_by(cluster, topic, leader))
    node.pause()
    try:
        time.sleep(pause_s)
    finally:
        node.resume()
    wl.mark(f"SIGCONT node {leader}", heal=True)
    print(f"node {leader} resumed after {time.time() - t:.1f} s")
    steady(cluster, wl, topic, partition)


def rolling_restart(cluster, wl, topic):
    """SIGTERM each broker in turn (clean exit), restart it, full ISRs before the next."""
    for node in list(cluster.nodes):
        t = wl.mark(f"SIGTERM node {node.node_id}", led_by(cluster, topic, node.node_id))
        code = node.stop(signal.SIGTERM)
        assert code in CLEAN_EXIT_CODES, f"{node}: exit code {code} after SIGTERM"
        print(f"{node}: SIGTERM exit {code} after {time.time() - t:.1f} s")
        cluster.restart(node)
        steady(cluster, wl, topic)


def _network_fault(cluster, wl, topic, name, node_id, apply, hold_s, partition=None):
    """Mark `name` on the partitions `node_id` leads, `apply(network)`, hold for `hold_s`
    (default: the session timeout + 6 s), heal, and wait until steady again."""
    hold_s = hold_s if hold_s is not None else session_timeout_s(cluster) + 6.0
    wl.mark(name, led_by(cluster, topic, node_id))
    try:
        apply(cluster.network)
        time.sleep(hold_s)
    finally:
        cluster.network.heal()
    wl.mark("heal", heal=True)
    steady(cluster, wl, topic, partition)


def isolate_leader(cluster, wl, topic, partition: int = 0, mode: str = "silent", hold_s=None):
    """Cut the leader of `partition` off from both followers (clients still reach every
    node) for `hold_s`, then heal."""
    leader = cluster.leader(topic, partition)
    _network_fault(cluster, wl, topic, f"isolate leader {leader} from followers ({mode})", leader,
                   lambda net: net.isolate(leader, mode), hold_s, partition)


def isolate_controller(cluster, wl, topic, mode: str = "silent", hold_s=None):
    """Cut the controller (Josefine: chain leader; Kafka: KRaft leader) off from both other
    nodes for `hold_s`, then heal."""
    controller = cluster.controller_id()
    _network_fault(cluster, wl, topic, f"isolate controller {controller} ({mode})", controller,
                   lambda net: net.isolate(controller, mode), hold_s)


def one_way_cut(cluster, wl, topic, partition: int = 0, mode: str = "silent", hold_s=None):
    """Packets from both followers of `partition` to its leader are lost (the leader's own
    packets still arrive) for `hold_s`, then heal."""
    leader = cluster.leader(topic, partition)

    def cut(net):
        for n in cluster.nodes:
            if n.node_id != leader:
                net.cut_one_way(n.node_id, leader, mode)

    _network_fault(cluster, wl, topic, f"one-way cut followers -> leader {leader} ({mode})", leader, cut,
                   hold_s, partition)


def delay_leader(cluster, wl, topic, partition: int = 0, ms: int = 300, hold_s: float = 15.0):
    """Every packet the leader of `partition` sends waits `ms` (tc netem) for `hold_s`."""
    leader = cluster.leader(topic, partition)
    _network_fault(cluster, wl, topic, f"delay {ms} ms on leader {leader}", leader,
                   lambda net: net.delay(leader, ms), hold_s, partition)


def run(cluster, prefix: str, fault, *args, acks="all", rate: float = 300.0, allowed=(),
        warmup_acks: int = 50, workload=None, **kwargs) -> dict:
    """Create an RF=3 topic, start the workload (`workload(cluster, topic)` if given, e.g. a
    fault_java.JavaWorkload, else confluent-kafka's), run `fault(cluster, wl, topic, ...)`,
    stop, read everything back and check. Returns the checker report (the fault's own
    result under "fault")."""
    topic = topic_name(prefix)
    cluster.create_topic(topic)
    if workload is not None:
        wl = workload(cluster, topic)
    else:
        wl = Workload(cluster.bootstrap(), topic, PARTITIONS, acks=acks, rate=rate)
    wl.start()
    result = None
    try:
        for p in range(PARTITIONS):  # every partition takes writes before the first fault
            wl.wait_acks(warmup_acks // PARTITIONS + 1, partition=p, timeout_s=ACK_TIMEOUT_S)
        # and the start-up backlog (writes queued while the producer id was fetched) is gone
        wl.wait_acks(warmup_acks, since=time.time() + 1.0, timeout_s=ACK_TIMEOUT_S)
        result = fault(cluster, wl, topic, *args, **kwargs)
        wl.wait_acks(warmup_acks, since=time.time(), timeout_s=ACK_TIMEOUT_S)
    finally:
        wl.stop()
    wl.final_read()
    history = wl.history()
    path = cluster.root / f"{prefix}-history.json"
    path.write_text(json.dumps(history))
    print(f"history: {path} (kept with KEEP_BROKER_DATA=1 or on failure)")
    report = check(history, allowed=allowed)
    replicas = fault_replicas.compare(cluster, topic, PARTITIONS, wl.final_ends)
    print(f"replicas below the high watermark: {replicas['partitions']}; diverged {replicas['diverged']}")
    report["replicas"] = replicas
    report["fault"] = result
    report["fatal"] = list(wl.fatal)
    report["failed_deliveries"] = len(wl.failed)
    assert_clean(report, f"{prefix} on {cluster.kind} (acks={acks})")
    assert not replicas["diverged"], f"replicas differ below the high watermark: {replicas['diverged']}"
    if acks == "all":
        assert not wl.fatal, f"idempotent producer fatal errors: {wl.fatal}"
    assert report["acknowledged"] > 0
    return report

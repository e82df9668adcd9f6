#!/usr/bin/env python3
"""Cluster figures of issue 10, for Josefine or for Apache Kafka 4.1 measured the same way.

Owns: timing, on a local 3-node cluster (the test suite's `Cluster`, tests/integration/
cluster.py: josefine processes with --voters, or three KRaft combined Kafka nodes through
scripts/kafka-reference), what the issue asks to report:
  failover  kill -9 of the controller (Josefine: chain leader; Kafka: KRaft quorum leader),
            repeated --kills times (>= 20 for the report): seconds until the survivors agree on
            a new controller, and until a CreateTopics sent to a survivor succeeds (a fresh
            topic per attempt, alternating survivors, request timeout 5 s); the killed node
            is restarted and the cluster re-forms before the next round;
  fencing   kill -9 of a broker that is not the controller, --fence-rounds times: seconds until
            every survivor's Metadata shows its partitions with leader -1, and from its restart
            (process spawn) until every node reports it leading them again;
  create    CreateTopics latency (1 partition, RF 1, sequential, --creates each) on a single
            node (no --voters) and on 3 nodes, sent to the controller and to another broker
            (forwarded).
Prints a table and appends one JSON line per run to bench/results/cluster_failover.jsonl (or
--out). Percentiles are nearest-rank (the p99 of 20 samples is the largest).
Must never: report a figure from a round that failed (the round is reported as an error and
the script exits non-zero), or compare the two brokers with different settings.

Usage: bench/cluster_failover.py --broker kafka|josefine [--kills 20] [--fence-rounds 10]
       [--creates 50] [--session-timeout-ms 3000] [--heartbeat-ms 500] [--only failover,...]
Not part of the test suite (a run is many minutes for Kafka: each restart is a JVM start).
"""

import argparse
import datetime
import json
import math
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests" / "integration"))


def percentile(values, q):
    s = sorted(values)
    return s[max(0, math.ceil(q / 100 * len(s)) - 1)]


def summary(values):
    if not values:
        return {"n": 0}
    return {"n": len(values), "p50": round(percentile(values, 50), 3), "p99": round(percentile(values, 99), 3),
            "min": round(min(values), 3), "max": round(max(values), 3), "mean": round(statistics.mean(values), 3)}


def name(prefix):
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def create_through(node, topic, timeout_ms=5000, socket_timeout_s=15):
    import wire

    try:
        with wire.Connection(node.host, node.port, timeout_s=socket_timeout_s) as conn:
            return conn.create_topics([(topic, 1, 1, {})], timeout_ms=timeout_ms)[topic][0]
    except OSError as exc:
        return repr(exc)


def failover_round(c, log):
    old = c.wait_controller()
    victim = c.node(old)
    survivors = c.running(exclude=[victim])
    result = {}

    def watch():
        deadline = t0 + 120
        while time.monotonic() < deadline:
            leader = c.controller(survivors)
            if leader is not None and leader != old:
                result["controller_s"] = time.monotonic() - t0
                return
            time.sleep(0.02)

    t0 = time.monotonic()
    victim.kill()
    watcher = threading.Thread(target=watch)
    watcher.start()
    attempts = 0
    while time.monotonic() - t0 < 120:
        error = create_through(survivors[attempts % 2], name("fo"))
        attempts += 1
        if error == 0:
            result["create_s"] = time.monotonic() - t0
            break
        time.sleep(0.02)
    watcher.join(130)
    result["attempts"] = attempts
    t1 = time.monotonic()
    victim.start()  # waits until all three list each other again
    result["rejoin_s"] = time.monotonic() - t1
    log(f"  kill -9 controller {old}: new controller {result.get('controller_s', float('nan')):.3f} s, "
        f"CreateTopics ok {result.get('create_s', float('nan')):.3f} s ({attempts} attempts), "
        f"restart to re-formed {result['rejoin_s']:.1f} s")
    if "controller_s" not in result or "create_s" not in result:
        raise RuntimeError(f"round failed: {result}")
    return result


def fencing_round(c, topic, rnd, log):
    from cluster import wait_until

    controller = c.wait_controller()
    candidates = [n for n in c.nodes if n.node_id != controller]
    victim = candidates[rnd % len(candidates)]
    survivors = c.running(exclude=[victim])
    before = c.wait_topic(topic, 6)
    mine = [p for p, (leader, _) in before.items() if leader == victim.node_id]
    if not mine:
        raise RuntimeError(f"node {victim.node_id} leads no partition of {topic}: {before}")

    def offline():
        for n in survivors:
            parts = n.metadata([topic])["topics"][topic]["partitions"]
            if any(parts[p]["leader"] != -1 for p in mine):
                return False
        return True

    def back():
        for n in c.nodes:
            parts = n.metadata([topic])["topics"][topic]["partitions"]
            if any(parts[p]["leader"] != victim.node_id or parts[p]["leader_epoch"] <= before[p][1] for p in mine):
                return False
        return True

    t0 = time.monotonic()
    victim.kill()
    wait_until(offline, f"partitions {mine} offline", 120, 0.02)
    offline_s = time.monotonic() - t0
    t1 = time.monotonic()
    victim.spawn()
    wait_until(back, f"node {victim.node_id} leading {mine} again", 180, 0.02)
    back_s = time.monotonic() - t1
    c.wait_formed()
    log(f"  kill -9 broker {victim.node_id} ({len(mine)} partitions): offline after {offline_s:.3f} s; "
        f"restart -> leading again {back_s:.3f} s")
    return {"offline_s": offline_s, "back_s": back_s}


def create_latencies(node, count):
    import wire

    out = []
    with wire.Connection(node.host, node.port, timeout_s=30) as conn:
        for _ in range(count):
            topic = name("lat")
            t0 = time.monotonic()
            error = conn.create_topics([(topic, 1, 1, {})], timeout_ms=30000)[topic][0]
            out.append(time.monotonic() - t0)
            if error != 0:
                raise RuntimeError(f"CreateTopics {topic} through {node}: error {error}")
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--broker", choices=["josefine", "kafka"], required=True)
    ap.add_argument("--kills", type=int, default=20)
    ap.add_argument("--fence-rounds", type=int, default=10)
    ap.add_argument("--creates", type=int, default=50)
    ap.add_argument("--session-timeout-ms", type=int, default=3000)
    ap.add_argument("--heartbeat-ms", type=int, default=500)
    ap.add_argument("--only", default="failover,fencing,create")
    ap.add_argument("--out", default=str(REPO / "bench" / "results" / "cluster_failover.jsonl"))
    args = ap.parse_args()

    os.environ["BROKER"] = args.broker  # read by the fixtures' module at import
    import conftest
    from cluster import Cluster

    only = set(args.only.split(","))
    settings = {"broker.session.timeout.ms": args.session_timeout_ms,
                "broker.heartbeat.interval.ms": args.heartbeat_ms}
    root = Path(tempfile.mkdtemp(prefix="josefine-cluster-figures-"))
    figures = {}
    errors = []

    def log(msg):
        print(msg, flush=True)

    def load():
        return os.getloadavg()[0]

    load_start = load()
    clusters = []
    try:
        if "failover" in only or "fencing" in only:
            c = Cluster(root / "c3", 3, settings)
            clusters.append(c)
            c.start()
            if "failover" in only:
                log(f"failover: {args.kills} kills of the controller ({args.broker})")
                rounds = []
                for _ in range(args.kills):
                    try:
                        rounds.append(failover_round(c, log))
                    except Exception as exc:  # noqa: BLE001 - reported, and the run fails
                        errors.append(f"failover: {exc}")
                        log(f"  ERROR {exc}")
                        c.close()
                        for n in c.nodes:
                            n.spawn()
                        c.wait_formed(120)
                figures["new_controller_s"] = summary([r["controller_s"] for r in rounds])
                figures["create_after_kill_s"] = summary([r["create_s"] for r in rounds])
                figures["restart_to_reformed_s"] = summary([r["rejoin_s"] for r in rounds])
            if "fencing" in only:
                import wire

                topic = name("fig-fence")
                with wire.Connection(c.nodes[0].host, c.nodes[0].port) as conn:
                    assert conn.create_topics([(topic, 6, 1, {})])[topic][0] == 0
                log(f"fencing: {args.fence_rounds} kills of a non-controller broker")
                rounds = []
                for rnd in range(args.fence_rounds):
                    try:
                        rounds.append(fencing_round(c, topic, rnd, log))
                    except Exception as exc:  # noqa: BLE001
                        errors.append(f"fencing: {exc}")
                        log(f"  ERROR {exc}")
                figures["kill_to_offline_s"] = summary([r["offline_s"] for r in rounds])
                figures["restart_to_leading_s"] = summary([r["back_s"] for r in rounds])
            c.close()

        if "create" in only:
            factory = conftest.BrokerFactory(root / "single")
            (root / "single").mkdir(parents=True, exist_ok=True)
            single = factory()
            try:
                create_latencies(single, 5)  # warm-up
                figures["create_1_node_s"] = summary(create_latencies(single, args.creates))
            finally:
                factory.close()
            c = Cluster(root / "c3-create", 3, settings)
            clusters.append(c)
            c.start()
            ctrl = c.node(c.wait_controller())
            other = next(n for n in c.nodes if n is not ctrl)
            create_latencies(ctrl, 5)
            figures["create_3_nodes_controller_s"] = summary(create_latencies(ctrl, args.creates))
            figures["create_3_nodes_forwarded_s"] = summary(create_latencies(other, args.creates))
            c.close()
    finally:
        for c in clusters:
            c.close()

    git = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    row = {"time": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
           "broker": args.broker, "git": git, "host": platform.node(), "cpus": os.cpu_count(),
           "load_start": round(load_start, 2), "load_end": round(load(), 2), "settings": settings,
           "binary": str(conftest.josefine_bin()) if args.broker == "josefine" else "kafka 4.1.2 (scripts/kafka-reference)",
           "figures": figures, "errors": errors}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    with open(args.out, "a") as f:
        f.write(json.dumps(row) + "\n")
    log(f"\n{args.broker}: load {row['load_start']} -> {row['load_end']}, settings {settings}")
    for key, s in figures.items():
        if s.get("n"):
            log(f"  {key:32s} n={s['n']:3d}  p50 {s['p50']:8.3f}  p99 {s['p99']:8.3f}  min {s['min']:8.3f}  max {s['max']:8.3f}")
    if errors:
        log(f"{len(errors)} rounds failed (data kept in {root}): {errors}")
        sys.exit(1)
    shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Time to a new partition leader after kill -9 (issue 11 figures), Josefine and Apache Kafka
4.1 side by side, on the fault suite's 3-node cluster (tests/integration/faults/fault_cluster.py:
RF=3, min.insync.replicas=2, 6 partitions, each broker's default settings unless --set).

Owns: per kill, with one idempotent acks=all confluent-kafka producer writing to partition 0
every 5 ms (so 5 ms resolution):
  ack_s       kill -9 of partition 0's leader -> the first acknowledgement of a write sent
              after the kill (what a client waits);
  metadata_s  kill -> Metadata from a surviving broker (polled every 20 ms) names a new live
              leader for partition 0;
then the victim restarts and every replica must be back in every ISR before the next kill.
Each round records whether the victim was also the controller (Josefine: the chain leader;
Kafka: the KRaft quorum leader): a new controller gives every broker a fresh session, so
Josefine's session-close rule (broker.session.close.grace.ms) cannot speed those kills up;
the figures are also given over the kills of a broker that was not the controller.
Prints p50/p99/min/max per broker and a side-by-side table, and appends one JSON line per
broker to bench/results/failover_rf3.jsonl (or --out). Percentiles are nearest-rank.
Josefine is reported as skipped (with the broker's reason) while CreateTopics RF=3 answers
INVALID_REPLICATION_FACTOR.
Must never: report a figure from a failed round (errors are listed; exit status 1), or run
the two brokers' clusters at the same time.

Usage: bench/failover_rf3.py [--broker both|kafka|josefine] [--kills 20] [--set k=v ...]
Not part of the test suite (Kafka: ~40 s per kill on 2 cores, mostly the victim's restart).
"""

import argparse
import datetime
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests" / "integration" / "faults"))
sys.path.insert(0, str(REPO / "tests" / "integration"))
sys.path.insert(0, str(REPO / "bench"))

from cluster_failover import summary  # noqa: E402 - nearest-rank p50/p99/min/max


class Skipped(Exception):
    pass


def measure(kind: str, kills: int, root: Path, log) -> dict:
    import _pytest.outcomes
    import fault_cluster
    from fault_workload import Workload
    from cluster import wait_until

    c = fault_cluster.FaultCluster(root / kind, kind=kind)
    rounds, errors = [], []
    wl = None
    try:
        c.start()
        topic = f"failover-{uuid.uuid4().hex[:8]}"
        try:
            c.create_topic(topic)
        except _pytest.outcomes.Skipped as exc:
            raise Skipped(str(exc)) from None
        # One writer, every write to partition 0 (seq % 1), 200 writes/s.
        wl = Workload(c.bootstrap(), topic, 1, writers=1, rate=200, read_concurrently=False).start()
        wl.wait_acks(50, timeout_s=120)
        for i in range(kills):
            try:
                leader = c.leader(topic, 0)
                controller = c.controller()
                victim = c.node(leader)
                survivors = c.running(exclude=[victim])
                t0 = time.time()
                victim.kill()

                def new_leader():
                    for n in survivors:
                        try:
                            got = c.leader(topic, 0, n)
                        except (OSError, AssertionError):
                            continue
                        if got not in (-1, leader):
                            return got
                    return None

                new = wait_until(new_leader, "a new leader of partition 0", 120, 0.02)
                metadata_s = time.time() - t0
                ack_s = wl.wait_acks(1, partition=0, since=t0, sent_after=t0, timeout_s=120) - t0
                rounds.append({"victim": leader, "controller": controller, "new_leader": new,
                               "metadata_s": metadata_s, "ack_s": ack_s})
                role = " (the controller)" if controller == leader else ""
                log(f"  {kind} kill {i + 1}/{kills}: node {leader}{role} -> {new}: Metadata {metadata_s:.3f} s, "
                    f"first ack {ack_s:.3f} s")
                c.restart(victim)
                c.wait_isr_full(topic, timeout_s=180)
                wl.wait_acks(20, partition=0, since=time.time(), timeout_s=120)
            except Exception as exc:  # noqa: BLE001 - reported; the run fails
                errors.append(f"kill {i + 1}: {type(exc).__name__}: {exc}")
                log(f"  {kind} kill {i + 1}: ERROR {exc}")
                for n in c.nodes:
                    if n.proc is None:
                        c.restart(n)
                c.wait_isr_full(topic, timeout_s=180)
    finally:
        if wl is not None:
            wl.stop(flush_timeout_s=30)
        c.close()
    others = [r for r in rounds if r["controller"] != r["victim"]]
    return {"rounds": rounds, "errors": errors, "settings": c.settings,
            "figures": {"ack_s": summary([r["ack_s"] for r in rounds]),
                        "metadata_s": summary([r["metadata_s"] for r in rounds]),
                        "ack_s_not_controller": summary([r["ack_s"] for r in others]),
                        "metadata_s_not_controller": summary([r["metadata_s"] for r in others])}}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--broker", choices=["both", "josefine", "kafka"], default="both")
    ap.add_argument("--kills", type=int, default=20)
    ap.add_argument("--set", action="append", default=[], help="k=v broker setting on every node (Kafka names)")
    ap.add_argument("--out", default=str(REPO / "bench" / "results" / "failover_rf3.jsonl"))
    args = ap.parse_args()
    if args.set:
        os.environ["FAULT_SET"] = ",".join(filter(None, [os.environ.get("FAULT_SET", "")] + args.set))

    kinds = ["kafka", "josefine"] if args.broker == "both" else [args.broker]
    root = Path(tempfile.mkdtemp(prefix="josefine-failover-rf3-"))
    git = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True).stdout.strip()

    def log(msg):
        print(msg, flush=True)

    results, failed = {}, False
    for kind in kinds:
        log(f"{kind}: {args.kills} kill -9 of partition 0's leader (RF=3, min.insync.replicas=2)")
        load_start = os.getloadavg()[0]
        try:
            res = measure(kind, args.kills, root, log)
        except Skipped as exc:
            log(f"{kind}: skipped: {exc}")
            results[kind] = {"skipped": str(exc)}
            continue
        failed |= bool(res["errors"])
        results[kind] = res
        line = {"time": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
                "broker": kind, "git": git, "host": platform.node(), "cpus": os.cpu_count(),
                "load_start": round(load_start, 2), "load_end": round(os.getloadavg()[0], 2),
                "settings": res["settings"], "kills": args.kills, "figures": res["figures"],
                "errors": res["errors"]}
        with open(args.out, "a") as f:
            f.write(json.dumps(line) + "\n")

    log("\ntime to a new partition leader after kill -9 (s; nearest-rank percentiles)")
    log(f"{'':34}" + "".join(f"{k:>24}" for k in kinds))
    for fig, label in (("ack_s", "kill -> first acks=all ack"), ("metadata_s", "kill -> Metadata new leader"),
                       ("ack_s_not_controller", "(victim not controller) ack"),
                       ("metadata_s_not_controller", "(victim not controller) Metadata")):
        for stat in ("p50", "p99", "min", "max", "n"):
            cells = []
            for k in kinds:
                r = results.get(k, {})
                if "skipped" in r:
                    cells.append("skipped")
                else:
                    v = r["figures"][fig].get(stat)
                    cells.append("-" if v is None else str(v))
            log(f"{label + ' ' + stat:34}" + "".join(f"{c:>24}" for c in cells))
    for k in kinds:
        if "skipped" in results.get(k, {}):
            log(f"{k}: {results[k]['skipped']}")
        elif results[k]["errors"]:
            log(f"{k} errors: {results[k]['errors']}")
    if not os.environ.get("KEEP_BROKER_DATA"):
        import shutil

        shutil.rmtree(root, ignore_errors=True)
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Side-by-side benchmark harness: Josefine versus Apache Kafka 4.1 on the same machine.

Owns: building/locating both brokers, starting each on a fresh data dir per run, driving the
same load tools at both alternately (A B A B ...), sampling broker CPU and memory from /proc,
appending one JSON line per run to bench/results/results.jsonl, and regenerating BENCHMARKS.md
from that file.
Must never: compare numbers from different tools or settings across the two brokers, or report
a scenario as measured when a run produced no numbers (the process exits non-zero instead).
Why Python: the harness is orchestration (processes, /proc, text parsing, tables); the load
itself comes from Kafka's own Java tools, kcat and librdkafka, so harness speed never matters.
"""

import argparse
import datetime
import json
import os
import platform
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BENCH = os.path.join(REPO, "bench")
# BENCH_RESULTS redirects the rows (the CI smoke run must not touch the recorded results).
RESULTS = os.environ.get("BENCH_RESULTS") or os.path.join(BENCH, "results", "results.jsonl")
NOTES = os.path.join(BENCH, "notes.md")
REPORT = os.path.join(REPO, "BENCHMARKS.md")
KAFKA_LIBS = os.environ.get("KAFKA_LIBS", os.path.join(REPO, ".cache", "kafka-libs"))
CLK_TCK = os.sysconf("SC_CLK_TCK")

# Kafka's own defaults from bin/kafka-server-start.sh and kafka-run-class.sh: what a user running
# the distribution gets, so the comparison is against Kafka as shipped, not a tuned JVM.
KAFKA_JVM_OPTS = [
    "-Xmx1G", "-Xms1G", "-server", "-XX:+UseG1GC", "-XX:MaxGCPauseMillis=20",
    "-XX:InitiatingHeapOccupancyPercent=35", "-XX:+ExplicitGCInvokesConcurrent",
    "-XX:MaxInlineLevel=15", "-Djava.awt.headless=true",
    "-Dorg.slf4j.simpleLogger.defaultLogLevel=info",
]
TOOL_JVM_OPTS = ["-Xmx512m", "-XX:+UseG1GC", "-Djava.awt.headless=true",
                 "-Dorg.slf4j.simpleLogger.defaultLogLevel=warn"]

# Time limits, so a hung broker or tool fails the run instead of the whole session.
BROKER_READY_TIMEOUT_S = 90
TOOL_TIMEOUT_S = 600

FSYNC = {"log.flush.interval.messages": "1"}
RDKAFKA_PERF = None  # path, set by main() when a native scenario is chosen


def scenario(name, kind, **kw):
    kw.update(name=name, kind=kind)
    return kw


# Record counts are sized for roughly 3-15 s per run on a busy 2-core machine.
CORE = [
    scenario("produce-100B-p1-acks1", "produce", size=100, partitions=1, acks="1", records=1_000_000),
    scenario("produce-100B-p16-acksall", "produce", size=100, partitions=16, acks="all", records=1_000_000),
    scenario("produce-1KiB-p1-acks1", "produce", size=1024, partitions=1, acks="1", records=300_000),
    scenario("produce-1KiB-p1-acksall", "produce", size=1024, partitions=1, acks="all", records=300_000),
    scenario("produce-1KiB-p16-acks1", "produce", size=1024, partitions=16, acks="1", records=300_000),
    scenario("produce-1KiB-p16-acksall", "produce", size=1024, partitions=16, acks="all", records=300_000),
    scenario("produce-100B-p1-acksall-fsync", "produce", size=100, partitions=1, acks="all",
             records=100_000, settings=FSYNC),
    scenario("produce-1KiB-p16-acksall-fsync", "produce", size=1024, partitions=16, acks="all",
             records=50_000, settings=FSYNC),
    scenario("native-produce-100B-p1-acks1", "native-produce", size=100, partitions=1, acks="1",
             records=2_000_000),
    scenario("native-produce-1KiB-p16-acksall", "native-produce", size=1024, partitions=16,
             acks="all", records=500_000),
    scenario("consume-catchup-1KiB-p1", "catchup", size=1024, partitions=1, records=300_000),
    scenario("latency-fixed-10k-1KiB-acksall", "produce", size=1024, partitions=1, acks="all",
             records=50_000, throughput=10_000, linger_ms=0),
    scenario("latency-e2e-100B", "e2e", size=100, partitions=1, acks="1", records=2000),
]
EXTENDED = [
    scenario("produce-100B-p1000-lowrate", "produce", size=100, partitions=1000, acks="1",
             records=200_000, throughput=20_000),
    scenario("produce-64KiB-p1-acks1", "produce", size=65536, partitions=1, acks="1", records=10_000),
    scenario("produce-1KiB-p16-acks1-4producers", "produce", size=1024, partitions=16, acks="1",
             records=200_000, producers=4),
    scenario("consume-catchup-100B-p16", "catchup", size=100, partitions=16, records=2_000_000),
]
SMOKE = [
    scenario("smoke-produce-1KiB-p1-acks1", "produce", size=1024, partitions=1, acks="1", records=20_000),
    scenario("smoke-consume-catchup", "catchup", size=1024, partitions=1, records=20_000),
    scenario("smoke-latency-e2e", "e2e", size=100, partitions=1, acks="1", records=100),
]
ALL = {s["name"]: s for s in CORE + EXTENDED + SMOKE}


def log(msg):
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def pinned(cpu, argv, pin):
    """Prefixes taskset when pinning: broker on core 0, client on core 1 (see BENCHMARKS.md)."""
    return (["taskset", "-c", str(cpu)] + argv) if pin else argv


def proc_cpu_s(pid):
    """utime+stime of pid and its reaped children, in seconds."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    # Fields after the comm: state is index 0, so utime (14) is 11, stime 12, cutime 13, cstime 14.
    return sum(int(x) for x in fields[11:15]) / CLK_TCK


def proc_status_kb(pid, key):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    return None


class Broker:
    """One broker process on a fresh data dir: started, measured, stopped."""

    def __init__(self, kind, argv, ready_pattern, data_dir, port, prepare=None):
        self.kind, self.argv, self.ready_pattern = kind, argv, ready_pattern
        self.data_dir, self.port, self.prepare = data_dir, port, prepare
        self.proc = None
        self.ready_s = None
        self._ready = threading.Event()

    @property
    def bootstrap(self):
        return f"127.0.0.1:{self.port}"

    def start(self):
        if self.prepare:
            self.prepare()
        logf = open(os.path.join(self.data_dir, "broker.log"), "wb")
        start = time.monotonic()
        self.proc = subprocess.Popen(self.argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL)

        def pump():
            for line in self.proc.stdout:
                logf.write(line)
                if not self._ready.is_set() and self.ready_pattern in line:
                    self.ready_s = time.monotonic() - start
                    self._ready.set()
            logf.close()

        threading.Thread(target=pump, daemon=True).start()
        if not self._ready.wait(BROKER_READY_TIMEOUT_S) or self.proc.poll() is not None:
            self.stop()
            raise RuntimeError(f"{self.kind} did not become ready; see {self.data_dir}/broker.log")

    def cpu_s(self):
        return proc_cpu_s(self.proc.pid)

    def peak_rss_kb(self):
        return proc_status_kb(self.proc.pid, "VmHWM")

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def josefine_broker(bin_path, data_dir, settings, pin):
    port = free_port()
    argv = [bin_path, "--data-dir", os.path.join(data_dir, "data"), "--listen", f"127.0.0.1:{port}",
            "--raft-listen", f"127.0.0.1:{free_port()}"]
    for k, v in settings.items():
        argv += ["--set", f"{k}={v}"]
    return Broker("josefine", pinned(0, argv, pin), b"ready", data_dir, port)


def kafka_broker(data_dir, settings, pin):
    port, ctl_port = free_port(), free_port()
    props = os.path.join(data_dir, "server.properties")
    lines = [
        "process.roles=broker,controller", "node.id=1",
        f"controller.quorum.voters=1@127.0.0.1:{ctl_port}",
        f"listeners=PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{ctl_port}",
        f"advertised.listeners=PLAINTEXT://127.0.0.1:{port}",
        "controller.listener.names=CONTROLLER", "inter.broker.listener.name=PLAINTEXT",
        "listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
        f"log.dirs={data_dir}/kraft-logs",
        "offsets.topic.replication.factor=1", "transaction.state.log.replication.factor=1",
        "transaction.state.log.min.isr=1", "share.coordinator.state.topic.replication.factor=1",
        "share.coordinator.state.topic.min.isr=1", "group.initial.rebalance.delay.ms=0",
    ] + [f"{k}={v}" for k, v in settings.items()]
    with open(props, "w") as f:
        f.write("\n".join(lines) + "\n")
    cp = os.path.join(KAFKA_LIBS, "*")

    def prepare():
        # Formatting is a one-time install step (Josefine has none), so it is not in start-to-ready.
        subprocess.run(["java", "-Xmx256m", "-cp", cp, "kafka.tools.StorageTool", "format", "-t",
                        "bench-cluster-0000001", "-c", props, "--ignore-formatted"],
                       check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    argv = ["java"] + KAFKA_JVM_OPTS + ["-cp", cp, "kafka.Kafka", props]
    return Broker("kafka", pinned(0, argv, pin), b"Kafka Server started", data_dir, port, prepare)


def create_topic(bootstrap, topic, partitions):
    from confluent_kafka.admin import AdminClient, NewTopic

    admin = AdminClient({"bootstrap.servers": bootstrap})
    futures = admin.create_topics([NewTopic(topic, num_partitions=partitions, replication_factor=1)],
                                  operation_timeout=30, request_timeout=30)
    futures[topic].result(60)
    # Wait until metadata shows every partition with a leader, so the load does not time a warm-up.
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        md = admin.list_topics(topic, timeout=10)
        t = md.topics.get(topic)
        if t and not t.error and len(t.partitions) == partitions and all(
                p.leader >= 0 for p in t.partitions.values()):
            return
        time.sleep(0.1)
    raise RuntimeError(f"topic {topic} has no leaders after 30 s")


def java_tool(cls, args, pin):
    argv = ["java"] + TOOL_JVM_OPTS + ["-cp", os.path.join(KAFKA_LIBS, "*"), cls] + args
    return pinned(1, argv, pin)


PERF_RE = re.compile(
    r"(\d+) records sent, ([\d.]+) records/sec \(([\d.]+) MB/sec\), ([\d.]+) ms avg latency, "
    r"([\d.]+) ms max latency, (\d+) ms 50th, (\d+) ms 95th, (\d+) ms 99th, (\d+) ms 99.9th")


def producer_perf(bootstrap, topic, sc, pin, records=None):
    """Runs Kafka's ProducerPerformance; returns parsed totals (latencies in ms)."""
    props = [f"bootstrap.servers={bootstrap}", f"acks={sc['acks'] if 'acks' in sc else '1'}"]
    if "linger_ms" in sc:
        props.append(f"linger.ms={sc['linger_ms']}")
    n = records or sc["records"]
    args = ["--topic", topic, "--num-records", str(n), "--record-size", str(sc["size"]),
            "--throughput", str(sc.get("throughput", -1)), "--producer-props"] + props
    out = subprocess.run(java_tool("org.apache.kafka.tools.ProducerPerformance", args, pin),
                         capture_output=True, text=True, timeout=TOOL_TIMEOUT_S)
    matches = PERF_RE.findall(out.stdout)
    if out.returncode != 0 or not matches:
        raise RuntimeError(f"ProducerPerformance failed (rc {out.returncode}): "
                           f"{out.stdout[-1500:]}{out.stderr[-1500:]}")
    m = matches[-1]
    if int(m[0]) != n:
        raise RuntimeError(f"ProducerPerformance sent {m[0]} of {n} records")
    # Retried produce responses (e.g. OUT_OF_ORDER_SEQUENCE_NUMBER) explain collapses in speed.
    retries = (out.stdout + out.stderr).count("retrying (")
    return {"client_retries": retries,
            "records": int(m[0]), "records_per_s": float(m[1]), "mb_per_s": float(m[2]),
            "lat_avg_ms": float(m[3]), "lat_max_ms": float(m[4]), "lat_p50_ms": float(m[5]),
            "lat_p99_ms": float(m[7]), "lat_p999_ms": float(m[8]), "bytes": n * sc["size"]}


def run_produce(broker, sc, pin, topic):
    create_topic(broker.bootstrap, topic, sc["partitions"])
    producers = sc.get("producers", 1)
    cpu0, t0 = broker.cpu_s(), time.monotonic()
    if producers == 1:
        r = producer_perf(broker.bootstrap, topic, sc, pin)
    else:
        results, errors = [], []
        per = sc["records"] // producers

        def one():
            try:
                results.append(producer_perf(broker.bootstrap, topic, sc, pin, records=per))
            except Exception as e:  # noqa: BLE001 - reported below as a failed run
                errors.append(e)

        threads = [threading.Thread(target=one) for _ in range(producers)]
        [t.start() for t in threads]
        [t.join() for t in threads]
        if errors:
            raise errors[0]
        wall = time.monotonic() - t0
        r = {k: sum(x[k] for x in results) for k in ("records", "bytes", "client_retries")}
        r["records_per_s"] = r["records"] / wall
        r["mb_per_s"] = r["bytes"] / wall / 1048576
        for k in ("lat_p50_ms", "lat_p99_ms", "lat_p999_ms"):
            r[k] = max(x[k] for x in results)
    r["broker_cpu_s"] = broker.cpu_s() - cpu0
    return r


def run_catchup(broker, sc, pin, topic):
    create_topic(broker.bootstrap, topic, sc["partitions"])
    producer_perf(broker.bootstrap, topic, dict(sc, acks="1"), pin)  # fill; not measured
    cpu0, t0 = broker.cpu_s(), time.monotonic()
    # kcat without -G is an assign()-style consumer (no group): it reads every partition from
    # the beginning and exits at the end of the log (-e). One byte per record goes to the pipe.
    argv = pinned(1, ["kcat", "-C", "-b", broker.bootstrap, "-t", topic, "-o", "beginning", "-e",
                      "-q", "-f", "\n", "-X", "fetch.max.bytes=52428800"], pin)
    out = subprocess.run(argv, capture_output=True, timeout=TOOL_TIMEOUT_S)
    wall = time.monotonic() - t0
    got = out.stdout.count(b"\n")
    if out.returncode != 0 or got != sc["records"]:
        raise RuntimeError(f"kcat read {got} of {sc['records']} records (rc {out.returncode}): "
                           f"{out.stderr[-1500:]!r}")
    nbytes = got * sc["size"]
    return {"records": got, "bytes": nbytes, "records_per_s": got / wall,
            "mb_per_s": nbytes / wall / 1048576, "broker_cpu_s": broker.cpu_s() - cpu0}


def run_e2e(broker, sc, pin, topic):
    create_topic(broker.bootstrap, topic, 1)
    cpu0 = broker.cpu_s()
    argv = pinned(1, [sys.executable, os.path.join(BENCH, "tools", "e2e_latency.py"), "--bootstrap",
                      broker.bootstrap, "--topic", topic, "--messages", str(sc["records"]),
                      "--size", str(sc["size"]), "--acks", sc["acks"]], pin)
    out = subprocess.run(argv, capture_output=True, text=True, timeout=TOOL_TIMEOUT_S)
    lines = [l for l in out.stdout.splitlines() if l.startswith("{")]
    r = json.loads(lines[-1]) if lines else {"error": out.stderr[-1500:]}
    if out.returncode != 0 or "error" in r:
        raise RuntimeError(f"e2e_latency failed: {r.get('error')}")
    r["broker_cpu_s"] = broker.cpu_s() - cpu0
    r["bytes"] = sc["records"] * sc["size"]
    return r


def run_native_produce(broker, sc, pin, topic):
    """librdkafka's rdkafka_performance (bench/tools/build-rdkafka-performance) as producer."""
    create_topic(broker.bootstrap, topic, sc["partitions"])
    acks = "-1" if sc["acks"] == "all" else sc["acks"]
    argv = pinned(1, [RDKAFKA_PERF, "-P", "-t", topic, "-b", broker.bootstrap, "-s", str(sc["size"]),
                      "-c", str(sc["records"]), "-a", acks, "-u", "-q"], pin)
    cpu0 = broker.cpu_s()
    out = subprocess.run(argv, capture_output=True, text=True, timeout=TOOL_TIMEOUT_S)
    cpu = broker.cpu_s() - cpu0
    table = [l.split("|")[1:-1] for l in (out.stdout + out.stderr).splitlines()
             if l.startswith("|") and l.split("|")[1].strip().isdigit()]
    if out.returncode != 0 or not table:
        raise RuntimeError(f"rdkafka_performance failed (rc {out.returncode}): "
                           f"{out.stdout[-1000:]}{out.stderr[-1000:]}")
    last = [int(float(x)) for x in table[-1][:10]]
    elapsed_ms, delivered, dr_err = last[0], last[4], last[7]
    if delivered != sc["records"] or dr_err:
        raise RuntimeError(f"rdkafka_performance delivered {delivered} of {sc['records']}, "
                           f"{dr_err} errors")
    nbytes = delivered * sc["size"]
    return {"records": delivered, "bytes": nbytes, "records_per_s": delivered / (elapsed_ms / 1000),
            "mb_per_s": nbytes / (elapsed_ms / 1000) / 1048576, "broker_cpu_s": cpu}


RUNNERS = {"native-produce": run_native_produce, "produce": run_produce, "catchup": run_catchup, "e2e": run_e2e}


def new_broker(kind, sc, args):
    data_dir = tempfile.mkdtemp(prefix=f"bench-{kind}-", dir=args.work_dir)
    settings = sc.get("settings", {})
    if kind == "josefine":
        return josefine_broker(args.josefine_bin, data_dir, settings, args.pin)
    return kafka_broker(data_dir, settings, args.pin)


def start_perf(broker, sc, args, index):
    """With --perf, samples the broker (on the client's core) during the measured phase only."""
    if not args.perf or broker.kind not in args.perf.split(","):
        return None
    out = os.path.join(BENCH, "results", f"perf-{broker.kind}-{sc['name']}-{index}.data")
    argv = pinned(1, ["perf", "record", "-q", "-e", "cpu-clock", "-F", "1999", "--call-graph",
                      "dwarf,16384", "-p", str(broker.proc.pid), "-o", out], args.pin)
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(0.5)  # perf attaches asynchronously
    log(f"perf recording {broker.kind} into {os.path.relpath(out, REPO)}")
    return proc


def stop_perf(proc):
    if proc is not None:
        proc.send_signal(2)
        proc.wait(120)


def one_run(broker, sc, args, run_id, index):
    """One measured run on an already started broker, on a fresh topic."""
    row = {"run_id": run_id, "time": datetime.datetime.now(datetime.timezone.utc).isoformat(
        timespec="seconds"), "scenario": sc["name"], "broker": broker.kind, "run": index,
        "git_rev": git_rev(), "pinned": args.pin, "loadavg_1m": os.getloadavg()[0],
        "params": {k: v for k, v in sc.items() if k not in ("name",)},
        "ready_s": broker.ready_s}
    if broker.kind == "josefine":
        # Which binary was measured: the repository HEAD alone does not say (JOSEFINE_BIN), and
        # before/after comparisons of one broker are told apart by this.
        row["josefine_bin"] = args.josefine_bin
        row["josefine_bin_mtime"] = datetime.datetime.fromtimestamp(
            os.path.getmtime(args.josefine_bin), datetime.timezone.utc).isoformat(timespec="seconds")
    try:
        if broker.proc.poll() is not None:
            raise RuntimeError(f"{broker.kind} exited (rc {broker.proc.returncode})")
        perf = start_perf(broker, sc, args, index)
        try:
            row.update(RUNNERS[sc["kind"]](broker, sc, args.pin, f"bench-{index}"))
        finally:
            stop_perf(perf)
        # VmHWM: peak since this broker started for this scenario (earlier runs included).
        row["peak_rss_mb"] = broker.peak_rss_kb() / 1024
        if row.get("bytes") and sc["kind"] != "e2e":  # e2e moves too few bytes for a rate
            row["cpu_s_per_gb"] = row["broker_cpu_s"] / (row["bytes"] / 1e9)
        row["ok"] = True
    except Exception as e:  # noqa: BLE001 - a failed run is recorded, then fails the invocation
        row["ok"] = False
        row["error"] = str(e)[-2000:]
    return row


def run_scenario(sc, args, run_id, brokers):
    """Starts one broker of each kind, then alternates runs between them (A B A B ...).

    Both stay up for the whole scenario (the idle one costs a few heartbeats), because a cold
    JVM start per run would dominate short runs on a busy 2-core machine; each run uses a new
    topic so no run reads another's data.
    """
    started, rows = [], []
    try:
        for kind in brokers:
            b = new_broker(kind, sc, args)
            try:
                b.start()
            except Exception as e:  # noqa: BLE001 - recorded as a failed run
                rows.append({"run_id": run_id, "scenario": sc["name"], "broker": kind, "run": 0,
                             "ok": False, "error": str(e), "loadavg_1m": os.getloadavg()[0],
                             "params": {k: v for k, v in sc.items() if k != "name"}})
                continue
            started.append(b)
            log(f"{sc['name']}: {kind} ready in {b.ready_s:.2f} s")
        if sc["kind"] != "e2e" and not args.smoke:
            # One unrecorded run at a fifth of the size per broker: a cold JVM (the broker's JIT
            # and the tool's) is not what a running Kafka looks like, and Josefine gets the same.
            warm = dict(sc, records=max(1000, sc["records"] // 5))
            for b in started:
                try:
                    RUNNERS[sc["kind"]](b, warm, args.pin, "bench-warmup")
                except Exception as e:  # noqa: BLE001 - the measured runs will show the failure
                    log(f"{sc['name']}: {b.kind} warm-up failed: {str(e)[:300]}")
        for i in range(args.runs):
            for b in started:
                row = one_run(b, sc, args, run_id, i)
                rows.append(row)
                if row["ok"]:
                    main_fig = (f"{row['mb_per_s']:.1f} MB/s, {row['records_per_s']:.0f} rec/s"
                                if "mb_per_s" in row else
                                f"e2e p50 {row.get('e2e_p50_us', 0):.0f} us")
                    lat = (f", p99 {row['lat_p99_ms']:.0f} ms" if "lat_p99_ms" in row else
                           f", e2e p99 {row['e2e_p99_us']:.0f} us" if "e2e_p99_us" in row else "")
                    log(f"{sc['name']} #{i} {b.kind}: {main_fig}{lat}, "
                        f"cpu {row.get('cpu_s_per_gb', 0):.1f} s/GB, rss {row['peak_rss_mb']:.0f} MB")
                else:
                    log(f"{sc['name']} #{i} {b.kind}: FAILED: {row['error'][:400]}")
    finally:
        for b in started:
            b.stop()
            if not args.keep_data:
                shutil.rmtree(b.data_dir, ignore_errors=True)
    return rows


_GIT_REV = None


def git_rev():
    global _GIT_REV
    if _GIT_REV is None:
        try:
            _GIT_REV = subprocess.run(["git", "-C", REPO, "rev-parse", "--short", "HEAD"],
                                      capture_output=True, text=True).stdout.strip()
        except OSError:
            _GIT_REV = "unknown"
    return _GIT_REV


def build_josefine():
    target = os.environ.get("CARGO_TARGET_DIR", os.path.join(REPO, "target"))
    log(f"building josefine (release) into {target}")
    subprocess.run(["cargo", "build", "--release", "-q", "-p", "josefine"], cwd=REPO, check=True)
    return os.path.join(target, "release", "josefine")


def ensure_deps():
    subprocess.run(["bash", os.path.join(REPO, "scripts", "install-test-deps")], check=True)
    for tool in ("java", "kcat"):
        if not shutil.which(tool):
            sys.exit(f"bench: {tool} missing")


# ---------------------------------------------------------------- report

METRICS = [
    # (key, label, better): better is "high" or "low"; ratio is always josefine / kafka.
    ("mb_per_s", "MB/s", "high"),
    ("records_per_s", "records/s", "high"),
    ("lat_p50_ms", "produce p50 ms", "low"),
    ("lat_p99_ms", "produce p99 ms", "low"),
    ("lat_p999_ms", "produce p99.9 ms", "low"),
    ("ack_p50_us", "ack p50 µs", "low"),
    ("ack_p99_us", "ack p99 µs", "low"),
    ("e2e_p50_us", "e2e p50 µs", "low"),
    ("e2e_p99_us", "e2e p99 µs", "low"),
    ("e2e_p999_us", "e2e p99.9 µs", "low"),
    ("cpu_s_per_gb", "broker CPU s/GB", "low"),
    ("peak_rss_mb", "broker peak RSS MB", "low"),
    ("ready_s", "start-to-ready s", "low"),
    ("client_retries", "client retried responses", "low"),
]


def fmt(v):
    if v is None:
        return "–"
    a = abs(v)
    if a >= 1000:
        return f"{v:,.0f}"
    if a >= 100:
        return f"{v:.0f}"
    if a >= 10:
        return f"{v:.1f}"
    if a >= 1:
        return f"{v:.2f}"
    return f"{v:.3f}"


def load_rows():
    if not os.path.exists(RESULTS):
        return []
    with open(RESULTS) as f:
        return [json.loads(l) for l in f if l.strip()]


def latest_by_scenario(rows):
    """For each scenario, the rows of the most recent invocation that measured it."""
    latest = {}
    kinds = {}
    for r in rows:
        kinds.setdefault((r["run_id"], r["scenario"]), set()).add(r["broker"])
    for r in rows:
        # A one-broker invocation (e.g. a profiling run) has nothing to compare against.
        if r["scenario"].startswith("smoke-") or len(kinds[(r["run_id"], r["scenario"])]) < 2:
            continue
        latest[r["scenario"]] = max(latest.get(r["scenario"], ""), r["run_id"])
    return {s: [r for r in rows if r["scenario"] == s and r["run_id"] == rid]
            for s, rid in latest.items()}


def summarize(rows, key):
    vals = [r[key] for r in rows if r.get("ok") and r.get(key) is not None]
    if not vals:
        return None, None, None, 0
    return statistics.median(vals), min(vals), max(vals), len(vals)


def machine_description():
    def sh(cmd):
        try:
            return subprocess.run(cmd, shell=True, capture_output=True, text=True).stdout.strip()
        except OSError:
            return "?"
    cpu = sh("lscpu | sed -n 's/^Model name: *//p' | head -1")
    mem = sh("free -g | awk '/Mem:/{print $2}'")
    java = sh("java -version 2>&1 | head -1")
    rustc = sh("rustc --version")
    return (f"- CPU: {cpu}, {os.cpu_count()} cores (virtual machine)\n"
            f"- Memory: {mem} GiB; kernel {platform.release()}\n"
            f"- Java: {java}; Rust: {rustc}\n"
            f"- Apache Kafka 4.1.2 (Maven Central jars, single KRaft node, JVM flags of "
            f"kafka-server-start.sh: `{' '.join(KAFKA_JVM_OPTS[:3])} ... G1`)")


def write_report():
    rows = load_rows()
    groups = latest_by_scenario(rows)
    out = ["# Benchmarks: Josefine vs Apache Kafka\n",
           "_This file is regenerated by `bench/run` from `bench/results/results.jsonl`; edit "
           "`bench/harness.py` (tables) or `bench/notes.md` (text) instead._\n",
           "## Machine\n", machine_description() + "\n",
           "## How to reproduce\n",
           "```sh\nbench/run              # core set, 3 runs per broker, alternating\n"
           "bench/run --extended   # core + extended set\n"
           "bench/run --smoke      # a few seconds per broker (CI); non-zero exit if a run fails\n"
           "bench/run produce-1KiB-p1-acks1 latency-e2e-100B --runs 5   # chosen scenarios\n"
           "bench/run --list       # scenario names\n"
           "bench/run --report     # only regenerate this file\n```\n",
           "Environment: `JOSEFINE_BIN=path` skips the build; `CARGO_TARGET_DIR` is honoured.\n",
           "## Method\n",
           "- Each run starts the broker on a fresh data dir, creates the topic, runs the load, "
           "reads `/proc/<pid>/stat` (utime+stime, measured phase only) and `/proc/<pid>/status` "
           "(VmHWM), then stops it. Brokers alternate run by run (Josefine, Kafka, Josefine, ...).\n"
           "- Pinning: with 2+ cores, the broker runs under `taskset -c 0` and every client under "
           "`taskset -c 1`, so each broker gets exactly one core (Kafka's JVM threads and "
           "Josefine's runtime alike) and the load generator never steals it.\n"
           "- Produce: Kafka's `ProducerPerformance` (Java client defaults: linger.ms=5, "
           "batch.size=16384, no compression; idempotence on with acks=all). Its latencies are "
           "whole milliseconds, per record from send() to callback.\n"
           "- Native produce: librdkafka's `rdkafka_performance -P` (built by "
           "`bench/tools/build-rdkafka-performance` from the rdkafka-sys crate's sources, linked "
           "to the confluent-kafka wheel's librdkafka; defaults: linger.ms=5, random partition), "
           "so the producer client costs less CPU than the Java one.\n"
           "- Consumer catch-up: the log is filled by ProducerPerformance (not timed), then "
           "`kcat -C -o beginning -e` (librdkafka, no group) reads it all; wall time includes "
           "connect and metadata.\n"
           "- Fixed-rate latency: ProducerPerformance at 10,000 records/s with linger.ms=0.\n"
           "- End-to-end latency: `bench/tools/e2e_latency.py` (librdkafka via confluent-kafka): "
           "one record in flight, ack latency and produce-to-consume latency in microseconds.\n"
           "- fsync: both brokers started with `log.flush.interval.messages=1` (Kafka: broker "
           "setting, fsync per appended batch; Josefine: `--set log.flush.interval.messages=1`).\n"
           "- Start-to-ready: process start to the ready log line (Josefine `ready`, Kafka `Kafka "
           "Server started`); Kafka's one-time `StorageTool format` is not counted.\n"
           "- Median of the runs of the latest invocation per scenario; `[min–max]` is the spread; "
           "ratio = Josefine / Kafka (for throughput higher is better, for the rest lower).\n"]
    if os.path.exists(NOTES):
        with open(NOTES) as f:
            out.append(f.read().rstrip() + "\n")
    out.append("## Results\n")
    if not groups:
        out.append("No results yet.\n")
    order = [s["name"] for s in CORE + EXTENDED]
    names = sorted(groups, key=lambda n: order.index(n) if n in order else 999)
    if names:
        out.append("### Summary (medians; J/K = Josefine / Kafka)\n")
        out.append("| scenario | load avg | MB/s J / K (J/K) | p99 J / K | broker CPU s/GB J / K "
                   "| peak RSS MB J / K | ready s J / K |")
        out.append("|---|---|---|---|---|---|---|")
        for name in names:
            j = [r for r in groups[name] if r["broker"] == "josefine"]
            k = [r for r in groups[name] if r["broker"] == "kafka"]

            def pair(key, ratio=False):
                jm, km = summarize(j, key)[0], summarize(k, key)[0]
                if jm is None and km is None:
                    return "–"
                text = f"{fmt(jm)} / {fmt(km)}"
                if ratio and jm is not None and km:
                    text += f" ({fmt(jm / km)})"
                return text

            lat = (pair("e2e_p99_us") + " µs e2e") if summarize(j, "e2e_p99_us")[3] else (
                pair("lat_p99_ms") + " ms" if summarize(j, "lat_p99_ms")[3] else "–")
            load = max((r.get("loadavg_1m") or 0) for r in groups[name])
            out.append(f"| {name} | {load:.1f} | {pair('mb_per_s', True)} | {lat} | "
                       f"{pair('cpu_s_per_gb', True)} | {pair('peak_rss_mb')} | {pair('ready_s')} |")
        out.append("")
    for name in names:
        rows_s = groups[name]
        j = [r for r in rows_s if r["broker"] == "josefine"]
        k = [r for r in rows_s if r["broker"] == "kafka"]
        first = rows_s[0]
        params = ", ".join(f"{a}={b}" for a, b in first["params"].items() if a != "kind")
        fails = [r for r in rows_s if not r.get("ok")]
        out.append(f"### {name}\n")
        out.append(f"{first['params']['kind']}: {params}. Run {first['run_id']} "
                   f"(git {first.get('git_rev')}), load average at start "
                   f"{min(r['loadavg_1m'] for r in rows_s):.1f}–"
                   f"{max(r['loadavg_1m'] for r in rows_s):.1f}"
                   + "".join(sorted({f"; Josefine binary `{os.path.basename(r['josefine_bin'])}` "
                                     f"built {r.get('josefine_bin_mtime', '?')}"
                                     for r in j if r.get("josefine_bin")}))
                   + ".\n")
        out.append("| metric | Josefine median [min–max] | Kafka median [min–max] | J/K |")
        out.append("|---|---|---|---|")
        for key, label, _better in METRICS:
            jm, jlo, jhi, jn = summarize(j, key)
            km, klo, khi, kn = summarize(k, key)
            if jn == 0 and kn == 0:
                continue
            ratio = fmt(jm / km) if jm is not None and km not in (None, 0) else "–"
            out.append(f"| {label} | {fmt(jm)} [{fmt(jlo)}–{fmt(jhi)}] n={jn} | "
                       f"{fmt(km)} [{fmt(klo)}–{fmt(khi)}] n={kn} | {ratio} |")
        for r in fails:
            out.append(f"\nFailed run: {r['broker']} #{r['run']}: `{r['error'][:300]}`")
        out.append("")
    with open(REPORT, "w") as f:
        f.write("\n".join(out))
    log(f"wrote {os.path.relpath(REPORT, REPO)}")


# ---------------------------------------------------------------- main


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("scenarios", nargs="*")
    ap.add_argument("--smoke", action="store_true")
    ap.add_argument("--extended", action="store_true")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--list", action="store_true")
    ap.add_argument("--report", action="store_true", help="only regenerate BENCHMARKS.md")
    ap.add_argument("--no-pin", dest="pin", action="store_false")
    ap.add_argument("--keep-data", action="store_true")
    ap.add_argument("--perf", default="", help="comma list of brokers to perf-record per run")
    ap.add_argument("--brokers", default="josefine,kafka")
    ap.add_argument("--work-dir", default=None, help="parent of the per-run data dirs")
    args = ap.parse_args()

    if args.list:
        for group, items in (("core", CORE), ("extended", EXTENDED), ("smoke", SMOKE)):
            for s in items:
                print(f"{group:9} {s['name']}")
        return 0
    if args.report:
        write_report()
        return 0
    if args.smoke:
        chosen = SMOKE
        args.runs = 1 if args.runs == 3 else args.runs
    elif args.scenarios:
        unknown = [s for s in args.scenarios if s not in ALL]
        if unknown:
            sys.exit(f"bench: unknown scenario(s) {unknown}; see bench/run --list")
        chosen = [ALL[s] for s in args.scenarios]
    else:
        chosen = CORE + (EXTENDED if args.extended else [])
    args.pin = args.pin and (os.cpu_count() or 1) >= 2 and shutil.which("taskset") is not None

    ensure_deps()
    args.josefine_bin = os.environ.get("JOSEFINE_BIN") or build_josefine()
    if any(s["kind"] == "native-produce" for s in chosen):
        global RDKAFKA_PERF
        RDKAFKA_PERF = subprocess.run(
            ["bash", os.path.join(BENCH, "tools", "build-rdkafka-performance")], check=True,
            capture_output=True, text=True).stdout.strip().splitlines()[-1]
    if not os.access(args.josefine_bin, os.X_OK):
        sys.exit(f"bench: no josefine binary at {args.josefine_bin}")
    own_work_dir = args.work_dir is None
    args.work_dir = args.work_dir or tempfile.mkdtemp(prefix="josefine-bench-")
    os.makedirs(os.path.dirname(RESULTS), exist_ok=True)
    run_id = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    brokers = args.brokers.split(",")
    failed = 0
    for sc in chosen:
        rows = run_scenario(sc, args, run_id, brokers)
        if args.perf:
            # perf sampling slows the broker it watches: such runs are not results.
            failed += sum(1 for r in rows if not r["ok"])
            continue
        with open(RESULTS, "a") as f:
            for row in rows:
                f.write(json.dumps(row) + "\n")
        failed += sum(1 for r in rows if not r["ok"])
        if not rows:
            failed += 1
    if not args.smoke:
        write_report()
    if own_work_dir:
        shutil.rmtree(args.work_dir, ignore_errors=True)
    if failed:
        log(f"{failed} run(s) failed")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""Side-by-side benchmark harness: Josefine versus Apache Kafka 4.1 on the same machine.

Owns: building/locating both brokers, starting each on a fresh data dir per run, driving the
same load tools at both alternately (A B A B ...), sampling broker CPU and memory from /proc,
appending one JSON line per run to bench/results/results.jsonl, and regenerating BENCHMARKS.md
from that file.
Must never: compare numbers from different tools or settings across the two brokers, or report
a scenario as measured when a run produced no numbers (the process exits non-zero instead).
Why Python: the harness is orchestration (processes, /proc, text parsing, tables); the load
itself comes from bench/load (the native open-loop load generator, Go + franz-go), Kafka's own
Java tools, kcat and librdkafka, so harness speed never matters.
"""

import argparse
import base64
import datetime
import json
import os
import platform
import re
import resource
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid

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
LOAD_SRC = os.path.join(BENCH, "load")
LOAD_BIN = os.path.join(REPO, ".cache", "bench-load", "load")  # built by build_load()

# A side is "saturated" when it used at least this share of its one pinned core during a run
# (CPU time from /proc over wall time); below it on both sides the machine's contention or
# the offered rate set the figure.
SATURATED_CORE_SHARE = 0.8
# The rate sweep: offered rates of 1 KiB records (records/s), tried in order until one fails
# (p99 at or above the bound, achieved rate under 95 % of offered, or any error).
SWEEP_RATES = [1_000, 2_000, 5_000, 10_000, 20_000, 30_000, 45_000, 65_000, 90_000, 125_000,
               170_000]
SWEEP_P99_BOUND_US = 10_000
SWEEP_MIN_ACHIEVED = 0.95


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
    # bench/load, open loop: latency from each record's due time (no coordinated omission).
    scenario("fixed-1k-1KiB-p16-acksall", "load", size=1024, partitions=16, acks="all", rate=1_000,
             linger_ms=1, duration_s=10),
    scenario("fixed-10k-1KiB-p16-acksall", "load", size=1024, partitions=16, acks="all", rate=10_000,
             linger_ms=1, duration_s=10),
    scenario("fixed-50k-1KiB-p16-acksall", "load", size=1024, partitions=16, acks="all", rate=50_000,
             linger_ms=1, duration_s=10),
    scenario("sweep-1KiB-p16-acksall", "sweep", size=1024, partitions=16, acks="all", linger_ms=1,
             duration_s=4),
    scenario("fixed-1k-1KiB-p1-acks1-e2e", "load", size=1024, partitions=1, acks="1", rate=1_000,
             linger_ms=0, duration_s=10, e2e=True),
    scenario("latency-e2e-100B", "e2e", size=100, partitions=1, acks="1", records=2000),
]
EXTENDED = [
    scenario("produce-100B-p1000-lowrate", "produce", size=100, partitions=1000, acks="1",
             records=200_000, throughput=20_000),
    scenario("produce-64KiB-p1-acks1", "produce", size=65536, partitions=1, acks="1", records=10_000),
    scenario("produce-1KiB-p16-acks1-4producers", "produce", size=1024, partitions=16, acks="1",
             records=200_000, producers=4),
    scenario("consume-catchup-100B-p16", "catchup", size=100, partitions=16, records=2_000_000),
    # Broker-side recompression (issue 12): closed-loop bench/load whose producer codec differs
    # from the topic's compression.type, and the same load stored as sent for reference.
    *[scenario(f"recompress-1KiB-{codec}-to-{topic}", "load", size=1024, partitions=16, acks="1",
               rate=0, linger_ms=5, duration_s=10, compression=codec,
               topic_config=f"compression.type={topic}")
      for codec, topic in (("none", "producer"), ("none", "lz4"), ("none", "zstd"), ("gzip", "lz4"))],
]
# Three brokers of each kind on the broker core (Josefine x3 vs Kafka x3), the same load
# program; min.insync.replicas=2 on every topic. Each run: a fixed-rate phase (latency) and a
# closed-loop phase (throughput), on new topics. RF=1 rows are the same load on the same
# 3-broker cluster, for the cost of replication.
RF3_TOPIC = "min.insync.replicas=2"
CLUSTER = [
    scenario(f"cluster-rf{rf}-{label}-acks{acks}", "cluster-load", nodes=3, rf=rf, size=size,
             partitions=6, acks=acks, rate=rate, linger_ms=1, duration_s=8, max_duration_s=8,
             topic_config=RF3_TOPIC)
    for rf, acks in ((3, "all"), (3, "1"), (1, "all"))
    for size, label, rate in ((1024, "1KiB", 5_000), (65536, "64KiB", 150))
]
SMOKE = [
    scenario("smoke-load-1KiB-p16-acksall-e2e", "load", size=1024, partitions=16, acks="all",
             rate=2_000, linger_ms=1, duration_s=2, warmup_s=1, e2e=True),
    scenario("smoke-sweep-1KiB", "sweep", size=1024, partitions=4, acks="all", linger_ms=1,
             duration_s=1, warmup_s=0.5, rates=[1_000, 4_000],
             p99_bound_us=60_000_000),  # smoke: the mechanics, not a cold JVM's tail
    scenario("smoke-produce-1KiB-p1-acks1", "produce", size=1024, partitions=1, acks="1", records=20_000),
    scenario("smoke-consume-catchup", "catchup", size=1024, partitions=1, records=20_000),
    scenario("smoke-latency-e2e", "e2e", size=100, partitions=1, acks="1", records=100),
]
ALL = {s["name"]: s for s in CORE + EXTENDED + CLUSTER + SMOKE}


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
        self.spawn()
        self.wait_ready()

    def spawn(self):
        """Starts the process without waiting (a cluster's nodes must all start before any is
        ready: Kafka's broker registers only once its controller quorum has a majority)."""
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

    def wait_ready(self):
        if not self._ready.wait(BROKER_READY_TIMEOUT_S) or self.proc.poll() is not None:
            self.stop()
            raise RuntimeError(f"{self.kind} did not become ready; see {self.data_dir}/broker.log")

    def exited(self):
        """The exit code if the process has ended, else None."""
        return self.proc.poll()

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


class ClusterBrokers:
    """N brokers of one kind forming one cluster on loopback, all pinned to the broker core;
    measured as one broker (CPU and peak RSS summed over the nodes).

    Josefine nodes get `--voters`/`--cluster-id` as scripts/cluster gives them; Kafka nodes run
    through scripts/kafka-reference (the test suite's KRaft combined nodes, same flags, its
    JVM flags: -Xmx768m G1), as tests/integration/cluster.py starts them.
    """

    def __init__(self, kind, nodes, data_dir, settings, pin, josefine_bin):
        self.kind, self.data_dir = kind, data_dir
        ports = [(free_port(), free_port()) for _ in range(nodes)]
        voters = ",".join(f"{i + 1}@127.0.0.1:{raft}" for i, (_, raft) in enumerate(ports))
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode()
        cluster_id = "A" + cluster_id[1:]  # never starting with '-' (a command line's flag)
        exe = [josefine_bin] if kind == "josefine" else [os.path.join(REPO, "scripts",
                                                                      "kafka-reference")]
        pattern = b"ready" if kind == "josefine" else b"Kafka Server started"
        self.nodes = []
        for i, (port, raft) in enumerate(ports):
            node_dir = os.path.join(data_dir, f"node-{i + 1}")
            os.makedirs(node_dir)
            argv = exe + ["--node-id", str(i + 1), "--data-dir", os.path.join(node_dir, "data"),
                          "--listen", f"127.0.0.1:{port}", "--raft-listen", f"127.0.0.1:{raft}",
                          "--voters", voters, "--cluster-id", cluster_id]
            for k, v in settings.items():
                argv += ["--set", f"{k}={v}"]
            self.nodes.append(Broker(kind, pinned(0, argv, pin), pattern, node_dir, port))
        self.ready_s = None

    @property
    def bootstrap(self):
        return ",".join(n.bootstrap for n in self.nodes)

    def start(self):
        t0 = time.monotonic()
        for n in self.nodes:
            n.spawn()
        try:
            for n in self.nodes:
                n.wait_ready()
            from confluent_kafka.admin import AdminClient

            admin = AdminClient({"bootstrap.servers": self.bootstrap})
            deadline = time.monotonic() + BROKER_READY_TIMEOUT_S
            while len(admin.list_topics(timeout=10).brokers) < len(self.nodes):
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{self.kind} cluster: not every node registered")
                time.sleep(0.2)
        except Exception:
            self.stop()
            raise
        self.ready_s = time.monotonic() - t0

    def cpu_s(self):
        return sum(n.cpu_s() for n in self.nodes)

    def peak_rss_kb(self):
        return sum(n.peak_rss_kb() or 0 for n in self.nodes)

    def exited(self):
        return next((n.proc.returncode for n in self.nodes if n.proc.poll() is not None), None)

    def stop(self):
        for n in self.nodes:
            if n.proc and n.proc.poll() is None:
                n.proc.terminate()
        for n in self.nodes:
            n.stop()


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
    ru0 = resource.getrusage(resource.RUSAGE_CHILDREN)
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
    # The Java client's share of its core (all producers summed; JVM start included).
    wall, ru1 = time.monotonic() - t0, resource.getrusage(resource.RUSAGE_CHILDREN)
    r["client_core_share"] = (ru1.ru_utime + ru1.ru_stime - ru0.ru_utime - ru0.ru_stime) / wall
    r["broker_core_share"] = r["broker_cpu_s"] / wall
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


def load_once(broker, sc, pin, topic, rate, duration_s, warmup_s):
    """One bench/load run (it creates the topic and waits for full ISRs); its JSON report plus
    the broker's CPU seconds during it. Raises if it printed no report."""
    argv = [LOAD_BIN, "-brokers", broker.bootstrap, "-topic", topic, "-create",
            "-partitions", str(sc["partitions"]), "-rf", str(sc.get("rf", 1)),
            "-rate", str(rate), "-duration", f"{duration_s}s", "-warmup", f"{warmup_s}s",
            "-producers", str(sc.get("producers", 1)), "-size", str(sc["size"]),
            "-acks", sc["acks"], "-compression", sc.get("compression", "none"),
            "-linger", f"{sc.get('linger_ms', 1)}ms"]
    if sc.get("topic_config"):
        argv += ["-topic-config", sc["topic_config"]]
    if sc.get("e2e"):
        argv.append("-e2e")
    cpu0 = broker.cpu_s()
    out = subprocess.run(pinned(1, argv, pin), capture_output=True, text=True,
                         timeout=TOOL_TIMEOUT_S)
    cpu = broker.cpu_s() - cpu0
    lines = [l for l in out.stdout.splitlines() if l.startswith("{")]
    if not lines:
        raise RuntimeError(f"bench/load failed (rc {out.returncode}): {out.stderr[-1500:]}")
    rep = json.loads(lines[-1])
    rep["broker_cpu_s"] = cpu
    rep["broker_core_share"] = cpu / rep["client_wall_s"]
    rep["error_text"] = out.stderr.strip()[-600:] if out.returncode else ""
    return rep


def load_row(rep, size):
    """The harness row fields of one bench/load report (latencies in µs from due time)."""
    row = {"records": rep["records_acked"], "bytes": rep["records_acked_total"] * size,
           "records_per_s": rep["achieved_rate"], "mb_per_s": rep["mb_per_s"],
           "target_rate": rep["target_rate"], "errors": rep["errors"],
           "due_p50_us": rep["ack"]["p50_us"], "due_p99_us": rep["ack"]["p99_us"],
           "due_p999_us": rep["ack"]["p999_us"], "due_max_us": rep["ack"]["max_us"],
           "send_lag_p99_us": rep["send_lag"]["p99_us"], "broker_cpu_s": rep["broker_cpu_s"],
           "client_core_share": rep["client_cpu_frac"], "broker_core_share": rep["broker_core_share"]}
    if rep.get("e2e"):
        row.update(e2e_p50_us=rep["e2e"]["p50_us"], e2e_p99_us=rep["e2e"]["p99_us"],
                   e2e_p999_us=rep["e2e"]["p999_us"])
    return row


def run_load(broker, sc, pin, topic):
    """bench/load at a fixed rate: a failed run if any record failed or was not acknowledged."""
    rep = load_once(broker, sc, pin, topic, sc["rate"], sc["duration_s"], sc.get("warmup_s", 2))
    if rep["errors"] or not rep["records_acked"]:
        raise RuntimeError(f"bench/load: {rep['errors']} errors, {rep['records_acked']} "
                           f"acknowledged: {rep['error_text'] or rep.get('error_kinds')}")
    return load_row(rep, sc["size"])


def run_sweep(broker, sc, pin, topic):
    """Offered rates in order (SWEEP_RATES) until one fails the bound: the knee is the highest
    rate whose p99 (from due time) stayed under SWEEP_P99_BOUND_US with >= 95 % achieved and no
    error. The row's throughput and CPU are the knee's; `stopped_by` names the first failing
    step and which core was saturated there."""
    knee, steps, stop = None, [], None
    for rate in sc.get("rates", SWEEP_RATES):
        rep = load_once(broker, sc, pin, f"{topic}-{rate}", rate, sc["duration_s"],
                        sc.get("warmup_s", 1))
        step = {"rate": rate, "achieved": round(rep["achieved_rate"]), "p99_us": rep["ack"]["p99_us"],
                "errors": rep["errors"], "client_core_share": round(rep["client_cpu_frac"], 2),
                "broker_core_share": round(rep["broker_core_share"], 2)}
        steps.append(step)
        why = ("errors" if rep["errors"] else
               "p99" if rep["ack"]["p99_us"] >= sc.get("p99_bound_us", SWEEP_P99_BOUND_US) else
               "rate" if rep["achieved_rate"] < SWEEP_MIN_ACHIEVED * rate else None)
        if why:
            stop = dict(step, why=why, saturated=saturation(rep["broker_core_share"],
                                                            rep["client_cpu_frac"]))
            break
        knee = rep
    if knee is None:
        # Even the lowest rate missed the bound: a result (knee below it), not a failed run;
        # the CPU per byte is the failing step's, the throughput figures stay empty.
        row = {k: v for k, v in load_row(rep, sc["size"]).items() if k not in KNEE_FIGURES}
        row.update(knee_rate=0, sweep_steps=steps, stopped_by=stop, saturated=stop["saturated"])
        return row
    row = load_row(knee, sc["size"])
    row.update(knee_rate=knee["target_rate"], sweep_steps=steps, stopped_by=stop)
    if stop:
        row["saturated"] = stop["saturated"]
        row["broker_core_share"], row["client_core_share"] = (stop["broker_core_share"],
                                                              stop["client_core_share"])
    return row


# What a sweep row reports at its knee; a row without a knee (0) has none of them.
KNEE_FIGURES = ("records_per_s", "mb_per_s", "due_p50_us", "due_p99_us", "due_p999_us",
                "due_max_us", "broker_cpu_s", "bytes", "mb_per_broker_cpu_s", "cpu_s_per_gb")


def run_cluster_load(broker, sc, pin, topic):
    """A fixed-rate phase (latency from due time) then a closed-loop phase (throughput) on a new
    topic each, on a multi-broker cluster; the row's MB/s and CPU are the closed loop's."""
    fixed = load_once(broker, sc, pin, f"{topic}-fixed", sc["rate"], sc["duration_s"], 2)
    top = load_once(broker, sc, pin, f"{topic}-max", 0, sc["max_duration_s"], 2)
    for name, rep in (("fixed", fixed), ("closed-loop", top)):
        if rep["errors"] or not rep["records_acked"]:
            raise RuntimeError(f"bench/load {name}: {rep['errors']} errors, "
                               f"{rep['records_acked']} acknowledged: "
                               f"{rep['error_text'] or rep.get('error_kinds')}")
    row = load_row(top, sc["size"])
    for k in ("due_p50_us", "due_p99_us", "due_p999_us", "due_max_us", "send_lag_p99_us"):
        row[k] = load_row(fixed, sc["size"])[k]
    row["fixed_rate_achieved"] = fixed["achieved_rate"]
    row["closed_loop_p99_us"] = top["ack"]["p99_us"]
    return row


def saturation(broker_share, client_share):
    """Which side used its whole core (see SATURATED_CORE_SHARE)."""
    b, c = broker_share >= SATURATED_CORE_SHARE, client_share >= SATURATED_CORE_SHARE
    return "both" if b and c else "broker" if b else "client" if c else "neither"


RUNNERS = {"native-produce": run_native_produce, "produce": run_produce, "catchup": run_catchup,
           "e2e": run_e2e, "load": run_load, "sweep": run_sweep,
           "cluster-load": run_cluster_load}


def new_broker(kind, sc, args):
    data_dir = tempfile.mkdtemp(prefix=f"bench-{kind}-", dir=args.work_dir)
    settings = sc.get("settings", {})
    if sc.get("nodes", 1) > 1:
        return ClusterBrokers(kind, sc["nodes"], data_dir, settings, args.pin, args.josefine_bin)
    if kind == "josefine":
        return josefine_broker(args.josefine_bin, data_dir, settings, args.pin)
    return kafka_broker(data_dir, settings, args.pin)


def start_perf(broker, sc, args, index):
    """With --perf, samples the broker (on the client's core) during the measured phase only."""
    if not args.perf or broker.kind not in args.perf.split(",") or not hasattr(broker, "proc"):
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
        if broker.exited() is not None:
            raise RuntimeError(f"{broker.kind} exited (rc {broker.exited()})")
        perf = start_perf(broker, sc, args, index)
        # Which core was saturated: the broker's CPU and the reaped load tools' (RUSAGE_CHILDREN)
        # over the run's wall time, unless the runner measured its own phase more exactly.
        ru0, t0, bcpu0 = resource.getrusage(resource.RUSAGE_CHILDREN), time.monotonic(), broker.cpu_s()
        try:
            row.update(RUNNERS[sc["kind"]](broker, sc, args.pin, f"bench-{index}"))
        finally:
            stop_perf(perf)
        wall, ru1 = time.monotonic() - t0, resource.getrusage(resource.RUSAGE_CHILDREN)
        row.setdefault("broker_core_share", (broker.cpu_s() - bcpu0) / wall)
        row.setdefault("client_core_share", (ru1.ru_utime + ru1.ru_stime - ru0.ru_utime
                                             - ru0.ru_stime) / wall)
        row.setdefault("saturated", saturation(row["broker_core_share"], row["client_core_share"]))
        if row.get("bytes") and row.get("broker_cpu_s") and sc["kind"] != "e2e":
            row["mb_per_broker_cpu_s"] = row["bytes"] / 1e6 / row["broker_cpu_s"]
        row["uptime"] = open("/proc/loadavg").read().strip()
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
            warm = (dict(sc, records=max(1000, sc["records"] // 5)) if "records" in sc else
                    dict(sc, duration_s=2, max_duration_s=2, rates=sc.get("rates", [5_000])[:1]))
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
                                if "mb_per_s" in row else "knee below the lowest rate"
                                if "knee_rate" in row else
                                f"e2e p50 {row.get('e2e_p50_us', 0):.0f} us")
                    lat = (f", p99 {row['due_p99_us']:,} us from due" if "due_p99_us" in row else
                           f", p99 {row['lat_p99_ms']:.0f} ms" if "lat_p99_ms" in row else
                           f", e2e p99 {row['e2e_p99_us']:.0f} us" if "e2e_p99_us" in row else "")
                    log(f"{sc['name']} #{i} {b.kind}: {main_fig}{lat}, "
                        f"{row.get('mb_per_broker_cpu_s', 0):.0f} MB per broker CPU-s, "
                        f"rss {row['peak_rss_mb']:.0f} MB, saturated: {row['saturated']} "
                        f"(broker {row['broker_core_share']:.2f}, client "
                        f"{row['client_core_share']:.2f} of a core)"
                        + (f", knee {row['knee_rate']:,.0f}/s" if "knee_rate" in row else ""))
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


def build_load():
    """Builds bench/load into .cache/bench-load (go build; the modules pinned by go.sum come from
    the Go module proxy on a cold machine). A stamp names the hash of the sources, so an edit
    rebuilds it and a warm call costs nothing."""
    import hashlib

    h = hashlib.sha256()
    for name in sorted(os.listdir(LOAD_SRC)):
        if name.endswith((".go", ".mod", ".sum")):
            with open(os.path.join(LOAD_SRC, name), "rb") as f:
                h.update(name.encode() + f.read())
    stamp = os.path.join(os.path.dirname(LOAD_BIN), f".built-{h.hexdigest()[:16]}")
    if os.access(LOAD_BIN, os.X_OK) and os.path.exists(stamp):
        return
    if not shutil.which("go"):
        sys.exit("bench: go missing (Go 1.26+ builds bench/load)")
    log("building bench/load (go build)")
    shutil.rmtree(os.path.dirname(LOAD_BIN), ignore_errors=True)
    os.makedirs(os.path.dirname(LOAD_BIN))
    subprocess.run(["go", "build", "-mod=readonly", "-o", LOAD_BIN, "."], cwd=LOAD_SRC, check=True)
    open(stamp, "w").close()


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
    ("due_p50_us", "p50 µs from due time", "low"),
    ("due_p99_us", "p99 µs from due time", "low"),
    ("due_p999_us", "p99.9 µs from due time", "low"),
    ("due_max_us", "max µs from due time", "low"),
    ("send_lag_p99_us", "client send lag p99 µs", "low"),
    ("closed_loop_p99_us", "closed-loop p99 µs (queueing)", "low"),
    ("knee_rate", "sweep knee records/s (p99 < 10 ms)", "high"),
    ("errors", "errors", "low"),
    ("mb_per_broker_cpu_s", "MB per broker CPU-s", "high"),
    ("cpu_s_per_gb", "broker CPU s/GB", "low"),
    ("broker_core_share", "broker core share", "low"),
    ("client_core_share", "client core share", "low"),
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
        rows = [json.loads(l) for l in f if l.strip()]
    for r in rows:  # rows recorded before the MB per broker CPU-s figure existed
        if r.get("cpu_s_per_gb") and "mb_per_broker_cpu_s" not in r:
            r["mb_per_broker_cpu_s"] = 1000 / r["cpu_s_per_gb"]
        if r.get("knee_rate") == 0:  # no knee: no figures "at the knee" (see run_sweep)
            for k in KNEE_FIGURES:
                r.pop(k, None)
    return rows


def latest_by_scenario(rows):
    """For each scenario, the rows of the most recent invocation that measured it."""
    latest = {}
    kinds = {}
    for r in rows:
        kinds.setdefault((r["run_id"], r["scenario"]), set()).add(r["broker"])
    for r in rows:
        # A one-broker invocation (e.g. a profiling run) has nothing to compare against.
        if (r["scenario"].startswith("smoke-") or r["scenario"] not in ALL
                or len(kinds[(r["run_id"], r["scenario"])]) < 2):
            continue  # smoke, retired (e.g. latency-fixed-10k-1KiB-acksall) or one-broker runs
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


# Sections of BENCHMARKS.md written by hand by other owners (bench/cluster_failover.py and
# bench/failover_rf3.py figures): a regeneration keeps them as they are, after the notes.
KEPT_SECTIONS = ("## Cluster figures", "## Replication figures")


def kept_sections():
    """The KEPT_SECTIONS of the current BENCHMARKS.md, each up to the next `## ` heading."""
    if not os.path.exists(REPORT):
        return []
    with open(REPORT) as f:
        text = f.read()
    out = []
    for head in KEPT_SECTIONS:
        start = text.find("\n" + head)
        if start < 0:
            continue
        end = text.find("\n## ", start + 1)
        out.append(text[start + 1:end if end >= 0 else len(text)].rstrip() + "\n")
    return out


def saturated_label(rows):
    """The side saturated in most of these runs (see SATURATED_CORE_SHARE); '–' if unknown."""
    labels = [r["saturated"] for r in rows if r.get("ok") and r.get("saturated")]
    return max(set(labels), key=labels.count) if labels else "–"


def sc_rates(name):
    return ALL[name].get("rates", SWEEP_RATES)


def headline_tables(groups):
    """The issue-13 figures: native fixed-rate latency, the sweep's knee, the 3-broker rows."""
    out = []

    def med(rows, key):
        return summarize(rows, key)[0]

    def split(name):
        return ([r for r in groups[name] if r["broker"] == "josefine"],
                [r for r in groups[name] if r["broker"] == "kafka"])

    fixed = [s["name"] for s in CORE if s["kind"] == "load" and s["name"] in groups]
    if fixed:
        out.append("### Native fixed-rate latency (bench/load, open loop, from due time)\n")
        out.append("| scenario | offered rec/s | achieved J / K | J p50 / p99 / p99.9 µs | "
                   "K p50 / p99 / p99.9 µs | p99 J/K | MB per broker CPU-s J / K | load avg |")
        out.append("|---|---|---|---|---|---|---|---|")
        for name in fixed:
            j, k = split(name)
            lat = {b: " / ".join(fmt(med(rs, key)) for key in ("due_p50_us", "due_p99_us", "due_p999_us"))
                   for b, rs in (("j", j), ("k", k))}
            if name.endswith("-e2e"):
                lat = {b: v + " (e2e p99 " + fmt(med(rs, "e2e_p99_us")) + ")"
                       for (b, v), rs in zip(lat.items(), (j, k))}
            jp, kp = med(j, "due_p99_us"), med(k, "due_p99_us")
            out.append(f"| {name} | {ALL[name]['rate']:,} | {fmt(med(j, 'records_per_s'))} / "
                       f"{fmt(med(k, 'records_per_s'))} | {lat['j']} | {lat['k']} | "
                       f"{fmt(jp / kp) if jp and kp else '–'} | {fmt(med(j, 'mb_per_broker_cpu_s'))} / "
                       f"{fmt(med(k, 'mb_per_broker_cpu_s'))} | "
                       f"{max(r.get('loadavg_1m') or 0 for r in groups[name]):.1f} |")
        out.append("")
    sweeps = [s["name"] for s in CORE if s["kind"] == "sweep" and s["name"] in groups]
    for name in sweeps:
        j, k = split(name)
        out.append(f"### Rate sweep: highest rate with p99 < {SWEEP_P99_BOUND_US // 1000} ms "
                   f"({name})\n")
        out.append("| broker | knee records/s median [min–max] | MB/s at knee | p99 µs at knee | "
                   "first failing step: saturated side (runs) | MB per broker CPU-s at knee |")
        out.append("|---|---|---|---|---|---|")
        for b, rs in (("Josefine", j), ("Kafka", k)):
            m, lo, hi, n = summarize(rs, "knee_rate")
            stops = [f"{r['stopped_by']['why']}/{r['stopped_by']['saturated']} at "
                     f"{r['stopped_by']['rate']:,}" if r.get("stopped_by")
                     else "none (top rate passed)" for r in rs if r.get("ok")]
            # A knee of 0 (even the lowest rate missed the bound) has no figures "at the knee".
            at = [r for r in rs if r.get("knee_rate")]
            knee = (f"{fmt(m)} [{fmt(lo)}–{fmt(hi)}] n={n}" if m else
                    f"below {sc_rates(name)[0]:,} in {n} of {n} runs" if n else "–")
            out.append(f"| {b} | {knee} | {fmt(med(at, 'mb_per_s'))} | "
                       f"{fmt(med(at, 'due_p99_us'))} | {', '.join(stops) or '–'} | "
                       f"{fmt(med(at, 'mb_per_broker_cpu_s'))} |")
        out.append("")
    cl = [s["name"] for s in CLUSTER if s["name"] in groups]
    if cl:
        out.append("### Three brokers (Josefine ×3 vs Kafka ×3 on one core, bench/load)\n")
        out.append("Closed-loop MB/s (as fast as the client gets acknowledgements) and p99 at the "
                   "fixed rate (from due time); MB per broker CPU-s of the closed loop, the three "
                   "brokers' CPU summed.\n")
        out.append("| scenario | fixed rate rec/s | MB/s J / K (J/K) | p99 µs at fixed rate J / K | "
                   "MB per broker CPU-s J / K | saturated J / K | load avg |")
        out.append("|---|---|---|---|---|---|---|")
        for name in cl:
            j, k = split(name)
            jm, km = med(j, "mb_per_s"), med(k, "mb_per_s")
            out.append(f"| {name} | {ALL[name]['rate']:,} | {fmt(jm)} / {fmt(km)} "
                       f"({fmt(jm / km) if jm and km else '–'}) | {fmt(med(j, 'due_p99_us'))} / "
                       f"{fmt(med(k, 'due_p99_us'))} | {fmt(med(j, 'mb_per_broker_cpu_s'))} / "
                       f"{fmt(med(k, 'mb_per_broker_cpu_s'))} | {saturated_label(j)} / "
                       f"{saturated_label(k)} | "
                       f"{max(r.get('loadavg_1m') or 0 for r in groups[name]):.1f} |")
        out.append("")
        lines = []
        for size in ("1KiB", "64KiB"):
            rf3, rf1 = f"cluster-rf3-{size}-acksall", f"cluster-rf1-{size}-acksall"
            if rf3 in groups and rf1 in groups:
                for b in ("josefine", "kafka"):
                    r3 = [r for r in groups[rf3] if r["broker"] == b]
                    r1 = [r for r in groups[rf1] if r["broker"] == b]
                    t3, t1 = med(r3, "mb_per_s"), med(r1, "mb_per_s")
                    c3, c1 = med(r3, "mb_per_broker_cpu_s"), med(r1, "mb_per_broker_cpu_s")
                    if t3 and t1 and c3 and c1:
                        lines.append(f"- {b}, {size}, acks=all: RF=3 moves {fmt(t3 / t1)}× the "
                                     f"RF=1 throughput at {fmt(c1 / c3)}× the broker CPU per byte.")
        if lines:
            out.append("Cost of RF=3 against RF=1 on the same 3 brokers (medians):\n")
            out += lines + [""]
    return out


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
           "bench/run --cluster    # the 3-broker RF=3 / RF=1 scenarios only\n"
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
           "- Native fixed rate (`fixed-*`): `bench/load` (Go, franz-go; built by the harness into "
           "`.cache/bench-load`), open loop: record i is due at start + i/rate and its latency "
           "counts from that due time to its acknowledgement (no coordinated omission; the "
           "client's own lateness is reported as send lag). 2 s unmeasured warm-up, 10 s "
           "measured, one producer client, 1 KiB records of random letters, no compression, "
           "franz-go's sticky partitioner, idempotent with acks=all. Latencies from an HDR "
           "histogram (hdrhistogram-go, 3 significant digits), in µs.\n"
           f"- Rate sweep (`sweep-*`): the same load at {', '.join(f'{r // 1000}k' for r in SWEEP_RATES)} "
           f"records/s (4 s each) until a step has p99 ≥ {SWEEP_P99_BOUND_US // 1000} ms, achieves "
           f"under {SWEEP_MIN_ACHIEVED:.0%} of the offered rate, or has an error; the knee is the "
           "last step that passed (0 when even the first failed), and the table names the core "
           "that was saturated at the first that failed.\n"
           "- Saturation: the broker's CPU (utime+stime from /proc) and the load tool's (the "
           "reaped child's rusage) over the run's wall time, as a share of the one core each is "
           f"pinned to; ≥ {SATURATED_CORE_SHARE:.0%} is saturated. Rows of the Java "
           "ProducerPerformance whose client is saturated are labelled client-bound.\n"
           "- Three brokers (`cluster-*`): three nodes of each broker on the broker core (Josefine "
           "with `--voters`; Kafka through `scripts/kafka-reference`, the test suite's KRaft "
           "combined nodes with -Xmx768m), 6 partitions, `min.insync.replicas=2`; per run a "
           "fixed-rate phase (p99 from due time) and a closed-loop phase (`-rate 0`: MB/s), "
           "8 s each after 2 s of warm-up, each on a new topic.\n"
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
    out += kept_sections()
    out.append("## Results\n")
    if not groups:
        out.append("No results yet.\n")
    out += headline_tables(groups)
    order = [s["name"] for s in CORE + EXTENDED + CLUSTER]
    names = sorted(groups, key=lambda n: order.index(n) if n in order else 999)
    if names:
        out.append("### Summary (medians; J/K = Josefine / Kafka)\n")
        out.append("MB per broker CPU-s = bytes moved per second of broker CPU (the inverse of CPU "
                   "s/GB): the broker-capacity figure. \"saturated\" is the side that used at least "
                   f"{SATURATED_CORE_SHARE:.0%} of its pinned core in most runs (from /proc); a "
                   "client-bound row's MB/s measure the client, not the broker.\n")
        out.append("| scenario | load avg | MB/s J / K (J/K) | p99 J / K | MB per broker CPU-s J / K "
                   "(J/K) | saturated J / K | peak RSS MB J / K | ready s J / K |")
        out.append("|---|---|---|---|---|---|---|---|")
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

            lat = (pair("due_p99_us") + " µs from due") if summarize(j, "due_p99_us")[3] else (
                pair("e2e_p99_us") + " µs e2e") if summarize(j, "e2e_p99_us")[3] else (
                pair("lat_p99_ms") + " ms" if summarize(j, "lat_p99_ms")[3] else "–")
            load = max((r.get("loadavg_1m") or 0) for r in groups[name])
            sat = f"{saturated_label(j)} / {saturated_label(k)}"
            label = name + (" (client-bound)" if "client" in (saturated_label(j), saturated_label(k))
                            and groups[name][0]["params"]["kind"] == "produce" else "")
            out.append(f"| {label} | {load:.1f} | {pair('mb_per_s', True)} | {lat} | "
                       f"{pair('mb_per_broker_cpu_s', True)} | {sat} | {pair('peak_rss_mb')} | "
                       f"{pair('ready_s')} |")
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
        sats = [f"{r['broker']} #{r['run']}: {r['saturated']}" for r in rows_s if r.get("saturated")]
        if sats:
            out.append(f"\nSaturated side per run (≥ {SATURATED_CORE_SHARE:.0%} of its core): "
                       + ", ".join(sats) + ".")
        for r in rows_s:
            if r.get("sweep_steps"):
                steps = " → ".join(f"{st['rate']:,}: p99 {st['p99_us']:,} µs" for st in r["sweep_steps"])
                out.append(f"\nSweep {r['broker']} #{r['run']}: {steps}"
                           + (f" (stopped: {r['stopped_by']['why']}, saturated "
                              f"{r['stopped_by']['saturated']})" if r.get("stopped_by") else "") + ".")
        loads = sorted({r["uptime"] for r in rows_s if r.get("uptime")})
        if loads:
            out.append("\n`/proc/loadavg` after each run: " + "; ".join(f"`{u}`" for u in loads) + ".")
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
    ap.add_argument("--cluster", action="store_true", help="the 3-broker RF=3/RF=1 scenarios")
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
        for group, items in (("core", CORE), ("extended", EXTENDED), ("cluster", CLUSTER),
                             ("smoke", SMOKE)):
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
        chosen = ([] if args.cluster else CORE) + (EXTENDED if args.extended else []) + (
            CLUSTER if args.cluster else [])
    args.pin = args.pin and (os.cpu_count() or 1) >= 2 and shutil.which("taskset") is not None

    ensure_deps()
    args.josefine_bin = os.environ.get("JOSEFINE_BIN") or build_josefine()
    if any(s["kind"] in ("load", "sweep", "cluster-load") for s in chosen):
        build_load()
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

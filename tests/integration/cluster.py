"""Multi-broker clusters for the cluster tests (test_cluster_*.py, issue 10).

Owns: starting N brokers that form one cluster (josefine: `--voters`; Kafka: 3 KRaft combined
nodes through scripts/kafka-reference, which takes the same flags) on free loopback ports, in
a random start order; per-node SIGKILL / SIGTERM / SIGSTOP / SIGCONT and restart on the same
data dir; what a test needs to look at the cluster from one chosen node (raw Metadata with
leader epochs, kcat -L, the controller); and waits that fail with what was last seen.
Must never leave a process running after a test (teardown SIGKILLs every node, paused or
not), and never decide a test by sleeping: every wait polls a condition with a deadline.

The controller: Josefine's is the chain leader, printed by `josefine cluster-status --raft
ADDR`; Kafka's is the KRaft quorum leader, which only the leader itself reports as such
(DescribeQuorum on a CONTROLLER listener; the others answer NOT_LEADER_OR_FOLLOWER). Kafka's
Metadata `controller_id` is a random live broker, so it is not the controller there.
"""

import base64
import json
import os
import random
import re
import shutil
import signal
import subprocess
import tempfile
import time
import uuid
from collections import Counter
from pathlib import Path

import pytest

import wire
from conftest import BROKER_KIND, REPO_ROOT, Broker, josefine_bin

# Kafka setting names; both brokers accept them. A short session so that fencing tests take
# seconds (the defaults are 9000 / 2000 ms); RF=1 internal topics (issue 10 is RF=1).
SESSION_TIMEOUT_MS = 3000
HEARTBEAT_INTERVAL_MS = 500
CLUSTER_SETTINGS = {
    "broker.session.timeout.ms": str(SESSION_TIMEOUT_MS),
    "broker.heartbeat.interval.ms": str(HEARTBEAT_INTERVAL_MS),
    "offsets.topic.replication.factor": "1",
    "auto.create.topics.enable": "true",
    "num.partitions": "1",
    "group.initial.rebalance.delay.ms": "0",
}
# Generous deadlines for a 2-core machine shared with Rust builds; the figures script
# measures the real times.
FORM_TIMEOUT_S = 120.0
WAIT_S = 60.0


def wait_until(condition, what: str, timeout_s: float = WAIT_S, interval_s: float = 0.1):
    """Poll `condition()` until it returns something truthy and return that. An exception
    counts as "not yet" (the last one is reported). On timeout: AssertionError naming `what`
    and the last value or exception seen."""
    deadline = time.monotonic() + timeout_s
    last = None
    while True:
        try:
            value = condition()
            if value:
                return value
            last = value
        except Exception as exc:  # noqa: BLE001 - not yet; reported on timeout
            last = f"{type(exc).__name__}: {exc}"
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not reached within {timeout_s:.0f} s; last seen: {last}")
        time.sleep(interval_s)


def kafka_cluster_id() -> str:
    """A cluster id both brokers accept: a 22-character base64 UUID, as Kafka wants, not
    starting with '-' (which a command line would take for a flag; Kafka avoids it too)."""
    while True:
        cid = base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode()
        if cid[0] != "-":
            return cid


def josefine_status(raft_addr: str, timeout_s: float = 5.0) -> dict:
    """`josefine cluster-status --raft ADDR`, parsed loosely (the document is for people):
    {"raw", "leader", "term", "position", "digest", "image"}, None where it has no such thing.
    Recognised, in any case, with or without a colon: `leader 2` at the start of a line
    (`chain leader`, `none ...` when there is none), `term 5`, `position 123`, `digest 1f...`;
    "image" is the text from the line naming the position to the end (the image's brokers
    and partitions as the node prints them)."""
    proc = subprocess.run([str(josefine_bin()), "cluster-status", "--raft", raft_addr],
                          capture_output=True, timeout=timeout_s)
    if proc.returncode != 0:
        raise RuntimeError(f"cluster-status --raft {raft_addr} exited {proc.returncode}: "
                           f"{proc.stderr.decode(errors='replace').strip()}")
    return parse_status(proc.stdout.decode(errors="replace"))


def parse_status(text: str) -> dict:
    """The fields of a cluster-status document (see josefine_status)."""
    def field(pattern, conv=int):
        m = re.search(pattern, text, re.IGNORECASE | re.MULTILINE)
        if m is None or m.group(1).lower() in ("none", "-1", "unknown"):
            return None
        return conv(m.group(1))

    image = re.search(r"^[^\n]*\bposition\b", text, re.IGNORECASE | re.MULTILINE)
    return {
        "raw": text,
        "image": text[image.start():] if image else None,
        "leader": field(r"^\s*(?:chain\s+)?leader(?:\s+id)?\s*[:=]?\s*(-?\d+|none|unknown)\b"),
        "term": field(r"\bterm\s*[:=]?\s*(\d+)"),
        "position": field(r"\bposition\s*[:=]?\s*(\d+)"),
        "digest": field(r"\bdigest\s*[:=]?\s*((?:0x)?[0-9a-f]+)\b", str),
    }


# InitProducerId errors a client retries (Kafka answers COORDINATOR_LOAD_IN_PROGRESS while a
# broker fetches its next block of ids from the controller, KAFKA-14694).
INIT_PID_RETRIABLE = {wire.COORDINATOR_LOAD_IN_PROGRESS, wire.COORDINATOR_NOT_AVAILABLE,
                      wire.NOT_COORDINATOR, wire.REQUEST_TIMED_OUT}


def init_producer_ids(node, count: int, timeout_s: float = 120, ready=None):
    """`count` producer ids from InitProducerId requests to `node` (one connection, waiting
    for `ready` (an Event) first if given); returns (ids, Counter of retried errors). Any
    other error, or no ids within `timeout_s`, fails."""
    ids, retried = [], Counter()
    with wire.Connection(node.host, node.port) as conn:
        if ready is not None:
            ready.wait()
        deadline = time.monotonic() + timeout_s
        while len(ids) < count:
            error, pid, epoch = conn.init_producer_id()
            if error == wire.NONE:
                assert pid >= 0 and epoch == 0, f"{node}: producer id {pid} epoch {epoch}"
                ids.append(pid)
                continue
            retried[error] += 1
            assert error in INIT_PID_RETRIABLE, f"{node}: InitProducerId error {error}"
            assert time.monotonic() < deadline, f"{node}: {len(ids)} of {count} ids after {timeout_s} s ({retried})"
            time.sleep(0.01)
    return ids, retried


def kcat_metadata(bootstrap: str) -> dict:
    proc = subprocess.run(["kcat", "-b", bootstrap, "-L", "-J", "-m", "15"], capture_output=True, timeout=60)
    assert proc.returncode == 0, f"kcat -L -b {bootstrap} exited {proc.returncode}: {proc.stderr.decode(errors='replace')}"
    return json.loads(proc.stdout)


class ClusterNode(Broker):
    """One node of a cluster: broker + voter (Kafka: combined broker,controller)."""

    def __init__(self, cluster, node_id: int, data_dir: Path, settings: dict, rack=None):
        super().__init__(data_dir, settings)
        self.cluster = cluster
        self.node_id = node_id
        self.rack = rack
        self.paused = False

    @property
    def raft_addr(self) -> str:
        return f"{self.host}:{self.raft_port}"

    def command(self) -> list:
        cmd = super().command()
        cmd[cmd.index("--node-id") + 1] = str(self.node_id)
        cmd += ["--voters", self.cluster.voters, "--cluster-id", self.cluster.cluster_id]
        if self.rack is not None:
            cmd += ["--rack", self.rack]
        return cmd

    @property
    def running(self) -> bool:
        """Alive and not paused: able to answer."""
        return self.proc is not None and self.proc.poll() is None and not self.paused

    def start(self):
        """Start and wait until this node answers and every running node lists it (a lone
        voter may wait for its peers: `spawn()` starts without waiting)."""
        super().start()
        self.cluster.wait_formed()

    def stop(self, sig=signal.SIGTERM):
        if self.paused and self.proc is not None and sig != signal.SIGKILL:
            self.resume()
        code = super().stop(sig)
        self.paused = False
        return code

    def pause(self):
        os.kill(self.proc.pid, signal.SIGSTOP)
        self.paused = True

    def resume(self):
        os.kill(self.proc.pid, signal.SIGCONT)
        self.paused = False

    def metadata(self, topics=None) -> dict:
        """Raw Metadata v12 answered by this node (see wire.Connection.metadata)."""
        with wire.Connection(self.host, self.port) as conn:
            return conn.metadata(topics)

    def __repr__(self):
        return f"node {self.node_id} ({self.bootstrap})"


class Cluster:
    def __init__(self, root: Path, n: int = 3, settings=None, racks=None, cluster_id=None):
        self.kind = BROKER_KIND
        self.root = root
        root.mkdir(parents=True, exist_ok=True)
        self.cluster_id = cluster_id or kafka_cluster_id()
        merged = dict(CLUSTER_SETTINGS)
        merged.update({k: str(v).lower() if isinstance(v, bool) else str(v) for k, v in (settings or {}).items()})
        self.settings = merged
        self.nodes = [ClusterNode(self, i, root / f"node-{i}", merged, racks[i - 1] if racks else None)
                      for i in range(1, n + 1)]
        self.voters = ",".join(f"{n.node_id}@{n.raft_addr}" for n in self.nodes)
        self.start_order = None

    # --- life cycle -----------------------------------------------------------------------

    def start(self, order=None, gap_s: float = 0.0):
        """Start every node in `order` (node ids; default random), `gap_s` apart, then wait
        until the cluster has formed."""
        self.start_order = list(order) if order else random.sample([n.node_id for n in self.nodes], len(self.nodes))
        print(f"start order: {self.start_order}")
        try:
            for i, node_id in enumerate(self.start_order):
                if i and gap_s:
                    time.sleep(gap_s)
                self.node(node_id).spawn()
            for node in self.nodes:
                node._wait_ready()
            self.wait_formed(FORM_TIMEOUT_S)
        except BaseException:
            print(f"cluster did not form (start order {self.start_order}):\n{self.log_tails()}")
            raise
        return self

    def wait_formed(self, timeout_s: float = WAIT_S):
        """Every running node answers Metadata listing exactly the running nodes (so every
        broker is registered and unfenced) with their listen addresses."""
        def formed():
            live = self.running()
            want = {n.node_id: (n.host, n.port) for n in live}
            for n in live:
                seen = {b: (h, p) for b, (h, p, _) in n.metadata()["brokers"].items()}
                if seen != want:
                    return False
            return True

        wait_until(formed, f"all of {self.running()} list each other as brokers", timeout_s, 0.2)

    def close(self):
        for node in self.nodes:
            if node.proc is not None and node.proc.poll() is None:
                node.proc.kill()
                node.proc.wait()
            node.proc = None
            node.paused = False

    def log_tails(self, lines: int = 60) -> str:
        return "\n".join(f"---- {n.kind} node {n.node_id} log {n.log_path} ----\n{n.log_tail(lines)}"
                         for n in self.nodes)

    # --- looking at it ----------------------------------------------------------------------

    def node(self, node_id: int) -> ClusterNode:
        return self.nodes[node_id - 1]

    def running(self, exclude=()) -> list:
        exclude_ids = {getattr(n, "node_id", n) for n in exclude}
        return [n for n in self.nodes if n.running and n.node_id not in exclude_ids]

    def bootstrap(self, nodes=None) -> str:
        return ",".join(n.bootstrap for n in (nodes if nodes is not None else self.nodes))

    def controller(self, among=None):
        """The controller's node id as the running nodes (or `among`) report it now, or None.
        Josefine: the chain leader all answering nodes agree on; Kafka: the KRaft leader."""
        nodes = among if among is not None else self.running()
        if self.kind == "kafka":
            for n in nodes:
                try:
                    with wire.Connection(n.host, n.raft_port, timeout_s=2.0) as conn:
                        error, leader, _ = conn.describe_quorum()
                except OSError:
                    continue
                if error == wire.NONE:
                    return leader
            return None
        leaders = Counter()
        for n in nodes:
            try:
                leaders[josefine_status(n.raft_addr)["leader"]] += 1
            except (OSError, RuntimeError, subprocess.TimeoutExpired):
                continue
        if len(leaders) == 1:
            (leader,) = leaders
            return leader
        return None

    def wait_controller(self, among=None, exclude=(), timeout_s: float = WAIT_S) -> int:
        """Wait until the nodes agree on a running controller not in `exclude`."""
        running_ids = {n.node_id for n in (among or self.running())}

        def found():
            c = self.controller(among)
            return c if c in running_ids and c not in exclude else None

        return wait_until(found, f"a controller among {sorted(running_ids - set(exclude))}", timeout_s)

    def wait_topic(self, topic: str, partitions: int, nodes=None, timeout_s: float = 30) -> dict:
        """Wait until every running node (or `nodes`) reports `topic` with `partitions`
        partitions, each led by a listed broker, all agreeing; returns {partition: (leader,
        leader_epoch)}. Metadata reaches each broker on its own, a moment apart."""
        def agreed():
            views = []
            for n in nodes or self.running():
                md = n.metadata([topic])
                t = md["topics"][topic]
                if t["error"] != wire.NONE or len(t["partitions"]) != partitions:
                    return None
                if any(v["leader"] not in md["brokers"] for v in t["partitions"].values()):
                    return None
                views.append({p: (v["leader"], v["leader_epoch"]) for p, v in t["partitions"].items()})
            return views[0] if all(v == views[0] for v in views) else None

        return wait_until(agreed, f"{topic} with {partitions} led partitions on every broker", timeout_s)

    def leaders(self, topic: str, via: ClusterNode) -> dict:
        """{partition: (leader, leader_epoch)} of `topic` as `via` reports it."""
        md = via.metadata([topic])["topics"][topic]
        assert md["error"] == wire.NONE, f"{via}: Metadata error {md['error']} for {topic}"
        return {p: (v["leader"], v["leader_epoch"]) for p, v in md["partitions"].items()}


def comparable(md: dict, kind: str = BROKER_KIND) -> dict:
    """The part of a Metadata answer every broker must agree on. Kafka's controller_id is a
    random live broker per answer, so it is only compared for Josefine (the chain leader)."""
    out = dict(md)
    if kind == "kafka":
        out.pop("controller_id")
    return out


def _tmp_root(prefix: str) -> Path:
    return Path(tempfile.mkdtemp(prefix=prefix))


def _finish(clusters, root: Path, failed: bool):
    for c in clusters:
        c.close()
    if failed:
        for c in clusters:
            print(f"\n{c.log_tails()}")
    if failed or os.environ.get("KEEP_BROKER_DATA"):
        print(f"cluster data kept in {root}")
    else:
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def cluster_factory(request):
    """`cluster_factory(n=3, settings={...}, racks=[...], order=[...], gap_s=0)`: a started
    private cluster (Kafka setting names); every node is killed at teardown and the logs are
    printed when the test failed."""
    root = _tmp_root("josefine-it-cluster-")
    clusters = []

    def make(n=3, settings=None, racks=None, order=None, gap_s=0.0, start=True):
        c = Cluster(root / f"cluster-{len(clusters) + 1}", n, settings, racks)
        clusters.append(c)
        return c.start(order, gap_s) if start else c

    try:
        yield make
    finally:
        rep = getattr(request.node, "rep_call", None)
        _finish(clusters, root, failed=rep is not None and rep.failed)


# The shared cluster lives from the first test that asks for it to the last one in a row
# that does (the cluster tests that use it are run first, see below), so that it is not
# running beside the private clusters of the later tests.
_shared = {"cluster": None, "root": None, "failed": False}


def _close_shared():
    if _shared["cluster"] is not None:
        _finish([_shared["cluster"]], _shared["root"], _shared["failed"])
    _shared.update(cluster=None, root=None, failed=False)


@pytest.fixture
def shared_cluster(request):
    """One 3-node cluster for the tests that do not stop, pause or kill nodes."""
    if _shared["cluster"] is None:
        root = _tmp_root("josefine-it-shared-cluster-")
        _shared.update(cluster=Cluster(root / "cluster", 3), root=root, failed=False)
        try:
            _shared["cluster"].start()
        except BaseException:
            _shared["failed"] = True
            _close_shared()
            raise
    yield _shared["cluster"]
    rep = getattr(request.node, "rep_call", None)
    if rep is not None and rep.failed:
        _shared["failed"] = True


def pytest_collection_modifyitems(session, config, items):
    """Cluster tests after the others, those on the shared cluster first among them (a
    stable sort: the order within each group is unchanged)."""
    items.sort(key=lambda it: (it.get_closest_marker("cluster") is not None,
                               "shared_cluster" not in getattr(it, "fixturenames", ())))


@pytest.hookimpl(trylast=True)
def pytest_runtest_teardown(item, nextitem):
    if nextitem is None or "shared_cluster" not in getattr(nextitem, "fixturenames", ()):
        _close_shared()


__all__ = ["Cluster", "ClusterNode", "CLUSTER_SETTINGS", "SESSION_TIMEOUT_MS", "wait_until",
           "josefine_status", "kcat_metadata", "comparable", "cluster_factory", "shared_cluster",
           "REPO_ROOT"]

"""Broker fixtures for the real-client integration suite.

Owns: starting a broker process (the `josefine` binary, or real Apache Kafka via
scripts/kafka-reference when BROKER=kafka) on free loopback ports with a temp data dir,
waiting until it answers ApiVersions, and SIGTERM/SIGKILL/restart on the same data dir.
Must never leave a broker running after a test: every process started here is killed at
teardown, even when the test fails. The same tests run against both brokers so that each
one is known to be right (it passes on Kafka) before it judges Josefine.

Environment:
  BROKER=josefine|kafka  which broker to start (default josefine)
  JOSEFINE_BIN           path to the josefine binary (default: $CARGO_TARGET_DIR or
                         target/, then debug/josefine)
  KAFKA_LIBS             Kafka jars (default .cache/kafka-libs)
"""

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid
from pathlib import Path

import pytest

import wire

# Multi-broker clusters (cluster_factory, shared_cluster) for the test_cluster_*.py tests.
pytest_plugins = ["cluster"]

REPO_ROOT = Path(__file__).resolve().parents[2]
KAFKA_LIBS = Path(os.environ.get("KAFKA_LIBS", REPO_ROOT / ".cache" / "kafka-libs"))
BROKER_KIND = os.environ.get("BROKER", "josefine")
# Kafka's JVM needs a few seconds; a debug josefine well under one. Generous for a busy 2-core box.
START_TIMEOUT_S = 90.0
STOP_TIMEOUT_S = 30.0


def josefine_bin() -> Path:
    if os.environ.get("JOSEFINE_BIN"):
        return Path(os.environ["JOSEFINE_BIN"])
    target = Path(os.environ.get("CARGO_TARGET_DIR", REPO_ROOT / "target"))
    return target / "debug" / "josefine"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Broker:
    """One broker process on fixed ports and a data dir that outlive restarts."""

    def __init__(self, data_dir: Path, settings: dict):
        self.kind = BROKER_KIND
        self.data_dir = data_dir
        self.settings = dict(settings)
        self.host = "127.0.0.1"
        self.port = free_port()
        self.raft_port = free_port()
        self.proc = None
        self.starts = 0
        # Flags beyond the ones every broker gets (e.g. --advertise); kept across restarts.
        self.extra_args = []
        self.log_path = data_dir.parent / f"{data_dir.name}.log"

    @property
    def bootstrap(self) -> str:
        return f"{self.host}:{self.port}"

    def command(self) -> list:
        if self.kind == "kafka":
            exe = [str(REPO_ROOT / "scripts" / "kafka-reference")]
        elif self.kind == "josefine":
            exe = [str(josefine_bin())]
        else:
            raise ValueError(f"BROKER must be josefine or kafka, not {self.kind!r}")
        cmd = exe + [
            "--node-id", "1",
            "--data-dir", str(self.data_dir),
            "--listen", self.bootstrap,
            "--raft-listen", f"{self.host}:{self.raft_port}",
        ]
        for key, value in self.settings.items():
            cmd += ["--set", f"{key}={value}"]
        return cmd + self.extra_args

    def start(self):
        self.spawn()
        self._wait_ready()

    def spawn(self):
        """Start the process without waiting for it to answer."""
        assert self.proc is None, "broker already running"
        if self.kind == "josefine" and not josefine_bin().exists():
            pytest.fail(f"josefine binary not found at {josefine_bin()} (build it or set JOSEFINE_BIN)")
        self.starts += 1
        log = open(self.log_path, "ab")
        log.write(f"\n==== start #{self.starts}: {' '.join(self.command())}\n".encode())
        log.flush()
        env = dict(os.environ)
        env.setdefault("RUST_LOG", "info")
        env.setdefault("NO_COLOR", "1")  # plain text in the broker log file
        self.proc = subprocess.Popen(
            self.command(), stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            env=env, start_new_session=True,
        )
        log.close()

    def _wait_ready(self):
        deadline = time.monotonic() + START_TIMEOUT_S
        last_error = None
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                pytest.fail(f"{self.kind} exited with {self.proc.returncode} during start-up:\n{self.log_tail()}")
            try:
                _, error_code, ranges = wire.api_versions(self.host, self.port, version=0, timeout_s=2.0)
                if error_code == 0 and ranges:
                    if self.kind == "kafka":
                        self._wait_kafka_serving()
                    return
                last_error = f"ApiVersions error {error_code}"
            except OSError as exc:
                last_error = repr(exc)
            time.sleep(0.1)
        self.kill()
        pytest.fail(f"{self.kind} not ready after {START_TIMEOUT_S}s ({last_error}):\n{self.log_tail()}")

    def _wait_kafka_serving(self):
        # Kafka answers ApiVersions before its first metadata image is loaded; Metadata then
        # lists no brokers for a moment. Josefine has no such window, so only Kafka waits.
        from confluent_kafka.admin import AdminClient

        admin = AdminClient({"bootstrap.servers": self.bootstrap})
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            try:
                if admin.list_topics(timeout=5).brokers:
                    return
            except Exception:  # noqa: BLE001 - any failure here just means not yet
                pass
            time.sleep(0.2)

    def stop(self, sig=signal.SIGTERM):
        """Stop with `sig`; SIGTERM must be a clean shutdown, SIGKILL is a crash."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            os.kill(self.proc.pid, sig)
        try:
            code = self.proc.wait(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            self.proc = None
            pytest.fail(f"{self.kind} did not exit within {STOP_TIMEOUT_S}s of {sig!r}:\n{self.log_tail()}")
        self.proc = None
        return code

    def kill(self):
        return self.stop(signal.SIGKILL)

    def restart(self, sig=signal.SIGTERM):
        code = self.stop(sig)
        self.start()
        return code

    def log_tail(self, lines=40) -> str:
        try:
            text = self.log_path.read_text(errors="replace").splitlines()
        except FileNotFoundError:
            return "(no log)"
        return "\n".join(text[-lines:])


class BrokerFactory:
    def __init__(self, root: Path):
        self.root = root
        self.brokers = []

    def __call__(self, **settings) -> Broker:
        defaults = {"auto.create.topics.enable": "true", "num.partitions": "1"}
        defaults.update({k.replace("_", "."): str(v).lower() if isinstance(v, bool) else str(v)
                         for k, v in settings.items()})
        data_dir = self.root / f"broker-{len(self.brokers) + 1}"
        broker = Broker(data_dir, defaults)
        self.brokers.append(broker)
        broker.start()
        return broker

    def close(self):
        for broker in self.brokers:
            if broker.proc is not None and broker.proc.poll() is None:
                broker.proc.kill()
                broker.proc.wait()
                broker.proc = None


def _tmp_root(prefix):
    return Path(tempfile.mkdtemp(prefix=prefix))


@pytest.fixture(scope="session")
def shared_broker(request):
    """One broker (auto-create on, 1 partition) for tests that do not restart it."""
    root = _tmp_root("josefine-it-shared-")
    factory = BrokerFactory(root)
    try:
        yield factory()
    finally:
        factory.close()
        _cleanup(root, request)


@pytest.fixture
def broker_factory(request):
    """Start private brokers: `broker_factory(num_partitions=3, ...)` (Kafka setting names
    with dots or underscores). Each test gets fresh data dirs; all are killed at teardown."""
    root = _tmp_root("josefine-it-")
    factory = BrokerFactory(root)
    try:
        yield factory
    finally:
        factory.close()
        failed = getattr(request.node, "rep_call", None) is not None and request.node.rep_call.failed
        if failed:
            for b in factory.brokers:
                print(f"\n---- {b.kind} log {b.log_path} ----\n{b.log_tail(60)}")
        _cleanup(root, request, keep=failed)


def _cleanup(root: Path, request, keep=False):
    if keep or os.environ.get("KEEP_BROKER_DATA"):
        print(f"broker data kept in {root}")
        return
    shutil.rmtree(root, ignore_errors=True)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    setattr(item, f"rep_{rep.when}", rep)


@pytest.fixture
def topic_name(request):
    """A topic name unique to this test, so tests can share one broker."""
    base = "".join(c if c.isalnum() else "-" for c in request.node.name)[:60]
    return f"{base}-{uuid.uuid4().hex[:8]}"


def pytest_report_header(config):
    where = josefine_bin() if BROKER_KIND == "josefine" else REPO_ROOT / "scripts" / "kafka-reference"
    return f"broker under test: {BROKER_KIND} ({where})"

"""Apache Kafka's own verifiable clients as a fault-suite workload (issue 11, fault 7;
cluster-design 3.3): `org.apache.kafka.tools.VerifiableProducer --acks -1` and
`VerifiableConsumer`, from the jars in .cache/kafka-libs (kafka-tools, installed by
scripts/install-test-deps from tests/java/pom.xml).

Owns: running both JVMs against a cluster, turning their JSON event lines into the history
the checker (fault_checker) judges, with the same interface as fault_workload.Workload
(`start`, `mark`, `wait_acks`, `stop`, `final_read`, `history`) so the same faults drive it:
  producer_send_success {partition, offset, value, timestamp} -> an acknowledgement
  producer_send_error {value, exception}                     -> a failed write
  record_data {partition, offset, value, timestamp} (--verbose) -> read during the faults
VerifiableProducer sets `retries=0`, then applies `--producer.config` on top: ours restores
Kafka's producer defaults for idempotence (`enable.idempotence=true`, retries MAX_INT, 120 s
delivery timeout), so this is the idempotent acks=all Java producer. It writes "0", "1", ...
(one writer, sent in that order) with the default partitioner. The consumer is a group member
(classic protocol) committing after each batch, reading from the earliest offset.
Must never: leave a JVM running (`stop()` sends SIGTERM, the tools' shutdown hooks close the
clients, then SIGKILL after a deadline), or take a line it cannot parse for an event.
"""

import json
import os
import signal
import subprocess
import threading
import time
from pathlib import Path

from cluster import REPO_ROOT

from fault_workload import final_read

KAFKA_LIBS = Path(os.environ.get("KAFKA_LIBS", REPO_ROOT / ".cache" / "kafka-libs"))
TOOLS = "org.apache.kafka.tools."
STOP_TIMEOUT_S = 60.0
PRODUCER_CONFIG = {
    "enable.idempotence": "true",
    "retries": "2147483647",
    "delivery.timeout.ms": "120000",
    "max.in.flight.requests.per.connection": "5",
    "linger.ms": "5",
}


def tools_available() -> str | None:
    """None if the kafka-tools jar with the verifiable clients is there, else why not."""
    jars = list(KAFKA_LIBS.glob("kafka-tools-*.jar"))
    if not jars:
        return f"no kafka-tools jar in {KAFKA_LIBS} (scripts/install-test-deps)"
    return None


class _Tool:
    """One tool JVM; `on_event(dict)` for each JSON line of its stdout."""

    def __init__(self, name: str, args: list, on_event, log_path: Path):
        self.name = name
        self.on_event = on_event
        self.events = 0
        self.bad_lines = []
        self.log = open(log_path, "ab")
        cmd = ["java", "-Xmx256m", "-cp", f"{KAFKA_LIBS}/*", TOOLS + name] + args
        self.log.write(f"==== {' '.join(cmd)}\n".encode())
        self.log.flush()
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=self.log, stdin=subprocess.DEVNULL,
                                     start_new_session=True)
        self.reader = threading.Thread(target=self._read, name=f"{name}-stdout", daemon=True)
        self.reader.start()

    def _read(self):
        for raw in self.proc.stdout:
            line = raw.decode(errors="replace").strip()
            if not line.startswith("{"):
                continue
            try:
                event = json.loads(line)
            except ValueError:
                self.bad_lines.append(line)
                continue
            self.events += 1
            self.on_event(event)

    def stop(self) -> int:
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
        try:
            code = self.proc.wait(STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            code = self.proc.wait()
        self.reader.join(10)
        self.log.close()
        return code

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


class JavaWorkload:
    """VerifiableProducer + VerifiableConsumer on `topic`, logs in `log_dir`."""

    def __init__(self, bootstrap: str, topic: str, partitions: int, log_dir: Path, throughput: int = 200):
        self.bootstrap = bootstrap
        self.topic = topic
        self.partitions = partitions
        self.log_dir = Path(log_dir)
        self.throughput = throughput
        self.acks_list, self.failed, self.concurrent, self.final, self.faults = [], [], [], [], []
        self.fatal = []
        self.final_ends = {}
        self.producer = self.consumer = None
        self.started_t = self.end_t = None
        self.producer_started = threading.Event()
        self.consumer_started = threading.Event()

    def _on_producer(self, e):
        name = e.get("name")
        if name == "startup_complete":
            self.producer_started.set()
        elif name == "producer_send_success":
            self.acks_list.append((e["partition"], e["offset"], e["value"], e["timestamp"] / 1000.0))
        elif name == "producer_send_error":
            self.failed.append((e.get("value"), e.get("exception"), e["timestamp"] / 1000.0))

    def _on_consumer(self, e):
        name = e.get("name")
        if name == "startup_complete":
            self.consumer_started.set()
        elif name == "record_data":
            self.concurrent.append((e["partition"], e["offset"], e["value"], e["timestamp"] / 1000.0))

    def start(self):
        self.log_dir.mkdir(parents=True, exist_ok=True)
        config = self.log_dir / "producer.properties"
        config.write_text("".join(f"{k}={v}\n" for k, v in PRODUCER_CONFIG.items()))
        self.started_t = time.time()
        self.producer = _Tool("VerifiableProducer", [
            "--bootstrap-server", self.bootstrap, "--topic", self.topic, "--acks", "-1",
            "--max-messages", "-1", "--throughput", str(self.throughput), "--producer.config", str(config),
        ], self._on_producer, self.log_dir / "verifiable-producer.log")
        self.consumer = _Tool("VerifiableConsumer", [
            "--bootstrap-server", self.bootstrap, "--topic", self.topic, "--group-id", f"verifiable-{self.topic}",
            "--reset-policy", "earliest", "--verbose",
        ], self._on_consumer, self.log_dir / "verifiable-consumer.log")
        return self

    def mark(self, name: str, partitions=None, t=None, heal: bool = False) -> float:
        """As Workload.mark; unavailability is measured on the acks of any partition: the
        sticky partitioner, not the fault, decides when a partition gets writes."""
        t = t if t is not None else time.time()
        self.faults.append({"name": name, "t": t, "partitions": list(partitions or []), "heal": heal,
                            "any_partition": True})
        print(f"fault {name} at +{t - self.started_t:.2f} s on partitions {list(partitions or [])}")
        return t

    def wait_acks(self, n: int, partition=None, since=None, sent_after=None, timeout_s: float = 60.0) -> float:
        """As Workload.wait_acks; `sent_after` is ignored (the tool prints no send times, so
        the first ack after a fault may be a write answered just before it: the checker's
        gap-based unavailability does not have that problem)."""
        since = since if since is not None else 0.0
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            got = sorted(t for p, _o, _v, t in list(self.acks_list)
                         if t >= since and (partition is None or p == partition))
            if len(got) >= n:
                return got[0]
            if self.producer.proc.poll() is not None:
                raise AssertionError(f"VerifiableProducer exited {self.producer.proc.returncode}; "
                                     f"see {self.log_dir / 'verifiable-producer.log'}")
            time.sleep(0.05)
        raise AssertionError(f"fewer than {n} VerifiableProducer acks on partition {partition} within "
                             f"{timeout_s} s (errors so far {len(self.failed)}: {self.failed[-3:]})")

    def stop(self):
        """SIGTERM the producer (its shutdown hook closes it: every send ends in an ack or an
        error), then the consumer."""
        try:
            code_p = self.producer.stop()
            self.end_t = time.time()
            time.sleep(2.0)  # the consumer reads the last writes
            code_c = self.consumer.stop()
        finally:
            self.producer.kill()
            self.consumer.kill()
        print(f"VerifiableProducer exit {code_p}: {len(self.acks_list)} acks, {len(self.failed)} errors; "
              f"VerifiableConsumer exit {code_c}: {len(self.concurrent)} records read "
              f"(bad lines: {self.producer.bad_lines[:2] + self.consumer.bad_lines[:2]})")
        assert not self.producer.bad_lines and not self.consumer.bad_lines

    def kill(self):
        for tool in (self.producer, self.consumer):
            if tool is not None:
                tool.kill()

    def final_read(self, timeout_s: float = 120.0):
        self.final, self.final_ends = final_read(self.bootstrap, self.topic, self.partitions, timeout_s)
        return self.final

    def history(self) -> dict:
        attempted = [v for _p, _o, v, _t in self.acks_list] + [v for v, _e, _t in self.failed]
        return {"acks": list(self.acks_list), "attempted": attempted, "concurrent": list(self.concurrent),
                "final": list(self.final), "faults": list(self.faults), "end_t": self.end_t}

"""Operating Josefine (issue 14): the HTTP listener's /metrics, /health and log output, with
real clients and the real binary.

Acceptance 1: /metrics parsed by prometheus_client's strict OpenMetrics parser; records_in
rises by exactly what confluent-kafka and kafka-python produced, bytes_in by the log's
growth, records_out by one read; Produce requests equal librdkafka's own request statistics;
a MESSAGE_TOO_LARGE counts once; 5 clients move
`connections` by 5; lag equals kafka-consumer-groups --describe; a deleted topic leaves no
series. Acceptance 3: health answers before the Kafka port serves; no ESC byte in redirected
logs; every JSON log line parses; a bad --log exits 2. Acceptance 5: huge headers,
slow-loris, 1,000 connections, garbage and a foreign Host are refused while a producer
alongside sees no error.

Josefine-only: Apache Kafka exports JMX, not /metrics or /health, so these tests skip when
BROKER=kafka (the lag check compares against Kafka's own tool instead).
"""

import json
import os
import socket
import subprocess
import tempfile
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from confluent_kafka import KafkaError, Producer, TopicPartition
from prometheus_client.openmetrics.parser import text_string_to_metric_families

import clients
import wire
from conftest import BROKER_KIND, KAFKA_LIBS, Broker, _cleanup, free_port, josefine_bin

pytestmark = pytest.mark.skipif(
    BROKER_KIND != "josefine",
    reason="Josefine-only: Apache Kafka exports JMX, not /metrics or /health")

SCRAPE_TIMEOUT_S = 10
# The group coordinator's figures refresh at most once a second (GROUP_STATS_INTERVAL_MS).
STATS_WAIT_S = 15


class OpsBroker(Broker):
    """A broker with its HTTP listener on a free loopback port."""

    def __init__(self, data_dir: Path, settings: dict):
        super().__init__(data_dir, settings)
        self.http_port = free_port()
        self.extra_args = ["--http-listen", f"127.0.0.1:{self.http_port}"]

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.http_port}{path}"


@pytest.fixture
def ops_factory(request):
    root = Path(tempfile.mkdtemp(prefix="josefine-ops-"))
    brokers = []

    def make(**settings):
        defaults = {"auto.create.topics.enable": "true", "num.partitions": "1",
                    "group.initial.rebalance.delay.ms": "0"}
        defaults.update({k.replace("_", "."): str(v) for k, v in settings.items()})
        b = OpsBroker(root / f"broker-{len(brokers) + 1}", defaults)
        brokers.append(b)
        b.start()
        return b

    try:
        yield make
    finally:
        for b in brokers:
            if b.proc is not None and b.proc.poll() is None:
                b.proc.kill()
                b.proc.wait()
        failed = getattr(request.node, "rep_call", None) is not None and request.node.rep_call.failed
        if failed:
            for b in brokers:
                print(f"\n---- log {b.log_path} ----\n{b.log_tail(60)}")
        _cleanup(root, request, keep=failed)


@pytest.fixture
def ops_broker(ops_factory):
    return ops_factory()


def http_get(url: str, timeout=SCRAPE_TIMEOUT_S):
    """(status, headers, body bytes); HTTP errors are answers too."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return r.status, {k.lower(): v for k, v in r.headers.items()}, r.read()
    except urllib.error.HTTPError as e:
        return e.code, {k.lower(): v for k, v in e.headers.items()}, e.read()


class Scrape:
    """One /metrics answer, parsed strictly: samples by (name, labels)."""

    def __init__(self, broker: OpsBroker):
        status, headers, body = http_get(broker.url("/metrics"))
        assert status == 200, (status, body[:200])
        assert headers["content-type"].startswith("application/openmetrics-text"), headers
        self.text = body.decode()
        self.samples = {}
        for family in text_string_to_metric_families(self.text):
            for s in family.samples:
                self.samples[(s.name, tuple(sorted(s.labels.items())))] = s.value

    def get(self, name: str, default=0.0, **labels) -> float:
        return self.samples.get((name, tuple(sorted(labels.items()))), default)

    def labelled(self, label: str, value: str) -> list:
        return [k for k in self.samples if (label, value) in k[1]]


def wait_for(condition, what: str, timeout_s: float = STATS_WAIT_S):
    deadline = time.monotonic() + timeout_s
    last = None
    while time.monotonic() < deadline:
        last = condition()
        if last:
            return last
        time.sleep(0.2)
    raise AssertionError(f"{what}: not within {timeout_s}s (last: {last!r})")


def log_bytes(broker: Broker, topic: str, partition: int = 0) -> int:
    d = broker.data_dir / f"{topic}-{partition}"
    return sum(f.stat().st_size for f in d.glob("*.log"))


# ---- Acceptance 1 ---------------------------------------------------------------------------

def test_traffic_counters_match_what_clients_did(ops_broker):
    from kafka import KafkaProducer

    bs = ops_broker.bootstrap
    topic = "ops-traffic"
    clients.create_topic(bs, topic)
    before = Scrape(ops_broker)
    size_before = log_bytes(ops_broker, topic)

    confluent_n, python_n = 500, 300
    producer = Producer({"bootstrap.servers": bs, "linger.ms": 5})
    log = clients.produce_all(producer, topic,
                              [(f"k{i}".encode(), b"v" * (i % 200), None) for i in range(confluent_n)])
    assert not log.errors()
    kp = KafkaProducer(bootstrap_servers=bs, linger_ms=5)
    for i in range(python_n):
        kp.send(topic, key=f"p{i}".encode(), value=b"w" * (i % 150), partition=0)
    kp.flush(timeout=60)
    kp.close()

    after = Scrape(ops_broker)
    growth = log_bytes(ops_broker, topic) - size_before
    delta = lambda name: after.get(name, topic=topic) - before.get(name, topic=topic)  # noqa: E731
    assert delta("josefine_topic_records_in_total") == confluent_n + python_n
    assert delta("josefine_topic_bytes_in_total") == growth > 0
    assert after.get("josefine_partition_size_bytes", topic=topic, partition="0") == \
        log_bytes(ops_broker, topic)
    assert after.get("josefine_partition_log_end_offset", topic=topic, partition="0") == \
        confluent_n + python_n
    # Every Produce request was timed (api and version labels from the request header).
    produce_count = sum(v for (name, labels), v in after.samples.items()
                        if name == "josefine_request_duration_seconds_count"
                        and ("api", "Produce") in labels)
    assert produce_count >= 2

    clients.read_partition(bs, topic, confluent_n + python_n)
    read = Scrape(ops_broker)
    assert read.get("josefine_topic_records_out_total", topic=topic) - \
        after.get("josefine_topic_records_out_total", topic=topic) == confluent_n + python_n
    assert read.get("josefine_topic_bytes_out_total", topic=topic) - \
        after.get("josefine_topic_bytes_out_total", topic=topic) == growth


def test_message_too_large_counts_once(ops_broker):
    bs = ops_broker.bootstrap
    topic = "ops-too-large"
    clients.create_topic(bs, topic, config={"max.message.bytes": "2000"})
    before = Scrape(ops_broker)
    # The client would send it (its own limit is higher); the broker refuses it.
    producer = Producer({"bootstrap.servers": bs, "message.max.bytes": 1_000_000,
                         "compression.type": "none"})
    log = clients.DeliveryLog()
    producer.produce(topic, value=b"x" * 20_000, partition=0, on_delivery=log)
    assert producer.flush(30) == 0
    assert [r[4].code() for r in log.reports] == [KafkaError.MSG_SIZE_TOO_LARGE]
    after = Scrape(ops_broker)
    key = dict(api="Produce", error="MESSAGE_TOO_LARGE")
    assert after.get("josefine_request_errors_total", **key) - \
        before.get("josefine_request_errors_total", **key) == 1


def test_produce_requests_equal_librdkafka_statistics(ops_broker):
    bs = ops_broker.bootstrap
    topic = "ops-produce-count"
    clients.create_topic(bs, topic)
    before = Scrape(ops_broker)
    stats = []
    producer = Producer({"bootstrap.servers": bs, "linger.ms": 2, "statistics.interval.ms": 100,
                         "stats_cb": lambda s: stats.append(json.loads(s))})
    log = clients.produce_all(producer, topic, [(None, b"r" * 100, None)] * 3000)
    assert not log.errors()
    time.sleep(0.5)
    producer.poll(0.5)
    sent = sum(b["req"].get("Produce", 0) for b in stats[-1]["brokers"].values())
    assert sent > 0
    after = Scrape(ops_broker)

    def produce_count(scrape):
        return sum(v for (name, labels), v in scrape.samples.items()
                   if name == "josefine_request_duration_seconds_count" and ("api", "Produce") in labels)
    assert produce_count(after) - produce_count(before) == sent


def test_fsyncs_are_timed(ops_factory):
    broker = ops_factory(log_flush_interval_messages=1)
    topic = "ops-fsync"
    clients.create_topic(broker.bootstrap, topic)
    before = Scrape(broker).get("josefine_log_flush_duration_seconds_count")
    producer = Producer({"bootstrap.servers": broker.bootstrap, "linger.ms": 0, "acks": "1"})
    for i in range(5):
        assert not clients.produce_all(producer, topic, [(None, b"sync", None)]).errors()
    after = Scrape(broker)
    assert after.get("josefine_log_flush_duration_seconds_count") - before >= 5
    assert after.get("josefine_log_flush_duration_seconds_sum") > 0


def test_interval_flushes_are_timed(ops_factory):
    """flush.ms: the log's own tick (LOG_TICK_INTERVAL_MS, 1 s) flushes a topic with flush.ms
    set, timed in the same histogram; without flush.ms or flush.messages nothing is flushed."""
    broker = ops_factory()
    clients.create_topic(broker.bootstrap, "ops-noflush")
    producer = Producer({"bootstrap.servers": broker.bootstrap, "linger.ms": 0, "acks": "1"})
    assert not clients.produce_all(producer, "ops-noflush", [(None, b"x", None)] * 3).errors()
    before = Scrape(broker).get("josefine_log_flush_duration_seconds_count")
    time.sleep(2.5)
    assert Scrape(broker).get("josefine_log_flush_duration_seconds_count") == before
    clients.create_topic(broker.bootstrap, "ops-flush-ms", config={"flush.ms": "100"})
    for _ in range(3):
        assert not clients.produce_all(producer, "ops-flush-ms", [(None, b"x", None)]).errors()
        time.sleep(1.2)
    after = Scrape(broker).get("josefine_log_flush_duration_seconds_count")
    assert after - before >= 3, (before, after)


def test_chain_latencies_and_forks(ops_broker):
    """Each CreateTopics commits a chain block: the proposal's commit and the store's persist
    are timed; a single node never forks."""
    before = Scrape(ops_broker)
    for i in range(3):
        clients.create_topic(ops_broker.bootstrap, f"ops-chain-{i}")
    after = Scrape(ops_broker)
    for name in ("josefine_chain_commit_duration_seconds", "josefine_chain_persist_duration_seconds"):
        assert after.get(name + "_count") - before.get(name + "_count") >= 3, name
        assert after.get(name + "_sum") > 0, name
    assert after.get("josefine_chain_forks", default=None) == 0


def api_versions_connection(broker: Broker) -> socket.socket:
    """A connection that has been served one request (so the broker has accepted it)."""
    s = socket.create_connection((broker.host, broker.port), timeout=10)
    s.sendall(wire._frame(18, 0, 1, b"", flexible=False))
    length = int.from_bytes(wire._recv_exact(s, 4), "big")
    wire._recv_exact(s, length)
    return s


def test_connections_follow_clients(ops_broker):
    before = Scrape(ops_broker)
    open_before = before.get("josefine_connections")
    conns = [api_versions_connection(ops_broker) for _ in range(5)]
    try:
        mid = Scrape(ops_broker)
        assert mid.get("josefine_connections") - open_before == 5
        assert mid.get("josefine_connections_accepted_total") - \
            before.get("josefine_connections_accepted_total") == 5
    finally:
        for c in conns:
            c.close()
    closed = lambda: Scrape(ops_broker).get("josefine_connections") == open_before  # noqa: E731
    wait_for(closed, "connections back to the count before")
    after = Scrape(ops_broker)
    key = dict(reason="client")
    assert after.get("josefine_connections_closed_total", **key) - \
        before.get("josefine_connections_closed_total", **key) == 5


def consumer_groups_describe(bootstrap: str, group: str) -> dict:
    """kafka-consumer-groups --describe: {partition: lag} from Kafka's own tool."""
    from test_groups_cli import by_partition, consumer_groups, table

    if not (KAFKA_LIBS / "kafka-tools-4.1.2.jar").exists():
        pytest.fail(f"Kafka CLI jars missing in {KAFKA_LIBS}: run scripts/install-test-deps")
    out = consumer_groups(bootstrap, "--describe", "--group", group)
    return {p: int(r["LAG"]) for p, r in by_partition(table(out, "GROUP")).items()}


def test_lag_matches_kafka_consumer_groups_and_deleted_topic_leaves_no_series(ops_broker):
    from groups_util import commit_without_joining

    bs = ops_broker.bootstrap
    topic, group = "ops-lag", "ops-lag-group"
    clients.create_topic(bs, topic, partitions=3)
    producer = Producer({"bootstrap.servers": bs})
    for p, n in {0: 10, 1: 20, 2: 30}.items():
        assert not clients.produce_all(producer, topic, [(None, b"x", None)] * n, partition=p).errors()
    commit_without_joining(bs, group, [TopicPartition(topic, 0, 3), TopicPartition(topic, 1, 20),
                                       TopicPartition(topic, 2, 7)])
    expected = consumer_groups_describe(bs, group)
    assert expected == {0: 7, 1: 0, 2: 23}

    def lag():
        s = Scrape(ops_broker)
        got = {p: s.get("josefine_consumer_group_lag", None, group=group, topic=topic,
                        partition=str(p)) for p in range(3)}
        return got if got == expected else None
    wait_for(lag, f"consumer_group_lag equal to kafka-consumer-groups ({expected})")
    s = Scrape(ops_broker)
    assert s.get("josefine_offset_commits_total") >= 3
    assert s.get("josefine_groups", state="Empty") >= 1

    admin = clients.admin(bs)  # kept alive until the future resolves
    futures = admin.delete_topics([topic], operation_timeout=30)
    futures[topic].result(timeout=30)
    wait_for(lambda: not Scrape(ops_broker).labelled("topic", topic),
             f"no series naming the deleted topic {topic}")


def test_partition_series_cap_is_reported(ops_factory):
    # With fewer partitions than the cap nothing is truncated (the cap itself is a named
    # limit; 2,000 partitions would take minutes to create on a debug build).
    broker = ops_factory()
    clients.create_topic(broker.bootstrap, "ops-cap", partitions=4)
    s = Scrape(broker)
    assert s.get("josefine_metrics_partitions_truncated", None) == 0
    assert all(s.get("josefine_partition_segments", None, topic="ops-cap", partition=str(p)) == 1
               for p in range(4))


# ---- Acceptance 3 ---------------------------------------------------------------------------

def test_health_answers_before_the_kafka_port_serves(tmp_path):
    """A node of a two-voter chain whose other voter never starts cannot elect: its image never
    catches up, so it never serves Kafka. /health answers all along."""
    port, raft, http, other = free_port(), free_port(), free_port(), free_port()
    cmd = [str(josefine_bin()), "--node-id", "1", "--data-dir", str(tmp_path / "d"),
           "--listen", f"127.0.0.1:{port}", "--raft-listen", f"127.0.0.1:{raft}",
           "--voters", f"1@127.0.0.1:{raft},2@127.0.0.1:{other}",
           "--http-listen", f"127.0.0.1:{http}"]
    log = open(tmp_path / "log", "wb")
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        url = f"http://127.0.0.1:{http}"
        wait_for(lambda: _answers(url + "/health/live") == 200, "/health/live 200", 30)
        status, _, body = http_get(url + "/health/ready")
        assert status == 503
        report = json.loads(body)
        assert report["ready"] is False
        assert report["checks"]["image_applied"] is False
        assert report["checks"]["kafka_listener"] is False
        with pytest.raises(OSError):
            wire.api_versions("127.0.0.1", port, version=0, timeout_s=1.0)
        assert Scrape(_Url(url)).get("josefine_connections", None) == 0
    finally:
        proc.kill()
        proc.wait()
        log.close()


class _Url:
    def __init__(self, base):
        self.base = base

    def url(self, path):
        return self.base + path


def _answers(url):
    try:
        return http_get(url, timeout=2)[0]
    except OSError:
        return None


def test_ready_once_served_and_offset_fetch_works_at_the_first_200(ops_broker):
    from groups_util import commit_without_joining

    bs = ops_broker.bootstrap
    topic = "ops-ready"
    clients.create_topic(bs, topic)
    groups = [f"ops-ready-{i}" for i in range(40)]
    for i, g in enumerate(groups):
        commit_without_joining(bs, g, [TopicPartition(topic, 0, i)])
    ops_broker.stop()
    ops_broker.spawn()
    url = ops_broker.url("/health/ready")
    deadline = time.monotonic() + 60
    while _answers(url) != 200:
        assert time.monotonic() < deadline, "never ready after a restart"
        time.sleep(0.02)
    # At the first 200 every __consumer_offsets partition is loaded: OffsetFetch answers at
    # once, without COORDINATOR_LOAD_IN_PROGRESS (confluent would retry that silently, so the
    # raw request is used).
    for i, g in enumerate(groups):
        assert offset_fetch(ops_broker, g, topic) == (0, i), g


def offset_fetch(broker: Broker, group: str, topic: str):
    """OffsetFetch v5 (non-flexible) for partition 0 of `topic` from the group's coordinator
    (a single broker coordinates every group): (error, committed offset)."""
    import struct

    def string(s):
        b = s.encode()
        return struct.pack(">h", len(b)) + b
    body = string(group) + struct.pack(">i", 1) + string(topic) + struct.pack(">ii", 1, 0)
    frame = wire._frame(9, 5, 1, body, flexible=False)
    resp = wire.round_trip(broker.host, broker.port, frame)
    # correlation id, throttle, topics[1]: name, partitions[1]: index, offset, epoch, metadata,
    # error; then the top-level error.
    pos = 4 + 4 + 4
    (name_len,) = struct.unpack_from(">h", resp, pos)
    pos += 2 + name_len + 4 + 4
    (offset, _epoch) = struct.unpack_from(">qi", resp, pos)
    pos += 12
    (meta_len,) = struct.unpack_from(">h", resp, pos)
    pos += 2 + max(meta_len, 0)
    (error,) = struct.unpack_from(">h", resp, pos)
    (top_error,) = struct.unpack_from(">h", resp, pos + 2)
    return (error or top_error, offset)


def _start_for_logs(tmp_path, *extra, env_extra=None):
    port, raft = free_port(), free_port()
    cmd = [str(josefine_bin()), "--data-dir", str(tmp_path / "d"), "--listen", f"127.0.0.1:{port}",
           "--raft-listen", f"127.0.0.1:{raft}", "--http-listen", "off", *extra]
    env = {k: v for k, v in os.environ.items() if k not in ("NO_COLOR", "RUST_LOG")}
    env.update(env_extra or {})
    out = tmp_path / "stderr"
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out, "wb") as f:
        proc = subprocess.Popen(cmd, stdout=f, stderr=f, env=env, start_new_session=True)
    return proc, port, out


def _run_until_ready_then_stop(tmp_path, *extra, env_extra=None):
    proc, port, out = _start_for_logs(tmp_path, *extra, env_extra=env_extra)
    try:
        wait_for(lambda: _api_versions_ok(port), "Kafka port serving", 60)
        # Something beyond start-up: a topic created by a client.
        clients.create_topic(f"127.0.0.1:{port}", "ops-logs")
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    return out.read_bytes()


def _api_versions_ok(port):
    try:
        return wire.api_versions("127.0.0.1", port, version=0, timeout_s=1.0)[1] == 0
    except OSError:
        return False


def test_redirected_text_logs_have_no_escape_bytes(tmp_path):
    text = _run_until_ready_then_stop(tmp_path)
    assert b"josefine ready" in text
    assert b"\x1b" not in text


def test_json_logs_parse_line_by_line(tmp_path):
    text = _run_until_ready_then_stop(tmp_path, "--log-format", "json")
    lines = text.decode().splitlines()
    assert len(lines) > 5
    for line in lines:
        obj = json.loads(line)
        assert {"timestamp", "level", "target", "fields"} <= obj.keys(), line
        assert obj["timestamp"].endswith("Z"), line
        assert "message" in obj["fields"], line
    assert any("created topic" in json.loads(line)["fields"]["message"] for line in lines)


def test_log_flag_beats_rust_log(tmp_path):
    text = _run_until_ready_then_stop(tmp_path, "--log", "warn", env_extra={"RUST_LOG": "debug"})
    assert b" INFO " not in text and b" DEBUG " not in text, text[:500]
    assert b"josefine ready" not in text


def test_bad_log_filter_exits_2(tmp_path):
    proc, _, out = _start_for_logs(tmp_path, "--log", "info,josefine=[[")
    assert proc.wait(timeout=30) == 2
    assert b"log" in out.read_bytes()


def test_explicit_http_address_taken_exits_naming_the_flag(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        addr = f"127.0.0.1:{taken.getsockname()[1]}"
        proc, _, out = _start_for_logs(tmp_path, "--http-listen", addr)
        assert proc.wait(timeout=30) != 0
        assert b"--http-listen" in out.read_bytes()


# ---- Acceptance 5 ---------------------------------------------------------------------------

def raw_http(broker: OpsBroker, data: bytes, timeout=15) -> bytes:
    with socket.create_connection(("127.0.0.1", broker.http_port), timeout=timeout) as s:
        s.sendall(data)
        chunks = []
        try:
            while True:
                c = s.recv(65536)
                if not c:
                    break
                chunks.append(c)
                if b"\r\n\r\n" in b"".join(chunks):
                    break
        except (ConnectionResetError, socket.timeout):
            pass
        return b"".join(chunks)


def status_of(answer: bytes) -> int:
    return int(answer.split(b" ", 2)[1]) if answer.startswith(b"HTTP/1.1 ") else -1


class BackgroundProducer(threading.Thread):
    """Produces one record every few milliseconds until stopped; keeps every delivery error."""

    def __init__(self, bootstrap, topic):
        super().__init__(daemon=True)
        self.producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 1,
                                  "message.timeout.ms": 30000})
        self.topic = topic
        self.stop_flag = threading.Event()
        self.log = clients.DeliveryLog()

    def run(self):
        while not self.stop_flag.is_set():
            self.producer.produce(self.topic, value=b"alongside", partition=0, on_delivery=self.log)
            self.producer.poll(0.005)
        self.producer.flush(30)

    def stop(self):
        self.stop_flag.set()
        self.join(60)


def test_hostile_http_is_refused_while_kafka_serves(ops_broker):
    bs = ops_broker.bootstrap
    topic = "ops-hostile"
    clients.create_topic(bs, topic)
    producer = BackgroundProducer(bs, topic)
    producer.start()
    try:
        get = b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        # Huge headers: 431.
        huge = get + b"X-Filler: " + b"a" * (32 * 1024) + b"\r\n\r\n"
        assert status_of(raw_http(ops_broker, huge)) == 431
        # Garbage: 400 (or a closed connection), never a crash.
        answer = raw_http(ops_broker, b"\x16\x03\x01\x02\x00garbage\r\n\r\n")
        assert answer == b"" or status_of(answer) == 400, answer[:100]
        # Foreign Host (DNS rebinding): 403.
        assert status_of(raw_http(ops_broker, b"GET /metrics HTTP/1.1\r\nHost: evil.example:9644\r\n\r\n")) == 403
        # Unknown path, wrong method, oversized body.
        assert status_of(raw_http(ops_broker, b"GET /nope HTTP/1.1\r\nHost: localhost\r\n\r\n")) == 404
        answer = raw_http(ops_broker, b"POST /metrics HTTP/1.1\r\nHost: localhost\r\nContent-Length: 0\r\n\r\n")
        assert status_of(answer) == 405 and b"allow: get, head" in answer.lower()
        with socket.create_connection(("127.0.0.1", ops_broker.http_port), timeout=15) as s:
            s.sendall(get + b"Content-Length: 2000000\r\n\r\n")
            try:
                for _ in range(40):
                    s.sendall(b"b" * 65536)
            except OSError:
                pass  # the server may stop reading once past the limit
            s.settimeout(15)
            assert status_of(s.recv(4096)) == 413

        # Slow-loris: one header byte a second; the request deadline closes it.
        started = time.monotonic()
        with socket.create_connection(("127.0.0.1", ops_broker.http_port), timeout=30) as s:
            s.sendall(b"GET /metrics HTTP/1.1\r\n")
            closed_after = None
            for _ in range(30):
                try:
                    s.sendall(b"X")
                    s.settimeout(1.0)
                    if s.recv(4096) == b"":
                        closed_after = time.monotonic() - started
                        break
                except socket.timeout:
                    continue
                except OSError:
                    closed_after = time.monotonic() - started
                    break
            assert closed_after is not None and 8 <= closed_after <= 16, closed_after

        # 1,000 connections: at most 64 are served at once, the rest are closed at accept;
        # once they are gone the listener answers again.
        socks = []
        try:
            for _ in range(1000):
                socks.append(socket.create_connection(("127.0.0.1", ops_broker.http_port), timeout=10))
            served = 0
            for s in socks:
                s.settimeout(5)
                try:
                    s.sendall(b"GET /health/live HTTP/1.1\r\nHost: localhost\r\n\r\n")
                    if status_of(s.recv(4096)) == 200:
                        served += 1
                except OSError:
                    pass
            assert 1 <= served <= 64, served
        finally:
            for s in socks:
                s.close()
        wait_for(lambda: _answers(ops_broker.url("/health/live")) == 200, "HTTP answers again", 30)
    finally:
        producer.stop()
    assert producer.log.reports, "the producer alongside delivered nothing"
    assert not producer.log.errors(), producer.log.errors()[:3]

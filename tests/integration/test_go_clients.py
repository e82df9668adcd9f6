"""franz-go (kgo + kadm) and sarama (IBM/sarama) against the broker.

The scenarios live in one Go program, tests/clients/go (built into .cache/go-clients by
scripts/install-test-deps); each run does one scenario with one client, checks everything it
reads itself and prints "ok: ..." lines, then "PASS <client> <scenario>", or "FAIL: <what>" and
exit status 1. This file runs it and, where cheap, cross-checks the broker's state with
confluent-kafka so a Go-side bug cannot hide a broker one.

Scenarios: (produce) 1000 keyed records with headers, acks=all + idempotence, split over
gzip/snappy/lz4/zstd, 3 partitions, read back exactly; (group) two members on 4 partitions,
each partition owned once, a member closes and restarts, every record read exactly once and the
commits equal the log ends; (admin) create with configs, list, describe configs, create
partitions, delete records, delete topic.
"""

import os
import subprocess

import pytest
from clients import watermarks

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
GO_BIN = os.environ.get("GO_CLIENTS_BIN", os.path.join(REPO_ROOT, ".cache", "go-clients", "clients"))
# A whole scenario, including Kafka's group join delays; the program bounds each wait itself.
RUN_TIMEOUT_S = 240


def run_go(client, scenario, broker, topic):
    if not os.path.exists(GO_BIN):
        pytest.fail(f"{GO_BIN} missing: run scripts/install-test-deps")
    proc = subprocess.run([GO_BIN, client, scenario, "-brokers", broker.bootstrap, "-topic", topic],
                          capture_output=True, text=True, timeout=RUN_TIMEOUT_S)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0 and f"PASS {client} {scenario}" in proc.stdout, f"exit {proc.returncode}:\n{out}"
    return proc.stdout


def all_watermarks(bootstrap, topic, partitions):
    return [watermarks(bootstrap, topic, p) for p in range(partitions)]


@pytest.mark.parametrize("client", ["franz", "sarama"])
def test_go_produce_consume_codecs(shared_broker, topic_name, client):
    out = run_go(client, "produce", shared_broker, topic_name)
    assert "1000 records read back exactly once" in out, out
    marks = all_watermarks(shared_broker.bootstrap, topic_name, 3)
    assert all(low == 0 for low, _ in marks) and sum(high for _, high in marks) == 1000, marks


@pytest.mark.parametrize("client", ["franz", "sarama"])
def test_go_consumer_group_restart(shared_broker, topic_name, client):
    out = run_go(client, "group", shared_broker, topic_name)
    assert "all 400 records read exactly once" in out and "committed offsets equal the log ends" in out, out
    assert [high for _, high in all_watermarks(shared_broker.bootstrap, topic_name, 4)] == [100] * 4


@pytest.mark.parametrize("client", ["franz", "sarama"])
def test_go_admin(shared_broker, topic_name, client):
    out = run_go(client, "admin", shared_broker, topic_name)
    for step in ("DescribeTopicConfigs" if client == "franz" else "DescribeConfig", "DeleteRecords", "no longer listed"):
        assert step in out, out

"""kafkajs (Node.js) against the broker.

The scenarios live in tests/clients/js/scenarios.js (kafkajs pinned by its package-lock.json,
installed by scripts/install-test-deps); each run does one scenario, checks everything it reads
itself and prints "ok: ..." lines, then "PASS kafkajs <scenario>", or "FAIL: <what>" and exit
status 1. This file runs it and cross-checks the broker's state with confluent-kafka.

Scenarios: (produce) 1000 keyed records with headers (a repeated key, an empty value),
idempotent acks=all, split over none/gzip/snappy (kafkajs has no built-in lz4/zstd; snappy is
kafkajs-snappy), 3 partitions, read back exactly by a group reading from the beginning;
(group) two members on 4 partitions, each partition owned once, a member disconnects and
restarts, every record read exactly once and the commits equal the log ends; (admin)
createTopics with configs, listTopics, fetchTopicMetadata, describeConfigs, createPartitions,
deleteTopicRecords, fetchTopicOffsets, deleteTopics.
"""

import os
import subprocess

import pytest

from clients import watermarks

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
JS_DIR = os.path.join(REPO_ROOT, "tests", "clients", "js")
# A whole scenario, including Kafka's group join delays; the script bounds each wait itself.
RUN_TIMEOUT_S = 240


def run_js(scenario, broker, topic):
    if not os.path.isdir(os.path.join(JS_DIR, "node_modules", "kafkajs")):
        pytest.fail(f"kafkajs missing in {JS_DIR}/node_modules: run scripts/install-test-deps")
    proc = subprocess.run(["node", os.path.join(JS_DIR, "scenarios.js"), scenario, broker.bootstrap, topic],
                          capture_output=True, text=True, timeout=RUN_TIMEOUT_S)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0 and f"PASS kafkajs {scenario}" in proc.stdout, f"exit {proc.returncode}:\n{out}"
    return proc.stdout


def test_kafkajs_produce_consume_codecs(shared_broker, topic_name):
    out = run_js("produce", shared_broker, topic_name)
    assert "1000 records read back exactly once" in out, out
    marks = [watermarks(shared_broker.bootstrap, topic_name, p) for p in range(3)]
    assert all(low == 0 for low, _ in marks) and sum(high for _, high in marks) == 1000, marks


def test_kafkajs_consumer_group_restart(shared_broker, topic_name):
    out = run_js("group", shared_broker, topic_name)
    assert "all 400 records read exactly once" in out and "committed offsets equal the log ends" in out, out
    assert [watermarks(shared_broker.bootstrap, topic_name, p)[1] for p in range(4)] == [100] * 4


def test_kafkajs_admin(shared_broker, topic_name):
    out = run_js("admin", shared_broker, topic_name)
    for step in ("describeConfigs", "createPartitions 2 -> 3", "deleteTopicRecords", "no longer listed"):
        assert step in out, out

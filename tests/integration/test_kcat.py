"""kcat (librdkafka's command-line client): metadata, produce, consume without a group."""

import json
import subprocess

import pytest

from clients import create_topic, read_partition

KCAT_TIMEOUT_S = 60


def kcat(*args, stdin=None):
    proc = subprocess.run(["kcat", *args], input=stdin, capture_output=True, timeout=KCAT_TIMEOUT_S)
    assert proc.returncode == 0, f"kcat {' '.join(args)} exited {proc.returncode}:\n{proc.stderr.decode(errors='replace')}"
    return proc.stdout


def test_kcat_metadata(shared_broker, topic_name):
    create_topic(shared_broker.bootstrap, topic_name, partitions=2)
    md = json.loads(kcat("-b", shared_broker.bootstrap, "-L", "-J"))
    assert [(b["id"], b["name"]) for b in md["brokers"]] == [(1, shared_broker.bootstrap)]
    [topic] = [t for t in md["topics"] if t["topic"] == topic_name]
    assert "error" not in topic, topic
    assert sorted(p["partition"] for p in topic["partitions"]) == [0, 1]
    for p in topic["partitions"]:
        assert p["leader"] == 1 and [r["id"] for r in p["replicas"]] == [1], p


@pytest.mark.parametrize("codec", ["none", "gzip", "snappy", "lz4", "zstd"])
def test_kcat_produce_then_consume_from_beginning(shared_broker, topic_name, codec):
    create_topic(shared_broker.bootstrap, topic_name)
    lines = [f"key{i}:value {i} {codec}" for i in range(200)]
    kcat("-b", shared_broker.bootstrap, "-P", "-t", topic_name, "-p", "0", "-K:", "-z", codec,
         "-X", "acks=all", stdin=("\n".join(lines) + "\n").encode())

    out = kcat("-b", shared_broker.bootstrap, "-C", "-t", topic_name, "-p", "0", "-o", "beginning", "-e",
               "-f", "%o %k:%s\n")
    assert out.decode().splitlines() == [f"{i} {line}" for i, line in enumerate(lines)]

    # And what kcat wrote reads back identically through another librdkafka path.
    msgs = read_partition(shared_broker.bootstrap, topic_name, len(lines))
    assert [f"{m.key().decode()}:{m.value().decode()}" for m in msgs] == lines

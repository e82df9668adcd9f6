"""Transactions with Kafka 4.1.2's Java clients (tests/java/src/TxnClient.java, run with the
JDK's source launcher): a transactional producer's commits and aborts, with
sendOffsetsToTransaction, read back by read_committed and read_uncommitted consumers, and a
second producer with the same transactional.id fencing the first (ProducerFencedException).
The Java producer runs transaction version 1 against Josefine (no `transaction.version`
feature is finalized) and whatever Kafka finalizes against Kafka. Runs against Kafka too.
"""

import subprocess
import uuid

import pytest

from clients import create_topic
from conftest import KAFKA_LIBS, REPO_ROOT
from test_transactions import txn_broker  # noqa: F401 (the module-scoped broker fixture)

SOURCE = REPO_ROOT / "tests" / "java" / "src" / "TxnClient.java"
JVM_FLAGS = ["-Xmx256m", "-XX:TieredStopAtLevel=1", "-XX:+UseSerialGC",
             "-Dorg.slf4j.simpleLogger.defaultLogLevel=warn"]


def run_client(*args, timeout_s=180):
    if not (KAFKA_LIBS / "kafka-clients-4.1.2.jar").exists():
        pytest.fail(f"Kafka jars missing in {KAFKA_LIBS}: run scripts/install-test-deps")
    cmd = ["java", *JVM_FLAGS, "-cp", f"{KAFKA_LIBS}/*", str(SOURCE), *args]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s)
    assert proc.returncode == 0, f"TxnClient failed:\n{proc.stdout}\n{proc.stderr[-4000:]}"
    return dict(line.split(" ", 1) for line in proc.stdout.splitlines() if " " in line)


def test_java_commit_abort_and_offsets(txn_broker, topic_name):  # noqa: F811
    bs = txn_broker.bootstrap
    create_topic(bs, topic_name)
    create_topic(bs, topic_name + "-in")
    out = run_client("commit-abort", bs, topic_name, f"tx-{uuid.uuid4().hex[:8]}",
                     topic_name + "-g")
    committed = [f"c1-{i}" for i in range(10)] + [f"c2-{i}" for i in range(4)]
    assert out["committed"].split(",") == committed
    assert out["all"].split(",") == committed[:10] + [f"ab-{i}" for i in range(5)] + committed[10:]
    assert out["offset"] == "10"


def test_java_producer_fenced(txn_broker, topic_name):  # noqa: F811
    bs = txn_broker.bootstrap
    create_topic(bs, topic_name)
    out = run_client("fence", bs, topic_name, f"tx-{uuid.uuid4().hex[:8]}")
    assert out["fenced"] == "ProducerFencedException"
    assert out["committed"] == "fresh-0"


TRANSACTIONS_COMMAND = "org.apache.kafka.tools.TransactionsCommand"


def run_tool(*args, timeout_s=120):
    cmd = ["java", *JVM_FLAGS, "-cp", f"{KAFKA_LIBS}/*", TRANSACTIONS_COMMAND, *args]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s)
    assert proc.returncode == 0, f"kafka-transactions {' '.join(args)}:\n{proc.stdout}\n{proc.stderr[-3000:]}"
    return proc.stdout


def test_kafka_transactions_list_describe_and_producers(txn_broker, topic_name):  # noqa: F811
    """kafka-transactions list / describe / describe-producers on an open transaction
    (ListTransactions, DescribeTransactions, DescribeProducers)."""
    from confluent_kafka import Producer
    bs = txn_broker.bootstrap
    create_topic(bs, topic_name)
    tid = f"tx-{uuid.uuid4().hex[:8]}"
    p = Producer({"bootstrap.servers": bs, "transactional.id": tid})
    p.init_transactions(60)
    p.begin_transaction()
    p.produce(topic_name, value=b"open", partition=0)
    p.flush(30)
    try:
        listed = run_tool("--bootstrap-server", bs, "list")
        row = [line.split() for line in listed.splitlines() if line.startswith(tid)]
        # TransactionalId, Coordinator, ProducerId, TransactionState
        assert row and row[0][3] == "Ongoing", listed
        producer_id = row[0][2]

        described = run_tool("--bootstrap-server", bs, "describe", "--transactional-id", tid)
        header, values = described.splitlines()[0].split("\t"), described.splitlines()[1].split("\t")
        fields = {h.strip(): v.strip() for h, v in zip(header, values)}
        assert fields["TransactionalId"] == tid and fields["TransactionState"] == "Ongoing", described
        assert fields["ProducerId"] == producer_id
        assert f"{topic_name}-0" in fields["TopicPartitions"], described

        producers = run_tool("--bootstrap-server", bs, "describe-producers", "--topic", topic_name,
                             "--partition", "0")
        rows = [line.split() for line in producers.splitlines()[1:] if line.strip()]
        assert [r[0] for r in rows] == [producer_id], producers
        # CurrentTransactionStartOffset of the open transaction: its first (only) record, 0.
        assert rows[0][-1] == "0", producers
    finally:
        p.abort_transaction(60)


def test_kafka_transactions_abort_ends_an_open_transaction(txn_broker, topic_name):  # noqa: F811
    """kafka-transactions abort (DescribeProducers, then WriteTxnMarkers from the Admin
    client) aborts a transaction open in a partition: its record never shows to
    read_committed and the last stable offset moves past it."""
    from confluent_kafka import Producer
    from test_transactions import read_all
    bs = txn_broker.bootstrap
    create_topic(bs, topic_name)
    p = Producer({"bootstrap.servers": bs, "transactional.id": f"tx-{uuid.uuid4().hex[:8]}"})
    p.init_transactions(60)
    p.begin_transaction()
    p.produce(topic_name, value=b"hanging", partition=0)
    p.flush(30)
    plain = Producer({"bootstrap.servers": bs})
    plain.produce(topic_name, value=b"after", partition=0)
    assert plain.flush(30) == 0
    assert read_all(bs, topic_name, 1, "read_committed", settle_s=1.0)[0] == []

    run_tool("--bootstrap-server", bs, "abort", "--topic", topic_name, "--partition", "0",
             "--start-offset", "0")
    assert read_all(bs, topic_name, 1, "read_committed")[0] == [b"after"]

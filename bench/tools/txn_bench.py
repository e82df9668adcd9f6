#!/usr/bin/env python3
"""Transactional produce figures against one running broker (Josefine or Kafka): for each
transaction size (records of --record-bytes per transaction), --transactions transactions of
one confluent-kafka (librdkafka) transactional producer, one after another: records per second,
MB per second, and the commit_transaction() latency p50/p99 (EndTxn round trip: the coordinator
answers once its Prepare record is durable). Then the same topic read back read_committed and
read_uncommitted (records per second).

Owns nothing but its own producer and consumer; the broker is started by the caller (so the
same script measures either broker on the same machine). Prints one JSON line per size.

  bench/tools/txn_bench.py --bootstrap 127.0.0.1:9092 --sizes 1,10,100 --transactions 200
"""

import argparse
import json
import statistics
import time
import uuid

from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic


def pct(values, q):
    s = sorted(values)
    return s[min(len(s) - 1, int(round(q * (len(s) - 1))))]


def run_size(bootstrap, size, transactions, record_bytes):
    topic = f"txn-bench-{size}-{uuid.uuid4().hex[:6]}"
    admin = AdminClient({"bootstrap.servers": bootstrap})  # alive until the result is in
    admin.create_topics([NewTopic(topic, 1, 1)])[topic].result(timeout=60)
    p = Producer({"bootstrap.servers": bootstrap, "transactional.id": f"bench-{topic}",
                  "linger.ms": 1})
    p.init_transactions(60)
    payload = b"x" * record_bytes
    commits = []
    start = time.perf_counter()
    for _ in range(transactions):
        p.begin_transaction()
        for _ in range(size):
            p.produce(topic, value=payload, partition=0)
        t0 = time.perf_counter()
        p.commit_transaction(60)
        commits.append((time.perf_counter() - t0) * 1000)
    elapsed = time.perf_counter() - start
    records = size * transactions
    row = {"records_per_txn": size, "transactions": transactions,
           "records_per_s": round(records / elapsed),
           "mb_per_s": round(records * record_bytes / elapsed / 1e6, 2),
           "txn_per_s": round(transactions / elapsed, 1),
           "commit_ms_p50": round(statistics.median(commits), 2),
           "commit_ms_p99": round(pct(commits, 0.99), 2)}
    for isolation in ("read_committed", "read_uncommitted"):
        c = Consumer({"bootstrap.servers": bootstrap, "group.id": "unused",
                      "isolation.level": isolation, "enable.auto.commit": False})
        c.assign([TopicPartition(topic, 0, 0)])
        got, t0 = 0, time.perf_counter()
        deadline = t0 + 120
        while got < records and time.perf_counter() < deadline:
            got += sum(1 for m in c.consume(10000, 1.0) if m.error() is None)
        row[f"{isolation}_records_per_s"] = round(got / (time.perf_counter() - t0))
        c.close()
    return row


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bootstrap", required=True)
    ap.add_argument("--sizes", default="1,10,100")
    ap.add_argument("--transactions", type=int, default=200)
    ap.add_argument("--record-bytes", type=int, default=1024)
    ap.add_argument("--label", default="")
    a = ap.parse_args()
    for size in (int(s) for s in a.sizes.split(",")):
        row = run_size(a.bootstrap, size, a.transactions, a.record_bytes)
        row["label"] = a.label
        print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()

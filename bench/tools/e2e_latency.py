#!/usr/bin/env python3
"""End-to-end latency probe on librdkafka (confluent-kafka): one record in flight at a time.

Owns: producing one record, waiting for its acknowledgement, then for a consumer (assigned to
the partition, no group) to receive it; repeated N times. Prints one JSON object with
microsecond percentiles of ack latency and end-to-end latency.
Must never: pipeline records (that would measure throughput, not latency) or time anything
but the record's own trip. Kafka's Java EndToEndLatency reports whole milliseconds only, which
cannot separate two brokers that both answer in under a millisecond on loopback; this keeps
microseconds.
"""

import argparse
import json
import sys
import time

from confluent_kafka import Consumer, Producer, TopicPartition


def percentile(sorted_values, q):
    """Nearest-rank percentile of an already sorted list."""
    if not sorted_values:
        return None
    rank = max(0, min(len(sorted_values) - 1, int(round(q * len(sorted_values) + 0.5)) - 1))
    return sorted_values[rank]


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--bootstrap", required=True)
    parser.add_argument("--topic", required=True)
    parser.add_argument("--messages", type=int, default=2000)
    parser.add_argument("--warmup", type=int, default=200)
    parser.add_argument("--size", type=int, default=100)
    parser.add_argument("--acks", default="1")
    parser.add_argument("--timeout-s", type=float, default=60.0)
    args = parser.parse_args()

    producer = Producer(
        {"bootstrap.servers": args.bootstrap, "linger.ms": 0, "acks": args.acks, "enable.idempotence": False}
    )
    consumer = Consumer(
        {
            "bootstrap.servers": args.bootstrap,
            # Required by the client even with assign(); no group protocol is used.
            "group.id": "bench-e2e",
            "enable.auto.commit": False,
            "fetch.wait.max.ms": 500,
            "fetch.min.bytes": 1,
        }
    )
    # Start exactly at the current end: OFFSET_END would be resolved lazily, possibly after the
    # first record was written, and that record would then never arrive.
    _low, high = consumer.get_watermark_offsets(TopicPartition(args.topic, 0), timeout=30)
    consumer.assign([TopicPartition(args.topic, 0, high)])

    acked = []
    deadline = time.monotonic() + args.timeout_s
    ack_us, e2e_us = [], []
    padding = b"x" * max(0, args.size - 12)

    def on_delivery(err, _msg):
        acked.append(err)

    # The first records also wait for the consumer's initial offset lookup; they are warm-up.
    total = args.warmup + args.messages
    for i in range(total):
        payload = b"%012d" % i + padding
        acked.clear()
        start_ns = time.perf_counter_ns()
        producer.produce(args.topic, payload, partition=0, on_delivery=on_delivery)
        producer.flush(args.timeout_s)
        ack_ns = time.perf_counter_ns()
        if not acked or acked[0] is not None:
            print(json.dumps({"error": f"produce {i} failed: {acked}"}))
            return 1
        while True:
            if time.monotonic() > deadline:
                print(json.dumps({"error": f"timeout waiting for record {i}"}))
                return 1
            msg = consumer.poll(1.0)
            if msg is None or msg.error():
                continue
            if msg.value()[:12] == payload[:12]:
                break
        done_ns = time.perf_counter_ns()
        if i >= args.warmup:
            ack_us.append((ack_ns - start_ns) / 1000.0)
            e2e_us.append((done_ns - start_ns) / 1000.0)
    consumer.close()
    ack_us.sort()
    e2e_us.sort()
    result = {
        "messages": args.messages,
        "ack_p50_us": percentile(ack_us, 0.50),
        "ack_p99_us": percentile(ack_us, 0.99),
        "ack_p999_us": percentile(ack_us, 0.999),
        "e2e_p50_us": percentile(e2e_us, 0.50),
        "e2e_p99_us": percentile(e2e_us, 0.99),
        "e2e_p999_us": percentile(e2e_us, 0.999),
    }
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Small wrappers around confluent-kafka so the tests read as what they check.

Owns: producing with delivery reports collected, and reading a partition in assign mode
(consumer groups are not implemented by Josefine yet, so nothing here joins a group or
commits offsets). Must never hide an error: every delivery or consume error is returned or
raised for the test to assert on.
"""

import time

from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic


# Errors that Kafka's protocol defines as retriable and that a restarting broker may answer
# for a moment; librdkafka does not flag all of them retriable on every API path.
RETRIABLE = {
    KafkaError.NOT_LEADER_FOR_PARTITION,
    KafkaError.LEADER_NOT_AVAILABLE,
    KafkaError._TRANSPORT,
    KafkaError._TIMED_OUT,
    KafkaError.REQUEST_TIMED_OUT,
}


def admin(bootstrap: str) -> AdminClient:
    return AdminClient({"bootstrap.servers": bootstrap})


def create_topic(bootstrap: str, topic: str, partitions: int = 1, config=None, timeout_s=30):
    client = admin(bootstrap)  # keep the handle alive until the future resolves
    futures = client.create_topics(
        [NewTopic(topic, num_partitions=partitions, replication_factor=1, config=config or {})],
        operation_timeout=timeout_s, request_timeout=timeout_s)
    futures[topic].result(timeout=timeout_s)


class DeliveryLog:
    """Collects delivery reports: (key, value, partition, offset, error)."""

    def __init__(self):
        self.reports = []

    def __call__(self, err, msg):
        self.reports.append((msg.key(), msg.value(), msg.partition(), msg.offset(), err))

    def errors(self):
        return [r for r in self.reports if r[4] is not None]


def produce_all(producer: Producer, topic: str, records, partition: int = 0, flush_timeout_s=120):
    """Produce (key, value, headers) tuples; returns the DeliveryLog after a full flush."""
    log = DeliveryLog()
    for i, (key, value, headers) in enumerate(records):
        while True:
            try:
                producer.produce(topic, key=key, value=value, headers=headers,
                                 partition=partition, on_delivery=log)
                break
            except BufferError:
                producer.poll(0.05)
        if i % 1000 == 0:
            producer.poll(0)
    remaining = producer.flush(flush_timeout_s)
    assert remaining == 0, f"{remaining} messages still undelivered after {flush_timeout_s}s"
    return log


def assign_consumer(bootstrap: str, **extra) -> Consumer:
    conf = {
        "bootstrap.servers": bootstrap,
        # librdkafka wants a group.id string even in assign mode; nothing joins or commits.
        "group.id": "josefine-tests-unused",
        "enable.auto.commit": False,
        "enable.auto.offset.store": False,
        "auto.offset.reset": "error",
    }
    conf.update(extra)
    return Consumer(conf)


def read_partition(bootstrap: str, topic: str, count: int, partition: int = 0, offset: int = 0,
                   timeout_s: float = 120, **extra):
    """Read exactly `count` messages from `offset` in assign mode; fail on any error.

    Returns confluent Message objects in the order the consumer delivered them.
    """
    consumer = assign_consumer(bootstrap, **extra)
    try:
        consumer.assign([TopicPartition(topic, partition, offset)])
        out = []
        deadline = time.monotonic() + timeout_s
        while len(out) < count and time.monotonic() < deadline:
            for msg in consumer.consume(num_messages=min(10000, count - len(out)), timeout=1.0):
                if msg.error() is not None:
                    raise AssertionError(f"consume error at {len(out)} messages: {msg.error()}")
                out.append(msg)
        assert len(out) == count, f"read {len(out)} of {count} messages within {timeout_s}s"
        # Nothing more may follow: the log holds exactly what we produced.
        extra_msgs = [m for m in consumer.consume(num_messages=10, timeout=1.0) if m.error() is None]
        assert not extra_msgs, f"unexpected extra messages after {count}: offsets {[m.offset() for m in extra_msgs]}"
        return out
    finally:
        consumer.close()


def watermarks(bootstrap: str, topic: str, partition: int = 0, timeout_s: float = 30):
    """(low, high) watermarks via ListOffsets, retrying only errors Kafka marks retriable
    (a restarted broker may answer NOT_LEADER_OR_FOLLOWER until it has loaded its logs),
    as every real client does."""
    consumer = assign_consumer(bootstrap)
    deadline = time.monotonic() + timeout_s
    try:
        while True:
            try:
                return consumer.get_watermark_offsets(TopicPartition(topic, partition), timeout=10, cached=False)
            except KafkaException as exc:
                if exc.args[0].code() not in RETRIABLE or time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
    finally:
        consumer.close()


__all__ = ["KafkaError", "Producer", "TopicPartition", "admin", "create_topic", "produce_all",
           "assign_consumer", "read_partition", "watermarks", "DeliveryLog"]

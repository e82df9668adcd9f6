"""kafka-python (pure Python client) and ApiVersions negotiation.

kafka-python picks every request version from the broker's ApiVersions answer and infers a
broker release from it, so it catches ranges that are advertised but not really served.
The raw ApiVersions checks pin the parts of the exchange that clients depend on before they
have negotiated anything (v0 body on a too-new request, correlation ids, baseline minima).
"""

import time

from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer
from kafka import TopicPartition as KpTopicPartition

import wire
from clients import create_topic

MESSAGES = 5000

# Kafka 4 (KIP-896) minimum versions, and the exception it keeps: Produce advertised from v0.
KAFKA4_MIN_VERSIONS = {0: 0, 1: 4, 2: 1, 3: 0, 18: 0, 19: 2, 20: 1, 22: 0}
# Versions recent clients (librdkafka 2.x, Java 4.x) want; below these they fall back or fail.
CLIENT_WANTED_MAX_VERSIONS = {0: 9, 1: 12, 2: 7, 3: 12, 18: 3, 19: 5, 20: 4, 22: 4}
API_NAMES = {0: "Produce", 1: "Fetch", 2: "ListOffsets", 3: "Metadata", 18: "ApiVersions",
             19: "CreateTopics", 20: "DeleteTopics", 22: "InitProducerId"}


def test_kafka_python_idempotent_produce_and_assign_consume(shared_broker, topic_name):
    create_topic(shared_broker.bootstrap, topic_name)
    producer = KafkaProducer(bootstrap_servers=shared_broker.bootstrap, acks="all",
                             enable_idempotence=True, linger_ms=5)
    try:
        # kafka-python negotiated versions from ApiVersions (api_version=None) and inferred a
        # broker release; ListOffsets v7 (max timestamp) is what makes it infer >= 3.0.
        assert producer.config["api_version"] >= (3, 0), producer.config["api_version"]
        futures = [producer.send(topic_name, key=str(i).encode(), value=b"kp-%05d" % i, partition=0)
                   for i in range(MESSAGES)]
        producer.flush(timeout=60)
        offsets = [f.get(timeout=60).offset for f in futures]
    finally:
        producer.close()
    assert offsets == list(range(MESSAGES))

    consumer = KafkaConsumer(bootstrap_servers=shared_broker.bootstrap, group_id=None,
                             enable_auto_commit=False, auto_offset_reset="none")
    tp = KpTopicPartition(topic_name, 0)
    try:
        consumer.assign([tp])
        consumer.seek(tp, 0)
        got = []
        deadline = time.monotonic() + 60
        while len(got) < MESSAGES and time.monotonic() < deadline:
            for records in consumer.poll(timeout_ms=500).values():
                got.extend(records)
        assert [(r.offset, r.key, r.value) for r in got] == \
            [(i, str(i).encode(), b"kp-%05d" % i) for i in range(MESSAGES)]
        assert consumer.end_offsets([tp])[tp] == MESSAGES
        assert consumer.beginning_offsets([tp])[tp] == 0
    finally:
        consumer.close()


def test_kafka_python_admin_sees_api_versions(shared_broker):
    admin = KafkaAdminClient(bootstrap_servers=shared_broker.bootstrap)
    try:
        versions = {int(k): v for k, v in admin.api_versions().items()}
    finally:
        admin.close()
    for key, name in API_NAMES.items():
        assert key in versions, f"{name} not advertised"
    _, _, raw = wire.api_versions(shared_broker.host, shared_broker.port, version=3)
    assert {k: tuple(v) for k, v in versions.items()} == raw


def test_api_versions_v0_and_v3_agree_and_meet_kafka4_baseline(shared_broker):
    corr0, err0, v0 = wire.api_versions(shared_broker.host, shared_broker.port, version=0, correlation_id=11)
    corr3, err3, v3 = wire.api_versions(shared_broker.host, shared_broker.port, version=3, correlation_id=12)
    assert (corr0, err0, corr3, err3) == (11, 0, 12, 0)
    assert v0 == v3
    for key, name in API_NAMES.items():
        lo, hi = v3[key]
        assert lo == KAFKA4_MIN_VERSIONS[key], f"{name} min version {lo}, Kafka 4 has {KAFKA4_MIN_VERSIONS[key]}"
        assert hi >= CLIENT_WANTED_MAX_VERSIONS[key], f"{name} max version {hi} < {CLIENT_WANTED_MAX_VERSIONS[key]}"
        assert lo <= hi


def test_too_new_api_versions_gets_unsupported_version_with_v0_body(shared_broker):
    corr, err, ranges = wire.api_versions(shared_broker.host, shared_broker.port, version=127, correlation_id=99)
    assert corr == 99
    assert err == wire.UNSUPPORTED_VERSION
    # The v0 body still lists the ranges, so the client can retry at a version both support.
    assert ranges.get(18, (0, -1))[1] >= 3, ranges

"""Group config resources (KIP-848, resource type GROUP = 32) through kafka-configs and the raw
protocol: Kafka 4.1's names, defaults, validation against the broker-level bounds, and errors.
Josefine stores and describes them (no consumer/share/streams group protocol reads them yet).
Every check passes on Apache Kafka 4.1 (BROKER=kafka) first."""

import struct
import time

from confluent_kafka import Consumer, KafkaException, TopicPartition

import wire
from clients import admin, create_topic
from config_wire import describe_configs
from test_configs import configs_tool
from test_java_tools import _kafka_jars  # noqa: F401 - the fixture checks the jars

GROUP = 32
INVALID_CONFIG = 40
DEFAULTS = {
    "consumer.heartbeat.interval.ms": "5000", "consumer.session.timeout.ms": "45000",
    "share.auto.offset.reset": "latest", "share.heartbeat.interval.ms": "5000",
    "share.isolation.level": "read_uncommitted", "share.record.lock.duration.ms": "30000",
    "share.session.timeout.ms": "45000", "streams.heartbeat.interval.ms": "5000",
    "streams.num.standby.replicas": "0", "streams.session.timeout.ms": "45000",
}


def alter(broker, group, key, value, op=0):
    """IncrementalAlterConfigs v1 of one group config; returns (error_code, error_message)."""
    cfg = wire._cstr(key) + struct.pack(">b", op) + wire._cstr(value) + wire._TAGS
    resource = struct.pack(">b", GROUP) + wire._cstr(group) + wire._carray([cfg]) + wire._TAGS
    body = wire._carray([resource]) + struct.pack(">?", False) + wire._TAGS
    with wire.Connection(broker.host, broker.port) as c:
        r = c.request(44, 1, body)
    r.i32()  # throttle

    def item():
        e = (r.i16(), r.cstr())
        r.i8(), r.cstr()
        r.tags()
        return e

    (result,) = r.carray(item)
    return result


def test_group_configs_defaults_alter_and_refusals(shared_broker, topic_name):
    group = f"g-{topic_name}"
    error, message, configs = describe_configs(shared_broker, GROUP, group)
    assert error == 0, message
    assert {k: v["value"] for k, v in configs.items()} == DEFAULTS
    assert {v["source"] for v in configs.values()} == {"DEFAULT_CONFIG"}
    assert {v["read_only"] for v in configs.values()} == {False}
    assert configs["consumer.session.timeout.ms"]["type"] == "INT"
    assert configs["share.isolation.level"]["type"] == "STRING"

    assert alter(shared_broker, group, "consumer.session.timeout.ms", "50000") == (0, None)
    entry = describe_configs(shared_broker, GROUP, group)[2]["consumer.session.timeout.ms"]
    assert (entry["value"], entry["source"]) == ("50000", "GROUP_CONFIG")
    assert entry["synonyms"] == [("consumer.session.timeout.ms", "50000", "GROUP_CONFIG")]

    for key, value, want in [
        ("consumer.session.timeout.ms", "1000",
         "consumer.session.timeout.ms must be greater than or equal to group.consumer.min.session.timeout.ms"),
        ("consumer.session.timeout.ms", "x",
         "Invalid value x for configuration consumer.session.timeout.ms: Not a number of type INT"),
        ("consumer.heartbeat.interval.ms", "60000",
         "consumer.heartbeat.interval.ms must be less than or equal to group.consumer.max.heartbeat.interval.ms"),
        ("share.record.lock.duration.ms", "1",
         "Invalid value 1 for configuration share.record.lock.duration.ms: Value must be at least 1000"),
        ("share.isolation.level", "x",
         "Invalid value x for configuration share.isolation.level: String must be one of: read_committed, read_uncommitted"),
        ("nonsense", "1", "Unknown group config name: nonsense"),
        ("streams.num.standby.replicas", "9",
         "streams.num.standby.replicas must be less than or equal to group.streams.max.standby.replicas"),
    ]:
        assert alter(shared_broker, group, key, value) == (INVALID_CONFIG, want), (key, value)
    # Nothing changed by the refusals.
    configs = describe_configs(shared_broker, GROUP, group)[2]
    assert {k: v["value"] for k, v in configs.items()} == {**DEFAULTS, "consumer.session.timeout.ms": "50000"}

    # DELETE returns it to the default.
    assert alter(shared_broker, group, "consumer.session.timeout.ms", None, op=1) == (0, None)
    entry = describe_configs(shared_broker, GROUP, group)[2]["consumer.session.timeout.ms"]
    assert (entry["value"], entry["source"]) == ("45000", "DEFAULT_CONFIG")


def test_kafka_configs_entity_type_groups(shared_broker, topic_name):
    bs = shared_broker.bootstrap
    group = f"g-{topic_name}"
    out = configs_tool(bs, "--alter", "--entity-type", "groups", "--entity-name", group,
                       "--add-config", "consumer.heartbeat.interval.ms=6000,share.auto.offset.reset=earliest")
    assert f"Completed updating config for group {group}." in out, out
    out = configs_tool(bs, "--describe", "--entity-type", "groups", "--entity-name", group)
    assert f"Dynamic configs for group {group} are:" in out, out
    assert "consumer.heartbeat.interval.ms=6000 sensitive=false synonyms={DYNAMIC_GROUP_CONFIG:consumer.heartbeat.interval.ms=6000}" in out, out
    assert "share.auto.offset.reset=earliest" in out, out
    out = configs_tool(bs, "--describe", "--all", "--entity-type", "groups", "--entity-name", group)
    assert "consumer.session.timeout.ms=45000 sensitive=false synonyms={DEFAULT_CONFIG:consumer.session.timeout.ms=45000}" in out, out
    code, out = configs_tool(bs, "--alter", "--entity-type", "groups", "--entity-name", group,
                             "--add-config", "consumer.heartbeat.interval.ms=1", check=False)
    assert code != 0 and "consumer.heartbeat.interval.ms must be greater than or equal to" in out, out


def test_deleting_a_group_keeps_its_configs(shared_broker, topic_name):
    """Kafka 4.1.2 keeps a group's config overrides when DeleteGroups deletes the group (the
    issue asked for removal; Kafka does not, so neither does Josefine)."""
    bs = shared_broker.bootstrap
    group = f"g-{topic_name}"
    create_topic(bs, topic_name)
    consumer = Consumer({"bootstrap.servers": bs, "group.id": group, "enable.auto.commit": False})
    for attempt in range(60):  # Kafka: NOT_COORDINATOR while its offsets topic is created
        try:
            consumer.commit(offsets=[TopicPartition(topic_name, 0, 0)], asynchronous=False)
            break
        except KafkaException:
            if attempt == 59:
                raise
            time.sleep(0.5)
    consumer.close()
    assert alter(shared_broker, group, "consumer.session.timeout.ms", "55000") == (0, None)
    client = admin(bs)
    for f in client.delete_consumer_groups([group], request_timeout=30).values():
        f.result(timeout=30)
    time.sleep(2)
    entry = describe_configs(shared_broker, GROUP, group)[2]["consumer.session.timeout.ms"]
    assert (entry["value"], entry["source"]) == ("55000", "GROUP_CONFIG")

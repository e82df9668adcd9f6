"""Topic and broker configs: DescribeConfigs, AlterConfigs, IncrementalAlterConfigs.

Through confluent-kafka's AdminClient and Kafka 4.1's own `kafka-configs` (ConfigCommand):
values, sources and synonyms; SET/DELETE/APPEND/SUBTRACT and the legacy full replacement;
validate_only; Kafka's error codes; dynamic broker configs for one broker and as the cluster
default; changes that are honoured by the log (max.message.bytes, message.timestamp.type) and
that survive a restart. Every test passes against Kafka 4.1.2 (BROKER=kafka), except where a
test says Josefine deliberately differs.
"""

import re
import subprocess
import time

import pytest
from confluent_kafka import KafkaError, KafkaException, Producer, TIMESTAMP_LOG_APPEND_TIME
from confluent_kafka.admin import AlterConfigOpType, ConfigEntry, ConfigResource, ConfigSource, ResourceType

from clients import admin, create_topic, produce_all, read_partition
from conftest import BROKER_KIND, KAFKA_LIBS
from test_java_tools import run_tool, _kafka_jars  # noqa: F401 - the fixture checks the jars

CONFIG_COMMAND = "kafka.admin.ConfigCommand"
TIMEOUT_S = 30


def describe(bootstrap, resource_type, name):
    """name -> ConfigEntry of one resource (librdkafka always asks for synonyms)."""
    client = admin(bootstrap)
    futures = client.describe_configs([ConfigResource(resource_type, name)], request_timeout=TIMEOUT_S)
    (future,) = futures.values()
    return future.result(timeout=TIMEOUT_S)


def incremental(bootstrap, resource_type, name, ops, validate_only=False):
    """Apply [(op, key, value)]; returns None or raises KafkaException."""
    entries = [ConfigEntry(k, v, incremental_operation=op) for op, k, v in ops]
    client = admin(bootstrap)
    futures = client.incremental_alter_configs(
        [ConfigResource(resource_type, name, incremental_configs=entries)],
        validate_only=validate_only, request_timeout=TIMEOUT_S)
    (future,) = futures.values()
    return future.result(timeout=TIMEOUT_S)


def settled(check):
    """Josefine applies an alter before answering, so `check()` must hold at once; Kafka
    propagates config changes to its broker asynchronously, so there it is polled."""
    if BROKER_KIND == "josefine":
        assert check()
        return
    deadline = time.monotonic() + TIMEOUT_S
    while not check():
        assert time.monotonic() < deadline, "change never became visible"
        time.sleep(0.2)
    time.sleep(1.0)  # Kafka: the log config follows the metadata image a moment later


def error_of(fn, *args, **kwargs):
    with pytest.raises(KafkaException) as info:
        fn(*args, **kwargs)
    return info.value.args[0]


SET, DELETE, APPEND, SUBTRACT = (AlterConfigOpType.SET, AlterConfigOpType.DELETE,
                                 AlterConfigOpType.APPEND, AlterConfigOpType.SUBTRACT)
TOPIC, BROKER = ResourceType.TOPIC, ResourceType.BROKER


def test_describe_topic_values_sources_and_synonyms(shared_broker, topic_name):
    bs = shared_broker.bootstrap
    create_topic(bs, topic_name, config={"retention.ms": "123456", "cleanup.policy": "compact,delete"})
    configs = describe(bs, TOPIC, topic_name)
    retention = configs["retention.ms"]
    assert retention.value == "123456"
    assert retention.source == ConfigSource.DYNAMIC_TOPIC_CONFIG.value
    assert not retention.is_read_only and not retention.is_sensitive
    first = list(retention.synonyms.values())[0]
    assert (first.name, first.source) == ("retention.ms", ConfigSource.DYNAMIC_TOPIC_CONFIG.value)
    assert sorted(configs["cleanup.policy"].value.split(",")) == ["compact", "delete"]
    # Not overridden: Kafka's defaults, source DEFAULT_CONFIG.
    for key, default in [("segment.bytes", "1073741824"), ("max.message.bytes", "1048588"),
                         ("message.timestamp.type", "CreateTime"), ("min.cleanable.dirty.ratio", "0.5"),
                         ("compression.type", "producer"), ("delete.retention.ms", "86400000")]:
        assert configs[key].value == default, key
        assert configs[key].source == ConfigSource.DEFAULT_CONFIG.value, key

    err = error_of(describe, bs, TOPIC, topic_name + "-missing")
    assert err.code() == KafkaError.UNKNOWN_TOPIC_OR_PART


def test_incremental_alter_set_delete_append_subtract(shared_broker, topic_name):
    bs = shared_broker.bootstrap
    create_topic(bs, topic_name)
    incremental(bs, TOPIC, topic_name, [(SET, "retention.ms", "5000"), (SET, "segment.ms", "60000")])
    configs = describe(bs, TOPIC, topic_name)
    assert configs["retention.ms"].value == "5000"
    assert configs["segment.ms"].value == "60000"

    # APPEND starts from the default list ("delete"); SUBTRACT removes.
    incremental(bs, TOPIC, topic_name, [(APPEND, "cleanup.policy", "compact")])
    assert sorted(describe(bs, TOPIC, topic_name)["cleanup.policy"].value.split(",")) == ["compact", "delete"]
    incremental(bs, TOPIC, topic_name, [(SUBTRACT, "cleanup.policy", "delete")])
    assert describe(bs, TOPIC, topic_name)["cleanup.policy"].value == "compact"

    incremental(bs, TOPIC, topic_name, [(DELETE, "retention.ms", None)])
    configs = describe(bs, TOPIC, topic_name)
    assert configs["retention.ms"].value == "604800000"
    assert configs["retention.ms"].source == ConfigSource.DEFAULT_CONFIG.value
    assert configs["segment.ms"].value == "60000", "other overrides are kept"

    # validate_only checks but changes nothing.
    incremental(bs, TOPIC, topic_name, [(SET, "segment.ms", "70000")], validate_only=True)
    assert describe(bs, TOPIC, topic_name)["segment.ms"].value == "60000"

    for ops in ([(SET, "retention.ms", "soon")],
                [(SET, "retention.msx", "1")],
                [(APPEND, "retention.ms", "1")],
                [(SET, "segment.bytes", "1024")],
                [(SET, "min.compaction.lag.ms", "10"), (SET, "max.compaction.lag.ms", "5")]):
        err = error_of(incremental, bs, TOPIC, topic_name, ops)
        assert err.code() == KafkaError.INVALID_CONFIG, (ops, err)
        err = error_of(incremental, bs, TOPIC, topic_name, ops, validate_only=True)
        assert err.code() == KafkaError.INVALID_CONFIG, (ops, err)
    assert describe(bs, TOPIC, topic_name)["segment.ms"].value == "60000", "failed alters change nothing"

    err = error_of(incremental, bs, TOPIC, topic_name + "-missing", [(SET, "retention.ms", "1")])
    assert err.code() == KafkaError.UNKNOWN_TOPIC_OR_PART


def test_legacy_alter_configs_replaces_every_override(shared_broker, topic_name):
    bs = shared_broker.bootstrap
    create_topic(bs, topic_name, config={"retention.ms": "100000"})
    client = admin(bs)
    futures = client.alter_configs([ConfigResource(TOPIC, topic_name, set_config={"segment.ms": "1000"})],
                                   request_timeout=TIMEOUT_S)
    for f in futures.values():
        f.result(timeout=TIMEOUT_S)
    configs = describe(bs, TOPIC, topic_name)
    assert configs["segment.ms"].value == "1000"
    assert configs["segment.ms"].source == ConfigSource.DYNAMIC_TOPIC_CONFIG.value
    assert configs["retention.ms"].source == ConfigSource.DEFAULT_CONFIG.value, "unnamed override deleted"

    futures = client.alter_configs([ConfigResource(TOPIC, topic_name, set_config={"segment.ms": "x"})],
                                   request_timeout=TIMEOUT_S)
    with pytest.raises(KafkaException) as info:
        for f in futures.values():
            f.result(timeout=TIMEOUT_S)
    assert info.value.args[0].code() == KafkaError.INVALID_CONFIG


def big_producer(bs):
    return Producer({"bootstrap.servers": bs, "message.max.bytes": 2_000_000, "linger.ms": 0,
                     "retries": 0, "compression.type": "none", "enable.idempotence": False})


def test_max_message_bytes_alter_is_honoured(shared_broker, topic_name):
    bs = shared_broker.bootstrap
    create_topic(bs, topic_name)
    value = b"x" * 200_000
    log = produce_all(big_producer(bs), topic_name, [(None, value, None)])
    assert not log.errors()

    incremental(bs, TOPIC, topic_name, [(SET, "max.message.bytes", "100000")])
    settled(lambda: describe(bs, TOPIC, topic_name)["max.message.bytes"].value == "100000")
    log = produce_all(big_producer(bs), topic_name, [(None, value, None)])
    (error,) = [r[4] for r in log.reports]
    assert error is not None and error.code() == KafkaError.MSG_SIZE_TOO_LARGE, error

    incremental(bs, TOPIC, topic_name, [(DELETE, "max.message.bytes", None)])
    settled(lambda: describe(bs, TOPIC, topic_name)["max.message.bytes"].value == "1048588")
    log = produce_all(big_producer(bs), topic_name, [(None, value, None)])
    assert not log.errors()
    assert [r[3] for r in log.reports] == [1], "the refused batch took no offset"


def test_log_append_time_alter_is_honoured(shared_broker, topic_name):
    bs = shared_broker.bootstrap
    create_topic(bs, topic_name)
    old_ms = 1_000_000_000_000  # 2001: far in the past, allowed by the default before.max.ms
    producer = Producer({"bootstrap.servers": bs, "linger.ms": 0})
    producer.produce(topic_name, value=b"create", partition=0, timestamp=old_ms)
    producer.flush(TIMEOUT_S)
    incremental(bs, TOPIC, topic_name, [(SET, "message.timestamp.type", "LogAppendTime")])
    settled(lambda: describe(bs, TOPIC, topic_name)["message.timestamp.type"].value == "LogAppendTime")
    before_ms = int(time.time() * 1000)
    producer.produce(topic_name, value=b"append", partition=0, timestamp=old_ms)
    producer.flush(TIMEOUT_S)
    after_ms = int(time.time() * 1000)
    first, second = read_partition(bs, topic_name, 2)
    assert first.timestamp()[1] == old_ms
    kind, ts = second.timestamp()
    assert kind == TIMESTAMP_LOG_APPEND_TIME
    assert before_ms - 1000 <= ts <= after_ms + 1000, (before_ms, ts, after_ms)


def configs_tool(bs, *args, check=True):
    if check:
        out, _ = run_tool(CONFIG_COMMAND, "--bootstrap-server", bs, *args)
        return out
    cmd = ["java", "-Xmx384m", "-XX:TieredStopAtLevel=1", "-Dorg.slf4j.simpleLogger.defaultLogLevel=warn",
           "-cp", f"{KAFKA_LIBS}/*", CONFIG_COMMAND, "--bootstrap-server", bs, *args]
    proc = subprocess.run(cmd, capture_output=True, timeout=180)
    return proc.returncode, proc.stdout.decode(errors="replace") + proc.stderr.decode(errors="replace")


def test_kafka_configs_tool_topic(shared_broker, topic_name):
    bs = shared_broker.bootstrap
    create_topic(bs, topic_name)
    out = configs_tool(bs, "--alter", "--entity-type", "topics", "--entity-name", topic_name,
                       "--add-config", "retention.ms=1000,cleanup.policy=[compact,delete]")
    assert "Completed updating config" in out, out
    out = configs_tool(bs, "--describe", "--entity-type", "topics", "--entity-name", topic_name)
    assert re.search(r"retention\.ms=1000 sensitive=false synonyms=\{DYNAMIC_TOPIC_CONFIG:retention\.ms=1000\}", out), out
    assert re.search(r"cleanup\.policy=(compact,delete|delete,compact) ", out), out

    configs_tool(bs, "--alter", "--entity-type", "topics", "--entity-name", topic_name,
                 "--delete-config", "retention.ms")
    out = configs_tool(bs, "--describe", "--entity-type", "topics", "--entity-name", topic_name)
    assert "retention.ms" not in out, out
    assert "cleanup.policy" in out

    code, out = configs_tool(bs, "--alter", "--entity-type", "topics", "--entity-name", topic_name,
                             "--add-config", "retention.ms=forever", check=False)
    assert code != 0 and "InvalidConfigurationException" in out, out


def test_kafka_configs_tool_broker_and_cluster_default(broker_factory, topic_name):
    broker = broker_factory(log_retention_ms=600000)
    bs = broker.bootstrap
    configs_tool(bs, "--alter", "--entity-type", "brokers", "--entity-name", "1",
                 "--add-config", "log.retention.ms=1234")
    configs_tool(bs, "--alter", "--entity-type", "brokers", "--entity-default",
                 "--add-config", "log.cleaner.backoff.ms=16000,log.retention.ms=4321")
    out = configs_tool(bs, "--describe", "--entity-type", "brokers", "--entity-name", "1")
    assert re.search(r"log\.retention\.ms=1234 sensitive=false synonyms=\{DYNAMIC_BROKER_CONFIG:log\.retention\.ms=1234, "
                     r"DYNAMIC_DEFAULT_BROKER_CONFIG:log\.retention\.ms=4321, STATIC_BROKER_CONFIG:log\.retention\.ms=600000", out), out
    out = configs_tool(bs, "--describe", "--entity-type", "brokers", "--entity-default")
    assert "log.cleaner.backoff.ms=16000" in out and "log.retention.ms=4321" in out, out

    # The per-broker value is what new topics get, with its source.
    create_topic(bs, topic_name)

    def retention_from_broker():
        retention = describe(bs, TOPIC, topic_name)["retention.ms"]
        return (retention.value, retention.source) == ("1234", ConfigSource.DYNAMIC_BROKER_CONFIG.value)
    settled(retention_from_broker)
    broker_entry = describe(bs, BROKER, "1")["log.retention.ms"]
    assert (broker_entry.value, broker_entry.source) == ("1234", ConfigSource.DYNAMIC_BROKER_CONFIG.value)
    assert not broker_entry.is_read_only
    assert describe(bs, BROKER, "1")["num.partitions"].is_read_only

    configs_tool(bs, "--alter", "--entity-type", "brokers", "--entity-name", "1",
                 "--delete-config", "log.retention.ms")

    def retention_from_default():
        retention = describe(bs, TOPIC, topic_name)["retention.ms"]
        return (retention.value, retention.source) == ("4321", ConfigSource.DYNAMIC_DEFAULT_BROKER_CONFIG.value)
    settled(retention_from_default)

    # Kafka lists its log4j loggers; Josefine has none (RUST_LOG), but the command must work.
    out = configs_tool(bs, "--describe", "--entity-type", "broker-loggers", "--entity-name", "1")
    assert "configs for broker-logger 1 are" in out, out

    # Settings Kafka does not change at run time: INVALID_REQUEST "Cannot update ... dynamically".
    code, out = configs_tool(bs, "--alter", "--entity-type", "brokers", "--entity-default",
                             "--add-config", "num.partitions=3", check=False)
    assert code != 0 and "Cannot update these configs dynamically" in out, out
    err = error_of(incremental, bs, BROKER, "1", [(SET, "log.retention.hours", "3")])
    assert err.code() == KafkaError.INVALID_REQUEST
    err = error_of(incremental, bs, BROKER, "1", [(SET, "log.retention.ms", "soon")])
    assert err.code() == KafkaError.INVALID_REQUEST
    err = error_of(incremental, bs, BROKER, "1", [(APPEND, "log.retention.ms", "5")])
    assert err.code() == KafkaError.INVALID_CONFIG, err
    # APPEND on the list-typed broker setting works like the topic one.
    incremental(bs, BROKER, "1", [(APPEND, "log.cleanup.policy", "compact")])
    settled(lambda: sorted(describe(bs, BROKER, "1")["log.cleanup.policy"].value.split(","))
            == ["compact", "delete"])


def test_alters_survive_restart(broker_factory, topic_name):
    broker = broker_factory()
    bs = broker.bootstrap
    create_topic(bs, topic_name)
    incremental(bs, TOPIC, topic_name, [(SET, "max.message.bytes", "100000"), (SET, "retention.ms", "777777")])
    incremental(bs, BROKER, "1", [(SET, "log.segment.bytes", "2097152")])
    broker.restart()
    configs = describe(bs, TOPIC, topic_name)
    assert configs["retention.ms"].value == "777777"
    assert configs["max.message.bytes"].value == "100000"
    assert (configs["segment.bytes"].value, configs["segment.bytes"].source) == (
        "2097152", ConfigSource.DYNAMIC_BROKER_CONFIG.value)
    # And still honoured after the restart.
    log = produce_all(big_producer(bs), topic_name, [(None, b"y" * 200_000, None)])
    (error,) = [r[4] for r in log.reports]
    assert error is not None and error.code() == KafkaError.MSG_SIZE_TOO_LARGE, error


def test_dynamic_cluster_default_is_honoured_by_existing_topics(broker_factory, topic_name):
    broker = broker_factory()
    bs = broker.bootstrap
    create_topic(bs, topic_name)
    value = b"z" * 200_000
    assert not produce_all(big_producer(bs), topic_name, [(None, value, None)]).errors()
    configs_tool(bs, "--alter", "--entity-type", "brokers", "--entity-default",
                 "--add-config", "message.max.bytes=100000")
    # Kafka applies a dynamic default to its logs asynchronously; Josefine before answering.
    deadline = time.monotonic() + TIMEOUT_S
    while True:
        log = produce_all(big_producer(bs), topic_name, [(None, value, None)])
        (error,) = [r[4] for r in log.reports]
        if error is not None or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert error is not None and error.code() == KafkaError.MSG_SIZE_TOO_LARGE, error
    # A topic override beats the dynamic default.
    incremental(bs, TOPIC, topic_name, [(SET, "max.message.bytes", "300000")])
    settled(lambda: describe(bs, TOPIC, topic_name)["max.message.bytes"].value == "300000")
    assert not produce_all(big_producer(bs), topic_name, [(None, value, None)]).errors()

"""DescribeConfigs parity with Apache Kafka 4.1, and Kafka's dynamic broker configs.

The differential test compares every config of a default broker and a default topic (names,
types, read_only, sensitive, and the value of every config left at its default) with the facts
Kafka 4.1.2 reported (tests/integration/data/kafka-describe-configs.json, written by
scripts/gen-kafka-broker-configs). Against Kafka (BROKER=kafka) it must find no difference,
which checks the snapshot; against Josefine every difference must be one of ACCEPTED, each with
its reason (README "Configuration"). The alter tests pass on both brokers.
"""

import json
from pathlib import Path

import pytest
from confluent_kafka import KafkaException
from confluent_kafka.admin import AlterConfigOpType, ConfigEntry, ConfigResource

from clients import admin, create_topic
from config_wire import describe_configs
from conftest import BROKER_KIND
from test_configs import configs_tool
from test_java_tools import _kafka_jars  # noqa: F401 - the fixture checks the jars

SNAPSHOT = json.loads((Path(__file__).parent / "data" / "kafka-describe-configs.json").read_text())
BROKER, TOPIC = 4, 2
TIMEOUT_S = 30

# Differences from Kafka 4.1 that Josefine keeps on purpose: (resource, config) -> reason.
ACCEPTED = {
    ("broker", "log.retention.ms"): "default shown as the effective 604800000; Kafka shows null (its default is log.retention.hours)",
    ("broker", "log.roll.ms"): "default shown as the effective 604800000; Kafka shows null (its default is log.roll.hours)",
    ("broker", "max.connections"): "bounded default (4096, limits.rs) instead of unlimited",
    ("broker", "queued.max.requests"): "Josefine's meaning: in-flight requests per connection (16), not the request queue (500)",
    ("broker", "offsets.topic.replication.factor"): "default min(3, number of voters), so a single node works unconfigured",
    ("broker", "transaction.state.log.replication.factor"): "default min(3, number of voters), the rule of offsets.topic.replication.factor",
    ("broker", "transaction.state.log.min.isr"): "default min(2, transaction.state.log.replication.factor), so a single node works unconfigured",
    ("broker", "broker.session.close.grace.ms"): "Josefine-only setting (fence a broker whose session connection closed)",
    ("broker", "cluster.id"): "Josefine takes the cluster id as a setting (Kafka: kafka-storage format)",
    ("broker", "leader.imbalance.per.broker.percentage"): "accepted and reported; Kafka 4.1 removed it (its KRaft controller ignores it)",
    ("broker", "unclean.leader.election.interval.ms"): "Josefine names the controller's unclean election interval",
    ("broker", "super.users"): "StandardAuthorizer setting: Josefine lists it; the Kafka reference runs without an authorizer, so it has no such entry",
    ("broker", "allow.everyone.if.no.acl.found"): "StandardAuthorizer setting: Josefine lists it; the Kafka reference runs without an authorizer, so it has no such entry",
    ("topic", "follower.replication.throttled.replicas"): "no replication throttling",
    ("topic", "leader.replication.throttled.replicas"): "no replication throttling",
    ("topic", "local.retention.bytes"): "no tiered storage",
    ("topic", "local.retention.ms"): "no tiered storage",
    ("topic", "remote.log.copy.disable"): "no tiered storage",
    ("topic", "remote.log.delete.on.disable"): "no tiered storage",
    ("topic", "remote.storage.enable"): "no tiered storage",
}


def differences(kind, described):
    """{(kind, name): what differs} between a DescribeConfigs answer and the Kafka facts."""
    out = {}
    facts = SNAPSHOT[kind]
    for name, f in facts.items():
        e = described.get(name)
        if e is None:
            out[(kind, name)] = "missing"
            continue
        d = [f"{field} {e[field]!r} (Kafka {f[field]!r})"
             for field in ("type", "read_only", "sensitive") if e[field] != f[field]]
        if e["source"] == "DEFAULT_CONFIG" and e["value"] != f["default"]:
            d.append(f"default {e['value']!r} (Kafka {f['default']!r})")
        if d:
            out[(kind, name)] = "; ".join(d)
    for name in set(described) - set(facts):
        out[(kind, name)] = "not in Kafka"
    return out


def test_describe_configs_of_a_default_broker_and_topic_match_kafka(shared_broker, topic_name):
    create_topic(shared_broker.bootstrap, topic_name)
    error, message, broker = describe_configs(shared_broker, BROKER, "1")
    assert error == 0, message
    error, message, topic = describe_configs(shared_broker, TOPIC, topic_name)
    assert error == 0, message
    found = {**differences("broker", broker), **differences("topic", topic)}
    if BROKER_KIND == "kafka":
        assert not found, found
        return
    unexplained = {k: v for k, v in found.items() if k not in ACCEPTED}
    assert not unexplained, unexplained
    stale = [k for k in ACCEPTED if k not in found]
    assert not stale, f"fixed, remove from ACCEPTED: {stale}"


def incremental(bs, name, key, value, op=AlterConfigOpType.SET):
    client = admin(bs)
    resource = ConfigResource(ConfigResource.Type.BROKER, name,
                              incremental_configs=[ConfigEntry(key, value, incremental_operation=op)])
    (future,) = client.incremental_alter_configs([resource], request_timeout=TIMEOUT_S).values()
    return future.result(timeout=TIMEOUT_S)


def refusal(bs, name, key, value):
    with pytest.raises(KafkaException) as info:
        incremental(bs, name, key, value)
    return info.value.args[0]


def broker_entry(broker, key):
    return describe_configs(broker, BROKER, "1", documentation=False)[2][key]


def test_kafkas_dynamic_broker_configs_are_stored_and_described(broker_factory):
    """Configs Kafka treats as dynamic (thread pools, SASL Kerberos timing, SSL cipher suites)
    are accepted per broker and reported with their source; Josefine stores them."""
    broker = broker_factory()
    bs = broker.bootstrap
    for key, value in [("num.io.threads", "16"), ("log.cleaner.threads", "2"),
                       ("sasl.kerberos.min.time.before.relogin", "120000"),
                       ("num.replica.fetchers", "2"), ("producer.id.expiration.ms", "600000")]:
        incremental(bs, "1", key, value)
        deadline_entry = broker_entry(broker, key)
        for _ in range(50):
            if deadline_entry["value"] == value:
                break
            deadline_entry = broker_entry(broker, key)
        assert (deadline_entry["value"], deadline_entry["source"]) == (value, "DYNAMIC_BROKER_CONFIG"), (key, deadline_entry)
        assert deadline_entry["synonyms"][0] == (key, value, "DYNAMIC_BROKER_CONFIG")
        assert deadline_entry["read_only"] is False
    # Cluster-wide: the thread pools may be set there too.
    configs_tool(bs, "--alter", "--entity-type", "brokers", "--entity-default",
                 "--add-config", "num.io.threads=12")
    incremental(bs, "1", "num.io.threads", None, AlterConfigOpType.DELETE)
    for _ in range(50):
        # Kafka may briefly describe the deleted per-broker value under the new source.
        e = broker_entry(broker, "num.io.threads")
        if (e["value"], e["source"]) == ("12", "DYNAMIC_DEFAULT_BROKER_CONFIG"):
            break
    assert (e["value"], e["source"]) == ("12", "DYNAMIC_DEFAULT_BROKER_CONFIG"), e


def test_kafkas_refusals_for_broker_configs(shared_broker):
    bs = shared_broker.bootstrap
    # Wrong type.
    err = refusal(bs, "1", "num.io.threads", "many")
    assert "num.io.threads" in err.str(), err
    # Out of the range Kafka's own validator allows, for configs Josefine only stores too
    # (scripts/KafkaConfigValidators.java reads the validators from Kafka's ConfigDef).
    for key, value, message in [
        ("num.io.threads", "0", "Value must be at least 1"),
        ("max.connections", "-1", "Value must be at least 0"),
        ("log.cleaner.min.cleanable.ratio", "2", "Value must be no more than 1"),
        ("compression.gzip.level", "12", "Value must be between 1 and 9 or equal to -1"),
        ("ssl.client.auth", "sometimes", "String must be one of: required, requested, none"),
    ]:
        err = refusal(bs, "1", key, value)
        assert err.str().startswith(f"Invalid value {value}") and err.str().endswith(
            f"for configuration {key}: {message}"), (key, err.str())
    # Static-only.
    err = refusal(bs, "1", "num.partitions", "3")
    assert "Cannot update these configs dynamically" in err.str(), err
    # SSL store configs: only under a listener prefix.
    err = refusal(bs, "1", "ssl.keystore.location", "/tmp/none.jks")
    assert "only per-listener" in err.str(), err
    # Per-broker configs are refused cluster-wide.
    code, out = configs_tool(bs, "--alter", "--entity-type", "brokers", "--entity-default",
                             "--add-config", "sasl.kerberos.min.time.before.relogin=120000", check=False)
    assert code != 0 and "broker id must be specified" in out, out
    assert broker_entry(shared_broker, "sasl.kerberos.min.time.before.relogin")["source"] == "DEFAULT_CONFIG"

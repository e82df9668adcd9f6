"""Issue 15, acceptance 5 (positive half): the minimal ACL sets Kafka documents are enough for
real clients, and taking one ACL away refuses them with Kafka's error. One broker with the
authorizer on and the default deny; the test administers it as ANONYMOUS (a super user) on a
PLAINTEXT listener, and the clients authenticate with SASL/PLAIN on another:

- an idempotent producer: WRITE on the topic (KIP-679: enough for InitProducerId);
- a consumer group: READ on the topic and READ on the group;
- a transactional producer: WRITE on the transactional id and WRITE on the topic.

The negative half (every API refused to a principal without ACLs, nothing changed) is
crates/broker/tests/acl_every_api.rs. Runs on Kafka 4.1.2 too (BROKER=kafka: the same settings
go to scripts/kafka-reference).
"""

import time
import uuid

import pytest
from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import (AclBinding, AclOperation, AclPermissionType, AdminClient,
                                   NewTopic, ResourcePatternType, ResourceType)

from conftest import free_port
from test_josefine_cli import _wait_api_versions
from test_security_scram import _start_broker

USERS = {"producer": "producer-pw", "consumer": "consumer-pw", "txn": "txn-pw"}
JAAS = ("org.apache.kafka.common.security.plain.PlainLoginModule required "
        + " ".join(f'user_{u}="{p}"' for u, p in USERS.items()) + ";")


@pytest.fixture(scope="module")
def broker(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("acl-apis")
    plain, sasl = free_port(), free_port()
    proc = _start_broker(tmp, [
        f"listeners=PLAINTEXT://127.0.0.1:{plain},SASL_PLAINTEXT://127.0.0.1:{sasl}",
        "inter.broker.listener.name=PLAINTEXT",
        "sasl.enabled.mechanisms=PLAIN",
        f"listener.name.sasl_plaintext.plain.sasl.jaas.config={JAAS}",
        "authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer",
        "allow.everyone.if.no.acl.found=false",
        "super.users=User:ANONYMOUS",
    ], extra=[])
    _wait_api_versions(plain, proc, timeout_s=180)
    yield {"admin": f"127.0.0.1:{plain}", "sasl": f"127.0.0.1:{sasl}"}
    proc.kill()
    proc.wait()


def _conf(b, user, **extra):
    return {"bootstrap.servers": b["sasl"], "security.protocol": "SASL_PLAINTEXT",
            "sasl.mechanism": "PLAIN", "sasl.username": user, "sasl.password": USERS[user],
            **extra}


def _admin(b):
    return AdminClient({"bootstrap.servers": b["admin"]})


def _topic(b):
    name = f"acl-apis-{uuid.uuid4().hex[:8]}"
    admin = _admin(b)
    admin.create_topics([NewTopic(name, 1, 1)])[name].result(30)
    return name


def _allow(b, user, resource_type, name, *operations):
    bindings = [AclBinding(resource_type, name, ResourcePatternType.LITERAL, f"User:{user}", "*",
                           op, AclPermissionType.ALLOW) for op in operations]
    admin = _admin(b)
    for f in admin.create_acls(bindings).values():
        f.result(30)


def _deny(b, user, resource_type, name, operation):
    binding = AclBinding(resource_type, name, ResourcePatternType.LITERAL, f"User:{user}", "*",
                         operation, AclPermissionType.DENY)
    admin = _admin(b)
    for f in admin.create_acls([binding]).values():
        f.result(30)


def _produce(conf, topic, n=3, transactional=False):
    """Produces n records; returns the delivery errors (None for each delivered)."""
    errors = []
    p = Producer({"message.timeout.ms": 15000, "acks": "all", **conf})
    if transactional:
        p.init_transactions(30)
        p.begin_transaction()
    for i in range(n):
        p.produce(topic, value=b"v%d" % i, on_delivery=lambda err, msg: errors.append(err))
    if transactional:
        p.commit_transaction(30)
    p.flush(30)
    return errors


def test_minimal_idempotent_producer(broker):
    t = _topic(broker)
    conf = _conf(broker, "producer", **{"enable.idempotence": True})
    _allow(broker, "producer", ResourceType.TOPIC, t, AclOperation.WRITE)
    assert _produce(conf, t) == [None] * 3
    # Without WRITE on the topic: Kafka's error for the record.
    other = _topic(broker)
    errors = _produce(_conf(broker, "producer"), other, n=1)
    assert [e.code() for e in errors] == [KafkaError.TOPIC_AUTHORIZATION_FAILED]


def _consume(conf, topic, want, timeout_s=30):
    c = Consumer({"auto.offset.reset": "earliest", "enable.auto.commit": False, **conf})
    c.subscribe([topic])
    got, error = [], None
    try:
        deadline = time.monotonic() + timeout_s
        while len(got) < want and time.monotonic() < deadline and error is None:
            m = c.poll(0.5)
            if m is None:
                continue
            if m.error():
                error = m.error()
            else:
                got.append(m.value())
        if got and error is None:
            c.commit(asynchronous=False)
    except KafkaException as e:
        error = e.args[0]
    finally:
        c.close()
    return got, error


def test_minimal_consumer_group(broker):
    t = _topic(broker)
    assert _produce({"bootstrap.servers": broker["admin"]}, t) == [None] * 3
    group = f"acl-g-{uuid.uuid4().hex[:8]}"
    conf = _conf(broker, "consumer", **{"group.id": group})
    _allow(broker, "consumer", ResourceType.TOPIC, t, AclOperation.READ)
    # READ on the topic without READ on the group: the group refuses.
    got, error = _consume(conf, t, 3, timeout_s=15)
    assert error is not None and error.code() == KafkaError.GROUP_AUTHORIZATION_FAILED, (got, error)
    _allow(broker, "consumer", ResourceType.GROUP, group, AclOperation.READ)
    got, error = _consume(conf, t, 3)
    assert error is None and got == [b"v0", b"v1", b"v2"], (got, error)
    # The commit landed under the group (read back by the admin).
    committed = Consumer({"bootstrap.servers": broker["admin"], "group.id": group})
    offsets = committed.committed([TopicPartition(t, 0)], timeout=30)
    committed.close()
    assert offsets[0].offset == 3


def test_minimal_transactional_producer(broker):
    t = _topic(broker)
    txn = f"acl-tx-{uuid.uuid4().hex[:8]}"
    conf = _conf(broker, "txn", **{"transactional.id": txn})
    _allow(broker, "txn", ResourceType.TOPIC, t, AclOperation.WRITE)
    # WRITE on the topic but not on the transactional id: init_transactions is refused.
    with pytest.raises(KafkaException) as refused:
        _produce(conf, t, transactional=True)
    assert refused.value.args[0].code() == KafkaError.TRANSACTIONAL_ID_AUTHORIZATION_FAILED
    _allow(broker, "txn", ResourceType.TRANSACTIONAL_ID, txn, AclOperation.WRITE)
    assert _produce(conf, t, transactional=True) == [None] * 3
    # A DENY on the topic wins over the ALLOW: the transaction cannot add the partition.
    _deny(broker, "txn", ResourceType.TOPIC, t, AclOperation.WRITE)
    with pytest.raises(KafkaException):
        _produce(conf, t, n=1, transactional=True)

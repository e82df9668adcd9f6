"""confluent-kafka (librdkafka): topic admin and the 100,000-message idempotent round trip.

The round trip is the issue's definition of done: acks=all with enable.idempotence, every
message read back in order, then again after SIGKILL and restart.
"""

from confluent_kafka import KafkaError, KafkaException, Producer, TopicCollection
from confluent_kafka.admin import NewTopic

from clients import admin, create_topic, produce_all, read_partition, watermarks

MESSAGES = 100_000


def test_create_and_describe_topic(shared_broker, topic_name):
    create_topic(shared_broker.bootstrap, topic_name, partitions=3)

    md = admin(shared_broker.bootstrap).list_topics(topic=topic_name, timeout=10)
    t = md.topics[topic_name]
    assert t.error is None, t.error
    assert sorted(t.partitions) == [0, 1, 2]
    for p in t.partitions.values():
        assert p.leader == 1 and p.replicas == [1] and p.isrs == [1], p

    client = admin(shared_broker.bootstrap)
    desc = client.describe_topics(TopicCollection([topic_name]))[topic_name].result(timeout=10)
    assert desc.name == topic_name
    assert not desc.is_internal
    assert [p.id for p in desc.partitions] == [0, 1, 2]
    assert all(p.leader.id == 1 for p in desc.partitions)


def test_create_existing_topic_fails(shared_broker, topic_name):
    create_topic(shared_broker.bootstrap, topic_name)
    client = admin(shared_broker.bootstrap)
    fut = client.create_topics([NewTopic(topic_name, 1, 1)])[topic_name]
    try:
        fut.result(timeout=10)
    except KafkaException as exc:
        assert exc.args[0].code() == KafkaError.TOPIC_ALREADY_EXISTS, exc
    else:
        raise AssertionError("creating an existing topic succeeded")


def _records(start, count):
    return [(b"k%06d" % i, b"value-%06d" % i, None) for i in range(start, start + count)]


def _check_in_order(msgs, start=0):
    for i, m in enumerate(msgs):
        assert m.offset() == start + i, f"message {i}: offset {m.offset()}"
        assert m.value() == b"value-%06d" % (start + i), f"message {i}: value {m.value()!r}"
        assert m.key() == b"k%06d" % (start + i)


def test_100k_idempotent_round_trip_survives_sigkill(broker_factory, topic_name):
    broker = broker_factory()
    create_topic(broker.bootstrap, topic_name)
    producer = Producer({
        "bootstrap.servers": broker.bootstrap,
        "acks": "all",
        "enable.idempotence": True,
        "linger.ms": 5,
    })
    log = produce_all(producer, topic_name, _records(0, MESSAGES))
    assert not log.errors(), log.errors()[:5]
    assert [r[3] for r in log.reports] == list(range(MESSAGES)), "delivery offsets not dense and in order"

    _check_in_order(read_partition(broker.bootstrap, topic_name, MESSAGES))
    assert watermarks(broker.bootstrap, topic_name) == (0, MESSAGES)

    del producer  # its reconnect attempts would only add noise to the log
    broker.kill()
    broker.start()

    assert watermarks(broker.bootstrap, topic_name) == (0, MESSAGES)
    _check_in_order(read_partition(broker.bootstrap, topic_name, MESSAGES))


def test_idempotent_small_batches_pipelined(shared_broker, topic_name):
    """Many small batches with up to 5 produce requests in flight on one connection: the
    broker must apply them in request order, or the sequence checks reject the later ones."""
    create_topic(shared_broker.bootstrap, topic_name)
    producer = Producer({
        "bootstrap.servers": shared_broker.bootstrap,
        "acks": "all",
        "enable.idempotence": True,
        "max.in.flight.requests.per.connection": 5,
        "linger.ms": 0,
        "batch.num.messages": 50,
    })
    total = 20_000
    log = produce_all(producer, topic_name, _records(0, total))
    assert not log.errors(), log.errors()[:5]
    assert [r[3] for r in log.reports] == list(range(total)), "delivery offsets not dense and in order"
    _check_in_order(read_partition(shared_broker.bootstrap, topic_name, total))

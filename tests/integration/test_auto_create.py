"""Topic auto-creation: on by `auto.create.topics.enable=true` (with `num.partitions`),
and the error clients get for an unknown topic when it is off."""

from confluent_kafka import KafkaError, Producer
from kafka import KafkaProducer

from clients import admin, read_partition


def test_auto_create_on_metadata_and_produce(broker_factory, topic_name):
    broker = broker_factory(**{"auto.create.topics.enable": "true", "num.partitions": "3"})

    # kafka-python asks Metadata with allow_auto_topic_creation=true.
    kp = KafkaProducer(bootstrap_servers=broker.bootstrap)
    try:
        assert kp.partitions_for(f"{topic_name}-md") == {0, 1, 2}
    finally:
        kp.close()

    # librdkafka's producer: produce to a topic nobody created.
    producer = Producer({"bootstrap.servers": broker.bootstrap, "acks": "all"})
    errors = []
    producer.produce(f"{topic_name}-prod", value=b"first", partition=0,
                     on_delivery=lambda err, _m: errors.append(err))
    assert producer.flush(60) == 0
    assert errors == [None]
    md = admin(broker.bootstrap).list_topics(timeout=10)
    assert sorted(md.topics[f"{topic_name}-prod"].partitions) == [0, 1, 2]
    assert sorted(md.topics[f"{topic_name}-md"].partitions) == [0, 1, 2]
    [msg] = read_partition(broker.bootstrap, f"{topic_name}-prod", 1)
    assert msg.value() == b"first"


def test_unknown_topic_when_auto_create_disabled(broker_factory, topic_name):
    broker = broker_factory(**{"auto.create.topics.enable": "false"})
    client = admin(broker.bootstrap)
    md = client.list_topics(topic=topic_name, timeout=10)
    err = md.topics[topic_name].error
    assert err is not None and err.code() == KafkaError.UNKNOWN_TOPIC_OR_PART, err

    kp = KafkaProducer(bootstrap_servers=broker.bootstrap, max_block_ms=3000)
    try:
        assert kp.partitions_for(topic_name) in (None, set())
    except Exception as exc:  # noqa: BLE001 - kafka-python raises a timeout for unknown topics
        assert "KafkaTimeoutError" in type(exc).__name__ or "not present" in str(exc), repr(exc)
    finally:
        kp.close()

    producer = Producer({"bootstrap.servers": broker.bootstrap, "acks": "all", "message.timeout.ms": 10000,
                         # declare the topic unknown after 1 s instead of waiting for it to appear
                         "topic.metadata.propagation.max.ms": 1000})
    errors = []
    producer.produce(topic_name, value=b"x", on_delivery=lambda err, _m: errors.append(err))
    producer.flush(30)
    assert len(errors) == 1 and errors[0] is not None
    assert errors[0].code() in (KafkaError.UNKNOWN_TOPIC_OR_PART, KafkaError._UNKNOWN_TOPIC), errors[0]

    assert topic_name not in client.list_topics(timeout=10).topics, "topic was created anyway"

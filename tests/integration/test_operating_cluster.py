"""Issue 14's metrics on a three-broker cluster (marker `cluster`): every node's /metrics agrees
on one active controller, the chain term and three unfenced brokers; killing a follower of an
RF=3 partition raises its leader's `isr_shrinks_total` (under writes) and `partitions_under_replicated`, and
its return raises `isr_expands_total` and clears it.

Josefine-only (Kafka exports JMX, not /metrics).
"""

import signal

import pytest

import clients
from confluent_kafka import Producer
from cluster import wait_until
from conftest import BROKER_KIND, free_port
from test_operating import Scrape, _Url

pytestmark = [
    pytest.mark.cluster,
    pytest.mark.skipif(BROKER_KIND != "josefine",
                       reason="Josefine-only: Apache Kafka exports JMX, not /metrics"),
]


def scrape(node):
    return Scrape(_Url(f"http://127.0.0.1:{node.http_port}"))


def test_cluster_metrics_agree_and_count_isr_changes(cluster_factory):
    c = cluster_factory(settings={"replica.lag.time.max.ms": "3000"}, start=False)
    for node in c.nodes:
        node.http_port = free_port()
        node.extra_args = ["--http-listen", f"127.0.0.1:{node.http_port}"]
    c.start()

    def agreed():
        s = [scrape(n) for n in c.nodes]
        terms = {x.get("josefine_chain_term") for x in s}
        return (sum(x.get("josefine_controller_active") for x in s) == 1 and len(terms) == 1
                and all(x.get("josefine_brokers", state="unfenced") == 3 for x in s))
    wait_until(agreed, "one active controller, one chain term, three unfenced brokers on every node")

    topic = "ops-isr"
    admin = clients.admin(c.bootstrap())
    from confluent_kafka.admin import NewTopic
    admin.create_topics([NewTopic(topic, num_partitions=1, replication_factor=3)],
                        operation_timeout=30)[topic].result(30)
    c.wait_topic(topic, 1)
    leader_id = c.leaders(topic, via=c.nodes[0])[0][0]
    leader = c.node(leader_id)
    follower = next(n for n in c.nodes if n.node_id != leader_id and n.node_id != c.controller())
    before = scrape(leader)
    assert before.get("josefine_partitions_under_replicated") == 0
    shrinks = before.get("josefine_isr_shrinks_total")
    expands = before.get("josefine_isr_expands_total")

    follower.stop(signal.SIGKILL)
    # Whichever comes first removes it from the ISR: the leader (writes keep the dead follower
    # behind, replica.lag.time.max.ms) or the controller fencing it.
    producer = Producer({"bootstrap.servers": leader.bootstrap, "acks": "1"})

    def shrunk():
        producer.produce(topic, value=b"tick", partition=0)
        producer.flush(5)
        s = scrape(leader)
        return (s.get("josefine_isr_shrinks_total") > shrinks
                and s.get("josefine_partitions_under_replicated") == 1)
    wait_until(shrunk, "the leader's ISR shrink counted and the partition under-replicated",
               timeout_s=60, interval_s=0.5)
    follower.start()
    wait_until(lambda: scrape(leader).get("josefine_isr_expands_total") > expands
               and scrape(leader).get("josefine_partitions_under_replicated") == 0,
               "the leader's ISR expansion counted and the partition fully replicated", timeout_s=60)

"""Issue 10, acceptance test 1: three brokers started in random order (one at a time, 1.5 s
apart, so the first is alone for 3 s) form one cluster with no other step; Metadata answered
by each broker is identical (brokers with racks, cluster id, topics, topic ids, leaders,
leader epochs, replicas, ISR); kcat -L through each broker agrees with it.
"""

import uuid

import pytest

import wire
from cluster import comparable, josefine_status, kcat_metadata, wait_until
from conftest import BROKER_KIND

pytestmark = pytest.mark.cluster

RACKS = ["r1", "r2", "r3"]


def _kcat_view(md: dict) -> dict:
    return {t["topic"]: {p["partition"]: (p["leader"], [r["id"] for r in p["replicas"]],
                                          [r["id"] for r in p["isrs"]]) for p in t["partitions"]}
            for t in md["topics"]}


def test_random_start_order_forms_one_cluster(cluster_factory):
    c = cluster_factory(racks=RACKS, gap_s=1.5)

    # One topic created through each broker (the controller may be any of them).
    topics = {}
    for n in c.nodes:
        name = f"form-{n.node_id}-{uuid.uuid4().hex[:8]}"
        topics[name] = 2 * n.node_id
        with wire.Connection(n.host, n.port) as conn:
            result = conn.create_topics([(name, topics[name], 1, {})])
        assert result[name][0] == wire.NONE, f"CreateTopics {name} through {n}: {result}"

    def identical():
        views = {n.node_id: comparable(n.metadata()) for n in c.nodes}
        first = views[c.nodes[0].node_id]
        if not set(topics) <= set(first["topics"]):
            return None
        return first if all(v == first for v in views.values()) else None

    md = wait_until(identical, "Metadata identical on every broker", timeout_s=30)

    assert md["brokers"] == {n.node_id: (n.host, n.port, rack) for n, rack in zip(c.nodes, RACKS)}
    assert md["cluster_id"] == c.cluster_id
    topic_ids = [md["topics"][t]["topic_id"] for t in topics]
    assert len(set(topic_ids)) == len(topic_ids) and "0" * 32 not in topic_ids, topic_ids
    for name, count in topics.items():
        t = md["topics"][name]
        assert t["error"] == wire.NONE and not t["internal"], (name, t)
        assert sorted(t["partitions"]) == list(range(count)), (name, t)
        for p, v in t["partitions"].items():
            assert v["error"] == wire.NONE, (name, p, v)
            assert len(v["replicas"]) == 1 and v["replicas"][0] in md["brokers"], (name, p, v)
            assert v["leader"] == v["replicas"][0] and v["isr"] == v["replicas"], (name, p, v)
            assert v["leader_epoch"] == 0 and v["offline"] == [], (name, p, v)
    # Placement uses every broker (6 partitions of the last topic alone span all three).
    leaders = {v["leader"] for t in topics for v in md["topics"][t]["partitions"].values()}
    assert leaders == {1, 2, 3}, f"partition leaders {leaders}"

    # kcat (librdkafka 2.0) through each broker: the same brokers, leaders, replicas and ISR.
    for n in c.nodes:
        k = kcat_metadata(n.bootstrap)
        assert k["originating_broker"]["id"] == n.node_id, k["originating_broker"]
        assert {b["id"]: b["name"] for b in k["brokers"]} == {i: f"{h}:{p}" for i, (h, p, _) in md["brokers"].items()}
        assert k["controllerid"] in md["brokers"], k["controllerid"]
        assert _kcat_view(k) == {name: {p: (v["leader"], v["replicas"], v["isr"]) for p, v in t["partitions"].items()}
                                 for name, t in md["topics"].items()}

    # The controller is one of the three; Josefine's Metadata names it (the chain leader).
    controller = c.wait_controller(timeout_s=30)
    assert controller in (1, 2, 3)
    if BROKER_KIND == "josefine":
        assert md["controller_id"] == controller, f"Metadata controller_id {md['controller_id']}, chain leader {controller}"
        for n in c.nodes:
            status = josefine_status(n.raft_addr)
            assert status["leader"] == controller, f"{n} cluster-status:\n{status['raw']}"

"""The console's JSON API on a three-broker cluster (marker `cluster`): every node's
/api/v1/cluster and /api/v1/brokers agree with each other, with `josefine cluster-status` and
with Kafka's DescribeCluster on the brokers and the controller; a topic created through one
node's API is described by every node with the leaders, epochs and ISR Metadata reports, and
each partition's offsets appear on the nodes that host it.

Josefine-only (Apache Kafka has no HTTP listener).
"""

import json
import urllib.request

import pytest

import clients
from cluster import josefine_status, wait_until
from conftest import BROKER_KIND, free_port

pytestmark = [
    pytest.mark.cluster,
    pytest.mark.skipif(BROKER_KIND != "josefine", reason="Josefine-only: Apache Kafka has no console"),
]


def api(node, method, path, body=None):
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(f"http://127.0.0.1:{node.http_port}/api/v1/{path}", data=data,
                                 method=method)
    with urllib.request.urlopen(req, timeout=60) as r:
        return r.status, json.loads(r.read())


def test_every_node_reports_the_same_cluster(cluster_factory):
    c = cluster_factory(start=False)
    for node in c.nodes:
        node.http_port = free_port()
        node.extra_args = ["--http-listen", f"127.0.0.1:{node.http_port}"]
    c.start()

    def agreed():
        views = [api(n, "GET", "cluster")[1] for n in c.nodes]
        ids = {(v["cluster_id"], v["controller_id"], v["chain"]["leader"], v["chain"]["term"]) for v in views}
        unfenced = [sum(not b["fenced"] for b in v["brokers"]) for v in views]
        return len(ids) == 1 and unfenced == [3, 3, 3] and views
    views = wait_until(agreed, "every node's /api/v1/cluster agrees, three brokers unfenced")
    assert [v["node_id"] for v in views] == [1, 2, 3]
    view = views[0]
    status = josefine_status(c.nodes[0].raft_addr)
    assert status["leader"] == view["chain"]["leader"] and status["term"] == view["chain"]["term"]
    assert view["controller_id"] == c.controller()
    # The Kafka view: DescribeCluster through a client.
    admin = clients.admin(c.bootstrap())  # kept alive until the future resolves
    md = admin.describe_cluster().result(timeout=30)
    assert md.cluster_id == view["cluster_id"] and md.controller.id == view["controller_id"]
    assert sorted((n.id, n.port) for n in md.nodes) == sorted((b["id"], b["port"]) for b in view["brokers"])

    for n in c.nodes:
        brokers = api(n, "GET", "brokers")[1]["brokers"]
        assert [b["id"] for b in brokers] == [1, 2, 3]
        mine = [b for b in brokers if b["this_node"]]
        assert [b["id"] for b in mine] == [n.node_id] and mine[0]["log_dirs"]
        assert all(b["log_dirs"] is None for b in brokers if not b["this_node"])

    status, created = api(c.nodes[1], "POST", "topics",
                          {"name": "console-rf3", "partitions": 3, "replication_factor": 3})
    assert status == 201, created
    c.wait_topic("console-rf3", 3)
    wait_until(lambda: all(api(n, "GET", "cluster")[1]["partitions"]["under_replicated"] == 0
                           for n in c.nodes), "no partition under-replicated on any node")
    leaders = c.leaders("console-rf3", via=c.nodes[0])
    for n in c.nodes:
        t = api(n, "GET", "topics/console-rf3")[1]
        got = {p["partition"]: (p["leader"], p["leader_epoch"]) for p in t["partitions"]}
        assert got == leaders, (n.node_id, got, leaders)
        for p in t["partitions"]:
            assert sorted(p["replicas"]) == [1, 2, 3] and sorted(p["isr"]) == [1, 2, 3]
            # RF=3 on three nodes: every node hosts every partition.
            assert p["high_watermark"] == 0 and p["segments"] >= 1

"""The console's chain page on three brokers (issue 14, acceptance 6; marker `cluster`).

Every node's /api/v1/chain and /metrics agree with `josefine cluster-status` (leader, term,
commit, per-voter progress on the leader). Then a dead branch is made on purpose: with both
followers SIGSTOPped a CreateTopics via the leader times out (its block stays above the
commit point: the page draws it), the leader is SIGSTOPped, the followers resumed elect a new
leader and create a topic, and the old leader, resumed, collects its branch: the page lists it
with its CreateTopic block and `chain_dead_blocks_collected_total` rose by its length.
Screenshots of the chain page (uncommitted tree, collected branch) go to
tests/artifacts/console/ like the browser test's.

Josefine-only (Apache Kafka has no console).
"""

import json
import re
import socket
import threading
import urllib.request

import pytest
from confluent_kafka.admin import NewTopic

import clients
from cluster import josefine_status, wait_until
from conftest import BROKER_KIND, free_port
from test_console_browser import ARTIFACTS, browser  # noqa: F401 (fixture)

pytestmark = [
    pytest.mark.cluster,
    pytest.mark.skipif(BROKER_KIND != "josefine", reason="Josefine-only: Apache Kafka has no console"),
]


class Link:
    """A TCP forwarder in front of one node's raft address (the address the other voters dial),
    which the test can cut: every connection closed and new ones refused until healed.

    SIGSTOP alone cannot strand a block: the kernel of a stopped follower still takes the
    leader's frames into its socket buffer and the follower appends them when resumed, so the
    new leader would commit the block instead of killing it. Cutting the links in front of the
    stopped followers is what a real partition does: nothing the leader sends arrives."""

    def __init__(self, target_port: int):
        self.target = ("127.0.0.1", target_port)
        self.listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(64)
        self.port = self.listener.getsockname()[1]
        self.cut_now = False
        self.open = []
        self.lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            if self.cut_now:
                client.close()
                continue
            try:
                upstream = socket.create_connection(self.target, timeout=5)
            except OSError:
                client.close()
                continue
            upstream.settimeout(None)
            with self.lock:
                self.open += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    @staticmethod
    def _pump(src, dst):
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        for sock in (src, dst):
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def cut(self):
        self.cut_now = True
        with self.lock:
            for sock in self.open:
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                sock.close()
            self.open = []

    def heal(self):
        self.cut_now = False

    def close(self):
        self.cut()
        self.listener.close()


def chain(node) -> dict:
    url = f"http://127.0.0.1:{node.http_port}/api/v1/chain"
    with urllib.request.urlopen(url, timeout=30) as r:
        return json.loads(r.read())


def metric(node, name: str, **labels) -> float:
    """One sample of the node's /metrics (None if absent)."""
    with urllib.request.urlopen(f"http://127.0.0.1:{node.http_port}/metrics", timeout=30) as r:
        text = r.read().decode()
    want = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    pattern = rf"^{re.escape(name)}(?:\{{{re.escape(want)}\}})? (\S+)$" if want else \
        rf"^{re.escape(name)} (\S+)$"
    m = re.search(pattern, text, re.MULTILINE)
    return float(m.group(1)) if m else None


def shot(browser, node, name: str, ready: str):  # noqa: F811 (fixture)
    page = browser.new_page(viewport={"width": 1280, "height": 800})
    errors = []
    page.on("console", lambda m: m.type == "error" and errors.append(m.text))
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(f"http://127.0.0.1:{node.http_port}/#/chain")
    page.wait_for_selector(ready, timeout=30_000)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"chain-{name}.png"), full_page=True)
    text = page.locator("#main").inner_text()
    page.close()
    assert not errors, errors
    return text


def test_chain_page_shows_a_dead_branch_collected(cluster_factory, browser):  # noqa: F811
    c = cluster_factory(start=False)
    links = {}
    for node in c.nodes:
        node.http_port = free_port()
        node.extra_args = ["--http-listen", f"127.0.0.1:{node.http_port}"]
        links[node.node_id] = Link(node.raft_port)
    # Every voter dials the others through their links.
    c.voters = ",".join(f"{n.node_id}@127.0.0.1:{links[n.node_id].port}" for n in c.nodes)
    try:
        run_scenario(c, links, browser)
    finally:
        for link in links.values():
            link.close()


def run_scenario(c, links, browser):  # noqa: F811 (fixture)
    c.start()

    # API and metrics agree with cluster-status on every node.
    def agreed():
        views = {n.node_id: chain(n) for n in c.nodes}
        status = {n.node_id: josefine_status(n.raft_addr) for n in c.nodes}
        leaders = {v["leader"] for v in views.values()} | {s["leader"] for s in status.values()}
        terms = {v["term"] for v in views.values()} | {s["term"] for s in status.values()}
        if len(leaders) != 1 or None in leaders or len(terms) != 1:
            return None
        lead = views[leaders.pop()]
        if len(lead["voters"]) != 3 or any(v["lag_blocks"] != 0 for v in lead["voters"]):
            return None
        return views
    views = wait_until(agreed, "every node's /chain and cluster-status name one leader and term, voters caught up")
    leader_id = next(iter(views.values()))["leader"]
    leader = c.node(leader_id)
    followers = [n for n in c.nodes if n.node_id != leader_id]
    for n in c.nodes:
        v = views[n.node_id]
        assert v["role"] == ("Leader" if n.node_id == leader_id else "Follower")
        assert v["voter_ids"] == [1, 2, 3]
        assert metric(n, "josefine_chain_term") == v["term"]
        assert metric(n, "josefine_controller_active") == (1 if n.node_id == c.controller() else 0)
        if n is not leader:
            assert v["voters"] == []  # progress is the leader's knowledge
    assert sorted(v["id"] for v in views[leader_id]["voters"]) == [1, 2, 3]
    for v in views[leader_id]["voters"]:
        assert metric(leader, "josefine_chain_voter_lag_blocks", voter=str(v["id"])) is not None

    # Both followers stopped: the leader's CreateTopics cannot commit and times out.
    collected_before = metric(leader, "josefine_chain_dead_blocks_collected_total")
    before = chain(leader)
    for f in followers:
        f.pause()
        links[f.node_id].cut()
    admin = clients.admin(leader.bootstrap)
    futures = admin.create_topics([NewTopic("stranded", 1, 1)], operation_timeout=3,
                                  request_timeout=15)
    with pytest.raises(Exception) as stuck:
        futures["stranded"].result(timeout=30)
    assert "TIMED_OUT" in str(stuck.value).upper() or "TIMEOUT" in str(stuck.value).upper(), stuck.value
    stranded = wait_until(
        lambda: [b for b in chain(leader)["uncommitted"] if b["command"] == "CreateTopic"],
        "the leader's CreateTopic block above its commit point")
    text = shot(browser, leader, "uncommitted", "svg.tree")
    assert "CreateTopic" in text

    # The leader stopped, the followers resumed: they elect a leader and create a topic.
    leader.pause()
    for f in followers:
        links[f.node_id].heal()
        f.resume()
    new_leader = wait_until(lambda: (chain(followers[0])["leader"] in {f.node_id for f in followers}
                                     and chain(followers[0])["leader"]), "a new leader among the followers")
    clients.create_topic(c.bootstrap(followers), "after-failover", partitions=1)

    # The old leader resumed: it follows and collects its dead branch.
    leader.resume()
    def collected():
        v = chain(leader)
        ours = [d for d in v["dead_branches"]
                if any(b["height"] == stranded[0]["height"] and b["term"] == stranded[0]["term"]
                       for b in d["blocks"])]
        return v["leader"] == new_leader and ours and (v, ours)
    try:
        view, ours = wait_until(collected, "the old leader lists its stranded CreateTopic as collected")
    except AssertionError:
        print("stranded", stranded, "\nold leader's chain", json.dumps(chain(leader)))
        raise
    new = view["dead_branches"][:len(view["dead_branches"]) - len(before["dead_branches"])]
    branch_blocks = sum(len(d["blocks"]) for d in new)
    assert any(b["command"] == "CreateTopic" for d in ours for b in d["blocks"])
    assert view["dead_blocks_collected"] - before["dead_blocks_collected"] == branch_blocks
    assert metric(leader, "josefine_chain_dead_blocks_collected_total") - collected_before == branch_blocks
    assert view["role"] == "Follower" and "stranded" not in [
        t for t in clients.admin(c.bootstrap()).list_topics(timeout=30).topics]
    text = shot(browser, leader, "collected", "text=Collected dead branches")
    assert "CreateTopic" in text

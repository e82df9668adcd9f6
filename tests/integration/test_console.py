"""The console's JSON API (issue 14, /api/v1): every route against a running broker, actions
checked with a Kafka admin client, --console read-only and off, foreign origins, and the
message browser's bounds (page sizes, truncation, nothing at or past the high watermark).

Josefine-only: Apache Kafka has no HTTP listener.
"""

import json
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import ConfigResource, ConfigSource

import clients
from conftest import BROKER_KIND, Broker, _cleanup, free_port

pytestmark = pytest.mark.skipif(
    BROKER_KIND != "josefine", reason="Josefine-only: Apache Kafka has no console")

# limits.rs: CONSOLE_PAGE_RECORDS_MAX, CONSOLE_PAGE_BYTES_MAX, CONSOLE_VALUE_BYTES_SHOWN_MAX.
PAGE_RECORDS_MAX = 500
PAGE_BYTES_MAX = 4 * 1024 * 1024
VALUE_SHOWN_MAX = 64 * 1024


class ConsoleBroker(Broker):
    """A broker with its HTTP listener on a free loopback port and a --console mode."""

    def __init__(self, data_dir: Path, settings: dict, console):
        super().__init__(data_dir, settings)
        self.http_port = free_port()
        self.extra_args = ["--http-listen", f"127.0.0.1:{self.http_port}"]
        if console:
            self.extra_args += ["--console", console]

    def api(self, method: str, path: str, body=None, headers=None):
        """(status, parsed JSON body)."""
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(f"http://127.0.0.1:{self.http_port}/api/v1/{path}",
                                     data=data, method=method, headers=headers or {})
        try:
            with urllib.request.urlopen(req, timeout=60) as r:
                return r.status, json.loads(r.read())
        except urllib.error.HTTPError as e:
            raw = e.read()
            try:
                return e.code, json.loads(raw)
            except ValueError:
                return e.code, raw.decode(errors="replace")

    def get(self, path: str):
        status, body = self.api("GET", path)
        assert status == 200, (path, status, body)
        return body


@pytest.fixture
def console_factory(request):
    root = Path(tempfile.mkdtemp(prefix="josefine-console-"))
    brokers = []

    def make(console=None, **settings):
        defaults = {"auto.create.topics.enable": "false", "num.partitions": "1",
                    "group.initial.rebalance.delay.ms": "0"}
        defaults.update({k.replace("_", "."): str(v) for k, v in settings.items()})
        b = ConsoleBroker(root / f"broker-{len(brokers) + 1}", defaults, console)
        brokers.append(b)
        b.start()
        return b

    try:
        yield make
    finally:
        for b in brokers:
            if b.proc is not None and b.proc.poll() is None:
                b.proc.kill()
                b.proc.wait()
        failed = getattr(request.node, "rep_call", None) is not None and request.node.rep_call.failed
        if failed:
            for b in brokers:
                print(f"\n---- log {b.log_path} ----\n{b.log_tail(60)}")
        _cleanup(root, request, keep=failed)


@pytest.fixture
def console(console_factory):
    return console_factory()


def produce(bootstrap, topic, records, partition=0):
    """records: (key, value, headers, timestamp_ms or None)."""
    p = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5, "message.max.bytes": 2_000_000})
    errors = []
    for key, value, headers, ts in records:
        kwargs = {"timestamp": ts} if ts else {}
        p.produce(topic, key=key, value=value, headers=headers, partition=partition,
                  on_delivery=lambda err, _m: err and errors.append(err), **kwargs)
        p.poll(0)
    assert p.flush(60) == 0
    assert not errors, errors


def test_cluster_and_brokers(console):
    c = console.get("cluster")
    assert c["node_id"] == 1 and c["controller_id"] == 1
    assert c["console"] == "read-write"
    assert [(b["id"], b["port"], b["fenced"]) for b in c["brokers"]] == [(1, console.port, False)]
    assert c["chain"]["role"] == "Leader" and c["chain"]["commit_height"] >= 1
    assert c["cluster_id"]
    # The cluster id is the one Kafka clients see.
    md = clients.admin(console.bootstrap).list_topics(timeout=30)
    assert md.cluster_id == c["cluster_id"]
    brokers = console.get("brokers")["brokers"]
    assert len(brokers) == 1 and brokers[0]["this_node"] is True
    assert brokers[0]["log_dirs"][0]["path"] == str(console.data_dir)
    configs = {x["name"]: x for x in brokers[0]["configs"]}
    assert configs["num.partitions"]["value"] == "1"
    assert configs["num.partitions"]["source"] == "STATIC_BROKER_CONFIG"
    assert configs["log.segment.bytes"]["source"] == "DEFAULT_CONFIG"


def test_chain_of_a_single_voter(console):
    before = console.get("chain")
    assert (before["role"], before["leader"], before["voter_ids"]) == ("Leader", 1, [1])
    assert before["commit"]["height"] >= 1 and before["commit"] == before["head"]
    assert before["voters"] == [{"id": 1, "matched": before["head"], "lag_blocks": 0}]
    assert before["uncommitted"] == [] and before["dead_branches"] == []
    assert before["dead_blocks_collected"] == 0 and before["dead_branches_kept"] == 50
    clients.create_topic(console.bootstrap, "chained", partitions=1)
    after = console.get("chain")
    # CreateTopics is one committed block (a sole voter commits what it persists).
    assert after["commit"]["height"] >= before["commit"]["height"] + 1
    assert after["term"] == before["term"]
    assert console.get("cluster")["chain"]["commit_height"] >= after["commit"]["height"]


def test_topics_and_partitions(console):
    topic = "browse"
    clients.create_topic(console.bootstrap, topic, partitions=3, config={"retention.ms": "3600000"})
    produce(console.bootstrap, topic, [(b"k%d" % i, b"v%d" % i, None, None) for i in range(7)],
            partition=1)
    listed = {t["name"]: t for t in console.get("topics")["topics"]}
    t = listed[topic]
    assert (t["partitions"], t["replication_factor"], t["records"]) == (3, 1, 7)
    assert t["size_bytes"] > 0 and not t["internal"]
    detail = console.get(f"topics/{topic}")
    p1 = detail["partitions"][1]
    assert (p1["leader"], p1["replicas"], p1["isr"]) == (1, [1], [1])
    assert (p1["log_start_offset"], p1["high_watermark"], p1["log_end_offset"]) == (0, 7, 7)
    assert p1["segments"] >= 1 and p1["size_bytes"] > 0
    assert detail["partitions"][0]["high_watermark"] == 0
    cfg = {x["name"]: x for x in detail["configs"]}
    assert cfg["retention.ms"] == {**cfg["retention.ms"], "value": "3600000",
                                   "source": "DYNAMIC_TOPIC_CONFIG"}
    assert cfg["segment.bytes"]["source"] == "DEFAULT_CONFIG"
    status, body = console.api("GET", "topics/no-such-topic")
    assert (status, body["error"]) == (404, "UNKNOWN_TOPIC_OR_PARTITION")


def test_topic_actions_are_seen_by_a_kafka_admin(console):
    admin = clients.admin(console.bootstrap)
    status, body = console.api("POST", "topics", {"name": "made", "partitions": 2,
                                                  "configs": {"retention.ms": "1000000"}})
    assert status == 201, body
    md = admin.list_topics(timeout=30)
    assert len(md.topics["made"].partitions) == 2
    status, body = console.api("POST", "topics", {"name": "made", "partitions": 1})
    assert (status, body["error"]) == (409, "TOPIC_ALREADY_EXISTS")
    # One validation path: the handler's refusals, with Kafka's names.
    status, body = console.api("POST", "topics", {"name": "bad", "configs": {"retention.ms": "soon"}})
    assert (status, body["error"]) == (400, "INVALID_CONFIG"), body
    status, body = console.api("POST", "topics", {"name": "bad/name"})
    assert (status, body["error"]) == (400, "INVALID_TOPIC_EXCEPTION"), body
    assert "bad" not in admin.list_topics(timeout=30).topics
    status, body = console.api("POST", "topics/made/configs",
                               {"set": {"retention.ms": "2000000"}, "delete": []})
    assert status == 200, body
    res = ConfigResource(ConfigResource.Type.TOPIC, "made")
    got = admin.describe_configs([res])[res].result(timeout=30)
    assert got["retention.ms"].value == "2000000"
    status, body = console.api("POST", "topics/made/configs", {"set": {"no.such.config": "1"}})
    assert status == 400 and body["error"] == "INVALID_CONFIG", body
    status, body = console.api("DELETE", "topics/made")
    assert status == 200, body
    deadline = time.monotonic() + 30
    while "made" in admin.list_topics(timeout=30).topics:
        assert time.monotonic() < deadline, "deleted topic still listed"
        time.sleep(0.2)
    status, body = console.api("DELETE", "topics/made")
    assert (status, body["error"]) == (404, "UNKNOWN_TOPIC_OR_PARTITION")


def test_read_only_refuses_mutations(console_factory):
    b = console_factory(console="read-only")
    assert b.get("cluster")["console"] == "read-only"
    b.get("topics")
    for method, path, body in [("POST", "topics", {"name": "nope"}),
                               ("DELETE", "topics/x", None),
                               ("POST", "topics/x/configs", {"set": {"retention.ms": "1"}}),
                               ("POST", "groups/g/reset", {"topic": "x", "to": "earliest"}),
                               ("DELETE", "groups/g", None)]:
        status, answer = b.api(method, path, body)
        assert (status, answer["error"]) == (403, "CONSOLE_READ_ONLY"), (method, path, answer)
    assert "nope" not in clients.admin(b.bootstrap).list_topics(timeout=30).topics


def test_actions_are_authorized_as_anonymous(console_factory):
    """docs/console.md: under an authorizer the console's Kafka requests run as User:ANONYMOUS."""
    from confluent_kafka.admin import (AclBinding, AclOperation, AclPermissionType,
                                       ResourcePatternType, ResourceType)
    b = console_factory(authorizer_class_name="org.apache.kafka.metadata.authorizer.StandardAuthorizer",
                        allow_everyone_if_no_acl_found="true")
    admin = clients.admin(b.bootstrap)
    # CreateTopics needs CREATE on the cluster or on the topic: both denied to User:ANONYMOUS
    # for "denied"; "allowed" has no ACL, so allow.everyone.if.no.acl.found lets it through.
    denies = [AclBinding(kind, name, ResourcePatternType.LITERAL, "User:ANONYMOUS", "*",
                         AclOperation.CREATE, AclPermissionType.DENY)
              for kind, name in [(ResourceType.BROKER, "kafka-cluster"), (ResourceType.TOPIC, "denied")]]
    for f in admin.create_acls(denies).values():
        f.result(timeout=30)
    status, body = b.api("POST", "topics", {"name": "denied", "partitions": 1})
    assert (status, body["error"]) == (403, "TOPIC_AUTHORIZATION_FAILED"), body
    status, body = b.api("POST", "topics", {"name": "allowed", "partitions": 1})
    assert status == 201, body
    assert sorted(t["name"] for t in b.get("topics")["topics"]
                  if t["name"] in ("allowed", "denied")) == ["allowed"]


def test_console_off_serves_no_api(console_factory):
    b = console_factory(console="off")
    status, _ = b.api("GET", "cluster")
    assert status == 404


def test_bad_requests_and_foreign_origin(console):
    assert console.api("GET", "nowhere")[0] == 404
    status, body = console.api("PUT", "topics", {})
    assert (status, body["error"]) == (405, "METHOD_NOT_ALLOWED")
    req = urllib.request.Request(f"http://127.0.0.1:{console.http_port}/api/v1/topics",
                                 data=b"{not json", method="POST")
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen(req, timeout=30)
    assert e.value.code == 400 and json.loads(e.value.read())["error"] == "BAD_REQUEST"
    status, body = console.api("POST", "topics", {"name": "csrf"},
                               headers={"Origin": "http://evil.example"})
    assert (status, body["error"]) == (403, "FOREIGN_ORIGIN")
    assert "csrf" not in clients.admin(console.bootstrap).list_topics(timeout=30).topics
    own = f"http://127.0.0.1:{console.http_port}"
    status, _ = console.api("POST", "topics", {"name": "same-origin"}, headers={"Origin": own})
    assert status == 201


def test_message_browser_pages_and_seeks(console):
    topic = "msgs"
    clients.create_topic(console.bootstrap, topic, partitions=2)
    base_ts = 1_700_000_000_000
    records = [(json.dumps({"id": i}).encode(), json.dumps({"n": i, "s": "x" * 10}).encode(),
                [("h", b"hv%d" % i)], base_ts + i * 1000) for i in range(700)]
    produce(console.bootstrap, topic, records, partition=1)

    page = console.get(f"topics/{topic}/messages?partition=1")
    assert len(page["records"]) == 100 and page["records"][0]["offset"] == 0
    assert page["high_watermark"] == 700 and page["next_offset"] == 100
    r = page["records"][5]
    assert r["key"] == {"encoding": "json", "data": {"id": 5}, "size": len(records[5][0]),
                        "truncated": False}
    assert r["value"]["data"] == {"n": 5, "s": "x" * 10}
    assert r["headers"] == [{"key": "h", "value": {"encoding": "text", "data": "hv5",
                                                   "size": 3, "truncated": False}}]
    assert (r["timestamp"], r["timestamp_type"]) == (base_ts + 5000, "CreateTime")

    page = console.get(f"topics/{topic}/messages?partition=1&limit=100000")
    assert len(page["records"]) == PAGE_RECORDS_MAX
    offsets = [x["offset"] for x in page["records"]]
    assert offsets == list(range(PAGE_RECORDS_MAX))

    page = console.get(f"topics/{topic}/messages?partition=1&seek=latest&value=10")
    assert [x["offset"] for x in page["records"]] == list(range(690, 700))
    page = console.get(f"topics/{topic}/messages?partition=1&seek=offset&value=695")
    assert [x["offset"] for x in page["records"]] == list(range(695, 700))
    # Nothing at or past the high watermark, however far the seek.
    page = console.get(f"topics/{topic}/messages?partition=1&seek=offset&value=5000")
    assert page["records"] == [] and page["start"] == 700
    page = console.get(f"topics/{topic}/messages?partition=1&seek=timestamp&value={base_ts + 300_500}&limit=3")
    assert [x["offset"] for x in page["records"]] == [301, 302, 303]
    page = console.get(f"topics/{topic}/messages?partition=1&seek=offset&value=0&format=hex&limit=1")
    assert page["records"][0]["key"]["data"] == records[0][0].hex()
    page = console.get(f"topics/{topic}/messages?partition=1&filter=%22n%22%3A%20642%2C&limit=5")
    assert [x["offset"] for x in page["records"]] == [642]
    assert console.get(f"topics/{topic}/messages?partition=0")["records"] == []
    status, body = console.api("GET", f"topics/{topic}/messages?partition=9")
    assert status == 400 or status == 404, body
    status, body = console.api("GET", f"topics/{topic}/messages?seek=sideways")
    assert status == 400


def test_message_browser_truncates_and_bounds_bytes(console):
    topic = "big"
    clients.create_topic(console.bootstrap, topic, partitions=1)
    big = 900 * 1024
    produce(console.bootstrap, topic, [(b"k%d" % i, bytes([65 + i]) * big, None, None)
                                       for i in range(6)])
    page = console.get(f"topics/{topic}/messages?limit=500&format=text")
    # 4 records of 900 KiB fit a 4 MiB page, a fifth does not.
    assert len(page["records"]) == PAGE_BYTES_MAX // big
    assert page["next_offset"] == len(page["records"])
    v = page["records"][0]["value"]
    assert (v["size"], v["truncated"], len(v["data"])) == (big, True, VALUE_SHOWN_MAX)
    assert v["data"] == "A" * VALUE_SHOWN_MAX
    page = console.get(f"topics/{topic}/messages?seek=offset&value={page['next_offset']}")
    assert [x["offset"] for x in page["records"]] == [4, 5]


def consume_and_commit(bootstrap, group, topic, count):
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": group,
                  "auto.offset.reset": "earliest", "enable.auto.commit": False})
    c.subscribe([topic])
    got = 0
    deadline = time.monotonic() + 60
    while got < count and time.monotonic() < deadline:
        m = c.poll(1.0)
        if m is not None and not m.error():
            got += 1
    assert got == count
    c.commit(asynchronous=False)
    return c


def committed(bootstrap, group, topic, partitions):
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": group})
    try:
        return {tp.partition: tp.offset for tp in
                c.committed([TopicPartition(topic, p) for p in range(partitions)], timeout=30)}
    finally:
        c.close()


def test_groups_lag_reset_and_delete(console):
    topic, group = "grouped", "readers"
    clients.create_topic(console.bootstrap, topic, partitions=2)
    produce(console.bootstrap, topic, [(b"k", b"v%d" % i, None, None) for i in range(10)],
            partition=0)
    produce(console.bootstrap, topic, [(b"k", b"w%d" % i, None, None) for i in range(4)],
            partition=1)
    member = consume_and_commit(console.bootstrap, group, topic, 14)
    produce(console.bootstrap, topic, [(b"k", b"late", None, None)] * 3, partition=0)
    listed = {g["group_id"]: g for g in console.get("groups")["groups"]}
    assert listed[group]["state"] == "Stable" and listed[group]["protocol_type"] == "consumer"
    g = console.get(f"groups/{group}")
    assert len(g["members"]) == 1
    assigned = {(a["topic"], p) for a in g["members"][0]["assignment"] for p in a["partitions"]}
    assert assigned == {(topic, 0), (topic, 1)}
    lag = {o["partition"]: (o["committed"], o["end"], o["lag"]) for o in g["offsets"]}
    assert lag == {0: (10, 13, 3), 1: (4, 4, 0)}
    # A group with a member cannot be reset (kafka-consumer-groups refuses too).
    status, body = console.api("POST", f"groups/{group}/reset", {"topic": topic, "to": "earliest"})
    assert (status, body["error"]) == (409, "NON_EMPTY_GROUP")
    member.close()
    deadline = time.monotonic() + 30
    while console.get(f"groups/{group}")["state"] != "Empty":
        assert time.monotonic() < deadline
        time.sleep(0.2)
    status, body = console.api("POST", f"groups/{group}/reset",
                               {"topic": topic, "to": "earliest", "dry_run": True})
    assert status == 200 and body["dry_run"] is True
    assert {o["partition"]: o["target"] for o in body["offsets"]} == {0: 0, 1: 0}
    assert committed(console.bootstrap, group, topic, 2) == {0: 10, 1: 4}
    status, body = console.api("POST", f"groups/{group}/reset",
                               {"topic": topic, "to": "shift", "value": -3, "partitions": [0]})
    assert status == 200, body
    assert committed(console.bootstrap, group, topic, 2) == {0: 7, 1: 4}
    status, body = console.api("POST", f"groups/{group}/reset",
                               {"topic": topic, "to": "offset", "value": 99})
    assert {o["partition"]: o["target"] for o in body["offsets"]} == {0: 13, 1: 4}
    status, body = console.api("POST", f"groups/{group}/reset", {"topic": topic, "to": "earliest"})
    assert committed(console.bootstrap, group, topic, 2) == {0: 0, 1: 0}
    status, body = console.api("DELETE", f"groups/{group}/offsets?topic={topic}&partition=1")
    assert status == 200, body
    assert committed(console.bootstrap, group, topic, 2)[1] < 0
    status, body = console.api("DELETE", f"groups/{group}")
    assert status == 200, body
    admin = clients.admin(console.bootstrap)
    names = [g.group_id for g in admin.list_consumer_groups().result(timeout=30).valid]
    assert group not in names
    status, body = console.api("GET", f"groups/{group}")
    assert (status, body["error"]) == (404, "GROUP_ID_NOT_FOUND")


CONSOLE_DIR = Path(__file__).resolve().parents[2] / "crates" / "broker" / "console"


def http_get(port, path, headers=None):
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, {k.lower(): v for k, v in r.headers.items()}, r.read()
    except urllib.error.HTTPError as e:
        return e.code, {k.lower(): v for k, v in e.headers.items()}, e.read()


def test_console_files_are_served_with_csp_and_etags(console_factory):
    import re
    b = console_factory(console="read-only")
    status, headers, body = http_get(b.http_port, "/")
    assert status == 200 and headers["content-type"].startswith("text/html")
    assert body == (CONSOLE_DIR / "index.html").read_bytes()
    assert headers["content-security-policy"].startswith("default-src 'self'")
    # CSP default-src 'self' allows no inline code: the page has none, nor a CDN.
    html = body.decode()
    assert not re.search(r"<script(?![^>]*\bsrc=)", html)
    assert "style=" not in html and "http://" not in html and "https://" not in html
    # Every module the page loads is served, and every import names a served module.
    modules = {"app.js"}
    seen = set()
    while modules:
        name = modules.pop()
        seen.add(name)
        status, headers, js = http_get(b.http_port, f"/{name}")
        assert status == 200, name
        assert headers["content-type"].startswith("text/javascript"), name
        assert js == (CONSOLE_DIR / name).read_bytes()
        assert js.startswith(b"// @ts-check"), name
        for dep in re.findall(r'from "\./([\w.]+)"', js.decode()):
            if dep not in seen:
                modules.add(dep)
    assert seen >= {"app.js", "api.js", "dom.js", "charts.js", "overview.js", "topics.js",
                    "messages.js", "groups.js", "brokers.js", "metrics.js"}
    status, headers, _ = http_get(b.http_port, "/style.css")
    etag = headers["etag"]
    assert status == 200 and headers["content-type"].startswith("text/css")
    assert http_get(b.http_port, "/style.css", {"If-None-Match": etag})[0] == 304
    assert http_get(b.http_port, "/package.json")[0] == 404
    assert http_get(b.http_port, "/../Cargo.toml")[0] == 404


def test_console_off_serves_no_files(console_factory):
    b = console_factory(console="off")
    assert http_get(b.http_port, "/")[0] == 404
    assert http_get(b.http_port, "/app.js")[0] == 404
    assert http_get(b.http_port, "/health/live")[0] == 200


def test_broker_config_action_is_seen_by_a_kafka_admin(console):
    admin = clients.admin(console.bootstrap)
    status, body = console.api("POST", "brokers/1/configs", {"set": {"log.retention.ms": "7200000"}})
    assert status == 200, body
    res = ConfigResource(ConfigResource.Type.BROKER, "1")
    got = admin.describe_configs([res])[res].result(timeout=30)
    assert got["log.retention.ms"].value == "7200000"
    configs = {c["name"]: c for c in console.get("brokers")["brokers"][0]["configs"]}
    assert (configs["log.retention.ms"]["value"], configs["log.retention.ms"]["source"]) == \
        ("7200000", "DYNAMIC_BROKER_CONFIG")
    status, body = console.api("POST", "brokers/1/configs", {"delete": ["log.retention.ms"]})
    assert status == 200, body
    got = admin.describe_configs([res])[res].result(timeout=30)
    assert got["log.retention.ms"].source != ConfigSource.DYNAMIC_BROKER_CONFIG.value
    status, body = console.api("POST", "brokers/1/configs", {"set": {"broker.id": "7"}})
    assert status == 400 and body["error"] in ("INVALID_REQUEST", "INVALID_CONFIG"), body

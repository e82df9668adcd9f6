"""Issue 15, authorization: ACLs with Kafka's StandardAuthorizer semantics, managed with Kafka's
own `kafka-acls` (AclCommand) and enforced on real clients, against both brokers.

Until SASL/TLS principals exist every connection is `User:ANONYMOUS`. Kafka's brokers also talk
to their controller as ANONYMOUS, so the brokers run with `allow.everyone.if.no.acl.found=true`
(a resource without ACLs is open) and each test locks the resources it names with ACLs; the
default-deny case restarts the broker with `allow.everyone.if.no.acl.found=false` after giving
ANONYMOUS the cluster (Kafka's inter-broker traffic needs CLUSTER_ACTION).

Covered: kafka-acls --add/--list/--remove with literal, prefixed and deny ACLs and
`--resource-pattern-type match`; deny precedence, prefixed patterns and hosts for the anonymous
principal on Produce and Metadata (unauthorized topics are left out of the topic list and
TOPIC_AUTHORIZATION_FAILED when named, whether they exist or not); nothing appended on refusal;
the default deny; and (cluster marker, Josefine) an ACL change through one broker enforced by
all three.
"""

import uuid

import pytest
from confluent_kafka import KafkaError, Producer

import wire
from clients import create_topic, watermarks
from test_java_tools import run_tool, _kafka_jars  # noqa: F401 - the fixture checks the jars

ACL_COMMAND = "org.apache.kafka.tools.AclCommand"
STANDARD_AUTHORIZER = "org.apache.kafka.metadata.authorizer.StandardAuthorizer"
ANON = "User:ANONYMOUS"
TOPIC_AUTHORIZATION_FAILED = 29


def acls(bootstrap, *args):
    out, _ = run_tool(ACL_COMMAND, "--bootstrap-server", bootstrap, *args)
    return out


def acl_lines(out):
    """The `(principal=..., host=..., operation=..., permissionType=...)` entries of a listing."""
    return sorted(line.strip() for line in out.splitlines() if line.strip().startswith("(principal="))


def entry(principal, op, permission, host="*"):
    return f"(principal={principal}, host={host}, operation={op}, permissionType={permission})"


@pytest.fixture
def secured(broker_factory):
    return broker_factory(authorizer_class_name=STANDARD_AUTHORIZER, allow_everyone_if_no_acl_found=True)


def unique(prefix):
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def produce_error(bootstrap, topic):
    """Produces one record; returns the delivery error code (None when delivered)."""
    errors = []
    p = Producer({"bootstrap.servers": bootstrap, "message.timeout.ms": 15000, "acks": "all",
                  "allow.auto.create.topics": False})
    p.produce(topic, value=b"v", on_delivery=lambda err, msg: errors.append(err))
    p.flush(30)
    assert len(errors) == 1, errors
    return None if errors[0] is None else errors[0].code()


def test_kafka_acls_add_list_remove(secured):
    bs = secured.bootstrap
    t = unique("acl-t")
    prefix = unique("acl-p")
    acls(bs, "--add", "--allow-principal", "User:alice", "--operation", "Read", "--topic", t)
    acls(bs, "--add", "--deny-principal", "User:bob", "--deny-host", "10.0.0.9",
         "--operation", "Read", "--topic", t)
    acls(bs, "--add", "--allow-principal", "User:alice", "--operation", "Write",
         "--topic", prefix, "--resource-pattern-type", "prefixed")
    acls(bs, "--add", "--allow-principal", "User:*", "--operation", "Describe", "--group", "*")

    assert acl_lines(acls(bs, "--list", "--topic", t)) == sorted([
        entry("User:alice", "READ", "ALLOW"), entry("User:bob", "READ", "DENY", host="10.0.0.9")])
    # MATCH: every ACL that applies to the named topic (the prefixed one), not the literal t.
    out = acls(bs, "--list", "--topic", prefix + "-x", "--resource-pattern-type", "match")
    assert acl_lines(out) == [entry("User:alice", "WRITE", "ALLOW")], out
    assert "patternType=PREFIXED" in out
    out = acls(bs, "--list", "--topic", prefix, "--resource-pattern-type", "prefixed")
    assert acl_lines(out) == [entry("User:alice", "WRITE", "ALLOW")]
    assert acl_lines(acls(bs, "--list", "--group", "*")) == [entry("User:*", "DESCRIBE", "ALLOW")]
    everything = acl_lines(acls(bs, "--list"))
    assert len(everything) == 4, everything

    acls(bs, "--remove", "--force", "--deny-principal", "User:bob", "--deny-host", "10.0.0.9",
         "--operation", "Read", "--topic", t)
    assert acl_lines(acls(bs, "--list", "--topic", t)) == [entry("User:alice", "READ", "ALLOW")]
    # Removing by pattern with no principal removes every ACL of that pattern.
    acls(bs, "--remove", "--force", "--topic", prefix, "--resource-pattern-type", "prefixed")
    assert acl_lines(acls(bs, "--list", "--topic", prefix, "--resource-pattern-type", "prefixed")) == []
    assert len(acl_lines(acls(bs, "--list"))) == 2


def test_kafka_acls_cluster_resource(secured):
    """`--cluster` names kafka-cluster. An ACL on it locks it for everyone else, so ANONYMOUS
    (the tool, and Kafka's own broker-controller traffic) is granted it first."""
    bs = secured.bootstrap
    acls(bs, "--add", "--allow-principal", ANON, "--operation", "All", "--cluster")
    acls(bs, "--add", "--allow-principal", "User:alice", "--operation", "Alter", "--cluster")
    out = acls(bs, "--list", "--cluster")
    assert "name=kafka-cluster" in out
    assert acl_lines(out) == sorted([entry(ANON, "ALL", "ALLOW"), entry("User:alice", "ALTER", "ALLOW")])
    acls(bs, "--remove", "--force", "--allow-principal", "User:alice", "--operation", "Alter", "--cluster")
    assert acl_lines(acls(bs, "--list", "--cluster")) == [entry(ANON, "ALL", "ALLOW")]


def test_anonymous_is_denied_deny_wins_prefixed_and_hosts(secured):
    bs = secured.bootstrap
    open_t, locked, mixed, hosty = (unique(p) for p in ("open", "locked", "mixed", "hosty"))
    prefix = unique("pfx")
    granted, fenced = prefix + "-granted", prefix + "-fenced"
    for t in (open_t, locked, mixed, hosty, granted, fenced):
        create_topic(bs, t)
    # locked: only alice. mixed: everyone ALL, but ANONYMOUS denied WRITE. hosty: ANONYMOUS from
    # another host only. prefix: ANONYMOUS may do ALL, but fenced denies WRITE.
    acls(bs, "--add", "--allow-principal", "User:alice", "--operation", "All", "--topic", locked)
    acls(bs, "--add", "--allow-principal", "User:*", "--operation", "All", "--topic", mixed)
    acls(bs, "--add", "--deny-principal", ANON, "--operation", "Write", "--topic", mixed)
    acls(bs, "--add", "--allow-principal", ANON, "--allow-host", "10.9.9.9", "--operation", "All",
         "--topic", hosty)
    acls(bs, "--add", "--allow-principal", ANON, "--operation", "All", "--topic", prefix,
         "--resource-pattern-type", "prefixed")
    acls(bs, "--add", "--deny-principal", ANON, "--operation", "Write", "--topic", fenced)

    assert produce_error(bs, open_t) is None, "no ACL on the topic: allow.everyone.if.no.acl.found"
    assert produce_error(bs, granted) is None
    for t in (locked, mixed, hosty, fenced):
        assert produce_error(bs, t) == KafkaError.TOPIC_AUTHORIZATION_FAILED, t
    # Nothing was appended to the refused topics ANONYMOUS may still describe (ListOffsets).
    for t in (mixed, fenced):
        assert watermarks(bs, t)[1] == 0, t
    assert watermarks(bs, granted)[1] == 1

    host, port = bs.split(":")
    with wire.Connection(host, int(port)) as c:
        listed = c.metadata()["topics"]
        missing = unique("missing")
        named = c.metadata([locked, mixed, hosty, missing])["topics"]
    # DESCRIBE: open (no ACLs), granted and fenced (ALL via the prefix; DENY WRITE does not deny
    # DESCRIBE), mixed (ALL for User:*). locked and hosty are hidden.
    for t in (open_t, granted, fenced, mixed):
        assert t in listed, t
    for t in (locked, hosty):
        assert t not in listed, t
    assert named[mixed]["error"] == 0
    assert named[locked]["error"] == TOPIC_AUTHORIZATION_FAILED
    assert named[hosty]["error"] == TOPIC_AUTHORIZATION_FAILED
    # A topic that does not exist but has no ACLs: unknown, not unauthorized (allow.everyone).
    assert named[missing]["error"] == 3


def test_default_deny_without_acls(broker_factory):
    b = broker_factory(authorizer_class_name=STANDARD_AUTHORIZER, allow_everyone_if_no_acl_found=True)
    bs = b.bootstrap
    seen, unseen = unique("seen"), unique("unseen")
    create_topic(bs, seen)
    create_topic(bs, unseen)
    # ANONYMOUS keeps the cluster (Kafka's broker-controller traffic) and may write "seen".
    acls(bs, "--add", "--allow-principal", ANON, "--operation", "All", "--cluster")
    acls(bs, "--add", "--allow-principal", ANON, "--operation", "Write", "--topic", seen)
    b.settings["allow.everyone.if.no.acl.found"] = "false"
    b.restart()
    bs = b.bootstrap
    assert produce_error(bs, seen) is None
    assert produce_error(bs, unseen) == KafkaError.TOPIC_AUTHORIZATION_FAILED
    host, port = bs.split(":")
    with wire.Connection(host, int(port)) as c:
        listed = c.metadata()["topics"]
        named = c.metadata([unseen, unique("nowhere")])["topics"]
    assert seen in listed and unseen not in listed
    # No ACL names these topics and the default is deny: unauthorized, existing or not.
    assert [t["error"] for t in named.values()] == [TOPIC_AUTHORIZATION_FAILED] * 2
    # WRITE implies DESCRIBE but not READ: kafka-acls still works (ALL on the cluster).
    assert entry(ANON, "WRITE", "ALLOW") in acl_lines(acls(bs, "--list", "--topic", seen))


@pytest.mark.cluster
def test_an_acl_change_through_one_broker_is_enforced_by_all(cluster_factory):
    cluster = cluster_factory(n=3, settings={"authorizer.class.name": STANDARD_AUTHORIZER,
                                             "allow.everyone.if.no.acl.found": "true"})
    nodes = cluster.nodes
    t = unique("everywhere")
    create_topic(nodes[0].bootstrap, t)
    # Through the second broker (a non-controller forwards CreateAcls to the controller).
    acls(nodes[1].bootstrap, "--add", "--allow-principal", "User:alice", "--operation", "All", "--topic", t)
    for node in nodes:
        host, port = node.bootstrap.split(":")
        with wire.Connection(host, int(port)) as c:
            named = c.metadata([t])["topics"]
            listed = c.metadata()["topics"]
        assert named[t]["error"] == TOPIC_AUTHORIZATION_FAILED, node.node_id
        assert t not in listed, node.node_id
        assert acl_lines(acls(node.bootstrap, "--list", "--topic", t)) == [entry("User:alice", "ALL", "ALLOW")]
    # Removed through the third: every broker lets ANONYMOUS describe it again.
    acls(nodes[2].bootstrap, "--remove", "--force", "--topic", t)
    for node in nodes:
        host, port = node.bootstrap.split(":")
        with wire.Connection(host, int(port)) as c:
            assert c.metadata([t])["topics"][t]["error"] == 0, node.node_id

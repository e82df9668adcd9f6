"""Issue 15: the node-to-node channel (`--raft-listen`) with `controller.listener.names` mapped
to SSL is mutual TLS. A peer without a certificate the node's truststore accepts cannot open
it: plaintext (even a well-formed controller preface and request) and TLS without a client
certificate or with one from another CA are closed before any byte of an answer; a peer with a
valid certificate gets the status document. Bad controller-listener settings exit 2.

Josefine's command line: skipped under BROKER=kafka (Kafka's controller listener is configured
by scripts/kafka-reference).
"""

import os
import socket
import ssl
import struct
import subprocess

import pytest

from conftest import BROKER_KIND, free_port, josefine_bin
from security_certs import make_certs
from test_josefine_cli import _wait_api_versions

pytestmark = pytest.mark.skipif(BROKER_KIND != "josefine", reason="josefine's command line")


def _start(tmp, raft, sets):
    args = [str(josefine_bin()), "--data-dir", str(tmp / "data"), "--raft-listen",
            f"127.0.0.1:{raft}", "--http-listen", "off"]
    for kv in sets:
        args += ["--set", kv]
    log = open(tmp / "broker.log", "wb")
    proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                            env={**os.environ, "NO_COLOR": "1", "RUST_LOG": "info"})
    log.close()
    return proc


def _ssl_sets(certs, client):
    return [
        f"listeners=PLAINTEXT://127.0.0.1:{client}",
        "controller.listener.names=CONTROLLER",
        "listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:SSL",
        f"listener.name.controller.ssl.keystore.location={certs['server']}",
        f"listener.name.controller.ssl.truststore.location={certs['ca']}",
    ]


@pytest.fixture(scope="module")
def node(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("ctrl-tls")
    certs = make_certs(tmp / "certs")
    # A second CA and a client certificate it signed: well-formed, but not trusted by the node.
    other = make_certs(tmp / "other")
    client, raft = free_port(), free_port()
    proc = _start(tmp, raft, _ssl_sets(certs, client))
    _wait_api_versions(client, proc)
    yield {"raft": raft, "certs": certs, "other": other, "proc": proc, "log": tmp / "broker.log"}
    proc.kill()
    proc.wait()


def _read_all(s, timeout_s=5):
    s.settimeout(timeout_s)
    out = b""
    try:
        while True:
            chunk = s.recv(65536)
            if not chunk:
                return out
            out += chunk
    except (ssl.SSLError, ConnectionResetError, BrokenPipeError):
        return out


def _not_an_answer(data):
    """Nothing, or only a TLS alert record (content type 21): the node spoke TLS, not the
    control protocol."""
    return data == b"" or (data[0] == 0x15 and len(data) <= 7)


def _tls(node, cert=None, key=None):
    ctx = ssl.create_default_context(cafile=str(node["certs"]["ca"]))
    if cert:
        ctx.load_cert_chain(str(cert), str(key))
    raw = socket.create_connection(("127.0.0.1", node["raft"]), timeout=5)
    return ctx.wrap_socket(raw, server_hostname="127.0.0.1")


def _status_over(s):
    try:
        s.sendall(b"JSTAT001")
    except (ssl.SSLError, ConnectionResetError, BrokenPipeError):
        return b""
    return _read_all(s)


def test_plaintext_peer_is_closed_without_an_answer(node):
    # A controller preface and a CreateAcls v3 header: what a forwarding broker would send.
    header = struct.pack(">hhi", 30, 3, 1) + struct.pack(">h", 1) + b"x" + b"\x00"
    frame = struct.pack(">i", len(header)) + header
    with socket.create_connection(("127.0.0.1", node["raft"]), timeout=5) as s:
        s.sendall(b"JCTRL001" + frame)
        assert _not_an_answer(_read_all(s))
    with socket.create_connection(("127.0.0.1", node["raft"]), timeout=5) as s:
        assert _not_an_answer(_status_over(s))


def test_tls_without_a_client_certificate_is_refused(node):
    try:
        s = _tls(node)
    except (ssl.SSLError, ConnectionResetError):
        return  # refused in the handshake (TLS 1.2)
    with s:
        assert _status_over(s) == b""


def test_tls_with_a_certificate_from_another_ca_is_refused(node):
    other = node["other"]
    try:
        s = _tls(node, other["client-cert"], other["client-key"])
    except (ssl.SSLError, ConnectionResetError):
        return
    with s:
        assert _status_over(s) == b""


def test_a_node_certificate_opens_the_channel(node):
    certs = node["certs"]
    with _tls(node, certs["server-cert"], certs["server-key"]) as s:
        doc = _status_over(s)
    assert doc, "no status document over mutual TLS"
    assert b"node" in doc.lower()
    assert "TLS handshake failed on the raft address" in node["log"].read_text(errors="replace")


@pytest.mark.parametrize("extra, words", [
    (["listener.name.controller.ssl.client.auth=none"], "ssl.client.auth=required"),
    (["listener.security.protocol.map=PLAINTEXT:PLAINTEXT"], "CONTROLLER"),
])
def test_bad_controller_listener_settings_exit_2(tmp_path, extra, words):
    certs = make_certs(tmp_path / "certs")
    sets = _ssl_sets(certs, free_port()) + extra
    proc = _start(tmp_path, free_port(), sets)
    assert proc.wait(timeout=30) == 2
    assert words in (tmp_path / "broker.log").read_text(errors="replace")


@pytest.mark.cluster
def test_a_cluster_runs_its_chain_and_controller_rpcs_over_mutual_tls(cluster_factory, tmp_path):
    """Three voters dial each other with their node certificate (IP SAN 127.0.0.1): the chain
    elects and replicates, brokers register, and a topic created through a non-controller (a
    forwarded CreateTopics on the control channel) is usable on every node."""
    from clients import admin, watermarks
    from confluent_kafka import Producer
    from confluent_kafka.admin import NewTopic

    certs = make_certs(tmp_path / "certs")
    cluster = cluster_factory(n=3, settings={
        "controller.listener.names": "CONTROLLER",
        "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:SSL",
        "listener.name.controller.ssl.keystore.location": str(certs["server"]),
        "listener.name.controller.ssl.truststore.location": str(certs["ca"]),
    })
    nodes = cluster.nodes
    topic = f"tls-{os.getpid()}"
    a = admin(nodes[1].bootstrap)
    a.create_topics([NewTopic(topic, num_partitions=3, replication_factor=3)])[topic].result(30)
    p = Producer({"bootstrap.servers": nodes[2].bootstrap, "acks": "all"})
    for i in range(3):
        p.produce(topic, value=b"v", partition=i)
    assert p.flush(30) == 0
    for node in nodes:
        assert sum(watermarks(node.bootstrap, topic, partition=i)[1] for i in range(3)) == 3

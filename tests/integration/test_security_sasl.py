"""SASL/PLAIN listeners (issue 15): SASL_PLAINTEXT and SASL_SSL with users from
listener.name.<l>.plain.sasl.jaas.config; Kafka's flow (only ApiVersions, SaslHandshake and
SaslAuthenticate before authentication; a wrong password is the client's authentication error);
hostile clients (a request before authentication, an oversized token) are closed.

Differential: under BROKER=kafka the listener settings go to scripts/kafka-reference (see
test_security_scram.py); only the start-up refusals (exit 2) are Josefine's alone.
"""

import socket
import struct
import time

import pytest

from conftest import BROKER_KIND, free_port
from security_certs import make_certs
from test_josefine_cli import _wait_api_versions
from test_security_listeners import _refused
from test_security_scram import _start_broker
from test_security_tls import _produce_consume


JAAS = ('org.apache.kafka.common.security.plain.PlainLoginModule required '
        'username="admin" password="admin-secret" user_admin="admin-secret" user_alice="alice-pw";')


@pytest.fixture(scope="module")
def broker(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("sasl")
    certs = make_certs(tmp / "certs")
    plain, sp, ss = free_port(), free_port(), free_port()
    proc = _start_broker(tmp, [
        f"listeners=PLAINTEXT://127.0.0.1:{plain},SASL_PLAINTEXT://127.0.0.1:{sp},SASL_SSL://127.0.0.1:{ss}",
        "inter.broker.listener.name=PLAINTEXT",
        "sasl.enabled.mechanisms=PLAIN",
        f"listener.name.sasl_plaintext.plain.sasl.jaas.config={JAAS}",
        f"listener.name.sasl_ssl.plain.sasl.jaas.config={JAAS}",
        f"ssl.keystore.location={certs['server']}",
    ], extra=[])
    try:  # killed however setup ends
        _wait_api_versions(plain, proc, timeout_s=180)
        yield {"plain": plain, "sasl_plaintext": sp, "sasl_ssl": ss, "certs": certs,
               "log": tmp / "broker.log", "proc": proc}
    finally:
        proc.kill()
        proc.wait()


def _conf(b, protocol, user="alice", password="alice-pw"):
    port = b[protocol.lower()]
    conf = {"bootstrap.servers": f"127.0.0.1:{port}", "security.protocol": protocol,
            "sasl.mechanism": "PLAIN", "sasl.username": user, "sasl.password": password}
    if protocol == "SASL_SSL":
        conf["ssl.ca.location"] = str(b["certs"]["ca"])
    return conf


@pytest.mark.parametrize("protocol", ["SASL_PLAINTEXT", "SASL_SSL"])
def test_plain_produce_and_group_consume(broker, protocol):
    _produce_consume(_conf(broker, protocol), f"sasl-{protocol.lower()}")


def test_wrong_password_is_the_clients_authentication_error(broker):
    from confluent_kafka import KafkaError, Producer
    errors = []
    p = Producer({**_conf(broker, "SASL_PLAINTEXT", password="wrong"),
                  "error_cb": errors.append, "log_level": 0})
    deadline = time.monotonic() + 30
    while not errors and time.monotonic() < deadline:
        p.poll(0.5)
    assert any(e.code() == KafkaError._AUTHENTICATION for e in errors), errors
    assert any("Invalid username or password" in e.str() for e in errors), errors
    log = broker["log"].read_text(errors="replace")
    assert "wrong" not in log and "alice-pw" not in log and "admin-secret" not in log


def _closed(s, timeout_s=5):
    s.settimeout(timeout_s)
    try:
        while s.recv(4096):
            pass
        return True
    except (ConnectionResetError, BrokenPipeError):
        return True
    except socket.timeout:
        return False


def test_a_request_before_authentication_closes(broker):
    s = socket.create_connection(("127.0.0.1", broker["sasl_plaintext"]))
    # Metadata v1 for all topics: not allowed before authentication.
    body = struct.pack(">i", -1)
    payload = struct.pack(">hhih", 3, 1, 9, 4) + b"test" + body
    s.sendall(struct.pack(">i", len(payload)) + payload)
    assert _closed(s)
    # ApiVersions is answered before authentication.
    _wait_api_versions(broker["sasl_plaintext"], broker["proc"])


def test_an_oversized_token_closes_before_allocation(broker):
    s = socket.create_connection(("127.0.0.1", broker["sasl_plaintext"]))
    s.sendall(struct.pack(">i", 524_289))
    assert _closed(s)
    # Others are still served.
    from confluent_kafka.admin import AdminClient
    md = AdminClient(_conf(broker, "SASL_PLAINTEXT")).list_topics(timeout=30)
    assert [(n.host, n.port) for n in md.brokers.values()] == [("127.0.0.1", broker["sasl_plaintext"])]


@pytest.mark.skipif(BROKER_KIND != "josefine", reason="josefine's command line")
@pytest.mark.parametrize("sets,expected", [
    (["sasl.enabled.mechanisms=GSSAPI"], "GSSAPI is not supported"),
    (["sasl.enabled.mechanisms=OAUTHBEARER"], "OAUTHBEARER is not supported"),
    (["sasl.enabled.mechanisms=,"], "enables no mechanism"),
    (["sasl.enabled.mechanisms="], "GSSAPI is not supported"),
    (["sasl.enabled.mechanisms=PLAIN"], "PLAIN needs its users"),
    (["sasl.enabled.mechanisms=PLAIN", "plain.sasl.jaas.config=nonsense"], "PlainLoginModule"),
])
def test_bad_sasl_settings_exit_2(tmp_path, sets, expected):
    args = ["--set", "listeners=SASL_PLAINTEXT://127.0.0.1:HELD"]
    for s in sets:
        args += ["--set", s]
    line = _refused(tmp_path, args)
    assert expected in line, line

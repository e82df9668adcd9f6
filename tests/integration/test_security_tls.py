"""TLS listeners (issue 15): PEM keystores (file, inline, encrypted PKCS#8 with
ssl.key.password), truststores and ssl.client.auth, with confluent-kafka and kcat; garbage,
plaintext and stalled handshakes on a TLS port; bad TLS settings exit 2 before binding.

Josefine's command line (scripts/kafka-reference fixes its own listeners), so skipped under
BROKER=kafka.
"""

import json
import socket
import subprocess
import time

import pytest

from conftest import BROKER_KIND, free_port
from security_certs import make_certs
from test_josefine_cli import _wait_api_versions
from test_security_listeners import _refused, _start

pytestmark = pytest.mark.skipif(BROKER_KIND != "josefine", reason="josefine's command line")


@pytest.fixture(scope="module")
def certs(tmp_path_factory):
    return make_certs(tmp_path_factory.mktemp("certs"))


class TlsBroker:
    def __init__(self, tmp_path, certs, extra=()):
        self.plain, self.ssl = free_port(), free_port()
        self.proc = _start(tmp_path, [
            f"listeners=PLAINTEXT://127.0.0.1:{self.plain},SSL://127.0.0.1:{self.ssl}",
            "inter.broker.listener.name=PLAINTEXT",
            f"ssl.keystore.location={certs['server']}",
            *extra,
        ])
        self.log = tmp_path / "broker.log"
        _wait_api_versions(self.plain, self.proc)

    def close(self):
        self.proc.kill()
        self.proc.wait()


@pytest.fixture
def tls_broker(tmp_path, certs):
    brokers = []

    def start(*extra):
        b = TlsBroker(tmp_path, certs, extra)
        brokers.append(b)
        return b
    yield start
    for b in brokers:
        b.close()


def _ssl_conf(b, certs, **extra):
    return {"bootstrap.servers": f"127.0.0.1:{b.ssl}", "security.protocol": "SSL",
            "ssl.ca.location": str(certs["ca"]), **extra}


def _produce_consume(conf, topic):
    from confluent_kafka import Consumer, Producer
    p = Producer(conf)
    for i in range(10):
        p.produce(topic, f"v{i}".encode())
    assert p.flush(30) == 0
    c = Consumer({**conf, "group.id": f"g-{topic}", "auto.offset.reset": "earliest"})
    c.subscribe([topic])
    got = []
    deadline = time.monotonic() + 60
    while len(got) < 10 and time.monotonic() < deadline:
        m = c.poll(1.0)
        if m is not None and m.error() is None:
            got.append(m.value())
    c.close()
    assert got == [f"v{i}".encode() for i in range(10)]


def test_confluent_kafka_produces_and_consumes_over_ssl(tls_broker, certs):
    b = tls_broker()
    _produce_consume(_ssl_conf(b, certs), "tls-topic")
    # Metadata over the SSL listener hands out the SSL endpoint.
    from confluent_kafka.admin import AdminClient
    md = AdminClient(_ssl_conf(b, certs)).list_topics(timeout=30)
    assert [(n.host, n.port) for n in md.brokers.values()] == [("127.0.0.1", b.ssl)]


def test_inline_encrypted_key_with_key_password(tls_broker, certs):
    b = tls_broker(
        f"listener.name.ssl.ssl.keystore.certificate.chain={certs['server-cert'].read_text()}",
        f"listener.name.ssl.ssl.keystore.key={certs['server-key-enc'].read_text()}",
        "listener.name.ssl.ssl.key.password=keypass",
        "ssl.keystore.location=",
    )
    _produce_consume(_ssl_conf(b, certs), "tls-inline-topic")
    assert "keypass" not in b.log.read_text(errors="replace")


def _kcat_metadata(b, certs, with_cert):
    args = ["kcat", "-b", f"127.0.0.1:{b.ssl}", "-L", "-J", "-m", "10",
            "-X", "security.protocol=SSL", "-X", f"ssl.ca.location={certs['ca']}"]
    if with_cert:
        args += ["-X", f"ssl.certificate.location={certs['client']}",
                 "-X", f"ssl.key.location={certs['client-key']}"]
    return subprocess.run(args, capture_output=True, timeout=60)


def test_kcat_with_ssl_client_auth_required(tls_broker, certs):
    b = tls_broker("ssl.client.auth=required", f"ssl.truststore.location={certs['ca']}",
                   "ssl.principal.mapping.rules=RULE:^CN=([^,]*),.*$/$1/L,DEFAULT")
    out = _kcat_metadata(b, certs, with_cert=True)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["brokers"][0]["name"] == f"127.0.0.1:{b.ssl}"
    out = _kcat_metadata(b, certs, with_cert=False)
    assert out.returncode != 0, "a client without a certificate was served"
    assert "TLS handshake failed" in b.log.read_text(errors="replace")


def _closed(s, timeout_s):
    s.settimeout(timeout_s)
    try:
        while s.recv(4096):
            pass
        return True
    except (ConnectionResetError, BrokenPipeError):
        return True
    except socket.timeout:
        return False


def test_garbage_plaintext_and_stalled_handshakes_are_closed(tls_broker, certs):
    b = tls_broker()
    garbage = socket.create_connection(("127.0.0.1", b.ssl))
    garbage.sendall(b"\x00\x01\x02 not a client hello" * 10)
    assert _closed(garbage, 10)
    # A Kafka request (ApiVersions v0) in plaintext on the TLS port.
    plain = socket.create_connection(("127.0.0.1", b.ssl))
    plain.sendall(b"\x00\x00\x00\x0e\x00\x12\x00\x00\x00\x00\x00\x07\x00\x04test")
    assert _closed(plain, 10)
    stalled = [socket.create_connection(("127.0.0.1", b.ssl)) for _ in range(20)]
    started = time.monotonic()
    assert all(_closed(s, 30) for s in stalled), "a stalled handshake was kept"
    assert time.monotonic() - started < 25
    # Still served, on both listeners.
    _wait_api_versions(b.plain, b.proc)
    _produce_consume(_ssl_conf(b, certs), "tls-after-garbage")
    log = b.log.read_text(errors="replace")
    assert "TLS handshake not completed within" in log


@pytest.mark.parametrize("sets,expected", [
    (["ssl.keystore.type=JKS", "ssl.keystore.location=/nonexistent.jks"], "keytool -importkeystore"),
    (["ssl.keystore.location=/nonexistent.pem"], "cannot read"),
    ([], "needs a keystore"),
    (["ssl.keystore.location=CERTS/server.pem", "ssl.client.auth=required"], "needs a truststore"),
    (["ssl.keystore.location=CERTS/server.pem", "ssl.enabled.protocols=TLSv1.1"], "TLSv1.1 is not supported"),
    (["ssl.keystore.location=CERTS/server.pem", "ssl.cipher.suites=TLS_RSA_WITH_NULL_MD5"], "not supported"),
    (["ssl.keystore.location=CERTS/server-cert.pem"], "no private key"),
    (["ssl.keystore.key=KEYENC", "ssl.keystore.certificate.chain=CHAIN"], "ssl.key.password"),
    (["ssl.keystore.key=KEYENC", "ssl.keystore.certificate.chain=CHAIN", "ssl.key.password=wrong"],
     "cannot decrypt"),
])
def test_bad_tls_settings_exit_2_with_one_line_before_binding(tmp_path, certs, sets, expected):
    d = certs["ca"].parent
    sets = [s.replace("CERTS", str(d)).replace("KEYENC", certs["server-key-enc"].read_text())
            .replace("CHAIN", certs["server-cert"].read_text()) for s in sets]
    args = ["--set", "listeners=SSL://127.0.0.1:HELD"]
    for s in sets:
        args += ["--set", s]
    line = _refused(tmp_path, args)
    assert expected in line, line
    assert "keypass" not in line and "PRIVATE KEY" not in line, line

"""Named listeners (issue 15): `listeners`, `advertised.listeners`,
`listener.security.protocol.map`, `inter.broker.listener.name`, one accept loop per listener,
and Metadata / FindCoordinator / DescribeCluster answering with the endpoints of the listener
a request came in on. Bad listener specs exit 2 with one line before anything binds.

Josefine's command line (Kafka takes the same settings in server.properties, which
scripts/kafka-reference writes itself), so skipped under BROKER=kafka.
"""

import json
import os
import socket
import subprocess
import time

import pytest

from conftest import BROKER_KIND, free_port, josefine_bin
from test_josefine_cli import _wait_api_versions

pytestmark = pytest.mark.skipif(BROKER_KIND != "josefine", reason="josefine's command line")


def _start(tmp_path, sets, extra=()):
    args = [str(josefine_bin()), "--data-dir", str(tmp_path / "data"),
            "--raft-listen", f"127.0.0.1:{free_port()}", "--http-listen", "off", *extra]
    for kv in sets:
        args += ["--set", kv]
    log = open(tmp_path / "broker.log", "wb")
    proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                            env={**os.environ, "NO_COLOR": "1", "RUST_LOG": "info"})
    log.close()
    return proc


def _kcat_metadata(bootstrap):
    out = subprocess.run(["kcat", "-b", bootstrap, "-L", "-J"], capture_output=True, timeout=30)
    assert out.returncode == 0, out.stderr
    return [(b["id"], b["name"]) for b in json.loads(out.stdout)["brokers"]]


def test_each_listener_answers_with_its_own_advertised_endpoint(tmp_path):
    client, internal = free_port(), free_port()
    proc = _start(tmp_path, [
        f"listeners=CLIENT://127.0.0.1:{client},INTERNAL://127.0.0.1:{internal}",
        f"advertised.listeners=CLIENT://localhost:{client},INTERNAL://127.0.0.1:{internal}",
        "listener.security.protocol.map=CLIENT:PLAINTEXT,INTERNAL:PLAINTEXT",
        "inter.broker.listener.name=INTERNAL",
    ])
    try:
        _wait_api_versions(client, proc)
        _wait_api_versions(internal, proc)
        assert _kcat_metadata(f"127.0.0.1:{client}") == [(1, f"localhost:{client}")]
        assert _kcat_metadata(f"127.0.0.1:{internal}") == [(1, f"127.0.0.1:{internal}")]

        # A group works end to end through the client listener: FindCoordinator hands out
        # the CLIENT endpoint (the INTERNAL one would also work here, so check it directly).
        from confluent_kafka import Consumer, Producer
        from confluent_kafka.admin import AdminClient
        bootstrap = f"127.0.0.1:{client}"
        p = Producer({"bootstrap.servers": bootstrap})
        p.produce("listeners-topic", b"v")
        assert p.flush(30) == 0
        c = Consumer({"bootstrap.servers": bootstrap, "group.id": "listeners-group",
                      "auto.offset.reset": "earliest"})
        c.subscribe(["listeners-topic"])
        got = None
        deadline = time.monotonic() + 60
        while got is None and time.monotonic() < deadline:
            m = c.poll(1.0)
            if m is not None and m.error() is None:
                got = m.value()
        c.close()
        assert got == b"v"
        admin = AdminClient({"bootstrap.servers": bootstrap})
        desc = admin.describe_consumer_groups(["listeners-group"])["listeners-group"].result(30)
        assert (desc.coordinator.host, desc.coordinator.port) == ("localhost", client)
        cluster = admin.describe_cluster().result(30)
        assert [(n.id, n.host, n.port) for n in cluster.nodes] == [(1, "localhost", client)]
        admin = AdminClient({"bootstrap.servers": f"127.0.0.1:{internal}"})
        cluster = admin.describe_cluster().result(30)
        assert [(n.id, n.host, n.port) for n in cluster.nodes] == [(1, "127.0.0.1", internal)]
    finally:
        proc.kill()
        proc.wait()
    log = (tmp_path / "broker.log").read_text(errors="replace")
    assert f"CLIENT on 127.0.0.1:{client}" in log and f"INTERNAL on 127.0.0.1:{internal}" in log


def _refused(tmp_path, args):
    """Runs josefine with `args` while a port it would bind is held: a start that bound before
    validating would fail on the bind instead. Returns stderr's one line."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        port = held.getsockname()[1]
        cmd = [str(josefine_bin()), "--data-dir", str(tmp_path / "d"),
               "--raft-listen", f"127.0.0.1:{port}", "--http-listen", "off"]
        out = subprocess.run(cmd + [a.replace("HELD", str(port)) for a in args],
                             capture_output=True, timeout=30, env={**os.environ, "NO_COLOR": "1"})
    lines = out.stderr.decode(errors="replace").strip().splitlines()
    assert out.returncode == 2, (out.returncode, lines)
    assert len(lines) == 1, lines
    assert not (tmp_path / "d").exists(), "nothing was written for a refused start"
    return lines[0]


@pytest.mark.parametrize("args,expected", [
    (["--listen", "127.0.0.1:HELD", "--set", "listeners=PLAINTEXT://127.0.0.1:HELD"],
     "--listen/--advertise"),
    (["--set", "listeners=PLAINTEXT//127.0.0.1:HELD"], "NAME://HOST:PORT"),
    (["--set", "listeners=PLAINTEXT://127.0.0.1:HELD,FOO://127.0.0.1:0"],
     "maps no security protocol to listener FOO"),
    (["--set", "listeners=PLAINTEXT://127.0.0.1:HELD,PLAINTEXT://127.0.0.1:0"], "appears twice"),
    (["--set", "listeners=PLAINTEXT://127.0.0.1:HELD,SSL://127.0.0.1:HELD"], "same port"),
    (["--set", "listeners=A://127.0.0.1:HELD,B://127.0.0.1:0",
      "--set", "listener.security.protocol.map=A:PLAINTEXT,B:PLAINTEXT"],
     "inter.broker.listener.name"),
    (["--set", "listeners=PLAINTEXT://127.0.0.1:HELD",
      "--set", "advertised.listeners=OTHER://h:1"], "OTHER is not one of the listeners"),
    (["--set", "listeners=PLAINTEXT://127.0.0.1:HELD", "--set", "listener.name.nope.x=1"],
     "no listener named nope"),
])
def test_bad_listener_specs_exit_2_with_one_line_before_binding(tmp_path, args, expected):
    line = _refused(tmp_path, args)
    assert expected in line, line

"""Hostile connections (issue 15, "Bad input and failures"): `max.connections.per.ip` (and
its overrides) refuse one address's excess connections while others are served; a frame whose
first byte arrived must complete within FRAME_COMPLETION_TIMEOUT_MS (60 s), so connections that
send a length and nothing more cannot hold every slot until `connections.max.idle.ms`.
"""

import socket
import time

import pytest

from conftest import BROKER_KIND
import wire


def _connect(port, source="127.0.0.1"):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.bind((source, 0))
    s.settimeout(10)
    s.connect(("127.0.0.1", port))
    return s


def _closed_by_broker(s, timeout_s=5.0):
    s.settimeout(timeout_s)
    try:
        return s.recv(1) == b""
    except ConnectionResetError:
        return True
    except socket.timeout:
        return False


def _api_versions_from(port, source):
    """ApiVersions v0 over a socket bound to `source`; True if answered."""
    s = _connect(port, source)
    try:
        s.sendall(wire._frame(wire.API_VERSIONS, 0, 7, b"", flexible=False))
        s.settimeout(10)
        size = int.from_bytes(wire._recv_exact(s, 4), "big")
        return len(wire._recv_exact(s, size)) == size
    finally:
        s.close()


def test_max_connections_per_ip_refuses_only_that_address(broker_factory):
    broker = broker_factory(max_connections_per_ip=5,
                            max_connections_per_ip_overrides="127.0.0.3:1")
    held = [_connect(broker.port) for _ in range(5)]
    try:
        # Let the broker count them (accept is asynchronous to connect).
        time.sleep(1.0)
        extra = _connect(broker.port)
        assert _closed_by_broker(extra), "the 6th connection from one address was kept"
        extra.close()
        # Another address is served; the override caps 127.0.0.3 at one connection.
        assert _api_versions_from(broker.port, "127.0.0.2")
        assert _api_versions_from(broker.port, "127.0.0.3")
        time.sleep(0.5)  # the broker gives the slot back once it sees the close
        one = _connect(broker.port, "127.0.0.3")
        time.sleep(0.5)
        two = _connect(broker.port, "127.0.0.3")
        assert _closed_by_broker(two)
        assert not _closed_by_broker(one, timeout_s=1.0)
        one.close()
        two.close()
    finally:
        for s in held:
            s.close()
    # Slots come back when connections close.
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            if _api_versions_from(broker.port, "127.0.0.1"):
                break
        except OSError:
            time.sleep(0.2)
    else:
        pytest.fail("the address's slots did not come back")


@pytest.mark.slow
@pytest.mark.skipif(BROKER_KIND != "josefine", reason="Kafka has no frame completion timeout")
def test_stalled_frames_are_closed_and_free_their_slots(broker_factory):
    broker = broker_factory(max_connections=50)
    stalled = []
    for _ in range(50):
        s = _connect(broker.port)
        s.sendall((1000).to_bytes(4, "big"))  # a length, then nothing
        stalled.append(s)
    time.sleep(1.0)
    locked_out = _connect(broker.port, "127.0.0.2")
    assert _closed_by_broker(locked_out), "max.connections did not hold"
    locked_out.close()
    started = time.monotonic()
    assert all(_closed_by_broker(s, timeout_s=90) for s in stalled), "a stalled frame was kept"
    assert time.monotonic() - started < 75
    assert _api_versions_from(broker.port, "127.0.0.2")
    for s in stalled:
        s.close()

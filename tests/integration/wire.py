"""Hand-built Kafka requests for the few checks no client library exposes.

Owns: framing one request on a raw socket and decoding just enough of the response to check
error codes and advertised version ranges. Used by the broker fixture's readiness probe
(ApiVersions v0) and by the negotiation tests. Must never grow into a client: anything a real
client can do is tested with that real client instead.
"""

import socket
import struct

API_VERSIONS = 18
UNSUPPORTED_VERSION = 35


def _frame(api_key: int, api_version: int, correlation_id: int, body: bytes, flexible: bool) -> bytes:
    client_id = b"josefine-tests"
    header = struct.pack(">hhih", api_key, api_version, correlation_id, len(client_id)) + client_id
    if flexible:
        # Request header v2: an empty tagged-field section after the client id.
        header += b"\x00"
    payload = header + body
    return struct.pack(">i", len(payload)) + payload


def _recv_exact(sock: socket.socket, n: int) -> bytes:
    buf = b""
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise ConnectionError(f"connection closed after {len(buf)} of {n} bytes")
        buf += chunk
    return buf


def round_trip(host: str, port: int, frame: bytes, timeout_s: float = 5.0) -> bytes:
    """Send one framed request; return the response payload (after the length prefix)."""
    with socket.create_connection((host, port), timeout=timeout_s) as sock:
        sock.sendall(frame)
        (length,) = struct.unpack(">i", _recv_exact(sock, 4))
        return _recv_exact(sock, length)


def api_versions(host: str, port: int, version: int = 0, correlation_id: int = 7, timeout_s: float = 5.0):
    """ApiVersions at `version`; returns (correlation_id, error_code, {api_key: (min, max)}).

    The response header is always v0 (no tagged fields) for ApiVersions, and a broker that
    does not support the requested version answers with a v0 body, so the array decoding
    below follows the v0 layout when the error is UNSUPPORTED_VERSION or version < 3.
    """
    flexible = version >= 3
    body = b""
    if flexible:
        name, ver = b"josefine-tests", b"0.1"
        # compact strings: length + 1 as an unsigned varint (short here), then tagged fields.
        body = bytes([len(name) + 1]) + name + bytes([len(ver) + 1]) + ver + b"\x00"
    payload = round_trip(host, port, _frame(API_VERSIONS, version, correlation_id, body, flexible), timeout_s)
    (corr,) = struct.unpack_from(">i", payload, 0)
    (error_code,) = struct.unpack_from(">h", payload, 4)
    pos = 6
    ranges = {}
    if flexible and error_code != UNSUPPORTED_VERSION:
        n, pos = _uvarint(payload, pos)
        count = n - 1
        for _ in range(count):
            key, lo, hi = struct.unpack_from(">hhh", payload, pos)
            pos += 6
            tags, pos = _uvarint(payload, pos)
            assert tags == 0, "unexpected tagged fields in an ApiVersions entry"
            ranges[key] = (lo, hi)
    else:
        (count,) = struct.unpack_from(">i", payload, pos)
        pos += 4
        for _ in range(count):
            key, lo, hi = struct.unpack_from(">hhh", payload, pos)
            pos += 6
            ranges[key] = (lo, hi)
    return corr, error_code, ranges


def _uvarint(buf: bytes, pos: int):
    result = shift = 0
    while True:
        b = buf[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if not b & 0x80:
            return result, pos
        shift += 7

"""Hand-built Kafka requests for the few checks no client library exposes.

Owns: framing one request on a raw socket and decoding just enough of the response to check
error codes and advertised version ranges. Used by the broker fixture's readiness probe
(ApiVersions v0) and by the negotiation tests. Must never grow into a client: anything a real
client can do is tested with that real client instead.

The cluster tests add a few requests sent to one chosen broker, because real clients choose
the broker themselves (admin requests go to the controller they learn from Metadata) or hide
the field that matters: Metadata v12 (per-partition leader epochs, offline replicas, the
broker's own view), CreateTopics v7 / DeleteTopics v6 through a given broker (forwarding),
InitProducerId v4 many times (producer ids) and DescribeQuorum v0 (Kafka's KRaft leader).
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


# ---------------------------------------------------------------------------------------
# Flexible-version (compact) encoding, only what the requests below need.

METADATA = 3
CREATE_TOPICS = 19
DELETE_TOPICS = 20
INIT_PRODUCER_ID = 22
DESCRIBE_QUORUM = 55

# Kafka error codes the cluster tests name.
NONE = 0
LEADER_NOT_AVAILABLE = 5
NOT_LEADER_OR_FOLLOWER = 6
REQUEST_TIMED_OUT = 7
COORDINATOR_LOAD_IN_PROGRESS = 14
COORDINATOR_NOT_AVAILABLE = 15
NOT_COORDINATOR = 16
NOT_CONTROLLER = 41
INVALID_REPLICATION_FACTOR = 38
TOPIC_ALREADY_EXISTS = 36
UNKNOWN_TOPIC_OR_PARTITION = 3


def _uvarint_bytes(n: int) -> bytes:
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def _cstr(s) -> bytes:
    """Compact (nullable) string."""
    if s is None:
        return b"\x00"
    raw = s.encode()
    return _uvarint_bytes(len(raw) + 1) + raw


def _carray(items) -> bytes:
    """Compact array of already encoded items; None encodes the null array."""
    if items is None:
        return b"\x00"
    return _uvarint_bytes(len(items) + 1) + b"".join(items)


_TAGS = b"\x00"  # an empty tagged-field section


class _Reader:
    def __init__(self, buf: bytes, pos: int = 0):
        self.buf, self.pos = buf, pos

    def _unpack(self, fmt):
        (v,) = struct.unpack_from(fmt, self.buf, self.pos)
        self.pos += struct.calcsize(fmt)
        return v

    def i8(self): return self._unpack(">b")
    def i16(self): return self._unpack(">h")
    def i32(self): return self._unpack(">i")
    def i64(self): return self._unpack(">q")
    def boolean(self): return self._unpack(">?")

    def uvarint(self):
        v, self.pos = _uvarint(self.buf, self.pos)
        return v

    def uuid(self) -> str:
        raw = self.buf[self.pos:self.pos + 16]
        self.pos += 16
        return raw.hex()

    def cstr(self):
        n = self.uvarint()
        if n == 0:
            return None
        raw = self.buf[self.pos:self.pos + n - 1]
        self.pos += n - 1
        return raw.decode()

    def carray(self, item):
        n = self.uvarint()
        if n == 0:
            return None
        return [item() for _ in range(n - 1)]

    def tags(self):
        for _ in range(self.uvarint()):
            self.uvarint()  # tag
            size = self.uvarint()
            self.pos += size


class Connection:
    """One TCP connection to one broker for many requests, one at a time (flexible versions,
    response header v1). Use as a context manager."""

    def __init__(self, host: str, port: int, timeout_s: float = 10.0):
        self.sock = socket.create_connection((host, port), timeout=timeout_s)
        self.correlation_id = 0

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self):
        self.sock.close()

    def request(self, api_key: int, api_version: int, body: bytes) -> _Reader:
        self.correlation_id += 1
        self.sock.sendall(_frame(api_key, api_version, self.correlation_id, body, flexible=True))
        (length,) = struct.unpack(">i", _recv_exact(self.sock, 4))
        r = _Reader(_recv_exact(self.sock, length))
        corr = r.i32()
        assert corr == self.correlation_id, f"correlation id {corr}, expected {self.correlation_id}"
        r.tags()
        return r

    # --- Metadata v12 -------------------------------------------------------------------

    def metadata(self, topics=None, allow_auto_create=False) -> dict:
        """Metadata v12 as this broker sees it: {"brokers": {id: (host, port, rack)},
        "cluster_id", "controller_id", "topics": {name: {"error", "topic_id", "internal",
        "partitions": {index: {"error", "leader", "leader_epoch", "replicas", "isr",
        "offline"}}}}}. `topics=None` asks for all topics."""
        null_uuid = b"\x00" * 16
        body = _carray(None if topics is None else [null_uuid + _cstr(t) + _TAGS for t in topics])
        body += struct.pack(">??", allow_auto_create, False) + _TAGS
        r = self.request(METADATA, 12, body)
        r.i32()  # throttle

        def broker():
            b = (r.i32(), r.cstr(), r.i32(), r.cstr())
            r.tags()
            return b

        def int32():
            return r.i32()

        def partition():
            p = {"error": r.i16(), "index": r.i32(), "leader": r.i32(), "leader_epoch": r.i32(),
                 "replicas": r.carray(int32), "isr": r.carray(int32), "offline": r.carray(int32)}
            r.tags()
            return p

        def topic():
            t = {"error": r.i16(), "name": r.cstr(), "topic_id": r.uuid(), "internal": r.boolean(),
                 "partitions": {p["index"]: p for p in r.carray(partition)}}
            r.i32()  # authorized operations
            r.tags()
            for p in t["partitions"].values():
                del p["index"]
            return t

        brokers = {b[0]: (b[1], b[2], b[3]) for b in r.carray(broker)}
        cluster_id = r.cstr()
        controller_id = r.i32()
        topic_list = r.carray(topic)
        return {"brokers": brokers, "cluster_id": cluster_id, "controller_id": controller_id,
                "topics": {t.pop("name"): t for t in topic_list}}

    # --- CreateTopics v7 / DeleteTopics v6 ------------------------------------------------

    def create_topics(self, topics, timeout_ms=30000, validate_only=False) -> dict:
        """`topics`: [(name, partitions, replication_factor, {config: value})]. Returns
        {name: (error_code, error_message, topic_id)}."""
        items = []
        for name, partitions, rf, configs in topics:
            cfg = [_cstr(k) + _cstr(v) + _TAGS for k, v in (configs or {}).items()]
            items.append(_cstr(name) + struct.pack(">ih", partitions, rf) + _carray([]) + _carray(cfg) + _TAGS)
        body = _carray(items) + struct.pack(">i?", timeout_ms, validate_only) + _TAGS
        r = self.request(CREATE_TOPICS, 7, body)
        r.i32()  # throttle

        def config():
            r.cstr(), r.cstr(), r.boolean(), r.i8(), r.boolean()
            r.tags()

        def topic():
            name, topic_id, error, message = r.cstr(), r.uuid(), r.i16(), r.cstr()
            r.i32(), r.i16()  # num_partitions, replication_factor
            r.carray(config)
            r.tags()
            return name, (error, message, topic_id)

        return dict(r.carray(topic))

    def delete_topics(self, names, timeout_ms=30000) -> dict:
        """Returns {name: (error_code, error_message)}."""
        null_uuid = b"\x00" * 16
        body = _carray([_cstr(n) + null_uuid + _TAGS for n in names]) + struct.pack(">i", timeout_ms) + _TAGS
        r = self.request(DELETE_TOPICS, 6, body)
        r.i32()  # throttle

        def topic():
            name = r.cstr()
            r.uuid()  # topic id
            error, message = r.i16(), r.cstr()
            r.tags()
            return name, (error, message)

        return dict(r.carray(topic))

    # --- InitProducerId v4 (idempotent producer: no transactional id) --------------------

    def init_producer_id(self):
        """Returns (error_code, producer_id, producer_epoch)."""
        body = _cstr(None) + struct.pack(">iqh", 60000, -1, -1) + _TAGS
        r = self.request(INIT_PRODUCER_ID, 4, body)
        r.i32()  # throttle
        return r.i16(), r.i64(), r.i16()

    # --- DescribeQuorum v0 (Kafka KRaft; sent to a controller listener) -------------------

    def describe_quorum(self):
        """(error_code, leader_id, leader_epoch) of `__cluster_metadata`-0 as this node
        answers it (a KRaft voter that is not the leader answers NOT_LEADER_OR_FOLLOWER)."""
        partitions = _carray([struct.pack(">i", 0) + _TAGS])
        body = _carray([_cstr("__cluster_metadata") + partitions + _TAGS]) + _TAGS
        r = self.request(DESCRIBE_QUORUM, 0, body)
        error = r.i16()
        if error != NONE:
            return error, -1, -1
        topics = r.uvarint() - 1
        assert topics == 1, f"DescribeQuorum answered {topics} topics"
        r.cstr()
        assert r.uvarint() - 1 == 1
        r.i32()  # partition index
        error = r.i16()
        leader, epoch = r.i32(), r.i32()
        return (error, leader, epoch) if error == NONE else (error, -1, -1)

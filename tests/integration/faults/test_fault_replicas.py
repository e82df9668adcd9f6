"""The replica comparison (fault_replicas) on synthetic segment files: equal replicas pass, a
replica with a different batch below the high watermark, or missing one, is reported, and
anything at or above the high watermark (or a torn tail) is ignored. No broker needed."""

import struct
from types import SimpleNamespace

import fault_replicas


def batch(base: int, count: int, payload: bytes = b"x") -> bytes:
    # leader epoch, magic 2, crc, attributes, last offset delta, then anything
    body = struct.pack(">ibih", 0, 2, 0, 0) + struct.pack(">i", count - 1) + bytes(34) + payload
    return struct.pack(">qi", base, len(body)) + body


def node(tmp_path, node_id, segments: dict):
    d = tmp_path / f"node-{node_id}" / "kraft-logs" / "t-0"
    d.mkdir(parents=True)
    for base, data in segments.items():
        (d / f"{base:020}.log").write_bytes(data)
    return SimpleNamespace(node_id=node_id, data_dir=tmp_path / f"node-{node_id}")


def cluster(nodes, isr=None):
    return SimpleNamespace(state=lambda topic: {0: {"isr": isr or [n.node_id for n in nodes]}},
                           running=lambda: nodes)


def test_batches_and_log_end_ignore_a_torn_tail(tmp_path):
    n = node(tmp_path, 1, {0: batch(0, 3) + batch(3, 2), 5: batch(5, 1) + batch(6, 4)[:40]})
    d = fault_replicas.partition_dir(n.data_dir, "t", 0)
    assert [b[:2] for b in fault_replicas.batches(d)] == [(0, 2), (3, 4), (5, 5)]
    assert fault_replicas.log_end(d) == 6


def test_equal_below_the_high_watermark(tmp_path):
    a = node(tmp_path, 1, {0: batch(0, 3) + batch(3, 2) + batch(5, 1, b"a")})
    b = node(tmp_path, 2, {0: batch(0, 3) + batch(3, 2) + batch(5, 1, b"b")})  # differs at/after HW 5
    c = node(tmp_path, 3, {0: batch(0, 3), 3: batch(3, 2)})  # other segmentation, same batches
    r = fault_replicas.compare(cluster([a, b, c]), "t", 1, {0: 5})
    assert r["diverged"] == [] and r["partitions"][0]["replicas"] == {1: 2, 2: 2, 3: 2}


def test_a_different_batch_below_the_high_watermark_is_reported(tmp_path):
    a = node(tmp_path, 1, {0: batch(0, 3) + batch(3, 2, b"a")})
    b = node(tmp_path, 2, {0: batch(0, 3) + batch(3, 2, b"b")})  # not truncated
    r = fault_replicas.compare(cluster([a, b]), "t", 1, {0: 5})
    assert r["diverged"] == [{"partition": 0, "nodes": [1, 2], "batch": 1, "offsets": [(3, 4), (3, 4)]}]


def test_a_missing_batch_below_the_high_watermark_is_reported(tmp_path):
    a = node(tmp_path, 1, {0: batch(0, 3) + batch(3, 2)})
    b = node(tmp_path, 2, {0: batch(0, 3)})
    r = fault_replicas.compare(cluster([a, b]), "t", 1, {0: 5})
    assert {"partition": 0, "node": 2, "missing_from": 3, "hw": 5} in r["diverged"]


def test_replicas_outside_the_isr_are_not_compared(tmp_path):
    a = node(tmp_path, 1, {0: batch(0, 3) + batch(3, 2)})
    b = node(tmp_path, 2, {0: batch(0, 3)})
    assert fault_replicas.compare(cluster([a, b], isr=[1]), "t", 1, {0: 5})["diverged"] == []

"""Replica logs on disk, compared byte for byte below the high watermark (issue 11 fault 5,
cluster-design 2.11 invariant 8).

Owns: reading a partition directory (`<topic>-<partition>` anywhere under a node's data dir:
Kafka's `kraft-logs/`, Josefine's data dir) as the record batches of its `<base>.log`
segments in Kafka's format (base offset i64, batch length i32, then the batch: leader epoch,
magic, CRC, attributes, last offset delta at byte 23 ...), and checking that every replica
in the ISR holds exactly the same batches, byte for byte, below the partition's high
watermark (batches are copied verbatim from the leader, so the bytes, epochs and CRCs must
agree; a replica that failed to truncate a diverged suffix differs here).
Must never: look above the high watermark (a replica may legitimately hold more there), or
read a torn tail as a batch (a short or non-positive length ends the segment).
"""

import struct
from pathlib import Path

HEADER = 12  # base offset + batch length
LAST_OFFSET_DELTA_AT = 23
# A v2 batch header is 61 bytes, 12 of them before the length's end.
MIN_BATCH_LENGTH = 49


def partition_dir(data_dir: Path, topic: str, partition: int):
    name = f"{topic}-{partition}"
    for path in Path(data_dir).rglob(name):
        if path.is_dir() and path.name == name:
            return path
    return None


def batches(part_dir: Path) -> list:
    """[(base_offset, last_offset, bytes)] of every complete batch, in offset order."""
    out = []
    for seg in sorted(Path(part_dir).glob("*.log")):
        data = seg.read_bytes()
        pos = 0
        while pos + HEADER <= len(data):
            base, length = struct.unpack_from(">qi", data, pos)
            end = pos + HEADER + length
            if length < MIN_BATCH_LENGTH or end > len(data):
                break
            (delta,) = struct.unpack_from(">i", data, pos + LAST_OFFSET_DELTA_AT)
            out.append((base, base + delta, data[pos:end]))
            pos = end
    return out


def log_end(part_dir: Path) -> int:
    """One past the last offset of the last complete batch (0 when empty)."""
    b = batches(part_dir)
    return b[-1][1] + 1 if b else 0


def compare(cluster, topic: str, partitions: int, high_watermarks: dict) -> dict:
    """Every running ISR member of each partition against the others below its high
    watermark. Returns {"partitions": {p: {"replicas": {node: batches below HW}, "hw"}},
    "diverged": [..]} where diverged names each partition whose replicas differ (first
    differing batch), or that misses a batch below the HW."""
    state = cluster.state(topic)
    report = {"partitions": {}, "diverged": []}
    for p in range(partitions):
        hw = high_watermarks[p]
        views = {}
        for node in cluster.running():
            if node.node_id not in state[p]["isr"]:
                continue
            d = partition_dir(node.data_dir, topic, p)
            views[node.node_id] = [b for b in (batches(d) if d else []) if b[1] < hw]
        report["partitions"][p] = {"hw": hw, "replicas": {n: len(v) for n, v in views.items()}}
        ids = sorted(views)
        for n in ids:
            v = views[n]
            covered = v[-1][1] + 1 if v else 0
            if hw > 0 and covered != hw:
                report["diverged"].append({"partition": p, "node": n, "missing_from": covered, "hw": hw})
        for a, b in zip(ids, ids[1:]):
            va, vb = views[a], views[b]
            for i, (ba, bb) in enumerate(zip(va, vb)):
                if ba != bb:
                    report["diverged"].append({"partition": p, "nodes": [a, b], "batch": i,
                                               "offsets": [ba[:2], bb[:2]]})
                    break
            else:
                if len(va) != len(vb):
                    report["diverged"].append({"partition": p, "nodes": [a, b], "batches": [len(va), len(vb)]})
    return report

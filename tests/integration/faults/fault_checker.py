"""The fault suite's checker (issue 11, cluster-design 2.11 invariants 7 and 10): pure code.

Owns: judging one history of a workload run through faults. A history is what the clients
saw, nothing taken from the brokers:
  acks        [(partition, offset, value, t)]: every acknowledged write (t: wall-clock seconds)
  attempted   values the producers tried to write (acknowledged or not)
  concurrent  [(partition, offset, value, t)]: what a consumer read while the faults ran
  final       [(partition, offset, value)]: a fresh consumer's read of everything, from the
              earliest offset to the high watermark, after the faults
  faults      [{"name", "t", "partitions", "heal"}]: when each fault was injected and which
              partitions it hit (empty: all), and when it was healed ("heal": true), for
              the unavailability figures
Values are unique strings ending in a sequence number that grows with each write of one
writer (`w3-17`, VerifiableProducer's `17` or `5.17`): the writer is everything before the
trailing digits, the number is the order in which that writer sent them.

Checks (each one a count that must be 0 unless named in `allowed`: acks=1 without
idempotence allows lost, reordered and duplicated, which are then reported, not failed):
  lost        acknowledged (partition, offset, value) not at that offset in the final read;
              an ack without an offset (librdkafka reports none when the broker answered a
              retried batch with DUPLICATE_SEQUENCE_NUMBER: written before, offset unknown)
              counts as lost when the value is nowhere in that partition
  duplicated  a value present more than once in the final read
  reordered   within a partition, a writer's sequence numbers going down along the offsets
              (final read), or its acknowledged offsets going down as its numbers go up
  changed     an offset read with one value during the faults and another one at the end
              (or two different values during the faults)
  gone        an offset read during the faults that the final read no longer has
  foreign     a final value no producer ever attempted
Figures (never asserted): unavailability per fault = the longest gap between consecutive
acknowledgements on the partitions it hit, from the last ack before the fault to the next
fault, and the time from the fault to the ack that ended that gap (see `unavailability`).
Must never: decide anything from broker-side state, or call a history clean when one of
the checks found a defect (`assert_clean` raises naming every non-zero count and examples).
"""

import re
from collections import defaultdict

_SEQ = re.compile(r"^(.*?)(\d+)$")
# Examples printed per defect; the counts are always complete.
EXAMPLES = 5


def writer_seq(value: str):
    """(writer, sequence number) of a value, or (value, None) when it ends in no digits."""
    m = _SEQ.match(value)
    if m is None:
        return value, None
    return m.group(1), int(m.group(2))


# What acks=1 without idempotence may do: lose acknowledged writes on a leader failure,
# reorder (a retried batch lands after later ones) and duplicate (a retry after a lost answer).
ACKS1_ALLOWED = ("lost", "reordered", "duplicated")


def check(history: dict, allowed=()) -> dict:
    """The report of a history (see the module doc): counts, examples and figures."""
    acks = history.get("acks", [])
    final = history.get("final", [])
    concurrent = history.get("concurrent", [])
    attempted = history.get("attempted")
    faults = history.get("faults", [])

    final_at = {}
    final_dup_offsets = []
    for p, off, v in final:
        if (p, off) in final_at and final_at[(p, off)] != v:
            final_dup_offsets.append((p, off, final_at[(p, off)], v))
        final_at[(p, off)] = v

    examples = defaultdict(list)

    def note(kind, item):
        if len(examples[kind]) < EXAMPLES:
            examples[kind].append(item)

    # lost: acknowledged and not at its offset at the end (an ack without an offset: not in
    # that partition at all).
    final_places = defaultdict(set)
    for p, off, v in final:
        final_places[v].add(p)
    lost = 0
    no_offset = 0
    for p, off, v, _t in acks:
        if off is None:
            no_offset += 1
            if p not in final_places.get(v, ()):
                lost += 1
                note("lost", {"partition": p, "offset": None, "acked": v, "final": None})
            continue
        got = final_at.get((p, off))
        if got != v:
            lost += 1
            note("lost", {"partition": p, "offset": off, "acked": v, "final": got})

    # duplicated: a value more than once in the final read (also at two offsets).
    where = defaultdict(list)
    for p, off, v in final:
        where[v].append((p, off))
    duplicated = 0
    for v, places in where.items():
        if len(set(places)) > 1:
            duplicated += len(set(places)) - 1
            note("duplicated", {"value": v, "at": sorted(set(places))})

    # reordered: per partition and writer, numbers must grow with the offsets; same for acks.
    reordered = 0
    by_partition = defaultdict(list)
    for p, off, v in final:
        by_partition[p].append((off, v))
    for p, rows in by_partition.items():
        last = {}
        for off, v in sorted(set(rows)):
            w, seq = writer_seq(v)
            if seq is None:
                continue
            if w in last and seq < last[w][1]:
                reordered += 1
                note("reordered", {"partition": p, "writer": w, "offset": off, "seq": seq,
                                   "after": {"offset": last[w][0], "seq": last[w][1]}})
            last[w] = (off, seq)
    acked_by = defaultdict(list)
    for p, off, v, _t in acks:
        w, seq = writer_seq(v)
        if seq is not None and off is not None:
            acked_by[(p, w)].append((seq, off, v))
    for (p, w), rows in acked_by.items():
        rows.sort()
        for (s1, o1, v1), (s2, o2, v2) in zip(rows, rows[1:]):
            if o2 <= o1:
                reordered += 1
                note("reordered", {"partition": p, "acked": [[v1, o1], [v2, o2]]})

    # changed / gone: what the concurrent consumer read must stay.
    changed = len(final_dup_offsets)
    for p, off, v1, v2 in final_dup_offsets:
        note("changed", {"partition": p, "offset": off, "values": [v1, v2], "in": "final read"})
    gone = 0
    seen_during = {}
    for p, off, v, _t in concurrent:
        earlier = seen_during.get((p, off))
        if earlier is not None and earlier != v:
            changed += 1
            note("changed", {"partition": p, "offset": off, "values": [earlier, v], "in": "concurrent reads"})
        seen_during.setdefault((p, off), v)
    for (p, off), v in seen_during.items():
        got = final_at.get((p, off))
        if got is None:
            gone += 1
            note("gone", {"partition": p, "offset": off, "read": v})
        elif got != v:
            changed += 1
            note("changed", {"partition": p, "offset": off, "values": [v, got], "in": "concurrent vs final"})

    foreign = 0
    if attempted is not None:
        attempted = set(attempted)
        for p, off, v in final:
            if v not in attempted:
                foreign += 1
                note("foreign", {"partition": p, "offset": off, "value": v})

    return {
        "acknowledged": len(acks),
        "acked_without_offset": no_offset,
        "attempted": len(attempted) if attempted is not None else None,
        "final_records": len(final_at),
        "read_during_faults": len(seen_during),
        "lost": lost,
        "duplicated": duplicated,
        "reordered": reordered,
        "changed": changed,
        "gone": gone,
        "foreign": foreign,
        "allowed": sorted(allowed),
        "unavailability": unavailability(acks, faults, history.get("end_t")),
        "examples": dict(examples),
    }


def unavailability(acks, faults, end_t=None) -> list:
    """Per fault, over the partitions it hit (all when it names none):
    "max_gap_s": the longest gap between consecutive acks of one of them, from the last ack
    before the fault up to the next fault (or the end);
    "unavailable_s": from the fault to the ack that ended that longest gap (0 if the gap
    ended before the fault; None if a partition never acked again): acks of writes the
    broker answered just before the fault still arrive a moment after it, so the first
    ack after the fault is not the recovery;
    "first_ack_s": {partition: time to its first ack after the fault, or None};
    a fault with "any_partition": true is measured on the acks of all partitions together;
    "healed_s" / "after_heal_s": when the fault was healed (a mark with "heal": true, which
    is not a fault itself) and the time from then to the end of that gap."""
    times = defaultdict(list)
    for p, _off, _v, t in acks:
        times[p].append(t)
        times["any"].append(t)
    for ts in times.values():
        ts.sort()
    all_partitions = sorted(p for p in times if p != "any")
    out = []
    heals = sorted(f["t"] for f in faults if f.get("heal"))
    ordered = sorted((f for f in faults if not f.get("heal")), key=lambda f: f["t"])
    for i, f in enumerate(ordered):
        t0 = f["t"]
        t_next = ordered[i + 1]["t"] if i + 1 < len(ordered) else (end_t if end_t is not None else float("inf"))
        # "any": acks on any partition count (a workload whose partitioner, not the fault,
        # decides which partitions get writes when)
        parts = ["any"] if f.get("any_partition") else list(f.get("partitions") or all_partitions)
        first = {}
        gap, gap_end = 0.0, None
        for p in parts:
            ts = times.get(p, [])
            after = [t for t in ts if t0 <= t <= t_next]
            first[p] = round(after[0] - t0, 3) if after else None
            # from the last ack before the fault, or the fault itself if there was none
            window = ([t for t in ts if t < t0][-1:] or [t0]) + after
            for a, b in zip(window, window[1:]):
                if b - a > gap:
                    gap, gap_end = b - a, b
        never = any(v is None for v in first.values())
        unavailable = None if never or gap_end is None else round(max(0.0, gap_end - t0), 3)
        heal = next((h for h in heals if t0 <= h <= t_next), None)
        after_heal = None
        if heal is not None and unavailable is not None:
            after_heal = round(max(0.0, gap_end - heal), 3)
        out.append({"name": f["name"], "t": t0, "partitions": parts, "first_ack_s": first,
                    "unavailable_s": unavailable, "max_gap_s": round(gap, 3),
                    "healed_s": None if heal is None else round(heal - t0, 3), "after_heal_s": after_heal})
    return out


DEFECTS = ("lost", "duplicated", "reordered", "changed", "gone", "foreign")


def defects(report: dict) -> dict:
    """The non-zero defect counts of a report, leaving out the allowed ones."""
    return {k: report[k] for k in DEFECTS
            if report[k] and k not in report["allowed"]}


def format_report(report: dict, title: str = "") -> str:
    lines = [f"== fault checker{': ' + title if title else ''}",
             f"   acknowledged {report['acknowledged']} ({report['acked_without_offset']} without an offset)  "
             f"attempted {report['attempted']}  "
             f"final records {report['final_records']}  read during faults {report['read_during_faults']}"]
    lines.append("   " + "  ".join(f"{k} {report[k]}" for k in DEFECTS)
                 + (f"  (allowed, reported: {', '.join(report['allowed'])})" if report["allowed"] else ""))
    for u in report["unavailability"]:
        un = "never recovered" if u["unavailable_s"] is None else f"{u['unavailable_s']:.3f} s"
        healed = "" if u["healed_s"] is None else f", healed at {u['healed_s']:.1f} s (+{u['after_heal_s']} s)"
        lines.append(f"   fault {u['name']}: unavailable {un} (partitions {u['partitions']}), "
                     f"longest ack gap {u['max_gap_s']:.3f} s{healed}; first ack per partition {u['first_ack_s']}")
    for kind, items in report["examples"].items():
        for item in items:
            lines.append(f"   {kind}: {item}")
    return "\n".join(lines)


def assert_clean(report: dict, title: str = ""):
    """Print the report; raise AssertionError naming every defect found."""
    text = format_report(report, title)
    print(text)
    bad = defects(report)
    assert not bad, f"fault checker found {bad}:\n{text}"

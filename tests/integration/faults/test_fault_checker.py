"""The fault checker on synthetic histories: a clean one passes, and each defect is counted
by its own check and fails `assert_clean` (so every check can fail). No broker needed."""

import copy

import pytest

from fault_checker import ACKS1_ALLOWED, assert_clean, check, defects, writer_seq


def clean_history():
    """Two writers over two partitions, all acknowledged, all read back; a consumer read a
    prefix during the faults; one fault on partition 0 at t=10 with a 2.5 s gap."""
    acks, final = [], []
    offsets = {0: 0, 1: 0}
    t = 0.0
    for seq in range(10):
        for w in ("w0-", "w1-"):
            p = seq % 2
            v = f"{w}{seq}"
            t += 1.0 if not (p == 0 and seq == 6 and w == "w0-") else 2.5
            acks.append((p, offsets[p], v, t))
            final.append((p, offsets[p], v))
            offsets[p] += 1
    concurrent = [(p, o, v, 5.0) for p, o, v in final[:8]]
    faults = [{"name": "kill", "t": 10.0, "partitions": [0]}]
    attempted = [v for _, _, v in final] + ["w0-99"]  # one write never acknowledged
    return {"acks": acks, "final": final, "concurrent": concurrent, "attempted": attempted,
            "faults": faults, "end_t": t}


def test_writer_seq():
    assert writer_seq("w3-17") == ("w3-", 17)
    assert writer_seq("17") == ("", 17)
    assert writer_seq("5.17") == ("5.", 17)
    assert writer_seq("abc") == ("abc", None)


def test_clean_history_passes_and_reports_unavailability():
    report = check(clean_history())
    assert defects(report) == {}
    assert report["acknowledged"] == 20 and report["final_records"] == 20
    (u,) = report["unavailability"]
    assert u["partitions"] == [0] and u["unavailable_s"] is not None
    assert u["max_gap_s"] >= 2.5
    assert_clean(report, "clean synthetic history")


def mutate(kind):
    h = clean_history()
    final = h["final"]
    if kind == "lost":
        # an acknowledged record missing from the final read (truncated away)
        h["final"] = [r for r in final if r != final[-1]]
    elif kind == "lost_overwritten":
        p, o, _ = final[3]
        h["final"][3] = (p, o, "w0-99")
    elif kind == "duplicated":
        p, _o, v = final[4]
        h["final"].append((p, max(o for q, o, _ in final if q == p) + 1, v))
    elif kind == "reordered":
        # swap two values of the same writer in one partition (acks stay as they were)
        rows = [i for i, (p, _o, v) in enumerate(final) if p == 0 and v.startswith("w0-")]
        i, j = rows[0], rows[1]
        (pi, oi, vi), (pj, oj, vj) = final[i], final[j]
        h["final"][i], h["final"][j] = (pi, oi, vj), (pj, oj, vi)
        h["acks"], h["concurrent"] = [], []  # only the final-read order is wrong
    elif kind == "reordered_acks":
        (p1, o1, v1, t1), (p2, o2, v2, t2) = h["acks"][0], h["acks"][4]
        h["acks"][0], h["acks"][4] = (p1, o2, v1, t1), (p2, o1, v2, t2)
        h["final"] = [(p, o, v) for p, o, v, _t in h["acks"]]
        h["concurrent"] = []
    elif kind == "changed":
        p, o, v, t = h["concurrent"][2]
        h["concurrent"][2] = (p, o, "w1-98", t)
        h["attempted"].append("w1-98")
    elif kind == "changed_between_reads":
        p, o, v, t = h["concurrent"][2]
        h["concurrent"].append((p, o, v + "0", t + 1))
    elif kind == "gone":
        p = 1
        end = max(o for q, o, _ in final if q == p) + 1
        h["concurrent"].append((p, end, "w1-97", 6.0))
        h["attempted"].append("w1-97")
    elif kind == "foreign":
        p = 1
        end = max(o for q, o, _ in final if q == p) + 1
        h["final"].append((p, end, "zz-1"))
    else:
        raise ValueError(kind)
    return h


EXPECT = {
    "lost": "lost", "lost_overwritten": "lost", "duplicated": "duplicated", "reordered": "reordered",
    "reordered_acks": "reordered", "changed": "changed", "changed_between_reads": "changed",
    "gone": "gone", "foreign": "foreign",
}


@pytest.mark.parametrize("kind", sorted(EXPECT))
def test_each_defect_is_counted_and_fails(kind):
    h = mutate(kind)
    report = check(h)
    bad = defects(report)
    assert EXPECT[kind] in bad, f"{kind}: not detected: {report}"
    with pytest.raises(AssertionError, match=EXPECT[kind]):
        assert_clean(report, kind)


@pytest.mark.parametrize("kind", ["lost", "reordered", "duplicated"])
def test_acks1_allowed_defects_are_reported_but_do_not_fail(kind):
    report = check(mutate(kind), allowed=ACKS1_ALLOWED)
    assert report[kind] >= 1
    assert defects(report) == {}
    assert_clean(report, kind)


@pytest.mark.parametrize("kind", ["changed", "gone", "foreign"])
def test_acks1_still_fails_on_reads_that_change_or_vanish(kind):
    # a consumer only reads below the high watermark, which survives a leader failure
    assert kind in defects(check(mutate(kind), allowed=ACKS1_ALLOWED))


def test_unavailability_never_recovered():
    h = clean_history()
    h["faults"] = [{"name": "late", "t": h["end_t"] + 1, "partitions": [0, 1]}]
    (u,) = check(h)["unavailability"]
    assert u["unavailable_s"] is None and u["first_ack_s"] == {0: None, 1: None}


def test_input_not_modified():
    h = clean_history()
    before = copy.deepcopy(h)
    check(h)
    assert h == before


def test_unavailability_is_the_gap_around_the_fault_until_healed():
    # partition 0 acks every 0.1 s, stops at t=10 (fault), healed at 15, resumes at 18.5;
    # one straggler ack at 10.05 (a write answered just before the fault).
    acks, off = [], 0
    for i in range(100):
        acks.append((0, off, f"w0-{off}", i * 0.1)); off += 1
    acks.append((0, off, f"w0-{off}", 10.05)); off += 1
    for i in range(20):
        acks.append((0, off, f"w0-{off}", 18.5 + i * 0.1)); off += 1
    faults = [{"name": "cut", "t": 10.0, "partitions": [0]}, {"name": "heal", "t": 15.0, "heal": True}]
    (u,) = check({"acks": acks, "final": [(p, o, v) for p, o, v, _ in acks], "faults": faults})["unavailability"]
    assert u["first_ack_s"] == {0: 0.05}
    assert u["max_gap_s"] == 8.45 and u["unavailable_s"] == 8.5
    assert u["healed_s"] == 5.0 and u["after_heal_s"] == 3.5


def test_unavailability_counts_from_the_fault_when_no_ack_preceded_it():
    acks = [(1, 0, "w0-0", 1.0), (0, 0, "w0-1", 13.0), (0, 1, "w0-2", 14.0)]
    faults = [{"name": "early", "t": 2.0, "partitions": [0]}]
    (u,) = check({"acks": acks, "final": [(p, o, v) for p, o, v, _ in acks], "faults": faults})["unavailability"]
    assert u["max_gap_s"] == 11.0 and u["unavailable_s"] == 11.0


def test_unavailability_on_any_partition():
    # partition 1 is silent for 20 s (no writes sent there), partition 0 only 3 s
    acks = [(0, 0, "w0-0", 1.0), (1, 0, "w0-1", 1.5), (0, 1, "w0-2", 5.0), (1, 1, "w0-3", 21.5)]
    faults = [{"name": "kill", "t": 2.0, "partitions": [0, 1], "any_partition": True}]
    (u,) = check({"acks": acks, "final": [(p, o, v) for p, o, v, _ in acks], "faults": faults})["unavailability"]
    assert u["partitions"] == ["any"] and u["max_gap_s"] == 16.5 and u["unavailable_s"] == 19.5
    faults[0]["any_partition"] = False
    (u,) = check({"acks": acks, "final": [(p, o, v) for p, o, v, _ in acks], "faults": faults})["unavailability"]
    assert u["max_gap_s"] == 20.0


def test_ack_without_offset_is_found_by_value_in_its_partition():
    h = clean_history()
    p, _o, v, t = h["acks"][5]
    h["acks"][5] = (p, None, v, t)
    report = check(h)
    assert defects(report) == {} and report["acked_without_offset"] == 1
    h["final"] = [r for r in h["final"] if r[2] != v]
    h["concurrent"] = [r for r in h["concurrent"] if r[2] != v]
    assert defects(check(h)) == {"lost": 1}

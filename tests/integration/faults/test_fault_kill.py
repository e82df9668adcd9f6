"""Fault 1 (issue 11): kill -9 the leader of a partition mid-stream under idempotent acks=all
producers (RF=3, min.insync.replicas=2, 6 partitions), restart it, and chase the new leader.
Nothing acknowledged may be lost, duplicated or reordered; nothing read may disappear or
change. The default suite runs one kill; `scripts/faults` runs the five-kill chase."""

import pytest

import fault_scenarios as fs
from fault_cluster import fault_cluster  # noqa: F401 - fixture

pytestmark = pytest.mark.cluster


def test_kill_leader_once(fault_cluster):  # noqa: F811
    report = fs.run(fault_cluster, "kill1", fs.kill_leader_chase, 1, restart=False)
    (r,) = report["fault"]
    assert r["new_leader"] != r["victim"]


@pytest.mark.faults
@pytest.mark.timeout(900)
def test_kill_leader_chase_5(fault_cluster):  # noqa: F811
    report = fs.run(fault_cluster, "kill5", fs.kill_leader_chase, 5)
    assert len(report["fault"]) == 5
    victims = [r["victim"] for r in report["fault"]]
    assert all(a != b for a, b in zip(victims, victims[1:])), f"each kill chases the new leader: {victims}"


@pytest.mark.faults
@pytest.mark.timeout(600)
def test_follower_truncation(fault_cluster):  # noqa: F811
    report = fs.run(fault_cluster, "truncate", fs.follower_truncation)
    r = report["fault"]
    # the old leader held writes no follower had (so the new leader wrote other batches at
    # those offsets): run() found its log equal to the others below the HW after the restart
    assert r["unreplicated_tail"] > 0, f"the scenario made no diverged tail: {r}"

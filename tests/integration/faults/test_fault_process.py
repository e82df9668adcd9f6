"""Faults 2, 3 and 6 (issue 11) on a loopback cluster under the workload: a leader SIGSTOPped
longer than the broker session timeout then SIGCONTed (a zombie leader), a SIGTERM rolling
restart of every broker, and acks=1 without idempotence through leader kills (loss, and
the reordering and duplicates of plain retries, allowed and reported, never a failure; what
consumers read must still never change or disappear). Run by `scripts/faults`."""

import pytest

import fault_scenarios as fs
from fault_checker import ACKS1_ALLOWED
from fault_cluster import fault_cluster  # noqa: F401 - fixture

pytestmark = [pytest.mark.cluster, pytest.mark.faults]


def test_pause_leader_past_session(fault_cluster):  # noqa: F811
    fs.run(fault_cluster, "pause", fs.pause_leader)


@pytest.mark.timeout(600)
def test_rolling_restart_sigterm(fault_cluster):  # noqa: F811
    fs.run(fault_cluster, "rolling", fs.rolling_restart)


@pytest.mark.timeout(600)
def test_acks1_loss_reported(fault_cluster):  # noqa: F811
    report = fs.run(fault_cluster, "acks1", fs.kill_leader_chase, 3, acks=1, allowed=ACKS1_ALLOWED)
    print(f"acks=1 through 3 leader kills on {fault_cluster.kind}: {report['lost']} of "
          f"{report['acknowledged']} acknowledged writes lost, {report['reordered']} reordered, "
          f"{report['duplicated']} duplicated (allowed with acks=1, no idempotence)")

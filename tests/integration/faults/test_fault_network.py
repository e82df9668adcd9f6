"""Fault 4 (issue 11): network partitions between brokers, one network namespace per broker
(fault_netns), the clients in the root namespace reaching every broker throughout. Skipped
with the reason where namespaces cannot be made. The default suite runs the isolated
leader; `scripts/faults` runs the rest."""

import pytest

import fault_netns
import fault_scenarios as fs
from fault_cluster import netns_cluster  # noqa: F401 - fixture

pytestmark = pytest.mark.cluster


def test_leader_isolated_from_followers(netns_cluster):  # noqa: F811
    fs.run(netns_cluster, "isolated", fs.isolate_leader)


@pytest.mark.faults
def test_leader_isolated_blackhole(netns_cluster):  # noqa: F811
    fs.run(netns_cluster, "isolated-bh", fs.isolate_leader, mode="blackhole")


@pytest.mark.faults
def test_controller_isolated(netns_cluster):  # noqa: F811
    fs.run(netns_cluster, "ctrl-isolated", fs.isolate_controller)


@pytest.mark.faults
def test_one_way_cut_to_leader(netns_cluster):  # noqa: F811
    fs.run(netns_cluster, "one-way", fs.one_way_cut)


@pytest.fixture
def netem():
    reason = fault_netns.netem_availability()
    if reason:
        pytest.skip(reason)


@pytest.mark.faults
def test_leader_delayed(netem, netns_cluster):  # noqa: F811
    fs.run(netns_cluster, "delay", fs.delay_leader)

"""Fault 7 (issue 11): Apache Kafka's VerifiableProducer (--acks -1, idempotent) and
VerifiableConsumer (a group member) through five kill -9 leader chases, their JSON events
joined by the same checker. Run by `scripts/faults`."""

import pytest

import fault_java
import fault_scenarios as fs
from fault_cluster import PARTITIONS, fault_cluster  # noqa: F401 - fixture

pytestmark = [pytest.mark.cluster, pytest.mark.faults]


@pytest.mark.timeout(900)
def test_verifiable_clients_through_5_leader_kills(fault_cluster, tmp_path):  # noqa: F811
    reason = fault_java.tools_available()
    if reason:
        pytest.skip(reason)

    def java(cluster, topic):
        return fault_java.JavaWorkload(cluster.bootstrap(), topic, PARTITIONS, tmp_path / "java")

    report = fs.run(fault_cluster, "java5", fs.kill_leader_chase, 5, workload=java)
    assert len(report["fault"]) == 5
    assert report["read_during_faults"] > 0, "VerifiableConsumer read nothing"

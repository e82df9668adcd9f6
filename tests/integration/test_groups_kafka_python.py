"""Consumer groups with kafka-python 3.0: a group of three on six partitions through joins, a
leave, a consumer restart and a broker restart (groups_util.group_life_cycle)."""

import signal
import time

from kafka import ConsumerRebalanceListener, KafkaConsumer, OffsetAndMetadata
from kafka import TopicPartition as KafkaTopicPartition
from kafka.errors import KafkaConnectionError, KafkaTimeoutError

from groups_util import (HEARTBEAT_INTERVAL_MS, SESSION_TIMEOUT_MS, OwnershipLog, ThreadMember,
                         group_broker, group_life_cycle, live_group_across_broker_restart)

__all__ = ["group_broker"]  # the module-scoped broker fixture, used by name below


class _Listener(ConsumerRebalanceListener):
    def __init__(self, member):
        self.member = member

    def on_partitions_revoked(self, revoked):
        self.member._revoked([tp.partition for tp in revoked])

    def on_partitions_assigned(self, assigned):
        self.member._assigned([tp.partition for tp in assigned])

    def on_partitions_lost(self, lost):
        self.member._revoked([tp.partition for tp in lost], "lost")


class KafkaPythonMember(ThreadMember):
    """kafka-python subscriber (eager range assignor by default). Rebalances run inside
    poll(), so committing each batch before the next poll commits everything the member
    consumed before it can be revoked."""

    def __init__(self, name, bootstrap, group, topic, ownership=None, outage_ok=False):
        """`outage_ok`: the broker restarts under the live member, so poll() raising a
        connection error (kafka-python does, where librdkafka and Java retry inside) is
        expected: the member polls again, as an application would."""
        super().__init__(name, ownership)
        self.outage_ok = outage_ok
        self.outage_errors = []
        self.consumer = KafkaConsumer(
            bootstrap_servers=bootstrap, group_id=group, client_id=name,
            enable_auto_commit=False, auto_offset_reset="earliest",
            session_timeout_ms=SESSION_TIMEOUT_MS, heartbeat_interval_ms=HEARTBEAT_INTERVAL_MS)
        self.topic = topic
        self.thread.start()

    def _run(self):
        c = self.consumer
        c.subscribe([self.topic], listener=_Listener(self))
        try:
            while not self.stop.is_set():
                try:
                    batch = c.poll(timeout_ms=200)
                except (KafkaConnectionError, KafkaTimeoutError) as exc:
                    if not self.outage_ok:
                        raise
                    self.outage_errors.append(exc)
                    time.sleep(0.2)
                    continue
                offsets = {}
                for tp, records in batch.items():
                    for r in records:
                        self._record(r.partition, r.offset, r.value.decode())
                    offsets[KafkaTopicPartition(tp.topic, tp.partition)] = OffsetAndMetadata(records[-1].offset + 1, "", -1)
                if offsets:
                    c.commit(offsets)
        finally:
            c.close()


def test_group_of_three_life_cycle(group_broker):
    ownership = OwnershipLog()

    def make(name, group, topic):
        return KafkaPythonMember(name, group_broker.bootstrap, group, topic, ownership)

    # SIGTERM here (the confluent and Java tests use SIGKILL): a clean shutdown keeps them too.
    group_life_cycle(group_broker, make, signal.SIGTERM, ownership=ownership)


def test_live_group_survives_broker_restart(group_broker):
    def make(name, group, topic):
        return KafkaPythonMember(name, group_broker.bootstrap, group, topic, outage_ok=True)

    live_group_across_broker_restart(group_broker, make)

"""Issue 10, "No chain quorum": with two of three nodes down, the survivor answers admin
requests with REQUEST_TIMED_OUT (Josefine: within the request's timeout) and keeps serving the
metadata it has; once the quorum is back, a retried creation happens exactly once.

The same checks run against three combined Kafka 4.1 nodes (their metadata quorum is lost the
same way): the error is Kafka's; Kafka answers it only after 60 s, so the time bound is
Josefine's own.
"""

import time
import uuid

import pytest

import wire
from cluster import wait_until
from conftest import BROKER_KIND

pytestmark = pytest.mark.cluster

TIMEOUT_MS = 3000
# The answer may come at the request timeout; allow the broker and client some slack.
ANSWER_WITHIN_S = TIMEOUT_MS / 1000 + 3.0


def test_admin_times_out_without_quorum_and_reads_keep_working(cluster_factory):
    c = cluster_factory(n=3)
    controller = c.wait_controller()
    survivor = c.node(next(i for i in (1, 2, 3) if i != controller))
    before = f"quorum-before-{uuid.uuid4().hex[:8]}"
    # A Kafka controller's first creation after start-up can take many seconds on a busy host.
    with wire.Connection(survivor.host, survivor.port, timeout_s=60) as conn:
        assert conn.create_topics([(before, 2, 1, {})])[before][0] == wire.NONE
    c.wait_topic(before, 2)

    victims = [n for n in c.running() if n.node_id != survivor.node_id]
    for n in victims:
        n.kill()

    during = f"quorum-during-{uuid.uuid4().hex[:8]}"
    t0 = time.monotonic()
    with wire.Connection(survivor.host, survivor.port, timeout_s=90) as conn:
        error, message, _ = conn.create_topics([(during, 1, 1, {})], timeout_ms=TIMEOUT_MS)[during]
    elapsed = time.monotonic() - t0
    print(f"CreateTopics without quorum: error {error} ({message!r}) after {elapsed:.2f} s")
    assert error == wire.REQUEST_TIMED_OUT, (error, message)
    if BROKER_KIND == "josefine":
        # Josefine answers at the request's timeout. Kafka 4.1.2 answers the same error only
        # after its broker-to-controller retries give up (measured: 60 s), past what the
        # client asked for.
        assert elapsed <= ANSWER_WITHIN_S, elapsed

    # Reads of the metadata the survivor has keep working.
    md = survivor.metadata([before])
    parts = md["topics"][before]["partitions"]
    assert md["topics"][before]["error"] == wire.NONE
    assert sorted(parts) == [0, 1], parts

    for n in victims:
        n.start()
    c.wait_controller()

    # The timed-out creation may or may not have committed; a retry ends with the topic
    # existing once, with the partitions asked for.
    def created():
        with wire.Connection(survivor.host, survivor.port, timeout_s=60) as conn:
            error = conn.create_topics([(during, 1, 1, {})], timeout_ms=TIMEOUT_MS)[during][0]
        return error in (wire.NONE, wire.TOPIC_ALREADY_EXISTS)
    wait_until(created, f"{during} created once the quorum is back", timeout_s=60, interval_s=0.5)
    agreed = c.wait_topic(during, 1)
    assert sorted(agreed) == [0], agreed

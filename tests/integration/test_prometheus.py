"""Acceptance 2 of issue 14: Debian's `prometheus` scrapes a Josefine broker every second;
`up` is 1, every expression of dashboards/josefine.json is accepted and each panel that is not
marked cluster-only returns data; `promtool check rules` passes on dashboards/alerts.yml.

Josefine-only (Kafka has no /metrics). Skips with a message when the Debian package is not
installed (scripts/install-test-deps installs it when apt-get can).
"""

import json
import shutil
import socket
import subprocess
import time
import urllib.parse
import urllib.request

import pytest
from confluent_kafka import Producer, TopicPartition

import clients
from conftest import BROKER_KIND, REPO_ROOT, free_port
from test_operating import ops_factory  # noqa: F401 - the fixture, used by name

pytestmark = pytest.mark.skipif(
    BROKER_KIND != "josefine",
    reason="Josefine-only: Apache Kafka exports JMX, not /metrics")

DASHBOARD = REPO_ROOT / "dashboards" / "josefine.json"
ALERTS = REPO_ROOT / "dashboards" / "alerts.yml"


def need(tool):
    path = shutil.which(tool)
    if path is None:
        pytest.skip(f"Debian's {tool} is not installed (scripts/install-test-deps installs the "
                    f"`prometheus` package when apt-get can)")
    return path


def test_promtool_accepts_the_alert_rules():
    promtool = need("promtool")
    proc = subprocess.run([promtool, "check", "rules", str(ALERTS)], capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "SUCCESS" in proc.stdout


def dashboard_targets():
    """(panel title, expression, cluster-only) for every query of the dashboard."""
    dash = json.loads(DASHBOARD.read_text())
    assert dash["templating"]["list"][0]["name"] == "instance"
    out = []
    for panel in dash["panels"]:
        for t in panel.get("targets", []):
            out.append((panel["title"], t["expr"],
                        panel.get("description", "").startswith("Cluster only")))
    return out


def query(base: str, expr: str) -> dict:
    url = f"{base}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
    try:
        with urllib.request.urlopen(url, timeout=10) as r:
            return json.loads(r.read())
    except urllib.error.HTTPError as e:
        return json.loads(e.read())


def test_prometheus_scrapes_and_every_dashboard_expression_works(ops_factory, tmp_path):  # noqa: F811
    prometheus = need("prometheus")
    broker = ops_factory()
    bs = broker.bootstrap
    web = free_port()
    config = tmp_path / "prometheus.yml"
    config.write_text(
        "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
        "scrape_configs:\n  - job_name: josefine\n"
        f"    static_configs:\n      - targets: ['127.0.0.1:{broker.http_port}']\n")
    log = open(tmp_path / "prometheus.log", "wb")
    proc = subprocess.Popen([prometheus, f"--config.file={config}",
                             f"--storage.tsdb.path={tmp_path / 'tsdb'}",
                             f"--web.listen-address=127.0.0.1:{web}"],
                            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    base = f"http://127.0.0.1:{web}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                r = query(base, 'up{job="josefine"}')
                if r["status"] == "success" and r["data"]["result"] and \
                        r["data"]["result"][0]["value"][1] == "1":
                    break
            except OSError:
                pass
            assert time.monotonic() < deadline, (tmp_path / "prometheus.log").read_text()[-2000:]
            time.sleep(0.5)

        # Traffic for every panel: produce, consume, a committed offset (lag), an error.
        topic, group = "prom-traffic", "prom-group"
        clients.create_topic(bs, topic)
        clients.create_topic(bs, "prom-small", config={"max.message.bytes": "2000"})
        producer = Producer({"bootstrap.servers": bs, "message.max.bytes": 1_000_000})
        for round_ in range(6):
            log_ = clients.produce_all(producer, topic, [(None, b"v" * 100, None)] * 200)
            assert not log_.errors()
            clients.read_partition(bs, topic, 200, offset=round_ * 200)
            time.sleep(1)
        producer.produce("prom-small", value=b"x" * 10_000, partition=0)  # MESSAGE_TOO_LARGE
        producer.flush(30)
        from groups_util import commit_without_joining
        commit_without_joining(bs, group, [TopicPartition(topic, 0, 100)])
        time.sleep(5)  # several scrapes after the last traffic, for rate() windows

        failures, empty = [], []
        for title, expr, cluster_only in dashboard_targets():
            e = expr.replace("$instance", ".*").replace("$__rate_interval", "30s")
            r = query(base, e)
            if r.get("status") != "success":
                failures.append((title, e, r.get("error")))
            elif not r["data"]["result"] and not cluster_only:
                empty.append((title, e))
        assert not failures, failures
        assert not empty, f"panels without data: {empty}"
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        log.close()

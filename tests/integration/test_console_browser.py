"""The web console in a real browser (issue 14, acceptance 4): Playwright drives Debian's
`chromium` against a running broker and checks what the pages do with Kafka's own tools.

A 3-partition topic created in the UI is seen by `kcat -L`; 1,000 keyed JSON records are read
back decoded from partition 1 at an offset and at a timestamp; a slow group's lag on the group
page equals `kafka-consumer-groups --describe` and falls to 0; a reset to earliest from the UI
leaves the CLI showing a lag of 1,000; a read-only console shows no action and refuses a POST
with 403. Any browser console error or uncaught page error fails the test. Every page is
screenshotted into tests/artifacts/console/ (git-ignored) for people to look at.

Playwright never downloads a browser here: it launches the system's chromium
(scripts/install-test-deps installs Debian's package; JOSEFINE_CHROMIUM names another one).
Without it the test fails, it does not skip: a console nobody opened is not tested.

Josefine-only: Apache Kafka has no console.
"""

import json
import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition

from conftest import BROKER_KIND, KAFKA_LIBS, REPO_ROOT
from test_console import console_factory  # noqa: F401 (the fixture)

pytestmark = pytest.mark.skipif(
    BROKER_KIND != "josefine", reason="Josefine-only: Apache Kafka has no console")

ARTIFACTS = REPO_ROOT / "tests" / "artifacts" / "console"
RECORDS = 1000
PARTITIONS = 3
# Record i goes to partition i % 3 at offset i // 3 with this timestamp, so the test knows
# which record every seek must land on.
BASE_TS_MS = 1_700_000_000_000
# How long a page may take to show what the test waits for (a debug broker on a busy box).
UI_WAIT_MS = 30_000


def chromium_path() -> str:
    path = os.environ.get("JOSEFINE_CHROMIUM") or shutil.which("chromium")
    if not path:
        pytest.fail("chromium not found: run scripts/install-test-deps (Debian's chromium) "
                    "or set JOSEFINE_CHROMIUM")
    return path


@pytest.fixture
def browser():
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.fail("playwright missing: run scripts/install-test-deps (tests/requirements.txt)")
    with sync_playwright() as p:
        # --no-sandbox: CI runs as root in a container, where chromium's sandbox cannot start.
        b = p.chromium.launch(executable_path=chromium_path(), args=["--no-sandbox"])
        try:
            yield b
        finally:
            b.close()


class Console:
    """One browser page on a broker's console, collecting every console error."""

    def __init__(self, browser, broker, name: str):
        self.broker = broker
        self.name = name
        self.errors = []
        self.page = browser.new_page(viewport={"width": 1280, "height": 900})
        self.page.set_default_timeout(UI_WAIT_MS)
        self.page.on("console", lambda m: m.type == "error" and self.errors.append(
            f"console.error: {m.text} ({m.location})"))
        self.page.on("pageerror", lambda e: self.errors.append(f"page error: {e}"))
        ARTIFACTS.mkdir(parents=True, exist_ok=True)

    def open(self, route: str, ready: str):
        """Goes to #ROUTE and waits until `ready` (a selector) shows."""
        url = f"http://127.0.0.1:{self.broker.http_port}/#{route}"
        if self.page.url == url:
            self.page.reload()  # the same hash again would not load anything anew
        else:
            self.page.goto(url)
        self.page.wait_for_selector(ready)
        self.check()

    def shot(self, page_name: str):
        self.page.screenshot(path=str(ARTIFACTS / f"{self.name}-{page_name}.png"), full_page=True)

    def check(self):
        """No browser console error so far, and no error box on the page."""
        assert not self.errors, self.errors
        box = self.page.locator("#error")
        assert box.is_hidden(), f"the page shows an error: {box.inner_text()}"

    def rows(self, table) -> list:
        """The body cells of a table locator, as lists of strings."""
        return [[c.strip() for c in r.locator("td").all_inner_texts()]
                for r in table.locator("tbody tr").all()]


def kcat_list(bootstrap: str, topic: str) -> str:
    proc = subprocess.run(["kcat", "-b", bootstrap, "-L", "-t", topic], capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def cli_lag(bootstrap: str, group: str) -> dict:
    """kafka-consumer-groups --describe: {partition: lag}."""
    from test_groups_cli import by_partition, consumer_groups, table

    if not (KAFKA_LIBS / "kafka-tools-4.1.2.jar").exists():
        pytest.fail(f"Kafka CLI jars missing in {KAFKA_LIBS}: run scripts/install-test-deps")
    out = consumer_groups(bootstrap, "--describe", "--group", group)
    return {p: int(r["LAG"]) for p, r in by_partition(table(out, "GROUP")).items()}


def consume(bootstrap: str, group: str, topic: str, count: int, commit=None):
    """A group member that reads `count` records from the committed offsets, commits what it
    read (or the {partition: offset} given: a slow consumer's progress) and leaves."""
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": group,
                  "auto.offset.reset": "earliest", "enable.auto.commit": False})
    c.subscribe([topic])
    got = 0
    deadline = time.monotonic() + 60
    while got < count:
        assert time.monotonic() < deadline, f"consumed {got} of {count}"
        for m in c.consume(min(100, count - got), timeout=1):
            assert not m.error(), m.error()
            got += 1
    if commit is None:
        c.commit(asynchronous=False)
    else:
        c.commit(offsets=[TopicPartition(topic, p, o) for p, o in commit.items()],
                 asynchronous=False)
    c.close()


def ui_lag(ui: Console, group: str) -> dict:
    """{partition: lag} from the group page's Offsets table (read after a fresh load)."""
    ui.open(f"/groups/{group}", "h2:text('Offsets') + table")
    rows = ui.rows(ui.page.locator("h2:text('Offsets') + table"))
    return {int(r[1]): int(r[4].replace(",", "")) for r in rows}


def test_console_in_a_browser(console_factory, browser):  # noqa: F811 (the fixture)
    broker = console_factory()
    bs = broker.bootstrap
    ui = Console(browser, broker, "rw")
    topic, group = "ui-orders", "ui-slow"

    # Overview and brokers render from the API and /metrics.
    ui.open("/", ".cards")
    ui.page.wait_for_selector(".chart svg")
    ui.open("/chain", ".cards")
    assert ui.page.locator("#single-voter").is_visible()
    assert ui.page.locator("#no-dead-branches").is_visible()
    ui.shot("chain")
    ui.open("/brokers", "table")
    assert f"127.0.0.1:{broker.port}" in ui.page.locator("table").first.inner_text()
    ui.shot("brokers")

    # Create a 3-partition topic in the UI: the form lands on the topic's page.
    ui.open("/topics", "#create-topic")
    form = ui.page.locator("#create-topic")
    form.locator("input[name=name]").fill(topic)
    form.locator("input[name=partitions]").fill(str(PARTITIONS))
    form.locator("button[type=submit]").click()
    ui.page.wait_for_url(f"**/#/topics/{topic}")
    ui.page.wait_for_selector("h2:text('Partitions') + table")
    assert len(ui.rows(ui.page.locator("h2:text('Partitions') + table"))) == PARTITIONS
    ui.check()
    assert f'topic "{topic}" with {PARTITIONS} partitions' in kcat_list(bs, topic)

    # 1,000 keyed JSON records, record i at partition i % 3, offset i // 3, produced while the
    # topics page shows per-topic rates (from two /metrics polls): 0 before, more during.
    ui.open("/topics", "table")
    # (A function, not an expression: the console's CSP forbids eval.)
    records_in_rate = "([topic, want]) => { const r = [...document.querySelectorAll('#main tbody tr')]" \
        ".find((tr) => tr.cells[0].textContent === topic); const v = r && r.cells[9].textContent;" \
        " return want === 'zero' ? v === '0' : Number((v || '0').replace(/,/g, '')) > 0; }"
    ui.page.wait_for_function(records_in_rate, arg=[topic, "zero"])
    p = Producer({"bootstrap.servers": bs, "linger.ms": 5})
    for i in range(RECORDS):
        p.produce(topic, key=f"k{i}", value=json.dumps({"i": i, "item": f"sku-{i}"}),
                  partition=i % PARTITIONS, timestamp=BASE_TS_MS + i * 1000)
        p.poll(0)
    assert p.flush(60) == 0
    ui.page.wait_for_function(records_in_rate, arg=[topic, "more"])
    ui.check()
    ui.open("/topics", "table")
    listed = ui.rows(ui.page.locator("table"))
    assert [r for r in listed if r[0] == topic][0][5] == f"{RECORDS:,}"
    ui.shot("topics")
    ui.open(f"/topics/{topic}", "h2:text('Configs') + table")
    parts = ui.rows(ui.page.locator("h2:text('Partitions') + table"))
    assert [r[6] for r in parts] == ["334", "333", "333"]  # high watermarks
    ui.shot("topic")

    # Partition 1 at an offset, then at a timestamp: the decoded record.
    def read_one(seek: str, value: int) -> dict:
        # The page reads from the earliest offset as it opens; seek once that is shown.
        ui.open(f"/messages/{topic}?partition=1", "text=high watermark")
        form = ui.page.locator("#browse")
        form.locator("select[name=seek]").select_option(seek)
        form.locator("input[name=value]").fill(str(value))
        form.locator("input[name=limit]").fill("1")
        form.locator("button[type=submit]").click()
        first = ui.page.locator("#main table tbody tr").first
        ui.page.wait_for_function(
            "([sel, want]) => document.querySelector(sel)?.textContent?.startsWith(want)",
            arg=["#main table tbody tr td", str(expected_offset[seek])])
        cells = first.locator("td")
        ui.check()
        return {"offset": int(cells.nth(0).inner_text()),
                "key": cells.nth(3).locator("pre").inner_text(),
                "value": json.loads(cells.nth(4).locator("pre").inner_text()),
                "value_kind": cells.nth(4).locator("span").inner_text()}

    expected_offset = {"offset": 100, "timestamp": 200}
    got = read_one("offset", 100)
    # offset 100 of partition 1 is record 3 * 100 + 1.
    assert (got["offset"], got["key"], got["value"]) == (100, "k301", {"i": 301, "item": "sku-301"})
    assert got["value_kind"].startswith("json")
    ui.shot("messages-offset")
    got = read_one("timestamp", BASE_TS_MS + 601 * 1000 - 500)
    assert (got["offset"], got["key"], got["value"]) == (200, "k601", {"i": 601, "item": "sku-601"})
    ui.shot("messages-timestamp")

    # A slow group: it has read everything but committed only part of it, and left. The
    # page's lag is the CLI's.
    consume(bs, group, topic, RECORDS, commit={0: 100, 1: 200, 2: 300})
    ui.open("/groups", "table")
    assert group in ui.page.locator("table").inner_text()
    ui.shot("groups")
    lag = ui_lag(ui, group)
    assert lag == {0: 234, 1: 133, 2: 33}
    assert lag == cli_lag(bs, group)
    # It catches up from its committed offsets: the lag falls to 0.
    consume(bs, group, topic, sum(lag.values()))
    assert ui_lag(ui, group) == {0: 0, 1: 0, 2: 0}
    ui.shot("group")

    # Reset to earliest in the UI (not a dry run): the CLI sees all 1,000 behind again.
    form = ui.page.locator("#reset-offsets")
    form.locator("input[name=topic]").fill(topic)
    form.locator("select[name=to]").select_option("earliest")
    form.locator("input[name=dry]").uncheck()
    form.locator("button[type=submit]").click()
    ui.page.wait_for_selector("text=Committed.")
    ui.check()
    ui.shot("group-reset")
    # The overview's charts, now with traffic (two polls make the first point of a line).
    ui.open("/", ".cards")
    # attached, not visible: a flat line (no traffic in this instant) has no height.
    ui.page.wait_for_selector(".chart polyline", state="attached")
    ui.shot("overview")
    after = cli_lag(bs, group)
    assert sum(after.values()) == RECORDS, after
    assert ui_lag(ui, group) == after

    # Read-only: the same pages without a single action, and a POST refused.
    ro_broker = console_factory(console="read-only")
    ro = Console(browser, ro_broker, "ro")
    for route, ready, name in [("/topics", "table", "topics"), ("/groups", "h1", "groups")]:
        ro.open(route, ready)
        ro.shot(name)
    assert ro.page.locator("#mode").inner_text().endswith("read-only")
    ro.open("/topics", "table")
    assert ro.page.locator("#create-topic").count() == 0
    status, body = ro_broker.api("POST", "topics", {"name": "nope", "partitions": 1})
    assert (status, body["error"]) == (403, "CONSOLE_READ_ONLY"), body
    # The read-write broker's pages, seen read-only from the same browser, have no forms.
    ro_broker_topic = "ro-topic"
    from clients import create_topic
    create_topic(ro_broker.bootstrap, ro_broker_topic, partitions=1)
    ro.open(f"/topics/{ro_broker_topic}", "h2:text('Configs') + table")
    assert ro.page.locator("form").count() == 0
    assert ro.page.locator("#main button").count() == 0
    ro.shot("topic")
    consume_group = "ro-group"
    p = Producer({"bootstrap.servers": ro_broker.bootstrap})
    p.produce(ro_broker_topic, b"x")
    assert p.flush(30) == 0
    consume(ro_broker.bootstrap, consume_group, ro_broker_topic, 1)
    ro.open(f"/groups/{consume_group}", "h2:text('Offsets') + table")
    assert ro.page.locator("form").count() == 0
    assert ro.page.locator("#main button").count() == 0
    ro.shot("group")
    ro.check()
    ui.check()

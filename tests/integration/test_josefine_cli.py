"""The josefine command line: the exact flag, setting and environment names the issue fixes
(outside checks rely on them), the start-up line, --advertise, --config and precedence.

These are Josefine's own contract, so they are skipped under BROKER=kafka.
"""

import json
import os
import socket
import subprocess
import time

import pytest

from conftest import BROKER_KIND, free_port, josefine_bin
import wire

pytestmark = pytest.mark.skipif(BROKER_KIND != "josefine", reason="josefine's own command line")

FLAGS = ["--node-id", "--data-dir", "--rack", "--listen", "--advertise", "--raft-listen",
         "--voters", "--cluster-id", "--config", "--set"]


def test_help_documents_every_flag():
    out = subprocess.run([str(josefine_bin()), "--help"], capture_output=True, timeout=30)
    assert out.returncode == 0, out.stderr
    text = out.stdout.decode()
    for flag in FLAGS:
        assert flag in text, f"{flag} missing from --help"
    for env in ("JOSEFINE_NODE_ID", "JOSEFINE_DATA_DIR"):
        assert env in text, f"{env} missing from --help"


def test_startup_logs_ready_line(broker_factory):
    broker = broker_factory()
    text = broker.log_path.read_text(errors="replace")
    assert any("ready" in line.lower() for line in text.splitlines()), text[-2000:]


def _metadata_brokers(bootstrap):
    out = subprocess.run(["kcat", "-b", bootstrap, "-L", "-J"], capture_output=True, timeout=30)
    assert out.returncode == 0, out.stderr
    return [(b["id"], b["name"]) for b in json.loads(out.stdout)["brokers"]]


def test_advertise_is_what_metadata_returns(broker_factory):
    broker = broker_factory()
    advertised = f"127.0.0.1:{free_port()}"
    broker.stop()
    broker.extra_args = ["--advertise", advertised]
    broker.start()
    assert _metadata_brokers(broker.bootstrap) == [(1, advertised)]


def _wait_api_versions(port, proc, timeout_s=60):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        assert proc.poll() is None, f"josefine exited with {proc.returncode}"
        try:
            if wire.api_versions("127.0.0.1", port, timeout_s=2)[1] == 0:
                return
        except OSError:
            pass
        time.sleep(0.1)
    raise AssertionError("josefine did not answer ApiVersions")


def _start(args, env_extra=None):
    env = {**os.environ, **(env_extra or {})}
    return subprocess.Popen([str(josefine_bin()), *args], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, env=env, start_new_session=True)


def _auto_created_partitions(bootstrap, topic):
    from kafka import KafkaProducer
    kp = KafkaProducer(bootstrap_servers=bootstrap)
    try:
        return kp.partitions_for(topic)
    finally:
        kp.close()


def test_config_file_env_and_flag_precedence(tmp_path):
    """--config TOML (snake_case flags + [broker] table), JOSEFINE_* env, and flags:
    flag > env > file > default."""
    port_file, port_env, port_flag = free_port(), free_port(), free_port()
    config = tmp_path / "josefine.toml"
    config.write_text(
        f'node_id = 1\n'
        f'data_dir = "{tmp_path / "from-file"}"\n'
        f'listen = "127.0.0.1:{port_file}"\n'
        f'raft_listen = "127.0.0.1:{free_port()}"\n'
        f'[broker]\n'
        f'"num.partitions" = 4\n'
        f'"auto.create.topics.enable" = true\n')

    # File only: its listen address, data dir and [broker] settings apply.
    proc = _start(["--config", str(config)])
    try:
        _wait_api_versions(port_file, proc)
        assert _auto_created_partitions(f"127.0.0.1:{port_file}", "from-file-topic") == {0, 1, 2, 3}
        assert (tmp_path / "from-file").is_dir()
    finally:
        proc.kill()
        proc.wait()

    # Env beats file; a --set flag beats the file's [broker] table.
    proc = _start(["--config", str(config), "--set", "num.partitions=2"],
                  {"JOSEFINE_LISTEN": f"127.0.0.1:{port_env}", "JOSEFINE_DATA_DIR": str(tmp_path / "from-env")})
    try:
        _wait_api_versions(port_env, proc)
        assert _auto_created_partitions(f"127.0.0.1:{port_env}", "from-env-topic") == {0, 1}
        assert (tmp_path / "from-env").is_dir()
    finally:
        proc.kill()
        proc.wait()

    # Flag beats env.
    proc = _start(["--config", str(config), "--listen", f"127.0.0.1:{port_flag}",
                   "--data-dir", str(tmp_path / "from-flag")],
                  {"JOSEFINE_LISTEN": f"127.0.0.1:{port_env}", "JOSEFINE_DATA_DIR": str(tmp_path / "from-env2")})
    try:
        _wait_api_versions(port_flag, proc)
        assert (tmp_path / "from-flag").is_dir()
        assert not (tmp_path / "from-env2").exists()
    finally:
        proc.kill()
        proc.wait()


def _refused(args, timeout_s=30):
    """Runs josefine with `args` while its --listen port is held by someone else: a start that
    bound ports before validating would fail on the bind instead. Returns stderr's lines."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        port = held.getsockname()[1]
        out = subprocess.run([str(josefine_bin()), "--listen", f"127.0.0.1:{port}", *args],
                             capture_output=True, timeout=timeout_s,
                             env={**os.environ, "NO_COLOR": "1"})
    lines = out.stderr.decode(errors="replace").strip().splitlines()
    assert out.returncode == 2, (out.returncode, lines)
    assert len(lines) == 1, lines
    return lines[0]


def test_bad_voter_lists_exit_2_with_one_line_before_binding(tmp_path):
    d = str(tmp_path / "d")
    p1, p2 = free_port(), free_port()
    line = _refused(["--data-dir", d, "--node-id", "3",
                     "--voters", f"1@127.0.0.1:{p1},2@127.0.0.1:{p2}"])
    assert "--node-id 3 is not one of the voters" in line, line
    line = _refused(["--data-dir", d, "--voters", f"1@127.0.0.1:{p1},1@127.0.0.1:{p2}"])
    assert "node id 1 is listed twice" in line, line
    line = _refused(["--data-dir", d, "--voters", f"1@127.0.0.1:{p1},2@no-such-host.invalid:{p2}"])
    assert "no-such-host.invalid" in line, line
    line = _refused(["--data-dir", d, "--voters", "1@127.0.0.1"])
    assert "127.0.0.1" in line, line
    assert not (tmp_path / "d").exists(), "nothing was written for a refused start"


def _start_and_stop(args):
    port = free_port()
    proc = _start(["--listen", f"127.0.0.1:{port}", *args])
    try:
        _wait_api_versions(port, proc)
    finally:
        proc.terminate()
        assert proc.wait(timeout=30) == 0


def test_a_data_dir_refuses_another_voter_set_node_or_cluster(tmp_path):
    d = str(tmp_path / "d")
    raft = f"127.0.0.1:{free_port()}"
    _start_and_stop(["--data-dir", d, "--raft-listen", raft, "--cluster-id", "first-cluster"])
    props = (tmp_path / "d" / "cluster.properties").read_text()
    assert f"voters=1@{raft}" in props and "cluster.id=first-cluster" in props, props

    line = _refused(["--data-dir", d, "--voters", f"1@{raft},2@127.0.0.1:{free_port()}"])
    assert "cannot change" in line and raft in line, line
    line = _refused(["--data-dir", d, "--raft-listen", raft, "--node-id", "2"])
    assert "belongs to node 1" in line, line
    line = _refused(["--data-dir", d, "--raft-listen", raft, "--cluster-id", "other-cluster"])
    assert "belongs to cluster first-cluster" in line, line

    # The same cluster id, or none given, starts; a sole voter may move its raft address.
    _start_and_stop(["--data-dir", d, "--raft-listen", raft, "--cluster-id", "first-cluster"])
    _start_and_stop(["--data-dir", d, "--raft-listen", f"127.0.0.1:{free_port()}"])

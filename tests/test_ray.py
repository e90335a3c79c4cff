"""The Ray backend against a real Ray cluster on loopback, started and stopped by the test."""

from __future__ import annotations

import csv
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

import pytest
import yaml

ray = pytest.importorskip("ray",
                          reason="ray is not installed (pip install 'ray[default]'); the Ray backend is untested")

TINY = {
    "name": "tiny",
    "base": {"env_id": "CartPole-v1", "total_steps": 2048, "steps_per_update": 512, "num_envs": 4},
    "axes": {"algo": ["trpo", "pg"]},
    "seeds": 2,
}
TINY_IDS = ["trpo-CartPole-v1-s0", "trpo-CartPole-v1-s1", "pg-CartPole-v1-s0", "pg-CartPole-v1-s1"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ray_cli() -> list[str]:
    exe = shutil.which("ray")
    return [exe] if exe else [sys.executable, "-m", "ray.scripts.scripts"]


def _cluster_processes(temp: str, port: int) -> set[int]:
    """Processes of the cluster this test started: those naming its temp dir or GCS port,
    and their descendants (Ray workers rename themselves ``ray::...``)."""
    procs: dict[int, tuple[int, str]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            cmd = Path(f"/proc/{entry}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            ppid = int(Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        procs[int(entry)] = (ppid, cmd)
    ours = {pid for pid, (_, cmd) in procs.items()
            if temp in cmd or ("ray" in cmd and re.search(rf":{port}\b", cmd))}
    ours.discard(os.getpid())
    grew = True
    while grew:
        children = {pid for pid, (ppid, _) in procs.items() if ppid in ours and pid not in ours}
        ours |= children
        grew = bool(children)
    return ours


def _stop_cluster(temp: str, port: int) -> None:
    """Stop exactly this test's cluster. ``ray stop --force`` would also stop every other Ray
    instance on the machine (other users', other sessions'); it is the fallback without /proc."""
    if not os.path.isdir("/proc"):
        subprocess.run(_ray_cli() + ["stop", "--force"], capture_output=True, timeout=60)
        return
    for sig, wait in ((signal.SIGTERM, 3.0), (signal.SIGKILL, 10.0)):
        pids = _cluster_processes(temp, port)
        for pid in pids:
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + wait
        while pids and time.monotonic() < deadline:
            pids = {p for p in pids if os.path.exists(f"/proc/{p}") and not _zombie(p)}
            time.sleep(0.1)
        if not pids:
            return


def _zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True


@contextmanager
def _cluster(monkeypatch, head_cpus: int, second_cpus: int = 0):
    """``ray start --head`` on a free loopback port with its own short temp dir (Unix socket
    paths are limited to ~107 characters), and with ``second_cpus`` a second node joining it
    (``ray start --address``, its own raylet and resources); yields (address, raylet pid of the
    second node or None); stopped at the end, whatever happens."""
    port = _free_port()
    temp = tempfile.mkdtemp(prefix="ray", dir="/tmp")
    # Token authentication (Ray >= 2.5x) reads a machine-wide ~/.ray/auth_token that another
    # Ray user may rewrite at any time: this private loopback cluster runs without it.
    monkeypatch.setenv("RAY_AUTH_MODE", "disabled")
    common = ["--node-ip-address=127.0.0.1", "--disable-usage-stats", f"--temp-dir={temp}"]
    try:
        start = subprocess.run(
            _ray_cli() + ["start", "--head", f"--port={port}", f"--num-cpus={head_cpus}", "--include-dashboard=false",
                          *common], capture_output=True, text=True, timeout=90)
        if start.returncode != 0:
            pytest.fail(f"ray start failed:\n{start.stdout}\n{start.stderr}")
        second = None
        if second_cpus:
            before = _raylets(temp, port)
            join = subprocess.run(
                _ray_cli() + ["start", f"--address=127.0.0.1:{port}", f"--num-cpus={second_cpus}",
                              '--resources={"second_node": 1}', *common], capture_output=True, text=True, timeout=90)
            if join.returncode != 0:
                pytest.fail(f"ray start --address failed:\n{join.stdout}\n{join.stderr}")
            (second,) = _raylets(temp, port) - before
        yield f"127.0.0.1:{port}", second
    finally:
        _stop_cluster(temp, port)
        leftover = _cluster_processes(temp, port) if os.path.isdir("/proc") else set()
        shutil.rmtree(temp, ignore_errors=True)
        assert not {p for p in leftover if not _zombie(p)}, f"Ray processes left running: {leftover}"


def _raylets(temp: str, port: int) -> set[int]:
    return {pid for pid in _cluster_processes(temp, port)
            if Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0].endswith(b"/raylet")}


@pytest.fixture
def ray_cluster(monkeypatch):
    with _cluster(monkeypatch, head_cpus=2) as (address, _):
        yield address


def test_tiny_grid_on_a_ray_cluster(ray_cluster, tmp_path):
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(TINY))
    out = tmp_path / "runs"
    exe = shutil.which("trpo-bench")
    cmd = ([exe] if exe else [sys.executable, "-m", "trpo_bench.cli"]) + [
        "grid", str(path), "--backend", "ray", "--ray-address", ray_cluster, "--out", str(out),
        "--wandb", "disabled", "--no-analysis"]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=150)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "4/4 runs done" in res.stdout
    grid_dir = out / "tiny"
    assert json.loads((grid_dir / "grid.json").read_text())["runs"] == TINY_IDS
    for rid in TINY_IDS:
        run_dir = grid_dir / rid
        status = json.loads((run_dir / "status.json").read_text())
        assert (status["state"], status["env_steps"]) == ("done", 2048)
        with open(run_dir / "metrics.csv", newline="") as f:
            rows = list(csv.DictReader(f))
        assert [int(r["update"]) for r in rows] == [1, 2, 3, 4]
        assert all(r["rollout/ep_return_mean"] for r in rows)
        assert f"starting {rid}" in (run_dir / "train.log").read_text()


def _descendants(pid: int) -> set[int]:
    parents = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                parents[int(entry)] = int(Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, ValueError, IndexError):
                pass
    out, grew = {pid}, True
    while grew:
        more = {p for p, pp in parents.items() if pp in out and p not in out}
        out |= more
        grew = bool(more)
    return out


def _log_pids(run_dir: Path) -> list[int]:
    """The worker pid of each attempt at a run, from its train.log's ``== ... (grid g, pid N on host)`` lines."""
    try:
        text = (run_dir / "train.log").read_text()
    except OSError:
        return []
    return [int(m) for m in re.findall(r"^== .*\(grid \S+, pid (\d+) on ", text, re.MULTILINE)]


def test_two_nodes_a_killed_node_s_runs_resume_on_the_other(monkeypatch, tmp_path):
    """A head and a second node (one CPU each); once a run on the second node has a checkpoint,
    the node is killed (its raylet and every process under it, SIGKILL). Ray runs the lost tasks
    again on the head; they resume from their checkpoints; every run ends done, trained once."""
    grid = {**TINY, "base": {**TINY["base"], "total_steps": 8192, "steps_per_update": 256, "num_envs": 2,
                             "checkpoint_every": 2}}
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(grid))
    out = tmp_path / "runs"
    grid_dir = out / "tiny"
    with _cluster(monkeypatch, head_cpus=1, second_cpus=1) as (address, raylet):
        cmd = [sys.executable, "-m", "trpo_bench.cli", "grid", str(path), "--backend", "ray", "--ray-address",
               address, "--out", str(out), "--wandb", "disabled", "--no-analysis"]
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        killed: set[str] = set()
        deadline = time.monotonic() + 150
        while not killed and proc.poll() is None and time.monotonic() < deadline:
            node = _descendants(raylet)
            for rid in TINY_IDS:
                status = _status(grid_dir / rid)
                pids = _log_pids(grid_dir / rid)
                if pids and pids[-1] in node and status.get("state") == "running" and status.get("updates", 0) >= 2:
                    killed = {r for r in TINY_IDS if set(_log_pids(grid_dir / r)[-1:]) & node
                              and _status(grid_dir / r).get("state") != "done"}
                    for pid in node:
                        try:
                            os.kill(pid, signal.SIGKILL)
                        except ProcessLookupError:
                            pass
                    break
            time.sleep(0.05)
        output = proc.communicate(timeout=240)[0]
    assert killed, "no run of the second node was caught with a checkpoint before it ended:\n" + output
    assert proc.returncode == 0, output
    assert "4/4 runs done" in output
    for rid in TINY_IDS:
        log = (grid_dir / rid / "train.log").read_text()
        assert log.count(f"starting {rid}") == 1, rid  # never started over
        assert log.count(f"resuming {rid}") == (1 if rid in killed else 0), (rid, killed, output)
        with open(grid_dir / rid / "metrics.csv", newline="") as f:
            rows = list(csv.DictReader(f))
        assert [int(r["update"]) for r in rows] == list(range(1, 33)), rid  # each update once
        assert _status(grid_dir / rid)["state"] == "done"


def _status(run_dir: Path) -> dict:
    try:
        return json.loads((run_dir / "status.json").read_text())
    except (OSError, ValueError):
        return {}

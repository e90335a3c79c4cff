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
from pathlib import Path

import pytest
import yaml

ray = pytest.importorskip("ray", reason="ray is not installed (pip install 'ray[default]'); the Ray backend is untested")

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


@pytest.fixture
def ray_cluster(monkeypatch):
    """``ray start --head`` on a free loopback port with its own short temp dir (Unix socket
    paths are limited to ~107 characters); stopped at the end, whatever happens."""
    port = _free_port()
    temp = tempfile.mkdtemp(prefix="ray", dir="/tmp")
    # Token authentication (Ray >= 2.5x) reads a machine-wide ~/.ray/auth_token that another
    # Ray user may rewrite at any time: this private loopback cluster runs without it.
    monkeypatch.setenv("RAY_AUTH_MODE", "disabled")
    start = subprocess.run(
        _ray_cli() + ["start", "--head", f"--port={port}", "--node-ip-address=127.0.0.1", "--num-cpus=2",
                      "--include-dashboard=false", "--disable-usage-stats", f"--temp-dir={temp}"],
        capture_output=True, text=True, timeout=90)
    try:
        if start.returncode != 0:
            pytest.fail(f"ray start failed:\n{start.stdout}\n{start.stderr}")
        yield f"127.0.0.1:{port}"
    finally:
        _stop_cluster(temp, port)
        leftover = _cluster_processes(temp, port) if os.path.isdir("/proc") else set()
        shutil.rmtree(temp, ignore_errors=True)
        assert not {p for p in leftover if not _zombie(p)}, f"Ray processes left running: {leftover}"


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

"""The batched MuJoCo path's sidecar processes (trpo_bench.mujoco_workers): what they give is
what the calling thread would compute, their failures are named, and they neither outlive nor
break the run that forked them."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from trpo_bench import mujoco_workers
from trpo_bench.mujoco_batch import MujocoBatchEnv
from trpo_bench.mujoco_workers import SidecarDied, shared

pytestmark = pytest.mark.skipif(not mujoco_workers.PROCESSES, reason="sidecar processes run on x86-64 Linux")


def children(pid: int) -> list[int]:
    """Live processes whose parent is ``pid`` (from /proc)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            fields = stat.rsplit(")", 1)[1].split()  # after the command name, which may hold spaces
            if int(fields[1]) == pid and fields[0] != "Z":
                found.append(int(entry.name))
    return found


def alive(pid: int) -> bool:
    try:
        return (Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def test_a_sidecar_sleeps_when_idle_and_steps_on_with_the_same_bits():
    one, two = MujocoBatchEnv("HalfCheetah-v5", 4, 3), MujocoBatchEnv("HalfCheetah-v5", 4, 3, threads=2)
    assert len(two._sidecars) == 1 and two._sidecars[0].pid in children(os.getpid())
    assert one.reset().tobytes() == two.reset().tobytes()
    rng = np.random.default_rng(0)
    for t in range(40):
        if t % 10 == 9:  # longer than the sidecar spins: it sleeps, and the next step wakes it
            time.sleep(mujoco_workers.SPIN_S + 0.05)
            assert two._sidecars[0]._ctl[mujoco_workers._ASLEEP] == 1
        a = rng.uniform(-1, 1, (4, 6))
        x, y = one.step(a), two.step(a)
        assert x.obs.tobytes() == y.obs.tobytes() and x.reward.tobytes() == y.reward.tobytes(), t
    assert one.get_state()["physics"].tobytes() == two.get_state()["physics"].tobytes()
    pid = two._sidecars[0].pid
    two.close()
    assert not alive(pid)


def test_an_error_in_a_sidecar_reaches_the_caller_and_the_env_steps_on(monkeypatch):
    import trpo_bench.mujoco_batch as mb

    fail = shared((1,), np.int64)
    parent, real = os.getpid(), mb.mujoco.mj_step

    def step(m, d, n):
        if fail[0] and os.getpid() != parent:
            raise ValueError("bad step")
        real(m, d, n)

    monkeypatch.setattr(mb.mujoco, "mj_step", step)  # before the fork: the sidecars inherit it
    env = MujocoBatchEnv("Hopper-v5", 6, 0, threads=3)
    env.reset()
    fail[0] = 1
    with pytest.raises(RuntimeError, match=r"in the process stepping envs (2-3|4-5): ValueError: bad step"):
        env.step(np.zeros((6, 3)))
    # Both sidecars finished that step (the one that did not fail too): nothing is left pending.
    assert all(s._ctl[mujoco_workers._DONE] == s._seq for s in env._sidecars)
    fail[0] = 0
    env.step(np.zeros((6, 3)))
    assert env.get_state()["physics"].shape[0] == 6
    env.close()


def test_a_killed_sidecar_is_named_and_the_env_closes():
    env = MujocoBatchEnv("Hopper-v5", 4, 0, threads=2)
    env.reset()
    pid = env._sidecars[0].pid
    os.kill(pid, signal.SIGKILL)
    with pytest.raises(SidecarDied, match=rf"envs 2-3 \(pid {pid}\) was killed by SIGKILL; those envs' state is lost"):
        env.step(np.zeros((4, 3)))
    env.close()
    assert not alive(pid)


def _train_cmd(out: Path, steps: int) -> list[str]:
    return [sys.executable, "-m", "trpo_bench.cli", "train", "--env", "Walker2d-v5", "--steps", str(steps),
            "--wandb", "disabled", "--quiet", "--out", str(out), "--set", "steps_per_update=512",
            "--set", "num_envs=4", "--set", "env_threads=2", "--set", "checkpoint_every=1"]


def _wait_for_rows(out: Path, proc: subprocess.Popen, rows: int) -> Path:
    end = time.time() + 240
    while time.time() < end:
        metrics = list(out.rglob("metrics.csv"))
        if metrics and len(metrics[0].read_text().splitlines()) - 1 >= rows:
            return metrics[0].parent
        assert proc.poll() is None, proc.stderr.read()
        time.sleep(0.05)
    raise AssertionError("the run logged too few updates")


def test_a_run_whose_sidecar_dies_fails_and_says_why(tmp_path):
    proc = subprocess.Popen(_train_cmd(tmp_path, 200_000), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            text=True)
    run_dir = _wait_for_rows(tmp_path, proc, 1)
    (sidecar,) = children(proc.pid)
    os.kill(sidecar, signal.SIGKILL)
    assert proc.wait(timeout=60) != 0
    status = json.loads((run_dir / "status.json").read_text())
    assert status["state"] == "failed"
    assert f"(pid {sidecar}) was killed by SIGKILL" in status["error"]


def test_sidecars_die_with_their_run(tmp_path):
    proc = subprocess.Popen(_train_cmd(tmp_path, 200_000), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            text=True)
    _wait_for_rows(tmp_path, proc, 1)
    (sidecar,) = children(proc.pid)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    end = time.time() + 10
    while alive(sidecar) and time.time() < end:
        time.sleep(0.05)
    assert not alive(sidecar)


def test_sigterm_to_the_process_group_stops_a_run_that_then_resumes_bit_for_bit(tmp_path):
    """The sidecar ignores the signal its group receives, so the run can still save the
    envs' state, which lives partly in the sidecar."""
    import csv

    import torch

    from trpo_bench import checkpoint
    from trpo_bench.store import TIME_COLUMNS

    full, cut = tmp_path / "full", tmp_path / "cut"
    assert subprocess.run(_train_cmd(full, 4096), capture_output=True).returncode == 0
    proc = subprocess.Popen(_train_cmd(cut, 4096), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    run_dir = _wait_for_rows(cut, proc, 2)
    os.killpg(proc.pid, signal.SIGTERM)
    proc.wait(timeout=60)
    status = json.loads((run_dir / "status.json").read_text())
    assert status["state"] == "interrupted", status
    res = subprocess.run([sys.executable, "-m", "trpo_bench.cli", "train", "--resume", str(run_dir), "--quiet"],
                         capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    (full_dir,) = [p.parent for p in full.rglob("metrics.csv")]
    read = lambda p: [{k: v for k, v in r.items() if k not in TIME_COLUMNS}  # noqa: E731
                      for r in csv.DictReader(open(p / "metrics.csv"))]
    assert read(full_dir) == read(run_dir) and len(read(run_dir)) == 8
    a, _ = checkpoint.load(full_dir / "checkpoint.pt")
    b, _ = checkpoint.load(run_dir / "checkpoint.pt")
    for part in ("policy", "value"):
        for k in a["agent"][part]:
            assert torch.equal(a["agent"][part][k], b["agent"][part][k]), (part, k)
    assert a["venv"]["physics"].tobytes() == b["venv"]["physics"].tobytes()

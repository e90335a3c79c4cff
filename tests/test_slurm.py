"""The SLURM backend against a real one-node cluster (the session fixture ``slurm_cluster``).

Every launch is the ``trpo-bench grid`` command in a subprocess. The grid: TRPO and PG on
CartPole-v1, 3 seeds, 64 updates of 256 steps, so a run is a few seconds of training.
"""

from __future__ import annotations

import csv
import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml

from trpo_bench import checkpoint
from trpo_bench.grid.slurm import ENDED, squeue_states
from trpo_bench.store import TIME_COLUMNS

pytest.importorskip("submitit", reason="submitit is not installed (pip install 'trpo-bench[slurm]')")

GRID = {
    "name": "six",
    "base": {"env_id": "CartPole-v1", "total_steps": 16384, "steps_per_update": 256, "num_envs": 2,
             "checkpoint_every": 8},
    "axes": {"algo": ["trpo", "pg"]},
    "seeds": 3,
}
IDS = [f"{a}-CartPole-v1-s{s}" for a in ("trpo", "pg") for s in range(3)]
UPDATES = 64


def launch(path: Path, out: Path, *extra: str, timeout: float = 300) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "trpo_bench.cli", "grid", str(path), "--backend", "slurm", "--out", str(out),
           "--wandb", "disabled", "--no-analysis", *extra]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)


def start(path: Path, out: Path, *extra: str) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "trpo_bench.cli", "grid", str(path), "--out", str(out), "--wandb", "disabled",
           "--no-analysis", *extra]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def write_grid(path: Path, data: dict = GRID) -> Path:
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def status(run_dir: Path) -> dict:
    try:
        return json.loads((run_dir / "status.json").read_text())
    except (OSError, ValueError):
        return {}


def metrics(run_dir: Path) -> list[dict[str, str]]:
    with open(run_dir / "metrics.csv", newline="") as f:
        return [{k: v for k, v in r.items() if k not in TIME_COLUMNS} for r in csv.DictReader(f)]


def parameters(run_dir: Path) -> dict[str, torch.Tensor]:
    agent = checkpoint.load(run_dir / "checkpoint.pt")[0]["agent"]
    return {f"{net}.{k}": v for net in ("policy", "value") for k, v in agent[net].items()}


def assert_same_run(run_dir: Path, ref_dir: Path) -> None:
    """Metrics (all but timings) and final parameters equal, bit for bit."""
    assert status(run_dir)["state"] == "done"
    rows = metrics(run_dir)
    assert [int(r["update"]) for r in rows] == list(range(1, UPDATES + 1))  # no gap, no repeat
    assert rows == metrics(ref_dir)
    got, want = parameters(run_dir), parameters(ref_dir)
    assert got.keys() == want.keys()
    assert all(torch.equal(got[k], want[k]) for k in want)


def jobs(run_root: Path) -> dict[str, str]:
    return {rid: v["job"] for rid, v in json.loads((run_root / "six" / ".slurm" / "jobs.json").read_text()).items()}


def all_jobs() -> set[str]:
    out = subprocess.run(["squeue", "-h", "--states=all", "-o", "%F"], capture_output=True, text=True, check=True)
    return set(out.stdout.split())


def wait_ended(job_ids: set[str], timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        states = squeue_states(job_ids) or {}
        if all(states.get(j) in ENDED for j in job_ids):
            return
        time.sleep(0.3)
    raise AssertionError(f"SLURM jobs {job_ids} still not ended: {squeue_states(job_ids)}")


def log_count(run_dir: Path, word: str) -> int:
    return sum(1 for line in (run_dir / "train.log").read_text().splitlines()
               if line.startswith("== ") and f" {word} " in line)


@pytest.fixture(scope="module")
def reference(slurm_cluster, tmp_path_factory):
    """The 6-run grid on SLURM, uninterrupted."""
    root = tmp_path_factory.mktemp("slurm-reference")
    path = write_grid(root / "six.yaml")
    t0 = time.monotonic()
    res = launch(path, root / "runs")
    print(f"6-run SLURM grid: {time.monotonic() - t0:.1f} s")
    assert res.returncode == 0, res.stdout + res.stderr
    return path, root / "runs", res


def test_six_runs_complete_and_a_relaunch_skips_them(reference):
    path, out, first = reference
    assert "6/6 runs done" in first.stdout
    grid_dir = out / "six"
    recorded = jobs(out)
    assert sorted(recorded) == sorted(IDS)
    assert len({j.split("_")[0] for j in recorded.values()}) == 1  # one job array for the launch
    for rid in IDS:
        assert status(grid_dir / rid)["state"] == "done"
        assert [int(r["update"]) for r in metrics(grid_dir / rid)] == list(range(1, UPDATES + 1))
        assert log_count(grid_dir / rid, "starting") == 1 and log_count(grid_dir / rid, "resuming") == 0
    before = all_jobs()
    again = launch(path, out)
    assert again.returncode == 0, again.stdout + again.stderr
    assert "6 done (skipped), 0 to resume, 0 to start" in again.stdout
    assert all_jobs() == before  # nothing submitted
    assert jobs(out) == recorded


@pytest.fixture(scope="module")
def interrupted(reference, tmp_path_factory):
    """Three runs of the grid submitted (--detach) as one array; once each has a few updates
    done: ``scancel`` of the first, ``scontrol requeue`` of the second, SIGUSR2 (SLURM's
    time-limit warning) to the third. Then the same command without --detach."""
    path, _, _ = reference
    out = tmp_path_factory.mktemp("slurm-interrupted") / "runs"
    cancel, requeue, warn = "trpo-CartPole-v1-s0", "pg-CartPole-v1-s0", "trpo-CartPole-v1-s1"
    first = launch(path, out, "--only", ",".join([cancel, requeue, warn]), "--detach")
    assert first.returncode == 0, first.stdout + first.stderr
    assert "submitted: SLURM job" in first.stdout
    job = jobs(out)
    actions = {cancel: ["scancel", job[cancel]], requeue: ["scontrol", "requeue", job[requeue]],
               warn: ["scancel", "--signal=USR2", job[warn]]}
    done_at: dict[str, int] = {}
    deadline = time.monotonic() + 180
    while actions and time.monotonic() < deadline:
        for rid in list(actions):
            s = status(out / "six" / rid)
            assert s.get("state") != "done", f"{rid} finished before it could be interrupted"
            if s.get("state") == "running" and s.get("updates", 0) >= 4:
                subprocess.run(actions.pop(rid), check=True, capture_output=True)
                done_at[rid] = s["updates"]
        time.sleep(0.05)
    assert not actions, f"runs never started: {list(actions)}"
    wait_ended({job[cancel]})
    after_cancel = status(out / "six" / cancel)
    second = launch(path, out, "--only", ",".join([cancel, requeue, warn]))
    return out, {"cancel": cancel, "requeue": requeue, "warn": warn}, job, after_cancel, second


def test_scancel_then_relaunch_resumes_bit_for_bit(reference, interrupted):
    out, runs, job, after_cancel, second = interrupted
    rid = runs["cancel"]
    assert after_cancel["state"] == "interrupted" and 4 <= after_cancel["updates"] < UPDATES  # checkpointed on SIGTERM
    assert second.returncode == 0, second.stdout + second.stderr
    assert "1 to resume" in second.stdout and "2 queued or running in SLURM (attaching)" in second.stdout
    assert jobs(out)[rid] != job[rid]  # resubmitted; the other two were attached to
    assert log_count(out / "six" / rid, "starting") == 1 and log_count(out / "six" / rid, "resuming") == 1
    assert_same_run(out / "six" / rid, reference[1] / "six" / rid)


def test_scontrol_requeue_resumes_bit_for_bit(reference, interrupted):
    out, runs, job, _, second = interrupted
    rid = runs["requeue"]
    assert jobs(out)[rid] == job[rid]  # SLURM restarted the same task
    assert log_count(out / "six" / rid, "starting") == 1 and log_count(out / "six" / rid, "resuming") == 1
    assert_same_run(out / "six" / rid, reference[1] / "six" / rid)


def test_time_limit_warning_checkpoints_requeues_and_resumes_bit_for_bit(reference, interrupted):
    out, runs, job, _, second = interrupted
    rid = runs["warn"]
    assert jobs(out)[rid] == job[rid]
    log = (out / "six" / ".slurm" / f"{job[rid]}_0_log.out").read_text()
    assert f"{rid} checkpointed; requeueing {job[rid]}" in log
    assert log_count(out / "six" / rid, "starting") == 1 and log_count(out / "six" / rid, "resuming") == 1
    assert_same_run(out / "six" / rid, reference[1] / "six" / rid)


@pytest.mark.parametrize("backend", ["slurm", "local"])
def test_two_launches_at_once_train_each_run_once(request, tmp_path, backend):
    if backend == "slurm":
        request.getfixturevalue("slurm_cluster")
    small = {**GRID, "base": {**GRID["base"], "total_steps": 2048}, "seeds": 1}
    path = write_grid(tmp_path / "six.yaml", small)
    out = tmp_path / "runs"
    extra = ["--backend", backend] + (["--workers", "1"] if backend == "local" else [])
    procs = [start(path, out, *extra) for _ in range(2)]
    outputs = [p.communicate(timeout=300)[0] for p in procs]
    for p, text in zip(procs, outputs):
        assert p.returncode in (0, 4), text  # 4: this launch skipped runs the other was training
    for rid in ("trpo-CartPole-v1-s0", "pg-CartPole-v1-s0"):
        run_dir = out / "six" / rid
        assert status(run_dir)["state"] == "done"
        assert log_count(run_dir, "starting") == 1 and log_count(run_dir, "resuming") == 0, outputs
        assert [int(r["update"]) for r in metrics(run_dir)] == list(range(1, 9))
    if backend == "slurm":
        assert len(set(jobs(out).values())) == 2
        arrays = {j.split("_")[0] for j in jobs(out).values()}
        assert len(arrays) == 1, "the second launch attached instead of submitting again"


def test_bad_slurm_options_exit_2_naming_the_option_and_submit_nothing(slurm_cluster, tmp_path):
    before = all_jobs()
    path = write_grid(tmp_path / "bad.yaml", {**GRID, "slurm": {"partition": "nosuch", "cpus_per_run": 1}})
    res = launch(path, tmp_path / "runs")
    assert res.returncode == 2
    assert f"{path}: slurm.partition: unknown partition 'nosuch' (partitions: debug)" in res.stderr
    assert "Traceback" not in res.stderr
    res = launch(write_grid(tmp_path / "ok.yaml"), tmp_path / "runs", "--time", "2-00:00:00", "--mem", "4T")
    assert res.returncode == 2
    assert "--time: time limit 2-00:00:00 exceeds partition debug's MaxTime 01:00:00" in res.stderr
    assert "--mem: 4T per run, but the largest node of partition debug has" in res.stderr
    res = launch(write_grid(tmp_path / "ok.yaml"), tmp_path / "runs", "--time", "soon", "--sbatch", "exclusive")
    assert res.returncode == 2
    assert "--time: time limit 'soon' is not a positive SLURM time" in res.stderr
    assert "--sbatch: extra #SBATCH lines are sbatch options such as '--constraint=avx512'; got 'exclusive'" \
        in res.stderr
    assert not (tmp_path / "runs").exists()
    assert all_jobs() == before

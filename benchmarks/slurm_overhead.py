"""Wall time of one grid on the SLURM backend against the local pool, and where the SLURM path's
per-run overhead goes (submission, start, teardown).

    python benchmarks/slurm_overhead.py            # starts a loopback cluster (root; tests/slurm_cluster.py)
    SLURM_CONF=... python benchmarks/slurm_overhead.py --workers 2   # an existing cluster

The grid is tests/test_slurm.py's: TRPO and PG on CartPole-v1, 3 seeds, 64 updates of 256 steps.
Per SLURM task, from SLURM's own times (1 s resolution), the submitit log (ms) and the run's
metrics: queue (submit -> start), start (SLURM start -> Python running the task), in-task
(Python -> end, less the run's training wall time: imports, run set-up, final checkpoint), and
teardown (Python done -> SLURM end).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
GRID = {"name": "six", "base": {"env_id": "CartPole-v1", "total_steps": 16384, "steps_per_update": 256,
                                "num_envs": 2, "checkpoint_every": 8},
        "axes": {"algo": ["trpo", "pg"]}, "seeds": 3}


def _grid_cmd(path: Path, out: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "trpo_bench.cli", "grid", str(path), "--out", str(out), "--wandb", "disabled",
            "--no-analysis", *extra]


def _timed(cmd: list[str]) -> float:
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, capture_output=True, text=True)
    return time.perf_counter() - t0


def _slurm_time(text: str) -> float:
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%S").timestamp()


def _log_time(line: str) -> float:
    stamp = re.search(r"\((\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3})\)", line).group(1)
    return datetime.strptime(stamp, "%Y-%m-%d %H:%M:%S,%f").timestamp()


def task_phases(grid_dir: Path) -> list[dict[str, float]]:
    """Seconds spent in each phase by every SLURM task of the grid."""
    jobs = json.loads((grid_dir / ".slurm" / "jobs.json").read_text())
    out = []
    for rid, rec in jobs.items():
        job = rec["job"]
        info = subprocess.run(["scontrol", "show", "job", "-o", job], capture_output=True, text=True, check=True)
        fields = dict(kv.split("=", 1) for kv in info.stdout.split() if "=" in kv)
        lines = (grid_dir / ".slurm" / f"{job}_0_log.out").read_text().splitlines()
        py_start = _log_time(next(x for x in lines if "Starting with JobEnvironment" in x))
        py_end = _log_time(next(x for x in lines if "Exiting after successful completion" in x))
        with open(grid_dir / rid / "metrics.csv", newline="") as f:
            train = float(list(csv.DictReader(f))[-1]["time/wall"])
        submit, start, end = (_slurm_time(fields[k]) for k in ("SubmitTime", "StartTime", "EndTime"))
        out.append({"queue": start - submit, "start": py_start - start, "in_task": py_end - py_start - train,
                    "teardown": end - py_end, "train": train})
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--workers", type=int, default=2, help="local pool workers (default 2)")
    args = ap.parse_args()
    sys.path.insert(0, str(ROOT / "tests"))
    cluster = None
    if not os.environ.get("SLURM_CONF"):
        from slurm_cluster import SlurmCluster, unavailable

        why = unavailable()
        if why:
            sys.exit(f"no SLURM_CONF and no loopback cluster: {why}")
        cluster = SlurmCluster(Path(tempfile.mkdtemp(prefix="slurm", dir="/tmp")))
        cluster.start()
        os.environ.update(cluster.env)
    work = Path(tempfile.mkdtemp(prefix="slurm-overhead-"))
    try:
        path = work / "six.yaml"
        path.write_text(yaml.safe_dump(GRID, sort_keys=False))
        local = _timed(_grid_cmd(path, work / "local", "--workers", str(args.workers)))
        checks = _timed(_grid_cmd(path, work / "dry", "--backend", "slurm", "--dry-run"))
        slurm = _timed(_grid_cmd(path, work / "slurm", "--backend", "slurm"))
        folder = work / "slurm" / "six" / ".slurm"
        # pickles dumped first, then sbatch, then jobs.json recorded
        submission = (folder / "jobs.json").stat().st_mtime - min(p.stat().st_mtime
                                                                  for p in folder.glob("*_submitted.pkl"))
        phases = task_phases(work / "slurm" / "six")
    finally:
        if cluster is not None:
            cluster.stop()
            shutil.rmtree(cluster.root, ignore_errors=True)
        shutil.rmtree(work, ignore_errors=True)
    mean = {k: statistics.mean(p[k] for p in phases) for k in phases[0]}
    print(f"6 runs, {GRID['base']['total_steps']:,} CartPole steps each, {os.cpu_count()} CPUs")
    print(f"  local pool ({args.workers} workers): {local:6.1f} s")
    print(f"  SLURM:                  {slurm:6.1f} s  ({slurm / local:.2f}x)")
    print(f"  launcher: start-up and checks {checks:.1f} s (a --dry-run); submission of the array "
          f"{submission:.2f} s (pickling 6 tasks, sbatch, recording the job ids)")
    print("  per SLURM task, mean s: " + ", ".join(f"{k} {v:.1f}" for k, v in mean.items())
          + f"; queue of the first tasks (a CPU free) {min(p['queue'] for p in phases):.0f} s")
    print("    queue = submit -> SLURM start (includes waiting for a free CPU); start = SLURM start -> Python;")
    print("    in_task = Python's time less the run's training (imports, set-up, checkpoint); teardown = -> end")
    return 0


if __name__ == "__main__":
    sys.exit(main())

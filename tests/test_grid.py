"""Experiment grids: expansion, validation, skip / resume / lock behaviour of ``trpo-bench grid``.

The launches use a tiny grid (2 algorithms x 2 seeds, 4 updates of 512 CartPole steps).
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import gymnasium as gym
import pytest
import yaml
from gymnasium.envs.classic_control.cartpole import CartPoleEnv

from trpo_bench import cli
from trpo_bench.config import ConfigError
from trpo_bench.grid import expand, select
from trpo_bench.locks import FileLock
from trpo_bench.store import TIME_COLUMNS

TINY = {
    "name": "tiny",
    "base": {"env_id": "CartPole-v1", "total_steps": 2048, "steps_per_update": 512, "num_envs": 4,
             "checkpoint_every": 1},
    "axes": {"algo": ["trpo", "pg"]},
    "seeds": 2,
}
TINY_IDS = ["trpo-CartPole-v1-s0", "trpo-CartPole-v1-s1", "pg-CartPole-v1-s0", "pg-CartPole-v1-s1"]
N_UPDATES = 4


def write_grid(path: Path, data: dict) -> Path:
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def grid_args(path: Path, out: Path, *extra: str) -> list[str]:
    return ["grid", str(path), "--out", str(out), "--workers", "2", "--wandb", "disabled", "--no-analysis", *extra]


def metrics_rows(run_dir: Path) -> list[dict[str, str]]:
    with open(run_dir / "metrics.csv", newline="") as f:
        return list(csv.DictReader(f))


def without_time(rows: list[dict[str, str]]) -> list[dict[str, str]]:
    return [{k: v for k, v in r.items() if k not in TIME_COLUMNS} for r in rows]


# ------------------------------------------------------------------ expansion

def test_expand_tiny_grid_counts_ids_and_record():
    grid = expand(TINY, "tiny.yaml")
    assert [r.run_id for r in grid.runs] == TINY_IDS
    assert {r.run_id: r.axes for r in grid.runs}["pg-CartPole-v1-s1"] == {"algo": "pg"}
    run = grid.runs[1]
    assert (run.config.algo, run.config.seed, run.config.total_steps, run.config.num_envs) == ("trpo", 1, 2048, 4)
    assert grid.record() == {"name": "tiny", "source": "tiny.yaml", "axes": {"algo": ["trpo", "pg"]},
                             "seeds": [0, 1], "runs": TINY_IDS}


def test_expand_include_exclude_overrides_and_explicit_seeds():
    data = {
        "name": "mix",
        "base": {"total_steps": 4096},
        "axes": {"algo": ["trpo", "npg", "pg"], "env_id": ["CartPole-v1", "Pendulum-v1"]},
        "seeds": [3, 7],
        "exclude": [{"algo": "pg", "env_id": "Pendulum-v1"}],
        "include": [{"algo": "trpo", "env_id": "Acrobot-v1", "max_kl": 0.02},
                    {"algo": "npg", "env_id": "CartPole-v1"}],  # repeats a product combination: no duplicate
        "overrides": [{"match": {"env_id": "Pendulum-v1"}, "set": {"steps_per_update": 4096}}],
    }
    grid = expand(data, "mix.yaml")
    ids = [r.run_id for r in grid.runs]
    assert len(ids) == len(set(ids)) == (3 * 2 - 1 + 1) * 2
    by_id = {r.run_id: r.config for r in grid.runs}
    # max_kl varies across the grid (0.01 in the product, 0.02 in the include), so it is in every id
    assert "trpo-Acrobot-v1-max_kl=0.02-s7" in by_id and by_id["trpo-Acrobot-v1-max_kl=0.02-s7"].max_kl == 0.02
    assert "trpo-CartPole-v1-max_kl=0.01-s3" in by_id
    assert not any(i.startswith("pg-Pendulum") for i in ids)
    assert {c.seed for c in by_id.values()} == {3, 7}
    for c in by_id.values():
        assert c.steps_per_update == (4096 if c.env_id == "Pendulum-v1" else 2048)
        assert c.total_steps == 4096
    assert grid.axes == {"algo": ["trpo", "npg", "pg"], "env_id": ["CartPole-v1", "Pendulum-v1", "Acrobot-v1"],
                         "max_kl": [0.01, 0.02]}
    assert grid.seeds == [3, 7]
    assert sorted(r.run_id for r in select(grid.runs, "trpo-*")) == sorted(i for i in ids if i.startswith("trpo-"))
    assert {r.run_id for r in select(grid.runs, "Pendulum")} == {i for i in ids if "Pendulum" in i}


def test_only_matching_nothing_is_refused_with_a_hint(tmp_path, capsys):
    path = write_grid(tmp_path / "tiny.yaml", TINY)
    out = tmp_path / "runs"
    # a glob matches the whole id: "CartPole-v1-s[01]" misses "trpo-CartPole-v1-s0"
    assert cli.main(grid_args(path, out, "--only", "CartPole-v1-s[01],x")) == 2
    err = capsys.readouterr().err
    assert "--only 'CartPole-v1-s[01],x' matches none of the 4 runs (e.g. trpo-CartPole-v1-s0)" in err
    assert "start it with '*' to match its end" in err
    assert cli.main(grid_args(path, out, "--only", "Acrobot")) == 2
    err = capsys.readouterr().err
    assert "matches none" in err and "start it with" not in err
    assert not out.exists()
    assert cli.main(grid_args(path, out, "--only", "*CartPole-v1-s[01]", "--dry-run")) == 0
    listed = [line.split()[1] for line in capsys.readouterr().out.splitlines() if line.startswith("new ")]
    assert listed == TINY_IDS


def test_unmatched_exclude_is_a_warning():
    grid = expand({**TINY, "exclude": [{"algo": "npg"}]}, "tiny.yaml")
    assert len(grid.runs) == 4
    assert grid.warnings == ["tiny.yaml: exclude[0] matches no combination of the axes"]


def test_every_problem_is_reported_with_file_and_field(tmp_path, capsys):
    bad = write_grid(tmp_path / "bad.yaml", {
        "name": "bad",
        "axis": {"algo": ["trpo"]},
        "base": {"env_id": "CartPole-v1", "totl_steps": 100},
        "axes": {"algo": ["trpo", "npg"], "max_kl": [0.01, 0.02, -1], "env_id": ["CartPole-v1", "CartPol-v1"]},
        "seeds": [0, 0],
        "exclude": [{"algo": "pgg"}],
        "overrides": [{"match": {"env_id": "CartPole-v1"}, "set": {"cg_iters": 0}}],
    })
    out = tmp_path / "runs"
    assert cli.main(grid_args(bad, out)) == 2
    err = capsys.readouterr().err
    src = str(bad)
    for line in [
        f"{src}: axis: unknown top-level key 'axis' (did you mean 'axes'?)",
        f"{src}: base.totl_steps: unknown setting 'totl_steps' (did you mean 'total_steps'?)",
        f"{src}: axes.max_kl[2]: 'max_kl' (delta) must be > 0; got -1.0",
        f"{src}: axes.env_id[1]: 'env_id' 'CartPol-v1' is not a registered gymnasium environment "
        "(did you mean 'CartPole-v1'?)",
        f"{src}: seeds[1]: seed 0 is listed twice",
        f"{src}: exclude[0].algo: 'algo' must be one of trpo, npg, pg; got 'pgg'",
        f"{src}: overrides[0].set.cg_iters: 'cg_iters' must be >= 1; got 0",
    ]:
        assert line in err
    assert err.count("axes.max_kl[2]") == 1  # one report, not one per run that carries the value
    assert not out.exists()


def test_expand_raises_configerror_for_wrong_shapes():
    with pytest.raises(ConfigError) as info:
        expand({"axes": {"max_kl": 0.01}, "seeds": "three", "include": {"algo": "trpo"}}, "s.yaml",
               check_envs=False)
    text = "\n".join(info.value.problems)
    assert "s.yaml: axes.max_kl: expected a non-empty list of values, got 0.01 (write [0.01])" in text
    assert "s.yaml: seeds: expected a count (3) or a list of seeds ([0, 1, 2]); got 'three'" in text
    assert "s.yaml: include: expected a list of mappings, got dict" in text


# ------------------------------------------------------------------ launches

@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The tiny grid run once, uninterrupted."""
    root = tmp_path_factory.mktemp("reference")
    path = write_grid(root / "tiny.yaml", TINY)
    out = root / "runs"
    assert cli.main(grid_args(path, out)) == 0
    return path, out / "tiny"


def test_launcher_checks_a_grid_without_importing_torch(tmp_path):
    """Expanding and checking a grid (env spaces included) and the run store stay torch-free:
    the launcher answers a bad grid, or a --dry-run, in a fraction of torch's import time."""
    code = (
        "import sys\n"
        "from trpo_bench.grid import expand\n"
        "from trpo_bench.store import RunStore, make_run_id\n"
        "g = expand({'name': 't', 'axes': {'env_id': ['CartPole-v1', 'Pendulum-v1']}, 'seeds': 1})\n"
        "assert len(g.runs) == 2, g.runs\n"
        "print('torch' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path, check=True)
    assert out.stdout.strip() == "False"


def test_grid_runs_every_run_and_writes_grid_json(reference):
    path, grid_dir = reference
    record = json.loads((grid_dir / "grid.json").read_text())
    assert record == {"name": "tiny", "source": str(path), "axes": {"algo": ["trpo", "pg"]}, "seeds": [0, 1],
                      "runs": TINY_IDS}
    for rid in TINY_IDS:
        run_dir = grid_dir / rid
        assert json.loads((run_dir / "status.json").read_text())["state"] == "done"
        assert [int(r["update"]) for r in metrics_rows(run_dir)] == list(range(1, N_UPDATES + 1))
        config = json.loads((run_dir / "config.json").read_text())
        assert config["grid"] == "tiny" and config["axes"] == {"algo": rid.split("-")[0]}
        assert f"starting {rid}" in (run_dir / "train.log").read_text()


def test_second_launch_skips_everything(reference, capsys):
    path, grid_dir = reference
    files = [grid_dir / rid / name for rid in TINY_IDS for name in ("metrics.csv", "checkpoint.pt", "status.json")]
    before = {f: (f.stat().st_mtime_ns, f.read_bytes()) for f in files}
    capsys.readouterr()
    assert cli.main(grid_args(path, grid_dir.parent)) == 0
    out = capsys.readouterr().out
    assert "4 done (skipped), 0 to resume, 0 to start" in out
    assert {f: (f.stat().st_mtime_ns, f.read_bytes()) for f in files} == before
    assert cli.main(grid_args(path, grid_dir.parent, "--dry-run")) == 0
    listed = [line.split()[:2] for line in capsys.readouterr().out.splitlines() if line.startswith("done ")]
    assert sorted(listed) == sorted(["done", rid] for rid in TINY_IDS)


def test_a_finished_grid_is_analysed_again_only_when_its_inputs_changed(reference, tmp_path, monkeypatch, capsys):
    """A relaunch of a finished grid draws its figures once; it draws them again after anything
    they are drawn from changes (an evaluation added or removed, a file copied in with an old
    time, a run directory removed, other analysis code), not before."""
    import analysis.report

    path, grid_dir = reference
    grid_dir = shutil.copytree(grid_dir, tmp_path / "runs" / "tiny")
    drawn = []

    def write_report_files(dirs, out):
        drawn.append(dirs)
        out.mkdir(parents=True, exist_ok=True)
        (out / "report.md").write_text("report")
        return [out / "report.md"]

    monkeypatch.setattr(analysis.report, "write_report_files", write_report_files)
    launch = ["grid", str(path), "--out", str(grid_dir.parent), "--wandb", "disabled"]

    def relaunch() -> str:
        capsys.readouterr()
        assert cli.main(launch) == 0
        return capsys.readouterr().out

    relaunch()
    assert len(drawn) == 1
    assert "figures and report: current" in relaunch() and len(drawn) == 1
    run = grid_dir / TINY_IDS[0]
    (run / "eval.json").write_text("{}")
    relaunch()
    assert len(drawn) == 2 and "figures and report: current" in relaunch()
    (run / "eval.json").unlink()
    relaunch()
    assert len(drawn) == 3
    old = (run / "status.json").stat()
    (run / "status.json").write_text((run / "status.json").read_text())  # a copy keeping the old time
    os.utime(run / "status.json", ns=(old.st_atime_ns, old.st_mtime_ns - 10**9))
    relaunch()
    assert len(drawn) == 4
    drawn_from = grid_dir / "figures" / ".drawn_from.json"
    record = json.loads(drawn_from.read_text())
    drawn_from.write_text(json.dumps({**record, "analysis_code": "0" * 64}))  # drawn by other analysis code
    relaunch()
    assert len(drawn) == 5 and json.loads(drawn_from.read_text()) == record
    grid_dir = Path(grid_dir)
    shutil.rmtree(grid_dir / TINY_IDS[1])
    relaunch()  # trains the removed run again: its new files are drawn
    assert len(drawn) == 6


def test_changed_grid_file_does_not_reuse_stored_runs(reference, tmp_path, capsys):
    _, grid_dir = reference
    changed = write_grid(tmp_path / "tiny.yaml", {**TINY, "base": {**TINY["base"], "total_steps": 4096}})
    assert cli.main(grid_args(changed, grid_dir.parent)) == 2
    err = capsys.readouterr().err
    assert "config.json: the stored run differs from the grid file (total_steps: stored 2048, grid 4096)" in err


def test_a_run_recorded_before_the_numpy_value_fit_is_not_taken_for_one(reference, tmp_path, capsys):
    """A config.json without vf_backend was written when the value fit ran on autograd: the grid
    file's default (numpy) is a different computation, so the stored run is not reused."""
    path, grid_dir = reference
    old_store = tmp_path / "runs"
    shutil.copytree(grid_dir, old_store / "tiny")
    config_path = old_store / "tiny" / TINY_IDS[0] / "config.json"
    config = json.loads(config_path.read_text())
    del config["config"]["vf_backend"]
    config_path.write_text(json.dumps(config))
    assert cli.main(grid_args(path, old_store, "--dry-run")) == 2
    assert "(vf_backend: stored 'torch', grid 'numpy')" in capsys.readouterr().err


def test_a_run_locked_by_another_launch_is_skipped(tmp_path, capsys):
    path = write_grid(tmp_path / "tiny.yaml", TINY)
    out = tmp_path / "runs"
    lock = FileLock(out / "tiny" / ".locks" / "pg-CartPole-v1-s1.lock")
    assert lock.acquire()
    try:
        record = lock.path.read_bytes()
        assert cli.main(grid_args(path, out, "--dry-run")) == 0
        assert "locked  pg-CartPole-v1-s1" in capsys.readouterr().out
        assert lock.path.read_bytes() == record  # the probe leaves the holder record alone
        assert cli.main(grid_args(path, out, "--only", "pg-CartPole-v1-s1")) == 4
        captured = capsys.readouterr()
        assert f"being trained by another launch (pid {os.getpid()}" in captured.err
        assert not (out / "tiny" / "pg-CartPole-v1-s1").exists()
    finally:
        lock.release()
    assert not lock.is_locked() and lock.path.read_bytes() == record  # a released lock's file stays as it was


def test_sigkill_midway_then_relaunch_matches_uninterrupted_grid(reference, tmp_path):
    """Kill the launcher and its workers (SIGKILL to the process group) once a run has a
    checkpoint; the relaunch resumes and ends with the same metrics as an uninterrupted grid."""
    _, ref_dir = reference
    path = write_grid(tmp_path / "tiny.yaml", TINY)
    out = tmp_path / "runs"
    grid_dir = out / "tiny"
    exe = shutil.which("trpo-bench")
    cmd = [exe] if exe else [sys.executable, "-m", "trpo_bench.cli"]
    cmd += grid_args(path, out)
    proc = subprocess.Popen(cmd, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    killed_midway = False
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and proc.poll() is None:
            with_checkpoint = [r for r in TINY_IDS if (grid_dir / r / "checkpoint.pt").exists()]
            done = [r for r in TINY_IDS if _state(grid_dir / r) == "done"]
            if with_checkpoint and len(done) < len(TINY_IDS):
                os.killpg(proc.pid, signal.SIGKILL)
                killed_midway = True
                break
            time.sleep(0.02)
    finally:
        if proc.poll() is None and not killed_midway:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
        _wait_group_gone(proc.pid)
    assert killed_midway, "the grid finished (or hung) before a checkpoint could be caught"
    unfinished = [r for r in TINY_IDS if _state(grid_dir / r) != "done"]
    assert unfinished

    assert cli.main(grid_args(path, out)) == 0
    for rid in TINY_IDS:
        assert _state(grid_dir / rid) == "done"
        rows = metrics_rows(grid_dir / rid)
        assert [int(r["update"]) for r in rows] == list(range(1, N_UPDATES + 1))  # nothing lost or repeated
        assert without_time(rows) == without_time(metrics_rows(ref_dir / rid)), rid


def _state(run_dir: Path) -> str | None:
    try:
        return json.loads((run_dir / "status.json").read_text())["state"]
    except (OSError, ValueError):
        return None


def _wait_group_gone(pgid: int, timeout: float = 30.0) -> None:
    """SIGKILL is delivered at once, but a worker inside fsync leaves only when it returns."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.05)
    raise AssertionError(f"processes of group {pgid} still alive {timeout} s after SIGKILL")


# ------------------------------------------------------------------ envs that fail on purpose

class FlakyCartPole(CartPoleEnv):
    """CartPole whose 300th step (per env) raises, unless the file named by $TRPO_BENCH_TEST_MARKER
    exists; the failure creates it, so the run fails once and its retry goes through."""

    always = False

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.steps_taken = 0  # restored with the env state when the run resumes

    def step(self, action):
        self.steps_taken += 1
        marker = Path(os.environ.get("TRPO_BENCH_TEST_MARKER", "/nonexistent/marker"))
        if self.steps_taken == 300 and (self.always or not marker.exists()):
            if not self.always:
                marker.touch()
            raise RuntimeError("injected failure")
        return super().step(action)


class BrokenCartPole(FlakyCartPole):
    """Fails at its 300th step, every time."""

    always = True


for _cls in (FlakyCartPole, BrokenCartPole):
    gym.register(id=f"{_cls.__name__}-v0", entry_point=f"{__name__}:{_cls.__name__}", max_episode_steps=500)


def test_failed_runs_are_retried_from_their_checkpoint(reference, tmp_path, monkeypatch, capsys):
    """--retries 1: a run failing once resumes from its checkpoint and ends with the numbers of
    an undisturbed run; a run failing every time is reported failed after two attempts (exit 1)."""
    _, ref_dir = reference
    module = Path(__file__).stem
    monkeypatch.syspath_prepend(str(Path(__file__).parent))  # spawned workers import this module
    monkeypatch.setenv("TRPO_BENCH_TEST_MARKER", str(tmp_path / "failed-once"))
    path = write_grid(tmp_path / "flaky.yaml", {
        "name": "flaky",
        "base": {**TINY["base"], "algo": "trpo"},
        "axes": {"env_id": [f"{module}:FlakyCartPole-v0", f"{module}:BrokenCartPole-v0"]},
        "seeds": [0],
    })
    out = tmp_path / "runs"
    assert cli.main(grid_args(path, out, "--retries", "1")) == 3
    stdout = capsys.readouterr().out
    flaky, broken = (out / "flaky" / f"trpo-{module}_{name}-v0-s0" for name in ("FlakyCartPole", "BrokenCartPole"))
    assert "retrying (1/1)" in stdout and "1/2 runs done, 1 failed" in stdout

    flaky_log = (flaky / "train.log").read_text()
    assert flaky_log.count("RuntimeError: injected failure") == 1
    assert flaky_log.count(" resuming trpo-") == 1  # the retry continued from the checkpoint
    assert _state(flaky) == "done"
    rows = metrics_rows(flaky)
    assert [int(r["update"]) for r in rows] == list(range(1, N_UPDATES + 1))
    # CartPole dynamics and the same seed: the retried run equals the reference grid's run
    assert without_time(rows) == without_time(metrics_rows(ref_dir / "trpo-CartPole-v1-s0"))

    broken_log = (broken / "train.log").read_text()
    assert broken_log.count("RuntimeError: injected failure") == 2  # first attempt and one retry
    status = json.loads((broken / "status.json").read_text())
    assert status["state"] == "failed" and "injected failure" in status["error"]


# ------------------------------------------------------------------ structured problems, SLURM section

def test_config_problems_name_their_settings_and_the_grid_names_their_places():
    from trpo_bench.config import DEFAULTS, check

    problems = check(DEFAULTS.replace(steps_per_update=500, num_envs=8, max_kl=-1.0), check_env=False)
    assert [p.fields for p in problems] == [("steps_per_update", "num_envs"), ("max_kl",)]
    with pytest.raises(ConfigError) as info:
        expand({"base": {"steps_per_update": 500}, "axes": {"num_envs": [4, 8]}}, "x.yaml", check_envs=False)
    assert info.value.problems == ["x.yaml: base.steps_per_update, axes.num_envs[1]: 'steps_per_update' (500) "
                                   "must be a multiple of 'num_envs' (8)"]


def test_slurm_section_is_read_and_checked_with_the_rest_of_the_file():
    grid = expand({**TINY, "slurm": {"partition": "cpu", "time": "1-02:30", "cpus_per_run": 2, "mem": "4G",
                                     "sbatch": ["--constraint=avx512", "#SBATCH --exclusive"]}}, "s.yaml")
    s = grid.slurm
    assert (s.partition, s.time, s.cpus_per_run, s.mem) == ("cpu", "1-02:30", 2, "4G")
    assert s.sbatch == ["--constraint=avx512", "--exclusive"]
    assert s.where("partition") == "slurm.partition" and s.where("qos") == "--qos"
    with pytest.raises(ConfigError) as info:
        expand({**TINY, "base": {"max_kl": 0}, "slurm": {"partiton": "cpu", "time": "soon", "cpus_per_run": 0,
                                                          "mem": "lots", "sbatch": "exclusive"}}, "s.yaml")
    assert info.value.problems == [
        "s.yaml: slurm.partiton: unknown SLURM option 'partiton' (expected: partition, time, cpus_per_run, mem, "
        "account, qos, sbatch)",
        "s.yaml: slurm.time: time limit 'soon' is not a positive SLURM time (minutes, MM:SS, HH:MM:SS, D-HH, "
        "D-HH:MM or D-HH:MM:SS)",
        "s.yaml: slurm.cpus_per_run: CPUs per run must be an integer >= 1; got 0",
        "s.yaml: slurm.mem: memory 'lots' is not a SLURM size such as 4G or 500M",
        "s.yaml: slurm.sbatch: extra #SBATCH lines are sbatch options such as '--constraint=avx512'; "
        "got 'exclusive'",
        "s.yaml: base.max_kl: 'max_kl' (delta) must be > 0; got 0.0",
    ]


@pytest.mark.parametrize("text, minutes", [("90", 90), ("5:30", 5.5), ("1:00:00", 60), ("2-0", 2880),
                                           ("1-02:30", 1590), ("1-00:00:30", 1440.5), ("0", 0), ("1h", None)])
def test_slurm_time_syntax(text, minutes):
    from trpo_bench.grid.slurm_options import time_minutes

    assert time_minutes(text) == minutes


def test_slurm_options_need_the_slurm_backend(tmp_path, capsys):
    path = write_grid(tmp_path / "tiny.yaml", TINY)
    assert cli.main(grid_args(path, tmp_path / "runs", "--partition", "cpu", "--detach")) == 2
    assert "--partition, --detach need --backend slurm" in capsys.readouterr().err
    assert not (tmp_path / "runs").exists()


def test_one_progress_line_for_a_run_and_a_grid(monkeypatch):
    """Steps, rate over the window and ETA; the first update only sets the baseline."""
    import io

    from trpo_bench import progress as progress_mod

    clock = iter([0.0, 10.0, 20.0, 30.0])
    monkeypatch.setattr(progress_mod.time, "perf_counter", lambda: next(clock))
    stream = io.StringIO()
    p = progress_mod.Progress("[g]", 4000, stream=stream, interval=0.0, live=False)
    p.update(0, "0/2 done")
    assert stream.getvalue() == ""
    p.update(1000, "0/2 done")
    p.event("[1/2] done     a")
    p.update(3000, "1/2 done")
    lines = stream.getvalue().splitlines()
    assert lines[0] == "[g]  1,000/4,000 steps (25%)  0/2 done  100 steps/s  ETA 0:30"
    assert lines[1] == "[1/2] done     a"
    assert lines[2] == "[g]  3,000/4,000 steps (75%)  1/2 done  150 steps/s  ETA 0:06"
    # A resumed run's single update leaves one sample: no rate yet, rather than 0 steps/s.
    clock = iter([5.0])
    one = progress_mod.Progress("[r]", 4000, stream=stream, interval=0.0, live=False)
    one.update(4000, "", final=True)
    assert stream.getvalue().splitlines()[-1] == "[r]  4,000/4,000 steps (100%)  - steps/s  ETA 0:00"


def test_summary_advises_a_rerun_only_for_failures_a_rerun_can_change(tmp_path, capsys):
    """train.run marks a failure ``retryable: false`` when a rerun would fail the same way (bad input,
    a corrupt store, non-finite values): the summary prints its error instead of advising a rerun."""
    import argparse

    from trpo_bench.grid.launch import EXIT_FAILED, _Launch
    from trpo_bench.store import write_json

    grid = expand(TINY, "tiny.yaml")
    runs = grid.runs[:2]
    grid_dir = tmp_path / "tiny"
    for run, retryable in zip(runs, (False, None)):
        status = {"state": "failed", "env_steps": 512, "total_steps": 2048, "updates": 1,
                  "error": f"ValueError: broke {run.run_id}"}
        if retryable is not None:
            status["retryable"] = retryable
        (grid_dir / run.run_id).mkdir(parents=True)
        write_json(grid_dir / run.run_id / "status.json", status)
    args = argparse.Namespace(backend="local", no_analysis=True)
    launch = _Launch(args, grid, runs, grid_dir, {r.run_id: "resumable" for r in runs})
    launch.outcome = {r.run_id: "failed" for r in runs}
    assert launch._report(interrupted=False) == EXIT_FAILED
    err = capsys.readouterr().err
    assert "1 run(s) failed; rerun the same command to retry them" in err
    assert (f"1 run(s) failed for a reason a rerun does not change; fix it, then rerun:\n"
            f"  {runs[0].run_id}: ValueError: broke {runs[0].run_id}") in err


def test_an_unwritable_run_store_is_refused_before_anything_starts(tmp_path, capsys):
    path = write_grid(tmp_path / "tiny.yaml", TINY)
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("")  # a file where the store's directory should be (root ignores permissions)
    assert cli.main(grid_args(path, blocker / "runs")) == 2
    err = capsys.readouterr().err
    assert f"--out {blocker / 'runs'}: cannot write the run store {blocker / 'runs' / 'tiny'}/ (Not a directory)" in err
    assert blocker.read_text() == ""


# ------------------------------------------------------------------ runs shared between grids

def test_a_run_shared_between_grids_is_trained_once(tmp_path, capsys):
    """Two grids whose TRPO seed-0 runs have the same settings but for how often they
    checkpoint: the second copies the first's record instead of training; a run that differs
    in one setting is trained; the copy relaunches, and extends, as a run of its own grid."""
    out = tmp_path / "runs"
    first = write_grid(tmp_path / "a.yaml", {**TINY, "name": "a", "axes": {"algo": ["trpo", "pg"]}, "seeds": [0]})
    b_grid = {**TINY, "name": "b", "base": {**TINY["base"], "checkpoint_every": 2},
              "axes": {"max_kl": [0.01, 0.02]}, "seeds": [0]}
    second = write_grid(tmp_path / "b.yaml", b_grid)
    assert cli.main(grid_args(first, out)) == 0
    capsys.readouterr()
    assert cli.main(grid_args(second, out)) == 0
    text = capsys.readouterr().out
    src, twin = out / "a" / "trpo-CartPole-v1-s0", out / "b" / "trpo-CartPole-v1-max_kl=0.01-s0"
    assert "copied from a/trpo-CartPole-v1-s0" in text and "(1 copied from the same settings" in text
    for name in ("metrics.csv", "checkpoint.pt"):
        assert (twin / name).read_bytes() == (src / name).read_bytes()
    config, status = (json.loads((twin / n).read_text()) for n in ("config.json", "status.json"))
    source = json.loads((src / "config.json").read_text())
    assert config["shared_from"] == status["shared_from"] == "a/trpo-CartPole-v1-s0"
    assert (config["grid"], config["run_id"], config["axes"]) == ("b", twin.name, {"max_kl": 0.01})
    assert config["config"] == {**source["config"], "checkpoint_every": 2}  # its own grid's settings
    assert config["wandb_id"] != source["wandb_id"]  # its own W&B run, should it ever log
    assert status["state"] == "done" and f"starting {twin.name}" not in (twin / "train.log").read_text()
    other = out / "b" / "trpo-CartPole-v1-max_kl=0.02-s0"  # trained: its own log and its own numbers
    assert "starting trpo-CartPole-v1-max_kl=0.02-s0" in (other / "train.log").read_text()
    assert "shared_from" not in json.loads((other / "status.json").read_text())
    assert without_time(metrics_rows(other)) != without_time(metrics_rows(src))

    # A relaunch of b finds both done.
    assert cli.main(grid_args(second, out)) == 0
    assert "2 done (skipped)" in capsys.readouterr().out
    # A larger budget: the copy resumes from the copied checkpoint and trains on as b's run.
    b_grid["base"] = {**b_grid["base"], "total_steps": 3072}
    write_grid(second, b_grid)
    assert cli.main(grid_args(second, out, "--extend")) == 0
    config = json.loads((twin / "config.json").read_text())
    assert "shared_from" not in config and config["extended"][-1]["shared_from"] == "a/trpo-CartPole-v1-s0"
    assert [int(r["update"]) for r in metrics_rows(twin)] == list(range(1, 7))
    assert without_time(metrics_rows(twin))[:N_UPDATES] == without_time(metrics_rows(src))


def test_a_twin_is_shared_only_when_finished_with_the_same_settings(tmp_path):
    from trpo_bench.grid import shared
    from trpo_bench.locks import FileLock

    out = tmp_path / "runs"
    first = write_grid(tmp_path / "a.yaml", {**TINY, "name": "a", "axes": {"algo": ["trpo"]}, "seeds": [0]})
    assert cli.main(grid_args(first, out)) == 0
    src = out / "a" / "trpo-CartPole-v1-s0"
    settings = json.loads((src / "config.json").read_text())["config"]
    (entry,) = (out / shared.SHARED_DIR).glob("*.json")
    key = entry.stem
    assert shared.find(out, key, settings, exclude=tmp_path / "elsewhere") == src
    assert shared.find(out, key, settings, exclude=src) is None  # never itself
    assert shared.find(out, key, {**settings, "max_kl": 0.5}, exclude=tmp_path / "x") is None
    assert shared.find(out, key, {**settings, "env_threads": 3}, exclude=tmp_path / "x") == src  # no effect
    # NO_EFFECT settings do not split runs; the versions that computed them do
    key_of = shared.share_key
    assert key_of({**settings, "env_threads": 7}, {"torch": "1"}) == key_of(settings, {"torch": "1"})
    assert key_of(settings, {"torch": "1"}) != key_of(settings, {"torch": "2"})

    # A twin whose source is held by another process (an extension) is not copied, nor is
    # an unfinished one.
    holder = FileLock(out / "a" / ".locks" / f"{src.name}.lock")
    assert holder.acquire()
    assert not shared.copy_run(src, tmp_path / "copy", settings, {}, out) and not (tmp_path / "copy").exists()
    holder.release()
    status = json.loads((src / "status.json").read_text())
    (src / "status.json").write_text(json.dumps({**status, "state": "running"}))
    assert shared.find(out, key, settings, exclude=tmp_path / "x") is None

    # An entry whose run is gone is replaced by the next twin that trains.
    shutil.rmtree(out / "a")
    second = write_grid(tmp_path / "b.yaml", {**TINY, "name": "b", "axes": {"algo": ["trpo"]}, "seeds": [0]})
    assert cli.main(grid_args(second, out)) == 0
    trained = out / "b" / "trpo-CartPole-v1-s0"
    assert "starting trpo-CartPole-v1-s0" in (trained / "train.log").read_text()
    assert json.loads(entry.read_text())["run"] == "b/trpo-CartPole-v1-s0"


def test_a_run_stored_before_a_setting_was_added_is_still_shared(tmp_path, capsys):
    """A finished run whose config.json lacks a setting added since (its share entry keyed
    without it) stands for that setting's default: the next launch enters it under today's
    key, and a twin in another grid copies it rather than training."""
    from trpo_bench.grid import shared

    out = tmp_path / "runs"
    first = write_grid(tmp_path / "a.yaml", {**TINY, "name": "a", "axes": {"algo": ["trpo"]}, "seeds": [0]})
    assert cli.main(grid_args(first, out)) == 0
    src = out / "a" / "trpo-CartPole-v1-s0"
    config = json.loads((src / "config.json").read_text())
    del config["config"]["eval_deterministic"]  # as written before the setting existed
    (src / "config.json").write_text(json.dumps(config))
    for entry in (out / shared.SHARED_DIR).glob("*.json"):  # and entered under the key of then
        entry.rename(entry.with_name("0" * 32 + ".json"))
    capsys.readouterr()

    second = write_grid(tmp_path / "b.yaml", {**TINY, "name": "b", "axes": {"max_kl": [0.01]}, "seeds": [0]})
    assert cli.main(grid_args(second, out)) == 0
    assert "copied from a/trpo-CartPole-v1-s0" in capsys.readouterr().out
    twin = out / "b" / "trpo-CartPole-v1-s0"  # a single-valued axis stays out of the run id
    assert json.loads((twin / "config.json").read_text())["config"]["eval_deterministic"] is True

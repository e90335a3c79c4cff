"""One training run end to end: CLI, run store, W&B offline files, checkpoints, exact resume."""

from __future__ import annotations

import csv
import json
import math
import os
import platform
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from trpo_bench import checkpoint
from trpo_bench.cli import main
from trpo_bench.store import METRIC_COLUMNS, TIME_COLUMNS, RunStore

from wandb_log import history, read_records

QUICK = ["--set", "steps_per_update=512", "--set", "num_envs=4"]


def read_csv(path: Path) -> list[dict[str, str]]:
    with open(path) as f:
        return list(csv.DictReader(f))


def only_run(out: Path) -> Path:
    runs = [p.parent for p in out.rglob("status.json")]
    assert len(runs) == 1, runs
    return runs[0]


def cli(*args: str, env: dict | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "trpo_bench.cli", *args], capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, **(env or {})})


def strip_time(rows: list[dict[str, str]]) -> list[dict[str, str]]:
    return [{k: v for k, v in r.items() if k not in TIME_COLUMNS} for r in rows]


def test_cli_train_writes_the_run_store(tmp_path, capsys):
    code = main(["train", "--algo", "trpo", "--env", "CartPole-v1", "--steps", "2048", "--seed", "3",
                 "--out", str(tmp_path), "--wandb", "disabled", "--quiet", *QUICK,
                 "--set", "eval_every=2", "--set", "eval_episodes=2"])
    assert code == 0
    run = only_run(tmp_path)
    assert {p.name for p in run.iterdir()} >= {"config.json", "metrics.csv", "status.json", "checkpoint.pt"}
    assert not list(run.glob(".*.tmp")), "temporary files left behind"

    status = json.loads((run / "status.json").read_text())
    assert status["state"] == "done" and status["env_steps"] == 2048 and status["updates"] == 4

    config = json.loads((run / "config.json").read_text())
    assert config["seed"] == 3 and config["algo"] == "trpo" and config["env_id"] == "CartPole-v1"
    assert config["config"]["steps_per_update"] == 512
    assert {"python", "torch", "gymnasium", "mujoco"} <= set(config["versions"])
    assert config["versions"]["cpu"] == f"{platform.machine()} {torch.backends.cpu.get_cpu_capability()}"

    rows = read_csv(run / "metrics.csv")
    assert list(rows[0]) == METRIC_COLUMNS
    assert [int(r["update"]) for r in rows] == [1, 2, 3, 4]
    assert [int(r["env_steps"]) for r in rows] == [512, 1024, 1536, 2048]
    # Every metric of the design applies to TRPO; eval only on the updates that evaluated.
    for r in rows:
        for c in METRIC_COLUMNS:
            if c == "eval/return_mean":
                continue
            assert r[c] != "" and math.isfinite(float(r[c])), (c, r[c])
        assert float(r["policy/kl"]) <= 0.01 + 1e-9
    assert [r["eval/return_mean"] != "" for r in rows] == [False, True, False, True]
    assert "done: 2,048 steps, 4 updates" in capsys.readouterr().out


def test_pg_leaves_natural_gradient_metrics_empty(tmp_path):
    assert main(["train", "--algo", "pg", "--steps", "1024", "--out", str(tmp_path), "--wandb", "disabled",
                 "--quiet", *QUICK]) == 0
    rows = read_csv(only_run(tmp_path) / "metrics.csv")
    for c in ("policy/cg_residual", "policy/cg_iters", "policy/sHs", "policy/natural_grad_norm",
              "policy/backtracks", "policy/step_fraction"):
        assert all(r[c] == "" for r in rows), c
    for c in ("policy/kl", "policy/surrogate_actual", "policy/grad_norm", "policy/step_size"):
        assert all(r[c] != "" for r in rows), c


def test_wandb_offline_history_matches_metrics_csv(tmp_path):
    secret = "0123456789abcdef0123456789abcdef01234567"
    res = cli("train", "--algo", "npg", "--steps", "1536", "--out", str(tmp_path), "--wandb", "offline",
              "--project", "tb-test", "--group", "g1", "--tags", "a", "b", "--quiet", *QUICK,
              env={"WANDB_API_KEY": secret, "WANDB_SILENT": "true"})
    assert res.returncode == 0, res.stderr
    run = only_run(tmp_path)
    logs = list(run.glob("wandb/offline-run-*/run-*.wandb"))
    assert len(logs) == 1
    records = read_records(logs[0])

    run_rec = next(r.run for r in records if r.WhichOneof("record_type") == "run")
    assert run_rec.project == "tb-test" and run_rec.run_group == "g1"
    assert run_rec.display_name == run.name and list(run_rec.tags) == ["a", "b"]
    config = {it.key: json.loads(it.value_json) for it in run_rec.config.update}
    assert config["algo"] == "npg" and config["steps_per_update"] == 512

    # env_steps is the step metric of every key.
    metrics = [r.metric for r in records if r.WhichOneof("record_type") == "metric"]
    assert any(m.glob_name == "*" and m.step_metric == "env_steps" for m in metrics)

    logged = history(records)
    rows = read_csv(run / "metrics.csv")
    assert len(logged) == len(rows) == 3
    for h, r in zip(logged, rows):
        for c in METRIC_COLUMNS:
            if r[c] == "":
                assert c not in h, f"{c} logged although it does not apply"
            else:
                assert h[c] == pytest.approx(float(r[c]), rel=1e-12, abs=0), c
        # NPG has CG diagnostics but no line search: those keys are absent, not 0.
        assert "policy/cg_residual" in h and "policy/backtracks" not in h and "policy/step_fraction" not in h

    # The API key lands in no file the run writes.
    for p in run.rglob("*"):
        if p.is_file():
            assert secret.encode() not in p.read_bytes(), p


def _wait_for_rows(metrics: Path, n: int, proc: subprocess.Popen, timeout: float = 120) -> None:
    end = time.time() + timeout
    while time.time() < end:
        if metrics.is_file() and len(metrics.read_text().splitlines()) - 1 >= n:
            return
        if proc.poll() is not None:
            raise AssertionError(f"run ended early: {proc.stderr.read() if proc.stderr else ''}")
        time.sleep(0.05)
    raise AssertionError("timed out waiting for metrics rows")


# On gymnasium's own envs (MuJoCo state capture); the batched MuJoCo path's resume is tested in
# test_mujoco_batch.py.
@pytest.mark.parametrize("env_id", ["CartPole-v1", "Hopper-v5", "Ant-v5"])
def test_sigkill_then_resume_equals_uninterrupted_run(tmp_path, env_id):
    """Ant's reward reads the torso's xpos before simulating: the checkpoint's MuJoCo state
    must carry that derived field, not only qpos and qvel."""
    args = ["train", "--env", env_id, "--steps", "4096", "--wandb", "disabled", "--quiet", *QUICK,
            "--set", "checkpoint_every=3", "--set", "env_backend=gymnasium"]
    full_out, cut_out = tmp_path / "full", tmp_path / "cut"
    assert cli(*args, "--out", str(full_out)).returncode == 0

    proc = subprocess.Popen([sys.executable, "-m", "trpo_bench.cli", *args, "--out", str(cut_out)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    # Kill after the checkpoint of update 3 and before the end: update 4 or 5 is lost and redone.
    _wait_for_rows(cut_out / "train" / only_run_name(args), 4, proc)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    run = only_run(cut_out)
    assert json.loads((run / "status.json").read_text())["state"] == "running"
    res = cli("train", "--resume", str(run), "--quiet")
    assert res.returncode == 0, res.stderr

    full = only_run(full_out)
    a, b = read_csv(full / "metrics.csv"), read_csv(run / "metrics.csv")
    assert [int(r["update"]) for r in b] == list(range(1, 9)), "gap or duplicate rows after resume"
    assert strip_time(a) == strip_time(b)
    pa = checkpoint.load(full / "checkpoint.pt")[0]["agent"]
    pb = checkpoint.load(run / "checkpoint.pt")[0]["agent"]
    for part in ("policy", "value"):
        for k in pa[part]:
            assert torch.equal(pa[part][k], pb[part][k]), (part, k)
    assert json.loads((run / "status.json").read_text())["state"] == "done"


def only_run_name(args: list[str]) -> str:
    from trpo_bench.cli import _resolve_config, build_parser
    from trpo_bench.store import make_run_id

    ns = build_parser().parse_args(args)
    flags = {k: getattr(ns, k) for k in ("algo", "env_id", "seed", "total_steps") if getattr(ns, k) is not None}
    return str(Path(make_run_id(_resolve_config(ns, flags))) / "metrics.csv")


def test_sigint_stops_at_a_safe_point_and_resumes(tmp_path):
    args = ["train", "--steps", "8192", "--wandb", "disabled", "--quiet", *QUICK, "--set", "checkpoint_every=100",
            "--out", str(tmp_path)]
    proc = subprocess.Popen([sys.executable, "-m", "trpo_bench.cli", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    _wait_for_rows(tmp_path / "train" / only_run_name(args), 2, proc)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130
    run = only_run(tmp_path)
    assert f"trpo-bench train --resume {run}" in err
    status = json.loads((run / "status.json").read_text())
    assert status["state"] == "interrupted" and 0 < status["updates"] < 16
    ckpt, _ = checkpoint.load(run / "checkpoint.pt")
    assert ckpt["update"] == status["updates"] == len(read_csv(run / "metrics.csv"))
    assert cli("train", "--resume", str(run), "--quiet").returncode == 0
    assert len(read_csv(run / "metrics.csv")) == 16


@pytest.mark.parametrize("args, expected", [
    (["--set", "max_kll=0.1"], "unknown setting 'max_kll' (did you mean 'max_kl'?)"),
    (["--set", "cg_iters=ten"], "'cg_iters': expected an integer, got 'ten'"),
    (["--set", "max_kl=0"], "'max_kl' (delta) must be > 0"),
    (["--set", "fvp_fraction=1.5"], "'fvp_fraction' must be in (0, 1]"),
    (["--set", "env_threads=-1"], "'env_threads' must be >= 0 (0: one per CPU); got -1"),
    (["--set", "obs_norm_timing=late"], "'obs_norm_timing' must be one of step, legacy; got 'late'"),
    (["--set", "eval_deterministic=sometimes"], "'eval_deterministic': expected true or false, got 'sometimes'"),
    (["--env", "NoSuchEnv-v0"], "'env_id' 'NoSuchEnv-v0' is not a registered gymnasium environment"),
    (["--config", "MISSING.yaml"], "file not found"),
    (["--config", "BAD.yaml"], "malformed YAML (line 2"),
    (["--config", "LIST.yaml"], "expected a mapping of settings"),
    (["--resume", "NOTARUN"], "not a run directory"),
])
def test_bad_input_exits_2_and_writes_nothing(tmp_path, args, expected, capsys):
    (tmp_path / "BAD.yaml").write_text("max_kl: 0.01\ncg_iters: 10: 3\n")
    (tmp_path / "LIST.yaml").write_text("- max_kl\n")
    (tmp_path / "NOTARUN").mkdir()
    args = [str(tmp_path / a) if a in ("MISSING.yaml", "BAD.yaml", "LIST.yaml", "NOTARUN") else a for a in args]
    out = tmp_path / "runs"
    code = main(["train", "--out", str(out), "--wandb", "disabled", *args])
    err = capsys.readouterr().err
    assert code == 2
    assert expected in err
    assert len(err.splitlines()) <= 4
    assert not out.exists()


def test_several_problems_reported_together(capsys, tmp_path):
    code = main(["train", "--out", str(tmp_path / "r"), "--set", "max_kl=-1", "--set", "cg_iters=0",
                 "--set", "algo=ppo"])
    err = capsys.readouterr().err
    assert code == 2
    assert "'max_kl'" in err and "'cg_iters'" in err and "'algo' must be one of trpo, npg, pg" in err


def test_existing_run_is_not_overwritten(tmp_path, capsys):
    base = ["train", "--steps", "512", "--out", str(tmp_path), "--wandb", "disabled", "--quiet", *QUICK]
    assert main(base) == 0
    before = (only_run(tmp_path) / "metrics.csv").read_bytes()
    assert main(base) == 2
    assert "--resume" in capsys.readouterr().err
    assert (only_run(tmp_path) / "metrics.csv").read_bytes() == before


def test_user_env_module_is_registered(tmp_path):
    pkg = tmp_path / "pkg"
    pkg.mkdir()
    (pkg / "my_envs.py").write_text(
        "import gymnasium as gym\n"
        "gym.register('MyCartPole-v0', entry_point='gymnasium.envs.classic_control:CartPoleEnv',"
        " max_episode_steps=50)\n")
    res = cli("train", "--env", "my_envs:MyCartPole-v0", "--steps", "512", "--out", str(tmp_path / "r"),
              "--wandb", "disabled", "--quiet", *QUICK, env={"PYTHONPATH": str(pkg)})
    assert res.returncode == 0, res.stderr
    rows = read_csv(only_run(tmp_path / "r") / "metrics.csv")
    assert float(rows[0]["rollout/ep_len_mean"]) <= 50


def test_export_copies_the_compact_store(tmp_path, capsys):
    out = tmp_path / "runs"
    assert main(["train", "--steps", "1024", "--out", str(out), "--wandb", "disabled", "--quiet", *QUICK]) == 0
    run = only_run(out)
    assert main(["export", str(out), str(tmp_path / "results")]) == 0
    copy = tmp_path / "results" / run.relative_to(out)
    assert sorted(p.name for p in copy.iterdir()) == ["config.json", "metrics.csv", "status.json"]
    assert (copy / "metrics.csv").read_bytes() == (run / "metrics.csv").read_bytes()
    assert main(["export", str(tmp_path / "results" / "nothing"), str(tmp_path / "x")]) == 2

    # --done-only leaves out a run that has not finished
    status = json.loads((run / "status.json").read_text())
    (run / "status.json").write_text(json.dumps({**status, "state": "running"}))
    assert main(["export", str(out), str(tmp_path / "final"), "--done-only"]) == 0
    assert not (tmp_path / "final" / run.relative_to(out)).exists()


def test_stored_settings_keep_the_computation_the_run_started_with(tmp_path):
    """A config.json written before vf_backend existed describes an autograd value fit, and one
    written before obs_norm_timing the legacy statistics; the settings read back for resume,
    evaluation and the grid's check say so."""
    old, new = RunStore(tmp_path / "old"), RunStore(tmp_path / "new")
    old.write_config({"run_id": "r", "config": {"env_id": "CartPole-v1", "max_kl": 0.02}})
    new.write_config({"run_id": "r", "config": {"env_id": "CartPole-v1", "vf_backend": "numpy"}})
    assert old.read_settings() == {"env_id": "CartPole-v1", "max_kl": 0.02, "vf_backend": "torch",
                                   "obs_norm_timing": "legacy"}
    assert new.read_settings()["vf_backend"] == "numpy"
    assert "vf_backend" not in old.read_config()["config"]  # the file itself is reported as written


def test_evaluation_during_training_changes_no_training_number(tmp_path):
    """eval_every adds eval/return_mean and leaves every other column as it was, with the
    mean action or with sampled actions: the evaluation draws from no generator of the run and
    counts no observation. Sampling evaluates another policy than the mean action, and
    repeats its numbers."""
    from trpo_bench.store import TIME_COLUMNS

    rows = {}
    for name, every, deterministic in (("none", 0, True), ("mean", 2, True), ("sampled", 2, False),
                                       ("sampled-again", 2, False)):
        args = ["train", "--env", "Hopper-v5", "--steps", "2048", "--out", str(tmp_path / name),
                "--wandb", "disabled", "--quiet", "--set", "steps_per_update=512", "--set", "num_envs=2",
                "--set", f"eval_every={every}", "--set", "eval_episodes=2",
                "--set", f"eval_deterministic={str(deterministic).lower()}"]
        assert main(args) == 0
        with open(only_run(tmp_path / name) / "metrics.csv", newline="") as f:
            rows[name] = list(csv.DictReader(f))
    evals = {name: [r["eval/return_mean"] for r in rows[name]][1::2] for name in ("mean", "sampled", "sampled-again")}
    assert all(v != "" for e in evals.values() for v in e)  # evaluated at updates 2 and 4
    assert evals["sampled"] != evals["mean"]
    assert evals["sampled"] == evals["sampled-again"]
    strip = lambda rs: [{k: v for k, v in r.items() if k not in TIME_COLUMNS and k != "eval/return_mean"}  # noqa: E731
                        for r in rs]
    assert strip(rows["none"]) == strip(rows["mean"]) == strip(rows["sampled"])


def test_the_summary_line_says_when_no_episode_ended_in_the_last_update(tmp_path, capsys):
    """HalfCheetah-v5's episodes last 1,000 steps: none ends in 2 updates of 128 steps per env."""
    assert main(["train", "--env", "HalfCheetah-v5", "--steps", "1024", "--wandb", "disabled", "--quiet",
                 "--out", str(tmp_path), "--set", "steps_per_update=512", "--set", "num_envs=4"]) == 0
    out = capsys.readouterr().out
    assert "last training return: none (no episode ended in the last update)" in out and "nan" not in out

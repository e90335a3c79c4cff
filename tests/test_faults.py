"""Faults and bad inputs: every one ends with a named problem and the documented exit code,
no traceback, and nothing written or lost (docs/architecture.md, "Exit codes").

Exit codes: 2 bad input or refused (nothing written), 3 the run failed (status.json says why),
130 interrupted. Most cases call the CLI in this process; signals and concurrency use
subprocesses.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import pickle
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from trpo_bench import checkpoint as ckpt
from trpo_bench.cli import main
from trpo_bench.config import ConfigError, load_run_config
from trpo_bench.store import RunStore
from trpo_bench.train import RunOptions, run

from wandb_log import history, read_records

QUICK = ["--set", "steps_per_update=256", "--set", "num_envs=2", "--set", "vf_minibatches=2"]
TESTS = Path(__file__).parent


def child_env(**extra: str) -> dict[str, str]:
    """This process's environment without what an in-process W&B run left in it (the address
    of its W&B service, which a child would otherwise share)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("WANDB_") or k in ("WANDB_MODE", "WANDB_SILENT")}
    return {**env, "PYTHONPATH": _pythonpath(), **extra}


def cli(*args: str, env: dict | None = None, timeout: float = 180) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "trpo_bench.cli", *args], capture_output=True, text=True,
                          timeout=timeout, env=child_env(**(env or {})))


def _pythonpath() -> str:
    return os.pathsep.join(p for p in (str(TESTS), os.environ.get("PYTHONPATH", "")) if p)


def snapshot(root: Path) -> dict[str, tuple[int, str]]:
    """Every file below ``root``: size and content hash (what 'nothing written or lost' compares)."""
    if not root.exists():
        return {}
    return {str(p.relative_to(root)): (p.stat().st_size, hashlib.sha1(p.read_bytes()).hexdigest())
            for p in sorted(root.rglob("*")) if p.is_file()}


def only_run(out: Path) -> Path:
    runs = [p.parent for p in out.rglob("status.json")]
    assert len(runs) == 1, runs
    return runs[0]


def rows(run_dir: Path) -> list[dict[str, str]]:
    return RunStore(run_dir).read_metrics()


def strip_time(rs: list[dict[str, str]]) -> list[dict[str, str]]:
    return [{k: v for k, v in r.items() if not k.startswith("time/")} for r in rs]


def expect_refused(capsys, argv: list[str], *needles: str, code: int = 2) -> str:
    got = main(argv)
    err = capsys.readouterr().err
    assert got == code, err
    assert "Traceback" not in err
    for needle in needles:
        assert needle in err, (needle, err)
    return err


@pytest.fixture(scope="module")
def finished(tmp_path_factory) -> Path:
    """A finished CartPole run (4 updates, a checkpoint after each), copied by each test."""
    out = tmp_path_factory.mktemp("finished")
    assert main(["train", "--steps", "1024", "--out", str(out), "--wandb", "disabled", "--quiet", *QUICK,
                 "--set", "checkpoint_every=1"]) == 0
    return only_run(out)


@pytest.fixture
def stored(finished, tmp_path) -> Path:
    copy = tmp_path / "store" / "train" / finished.name
    shutil.copytree(finished, copy)
    return copy


# ------------------------------------------------------------------ bad input to a new run
FRESH_BAD = [
    (["--set", "init_log_std=nan"], "'init_log_std' must be a finite number; got nan"),
    (["--set", "init_log_std=inf"], "'init_log_std' must be a finite number; got inf"),
    (["--set", "init_log_std=-inf"], "'init_log_std' must be a finite number; got -inf"),
    (["--set", "cg_damping=inf"], "'cg_damping' must be a finite number"),
    (["--set", "cg_tol=inf"], "'cg_tol' must be a finite number"),
    (["--set", "pg_lr=inf"], "'pg_lr'"),
    (["--set", "vf_lr=inf"], "'vf_lr'"),
    (["--set", "max_kl=nan"], "'max_kl'"),
    (["--set", "gamma=nan"], "'gamma'"),
    (["--seed", "4294967296"], "'seed' must be in [0, 2^32)"),
    (["--seed", "-1"], "'seed' must be in [0, 2^32)"),
    (["--set", "hidden_sizes=[64,64,"], "--set hidden_sizes: malformed value '[64,64,'"),
    (["--set", "hidden_sizes=[0]"], "'hidden_sizes' must be a non-empty list of positive integers"),
    (["--set", "num_envs=3"], "must be a multiple of 'num_envs'"),
    (["--set", "max_kll=0.02"], "unknown setting 'max_kll' (did you mean 'max_kl'?)"),
    (["--env", "nosuchmodule:Foo-v0"], "cannot import the module before ':'"),
    (["--env", "Hoper-v5"], "did you mean 'Hopper-v5'?"),
    (["--group", ".."], "--group '..': the run store's grid directory must be a plain name inside --out"),
    (["--group", "."], "--group '.'"),
    (["--trust-checkpoint"], "--trust-checkpoint applies with --resume only"),
    (["--config", "MISSING.yaml"], "file not found"),
    (["--config", "BAD.yaml"], "malformed YAML (line 2"),
    (["--config", "LIST.yaml"], "expected a mapping of settings"),
]


@pytest.mark.parametrize("args, needle", FRESH_BAD, ids=[" ".join(a) for a, _ in FRESH_BAD])
def test_bad_settings_are_refused_before_anything_is_written(tmp_path, capsys, args, needle):
    (tmp_path / "BAD.yaml").write_text("max_kl: 0.01\ncg_iters: 10: 3\n")
    (tmp_path / "LIST.yaml").write_text("- max_kl\n")
    args = [str(tmp_path / a) if a.endswith(".yaml") else a for a in args]
    out = tmp_path / "runs"
    expect_refused(capsys, ["train", "--out", str(out), "--wandb", "disabled", "--quiet", *QUICK, *args], needle)
    assert not out.exists()


def test_grid_base_with_a_non_finite_setting_is_refused(tmp_path, capsys):
    grid = tmp_path / "g.yaml"
    grid.write_text("name: g\nbase: {env_id: CartPole-v1, init_log_std: .nan, vf_lr: .inf}\nseeds: [4294967296]\n")
    err = expect_refused(capsys, ["grid", str(grid), "--out", str(tmp_path / "runs")], str(grid))
    assert "init_log_std" in err and "vf_lr" in err and "4294967296" in err
    assert not (tmp_path / "runs").exists()


def test_a_task_whose_optional_package_is_missing_is_one_line(tmp_path, capsys):
    try:
        import Box2D  # noqa: F401
        pytest.skip("Box2D is installed here")
    except ImportError:
        pass
    argv = ["train", "--env", "CarRacing-v3", "--out", str(tmp_path / "r"), "--wandb", "disabled"]
    err = expect_refused(capsys, argv, "'env_id' 'CarRacing-v3' needs a package that is not installed")
    assert len(err.strip().splitlines()) <= 3
    assert not (tmp_path / "r").exists()


def test_out_that_is_a_file_is_refused(tmp_path, capsys):
    (tmp_path / "file").write_text("x")
    expect_refused(capsys, ["train", "--out", str(tmp_path / "file"), "--wandb", "disabled", "--quiet", *QUICK,
                            "--steps", "256"], f"--out {tmp_path / 'file'}: cannot write the run store there")
    assert (tmp_path / "file").read_text() == "x"


@pytest.fixture
def read_only_dir(tmp_path):
    """A read-only filesystem (a tmpfs mounted ro); root writes anywhere else."""
    ro = tmp_path / "ro"
    ro.mkdir()
    res = subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=1m", "tmpfs", str(ro)], capture_output=True)
    if res.returncode != 0:
        if os.environ.get("CI"):
            pytest.fail(f"cannot mount a read-only tmpfs in CI: {res.stderr.decode().strip()}")
        pytest.skip(f"cannot mount a read-only tmpfs here: {res.stderr.decode().strip()}")
    yield ro
    subprocess.run(["umount", str(ro)], check=True)


def test_out_on_a_read_only_filesystem_is_refused(read_only_dir, capsys):
    expect_refused(capsys, ["train", "--out", str(read_only_dir), "--wandb", "disabled", "--quiet", *QUICK,
                            "--steps", "256"], f"--out {read_only_dir}: cannot write the run store there "
                                               "(Read-only file system)")
    assert list(read_only_dir.iterdir()) == []


# ------------------------------------------------------------------ resume of a damaged or mismatched store
def _truncate_checkpoint(run_dir: Path) -> None:
    p = run_dir / "checkpoint.pt"
    p.write_bytes(p.read_bytes()[: p.stat().st_size // 2])


def _garble(path: Path) -> None:
    """Keep the zip header, overwrite the middle: torch.load gets as far as the archive."""
    data = bytearray(path.read_bytes())
    middle = len(data) // 4
    data[middle:middle + 2048] = np.random.default_rng(2).bytes(2048)
    path.write_bytes(bytes(data))


def _drop_metrics_row(update: int):
    def damage(run_dir: Path) -> None:
        p = run_dir / "metrics.csv"
        lines = p.read_text().splitlines(keepends=True)
        p.write_text("".join(lines[:update] + lines[update + 1:]))
    return damage


def _repeat_metrics_row(run_dir: Path) -> None:
    p = run_dir / "metrics.csv"
    lines = p.read_text().splitlines(keepends=True)
    p.write_text("".join(lines[:3] + [lines[2]] + lines[3:]))


DAMAGE = {
    "config-invalid-json": (lambda d: (d / "config.json").write_text("{not json"), "config.json: not readable JSON"),
    "config-a-string": (lambda d: (d / "config.json").write_text('"x"'), "config.json: expected a JSON object"),
    "config-no-run-id": (lambda d: (d / "config.json").write_text("{}"), "config.json: no 'run_id', 'config' field"),
    "status-invalid-json": (lambda d: (d / "status.json").write_text("{"), "status.json: not readable JSON"),
    "checkpoint-truncated": (_truncate_checkpoint, "checkpoint.pt: damaged or not a checkpoint"),
    "checkpoint-random-bytes": (lambda d: (d / "checkpoint.pt").write_bytes(np.random.default_rng(1).bytes(4096)),
                                "checkpoint.pt: damaged or not a checkpoint"),
    "checkpoint-garbled-inside": (lambda d: _garble(d / "checkpoint.pt"), "checkpoint.pt: damaged or not a checkpoint"),
    "checkpoint-empty": (lambda d: (d / "checkpoint.pt").write_bytes(b""), "checkpoint.pt: damaged"),
    "checkpoint-missing": (lambda d: (d / "checkpoint.pt").unlink(), "no checkpoint.pt to resume from"),
    "metrics-row-lost": (_drop_metrics_row(2), "metrics.csv: update 2 is missing"),
    "metrics-last-row-lost": (_drop_metrics_row(4),
                              "metrics.csv: has 3 update rows, but the checkpoint is at update 4"),
    "metrics-row-repeated": (_repeat_metrics_row, "metrics.csv: update 2 appears again after update 2"),
    "metrics-missing": (lambda d: (d / "metrics.csv").unlink(), "metrics.csv: missing"),
}


@pytest.mark.parametrize("name", list(DAMAGE))
def test_resume_names_what_is_damaged_and_changes_nothing(stored, capsys, name):
    damage, needle = DAMAGE[name]
    damage(stored)
    before = snapshot(stored.parent.parent)
    expect_refused(capsys, ["train", "--resume", str(stored), "--steps", "2048", "--wandb", "disabled", "--quiet"],
                   needle)
    assert snapshot(stored.parent.parent) == before


RESUME_MISMATCH = [
    (["--set", "max_kl=0.02"], "--set max_kl=0.02: the run was trained with max_kl=0.01"),
    (["--set", "max_kll=0.02"], "--set max_kll: unknown setting 'max_kll' (did you mean 'max_kl'?)"),
    (["--env", "Acrobot-v1"], "--env=Acrobot-v1: the run was trained with env_id=CartPole-v1"),
    (["--seed", "5"], "--seed=5: the run was trained with seed=0"),
    (["--algo", "npg"], "--algo=npg: the run was trained with algo=trpo"),
    (["--steps", "512"], "--steps 512: below the run's budget of 1024 steps"),
    (["--out", "elsewhere"], "--out does not apply with --resume"),
    (["--group", "g"], "--group does not apply with --resume"),
    (["--set", "cg_iters=ten"], "--set cg_iters: expected an integer, got 'ten'"),
]


@pytest.mark.parametrize("args, needle", RESUME_MISMATCH, ids=[" ".join(a) for a, _ in RESUME_MISMATCH])
def test_resume_refuses_options_that_would_change_the_run(stored, capsys, args, needle):
    before = snapshot(stored.parent.parent)
    expect_refused(capsys, ["train", "--resume", str(stored), "--wandb", "disabled", "--quiet", *args], needle)
    assert snapshot(stored.parent.parent) == before


def test_resuming_a_finished_run_changes_nothing(stored, capsys):
    before = snapshot(stored)
    assert main(["train", "--resume", str(stored), "--wandb", "offline", "--quiet"]) == 0
    assert "already done at 1,024 steps" in capsys.readouterr().out
    assert snapshot(stored) == before and not (stored / "wandb").exists()


def test_resume_of_a_directory_that_is_not_a_run(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    expect_refused(capsys, ["train", "--resume", str(tmp_path / "empty")], "not a run directory")


# ------------------------------------------------------------------ checkpoints that would run code
class _Marker:
    """Unpickling this writes a file: the proof that loading ran code from the checkpoint."""

    def __init__(self, path: str):
        self.path = path

    def __reduce__(self):
        return (Path.write_text, (Path(self.path), "code from the checkpoint ran"))


def _craft(run_dir: Path, marker: Path) -> None:
    state = torch.load(run_dir / "checkpoint.pt", weights_only=True)
    state["payload"] = _Marker(str(marker))
    torch.save(state, run_dir / "checkpoint.pt")


def test_a_checkpoint_that_would_run_code_is_refused_by_resume_and_evaluate(stored, tmp_path, capsys):
    marker = tmp_path / "MARKER"
    _craft(stored, marker)
    before = snapshot(stored)
    expect_refused(capsys, ["train", "--resume", str(stored), "--steps", "2048", "--wandb", "disabled", "--quiet"],
                   f"{stored / 'checkpoint.pt'}: holds objects other than tensors", "--trust-checkpoint")
    expect_refused(capsys, ["evaluate", str(stored), "--force", "--episodes", "1"],
                   f"{stored / 'checkpoint.pt'}: holds objects other than tensors")
    assert not marker.exists()
    assert snapshot(stored) == before


def test_evaluate_names_a_truncated_checkpoint(stored, capsys):
    _truncate_checkpoint(stored)
    before = snapshot(stored)
    expect_refused(capsys, ["evaluate", str(stored), "--force", "--episodes", "1"], "checkpoint.pt: damaged")
    assert snapshot(stored) == before


def write_old_format(run_dir: Path) -> None:
    """Rewrite a run's checkpoint as trpo-bench 0.1 wrote it: NumPy objects and the whole
    MjData pickled, loadable only with weights_only=False."""
    import gymnasium as gym
    import mujoco

    from trpo_bench.envs import set_mjdata_state

    state, _ = ckpt.load(run_dir / "checkpoint.pt")
    env_id = json.loads((run_dir / "config.json").read_text())["env_id"]
    env = gym.make(env_id).unwrapped
    for e in state["venv"]["envs"]:
        if "mujoco" in e:
            set_mjdata_state(env.model, env.data, e.pop("mujoco"))
            e["mjdata"] = pickle.dumps(env.data)
    assert isinstance(env.data, mujoco.MjData)
    buf = io.BytesIO()
    torch.save(state, buf)
    (run_dir / "checkpoint.pt").write_bytes(buf.getvalue())


def test_an_old_checkpoint_is_refused_then_trusted_once_and_rewritten(tmp_path, capsys):
    # trpo-bench 0.1 stepped gymnasium's envs (its checkpoints pickled their MjData)
    args = ["--env", "Hopper-v5", "--wandb", "disabled", "--quiet", *QUICK, "--set", "checkpoint_every=1",
            "--set", "env_backend=gymnasium"]
    assert main(["train", "--steps", "1024", "--out", str(tmp_path / "cut"), *args]) == 0
    assert main(["train", "--steps", "2048", "--out", str(tmp_path / "full"), *args]) == 0
    cut, full = only_run(tmp_path / "cut"), only_run(tmp_path / "full")
    write_old_format(cut)
    with pytest.raises(pickle.UnpicklingError):
        torch.load(cut / "checkpoint.pt", weights_only=True)

    resume = ["train", "--resume", str(cut), "--steps", "2048", "--quiet", "--wandb", "disabled"]
    expect_refused(capsys, resume, "--trust-checkpoint")
    assert main([*resume, "--trust-checkpoint"]) == 0
    ckpt.load(cut / "checkpoint.pt")  # rewritten: the safe loader reads it
    assert strip_time(rows(cut)) == strip_time(rows(full))
    assert_same_parameters(cut, full)


def assert_same_parameters(a: Path, b: Path) -> None:
    pa, _ = ckpt.load(a / "checkpoint.pt")
    pb, _ = ckpt.load(b / "checkpoint.pt")
    for part in ("policy", "value"):
        for k in pa["agent"][part]:
            assert torch.equal(pa["agent"][part][k], pb["agent"][part][k]), (part, k)


# ------------------------------------------------------------------ non-finite data: the run fails, named
@pytest.mark.parametrize("env_id, quantity", [
    ("faulty_envs:NanObs-v0", "non-finite observations (NaN) in update 3"),
    ("faulty_envs:InfObs-v0", "non-finite observations (infinity) in update 3"),
    ("faulty_envs:NanReward-v0", "non-finite rewards (NaN) in update 3"),
])
def test_non_finite_data_fails_the_run_and_keeps_the_last_good_checkpoint(tmp_path, capsys, env_id, quantity):
    err = expect_refused(capsys, ["train", "--env", env_id, "--steps", "2048", "--out", str(tmp_path), "--wandb",
                                  "disabled", "--quiet", *QUICK, "--set", "checkpoint_every=1"], quantity, code=3)
    assert "run failed" in err
    run_dir = only_run(tmp_path)
    status = json.loads((run_dir / "status.json").read_text())
    assert status["state"] == "failed" and quantity in status["error"] and status["retryable"] is False
    assert [int(r["update"]) for r in rows(run_dir)] == [1, 2]
    state, _ = ckpt.load(run_dir / "checkpoint.pt")
    assert state["update"] == 2
    for part in ("policy", "value"):
        assert all(torch.isfinite(t).all() for t in state["agent"][part].values())


def test_an_env_that_raises_fails_the_run_with_its_message(tmp_path, capsys):
    expect_refused(capsys, ["train", "--env", "faulty_envs:Crashing-v0", "--steps", "2048", "--out", str(tmp_path),
                            "--wandb", "disabled", "--quiet", *QUICK],
                   "run failed: RuntimeError: the simulator lost its connection", code=3)
    status = json.loads((only_run(tmp_path) / "status.json").read_text())
    assert status["state"] == "failed" and "lost its connection" in status["error"] and status["retryable"] is True


# ------------------------------------------------------------------ one owner per run
def _wait_rows(metrics: Path, n: int, proc: subprocess.Popen, timeout: float = 120) -> None:
    end = time.time() + timeout
    while time.time() < end:
        if metrics.is_file() and len(metrics.read_text().splitlines()) - 1 >= n:
            return
        assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
        time.sleep(0.05)
    raise AssertionError("timed out waiting for metrics rows")


def test_a_second_process_on_a_running_run_is_refused(tmp_path, capsys):
    args = ["train", "--steps", "204800", "--out", str(tmp_path), "--wandb", "disabled", "--quiet", *QUICK]
    proc = subprocess.Popen([sys.executable, "-m", "trpo_bench.cli", *args], stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True, env=child_env())
    try:
        cfg = load_run_config(None, QUICK[1::2], {"total_steps": 204800})
        from trpo_bench.store import make_run_id

        run_dir = tmp_path / "train" / make_run_id(cfg)
        _wait_rows(run_dir / "metrics.csv", 2, proc)
        holder = f"pid {proc.pid} on {socket.gethostname()}"
        # The CLI, resuming.
        res = cli("train", "--resume", str(run_dir), "--quiet", "--wandb", "disabled")
        assert res.returncode == 2 and holder in res.stderr and "Traceback" not in res.stderr, res.stderr
        # The Python API, resuming and starting the same run afresh.
        with pytest.raises(ConfigError, match=holder):
            run(None, RunOptions(wandb="disabled", progress=False), resume_dir=run_dir)
        with pytest.raises(ConfigError, match=holder):
            run(cfg, RunOptions(out=tmp_path, wandb="disabled", progress=False))
        assert proc.poll() is None, "the first run must still be training"
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 130
    finally:
        proc.kill()
    status = json.loads((run_dir / "status.json").read_text())
    assert status["state"] == "interrupted"
    assert [int(r["update"]) for r in rows(run_dir)] == list(range(1, status["updates"] + 1))


def test_the_python_api_does_not_overwrite_a_finished_run(stored):
    before = snapshot(stored)
    cfg = load_run_config(None, QUICK[1::2], {"total_steps": 1024})
    cfg = cfg.replace(checkpoint_every=1)
    with pytest.raises(ConfigError, match="exists: continue it with --resume"):
        run(cfg, RunOptions(out=stored.parent.parent, wandb="disabled", progress=False))
    assert snapshot(stored) == before


# ------------------------------------------------------------------ W&B: one run per run, no waiting without network
def _wandb_runs(run_dir: Path) -> list[Path]:
    return sorted((run_dir / "wandb").glob("offline-run-*"))


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGINT])
def test_a_stopped_and_resumed_run_is_one_wandb_run_whose_history_is_the_metrics(tmp_path, sig):
    args = ["train", "--steps", "2048", "--out", str(tmp_path), "--wandb", "offline", "--quiet", *QUICK,
            "--set", "checkpoint_every=3"]
    proc = subprocess.Popen([sys.executable, "-m", "trpo_bench.cli", *args], stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True, env=child_env(WANDB_SILENT="true"))
    cfg = load_run_config(None, QUICK[1::2], {"total_steps": 2048})
    from trpo_bench.store import make_run_id

    run_dir = tmp_path / "train" / make_run_id(cfg.replace(checkpoint_every=3))
    _wait_rows(run_dir / "metrics.csv", 4, proc)
    proc.send_signal(sig)
    proc.wait(timeout=60)
    res = cli("train", "--resume", str(run_dir), "--quiet", "--wandb", "offline")
    assert res.returncode == 0, res.stderr

    # One offline record, written anew on resume (W&B's buffer dies with a SIGKILLed process):
    # the run's W&B id, every update once, each row equal to metrics.csv's.
    records = _wandb_runs(run_dir)
    assert len(records) == 1
    assert records[0].name.endswith(json.loads((run_dir / "config.json").read_text())["wandb_id"])
    transaction_logs = list(records[0].glob("*.wandb"))
    assert len(transaction_logs) == 1, sorted(str(p.relative_to(run_dir)) for p in (run_dir / "wandb").rglob("*"))
    logged_rows = history(read_records(transaction_logs[0]))
    metrics = rows(run_dir)
    assert [int(r["update"]) for r in logged_rows] == [int(r["update"]) for r in metrics] == list(range(1, 9))
    for r, logged in zip(metrics, logged_rows):
        for key, value in r.items():
            if key.startswith("time/") or value == "":
                continue
            assert float(logged[key]) == float(value), (r["update"], key)


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("key, needle", [("fake-key-0123456789", "W&B: cannot reach 127.0.0.1"),
                                         (None, "W&B: no API key")])
def test_wandb_online_without_a_server_falls_back_to_offline_once(tmp_path, key, needle):
    env = {k: v for k, v in child_env().items() if not k.startswith("WANDB_")}
    env.update({"WANDB_BASE_URL": f"http://127.0.0.1:{_closed_port()}", "WANDB_SILENT": "true", "HOME": str(tmp_path),
                "NETRC": str(tmp_path / "none")})
    if key:
        env["WANDB_API_KEY"] = key
    t0 = time.time()
    res = subprocess.run([sys.executable, "-m", "trpo_bench.cli", "train", "--steps", "512", "--out",
                          str(tmp_path / "r"), "--wandb", "online", "--quiet", *QUICK],
                         capture_output=True, text=True, timeout=180, env=env)
    assert res.returncode == 0, res.stderr
    assert time.time() - t0 < 60
    assert res.stderr.count(needle) == 1 and "wandb sync" in res.stderr
    assert len(_wandb_runs(only_run(tmp_path / "r"))) == 1


# ------------------------------------------------------------------ budgets extend, bit for bit
@pytest.mark.parametrize("env_id", ["CartPole-v1", "Hopper-v5"])
def test_a_raised_budget_continues_bit_for_bit(tmp_path, capsys, env_id):
    args = ["--env", env_id, "--wandb", "disabled", "--quiet", *QUICK, "--set", "checkpoint_every=3"]
    assert main(["train", "--steps", "1024", "--out", str(tmp_path / "short"), *args]) == 0
    assert main(["train", "--steps", "2048", "--out", str(tmp_path / "long"), *args]) == 0
    short, long = only_run(tmp_path / "short"), only_run(tmp_path / "long")
    assert main(["train", "--resume", str(short), "--steps", "2048", "--quiet"]) == 0
    assert strip_time(rows(short)) == strip_time(rows(long))
    assert_same_parameters(short, long)
    config = json.loads((short / "config.json").read_text())
    assert config["total_steps"] == config["config"]["total_steps"] == 2048
    assert [(e["from"], e["to"]) for e in config["extended"]] == [(1024, 2048)]
    assert json.loads((short / "status.json").read_text())["state"] == "done"


# ------------------------------------------------------------------ analysis, evaluate and export on bad input
def _random_metrics(d: Path) -> None:
    (d / "metrics.csv").write_bytes(bytes(np.random.default_rng(0).integers(128, 256, 512, dtype=np.uint8)))


ANALYSIS_BAD = [
    ("plot", "EMPTY", [], "holds no runs"),
    ("report", "EMPTY", [], "holds no runs"),
    ("evaluate", "EMPTY", [], "holds no runs"),
    ("export", "EMPTY", ["DEST"], "holds no runs"),
    ("plot", "FILE", [], "no such directory"),
    ("plot", "MISSING", [], "no such directory"),
    ("plot", "RANDOM_METRICS", [], "metrics.csv: not a text file"),
    ("report", "RANDOM_METRICS", [], "metrics.csv: not a text file"),
    ("evaluate", "STATUS_STRING", ["--force"], "status.json: expected a JSON object, found str"),
    ("evaluate", "STATUS_INVALID", ["--force"], "status.json: not readable JSON"),
    ("report", "STATUS_INVALID", [], "status.json: not readable JSON"),
    ("plot", "STORE", ["--out", "FILE"], "is a file; name a directory"),
    ("report", "ROW_LOST", [], "metrics.csv: update 2 is missing"),
    ("plot", "LAST_ROW_LOST", [], "metrics.csv: has 3 update rows, but status.json is at update 4"),
    ("export", "STORE", ["FILE"], "is a file; name a directory"),
]


@pytest.mark.parametrize("command, source, extra, needle", ANALYSIS_BAD,
                         ids=[f"{c}-{s}-{' '.join(e)}" for c, s, e, _ in ANALYSIS_BAD])
def test_analysis_commands_refuse_bad_input_alike(stored, tmp_path, capsys, command, source, extra, needle):
    (tmp_path / "EMPTY").mkdir()
    (tmp_path / "FILE").write_text("x")
    store = stored.parent.parent
    if source == "RANDOM_METRICS":
        _random_metrics(stored)
    elif source == "STATUS_STRING":
        (stored / "status.json").write_text('"x"')
    elif source == "STATUS_INVALID":
        (stored / "status.json").write_text("{")
    elif source == "ROW_LOST":
        _drop_metrics_row(2)(stored)
    elif source == "LAST_ROW_LOST":
        _drop_metrics_row(4)(stored)
    where = {"EMPTY": tmp_path / "EMPTY", "FILE": tmp_path / "FILE", "MISSING": tmp_path / "MISSING"}
    path = where.get(source, store)
    extra = [str(tmp_path / e) if e in ("FILE", "DEST") else e for e in extra]
    before = snapshot(tmp_path)
    expect_refused(capsys, [command, str(path), *extra], needle)
    assert snapshot(tmp_path) == before


def test_version(capsys):
    from trpo_bench import __version__

    with pytest.raises(SystemExit) as exit_:
        main(["--version"])
    assert exit_.value.code == 0 and capsys.readouterr().out.strip() == f"trpo-bench {__version__}"


# ------------------------------------------------------------------ grids: no retry that cannot help; budgets extend
def _grid(path: Path, base: dict, seeds: int = 1) -> Path:
    import yaml

    path.write_text(yaml.safe_dump({"name": "g", "base": base, "axes": {"algo": ["trpo"]}, "seeds": seeds}))
    return path


GRID_BASE = {"env_id": "CartPole-v1", "steps_per_update": 256, "num_envs": 2, "vf_minibatches": 2,
             "checkpoint_every": 3}


def test_a_grid_run_with_non_finite_data_fails_once_and_is_not_retried(tmp_path, capsys):
    path = _grid(tmp_path / "g.yaml", {**GRID_BASE, "env_id": "faulty_envs:NanObs-v0", "total_steps": 2048})
    got = main(["grid", str(path), "--out", str(tmp_path / "runs"), "--workers", "1", "--retries", "2",
                "--wandb", "disabled", "--no-analysis"])
    err = capsys.readouterr().err
    assert got == 3, err
    assert "non-finite observations (NaN) in update 3" in err and "rerun the same command to retry" not in err
    run_dir = only_run(tmp_path / "runs")
    assert (run_dir / "train.log").read_text().count("starting") == 1, "a failure a rerun cannot change was retried"
    assert json.loads((run_dir / "status.json").read_text())["retryable"] is False


def test_a_grid_extends_finished_runs_only_when_asked_and_bit_for_bit(tmp_path, capsys):
    short = _grid(tmp_path / "short.yaml", {**GRID_BASE, "total_steps": 1024}, seeds=2)
    long = _grid(tmp_path / "long.yaml", {**GRID_BASE, "total_steps": 2048}, seeds=2)
    args = ["--workers", "2", "--wandb", "disabled", "--no-analysis"]
    assert main(["grid", str(short), "--out", str(tmp_path / "a"), *args]) == 0
    assert main(["grid", str(long), "--out", str(tmp_path / "b"), *args]) == 0
    capsys.readouterr()
    before = snapshot(tmp_path / "a")
    expect_refused(capsys, ["grid", str(long), "--out", str(tmp_path / "a"), *args],
                   "total_steps: stored 1024, grid 2048", "add --extend")
    assert snapshot(tmp_path / "a") == before
    assert main(["grid", str(long), "--out", str(tmp_path / "a"), *args, "--extend"]) == 0
    for seed in (0, 1):
        run_id = f"trpo-CartPole-v1-s{seed}"
        extended, fresh = tmp_path / "a" / "g" / run_id, tmp_path / "b" / "g" / run_id
        assert strip_time(rows(extended)) == strip_time(rows(fresh)) and len(rows(fresh)) == 8
        assert_same_parameters(extended, fresh)


@pytest.mark.parametrize("umask, mode", [(0o022, 0o644), (0o027, 0o640)])
def test_run_store_files_follow_the_umask(tmp_path, umask, mode):
    """A store on a shared filesystem is readable by whom the user's umask allows."""
    res = subprocess.run(["sh", "-c", f"umask {umask:03o} && exec {sys.executable} -m trpo_bench.cli train --steps 512 "
                          f"--out {tmp_path} --wandb disabled --quiet {' '.join(QUICK)}"],
                         capture_output=True, text=True, timeout=180, env=child_env())
    assert res.returncode == 0, res.stderr
    run_dir = only_run(tmp_path)
    files = [run_dir / n for n in ("config.json", "metrics.csv", "status.json", "checkpoint.pt")]
    files += list((tmp_path / "train" / ".locks").iterdir())
    assert {f.name: oct(f.stat().st_mode & 0o777) for f in files} == {f.name: oct(mode) for f in files}


def test_a_grid_decides_the_wandb_mode_once_before_its_runs(tmp_path):
    """Online without a key: one line from the launcher, then every run logs offline."""
    path = _grid(tmp_path / "g.yaml", {**GRID_BASE, "total_steps": 512}, seeds=2)
    env = {k: v for k, v in child_env().items() if not k.startswith("WANDB_")}
    env.update({"WANDB_SILENT": "true", "HOME": str(tmp_path), "NETRC": str(tmp_path / "none")})
    res = subprocess.run([sys.executable, "-m", "trpo_bench.cli", "grid", str(path), "--out", str(tmp_path / "runs"),
                          "--workers", "2", "--wandb", "online", "--no-analysis"],
                         capture_output=True, text=True, timeout=300, env=env)
    assert res.returncode == 0, res.stderr
    assert res.stderr.count("W&B: no API key") == 1
    for seed in (0, 1):
        assert len(_wandb_runs(tmp_path / "runs" / "g" / f"trpo-CartPole-v1-s{seed}")) == 1

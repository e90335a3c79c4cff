"""The batched MuJoCo path gives gymnasium's bits: stepped side by side with the gymnasium
VecEnv (same seeds) on every task it restates, restored from plain-valued state, and in whole
training runs, uninterrupted and SIGKILLed and resumed."""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch
from run_records import assert_same_checkpoint, metric_rows

from trpo_bench import checkpoint, sidecars
from trpo_bench.config import RunConfig, validate
from trpo_bench.envs import VecEnv, make_vec_env
from trpo_bench.mujoco_batch import MujocoBatchEnv, supports
from trpo_bench.mujoco_tasks import TASKS
from trpo_bench.train import RunOptions, run

# (envs, vector steps): 10,000 env steps per task or more. HalfCheetah and Swimmer never
# terminate, so their 4 envs run into the default 1,000-step time limit twice each.
SIDE_BY_SIDE = {
    "Hopper-v5": (4, 2_500), "Walker2d-v5": (4, 2_500), "HalfCheetah-v5": (4, 2_500),
    "Ant-v5": (4, 2_500), "Swimmer-v5": (4, 2_500), "InvertedPendulum-v5": (4, 2_500),
    "InvertedDoublePendulum-v5": (4, 2_500), "Reacher-v5": (4, 2_500), "Humanoid-v5": (4, 2_500),
}
NEVER_TERMINATE = {"HalfCheetah-v5", "Swimmer-v5", "Reacher-v5"}


def policy_like_actions(rng: np.random.Generator, low: np.ndarray, high: np.ndarray, n: int, t: int) -> np.ndarray:
    """Gaussian actions clipped to the bounds as collect() clips them (so the bounds themselves
    occur); every third step in float32, the dtype of action_space.sample()."""
    a = rng.normal(0.0, 0.8 * (high - low) / 2, size=(n, low.size))
    a = np.minimum(np.maximum(a, low), high)
    return a.astype(np.float32) if t % 3 == 2 else a


def record_infos(venv: VecEnv) -> list[dict]:
    """Make each gymnasium env keep its latest step info (VecEnv drops them)."""
    latest: list[dict] = [{} for _ in venv.envs]
    for i, env in enumerate(venv.envs):
        def step(action, _step=env.step, _i=i):
            out = _step(action)
            latest[_i] = out[4]
            return out
        env.step = step
    return latest


def assert_same_step(g, b, infos: list[dict], where: str) -> None:
    assert g.obs.tobytes() == b.obs.tobytes(), where
    assert g.reward.tobytes() == b.reward.tobytes(), where
    assert np.array_equal(g.terminated, b.terminated) and np.array_equal(g.truncated, b.truncated), where
    assert g.final_obs.keys() == b.final_obs.keys(), where
    for i in g.final_obs:
        assert g.final_obs[i].tobytes() == b.final_obs[i].tobytes(), where
    assert g.episode_returns == b.episode_returns and g.episode_lengths == b.episode_lengths, where
    for i, info in enumerate(infos):
        assert info.keys() == b.infos.keys(), where
        for k, v in info.items():
            assert np.asarray(v, dtype=np.float64).tobytes() == np.asarray(b.infos[k][i], np.float64).tobytes(), \
                (where, i, k)


# Tasks stepped a second time with their physics on 3 threads of execution (4 envs: one
# takes two), among them the two that read mj_rnePostConstraint's output: in sidecar processes
# where this machine has them, and on threads (Hopper), as other machines step them.
THREADED = {"Hopper-v5", "Ant-v5", "Humanoid-v5"}
ON_THREADS = {"Hopper-v5"}


@pytest.mark.parametrize("env_id, threads, kind", [(e, 1, "") for e in sorted(SIDE_BY_SIDE)]
                         + [(e, 3, "sidecars") for e in sorted(THREADED)]
                         + [(e, 3, "threads") for e in sorted(ON_THREADS)])
def test_batched_path_steps_as_gymnasium_does(env_id, threads, kind, monkeypatch):
    if kind == "sidecars" and not sidecars.PROCESSES:
        pytest.skip("sidecar processes run on x86-64 Linux")
    monkeypatch.setattr(sidecars, "PROCESSES", kind != "threads")
    n, steps = SIDE_BY_SIDE[env_id]
    g, b = VecEnv(env_id, n, seed=11), MujocoBatchEnv(env_id, n, seed=11, threads=threads)
    assert b.threads == threads
    assert (len(b._sidecars), len(b._workers)) == {"": (0, 0), "sidecars": (2, 0), "threads": (0, 2)}[kind]
    infos = record_infos(g)
    assert g.reset().tobytes() == b.reset().tobytes()
    low, high = g.action_space.low.astype(np.float64), g.action_space.high.astype(np.float64)
    rng = np.random.default_rng(5)
    terminated = truncated = 0
    for t in range(steps):
        a = policy_like_actions(rng, low, high, n, t)
        gs, bs = g.step(a), b.step(a)
        assert_same_step(gs, bs, infos, f"{env_id} step {t}")
        terminated += int(gs.terminated.sum())
        truncated += int(gs.truncated.sum())
    # The comparison covered episode ends of the kinds this task has.
    if env_id in NEVER_TERMINATE:
        assert terminated == 0 and truncated >= n * (steps // g.envs[0].spec.max_episode_steps)
    else:
        assert terminated >= 5
    b.close()


def plain(x) -> bool:
    """Only arrays, numbers, strings, None and dicts / lists of them."""
    if isinstance(x, dict):
        return all(isinstance(k, str) and plain(v) for k, v in x.items())
    if isinstance(x, list):
        return all(plain(v) for v in x)
    return x is None or isinstance(x, (np.ndarray, int, float, str, bool, np.integer, np.floating))


@pytest.mark.parametrize("env_id", ["Ant-v5", "Hopper-v5", "InvertedDoublePendulum-v5"])
def test_state_is_plain_and_restores_exactly(env_id):
    """After a round trip through torch.save / torch.load(weights_only=True), a fresh env
    continues exactly as the original: physics, RNGs (the resets to come), time limits, and
    what the next reward reads from before its step (Ant's torso position)."""
    n = 3
    rng = np.random.default_rng(0)
    a_env = MujocoBatchEnv(env_id, n, seed=2)
    a_env.reset()
    low, high = a_env.action_space.low.astype(np.float64), a_env.action_space.high.astype(np.float64)
    for t in range(300):
        a_env.step(policy_like_actions(rng, low, high, n, t))
    state = a_env.get_state()
    assert plain(state)
    # As a checkpoint stores and loads it: torch.load(weights_only=True) unpickles no objects.
    raw = torch.load(io.BytesIO(checkpoint.to_bytes({"venv": state})), weights_only=True)
    b_env = MujocoBatchEnv(env_id, n, seed=99)  # another seed: everything must come from the state
    b_env.set_state(checkpoint.decode(raw)["venv"])
    assert a_env.obs.tobytes() == b_env.obs.tobytes()
    ends = 0
    for t in range(300, 700):
        act = policy_like_actions(rng, low, high, n, t)
        x, y = a_env.step(act), b_env.step(act)
        assert x.obs.tobytes() == y.obs.tobytes() and x.reward.tobytes() == y.reward.tobytes(), t
        assert np.array_equal(x.terminated, y.terminated) and x.episode_returns == y.episode_returns, t
        ends += len(x.episode_returns)
    assert ends >= 1  # resets after the restore drew from the restored RNGs


def test_backend_choice():
    assert validate(RunConfig(env_id="Hopper-v5", env_backend="envpool"), check_env=False) == [
        "'env_backend' must be one of auto, gymnasium; got 'envpool'"]
    assert supports("Hopper-v5") and not supports("CartPole-v1") and not supports("Hopper-v4")
    assert set(TASKS) >= {"Hopper-v5", "HalfCheetah-v5", "Walker2d-v5", "Ant-v5", "Swimmer-v5",
                          "InvertedPendulum-v5", "InvertedDoublePendulum-v5", "Reacher-v5"}
    assert isinstance(make_vec_env("Hopper-v5", 2, 0), MujocoBatchEnv)
    # Hopper-v5 registered with a non-default argument steps gymnasium's env.
    registered = gym.registry["Hopper-v5"]
    try:
        with pytest.warns(UserWarning, match="Overriding environment Hopper-v5"):
            gym.register("Hopper-v5", entry_point=registered.entry_point, max_episode_steps=1000,
                         kwargs={"ctrl_cost_weight": 0.01})
        assert not supports("Hopper-v5") and type(make_vec_env("Hopper-v5", 2, 0)) is VecEnv
    finally:
        gym.registry["Hopper-v5"] = registered
    assert supports("Hopper-v5")
    assert type(make_vec_env("Hopper-v5", 2, 0, "gymnasium")) is VecEnv
    assert type(make_vec_env("CartPole-v1", 2, 0)) is VecEnv
    # A resume continues on the backend that captured the state, whatever the setting says.
    captured = make_vec_env("Hopper-v5", 2, 0, "gymnasium")
    captured.reset()
    assert type(make_vec_env("Hopper-v5", 2, 0, "auto", captured=captured.get_state())) is VecEnv
    batched = MujocoBatchEnv("Hopper-v5", 2, 0)
    batched.reset()
    assert isinstance(make_vec_env("Hopper-v5", 2, 0, "gymnasium", captured=batched.get_state()), MujocoBatchEnv)


def _train(tmp_path: Path, name: str, env_id: str, backend: str, env_threads: int = 0) -> tuple[dict, list[dict], dict]:
    cfg = RunConfig(env_id=env_id, seed=3, total_steps=4 * 512, steps_per_update=512, num_envs=4,
                    env_backend=backend, env_threads=env_threads)
    result = run(cfg, RunOptions(out=tmp_path, run_id=name, wandb="disabled", progress=False))
    ckpt, _ = checkpoint.load(result.run_dir / "checkpoint.pt")
    return ckpt["agent"], metric_rows(result.run_dir), ckpt["venv"]


@pytest.mark.parametrize("env_id", ["Hopper-v5", "Walker2d-v5"])
def test_training_on_the_batched_path_equals_the_gymnasium_path(tmp_path, env_id):
    agent_b, rows_b, venv_b = _train(tmp_path, "batched", env_id, "auto")
    agent_g, rows_g, venv_g = _train(tmp_path, "gymnasium", env_id, "gymnasium")
    assert venv_b.get("backend") == "mujoco_batch" and "envs" in venv_g  # each path really ran
    assert len(rows_b) == 4 and sum(float(r["rollout/episodes"]) for r in rows_b) > 0
    assert rows_b == rows_g
    for part in ("policy", "value"):
        for k in agent_g[part]:
            assert torch.equal(agent_b[part][k], agent_g[part][k]), (part, k)
    assert np.array_equal(agent_b["obs_rms"]["mean"], agent_g["obs_rms"]["mean"])


def test_physics_threads_change_no_bits(tmp_path):
    agent_1, rows_1, venv_1 = _train(tmp_path, "one", "Walker2d-v5", "auto", env_threads=1)
    agent_4, rows_4, venv_4 = _train(tmp_path, "four", "Walker2d-v5", "auto", env_threads=4)
    assert rows_1 == rows_4
    for part in ("policy", "value"):
        for k in agent_1[part]:
            assert torch.equal(agent_1[part][k], agent_4[part][k]), (part, k)
    assert venv_1["physics"].tobytes() == venv_4["physics"].tobytes()


def test_thread_count_follows_the_cpus_a_run_may_use(monkeypatch):
    from trpo_bench.mujoco_batch import resolve_threads

    monkeypatch.setenv("TRPO_BENCH_CPUS", "3")
    assert resolve_threads(0, 8) == 3  # one per CPU of this run's share
    assert resolve_threads(0, 2) == 2  # never more than there are envs
    assert resolve_threads(5, 8) == 5  # a number given is taken as it is
    monkeypatch.delenv("TRPO_BENCH_CPUS")
    assert resolve_threads(0, 64) == min(64, len(os.sched_getaffinity(0)))
    assert validate(RunConfig(env_threads=-1)) and not validate(RunConfig(env_threads=0))


def test_an_error_on_a_physics_thread_reaches_the_caller(monkeypatch):
    """Every worker is joined before the step raises, so no stale completion is left for the
    next step to take while a thread is still stepping."""
    import threading

    import trpo_bench.mujoco_batch as mb

    monkeypatch.setattr(sidecars, "PROCESSES", False)
    env = MujocoBatchEnv("Hopper-v5", 32, 0, threads=3)
    env.reset()
    real = mb.mujoco.mj_step

    def step(m, d, n):
        if threading.current_thread().name == "mujoco-batch":
            raise RuntimeError("bad step")
        real(m, d, n)

    monkeypatch.setattr(mb.mujoco, "mj_step", step)
    with pytest.raises(RuntimeError, match="bad step"):
        for _ in range(20):  # the workers take envs within the first few steps
            env.step(np.zeros((32, 3)))
    assert all(w._done.empty() for w in env._workers)  # each joined, none ahead
    monkeypatch.setattr(mb.mujoco, "mj_step", real)
    env.step(np.zeros((32, 3)))  # the workers are still there, and the env steps on
    threads = [w._thread for w in env._workers]
    env.close()
    assert len(threads) == 2 and not any(t.is_alive() for t in threads)


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "trpo_bench.cli", *args], capture_output=True, text=True,
                          timeout=300, env=os.environ.copy())


def test_sigkilled_batched_run_resumes_bit_for_bit(tmp_path):
    args = ["train", "--env", "Walker2d-v5", "--steps", "4096", "--wandb", "disabled", "--quiet",
            "--set", "steps_per_update=512", "--set", "num_envs=4", "--set", "checkpoint_every=3"]
    full, cut = tmp_path / "full", tmp_path / "cut"
    assert _cli(*args, "--out", str(full)).returncode == 0
    proc = subprocess.Popen([sys.executable, "-m", "trpo_bench.cli", *args, "--out", str(cut)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    # Kill after update 3's checkpoint and before the end: updates 4 and on are redone.
    end = time.time() + 240
    while time.time() < end:
        metrics = list(cut.rglob("metrics.csv"))
        if metrics and len(metrics[0].read_text().splitlines()) - 1 >= 4:
            break
        assert proc.poll() is None, proc.stderr.read()
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    run_dir = metrics[0].parent
    assert json.loads((run_dir / "status.json").read_text())["state"] == "running"
    assert checkpoint.load(run_dir / "checkpoint.pt")[0]["venv"]["backend"] == "mujoco_batch"
    res = _cli("train", "--resume", str(run_dir), "--quiet")
    assert res.returncode == 0, res.stderr

    (full_dir,) = [p.parent for p in full.rglob("metrics.csv")]
    a, b = metric_rows(full_dir), metric_rows(run_dir)
    assert [int(r["update"]) for r in b] == list(range(1, 9))
    assert a == b
    assert_same_checkpoint(full_dir, run_dir)

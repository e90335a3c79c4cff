"""Observation and reward normalization: the running statistics they keep, checked against
NumPy over all the data seen, and the single-env fast path against the general update. And
MuJoCo's warnings, routed through Python's."""

from __future__ import annotations

import subprocess
import sys
import warnings

import numpy as np
import pytest

from trpo_bench.envs import MujocoWarning, RewardScaler, RunningMeanStd, make_env


def chan_update(mean, var, count, x):
    """The general batch update of RunningMeanStd, operation for operation."""
    b_count = x.shape[0]
    b_mean = np.add.reduce(x, axis=0) / b_count
    dev = x - b_mean
    b_var = np.add.reduce(np.square(dev), axis=0) / b_count
    delta = b_mean - mean
    tot = count + b_count
    new_mean = mean + delta * b_count / tot
    m2 = var * count + b_var * b_count + delta**2 * count * b_count / tot
    return new_mean, m2 / tot, tot


def pooled(data: np.ndarray, prior: float = 1e-4) -> tuple[np.ndarray, np.ndarray]:
    """Mean and variance of ``data`` (rows) pooled with the starting statistics: mean 0 and
    variance 1 carrying a weight of ``prior`` rows."""
    tot = data.shape[0] + prior
    mean = data.sum(axis=0) / tot
    m2 = prior * 1.0 + ((data - mean) ** 2).sum(axis=0) + prior * mean**2
    return mean, m2 / tot


def test_running_stats_equal_numpy_over_all_rows():
    rng = np.random.default_rng(0)
    rms = RunningMeanStd((5,))
    seen = []
    for size in [1, 1, 8, 3, 1, 64, 1, 200]:
        x = rng.normal(loc=[0.0, 5.0, -3.0, 100.0, 0.1], scale=[1.0, 0.5, 4.0, 20.0, 1e-3], size=(size, 5))
        rms.update(x)
        seen.append(x)
    data = np.concatenate(seen)
    mean, var = pooled(data)
    np.testing.assert_allclose(rms.mean, mean, rtol=1e-10, atol=1e-13)
    np.testing.assert_allclose(rms.var, var, rtol=1e-9)
    # The prior barely moves the mean: NumPy's mean of the data alone agrees.
    np.testing.assert_allclose(rms.mean, data.mean(axis=0), rtol=1e-5, atol=1e-6)
    assert rms.count == data.shape[0] + 1e-4


def test_one_row_update_has_the_bits_of_the_general_update():
    # One env updates the statistics with one row every step, through a shorter path. Stored
    # runs were made with the general update, so the shorter path must give the same bits.
    rng = np.random.default_rng(1)
    rms = RunningMeanStd((11,))
    mean, var, count = rms.mean.copy(), rms.var.copy(), rms.count
    for _ in range(3000):
        x = rng.standard_normal((1, 11)) * rng.choice([1e-4, 1.0, 1e4], 11)
        rms.update(x)
        mean, var, count = chan_update(mean, var, count, x)
        assert np.array_equal(rms.mean, mean) and np.array_equal(rms.var, var) and rms.count == count


def test_one_row_update_of_scalar_statistics():
    # The reward scaler keeps scalar statistics of one return per env.
    rng = np.random.default_rng(2)
    rms = RunningMeanStd(())
    mean, var, count = rms.mean.copy(), rms.var.copy(), rms.count
    for _ in range(1000):
        x = rng.standard_normal(1) * 50.0
        rms.update(x)
        mean, var, count = chan_update(mean, var, count, x)
    assert rms.mean == mean and rms.var == var and rms.count == count


def test_normalize_standardizes_and_clips():
    rms = RunningMeanStd((2,), clip=5.0)
    rms.mean, rms.var = np.array([1.0, -2.0]), np.array([4.0, 0.25])
    z = rms.normalize(np.array([[3.0, -2.5], [101.0, -100.0]]))
    np.testing.assert_allclose(z, [[1.0, -1.0], [5.0, -5.0]], rtol=1e-7)  # eps 1e-8 in the variance


def test_reward_scaler_divides_by_the_std_of_discounted_returns():
    rng = np.random.default_rng(3)
    gamma, n, T = 0.9, 2, 400
    scaler = RewardScaler(n, gamma, clip=1e9)
    rewards = rng.uniform(0.0, 2.0, (T, n))
    dones = rng.random((T, n)) < 0.05
    ret = np.zeros(n)
    returns = []
    for t in range(T):
        out = scaler(rewards[t], dones[t])
        ret = ret * gamma + rewards[t]
        returns.append(ret.copy())
        # Scaled by the statistics of every discounted return up to and including this step.
        _, var = pooled(np.concatenate(returns))
        np.testing.assert_allclose(out, rewards[t] / np.sqrt(var + 1e-8), rtol=1e-9)
        ret[dones[t]] = 0.0  # a finished episode's return starts again from 0
    assert 0.5 < np.sqrt(scaler.rms.var) < 20.0


def test_reward_scaler_clips():
    scaler = RewardScaler(1, 0.99, clip=3.0)
    scaler.rms.var = np.float64(1e-6)
    assert scaler(np.array([10.0]), np.array([False]))[0] == 3.0


# --- MuJoCo's warnings --------------------------------------------------------


UNSTABLE = (
    "import mujoco\n"
    "m = mujoco.MjModel.from_xml_string('<mujoco><worldbody><body><freejoint/><geom size=\".1\"/>'\n"
    "                                   '</body></worldbody></mujoco>')\n"
    "d = mujoco.MjData(m)\n"
    "d.qvel[:] = float('nan')\n"
    "mujoco.mj_step(m, d)  # MuJoCo warns: the simulation is unstable\n"
)


def test_mujoco_warnings_become_python_warnings(tmp_path, monkeypatch):
    pytest.importorskip("mujoco")
    monkeypatch.chdir(tmp_path)
    make_env("Hopper-v5").close()
    with pytest.warns(MujocoWarning, match="MuJoCo: Nan, Inf or huge value in QVEL"):
        exec(UNSTABLE, {})
    # gymnasium's HalfCheetah model sets MuJoCo 4's deprecated 'settotalmass': not passed on.
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        make_env("HalfCheetah-v5").close()
    assert not [w for w in seen if issubclass(w.category, MujocoWarning)]
    # Nothing is appended to a MUJOCO_LOG.TXT in the working directory.
    assert not (tmp_path / "MUJOCO_LOG.TXT").exists()


def test_mujoco_warning_under_an_error_filter_does_not_abort(tmp_path):
    # A warning turned into an exception must not propagate into MuJoCo's C code, which
    # would abort the whole process: it is printed instead.
    pytest.importorskip("mujoco")
    code = ("import warnings\nfrom trpo_bench.envs import make_env\nmake_env('Hopper-v5').close()\n"
            "warnings.simplefilter('error')\n" + UNSTABLE + "print('stepped')\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "stepped" in out.stdout
    assert "MuJoCo warning: Nan, Inf or huge value in QVEL" in out.stderr

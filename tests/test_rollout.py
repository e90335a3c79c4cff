"""collect()'s observation statistics: each observation counted once, and a truncated
episode's final observation normalized with the statistics of its own step
(``obs_norm_timing: step``); ``legacy`` keeps trpo-bench 0.2's timing."""

from __future__ import annotations

import numpy as np
import torch

from trpo_bench.config import RunConfig
from trpo_bench.envs import RunningMeanStd, VecEnv, action_bounds
from trpo_bench.rollout import collect
from trpo_bench.train import Agent, seed_everything

ENV = "Pendulum-v1"  # truncated at 200 steps, never terminated
N, T = 3, 150  # two collects cross the first time limit


class RecordingValue:
    """The value net, keeping every batch of inputs it was asked about."""

    def __init__(self, net):
        self.net, self.inputs = net, []

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        self.inputs.append(x.clone())
        return self.net(x)


class RecordingEnv:
    """A VecEnv that keeps every step's result."""

    def __init__(self, venv: VecEnv):
        self.venv, self.results = venv, []
        self.num_envs, self.action_space = venv.num_envs, venv.action_space

    @property
    def obs(self):
        return self.venv.obs

    def step(self, a):
        res = self.venv.step(a)
        self.results.append(res)
        return res


def _collects(timing: str, n_collects: int = 2):
    cfg = RunConfig(env_id=ENV, num_envs=N, normalize_obs=True, obs_norm_timing=timing)
    rng, _ = seed_everything(0)
    venv = RecordingEnv(VecEnv(ENV, N, seed=0))
    first = venv.venv.reset().copy()
    agent = Agent(cfg, venv.venv)
    low, high = action_bounds(venv.action_space)
    values = []
    for k in range(n_collects):
        value = RecordingValue(agent.value)
        collect(venv, agent.actor, value, agent.obs_rms, T, rng, cfg.gamma, cfg.gae_lambda, low, high,
                count_first=k == 0, legacy_norm=timing == "legacy")
        values.append(value)
    return first, venv.results, agent.obs_rms, values


def test_each_observation_enters_the_statistics_once():
    first, results, rms, _ = _collects("step")
    seen = np.concatenate([first, *[r.obs for r in results]])
    assert rms.count == 1e-4 + len(seen) == 1e-4 + N * (1 + 2 * T)
    ref = RunningMeanStd(rms.mean.shape)
    ref.update(first)
    for r in results:
        ref.update(r.obs)
    assert ref.mean.tobytes() == rms.mean.tobytes() and ref.var.tobytes() == rms.var.tobytes()

    _, _, legacy, _ = _collects("legacy")
    assert legacy.count == 1e-4 + N * (2 + 2 * T)  # the boundary observations twice


def test_final_observations_are_normalized_with_the_statistics_of_their_step():
    first, results, _, values = _collects("step")
    ref = RunningMeanStd(first.shape[1:])
    ref.update(first)
    expected = []
    for t, r in enumerate(results):
        ref.update(r.obs)
        expected += [ref.normalize(r.final_obs[i][None])[0] for i in sorted(r.final_obs) if r.truncated[i]]
    assert len(expected) == N  # each env's first episode ends at step 200, in the second collect
    final_inputs = values[1].inputs[2]  # V(all observations), V(last), V(final observations)
    assert torch.equal(final_inputs, torch.as_tensor(np.stack(expected), dtype=torch.float32))

    # legacy: the statistics at the rollout's end
    first, results, rms, values = _collects("legacy")
    finals = [r.final_obs[i] for r in results for i in sorted(r.final_obs) if r.truncated[i]]
    assert torch.equal(values[1].inputs[2], torch.as_tensor(rms.normalize(np.stack(finals)), dtype=torch.float32))

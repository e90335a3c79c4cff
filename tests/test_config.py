"""User-caused configuration errors are caught before any environment step, with a message
that names the setting and its allowed values, every problem listed together."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest

from trpo_bench.config import (
    DEFAULTS,
    ConfigError,
    RunConfig,
    TrustRegionSettings,
    build_config,
    load_run_config,
    prepare,
    validate,
)
from trpo_bench.train import RunOptions, run


# --------------------------------------------------- a registered env with an unsupported space
class _CountingEnv(gym.Env):
    """Counts reset/step calls across instances so a test can see that none happened."""

    calls = {"reset": 0, "step": 0}
    action_space_kind = "multidiscrete"

    def __init__(self):
        self.observation_space = gym.spaces.Box(-1.0, 1.0, (3,), dtype=np.float32)
        if self.action_space_kind == "multidiscrete":
            self.action_space = gym.spaces.MultiDiscrete([2, 3])
        else:
            self.action_space = gym.spaces.Tuple((gym.spaces.Discrete(2), gym.spaces.Discrete(2)))

    def reset(self, *, seed=None, options=None):
        _CountingEnv.calls["reset"] += 1
        return np.zeros(3, dtype=np.float32), {}

    def step(self, action):
        _CountingEnv.calls["step"] += 1
        return np.zeros(3, dtype=np.float32), 0.0, False, False, {}


class _MultiDiscreteEnv(_CountingEnv):
    action_space_kind = "multidiscrete"


class _TupleEnv(_CountingEnv):
    action_space_kind = "tuple"


SPACE_ENVS = {"MultiDiscrete": "TrpoBenchTest/MultiDiscrete-v0", "Tuple": "TrpoBenchTest/Tuple-v0"}


@pytest.fixture(scope="module", autouse=True)
def _register_test_envs():
    gym.register(SPACE_ENVS["MultiDiscrete"], entry_point=_MultiDiscreteEnv, max_episode_steps=10)
    gym.register(SPACE_ENVS["Tuple"], entry_point=_TupleEnv, max_episode_steps=10)
    yield
    for env_id in SPACE_ENVS.values():
        gym.registry.pop(env_id, None)


@pytest.fixture
def calls():
    _CountingEnv.calls.update(reset=0, step=0)
    return _CountingEnv.calls


# ------------------------------------------------------------------------------- validate
def test_defaults_are_valid():
    assert validate(RunConfig()) == []


@pytest.mark.parametrize("env_id,fragments", [
    ("NoSuchEnv-v9", ["'env_id'", "'NoSuchEnv-v9'", "not a registered gymnasium environment"]),
    ("CartPol-v1", ["'env_id'", "did you mean 'CartPole-v1'"]),
    ("no_such_module_xyz:Foo-v0", ["'env_id'", "cannot import the module"]),
])
def test_unknown_env_id(env_id, fragments):
    problems = validate(RunConfig(env_id=env_id))
    assert len(problems) == 1
    for fragment in fragments:
        assert fragment in problems[0]


@pytest.mark.parametrize("field,value,message", [
    ("max_kl", 0.0, "'max_kl' (delta) must be > 0; got 0.0"),
    ("max_kl", -0.01, "'max_kl' (delta) must be > 0; got -0.01"),
    ("max_kl", float("nan"), "'max_kl' (delta) must be > 0; got nan"),
    ("max_kl", float("inf"), "'max_kl' (delta) must be > 0; got inf"),
    ("cg_iters", 0, "'cg_iters' must be >= 1; got 0"),
    ("cg_iters", -3, "'cg_iters' must be >= 1; got -3"),
    ("fvp_fraction", 0.0, "'fvp_fraction' must be in (0, 1]; got 0.0"),
    ("fvp_fraction", -0.5, "'fvp_fraction' must be in (0, 1]; got -0.5"),
    ("fvp_fraction", 1.5, "'fvp_fraction' must be in (0, 1]; got 1.5"),
    ("fvp_fraction", float("nan"), "'fvp_fraction' must be in (0, 1]; got nan"),
    ("fvp", "exact", "'fvp' must be one of analytic, autograd, empirical; got 'exact'"),
    ("kl_bound", "median", "'kl_bound' must be one of mean, max; got 'median'"),
    ("algo", "ppo", "'algo' must be one of trpo, npg, pg; got 'ppo'"),
    ("backtrack_coef", 1.0, "'backtrack_coef' must be in (0, 1); got 1.0"),
])
def test_each_bad_setting_is_named_with_its_allowed_values(field, value, message):
    assert validate(RunConfig(**{field: value})) == [message]


@pytest.mark.parametrize("field,value", [("max_kl", 1e-12), ("cg_iters", 1), ("fvp_fraction", 1.0),
                                         ("fvp_fraction", 1e-3), ("fvp", "empirical"), ("kl_bound", "max")])
def test_boundary_values_are_accepted(field, value):
    assert validate(RunConfig(**{field: value})) == []


@pytest.mark.parametrize("algo", ["trpo", "npg"])
def test_fisher_kind_and_kl_bound_reach_the_update(algo):
    # NPG accepts kl_bound (it has no line search to read it, as it ignores max_backtracks).
    cfg, problems = build_config({"algo": algo, "fvp": "empirical", "kl_bound": "max"})
    assert problems == []
    s = TrustRegionSettings.from_config(cfg)
    assert (s.fvp, s.kl_bound, s.line_search) == ("empirical", "max", algo == "trpo")
    assert (DEFAULTS.fvp, DEFAULTS.kl_bound) == ("analytic", "mean")


def test_all_problems_are_reported_together(calls):
    cfg = RunConfig(env_id="NoSuchEnv-v9", max_kl=0.0, cg_iters=0, fvp_fraction=2.0)
    problems = validate(cfg)
    assert len(problems) == 4
    for name in ("'env_id'", "'max_kl'", "'cg_iters'", "'fvp_fraction'"):
        assert sum(name in p for p in problems) == 1
    with pytest.raises(ConfigError) as err:
        prepare(cfg)
    assert err.value.problems == problems
    for p in problems:
        assert p in str(err.value)
    assert calls == {"reset": 0, "step": 0}


# ------------------------------------------------------------------- unsupported action spaces
@pytest.mark.parametrize("space", ["MultiDiscrete", "Tuple"])
def test_unsupported_action_space_is_rejected_before_any_step(tmp_path, calls, space):
    cfg = RunConfig(env_id=SPACE_ENVS[space], total_steps=64, steps_per_update=32, num_envs=1, vf_minibatches=1)
    assert validate(cfg) == []  # the id is registered: only the env itself can tell
    with pytest.raises(ConfigError) as err:
        prepare(cfg)
    (problem,) = err.value.problems
    assert problem.startswith(f"'env_id' '{SPACE_ENVS[space]}' has a {space} action space")
    assert "supported: Box (Gaussian policy) and Discrete (categorical policy)" in problem

    with pytest.raises(ConfigError, match=f"{space} action space"):
        run(cfg, RunOptions(out=tmp_path, wandb="disabled", progress=False))
    assert calls == {"reset": 0, "step": 0}
    assert list(tmp_path.iterdir()) == []  # no run directory was started


def test_run_rejects_bad_settings_before_creating_anything(tmp_path):
    with pytest.raises(ConfigError) as err:
        run(RunConfig(max_kl=-1.0, cg_iters=0), RunOptions(out=tmp_path, wandb="disabled", progress=False))
    assert len(err.value.problems) == 2
    assert list(tmp_path.iterdir()) == []


# ------------------------------------------------------------------- files and key=value input
def test_build_config_lists_unknown_keys_type_errors_and_range_errors():
    cfg, problems = build_config({"max_k1": 0.02, "cg_iters": "ten", "fvp_fraction": 0.0}, where="grid.yaml")
    assert cfg is None
    assert problems == [
        "grid.yaml: unknown setting 'max_k1' (did you mean 'max_kl'?)",
        "grid.yaml: 'cg_iters': expected an integer, got 'ten'",
        "grid.yaml: 'fvp_fraction' must be in (0, 1]; got 0.0",
    ]


def test_load_run_config_names_the_file(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text("max_kl: 0\ncg_iters: 0\nenv_id: CartPole-v1\n")
    with pytest.raises(ConfigError) as err:
        load_run_config(path)
    assert err.value.source == str(path)
    assert str(path) in str(err.value)
    assert len(err.value.problems) == 2

    bad = tmp_path / "bad.yaml"
    bad.write_text("max_kl: [0.01\n")
    with pytest.raises(ConfigError, match="malformed YAML") as err:
        load_run_config(bad)
    assert str(bad) in str(err.value)

    path.write_text("max_kl: 0.02\nfvp_fraction: 0.1\n")
    cfg = load_run_config(path, overrides=["cg_iters=15"])
    assert (cfg.max_kl, cfg.fvp_fraction, cfg.cg_iters) == (0.02, 0.1, 15)

"""Run settings: one frozen dataclass, YAML / ``key=value`` loading, and validation.

Every user-facing setting lives in :class:`RunConfig`. Math code never sees it: the
training loop turns it into the small settings objects each update takes
(:class:`TrustRegionSettings`, :class:`PGSettings`, :class:`ValueSettings`).

Validation collects every problem before raising, so a user fixes a file in one pass.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import math
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Mapping

import yaml

ALGOS = ("trpo", "npg", "pg")
FVP_MODES = ("analytic", "autograd", "empirical")
KL_BOUNDS = ("mean", "max")
VF_BACKENDS = ("numpy", "torch")
ENV_BACKENDS = ("auto", "gymnasium")
OBS_NORM_TIMINGS = ("step", "legacy")
ACTIVATIONS = ("tanh", "relu")


class ConfigError(ValueError):
    """One or more user-caused configuration problems, listed together."""

    def __init__(self, problems: list[str], source: str | None = None):
        self.problems = list(problems)
        self.source = source
        if len(self.problems) == 1:  # one line: the problem, after the file it is in
            only = self.problems[0]
            text = only if not source or only.startswith(str(source)) else f"{source}: {only}"
        else:
            where = f" in {source}" if source else ""
            text = "\n".join([f"{len(self.problems)} problems{where}:"] + [f"  - {p}" for p in self.problems])
        super().__init__(text)


def _setting(default: Any, help: str, section: str) -> Any:
    if isinstance(default, (list, tuple)):
        return field(default_factory=lambda d=tuple(default): d, metadata={"help": help, "section": section})
    return field(default=default, metadata={"help": help, "section": section})


@dataclass(frozen=True)
class RunConfig:
    """Everything that determines a training run's numbers.

    Defaults name their source where references disagree (see docs/trpo.md).
    """

    # --- the run
    algo: str = _setting("trpo", "policy update: trpo | npg | pg", "run")
    env_id: str = _setting("CartPole-v1", "gymnasium id; 'module:EnvId' imports module first to register it", "run")
    seed: int = _setting(0, "seeds Python, NumPy, torch and every env", "run")
    total_steps: int = _setting(100_000, "environment steps to train for", "run")
    torch_threads: int = _setting(1, "torch intra-op and NumPy BLAS threads (1 keeps runs bitwise reproducible and grids fast)", "run")

    # --- data collection
    num_envs: int = _setting(8, "environments stepped together in one process", "rollout")
    # 2048 per update: sb3 / Tianshou MuJoCo batch scale; Schulman et al. 2015 used 50k (Table 2).
    steps_per_update: int = _setting(2048, "environment steps per policy update (all envs together)", "rollout")
    gamma: float = _setting(0.99, "discount factor", "rollout")
    # 0.97: Schulman et al. 2016 (GAE) locomotion experiments; Spinning Up also uses 0.97 (sb3: 0.95).
    gae_lambda: float = _setting(0.97, "GAE lambda", "rollout")
    normalize_obs: Any = _setting("auto", "running observation normalization: true | false | auto (on for MuJoCo)", "rollout")
    # auto: on for MuJoCo, as sb3 zoo's tuned TRPO (VecNormalize) and Tianshou's rew_norm.
    normalize_rewards: Any = _setting("auto", "scale rewards by the running std of the return: true | false | auto (on for MuJoCo)", "rollout")
    normalize_advantages: bool = _setting(True, "standardize advantages per batch", "rollout")
    # step: each observation enters the running statistics once, and a truncated episode's final
    # observation is normalized with the statistics of its own step. legacy: trpo-bench 0.2 and
    # earlier, which counted the observations at an update boundary twice and normalized final
    # observations with the statistics at the rollout's end (docs/architecture.md).
    obs_norm_timing: str = _setting("step", "observation statistics: step (each observation counted once, final observations normalized at their step) | legacy (trpo-bench <= 0.2)", "rollout")
    # auto: gymnasium's MuJoCo v5 tasks at their default arguments step in trpo_bench.mujoco_batch,
    # which restates them in NumPy with the same bits (tests/test_mujoco_batch.py) and steps
    # random actions 1.3-1.6x faster (docs/performance.md); every other env id steps gymnasium's
    # own env. gymnasium: always the latter.
    env_backend: str = _setting("auto", "how envs are stepped: auto (batched MuJoCo where it applies) | gymnasium", "rollout")
    # Changes no numbers: each env is stepped with the same calls wherever it is stepped
    # (the calling thread, a sidecar process, or a thread off x86-64 Linux).
    env_threads: int = _setting(0, "CPUs stepping the batched MuJoCo path's envs, one slice each (sidecar "
                                   "processes beside the calling thread); 0: one per available CPU", "rollout")

    # --- networks
    hidden_sizes: tuple = _setting((64, 64), "hidden layer widths of policy and value networks", "network")
    activation: str = _setting("tanh", "hidden activation: tanh | relu", "network")
    # -0.5: Spinning Up and Tianshou's MuJoCo TRPO example (sb3 starts at 0.0).
    init_log_std: float = _setting(-0.5, "initial log standard deviation of the Gaussian policy", "network")

    # --- natural-gradient methods (trpo, npg)
    # delta = 0.01: Schulman et al. 2015, Sec. 8; Spinning Up, sb3 and Tianshou agree.
    max_kl: float = _setting(0.01, "trust-region size delta: bound on KL(pi_old || pi_new) over states, mean or max (kl_bound)", "trust_region")
    # 10 iterations: Schulman et al. 2015, App. C; Spinning Up 10, sb3 15.
    cg_iters: int = _setting(10, "conjugate-gradient iterations", "trust_region")
    # 0.1: modular_rl, Spinning Up, sb3.
    cg_damping: float = _setting(0.1, "damping lambda added to the Fisher: (F + lambda I) v", "trust_region")
    # 1e-10: modular_rl's residual tolerance.
    cg_tol: float = _setting(1e-10, "CG stops when the squared residual norm drops below this", "trust_region")
    # 0.8: Spinning Up, sb3, Tianshou (modular_rl halves: 0.5).
    backtrack_coef: float = _setting(0.8, "line-search shrink factor per backtrack", "trust_region")
    # 10: Spinning Up, sb3, Tianshou.
    max_backtracks: int = _setting(10, "line-search backtracks before the step is rejected", "trust_region")
    # 1.0 here; Schulman et al. 2015, App. C.1 used 0.1 (sb3: sub_sampling_factor=1).
    fvp_fraction: float = _setting(1.0, "fraction of the batch used in Fisher-vector products, in (0, 1]", "trust_region")
    # empirical: the mean outer product of the scores at the sampled actions, not the Fisher's
    # expectation over the policy's own actions (Kunstner et al. 2019 on how it can mislead).
    fvp: str = _setting("analytic", "Fisher-vector product: analytic (J^T M J v) | autograd (double back-prop) | "
                        "empirical (mean of g g^T at the sampled actions)", "trust_region")
    # mean: the paper's practical form (Schulman et al. 2015, Sec. 4, Eq. 12; Spinning Up, sb3, Tianshou); max is the
    # D_KL^max of the paper's Theorem 1. Only TRPO's line search reads it: npg has none and ignores it.
    kl_bound: str = _setting("mean", "KL over states that the line search holds <= delta: mean | max "
                             "(trpo only; npg has no line search)", "trust_region")

    # --- vanilla policy gradient
    pg_lr: float = _setting(3e-3, "Adam learning rate of vanilla PG", "pg")
    pg_epochs: int = _setting(1, "full-batch Adam steps per update for vanilla PG", "pg")

    # --- value function
    # Adam 1e-3: Spinning Up, sb3 zoo's TRPO settings.
    vf_lr: float = _setting(1e-3, "Adam learning rate of the value network", "value")
    vf_epochs: int = _setting(5, "passes over the batch per value fit", "value")
    vf_minibatches: int = _setting(8, "minibatches per pass", "value")
    # numpy: hand-written backprop and torch's Adam rule on the same tensors, 2-3x faster on
    # 2048-state batches (torch's per-op overhead and its tanh dominate at this size); the same
    # computation up to float32 rounding. torch: autograd and torch.optim.Adam.
    vf_backend: str = _setting("numpy", "value-fit implementation: numpy | torch (autograd)", "value")

    # --- evaluation and checkpoints
    eval_every: int = _setting(0, "evaluate the policy every N updates (0: never)", "eval")
    eval_episodes: int = _setting(5, "episodes per evaluation", "eval")
    # true: the mean action, as rl-baselines3-zoo evaluates; false: actions sampled as in
    # training, as Tianshou's TRPO and NPG benchmark (2021) evaluated.
    eval_deterministic: bool = _setting(True, "evaluation during training (eval_every) takes the policy's mean "
                                        "(most likely) action: true | false (samples actions as in training); "
                                        "trpo-bench evaluate always takes the mean action", "eval")
    checkpoint_every: int = _setting(10, "write a checkpoint every N updates (and at the end)", "eval")

    # ------------------------------------------------------------------ helpers
    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["hidden_sizes"] = list(self.hidden_sizes)
        return d

    def replace(self, **changes: Any) -> "RunConfig":
        return dataclasses.replace(self, **changes)

    @property
    def normalize_obs_resolved(self) -> bool:
        if isinstance(self.normalize_obs, bool):
            return self.normalize_obs
        return is_mujoco_env(self.env_id)

    @property
    def normalize_rewards_resolved(self) -> bool:
        if isinstance(self.normalize_rewards, bool):
            return self.normalize_rewards
        return is_mujoco_env(self.env_id)


@dataclass(frozen=True)
class TrustRegionSettings:
    """What the natural-gradient update (TRPO and NPG) reads."""

    max_kl: float = 0.01
    cg_iters: int = 10
    cg_damping: float = 0.1
    cg_tol: float = 1e-10
    backtrack_coef: float = 0.8
    max_backtracks: int = 10
    fvp_fraction: float = 1.0
    fvp: str = "analytic"
    kl_bound: str = "mean"  # "max": the line search bounds the largest per-state KL
    line_search: bool = True  # False is natural PG

    @classmethod
    def from_config(cls, cfg: RunConfig) -> "TrustRegionSettings":
        return cls(
            max_kl=cfg.max_kl, cg_iters=cfg.cg_iters, cg_damping=cfg.cg_damping, cg_tol=cfg.cg_tol,
            backtrack_coef=cfg.backtrack_coef, max_backtracks=cfg.max_backtracks,
            fvp_fraction=cfg.fvp_fraction, fvp=cfg.fvp, kl_bound=cfg.kl_bound, line_search=cfg.algo == "trpo",
        )


@dataclass(frozen=True)
class PGSettings:
    lr: float = 3e-3
    epochs: int = 1

    @classmethod
    def from_config(cls, cfg: RunConfig) -> "PGSettings":
        return cls(lr=cfg.pg_lr, epochs=cfg.pg_epochs)


@dataclass(frozen=True)
class ValueSettings:
    lr: float = 1e-3
    epochs: int = 5
    minibatches: int = 8
    backend: str = "numpy"

    @classmethod
    def from_config(cls, cfg: RunConfig) -> "ValueSettings":
        return cls(lr=cfg.vf_lr, epochs=cfg.vf_epochs, minibatches=cfg.vf_minibatches, backend=cfg.vf_backend)


SETTINGS = {f.name: f for f in fields(RunConfig)}
DEFAULTS = RunConfig()

# Settings whose default changed the computation when they were added: a config.json written
# before them stands for the old behaviour, not the new default. (Any other setting missing
# from a stored config resumes at its default, which is what such a run ran with.)
OLD_BEHAVIOUR = {"vf_backend": "torch", "obs_norm_timing": "legacy"}


def stored_settings(saved: dict[str, Any]) -> dict[str, Any]:
    """The settings of a stored run's config.json, with OLD_BEHAVIOUR filled in where absent."""
    return {**OLD_BEHAVIOUR, **saved}


def complete_settings(saved: dict[str, Any]) -> dict[str, Any]:
    """Every setting a stored run ran with, as config.json stores values (tuples as lists): its
    file's, OLD_BEHAVIOUR's where absent, and the default for any other setting added since."""
    return json.loads(json.dumps({**DEFAULTS.to_dict(), **stored_settings(saved)}))


def is_mujoco_env(env_id: str) -> bool:
    """True when the id's entry point is a gymnasium MuJoCo environment."""
    import gymnasium as gym

    try:
        spec = gym.spec(env_id.split(":", 1)[-1])
    except Exception:
        return False
    entry = spec.entry_point if isinstance(spec.entry_point, str) else getattr(spec.entry_point, "__module__", "")
    return "mujoco" in str(entry)


# ---------------------------------------------------------------- coercion
def _expected_type(name: str) -> type:
    default = getattr(DEFAULTS, name)
    if name in ("normalize_obs", "normalize_rewards"):
        return object
    return type(default)


def coerce(name: str, value: Any) -> Any:
    """Convert a YAML / CLI value to the setting's type; raises ValueError with a short reason."""
    kind = _expected_type(name)
    if name in ("normalize_obs", "normalize_rewards"):
        if isinstance(value, bool) or value == "auto":
            return value
        if isinstance(value, str) and value.lower() in ("true", "false"):
            return value.lower() == "true"
        raise ValueError(f"expected true, false or auto, got {value!r}")
    if kind is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false"):
            return value.lower() == "true"
        raise ValueError(f"expected true or false, got {value!r}")
    if kind is int:
        if isinstance(value, bool):
            raise ValueError(f"expected an integer, got {value!r}")
        if isinstance(value, int):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(value, str):
            try:
                f = float(value)
            except ValueError:
                pass
            else:
                if f.is_integer():
                    return int(f)
        raise ValueError(f"expected an integer, got {value!r}")
    if kind is float:
        if isinstance(value, bool):
            raise ValueError(f"expected a number, got {value!r}")
        if isinstance(value, (int, float)):
            return float(value)
        if isinstance(value, str):
            try:
                return float(value)
            except ValueError:
                pass
        raise ValueError(f"expected a number, got {value!r}")
    if kind is tuple:
        if isinstance(value, int) and not isinstance(value, bool):
            value = [value]
        if isinstance(value, str):
            value = [v for v in value.replace("[", "").replace("]", "").split(",") if v.strip()]
        if isinstance(value, (list, tuple)):
            try:
                out = tuple(int(v) for v in value)
            except (TypeError, ValueError):
                raise ValueError(f"expected a list of integers, got {value!r}") from None
            return out
        raise ValueError(f"expected a list of integers, got {value!r}")
    if kind is str:
        if isinstance(value, str):
            return value
        raise ValueError(f"expected a string, got {value!r}")
    return value


def suggest(name: str) -> str:
    close = difflib.get_close_matches(name, list(SETTINGS), n=1, cutoff=0.5)
    return f" (did you mean '{close[0]}'?)" if close else ""


def build_config(values: Mapping[str, Any], base: RunConfig | None = None, where: str = "") -> tuple[RunConfig | None, list[str]]:
    """Apply ``values`` on ``base``; return the config and the list of problems (empty when valid)."""
    problems: list[str] = []
    changes: dict[str, Any] = {}
    prefix = f"{where}: " if where else ""
    for key, raw in values.items():
        if key not in SETTINGS:
            problems.append(f"{prefix}unknown setting '{key}'{suggest(str(key))}")
            continue
        try:
            changes[key] = coerce(key, raw)
        except ValueError as err:
            problems.append(f"{prefix}'{key}': {err}")
    cfg = (base or DEFAULTS).replace(**changes)
    problems += [f"{prefix}{p}" for p in validate(cfg)]
    return (cfg if not problems else None), problems


@dataclass(frozen=True)
class Problem:
    """A problem with a config: the settings it involves and what is wrong."""

    fields: tuple[str, ...]
    message: str


def validate(cfg: RunConfig, check_env: bool = True) -> list[str]:
    """Every problem with ``cfg``, each naming the setting and the allowed values."""
    return [p.message for p in check(cfg, check_env)]


def check(cfg: RunConfig, check_env: bool = True) -> list[Problem]:
    """Every problem with ``cfg`` as (settings involved, message): a grid file names the
    places those settings come from without reading the message."""
    p: list[Problem] = []

    def need(fields: tuple[str, ...], ok: bool, msg: str) -> None:
        if not ok:
            p.append(Problem(fields, msg))

    need(("algo",), cfg.algo in ALGOS, f"'algo' must be one of {', '.join(ALGOS)}; got {cfg.algo!r}")
    need(("fvp",), cfg.fvp in FVP_MODES, f"'fvp' must be one of {', '.join(FVP_MODES)}; got {cfg.fvp!r}")
    need(("kl_bound",), cfg.kl_bound in KL_BOUNDS,
         f"'kl_bound' must be one of {', '.join(KL_BOUNDS)}; got {cfg.kl_bound!r}")
    need(("vf_backend",), cfg.vf_backend in VF_BACKENDS,
         f"'vf_backend' must be one of {', '.join(VF_BACKENDS)}; got {cfg.vf_backend!r}")
    need(("obs_norm_timing",), cfg.obs_norm_timing in OBS_NORM_TIMINGS,
         f"'obs_norm_timing' must be one of {', '.join(OBS_NORM_TIMINGS)}; got {cfg.obs_norm_timing!r}")
    need(("env_backend",), cfg.env_backend in ENV_BACKENDS,
         f"'env_backend' must be one of {', '.join(ENV_BACKENDS)}; got {cfg.env_backend!r}")
    need(("activation",), cfg.activation in ACTIVATIONS, f"'activation' must be one of {', '.join(ACTIVATIONS)}; got {cfg.activation!r}")
    need(("total_steps",), cfg.total_steps >= 1, f"'total_steps' must be >= 1; got {cfg.total_steps}")
    need(("num_envs",), cfg.num_envs >= 1, f"'num_envs' must be >= 1; got {cfg.num_envs}")
    need(("steps_per_update",), cfg.steps_per_update >= 1, f"'steps_per_update' must be >= 1; got {cfg.steps_per_update}")
    if cfg.num_envs >= 1 and cfg.steps_per_update >= 1:
        need(("steps_per_update", "num_envs"), cfg.steps_per_update % cfg.num_envs == 0,
             f"'steps_per_update' ({cfg.steps_per_update}) must be a multiple of 'num_envs' ({cfg.num_envs})")
    need(("gamma",), 0.0 <= cfg.gamma <= 1.0, f"'gamma' must be in [0, 1]; got {cfg.gamma}")
    need(("gae_lambda",), 0.0 <= cfg.gae_lambda <= 1.0, f"'gae_lambda' must be in [0, 1]; got {cfg.gae_lambda}")
    need(("hidden_sizes",), len(cfg.hidden_sizes) >= 1 and all(h >= 1 for h in cfg.hidden_sizes),
         f"'hidden_sizes' must be a non-empty list of positive integers; got {list(cfg.hidden_sizes)}")
    need(("max_kl",), math.isfinite(cfg.max_kl) and cfg.max_kl > 0, f"'max_kl' (delta) must be > 0; got {cfg.max_kl}")
    need(("cg_iters",), cfg.cg_iters >= 1, f"'cg_iters' must be >= 1; got {cfg.cg_iters}")
    need(("cg_damping",), cfg.cg_damping >= 0, f"'cg_damping' must be >= 0; got {cfg.cg_damping}")
    need(("cg_tol",), cfg.cg_tol >= 0, f"'cg_tol' must be >= 0; got {cfg.cg_tol}")
    need(("backtrack_coef",), 0 < cfg.backtrack_coef < 1, f"'backtrack_coef' must be in (0, 1); got {cfg.backtrack_coef}")
    need(("max_backtracks",), cfg.max_backtracks >= 0, f"'max_backtracks' must be >= 0; got {cfg.max_backtracks}")
    need(("fvp_fraction",), 0 < cfg.fvp_fraction <= 1, f"'fvp_fraction' must be in (0, 1]; got {cfg.fvp_fraction}")
    need(("pg_lr",), cfg.pg_lr > 0, f"'pg_lr' must be > 0; got {cfg.pg_lr}")
    need(("pg_epochs",), cfg.pg_epochs >= 1, f"'pg_epochs' must be >= 1; got {cfg.pg_epochs}")
    need(("vf_lr",), cfg.vf_lr > 0, f"'vf_lr' must be > 0; got {cfg.vf_lr}")
    need(("vf_epochs",), cfg.vf_epochs >= 0, f"'vf_epochs' must be >= 0; got {cfg.vf_epochs}")
    need(("vf_minibatches",), cfg.vf_minibatches >= 1, f"'vf_minibatches' must be >= 1; got {cfg.vf_minibatches}")
    if cfg.vf_minibatches >= 1 and cfg.steps_per_update >= 1:
        need(("vf_minibatches", "steps_per_update"), cfg.vf_minibatches <= cfg.steps_per_update,
             f"'vf_minibatches' ({cfg.vf_minibatches}) must be <= 'steps_per_update' ({cfg.steps_per_update})")
    need(("eval_every",), cfg.eval_every >= 0, f"'eval_every' must be >= 0; got {cfg.eval_every}")
    need(("eval_episodes",), cfg.eval_episodes >= 1, f"'eval_episodes' must be >= 1; got {cfg.eval_episodes}")
    need(("checkpoint_every",), cfg.checkpoint_every >= 1, f"'checkpoint_every' must be >= 1; got {cfg.checkpoint_every}")
    need(("torch_threads",), cfg.torch_threads >= 1, f"'torch_threads' must be >= 1; got {cfg.torch_threads}")
    need(("env_threads",), cfg.env_threads >= 0, f"'env_threads' must be >= 0 (0: one per CPU); got {cfg.env_threads}")
    need(("seed",), 0 <= cfg.seed < 2**32,
         f"'seed' must be in [0, 2^32) (NumPy and gymnasium seeds are 32-bit); got {cfg.seed}")
    # NaN fails every comparison above or slips through, and infinities are in range for
    # most of them: no float setting may be either.
    for f in fields(cfg):
        value = getattr(cfg, f.name)
        if isinstance(value, float) and not math.isfinite(value) and not any(f.name in q.fields for q in p):
            p.append(Problem((f.name,), f"'{f.name}' must be a finite number; got {value}"))
    if check_env:
        problem = check_env_id(cfg.env_id)
        if problem:
            p.append(Problem(("env_id",), problem))
    return p


def check_env_id(env_id: str) -> str | None:
    """None when ``env_id`` resolves to a registered gymnasium env, else the reason."""
    import gymnasium as gym
    from gymnasium.error import Error as GymError

    from trpo_bench.envs import register_module

    try:
        name = register_module(env_id)
    except ImportError as err:
        return f"'env_id' {env_id!r}: cannot import the module before ':' ({err})"
    try:
        gym.spec(name)
    except GymError as err:
        close = difflib.get_close_matches(name, list(gym.registry), n=1, cutoff=0.6)
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        return f"'env_id' {env_id!r} is not a registered gymnasium environment{hint}: {str(err).splitlines()[0]}"
    return None


# ---------------------------------------------------------------- files
def read_yaml(path: str | Path) -> Any:
    """Parse a YAML file; raise ConfigError naming the file for a missing file or bad syntax."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(["file not found"], str(path))
    try:
        return yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        reason = getattr(err, "problem", None) or str(err).splitlines()[0]
        raise ConfigError([f"malformed YAML{where}: {reason}"], str(path)) from None


def read_settings_file(path: str | Path) -> dict[str, Any]:
    """A ``--config`` YAML file: a mapping of settings (an empty file is no settings)."""
    data = read_yaml(path)
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError([f"expected a mapping of settings at the top level, got {type(data).__name__}"], str(path))
    return data


def parse_overrides(pairs: list[str]) -> tuple[dict[str, Any], list[str]]:
    """``["max_kl=0.02", "hidden_sizes=[32,32]"]`` -> values (YAML-typed) and problems."""
    values: dict[str, Any] = {}
    problems: list[str] = []
    for pair in pairs:
        if "=" not in pair:
            problems.append(f"--set {pair!r}: expected key=value")
            continue
        key, raw = pair.split("=", 1)
        key = key.strip()
        try:
            values[key] = yaml.safe_load(raw) if raw.strip() else raw
        except yaml.YAMLError as err:
            reason = getattr(err, "problem", None) or str(err).splitlines()[0]
            problems.append(f"--set {key}: malformed value {raw!r} ({reason}); quote or complete it, "
                            "e.g. --set 'hidden_sizes=[64, 64]'")
    return values, problems


def load_run_config(path: str | Path | None = None, overrides: list[str] | None = None,
                    flags: Mapping[str, Any] | None = None) -> RunConfig:
    """Config from the defaults, then a YAML file, then ``flags`` (``--algo``, ``--env``, ...),
    then ``--set`` overrides; every problem is raised together, naming the file."""
    values: dict[str, Any] = {}
    problems: list[str] = []
    source = None
    if path is not None:
        source = str(path)
        values.update(read_settings_file(path))
    values.update(flags or {})
    if overrides:
        ov, p = parse_overrides(overrides)
        problems += p
        values.update(ov)
    cfg, more = build_config(values)
    problems += more
    if problems:
        raise ConfigError(problems, source)
    assert cfg is not None
    return cfg


def settings_help() -> list[tuple[str, str, Any, str]]:
    """(section, name, default, help) for every setting, for ``--help``."""
    return [(f.metadata["section"], f.name, getattr(DEFAULTS, f.name), f.metadata["help"]) for f in fields(RunConfig)]


def prepare(cfg: RunConfig) -> None:
    """Check what only an environment can tell (action space), before any env step."""
    problems = validate(cfg)
    if problems:
        raise ConfigError(problems)
    from gymnasium.error import DependencyNotInstalled

    from trpo_bench.envs import make_env

    try:
        env = make_env(cfg.env_id)
    except (DependencyNotInstalled, ImportError) as err:
        raise ConfigError([f"'env_id' {cfg.env_id!r} needs a package that is not installed: "
                           f"{str(err).strip().splitlines()[0]}"]) from None
    try:
        import gymnasium as gym

        if not isinstance(env.action_space, (gym.spaces.Box, gym.spaces.Discrete)):
            raise ConfigError([f"'env_id' {cfg.env_id!r} has a {type(env.action_space).__name__} action space; "
                               "supported: Box (Gaussian policy) and Discrete (categorical policy)"])
        if len(env.observation_space.shape or ()) == 0:
            raise ConfigError([f"'env_id' {cfg.env_id!r} has a {type(env.observation_space).__name__} observation "
                               "space; supported: Box observations"])
    finally:
        env.close()

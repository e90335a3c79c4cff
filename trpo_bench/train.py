"""The training loop: collect → advantages → policy update → value fit → log → checkpoint.

This is the only place that decides when to log and when to checkpoint.
``run(cfg)`` is the one way to train, from Python and from ``trpo-bench train``.
"""

from __future__ import annotations

import math
import os
import platform
import random
import signal
import subprocess
import sys
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from trpo_bench import algos
from trpo_bench import signals as stop_signals
from trpo_bench import value as value_fit
from trpo_bench.algos.common import PolicyBatch
from trpo_bench.config import ConfigError, PGSettings, RunConfig, TrustRegionSettings, ValueSettings, prepare
from trpo_bench.envs import IdentityNormalizer, RewardScaler, RunningMeanStd, VecEnv, action_bounds, make_vec_env
from trpo_bench.evaluate import evaluate_policy
from trpo_bench.locks import FileLock
from trpo_bench.logger import WandbLogger, wandb_id
from trpo_bench.policies import NumpyActor, ValueNet, make_policy
from trpo_bench.progress import Progress, run_detail
from trpo_bench.rollout import collect
from trpo_bench.store import METRIC_COLUMNS, RunStore, is_run_dir, make_run_id, safe_name


class Interrupted(Exception):
    """SIGINT / SIGTERM arrived; the run stopped at a safe point with a checkpoint."""


class RunFailed(Exception):
    """The run stopped with status ``failed``; ``reason`` is what status.json records."""

    def __init__(self, reason: str, retryable: bool):
        super().__init__(reason)
        self.reason, self.retryable = reason, retryable


class NonFinite(Exception):
    """A NaN or infinity in an update's data or results; the run fails without saving it."""


@dataclass
class RunOptions:
    """How a run is launched and reported; nothing here changes its numbers."""

    out: Path = Path("runs")
    grid: str | None = None  # directory under ``out``; defaults to the W&B group, then "train"
    run_id: str | None = None
    axes: dict[str, Any] | None = None  # the grid axes this run varies, recorded in config.json and W&B
    wandb: str | None = None  # offline | online | disabled; None: see logger.resolve_mode
    project: str = "trpo-bench"
    group: str | None = None
    tags: list[str] = field(default_factory=list)
    progress: bool = True
    progress_interval: float = 10.0
    handle_signals: bool = True
    # Grid hook: any object with ``is_set()`` (e.g. threading.Event); once set, the run stops at
    # the next safe point exactly as on SIGTERM (checkpoint, status "interrupted", Interrupted).
    stop: Any = None
    # A FileLock on this run that the caller already holds (a grid worker); otherwise run()
    # takes the run's lock itself, so one process at a time trains a run whoever starts it.
    lock: Any = None
    # Continue a run from a checkpoint written by trpo-bench 0.1, which pickles objects and so
    # loads only by running what the file holds; the caller vouches for that one file.
    trust_checkpoint: bool = False


@dataclass
class RunResult:
    run_dir: Path
    state: str
    env_steps: int
    updates: int
    last: dict[str, Any]


def seed_everything(seed: int) -> tuple[np.random.Generator, torch.Generator]:
    """The one seeding entry point: Python, NumPy and torch global RNGs, plus the explicit
    generators the run draws from (actions: NumPy; value minibatches: torch). Envs are
    seeded by :class:`~trpo_bench.envs.VecEnv` from the same seed."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    ss = np.random.SeedSequence(seed)
    action_ss, torch_ss = ss.spawn(2)
    gen = torch.Generator()
    gen.manual_seed(int(torch_ss.generate_state(1, dtype=np.uint64)[0] >> np.uint64(1)))
    return np.random.default_rng(action_ss), gen


def set_threads(n: int) -> None:
    """torch's intra-op threads and NumPy's BLAS threads. The NumPy value fit multiplies
    256x64 by 64x64 matrices, above OpenBLAS's threading threshold: uncapped, it spins a
    thread per core and takes a second core for no gain."""
    from threadpoolctl import threadpool_limits

    torch.set_num_threads(n)
    threadpool_limits(n, user_api="blas")


def versions() -> dict[str, str]:
    import gymnasium

    out = {"python": platform.python_version(), "torch": torch.__version__, "gymnasium": gymnasium.__version__,
           "numpy": np.__version__,
           # The vector instructions torch's kernels dispatch to (e.g. AVX2, AVX512): runs are
           # bitwise reproducible on one machine, but float32 results differ in the last bits
           # between CPUs of different capability, and trajectories then part.
           "cpu": f"{platform.machine()} {torch.backends.cpu.get_cpu_capability()}"}
    from importlib.metadata import PackageNotFoundError, version

    for dist in ("mujoco", "wandb"):  # from package metadata: importing wandb costs ~1 s
        try:
            out[dist] = version(dist)
        except PackageNotFoundError:
            out[dist] = "not installed"
    from trpo_bench import __version__

    out["trpo_bench"] = __version__
    return out


def git_commit() -> str | None:
    try:
        res = subprocess.run(["git", "rev-parse", "HEAD"], cwd=Path(__file__).resolve().parent,
                             capture_output=True, text=True, timeout=5)
    except Exception:
        return None
    return res.stdout.strip() or None if res.returncode == 0 else None


# ------------------------------------------------------------------------ agent
class Agent:
    """Everything a checkpoint holds besides the environments."""

    def __init__(self, cfg: RunConfig, venv: VecEnv):
        self.cfg = cfg
        hidden = list(cfg.hidden_sizes)
        self.policy = make_policy(venv.observation_space, venv.action_space, hidden, cfg.activation, cfg.init_log_std)
        obs_dim = int(np.prod(venv.observation_space.shape))
        self.value = ValueNet(obs_dim, hidden, cfg.activation)
        self.vf_optim = torch.optim.Adam(self.value.parameters(), lr=cfg.vf_lr, foreach=True)
        self.pg_optim = torch.optim.Adam(self.policy.param_list(), lr=cfg.pg_lr) if cfg.algo == "pg" else None
        self.obs_rms = RunningMeanStd((obs_dim,)) if cfg.normalize_obs_resolved else IdentityNormalizer((obs_dim,))
        self.reward_scaler = RewardScaler(cfg.num_envs, cfg.gamma) if cfg.normalize_rewards_resolved else None
        self.actor = NumpyActor(self.policy)

    def state_dict(self) -> dict[str, Any]:
        return {
            "policy": self.policy.state_dict(), "value": self.value.state_dict(),
            "vf_optim": self.vf_optim.state_dict(),
            "pg_optim": None if self.pg_optim is None else self.pg_optim.state_dict(),
            "obs_rms": self.obs_rms.state_dict(),
            "reward_scaler": None if self.reward_scaler is None else self.reward_scaler.state_dict(),
        }

    def load_state_dict(self, d: dict[str, Any]) -> None:
        self.policy.load_state_dict(d["policy"])
        self.value.load_state_dict(d["value"])
        self.vf_optim.load_state_dict(d["vf_optim"])
        if self.pg_optim is not None:
            self.pg_optim.load_state_dict(d["pg_optim"])
        self.obs_rms.load_state_dict(d["obs_rms"])
        if self.reward_scaler is not None:
            self.reward_scaler.load_state_dict(d["reward_scaler"])
        self.actor.sync(self.policy)


def evaluate(agent: Agent, env_id: str, episodes: int, seed: int, deterministic: bool = True) -> float:
    """Mean return of the deterministic policy (mean action / most likely action), or of the
    policy sampling its actions."""
    returns, _ = evaluate_policy(agent, env_id, episodes, seed, deterministic)
    return float(np.mean(returns))


def _require_finite(*named: tuple[str, Any]) -> None:
    """Raise NonFinite naming the first quantity with a NaN or an infinity."""
    for name, values in named:
        arr = (values.numpy() if isinstance(values, torch.Tensor) else np.asarray(values)).reshape(-1)
        if arr.size and not np.isfinite(arr).all():
            kinds = sorted({"NaN" if np.isnan(v) else "infinity" for v in arr[~np.isfinite(arr)][:100]})
            raise NonFinite(f"non-finite {name} ({' and '.join(kinds)})")


# ------------------------------------------------------------------------- run
def run_dir_for(cfg: RunConfig, options: RunOptions) -> Path:
    grid = safe_name(options.grid or options.group or "train")
    if grid.startswith("."):
        raise ConfigError([f"--group {options.grid or options.group!r}: the run store's grid directory must be a "
                           "plain name inside --out (no leading '.')"])
    return Path(options.out) / grid / (options.run_id or make_run_id(cfg))


def lock_path(run_dir: Path) -> Path:
    """``<grid>/.locks/<run_id>.lock``: the lock a grid launch takes too, so a plain ``train``
    and a grid never own one run at once."""
    return run_dir.parent / ".locks" / f"{run_dir.name}.lock"


def run(cfg: RunConfig | None, options: RunOptions | None = None, resume_dir: str | Path | None = None,
        total_steps: int | None = None) -> RunResult:
    """Train one run to ``cfg.total_steps``, or continue the run in ``resume_dir`` from its
    checkpoint (to ``total_steps`` when given: a larger budget extends a finished run).

    Raises ConfigError (bad settings, a damaged run store, a run owned by another process)
    before anything is written; RunFailed when the run fails; Interrupted on a stop request.
    """
    options = options or RunOptions()
    resuming = resume_dir is not None
    if resuming:
        run_dir = Path(resume_dir)
        cfg = _stored_run(run_dir, options)
        if total_steps is not None:
            if total_steps < cfg.total_steps:
                raise ConfigError([f"--steps {total_steps}: below the run's budget of {cfg.total_steps} steps; "
                                   "a budget can only be raised"])
            cfg = cfg.replace(total_steps=total_steps)
    else:
        assert cfg is not None, "run() needs a config or a run to resume"
        run_dir = run_dir_for(cfg, options)
    prepare(cfg)
    own_lock = options.lock is None
    lock = options.lock or FileLock(lock_path(run_dir))
    if own_lock and lock.is_locked():
        raise _busy(run_dir, lock)
    if resuming:
        # Checked before the lock is taken, so a refused resume writes nothing, not even a lock file;
        # _Training reads the checkpoint again under the lock, in case another process moved it on.
        store = RunStore(run_dir)
        checkpoint = store.resumable_checkpoint(options.trust_checkpoint, rewrite=False)
        if finished(checkpoint, cfg) and (store.read_status() or {}).get("state") == "done":
            return RunResult(run_dir, "done", checkpoint["env_steps"], checkpoint["update"], {})
    if own_lock:
        try:
            taken = lock.acquire(note=" ".join(sys.argv[:3]))
        except OSError as err:
            raise ConfigError([f"--out {options.out}: cannot write the run store there ({err.strerror or err})"]) \
                from None
        if not taken:
            raise _busy(run_dir, lock)
    try:
        if not resuming and is_run_dir(run_dir):
            raise ConfigError([f"{run_dir} exists: continue it with --resume {run_dir}, or choose another --out"])
        return _Training(cfg, options, run_dir, resuming=resuming).run()
    finally:
        if own_lock:
            lock.release()


def _busy(run_dir: Path, lock: FileLock) -> ConfigError:
    return ConfigError([f"{run_dir} is being trained by {lock.holder()}; one process at a time trains a run "
                        "(wait for it to finish, or stop it, then resume)"])


def finished(checkpoint: dict[str, Any], cfg: RunConfig) -> bool:
    """The checkpoint is at the last update of ``cfg``'s budget."""
    return checkpoint["update"] >= math.ceil(cfg.total_steps / cfg.steps_per_update)


def _stored_run(run_dir: Path, options: RunOptions) -> RunConfig:
    """The settings a stored run computes with; fills ``options`` from its config.json."""
    from trpo_bench.config import build_config

    store = RunStore(run_dir)
    problems = store.check_records()
    if problems:
        raise ConfigError(problems)
    saved = store.read_config()
    cfg, problems = build_config(store.read_settings())
    if problems:
        raise ConfigError(problems, str(run_dir / "config.json"))
    options.grid = saved.get("grid") or options.grid
    options.run_id = saved["run_id"]
    options.axes = saved.get("axes") or options.axes
    options.group = options.group or saved.get("wandb_group")
    options.tags = options.tags or saved.get("wandb_tags", [])
    options.project = saved.get("wandb_project") or options.project
    return cfg


class _Training:
    def __init__(self, cfg: RunConfig, options: RunOptions, run_dir: Path, resuming: bool):
        self.cfg, self.options, self.run_dir = cfg, options, run_dir
        self.store = RunStore(run_dir)
        self.resuming = resuming
        self.run_id = options.run_id or run_dir.name
        self.stop_signal: int | None = None

    def _on_signal(self, signum, frame) -> None:
        if self.stop_signal is not None:  # a second Ctrl-C: stop now
            raise KeyboardInterrupt
        self.stop_signal = signum
        print(f"\n{signal.Signals(signum).name} received: stopping after this update (again to abort)",
              file=sys.stderr, flush=True)

    def run(self) -> RunResult:
        cfg = self.cfg
        set_threads(cfg.torch_threads)
        rng, gen = seed_everything(cfg.seed)
        checkpoint = self.store.resumable_checkpoint(self.options.trust_checkpoint) if self.resuming else None
        stored = self.store.read_config() if self.resuming else None
        if checkpoint is not None and finished(checkpoint, cfg):
            # A finished run and no larger budget: nothing to train, nothing to write.
            if (self.store.read_status() or {}).get("state") != "done":  # stopped after its last checkpoint
                self.store.write_status("done", checkpoint["env_steps"], cfg.total_steps, checkpoint["update"])
            return RunResult(self.run_dir, "done", checkpoint["env_steps"], checkpoint["update"], {})
        # A resumed run steps its envs on the backend that captured their state.
        venv = make_vec_env(cfg.env_id, cfg.num_envs, cfg.seed, cfg.env_backend,
                            captured=None if checkpoint is None else checkpoint["venv"], threads=cfg.env_threads)
        beside: value_fit.FitBeside | None = None
        try:  # until the loop's own handler takes over, a failure must not leave the env's sidecars
            venv.reset()
            agent = Agent(cfg, venv)
            env_steps, update, episodes, wall0 = 0, 0, 0, 0.0
            last_return = float("nan")

            if checkpoint is not None:
                agent.load_state_dict(checkpoint["agent"])
                venv.set_state(checkpoint["venv"])
                rng.bit_generator.state = checkpoint["rng_numpy"]
                gen.set_state(checkpoint["rng_torch_gen"])
                torch.set_rng_state(checkpoint["rng_torch_global"])
                random.setstate(checkpoint["rng_python"])
                np.random.set_state(checkpoint["rng_numpy_global"])
                env_steps, update, episodes = checkpoint["env_steps"], checkpoint["update"], checkpoint["episodes"]
                wall0, last_return = checkpoint["wall"], checkpoint["last_return"]
                self.store.truncate_metrics(update)
                if stored is not None and stored.get("total_steps") != cfg.total_steps:
                    self.store.write_config(self._extended(stored))
            else:
                self.run_dir.mkdir(parents=True, exist_ok=True)
                self.store.write_config(self._config_record())
                self.store.start_metrics()
            self.store.write_status("running", env_steps, cfg.total_steps, update, pid=os.getpid())
            steps_per_env = cfg.steps_per_update // cfg.num_envs
            vf_settings = ValueSettings.from_config(cfg)
            # With a second CPU, the value fit runs beside the policy update, which reads nothing
            # it changes (the same bits as in line). Forked before W&B starts its threads.
            beside = value_fit.FitBeside(agent.value, agent.vf_optim, vf_settings, steps_per_env * cfg.num_envs,
                                         venv.obs.shape[1]) if value_fit.fits_beside(vf_settings) else None

            record = self.store.read_config()
            logger = WandbLogger(self.run_dir, self.run_id, self._wandb_config(), mode=self.options.wandb,
                                 project=self.options.project, group=self.options.group or self.options.grid,
                                 tags=self.options.tags, resume=self.resuming,
                                 history=self.store.read_metrics() if self.resuming else None,
                                 run_key=record.get("wandb_id")
                                 or wandb_id(self.run_dir, self.run_id, record.get("grid")))
            progress = Progress(self.run_id, cfg.total_steps, interval=self.options.progress_interval) \
                if self.options.progress else None
            n_updates = math.ceil(cfg.total_steps / cfg.steps_per_update)
            low, high = action_bounds(venv.action_space)
            tr_settings = TrustRegionSettings.from_config(cfg)
            pg_settings = PGSettings.from_config(cfg)
            old_handlers = self._install_signals()
        except BaseException:
            venv.close()
            if beside is not None:
                beside.close()
            raise
        row: dict[str, Any] = {}
        start = time.perf_counter() - wall0

        def close() -> None:
            """The env's and the value fit's sidecars end with the run, whatever else fails."""
            venv.close()
            if beside is not None:
                beside.close()

        def save_checkpoint() -> None:
            self.store.save_checkpoint({
                "agent": agent.state_dict(), "venv": venv.get_state(),
                "rng_numpy": rng.bit_generator.state, "rng_torch_gen": gen.get_state(),
                "rng_torch_global": torch.get_rng_state(), "rng_python": random.getstate(),
                "rng_numpy_global": np.random.get_state(),
                "env_steps": env_steps, "update": update, "episodes": episodes,
                "wall": time.perf_counter() - start, "last_return": last_return,
            })

        def stop(state: str, error: str, exit_code: int = 1, **extra: Any) -> None:
            try:
                self.store.write_status(state, env_steps, cfg.total_steps, update, error=error, **extra)
                logger.finish(exit_code=exit_code)
                stop_signals.restore(old_handlers)
            finally:
                close()

        try:
            while update < n_updates:
                t0 = time.perf_counter()
                batch = collect(venv, agent.actor, agent.value, agent.obs_rms, steps_per_env, rng,
                                cfg.gamma, cfg.gae_lambda, low, high, agent.reward_scaler,
                                count_first=update == 0, legacy_norm=cfg.obs_norm_timing == "legacy")
                t1 = time.perf_counter()
                _require_finite(("observations", batch.obs), ("rewards", batch.rewards),
                                ("values", batch.values), ("advantages", batch.advantages))

                adv = torch.as_tensor(batch.advantages, dtype=torch.float32)
                if cfg.normalize_advantages and adv.numel() > 1:
                    adv = (adv - adv.mean()) / (adv.std() + 1e-8)
                obs = torch.as_tensor(batch.obs, dtype=torch.float32)
                acts = torch.as_tensor(batch.actions, dtype=torch.float32)
                returns = torch.as_tensor(batch.returns, dtype=torch.float32)
                if beside is not None:
                    beside.start(obs, returns, gen)
                pbatch = PolicyBatch(obs, acts, adv)
                if cfg.algo == "trpo":
                    pstats = algos.trpo.update(agent.policy, pbatch, tr_settings)
                elif cfg.algo == "npg":
                    pstats = algos.npg.update(agent.policy, pbatch, tr_settings)
                else:
                    pstats = algos.pg.update(agent.policy, agent.pg_optim, pbatch, pg_settings)
                _require_finite(("policy parameters", torch.cat([p.detach().reshape(-1)
                                                                 for p in agent.policy.param_list()])))
                agent.actor.sync(agent.policy)
                t2 = time.perf_counter()

                # time/value_fit: what the value fit took beyond the policy update, where it ran beside it.
                vstats = beside.finish() if beside is not None else value_fit.fit(
                    agent.value, agent.vf_optim, obs, returns, vf_settings, gen)
                vmetrics = vstats.metrics()
                _require_finite(("value loss", np.array([vmetrics.get("value/loss", 0.0)])),
                                ("value-network parameters", torch.cat([p.detach().reshape(-1)
                                                                        for p in agent.value.parameters()])))
                t3 = time.perf_counter()

                env_steps += cfg.steps_per_update
                update += 1
                episodes += len(batch.episode_returns)
                if batch.episode_returns:
                    last_return = float(np.mean(batch.episode_returns))
                row = self._row(env_steps, update, time.perf_counter() - start, cfg.steps_per_update / (t3 - t0),
                                (t0, t1, t2, t3), batch, pstats.metrics(), vmetrics)
                if cfg.eval_every and update % cfg.eval_every == 0:
                    row["eval/return_mean"] = evaluate(agent, cfg.env_id, cfg.eval_episodes,
                                                       cfg.seed + 1_000_003 * update, cfg.eval_deterministic)
                self.store.append_metrics(row)
                logger.log(row)
                if progress:
                    progress.update(env_steps, run_detail(episodes, last_return))

                if update % cfg.checkpoint_every == 0 or update == n_updates:
                    save_checkpoint()
                stop_requested = self.options.stop is not None and self.options.stop.is_set()
                if (self.stop_signal is not None or stop_requested) and update < n_updates:
                    if update % cfg.checkpoint_every != 0:
                        save_checkpoint()
                    raise Interrupted()
                self.store.write_status("running", env_steps, cfg.total_steps, update, pid=os.getpid())
        except Interrupted:
            stop("interrupted", f"stopped by {signal.Signals(self.stop_signal).name}"
                 if self.stop_signal is not None else "stopped by request")
            print(f"stopped at {env_steps:,} steps; resume with:\n  trpo-bench train --resume {self.run_dir}",
                  file=sys.stderr, flush=True)
            raise
        except NonFinite as err:
            # The bad update is neither logged nor checkpointed: the last checkpoint stays the last good state.
            reason = f"{err} in update {update + 1} (after {env_steps:,} steps); the last good checkpoint is kept"
            stop("failed", reason, retryable=False)
            raise RunFailed(reason, retryable=False) from None
        except KeyboardInterrupt:
            stop("interrupted", "aborted (second interrupt); resume from the last checkpoint")
            raise
        except Exception as err:
            text = "".join(traceback.format_exception_only(type(err), err)).strip()
            stop("failed", text, retryable=True)
            raise RunFailed(text, retryable=True) from err
        if progress:
            progress.update(env_steps, run_detail(episodes, last_return), final=True)
        try:
            self.store.write_status("done", env_steps, cfg.total_steps, update)
            logger.finish()
            stop_signals.restore(old_handlers)
        finally:
            close()
        return RunResult(self.run_dir, "done", env_steps, update, row)

    def _extended(self, stored: dict[str, Any]) -> dict[str, Any]:
        """config.json with the raised budget, and a record of the extension."""
        history = list(stored.get("extended", []))
        history.append({"from": stored.get("total_steps"), "to": self.cfg.total_steps,
                        "at": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
                       # a record copied from another grid's run (grid.shared) up to here, trained on from here
                       | ({"shared_from": stored["shared_from"]} if "shared_from" in stored else {}))
        record = {k: v for k, v in stored.items() if k != "shared_from"}
        return {**record, "total_steps": self.cfg.total_steps, "config": self.cfg.to_dict(), "extended": history}

    # --------------------------------------------------------------- helpers
    def _row(self, env_steps, update, wall, sps, times, batch, pmetrics, vmetrics) -> dict[str, Any]:
        t0, t1, t2, t3 = times
        rets = np.asarray(batch.episode_returns, dtype=np.float64)
        row: dict[str, Any] = {c: float("nan") for c in METRIC_COLUMNS}
        row.update({
            "env_steps": env_steps, "update": update, "time/wall": wall, "time/sps": sps,
            "time/collect": t1 - t0, "time/policy_update": t2 - t1, "time/value_fit": t3 - t2,
            "rollout/episodes": len(rets),
            "rollout/ep_return_mean": float(rets.mean()) if len(rets) else float("nan"),
            "rollout/ep_return_std": float(rets.std()) if len(rets) else float("nan"),
            "rollout/ep_len_mean": float(np.mean(batch.episode_lengths)) if len(rets) else float("nan"),
        })
        row.update(pmetrics)
        row.update(vmetrics)
        return row

    def _config_record(self) -> dict[str, Any]:
        cfg = self.cfg
        axes = dict(self.options.axes or {"algo": cfg.algo, "env_id": cfg.env_id})
        return {
            "run_id": self.run_id, "grid": self.options.grid or self.run_dir.parent.name,
            "algo": cfg.algo, "env_id": cfg.env_id, "seed": cfg.seed, "total_steps": cfg.total_steps,
            "axes": axes, "config": cfg.to_dict(), "versions": versions(), "git_commit": git_commit(),
            "wandb_project": self.options.project, "wandb_group": self.options.group or self.options.grid,
            "wandb_tags": list(self.options.tags),
            "wandb_id": wandb_id(self.run_dir, self.run_id, self.options.grid or self.run_dir.parent.name),
            "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        }

    def _wandb_config(self) -> dict[str, Any]:
        rec = {**self.cfg.to_dict(), "run_id": self.run_id, "grid": self.options.grid}
        rec.update({f"axis/{k}": v for k, v in (self.options.axes or {}).items()})
        return rec

    def _install_signals(self):
        return stop_signals.install(self._on_signal) if self.options.handle_signals else None

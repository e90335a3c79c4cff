"""Statistics over score arrays, as defined by rliable.

Agarwal et al. (2021), "Deep Reinforcement Learning at the Edge of the
Statistical Precipice" (NeurIPS), and its library google-research/rliable.
Scores are arranged ``(..., runs, tasks)``: the last two axes are runs and
tasks, leading axes are batched (bootstrap replicates, curve points). NaN marks
a missing run, so tasks may hold different numbers of runs. Every random draw
goes through an explicit ``numpy.random.Generator`` (or a seed for one).
"""

from __future__ import annotations

import math
import warnings
import zlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

# rliable's get_interval_estimates uses 50,000 replicates and its performance
# profiles 2,000; 5,000 keeps the Monte-Carlo error of a percentile endpoint
# well under the CI width for a handful of seeds, at a fraction of the cost.
DEFAULT_REPS = 5000
DEFAULT_CONFIDENCE = 0.95
# Final performance = mean over the last 10% of updates of a run.
DEFAULT_FINAL_FRACTION = 0.1

Statistic = Callable[[np.ndarray], np.ndarray]


def values_rng(seed: int, *groups: np.ndarray) -> np.random.Generator:
    """A generator for a bootstrap over runs, named by the runs' values (each group's, in order).

    The same runs give the same CI wherever they appear (the default runs shared by several
    ablations, identical runs of two methods), whatever the group is called and in whatever
    order its runs come; use it with values sorted (``estimate_over_runs`` sorts them).
    """
    key = [seed]
    for values in groups:
        v = np.sort(np.asarray(values, dtype=np.float64).reshape(-1))
        key += [zlib.crc32(v.tobytes()), v.size]
    return np.random.default_rng(key)


def _quiet_nan(fn, *args, **kwargs):
    """Call a NaN-aware NumPy reduction without its all-NaN-slice warnings."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return fn(*args, **kwargs)


# ---------------------------------------------------------------------------
# Per-run summaries
# ---------------------------------------------------------------------------


def final_performance(values: np.ndarray, fraction: float = DEFAULT_FINAL_FRACTION) -> float:
    """Mean of the last ``ceil(fraction * n)`` entries of ``values`` (shape (n,)).

    NaN entries (updates in which no episode finished) are ignored; the result is
    NaN when the window holds no finite value or ``values`` is empty.
    """
    if not 0.0 < fraction <= 1.0:
        raise ValueError(f"fraction must be in (0, 1], got {fraction}")
    v = np.asarray(values, dtype=float).ravel()
    if v.size == 0:
        return math.nan
    k = max(1, math.ceil(fraction * v.size - 1e-9))
    tail = v[-k:]
    return float(np.mean(tail[np.isfinite(tail)])) if np.isfinite(tail).any() else math.nan


def step_grid(steps: Sequence[np.ndarray], n_points: int = 100) -> np.ndarray:
    """Evenly spaced grid from the earliest first step to the latest last step.

    steps: one array of x values per run. Returns shape (n_points,), or (0,) if no
    run has a finite x value.
    """
    firsts, lasts = [], []
    for s in steps:
        s = np.asarray(s, dtype=float)
        s = s[np.isfinite(s)]
        if s.size:
            firsts.append(s.min())
            lasts.append(s.max())
    if not firsts:
        return np.empty(0)
    lo, hi = min(firsts), max(lasts)
    if hi <= lo:
        return np.array([lo])
    return np.linspace(lo, hi, n_points)


def align_curves(
    steps: Sequence[np.ndarray], values: Sequence[np.ndarray], grid: np.ndarray
) -> np.ndarray:
    """Linearly interpolate each run's curve onto ``grid``.

    steps, values: one pair of equal-length arrays per run. Outside a run's
    logged range ``[first step, last step]`` the result is NaN: no extrapolation.
    Inside it, NaN values (updates in which no episode finished) are bridged by
    interpolation between finite neighbours, or the nearest finite value at the
    range's ends. Returns shape (runs, len(grid)).
    """
    grid = np.asarray(grid, dtype=float)
    out = np.full((len(steps), grid.size), np.nan)
    for i, (s, v) in enumerate(zip(steps, values, strict=True)):
        s = np.asarray(s, dtype=float)
        v = np.asarray(v, dtype=float)
        logged = np.isfinite(s)
        ok = logged & np.isfinite(v)
        if not ok.any():
            continue
        order = np.argsort(s[ok], kind="stable")
        sx, vx = s[ok][order], v[ok][order]
        inside = (grid >= s[logged].min()) & (grid <= s[logged].max())
        out[i, inside] = np.interp(grid[inside], sx, vx)
    return out


# ---------------------------------------------------------------------------
# Aggregate metrics over (..., runs, tasks); rliable metrics.py, paper Sec. 4
# ---------------------------------------------------------------------------


def _flat_runs_tasks(scores: np.ndarray) -> np.ndarray:
    s = np.asarray(scores, dtype=float)
    if s.ndim < 2:
        raise ValueError(f"scores must have shape (..., runs, tasks), got {s.shape}")
    return s.reshape(*s.shape[:-2], -1)


def trimmed_mean(x: np.ndarray, proportion: float = 0.25) -> np.ndarray:
    """scipy.stats.trim_mean along the last axis, ignoring NaN: shape (...,).

    Cuts ``int(proportion * n)`` values from each end, n the number of finite
    values in that slice (the same cut rule as SciPy).
    """
    x = np.sort(np.asarray(x, dtype=float), axis=-1)  # NaN sorts last
    n = np.isfinite(x).sum(axis=-1)
    cut = np.floor(proportion * n + 1e-9).astype(int)
    lo, hi = cut, n - cut
    k = np.arange(x.shape[-1])
    keep = (k >= lo[..., None]) & (k < hi[..., None])
    total = np.where(keep, x, 0.0).sum(axis=-1)
    count = keep.sum(axis=-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(count > 0, total / np.maximum(count, 1), np.nan)


def iqm(scores: np.ndarray) -> np.ndarray:
    """Interquartile mean of all runs x tasks: 25% trimmed mean (paper Sec. 4.3).

    scores: (..., runs, tasks). Equals scipy.stats.trim_mean(scores, 0.25,
    axis=None) when there is no NaN.
    """
    return trimmed_mean(_flat_runs_tasks(scores), 0.25)


def mean(scores: np.ndarray) -> np.ndarray:
    """Mean over tasks of the per-task mean score (rliable aggregate_mean)."""
    s = np.asarray(scores, dtype=float)
    return _quiet_nan(np.nanmean, _quiet_nan(np.nanmean, s, axis=-2), axis=-1)


def median(scores: np.ndarray) -> np.ndarray:
    """Median over tasks of the per-task mean score (rliable aggregate_median)."""
    s = np.asarray(scores, dtype=float)
    return _quiet_nan(np.nanmedian, _quiet_nan(np.nanmean, s, axis=-2), axis=-1)


def optimality_gap(scores: np.ndarray, gamma: float = 1.0) -> np.ndarray:
    """``gamma - mean(min(score, gamma))`` over all runs x tasks (paper Sec. 4.3).

    Lower is better; scores above ``gamma`` earn no credit.
    """
    flat = _flat_runs_tasks(scores)
    return gamma - _quiet_nan(np.nanmean, np.minimum(flat, gamma), axis=-1)


AGGREGATES: Mapping[str, Statistic] = {
    "IQM": iqm,
    "Median": median,
    "Mean": mean,
    "Optimality gap": optimality_gap,
}


def score_distribution(scores: np.ndarray, taus: np.ndarray) -> np.ndarray:
    """Run-score distribution: fraction of runs x tasks with score > tau.

    scores: (..., runs, tasks); taus: (k,). Returns (..., k). This is rliable's
    ``score_distributions`` (paper Sec. 4.2, performance profiles).
    """
    flat = _flat_runs_tasks(scores)
    taus = np.asarray(taus, dtype=float)
    valid = np.isfinite(flat)
    above = (flat[..., None] > taus) & valid[..., None]
    n = valid.sum(axis=-1)[..., None]
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(n > 0, above.sum(axis=-2) / np.maximum(n, 1), np.nan)


def probability_of_improvement(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """P(X > Y) averaged over tasks (paper Sec. 4.3; rliable metrics.py).

    x: (..., runs_x, tasks), y: (..., runs_y, tasks). Per task this is the
    Mann-Whitney U statistic divided by runs_x * runs_y, ties counting 1/2, so
    identical samples give 0.5. NaN runs are left out of the pairs.
    """
    x = np.asarray(x, dtype=float)
    y = np.asarray(y, dtype=float)
    xi = x[..., :, None, :]
    yj = y[..., None, :, :]
    valid = np.isfinite(xi) & np.isfinite(yj)
    wins = np.where(valid, (xi > yj) + 0.5 * (xi == yj), 0.0).sum(axis=(-3, -2))
    pairs = valid.sum(axis=(-3, -2))
    with np.errstate(invalid="ignore", divide="ignore"):
        per_task = np.where(pairs > 0, wins / np.maximum(pairs, 1), np.nan)
    return _quiet_nan(np.nanmean, per_task, axis=-1)


# ---------------------------------------------------------------------------
# Stratified bootstrap (rliable library.StratifiedBootstrap, paper Sec. 4.1)
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Interval:
    """Point estimate with a percentile bootstrap confidence interval."""

    point: np.ndarray
    low: np.ndarray
    high: np.ndarray

    def __iter__(self):
        return iter((self.point, self.low, self.high))


def _resample(scores: np.ndarray, reps: int, rng: np.random.Generator) -> np.ndarray:
    """Resample runs with replacement within each task: (reps, ..., runs, tasks).

    A run counts for a task if any of its entries (over leading axes) is finite;
    task t with n_t such runs gets n_t draws, the remaining slots are NaN. One
    draw is shared by all leading axes, so a resampled curve stays one run.
    """
    runs, tasks = scores.shape[-2:]
    out = np.full((reps, *scores.shape), np.nan)
    lead = tuple(range(scores.ndim - 2))
    valid = np.isfinite(scores).any(axis=lead) if lead else np.isfinite(scores)
    for t in range(tasks):
        members = np.flatnonzero(valid[:, t])
        if members.size == 0:
            continue
        draws = members[rng.integers(0, members.size, size=(reps, members.size))]
        picked = scores[..., :, t][..., draws]  # (..., reps, n_t)
        out[..., : members.size, t] = np.moveaxis(picked, -2, 0)
    return out


def _percentile_interval(
    point: np.ndarray, boot: np.ndarray, confidence: float
) -> Interval:
    alpha = 100.0 * (1.0 - confidence) / 2.0
    low, high = _quiet_nan(np.nanpercentile, boot, [alpha, 100.0 - alpha], axis=0)
    return Interval(np.asarray(point), np.asarray(low), np.asarray(high))


def stratified_bootstrap(
    scores: np.ndarray,
    statistic: Statistic,
    *,
    reps: int = DEFAULT_REPS,
    confidence: float = DEFAULT_CONFIDENCE,
    seed: int | np.random.Generator = 0,
) -> Interval:
    """Percentile CI of ``statistic`` by resampling runs within each task.

    scores: (..., runs, tasks); statistic maps (B, ..., runs, tasks) to (B, ...)
    or (B, ..., k). rliable's default method is the percentile interval.
    """
    s = np.asarray(scores, dtype=float)
    rng = np.random.default_rng(seed)
    point = statistic(s[None])[0]
    boot = statistic(_resample(s, reps, rng))
    return _percentile_interval(point, boot, confidence)


def stratified_bootstrap_pair(
    x: np.ndarray,
    y: np.ndarray,
    statistic: Callable[[np.ndarray, np.ndarray], np.ndarray] = probability_of_improvement,
    *,
    reps: int = DEFAULT_REPS,
    confidence: float = DEFAULT_CONFIDENCE,
    seed: int | np.random.Generator = 0,
) -> Interval:
    """CI of a two-sample statistic, resampling x and y independently per task.

    rliable's StratifiedIndependentBootstrap, used for probability of improvement.
    x: (runs_x, tasks), y: (runs_y, tasks) over the same tasks.
    """
    x = np.asarray(x, dtype=float)
    y = np.asarray(y, dtype=float)
    if x.shape[-1] != y.shape[-1]:
        raise ValueError(f"x and y must share tasks, got {x.shape} and {y.shape}")
    rng = np.random.default_rng(seed)
    point = statistic(x[None], y[None])[0]
    boot = statistic(_resample(x, reps, rng), _resample(y, reps, rng))
    return _percentile_interval(point, boot, confidence)


def performance_profile(
    scores: np.ndarray,
    taus: np.ndarray,
    *,
    reps: int = DEFAULT_REPS,
    confidence: float = DEFAULT_CONFIDENCE,
    seed: int | np.random.Generator = 0,
) -> Interval:
    """Run-score distribution at each tau with stratified-bootstrap CIs: (k,) each."""
    taus = np.asarray(taus, dtype=float)
    return stratified_bootstrap(
        scores,
        lambda s: score_distribution(s, taus),
        reps=reps,
        confidence=confidence,
        seed=seed,
    )


def curve_interval(
    curves: np.ndarray,
    statistic: str = "mean",
    *,
    reps: int = DEFAULT_REPS,
    confidence: float = DEFAULT_CONFIDENCE,
    seed: int | np.random.Generator = 0,
) -> Interval:
    """Pointwise statistic over runs of aligned curves, with bootstrap CIs.

    curves: (runs, points) for one task, NaN where a run has no data. Runs are
    resampled as whole curves (one stratum). statistic: "mean" or "iqm".
    Returns arrays of shape (points,).
    """
    fn = {"mean": mean, "iqm": iqm}[statistic]
    c = np.asarray(curves, dtype=float)
    return stratified_bootstrap(
        c.T[:, :, None], fn, reps=reps, confidence=confidence, seed=seed
    )


# Below this many runs a percentile bootstrap CI is about the runs' min-max range (Agarwal et
# al. 2021, Fig. 4, use 3 runs to show how wide honest intervals are); it is not drawn as one.
MIN_RUNS_FOR_CI = 5
CI_KIND, RANGE_KIND = "95% bootstrap CI", "range of runs"


def estimate_over_runs(values: np.ndarray, statistic: str = "mean", *, reps: int = DEFAULT_REPS,
                       confidence: float = DEFAULT_CONFIDENCE,
                       seed: int | np.random.Generator | None = 0) -> tuple[float, float, float, str]:
    """(estimate, low, high, kind) of ``statistic`` ("mean" or "iqm") over runs (R,), NaN ignored.
    ``seed=None``: a generator named by the values (:func:`values_rng` with seed 0).

    With MIN_RUNS_FOR_CI runs or more: a percentile bootstrap CI (kind CI_KIND); with 2 to
    MIN_RUNS_FOR_CI - 1: the range of the runs (RANGE_KIND); one run: no interval (NaN, "").
    """
    fn = {"mean": mean, "iqm": iqm}[statistic]
    v = np.asarray(values, dtype=float)
    v = np.sort(v[np.isfinite(v)])  # the CI does not depend on the order the runs come in
    if v.size == 0:
        return math.nan, math.nan, math.nan, ""
    point = float(fn(v[None, :, None])[0])
    if v.size == 1:
        return point, math.nan, math.nan, ""
    if v.size < MIN_RUNS_FOR_CI:
        return point, float(v.min()), float(v.max()), RANGE_KIND
    iv = stratified_bootstrap(v[:, None], fn, reps=reps, confidence=confidence,
                              seed=values_rng(0, v) if seed is None else seed)
    return float(iv.point), float(iv.low), float(iv.high), CI_KIND


# ---------------------------------------------------------------------------
# Score normalization
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class ReferenceScore:
    """Returns that map to normalized scores 0 (``random``) and 1 (``reference``)."""

    random: float
    reference: float
    source: str


# random: mean undiscounted return of uniformly random actions, 100 episodes
#   (env.reset(seed=i), i = 0..99; action_space.seed(0)), measured with
#   gymnasium 1.4.0 and its default time limits.
# reference: the env's registered ``reward_threshold`` in gymnasium 1.4.0
#   (gymnasium/envs/__init__.py) unless noted otherwise.
# Humanoid-v5 and HumanoidStandup-v5 register no threshold; pass overrides.
_GYM = "gymnasium reward_threshold"
REFERENCE_SCORES: Mapping[str, ReferenceScore] = {
    "Ant-v5": ReferenceScore(-48.0, 6000.0, _GYM),
    "HalfCheetah-v5": ReferenceScore(-282.5, 4800.0, _GYM),
    "Hopper-v5": ReferenceScore(16.7, 3800.0, _GYM),
    "InvertedDoublePendulum-v5": ReferenceScore(49.1, 9100.0, _GYM),
    "InvertedPendulum-v5": ReferenceScore(5.2, 950.0, _GYM),
    "Pusher-v5": ReferenceScore(-149.2, 0.0, _GYM),
    "Reacher-v5": ReferenceScore(-43.3, -3.75, _GYM),
    "Swimmer-v5": ReferenceScore(0.8, 360.0, _GYM),
    # No registered threshold: D4RL's expert reference for walker2d
    # (Fu et al. 2020, d4rl/infos.py REF_MAX_SCORE, a SAC policy on v2).
    "Walker2d-v5": ReferenceScore(1.8, 4592.3, "D4RL REF_MAX_SCORE walker2d"),
    "CartPole-v1": ReferenceScore(23.7, 475.0, _GYM),
    # No registered threshold: every reward is <= 0, so 0 is the best return.
    "Pendulum-v1": ReferenceScore(-1207.6, 0.0, "upper bound of the return"),
    "Acrobot-v1": ReferenceScore(-497.1, -100.0, _GYM),
    "MountainCar-v0": ReferenceScore(-200.0, -110.0, _GYM),
    "MountainCarContinuous-v0": ReferenceScore(-33.3, 90.0, _GYM),
}


def reference_scores(
    overrides: Mapping[str, ReferenceScore | tuple[float, float]] | None = None,
) -> dict[str, ReferenceScore]:
    """The shipped table with ``overrides`` (env_id -> (random, reference)) applied."""
    table = dict(REFERENCE_SCORES)
    for env_id, ref in (overrides or {}).items():
        if not isinstance(ref, ReferenceScore):
            ref = ReferenceScore(float(ref[0]), float(ref[1]), "override")
        table[env_id] = ref
    return table


def normalize(scores: np.ndarray, random: float, reference: float) -> np.ndarray:
    """``(score - random) / (reference - random)``: 0 = random policy, 1 = reference."""
    if reference == random:
        raise ValueError("reference and random scores must differ")
    return (np.asarray(scores, dtype=float) - random) / (reference - random)


def normalize_tasks(
    scores: np.ndarray,
    env_ids: Sequence[str],
    overrides: Mapping[str, ReferenceScore | tuple[float, float]] | None = None,
) -> np.ndarray:
    """Normalize each task column of ``scores`` (runs, tasks) by its reference.

    Raises KeyError naming every env_id without a reference score.
    """
    table = reference_scores(overrides)
    missing = [e for e in env_ids if e not in table]
    if missing:
        raise KeyError(f"no reference score for {missing}; pass overrides")
    s = np.asarray(scores, dtype=float)
    cols = [normalize(s[:, j], table[e].random, table[e].reference) for j, e in enumerate(env_ids)]
    return np.stack(cols, axis=-1) if cols else s.copy()

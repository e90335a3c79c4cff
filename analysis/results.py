"""Compute once, draw from the result: one grid's runs -> a tidy table of every statistic.

``compute(store)`` makes every estimate the figures, tables and report show, once, as rliable
keeps ``get_interval_estimates`` apart from its plotting functions. ``Results.table`` has one row
per (group, task, measure, x):

    group       the method (``summary.method_settings``), or "X" of a pair with ``versus`` "Y"
    task        env id, or ALL_TASKS for statistics pooled over tasks
    measure     final_return, final_return_difference (IQM of "X" minus "Y"'s, per task), eval_return,
                return_curve, return_curve_walltime, normalized/<IQM|...>,
                profile, probability_of_improvement, step_fraction, backtrack_share, kl, step_size,
                cg_residual, time/<component>
    statistic   mean, iqm, median, ...
    x           env steps, seconds, τ or a setting's value (NaN for a single number)
    estimate, ci_low, ci_high, interval
                the interval is "95% bootstrap CI" with MIN_RUNS_FOR_CI runs or more; below that
                "range of runs" (a bootstrap over 3 runs is about their range and would be
                passed off as a CI); "5th-95th percentile" of updates for distributions; "" when
                none applies (one run, a mean time)
    n, n_runs   runs used, runs in the group

Per-run data (final scores, metric rows with their method) travel with the table, so figures
can draw individual runs. No figure computes an estimate over runs itself; what figures still
count where they draw is per-run or per-update data: a run's mean step fraction or share of
backtracking updates (drawn as dots under MIN_RUNS_FOR_CI runs) and the histogram of
backtracks per update.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from analysis import stats, summary
from analysis.load import RunStore, setting_value
from analysis.summary import RETURN
from trpo_bench.rundir import atomic_write_text

MIN_RUNS_FOR_CI = stats.MIN_RUNS_FOR_CI
ALL_TASKS = "all tasks"
CI, RANGE = stats.CI_KIND, stats.RANGE_KIND
PERCENTILES = "5th-95th percentile"
COLUMNS = ["grid", "group", "versus", "task", "measure", "statistic", "x", "estimate", "ci_low", "ci_high",
           "interval", "n", "n_runs"]
TIME_PARTS = ("time/collect", "time/policy_update", "time/value_fit")


@dataclass
class Results:
    """One grid's statistics (``table``) and the per-run data figures draw runs from."""

    grid: str
    table: pd.DataFrame
    store: RunStore
    settings: list[str]                 # the settings that tell methods apart
    methods: list[str]                  # in plotting order
    final: pd.DataFrame                 # one row per run: settings, "method", "final"
    metrics: pd.DataFrame               # one row per update, with "method"
    identical: dict[str, list[list[str]]] = field(default_factory=dict)  # task -> methods with equal runs
    tasks_normalized: list[str] = field(default_factory=list)
    tasks_left_out: list[str] = field(default_factory=list)
    reps: int = stats.DEFAULT_REPS
    seed: int = 0

    def rows(self, measure: str, **match: Any) -> pd.DataFrame:
        """Rows of one measure, filtered by column values (``task=..., group=...``)."""
        t = self.table[self.table["measure"] == measure]
        for k, v in match.items():
            t = t[t[k] == v]
        return t

    def runs_per_group(self) -> int:
        """Fewest runs with a final score in any (method, task), 0 without any."""
        n = self.rows("final_return", statistic="mean")["n"]
        return int(n.min()) if len(n) else 0

    def identical_everywhere(self) -> list[list[str]]:
        """Sets of methods whose runs are identical on every task they share."""
        sets = [tuple(s) for sets in self.identical.values() for s in sets]
        tasks_of = {m: set(self.final.loc[self.final["method"] == m, "env_id"]) for s in sets for m in s}
        out = []
        for s in dict.fromkeys(sets):
            shared = set.intersection(*(tasks_of[m] for m in s))
            if all(any(set(s) <= set(g) for g in self.identical.get(t, [])) for t in shared):
                out.append(list(s))
        return out

    def identical_note(self) -> str:
        """A caption line naming the series that coincide (everywhere, or on some tasks), or ""."""
        sets = self.identical_everywhere()
        why = "identical runs, update for update (their line search never backtracked), so one series lies " \
              "exactly under the other."
        if sets:
            return "; ".join(" and ".join(s) for s in sets) + ": " + why
        parts = [f"{' and '.join(s)} on {task}" for task, found in self.identical.items() for s in found]
        return "; ".join(parts) + ": " + why if parts else ""


# ---------------------------------------------------------------------------
# Intervals
# ---------------------------------------------------------------------------


def _row(group, task, measure, statistic, estimate, low=math.nan, high=math.nan, interval="", n=0, n_runs=0,
         x=math.nan, versus="") -> dict[str, Any]:
    return {"group": group, "versus": versus, "task": task, "measure": measure, "statistic": statistic, "x": x,
            "estimate": estimate, "ci_low": low, "ci_high": high,
            "interval": interval if n > 1 or interval == PERCENTILES else "",
            "n": n, "n_runs": n_runs}


def interval(values: np.ndarray, statistic: str, reps: int,
             rng: np.random.Generator) -> tuple[float, float, float, str]:
    """``stats.estimate_over_runs``: a CI from MIN_RUNS_FOR_CI runs, the runs' range below."""
    return stats.estimate_over_runs(values, statistic, reps=reps, seed=rng)


# ---------------------------------------------------------------------------
# Measures
# ---------------------------------------------------------------------------


def _final_rows(final: pd.DataFrame, measure: str, reps: int, seed: int) -> list[dict]:
    rows = []
    for statistic in ("mean", "iqm"):
        t = summary.final_table(final, statistic=statistic, reps=reps, seed=seed)
        rows += [_row(r["method"], r["env_id"], measure, statistic, r["estimate"], r["ci_low"], r["ci_high"],
                      r["interval"], r["n"], r["n_runs"]) for r in t.to_dict("records")]
    return rows


def _curve_rows(metrics: pd.DataFrame, x: str, measure: str, reps: int, seed: int, n_points: int = 100) -> list[dict]:
    rows = []
    if metrics.empty or x not in metrics or RETURN not in metrics or not metrics[x].notna().any():
        return rows
    for task, task_rows in metrics.groupby("env_id", sort=False):
        task_rows = task_rows.sort_values(["run_id", x], kind="stable")
        runs = dict(tuple(task_rows.groupby("run_id", sort=True)))
        grid = stats.step_grid([r[x].to_numpy(float) for r in runs.values()], n_points)
        if grid.size == 0:
            continue
        for method, members in task_rows.groupby("method", sort=False):
            curves = stats.align_curves([runs[r][x].to_numpy(float) for r in members["run_id"].unique()],
                                        [runs[r][RETURN].to_numpy(float) for r in members["run_id"].unique()], grid)
            has = np.isfinite(curves).any(axis=1)
            n_runs = int(has.sum())
            if n_runs == 0:
                continue
            if n_runs >= MIN_RUNS_FOR_CI:
                point, low, high = stats.curve_interval(curves, "mean", reps=reps,  # the same runs, the same band
                                                        seed=stats.values_rng(seed, curves[has]))
                kind = CI
            else:
                with warnings.catch_warnings():  # points no run reaches are NaN, as they should be
                    warnings.simplefilter("ignore", RuntimeWarning)
                    point, low, high = (np.nanmean(curves, axis=0), np.nanmin(curves, axis=0),
                                        np.nanmax(curves, axis=0))
                kind = RANGE
            n = np.isfinite(curves).sum(axis=0)
            rows += [_row(method, task, measure, "mean", float(point[i]), float(low[i]), float(high[i]), kind,
                          int(n[i]), n_runs, x=float(grid[i])) for i in range(grid.size)]
    return rows


def _aggregate_rows(res: Results, overrides, reps: int, seed: int) -> list[dict]:
    scores, tasks, left_out = summary.normalized_scores(res.final, res.methods, overrides)
    res.tasks_normalized, res.tasks_left_out = tasks, left_out
    if not scores or not tasks:
        return []
    runs = {m: int(np.isfinite(s).any(axis=1).sum()) for m, s in scores.items()}
    few = min(np.isfinite(s).sum(axis=0).min() for s in scores.values()) < MIN_RUNS_FOR_CI
    rows = []
    for name, fn in stats.AGGREGATES.items():
        for m, s in scores.items():
            if few:
                point, low, high, kind = float(fn(s[None])[0]), math.nan, math.nan, ""
            else:
                iv = stats.stratified_bootstrap(s, fn, reps=reps, seed=stats.values_rng(seed, s))
                point, low, high, kind = float(iv.point), float(iv.low), float(iv.high), CI
            rows.append(_row(m, ALL_TASKS, f"normalized/{name}", name, point, low, high, kind, runs[m], runs[m]))
    allv = np.concatenate([s[np.isfinite(s)] for s in scores.values()])
    taus = np.linspace(min(0.0, allv.min()), max(1.0, allv.max()), 81)
    for m, s in scores.items():
        if few:
            point, low, high, kind = stats.score_distribution(s[None], taus)[0], [math.nan] * taus.size, \
                [math.nan] * taus.size, ""
        else:
            point, low, high = stats.performance_profile(s, taus, reps=reps, seed=stats.values_rng(seed, s))
            kind = CI
        rows += [_row(m, ALL_TASKS, "profile", "fraction above τ", float(point[i]), float(low[i]), float(high[i]),
                      kind, runs[m], runs[m], x=float(t)) for i, t in enumerate(taus)]
    attrs = {r["method"]: (r["algo"], *(r[a] for a in res.settings))
             for r in res.final.drop_duplicates("method").to_dict("records")}
    for a, b in summary.poi_pairs(list(scores), attrs) if len(scores) >= 2 else []:
        if few:
            point, low, high, kind = float(stats.probability_of_improvement(scores[a][None], scores[b][None])[0]), \
                math.nan, math.nan, ""
        else:
            iv = stats.stratified_bootstrap_pair(scores[a], scores[b], reps=reps,
                                                  seed=stats.values_rng(seed, scores[a], scores[b]))
            point, low, high, kind = float(iv.point), float(iv.low), float(iv.high), CI
        rows.append(_row(a, ALL_TASKS, "probability_of_improvement", "P(X > Y)", point, low, high, kind,
                         min(runs[a], runs[b]), min(runs[a], runs[b]), versus=b))
    return rows


def comparison_pairs(res: Results) -> list[tuple[str, str]]:
    """(method, reference) pairs a difference is reported for: each method against its
    algorithm at the default values of the grid's settings, and an NPG or PG method against
    TRPO with the same settings (the δ ablation's and the benchmark's question). A grid that
    varies something other than RunConfig's settings (its runs' source) gets no pair."""
    return _references(res)[0]


def algorithms_without_reference(res: Results) -> list[str]:
    """Algorithms whose methods vary a setting but none of which runs at its default values:
    their methods get no difference from a default (``comparison_pairs``), which a table says."""
    return _references(res)[1]


def _references(res: Results) -> tuple[list[tuple[str, str]], list[str]]:
    from trpo_bench.config import DEFAULTS

    defaults = DEFAULTS.to_dict()
    axes = [a for a in res.settings if a not in ("algo", "env_id")]
    if any(a not in defaults for a in axes):
        return [], []
    rows = res.final.drop_duplicates("method").set_index("method")
    key = {m: (rows.at[m, "algo"], *(rows.at[m, a] for a in axes)) for m in res.methods if m in rows.index}
    default = {k[0]: m for m, k in key.items() if all(_is_default(v, defaults[a]) for a, v in zip(axes, k[1:]))}
    twin = {k: m for m, k in key.items()}
    pairs = [(m, default[k[0]]) for m, k in key.items() if k[0] in default and default[k[0]] != m]
    pairs += [(m, twin[("trpo", *k[1:])]) for m, k in key.items() if k[0] != "trpo" and ("trpo", *k[1:]) in twin]
    missing = [] if not axes else list(dict.fromkeys(k[0] for k in key.values() if k[0] not in default))
    return pairs, missing


def _is_default(value: Any, default: Any) -> bool:
    """A stored setting's value equals RunConfig's default: lists as the loader writes them
    ("64x64"), numbers by value whatever their type or spelling ("0.01", 0.01, 10, 10.0)."""
    value, default = setting_value(value), setting_value(default)
    try:
        return math.isclose(float(value), float(default), rel_tol=1e-12, abs_tol=0.0)
    except (TypeError, ValueError):
        return str(value) == str(default)


def _difference_rows(res: Results, reps: int, seed: int) -> list[dict]:
    """Per task, the IQM of a method's final returns minus its reference's (``comparison_pairs``),
    with a bootstrap CI that resamples each group's runs independently (rliable's
    StratifiedIndependentBootstrap on one task); below MIN_RUNS_FOR_CI runs in either group, the
    difference alone, with no interval."""
    ok = res.final[summary.usable(res.final)]
    pairs = comparison_pairs(res)
    rows = []
    for task in summary.sorted_values(ok["env_id"]):
        here = ok[ok["env_id"] == task]
        for a, b in pairs:
            x = np.sort(here.loc[here["method"] == a, "final"].to_numpy(float))
            y = np.sort(here.loc[here["method"] == b, "final"].to_numpy(float))
            if not x.size or not y.size:
                continue
            point = float(stats.iqm(x[None, :, None])[0] - stats.iqm(y[None, :, None])[0])
            low = high = math.nan
            kind = ""
            if min(x.size, y.size) >= MIN_RUNS_FOR_CI:
                iv = stats.stratified_bootstrap_pair(
                    x[:, None], y[:, None], lambda u, v: stats.iqm(u) - stats.iqm(v), reps=reps,
                    seed=stats.values_rng(seed, x, y))
                low, high, kind = float(iv.low), float(iv.high), CI
            rows.append(_row(a, task, "final_return_difference", "iqm", point, low, high, kind,
                             min(x.size, y.size), min(x.size, y.size), versus=b))
    return rows


def trust_region_axis(metrics: pd.DataFrame) -> str:
    """The setting the trust-region panels are drawn against: δ, unless δ is fixed and another
    trust-region setting varies (a CG-iterations, damping or line-search ablation)."""
    def varies(col: str) -> bool:
        return col in metrics and metrics[col].nunique(dropna=True) > 1
    if varies("max_kl"):
        return "max_kl"
    return next((c for c in ("cg_iters", "cg_damping", "backtrack_coef") if varies(c)), "max_kl")


def natural_rows(metrics: pd.DataFrame) -> pd.DataFrame:
    """Rows of runs that ran conjugate gradient (the natural-gradient methods)."""
    if "policy/cg_iters" not in metrics:
        return metrics.iloc[:0]
    has_cg = metrics.groupby("run_id")["policy/cg_iters"].transform(lambda s: s.notna().any())
    return metrics[has_cg.astype(bool)]


def finite(frame: pd.DataFrame, *cols: str) -> pd.DataFrame:
    """Rows where every one of ``cols`` is a finite number (none when a column is absent)."""
    if any(c not in frame for c in cols):
        return frame.iloc[:0]
    mask = np.ones(len(frame), bool)
    for c in cols:
        mask &= np.isfinite(pd.to_numeric(frame[c], errors="coerce").to_numpy(dtype=float))
    return frame[mask]


def cg_residuals(metrics: pd.DataFrame) -> tuple[pd.DataFrame, bool]:
    """Updates with a positive final CG residual, column "_res": relative to ‖g‖ where the
    gradient norm is logged (second value True), else absolute."""
    rows = finite(metrics, "policy/cg_iters", "policy/cg_residual")
    rows = rows[rows["policy/cg_residual"] > 0]
    relative = "policy/grad_norm" in rows and bool((rows["policy/grad_norm"] > 0).all())
    rows = rows.assign(_res=rows["policy/cg_residual"] / rows["policy/grad_norm"] if relative
                       else rows["policy/cg_residual"])
    return rows[np.isfinite(rows["_res"])], relative


def _trust_region_rows(res: Results, reps: int, seed: int) -> list[dict]:
    natural = natural_rows(res.metrics)
    if natural.empty:
        return []
    by = trust_region_axis(natural)
    rows = []
    for method, g in natural.groupby("method", sort=False):
        x = float(g[by].iloc[0]) if by in g and pd.notna(g[by].iloc[0]) else math.nan
        runs = g["run_id"].nunique()
        for column, measure in (("policy/kl", "kl"), ("policy/step_size", "step_size")):
            v = finite(g, column)[column].to_numpy(float)
            v = v[v > 0]
            if v.size:
                q5, q50, q95 = np.percentile(v, [5, 50, 95])
                rows.append(_row(method, ALL_TASKS, measure, "median", q50, q5, q95, PERCENTILES, runs, runs, x=x))
        frac = finite(g, "policy/step_fraction")
        if len(frac):
            per_run = frac.groupby("run_id")["policy/step_fraction"].mean().to_numpy(float)
            est, lo, hi, kind = interval(per_run, "mean", reps, stats.values_rng(seed, per_run))
            rows.append(_row(method, ALL_TASKS, "step_fraction", "mean", est, lo, hi, kind, per_run.size, runs, x=x))
        bt = finite(g, "policy/backtracks")
        for task, t in bt.groupby("env_id", sort=False):
            per_run = (t["policy/backtracks"] > 0).groupby(t["run_id"]).mean().to_numpy(float)
            est, lo, hi, kind = interval(per_run, "mean", reps, stats.values_rng(seed, per_run))
            rows.append(_row(method, task, "backtrack_share", "mean", est, lo, hi, kind, per_run.size, per_run.size,
                             x=x))
    res_rows, _ = cg_residuals(natural)
    budget = "cg_iters" if "cg_iters" in res_rows and res_rows["cg_iters"].notna().all() else "policy/cg_iters"
    for (method, b), g in res_rows.groupby(["method", budget], sort=False):
        q5, q50, q95 = np.percentile(g["_res"].to_numpy(float), [5, 50, 95])
        rows.append(_row(method, ALL_TASKS, "cg_residual", "median", q50, q5, q95, PERCENTILES, g["run_id"].nunique(),
                         g["run_id"].nunique(), x=float(b)))
    return rows


def _time_rows(metrics: pd.DataFrame) -> list[dict]:
    comps = [c for c in TIME_PARTS if c in metrics]
    if not comps or metrics.empty:
        return []
    frame = metrics.sort_values(["run_id", "env_steps"], kind="stable")
    parts = frame[["env_id", "method", "run_id", *comps]].copy()
    if "time/wall" in frame:
        wall = frame.groupby("run_id", sort=False)["time/wall"].diff()
        parts["other"] = (wall - frame[comps].sum(axis=1, min_count=1)).clip(lower=0)
        comps = [*comps, "other"]
    rows = []
    for (task, method), g in parts.groupby(["env_id", "method"], sort=False):
        n = g["run_id"].nunique()
        rows += [_row(method, task, f"time/{c.removeprefix('time/')}", "mean", float(g[c].mean()), n=n, n_runs=n)
                 for c in comps]
    return rows


def identical_methods(metrics: pd.DataFrame) -> dict[str, list[list[str]]]:
    """Per task, the sets of methods whose runs, seed by seed, logged the same returns."""
    out: dict[str, list[list[str]]] = {}
    if metrics.empty or RETURN not in metrics:
        return out
    for task, t in metrics.groupby("env_id", sort=False):
        keys: dict[Any, list[str]] = {}
        for method, g in t.groupby("method", sort=False):
            g = g.sort_values(["seed", "env_steps"], kind="stable")
            key = (tuple(g["seed"]), tuple(g["env_steps"]), tuple(np.nan_to_num(g[RETURN].to_numpy(float), nan=-1e300)))
            keys.setdefault(key, []).append(method)
        sets = [m for m in keys.values() if len(m) > 1]
        if sets:
            out[str(task)] = sets
    return out


def compute(store: RunStore, *, reps: int = stats.DEFAULT_REPS, seed: int = 0,
            reference_overrides: Mapping[str, Any] | None = None, grid: str | None = None) -> Results:
    """Every statistic of one grid's runs (``store.select_grid``), computed once."""
    settings = summary.method_settings(store.runs, store.axes)
    final = summary.with_methods(summary.final_scores(store), settings)
    metrics = store.metrics
    metrics = summary.with_methods(metrics, settings) if len(metrics) else metrics.assign(method=[])
    eval_scores = final.assign(final=final["eval_return"].astype(float)) if "eval_return" in final else None
    res = Results(grid=grid or (store.grid_names[0] if store.grid_names else ""), table=pd.DataFrame(),
                  store=store, settings=settings, methods=summary.method_order(final, settings), final=final,
                  metrics=metrics, reps=reps, seed=seed)
    res.identical = {t: [sorted(s, key=res.methods.index) for s in sets]
                     for t, sets in identical_methods(metrics).items()}
    rows = _final_rows(final, "final_return", reps, seed)
    rows += _difference_rows(res, reps, seed)
    if eval_scores is not None and eval_scores["final"].notna().any():
        rows += _final_rows(eval_scores, "eval_return", reps, seed)
    rows += _curve_rows(metrics, "env_steps", "return_curve", reps, seed)
    if not settings:  # comparing sources, machines differ: no wall-clock comparison
        rows += _curve_rows(metrics, "time/wall", "return_curve_walltime", reps, seed)
    if _fewest_runs(rows) > 1:  # one run per group: no aggregate, profile or improvement probability
        rows += _aggregate_rows(res, reference_overrides, reps, seed)
    else:
        _, res.tasks_normalized, res.tasks_left_out = summary.normalized_scores(final, [], reference_overrides)
    rows += _trust_region_rows(res, reps, seed)
    rows += _time_rows(metrics)
    res.table = pd.DataFrame(rows, columns=COLUMNS[1:]).assign(grid=res.grid)[COLUMNS]
    return res


def _fewest_runs(rows: Sequence[Mapping[str, Any]]) -> int:
    n = [r["n"] for r in rows if r["measure"] == "final_return" and r["statistic"] == "mean"]
    return min(n) if n else 0


def compute_all(store: RunStore, **kwargs: Any) -> dict[str, Results]:
    """``compute`` for each grid of ``store``."""
    return {g: compute(store.select_grid(g), grid=g, **kwargs) for g in store.grid_names}


def write_table(results: Mapping[str, Results], path: Path) -> Path:
    """Every grid's table in one CSV (``results.csv`` beside the figures)."""
    frames = [r.table for r in results.values() if len(r.table)]
    table = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=COLUMNS)
    atomic_write_text(Path(path), table.to_csv(index=False))
    return Path(path)

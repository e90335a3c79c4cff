"""From tidy run-store frames to the arrays that ``stats`` works on.

Vocabulary: a *method* is an algorithm plus its values of every setting that
varies among the runs of one task, seed aside (``method_settings``): "TRPO" in an
algorithm comparison, "TRPO, δ=0.01" in an ablation, "TRPO, total_steps=20k" when two
runs differ in length only. Runs that differ in any setting are never one method. Final
performance is taken only from *finished* runs (state "done" and env_steps >= total_steps);
the others are counted and reported, not used.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from analysis import stats
from analysis.load import META_COLUMNS, RUN_STATUS_COLUMNS, RunStore
from trpo_bench.rundir import NOT_NUMERIC

RETURN = "rollout/ep_return_mean"
ALGO_ORDER = ("trpo", "npg", "pg")
ALGO_LABELS = {"trpo": "TRPO", "npg": "NPG", "pg": "PG"}
AXIS_LABELS = {
    "max_kl": "δ",
    "cg_iters": "CG iters",
    "cg_damping": "CG damping",
    "fvp_fraction": "FVP fraction",
    "steps_per_update": "steps/update",
    "max_backtracks": "max backtracks",
    "backtrack_coef": "backtrack coef",
}
AXIS_TITLES = {
    "max_kl": "trust-region size δ (setting max_kl)",
    "cg_iters": "CG iterations",
    "cg_damping": "CG damping",
    "fvp_fraction": "fraction of the batch in FVPs",
    "steps_per_update": "environment steps per update (batch size)",
    "max_backtracks": "maximum line-search backtracks",
    "backtrack_coef": "line-search shrink factor",
}


def algo_label(algo: Any) -> str:
    return ALGO_LABELS.get(str(algo), str(algo))


def format_value(value: Any) -> str:
    """Compact axis value: 0.01 -> '0.01', 10.0 -> '10', 100000 -> '100k'."""
    if isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool):
        v = float(value)
        if math.isnan(v):
            return "n/a"
        if v.is_integer() and abs(v) >= 1000:
            return format_steps(v)
        return f"{v:g}"
    return str(value)


def format_steps(steps: float) -> str:
    """1_000_000 -> '1M', 80_000 -> '80k'."""
    for div, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(steps) >= div:
            return f"{steps / div:.3g}{suffix}"
    return f"{steps:g}"


def axis_value_label(axis: str, value: Any) -> str:
    return f"{AXIS_LABELS.get(axis, axis)}={format_value(value)}"


def sort_key(value: Any) -> tuple:
    """Order algorithms as ALGO_ORDER, numbers numerically, the rest by name."""
    if isinstance(value, str) and value in ALGO_ORDER:
        return (0, ALGO_ORDER.index(value), "")
    if isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool):
        return (1, float(value), "")
    return (2, 0, str(value))


def sorted_values(values: Sequence[Any] | pd.Series) -> list[Any]:
    return sorted(pd.unique(pd.Series(list(values))), key=sort_key)


# ---------------------------------------------------------------------------
# Axes and methods
# ---------------------------------------------------------------------------


def is_numeric_axis(runs: pd.DataFrame, axis: str) -> bool:
    return axis in runs.columns and bool(pd.to_numeric(runs[axis], errors="coerce").notna().all())


def _axis_column(runs: pd.DataFrame, axis: str) -> pd.Series:
    """An axis's values, as numbers when every value is one, else as text (``fvp``,
    ``vf_backend``, ``activation``): a categorical axis separates methods as a numeric one does."""
    return pd.to_numeric(runs[axis]) if is_numeric_axis(runs, axis) else runs[axis].astype("string")


def varying_axes(runs: pd.DataFrame, axes: Sequence[str]) -> list[str]:
    """Of ``axes``, those with more than one value (missing counts as one) within some
    (grid, algo, env_id): numeric or categorical."""
    out = []
    for axis in axes:
        if axis not in runs.columns or axis in ("seed",) or runs[axis].isna().all():
            continue
        values = _axis_column(runs, axis).astype(object).where(runs[axis].notna(), "<missing>")
        counts = values.groupby([runs["grid"], runs["algo"], runs["env_id"]]).nunique()
        if (counts > 1).any():
            out.append(axis)
    return out


def setting_columns(runs: pd.DataFrame) -> list[str]:
    """Columns of a runs table that hold a run's settings (``total_steps`` included; seed,
    bookkeeping and settings that do not change the numbers, ``rundir.NOT_NUMERIC``, left out)."""
    skip = {*META_COLUMNS, *RUN_STATUS_COLUMNS, "_axes", "final", "method", "external", *NOT_NUMERIC} - {"total_steps"}
    return [c for c in runs.columns if c not in skip]


def method_settings(runs: pd.DataFrame, axes: Sequence[str] = ()) -> list[str]:
    """The settings that tell methods apart: every setting with more than one value among the
    runs of one (grid, algo, task), seed aside; grid ``axes`` first, then the rest by name.

    A method is an algorithm and its values of these settings, so runs that differ in any
    setting (``total_steps``, ``cg_damping``, ...) are never pooled as seeds of one method, while
    a setting that only changes with the task (``total_steps`` set per task) names no method.
    """
    # An external baseline has no settings of ours: its source alone sets it apart.
    own = runs[~runs["external"].astype(bool)] if "external" in runs else runs
    candidates = [a for a in axes if a in runs.columns] + sorted(c for c in setting_columns(runs) if c not in axes)
    found = varying_axes(own, list(dict.fromkeys(candidates)))
    if "store" in runs and runs["store"].nunique() > 1 and "store" not in found:
        found.append("store")
    return found


def method_definitions(final: pd.DataFrame, settings: Sequence[str]) -> pd.DataFrame:
    """One row per method: its runs, tasks and the value of every setting that differs among
    the runs of ``final`` (seed aside), or its value per task where only the task changes it,
    so a report can say exactly what each group is. ``final`` has a "method" column."""
    cols = [c for c in setting_columns(final) if c != "algo" and final[c].astype(str).nunique() > 1]
    cols = [*(c for c in settings if c in cols), *(c for c in cols if c not in settings)]
    rows = []
    for method in method_order(final, settings):
        g = final[final["method"] == method]
        parts = []
        for c in cols:
            per_task = g.groupby("env_id", sort=True)[c].agg(lambda v: format_value(v.iloc[0]))
            if per_task.nunique() == 1:
                parts.append(f"{c}={per_task.iloc[0]}")
            else:
                parts.append(f"{c} per task: " + ", ".join(f"{v} ({t})" for t, v in per_task.items()))
        rows.append({"method": method, "runs": len(g), "tasks": g["env_id"].nunique(), "settings": "; ".join(parts)})
    return pd.DataFrame(rows, columns=["method", "runs", "tasks", "settings"])


def algos_varying(runs: pd.DataFrame, axis: str) -> list[str]:
    """Algorithms whose runs take more than one value of ``axis``."""
    counts = _axis_column(runs, axis).groupby(runs["algo"]).nunique()
    return sorted_values([a for a, n in counts.items() if n > 1])


def method_label(row: Mapping[str, Any], axes: Sequence[str]) -> str:
    """'TRPO' or 'TRPO, δ=0.01, CG iters=10' from a row and the varying axes; the run's
    source last, in brackets, when "store" is one of them ('TRPO [quickstart]')."""
    parts = [axis_value_label(a, row[a]) for a in axes if a != "store" and a in row and pd.notna(row[a])]
    label = ", ".join([algo_label(row["algo"]), *parts])
    return f"{label} [{row['store']}]" if "store" in axes and pd.notna(row.get("store")) else label


def with_methods(frame: pd.DataFrame, axes: Sequence[str]) -> pd.DataFrame:
    """``frame`` with a "method" column (see ``method_label``)."""
    out = frame.copy()
    out["method"] = [method_label(r, axes) for r in out.to_dict("records")] if len(out) else []
    return out


def method_order(frame: pd.DataFrame, axes: Sequence[str]) -> list[str]:
    """Methods in ALGO_ORDER, then by axis values."""
    if frame.empty:
        return []
    cols = ["algo", *[a for a in axes if a in frame.columns]]
    keys = frame[cols + ["method"]].drop_duplicates("method").to_dict("records")
    return [k["method"] for k in sorted(keys, key=lambda r: tuple(sort_key(r[c]) for c in cols))]


# ---------------------------------------------------------------------------
# Final performance
# ---------------------------------------------------------------------------


def final_scores(
    store: RunStore, metric: str = RETURN, fraction: float = stats.DEFAULT_FINAL_FRACTION
) -> pd.DataFrame:
    """One row per run of ``store.runs`` with column "final".

    final = stats.final_performance of ``metric`` over the run's updates (NaN
    for runs without metrics or without a finite value in the window).
    """
    finals: dict[str, float] = {}
    if len(store.metrics) and metric in store.metrics.columns:
        for run_id, rows in store.metrics.groupby("run_id", sort=False):
            values = rows.sort_values("env_steps", kind="stable")[metric].to_numpy(dtype=float)
            finals[str(run_id)] = stats.final_performance(values, fraction)
    out = store.runs.drop(columns=["_axes"], errors="ignore").copy()
    out["final"] = [finals.get(r, math.nan) for r in out["run_id"]]
    return out


def usable(final: pd.DataFrame) -> pd.Series:
    """Runs that enter final-performance statistics: finished with a finite score."""
    return final["finished"].astype(bool) & np.isfinite(final["final"].astype(float))


def score_matrix(final: pd.DataFrame, tasks: Sequence[str], value: str = "final") -> np.ndarray:
    """(runs, tasks) scores of usable runs, NaN-padded where a task has fewer runs."""
    ok = final[usable(final)]
    cols = [ok.loc[ok["env_id"] == t, value].to_numpy(dtype=float) for t in tasks]
    n = max((len(c) for c in cols), default=0)
    out = np.full((n, len(tasks)), np.nan)
    for j, c in enumerate(cols):
        out[: len(c), j] = c
    return out


def exclusion_notes(final: pd.DataFrame, group: Sequence[str] = ("method", "env_id")) -> list[str]:
    """'<method> on <task>: k of n runs finished' for every group missing runs."""
    notes = []
    keep = usable(final)
    for key, rows in final.groupby(list(group), sort=True, dropna=False):
        n, k = len(rows), int(keep.loc[rows.index].sum())
        if k < n:
            where = " on ".join(str(v) for v in (key if isinstance(key, tuple) else (key,)))
            notes.append(f"{where}: {k} of {n} runs finished and used")
    return notes


def final_table(
    final: pd.DataFrame,
    by: Sequence[str] = ("env_id", "method"),
    *,
    statistic: str = "mean",
    reps: int = stats.DEFAULT_REPS,
    confidence: float = stats.DEFAULT_CONFIDENCE,
    seed: int = 0,
) -> pd.DataFrame:
    """Final return per group with a bootstrap CI over runs.

    Columns: *by, estimate, ci_low, ci_high, interval (what low and high are:
    ``stats.estimate_over_runs``, a CI only from MIN_RUNS_FOR_CI runs), n (runs used),
    n_runs (runs in the group, unfinished included). Groups without usable runs get NaN.
    """
    keep = usable(final)
    rows = []
    for key, g in final.groupby(list(by), sort=False, dropna=False):
        key = key if isinstance(key, tuple) else (key,)
        values = g.loc[keep.loc[g.index], "final"].to_numpy(dtype=float)
        est, lo, hi, kind = stats.estimate_over_runs(values, statistic, reps=reps, confidence=confidence,
                                                     seed=stats.values_rng(seed, values))
        rows.append({**dict(zip(by, key)), "estimate": est, "ci_low": lo, "ci_high": hi, "interval": kind,
                     "n": int(values.size), "n_runs": len(g)})
    table = pd.DataFrame(rows, columns=[*by, "estimate", "ci_low", "ci_high", "interval", "n", "n_runs"])
    order = {c: sorted_values(table[c]) for c in by}
    return table.sort_values(list(by), key=lambda s: s.map(lambda v: order[s.name].index(v))).reset_index(drop=True)


def normalized_scores(
    final: pd.DataFrame,
    methods: Sequence[str],
    overrides: Mapping[str, Any] | None = None,
) -> tuple[dict[str, np.ndarray], list[str], list[str]]:
    """Per-method (runs, tasks) normalized score matrices over a common task set.

    Returns (scores, tasks used, tasks left out for lack of a reference score).
    """
    table = stats.reference_scores(overrides)
    all_tasks = sorted_values(final["env_id"])
    tasks = [t for t in all_tasks if t in table]
    scores = {}
    for m in methods:
        raw = score_matrix(final[final["method"] == m], tasks)
        if raw.size and np.isfinite(raw).any():
            scores[m] = stats.normalize_tasks(raw, tasks, overrides)
    return scores, tasks, [t for t in all_tasks if t not in table]


def poi_pairs(
    methods: Sequence[str], attrs: Mapping[str, tuple] | None = None, all_pairs_up_to: int = 4
) -> list[tuple[str, str]]:
    """Pairs (X, Y), X earlier in ``methods``, to compare by probability of improvement.

    Up to ``all_pairs_up_to`` methods: every pair. Beyond that, with ``attrs``
    (method -> (algo, *axis values)): pairs that differ only in the algorithm,
    or, for a single algorithm, only in one axis value.
    """
    pairs = [(a, b) for i, a in enumerate(methods) for b in methods[i + 1:]]
    if len(methods) <= all_pairs_up_to or attrs is None:
        return pairs

    def diff(a, b):
        return [k for k, (u, v) in enumerate(zip(attrs[a], attrs[b])) if u != v]

    across = [(a, b) for a, b in pairs if diff(a, b) == [0]]
    return across or [(a, b) for a, b in pairs if len(diff(a, b)) == 1]


# ---------------------------------------------------------------------------
# Curves
# ---------------------------------------------------------------------------


def same_value(a: Any, b: Any) -> bool:
    """Equality that treats two missing values as equal."""
    return (pd.isna(a) and pd.isna(b)) if (pd.isna(a) or pd.isna(b)) else a == b


def coverage_notes(runs: pd.DataFrame, hue: str, label=str) -> list[str]:
    """'<hue>: k of n runs reached <total> steps[, m failed before the first update]'."""
    notes = []
    for h in sorted_values(runs[hue]):
        g = runs[[same_value(v, h) for v in runs[hue]]]
        total = pd.to_numeric(g["total_steps"], errors="coerce").max()
        reached = int((pd.to_numeric(g["env_steps"], errors="coerce") >= total).sum())
        if reached < len(g):
            notes.append(f"{label(h)}: {reached} of {len(g)} runs reached {format_steps(total)} steps")
            empty = int((~g["has_metrics"].astype(bool)).sum())
            if empty:
                notes.append(f"  ({empty} failed before any update)")
    return notes


def unfinished_runs(runs: pd.DataFrame) -> pd.DataFrame:
    """Runs that failed, are still running, or stopped short of total_steps."""
    bad = ~runs["finished"].astype(bool)
    cols = ["grid", "run_id", "algo", "env_id", "seed", "state", "env_steps", "total_steps", "error"]
    return runs.loc[bad, [c for c in cols if c in runs.columns]].reset_index(drop=True)


# ------------------------------------------------------------------ published statistics
# Published benchmark tables each use their own statistic over seeds; these compute ours the
# same way, so the two can stand side by side (docs/results.md, section 7).
EVAL_RETURN = "eval/return_mean"


def final_eval_mean_se(final: pd.DataFrame) -> pd.DataFrame:
    """rl-baselines3-zoo's statistic (``all_plots.py``, behind sb3-contrib's TRPO table): the
    mean over seeds of each run's final deterministic evaluation (eval.json, ``trpo-bench
    evaluate``) ± its standard error, numpy's std (ddof 0) / √n. Columns method, env_id, mean,
    se, n; finished runs with an evaluation only."""
    ok = final[final["finished"].astype(bool) & np.isfinite(final["eval_return"].astype(float))]
    rows = []
    for (method, task), g in ok.groupby(["method", "env_id"], sort=False):
        v = g["eval_return"].to_numpy(float)
        rows.append({"method": method, "env_id": task, "mean": float(v.mean()),
                     "se": float(v.std() / math.sqrt(v.size)), "n": int(v.size)})
    return pd.DataFrame(rows, columns=["method", "env_id", "mean", "se", "n"])


def final_eval_terms(final: pd.DataFrame) -> pd.DataFrame:
    """Where the final deterministic evaluation's return comes from: each reward term the task
    reports (eval.json's ``reward_terms``: a term summed over an episode, averaged over the
    episodes) averaged over the finished runs of a method and task that recorded terms. Columns
    method, env_id, term (the info key without ``reward_``), mean, n, and return: the mean
    over the same runs of their evaluation's return; one row per term."""
    ok = final[final["finished"].astype(bool) & np.isfinite(final["eval_return"].astype(float))]
    rows = []
    for (method, task), g in ok.groupby(["method", "env_id"], sort=False):
        g = g[g["eval_reward_terms"].map(len) > 0]
        if g.empty:
            continue
        per_run = [dict(t) for t in g["eval_reward_terms"]]
        names = [n for n in dict.fromkeys(n for terms in per_run for n in terms) if all(n in t for t in per_run)]
        ret = float(g["eval_return"].astype(float).mean())
        for name in names:
            v = np.array([t[name] for t in per_run])
            rows.append({"method": method, "env_id": task, "term": name.removeprefix("reward_"),
                         "mean": float(v.mean()), "n": int(v.size), "return": ret})
    return pd.DataFrame(rows, columns=["method", "env_id", "term", "mean", "n", "return"])


def best_mean_eval(metrics: pd.DataFrame, final: pd.DataFrame) -> pd.DataFrame:
    """Tianshou's statistic (``examples/mujoco/analysis.py``, "max average return"): the
    periodic evaluations (``eval/return_mean``) averaged over seeds at each evaluation, the
    largest of these means, and the std over seeds (ddof 0) at that evaluation. Only
    evaluations every finished run reached count. Columns method, env_id, mean, std,
    env_steps (where the best mean is), evals (how many), n."""
    rows = []
    done = set(final.loc[final["finished"].astype(bool), "run_id"])
    if metrics.empty or EVAL_RETURN not in metrics:
        return pd.DataFrame(rows, columns=["method", "env_id", "mean", "std", "env_steps", "evals", "n"])
    m = metrics[metrics["run_id"].isin(done) & metrics[EVAL_RETURN].notna()]
    for (method, task), g in m.groupby(["method", "env_id"], sort=False):
        table = g.pivot_table(index="env_steps", columns="run_id", values=EVAL_RETURN, aggfunc="first")
        table = table.dropna()  # evaluations every run reached
        if table.empty:
            continue
        means = table.mean(axis=1)
        at = means.idxmax()
        rows.append({"method": method, "env_id": task, "mean": float(means[at]),
                     "std": float(table.loc[at].to_numpy(float).std()), "env_steps": int(at),
                     "evals": len(table), "n": table.shape[1]})
    return pd.DataFrame(rows, columns=["method", "env_id", "mean", "std", "env_steps", "evals", "n"])

"""A self-contained Markdown report of one or more run stores.

Layout under ``out_dir`` (the same directory ``plots.make_all`` writes to, so
the report and its figures travel together)::

    report.md                         links below are relative to it
    [<grid>/]<figure>.png, .pdf       a subdirectory per grid when there are several
    tables/[<grid>/]final_return.{csv,md,tex}, final_return_iqm.*, eval_return_iqm.*,
    tables/[<grid>/]line_search.csv

Figure files newer than every run file are reused, not rendered again, so
calling ``make_all`` and then ``write_report`` on one directory renders once.

For each grid: what it was (grid.json name, source, axes, seeds), which runs
failed or are unfinished, the final-return tables (training return; deterministic
evaluation where eval.json exists), the line search's backtracking rates and every figure.
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from analysis import plots, stats, summary, tables
from analysis.load import RunStore, load_store
from trpo_bench.rundir import atomic_write_text


def _rel(path: Path, start: Path) -> str:
    return Path(os.path.relpath(path, start)).as_posix()


def _also_as(paths: Sequence[Path], out_dir: Path) -> str:
    return "Also as " + ", ".join(f"[{p.suffix[1:].upper()}]({_rel(p, out_dir)})" for p in paths) + "."


def _code_list(values: Sequence[Any]) -> str:
    return ", ".join(f"`{v}`" for v in values)


def grid_summary(store: RunStore, grid: str) -> list[str]:
    """Markdown bullet lines: source, axes, seeds and run counts of one grid."""
    spec = store.grids.get(grid)
    runs = store.runs
    seeds = summary.sorted_values(runs["seed"].dropna())
    lines = []
    if spec:
        lines.append(f"- Grid file: `{spec.get('source', 'unknown')}` (name `{spec.get('name', grid)}`)")
        for axis, values in (spec.get("axes") or {}).items():
            lines.append(f"- Axis `{axis}`: {_code_list(values)}")
        seeds = spec.get("seeds", seeds)
    else:
        lines.append("- No grid.json found; axes read from the runs' config.json")
        for axis in ["algo", "env_id", *store.axes]:
            if axis in runs:
                lines.append(f"- Axis `{axis}`: {_code_list(summary.sorted_values(runs[axis].dropna()))}")
    lines.append(f"- Seeds: {_code_list(seeds)} ({len(seeds)} seeds)")
    expected = len(spec["runs"]) if spec and "runs" in spec else None
    finished = int(runs["finished"].astype(bool).sum())
    count = f"{len(runs)} found" + (f" of {expected} in grid.json" if expected is not None else "")
    lines.append(f"- Runs: {count}; {finished} finished, {len(runs) - finished} failed or unfinished")
    return lines


def methods_section(store: RunStore) -> list[str]:
    """Markdown: what each group of runs (a method) is, by every setting that differs."""
    settings = summary.method_settings(store.runs, store.axes)
    final = summary.with_methods(store.runs.drop(columns=["_axes"], errors="ignore"), settings)
    table = summary.method_definitions(final, settings)
    if table.empty:
        return []
    lines = ["Runs are grouped by every setting that differs among the runs of a task, seed aside"
             + (f" (here: {_code_list(settings)})" if settings else " (here: the algorithm only)")
             + "; runs that differ in any other way are never pooled. Settings that differ within this "
             "grid, per group:", "", "| method | runs | tasks | settings |", "|---|---:|---:|---|"]
    lines += [f"| {r['method']} | {r['runs']} | {r['tasks']} | {r['settings'] or 'n/a'} |"
              for r in table.to_dict("records")]
    return lines


MAX_LISTED = 10  # never-started runs named in full up to this many


def problem_runs(store: RunStore, grid: str) -> list[str]:
    """Markdown listing failed/unfinished runs and grid.json runs never started."""
    bad = summary.unfinished_runs(store.runs)
    lines = []
    if bad.empty:
        lines.append("All runs finished (state `done`, env_steps >= total_steps).")
    else:
        lines.append(f"{len(bad)} run(s) failed or unfinished; their final returns are left out of the "
                     "tables and aggregate figures, their curves are drawn as far as they go.\n")
        lines.append("| run | algo | task | seed | state | env steps | error |")
        lines.append("|---|---|---|---|---|---|---|")
        for r in bad.to_dict("records"):
            reached, total = (summary.format_steps(float(r[k] or 0)) for k in ("env_steps", "total_steps"))
            steps = f"{reached} / {total}"
            error = r.get("error")
            error = "" if error is None or pd.isna(error) else str(error).replace("|", "\\|").replace("\n", " ")
            lines.append(f"| `{r['run_id']}` | {r['algo']} | {r['env_id']} | {r['seed']} | {r['state']} | "
                         f"{steps} | {error} |")
    final = summary.final_scores(store)
    no_score = final[final["finished"].astype(bool) & final["final"].isna()]
    if len(no_score):
        lines.append(f"\nFinished but without a final score (no episode ended in the last "
                     f"{stats.DEFAULT_FINAL_FRACTION:.0%} of updates): {_code_list(no_score['run_id'])}")
    spec = store.grids.get(grid)
    if spec and spec.get("runs"):
        missing = sorted(set(spec["runs"]) - set(store.runs["run_id"]))
        if len(missing) > MAX_LISTED:
            lines.append(f"\n{len(missing)} runs listed in grid.json have no run directory (never started; "
                         f"a grid run with `--only` leaves the rest), e.g. {_code_list(missing[:MAX_LISTED])}")
        elif missing:
            lines.append(f"\nListed in grid.json but without a run directory (never started): {_code_list(missing)}")
    return lines


def _final_table(store: RunStore, reps: int, seed: int, statistic: str = "mean",
                 scores: pd.DataFrame | None = None) -> pd.DataFrame:
    """Per task and method: ``statistic`` of the runs' "final" column (default: the training
    return, ``summary.final_scores``) with its bootstrap CI, methods in plotting order."""
    ablate = summary.method_settings(store.runs, store.axes)
    final = summary.with_methods(summary.final_scores(store) if scores is None else scores, ablate)
    order = summary.method_order(final, ablate)
    table = summary.final_table(final, statistic=statistic, reps=reps, seed=seed)
    return table.sort_values("method", key=lambda s: s.map(order.index), kind="stable").reset_index(drop=True)


def line_search_table(store: RunStore) -> pd.DataFrame:
    """Per task and method (runs with a line search): runs, updates, the number of updates
    that backtracked and of those whose step was rejected, and backtracks per update."""
    cols = ["env_id", "method", "runs", "updates", "backtracked", "rejected", "backtracks_per_update"]
    m = store.metrics
    if m.empty or "policy/backtracks" not in m.columns:
        return pd.DataFrame(columns=cols)
    ablate = summary.method_settings(store.runs, store.axes)
    rows = summary.with_methods(m[m["policy/backtracks"].notna()], ablate)
    if rows.empty:
        return pd.DataFrame(columns=cols)
    order = summary.method_order(rows, ablate)
    out = (rows.assign(_bt=rows["policy/backtracks"] > 0, _rej=rows["policy/accepted"] == 0)
           .groupby(["env_id", "method"], sort=False)
           .agg(runs=("run_id", "nunique"), updates=("_bt", "size"), backtracked=("_bt", "sum"),
                rejected=("_rej", "sum"), backtracks_per_update=("policy/backtracks", "mean"))
           .reset_index())
    tasks = summary.sorted_values(out["env_id"])
    return out.sort_values(["env_id", "method"], key=lambda s: s.map(
        tasks.index if s.name == "env_id" else order.index), kind="stable").reset_index(drop=True)[cols]


def _share(count: int, total: int) -> str:
    share = count / total if total else 0.0
    return f"{count:,} ({share:.2%})" if 0 < share < 0.001 else f"{count:,} ({share:.1%})"


def _line_search_markdown(table: pd.DataFrame) -> list[str]:
    lines = ["| task | method | runs | updates | backtracked | rejected | backtracks per update |",
             "|---|---|---:|---:|---:|---:|---:|"]
    for r in table.to_dict("records"):
        n = int(r["updates"])
        lines.append(f"| {r['env_id']} | {r['method']} | {r['runs']} | {n:,} | {_share(int(r['backtracked']), n)} | "
                     f"{_share(int(r['rejected']), n)} | {r['backtracks_per_update']:.3f} |")
    return lines


def _eval_table(store: RunStore, reps: int, seed: int) -> pd.DataFrame:
    """IQM of the final policies' deterministic returns (eval.json), per task and method."""
    scores = store.runs.drop(columns=["_axes"], errors="ignore").assign(final=store.runs["eval_return"].astype(float))
    return _final_table(store, reps, seed, statistic="iqm", scores=scores)


def write_report_files(
    runs_dirs: Sequence[Path],
    out_dir: Path,
    *,
    reps: int = stats.DEFAULT_REPS,
    seed: int = 0,
    reference_overrides: Mapping[str, Any] | None = None,
) -> list[Path]:
    """Write figures, tables and report.md; returns every path, report.md last."""
    runs_dirs = [Path(p) for p in runs_dirs]
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    store = load_store(runs_dirs)
    figures = plots.write_figures(store, out_dir, reuse_if_newer=True, reps=reps, seed=seed,
                                  reference_overrides=reference_overrides)
    written = [p for specs in figures.values() for spec in specs for p in spec.paths or []]
    now = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    md = ["# trpo-bench report", "",
          f"Run stores: {_code_list([str(p) for p in runs_dirs])}. Generated {now}.", "",
          f"Final return = mean of `{summary.RETURN}` over the last "
          f"{stats.DEFAULT_FINAL_FRACTION:.0%} of a run's updates. Tables give the mean over finished runs "
          f"with a 95% percentile-bootstrap CI ({reps} resamples, seed {seed}); \"(k/n)\" marks groups where "
          "only k of n runs finished with a final score, and \"(n=K)\" gives each group's run count where groups "
          "differ in size. Aggregate figures use scores normalized per task, "
          "(R - random) / (reference - random), as in Agarwal et al. (2021).", ""]
    if store.runs.empty:
        md += ["**No runs found.**", ""]
    grid_dirs = plots.grid_output_dirs(store, out_dir / "tables")
    for grid in store.grid_names:
        sub = store.select_grid(grid)
        md += [f"## Grid `{grid}`", "", *grid_summary(sub, grid), "", "### Methods", "", *methods_section(sub), "",
               "### Failed or unfinished runs", "",
               *problem_runs(sub, grid), "", "### Final return", ""]
        table = _final_table(sub, reps, seed)
        paths = tables.write_tables(table, grid_dirs[grid], "final_return", label=f"tab:final_return_{grid}",
                                    caption=f"Final return per task ({grid}): mean over finished runs "
                                            "with 95% bootstrap CI.")
        written += paths
        md += [tables.to_markdown(table),
               _also_as(paths, out_dir), ""]
        table = _final_table(sub, reps, seed, statistic="iqm")
        paths = tables.write_tables(table, grid_dirs[grid], "final_return_iqm", label=f"tab:final_return_iqm_{grid}",
                                    caption=f"Final return per task ({grid}): interquartile mean over finished "
                                            "runs with 95% bootstrap CI.")
        written += paths
        md += ["Interquartile mean (the mean of the middle 50% of runs, robust to one outlying seed; "
               "Agarwal et al., 2021) with its 95% bootstrap CI:", "", tables.to_markdown(table),
               _also_as(paths, out_dir), ""]
        if sub.runs["eval_return"].notna().any():
            table = _eval_table(sub, reps, seed)
            episodes = sorted({int(e) for e in sub.runs["eval_episodes"].dropna()})
            paths = tables.write_tables(table, grid_dirs[grid], "eval_return_iqm", label=f"tab:eval_return_{grid}",
                                        caption=f"Deterministic return of the final policy ({grid}): "
                                                "interquartile mean over runs with 95% bootstrap CI.")
            written += paths
            md += ["### Final policy, deterministic evaluation", "",
                   "The final checkpoint's mean action, " + "/".join(map(str, episodes)) + " episodes per run "
                   "(`trpo-bench evaluate`; the protocol of rl-baselines3-zoo's published returns); "
                   "interquartile mean over runs with 95% bootstrap CI. \"(k/n)\" marks groups where only k "
                   "of n runs have an evaluation.", "", tables.to_markdown(table),
                   _also_as(paths, out_dir), ""]
        search = line_search_table(sub)
        if len(search):
            path = grid_dirs[grid] / "line_search.csv"
            path.parent.mkdir(parents=True, exist_ok=True)
            atomic_write_text(path, search.to_csv(index=False))
            written.append(path)
            md += ["### Line search", "",
                   "Updates whose line search took at least one backtrack, and whose step was rejected "
                   "(parameters left at θ_old), over every update of every run:", "",
                   *_line_search_markdown(search), "", _also_as([path], out_dir), ""]
        no_reference = [t for t in summary.sorted_values(sub.runs["env_id"].dropna())
                        if t not in stats.reference_scores(reference_overrides)]
        if no_reference:
            md += [f"No reference score for {_code_list(no_reference)}: left out of the aggregate "
                   "(normalized) figures; pass `reference_overrides` to include them.", ""]
        md += ["### Figures", ""]
        specs = figures.get(grid, [])
        if not specs:
            md += ["_No figure: no metrics logged yet._", ""]
        for spec in specs:
            png = next(p for p in spec.paths if p.suffix == ".png")
            pdf = next((p for p in spec.paths if p.suffix == ".pdf"), None)
            md += [f"#### {spec.name}", "", spec.caption, "", f"![{spec.name}]({_rel(png, out_dir)})", ""]
            if pdf is not None:
                md += [f"[PDF]({_rel(pdf, out_dir)})", ""]
    report = out_dir / "report.md"
    atomic_write_text(report, "\n".join(md))
    return [*written, report]


def write_report(runs_dirs: Sequence[Path], out_dir: Path, **kwargs: Any) -> Path:
    """Write <out_dir>/report.md with its figures and tables/ beside it; return its path."""
    return write_report_files(runs_dirs, out_dir, **kwargs)[-1]

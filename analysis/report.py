"""A self-contained Markdown report of one or more run stores.

Layout under ``out_dir`` (the same directory ``plots.make_all`` writes to, so
the report and its figures travel together)::

    report.md                         links below are relative to it
    results.csv                       every statistic shown (analysis.results)
    [<grid>/]<figure>.png, .pdf       a subdirectory per grid when there are several
    tables/[<grid>/]final_return.{csv,md,tex}, final_return_iqm.*, eval_return_iqm.*,
    tables/[<grid>/]line_search.csv

Every statistic is computed once (``results.compute_all``) and written as results.csv; the
figures, tables and this text are drawn from it. ``write_report`` writes the figures too, so a
grid's end calls it alone.

For each grid: what it was (grid.json name, source, axes, seeds), which runs
failed or are unfinished, the final-return tables (training return; deterministic
evaluation where eval.json exists), the line search's backtracking rates and every figure.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from analysis import plots, results, stats, summary, tables
from analysis.load import RunStore, load_store
from trpo_bench.rundir import GRID, RECORD_FILES, atomic_write_text, iter_run_dirs

REPORT = "report.md"
DRAWN_FROM = ".drawn_from.json"  # beside a grid's figures: inputs_of() the grid when they were drawn


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
    lines.append(f"- Seeds: {_code_list(seeds)} ({len(seeds)} seed{'' if len(seeds) == 1 else 's'})")
    expected = len(spec["runs"]) if spec and "runs" in spec else None
    finished = int(runs["finished"].astype(bool).sum())
    count = f"{len(runs)} found" + (f" of {expected} in grid.json" if expected is not None else "")
    lines.append(f"- Runs: {count}; {finished} finished, {len(runs) - finished} failed or unfinished")
    return lines


def methods_section(res: results.Results) -> list[str]:
    """Markdown: what each group of runs (a method) is, by every setting that differs."""
    settings = res.settings
    table = summary.method_definitions(res.final, settings)
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


def problem_runs(store: RunStore, grid: str, final: pd.DataFrame | None = None) -> list[str]:
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
    final = summary.final_scores(store) if final is None else final
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


def final_table(res: results.Results, measure: str = "final_return", statistic: str = "mean") -> pd.DataFrame:
    """Per task and method, from ``res``: the columns ``tables`` takes, methods in plotting order."""
    t = res.rows(measure, statistic=statistic).rename(columns={"task": "env_id", "group": "method"})
    t = t[["env_id", "method", "estimate", "ci_low", "ci_high", "interval", "n", "n_runs"]]
    tasks = summary.sorted_values(t["env_id"])
    return t.sort_values(["env_id", "method"], key=lambda s: s.map(
        tasks.index if s.name == "env_id" else res.methods.index), kind="stable").reset_index(drop=True)


def line_search_table(res: results.Results | RunStore) -> pd.DataFrame:
    """Per task and method (runs with a line search): runs, updates, the number of updates
    that backtracked and of those whose step was rejected, and backtracks per update."""
    cols = ["env_id", "method", "runs", "updates", "backtracked", "rejected", "backtracks_per_update"]
    if isinstance(res, RunStore):
        ablate = summary.method_settings(res.runs, res.axes)
        m = summary.with_methods(res.metrics, ablate) if len(res.metrics) else res.metrics
    else:
        ablate, m = res.settings, res.metrics
    if m.empty or "policy/backtracks" not in m.columns:
        return pd.DataFrame(columns=cols)
    rows = m[m["policy/backtracks"].notna()]
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


def _difference_markdown(res: results.Results) -> list[str]:
    """Each method's IQM minus its reference's (``results.comparison_pairs``), per task."""
    d = res.rows("final_return_difference")
    missing = results.algorithms_without_reference(res)
    note = [f"No difference from a default for {', '.join(summary.algo_label(a) for a in missing)}: none of its "
            "methods runs at the default values of the settings this grid varies.", ""] if missing else []
    if d.empty:
        return note
    lines = [*note, "IQM difference from the reference: the algorithm at the default settings (NPG and PG also "
             "against TRPO at the same settings); the CI resamples both groups' runs independently. With "
             "few seeds a CI that excludes 0 is a finding to confirm, not a test passed.", "",
             "| task | method | reference | IQM difference | n |", "|---|---|---|---:|---:|"]
    for r in d.to_dict("records"):
        iv = f" [{r['ci_low']:+,.1f}, {r['ci_high']:+,.1f}]" if r["interval"] == results.CI else ""
        lines.append(f"| {r['task']} | {r['group']} | {r['versus']} | {r['estimate']:+,.1f}{iv} | {r['n']} |")
    return [*lines, ""]


def _tables_section(res: results.Results, out_dir: Path, tables_dir: Path, grid: str) -> tuple[list[str], list[Path]]:
    md: list[str] = []
    written: list[Path] = []
    table = final_table(res)
    paths = tables.write_tables(table, tables_dir, "final_return", label=f"tab:final_return_{grid}",
                                caption=f"Final return per task ({grid}): mean over finished runs.")
    written += paths
    md += [tables.to_markdown(table), _also_as(paths, out_dir), ""]
    if int(table["n"].max() if len(table) else 0) >= 4:
        table = final_table(res, statistic="iqm")
        paths = tables.write_tables(table, tables_dir, "final_return_iqm", label=f"tab:final_return_iqm_{grid}",
                                    caption=f"Final return per task ({grid}): interquartile mean over finished runs.")
        written += paths
        md += ["Interquartile mean (the mean of the middle 50% of runs, robust to one outlying seed; "
               "Agarwal et al., 2021):", "", tables.to_markdown(table), _also_as(paths, out_dir), ""]
    elif len(table):
        md += ["No interquartile-mean table: with fewer than 4 runs per group it trims no run and equals the mean.", ""]
    md += _difference_markdown(res)
    if len(res.rows("eval_return")):
        table = final_table(res, "eval_return", "iqm")
        episodes = sorted({int(e) for e in res.final["eval_json_episodes"].dropna()})
        paths = tables.write_tables(table, tables_dir, "eval_return_iqm", label=f"tab:eval_return_{grid}",
                                    caption=f"Deterministic return of the final policy ({grid}): "
                                            "interquartile mean over runs.")
        written += paths
        md += ["### Final policy, deterministic evaluation", "",
               "The final checkpoint's mean action, " + "/".join(map(str, episodes)) + " episodes per run "
               "(`trpo-bench evaluate`; the protocol of rl-baselines3-zoo's published returns); "
               "interquartile mean over runs with an evaluation.", "", tables.to_markdown(table),
               _also_as(paths, out_dir), ""]
    return md, written


def write_report_files(
    runs_dirs: Sequence[Path],
    out_dir: Path,
    *,
    reps: int = stats.DEFAULT_REPS,
    seed: int = 0,
    reference_overrides: Mapping[str, Any] | None = None,
    store: RunStore | None = None,
) -> list[Path]:
    """Compute every statistic once (``results``), then write results.csv, the figures, the tables
    and report.md from it; returns every path, report.md last. ``store`` replaces reading
    ``runs_dirs`` (which then only name the stores in the text)."""
    runs_dirs = [Path(p) for p in runs_dirs]
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    store = load_store(runs_dirs) if store is None else store
    all_results = results.compute_all(store, reps=reps, seed=seed, reference_overrides=reference_overrides)
    figures = plots.write_figures(all_results, plots.grid_output_dirs(store, out_dir))
    written = [results.write_table(all_results, out_dir / "results.csv")]
    written += [p for specs in figures.values() for spec in specs for p in spec.paths or []]
    now = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    md = ["# trpo-bench report", "",
          f"Run stores: {_code_list([str(p) for p in runs_dirs])}. Generated {now}.", "",
          f"Final return = mean of `{summary.RETURN}` over the last "
          f"{stats.DEFAULT_FINAL_FRACTION:.0%} of a run's updates. Tables give the mean over finished runs and, "
          f"in every cell, the runs used (n; \"n=k of m\" where only k of a group's m runs finished with a final "
          f"score). Brackets hold a 95% percentile-bootstrap CI ({reps} resamples, seed {seed}), given only for "
          f"groups of {stats.MIN_RUNS_FOR_CI} runs or more; smaller groups show the range of their runs instead, "
          "and one run shows no interval. Aggregate figures use scores normalized per task, "
          "(R - random) / (reference - random), as in Agarwal et al. (2021). Every number here and in the "
          f"figures is read from [results.csv]({_rel(written[0], out_dir)}).", ""]
    if store.runs.empty:
        md += ["**No runs found.**", ""]
    grid_dirs = plots.grid_output_dirs(store, out_dir / "tables")
    for grid in store.grid_names:
        res = all_results[grid]
        sub = res.store
        md += [f"## Grid `{grid}`", "", *grid_summary(sub, grid), "", "### Methods", "", *methods_section(res), "",
               "### Failed or unfinished runs", "", *problem_runs(sub, grid, res.final), "", "### Final return", ""]
        lines, paths = _tables_section(res, out_dir, grid_dirs[grid], grid)
        md += lines
        written += paths
        identical = res.identical_note()
        if identical:
            md += [f"Identical methods: {identical}", ""]
        search = line_search_table(res)
        if len(search):
            path = grid_dirs[grid] / "line_search.csv"
            atomic_write_text(path, search.to_csv(index=False))
            written.append(path)
            md += ["### Line search", "",
                   "Updates whose line search took at least one backtrack, and whose step was rejected "
                   "(parameters left at θ_old), over every update of every run:", "",
                   *_line_search_markdown(search), "", _also_as([path], out_dir), ""]
        if res.tasks_left_out:
            md += [f"No reference score for {_code_list(res.tasks_left_out)}: left out of the aggregate "
                   "(normalized) figures; pass `reference_overrides` to include them.", ""]
        if res.runs_per_group() == 1:
            md += ["One run in some group: no aggregate figure, performance profile or probability of improvement "
                   "is drawn, and no interval is given.", ""]
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
    report = out_dir / REPORT
    atomic_write_text(report, "\n".join(md))
    return [*written, report]


def write_report(runs_dirs: Sequence[Path], out_dir: Path, **kwargs: Any) -> Path:
    """Write <out_dir>/report.md with its figures and tables/ beside it; return its path."""
    return write_report_files(runs_dirs, out_dir, **kwargs)[-1]



def inputs_of(grid_dir: Path) -> dict:
    """What a grid's figures are drawn from: each file the analysis reads (grid.json and each
    run's ``RECORD_FILES``) by path, mtime and size, and a hash of this package's code.
    ``trpo-bench grid`` keeps the figures of a finished grid whose inputs are unchanged; any
    difference (a run added, removed, extended or evaluated, a copied file with an old time,
    new analysis code) draws them again."""
    grid_dir = Path(grid_dir)
    files = [grid_dir / GRID]
    for run_dir in iter_run_dirs(grid_dir, partial=True):
        files += [run_dir / name for name in RECORD_FILES]
    stats_ = []
    for f in files:
        try:
            st = f.stat()
        except FileNotFoundError:
            continue
        stats_.append([f.relative_to(grid_dir).as_posix(), st.st_mtime_ns, st.st_size])
    code = hashlib.sha256()
    for source in sorted(Path(__file__).parent.glob("*.py")):
        code.update(source.name.encode() + b"\0" + source.read_bytes())
    return {"files": stats_, "analysis_code": code.hexdigest()}

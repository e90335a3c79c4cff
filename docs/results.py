"""Write the generated blocks of docs/results.md from the committed stores in results/.

    python docs/results.py            # rewrite every block whose store is committed
    python docs/results.py --check    # exit 1 when a block differs from what its store says

The README's results table (``<!-- results:readme ... -->``) is written the same way, from
results/mujoco.

A block sits between ``<!-- results:NAME ... -->`` and ``<!-- results:end NAME -->`` and says,
for the store ``results/NAME``: which runs it holds and what computed them (versions, CPU kind,
commit), the final training return of each method and task (IQM with its 95% bootstrap CI,
mean ± std over seeds, n), the trust-region diagnostics of its updates, and, for a store with
evaluations (the benchmark), its figures beside sb3-contrib's and Tianshou's under each
publisher's statistic. Every number is read from the store through ``analysis``;
tests/test_results_doc.py fails when a block differs.
"""

from __future__ import annotations

import argparse
import functools
import json
import math
import re
import sys
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from analysis import results, stats, summary  # noqa: E402
from analysis.load import load_store  # noqa: E402
from trpo_bench.rundir import atomic_write_text, iter_run_dirs, read_config  # noqa: E402

DOC = ROOT / "docs" / "results.md"
README = ROOT / "README.md"
BENCHMARK = "mujoco"  # the store whose TRPO rows the README's table shows
RESULTS = ROOT / "results"
BEGIN = re.compile(r"<!-- results:(?P<name>[\w.-]+) [^>]*-->\n.*?<!-- results:end (?P=name) -->", re.S)
REPS = 5000


def provenance(store: Path) -> dict:
    """What the store's runs were and what computed them (read from each run's config.json)."""
    configs = [read_config(d) for d in iter_run_dirs(store)]
    versions = {json.dumps(c.get("versions", {}), sort_keys=True) for c in configs}
    commits = sorted({(c.get("git_commit") or "unknown")[:7] for c in configs})
    grid = json.loads((store / "grid.json").read_text()) if (store / "grid.json").is_file() else {}
    return {"runs": len(configs), "grid_runs": len(grid.get("runs", [])), "source": grid.get("source"),
            "tasks": sorted({c["env_id"] for c in configs}), "seeds": sorted({int(c["seed"]) for c in configs}),
            "steps": sorted({int(c["total_steps"]) for c in configs}),
            "versions": [json.loads(v) for v in sorted(versions)], "commits": commits}


def _seeds(seeds: list[int]) -> str:
    if len(seeds) > 2 and seeds == list(range(seeds[0], seeds[-1] + 1)):
        return f"{seeds[0]}-{seeds[-1]}"
    return ", ".join(map(str, seeds))


def _versions(v: dict) -> str:
    names = [("trpo_bench", "trpo-bench"), ("torch", "torch"), ("numpy", "NumPy"), ("gymnasium", "gymnasium"),
             ("mujoco", "MuJoCo"), ("python", "Python")]
    return ", ".join(f"{label} {v[k]}" for k, label in names if k in v) + f"; CPU {v.get('cpu', 'unknown')}"


def _num(x: float, digits: int = 0) -> str:
    return "-" if not math.isfinite(x) else f"{x:,.{digits}f}"


def _iqm_cell(res: results.Results, task: str, method: str) -> str:
    """IQM over seeds with its 95% bootstrap CI, or the runs' range below MIN_RUNS_FOR_CI, as
    ``analysis.results`` computed it for the grid's report and figures."""
    rows = res.rows("final_return", statistic="iqm", task=task, group=method)
    if rows.empty:
        return "-"
    r = rows.iloc[0]
    iv = f" [{_num(r['ci_low'])}, {_num(r['ci_high'])}]" if r["interval"] == stats.CI_KIND else \
        (f" (range {_num(r['ci_low'])}-{_num(r['ci_high'])})" if r["interval"] else "")
    return f"{_num(r['estimate'])}{iv}"


def final_table(res: results.Results) -> list[str]:
    """Method x task: IQM [CI], mean ± std, n."""
    final = res.final[summary.usable(res.final)]
    tasks = sorted(final["env_id"].unique())
    head = "| method | " + " | ".join(f"{t}: IQM [95% CI] | mean ± std | n" for t in tasks) + " |"
    lines = [head, "|---|" + "---:|---:|---:|" * len(tasks)]
    for method in res.methods:
        cells = []
        for task in tasks:
            v = final.loc[(final["method"] == method) & (final["env_id"] == task), "final"].to_numpy(float)
            if v.size == 0:
                cells += ["", "", "0"]
                continue
            sd = float(np.std(v, ddof=1)) if v.size > 1 else math.nan
            cells += [_iqm_cell(res, task, method), f"{_num(float(v.mean()))} ± {_num(sd)}", str(v.size)]
        lines.append(f"| {method} | " + " | ".join(cells) + " |")
    return lines


def difference_table(res: results.Results) -> list[str]:
    """Per pair of ``results.comparison_pairs``: the IQM difference per task with its CI."""
    d = res.rows("final_return_difference")
    if d.empty:
        return []
    tasks = sorted(d["task"].unique())
    lines = ["", "IQM of each setting's final training return minus its reference's (the algorithm at the "
             "default settings; NPG and PG also against TRPO at the same settings), with a 95% bootstrap CI "
             "that resamples each group's runs independently; n: runs in the smaller group:", "",
             "| difference | " + " | ".join(f"{t}: IQM difference [95% CI] | n" for t in tasks) + " |",
             "|---|" + "---:|---:|" * len(tasks)]
    for (group, versus), g in d.groupby(["group", "versus"], sort=False):
        cells = []
        for task in tasks:
            r = g[g["task"] == task]
            if r.empty:
                cells += ["", "0"]
                continue
            r = r.iloc[0]
            iv = f" [{_signed(r['ci_low'])}, {_signed(r['ci_high'])}]" if r["interval"] == stats.CI_KIND else ""
            cells += [f"{_signed(r['estimate'])}{iv}", str(int(r["n"]))]
        lines.append(f"| {group} − {versus} | " + " | ".join(cells) + " |")
    return lines


def _signed(x: float) -> str:
    return "-" if not math.isfinite(x) else f"{x:+,.0f}".replace("-", "−")


def diagnostics(res: results.Results) -> pd.DataFrame:
    """Per (method, task): each run's mean over its updates, then the mean over runs."""
    done = res.final[summary.usable(res.final)]
    m = res.metrics[res.metrics["run_id"].isin(done["run_id"])] if len(res.metrics) else res.metrics
    if m.empty:
        return pd.DataFrame()
    cfg = done.set_index("run_id")
    rows = []
    for run_id, u in m.groupby("run_id", sort=False):
        c = cfg.loc[run_id]
        delta, damping = float(c["max_kl"]), float(c["cg_damping"])
        backtracks = u["policy/backtracks"].astype(float)
        fraction = u["policy/step_fraction"].astype(float)
        step = u["policy/step_norm"].astype(float)
        # The damping term's share of the step's quadratic model sᵀ(F + λI)s: λ‖s‖² / sᵀ(F + λI)s
        # = λ ‖full step‖² / 2δ, since the full step β s has β² sᵀ(F + λI)s = 2δ.
        full = step / fraction.where(fraction > 0) if fraction.notna().any() else step
        natural = c["algo"] in ("trpo", "npg")  # PG has no CG solve, no quadratic model
        rows.append({
            "method": c["method"], "task": c["env_id"],
            "backtracking": float((backtracks > 0).mean()) if backtracks.notna().any() else math.nan,
            "rejected": float((u["policy/accepted"].astype(float) == 0).mean()),
            "kl": float((u["policy/kl"].astype(float) / delta).mean()),
            "kl_max": float((u["policy/kl_max"].astype(float) / delta).mean()),
            "cg_residual": float((u["policy/cg_residual"].astype(float)
                                  / u["policy/grad_norm"].astype(float)).median()),
            "damping": float((damping * full**2 / (2 * delta)).median()) if natural else math.nan,
            "update_ms": 1e3 * float(u["time/policy_update"].astype(float).median()),
        })
    return pd.DataFrame(rows).groupby(["method", "task"], sort=False).mean().reset_index()


def diagnostics_table(res: results.Results) -> list[str]:
    d = diagnostics(res)
    if d.empty:
        return []
    order = {m: i for i, m in enumerate(res.methods)}
    d = d.sort_values(["task", "method"], key=lambda s: s.map(order) if s.name == "method" else s)
    lines = ["| method | task | updates that backtracked | steps rejected | mean KL / δ | max KL / δ "
             "| CG residual / ‖g‖ (median) | damping share (median) | policy update, ms (median) |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    def pct(x: float) -> str:
        return "-" if not math.isfinite(x) else f"{100 * x:.1f}%"

    def num(x: float, spec: str) -> str:
        return "-" if not math.isfinite(x) else format(x, spec)

    for r in d.to_dict("records"):
        lines.append(f"| {r['method']} | {r['task']} | {pct(r['backtracking'])} | {pct(r['rejected'])} | "
                     f"{num(r['kl'], '.2f')} | {num(r['kl_max'], '.1f')} | {num(r['cg_residual'], '.2g')} | "
                     f"{pct(r['damping'])} | {num(r['update_ms'], '.1f')} |")
    return lines


# Published TRPO and NPG figures on the MuJoCo v3 tasks at 1M steps, each with its statistic.
SB3 = {  # sb3-contrib docs/modules/trpo.rst, "Results": 3 seeds, MuJoCo 2.1; rl-baselines3-zoo's
    # all_plots.py prints the mean over seeds of the last evaluation (20 episodes of the mean
    # action, every 50,000 steps) "+/-" its standard error; tuned per task (hyperparams/trpo.yml).
    "Hopper": (3372, 215), "HalfCheetah": (1803, 46), "Walker2d": (4502, 234), "Ant": (3554, 591),
    "Swimmer": (359, 2),
}
TIANSHOU = {  # thu-ml/tianshou examples/mujoco/README.md (TRPO #340, NPG #347, April 2021): 10
    # seeds; the largest mean over seeds of the test return (10 episodes of the stochastic
    # policy after each 30,000-step epoch) ± the std over seeds there; one setting for all tasks.
    "trpo": {"Hopper": (2046.0, 1037.9), "HalfCheetah": (4471.2, 804.9), "Walker2d": (3826.7, 782.7),
             "Ant": (2866.7, 707.9), "Swimmer": (40.9, 19.6)},
    "npg": {"Hopper": (1915.2, 550.5), "HalfCheetah": (3485.2, 716.6), "Walker2d": (2503.2, 963.3),
            "Ant": (2358.0, 517.5), "Swimmer": (31.5, 8.0)},
}
SB3_URL = "https://github.com/Stable-Baselines-Team/stable-baselines3-contrib/blob/master/docs/modules/trpo.rst"
TIANSHOU_URL = "https://github.com/thu-ml/tianshou/blob/master/examples/mujoco/README.md"


def _task(env_id: str) -> str:
    return env_id.split("-v")[0]


def _task_order(tasks) -> list[str]:
    """The published tables' order, then any other task by name."""
    return sorted(tasks, key=lambda t: (list(SB3).index(_task(t)) if _task(t) in SB3 else len(SB3), t))


def _pm(mean: float, spread: float, digits: int = 0) -> str:
    return f"{_num(mean, digits)} ± {_num(spread, digits)}"


def _method_of(res: results.Results, algo: str) -> str | None:
    """The one method of ``algo`` among the finished runs (None without any); a store varying a
    setting within one algorithm has no single figure to set beside a published one."""
    done = res.final[res.final["finished"].astype(bool) & (res.final["algo"] == algo)]
    methods = sorted(done["method"].unique())
    if len(methods) > 1:
        raise ValueError(f"{res.grid}: {algo} runs with different settings ({', '.join(methods)}); the "
                         "comparison with published figures needs one setting per algorithm")
    return methods[0] if methods else None


def _evaluations(res: results.Results, method: str) -> str:
    """How ``method``'s finished runs evaluated during training, e.g. 'the policy sampling its
    actions, 10 episodes every 30,720 steps'."""
    runs = res.final[res.final["finished"].astype(bool) & (res.final["method"] == method)]
    runs = runs[runs["eval_every"].astype(int) > 0]
    return "; ".join(sorted({f"{'its mean action' if d else 'the policy sampling its actions'}, {int(e)} episodes "
                             f"every {int(n) * int(k):,} steps" for d, e, n, k in
                             runs[["eval_deterministic", "eval_episodes", "eval_every", "steps_per_update"]]
                             .itertuples(index=False)}))


def _row(frame: pd.DataFrame, method: str | None, task: str) -> pd.Series | None:
    rows = frame[(frame["method"] == method) & (frame["env_id"] == task)]
    return rows.iloc[0] if len(rows) else None


def published_tables(res: results.Results) -> list[str]:
    """Ours beside sb3-contrib's and Tianshou's figures, each under the publisher's statistic,
    each table after a blank line; none when the store has neither a final evaluation nor
    evaluations during training."""
    final = summary.final_eval_mean_se(res.final)
    best = summary.best_mean_eval(res.metrics, res.final)
    if final.empty and best.empty:
        return []
    tasks = _task_order(set(final["env_id"]) | set(best["env_id"]))
    trpo, npg = _method_of(res, "trpo"), _method_of(res, "npg")
    lines: list[str] = []
    if trpo in set(final["method"]):
        done = res.final[res.final["finished"].astype(bool) & (res.final["method"] == trpo)]
        episodes = "/".join(str(int(e)) for e in sorted(done["eval_json_episodes"].dropna().unique()))
        lines += ["", f"The final policy's mean action, {episodes} episodes (`trpo-bench evaluate`), against "
                  f"[sb3-contrib]({SB3_URL}): mean over seeds ± standard error (std / √n), rl-baselines3-zoo's "
                  "statistic:", "",
                  "| task | trpo-bench TRPO (v5) | n | sb3-contrib TRPO (v3, tuned per task) | n |",
                  "|---|---:|---:|---:|---:|"]
        for task in tasks:
            r, pub = _row(final, trpo, task), SB3.get(_task(task))
            lines.append(f"| {task} | {'-' if r is None else _pm(r['mean'], r['se'])} | {0 if r is None else r['n']} "
                         f"| {_pm(*pub) if pub else '-'} | {3 if pub else ''} |")
        lines += terms_table(res, trpo, tasks, episodes)
    if len(best):
        how = "; ".join(f"{summary.algo_label(a)}: {_evaluations(res, m)}" for a, m in (("trpo", trpo), ("npg", npg))
                        if m in set(best["method"]))
        lines += ["", f"Evaluation during training ({how}), against [Tianshou]({TIANSHOU_URL}): the largest mean "
                  "over seeds ± the std over seeds at that evaluation, Tianshou's statistic (Tianshou: 10 seeds, "
                  "evaluating the policy sampling its actions):", "",
                  "| task | trpo-bench TRPO | n | Tianshou TRPO | trpo-bench NPG | n | Tianshou NPG |",
                  "|---|---:|---:|---:|---:|---:|---:|"]
        for task in tasks:
            cells = []
            for algo, method in (("trpo", trpo), ("npg", npg)):
                r, pub = _row(best, method, task), TIANSHOU[algo].get(_task(task))
                cells += ["-" if r is None else f"{_pm(r['mean'], r['std'])} at {summary.format_steps(r['env_steps'])}",
                          str(0 if r is None else r["n"]), _pm(*pub, digits=1) if pub else "-"]
            lines.append(f"| {task} | " + " | ".join(cells) + " |")
    return lines


@functools.cache
def _computed(store_dir: Path, reps: int) -> results.Results:
    """The statistics of one store, computed once per process: the benchmark's block and the
    README's table read the same ones."""
    return results.compute(load_store(store_dir), reps=reps)


TERMS = ("forward", "ctrl", "contact", "survive")  # gymnasium's MuJoCo reward terms, in this order


def _term(x: float) -> str:
    """A reward term: whole numbers, one decimal below 10 in size (Swimmer's action cost), a true minus."""
    return _num(x, 1 if abs(x) < 10 else 0).replace("-", "−")


def terms_table(res: results.Results, method: str, tasks: list[str], episodes: str) -> list[str]:
    """The reward terms behind the final mean-action return of ``method``, per task (none when
    its evaluations recorded no terms), after a blank line; return and terms over the same runs."""
    terms = summary.final_eval_terms(res.final)
    terms = terms[terms["method"] == method]
    if terms.empty:
        return []
    names = [t for t in TERMS if t in set(terms["term"])] + sorted(set(terms["term"]) - set(TERMS))
    lines = ["", "Where that return comes from: each reward term the task reports in its infos, summed over "
             f"an episode, averaged over the {episodes} episodes and then over the seeds (ctrl is the action cost; "
             "survive the healthy reward, 1 per step alive on these tasks):", "",
             "| task | return | " + " | ".join(names) + " | n |", "|---|---:|" + "---:|" * len(names) + "---:|"]
    for task in tasks:
        here = terms[terms["env_id"] == task].set_index("term")
        if here.empty:
            continue
        cells = [_term(here.at[t, "mean"]) if t in here.index else "-" for t in names]
        lines.append(f"| {task} | {_num(here['return'].iloc[0])} | " + " | ".join(cells) + f" | {here['n'].iloc[0]} |")
    return lines


def block(name: str) -> str:
    """The generated text for results/<name>."""
    store_dir = RESULTS / name
    p = provenance(store_dir)
    res = _computed(store_dir, REPS)
    (version,) = p["versions"] if len(p["versions"]) == 1 else (None,)
    lines = [
        f"<!-- results:{name} written by docs/results.py from results/{name}; do not edit by hand -->",
        f"**Runs:** {p['runs']} of the grid's {p['grid_runs']} (`{p['source']}`, store `results/{name}`): "
        f"{', '.join(p['tasks'])}; {', '.join(f'{s:,}' for s in p['steps'])} steps each; seeds {_seeds(p['seeds'])}. "
        + (f"Computed by {_versions(version)}" if version else
           f"Computed by {len(p['versions'])} version sets: " + "; ".join(map(_versions, p["versions"])))
        + f"; commit {', '.join(p['commits'])}.",
        "",
        "Final training return (mean episode return over each run's last 10% of updates); IQM with its "
        "95% bootstrap CI over seeds, mean ± standard deviation, n runs:",
        "",
        *final_table(res),
        *difference_table(res),
        "",
        "Trust-region diagnostics of the finished runs (each run's updates averaged, then the runs; KL is "
        "the mean or largest per-state KL(π_old ‖ π_new) after the update; the CG residual is "
        "‖g − (F + λI)s‖ over ‖g‖; the damping share is λ‖s‖² / sᵀ(F + λI)s):",
        "",
        *diagnostics_table(res),
        *published_tables(res),
        f"<!-- results:end {name} -->",
    ]
    return "\n".join(lines)


def readme_block() -> str:
    """The README's short results table: TRPO on the benchmark's tasks against the published
    figures, from results/mujoco."""
    res = _computed(RESULTS / BENCHMARK, REPS)
    trpo = _method_of(res, "trpo")
    final = res.final[summary.usable(res.final) & (res.final["method"] == trpo)]
    evals = summary.final_eval_mean_se(res.final)
    best = summary.best_mean_eval(res.metrics, res.final)
    steps = "/".join(summary.format_steps(n) for n in provenance(RESULTS / BENCHMARK)["steps"])
    lines = [f"<!-- results:readme written by docs/results.py from results/{BENCHMARK}; do not edit by hand -->",
             f"TRPO at the defaults, {steps} steps, v5 tasks; the published figures are for v3. Each pair uses "
             "the publisher's statistic: the final policy's mean action, mean ± standard error over seeds, against "
             "sb3-contrib (3 seeds, tuned per task); the best mean over seeds of the evaluations during training "
             f"({_evaluations(res, trpo)}), ± std, against Tianshou (10 seeds, sampling). The training return is "
             "the IQM over seeds with its 95% bootstrap CI. n: our runs in each statistic. Tables, NPG and PG, and "
             "why the figures differ: "
             "[docs/results.md](docs/results.md#7-the-benchmark-trpo-npg-and-pg-on-five-tasks).",
             "",
             "| task | training return, IQM [95% CI] | n | final mean action | n | sb3-contrib | best evaluation | n "
             "| Tianshou |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for task in _task_order(final["env_id"].unique()):
        v = final.loc[final["env_id"] == task, "final"].to_numpy(float)
        e, b = _row(evals, trpo, task), _row(best, trpo, task)
        pub_sb3, pub_ts = SB3.get(_task(task)), TIANSHOU["trpo"].get(_task(task))
        lines.append(f"| {task} | {_iqm_cell(res, task, trpo)} | {v.size} | "
                     f"{'-' if e is None else _pm(e['mean'], e['se'])} | {0 if e is None else e['n']} | "
                     f"{_pm(*pub_sb3) if pub_sb3 else '-'} | "
                     f"{'-' if b is None else _pm(b['mean'], b['std'])} | {0 if b is None else b['n']} | "
                     f"{_pm(*pub_ts) if pub_ts else '-'} |")
    lines.append("<!-- results:end readme -->")
    return "\n".join(lines)


def render(text: str) -> str:
    """``text`` with each block of a committed store rewritten (the README's block from the
    benchmark's store)."""
    def sub(m: re.Match) -> str:
        if m["name"] == "readme":
            return readme_block() if (RESULTS / BENCHMARK / "grid.json").is_file() else m[0]
        return block(m["name"]) if (RESULTS / m["name"] / "grid.json").is_file() else m[0]
    return BEGIN.sub(sub, text)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--check", action="store_true",
                    help="exit 1 when docs/results.md or the README's table is not what the stores say")
    args = ap.parse_args(argv)
    stale = []
    for doc in (DOC, README):
        text = doc.read_text()
        new = render(text)
        if new != text:
            stale.append(doc)
            if not args.check:
                atomic_write_text(doc, new)
                print(doc)
    if args.check and stale:
        print(f"{' and '.join(str(d.relative_to(ROOT)) for d in stale)} differ from the stores in results/: "
              "run python docs/results.py", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

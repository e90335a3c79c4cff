"""Write the generated blocks of docs/results.md from the committed stores in results/.

    python docs/results.py            # rewrite every block whose store is committed
    python docs/results.py --check    # exit 1 when a block differs from what its store says

A block sits between ``<!-- results:NAME ... -->`` and ``<!-- results:end NAME -->`` and says,
for the store ``results/NAME``: which runs it holds and what computed them (versions, CPU kind,
commit), the final training return of each method and task (IQM with its 95% bootstrap CI,
mean ± std over seeds, n), and the trust-region diagnostics of its updates. Every number is
read from the store through ``analysis``; tests/test_results_doc.py fails when a block differs.
"""

from __future__ import annotations

import argparse
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
            point, low, high, kind = stats.estimate_over_runs(v, "iqm", reps=REPS,
                                                              seed=stats.keyed_rng(0, task, method))
            iv = f" [{_num(low)}, {_num(high)}]" if kind == stats.CI_KIND else \
                (f" (range {_num(low)}-{_num(high)})" if kind else "")
            sd = float(np.std(v, ddof=1)) if v.size > 1 else math.nan
            cells += [f"{_num(point)}{iv}", f"{_num(float(v.mean()))} ± {_num(sd)}", str(v.size)]
        lines.append(f"| {method} | " + " | ".join(cells) + " |")
    return lines


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


def block(name: str) -> str:
    """The generated text for results/<name>."""
    store_dir = RESULTS / name
    p = provenance(store_dir)
    store = load_store(store_dir)
    res = results.compute(store, reps=REPS)
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
        "",
        "Trust-region diagnostics of the finished runs (each run's updates averaged, then the runs; KL is "
        "the mean or largest per-state KL(π_old ‖ π_new) after the update; the CG residual is "
        "‖g − (F + λI)s‖ over ‖g‖; the damping share is λ‖s‖² / sᵀ(F + λI)s):",
        "",
        *diagnostics_table(res),
        f"<!-- results:end {name} -->",
    ]
    return "\n".join(lines)


def render(text: str) -> str:
    """``text`` with each block of a committed store rewritten."""
    def sub(m: re.Match) -> str:
        return block(m["name"]) if (RESULTS / m["name"] / "grid.json").is_file() else m[0]
    return BEGIN.sub(sub, text)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--check", action="store_true", help="exit 1 when docs/results.md is not what the stores say")
    args = ap.parse_args(argv)
    text = DOC.read_text()
    new = render(text)
    if args.check:
        if new != text:
            print("docs/results.md differs from the stores in results/: run python docs/results.py", file=sys.stderr)
            return 1
        return 0
    if new != text:
        atomic_write_text(DOC, new)
        print(DOC)
    return 0


if __name__ == "__main__":
    sys.exit(main())

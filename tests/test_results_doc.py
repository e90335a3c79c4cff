"""The committed results come from the current code, and docs/results.md says what they hold.

Every run in a committed store carries the settings its grid file expands to today (so the
current defaults wherever the grid does not set a value) and was computed by this version of
trpo-bench; docs/results.md has a block for each store, and each block is what
docs/results.py writes from it (runs, versions, CPU kind, returns, diagnostics); and today's
code still computes a committed run's numbers (its first updates, retrained)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from test_docs import ROOT, doc_script

from trpo_bench import __version__
from trpo_bench.config import complete_settings
from trpo_bench.grid import load_grid
from trpo_bench.rundir import iter_run_dirs, read_config

STORES = sorted(p.parent for p in (ROOT / "results").glob("*/grid.json"))


def test_there_are_committed_stores():
    assert any(s.name == "quickstart" for s in STORES)


@pytest.mark.parametrize("store", STORES, ids=lambda p: p.name)
def test_every_run_carries_what_its_grid_file_gives_it_today(store: Path):
    record = json.loads((store / "grid.json").read_text())
    grid = load_grid(ROOT / record["source"], check_envs=False)
    expected = {r.run_id: r.config.to_dict() for r in grid.runs}
    runs = list(iter_run_dirs(store))
    assert runs
    for run in runs:
        config = read_config(run)
        assert config["run_id"] in expected, f"{run}: not a run of {record['source']} today"
        stored = complete_settings(config["config"])  # a setting added since stands for its default
        today = json.loads(json.dumps(expected[config["run_id"]]))  # tuples as JSON stores them
        assert stored == today, (run, {k: (stored.get(k), v) for k, v in today.items() if stored.get(k) != v})
        assert config["versions"]["trpo_bench"] == __version__, run


def test_every_study_store_is_described_in_docs_results():
    script = doc_script("results")
    text = script.DOC.read_text()
    for store in STORES:
        if store.name == "quickstart":  # the README's quickstart block describes it
            continue
        assert f"<!-- results:{store.name} written by docs/results.py" in text, store.name
    assert script.main(["--check"]) == 0, "run: python docs/results.py"


def test_every_number_in_a_headline_is_in_its_section_s_generated_block():
    """A headline quotes its own section's tables, so it cannot drift from the stores."""
    import re

    text = (ROOT / "docs" / "results.md").read_text()
    number = re.compile(r"(?<![\w.,-])(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?%?(?![\w])")
    checked = 0
    for section in text.split("\n## ")[1:]:
        blocks = "".join(re.findall(r"<!-- results:.*?<!-- results:end", section, re.S))
        quoted = set(number.findall(blocks))
        for para in section.split("\n\n"):
            if not para.startswith("**Headline"):
                continue
            for n in number.findall(para):
                assert n in quoted, f"headline number {n} is not in its section's table: {para[:80]}"
                checked += 1
    assert checked >= 5


@pytest.fixture(scope="module")
def benchmark_store(tmp_path_factory):
    """A tiny benchmark-like store: TRPO and NPG on Hopper-v5, 2 seeds, evaluated by sampling
    during training and by `trpo-bench evaluate` after it, exported as results/mujoco would be."""
    import yaml

    from trpo_bench.cli import main

    tmp = tmp_path_factory.mktemp("benchmark")
    grid = {"name": "mujoco", "seeds": 2, "axes": {"algo": ["trpo", "npg"]},
            "base": {"env_id": "Hopper-v5", "total_steps": 2048, "steps_per_update": 512, "num_envs": 2,
                     "eval_every": 1, "eval_episodes": 2, "eval_deterministic": False}}
    (tmp / "g.yaml").write_text(yaml.safe_dump(grid))
    assert main(["grid", str(tmp / "g.yaml"), "--out", str(tmp / "runs"), "--wandb", "disabled",
                 "--workers", "1", "--no-analysis"]) == 0
    assert main(["evaluate", str(tmp / "runs" / "mujoco"), "--episodes", "3"]) == 0
    assert main(["export", str(tmp / "runs" / "mujoco"), str(tmp / "results" / "mujoco"), "--done-only"]) == 0
    return tmp / "results"


def _run_files(store: Path) -> dict[str, tuple[dict, list[dict]]]:
    import csv

    out = {}
    for run in iter_run_dirs(store / "mujoco"):
        with open(run / "metrics.csv", newline="") as f:
            out[run.name] = (json.loads((run / "eval.json").read_text()), list(csv.DictReader(f)))
    return out


def test_the_benchmark_stands_beside_published_figures_under_their_statistics(benchmark_store):
    """sb3-contrib's statistic (the final mean action's return, mean ± std/√n over seeds) and
    Tianshou's (the largest seed-mean of the evaluations during training ± the std there),
    recomputed here from eval.json and metrics.csv, are what the tables print, beside the
    published figures."""
    import numpy as np

    from analysis import results
    from analysis.load import load_store

    script = doc_script("results")
    script.RESULTS, script.REPS = benchmark_store, 200
    text = "\n".join(script.published_tables(results.compute(load_store(benchmark_store / "mujoco"), reps=200)))
    readme = script.readme_block()
    files = _run_files(benchmark_store)
    expect = {}
    for algo in ("trpo", "npg"):
        runs = [v for k, v in files.items() if k.startswith(f"{algo}-")]
        final = np.array([e["return_mean"] for e, _ in runs])
        assert all(e["episodes"] == 3 and e["deterministic"] for e, _ in runs)
        per_eval = np.array([[float(r["eval/return_mean"]) for r in rows] for _, rows in runs])  # (seeds, evals)
        best = int(per_eval.mean(axis=0).argmax())
        expect[algo] = (f"{final.mean():,.0f} ± {final.std() / np.sqrt(final.size):,.0f}",
                        f"{per_eval[:, best].mean():,.0f} ± {per_eval[:, best].std():,.0f}")
    assert f"| Hopper-v5 | {expect['trpo'][0]} | 2 | 3,372 ± 215 | 3 |" in text
    assert f"| Hopper-v5 | {expect['trpo'][1]} at " in text
    assert f"| 2 | 2,046.0 ± 1,037.9 | {expect['npg'][1]} at " in text and "| 2 | 1,915.2 ± 550.5 |" in text
    assert "TRPO: the policy sampling its actions, 2 episodes every 512 steps" in text
    assert "The final policy's mean action, 3 episodes" in text
    assert f"| 2 | {expect['trpo'][0]} | 2 | 3,372 ± 215 | {expect['trpo'][1]} | 2 | 2,046 ± 1,038 |" in readme
    assert "TRPO at the defaults, 2.05k steps" in readme
    # the reward terms behind TRPO's mean-action return, averaged over its runs' eval.json
    trpo_terms = [e["reward_terms"] for k, (e, _) in files.items() if k.startswith("trpo-")]
    means = [np.mean([t[f"reward_{name}"] for t in trpo_terms]) for name in ("forward", "ctrl", "survive")]
    cells = " | ".join((f"{m:,.1f}" if abs(m) < 10 else f"{m:,.0f}").replace("-", "−") for m in means)
    assert "| task | return | forward | ctrl | survive | n |" in text
    assert f"| Hopper-v5 | {expect['trpo'][0].split(' ± ')[0]} | {cells} | 2 |" in text


def test_a_store_varying_one_algorithm_has_no_single_figure_to_publish(tmp_path):
    """The comparison with a published figure takes each algorithm's one method; a store whose
    TRPO runs vary a setting is refused by name rather than compared on one of its methods."""
    from analysis import results
    from analysis.load import load_store
    from analysis.synthetic import write_synthetic_store

    res = results.compute(load_store(write_synthetic_store(tmp_path, updates=10) / "delta"), reps=50)
    script = doc_script("results")
    with pytest.raises(ValueError, match="trpo runs with different settings"):
        script._method_of(res, "trpo")
    assert script._method_of(res, "no-such-algo") is None


PREFIX_UPDATES = 10


def _retrained_runs() -> list[Path]:
    """The last run of each store by name (a non-default setting there: the torch value fit, δ = 0.1
    with TRPO's line search, 50 CG iterations, ...) and the quickstart's PG run of seed 0."""
    runs = [sorted(iter_run_dirs(store))[-1] for store in STORES]
    return runs + [ROOT / "results" / "quickstart" / "pg-CartPole-v1-s0"]


@pytest.mark.parametrize("stored_run", _retrained_runs(), ids=lambda p: f"{p.parent.name}/{p.name}")
def test_todays_code_computes_the_first_updates_of_a_committed_run_bit_for_bit(stored_run: Path, tmp_path: Path):
    """Recorded settings say what a run was asked to do; this says the code still does it: one run
    of each store, retrained for its first updates, gives the stored numbers in every column
    but the wall times. Bits hold on the CPU kind and library versions the run recorded."""
    import pandas as pd

    from trpo_bench.config import build_config
    from trpo_bench.train import RunOptions, run, versions

    config = read_config(stored_run)
    recorded, here = config["versions"], versions()
    differ = {k: (recorded.get(k), here[k]) for k in ("cpu", "torch", "numpy", "mujoco") if recorded.get(k) != here[k]}
    if differ:
        pytest.skip(f"bits are reproducible on the recording machine's CPU kind and versions only: {differ}")
    settings = complete_settings(config["config"])
    settings["total_steps"] = PREFIX_UPDATES * settings["steps_per_update"]
    cfg, problems = build_config(settings)
    assert not problems
    result = run(cfg, RunOptions(out=tmp_path, wandb="disabled", progress=False, handle_signals=False))
    today = pd.read_csv(Path(result.run_dir) / "metrics.csv")
    before = pd.read_csv(stored_run / "metrics.csv").iloc[:len(today)]
    assert len(today) == PREFIX_UPDATES
    columns = [c for c in today.columns if not c.startswith("time/")]
    assert list(today.columns) == list(before.columns)
    assert len(columns) > 15
    changed = [c for c in columns if not today[c].equals(before[c])]
    assert not changed, f"{stored_run.name}: today's code computes other numbers in {changed}; regenerate the store"


def test_differences_compare_each_setting_with_its_default_and_npg_with_trpo():
    """The δ store: each setting against its algorithm at δ = 0.01 and NPG against TRPO at the
    same δ; the estimate is the difference of scipy's 25%-trimmed means, and bit-identical runs
    differ by exactly 0."""
    import numpy as np
    import scipy.stats

    from analysis import results, summary
    from analysis.load import load_store

    res = results.compute(load_store(ROOT / "results" / "ablation_delta"), reps=1000)
    pairs = results.comparison_pairs(res)
    assert ("TRPO, δ=0.001", "TRPO, δ=0.01") in pairs and ("NPG, δ=0.1", "NPG, δ=0.01") in pairs
    assert ("NPG, δ=0.1", "TRPO, δ=0.1") in pairs and ("TRPO, δ=0.01", "TRPO, δ=0.01") not in pairs
    assert len(pairs) == 4 + 4 + 5
    d = res.rows("final_return_difference").set_index(["group", "versus", "task"])
    final = res.final[summary.usable(res.final)]

    def iqm(method, task):
        v = final.loc[(final["method"] == method) & (final["env_id"] == task), "final"].to_numpy(float)
        return scipy.stats.trim_mean(v, 0.25)

    far = d.loc[("TRPO, δ=0.001", "TRPO, δ=0.01", "HalfCheetah-v5")]
    expected = iqm("TRPO, δ=0.001", "HalfCheetah-v5") - iqm("TRPO, δ=0.01", "HalfCheetah-v5")
    assert far["estimate"] == pytest.approx(expected)
    assert far["ci_low"] < far["estimate"] < far["ci_high"] < 0 and far["n"] == 5
    same = d.loc[("NPG, δ=0.001", "TRPO, δ=0.001", "HalfCheetah-v5")]  # identical runs
    assert same["estimate"] == 0 and same["ci_low"] < 0 < same["ci_high"]
    assert np.isfinite(d["estimate"]).all() and (d["interval"] == results.CI).all()
    # aggregates over tasks too: identical runs, the same interval under either name
    agg = res.rows("normalized/IQM").set_index("group")[["estimate", "ci_low", "ci_high"]]
    assert agg.loc["TRPO, δ=0.001"].tolist() == agg.loc["NPG, δ=0.001"].tolist()

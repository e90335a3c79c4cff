"""analysis.report, analysis.tables and the command line."""

import re

import numpy as np
import pandas as pd
import pytest

from analysis import summary, tables
from analysis.__main__ import main
from analysis.load import load_store
from analysis.report import write_report, write_report_files
from analysis.synthetic import write_grid, write_synthetic_store

REPS = 200


@pytest.fixture(scope="module")
def store_root(tmp_path_factory):
    return write_synthetic_store(tmp_path_factory.mktemp("runs"), updates=20)


def section(md: str, title: str) -> str:
    start = md.index(title)
    end = md.find("\n### ", start + 1)
    return md[start: end if end > 0 else None]


def test_report_describes_the_grid_and_lists_failed_and_unfinished_runs(store_root, tmp_path, fast_figures):
    path = write_report([store_root / "main", store_root / "delta"], tmp_path, reps=REPS)
    assert path == tmp_path / "report.md"
    md = path.read_text()
    main = md[md.index("## Grid `main`"):]
    assert "`experiments/main.yaml`" in main
    assert "- Axis `algo`: `trpo`, `npg`, `pg`" in main
    assert "(3 seeds)" in main
    assert "18 found of 18 in grid.json; 16 finished, 2 failed or unfinished" in main
    problems = section(main, "### Failed or unfinished runs")
    assert "| `pg-CartPole-v1-s1` | pg | CartPole-v1 | 1 | failed | 0 / 20k | FloatingPointError" in problems
    assert "| `trpo-Hopper-v5-s2` | trpo | Hopper-v5 | 2 | running | 24k / 40k |  |" in problems
    assert "trpo-Hopper-v5-s0" not in problems

    delta = md[md.index("## Grid `delta`"): md.index("## Grid `main`")]
    assert "- Axis `max_kl`: `0.003`, `0.01`, `0.03`" in delta
    problems = section(delta, "### Failed or unfinished runs")
    assert "| `npg-CartPole-v1-max_kl=0.03-s0` | npg | CartPole-v1 | 0 | failed | 8k / 20k |" in problems
    assert "never started): `trpo-Hopper-v5-max_kl=0.03-s2`" in problems
    final = section(delta, "### Final return")
    assert "| task | TRPO, δ=0.003 | TRPO, δ=0.01 | TRPO, δ=0.03 | NPG, δ=0.003 | NPG, δ=0.01 | NPG, δ=0.03 |" in final
    assert re.search(r"\| CartPole-v1 \|.*n=2 of 3\) \|", final)  # the failed run is counted, not used
    # each setting against its algorithm's default δ, and NPG against TRPO at the same δ
    assert "| task | method | reference | IQM difference | n |" in final
    assert re.search(r"\| CartPole-v1 \| TRPO, δ=0.003 \| TRPO, δ=0.01 \| [+-][\d,.]+ \| \d \|", final)
    assert re.search(r"\| CartPole-v1 \| NPG, δ=0.03 \| TRPO, δ=0.03 \| [+-][\d,.]+ \| \d \|", final)
    assert re.search(r"\| CartPole-v1 \| PG \| TRPO \| [+-][\d,.]+", section(main, "### Final return"))


def test_report_figure_and_table_links_resolve(store_root, tmp_path):
    # Real rendering here: this writes the ablation figures (cg grid).
    md = write_report([store_root / "cg"], tmp_path, reps=REPS).read_text()
    assert "All runs finished" in md
    links = re.findall(r"\]\(([^)]+)\)", md)
    assert {"ablation_cg_iters.png", "ablation_cg_iters.pdf", "curves_cg_iters_trpo.png", "trust_region.pdf",
            "tables/final_return.csv", "tables/final_return.tex"} <= set(links)
    for link in links:
        target = tmp_path / link
        assert target.is_file() and target.stat().st_size > 0, link
    assert md.count("| task | TRPO, CG iters=1 | TRPO, CG iters=3 | TRPO, CG iters=10 |") == 1
    # two seeds per group: an IQM trims nothing, so no second table that merely repeats the mean
    assert "No interquartile-mean table" in md and "tables/final_return_iqm.csv" not in links
    final = md[md.index("### Final return"):md.index("IQM difference from the reference")]
    (row,) = [line for line in final.splitlines() if line.startswith("| Hopper-v5")]
    assert row.count("n=2)") == 3 and "[" not in row  # two runs each: their range, no CI


def test_report_computes_each_grids_statistics_once(store_root, tmp_path, fast_figures, monkeypatch):
    from analysis import results

    calls = []
    compute = results.compute
    monkeypatch.setattr(results, "compute", lambda store, **kw: calls.append(kw.get("grid")) or compute(store, **kw))
    paths = write_report_files([store_root / "cg", store_root / "main"], tmp_path, reps=REPS)
    assert sorted(calls) == ["cg", "main"]
    table = pd.read_csv(tmp_path / "results.csv")
    assert paths[0] == tmp_path / "results.csv" and set(table["grid"]) == {"cg", "main"}
    # the report's table cells are the results table's numbers
    row = table[(table["grid"] == "main") & (table["measure"] == "final_return") & (table["statistic"] == "mean")
                & (table["group"] == "TRPO") & (table["task"] == "CartPole-v1")].iloc[0]
    md = paths[-1].read_text()
    assert f"| CartPole-v1 | {row['estimate']:.0f} (runs {row['ci_low']:.0f}–{row['ci_high']:.0f}, n=3) |" in md


def test_final_table_numbers(tmp_path):
    final = pd.DataFrame({
        "env_id": ["A"] * 4 + ["B"] * 2,
        "method": ["X", "X", "X", "Y", "X", "Y"],
        "final": [1.0, 2.0, 3.0, 10.0, 5.0, np.nan],
        "finished": [True, True, False, True, True, True],
    })
    table = summary.final_table(final, reps=REPS).set_index(["env_id", "method"])
    assert table.loc[("A", "X"), "estimate"] == pytest.approx(1.5)  # the unfinished run is left out
    assert (table.loc[("A", "X"), "n"], table.loc[("A", "X"), "n_runs"]) == (2, 3)
    assert table.loc[("A", "X"), "ci_low"] <= 1.5 <= table.loc[("A", "X"), "ci_high"]
    assert np.isnan(table.loc[("B", "Y"), "estimate"])
    md = tables.to_markdown(table.reset_index())
    assert md.splitlines()[0] == "| task | X | Y |"
    # two of three runs used: their range, not a "CI"; one run: no interval at all
    assert "| A | 1.5 (runs 1.0–2.0, n=2 of 3) | 10.0 (n=1) |" in md
    assert "| B | 5.0 (n=1) | n/a (n=0 of 1) |" in md
    tex = tables.to_latex(table.reset_index(), caption="50% of runs_x")
    assert r"\caption{50\% of runs\_x}" in tex and r"\toprule" in tex and r"\bottomrule" in tex
    paths = tables.write_tables(table.reset_index(), tmp_path, "t")
    assert [p.name for p in paths] == ["t.csv", "t.md", "t.tex"]
    assert pd.read_csv(paths[0])["n"].tolist() == [2, 1, 1, 0]


def test_every_cell_names_its_run_count_and_a_ci_needs_five_runs():
    def markdown(seeds_y):
        final = pd.DataFrame({"env_id": ["A"] * (5 + seeds_y), "method": ["X"] * 5 + ["Y"] * seeds_y,
                              "final": 100 * np.arange(5.0 + seeds_y), "finished": True})
        return tables.to_markdown(summary.final_table(final, reps=REPS))
    assert markdown(5).count("(n=5)") == 2 and markdown(5).count("[") == 2
    md = markdown(3)
    assert "| A | 200 [" in md and "(n=5)" in md  # five runs: a bootstrap CI
    assert "| 600 (runs 500–700, n=3) |" in md  # three runs: their range, named as such


def test_final_table_iqm_drops_the_outer_quarters():
    final = pd.DataFrame({"env_id": ["A"] * 5, "method": ["X"] * 5, "final": [1.0, 2.0, 3.0, 4.0, 100.0],
                          "finished": [True] * 5})
    iqm = summary.final_table(final, statistic="iqm", reps=REPS).iloc[0]
    mean = summary.final_table(final, reps=REPS).iloc[0]
    assert iqm["estimate"] == pytest.approx(3.0)  # mean of 2, 3, 4: one run cut from each end
    assert mean["estimate"] == pytest.approx(22.0)
    assert 1.0 <= iqm["ci_low"] <= 3.0 <= iqm["ci_high"] <= 100.0


def test_a_groups_ci_does_not_depend_on_the_other_groups():
    a = pd.DataFrame({"env_id": ["B"] * 4, "method": ["X"] * 4, "final": [1.0, 5.0, 2.0, 9.0],
                      "finished": [True] * 4})
    more = pd.concat([pd.DataFrame({"env_id": ["A"] * 3, "method": ["X"] * 3, "final": [0.0, 1.0, 3.0],
                                    "finished": [True] * 3}), a], ignore_index=True)
    alone = summary.final_table(a, reps=REPS).iloc[0]
    beside = summary.final_table(more, reps=REPS).set_index("env_id").loc["B"]
    assert (alone["ci_low"], alone["ci_high"]) == (beside["ci_low"], beside["ci_high"])
    assert alone["ci_low"] < alone["ci_high"]


def test_report_tabulates_deterministic_evaluations(tmp_path, fast_figures):
    import json

    runs = tmp_path / "runs"
    write_grid(runs, "g", {"algo": ["trpo"], "env_id": ["Hopper-v5"]}, [0, 1, 2, 3, 4], updates=8,
               rng=np.random.default_rng(0))
    for seed, value in zip(range(4), [100.0, 200.0, 300.0, 5000.0]):  # seed 4 has no evaluation
        (runs / "g" / f"trpo-Hopper-v5-s{seed}" / "eval.json").write_text(
            json.dumps({"return_mean": value, "episodes": 10, "deterministic": True}))
    store = load_store([runs])
    assert store.runs.set_index("run_id")["eval_return"].fillna(-1).to_dict() == {
        "trpo-Hopper-v5-s0": 100.0, "trpo-Hopper-v5-s1": 200.0, "trpo-Hopper-v5-s2": 300.0,
        "trpo-Hopper-v5-s3": 5000.0, "trpo-Hopper-v5-s4": -1}
    md = write_report([runs / "g"], tmp_path / "out", reps=REPS).read_text()
    evaluation = section(md, "### Final policy, deterministic evaluation")
    assert "10 episodes per run" in evaluation
    # IQM of 100..5000: (200 + 300) / 2; four runs: their range, not a CI
    assert "| Hopper-v5 | 250 (runs 100–5000, n=4 of 5) |" in evaluation
    assert (tmp_path / "out" / "tables" / "eval_return_iqm.csv").is_file()


def test_line_search_table_counts_backtracked_and_rejected_updates():
    from analysis.load import RunStore
    from analysis.report import _line_search_markdown, line_search_table

    nan = float("nan")
    metrics = pd.DataFrame({
        "grid": "g", "run_id": ["a"] * 4 + ["b"] * 4 + ["c"] * 2, "algo": ["trpo"] * 8 + ["pg"] * 2,
        "env_id": "Hopper-v5", "seed": [0] * 4 + [1] * 4 + [0] * 2, "env_steps": [1, 2, 3, 4] * 2 + [1, 2],
        "policy/backtracks": [0, 2, 0, 0, 1, 0, 10, 0, nan, nan],  # PG has no line search
        "policy/accepted": [1, 1, 1, 1, 1, 1, 0, 1, nan, nan]})
    runs = metrics.drop_duplicates("run_id")[["grid", "run_id", "algo", "env_id", "seed"]].assign(_axes=[()] * 3)
    table = line_search_table(RunStore(metrics=metrics, runs=runs, grids={}, axes=()))
    assert table.to_dict("records") == [{"env_id": "Hopper-v5", "method": "TRPO", "runs": 2, "updates": 8,
                                         "backtracked": 3, "rejected": 1, "backtracks_per_update": 13 / 8}]
    assert _line_search_markdown(table)[-1] == "| Hopper-v5 | TRPO | 2 | 8 | 3 (37.5%) | 1 (12.5%) | 1.625 |"


def test_many_never_started_runs_are_counted_not_listed(tmp_path):
    import json

    from analysis.report import MAX_LISTED, problem_runs

    runs = tmp_path / "runs"
    write_grid(runs, "g", {"algo": ["trpo"], "env_id": ["CartPole-v1"]}, [0], updates=4, rng=np.random.default_rng(0))
    spec_path = runs / "g" / "grid.json"
    spec = json.loads(spec_path.read_text())
    spec["runs"] = spec["runs"] + [f"trpo-CartPole-v1-s{i}" for i in range(1, 16)]
    spec_path.write_text(json.dumps(spec))
    text = "\n".join(problem_runs(load_store([runs]).select_grid("g"), "g"))
    assert "15 runs listed in grid.json have no run directory" in text
    assert text.count("`trpo-CartPole-v1-s") == MAX_LISTED


def test_latex_escapes_special_characters():
    assert tables.latex_escape("TRPO, δ=0.01 & 5% #1_a") == r"TRPO, $\delta$=0.01 \& 5\% \#1\_a"


def test_cli_plot_and_report_default_paths(store_root, tmp_path, capsys, fast_figures):
    runs = tmp_path / "runs"
    write_grid(runs, "g", {"algo": ["trpo", "pg"], "env_id": ["CartPole-v1"]}, [0, 1], updates=8,
               rng=np.random.default_rng(0))
    assert main(["plot", str(runs), "--reps", "50"]) == 0
    printed = capsys.readouterr().out.split()
    assert printed and all(p.startswith(str(runs / "figures")) for p in printed)
    assert str(runs / "figures" / "curves.png") in printed
    assert main(["report", str(runs / "g"), "--reps", "50"]) == 0
    printed = capsys.readouterr().out.split()
    assert printed[-1] == str(runs / "g" / "figures" / "report.md")
    assert str(runs / "g" / "figures" / "tables" / "final_return.csv") in printed
    assert str(runs / "g" / "figures" / "curves.png") in printed
    with pytest.raises(SystemExit):
        main(["plot", str(tmp_path / "missing")])


def test_store_loaded_for_report_counts_every_run(store_root):
    runs = load_store(store_root / "delta").runs
    assert len(runs) == 35 and (~runs["finished"]).sum() == 1


def test_a_categorical_axis_separates_methods_like_a_numeric_one():
    """A grid over vf_backend (or fvp, activation) compares two methods; pooling them under
    one 'TRPO' column would report a mix as if it were one setting."""
    runs = pd.DataFrame({
        "grid": "g", "algo": "trpo", "env_id": "Hopper-v5", "seed": [0, 1, 0, 1],
        "vf_backend": ["numpy", "numpy", "torch", "torch"], "max_kl": 0.01, "cg_iters": [10, 10, 10, 10],
    })
    axes = ("vf_backend", "max_kl", "cg_iters")
    assert summary.varying_axes(runs, axes) == ["vf_backend"]
    assert summary.algos_varying(runs, "vf_backend") == ["trpo"]
    assert not summary.is_numeric_axis(runs, "vf_backend") and summary.is_numeric_axis(runs, "max_kl")
    labelled = summary.with_methods(runs, ["vf_backend"])
    assert summary.method_order(labelled, ["vf_backend"]) == ["TRPO, vf_backend=numpy", "TRPO, vf_backend=torch"]
    numeric = runs.assign(max_kl=[0.01, 0.01, 0.03, 0.03], vf_backend="numpy")
    assert summary.varying_axes(numeric, axes) == ["max_kl"]


def test_reward_terms_and_their_return_are_averaged_over_the_same_runs():
    """A run evaluated before terms were recorded enters neither the terms nor the return beside
    them, so the terms add up to the return printed with them."""
    final = pd.DataFrame({
        "method": "TRPO", "env_id": "Hopper-v5", "finished": True, "eval_return": [1000.0, 2000.0, 9000.0],
        "eval_reward_terms": [(("reward_ctrl", -10.0), ("reward_forward", 510.0), ("reward_survive", 500.0)),
                              (("reward_ctrl", -30.0), ("reward_forward", 1230.0), ("reward_survive", 800.0)),
                              ()],
    })
    terms = summary.final_eval_terms(final).set_index("term")
    assert terms.loc["forward", "mean"] == 870.0 and terms.loc["ctrl", "mean"] == -20.0
    assert (terms["return"] == 1500.0).all() and (terms["n"] == 2).all()
    assert terms["mean"].sum() == 1500.0

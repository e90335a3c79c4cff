"""The committed results come from the current code, and docs/results.md says what they hold.

Every run in a committed store carries the settings its grid file expands to today (so the
current defaults wherever the grid does not set a value) and was computed by this version of
trpo-bench; docs/results.md has a block for each store, and each block is what
docs/results.py writes from it (runs, versions, CPU kind, returns, diagnostics)."""

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

"""The docs say what the code and the committed results say: code links point at the functions
and steps they name (docs/links.py), the README's quickstart numbers are the committed
quickstart store's (docs/quickstart.py), and the speed tables are the committed benchmark
figures (docs/speed.py)."""

import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def doc_script(name: str):
    """A script of docs/ (not a package) imported by path."""
    spec = importlib.util.spec_from_file_location(f"doc_{name}", ROOT / "docs" / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_code_links_are_current():
    links = doc_script("links")
    doc = ROOT / "docs" / "trpo.md"
    found = list(links.links(doc))
    assert len(found) >= 15
    for m, source in found:
        assert source.is_file(), m["path"]
    assert links.stale(doc) == [], "run: python docs/links.py"


def test_every_trpo_step_is_linked():
    text = (ROOT / "docs" / "trpo.md").read_text()
    for step in ("# 1.", "# 2.", "# 3.", "# 4.", "# 5."):
        assert f'"{step}")' in text, step
    source = (ROOT / "trpo_bench" / "algos" / "trpo.py").read_text()
    for step in ("# 1.", "# 2.", "# 3.", "# 4.", "# 5."):
        assert source.count(step) == 1, step


def test_readme_quickstart_block_is_what_the_committed_store_says():
    script = doc_script("quickstart")
    block = script.paragraph(script.STORE)
    assert "of 150 TRPO updates" in block  # 3 seeds x 50 CartPole updates
    assert script.readme_block(script.README.read_text()) == block, "run: python docs/quickstart.py"


def test_the_check_fails_when_a_quoted_number_changes(tmp_path, monkeypatch):
    script = doc_script("quickstart")
    text = script.README.read_text()
    block = script.readme_block(text)
    edited = tmp_path / "README.md"
    edited.write_text(text.replace(block, block.replace(" of 150 TRPO updates", " of 151 TRPO updates")))
    monkeypatch.setattr(script, "README", edited)
    assert script.main(["--check"]) == 1
    edited.write_text(text)
    assert script.main(["--check"]) == 0


def speed_table(doc: str) -> list[list[str]]:
    """The rows of the first table after the doc names the batched path's benchmark output, as cells."""
    start = doc.index("benchmarks/throughput_batched_output.txt")
    lines = doc[start:].splitlines()
    first = next(i for i, line in enumerate(lines) if line.startswith("|"))
    rows = []
    for line in lines[first + 2:]:
        if not line.startswith("|"):
            break
        rows.append([c.strip().strip("*") for c in line.strip("|").split("|")])
    return rows


def test_speed_figures_are_the_committed_benchmark_output():
    """Every number in docs/performance.md's table of the batched path is printed in the
    benchmark output it cites."""
    import re

    rows = speed_table((ROOT / "docs" / "performance.md").read_text())
    output = (ROOT / "benchmarks" / "throughput_batched_output.txt").read_text()
    printed = set(re.findall(r"\d[\d,]*\.?\d*", output))
    numbers = [n for row in rows for cell in row[1:] for n in re.findall(r"\d[\d,]*\.\d+|\d{1,3}(?:,\d{3})+", cell)]
    assert len(rows) >= 8 and len(numbers) >= 20
    missing = [n for n in numbers if n not in printed]
    assert not missing, f"speed figures not in benchmarks/throughput_batched_output.txt: {missing}"


def test_the_speed_tables_are_the_committed_benchmark_figures():
    """README.md's and docs/performance.md's speed tables are what docs/speed.py writes from
    benchmarks/throughput_batched.json, and that file holds the rows the targets are read from."""
    import json

    script = doc_script("speed")
    figs = json.loads(script.FIGURES.read_text())
    table = script.table(figs)
    for doc in script.DOCS:
        assert script.block_of(doc.read_text()) == table, f"{doc.name}: run python docs/speed.py"
    for task in script.TASKS:
        r = figs[task]
        assert r["train"]["settings"]["steps_per_update"] == 2048 and r["envpool"]["threads"] == 1
        ratio = r["ratios"]["train/envpool"]
        assert ratio["best"] == r["train"]["sps"] / r["envpool"]["sps"]
        assert f"{ratio['best']:.2f} ({ratio['median']:.2f})" in table

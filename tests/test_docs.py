"""The docs' code links point at the functions and steps they name."""

import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def load_links():
    spec = importlib.util.spec_from_file_location("doc_links", ROOT / "docs" / "links.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_code_links_are_current():
    links = load_links()
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

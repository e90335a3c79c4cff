"""The README's quickstart numbers are the committed quickstart store's (docs/quickstart.py)."""

import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def load_script():
    spec = importlib.util.spec_from_file_location("doc_quickstart", ROOT / "docs" / "quickstart.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_readme_quickstart_block_is_what_the_committed_store_says():
    script = load_script()
    block = script.paragraph(script.STORE)
    assert "of 150 TRPO updates" in block  # 3 seeds x 50 CartPole updates
    assert script.readme_block(script.README.read_text()) == block, "run: python docs/quickstart.py"


def test_the_check_fails_when_a_quoted_number_changes(tmp_path, monkeypatch):
    script = load_script()
    text = script.README.read_text()
    block = script.readme_block(text)
    edited = tmp_path / "README.md"
    edited.write_text(text.replace(block, block.replace(" of 150 TRPO updates", " of 151 TRPO updates")))
    monkeypatch.setattr(script, "README", edited)
    assert script.main(["--check"]) == 1
    edited.write_text(text)
    assert script.main(["--check"]) == 0

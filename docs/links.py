"""Keep the code links of docs/*.md pointing at the right lines.

A link names what it points at in its title: ``"def name"`` (the function or method whose
qualified name ends the link text, e.g. ``GaussianPolicy.kl``) or a step comment such as
``"# 3."`` (from that comment to the line before the next blank line).

    python docs/links.py          # rewrite the line ranges in docs/*.md
    python docs/links.py --check  # exit 1 if any range is stale
"""

from __future__ import annotations

import ast
import re
import sys
from pathlib import Path

DOCS = Path(__file__).resolve().parent
LINK = re.compile(r'\[(?P<text>[^\]]+)\]\((?P<path>[^)#\s]+)#L(?P<a>\d+)-L(?P<b>\d+) "(?P<title>[^"]+)"\)')


def _functions(tree: ast.AST, prefix: str = "") -> dict[str, ast.AST]:
    out: dict[str, ast.AST] = {}
    for node in getattr(tree, "body", []):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            name = f"{prefix}{node.name}"
            out[name] = node
            if isinstance(node, ast.ClassDef):
                out.update(_functions(node, name + "."))
    return out


def target_range(source: Path, text: str, title: str) -> tuple[int, int]:
    """(first, last) line, 1-based, of what a link names."""
    lines = source.read_text().splitlines()
    if title.startswith("def ") or title.startswith("class "):
        name = title.split()[1]
        qual = text.strip("`").split(".")
        funcs = _functions(ast.parse("\n".join(lines)))
        candidates = [k for k in funcs if k.split(".")[-1] == name]
        if len(candidates) > 1 and len(qual) > 1:
            candidates = [k for k in candidates if k.endswith(".".join(qual[-2:]))]
        if len(candidates) != 1:
            raise LookupError(f"{source}: {title!r} ({text}) matches {candidates or 'nothing'}")
        node = funcs[candidates[0]]
        start = min([node.lineno] + [d.lineno for d in getattr(node, "decorator_list", [])])
        return start, node.end_lineno
    for i, line in enumerate(lines):
        if line.strip().startswith(title):
            j = i
            while j + 1 < len(lines) and lines[j + 1].strip():
                j += 1
            return i + 1, j + 1
    raise LookupError(f"{source}: no line starts with {title!r}")


def links(doc: Path):
    for m in LINK.finditer(doc.read_text()):
        yield m, (doc.parent / m["path"]).resolve()


def refresh(doc: Path) -> bool:
    """Rewrite stale ranges; return True when something changed."""
    text = doc.read_text()

    def fix(m: re.Match) -> str:
        a, b = target_range((doc.parent / m["path"]).resolve(), m["text"], m["title"])
        return f'[{m["text"]}]({m["path"]}#L{a}-L{b} "{m["title"]}")'

    new = LINK.sub(fix, text)
    if new != text:
        doc.write_text(new)
    return new != text


def stale(doc: Path) -> list[str]:
    out = []
    for m, source in links(doc):
        a, b = target_range(source, m["text"], m["title"])
        if (int(m["a"]), int(m["b"])) != (a, b):
            out.append(f"{doc.name}: {m['text']} -> {m['path']}#L{m['a']}-L{m['b']}, now L{a}-L{b}")
    return out


if __name__ == "__main__":
    docs = sorted(DOCS.glob("*.md"))
    if "--check" in sys.argv:
        problems = [p for d in docs for p in stale(d)]
        print("\n".join(problems) or "all links current")
        sys.exit(1 if problems else 0)
    for d in docs:
        if refresh(d):
            print(f"updated {d.name}")

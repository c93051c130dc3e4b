"""The manual points at code instead of copying it: every "Listing:" line must name a file and a symbol that exist,
and every figure it shows must be in the tree. (The book build of a later issue expands these into listings.)"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = sorted((ROOT / "docs").glob("*.md"))
LISTING = re.compile(r"^> Listing: \[`(?P<file>[^`]+)` · `(?P<symbol>[^`]+)`\]\((?P<link>[^)]+)\)\s*$")
IMAGE = re.compile(r"!\[[^\]]*\]\((?P<path>[^)]+)\)")


def defined_symbols(path: Path) -> set[str]:
    """Top-level functions, classes and assignments, plus Class.method names."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names: set[str] = set()
    for node in tree.body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            names.add(node.name)
            if isinstance(node, ast.ClassDef):
                names.update(
                    f"{node.name}.{item.name}"
                    for item in node.body
                    if isinstance(item, ast.FunctionDef | ast.AsyncFunctionDef)
                )
        elif isinstance(node, ast.Assign):
            names.update(t.id for t in node.targets if isinstance(t, ast.Name))
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            names.add(node.target.id)
    return names


def listing_lines():
    for doc in DOCS:
        for number, line in enumerate(doc.read_text(encoding="utf-8").splitlines(), start=1):
            if line.startswith("> Listing:"):
                yield pytest.param(doc, line, id=f"{doc.name}:{number}")


def test_there_are_listings():
    assert len(list(listing_lines())) >= 10


@pytest.mark.parametrize("doc, line", list(listing_lines()))
def test_listing_resolves(doc, line):
    match = LISTING.match(line)
    assert match, f"malformed listing line (expected > Listing: [`file` · `symbol`](link)): {line}"
    source = ROOT / match["file"]
    assert source.is_file(), f"{match['file']} does not exist"
    assert (doc.parent / match["link"]).resolve() == source.resolve(), "the link must point at the same file"
    assert match["symbol"] in defined_symbols(source), f"{match['symbol']} is not defined in {match['file']}"


@pytest.mark.parametrize("doc", DOCS, ids=[d.name for d in DOCS])
def test_figures_exist(doc):
    for match in IMAGE.finditer(doc.read_text(encoding="utf-8")):
        assert (doc.parent / match["path"]).is_file(), f"{doc.name} shows a missing figure {match['path']}"

"""Listings by reference: the manual names a file and a symbol, and the build pulls that symbol's current source.

A chapter writes one line per listing, a Markdown blockquote that also reads well unbuilt (on GitHub it is a link to
the file):

    > Listing: [`scratchllm/model/layers.py` · `RoPE.forward`](../scratchllm/model/layers.py)

``find_symbol`` resolves the symbol with ``ast`` (a top-level function, class or assignment, or ``Class.method``) and
returns its lines, decorators included, with the line numbers the HTML and the PDF print and link to. A reference
that does not resolve raises ``BookError``: the build fails with one line instead of shipping a stale listing. This
is DESIGN.md's rule 13 ("the book points at code, it does not copy it"), in the spirit of Sphinx's ``literalinclude
:pyobject:``.

``pasted_source`` is the other half of the rule: it finds code blocks in the docs that copy lines of the package
verbatim, where a listing line should have been written instead.
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass
from pathlib import Path

LISTING = re.compile(r"^> Listing: \[`(?P<file>[^`]+)` · `(?P<symbol>[^`]+)`\]\((?P<link>[^)]+)\)\s*$")


class BookError(ValueError):
    """The manual cannot be built as written: an unresolved listing, number, table or figure (one line, exit 2)."""


@dataclass(frozen=True)
class Listing:
    file: str  # path relative to the repository root, as the directive names it
    symbol: str
    code: str  # the symbol's source lines, dedented for a method
    first_line: int  # 1-based line number of the first line of ``code`` in the file
    last_line: int


def _symbol_nodes(tree: ast.Module) -> dict[str, ast.AST]:
    """Top-level functions, classes and assignments, plus Class.method, by name."""
    nodes: dict[str, ast.AST] = {}
    for node in tree.body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            nodes[node.name] = node
            if isinstance(node, ast.ClassDef):
                for item in node.body:
                    if isinstance(item, ast.FunctionDef | ast.AsyncFunctionDef):
                        nodes[f"{node.name}.{item.name}"] = item
        elif isinstance(node, ast.Assign):
            nodes.update((t.id, node) for t in node.targets if isinstance(t, ast.Name))
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            nodes[node.target.id] = node
    return nodes


def find_symbol(root: Path, file: str, symbol: str) -> Listing:
    """The source of ``symbol`` in ``root / file``, or ``BookError`` saying what is missing."""
    path = root / file
    if not path.is_file():
        raise BookError(f"listing {file} · {symbol}: {file} does not exist")
    text = path.read_text(encoding="utf-8")
    nodes = _symbol_nodes(ast.parse(text, filename=str(path)))
    if symbol not in nodes:
        raise BookError(f"listing {file} · {symbol}: {symbol} is not defined at the top level of {file}")
    node = nodes[symbol]
    first = min([node.lineno] + [d.lineno for d in getattr(node, "decorator_list", [])])
    lines = text.splitlines()[first - 1 : node.end_lineno]
    indent = min(len(line) - len(line.lstrip()) for line in lines if line.strip())
    code = "\n".join(line[indent:] for line in lines)
    return Listing(file, symbol, code, first, node.end_lineno)


def parse_listing(line: str) -> tuple[str, str, str] | None:
    """(file, symbol, link) of a listing directive line, or None for any other line."""
    match = LISTING.match(line)
    return (match["file"], match["symbol"], match["link"]) if match else None


# --- pasted source -------------------------------------------------------------------------------------------------

FENCE = re.compile(r"^(?P<indent> {0,3})(?P<fence>```+|~~~+)\s*(?P<lang>[\w+-]*)")
PASTE_WINDOW = 4  # this many consecutive non-blank lines equal to the package's source make a paste


def _significant(lines: list[str]) -> list[str]:
    """Stripped non-blank lines that are not comments or a lone bracket: the ones that make a copy recognizable."""
    out = []
    for line in lines:
        s = line.strip()
        if s and not s.startswith("#") and len(s) > 3:
            out.append(s)
    return out


def source_windows(root: Path, package: str = "scratchllm") -> dict[tuple[str, ...], str]:
    """Every run of ``PASTE_WINDOW`` significant lines in the package's Python files, mapped to 'file:line'."""
    windows: dict[tuple[str, ...], str] = {}
    for path in sorted((root / package).rglob("*.py")):
        raw = path.read_text(encoding="utf-8").splitlines()
        numbered = [(i + 1, line.strip()) for i, line in enumerate(raw) if _significant([line])]
        for k in range(len(numbered) - PASTE_WINDOW + 1):
            key = tuple(s for _, s in numbered[k : k + PASTE_WINDOW])
            windows.setdefault(key, f"{path.relative_to(root)}:{numbered[k][0]}")
        # a function too short for a window is recognized whole (3 significant lines or more)
        for node in ast.walk(ast.parse("\n".join(raw))):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                whole = tuple(_significant(raw[node.lineno - 1 : node.end_lineno]))
                if 3 <= len(whole) < PASTE_WINDOW:
                    windows.setdefault(whole, f"{path.relative_to(root)}:{node.lineno}")
    return windows


def code_blocks(text: str) -> list[tuple[int, str, list[str]]]:
    """Fenced code blocks of a Markdown text: (line number of the fence, language, lines)."""
    blocks, lines, i = [], text.splitlines(), 0
    while i < len(lines):
        m = FENCE.match(lines[i])
        if not m:
            i += 1
            continue
        start, fence, body = i + 1, m["fence"], []
        i += 1
        while i < len(lines) and not lines[i].strip().startswith(fence):
            body.append(lines[i])
            i += 1
        blocks.append((start, m["lang"].lower(), body))
        i += 1
    return blocks


def pasted_source(text: str, windows: dict[tuple[str, ...], str]) -> list[tuple[int, str]]:
    """(line of the fence, 'file:line' copied) for each Python code block that repeats the package's source."""
    hits = []
    for line, lang, body in code_blocks(text):
        if lang not in ("python", "py", "python3"):
            continue
        sig = _significant(body)
        found = (
            windows.get(tuple(sig[k : k + n])) for n in range(3, PASTE_WINDOW + 1) for k in range(len(sig) - n + 1)
        )
        where = next((w for w in found if w), None)
        if where:
            hits.append((line, where))
    return hits

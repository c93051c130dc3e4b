"""The manual's four directives, expanded into plain Markdown before it is rendered.

- **Listings.** ``> Listing: [`scratchllm/x.py` · `Symbol`](../scratchllm/x.py)`` becomes a fenced code block of
  the symbol's current source, whose info string carries the file and line numbers for the renderers
  (``python listing scratchllm/x.py 12 40 Symbol``).
- **Tables.** ``> Table: [`positions`](figures/positions.md)`` becomes the table the experiment wrote.
- **Numbers.** ``{{ positions.results.rope.in_context.loss:.3f }}`` becomes a value of ``figures/positions.json``,
  formatted with Python's format spec after the colon. The path is JSON keys separated by dots; on a list, ``[3]``
  indexes and a bare name selects the element whose first field equals it (``results.rope`` is the element with
  ``pos_encoding == "rope"``, ``results.8192`` the one with ``vocab_size == 8192``).
- **Commands.** ``> Commands: [`scratchllm`](../scratchllm/cli/main.py)`` becomes the command reference, generated
  from the CLI's argparse parser (``commands.py``).

A figure, ``![caption](figures/NAME.png)``, must be a file that a registered experiment writes. Every reference that
does not resolve raises ``BookError`` naming the chapter and line, so a build never ships a stale number.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path

from .commands import expand_commands
from .experiments.registry import by_output
from .source import FENCE, BookError, find_symbol, parse_listing

TABLE = re.compile(r"^> Table: \[`(?P<name>[^`]+)`\]\((?P<link>[^)]+)\)\s*$")
NUMBER = re.compile(r"\{\{\s*(?P<name>[A-Za-z_]\w*)(?P<path>(?:\.[\w-]+|\[\d+\])+)\s*(?::(?P<spec>[^}]*?))?\s*\}\}")
DIRECTIVES = ("> Listing:", "> Table:", "> Commands:")
IMAGE = re.compile(r"!\[(?P<alt>[^\]]*)\]\((?P<path>[^)\s]+)\)")


@dataclass
class Chapter:
    path: Path  # the Markdown source
    text: str  # expanded Markdown
    experiments: set[str] = field(default_factory=set)
    figures: list[str] = field(default_factory=list)  # paths relative to docs/


def references(text: str) -> set[str]:
    """The experiments a chapter's figures, tables and numbers name (without resolving anything)."""
    names = {m["name"] for m in NUMBER.finditer(text)}
    names |= {m["name"] for line in text.splitlines() if (m := TABLE.match(line))}
    for m in IMAGE.finditer(text):
        exp = by_output(Path(m["path"]).name)
        if exp:
            names.add(exp.name)
    return names


def _select(value, path: str, where: str):
    for part in re.findall(r"\.([\w-]+)|\[(\d+)\]", path):
        key, index = part
        if index:
            if not isinstance(value, list) or int(index) >= len(value):
                raise BookError(f"{where}: [{index}] is not an index of a list here")
            value = value[int(index)]
        elif isinstance(value, dict):
            if key not in value:
                raise BookError(f"{where}: no key {key!r} (there are: {', '.join(map(str, value))})")
            value = value[key]
        elif isinstance(value, list):
            hits = [v for v in value if isinstance(v, dict) and v and str(next(iter(v.values()))) == key]
            if len(hits) != 1:
                firsts = [str(next(iter(v.values()))) for v in value if isinstance(v, dict) and v]
                raise BookError(f"{where}: no single element {key!r} in the list (first fields: {', '.join(firsts)})")
            value = hits[0]
        else:
            raise BookError(f"{where}: {key!r} looks inside a {type(value).__name__}")
    return value


class Numbers:
    """Reads each experiment's JSON once and formats values from it."""

    def __init__(self, figures: Path):
        self.figures = figures
        self.cache: dict[str, object] = {}

    def format(self, match: re.Match, where: str) -> str:
        name, spec = match["name"], match["spec"] or ""
        where = f"{where}: {match[0]}"
        if name not in self.cache:
            path = self.figures / f"{name}.json"
            if not path.is_file():
                raise BookError(f"{where}: no results file {path.name} (is {name} a registered experiment?)")
            self.cache[name] = json.loads(path.read_text(encoding="utf-8"))
        value = _select(self.cache[name], match["path"], where)
        if value is None or isinstance(value, dict | list):
            raise BookError(f"{where}: the value is {type(value).__name__}, not a number or a string")
        try:
            return format(value, spec)
        except (ValueError, TypeError) as exc:
            raise BookError(f"{where}: format spec {spec!r}: {exc}") from None


def _fence_for(code: str) -> str:
    longest = max((len(run) for run in re.findall(r"`+", code)), default=0)
    return "`" * max(3, longest + 1)


def expand(doc: Path, root: Path, figures: Path, numbers: Numbers) -> Chapter:
    """Expand the directives of one chapter; raises ``BookError`` at the first one that does not resolve."""
    rel = doc.relative_to(root)
    chapter = Chapter(doc, "")
    out: list[str] = []
    fence = None
    for number, line in enumerate(doc.read_text(encoding="utf-8").splitlines(), start=1):
        where = f"{rel}:{number}"
        if fence:
            out.append(line)
            if line.strip().startswith(fence) and not line.strip()[len(fence) :].strip():
                fence = None
            continue
        if m := FENCE.match(line):
            fence = m["fence"]
            out.append(line)
            continue
        if line != line.lstrip() and line.lstrip().startswith(DIRECTIVES):
            raise BookError(f"{where}: a directive must start its line (an indented one would print as written)")
        if line.startswith("> Listing:"):
            parsed = parse_listing(line)
            if not parsed:
                raise BookError(f"{where}: malformed listing line (expected > Listing: [`file` · `symbol`](link))")
            file, symbol, link = parsed
            if (doc.parent / link).resolve() != (root / file).resolve():
                raise BookError(f"{where}: the listing's link {link} does not point at {file}")
            try:
                listing = find_symbol(root, file, symbol)
            except BookError as exc:
                raise BookError(f"{where}: {exc}") from None
            f = _fence_for(listing.code)
            out += [f"{f}python listing {file} {listing.first_line} {listing.last_line} {symbol}", listing.code, f]
            continue
        if line.startswith("> Table:"):
            m = TABLE.match(line)
            if not m:
                raise BookError(f"{where}: malformed table line (expected > Table: [`name`](figures/name.md))")
            path = figures / f"{m['name']}.md"
            if not path.is_file():
                raise BookError(f"{where}: no table {path.name} (run the experiment {m['name']})")
            chapter.experiments.add(m["name"])
            out += path.read_text(encoding="utf-8").strip("\n").splitlines()
            continue
        if line.startswith("> Commands:"):
            out += expand_commands(line, doc, root, out, where)
            continue
        line = NUMBER.sub(lambda m, where=where: numbers.format(m, where), line)
        for m in IMAGE.finditer(line):
            target = m["path"]
            if "://" in target:
                continue
            if not (doc.parent / target).is_file():
                raise BookError(f"{where}: figure {target} does not exist")
            exp = by_output(Path(target).name)
            if exp is None:
                raise BookError(f"{where}: figure {target} is drawn by no registered experiment")
            chapter.experiments.add(exp.name)
            chapter.figures.append(target)
        out.append(line)
    chapter.experiments |= {m["name"] for m in NUMBER.finditer(doc.read_text(encoding="utf-8"))}
    chapter.text = "\n".join(out) + "\n"
    return chapter

"""Typeset math for the HTML site, offline: every formula of the site becomes an inline SVG made by typst.

Why this exists: the site used to hand the LaTeX to MathJax loaded from a CDN, so a reader without network (our
users often are) saw raw TeX. The PDF already typesets math with typst from ``latex_math.to_typst``; this module
compiles the same translation, with the PDF's text size and math font (read from ``template.typ``), to SVG, so site
and PDF typeset every formula identically and nothing new is installed or fetched.

How: all formulas go into ONE typst document, one formula per page (the page shrinks to the formula), compiled once.
An inline formula gets two pages: one whose line spans the ink bounds, one whose line stops at the baseline
(``bottom-edge: "baseline"``); the difference of the two heights is the formula's depth below the baseline, which
becomes the SVG's CSS ``vertical-align``. Sizes are in em (pt divided by the PDF's text size), so a formula scales
with the text around it. The LaTeX stays as the SVG's ``aria-label`` (and ``<title>``).

Glyphs: typst puts each glyph's outline in the SVG's ``<defs>`` as a ``<symbol>`` whose id is a 32-digit hash of the
glyph, the same in every formula. Inlined as they come, a page would repeat those ids (invalid HTML) and outlines
(80% of the bytes: a chapter's page grew 8x). So the definitions are split off and renamed site-wide (``mg-1``,
``mg-2``, ...: one name per distinct definition, so two different ones can never share an id): each formula's SVG
keeps only its ``<use>`` references, and a page carries each glyph it uses once, in one hidden ``defs_svg``.
"""

from __future__ import annotations

import html
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import typst

from .latex_math import to_typst
from .source import BookError

TEMPLATE = Path(__file__).with_name("template.typ")
PAGE = (  # each page as big as its formula, no background; a line spans the ink unless told otherwise
    "#set page(width: auto, height: auto, margin: 0pt, fill: none)\n"
    '#set text(top-edge: "bounds", bottom-edge: "bounds")'
)
MATH_TOKENS = {"math_inline": False, "math_inline_double": True, "math_block": True, "math_block_label": True}
VIEWBOX = re.compile(r'<svg[^>]*?viewBox="0 0 ([\d.]+) ([\d.]+)"[^>]*>(.*)</svg>\s*$', re.S)
ID_REF = re.compile(r'(\bid="|href="#|url\(#)([^")]+)')
DEFS = re.compile(r"<defs>(.*?)</defs>", re.S)
DEF = re.compile(r'<(\w+) id="([^"]+)".*?</\1>', re.S)

Key = tuple[str, bool]  # (LaTeX as written between the dollars, stripped; display or inline)


@dataclass(frozen=True)
class Formula:
    """One typeset formula: the SVG's drawing (no ``<defs>``), the definitions it uses, and its box in em."""

    latex: str
    display: bool
    body: str
    defs: dict[str, str]  # id -> definition (a glyph's ``<symbol>``), for the page's ``defs_svg``
    viewbox: str
    width: float
    height: float
    depth: float  # below the baseline; 0 for display math

    def html(self) -> str:
        """The inline ``<svg>``; its ``<use>`` elements refer to the page's ``defs_svg``."""
        style = f"width:{self.width:.4g}em;height:{self.height:.4g}em"
        if not self.display:
            style += f";vertical-align:{-self.depth:.4g}em"
        label = html.escape(self.latex)
        return (
            f'<svg class="math" role="img" aria-label="{label}" viewBox="{self.viewbox}" style="{style}" '
            f'xmlns="http://www.w3.org/2000/svg" xmlns:xlink="http://www.w3.org/1999/xlink">'
            f"<title>{label}</title>{self.body}</svg>"
        )


def defs_svg(defs: dict[str, str]) -> str:
    """One hidden SVG holding the definitions the formulas of a page refer to (each once); empty if none."""
    if not defs:
        return ""
    return (
        '<svg class="math-defs" aria-hidden="true" width="0" height="0" style="position:absolute" '
        'xmlns="http://www.w3.org/2000/svg" xmlns:xlink="http://www.w3.org/1999/xlink">'
        f"<defs>{''.join(defs.values())}</defs></svg>"
    )


def collect(token_streams: Iterable[list]) -> list[Key]:
    """The distinct formulas of markdown-it token streams, in order of first appearance."""
    seen: dict[Key, None] = {}
    for tokens in token_streams:
        for tok in tokens:
            for t in [tok, *(tok.children or [])]:
                if t.type in MATH_TOKENS:
                    seen.setdefault((t.content.strip(), MATH_TOKENS[t.type]), None)
    return list(seen)


def preamble(template: Path = TEMPLATE) -> tuple[str, float]:
    """The PDF's top-level text and math-font rules from ``template.typ``, and its text size in pt."""
    lines = template.read_text(encoding="utf-8").splitlines()
    rules = [ln for ln in lines if ln.startswith(("#set text(", "#show math"))]
    size = re.search(r"\bsize:\s*([\d.]+)pt", "\n".join(r for r in rules if r.startswith("#set text(")))
    if size is None:
        raise BookError(f"{template}: no top-level '#set text(..., size: ...pt)' to size the site's math by")
    return "\n".join(rules), float(size[1])


def _pages(key: Key) -> list[str]:
    """The typst pages of one formula: display math once, inline math with ink bottom and with baseline bottom."""
    latex, display = key
    math = to_typst(latex)
    if display:
        return [f"$ {math} $"]
    return [f"${math}$", f'#text(bottom-edge: "baseline")[${math}$]']


def _compile(rules: str, pages: list[str]) -> list[str]:
    source = f"{rules}\n{PAGE}\n" + "\n#pagebreak()\n".join(pages) + "\n"
    out = typst.compile(source.encode(), format="svg")
    return [p.decode() for p in ([out] if isinstance(out, bytes) else out)]


def _failing(rules: str, keys: list[Key], error: typst.TypstError) -> BookError:
    """The formula typst rejected, found by compiling each alone (only after the batch failed)."""
    for latex, display in keys:
        try:
            _compile(rules, _pages((latex, display)))
        except typst.TypstError as e:
            return BookError(f"math ${latex}$: typst rejects its translation {to_typst(latex)!r}: {e.message}")
    return BookError(f"typesetting the site's math failed: {error}")


def _split_defs(body: str) -> tuple[str, dict[str, str]]:
    """An SVG's content without its ``<defs>``, and those definitions by id."""
    defs = {m[2]: m[0] for d in DEFS.findall(body) for m in DEF.finditer(d)}
    return DEFS.sub("", body), defs


def _rename(body: str, names: dict[tuple[str, str], str]) -> tuple[str, dict[str, str]]:
    """Split off the definitions and give each a short site-wide name, one per distinct (id, definition)."""
    drawing, defs = _split_defs(body)
    new = {old: names.setdefault((old, d), f"mg-{len(names) + 1}") for old, d in defs.items()}

    def rename(svg: str) -> str:
        return ID_REF.sub(lambda m: m[1] + new.get(m[2], m[2]), svg)

    return rename(drawing), {new[old]: rename(d) for old, d in defs.items()}


def _box(svg: str) -> tuple[float, float, str]:
    m = VIEWBOX.match(svg)
    if m is None:
        raise BookError(f"unexpected SVG from typst: {svg[:120]!r}")
    return float(m[1]), float(m[2]), m[3]


def render(
    keys: Iterable[Key], names: dict[tuple[str, str], str] | None = None, template: Path = TEMPLATE
) -> dict[Key, Formula]:
    """Typeset all ``keys`` with one typst compile; an untranslatable or rejected formula raises ``BookError``.

    ``names`` maps (typst id, definition) to the site-wide id; pass the same dict to every call for one site, so
    formulas compiled apart can share a page without their ids clashing.
    """
    keys = list(dict.fromkeys(keys))
    if not keys:
        return {}
    rules, size = preamble(template)
    per_key = [_pages(k) for k in keys]  # translation errors (unknown commands) surface here as BookError
    try:
        svgs = iter(_compile(rules, [p for pages in per_key for p in pages]))
    except typst.TypstError as e:
        raise _failing(rules, keys, e) from None
    out, names = {}, ({} if names is None else names)
    for latex, display in keys:
        width, height, body = _box(next(svgs))
        depth = 0.0 if display else max(0.0, height - _box(next(svgs))[1])
        drawing, defs = _rename(body, names)
        box = f"0 0 {width} {height}"
        out[(latex, display)] = Formula(latex, display, drawing, defs, box, width / size, height / size, depth / size)
    return out

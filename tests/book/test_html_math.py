"""The HTML site's math is typeset offline (``scratchllm/book/math_svg.py``): every formula is an inline SVG made by
typst, with its LaTeX as accessible text, sitting on the text's baseline; no page loads MathJax or anything from a
CDN; ids stay unique on a page; an untranslatable formula still fails the build with ``BookError``."""

from __future__ import annotations

import html
import re
from collections import Counter
from pathlib import Path

import pytest

pytest.importorskip("typst")

from scratchllm.book import math_svg  # noqa: E402
from scratchllm.book.build import build, chapter_files  # noqa: E402
from scratchllm.book.html import HtmlSite  # noqa: E402
from scratchllm.book.source import BookError  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
CHAPTER = r"""# Math

A token $y_i$ and a letter $a$, again $y_i$, and $\frac{a}{b}$ inline.

$$
\mathcal{L}(\theta) = -\frac{1}{T} \sum_{t=1}^{T} \log p_\theta(x_t \mid x_{<t})
$$

The same display twice:

$$
\sum_{i=1}^n x_i
$$

$$
\sum_{i=1}^n x_i
$$
"""
SVG = re.compile(r'<svg class="math" role="img" aria-label="([^"]*)"[^>]*style="([^"]*)"[^>]*>(.*?)</svg>', re.S)


def site_page(tmp_path: Path, markdown: str) -> str:
    """Render one chapter through ``HtmlSite`` as the build does; the page's HTML."""
    docs = tmp_path / "docs"
    docs.mkdir()
    site = HtmlSite(tmp_path, docs, tmp_path / "html")
    site.write([("01-math", "Math", site.md.parse(markdown), {})], "Book")
    return (tmp_path / "html" / "01-math.html").read_text(encoding="utf-8")


@pytest.fixture(scope="module")
def page(tmp_path_factory) -> str:
    return site_page(tmp_path_factory.mktemp("site"), CHAPTER)


def svgs(page: str) -> dict[str, str]:
    """LaTeX -> the CSS style of its SVG, for every formula on a page."""
    return {html.unescape(m[1]): m[2] for m in SVG.finditer(page)}


def em(style: str, prop: str) -> float:
    return float(re.search(rf"{prop}:(-?[\d.]+)em", style)[1])


def test_formulas_are_svgs_with_their_latex_as_accessible_text(page):
    styles = svgs(page)
    assert {"y_i", "a", r"\frac{a}{b}", r"\sum_{i=1}^n x_i"} <= set(styles)
    assert any(latex.startswith(r"\mathcal{L}(\theta)") for latex in styles)
    assert "<title>y_i</title>" in page and "<use " in page
    assert r"\(" not in page and r"\[" not in page  # no TeX left for a script to find


def test_inline_sits_in_the_text_and_display_is_a_centred_block(page):
    inline = re.search(r'<span class="math inline">(<svg.*?</svg>)</span>', page, re.S)
    assert inline and 'aria-label="y_i"' in inline[1]
    block = re.search(r'<div class="math block">\s*(<svg.*?</svg>)', page, re.S)
    assert block and "vertical-align" not in block[1]


def test_display_css_centres_blocks(tmp_path):
    site_page(tmp_path, "$$\nx\n$$\n")
    css = (tmp_path / "html" / "style.css").read_text(encoding="utf-8")
    assert re.search(r"\.math\.block[^{]*\{[^}]*text-align: center", css)


def test_sizes_are_in_em_and_the_baseline_offset_is_sensible(page):
    styles = svgs(page)
    y, a, frac = styles["y_i"], styles["a"], styles[r"\frac{a}{b}"]
    assert -0.4 < em(y, "vertical-align") < -0.15  # the descender of y and the subscript hang below the baseline
    assert -0.03 < em(a, "vertical-align") <= 0  # an x-height letter sits on it (overshoot aside)
    assert em(frac, "vertical-align") < -0.2  # the denominator hangs below it
    assert 0.35 < em(a, "height") < 0.6 and 0.4 < em(a, "width") < 0.7  # about one x-height, in em of the text


def test_ids_are_unique_and_every_reference_resolves(page):
    ids = Counter(re.findall(r'\bid="([^"]+)"', page))
    assert ids and max(ids.values()) == 1, [i for i, n in ids.items() if n > 1]
    refs = set(re.findall(r'href="#([^"]+)"', page))
    assert refs and refs <= set(ids)
    assert page.count('class="math-defs"') == 1  # each glyph outline once, in one hidden SVG


def test_one_compile_for_many_formulas_names_glyphs_consistently():
    formulas = math_svg.render([("a", False), ("a + b", False), ("a", True)])
    assert set(formulas) == {("a", False), ("a + b", False), ("a", True)}
    a_defs, ab_defs = formulas[("a", False)].defs, formulas[("a + b", False)].defs
    shared = set(a_defs) & set(ab_defs)
    assert shared and all(a_defs[k] == ab_defs[k] for k in shared)  # the glyph a: one name, one outline
    assert formulas[("a", True)].depth == 0


def test_unknown_latex_command_fails_with_book_error(tmp_path):
    with pytest.raises(BookError, match=r"unknown command \\frobnicate"):
        site_page(tmp_path, "A formula $\\frobnicate{x}$ here.\n")


def test_formulas_rendered_apart_share_a_page_without_clashing(tmp_path):
    docs = tmp_path / "docs"
    docs.mkdir()
    site = HtmlSite(tmp_path, docs, tmp_path / "html")
    tokens = site.md.parse("$a$ and $b$ and $a + b$\n")
    site.typeset([site.md.parse("$b$\n")])  # only b up front; a and a + b are compiled while the page renders
    page = site.render(tokens, {})
    ids = Counter(re.findall(r'\bid="([^"]+)"', page))
    assert len(svgs(page)) == 3 and max(ids.values()) == 1
    assert set(re.findall(r'href="#([^"]+)"', page)) <= set(ids)


def test_a_translation_typst_rejects_names_the_formula(monkeypatch):
    monkeypatch.setattr(math_svg, "to_typst", lambda latex: "frac(a" if latex == "bad" else latex)
    with pytest.raises(BookError, match=r"math \$bad\$: typst rejects"):
        math_svg.render([("x", False), ("bad", False), ("y", True)])


def test_real_build_has_no_mathjax_and_typesets_the_chapters(tmp_path):
    result = build(ROOT, tmp_path, run=False, pdf=False, log=lambda msg: None)
    pages = sorted((tmp_path / "html").rglob("*.html"))
    assert result.html and len(pages) >= len(chapter_files(DOCS))
    formulas = 0
    for path in pages:
        text = path.read_text(encoding="utf-8").lower()
        assert "<script" not in text and "cdn." not in text, path
        if path.parent.name == "html":  # chapters and index (a source page may quote code that names MathJax)
            assert "mathjax" not in text and "cdn" not in text, path
        ids = Counter(re.findall(r'\bid="([^"]+)"', text))
        assert not [i for i, n in ids.items() if n > 1], path
        formulas += text.count('<svg class="math"')
    assert formulas > 50

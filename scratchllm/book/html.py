"""The manual as a static HTML site: one page per chapter, a table of contents, highlighted listings that link to a
highlighted, line-numbered page of their source file, figures, and typeset formulas that need no network.

Markdown is parsed with markdown-it-py (CommonMark plus tables and ``$``-math); headings get GitHub-style ids, so a
link such as ``02-data-engineering.md#26-minhash`` written for GitHub works unchanged on the site (``.md`` becomes
``.html``). Code is highlighted with Pygments. Formulas are typeset by typst from the PDF's own translation
(``math_svg``: one compile for the whole site) and embedded as inline SVGs on the text's baseline, with the LaTeX as
their accessible text and the glyph outlines once per page, so a reader offline sees the same math as the PDF.
"""

from __future__ import annotations

import html
import re
import shutil
from collections.abc import Callable
from pathlib import Path

from markdown_it import MarkdownIt
from mdit_py_plugins.dollarmath import dollarmath_plugin
from pygments import highlight
from pygments.formatters import HtmlFormatter
from pygments.lexers import PythonLexer, TextLexer, get_lexer_by_name
from pygments.util import ClassNotFound

from ..fileio import atomic_write_text
from . import math_svg

CSS = """
body { font: 17px/1.55 Georgia, 'Libertinus Serif', serif; margin: 0; color: #222; display: flex; }
nav { width: 17rem; flex: none; padding: 1rem; font: 14px/1.4 system-ui, sans-serif; background: #f6f6f4;
      height: 100vh; overflow-y: auto; position: sticky; top: 0; box-sizing: border-box; }
nav a { color: #333; text-decoration: none; } nav a:hover { text-decoration: underline; }
nav ul { padding-left: 1rem; margin: .2rem 0; } nav li { margin: .15rem 0; } nav .here > a { font-weight: bold; }
main { max-width: 52rem; padding: 1rem 2.5rem 4rem; min-width: 0; }
h1, h2, h3, h4 { font-family: system-ui, sans-serif; line-height: 1.25; }
a.anchor { color: #bbb; text-decoration: none; margin-left: .3em; font-size: .8em; }
code { font: 14px/1.4 'DejaVu Sans Mono', monospace; background: #f3f3f3; padding: 0 .2em; }
.highlight { background: #f8f8f8; border: 1px solid #e4e4e4; overflow-x: auto; margin: .8rem 0; }
.highlight pre { margin: 0; padding: .6rem .8rem; font: 13px/1.45 'DejaVu Sans Mono', monospace; }
.highlight code { background: none; padding: 0; }
.listing .title { font: 13px system-ui, sans-serif; padding: .3rem .8rem; background: #ececec; }
.linenos, .linenodiv pre { color: #999; }
table { border-collapse: collapse; margin: 1rem 0; font-size: 15px; }
th, td { border-bottom: 1px solid #ddd; padding: .25rem .6rem; }
thead th { border-bottom: 2px solid #999; }
blockquote { border-left: 3px solid #ccc; margin: 1rem 0; padding: 0 1rem; color: #444; }
.figure { display: block; margin: 1.2rem 0; text-align: center; }
.figure img { max-width: 100%; } .caption { display: block; font-size: 15px; color: #444; margin-top: .3rem; }
svg.math { overflow: visible; } .math.block, div.math.inline { margin: .8rem 0; text-align: center; overflow-x: auto; }
.pager { display: flex; justify-content: space-between; margin-top: 3rem; font-family: system-ui, sans-serif; }
"""


def slugify(text: str, seen: dict[str, int]) -> str:
    """GitHub's heading ids: lower case, punctuation dropped, spaces to hyphens, -1/-2 for repeats."""
    slug = re.sub(r"[^\w\- ]", "", text.strip().lower()).replace(" ", "-")
    n = seen.get(slug, 0)
    seen[slug] = n + 1
    return f"{slug}-{n}" if n else slug


def heading_texts(tokens) -> list[tuple[int, str, str]]:
    """(level, text, id) of every heading of a token stream, with ids as ``slugify`` gives them."""
    seen: dict[str, int] = {}
    out = []
    for i, tok in enumerate(tokens):
        if tok.type == "heading_open":
            text = "".join(c.content for c in tokens[i + 1].children or [] if c.type in ("text", "code_inline"))
            out.append((int(tok.tag[1]), text, slugify(text, seen)))
    return out


def parser(math: Callable[[str, dict], str] | None = None) -> MarkdownIt:
    """The manual's markdown parser; ``math(latex, {"display_mode": bool})`` renders a formula (default: its LaTeX)."""
    md = MarkdownIt("commonmark", {"html": False}).enable("table")
    md.use(dollarmath_plugin, double_inline=True, renderer=math or (lambda content, _: html.escape(content)))
    return md


def highlight_code(code: str, lang: str, **options) -> str:
    try:
        lexer = get_lexer_by_name(lang) if lang else TextLexer()
    except ClassNotFound:
        lexer = TextLexer()
    return highlight(code, lexer, HtmlFormatter(**options))


def source_page(root: Path, file: str, out_dir: Path) -> str:
    """Write a highlighted, line-anchored page of a source file; returns its path relative to the site."""
    rel = f"src/{file}.html"
    body = highlight(
        (root / file).read_text(encoding="utf-8"), PythonLexer(),
        HtmlFormatter(linenos="table", lineanchors="L", anchorlinenos=True),
    )  # fmt: skip
    depth = "../" * file.count("/") + "../"
    page = _page(file, f"<h1><code>{html.escape(file)}</code></h1>{body}", "", depth)
    atomic_write_text(out_dir / rel, page)
    return rel


def _page(title: str, body: str, nav: str, prefix: str = "") -> str:
    return (
        f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
        f'<meta name="viewport" content="width=device-width, initial-scale=1">'
        f'<link rel="stylesheet" href="{prefix}style.css"></head>\n<body>{nav}<main>{body}</main></body></html>\n'
    )


class HtmlSite:
    """Renders expanded chapters into ``out_dir``; ``chapters`` are (stem, title, tokens, figure numbers)."""

    def __init__(self, root: Path, docs: Path, out_dir: Path):
        self.root, self.docs, self.out = root, docs, out_dir
        self.md = parser(self._math)
        self.sources: dict[str, str] = {}
        self.formulas: dict[math_svg.Key, math_svg.Formula] = {}
        self._glyph_names: dict[tuple[str, str], str] = {}  # site-wide glyph ids (see ``math_svg.render``)
        self._page_defs: dict[str, str] = {}  # glyph definitions the formulas of the current page use

    def typeset(self, token_streams: list[list]) -> None:
        """Typeset every formula of these token streams at once (one typst compile), ready for ``render``."""
        todo = [k for k in math_svg.collect(token_streams) if k not in self.formulas]
        self.formulas.update(math_svg.render(todo, self._glyph_names))

    def _math(self, latex: str, options: dict) -> str:
        key = (latex.strip(), bool(options.get("display_mode")))
        if key not in self.formulas:  # a page rendered without ``typeset`` first: compile its formulas one by one
            self.formulas.update(math_svg.render([key], self._glyph_names))
        self._page_defs.update(self.formulas[key].defs)
        return self.formulas[key].html()

    def _href(self, href: str) -> str:
        if "://" in href or href.startswith(("#", "mailto:")):
            return href
        path, _, anchor = href.partition("#")
        target = (self.docs / path).resolve()
        anchor = f"#{anchor}" if anchor else ""
        if target.parent == self.docs.resolve() and target.suffix == ".md":
            return target.stem + ".html" + anchor
        if target.suffix == ".py" and target.is_file() and target.is_relative_to(self.root):
            return self._source(str(target.relative_to(self.root))) + anchor
        if target.is_relative_to(self.docs.resolve()):
            return str(target.relative_to(self.docs.resolve())) + anchor
        return href  # elsewhere in the repository: left as written

    def _source(self, file: str) -> str:
        if file not in self.sources:
            self.sources[file] = source_page(self.root, file, self.out)
        return self.sources[file]

    def render(self, tokens, figure_numbers: dict[str, str]) -> str:
        seen: dict[str, int] = {}
        rules = self.md.renderer.rules
        self._page_defs = {}
        out = []
        for i, tok in enumerate(tokens):
            if tok.type == "heading_open":
                text = "".join(c.content for c in tokens[i + 1].children or [] if c.type in ("text", "code_inline"))
                tok.attrSet("id", slugify(text, seen))
            if tok.type == "fence":
                out.append(self._fence(tok))
                continue
            if tok.type == "inline":
                for child in tok.children or []:
                    if child.type == "link_open":
                        child.attrSet("href", self._href(child.attrGet("href")))
                    if child.type == "image":
                        src = child.attrGet("src")
                        number = figure_numbers.get(src, "")
                        alt = html.escape(child.content)
                        child.type, child.content = (
                            "html_inline",
                            (
                                f'<span class="figure"><img src="{html.escape(src)}" alt="{alt}">'
                                f'<span class="caption">Figure {number}. {alt}</span></span>'
                            ),
                        )
            out.append(self.md.renderer.render([tok], self.md.options, {}))
        del rules
        return "".join(out) + math_svg.defs_svg(self._page_defs)

    def _fence(self, tok) -> str:
        info = tok.info.split()
        lang = info[0] if info else ""
        if len(info) >= 5 and info[1] == "listing":
            file, first, last, symbol = info[2], int(info[3]), int(info[4]), info[5]
            href = f"{self._source(file)}#L-{first}"
            code = highlight_code(tok.content, lang, linenos="inline", linenostart=first)
            title = (
                f'<div class="title"><a href="{href}"><code>{html.escape(file)}</code></a> · '
                f"<code>{html.escape(symbol)}</code>, lines {first}–{last}</div>"
            )
            return f'<div class="listing">{title}{code}</div>'
        return highlight_code(tok.content, lang)

    def write(self, chapters: list[tuple[str, str, list, dict[str, str]]], title: str) -> Path:
        self.out.mkdir(parents=True, exist_ok=True)
        atomic_write_text(self.out / "style.css", CSS + HtmlFormatter().get_style_defs(".highlight"))
        toc = [(stem, ch_title, heading_texts(tokens)) for stem, ch_title, tokens, _ in chapters]
        self.typeset([tokens for _, _, tokens, _ in chapters])
        for k, (stem, ch_title, tokens, numbers) in enumerate(chapters):
            body = self.render(tokens, numbers)
            prev = (
                f'<a href="{chapters[k - 1][0]}.html">← {html.escape(chapters[k - 1][1])}</a>' if k else "<span></span>"
            )
            nxt = (f'<a href="{chapters[k + 1][0]}.html">{html.escape(chapters[k + 1][1])} →</a>'
                   if k + 1 < len(chapters) else "<span></span>")  # fmt: skip
            body += f'<div class="pager">{prev}{nxt}</div>'
            atomic_write_text(self.out / f"{stem}.html", _page(ch_title, body, self._nav(toc, title, stem)))
        items = "".join(
            f'<li><a href="{stem}.html">{html.escape(t)}</a><ul>'
            + "".join(f'<li><a href="{stem}.html#{hid}">{html.escape(h)}</a></li>' for lvl, h, hid in heads if lvl == 2)
            + "</ul></li>"
            for stem, t, heads in toc
        )
        index = f"<h1>{html.escape(title)}</h1><p>Contents</p><ul>{items}</ul>"
        atomic_write_text(self.out / "index.html", _page(title, index, self._nav(toc, title, "")))
        return self.out / "index.html"

    def copy_figures(self, figures: list[str]) -> None:
        for rel in figures:
            dest = self.out / rel
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(self.docs / rel, dest)

    @staticmethod
    def _nav(toc, title: str, here: str) -> str:
        parts = [f'<nav><a href="index.html"><b>{html.escape(title)}</b></a><ul>']
        for stem, t, heads in toc:
            cls = ' class="here"' if stem == here else ""
            sub = ""
            if stem == here:
                sub = "<ul>" + "".join(
                    f'<li><a href="#{hid}">{html.escape(h)}</a></li>' for lvl, h, hid in heads if lvl == 2
                ) + "</ul>"  # fmt: skip
            parts.append(f'<li{cls}><a href="{stem}.html">{html.escape(t)}</a>{sub}</li>')
        return "".join(parts) + "</ul></nav>"

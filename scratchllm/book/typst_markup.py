"""The manual as typst markup: markdown-it's token stream of each expanded chapter, translated block by block.

Text is escaped character by character (typst gives ``* _ # $ @ < > [ ] ` ~ / - + =`` and ``\\`` meanings), code
goes into ``raw`` strings so nothing in it is ever interpreted, lists and quotes become function calls with content
blocks (so nesting needs no indentation rules), and math goes through ``latex_math``. The page setup, cover, table of
contents and the ``listing`` function live in ``template.typ`` next to this module
(https://typst.app/docs/reference/ for the functions used).
"""

from __future__ import annotations

import json
import re

from .html import slugify
from .latex_math import to_typst

TEXT_SPECIAL = re.compile(r"([\\*_#$@<>\[\]`~/\-+=])")
# typst's smart quotes read ' after a digit as a prime (5'10"), so "Chapter 2's" would print 2′s: spell the apostrophe
APOSTROPHE_AFTER_DIGIT = re.compile(r"(?<=\d)'(?=[A-Za-z])")


def text(s: str) -> str:
    return TEXT_SPECIAL.sub(r"\\\1", APOSTROPHE_AFTER_DIGIT.sub("\u2019", s))


def string(s: str) -> str:
    """A typst string literal."""
    return json.dumps(s, ensure_ascii=False)


def label(stem: str, slug: str) -> str:
    return f"{stem}--{slug}" if slug else stem


class TypstWriter:
    """Translates one chapter; ``link`` maps a Markdown href to a typst link target (a label or a URL)."""

    def __init__(self, stem: str, link, figure_numbers: dict[str, str], figure_path):
        self.stem, self.link, self.numbers, self.figure_path = stem, link, figure_numbers, figure_path
        self.seen: dict[str, int] = {}

    def chapter(self, tokens) -> str:
        out, _ = self.blocks(tokens, 0, None)
        return out

    def blocks(self, tokens, i: int, until: str | None) -> tuple[str, int]:
        """Translate block tokens from ``i`` up to the closing token ``until``; returns (markup, index after)."""
        out: list[str] = []
        while i < len(tokens):
            tok = tokens[i]
            kind = tok.type
            if until and kind == until:
                return "".join(out), i + 1
            if kind == "heading_open":
                inline = tokens[i + 1]
                plain = "".join(c.content for c in inline.children or [] if c.type in ("text", "code_inline"))
                slug = slugify(plain, self.seen)
                lbl = self.stem if tok.tag == "h1" else label(self.stem, slug)
                out.append(f"{'=' * int(tok.tag[1])} {self.inline(inline.children)} <{lbl}>\n\n")
                i += 3
            elif kind == "paragraph_open":
                inline = tokens[i + 1]
                out.append(self.inline(inline.children) + "\n\n")
                i += 3
            elif kind in ("bullet_list_open", "ordered_list_open"):
                items, i = self.list_items(tokens, i + 1, kind.replace("_open", "_close"))
                if kind == "bullet_list_open":
                    out.append("#list(" + ", ".join(items) + ")\n\n")
                else:
                    start = tok.attrGet("start") or 1
                    out.append(f"#enum(start: {start}, " + ", ".join(items) + ")\n\n")
            elif kind == "blockquote_open":
                inner, i = self.blocks(tokens, i + 1, "blockquote_close")
                out.append(f"#quote(block: true)[{inner.strip()}]\n\n")
            elif kind in ("fence", "code_block"):
                out.append(self.code(tok))
                i += 1
            elif kind == "math_block":
                out.append(f"$ {to_typst(tok.content)} $\n\n")
                i += 1
            elif kind == "table_open":
                table, i = self.table(tokens, i + 1)
                out.append(table)
            elif kind == "hr":
                out.append("#line(length: 100%, stroke: 0.5pt + gray)\n\n")
                i += 1
            elif kind == "html_block":
                out.append(f"#raw({string(tok.content)}, block: true)\n\n")
                i += 1
            else:  # list_item / close tokens reached without an opener in this context
                i += 1
        return "".join(out), i

    def list_items(self, tokens, i: int, close: str) -> tuple[list[str], int]:
        items = []
        while tokens[i].type != close:
            if tokens[i].type == "list_item_open":
                inner, i = self.blocks(tokens, i + 1, "list_item_close")
                items.append(f"[{inner.strip()}]")
            else:
                i += 1
        return items, i + 1

    def table(self, tokens, i: int) -> tuple[str, int]:
        rows: list[list[str]] = []
        aligns: list[str] = []
        header_rows = 0
        while tokens[i].type != "table_close":
            tok = tokens[i]
            if tok.type == "tr_open":
                rows.append([])
            elif tok.type in ("th_open", "td_open"):
                if tok.type == "th_open":
                    header_rows = len(rows)
                    style = tok.attrGet("style") or ""
                    aligns.append("right" if "right" in style else "center" if "center" in style else "left")
                rows[-1].append(f"[{self.inline(tokens[i + 1].children)}]")
            i += 1
        ncols = max(len(r) for r in rows)
        head = ", ".join(rows[0]) if header_rows else ""
        body = ",\n  ".join(", ".join(r + ["[]"] * (ncols - len(r))) for r in rows[header_rows:])
        align = "(" + ", ".join(aligns[:ncols]) + ",)"
        return (
            f"#figure(kind: table, supplement: none, numbering: none, table(columns: {ncols}, align: {align},\n"
            f"  table.header({head}),\n  {body}))\n\n",
            i + 1,
        )

    def code(self, tok) -> str:
        info = tok.info.split()
        lang = info[0] if info else ""
        content = tok.content.rstrip("\n")
        if len(info) >= 6 and info[1] == "listing":
            file, first, last, symbol = info[2], int(info[3]), int(info[4]), info[5]
            return (
                f"#listing({string(file)}, {string(symbol)}, {first}, {last}, "
                f"raw({string(content)}, lang: {string(lang)}, block: true))\n\n"
            )
        return f"#codeblock(raw({string(content)}, lang: {string(lang) if lang else 'none'}, block: true))\n\n"

    def inline(self, children) -> str:
        out: list[str] = []
        for child in children or []:
            kind = child.type
            if kind == "text":
                out.append(text(child.content))
            elif kind == "code_inline":
                out.append(f"#raw({string(child.content)})")
            elif kind in ("softbreak",):
                out.append(" ")
            elif kind == "hardbreak":
                out.append(" \\\n")
            elif kind == "em_open":
                out.append("#emph[")
            elif kind == "strong_open":
                out.append("#strong[")
            elif kind in ("em_close", "strong_close", "link_close"):
                out.append("]")
            elif kind == "link_open":
                out.append(f"#link({self.link(child.attrGet('href'))})[")
            elif kind == "image":
                out.append(self.image(child))
            elif kind in ("math_inline", "math_inline_double"):
                out.append(f"${to_typst(child.content)}$")
            else:  # html_inline and anything unforeseen: as text
                out.append(text(child.content))
        return "".join(out)

    def image(self, child) -> str:
        src = child.attrGet("src")
        number = self.numbers.get(src, "")
        return (
            f"#figure(figure-image({string(self.figure_path(src))}), "
            f"caption: [{text(child.content)}], numbering: _ => {string(number)})"
        )

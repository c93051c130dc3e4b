"""How the PDF sets text, checked on the compiled PDF's own text (read back with pypdf, not with our code): an
apostrophe after a digit stays an apostrophe, a long inline command may break across lines yet copies back exactly,
and a listing line too long for the page keeps its line number and all of its text."""

from __future__ import annotations

import json
import re

import pytest

typst = pytest.importorskip("typst")
pypdf = pytest.importorskip("pypdf")

from scratchllm.book.build import TEMPLATE  # noqa: E402
from scratchllm.book.typst_markup import text  # noqa: E402


def pdf_text(tmp_path, body: str) -> str:
    source = tmp_path / "main.typ"
    source.write_text(TEMPLATE.read_text(encoding="utf-8") + "\n" + body, encoding="utf-8")
    pdf = tmp_path / "out.pdf"
    typst.compile(str(source), output=str(pdf), ignore_system_fonts=True)
    pages = pypdf.PdfReader(str(pdf)).pages
    return "\n".join(page.extract_text() for page in pages)


def test_apostrophe_after_a_digit_is_not_a_prime(tmp_path):
    got = pdf_text(tmp_path, "= One\n\n" + text("Chapter 2's table and GPT-2's head."))
    assert "Chapter 2\u2019s table and GPT-2\u2019s head." in got
    assert "\u2032" not in got


def test_long_inline_code_breaks_and_copies_back_exactly(tmp_path):
    command = "python -m scratchllm.book.experiments.embedding_lookup"
    words = "On this book's two-core machine, with torch and fp32, we ran"
    got = pdf_text(tmp_path, f"= One\n\n{text(words)} #raw({json.dumps(command)}) and it printed the table.")
    assert "\u200b" not in got
    start = got.index("python -m")
    copied = got[start : start + len(command) + 5]
    assert "\n" in copied  # the command did not fit on the first line and was broken inside
    assert re.sub(r"\s*\n", "", copied).startswith(command)  # broken after a dot, and nothing was added


def test_a_wrapped_listing_line_keeps_its_number_and_text(tmp_path):
    long_line = "x = " + " + ".join(f"value_{i}" for i in range(40))
    code = f"def f():\\n    {long_line}\\n    return x"
    body = f'= One\n\n#listing("pkg/mod.py", "f", 10, 12, raw("{code}", lang: "python", block: true))'
    got = pdf_text(tmp_path, body)
    flat = " ".join(got.split())
    assert "10 def f():" in flat and "12 return x" in flat
    assert " ".join(long_line.split()) in flat.replace(" 11 ", " ")

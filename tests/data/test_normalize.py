"""Normalize: each normalization on a hand-made case, Python indentation kept intact, mojibake repaired."""

import ast
import inspect
import textwrap

import pytest

from scratchllm.config import ConfigError
from scratchllm.data.document import Document
from scratchllm.data.normalize import Normalize, NormalizeConfig, collapse_blank_lines


def normalize(text: str, **config) -> tuple[str | None, Normalize]:
    """The normalized text (None if dropped) and the step, for its stats."""
    step = Normalize(NormalizeConfig(**config))
    out = list(step.run([Document("d", text, "test")]))
    return (out[0].text if out else None), step


def test_nfc_composes():
    text, step = normalize("cafe\u0301 nai\u0308ve")
    assert text == "caf\u00e9 na\u00efve"
    assert step.stats.counters["nfc"] == 1


def test_mojibake_is_repaired():
    # UTF-8 "doesn’t" decoded as Windows-1252, twice over.
    text, step = normalize("The Mona Lisa doesnÃ¢â‚¬â„¢t have eyebrows.")
    assert text == "The Mona Lisa doesn\u2019t have eyebrows."
    assert step.stats.counters["mojibake_fixed"] == 1


def test_mojibake_repair_can_be_turned_off():
    text, step = normalize("caf\u00c3\u00a9", fix_mojibake=False)
    assert text == "caf\u00c3\u00a9"
    assert step.stats.counters["mojibake_fixed"] == 0


def test_only_encoding_is_repaired():
    # Curly quotes, ligatures, full-width letters and HTML entities are text, not damage: NFKC or ftfy's defaults
    # would change each of them.
    original = "\u201cquoted\u201d \ufb01ne \uff21\uff22 &amp; \u2014 \u00bd"
    text, step = normalize(original)
    assert text == original
    assert sum(step.stats.counters.values()) == 0


def test_line_endings():
    text, step = normalize("a\r\nb\rc\n")
    assert text == "a\nb\nc\n"
    assert step.stats.counters["line_endings"] == 1


def test_control_characters_removed_except_newline_and_tab():
    text, step = normalize("\ufeffa\x00b\x07c\td\x1b[0m\x7fe\n\x0cf")
    assert text == "abc\td[0me\nf"
    assert step.stats.counters["control_chars"] == 1


def test_c1_controls():
    # With mojibake repair, a C1 control is read as the Windows-1252 byte it almost always is (0x85 is "…");
    # without it, it is removed like any other control character.
    assert normalize("wait\x85")[0] == "wait\u2026"
    assert normalize("wait\x85\x9f", fix_mojibake=False)[0] == "wait"


def test_trailing_whitespace_and_blank_lines():
    text, step = normalize("x = 1   \n\n\n\n\n\ny = 2\t\n  \n")
    assert text == "x = 1\n\n\ny = 2\n\n"
    assert step.stats.counters["trailing_whitespace"] == 1
    assert step.stats.counters["blank_lines"] == 1


@pytest.mark.parametrize(
    ("max_blank", "expected"),
    [(0, "a\nb\nc"), (1, "a\n\nb\n\nc"), (2, "a\n\nb\n\n\nc"), (5, "a\n\nb\n\n  \n\n\nc")],
)
def test_collapse_blank_lines(max_blank, expected):
    # "a", one blank line, "b", four blank lines (one holding spaces), "c".
    assert collapse_blank_lines("a\n\nb\n\n  \n\n\nc", max_blank) == expected


def test_blank_lines_kept_when_disabled():
    text, _ = normalize("a\n\n\n\n\nb", max_blank_lines=-1)
    assert text == "a\n\n\n\n\nb"


@pytest.mark.parametrize("indent", ["    ", "\t"])
def test_python_indentation_is_preserved(indent):
    source = textwrap.dedent(
        """\
        class A:
            def f(self, xs):
                for x in xs:
                    if x:
                        yield x


            s = '''
              indented text in a string
            '''
        """
    ).replace("    ", indent)
    # Windows line endings and trailing spaces added; normalization must give back exactly the original.
    damaged = "\r\n".join(line + " \t " for line in source.split("\n"))
    text, _ = normalize(damaged)
    assert text == source
    assert ast.dump(ast.parse(text)) == ast.dump(ast.parse(source))


def test_real_stdlib_source_is_unchanged():
    source = inspect.getsource(textwrap)  # PEP 8 formatted: no trailing spaces, at most two blank lines
    text, step = normalize(source)
    assert text == source
    assert step.stats.counters["changed"] == 0


def test_unchanged_document_is_passed_through():
    doc = Document("d", "already clean\n", "test", {"k": 1})
    step = Normalize()
    assert next(step.run([doc])) is doc


def test_empty_after_normalization_is_dropped():
    text, step = normalize(" \t\n\x00\n\r\n")
    assert text is None
    assert step.stats.dropped == {"empty": 1}
    assert step.stats.kept == 0


def test_bad_config():
    with pytest.raises(ConfigError, match="max_blank_lines"):
        NormalizeConfig(max_blank_lines=-2)


def test_tinystories_mojibake_repaired(shared_data):
    # The TinyStories export carries real mojibake: "Ben’s" written as "Benâ€™s".
    text = (shared_data / "tinystories" / "tinystories_val_head.txt").read_text(encoding="utf-8")
    paragraph = next(p for p in text.split("\n\n") if "Ben\u00e2\u20ac\u2122s" in p)
    fixed, step = normalize(paragraph)
    assert "Ben\u2019s" in fixed and "Ben\u00e2\u20ac\u2122s" not in fixed
    assert step.stats.counters["mojibake_fixed"] == 1

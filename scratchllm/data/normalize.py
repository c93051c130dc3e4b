"""Text normalization: one canonical form for the same text, before any filter measures it or dedup hashes it.

The same words reach a corpus in many byte forms: "café" as one code point or as "e" plus a combining accent,
Windows line endings, trailing spaces, text that was encoded as UTF-8 and decoded as Windows-1252 along the way
("cafÃ©", called mojibake). Left alone, each form becomes its own token sequence, exact dedup misses copies that
differ only in form, and the quality filters count characters that are not really there. ``Normalize`` applies,
in this order:

1. **Mojibake repair** with ``ftfy`` (Speer 2019, "ftfy", Zenodo, doi:10.5281/zenodo.2591652), restricted to
   encoding repair: ftfy's other fixes (uncurling quotes, undoing ligatures and full-width letters, unescaping HTML
   entities) change text that was written that way on purpose, and in source code they would change string
   literals. FineWeb (Penedo et al. 2024) runs ftfy too; ours keeps only the part that restores lost characters.
2. **Unicode NFC** (Unicode Standard Annex #15): canonical composition, so "é" is always U+00E9. NFC never changes
   how text looks; NFKC would (it folds "ﬁ" to "fi" and full-width letters to ASCII), so we do not use it.
3. **Line endings** ``\\r\\n`` and ``\\r`` become ``\\n``.
4. **Control characters** are removed, except ``\\n`` and ``\\t``, and so is a byte-order mark at the start.
5. **Trailing whitespace** on each line is stripped and runs of more than ``max_blank_lines`` blank lines are
   collapsed. Leading whitespace is never touched: in Python it is syntax.

Each kind of change counts the documents it changed in ``stats.counters``; a document left with no visible text is
dropped with the reason ``"empty"``.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

import ftfy

from scratchllm.config import ConfigError

from .document import Document
from .step import Mapper

# Only the encoding repairs of ftfy (see the module docstring for why each other fix is off).
FTFY_ENCODING_ONLY = ftfy.TextFixerConfig(
    unescape_html=False,  # "&amp;" may be the content itself (HTML in a string literal, a doc about HTML)
    remove_terminal_escapes=False,
    fix_encoding=True,  # the mojibake repair proper
    restore_byte_a0=True,  # part of it: a UTF-8 sequence whose 0xA0 byte became a space
    replace_lossy_sequences=True,  # part of it: sequences already damaged beyond repair become U+FFFD
    decode_inconsistent_utf8=True,
    fix_c1_controls=True,  # C1 controls are Windows-1252 characters decoded as Latin-1
    fix_latin_ligatures=False,  # "ﬁ" -> "fi" is a compatibility (NFKC-style) change, not a repair
    fix_character_width=False,  # full-width "Ａ" -> "A" likewise
    uncurl_quotes=False,  # curly quotes are correct text
    fix_line_breaks=False,  # done below, limited to \r\n and \r
    fix_surrogates=True,  # UTF-16 surrogate pairs left in a str are one character
    remove_control_chars=False,  # done below, with an explicit character set
    normalization=None,  # NFC is its own step, so that it is counted on its own
    explain=False,  # no need for the list of fixes; we compare before and after
)

# Cc (C0, DEL and C1) minus \t and \n; \r is turned into \n before this runs.
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


@dataclass
class NormalizeConfig:
    """Which normalizations to apply. All are on by default; each can be turned off for a corpus that needs it."""

    # Repair text that was decoded with the wrong encoding (ftfy, encoding fixes only).
    fix_mojibake: bool = True
    # Compose to Unicode NFC.
    nfc: bool = True
    # Strip whitespace at the end of every line (never at the start: indentation is syntax in Python).
    strip_trailing_whitespace: bool = True
    # Collapse runs of more than this many blank lines to this many; -1 keeps them all. PEP 8 puts two blank lines
    # between top-level definitions, so 2 leaves well-formatted Python untouched.
    max_blank_lines: int = 2

    def __post_init__(self) -> None:
        if self.max_blank_lines < -1:
            raise ConfigError(f"max_blank_lines must be -1 (keep all) or at least 0; got {self.max_blank_lines}")


class Normalize(Mapper):
    """Maps each document to its normalized form (see the module docstring); drops documents left empty."""

    name = "normalize"
    config_class = NormalizeConfig

    def __init__(self, config: NormalizeConfig | None = None) -> None:
        super().__init__()
        self.config = config or NormalizeConfig()

    def apply(self, doc: Document) -> Document | str:
        cfg, counters = self.config, self.stats.counters
        text = doc.text
        if cfg.fix_mojibake and not text.isascii():  # mojibake is made of non-ASCII characters; skip ftfy's cost
            text = _count(counters, "mojibake_fixed", text, ftfy.fix_text(text, FTFY_ENCODING_ONLY))
        if cfg.nfc and not unicodedata.is_normalized("NFC", text):
            counters["nfc"] += 1
            text = unicodedata.normalize("NFC", text)
        text = _count(counters, "line_endings", text, text.replace("\r\n", "\n").replace("\r", "\n"))
        text = _count(counters, "control_chars", text, _CONTROL.sub("", text.removeprefix("\ufeff")))
        if cfg.strip_trailing_whitespace:
            text = _count(counters, "trailing_whitespace", text, "\n".join(line.rstrip() for line in text.split("\n")))
        if cfg.max_blank_lines >= 0:
            text = _count(counters, "blank_lines", text, collapse_blank_lines(text, cfg.max_blank_lines))
        if not text.strip():
            return "empty"
        return doc if text == doc.text else Document(doc.id, text, doc.source, doc.meta)


def collapse_blank_lines(text: str, max_blank: int) -> str:
    """Replace every run of more than ``max_blank`` blank lines (lines holding only spaces or tabs count as blank)
    by exactly ``max_blank`` empty lines. A run of k blank lines is k + 1 newlines with only whitespace between."""
    return re.sub(rf"\n(?:[ \t]*\n){{{max_blank + 1},}}", "\n" * (max_blank + 1), text)


def _count(counters, key: str, before: str, after: str) -> str:
    if after != before:
        counters[key] += 1
    return after

"""Pre-tokenization: the regular expressions that cut text into chunks before BPE runs.

BPE never merges across a chunk boundary, so the split pattern decides what a token *can* be: GPT-2's pattern keeps
a leading space with the word (" the"), splits letters from digits and punctuation, and leaves runs of whitespace on
their own. Later patterns refine it: GPT-4's ``cl100k_base`` caps numbers at three digits and is case-insensitive
about contractions; ``o200k_base`` knows about case inside words; Llama 3 reuses the GPT-4 idea.

The strings are the published ones (GPT-2 `encoder.py`, tiktoken's `openai_public.py`, Meta's Llama 3
`tokenizer.py`), so a tokenizer trained here with a preset can be exported to tiktoken and behave identically.
They need the third-party ``regex`` module (``\\p{L}``, possessive quantifiers), not ``re``.
"""

from __future__ import annotations

import regex

from .errors import TokenizerError

# tiktoken's faster equivalent of GPT-2's original
# r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""
GPT2_PATTERN = r"""'(?:[sdmt]|ll|ve|re)| ?\p{L}++| ?\p{N}++| ?[^\s\p{L}\p{N}]++|\s++$|\s+(?!\S)|\s"""

GPT4_PATTERN = (
    r"""'(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?+\p{L}++|\p{N}{1,3}+| ?[^\s\p{L}\p{N}]++[\r\n]*+|\s++$|\s*[\r\n]|"""
    r"""\s+(?!\S)|\s"""
)

O200K_PATTERN = "|".join(
    [
        r"""[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?""",
        r"""[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?""",
        r"""\p{N}{1,3}""",
        r""" ?[^\s\p{L}\p{N}]+[\r\n/]*""",
        r"""\s*[\r\n]+""",
        r"""\s+(?!\S)""",
        r"""\s+""",
    ]
)

LLAMA3_PATTERN = (
    r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|"""
    r"""\s+(?!\S)|\s+"""
)

PATTERNS: dict[str, str] = {
    "gpt2": GPT2_PATTERN,
    "gpt4": GPT4_PATTERN,
    "o200k": O200K_PATTERN,
    "llama3": LLAMA3_PATTERN,
}


def resolve_pattern(pattern: str) -> str:
    """Return the regex for a preset name, or ``pattern`` itself when it is a custom regex (checked to compile)."""
    if pattern in PATTERNS:
        return PATTERNS[pattern]
    try:
        regex.compile(pattern)
    except regex.error as exc:
        raise TokenizerError(
            f"split pattern {pattern!r} is neither a preset ({', '.join(PATTERNS)}) nor a valid regex: {exc}"
        ) from None
    return pattern


def pattern_name(pattern: str) -> str | None:
    """The preset name of a regex, or None for a custom one."""
    for name, value in PATTERNS.items():
        if value == pattern:
            return name
    return None

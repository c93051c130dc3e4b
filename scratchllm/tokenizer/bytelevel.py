"""GPT-2's printable alias for every byte, used by the GPT-2 and Hugging Face file formats.

GPT-2 stores its vocabulary as JSON strings, and raw bytes such as ``0x0A`` or ``0x20`` would be awkward there, so
each of the 256 bytes is given a printable Unicode character: printable Latin-1 bytes stand for themselves and the
other 68 are shifted to U+0100 and up (so a space is ``Ġ`` and a newline ``Ċ``). The same table, in the same order,
also fixes GPT-2's ids of the 256 single-byte tokens. Nothing in BPE itself depends on it.
"""

from __future__ import annotations

from functools import cache


@cache
def byte_to_char() -> dict[int, str]:
    """byte value -> the printable character that stands for it (GPT-2's ``bytes_to_unicode``)."""
    printable = [b for b in range(256) if chr(b).isprintable() and chr(b) != " "]
    table = {b: chr(b) for b in printable}
    shifted = 0
    for b in range(256):
        if b not in table:
            table[b] = chr(256 + shifted)
            shifted += 1
    return table


@cache
def char_to_byte() -> dict[str, int]:
    """The inverse table: printable character -> byte value."""
    return {c: b for b, c in byte_to_char().items()}


def gpt2_byte_order() -> list[int]:
    """The byte values in the order GPT-2 numbers them: id ``i`` is the single-byte token ``gpt2_byte_order()[i]``."""
    printable = [b for b in range(256) if chr(b).isprintable() and chr(b) != " "]
    return printable + [b for b in range(256) if b not in set(printable)]


def bytes_to_str(data: bytes) -> str:
    """Token bytes -> GPT-2 / Hugging Face vocabulary string."""
    table = byte_to_char()
    return "".join(table[b] for b in data)


def str_to_bytes(text: str) -> bytes:
    """GPT-2 / Hugging Face vocabulary string -> token bytes; KeyError if a character is not a byte alias."""
    table = char_to_byte()
    return bytes(table[c] for c in text)

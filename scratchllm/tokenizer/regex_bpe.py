"""The second layer: split text into chunks with a regex, then BPE each chunk, with a cache of encoded chunks.

Text is cut by the split pattern (see ``patterns.py``) and each chunk is encoded on its own, so tokens never cross a
chunk boundary. Natural text repeats its chunks (" the", "    return", "self"), so a dictionary from chunk to ids
answers most of them without running BPE at all; that cache is what makes pure-Python encoding usable.

Strings become bytes as UTF-8 with ``surrogateescape``: a string produced by ``bytes.decode("utf-8",
"surrogateescape")`` encodes back to exactly those bytes, so arbitrary bytes round-trip through ``encode`` and
``decode_bytes``. Other lone surrogates (U+D800..U+DC7F, U+DD00..U+DFFF) name no bytes and are refused with
:class:`EncodeError`. (tiktoken instead replaces lone surrogates by U+FFFD; for valid text the two agree.)
"""

from __future__ import annotations

from collections.abc import Sequence

import regex

from .base import ByteBPE
from .errors import EncodeError
from .patterns import resolve_pattern

CACHE_LIMIT = 1 << 18  # distinct chunks remembered; beyond this the cache is cleared (bounded memory)


class RegexBPE(ByteBPE):
    """Byte-level BPE behind a pre-tokenization regex."""

    def __init__(self, merges: Sequence[tuple[int, int]], pattern: str = "gpt4", byte_ids: Sequence[int] | None = None):
        super().__init__(merges, byte_ids)
        self.pattern: str = resolve_pattern(pattern)
        self._split = regex.compile(self.pattern)
        self._cache: dict[str, list[int]] = {}

    def split(self, text: str) -> list[str]:
        """The chunks the pattern cuts ``text`` into (BPE runs on each separately)."""
        return self._split.findall(text)

    def encode_ordinary(self, text: str) -> list[int]:
        """Encode text with no special-token handling at all: a special token's string is just text here."""
        cache = self._cache
        ids: list[int] = []
        extend = ids.extend
        for chunk in self._split.findall(text):
            cached = cache.get(chunk)
            if cached is None:
                cached = self._encode_chunk(chunk)
            extend(cached)
        return ids

    def _encode_chunk(self, chunk: str) -> list[int]:
        try:
            data = chunk.encode("utf-8", "surrogateescape")
        except UnicodeEncodeError as exc:
            bad = chunk[exc.start]
            raise EncodeError(
                f"text contains the lone surrogate U+{ord(bad):04X}, which stands for no bytes; "
                "fix the text (e.g. text.encode('utf-16', 'surrogatepass').decode('utf-16', 'replace'))"
            ) from None
        ids = self.encode_piece(data)
        if len(self._cache) >= CACHE_LIMIT:
            self._cache.clear()
        self._cache[chunk] = ids
        return ids

"""From requests to token ids and from token ids back to text, for the REPL and the server alike.

``Prompter`` knows the model's tokenizer and whether it is a chat model (its tokenizer has the chat tokens of
``finetune/template.py``). A chat prompt is the template's rendering with an open assistant turn, and generation stops
at ``<|end|>``; a plain completion prompt is BOS + the text, and generation stops at BOS (a new document). Text from
a user is encoded as ordinary text, never as special tokens, so nobody can forge a turn boundary by typing one.

``TextStream`` turns tokens into text as they arrive. A token may end in the middle of a UTF-8 character (byte-level
BPE splits bytes, not characters), so bytes go through an incremental decoder that holds an incomplete character
back until the next token completes it. Stop strings (the OpenAI ``stop`` parameter) are matched on the text; while
the text ends with the start of a stop string, that tail is held back too, so a stop string is never half-sent.
"""

from __future__ import annotations

import codecs
from collections.abc import Sequence

from ..finetune.template import ChatTemplate
from ..tokenizer import Tokenizer

BOS = "<|endoftext|>"


class Prompter:
    """Token ids for a completion or a conversation, and the tokens that end the model's answer."""

    def __init__(self, tokenizer: Tokenizer):
        self.tokenizer = tokenizer
        self.bos = tokenizer.special_tokens.get(BOS)
        self.template = ChatTemplate(tokenizer) if ChatTemplate.has_chat_tokens(tokenizer) else None

    @property
    def is_chat(self) -> bool:
        return self.template is not None

    def completion(self, text: str) -> list[int]:
        """BOS (if the tokenizer has one) + the text as ordinary tokens."""
        return ([self.bos] if self.bos is not None else []) + self.tokenizer.encode_ordinary(text)

    def chat(self, messages: Sequence) -> list[int]:
        """The conversation rendered by the chat template, ending in an open assistant turn."""
        if self.template is None:
            raise ValueError("this is a base model (its tokenizer has no chat tokens); use plain completion")
        return self.template.render(messages, add_generation_prompt=True)

    @property
    def completion_stops(self) -> frozenset[int]:
        return frozenset([self.bos] if self.bos is not None else [])

    @property
    def chat_stops(self) -> frozenset[int]:
        return frozenset(self.template.stop_tokens) if self.template is not None else self.completion_stops


class TextStream:
    """Tokens in, text out: ``push(token)`` returns the text that is safe to show now, ``close()`` the rest.

    After a stop string appears, ``stopped`` is True and everything from the stop string on is dropped."""

    def __init__(self, tokenizer: Tokenizer, stop: Sequence[str] = ()):
        self.tokenizer = tokenizer
        self.stop = [s for s in stop if s]
        self.decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self.held = ""  # decoded text not yet returned: it might be the start of a stop string
        self.stopped = False

    def push(self, token: int) -> str:
        if self.stopped:
            return ""
        return self._release(self.decoder.decode(self.tokenizer.decode_bytes([token])), final=False)

    def close(self) -> str:
        if self.stopped:
            return ""
        return self._release(self.decoder.decode(b"", final=True), final=True)

    def _release(self, text: str, final: bool) -> str:
        text = self.held + text
        self.held = ""
        cut = min((i for i in (text.find(s) for s in self.stop) if i >= 0), default=-1)
        if cut >= 0:
            self.stopped = True
            return text[:cut]
        if final:
            return text
        # Hold back the longest tail that is a prefix of some stop string.
        keep = max((n for s in self.stop for n in range(1, min(len(s), len(text) + 1)) if text.endswith(s[:n])),
                   default=0)  # fmt: skip
        self.held = text[len(text) - keep :] if keep else ""
        return text[: len(text) - keep]

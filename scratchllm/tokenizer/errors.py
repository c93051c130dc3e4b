"""Exceptions of the tokenizer, one per kind of bad input.

Every error a user can cause is a subclass of :class:`TokenizerError` (itself a ``ValueError``), so the CLI can turn
any of them into one clear line and exit status 2, and library callers can catch precisely what they expect.
"""


class TokenizerError(ValueError):
    """Base class: something about the input to the tokenizer is wrong; the message says how to fix it."""


class EmptyCorpusError(TokenizerError):
    """Training saw no text at all."""


class VocabSizeError(TokenizerError):
    """The requested vocabulary is too small to hold the 256 byte tokens and the special tokens."""


class SpecialTokenError(TokenizerError):
    """Special tokens collide with each other, with ordinary tokens, or are empty."""


class DisallowedSpecialError(TokenizerError):
    """The text contains a special token's string but the caller did not allow special tokens (as tiktoken)."""


class TokenizerFormatError(TokenizerError):
    """A tokenizer file is malformed, truncated, of the wrong kind, or inconsistent with its companion file."""


class EncodeError(TokenizerError):
    """The text cannot be turned into bytes (a lone surrogate that is not a surrogate-escaped byte)."""


class DecodeError(TokenizerError):
    """An id is outside the vocabulary."""

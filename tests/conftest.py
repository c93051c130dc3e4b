"""Shared fixtures: where the team's shared test data lives, and a small tokenizer trained once per session.

``../shared/data`` exists on the team's machines only; a user's fresh clone has no ``../shared``, so every test that
needs it asks for the ``shared_data`` fixture and is skipped cleanly without it.
"""

from __future__ import annotations

from pathlib import Path

import pytest

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip("../shared/data is absent (only the team's machines have it)")
    return SHARED_DATA


def stdlib_sample_texts(max_documents: int) -> list[str]:
    """The first documents of the embedded default corpus (always available, no download)."""
    from scratchllm.data import CorpusConfig, open_corpus

    return [doc.text for doc in open_corpus(CorpusConfig(split="all", max_documents=max_documents))]


@pytest.fixture(scope="session")
def sample_texts() -> list[str]:
    return stdlib_sample_texts(120)


@pytest.fixture(scope="session")
def trained(sample_texts):
    """A 2,000-token tokenizer trained here on Python source, with two special tokens."""
    from scratchllm.tokenizer import Tokenizer

    return Tokenizer.train(sample_texts, 2000, pattern="gpt4", special_tokens=["<|endoftext|>", "<|user|>"])

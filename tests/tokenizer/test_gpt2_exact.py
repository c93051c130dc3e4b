"""Exactness against the oracle: GPT-2's released vocabulary, encoded by us and by tiktoken, gives the same ids.

tiktoken cannot download here, so its GPT-2 encoding is built locally from the same two files with tiktoken's own
loader (which checks the files against each other) and tiktoken's own GPT-2 split pattern.
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from scratchllm.tokenizer import DisallowedSpecialError, Tokenizer

from .varied_text import VARIED

tiktoken = pytest.importorskip("tiktoken")


@pytest.fixture(scope="module")
def gpt2_pair(shared_data, monkeypatch_module):
    from tiktoken.load import data_gym_to_mergeable_bpe_ranks
    from tiktoken_ext.openai_public import r50k_pat_str

    monkeypatch_module.setenv("TIKTOKEN_CACHE_DIR", "")  # read the local files, cache nothing
    d = shared_data / "gpt2"
    ranks = data_gym_to_mergeable_bpe_ranks(str(d / "vocab.bpe"), str(d / "encoder.json"))
    oracle = tiktoken.Encoding(
        "gpt2", pat_str=r50k_pat_str, mergeable_ranks=ranks, special_tokens={"<|endoftext|>": 50256}
    )
    ours = Tokenizer.from_gpt2(d / "encoder.json", d / "vocab.bpe")
    return ours, oracle


@pytest.fixture(scope="module")
def monkeypatch_module():
    with pytest.MonkeyPatch.context() as mp:
        yield mp


def test_vocabulary_matches(gpt2_pair):
    ours, oracle = gpt2_pair
    assert ours.vocab_size == oracle.n_vocab == 50257
    assert ours.mergeable_ranks == oracle._mergeable_ranks
    assert ours.special_tokens == {"<|endoftext|>": 50256}


@pytest.mark.parametrize("text", VARIED)
def test_ids_equal_tiktoken(gpt2_pair, text):
    ours, oracle = gpt2_pair
    assert ours.encode(text, disallowed_special=()) == oracle.encode(text, disallowed_special=())
    assert ours.encode(text, allowed_special="all") == oracle.encode(text, allowed_special="all")
    assert ours.decode(oracle.encode(text, allowed_special="all")) == text


def test_special_tokens_refused_unless_allowed(gpt2_pair):
    ours, oracle = gpt2_pair
    text = "a<|endoftext|>b"
    with pytest.raises(DisallowedSpecialError, match="allowed_special"):
        ours.encode(text)
    with pytest.raises(ValueError):
        oracle.encode(text)
    assert ours.encode(text, allowed_special={"<|endoftext|>"}) == oracle.encode(
        text, allowed_special={"<|endoftext|>"}
    )
    assert 50256 in ours.encode(text, allowed_special="all")
    assert 50256 not in ours.encode(text, disallowed_special=())


def test_long_document_equals_tiktoken(gpt2_pair, shared_data):
    ours, oracle = gpt2_pair
    text = (shared_data / "tinyshakespeare" / "input.txt").read_text(encoding="utf-8")[:200_000]
    assert ours.encode(text) == oracle.encode(text)


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=st.characters(blacklist_categories=["Cs"]), max_size=200))
def test_random_text_equals_tiktoken(gpt2_pair, text):
    ours, oracle = gpt2_pair
    assert ours.encode(text, disallowed_special=()) == oracle.encode(text, disallowed_special=())

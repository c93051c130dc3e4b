"""Round trips and invariants: decode(encode(s)) == s for any string, bytes through surrogateescape, both BPE
implementations agree, batch encoding equals one-by-one encoding."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from scratchllm.tokenizer import DecodeError, DisallowedSpecialError, EncodeError
from scratchllm.tokenizer.bpe import merge_heap, merge_scan

from .varied_text import VARIED


@settings(max_examples=400, deadline=None)
@given(st.text(max_size=300))
def test_decode_encode_is_identity(trained, text):
    assert trained.decode(trained.encode(text, disallowed_special=())) == text


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300))
def test_arbitrary_bytes_round_trip_through_surrogateescape(trained, data):
    text = data.decode("utf-8", errors="surrogateescape")
    assert trained.decode_bytes(trained.encode(text, disallowed_special=())) == data


@pytest.mark.parametrize("char", ["\ud800", "\udfff", "\udc7f"])
def test_other_lone_surrogates_are_refused(trained, char):
    with pytest.raises(EncodeError, match="surrogate"):
        trained.encode(f"ok {char} ok")


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200))
def test_heap_and_scan_merges_agree(trained, data):
    assert merge_heap(data, trained.mergeable_ranks) == merge_scan(data, trained.mergeable_ranks)


def test_long_runs_use_the_heap_and_stay_exact(trained):
    text = " " * 100_000 + "=" * 50_000
    assert trained.decode(trained.encode(text)) == text


def test_decode_invalid_utf8_replaces(trained):
    ids = trained.encode("é")  # two bytes; cut after the first
    first = trained.encode_piece("é".encode()[:1])
    assert trained.decode(first) == "\ufffd"
    assert trained.decode_bytes(ids) == "é".encode()


def test_decode_unknown_id(trained):
    with pytest.raises(DecodeError, match="not in the vocabulary"):
        trained.decode([1, 2, 10**6])


def test_encode_batch_equals_encode(trained, sample_texts):
    texts = VARIED + sample_texts[:10]
    expected = [trained.encode(t, disallowed_special=()) for t in texts]
    assert trained.encode_batch(texts, workers=2, disallowed_special=(), backend="python") == expected
    assert trained.encode_batch(texts, workers=1, disallowed_special=(), backend="python") == expected


def test_bulk_tiktoken_backend_gives_identical_ids(trained, sample_texts):
    pytest.importorskip("tiktoken")
    texts = VARIED + sample_texts[:40] + ["raw bytes \udcff\udc80 survive", "é\udce9"]
    for allowed in [(), "all"]:
        expected = [trained.encode(t, allowed_special=allowed, disallowed_special=()) for t in texts]
        assert trained.encode_batch(texts, 2, allowed, disallowed_special=(), backend="tiktoken") == expected
    with pytest.raises(DisallowedSpecialError):
        trained.encode_batch(["x <|user|> y"], backend="tiktoken")


@pytest.mark.parametrize("backend", ["python", "tiktoken"])
def test_encode_iter_streams_a_generator_in_order(trained, sample_texts, backend):
    if backend == "tiktoken":
        pytest.importorskip("tiktoken")
    texts = sample_texts[:25]
    streamed = trained.encode_iter((t for t in texts), workers=2, disallowed_special=(), backend=backend, batch=4)
    assert list(streamed) == [trained.encode(t, disallowed_special=()) for t in texts]

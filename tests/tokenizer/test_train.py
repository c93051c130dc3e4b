"""Training: a hand-worked example, equality with a naive reference trainer, determinism, and bad input."""

from __future__ import annotations

from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from scratchllm.tokenizer import EmptyCorpusError, SpecialTokenError, Tokenizer, VocabSizeError
from scratchllm.tokenizer.train import count_chunks, learn_merges

NO_SPLIT = r"[\s\S]+"  # one chunk per document: makes hand-worked examples easy to follow


def naive_merges(chunk_counts: dict[str, int], num_merges: int) -> list[tuple[int, int]]:
    """Reference BPE: recount every pair after every merge (slow and obviously right), same tie-break rule."""
    words = {tuple(chunk.encode("utf-8")): count for chunk, count in chunk_counts.items()}
    merges = []
    for new_id in range(256, 256 + num_merges):
        pairs: Counter = Counter()
        for word, count in words.items():
            for pair in zip(word, word[1:]):
                pairs[pair] += count
        if not pairs:
            break
        best = min(pairs, key=lambda p: (-pairs[p], p))
        merges.append(best)
        merged_words: Counter = Counter()
        for word, count in words.items():
            out, i = [], 0
            while i < len(word):
                if word[i : i + 2] == best:
                    out.append(new_id)
                    i += 2
                else:
                    out.append(word[i])
                    i += 1
            merged_words[tuple(out)] += count
        words = merged_words
    return merges


def test_hand_worked_example():
    # "aaabdaaabac" (the classic example): pair counts aa:4, ab:2, then a tie at 2 between (97,98) and (256,97)
    # that the documented rule gives to the smaller pair (97,98); then "aa"+"ab" -> "aaab"; then all pairs occur
    # once and the smallest, (97,99) = "ac", wins.
    tok = Tokenizer.train(["aaabdaaabac"], 256 + 4, pattern=NO_SPLIT)
    assert tok.merges == [(97, 97), (97, 98), (256, 257), (97, 99)]
    assert [tok.token_bytes(i) for i in range(256, 260)] == [b"aa", b"ab", b"aaab", b"ac"]
    assert tok.encode("aaabdaaabac") == [258, 100, 258, 259]
    assert tok.encode("aaab aa") == [258, 32, 256]


def test_merges_respect_chunk_boundaries():
    tok = Tokenizer.train(["ab ab ab"], 300, pattern="gpt2")
    learned = {tok.token_bytes(i) for i in range(256, tok.n_ordinary)}
    assert b" ab" in learned and b"ab" in learned
    assert not any(b"b " in t for t in learned)  # "b" and the following " " are in different chunks


@settings(max_examples=60, deadline=None)
@given(st.lists(st.text(alphabet="ab c\nxé", max_size=30), min_size=1, max_size=8), st.integers(1, 40))
def test_incremental_trainer_equals_naive(texts, num_merges):
    counts = count_chunks(texts, r" ?\w+| ?[^\w\s]+|\s+").counts
    assert learn_merges(counts, num_merges) == naive_merges(counts, num_merges)


def test_equals_naive_on_real_code(sample_texts):
    from scratchllm.tokenizer.patterns import GPT4_PATTERN

    counts = count_chunks(sample_texts[:20], GPT4_PATTERN).counts
    assert learn_merges(counts, 150) == naive_merges(counts, 150)


def test_result_independent_of_workers(sample_texts):
    one = Tokenizer.train(sample_texts[:40], 700, workers=1)
    two = Tokenizer.train(sample_texts[:40], 700, workers=2)
    assert one == two and one.merges == two.merges


def test_trains_on_documents_as_well_as_strings(sample_texts):
    from scratchllm.data import Document

    docs = [Document(id=str(i), text=t, source="test") for i, t in enumerate(sample_texts[:10])]
    assert Tokenizer.train(docs, 400) == Tokenizer.train(sample_texts[:10], 400)


def test_training_report_and_special_ids(trained):
    report = trained.training
    assert report.documents == 120 and report.characters > 100_000
    assert report.merges == report.requested_merges == 2000 - 256 - 2
    assert trained.special_tokens == {"<|endoftext|>": 1998, "<|user|>": 1999}
    assert trained.vocab_size == 2000


def test_stops_early_when_corpus_runs_out_of_pairs():
    tok = Tokenizer.train(["abcd"], 1000, pattern=NO_SPLIT)
    assert tok.training.merges == 3 < tok.training.requested_merges
    assert tok.encode("abcd") == [258]


def test_empty_corpus_is_refused():
    with pytest.raises(EmptyCorpusError, match="empty"):
        Tokenizer.train([], 300)
    with pytest.raises(EmptyCorpusError):
        Tokenizer.train(["", ""], 300)


@pytest.mark.parametrize("vocab_size", [0, 255, 257])
def test_vocab_too_small_is_refused(vocab_size):
    with pytest.raises(VocabSizeError, match="at least 258"):
        Tokenizer.train(["hello"], vocab_size, special_tokens=["<a>", "<b>"])


def test_repeated_special_tokens_are_refused():
    with pytest.raises(SpecialTokenError, match="repeat"):
        Tokenizer.train(["hello"], 300, special_tokens=["<a>", "<a>"])

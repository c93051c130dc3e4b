"""Token shards and the loaders: exact round trip, refusal of damaged or foreign shards, deterministic and resumable
sampling, and tokenization that puts BOS + the document's exact ids into the shards."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from scratchllm.data import CorpusConfig
from scratchllm.data.loader import RandomWindows, sequential_windows
from scratchllm.data.shards import ShardError, ShardWriter, open_shard, read_header, write_shard
from scratchllm.data.tokenize import shard_paths, tokenize_corpus

HASH = "ab" * 32


@pytest.mark.parametrize("dtype", [np.uint16, np.uint32])
def test_shard_round_trip(tmp_path, dtype):
    tokens = np.arange(1000, dtype=dtype) * 7
    write_shard(tmp_path / "s.bin", tokens, HASH)
    assert read_header(tmp_path / "s.bin") == (np.dtype(dtype), 1000, HASH)
    assert np.array_equal(open_shard(tmp_path / "s.bin", HASH), tokens)


def test_damaged_and_foreign_shards_are_refused(tmp_path):
    path = write_shard(tmp_path / "s.bin", np.arange(100, dtype=np.uint16), HASH)
    with pytest.raises(ShardError, match="different tokenizer"):
        open_shard(path, "cd" * 32)
    path.write_bytes(path.read_bytes()[:-10])
    with pytest.raises(ShardError, match="truncated"):
        open_shard(path)
    (tmp_path / "x.bin").write_bytes(b"hello world" * 10)
    with pytest.raises(ShardError, match="not a token shard"):
        open_shard(tmp_path / "x.bin")


def test_writer_rolls_over_between_documents(tmp_path):
    writer = ShardWriter(tmp_path, "train", HASH, vocab_size=300, shard_tokens=10)
    docs = [[299, 1, 2, 3], [299, 4, 5, 6, 7, 8, 9], [299, 10], [299, 11, 12]]
    for doc in docs:
        writer.add(doc)
    writer.flush()
    shards = [open_shard(p, HASH) for p in writer.paths]
    assert [int(s[0]) for s in shards] == [299, 299]  # every shard starts at a document
    assert np.concatenate(shards).tolist() == sum(docs, [])
    assert writer.total_tokens == 16


@pytest.fixture
def shards(tmp_path):
    write_shard(tmp_path / "train_00000.bin", np.arange(0, 500, dtype=np.uint16), HASH)
    write_shard(tmp_path / "train_00001.bin", np.arange(1000, 1300, dtype=np.uint16), HASH)
    return sorted(tmp_path.glob("train_*.bin"))


def test_random_windows_are_deterministic_resumable_and_shifted(shards):
    a = RandomWindows(shards, batch_size=4, seq_len=16, tokenizer_hash=HASH, seed=7)
    b = RandomWindows(shards, batch_size=4, seq_len=16, tokenizer_hash=HASH, seed=7)
    it = iter(a)
    batches = [next(it) for _ in range(5)]
    assert all(torch.equal(x, y) for (x, _), (y, _) in zip(batches, [b.batch(s) for s in range(5)]))
    x, y = batches[0]
    assert x.shape == y.shape == (4, 16) and x.dtype == torch.int64
    assert torch.equal(x[:, 1:], y[:, :-1]) and torch.all(y - x == 1)  # targets are the next tokens
    resumed = RandomWindows(shards, 4, 16, HASH, seed=0)
    resumed.load_state_dict(a.state_dict())
    assert torch.equal(next(iter(resumed))[0], next(iter(a))[0])
    other_rank = RandomWindows(shards, 4, 16, HASH, seed=7, rank=1)
    assert not torch.equal(other_rank.batch(0)[0], b.batch(0)[0])


def test_windows_need_enough_tokens(tmp_path):
    path = write_shard(tmp_path / "train_00000.bin", np.arange(10, dtype=np.uint16), HASH)
    with pytest.raises(ShardError, match="no shard holds a window of 17 tokens"):
        RandomWindows([path], 2, 16, HASH)


def test_sequential_windows_cover_in_order(shards):
    batches = list(sequential_windows(shards, batch_size=8, seq_len=100, tokenizer_hash=HASH))
    inputs = torch.cat([x for x, _ in batches])
    assert inputs.shape == (4 + 2, 100)  # 500 tokens give 4 windows (each needs 101), 300 give 2
    assert inputs[0, 0] == 0 and inputs[4, 0] == 1000


def test_tokenize_corpus_writes_bos_and_exact_ids(trained, tmp_path):
    corpus = tmp_path / "c.jsonl"
    texts = [f"def f{i}():\n    return {i} # <|endoftext|> is text here\n" for i in range(300)]
    corpus.write_text("\n".join(json.dumps({"id": str(i), "text": t}) for i, t in enumerate(texts)) + "\n")
    cfg = CorpusConfig(source="jsonl", path=str(corpus), val_fraction=0.1)
    reports = tokenize_corpus(trained, cfg, tmp_path / "tok", shard_tokens=2000, workers=1)
    bos = trained.special_tokens["<|endoftext|>"]
    train_tokens = np.concatenate([open_shard(p, trained.hash) for p in shard_paths(tmp_path / "tok", "train")])
    assert int(train_tokens[0]) == bos and reports["train"].tokens == len(train_tokens)
    assert int((train_tokens == bos).sum()) == reports["train"].documents  # the text's "<|endoftext|>" is not BOS
    assert 0 < reports["val"].documents < 100 and reports["train"].documents + reports["val"].documents == 300
    summary = json.loads((tmp_path / "tok" / "tokenize.json").read_text())
    assert summary["tokenizer_hash"] == trained.hash and summary["val"]["bytes"] > 0
    decoded = trained.decode(train_tokens[1 : int(np.argmax(train_tokens[1:] == bos)) + 1].tolist())
    assert decoded in texts

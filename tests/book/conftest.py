"""Shared by the experiments' tests: a tiny random checkpoint in a run directory, as the demo leaves one,
and a small MMLU release in the CSV layout."""

from __future__ import annotations

import csv
import json

import pytest
import torch

from scratchllm.model import GPT, GPTConfig
from scratchllm.tokenizer import Tokenizer
from scratchllm.train.checkpoint import save_checkpoint

from ..conftest import stdlib_sample_texts


@pytest.fixture(scope="session")
def checkpoint(tmp_path_factory):
    tok = Tokenizer.train(stdlib_sample_texts(8), 320, pattern="gpt4", special_tokens=["<|endoftext|>"])
    torch.manual_seed(1)
    model = GPT.build(GPTConfig(vocab_size=tok.vocab_size, block_size=64, n_layer=1, n_head=2, d_model=32))
    run_dir = tmp_path_factory.mktemp("run")
    records = [{"step": i, "loss": 6.0 - i / 10} for i in range(10)] + [{"step": 9, "val_loss": 5.5, "val_bpb": 2.0}]
    (run_dir / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    return save_checkpoint(run_dir / "checkpoints" / "best", model, tok)


@pytest.fixture(scope="session")
def mmlu_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("mmlu")
    for split, count in (("dev", 5), ("test", 8)):
        (root / split).mkdir()
        with open(root / split / f"astronomy_{split}.csv", "w", newline="") as f:
            for i in range(count):
                csv.writer(f).writerow([f"Which planet is {i}?", "Mercury", "Venus", "Earth", "Mars", "ABCD"[i % 4]])
    return root

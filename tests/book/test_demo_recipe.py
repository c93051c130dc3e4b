"""Appendix A.7's recipe experiment on a small corpus: both candidates train on the same batches through the demo's
training function, the window means are the losses' means, and the table and figure are written."""

from __future__ import annotations

import json

import pytest

from scratchllm.book.experiments.demo_recipe import run, table, window_means, write
from scratchllm.data import CorpusConfig
from scratchllm.data.tokenize import tokenize_corpus
from scratchllm.tokenizer import Tokenizer

from ..conftest import stdlib_sample_texts


def test_window_means_are_means_of_full_windows():
    assert window_means([1.0, 3.0, 5.0, 7.0, 9.0], 2) == [2.0, 6.0]  # the partial last window is left out
    assert window_means([4.0], 2) == []


@pytest.mark.slow
def test_candidates_train_on_the_demo_data(tmp_path):
    tok = Tokenizer.train(stdlib_sample_texts(30), 400, pattern="gpt4", special_tokens=["<|endoftext|>"])
    tok.save(tmp_path / "tokenizer")
    tokenize_corpus(tok, CorpusConfig(max_documents=40), tmp_path / "tokens")
    result = run(tmp_path, steps=4, window=2, compile=False, shapes=())
    narrow, wide = result["runs"]
    assert (narrow["shape"], narrow["lr"], wide["shape"], wide["lr"]) == ("4x192", 4e-3, "4x256", 3e-3)
    assert wide["parameters"] > narrow["parameters"]
    for r in result["runs"]:
        assert len(r["window_means"]) == 2 and r["val_bpb"] > 0 and r["step_seconds"] > 0
    # same seed and data: the first step sees the same batch, and both start near ln(vocab)
    assert abs(narrow["window_means"][0] - wide["window_means"][0]) < 0.5
    paths = write(result, tmp_path / "out")
    assert json.loads(paths[0].read_text())["steps"] == 4 and paths[2].stat().st_size > 0
    assert "| 4x192 |" in table(result) and "| 4x256 |" in table(result)

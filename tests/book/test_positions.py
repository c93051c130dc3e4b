"""The position-encoding experiment of chapter 1: a tiny end-to-end run is well formed, and lengthening a model's
context keeps its weights and therefore its predictions on the positions it was trained on."""

from __future__ import annotations

import math

import pytest
import torch

from scratchllm.book.experiments.positions import (
    ENCODINGS,
    lengthen,
    loss_per_position,
    run,
    sliding_window_loss,
    table,
    write,
)
from scratchllm.model import GPT, GPTConfig

TINY = dict(n_layer=1, d_model=32, n_head=2, block_size=16, vocab_size=300, batch_size=8, lr=3e-3)


@pytest.fixture(scope="module")
def result():
    return run(steps=20, train_chars=200_000, eval_windows=16, val_documents=3, **TINY)


def test_run_is_well_formed(result):
    T, L = result["trained_context"], result["eval_length"]
    assert (T, L) == (16, 64) and result["eval_windows"] == 16 and result["steps"] == 20
    assert [r["pos_encoding"] for r in result["results"]] == list(ENCODINGS)
    for r in result["results"]:
        curves = result["loss_per_position"][r["pos_encoding"]]
        assert len(curves["in_context"]) == T and len(curves["window"]) == L - T
        losses = [r["in_context"]["loss"], r["beyond_window"]["loss"], *curves["in_context"], *curves["window"]]
        assert all(math.isfinite(x) for x in losses)
        # 20 steps are enough to beat the uniform guess, log(V), inside the trained context
        assert r["in_context"]["loss"] < result["log_vocab"]
        assert r["final_train_loss"] < result["log_vocab"]
        if r["pos_encoding"] == "learned":
            assert r["beyond_full"] is None and r["full_minus_window"] is None and "full" not in curves
            assert "pos.weight" in r["note"]
        else:
            assert r["note"] == "" and len(curves["full"]) == L
            assert math.isfinite(r["beyond_full"]["loss"]) and math.isfinite(r["full_minus_window"]["diff"])
            # the full-context curve's first T positions are the in-context evaluation, recomputed
            assert max(abs(a - b) for a, b in zip(curves["full"][:T], curves["in_context"])) < 1e-3


def test_table_and_files(result, tmp_path):
    lines = table(result).splitlines()
    assert len(lines) == 2 + len(ENCODINGS)
    assert "cannot run" in lines[2] and lines[2].startswith("| learned |")
    paths = write(result, tmp_path)
    assert sorted(p.name for p in paths) == ["positions.json", "positions.md", "positions.png"]
    assert (tmp_path / "positions.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize("encoding", ["rope", "sinusoidal", "none"])
def test_lengthened_model_predicts_the_same_inside_the_old_context(encoding):
    cfg = GPTConfig(vocab_size=97, block_size=64, n_layer=2, n_head=4, d_model=32, pos_encoding=encoding)
    model = GPT.build(cfg)
    model.init_weights(seed=3)
    longer = lengthen(model, 256)
    assert longer.config.block_size == 256
    idx = torch.randint(0, 97, (2, 256), generator=torch.Generator().manual_seed(0))  # (B, 256)
    with torch.no_grad():
        short_logits = model.eval()(idx[:, :64])  # (B, 64, V)
        long_logits = longer(idx)[:, :64]  # causal: the first 64 positions see the same tokens
    assert (short_logits - long_logits).abs().max().item() < 1e-5


def test_learned_positions_cannot_be_lengthened():
    model = GPT.build(GPTConfig(vocab_size=97, block_size=16, n_layer=1, n_head=2, d_model=32, pos_encoding="learned"))
    with pytest.raises(RuntimeError, match="pos.weight"):
        lengthen(model, 64)
    with pytest.raises(ValueError, match="longer than the model's context"):
        model(torch.zeros(1, 17, dtype=torch.long))


def test_sliding_window_scores_every_position_past_the_context():
    model = GPT.build(GPTConfig(vocab_size=97, block_size=16, n_layer=1, n_head=2, d_model=32, pos_encoding="rope"))
    windows = torch.randint(0, 97, (3, 65), generator=torch.Generator().manual_seed(1))  # (N, L + 1), L = 4T
    window = sliding_window_loss(model, windows)
    assert window.shape == (3, 48)
    # the first scored block is the second half of the window over inputs 8..23: positions 16..23
    expected = loss_per_position(model, windows[:, 8:25])[:, 8:]
    assert torch.equal(window[:, :8], expected)

"""The embedding claims of chapter 1: one-hot times matrix is the row lookup, in outputs and in gradients."""

from __future__ import annotations

import torch

from scratchllm.book.experiments.embedding_lookup import lookup, one_hot_matmul, run


def _inputs(vocab_size: int = 50, d_model: int = 16, shape: tuple[int, ...] = (3, 20), seed: int = 1):
    gen = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, vocab_size, shape, generator=gen)
    weight = torch.randn(vocab_size, d_model, generator=gen)
    return ids, weight, gen


def test_outputs_are_bit_identical():
    ids, weight, _ = _inputs()
    out = one_hot_matmul(ids, weight)
    assert out.shape == (3, 20, 16)
    assert torch.equal(out, lookup(ids, weight))
    assert torch.equal(out, weight[ids])  # and both are plain indexing


def test_gradients_equal_and_only_on_occurring_rows():
    ids, weight, gen = _inputs()
    grad_out = torch.randn(*ids.shape, weight.shape[1], generator=gen)
    w1 = weight.clone().requires_grad_(True)
    w2 = weight.clone().requires_grad_(True)
    one_hot_matmul(ids, w1).backward(grad_out)
    lookup(ids, w2).backward(grad_out)
    assert torch.equal(w1.grad, w2.grad)
    rows = (w2.grad != 0).any(dim=1).nonzero().flatten()
    assert torch.equal(rows, torch.unique(ids))
    # each row's gradient is the sum of the upstream gradients at that token's positions
    flat_ids, flat_grad = ids.flatten(), grad_out.reshape(-1, weight.shape[1])
    for t in torch.unique(ids).tolist():
        torch.testing.assert_close(w2.grad[t], flat_grad[flat_ids == t].sum(0), rtol=0, atol=1e-6)


def test_run_reports_equality_on_a_small_size():
    r = run(vocab_size=300, d_model=32, batch=2, seq=64, repeats=1)
    assert r["outputs_equal"] and r["grads_equal"] and r["grad_rows_are_the_tokens"]
    assert r["max_abs_diff_output"] == 0.0 and r["max_abs_diff_grad"] == 0.0
    assert r["rows_with_grad"] == r["distinct_tokens"] < r["vocab_size"]
    assert r["seconds_matmul"] > 0 and r["seconds_lookup"] > 0

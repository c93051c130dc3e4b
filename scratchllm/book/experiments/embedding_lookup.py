"""An embedding is a matrix product: ``one_hot(ids) @ W`` equals the row lookup ``W[ids]``, bit for bit.

Chapter 1 of the manual claims three things about token embeddings, and this experiment shows each by running it:

1. Multiplying a one-hot row vector by the embedding matrix ``W`` (shape ``(V, d)``) selects one row of ``W``, so
   ``F.embedding(ids, W)`` (what ``nn.Embedding`` calls) computes exactly ``F.one_hot(ids, V) @ W``: every output
   element is one product by 1.0 plus products by 0.0, which floating point evaluates without rounding.
2. The gradient with respect to ``W`` is ``one_hot(ids)^T @ grad_out``: non-zero only on the rows of tokens that
   occur in the batch, each the sum of the upstream gradients at that token's positions.
3. The lookup costs O(d) per token, the product O(V * d), so the lookup is the one to use; timing both on the same
   input puts a number on the difference.

Run it with ``python -m scratchllm.book.experiments.embedding_lookup``.
"""

from __future__ import annotations

import statistics
import time

import torch
import torch.nn.functional as F


def one_hot_matmul(ids: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """Embed ``ids`` the textbook way: one-hot row vectors times the embedding matrix.

    ``ids`` holds integers in ``[0, V)`` of any shape ``(...)``; ``weight`` is ``(V, d)``; the result is ``(..., d)``.
    """
    vocab_size = weight.shape[0]
    one_hot = F.one_hot(ids, vocab_size).to(weight.dtype)  # (..., V): a single 1.0 in each row
    return one_hot @ weight  # (..., V) @ (V, d) -> (..., d)


def lookup(ids: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """Embed ``ids`` the way ``nn.Embedding`` does: read row ``ids[i]`` of ``weight`` directly, (...) -> (..., d)."""
    return F.embedding(ids, weight)


def _median_seconds(fn, repeats: int) -> float:
    """Median wall time of ``fn()`` over ``repeats`` calls, after one warm-up call (allocator, thread pool)."""
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def run(
    vocab_size: int = 8192, d_model: int = 384, batch: int = 8, seq: int = 256, seed: int = 0, repeats: int = 5
) -> dict:
    """Compare the one-hot product with the lookup on one random batch: outputs, gradients and CPU time (fp32).

    The default shape is a small GPT's: an 8,192-token vocabulary, width 384, 8 sequences of 256 tokens.
    """
    gen = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, vocab_size, (batch, seq), generator=gen)  # (B, T)
    weight = torch.randn(vocab_size, d_model, generator=gen)  # (V, d)
    grad_out = torch.randn(batch, seq, d_model, generator=gen)  # (B, T, d): any upstream gradient will do

    # Forward: the same numbers, not merely close ones.
    w_matmul = weight.clone().requires_grad_(True)
    w_lookup = weight.clone().requires_grad_(True)
    out_matmul = one_hot_matmul(ids, w_matmul)  # (B, T, d)
    out_lookup = lookup(ids, w_lookup)  # (B, T, d)

    # Backward: push the same upstream gradient through both and compare dL/dW.
    out_matmul.backward(grad_out)
    out_lookup.backward(grad_out)
    rows_with_grad = (w_lookup.grad != 0).any(dim=1).nonzero().flatten()  # (rows,)
    distinct = torch.unique(ids)  # (distinct,), sorted like rows_with_grad

    with torch.no_grad():
        seconds_matmul = _median_seconds(lambda: one_hot_matmul(ids, weight), repeats)
        seconds_lookup = _median_seconds(lambda: lookup(ids, weight), repeats)

    return {
        "vocab_size": vocab_size,
        "d_model": d_model,
        "tokens": batch * seq,
        "torch_threads": torch.get_num_threads(),
        "outputs_equal": torch.equal(out_matmul, out_lookup),
        "max_abs_diff_output": (out_matmul - out_lookup).abs().max().item(),
        "grads_equal": torch.equal(w_matmul.grad, w_lookup.grad),
        "max_abs_diff_grad": (w_matmul.grad - w_lookup.grad).abs().max().item(),
        "rows_with_grad": rows_with_grad.numel(),
        "distinct_tokens": distinct.numel(),
        "grad_rows_are_the_tokens": torch.equal(rows_with_grad, distinct),
        "one_hot_mib": batch * seq * vocab_size * weight.element_size() / 2**20,
        "seconds_matmul": seconds_matmul,
        "seconds_lookup": seconds_lookup,
        "speedup": seconds_matmul / seconds_lookup,
    }


def main() -> None:
    """Run with the default sizes and print one result per line."""
    r = run()
    print(f"V={r['vocab_size']} d={r['d_model']} tokens={r['tokens']} fp32, CPU threads={r['torch_threads']}")
    print(f"outputs equal (torch.equal): {r['outputs_equal']}  max |diff| = {r['max_abs_diff_output']:.3g}")
    print(f"weight grads equal (torch.equal): {r['grads_equal']}  max |diff| = {r['max_abs_diff_grad']:.3g}")
    print(
        f"rows with non-zero grad: {r['rows_with_grad']} of {r['vocab_size']}; distinct tokens in batch: "
        f"{r['distinct_tokens']}; same rows: {r['grad_rows_are_the_tokens']}"
    )
    print(f"one-hot matrix: {r['one_hot_mib']:.0f} MiB")
    print(
        f"median time: one_hot @ W {1e3 * r['seconds_matmul']:.2f} ms, lookup {1e3 * r['seconds_lookup']:.3f} ms, "
        f"ratio {r['speedup']:.0f}x"
    )


if __name__ == "__main__":
    main()

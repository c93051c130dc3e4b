"""Model FLOPs utilization (MFU): the fraction of the machine's peak arithmetic that training turns into model math.

    MFU = flops_per_token(model) * tokens_per_second / peak_flops_per_second

The numerator counts only the FLOPs the model needs (6N plus attention, ``model.config.flops_per_token``), not what
an implementation adds (recomputation under activation checkpointing, padding), so MFU compares implementations and
machines honestly (PaLM, Chowdhery et al. 2022, appendix B). The denominator is *measured*: a datasheet's peak is
rarely reached, and a laptop CPU's depends on its vector units, its clock and how many cores are free. We time the
best of a few large square matrix products in the training dtype, which is as close to peak as this machine gets.
"""

from __future__ import annotations

import time

import torch

PEAK_DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


def matmul_peak_flops(device: torch.device | str = "cpu", dtype: str = "fp32", n: int | None = None, repeats: int = 5):
    """Best FLOP/s of an (n x n) @ (n x n) product (2 n^3 FLOPs) on ``device`` in ``dtype`` ("fp32", "bf16", "fp16").

    ``n`` defaults to 2048 on a CPU (about 0.1 s a product on 2 cores) and 8192 on a GPU (enough work to fill it)."""
    device = torch.device(device)
    n = n or (8192 if device.type == "cuda" else 2048)
    a = torch.randn(n, n, device=device, dtype=PEAK_DTYPES[dtype])
    b = torch.randn(n, n, device=device, dtype=PEAK_DTYPES[dtype])

    def timed() -> float:
        _sync(device)
        start = time.perf_counter()
        a @ b
        _sync(device)
        return time.perf_counter() - start

    timed()  # warm-up: thread pools, kernels, caches
    best = min(timed() for _ in range(repeats))
    return 2 * n**3 / best


def mfu(flops_per_token: float, tokens_per_s: float, peak_flops: float) -> float:
    """Model FLOPs utilization: the model's FLOPs per second over the measured peak (0.5 means half the peak)."""
    return flops_per_token * tokens_per_s / peak_flops


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)

"""Mixed precision and compilation: how a training step runs faster without changing what it computes (much).

Autocast (``torch.autocast``) runs matrix multiplications in a 16-bit type while the weights, the optimizer state, the
norms and the loss stay in fp32 (Micikevicius et al. 2018, "Mixed Precision Training"):

- bf16 has fp32's exponent range, so gradients neither overflow nor underflow: autocast alone is enough. GPUs from
  Ampere on run it at full speed; a CPU without bf16 instructions emulates it and is several times slower than fp32,
  which is why fp32 is the CPU default.
- fp16 has 3 more bits of mantissa but a narrow range: small gradients underflow to zero. Loss scaling multiplies the
  loss by a large factor before backward and divides the gradients by it before the update; ``GradScaler`` picks the
  factor dynamically, halving it (and skipping the update) when a gradient overflows to inf, and doubling it after a
  run of good steps. A skipped fp16 step is routine, not a divergence.

``torch.compile`` traces the model into a graph and generates fused kernels (C++/OpenMP on a CPU, Triton on a GPU).
The first step pays the compilation (tens of seconds); later ones run faster, about 2x for the tiny model on a 2-core
CPU (docs/04). Compilation needs a C++ compiler; where it fails, :func:`compiled_or_eager` falls back to eager mode
with a warning rather than losing the run.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext

import torch
from torch import nn

AUTOCAST_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def autocast_factory(dtype: str, device: torch.device) -> Callable[[], AbstractContextManager]:
    """A factory of the context to run each forward pass in: autocast for "bf16"/"fp16", nothing for "fp32"."""
    if dtype not in AUTOCAST_DTYPES:
        return nullcontext
    return lambda: torch.autocast(device.type, dtype=AUTOCAST_DTYPES[dtype])


def fsdp_mixed_precision(dtype: str, device: torch.device) -> tuple[torch.dtype | None, torch.dtype | None]:
    """FSDP's mixed-precision policy for a training dtype, as ``(param_dtype, reduce_dtype)``.

    On a GPU with "bf16", FSDP gathers each block's weights in bf16 (half the all-gather traffic and the gathered
    copy's memory) while the shards, the optimizer's master weights, stay fp32, and it reduce-scatters gradients in
    fp32 so the sum over ranks keeps its precision (torchtitan's default). Autocast still runs around the forward, so
    the operations it keeps in fp32 (norms, softmax, the loss) stay there. Elsewhere none: fp16's loss scaler works on
    fp32 parameters through autocast, and a CPU emulates bf16 matmuls (train/precision's note above)."""
    if device.type != "cuda" or dtype != "bf16":
        return None, None
    return torch.bfloat16, torch.float32


def grad_scaler(dtype: str, device: torch.device) -> torch.amp.GradScaler | None:
    """The dynamic loss scaler fp16 needs; None for fp32 and bf16, whose range does not need one."""
    return torch.amp.GradScaler(device.type) if dtype == "fp16" else None


class CompiledSteps:
    """Runs training steps through ``torch.compile(model)`` when ``enabled``. If the first compiled step fails (no C++
    compiler, an operation the compiler does not support), it warns, clears the partial gradients, and runs that
    step and every later one eagerly, rather than losing the run. Errors after the first step are real errors.

    The optimizer and the checkpoints keep using ``model`` itself: a compiled module shares its parameters but would
    prefix every name in its state_dict with ``_orig_mod.``."""

    def __init__(self, model: nn.Module, enabled: bool):
        self.model = model
        self.current = torch.compile(model) if enabled else model
        self.proven = not enabled

    def run(self, step: Callable[[nn.Module], object], optimizer: torch.optim.Optimizer):
        """``step(module)`` once, through the compiled module if it works."""
        if self.proven:
            return step(self.current)
        try:
            result = step(self.current)
        except Exception as exc:  # noqa: BLE001 -- inductor raises many kinds; each means "run eagerly instead"
            text = str(exc).strip()
            reason = text.splitlines()[0][:200] if text else type(exc).__name__
            print(f"warning: torch.compile failed ({reason}); training continues without it", file=sys.stderr)
            optimizer.zero_grad(set_to_none=True)  # a backward may have run before the failure
            self.current = self.model
            result = step(self.model)
        self.proven = True
        return result

"""Fit the memory: choose the micro-batch size and accumulation steps of a run by measuring real training steps.

A training step holds the weights, their gradients and AdamW's two moments (4 bytes each per parameter in fp32, 16
in all), the optimizer's temporaries, the framework's own memory, and the activations of one micro-batch; only the
activations grow with the micro-batch. Rather than add up every kernel's workspace on paper (which depends on the
attention kernel, the allocator, autocast, the library version), we measure:

1. run real training steps (forward, backward, clipping and the update, through ``train/step.accumulated_step``) at
   micro-batches of 1, 2, 4, ... sequences, reading each one's peak with ``train/memory.py`` (the CUDA allocator's
   peak, or the process's peak resident set on a Linux CPU), doubling while the line through the last two probes
   says the next size fits;
2. take ``peak = base + per_sequence * micro_batch`` through the last two probes;
3. choose the largest divisor of the target batch whose predicted peak stays under the budget less a safety margin,
   so that ``micro_batch_size * grad_accum_steps`` is exactly the batch asked for, in the fewest (fastest) steps;
4. verify it with a real step at that size (unless it was a probe), stepping down to the next divisor while the
   measured peak is over (or, on CUDA, while the step runs out of memory).

Why doubling rather than two small probes: a step's peak is the larger of a part that grows with the micro-batch (the
activations, all alive early in the backward pass) and a part that does not (every gradient at once, the update's
temporaries). With few sequences the fixed part wins and hides the slope. The gpt2 preset at 256 tokens on a CPU peaked
at 2.59, 2.71, 2.94, 4.15 and 6.58 GiB with 1, 2, 4, 8 and 16 sequences: 0.12 GiB per sequence at first, 0.30 beyond 4,
so the line through 1 and 2 would have promised 16 sequences in 4.4 GiB. The probes together cost less than two steps at
the largest size probed. The margin (10% by default) is kept free for what one step does not show: the allocator's
fragmentation over a long run, evaluation, the data loader, other processes growing.

Leaving the model as it was costs no memory. The probes use a throwaway optimizer from ``train/optim.build_optimizer``
(the real one's kind and state sizes) with learning rate 0: AdamW multiplies every weight by ``1 - lr *
weight_decay``, exactly 1, and adds ``lr`` times a finite number, exactly zero, so every weight keeps its value (an
exact zero could at most flip its sign bit). A copy of the weights would be simpler to trust but would add 4 bytes
per parameter to the very peak being measured; ``tests/train/test_fit.py`` checks the weights are unchanged. Torch's
random state (dropout draws from it), the gradients and the train/eval mode are saved and restored. Call this before
the real optimizer holds state, or its moments are counted twice and the choice is too cautious.

On the CPU the measure is noisy. glibc keeps freed blocks below its mmap threshold (which grows up to 32 MiB) in its
heap rather than returning them to the system, so after a step the resident set still holds that step's dead tensors
and the next peak starts from there. ``benchmarks/memory.py`` sets ``MALLOC_MMAP_THRESHOLD_`` for a child process;
inside the trainer's process that would slow the whole run, so each probe instead starts after garbage collection and
``malloc_trim(0)``, which hands the free pages back. Reuse of freed blocks within a step is what training does too,
so it is measured as it is. Whole pages and shared libraries hide a tiny model's activations: a negative slope is
read as zero, and the verifying step has the last word. A CPU step beyond the machine's memory is no exception to
catch but the kernel's OOM killer, so the budget matters there.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import gc
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from ..config import ConfigError
from .config import TrainConfig
from .memory import current_memory_bytes, peak_memory_bytes, reset_peak_memory
from .optim import build_optimizer
from .precision import autocast_factory
from .schedule import set_lr
from .step import accumulated_step

MARGIN = 0.10  # fraction of the budget kept free for what one measured step does not show
GIB = 2**30


class BatchDoesNotFit(ConfigError):
    """Not even one sequence per micro-batch fits in the memory budget; the message says what to change."""


@dataclass(frozen=True)
class BatchFit:
    """The plan: ``micro_batch_size`` sequences per forward/backward, ``grad_accum_steps`` of them per update."""

    micro_batch_size: int
    grad_accum_steps: int
    predicted_peak_bytes: int  # from the line through the probes, at micro_batch_size
    measured_peak_bytes: int  # a real step at micro_batch_size
    budget_bytes: int
    margin: float  # fraction of the budget kept free: every chosen peak is at most budget * (1 - margin)
    probes: tuple[tuple[int, float], ...]  # (micro-batch, measured peak bytes) in the order run; inf = out of memory

    @property
    def batch_size(self) -> int:
        return self.micro_batch_size * self.grad_accum_steps

    def format(self) -> str:
        """One line for the command line."""
        return (
            f"micro-batch {self.micro_batch_size} x {self.grad_accum_steps} accumulation steps = {self.batch_size} "
            f"sequences; peak {self.measured_peak_bytes / GIB:.1f} GiB measured "
            f"({self.predicted_peak_bytes / GIB:.1f} predicted) of a {self.budget_bytes / GIB:.1f} GiB budget "
            f"less {self.margin:.0%} margin"
        )

    __str__ = format


def divisors(n: int) -> list[int]:
    """The divisors of ``n``, ascending: the micro-batch sizes that split a batch of ``n`` exactly."""
    return [d for d in range(1, n + 1) if n % d == 0]


def _too_big(peak: float, budget: float, margin: float) -> BatchDoesNotFit:
    needs = "runs out of memory" if math.isinf(peak) else f"needs {peak / GIB:.2f} GiB"
    return BatchDoesNotFit(
        f"even a micro-batch of 1 sequence {needs}, over the {budget * (1 - margin) / GIB:.2f} GiB allowed "
        f"(a {budget / GIB:.2f} GiB budget less {margin:.0%} margin). To fit, recompute activations in the backward "
        "pass (model.activation_checkpointing=true), compute the loss in chunks without the full logits "
        "(model.loss_chunk_size=1024), shorten train.seq_len, train a smaller model, or raise the budget"
    )


def choose_micro_batch(target: int, base: float, per_sequence: float, budget: float, margin: float = MARGIN) -> int:
    """The largest divisor ``d`` of ``target`` with ``base + per_sequence * d <= budget * (1 - margin)``.

    Raises :class:`BatchDoesNotFit` when not even ``d = 1`` does."""
    usable = budget * (1 - margin)
    fitting = [d for d in divisors(target) if base + per_sequence * d <= usable]
    if not fitting:
        raise _too_big(base + per_sequence, budget, margin)
    return fitting[-1]


def _line(points: list[tuple[int, float]]) -> tuple[float, float]:
    """(base, per_sequence) of the line through the last two (micro-batch, peak) points; a negative slope is noise."""
    (m0, p0), (m1, p1) = points[-2:]
    per_sequence = max((p1 - p0) / (m1 - m0), 0.0)
    return p1 - per_sequence * m1, per_sequence


def plan_batch(target: int, measure: Callable[[int], float], budget: float, margin: float = MARGIN) -> BatchFit:
    """Steps 1-4 of the module docstring, with ``measure(micro_batch)`` giving the peak bytes of one real step at
    that size (``math.inf`` when it ran out of memory). Each size is measured at most once."""
    measured: dict[int, float] = {}

    def peak(m: int) -> float:
        if m not in measured:
            measured[m] = float(measure(m))
        return measured[m]

    usable = budget * (1 - margin)
    if peak(1) > usable:  # nothing to fit: do not risk a larger probe
        raise _too_big(measured[1], budget, margin)
    # Probe 2, 4, 8, ... while the line through the last two probes says the next fits: the slope that matters is
    # the one at large micro-batches, which small probes underestimate (see the docstring).
    fits = [(1, measured[1])]
    while 2 * fits[-1][0] <= target:
        m = 2 * fits[-1][0]
        if len(fits) >= 2:
            base, per_sequence = _line(fits)
            if base + per_sequence * m > usable:
                break
        if peak(m) > usable:
            break
        fits.append((m, measured[m]))
    if len(fits) == 1:  # target 1, or 2 sequences do not fit
        m, predicted = 1, measured[1]
    else:
        base, per_sequence = _line(fits)
        m = choose_micro_batch(target, base, per_sequence, budget, margin)
        while True:  # verify: step down past every size measured not to fit (the peak grows with the size)
            too_big = min((k for k, p in measured.items() if p > usable), default=target + 1)
            m = max(d for d in divisors(target) if d <= m and d < too_big)  # 1 at the latest, which fits
            if peak(m) <= usable:
                break
        predicted = base + per_sequence * m
    return BatchFit(
        micro_batch_size=m,
        grad_accum_steps=target // m,
        predicted_peak_bytes=round(predicted),
        measured_peak_bytes=round(measured[m]),
        budget_bytes=round(budget),
        margin=margin,
        probes=tuple(measured.items()),
    )


# --------------------------------------------------------------------------------------------------------------------
# Measuring


@functools.cache
def _malloc_trim() -> Callable[[int], int] | None:
    """glibc's ``malloc_trim``, or None where the C library has none (musl, macOS, Windows)."""
    try:
        return ctypes.CDLL(ctypes.util.find_library("c")).malloc_trim
    except (OSError, AttributeError, TypeError):
        return None


def _release_freed_memory(device: torch.device) -> None:
    """Let the next peak start from live memory: collect garbage and hand cached free memory back."""
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()
    elif (trim := _malloc_trim()) is not None:
        trim(0)


def default_budget(device: torch.device | str) -> int:
    """The memory this process could hold on ``device``, before the margin.

    CUDA: the device's free memory plus what PyTorch's allocator already reserved (ours to reuse). CPU on Linux:
    ``MemAvailable`` from ``/proc/meminfo`` plus this process's resident set, capped by the cgroup's limit in a
    container. Elsewhere the budget cannot be known and must be given."""
    device = torch.device(device)
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return free + torch.cuda.memory_reserved(device)
    rss = current_memory_bytes(device)
    available = None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                available = int(line.split()[1]) * 1024
    except OSError:
        pass
    if device.type != "cpu" or rss is None or available is None:
        raise ConfigError(
            f"cannot tell how much memory {device} has (only CUDA and Linux CPUs are measured); "
            "give the budget explicitly, e.g. budget_bytes=8 * 2**30"
        )
    budget = available + rss
    try:  # a container's limit is lower than what /proc/meminfo reports for the whole machine
        limit = Path("/sys/fs/cgroup/memory.max").read_text().strip()
        budget = min(budget, int(limit)) if limit.isdigit() else budget
    except OSError:
        pass
    return budget


def _step_probe(model: nn.Module, seq_len: int, cfg: TrainConfig, device: torch.device) -> Callable[[int], float]:
    """``measure(micro_batch)``: the peak bytes of one real training step of ``model`` at that size (inf on a CUDA
    out-of-memory error), with a throwaway optimizer whose learning rate is 0 (see the module docstring), after one
    unmeasured warm-up step."""
    autocast = autocast_factory(cfg.dtype, device)
    optimizer = build_optimizer(model, cfg)
    set_lr(optimizer, 0.0)  # the update is an exact zero

    def measure(micro_batch: int) -> float:
        tokens = torch.zeros(micro_batch, seq_len, dtype=torch.long, device=device)  # values do not change memory
        _release_freed_memory(device)
        reset_peak_memory(device)
        try:
            accumulated_step(model, [(tokens, tokens)], optimizer, cfg.grad_clip, autocast=autocast)
        except torch.OutOfMemoryError:
            if device.type != "cuda":
                raise
            optimizer.zero_grad(set_to_none=True)
            return math.inf
        return peak_memory_bytes(device)

    # Warm up: AdamW allocates its moments during the first step, so only from the second on do the forward and
    # backward passes run beside them, as in training (gpt2, 256 tokens: 1.64 GiB in the first backward, 2.59 in the
    # second). On CUDA the kernels' workspaces exist by then too.
    measure(1)
    return measure


def fit_batch(
    model: nn.Module,
    target_batch: int,
    seq_len: int,
    budget_bytes: int | None = None,
    *,
    cfg: TrainConfig | None = None,
    margin: float = MARGIN,
) -> BatchFit:
    """Choose ``micro_batch_size * grad_accum_steps == target_batch`` (sequences of ``seq_len`` tokens per
    optimizer step, per process) that fits ``budget_bytes`` (default :func:`default_budget` of the model's device),
    by measuring real training steps of ``model`` on its device (see the module docstring).

    ``cfg``: the run's training config, for the optimizer (``build_optimizer``), ``grad_clip`` and ``dtype`` (bf16
    and fp16 run the forward under autocast, as the trainer does); default ``TrainConfig()``. The model's weights,
    gradients, mode and torch's random state are left as they were. Raises :class:`BatchDoesNotFit` when not even
    one sequence fits, ConfigError for arguments that cannot work."""
    cfg = cfg or TrainConfig()
    device = next(model.parameters()).device
    block_size = getattr(getattr(model, "config", None), "block_size", seq_len)
    if target_batch < 1 or not 1 <= seq_len <= block_size:
        raise ConfigError(
            f"fit_batch needs target_batch >= 1 and 1 <= seq_len <= the model's block_size ({block_size}); "
            f"got target_batch={target_batch}, seq_len={seq_len}"
        )
    if not 0.0 <= margin < 1.0:
        raise ConfigError(f"margin must be in [0, 1) (0.1 keeps 10% of the budget free); got {margin}")
    if not reset_peak_memory(device):
        raise ConfigError(f"peak memory cannot be measured on {device} here (only CUDA and Linux CPUs)")
    budget = default_budget(device) if budget_bytes is None else budget_bytes
    if budget <= 0:
        raise ConfigError(f"budget_bytes must be positive; got {budget}")

    params = list(model.parameters())
    grads = [p.grad for p in params]
    was_training = model.training
    cpu_rng = torch.get_rng_state()
    cuda_rng = torch.cuda.get_rng_state(device) if device.type == "cuda" else None
    for p in params:
        p.grad = None  # accumulated_step needs empty gradients; the caller's come back below
    model.train()
    try:
        # The probe and its optimizer are freed when plan_batch returns, before the memory is handed back below.
        return plan_batch(target_batch, _step_probe(model, seq_len, cfg, device), budget, margin)
    finally:
        for p, g in zip(params, grads):
            p.grad = g
        model.train(was_training)
        torch.set_rng_state(cpu_rng)
        if cuda_rng is not None:
            torch.cuda.set_rng_state(cuda_rng, device)
        _release_freed_memory(device)

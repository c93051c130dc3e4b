"""One optimizer step over several micro-batches: gradient accumulation done right, clipping, the update.

A batch too large for memory is split into micro-batches whose gradients add up in ``.grad`` before one update. The
update must equal the one the whole batch would have given, whose loss is the mean cross-entropy over all counted
target tokens of the batch (targets of -100, such as padding or prompts, do not count):

    L = sum over every counted token of CE  /  N_total

The tempting recipe, "compute each micro-batch's mean loss and divide it by the number of micro-batches", gives
``(1/k) sum_i (S_i / N_i)`` instead: a token in a micro-batch with few counted targets weighs more than a token in a
full one. It is exact only when every micro-batch counts the same number of tokens, which padding, packing and
finetuning masks all break. Hugging Face ``transformers`` shipped this bug in its Trainer until October 2024
("Fixing Gradient Accumulation", Hugging Face blog; the fix passes ``num_items_in_batch`` to the loss).

So ``accumulated_step`` first counts the targets of all micro-batches, then backpropagates each micro-batch's
*summed* loss divided by that total: the accumulated gradient is exactly the gradient of ``L``. It then clips the
global gradient norm, applies the optimizer and clears the gradients.

Under data parallelism the batch of a step is spread over R ranks, and two more things change. The count to divide
by is the global one, all-reduced over the ranks (``all_reduce``): ranks count different numbers of targets as soon
as anything is masked. And DDP (like FSDP) *averages* the ranks' gradients, (1/R) sum_r g_r, so each rank divides its
summed loss by N_total / R (``ranks``): the average is then exactly the gradient of ``L``. Gradients should also be
all-reduced only once, after the last micro-batch, which is what ``no_sync`` is for (DDP's ``model.no_sync``; FSDP2
uses ``set_requires_gradient_sync`` instead).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn
from torch.distributed.tensor import DTensor

from ..model.loss import IGNORE_INDEX


@dataclass(frozen=True)
class StepResult:
    """What one optimizer step reports."""

    loss: float  # mean cross-entropy over every counted target token of the step's batch, before the update
    tokens: int  # counted target tokens (targets != -100) over all micro-batches (and all data-parallel ranks)
    grad_norm: float  # global L2 norm of the gradient before clipping
    updated: bool = True  # False when the loss or gradient was not finite and the update was skipped
    # fp16 only: the loss was finite but a scaled gradient overflowed; the scaler skipped the step and lowered its
    # scale. Routine in the first steps of an fp16 run, not a divergence.
    overflow: bool = False


def accumulated_step(
    model: nn.Module,
    micro_batches: Iterable[tuple[torch.Tensor, torch.Tensor]],
    optimizer: torch.optim.Optimizer,
    grad_clip: float = 0.0,
    *,
    no_sync: Callable[[], AbstractContextManager] = nullcontext,
    autocast: Callable[[], AbstractContextManager] = nullcontext,
    scaler: torch.amp.GradScaler | None = None,
    all_reduce: Callable[[torch.Tensor], torch.Tensor] | None = None,
    ranks: int = 1,
) -> StepResult:
    """Forward and backward every (inputs, targets) micro-batch, then clip, step and zero the gradients.

    ``grad_clip``: the largest global gradient norm allowed (0 = no clipping). ``no_sync``: a context factory
    entered around every micro-batch but the last, e.g. ``model.no_sync`` under DDP so that gradients are
    all-reduced once per step instead of once per micro-batch. ``autocast``: a context factory around each forward
    pass, e.g. ``lambda: torch.autocast("cuda", torch.bfloat16)``; backward runs outside it, as PyTorch advises.
    ``scaler``: fp16's loss scaler (train/precision.py): the loss is scaled before backward, the gradients unscaled
    before clipping, and an update whose gradients overflowed is skipped by the scaler, which then lowers its scale.
    ``all_reduce``: sums a tensor over the data-parallel ranks (``parallel.dist.sum_over_ranks``); with it the token
    count and the reported loss are global. ``ranks``: how many ranks the gradients are averaged over (1 without
    data parallelism). Gradients must be empty (None or zero) on entry; they are set to None on return.
    """
    micro_batches = list(micro_batches)  # iterated twice: once to count, once to compute
    if not micro_batches:
        raise ValueError("accumulated_step needs at least one micro-batch")
    # Count first: every micro-batch's loss is divided by the count of the whole step, known only now.
    local = sum((targets != IGNORE_INDEX).sum() for _, targets in micro_batches)  # () int64, on the device
    tokens = int(all_reduce(local) if all_reduce is not None else local)
    if tokens == 0:
        raise ValueError("every target of this step is ignored (-100): there is no loss to learn from")
    # Each rank's share of the divisor: the average of the ranks' gradients is then the gradient of the global mean.
    divisor = tokens / ranks

    sums = []  # detached per-micro-batch sums, kept on the device: no synchronization until the end
    last = len(micro_batches) - 1
    for i, (inputs, targets) in enumerate(micro_batches):
        with no_sync() if i < last else nullcontext():
            with autocast():
                micro_sum = model(inputs, targets, reduction="sum")  # sum of CE over this micro-batch's targets
            # Dividing by the step's total (not this micro-batch's count) makes the accumulated .grad the gradient
            # of the mean over all tokens of the step.
            micro_loss = micro_sum / divisor
            (scaler.scale(micro_loss) if scaler is not None else micro_loss).backward()
        sums.append(micro_sum.detach().float())

    params = [p for p in model.parameters() if p.grad is not None]
    if scaler is not None:
        scaler.unscale_(optimizer)  # clip and report the true gradient, not the scaled one
    grad_norm = clip_gradients(params, grad_clip)  # the norm before clipping, logged even without clipping
    total = torch.stack(sums).sum()
    loss = float(all_reduce(total) if all_reduce is not None else total) / tokens
    # A NaN or inf anywhere would poison every weight through the update: never apply it. The caller decides
    # whether that ends the run or just skips the step.
    updated = math.isfinite(loss) and math.isfinite(float(grad_norm))
    if scaler is not None:
        scaler.step(optimizer)  # skips the update itself when a gradient is inf or NaN
        scaler.update()  # and then halves the scale; after a run of good steps it doubles it
    elif updated:
        optimizer.step()
    optimizer.zero_grad(set_to_none=True)  # frees the gradients' memory until the next backward
    overflow = scaler is not None and math.isfinite(loss) and not updated
    return StepResult(loss=loss, tokens=tokens, grad_norm=float(grad_norm), updated=updated, overflow=overflow)


def clip_gradients(params: list[torch.Tensor], max_norm: float) -> float:
    """Scale the gradients of ``params`` so that their global L2 norm is at most ``max_norm`` (0: leave them), and
    return the norm before scaling.

    Plain tensors and DDP use ``torch.nn.utils.clip_grad_norm_``. Sharded gradients (FSDP, tensor parallelism, or both
    on a 2D mesh, where the embedding lives on the dp mesh and the blocks on the dp x tp mesh) go through
    :func:`squared_norm`, since ``clip_grad_norm_`` cannot stack DTensors of different meshes."""
    grads = [p.grad for p in params]
    if not any(isinstance(g, DTensor) for g in grads):
        if max_norm > 0:
            return float(nn.utils.clip_grad_norm_(params, max_norm))
        return float(nn.utils.get_total_norm(grads))
    norm = math.sqrt(float(squared_norm(grads)))
    if max_norm > 0:
        coef = min(1.0, max_norm / (norm + 1e-6))  # clip_grad_norm_'s coefficient
        for g in grads:
            g.mul_(coef)
    return norm


def squared_norm(grads: list[torch.Tensor]) -> torch.Tensor:
    """The squared L2 norm of ``grads`` over this stage, in float64, whatever their layout.

    Plain tensors add up directly. DTensors (FSDP shards over dp, tensor-parallel shards over tp, or both) are
    grouped by the mesh dimensions they are sharded on; each group's local sums are all-reduced over exactly those
    dimensions and not over the ones the tensors are replicated on (a norm weight replicated over tp must count
    once, not tp times): one small collective per group and dimension, not per parameter."""
    total = torch.zeros((), dtype=torch.float64)
    by_layout: dict[tuple, torch.Tensor] = {}
    for g in grads:
        local = (g.to_local() if isinstance(g, DTensor) else g).double().square().sum()
        if isinstance(g, DTensor):
            # Not ``is_shard()``: FSDP over a tensor-parallel weight places it as ``_StridedShard``, which says no.
            sharded = tuple(dim for dim, placement in enumerate(g.placements) if not placement.is_replicate())
            key = (g.device_mesh, sharded)
            by_layout[key] = by_layout.get(key, torch.zeros((), dtype=torch.float64, device=local.device)) + local
        else:
            total = total + local.cpu()
    for (mesh, sharded), local_sum in by_layout.items():
        for dim in sharded:
            dist.all_reduce(local_sum, group=mesh.get_group(dim))
        total = total + local_sum.cpu()
    return total

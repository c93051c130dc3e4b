"""Fully sharded data parallelism with FSDP2 (``fully_shard``): each rank keeps 1/N of every parameter, gradient
and optimizer state, and gathers a block's full weights only while that block computes.

DDP keeps a whole replica of the model, its gradients and Adam's two moments on every rank: 16 bytes per parameter in
mixed precision, which caps the model at what one device holds. ZeRO (Rajbhandari et al. 2020) removes that
redundancy in three stages: shard the optimizer state (stage 1), also the gradients (stage 2), also the parameters
themselves (stage 3). FSDP is stage 3. Its collectives per step, for a model whose parameters take P bytes over N
ranks:

- forward: all-gather each block's parameters before it runs, (N-1)/N P in all;
- backward: all-gather them again (if they were freed after forward), then reduce-scatter the gradients so each rank
  receives the sum of only its own shard, (N-1)/N P each.

That is 3 (N-1)/N P against DDP's all-reduce of 2 (N-1)/N P (a ring all-reduce *is* a reduce-scatter followed by an
all-gather): 1.5x the traffic, for a memory per device (16 bytes per parameter with bf16 weights and gradients and
fp32 master weights and Adam moments) that falls from 16 to 16/N bytes per parameter, plus one gathered block.

FSDP2 represents each sharded parameter as a DTensor ``Shard(0)`` over the data-parallel mesh; the optimizer runs on
the local shards unchanged, so ``build_optimizer`` and ``accumulated_step`` work as for a single process. Gradients
are averaged over ranks, as under DDP; ``no_sync`` defers the reduce-scatter to the last micro-batch of a step.

The wrapping follows torchtitan's ``apply_fsdp``: ``fully_shard`` on every transformer block (the unit of
all-gather: one block's weights are gathered at a time, and the next block's all-gather overlaps this block's compute),
then on the root, which takes what is left (embedding, final norm, head; a tied head is the embedding, so one
parameter). The last block keeps its parameters gathered after forward (``reshard_after_forward=False``) because
backward starts with it immediately; freeing and regathering it would be pure waste.

Checkpoints: ``full_state_dict`` gathers the shards into ordinary CPU tensors on rank 0 (with
``torch.distributed.checkpoint.state_dict``), and ``save_full_checkpoint`` writes them in the project's checkpoint
format, which a single process loads with ``load_checkpoint``.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import torch
import torch.distributed as dist
from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict
from torch.distributed.device_mesh import DeviceMesh
from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard

from ..model import GPT
from ..tokenizer import Tokenizer
from ..train.checkpoint import load_weights, save_checkpoint


def apply_fsdp(
    model: GPT,
    dp_mesh: DeviceMesh,
    param_dtype: torch.dtype | None = None,
    reduce_dtype: torch.dtype | None = None,
    reshard_after_forward: bool = True,
) -> GPT:
    """Shard ``model`` in place over ``dp_mesh``: one FSDP unit per block, then the root. Returns the same model.

    ``param_dtype``: the dtype the gathered parameters compute in (bf16 on GPU); the shards, and so the optimizer,
    stay in the model's dtype (fp32 master weights). ``reduce_dtype``: the dtype of the gradient reduce-scatter (fp32
    keeps the sum over ranks exact enough; bf16 halves the traffic). Both None: no mixed precision (CPU, tests).
    ``reshard_after_forward``: True frees each block's gathered weights after its forward (ZeRO-3 memory, one extra
    all-gather in backward); False keeps them until backward (ZeRO-2-like memory for the parameters, less traffic).
    """
    mp_policy = MixedPrecisionPolicy(param_dtype=param_dtype, reduce_dtype=reduce_dtype)
    last = len(model.blocks) - 1
    for i, block in enumerate(model.blocks):
        # The last block's backward comes right after the forward ends: resharding it would gather it straight back.
        fully_shard(block, mesh=dp_mesh, mp_policy=mp_policy, reshard_after_forward=reshard_after_forward and i < last)
    fully_shard(model, mesh=dp_mesh, mp_policy=mp_policy, reshard_after_forward=reshard_after_forward)
    return model


@contextmanager
def no_sync(model: GPT) -> Iterator[None]:
    """Accumulate gradients locally, unreduced, inside the block (FSDP2's counterpart of DDP's ``no_sync``).

    Pass ``lambda: no_sync(model)`` as ``accumulated_step``'s ``no_sync``: the gradients of all micro-batches but the
    last are kept whole on each rank and reduce-scattered once, after the last one (more memory, less traffic)."""
    model.set_requires_gradient_sync(False)
    try:
        yield
    finally:
        model.set_requires_gradient_sync(True)


def full_state_dict(model: GPT) -> dict[str, torch.Tensor]:
    """Every parameter and persistent buffer of a sharded model, whole, as CPU tensors on rank 0 (empty elsewhere).

    Gathering one tensor at a time to CPU (``cpu_offload``) bounds device memory by the largest tensor, not the
    model. Every rank must call it: the gathers are collectives."""
    options = StateDictOptions(full_state_dict=True, cpu_offload=True)
    return get_model_state_dict(model, options=options)


def save_full_checkpoint(directory: str | Path, model: GPT, tokenizer: Tokenizer | None = None) -> None:
    """Write a sharded model as an ordinary single-process checkpoint (config.json + model.safetensors).

    Every rank calls it; rank 0 writes. Rank 0 briefly holds the full weights twice on CPU (the gathered state and
    the plain model they are copied into), which is what any single-file checkpoint of the model costs."""
    state = full_state_dict(model)
    if dist.get_rank() == 0:
        dtype = next(iter(state.values())).dtype
        plain = GPT.build(model.config, device="cpu", dtype=dtype)
        load_weights(plain, state, "the gathered FSDP state")
        save_checkpoint(directory, plain, tokenizer)
    dist.barrier()  # no rank reads the checkpoint before it exists

"""``parallelize(model, mesh, cfg)``: turn a single-device GPT into its distributed form, from outside the model.

The order is torchtitan's (``parallelize_llama``), and each step has a reason to come where it does:

1. tensor parallelism first: its plans are keyed by module path (``blocks.0.attn.q_proj``) and replace weights with
   DTensors, which everything after must see;
2. activation checkpointing next: it wraps each block's forward, so compile and FSDP see the wrapped block. Our GPT
   already applies it inside ``hidden_states`` when ``model.activation_checkpointing`` is set in its config, so there
   is nothing to wrap here, only the flag to keep;
3. ``torch.compile`` per block (``Module.compile`` compiles in place, so parameter names and checkpoints do not
   change): the same graph serves every layer, and the collectives of FSDP or DDP stay outside the compiled regions;
4. data parallelism last, over the mesh's ``dp`` dimension: FSDP2 (``fully_shard`` per block, then the root) or
   DDP, which broadcasts rank 0's weights at construction, then all-reduces gradients in buckets during backward.

The model itself stays free of collectives (house style rule 2). Pipeline parallelism is not applied here: it cuts
the model into stages driven by a schedule (``pipeline.py``), a different training step altogether.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager, contextmanager, nullcontext

import torch
from torch import nn
from torch.distributed.device_mesh import DeviceMesh
from torch.nn.parallel import DistributedDataParallel

from ..config import ConfigError
from .dist import ParallelConfig


def parallelize(
    model: nn.Module,
    mesh: DeviceMesh,
    cfg: ParallelConfig,
    *,
    compile: bool = False,
    param_dtype: torch.dtype | None = None,
    reduce_dtype: torch.dtype | None = None,
) -> nn.Module:
    """Apply ``cfg`` to ``model`` over ``mesh`` (dims ``pp``, ``dp``, ``tp``) and return the module to train through.

    That module is a ``DistributedDataParallel`` wrapper under DDP and ``model`` itself otherwise (TP and FSDP modify
    it in place). The optimizer and checkpoints keep using ``model``: DDP's wrapper shares its parameters but would
    prefix their names with ``module.``. ``param_dtype`` / ``reduce_dtype``: FSDP's mixed-precision policy."""
    if cfg.pp > 1:
        raise ConfigError(
            "parallel.pp > 1 needs the pipeline schedule (scratchllm/parallel/pipeline.py), not parallelize"
        )
    dp_size = mesh["dp"].size()
    if cfg.tp > 1:
        if cfg.dp_shard == "ddp" and dp_size > 1:
            # DDP does not understand DTensor parameters; FSDP2 composes with TP over a 2D mesh.
            raise ConfigError("tensor parallelism with data parallelism needs parallel.dp_shard=fsdp, not ddp")
        from .tensor_parallel import apply_tensor_parallel  # imported here: the subpackage's pieces land separately

        apply_tensor_parallel(model, mesh["tp"])
    # Activation checkpointing: model.config.activation_checkpointing, applied inside the model's forward (step 2).
    if compile:
        for block in model.blocks:
            block.compile()
    if dp_size == 1:
        return model
    if cfg.dp_shard == "fsdp":
        from .fsdp import apply_fsdp

        apply_fsdp(model, mesh["dp"], param_dtype=param_dtype, reduce_dtype=reduce_dtype)
        return model
    device = next(model.parameters()).device
    return DistributedDataParallel(
        model,
        device_ids=[device.index] if device.type == "cuda" else None,
        process_group=mesh["dp"].get_group(),
        # The buffers (RoPE tables, position ids) are computed identically on every rank: no need to broadcast them
        # before every forward pass (they are still synchronized once, at construction).
        forward_sync_buffers=False,
        # Gradients live inside the communication buckets instead of being copied into them: one copy less memory.
        gradient_as_bucket_view=True,
    )


def no_sync(module: nn.Module) -> Callable[[], AbstractContextManager]:
    """A factory of the context that holds back gradient synchronization during the micro-batches of a step but the
    last, so gradients are reduced once per optimizer step (the ``no_sync`` of ``train/step.py``)."""
    if isinstance(module, DistributedDataParallel):
        return module.no_sync
    if hasattr(module, "set_requires_gradient_sync"):  # FSDP2: the method fully_shard adds to the module

        @contextmanager
        def fsdp_no_sync():
            module.set_requires_gradient_sync(False)
            try:
                yield
            finally:
                module.set_requires_gradient_sync(True)

        return fsdp_no_sync
    return nullcontext

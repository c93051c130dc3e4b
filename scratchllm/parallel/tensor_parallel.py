"""Tensor parallelism with DTensor: every block's matrices split Megatron-style across the ranks of a TP mesh.

Megatron-LM (Shoeybi et al. 2019) splits each sublayer's pair of matrices so that the pair needs one collective:

- the first matrices (q, k, v in attention; up and gate in the MLP) are split by output columns ("column-parallel"):
  each rank computes its own slice of the heads, or of the MLP's hidden units, from the full (replicated) input;
- the second matrix (attention's o_proj, the MLP's down) is split by input rows ("row-parallel"): each rank multiplies
  its slice and the partial results are summed by one all-reduce into the replicated residual stream.

Heads are independent of each other and the MLP's nonlinearity acts element by element, so nothing between the two
matrices needs the other ranks' slices. Each sublayer thus costs one all-reduce of the (B, T, d) activation forward
and one backward (the gradient flowing into the column-parallel input); ``megatron.py`` writes those two operators by
hand, and the chapter explains them there.

Here the same split is a *plan*: a dict from module path (``attn.q_proj``) to a ``ParallelStyle`` that
``torch.distributed.tensor.parallel.parallelize_module`` applies from outside the model (torchtitan's
``parallelize_llama``). The weights become DTensors sharded over the mesh; ColwiseParallel hands the attention code a
plain local tensor with n_head / tp heads, which is why ``CausalSelfAttention`` reads head counts from shapes.

Embeddings, norms and the output head stay replicated: ordinary tensors, identical on every rank, whose gradients are
identical too because the residual stream and its gradient are replicated after each all-reduce. A vocab-parallel
embedding and head (plus ``loss_parallel``) would save vocab x d_model x (1 - 1/tp) parameters per rank and the
replicated head's FLOPs; we keep them whole because it keeps tied embeddings and the chunked loss unchanged, and at
the sizes this project trains the blocks, not the vocabulary, dominate.
"""

from __future__ import annotations

from torch import nn
from torch.distributed.device_mesh import DeviceMesh
from torch.distributed.tensor import Replicate
from torch.distributed.tensor.parallel import (
    ColwiseParallel,
    ParallelStyle,
    PrepareModuleInput,
    RowwiseParallel,
    parallelize_module,
)

from ..config import ConfigError


def check_tp_degree(cfg, tp: int) -> None:
    """Every split must be whole: query heads, kv heads and MLP hidden units each divided evenly among ``tp`` ranks."""
    for name, value in [("n_head", cfg.n_head), ("n_kv_head", cfg.kv_heads), ("MLP hidden size", cfg.ff_dim)]:
        if value % tp:
            raise ConfigError(
                f"tensor parallelism over {tp} ranks needs {name} divisible by {tp}; got {name} = {value}. "
                f"Choose a TP degree that divides it, or change the model config"
            )


def block_plan(block: nn.Module) -> dict[str, ParallelStyle]:
    """One transformer block's plan, keyed by module path inside the block: column-parallel in, row-parallel out.

    ``attn`` and ``mlp`` first turn their input into a replicated DTensor (Megatron's f at the entrance of each
    parallel region): the gradients that q, k and v (or gate and up) send back are then summed as one partial
    DTensor and all-reduced once at that entrance, instead of once per projection."""
    plan: dict[str, ParallelStyle] = {
        # Block calls attn(x, rotation, mask, cache): only x, the first argument, becomes a DTensor.
        "attn": PrepareModuleInput(
            input_layouts=(Replicate(), None, None, None),
            desired_input_layouts=(Replicate(), None, None, None),
            use_local_output=False,
        ),
        "mlp": PrepareModuleInput(
            input_layouts=(Replicate(),), desired_input_layouts=(Replicate(),), use_local_output=False
        ),
        "attn.q_proj": ColwiseParallel(),  # (B, T, d) replicated -> (B, T, n_head/tp * hd) local
        "attn.k_proj": ColwiseParallel(),  # -> (B, T, n_kv_head/tp * hd) local
        "attn.v_proj": ColwiseParallel(),
        "attn.o_proj": RowwiseParallel(),  # (B, T, n_head/tp * hd) local -> (B, T, d) all-reduced
        "mlp.up": ColwiseParallel(),  # (B, T, d) -> (B, T, ff/tp)
        "mlp.down": RowwiseParallel(),  # (B, T, ff/tp) -> (B, T, d) all-reduced
    }
    if hasattr(block.mlp, "gate"):  # SwiGLU's third matrix splits like up: silu(gate) * up pairs unit with unit
        plan["mlp.gate"] = ColwiseParallel()
    return plan


def apply_tensor_parallel(model: nn.Module, tp_mesh: DeviceMesh) -> nn.Module:
    """Shard every block of ``model`` (a GPT) over the 1-D ``tp_mesh``, in place; returns the model.

    All ranks must start from the same weights (build with the same seed, or load the same checkpoint): each keeps
    its slice of the full matrices. Raises ConfigError when a head count or the MLP width does not divide."""
    check_tp_degree(model.config, tp_mesh.size())
    for block in model.blocks:
        parallelize_module(block, tp_mesh, block_plan(block))
    return model

"""Tensor parallelism by hand: Megatron-LM's column- and row-parallel linears over plain ``all_reduce``.

This is what the DTensor plan of ``tensor_parallel.py`` does, written out so the book can show it (Shoeybi et al.
2019, "Megatron-LM: Training Multi-Billion Parameter Language Models Using Model Parallelism", section 3).

A linear y = x W^T with W of shape (out, in) can be split two ways over tp ranks:

- **column-parallel**: rank r keeps rows r of W's output dimension, W_r (out/tp, in), and computes y_r = x W_r^T,
  its slice of the output features, from the full input x. No communication forward; backward, each rank's
  dL/dx = dL/dy_r W_r is only its share of the full gradient, so the shares are summed by an all-reduce.
- **row-parallel**: rank r keeps a slice of W's input dimension, W_r (out, in/tp), multiplies its slice of the input
  x_r, and the partial products sum to y = sum_r x_r W_r^T: one all-reduce forward, none backward (dL/dy is already
  whole on every rank, and dL/dx_r = dL/dy W_r needs only the local slice).

The two communication points are Megatron's conjugate operators, written here as autograd functions:

    f = CopyToParallel:      forward identity,    backward all-reduce   (enters a column-parallel layer)
    g = ReduceFromParallel:  forward all-reduce,  backward identity     (leaves a row-parallel layer)

A column-parallel layer followed by a row-parallel one (attention heads, or MLP up then down) keeps everything in
between local, so each sublayer is one "parallel region" with f at its entrance and g at its exit (the paper's
figure 3): one all-reduce forward, one backward. f is applied once to the region's input rather than inside each
column-parallel linear, so the gradients that q, k and v (or gate and up) send back are summed locally first and
all-reduced once; Megatron gets the same by fusing q, k and v into one matrix.

``apply_megatron`` swaps a GPT's linears for these, slicing the full weights each rank already holds, and puts f at
the entrance of every block's attention and MLP.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from .tensor_parallel import check_tp_degree


class CopyToParallel(torch.autograd.Function):
    """Megatron's f: the input is used whole by every rank (identity), so its gradient is the sum of the ranks'."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, group: dist.ProcessGroup) -> torch.Tensor:
        ctx.group = group
        return x.view_as(x)  # a new autograd node over the same values

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        grad = grad.contiguous()
        dist.all_reduce(grad, group=ctx.group)
        return grad, None


class ReduceFromParallel(torch.autograd.Function):
    """Megatron's g: the ranks' partial sums become the full output (all-reduce); every rank gets the whole gradient
    of that sum, which is exactly the gradient of each summand (identity)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, group: dist.ProcessGroup) -> torch.Tensor:
        x = x.clone()  # all_reduce works in place, and a Function must not overwrite its input
        dist.all_reduce(x, group=group)
        return x

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        return grad, None


class ColumnParallelLinear(nn.Linear):
    """y_r = x W_r^T + b_r: this rank's out_features / tp output features. (..., in) -> (..., out / tp).

    Its input must have come through f (see ``enter_parallel_region``). Still an ``nn.Linear`` (of the local
    shape), so the optimizer decays its weight like any other matrix."""

    def __init__(self, full: nn.Linear, group: dist.ProcessGroup):
        rank, tp = dist.get_rank(group), dist.get_world_size(group)
        super().__init__(full.in_features, full.out_features // tp, bias=full.bias is not None, device="meta")
        self.group = group
        self.weight = nn.Parameter(full.weight.detach().chunk(tp, dim=0)[rank].clone())  # (out/tp, in)
        self.bias = None if full.bias is None else nn.Parameter(full.bias.detach().chunk(tp)[rank].clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.weight, self.bias)  # (..., out/tp): no communication


class RowParallelLinear(nn.Linear):
    """y = g(x_r W_r^T) + b: partial products over this rank's in_features / tp inputs, summed. (..., in/tp) ->
    (..., out). The bias is whole on every rank and added once, after the sum."""

    def __init__(self, full: nn.Linear, group: dist.ProcessGroup):
        rank, tp = dist.get_rank(group), dist.get_world_size(group)
        super().__init__(full.in_features // tp, full.out_features, bias=full.bias is not None, device="meta")
        self.group = group
        self.weight = nn.Parameter(full.weight.detach().chunk(tp, dim=1)[rank].clone())  # (out, in/tp)
        self.bias = None if full.bias is None else nn.Parameter(full.bias.detach().clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = ReduceFromParallel.apply(F.linear(x, self.weight), self.group)  # (..., out)
        return y if self.bias is None else y + self.bias


def enter_parallel_region(group: dist.ProcessGroup):
    """A forward pre-hook that passes a sublayer's first argument, the replicated input x, through f."""

    def hook(module: nn.Module, args: tuple) -> tuple:
        return (CopyToParallel.apply(args[0], group), *args[1:])

    return hook


# The same split as tensor_parallel.block_plan, by module path inside a block.
MEGATRON_PLAN: dict[str, type[nn.Module]] = {
    "attn.q_proj": ColumnParallelLinear,
    "attn.k_proj": ColumnParallelLinear,
    "attn.v_proj": ColumnParallelLinear,
    "attn.o_proj": RowParallelLinear,
    "mlp.gate": ColumnParallelLinear,
    "mlp.up": ColumnParallelLinear,
    "mlp.down": RowParallelLinear,
}


def apply_megatron(model: nn.Module, group: dist.ProcessGroup | None = None) -> nn.Module:
    """Replace every block's linears of ``model`` (a GPT) by their column/row-parallel slices over ``group`` (default:
    the whole world), in place; returns the model. Every rank must hold the same full weights beforehand."""
    group = group or dist.group.WORLD
    check_tp_degree(model.config, dist.get_world_size(group))
    for block in model.blocks:
        for path, parallel_linear in MEGATRON_PLAN.items():
            parent_path, name = path.rsplit(".", 1)
            parent = block.get_submodule(parent_path)
            if isinstance(getattr(parent, name, None), nn.Linear):  # GELU MLPs have no gate
                setattr(parent, name, parallel_linear(getattr(parent, name), group))
        for region in (block.attn, block.mlp):
            region.register_forward_pre_hook(enter_parallel_region(group))
    return model

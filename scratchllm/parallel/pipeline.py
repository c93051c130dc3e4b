"""Pipeline parallelism: the GPT cut by depth into stages, one per rank, fed with micro-batches on a schedule.

Stage 0 holds the embedding and the first blocks, the last stage the last blocks, the final norm, the head and the
loss; activations flow forward from rank to rank and their gradients flow back, point to point. Only the (B, T, d)
activation at each cut crosses the wire, so pipelining suits the slowest links (across nodes), unlike tensor
parallelism's all-reduce per sublayer.

A stage waits for its input, so with one batch only one stage works at a time. GPipe (Huang et al. 2019) splits the
batch into m micro-batches: all forwards run down the pipe, then all backwards run back. With p stages of equal cost,
each stage idles p-1 slots of the m+p-1 in each direction: the *bubble* is (p-1)/(m+p-1), small when m >> p. GPipe
must keep the activations of all m micro-batches until their backward; 1F1B (PipeDream-Flush, Narayanan et al. 2021)
has the same bubble but starts each micro-batch's backward as soon as it can, alternating one forward and one
backward, so a stage holds at most p micro-batches in flight instead of m.

The schedules are ``torch.distributed.pipelining``'s ``ScheduleGPipe`` and ``Schedule1F1B``; what is ours is the cut
(``StageModule``, built from a finished GPT, keeping the GPT's parameter names), the loss (the sum of cross-entropy
over counted targets divided by the step's total count, as in ``train/step.py``, so the schedule must not rescale
gradients by 1/m), the tied head (first and last stage each hold a copy of the embedding, whose gradients are summed
across the pipeline before the update, as Megatron-LM does), and the measured bubble (``TimedStage``).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn
from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict, get_state_dict
from torch.distributed.device_mesh import DeviceMesh
from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard
from torch.distributed.pipelining import PipelineStage, Schedule1F1B, ScheduleGPipe
from torch.distributed.tensor import DTensor
from torch.utils.checkpoint import checkpoint

from ..model import GPT
from ..model.loss import IGNORE_INDEX, full_cross_entropy
from ..train.step import StepResult, squared_norm

SCHEDULES = {"gpipe": ScheduleGPipe, "1f1b": Schedule1F1B}


def stage_layers(n_layer: int, num_stages: int) -> list[range]:
    """The blocks of each stage: contiguous, as even as possible; when uneven, earlier stages take the extra blocks,
    since the last stage also carries the head and the loss."""
    if num_stages > n_layer:
        raise ValueError(f"{num_stages} pipeline stages need at least {num_stages} layers; the model has {n_layer}")
    bounds = [-(-n_layer * s // num_stages) for s in range(num_stages + 1)]  # ceil(n_layer * s / num_stages)
    return [range(bounds[s], bounds[s + 1]) for s in range(num_stages)]


class StageModule(nn.Module):
    """One stage of a GPT: its blocks, plus the embedding on the first stage and the norm and head on the last.

    The submodules are the GPT's own (not copies) and keep their names (``blocks.3.attn.q_proj.weight``), so a
    stage's state dict is a slice of the model's. Input: (B, T) token ids on the first stage, (B, T, d) activations
    elsewhere; output: (B, T, d) activations, or (B, T, vocab) logits on the last stage (the schedule hands the
    stage's output to the loss function, so the chunked loss of ``loss.py`` does not apply here)."""

    def __init__(self, model: GPT, stage_index: int, num_stages: int):
        super().__init__()
        self.is_first, self.is_last = stage_index == 0, stage_index == num_stages - 1
        # A tied head is the embedding matrix: the last stage keeps the Embedding module too, so the matrix keeps its
        # name (``tok_emb.weight``) and the optimizer's rule for embeddings (no weight decay).
        tied_here = self.is_last and model.config.tie_embeddings
        self.tok_emb = model.tok_emb if self.is_first or tied_here else None
        self.dropout = model.dropout
        # Positions: the first stage adds them; every stage needs RoPE's rotation, which has buffers, no parameters.
        has_params = any(True for _ in model.pos.parameters())
        self.pos = model.pos if self.is_first or not has_params else None
        layers = stage_layers(model.config.n_layer, num_stages)[stage_index]
        self.blocks = nn.ModuleDict({str(i): model.blocks[i] for i in layers})
        self.norm_f = model.norm_f if self.is_last else None
        self.lm_head = model.lm_head if self.is_last else None
        self.activation_checkpointing = model.config.activation_checkpointing
        self.d_model = model.config.d_model  # the width of the activation that crosses each cut

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        T = x.shape[1]
        positions = torch.arange(T, device=x.device)[None]  # (1, T)
        if self.is_first:
            x = self.dropout(self.pos.add(self.tok_emb(x), positions))  # (B, T) ids -> (B, T, d)
        rotation = self.pos.rotation(positions) if self.pos is not None else None
        recompute = self.activation_checkpointing and self.training and torch.is_grad_enabled()
        for block in self.blocks.values():
            x = checkpoint(block, x, rotation, use_reentrant=False) if recompute else block(x, rotation)  # (B, T, d)
        if self.is_last:
            return self.lm_head(self.norm_f(x))  # (B, T, vocab)
        return x


class TimedStage(PipelineStage):
    """A ``PipelineStage`` that adds up the seconds it spends computing (forward and backward chunks).

    The schedule waits for messages outside these two methods, so the rest of a step's wall time is idle time."""

    busy = 0.0  # seconds computing in the current step
    wall = 0.0  # seconds of the last step's schedule, set by pipeline_step

    def forward_one_chunk(self, *args, **kwargs):
        start = time.perf_counter()
        try:
            return super().forward_one_chunk(*args, **kwargs)
        finally:
            self.busy += time.perf_counter() - start

    def backward_one_chunk(self, *args, **kwargs):
        start = time.perf_counter()
        try:
            return super().backward_one_chunk(*args, **kwargs)
        finally:
            self.busy += time.perf_counter() - start


class TokenMeanLoss:
    """The loss of one micro-batch: its summed cross-entropy divided by the counted targets of the whole step, so the
    gradients the schedule accumulates over micro-batches are those of the step's mean (``train/step.py``)."""

    tokens = 1

    def __call__(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        total, _ = full_cross_entropy(logits, targets)  # logits (b, T, vocab), targets (b, T)
        return total / self.tokens


@dataclass
class Pipeline:
    """This rank's share of a pipeline: its stage, the schedule that drives it, and the loss it computes."""

    module: StageModule
    stage: TimedStage
    schedule: ScheduleGPipe | Schedule1F1B
    loss: TokenMeanLoss
    group: dist.ProcessGroup
    n_microbatches: int
    tied_shape: tuple[int, int] | None  # this rank's (rows, d) of the embedding the head shares, or None if untied
    dp_group: dist.ProcessGroup | None = None  # the data-parallel ranks of this stage (3D), or None
    leader: bool = True  # the first of its stage's dp x tp ranks: it speaks for the stage when a checkpoint is saved


def build_pipeline(
    model: GPT,
    group: dist.ProcessGroup,
    n_microbatches: int,
    schedule: str = "1f1b",
    device: str = "cpu",
    dp_mesh: DeviceMesh | None = None,
    tp_mesh: DeviceMesh | None = None,
    compile: bool = False,
    precision: tuple[torch.dtype | None, torch.dtype | None] = (None, None),
) -> Pipeline:
    """Cut ``model`` into one stage per rank of ``group`` and keep this rank's; drive it with ``schedule``
    ("gpipe" or "1f1b") over ``n_microbatches`` micro-batches per step (the batch must divide by it).

    3D parallelism: with ``tp_mesh`` every block is first split over the tensor-parallel ranks (before the cut, so
    the plans see the model's module paths); with ``dp_mesh`` the stage is then sharded with FSDP over the
    data-parallel ranks that hold the same stage, each fed its own slice of the batch (torchtitan's order:
    ``compile`` compiles each block between the two, as ``parallelize`` does). ``precision``: FSDP's
    ``(param_dtype, reduce_dtype)``, as in ``fsdp.apply_fsdp``."""
    if schedule not in SCHEDULES:
        raise ValueError(f"pipeline schedule must be one of {', '.join(SCHEDULES)}; got {schedule!r}")
    if tp_mesh is not None and tp_mesh.size() > 1:
        from .tensor_parallel import apply_tensor_parallel

        apply_tensor_parallel(model, tp_mesh)
    rank, size = dist.get_rank(group), dist.get_world_size(group)
    module = StageModule(model, rank, size)
    if compile:
        for block in module.blocks.values():
            block.compile()
    sharded = dp_mesh is not None and dp_mesh.size() > 1
    if sharded:
        # Each micro-batch would gather a resharded block again: keep the gathered weights for the whole step
        # (ZeRO-2 memory for parameters), as torchtitan does under pipelining.
        policy = MixedPrecisionPolicy(param_dtype=precision[0], reduce_dtype=precision[1])
        for block in module.blocks.values():
            fully_shard(block, mesh=dp_mesh, reshard_after_forward=False, mp_policy=policy)
        fully_shard(module, mesh=dp_mesh, reshard_after_forward=False, mp_policy=policy)
    stage = TimedStage(module, rank, size, torch.device(device), group=group)
    loss = TokenMeanLoss()
    # scale_grads=False: the loss is already divided by the step's token count; a further 1/m would be wrong.
    runner = SCHEDULES[schedule](stage, n_microbatches, loss_fn=loss, scale_grads=False)
    cfg = model.config
    tied_shape = None
    if cfg.tie_embeddings and size > 1:
        # FSDP splits rows like torch.chunk: ceil(V / n) per rank, the last ranks possibly fewer (or none).
        n, r = (dp_mesh.size(), dp_mesh.get_local_rank()) if sharded else (1, 0)
        chunk = -(-cfg.vocab_size // n)
        tied_shape = (max(0, min(cfg.vocab_size - r * chunk, chunk)), cfg.d_model)
    dp_group = dp_mesh.get_group() if sharded else None
    leader = all(mesh is None or mesh.get_local_rank() == 0 for mesh in (dp_mesh, tp_mesh))
    return Pipeline(module, stage, runner, loss, group, n_microbatches, tied_shape, dp_group, leader)


def pipeline_step(
    pipe: Pipeline,
    inputs: torch.Tensor,
    targets: torch.Tensor,
    optimizer: torch.optim.Optimizer,
    grad_clip: float = 0,
    autocast: Callable[[], AbstractContextManager] = nullcontext,
) -> StepResult:
    """One optimizer step over the whole batch, as ``accumulated_step`` does for one process: inputs and targets
    (B, T) are given on every rank of the pipeline (the first stage reads the inputs, the last the targets); the
    loss and the gradient norm are those of the whole model, the same on every rank. Under 3D each data-parallel
    group of stages gets its own slice of the global batch; FSDP averages their gradients."""
    tokens = int((targets != IGNORE_INDEX).sum())
    dp = dist.get_world_size(pipe.dp_group) if pipe.dp_group is not None else 1
    if pipe.dp_group is not None:
        count = torch.tensor(tokens, dtype=torch.float64)
        dist.all_reduce(count, group=pipe.dp_group)
        tokens = int(count)
    # FSDP averages over the dp ranks what each computes, so each divides its summed loss by tokens / dp.
    pipe.loss.tokens = tokens / dp
    losses: list[torch.Tensor] = []
    pipe.stage.busy = 0.0
    # Start every stage's clock together, so the wait for the first activation (or gradient) counts as idle time; a
    # later stage would wait there anyway.
    dist.barrier(group=pipe.group)
    start = time.perf_counter()
    with autocast():  # the schedule runs forward and backward; autocast only changes the forward's dtypes
        if pipe.module.is_first:
            pipe.schedule.step(inputs)
        elif pipe.module.is_last:
            pipe.schedule.step(target=targets, losses=losses)
        else:
            pipe.schedule.step()
    pipe.stage.wall = time.perf_counter() - start

    params = [p for p in pipe.module.parameters() if p.grad is not None]
    # This stage's copy of the tied embedding/head matrix (first and last stage only), or None.
    tied = pipe.module.tok_emb.weight if pipe.tied_shape and pipe.module.tok_emb is not None else None
    if pipe.tied_shape:
        # Sum the two copies' gradients (the middle stages add zeros: one collective over the pipeline group, no
        # extra group to create). Both copies then take the same update and stay equal. Under FSDP each rank sums
        # its own shard: the first and last stages of one data-parallel rank hold the same rows.
        dtype = next(pipe.module.parameters()).dtype
        grad = _local(tied.grad) if tied is not None else torch.zeros(pipe.tied_shape, dtype=dtype)
        dist.all_reduce(grad, group=pipe.group)
    # The global norm: squared norms add over stages; the tied matrix counts once (on the first stage).
    counted = [p for p in params if not (p is tied and not pipe.module.is_first)]
    square = squared_norm([p.grad for p in counted])
    # The loss lives on the last stage only: the others add zero; the dp ranks' losses are averaged.
    loss = torch.stack(losses).sum().detach().double() / dp if losses else torch.zeros((), dtype=torch.float64)
    both = torch.stack([square, loss])
    dist.all_reduce(both, group=pipe.group)
    if pipe.dp_group is not None:
        loss_over_dp = both[1].clone()
        dist.all_reduce(loss_over_dp, group=pipe.dp_group)
        both[1] = loss_over_dp
    grad_norm, loss = math.sqrt(float(both[0])), float(both[1])
    updated = math.isfinite(loss) and math.isfinite(grad_norm)  # never apply a NaN or inf update
    if updated:
        if grad_clip > 0:
            coef = min(1.0, grad_clip / (grad_norm + 1e-6))  # clip_grad_norm_'s coefficient, so the updates agree
            for p in params:
                p.grad.mul_(coef)
        optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return StepResult(loss=loss, tokens=tokens, grad_norm=grad_norm, updated=updated)


def _local(tensor: torch.Tensor) -> torch.Tensor:
    """A DTensor's local shard (which shares its storage), or the tensor itself."""
    return tensor.to_local() if isinstance(tensor, DTensor) else tensor


def measured_bubble(pipe: Pipeline) -> dict[str, float]:
    """This stage's idle fraction in the last ``pipeline_step``'s schedule, 1 - busy / wall, with its busy seconds
    and the step's wall seconds, beside the ideal (p-1)/(m+p-1) of equal stages and free communication.

    The step lasts until its slowest stage ends (the first stage, waiting for the last gradient), so the wall time is
    the longest over the stages: a later stage's idle tail after its last backward counts too. Every rank calls it."""
    wall = torch.tensor(pipe.stage.wall, dtype=torch.float64)
    dist.all_reduce(wall, op=dist.ReduceOp.MAX, group=pipe.group)
    p, m = dist.get_world_size(pipe.group), pipe.n_microbatches
    busy, wall = pipe.stage.busy, float(wall)
    return {"busy": busy, "wall": wall, "bubble": 1 - busy / wall, "ideal": (p - 1) / (m + p - 1)}


class PipelineScorer(nn.Module):
    """The pipeline as a forward-only model for ``eval/perplexity.score_windows``: ``scorer(inputs, targets,
    reduction="sum")`` runs the stages one after the other, the activation sent point to point from each to the
    next, and returns the summed cross-entropy on every rank of the pipeline (no schedule: nothing to overlap
    without a backward pass). Every rank of the pipeline must call it with the same batch."""

    def __init__(self, pipe: Pipeline):
        super().__init__()
        self.pipe = pipe
        self.stage_module = pipe.module  # registered, so parameters(), eval() and train() see the stage

    @torch.no_grad()
    def forward(self, inputs: torch.Tensor, targets: torch.Tensor, reduction: str = "sum") -> torch.Tensor:
        if reduction != "sum":
            raise ValueError("the pipeline scorer sums the loss; divide by the counted targets yourself")
        module, group = self.pipe.module, self.pipe.group
        rank, device = dist.get_rank(group), inputs.device
        if module.is_first:
            x = inputs  # (B, T) ids
        else:
            param = next(module.parameters())
            x = torch.empty(*inputs.shape, module.d_model, dtype=param.dtype, device=device)  # (B, T, d)
            dist.recv(x, src=dist.get_global_rank(group, rank - 1), group=group)
        out = module(x)
        if module.is_last:
            total, _ = full_cross_entropy(out, targets)  # out: (B, T, vocab) logits
            total = total.double()
        else:
            dist.send(out.contiguous(), dst=dist.get_global_rank(group, rank + 1), group=group)  # (B, T, d)
            total = torch.zeros((), dtype=torch.float64, device=device)
        dist.all_reduce(total, group=group)  # only the last stage adds a loss
        return total


def pipeline_state(pipe: Pipeline, optimizer: torch.optim.Optimizer | None = None) -> tuple[dict, dict | None]:
    """The whole model's state (and optimizer state, keyed by name), merged from every stage onto global rank 0 as
    CPU tensors; empty dicts elsewhere. Every rank calls it.

    Each stage's ranks first gather their stage whole (FSDP and tensor-parallel shards; ``cpu_offload`` would keep
    it on global rank 0 only, which holds just the first stage), then the first rank of each stage sends it to rank
    0 over the pipeline group that links them. The tied matrix arrives twice, from the first and the last stage,
    with equal values (both copies take the same updates)."""
    options = StateDictOptions(full_state_dict=True)
    if optimizer is None:
        weights, optim_state = get_model_state_dict(pipe.module, options=options), None
    else:
        weights, optim_state = get_state_dict(pipe.module, optimizer, options=options)
    parts = [None] * dist.get_world_size(pipe.group) if dist.get_rank() == 0 else None
    if pipe.leader:
        mine = (_to_cpu(weights), _to_cpu(optim_state))
        dist.gather_object(mine, parts, dst=dist.get_global_rank(pipe.group, 0), group=pipe.group)
    if dist.get_rank() != 0:
        return {}, ({} if optimizer is not None else None)
    merged = {name: tensor for part_weights, _ in parts for name, tensor in part_weights.items()}
    if optimizer is None:
        return merged, None
    state, groups = {}, {}
    for _, part in parts:
        state.update(part["state"])
        for group in part["param_groups"]:  # the decay and no-decay groups: the same hyperparameters on every stage
            merged_group = groups.setdefault(group["weight_decay"], {**group, "params": []})
            merged_group["params"] += [n for n in group["params"] if n not in merged_group["params"]]
    return merged, {"state": state, "param_groups": list(groups.values())}


def _to_cpu(value):
    """``value`` with every tensor in it (nested dicts and lists) moved to the CPU."""
    if isinstance(value, torch.Tensor):
        return value.detach().cpu()
    if isinstance(value, dict):
        return {k: _to_cpu(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(_to_cpu(v) for v in value)
    return value

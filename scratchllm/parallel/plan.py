"""The 3D-parallelism planner: memory per device and step time of every data x tensor x pipeline layout, on paper.

Before renting a cluster one wants to know which layout fits and which is fastest. This module answers with the
standard back-of-the-envelope model, cheap enough to evaluate every layout ``dp * tp * pp = gpus`` (tensor parallelism
inside a node, where the links are fast), each with DDP or FSDP over the data-parallel ranks, with and without
activation checkpointing, at every micro-batch.

Memory per device (bytes), for P_dev parameters held by one device:

* model states, AdamW (Rajbhandari et al. 2020, "ZeRO"): 16 bytes per parameter either way. fp32 training keeps
  weights 4 + gradients 4 + two moments 8; mixed precision keeps bf16 weights 2 + bf16 gradients 2 + an fp32 master
  copy and two moments 12. DDP replicates all of it; FSDP (ZeRO-3) divides all of it by dp, and adds the transient
  full copy of the block being computed and of the one prefetched (2 blocks of bf16/fp32 weights).
* tensor parallelism divides each block's matrices and the (vocabulary-parallel) embedding by tp; pipeline
  parallelism gives each stage ceil(L / pp) blocks, and the first and last stages the embedding and the head.
* activations per block (Korthikanti et al. 2022, "Reducing Activation Recomputation"): ``s b h (34 + 5 a s / h)``
  bytes with 2-byte activations and 1-byte dropout masks, divided by tp with sequence parallelism. Our blocks differ,
  and :func:`block_activation_elements` counts what they really keep: no dropout masks (dropout is 0 when
  pretraining), and with SDPA (``F.scaled_dot_product_attention``, flash-style) the (a, s, s) attention matrix is
  never stored, so the ``5 a s / h`` term vanishes entirely; SDPA keeps its output besides the reshaped copy the
  output projection saves, one ``s b h`` more. A GPT-2 block therefore keeps 17 ``s b h`` elements (34 bytes in bf16,
  68 in fp32); SwiGLU, RMSNorm and grouped-query attention change the count, the explicit attention adds the
  softmax's ``a s^2 b``. Under 1F1B (Narayanan et al. 2021) the first stage holds pp micro-batches of L / pp blocks:
  one micro-batch of all L blocks. With activation checkpointing a block keeps only its input (``s b h``), plus one
  block's full activations while it is recomputed.
* the output layer: the final norm's and head's inputs (2 ``s b h``), and the fp32 logits, their log-softmax and
  their gradient (3 ``s b V``, divided by tp), alive together at the start of the backward pass.

Step time = compute + communication, nothing overlapped (an upper bound):

* compute: ``flops_per_token * tokens / (gpus * peak_flops * mfu)``, times 4/3 with checkpointing (the forward runs
  twice), divided by ``1 - (pp - 1) / (m + pp - 1)``, the pipeline bubble with m micro-batches per step;
* data parallel: DDP all-reduces the gradients, ``2 (dp - 1) / dp`` of their bytes over a ring; FSDP all-gathers the
  weights twice (forward, backward) in each of the m micro-batches and reduce-scatters the gradients once,
  ``(2 m + 1) (dp - 1) / dp``;
* tensor parallel: two all-reduces of ``s b h`` activations per block forward and two backward (Megatron);
* pipeline: one ``s b h / tp`` send forward and one backward per stage boundary per micro-batch, plus the all-reduce
  of a tied embedding's fp32 gradient between the first and the last stage.

``comms.py`` has the exact per-collective formulas (padding, the last block kept gathered) that the measured
communication is checked against; these are their closed forms, which ``tests/parallel/test_comms.py`` compares.

A link crossing nodes runs at the inter-node bandwidth, else the intra-node one. The planner predicts;
``scratchllm.train.fit`` measures, and both choose the micro-batch with the same rule (``fit.choose_micro_batch``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

from ..config import ConfigError
from ..model.config import GPTConfig, flops_per_token, num_params
from ..train.fit import MARGIN, BatchDoesNotFit, choose_micro_batch, divisors

GIB = 2**30
LOSS_BYTES = 4  # the cross-entropy runs in fp32 whatever the training dtype (model/loss.py)


@dataclass(frozen=True)
class Cluster:
    """The machines: ``gpus`` devices of ``memory`` bytes and ``flops`` peak FLOP/s each, ``gpus_per_node`` per node;
    bandwidths in bytes/s per device, inside a node (NVLink) and across nodes (network)."""

    gpus: int
    memory: float
    flops: float
    bandwidth_intra: float
    bandwidth_inter: float
    gpus_per_node: int = 8
    mfu: float = 0.4  # the fraction of peak FLOP/s the model's math reaches (40% is good for a large run)


@dataclass(frozen=True)
class Layout:
    """How ``dp * tp * pp`` devices split the work, and how each trains."""

    dp: int = 1
    tp: int = 1
    pp: int = 1
    fsdp: bool = False  # shard the model states over the dp ranks (ZeRO-3) instead of replicating them (DDP)
    checkpointing: bool = False  # recompute each block's activations in the backward pass
    micro_batch: int = 1  # sequences per forward/backward on one device

    @property
    def name(self) -> str:
        return f"{'FSDP' if self.fsdp else 'DDP'} {self.dp}x{self.tp}x{self.pp}"


@dataclass(frozen=True)
class Memory:
    """Bytes per device, by kind (the largest pipeline stage)."""

    params: float
    grads: float
    optimizer: float
    activations: float

    @property
    def total(self) -> float:
        return self.params + self.grads + self.optimizer + self.activations


@dataclass(frozen=True)
class StepTime:
    """Seconds per optimizer step, by kind."""

    compute: float
    data_parallel: float
    tensor_parallel: float
    pipeline: float

    @property
    def total(self) -> float:
        return self.compute + self.data_parallel + self.tensor_parallel + self.pipeline


@dataclass(frozen=True)
class Candidate:
    layout: Layout
    memory: Memory
    time: StepTime
    fits: bool
    accumulation: int  # micro-batches per optimizer step on each pipeline (gradient accumulation steps)


def block_activation_elements(cfg: GPTConfig, seq_len: int) -> int:
    """Elements one block keeps for its backward pass, per sequence (the module docstring's count)."""
    h, f, kv = cfg.d_model, cfg.ff_dim, cfg.kv_heads * cfg.head_dim
    norms = 2 * h * (2 if cfg.norm == "rmsnorm" else 1)  # RMSNorm keeps its input and the normalized x for the scale
    attention = h + h + 2 * kv + h + h  # q/k/v input, q, k and v, SDPA's output, the output projection's input
    if cfg.attention == "explicit":
        attention += cfg.n_head * seq_len  # the softmax output, (a, s, s) per sequence: a s per token
    mlp = h + (4 * f if cfg.mlp == "swiglu" else 2 * f)  # input; GELU: its input, down's input; SwiGLU: 4 of width f
    return seq_len * (norms + attention + mlp)


def korthikanti_block_bytes(cfg: GPTConfig, seq_len: int, micro_batch: int, tp: int = 1) -> float:
    """Korthikanti et al.'s ``s b h (34 + 5 a s / h) / t`` (bf16 activations, dropout masks, attention stored)."""
    s, b, h, a = seq_len, micro_batch, cfg.d_model, cfg.n_head
    return s * b * h * (34 + 5 * a * s / h) / tp


def _stage_params(cfg: GPTConfig, layout: Layout) -> tuple[float, float]:
    """(parameters on the largest stage, parameters of one block), both divided by tp."""
    body = num_params(cfg, embedding=False)
    per_block = num_params(replace(cfg, n_layer=2), embedding=False) - num_params(replace(cfg, n_layer=1), False)
    embed = num_params(cfg) - body
    head = 0 if cfg.tie_embeddings else cfg.vocab_size * cfg.d_model
    final_norm = body - head - cfg.n_layer * per_block
    ends = embed + head if layout.pp == 1 else max(embed, head or embed)  # a tied head needs its own copy
    blocks = math.ceil(cfg.n_layer / layout.pp) * per_block
    return (blocks + ends + final_norm) / layout.tp, per_block / layout.tp


def estimate_memory(cfg: GPTConfig, layout: Layout, seq_len: int, mixed_precision: bool = False) -> Memory:
    """Peak bytes per device of one training step under ``layout`` (the module docstring's equations)."""
    params, per_block = _stage_params(cfg, layout)
    weight_bytes = 2 if mixed_precision else 4
    shard = layout.dp if layout.fsdp else 1
    gathered = 2 * per_block * weight_bytes if layout.fsdp and layout.dp > 1 else 0  # current + prefetched block
    states = params / shard
    optimizer = states * (12 if mixed_precision else 8)  # (master copy +) two moments, fp32
    s, b, h, t = seq_len, layout.micro_batch, cfg.d_model, layout.tp
    full_block = block_activation_elements(cfg, s) * b / t * weight_bytes
    if layout.checkpointing:
        blocks = cfg.n_layer * s * b * h / t * weight_bytes + full_block
    else:
        blocks = cfg.n_layer * full_block  # 1F1B: pp micro-batches of L/pp blocks on the first stage
    output = 2 * s * b * h / t * weight_bytes + 3 * s * b * cfg.vocab_size / t * LOSS_BYTES
    return Memory(
        params=states * weight_bytes + gathered,
        grads=states * weight_bytes,
        optimizer=optimizer,
        activations=blocks + output,
    )


def _bandwidth(cluster: Cluster, span: int) -> float:
    """A group whose ranks lie ``span`` consecutive ranks apart in all crosses nodes when span > gpus_per_node."""
    return cluster.bandwidth_intra if span <= cluster.gpus_per_node else cluster.bandwidth_inter


def estimate_time(
    cfg: GPTConfig, layout: Layout, cluster: Cluster, seq_len: int, global_batch: int, mixed_precision: bool = True
) -> StepTime:
    """Seconds per optimizer step of ``global_batch`` sequences (the module docstring's equations).
    Ranks are ordered (pp, dp, tp), tp innermost, so a tp group stays inside a node when tp <= gpus_per_node."""
    dp, tp, pp, b = layout.dp, layout.tp, layout.pp, layout.micro_batch
    m = global_batch // (dp * b)  # micro-batches per pipeline per step
    e = 2 if mixed_precision else 4
    bubble = (pp - 1) / (m + pp - 1)
    recompute = 4 / 3 if layout.checkpointing else 1.0
    flops = flops_per_token(cfg, seq_len) * global_batch * seq_len * recompute
    compute = flops / (cluster.gpus * cluster.flops * cluster.mfu) / (1 - bubble)
    params, _ = _stage_params(cfg, layout)
    # FSDP gathers the weights in every micro-batch's forward and again in its backward; the gradients are
    # reduce-scattered once, after the last micro-batch (no_sync). DDP all-reduces once per step.
    passes = 2 * m + 1 if layout.fsdp else 2
    volume = passes * (dp - 1) / dp * params * e
    data_parallel = volume / _bandwidth(cluster, dp * tp)
    activation = seq_len * b * cfg.d_model * e
    layers = math.ceil(cfg.n_layer / pp)
    tensor_parallel = 4 * layers * m * 2 * (tp - 1) / tp * activation / _bandwidth(cluster, tp)
    pipeline = 0.0
    if pp > 1:
        pipeline = 2 * (pp - 1) * m * activation / tp
        if cfg.tie_embeddings:  # the first and last stage's copies of the tied matrix: an fp32 all-reduce over pp
            pipeline += 2 * (pp - 1) / pp * cfg.vocab_size * cfg.d_model * 4
        pipeline /= _bandwidth(cluster, 2 * dp * tp)
    return StepTime(compute, data_parallel, tensor_parallel, pipeline)


def layouts(cfg: GPTConfig, cluster: Cluster, global_batch: int) -> list[Layout]:
    """Every (dp, tp, pp, DDP or FSDP, checkpointing or not) that can split this model on this cluster and that
    the trainer runs: tp divides the heads, the kv heads and a node; pp at most n_layer; dp divides the global batch;
    data parallelism beside tensor or pipeline parallelism is FSDP (DDP cannot hold DTensor weights or a stage)."""
    found = []
    for tp in divisors(cluster.gpus_per_node):
        if cluster.gpus % tp or cfg.n_head % tp or cfg.kv_heads % tp:
            continue
        for pp in divisors(cluster.gpus // tp):
            dp = cluster.gpus // (tp * pp)
            if pp > cfg.n_layer or global_batch % dp:
                continue
            shardings = (False,) if dp == 1 else (True,) if tp > 1 or pp > 1 else (False, True)
            for fsdp in shardings:
                found += [Layout(dp, tp, pp, fsdp, ac) for ac in (False, True)]
    return found


def best_micro_batch(
    cfg: GPTConfig, layout: Layout, cluster: Cluster, seq_len: int, global_batch: int, mixed_precision: bool = True
) -> Candidate:
    """The fastest micro-batch for ``layout`` among those that fit, the largest of equally fast ones (fit's rule; the
    model's time does not depend on it without a pipeline, a real GPU runs larger matmuls faster), though with a
    pipeline a smaller one may win by shrinking the bubble; micro-batch 1 if none fits."""
    per_replica = global_batch // layout.dp
    options = []
    for b in divisors(per_replica):
        at = replace(layout, micro_batch=b)
        memory = estimate_memory(cfg, at, seq_len, mixed_precision)
        time = estimate_time(cfg, at, cluster, seq_len, global_batch, mixed_precision)
        fits = memory.total <= cluster.memory * (1 - MARGIN)
        options.append(Candidate(at, memory, time, fits, per_replica // b))
    fitting = [c for c in options if c.fits]
    return min(fitting, key=lambda c: (round(c.time.total, 6), -c.layout.micro_batch)) if fitting else options[0]


def plan(
    cfg: GPTConfig, cluster: Cluster, seq_len: int, global_batch: int, mixed_precision: bool = True
) -> list[Candidate]:
    """Every layout at its best micro-batch, the recommendation first: layouts that fit before those that do not,
    then the fastest."""
    if seq_len > cfg.block_size:
        raise ConfigError(f"seq_len {seq_len} is longer than the model's context ({cfg.block_size})")
    found = layouts(cfg, cluster, global_batch)
    if not found:
        raise ConfigError(
            f"no layout splits {cluster.gpus} GPUs for this model and a global batch of {global_batch}: the global "
            "batch must be divisible by the data-parallel degree (try a multiple of the GPU count)"
        )
    candidates = [best_micro_batch(cfg, layout, cluster, seq_len, global_batch, mixed_precision) for layout in found]
    return sorted(candidates, key=lambda c: (not c.fits, c.time.total, c.memory.total))


def accumulation_plan(
    cfg: GPTConfig, memory: float, seq_len: int, global_batch: int, layout: Layout = Layout(), **kwargs
) -> tuple[int, int]:
    """Gradient accumulation for a small device: (micro-batch, accumulation steps) with micro-batch x steps x dp =
    ``global_batch``, the largest micro-batch whose predicted peak fits ``memory`` bytes less fit's margin.
    The line ``peak = base + per_sequence * micro_batch`` is the one ``train/fit.py`` measures; here it is predicted
    and handed to the same ``choose_micro_batch``. Raises ``fit.BatchDoesNotFit`` when one sequence does not fit."""
    if global_batch % layout.dp:
        raise ConfigError(f"global batch {global_batch} is not divisible by the data-parallel degree {layout.dp}")
    one, two = (estimate_memory(cfg, replace(layout, micro_batch=b), seq_len, **kwargs).total for b in (1, 2))
    per_replica = global_batch // layout.dp
    micro = choose_micro_batch(per_replica, 2 * one - two, two - one, memory)
    return micro, per_replica // micro


__all__ = [
    "BatchDoesNotFit", "Candidate", "Cluster", "Layout", "Memory", "StepTime", "accumulation_plan",
    "block_activation_elements", "best_micro_batch", "estimate_memory", "estimate_time", "korthikanti_block_bytes",
    "layouts", "plan",
]  # fmt: skip

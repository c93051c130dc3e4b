"""Communication per training step: every collective counted as it is issued, and the formulas it should equal.

Chapter 4 states what each strategy sends; this module checks it. :class:`CommRecorder` is a ``TorchDispatchMode``
that sees every collective operator the process dispatches while it is active, whichever path issued it:

- DDP's C++ reducer: ``ProcessGroup::allreduce`` in C++ is itself a call of the ``c10d::allreduce_`` operator
  (PyTorch 2 routes every ProcessGroup method through the dispatcher), so the bucket all-reduces that the reducer
  launches from its autograd hooks pass through the mode like any Python call; no comm hook is needed;
- FSDP2: ``dist.all_gather_into_tensor`` / ``dist.reduce_scatter_tensor`` (``c10d::_allgather_base_``,
  ``c10d::_reduce_scatter_base_``), one flat buffer per unit;
- DTensor: functional collectives (``_c10d_functional::all_reduce`` ...). A collective that DTensor issues *inside*
  its own operator dispatch would run below the mode; like ``torch.distributed.tensor.debug.CommDebugMode``, the
  recorder declines operators on DTensors (returns ``NotImplemented``) so that DTensor desugars them first
  and the collectives come back through the mode;
- plain ``dist.all_reduce`` (the Megatron layer's autograd functions), ``send`` / ``recv`` (pipelining), and the rest.

Each call becomes a :class:`Collective`: its kind, the bytes of the tensor it moves (for all-gather and
reduce-scatter, the *full* tensor: the gathered output, the scattered input), its group size N, and whether it ran
inside autograd's backward pass. What a rank *sends* follows the bandwidth-optimal algorithms (Thakur et al. 2005,
"Optimization of Collective Communication Operations in MPICH"; Patarasuk & Yuan 2009 for the ring all-reduce):

- all-reduce of S bytes: a reduce-scatter then an all-gather around a ring, 2 (N-1)/N S;
- all-gather, reduce-scatter, all-to-all, of a full tensor of S bytes: (N-1)/N S (each rank sends every chunk but
  its own once);
- broadcast of S bytes, pipelined along a chain: every rank but the last forwards S, (N-1)/N S on average;
- send: S; recv: nothing sent (its S is the sender's).

The formulas (:func:`ddp_volumes`, :func:`fsdp_volumes`, :func:`tp_volumes`, :func:`pp_volumes`) predict the same
:class:`Volume` records from the model's config and the batch shape alone; ``tests/parallel/test_comms.py`` checks
that recorder and formula agree to the byte, and ``benchmarks/parallel.py`` prints them side by side.
``plan.estimate_time`` uses the coarse versions of the same formulas for its step-time model; the test also checks
that the two agree, and pins where the planner's FSDP rule, 3 (N-1)/N P, differs (the last block stays gathered).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch.distributed.tensor import DTensor
from torch.utils._python_dispatch import TorchDispatchMode

from ..model import GPT, GPTConfig

KINDS = ("all_reduce", "all_gather", "reduce_scatter", "broadcast", "all_to_all", "send", "recv", "other")

# Operator name (namespace::name, no overload) -> kind. Functional collectives (DTensor, torch.compile) and the
# c10d operators behind torch.distributed's calls and ProcessGroup's methods.
OPS = {
    "c10d::allreduce_": "all_reduce",
    "c10d::allreduce_coalesced_": "all_reduce",
    "_c10d_functional::all_reduce": "all_reduce",
    "_c10d_functional::all_reduce_": "all_reduce",
    "_c10d_functional::all_reduce_coalesced": "all_reduce",
    "_c10d_functional::all_reduce_coalesced_": "all_reduce",
    "c10d::_allgather_base_": "all_gather",
    "c10d::allgather_": "all_gather",
    "c10d::allgather_coalesced_": "all_gather",
    "c10d::allgather_into_tensor_coalesced_": "all_gather",
    "_c10d_functional::all_gather_into_tensor": "all_gather",
    "_c10d_functional::all_gather_into_tensor_out": "all_gather",
    "_c10d_functional::all_gather_into_tensor_coalesced": "all_gather",
    "_c10d_functional_autograd::all_gather_into_tensor": "all_gather",
    "c10d::_reduce_scatter_base_": "reduce_scatter",
    "c10d::reduce_scatter_": "reduce_scatter",
    "c10d::reduce_scatter_tensor_coalesced_": "reduce_scatter",
    "_c10d_functional::reduce_scatter_tensor": "reduce_scatter",
    "_c10d_functional::reduce_scatter_tensor_out": "reduce_scatter",
    "_c10d_functional::reduce_scatter_tensor_coalesced": "reduce_scatter",
    "_c10d_functional_autograd::reduce_scatter_tensor": "reduce_scatter",
    "c10d::broadcast_": "broadcast",
    "_c10d_functional::broadcast": "broadcast",
    "_c10d_functional::broadcast_": "broadcast",
    "c10d::alltoall_": "all_to_all",
    "c10d::alltoall_base_": "all_to_all",
    "_c10d_functional::all_to_all_single": "all_to_all",
    "_c10d_functional_autograd::all_to_all_single": "all_to_all",
    "_dtensor::shard_dim_alltoall": "all_to_all",
    "c10d::send": "send",
    "_c10d_functional::isend": "send",
    "c10d::recv_": "recv",
    "c10d::recv_any_source_": "recv",
    "_c10d_functional::irecv": "recv",
    "c10d::gather_": "other",
    "c10d::scatter_": "other",
    "c10d::reduce_": "other",
    "c10d::barrier": "other",
    "_c10d_functional::batch_p2p_ops": "other",
}
# The argument that holds what a rank contributes: for all-gather the local shard (the full tensor is N of them).
INPUT_ARGS = ("tensors", "input_tensors", "input_tensor", "input", "inputs", "input_list", "tensor")


def sent_bytes(kind: str, tensor_bytes: float, group_size: int) -> float:
    """Bytes one rank sends for one collective over ``tensor_bytes`` (the full tensor) among ``group_size`` ranks."""
    n = group_size
    if kind == "all_reduce":
        return 2 * (n - 1) / n * tensor_bytes
    if kind in ("all_gather", "reduce_scatter", "all_to_all", "broadcast"):
        return (n - 1) / n * tensor_bytes
    if kind in ("send", "other"):
        return float(tensor_bytes)
    return 0.0  # recv


@dataclass(frozen=True)
class Collective:
    """One collective call as this rank issued it."""

    kind: str  # one of KINDS
    op: str  # the operator, e.g. "c10d::allreduce_"
    tensor_bytes: int  # the tensor it moves; for all-gather and reduce-scatter the full (N-shard) tensor
    group_size: int
    backward: bool  # issued inside autograd's backward pass (loss.backward())

    @property
    def sent(self) -> float:
        return sent_bytes(self.kind, self.tensor_bytes, self.group_size)


@dataclass(frozen=True)
class Volume:
    """Collectives of one kind over one group size, in or out of the backward pass, summed: what a formula predicts
    and what :meth:`CommRecorder.volumes` totals. ``calls`` is None where a formula does not predict it (DDP's
    bucket count depends on its bucket size)."""

    kind: str
    backward: bool
    group_size: int
    tensor_bytes: int
    calls: int | None = None

    @property
    def sent(self) -> float:
        return sent_bytes(self.kind, self.tensor_bytes, self.group_size)


def _tensors(value) -> list[torch.Tensor]:
    """Every tensor in an argument: a tensor, a list of them, or a list of lists (allgather_'s outputs)."""
    if isinstance(value, torch.Tensor):
        return [value]
    if isinstance(value, (list, tuple)):
        return [t for item in value for t in _tensors(item)]
    return []


def _group_size(bound: dict) -> int:
    if "group_size" in bound:
        return int(bound["group_size"])
    if "process_group" in bound:
        return dist.ProcessGroup.unbox(bound["process_group"]).size()
    if "group_name" in bound:
        group = bound["group_name"]  # a name, or (schema type Any) the group itself
        if not isinstance(group, dist.ProcessGroup):
            group = dist.distributed_c10d._resolve_process_group(group)
        return group.size()
    return dist.get_world_size()


def describe(func, args: tuple, kwargs: dict) -> Collective | None:
    """The :class:`Collective` a dispatched operator call is, or None when it is not a collective."""
    schema = func._schema
    name = schema.name  # "c10d::allreduce_", without the overload
    kind = OPS.get(name)
    if kind is None:
        return None
    bound = {arg.name: value for arg, value in zip(schema.arguments, args)} | kwargs
    n = _group_size(bound)
    local = next((_tensors(bound[a]) for a in INPUT_ARGS if a in bound), [])
    nbytes = sum(t.numel() * t.element_size() for t in local)
    if kind == "all_gather":
        nbytes *= n  # the gathered tensor: N shards
    return Collective(kind, name, nbytes, n, torch._C._current_graph_task_id() != -1)


class CommRecorder(TorchDispatchMode):
    """Records every collective this process issues inside ``with CommRecorder() as rec:`` (see the module
    docstring for the paths it catches); ``rec.events`` lists them in order, :meth:`volumes` sums them.

    Backward passes run on the calling thread on a CPU. On a GPU they run on autograd's device threads, which take
    on the thread-local state of the ``backward()`` call, dispatch modes included (``at::ThreadLocalState``), so
    the reducer's all-reduces should be seen there too; the tests here run on CPUs only."""

    def __init__(self):
        super().__init__()
        self.events: list[Collective] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if any(issubclass(t, DTensor) for t in types):
            # A DTensor operator: let DTensor desugar it into plain operators first, so the collectives it issues
            # come back through this mode instead of running below it (CommDebugMode does the same).
            return NotImplemented
        if isinstance(func, torch._ops.OpOverload):
            event = describe(func, args, kwargs)
            if event is not None:
                self.events.append(event)
        return func(*args, **kwargs)

    def volumes(self) -> list[Volume]:
        return total_volumes(self.events)

    def by_kind(self) -> dict[str, dict[str, float]]:
        """{kind: {"calls", "tensor_bytes", "sent"}} over every event, for tables."""
        return by_kind(self.volumes())


def total_volumes(events: Iterable[Collective | Volume]) -> list[Volume]:
    """Events (or volumes) summed per (kind, backward, group size), in a stable order: comparable with ``==``."""
    totals: dict[tuple[str, bool, int], list[int | None]] = defaultdict(lambda: [0, 0])
    for e in events:
        total = totals[(e.kind, e.backward, e.group_size)]
        total[0] += e.tensor_bytes
        calls = e.calls if isinstance(e, Volume) else 1
        total[1] = None if calls is None or total[1] is None else total[1] + calls
    order = sorted(totals, key=lambda key: (KINDS.index(key[0]), key[1], key[2]))
    return [Volume(k, b, n, totals[(k, b, n)][0], totals[(k, b, n)][1]) for k, b, n in order]


def by_kind(volumes: Iterable[Volume]) -> dict[str, dict[str, float]]:
    out: dict[str, dict[str, float]] = {}
    for v in volumes:
        row = out.setdefault(v.kind, {"calls": 0, "tensor_bytes": 0, "sent": 0.0})
        row["calls"] = None if v.calls is None or row["calls"] is None else row["calls"] + v.calls
        row["tensor_bytes"] += v.tensor_bytes
        row["sent"] += v.sent
    return out


def without_calls(volumes: Iterable[Volume]) -> list[Volume]:
    """The volumes with their call counts dropped, to compare with a formula that does not predict them."""
    return [Volume(v.kind, v.backward, v.group_size, v.tensor_bytes) for v in volumes]


# The formulas. Each gives one rank's collectives per optimizer step from the config and the batch shape; ``itemsize``
# is the bytes per element of what travels (4 for fp32; 2 for bf16 gradients or activations).


def _meta_model(cfg: GPTConfig) -> GPT:
    """The model's parameters as shapes only (no memory): what the formulas count."""
    with torch.device("meta"):
        model = GPT(cfg)
    model.tie_weights()
    return model


def ddp_volumes(cfg: GPTConfig, world: int, itemsize: int = 4) -> list[Volume]:
    """DDP: one all-reduce of every gradient per optimizer step, in buckets, during the last micro-batch's backward
    pass (the others run under ``no_sync``). A tied head is one parameter: its gradient is reduced once."""
    grads = sum(p.numel() for p in _meta_model(cfg).parameters())
    return [Volume("all_reduce", True, world, grads * itemsize)]


def _padded(shape: torch.Size, n: int) -> int:
    """Elements FSDP2 gathers for one parameter: dim 0 padded up to a multiple of N, so every shard is equal."""
    rows = -(-shape[0] // n) * n
    return rows * (shape[1:].numel() if len(shape) > 1 else 1)


def fsdp_volumes(
    cfg: GPTConfig,
    world: int,
    itemsize: int = 4,
    micro_batches: int = 1,
    reshard_after_forward: bool = True,
    grad_itemsize: int | None = None,
) -> list[Volume]:
    """FSDP2 as ``fsdp.apply_fsdp`` wraps it: one unit per block, then the root (embedding, final norm, head).

    Forward: every unit's parameters are all-gathered once. Backward: the units freed after forward are gathered
    again (every block but the last, and the root: the head's weight is needed first), then every unit's gradients
    are reduce-scattered. Each unit is one flat buffer of its parameters, each padded to a multiple of N rows.
    With accumulation the gathers repeat in every micro-batch, while the reduce-scatter runs once, after the last
    (the others run under ``no_sync``). ``itemsize``: bytes per gathered element (the policy's ``param_dtype``);
    ``grad_itemsize``: per reduced element (``reduce_dtype``: fp32 on a GPU in ``apply_fsdp``), default the same."""
    model = _meta_model(cfg)
    blocks = [sum(_padded(p.shape, world) for p in block.parameters()) for block in model.blocks]
    in_blocks = {id(p) for p in model.blocks.parameters()}
    root = sum(_padded(p.shape, world) for p in model.parameters() if id(p) not in in_blocks)
    units = [root, *blocks]
    regathered = [root, *blocks[:-1]] if reshard_after_forward else []
    m = micro_batches
    return [
        Volume("all_gather", False, world, m * sum(units) * itemsize, m * len(units)),
        Volume("all_gather", True, world, m * sum(regathered) * itemsize, m * len(regathered)),
        Volume("reduce_scatter", True, world, sum(units) * (grad_itemsize or itemsize), len(units)),
    ]


def tp_volumes(
    cfg: GPTConfig, tp: int, batch: int, seq_len: int, itemsize: int = 4, micro_batches: int = 1
) -> list[Volume]:
    """Megatron tensor parallelism (the DTensor plan or ``megatron.py``): per block, one all-reduce of the (B, T, d)
    activation at the exit of attention and of the MLP in forward, and one of its gradient at their entrances in
    backward; ``batch`` sequences per micro-batch, every micro-batch alike. The embedding and the head are
    replicated here, so they add nothing (a vocab-parallel head would add an all-reduce of its (B, T, d) input
    gradient and the loss's statistics)."""
    activation = batch * seq_len * cfg.d_model * itemsize  # (B, T, d)
    calls = 2 * cfg.n_layer * micro_batches
    return [
        Volume("all_reduce", False, tp, calls * activation, calls),
        Volume("all_reduce", True, tp, calls * activation, calls),
    ]


def pp_volumes(
    cfg: GPTConfig, stages: int, stage: int, micro_batch: int, seq_len: int, n_micro: int, itemsize: int = 4
) -> list[Volume]:
    """Pipeline parallelism, one rank's share: per micro-batch, the (micro_B, T, d) activation crosses each stage
    boundary forward and its gradient crosses it back, point to point. Stage ``stage`` sends activations to the next
    stage and gradients to the previous one, and receives the same. ``pipeline_step`` adds, outside the schedule,
    an all-reduce of a tied head's (vocab, d) gradient over the pipeline (first and last stage hold a copy).
    The schedule sends outside autograd's backward pass (it runs each stage's backward itself), so none counts as
    backward here."""
    activation = micro_batch * seq_len * cfg.d_model * itemsize
    neighbours = (stage > 0) + (stage < stages - 1)
    p2p = neighbours * n_micro
    return [
        Volume("send", False, stages, p2p * activation, p2p),
        Volume("recv", False, stages, p2p * activation, p2p),
    ]


def pp_tied_head_volume(cfg: GPTConfig, stages: int, itemsize: int = 4) -> list[Volume]:
    """The all-reduce of a tied embedding/head gradient over the pipeline that ``pipeline_step`` runs (none if
    untied or one stage)."""
    if not cfg.tie_embeddings or stages == 1:
        return []
    return [Volume("all_reduce", False, stages, cfg.vocab_size * cfg.d_model * itemsize, 1)]

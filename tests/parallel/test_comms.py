"""Communication per step, counted: on 2 gloo processes the bytes every strategy moves equal the formulas exactly.

``CommRecorder`` must see each path a collective can take (DDP's C++ reducer, FSDP2's flat all-gathers and
reduce-scatters, DTensor's functional collectives, the Megatron layer's ``dist.all_reduce`` inside autograd functions,
pipelining's send/recv). The oracle for each is an expectation derived here, independently of ``comms.py``, from the
model's parameters (``num_params``, or the built model's named parameters) and the batch shape: a path the recorder
missed, or a formula that is wrong, makes the bytes differ. One spawn measures every case; rank 0 writes them out.
"""

from __future__ import annotations

import copy
import math
import os
from collections import defaultdict
from contextlib import nullcontext
from dataclasses import asdict, replace
from functools import partial

import pytest
import torch
import torch.distributed as dist

from scratchllm.model import GPT, GPTConfig
from scratchllm.model.config import num_params
from scratchllm.parallel import comms, plan

from .spawn import spawn_workers, write_results

WORLD = 2
B, T = 2, 8  # sequences per micro-batch per rank, tokens per sequence
CONFIGS = {
    # GPT-2-style, tied head, learned positions, biases; an odd vocabulary, so FSDP pads the embedding's rows.
    "gpt2": GPTConfig(vocab_size=65, block_size=T, n_layer=2, n_head=2, d_model=16, pos_encoding="learned",
                      norm="layernorm", mlp="gelu", bias=True),
    # Llama-style: SwiGLU (three MLP matrices), grouped-query attention, untied head, three blocks.
    "llama": GPTConfig(vocab_size=64, block_size=T, n_layer=3, n_head=4, n_kv_head=2, d_model=32, d_ff=64,
                       tie_embeddings=False),
}  # fmt: skip


def train_step(module, batches, optimizer, no_sync=nullcontext) -> None:
    """Forward and backward each micro-batch (``no_sync`` around all but the last), then the update: a training
    step's communication without ``accumulated_step``'s scalar all-reduces (token count, loss, gradient norm)."""
    for i, (x, y) in enumerate(batches):
        with no_sync() if i < len(batches) - 1 else nullcontext():
            module(x, y).backward()
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)


def measure(step, *args, warmup: int = 2) -> list[dict]:
    """The volumes of one step, after ``warmup`` steps: DDP rebuilds its buckets in its second forward (broadcasting
    the new order), and a pipeline stage exchanges shapes in its first step; neither repeats afterwards."""
    for _ in range(warmup):
        step(*args)
    with comms.CommRecorder() as recorder:
        step(*args)
    return [asdict(v) for v in recorder.volumes()]


def batches(cfg: GPTConfig, n: int, rank: int, size: int = B) -> list[tuple[torch.Tensor, torch.Tensor]]:
    g = torch.Generator().manual_seed(10 + rank)
    return [(torch.randint(0, cfg.vocab_size, (size, T), generator=g),) * 2 for _ in range(n)]


def worker(rank: int, port: int, out: str) -> None:
    from torch.distributed.device_mesh import init_device_mesh

    from scratchllm.parallel.dist import ParallelConfig, build_mesh
    from scratchllm.parallel.fsdp import apply_fsdp
    from scratchllm.parallel.fsdp import no_sync as fsdp_no_sync
    from scratchllm.parallel.megatron import apply_megatron
    from scratchllm.parallel.parallelize import no_sync, parallelize
    from scratchllm.parallel.pipeline import build_pipeline, pipeline_step
    from scratchllm.parallel.tensor_parallel import apply_tensor_parallel

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), WORLD_SIZE=str(WORLD), RANK=str(rank))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=WORLD)
    mesh = init_device_mesh("cpu", (WORLD,))
    dp_mesh = build_mesh(ParallelConfig())
    sgd = lambda model: torch.optim.SGD(model.parameters(), lr=1e-3)  # noqa: E731  (no optimizer communicates)
    mine: dict = {}
    for name, cfg in CONFIGS.items():
        torch.manual_seed(0)
        ref = GPT.build(cfg)
        for accum in (1, 3):
            model = copy.deepcopy(ref)
            ddp = parallelize(model, dp_mesh, ParallelConfig())
            data, opt = batches(cfg, accum, rank), sgd(model)
            mine[f"{name}/ddp/{accum}"] = measure(train_step, ddp, data, opt, no_sync(ddp))
        model = copy.deepcopy(ref)
        ddp = parallelize(model, dp_mesh, ParallelConfig())
        data, opt = batches(cfg, 3, rank), sgd(model)
        mine[f"{name}/ddp/3/without no_sync"] = measure(train_step, ddp, data, opt)
        model = apply_fsdp(copy.deepcopy(ref), mesh)
        data, opt = batches(cfg, 2, rank), sgd(model)
        mine[f"{name}/fsdp/2"] = measure(train_step, model, data, opt, partial(fsdp_no_sync, model))
        data = batches(cfg, 2, 0)  # tensor parallelism: every rank sees the same batch
        for style, apply in [("dtensor", lambda m: apply_tensor_parallel(m, mesh)), ("megatron", apply_megatron)]:
            model = apply(copy.deepcopy(ref))
            opt = sgd(model)
            mine[f"{name}/{style}/2"] = measure(train_step, model, data, opt)
        pipe = build_pipeline(copy.deepcopy(ref), dist.group.WORLD, n_microbatches=4)
        (x, y), opt = batches(cfg, 1, 0, size=4)[0], sgd(pipe.module)
        mine[f"{name}/pp/4"] = measure(pipeline_step, pipe, x, y, opt)
    everyone = [None] * WORLD
    dist.all_gather_object(everyone, mine)
    if rank == 0:
        write_results(out, {"ranks": everyone})
    dist.barrier()  # leave together (see test_fsdp.py)
    dist.destroy_process_group()


@pytest.fixture(scope="module")
def counted(tmp_path_factory) -> list[dict]:
    """Per rank: {case: [volume as a dict, ...]}."""
    return spawn_workers(worker, tmp_path_factory.mktemp("comms"), WORLD)["ranks"]


def volume(kind, backward, tensor_bytes, calls=None, n=WORLD) -> dict:
    return {"kind": kind, "backward": backward, "group_size": n, "tensor_bytes": tensor_bytes, "calls": calls}


def as_dicts(volumes) -> list[dict]:
    return [asdict(v) for v in volumes]


def fsdp_units(cfg: GPTConfig, n: int) -> dict[str, int]:
    """Elements per FSDP unit (root, blocks.0, ...), each parameter's rows padded to a multiple of n, read from a
    built model's named parameters (a tied head is listed once)."""
    units: dict[str, int] = defaultdict(int)
    for name, p in GPT.build(cfg).named_parameters():
        unit = ".".join(name.split(".")[:2]) if name.startswith("blocks.") else "root"
        units[unit] += math.ceil(p.shape[0] / n) * n * (p.numel() // p.shape[0])
    return units


@pytest.mark.parametrize("name", list(CONFIGS))
def test_ddp_all_reduces_every_gradient_once_per_step(counted, name):
    cfg = CONFIGS[name]
    grads = num_params(cfg) * 4  # fp32; a tied head is one parameter, one gradient
    for rank in counted:
        one, accumulated = rank[f"{name}/ddp/1"], rank[f"{name}/ddp/3"]
        assert [{**v, "calls": None} for v in one] == [volume("all_reduce", True, grads)]
        # Three micro-batches under no_sync: the same buckets, reduced once, not three times.
        assert accumulated == one
        assert rank[f"{name}/ddp/3/without no_sync"] == [
            {**one[0], "tensor_bytes": 3 * grads, "calls": 3 * one[0]["calls"]}
        ]
    assert as_dicts(comms.without_calls(comms.ddp_volumes(cfg, WORLD))) == [volume("all_reduce", True, grads)]


@pytest.mark.parametrize("name", list(CONFIGS))
def test_fsdp_gathers_twice_and_reduce_scatters_once(counted, name):
    cfg, micro = CONFIGS[name], 2
    units = fsdp_units(cfg, WORLD)
    everything, last = sum(units.values()), units[f"blocks.{cfg.n_layer - 1}"]
    n_units = cfg.n_layer + 1
    expected = [
        volume("all_gather", False, micro * everything * 4, micro * n_units),  # forward, every micro-batch
        volume("all_gather", True, micro * (everything - last) * 4, micro * (n_units - 1)),  # the last stays gathered
        volume("reduce_scatter", True, everything * 4, n_units),  # once, after the last micro-batch
    ]
    for rank in counted:
        assert rank[f"{name}/fsdp/2"] == expected
    assert as_dicts(comms.fsdp_volumes(cfg, WORLD, micro_batches=micro)) == expected


@pytest.mark.parametrize("style", ["dtensor", "megatron"])
@pytest.mark.parametrize("name", list(CONFIGS))
def test_tensor_parallel_all_reduces_two_activations_per_block_each_way(counted, name, style):
    cfg, micro = CONFIGS[name], 2
    calls = 2 * cfg.n_layer * micro  # attention and MLP of every block, every micro-batch
    activation = B * T * cfg.d_model * 4  # (B, T, d) fp32
    expected = [
        volume("all_reduce", False, calls * activation, calls),
        volume("all_reduce", True, calls * activation, calls),
    ]
    for rank in counted:
        assert rank[f"{name}/{style}/2"] == expected
    assert as_dicts(comms.tp_volumes(cfg, WORLD, B, T, micro_batches=micro)) == expected


@pytest.mark.parametrize("name", list(CONFIGS))
def test_pipeline_sends_one_activation_each_way_per_micro_batch(counted, name):
    cfg, micro = CONFIGS[name], 4
    activation = 1 * T * cfg.d_model * 4  # a micro-batch of 1 sequence
    tied = cfg.vocab_size * cfg.d_model * 4 if cfg.tie_embeddings else 0
    for stage, rank in enumerate(counted):
        got = rank[f"{name}/pp/4"]
        p2p = [v for v in got if v["kind"] in ("send", "recv")]
        # 2 stages: each sends 4 (activations forward, or gradients back) and receives 4.
        assert p2p == [
            volume("send", False, micro * activation, micro),
            volume("recv", False, micro * activation, micro),
        ]
        assert p2p == as_dicts(comms.pp_volumes(cfg, WORLD, stage, 1, T, micro))
        # pipeline_step adds the tied head's gradient and the squared norm and loss (two float64): every byte known.
        reduced = [v for v in got if v["kind"] == "all_reduce"]
        assert reduced == [volume("all_reduce", False, tied + 16, 1 + bool(tied))]
        assert as_dicts(comms.pp_tied_head_volume(cfg, WORLD)) == (
            [volume("all_reduce", False, tied, 1)] if tied else []
        )


def test_cost_model_per_rank():
    # Ring all-reduce: 2 (N-1)/N of the tensor; all-gather and reduce-scatter: (N-1)/N of the full tensor.
    assert comms.sent_bytes("all_reduce", 800, 8) == 1400
    assert comms.sent_bytes("all_gather", 800, 8) == comms.sent_bytes("reduce_scatter", 800, 8) == 700
    assert comms.sent_bytes("send", 800, 2) == 800 and comms.sent_bytes("recv", 800, 2) == 0


@pytest.mark.parametrize("fsdp", [False, True])
def test_planner_communication_is_these_formulas(fsdp):
    """plan.estimate_time's communication terms (seconds at 1 byte/s are bytes) against comms' formulas, bf16."""
    cfg = GPTConfig.preset("gpt2", vocab_size=50304)  # every dim divisible by 8: FSDP pads nothing
    cluster = plan.Cluster(gpus=8, memory=80e9, flops=1e15, bandwidth_intra=1.0, bandwidth_inter=1.0)
    seq, micro, m = 1024, 4, 2
    dp = plan.estimate_time(cfg, plan.Layout(dp=8, fsdp=fsdp, micro_batch=micro), cluster, seq, 8 * micro * m)
    formula = comms.fsdp_volumes(cfg, 8, 2, micro_batches=m) if fsdp else comms.ddp_volumes(cfg, 8, itemsize=2)
    sent = sum(v.sent for v in formula)
    if fsdp:  # the planner's closed form also regathers the last block, which apply_fsdp keeps gathered
        last_block = sum(p.numel() for p in GPT(replace(cfg, n_layer=1)).blocks.parameters()) * 2
        assert dp.data_parallel == pytest.approx(sent + m * 7 / 8 * last_block, rel=1e-12)
    else:
        assert dp.data_parallel == pytest.approx(sent, rel=1e-12)
    tp = plan.estimate_time(cfg, plan.Layout(tp=4, micro_batch=micro), cluster, seq, micro * m)
    assert tp.tensor_parallel == pytest.approx(sum(v.sent for v in comms.tp_volumes(cfg, 4, micro, seq, 2, m)))
    # The planner charges every pipeline boundary in turn: the sends of all stages together.
    pp = plan.estimate_time(cfg, plan.Layout(pp=4, micro_batch=micro), cluster, seq, micro * m)
    stages = sum(v.sent for s in range(4) for v in comms.pp_volumes(cfg, 4, s, micro, seq, m, 2))
    tied = sum(v.sent for v in comms.pp_tied_head_volume(cfg, 4))  # gpt2's head is the embedding: fp32 all-reduce
    assert pp.pipeline == pytest.approx(stages + tied)

"""2D and 3D parallelism on 8 CPU processes with gloo: one optimizer step equals the single-process step.

Layouts over a (pp, dp, tp) device mesh of the same 8 ranks, each checked for a Llama-style model (untied head) and a
GPT-2-style one (tied head: under pipelining its two copies live on the first and last stage, each sharded by FSDP):

- 3D, 2 x 2 x 2: tensor parallelism inside each pair of ranks, FSDP over pairs, two pipeline stages (1F1B);
- pipeline x FSDP, 2 x 4 x 1;
- FSDP x tensor parallelism, 1 x 4 x 2 (``parallelize``, as the trainer applies it).

Oracle: the whole model in one process, built from the same seed, stepped with ``accumulated_step`` on the whole
global batch (8 sequences, targets masked unevenly so that ranks count different numbers of tokens). float64, so the
only differences are summation order: parameters and gradient norm agree to 1e-12 (the reported loss, a float32
number, to 1e-6). The gradient norm's check caught a real bug: FSDP over a tensor-parallel weight places its shards
as ``_StridedShard``, whose ``is_shard()`` is False, and a norm that trusted it summed those gradients' squares
over the tensor-parallel ranks only, not over the data-parallel ones. Eight processes on two
cores are oversubscribed: this checks correctness, not speed, and is slow-marked.
"""

from __future__ import annotations

import copy
import os
from functools import partial

import pytest
import torch
import torch.distributed as dist

from scratchllm.model import GPT, GPTConfig
from scratchllm.train.config import TrainConfig
from scratchllm.train.optim import build_optimizer
from scratchllm.train.step import accumulated_step

from .spawn import spawn_workers, write_results

WORLD = 8
BATCH, MICRO = 8, 2  # global sequences per step; micro-batches per data-parallel rank
CONFIGS = {
    "llama": GPTConfig(vocab_size=64, block_size=16, n_layer=2, n_head=4, n_kv_head=2, d_model=32, d_ff=64,
                       tie_embeddings=False),
    # vocab 63 over 4 FSDP ranks: shards of 16, 16, 16 and 15 rows (the tied matrix's uneven last shard).
    "gpt2": GPTConfig(vocab_size=63, block_size=16, n_layer=2, n_head=2, d_model=32, pos_encoding="learned",
                      norm="layernorm", mlp="gelu", bias=True),
}  # fmt: skip
LAYOUTS = {"3d-2x2x2": (2, 2, 2), "pp-fsdp-2x4x1": (2, 4, 1), "fsdp-tp-1x4x2": (1, 4, 2)}

pytestmark = pytest.mark.slow


def global_batch(cfg: GPTConfig) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(1)
    idx = torch.randint(0, cfg.vocab_size, (BATCH, cfg.block_size), generator=gen)  # (B, T), same on all ranks
    targets = torch.randint(0, cfg.vocab_size, (BATCH, cfg.block_size), generator=gen)
    targets[0, :12] = -100  # the first data-parallel rank counts fewer targets than the others
    targets[5, 3:7] = -100
    return idx, targets


def step_layout(model: GPT, mesh, idx, targets, train_cfg):
    """One step of ``model`` under ``mesh``'s layout on this rank's share of the batch; returns (result, module)."""
    from scratchllm.parallel.dist import ParallelConfig, sum_over_ranks
    from scratchllm.parallel.parallelize import no_sync, parallelize
    from scratchllm.parallel.pipeline import build_pipeline, pipeline_step

    dp = mesh["dp"].size()
    share = BATCH // dp
    mine = slice(mesh["dp"].get_local_rank() * share, (mesh["dp"].get_local_rank() + 1) * share)
    idx, targets = idx[mine], targets[mine]
    if mesh["pp"].size() > 1:
        pipe = build_pipeline(model, mesh["pp"].get_group(), MICRO, "1f1b", dp_mesh=mesh["dp"], tp_mesh=mesh["tp"])
        result = pipeline_step(pipe, idx, targets, build_optimizer(pipe.module, train_cfg), grad_clip=0.5)
        return result, pipe.module
    runner = parallelize(model, mesh, ParallelConfig(dp_shard="fsdp", tp=mesh["tp"].size()))
    size = share // MICRO
    micro = [(idx[i : i + size], targets[i : i + size]) for i in range(0, share, size)]
    result = accumulated_step(
        runner, micro, build_optimizer(model, train_cfg), grad_clip=0.5, no_sync=no_sync(runner),
        all_reduce=partial(sum_over_ranks, group=mesh["dp"].get_group()), ranks=dp,
    )  # fmt: skip
    return result, model


def worker(rank: int, port: int, tmp: str) -> None:
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.tensor import DTensor

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=WORLD)
    train_cfg = TrainConfig(lr=1e-2, weight_decay=0.1)
    results = {}
    for layout, shape in LAYOUTS.items():
        mesh = init_device_mesh("cpu", shape, mesh_dim_names=("pp", "dp", "tp"))
        for name, cfg in CONFIGS.items():
            torch.manual_seed(0)
            ref = GPT.build(cfg, dtype=torch.float64)
            model = copy.deepcopy(ref)
            idx, targets = global_batch(cfg)
            expected = accumulated_step(ref, [(idx, targets)], build_optimizer(ref, train_cfg), grad_clip=0.5)
            got, module = step_layout(model, mesh, idx, targets, train_cfg)
            reference = dict(ref.named_parameters())
            diff, checked = 0.0, 0
            for key, p in module.named_parameters():  # this rank's stage, whole tensors gathered from the shards
                full = p.full_tensor() if isinstance(p, DTensor) else p
                diff = max(diff, (full.detach() - reference[key].detach()).abs().max().item())
                checked += p.numel() if not isinstance(p, DTensor) else full.numel()
            worst = torch.tensor([diff, abs(got.loss - expected.loss), abs(got.grad_norm - expected.grad_norm)])
            dist.all_reduce(worst, op=dist.ReduceOp.MAX)
            stage_params = torch.tensor([checked])
            dist.all_reduce(stage_params)  # every stage's parameters, once per rank holding them
            results[f"{layout}/{name}"] = {
                "params": worst[0].item(), "loss": worst[1].item(), "grad_norm": worst[2].item(),
                "loss_value": expected.loss, "checked": int(stage_params),
            }  # fmt: skip
    if rank == 0:
        write_results(tmp, results)
    dist.barrier()  # leave together (see test_fsdp.py)
    dist.destroy_process_group()


@pytest.fixture(scope="module")
def results(tmp_path_factory) -> dict:
    return spawn_workers(worker, tmp_path_factory.mktemp("3d"), WORLD)


@pytest.mark.parametrize("layout", list(LAYOUTS))
@pytest.mark.parametrize("name", list(CONFIGS))
def test_step_equals_single_process(results, layout, name):
    r = results[f"{layout}/{name}"]
    assert r["params"] < 1e-12 and r["grad_norm"] < 1e-12, r
    # accumulated_step reports the loss in float32 (its micro-batch sums are logged, not differentiated): 1e-6.
    assert r["loss"] < 1e-6, r
    # Every parameter was compared: each of the 8 ranks checked its stage's whole tensors.
    n_params = sum(p.numel() for p in GPT.build(CONFIGS[name]).parameters())
    pp = LAYOUTS[layout][0]
    tied_copy = CONFIGS[name].vocab_size * CONFIGS[name].d_model if CONFIGS[name].tie_embeddings and pp > 1 else 0
    assert r["checked"] == (n_params + tied_copy) * WORLD // pp, r

"""Pipeline parallelism on CPU with gloo, 2 stages: one optimizer step under GPipe and under 1F1B, over 4
micro-batches, equals the single-process step on the same batch; the bubble is measured.

Oracle: the whole model, built from the same seed in every process and stepped with ``accumulated_step`` on the whole
batch (loss = summed cross-entropy / counted targets, gradient clipping, AdamW with weight decay). One spawn runs
every case (process start-up dominates the time); rank 0 writes the largest differences to a JSON file.
"""

from __future__ import annotations

import copy
import os

import pytest
import torch
import torch.distributed as dist

from scratchllm.model import GPT, GPTConfig
from scratchllm.parallel.pipeline import stage_layers
from scratchllm.train.config import TrainConfig
from scratchllm.train.optim import build_optimizer
from scratchllm.train.step import accumulated_step

from .spawn import spawn_workers, write_results

WORLD = 2
MICRO = 4
CONFIGS = {
    # Llama-style: RoPE (every stage needs the rotation), RMSNorm, SwiGLU, grouped-query attention, untied head.
    "llama": GPTConfig(vocab_size=64, block_size=16, n_layer=3, n_head=4, n_kv_head=2, d_model=32, d_ff=64,
                       tie_embeddings=False),
    # GPT-2-style: learned positions (first stage only), LayerNorm with biases, GELU, tied head across the stages,
    # activation checkpointing in the stages (recomputation changes nothing numerically).
    "gpt2": GPTConfig(vocab_size=64, block_size=16, n_layer=2, n_head=2, d_model=32, pos_encoding="learned",
                      norm="layernorm", mlp="gelu", bias=True, activation_checkpointing=True),
}  # fmt: skip
CASES = [("llama", torch.float64), ("gpt2", torch.float64), ("llama", torch.float32)]
SCHEDULES = ["gpipe", "1f1b"]


def worker(rank: int, port: int, out: str) -> None:
    from scratchllm.parallel.pipeline import build_pipeline, measured_bubble, pipeline_step

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=WORLD)
    train_cfg = TrainConfig(lr=1e-3, weight_decay=0.1)
    results = {}
    for name, dtype in CASES:
        cfg = CONFIGS[name]
        torch.manual_seed(0)
        ref = GPT.build(cfg, dtype=dtype)
        gen = torch.Generator().manual_seed(1)
        idx = torch.randint(0, cfg.vocab_size, (8, cfg.block_size), generator=gen)  # (B, T), the same on all ranks
        targets = torch.randint(0, cfg.vocab_size, (8, cfg.block_size), generator=gen)
        targets[0, :5] = -100  # uneven counts per micro-batch: each is divided by the step's total
        models = {s: copy.deepcopy(ref) for s in SCHEDULES}
        ref_step = accumulated_step(ref, [(idx, targets)], build_optimizer(ref, train_cfg), grad_clip=0.5)
        for schedule, model in models.items():
            pipe = build_pipeline(model, dist.group.WORLD, MICRO, schedule)
            step = pipeline_step(pipe, idx, targets, build_optimizer(pipe.module, train_cfg), 0.5)
            reference = dict(ref.named_parameters())
            diff = torch.tensor(max((p - reference[k]).abs().max().item() for k, p in pipe.module.named_parameters()))
            dist.all_reduce(diff, op=dist.ReduceOp.MAX)
            results[f"{name}-{str(dtype).removeprefix('torch.')}-{schedule}"] = {
                "params": diff.item(),
                "loss": abs(step.loss - ref_step.loss) / ref_step.loss,  # relative
                "grad_norm": abs(step.grad_norm - ref_step.grad_norm),
            }
            if dtype == torch.float32:
                pipeline_step(pipe, idx, targets, build_optimizer(pipe.module, train_cfg))  # a warm step to time
                bubble = measured_bubble(pipe)
                gathered = [None] * WORLD
                dist.all_gather_object(gathered, bubble)
                results[f"bubble-{schedule}"] = gathered
    if rank == 0:
        write_results(out, results)
    dist.barrier()  # leave together (see test_fsdp.py)
    dist.destroy_process_group()


@pytest.fixture(scope="module")
def results(tmp_path_factory) -> dict:
    return spawn_workers(worker, tmp_path_factory.mktemp("pp"), WORLD)


@pytest.mark.parametrize("case", ["llama-float64", "gpt2-float64", "llama-float32"])
@pytest.mark.parametrize("schedule", SCHEDULES)
def test_pipeline_step_equals_single_process(results, case, schedule):
    tol = 1e-12 if case.endswith("float64") else 1e-5
    diffs = results[f"{case}-{schedule}"]
    assert diffs["params"] < tol and diffs["grad_norm"] < tol, diffs
    assert diffs["loss"] < 1e-6, diffs  # accumulated_step sums its loss in fp32, whatever the model's dtype


@pytest.mark.parametrize("schedule", SCHEDULES)
def test_bubble_is_measured_per_stage(results, schedule):
    # Timing on shared cores is noisy: only check that each stage reports a sensible idle fraction and the formula.
    for stage in results[f"bubble-{schedule}"]:
        assert 0.0 <= stage["bubble"] < 1.0 and stage["busy"] > 0, stage
        assert stage["ideal"] == pytest.approx(1 / 5)  # (p-1)/(m+p-1) with p=2, m=4


def test_stage_layers_split_evenly_and_refuse_too_many_stages():
    assert stage_layers(5, 2) == [range(0, 3), range(3, 5)]  # the last stage also runs the head and the loss
    assert stage_layers(4, 4) == [range(i, i + 1) for i in range(4)]
    with pytest.raises(ValueError, match="3 pipeline stages need at least 3 layers"):
        stage_layers(2, 3)

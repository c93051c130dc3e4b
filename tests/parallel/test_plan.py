"""The planner: its formulas against hand-computed numbers, its recommendation, and its memory model against the
measured peak of real CPU training steps (within 15%)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest

from scratchllm.model import GPTConfig
from scratchllm.model.config import flops_per_token, num_params
from scratchllm.parallel.plan import (
    GIB,
    Cluster,
    Layout,
    accumulation_plan,
    block_activation_elements,
    estimate_memory,
    estimate_time,
    korthikanti_block_bytes,
    plan,
)
from scratchllm.train.fit import BatchDoesNotFit

GPT2_STYLE = dict(pos_encoding="learned", norm="layernorm", mlp="gelu", bias=True)
SMALL = GPTConfig(**GPT2_STYLE, vocab_size=8192, block_size=256, n_layer=4, n_head=8, d_model=512)
H100S = Cluster(gpus=64, memory=80 * GIB, flops=989e12, bandwidth_intra=300e9, bandwidth_inter=25e9)


def test_fp32_adamw_costs_16_bytes_per_parameter_and_fsdp_divides_it_by_n():
    p = num_params(SMALL)
    single = estimate_memory(SMALL, Layout(), 256)
    assert (single.params, single.grads, single.optimizer) == (4 * p, 4 * p, 8 * p)
    mixed = estimate_memory(SMALL, Layout(), 256, mixed_precision=True)
    assert (mixed.params, mixed.grads, mixed.optimizer) == (2 * p, 2 * p, 12 * p)  # ZeRO's 2 + 2 + 12
    ddp = estimate_memory(SMALL, Layout(dp=8), 256)
    assert ddp == single  # DDP replicates everything
    zero3 = estimate_memory(SMALL, Layout(dp=8, fsdp=True), 256)
    block = 12 * 512**2 + 13 * 512  # GPT-2 block: 4 d^2 attention + 8 d^2 MLP, biases and two LayerNorms
    assert zero3.grads == 4 * p / 8 and zero3.optimizer == 8 * p / 8
    assert zero3.params == 4 * p / 8 + 2 * 4 * block  # plus the gathered current and prefetched blocks
    assert zero3.activations == single.activations  # sharding states does not touch activations


def test_activations_follow_korthikanti_less_the_attention_matrix():
    s, b = 256, 4
    # A GPT-2 block under SDPA keeps 17 s b h elements: Korthikanti's 34 bytes at 2 bytes each, less the dropout
    # masks (2 s b h bytes), plus SDPA's own copy of its output; the 5 a s / h term is gone.
    assert block_activation_elements(SMALL, s) * b == 17 * s * b * SMALL.d_model
    assert korthikanti_block_bytes(SMALL, s, b) == s * b * 512 * (34 + 5 * 8 * s / 512)
    explicit = GPTConfig(**{**vars(SMALL), "attention": "explicit"})
    assert block_activation_elements(explicit, s) - block_activation_elements(SMALL, s) == 8 * s * s
    # tensor parallelism divides every layer's activations by t (with sequence parallelism), not the states' total
    one, four = (estimate_memory(SMALL, Layout(tp=t, micro_batch=b), s) for t in (1, 4))
    assert four.activations == pytest.approx(one.activations / 4)
    assert four.params == pytest.approx(one.params / 4, rel=0.01)  # all but the norms' few weights
    # checkpointing keeps one s b h per block plus one block's worth being recomputed
    ckpt = estimate_memory(SMALL, Layout(micro_batch=b, checkpointing=True), s)
    output = 2 * s * b * 512 * 4 + 3 * s * b * 8192 * 4
    assert ckpt.activations == 4 * s * b * 512 * 4 + 17 * s * b * 512 * 4 + output


def test_step_time_adds_compute_communication_and_the_bubble():
    cfg, s, batch = GPTConfig.preset("gpt2-xl"), 1024, 512
    ddp = estimate_time(cfg, Layout(dp=64, micro_batch=8), H100S, s, batch)
    assert ddp.compute == pytest.approx(flops_per_token(cfg, s) * batch * s / (64 * 989e12 * 0.4))
    assert ddp.data_parallel == pytest.approx(2 * 63 / 64 * num_params(cfg) * 2 / 25e9)  # ring all-reduce of bf16
    fsdp = estimate_time(cfg, Layout(dp=64, fsdp=True, micro_batch=8), H100S, s, batch)
    assert fsdp.data_parallel == pytest.approx(ddp.data_parallel * 3 / 2)  # 2 all-gathers + 1 reduce-scatter
    pp = estimate_time(cfg, Layout(dp=16, pp=4, micro_batch=8), H100S, s, batch)
    m = 512 // (16 * 8)
    assert pp.compute == pytest.approx(ddp.compute / (1 - 3 / (m + 3)))  # bubble (p-1)/(m+p-1)


def test_plan_recommends_a_layout_that_fits():
    cfg = GPTConfig.preset("llama3.2-1b")
    tight = Cluster(gpus=16, memory=12 * GIB, flops=989e12, bandwidth_intra=300e9, bandwidth_inter=25e9)
    candidates = plan(cfg, tight, 2048, 256)
    best = candidates[0]
    assert best.fits and best.memory.total <= 12 * GIB * 0.9
    assert any(not c.fits for c in candidates)  # plain DDP at this size does not fit 12 GiB
    assert {c.layout.tp for c in candidates} >= {1, 2, 4, 8}
    assert all(c.layout.dp * c.layout.tp * c.layout.pp == 16 for c in candidates)
    fitting = [c.time.total for c in candidates if c.fits]
    assert fitting == sorted(fitting)


def test_accumulation_plan_for_a_small_gpu_agrees_with_fit_rule():
    cfg, s = GPTConfig.preset("gpt2"), 1024
    micro, steps = accumulation_plan(cfg, 8 * GIB, s, 64)
    assert micro * steps == 64
    assert estimate_memory(cfg, Layout(micro_batch=micro), s).total <= 8 * GIB * 0.9
    larger = [d for d in (2 * micro, 4 * micro) if 64 % d == 0]
    assert all(estimate_memory(cfg, Layout(micro_batch=d), s).total > 8 * GIB * 0.9 for d in larger)
    one_gpu = Cluster(gpus=1, memory=8 * GIB, flops=100e12, bandwidth_intra=300e9, bandwidth_inter=25e9)
    without_checkpointing = [c for c in plan(cfg, one_gpu, s, 64) if not c.layout.checkpointing]
    assert without_checkpointing[0].layout.micro_batch == micro  # `scratchllm plan --gpus 1` chooses the same
    with pytest.raises(BatchDoesNotFit):
        accumulation_plan(cfg, 1 * GIB, s, 64)


# The measured check. One step's peak resident memory, less the process's before the model existed, in a child with
# MALLOC_MMAP_THRESHOLD_ so that glibc returns freed tensors to the system and the resident size follows live memory
# (see benchmarks/memory.py). The measured step is the second, after AdamW has allocated its moments.
MEASURE = textwrap.dedent("""
    import gc, json, sys
    import torch
    from scratchllm.model import GPT, GPTConfig
    from scratchllm.train.config import TrainConfig
    from scratchllm.train.memory import current_memory_bytes, peak_memory_bytes, reset_peak_memory
    from scratchllm.train.optim import build_optimizer
    from scratchllm.train.step import accumulated_step
    spec = json.loads(sys.argv[1])
    batch, seq = spec.pop("batch"), spec.pop("seq")
    torch.manual_seed(0)
    tokens = torch.randint(0, spec["vocab_size"], (batch, seq))
    gc.collect()
    before = current_memory_bytes()
    model = GPT.build(GPTConfig(**spec)).train()
    optimizer = build_optimizer(model, TrainConfig())
    accumulated_step(model, [(tokens, tokens)], optimizer)
    gc.collect()
    reset_peak_memory()
    accumulated_step(model, [(tokens, tokens)], optimizer)
    print(json.dumps(peak_memory_bytes() - before))
""")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the CPU peak is read from /proc (Linux only)")
@pytest.mark.parametrize("checkpointing", [False, pytest.param(True, marks=pytest.mark.slow)])
def test_memory_model_matches_a_measured_cpu_step_within_15_percent(checkpointing):
    cfg = GPTConfig(**{**vars(SMALL), "activation_checkpointing": checkpointing})
    batch, seq = 8, 256
    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "131072"}
    spec = json.dumps({**vars(cfg), "batch": batch, "seq": seq})
    out = subprocess.run([sys.executable, "-c", MEASURE, spec], capture_output=True, text=True, env=env, timeout=300)
    assert out.returncode == 0, out.stderr
    measured = json.loads(out.stdout)
    predicted = estimate_memory(cfg, Layout(micro_batch=batch, checkpointing=checkpointing), seq).total
    assert predicted == pytest.approx(measured, rel=0.15), (predicted / 2**20, measured / 2**20)


def test_plan_command_prints_a_table_and_refuses_bad_arguments(capsys):
    from scratchllm.cli.main import main

    args = ["plan", "--model", "gpt2-xl", "--gpus", "64", "--gpu-memory", "80", "--seq-len", "1024", "--top", "100"]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "recommended: " in out and "DDP 64x1x1" in out and "FSDP" in out
    assert main([*args, "--micro-batch", "2"]) == 0
    assert main(["plan", "--gpus", "0"]) == 2
    assert "--gpus must be positive" in capsys.readouterr().err
    assert main(["plan", "--mfu", "1.5"]) == 2
    assert main(["plan", "--gpus", "12"]) == 2  # not whole nodes of 8

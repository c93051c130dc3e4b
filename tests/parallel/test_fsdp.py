"""FSDP2 on CPU with gloo, 2 processes: one optimizer step of the sharded model equals the single-process step on the
same global batch, and a checkpoint gathered from the shards loads into a single process with the same logits.

Oracle: the unsharded model, built from the same seed in every process and stepped on the whole batch; each rank
steps the FSDP model on its half, in two micro-batches whose gradients are reduce-scattered once (``no_sync``). One
spawn runs every case (process start-up dominates the time); rank 0 writes the largest differences to a JSON file.
"""

from __future__ import annotations

import copy
import os

import pytest
import torch
import torch.distributed as dist

from scratchllm.model import GPT, GPTConfig
from scratchllm.train.config import TrainConfig
from scratchllm.train.optim import build_optimizer
from scratchllm.train.step import accumulated_step

from .spawn import spawn_workers, write_results

WORLD = 2
CONFIGS = {
    # Llama-style: RoPE, RMSNorm, SwiGLU, grouped-query attention, untied head.
    "llama": GPTConfig(vocab_size=64, block_size=16, n_layer=2, n_head=4, n_kv_head=2, d_model=32, d_ff=64,
                       tie_embeddings=False),
    # GPT-2-style: learned positions, LayerNorm with biases, GELU MLP, tied head (one parameter in the root unit).
    "gpt2": GPTConfig(vocab_size=64, block_size=16, n_layer=2, n_head=2, d_model=32, pos_encoding="learned",
                      norm="layernorm", mlp="gelu", bias=True),
}  # fmt: skip
CASES = [("llama", torch.float64), ("gpt2", torch.float64), ("llama", torch.float32)]
BATCH = 8  # global: 4 sequences per rank, 2 micro-batches of 2


def worker(rank: int, port: int, tmp: str) -> None:
    from safetensors.torch import load_file
    from torch.distributed.device_mesh import init_device_mesh

    from scratchllm.parallel.fsdp import apply_fsdp, no_sync, save_full_checkpoint
    from scratchllm.train.checkpoint import WEIGHTS_FILE, load_weights, read_config

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=WORLD)
    mesh = init_device_mesh("cpu", (WORLD,))
    train_cfg = TrainConfig(lr=1e-3, weight_decay=0.1)
    results = {}
    for name, dtype in CASES:
        cfg = CONFIGS[name]
        torch.manual_seed(0)
        ref = GPT.build(cfg, dtype=dtype)
        sharded = apply_fsdp(copy.deepcopy(ref), mesh)
        gen = torch.Generator().manual_seed(1)
        idx = torch.randint(0, cfg.vocab_size, (BATCH, cfg.block_size), generator=gen)  # (B, T), same on all ranks
        targets = torch.randint(0, cfg.vocab_size, (BATCH, cfg.block_size), generator=gen)
        # Uneven counts per micro-batch (the loss is normalized by the step's total), equal per rank: the average over
        # ranks assumes each rank's count is the global one over the world size (see step.py).
        targets[[0, BATCH // 2], :5] = -100

        ref_step = accumulated_step(ref, [(idx, targets)], build_optimizer(ref, train_cfg), grad_clip=0.5)
        half = BATCH // WORLD
        local = [(idx[i : i + 2], targets[i : i + 2]) for i in (rank * half, rank * half + 2)]  # 2 micro-batches
        opt = build_optimizer(sharded, train_cfg)
        step = accumulated_step(sharded, local, opt, grad_clip=0.5, no_sync=lambda m=sharded: no_sync(m))

        full = {k: p.full_tensor() for k, p in sharded.named_parameters()}
        diffs = {"params": max((full[k] - p).abs().max().item() for k, p in ref.named_parameters())}
        diffs["grad_norm"] = abs(step.grad_norm - ref_step.grad_norm)
        with torch.no_grad():
            logits = sharded(idx)  # (B, T, vocab): the forward all-gathers each block in turn
        directory = os.path.join(tmp, f"{name}-{dtype}")
        save_full_checkpoint(directory, sharded)
        if rank == 0:
            # load_checkpoint builds fp32; the float64 cases load in their own dtype to be compared exactly.
            loaded = GPT.build(read_config(directory), dtype=dtype)
            state = load_file(os.path.join(directory, WEIGHTS_FILE))
            load_weights(loaded, state, directory)
            with torch.no_grad():
                diffs["checkpoint_logits"] = (loaded(idx) - logits).abs().max().item()
                diffs["reference_logits"] = (ref(idx) - logits).abs().max().item()
            diffs["saved_dtype"] = str(state["tok_emb.weight"].dtype)
        results[f"{name}-{str(dtype).removeprefix('torch.')}"] = diffs
    results["llama-bf16-policy"] = mixed_precision_case(mesh, rank)
    if rank == 0:
        write_results(tmp, results)
    dist.barrier()  # leave together: a rank tearing gloo down while its peer still works can abort (SIGABRT)
    dist.destroy_process_group()


def mixed_precision_case(mesh, rank: int) -> dict:
    """The trainer's policy on GPUs (train/precision.fsdp_mixed_precision): weights gathered in bf16, gradients
    reduce-scattered in fp32, shards (the optimizer's master weights) kept in fp32. Gradients of the whole batch
    against the fp32 model's."""
    from scratchllm.parallel.fsdp import apply_fsdp

    cfg = CONFIGS["llama"]
    torch.manual_seed(0)
    ref = GPT.build(cfg)
    mixed = apply_fsdp(copy.deepcopy(ref), mesh, param_dtype=torch.bfloat16, reduce_dtype=torch.float32)
    gathered = []
    mixed.blocks[0].register_forward_pre_hook(lambda block, args: gathered.append(block.attn.q_proj.weight.dtype))
    gen = torch.Generator().manual_seed(1)
    idx = torch.randint(0, cfg.vocab_size, (BATCH, cfg.block_size), generator=gen)  # (B, T)
    targets = torch.randint(0, cfg.vocab_size, (BATCH, cfg.block_size), generator=gen)
    ref(idx, targets).backward()  # the mean over the whole batch
    half = BATCH // WORLD
    mixed(idx[rank * half : (rank + 1) * half], targets[rank * half : (rank + 1) * half]).backward()  # FSDP averages
    worst = 0.0
    for p, q in zip(mixed.parameters(), ref.parameters()):
        worst = max(worst, ((p.grad.full_tensor() - q.grad).abs().max() / q.grad.abs().max()).item())
    p = next(mixed.parameters())
    return {"gathered": str(gathered[0]), "shard": str(p.dtype), "grad": str(p.grad.dtype), "relative": worst}


@pytest.fixture(scope="module")
def results(tmp_path_factory) -> dict:
    return spawn_workers(worker, tmp_path_factory.mktemp("fsdp"), WORLD)


@pytest.mark.parametrize("case", ["llama-float64", "gpt2-float64", "llama-float32"])
def test_fsdp_step_equals_single_process(results, case):
    tol = 1e-12 if case.endswith("float64") else 1e-5
    assert results[case]["params"] < tol, results[case]
    assert results[case]["grad_norm"] < tol, results[case]
    assert results[case]["reference_logits"] < tol, results[case]


@pytest.mark.parametrize("case", ["llama-float64", "gpt2-float64", "llama-float32"])
def test_gathered_checkpoint_loads_in_one_process(results, case):
    assert results[case]["checkpoint_logits"] == 0.0, results[case]
    assert results[case]["saved_dtype"] == "torch." + case.split("-")[1]


def test_bf16_policy_gathers_in_bf16_and_keeps_fp32_master_weights(results):
    r = results["llama-bf16-policy"]
    assert r["gathered"] == "torch.bfloat16" and r["shard"] == "torch.float32" and r["grad"] == "torch.float32", r
    # bf16 keeps about 3 significant digits: the gradients agree to a few percent of their scale, and differ (the
    # blocks really computed in bf16).
    assert 0 < r["relative"] < 0.05, r


def test_the_trainer_asks_fsdp_for_bf16_gathers_only_on_gpus():
    from scratchllm.train.precision import fsdp_mixed_precision

    cuda, cpu = torch.device("cuda", 0), torch.device("cpu")
    assert fsdp_mixed_precision("bf16", cuda) == (torch.bfloat16, torch.float32)
    assert fsdp_mixed_precision("fp32", cuda) == (None, None)
    assert fsdp_mixed_precision("fp16", cuda) == (None, None)  # its loss scaler works on fp32 weights
    assert fsdp_mixed_precision("bf16", cpu) == (None, None)  # emulated bf16 matmuls on a CPU: slower, not smaller

"""Tensor parallelism on CPU with gloo, 2 processes: the DTensor plan and the hand-written Megatron linears each give
the single-process logits and the single-process AdamW step on the same batch, and agree with each other.

Oracle: the unsharded model, built from the same seed in every process. One spawn runs every case (process start-up
dominates the time); rank 0 writes the largest differences to a JSON file that the tests below read.
"""

from __future__ import annotations

import copy
import os

import pytest
import torch
import torch.distributed as dist
from torch.utils._python_dispatch import TorchDispatchMode

from scratchllm.config import ConfigError
from scratchllm.model import GPT, GPTConfig
from scratchllm.parallel.tensor_parallel import check_tp_degree
from scratchllm.train.config import TrainConfig
from scratchllm.train.optim import build_optimizer

from .spawn import spawn_workers, write_results

WORLD = 2
CONFIGS = {
    # Llama-style: RoPE, RMSNorm, SwiGLU, grouped-query attention (2 kv heads for 4 query heads), untied head.
    "llama": GPTConfig(vocab_size=64, block_size=16, n_layer=2, n_head=4, n_kv_head=2, d_model=32, d_ff=64,
                       tie_embeddings=False),
    # GPT-2-style: learned positions, LayerNorm with biases, GELU MLP, tied head, explicit attention.
    "gpt2": GPTConfig(vocab_size=64, block_size=16, n_layer=2, n_head=2, d_model=32, pos_encoding="learned",
                      norm="layernorm", mlp="gelu", bias=True, attention="explicit"),
}  # fmt: skip
CASES = [("llama", torch.float64), ("gpt2", torch.float64), ("llama", torch.float32)]


def gather_full(p: torch.Tensor, full_shape: torch.Size) -> torch.Tensor:
    """The whole parameter: a DTensor gathered by DTensor, a Megatron slice by all_gather along the split dim."""
    if hasattr(p, "full_tensor"):
        return p.full_tensor()
    if p.shape == full_shape:
        return p
    dim = next(i for i, (a, b) in enumerate(zip(p.shape, full_shape)) if a != b)
    parts = [torch.empty_like(p) for _ in range(dist.get_world_size())]
    dist.all_gather(parts, p.contiguous())
    return torch.cat(parts, dim=dim)


class AllReduceCounter(TorchDispatchMode):
    """Counts the all-reduces dispatched inside it: DTensor's functional ones and ``dist.all_reduce``'s."""

    def __init__(self):
        super().__init__()
        self.count = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.count += str(func) in ("_c10d_functional.all_reduce.default", "c10d.allreduce_.default")
        return func(*args, **(kwargs or {}))


def count_all_reduces(model: GPT, idx: torch.Tensor) -> tuple[int, int]:
    """All-reduces in one forward and in one backward of the loss."""
    with AllReduceCounter() as forward:
        loss = model(idx, idx)
    with AllReduceCounter() as backward:
        loss.backward()
    model.zero_grad(set_to_none=True)
    return forward.count, backward.count


def one_step(model: GPT, idx: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, dict, dict]:
    """Logits, then one AdamW step (the project's optimizer); returns the logits, gradients and updated parameters.

    The rate is 1e-3: Adam's first step moves each weight by about lr * sign(grad), so a weight whose gradient is
    near zero may move by up to lr on a rounding difference; fp32 is compared on gradients and on that scale."""
    logits = model(idx).detach()  # (B, T, vocab), replicated on every rank
    opt = build_optimizer(model, TrainConfig(lr=1e-3))
    model(idx, targets).backward()
    grads = {k: p.grad.detach().clone() for k, p in model.named_parameters()}
    opt.step()
    return logits, grads, dict(model.named_parameters())


def worker(rank: int, port: int, out: str) -> None:
    from torch.distributed.device_mesh import init_device_mesh

    from scratchllm.parallel.megatron import apply_megatron
    from scratchllm.parallel.tensor_parallel import apply_tensor_parallel

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=WORLD)
    mesh = init_device_mesh("cpu", (WORLD,))
    results = {}
    for name, dtype in CASES:
        cfg = CONFIGS[name]
        torch.manual_seed(0)
        ref = GPT.build(cfg, dtype=dtype)
        dtensor_tp = apply_tensor_parallel(copy.deepcopy(ref), mesh)
        megatron_tp = apply_megatron(copy.deepcopy(ref))
        gen = torch.Generator().manual_seed(1)
        idx = torch.randint(0, cfg.vocab_size, (3, cfg.block_size), generator=gen)  # (B, T), the same on all ranks
        targets = torch.randint(0, cfg.vocab_size, (3, cfg.block_size), generator=gen)

        ref_logits, ref_grads, ref_params = one_step(ref, idx, targets)
        diffs = {}
        for label, model in [("dtensor", dtensor_tp), ("megatron", megatron_tp)]:
            diffs[f"{label}_all_reduces"] = count_all_reduces(model, idx)
            logits, grads, params = one_step(model, idx, targets)
            diffs[f"{label}_logits"] = (logits - ref_logits).abs().max().item()
            diffs[f"{label}_grads"] = max(
                (gather_full(grads[k], g.shape) - g).abs().max().item() for k, g in ref_grads.items()
            )
            diffs[f"{label}_params"] = max(
                (gather_full(params[k], p.shape) - p).abs().max().item() for k, p in ref_params.items()
            )
        dt_params, mg_params = dict(dtensor_tp.named_parameters()), dict(megatron_tp.named_parameters())
        diffs["between"] = max(
            (gather_full(dt_params[k], p.shape) - gather_full(mg_params[k], p.shape)).abs().max().item()
            for k, p in ref_params.items()
        )
        results[f"{name}-{str(dtype).removeprefix('torch.')}"] = diffs

    bad = GPT.build(GPTConfig(vocab_size=64, block_size=16, n_layer=1, n_head=3, d_model=48))
    try:
        apply_tensor_parallel(bad, mesh)
        results["bad_degree"] = "no error"
    except ConfigError as e:
        results["bad_degree"] = str(e)
    if rank == 0:
        write_results(out, results)
    dist.barrier()  # leave together (see test_fsdp.py)
    dist.destroy_process_group()


@pytest.fixture(scope="module")
def results(tmp_path_factory) -> dict:
    return spawn_workers(worker, tmp_path_factory.mktemp("tp"), WORLD)


@pytest.mark.parametrize("case", ["llama-float64", "gpt2-float64", "llama-float32"])
@pytest.mark.parametrize("style", ["dtensor", "megatron"])
def test_tp_step_equals_single_process(results, case, style):
    tol = 1e-12 if case.endswith("float64") else 1e-5
    for what in ("logits", "grads", "params"):
        assert results[case][f"{style}_{what}"] < tol, (what, results[case])


@pytest.mark.parametrize("case", ["llama-float64", "gpt2-float64", "llama-float32"])
def test_dtensor_and_megatron_agree(results, case):
    assert results[case]["between"] < (1e-12 if case.endswith("float64") else 1e-5)


@pytest.mark.parametrize("style", ["dtensor", "megatron"])
def test_one_all_reduce_per_sublayer_each_way(results, style):
    n_sublayers = 2 * CONFIGS["llama"].n_layer  # attention and MLP in every block
    assert results["llama-float64"][f"{style}_all_reduces"] == [n_sublayers, n_sublayers]


def test_bad_degree_is_a_clear_error(results):
    message = results["bad_degree"]
    assert "n_head divisible by 2" in message and "n_head = 3" in message


def test_check_tp_degree_names_the_numbers():
    cfg = GPTConfig(vocab_size=64, n_head=4, n_kv_head=2, d_model=32, d_ff=60)
    check_tp_degree(cfg, 2)  # 4 heads, 2 kv heads, 60 hidden units: all divide by 2
    with pytest.raises(ConfigError, match="n_kv_head divisible by 4; got n_kv_head = 2"):
        check_tp_degree(cfg, 4)
    with pytest.raises(ConfigError, match="MLP hidden size divisible by 8; got MLP hidden size = 60"):
        check_tp_degree(GPTConfig(vocab_size=64, n_head=8, d_model=64, d_ff=60), 8)

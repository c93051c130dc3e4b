"""Communication per training step, counted against the formulas: DDP, FSDP, tensor and pipeline parallelism.

For each model (the ``tiny`` preset; ``gpt2``, GPT-2 small, at 64 tokens per sequence) and each group size (2 and 4
gloo processes on the CPU, one thread each), every strategy trains on the same global batch of 8 sequences:
DDP and FSDP through ``accumulated_step`` (2 micro-batches per rank under ``no_sync``, the trainer's step with its
token-count, loss and gradient-norm all-reduces), tensor parallelism (the DTensor plan and the Megatron layers, one
group of all N ranks, the whole batch in 2 micro-batches, forward/backward and an SGD update), and the pipeline
through ``pipeline_step`` (N stages, 8 micro-batches of one sequence, 1F1B). ``CommRecorder`` counts one step after
two warm-up steps; the step time is the better of two further steps without the recorder.

Columns: the bytes the busiest rank sends per step, by kind, under the ring cost model (``comms.sent_bytes``); the
same from the exact formulas of ``comms`` (from the config and the batch shape alone) and their ratio; the bytes the
formula leaves out (the step's scalar all-reduces, a barrier); and the chapter's rule of thumb as the planner
computes it (``plan.estimate_time``: 2 (N-1)/N P for DDP, 3 (N-1)/N P for FSDP, ...) with its ratio. Then the
formulas extrapolated to GPT-2 small and XL on 8 GPUs. Step times come from a shared 2-core machine: indicative only.

Run: `python benchmarks/parallel.py` (about 12 minutes on a busy 2-core machine; `--quick`: the tiny model only).
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import tempfile
import time
from functools import partial
from pathlib import Path

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from scratchllm.model import GPT, GPTConfig
from scratchllm.parallel import comms
from scratchllm.parallel.plan import Cluster, Layout, estimate_time

GLOBAL_BATCH, SEQ_LEN, ACCUM, PP_MICRO = 8, 64, 2, 8
MODELS = {"tiny": GPTConfig.preset("tiny"), "gpt2": GPTConfig.preset("gpt2")}
STRATEGIES = ("DDP", "FSDP", "TP (DTensor)", "TP (Megatron)", "PP (1F1B)")
SHOWN = ("all_reduce", "all_gather", "reduce_scatter", "send")
MB = 1e6


def formula(cfg: GPTConfig, strategy: str, n: int, stage: int) -> list[comms.Volume]:
    """The exact formula for one rank's step of ``strategy`` as this script runs it (fp32)."""
    if strategy == "DDP":
        return comms.ddp_volumes(cfg, n)
    if strategy == "FSDP":
        return comms.fsdp_volumes(cfg, n, micro_batches=ACCUM)
    if strategy.startswith("TP"):
        return comms.tp_volumes(cfg, n, GLOBAL_BATCH // ACCUM, SEQ_LEN, micro_batches=ACCUM)
    return comms.pp_volumes(cfg, n, stage, 1, SEQ_LEN, PP_MICRO) + comms.pp_tied_head_volume(cfg, n)


def rule_of_thumb(cfg: GPTConfig, strategy: str, n: int) -> float:
    """The chapter's formula for the strategy's bytes per step, as ``plan.estimate_time`` charges it (fp32, at 1
    byte/s, so its seconds are bytes). For the pipeline it is the sum over every stage boundary, not one rank's."""
    cluster = Cluster(gpus=n, memory=1e12, flops=1e30, bandwidth_intra=1.0, bandwidth_inter=1.0, gpus_per_node=n)
    if strategy in ("DDP", "FSDP"):
        layout = Layout(dp=n, fsdp=strategy == "FSDP", micro_batch=GLOBAL_BATCH // n // ACCUM)
        return estimate_time(cfg, layout, cluster, SEQ_LEN, GLOBAL_BATCH, mixed_precision=False).data_parallel
    if strategy.startswith("TP"):
        layout = Layout(tp=n, micro_batch=GLOBAL_BATCH // ACCUM)
        return estimate_time(cfg, layout, cluster, SEQ_LEN, GLOBAL_BATCH, mixed_precision=False).tensor_parallel
    layout = Layout(pp=n, micro_batch=GLOBAL_BATCH // PP_MICRO)
    return estimate_time(cfg, layout, cluster, SEQ_LEN, GLOBAL_BATCH, mixed_precision=False).pipeline


def run_strategy(strategy: str, cfg: GPTConfig, mesh, rank: int, n: int):
    """(a no-argument step function, what it trains) for ``strategy`` on this rank."""
    from torch.distributed.device_mesh import init_device_mesh

    from scratchllm.parallel.dist import ParallelConfig, sum_over_ranks
    from scratchllm.parallel.fsdp import apply_fsdp
    from scratchllm.parallel.fsdp import no_sync as fsdp_no_sync
    from scratchllm.parallel.megatron import apply_megatron
    from scratchllm.parallel.parallelize import no_sync, parallelize
    from scratchllm.parallel.pipeline import build_pipeline, pipeline_step
    from scratchllm.parallel.tensor_parallel import apply_tensor_parallel
    from scratchllm.train.step import accumulated_step

    torch.manual_seed(0)
    model = GPT.build(cfg)
    tokens = torch.randint(0, cfg.vocab_size, (GLOBAL_BATCH, SEQ_LEN + 1), generator=torch.Generator().manual_seed(1))
    inputs, targets = tokens[:, :-1], tokens[:, 1:]  # (B, T) each, the same on every rank
    sgd = lambda m: torch.optim.SGD(m.parameters(), lr=1e-4)  # noqa: E731  (the optimizer sends nothing)
    if strategy in ("DDP", "FSDP"):
        share = slice(rank * GLOBAL_BATCH // n, (rank + 1) * GLOBAL_BATCH // n)  # this rank's sequences
        mine = list(zip(inputs[share].chunk(ACCUM), targets[share].chunk(ACCUM)))
        if strategy == "DDP":
            runner = parallelize(model, init_device_mesh("cpu", (1, n, 1), mesh_dim_names=("pp", "dp", "tp")),
                                 ParallelConfig())  # fmt: skip
            sync = no_sync(runner)
        else:
            runner = apply_fsdp(model, mesh)
            sync = partial(fsdp_no_sync, runner)
        opt = sgd(model)
        kw = dict(grad_clip=1.0, no_sync=sync, all_reduce=sum_over_ranks, ranks=n)
        return lambda: accumulated_step(runner, mine, opt, **kw)
    if strategy.startswith("TP"):
        model = apply_tensor_parallel(model, mesh) if "DTensor" in strategy else apply_megatron(model)
        opt = sgd(model)
        pairs = list(zip(inputs.chunk(ACCUM), targets.chunk(ACCUM)))

        def tp_step():
            # What tensor parallelism sends is in the forward and backward passes; the update is local.
            for x, y in pairs:
                (model(x, y, reduction="sum") / targets.numel()).backward()
            opt.step()
            opt.zero_grad(set_to_none=True)

        return tp_step
    pipe = build_pipeline(model, dist.group.WORLD, PP_MICRO, "1f1b")
    opt = sgd(pipe.module)
    return lambda: pipeline_step(pipe, inputs, targets, opt, grad_clip=1.0)


def worker(rank: int, port: int, n: int, names: list[str], out: str) -> None:
    from torch.distributed.device_mesh import init_device_mesh

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=n)
    mesh = init_device_mesh("cpu", (n,))
    rows = []
    for name in names:
        for strategy in STRATEGIES:
            step = run_strategy(strategy, MODELS[name], mesh, rank, n)
            for _ in range(2):  # DDP rebuilds its buckets in its second step, a pipeline exchanges shapes in its first
                step()
            seconds = []
            for _ in range(2):
                dist.barrier()
                start = time.perf_counter()
                step()
                seconds.append(time.perf_counter() - start)
            with comms.CommRecorder() as recorder:
                step()
            counted = recorder.by_kind()
            predicted = comms.by_kind(formula(MODELS[name], strategy, n, rank))
            mine = {
                "counted": {k: v["sent"] for k, v in counted.items()},
                "total": sum(v["sent"] for v in counted.values()),
                "formula": sum(v["sent"] for v in predicted.values()),
                "seconds": min(seconds),
            }
            everyone = [None] * n
            dist.all_gather_object(everyone, mine)
            busiest = max(everyone, key=lambda r: r["total"])
            rows.append({"model": name, "n": n, "strategy": strategy, **busiest,
                         "seconds": max(r["seconds"] for r in everyone)})  # fmt: skip
            del step
    if rank == 0:
        Path(out).write_text(json.dumps(rows))
    dist.destroy_process_group()


def measure(n: int, names: list[str]) -> list[dict]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "rows.json"
        mp.spawn(worker, args=(port, n, names, str(out)), nprocs=n)
        return json.loads(out.read_text())


def print_measured(rows: list[dict]) -> None:
    print("\nMeasured: MB sent per step by the busiest rank (fp32, ring cost model), counted vs the exact formula")
    print("vs the chapter's rule of thumb (plan.estimate_time); global batch 8 x 64 tokens; step time on a shared CPU")
    head = ["model", "N", "strategy", *SHOWN, "counted", "formula", "ratio", "extra B", "rule", "ratio", "step s"]
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    for r in rows:
        rule = rule_of_thumb(MODELS[r["model"]], r["strategy"], r["n"])
        kinds = [f"{r['counted'].get(k, 0) / MB:.3f}" for k in SHOWN]
        cells = [r["model"], str(r["n"]), r["strategy"], *kinds, f"{r['total'] / MB:.3f}", f"{r['formula'] / MB:.3f}",
                 f"{r['total'] / r['formula']:.6f}", f"{r['total'] - r['formula']:.0f}", f"{rule / MB:.3f}",
                 f"{r['total'] / rule:.3f}", f"{r['seconds']:.2f}"]  # fmt: skip
        print("| " + " | ".join(cells) + " |")


def print_extrapolation(n: int = 8, per_gpu: int = 8, seq_len: int = 1024) -> None:
    """The formulas at scale: GPT-2 small and XL on 8 GPUs, a global batch of 64 x 1024 tokens, mixed precision as
    this project runs it on GPUs: bf16 weights gathered and activations sent (2 bytes), fp32 gradients reduced
    (4 bytes: autocast keeps fp32 parameters, so DDP's gradients are fp32; FSDP's reduce_dtype is fp32)."""
    bandwidths = {"NVLink 200 GB/s": 200e9, "network 12.5 GB/s": 12.5e9}
    batch = n * per_gpu
    print(f"\nExtrapolated from the formulas: N = {n}, global batch {batch} x {seq_len} tokens, bf16 weights and")
    print(f"activations, fp32 gradients. DDP/FSDP: {per_gpu} sequences per GPU; TP: one group of {n} on the whole")
    print(f"batch; PP: {n} stages, {n} micro-batches of {per_gpu}. Busiest rank, no overlap with compute.")
    head = ["model", "strategy", "GB sent per GPU per step", *bandwidths]
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    for name in ("gpt2", "gpt2-xl"):
        cfg = GPTConfig.preset(name)
        cases = {
            "DDP": comms.ddp_volumes(cfg, n, itemsize=4),
            "FSDP": comms.fsdp_volumes(cfg, n, itemsize=2, grad_itemsize=4),
            # On paper when the heads do not split n ways (GPT-2's 12 and 25 do not split 8 ways): the bytes are
            # what the formula says a model of this width and depth would send.
            "TP": comms.tp_volumes(cfg, n, batch, seq_len, itemsize=2),
            # A middle stage (it sends both ways), and the tied head's fp32 gradient summed over the pipeline.
            "PP": comms.pp_volumes(cfg, n, 1, per_gpu, seq_len, n, itemsize=2) + comms.pp_tied_head_volume(cfg, n, 4),
        }
        for strategy, volumes in cases.items():
            sent = sum(v.sent for v in volumes)
            times = [f"{sent / bw * 1e3:.1f} ms" for bw in bandwidths.values()]
            note = f" (on paper: {cfg.n_head} heads)" if strategy == "TP" and cfg.n_head % n else ""
            print("| " + " | ".join([name, strategy + note, f"{sent / 1e9:.3f}", *times]) + " |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="the tiny model only")
    args = parser.parse_args()
    print(__doc__.strip().splitlines()[0])
    names = ["tiny"] if args.quick else ["tiny", "gpt2"]
    rows = [row for n in (2, 4) for row in measure(n, names)]
    print_measured(rows)
    print_extrapolation()


if __name__ == "__main__":
    main()

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
computes it (``plan.estimate_time``: 2 (N-1)/N P for DDP, (2m+1) (N-1)/N P for FSDP with m micro-batches, ...)
with its ratio (the JSON adds, for FSDP, the ratio to the first planner's 3 (N-1)/N P). Then the formulas
extrapolated to GPT-2 small and XL on 8 GPUs (``comm_volume.volumes``, the book experiment's). Step times come from
a shared 2-core machine: indicative only.

Run: `python benchmarks/parallel.py [--quick] [--json PATH]` (about 12 minutes on a busy 2-core machine; `--quick`:
the tiny model only, the same strategies, group sizes and steps). ``--json PATH`` also writes every number printed,
with the settings, the machine's load average and the command line, to PATH, and the largest measured model's rows as
a Markdown table beside it (PATH with suffix ``.md``).
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import socket
import sys
import tempfile
import time
from functools import partial
from pathlib import Path

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from scratchllm.book.experiments.comm_volume import volumes
from scratchllm.fileio import atomic_write_text
from scratchllm.model import GPT, GPTConfig
from scratchllm.parallel import comms
from scratchllm.parallel.plan import Cluster, Layout, estimate_time

GLOBAL_BATCH, SEQ_LEN, ACCUM, PP_MICRO = 8, 64, 2, 8
MODELS = {"tiny": GPTConfig.preset("tiny"), "gpt2": GPTConfig.preset("gpt2")}
STRATEGIES = ("DDP", "FSDP", "TP (DTensor)", "TP (Megatron)", "PP (1F1B)")
SLUGS = dict(zip(STRATEGIES, ("ddp", "fsdp", "tp-dtensor", "tp-megatron", "pp-1f1b")))  # names in the JSON
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


def enrich(r: dict) -> dict:
    """A measured row with its name, its MB by kind and its ratios to the formula and to the rule of thumb."""
    rule = rule_of_thumb(MODELS[r["model"]], r["strategy"], r["n"])
    row = {"name": f"n{r['n']}-{SLUGS[r['strategy']]}", **r, "mb": {k: r["counted"].get(k, 0) / MB for k in SHOWN},
           "counted_mb": r["total"] / MB, "formula_mb": r["formula"] / MB, "ratio_formula": r["total"] / r["formula"],
           "extra_bytes": r["total"] - r["formula"], "rule_mb": rule / MB, "ratio_rule": r["total"] / rule}  # fmt: skip
    if r["strategy"] == "FSDP":  # the first planner's rule, 3 (N-1)/N P, where the planner now charges 2m+1 passes
        row["ratio_three_pass_rule"] = r["total"] / (rule * 3 / (2 * ACCUM + 1))
    return row


def by_model(rows: list[dict]) -> list[dict]:
    """The rows grouped by model, in the order measured, with what the chapter quotes of each model's pipeline at
    N = 2: the activation crossing the cut each way, and the all-reduce of the tied head (with the step's scalars)."""
    out = []
    for name in dict.fromkeys(r["model"] for r in rows):
        cfg, mine = MODELS[name], [r for r in rows if r["model"] == name]
        pp = next(r for r in mine if r["n"] == 2 and r["strategy"].startswith("PP"))
        cut = {"activation_mb_each_way": pp["mb"]["send"], "activations_mb_both_ways": 2 * pp["mb"]["send"],
               "all_reduce_mb": pp["mb"]["all_reduce"],
               "all_reduce_over_activations": pp["mb"]["all_reduce"] / (2 * pp["mb"]["send"])}  # fmt: skip
        out.append({"model": name, "vocab_size": cfg.vocab_size, "d_model": cfg.d_model,
                    "tied_head": cfg.tie_embeddings, "pipeline_n2": cut, "rows": mine})  # fmt: skip
    return out


def print_measured(rows: list[dict]) -> None:
    print("\nMeasured: MB sent per step by the busiest rank (fp32, ring cost model), counted vs the exact formula")
    print("vs the chapter's rule of thumb (plan.estimate_time); global batch 8 x 64 tokens; step time on a shared CPU")
    head = ["model", "N", "strategy", *SHOWN, "counted", "formula", "ratio", "extra B", "rule", "ratio", "step s"]
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    for r in rows:
        mb = [f"{x:.3f}" for x in (*(r["mb"][k] for k in SHOWN), r["counted_mb"], r["formula_mb"])]
        cells = [r["model"], str(r["n"]), r["strategy"], *mb, f"{r['ratio_formula']:.6f}", f"{r['extra_bytes']:.0f}",
                 f"{r['rule_mb']:.3f}", f"{r['ratio_rule']:.3f}", f"{r['seconds']:.2f}"]  # fmt: skip
        print("| " + " | ".join(cells) + " |")


def extrapolate(n: int = 8, per_gpu: int = 8, seq_len: int = 1024) -> dict:
    """The formulas at scale: GPT-2 small and XL on 8 GPUs, a global batch of 64 x 1024 tokens, mixed precision as
    this project runs it on GPUs: bf16 weights gathered and activations sent (2 bytes), fp32 gradients reduced
    (4 bytes: autocast keeps fp32 parameters, so DDP's gradients are fp32; FSDP's reduce_dtype is fp32). TP is on
    paper when the heads do not split n ways (GPT-2's 12 and 25 do not split 8 ways): the bytes are what the formula
    says a model of this width and depth would send. PP is a middle stage (it sends both ways), plus the tied head's
    fp32 gradient summed over the pipeline."""
    bandwidths = {"nvlink": {"label": "NVLink 200 GB/s", "bytes_per_s": 200e9},
                  "network": {"label": "network 12.5 GB/s", "bytes_per_s": 12.5e9}}  # fmt: skip
    rows = []
    for name in ("gpt2", "gpt2-xl"):
        cfg = GPTConfig.preset(name)
        for strategy, vols in volumes(cfg, n, per_gpu, seq_len).items():
            sent = sum(v.sent for v in vols)
            rows.append({"name": f"{name}-{strategy.lower()}", "model": name, "strategy": strategy,
                         "on_paper": strategy == "TP" and cfg.n_head % n != 0, "n_head": cfg.n_head, "gb": sent / 1e9,
                         "ms": {k: sent / bw["bytes_per_s"] * 1e3 for k, bw in bandwidths.items()}})  # fmt: skip
    return {"n": n, "per_gpu": per_gpu, "seq_len": seq_len, "global_batch": n * per_gpu,
            "bandwidths": bandwidths, "rows": rows}  # fmt: skip


def print_extrapolation(x: dict) -> None:
    n, per_gpu = x["n"], x["per_gpu"]
    print(f"\nExtrapolated from the formulas: N = {n}, global batch {x['global_batch']} x {x['seq_len']} tokens, bf16 "
          "weights and")  # fmt: skip
    print(f"activations, fp32 gradients. DDP/FSDP: {per_gpu} sequences per GPU; TP: one group of {n} on the whole")
    print(f"batch; PP: {n} stages, {n} micro-batches of {per_gpu}. Busiest rank, no overlap with compute.")
    head = ["model", "strategy", "GB sent per GPU per step", *(bw["label"] for bw in x["bandwidths"].values())]
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    for r in x["rows"]:
        note = f" (on paper: {r['n_head']} heads)" if r["on_paper"] else ""
        times = [f"{ms:.1f} ms" for ms in r["ms"].values()]
        print("| " + " | ".join([r["model"], r["strategy"] + note, f"{r['gb']:.3f}", *times]) + " |")


def markdown(model: dict) -> str:
    """One model's measured rows as the chapter's table."""
    lines = ["| N | strategy | all-reduce | all-gather | reduce-scatter | send | counted / formula | counted / rule "
             "| step s |", "|---|---|---:|---:|---:|---:|---:|---:|---:|"]  # fmt: skip
    for r in model["rows"]:
        mb = [f"{r['mb'][k]:.3f}" if r["mb"][k] >= 5e-4 else "0" for k in SHOWN]  # "0": scalars only, if anything
        cells = [str(r["n"]), r["strategy"], *mb, f"{r['ratio_formula']:.6f}", f"{r['ratio_rule']:.3f}",
                 f"{r['seconds']:.2f}"]  # fmt: skip
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def write_json(path: str, result: dict) -> None:
    atomic_write_text(path, json.dumps(result, indent=2) + "\n")
    atomic_write_text(Path(path).with_suffix(".md"), markdown(result["main"]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="the tiny model only")
    parser.add_argument("--json", metavar="PATH", help="write the results as JSON here, and a Markdown table beside")
    args = parser.parse_args()
    load = list(os.getloadavg())
    print(__doc__.strip().splitlines()[0])
    names = ["tiny"] if args.quick else ["tiny", "gpt2"]
    groups = (2, 4)
    rows = [enrich(row) for n in groups for row in measure(n, names)]
    print_measured(rows)
    scale = extrapolate()
    print_extrapolation(scale)
    if args.json:
        models = by_model(rows)
        write_json(args.json, {
            "command": shlex.join(["python", "benchmarks/parallel.py", *sys.argv[1:]]),
            "settings": {"quick": args.quick, "models": names, "group_sizes": list(groups),
                         "global_batch": GLOBAL_BATCH, "seq_len": SEQ_LEN, "accumulation": ACCUM,
                         "pp_micro_batches": PP_MICRO, "dtype": "fp32", "threads_per_process": 1,
                         "cpus": os.cpu_count()},
            "load_average": load,
            "extra_bytes_max": max(r["extra_bytes"] for r in rows),
            "ratio_formula_min": min(r["ratio_formula"] for r in rows),
            "ratio_formula_max": max(r["ratio_formula"] for r in rows),
            "main": models[-1], "models": models, "extrapolation": scale,
        })  # fmt: skip


if __name__ == "__main__":
    main()

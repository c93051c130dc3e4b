"""`scratchllm plan`: choose a data x tensor x pipeline layout for a cluster (thin call into scratchllm.parallel.plan).

    scratchllm plan --model gpt2-xl --gpus 64 --gpu-memory 80 --bandwidth-intra 300 --bandwidth-inter 25 \\
        --gpus-per-node 8 --flops 989e12 --seq-len 2048 --global-batch 512

prints every layout's memory per device and step time, best first, and recommends the first. With ``--micro-batch``
every layout uses that micro-batch; with ``--gpus 1`` it is the gradient-accumulation plan for one small device.
"""

from __future__ import annotations

from dataclasses import replace

from ..model import GPTConfig
from ..model.config import PRESETS, num_params
from ..parallel.plan import GIB, Cluster, estimate_memory, estimate_time, plan
from ..train.fit import MARGIN
from .common import UsageError

GB = 1e9  # bandwidths are quoted in decimal GB/s, memory in GiB as the tools report it


def _positive(args, names: list[str]) -> None:
    for name in names:
        value = getattr(args, name)
        if value is not None and value <= 0:
            raise UsageError(f"--{name.replace('_', '-')} must be positive; got {value}")


def cmd_plan(args) -> int:
    if not 0 < args.mfu <= 1:
        raise UsageError(f"--mfu must be in (0, 1], a fraction of the peak; got {args.mfu}")
    _positive(args, ["top", "gpus", "gpu_memory", "bandwidth_intra", "bandwidth_inter", "gpus_per_node", "flops",
                     "seq_len", "global_batch", "micro_batch"])  # fmt: skip
    if args.gpus % args.gpus_per_node and args.gpus > args.gpus_per_node:
        raise UsageError(f"--gpus {args.gpus} is not a whole number of nodes of {args.gpus_per_node} GPUs")
    if args.micro_batch and args.global_batch % args.micro_batch:
        raise UsageError(f"--global-batch {args.global_batch} is not divisible by --micro-batch {args.micro_batch}")
    cfg = GPTConfig.preset(args.model)
    seq_len = args.seq_len or cfg.block_size
    note = ""
    if seq_len > cfg.block_size:  # planning a longer context than the preset's: the model is that one, resized
        note = f" (context extended from the preset's {cfg.block_size})"
        cfg = replace(cfg, block_size=seq_len)
    cluster = Cluster(
        gpus=args.gpus, memory=args.gpu_memory * GIB, flops=args.flops, bandwidth_intra=args.bandwidth_intra * GB,
        bandwidth_inter=args.bandwidth_inter * GB, gpus_per_node=min(args.gpus_per_node, args.gpus), mfu=args.mfu,
    )  # fmt: skip
    mixed = args.dtype == "bf16"
    candidates = plan(cfg, cluster, seq_len, args.global_batch, mixed)
    if args.micro_batch:
        candidates = [_at_micro_batch(c, args.micro_batch, cfg, cluster, seq_len, args) for c in candidates]
        candidates = [c for c in candidates if c is not None]
        candidates.sort(key=lambda c: (not c.fits, c.time.total))
    print(f"{args.model}: {num_params(cfg) / 1e9:.2f} B parameters, {seq_len} tokens{note} x {args.global_batch} "
          f"sequences per step, {args.dtype}, on {args.gpus} GPUs of {args.gpu_memory:g} GiB "
          f"(usable {1 - MARGIN:.0%}), "
          f"MFU {args.mfu:.0%} assumed")  # fmt: skip
    print(f"\n{'layout (dp x tp x pp)':22} {'AC':3} {'micro':>5} {'accum':>5} {'params':>7} {'grads':>7} "
          f"{'optim':>7} {'activ':>7} {'total GiB':>9}  {'compute':>8} {'dp comm':>8} {'tp comm':>8} "
          f"{'pp comm':>8} {'step s':>7}  fits")  # fmt: skip
    for c in candidates[: args.top]:
        m, t = c.memory, c.time
        print(f"{c.layout.name:22} {'yes' if c.layout.checkpointing else 'no':3} {c.layout.micro_batch:5d} "
              f"{c.accumulation:5d} {m.params / GIB:7.1f} {m.grads / GIB:7.1f} {m.optimizer / GIB:7.1f} "
              f"{m.activations / GIB:7.1f} {m.total / GIB:9.1f}  {t.compute:8.3f} {t.data_parallel:8.3f} "
              f"{t.tensor_parallel:8.3f} {t.pipeline:8.3f} {t.total:7.3f}  {'yes' if c.fits else 'NO'}")  # fmt: skip
    if len(candidates) > args.top:
        print(f"... and {len(candidates) - args.top} more (--top N shows more)")
    best = candidates[0] if candidates else None
    if best is None or not best.fits:
        print("\nno layout fits: add GPUs, shorten --seq-len, or use a smaller model")
        return 1
    lay = best.layout
    print(f"\nrecommended: {lay.name} ({lay.dp} data-parallel x {lay.tp} tensor-parallel x {lay.pp} pipeline stages), "
          f"activation checkpointing {'on' if lay.checkpointing else 'off'}, micro-batch {lay.micro_batch} x "
          f"{best.accumulation} accumulation steps; {best.memory.total / GIB:.1f} GiB per GPU, "
          f"{best.time.total:.2f} s per step")  # fmt: skip
    return 0


def _at_micro_batch(c, micro_batch, cfg, cluster, seq_len, args):
    """The candidate's layout at the micro-batch the user asked for, or None where it does not divide the batch."""
    per_replica = args.global_batch // c.layout.dp
    if per_replica % micro_batch:
        return None
    layout = replace(c.layout, micro_batch=micro_batch)
    memory = estimate_memory(cfg, layout, seq_len, args.dtype == "bf16")
    time = estimate_time(cfg, layout, cluster, seq_len, args.global_batch, args.dtype == "bf16")
    return replace(c, layout=layout, memory=memory, time=time, fits=memory.total <= cluster.memory * (1 - MARGIN),
                   accumulation=per_replica // micro_batch)  # fmt: skip


def add_parsers(stages) -> None:
    p = stages.add_parser(
        "plan",
        help="plan a 3D-parallel layout for a cluster",
        description="Estimate memory per GPU and step time of every data x tensor x pipeline layout (DDP or FSDP, "
        "with and without activation checkpointing) and recommend the fastest that fits. Equations: "
        "scratchllm/parallel/plan.py.",
    )
    p.add_argument("--model", default="gpt2-xl", choices=list(PRESETS), help="model preset (default gpt2-xl)")
    p.add_argument("--gpus", type=int, default=8, help="number of GPUs (default 8)")
    p.add_argument("--gpu-memory", type=float, default=80, help="memory per GPU in GiB (default 80)")
    p.add_argument("--bandwidth-intra", type=float, default=300, help="GB/s per GPU inside a node (default 300)")
    p.add_argument("--bandwidth-inter", type=float, default=25, help="GB/s per GPU across nodes (default 25)")
    p.add_argument("--gpus-per-node", type=int, default=8, help="GPUs per node; TP stays inside one (default 8)")
    p.add_argument("--flops", type=float, default=989e12, help="peak FLOP/s per GPU (default 989e12, H100 bf16)")
    p.add_argument("--mfu", type=float, default=0.4, help="fraction of peak the model reaches (default 0.4)")
    p.add_argument("--seq-len", type=int, help="tokens per sequence (default: the model's context; longer extends it)")
    p.add_argument("--global-batch", type=int, default=512, help="sequences per optimizer step (default 512)")
    p.add_argument("--micro-batch", type=int, help="sequences per forward/backward (default: the best that fits)")
    p.add_argument("--dtype", choices=["bf16", "fp32"], default="bf16", help="training precision (default bf16)")
    p.add_argument("--top", type=int, default=15, help="rows of the table to show (default 15)")
    p.set_defaults(func=cmd_plan)

"""LoRA against full finetuning, side by side: trainable parameters, gradient and optimizer-state memory, peak RSS,
and step time, with the ratio, on the `tiny` and `gpt2` presets.

Each (preset, method) runs in a fresh process (so its peak resident memory is its own): the model is built, LoRA
applied with the recipe of configs/sft/lora.toml (rank 8 on every attention and MLP projection) or not, AdamW built
by the trainer's ``build_optimizer``, then one warm-up step and ``STEPS`` timed steps of random tokens through the
trainer's ``accumulated_step``. Tensor bytes are counted exactly (parameters, gradients after backward, AdamW's two
moments); step time is the median. Run: `python benchmarks/lora.py [--quick] [--json PATH] [--presets tiny gpt2]
[--steps 5]`. ``--quick`` times 2 steps instead of 5 (same presets, shapes and code). ``--json PATH`` also writes
every number printed, with the settings and the command line, to PATH, and the tables as Markdown beside it (PATH with
suffix ``.md``).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import resource
import shlex
import statistics
import sys
import time
from pathlib import Path

import torch

from scratchllm.config import load_config
from scratchllm.fileio import atomic_write_text
from scratchllm.finetune.config import FinetuneConfig
from scratchllm.finetune.lora import apply_lora
from scratchllm.model import GPTConfig
from scratchllm.model.gpt import GPT
from scratchllm.train.optim import build_optimizer
from scratchllm.train.step import accumulated_step

SHAPES = {"tiny": (16, 256), "gpt2": (2, 256)}  # (sequences, tokens) per step
STEPS, QUICK_STEPS = 5, 2
ROWS = [  # (label, key, format) of the table
    ("trainable parameters", "trainable", "{:,.0f}"),
    ("parameters in all", "total", "{:,.0f}"),
    ("gradient memory (MiB)", "grad_bytes", "{:,.1f}"),
    ("AdamW state (MiB)", "optim_bytes", "{:,.1f}"),
    ("weights + gradients + AdamW (MiB)", "train_bytes", "{:,.1f}"),
    ("peak RSS of the process (MiB)", "peak_rss", "{:,.0f}"),
    ("step time (s, median)", "step_s", "{:.3f}"),
]
MIB = {"param_bytes": "param_mib", "grad_bytes": "grad_mib", "optim_bytes": "optim_mib",
       "train_bytes": "train_mib", "peak_rss": "peak_rss_mib"}  # fmt: skip


def _bytes(tensors) -> int:
    return sum(t.numel() * t.element_size() for t in tensors)


def measure(preset: str, method: str, steps: int) -> dict:
    torch.manual_seed(0)
    cfg = load_config(FinetuneConfig, "configs/sft/lora.toml", [f"method={method}"])
    model = GPT.build(GPTConfig.preset(preset))
    if method == "lora":
        apply_lora(model, cfg.lora)
    optimizer = build_optimizer(model, cfg.train_config(steps + 1))
    batch, seq = SHAPES[preset]
    idx = torch.randint(0, model.config.vocab_size, (batch, seq + 1))
    micro = [(idx[:, :-1], idx[:, 1:])]
    times, seen = [], {}

    def count_grads(opt, *_):  # gradients live between backward and zero_grad: count them as the update begins
        seen["grads"] = _bytes(p.grad for p in model.parameters() if p.grad is not None)

    optimizer.register_step_pre_hook(count_grads)
    for step in range(steps + 1):
        t0 = time.perf_counter()
        accumulated_step(model, micro, optimizer)
        if step:
            times.append(time.perf_counter() - t0)
    grad_bytes = seen["grads"]
    params = list(model.parameters())
    return {
        "trainable": sum(p.numel() for p in params if p.requires_grad),
        "total": sum(p.numel() for p in params),
        "grad_bytes": grad_bytes,
        "optim_bytes": _bytes(t for s in optimizer.state.values() for t in s.values() if torch.is_tensor(t)),
        "param_bytes": _bytes(params),
        "peak_rss": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
        "step_s": statistics.median(times),
    }


def compare(preset: str, steps: int, ctx) -> dict:
    """Full finetuning and LoRA on one preset, each measured in a fresh process."""
    results = {}
    for method in ("full", "lora"):
        with ctx.Pool(1) as pool:
            r = pool.apply(measure, (preset, method, steps))
        r["train_bytes"] = r["param_bytes"] + r["grad_bytes"] + r["optim_bytes"]
        results[method] = r
    return results


def cells(results: dict) -> list[tuple[str, str, str, str]]:
    """(label, full, LoRA, LoRA / full) of each table row, formatted."""
    out = []
    for label, key, fmt in ROWS:
        full, lora = results["full"][key], results["lora"][key]
        scale = 2**20 if key in MIB else 1
        out.append((label, fmt.format(full / scale), fmt.format(lora / scale), f"{lora / full:.3f}"))
    return out


def print_table(preset: str, results: dict) -> None:
    batch, seq = SHAPES[preset]
    print(f"\n{preset} ({results['full']['total'] / 1e6:.1f}M parameters), {batch} x {seq} tokens a step, "
          f"{torch.get_num_threads()} threads")  # fmt: skip
    print(f"| {'':36} | {'full':>14} | {'LoRA r=8':>14} | {'LoRA / full':>11} |")
    print(f"|{'-' * 38}|{'-' * 16}|{'-' * 16}|{'-' * 13}|")
    for label, full, lora, ratio in cells(results):
        print(f"| {label:36} | {full:>14} | {lora:>14} | {ratio:>11} |")


def markdown(preset: str, results: dict) -> str:
    batch, seq = SHAPES[preset]
    lines = [f"| `{preset}` ({results['full']['total'] / 1e6:.1f}M parameters), {batch} x {seq} tokens a step "
             "| full | LoRA r=8 | LoRA / full |", "|---|---:|---:|---:|"]  # fmt: skip
    lines += [f"| {' | '.join(row)} |" for row in cells(results)]
    return "\n".join(lines) + "\n"


def preset_json(preset: str, results: dict) -> dict:
    """One preset's numbers: each method's counts (bytes and MiB), the ratios LoRA / full, the step-time speed-up."""
    methods = {m: r | {mib: r[key] / 2**20 for key, mib in MIB.items()} for m, r in results.items()}
    speedup = results["full"]["step_s"] / results["lora"]["step_s"]
    speed = f"{speedup:.2f}x faster" if speedup >= 1 else f"{1 / speedup:.2f}x slower"
    batch, seq = SHAPES[preset]
    return {
        "preset": preset, "batch": batch, "seq": seq, "tokens_per_step": batch * seq, **methods,
        "ratio": {key: results["lora"][key] / results["full"][key] for key in results["full"]},
        "lora_speedup": speedup, "lora_speed": speed,
    }  # fmt: skip


def write_json(path: str, result: dict, table: str) -> None:
    atomic_write_text(path, json.dumps(result, indent=2) + "\n")
    atomic_write_text(Path(path).with_suffix(".md"), table)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--presets", nargs="+", default=["tiny", "gpt2"], choices=sorted(SHAPES))
    parser.add_argument("--steps", type=int, help=f"timed steps per run, after one warm-up step (default: {STEPS}, "
                        f"{QUICK_STEPS} with --quick)")  # fmt: skip
    parser.add_argument("--quick", action="store_true", help=f"{QUICK_STEPS} timed steps")
    parser.add_argument("--json", metavar="PATH", help="write the results as JSON here, and Markdown tables beside")
    args = parser.parse_args()
    steps = args.steps or (QUICK_STEPS if args.quick else STEPS)
    ctx = mp.get_context("spawn")
    presets = []
    for preset in args.presets:
        results = compare(preset, steps, ctx)
        print_table(preset, results)
        presets.append((preset, results))
    if args.json:
        settings = {"presets": args.presets, "steps": steps, "quick": args.quick, "threads": torch.get_num_threads(),
                    "lora_config": "configs/sft/lora.toml"}  # fmt: skip
        result = {"command": shlex.join(["python", "benchmarks/lora.py", *sys.argv[1:]]), "settings": settings,
                  "presets": [preset_json(p, r) for p, r in presets]}  # fmt: skip
        write_json(args.json, result, "\n".join(markdown(p, r) for p, r in presets))


if __name__ == "__main__":
    main()

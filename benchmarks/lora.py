"""LoRA against full finetuning, side by side: trainable parameters, gradient and optimizer-state memory, peak RSS,
and step time, with the ratio, on the `tiny` and `gpt2` presets.

Each (preset, method) runs in a fresh process (so its peak resident memory is its own): the model is built, LoRA
applied with the recipe of configs/sft/lora.toml (rank 8 on every attention and MLP projection) or not, AdamW built
by the trainer's ``build_optimizer``, then one warm-up step and ``STEPS`` timed steps of random tokens through the
trainer's ``accumulated_step``. Tensor bytes are counted exactly (parameters, gradients after backward, AdamW's two
moments); step time is the median. Run: `python benchmarks/lora.py [--presets tiny gpt2] [--steps 5]`.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import resource
import statistics
import time

import torch

from scratchllm.config import load_config
from scratchllm.finetune.config import FinetuneConfig
from scratchllm.finetune.lora import apply_lora
from scratchllm.model import GPTConfig
from scratchllm.model.gpt import GPT
from scratchllm.train.optim import build_optimizer
from scratchllm.train.step import accumulated_step

SHAPES = {"tiny": (16, 256), "gpt2": (2, 256)}  # (sequences, tokens) per step


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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--presets", nargs="+", default=["tiny", "gpt2"], choices=sorted(SHAPES))
    parser.add_argument("--steps", type=int, default=5, help="timed steps per run (after one warm-up step)")
    args = parser.parse_args()
    ctx = mp.get_context("spawn")
    rows = [
        ("trainable parameters", "trainable", "{:,.0f}"),
        ("parameters in all", "total", "{:,.0f}"),
        ("gradient memory (MiB)", "grad_bytes", "{:,.1f}"),
        ("AdamW state (MiB)", "optim_bytes", "{:,.1f}"),
        ("weights + gradients + AdamW (MiB)", "train_bytes", "{:,.1f}"),
        ("peak RSS of the process (MiB)", "peak_rss", "{:,.0f}"),
        ("step time (s, median)", "step_s", "{:.3f}"),
    ]
    mib = {"grad_bytes", "optim_bytes", "train_bytes", "peak_rss"}
    for preset in args.presets:
        results = {}
        for method in ("full", "lora"):
            with ctx.Pool(1) as pool:
                r = pool.apply(measure, (preset, method, args.steps))
            r["train_bytes"] = r["param_bytes"] + r["grad_bytes"] + r["optim_bytes"]
            results[method] = r
        batch, seq = SHAPES[preset]
        print(f"\n{preset} ({results['full']['total'] / 1e6:.1f}M parameters), {batch} x {seq} tokens a step, "
              f"{torch.get_num_threads()} threads")  # fmt: skip
        print(f"| {'':36} | {'full':>14} | {'LoRA r=8':>14} | {'LoRA / full':>11} |")
        print(f"|{'-' * 38}|{'-' * 16}|{'-' * 16}|{'-' * 13}|")
        for label, key, fmt in rows:
            full, lora = results["full"][key], results["lora"][key]
            scale = 2**20 if key in mib else 1
            print(f"| {label:36} | {fmt.format(full / scale):>14} | {fmt.format(lora / scale):>14} | "
                  f"{lora / full:>11.3f} |")  # fmt: skip


if __name__ == "__main__":
    main()

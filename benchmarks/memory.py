"""Memory-efficient training configurations, measured: peak memory and tokens/s of one forward+backward step.

Each configuration runs in its own process (so one cannot inherit another's freed-but-kept memory) on the same
model shape, batch and data, fp32, and is compared with the baseline: SDPA attention with the full logits. The issue's
target: activation checkpointing plus the chunked loss cut the peak of the gpt2 preset at batch 8, context 1024 by
at least 3x. Run: `python benchmarks/memory.py` (gpt2, 8 x 1024: several minutes on 2 cores) or `--quick`.

On the CPU the measure is the process's peak resident memory. glibc keeps freed blocks in its heap once its dynamic
mmap threshold has grown (up to 32 MB), so after a warm-up step the resident size includes gigabytes of dead
tensors and hides what a configuration really needs. Every configuration therefore runs with
``MALLOC_MMAP_THRESHOLD_=131072``: large tensors are mapped and unmapped, and the resident size follows live memory.
It costs some speed (more system calls), the same for every configuration.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from dataclasses import replace

CONFIGS = {
    "explicit attention, full logits": {"attention": "explicit"},
    "SDPA, full logits (baseline)": {},
    "SDPA + chunked loss": {"loss_chunk_size": 1024},
    "SDPA + activation checkpointing": {"activation_checkpointing": True},
    "SDPA + checkpointing + chunked loss": {"activation_checkpointing": True, "loss_chunk_size": 1024},
}
BASELINE = "SDPA, full logits (baseline)"


def measure_one(preset: str, batch: int, seq: int, switches: dict) -> dict:
    """Build the model, then time and measure one training step (forward + backward) after a warm-up step."""
    import torch

    from scratchllm.model import GPT, GPTConfig
    from scratchllm.train.memory import current_memory_bytes, peak_memory_bytes, reset_peak_memory

    torch.manual_seed(0)
    cfg = replace(GPTConfig.preset(preset), **switches)
    model = GPT.build(cfg).train()
    idx = torch.randint(0, cfg.vocab_size, (batch, seq))
    targets = torch.randint(0, cfg.vocab_size, (batch, seq))

    def step() -> float:
        model.zero_grad(set_to_none=True)
        loss = model(idx, targets)
        loss.backward()
        return loss.item()

    step()  # warm-up: gradient buffers exist from here on, as in a real training loop
    model.zero_grad(set_to_none=True)
    before = current_memory_bytes()
    reset_peak_memory()
    start = time.perf_counter()
    loss = step()
    seconds = time.perf_counter() - start
    peak = peak_memory_bytes()
    grads = {n: p.grad for n, p in model.named_parameters()}
    norm = torch.sqrt(sum((g.double() ** 2).sum() for g in grads.values())).item()
    return {"peak_gib": peak / 2**30, "before_gib": before / 2**30, "seconds": seconds,
            "tokens_per_s": batch * seq / seconds, "loss": loss, "grad_norm": norm}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="gpt2 at batch 2, context 256 (a smoke run)")
    parser.add_argument("--preset", default="gpt2")
    parser.add_argument("--one", help=argparse.SUPPRESS)  # internal: measure one configuration, print JSON
    args = parser.parse_args()
    batch, seq = (2, 256) if args.quick else (8, 1024)
    if args.one:
        print(json.dumps(measure_one(args.preset, batch, seq, CONFIGS[args.one])))
        return
    print(f"{args.preset}, batch {batch}, context {seq}, fp32, one forward+backward step, CPU peak RSS\n")
    results = {}
    for name in CONFIGS:
        cmd = [sys.executable, __file__, "--one", name, "--preset", args.preset] + (["--quick"] if args.quick else [])
        env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "131072"}
        out = subprocess.run(cmd, capture_output=True, text=True, check=True, env=env)
        results[name] = r = json.loads(out.stdout.strip().splitlines()[-1])
        print(f"  {name:38s} peak {r['peak_gib']:6.2f} GiB   {r['tokens_per_s']:8.0f} tok/s   "
              f"loss {r['loss']:.6f}  grad norm {r['grad_norm']:.6f}", flush=True)  # fmt: skip
    base = results[BASELINE]
    print("\nagainst the baseline (SDPA, full logits):")
    for name, r in results.items():
        print(f"  {name:38s} memory {base['peak_gib'] / r['peak_gib']:5.2f}x less   "
              f"speed {r['tokens_per_s'] / base['tokens_per_s']:5.2f}x")  # fmt: skip
    both = results["SDPA + checkpointing + chunked loss"]
    print(f"\ncheckpointing + chunked loss: {base['peak_gib'] / both['peak_gib']:.2f}x less peak memory (target >= 3x)")


if __name__ == "__main__":
    main()

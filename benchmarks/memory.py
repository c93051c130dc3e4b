"""Memory-efficient training configurations, measured: peak memory and tokens/s of one forward+backward step.

Each configuration runs in its own process (so one cannot inherit another's freed-but-kept memory) on the same
model shape, batch and data, fp32, and is compared with the baseline: SDPA attention with the full logits. The issue's
target: activation checkpointing plus the chunked loss cut the peak of the gpt2 preset at batch 8, context 1024 by
at least 3x. Run: `python benchmarks/memory.py` (gpt2, 8 x 1024: several minutes on 2 cores) or `--quick`.

The measuring is ``scratchllm.book.experiments.memory_configs`` (the book's ``memory_configs`` experiment, whose
docstring explains why every configuration runs with glibc's mmap threshold pinned); this script prints it.
"""

from __future__ import annotations

import argparse

from scratchllm.book.experiments.memory_configs import BASELINE, CONFIGS, measure


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="gpt2 at batch 2, context 256 (a smoke run)")
    parser.add_argument("--preset", default="gpt2")
    args = parser.parse_args()
    batch, seq = (2, 256) if args.quick else (8, 1024)
    print(f"{args.preset}, batch {batch}, context {seq}, fp32, one forward+backward step, CPU peak RSS\n")
    results = {}
    for key, r in measure(args.preset, batch, seq):
        results[key] = r
        print(f"  {CONFIGS[key][0]:38s} peak {r['peak_gib']:6.2f} GiB   {r['tokens_per_s']:8.0f} tok/s   "
              f"loss {r['loss']:.6f}  grad norm {r['grad_norm']:.6f}", flush=True)  # fmt: skip
    base = results[BASELINE]
    print("\nagainst the baseline (SDPA, full logits):")
    for key, r in results.items():
        print(f"  {CONFIGS[key][0]:38s} memory {base['peak_gib'] / r['peak_gib']:5.2f}x less   "
              f"speed {r['tokens_per_s'] / base['tokens_per_s']:5.2f}x")  # fmt: skip
    both = results["both"]
    print(f"\ncheckpointing + chunked loss: {base['peak_gib'] / both['peak_gib']:.2f}x less peak memory (target >= 3x)")


if __name__ == "__main__":
    main()

"""Memory-efficient training configurations, measured: peak memory and tokens/s of one forward+backward step.

Section 3.5 of the manual describes four switches of ``GPTConfig`` that shrink a training step's memory: fused
attention (``attention = "sdpa"``, the kernel of Dao et al. 2022, "FlashAttention", on GPUs), activation checkpointing
(Chen et al. 2016, "Training Deep Nets with Sublinear Memory Cost"), the chunked cross-entropy and bf16 autocast.
This experiment measures the first three, alone and together, against a baseline of SDPA attention with the full
logits: each configuration builds the same model, takes one warm-up step and then one measured step (forward and
backward, fp32) on the same batch, in its own process, so that one cannot inherit another's freed-but-kept memory.
The issue's target: checkpointing plus the chunked loss cut the peak of ``gpt2`` at batch 8, context 1,024 at least
3-fold.

On the CPU the measure is the process's peak resident memory (``scratchllm.train.memory``). glibc keeps freed blocks
in its heap once its dynamic mmap threshold has grown (up to 32 MB), so after a warm-up step the resident size
includes gigabytes of dead tensors and hides what a configuration really needs. Every configuration therefore runs
with ``MALLOC_MMAP_THRESHOLD_=131072``: large tensors are mapped and unmapped, and the resident size follows live
memory. It costs some speed (more system calls), the same for every configuration. On a GPU (``device="cuda"``) the
measure is the caching allocator's peak of allocated tensor bytes.

Run it with ``python -m scratchllm.book.experiments.memory_configs --out docs/figures`` (gpt2, 8 x 1024: several
minutes on 2 cores; ``--quick``: gpt2 at batch 2, context 256); ``benchmarks/memory.py`` prints the same comparison.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

from .output import save_figure, write_outputs

# key -> (label, GPTConfig fields changed from the preset)
CONFIGS: dict[str, tuple[str, dict]] = {
    "explicit": ("explicit attention, full logits", {"attention": "explicit"}),
    "baseline": ("SDPA, full logits (baseline)", {}),
    "chunked": ("SDPA + chunked loss", {"loss_chunk_size": 1024}),
    "checkpointing": ("SDPA + activation checkpointing", {"activation_checkpointing": True}),
    "both": ("SDPA + checkpointing + chunked loss", {"activation_checkpointing": True, "loss_chunk_size": 1024}),
}
BASELINE = "baseline"
MMAP_THRESHOLD = "131072"  # bytes: glibc maps (and unmaps) every allocation above this
MODULE = "scratchllm.book.experiments.memory_configs"  # what each configuration's process runs (``--one``)


def measure_one(preset: str, batch: int, seq: int, switches: dict, device: str = "cpu") -> dict:
    """Build the model, then time and measure one training step (forward + backward) after a warm-up step."""
    import torch

    from ...model import GPT, GPTConfig
    from ...train.memory import current_memory_bytes, peak_memory_bytes, reset_peak_memory

    torch.manual_seed(0)
    cfg = replace(GPTConfig.preset(preset), **switches)
    model = GPT.build(cfg).to(device).train()
    idx = torch.randint(0, cfg.vocab_size, (batch, seq)).to(device)  # (B, T)
    targets = torch.randint(0, cfg.vocab_size, (batch, seq)).to(device)  # (B, T)

    def step() -> float:
        model.zero_grad(set_to_none=True)
        loss = model(idx, targets)
        loss.backward()
        return loss.item()  # .item() waits for a GPU to finish

    step()  # warm-up: gradient buffers exist from here on, as in a real training loop
    model.zero_grad(set_to_none=True)
    before = current_memory_bytes(device)
    reset_peak_memory(device)
    start = time.perf_counter()
    loss = step()
    seconds = time.perf_counter() - start
    peak = peak_memory_bytes(device)
    norm = torch.sqrt(sum((p.grad.double() ** 2).sum() for p in model.parameters())).item()
    return {"peak_gib": peak / 2**30, "before_gib": before / 2**30, "seconds": seconds,
            "tokens_per_s": batch * seq / seconds, "loss": loss, "grad_norm": norm}  # fmt: skip


def measure(preset: str, batch: int, seq: int, device: str = "cpu") -> Iterator[tuple[str, dict]]:
    """Each configuration of ``CONFIGS`` measured in a fresh process: yields (key, measurement) as each finishes."""
    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": MMAP_THRESHOLD}
    for key in CONFIGS:
        cmd = [sys.executable, "-m", MODULE, "--one", key, "--preset", preset, "--batch", str(batch),
               "--seq", str(seq), "--device", device]  # fmt: skip
        out = subprocess.run(cmd, capture_output=True, text=True, env=env)
        if out.returncode:
            raise RuntimeError(f"measuring {CONFIGS[key][0]!r} failed:\n{out.stderr.strip()[-2000:]}")
        yield key, json.loads(out.stdout.strip().splitlines()[-1])


def run(preset: str = "gpt2", batch: int = 8, seq: int = 1024, device: str = "cpu") -> dict:
    """Measure every configuration; each gets its ratios to the baseline (memory: baseline / own, > 1 is less)."""
    configs = {}
    for key, m in measure(preset, batch, seq, device):
        configs[key] = {"label": CONFIGS[key][0], "switches": CONFIGS[key][1], **m}
    base = configs[BASELINE]
    for c in configs.values():
        c["memory_ratio"] = base["peak_gib"] / c["peak_gib"]
        c["speed_ratio"] = c["tokens_per_s"] / base["tokens_per_s"]
    losses = [c["loss"] for c in configs.values()]
    norms = [c["grad_norm"] for c in configs.values()]
    return {
        "preset": preset,
        "batch": batch,
        "seq_len": seq,
        "dtype": "fp32",
        "device": device,
        "measure": "peak resident memory" if device == "cpu" else "peak allocated tensor memory",
        "baseline": BASELINE,
        "configs": configs,
        "loss_spread": max(losses) - min(losses),  # every configuration computes the same loss and gradients
        "grad_norm_spread": max(norms) - min(norms),
    }


def table(result: dict) -> str:
    """The configurations as a Markdown table, the baseline in bold."""
    rows = ["| configuration | peak memory | vs baseline | tokens/s | vs baseline |", "|---|---:|---:|---:|---:|"]
    for key, c in result["configs"].items():
        label = f"**{c['label']}**" if key == result["baseline"] else c["label"]
        less = f"{c['memory_ratio']:.2f}x" + ("" if key == result["baseline"] else " less")
        less += " (more)" if c["memory_ratio"] < 1 else ""
        rows.append(f"| {label} | {c['peak_gib']:.2f} GiB | {less} | {c['tokens_per_s']:.0f} | "
                    f"{c['speed_ratio']:.2f}x |")  # fmt: skip
    return "\n".join(rows)


def plot(result: dict, path: Path) -> None:
    """Two panels of horizontal bars, one per configuration: peak memory, and tokens per second."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    configs = list(result["configs"].values())
    labels = [c["label"] for c in configs]
    colors = ["tab:blue" if key == result["baseline"] else "tab:gray" for key in result["configs"]]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 3.6), sharey=True)
    y = list(range(len(configs)))[::-1]
    for ax, field, xlabel, fmt in (
        (ax1, "peak_gib", f"{result['measure']} (GiB)", "{:.2f} GiB"),
        (ax2, "tokens_per_s", "tokens per second", "{:.0f}"),
    ):
        values = [c[field] for c in configs]
        ax.barh(y, values, color=colors)
        for yi, v in zip(y, values):
            ax.text(v, yi, " " + fmt.format(v), va="center", fontsize=8)
        ax.set_xlim(0, max(values) * 1.3)
        ax.set_xlabel(xlabel)
        ax.grid(axis="x", alpha=0.3)
    ax1.set_yticks(y, labels, fontsize=8)
    fig.suptitle(
        f"{result['preset']}, batch {result['batch']} x context {result['seq_len']}, {result['dtype']}, "
        f"one forward+backward step on {result['device']} (baseline in blue)",
        fontsize=9,
    )
    fig.tight_layout()
    save_figure(fig, path)


def write(result: dict, out_dir: str | Path) -> list[Path]:
    """Save ``memory_configs.json``, ``.md`` and ``.png`` into ``out_dir``."""
    return write_outputs("memory_configs", result, table(result), plot, out_dir)


def main() -> None:
    """Run, print the table, and write the results when ``--out`` is given; ``--one`` measures one configuration
    in this process and prints it as JSON (how :func:`measure` runs each in its own)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", help="directory for memory_configs.json, .md and .png")
    parser.add_argument("--quick", action="store_true", help="batch 2, context 256 (a smoke run)")
    parser.add_argument("--preset", default="gpt2")
    parser.add_argument("--batch", type=int, help="sequences per step (default 8, 2 with --quick)")
    parser.add_argument("--seq", type=int, help="tokens per sequence (default 1024, 256 with --quick)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--one", choices=CONFIGS, help=argparse.SUPPRESS)
    args = parser.parse_args()
    batch = args.batch or (2 if args.quick else 8)
    seq = args.seq or (256 if args.quick else 1024)
    if args.one:
        print(json.dumps(measure_one(args.preset, batch, seq, CONFIGS[args.one][1], args.device)))
        return
    result = run(args.preset, batch, seq, args.device)
    print(table(result))
    if args.out:
        for path in write(result, args.out):
            print(f"wrote {path}")


if __name__ == "__main__":
    main()

"""Gradient accumulation, measured: k micro-batches against one batch k times larger, and against the naive recipe.

Three copies of the same small GPT take the same AdamW steps on the same data: one sees each batch whole, one sees
it as four micro-batches through ``accumulated_step`` (loss normalized by the whole batch's target count), and one
uses the naive recipe (each micro-batch's mean loss divided by the number of micro-batches). With padding that
leaves the micro-batches very different numbers of counted targets, only the naive copy drifts.
``python -m scratchllm.book.experiments.grad_accum`` prints the maximum parameter differences (``--out DIR``:
also ``grad_accum.json``, ``.md`` and ``.png``).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from ...model import GPT, GPTConfig
from ...model.loss import IGNORE_INDEX
from ...train.config import TrainConfig
from ...train.optim import build_optimizer
from ...train.step import accumulated_step
from .output import save_figure, write_outputs

MODEL = GPTConfig(vocab_size=100, block_size=32, n_layer=2, n_head=2, d_model=32)
TRAIN = TrainConfig(lr=1e-3, weight_decay=0.1, grad_clip=0.0)
COUNTED = [16, 16, 16, 0, 3, 3, 0, 2]  # targets that count in each of the 8 rows: micro-batches of 2 count 32/16/6/2


def batches(steps: int, masked: bool, batch: int = 8, seq: int = 16) -> list[tuple[torch.Tensor, torch.Tensor]]:
    g = torch.Generator().manual_seed(1)
    out = []
    for _ in range(steps):
        x = torch.randint(0, MODEL.vocab_size, (batch, seq), generator=g)  # (B, T)
        y = torch.randint(0, MODEL.vocab_size, (batch, seq), generator=g)  # (B, T)
        if masked:
            for row, n in enumerate(COUNTED):
                y[row, n:] = IGNORE_INDEX
        out.append((x, y))
    return out


def naive_step(model: GPT, micro_batches, optimizer) -> None:
    """The bug: each micro-batch's mean loss, divided by the number of micro-batches."""
    for x, y in micro_batches:
        (model(x, y) / len(micro_batches)).backward()
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)


def max_param_diff(a: GPT, b: GPT) -> float:
    return max((p - q).abs().max().item() for p, q in zip(a.parameters(), b.parameters()))


def run(steps: int = 3, micro: int = 4) -> dict:
    """Max |parameter difference| to the whole-batch copy after ``steps`` AdamW steps, with and without padding."""
    result = {}
    for masked in (False, True):
        models = []
        for _ in range(3):
            torch.manual_seed(0)
            models.append(GPT.build(MODEL))
        whole, accum, naive = models
        opts = [build_optimizer(m, TRAIN) for m in models]
        for x, y in batches(steps, masked):
            parts = list(zip(x.chunk(micro), y.chunk(micro)))
            accumulated_step(whole, [(x, y)], opts[0])
            accumulated_step(accum, parts, opts[1])
            naive_step(naive, parts, opts[2])
        name = "padded" if masked else "full"
        result[name] = {"accumulated": max_param_diff(whole, accum), "naive": max_param_diff(whole, naive)}
    return result


def table(result: dict) -> str:
    """The maximum parameter differences as a Markdown table."""
    rows = ["| targets per micro-batch | `accumulated_step` | naive mean / micro-batches | naive / accumulated |",
            "|---|---:|---:|---:|"]  # fmt: skip
    for name, label in (("full", "equal (32 each)"), ("padded", "unequal (32, 16, 6, 2)")):
        d = result[name]
        rows.append(f"| {label} | {d['accumulated']:.1e} | {d['naive']:.1e} | {d['naive'] / d['accumulated']:.0f} |")
    return "\n".join(rows)


def plot(result: dict, path: Path) -> None:
    """Grouped bars on a log scale: the two recipes' distance to the whole batch, with equal and unequal counts."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.5, 3.6))
    cases = (("full", "equal target counts\n(32, 32, 32, 32)"), ("padded", "unequal target counts\n(32, 16, 6, 2)"))
    for offset, recipe, label, color in ((-0.2, "accumulated", "accumulated_step (÷ whole batch's count)", "tab:blue"),
                                         (0.2, "naive", "naive (mean per micro-batch ÷ 4)", "tab:red")):  # fmt: skip
        values = [result[case][recipe] for case, _ in cases]
        bars = ax.bar([i + offset for i in range(len(cases))], values, width=0.4, color=color, label=label)
        ax.bar_label(bars, [f"{v:.1e}" for v in values], fontsize=8)
    ax.set_yscale("log")
    ax.set_ylim(1e-9, 1)
    ax.set_xticks(range(len(cases)), [c[1] for c in cases], fontsize=8)
    ax.set_ylabel("max |parameter difference|\nto the whole batch", fontsize=9)
    ax.set_title("3 AdamW steps, a batch of 8 as 4 micro-batches of 2 (fp32)", fontsize=9)
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=8, loc="upper left")
    fig.tight_layout()
    save_figure(fig, path)


def write(result: dict, out_dir: str | Path) -> list[Path]:
    """Save ``grad_accum.json``, ``.md`` and ``.png`` into ``out_dir``."""
    return write_outputs("grad_accum", result, table(result), plot, out_dir)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", help="directory for grad_accum.json, .md and .png")
    args = parser.parse_args()
    result = run()
    print("max |parameter difference| to one whole batch of 8, after 3 AdamW steps (4 micro-batches of 2):")
    for name, diffs in result.items():
        print(f"  {name:6s} targets: accumulated_step {diffs['accumulated']:.1e}   naive mean {diffs['naive']:.1e}")
    if args.out:
        for path in write(result, args.out):
            print(f"wrote {path}")


if __name__ == "__main__":
    main()

"""How the demo's recipe was chosen, rerun on the demo's own tokens: where a fixed budget of CPU time should go.

The demo trains for a fixed number of steps sized to about 8 minutes on a 2-core CPU (appendix A.7). Two
measurements decide what to spend them on:

- **Step time by shape, eager and compiled.** ``train`` runs a few steps of each candidate shape with and without
  ``torch.compile``; the median step time (the first, compiling step left out) says how many steps fit the budget.
- **Loss per step, wide against narrow.** The `tiny` preset (4 layers of width 192, peak lr 4e-3) and a wider
  4 x 256 (peak lr 3e-3) train on the same batches (same seed) with the demo's schedule. Training loss averaged over
  windows of steps says whether the wider model learns more per step; the final held-out bits per byte says which
  wins at equal steps.

Everything runs through ``scratchllm.train.trainer.train``, the demo's own training function, on the tokens the
``demo`` experiment wrote. ``python -m scratchllm.book.experiments.demo_recipe --data runs/demo`` runs it on a
demo's run directory (``--quick`` for the short version, ``--out DIR`` for the json, table and figure).
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path
from statistics import median

from ...model import GPT, GPTConfig
from ...tokenizer import Tokenizer
from ...train.config import TrainConfig
from ...train.metrics import read_metrics
from ...train.trainer import seed_everything, train
from .output import save_figure, write_outputs

# (name, model shape, peak learning rate): the preset, the wider candidate, and the first `tiny` of the tuning
SHAPES = {
    "4x192": (dict(n_layer=4, n_head=4, d_model=192), 4e-3),
    "4x256": (dict(n_layer=4, n_head=4, d_model=256), 3e-3),
    "6x384": (dict(n_layer=6, n_head=6, d_model=384), 3e-3),
}
CANDIDATES = ("4x192", "4x256")  # the two trained for the whole schedule
DEMO_EVAL_BATCHES = 25  # the demo's final evaluation: the whole validation split


def _train(data: Path, tok: Tokenizer, shape: str, steps: int, compile: bool, out: Path, eval_batches: int) -> dict:
    """One run of the demo's training function; returns its metrics records and final numbers."""
    dims, lr = SHAPES[shape]
    cfg = TrainConfig(
        lr=lr, max_steps=steps, warmup_steps=min(TrainConfig.warmup_steps, steps // 10), eval_every=0,
        eval_batches=eval_batches, checkpoint_every=0, compile=compile,
    )  # fmt: skip
    seed_everything(cfg.seed)
    model = GPT.build(GPTConfig.preset("tiny", vocab_size=tok.vocab_size, **dims))
    final = train(model, tok, data / "tokens", cfg, out)
    records = [r for r in read_metrics(out / "metrics.jsonl") if "step_time" in r]
    settled = [r["grad_norm"] for r in records[2 * cfg.warmup_steps :]]  # after warmup and its aftermath
    return {
        "parameters": sum(p.numel() for p in model.parameters()),
        "lr": lr,
        "losses": [r["loss"] for r in records],
        "step_seconds": median(r["step_time"] for r in records[1:]),
        "first_step_seconds": records[0]["step_time"],
        "val_loss": final["val_loss"],
        "val_bpb": final["val_bpb"],
        "settled_from_step": 2 * cfg.warmup_steps,
        "clipped_share": sum(g > cfg.grad_clip for g in settled) / max(len(settled), 1),
        "max_grad_norm": max(settled, default=0.0),
        "grad_clip": cfg.grad_clip,
    }


def window_means(losses: list[float], window: int) -> list[float]:
    """Mean training loss over each full window of ``window`` steps: [mean(steps 1..w), mean(w+1..2w), ...]."""
    return [sum(losses[i : i + window]) / window for i in range(0, len(losses) - window + 1, window)]


def run(
    data: str | Path, steps: int = 1000, timing_steps: int = 12, window: int = 100, compile: bool = True,
    shapes: tuple[str, ...] = tuple(SHAPES),
) -> dict:  # fmt: skip
    """Step times of ``shapes`` (eager and compiled), then the candidates trained ``steps`` steps on ``data``."""
    data = Path(data)
    tok = Tokenizer.load(data / "tokenizer")
    result: dict = {"steps": steps, "timing_steps": timing_steps, "window": window, "compile": compile}
    with tempfile.TemporaryDirectory() as tmp:
        timing = []
        for shape in shapes:
            row = {"shape": shape}
            for mode in ("eager", "compiled"):
                run_ = _train(data, tok, shape, timing_steps, mode == "compiled", Path(tmp) / f"{shape}-{mode}", 1)
                row[mode] = run_["step_seconds"]
                row["parameters"] = run_["parameters"]
            row["speedup"] = row["eager"] / row["compiled"]
            timing.append(row)
        result["timing"] = timing
        runs = []
        for shape in CANDIDATES:
            r = _train(data, tok, shape, steps, compile, Path(tmp) / shape, DEMO_EVAL_BATCHES)
            runs.append({"shape": shape, **r, "window_means": window_means(r.pop("losses"), window)})
        result["runs"] = runs
    narrow, wide = runs
    result["wide_over_narrow_step_time"] = wide["step_seconds"] / narrow["step_seconds"]
    return result


def table(result: dict) -> str:
    w = result["window"]
    ends = [w * (k + 1) for k in range(len(result["runs"][0]["window_means"]))]
    lines = [
        f"| run | parameters | peak lr | step time | train loss, mean of the {w} steps to step "
        + " / ".join(str(e) for e in ends)
        + " | held-out bits per byte |",
        "|---|---:|---:|---:|---|---:|",
    ]
    for r in result["runs"]:
        losses = " / ".join(f"{x:.2f}" for x in r["window_means"])
        lines.append(
            f"| {r['shape']} | {r['parameters'] / 1e6:.1f} M | {r['lr']:g} | {r['step_seconds']:.2f} s | {losses} | "
            f"{r['val_bpb']:.3f} |"
        )
    if result["timing"]:
        lines += ["", "| shape | parameters | eager step | compiled step | speed-up |", "|---|---:|---:|---:|---:|"]
    for t in result["timing"]:
        lines.append(
            f"| {t['shape']} | {t['parameters'] / 1e6:.1f} M | {t['eager']:.2f} s | {t['compiled']:.2f} s | "
            f"{t['speedup']:.2f}x |"
        )
    return "\n".join(lines)


def plot(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 3.6))
    w = result["window"]
    for r in result["runs"]:
        xs = [w * (k + 1) for k in range(len(r["window_means"]))]
        label = f"{r['shape']} ({r['parameters'] / 1e6:.1f} M, lr {r['lr']:g})"
        ax.plot(xs, r["window_means"], marker="o", label=label)
    ax.set_xlabel("step")
    ax.set_ylabel(f"training loss, mean of {w} steps (nats/token)")
    ax.set_title("Same batches, same schedule: the wider model learns no more per step")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    save_figure(fig, path)


def write(result: dict, out_dir: str | Path) -> list[Path]:
    return write_outputs("demo_recipe", result, table(result), plot, out_dir)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", required=True, help="a demo run directory (with tokenizer/ and tokens/)")
    parser.add_argument("--quick", action="store_true", help="100 training steps, eager (minutes)")
    parser.add_argument("--out", help="write demo_recipe.json, .md and .png here")
    args = parser.parse_args()
    kwargs = QUICK if args.quick else {}
    result = run(args.data, **kwargs)
    print(table(result))
    if args.out:
        write(result, args.out)


QUICK = {"steps": 100, "timing_steps": 4, "window": 20, "compile": False}  # every shape still timed

if __name__ == "__main__":
    main()

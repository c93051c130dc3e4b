"""Bytes each GPU sends per training step under DDP, FSDP, tensor and pipeline parallelism, against model size.

Chapter 4 derives what each strategy communicates, and section 4.8 checks the exact formulas of
``scratchllm.parallel.comms`` against every collective a real step issues, byte for byte. This experiment evaluates
those formulas (on the meta device: shapes only, no memory, so quick and full mode are the same) for every model
preset from GPT-2 small to GPT-2 XL and the Llama-style ones, at section 4.8's scale: N = 8 GPUs, a global batch of
64 sequences of 1,024 tokens, mixed precision as this project runs it on GPUs (bf16 weights gathered and
activations sent, 2 bytes; fp32 gradients reduced, 4 bytes, because autocast keeps fp32 parameters and FSDP's
``reduce_dtype`` is fp32). DDP and FSDP hold 8 sequences per GPU; tensor parallelism is one group of 8 on the whole
batch; the pipeline has 8 stages and 8 micro-batches of 8, and the figure is a middle stage's (it sends both ways),
plus a tied head's gradient all-reduced over the pipeline. The ring cost model is ``comms.sent_bytes`` (Patarasuk
and Yuan 2009; Thakur et al. 2005).

Data parallelism's bytes follow the parameters; tensor parallelism's follow the tokens times the width times the
depth, and the pipeline's the tokens times the width (plus the tied head). Where a model's heads do not split 8
ways (GPT-2's 12, 20 and 25) the tensor-parallel figure is what a model of that width and depth would send.

Run it with ``python -m scratchllm.book.experiments.comm_volume --out docs/figures``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from ...model import GPTConfig, num_params
from ...parallel import comms
from .output import save_figure, write_outputs

MODELS = ("gpt2", "gpt2-medium", "gpt2-large", "gpt2-xl", "llama-125m", "llama3.2-1b")
STRATEGIES = ("DDP", "FSDP", "TP", "PP")


def volumes(cfg: GPTConfig, world: int, per_gpu: int, seq_len: int) -> dict[str, list[comms.Volume]]:
    """One rank's collectives per optimizer step for each strategy, in the mixed precision described above."""
    batch = world * per_gpu
    return {
        "DDP": comms.ddp_volumes(cfg, world, itemsize=4),
        "FSDP": comms.fsdp_volumes(cfg, world, itemsize=2, grad_itemsize=4),
        "TP": comms.tp_volumes(cfg, world, batch, seq_len, itemsize=2),
        "PP": comms.pp_volumes(cfg, world, 1, per_gpu, seq_len, world, itemsize=2)
        + comms.pp_tied_head_volume(cfg, world, 4),
    }


def run(world: int = 8, per_gpu: int = 8, seq_len: int = 1024, models: tuple[str, ...] = MODELS) -> dict:
    """Bytes sent per GPU per step, for each model and strategy."""
    rows = []
    for name in models:
        cfg = GPTConfig.preset(name)
        sent = {s: sum(v.sent for v in vs) for s, vs in volumes(cfg, world, per_gpu, seq_len).items()}
        rows.append({
            "model": name,
            "params": num_params(cfg),
            "n_layer": cfg.n_layer,
            "d_model": cfg.d_model,
            "tied_head": cfg.tie_embeddings,
            "tp_splits_heads": cfg.n_head % world == 0 and cfg.kv_heads % world == 0,
            "bytes": sent,
            "gb": {s: b / 1e9 for s, b in sent.items()},
            "tp_over_ddp": sent["TP"] / sent["DDP"],
        })  # fmt: skip
    return {
        "world": world,
        "per_gpu": per_gpu,
        "global_batch": world * per_gpu,
        "seq_len": seq_len,
        "precision": "bf16 weights and activations, fp32 gradients",
        "strategies": list(STRATEGIES),
        "models": rows,
    }


def table(result: dict) -> str:
    """GB sent per GPU per step, one row per model."""
    rows = ["| model | parameters | DDP | FSDP | TP | PP | TP / DDP |", "|---|---:|---:|---:|---:|---:|---:|"]
    for r in result["models"]:
        tp = f"{r['gb']['TP']:.3f}" + ("" if r["tp_splits_heads"] else " (on paper)")
        cells = [f"`{r['model']}`", f"{r['params'] / 1e6:,.0f} M", *(f"{r['gb'][s]:.3f}" for s in ("DDP", "FSDP")),
                 tp, f"{r['gb']['PP']:.3f}", f"{r['tp_over_ddp']:.1f}"]  # fmt: skip
        rows.append("| " + " | ".join(cells) + " |")
    return "\n".join(rows)


def plot(result: dict, path: Path) -> None:
    """Log-log: GB sent against parameters, a line per strategy through the GPT-2 sizes, the Llama-style presets as
    open markers of the same colour."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.4))
    colors = {"DDP": "tab:blue", "FSDP": "tab:orange", "TP": "tab:red", "PP": "tab:green"}
    gpt2 = [r for r in result["models"] if r["model"].startswith("gpt2")]
    llama = [r for r in result["models"] if not r["model"].startswith("gpt2")]
    for s in result["strategies"]:
        style = "o--" if s == "FSDP" else "o-"  # dashed: FSDP's line lies almost on DDP's
        ax.plot([r["params"] for r in gpt2], [r["gb"][s] for r in gpt2], style, color=colors[s], label=s, ms=4)
        ax.plot([r["params"] for r in llama], [r["gb"][s] for r in llama], "s", color=colors[s], mfc="none")
    for r in result["models"]:  # GPT-2 names above their tensor-parallel point, Llama-style ones below
        dy = 6 if r in gpt2 else -12
        ax.annotate(r["model"], (r["params"], r["gb"]["TP"]), xytext=(0, dy), textcoords="offset points",
                    ha="center", fontsize=7)  # fmt: skip
    ax.set(
        xscale="log",
        yscale="log",
        xlabel="parameters",
        ylabel="GB sent per GPU per optimizer step",
        title=f"N = {result['world']}, global batch {result['global_batch']} x {result['seq_len']} tokens, "
        f"{result['precision']}\n(lines: GPT-2 sizes; open squares: Llama-style presets)",
    )
    ax.set_xticks([1e8, 2e8, 5e8, 1e9, 2e9], ["100 M", "200 M", "500 M", "1 B", "2 B"])
    ax.set_xticks([], minor=True)
    ax.set_xlim(0.9e8, 2.2e9)
    ax.set_ylim(top=2 * max(max(r["gb"].values()) for r in result["models"]))
    ax.title.set_fontsize(9)
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    save_figure(fig, path)


def write(result: dict, out_dir: str | Path) -> list[Path]:
    """Save ``comm_volume.json``, ``.md`` and ``.png`` into ``out_dir``."""
    return write_outputs("comm_volume", result, table(result), plot, out_dir)


def main() -> None:
    """Print the table, and write the results when ``--out`` is given."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", help="directory for comm_volume.json, .md and .png")
    args = parser.parse_args()
    result = run()
    print(table(result))
    if args.out:
        for path in write(result, args.out):
            print(f"wrote {path}")


if __name__ == "__main__":
    main()

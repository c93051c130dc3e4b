"""Training throughput: our model and training step against Hugging Face `transformers` on the same shape and data.

For each preset, the Hugging Face class that computes the same model (``LlamaForCausalLM`` for the Llama-style `tiny`,
``GPT2LMHeadModel`` for `gpt2`, SDPA attention) is built from the same config and given the same weights; both train
with ``torch.optim.AdamW`` (same groups of decay) on the same random batches, fp32, CPU, all cores. Steps alternate
between the two after one warm-up step each, and the best step time counts. MFU is model FLOPs (``flops_per_token``)
per second over the machine's fp32 matmul peak, measured in the same run. Each preset is timed eager and then with
both models under ``torch.compile`` (C++ kernels on a CPU; the first steps, which compile, are not timed).
Run: `python benchmarks/train.py [--quick] [--no-compile] [--json PATH]` (``--quick``: the `tiny` preset only;
``--json``: every number as JSON, and the table the manual's appendix A shows beside it as ``.md``).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import torch

from scratchllm.fileio import atomic_write_text
from scratchllm.model import GPT, GPTConfig, flops_per_token
from scratchllm.train.config import TrainConfig
from scratchllm.train.mfu import matmul_peak_flops, mfu
from scratchllm.train.optim import build_optimizer
from scratchllm.train.step import accumulated_step


def _timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def hf_twin(model: GPT):
    """The transformers model that computes ``model``, with its weights: exported by ``save_hf`` and loaded back."""
    import tempfile

    import transformers

    with tempfile.TemporaryDirectory() as tmp:
        model.save_hf(tmp)
        return transformers.AutoModelForCausalLM.from_pretrained(tmp, attn_implementation="sdpa")


def compare(preset: str, batch: int, seq: int, steps: int, peak: float, compiled: bool = False) -> dict:
    """Time training steps of our model and its transformers twin on the same batches; print tokens/s and MFU and
    return them. ``compiled``: run both through ``torch.compile``."""
    cfg = GPTConfig.preset(preset)
    torch.manual_seed(0)
    ours = GPT.build(cfg).train()
    theirs = hf_twin(ours).train()
    train_cfg = TrainConfig(lr=1e-4, grad_clip=1.0)
    opt_ours = build_optimizer(ours, train_cfg)
    opt_theirs = torch.optim.AdamW(theirs.parameters(), lr=1e-4, betas=train_cfg.betas)
    g = torch.Generator().manual_seed(1)
    warmup = 2 if compiled else 1  # compilation happens in the first call (and a recompile may follow)
    data = [torch.randint(0, cfg.vocab_size, (batch, seq + 1), generator=g) for _ in range(steps + warmup)]
    run_ours = torch.compile(ours) if compiled else ours
    run_theirs = torch.compile(theirs) if compiled else theirs

    def ours_step(tokens: torch.Tensor) -> None:
        accumulated_step(run_ours, [(tokens[:, :-1], tokens[:, 1:])], opt_ours, 1.0)

    def theirs_step(tokens: torch.Tensor) -> None:
        # transformers shifts the labels itself (it scores T-1 of the T positions; the forward costs the same).
        run_theirs(input_ids=tokens[:, :-1], labels=tokens[:, :-1]).loss.backward()
        torch.nn.utils.clip_grad_norm_(theirs.parameters(), 1.0)
        opt_theirs.step()
        opt_theirs.zero_grad(set_to_none=True)

    for tokens in data[:warmup]:
        ours_step(tokens), theirs_step(tokens)
    best = {"scratchllm": float("inf"), "transformers": float("inf")}
    for tokens in data[warmup:]:  # alternate, so that a slow phase of a shared machine hits both sides
        best["scratchllm"] = min(best["scratchllm"], _timed(lambda t=tokens: ours_step(t)))
        best["transformers"] = min(best["transformers"], _timed(lambda t=tokens: theirs_step(t)))
    mode = "compiled" if compiled else "eager"
    row = {"name": f"{preset}-{mode}", "preset": preset, "mode": mode, "batch": batch, "seq": seq}
    print(f"{preset}: batch {batch} x {seq} tokens{', torch.compile' if compiled else ', eager'}")
    for name, seconds in best.items():
        tps = batch * seq / seconds
        row[name] = {"tokens_per_s": tps, "mfu": mfu(flops_per_token(cfg, seq), tps, peak)}
        print(f"  {name:12s} {tps:8.0f} tokens/s   MFU {100 * row[name]['mfu']:5.1f}%")
    row["ratio"] = best["transformers"] / best["scratchllm"]
    print(f"  ratio scratchllm / transformers: {row['ratio']:.2f}x (target >= 1.0)\n")
    return row


def markdown(rows: list[dict]) -> str:
    """The appendix's table: per preset, eager and compiled tokens/s (and MFU) of both sides and their ratio."""
    lines = ["| model, batch | mode | scratchllm tokens/s (MFU) | transformers tokens/s (MFU) | ratio |",
             "|---|---|---:|---:|---:|"]  # fmt: skip
    for r in rows:
        ours, theirs = r["scratchllm"], r["transformers"]
        lines.append(
            f"| `{r['preset']}`, {r['batch']} x {r['seq']} | {r['mode']} | {ours['tokens_per_s']:,.0f} "
            f"({ours['mfu']:.0%}) | {theirs['tokens_per_s']:,.0f} ({theirs['mfu']:.0%}) | {r['ratio']:.2f}x |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="tiny only")
    parser.add_argument("--no-compile", action="store_true", help="eager only")
    parser.add_argument("--steps", type=int, default=3, help="timed steps per side (default 3)")
    parser.add_argument("--json", metavar="PATH", help="write the results as JSON here, and a Markdown table beside")
    args = parser.parse_args()
    load = os.getloadavg()[0]
    peak = matmul_peak_flops("cpu", "fp32")
    print(f"fp32 matmul peak of this machine: {peak / 1e9:.0f} GFLOP/s ({torch.get_num_threads()} threads)\n")
    rows = []
    for compiled in [False] if args.no_compile else [False, True]:
        rows.append(compare("tiny", 8, 256, args.steps, peak, compiled))
        if not args.quick:
            rows.append(compare("gpt2", 4, 256, args.steps, peak, compiled))
    if args.json:
        result = {
            "command": " ".join(["python", "benchmarks/train.py", *sys.argv[1:]]),
            "settings": {"quick": args.quick, "steps": args.steps, "threads": torch.get_num_threads(),
                         "cpus": os.cpu_count()},
            "load_average": load, "peak_gflops": peak / 1e9, "rows": rows,
        }  # fmt: skip
        atomic_write_text(args.json, json.dumps(result, indent=2) + "\n")
        atomic_write_text(Path(args.json).with_suffix(".md"), markdown(rows))


if __name__ == "__main__":
    main()

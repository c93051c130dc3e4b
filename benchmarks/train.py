"""Training throughput: our model and training step against Hugging Face `transformers` on the same shape and data.

For each preset, the Hugging Face class that computes the same model (``LlamaForCausalLM`` for the Llama-style `tiny`,
``GPT2LMHeadModel`` for `gpt2`, SDPA attention) is built from the same config and given the same weights; both train
with ``torch.optim.AdamW`` (same groups of decay) on the same random batches, fp32, CPU, all cores. Steps alternate
between the two after one warm-up step each, and the best step time counts. MFU is model FLOPs (``flops_per_token``)
per second over the machine's fp32 matmul peak, measured in the same run. Run: `python benchmarks/train.py [--quick]`.
"""

from __future__ import annotations

import argparse
import time

import torch

from scratchllm.model import GPT, GPTConfig, flops_per_token
from scratchllm.train.config import TrainConfig
from scratchllm.train.optim import build_optimizer
from scratchllm.train.step import accumulated_step


def matmul_peak_gflops(n: int = 2048, repeats: int = 5) -> float:
    """Best fp32 GFLOP/s of an (n x n) @ (n x n) product on this machine (2 n^3 FLOPs)."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b
    best = min(_timed(lambda: a @ b) for _ in range(repeats))
    return 2 * n**3 / best / 1e9


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


def compare(preset: str, batch: int, seq: int, steps: int, peak: float) -> None:
    """Time training steps of our model and its transformers twin on the same batches; print tokens/s and MFU."""
    cfg = GPTConfig.preset(preset)
    torch.manual_seed(0)
    ours = GPT.build(cfg).train()
    theirs = hf_twin(ours).train()
    train_cfg = TrainConfig(lr=1e-4, grad_clip=1.0)
    opt_ours = build_optimizer(ours, train_cfg)
    opt_theirs = torch.optim.AdamW(theirs.parameters(), lr=1e-4, betas=train_cfg.betas)
    g = torch.Generator().manual_seed(1)
    data = [torch.randint(0, cfg.vocab_size, (batch, seq + 1), generator=g) for _ in range(steps + 1)]

    def ours_step(tokens: torch.Tensor) -> None:
        accumulated_step(ours, [(tokens[:, :-1], tokens[:, 1:])], opt_ours, 1.0)

    def theirs_step(tokens: torch.Tensor) -> None:
        # transformers shifts the labels itself (it scores T-1 of the T positions; the forward costs the same).
        theirs(input_ids=tokens[:, :-1], labels=tokens[:, :-1]).loss.backward()
        torch.nn.utils.clip_grad_norm_(theirs.parameters(), 1.0)
        opt_theirs.step()
        opt_theirs.zero_grad(set_to_none=True)

    ours_step(data[0]), theirs_step(data[0])  # warm-up
    best = {"scratchllm": float("inf"), "transformers": float("inf")}
    for tokens in data[1:]:  # alternate, so that a slow phase of a shared machine hits both sides
        best["scratchllm"] = min(best["scratchllm"], _timed(lambda t=tokens: ours_step(t)))
        best["transformers"] = min(best["transformers"], _timed(lambda t=tokens: theirs_step(t)))
    print(f"{preset}: batch {batch} x {seq} tokens")
    for name, seconds in best.items():
        tps = batch * seq / seconds
        mfu = flops_per_token(cfg, seq) * tps / (peak * 1e9)
        print(f"  {name:12s} {tps:8.0f} tokens/s   MFU {100 * mfu:5.1f}%")
    print(f"  ratio scratchllm / transformers: {best['transformers'] / best['scratchllm']:.2f}x (target >= 1.0)\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="tiny only")
    parser.add_argument("--steps", type=int, default=3, help="timed steps per side (default 3)")
    args = parser.parse_args()
    peak = matmul_peak_gflops()
    print(f"fp32 matmul peak of this machine: {peak:.0f} GFLOP/s ({torch.get_num_threads()} threads)\n")
    compare("tiny", 8, 256, args.steps, peak)
    if not args.quick:
        compare("gpt2", 4, 256, args.steps, peak)


if __name__ == "__main__":
    main()

"""Generation benchmark: our KV-cached greedy decoding against Hugging Face ``generate``, and against ourselves
without the cache.

Same process, same random-weight GPT-2 124M model (HF's ``GPT2LMHeadModel`` with GPT-2's shape, its weights copied
into ours by ``GPT.from_hf``), same prompt, batch 1, CPU, fp32, torch threads = all cores. Each side runs once to
warm up, then ``--repeats`` times in alternation; the best time counts (the least disturbed by other load on a shared
machine), and the ratios are what to quote. Run with `make bench` or `python benchmarks/generate.py [--quick]`.

1. Ours (cached) vs HF ``generate(do_sample=False, use_cache=True)``: tokens/s, with the two outputs checked
   identical token for token (greedy decoding on the same weights). Target: ours / HF >= 1.0.
2. Ours cached vs ours recomputing the whole sequence at every step (``use_cache=False``): the speedup.
"""

from __future__ import annotations

import argparse
import os
import time

import torch

from scratchllm.model import GPT, GPTConfig
from scratchllm.model.generate import generate


def alternate(fns: dict, repeats: int) -> dict[str, tuple[object, float]]:
    """name -> (result, best wall time), calling the functions in turn ``repeats`` times, so that slow phases of a
    shared machine hit every side alike."""
    best: dict[str, tuple[object, float]] = {}
    for _ in range(repeats):
        for name, fn in fns.items():
            start = time.perf_counter()
            result = fn()
            seconds = time.perf_counter() - start
            best[name] = (result, min(seconds, best.get(name, (None, float("inf")))[1]))
    return best


def hf_gpt2(cfg: GPTConfig):
    """A randomly initialized Hugging Face GPT-2 with our config's shape, in eval mode."""
    import transformers

    hf_cfg = transformers.GPT2Config(
        vocab_size=cfg.vocab_size, n_positions=cfg.block_size, n_embd=cfg.d_model, n_layer=cfg.n_layer,
        n_head=cfg.n_head, bos_token_id=None, eos_token_id=None,
    )  # fmt: skip
    torch.manual_seed(0)
    model = transformers.GPT2LMHeadModel(hf_cfg).eval()
    model.generation_config.eos_token_id = None  # never stop early: both sides generate exactly N tokens
    return model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="32 new tokens (64 for the uncached run), 1 repeat")
    parser.add_argument("--prompt-tokens", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    new, uncached_new = (32, 64) if args.quick else (128, 256)
    repeats = 1 if args.quick else args.repeats
    torch.set_num_threads(os.cpu_count() or 1)

    cfg = GPTConfig.preset("gpt2")
    hf = hf_gpt2(cfg)
    ours = GPT.from_hf(hf.state_dict(), hf.config.to_dict())
    prompt = torch.randint(0, cfg.vocab_size, (1, args.prompt_tokens), generator=torch.Generator().manual_seed(0))
    print(f"GPT-2 124M shape, random weights, fp32, CPU, {torch.get_num_threads()} threads, batch 1, "
          f"prompt {args.prompt_tokens} tokens, greedy, best of {repeats}\n")  # fmt: skip

    def run_hf(n):
        with torch.inference_mode():
            out = hf.generate(prompt, attention_mask=torch.ones_like(prompt), max_new_tokens=n, do_sample=False,
                              use_cache=True, pad_token_id=0)  # fmt: skip
        return out[0, prompt.size(1) :].tolist()

    def run_ours(n, use_cache=True):
        return generate(ours, prompt, n, temperature=0, use_cache=use_cache)[0]

    run_hf(4), run_ours(4)  # warm-up: first-call allocations and kernel selection
    times = alternate({"hf": lambda: run_hf(new), "ours": lambda: run_ours(new)}, repeats)
    (theirs, t_hf), (mine, t_ours) = times["hf"], times["ours"]
    same = mine == theirs and len(mine) == new
    print(f"1. {new} new tokens, KV cache on both sides")
    print(f"   {'':<22}{'seconds':>9}{'tokens/s':>10}")
    print(f"   {'transformers':<22}{t_hf:9.3f}{new / t_hf:10.1f}")
    print(f"   {'scratchllm':<22}{t_ours:9.3f}{new / t_ours:10.1f}")
    print(f"   ours / HF tokens/s: {t_hf / t_ours:.2f}x (target >= 1.0)")
    print(f"   outputs identical token for token: {same}\n")

    n = uncached_new
    times = alternate({"cached": lambda: run_ours(n), "full": lambda: run_ours(n, use_cache=False)}, repeats)
    (cached, t_cached), (full, t_full) = times["cached"], times["full"]
    print(f"2. {n} new tokens, ours with and without the KV cache")
    print(f"   {'cached':<22}{t_cached:9.3f}{n / t_cached:10.1f}")
    print(f"   {'full recomputation':<22}{t_full:9.3f}{n / t_full:10.1f}")
    print(f"   speedup from the cache: {t_full / t_cached:.1f}x; outputs identical: {cached == full}")
    if not same or cached != full:
        raise SystemExit("outputs differ")


if __name__ == "__main__":
    main()

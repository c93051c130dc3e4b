"""Generation benchmark: our KV-cached greedy decoding against Hugging Face ``generate``, and against ourselves
without the cache.

Same process, same random-weight GPT-2 124M model (HF's ``GPT2LMHeadModel`` with GPT-2's shape, its weights copied
into ours by ``GPT.from_hf``), same prompt, batch 1, CPU, fp32, torch threads = all cores. Each side runs once to
warm up, then ``--repeats`` times in alternation; the best time counts (the least disturbed by other load on a shared
machine), and the ratios are what to quote. Run with `make bench` or
`python benchmarks/generate.py [--quick] [--json PATH]`.

1. Ours (cached) vs HF ``generate(do_sample=False, use_cache=True)``: tokens/s, with the two outputs checked
   identical token for token (greedy decoding on the same weights). Target: ours / HF >= 1.0.
2. Ours cached vs ours recomputing the whole sequence at every step (``use_cache=False``): the speedup.

Full mode generates 128 new tokens in 1 and 256 in 2, best of ``--repeats`` (3); ``--quick`` generates 32 and 64,
once each (seconds). ``--json PATH`` also writes every number printed, with the settings, the machine's load average
and the command line, to PATH, and the two comparisons as a Markdown table beside it (PATH with suffix ``.md``).
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
import time
from pathlib import Path

import torch

from scratchllm.fileio import atomic_write_text
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


def race(fns: dict, labels: dict, n: int, repeats: int) -> tuple[list, list[dict]]:
    """Run ``fns`` (name -> a function generating ``n`` tokens) in alternation: (their outputs, one row per side with
    its best seconds and tokens/s)."""
    best = alternate(fns, repeats)
    rows = [{"name": name, "label": labels[name], "seconds": t, "tokens_per_s": n / t} for name, (_, t) in best.items()]
    return [out for out, _ in best.values()], rows


def print_row(row: dict) -> None:
    print(f"   {row['label']:<22}{row['seconds']:9.3f}{row['tokens_per_s']:10.1f}")


def print_hf(hf: dict) -> None:
    print(f"1. {hf['new_tokens']} new tokens, KV cache on both sides")
    print(f"   {'':<22}{'seconds':>9}{'tokens/s':>10}")
    for row in hf["rows"]:
        print_row(row)
    print(f"   ours / HF tokens/s: {hf['ratio']:.2f}x (target >= {hf['target_ratio']})")
    print(f"   outputs identical token for token: {hf['identical']}\n")


def print_cache(cache: dict) -> None:
    print(f"2. {cache['new_tokens']} new tokens, ours with and without the KV cache")
    for row in cache["rows"]:
        print_row(row)
    print(f"   speedup from the cache: {cache['speedup']:.1f}x; outputs identical: {cache['identical']}")


def versus_hf(run_hf, run_ours, n: int, repeats: int) -> dict:
    """1: ``n`` new tokens, cached, from transformers and from us."""
    fns = {"transformers": lambda: run_hf(n), "scratchllm": lambda: run_ours(n)}
    (theirs, mine), rows = race(fns, {name: name for name in fns}, n, repeats)
    return {"new_tokens": n, "rows": rows, "ratio": rows[1]["tokens_per_s"] / rows[0]["tokens_per_s"],
            "target_ratio": 1.0, "identical": mine == theirs and len(mine) == n}  # fmt: skip


def versus_no_cache(run_ours, n: int, repeats: int) -> dict:
    """2: ``n`` new tokens from us, with the KV cache and recomputing the whole sequence at every step."""
    fns = {"cached": lambda: run_ours(n), "full": lambda: run_ours(n, use_cache=False)}
    (cached, full), rows = race(fns, {"cached": "cached", "full": "full recomputation"}, n, repeats)
    return {"new_tokens": n, "rows": rows, "speedup": rows[0]["tokens_per_s"] / rows[1]["tokens_per_s"],
            "identical": cached == full}  # fmt: skip


def markdown(r: dict) -> str:
    """The two comparisons as the chapter's table."""
    hf, cache = r["hf"], r["cache"]
    (peer, ours), (cached, full) = hf["rows"], cache["rows"]
    same = lambda ok: "identical tokens" if ok else "outputs differ"  # noqa: E731
    lines = [
        "| measurement | scratchllm | peer | ratio |",
        "|---|---|---|---|",
        f"| {hf['new_tokens']} new tokens, greedy, KV cache | {ours['tokens_per_s']:.1f} tokens/s | Hugging Face "
        f"`generate` {peer['tokens_per_s']:.1f} tokens/s | {hf['ratio']:.2f}x (target at least "
        f"{hf['target_ratio']}x), {same(hf['identical'])} |",
        f"| {cache['new_tokens']} new tokens, with and without the cache | {cached['tokens_per_s']:.1f} tokens/s "
        f"cached | full recomputation {full['tokens_per_s']:.1f} tokens/s | {cache['speedup']:.1f}x faster, "
        f"{same(cache['identical'])} |",
    ]
    return "\n".join(lines) + "\n"


def write_json(path: str, result: dict) -> None:
    atomic_write_text(path, json.dumps(result, indent=2) + "\n")
    atomic_write_text(Path(path).with_suffix(".md"), markdown(result))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="32 new tokens (64 for the uncached run), 1 repeat")
    parser.add_argument("--prompt-tokens", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", metavar="PATH", help="write the results as JSON here, and a Markdown table beside")
    args = parser.parse_args()
    new, uncached_new = (32, 64) if args.quick else (128, 256)
    repeats = 1 if args.quick else args.repeats
    torch.set_num_threads(os.cpu_count() or 1)
    load = list(os.getloadavg())

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
    hf_result = versus_hf(run_hf, run_ours, new, repeats)
    print_hf(hf_result)
    cache_result = versus_no_cache(run_ours, uncached_new, repeats)
    print_cache(cache_result)
    result = {
        "command": shlex.join(["python", "benchmarks/generate.py", *sys.argv[1:]]),
        "settings": {"quick": args.quick, "model": "gpt2 (random weights)", "dtype": "fp32", "batch": 1,
                     "prompt_tokens": args.prompt_tokens, "repeats": repeats, "threads": torch.get_num_threads(),
                     "cpus": os.cpu_count()},
        "load_average": load, "hf": hf_result, "cache": cache_result,
    }  # fmt: skip
    if not hf_result["identical"] or not cache_result["identical"]:
        raise SystemExit("outputs differ")
    if args.json:
        write_json(args.json, result)


if __name__ == "__main__":
    main()

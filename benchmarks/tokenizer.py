"""Tokenizer benchmark: our pure-Python BPE against Hugging Face `tokenizers` (training) and tiktoken (encoding).

Same machine, same process, same input, one run; the ratios are what to quote, since absolute times drift on shared
machines. Run with `make bench` or `python benchmarks/tokenizer.py [--quick] [--json PATH]`.

1. Training a 32,768-token vocabulary on the default corpus (train split, GPT-4 split pattern, one special token):
   our wall time / HF's BpeTrainer wall time (target: at most 4x). Both use every CPU.
2. Encoding on one thread, MB/s, with the trained tokenizer: our pure-Python encoder from a cold cache against
   tiktoken (target: at least 0.25x); and our bulk path (`encode_batch(backend="tiktoken")`) against tiktoken
   itself, with the ids checked identical. For reference, the regex split alone (`regex.findall` with the
   tokenizer's pattern), the bound of any encoder that splits in Python.

`--quick` trains a 4,096-token vocabulary on the first 200 documents (a smoke run of the same comparison, seconds).
`--json PATH` also writes every number printed, with the settings and the command line, to PATH, and the table of
the results as Markdown beside it (PATH with suffix `.md`).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shlex
import sys
import time
from pathlib import Path

import regex

from scratchllm.data import CorpusConfig, open_corpus
from scratchllm.fileio import atomic_write_text
from scratchllm.tokenizer import Tokenizer
from scratchllm.tokenizer.formats import onig_pattern
from scratchllm.tokenizer.parallel import default_workers
from scratchllm.tokenizer.patterns import PATTERNS

SPECIAL = "<|endoftext|>"


def timed(fn):
    start = time.perf_counter()
    result = fn()
    return result, time.perf_counter() - start


def train_hf(texts: list[str], vocab_size: int, pattern: str) -> float:
    from tokenizers import Regex, pre_tokenizers, trainers
    from tokenizers import Tokenizer as HFTokenizer
    from tokenizers.models import BPE

    hf = HFTokenizer(BPE())
    hf.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(onig_pattern(pattern)), behavior="isolated"),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=[SPECIAL],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    _, seconds = timed(lambda: hf.train_from_iterator(texts, trainer))
    assert hf.get_vocab_size() == vocab_size
    return seconds


def peak_rss_mb() -> float:
    """Peak resident memory of this process and of its largest child so far (Linux reports kB)."""
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return max(own, children) / 1024


def train(texts: list[str], vocab: int, workers: int) -> tuple[Tokenizer, dict]:
    tok, ours = timed(lambda: Tokenizer.train(texts, vocab, "gpt4", [SPECIAL], workers=workers))
    rss = peak_rss_mb()
    theirs = train_hf(texts, vocab, PATTERNS["gpt4"])
    r = tok.training
    return tok, {
        "vocab_size": vocab, "scratchllm_s": ours, "counting_s": r.seconds_counting, "merging_s": r.seconds_merging,
        "unique_chunks": r.unique_chunks, "peak_rss_mb": rss, "hf_s": theirs, "ratio": ours / theirs,
        "target_ratio": 4.0, "target_rss_mb": 2048,
    }  # fmt: skip


def print_training(t: dict) -> None:
    print(f"1. training, vocab {t['vocab_size']:,}, pattern gpt4")
    print(f"   scratchllm  {t['scratchllm_s']:7.2f} s  (counting {t['counting_s']:.2f} s, merging "
          f"{t['merging_s']:.2f} s, peak RSS {t['peak_rss_mb']:,.0f} MB)")  # fmt: skip
    print(f"   HF tokenizers {t['hf_s']:5.2f} s")
    print(f"   ratio ours/HF: {t['ratio']:.2f}x  (target <= 4x)\n")


def encode(tok: Tokenizer, texts: list[str], workers: int) -> dict:
    """MB/s of each encoder on a quarter of the documents, one thread unless said; every side's ids are checked."""
    import tiktoken  # noqa: F401  (an oracle: installed by the test extra)

    sample = texts[: max(1, len(texts) // 4)]
    mb = sum(len(t.encode("utf-8", "surrogateescape")) for t in sample) / 1e6
    enc = tok.to_tiktoken()
    cold = Tokenizer.load_dict(tok.to_dict())  # a fresh instance: empty chunk cache
    ours_ids, ours_s = timed(lambda: [cold.encode_ordinary(t) for t in sample])
    tt_ids, tt_s = timed(lambda: [enc.encode_ordinary(t) for t in sample])
    assert ours_ids == tt_ids, "pure-Python ids differ from tiktoken's"
    bulk_ids, bulk_s = timed(lambda: tok.encode_batch(sample, workers=1, disallowed_special=(), backend="tiktoken"))
    assert bulk_ids == tt_ids, "bulk-path ids differ from tiktoken's"
    _, tt_batch_s = timed(lambda: enc.encode_ordinary_batch(sample, num_threads=1))
    split = regex.compile(tok.pattern)
    _, split_s = timed(lambda: [split.findall(t) for t in sample])
    par_ids, par_s = timed(lambda: tok.encode_batch(sample, workers=workers, disallowed_special=(), backend="python"))
    assert par_ids == tt_ids
    return {
        "documents": len(sample), "mb": mb, "tiktoken_mbps": mb / tt_s, "python_mbps": mb / ours_s,
        "python_ratio": tt_s / ours_s, "target_python_ratio": 0.25, "tiktoken_batch_mbps": mb / tt_batch_s,
        "bulk_mbps": mb / bulk_s, "bulk_ratio": tt_s / bulk_s, "bulk_ratio_batch": tt_batch_s / bulk_s,
        "ids_identical": True, "regex_split_mbps": mb / split_s, "parallel_workers": workers,
        "parallel_mbps": mb / par_s,
    }  # fmt: skip


def print_encoding(e: dict) -> None:
    print(f"2. encoding {e['mb']:.1f} MB ({e['documents']:,} documents) on one thread")
    print(f"   tiktoken                 {e['tiktoken_mbps']:6.2f} MB/s")
    print(f"   scratchllm pure Python   {e['python_mbps']:6.2f} MB/s   ratio {e['python_ratio']:.2f}x "
          "(target >= 0.25x)")  # fmt: skip
    print(f"   tiktoken batch API       {e['tiktoken_batch_mbps']:6.2f} MB/s")
    print(f"   scratchllm bulk path     {e['bulk_mbps']:6.2f} MB/s   ratio {e['bulk_ratio']:.2f}x vs tiktoken, "
          f"{e['bulk_ratio_batch']:.2f}x vs its batch API (target ~1x); ids identical")  # fmt: skip
    print(f"   regex split alone        {e['regex_split_mbps']:6.2f} MB/s   (no BPE: the bound of a Python encoder)")
    print(f"   scratchllm pure Python, {e['parallel_workers']} processes: {e['parallel_mbps']:.2f} MB/s")


def slower(ratio: float) -> str:
    return f"{ratio:.2f}x slower" if ratio >= 1 else f"{1 / ratio:.2f}x faster"


def markdown(r: dict) -> str:
    t, e, c = r["training"], r["encoding"], r["corpus"]
    tiktoken = f"tiktoken {e['tiktoken_mbps']:.2f} MB/s"
    rows = [
        (f"train {t['vocab_size']:,} tokens on {c['documents']:,} documents ({c['mb']:.1f} MB, gpt4 pattern)",
         f"{t['scratchllm_s']:.1f} s ({t['counting_s']:.1f} s counting, {t['merging_s']:.1f} s merging)",
         f"Hugging Face `tokenizers` {t['hf_s']:.1f} s", f"{slower(t['ratio'])} (at most 4x)"),
        ("peak memory while training", f"{t['peak_rss_mb']:,.0f} MB", "", "(under 2 GB)"),
        (f"encode {e['mb']:.1f} MB, one thread, pure Python, cold cache", f"{e['python_mbps']:.2f} MB/s", tiktoken,
         f"{e['python_ratio']:.2f}x (at least 0.25x)"),
        (f"encode {e['mb']:.1f} MB, one thread, bulk path (`encode_batch(backend=\"tiktoken\")`)",
         f"{e['bulk_mbps']:.2f} MB/s", tiktoken,
         f"{e['bulk_ratio']:.2f}x ({e['bulk_ratio_batch']:.2f}x its batch API's speed), ids identical"),
    ]  # fmt: skip
    lines = ["| measurement | scratchllm | peer | ratio (target) |", "|---|---|---|---|"]
    return "\n".join(lines + ["| " + " | ".join(row) + " |" for row in rows]) + "\n"


def write_json(path: str, result: dict) -> None:
    atomic_write_text(path, json.dumps(result, indent=2) + "\n")
    atomic_write_text(Path(path).with_suffix(".md"), markdown(result))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="200 documents and vocab 4096 (a smoke run)")
    parser.add_argument("--json", metavar="PATH", help="write the results as JSON here, and a Markdown table beside")
    args = parser.parse_args()
    load = list(os.getloadavg())
    vocab = 4096 if args.quick else 32768
    limit = 200 if args.quick else 0
    texts = [d.text for d in open_corpus(CorpusConfig(split="train", max_documents=limit))]
    size_mb = sum(len(t.encode("utf-8", "surrogateescape")) for t in texts) / 1e6
    workers = default_workers()
    print(f"corpus: default (stdlib) train split, {len(texts):,} documents, {size_mb:.1f} MB; {workers} CPUs\n")
    tok, training = train(texts, vocab, workers)
    print_training(training)
    encoding = encode(tok, texts, workers)
    print_encoding(encoding)
    if args.json:
        write_json(args.json, {
            "command": shlex.join(["python", "benchmarks/tokenizer.py", *sys.argv[1:]]),
            "settings": {"quick": args.quick, "vocab_size": vocab, "max_documents": limit, "pattern": "gpt4",
                         "special_tokens": [SPECIAL], "workers": workers, "cpus": os.cpu_count()},
            "load_average": load, "corpus": {"split": "train", "documents": len(texts), "mb": size_mb},
            "training": training, "encoding": encoding,
        })  # fmt: skip


if __name__ == "__main__":
    main()

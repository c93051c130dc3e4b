"""Tokenizer benchmark: our pure-Python BPE against Hugging Face `tokenizers` (training) and tiktoken (encoding).

Same machine, same process, same input, one run; the ratios are what to quote, since absolute times drift on shared
machines. Run with `make bench` or `python benchmarks/tokenizer.py [--quick]`.

1. Training a 32,768-token vocabulary on the default corpus (train split, GPT-4 split pattern, one special token):
   our wall time / HF's BpeTrainer wall time (target: at most 4x). Both use every CPU.
2. Encoding on one thread, MB/s, with the trained tokenizer: our pure-Python encoder from a cold cache against
   tiktoken (target: at least 0.25x); and our bulk path (`encode_batch(backend="tiktoken")`) against tiktoken
   itself, with the ids checked identical.
"""

from __future__ import annotations

import argparse
import resource
import time

from scratchllm.data import CorpusConfig, open_corpus
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="200 documents and vocab 4096 (a smoke run)")
    args = parser.parse_args()
    vocab = 4096 if args.quick else 32768
    limit = 200 if args.quick else 0
    texts = [d.text for d in open_corpus(CorpusConfig(split="train", max_documents=limit))]
    size_mb = sum(len(t.encode("utf-8", "surrogateescape")) for t in texts) / 1e6
    workers = default_workers()
    print(f"corpus: default (stdlib) train split, {len(texts):,} documents, {size_mb:.1f} MB; {workers} CPUs\n")

    print(f"1. training, vocab {vocab:,}, pattern gpt4")
    tok, ours = timed(lambda: Tokenizer.train(texts, vocab, "gpt4", [SPECIAL], workers=workers))
    rss = peak_rss_mb()
    theirs = train_hf(texts, vocab, PATTERNS["gpt4"])
    r = tok.training
    print(f"   scratchllm  {ours:7.2f} s  (counting {r.seconds_counting:.2f} s, merging {r.seconds_merging:.2f} s, "
          f"peak RSS {rss:,.0f} MB)")  # fmt: skip
    print(f"   HF tokenizers {theirs:5.2f} s")
    print(f"   ratio ours/HF: {ours / theirs:.2f}x  (target <= 4x)\n")

    import tiktoken  # noqa: F401  (an oracle: installed by the test extra)

    sample = texts[: max(1, len(texts) // 4)]
    sample_mb = sum(len(t.encode("utf-8", "surrogateescape")) for t in sample) / 1e6
    enc = tok.to_tiktoken()
    print(f"2. encoding {sample_mb:.1f} MB ({len(sample):,} documents) on one thread")
    cold = Tokenizer.load_dict(tok.to_dict())  # a fresh instance: empty chunk cache
    ours_ids, ours_s = timed(lambda: [cold.encode_ordinary(t) for t in sample])
    tt_ids, tt_s = timed(lambda: [enc.encode_ordinary(t) for t in sample])
    assert ours_ids == tt_ids, "pure-Python ids differ from tiktoken's"
    bulk_ids, bulk_s = timed(lambda: tok.encode_batch(sample, workers=1, disallowed_special=(), backend="tiktoken"))
    assert bulk_ids == tt_ids, "bulk-path ids differ from tiktoken's"
    tt_batch_ids, tt_batch_s = timed(lambda: enc.encode_ordinary_batch(sample, num_threads=1))
    print(f"   tiktoken                 {sample_mb / tt_s:6.2f} MB/s")
    print(f"   scratchllm pure Python   {sample_mb / ours_s:6.2f} MB/s   ratio {tt_s / ours_s:.2f}x (target >= 0.25x)")
    print(f"   tiktoken batch API       {sample_mb / tt_batch_s:6.2f} MB/s")
    print(f"   scratchllm bulk path     {sample_mb / bulk_s:6.2f} MB/s   ratio {tt_s / bulk_s:.2f}x vs tiktoken, "
          f"{tt_batch_s / bulk_s:.2f}x vs its batch API (target ~1x); ids identical")  # fmt: skip
    par_ids, par_s = timed(lambda: tok.encode_batch(sample, workers=workers, disallowed_special=(), backend="python"))
    assert par_ids == tt_ids
    print(f"   scratchllm pure Python, {workers} processes: {sample_mb / par_s:.2f} MB/s")


if __name__ == "__main__":
    main()

"""`scratchllm generate` and `scratchllm export`: sample from a model, and hand it to Hugging Face.

A model comes from our checkpoint directory (``--checkpoint``: config.json, model.safetensors, tokenizer/) or from
a Hugging Face directory (``--hf``: GPT-2 or Llama in safetensors). A Hugging Face GPT-2 directory carries its
tokenizer as ``vocab.json`` + ``merges.txt``, which are GPT-2's ``encoder.json`` + ``vocab.bpe`` under other names,
so it loads with ``Tokenizer.from_gpt2``; otherwise ``--tokenizer DIR`` names one of ours.
"""

from __future__ import annotations

import codecs
import sys
from pathlib import Path

from ..model import GPT
from ..model.generate import generate, stream_generate
from ..tokenizer import Tokenizer
from ..train.checkpoint import check_tokenizer_fits, load_checkpoint
from .common import UsageError

BOS = "<|endoftext|>"


def load_model_and_tokenizer(args) -> tuple[GPT, Tokenizer]:
    """From --checkpoint or --hf (with --tokenizer or the directory's own GPT-2 files)."""
    if args.checkpoint:
        model, tokenizer = load_checkpoint(args.checkpoint)
    else:
        model = GPT.from_hf(args.hf)
        tokenizer = None
        hf = Path(args.hf)
        if not args.tokenizer and (hf / "vocab.json").is_file() and (hf / "merges.txt").is_file():
            tokenizer = Tokenizer.from_gpt2(hf / "vocab.json", hf / "merges.txt")
    if args.tokenizer:
        tokenizer = Tokenizer.load(args.tokenizer)
    if tokenizer is None:
        raise UsageError("this model directory has no tokenizer; pass --tokenizer DIR")
    check_tokenizer_fits(tokenizer, model.config)
    return model, tokenizer


def cmd_generate(args) -> int:
    model, tok = load_model_and_tokenizer(args)
    prompts = args.prompt or [sys.stdin.read()]
    bos = [tok.special_tokens[BOS]] if BOS in tok.special_tokens and not args.no_bos else []
    encoded = [bos + tok.encode(p, disallowed_special=()) for p in prompts]
    stops = [tok.special_tokens[BOS]] if BOS in tok.special_tokens else []
    options = dict(
        temperature=args.temperature, top_k=args.top_k, top_p=args.top_p, repetition_penalty=args.repetition_penalty,
        stop_tokens=stops, seed=args.seed,
    )  # fmt: skip
    try:
        if len(prompts) == 1 and not args.no_stream:
            print(prompts[0], end="", flush=True)
            decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")  # a token may end mid-character
            for step in stream_generate(model, encoded, args.max_new_tokens, **options):
                print(decoder.decode(tok.decode_bytes([step[0]])), end="", flush=True)
            print(decoder.decode(b"", final=True))
        else:
            for prompt, new in zip(prompts, generate(model, encoded, args.max_new_tokens, **options)):
                print(prompt + tok.decode(new))
                print("-" * 40)
    except ValueError as exc:  # generation's own checks: prompt too long, bad sampling settings
        raise UsageError(str(exc)) from None
    return 0


def cmd_export(args) -> int:
    model, tok = load_model_and_tokenizer(args)
    out = Path(args.out)
    model.save_hf(out)  # config.json + model.safetensors, loadable by transformers
    tok.save_hf(out / "tokenizer.json")
    (out / "tokenizer_config.json").write_text(
        '{"tokenizer_class": "PreTrainedTokenizerFast"'
        + (f', "bos_token": "{BOS}", "eos_token": "{BOS}"' if BOS in tok.special_tokens else "")
        + "}\n"
    )
    print(f"wrote a Hugging Face model directory {out} (AutoModelForCausalLM / AutoTokenizer load it)")
    return 0


def _add_model_source(p) -> None:
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--checkpoint", metavar="DIR", help="a scratchllm checkpoint directory")
    src.add_argument("--hf", metavar="DIR", help="a Hugging Face GPT-2 or Llama directory (safetensors)")
    p.add_argument("--tokenizer", metavar="DIR", help="tokenizer directory (default: the model's own)")


def add_parsers(stages) -> None:
    p = stages.add_parser("generate", help="sample text from a model (KV cache, temperature, top-k/top-p)")
    _add_model_source(p)
    p.add_argument("--prompt", action="append", help="a prompt (repeat for a batch; default: read stdin)")
    p.add_argument("--max-new-tokens", type=int, default=200, help="tokens to generate (default 200)")
    p.add_argument("--temperature", type=float, default=0.8, help="0 = greedy (default 0.8)")
    p.add_argument("--top-k", type=int, default=50, help="keep the k most likely tokens; 0 = off (default 50)")
    p.add_argument("--top-p", type=float, default=0.95, help="nucleus sampling mass; 1 = off (default 0.95)")
    p.add_argument("--repetition-penalty", type=float, default=1.0, help="> 1 discourages repeats (default 1)")
    p.add_argument("--seed", type=int, help="make sampling reproducible")
    p.add_argument("--no-bos", action="store_true", help=f"do not start the prompt with {BOS}")
    p.add_argument("--no-stream", action="store_true", help="print when done instead of token by token")
    p.set_defaults(func=cmd_generate)

    p = stages.add_parser("export", help="write a model as a Hugging Face directory (safetensors + tokenizer.json)")
    _add_model_source(p)
    p.add_argument("--out", required=True, metavar="DIR", help="output directory (replaced if it exists)")
    p.set_defaults(func=cmd_export)

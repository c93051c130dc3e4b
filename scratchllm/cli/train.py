"""`scratchllm train`: pretrain a GPT on token shards (thin call into scratchllm.train.trainer).

    scratchllm train --data runs/tokens --tokenizer runs/tokenizer --out runs/tiny train.max_steps=200
    scratchllm train --out runs/tiny --resume          # continue from the newest checkpoint of the run
    torchrun --nproc-per-node 2 -m scratchllm train ... parallel.dp_shard=ddp   # one process per device

The model's vocabulary follows the tokenizer unless ``model.vocab_size`` is set explicitly.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field, replace

from ..model import GPT, GPTConfig
from ..parallel import dist
from ..parallel.dist import DistributedError, ParallelConfig
from ..tokenizer import Tokenizer
from ..train.checkpoint import check_tokenizer_fits
from ..train.config import TrainConfig
from ..train.trainer import seed_everything, train
from .common import add_config_args, load_job, progress


@dataclass
class TrainJob:
    """`scratchllm train`: the model to build, how to train it, which data and tokenizer, where the run goes."""

    model: GPTConfig = field(default_factory=GPTConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    # How to spread the run over the processes torchrun starts; a single process ignores it.
    parallel: ParallelConfig = field(default_factory=ParallelConfig)
    # Directory of train_NNNNN.bin / val_NNNNN.bin shards and tokenize.json (from `scratchllm tokenize`).
    data: str = "runs/tokens"
    # Directory of the tokenizer that made the shards (their tokenizer hash must match).
    tokenizer: str = "runs/tokenizer"
    # The run directory: config.toml, metrics.jsonl, loss.png, checkpoints/.
    out: str = "runs/train"


def cmd_train(args) -> int:
    job = load_job(TrainJob, args, {"data": "data", "tokenizer": "tokenizer", "out": "out"})
    tok = Tokenizer.load(job.tokenizer)
    if job.model.vocab_size == GPTConfig.vocab_size and tok.vocab_size != job.model.vocab_size:
        # The default vocabulary is a placeholder: size the embedding to the tokenizer actually used.
        job = replace(job, model=replace(job.model, vocab_size=tok.vocab_size))
    check_tokenizer_fits(tok, job.model)
    dist.init_distributed(job.parallel)  # under torchrun; a single process gets no process group
    seed_everything(job.train.seed)  # the initialization is part of the run: same seed, same weights on every rank
    model = GPT.build(job.model, device=dist.device())
    say = print if dist.is_rank0() else lambda *a, **k: None  # one voice, not one per process
    n_params = sum(p.numel() for p in model.parameters())
    tokens = job.train.tokens_per_step * (dist.world_size() // (job.parallel.tp * job.parallel.pp))
    say(f"model: {n_params:,} parameters; {job.train.max_steps} steps of {tokens:,} tokens")
    try:
        final = train(
            model, tok, job.data, job.train, job.out, resume=args.resume, progress=progress(), job=job,
            parallel=job.parallel,
        )  # fmt: skip
    except DistributedError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    dist.destroy()  # every rank leaves together (it also runs at exit, where a late rank could abort)
    if final.get("interrupted"):
        say(f"interrupted: stopped after step {final['step'] + 1} and saved a checkpoint in {job.out}/checkpoints; "
              "continue with --resume", file=sys.stderr)  # fmt: skip
        return 130
    summary = f"step {final['step']}: loss {final['loss']:.4f}" if final else "nothing left to train"
    if "val_loss" in final:
        summary += f", val loss {final['val_loss']:.4f} (ppl {final['val_ppl']:.2f})"
    say(f"{summary}; run in {job.out}")
    return 0


def add_parsers(stages) -> None:
    p = stages.add_parser("train", help="pretrain a GPT on token shards")
    add_config_args(p)
    p.add_argument("--data", metavar="DIR", help="token shards from `scratchllm tokenize` (default runs/tokens)")
    p.add_argument("--tokenizer", metavar="DIR", help="the tokenizer that made the shards (default runs/tokenizer)")
    p.add_argument("--out", metavar="RUN_DIR", help="run directory (default runs/train)")
    p.add_argument("--resume", action="store_true", help="continue from the newest checkpoint in RUN_DIR")
    p.set_defaults(func=cmd_train)

"""`scratchllm sft`: instruction finetuning, full or LoRA (thin call into scratchllm.finetune.sft).

    scratchllm sft --checkpoint runs/demo/train/checkpoints/best --data default --out runs/sft
    scratchllm sft --checkpoint CKPT --data ../shared/data/instructions/instruction-data.json \\
        --config configs/sft/lora.toml lora.rank=16 max_steps=200

``--data default`` is the offline instruction set made from the standard library's documented functions
(finetune/stdlib_tasks.py). The finetuned checkpoint is ``OUT/checkpoints/final``; `scratchllm eval humaneval
--checkpoint` prompts it through its chat template.
"""

from __future__ import annotations

import torch

from ..finetune.config import FinetuneConfig
from ..finetune.data import read_examples
from ..finetune.sft import answer, finetune
from ..finetune.stdlib_tasks import stdlib_instructions
from ..train.checkpoint import load_checkpoint
from .common import UsageError, add_config_args, load_job, progress


def cmd_sft(args) -> int:
    cfg = load_job(FinetuneConfig, args, {})
    model, tokenizer = load_checkpoint(args.checkpoint, device="cuda" if torch.cuda.is_available() else "cpu")
    if tokenizer is None:
        raise UsageError(f"{args.checkpoint} has no tokenizer/; finetuning needs the tokenizer the model trained with")
    examples = stdlib_instructions() if args.data == "default" else read_examples(args.data)
    summary = finetune(model, tokenizer, examples, cfg, args.out, progress=progress())
    line = f"done: {summary['steps']} steps, training loss {summary['train_loss']:.4f}"
    if summary["val_loss"] is not None:
        line += f"; held-out loss {summary['val_loss_before']:.4f} -> {summary['val_loss']:.4f}"
    print(f"{line}\ncheckpoint: {summary['checkpoint']}; report: {args.out}/report.md")
    for question in args.ask or []:
        print(f"--- {question}\n{answer(model, _template(summary), question)}")
    return 0


def _template(summary: dict):
    from ..finetune.template import ChatTemplate
    from ..tokenizer import Tokenizer

    return ChatTemplate(Tokenizer.load(f"{summary['checkpoint']}/tokenizer"))


def add_parsers(stages) -> None:
    p = stages.add_parser("sft", help="instruction finetuning (full or LoRA) with the chat template")
    add_config_args(p)
    p.add_argument("--checkpoint", metavar="DIR", required=True, help="the pretrained checkpoint to finetune")
    p.add_argument(
        "--data", metavar="FILE|default", default="default",
        help="Alpaca-style JSON or chat-messages JSONL; 'default' (the default) builds tasks from the standard library",
    )  # fmt: skip
    p.add_argument("--out", metavar="RUN_DIR", default="runs/sft", help="run directory (default runs/sft)")
    p.add_argument("--ask", action="append", metavar="TEXT", help="print the finetuned model's answer (repeatable)")
    p.set_defaults(func=cmd_sft)

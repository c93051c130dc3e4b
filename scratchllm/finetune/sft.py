"""Supervised finetuning (SFT): teach a pretrained model to answer, with the loss on the answer only.

    tokenizer += chat tokens; model grows rows for them (vocab.py)
    examples -> chat template -> (ids, mask) -> length rule -> train / held-out split (data.py)
    optionally: freeze the model and add LoRA adapters (lora.py)
    for each step: padded micro-batches, one accumulated step normalized by the answer tokens of the whole batch
    held-out loss before, during and after; save a checkpoint with merged weights (and the adapter alone)

The step is the pretraining one (train/step.py ``accumulated_step``), with the same AdamW parameter groups
(train/optim.py) and schedule (train/schedule.py): the only differences of finetuning are in the data, whose prompt
tokens have targets of -100, so the mean is taken over the assistant's tokens of the whole batch. (Dividing each
example's loss by its own answer length instead would weigh a one-word answer's tokens like a page's.)

A run writes, in ``out``: ``config.toml`` (the resolved FinetuneConfig), ``metrics.jsonl``, ``loss.png``,
``report.md`` and ``checkpoints/final`` (a checkpoint ``load_checkpoint`` reads: merged weights, the tokenizer with its
chat tokens; under LoRA also ``adapter.safetensors`` and ``adapter_config.json``).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path

import torch
from tqdm.auto import tqdm

from ..config import ConfigError, save_config
from ..eval.perplexity import perplexity, score_windows
from ..model import GPT
from ..tokenizer import Tokenizer
from ..train.checkpoint import save_checkpoint
from ..train.memory import peak_memory_bytes, reset_peak_memory
from ..train.metrics import METRICS_FILE, MetricsLog, plot_loss
from ..train.optim import build_optimizer
from ..train.report import write_report
from ..train.schedule import lr_at, set_lr
from ..train.step import accumulated_step
from ..train.trainer import TrainingError, seed_everything
from .config import FinetuneConfig
from .data import (
    Example,
    InstructionDataError,
    LengthReport,
    encode_examples,
    eval_batches,
    split_examples,
    step_batches,
)
from .lora import adapter_state, apply_lora, remove_lora, save_adapter
from .template import ChatTemplate, add_chat_tokens
from .vocab import grow_vocab

FINAL = "checkpoints/final"


def prepare_chat_model(model: GPT, tokenizer: Tokenizer) -> tuple[Tokenizer, ChatTemplate]:
    """The tokenizer with the chat tokens and its template; the model grows rows for any new token (in place)."""
    chat = add_chat_tokens(tokenizer)
    grow_vocab(model, tokenizer.vocab_size, chat.vocab_size)
    return chat, ChatTemplate(chat)


def answer(model: GPT, template: ChatTemplate, instruction: str, max_new_tokens: int = 120, **sampling) -> str:
    """The model's reply to one instruction (greedy unless ``sampling`` says otherwise), up to its ``<|end|>``."""
    prompt = template.prompt(instruction)[-(model.config.block_size - max_new_tokens) :]
    new = model.generate([prompt], max_new_tokens, stop_tokens=template.stop_tokens, **({"temperature": 0} | sampling))
    return template.tokenizer.decode(new[0])


def held_out_loss(model: GPT, encoded, micro_batch_size: int) -> float | None:
    """Mean cross-entropy over the held-out examples' answer tokens (None without held-out examples)."""
    if not encoded:
        return None
    total, count = score_windows(model, eval_batches(encoded, micro_batch_size))
    return total / count


def count_parameters(model: torch.nn.Module) -> tuple[int, int]:
    """(trainable, total) parameters, each tensor once."""
    params = list(model.parameters())
    return sum(p.numel() for p in params if p.requires_grad), sum(p.numel() for p in params)


def finetune(
    model: GPT, tokenizer: Tokenizer, examples: Sequence[Example], cfg: FinetuneConfig, out: str | Path,
    progress: bool = False, log=print, job=None,
) -> dict:  # fmt: skip
    """Finetune ``model`` (pretrained with ``tokenizer``) on ``examples`` as ``cfg`` says; write the run to ``out``.

    Everything that can be wrong with the input is checked before anything is written. ``job``: the config to write
    as ``out/config.toml`` (default ``cfg``). Returns a summary (losses, steps, parameters, length rule counts)."""
    block = model.config.block_size
    if cfg.max_length > block + 1:
        raise ConfigError(f"max_length ({cfg.max_length}) exceeds the model's context ({block} tokens, +1 target)")
    chat_tok, template = prepare_chat_model(model, tokenizer)
    train_set, val_set = split_examples(examples, cfg.val_fraction)
    length = cfg.max_length or block + 1
    train_enc, train_report = encode_examples(train_set, template, length, cfg.too_long, cfg.system_prompt)
    val_enc, val_report = encode_examples(val_set, template, length, cfg.too_long, cfg.system_prompt)
    if not train_enc:
        raise InstructionDataError(
            f"no training example is left ({train_report.format()}); lower val_fraction, raise max_length or use "
            "too_long=truncate"
        )
    steps = cfg.steps_for(len(train_enc))
    tcfg = cfg.train_config(steps)
    seed_everything(cfg.seed)
    if cfg.method == "lora":
        apply_lora(model, cfg.lora)
    trainable, total = count_parameters(model)
    log(f"data: train {train_report.format()}; held out {len(val_enc):,} examples")
    log(f"{cfg.method} finetuning: {trainable:,} of {total:,} parameters train; {steps} steps of {cfg.batch_size}")

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    save_config(job if job is not None else cfg, out / "config.toml")
    device = model.lm_head.weight.device
    optimizer = build_optimizer(model, tcfg)
    val_before = held_out_loss(model, val_enc, cfg.micro_batch_size)
    record: dict = {}
    model.train()
    with MetricsLog(out, tensorboard=False) as metrics:
        if val_before is not None:
            metrics.log({"step": -1, "val_loss": val_before, "val_ppl": perplexity(val_before)})
        for step in tqdm(range(steps), desc="finetuning", unit="step", disable=not progress):
            lr = lr_at(step, tcfg)
            set_lr(optimizer, lr)
            reset_peak_memory(device)
            t0 = time.perf_counter()
            micro = [tuple(t.to(device) for t in mb) for mb in
                     step_batches(train_enc, step, cfg.batch_size, cfg.micro_batch_size, cfg.seed)]  # fmt: skip
            result = accumulated_step(model, micro, optimizer, tcfg.grad_clip)
            step_time = time.perf_counter() - t0
            if not result.updated:
                raise TrainingError(f"step {step}: the loss is {result.loss}; finetuning diverged (lower lr)")
            record = {
                "step": step, "loss": result.loss, "lr": lr, "grad_norm": result.grad_norm, "tokens": result.tokens,
                "tokens_per_s": result.tokens / step_time, "step_time": step_time,
                "peak_memory": peak_memory_bytes(device),
            }  # fmt: skip
            done = step + 1
            if val_enc and ((cfg.eval_every and done % cfg.eval_every == 0) or done == steps):
                val = held_out_loss(model, val_enc, cfg.micro_batch_size)
                record |= {"val_loss": val, "val_ppl": perplexity(val)}
            metrics.log(record)

    save_final(model, chat_tok, cfg, out / FINAL)
    plot_loss(out / METRICS_FILE, out / "loss.png")
    summary = {
        "method": cfg.method, "steps": steps, "trainable_parameters": trainable, "parameters": total,
        "train_loss": record.get("loss"), "val_loss_before": val_before, "val_loss": record.get("val_loss"),
        "train_examples": len(train_enc), "val_examples": len(val_enc), "checkpoint": str(out / FINAL),
    }  # fmt: skip
    write_report(out, title=f"Finetuning run {out.name}", notes=_notes(summary, train_report, val_report))
    return summary


def save_final(model: GPT, tokenizer: Tokenizer, cfg: FinetuneConfig, target: Path) -> None:
    """The finished model as a plain checkpoint (adapters merged into the weights), plus the adapter alone."""
    adapters = adapter_state(model) if cfg.method == "lora" else None
    remove_lora(model)  # no-op after full finetuning
    extra = (lambda tmp: save_adapter(adapters, cfg.lora, tmp)) if adapters else None
    save_checkpoint(target, model, tokenizer, extra_files=extra)


def _notes(summary: dict, train: LengthReport, val: LengthReport) -> str:
    lines = [
        f"{summary['method']} finetuning, {summary['trainable_parameters']:,} of {summary['parameters']:,} "
        f"parameters trained. Training data: {train.format()}. Held out: {val.format()}.",
    ]
    if summary["val_loss"] is not None:
        lines.append(
            f"Held-out loss on the answers: {summary['val_loss_before']:.4f} before, "
            f"**{summary['val_loss']:.4f} after** (nats per answer token)."
        )
    lines.append(f"Checkpoint: `{FINAL}` (merged weights, tokenizer with the chat tokens).")
    return "\n\n".join(lines)


def demo_finetune(model: GPT, tokenizer: Tokenizer, examples: Sequence[Example], cfg: FinetuneConfig, out, log=print):
    """The demo's stage: one held-out instruction answered before and after finetuning ``model`` on ``examples``.
    The question is the held-out example with the shortest answer, so the whole answer fits on screen."""
    chat_tok, template = prepare_chat_model(model, tokenizer)
    _, held_out = split_examples(examples, cfg.val_fraction)
    pool = held_out or list(examples)
    question = min(pool, key=lambda e: (len(e.messages[-1].content), e.group)).messages[0].content
    before = answer(model, template, question)
    summary = finetune(model, chat_tok, examples, cfg, out, log=log)
    return {"question": question, "before": before, "after": answer(model, template, question), **summary}

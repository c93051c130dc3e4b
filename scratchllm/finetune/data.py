"""Instruction data: reading it, rendering it with the loss mask, the length rule, the split, and padded batches.

Two formats are read, each a list of examples:

- Alpaca-style JSON (Taori et al. 2023): ``[{"instruction": ..., "input": ..., "output": ...}, ...]``; the
  instruction and the optional input become the user's turn, the output the assistant's.
- Chat messages, JSON lines (or a JSON list): ``{"messages": [{"role": "user", "content": ...}, ...]}``, as in
  OpenAI's finetuning format; every assistant turn is a target.

Each example is rendered by the chat template into ids and a mask (True where the loss applies, see template.py).
An example longer than ``max_length`` is cut ("truncate": its end is lost; if no target token is left it is dropped)
or left out ("drop"); ``LengthReport`` counts each outcome, so a run says how much of its data it used.

Batches are right-padded to their longest example. In a causal model a token attends only to earlier positions, so
padding placed *after* an example cannot change any of its logits: no attention mask is needed, only targets of -100
on the padding (checked in the tests against each example run alone). Packing several examples into one row would
waste less compute but needs a block-diagonal mask and restarted positions; padding keeps every example's computation
identical to running it alone.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch

from ..data.readers import split_of
from ..model.loss import IGNORE_INDEX
from .template import ChatTemplate, ChatTemplateError, Message, as_message


class InstructionDataError(ValueError):
    """An instruction file is missing, empty, or not in one of the two accepted shapes."""


@dataclass(frozen=True)
class Example:
    """One conversation to learn from; ``group`` decides its split (examples of one group stay together)."""

    messages: tuple[Message, ...]
    group: str


@dataclass
class LengthReport:
    """What the length rule did to a set of examples."""

    kept: int = 0  # examples used whole
    truncated: int = 0  # examples cut to max_length and used
    dropped_too_long: int = 0  # examples over max_length left out ("drop", or nothing to learn was left)
    dropped_no_answer: int = 0  # examples with no assistant tokens at all
    lengths: list[int] = field(default_factory=list, repr=False)  # tokens of each used example

    def format(self) -> str:
        used = self.kept + self.truncated
        return (
            f"{used:,} examples used ({self.truncated:,} truncated), {self.dropped_too_long:,} dropped as too long, "
            f"{self.dropped_no_answer:,} without an answer"
        )


# ------------------------------------------------------------------------------------------------- reading


def read_examples(path: str | Path) -> list[Example]:
    """The examples of an Alpaca-style JSON file or a chat-messages JSON-lines file (either shape in either)."""
    path = Path(path)
    if not path.is_file():
        raise InstructionDataError(f"instruction file {path} does not exist")
    text = path.read_text(encoding="utf-8")
    if not text.strip():
        raise InstructionDataError(f"instruction file {path} is empty")
    try:
        if text.lstrip().startswith("["):
            records = json.loads(text)
            where = [f"{path}: record {i}" for i in range(len(records))]
        else:
            lines = [(n, line) for n, line in enumerate(text.splitlines(), 1) if line.strip()]
            records = [json.loads(line) for _, line in lines]
            where = [f"{path}:{n}" for n, _ in lines]
    except json.JSONDecodeError as exc:
        raise InstructionDataError(
            f"{path} is neither a JSON list nor JSON lines ({exc.msg} at line {exc.lineno}); see docs/06 6.2"
        ) from None
    examples = [to_example(record, place) for record, place in zip(records, where)]
    if not examples:
        raise InstructionDataError(f"instruction file {path} holds no examples")
    return examples


def to_example(record, where: str = "record") -> Example:
    """An Example from one record: ``{"messages": [...]}`` or ``{"instruction", "input"?, "output"}``."""
    if not isinstance(record, dict):
        raise InstructionDataError(f"{where}: an example must be a JSON object, got {type(record).__name__}")
    if "messages" in record:
        if not isinstance(record["messages"], list) or not record["messages"]:
            raise InstructionDataError(f"{where}: 'messages' must be a non-empty list of {{role, content}}")
        try:
            messages = tuple(as_message(m) for m in record["messages"])
        except ChatTemplateError as exc:
            raise InstructionDataError(f"{where}: {exc}") from None
    elif "instruction" in record and "output" in record:
        fields = [record["instruction"], record.get("input") or "", record["output"]]
        if not all(isinstance(f, str) for f in fields):
            raise InstructionDataError(f"{where}: instruction, input and output must be strings")
        prompt = fields[0] + (f"\n\n{fields[1]}" if fields[1] else "")
        messages = (Message("user", prompt), Message("assistant", fields[2]))
    else:
        raise InstructionDataError(
            f"{where}: expected {{'messages': [...]}} or {{'instruction', 'input', 'output'}}; got keys "
            f"{sorted(record)[:6]}"
        )
    return Example(messages, json.dumps([[m.role, m.content] for m in messages]))


# ------------------------------------------------------------------------------------------------- encoding


def split_examples(examples: Sequence[Example], val_fraction: float) -> tuple[list[Example], list[Example]]:
    """(train, val): a stable hash of each example's group decides (scratchllm.data.readers.split_of)."""
    train = [e for e in examples if split_of(e.group, val_fraction) == "train"]
    val = [e for e in examples if split_of(e.group, val_fraction) == "val"]
    return train, val


def encode_examples(
    examples: Sequence[Example], template: ChatTemplate, max_length: int, too_long: str = "truncate",
    system_prompt: str = "",
) -> tuple[list[tuple[list[int], list[bool]]], LengthReport]:  # fmt: skip
    """Render each example to (ids, mask) under the length rule; the encoded examples and what the rule did."""
    report, encoded = LengthReport(), []
    for example in examples:
        messages = list(example.messages)
        if system_prompt and messages[0].role != "system":
            messages.insert(0, Message("system", system_prompt))
        ids, mask = template.render_with_mask(messages)
        if not any(mask):
            report.dropped_no_answer += 1
            continue
        if len(ids) > max_length:
            ids, mask = ids[:max_length], mask[:max_length]
            if too_long == "drop" or not any(mask[1:]):
                report.dropped_too_long += 1
                continue
            report.truncated += 1
        else:
            report.kept += 1
        encoded.append((ids, mask))
        report.lengths.append(len(ids))
    return encoded, report


def pad_batch(encoded: Sequence[tuple[list[int], list[bool]]], pad_id: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-padded (inputs, targets), both (B, T) with T = longest example - 1: the model reads ``ids[:-1]`` and
    predicts ``ids[1:]``; a target is -100 where the mask is False (prompt, template) and on padding."""
    T = max(len(ids) for ids, _ in encoded) - 1
    inputs = torch.full((len(encoded), T), pad_id, dtype=torch.long)  # (B, T)
    targets = torch.full((len(encoded), T), IGNORE_INDEX, dtype=torch.long)  # (B, T)
    for row, (ids, mask) in enumerate(encoded):
        n = len(ids) - 1
        inputs[row, :n] = torch.tensor(ids[:-1])
        targets[row, :n] = masked_targets(torch.tensor(ids[1:]), torch.tensor(mask[1:]))
    return inputs, targets


def masked_targets(next_ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """The next-token ids as targets where ``mask`` is True, -100 (no loss, no gradient) elsewhere."""
    return next_ids.masked_fill(~mask, IGNORE_INDEX)


def step_batches(
    encoded: Sequence[tuple[list[int], list[bool]]], step: int, batch_size: int, micro_batch_size: int, seed: int
) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """The micro-batches of optimizer step ``step``: the examples in a shuffled order (a new order each epoch, a
    pure function of (seed, epoch)), ``batch_size`` of them a step, padded per micro-batch."""
    n, orders, picks = len(encoded), {}, []
    for i in range(step * batch_size, (step + 1) * batch_size):
        epoch, pos = divmod(i, n)
        if epoch not in orders:
            orders[epoch] = torch.randperm(n, generator=torch.Generator().manual_seed(seed + epoch)).tolist()
        picks.append(encoded[orders[epoch][pos]])
    return [pad_batch(picks[i : i + micro_batch_size]) for i in range(0, len(picks), micro_batch_size)]


def eval_batches(encoded: Sequence[tuple[list[int], list[bool]]], micro_batch_size: int):
    """Every example once, in order, padded per micro-batch (examples sorted by length: less padding)."""
    ordered = sorted(encoded, key=lambda e: len(e[0]))
    return [pad_batch(ordered[i : i + micro_batch_size]) for i in range(0, len(ordered), micro_batch_size)]

"""The checkpoint directory: everything needed to use (and later, to resume) a model, written so a crash never
leaves a half-written one.

    DIR/config.json          the model's GPTConfig
    DIR/model.safetensors    the weights (safetensors: no pickle, memory-mappable); a tied head is stored once
    DIR/tokenizer/           the tokenizer the model was trained with (optional)
    DIR/train_state/         optimizer, step, RNG and data position (added by the trainer)

``save_checkpoint`` writes into a temporary sibling directory and renames it over the target, so readers see either
the old checkpoint or the new one. ``load_checkpoint`` checks what it reads: unknown config keys, weights whose
shapes do not match the config, and a tokenizer with more ids than the model has embedding rows are refused with a
message that says what to do.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from ..config import ConfigError
from ..model import GPT, GPTConfig
from ..tokenizer import Tokenizer

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
TOKENIZER_DIR = "tokenizer"


class CheckpointError(ValueError):
    """A checkpoint directory is missing, damaged, or does not fit the model or tokenizer it is used with."""


def save_checkpoint(
    directory: str | Path,
    model: GPT,
    tokenizer: Tokenizer | None = None,
    extra_files: Callable[[Path], None] | None = None,
    state: dict[str, torch.Tensor] | None = None,
) -> Path:
    """Write ``model`` (and its tokenizer) to ``directory`` atomically; an existing checkpoint there is replaced.

    ``extra_files(tmp)`` may write more into the temporary directory before the rename (the trainer adds
    ``train_state/`` this way), so the extra files appear together with the weights or not at all. ``state``: the
    weights to write instead of ``model.state_dict()``, e.g. gathered whole from a sharded model (``train/state.py``);
    ``model`` then only supplies the config."""
    directory = Path(directory)
    directory.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{directory.name}.", dir=directory.parent))
    try:
        config = dataclasses.asdict(model.config)
        (tmp / CONFIG_FILE).write_text(json.dumps(config, indent=2) + "\n")
        state = {k: v.detach().contiguous().cpu() for k, v in (state or model.state_dict()).items()}
        if model.config.tie_embeddings:
            state.pop("lm_head.weight", None)  # the same tensor as tok_emb.weight; safetensors refuses shared storage
        save_file(state, str(tmp / WEIGHTS_FILE), metadata={"format": "pt"})
        if tokenizer is not None:
            tokenizer.save(tmp / TOKENIZER_DIR)
        if extra_files is not None:
            extra_files(tmp)
        _replace_dir(tmp, directory)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return directory


def _replace_dir(new: Path, target: Path) -> None:
    """Move ``new`` to ``target``; if ``target`` exists, swap it out first and delete it only after the move."""
    if not target.exists():
        os.replace(new, target)
        return
    old = target.with_name(f".{target.name}.old")
    shutil.rmtree(old, ignore_errors=True)
    os.replace(target, old)
    os.replace(new, target)
    shutil.rmtree(old, ignore_errors=True)


def read_config(directory: str | Path) -> GPTConfig:
    """The GPTConfig stored in a checkpoint directory."""
    path = Path(directory) / CONFIG_FILE
    if not path.is_file():
        raise CheckpointError(f"{directory} is not a checkpoint: {CONFIG_FILE} is missing")
    try:
        fields = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise CheckpointError(f"{path} is not valid JSON ({exc}); the checkpoint is damaged") from None
    known = {f.name for f in dataclasses.fields(GPTConfig)}
    unknown = sorted(set(fields) - known)
    if unknown:
        raise CheckpointError(f"{path} has unknown model settings {unknown}; was it written by a newer version?")
    try:
        return GPTConfig(**fields)
    except (ConfigError, TypeError) as exc:
        raise CheckpointError(f"{path}: {exc}") from None


def load_checkpoint(
    directory: str | Path, device: str | torch.device = "cpu", with_tokenizer: bool = True
) -> tuple[GPT, Tokenizer | None]:
    """Load the model (and tokenizer, if the checkpoint has one) from a checkpoint directory."""
    directory = Path(directory)
    cfg = read_config(directory)
    try:
        state = load_file(str(directory / WEIGHTS_FILE), device=str(device))
    except (FileNotFoundError, SafetensorError, OSError) as exc:
        raise CheckpointError(f"cannot read {directory / WEIGHTS_FILE}: {exc}") from None
    model = GPT.build(cfg, device=device)
    load_weights(model, state, str(directory / WEIGHTS_FILE))
    tokenizer = None
    if with_tokenizer and (directory / TOKENIZER_DIR).is_dir():
        tokenizer = Tokenizer.load(directory / TOKENIZER_DIR)
        check_tokenizer_fits(tokenizer, cfg)
    return model, tokenizer


def load_weights(model: GPT, state: dict[str, torch.Tensor], source: str) -> None:
    """Copy ``state`` into ``model``, naming the first tensor whose name or shape does not fit."""
    state = check_weights(model, state, source)
    model.load_state_dict(state, strict=False)
    model.tie_weights()


def check_weights(model: GPT, state: dict[str, torch.Tensor], source: str) -> dict[str, torch.Tensor]:
    """Refuse ``state`` unless it has exactly ``model``'s tensors with their shapes (a sharded model's DTensors report
    their whole shape); returns it without a tied head's duplicate."""
    expected = model.state_dict()
    if model.config.tie_embeddings:
        expected.pop("lm_head.weight")
        state = {k: v for k, v in state.items() if k != "lm_head.weight"}
    missing, unexpected = sorted(expected.keys() - state.keys()), sorted(state.keys() - expected.keys())
    if missing or unexpected:
        raise CheckpointError(
            f"{source} does not fit the model config: missing {missing[:3]}, unexpected {unexpected[:3]}; "
            "the weights were saved from a different architecture"
        )
    for name, tensor in state.items():
        if tensor.shape != expected[name].shape:
            raise CheckpointError(
                f"{source}: {name} has shape {tuple(tensor.shape)} but the config needs {tuple(expected[name].shape)};"
                " the weights and config.json come from different models"
            )
    return state


def check_tokenizer_fits(tokenizer: Tokenizer, cfg: GPTConfig) -> None:
    """A tokenizer may use fewer ids than the model has rows (padded vocabularies), never more."""
    if tokenizer.vocab_size > cfg.vocab_size:
        raise CheckpointError(
            f"the tokenizer has {tokenizer.vocab_size} ids but the model's embedding has only {cfg.vocab_size} rows; "
            "use the tokenizer the model was trained with"
        )

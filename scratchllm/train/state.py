"""The training checkpoint: a model checkpoint plus ``train_state/``, everything a run needs to continue exactly.

    DIR/config.json, DIR/model.safetensors, DIR/tokenizer/     as written by ``checkpoint.save_checkpoint``
    DIR/train_state/optimizer.pt    the optimizer's state_dict: plain tensors, numbers and lists (``torch.save``)
    DIR/train_state/state.json      completed steps, the loader's position, RNG states, the config, extras

Everything goes into the temporary directory that ``save_checkpoint`` renames into place, so a crash leaves either
the previous checkpoint or the new one, never weights from one step and an optimizer from another.

Bit-identical resumption needs every source of randomness and order restored, not only the weights: AdamW's moment
estimates and step counts (``optimizer.pt``), the data position (the loader's step; its batches are a pure function
of seed and step), and the RNG streams of Python, NumPy and torch (dropout draws from torch's). The optimizer file is
read back with ``torch.load(weights_only=True)``, which refuses anything but tensors and plain containers, so a
checkpoint from elsewhere cannot run code when loaded.
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file

from ..model import GPT
from ..tokenizer import Tokenizer
from .checkpoint import WEIGHTS_FILE, CheckpointError, load_weights, save_checkpoint

STATE_DIR = "train_state"
OPTIMIZER_FILE = "optimizer.pt"
STATE_FILE = "state.json"


def rng_state() -> dict[str, Any]:
    """The states of Python's, NumPy's and torch's CPU generators (and every GPU's), as JSON-friendly lists."""
    version, internal, gauss = random.getstate()
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    state = {
        "python": [version, list(internal), gauss],
        "numpy": [kind, keys.tolist(), int(pos), int(has_gauss), float(cached)],
        "torch": torch.get_rng_state().tolist(),  # a uint8 tensor: its bytes as a list of small ints
    }
    if torch.cuda.is_available():
        state["cuda"] = [s.tolist() for s in torch.cuda.get_rng_state_all()]  # one generator per GPU
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore what :func:`rng_state` recorded."""
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    kind, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, np.array(keys, dtype=np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(torch.tensor(state["torch"], dtype=torch.uint8))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([torch.tensor(s, dtype=torch.uint8) for s in state["cuda"]])


def save_training_checkpoint(
    directory: str | Path,
    model: GPT,
    tokenizer: Tokenizer | None,
    optimizer: torch.optim.Optimizer,
    loader_state: dict,
    step: int,
    extra: dict | None = None,
) -> Path:
    """Write model, tokenizer and training state to ``directory`` atomically. ``step`` counts completed updates;
    ``extra`` (JSON-serializable: the config, the best validation loss...) is stored in ``state.json``."""
    state = {"step": step, "loader": loader_state, "rng": rng_state(), "extra": extra or {}}

    def write_train_state(tmp: Path) -> None:
        (tmp / STATE_DIR).mkdir()
        torch.save(optimizer.state_dict(), tmp / STATE_DIR / OPTIMIZER_FILE)
        (tmp / STATE_DIR / STATE_FILE).write_text(json.dumps(state) + "\n")

    return save_checkpoint(directory, model, tokenizer, extra_files=write_train_state)


def load_training_checkpoint(directory: str | Path, model: GPT, optimizer: torch.optim.Optimizer) -> dict:
    """Load weights into ``model`` and state into ``optimizer`` (both built as for the original run), restore the
    RNG states, and return the contents of ``state.json`` (``step``, ``loader``, ``extra``)."""
    directory = Path(directory)
    state_dir = directory / STATE_DIR
    if not (state_dir / STATE_FILE).is_file() or not (state_dir / OPTIMIZER_FILE).is_file():
        raise CheckpointError(f"{directory} has no {STATE_DIR}/ to resume from; it is a model-only checkpoint")
    try:
        weights = load_file(str(directory / WEIGHTS_FILE), device=str(model.lm_head.weight.device))
        optim_state = torch.load(state_dir / OPTIMIZER_FILE, weights_only=True, map_location="cpu")
        state = json.loads((state_dir / STATE_FILE).read_text())
    except (OSError, SafetensorError, RuntimeError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"cannot read the training checkpoint {directory}: {exc}") from None
    load_weights(model, weights, str(directory / WEIGHTS_FILE))
    try:
        optimizer.load_state_dict(optim_state)
    except (ValueError, KeyError) as exc:
        raise CheckpointError(
            f"{directory}: the optimizer state does not fit this model ({exc}); resume with the same model config"
        ) from None
    set_rng_state(state["rng"])
    return state

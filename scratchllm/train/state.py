"""The training checkpoint: a model checkpoint plus ``train_state/``, everything a run needs to continue exactly.

    DIR/config.json, DIR/model.safetensors, DIR/tokenizer/     as written by ``checkpoint.save_checkpoint``
    DIR/train_state/optimizer.pt    AdamW's state by parameter name: plain tensors, numbers, lists (``torch.save``)
    DIR/train_state/state.json      completed steps, the loader's position, RNG states, the config, extras

Everything goes into the temporary directory that ``save_checkpoint`` renames into place, so a crash leaves either
the previous checkpoint or the new one, never weights from one step and an optimizer from another.

Bit-identical resumption needs every source of randomness and order restored, not only the weights: AdamW's moment
estimates and step counts (``optimizer.pt``), the data position (the loader's step; its batches are a pure function
of seed and step), and the RNG streams of Python, NumPy and torch (dropout draws from torch's). The optimizer file is
read back with ``torch.load(weights_only=True)``, which refuses anything but tensors and plain containers, so a
checkpoint from elsewhere cannot run code when loaded.

A distributed run writes the same files: the shards are gathered whole on rank 0 before writing, and scattered back
into whatever layout the resuming run uses (DDP, FSDP, tensor parallel, or one process). Gathering costs rank 0
host memory for the whole state (about 12 bytes per parameter with AdamW in fp32), which is fine up to a few billion
parameters; beyond that a per-rank sharded format (``torch.distributed.checkpoint.save``) would be the next step.
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from safetensors import SafetensorError
from safetensors.torch import load_file
from torch.distributed.checkpoint.state_dict import (
    StateDictOptions,
    get_model_state_dict,
    get_state_dict,
    set_model_state_dict,
    set_optimizer_state_dict,
)

from ..model import GPT
from ..tokenizer import Tokenizer
from .checkpoint import WEIGHTS_FILE, CheckpointError, check_weights, save_checkpoint

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


def gathered_state(model: GPT, optimizer: torch.optim.Optimizer | None = None) -> tuple[dict, dict | None]:
    """The whole model state and (optionally) the optimizer state, keyed by parameter name, as CPU tensors.

    In one process these are the model's own tensors. Under FSDP or tensor parallelism each rank holds shards
    (DTensors); ``torch.distributed.checkpoint.state_dict`` gathers every tensor whole, one at a time (so a device
    never holds more than the largest tensor twice), onto rank 0; the other ranks get empty dicts. Every rank must
    call it: the gathers are collectives. The optimizer state is keyed by parameter *name* instead of the position
    in the parameter list, so it fits any layout of the same model."""
    options = StateDictOptions(full_state_dict=True, cpu_offload=dist.is_initialized())
    if optimizer is None:
        return get_model_state_dict(model, options=options), None
    return get_state_dict(model, optimizer, options=options)


def save_training_checkpoint(
    directory: str | Path,
    model: GPT,
    tokenizer: Tokenizer | None,
    optimizer: torch.optim.Optimizer,
    loader_state: dict,
    step: int,
    extra: dict | None = None,
    gathered: tuple[dict, dict] | None = None,
) -> Path:
    """Write model, tokenizer and training state to ``directory`` atomically. ``step`` counts completed updates;
    ``extra`` (JSON-serializable: the config, the best validation loss...) is stored in ``state.json``.

    Every rank of a distributed run calls it (the state is gathered); rank 0 writes. The files are those of a
    single-process run, so a checkpoint saved under one strategy resumes under any other, or in one process.
    ``gathered``: (weights, optimizer state) already gathered, as pipeline parallelism does across its stages
    (``parallel/pipeline.pipeline_state``); by default :func:`gathered_state`."""
    weights, optim_state = gathered or gathered_state(model, optimizer)
    if dist.is_initialized() and dist.get_rank() != 0:
        return Path(directory)
    state = {"step": step, "loader": loader_state, "rng": rng_state(), "extra": extra or {}}

    def write_train_state(tmp: Path) -> None:
        (tmp / STATE_DIR).mkdir()
        torch.save(optim_state, tmp / STATE_DIR / OPTIMIZER_FILE)
        (tmp / STATE_DIR / STATE_FILE).write_text(json.dumps(state) + "\n")

    return save_checkpoint(directory, model, tokenizer, extra_files=write_train_state, state=weights)


def load_training_checkpoint(
    directory: str | Path, model: GPT, optimizer: torch.optim.Optimizer, stage: torch.nn.Module | None = None
) -> dict:
    """Load weights into ``model`` and state into ``optimizer`` (both built as for the original run, under any
    parallel layout), restore the RNG states, and return the contents of ``state.json`` (``step``, ``loader``,
    ``extra``).

    Under ``torchrun`` only rank 0 reads the files (other nodes need not see them) and every tensor is broadcast and
    sharded into place; an unreadable checkpoint fails on every rank with the same message, so none is left waiting.
    ``stage``: this rank's pipeline stage (a slice of ``model`` that the optimizer steps); every rank then reads the
    files itself (they must be on a filesystem all nodes share) and loads the part its stage holds."""
    directory = Path(directory)
    distributed = dist.is_initialized()
    files: tuple[dict, dict, dict] | None = None
    problem = None
    if not distributed or dist.get_rank() == 0 or stage is not None:
        try:
            files = _read_training_files(directory, model, optimizer, stage)
        except CheckpointError as exc:
            problem = str(exc)
    if distributed and stage is None:
        shared = [problem, files[2] if files else None]
        dist.broadcast_object_list(shared, src=0)
        problem, state = shared
        weights, optim_state = (files[0], files[1]) if files else ({}, {})
    else:
        if distributed:  # a pipeline: every rank read, so every rank knows whether any failed
            problems = [None] * dist.get_world_size()
            dist.all_gather_object(problems, problem)
            problem = next((p for p in problems if p), None)
        if files:
            weights, optim_state, state = files
    if problem:
        raise CheckpointError(problem)
    target = stage if stage is not None else model
    options = StateDictOptions(full_state_dict=True, broadcast_from_rank0=distributed and stage is None)
    # Two calls, not set_state_dict: given an empty model dict (ranks other than 0), it would skip the model's
    # broadcast that rank 0 joins, and the ranks would wait on each other for ever.
    set_model_state_dict(target, weights, options=options)
    set_optimizer_state_dict(target, optimizer, optim_state, options=options)
    model.tie_weights()
    set_rng_state(state["rng"])
    return state


def _read_training_files(
    directory: Path, model: GPT, optimizer: torch.optim.Optimizer, stage: torch.nn.Module | None
) -> tuple[dict, dict, dict]:
    """Weights (checked against the model), optimizer state (keyed by name) and ``state.json`` of a checkpoint;
    with a pipeline ``stage``, only the part that the stage holds."""
    state_dir = directory / STATE_DIR
    if not (state_dir / STATE_FILE).is_file() or not (state_dir / OPTIMIZER_FILE).is_file():
        raise CheckpointError(f"{directory} has no {STATE_DIR}/ to resume from; it is a model-only checkpoint")
    try:
        weights = load_file(str(directory / WEIGHTS_FILE))
        optim_state = torch.load(state_dir / OPTIMIZER_FILE, weights_only=True, map_location="cpu")
        state = json.loads((state_dir / STATE_FILE).read_text())
    except (OSError, SafetensorError, RuntimeError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"cannot read the training checkpoint {directory}: {exc}") from None
    weights = check_weights(model, weights, str(directory / WEIGHTS_FILE))
    if model.config.tie_embeddings:
        weights["lm_head.weight"] = weights["tok_emb.weight"]  # the state dict API expects both names
    names = _parameter_names(stage if stage is not None else model, optimizer)
    if all(isinstance(key, int) for key in optim_state.get("state", {})):
        optim_state = _keyed_by_name(optim_state, names)  # written before checkpoints were keyed by name
    saved = {name for group in optim_state.get("param_groups", []) for name in group.get("params", [])}
    # A tied head is the embedding; on a first pipeline stage sharded by FSDP it shows up apart, a stale name.
    expected = {n for n, _ in model.named_parameters()} - ({"lm_head.weight"} if model.config.tie_embeddings else set())
    if saved != expected or not set(names) <= saved:
        raise CheckpointError(
            f"{directory}: the optimizer state does not fit this model (it has {len(saved)} parameters); resume with "
            "the same model config"
        )
    if stage is not None:  # keep what this stage holds
        held = set(stage.state_dict())
        weights = {k: v for k, v in weights.items() if k in held}
        optim_state = {
            "state": {k: v for k, v in optim_state["state"].items() if k in names},
            "param_groups": [
                {**g, "params": [n for n in g["params"] if n in names]} for g in optim_state["param_groups"]
            ],
        }
        optim_state["param_groups"] = [g for g in optim_state["param_groups"] if g["params"]]
    return weights, optim_state, state


def _parameter_names(model: torch.nn.Module, optimizer: torch.optim.Optimizer) -> list[str]:
    """The names of the optimizer's parameters, in the optimizer's order."""
    name_of = {id(p): name for name, p in model.named_parameters()}
    return [name_of[id(p)] for group in optimizer.param_groups for p in group["params"]]


def _keyed_by_name(optim_state: dict, names: list[str]) -> dict:
    """Convert an optimizer state dict keyed by parameter position (``optimizer.state_dict()``) to names."""
    if len(names) != sum(len(g["params"]) for g in optim_state["param_groups"]):
        raise CheckpointError("the optimizer state does not fit this model; resume with the same model config")
    return {
        "state": {names[i]: value for i, value in optim_state["state"].items()},
        "param_groups": [{**g, "params": [names[i] for i in g["params"]]} for g in optim_state["param_groups"]],
    }

"""LoRA: finetune a frozen model through low-rank updates of chosen linear layers (Hu et al. 2021, "LoRA: Low-Rank
Adaptation of Large Language Models").

A linear layer computes ``y = x W^T`` with ``W`` of shape (d_out, d_in). Finetuning changes ``W`` by some ``dW``;
LoRA bets that a useful ``dW`` has low rank and writes it as ``dW = (alpha / r) B A`` with ``A`` (r, d_in) and ``B``
(d_out, r), r much smaller than d_in and d_out. Only ``A`` and ``B`` train:

    y = x W^T + (alpha / r) * dropout(x) A^T B^T

- ``B`` starts at zero and ``A`` random (Kaiming-uniform, as PyTorch's nn.Linear), so at initialization the model is
  exactly the pretrained one, and the gradient still reaches ``B`` through ``A``.
- The scale ``alpha / r`` keeps the update's size roughly independent of the rank, so alpha need not be retuned
  when r changes.
- ``merge`` folds the update into ``W`` (``W += (alpha / r) B A``): the merged model is a plain GPT with no extra cost
  at inference; ``unmerge`` subtracts it again.
- The adapters alone (r (d_in + d_out) numbers per layer) are saved in ``adapter.safetensors`` with their settings in
  ``adapter_config.json``: a few hundred kilobytes instead of the whole model.

The trainable parameters fall from every weight to the adapters, and with them the gradients and AdamW's two moments;
``benchmarks/lora.py`` measures it. The module wraps layers from outside, like ``parallelize``: the model file never
knows about adapters.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import json
import math
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from ..fileio import atomic_write_text
from .config import LoRAConfig

ADAPTER_FILE = "adapter.safetensors"
ADAPTER_CONFIG = "adapter_config.json"


class LoRAError(ValueError):
    """LoRA cannot be applied or loaded as asked (no layer matches the targets, adapters that do not fit)."""


class LoRALinear(nn.Module):
    """A frozen ``nn.Linear`` plus a trainable low-rank update; its forward equals the base layer's at init."""

    def __init__(self, base: nn.Linear, rank: int, alpha: float, dropout: float = 0.0):
        super().__init__()
        self.base = base
        self.rank, self.alpha, self.scale = rank, alpha, alpha / rank
        kw = dict(device=base.weight.device, dtype=base.weight.dtype)
        self.lora_A = nn.Parameter(torch.empty(rank, base.in_features, **kw))  # (r, d_in)
        self.lora_B = nn.Parameter(torch.zeros(base.out_features, rank, **kw))  # (d_out, r)
        nn.init.kaiming_uniform_(self.lora_A, a=math.sqrt(5))  # nn.Linear's own initialization
        self.dropout = nn.Dropout(dropout)
        self.merged = False

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.base(x)  # (..., d_out)
        if self.merged:
            return y
        return y + (self.dropout(x) @ self.lora_A.T @ self.lora_B.T) * self.scale  # (..., r) then (..., d_out)

    def delta(self) -> torch.Tensor:
        """The update ``(alpha / r) B A`` of shape (d_out, d_in)."""
        return (self.lora_B @ self.lora_A) * self.scale

    @torch.no_grad()
    def merge(self) -> None:
        if not self.merged:
            self.base.weight += self.delta().to(self.base.weight.dtype)
            self.merged = True

    @torch.no_grad()
    def unmerge(self) -> None:
        if self.merged:
            self.base.weight -= self.delta().to(self.base.weight.dtype)
            self.merged = False

    def extra_repr(self) -> str:
        return f"rank={self.rank}, alpha={self.alpha}, merged={self.merged}"


def matches(name: str, targets: list[str]) -> bool:
    """Does module ``name`` match a target: a shell pattern on the full name, or a plain name equal to its last part."""
    return any(fnmatch.fnmatchcase(name, t) or name.rsplit(".", 1)[-1] == t for t in targets)


def apply_lora(model: nn.Module, cfg: LoRAConfig) -> list[str]:
    """Freeze every parameter of ``model`` and wrap each matching ``nn.Linear`` in a ``LoRALinear``, in place;
    the names of the wrapped layers. Only the adapters' A and B are left trainable."""
    names = [n for n, m in model.named_modules() if isinstance(m, nn.Linear) and matches(n, cfg.targets)]
    tied = {id(m.weight) for m in model.modules() if isinstance(m, nn.Embedding)}
    names = [n for n in names if id(model.get_submodule(n).weight) not in tied]  # never a head tied to the embedding
    if not names:
        linears = sorted({n.rsplit(".", 1)[-1] for n, m in model.named_modules() if isinstance(m, nn.Linear)})
        raise LoRAError(f"lora.targets {cfg.targets} match no linear layer; the model's are named {linears}")
    for p in model.parameters():
        p.requires_grad_(False)
    for name in names:
        parent, _, child = name.rpartition(".")
        owner = model.get_submodule(parent) if parent else model
        setattr(owner, child, LoRALinear(getattr(owner, child), cfg.rank, cfg.alpha, cfg.dropout))
    return names


def lora_layers(model: nn.Module) -> dict[str, LoRALinear]:
    return {n: m for n, m in model.named_modules() if isinstance(m, LoRALinear)}


def merge_lora(model: nn.Module) -> None:
    for layer in lora_layers(model).values():
        layer.merge()


def unmerge_lora(model: nn.Module) -> None:
    for layer in lora_layers(model).values():
        layer.unmerge()


def remove_lora(model: nn.Module) -> None:
    """Merge every adapter and put the plain ``nn.Linear`` back: a model ``save_checkpoint`` writes like any other.
    Every parameter trains again afterwards (as after ``GPT.build``)."""
    for name, layer in lora_layers(model).items():
        layer.merge()
        parent, _, child = name.rpartition(".")
        setattr(model.get_submodule(parent) if parent else model, child, layer.base)
    for p in model.parameters():
        p.requires_grad_(True)


def adapter_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """The adapters' tensors by name (``blocks.0.attn.q_proj.lora_A``, ...)."""
    return {f"{n}.{k}": getattr(m, k).detach().contiguous().cpu() for n, m in lora_layers(model).items()
            for k in ("lora_A", "lora_B")}  # fmt: skip


def save_adapter(state: dict[str, torch.Tensor], cfg: LoRAConfig, directory: str | Path) -> Path:
    """Write ``adapter.safetensors`` (the adapters alone, ``adapter_state(model)``) and ``adapter_config.json``."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    save_file(state, str(directory / ADAPTER_FILE), metadata={"format": "pt"})
    atomic_write_text(directory / ADAPTER_CONFIG, json.dumps(dataclasses.asdict(cfg), indent=2) + "\n")
    return directory / ADAPTER_FILE


def load_adapter(model: nn.Module, directory: str | Path) -> LoRAConfig:
    """Apply LoRA to ``model`` as ``adapter_config.json`` says and load ``adapter.safetensors`` into it (unmerged)."""
    directory = Path(directory)
    try:
        cfg = LoRAConfig(**json.loads((directory / ADAPTER_CONFIG).read_text()))
        state = load_file(str(directory / ADAPTER_FILE))
    except (OSError, ValueError, TypeError) as exc:
        raise LoRAError(f"cannot read the adapter in {directory}: {exc}") from None
    apply_lora(model, cfg)
    expected = {k: v.shape for k, v in adapter_state(model).items()}
    if expected.keys() != state.keys() or any(state[k].shape != s for k, s in expected.items()):
        raise LoRAError(f"the adapter in {directory} does not fit this model (other layers or shapes)")
    layers = lora_layers(model)
    with torch.no_grad():
        for key, tensor in state.items():
            name, _, which = key.rpartition(".")
            getattr(layers[name], which).copy_(tensor)
    return cfg

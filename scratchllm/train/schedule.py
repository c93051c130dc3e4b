"""Learning-rate schedules: linear warmup, then cosine decay, warmup-stable-decay, or a constant rate.

Warmup (Goyal et al. 2017; every GPT since) ramps the rate up linearly because Adam's second-moment estimates are
poor in the first steps and large early updates can wreck the initialization. After it:

- ``cosine``: half a cosine from the peak down to ``min_lr`` on the last step (Loshchilov & Hutter 2017, "SGDR";
  GPT-3, Chinchilla, Llama). Its shape depends on ``max_steps``, so the length of the run must be fixed in advance.
- ``wsd``, warmup-stable-decay (MiniCPM, Hu et al. 2024; Hägele et al. 2024, "Scaling Laws and Compute-Optimal
  Training Beyond Fixed Training Durations"): the peak rate until the last ``decay_fraction`` of the run, then a
  linear decay to ``min_lr``. It matches cosine, and a run can be continued from any checkpoint of its stable
  phase, decaying only when it is time to stop. (MiniCPM decays exponentially; Hägele et al. use linear or 1-sqrt.)
- ``constant``: the peak after warmup, for debugging and for finetuning runs that are stopped by hand.

Steps count from 0: ``lr_at(s)`` is the rate of the update that step ``s`` applies. With ``t = s + 1`` updates done
after it, warmup gives ``lr * t / warmup_steps`` (never 0: a step at rate 0 would be a wasted step), so the peak is
reached by step ``warmup_steps - 1``; the decay then runs with progress ``(t - warmup_steps) / (max_steps -
warmup_steps)`` from 0 to 1, reaching ``min_lr`` exactly on the last step, ``max_steps - 1``. Steps beyond the end
keep ``min_lr``. nanoGPT's ``get_lr`` has the same shape with its ends placed one step differently.

These are pure functions of (step, config), so a resumed run recomputes the rate rather than storing it.
"""

from __future__ import annotations

import math

import torch

from .config import TrainConfig


def lr_at(step: int, cfg: TrainConfig) -> float:
    """The learning rate of optimizer step ``step`` (0-based) under ``cfg``'s schedule."""
    if step < 0:
        raise ValueError(f"step must be non-negative; got {step}")
    t = step + 1  # updates done once this one is applied
    if t <= cfg.warmup_steps:
        return cfg.lr * t / cfg.warmup_steps
    if cfg.schedule == "constant":
        return cfg.lr
    if cfg.schedule == "cosine":
        progress = min(1.0, (t - cfg.warmup_steps) / max(1, cfg.max_steps - cfg.warmup_steps))
        return cfg.min_lr + (cfg.lr - cfg.min_lr) * 0.5 * (1.0 + math.cos(math.pi * progress))
    # wsd: the stable phase ends where the decay begins, decay_steps before the end.
    decay_start = cfg.max_steps - cfg.decay_steps
    if t <= decay_start:
        return cfg.lr
    progress = min(1.0, (t - decay_start) / cfg.decay_steps)
    return cfg.lr + (cfg.min_lr - cfg.lr) * progress


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    """Set every parameter group's learning rate (the groups differ only in weight decay, see ``optim.py``)."""
    for group in optimizer.param_groups:
        group["lr"] = lr

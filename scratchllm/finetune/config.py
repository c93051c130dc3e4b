"""Configuration of a finetuning run: the data rules, the optimizer's few settings, and LoRA's.

Loaded like every config of the project (``load_config(FinetuneConfig, "configs/sft/lora.toml", ["lora.rank=16"])``).
Finetuning reuses the pretraining machinery (AdamW with decay on matrices only, the warmup + cosine schedule, the
accumulated step that normalizes by the token count of the whole batch); ``train_config`` hands it the fields it
needs as a ``TrainConfig``. The defaults are the demo's recipe for the tiny model on a laptop CPU: full finetuning at
a tenth of the pretraining peak rate, as is usual for SFT (a large rate erases what pretraining learned).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..config import ConfigError
from ..train.config import TrainConfig

METHODS = ("full", "lora")
TOO_LONG = ("truncate", "drop")


@dataclass
class LoRAConfig:
    """Low-rank adapters (Hu et al. 2021): which linear layers get one, and its shape."""

    # Rank r of the update B A (A: r x d_in, B: d_out x r). 8-16 is usual; the update has r (d_in + d_out) parameters.
    rank: int = 8
    # The update is scaled by alpha / rank, so changing the rank does not change the update's size at init.
    alpha: float = 16.0
    # Dropout on the adapter's input only (the frozen path is untouched), as in the LoRA reference code and PEFT.
    dropout: float = 0.0
    # Module names that get adapters: a shell pattern matched against the full name ("blocks.*.attn.q_proj") or a
    # plain name matched against its last part ("q_proj"). The default is the original paper's choice, attention's
    # query and value projections; add "k_proj", "o_proj", "up", "gate", "down" to adapt more.
    targets: list[str] = field(default_factory=lambda: ["q_proj", "v_proj"])

    def __post_init__(self) -> None:
        if self.rank < 1:
            raise ConfigError(f"lora.rank must be at least 1 (8 is usual); got {self.rank}")
        if not self.alpha > 0:
            raise ConfigError(f"lora.alpha must be positive (twice the rank is usual); got {self.alpha}")
        if not 0.0 <= self.dropout < 1.0:
            raise ConfigError(f"lora.dropout must be in [0, 1); got {self.dropout}")
        if not self.targets:
            raise ConfigError("lora.targets is empty: name the linear layers to adapt, e.g. ['q_proj', 'v_proj']")


@dataclass
class FinetuneConfig:
    """How to finetune: every field documented."""

    # "full": every weight trains. "lora": the pretrained weights are frozen and only low-rank adapters train.
    method: str = "full"
    lora: LoRAConfig = field(default_factory=LoRAConfig)
    # Peak learning rate (LoRA wants a larger one than full finetuning: its B starts at zero).
    lr: float = 4e-4
    # The schedule ends at min_lr_ratio * lr.
    min_lr_ratio: float = 0.1
    # Optimizer steps of linear warmup.
    warmup_steps: int = 10
    # Optimizer steps; 0 derives them from epochs (passes over the training examples).
    max_steps: int = 0
    epochs: float = 1.0
    # Examples per optimizer step, and per forward pass (batch_size must be a multiple of it).
    batch_size: int = 16
    micro_batch_size: int = 16
    # AdamW's decoupled weight decay on weight matrices, and gradient clipping (0 = off).
    weight_decay: float = 0.0
    grad_clip: float = 1.0
    # Longest example in tokens (template included); 0 = the model's context. Longer examples are cut to it
    # ("truncate": the end is lost; an example left with no answer token is dropped) or left out ("drop").
    max_length: int = 0
    too_long: str = "truncate"
    # Fraction of the examples held out for the validation loss (by a hash of the example, or of the module for the
    # default instruction set); 0 = none.
    val_fraction: float = 0.05
    # Evaluate on the held-out examples every this many steps (and at the end); 0 = only at the end.
    eval_every: int = 0
    # System prompt put before every training example's first turn; empty = none.
    system_prompt: str = ""
    # Seed of the data order, of LoRA's initialization and of its dropout.
    seed: int = 1337

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ConfigError(f"method must be one of {', '.join(METHODS)}; got {self.method!r}")
        if self.too_long not in TOO_LONG:
            raise ConfigError(f"too_long must be one of {', '.join(TOO_LONG)}; got {self.too_long!r}")
        if not self.lr > 0:
            raise ConfigError(f"lr must be positive; got {self.lr}")
        for name in ("batch_size", "micro_batch_size"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be at least 1; got {getattr(self, name)}")
        if self.batch_size % self.micro_batch_size:
            raise ConfigError(
                f"batch_size ({self.batch_size}) must be a multiple of micro_batch_size ({self.micro_batch_size})"
            )
        for name in ("max_steps", "warmup_steps", "max_length", "eval_every", "weight_decay", "grad_clip"):
            if getattr(self, name) < 0:
                raise ConfigError(f"{name} must not be negative; got {getattr(self, name)}")
        if not self.epochs > 0:
            raise ConfigError(f"epochs must be positive; got {self.epochs}")
        if not 0.0 <= self.val_fraction < 1.0:
            raise ConfigError(f"val_fraction must be in [0, 1); got {self.val_fraction}")

    @property
    def grad_accum_steps(self) -> int:
        return self.batch_size // self.micro_batch_size

    def steps_for(self, n_examples: int) -> int:
        """Optimizer steps of the run for a training set of ``n_examples``."""
        return self.max_steps or max(1, round(self.epochs * n_examples / self.batch_size))

    def train_config(self, max_steps: int) -> TrainConfig:
        """The pretraining config the shared optimizer and schedule read (train/optim.py, train/schedule.py)."""
        return TrainConfig(
            lr=self.lr, min_lr_ratio=self.min_lr_ratio, warmup_steps=min(self.warmup_steps, max_steps),
            max_steps=max_steps, weight_decay=self.weight_decay, grad_clip=self.grad_clip,
            micro_batch_size=self.micro_batch_size, grad_accum_steps=self.grad_accum_steps, seed=self.seed,
        )  # fmt: skip

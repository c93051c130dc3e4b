"""Configuration of a training run: optimizer, learning-rate schedule, batch shape, precision and bookkeeping.

One flat dataclass, loaded like every config of the project (``scratchllm.config.load_config(TrainConfig, path,
overrides)``), so ``scratchllm train --config configs/tiny.toml lr=1e-3 max_steps=200`` works. The model's own shape
lives in ``GPTConfig``; checks that need both (``seq_len`` no longer than the model's ``block_size``) belong to the
trainer, which sees both.

The defaults suit the tiny preset on a laptop CPU: the demo's recipe, tuned for the lowest held-out bits per byte in
about 8 minutes on 2 cores (appendix A.7: peak lr 4e-3 after 50 warmup steps, cosine to 10%, 16 x 256 tokens a step),
with the AdamW settings of GPT-3 and Llama (betas 0.9 / 0.95, weight decay 0.1, clip at 1.0). Larger models want a
smaller peak learning rate (GPT-3 used 6e-4 at 125M parameters).
"""

from __future__ import annotations

from dataclasses import dataclass

from ..config import ConfigError

SCHEDULES = ("cosine", "wsd", "constant")
DTYPES = ("fp32", "bf16", "fp16")


@dataclass
class TrainConfig:
    """How to train: every field documented; derived sizes are properties."""

    # Peak learning rate, reached at the end of warmup. Small models tolerate (and need) larger rates than big ones.
    lr: float = 4e-3
    # The schedule ends at min_lr_ratio * lr (Chinchilla and Llama decay to 10% of the peak). Ignored by "constant".
    min_lr_ratio: float = 0.1
    # Optimizer steps of linear warmup from lr / warmup_steps up to lr; 0 starts at the peak.
    warmup_steps: int = 50
    # Optimizer steps (updates) in the whole run; the schedule reaches its minimum on the last one.
    max_steps: int = 2000
    # "cosine": warmup then cosine decay to the minimum (GPT-3, Llama). "wsd": warmup, a stable phase at the peak,
    # then a linear decay over the last decay_fraction of the run (MiniCPM; Hägele et al. 2024), which lets a run be
    # extended or branched before its decay. "constant": warmup then the peak for ever.
    schedule: str = "cosine"
    # "wsd" only: fraction of max_steps spent decaying at the end (Hägele et al. find 10-20% enough).
    decay_fraction: float = 0.2
    # AdamW's decoupled weight decay (Loshchilov & Hutter 2019) on weight matrices only; see train/optim.py.
    weight_decay: float = 0.1
    # AdamW's (beta1, beta2): momentum and the averaging horizon of squared gradients. 0.95 rather than PyTorch's
    # 0.999 reacts faster to loss spikes (GPT-3, Llama).
    betas: tuple[float, float] = (0.9, 0.95)
    # AdamW's epsilon, added to the root of the second moment.
    eps: float = 1e-8
    # Clip the global gradient norm to this value before each update; 0 turns clipping off (the norm is still logged).
    grad_clip: float = 1.0
    # A step whose loss or gradient is NaN or inf is never applied. false: stop the run with an error naming the
    # step; true: skip the step, log it, and go on (a long run survives a rare bad batch).
    skip_nonfinite: bool = False
    # Sequences in one forward/backward pass (per process): what has to fit in memory.
    micro_batch_size: int = 16
    # Micro-batches accumulated into one optimizer step. The effective batch per process is
    # micro_batch_size * grad_accum_steps sequences (see train/step.py).
    grad_accum_steps: int = 1
    # Sequences per optimizer step (per process) to reach by accumulation; 0 uses micro_batch_size and
    # grad_accum_steps as given. When set, the trainer measures a few real steps and picks the largest micro-batch
    # that divides it and fits memory_budget_gb (train/fit.py); the choice is written to the run's config.toml.
    target_batch_size: int = 0
    # Memory the fit may plan for, in GiB; 0 means what the device has free (a GPU's free memory, a CPU's available
    # RAM).
    memory_budget_gb: float = 0.0
    # Tokens per training sequence; at most the model's block_size.
    seq_len: int = 256
    # Seed of the model's initialization and of the data order.
    seed: int = 1337
    # Evaluate on held-out data every this many steps (and at the end); 0 evaluates only at the end.
    eval_every: int = 250
    # Batches of held-out data per evaluation.
    eval_batches: int = 20
    # Save a checkpoint every this many steps (and at the end); 0 saves only at the end.
    checkpoint_every: int = 500
    # Keep the newest this many periodic checkpoints, deleting older ones; 0 keeps them all.
    keep_last: int = 3
    # Precision of the forward pass: "fp32"; "bf16" or "fp16" under autocast with fp32 weights, fp16 with a dynamic
    # loss scaler (train/precision.py). bf16 suits GPUs from Ampere on; on a CPU without bf16 units "fp32" is faster.
    dtype: str = "fp32"
    # Compile the model with torch.compile: the first step pays tens of seconds of compilation, later steps run about
    # 2x faster on a CPU (C++ kernels; needs a C++ compiler, else the run warns and stays eager).
    compile: bool = False

    def __post_init__(self) -> None:
        if self.schedule not in SCHEDULES:
            raise ConfigError(f"schedule must be one of {', '.join(SCHEDULES)}; got {self.schedule!r}")
        if self.dtype not in DTYPES:
            raise ConfigError(f"dtype must be one of {', '.join(DTYPES)}; got {self.dtype!r}")
        if not self.lr > 0:
            raise ConfigError(f"lr must be positive (3e-4 to 1e-3 suits small models); got {self.lr}")
        if not 0.0 <= self.min_lr_ratio <= 1.0:
            raise ConfigError(f"min_lr_ratio must be in [0, 1] (0.1 decays to 10% of lr); got {self.min_lr_ratio}")
        for name in ("max_steps", "micro_batch_size", "grad_accum_steps", "seq_len", "eval_batches"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be at least 1; got {getattr(self, name)}")
        for name in ("warmup_steps", "eval_every", "checkpoint_every", "keep_last", "weight_decay", "grad_clip",
                     "target_batch_size", "memory_budget_gb"):  # fmt: skip
            if getattr(self, name) < 0:
                raise ConfigError(f"{name} must not be negative (0 turns it off); got {getattr(self, name)}")
        if self.warmup_steps > self.max_steps:
            raise ConfigError(
                f"warmup_steps ({self.warmup_steps}) is longer than the run (max_steps={self.max_steps}); "
                "lower warmup_steps or raise max_steps"
            )
        if not 0.0 < self.decay_fraction <= 1.0:
            raise ConfigError(
                f"decay_fraction must be in (0, 1] (0.2 decays over the last 20% of steps); got {self.decay_fraction}"
                " -- for no decay at all use schedule=constant"
            )
        if self.schedule == "wsd" and self.warmup_steps + self.decay_steps > self.max_steps:
            raise ConfigError(
                f"wsd: warmup ({self.warmup_steps} steps) and decay ({self.decay_steps} steps = decay_fraction "
                f"{self.decay_fraction} of max_steps {self.max_steps}) overlap; shorten one or raise max_steps"
            )
        if not all(0.0 <= b < 1.0 for b in self.betas):
            raise ConfigError(f"betas must both be in [0, 1), like (0.9, 0.95); got {list(self.betas)}")
        if not self.eps > 0:
            raise ConfigError(f"eps must be positive (1e-8 is usual); got {self.eps}")

    @property
    def batch_size(self) -> int:
        """Sequences per optimizer step per process: micro_batch_size * grad_accum_steps."""
        return self.micro_batch_size * self.grad_accum_steps

    @property
    def tokens_per_step(self) -> int:
        """Input tokens per optimizer step per process (multiply by the number of data-parallel processes)."""
        return self.batch_size * self.seq_len

    @property
    def min_lr(self) -> float:
        return self.lr * self.min_lr_ratio

    @property
    def decay_steps(self) -> int:
        """ "wsd" only: the optimizer steps of the final decay, at least one."""
        return max(1, round(self.decay_fraction * self.max_steps))

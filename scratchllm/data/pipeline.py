"""The data pipeline: named steps from a TOML config, cut into stages that run shard by shard, then one report.

A pipeline file lists steps by name, in order, and gives each its settings in a table of its own::

    steps = ["normalize", "code", "pii", "decontam", "exact_dedup", "near_dedup"]
    num_shards = 8
    [corpus]
    source = "stdlib"
    [step.code]
    max_line_length = 1000

Most steps judge one document at a time (``Filter`` and ``Mapper`` in ``step``): they run on any subset of the
corpus, in any process, and their verdicts do not change. Deduplication cannot: whether a document is a duplicate
depends on documents anywhere in the corpus. So the step list is cut at the global steps into **stages** (``plan``),
after datatrove's MinHash pipeline that built FineWeb (Penedo et al. 2024):

1. a **shard stage** runs the per-document steps on each shard (a deterministic subset of the corpus: document
   number ``i`` of the stream belongs to shard ``i % num_shards``), in parallel, and writes the survivors together
   with what the following global steps need of them: a 16-byte digest per document for exact dedup, a MinHash
   signature for near dedup (``GlobalStep.features``, in ``global_steps``);
2. a **global stage** reads the features of every shard, decides once for the whole corpus which documents go
   (``GlobalStep.duplicates``; the earliest document in stream order is the one kept), and writes a drop list;
3. the next shard stage applies the drop list to its shard, runs the per-document steps that follow, and so on; the
   last one writes the output shards.

Because a document's number in the stream is its priority, the output does not depend on the number of shards,
workers or machines: a sharded run keeps exactly the documents that running the steps one after another over the
whole stream keeps (``step.run`` composed in a plain loop), which a test checks.

``run_pipeline`` runs the stages in order, on one machine or as one rank of a cluster job, skipping the tasks that
finished before (a rerun resumes). How a task becomes files and a completion marker is ``executor``'s concern; the
report is ``data_report``'s.
"""

from __future__ import annotations

import difflib
import itertools
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from scratchllm.config import ConfigError, save_config

from .code_filters import CodeConfig, CodeFilter
from .config import CorpusConfig
from .data_report import write_report
from .decontam import DecontamConfig, Decontaminate
from .executor import run_global, run_shards
from .extract import ExtractHTML
from .filters import (
    C4Config,
    C4Filter,
    FineWebConfig,
    FineWebFilter,
    GopherQuality,
    GopherQualityConfig,
    GopherRepetition,
    GopherRepetitionConfig,
)
from .global_steps import ExactDedupConfig, ExactDedupStage, GlobalStep, NearDedupConfig, NearDedupStage
from .language import LanguageConfig, LanguageFilter
from .normalize import Normalize, NormalizeConfig
from .pii import PIIConfig, RedactPII
from .run_files import Layout
from .step import Step

# --------------------------------------------------------------------------------------------------------------------
# Settings of the steps whose classes take plain arguments rather than a config dataclass


@dataclass
class ExtractConfig:
    """HTML extraction (``extract.ExtractHTML``): only documents with ``meta["format"] == "html"`` are touched."""

    # Seconds allowed per page; a page that takes longer is dropped as extract:timeout. 0 disables the deadline.
    timeout: float = 5.0
    # Drop borderline blocks of text rather than risk keeping boilerplate (FineWeb's choice).
    favor_precision: bool = True

    def __post_init__(self) -> None:
        if self.timeout < 0:
            raise ConfigError(
                f"step.extract.timeout must be 0 (none) or a positive number of seconds; got {self.timeout}"
            )


@dataclass
class StepConfigs:
    """The settings of every step, one table each (``[step.NAME]``); a step uses its table only when ``steps`` names
    it. Each table's fields, defaults and sources are documented on its dataclass."""

    extract: ExtractConfig = field(default_factory=ExtractConfig)
    normalize: NormalizeConfig = field(default_factory=NormalizeConfig)
    gopher: GopherQualityConfig = field(default_factory=GopherQualityConfig)
    gopher_repetition: GopherRepetitionConfig = field(default_factory=GopherRepetitionConfig)
    c4: C4Config = field(default_factory=C4Config)
    fineweb: FineWebConfig = field(default_factory=FineWebConfig)
    code: CodeConfig = field(default_factory=CodeConfig)
    language: LanguageConfig = field(default_factory=LanguageConfig)
    pii: PIIConfig = field(default_factory=PIIConfig)
    decontam: DecontamConfig = field(default_factory=DecontamConfig)
    exact_dedup: ExactDedupConfig = field(default_factory=ExactDedupConfig)
    near_dedup: NearDedupConfig = field(default_factory=NearDedupConfig)


# The registry: a name in `steps` -> how to build the step from its table. Per-document steps must be a Filter or a
# Mapper, which stream one document in, at most one out; the executor relies on that to keep each document's place.
DOCUMENT_STEPS: dict[str, Callable[[Any], Step]] = {
    "extract": lambda cfg: ExtractHTML(cfg.timeout, cfg.favor_precision),
    "normalize": Normalize,
    "gopher": GopherQuality,
    "gopher_repetition": GopherRepetition,
    "c4": C4Filter,
    "fineweb": FineWebFilter,
    "code": CodeFilter,
    "language": LanguageFilter,
    "pii": RedactPII,
    "decontam": Decontaminate,
}
GLOBAL_STEPS: dict[str, Callable[[Any], GlobalStep]] = {"exact_dedup": ExactDedupStage, "near_dedup": NearDedupStage}
STEP_NAMES = (*DOCUMENT_STEPS, *GLOBAL_STEPS)

# The default pipeline is for the default corpus, which is source code: the prose filters would drop most of it (the
# measured table is in docs/02), so the code filter stands in for them.
DEFAULT_STEPS = ("normalize", "code", "pii", "decontam", "exact_dedup", "near_dedup")


# --------------------------------------------------------------------------------------------------------------------
# The pipeline config and its stages


@dataclass
class PipelineCorpus(CorpusConfig):
    """The corpus of a pipeline: a CorpusConfig whose defaults suit cleaning. It reads every document (the tokenize
    stage splits train and val later, by document id) and skips bad input, counting it in the report, rather than
    stopping at the first bad record. Defaults of a dataclass, so that a [corpus] table that sets only source and
    path keeps them."""

    split: str = "all"
    on_error: str = "skip"


@dataclass
class PipelineConfig:
    """`scratchllm data`: which corpus, which steps in which order, where the cleaned shards go."""

    # The input: by default the whole default corpus (see PipelineCorpus for the split and on_error defaults).
    corpus: PipelineCorpus = field(default_factory=PipelineCorpus)
    # Step names, in the order they run; see STEP_NAMES. exact_dedup and near_dedup are global: the per-document
    # steps before them run first, over the whole corpus.
    steps: list[str] = field(default_factory=lambda: list(DEFAULT_STEPS))
    # The settings of each step: [step.NAME] tables, e.g. [step.code] max_line_length = 2000.
    step: StepConfigs = field(default_factory=StepConfigs)
    # Output directory: documents/shard_NNNNN.jsonl.zst, report.json, report.md, rejects/, work/ (intermediate
    # files and completion markers; delete it once the run is complete).
    out: str = "runs/data"
    # Shards the corpus is split into: the unit of parallel work and of resumption. Changing it starts over.
    num_shards: int = 8
    # Worker processes on this machine; 0 means one per CPU. Does not change the output.
    workers: int = 0
    # Write every dropped document to rejects/<step>/shard_NNNNN.jsonl.zst with its reason, for inspection.
    write_rejects: bool = False
    # zstd level of the output and intermediate shards (1 fastest ... 19 smallest; 3 is zstd's default).
    compression_level: int = 3

    def __post_init__(self) -> None:
        for name in self.steps:
            if name not in STEP_NAMES:
                close = difflib.get_close_matches(name, STEP_NAMES, n=1, cutoff=0.6)
                hint = f"; did you mean {close[0]!r}?" if close else "."
                raise ConfigError(f"unknown step {name!r} in steps{hint} Known steps: {', '.join(STEP_NAMES)}")
        repeated = sorted(name for name, n in Counter(self.steps).items() if n > 1)
        if repeated:
            raise ConfigError(f"steps names {', '.join(repeated)} more than once; each step runs at most once")
        if self.num_shards < 1:
            raise ConfigError(f"num_shards must be at least 1; got {self.num_shards}")
        if self.workers < 0:
            raise ConfigError(f"workers must be 0 (one per CPU) or positive; got {self.workers}")
        if not 1 <= self.compression_level <= 22:
            raise ConfigError(f"compression_level must be a zstd level from 1 to 22; got {self.compression_level}")


@dataclass(frozen=True)
class Stage:
    """One shard stage: apply the drop lists of ``drops`` (made by the global stage before it), run the per-document
    ``steps``, then compute the ``features`` of the global steps after it (none: this stage writes the output).

    It builds its own steps from a config, so that the executor, which runs it in worker processes, needs no registry.
    """

    index: int
    drops: tuple[str, ...]
    steps: tuple[str, ...]
    features: tuple[str, ...]

    @property
    def last(self) -> bool:
        return not self.features

    def describe(self) -> str:
        """What the stage does, in one line for progress messages."""
        parts = [*(f"drop {name}" for name in self.drops), *self.steps]
        parts += [f"{name} features" for name in self.features]
        return ", ".join(parts) or "copy"

    def document_steps(self, config: PipelineConfig) -> list[Step]:
        """Fresh instances (fresh stats) of this stage's per-document steps, built from their tables."""
        return [DOCUMENT_STEPS[name](getattr(config.step, name)) for name in self.steps]

    def dropping_steps(self, config: PipelineConfig) -> list[GlobalStep]:
        """The global steps whose drop lists this stage applies (for their names and drop reasons)."""
        return [GLOBAL_STEPS[name](getattr(config.step, name)) for name in self.drops]

    def global_steps(self, config: PipelineConfig) -> list[GlobalStep]:
        """The global steps after this stage, whose features it computes and which the global stage then runs."""
        return [GLOBAL_STEPS[name](getattr(config.step, name)) for name in self.features]


def plan(steps: Sequence[str]) -> list[Stage]:
    """Cut the step list into shard stages at its runs of global steps (see the module docstring).

    ``[normalize, code, exact_dedup, near_dedup, pii]`` becomes stage 0 ``normalize, code`` + features of both dedup
    steps, a global stage deciding both (near dedup sees only what exact dedup kept), and stage 1 ``drop exact_dedup,
    drop near_dedup, pii``, which writes the output. Global stage k sits between shard stages k and k + 1.
    """
    stages: list[Stage] = []
    drops: tuple[str, ...] = ()
    pending: tuple[str, ...] = ()
    for is_global, run in itertools.groupby(steps, key=GLOBAL_STEPS.__contains__):
        if is_global:
            stages.append(Stage(len(stages), drops, pending, tuple(run)))
            drops, pending = stages[-1].features, ()
        else:
            pending = tuple(run)
    stages.append(Stage(len(stages), drops, pending, ()))
    return stages


# --------------------------------------------------------------------------------------------------------------------
# Running it


@dataclass
class PipelineRun:
    """What one call of ``run_pipeline`` did: whether the run is now complete, and if not, what it waits for."""

    complete: bool
    message: str
    tasks: int  # tasks this call ran: shards of shard stages, and global stages
    report: dict | None = None  # the merged report, once the run is complete


def run_pipeline(config: PipelineConfig, rank: int = 0, world_size: int = 1, progress: bool = False) -> PipelineRun:
    """Run, or resume, the tasks of ``rank`` of ``world_size``: shard ``s`` of every shard stage where
    ``s % world_size == rank``, and on rank 0 the global stages. Finished tasks (those with a completion marker) are
    skipped. When the next stage needs tasks another rank has not finished, return saying what it waits for; when
    every task of the run is complete, write the report. On Slurm, one array job per phase, each after the last::

        a=$(sbatch --parsable --array=0-63 data.sh)                       # per-document steps, dedup features
        b=$(sbatch --parsable --array=0 --dependency=afterok:$a data.sh)  # rank 0: global dedup, its own shards
        sbatch --array=0-63 --dependency=afterok:$b data.sh               # drop lists, output shards, report

    where ``data.sh`` runs ``scratchllm data --config FILE.toml --rank $SLURM_ARRAY_TASK_ID --world-size 64`` (a
    pipeline with k runs of global steps needs 2k + 1 phases). A failed or preempted task is resubmitted as it was.
    """
    if world_size < 1 or not 0 <= rank < world_size:
        raise ConfigError(f"rank must be in [0, world_size) and world_size at least 1; got rank {rank} of {world_size}")
    stages = plan(config.steps)
    for stage in stages:  # build every step once now: a bad setting or a missing extra fails before any work is done
        stage.document_steps(config)
    layout = Layout(config.out)
    layout.claim(config)
    save_config(config, layout.out / "config.toml")
    everyone = range(config.num_shards)
    mine = [shard for shard in everyone if shard % world_size == rank]
    tasks = 0
    for stage in stages:
        label = f"stage {stage.index + 1}/{len(stages)}"
        if stage.index and not layout.global_done(stage.index - 1):
            missing = [shard for shard in everyone if not layout.shard_done(stage.index - 1, shard)]
            if rank != 0 or missing:
                awaited = f"shards {_ranges(missing)} of stage {stage.index}" if missing else "rank 0"
                return PipelineRun(False, f"rank {rank}: {label} needs the global stage before it, which waits for "
                                   f"{awaited}; run this again once they are done", tasks)  # fmt: skip
            if progress:
                print(f"global stage {stage.index}/{len(stages) - 1}: {', '.join(stages[stage.index - 1].features)}")
            run_global(config, stages[stage.index - 1])
            tasks += 1
        pending = [shard for shard in mine if not layout.shard_done(stage.index, shard)]
        if progress:
            done = len(mine) - len(pending)
            print(f"{label}: {stage.describe()}" + (f" ({done} of {len(mine)} shards done before)" if done else ""))
        run_shards(config, stage, pending, progress, label)
        tasks += len(pending)
    missing = [shard for shard in everyone if not layout.shard_done(stages[-1].index, shard)]
    if missing:
        return PipelineRun(False, f"rank {rank}: done; shards {_ranges(missing)} of the last stage belong to other "
                           "ranks, and whichever rank finishes last writes the report", tasks)  # fmt: skip
    report = write_report(config, stages, layout)
    return PipelineRun(True, f"complete: {layout.documents}, {layout.out / 'report.md'}", tasks, report)


def _ranges(numbers: list[int]) -> str:
    """``[0, 1, 2, 5]`` -> ``"0-2, 5"``, so that a message about a thousand shards stays one line."""
    parts: list[str] = []
    for _, run in itertools.groupby(enumerate(numbers), key=lambda pair: pair[1] - pair[0]):
        run = [n for _, n in run]
        parts.append(str(run[0]) if len(run) == 1 else f"{run[0]}-{run[-1]}")
    return ", ".join(parts)

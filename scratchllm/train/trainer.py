"""The training loop: schedule, accumulated steps, metrics, evaluation, checkpoints, exact resumption.

    for step in range(start, max_steps):
        set the step's learning rate; one optimizer step over grad_accum_steps micro-batches (train/step.py)
        log it; evaluate every eval_every steps; save a checkpoint every checkpoint_every steps

A run lives in a directory: ``config.toml`` (the resolved config), ``metrics.jsonl``, ``loss.png``, and
``checkpoints/step_NNNNNN`` (the newest ``keep_last``) plus ``checkpoints/best`` (lowest validation loss). Each
periodic checkpoint holds the full training state (train/state.py), so ``train(..., resume=True)`` continues from the
newest one and, on a CPU in fp32, ends bit-identical to a run that was never interrupted: the batches are a pure
function of (seed, step), the learning rate a pure function of the step, and optimizer and RNG states are restored.

A loss or gradient that is not finite stops the run with :class:`TrainingError` before anything is saved, so the
newest checkpoint on disk is always one from before the divergence.

Under ``torchrun`` (a process group is initialized, parallel/dist.py) the same loop runs on every rank:
``parallelize`` wraps the model (DDP or FSDP over the mesh's ``dp`` ranks), each data-parallel rank draws its own
windows (the loader's batches depend on (seed, step, rank)), the loss is normalized by the global count of targets
(train/step.py), gradients are synchronized once per step (``no_sync``), evaluation splits the validation windows
over the DDP ranks and sums the results, and only rank 0 writes: metrics, plots, the report, the config and the
checkpoints (gathered whole from every rank's shards, train/state.py, so a run resumes under any layout). With
``parallel.pp > 1`` each rank holds one pipeline stage instead (parallel/pipeline.py): the step runs the schedule,
validation runs the stages in turn, and checkpoints are merged from the stages. A single process runs exactly as
before.
"""

from __future__ import annotations

import json
import math
import random
import shutil
import signal
import threading
import time
from contextlib import nullcontext
from dataclasses import asdict, replace
from functools import partial
from itertools import islice
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from tqdm.auto import tqdm

from ..config import ConfigError, save_config
from ..data.loader import RandomWindows, sequential_windows
from ..data.tokenize import REPORT, shard_paths
from ..eval.perplexity import bits_per_byte, perplexity, score_windows
from ..model import GPT, flops_per_token
from ..parallel.dist import (
    ParallelConfig,
    build_mesh,
    collective_errors,
    is_distributed,
    is_rank0,
    sum_over_ranks,
    world_size,
)
from ..parallel.parallelize import no_sync, parallelize
from ..parallel.pipeline import Pipeline, PipelineScorer, build_pipeline, pipeline_state, pipeline_step
from ..tokenizer import Tokenizer
from .checkpoint import CheckpointError, save_checkpoint
from .config import TrainConfig
from .fit import fit_batch
from .memory import peak_memory_bytes, reset_peak_memory
from .metrics import METRICS_FILE, MetricsLog, plot_loss
from .mfu import matmul_peak_flops, mfu
from .optim import build_optimizer
from .precision import CompiledSteps, autocast_factory, fsdp_mixed_precision, grad_scaler
from .report import write_report
from .schedule import lr_at, set_lr
from .state import gathered_state, load_training_checkpoint, save_training_checkpoint
from .step import accumulated_step

CHECKPOINTS = "checkpoints"


class TrainingError(ValueError):
    """Training cannot go on: the loss or the gradient stopped being a finite number."""


def evaluate(
    model: GPT, val_paths, tokenizer_hash: str, cfg: TrainConfig, bytes_per_token: float | None, dp=None
) -> dict:
    """Mean cross-entropy over the first ``eval_batches`` sequential windows of the validation shards, with its
    perplexity and bits per byte, summed by the same function as ``scratchllm eval`` (eval/perplexity.py). Bits per
    byte (``loss / ln 2 / bytes_per_token``) compares models whose tokenizers differ, because the number of bytes does
    not depend on the tokenizer. ``dp``: the data-parallel ``(rank, size, group)``; each rank scores every size-th
    batch and the sums are added over the ranks, so every rank returns the same result."""
    batches = sequential_windows(val_paths, cfg.micro_batch_size, cfg.seq_len, tokenizer_hash, cfg.eval_batches)
    if dp is not None:
        batches = islice(batches, dp[0], None, dp[1])
    total, count = score_windows(model, batches)  # in eval mode: no dropout, every evaluation scores alike
    if dp is not None:
        sums = sum_over_ranks(
            torch.tensor([total, count], dtype=torch.float64, device=next(model.parameters()).device), dp[2]
        )
        total, count = float(sums[0]), int(sums[1])
    if count == 0:
        raise TrainingError(f"the validation shards hold no window of {cfg.seq_len + 1} tokens to evaluate on")
    loss = total / count
    bpb = bits_per_byte(loss, bytes_per_token) if bytes_per_token else None
    return {"loss": loss, "ppl": perplexity(loss), "bpb": bpb}


def seed_everything(seed: int) -> None:
    """Seed Python's, NumPy's and torch's generators, so a run depends only on its config."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def checkpoint_dirs(run_dir: str | Path) -> list[Path]:
    """The run's periodic checkpoints, oldest first (the zero-padded step sorts as a string)."""
    return sorted((Path(run_dir) / CHECKPOINTS).glob("step_[0-9]*"))


def train(
    model: GPT,
    tokenizer: Tokenizer,
    data_dir: str | Path,
    cfg: TrainConfig,
    run_dir: str | Path,
    resume: bool = False,
    progress: bool = False,
    *,
    job=None,
    stop_at: int | None = None,
    parallel: ParallelConfig | None = None,
) -> dict:
    """Train ``model`` on the shards in ``data_dir`` (written by ``tokenize_corpus`` with ``tokenizer``).

    ``resume``: continue from the newest checkpoint in ``run_dir/checkpoints``. ``job``: the config dataclass to
    write as ``run_dir/config.toml`` (default ``cfg``). ``stop_at``: stop (with a checkpoint) after this many steps,
    as an interrupted run would; the schedule still spans ``cfg.max_steps``. ``parallel``: how to spread the run
    when a process group is initialized (default: DDP over every rank). Returns the final metrics."""
    if cfg.seq_len > model.config.block_size:
        raise ConfigError(
            f"seq_len ({cfg.seq_len}) is longer than the model's block_size ({model.config.block_size}); "
            "lower train.seq_len or raise model.block_size"
        )
    run_dir, data_dir = Path(run_dir), Path(data_dir)
    distributed, rank0 = is_distributed(), is_rank0()
    if distributed and cfg.target_batch_size:
        # Each rank would measure its own memory and could choose a different split: a mismatch hangs no_sync.
        raise ConfigError(
            "train.target_batch_size (fit to memory) works in a single process only; under torchrun set "
            "train.micro_batch_size and train.grad_accum_steps (run the fit once in one process to choose them)"
        )
    if cfg.target_batch_size:
        cfg = fit_to_memory(model, cfg, run_dir, resume)
        if job is not None and getattr(job, "train", None) is not None:
            job = replace(job, train=cfg)  # config.toml records the micro-batch the fit chose
    seed_everything(cfg.seed)
    device = model.lm_head.weight.device
    # What differs between one process and many, in one place: the module the steps run through, the gradient
    # synchronization, the sums over data-parallel ranks, and this rank's place among them.
    runner, sync_off, reduce, ranks, dp, eval_dp = model, nullcontext, None, 1, None, None
    pipe, trained, scorer = None, model, model  # under pipelining: this rank's stage, and the pipeline as a scorer
    if distributed:
        parallel = parallel or ParallelConfig()
        mesh = build_mesh(parallel)
        ranks = mesh["dp"].size()
        dp = (mesh["dp"].get_local_rank(), ranks, mesh["dp"].get_group())
        if parallel.pp > 1:
            pipe = pipelined(model, mesh, parallel, cfg, device)
            trained, scorer = pipe.module, PipelineScorer(pipe)
        else:
            param_dtype, reduce_dtype = fsdp_mixed_precision(cfg.dtype, device)
            runner = parallelize(
                model, mesh, parallel, compile=cfg.compile, param_dtype=param_dtype, reduce_dtype=reduce_dtype
            )
            sync_off = no_sync(runner)
            reduce = partial(sum_over_ranks, group=dp[2])
            # Under DDP the bare model's forward talks to no one, so the ranks can split the validation windows.
            # Under FSDP or TP it runs collectives, and every rank must run the same forward passes: all score all.
            eval_dp = dp if runner is not model else None
    optimizer = build_optimizer(trained, cfg)  # after parallelize: FSDP replaces the parameters it shards
    loader = RandomWindows(
        shard_paths(data_dir, "train"), cfg.micro_batch_size, cfg.seq_len, tokenizer.hash, cfg.seed,
        rank=dp[0] if dp else 0,
    )  # fmt: skip
    val_paths, bytes_per_token = validation_split(data_dir)
    scaler = grad_scaler(cfg.dtype, device)

    start, best = 0, math.inf
    latest = checkpoint_to_resume(run_dir, resume)
    if latest is not None:
        state = load_training_checkpoint(latest, model, optimizer, pipe.module if pipe else None)  # + RNG states
        loader.load_state_dict(state["loader"])
        start, best = state["step"], state["extra"].get("best_val_loss", math.inf)
        if scaler is not None and "grad_scaler" in state["extra"]:
            scaler.load_state_dict(state["extra"]["grad_scaler"])
    if rank0:
        run_dir.mkdir(parents=True, exist_ok=True)
        save_config(job if job is not None else cfg, run_dir / "config.toml")

    end = cfg.max_steps if stop_at is None else min(stop_at, cfg.max_steps)
    autocast = autocast_factory(cfg.dtype, device)  # train/precision.py: why fp32 is the CPU default
    steps = CompiledSteps(runner, cfg.compile and not distributed)  # parallelize compiled the blocks already
    one_step = partial(
        accumulated_step, optimizer=optimizer, grad_clip=cfg.grad_clip, autocast=autocast, scaler=scaler,
        no_sync=sync_off, all_reduce=reduce, ranks=ranks,
    )  # fmt: skip
    # MFU's denominator is measured on this machine, in the training dtype, once per run (about a second on a CPU).
    peak_flops = matmul_peak_flops(device, cfg.dtype)
    model_flops = flops_per_token(model.config, cfg.seq_len)
    record: dict = {}
    model.train()

    def save(step: int) -> None:
        extra = {"best_val_loss": best, "train_config": asdict(cfg)}
        if scaler is not None:
            extra["grad_scaler"] = scaler.state_dict()
        target = run_dir / CHECKPOINTS / f"step_{step:06d}"
        gathered = pipeline_state(pipe, optimizer) if pipe else None  # every rank takes part in the gathers
        save_training_checkpoint(target, model, tokenizer, optimizer, loader.state_dict(), step, extra, gathered)
        # Prune only now that the new checkpoint is complete: a crash above leaves the older ones in place.
        if cfg.keep_last and rank0:
            for old in checkpoint_dirs(run_dir)[: -cfg.keep_last]:
                shutil.rmtree(old)

    log_or_not = MetricsLog(run_dir, start_step=start) if rank0 else NoMetrics()
    with log_or_not as log, StopOnSigint() as ctrl_c, collective_errors(parallel.timeout if distributed else 0):
        for step in tqdm(
            range(start, end), desc="training", unit="step", disable=not (progress and rank0), initial=start
        ):
            lr = lr_at(step, cfg)
            set_lr(optimizer, lr)
            reset_peak_memory(device)
            t0 = time.perf_counter()
            micro = []
            for _ in range(cfg.grad_accum_steps):
                # The loader's step counts micro-batches, so the data position survives a resume exactly.
                micro.append(tuple(t.to(device, non_blocking=True) for t in loader.batch(loader.step)))
                loader.step += 1
            if pipe:  # the schedule splits the rank's batch into its micro-batches itself
                inputs, targets = (torch.cat(part) for part in zip(*micro))  # (accum * B, T) each
                result = pipeline_step(pipe, inputs, targets, optimizer, cfg.grad_clip, autocast)
            else:
                result = steps.run(partial(one_step, micro_batches=micro), optimizer)
            if device.type == "cuda":
                torch.cuda.synchronize(device)  # time the work, not its launch
            step_time = time.perf_counter() - t0
            if not result.updated and not result.overflow and not cfg.skip_nonfinite:
                raise TrainingError(
                    f"step {step}: the loss is {result.loss} and the gradient norm {result.grad_norm}; training "
                    "diverged (lower lr, raise warmup_steps, keep grad_clip on, or set train.skip_nonfinite=true) "
                    "-- the update was not applied and no checkpoint was saved"
                )
            done = step + 1
            tokens_per_s = result.tokens / step_time  # of the whole run: result.tokens counts every rank's
            record = {
                "step": step, "loss": result.loss, "lr": lr, "grad_norm": result.grad_norm,
                "tokens_per_s": tokens_per_s, "mfu": mfu(model_flops, tokens_per_s / world_size(), peak_flops),
                "step_time": step_time, "peak_memory": peak_memory_bytes(device),
            }  # fmt: skip
            if scaler is not None:
                record["loss_scale"] = scaler.get_scale()
            if not result.updated:
                # this step changed nothing: an fp16 overflow (routine) or a non-finite loss or gradient
                record["skipped"] = "overflow" if result.overflow else True
            last = done == cfg.max_steps
            if val_paths and ((cfg.eval_every and done % cfg.eval_every == 0) or last):
                val = evaluate(scorer, val_paths, tokenizer.hash, cfg, bytes_per_token, eval_dp)
                record |= {"val_loss": val["loss"], "val_ppl": val["ppl"], "val_bpb": val["bpb"]}
                if val["loss"] < best:
                    best = val["loss"]
                    # every rank: a sharded model's gathers are collectives
                    weights, _ = pipeline_state(pipe) if pipe else gathered_state(model)
                    if rank0:
                        save_checkpoint(run_dir / CHECKPOINTS / "best", model, tokenizer, state=weights)
            log.log(record)
            # Every rank must stop after the same step, or the others would wait in a collective for ever.
            stop = ctrl_c.requested
            if distributed:
                stop = bool(sum_over_ranks(torch.tensor(int(stop), device=device)))  # over all ranks, not dp only
            if (cfg.checkpoint_every and done % cfg.checkpoint_every == 0) or done == end or stop:
                save(done)
            if stop:
                record["interrupted"] = True
                break
    if rank0:
        plot_loss(run_dir / METRICS_FILE, run_dir / "loss.png")
        write_report(run_dir, peak_flops=peak_flops)
    return record


def checkpoint_to_resume(run_dir: Path, resume: bool) -> Path | None:
    """The newest checkpoint of ``run_dir`` when resuming, else None; decided by rank 0, which writes the
    checkpoints (the others need not see the directory), and shared with every rank so that all stop or none.

    A run that would start afresh where checkpoints exist is refused: it would overwrite them step by step."""
    decision: list = [None, None]  # (checkpoint path, error)
    if is_rank0():
        saved = checkpoint_dirs(run_dir)
        if resume and not saved:
            decision[1] = f"nothing to resume: {run_dir / CHECKPOINTS} has no step_NNNNNN checkpoint"
        elif not resume and saved:
            decision[1] = (
                f"{run_dir} already holds checkpoints of a run (the newest is {saved[-1].name}): continue it with "
                "--resume, or choose another --out"
            )
        elif resume:
            decision[0] = str(saved[-1])
    if is_distributed():
        dist.broadcast_object_list(decision, src=0)
    if decision[1]:
        raise CheckpointError(decision[1])
    return Path(decision[0]) if decision[0] else None


def pipelined(model: GPT, mesh, parallel: ParallelConfig, cfg: TrainConfig, device: torch.device) -> Pipeline:
    """This rank's stage of ``model`` under ``parallel.pp`` stages (with tensor parallelism and FSDP inside, when
    the mesh has them), run by ``parallel.schedule`` over ``train.grad_accum_steps`` micro-batches per step."""
    if mesh["dp"].size() > 1 and parallel.dp_shard != "fsdp":
        raise ConfigError("pipeline parallelism with data parallelism needs parallel.dp_shard=fsdp, not ddp")
    if cfg.dtype == "fp16":
        raise ConfigError("pipeline parallelism trains in fp32 or bf16; fp16's loss scaler is not wired into it")
    return build_pipeline(
        model, mesh["pp"].get_group(), cfg.grad_accum_steps, parallel.schedule, str(device), dp_mesh=mesh["dp"],
        tp_mesh=mesh["tp"], compile=cfg.compile, precision=fsdp_mixed_precision(cfg.dtype, device),
    )  # fmt: skip


class NoMetrics:
    """The metrics log of every rank but 0: the records are the same on all ranks, so one writer is enough."""

    def log(self, record: dict) -> None:
        pass

    def __enter__(self) -> NoMetrics:
        return self

    def __exit__(self, *exc) -> None:
        pass


def fit_to_memory(model: GPT, cfg: TrainConfig, run_dir: Path, resume: bool) -> TrainConfig:
    """``cfg`` with micro_batch_size and grad_accum_steps chosen for ``cfg.target_batch_size`` (train/fit.py).

    A resumed run keeps the split of the run it continues: the loader counts micro-batches, so a different split
    would change which data comes next. The fit runs before the optimizer exists, so AdamW's moments are counted
    once, by the fit's own probe optimizer."""
    saved = checkpoint_dirs(run_dir) if resume else []
    if saved:
        state = json.loads((saved[-1] / "train_state" / "state.json").read_text())
        previous = state["extra"]["train_config"]
        micro, accum = previous["micro_batch_size"], previous["grad_accum_steps"]
        if micro * accum != cfg.target_batch_size:
            raise ConfigError(
                f"the run being resumed used {micro} x {accum} = {micro * accum} sequences per step, not "
                f"target_batch_size={cfg.target_batch_size}; resume with the same batch size"
            )
        return replace(cfg, micro_batch_size=micro, grad_accum_steps=accum)
    budget = int(cfg.memory_budget_gb * 2**30) or None
    fit = fit_batch(model, cfg.target_batch_size, cfg.seq_len, budget, cfg=cfg)
    print(f"fit to memory: {fit.format()}")
    return replace(cfg, micro_batch_size=fit.micro_batch_size, grad_accum_steps=fit.grad_accum_steps)


class StopOnSigint:
    """Turn Ctrl-C (SIGINT) into a request to stop after the current step, so the loop saves a checkpoint and
    returns instead of dying mid-step; a second Ctrl-C interrupts at once. Only the main thread can own signals."""

    def __init__(self):
        self.requested = False
        self._previous = None

    def _handle(self, signum, frame) -> None:
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True

    def __enter__(self) -> StopOnSigint:
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGINT, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)


def validation_split(data_dir: Path) -> tuple[list[Path], float | None]:
    """The validation shards (none: no evaluation) and their bytes per token, from ``tokenize.json``."""
    paths = sorted(data_dir.glob("val_*.bin"))
    report = data_dir / REPORT
    stats = json.loads(report.read_text()).get("val", {}) if report.is_file() else {}
    # Tokens include each document's BOS, which has no bytes: bpb counts it as part of the cost of the text.
    bytes_per_token = stats["bytes"] / stats["tokens"] if stats.get("tokens") and stats.get("bytes") else None
    return paths, bytes_per_token

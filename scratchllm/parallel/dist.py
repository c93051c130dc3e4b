"""Process groups and device meshes: how the processes of a distributed run find each other.

``torchrun --nproc-per-node N -m scratchllm train ...`` starts N copies of the program and tells each who it is
through environment variables: ``RANK`` (0..WORLD_SIZE-1 over all nodes), ``LOCAL_RANK`` (its device on this node),
``WORLD_SIZE``, and ``MASTER_ADDR`` / ``MASTER_PORT`` (where rank 0's rendezvous store listens).
:func:`init_distributed` reads them through ``init_process_group``'s ``env://`` method; without them (one process,
no launcher) it creates no process group, and the trainer then runs exactly as it always has.

The backend is NCCL between GPUs (collectives over NVLink and InfiniBand) and Gloo between CPU processes (TCP).
Every collective has a deadline, the process-group timeout: a rank that dies closes its connections and its peers
fail at once; a rank that hangs makes them fail when the timeout expires. Either way the survivors raise
:class:`DistributedError`, whose message says what probably happened, instead of waiting for ever.

A device mesh (``init_device_mesh``) arranges the ranks in a grid whose named dimensions each parallelism uses:
``tp`` innermost (tensor parallelism talks every layer, so it wants the fastest links, inside a node), then ``dp``
(DDP or FSDP: once per step), then ``pp`` outermost (pipeline stages pass activations point to point). This is
torchtitan's layout (Liang et al. 2024, "TorchTitan: One-stop PyTorch native solution for production ready LLM
pre-training").
"""

from __future__ import annotations

import atexit
import os
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta

import torch
import torch.distributed as dist
from torch.distributed.device_mesh import DeviceMesh, init_device_mesh

from ..config import ConfigError

DP_SHARDS = ("ddp", "fsdp")


@dataclass
class ParallelConfig:
    """How a distributed run spreads over its processes; ignored by a single process without a launcher."""

    # Data parallelism over the ranks left after tensor and pipeline parallelism: "ddp" replicates the model and
    # all-reduces gradients; "fsdp" shards parameters, gradients and optimizer state (FSDP2, ``fully_shard``).
    dp_shard: str = "ddp"
    # Tensor-parallel degree: each block's matrices split over this many ranks (keep it within one node).
    tp: int = 1
    # Pipeline-parallel degree: the model cut into this many stages (train.grad_accum_steps micro-batches per step
    # flow through them; at least 2 * pp keeps the bubble, (pp-1)/(m+pp-1), below a third).
    pp: int = 1
    # The pipeline's schedule: "1f1b" (one forward, one backward: at most pp micro-batches' activations in flight)
    # or "gpipe" (all forwards, then all backwards: the same bubble, m micro-batches' activations).
    schedule: str = "1f1b"
    # Seconds a collective may wait for the other ranks before the run fails with an error (a dead rank is noticed
    # at once; this bounds a hung one). Long enough for a slow checkpoint save or the first torch.compile.
    timeout: float = 600.0

    def __post_init__(self) -> None:
        if self.dp_shard not in DP_SHARDS:
            raise ConfigError(f"parallel.dp_shard must be one of {', '.join(DP_SHARDS)}; got {self.dp_shard!r}")
        for name in ("tp", "pp"):
            if getattr(self, name) < 1:
                raise ConfigError(f"parallel.{name} must be at least 1 (1 turns it off); got {getattr(self, name)}")
        if self.schedule not in ("1f1b", "gpipe"):
            raise ConfigError(f"parallel.schedule must be 1f1b or gpipe; got {self.schedule!r}")
        if not self.timeout > 0:
            raise ConfigError(f"parallel.timeout must be a positive number of seconds; got {self.timeout}")


class DistributedError(RuntimeError):
    """A collective failed: another rank died, hung past the timeout, or the network between them broke."""


def launched() -> bool:
    """True when a launcher (torchrun, or srun exporting the same variables) started several processes."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def init_distributed(cfg: ParallelConfig | None = None) -> bool:
    """Join the process group the launcher set up; returns whether there is one. Idempotent.

    One process (no launcher, or ``--nproc-per-node 1``) creates none, so it runs exactly like a plain program.
    With several, each selects its GPU from ``LOCAL_RANK`` before NCCL starts, and the group is destroyed at exit."""
    if is_distributed():
        return True
    if not launched():
        return False
    cfg = cfg or ParallelConfig()
    missing = [name for name in ("RANK", "MASTER_ADDR", "MASTER_PORT") if name not in os.environ]
    if missing:
        raise ConfigError(
            f"WORLD_SIZE is set but {', '.join(missing)} is not: start distributed runs with torchrun "
            "(torchrun --nproc-per-node N -m scratchllm train ...)"
        )
    backend = "nccl" if torch.cuda.is_available() else "gloo"
    if backend == "nccl":
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    dist.init_process_group(backend, timeout=timedelta(seconds=cfg.timeout))
    atexit.register(destroy)
    return True


def destroy() -> None:
    """Leave the process group (NCCL warns at exit about groups never destroyed), after a barrier: a rank that tore
    its group down while a peer's last collective was still in flight could abort in gloo's worker threads
    ("terminate called without an active exception"). If a peer is dead the barrier fails, and there is nothing
    left to wait for."""
    if is_distributed():
        try:
            dist.barrier()
        except (RuntimeError, dist.DistError):
            pass
        dist.destroy_process_group()


def is_distributed() -> bool:
    return dist.is_available() and dist.is_initialized()


def rank() -> int:
    return dist.get_rank() if is_distributed() else 0


def world_size() -> int:
    return dist.get_world_size() if is_distributed() else 1


def is_rank0() -> bool:
    """Whether this process logs, writes reports and plots, shows progress and saves checkpoints."""
    return rank() == 0


def device() -> torch.device:
    """This process's device: its own GPU (``LOCAL_RANK``) when there are GPUs, else the CPU."""
    if torch.cuda.is_available():
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    return torch.device("cpu")


def build_mesh(cfg: ParallelConfig) -> DeviceMesh:
    """The (pp, dp, tp) device mesh over every rank; dp is what is left: WORLD_SIZE / (pp * tp)."""
    world = world_size()
    if world % (cfg.tp * cfg.pp):
        raise ConfigError(
            f"{world} processes cannot be split into pipeline stages of {cfg.pp} x tensor-parallel groups of "
            f"{cfg.tp}: parallel.tp * parallel.pp must divide the number of processes"
        )
    dp = world // (cfg.tp * cfg.pp)
    device_type = "cuda" if torch.cuda.is_available() else "cpu"
    return init_device_mesh(device_type, (cfg.pp, dp, cfg.tp), mesh_dim_names=("pp", "dp", "tp"))


def sum_over_ranks(value: torch.Tensor, group=None) -> torch.Tensor:
    """``value`` summed over the ranks of ``group`` (default: all), returned as a new tensor; itself without one."""
    if not is_distributed():
        return value
    total = value.clone()
    dist.all_reduce(total, op=dist.ReduceOp.SUM, group=group)
    return total


def _is_communication_error(exc: BaseException) -> bool:
    # NCCL and newer Gloo raise DistError subclasses; older Gloo paths raise a plain RuntimeError naming gloo.
    text = str(exc).lower()
    return isinstance(exc, dist.DistError) or "gloo" in text or "nccl" in text


@contextmanager
def collective_errors(timeout: float):
    """Turn a failed collective inside the block into a :class:`DistributedError` that says what to look for."""
    try:
        yield
    except RuntimeError as exc:
        if not is_distributed() or isinstance(exc, DistributedError) or not _is_communication_error(exc):
            raise
        first_line = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else type(exc).__name__
        raise DistributedError(
            f"rank {rank()}: a collective with the other ranks failed; another rank probably died (see its log "
            f"for the cause) or hung longer than parallel.timeout={timeout:g}s. Underlying error: {first_line}"
        ) from exc

"""Run a test's worker in a group of processes and collect what rank 0 reports: the harness of tests/parallel.

A worker is ``worker(rank, port, directory)``: it joins a gloo group on ``port``, does its work, and rank 0 writes a
JSON-serializable dict with :func:`write_results`; :func:`spawn_workers` starts the group, waits, and returns it.
"""

from __future__ import annotations

import json
import socket
from collections.abc import Callable
from pathlib import Path

import torch.multiprocessing as mp

RESULTS = "results.json"


def free_port() -> int:
    """A TCP port nothing listens on now, for the group's rendezvous."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def spawn_workers(worker: Callable[[int, int, str], None], directory: str | Path, nprocs: int) -> dict:
    """Run ``worker`` in ``nprocs`` processes and return the results rank 0 wrote into ``directory``."""
    mp.spawn(worker, args=(free_port(), str(directory)), nprocs=nprocs, join=True)
    return json.loads((Path(directory) / RESULTS).read_text())


def write_results(directory: str | Path, results: dict) -> None:
    """Called by rank 0 at the end of a worker."""
    (Path(directory) / RESULTS).write_text(json.dumps(results))

"""Pipeline bubble, measured against the formula: idle fraction per stage of GPipe and 1F1B versus (p-1)/(m+p-1).

Two gloo processes on the CPU (one thread each) run a Llama-style model of 4 layers, width 384, cut into 2 stages,
on batches of 32 x 128 tokens, for m = 2, 4, 8 and 16 micro-batches under both schedules. Each stage adds up the
seconds it computes (``TimedStage``); the rest of the slowest stage's wall time is bubble (``measured_bubble``). Each
line is the median of 5 steps after a warm-up step (``--quick``: of 3, the same model, batch and micro-batch counts).
Run: `python benchmarks/bubble.py [--quick] [--json PATH]`. ``--json PATH`` also writes every number printed (each
stage's bubble, busy and wall seconds), with the settings, the machine's load average and the command line, to PATH,
and the table of bubbles as Markdown beside it (PATH with suffix ``.md``).
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import socket
import sys
import tempfile
from pathlib import Path

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from scratchllm.fileio import atomic_write_text
from scratchllm.model import GPT, GPTConfig
from scratchllm.parallel.pipeline import build_pipeline, measured_bubble, pipeline_step
from scratchllm.train.config import TrainConfig
from scratchllm.train.optim import build_optimizer

MODEL = GPTConfig(vocab_size=512, block_size=128, n_layer=4, n_head=6, d_model=384, tie_embeddings=False)
BATCH, STEPS, QUICK_STEPS = 32, 5, 3
MICRO_BATCHES, SCHEDULES = (2, 4, 8, 16), ("gpipe", "1f1b")


def median_step(pipe, steps: int) -> dict[str, float]:
    """This stage's ``measured_bubble`` of the median of ``steps`` steps, after a warm-up step."""
    optimizer = build_optimizer(pipe.module, TrainConfig(lr=1e-4))
    idx = torch.randint(0, MODEL.vocab_size, (BATCH, MODEL.block_size))
    targets = torch.randint(0, MODEL.vocab_size, (BATCH, MODEL.block_size))
    pipeline_step(pipe, idx, targets, optimizer)  # warm-up: the stages infer their shapes
    runs = []
    for _ in range(steps):
        pipeline_step(pipe, idx, targets, optimizer)
        runs.append(measured_bubble(pipe))
    return sorted(runs, key=lambda r: r["bubble"])[steps // 2]


def row(m: int, schedule: str, stages: list[dict]) -> dict:
    """One line of the results: the formula and each stage's median step."""
    out = {"name": f"{schedule}-{m}", "schedule": schedule, "m": m, "formula": stages[0]["ideal"]}
    for i, s in enumerate(stages):
        out |= {f"stage{i}": s["bubble"], f"busy{i}": s["busy"], f"wall{i}": s["wall"]}
    return out


def print_row(r: dict) -> None:
    measured = f"{r['stage0']:.2f} / {r['stage1']:.2f}"
    print(f"m={r['m']:2d} {r['schedule']:5s} formula {r['formula']:.2f}   measured (stage 0 / 1) {measured}")


def worker(rank: int, port: int, steps: int, out: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)  # two processes on two cores
    dist.init_process_group("gloo", rank=rank, world_size=2)
    rows = []
    for m in MICRO_BATCHES:
        for schedule in SCHEDULES:
            torch.manual_seed(0)
            pipe = build_pipeline(GPT.build(MODEL), dist.group.WORLD, m, schedule)
            stages = [None, None]
            dist.all_gather_object(stages, median_step(pipe, steps))
            if rank == 0:
                rows.append(row(m, schedule, stages))
                print_row(rows[-1])
    if rank == 0:
        Path(out).write_text(json.dumps(rows))
    dist.destroy_process_group()


def measure(steps: int) -> list[dict]:
    """Every (m, schedule) line, from rank 0 of two spawned processes."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "rows.json"
        mp.spawn(worker, args=(port, steps, str(out)), nprocs=2)
        return json.loads(out.read_text())


def markdown(rows: list[dict]) -> str:
    """The chapter's table: a line per m, the formula, then each schedule's stage 0 / stage 1."""
    by = {(r["m"], r["schedule"]): r for r in rows}
    lines = ["| micro-batches $m$ | $(p-1)/(m+p-1)$ | GPipe, measured | 1F1B, measured |", "|---|---|---|---|"]
    for m in sorted({r["m"] for r in rows}):
        cells = [str(m), f"{by[m, SCHEDULES[0]]['formula']:.2f}"]
        cells += [f"{by[m, s]['stage0']:.2f} / {by[m, s]['stage1']:.2f}" for s in SCHEDULES]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def write_json(path: str, result: dict) -> None:
    atomic_write_text(path, json.dumps(result, indent=2) + "\n")
    atomic_write_text(Path(path).with_suffix(".md"), markdown(result["rows"]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    parser.add_argument("--quick", action="store_true", help=f"the median of {QUICK_STEPS} steps, not {STEPS}")
    parser.add_argument("--json", metavar="PATH", help="write the results as JSON here, and a Markdown table beside")
    args = parser.parse_args()
    steps = QUICK_STEPS if args.quick else STEPS
    load = list(os.getloadavg())
    print(__doc__.strip().splitlines()[0])
    rows = measure(steps)
    if args.json:
        write_json(args.json, {
            "command": shlex.join(["python", "benchmarks/bubble.py", *sys.argv[1:]]),
            "settings": {"quick": args.quick, "stages": 2, "n_layer": MODEL.n_layer, "d_model": MODEL.d_model,
                         "n_head": MODEL.n_head, "vocab_size": MODEL.vocab_size, "batch": BATCH,
                         "seq_len": MODEL.block_size, "steps": steps, "micro_batches": list(MICRO_BATCHES),
                         "threads_per_process": 1, "cpus": os.cpu_count()},
            "load_average": load, "rows": rows,
        })  # fmt: skip


if __name__ == "__main__":
    main()

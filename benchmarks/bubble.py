"""Pipeline bubble, measured against the formula: idle fraction per stage of GPipe and 1F1B versus (p-1)/(m+p-1).

Two gloo processes on the CPU (one thread each) run a Llama-style model of 4 layers, width 384, cut into 2 stages,
on batches of 32 x 128 tokens, for m = 2, 4, 8 and 16 micro-batches under both schedules. Each stage adds up the
seconds it computes (``TimedStage``); the rest of the slowest stage's wall time is bubble (``measured_bubble``). Each
line is the median of 5 steps after a warm-up step. Run: `python benchmarks/bubble.py`.
"""

from __future__ import annotations

import os
import socket

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from scratchllm.model import GPT, GPTConfig
from scratchllm.parallel.pipeline import build_pipeline, measured_bubble, pipeline_step
from scratchllm.train.config import TrainConfig
from scratchllm.train.optim import build_optimizer

MODEL = GPTConfig(vocab_size=512, block_size=128, n_layer=4, n_head=6, d_model=384, tie_embeddings=False)
BATCH, STEPS = 32, 5


def worker(rank: int, port: int) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)  # two processes on two cores
    dist.init_process_group("gloo", rank=rank, world_size=2)
    for m in (2, 4, 8, 16):
        for schedule in ("gpipe", "1f1b"):
            torch.manual_seed(0)
            pipe = build_pipeline(GPT.build(MODEL), dist.group.WORLD, m, schedule)
            optimizer = build_optimizer(pipe.module, TrainConfig(lr=1e-4))
            idx = torch.randint(0, MODEL.vocab_size, (BATCH, MODEL.block_size))
            targets = torch.randint(0, MODEL.vocab_size, (BATCH, MODEL.block_size))
            pipeline_step(pipe, idx, targets, optimizer)  # warm-up: the stages infer their shapes
            runs = []
            for _ in range(STEPS):
                pipeline_step(pipe, idx, targets, optimizer)
                runs.append(measured_bubble(pipe))
            median = sorted(runs, key=lambda r: r["bubble"])[STEPS // 2]
            stages = [None, None]
            dist.all_gather_object(stages, median)
            if rank == 0:
                measured = " / ".join(f"{s['bubble']:.2f}" for s in stages)
                print(f"m={m:2d} {schedule:5s} formula {median['ideal']:.2f}   measured (stage 0 / 1) {measured}")
    dist.destroy_process_group()


def main() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    print(__doc__.strip().splitlines()[0])
    mp.spawn(worker, args=(port,), nprocs=2)


if __name__ == "__main__":
    main()

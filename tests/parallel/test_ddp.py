"""Data parallelism on CPU with gloo, 2 processes: DDP steps equal the single-process step on the same global batch.

Oracle: ``accumulated_step`` in one process over every micro-batch of every rank, from the same initial weights. The
optimizer is SGD, whose update is the gradient itself times the learning rate, so a gradient off by a constant factor
(the classic DDP mistake: averaging over ranks what should be summed, or the reverse) shows; AdamW would hide it.
One spawn runs every case in float64; rank 0 writes the largest differences to a JSON file the tests read.

Then the launcher end to end: ``torchrun --nproc-per-node 2 -m scratchllm train`` runs, only rank 0 writes, and its
checkpoint loads into a single process; and a rank that dies makes the other fail with a clear error, not hang.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from scratchllm.cli.train import TrainJob
from scratchllm.config import ConfigError, load_config
from scratchllm.data import CorpusConfig
from scratchllm.data.loader import RandomWindows
from scratchllm.data.tokenize import shard_paths, tokenize_corpus
from scratchllm.model import GPT, GPTConfig
from scratchllm.parallel.dist import ParallelConfig, build_mesh, init_distributed, is_rank0, sum_over_ranks
from scratchllm.parallel.parallelize import no_sync, parallelize
from scratchllm.train.checkpoint import load_checkpoint
from scratchllm.train.config import TrainConfig
from scratchllm.train.metrics import read_metrics
from scratchllm.train.step import accumulated_step
from scratchllm.train.trainer import evaluate, validation_split

from .spawn import free_port

WORLD = 2
ROOT = Path(__file__).resolve().parents[2]
MODEL = GPTConfig(vocab_size=64, block_size=8, n_layer=2, n_head=2, d_model=16)
MICRO, T, LR = 2, 8, 0.5


def micro_batches(rank: int, accum: int, masked: bool) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Rank ``rank``'s micro-batches: random tokens; with ``masked``, rank 0 keeps only a few targets and rank 1
    nearly all, so the ranks count very different numbers of targets."""
    g = torch.Generator().manual_seed(100 * rank + accum)
    out = []
    for _ in range(accum):
        tokens = torch.randint(0, MODEL.vocab_size, (MICRO, T + 1), generator=g)
        inputs, targets = tokens[:, :-1], tokens[:, 1:].clone()
        if masked:
            keep = 0.15 if rank == 0 else 0.9
            targets[torch.rand(targets.shape, generator=g) > keep] = -100
        out.append((inputs, targets))
    return out


def fresh_model() -> GPT:
    torch.manual_seed(0)
    return GPT.build(MODEL, dtype=torch.float64)


def one_step(model, runner, batches, **kw) -> tuple[list[torch.Tensor], float]:
    opt = torch.optim.SGD(model.parameters(), lr=LR)
    result = accumulated_step(runner, batches, opt, **kw)
    return [p.detach().clone() for p in model.parameters()], result.loss


CASES = {"one step": (1, False), "accumulation": (3, False), "accumulation, masked": (3, True)}


def _ddp_worker(rank: int, port: int, out: str) -> None:
    os.environ |= {"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port), "RANK": str(rank), "WORLD_SIZE": str(WORLD)}
    dist.init_process_group("gloo", rank=rank, world_size=WORLD)
    torch.set_num_threads(1)  # two processes share two cores
    mesh = build_mesh(ParallelConfig())
    report = {}
    for name, (accum, masked) in CASES.items():
        model = fresh_model()
        ddp = parallelize(model, mesh, ParallelConfig())
        reduce = lambda t: sum_over_ranks(t, mesh["dp"].get_group())  # noqa: E731
        mine = micro_batches(rank, accum, masked)
        got, loss = one_step(model, ddp, mine, no_sync=no_sync(ddp), all_reduce=reduce, ranks=WORLD)
        # The oracle: one process, one step over the micro-batches of both ranks.
        ref_model = fresh_model()
        every = [b for r in range(WORLD) for b in micro_batches(r, accum, masked)]
        want, ref_loss = one_step(ref_model, ref_model, every)
        # What a per-rank mean would give (each rank normalized by its own count): must differ where counts do.
        naive_model = fresh_model()
        naive_ddp = parallelize(naive_model, mesh, ParallelConfig())
        naive, _ = one_step(naive_model, naive_ddp, mine, no_sync=no_sync(naive_ddp))
        report[name] = {
            "param": max(float((a - b).abs().max()) for a, b in zip(got, want)),
            "loss": abs(loss - ref_loss),
            "naive": max(float((a - b).abs().max()) for a, b in zip(naive, want)),
        }
    if rank == 0:
        Path(out).write_text(json.dumps(report))
    dist.barrier()  # leave together (see test_fsdp.py)
    dist.destroy_process_group()


@pytest.fixture(scope="module")
def ddp_report(tmp_path_factory) -> dict:
    out = tmp_path_factory.mktemp("ddp") / "report.json"
    mp.spawn(_ddp_worker, args=(free_port(), str(out)), nprocs=WORLD, join=True)
    return json.loads(out.read_text())


@pytest.mark.parametrize("case", list(CASES))
def test_ddp_step_equals_single_process(ddp_report, case):
    assert ddp_report[case]["param"] < 1e-12, ddp_report[case]
    # The reported loss is summed in fp32 (train/step.py), and the ranks add in another order: fp32 tolerance.
    assert ddp_report[case]["loss"] < 1e-6, ddp_report[case]


def test_global_normalization_matters_when_ranks_count_differently(ddp_report):
    # The masked case is the one a per-rank mean gets wrong; with equal counts it happens to be right.
    assert ddp_report["accumulation, masked"]["naive"] > 1e-4
    assert ddp_report["accumulation"]["naive"] < 1e-12


def test_loader_ranks_draw_different_windows(trained, tmp_path):
    tokenize_corpus(trained, CorpusConfig(max_documents=20, val_fraction=0.0), tmp_path, workers=1)
    paths = shard_paths(tmp_path, "train")
    windows = [
        RandomWindows(paths, 4, 16, trained.hash, seed=3, **kw).batch(5)[0] for kw in ({}, {"rank": 0}, {"rank": 1})
    ]
    default, r0, r1 = windows
    assert torch.equal(default, r0)  # one process draws what rank 0 draws: single-process runs unchanged
    assert not torch.equal(r0, r1)


def test_one_process_without_a_launcher_has_no_process_group(monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    assert not init_distributed() and not dist.is_initialized() and is_rank0()


def test_parallel_table_is_validated():
    job = load_config(TrainJob, None, ["parallel.dp_shard=fsdp", "parallel.timeout=30"])
    assert job.parallel == ParallelConfig(dp_shard="fsdp", timeout=30.0)
    for bad in ("parallel.dp_shard=zero3", "parallel.tp=0", "parallel.timeout=0"):
        with pytest.raises(ConfigError, match="parallel"):
            load_config(TrainJob, None, [bad])


@pytest.mark.slow
def test_torchrun_train_writes_once_and_loads_in_one_process(trained, tmp_path):
    data, tok = tmp_path / "tokens", tmp_path / "tokenizer"
    tokenize_corpus(trained, CorpusConfig(max_documents=40, val_fraction=0.2), data, workers=1)
    trained.save(tok)
    run = tmp_path / "run"
    cmd = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", str(WORLD),
        "-m", "scratchllm", "train", "--data", str(data), "--tokenizer", str(tok), "--out", str(run),
        "model.block_size=16", "model.n_layer=1", "model.n_head=2", "model.d_model=32", "train.max_steps=4",
        "train.warmup_steps=1", "train.micro_batch_size=2", "train.grad_accum_steps=2", "train.seq_len=16",
        "train.eval_every=2", "train.eval_batches=2", "train.checkpoint_every=2",
    ]  # fmt: skip
    env = os.environ | {"OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    done = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.count("model: ") == 1  # only rank 0 speaks
    records = read_metrics(run / "metrics.jsonl")
    assert [r["step"] for r in records] == [0, 1, 2, 3]  # one writer: each step once
    assert all(r["loss"] > 0 for r in records) and "val_loss" in records[-1]
    # The checkpoint loads in one process, and scoring there gives the validation loss the 2 ranks split and summed.
    model, tokenizer = load_checkpoint(run / "checkpoints" / "step_000004")
    val_paths, bytes_per_token = validation_split(data)
    cfg = TrainConfig(micro_batch_size=2, seq_len=16, eval_batches=2, warmup_steps=0)
    alone = evaluate(model, val_paths, tokenizer.hash, cfg, bytes_per_token)
    assert abs(alone["loss"] - records[-1]["val_loss"]) < 1e-5


DYING = """
import os, sys, time, torch, torch.distributed as dist
from scratchllm.parallel.dist import ParallelConfig, collective_errors, init_distributed, sum_over_ranks
init_distributed(ParallelConfig(timeout=TIMEOUT))
sum_over_ranks(torch.ones(1))  # both ranks are up
if dist.get_rank() == 0:  # rank 0 fails, rank 1 must notice (rank 0 hosts the rendezvous store, so it outlives 1)
    if MODE == "dies":
        os._exit(3)
    time.sleep(10 * TIMEOUT)  # hangs
with collective_errors(TIMEOUT):
    sum_over_ranks(torch.ones(1))
"""


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["dies", "hangs"])
def test_a_rank_that_dies_or_hangs_stops_the_other(mode):
    timeout, port = 4.0, free_port()
    code = DYING.replace("TIMEOUT", str(timeout)).replace("MODE", repr(mode))
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", code], cwd=ROOT, stderr=subprocess.PIPE, text=True,
            env=os.environ | {"RANK": str(r), "WORLD_SIZE": str(WORLD), "MASTER_ADDR": "127.0.0.1",
                              "MASTER_PORT": str(port), "PYTHONPATH": str(ROOT)},
        )
        for r in range(WORLD)
    ]  # fmt: skip
    start = time.monotonic()
    try:
        _, err = procs[1].communicate(timeout=60)
        elapsed = time.monotonic() - start
    finally:
        for p in procs:
            p.kill()
            p.communicate()
    assert procs[1].returncode != 0
    assert "DistributedError" in err and "another rank probably died" in err, err[-2000:]
    assert elapsed < timeout + 20  # start-up included: it did not wait for ever

"""Checkpoints cross strategies: a run saved under one parallel layout resumes under another with the same losses.

Every layout writes the same files (the shards gathered whole on rank 0, train/state.py), and every layout reads them
back (broadcast from rank 0 and sharded into place). The oracle is the uninterrupted run: resuming its step-3
checkpoint under another layout must reproduce its losses for steps 3 to 5, since the data a step sees depends only
on (seed, step, data-parallel rank) and the data-parallel size is the same on both sides:

- DDP over 2 ranks, resumed under FSDP over 2 ranks, and under FSDP x tensor parallelism on a 2 x 2 mesh (4
  processes: the 2D layout of the trainer);
- DDP over 2 ranks, resumed under two pipeline stages x FSDP over 2 ranks (4 processes);
- one process, resumed under tensor parallelism over 2 ranks (data-parallel size 1) or two pipeline stages (GPipe),
  and the reverse; and each of those layouts trained from the start gives the one-process losses.

fp32 with different reduction orders: losses agree to 1e-4, not bit for bit. Each launch starts torchrun (a few
seconds of imports per process), so the whole file is slow-marked.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from scratchllm.data import CorpusConfig
from scratchllm.data.tokenize import tokenize_corpus
from scratchllm.train.metrics import read_metrics

ROOT = Path(__file__).resolve().parents[2]
STEPS, SAVED = 6, 3
MODEL = ["model.block_size=16", "model.n_layer=2", "model.n_head=2", "model.d_model=32", "model.dropout=0.0"]
TRAIN = [
    f"train.max_steps={STEPS}", "train.warmup_steps=1", "train.micro_batch_size=2", "train.grad_accum_steps=2",
    "train.seq_len=16", "train.eval_every=0", "train.eval_batches=1", f"train.checkpoint_every={SAVED}",
    "train.keep_last=0", "train.lr=3e-3",
]  # fmt: skip
LAYOUTS = {
    "ddp": ["parallel.dp_shard=ddp"],
    "fsdp": ["parallel.dp_shard=fsdp"],
    "fsdp+tp": ["parallel.dp_shard=fsdp", "parallel.tp=2"],
    "pp+fsdp": ["parallel.dp_shard=fsdp", "parallel.pp=2"],
    "tp": ["parallel.tp=2"],
    "pp": ["parallel.pp=2", "parallel.schedule=gpipe"],
    "single": [],
}
PROCESSES = {"ddp": 2, "fsdp": 2, "fsdp+tp": 4, "pp+fsdp": 4, "tp": 2, "pp": 2, "single": 1}

pytestmark = pytest.mark.slow


def run(layout: str, data: Path, tok: Path, out: Path, resume: bool = False) -> list[dict]:
    """``scratchllm train`` under ``layout`` (torchrun for more than one process); returns the run's metrics."""
    n = PROCESSES[layout]
    launcher = ["-m", "torch.distributed.run", "--standalone", "--nproc-per-node", str(n)] if n > 1 else []
    cmd = [
        sys.executable, *launcher, "-m", "scratchllm", "train", "--data", str(data), "--tokenizer", str(tok),
        "--out", str(out), *(["--resume"] if resume else []), *MODEL, *TRAIN, *LAYOUTS[layout],
    ]  # fmt: skip
    env = os.environ | {"OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    done = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    errors = [line for line in done.stderr.splitlines() if "Error" in line and "ChildFailedError" not in line]
    assert done.returncode == 0, f"{layout}: " + "\n".join(errors[-5:] or [done.stderr[-3000:]])
    return read_metrics(out / "metrics.jsonl")


def resume_copy(run_dir: Path, to: Path) -> Path:
    """A copy of ``run_dir`` whose newest checkpoint is the step-3 one: resuming it redoes steps 3 to 5."""
    shutil.copytree(run_dir, to)
    shutil.rmtree(to / "checkpoints" / f"step_{STEPS:06d}")
    return to


@pytest.fixture(scope="module")
def corpus(trained, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("resume")
    tokenize_corpus(trained, CorpusConfig(max_documents=40, val_fraction=0.2), tmp / "tokens", workers=1)
    trained.save(tmp / "tokenizer")
    return tmp, tmp / "tokens", tmp / "tokenizer"


def losses(records: list[dict]) -> dict[int, float]:
    return {r["step"]: r["loss"] for r in records}


def assert_continues(reference: list[dict], resumed: list[dict]) -> None:
    ref, got = losses(reference), losses(resumed)
    assert sorted(got) == list(range(STEPS)), "the resumed log keeps steps 0-2 and adds 3-5 once each"
    for step in range(SAVED, STEPS):
        assert abs(got[step] - ref[step]) < 1e-4, (step, got[step], ref[step])
    # Not trivially equal: the losses move from step to step, so a resume that skipped the update would show.
    assert len({round(ref[s], 4) for s in range(SAVED, STEPS)}) == STEPS - SAVED


@pytest.fixture(scope="module")
def ddp_run(corpus):
    tmp, data, tok = corpus
    return run("ddp", data, tok, tmp / "ddp"), tmp / "ddp"


@pytest.mark.parametrize("layout", ["fsdp", "fsdp+tp", "pp+fsdp"])
def test_ddp_checkpoint_resumes_under(layout, corpus, ddp_run):
    tmp, data, tok = corpus
    reference, run_dir = ddp_run
    resumed = run(layout, data, tok, resume_copy(run_dir, tmp / f"ddp-to-{layout}"), resume=True)
    assert_continues(reference, resumed)


@pytest.fixture(scope="module")
def single_run(corpus):
    tmp, data, tok = corpus
    return run("single", data, tok, tmp / "single"), tmp / "single"


@pytest.mark.parametrize("layout", ["tp", "pp"])
def test_single_process_checkpoints_are_interchangeable_with(layout, corpus, single_run):
    tmp, data, tok = corpus
    single, single_dir = single_run
    resumed = run(layout, data, tok, resume_copy(single_dir, tmp / f"single-to-{layout}"), resume=True)
    assert_continues(single, resumed)
    whole = run(layout, data, tok, tmp / layout)
    # The same run, computed with every matrix split over two ranks, or the blocks cut into two stages; the
    # validation loss at the end comes from the same windows (the pipeline scores them stage after stage).
    assert_continues(single, whole)
    assert abs(whole[-1]["val_loss"] - single[-1]["val_loss"]) < 1e-4
    back = run("single", data, tok, resume_copy(tmp / layout, tmp / f"{layout}-to-single"), resume=True)
    assert_continues(single, back)

"""Interrupted runs, for real: a training process killed with SIGKILL at a random step and resumed ends bit-identical
to an uninterrupted run, and Ctrl-C (SIGINT) saves a checkpoint and exits cleanly with status 130."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from scratchllm.data import CorpusConfig
from scratchllm.data.tokenize import tokenize_corpus

TINY = ["model.n_layer=1", "model.d_model=32", "model.n_head=2", "model.block_size=16", "train.seq_len=16",
        "train.micro_batch_size=4", "train.grad_accum_steps=2", "train.warmup_steps=2", "train.eval_every=0",
        "train.checkpoint_every=3", "train.keep_last=2", "train.lr=3e-3"]  # fmt: skip


@pytest.fixture(scope="module")
def workspace(trained, tmp_path_factory):
    root = tmp_path_factory.mktemp("interrupts")
    trained.save(root / "tok")
    tokenize_corpus(trained, CorpusConfig(max_documents=40, val_fraction=0.2), root / "tokens", workers=1)
    return root


def start(root: Path, run: str, steps: int, *extra: str) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "scratchllm", "train", "--data", str(root / "tokens"), "--tokenizer",
           str(root / "tok"), "--out", str(root / run), *TINY, f"train.max_steps={steps}", *extra]  # fmt: skip
    # Output goes to a file, not a pipe: a pipe nobody reads fills up and blocks the child on a slow, busy machine.
    with open(output(root, run), "a") as log:
        return subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, text=True)


def output(root: Path, run: str) -> Path:
    return root / f"{run}.log"


def wait_for_step(root: Path, run: str, step: int, proc: subprocess.Popen, timeout: float = 600) -> None:
    """Block until the run has logged ``step`` (metrics.jsonl lines are flushed one per step)."""
    metrics = root / run / "metrics.jsonl"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if metrics.is_file() and len(metrics.read_text().splitlines()) > step:
            return
        if proc.poll() is not None:
            raise AssertionError(f"training ended early: {output(root, run).read_text()}")
        time.sleep(0.02)
    raise AssertionError("training did not reach the step in time")


def final_weights(root: Path, run: str, steps: int) -> dict[str, torch.Tensor]:
    return load_file(str(root / run / "checkpoints" / f"step_{steps:06d}" / "model.safetensors"))


@pytest.mark.slow
def test_sigkill_then_resume_is_bit_identical(workspace):
    steps = 30
    straight = start(workspace, "straight", steps)
    assert straight.wait(timeout=900) == 0, output(workspace, "straight").read_text()

    kill_after = random.Random().randint(2, steps - 2)  # a random step, possibly mid-checkpoint
    victim = start(workspace, "killed", steps)
    wait_for_step(workspace, "killed", kill_after, victim)
    os.kill(victim.pid, signal.SIGKILL)
    assert victim.wait(timeout=60) == -signal.SIGKILL  # it really died mid-run, not after finishing
    resumed = start(workspace, "killed", steps, "--resume")
    assert resumed.wait(timeout=900) == 0, output(workspace, "killed").read_text()

    a, b = final_weights(workspace, "straight", steps), final_weights(workspace, "killed", steps)
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a), f"weights differ after a kill at step {kill_after}"


@pytest.mark.slow
def test_ctrl_c_saves_a_checkpoint_and_exits_cleanly(workspace):
    proc = start(workspace, "ctrl_c", 500)
    wait_for_step(workspace, "ctrl_c", 4, proc)
    proc.send_signal(signal.SIGINT)
    assert proc.wait(timeout=600) == 130
    err = output(workspace, "ctrl_c").read_text()
    assert "interrupted" in err and "--resume" in err and "Traceback" not in err
    saved = sorted((workspace / "ctrl_c" / "checkpoints").glob("step_*"))
    assert saved and (saved[-1] / "train_state" / "state.json").is_file()
    logged = len((workspace / "ctrl_c" / "metrics.jsonl").read_text().splitlines())
    assert saved[-1].name == f"step_{logged:06d}"  # the checkpoint holds every logged step

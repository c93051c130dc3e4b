"""The training loop: it learns, it logs every step, its checkpoints load, and a resumed run is bit-identical to an
uninterrupted one (the oracle: the same run without the interruption)."""

from __future__ import annotations

import json
import math
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from scratchllm.cli.main import main
from scratchllm.data import CorpusConfig
from scratchllm.data.tokenize import tokenize_corpus
from scratchllm.model import GPT, GPTConfig
from scratchllm.tokenizer import Tokenizer
from scratchllm.train import trainer
from scratchllm.train.checkpoint import CheckpointError, load_checkpoint
from scratchllm.train.config import TrainConfig
from scratchllm.train.metrics import read_metrics
from scratchllm.train.trainer import TrainingError, checkpoint_dirs, train

MODEL = GPTConfig(vocab_size=2000, block_size=16, n_layer=1, n_head=2, d_model=32)
CFG = TrainConfig(
    lr=3e-3, warmup_steps=2, max_steps=8, micro_batch_size=4, grad_accum_steps=2, seq_len=16, seed=7,
    eval_every=4, eval_batches=2, checkpoint_every=4, keep_last=2,
)  # fmt: skip


@pytest.fixture(scope="module")
def data_dir(trained, tmp_path_factory):
    out = tmp_path_factory.mktemp("tokens")
    tokenize_corpus(trained, CorpusConfig(max_documents=40, val_fraction=0.2), out, workers=1)
    return out


def fresh_model(seed: int = 0) -> GPT:
    torch.manual_seed(seed)
    return GPT.build(MODEL)


def test_loss_decreases_and_every_step_is_logged(trained, data_dir, tmp_path):
    cfg = replace(CFG, lr=1e-2, max_steps=30, warmup_steps=3, eval_every=10, checkpoint_every=0)
    final = train(fresh_model(), trained, data_dir, cfg, tmp_path)
    records = read_metrics(tmp_path / "metrics.jsonl")
    assert [r["step"] for r in records] == list(range(30))
    for key in ("loss", "lr", "grad_norm", "tokens_per_s", "step_time", "peak_memory"):
        assert key in records[0], key
    assert sum(r["loss"] for r in records[-5:]) / 5 < records[0]["loss"] - 0.5  # about 7.6 -> 6.6
    evals = [r for r in records if "val_loss" in r]
    assert [r["step"] for r in evals] == [9, 19, 29]
    assert math.isclose(evals[-1]["val_ppl"], math.exp(evals[-1]["val_loss"]))
    assert evals[-1]["val_bpb"] > 0 and final["step"] == 29
    assert (tmp_path / "loss.png").stat().st_size > 0 and (tmp_path / "config.toml").is_file()
    # checkpoint_every=0 still saves at the end; "best" holds the lowest validation loss.
    assert [p.name for p in checkpoint_dirs(tmp_path)] == ["step_000030"]
    model, tok = load_checkpoint(tmp_path / "checkpoints" / "best")
    assert model.config == MODEL and tok == trained


def test_evaluate_matches_an_independent_mean_cross_entropy(trained, data_dir):
    model = fresh_model()
    paths = sorted(data_dir.glob("val_*.bin"))
    cfg = replace(CFG, eval_batches=1)
    got = trainer.evaluate(model, paths, trained.hash, cfg, bytes_per_token=3.0)
    inputs, targets = next(trainer.sequential_windows(paths, cfg.micro_batch_size, cfg.seq_len, trained.hash))
    with torch.no_grad():
        logits = model.eval()(inputs)
    expected = torch.nn.functional.cross_entropy(logits.flatten(0, 1), targets.flatten()).item()
    assert got["loss"] == pytest.approx(expected, rel=1e-5)
    assert got["bpb"] == pytest.approx(expected / math.log(2) / 3.0, rel=1e-5)


def test_resumed_run_is_bit_identical(trained, data_dir, tmp_path):
    straight = fresh_model()
    train(straight, trained, data_dir, CFG, tmp_path / "a")
    interrupted = fresh_model()
    train(interrupted, trained, data_dir, CFG, tmp_path / "b", stop_at=4)
    resumed = fresh_model(seed=123)  # different weights: everything must come from the checkpoint
    train(resumed, trained, data_dir, CFG, tmp_path / "b", resume=True)
    for (name, a), (_, b) in zip(straight.state_dict().items(), resumed.state_dict().items()):
        assert torch.equal(a, b), name
    losses = [[r["loss"] for r in read_metrics(d / "metrics.jsonl")] for d in (tmp_path / "a", tmp_path / "b")]
    assert losses[0] == losses[1] and len(losses[0]) == 8


def test_keep_last_prunes_old_checkpoints(trained, data_dir, tmp_path):
    cfg = replace(CFG, checkpoint_every=2, keep_last=2, eval_every=0)
    train(fresh_model(), trained, data_dir, cfg, tmp_path)
    assert [p.name for p in checkpoint_dirs(tmp_path)] == ["step_000006", "step_000008"]
    state = json.loads((tmp_path / "checkpoints" / "step_000008" / "train_state" / "state.json").read_text())
    assert state["step"] == 8 and state["loader"]["step"] == 8 * CFG.grad_accum_steps


def poison_step(monkeypatch, at_call: int, restore: bool) -> None:
    """Make the step of call ``at_call`` see a NaN weight (so its loss and gradient are NaN); ``restore`` puts the
    weight back afterwards, as if one batch had been bad."""
    real_step = trainer.accumulated_step
    calls = []

    def step(model, *args, **kwargs):
        calls.append(1)
        if len(calls) != at_call:
            return real_step(model, *args, **kwargs)
        saved = model.norm_f.weight[0].item()
        with torch.no_grad():
            model.norm_f.weight[0] = math.nan
        result = real_step(model, *args, **kwargs)
        if restore:
            with torch.no_grad():
                model.norm_f.weight[0] = saved
        return result

    monkeypatch.setattr(trainer, "accumulated_step", step)


def test_non_finite_loss_stops_and_keeps_the_last_good_checkpoint(trained, data_dir, tmp_path, monkeypatch):
    poison_step(monkeypatch, at_call=6, restore=False)
    with pytest.raises(TrainingError, match="step 5"):
        train(fresh_model(), trained, data_dir, CFG, tmp_path)
    assert [p.name for p in checkpoint_dirs(tmp_path)] == ["step_000004"]
    model, _ = load_checkpoint(checkpoint_dirs(tmp_path)[0])
    assert all(torch.isfinite(p).all() for p in model.parameters())


def test_skip_nonfinite_skips_one_bad_step_and_goes_on(trained, data_dir, tmp_path, monkeypatch):
    poison_step(monkeypatch, at_call=6, restore=True)
    model = fresh_model()
    train(model, trained, data_dir, replace(CFG, skip_nonfinite=True), tmp_path)
    records = read_metrics(tmp_path / "metrics.jsonl")
    assert [r["step"] for r in records if r.get("skipped")] == [5] and len(records) == 8
    assert all(torch.isfinite(p).all() for p in model.parameters())  # the NaN update was never applied


def test_cli_trains_end_to_end_and_refuses_a_mismatched_tokenizer(trained, data_dir, tmp_path, capsys):
    tok_dir, run = tmp_path / "tok", tmp_path / "run"
    trained.save(tok_dir)
    overrides = ["model.n_layer=1", "model.n_head=2", "model.d_model=32", "model.block_size=16", "train.seq_len=16",
                 "train.max_steps=3", "train.warmup_steps=1", "train.micro_batch_size=2",
                 "train.eval_batches=1"]  # fmt: skip
    args = ["train", "--data", str(data_dir), "--tokenizer", str(tok_dir), "--out", str(run)]
    assert main([*args, *overrides]) == 0
    assert "val loss" in capsys.readouterr().out
    model, _ = load_checkpoint(run / "checkpoints" / "step_000003")
    assert model.config.vocab_size == trained.vocab_size  # taken from the tokenizer
    assert "vocab_size = 2000" in (run / "config.toml").read_text()

    other = Tokenizer.train(["some other text entirely"] * 5, 270, special_tokens=["<|endoftext|>"])
    other.save(tmp_path / "other")
    args[4] = str(tmp_path / "other")
    assert main([*args, *overrides]) == 2
    err = capsys.readouterr().err
    assert "different tokenizer" in err and len(err.strip().splitlines()) == 1


def test_bf16_autocast_trains(trained, data_dir, tmp_path):
    final = train(fresh_model(), trained, data_dir, replace(CFG, max_steps=3, dtype="bf16"), tmp_path)
    assert math.isfinite(final["loss"])


def test_fp16_trains_with_a_loss_scaler_that_survives_a_resume(trained, data_dir, tmp_path):
    cfg = replace(CFG, dtype="fp16")
    train(fresh_model(), trained, data_dir, cfg, tmp_path, stop_at=4)
    scale = read_metrics(tmp_path / "metrics.jsonl")[-1]["loss_scale"]
    state = json.loads((checkpoint_dirs(tmp_path)[-1] / "train_state" / "state.json").read_text())
    assert state["extra"]["grad_scaler"]["scale"] == scale
    final = train(fresh_model(), trained, data_dir, cfg, tmp_path, resume=True)
    records = read_metrics(tmp_path / "metrics.jsonl")
    assert math.isfinite(final["loss"]) and [r["step"] for r in records] == list(range(8))
    assert all(r["loss_scale"] > 0 for r in records)


def test_compile_failure_falls_back_to_the_eager_step(trained, data_dir, tmp_path, monkeypatch, capsys):
    """Where torch.compile cannot work (no C++ compiler), the run warns and continues eagerly: same weights as an
    eager run, bit for bit, because the failed attempt leaves no gradient behind."""
    from scratchllm.train import precision

    def broken_compile(model):
        def fail(*args, **kwargs):
            raise RuntimeError("InductorError: no working C++ compiler found\nmore detail")

        return fail

    eager = fresh_model()
    train(eager, trained, data_dir, replace(CFG, checkpoint_every=0), tmp_path / "eager")
    monkeypatch.setattr(precision.torch, "compile", broken_compile)
    fallback = fresh_model()
    train(fallback, trained, data_dir, replace(CFG, checkpoint_every=0, compile=True), tmp_path / "compiled")
    assert "torch.compile failed (InductorError: no working C++ compiler found)" in capsys.readouterr().err
    for (name, a), b in zip(eager.state_dict().items(), fallback.state_dict().values()):
        assert torch.equal(a, b), name


@pytest.mark.slow
def test_compiled_training_matches_eager(trained, data_dir, tmp_path):
    """torch.compile fuses kernels (C++ on this CPU): the losses must match eager mode to float rounding."""
    cfg = replace(CFG, max_steps=3, eval_every=0, checkpoint_every=0)
    train(fresh_model(), trained, data_dir, cfg, tmp_path / "eager")
    train(fresh_model(), trained, data_dir, replace(cfg, compile=True), tmp_path / "compiled")
    eager = [r["loss"] for r in read_metrics(tmp_path / "eager" / "metrics.jsonl")]
    compiled = [r["loss"] for r in read_metrics(tmp_path / "compiled" / "metrics.jsonl")]
    assert compiled == pytest.approx(eager, rel=1e-4)


def test_mfu_is_logged_and_the_report_quotes_the_records(trained, data_dir, tmp_path):
    final = train(fresh_model(), trained, data_dir, CFG, tmp_path)
    records = read_metrics(tmp_path / "metrics.jsonl")
    assert all(0 < r["mfu"] < 1 for r in records)
    report = (tmp_path / "report.md").read_text()
    assert f"| held-out bits per byte | {final['val_bpb']:.4f} |" in report
    assert f"| optimizer steps | {CFG.max_steps} |" in report
    assert "![training and validation loss](loss.png)" in report and "```toml" in report


def test_crash_while_saving_keeps_the_previous_checkpoint_and_resumes_exactly(trained, data_dir, tmp_path, monkeypatch):
    from scratchllm.train import checkpoint as ckpt

    straight = fresh_model()
    train(straight, trained, data_dir, CFG, tmp_path / "a")
    real_save_file = ckpt.save_file
    saves = []

    def crash_on_the_second_training_checkpoint(state, path, *args, **kwargs):
        saves.append(path)
        if "step_000008" in path:  # the save at the end of the run dies halfway (weights partly written)
            Path(path).write_bytes(b"partial")
            raise OSError("killed during save")
        return real_save_file(state, path, *args, **kwargs)

    monkeypatch.setattr(ckpt, "save_file", crash_on_the_second_training_checkpoint)
    with pytest.raises(OSError, match="killed during save"):
        train(fresh_model(), trained, data_dir, CFG, tmp_path / "b")
    monkeypatch.setattr(ckpt, "save_file", real_save_file)
    checkpoints = tmp_path / "b" / "checkpoints"
    assert [p.name for p in checkpoint_dirs(tmp_path / "b")] == ["step_000004"]
    assert not [p for p in checkpoints.iterdir() if p.name.startswith(".")]  # no half-written directory left
    load_checkpoint(checkpoints / "step_000004")  # intact and loadable
    resumed = fresh_model(seed=99)
    train(resumed, trained, data_dir, CFG, tmp_path / "b", resume=True)
    for (name, a), (_, b) in zip(straight.state_dict().items(), resumed.state_dict().items()):
        assert torch.equal(a, b), name


def test_target_batch_is_fitted_to_memory_and_kept_on_resume(trained, data_dir, tmp_path, monkeypatch):
    from scratchllm.config import ConfigError, load_config
    from scratchllm.train import fit

    cfg = replace(CFG, micro_batch_size=1, grad_accum_steps=1, target_batch_size=8, memory_budget_gb=16)
    train(fresh_model(), trained, data_dir, cfg, tmp_path, stop_at=4)
    saved = load_config(TrainConfig, tmp_path / "config.toml")
    assert (saved.micro_batch_size, saved.grad_accum_steps) == (8, 1)  # a tiny model: the whole batch fits at once

    # A resumed run keeps the split it started with, even if memory would now suggest another one.
    monkeypatch.setattr(fit, "plan_batch", lambda *a, **k: pytest.fail("a resumed run must not refit"))
    final = train(fresh_model(), trained, data_dir, cfg, tmp_path, resume=True)
    assert final["step"] == CFG.max_steps - 1
    with pytest.raises(ConfigError, match="resume with the same batch size"):
        train(fresh_model(), trained, data_dir, replace(cfg, target_batch_size=4), tmp_path, resume=True)


def test_a_fresh_run_never_overwrites_checkpoints_and_resume_needs_one(trained, data_dir, tmp_path):
    cfg = replace(CFG, max_steps=2, warmup_steps=1, eval_every=0, checkpoint_every=2)
    with pytest.raises(CheckpointError, match="nothing to resume"):
        train(fresh_model(), trained, data_dir, cfg, tmp_path / "run", resume=True)
    train(fresh_model(), trained, data_dir, cfg, tmp_path / "run")
    saved = (tmp_path / "run" / "checkpoints" / "step_000002" / "model.safetensors").read_bytes()
    with pytest.raises(CheckpointError, match="already holds checkpoints.*--resume"):
        train(fresh_model(seed=1), trained, data_dir, cfg, tmp_path / "run")
    assert (tmp_path / "run" / "checkpoints" / "step_000002" / "model.safetensors").read_bytes() == saved

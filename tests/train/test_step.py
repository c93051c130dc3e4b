"""Gradient accumulation is exact: k micro-batches give the update of one batch k times larger, also when the
micro-batches count very different numbers of targets, where the naive per-micro-batch mean provably does not."""

from __future__ import annotations

import math
from contextlib import contextmanager

import pytest
import torch

# The data and the naive recipe are the experiment's own (docs/04 quotes its numbers), so text and test agree.
from scratchllm.book.experiments.grad_accum import MODEL as CFG
from scratchllm.book.experiments.grad_accum import TRAIN, naive_step
from scratchllm.book.experiments.grad_accum import batches as experiment_batches
from scratchllm.book.experiments.grad_accum import max_param_diff as max_diff
from scratchllm.model import GPT
from scratchllm.train.optim import build_optimizer
from scratchllm.train.step import accumulated_step

K, STEPS = 4, 3  # one batch of 8 = 4 micro-batches of 2; a few steps so Adam's moments matter


def make_model() -> GPT:
    torch.manual_seed(0)
    return GPT.build(CFG)


def make_batches(masked: bool) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """STEPS batches of 8; ``masked``: the four micro-batches count 32, 16, 6 and 2 targets."""
    return experiment_batches(STEPS, masked)


def split(batch):
    x, y = batch
    return list(zip(x.chunk(K), y.chunk(K)))


@pytest.mark.parametrize("masked", [False, True], ids=["full", "masked"])
def test_accumulation_equals_one_large_batch(masked):
    batches = make_batches(masked)
    full, accum, naive = make_model(), make_model(), make_model()
    opt_full, opt_accum, opt_naive = (build_optimizer(m, TRAIN) for m in (full, accum, naive))
    for batch in batches:
        whole = accumulated_step(full, [batch], opt_full)
        parts = accumulated_step(accum, split(batch), opt_accum)
        naive_step(naive, split(batch), opt_naive)
        assert parts.tokens == whole.tokens == int((batch[1] != -100).sum())
        assert parts.loss == pytest.approx(whole.loss, rel=1e-6)
        assert parts.grad_norm == pytest.approx(whole.grad_norm, rel=1e-5)
    assert max_diff(full, accum) < 1e-6
    if masked:
        # The test can fail: weighting each micro-batch's mean equally moves the parameters visibly elsewhere.
        assert max_diff(full, naive) > 1e-4
    else:
        # With equal counts per micro-batch the naive mean happens to be right too.
        assert max_diff(full, naive) < 1e-6


def test_returned_loss_is_the_mean_over_all_counted_tokens():
    model = make_model()
    x, y = make_batches(masked=True)[0]
    with torch.no_grad():
        expected = model(x, y).item()  # the mean over the whole batch, in one forward pass
        independent = torch.nn.functional.cross_entropy(model(x).flatten(0, 1), y.flatten(), ignore_index=-100)
    assert expected == pytest.approx(independent.item(), rel=1e-6)
    result = accumulated_step(model, split((x, y)), torch.optim.SGD(model.parameters(), lr=0.0))
    assert result.loss == pytest.approx(expected, rel=1e-6)
    assert result.tokens == 32 + 16 + 6 + 2


def reference_gradient(batch) -> tuple[list[torch.Tensor], float]:
    model = make_model()
    model(*batch).backward()
    grads = [p.grad.clone() for p in model.parameters()]
    return grads, torch.linalg.vector_norm(torch.stack([g.norm() for g in grads])).item()


@pytest.mark.parametrize("clip", [0.0, 0.05, 1e3], ids=["off", "clipped", "above-norm"])
def test_clipping_reports_the_pre_clip_norm_and_scales_to_max_norm(clip):
    batch = make_batches(masked=False)[0]
    grads, norm = reference_gradient(batch)
    assert 0.05 < norm < 1e3  # so the three cases are: off, clipped, left alone
    model = make_model()
    before = [p.detach().clone() for p in model.parameters()]
    # Plain SGD with rate 1 turns the update into the applied gradient: before - after.
    result = accumulated_step(model, split(batch), torch.optim.SGD(model.parameters(), lr=1.0), grad_clip=clip)
    assert result.grad_norm == pytest.approx(norm, rel=1e-5)
    applied = [b - p.detach() for b, p in zip(before, model.parameters())]
    scale = min(1.0, clip / norm) if clip else 1.0
    for a, g in zip(applied, grads):
        torch.testing.assert_close(a, g * scale, rtol=1e-3, atol=1e-7)
    applied_norm = torch.linalg.vector_norm(torch.stack([a.norm() for a in applied])).item()
    assert applied_norm == pytest.approx(clip if scale < 1 else norm, rel=1e-3)
    assert all(p.grad is None for p in model.parameters())  # zeroed (set to None) for the next step


def test_no_sync_wraps_every_micro_batch_but_the_last():
    entered = []

    @contextmanager
    def no_sync():
        entered.append(torch.is_grad_enabled())
        yield

    model = make_model()
    accumulated_step(model, split(make_batches(masked=False)[0]), build_optimizer(model, TRAIN), no_sync=no_sync)
    assert len(entered) == K - 1


def test_autocast_wraps_the_forward_pass():
    batch = make_batches(masked=False)[0]
    fp32, bf16 = make_model(), make_model()
    exact = accumulated_step(fp32, split(batch), build_optimizer(fp32, TRAIN))
    autocast = lambda: torch.autocast("cpu", dtype=torch.bfloat16)
    mixed = accumulated_step(bf16, split(batch), build_optimizer(bf16, TRAIN), autocast=autocast)
    assert mixed.loss != exact.loss and mixed.loss == pytest.approx(exact.loss, rel=1e-2)
    assert all(p.dtype == torch.float32 for p in bf16.parameters())  # weights stay fp32 under autocast


def test_a_step_with_nothing_to_learn_is_refused():
    model = make_model()
    x, y = make_batches(masked=False)[0]
    with pytest.raises(ValueError, match="every target of this step is ignored"):
        accumulated_step(model, [(x, torch.full_like(y, -100))], build_optimizer(model, TRAIN))
    with pytest.raises(ValueError, match="at least one micro-batch"):
        accumulated_step(model, [], build_optimizer(model, TRAIN))


def test_a_non_finite_step_is_not_applied():
    model = make_model()
    optimizer = build_optimizer(model, TRAIN)
    with torch.no_grad():
        model.norm_f.weight[0] = float("nan")
    before = {n: p.clone() for n, p in model.named_parameters()}
    result = accumulated_step(model, split(make_batches(False)[0]), optimizer)
    assert not result.updated
    for name, p in model.named_parameters():
        assert torch.equal(p, before[name]) or name == "norm_f.weight", name
    assert torch.equal(model.norm_f.weight[1:], before["norm_f.weight"][1:])
    assert all(p.grad is None for p in model.parameters())


def test_loss_scaling_gives_the_unscaled_update_exactly():
    """The scaler multiplies the loss by a power of two and divides the gradients by it again: in fp32 with no
    overflow both are exact, so the parameters must equal those of the plain step bit for bit."""
    batches = make_batches(masked=True)
    plain, scaled = make_model(), make_model()
    opt_plain, opt_scaled = build_optimizer(plain, TRAIN), build_optimizer(scaled, TRAIN)
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0**12)
    for batch in batches:
        a = accumulated_step(plain, split(batch), opt_plain, 1.0)
        b = accumulated_step(scaled, split(batch), opt_scaled, 1.0, scaler=scaler)
        assert b.updated and not b.overflow and a.grad_norm == pytest.approx(b.grad_norm, rel=1e-6)
    assert max_diff(plain, scaled) == 0.0
    assert scaler.get_scale() == 2.0**12  # no overflow: the scale grows only after growth_interval good steps


def test_an_overflowing_scaled_step_is_skipped_and_the_scale_halved():
    model = make_model()
    optimizer = build_optimizer(model, TRAIN)
    before = {n: p.clone() for n, p in model.named_parameters()}
    # fp16 tops out at 65,504: a loss scaled by 2^40 overflows the half-precision gradients of the matmuls.
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0**40)
    fp16 = lambda: torch.autocast("cpu", dtype=torch.float16)
    result = accumulated_step(model, split(make_batches(False)[0]), optimizer, 1.0, autocast=fp16, scaler=scaler)
    assert result.overflow and not result.updated and math.isfinite(result.loss)
    assert scaler.get_scale() == 2.0**39
    assert all(torch.equal(p, before[n]) for n, p in model.named_parameters())
    assert all(p.grad is None for p in model.parameters())

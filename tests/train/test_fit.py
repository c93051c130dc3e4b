"""The batch fitter: the choosing logic on exact numbers, the measure-then-verify plan on a scripted memory curve,
and a real measured fit on the CPU that must return a valid plan and leave the model and the random state as they
were."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from scratchllm.config import ConfigError
from scratchllm.model import GPT, GPTConfig
from scratchllm.train.fit import (
    BatchDoesNotFit,
    BatchFit,
    choose_micro_batch,
    default_budget,
    divisors,
    fit_batch,
    plan_batch,
)

GIB = 2**30
# Dropout on, so a probe that forgot to restore the random state would be caught.
CFG = GPTConfig(vocab_size=256, block_size=32, n_layer=2, n_head=2, d_model=32, dropout=0.1)


def test_divisors():
    assert divisors(1) == [1]
    assert divisors(12) == [1, 2, 3, 4, 6, 12]
    assert divisors(7) == [1, 7]


@pytest.mark.parametrize(
    "target, base, per_seq, budget, margin, expected",
    [
        (32, 2.0, 1.0, 10.0, 0.0, 8),  # 2 + d <= 10: d <= 8, a divisor
        (32, 2.0, 1.0, 10.0, 0.1, 4),  # 2 + d <= 9: 7 is no divisor of 32, so 4
        (12, 100.0, 10.0, 200.0, 0.1, 6),  # 100 + 10 d <= 180: d <= 8 -> 6
        (12, 100.0, 10.0, 1e9, 0.1, 12),  # everything fits: no accumulation at all
        (7, 1.0, 1.0, 7.0, 0.0, 1),  # 7 needs 8: the only smaller divisor is 1
        (8, 5.0, 0.0, 5.0, 0.0, 8),  # the bound is inclusive
    ],
)
def test_choose_largest_fitting_divisor(target, base, per_seq, budget, margin, expected):
    m = choose_micro_batch(target, base, per_seq, budget, margin)
    assert m == expected and target % m == 0


def test_choose_raises_when_one_sequence_does_not_fit():
    with pytest.raises(BatchDoesNotFit, match="activation_checkpointing=true") as err:
        choose_micro_batch(8, base=5 * GIB, per_sequence=GIB, budget=6 * GIB, margin=0.1)
    assert isinstance(err.value, ValueError)
    assert "loss_chunk_size" in str(err.value) and "seq_len" in str(err.value)


def scripted(curve):
    """A measure function from a memory curve, recording which sizes were run."""
    calls = []

    def measure(m):
        calls.append(m)
        return curve(m)

    return measure, calls


def test_plan_doubles_then_follows_the_line():
    measure, calls = scripted(lambda m: 100 + 10 * m)
    fit = plan_batch(12, measure, budget=200, margin=0.1)  # usable 180: 100 + 10 m <= 180 -> m <= 8, divisor 6
    assert (fit.micro_batch_size, fit.grad_accum_steps) == (6, 2)
    assert fit.predicted_peak_bytes == fit.measured_peak_bytes == 160
    assert calls == [1, 2, 4, 8, 6]  # probes while the next is predicted to fit (16 > 12), then the verifying step
    assert fit.probes == ((1, 110.0), (2, 120.0), (4, 140.0), (8, 180.0), (6, 160.0))


def test_plan_steps_down_when_the_step_needs_more_than_predicted():
    # From 6 sequences on, some buffer grows by 50: the line through 2 and 4 cannot know.
    measure, calls = scripted(lambda m: 100 + 10 * m + (50 if m >= 6 else 0))
    fit = plan_batch(12, measure, budget=200, margin=0.1)
    assert (fit.micro_batch_size, fit.grad_accum_steps) == (4, 3)
    assert calls == [1, 2, 4, 8, 6]  # 8 is over, so is 6; 4 was a probe and fits
    assert fit.measured_peak_bytes == 140 <= 180


def test_plan_doubling_finds_the_slope_a_fixed_optimizer_peak_hides():
    # The optimizer's update peaks at 250 whatever the micro-batch; the backward needs 100 + 50 m. Probes at 1 and 2
    # alone would see no slope at all and pick 16 sequences, which need 900.
    measure, calls = scripted(lambda m: max(250, 100 + 50 * m))
    fit = plan_batch(16, measure, budget=500, margin=0.1)  # usable 450: m <= 7, divisor 4
    assert (fit.micro_batch_size, fit.grad_accum_steps) == (4, 4)
    assert max(calls) == 8 and calls == [1, 2, 4, 8]


def test_plan_out_of_memory_at_two_means_one():
    measure, calls = scripted(lambda m: 100 if m == 1 else math.inf)
    fit = plan_batch(8, measure, budget=1000)
    assert (fit.micro_batch_size, fit.grad_accum_steps) == (1, 8)
    assert calls == [1, 2]


def test_plan_stops_at_the_first_probe_when_nothing_fits():
    measure, calls = scripted(lambda m: 500 * m)
    with pytest.raises(BatchDoesNotFit, match="needs"):
        plan_batch(8, measure, budget=400)
    assert calls == [1]  # the larger probe is not risked


def test_plan_target_one_needs_one_probe():
    measure, calls = scripted(lambda m: 100 * m)
    fit = plan_batch(1, measure, budget=1000)
    assert (fit.micro_batch_size, fit.grad_accum_steps) == (1, 1) and calls == [1]


@pytest.mark.parametrize("target", [1, 6, 8])
def test_plan_product_is_the_target(target):
    for budget in (250, 400, 1000, 10**6):
        fit = plan_batch(target, lambda m: 100 + 50 * m, budget=budget, margin=0.0)
        assert fit.micro_batch_size * fit.grad_accum_steps == fit.batch_size == target
        assert target % fit.micro_batch_size == 0


def test_format_is_one_line():
    fit = BatchFit(8, 4, int(3.1 * GIB), int(3.0 * GIB), 20 * GIB, 0.1, ((1, GIB), (2, 1.3 * GIB)))
    line = str(fit)
    assert line == fit.format() and "\n" not in line
    assert line.startswith("micro-batch 8 x 4 accumulation steps = 32 sequences")
    assert "20.0 GiB budget" in line and "10%" in line


# --------------------------------------------------------------------------------------------------------------------
# Measured, on the CPU


def model() -> GPT:
    torch.manual_seed(0)
    return GPT.build(CFG)


def test_measured_fit_is_valid_and_leaves_everything_as_it_was():
    gpt = model().eval()
    weights = {k: v.clone() for k, v in gpt.state_dict().items()}
    rng = torch.get_rng_state()
    fit = fit_batch(gpt, target_batch=8, seq_len=32, budget_bytes=64 * GIB)
    # A tiny model in a huge budget: no accumulation needed.
    assert (fit.micro_batch_size, fit.grad_accum_steps) == (8, 1)
    assert fit.measured_peak_bytes <= 64 * GIB * (1 - fit.margin)
    assert [m for m, _ in fit.probes][:2] == [1, 2] and all(p > 0 for _, p in fit.probes)
    assert all(torch.equal(v, weights[k]) for k, v in gpt.state_dict().items())
    assert torch.equal(torch.get_rng_state(), rng)
    assert not gpt.training and all(p.grad is None for p in gpt.parameters())


def test_measured_fit_restores_existing_gradients():
    gpt = model()
    x = torch.zeros(2, 16, dtype=torch.long)
    gpt(x, x).backward()
    grads = [p.grad.clone() for p in gpt.parameters()]
    fit_batch(gpt, target_batch=6, seq_len=16, budget_bytes=64 * GIB)
    assert all(torch.equal(p.grad, g) for p, g in zip(gpt.parameters(), grads))


def test_measured_fit_with_a_tiny_budget_raises_the_clear_error():
    gpt = model()
    weights = {k: v.clone() for k, v in gpt.state_dict().items()}
    with pytest.raises(BatchDoesNotFit, match="model.activation_checkpointing=true"):
        fit_batch(gpt, target_batch=8, seq_len=32, budget_bytes=2**20)  # 1 MiB: less than Python itself
    assert all(torch.equal(v, weights[k]) for k, v in gpt.state_dict().items())


def test_bad_arguments_are_config_errors():
    gpt = model()
    with pytest.raises(ConfigError, match="block_size"):
        fit_batch(gpt, target_batch=8, seq_len=CFG.block_size + 1, budget_bytes=GIB)
    with pytest.raises(ConfigError, match="target_batch"):
        fit_batch(gpt, target_batch=0, seq_len=8, budget_bytes=GIB)
    with pytest.raises(ConfigError, match="margin"):
        fit_batch(gpt, target_batch=8, seq_len=8, budget_bytes=GIB, margin=1.0)


@pytest.mark.skipif(not Path("/proc/meminfo").exists(), reason="the CPU budget is read from Linux's /proc")
def test_default_budget_on_linux_cpu():
    budget = default_budget("cpu")
    assert budget > 0  # at least this process's own resident memory

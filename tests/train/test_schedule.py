"""Learning-rate schedules at hand-computed steps, their shape, and the TrainConfig that drives them."""

from __future__ import annotations

import math

import pytest
import torch

from scratchllm.config import ConfigError, load_config, to_toml
from scratchllm.train.config import TrainConfig
from scratchllm.train.schedule import lr_at, set_lr

# Peak 1.0 and floor 0.1 make the hand computations readable.
COSINE = TrainConfig(lr=1.0, min_lr_ratio=0.1, warmup_steps=10, max_steps=110, schedule="cosine")
WSD = TrainConfig(lr=1.0, min_lr_ratio=0.1, warmup_steps=10, max_steps=100, schedule="wsd", decay_fraction=0.2)
CONSTANT = TrainConfig(lr=1.0, warmup_steps=10, max_steps=100, schedule="constant")


def test_cosine_at_hand_computed_steps():
    assert lr_at(0, COSINE) == pytest.approx(0.1)  # 1 / 10 of the peak: the first step is not wasted at rate 0
    assert lr_at(4, COSINE) == pytest.approx(0.5)
    assert lr_at(9, COSINE) == 1.0  # end of warmup: the peak
    # 100 decay steps: step 9 + 25 is a quarter, 9 + 50 the midpoint (halfway between peak and floor).
    assert lr_at(34, COSINE) == pytest.approx(0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi / 4)), abs=1e-12)
    assert lr_at(59, COSINE) == pytest.approx(0.55, abs=1e-12)
    assert lr_at(109, COSINE) == pytest.approx(0.1, abs=1e-12)  # the last step reaches the floor
    assert lr_at(500, COSINE) == pytest.approx(0.1, abs=1e-12)  # and stays there past the end


def test_wsd_at_hand_computed_steps():
    assert WSD.decay_steps == 20
    assert lr_at(0, WSD) == pytest.approx(0.1)
    assert lr_at(9, WSD) == 1.0
    assert lr_at(79, WSD) == 1.0  # the last step of the stable phase
    assert lr_at(80, WSD) == pytest.approx(1.0 - 0.9 / 20, abs=1e-12)  # the first decay step
    assert lr_at(89, WSD) == pytest.approx(0.55, abs=1e-12)
    assert lr_at(99, WSD) == pytest.approx(0.1, abs=1e-12)
    assert lr_at(150, WSD) == pytest.approx(0.1, abs=1e-12)


def test_wsd_is_flat_in_its_stable_phase():
    stable = [lr_at(s, WSD) for s in range(WSD.warmup_steps - 1, WSD.max_steps - WSD.decay_steps)]
    assert len(stable) == 71 and set(stable) == {1.0}


def test_constant_and_no_warmup():
    assert [lr_at(s, CONSTANT) for s in (0, 9, 10, 99, 1000)] == [pytest.approx(0.1), 1.0, 1.0, 1.0, 1.0]
    for schedule in ("cosine", "wsd", "constant"):
        cfg = TrainConfig(lr=1.0, warmup_steps=0, max_steps=50, schedule=schedule)
        assert lr_at(0, cfg) == pytest.approx(1.0, rel=0.01)  # no warmup: at (or just under) the peak at once


@pytest.mark.parametrize("cfg", [COSINE, WSD, CONSTANT], ids=["cosine", "wsd", "constant"])
def test_monotone_up_then_down(cfg):
    lrs = [lr_at(s, cfg) for s in range(cfg.max_steps + 5)]
    warm, rest = lrs[: cfg.warmup_steps], lrs[cfg.warmup_steps - 1 :]
    assert all(a < b for a, b in zip(warm, warm[1:]))  # strictly increasing warmup
    assert all(a >= b for a, b in zip(rest, rest[1:]))  # never increasing afterwards
    assert max(lrs) == 1.0 and min(rest) == pytest.approx(cfg.min_lr if cfg.schedule != "constant" else 1.0)


def test_set_lr_sets_every_group():
    a, b = torch.nn.Parameter(torch.zeros(2)), torch.nn.Parameter(torch.zeros(2))
    opt = torch.optim.AdamW([{"params": [a]}, {"params": [b], "weight_decay": 0.0}], lr=1.0)
    set_lr(opt, 0.25)
    assert [g["lr"] for g in opt.param_groups] == [0.25, 0.25]


def test_negative_step_is_refused():
    with pytest.raises(ValueError, match="non-negative"):
        lr_at(-1, COSINE)


# ------------------------------------------------------------------------------------------------- TrainConfig


def test_config_loads_from_toml_and_overrides(tmp_path):
    path = tmp_path / "train.toml"
    path.write_text('lr = 6e-4\nbetas = [0.9, 0.99]\nschedule = "wsd"\n')
    cfg = load_config(TrainConfig, path, ["max_steps=1e4", "grad_accum_steps=4", "dtype=bf16"])
    assert cfg.lr == 6e-4 and cfg.betas == (0.9, 0.99) and cfg.schedule == "wsd"
    assert cfg.max_steps == 10000 and cfg.batch_size == 4 * cfg.micro_batch_size and cfg.dtype == "bf16"
    path.write_text(to_toml(cfg))  # the resolved config written to a run directory loads back equal
    assert load_config(TrainConfig, path) == cfg


@pytest.mark.parametrize(
    "override, message",
    [
        ("schedule=linear", "schedule must be one of cosine, wsd, constant"),
        ("dtype=float16", "dtype must be one of fp32, bf16, fp16"),
        ("lr=0", "lr must be positive"),
        ("min_lr_ratio=2", r"min_lr_ratio must be in \[0, 1\]"),
        ("warmup_steps=5000", "lower warmup_steps or raise max_steps"),
        ("grad_accum_steps=0", "grad_accum_steps must be at least 1"),
        ("grad_clip=-1", "grad_clip must not be negative"),
        ("betas=[0.9, 1.0]", "betas must both be in"),
        ("betas=[0.9]", "expected a list of 2 items"),
        ("decay_fraction=0", "use schedule=constant"),
    ],
)
def test_config_errors_say_what_to_fix(override, message):
    with pytest.raises(ConfigError, match=message):
        load_config(TrainConfig, None, [override])


def test_wsd_warmup_and_decay_must_not_overlap():
    with pytest.raises(ConfigError, match="overlap"):
        TrainConfig(schedule="wsd", warmup_steps=90, max_steps=100, decay_fraction=0.2)

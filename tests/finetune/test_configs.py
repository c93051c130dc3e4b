"""The configs in configs/sft load, and default.toml is exactly the recipe the demo runs."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from scratchllm.cli.demo import DEMO_SFT_STEPS
from scratchllm.config import load_config
from scratchllm.finetune.config import FinetuneConfig

CONFIGS = Path(__file__).resolve().parents[2] / "configs" / "sft"


@pytest.mark.parametrize("path", sorted(CONFIGS.glob("*.toml")), ids=lambda p: p.name)
def test_sft_configs_load(path):
    load_config(FinetuneConfig, path)


def test_default_is_the_demo_recipe():
    assert load_config(FinetuneConfig, CONFIGS / "default.toml") == replace(FinetuneConfig(), max_steps=DEMO_SFT_STEPS)
    assert load_config(FinetuneConfig, CONFIGS / "lora.toml").method == "lora"

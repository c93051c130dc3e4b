"""Every TOML file in configs/ loads into its job's config, so a documented command cannot fail on its config."""

from __future__ import annotations

from pathlib import Path

import pytest

from scratchllm.cli.train import TrainJob
from scratchllm.config import load_config
from scratchllm.data.pipeline import PipelineConfig

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


@pytest.mark.parametrize("path", sorted((CONFIGS / "train").glob("*.toml")), ids=lambda p: p.name)
def test_training_configs_load(path):
    job = load_config(TrainJob, path)
    assert job.train.seq_len <= job.model.block_size


@pytest.mark.parametrize("path", sorted((CONFIGS / "data").glob("*.toml")), ids=lambda p: p.name)
def test_pipeline_configs_load(path):
    assert load_config(PipelineConfig, path).steps

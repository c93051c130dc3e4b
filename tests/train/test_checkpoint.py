"""The checkpoint directory: exact round trip, atomic replacement, and clear refusals of what does not fit."""

from __future__ import annotations

import json

import pytest
import torch

from scratchllm.model import GPT, GPTConfig
from scratchllm.train import checkpoint as ckpt
from scratchllm.train.checkpoint import CheckpointError, load_checkpoint, save_checkpoint

CFG = GPTConfig(vocab_size=2000, block_size=32, n_layer=2, n_head=2, d_model=32)


@pytest.fixture
def model():
    torch.manual_seed(0)
    return GPT.build(CFG)


@pytest.mark.parametrize("tied", [True, False])
def test_round_trip_is_exact(model, trained, tmp_path, tied):
    if not tied:
        torch.manual_seed(0)
        model = GPT.build(GPTConfig(**{**vars(CFG), "tie_embeddings": False}))
    save_checkpoint(tmp_path / "c", model, trained)
    loaded, tok = load_checkpoint(tmp_path / "c")
    assert loaded.config == model.config and tok == trained
    for (name, a), (_, b) in zip(model.state_dict().items(), loaded.state_dict().items()):
        assert torch.equal(a, b), name
    assert (loaded.lm_head.weight is loaded.tok_emb.weight) == tied
    idx = torch.randint(0, 2000, (1, 16))
    assert torch.equal(model.eval()(idx), loaded.eval()(idx))


def test_failed_save_keeps_the_previous_checkpoint(model, tmp_path, monkeypatch):
    save_checkpoint(tmp_path / "c", model)
    before = (tmp_path / "c" / "model.safetensors").read_bytes()

    def crash(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(ckpt, "save_file", crash)
    with pytest.raises(OSError, match="disk full"):
        save_checkpoint(tmp_path / "c", model)
    assert (tmp_path / "c" / "model.safetensors").read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c"]  # no temporary directory left behind


def test_resave_replaces(model, tmp_path):
    save_checkpoint(tmp_path / "c", model)
    with torch.no_grad():
        model.tok_emb.weight.add_(1.0)
    save_checkpoint(tmp_path / "c", model)
    loaded, _ = load_checkpoint(tmp_path / "c")
    assert torch.equal(loaded.tok_emb.weight, model.tok_emb.weight)


def test_weights_that_do_not_fit_the_config(model, tmp_path):
    save_checkpoint(tmp_path / "c", model)
    config = json.loads((tmp_path / "c" / "config.json").read_text())
    (tmp_path / "c" / "config.json").write_text(json.dumps({**config, "d_model": 64}))
    with pytest.raises(CheckpointError, match="shape"):
        load_checkpoint(tmp_path / "c")
    (tmp_path / "c" / "config.json").write_text(json.dumps({**config, "n_layer": 3}))
    with pytest.raises(CheckpointError, match="missing"):
        load_checkpoint(tmp_path / "c")
    (tmp_path / "c" / "config.json").write_text(json.dumps({**config, "n_layers": 3}))
    with pytest.raises(CheckpointError, match="unknown model settings"):
        load_checkpoint(tmp_path / "c")


def test_truncated_weights_and_missing_config(model, tmp_path):
    save_checkpoint(tmp_path / "c", model)
    weights = tmp_path / "c" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])
    with pytest.raises(CheckpointError, match="cannot read"):
        load_checkpoint(tmp_path / "c")
    with pytest.raises(CheckpointError, match="config.json is missing"):
        load_checkpoint(tmp_path)


def test_tokenizer_larger_than_the_model_is_refused(trained, tmp_path):
    small = GPT.build(GPTConfig(**{**vars(CFG), "vocab_size": 1000}))
    save_checkpoint(tmp_path / "c", small, trained)
    with pytest.raises(CheckpointError, match="2000 ids but the model's embedding has only 1000 rows"):
        load_checkpoint(tmp_path / "c")

"""LoRA: the layer computes x (W + (alpha/r) B A)^T + b (written out by hand), changes nothing at initialization,
merged and unmerged models agree, unmerge restores the weights, only adapters train, adapters round-trip alone."""

from __future__ import annotations

import pytest
import torch

from scratchllm.finetune.config import LoRAConfig
from scratchllm.finetune.lora import (
    LoRAError,
    LoRALinear,
    adapter_state,
    apply_lora,
    load_adapter,
    merge_lora,
    remove_lora,
    save_adapter,
    unmerge_lora,
)
from scratchllm.model import GPT, GPTConfig

CFG = GPTConfig(vocab_size=97, block_size=32, n_layer=2, n_head=4, n_kv_head=2, d_model=32, tie_embeddings=False)


def _model(dtype=torch.float64, cfg=CFG) -> GPT:
    torch.manual_seed(0)
    return GPT.build(cfg, dtype=dtype)


def _randomize_b(model) -> None:
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("lora_B"):
                p.normal_(std=0.05)


IDX = torch.randint(0, 97, (2, 12), generator=torch.Generator().manual_seed(1))


def test_layer_matches_the_formula():
    torch.manual_seed(0)
    base = torch.nn.Linear(6, 5, dtype=torch.float64)
    layer = LoRALinear(base, rank=3, alpha=6.0)
    with torch.no_grad():
        layer.lora_B.normal_()
    x = torch.randn(4, 6, dtype=torch.float64)
    weight = base.weight + (6.0 / 3) * layer.lora_B @ layer.lora_A
    torch.testing.assert_close(layer(x), x @ weight.T + base.bias, rtol=1e-12, atol=1e-12)


def test_initialization_changes_nothing():
    reference, model = _model(), _model()
    apply_lora(model, LoRAConfig(rank=4, targets=["q_proj", "k_proj", "v_proj", "o_proj", "up", "gate", "down"]))
    with torch.no_grad():
        assert torch.equal(model(IDX), reference(IDX))


@pytest.mark.parametrize(("dtype", "tol"), [(torch.float64, 1e-6), (torch.float32, 1e-5)])
def test_merged_equals_unmerged_and_unmerge_restores(dtype, tol):
    model = _model(dtype)
    apply_lora(model, LoRAConfig(rank=4, alpha=8.0, targets=["q_proj", "v_proj", "down", "lm_head"]))
    _randomize_b(model)
    weights = {k: v.clone() for k, v in model.state_dict().items()}
    with torch.no_grad():
        unmerged = model(IDX)
        merge_lora(model)
        merged = model(IDX)
        unmerge_lora(model)
        again = model(IDX)
    assert (merged - unmerged).abs().max() < tol
    assert not torch.equal(unmerged, _model(dtype)(IDX).detach())  # the adapters do change the model
    for name, value in model.state_dict().items():
        torch.testing.assert_close(value, weights[name], rtol=0, atol=tol * 1e-2)
    torch.testing.assert_close(again, unmerged, rtol=0, atol=tol)


def test_only_adapters_train_and_their_count():
    model = _model()
    names = apply_lora(model, LoRAConfig(rank=4, targets=["blocks.*.attn.q_proj", "v_proj"]))
    assert names == ["blocks.0.attn.q_proj", "blocks.0.attn.v_proj", "blocks.1.attn.q_proj", "blocks.1.attn.v_proj"]
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable == {f"{n}.lora_{x}" for n in names for x in "AB"}
    kv = CFG.kv_heads * CFG.head_dim  # v_proj's output width under grouped-query attention
    expected = CFG.n_layer * (4 * (CFG.d_model + CFG.d_model) + 4 * (CFG.d_model + kv))
    assert sum(p.numel() for p in model.parameters() if p.requires_grad) == expected
    model(IDX, IDX).backward()
    assert all(p.grad is None for n, p in model.named_parameters() if n not in trainable)


def test_tied_head_is_never_adapted_and_bad_targets_are_refused():
    tied = _model(cfg=GPTConfig(vocab_size=97, block_size=32, n_layer=1, n_head=2, d_model=16))
    assert apply_lora(tied, LoRAConfig(targets=["lm_head", "q_proj"])) == ["blocks.0.attn.q_proj"]
    with pytest.raises(LoRAError, match="match no linear layer"):
        apply_lora(_model(), LoRAConfig(targets=["qkv"]))


def test_adapter_round_trip(tmp_path):
    model = _model()
    cfg = LoRAConfig(rank=2, alpha=4.0, targets=["q_proj", "up"])
    apply_lora(model, cfg)
    _randomize_b(model)
    save_adapter(adapter_state(model), cfg, tmp_path)
    loaded = _model()
    assert load_adapter(loaded, tmp_path) == cfg
    with torch.no_grad():
        torch.testing.assert_close(loaded(IDX), model(IDX), rtol=0, atol=0)
    remove_lora(loaded)
    assert not any("lora" in n for n in loaded.state_dict())
    with pytest.raises(LoRAError, match="does not fit"):
        load_adapter(_model(cfg=GPTConfig(vocab_size=97, block_size=32, n_layer=1, n_head=2, d_model=16)), tmp_path)

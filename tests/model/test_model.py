"""The model's own invariants: parameter counts from the config, the two attention paths agree, the KV cache equals
full recomputation, RoPE sees only relative positions, meta-device construction and GPT-2's init, bad input."""

from __future__ import annotations

import math
from dataclasses import replace

import pytest
import torch

from scratchllm.config import ConfigError
from scratchllm.model import GPT, PRESETS, GPTConfig, flops_per_token, num_params
from scratchllm.model.attention import explicit_attention, sdpa_attention
from scratchllm.model.layers import RotaryPositions, apply_rotary

SMALL = dict(vocab_size=300, block_size=64, n_layer=2, n_head=4, d_model=64)
VARIANTS = {
    "llama-gqa": GPTConfig(**SMALL, n_kv_head=2),
    "mqa-untied": GPTConfig(**SMALL, n_kv_head=1, tie_embeddings=False),
    "gpt2-like": GPTConfig(**SMALL, pos_encoding="learned", norm="layernorm", mlp="gelu", bias=True),
    "sinusoidal": GPTConfig(**SMALL, pos_encoding="sinusoidal"),
    "nopos": GPTConfig(**SMALL, pos_encoding="none", rope_scaling=2.0),
}


def build(cfg: GPTConfig, seed: int = 0) -> GPT:
    torch.manual_seed(seed)
    return GPT.build(cfg).eval()


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_num_params_matches_the_built_model(name):
    cfg = GPTConfig.preset(name)
    with torch.device("meta"):  # no memory: even gpt2-xl is free to build here
        model = GPT(cfg)
    assert sum(p.numel() for p in model.parameters()) == num_params(cfg)


def test_gpt2_preset_is_gpt2():
    assert num_params(GPTConfig.preset("gpt2")) == 124_439_808  # GPT-2 small, tied head, as in transformers
    assert num_params(GPTConfig.preset("gpt2-xl")) == 1_557_611_200


def test_flops_per_token_is_6n_plus_attention():
    cfg = GPTConfig.preset("gpt2")
    n = num_params(cfg, embedding=False) + cfg.vocab_size * cfg.d_model  # blocks + head (tied, so counted once)
    assert flops_per_token(cfg, 1024) == 6 * n + 12 * 12 * 768 * 1024


@pytest.mark.parametrize("name", sorted(VARIANTS))
def test_explicit_attention_equals_sdpa(name):
    cfg = VARIANTS[name]
    fused = build(replace(cfg, attention="sdpa"))
    explicit = build(replace(cfg, attention="explicit"), seed=1)
    explicit.load_state_dict(fused.state_dict())
    idx = torch.randint(0, cfg.vocab_size, (3, 40))
    torch.testing.assert_close(explicit(idx), fused(idx), rtol=0, atol=1e-5)


def test_attention_functions_agree_with_cache_prefix_and_gqa():
    torch.manual_seed(0)
    q = torch.randn(2, 8, 5, 16)  # 5 new queries
    k, v = torch.randn(2, 2, 12, 16), torch.randn(2, 2, 12, 16)  # 12 keys: 7 cached + 5 new
    torch.testing.assert_close(explicit_attention(q, k, v, None, 0.0), sdpa_attention(q, k, v, None, 0.0))


@pytest.mark.parametrize("name", sorted(VARIANTS))
def test_kv_cache_equals_full_recomputation(name):
    cfg = VARIANTS[name]
    model = build(cfg)
    idx = torch.randint(0, cfg.vocab_size, (2, 30))
    full = model(idx)  # (B, T, V)
    cache = model.new_cache(batch=2)
    pieces = [model(idx[:, :12], cache=cache)]  # a prompt of 12, then one token at a time
    pieces += [model(idx[:, t : t + 1], cache=cache) for t in range(12, 30)]
    torch.testing.assert_close(torch.cat(pieces, dim=1), full, rtol=0, atol=1e-5)
    assert cache.length == 30


def test_rope_scores_depend_only_on_offset():
    cfg = GPTConfig(**SMALL)
    rope = RotaryPositions(cfg)
    rope.reset_parameters()
    torch.manual_seed(0)
    q, k = torch.randn(1, 1, 1, cfg.head_dim), torch.randn(1, 1, 1, cfg.head_dim)

    def score(m: int, n: int) -> float:
        qm = apply_rotary(q, rope.rotation(torch.tensor([[m]])))
        kn = apply_rotary(k, rope.rotation(torch.tensor([[n]])))
        return (qm * kn).sum().item()

    assert score(3, 10) == pytest.approx(score(1003, 1010), abs=1e-4)
    assert score(3, 10) != pytest.approx(score(3, 11), abs=1e-3)


def test_meta_build_ties_and_initializes_like_gpt2():
    cfg = GPTConfig.preset("gpt2", n_layer=4)
    model = build(cfg)
    assert model.lm_head.weight is model.tok_emb.weight
    assert not any(p.is_meta for p in model.parameters())
    block = model.blocks[0]
    assert block.attn.q_proj.weight.std().item() == pytest.approx(0.02, rel=0.05)
    assert block.attn.o_proj.weight.std().item() == pytest.approx(0.02 / math.sqrt(2 * 4), rel=0.05)
    assert block.mlp.down.weight.std().item() == pytest.approx(0.02 / math.sqrt(2 * 4), rel=0.05)
    assert torch.equal(block.norm1.weight, torch.ones(cfg.d_model))
    assert torch.count_nonzero(block.attn.q_proj.bias) == 0


def test_untrained_loss_is_near_uniform():
    cfg = GPTConfig(**SMALL, tie_embeddings=False)
    model = build(cfg)
    idx, targets = torch.randint(0, 300, (4, 64)), torch.randint(0, 300, (4, 64))
    assert model(idx, targets).item() == pytest.approx(math.log(300), abs=0.1)


def test_context_longer_than_the_model_is_refused():
    model = build(VARIANTS["llama-gqa"])
    with pytest.raises(ValueError, match="longer than the model's context of 64"):
        model(torch.zeros(1, 65, dtype=torch.long))


def test_unknown_preset_and_bad_shapes():
    with pytest.raises(ConfigError, match="unknown model preset 'gpt5'"):
        GPTConfig.preset("gpt5")
    with pytest.raises(ConfigError, match="divisible by n_head"):
        GPTConfig(d_model=100, n_head=3)
    with pytest.raises(ConfigError, match="multiple of n_kv_head"):
        GPTConfig(n_head=6, n_kv_head=4)


def test_bf16_autocast_runs_and_stays_close():
    model = build(VARIANTS["llama-gqa"])
    idx = torch.randint(0, 300, (2, 32))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        low = model(idx)
    assert low.dtype == torch.bfloat16
    torch.testing.assert_close(low.float(), model(idx), rtol=0.05, atol=0.05)

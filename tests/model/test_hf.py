"""GPT.from_hf / save_hf against the oracle, ``transformers``: random-weight GPT-2 and Llama models built here from
small configs (no download) must give the same logits as ours, and what we save must load back bit for bit and load
into ``transformers`` with the same logits."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest
import torch

from scratchllm.config import ConfigError
from scratchllm.model import GPT, GPTConfig
from scratchllm.model.hf import config_from_hf

transformers = pytest.importorskip("transformers")

TOL = 1e-4  # fp32
# Llama 3.2's scaling, with a small original context so that all three frequency bands occur at head_dim 16.
LLAMA3_SCALING = {
    "rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
    "original_max_position_embeddings": 64,
}  # fmt: skip


def perturbed(model):
    """Random weights everywhere: HF initializes biases to 0 and norms to 1, which would hide a swapped tensor."""
    torch.manual_seed(1)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.02)
    return model.eval()


def hf_gpt2(**overrides):
    kw = dict(n_embd=64, n_layer=2, n_head=4, vocab_size=1000, n_positions=128, bos_token_id=0, eos_token_id=0)
    cfg = transformers.GPT2Config(**kw, **overrides, attn_implementation="eager")
    torch.manual_seed(0)
    return perturbed(transformers.GPT2LMHeadModel(cfg))


def hf_llama(**overrides):
    kw = dict(vocab_size=1000, hidden_size=64, intermediate_size=160, num_hidden_layers=2, num_attention_heads=4,
              num_key_value_heads=2, max_position_embeddings=128, rms_norm_eps=1e-5)  # fmt: skip
    cfg = transformers.LlamaConfig(**kw, **overrides, attn_implementation="eager")
    torch.manual_seed(0)
    return perturbed(transformers.LlamaForCausalLM(cfg))


def tokens(T=48):
    return torch.randint(0, 1000, (2, T), generator=torch.Generator().manual_seed(2))


@torch.no_grad()
def max_diff(hf_model, ours, T=48) -> float:
    idx = tokens(T)
    return (hf_model(idx).logits - ours(idx)).abs().max().item()


@pytest.mark.parametrize("attention", ["sdpa", "explicit"])
def test_gpt2_logits_match(attention):
    hf = hf_gpt2()
    ours = GPT.from_hf(hf.state_dict(), hf.config.to_dict(), attention=attention).eval()
    assert ours.config.pos_encoding == "learned" and ours.config.tie_embeddings
    assert max_diff(hf, ours) < TOL


@pytest.mark.parametrize(
    "overrides",
    [
        dict(rope_theta=10000.0, tie_word_embeddings=True),
        dict(rope_theta=500000.0, tie_word_embeddings=False),
        dict(rope_theta=10000.0, rope_scaling={"rope_type": "linear", "factor": 2.0}),
        dict(attention_bias=True, mlp_bias=True),
        dict(rope_theta=500000.0, rope_scaling=LLAMA3_SCALING),
    ],
    ids=["theta1e4-tied", "theta5e5-untied", "linear-scaling", "bias", "llama3-scaling"],
)
@pytest.mark.parametrize("attention", ["sdpa", "explicit"])
def test_llama_logits_match(overrides, attention):
    hf = hf_llama(**overrides)
    ours = GPT.from_hf(hf.state_dict(), hf.config.to_dict(), attention=attention).eval()
    assert (ours.config.n_kv_head, ours.config.tie_embeddings) == (2, hf.config.tie_word_embeddings)
    assert ours.config.rope_scaling == overrides.get("rope_scaling", {}).get("factor", 1.0)
    assert max_diff(hf, ours, T=100) < TOL


def test_config_from_hf_reads_both_rope_layouts():
    legacy = {"model_type": "llama", "rope_theta": 5e5, "rope_scaling": {"type": "linear", "factor": 4.0}}
    current = {"model_type": "llama", "rope_parameters": {"rope_type": "linear", "factor": 4.0, "rope_theta": 5e5}}
    assert config_from_hf(legacy) == config_from_hf(current)
    assert (config_from_hf(legacy).rope_base, config_from_hf(legacy).rope_scaling) == (5e5, 4.0)


def our_model(cfg: GPTConfig) -> GPT:
    model = GPT.build(cfg)
    model.init_weights(seed=0)
    return perturbed(model)


def resolved(cfg: GPTConfig) -> GPTConfig:
    """The config with its defaults spelled out (d_ff=0 and d_ff=4*d are the same model)."""
    return replace(cfg, d_ff=cfg.ff_dim, n_kv_head=cfg.kv_heads)


SMALL = dict(vocab_size=1000, block_size=64, n_layer=2, n_head=4, d_model=64)
ROUND_TRIP = {
    "gpt2": GPTConfig.preset("gpt2", **SMALL),
    "gpt2-untied": GPTConfig.preset("gpt2", **SMALL, tie_embeddings=False),
    "llama": GPTConfig(**SMALL, n_kv_head=2, d_ff=96, tie_embeddings=False, rope_base=5e5, rope_scaling=2.0),
    "llama-tied": GPTConfig(**SMALL),
    "llama3-scaling": GPTConfig(**SMALL, rope_scaling=8.0, rope_scaling_type="llama3", rope_original_context=64),
}


@pytest.mark.parametrize("name", ROUND_TRIP)
def test_save_hf_round_trip_and_transformers_loads_it(name, tmp_path):
    ours = our_model(ROUND_TRIP[name])
    ours.save_hf(tmp_path / "export")
    ours.save_hf(tmp_path / "export")  # saving over an existing export replaces it
    assert sorted(p.name for p in tmp_path.iterdir()) == ["export"]  # no temporary directory left behind

    back = GPT.from_hf(tmp_path / "export")
    assert resolved(back.config) == resolved(ours.config)
    assert back.state_dict().keys() == ours.state_dict().keys()
    assert all(torch.equal(t, back.state_dict()[k]) for k, t in ours.state_dict().items())

    hf = transformers.AutoModelForCausalLM.from_pretrained(tmp_path / "export", attn_implementation="eager").eval()
    assert hf.dtype == torch.float32
    assert max_diff(hf, ours) < TOL


@pytest.mark.parametrize("make", [hf_gpt2, hf_llama], ids=["gpt2", "llama"])
def test_loads_save_pretrained_directory_file_and_shards(make, tmp_path):
    hf = make()
    hf.save_pretrained(tmp_path / "one")
    hf.save_pretrained(tmp_path / "sharded", max_shard_size="100KB")
    assert (tmp_path / "sharded" / "model.safetensors.index.json").is_file()
    for source, config in [
        (tmp_path / "one", None),
        (tmp_path / "sharded", None),
        (tmp_path / "one" / "model.safetensors", None),  # the config.json beside it
        (tmp_path / "one" / "model.safetensors", config_from_hf(hf.config.to_dict())),
    ]:
        assert max_diff(hf, GPT.from_hf(source, config).eval()) < TOL


def test_gpt2_original_checkpoint_names():
    """openai-community/gpt2 was saved from the base model: no ``transformer.`` prefix, no lm_head, and the causal
    mask buffers ``attn.bias`` / ``attn.masked_bias`` stored as if they were weights."""
    hf = hf_gpt2()
    state = {k.removeprefix("transformer."): v for k, v in hf.state_dict().items() if k != "lm_head.weight"}
    for i in range(hf.config.n_layer):
        state[f"h.{i}.attn.bias"] = torch.ones(1, 1, 128, 128).tril()
        state[f"h.{i}.attn.masked_bias"] = torch.tensor(-1e4)
    assert max_diff(hf, GPT.from_hf(state, hf.config.to_dict()).eval()) < TOL


# ------------------------------------------------------------------------------------------------- bad input


@pytest.fixture(scope="module")
def llama_checkpoint():
    hf = hf_llama()
    return hf.state_dict(), hf.config.to_dict()


def test_wrong_shape_names_the_tensor(llama_checkpoint):
    state, config = llama_checkpoint
    with pytest.raises(ConfigError, match=r"'model.layers.1.mlp.up_proj.weight'.*\(160, 64\).*pass the right config"):
        GPT.from_hf({**state, "model.layers.1.mlp.up_proj.weight": torch.zeros(128, 64)}, config)
    with pytest.raises(ConfigError, match="pass the right config"):  # a config that disagrees with the weights
        GPT.from_hf(state, {**config, "intermediate_size": 128})


def test_missing_and_unexpected_tensors(llama_checkpoint):
    state, config = llama_checkpoint
    missing = {k: v for k, v in state.items() if k != "model.norm.weight"}
    with pytest.raises(ConfigError, match="no tensor 'model.norm.weight'"):
        GPT.from_hf(missing, config)
    with pytest.raises(ConfigError, match="1 tensors the config does not use.*extra.weight"):
        GPT.from_hf({**state, "extra.weight": torch.zeros(1)}, config)


@pytest.mark.parametrize("kind", ["yarn", "dynamic"])
def test_unsupported_rope_scaling(kind, llama_checkpoint):
    state, config = llama_checkpoint
    config = {**config, "rope_parameters": {"rope_type": kind, "factor": 8.0, "rope_theta": 5e5}}
    with pytest.raises(ConfigError, match=f"rope scaling type '{kind}' is not supported.*not match"):
        GPT.from_hf(state, config)


def test_unsupported_configs():
    with pytest.raises(ConfigError, match="head_dim=32 differs"):
        config_from_hf({"model_type": "llama", "hidden_size": 64, "num_attention_heads": 4, "head_dim": 32})
    with pytest.raises(ConfigError, match="model_type 'mistral' is not supported"):
        config_from_hf({"model_type": "mistral"})
    with pytest.raises(ConfigError, match="activation_function 'gelu'"):
        config_from_hf({"model_type": "gpt2", "activation_function": "gelu"})


def test_unexportable_config_is_refused(tmp_path):
    cfg = GPTConfig.preset("gpt2", vocab_size=100, block_size=16, n_layer=1, n_head=2, d_model=16, pos_encoding="rope")
    with pytest.raises(ConfigError, match="GPT2LMHeadModel needs pos_encoding='learned'.*LlamaForCausalLM needs"):
        our_model(cfg).save_hf(tmp_path / "export")
    assert not any(tmp_path.iterdir())


def test_directory_without_safetensors(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "gpt2"}))
    (tmp_path / "pytorch_model.bin").write_bytes(b"")
    with pytest.raises(ConfigError, match="only safetensors"):
        GPT.from_hf(tmp_path)
    with pytest.raises(ConfigError, match="needs config="):
        GPT.from_hf({})

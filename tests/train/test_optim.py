"""Weight-decay groups: every trainable tensor in exactly one group, decay on Linear weight matrices only, a tied
head counted once; the count of decayed parameters checked against an independent count from the config."""

from __future__ import annotations

import pytest
import torch

from scratchllm.model import GPT, GPTConfig
from scratchllm.model.config import num_params
from scratchllm.train.config import TrainConfig
from scratchllm.train.optim import build_optimizer, param_groups, split_decay

SMALL = dict(vocab_size=100, block_size=32, n_layer=2, n_head=2, d_model=32)
GPT2_LIKE = dict(SMALL, pos_encoding="learned", norm="layernorm", mlp="gelu", bias=True)
LLAMA_LIKE = dict(SMALL, pos_encoding="rope", norm="rmsnorm", mlp="swiglu", bias=False, n_kv_head=1)
VARIANTS = {
    "gpt2-tied": GPTConfig(**GPT2_LIKE, tie_embeddings=True),
    "gpt2-untied": GPTConfig(**GPT2_LIKE, tie_embeddings=False),
    "llama-tied": GPTConfig(**LLAMA_LIKE, tie_embeddings=True),
    "llama-untied": GPTConfig(**LLAMA_LIKE, tie_embeddings=False),
}


def decayed_count(cfg: GPTConfig) -> int:
    """Elements of the weight matrices, from the config alone: attention q/k/v/o, the MLP's matrices, and an untied
    head; no embeddings, norms or biases."""
    d, hd = cfg.d_model, cfg.head_dim
    attention = d * cfg.n_head * hd + 2 * d * cfg.kv_heads * hd + cfg.n_head * hd * d
    mlp = (3 if cfg.mlp == "swiglu" else 2) * d * cfg.ff_dim
    head = 0 if cfg.tie_embeddings else cfg.vocab_size * d
    return cfg.n_layer * (attention + mlp) + head


@pytest.mark.parametrize("name", VARIANTS)
def test_every_parameter_in_exactly_one_group(name):
    model = GPT.build(VARIANTS[name])
    groups = param_groups(model, 0.1)
    ids = [id(p) for g in groups for p in g["params"]]
    assert len(ids) == len(set(ids))  # no tensor twice (a tied head would otherwise appear under two names)
    assert set(ids) == {id(p) for p in model.parameters()}
    assert sum(p.numel() for g in groups for p in g["params"]) == num_params(model.config)
    assert [g["weight_decay"] for g in groups] == [0.1, 0.0]


@pytest.mark.parametrize("name", VARIANTS)
def test_decay_on_linear_weight_matrices_only(name):
    cfg = VARIANTS[name]
    decay, no_decay = split_decay(GPT.build(cfg))
    assert sum(p.numel() for _, p in decay) == decayed_count(cfg)
    assert all(p.dim() == 2 for _, p in decay)
    # By name: projections and MLP matrices (and an untied head) decay; embeddings, positions, norms, biases do not.
    matrix_names = ("q_proj", "k_proj", "v_proj", "o_proj", "up", "down", "gate", "lm_head")
    assert all(n.endswith(".weight") and n.split(".")[-2] in matrix_names for n, _ in decay)
    assert ("lm_head.weight" in dict(decay)) == (not cfg.tie_embeddings)
    kept = dict(no_decay)
    assert "tok_emb.weight" in kept and "norm_f.weight" in kept
    assert ("pos.weight" in kept) == (cfg.pos_encoding == "learned")  # a 2-D table, yet not decayed
    assert any(n.endswith(".bias") for n in kept) == cfg.bias
    assert "lm_head.weight" not in kept  # tied: present once, as tok_emb.weight


def test_frozen_parameters_are_left_out():
    model = GPT.build(VARIANTS["llama-untied"])
    model.tok_emb.weight.requires_grad_(False)
    model.blocks[0].attn.q_proj.weight.requires_grad_(False)
    decay, no_decay = split_decay(model)
    names = [n for n, _ in decay + no_decay]
    assert "tok_emb.weight" not in names and "blocks.0.attn.q_proj.weight" not in names
    assert len(names) == sum(1 for p in model.parameters() if p.requires_grad)


def test_build_optimizer_uses_the_config():
    cfg = TrainConfig(lr=2e-3, weight_decay=0.05, betas=(0.8, 0.9), eps=1e-6)
    opt = build_optimizer(GPT.build(VARIANTS["gpt2-tied"]), cfg)
    assert isinstance(opt, torch.optim.AdamW)
    assert [(g["lr"], g["weight_decay"], g["betas"], g["eps"]) for g in opt.param_groups] == [
        (2e-3, 0.05, (0.8, 0.9), 1e-6),
        (2e-3, 0.0, (0.8, 0.9), 1e-6),
    ]
    assert not any(g["fused"] for g in opt.param_groups)  # CPU: the foreach implementation


def test_no_decay_group_is_untouched_by_decay():
    # With zero gradients AdamW moves parameters only through weight decay: matrices shrink, the rest stays.
    model = GPT.build(VARIANTS["gpt2-untied"])
    opt = build_optimizer(model, TrainConfig(lr=0.1, weight_decay=0.5))
    decay, no_decay = split_decay(model)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    for p in model.parameters():
        p.grad = torch.zeros_like(p)
    opt.step()
    for n, p in decay:
        torch.testing.assert_close(p.detach(), before[n] * (1 - 0.1 * 0.5), rtol=1e-6, atol=0)
    for n, p in no_decay:
        assert torch.equal(p.detach(), before[n]), n

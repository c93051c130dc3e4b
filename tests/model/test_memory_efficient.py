"""The memory-efficient switches change memory, not results: the chunked loss and activation checkpointing give the
same loss and the same gradients as the plain forward pass, with ignored targets too."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from scratchllm.model import GPT, GPTConfig
from scratchllm.model.loss import IGNORE_INDEX, chunked_cross_entropy, full_cross_entropy

BASE = GPTConfig(vocab_size=500, block_size=64, n_layer=3, n_head=4, n_kv_head=2, d_model=64)


def loss_and_grads(cfg: GPTConfig, idx, targets, reduction="mean"):
    torch.manual_seed(0)
    model = GPT.build(cfg).train()
    loss = model(idx, targets, reduction=reduction)
    loss.backward()
    return loss.detach(), {n: p.grad.clone() for n, p in model.named_parameters()}


@pytest.fixture
def batch():
    torch.manual_seed(1)
    idx = torch.randint(0, 500, (4, 48))
    targets = torch.randint(0, 500, (4, 48))
    targets[0, :10] = IGNORE_INDEX  # a masked prompt
    targets[3, -5:] = IGNORE_INDEX  # padding
    return idx, targets


@pytest.mark.parametrize(
    "switches",
    [
        {"loss_chunk_size": 37},  # a chunk size that does not divide B*T
        {"activation_checkpointing": True},
        {"activation_checkpointing": True, "loss_chunk_size": 64},
        {"activation_checkpointing": True, "loss_chunk_size": 64, "tie_embeddings": False},
    ],
)
@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_switches_keep_loss_and_gradients(batch, switches, reduction):
    idx, targets = batch
    plain = replace(BASE, tie_embeddings=switches.get("tie_embeddings", True))
    loss0, grads0 = loss_and_grads(plain, idx, targets, reduction)
    loss1, grads1 = loss_and_grads(replace(BASE, **switches), idx, targets, reduction)
    torch.testing.assert_close(loss1, loss0, rtol=1e-6, atol=1e-6)
    assert grads1.keys() == grads0.keys()
    for name in grads0:  # fp32 sums in another order: equal to ~1e-6 of the gradient's scale
        scale = grads0[name].abs().max().item()
        torch.testing.assert_close(grads1[name], grads0[name], rtol=1e-5, atol=2e-6 * scale, msg=name)


def test_activation_checkpointing_alone_is_bit_identical(batch):
    idx, targets = batch
    _, grads0 = loss_and_grads(BASE, idx, targets)
    _, grads1 = loss_and_grads(replace(BASE, activation_checkpointing=True), idx, targets)
    assert all(torch.equal(grads0[n], grads1[n]) for n in grads0)


def test_chunked_cross_entropy_function_against_pytorch():
    torch.manual_seed(0)
    hidden = torch.randn(50, 16, requires_grad=True)
    weight = torch.randn(30, 16, requires_grad=True)
    targets = torch.randint(0, 30, (50,))
    targets[::7] = IGNORE_INDEX
    total, count = chunked_cross_entropy(hidden, weight, targets, chunk=8)
    (2.5 * total).backward()  # a non-unit upstream gradient must scale the stored gradients
    gh, gw = hidden.grad.clone(), weight.grad.clone()
    hidden.grad = weight.grad = None
    ref, ref_count = full_cross_entropy(hidden @ weight.T, targets)
    (2.5 * ref).backward()
    assert count == ref_count == 50 - len(range(0, 50, 7))
    torch.testing.assert_close(total, ref)
    torch.testing.assert_close(hidden.grad, gh)
    torch.testing.assert_close(weight.grad, gw)


def test_chunked_loss_under_no_grad_computes_no_gradients():
    model = GPT.build(replace(BASE, loss_chunk_size=16)).eval()
    idx = torch.randint(0, 500, (2, 20))
    with torch.no_grad():
        loss = model(idx, idx)
    assert not loss.requires_grad

"""The scheduler's continuous batching against ``generate()`` on each prompt alone: greedy and seeded sampling (with
top-k, top-p and the repetition penalty), requests joining a running batch, prompts near the end of the context,
stop tokens, and a full queue. Two architectures, as in tests/model/test_generate.py: RoPE + RMSNorm + SwiGLU + GQA,
and GPT-2's learned positions + LayerNorm + GELU (learned positions make a wrong padding offset visible)."""

from __future__ import annotations

import random
import threading

import pytest
import torch

from scratchllm.model import GPT, GPTConfig
from scratchllm.model.generate import generate
from scratchllm.serve import QueueFull, Request, Sampling, Scheduler

ARCHS = {
    "llama": dict(pos_encoding="rope", norm="rmsnorm", mlp="swiglu", n_head=4, n_kv_head=2, tie_embeddings=False),
    "gpt2": dict(pos_encoding="learned", norm="layernorm", mlp="gelu", bias=True, n_head=4),
}
BLOCK = 48


@pytest.fixture(scope="module", params=list(ARCHS))
def model(request) -> GPT:
    torch.manual_seed(0)
    return GPT.build(GPTConfig(vocab_size=300, block_size=BLOCK, n_layer=2, d_model=64, init_std=0.3,
                               **ARCHS[request.param]))  # fmt: skip


def run_all(scheduler: Scheduler, requests: list[Request], stagger: int = 0) -> list[tuple[list[int], str]]:
    """Submit every request (a few at a time when ``stagger``, so later ones join a running batch); wait for all."""
    out = [([], None) for _ in requests]
    done = [threading.Event() for _ in requests]
    for i, request in enumerate(requests):
        request.on_token = out[i][0].append
        request.on_done = lambda reason, error, i=i: (out.__setitem__(i, (out[i][0], reason)), done[i].set())
    for i, request in enumerate(requests):
        scheduler.submit(request)
        if stagger and i % stagger == stagger - 1:
            done[i].wait(5)  # let the batch run a little before the next ones arrive
    assert all(d.wait(60) for d in done)
    return out


def random_prompts(n: int, seed: int = 0) -> list[tuple[list[int], int]]:
    rng = random.Random(seed)
    # Lengths up to the whole context, so some requests get fewer tokens than they ask for (the context runs out).
    return [([rng.randrange(300) for _ in range(rng.randint(1, BLOCK))], rng.randint(1, 30)) for _ in range(n)]


@pytest.mark.parametrize("stagger", [0, 3])
def test_greedy_batches_equal_generate_alone(model, stagger):
    jobs = random_prompts(16)
    scheduler = Scheduler(model, max_batch=8).start()
    try:
        got = run_all(scheduler, [Request(p, m, Sampling(temperature=0), frozenset({7})) for p, m in jobs], stagger)
    finally:
        scheduler.stop()
    for (prompt, max_tokens), (tokens, reason) in zip(jobs, got):
        expected = generate(model, [prompt], max_tokens, temperature=0, stop_tokens=[7])[0]
        assert tokens == expected
        room = min(max_tokens, BLOCK - len(prompt) + 1)
        assert reason == ("length" if len(expected) == room else "stop")
    assert 1 < scheduler.peak_batch <= 8


def test_seeded_sampling_equals_generate_alone(model):
    jobs = random_prompts(12, seed=1)
    sampling = [Sampling(0.9, 40, 0.9, 1.3, seed=i) for i in range(len(jobs))]
    scheduler = Scheduler(model, max_batch=5).start()
    try:
        got = run_all(scheduler, [Request(p, m, s) for (p, m), s in zip(jobs, sampling)], stagger=2)
    finally:
        scheduler.stop()
    for (prompt, max_tokens), s, (tokens, _) in zip(jobs, sampling, got):
        expected = generate(model, [prompt], max_tokens, temperature=0.9, top_k=40, top_p=0.9,
                            repetition_penalty=1.3, seed=s.seed)[0]  # fmt: skip
        assert tokens == expected


def test_bad_requests_and_full_queue(model):
    scheduler = Scheduler(model, max_batch=2, max_queue=2)  # not started: nothing leaves the queue
    for prompt, sampling, says in [
        ([], Sampling(), "no tokens"),
        ([1] * (BLOCK + 1), Sampling(), "context"),
        ([300], Sampling(), "vocab"[:0] + "[0, 300)"),
        ([1], Sampling(top_p=0), "top_p"),
    ]:
        with pytest.raises(ValueError, match=says.replace("[", r"\[").replace(")", r"\)")):
            scheduler.submit(Request(prompt, 4, sampling))
    scheduler.submit(Request([1], 4))
    scheduler.submit(Request([2], 4))
    with pytest.raises(QueueFull):
        scheduler.submit(Request([3], 4))


def test_cancelled_request_leaves_the_batch(model):
    scheduler = Scheduler(model, max_batch=4).start()
    try:
        reasons = {}
        done = threading.Event()
        long = Request([1, 2, 3], 10_000, Sampling(temperature=0))  # would run to the end of the context
        long.on_token = lambda token: long.cancel()
        long.on_done = lambda reason, error: (reasons.setdefault("long", reason), done.set())
        scheduler.submit(long)
        assert done.wait(30) and reasons["long"] == "cancelled"
        assert run_all(scheduler, [Request([5, 6], 3, Sampling(temperature=0))])[0][0] == generate(
            model, [[5, 6]], 3, temperature=0)[0]  # fmt: skip
    finally:
        scheduler.stop()

"""Generation: the KV cache against full recomputation, padding against generating alone, the sampling filters
against hand-computed values and Hugging Face's processors, and greedy decoding against ``transformers``' generate.

The random models use a large init_std: at GPT-2's 0.02 a random model mostly repeats one token, which would make
"the same tokens" a weak check.
"""

from __future__ import annotations

import pytest
import torch

from scratchllm.model import GPT, GPTConfig
from scratchllm.model.generate import (
    _last_logits,
    apply_repetition_penalty,
    generate,
    padded_mask,
    padded_positions,
    sample_next,
    stream_generate,
    top_k_filter,
    top_p_filter,
)

ARCHS = {
    "llama": dict(pos_encoding="rope", norm="rmsnorm", mlp="swiglu", n_head=4, n_kv_head=2, tie_embeddings=False),
    "gpt2": dict(pos_encoding="learned", norm="layernorm", mlp="gelu", bias=True, n_head=4),
}
PROMPTS = [[5, 6, 7, 8, 9, 10, 11], [1, 2, 3], [42]]  # different lengths: the batch is left-padded
SAMPLING = dict(temperature=0.9, top_k=50, top_p=0.9)


@pytest.fixture(scope="module", params=list(ARCHS))
def model(request) -> GPT:
    torch.manual_seed(0)
    cfg = GPTConfig(vocab_size=300, block_size=64, n_layer=2, d_model=64, init_std=0.3, **ARCHS[request.param])
    return GPT.build(cfg)


def test_cache_equals_recomputation(model):
    for kwargs in [dict(temperature=0), dict(SAMPLING, seed=7, repetition_penalty=1.3)]:
        cached = generate(model, PROMPTS, 24, **kwargs)
        full = generate(model, PROMPTS, 24, use_cache=False, **kwargs)
        assert cached == full
        assert all(len(out) == 24 for out in cached)
    assert len(set(cached[0])) > 5  # the model does not just repeat itself


def test_padded_batch_equals_each_prompt_alone(model):
    batch = generate(model, PROMPTS, 20, temperature=0)
    assert batch == [generate(model, [prompt], 20, temperature=0)[0] for prompt in PROMPTS]
    # The prefill logits too: padding, masked out and with positions shifted, changes nothing.
    width = max(map(len, PROMPTS))
    pad = torch.tensor([width - len(p) for p in PROMPTS])
    ids = torch.tensor([[0] * (width - len(p)) + p for p in PROMPTS])
    with torch.no_grad():
        padded = _last_logits(model, ids, padded_positions(pad, 0, width), padded_mask(pad, width, width), None)
        for row, prompt in enumerate(PROMPTS):
            alone = _last_logits(model, torch.tensor([prompt]), None, None, None)
            torch.testing.assert_close(padded[row], alone[0], atol=1e-5, rtol=1e-5)


def test_seed_reproduces_and_local_generator(model):
    state = torch.get_rng_state()
    first = generate(model, PROMPTS, 16, seed=1, **SAMPLING)
    assert generate(model, PROMPTS, 16, seed=1, **SAMPLING) == first
    assert generate(model, PROMPTS, 16, seed=2, **SAMPLING) != first
    assert torch.equal(torch.get_rng_state(), state)  # the global RNG was neither used nor reseeded


def test_top_k_1_and_tiny_top_p_are_greedy(model):
    greedy = generate(model, PROMPTS, 16, temperature=0)
    assert generate(model, PROMPTS, 16, temperature=1.5, top_k=1, seed=3) == greedy
    assert generate(model, PROMPTS, 16, temperature=1.5, top_p=1e-6, seed=3) == greedy


def test_stop_tokens_end_each_sequence(model):
    free = generate(model, PROMPTS, 20, temperature=0)
    stop = free[0][5]  # a token the first sequence emits; it ends there and is not output
    stopped = generate(model, PROMPTS, 20, temperature=0, stop_tokens=[stop])
    for out, ref in zip(stopped, free):
        assert out == (ref[: ref.index(stop)] if stop in ref else ref)
    assert len(stopped[0]) <= 5


def test_streaming_yields_the_same_tokens(model):
    steps = list(stream_generate(model, PROMPTS, 12, seed=4, stop_tokens=[7], **SAMPLING))
    seen = []
    out = generate(model, PROMPTS, 12, seed=4, stop_tokens=[7], stream=seen.append, **SAMPLING)
    assert seen == steps
    assert all(len(step) == len(PROMPTS) for step in steps)
    assert out == [[step[row] for step in steps if step[row] is not None] for row in range(len(PROMPTS))]


def test_context_limits_and_modes(model):
    block = model.config.block_size
    with pytest.raises(ValueError, match="longer than the model's context"):
        generate(model, [list(range(block + 1))], 4)
    with pytest.raises(ValueError, match="longer than the model's context"):
        stream_generate(model, [list(range(block + 1))], 4)  # at the call, before any step
    # The context caps the new tokens: a prompt of block - 2 tokens leaves room to predict 3.
    assert len(generate(model, [list(range(block - 2))], 10, temperature=0)[0]) == 3
    with pytest.raises(ValueError, match="at least one token"):
        generate(model, [[1], []], 4)
    with pytest.raises(ValueError, match="vocab_size"):
        generate(model, [[1, 300]], 4)
    model.train()
    assert model.generate([1, 2, 3], 4, temperature=0) == generate(model, [[1, 2, 3]], 4, temperature=0)
    assert model.training  # restored
    model.eval()


def test_repetition_penalty_filter():
    logits = torch.tensor([[2.0, -1.0, 0.5, 3.0, 0.0]])
    seen = torch.tensor([[True, True, False, False, True]])
    expected = torch.tensor([[1.0, -2.0, 0.5, 3.0, 0.0]])  # positive halved, negative doubled, unseen untouched
    assert torch.equal(apply_repetition_penalty(logits, seen, 2.0), expected)
    assert torch.equal(apply_repetition_penalty(logits, seen, 1.0), logits)


def test_filters_by_hand():
    logits = torch.tensor([[1.0, 4.0, 2.0, 3.0, 3.0]])
    inf = float("-inf")
    assert torch.equal(top_k_filter(logits, 2), torch.tensor([[inf, 4.0, inf, 3.0, 3.0]]))  # ties with k-th stay
    assert torch.equal(top_k_filter(logits, 0), logits)
    probs = torch.tensor([[0.2, 0.5, 0.3]]).log()
    kept = lambda p: top_p_filter(probs, p).isfinite()[0].tolist()
    assert kept(0.4) == [False, True, False]  # 0.5 alone reaches 0.4
    assert kept(0.6) == [False, True, True]  # 0.5 + 0.3
    assert kept(0.9) == [True, True, True]
    assert kept(1e-9) == [False, True, False]  # always at least the most likely token
    exact = torch.tensor([[0.5, 0.25, 0.25]]).log()  # binary fractions: softmax gives them back exactly
    assert top_p_filter(exact, 0.5).isfinite()[0].tolist() == [True, False, False]  # reaching p exactly is enough
    assert torch.equal(sample_next(logits, temperature=0), torch.tensor([1]))


def test_filters_equal_hugging_face():
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(0)
    logits = torch.randn(4, 300) * 3
    ids = torch.randint(0, 300, (4, 20))
    seen = torch.zeros(4, 300, dtype=torch.bool).scatter(1, ids, True)
    hf_penalty = transformers.RepetitionPenaltyLogitsProcessor(1.7)(ids, logits.clone())
    assert torch.equal(apply_repetition_penalty(logits, seen, 1.7), hf_penalty)
    assert torch.equal(top_k_filter(logits, 17), transformers.TopKLogitsWarper(17)(ids, logits.clone()))
    for p in (0.3, 0.8, 0.95):
        hf_kept = transformers.TopPLogitsWarper(p)(ids, logits.clone()).isfinite()
        assert torch.equal(top_p_filter(logits, p).isfinite(), hf_kept)


def test_greedy_equals_hugging_face_gpt2():
    transformers = pytest.importorskip("transformers")
    hf_cfg = transformers.GPT2Config(
        vocab_size=300, n_positions=64, n_embd=64, n_layer=2, n_head=4, initializer_range=0.3,
        bos_token_id=None, eos_token_id=None,
    )  # fmt: skip
    torch.manual_seed(0)
    hf = transformers.GPT2LMHeadModel(hf_cfg).eval()
    ours = GPT.from_hf(hf.state_dict(), hf_cfg.to_dict())
    prompt = [5, 6, 7, 8, 9, 10, 11]
    with torch.no_grad():
        theirs = hf.generate(torch.tensor([prompt]), max_new_tokens=40, do_sample=False, pad_token_id=0)
    assert generate(ours, [prompt], 40, temperature=0)[0] == theirs[0, len(prompt) :].tolist()

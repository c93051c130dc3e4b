"""Text generation: run the model one token at a time, pick each next token from its logits, feed it back.

Picking a token is a short pipeline applied to the last position's logits, in the order Hugging Face applies it:

    repetition penalty  ->  / temperature  ->  top-k  ->  top-p  ->  softmax  ->  draw (or argmax at temperature 0)

- Temperature 0 is greedy decoding (argmax); below 1 it sharpens the distribution, above 1 it flattens it.
- Top-k keeps the k most likely tokens (Fan et al. 2018, "Hierarchical Neural Story Generation").
- Top-p, nucleus sampling (Holtzman et al. 2020, "The Curious Case of Neural Text Degeneration"), keeps the smallest
  set of most likely tokens whose probability reaches p.
- The repetition penalty of CTRL (Keskar et al. 2019) makes tokens already in the text less likely: a positive
  logit is divided by the penalty, a negative one multiplied, exactly as Hugging Face's processor does.

The prompt runs through the model once (the "prefill"), its keys and values go into a KV cache preallocated for the
whole generation, and every later step feeds only the newest token (see ``kv_cache.py``). ``use_cache=False``
recomputes the whole sequence at every step instead: quadratic, but the reference the cached path is tested against.

Prompts of different lengths are batched by left padding, so every sequence's next token sits in the last column.
Padding must be invisible: each sequence's positions start at 0 at its first real token, and an attention mask hides
the padding keys. Draws use a local ``torch.Generator``, so a seed reproduces a generation without touching (or
depending on) the global random state.

This module imports only torch and duck-types the model: anything with ``config.block_size``,
``config.vocab_size``, ``hidden_states``, ``lm_head`` and ``new_cache`` (``gpt.GPT``) will do.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from numbers import Integral

import torch
import torch.nn.functional as F

# ------------------------------------------------------------------------------------------------ choosing a token


def apply_repetition_penalty(logits: torch.Tensor, seen: torch.Tensor | None, penalty: float) -> torch.Tensor:
    """CTRL's penalty on (B, V) logits for the tokens marked True in ``seen`` (B, V): divide positive logits by
    ``penalty``, multiply negative ones, so either way the token becomes less likely (for penalty > 1)."""
    if seen is None or penalty == 1.0:
        return logits
    penalized = torch.where(logits > 0, logits / penalty, logits * penalty)
    return torch.where(seen, penalized, logits)


def top_k_filter(logits: torch.Tensor, k: int) -> torch.Tensor:
    """Keep the k largest logits of each row (and any tied with the k-th), set the rest to -inf. k = 0: no-op."""
    if k <= 0 or k >= logits.size(-1):
        return logits
    kth = torch.topk(logits, k, dim=-1).values[..., -1:]  # (B, 1): the k-th largest logit
    return logits.masked_fill(logits < kth, float("-inf"))


def top_p_filter(logits: torch.Tensor, p: float) -> torch.Tensor:
    """Nucleus filter: keep the smallest set of most likely tokens whose probability reaches ``p``, at least one.
    p = 1: no-op."""
    if p >= 1.0:
        return logits
    sorted_logits, order = torch.sort(logits, dim=-1, descending=True)  # (B, V)
    probs = F.softmax(sorted_logits, dim=-1)
    before = probs.cumsum(dim=-1) - probs  # (B, V): probability of the more likely tokens before each one
    # A token is dropped once the tokens before it already reach p; the most likely has 0 before it, so it stays.
    drop_sorted = before >= p
    drop = drop_sorted.scatter(-1, order, drop_sorted)  # back from sorted order to vocabulary order
    return logits.masked_fill(drop, float("-inf"))


def sample_next(
    logits: torch.Tensor,
    temperature: float = 1.0,
    top_k: int = 0,
    top_p: float = 1.0,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """(B, V) logits -> (B,) next token ids: the argmax at temperature 0, otherwise a draw from the tempered,
    top-k and top-p filtered distribution."""
    if temperature == 0:
        return logits.argmax(dim=-1)
    logits = top_p_filter(top_k_filter(logits / temperature, top_k), top_p)
    probs = F.softmax(logits, dim=-1)  # filtered tokens get exactly 0 and are never drawn
    return torch.multinomial(probs, 1, generator=generator)[:, 0]


# ------------------------------------------------------------------------------------------------ batching


def left_pad(prompts: Sequence[Sequence[int]], pad_id: int, device) -> tuple[torch.Tensor, torch.Tensor]:
    """Prompts -> (B, T) ids, each prompt right-aligned after ``pad_id`` padding, and (B,) padding counts."""
    width = max(len(p) for p in prompts)
    ids = torch.full((len(prompts), width), pad_id, dtype=torch.long)
    for row, prompt in enumerate(prompts):
        ids[row, width - len(prompt) :] = torch.as_tensor(prompt, dtype=torch.long)
    pad = torch.tensor([width - len(p) for p in prompts])
    return ids.to(device), pad.to(device)


def padded_positions(pad: torch.Tensor, start: int, end: int) -> torch.Tensor:
    """(B, end - start) positions of columns start..end-1: 0 at each sequence's first real token (0 on padding)."""
    return (torch.arange(start, end, device=pad.device)[None] - pad[:, None]).clamp(min=0)


def padded_mask(pad: torch.Tensor, t_new: int, t_total: int) -> torch.Tensor:
    """(B, 1, t_new, t_total) bool attention mask for the last t_new of t_total columns: causal, padding keys hidden.
    A padding query may see itself, so that its softmax has at least one key (a row of -inf only gives NaN)."""
    key = torch.arange(t_total, device=pad.device)  # (t_total,)
    query = key[t_total - t_new :, None]  # (t_new, 1)
    real = key[None] >= pad[:, None]  # (B, t_total): not padding
    mask = (key <= query)[None] & real[:, None]  # (B, t_new, t_total)
    return (mask | (key == query))[:, None]


def _last_logits(model, ids, positions, mask, cache) -> torch.Tensor:
    """(B, V) fp32 logits of the last position only: the head is a large matmul, and only the last column is needed."""
    h = model.hidden_states(ids, positions, mask, cache)  # (B, T, d)
    return model.lm_head(h[:, -1]).float()


def _as_batch(prompts) -> list[list[int]]:
    """A (B, T) tensor, a batch of token-id sequences, or one sequence of ints -> a list of lists of ints."""
    if isinstance(prompts, torch.Tensor):
        prompts = prompts.tolist()
    if len(prompts) and isinstance(prompts[0], Integral):
        prompts = [prompts]
    prompts = [[int(t) for t in p] for p in prompts]
    if not prompts or not all(prompts):
        raise ValueError("every prompt needs at least one token (start it with the BOS token if it has no text)")
    return prompts


# ------------------------------------------------------------------------------------------------ the loop


def stream_generate(
    model,
    prompts: Sequence[Sequence[int]] | Sequence[int] | torch.Tensor,
    max_new_tokens: int,
    *,
    temperature: float = 1.0,
    top_k: int = 0,
    top_p: float = 1.0,
    repetition_penalty: float = 1.0,
    stop_tokens: Sequence[int] = (),
    seed: int | None = None,
    use_cache: bool = True,
    pad_id: int = 0,
) -> Iterator[list[int | None]]:
    """Generate as ``generate`` does, yielding at each step a list with one entry per prompt: the new token id, or
    None for a sequence that has stopped. Ends when every sequence has stopped or after ``max_new_tokens`` steps;
    a step where no sequence produced a token (the last ones all emitted a stop token) is not yielded. Bad
    arguments raise here, at the call, not at the first step."""
    prompts = _as_batch(prompts)
    cfg = model.config
    if max_new_tokens < 0 or temperature < 0 or top_k < 0 or not 0 < top_p <= 1 or repetition_penalty <= 0:
        raise ValueError(
            "need max_new_tokens >= 0, temperature >= 0, top_k >= 0, 0 < top_p <= 1, repetition_penalty > 0; got "
            f"{max_new_tokens}, {temperature}, {top_k}, {top_p}, {repetition_penalty}"
        )
    if any(not 0 <= t < cfg.vocab_size for p in prompts for t in p):
        raise ValueError(f"prompt token ids must be in [0, {cfg.vocab_size}) (the model's vocab_size)")
    width = max(len(p) for p in prompts)
    if width > cfg.block_size:
        raise ValueError(
            f"prompt of {width} tokens is longer than the model's context of {cfg.block_size} tokens; "
            "shorten the prompt (keep its last tokens) or use a model with a larger block_size"
        )
    # The n-th new token is predicted from width + n - 1 tokens, which must fit in the context.
    steps = min(max_new_tokens, cfg.block_size - width + 1)
    sampling = (temperature, top_k, top_p, repetition_penalty)
    return _steps(model, prompts, steps, sampling, set(stop_tokens), seed, use_cache, pad_id)


@torch.inference_mode()
def _steps(model, prompts, steps, sampling, stop, seed, use_cache, pad_id) -> Iterator[list[int | None]]:
    """The decoding loop behind ``stream_generate``, on validated arguments."""
    if steps == 0:
        return
    temperature, top_k, top_p, repetition_penalty = sampling
    cfg = model.config
    width = max(len(p) for p in prompts)

    was_training = model.training
    model.eval()
    try:
        device = model.lm_head.weight.device
        ids, pad = left_pad(prompts, pad_id, device)  # (B, T0), (B,)
        B = ids.size(0)
        padded = bool(pad.any())  # without padding the model's own causal mask and positions are right, and fastest
        generator = torch.Generator(device=device)
        if seed is None:
            generator.seed()  # fresh entropy, still without touching the global RNG
        else:
            generator.manual_seed(seed)
        seen = None  # (B, V) tokens already in each sequence, for the repetition penalty
        if repetition_penalty != 1.0:
            seen = torch.zeros(B, cfg.vocab_size, dtype=torch.bool, device=device)
            for row, prompt in enumerate(prompts):
                seen[row, torch.as_tensor(prompt, device=device)] = True
        done = [False] * B

        # Prefill: the whole (padded) prompt at once. The cache holds every token that is fed back; the last new
        # token never is.
        cache = model.new_cache(B, width + steps - 1) if use_cache else None
        positions = padded_positions(pad, 0, width) if padded else None
        mask = padded_mask(pad, width, width) if padded else None
        logits = _last_logits(model, ids, positions, mask, cache)  # (B, V)

        for step in range(steps):
            logits = apply_repetition_penalty(logits, seen, repetition_penalty)
            next_ids = sample_next(logits, temperature, top_k, top_p, generator)  # (B,)
            new: list[int | None] = []
            for row, token in enumerate(next_ids.tolist()):
                done[row] = done[row] or token in stop  # a stop token ends its sequence and is not output
                new.append(None if done[row] else token)
            if any(token is not None for token in new):
                yield new
            if all(done) or step == steps - 1:
                break
            if seen is not None:
                seen[torch.arange(B, device=device), next_ids] = True
            # Stopped rows keep decoding in lockstep (their tokens are discarded); rows never see each other.
            t = width + step + 1  # sequence length once next_ids is appended
            if use_cache:
                ids = next_ids[:, None]  # (B, 1): the cache holds the rest
                positions = padded_positions(pad, t - 1, t) if padded else None
                mask = padded_mask(pad, 1, t) if padded else None
            else:
                ids = torch.cat([ids, next_ids[:, None]], dim=1)  # (B, t): everything, recomputed from scratch
                positions = padded_positions(pad, 0, t) if padded else None
                mask = padded_mask(pad, t, t) if padded else None
            logits = _last_logits(model, ids, positions, mask, cache)
    finally:
        model.train(was_training)


def generate(
    model,
    prompts: Sequence[Sequence[int]] | Sequence[int] | torch.Tensor,
    max_new_tokens: int,
    *,
    temperature: float = 1.0,
    top_k: int = 0,
    top_p: float = 1.0,
    repetition_penalty: float = 1.0,
    stop_tokens: Sequence[int] = (),
    seed: int | None = None,
    use_cache: bool = True,
    pad_id: int = 0,
    stream: Callable[[list[int | None]], None] | None = None,
) -> list[list[int]]:
    """Continue each prompt by up to ``max_new_tokens`` tokens; return the new token ids, one list per prompt.

    Args:
        model: a ``GPT``; run in eval mode under ``torch.inference_mode`` (its train mode is restored afterwards).
        prompts: a batch of prompts, each a non-empty list of token ids, of any lengths (they are left-padded);
            a single list of ints is a batch of one; a (B, T) tensor is B prompts of T tokens.
        max_new_tokens: the most tokens to generate per prompt. Fewer when the context fills up: generation stops
            once prompt + new tokens would exceed ``block_size`` (the longest prompt counts for the whole batch).
        temperature: divides the logits before sampling; 0 means greedy decoding (argmax; top-k/top-p then unused).
        top_k: sample only among the k most likely tokens; 0 = all.
        top_p: sample only among the smallest set of most likely tokens whose probability reaches top_p (nucleus
            sampling; always at least one token); 1.0 = all.
        repetition_penalty: CTRL's penalty (> 1 discourages) on every token already in the prompt or generated;
            1.0 = off. Applied before greedy and sampling alike.
        stop_tokens: ids that end a sequence when it emits one (e.g. end-of-text). The stop token itself is NOT
            included in the output; the other sequences of the batch carry on.
        seed: seeds a local ``torch.Generator`` for the draws, so the same seed gives the same tokens; None draws a
            fresh seed. The global RNG is never used.
        use_cache: keep keys and values in a preallocated KV cache (fast); False recomputes the whole sequence at
            every step (the slow reference, for tests and benchmarks).
        pad_id: the id used to left-pad shorter prompts; the attention mask hides it, so any valid id will do.
        stream: called after every step with a list of one entry per prompt: the new token id, or None where that
            sequence has stopped (for printing as tokens arrive). ``stream_generate`` is the iterator version.

    Raises:
        ValueError: an empty prompt, a token id outside the vocabulary, a prompt longer than ``block_size``, or an
            out-of-range sampling setting.
    """
    out: list[list[int]] = [[] for _ in _as_batch(prompts)]
    for new in stream_generate(
        model, prompts, max_new_tokens, temperature=temperature, top_k=top_k, top_p=top_p,
        repetition_penalty=repetition_penalty, stop_tokens=stop_tokens, seed=seed, use_cache=use_cache,
        pad_id=pad_id,
    ):  # fmt: skip
        for row, token in enumerate(new):
            if token is not None:
                out[row].append(token)
        if stream is not None:
            stream(new)
    return out

"""Continuous batching: many sequences decode together, and new ones join between steps instead of waiting.

A server that runs one request at a time leaves the machine idle while the model reads one token per sequence:
decoding is a (1, d) times (d, d) product per layer, bound by memory, not arithmetic. Decoding B sequences in one
forward pass costs little more than one (the weights are read once for all B rows), so throughput grows with B.
Static batching (wait for a batch, run it to the end) makes a new request wait for the longest sequence in flight;
continuous batching (Yu et al. 2022, "Orca: A Distributed Serving System for Transformer-Based Generative Models")
admits new sequences at every step and retires finished ones at once.

This module keeps the batch the way ``model/generate.py`` keeps one: left-padded, one KV cache for all rows, each
row's positions starting at 0 at its first real token and an attention mask hiding the padding. What it adds:

- ``add``: prefill new prompts (left-padded among themselves), then merge their cache into the running one,
  right-aligned: whichever side is shorter gets more left padding, so every row's next token is still the last
  column.
- ``retire``: drop finished rows, then drop the leading columns that are padding in every remaining row, so the
  cache never grows past the longest live sequence (and that one never past the model's context).
- ``step``: feed each row its newest token, one forward pass for all.

Sampling is per row (each request has its own temperature, top-k, top-p, repetition penalty and seeded generator),
with exactly the operations of ``generate.py``, so a request decoded in a batch gets the tokens ``generate`` gives
for its prompt alone: the exactness test of the server rests on that.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from ..model.generate import apply_repetition_penalty, left_pad, padded_mask, padded_positions, sample_next
from ..model.kv_cache import KVCache


@dataclass(frozen=True)
class Sampling:
    """How one request picks its tokens (the arguments of ``generate.generate``)."""

    temperature: float = 1.0
    top_k: int = 0
    top_p: float = 1.0
    repetition_penalty: float = 1.0
    seed: int | None = None

    def check(self) -> None:
        if self.temperature < 0 or self.top_k < 0 or not 0 < self.top_p <= 1 or self.repetition_penalty <= 0:
            raise ValueError(
                "need temperature >= 0, top_k >= 0, 0 < top_p <= 1, repetition_penalty > 0; got "
                f"{self.temperature}, {self.top_k}, {self.top_p}, {self.repetition_penalty}"
            )

    @property
    def greedy(self) -> bool:
        return self.temperature == 0 and self.repetition_penalty == 1.0


@dataclass(eq=False)
class Row:
    """One sequence in the batch: its request's settings and what it has produced so far."""

    prompt: list[int]
    limit: int  # the most tokens it may produce: max_tokens, or fewer where the context runs out
    sampling: Sampling
    stop: frozenset[int]
    owner: object = None  # whatever the caller wants back with the row's tokens (the scheduler's request)
    produced: int = 0
    finished: str | None = None  # "stop" (a stop token) or "length" (limit reached)
    generator: torch.Generator | None = None
    seen: torch.Tensor | None = None  # (V,) bool, tokens in the sequence, for the repetition penalty
    extra: dict = field(default_factory=dict)


class DecodeBatch:
    """The running batch: rows, their (B,) left padding, the (B, V) logits of their next token, one KV cache."""

    def __init__(self, model, max_rows: int):
        self.model = model
        self.max_rows = max_rows
        self.rows: list[Row] = []
        self.cache: KVCache | None = None
        self.pad: torch.Tensor | None = None  # (B,) padding columns at the left of each row
        self.logits: torch.Tensor | None = None  # (B, V) fp32 logits for each row's next token
        self.device = model.lm_head.weight.device

    def __len__(self) -> int:
        return len(self.rows)

    @property
    def width(self) -> int:
        """Columns in the cache: the longest live sequence (padding included for the others)."""
        return self.cache.length if self.cache is not None else 0

    def new_row(self, prompt: list[int], max_tokens: int, sampling: Sampling, stop, owner=None) -> Row:
        """Check a request against the model (as ``stream_generate`` does) and make its row."""
        cfg = self.model.config
        sampling.check()
        if not prompt:
            raise ValueError("the prompt has no tokens")
        if any(not 0 <= t < cfg.vocab_size for t in prompt):
            raise ValueError(f"prompt token ids must be in [0, {cfg.vocab_size})")
        if len(prompt) > cfg.block_size:
            raise ValueError(f"the prompt has {len(prompt)} tokens; the model's context is {cfg.block_size}")
        limit = min(max_tokens, cfg.block_size - len(prompt) + 1)  # the rule of stream_generate for one prompt
        generator = torch.Generator(device=self.device)
        if sampling.seed is None:
            generator.seed()
        else:
            generator.manual_seed(sampling.seed)
        seen = None
        if sampling.repetition_penalty != 1.0:
            seen = torch.zeros(cfg.vocab_size, dtype=torch.bool, device=self.device)
            seen[torch.as_tensor(prompt, device=self.device)] = True
        return Row(list(prompt), limit, sampling, frozenset(stop), owner, generator=generator, seen=seen)

    # ------------------------------------------------------------------------------------------ joining

    @torch.inference_mode()
    def add(self, rows: list[Row]) -> None:
        """Prefill ``rows`` (left-padded among themselves) and merge them into the running batch."""
        rows = [r for r in rows if r.limit > 0]
        if not rows:
            return
        model = self.model
        width = max(len(r.prompt) for r in rows)
        ids, pad = left_pad([r.prompt for r in rows], 0, self.device)  # (b, w), (b,)
        cache = self._empty_cache(len(rows), 0)  # room to grow to the context: it may become the running cache
        padded = bool(pad.any())
        positions = padded_positions(pad, 0, width) if padded else None
        mask = padded_mask(pad, width, width) if padded else None
        h = model.hidden_states(ids, positions, mask, cache)  # (b, w, d)
        logits = model.lm_head(h[:, -1]).float()  # (b, V)
        if self.cache is None:
            self.rows, self.cache, self.pad, self.logits = rows, cache, pad, logits
            return
        # Right-align both caches in a common width; the shorter side gets the extra left padding.
        common = max(self.width, width)
        merged = self._empty_cache(len(self.rows) + len(rows), common)
        old_b = len(self.rows)
        for layer in range(len(merged.keys)):
            for new_t, old_t, add_t in (
                (merged.keys[layer], self.cache.keys[layer], cache.keys[layer]),
                (merged.values[layer], self.cache.values[layer], cache.values[layer]),
            ):
                new_t[:old_b, :, common - self.width : common] = old_t[:, :, : self.width]  # (B, Hkv, T, hd)
                new_t[old_b:, :, common - width : common] = add_t[:, :, :width]
        merged.length = common
        self.pad = torch.cat([self.pad + (common - self.width), pad + (common - width)])
        self.cache = merged
        self.rows = self.rows + rows
        self.logits = torch.cat([self.logits, logits])

    def _empty_cache(self, batch: int, length: int) -> KVCache:
        """A cache for ``batch`` rows with room to grow to the model's context (columns beyond ``length``)."""
        cache = self.model.new_cache(batch, self.model.config.block_size)
        cache.length = length
        return cache

    # ------------------------------------------------------------------------------------------ one step

    def sample(self) -> list[tuple[Row, int | None]]:
        """Pick each row's next token from its logits; returns (row, token) pairs, token None when the row stopped
        on a stop token. Rows reaching their limit or a stop token are marked finished (``retire`` removes them)."""
        logits = self.logits  # (B, V)
        tokens: list[int] = [0] * len(self.rows)
        greedy = [i for i, r in enumerate(self.rows) if r.sampling.greedy]
        if greedy:
            picked = logits[greedy].argmax(dim=-1).tolist()  # one batched argmax for the plain greedy rows
            for i, token in zip(greedy, picked):
                tokens[i] = token
        for i, row in enumerate(self.rows):
            if row.sampling.greedy:
                continue
            s = row.sampling
            row_logits = apply_repetition_penalty(logits[i : i + 1], None if row.seen is None else row.seen[None],
                                                  s.repetition_penalty)  # fmt: skip
            tokens[i] = int(sample_next(row_logits, s.temperature, s.top_k, s.top_p, row.generator)[0])
        out: list[tuple[Row, int | None]] = []
        for row, token in zip(self.rows, tokens):
            if token in row.stop:
                row.finished = "stop"  # the stop token ends the sequence and is not output
                out.append((row, None))
                continue
            row.produced += 1
            if row.seen is not None:
                row.seen[token] = True
            if row.produced >= row.limit:
                row.finished = "length"
            row.extra["next"] = token
            out.append((row, token))
        return out

    @torch.inference_mode()
    def retire(self) -> list[Row]:
        """Remove finished (or cancelled) rows and the padding columns every remaining row shares."""
        gone = [r for r in self.rows if r.finished is not None]
        if not gone:
            return []
        keep = [i for i, r in enumerate(self.rows) if r.finished is None]
        if not keep:
            self.rows, self.cache, self.pad, self.logits = [], None, None, None
            return gone
        index = torch.tensor(keep, device=self.device)
        pad = self.pad[index]
        drop = int(pad.min())  # leading columns that are padding in every remaining row
        length = self.width - drop
        cache = self._empty_cache(len(keep), length)
        for layer in range(len(cache.keys)):
            cache.keys[layer][:, :, :length] = self.cache.keys[layer][index, :, drop : self.width]
            cache.values[layer][:, :, :length] = self.cache.values[layer][index, :, drop : self.width]
        self.rows = [self.rows[i] for i in keep]
        self.cache, self.pad, self.logits = cache, pad - drop, self.logits[index]
        return gone

    @torch.inference_mode()
    def step(self) -> None:
        """Feed every live row its newest token (one forward pass) and keep the logits of the token after it."""
        ids = torch.tensor([[r.extra["next"]] for r in self.rows], device=self.device)  # (B, 1)
        t = self.width + 1  # columns once the new token is in
        padded = bool(self.pad.any())
        positions = padded_positions(self.pad, t - 1, t) if padded else None
        mask = padded_mask(self.pad, 1, t) if padded else None
        h = self.model.hidden_states(ids, positions, mask, self.cache)  # (B, 1, d)
        self.logits = self.model.lm_head(h[:, -1]).float()  # (B, V)

"""Position encodings past the trained context: four small GPTs, identical but for how they are told where a token is.

Section 1.4 of the manual describes learned absolute positions (GPT-2), sinusoidal positions (Vaswani et al. 2017,
"Attention Is All You Need"), rotary embeddings (Su et al. 2021, "RoFormer") and no positional encoding at all
(Haviv et al. 2022, "Transformer Language Models without Positional Encodings Still Learn Positional Information").
This experiment trains one model with each (``GPTConfig.pos_encoding``), from the same initial weights, on the same
batches, for the same number of steps, with a context of ``block_size`` tokens; then measures the mean validation
loss at every position of sequences ``eval_factor`` times longer than that.

Past the trained context the encodings differ in kind. A learned table has no row for position ``block_size``, so
that model cannot even be run there. Sinusoidal and rotary encodings are formulas that give every position a code,
and a model without positions has nothing to extend, so those three are rebuilt with the longer context and the same
weights. Each model is also run with a sliding window of its own context over the same targets (what one does with a
fixed-context model), so "full context minus window" measures, paired, what the unseen positions did. Press et al.
(2022, "Train Short, Test Long: Attention with Linear Biases Enables Input Length Extrapolation") found that
sinusoidal and rotary models degrade past their training length; Kazemnejad et al. (2023, "The Impact of Positional
Encoding on Length Generalization in Transformers") found models without positions extrapolate better on small
tasks. This is one small run on one corpus, not a replication of either: the numbers say what happened here.

Run it with ``python -m scratchllm.book.experiments.positions --out docs/figures`` (``--full`` for a longer run).
"""

from __future__ import annotations

import argparse
import math
import random
import time
from dataclasses import asdict, replace
from pathlib import Path

import torch
import torch.nn.functional as F

from ...data import CorpusConfig, open_corpus, require_nonempty
from ...model import GPT, GPTConfig, num_params
from ...tokenizer import Tokenizer
from .output import save_figure, write_outputs

ENCODINGS = ("learned", "sinusoidal", "rope", "none")
SPECIAL = "<|endoftext|>"
# quick: about 1.5 minutes on 2 idle CPU cores; full: 2.5 times the steps on 4 times the text, every val window.
SETTINGS = {
    True: dict(steps=800, train_chars=3_000_000, eval_windows=256),
    False: dict(steps=2000, train_chars=12_000_000, eval_windows=0),  # 0: every window the val split holds
}


def corpus_slice(split: str, max_chars: int, max_documents: int = 0) -> list[str]:
    """Documents of a split of the default corpus in a fixed shuffled order, until ``max_chars`` characters (0: all).

    The corpus comes sorted by file path; a slice from the front would be the modules from ``__future__`` to
    ``asyncio`` only. A shuffle with a fixed seed (the same for every run, whatever the model's seed) makes the
    slice a sample of the whole library.
    """
    docs = require_nonempty(open_corpus(CorpusConfig(split=split, max_documents=max_documents)), f"the {split} split")
    texts = [doc.text for doc in docs]
    random.Random(0).shuffle(texts)
    total = 0
    for i, text in enumerate(texts):
        total += len(text)
        if max_chars and total >= max_chars:
            return texts[: i + 1]
    return texts


def token_stream(tok: Tokenizer, texts: list[str]) -> torch.Tensor:
    """All texts as one (N,) stream of ids, each document opened by the special token, as in the token shards."""
    bos = tok.special_tokens[SPECIAL]
    ids: list[int] = []
    for text in texts:
        ids.append(bos)
        ids.extend(tok.encode(text, disallowed_special=()))  # a literal "<|endoftext|>" in the source is just text
    return torch.tensor(ids, dtype=torch.long)


def train(model: GPT, tokens: torch.Tensor, steps: int, batch_size: int, lr: float, seed: int) -> list[float]:
    """A minimal AdamW loop on random windows of ``tokens``; returns the loss of every step.

    Not the project's trainer: just enough to compare encodings fairly. The window generator is seeded, so every
    model sees the same batches in the same order.
    """
    T = model.config.block_size
    gen = torch.Generator().manual_seed(seed)
    decay = [p for p in model.parameters() if p.dim() >= 2]  # matrices and tables; norms' scales are not decayed
    rest = [p for p in model.parameters() if p.dim() < 2]
    groups = [{"params": decay, "weight_decay": 0.1}, {"params": rest, "weight_decay": 0.0}]
    opt = torch.optim.AdamW(groups, lr=lr, betas=(0.9, 0.95))
    warmup = max(1, steps // 10)
    losses = []
    model.train()
    for step in range(steps):
        # Linear warm-up, then cosine decay to a tenth: the usual shape, so that a short run ends near a minimum.
        progress = max(0.0, (step - warmup) / max(1, steps - warmup))
        scale = min(1.0, (step + 1) / warmup) * (0.1 + 0.45 * (1 + math.cos(math.pi * progress)))
        for group in opt.param_groups:
            group["lr"] = lr * scale
        starts = torch.randint(0, len(tokens) - T, (batch_size,), generator=gen)  # (B,)
        batch = torch.stack([tokens[s : s + T + 1] for s in starts.tolist()])  # (B, T + 1)
        loss = model(batch[:, :-1], batch[:, 1:])  # inputs (B, T), targets shifted by one
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        losses.append(loss.item())
    return losses


def lengthen(model: GPT, block_size: int) -> GPT:
    """The same weights in a model with a longer context.

    Works for sinusoidal, rotary and no positions: none of them has a parameter whose shape depends on block_size
    (the sinusoidal table and the RoPE frequencies are non-persistent buffers that ``init_weights`` recomputes for
    the new length), so the state dicts match exactly. A learned model's ``pos.weight`` is ``(block_size, d)``: the
    strict load refuses it, and there is nothing to put in the missing rows.
    """
    longer = GPT.build(replace(model.config, block_size=block_size))
    longer.load_state_dict(model.state_dict())  # strict: every parameter, same shapes
    return longer.eval()


@torch.no_grad()
def loss_per_position(model: GPT, windows: torch.Tensor, batch_size: int = 32) -> torch.Tensor:
    """(N, T + 1) token windows -> (N, T) cross-entropy of the prediction at every position of every window."""
    model.eval()
    out = []
    for chunk in windows.split(batch_size):
        logits = model(chunk[:, :-1])  # (n, T, V)
        out.append(F.cross_entropy(logits.transpose(1, 2), chunk[:, 1:], reduction="none"))  # (n, T)
    return torch.cat(out)


def sliding_window_loss(model: GPT, windows: torch.Tensor) -> torch.Tensor:
    """(N, L + 1) windows -> (N, L - T) losses at positions T..L-1 when the model sees at most its own T tokens.

    This is how a model is run on text longer than its context: slide a T-token window forward by T/2 tokens at a
    time and score only the window's second half, so every prediction has between T/2 and T - 1 tokens of context
    (the strided evaluation of Hugging Face's perplexity guide). It gives every model, the learned one included, a
    score on the same targets as the full-context run, in the regime it was trained in.
    """
    T, L = model.config.block_size, windows.shape[1] - 1
    stride = T // 2
    parts = []
    for end in range(T + stride, L + 1, stride):  # the window holds inputs end-T..end-1
        losses = loss_per_position(model, windows[:, end - T : end + 1])  # (N, T)
        parts.append(losses[:, -stride:])  # (N, stride): positions end-stride..end-1
    return torch.cat(parts, dim=1)  # (N, L - T)


def _mean_se(x: torch.Tensor) -> dict[str, float]:
    """Mean over windows of a (N,) per-window quantity, and its standard error (windows taken as independent)."""
    return {"loss": round(x.mean().item(), 4), "se": round(x.std().item() / len(x) ** 0.5, 4)}


def run(
    quick: bool = True,
    steps: int | None = None,
    seed: int = 0,
    *,
    n_layer: int = 2,
    d_model: int = 128,
    n_head: int = 4,
    block_size: int = 64,
    eval_factor: int = 4,
    vocab_size: int = 1024,
    batch_size: int = 16,
    lr: float = 3e-3,
    train_chars: int | None = None,
    eval_windows: int | None = None,
    val_documents: int = 0,
) -> dict:
    """Train one model per encoding on the default corpus's train split; measure loss per position on its val split.

    ``quick`` picks the step count, the amount of training text and the number of evaluation windows from
    ``SETTINGS``; ``steps``, ``train_chars`` and ``eval_windows`` override them. The tokenizer (``vocab_size``) is
    trained here on the same training text. Evaluation windows are consecutive, non-overlapping stretches of
    ``eval_factor * block_size + 1`` tokens of the val split, the same for every model. Each model is scored three
    ways: positions 0..T-1 as trained; positions T..L-1 with a sliding T-token window; and, where the encoding
    allows, positions T..L-1 with the whole preceding context (extrapolation).
    """
    settings = SETTINGS[quick]
    steps = settings["steps"] if steps is None else steps
    train_chars = settings["train_chars"] if train_chars is None else train_chars
    eval_windows = settings["eval_windows"] if eval_windows is None else eval_windows
    if block_size % 2 or eval_factor < 2:
        raise ValueError("block_size must be even and eval_factor at least 2")
    start = time.perf_counter()

    train_texts = corpus_slice("train", train_chars)
    tok = Tokenizer.train(train_texts, vocab_size, "gpt4", [SPECIAL])
    train_tokens = token_stream(tok, train_texts)  # (N_train,)
    val_tokens = token_stream(tok, corpus_slice("val", 0, val_documents))  # (N_val,)
    T, L = block_size, eval_factor * block_size
    n = (len(val_tokens) - 1) // L
    n = min(n, eval_windows) if eval_windows else n
    if n < 2:
        raise ValueError(f"the val split has {len(val_tokens)} tokens, fewer than two windows of {L + 1}")
    windows = val_tokens[: n * L + 1].unfold(0, L + 1, L)  # (n, L + 1): each window's last token starts the next
    seconds_data = time.perf_counter() - start

    base = GPTConfig(vocab_size=tok.vocab_size, block_size=T, n_layer=n_layer, n_head=n_head, d_model=d_model)
    # Every model starts from the same weights: one initialization, loaded into each (a learned table, the only
    # extra parameter, keeps its own initialization).
    init = GPT.build(replace(base, pos_encoding="none"))
    init.init_weights(seed)
    rows, curves = [], {}
    for enc in ENCODINGS:
        t0 = time.perf_counter()
        torch.manual_seed(seed)
        model = GPT.build(replace(base, pos_encoding=enc))
        model.load_state_dict(init.state_dict(), strict=False)
        losses = train(model, train_tokens, steps, batch_size, lr, seed)
        seconds_train = time.perf_counter() - t0
        in_context = loss_per_position(model, windows[:, : T + 1])  # (n, T)
        window = sliding_window_loss(model, windows)  # (n, L - T)
        row = {
            "pos_encoding": enc,
            "params": num_params(model.config),
            "final_train_loss": round(sum(losses[-20:]) / len(losses[-20:]), 4),  # mean of the last 20 steps
            "seconds_train": round(seconds_train, 1),
            "in_context": _mean_se(in_context.mean(1)),
            "beyond_window": _mean_se(window.mean(1)),
        }
        curves[enc] = {"in_context": in_context.mean(0).tolist(), "window": window.mean(0).tolist()}
        if "pos.weight" in model.state_dict():  # learned: a (T, d) table, no vector for position T or later
            row["note"] = f"cannot run past position {T - 1}: pos.weight has only {T} rows"
            row["beyond_full"] = row["full_minus_window"] = None
            row["full_by_span"] = {}
        else:
            full = loss_per_position(lengthen(model, L), windows)  # (n, L)
            beyond = full[:, T:]  # (n, L - T): the same targets as ``window``, with all the context before them
            row["note"] = ""
            row["beyond_full"] = _mean_se(beyond.mean(1))
            # Paired: the same targets scored two ways, so the difference is far less noisy than either loss.
            diff = _mean_se(beyond.mean(1) - window.mean(1))
            row["full_minus_window"] = {"diff": diff["loss"], "se": diff["se"]}
            spans = [(T, 2 * T), (2 * T, L)] if L > 2 * T else [(T, L)]
            row["full_by_span"] = {f"{a}-{b - 1}": _mean_se(full[:, a:b].mean(1)) for a, b in spans}
            curves[enc]["full"] = full.mean(0).tolist()
        rows.append(row)
    for c in curves.values():
        for k in c:
            c[k] = [round(x, 4) for x in c[k]]
    return {
        "corpus": "stdlib: shuffled slice of the train split for tokenizer and models, val split for evaluation",
        "model": {k: v for k, v in asdict(base).items() if k != "pos_encoding"},
        "trained_context": T,
        "eval_length": L,
        "steps": steps,
        "batch_size": batch_size,
        "lr": lr,
        "seed": seed,
        "quick": quick,
        "train_documents": len(train_texts),
        "train_tokens": len(train_tokens),
        "val_tokens": len(val_tokens),
        "eval_windows": n,
        "torch_threads": torch.get_num_threads(),
        "seconds_data": round(seconds_data, 1),
        "seconds_total": round(time.perf_counter() - start, 1),
        "log_vocab": round(math.log(tok.vocab_size), 4),
        "results": rows,
        "loss_per_position": curves,
    }


def table(result: dict) -> str:
    """The results as a Markdown table: mean val loss (nats per token, ± standard error over windows)."""
    T, L = result["trained_context"], result["eval_length"]
    head = [
        "encoding",
        "params",
        "train loss (last 20 steps)",
        f"val loss 0-{T - 1} (in context)",
        f"val loss {T}-{L - 1}, sliding {T}-token window",
        f"val loss {T}-{L - 1}, full context",
        "full - window",
    ]
    rows = ["| " + " | ".join(head) + " |", "|---|" + "--:|" * (len(head) - 1)]
    for r in result["results"]:
        cells = [r["pos_encoding"], f"{r['params']:,}", f"{r['final_train_loss']:.3f}"]
        for key in ("in_context", "beyond_window", "beyond_full"):
            v = r[key]
            cells.append(f"{v['loss']:.3f} ± {v['se']:.3f}" if v else "cannot run")
        d = r["full_minus_window"]
        cells.append(f"{d['diff']:+.3f} ± {d['se']:.3f}" if d else "n/a")
        rows.append("| " + " | ".join(cells) + " |")
    return "\n".join(rows)


def _smooth(curve: list[float], offset: int, length: int, bins: int = 40) -> tuple[list[float], list[float]]:
    """Mean loss over log-spaced bins of positions (one position per bin at the start, wider bins later where the
    per-position means are noisy and the curve is flat). ``curve`` holds positions offset..offset+len-1 of a
    sequence of ``length``; returns (x, y) with x the bin's mean position counted from 1."""
    edges = sorted({round(x) - 1 for x in torch.logspace(0, math.log10(length), bins + 1).tolist()} | {length})
    xs, ys = [], []
    for a, b in zip(edges, edges[1:]):
        a, b = max(a, offset), min(b, offset + len(curve))
        if a < b:
            xs.append((a + b + 1) / 2)  # positions a..b-1, counted from 1
            ys.append(sum(curve[a - offset : b - offset]) / (b - a))
    return xs, ys


def plot(result: dict, path: str | Path) -> None:
    """Two panels. Left: mean val loss against position (log scale), solid with the whole context, dotted with a
    sliding window of the trained length. Right: the paired difference of the two past the trained context."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path = Path(path)
    T, L = result["trained_context"], result["eval_length"]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4.2), gridspec_kw={"width_ratios": [3, 2]})
    markers = {"learned": "o", "sinusoidal": "s", "rope": "^", "none": "d"}
    for i, (enc, c) in enumerate(result["loss_per_position"].items()):
        color, marker = f"C{i}", markers.get(enc)
        full = c.get("full", c["in_context"])
        label = enc if "full" in c else f"{enc} (cannot run past {T})"
        xs, ys = _smooth(full, 0, L)
        ax1.plot(xs, ys, "-", marker=marker, color=color, markersize=3, linewidth=1.3, label=label)
        xs, ys = _smooth(c["window"], T, L)
        ax1.plot(xs, ys, ":", color=color, linewidth=1.5)
        if "full" in c:
            diff = [f - w for f, w in zip(c["full"][T:], c["window"])]  # positions T..L-1
            width = max(1, T // 4)  # bins of T/4 positions: per-position differences are noisy
            xs = [T + a + (width + 1) / 2 for a in range(0, len(diff), width)]
            ys = [sum(diff[a : a + width]) / len(diff[a : a + width]) for a in range(0, len(diff), width)]
            ax2.plot(xs, ys, "-", marker=marker, color=color, markersize=3, linewidth=1.3, label=enc)
    ax1.plot([], [], ":", color="gray", label=f"sliding {T}-token window")
    ax1.axvline(T + 0.5, color="gray", linestyle="--", linewidth=1)
    ax1.text(T + 3, 0.98, f"trained\ncontext ({T})", transform=ax1.get_xaxis_transform(), va="top", fontsize=8)
    ax1.set(
        xscale="log",
        xlabel="position in the sequence (1 = first token)",
        ylabel="mean val loss (nats/token)",
        title=f"Loss per position: trained on {T} tokens, run on {L}",
    )
    ax1.legend(fontsize=8, loc="center right")
    ax2.axhline(0, color="gray", linewidth=1)
    ax2.set(
        xlabel="position in the sequence",
        ylabel="loss with full context - loss with window",
        title="Full context minus window",
    )
    ax2.legend(fontsize=8)
    for ax in (ax1, ax2):
        ax.grid(alpha=0.3)
    fig.tight_layout()
    save_figure(fig, path)


def write(result: dict, out_dir: str | Path) -> list[Path]:
    """Save ``positions.json``, ``.md`` and ``.png`` into ``out_dir``."""
    return write_outputs("positions", result, table(result), plot, out_dir)


def main() -> None:
    """Run, print the table, and write the results when ``--out`` is given."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", help="directory for positions.json, .md and .png")
    parser.add_argument(
        "--full", action="store_true", help="the longer run (2,000 steps, 12M characters of text, every val window)"
    )
    parser.add_argument("--steps", type=int, help="training steps per model (default: by mode)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    result = run(quick=not args.full, steps=args.steps, seed=args.seed)
    print(table(result))
    print(
        f"{result['steps']} steps x {result['batch_size']} x {result['trained_context']} tokens per model; "
        f"{result['eval_windows']} val windows of {result['eval_length']}; CPU threads={result['torch_threads']}; "
        f"{result['seconds_total']:.0f} s"
    )
    if args.out:
        for path in write(result, args.out):
            print(f"wrote {path}")


if __name__ == "__main__":
    main()

"""Vocabulary scaling: how compression, training time and the embedding's share of parameters grow with vocab size.

A bigger vocabulary packs more bytes into each token (the model sees more text per context window and per FLOP) but
costs ``vocab_size x d_model`` parameters in the embedding, and as many again in an untied output head. For a small
model that cost dominates: the experiment puts numbers on the trade-off for the default corpus.

One training run gives every size at once: BPE is greedy, so the first ``k`` merges of a 32,768-token vocabulary are
exactly the merges of a ``256 + k`` vocabulary trained on the same data. We train once to the largest size, note the
elapsed time when each size is reached, and evaluate each prefix on the held-out split.

Parameter counts use the standard estimate for a GPT block stack, ``12 * n_layer * d_model**2`` (attention 4d^2,
MLP 8d^2; Kaplan et al. 2020, "Scaling Laws for Neural Language Models"), plus ``vocab_size * d_model`` for the
embedding and again for an untied head.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from pathlib import Path

from ...data import CorpusConfig, open_corpus, require_nonempty
from ...model.config import PRESETS
from ...tokenizer import Tokenizer
from ...tokenizer.stats import measure
from .output import save_figure, write_outputs

SIZES = [512, 1024, 2048, 4096, 8192, 16384, 32768]
SPECIAL = "<|endoftext|>"
# (n_layer, d_model): the laptop preset `tiny` as it is now, and GPT-2 small.
MODEL_SHAPES = {
    "tiny": (PRESETS["tiny"].n_layer, PRESETS["tiny"].d_model),
    "gpt2-small": (PRESETS["gpt2"].n_layer, PRESETS["gpt2"].d_model),
}


@dataclass
class SizeResult:
    vocab_size: int
    bytes_per_token: float
    seconds_to_train: float  # chunk counting + merges up to this size, in one run
    used_ids: int
    embedding_share_tied: dict[str, float]  # shape name -> embedding / all parameters (head tied to embedding)
    embedding_share_untied: dict[str, float]  # shape name -> (embedding + head) / all parameters


def embedding_share(vocab_size: int, n_layer: int, d_model: int, tied: bool) -> float:
    """Fraction of a GPT's parameters in its embedding (and head, if untied)."""
    embed = vocab_size * d_model * (1 if tied else 2)
    return embed / (embed + 12 * n_layer * d_model**2)


def run(
    sizes: list[int] = SIZES, pattern: str = "gpt4", max_documents: int = 0, workers: int = 0, progress: bool = False
) -> dict:
    """Train once to ``max(sizes)`` on the default corpus's train split, evaluate every size on its val split."""
    sizes = sorted(sizes)
    train = CorpusConfig(split="train", max_documents=max_documents)
    val_texts = [d.text for d in require_nonempty(open_corpus(CorpusConfig(split="val")), "the validation split")]
    reached: dict[int, float] = {}
    start = time.perf_counter()

    def on_merge(n_merges: int) -> None:
        vocab = 256 + n_merges + 1  # + the one special token
        if vocab in sizes:
            reached[vocab] = time.perf_counter() - start

    texts = (d.text for d in require_nonempty(open_corpus(train), "the training split"))
    full = Tokenizer.train(
        texts, sizes[-1], pattern, [SPECIAL], workers=workers or None, progress=progress, on_merge=on_merge
    )
    results = []
    for vocab in sizes:
        n_merges = min(vocab - 257, len(full.merges))
        tok = Tokenizer(full.merges[:n_merges], full.pattern, {SPECIAL: 256 + n_merges})
        stats = measure(tok, val_texts)
        results.append(
            SizeResult(
                vocab_size=tok.vocab_size,
                bytes_per_token=round(stats.bytes_per_token, 4),
                seconds_to_train=round(reached.get(vocab, float("nan")), 2),
                used_ids=stats.used_ids,
                embedding_share_tied={k: round(embedding_share(vocab, *s, True), 4) for k, s in MODEL_SHAPES.items()},
                embedding_share_untied={
                    k: round(embedding_share(vocab, *s, False), 4) for k, s in MODEL_SHAPES.items()
                },
            )
        )
    report = full.training
    return {
        "corpus": "stdlib (train split for training, val split for bytes per token)",
        "pattern": pattern,
        "train_documents": report.documents,
        "train_characters": report.characters,
        "val_documents": len(val_texts),
        "model_shapes": {k: {"n_layer": s[0], "d_model": s[1]} for k, s in MODEL_SHAPES.items()},
        "results": [asdict(r) for r in results],
    }


def table(result: dict) -> str:
    """The results as a Markdown table."""
    shapes = list(result["model_shapes"])
    head = ["vocab", "bytes/token", "train s", "ids used"] + [f"emb share {s} (tied/untied)" for s in shapes]
    rows = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in result["results"]:
        shares = [
            f"{100 * r['embedding_share_tied'][s]:.1f}% / {100 * r['embedding_share_untied'][s]:.1f}%" for s in shapes
        ]
        cells = [f"{r['vocab_size']:,}", f"{r['bytes_per_token']:.2f}", f"{r['seconds_to_train']:.1f}"]
        rows.append("| " + " | ".join(cells + [f"{r['used_ids']:,}"] + shares) + " |")
    return "\n".join(rows)


def plot(result: dict, path: Path) -> None:
    """Two panels: compression against vocabulary size, and the embedding's share of the parameters."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rs = result["results"]
    v = [r["vocab_size"] for r in rs]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 3.8))
    ax1.plot(v, [r["bytes_per_token"] for r in rs], "o-")
    ax1.set(xscale="log", xlabel="vocabulary size", ylabel="bytes per token (val split)", title="Compression")
    ax1.set_xticks(v, [f"{x // 1024}k" if x >= 1024 else str(x) for x in v])
    for shape in result["model_shapes"]:
        ax2.plot(v, [100 * r["embedding_share_tied"][shape] for r in rs], "o-", label=f"{shape}, tied head")
        ax2.plot(v, [100 * r["embedding_share_untied"][shape] for r in rs], "s--", label=f"{shape}, untied head")
    ax2.set(xscale="log", xlabel="vocabulary size", ylabel="% of parameters", title="Embedding + head share")
    ax2.set_xticks(v, [f"{x // 1024}k" if x >= 1024 else str(x) for x in v])
    ax2.legend(fontsize=8)
    fig.tight_layout()
    save_figure(fig, path)


def write(result: dict, out_dir: str | Path) -> list[Path]:
    """Save ``vocab_scaling.json``, ``.md`` and ``.png`` into ``out_dir``."""
    return write_outputs("vocab_scaling", result, table(result), plot, out_dir)

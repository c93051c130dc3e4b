"""The presets at a glance: shape, exact parameter count and training FLOPs per token, computed from the configs.

``python -m scratchllm.book.experiments.model_sizes`` prints the Markdown table that chapter 3 shows; the counts come
from ``num_params`` / ``flops_per_token``, which the tests check against the built models.
"""

from __future__ import annotations

from ...model import PRESETS, flops_per_token, num_params


def table() -> str:
    head = "| preset | layers | d_model | heads (kv) | context | vocab | parameters | non-embedding | GFLOPs/token |"
    rows = [head, "|---|---|---|---|---|---|---|---|---|"]
    for name, cfg in PRESETS.items():
        seq = min(cfg.block_size, 8192)
        rows.append(
            f"| `{name}` | {cfg.n_layer} | {cfg.d_model} | {cfg.n_head} ({cfg.kv_heads}) | {cfg.block_size:,} | "
            f"{cfg.vocab_size:,} | {num_params(cfg) / 1e6:,.1f} M | {num_params(cfg, embedding=False) / 1e6:,.1f} M"
            f" | {flops_per_token(cfg, seq) / 1e9:.2f} (T={seq:,}) |"
        )
    return "\n".join(rows)


def main() -> None:
    print(table())


if __name__ == "__main__":
    main()

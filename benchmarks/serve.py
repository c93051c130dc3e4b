"""Serving benchmark: our continuous-batching scheduler against one-request-at-a-time serving, same server code.

Peer: the same ``scratchllm serve`` with ``--max-batch 1``, which decodes one request at a time from the same
bounded queue (what a server without batching does; llama.cpp's server with one slot works this way). Both servers
run as separate processes on this machine, with the same model (the ``tiny`` preset: 4 layers x 192, random weights
unless ``--checkpoint`` names a trained one), the same tokenizer and the same requests: streamed ``/v1/completions``
with greedy decoding, a prompt of about ``--prompt-tokens`` tokens from the embedded corpus and ``--max-tokens`` new
tokens. Greedy answers must be identical from both servers (they are checked), so both do the same work.

For each concurrency (1, 4, 16 clients, each sending its next request when the last one is answered) it prints
requests per second, generated tokens per second, and the median time to first token (request sent -> first text
chunk received), then the ratios batched / one-at-a-time. Each setting runs ``--repeats`` times alternating the two
servers (and which goes first); the best run counts (the least disturbed by other load on a shared machine).

    python benchmarks/serve.py [--quick] [--checkpoint DIR] [--device cpu|cuda]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import torch

from scratchllm.data import CorpusConfig, open_corpus
from scratchllm.model import GPT, GPTConfig
from scratchllm.tokenizer import Tokenizer
from scratchllm.train.checkpoint import load_checkpoint, save_checkpoint


def tiny_checkpoint(directory: Path) -> Path:
    """The ``tiny`` preset with random weights and a 2,000-token tokenizer trained on the embedded corpus."""
    texts = [d.text for d in open_corpus(CorpusConfig(split="all", max_documents=100))]
    tok = Tokenizer.train(texts, 2000, special_tokens=["<|endoftext|>"])
    torch.manual_seed(0)
    model = GPT.build(GPTConfig.preset("tiny", vocab_size=tok.vocab_size))
    return save_checkpoint(directory / "tiny", model, tok)


def prompts(tokenizer: Tokenizer, n: int, tokens: int) -> list[str]:
    """``n`` different prompts of about ``tokens`` tokens: consecutive pieces of the corpus's validation split."""
    ids = tokenizer.encode_ordinary("\n".join(d.text for d in open_corpus(CorpusConfig(split="val", max_documents=50))))
    return [tokenizer.decode(ids[i * tokens : (i + 1) * tokens]) for i in range(n)]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(checkpoint: Path, max_batch: int, device: str) -> tuple[subprocess.Popen, str]:
    """``scratchllm serve`` in a subprocess on a free port (another one if that port is taken meanwhile)."""
    for _ in range(3):
        port = free_port()
        cmd = [sys.executable, "-m", "scratchllm", "serve", "--checkpoint", str(checkpoint), "--port", str(port),
               "--max-batch", str(max_batch), "--max-tokens", "1024", "--log-level", "warning",
               "--device", device]  # fmt: skip
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                    return proc, url
            except httpx.HTTPError:
                time.sleep(0.2)
        proc.kill()
    raise RuntimeError(f"the server with --max-batch {max_batch} did not start")


async def one_request(client: httpx.AsyncClient, body: dict) -> tuple[str, float, int]:
    """(text, seconds to the first text chunk, tokens generated) for one streamed completion."""
    start = time.perf_counter()
    first = None
    parts, tokens = [], 0
    async with client.stream("POST", "/v1/completions", json=body) as r:
        r.raise_for_status()
        async for line in r.aiter_lines():
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            event = json.loads(line[6:])
            if event["choices"][0]["text"] and first is None:
                first = time.perf_counter() - start
            parts.append(event["choices"][0]["text"])
            if "usage" in event:
                tokens = event["usage"]["completion_tokens"]
    return "".join(parts), first if first is not None else time.perf_counter() - start, tokens


async def load(url: str, model: str, texts: list[str], concurrency: int, max_tokens: int) -> dict:
    """Send every prompt with ``concurrency`` clients in parallel; requests/s, tokens/s, median TTFT, answers."""
    todo = list(enumerate(texts))
    results: dict[int, tuple[str, float, int]] = {}

    async def client_loop(client):
        while todo:
            i, text = todo.pop(0)
            body = {"model": model, "prompt": text, "max_tokens": max_tokens, "temperature": 0, "stream": True}
            results[i] = await one_request(client, body)

    async with httpx.AsyncClient(base_url=url, timeout=600, limits=httpx.Limits(max_connections=64)) as client:
        start = time.perf_counter()
        await asyncio.gather(*(client_loop(client) for _ in range(concurrency)))
        seconds = time.perf_counter() - start
    answers = [results[i][0] for i in range(len(texts))]
    return {
        "rps": len(texts) / seconds,
        "tps": sum(r[2] for r in results.values()) / seconds,
        "ttft": statistics.median(r[1] for r in results.values()),
        "answers": answers,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", help="a scratchllm checkpoint (default: the tiny preset, random weights)")
    parser.add_argument("--quick", action="store_true", help="fewer requests, 1 repeat")
    parser.add_argument("--prompt-tokens", type=int, default=32)
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    repeats = 1 if args.quick else args.repeats

    with tempfile.TemporaryDirectory() as tmp:
        checkpoint = Path(args.checkpoint) if args.checkpoint else tiny_checkpoint(Path(tmp))
        model, tok = load_checkpoint(checkpoint)
        n_params = sum(p.numel() for p in model.parameters())
        del model
        name = checkpoint.resolve().name
        servers = {"batched (max_batch 16)": start_server(checkpoint, 16, args.device),
                   "one at a time (max_batch 1)": start_server(checkpoint, 1, args.device)}  # fmt: skip
        print(f"model {name}: {n_params / 1e6:.1f}M parameters, device {args.device}, torch threads "
              f"{torch.get_num_threads()}; prompts ~{args.prompt_tokens} tokens, {args.max_tokens} new tokens "
              f"(greedy), streamed /v1/completions")  # fmt: skip
        try:
            rows = []
            for concurrency in (1, 4, 16):
                n = (8 if args.quick else 16) * max(1, concurrency // 2)
                texts = prompts(tok, n, args.prompt_tokens)
                best: dict[str, dict] = {}
                for repeat in range(repeats):
                    order = list(servers.items())[:: 1 if repeat % 2 == 0 else -1]  # who goes first alternates
                    for label, (_, url) in order:
                        r = asyncio.run(load(url, name, texts, concurrency, args.max_tokens))
                        if label not in best or r["rps"] > best[label]["rps"]:
                            best[label] = r
                a, b = (best[label] for label in servers)
                same = a["answers"] == b["answers"]
                rows.append((concurrency, n, a, b, same))
        finally:
            for proc, _ in servers.values():
                proc.terminate()
                proc.wait(timeout=30)

    labels = list(servers)
    print(f"\n{'clients':>7} {'requests':>8}  {'server':<28} {'req/s':>7} {'tokens/s':>9} {'TTFT p50':>9}")
    for concurrency, n, a, b, same in rows:
        for label, r in zip(labels, (a, b)):
            print(f"{concurrency:>7} {n:>8}  {label:<28} {r['rps']:>7.2f} {r['tps']:>9.0f} {r['ttft'] * 1e3:>7.1f}ms")
        print(f"{'':>17} ratio batched / one at a time: req/s {a['rps'] / b['rps']:.2f}x, "
              f"TTFT {a['ttft'] / b['ttft']:.2f}x; identical greedy answers: {same}")  # fmt: skip
        if not same:
            raise SystemExit("the two servers gave different greedy answers")


if __name__ == "__main__":
    main()

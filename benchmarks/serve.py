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

    python benchmarks/serve.py [--quick] [--json PATH] [--checkpoint DIR] [--device cpu|cuda]

``--quick`` sends half as many requests at each concurrency (8, 16 and 64 instead of 16, 32 and 128) and runs each
setting once. ``--json PATH`` also writes every number printed, with the settings, the model and the command line, to
PATH, and the table as Markdown beside it (PATH with suffix ``.md``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shlex
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
from scratchllm.fileio import atomic_write_text
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


SERVERS = {"batched": ("batched (max_batch 16)", 16), "one_at_a_time": ("one at a time (max_batch 1)", 1)}
CLIENTS = (1, 4, 16)


def requests_for(concurrency: int, quick: bool) -> int:
    return (8 if quick else 16) * max(1, concurrency // 2)


def measure(servers: dict, tok: Tokenizer, name: str, args: argparse.Namespace, repeats: int) -> list[dict]:
    """For each concurrency: the best run of each server (by req/s) and whether their greedy answers agree."""
    rows = []
    for concurrency in CLIENTS:
        n = requests_for(concurrency, args.quick)
        texts = prompts(tok, n, args.prompt_tokens)
        best: dict[str, dict] = {}
        for repeat in range(repeats):
            order = list(servers.items())[:: 1 if repeat % 2 == 0 else -1]  # who goes first alternates
            for key, (_, url) in order:
                r = asyncio.run(load(url, name, texts, concurrency, args.max_tokens))
                if key not in best or r["rps"] > best[key]["rps"]:
                    best[key] = r
        a, b = best["batched"], best["one_at_a_time"]
        rows.append({
            "clients": concurrency, "requests": n,
            **{key: {"rps": r["rps"], "tps": r["tps"], "ttft_ms": r["ttft"] * 1e3} for key, r in best.items()},
            "rps_ratio": a["rps"] / b["rps"], "tps_ratio": a["tps"] / b["tps"], "ttft_ratio": a["ttft"] / b["ttft"],
            "identical": a["answers"] == b["answers"],
        })  # fmt: skip
    return rows


def print_rows(rows: list[dict]) -> None:
    print(f"\n{'clients':>7} {'requests':>8}  {'server':<28} {'req/s':>7} {'tokens/s':>9} {'TTFT p50':>9}")
    for row in rows:
        for key, (label, _) in SERVERS.items():
            r = row[key]
            print(f"{row['clients']:>7} {row['requests']:>8}  {label:<28} {r['rps']:>7.2f} {r['tps']:>9.0f} "
                  f"{r['ttft_ms']:>7.1f}ms")  # fmt: skip
        print(f"{'':>17} ratio batched / one at a time: req/s {row['rps_ratio']:.2f}x, "
              f"TTFT {row['ttft_ratio']:.2f}x; identical greedy answers: {row['identical']}")  # fmt: skip
        if not row["identical"]:
            raise SystemExit("the two servers gave different greedy answers")


def markdown(rows: list[dict]) -> str:
    lines = ["| clients | requests | batched req/s | one at a time req/s | ratio | batched TTFT p50 "
             "| one at a time TTFT p50 |", "|---:|---:|---:|---:|---:|---:|---:|"]  # fmt: skip
    for row in rows:
        a, b = row["batched"], row["one_at_a_time"]
        lines.append(f"| {row['clients']} | {row['requests']} | {a['rps']:.2f} | {b['rps']:.2f} "
                     f"| {row['rps_ratio']:.2f}x | {a['ttft_ms']:,.1f} ms | {b['ttft_ms']:,.1f} ms |")  # fmt: skip
    return "\n".join(lines) + "\n"


def write_json(path: str, result: dict, table: str) -> None:
    atomic_write_text(path, json.dumps(result, indent=2) + "\n")
    atomic_write_text(Path(path).with_suffix(".md"), table)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", help="a scratchllm checkpoint (default: the tiny preset, random weights)")
    parser.add_argument("--quick", action="store_true", help="fewer requests, 1 repeat")
    parser.add_argument("--prompt-tokens", type=int, default=32)
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--json", metavar="PATH", help="write the results as JSON here, and a Markdown table beside")
    args = parser.parse_args()
    repeats = 1 if args.quick else args.repeats

    with tempfile.TemporaryDirectory() as tmp:
        checkpoint = Path(args.checkpoint) if args.checkpoint else tiny_checkpoint(Path(tmp))
        model, tok = load_checkpoint(checkpoint)
        n_params = sum(p.numel() for p in model.parameters())
        del model
        name = checkpoint.resolve().name
        servers = {key: start_server(checkpoint, max_batch, args.device) for key, (_, max_batch) in SERVERS.items()}
        print(f"model {name}: {n_params / 1e6:.1f}M parameters, device {args.device}, torch threads "
              f"{torch.get_num_threads()}; prompts ~{args.prompt_tokens} tokens, {args.max_tokens} new tokens "
              f"(greedy), streamed /v1/completions")  # fmt: skip
        try:
            rows = measure(servers, tok, name, args, repeats)
        finally:
            for proc, _ in servers.values():
                proc.terminate()
                proc.wait(timeout=30)

    print_rows(rows)
    if args.json:
        settings = {"quick": args.quick, "prompt_tokens": args.prompt_tokens, "max_tokens": args.max_tokens,
                    "repeats": repeats, "device": args.device, "torch_threads": torch.get_num_threads(),
                    "cpus": os.cpu_count(), "max_batch": SERVERS["batched"][1]}  # fmt: skip
        model_info = {"name": name, "checkpoint": args.checkpoint or "the tiny preset, random weights",
                      "parameters": n_params, "parameters_m": n_params / 1e6, "vocab_size": tok.vocab_size}  # fmt: skip
        result = {"command": shlex.join(["python", "benchmarks/serve.py", *sys.argv[1:]]), "settings": settings,
                  "model": model_info, "load_average": list(os.getloadavg()), "rows": rows}  # fmt: skip
        write_json(args.json, result, markdown(rows))


if __name__ == "__main__":
    main()

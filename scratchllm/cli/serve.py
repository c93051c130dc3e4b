"""`scratchllm chat` and `scratchllm serve`: a model in the terminal, and behind an OpenAI-style HTTP API.

Both load a model as ``scratchllm generate`` does (``--checkpoint DIR`` or ``--hf DIR``); the server imports FastAPI
and uvicorn only when it starts, so the rest of the command line does not pay for them.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from .common import UsageError
from .model import _add_model_source, load_model_and_tokenizer


def _load(args):
    model, tokenizer = load_model_and_tokenizer(args)
    return model.to(args.device).eval(), tokenizer


def cmd_chat(args) -> int:
    from ..serve import ChatSession, ChatSettings, run_repl

    try:
        settings = ChatSettings(args.temperature, args.top_k, args.top_p, args.repetition_penalty, args.max_new_tokens,
                                args.seed, args.system or "")  # fmt: skip
        settings.check()
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    model, tokenizer = _load(args)
    if sys.stdin.isatty():
        import readline  # noqa: F401  (line editing and history for input())
    return run_repl(ChatSession(model, tokenizer, settings))


def cmd_serve(args) -> int:
    import uvicorn

    from ..serve import Limits, Scheduler
    from ..serve.server import create_app

    if args.max_batch < 1 or args.max_queue < 1 or args.max_tokens < 1 or args.max_body_bytes < 1:
        raise UsageError("--max-batch, --max-queue, --max-tokens and --max-body-bytes must be at least 1")
    model, tokenizer = _load(args)
    name = args.model_name or Path(args.checkpoint or args.hf).resolve().name
    api_key = args.api_key or os.environ.get("SCRATCHLLM_API_KEY") or None
    limits = Limits(args.max_prompt_tokens, args.max_tokens, args.max_body_bytes)
    scheduler = Scheduler(model, max_batch=args.max_batch, max_queue=args.max_queue).start()
    app = create_app(scheduler, tokenizer, name, limits, api_key)
    if args.host not in ("127.0.0.1", "localhost", "::1") and api_key is None:
        print(
            f"warning: serving on {args.host} without an API key: anyone who can reach it can use it", file=sys.stderr
        )
    print(f"scratchllm serve: {name} on http://{args.host}:{args.port}/ (chat page at /, API at /v1)", flush=True)
    try:
        uvicorn.run(app, host=args.host, port=args.port, log_level=args.log_level)
    finally:
        scheduler.stop()
    return 0


def _sampling_flags(p, temperature: float) -> None:
    p.add_argument("--temperature", type=float, default=temperature, help=f"0 = greedy (default {temperature})")
    p.add_argument("--top-k", type=int, default=50, help="keep the k most likely tokens; 0 = off (default 50)")
    p.add_argument("--top-p", type=float, default=0.95, help="nucleus sampling mass; 1 = off (default 0.95)")
    p.add_argument("--repetition-penalty", type=float, default=1.0, help="> 1 discourages repeats (default 1)")


def add_parsers(stages) -> None:
    p = stages.add_parser("chat", help="chat with a model in the terminal (streamed; /help for commands)")
    _add_model_source(p)
    _sampling_flags(p, 0.8)
    p.add_argument("--max-new-tokens", type=int, default=256, help="longest answer in tokens (default 256)")
    p.add_argument("--seed", type=int, help="make sampling reproducible")
    p.add_argument("--system", help="system prompt (chat models)")
    p.add_argument("--device", default="cpu", help="cpu, cuda, mps (default cpu)")
    p.set_defaults(func=cmd_chat)

    p = stages.add_parser("serve", help="local server with an OpenAI-style API and a chat page")
    _add_model_source(p)
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=int, default=8000, help="port (default 8000)")
    p.add_argument("--api-key", help="require 'Authorization: Bearer KEY' (default: $SCRATCHLLM_API_KEY, else none)")
    p.add_argument("--model-name", help="the model id clients send (default: the model directory's name)")
    p.add_argument(
        "--max-batch", type=int, default=16, help="requests decoded together (default 16; 1 = one at a time)"
    )
    p.add_argument(
        "--max-queue", type=int, default=64, help="requests waiting beyond the batch before 503 (default 64)"
    )
    p.add_argument("--max-tokens", type=int, default=256, help="largest max_tokens a request may ask (default 256)")
    p.add_argument("--max-prompt-tokens", type=int, default=0, help="longest prompt; 0 = the context (default)")
    p.add_argument("--max-body-bytes", type=int, default=1 << 20, help="largest request body (default 1 MiB)")
    p.add_argument("--device", default="cpu", help="cpu, cuda, mps (default cpu)")
    p.add_argument("--log-level", default="info", help="uvicorn's log level (default info)")
    p.set_defaults(func=cmd_serve)

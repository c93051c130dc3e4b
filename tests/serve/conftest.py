"""Fixtures for the REPL and server tests: a tiny random GPT with a chat tokenizer (and one without: a base model),
saved as checkpoints, and a real uvicorn server on a free port in a background thread.

The models are random (nothing to train in a test) with a large init_std, so greedy decoding does not just repeat one
token and "the same text as generate()" is a real check. The oracle in every test is ``generate()`` on a model
loaded separately from the same checkpoint.
"""

from __future__ import annotations

import socket
import threading
import time

import pytest
import torch

from scratchllm.finetune.template import add_chat_tokens
from scratchllm.model import GPT, GPTConfig
from scratchllm.train.checkpoint import load_checkpoint, save_checkpoint

BLOCK = 64


def tiny_model(vocab_size: int) -> GPT:
    torch.manual_seed(0)
    return GPT.build(GPTConfig(vocab_size=vocab_size, block_size=BLOCK, n_layer=2, n_head=2, d_model=64, init_std=0.3))


@pytest.fixture(scope="session")
def chat_checkpoint(trained, tmp_path_factory):
    tok = add_chat_tokens(trained)  # 2,000 ids + the chat tokens it lacked: the model's vocabulary grows with it
    return save_checkpoint(tmp_path_factory.mktemp("serve") / "tiny-chat", tiny_model(tok.vocab_size), tok)


@pytest.fixture(scope="session")
def base_checkpoint(trained, tmp_path_factory):
    return save_checkpoint(tmp_path_factory.mktemp("serve") / "tiny-base", tiny_model(trained.vocab_size), trained)


@pytest.fixture(scope="session")
def oracle(chat_checkpoint):
    """(model, tokenizer) loaded on their own: what the server's answers are compared with."""
    return load_checkpoint(chat_checkpoint)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LiveServer:
    """uvicorn serving ``app`` on 127.0.0.1 in a thread; ``url`` is its base address."""

    def __init__(self, app):
        import uvicorn

        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> LiveServer:
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.02)
        return self

    def __exit__(self, *exc) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


def make_app(checkpoint, **kwargs):
    """A started scheduler and the app around it; returns (app, scheduler)."""
    from scratchllm.serve import Limits, Scheduler
    from scratchllm.serve.server import create_app

    model, tok = load_checkpoint(checkpoint)
    scheduler = Scheduler(model, max_batch=kwargs.pop("max_batch", 8), max_queue=kwargs.pop("max_queue", 64))
    if kwargs.pop("start", True):
        scheduler.start()
    limits = Limits(max_tokens=kwargs.pop("max_tokens", 48), max_body_bytes=kwargs.pop("max_body_bytes", 20_000))
    return create_app(scheduler, tok, checkpoint.name, limits, **kwargs), scheduler


@pytest.fixture(scope="module")
def live(chat_checkpoint):
    app, scheduler = make_app(chat_checkpoint)
    with LiveServer(app) as server:
        yield server
    scheduler.stop()

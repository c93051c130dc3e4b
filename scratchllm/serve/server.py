"""The HTTP server: OpenAI-style ``/v1/completions``, ``/v1/chat/completions`` and ``/v1/models``, a health check,
and a small chat page at ``/``, on FastAPI (https://fastapi.tiangolo.com) served by uvicorn.

Handlers are async and never run the model: each request is checked (limits, sampling settings, the prompt against
the context), submitted to the ``Scheduler`` (one model, one worker thread, continuous batching, a bounded queue),
and its tokens come back through an ``asyncio.Queue`` fed from the worker thread with ``call_soon_threadsafe``.
Streaming answers are server-sent events in OpenAI's chunk format ending in ``data: [DONE]``; a client that
disconnects cancels its request, freeing its row in the batch.

Errors are OpenAI's shape, ``{"error": {"message", "type", "param", "code"}}``: 400 for a bad request (malformed JSON,
a field out of range, a prompt too long), 401 for a missing or wrong API key, 404 for an unknown model, 413 for a body
over the limit, 503 when the queue is full. A chat request to a base model (no chat tokens in its tokenizer) is a 400
that says to use ``/v1/completions``: the server will not invent a conversation format the model never saw.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import time
import uuid
from importlib import resources

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, StreamingResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from ..finetune.template import ROLES, Message
from .batch import Sampling
from .protocol import ChatRequest, CompletionRequest, Limits
from .scheduler import QueueFull, Scheduler
from .scheduler import Request as GenRequest
from .text import Prompter, TextStream


class APIError(Exception):
    def __init__(self, status: int, message: str, type_: str = "invalid_request_error", param: str | None = None):
        super().__init__(message)
        self.status, self.message, self.type, self.param = status, message, type_, param


def _error(status: int, message: str, type_: str = "invalid_request_error", param=None) -> JSONResponse:
    body = {"error": {"message": message, "type": type_, "param": param, "code": None}}
    return JSONResponse(body, status_code=status)


class BodyLimit:
    """ASGI middleware: refuse a request body over ``limit`` bytes with 413, by its Content-Length or, for a chunked
    body, by reading it (at most ``limit`` + one chunk is ever held); the app then reads the buffered body."""

    def __init__(self, app, limit: int):
        self.app, self.limit = app, limit

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        too_big = _error(413, f"request body over the limit of {self.limit} bytes", "request_too_large")
        length = dict(scope["headers"]).get(b"content-length")
        if length is not None and length.isdigit() and int(length) > self.limit:
            return await too_big(scope, receive, send)
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] != "http.request":  # the client left before sending its body
                return
            chunks.append(message.get("body", b""))
            size += len(chunks[-1])
            if size > self.limit:
                return await too_big(scope, receive, send)
            if not message.get("more_body", False):
                break
        replayed = False

        async def replay():
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": b"".join(chunks), "more_body": False}
            return await receive()  # later: http.disconnect, which streaming responses watch for

        await self.app(scope, replay, send)


def create_app(scheduler: Scheduler, tokenizer, model_name: str, limits: Limits | None = None,
               api_key: str | None = None) -> FastAPI:  # fmt: skip
    """The FastAPI app around a (started) scheduler; ``uvicorn.run(app)`` serves it."""
    limits = limits or Limits()
    prompter = Prompter(tokenizer)
    context = scheduler.model.config.block_size
    max_prompt = min(limits.max_prompt_tokens or context, context)
    app = FastAPI(title="scratchllm", docs_url=None, redoc_url=None)
    app.add_middleware(BodyLimit, limit=limits.max_body_bytes)
    created = int(time.time())
    page = resources.files(__package__).joinpath("static/index.html").read_text(encoding="utf-8")

    @app.exception_handler(APIError)
    async def api_error(request, exc: APIError):
        return _error(exc.status, exc.message, exc.type, exc.param)

    @app.exception_handler(RequestValidationError)
    async def bad_request(request, exc: RequestValidationError):
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(p) for p in first.get("loc", ()) if p != "body")
        message = first.get("msg", "invalid request")
        return _error(400, f"{where}: {message}" if where else message, param=where or None)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request, exc: StarletteHTTPException):
        return _error(exc.status_code, str(exc.detail), "not_found_error" if exc.status_code == 404 else "error")

    def check_key(request: Request) -> None:
        if api_key is None:
            return
        given = request.headers.get("authorization", "")
        if not secrets.compare_digest(given.encode(), f"Bearer {api_key}".encode()):
            raise APIError(401, "missing or wrong API key (send 'Authorization: Bearer KEY')", "authentication_error")

    def model_card() -> dict:
        return {"id": model_name, "object": "model", "created": created, "owned_by": "scratchllm",
                "chat": prompter.is_chat, "context_length": context}  # fmt: skip

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def index():
        return page

    @app.get("/health")
    async def health():
        return {"status": "ok", "model": model_name, **scheduler.load}

    @app.get("/v1/models")
    async def models(request: Request):
        check_key(request)
        return {"object": "list", "data": [model_card()]}

    @app.get("/v1/models/{name:path}")
    async def model(name: str, request: Request):
        check_key(request)
        if name != model_name:
            raise APIError(404, f"model {name!r} does not exist; this server has {model_name!r}", param="model")
        return model_card()

    def gate(body, request: Request) -> None:
        """The checks that come before any work: the key, the model, the features asked for."""
        check_key(request)
        if body.model != model_name:
            raise APIError(404, f"model {body.model!r} does not exist; this server has {model_name!r}", param="model")
        if name := body.unsupported():
            raise APIError(400, f"{name} is not supported by this server", param=name)

    def prepare(body, ids: list[int], stops: frozenset[int]) -> tuple[GenRequest, TextStream]:
        """Check a request against the limits and make the scheduler's request for it."""
        max_tokens = body.requested_max_tokens()
        max_tokens = limits.max_tokens if max_tokens is None else max_tokens
        if not 1 <= max_tokens <= limits.max_tokens:
            message = f"max_tokens must be between 1 and {limits.max_tokens}; got {max_tokens}"
            raise APIError(400, message, param="max_tokens")
        if len(ids) > max_prompt:
            message = f"the prompt has {len(ids)} tokens; this server takes at most {max_prompt}; shorten it"
            raise APIError(400, message, param="messages" if isinstance(body, ChatRequest) else "prompt")
        sampling = Sampling(body.temperature, body.top_k, body.top_p, body.repetition_penalty, body.seed)
        try:
            text = TextStream(tokenizer, body.stops())
        except ValueError as exc:
            raise APIError(400, str(exc), param="stop") from None
        return GenRequest(ids, max_tokens, sampling, stops), text

    async def run(gen: GenRequest, text: TextStream, chunk, finish, stream: bool):
        """Submit ``gen``; stream SSE chunks made by ``chunk(text_delta)`` / ``finish(reason, usage)``, or return the
        whole answer as JSON."""
        loop = asyncio.get_running_loop()
        events: asyncio.Queue = asyncio.Queue()
        gen.on_token = lambda token: loop.call_soon_threadsafe(events.put_nowait, ("token", token))
        gen.on_done = lambda reason, error: loop.call_soon_threadsafe(events.put_nowait, ("done", (reason, error)))
        try:
            scheduler.submit(gen)
        except ValueError as exc:
            raise APIError(400, str(exc)) from None
        except QueueFull as exc:
            raise APIError(503, str(exc), "server_busy") from None

        async def pieces():
            produced = 0
            try:
                while True:
                    kind, value = await events.get()
                    if kind == "token":
                        produced += 1
                        delta = text.push(value)
                        if text.stopped:  # a stop string: the answer ends here
                            gen.cancel()
                            yield "text", delta
                            yield "done", ("stop", produced)
                            return
                        if delta:
                            yield "text", delta
                        continue
                    reason, error = value
                    if error is not None:
                        yield "error", error
                        return
                    yield "text", text.close()
                    yield "done", ("stop" if reason == "stop" else "length", produced)
                    return
            finally:
                gen.cancel()  # the client went away (or we are done): free the row

        usage = lambda produced: {"prompt_tokens": len(gen.prompt), "completion_tokens": produced,
                                  "total_tokens": len(gen.prompt) + produced}  # fmt: skip
        if not stream:
            parts, reason, produced = [], "length", 0
            async for kind, value in pieces():
                if kind == "error":
                    raise APIError(500, f"generation failed: {value}", "server_error")
                if kind == "text":
                    parts.append(value)
                else:
                    reason, produced = value
            return JSONResponse(finish("".join(parts), reason, usage(produced)))

        async def sse():
            first = chunk(None)
            if first is not None:
                yield f"data: {json.dumps(first)}\n\n"
            async for kind, value in pieces():
                if kind == "error":
                    yield f"data: {json.dumps({'error': {'message': str(value), 'type': 'server_error'}})}\n\n"
                    return
                if kind == "text":
                    if value:
                        yield f"data: {json.dumps(chunk(value))}\n\n"
                else:
                    yield f"data: {json.dumps(finish(None, value[0], usage(value[1])))}\n\n"
            yield "data: [DONE]\n\n"

        return StreamingResponse(sse(), media_type="text/event-stream", headers={"Cache-Control": "no-cache"})

    @app.post("/v1/completions")
    async def completions(body: CompletionRequest, request: Request):
        gate(body, request)
        ids = await asyncio.to_thread(prompter.completion, body.prompt)  # a long prompt must not stall the loop
        gen, text = prepare(body, ids, prompter.completion_stops)
        rid, now = f"cmpl-{uuid.uuid4().hex}", int(time.time())
        head = {"id": rid, "object": "text_completion", "created": now, "model": model_name}

        def chunk(delta):
            return None if delta is None else {**head, "choices": [{"index": 0, "text": delta, "logprobs": None,
                                                                     "finish_reason": None}]}  # fmt: skip

        def finish(whole, reason, usage):
            choice = {"index": 0, "text": whole or "", "logprobs": None, "finish_reason": reason}
            return {**head, "choices": [choice], "usage": usage}

        return await run(gen, text, chunk, finish, body.stream)

    @app.post("/v1/chat/completions")
    async def chat(body: ChatRequest, request: Request):
        gate(body, request)
        if not prompter.is_chat:
            raise APIError(400, f"{model_name} is a base model (its tokenizer has no chat tokens); finetune it with "
                                "`scratchllm sft` or use /v1/completions", param="model")  # fmt: skip
        if len(body.messages) > limits.max_messages:
            raise APIError(400, f"at most {limits.max_messages} messages; got {len(body.messages)}", param="messages")
        messages = []
        for m in body.messages:
            role = "system" if m.role == "developer" else m.role
            if role not in ROLES:
                raise APIError(400, f"message role must be one of {', '.join(ROLES)}; got {m.role!r}", param="messages")
            try:
                messages.append(Message(role, m.text()))
            except ValueError as exc:
                raise APIError(400, str(exc), param="messages") from None
        ids = await asyncio.to_thread(prompter.chat, messages)
        gen, text = prepare(body, ids, prompter.chat_stops)
        rid, now = f"chatcmpl-{uuid.uuid4().hex}", int(time.time())
        head = {"id": rid, "object": "chat.completion.chunk", "created": now, "model": model_name}

        def chunk(delta):
            content = {"role": "assistant", "content": ""} if delta is None else {"content": delta}
            return {**head, "choices": [{"index": 0, "delta": content, "finish_reason": None}]}

        def finish(whole, reason, usage):
            if whole is None:  # the last chunk of a stream
                return {**head, "choices": [{"index": 0, "delta": {}, "finish_reason": reason}], "usage": usage}
            message = {"role": "assistant", "content": whole}
            return {**head, "object": "chat.completion", "choices": [{"index": 0, "message": message,
                    "finish_reason": reason}], "usage": usage}  # fmt: skip

        return await run(gen, text, chunk, finish, body.stream)

    return app

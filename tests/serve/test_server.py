"""The HTTP API against a real uvicorn server, with httpx and with the official ``openai`` client: every answer equals
what ``generate()`` gives for the same prompt with greedy decoding (the oracle, on a separately loaded model), also
with 32 requests at once; bad requests get a clear 4xx."""

from __future__ import annotations

import asyncio
import json

import httpx
import pytest
from starlette.testclient import TestClient

from scratchllm.finetune.template import ChatTemplate
from scratchllm.model.generate import generate

from .conftest import make_app

MODEL = "tiny-chat"
USER_TEXTS = ["Hello!", "def add(a, b):", "Explain recursion in one line.", "for i in range(10):", "é ü 🐍 ✓"]


def expected_completion(oracle, prompt: str, max_tokens: int) -> tuple[str, int]:
    """Greedy continuation of BOS + prompt until BOS, decoded; and its token count."""
    model, tok = oracle
    bos = tok.special_tokens["<|endoftext|>"]
    new = generate(model, [[bos, *tok.encode_ordinary(prompt)]], max_tokens, temperature=0, stop_tokens=[bos])[0]
    return tok.decode(new), len(new)


def expected_chat(oracle, messages: list[dict], max_tokens: int) -> tuple[str, int]:
    model, tok = oracle
    template = ChatTemplate.for_tokenizer(tok)
    ids = template.render(messages, add_generation_prompt=True)
    new = generate(model, [ids], max_tokens, temperature=0, stop_tokens=template.stop_tokens)[0]
    return tok.decode(new), len(new)


def sse_events(response: httpx.Response) -> list[dict]:
    """The JSON events of a server-sent-event stream, checking it ends with [DONE]."""
    data = [line[6:] for line in response.iter_lines() if line.startswith("data: ")]
    assert data[-1] == "[DONE]"
    return [json.loads(d) for d in data[:-1]]


def test_health_models_and_page(live):
    assert httpx.get(f"{live.url}/health").json()["status"] == "ok"
    models = httpx.get(f"{live.url}/v1/models").json()
    assert [m["id"] for m in models["data"]] == [MODEL] and models["data"][0]["chat"] is True
    page = httpx.get(f"{live.url}/")
    assert (
        page.status_code == 200 and "text/html" in page.headers["content-type"] and "/v1/chat/completions" in page.text
    )


def test_completion_and_chat_equal_generate(live, oracle):
    body = {"model": MODEL, "prompt": "def add(a, b):", "max_tokens": 20, "temperature": 0}
    r = httpx.post(f"{live.url}/v1/completions", json=body, timeout=60)
    text, n = expected_completion(oracle, "def add(a, b):", 20)
    assert r.status_code == 200
    assert r.json()["choices"][0]["text"] == text
    assert r.json()["usage"]["completion_tokens"] == n
    assert r.json()["choices"][0]["finish_reason"] == ("length" if n == 20 else "stop")

    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hello!"}]
    body = {"model": MODEL, "messages": messages, "max_tokens": 30, "temperature": 0, "stream": True}
    with httpx.stream("POST", f"{live.url}/v1/chat/completions", json=body, timeout=60) as r:
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
        events = sse_events(r)
    assert events[0]["choices"][0]["delta"]["role"] == "assistant"
    streamed = "".join(e["choices"][0]["delta"].get("content", "") for e in events)
    text, n = expected_chat(oracle, messages, 30)
    assert streamed == text and events[-1]["usage"]["completion_tokens"] == n
    assert len(events) > 3  # arrived in pieces, not in one event


def test_stop_strings_cut_the_text(live, oracle):
    full, _ = expected_completion(oracle, "for i in range(10):", 40)
    stop = full[len(full) // 2 : len(full) // 2 + 3]
    assert stop
    cut = full[: full.find(stop)]
    body = {"model": MODEL, "prompt": "for i in range(10):", "max_tokens": 40, "temperature": 0, "stop": [stop]}
    r = httpx.post(f"{live.url}/v1/completions", json=body, timeout=60).json()
    assert r["choices"][0]["text"] == cut and r["choices"][0]["finish_reason"] == "stop"
    with httpx.stream("POST", f"{live.url}/v1/completions", json={**body, "stream": True}, timeout=60) as r:
        events = sse_events(r)
    assert "".join(e["choices"][0]["text"] for e in events) == cut


def test_openai_client(live, oracle):
    openai = pytest.importorskip("openai")
    client = openai.OpenAI(base_url=f"{live.url}/v1", api_key="unused", max_retries=0)
    assert [m.id for m in client.models.list()] == [MODEL]
    messages = [{"role": "user", "content": "Explain recursion in one line."}]
    text, n = expected_chat(oracle, messages, 25)
    reply = client.chat.completions.create(model=MODEL, messages=messages, max_tokens=25, temperature=0)
    assert reply.choices[0].message.content == text and reply.usage.completion_tokens == n
    stream = client.chat.completions.create(model=MODEL, messages=messages, max_tokens=25, temperature=0, stream=True)
    assert "".join(c.choices[0].delta.content or "" for c in stream if c.choices) == text
    completion = client.completions.create(model=MODEL, prompt="def add(a, b):", max_tokens=12, temperature=0)
    assert completion.choices[0].text == expected_completion(oracle, "def add(a, b):", 12)[0]
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.create(model="gpt-4", messages=messages)


def test_32_concurrent_requests(live, oracle):
    """32 requests at once (streamed and not, chat and completion, different lengths): each answer is the one
    ``generate`` gives for its prompt alone, though the scheduler decoded them in shared, changing batches."""
    jobs = []
    for i in range(32):
        text = f"{USER_TEXTS[i % len(USER_TEXTS)]} #{i}"
        max_tokens = 5 + (i * 7) % 40
        if i % 2:
            body = {"model": MODEL, "messages": [{"role": "user", "content": text}], "max_tokens": max_tokens,
                    "temperature": 0, "stream": i % 4 == 1}  # fmt: skip
            jobs.append(("/v1/chat/completions", body, expected_chat(oracle, body["messages"], max_tokens)[0]))
        else:
            body = {"model": MODEL, "prompt": text, "max_tokens": max_tokens, "temperature": 0, "stream": i % 4 == 0}
            jobs.append(("/v1/completions", body, expected_completion(oracle, text, max_tokens)[0]))

    async def one(client, path, body):
        if not body["stream"]:
            r = await client.post(path, json=body)
            assert r.status_code == 200, r.text
            choice = r.json()["choices"][0]
            return choice["message"]["content"] if "message" in choice else choice["text"]
        parts = []
        async with client.stream("POST", path, json=body) as r:
            assert r.status_code == 200
            async for line in r.aiter_lines():
                if line.startswith("data: ") and line != "data: [DONE]":
                    choice = json.loads(line[6:])["choices"][0]
                    parts.append(choice["delta"].get("content", "") if "delta" in choice else choice["text"])
        return "".join(parts)

    async def everything():
        limits = httpx.Limits(max_connections=64)
        async with httpx.AsyncClient(base_url=live.url, timeout=120, limits=limits) as client:
            return await asyncio.gather(*(one(client, path, body) for path, body, _ in jobs))

    answers = asyncio.run(everything())
    assert answers == [expected for _, _, expected in jobs]
    load = httpx.get(f"{live.url}/health").json()
    assert load["active"] == 0 and load["peak_batch"] > 1  # they were decoded together


@pytest.mark.parametrize(
    "path, body, status, says",
    [
        ("/v1/completions", {"model": MODEL, "prompt": "x", "max_tokens": -1}, 400, "max_tokens"),
        ("/v1/completions", {"model": MODEL, "prompt": "x", "max_tokens": 0}, 400, "max_tokens"),
        ("/v1/completions", {"model": MODEL, "prompt": "x", "max_tokens": 10**12}, 400, "max_tokens"),
        ("/v1/completions", {"model": "gpt-4", "prompt": "x"}, 404, "does not exist"),
        ("/v1/completions", {"model": MODEL, "prompt": "x", "temperature": -1}, 400, "temperature"),
        ("/v1/completions", {"model": MODEL, "prompt": "x", "n": 3}, 400, "n is not supported"),
        ("/v1/completions", {"model": MODEL, "prompt": "x", "logprobs": 2}, 400, "logprobs"),
        ("/v1/completions", {"model": MODEL}, 400, "prompt"),
        ("/v1/completions", {"model": MODEL, "prompt": "word " * 200}, 400, "shorten it"),
        ("/v1/chat/completions", {"model": MODEL, "messages": []}, 400, "messages"),
        ("/v1/chat/completions", {"model": MODEL, "messages": [{"role": "tool", "content": "x"}]}, 400, "role"),
        ("/v1/chat/completions", {"model": MODEL, "messages": "hi"}, 400, "messages"),
        ("/v1/chat/completions", {"model": MODEL, "messages": [{"role": "user", "content": "x"}], "stop": ["a"] * 5},
         400, "stop"),
    ],
)  # fmt: skip
def test_bad_requests_get_4xx(live, path, body, status, says):
    r = httpx.post(f"{live.url}{path}", json=body)
    assert r.status_code == status
    assert says in r.json()["error"]["message"]


def test_malformed_and_huge_bodies(live):
    r = httpx.post(f"{live.url}/v1/completions", content=b'{"model": "tiny-chat", "prompt": ', timeout=10,
                   headers={"content-type": "application/json"})  # fmt: skip
    assert r.status_code == 400 and "error" in r.json()
    huge = json.dumps({"model": MODEL, "prompt": "x" * 50_000}).encode()  # over the 20,000-byte limit of the fixture
    r = httpx.post(f"{live.url}/v1/completions", content=huge, headers={"content-type": "application/json"})
    assert r.status_code == 413
    # The same without a Content-Length (chunked): refused while reading.
    r = httpx.post(f"{live.url}/v1/completions", content=iter([huge[:15_000], huge[15_000:]]),
                   headers={"content-type": "application/json"})  # fmt: skip
    assert r.status_code == 413
    assert httpx.get(f"{live.url}/health").status_code == 200  # and the server is still fine


def test_base_model_chat_is_a_clear_400(base_checkpoint):
    app, scheduler = make_app(base_checkpoint)
    with TestClient(app) as client:
        assert client.get("/v1/models").json()["data"][0]["chat"] is False
        chat = {"model": "tiny-base", "messages": [{"role": "user", "content": "hi"}]}
        r = client.post("/v1/chat/completions", json=chat)
        assert r.status_code == 400 and "base model" in r.json()["error"]["message"]
        r = client.post("/v1/completions", json={"model": "tiny-base", "prompt": "import", "max_tokens": 3})
        assert r.status_code == 200
    scheduler.stop()


def test_api_key_and_full_queue(chat_checkpoint):
    app, scheduler = make_app(chat_checkpoint, api_key="s3cret")
    body = {"model": MODEL, "prompt": "x", "max_tokens": 2}
    with TestClient(app) as client:
        assert client.post("/v1/completions", json=body).status_code == 401
        assert client.get("/v1/models", headers={"Authorization": "Bearer wrong"}).status_code == 401
        assert client.post("/v1/completions", json=body, headers={"Authorization": "Bearer s3cret"}).status_code == 200
        assert client.get("/health").status_code == 200 and client.get("/").status_code == 200  # open without a key
    scheduler.stop()

    from scratchllm.serve import Request

    app, scheduler = make_app(chat_checkpoint, max_queue=1, start=False)  # no worker: the queue stays full
    scheduler.submit(Request([1, 2, 3], 4))
    with TestClient(app) as client:
        r = client.post("/v1/completions", json=body)
        assert r.status_code == 503 and "busy" in r.json()["error"]["message"]

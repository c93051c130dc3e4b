"""The request bodies of the OpenAI-style API, as pydantic models, and the limits the server enforces on them.

Fields follow OpenAI's API reference for ``/v1/completions`` and ``/v1/chat/completions``
(https://platform.openai.com/docs/api-reference), so the official client works unchanged. Fields the server does not
implement and that would change the answer (``n`` > 1, ``logprobs``, ``tools``, ...) are refused with a 400 rather
than silently ignored; harmless ones (``user``, ``stream_options``) are accepted. ``top_k`` and
``repetition_penalty`` are extensions (vLLM accepts the same names).
"""

from __future__ import annotations

from dataclasses import dataclass

from pydantic import BaseModel, ConfigDict, Field

# Fields that would change what a client gets back; refused when set, since the server cannot honour them.
UNSUPPORTED = ("logprobs", "top_logprobs", "echo", "best_of", "suffix", "tools", "functions", "logit_bias",
               "response_format", "tool_choice", "function_call", "audio", "prediction")  # fmt: skip


@dataclass
class Limits:
    """What one request may ask of the server."""

    # Longest prompt in tokens (after the chat template); 0 = the model's context.
    max_prompt_tokens: int = 0
    # Largest max_tokens a request may ask for; also the default when a request does not say.
    max_tokens: int = 256
    # Largest request body in bytes (a 413 beyond it, before the JSON is parsed).
    max_body_bytes: int = 1 << 20
    # Longest list of messages in one chat request.
    max_messages: int = 256


class _Common(BaseModel):
    model_config = ConfigDict(extra="allow")

    model: str
    max_tokens: int | None = None
    max_completion_tokens: int | None = None  # the newer name for max_tokens in chat requests
    temperature: float = Field(1.0, ge=0.0, le=2.0)
    top_p: float = Field(1.0, gt=0.0, le=1.0)
    top_k: int = Field(0, ge=0)
    repetition_penalty: float = Field(1.0, gt=0.0)
    seed: int | None = None
    stream: bool = False
    stop: str | list[str] | None = None
    n: int = 1
    # Accepted, have no effect here (no presence/frequency penalties are implemented: a non-zero value is refused).
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    user: str | None = None

    def requested_max_tokens(self) -> int | None:
        return self.max_completion_tokens if self.max_completion_tokens is not None else self.max_tokens

    def stops(self) -> list[str]:
        if self.stop is None:
            return []
        stops = [self.stop] if isinstance(self.stop, str) else list(self.stop)
        if len(stops) > 4:
            raise ValueError(f"at most 4 stop strings; got {len(stops)}")
        return stops

    def unsupported(self) -> str | None:
        """The name of a set field the server cannot honour, or None."""
        extra = self.model_extra or {}
        for name in UNSUPPORTED:
            if extra.get(name) not in (None, False, 0, [], {}):
                return name
        if self.n != 1:
            return "n"
        if self.presence_penalty or self.frequency_penalty:
            return "presence_penalty" if self.presence_penalty else "frequency_penalty"
        return None


class CompletionRequest(_Common):
    prompt: str


class ContentPart(BaseModel):
    model_config = ConfigDict(extra="allow")

    type: str
    text: str | None = None


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="allow")

    role: str
    content: str | list[ContentPart] | None = None

    def text(self) -> str:
        """The content as one string; only text parts exist for this model."""
        if self.content is None:
            return ""
        if isinstance(self.content, str):
            return self.content
        if any(part.type != "text" for part in self.content):
            raise ValueError("only text content parts are supported")
        return "".join(part.text or "" for part in self.content)


class ChatRequest(_Common):
    messages: list[ChatMessage] = Field(min_length=1)

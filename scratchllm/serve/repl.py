"""``scratchllm chat``: talk to a model in the terminal, tokens printed as they are generated.

A chat model (its tokenizer has the chat tokens of ``finetune/template.py``) gets the whole conversation rendered by
the template at every turn, with an open assistant turn to continue; its answer ends at ``<|end|>``. A base model has
no notion of turns, so the REPL runs in plain completion mode: the text so far (what you typed and what the model
wrote, concatenated as typed) is the prompt, and the model continues it until BOS or the token limit. The banner says
which mode is on.

The model's context is finite. Before each answer the prompt must leave room for ``max_new_tokens``; while it does
not, the oldest turn (a message and its answer) is dropped, with a notice, as chat front ends do (llama.cpp's
``--keep``, Ollama's context shift); a single message longer than the context is refused.

Commands: ``/set NAME VALUE`` (a sampling setting, the system prompt, or the token limit), ``/settings``, ``/reset``
(forget the conversation), ``/save FILE`` (the conversation and settings as JSON), ``/help``, ``/quit``.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from dataclasses import dataclass

from ..fileio import atomic_write_text
from ..finetune.template import Message
from ..model.generate import stream_generate
from .text import Prompter, TextStream

HELP = """commands:
  /set NAME VALUE   change a setting: temperature, top_k, top_p, repetition_penalty, max_new_tokens, seed
                    (none = fresh randomness), system (the system prompt; chat models only)
  /settings         show the settings
  /reset            forget the conversation
  /save FILE        write the conversation and settings to FILE as JSON
  /help             this list
  /quit             leave (or Ctrl-D)"""


@dataclass
class ChatSettings:
    """Sampling settings of the REPL (the flags of ``scratchllm chat``, changed at run time with ``/set``)."""

    temperature: float = 0.8
    top_k: int = 50
    top_p: float = 0.95
    repetition_penalty: float = 1.0
    max_new_tokens: int = 256
    seed: int | None = None
    system: str = ""

    def set(self, name: str, value: str) -> None:
        """Parse and check ``value`` for the setting ``name``; ValueError with a readable message otherwise."""
        fields = {f.name: f for f in dataclasses.fields(self)}
        if name not in fields:
            raise ValueError(f"unknown setting {name!r}; one of: {', '.join(fields)}")
        if name == "system":
            parsed = value
        elif name == "seed":
            parsed = None if value.lower() in ("none", "") else int(value)
        else:
            parsed = type(getattr(ChatSettings, name))(value)
        trial = dataclasses.replace(self, **{name: parsed})
        trial.check()
        setattr(self, name, parsed)

    def check(self) -> None:
        if self.temperature < 0 or self.top_k < 0 or not 0 < self.top_p <= 1 or self.repetition_penalty <= 0:
            raise ValueError("need temperature >= 0, top_k >= 0, 0 < top_p <= 1, repetition_penalty > 0")
        if self.max_new_tokens < 1:
            raise ValueError("max_new_tokens must be at least 1")


class ChatSession:
    """A conversation with one model: history, context management, streamed answers."""

    def __init__(self, model, tokenizer, settings: ChatSettings | None = None):
        self.model = model
        self.tokenizer = tokenizer
        self.prompter = Prompter(tokenizer)
        self.settings = settings or ChatSettings()
        self.settings.check()
        self.turns: list[tuple[str, str]] = []  # (user message, model answer), oldest first

    @property
    def context(self) -> int:
        return self.model.config.block_size

    def banner(self) -> str:
        if self.prompter.is_chat:
            mode = "chat model: the conversation goes through the chat template"
        else:
            mode = "base model (no chat tokens): plain completion mode, the text so far is continued as typed"
        return f"scratchllm chat: {mode}; context {self.context} tokens. /help lists the commands."

    def prompt_ids(self, message: str, turns: list[tuple[str, str]]) -> list[int]:
        """The prompt for ``message`` after ``turns``: the template's rendering, or the concatenated text."""
        if self.prompter.is_chat:
            messages = [Message("system", self.settings.system)] if self.settings.system else []
            for user, answer in turns:
                messages += [Message("user", user), Message("assistant", answer)]
            return self.prompter.chat([*messages, Message("user", message)])
        return self.prompter.completion("".join(user + answer for user, answer in turns) + message)

    def fit(self, message: str, notice: Callable[[str], None]) -> list[int] | None:
        """Drop the oldest turns until the prompt leaves room for the answer; None if the message alone is too long."""
        ids = self.prompt_ids(message, self.turns)
        while self.turns and len(ids) + self.settings.max_new_tokens > self.context:
            self.turns.pop(0)
            notice(f"[context full: dropped the oldest turn; {len(self.turns)} left]")
            ids = self.prompt_ids(message, self.turns)
        if len(ids) > self.context:
            notice(f"[message too long: {len(ids)} tokens with the template, the context holds {self.context}]")
            return None
        return ids

    def reply(self, message: str, write: Callable[[str], None], notice: Callable[[str], None]) -> str | None:
        """Answer ``message``, streaming the text through ``write``; the turn joins the history."""
        ids = self.fit(message, notice)
        if ids is None:
            return None
        s = self.settings
        stops = self.prompter.chat_stops if self.prompter.is_chat else self.prompter.completion_stops
        text = TextStream(self.tokenizer)
        parts = []
        options = dict(temperature=s.temperature, top_k=s.top_k, top_p=s.top_p, seed=s.seed, stop_tokens=stops,
                       repetition_penalty=s.repetition_penalty)  # fmt: skip
        steps = stream_generate(self.model, [ids], s.max_new_tokens, **options)
        for step in steps:
            parts.append(text.push(step[0]))
            write(parts[-1])
        parts.append(text.close())
        write(parts[-1])
        answer = "".join(parts)
        self.turns.append((message, answer))
        return answer

    def save(self, path: str) -> None:
        settings = dataclasses.asdict(self.settings)
        record = {"mode": "chat" if self.prompter.is_chat else "completion", "settings": settings, "turns": [
            {"user": user, "assistant": answer} for user, answer in self.turns]}  # fmt: skip
        atomic_write_text(path, json.dumps(record, indent=2, ensure_ascii=False) + "\n")


def run_repl(session: ChatSession, read: Callable[[str], str] = input, write: Callable[[str], None] | None = None,
             ) -> int:  # fmt: skip
    """Read lines until /quit or end of input; answer messages, run commands. ``read``/``write`` are swappable for
    tests; ``write`` gets text without added newlines and is expected to flush."""
    if write is None:
        write = lambda text: print(text, end="", flush=True)
    say = lambda line: write(line + "\n")
    say(session.banner())
    while True:
        try:
            line = read("> ")
        except EOFError:
            say("")
            return 0
        if not line.strip():
            continue
        if line.startswith("/"):
            name, _, rest = line[1:].partition(" ")
            if name in ("quit", "exit"):
                return 0
            if name == "help":
                say(HELP)
            elif name == "reset":
                session.turns.clear()
                say("[conversation reset]")
            elif name == "settings":
                say(", ".join(f"{k}={v!r}" for k, v in dataclasses.asdict(session.settings).items()))
            elif name == "set":
                key, _, value = rest.strip().partition(" ")
                try:
                    session.settings.set(key, value.strip())
                    say(f"[{key} = {getattr(session.settings, key)!r}]")
                except ValueError as exc:
                    say(f"[cannot set {key}: {exc}]")
            elif name == "save":
                if not rest.strip():
                    say("[usage: /save FILE]")
                    continue
                try:
                    session.save(rest.strip())
                    say(f"[saved {len(session.turns)} turns to {rest.strip()}]")
                except OSError as exc:
                    say(f"[cannot save: {exc}]")
            else:
                say(f"[unknown command /{name}; /help lists them]")
            continue
        session.reply(line, write, say)
        write("\n")

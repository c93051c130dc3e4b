"""The chat template: how a conversation becomes one sequence of token ids, and back.

A base model continues text; a chat model continues a *conversation*. The template draws the conversation as tokens
the model can see, with a special token for each role and one that ends a turn:

    <|endoftext|> <|system|> You are terse. <|end|> <|user|> Add 2 and 3. <|end|> <|assistant|> 5 <|end|>

``<|endoftext|>`` is the BOS token that begins every pretraining document, so a conversation begins the way text did.
The role markers and ``<|end|>`` are special tokens appended after the pretrained ids (``add_chat_tokens``): every
id the pretrained model knows keeps its meaning, and text that merely *contains* the string ``<|end|>`` is encoded as
ordinary bytes, so a user cannot forge a turn boundary by typing it (the content is encoded with
``encode_ordinary``). Generation stops at ``<|end|>`` (``stop_tokens``).

During finetuning only the assistant's words are targets: ``render_with_mask`` marks the assistant's content and its
closing ``<|end|>`` (the model must learn to stop), and nothing else: not the BOS, the role markers, the system
prompt or the user's turn (Ouyang et al. 2022, InstructGPT; the same rule as Hugging Face TRL's "completion only"
loss). The layout follows ChatML / Llama 3's header tokens, with one token per role instead of a header and a name.

``parse`` is the exact inverse of ``render``, because it splits on token ids and not on strings.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from ..tokenizer import Tokenizer
from ..tokenizer.errors import TokenizerError

BOS = "<|endoftext|>"
CHAT_TOKENS = ("<|system|>", "<|user|>", "<|assistant|>", "<|end|>")
ROLES = ("system", "user", "assistant")


class ChatTemplateError(TokenizerError):
    """A conversation or token sequence does not fit the chat template (unknown role, missing tokens, bad ids)."""


@dataclass(frozen=True)
class Message:
    """One turn of a conversation."""

    role: str  # "system" | "user" | "assistant"
    content: str


def as_message(message: Message | Mapping) -> Message:
    """A Message from a Message or a ``{"role", "content"}`` dict, checked (errors name what is wrong)."""
    if isinstance(message, Mapping):
        if "role" not in message or "content" not in message:
            raise ChatTemplateError(f"a message needs 'role' and 'content'; got keys {sorted(message)}")
        message = Message(message["role"], message["content"])
    elif not isinstance(message, Message):
        raise ChatTemplateError(f"a message is a Message or a dict with 'role' and 'content'; got {message!r:.80}")
    if message.role not in ROLES:
        raise ChatTemplateError(f"message role must be one of {', '.join(ROLES)}; got {message.role!r}")
    if not isinstance(message.content, str):
        raise ChatTemplateError(f"message content must be a string; got {type(message.content).__name__}")
    return message


def add_chat_tokens(tokenizer: Tokenizer) -> Tokenizer:
    """A new Tokenizer with the chat tokens appended after every existing id (those already present are kept).

    The merges and existing special tokens are untouched, so every pretrained id means what it meant."""
    special = dict(tokenizer.special_tokens)
    if BOS not in special:
        raise ChatTemplateError(f"the tokenizer has no {BOS} token to begin a conversation with; train it with one")
    next_id = tokenizer.vocab_size
    for token in CHAT_TOKENS:
        if token not in special:
            special[token] = next_id
            next_id += 1
    return Tokenizer(tokenizer.merges, tokenizer.pattern, special, tokenizer.byte_ids)


class ChatTemplate:
    """Render conversations to ids (with the loss mask for finetuning) and parse ids back to conversations."""

    def __init__(self, tokenizer: Tokenizer):
        missing = [t for t in (BOS, *CHAT_TOKENS) if t not in tokenizer.special_tokens]
        if missing:
            raise ChatTemplateError(
                f"the tokenizer lacks the chat tokens {missing}; finetune with `scratchllm sft` (which adds them) or "
                "call scratchllm.finetune.template.add_chat_tokens"
            )
        self.tokenizer = tokenizer
        ids = tokenizer.special_tokens
        self.bos = ids[BOS]
        self.end = ids["<|end|>"]
        self.role_ids = {role: ids[f"<|{role}|>"] for role in ROLES}
        self._roles_by_id = {i: role for role, i in self.role_ids.items()}
        self.stop_tokens: list[int] = [self.end, self.bos]  # <|end|> closes a turn; BOS would begin a new document

    @classmethod
    def for_tokenizer(cls, tokenizer: Tokenizer) -> ChatTemplate:
        """The template for a tokenizer that has the chat tokens (ChatTemplateError otherwise)."""
        return cls(tokenizer)

    @staticmethod
    def has_chat_tokens(tokenizer: Tokenizer) -> bool:
        return all(t in tokenizer.special_tokens for t in (BOS, *CHAT_TOKENS))

    def render(self, messages: Sequence[Message | Mapping], add_generation_prompt: bool = False) -> list[int]:
        """BOS, then each turn as ``<|role|> content <|end|>``; with ``add_generation_prompt`` an open
        ``<|assistant|>`` follows, for the model to continue."""
        ids, _ = self.render_with_mask(messages)
        if add_generation_prompt:
            ids.append(self.role_ids["assistant"])
        return ids

    def render_with_mask(self, messages: Sequence[Message | Mapping]) -> tuple[list[int], list[bool]]:
        """(ids, mask): ``mask[i]`` is True where token ``ids[i]`` is a training target, i.e. the loss applies to
        predicting it from ``ids[:i]``: the assistant's content tokens and the ``<|end|>`` that closes its turn."""
        ids, mask = [self.bos], [False]
        for message in messages:
            message = as_message(message)
            content = self.tokenizer.encode_ordinary(message.content)
            learn = message.role == "assistant"
            ids += [self.role_ids[message.role], *content, self.end]
            mask += [False] + [learn] * (len(content) + 1)
        return ids, mask

    def parse(self, ids: Sequence[int]) -> list[Message]:
        """The inverse of ``render``: ids -> messages. A leading BOS is optional; a last turn without ``<|end|>``
        (a generation prompt, or a reply cut short) comes back as it stands, so ``parse(render(m, True))`` is
        ``m`` plus an empty assistant message."""
        ids = list(ids)
        if ids and ids[0] == self.bos:
            ids = ids[1:]
        messages: list[Message] = []
        i = 0
        while i < len(ids):
            role = self._roles_by_id.get(ids[i])
            if role is None:
                raise ChatTemplateError(f"token {ids[i]} at position {i} is not a role marker where a turn must begin")
            j = i + 1
            while j < len(ids) and ids[j] != self.end:
                if ids[j] in self._roles_by_id or ids[j] == self.bos:
                    raise ChatTemplateError(f"the turn starting at position {i} has a special token {ids[j]} inside")
                j += 1
            messages.append(Message(role, self.tokenizer.decode(ids[i + 1 : j])))
            i = j + 1
        return messages

    def prompt(self, instruction: str, system: str | None = None) -> list[int]:
        """A one-question conversation ready for the model's answer (the eval harness and the demo use this)."""
        messages = ([Message("system", system)] if system else []) + [Message("user", instruction)]
        return self.render(messages, add_generation_prompt=True)

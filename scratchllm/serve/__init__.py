"""Using a model: a chat REPL in the terminal and a local HTTP server with an OpenAI-style API and a chat page
(docs/06-finetuning-and-chat.md, sections 6.6 and 6.7).

``repl`` is ``scratchllm chat``; ``server`` is ``scratchllm serve`` (FastAPI + uvicorn) in front of ``scheduler``, a
worker thread that owns the model and decodes many requests together (continuous batching, ``batch``); ``text``
turns requests into prompt ids (chat template or plain completion) and tokens back into streamed text; ``protocol``
holds the API's request bodies and limits.
"""

from .batch import DecodeBatch, Sampling
from .protocol import Limits
from .repl import ChatSession, ChatSettings, run_repl
from .scheduler import QueueFull, Request, Scheduler
from .text import Prompter, TextStream

__all__ = [
    "ChatSession", "ChatSettings", "DecodeBatch", "Limits", "Prompter", "QueueFull", "Request", "Sampling",
    "Scheduler", "TextStream", "run_repl",
]  # fmt: skip

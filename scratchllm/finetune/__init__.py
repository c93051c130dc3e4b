"""From a base model to an assistant: the chat template, instruction data with the loss on the answer only, full
finetuning and LoRA (docs/06-finetuning-and-chat.md).

``template`` turns conversations into token ids and back; ``vocab`` makes room in a pretrained model for the chat
tokens; ``data`` reads instruction sets and builds masked batches; ``lora`` adds low-rank adapters; ``sft`` is the
finetuning run.
"""

from .template import CHAT_TOKENS, ChatTemplate, ChatTemplateError, Message, add_chat_tokens
from .vocab import grow_vocab

__all__ = ["CHAT_TOKENS", "ChatTemplate", "ChatTemplateError", "Message", "add_chat_tokens", "grow_vocab"]

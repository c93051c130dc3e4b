"""The data stage: documents, the readers that produce them, and (in later modules) the steps that clean them.

A corpus is a lazy, deterministic stream of ``Document``s: ``open_corpus(CorpusConfig(...))`` picks a registered
reader, keeps the requested train/val split and stops at ``max_documents``. See ``readers`` for the embedded default
corpus (the Python standard library) and the JSON-lines format.
"""

from scratchllm.data.config import CorpusConfig
from scratchllm.data.document import Document
from scratchllm.data.readers import CorpusError, open_corpus, register_reader, require_nonempty, split_of

__all__ = ["CorpusConfig", "CorpusError", "Document", "open_corpus", "register_reader", "require_nonempty", "split_of"]

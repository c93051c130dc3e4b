"""The data stage: documents, the readers that produce them, and (in later modules) the steps that clean them.

A corpus is a lazy, deterministic stream of ``Document``s: ``open_corpus(CorpusConfig(...))`` picks a registered
reader, keeps the requested train/val split and stops at ``max_documents``. See ``readers`` for the embedded default
corpus (the Python standard library), the JSON-lines format and how bad input is reported, and ``formats`` for the
formats real corpora come in (files, parquet, WARC/WET, Hugging Face datasets).
"""

from scratchllm.data import formats  # noqa: F401  (importing it registers the files, parquet, warc and hf readers)
from scratchllm.data.config import CorpusConfig
from scratchllm.data.document import Document
from scratchllm.data.readers import (
    CorpusError,
    CorpusWarning,
    ReadProblems,
    open_corpus,
    register_reader,
    require_nonempty,
    split_of,
)

__all__ = [
    "CorpusConfig",
    "CorpusError",
    "CorpusWarning",
    "Document",
    "ReadProblems",
    "open_corpus",
    "register_reader",
    "require_nonempty",
    "split_of",
]

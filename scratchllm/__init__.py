"""scratchllm: a large language model built from scratch in Python and PyTorch, with its manual.

The package is laid out as the pipeline it implements: ``data`` (documents and corpora) -> ``tokenizer`` (byte-level
BPE) -> ``model`` (the GPT) -> ``train`` -> ``eval``, then ``finetune`` and ``serve``. ``config`` holds the shared
TOML + ``key=value`` configuration machinery and ``cli`` the ``scratchllm`` command. See DESIGN.md for the whole map.
"""

__version__ = "0.1.0"

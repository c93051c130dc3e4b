"""The ``scratchllm`` command line (see ``main.py``); nothing in the package imports it."""

from .main import build_parser, main

__all__ = ["build_parser", "main"]

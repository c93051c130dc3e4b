"""The ``scratchllm`` command line (see ``main.py``); nothing in the package imports it."""

from .main import PLANNED, build_parser, main

__all__ = ["PLANNED", "build_parser", "main"]

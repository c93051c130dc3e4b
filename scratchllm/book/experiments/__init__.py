"""Experiments behind the manual's figures and numbers. Each is a module with a ``run`` function that returns its
results and a command that reruns it; ``registry.py`` lists them for the book build, which caches their results by
code (``scratchllm/book/cache.py``) and inserts them into the text."""

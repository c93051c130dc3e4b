"""The manual's machinery: experiments that draw its figures and compute its numbers, and the build that turns
``docs/`` into an HTML site and a PDF (``scratchllm book``, ``make book``; see ``build.py``)."""

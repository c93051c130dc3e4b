"""The offline default instruction set: the standard library's documented functions as "write a function" tasks.

No download is needed: the embedded default corpus (the Python standard library, scratchllm/data ``stdlib`` reader)
already holds thousands of module-level functions with docstrings. Each becomes one example:

    user:      Write a Python function `dedent(text)` that removes any common leading whitespace from every line.
    assistant: def dedent(text):
                   \"\"\"Remove any common leading whitespace from every line in `text`. ...\"\"\"
                   ...

The answer repeats the signature and the docstring before the body, the layout of a HumanEval prompt, so a model
finetuned on these tasks meets HumanEval's problems in a familiar shape. Examples are grouped by module: a held-out
module's functions are all held out, so validation asks for functions whose neighbours were never answers in training
(with ``val_fraction`` at least the corpus's own, the modules held out of pretraining are among them: the split is the
same hash of the same document id).
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator

from ..data import CorpusConfig, open_corpus
from .data import Example
from .template import Message

MAX_SOURCE_CHARS = 1200  # longer functions would not fit the tiny model's context with their instruction
MIN_BODY_LINES = 2  # skip one-line wrappers: nothing to learn beyond the signature


def summary(docstring: str) -> str:
    """The first paragraph of a docstring as one lower-cased clause ("Return the x." -> "returns the x")."""
    first = re.split(r"\n\s*\n", docstring.strip(), maxsplit=1)[0]
    text = " ".join(first.split()).rstrip(".")
    words = text.split(" ", 1)
    verb = words[0]
    # Docstrings are imperative ("Return ..."); the request reads better in the third person ("that returns ...").
    if verb[:1].isupper() and verb.isalpha() and verb.lower() not in ("a", "an", "the", "this"):
        verb = verb.lower()
        if verb.endswith(("s", "sh", "ch", "x")):
            verb += "es"
        elif verb.endswith("y") and verb[-2:-1] not in ("a", "e", "o", "u"):
            verb = verb[:-1] + "ies"
        else:
            verb += "s"
        return " ".join([verb, *words[1:]])
    return "does this: " + text


def function_tasks(source: str, module: str) -> Iterator[Example]:
    """One example per public module-level function of ``source`` that has a docstring and a short body."""
    try:
        tree = ast.parse(source)
    except (SyntaxError, ValueError):
        return
    lines = source.splitlines()
    for node in tree.body:
        if not isinstance(node, ast.FunctionDef) or node.name.startswith("_") or node.decorator_list:
            continue
        doc = ast.get_docstring(node)
        if not doc or len(doc) < 20 or node.end_lineno - node.lineno < MIN_BODY_LINES + 1:
            continue
        code = "\n".join(lines[node.lineno - 1 : node.end_lineno])
        if len(code) > MAX_SOURCE_CHARS or not code.isascii():
            continue
        signature = f"{node.name}({ast.unparse(node.args)})"
        request = f"Write a Python function `{signature}` that {summary(doc)}."
        yield Example((Message("user", request), Message("assistant", code)), group=module)


def stdlib_instructions(corpus: CorpusConfig | None = None, max_examples: int = 0) -> list[Example]:
    """The default instruction set from the ``stdlib`` corpus (``corpus`` chooses the root; its split is ignored:
    examples are split by module later, ``data.split_examples``). ``max_examples`` > 0 stops early."""
    corpus = corpus or CorpusConfig()
    corpus = CorpusConfig(**{**vars(corpus), "split": "all", "include_pydoc": False, "max_documents": 0})
    examples: list[Example] = []
    for doc in open_corpus(corpus):
        examples += function_tasks(doc.text, doc.id)
        if max_examples and len(examples) >= max_examples:
            return examples[:max_examples]
    return examples

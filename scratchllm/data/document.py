"""The unit of the data stage: one document, and its JSON-lines form.

Every step of the pipeline (readers, extraction, filters, dedup, decontamination, tokenization) consumes and produces
``Document``s, so a corpus at any stage can be written to ``.jsonl`` and inspected or resumed from there. The record
format is one JSON object a line: ``{"id": ..., "text": ..., "source": ..., "meta": {...}}`` (DESIGN section 4).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Document:
    """One text with a stable identity.

    ``id`` is unique within a corpus and stable across runs: the train/val split and dedup decisions are keyed on it.
    ``source`` names where the text came from (a reader or a crawl); ``meta`` holds anything else worth keeping
    (file path, URL, language score, ...). Frozen, so a pipeline step that changes a document makes a new one.
    """

    id: str
    text: str
    source: str
    # Not part of the hash (a dict cannot be hashed), but still compared by ==.
    meta: dict[str, Any] = field(default_factory=dict, hash=False)

    def to_json(self) -> str:
        """One JSON line, without the newline. Non-ASCII text is written as is, not \\u-escaped, to stay readable."""
        return json.dumps(
            {"id": self.id, "text": self.text, "source": self.source, "meta": self.meta}, ensure_ascii=False
        )

    @classmethod
    def from_json(cls, line: str, default_id: str | None = None, default_source: str = "") -> Document:
        """Parse one JSON line. ``text`` is required; ``id`` too unless ``default_id`` is given (integer ids become
        strings, as dumps often number their rows); ``source`` and ``meta`` may be absent.

        Raises ValueError saying what is wrong with the line.
        """
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as e:
            raise ValueError(f"not valid JSON ({e.msg} at column {e.colno})") from None
        if not isinstance(obj, dict):
            raise ValueError(f"expected a JSON object, got {type(obj).__name__}")
        if not isinstance(obj.get("text"), str):
            raise ValueError("the 'text' field is missing or not a string")
        doc_id = obj.get("id", default_id)
        if isinstance(doc_id, int) and not isinstance(doc_id, bool):
            doc_id = str(doc_id)
        if not isinstance(doc_id, str):
            raise ValueError("the 'id' field is missing or not a string or integer")
        source = obj.get("source", default_source)
        meta = obj.get("meta", {})
        if not isinstance(source, str):
            raise ValueError("the 'source' field must be a string")
        if not isinstance(meta, dict):
            raise ValueError("the 'meta' field must be a JSON object")
        return cls(id=doc_id, text=obj["text"], source=source, meta=meta)

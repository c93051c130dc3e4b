"""Configuration of the corpus a run reads: which reader, which input, which split, how much.

Kept apart from the readers so that a config file can be loaded and validated (``scratchllm.config.load_config``)
without touching any data.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from scratchllm.config import ConfigError

SPLITS = ("train", "val", "all")
ON_ERROR = ("raise", "skip")


@dataclass
class CorpusConfig:
    """Where the documents come from and which of them to use."""

    # Name of a registered reader (scratchllm.data.readers.READERS): "stdlib" (the embedded default corpus: the
    # Python standard library's source and documentation topics), "jsonl" (JSON lines, also .gz and .zst), "files" (a
    # directory of text, markdown, HTML and code files), "parquet", "warc" (Common Crawl WARC and WET files) or "hf"
    # (a Hugging Face dataset, streamed; needs the optional extra scratchllm[hf]).
    source: str = "stdlib"
    # Input for readers that need one: a file or a directory of them ("jsonl", "files", "parquet", "warc"); for "hf",
    # the dataset's name on the Hub or a builder such as "json" or "parquet" (the first argument of load_dataset). For
    # "stdlib", a non-empty path replaces the standard library's directory as the root to scan.
    path: str = ""
    # "train", "val" (the held-out documents) or "all". Membership is a stable hash of the document id.
    split: str = "train"
    # Fraction of documents held out for validation, in [0, 1).
    val_fraction: float = 0.01
    # Stop after this many documents (counted after the split); 0 means no limit. Handy for quick runs and tests.
    max_documents: int = 0
    # For "stdlib": also include the pydoc documentation topics (the language reference text shipped with Python).
    include_pydoc: bool = True
    # What a reader does with bad input (a line that is not JSON, a truncated .gz, an unreadable file): "raise" stops
    # with an error naming the file and line, right for a corpus you made yourself; "skip" skips what is bad, keeps
    # every good document around it, and counts each problem with its place for the run's report.
    on_error: str = "raise"
    # When path is a directory: shell-style patterns matched against each file's path relative to it ("*" also
    # crosses "/", so "*.md" finds markdown at any depth). Empty means the reader's own: "*.jsonl", "*.jsonl.gz" and
    # "*.jsonl.zst" for jsonl; "*.parquet"; "*.warc", "*.warc.gz", "*.wet", "*.wet.gz"; text, markdown, HTML and
    # source code for "files" (scratchllm.data.formats.FILE_FORMATS).
    glob: list[str] = field(default_factory=list)
    # For record readers (jsonl, parquet, hf): the field holding the text and the one holding the id. A record
    # without an id gets one from its place (file:line, file:row, dataset:split:index). Other fields go into meta.
    text_field: str = "text"
    id_field: str = "id"
    # For "hf": the dataset configuration (load_dataset's name, e.g. "sample-10BT" for FineWeb; empty for the default),
    # the split to stream, and data_files for a builder such as "json" or "parquet" reading files of your own.
    hf_config: str = ""
    hf_split: str = "train"
    hf_data_files: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.split not in SPLITS:
            raise ConfigError(f"split must be one of {', '.join(SPLITS)}; got {self.split!r}")
        if not 0.0 <= self.val_fraction < 1.0:
            raise ConfigError(
                f"val_fraction must be at least 0 and below 1 (0.01 holds out 1% of documents); got {self.val_fraction}"
            )
        if self.max_documents < 0:
            raise ConfigError(f"max_documents must be 0 (no limit) or positive; got {self.max_documents}")
        if self.on_error not in ON_ERROR:
            raise ConfigError(f"on_error must be one of {', '.join(ON_ERROR)}; got {self.on_error!r}")
        if not self.text_field:
            raise ConfigError("text_field must name the field that holds the text (e.g. text_field=content)")

"""Experiment results cached by the code that produced them, so ``make book`` reruns only what changed.

An experiment's *code key* is a SHA-256 over the source of its module and of every ``scratchllm`` module it imports,
transitively (found by reading the import statements with ``ast``, so nothing is imported to compute it), plus the
keys of the experiments whose output it reads. ``docs/figures/manifest.json`` records, per experiment, the code key
and the arguments its files in ``docs/figures`` were made with. A result is fresh when the code key matches and it
was made with the arguments asked for, or with the full-size ones (a full result serves a quick build). The
committed figures and their manifest are therefore the cache, and a build that changes nothing runs nothing.

What is not in the key: data outside the package (the Python standard library the default corpus reads, the team's
shared data directory), the versions of torch and numpy, and the machine. Rerun with ``--force NAME`` after changing
those.
"""

from __future__ import annotations

import ast
import fcntl
import hashlib
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from ..fileio import atomic_write_text
from .experiments.registry import EXPERIMENTS, Experiment
from .source import BookError

MANIFEST = "manifest.json"
LOCK = ".manifest.lock"  # beside the manifest; never committed


def module_path(root: Path, module: str) -> Path | None:
    """The file of a dotted ``scratchllm`` module under ``root`` (a package's ``__init__.py``), or None."""
    base = root.joinpath(*module.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def _imports(root: Path, module: str, path: Path) -> set[str]:
    """Dotted names of the scratchllm modules (and their parent packages) that ``module``'s file imports."""
    is_package = path.name == "__init__.py"
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = module.split(".")
                base = parts[: len(parts) - node.level + (1 if is_package else 0)]
                prefix = ".".join(base + ([node.module] if node.module else []))
            else:
                prefix = node.module or ""
            names.add(prefix)
            names.update(f"{prefix}.{a.name}" for a in node.names)  # `from pkg import submodule`
    found = set()
    for name in names:
        if name.split(".")[0] != "scratchllm":
            continue
        parts = name.split(".")
        for k in range(1, len(parts) + 1):  # importing a.b.c runs a/__init__ and a/b/__init__ too
            if module_path(root, ".".join(parts[:k])):
                found.add(".".join(parts[:k]))
    return found


def dependencies(root: Path, module: str) -> list[Path]:
    """The files of ``module`` and of every scratchllm module it imports, transitively, sorted."""
    seen: dict[str, Path] = {}
    parts = module.split(".")
    todo = [".".join(parts[:k]) for k in range(1, len(parts) + 1)]  # a module's packages run before it
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        path = module_path(root, name)
        if path is None and name != module and (root / name.replace(".", "/")).is_dir():
            continue  # a directory without __init__.py (benchmarks/): a namespace package, no code of its own
        if path is None:
            raise BookError(f"experiment module {name} not found under {root}")
        seen[name] = path
        todo.extend(_imports(root, name, path) - seen.keys())
    return sorted(set(seen.values()))


def code_key(root: Path, exp: Experiment) -> str:
    """SHA-256 of the experiment's dependency files (path and content) and of the keys of what it needs."""
    h = hashlib.sha256()
    for path in dependencies(root, exp.module):
        h.update(str(path.relative_to(root)).encode() + b"\0" + path.read_bytes() + b"\0")
    for need in exp.needs:
        h.update(code_key(root, EXPERIMENTS[need]).encode())
    return h.hexdigest()


def read_manifest(figures: Path) -> dict:
    path = figures / MANIFEST
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}


def write_manifest(figures: Path, manifest: dict) -> None:
    atomic_write_text(figures / MANIFEST, json.dumps(dict(sorted(manifest.items())), indent=2) + "\n")


def update_manifest(figures: Path, entries: dict[str, dict]) -> dict:
    """Set ``entries`` in the manifest on disk and return it, holding a lock from the read to the write.

    Two builds running at once (a quick one and a ``--full --force`` one) each change only the entries of the
    experiments they ran; writing back a manifest read before the other build finished would erase its entries.
    """
    figures.mkdir(parents=True, exist_ok=True)
    with open(figures / LOCK, "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
        manifest = {**read_manifest(figures), **entries}
        write_manifest(figures, manifest)
    return manifest


@dataclass
class Status:
    name: str
    fresh: bool
    why: str  # for a stale result: what changed


def status(root: Path, figures: Path, exp: Experiment, full: bool, manifest: dict) -> Status:
    entry = manifest.get(exp.name)
    missing = [o for o in exp.outputs if not (figures / o).is_file()]
    if missing:
        return Status(exp.name, False, f"missing {', '.join(missing)}")
    if entry is None:
        return Status(exp.name, False, "not in the manifest")
    if entry["key"] != code_key(root, exp):
        return Status(exp.name, False, "its code changed")
    if entry["args"] not in ([exp.full] if full else [exp.quick, exp.full]):
        return Status(exp.name, False, f"made with {entry['args']}, not {exp.args(full)}")
    return Status(exp.name, True, "")


def _left_in(work: Path, name: str, manifest: dict) -> bool:
    """Whether ``work`` holds the scratch output (a demo's run directory) of the result ``manifest`` records for
    ``name``: experiments that need it read that, not the figures, so a fresh result alone is not enough."""
    marker = work / f".{name}.done"
    recorded = [manifest[name]["key"], manifest[name]["args"]] if name in manifest else None
    return marker.is_file() and json.loads(marker.read_text()) == recorded


def ensure(
    root: Path, figures: Path, work: Path, names: list[str], full: bool = False, run: bool = True,
    force: tuple[str, ...] = (), log=print,
) -> list[Status]:  # fmt: skip
    """Bring the named experiments' results up to date, running stale ones (and what they need) when ``run``.

    Returns the statuses after the run; with ``run=False`` stale results are left as they are and reported.
    """
    manifest = read_manifest(figures)
    order: list[str] = []

    def visit(name: str) -> None:
        for need in EXPERIMENTS[name].needs:
            visit(need)
        if name not in order:
            order.append(name)

    for name in names:
        visit(name)
    wanted = set(names)
    statuses = {n: status(root, figures, EXPERIMENTS[n], full, manifest) for n in order}
    for name in force:
        statuses[name] = Status(name, False, "forced")
    # an experiment that is only needed by others runs only when one of those has to run
    to_run = {n for n in order if n in wanted and not statuses[n].fresh}
    for name in reversed(order):
        if name in to_run:
            to_run.update(n for n in EXPERIMENTS[name].needs if not (statuses[n].fresh and _left_in(work, n, manifest)))
    for name in order if run else []:
        if name not in to_run:
            continue
        exp, mode = EXPERIMENTS[name], "full" if full else "quick"
        log(f"book: running experiment {name} ({mode}: {statuses[name].why})")
        start = time.perf_counter()
        work.mkdir(parents=True, exist_ok=True)
        (work / f".{name}.done").unlink(missing_ok=True)  # a run that fails leaves no claim on its scratch output
        exp.runner(exp.args(full), figures, work)
        seconds = round(time.perf_counter() - start, 1)
        entry = {"key": code_key(root, exp), "args": exp.args(full), "mode": mode, "seconds": seconds,
                 "python": sys.version.split()[0], "outputs": list(exp.outputs)}  # fmt: skip
        manifest = update_manifest(figures, {name: entry})
        atomic_write_text(work / f".{name}.done", json.dumps([entry["key"], entry["args"]]))  # scratch output complete
        log(f"book: {name} done in {seconds:.0f} s")
        statuses[name] = Status(name, True, "")
    return [statuses[n] for n in order if n in wanted]


def record(root: Path, figures: Path, names: list[str], full: bool) -> list[str]:
    """Mark the results now in ``figures`` as made by the current code with the mode's arguments, without running.

    For results made before the manifest existed, by the same code; it is a claim, so the manifest notes it.
    """
    entries = {}
    for name in names:
        exp = EXPERIMENTS[name]
        if all((figures / o).is_file() for o in exp.outputs):
            entries[name] = {"key": code_key(root, exp), "args": exp.args(full), "mode": "full" if full else "quick",
                             "recorded": True, "outputs": list(exp.outputs)}  # fmt: skip
    update_manifest(figures, entries)
    recorded = list(entries)
    return recorded

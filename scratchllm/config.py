"""Configuration: dataclasses loaded from TOML files and overridden by ``key=value`` on the command line.

Every concern (model, data, training, ...) has one small dataclass whose fields carry defaults and documentation.
This module is the generic machinery around them:

    cfg = load_config(TrainConfig, "configs/tiny.toml", ["optim.lr=1e-3", "max_steps=200"])
    save_config(cfg, run_dir / "config.toml")   # the fully resolved config, next to the outputs

Values are layered: the dataclass defaults, then the TOML file (nested tables map onto nested dataclass fields), then
the overrides in order. An override's value is read as a TOML literal when it is one (``3``, ``1e-3``, ``true``,
``[1, 2]``, ``"x"``) and as a bare string otherwise, so ``name=gpt2`` needs no quotes. Every value is then checked
against its field's annotation, and the dataclass is constructed normally so its ``__post_init__`` validation runs.

Config files are data, never code: nanoGPT's ``configurator.py`` executes Python files and so can do anything,
including mistakes that surface far from their cause. Here a typo is an error that names the key, the file or
override it came from, and the closest valid key.
"""

from __future__ import annotations

import dataclasses
import difflib
import os
import re
import tomllib
import types
import typing
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

from .fileio import atomic_write_text

T = TypeVar("T")


class ConfigError(ValueError):
    """A configuration value, key, file or override is wrong; the message says what and how to fix it."""


# --------------------------------------------------------------------------------------------------------------------
# Loading


@dataclasses.dataclass(frozen=True)
class _Override:
    """An override value: the parsed TOML literal plus the raw text, so that a ``str`` field given ``name=123`` gets
    the string ``"123"`` the user typed instead of a type error."""

    text: str
    value: Any


def load_config(cls: type[T], path: str | os.PathLike | None = None, overrides: Sequence[str] = ()) -> T:
    """Build a ``cls`` instance from its defaults, then the TOML file at ``path``, then ``dotted.key=value`` overrides.

    Raises ConfigError for an unreadable or malformed file, a malformed override, an unknown key, a value of the
    wrong type, or a value that the dataclass's own validation rejects.
    """
    if not (isinstance(cls, type) and dataclasses.is_dataclass(cls)):
        raise TypeError(f"load_config needs a dataclass type, got {cls!r}")
    if isinstance(overrides, str):  # a lone "a=1" would otherwise be iterated character by character
        overrides = [overrides]

    values: dict[str, Any] = {}
    origins: dict[tuple[str, ...], str] = {}  # key path -> where its value came from, for error messages
    if path is not None:
        values = _read_toml(Path(path))
        _record_origins(values, (), f"config file {str(path)!r}", origins)
    for item in overrides:
        keys, value = _parse_override(item)
        _set_dotted(values, keys, value, item)
        origins[keys] = f"override {item!r}"

    return _build(cls, values, (), origins)


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as f:
            return tomllib.load(f)
    except FileNotFoundError:
        raise ConfigError(f"config file {str(path)!r} does not exist; check the path given to --config") from None
    except OSError as e:
        raise ConfigError(f"cannot read config file {str(path)!r}: {e.strerror or e}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"config file {str(path)!r} is not UTF-8 text; TOML files must be UTF-8") from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"config file {str(path)!r} is not valid TOML: {e}") from None


def _record_origins(table: Mapping[str, Any], prefix: tuple[str, ...], origin: str, out: dict) -> None:
    for key, value in table.items():
        out[prefix + (key,)] = origin
        if isinstance(value, dict):
            _record_origins(value, prefix + (key,), origin, out)


_KEY_PART = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def _parse_override(item: str) -> tuple[tuple[str, ...], _Override]:
    key, sep, text = item.partition("=")
    key = key.strip()
    if not sep or not key:
        raise ConfigError(
            f"malformed override {item!r}: expected key=value, for example lr=3e-4 or model.n_layer=4 "
            "(nested fields are reached with dots)"
        )
    parts = tuple(key.split("."))
    if not all(_KEY_PART.fullmatch(p) for p in parts):
        raise ConfigError(
            f"malformed override {item!r}: the key {key!r} must be names joined by dots, like model.n_layer"
        )
    text = text.strip()
    try:
        value = tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        value = text  # not a TOML literal: a bare string such as name=gpt2 or path=data/x.jsonl
    return parts, _Override(text, value)


def _set_dotted(values: dict[str, Any], keys: tuple[str, ...], value: _Override, item: str) -> None:
    table = values
    for i, key in enumerate(keys[:-1]):
        sub = table.setdefault(key, {})
        if not isinstance(sub, dict):
            # e.g. the file says `model = "gpt2"` and the override says model.n_layer=4
            raise ConfigError(f"override {item!r}: {'.'.join(keys[: i + 1])!r} is a value, not a table")
        table = sub
    table[keys[-1]] = value


def _build(cls: type[T], values: Mapping[str, Any], prefix: tuple[str, ...], origins: dict, base: Any = None) -> T:
    """Construct ``cls`` from a (possibly partial) table of raw values. Missing fields keep the values of ``base``
    when given (the default instance the enclosing config declares for this table), else the class defaults."""
    if base is not None and isinstance(base, cls):
        cls = type(base)  # a default_factory may give a subclass with other defaults: keep it
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    hints = typing.get_type_hints(cls)
    kwargs = {}
    for key, raw in values.items():
        path = prefix + (key,)
        if key not in fields:
            raise ConfigError(_unknown_key_message(cls, path, sorted(fields), origins))
        tp = hints[key]
        if isinstance(raw, dict) and dataclasses.is_dataclass(tp) and isinstance(tp, type):
            # A partial table for a nested config starts from that field's own default, not from the nested
            # class's defaults: `corpus.path=x` must not reset a held-out corpus's split to "train".
            kwargs[key] = _build(tp, raw, path, origins, _field_default(fields[key], base))
        else:
            kwargs[key] = _coerce(raw, tp, path, origins)
    if base is not None and isinstance(base, cls):
        kwargs = {name: getattr(base, name) for name in fields if name not in kwargs} | kwargs
    try:
        return cls(**kwargs)
    except ConfigError:
        raise
    except (TypeError, ValueError) as e:
        # A required field left unset (TypeError) or a __post_init__ check written with a plain ValueError.
        where = f" (table [{'.'.join(prefix)}])" if prefix else ""
        raise ConfigError(f"invalid {cls.__name__}{where}: {e}") from None


def _field_default(field: dataclasses.Field, parent: Any) -> Any:
    """The value a field has when its table is absent: the parent instance's, or the field's own default."""
    if parent is not None:
        return getattr(parent, field.name)
    if field.default_factory is not dataclasses.MISSING:
        return field.default_factory()
    return None if field.default is dataclasses.MISSING else field.default


def _unknown_key_message(cls: type, path: tuple[str, ...], valid: list[str], origins: dict) -> str:
    key = path[-1]
    message = f"unknown key {_dotted(path)!r} in {cls.__name__}{_origin(path, origins)}"
    close = difflib.get_close_matches(key, valid, n=1, cutoff=0.6)
    if close:
        message += f"; did you mean {_dotted(path[:-1] + (close[0],))!r}?"
    return message + f" Valid keys: {', '.join(valid)}"


def _origin(path: tuple[str, ...], origins: dict) -> str:
    # A key inside an inline table given by an override has no entry of its own: use its nearest ancestor's.
    for n in range(len(path), 0, -1):
        if path[:n] in origins:
            return f" (from {origins[path[:n]]})"
    return ""


def _coerce(raw: Any, tp: Any, path: tuple[str, ...], origins: dict) -> Any:
    """Check ``raw`` against the annotation ``tp`` and convert where the conversion is lossless."""
    text = raw.text if isinstance(raw, _Override) else None
    value = raw.value if isinstance(raw, _Override) else raw
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)

    def fail(expected: str) -> typing.NoReturn:
        shown = text if text is not None else _describe(value)
        raise ConfigError(f"{_dotted(path)}: expected {expected}, got {shown}{_origin(path, origins)}")

    if tp is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        options = [a for a in args if a is not type(None)]
        if len(options) == 1:  # Optional[X]: TOML has no null, so the value must be an X; keep X's own message
            return _coerce(raw, options[0], path, origins)
        for option in options:  # first match wins, so list the most specific type first in an annotation
            try:
                return _coerce(raw, option, path, origins)
            except ConfigError:
                continue
        fail(" or ".join(_type_name(a) for a in options))
    if origin is typing.Literal:
        for choice in args:
            if value == choice and type(value) is type(choice):
                return choice
            if text is not None and isinstance(choice, str) and text == choice:
                return choice
        fail("one of " + ", ".join(repr(a) for a in args))
    if dataclasses.is_dataclass(tp) and isinstance(tp, type):
        if isinstance(value, tp):
            return value
        if not isinstance(value, dict):
            fail(f"a table of {tp.__name__} fields")
        return _build(tp, value, path, origins)
    if tp is bool:
        if isinstance(value, bool):
            return value
        if text is not None and text.lower() in ("true", "false"):  # forgive Python's True/False on a command line
            return text.lower() == "true"
        fail("true or false")
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():  # max_steps=1e6 is a common way to write an integer
            return int(value)
        fail("an integer")
    if tp is float:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
        fail("a number")
    if tp is str or tp is Path:
        if isinstance(value, str):
            return tp(value)
        if text is not None:  # name=123 on the command line means the string "123"
            return tp(text)
        fail("a string")
    if origin in (list, tuple) or tp in (list, tuple):
        if not isinstance(value, list):
            fail(f"a list ({_type_name(tp)})")
        if origin is tuple and args and args[-1] is not Ellipsis:  # tuple[int, str]: fixed length and types
            if len(args) != len(value):
                fail(f"a list of {len(args)} items ({_type_name(tp)})")
            item_types = list(args)
        else:  # list[X], tuple[X, ...], or a bare list / tuple
            item_types = [args[0] if args else Any] * len(value)
        items = [_coerce(v, t, path + (f"[{i}]",), origins) for i, (v, t) in enumerate(zip(value, item_types))]
        return tuple(items) if (origin or tp) is tuple else items
    if origin is dict or tp is dict:
        if not isinstance(value, dict):
            fail("a table")
        value_type = args[1] if len(args) == 2 else Any
        return {k: _coerce(v, value_type, path + (k,), origins) for k, v in value.items()}
    raise TypeError(f"{_dotted(path)}: load_config does not support fields annotated {tp!r}")


def _dotted(path: tuple[str, ...]) -> str:
    # List items are path elements like "[2]" so that error origins can be found by prefix; they print as tags[2].
    return "".join(p if p.startswith("[") or i == 0 else "." + p for i, p in enumerate(path))


def _describe(value: Any) -> str:
    kind = {bool: "a boolean", int: "an integer", float: "a number", str: "a string", list: "a list", dict: "a table"}
    return f"{kind.get(type(value), type(value).__name__)} ({value!r})"


def _type_name(tp: Any) -> str:
    return tp.__name__ if isinstance(tp, type) and not typing.get_args(tp) else str(tp).replace("typing.", "")


# --------------------------------------------------------------------------------------------------------------------
# Saving


def config_to_dict(cfg: Any) -> dict[str, Any]:
    """The config as plain nested dicts of TOML/JSON-friendly values (Path -> str, tuple -> list; None kept).

    Fields declared with ``init=False`` are derived in ``__post_init__`` and are left out: they are recomputed when the
    config is loaded again, and ``load_config`` would reject them as keys that cannot be set.
    """
    if not dataclasses.is_dataclass(cfg) or isinstance(cfg, type):
        raise TypeError(f"config_to_dict needs a dataclass instance, got {cfg!r}")
    return {f.name: _plain(getattr(cfg, f.name)) for f in dataclasses.fields(cfg) if f.init}


def _plain(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return config_to_dict(value)
    if isinstance(value, Path):
        return value.as_posix()
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    return value


def to_toml(cfg: Any) -> str:
    """Serialize a config dataclass as TOML: scalars first, then one ``[table]`` per nested dataclass (or dict).

    None has no TOML spelling, so None fields are left out; loading the text back gives them their default.
    """
    lines: list[str] = []
    _emit_table(config_to_dict(cfg), (), lines)
    return "\n".join(lines).lstrip("\n") + "\n"


def _emit_table(table: dict[str, Any], prefix: tuple[str, ...], lines: list[str]) -> None:
    # TOML requires a table's own key/value pairs before any of its sub-tables.
    subtables = {k: v for k, v in table.items() if isinstance(v, dict)}
    if prefix:
        lines.extend(["", "[" + ".".join(_toml_key(k) for k in prefix) + "]"])
    for key, value in table.items():
        if value is None or key in subtables:
            continue
        lines.append(f"{_toml_key(key)} = {_toml_value(value, prefix + (key,))}")
    for key, value in subtables.items():
        _emit_table(value, prefix + (key,), lines)


_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")


def _toml_key(key: str) -> str:
    return key if _BARE_KEY.fullmatch(key) else _toml_string(key)


def _toml_value(value: Any, path: tuple[str, ...]) -> str:
    if isinstance(value, bool):  # before int: bool is a subclass of int
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        # repr gives the shortest text that round-trips; inf and nan are spelled the same way in TOML.
        return repr(value)
    if isinstance(value, str):
        return _toml_string(value)
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v, path) for v in value) + "]"
    raise ConfigError(f"{_dotted(path)}: cannot write {_describe(value)} to TOML")


_ESCAPES = {'"': '\\"', "\\": "\\\\", "\b": "\\b", "\t": "\\t", "\n": "\\n", "\f": "\\f", "\r": "\\r"}


def _toml_string(s: str) -> str:
    out = []
    for ch in s:
        if ch in _ESCAPES:
            out.append(_ESCAPES[ch])
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:  # other control characters are not allowed raw in a basic string
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


def save_config(cfg: Any, path: str | os.PathLike) -> Path:
    """Write ``to_toml(cfg)`` to ``path`` atomically, so a crash never leaves a half-written config next to a run's
    outputs. Returns the path written."""
    return atomic_write_text(path, to_toml(cfg))

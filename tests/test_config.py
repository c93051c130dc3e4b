"""Tests for scratchllm.config: layering of defaults, TOML and overrides; type checks; errors; the TOML round trip."""

from __future__ import annotations

import math
import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import pytest

from scratchllm.config import ConfigError, config_to_dict, load_config, save_config, to_toml
from scratchllm.data import CorpusConfig


@dataclass
class OptimConfig:
    lr: float = 3e-4
    betas: tuple[float, float] = (0.9, 0.95)
    weight_decay: float = 0.1


@dataclass
class ModelConfig:
    vocab_size: int = 512
    n_layer: int = 2
    bias: bool = False
    norm: Literal["layernorm", "rmsnorm"] = "layernorm"

    def __post_init__(self) -> None:
        if self.n_layer < 1:
            raise ConfigError(f"n_layer must be at least 1; got {self.n_layer}")


@dataclass
class RunConfig:
    name: str = "run"
    out_dir: Path = Path("runs")
    max_steps: int = 100
    seed: int | None = None
    init_from: str | None = None
    layers_to_freeze: list[int] = field(default_factory=list)
    tags: list[str] = field(default_factory=lambda: ["demo"])
    model: ModelConfig = field(default_factory=ModelConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)

    def __post_init__(self) -> None:
        if self.max_steps <= 0:
            raise ValueError(f"max_steps must be positive; got {self.max_steps}")


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "cfg.toml"
    path.write_text(text, encoding="utf-8")
    return path


# ---------------------------------------------------------------------------------------------------------------------
# Layering


def test_defaults_when_nothing_given():
    assert load_config(RunConfig) == RunConfig()


def test_toml_file_sets_top_level_and_nested_fields(tmp_path):
    path = write(
        tmp_path,
        """
        name = "tiny"
        max_steps = 50
        tags = ["a", "b"]

        [model]
        vocab_size = 1024
        norm = "rmsnorm"

        [optim]
        betas = [0.8, 0.99]
        """,
    )
    cfg = load_config(RunConfig, path)
    assert cfg.name == "tiny" and cfg.max_steps == 50 and cfg.tags == ["a", "b"]
    assert cfg.model == ModelConfig(vocab_size=1024, n_layer=2, norm="rmsnorm")  # unset nested field keeps default
    assert cfg.optim.betas == (0.8, 0.99) and isinstance(cfg.optim.betas, tuple)
    assert cfg.optim.lr == 3e-4


def test_overrides_beat_the_file_and_apply_in_order(tmp_path):
    path = write(tmp_path, "max_steps = 50\n[model]\nn_layer = 4\n")
    cfg = load_config(RunConfig, path, ["model.n_layer=6", "max_steps=7", "max_steps=8"])
    assert cfg.model.n_layer == 6
    assert cfg.max_steps == 8


def test_override_values_are_toml_literals_or_bare_strings():
    cfg = load_config(
        RunConfig,
        overrides=[
            "optim.lr=1e-3",
            "model.bias=true",
            "layers_to_freeze=[0, 1]",
            'tags=["x", "y z"]',
            "name=gpt2-small",  # not a TOML literal: a bare string
            "out_dir=/tmp/my runs",
            "seed=1234",
        ],
    )
    assert cfg.optim.lr == 1e-3
    assert cfg.model.bias is True
    assert cfg.layers_to_freeze == [0, 1]
    assert cfg.tags == ["x", "y z"]
    assert cfg.name == "gpt2-small"
    assert cfg.out_dir == Path("/tmp/my runs")
    assert cfg.seed == 1234


def test_string_field_keeps_the_text_the_user_typed():
    # "123" parses as a TOML integer, but the field is a string: the user meant the text, including its spelling.
    assert load_config(RunConfig, overrides=["name=0123"]).name == "0123"
    assert load_config(RunConfig, overrides=["init_from=1e3"]).init_from == "1e3"
    assert load_config(RunConfig, overrides=['name="quoted"']).name == "quoted"


def test_coercions_that_lose_nothing_are_accepted():
    cfg = load_config(RunConfig, overrides=["optim.lr=1", "max_steps=1e6", "model.bias=True"])
    assert cfg.optim.lr == 1.0 and isinstance(cfg.optim.lr, float)
    assert cfg.max_steps == 1_000_000 and isinstance(cfg.max_steps, int)
    assert cfg.model.bias is True


def test_inline_table_override_sets_a_nested_dataclass():
    cfg = load_config(RunConfig, overrides=['model={vocab_size = 64, norm = "rmsnorm"}'])
    assert cfg.model == ModelConfig(vocab_size=64, norm="rmsnorm")


def test_a_single_string_is_one_override_not_a_sequence_of_characters():
    assert load_config(RunConfig, overrides="max_steps=3").max_steps == 3


# ---------------------------------------------------------------------------------------------------------------------
# Errors


def test_unknown_key_names_it_suggests_the_closest_and_lists_valid_keys():
    with pytest.raises(ConfigError) as e:
        load_config(RunConfig, overrides=["model.vocab_sise=100"])
    message = str(e.value)
    assert "unknown key 'model.vocab_sise'" in message
    assert "did you mean 'model.vocab_size'?" in message
    assert "Valid keys: bias, n_layer, norm, vocab_size" in message
    assert "override 'model.vocab_sise=100'" in message


def test_unknown_key_in_a_file_names_the_file(tmp_path):
    path = write(tmp_path, "[optim]\nlearning_rate = 0.1\n")
    with pytest.raises(
        ConfigError, match=r"unknown key 'optim.learning_rate' in OptimConfig \(from config file .*cfg.toml"
    ):
        load_config(RunConfig, path)


def test_unknown_key_far_from_any_valid_key_has_no_suggestion():
    with pytest.raises(ConfigError) as e:
        load_config(RunConfig, overrides=["zzz=1"])
    assert "did you mean" not in str(e.value)
    assert "Valid keys: init_from, layers_to_freeze, max_steps, model, name, optim, out_dir, seed, tags" in str(e.value)


@pytest.mark.parametrize(
    "override, expected",
    [
        ("max_steps=ten", "max_steps: expected an integer, got ten"),
        ("max_steps=2.5", "max_steps: expected an integer, got 2.5"),
        ("max_steps=true", "max_steps: expected an integer, got true"),
        ("optim.lr=fast", "optim.lr: expected a number, got fast"),
        ("model.bias=1", "model.bias: expected true or false, got 1"),
        ("model.norm=batchnorm", "model.norm: expected one of 'layernorm', 'rmsnorm', got batchnorm"),
        ("layers_to_freeze=[0, 'a']", "layers_to_freeze[1]: expected an integer, got a string ('a')"),
        ("layers_to_freeze=3", "layers_to_freeze: expected a list"),
        ("optim.betas=[0.9]", "optim.betas: expected a list of 2 items"),
        ("model=small", "model: expected a table of ModelConfig fields, got small"),
        ("seed=abc", "seed: expected an integer, got abc"),
    ],
)
def test_wrong_types_are_reported_with_key_and_value(override, expected):
    with pytest.raises(ConfigError) as e:
        load_config(RunConfig, overrides=[override])
    assert expected in str(e.value)
    assert f"(from override {override!r})" in str(e.value)


def test_wrong_type_in_a_file_names_the_file(tmp_path):
    path = write(tmp_path, 'name = 5\n[model]\nn_layer = "four"\n')
    with pytest.raises(ConfigError) as e:
        load_config(RunConfig, path)
    # A file value is typed by TOML, so there is no raw text to fall back on: 5 is not a string.
    assert "name: expected a string, got an integer (5)" in str(e.value)
    assert str(path) in str(e.value)


@pytest.mark.parametrize("override", ["max_steps", "=3", "model..n_layer=2", "model.n-layer=2", " =x"])
def test_malformed_overrides(override):
    with pytest.raises(ConfigError, match="malformed override"):
        load_config(RunConfig, overrides=[override])


def test_override_into_a_value_that_is_not_a_table():
    with pytest.raises(ConfigError, match="'name' is a value, not a table"):
        load_config(RunConfig, overrides=["name=x", "name.first=y"])


def test_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="does not exist; check the path given to --config"):
        load_config(RunConfig, tmp_path / "nope.toml")


def test_malformed_toml(tmp_path):
    path = write(tmp_path, "max_steps = = 3\n")
    with pytest.raises(ConfigError, match=r"is not valid TOML: .*line 1"):
        load_config(RunConfig, path)


def test_file_that_is_not_utf8(tmp_path):
    path = tmp_path / "latin1.toml"
    path.write_bytes('name = "caf\xe9"\n'.encode("latin-1"))
    with pytest.raises(ConfigError, match="not valid TOML|not UTF-8"):
        load_config(RunConfig, path)


def test_unreadable_file(tmp_path):
    # A directory in place of a file is unreadable on every platform, even as root.
    with pytest.raises(ConfigError, match="cannot read config file"):
        load_config(RunConfig, tmp_path)


def test_post_init_validation_runs_on_loaded_values():
    with pytest.raises(ConfigError, match="n_layer must be at least 1; got 0"):
        load_config(RunConfig, overrides=["model.n_layer=0"])
    # A plain ValueError from __post_init__ becomes a ConfigError that names the class.
    with pytest.raises(ConfigError, match="invalid RunConfig: max_steps must be positive; got -1"):
        load_config(RunConfig, overrides=["max_steps=-1"])


def test_config_error_is_a_value_error():
    assert issubclass(ConfigError, ValueError)


def test_load_config_rejects_a_non_dataclass():
    with pytest.raises(TypeError):
        load_config(dict)


# ---------------------------------------------------------------------------------------------------------------------
# Saving and the round trip


def test_config_to_dict_is_plain_data():
    d = config_to_dict(RunConfig(out_dir=Path("a/b")))
    assert d["out_dir"] == "a/b"
    assert d["optim"] == {"lr": 3e-4, "betas": [0.9, 0.95], "weight_decay": 0.1}
    assert d["seed"] is None
    assert d["model"]["norm"] == "layernorm"


def test_to_toml_layout_and_none_omitted():
    text = to_toml(RunConfig())
    assert text.splitlines()[:6] == [
        'name = "run"',
        'out_dir = "runs"',
        "max_steps = 100",
        "layers_to_freeze = []",
        'tags = ["demo"]',
        "",
    ]
    assert "seed" not in text and "init_from" not in text
    assert "[model]\nvocab_size = 512\nn_layer = 2\nbias = false\n" in text
    assert "[optim]\nlr = 0.0003\nbetas = [0.9, 0.95]\n" in text
    assert tomllib.loads(text) == {k: v for k, v in config_to_dict(RunConfig()).items() if v is not None}


def test_to_toml_escapes_strings_and_quotes_keys():
    @dataclass
    class Strings:
        text: str = ""
        table: dict[str, int] = field(default_factory=dict)

    tricky = 'quote " backslash \\ tab \t newline \n bell \x07 del \x7f unicode é ∑ 🙂'
    cfg = Strings(text=tricky, table={"a key with spaces": 1, "dotted.key": 2, "plain_key": 3})
    text = to_toml(cfg)
    assert '"a key with spaces" = 1' in text and '"dotted.key" = 2' in text and "plain_key = 3" in text
    assert tomllib.loads(text) == {"text": tricky, "table": cfg.table}


def test_to_toml_floats_round_trip_exactly():
    @dataclass
    class Floats:
        values: list[float] = field(default_factory=list)

    values = [0.1, 1e-5, 3e-4, 1e300, -2.5e-310, 1.0, -0.0, math.inf, -math.inf, 123456789.123456789]
    parsed = tomllib.loads(to_toml(Floats(values)))["values"]
    assert [repr(v) for v in parsed] == [repr(v) for v in values]


def test_round_trip_through_save_and_load(tmp_path):
    cfg = load_config(
        RunConfig,
        overrides=[
            'name=run "7" \\ é',
            "out_dir=out/x",
            "seed=0",
            "init_from=ckpt",
            "layers_to_freeze=[3, 1]",
            "tags=[]",
            "model.norm=rmsnorm",
            "model.bias=true",
            "optim.lr=6e-4",
            "optim.betas=[0.85, 0.999]",
        ],
    )
    path = save_config(cfg, tmp_path / "run" / "config.toml")
    assert path == tmp_path / "run" / "config.toml"
    assert load_config(RunConfig, path) == cfg


def test_derived_fields_are_not_written_and_are_recomputed_on_load(tmp_path):
    @dataclass
    class Heads:
        n_embd: int = 64
        n_head: int = 4
        head_dim: int = field(init=False)

        def __post_init__(self) -> None:
            self.head_dim = self.n_embd // self.n_head

    cfg = Heads(n_embd=128)
    assert config_to_dict(cfg) == {"n_embd": 128, "n_head": 4}
    assert load_config(Heads, save_config(cfg, tmp_path / "heads.toml")).head_dim == 32
    with pytest.raises(ConfigError, match="unknown key 'head_dim'"):
        load_config(Heads, overrides=["head_dim=3"])


def test_save_config_is_atomic_and_leaves_no_temporary_files(tmp_path, monkeypatch):
    path = tmp_path / "config.toml"
    save_config(RunConfig(name="first"), path)
    assert sorted(os.listdir(tmp_path)) == ["config.toml"]

    # If the rename fails, the old file is untouched and the temporary file is removed.
    def broken_replace(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", broken_replace)
    with pytest.raises(OSError, match="disk full"):
        save_config(RunConfig(name="second"), path)
    assert sorted(os.listdir(tmp_path)) == ["config.toml"]
    assert load_config(RunConfig, path).name == "first"


def test_unwritable_value_is_a_config_error():
    @dataclass
    class Nested:
        items: list[dict] = field(default_factory=lambda: [{"a": 1}])

    with pytest.raises(ConfigError, match="items: cannot write a table"):
        to_toml(Nested())


def test_atomic_writes_get_ordinary_permissions(tmp_path):
    import os
    import stat

    from scratchllm.fileio import atomic_write_text

    mask = os.umask(0o022)
    try:
        path = atomic_write_text(tmp_path / "f.txt", "x")
    finally:
        os.umask(mask)
    assert stat.S_IMODE(path.stat().st_mode) == 0o644


def test_a_partial_nested_table_starts_from_the_fields_own_default():
    """`corpus.path=x` on a job whose corpus defaults to the held-out split must keep split="val"."""

    @dataclass
    class Job:
        corpus: CorpusConfig = field(default_factory=lambda: CorpusConfig(split="val", max_documents=7))

    job = load_config(Job, None, ["corpus.path=somewhere"])
    assert (job.corpus.split, job.corpus.max_documents, job.corpus.path) == ("val", 7, "somewhere")
    assert load_config(Job).corpus.split == "val"

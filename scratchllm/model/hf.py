"""Hugging Face interoperability: load ``GPT2LMHeadModel`` and ``LlamaForCausalLM`` weights into our GPT, and save
our GPT so that ``transformers.AutoModelForCausalLM.from_pretrained`` loads it.

Both directions are a renaming of tensors plus a translation of ``config.json`` into ``GPTConfig``; the arithmetic is
the same, so logits agree to float rounding (the tests use ``transformers`` as the oracle). Two details need care:

- GPT-2 stores its linear layers as ``Conv1D``, whose weight is (in, out), the transpose of ``nn.Linear``'s (out, in),
  and fuses the query, key and value projections into one ``c_attn`` matrix, which we split into three.
- Llama needs no permutation: our RoPE rotates dimension i with i + head_dim/2 (``rotate_half``), the layout of HF's
  checkpoints. Only the rotary scalings that we implement (none, and linear interpolation) are accepted; any other
  (llama3, yarn, dynamic, ...) would load without error but compute a different model, so it is refused.

Weights are read and written with safetensors only: nothing here unpickles a file. Each architecture is one small
class (``GPT2Format``, ``LlamaFormat``), chosen once from the config.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from ..config import ConfigError
from .config import GPTConfig

MISMATCH_HINT = (
    "the checkpoint's config does not match its weights: pass the right config or let from_hf read config.json"
)
ONE, BOTH = ("weight",), ("weight", "bias")


def _pairs(ours: str, theirs: str, kinds: tuple[str, ...], transpose: bool = False) -> list[tuple[str, str, bool]]:
    """(our name, HF name, transpose) for the weight (and bias) of one module; only weights are ever transposed."""
    return [(f"{ours}.{kind}", f"{theirs}.{kind}", transpose and kind == "weight") for kind in kinds]


def _take(hf: dict[str, torch.Tensor], name: str) -> torch.Tensor:
    if name not in hf:
        raise ConfigError(f"the checkpoint has no tensor {name!r}, which the config needs; {MISMATCH_HINT}")
    return hf.pop(name)


def _mismatches(cfg: GPTConfig, **required) -> list[str]:
    """The fields of ``cfg`` that differ from ``required``, as readable 'field=value' strings."""
    return [f"{k}={v!r} (has {getattr(cfg, k)!r})" for k, v in required.items() if getattr(cfg, k) != v]


class Format:
    """One Hugging Face architecture: its config translation and its tensor names.

    ``names(cfg)`` lists (our name, HF name, transpose) for every tensor that is a plain rename; a subclass adds
    whatever is not (GPT-2's fused qkv) in ``to_ours`` / ``to_hf``. HF names are given without ``prefix``.
    """

    model_type = architecture = prefix = ""
    ignored: tuple[str, ...] = ()  # suffixes of HF buffers that are not weights (causal masks, RoPE tables)

    def names(self, cfg: GPTConfig) -> list[tuple[str, str, bool]]: ...

    def head(self, cfg: GPTConfig) -> list[tuple[str, str, bool]]:
        # A tied head is the embedding: HF leaves it out of the checkpoint and re-ties it on load, as we do.
        return [] if cfg.tie_embeddings else _pairs("lm_head", "lm_head", ONE)

    def problems(self, cfg: GPTConfig) -> list[str]: ...  # why cfg is not expressible here; empty if it is

    def config_from_hf(self, hf: Mapping) -> GPTConfig: ...

    def config_to_hf(self, cfg: GPTConfig) -> dict: ...

    def to_ours(self, hf: dict[str, torch.Tensor], cfg: GPTConfig) -> dict[str, tuple[str, torch.Tensor]]:
        """Pop HF tensors out of ``hf``; return our name -> (HF name it came from, tensor in our layout)."""
        out = {}
        for ours, theirs, transpose in self.names(cfg):
            tensor = _take(hf, theirs)
            out[ours] = (theirs, tensor.t() if transpose else tensor)
        return out

    def full_name(self, name: str) -> str:
        """The name in a saved checkpoint: the head sits outside the base model (``transformer.`` in GPT-2)."""
        return name if name.startswith("lm_head") else self.prefix + name

    def to_hf(self, ours: Mapping[str, torch.Tensor], cfg: GPTConfig) -> dict[str, torch.Tensor]:
        return {theirs: ours[name].t() if transpose else ours[name] for name, theirs, transpose in self.names(cfg)}


# Our module -> GPT-2's, within block i. True marks a Conv1D, whose weight is stored (in, out).
GPT2_BLOCK = [("norm1", "ln_1", False), ("norm2", "ln_2", False), ("attn.o_proj", "attn.c_proj", True),
              ("mlp.up", "mlp.c_fc", True), ("mlp.down", "mlp.c_proj", True)]  # fmt: skip


class GPT2Format(Format):
    model_type, architecture, prefix = "gpt2", "GPT2LMHeadModel", "transformer."
    ignored = (".attn.bias", ".attn.masked_bias")  # HF's causal-mask buffers, present in older checkpoints
    # HF's names for GELU with the tanh approximation, the GELU GPT-2 was trained with (exact GELU differs ~1e-3).
    activations = ("gelu_new", "gelu_pytorch_tanh")

    def names(self, cfg):
        names = _pairs("tok_emb", "wte", ONE) + _pairs("pos", "wpe", ONE) + _pairs("norm_f", "ln_f", BOTH)
        for i in range(cfg.n_layer):
            for ours, theirs, conv1d in GPT2_BLOCK:
                names += _pairs(f"blocks.{i}.{ours}", f"h.{i}.{theirs}", BOTH, transpose=conv1d)
        return names + self.head(cfg)

    def to_ours(self, hf, cfg):
        out = super().to_ours(hf, cfg)
        for i in range(cfg.n_layer):
            for kind in ("weight", "bias"):
                name = f"h.{i}.attn.c_attn.{kind}"
                fused = _take(hf, name)
                fused = fused.t() if kind == "weight" else fused  # (3d, d) or (3d,): q, k, v stacked
                for proj, part in zip(("q_proj", "k_proj", "v_proj"), fused.tensor_split(3, dim=0)):
                    out[f"blocks.{i}.attn.{proj}.{kind}"] = (name, part)  # (d, d) or (d,)
        return out

    def to_hf(self, ours, cfg):
        out = super().to_hf(ours, cfg)
        for i in range(cfg.n_layer):
            q, k, v = (f"blocks.{i}.attn.{p}_proj" for p in "qkv")
            fused = torch.cat([ours[f"{q}.weight"], ours[f"{k}.weight"], ours[f"{v}.weight"]])  # (3d, d)
            out[f"h.{i}.attn.c_attn.weight"] = fused.t()  # (d, 3d): Conv1D layout
            out[f"h.{i}.attn.c_attn.bias"] = torch.cat([ours[f"{q}.bias"], ours[f"{k}.bias"], ours[f"{v}.bias"]])
        return out

    def problems(self, cfg):
        problems = _mismatches(cfg, pos_encoding="learned", norm="layernorm", mlp="gelu", bias=True)
        if cfg.kv_heads != cfg.n_head:
            problems.append(f"n_kv_head=n_head (has {cfg.kv_heads} kv heads for {cfg.n_head} heads)")
        return problems

    def config_from_hf(self, hf):
        if hf.get("activation_function", "gelu_new") not in self.activations:
            raise ConfigError(
                f"GPT-2 activation_function {hf['activation_function']!r} is not supported; "
                f"our GELU MLP is the tanh approximation ({' or '.join(self.activations)})"
            )
        for key, value in dict(scale_attn_weights=True, scale_attn_by_inverse_layer_idx=False).items():
            if hf.get(key, value) != value:
                raise ConfigError(f"GPT-2 config {key}={hf[key]!r} is not supported (our attention needs {value})")
        d = hf.get("n_embd", 768)
        return GPTConfig(
            vocab_size=hf.get("vocab_size", 50257), block_size=hf.get("n_positions", 1024),
            n_layer=hf.get("n_layer", 12), n_head=hf.get("n_head", 12), d_model=d, d_ff=hf.get("n_inner") or 0,
            pos_encoding="learned", norm="layernorm", norm_eps=hf.get("layer_norm_epsilon", 1e-5), mlp="gelu",
            bias=True, tie_embeddings=hf.get("tie_word_embeddings", True), init_std=hf.get("initializer_range", 0.02),
        )  # fmt: skip

    def config_to_hf(self, cfg):
        return dict(
            vocab_size=cfg.vocab_size, n_positions=cfg.block_size, n_embd=cfg.d_model, n_layer=cfg.n_layer,
            n_head=cfg.n_head, n_inner=cfg.d_ff or None, activation_function="gelu_new",
            layer_norm_epsilon=cfg.norm_eps, resid_pdrop=cfg.dropout, embd_pdrop=cfg.dropout, attn_pdrop=cfg.dropout,
            scale_attn_weights=True, tie_word_embeddings=cfg.tie_embeddings, initializer_range=cfg.init_std,
        )  # fmt: skip


LLAMA_NORMS = [("norm1", "input_layernorm"), ("norm2", "post_attention_layernorm")]
LLAMA_LINEARS = [("attn.q_proj", "self_attn.q_proj"), ("attn.k_proj", "self_attn.k_proj"),
                 ("attn.v_proj", "self_attn.v_proj"), ("attn.o_proj", "self_attn.o_proj"),
                 ("mlp.gate", "mlp.gate_proj"), ("mlp.up", "mlp.up_proj"), ("mlp.down", "mlp.down_proj")]  # fmt: skip


class LlamaFormat(Format):
    model_type, architecture, prefix = "llama", "LlamaForCausalLM", ""
    ignored = ("rotary_emb.inv_freq",)  # a RoPE buffer that some older checkpoints saved

    def names(self, cfg):
        names = _pairs("tok_emb", "model.embed_tokens", ONE) + _pairs("norm_f", "model.norm", ONE)
        for i in range(cfg.n_layer):
            for ours, theirs in LLAMA_NORMS + LLAMA_LINEARS:
                kinds = BOTH if cfg.bias and (ours, theirs) in LLAMA_LINEARS else ONE
                names += _pairs(f"blocks.{i}.{ours}", f"model.layers.{i}.{theirs}", kinds)
        return names + self.head(cfg)

    def problems(self, cfg):
        return _mismatches(cfg, pos_encoding="rope", norm="rmsnorm", mlp="swiglu")

    def config_from_hf(self, hf):
        d, heads = hf.get("hidden_size", 4096), hf.get("num_attention_heads", 32)
        if hf.get("head_dim") not in (None, d // heads):
            raise ConfigError(
                f"Llama head_dim={hf['head_dim']} differs from hidden_size / num_attention_heads = {d // heads}; "
                "our model derives head_dim from d_model and n_head, so it cannot hold these weights"
            )
        if hf.get("hidden_act", "silu") != "silu":
            raise ConfigError(f"Llama hidden_act {hf['hidden_act']!r} is not supported; our SwiGLU uses silu")
        bias = hf.get("attention_bias", False)
        if hf.get("mlp_bias", False) != bias:
            raise ConfigError("Llama attention_bias and mlp_bias differ; our single `bias` field needs them equal")
        rope = _rope_from_hf(hf)
        return GPTConfig(
            vocab_size=hf.get("vocab_size", 32000), block_size=hf.get("max_position_embeddings", 2048),
            n_layer=hf.get("num_hidden_layers", 32), n_head=heads, n_kv_head=hf.get("num_key_value_heads") or heads,
            d_model=d, d_ff=hf.get("intermediate_size", 11008), pos_encoding="rope", **rope,
            norm="rmsnorm", norm_eps=hf.get("rms_norm_eps", 1e-6), mlp="swiglu", bias=bias,
            tie_embeddings=hf.get("tie_word_embeddings", False), init_std=hf.get("initializer_range", 0.02),
        )  # fmt: skip

    def config_to_hf(self, cfg):
        # rope_theta / rope_scaling is the layout transformers 4.x reads; 5.x converts it into rope_parameters.
        scaling = None if cfg.rope_scaling == 1.0 else {"rope_type": cfg.rope_scaling_type, "factor": cfg.rope_scaling}
        if scaling and cfg.rope_scaling_type == "linear":
            scaling["type"] = "linear"  # the key older transformers versions read
        if scaling and cfg.rope_scaling_type == "llama3":
            scaling.update(
                original_max_position_embeddings=cfg.rope_original_context,
                low_freq_factor=cfg.rope_low_freq_factor,
                high_freq_factor=cfg.rope_high_freq_factor,
            )
        return dict(
            vocab_size=cfg.vocab_size, max_position_embeddings=cfg.block_size, hidden_size=cfg.d_model,
            num_hidden_layers=cfg.n_layer, num_attention_heads=cfg.n_head, num_key_value_heads=cfg.kv_heads,
            head_dim=cfg.head_dim, intermediate_size=cfg.ff_dim, hidden_act="silu", rms_norm_eps=cfg.norm_eps,
            rope_theta=cfg.rope_base, rope_scaling=scaling, attention_bias=cfg.bias, mlp_bias=cfg.bias,
            attention_dropout=cfg.dropout, tie_word_embeddings=cfg.tie_embeddings, initializer_range=cfg.init_std,
        )  # fmt: skip


def _rope_from_hf(hf: Mapping) -> dict:
    """Our RoPE fields from either config layout: 4.x's rope_theta + rope_scaling, or 5.x's rope_parameters.
    Scalings other than linear and llama3 change the frequencies in ways our RoPE does not, so they are refused."""
    params = hf.get("rope_parameters") or hf.get("rope_scaling") or {}
    rope = {"rope_base": float(params.get("rope_theta", hf.get("rope_theta", 10000.0)))}
    kind = params.get("rope_type", params.get("type", "default"))
    if kind == "default":
        return rope
    if kind == "linear":
        return rope | {"rope_scaling": float(params["factor"]), "rope_scaling_type": "linear"}
    if kind == "llama3":
        return rope | {
            "rope_scaling": float(params["factor"]),
            "rope_scaling_type": "llama3",
            "rope_original_context": int(params["original_max_position_embeddings"]),
            "rope_low_freq_factor": float(params["low_freq_factor"]),
            "rope_high_freq_factor": float(params["high_freq_factor"]),
        }
    raise ConfigError(
        f"rope scaling type {kind!r} is not supported (only none, 'linear' and 'llama3'); loading these weights "
        "anyway would give a model whose outputs do not match the original"
    )


FORMATS = {f.model_type: f for f in (GPT2Format(), LlamaFormat())}


def config_from_hf(hf_config: Mapping) -> GPTConfig:
    """Translate a Hugging Face ``config.json`` (as a dict) of a GPT-2 or Llama model into our ``GPTConfig``."""
    return _format_named(hf_config.get("model_type")).config_from_hf(hf_config)


def _format_named(model_type: str | None) -> Format:
    if model_type not in FORMATS:
        raise ConfigError(f"Hugging Face model_type {model_type!r} is not supported; supported: {', '.join(FORMATS)}")
    return FORMATS[model_type]


def format_for(cfg: GPTConfig) -> Format:
    """The Hugging Face architecture that computes exactly the model ``cfg`` describes, or a ConfigError why none."""
    reasons = {fmt: fmt.problems(cfg) for fmt in FORMATS.values()}
    for fmt, problems in reasons.items():
        if not problems:
            return fmt
    why = "; ".join(f"{fmt.architecture} needs {', '.join(problems)}" for fmt, problems in reasons.items())
    raise ConfigError(f"this model has no Hugging Face equivalent that would compute the same outputs: {why}")


def _read_weights(path: Path) -> dict[str, torch.Tensor]:
    """A .safetensors file, or a directory with model.safetensors or a sharded model.safetensors.index.json."""
    if path.is_file():
        return load_file(path)
    if (path / "model.safetensors").is_file():
        return load_file(path / "model.safetensors")
    index = path / "model.safetensors.index.json"
    if index.is_file():
        shards = sorted(set(json.loads(index.read_text())["weight_map"].values()))
        return {name: t for shard in shards for name, t in load_file(path / shard).items()}
    raise ConfigError(
        f"{path} has no model.safetensors or model.safetensors.index.json; only safetensors weights are read "
        "(a pytorch_model.bin would have to be unpickled: convert it with transformers' save_pretrained first)"
    )


def _resolve_source(source, config) -> tuple[dict[str, torch.Tensor], Mapping | GPTConfig]:
    """The HF state dict and the config (HF dict or ours) from whichever form the caller gave."""
    if isinstance(source, Mapping):
        if config is None:
            raise ConfigError("from_hf with a state dict needs config= (a Hugging Face config dict or a GPTConfig)")
        return dict(source), config
    path = Path(source)
    if not path.exists():
        raise ConfigError(
            f"{path} does not exist; give a local checkpoint directory, a .safetensors file or a state dict "
            "(nothing is downloaded: fetch a Hub model first, e.g. with `hf download`)"
        )
    if config is None:
        config_json = (path if path.is_dir() else path.parent) / "config.json"
        if not config_json.is_file():
            raise ConfigError(f"no config.json at {config_json}; pass config= (a HF config dict or a GPTConfig)")
        config = json.loads(config_json.read_text())
    return _read_weights(path), config


def load_hf(source, config=None, *, device="cpu", dtype=torch.float32, **overrides) -> torch.nn.Module:
    """See ``GPT.from_hf``."""
    from .gpt import GPT

    hf, config = _resolve_source(source, config)
    if isinstance(config, GPTConfig):
        cfg, fmt = config, format_for(config)
    else:
        fmt = _format_named(config.get("model_type"))
        cfg = fmt.config_from_hf(config)
    cfg = replace(cfg, **overrides)
    hf = {name.removeprefix(fmt.prefix): t for name, t in hf.items() if not name.endswith(fmt.ignored)}
    if cfg.tie_embeddings:
        hf.pop("lm_head.weight", None)  # some checkpoints store the tied head too; HF ignores it, as we do
    mapped = fmt.to_ours(hf, cfg)
    if hf:
        raise ConfigError(f"the checkpoint has {len(hf)} tensors the config does not use ({', '.join(sorted(hf)[:4])}"
                          f"{', ...' if len(hf) > 4 else ''}); {MISMATCH_HINT}")  # fmt: skip
    model = GPT.build(cfg, device=device, dtype=dtype)
    expected = model.state_dict()
    for name, (theirs, tensor) in mapped.items():
        if tensor.shape != expected[name].shape:
            raise ConfigError(
                f"checkpoint tensor {theirs!r} gives {name} the shape {tuple(tensor.shape)}, but the config expects "
                f"{tuple(expected[name].shape)} (shapes in our layout); {MISMATCH_HINT}"
            )
    state = {name: tensor for name, (_, tensor) in mapped.items()}
    if cfg.tie_embeddings:
        state["lm_head.weight"] = state["tok_emb.weight"]
    model.load_state_dict(state, strict=True)
    return model


def save_hf(model, directory: str | os.PathLike) -> Path:
    """See ``GPT.save_hf``."""
    cfg = model.config
    fmt = format_for(cfg)
    ours = {name: t.detach() for name, t in model.state_dict().items()}
    # A tied head is left out (see ``Format.head``): safetensors refuses two names for one storage anyway.
    # contiguous() turns transposed views into tensors of their own.
    tensors = {fmt.full_name(n): t.contiguous().cpu() for n, t in fmt.to_hf(ours, cfg).items()}
    dtype = str(model.lm_head.weight.dtype).removeprefix("torch.")
    hf_config = {"architectures": [fmt.architecture], "model_type": fmt.model_type, **fmt.config_to_hf(cfg),
                 "bos_token_id": None, "eos_token_id": None, "dtype": dtype, "torch_dtype": dtype}  # fmt: skip
    # Write a complete sibling directory, then swap it in: a crash leaves the old export or the new, never half.
    target = Path(directory)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        save_file(tensors, tmp / "model.safetensors", metadata={"format": "pt"})  # HF checks the "format" tag
        (tmp / "config.json").write_text(json.dumps(hf_config, indent=2, sort_keys=True) + "\n")
        if target.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{target.name}.old.", dir=target.parent))
            os.replace(target, old / target.name)
            os.replace(tmp, target)
            shutil.rmtree(old)
        else:
            os.replace(tmp, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target

"""What every converter shares: reading a published file safely, renaming its tensors, writing a folder.

A family's converter names, for every tensor of the MINDmap model it builds, the source tensor it
comes from (`Rule`: a pattern over MINDmap's key, the source key it expands to, and an optional
reshape). Driving the renaming from the target side means a missing source tensor is named exactly;
every source tensor no rule consumed (and no `ignore` pattern covers) is reported as extra; a shape
that differs names both keys and both shapes. Nothing is loaded with pickle: `.pt`/`.pth`/`.ckpt`
go through `torch.load(weights_only=True)`, `.safetensors` through safetensors.
"""
from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch

SOURCE_SUFFIXES = (".pt", ".pth", ".ckpt", ".bin", ".safetensors")


class ConvertError(ValueError):
    """A source checkpoint is missing, unreadable or does not fit the architecture it should hold."""


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def read_state_dict(path: Path, containers: tuple[str, ...] = ()) -> dict[str, torch.Tensor]:
    """The tensors of a published file; `containers`: keys tried in order when the file wraps its state dict
    (LlamaGen's "model", MAR's "model_ema"). Never unpickles arbitrary objects."""
    path = Path(path)
    if not path.is_file():
        raise ConvertError(f"{path}: no such file")
    if path.suffix not in SOURCE_SUFFIXES:
        raise ConvertError(f"{path}: expected a {', '.join(SOURCE_SUFFIXES)} file")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file
            obj = load_file(path)
        else:
            obj = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception as e:  # pickle, zip and safetensors errors have many types
        raise ConvertError(f"{path}: not a readable checkpoint ({type(e).__name__}: {str(e).splitlines()[0][:200]})"
                           ) from None
    if not isinstance(obj, dict):
        raise ConvertError(f"{path}: holds a {type(obj).__name__}, not a state dict")
    for key in containers:
        if isinstance(obj.get(key), dict):
            obj = obj[key]
            break
    tensors = {k: v for k, v in obj.items() if isinstance(v, torch.Tensor)}
    if not tensors:
        raise ConvertError(f"{path}: no tensors found (looked in {', '.join(containers) or 'the top level'})")
    return tensors


def conv_to_linear(t: torch.Tensor) -> torch.Tensor:
    """A 1x1 convolution's weight (C_out, C_in, 1, 1) as a linear layer's (C_out, C_in)."""
    return t.flatten(1) if t.ndim == 4 and t.shape[2:] == (1, 1) else t


@dataclass(frozen=True)
class Rule:
    """MINDmap keys matching `target` (a regex, full match) come from the source key `source` (its groups
    substituted, `\\1` style); `transform` reshapes the tensor on the way."""
    target: str
    source: str
    transform: Callable[[torch.Tensor], torch.Tensor] | None = None


@dataclass
class Mapping:
    rules: list[Rule]
    ignore: tuple[str, ...] = ()            # source keys that carry nothing MINDmap needs (usage counters, caches)
    _compiled: list = field(default_factory=list, init=False, repr=False)

    def source_of(self, key: str) -> tuple[str, Callable | None]:
        if not self._compiled:
            self._compiled = [(re.compile(r.target), r) for r in self.rules]
        for pattern, rule in self._compiled:
            m = pattern.fullmatch(key)
            if m:
                return m.expand(rule.source), rule.transform
        raise ConvertError(f"no conversion rule for MINDmap tensor {key!r}")  # a converter bug, not a bad file

    def apply(self, source: dict[str, torch.Tensor], model: torch.nn.Module, label: str) -> dict[str, torch.Tensor]:
        """The state dict of `model` filled from `source`; every missing, extra or misshapen tensor is an error."""
        out, used, missing = {}, set(), []
        for key, want in model.state_dict().items():
            src, transform = self.source_of(key)
            if src not in source:
                missing.append(src)
                continue
            t = source[src]
            t = transform(t) if transform else t
            if tuple(t.shape) != tuple(want.shape):
                raise ConvertError(f"{label}: tensor {src!r} has shape {tuple(source[src].shape)}, the architecture "
                                   f"needs {tuple(want.shape)} (for {key})")
            out[key] = t.to(want.dtype)
            used.add(src)
        if missing:
            more = f" and {len(missing) - 1} more" if len(missing) > 1 else ""
            raise ConvertError(f"{label}: missing tensor {missing[0]!r}{more} (a different model or size?)")
        ignore = [re.compile(p) for p in self.ignore]
        extra = sorted(k for k in source if k not in used and not any(p.fullmatch(k) for p in ignore))
        if extra:
            more = f" and {len(extra) - 1} more" if len(extra) > 1 else ""
            raise ConvertError(f"{label}: unexpected tensor {extra[0]!r}{more} (a different model or size?)")
        return out

    def load(self, source: dict[str, torch.Tensor], model: torch.nn.Module, label: str) -> torch.nn.Module:
        model.load_state_dict(self.apply(source, model, label), strict=True)
        return model.eval()


def _inner(ours: str) -> tuple[str, str]:
    """The substitution names of the first two groups after those of the prefix pattern `ours`."""
    n = re.compile(ours).groups
    return rf"\g<{n + 1}>", rf"\g<{n + 2}>"


def ldm_resnet_rules(ours: str, theirs: str) -> list[Rule]:
    """A diffusers ResnetBlock2D (pattern `ours`) from a taming/LDM one (`theirs`: norm1, conv1, norm2, conv2,
    nin_shortcut)."""
    a, b = _inner(ours)
    return [Rule(rf"{ours}\.conv_shortcut\.(weight|bias)", rf"{theirs}.nin_shortcut.{a}"),
            Rule(rf"{ours}\.(norm1|conv1|norm2|conv2)\.(weight|bias)", rf"{theirs}.{a}.{b}")]


def split_attention_rules(ours: str, theirs: str) -> list[Rule]:
    """A diffusers Attention (group_norm, to_q/k/v, to_out.0 linears) from a taming one (norm, q/k/v/proj_out 1x1)."""
    a, b = _inner(ours)
    return [Rule(rf"{ours}\.group_norm\.(weight|bias)", rf"{theirs}.norm.{a}"),
            Rule(rf"{ours}\.to_(q|k|v)\.(weight|bias)", rf"{theirs}.{a}.{b}", conv_to_linear),
            Rule(rf"{ours}\.to_out\.0\.(weight|bias)", rf"{theirs}.proj_out.{a}", conv_to_linear)]


def _third(i: int) -> Callable[[torch.Tensor], torch.Tensor]:
    return lambda t: conv_to_linear(t.chunk(3)[i])


def merged_attention_rules(ours: str, theirs: str) -> list[Rule]:
    """A diffusers Attention from an LDM one whose q, k, v are one `qkv` 1x1 conv (VAR's VQVAE)."""
    a, _ = _inner(ours)
    return [Rule(rf"{ours}\.group_norm\.(weight|bias)", rf"{theirs}.norm.{a}"),
            *[Rule(rf"{ours}\.to_{name}\.(weight|bias)", rf"{theirs}.qkv.{a}", _third(i)) for i, name in enumerate("qkv")],
            Rule(rf"{ours}\.to_out\.0\.(weight|bias)", rf"{theirs}.proj_out.{a}", conv_to_linear)]


def ldm_autoencoder_rules(levels: int, attention: Callable[[str, str], list[Rule]]) -> list[Rule]:
    """A diffusers Encoder/Decoder pair from LDM names (`encoder.down.{i}.block`, `mid.block_1`, `decoder.up.{i}`;
    the decoder's `up.{levels-1}` is its lowest resolution, diffusers' `up_blocks.0`). `attention`: the rules of
    one attention block (`split_attention_rules` or `merged_attention_rules`)."""
    rules = [Rule(r"(encoder|decoder)\.(conv_in|conv_out)\.(weight|bias)", r"\1.\2.\3"),
             Rule(r"(encoder|decoder)\.conv_norm_out\.(weight|bias)", r"\1.norm_out.\2"),
             *ldm_resnet_rules(r"encoder\.down_blocks\.(\d+)\.resnets\.(\d+)", r"encoder.down.\1.block.\2"),
             *attention(r"encoder\.down_blocks\.(\d+)\.attentions\.(\d+)", r"encoder.down.\1.attn.\2"),
             Rule(r"encoder\.down_blocks\.(\d+)\.downsamplers\.0\.conv\.(weight|bias)", r"encoder.down.\1.downsample.conv.\2")]
    for side in ("encoder", "decoder"):
        rules += [*ldm_resnet_rules(rf"{side}\.mid_block\.resnets\.0", f"{side}.mid.block_1"),
                  *attention(rf"{side}\.mid_block\.attentions\.0", f"{side}.mid.attn_1"),
                  *ldm_resnet_rules(rf"{side}\.mid_block\.resnets\.1", f"{side}.mid.block_2")]
    for j in range(levels):
        i = levels - 1 - j
        rules += [*ldm_resnet_rules(rf"decoder\.up_blocks\.{j}\.resnets\.(\d+)", rf"decoder.up.{i}.block.\1"),
                  *attention(rf"decoder\.up_blocks\.{j}\.attentions\.(\d+)", rf"decoder.up.{i}.attn.\1"),
                  Rule(rf"decoder\.up_blocks\.{j}\.upsamplers\.0\.conv\.(weight|bias)", rf"decoder.up.{i}.upsample.conv.\1")]
    return rules

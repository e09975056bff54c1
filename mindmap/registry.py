"""The models on disk: every generator folder under the checkpoints root, described without loading."""
from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

from .checkpoint import CheckpointError, default_root, load_component, read_manifest
from .hub import models_cache
from .pipeline import Pipeline, model_controls


@dataclass(frozen=True)
class ModelEntry:
    name: str
    folder: Path
    manifest: dict

    def describe(self) -> dict:
        m = self.manifest
        specs = model_controls(self.folder, m)
        return {"name": self.name, "paradigm": m["paradigm"], "conditioning": m.get("conditioning", "class"),
                "image_size": m.get("image_size"), "grid": m.get("grid"),
                "group": m.get("group", "emoji"), "random_init": bool(m.get("random_init")),
                "controls": {s.name: s.describe() for s in specs}, "examples": m.get("example_prompts", [])}


def model_roots(root: Path | None = None) -> list[Path]:
    """Where models are looked for: `root` alone when given, else the shipped `checkpoints/` and then the published
    models fetched into MINDMAP_MODELS (`python -m mindmap fetch`)."""
    if root:
        if not Path(root).is_dir():
            raise CheckpointError(f"checkpoints root {root} is not a folder")
        return [Path(root)]
    return [default_root(), *[p for p in [models_cache()] if p.is_dir() and p.resolve() != default_root().resolve()]]


def list_models(root: Path | None = None) -> list[ModelEntry]:
    """Generator checkpoints under `root` (default: `model_roots()`), sorted by name within each root; a name
    found twice is taken from the first root."""
    entries, seen = [], set()
    for base in model_roots(root):
        for folder in sorted(p for p in base.glob("*") if (p / "mindmap.json").is_file()):
            manifest = read_manifest(folder)
            if manifest["kind"] == "generator" and folder.name not in seen:
                entries.append(ModelEntry(folder.name, folder, manifest))
                seen.add(folder.name)
    return entries


def find_model(name: str, root: Path | None = None) -> ModelEntry:
    models = list_models(root)
    for m in models:
        if m.name == name:
            return m
    if not models:
        raise ValueError(f"unknown model {name!r}: no models under {', '.join(map(str, model_roots(root)))}")
    raise ValueError(f"unknown model {name!r}; available: {', '.join(m.name for m in models)}")


def list_tokenizers(root: Path | None = None) -> list[str]:
    """Tokenizer checkpoints under `root` (folders whose manifest has kind `tokenizer`), sorted by name."""
    root = model_roots(root)[0] if root else default_root()
    return sorted(p.parent.name for p in root.glob("*/mindmap.json") if read_manifest(p.parent)["kind"] == "tokenizer")


@functools.lru_cache(maxsize=8)
def load_tokenizer(name: str, root: Path | None = None):
    """Load (once) a tokenizer checkpoint by folder name; its manifest's `tokenizer` entry picks the class."""
    from .tokenizers import TOKENIZERS
    names = list_tokenizers(root)
    if name not in names:
        raise ValueError(f"unknown tokenizer {name!r}; available: {', '.join(names) or 'none'}")
    folder = (Path(root) if root else default_root()) / name
    manifest = read_manifest(folder)
    kind = manifest.get("tokenizer", "vq")
    if kind not in TOKENIZERS:
        raise CheckpointError(f"{folder / 'mindmap.json'}: tokenizer kind {kind!r} is not supported by this version")
    return load_component(folder, manifest["components"]["tokenizer"], TOKENIZERS[kind])


@functools.lru_cache(maxsize=16)
def load_pipeline(name: str, root: Path | None = None, device: str | None = None, dtype: str | None = None,
                  compile: bool = False) -> Pipeline:
    """Load (once) the pipeline of a named model (`dtype`, `compile`: see `Pipeline.from_pretrained`)."""
    return Pipeline.from_pretrained(find_model(name, root).folder, device=device, dtype=dtype, compile=compile)


__all__ = ["CheckpointError", "ModelEntry", "list_models", "find_model", "list_tokenizers", "load_pipeline",
           "load_tokenizer"]

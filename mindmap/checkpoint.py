"""Checkpoint folders: a `mindmap.json` manifest, one sub-folder per component, a model card.

```
checkpoints/raster-emoji32/
  mindmap.json        kind, paradigm, conditioning, components, classes, sampler defaults
  tokenizer/          config.json + diffusion_pytorch_model.safetensors (diffusers ModelMixin)
  generator/          config.json + diffusion_pytorch_model.safetensors
  README.md           model card: data, command, steps, wall time, hardware, measured metrics
```
Only safetensors are read; a missing or corrupt file raises `CheckpointError` naming it.
"""
from __future__ import annotations

import copy
import json
import shutil
from pathlib import Path

import torch

MANIFEST = "mindmap.json"
WEIGHTS = "diffusion_pytorch_model.safetensors"


class CheckpointError(ValueError):
    """A checkpoint folder or file is missing, unreadable or inconsistent."""


def default_root() -> Path:
    """The embedded checkpoints shipped beside the package."""
    return Path(__file__).resolve().parent.parent / "checkpoints"


def read_manifest(folder: Path) -> dict:
    folder = Path(folder)
    path = folder / MANIFEST
    if not path.is_file():
        raise CheckpointError(f"{path}: missing (not a MINDmap checkpoint folder)")
    try:
        manifest = json.loads(path.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise CheckpointError(f"{path}: not valid JSON ({e})") from None
    for key in ("kind", "components"):
        if key not in manifest:
            raise CheckpointError(f"{path}: no '{key}' entry")
    return manifest


def write_manifest(folder: Path, manifest: dict):
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")


def component_path(folder: Path, name: str) -> Path:
    """Where a manifest's component lives: inside `folder`, or in a sibling checkpoint (`../other/part`).

    A model made of other models (the hybrid) names their parts instead of copying the weights; a
    path that would leave the checkpoints root is refused.
    """
    folder = Path(folder).resolve()
    sub = (folder / name).resolve()
    if Path(name).is_absolute() or not sub.is_relative_to(folder.parent):
        raise CheckpointError(f"{folder / MANIFEST}: component path {name!r} leaves the checkpoints folder")
    return sub


def load_component(folder: Path, name: str, cls, variants: tuple = ()):
    """Load `folder/name` as `cls` (a diffusers ModelMixin) from safetensors only; a component whose config names
    one of the `variants` classes (`_class_name`, e.g. a published architecture the paradigm also runs) is loaded
    as that class."""
    sub = component_path(folder, name)
    for f in ("config.json", WEIGHTS):
        if not (sub / f).is_file():
            raise CheckpointError(f"{sub / f}: missing")
    if variants:
        try:
            named = json.loads((sub / "config.json").read_text()).get("_class_name")
        except (UnicodeDecodeError, ValueError, AttributeError) as e:
            raise CheckpointError(f"{sub / 'config.json'}: not a JSON object ({e})") from None
        allowed = {c.__name__: c for c in (cls, *variants)}
        if named not in allowed:
            raise CheckpointError(f"{sub / 'config.json'}: names class {named!r}; this role takes "
                                  f"{', '.join(allowed)}")
        cls = allowed[named]
    try:
        model = cls.from_pretrained(sub, use_safetensors=True, local_files_only=True, low_cpu_mem_usage=False)
    except Exception as e:  # diffusers/safetensors raise many types for a damaged file
        raise CheckpointError(f"{sub}: could not be loaded as {cls.__name__} ({type(e).__name__}: {e})") from None
    for tensor_name, tensor in model.state_dict().items():   # a valid file can still hold corrupt numbers
        if tensor.is_floating_point() and not torch.isfinite(tensor).all():
            raise CheckpointError(f"{sub / WEIGHTS}: tensor {tensor_name!r} holds NaN or infinite values")
    return model.eval()


def save_component(model, folder: Path, half: bool = False):
    """Save a ModelMixin as config.json + safetensors; `half` stores float16 weights (loaded back as float32).

    Generators are stored in float16: half the size on disk, within the 25 MB a shipped folder may take.
    """
    if half:
        model = copy.deepcopy(model).half()
    model.save_pretrained(Path(folder), safe_serialization=True)


def copy_component(src: Path, dst: Path):
    """Copy a component folder (config + weights) into another checkpoint."""
    dst = Path(dst)
    if dst.exists():
        shutil.rmtree(dst)
    dst.mkdir(parents=True)
    for f in ("config.json", WEIGHTS):
        shutil.copy2(Path(src) / f, dst / f)

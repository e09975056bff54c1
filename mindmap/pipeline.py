"""Pipeline: tokenizer + generator(s) + the paradigm's sampler -> a stream of Frames.

```python
pipe = Pipeline.from_pretrained("checkpoints/raster-emoji32")
for frame in pipe.stream(**{"class": "face-smiling"}, seed=3, cfg=3.0):
    ...                      # live previews
image = pipe(**{"class": "face-smiling"}, seed=3).pil(scale=8)
```
Everything particular to a paradigm comes from its `Paradigm` descriptor (`mindmap.paradigms`): the
classes of its components, its controls and its sampler, which is called with the validated controls
as keyword arguments of the same names.
"""
from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Iterator

import torch

from .checkpoint import CheckpointError, component_path, load_component, read_manifest
from .controls import Control, ModelFacts, Request, check_preview_every, with_defaults
from .frames import Frame
from .nn import pack_labels
from .paradigms import Paradigm, get
from .sampling import make_generator
from .tokenizers import TOKENIZERS

logger = logging.getLogger(__name__)


def paradigm_of(manifest: dict, folder: Path) -> Paradigm:
    """The paradigm a generator checkpoint's manifest names, checked against what the folder holds."""
    if manifest.get("kind") != "generator":
        raise CheckpointError(f"{folder}: a {manifest.get('kind')} checkpoint, not a generator")
    try:
        paradigm = get(manifest.get("paradigm"))
    except ValueError as e:
        raise CheckpointError(f"{Path(folder) / 'mindmap.json'}: {e} (not supported by this version)") from None
    if manifest.get("conditioning", "class") == "text" and not paradigm.text:
        raise CheckpointError(f"{folder}: a {paradigm.name} model cannot take text prompts")
    missing = sorted({"tokenizer", *paradigm.components} - set(manifest["components"]))
    if missing:
        raise CheckpointError(f"{Path(folder) / 'mindmap.json'}: no component {missing[0]!r} for a "
                              f"{paradigm.name} model")
    return paradigm


def tokenizer_config(folder: Path, manifest: dict) -> dict:
    path = component_path(folder, manifest["components"]["tokenizer"]) / "config.json"
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise CheckpointError(f"{path}: unreadable ({e})") from None


def model_controls(folder: Path, manifest: dict) -> list[Control]:
    """A model's control specs, fitted to its tokenizer, with its manifest's own defaults (e.g. the measured best cfg)."""
    paradigm = paradigm_of(manifest, folder)
    facts = ModelFacts(manifest, tokenizer_config(folder, manifest))
    try:
        specs = paradigm.specs(facts, manifest.get("conditioning", "class"))
    except (KeyError, IndexError, TypeError) as e:
        raise CheckpointError(f"{Path(folder) / 'mindmap.json'}: cannot size its controls ({type(e).__name__}: "
                              f"{e})") from None
    try:
        return with_defaults(specs, manifest.get("defaults", {}))
    except ValueError as e:
        raise CheckpointError(f"{Path(folder) / 'mindmap.json'}: bad defaults ({e})") from None


def check_parts(folder: Path, parts: dict, classes: list[str], styles: list[str] = ()):
    """Every generator must agree with the manifest's classes and styles and with the tokenizer's grid and
    alphabet."""
    tok = parts["tokenizer"]
    # What the generators must agree with: discrete codes (vocabulary) or continuous tokens (their width).
    alphabet = ("vocab_size", tok.vocab_size) if hasattr(tok, "vocab_size") else ("token_dim", tok.token_dim)
    for role, part in parts.items():
        if role == "tokenizer":
            continue
        if part.config.num_classes != len(classes):
            raise CheckpointError(f"{folder}: {role} has {part.config.num_classes} classes, "
                                  f"the manifest lists {len(classes)}")
        if part.config.get("num_styles", 0) != len(styles):
            raise CheckpointError(f"{folder}: {role} takes {part.config.get('num_styles', 0)} styles, the manifest "
                                  f"lists {len(styles)} as its style condition")
        if part.config.get("depth", 0) != tok.config.get("depth", 0):
            raise CheckpointError(f"{folder}: {role} predicts {part.config.get('depth')} codes per cell, "
                                  f"the tokenizer gives {tok.config.get('depth')}")
        if tuple(part.config.get("scales", ())) != tuple(tok.config.get("scales", ())):
            raise CheckpointError(f"{folder}: {role} and the tokenizer use different scale pyramids")
        mine = (part.config.grid, part.config.get(alphabet[0]))
        if mine != (tok.grid, alphabet[1]):
            raise CheckpointError(f"{folder}: {role} models a {mine[0]}x{mine[0]} grid with {alphabet[0]} {mine[1]}, "
                                  f"the tokenizer gives {tok.grid}x{tok.grid} with {alphabet[1]}")


DTYPES = ("float32", "bfloat16")   # a generator's weights and activations


class Pipeline:
    def __init__(self, parts: dict, manifest: dict, specs: list[Control], name: str = "model",
                 folder: Path | None = None):
        self.parts, self.manifest, self.specs, self.name, self.folder = parts, manifest, specs, name, folder
        self.tokenizer, self.generator = parts["tokenizer"], parts["generator"]
        self.paradigm = get(manifest["paradigm"])

    @classmethod
    def from_pretrained(cls, folder, device: str | torch.device | None = None, dtype: str | None = None,
                        compile: bool = False) -> "Pipeline":
        """Load a checkpoint folder (safetensors only); device defaults to CUDA when present. `dtype` ("float32" or
        "bfloat16") is the generators' (the tokenizer stays float32); None: the manifest's `gpu_dtype` on a GPU,
        else float32. `compile`: the generator's decode step compiled by torch.compile (raster models only; the
        first image of each batch shape pays the compilation)."""
        if dtype is not None and dtype not in DTYPES:
            raise ValueError(f"dtype must be one of {', '.join(DTYPES)}, got {dtype!r}")
        folder = Path(folder)
        manifest = read_manifest(folder)
        paradigm = paradigm_of(manifest, folder)
        if compile and not hasattr(paradigm.components.get("generator"), "compile_decode"):
            raise ValueError(f"compile: only raster generators have a compiled decode step; {folder.name} is "
                             f"{paradigm.name}")
        roles = {"tokenizer": TOKENIZERS[paradigm.tokenizer], **paradigm.components}
        parts = {role: load_component(folder, manifest["components"][role], klass, paradigm.variants.get(role, ()))
                 for role, klass in roles.items()}
        check_parts(folder, parts, manifest.get("classes") or [], ModelFacts(manifest, {}).styles)
        device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        parts = {role: part.to(device) for role, part in parts.items()}
        if dtype is None and device.type == "cuda":
            dtype = manifest.get("gpu_dtype")   # published generators run in bf16 on a GPU
        if dtype:  # tokenizers stay in float32 (VQ decoders overflow in fp16); nn.Module.to: diffusers' own warns
            parts = {role: part if role == "tokenizer" else torch.nn.Module.to(part, getattr(torch, dtype))
                     for role, part in parts.items()}   # about float32 modules even when a model has none
        if compile:
            parts["generator"].compile_decode()
        return cls(parts, manifest, model_controls(folder, manifest), name=folder.name, folder=folder)

    @property
    def device(self) -> torch.device:
        return next(self.generator.parameters()).device

    @property
    def classes(self) -> list[str]:
        return self.manifest["classes"]

    @property
    def styles(self) -> list[str]:
        """The styles this model takes as a condition ([] without a style condition)."""
        return ModelFacts(self.manifest, {}).styles

    @property
    def cells(self) -> int:
        return self.tokenizer.grid ** 2

    @property
    def conditioning(self) -> str:
        return self.manifest.get("conditioning", "class")

    def text_condition(self, prompt: str, batch: int = 1):
        """The prompt's text states (cached by the encoder), repeated for a batch, on this pipeline's device: MiniLM
        for MINDmap's models, the checkpoint's own CLIP where its manifest names one (`text_encoder`)."""
        from .text import clip_encoder, text_encoder
        if self.manifest.get("text_encoder"):
            if self.folder is None:
                raise ValueError(f"{self.name}: its CLIP text encoder lives in its checkpoint folder; load it with "
                                 "Pipeline.from_pretrained")
            path = component_path(self.folder, self.manifest["text_encoder"])
            encoder = clip_encoder(str(path), str(self.device))
        else:
            encoder = text_encoder(self.generator.config.text_tokens)
        return encoder.encode([prompt] * batch).to(self.device)

    def condition(self, request: Request):
        """The request's condition: class labels (B,) (with the style packed in, `pack_labels`, for a model with a
        style condition), or the prompt's text states for a text model."""
        if request.prompt is not None:
            return self.text_condition(request.prompt, request.batch)
        label = torch.full((request.batch,), self.classes.index(request.class_name), dtype=torch.long,
                           device=self.device)
        if request.style is None:
            return label
        style = torch.full_like(label, self.styles.index(request.style))
        return pack_labels(label, style, len(self.classes))

    def controls(self, **values) -> Request:
        """Validate a request's controls (`class` may be passed as `class_name`)."""
        if "class_name" in values:
            values["class"] = values.pop("class_name")
        return Request.resolve(self.specs, values)

    def stream(self, preview_every: int | None = None, cached: bool | None = None, **values) -> Iterator[Frame]:
        """Yield Frames while decoding; the last is the finished image.

        preview_every: steps between previews (default: the paradigm's; 0 = final only).
        cached=False: the naive baseline of a paradigm with a KV cache (recompute every prefix); refused by one
        without a cache, so the switch is never silently ignored.
        """
        request = self.controls(**values)
        switches = {}
        if self.paradigm.cached:
            switches["cached"] = True if cached is None else bool(cached)
        elif cached is not None:
            raise ValueError(f"cached: a {self.paradigm.name} model has no KV cache to switch "
                             f"(its naive baseline is {self.paradigm.baseline(self)})")
        every = self.paradigm.preview_every(self.cells) if preview_every is None else check_preview_every(preview_every)
        rng = make_generator(request.seed, self.device)
        models = [self.parts[role] for role in self.paradigm.models]
        yield from self.paradigm.sampler(*models, self.tokenizer, self.condition(request), rng, preview_every=every,
                                         **switches, **request.sampling)

    def __call__(self, cached: bool | None = None, **values) -> Frame:
        """Run to the end without previews; the final Frame."""
        frame = None
        for frame in self.stream(preview_every=0, cached=cached, **values):
            pass
        return frame

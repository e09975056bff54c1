"""Pipeline: tokenizer + generator + sampler defaults -> a stream of Frames.

```python
pipe = Pipeline.from_pretrained("checkpoints/raster-emoji32")
for frame in pipe.stream(**{"class": "face-smiling"}, seed=3, cfg=3.0):
    ...                      # live previews
image = pipe(**{"class": "face-smiling"}, seed=3).pil(scale=8)
```
"""
from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import torch

from .checkpoint import CheckpointError, load_component, read_manifest
from .controls import Control, Controls, class_control, common_controls, token_sampling_controls
from .frames import Frame
from .generators.raster import RasterGPT
from .samplers.raster import sample_raster
from .sampling import make_generator
from .tokenizers.vq import VQTokenizer

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Paradigm:
    """How one paradigm is built and sampled: its classes, its controls, its sampler call."""
    tokenizer_cls: type
    generator_cls: type
    controls: Callable[[dict, dict], list[Control]]                 # (manifest, tokenizer config) -> specs
    sample: Callable[..., Iterator[Frame]]                          # (pipe, controls, rng, preview_every, cached)


def _raster_controls(manifest: dict, tok_config: dict) -> list[Control]:
    return [class_control(manifest["classes"]), *common_controls(),
            *token_sampling_controls(tok_config["codebook_size"])]


def _raster_sample(pipe: "Pipeline", c: Controls, rng, preview_every: int, cached: bool):
    labels = torch.full((c.batch,), c.label, dtype=torch.long, device=pipe.device)
    return sample_raster(pipe.generator, pipe.tokenizer, labels, rng, cfg=c.cfg, temperature=c.temperature,
                         top_k=c.top_k, top_p=c.top_p, preview_every=preview_every, cached=cached)


PARADIGMS = {"raster": Paradigm(VQTokenizer, RasterGPT, _raster_controls, _raster_sample)}


def paradigm_of(manifest: dict, folder: Path) -> Paradigm:
    if manifest.get("kind") != "generator":
        raise CheckpointError(f"{folder}: a {manifest.get('kind')} checkpoint, not a generator")
    if manifest["paradigm"] not in PARADIGMS:
        raise CheckpointError(f"{folder}: paradigm {manifest['paradigm']!r} is not supported by this version")
    return PARADIGMS[manifest["paradigm"]]


def tokenizer_config(folder: Path, manifest: dict) -> dict:
    path = Path(folder) / manifest["components"]["tokenizer"] / "config.json"
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise CheckpointError(f"{path}: unreadable ({e})") from None


class Pipeline:
    def __init__(self, tokenizer, generator, manifest: dict, name: str = "model"):
        self.tokenizer, self.generator, self.manifest, self.name = tokenizer, generator, manifest, name
        self.paradigm = PARADIGMS[manifest["paradigm"]]
        self.specs = self.paradigm.controls(manifest, dict(tokenizer.config))

    @classmethod
    def from_pretrained(cls, folder, device: str | torch.device | None = None) -> "Pipeline":
        """Load a checkpoint folder (safetensors only); device defaults to CUDA when present."""
        folder = Path(folder)
        manifest = read_manifest(folder)
        paradigm = paradigm_of(manifest, folder)
        comps = manifest["components"]
        tok = load_component(folder, comps["tokenizer"], paradigm.tokenizer_cls)
        gen = load_component(folder, comps["generator"], paradigm.generator_cls)
        classes = manifest.get("classes") or []
        if getattr(gen.config, "num_classes", len(classes)) != len(classes):
            raise CheckpointError(f"{folder}: generator has {gen.config.num_classes} classes, manifest lists {len(classes)}")
        device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        return cls(tok.to(device), gen.to(device), manifest, name=folder.name)

    @property
    def device(self) -> torch.device:
        return next(self.generator.parameters()).device

    @property
    def classes(self) -> list[str]:
        return self.manifest["classes"]

    def controls(self, **values) -> Controls:
        """Validate a request's controls (`class` may be passed as `class_name`)."""
        if "class_name" in values:
            values["class"] = values.pop("class_name")
        return Controls.resolve(self.specs, values, self.classes)

    def stream(self, preview_every: int | None = None, cached: bool = True, **values) -> Iterator[Frame]:
        """Yield Frames while decoding; the last is the finished image.

        preview_every: steps between previews (default: about 16 previews a run; 0 = final only).
        """
        c = self.controls(**values)
        n = self.tokenizer.grid ** 2
        every = max(1, n // 16) if preview_every is None else int(preview_every)
        rng = make_generator(c.seed, self.device)
        yield from self.paradigm.sample(self, c, rng, every, cached)

    def __call__(self, cached: bool = True, **values) -> Frame:
        """Run to the end without previews; the final Frame."""
        frame = None
        for frame in self.stream(preview_every=0, cached=cached, **values):
            pass
        return frame

"""Pipeline: tokenizer + generator(s) + sampler defaults -> a stream of Frames.

```python
pipe = Pipeline.from_pretrained("checkpoints/raster-emoji32")
for frame in pipe.stream(**{"class": "face-smiling"}, seed=3, cfg=3.0):
    ...                      # live previews
image = pipe(**{"class": "face-smiling"}, seed=3).pil(scale=8)
```
Each paradigm is one entry of `PARADIGMS`: the classes of its components, its controls, its sampler
call and what its benchmark's naive baseline is.
"""
from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import torch

from .checkpoint import CheckpointError, component_path, load_component, read_manifest
from .controls import (Control, Controls, cfg_schedule_control, class_control, common_controls, depth_control,
                       mar_controls, mask_ratio_control, parallel_controls, prefix_control, prompt_control,
                       token_sampling_controls, with_defaults)
from .frames import Frame
from .generators.depth import DepthGPT
from .generators.mar import MARGPT
from .generators.masked import MaskedGPT
from .generators.raster import RasterGPT
from .generators.scale import ScaleGPT
from .generators.stack import StackGPT
from .samplers.depth import sample_depth
from .samplers.hybrid import sample_hybrid
from .samplers.mar import sample_mar
from .samplers.masked import sample_masked
from .samplers.raster import sample_raster
from .samplers.scale import sample_scale
from .samplers.stack import sample_stack
from .sampling import make_generator
from .tokenizers.kl import KLTokenizer
from .tokenizers.mq import MQTokenizer
from .tokenizers.msvq import MSVQTokenizer
from .tokenizers.rq import RQTokenizer
from .tokenizers.vq import VQTokenizer

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Paradigm:
    """How one paradigm is built and sampled."""
    components: dict[str, type]                                     # role in the manifest -> ModelMixin class
    controls: Callable[[dict, dict], list[Control]]                 # (manifest, tokenizer config) -> specs
    sample: Callable[..., Iterator[Frame]]                          # (pipe, controls, rng, preview_every, cached)
    preview: Callable[[int], int]                                   # cells -> default steps between previews
    naive: Callable[["Pipeline"], dict]                             # stream() arguments of the bench baseline


def _cells(tok_config: dict) -> int:
    size = tok_config.get("image_size") or tok_config["sample_size"]          # sample_size: AutoencoderKL
    return (size // 2 ** (len(tok_config["block_out_channels"]) - 1)) ** 2


def _labels(pipe: "Pipeline", c: Controls):
    """The request's condition: class labels (B,), or the prompt's text states for a text model."""
    if c.prompt is not None:
        return pipe.text_condition(c.prompt, c.batch)
    return torch.full((c.batch,), c.label, dtype=torch.long, device=pipe.device)


def _condition_control(manifest: dict) -> Control:
    if manifest.get("conditioning", "class") == "text":
        return prompt_control((manifest.get("example_prompts") or ["grinning face"])[0])
    return class_control(manifest["classes"])


def _raster_controls(manifest: dict, tok_config: dict) -> list[Control]:
    return [_condition_control(manifest), *common_controls(), *token_sampling_controls(tok_config["codebook_size"])]


def _raster_sample(pipe: "Pipeline", c: Controls, rng, preview_every: int, cached: bool):
    return sample_raster(pipe.generator, pipe.tokenizer, _labels(pipe, c), rng, cfg=c.cfg, temperature=c.temperature,
                         top_k=c.top_k, top_p=c.top_p, preview_every=preview_every, cached=cached)


def _masked_controls(manifest: dict, tok_config: dict) -> list[Control]:
    return [*_raster_controls(manifest, tok_config), *parallel_controls(_cells(tok_config))]


def _parallel_args(c: Controls) -> dict:
    return dict(steps=c.steps, schedule=c.schedule, randomness=c.randomness, cfg=c.cfg, cfg_schedule=c.cfg_schedule,
                temperature=c.temperature, top_k=c.top_k, top_p=c.top_p)


def _masked_sample(pipe: "Pipeline", c: Controls, rng, preview_every: int, cached: bool):
    return sample_masked(pipe.generator, pipe.tokenizer, _labels(pipe, c), rng, preview_every=preview_every,
                         **_parallel_args(c))


def _hybrid_controls(manifest: dict, tok_config: dict) -> list[Control]:
    n = _cells(tok_config)
    return [*_masked_controls(manifest, tok_config), prefix_control(n, n // 4)]


def _hybrid_sample(pipe: "Pipeline", c: Controls, rng, preview_every: int, cached: bool):
    return sample_hybrid(pipe.parts["raster"], pipe.generator, pipe.tokenizer, _labels(pipe, c), rng, prefix=c.prefix,
                         preview_every=preview_every, **_parallel_args(c))


def _depth_controls(manifest: dict, tok_config: dict) -> list[Control]:
    return [*_raster_controls(manifest, tok_config), depth_control(tok_config["depth"])]


def _depth_sample(pipe: "Pipeline", c: Controls, rng, preview_every: int, cached: bool):
    return sample_depth(pipe.generator, pipe.tokenizer, _labels(pipe, c), rng, depth=c.depth, cfg=c.cfg,
                        temperature=c.temperature, top_k=c.top_k, top_p=c.top_p, preview_every=preview_every,
                        cached=cached)


def _mq_controls(manifest: dict, tok_config: dict) -> list[Control]:
    return [*_raster_controls(manifest, tok_config),
            mask_ratio_control(tok_config["min_mask_ratio"], tok_config["max_mask_ratio"])]


def _mq_sample(pipe: "Pipeline", c: Controls, rng, preview_every: int, cached: bool):
    return sample_stack(pipe.generator, pipe.tokenizer, _labels(pipe, c), rng, mask_ratio=c.mask_ratio, cfg=c.cfg,
                        temperature=c.temperature, top_k=c.top_k, top_p=c.top_p, preview_every=preview_every,
                        cached=cached)


def _scale_controls(manifest: dict, tok_config: dict) -> list[Control]:
    return [*_raster_controls(manifest, tok_config), cfg_schedule_control()]


def _scale_sample(pipe: "Pipeline", c: Controls, rng, preview_every: int, cached: bool):
    return sample_scale(pipe.generator, pipe.tokenizer, _labels(pipe, c), rng, cfg=c.cfg, cfg_schedule=c.cfg_schedule,
                        temperature=c.temperature, top_k=c.top_k, top_p=c.top_p, preview_every=preview_every,
                        cached=cached)


def _mar_controls(manifest: dict, tok_config: dict) -> list[Control]:
    return [class_control(manifest["classes"]), *common_controls(), *mar_controls(_cells(tok_config))]


def _mar_sample(pipe: "Pipeline", c: Controls, rng, preview_every: int, cached: bool):
    return sample_mar(pipe.generator, pipe.tokenizer, _labels(pipe, c), rng, steps=c.steps,
                      diffusion_steps=c.diffusion_steps, temperature=c.temperature, cfg=c.cfg,
                      cfg_schedule=c.cfg_schedule, preview_every=preview_every)


def _every_sixteenth(n: int) -> int:
    return max(1, n // 16)


def _every_step(n: int) -> int:
    return 1


PARADIGMS = {
    "raster": Paradigm({"tokenizer": VQTokenizer, "generator": RasterGPT}, _raster_controls, _raster_sample,
                       _every_sixteenth, lambda pipe: {"cached": False}),
    # The naive parallel decoder commits one cell per call: as many calls as the raster model, each a full pass.
    "masked": Paradigm({"tokenizer": VQTokenizer, "generator": MaskedGPT}, _masked_controls, _masked_sample,
                       _every_step, lambda pipe: {"steps": pipe.cells}),
    "hybrid": Paradigm({"tokenizer": VQTokenizer, "generator": MaskedGPT, "raster": RasterGPT}, _hybrid_controls,
                       _hybrid_sample, _every_sixteenth, lambda pipe: {"prefix": 0, "steps": pipe.cells}),
    "depth": Paradigm({"tokenizer": RQTokenizer, "generator": DepthGPT}, _depth_controls, _depth_sample,
                      _every_sixteenth, lambda pipe: {"cached": False}),
    "mq": Paradigm({"tokenizer": MQTokenizer, "generator": StackGPT}, _mq_controls, _mq_sample, _every_sixteenth,
                   lambda pipe: {"cached": False}),
    "scale": Paradigm({"tokenizer": MSVQTokenizer, "generator": ScaleGPT}, _scale_controls, _scale_sample,
                      _every_step, lambda pipe: {"cached": False}),
    # MAR's naive baseline reveals one token per transformer call.
    "mar": Paradigm({"tokenizer": KLTokenizer, "generator": MARGPT}, _mar_controls, _mar_sample, _every_step,
                    lambda pipe: {"steps": pipe.cells}),
}


TEXT_PARADIGMS = ("raster", "masked", "hybrid")


def paradigm_of(manifest: dict, folder: Path) -> Paradigm:
    if manifest.get("kind") != "generator":
        raise CheckpointError(f"{folder}: a {manifest.get('kind')} checkpoint, not a generator")
    if manifest["paradigm"] not in PARADIGMS:
        raise CheckpointError(f"{folder}: paradigm {manifest['paradigm']!r} is not supported by this version")
    paradigm = PARADIGMS[manifest["paradigm"]]
    if manifest.get("conditioning", "class") == "text" and manifest["paradigm"] not in TEXT_PARADIGMS:
        raise CheckpointError(f"{folder}: text prompts are supported for {', '.join(TEXT_PARADIGMS)} models, "
                              f"not {manifest['paradigm']}")
    missing = sorted(set(paradigm.components) - set(manifest["components"]))
    if missing:
        raise CheckpointError(f"{Path(folder) / 'mindmap.json'}: no component {missing[0]!r} for a "
                              f"{manifest['paradigm']} model")
    return paradigm


def tokenizer_config(folder: Path, manifest: dict) -> dict:
    path = component_path(folder, manifest["components"]["tokenizer"]) / "config.json"
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise CheckpointError(f"{path}: unreadable ({e})") from None


def model_controls(folder: Path, manifest: dict) -> list[Control]:
    """A model's control specs, with its manifest's own defaults (e.g. the measured best cfg)."""
    specs = paradigm_of(manifest, folder).controls(manifest, tokenizer_config(folder, manifest))
    try:
        return with_defaults(specs, manifest.get("defaults", {}))
    except ValueError as e:
        raise CheckpointError(f"{Path(folder) / 'mindmap.json'}: bad defaults ({e})") from None


class Pipeline:
    def __init__(self, parts: dict, manifest: dict, specs: list[Control], name: str = "model"):
        self.parts, self.manifest, self.specs, self.name = parts, manifest, specs, name
        self.tokenizer, self.generator = parts["tokenizer"], parts["generator"]
        self.paradigm = PARADIGMS[manifest["paradigm"]]

    @classmethod
    def from_pretrained(cls, folder, device: str | torch.device | None = None) -> "Pipeline":
        """Load a checkpoint folder (safetensors only); device defaults to CUDA when present."""
        folder = Path(folder)
        manifest = read_manifest(folder)
        paradigm = paradigm_of(manifest, folder)
        parts = {role: load_component(folder, manifest["components"][role], klass)
                 for role, klass in paradigm.components.items()}
        classes = manifest.get("classes") or []
        tok = parts["tokenizer"]
        # What the generators must agree with: discrete codes (vocabulary) or continuous tokens (their width).
        alphabet = ("vocab_size", tok.vocab_size) if hasattr(tok, "vocab_size") else ("token_dim", tok.token_dim)
        for role, part in parts.items():
            if role == "tokenizer":
                continue
            if part.config.num_classes != len(classes):
                raise CheckpointError(f"{folder}: {role} has {part.config.num_classes} classes, "
                                      f"the manifest lists {len(classes)}")
            if part.config.get("depth", 0) != parts["tokenizer"].config.get("depth", 0):
                raise CheckpointError(f"{folder}: {role} predicts {part.config.get('depth')} codes per cell, "
                                      f"the tokenizer gives {parts['tokenizer'].config.get('depth')}")
            if tuple(part.config.get("scales", ())) != tuple(parts["tokenizer"].config.get("scales", ())):
                raise CheckpointError(f"{folder}: {role} and the tokenizer use different scale pyramids")
            mine = (part.config.grid, part.config.get(alphabet[0]))
            if mine != (tok.grid, alphabet[1]):
                raise CheckpointError(f"{folder}: {role} models a {mine[0]}x{mine[0]} grid with {alphabet[0]} {mine[1]}, "
                                      f"the tokenizer gives {tok.grid}x{tok.grid} with {alphabet[1]}")
        device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        parts = {role: part.to(device) for role, part in parts.items()}
        return cls(parts, manifest, model_controls(folder, manifest), name=folder.name)

    @property
    def device(self) -> torch.device:
        return next(self.generator.parameters()).device

    @property
    def classes(self) -> list[str]:
        return self.manifest["classes"]

    @property
    def cells(self) -> int:
        return self.tokenizer.grid ** 2

    @property
    def conditioning(self) -> str:
        return self.manifest.get("conditioning", "class")

    def text_condition(self, prompt: str, batch: int = 1):
        """The prompt's MiniLM states (cached by the encoder), repeated for a batch, on this pipeline's device."""
        from .text import text_encoder
        encoder = text_encoder(self.generator.config.text_tokens)
        return encoder.encode([prompt] * batch).to(self.device)

    def controls(self, **values) -> Controls:
        """Validate a request's controls (`class` may be passed as `class_name`)."""
        if "class_name" in values:
            values["class"] = values.pop("class_name")
        return Controls.resolve(self.specs, values, self.classes)

    def stream(self, preview_every: int | None = None, cached: bool = True, **values) -> Iterator[Frame]:
        """Yield Frames while decoding; the last is the finished image.

        preview_every: steps between previews (default: the paradigm's; 0 = final only).
        cached=False: the benchmark's naive baseline where the paradigm has one (raster: no KV cache).
        """
        c = self.controls(**values)
        every = self.paradigm.preview(self.cells) if preview_every is None else int(preview_every)
        rng = make_generator(c.seed, self.device)
        yield from self.paradigm.sample(self, c, rng, every, cached)

    def __call__(self, cached: bool = True, **values) -> Frame:
        """Run to the end without previews; the final Frame."""
        frame = None
        for frame in self.stream(preview_every=0, cached=cached, **values):
            pass
        return frame

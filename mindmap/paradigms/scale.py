"""Next-scale prediction (VAR): one network call per scale of a multi-scale residual pyramid.

The naive baseline is the same sampler recomputing every coarser scale at every step (no KV cache).
"""
import torch

from ..controls import CFG_SCHEDULE, TOKEN_SAMPLING
from ..generators.scale import PRESETS, ScaleGPT, scale_loss
from ..samplers.scale import sample_scale
from ..viz import pyramid_view
from .base import Paradigm, Recipe, View, register


def pyramid_codes_and_inputs(tokenizer, images: torch.Tensor) -> torch.Tensor:
    """The pyramid's codes (B, L) and the next-scale inputs (B, (L-1) * C), side by side as floats."""
    codes = tokenizer.encode(images)
    flat = torch.cat([c.flatten(1) for c in codes], dim=1).float()
    return torch.cat([flat, tokenizer.teacher_inputs(codes).flatten(1)], dim=1)


def var_loss(model: ScaleGPT, batch: torch.Tensor, cond: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    codes, inputs = batch[:, :model.length].long(), batch[:, model.length:]
    return scale_loss(model, codes, inputs.view(len(batch), model.length - 1, -1), cond)


PARADIGM = register(Paradigm(
    name="scale", anchor="VAR", tokenizer="msvq", components={"generator": ScaleGPT}, sampler=sample_scale,
    controls=(*TOKEN_SAMPLING, CFG_SCHEDULE), cached=True,
    view=View("Scale pyramid: the picture after each scale (top) and that scale's codes (bottom)", pyramid_view),
    demo_class="animal-mammal",
    codes_per_image=lambda frame: sum(c[0].numel() for c in frame.views["pyramid"]),   # the whole pyramid
    recipe=Recipe(PRESETS, var_loss, "next-scale generator (VAR recipe)",
                  "Block-causal transformer over the multi-scale pyramid: the class as the start token and through "
                  "AdaLN in every block, learned position and level embeddings, the next scale's input being the "
                  "running sum of the coarser scales down-sampled to it; CE over every code of the pyramid",
                  encode=pyramid_codes_and_inputs,
                  extra=lambda tok: {"scales": tok.scales, "code_dim": tok.config.code_dim}),
))

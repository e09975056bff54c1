"""Masked parallel decoding (MaskGIT / MaskGIL): a bidirectional LLaMA commits the most confident cells per step.

The naive baseline commits one cell per call: as many calls as the raster model, each a full pass.
"""
from ..controls import PARALLEL, TOKEN_SAMPLING
from ..generators.masked import PRESETS, MaskedGPT, masked_loss
from ..generators.uvit import UVitMaskedGPT
from ..samplers.masked import sample_masked
from ..viz import schedule_view
from .base import Paradigm, Recipe, View, register

PARADIGM = register(Paradigm(
    name="masked", anchor="MaskGIT / MaskGIL", tokenizer="vq", components={"generator": MaskedGPT},
    variants={"generator": (UVitMaskedGPT,)},                      # aMUSEd (published, diffusers' UVit2D)
    sampler=sample_masked, controls=(*TOKEN_SAMPLING, *PARALLEL), naive=lambda pipe: {"steps": pipe.cells},
    view=View("Schedule: cells committed per step", schedule_view),
    sweep=({"steps": 4}, {"steps": 8}, {"steps": 16}), text=True, demo_class="food-fruit",
    recipe=Recipe(PRESETS, masked_loss, "masked parallel generator (MaskGIT recipe)",
                  "Bidirectional LLaMA with a [MASK] code, class as a prefix token, 2D RoPE, trained with the "
                  "MaskGIT objective (cosine share of cells masked per sequence, loss on masked cells)"),
))

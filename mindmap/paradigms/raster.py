"""Raster next-token prediction (LlamaGen): a causal LLaMA over VQ codes, one code per network call.

The naive baseline is the same sampler without its KV cache (the whole prefix recomputed every step).
"""
from ..controls import TOKEN_SAMPLING
from ..generators.raster import PRESETS, RasterGPT, raster_loss
from ..samplers.raster import sample_raster
from .base import Paradigm, Recipe, every_sixteenth, register

PARADIGM = register(Paradigm(
    name="raster", anchor="LlamaGen", tokenizer="vq", components={"generator": RasterGPT}, sampler=sample_raster,
    controls=TOKEN_SAMPLING, cached=True, preview_every=every_sixteenth, text=True, demo_class="face-smiling",
    recipe=Recipe(PRESETS, raster_loss, "raster next-token generator (LlamaGen recipe)",
                  "Causal LLaMA, class as a prefix token, 2D RoPE, trained by teacher forcing"),
))

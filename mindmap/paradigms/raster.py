"""Raster next-token prediction (LlamaGen): a causal LLaMA over VQ codes, one code per network call, or several
with speculative Jacobi decoding (`jacobi_window`), next-row overlap (ZipAR, `zip_window`) or both.

The naive baseline is the same sampler without its KV cache (the whole prefix recomputed every step).
"""
from ..controls import JACOBI_WINDOW, TOKEN_SAMPLING, ZIP_WINDOW
from ..generators.raster import PRESETS, RasterGPT, raster_loss
from ..samplers.raster import sample_raster
from ..viz import schedule_view
from .base import Paradigm, Recipe, View, every_sixteenth, register

PARADIGM = register(Paradigm(
    name="raster", anchor="LlamaGen", tokenizer="vq", components={"generator": RasterGPT}, sampler=sample_raster,
    controls=(JACOBI_WINDOW, ZIP_WINDOW, *TOKEN_SAMPLING), cached=True, preview_every=every_sixteenth, text=True,
    demo_class="face-smiling", view=View("Codes decided per network call", schedule_view),
    naive=lambda pipe: {"cached": False, "jacobi_window": 1, "zip_window": 0},  # one code a call, no cache
    recipe=Recipe(PRESETS, raster_loss, "raster next-token generator (LlamaGen recipe)",
                  "Causal LLaMA, class as a prefix token, 2D RoPE, trained by teacher forcing"),
))

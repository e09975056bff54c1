"""Residual depth (DnD-Transformer / RQ-Transformer): one network call per cell gives all its residual codes.

The naive baseline is the same sampler without its KV cache.
"""
from ..controls import DEPTH, TOKEN_SAMPLING
from ..generators.depth import PRESETS, DepthGPT, depth_loss
from ..samplers.depth import sample_depth
from ..viz import depth_strip
from .base import Paradigm, Recipe, View, every_sixteenth, register

PARADIGM = register(Paradigm(
    name="depth", anchor="DnD-Transformer / RQ", tokenizer="rq", components={"generator": DepthGPT},
    sampler=sample_depth, controls=(*TOKEN_SAMPLING, DEPTH), cached=True, preview_every=every_sixteenth,
    view=View("Depth strip: the picture from its first 1, 2, ... codes per cell", depth_strip),
    sweep=tuple({"depth": d} for d in (1, 2, 3, 4)), demo_class="cat-face",
    codes_per_image=lambda frame: frame.views["codes"][0].numel(),                  # every depth of every cell
    recipe=Recipe(PRESETS, depth_loss, "residual-depth generator (DnD-Transformer recipe)",
                  "Causal LLaMA over cells with one head per residual depth at intermediate layers; each sampled "
                  "code's embedding is added to the hidden state before the next head; the next cell's input is "
                  "the sum of its codes' embeddings. Teacher forcing with CE summed over heads, depth truncated at "
                  "random (half the rows at full depth) so every depth control value is in-distribution",
                  extra=lambda tok: {"depth": tok.config["depth"]},
                  metric="CE (nats/cell, summed over the kept depths)"),
))

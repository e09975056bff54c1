"""AR then masked (MaskGIL's unified inference): a raster model decodes a prefix, a masked model the rest.

Nothing is trained for it: `train hybrid` composes a raster and a masked checkpoint on one tokenizer.
The naive baseline is pure masked decoding one cell per call.
"""
from ..controls import PARALLEL, PREFIX, TOKEN_SAMPLING
from ..generators.masked import MaskedGPT
from ..generators.raster import RasterGPT
from ..samplers.hybrid import sample_hybrid
from ..viz import schedule_view
from .base import Paradigm, View, every_sixteenth, register

PARADIGM = register(Paradigm(
    name="hybrid", anchor="MaskGIL's unified inference", tokenizer="vq",
    components={"generator": MaskedGPT, "raster": RasterGPT}, models=("raster", "generator"), sampler=sample_hybrid,
    controls=(*TOKEN_SAMPLING, *PARALLEL, PREFIX), preview_every=every_sixteenth,
    naive=lambda pipe: {"prefix": 0, "steps": pipe.cells},
    view=View("Schedule: raster prefix, then masked steps", schedule_view),
    sweep=({"prefix": 16}, {"prefix": 32}), text=True, demo_class="heart",
))

"""The paradigms MINDmap knows. Each module declares one `Paradigm` and registers it; the lines below are the
registrations (their order is the order of `catalog()` and of listings). A new paradigm is one new module
and one line here."""
from .base import PARADIGMS, Paradigm, Recipe, View, catalog, get, register

from . import raster  # noqa: E402,F401  LlamaGen
from . import masked  # noqa: E402,F401  MaskGIT / MaskGIL
from . import hybrid  # noqa: E402,F401  AR then masked
from . import depth  # noqa: E402,F401  DnD-Transformer / RQ
from . import mq  # noqa: E402,F401  MQ-VAE + Stackformer
from . import scale  # noqa: E402,F401  VAR
from . import mar  # noqa: E402,F401  MAR

__all__ = ["PARADIGMS", "Paradigm", "Recipe", "View", "catalog", "get", "register"]

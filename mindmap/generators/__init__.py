"""Generators: nn.Modules that give logits. No sampling inside."""
from .raster import RasterGPT

__all__ = ["RasterGPT"]

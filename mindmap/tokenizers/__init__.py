"""Tokenizers: images <-> codes, with partial decodes for streaming."""
from .vq import VQTokenizer

__all__ = ["VQTokenizer"]

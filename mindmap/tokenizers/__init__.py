"""Tokenizers: images <-> codes, with partial decodes for streaming. `TOKENIZERS` maps a manifest's
`tokenizer` entry to its class."""
from .rq import RQTokenizer
from .vq import VQTokenizer

TOKENIZERS = {"vq": VQTokenizer, "rq": RQTokenizer}

__all__ = ["TOKENIZERS", "RQTokenizer", "VQTokenizer"]

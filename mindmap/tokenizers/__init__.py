"""Tokenizers: images <-> codes, with partial decodes for streaming. `TOKENIZERS` maps a manifest's
`tokenizer` entry to its class."""
from .kl import KLTokenizer
from .mq import MQTokenizer
from .msvq import MSVQTokenizer
from .rq import RQTokenizer
from .vq import VQTokenizer

TOKENIZERS = {"vq": VQTokenizer, "rq": RQTokenizer, "mq": MQTokenizer, "msvq": MSVQTokenizer, "kl": KLTokenizer}

__all__ = ["TOKENIZERS", "KLTokenizer", "MQTokenizer", "MSVQTokenizer", "RQTokenizer", "VQTokenizer"]

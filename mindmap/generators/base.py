"""What every class-conditioned LLaMA over a token grid shares: embeddings, the null class, trunk, head.

Raster and masked generators differ only in the attention mask, the input alphabet (the masked one
adds a [MASK] code) and which positions they read logits from; the layers are built here once.
"""
from __future__ import annotations

import torch
import torch.nn as nn
from diffusers.configuration_utils import ConfigMixin
from diffusers.models.modeling_utils import ModelMixin

from ..nn import Transformer, init_weights, rope_2d

PRESETS = {
    "tiny": dict(dim=64, n_layers=2, n_heads=4),      # tests
    "small": dict(dim=256, n_layers=6, n_heads=8),    # the embedded CPU models
    "base": dict(dim=512, n_layers=12, n_heads=8),    # for a GPU
}


class GridLM(ModelMixin, ConfigMixin):
    """Class token + (grid x grid) codes -> LLaMA trunk -> code logits. Subclasses pick mask and inputs."""

    def _build(self, in_vocab: int, vocab_size: int, num_classes: int, grid: int, dim: int, n_layers: int,
               n_heads: int, dropout: float):
        self.tok_emb = nn.Embedding(in_vocab, dim)
        self.cls_emb = nn.Embedding(num_classes + 1, dim)   # last row: the null class
        self.trunk = Transformer(dim, n_layers, n_heads, dropout)
        self.head = nn.Linear(dim, vocab_size, bias=False)
        self.register_buffer("angles", rope_2d(grid, dim // n_heads, n_prefix=1), persistent=False)
        init_weights(self)

    @property
    def null_class(self) -> int:
        """The learned 'no class' row: label dropout in training, the unconditional half of CFG."""
        return self.config.num_classes

    def _embed(self, labels: torch.Tensor, codes: torch.Tensor) -> torch.Tensor:
        """labels (B,), codes (B, T) -> (B, 1 + T, C)."""
        return torch.cat([self.cls_emb(labels)[:, None], self.tok_emb(codes)], dim=1)

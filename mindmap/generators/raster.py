"""Raster next-token generator (LlamaGen): a causal LLaMA over VQ codes, class as one prefix token.

Sequence: [class, code_0, ..., code_{N-2}] -> predicts [code_0, ..., code_{N-1}]. The class table
has one extra row, the learned null class, used for label dropout in training and for the
unconditional half of classifier-free guidance. No sampling in here: the model gives logits.
"""
from __future__ import annotations

import torch
from diffusers.configuration_utils import register_to_config

from .base import PRESETS, GridLM

__all__ = ["PRESETS", "RasterGPT"]


class RasterGPT(GridLM):

    @register_to_config
    def __init__(self, vocab_size: int = 512, num_classes: int = 99, grid: int = 8, dim: int = 256,
                 n_layers: int = 6, n_heads: int = 8, class_dropout: float = 0.1, dropout: float = 0.0):
        super().__init__()
        self._build(vocab_size, vocab_size, num_classes, grid, dim, n_layers, n_heads, dropout)
        self.seq_len = grid * grid                          # 1 prefix + N-1 codes in, N codes out
        self.register_buffer("causal", torch.ones(self.seq_len, self.seq_len, dtype=torch.bool).tril(),
                             persistent=False)

    def forward(self, codes: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Teacher forcing, no cache: codes (B, N) -> logits (B, N, V) for every code."""
        x = self._embed(labels, codes[:, :-1])
        T = x.shape[1]
        return self.head(self.trunk(x, self.angles[:T], self.causal[:T, :T]))

    def logits_full(self, labels: torch.Tensor, prefix: torch.Tensor) -> torch.Tensor:
        """Next-code logits (B, V) by recomputing the whole prefix (B, t): the naive baseline."""
        x = self._embed(labels, prefix)
        T = x.shape[1]
        return self.head(self.trunk(x, self.angles[:T], self.causal[:T, :T])[:, -1])

    # --- cached decoding (gpt-fast style) ---------------------------------------------------------
    def setup_cache(self, batch: int):
        p = self.head.weight
        self.trunk.setup_caches(batch, self.seq_len, p.device, p.dtype)

    def prefill(self, labels: torch.Tensor) -> torch.Tensor:
        """Run the class token at position 0; returns logits (B, V) for code 0."""
        pos = torch.zeros(1, dtype=torch.long, device=labels.device)
        return self._step(self.cls_emb(labels)[:, None], pos)

    def decode_one_token(self, codes: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
        """codes (B,) just sampled for cell pos-1, at sequence position `pos` (1,); logits (B, V) for cell pos."""
        return self._step(self.tok_emb(codes)[:, None], pos)

    def _step(self, x: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
        h = self.trunk(x, self.angles[pos], self.causal[pos], pos)
        return self.head(h[:, -1])

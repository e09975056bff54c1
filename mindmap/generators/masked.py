"""Masked parallel generator (MaskGIT / MaskGIL): a bidirectional LLaMA over VQ codes with a [MASK] code.

Input: [prefix, code_0, ..., code_{N-1}] where open cells hold the [MASK] id (= vocab_size); output:
logits (B, N, V) for every cell. Every position sees every other (no causal mask), so one call scores
all open cells given the committed ones. Trained with the MaskGIT objective (`masked_loss`): a random
share of each sequence is masked, following the decoding schedule, and only masked cells are scored.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from diffusers.configuration_utils import register_to_config

from .base import PRESETS, GridLM, attention_mask

__all__ = ["PRESETS", "MaskedGPT", "masked_loss", "random_mask"]


class MaskedGPT(GridLM):

    @register_to_config
    def __init__(self, vocab_size: int = 512, num_classes: int = 99, grid: int = 8, dim: int = 256,
                 n_layers: int = 6, n_heads: int = 8, class_dropout: float = 0.1, dropout: float = 0.0,
                 conditioning: str = "class", text_dim: int = 384, text_tokens: int = 16, num_styles: int = 0):
        super().__init__()
        self._build(vocab_size + 1, vocab_size, num_classes, grid, dim, n_layers, n_heads, dropout, conditioning,
                    text_dim, text_tokens, num_styles=num_styles)

    @property
    def mask_id(self) -> int:
        return self.config.vocab_size

    def forward(self, codes: torch.Tensor, cond) -> torch.Tensor:
        """codes (B, N) with `mask_id` at open cells, cond (labels (B,) or prompts) -> logits (B, N, V)."""
        x, keys = self._embed(cond, codes)
        h = self.trunk(x, self.rope[:x.shape[1]], attention_mask(None, keys))   # bidirectional: padding only
        return self.head(h[:, self.prefix_len:])


def random_mask(batch: int, n: int, generator: torch.Generator) -> torch.Tensor:
    """(batch, n) bool: per row ceil(cos(pi/2 * r) * n) random cells masked, r ~ U[0, 1), at least one.

    The cosine share matches the default decoding schedule, so training sees every stage of decoding.
    """
    r = torch.rand(batch, generator=generator, device=generator.device)
    n_masked = torch.ceil(torch.cos(math.pi / 2 * r) * n).clamp(1, n)
    ranks = torch.rand(batch, n, generator=generator, device=generator.device).argsort(1).argsort(1)
    return ranks < n_masked[:, None]


def masked_loss(model: MaskedGPT, codes: torch.Tensor, labels: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """MaskGIT objective: cross-entropy on the cells `random_mask` hides, given the others and the class."""
    masked = random_mask(*codes.shape, generator).to(codes.device)
    logits = model(codes.masked_fill(masked, model.mask_id), labels)
    return F.cross_entropy(logits[masked], codes[masked])

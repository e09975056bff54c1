"""aMUSEd's masked generator (Patil et al. 2024): diffusers' `UVit2DModel` behind MINDmap's masked-generator API.

The network is the library's own (conv embedding, res/attention blocks, a transformer with cross-attention
to CLIP's penultimate states and AdaLN from the pooled text embedding plus the micro-conditions, a conv
MLM head); this class only gives it the interface `sample_masked` drives: codes (B, N) with `mask_id` at
open cells and a `TextCondition` in, logits (B, N, V) out. The micro-conditions (original width and
height, crop top and left, aesthetic score) are the authors' pipeline defaults, fixed per checkpoint.
"""
from __future__ import annotations

import torch
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.modeling_utils import ModelMixin
from diffusers.models.unets.uvit_2d import UVit2DModel

from .base import TextCondition

__all__ = ["UVitMaskedGPT"]


class UVitMaskedGPT(ModelMixin, ConfigMixin):

    @register_to_config
    def __init__(self, network: dict | None = None, vocab_size: int = 8192, mask_token_id: int = 8255, grid: int = 16,
                 micro_conds: tuple = (256, 256, 0, 0, 6), num_classes: int = 0, conditioning: str = "text"):
        super().__init__()
        self.uvit = UVit2DModel(**(network or {}))       # `network`: UVit2DModel's own config
        cfg = self.uvit.config
        if cfg.codebook_size != vocab_size or not vocab_size <= mask_token_id < cfg.vocab_size:
            raise ValueError(f"UVit2D with codebook {cfg.codebook_size} and {cfg.vocab_size} input ids cannot model "
                             f"{vocab_size} codes with mask id {mask_token_id}")
        if cfg.sample_size != grid:
            raise ValueError(f"UVit2D sample_size {cfg.sample_size} is not the {grid}x{grid} token grid")
        if len(micro_conds) * cfg.micro_cond_encode_dim != cfg.micro_cond_embed_dim:
            raise ValueError(f"{len(micro_conds)} micro-conditions do not fill micro_cond_embed_dim "
                             f"{cfg.micro_cond_embed_dim}")
        self.register_buffer("micro", torch.tensor(micro_conds, dtype=torch.float32), persistent=False)

    @property
    def mask_id(self) -> int:
        return self.config.mask_token_id

    @property
    def null_class(self) -> None:
        return None            # text only: the unconditional rows are the encoded empty prompt

    def forward(self, codes: torch.Tensor, cond: TextCondition) -> torch.Tensor:
        """codes (B, N) with `mask_id` at open cells, cond (B rows with CLIP states and pooled) -> logits (B, N, V)."""
        if not isinstance(cond, TextCondition) or cond.pooled is None:
            raise TypeError("UVitMaskedGPT needs a TextCondition with CLIP's pooled embedding")
        b, g = codes.shape[0], self.config.grid
        dtype = self.uvit.dtype
        micro = self.micro.to(dtype).expand(b, -1)
        logits = self.uvit(codes.view(b, g, g), cond.states.to(dtype), cond.pooled.to(dtype), micro)  # (B, V, g, g)
        return logits.flatten(2).transpose(1, 2)

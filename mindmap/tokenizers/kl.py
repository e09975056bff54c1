"""Continuous tokenizer (MAR): diffusers' AutoencoderKL configured for the emoji grid.

Latents (B, C, grid, grid) times `scaling_factor`, a number measured on the training set after
training (1 / std of the latents) and stored in the config, so the tokens MAR models have unit
scale. No codebook: a token is a C-dim vector, drawn by MAR's diffusion head.
"""
from __future__ import annotations

import torch
from diffusers import AutoencoderKL

from .base import GridTokenizer, grey_cells

__all__ = ["KLTokenizer"]


class KLTokenizer(GridTokenizer, AutoencoderKL):
    """AutoencoderKL plus the grid helpers the pipeline and the tokenizer lab use."""
    SIZE_KEY = "sample_size"

    @property
    def token_dim(self) -> int:
        return self.config.latent_channels

    @torch.no_grad()
    def tokens(self, images: torch.Tensor) -> torch.Tensor:
        """images -> scaled latent tokens (B, grid*grid, C), the posterior means."""
        self.check_images(images)
        latents = self.encode(images).latent_dist.mode() * self.config.scaling_factor
        return latents.flatten(2).transpose(1, 2)

    @torch.no_grad()
    def decode_tokens(self, tokens: torch.Tensor) -> torch.Tensor:
        """Scaled tokens (B, grid*grid, C) -> images (B, 3, H, W) in [-1, 1]."""
        g = self.grid
        if tokens.ndim != 3 or tokens.shape[1:] != (g * g, self.token_dim):
            raise ValueError(f"tokens must be (B, {g * g}, {self.token_dim}), got {tuple(tokens.shape)}")
        latents = tokens.transpose(1, 2).reshape(-1, self.token_dim, g, g) / self.config.scaling_factor
        return self.decode(latents).sample.clamp(-1, 1)

    def decode_codes(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.decode_tokens(tokens)

    @torch.no_grad()
    def decode_partial(self, tokens: torch.Tensor, known: torch.Tensor) -> torch.Tensor:
        """Decode with the cells not revealed yet (known (B, grid, grid) False) at zero, then painted grey."""
        return grey_cells(self.decode_tokens(tokens * known.flatten(1)[..., None].to(tokens.dtype)), known)

    @torch.no_grad()
    def previews(self, images: torch.Tensor) -> list[tuple[str, torch.Tensor, torch.Tensor]]:
        """The tokenizer lab's row: the reconstruction, with each cell's token norm (no codes to show)."""
        tokens = self.tokens(images)
        return [("reconstruction", self.decode_tokens(tokens), tokens.norm(dim=-1).view(-1, self.grid, self.grid))]

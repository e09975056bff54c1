"""MQ tokenizer (MQ-VAE): keep only the most important cells of the grid, rebuild the rest.

Encode: encoder -> 1x1 conv to `code_dim` -> a light scoring net gives each cell an importance
score s in (0, 1) -> the top k = round((1 - mask_ratio) * N) cells are kept -> their features
times their score (so the scorer learns through the reconstruction) are quantized (Euclidean,
one codebook). A cell's score and code depend on its own features only, so one encoding gives the
kept set for every mask ratio: the k best scores.

Decode (adaptive de-mask): kept code vectors at their cells, a learned mask vector elsewhere; a few
attention layers in which keys at masked cells are down-weighted (x0.02 in the first layer, relaxed
to x1 by the last), so information flows from kept cells into masked ones; then the usual decoder.
Codes are (B, grid, grid) with -1 at masked cells.
"""
from __future__ import annotations

import math

import torch
import torch.nn as nn
from diffusers.configuration_utils import register_to_config

from ..nn import Block, rope_2d
from .base import CodebookQuantizer, ConvTokenizer, GridTokenizer

__all__ = ["EuclideanQuantizer", "MQTokenizer", "keep_top"]

MASKED_KEY_WEIGHT = 0.02


def keep_top(scores: torch.Tensor, mask_ratio: float) -> torch.Tensor:
    """(B, N) scores -> (B, N) bool keeping the round((1 - mask_ratio) * N) best cells of each row (>= 1)."""
    n = scores.shape[1]
    k = max(1, round((1.0 - mask_ratio) * n))
    return torch.zeros_like(scores, dtype=torch.bool).scatter_(1, scores.topk(k, dim=1).indices, True)


class EuclideanQuantizer(CodebookQuantizer):
    """Nearest code by Euclidean distance; no normalisation, so a score scaling the features survives."""

    def __init__(self, codebook_size: int, code_dim: int):
        super().__init__(codebook_size, code_dim, init_std=0.1)

    def forward(self, z: torch.Tensor):
        """z (M, D) -> (quantized with straight-through grads, codes (M,), loss or None)."""
        codes = torch.cdist(z.detach(), self.codebook.weight.detach()).argmin(dim=1)
        return self.straight_through(z, self.codebook.weight[codes], codes)

    def restart_pool(self, z: torch.Tensor) -> torch.Tensor:
        return z.reshape(-1, z.shape[-1])


class DeMask(nn.Module):
    """Attention from kept cells into masked ones; masked keys down-weighted, relaxed layer by layer."""

    def __init__(self, code_dim: int, width: int, layers: int, heads: int, grid: int):
        super().__init__()
        self.mask_vector = nn.Parameter(torch.zeros(code_dim))
        self.proj_in, self.proj_out = nn.Linear(code_dim, width), nn.Linear(width, code_dim)
        self.blocks = nn.ModuleList(Block(width, heads) for _ in range(layers))
        self.register_buffer("rope", rope_2d(grid, width // heads, n_prefix=0), persistent=False)

    def forward(self, vectors: torch.Tensor, kept: torch.Tensor) -> torch.Tensor:
        """vectors (B, N, D) (masked rows ignored), kept (B, N) bool -> filled vectors (B, N, D)."""
        x = torch.where(kept[..., None], vectors, self.mask_vector.to(vectors.dtype))
        h = self.proj_in(x)
        n_layers = len(self.blocks)
        for i, block in enumerate(self.blocks):
            weight = MASKED_KEY_WEIGHT ** (1 - i / max(n_layers - 1, 1))     # 0.02 -> 1 over the layers
            bias = torch.where(kept, 0.0, math.log(weight)).to(h.dtype)[:, None, None, :]   # (B, 1, 1, N) keys
            h = block(h, self.rope, bias)
        return torch.where(kept[..., None], vectors, self.proj_out(h))


class MQTokenizer(ConvTokenizer):
    """Images in [-1, 1] <-> a (grid x grid) map of codes, -1 where the cell was masked out."""
    finest = GridTokenizer.finest      # its last preview: the lowest mask ratio it takes, not encode's default

    @register_to_config
    def __init__(self, image_size: int = 32, block_out_channels: tuple = (32, 64, 64), layers_per_block: int = 1,
                 latent_channels: int = 64, norm_num_groups: int = 16, codebook_size: int = 512, code_dim: int = 16,
                 demask_width: int = 96, demask_layers: int = 3, demask_heads: int = 4,
                 min_mask_ratio: float = 0.0, max_mask_ratio: float = 0.75):
        super().__init__()
        self._build(block_out_channels, layers_per_block, latent_channels, norm_num_groups, code_dim)
        self.scorer = nn.Sequential(nn.Conv2d(latent_channels, 32, 3, padding=1), nn.SiLU(), nn.Conv2d(32, 1, 1))
        self.quantizer = EuclideanQuantizer(codebook_size, code_dim)
        self.demask = DeMask(code_dim, demask_width, demask_layers, demask_heads, self.grid)

    def check_ratio(self, mask_ratio: float):
        lo, hi = self.config.min_mask_ratio, self.config.max_mask_ratio
        if not lo <= mask_ratio <= hi:
            raise ValueError(f"mask_ratio must be a number in [{lo}, {hi}], got {mask_ratio}")

    def analyse(self, images: torch.Tensor):
        """images -> (scores (B, N) in (0, 1), scaled features (B, N, D)) of every cell."""
        self.check_images(images)
        h = self.encoder(images)
        scores = torch.sigmoid(self.scorer(h)).flatten(1)                                  # (B, N)
        z = self.quant_conv(h).flatten(2).transpose(1, 2)                                  # (B, N, D)
        return scores, z * scores[..., None]

    def forward(self, images: torch.Tensor, mask_ratio: float):
        """Training pass: (reconstruction, kept (B, N), quantizer loss, scaled features (B, N, D))."""
        scores, z = self.analyse(images)
        kept = keep_top(scores, mask_ratio)
        zq, _, loss = self.quantizer(z.reshape(-1, z.shape[-1]))
        return self._decode_vectors(zq.view_as(z), kept), kept, loss, z

    def _decode_vectors(self, vectors: torch.Tensor, kept: torch.Tensor) -> torch.Tensor:
        g = self.grid
        filled = self.demask(vectors, kept)                                                # (B, N, D)
        return self.decode_vectors(filled.transpose(1, 2).reshape(-1, filled.shape[-1], g, g))

    @torch.no_grad()
    def encode_all(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Every cell's code and score: (codes (B, grid, grid), scores (B, grid, grid)); select with `keep_top`."""
        scores, z = self.analyse(images)
        codes = self.quantizer(z.reshape(-1, z.shape[-1]))[1].view(scores.shape)
        g = self.grid
        return codes.view(-1, g, g), scores.view(-1, g, g)

    @torch.no_grad()
    def encode(self, images: torch.Tensor, mask_ratio: float = 0.5) -> torch.Tensor:
        """images -> codes (B, grid, grid) with -1 at the cells masked out at `mask_ratio`."""
        self.check_ratio(mask_ratio)
        codes, scores = self.encode_all(images)
        kept = keep_top(scores.flatten(1), mask_ratio).view_as(codes)
        return codes.masked_fill(~kept, -1)

    @torch.no_grad()
    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        """codes (B, grid, grid), -1 at masked cells (at least one kept per image) -> images (B, 3, H, W)."""
        kept = codes >= 0
        self.check_codes(codes.clamp_min(0))
        if codes.numel() and not bool(kept.flatten(1).any(1).all()):
            raise ValueError("codes must keep at least one cell per image")
        vectors = self.quantizer.codebook.weight[codes.clamp_min(0)].flatten(1, 2)         # (B, N, D)
        return self._decode_vectors(vectors, kept.flatten(1))

    @torch.no_grad()
    def decode_partial(self, codes: torch.Tensor, known: torch.Tensor) -> torch.Tensor:
        """While generating, the cells not chosen yet are simply masked: the de-mask fills them."""
        codes = codes.masked_fill(~known, -1)
        if not bool(known.flatten(1).any(1).all()):
            return torch.zeros(codes.shape[0], 3, self.config.image_size, self.config.image_size,
                               device=codes.device)                                         # nothing yet: grey
        return self.decode(codes)

    @torch.no_grad()
    def previews(self, images: torch.Tensor, ratios=(0.75, 0.5, 0.25, 0.0)) -> list[tuple[str, torch.Tensor, torch.Tensor]]:
        """The tokenizer lab's rows, coarse to fine: the reconstruction at several mask ratios, with the kept codes."""
        rows = []
        for r in ratios:
            if self.config.min_mask_ratio <= r <= self.config.max_mask_ratio:
                codes = self.encode(images, r)
                rows.append((f"mask ratio {r:.2f}", self.decode(codes), codes))
        return rows

    @torch.no_grad()
    def importance(self, images: torch.Tensor) -> torch.Tensor:
        """Each cell's importance score (B, grid, grid) in (0, 1): what the tokenizer keeps first."""
        return self.encode_all(images)[1]

"""Multi-scale residual VQ tokenizer (VAR): one shared codebook, scales 1x1 up to the grid.

f_rest = z, f_hat = 0; for each scale s_k: r_k = area-downsample(f_rest, s_k); idx_k = nearest code;
h_k = phi_k(upsample(e[idx_k], grid)); f_hat += h_k; f_rest -= h_k. Decoding the running f_hat after
scale k gives VAR's coarse-to-fine preview. The generator's input for scale k+1 is f_hat after scale
k, area-downsampled to s_{k+1} (`next_input`).
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from diffusers.configuration_utils import register_to_config

from .base import CodebookQuantizer, ConvTokenizer

__all__ = ["MultiScaleQuantizer", "MSVQTokenizer", "default_scales"]


def default_scales(grid: int) -> tuple[int, ...]:
    """VAR's pyramid cut at the grid: 1, 2, 3, 4, 5, 6, 8 for 8; 1, 2, 3, 4, 5, 6, 8, 10, 13, 16 for 16."""
    return tuple(s for s in (1, 2, 3, 4, 5, 6, 8, 10, 13, 16) if s < grid) + (grid,)


class Phi(nn.Module):
    """VAR's refinement after up-sampling: half identity, half a 3x3 conv (quant_resi = 0.5)."""

    def __init__(self, dim: int):
        super().__init__()
        self.conv = nn.Conv2d(dim, dim, 3, padding=1)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return 0.5 * h + 0.5 * self.conv(h)


def phi_of_scales(count: int, scales: int) -> list[int]:
    """Which of `count` shared phis each of `scales` scales uses: the one whose tick is nearest k / (K - 1).

    VAR's ticks are numpy's linspace(1/(3n), 1 - 1/(3n), n) for n = 4; scale k = (K-1)/2 lies halfway between
    two ticks, so the tie is broken exactly as numpy computes it (the first of the two)."""
    edge = 1 / 3 / count if count == 4 else 1 / 2 / count
    ticks = np.linspace(edge, 1 - edge, count)
    return [int(np.argmin(np.abs(ticks - k / max(scales - 1, 1)))) for k in range(scales)]


class MultiScaleQuantizer(CodebookQuantizer):
    def __init__(self, codebook_size: int, code_dim: int, scales: tuple[int, ...], shared_phi: int = 0):
        """shared_phi 0: one phi per scale; n > 0: n phis shared by the scales, scale k of K taking the one whose
        tick is nearest k / (K - 1) (VAR's published VQVAE: 4)."""
        super().__init__(codebook_size, code_dim, init_std=0.1)
        self.scales = tuple(scales)
        self.phi = nn.ModuleList(Phi(code_dim) for _ in range(shared_phi or len(scales)))
        self.phi_of = phi_of_scales(shared_phi, len(scales)) if shared_phi else list(range(len(scales)))

    def nearest(self, r: torch.Tensor) -> torch.Tensor:
        """r (B, C, s, s) -> codes (B, s, s) by Euclidean distance."""
        b, c, s, _ = r.shape
        flat = r.permute(0, 2, 3, 1).reshape(-1, c)
        return torch.cdist(flat.detach(), self.codebook.weight.detach()).argmin(1).view(b, s, s)

    def scale_update(self, codes: torch.Tensor, k: int, grid: int) -> torch.Tensor:
        """h_k: scale k's codes (B, s, s) -> their contribution on the full grid (B, C, grid, grid)."""
        e = self.codebook.weight[codes].permute(0, 3, 1, 2)
        if codes.shape[-1] != grid:
            e = F.interpolate(e, size=(grid, grid), mode="bicubic", align_corners=False)
        return self.phi[self.phi_of[k]](e)

    def forward(self, z: torch.Tensor):
        """z (B, C, g, g) -> (f_hat with straight-through grads, codes per scale, loss or None, previews)."""
        grid = z.shape[-1]
        f_rest, f_hat, codes, previews, codebook_loss = z, torch.zeros_like(z), [], [], 0.0
        for k, s in enumerate(self.scales):
            r = F.interpolate(f_rest, size=(s, s), mode="area") if s != grid else f_rest
            idx = self.nearest(r)
            if self.training:
                codebook_loss = codebook_loss + F.mse_loss(self.codebook.weight[idx].permute(0, 3, 1, 2), r.detach())
            h = self.scale_update(idx, k, grid)
            f_hat, f_rest = f_hat + h, f_rest - h.detach()
            codes.append(idx)
            previews.append(f_hat)
        loss = None
        if self.training:
            loss = codebook_loss / len(self.scales) + 0.25 * F.mse_loss(z, f_hat.detach()) + F.mse_loss(f_hat, z.detach())
            self.track(torch.cat([c.flatten() for c in codes]))
        return z + (f_hat - z).detach() if self.training else f_hat, codes, loss, previews

    def restart_pool(self, z: torch.Tensor) -> torch.Tensor:
        return z.permute(0, 2, 3, 1).reshape(-1, z.shape[1])


class MSVQTokenizer(ConvTokenizer):
    """Images in [-1, 1] <-> a pyramid of code maps [(B, 1, 1), (B, 2, 2), ..., (B, grid, grid)]."""

    @register_to_config
    def __init__(self, image_size: int = 32, block_out_channels: tuple = (32, 64, 64), layers_per_block: int = 1,
                 latent_channels: int = 64, norm_num_groups: int = 16, codebook_size: int = 512, code_dim: int = 16,
                 scales: tuple | None = None, lowest_attention: bool = False, quant_kernel: int = 1,
                 shared_phi: int = 0, normalize_latents: bool = True):
        """After `scales`, the switches of VAR's published VQVAE (attention at the lowest resolution, 3x3 code
        projections, 4 shared phis, latents as they come)."""
        super().__init__()
        self._build(block_out_channels, layers_per_block, latent_channels, norm_num_groups, code_dim, lowest_attention,
                    quant_kernel)
        scales = tuple(scales) if scales else default_scales(self.grid)
        if list(scales) != sorted(set(scales)) or scales[-1] != self.grid:
            raise ValueError(f"scales must rise strictly and end at the grid ({self.grid}), got {scales}")
        self.register_to_config(scales=list(scales))
        self.quantizer = MultiScaleQuantizer(codebook_size, code_dim, scales, shared_phi)

    @property
    def scales(self) -> tuple[int, ...]:
        return tuple(self.config.scales)

    def latents(self, images: torch.Tensor) -> torch.Tensor:
        """Pre-quantization vectors, RMS-normalised per cell: the residual codebook works at a fixed scale.

        Without it the latents drift larger during training, the codebook chases them, and dead-code
        restarts at the new scale set off jumps that diverge (seen in an earlier run of this tokenizer).
        """
        z = super().latents(images)
        if not self.config.get("normalize_latents", True):
            return z
        return z * torch.rsqrt(z.pow(2).mean(dim=1, keepdim=True) + 1e-6)

    @property
    def tokens(self) -> int:
        """Codes per image over the whole pyramid (1 + 4 + 9 + ... + grid^2)."""
        return sum(s * s for s in self.scales)

    def forward(self, images: torch.Tensor):
        """Training pass: (reconstruction, codes per scale, quantizer loss, latents)."""
        z = self.latents(images)
        f_hat, codes, loss, _ = self.quantizer(z)
        return self.decoder(self.post_quant_conv(f_hat)), codes, loss, z

    @torch.no_grad()
    def encode(self, images: torch.Tensor) -> list[torch.Tensor]:
        """images -> [codes (B, s, s) for each scale]."""
        return self.quantizer(self.latents(images))[1]

    def _check_pyramid(self, codes: list[torch.Tensor]):
        if not 1 <= len(codes) <= len(self.scales):
            raise ValueError(f"codes must be a list of 1 to {len(self.scales)} scale maps, got {len(codes)}")
        for c, s in zip(codes, self.scales):
            if c.ndim != 3 or c.shape[1:] != (s, s):
                raise ValueError(f"codes at scale {s} must be (B, {s}, {s}), got {tuple(c.shape)}")
            if c.numel() and (c.min() < 0 or c.max() >= self.vocab_size):
                raise ValueError(f"codes must lie in [0, {self.vocab_size}), got [{c.min()}, {c.max()}]")

    @torch.no_grad()
    def f_hat(self, codes: list[torch.Tensor]) -> torch.Tensor:
        """The running sum after the given first scales, (B, C, grid, grid)."""
        self._check_pyramid(codes)
        return sum(self.quantizer.scale_update(c, k, self.grid) for k, c in enumerate(codes))

    @torch.no_grad()
    def decode(self, codes: list[torch.Tensor]) -> torch.Tensor:
        """The first k scales' codes -> the picture they give (all scales: the reconstruction)."""
        return self.decode_vectors(self.f_hat(codes))

    @torch.no_grad()
    def start_sum(self, batch: int, device) -> torch.Tensor:
        """The running sum before any scale: zeros (B, C, grid, grid)."""
        return torch.zeros(batch, self.config.code_dim, self.grid, self.grid, device=device)

    @torch.no_grad()
    def add_scale(self, f_hat: torch.Tensor, codes: torch.Tensor, k: int) -> torch.Tensor:
        """The running sum after scale k's codes (B, s_k, s_k) join it."""
        return f_hat + self.quantizer.scale_update(codes, k, self.grid)

    @torch.no_grad()
    def next_input(self, f_hat: torch.Tensor, k: int) -> torch.Tensor:
        """The generator's input for scale k (>= 1): f_hat after scale k-1 at size s_k, (B, s_k^2, C)."""
        s = self.scales[k]
        x = F.interpolate(f_hat, size=(s, s), mode="area") if s != self.grid else f_hat
        return x.flatten(2).transpose(1, 2)

    @torch.no_grad()
    def teacher_inputs(self, codes: list[torch.Tensor]) -> torch.Tensor:
        """Inputs for scales 2..K from a whole pyramid (teacher forcing): (B, tokens - 1, C)."""
        f_hat, out = 0.0, []
        for k in range(1, len(self.scales)):
            f_hat = f_hat + self.quantizer.scale_update(codes[k - 1], k - 1, self.grid)
            out.append(self.next_input(f_hat, k))
        return torch.cat(out, dim=1)

    @torch.no_grad()
    def previews(self, images: torch.Tensor) -> list[tuple[str, torch.Tensor, torch.Tensor]]:
        """The tokenizer lab's rows: the picture after each scale, with that scale's code map."""
        codes = self.encode(images)
        return [(f"scale {s}x{s}", self.decode(codes[:k + 1]), codes[k]) for k, s in enumerate(self.scales)]

"""RQ tokenizer (RQ-VAE, as DnD-Transformer uses it): D residual codes per cell from one shared codebook.

r_0 = z;  k_d = argmin_k ||r_{d-1} - e_k||;  r_d = r_{d-1} - e_{k_d};  z_hat(d) = e_{k_1} + ... + e_{k_d}.

Decoding from the first d depths gives a coarse-to-fine picture (RQ's `decode_partial_code`); the
decoder is trained on random depths as well as the full one, so every depth decodes to a real image
and the generator's `depth` control is a true quality/speed lever, not only a preview.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from diffusers.configuration_utils import register_to_config

from .base import CodebookQuantizer, ConvTokenizer

__all__ = ["ResidualQuantizer", "RQTokenizer", "random_depths"]


def random_depths(batch: int, depth: int, generator: torch.Generator) -> torch.Tensor:
    """Training depths (batch,): full depth for half the rows, the rest uniform over 1 .. depth-1.

    Used by the RQ decoder and the depth generator alike, so both learn every depth they will serve.
    """
    full = torch.rand(batch, generator=generator) < 0.5
    partial = torch.randint(1, max(depth, 2), (batch,), generator=generator)
    return torch.where(full | (depth == 1), torch.full_like(partial, depth), partial)


class ResidualQuantizer(CodebookQuantizer):
    """Euclidean nearest-code residual quantization over `depth` steps with one shared codebook."""

    def __init__(self, codebook_size: int, code_dim: int, depth: int):
        super().__init__(codebook_size, code_dim, init_std=0.1)
        self.depth = depth

    def lookup(self, codes: torch.Tensor) -> torch.Tensor:
        """codes (B, h, w, d) -> the sum of their code vectors, (B, D, h, w)."""
        return self.codebook.weight[codes].sum(dim=3).permute(0, 3, 1, 2)

    def forward(self, z: torch.Tensor):
        """z (B, C, h, w) -> (partial sums (depth, B, C, h, w), codes (B, h, w, depth), loss or None).

        partial sums[d] is z_hat(d + 1), each with straight-through gradients to the encoder.
        """
        b, c, h, w = z.shape
        residual = z.permute(0, 2, 3, 1).reshape(-1, c)                       # (B*h*w, C)
        total = torch.zeros_like(residual)
        codes, sums, codebook_loss = [], [], 0.0
        table = self.codebook.weight
        for _ in range(self.depth):
            k = torch.cdist(residual.detach(), table.detach()).argmin(dim=1)  # nearest code to the residual
            e = table[k]
            if self.training:
                codebook_loss = codebook_loss + F.mse_loss(e, residual.detach())
            total = total + e
            residual = residual - e.detach()
            codes.append(k)
            sums.append(total.view(b, h, w, c).permute(0, 3, 1, 2))
        codes = torch.stack(codes, dim=1).view(b, h, w, self.depth)
        loss = None
        if self.training:
            # Every partial sum should approximate z (RQ-VAE's commitment over depths): coarse-to-fine.
            commit = sum(F.mse_loss(z, s.detach()) for s in sums) / self.depth
            loss = codebook_loss / self.depth + 0.25 * commit
            self.track(codes)
        sums = torch.stack([z + (s - z).detach() for s in sums])
        return sums, codes, loss

    @torch.no_grad()
    def restart_pool(self, z: torch.Tensor) -> torch.Tensor:
        """The residuals at every depth: a dead code may come back where any depth needs one."""
        residual = z.permute(0, 2, 3, 1).reshape(-1, z.shape[1])
        pool = []
        for _ in range(self.depth):
            k = torch.cdist(residual, self.codebook.weight).argmin(dim=1)
            pool.append(residual.clone())
            residual = residual - self.codebook.weight[k]
        return torch.cat(pool)


class RQTokenizer(ConvTokenizer):
    """Images in [-1, 1] <-> a (grid x grid x depth) map of code indices from one shared codebook."""

    @register_to_config
    def __init__(self, image_size: int = 32, block_out_channels: tuple = (32, 64, 64), layers_per_block: int = 1,
                 latent_channels: int = 64, norm_num_groups: int = 16, codebook_size: int = 512, code_dim: int = 16,
                 depth: int = 4):
        super().__init__()
        self._build(block_out_channels, layers_per_block, latent_channels, norm_num_groups, code_dim)
        self.quantizer = ResidualQuantizer(codebook_size, code_dim, depth)

    @property
    def depth(self) -> int:
        return self.config.depth

    def forward(self, images: torch.Tensor, depths: torch.Tensor | None = None):
        """Training pass: (reconstruction, codes, rq loss, latents); row i decoded from its first depths[i] codes."""
        z = self.latents(images)
        sums, codes, loss = self.quantizer(z)
        if depths is None:
            zq = sums[-1]
        else:
            zq = sums[depths - 1, torch.arange(len(depths), device=z.device)]   # (B, C, h, w)
        return self.decoder(self.post_quant_conv(zq)), codes, loss, z

    @torch.no_grad()
    def encode(self, images: torch.Tensor) -> torch.Tensor:
        """images (B, 3, H, W) in [-1, 1] -> codes (B, grid, grid, depth) long."""
        return self.quantizer(self.latents(images))[1]

    def _check_depth(self, codes: torch.Tensor):
        if codes.ndim != 4 or not 1 <= codes.shape[-1] <= self.depth:
            raise ValueError(f"codes must be (B, {self.grid}, {self.grid}, d) with d in [1, {self.depth}], "
                             f"got {tuple(codes.shape)}")
        self.check_codes(codes, (codes.shape[-1],))

    @torch.no_grad()
    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        """codes (B, grid, grid, d), d <= depth -> images decoded from the sum of the first d code vectors."""
        self._check_depth(codes)
        return self.decode_vectors(self.quantizer.lookup(codes))

    @torch.no_grad()
    def decode_partial(self, codes: torch.Tensor, known: torch.Tensor) -> torch.Tensor:
        """Decode with the cells not yet generated (known (B, grid, grid) False) painted grey."""
        vec = self.quantizer.lookup(codes.clamp(0, self.vocab_size - 1)) * known[:, None].to(torch.float32)
        return self.grey_open(self.decode_vectors(vec), known)

    @torch.no_grad()
    def previews(self, images: torch.Tensor) -> list[tuple[str, torch.Tensor, torch.Tensor]]:
        """The tokenizer lab's rows: the reconstruction at each depth, with that depth's code map."""
        codes = self.encode(images)
        return [(f"depth {d}", self.decode(codes[..., :d]), codes[..., d - 1]) for d in range(1, self.depth + 1)]

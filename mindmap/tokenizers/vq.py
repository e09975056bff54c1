"""VQ tokenizer, LlamaGen recipe: diffusers conv encoder/decoder, l2-normalised low-dim codes.

image (B, 3, H, W) -> encoder -> 1x1 conv to `code_dim` -> l2-normalise -> nearest code (cosine)
-> 1x1 conv back -> decoder. Normalising both sides turns the lookup into a cosine match on a sphere,
which keeps most of the codebook in use (LlamaGen reports 97%); dead codes are also restarted from
encoder outputs during training.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from diffusers.configuration_utils import register_to_config

from .base import GREY, CodebookQuantizer, ConvTokenizer

__all__ = ["GREY", "L2Quantizer", "NearestQuantizer", "VQTokenizer"]


class L2Quantizer(CodebookQuantizer):
    """Nearest-neighbour lookup on the unit sphere, straight-through gradients, usage counts."""

    @property
    def embeddings(self) -> torch.Tensor:
        return F.normalize(self.codebook.weight, dim=-1)

    def lookup(self, codes: torch.Tensor) -> torch.Tensor:
        """codes (B, h, w) -> code vectors (B, D, h, w)."""
        return self.embeddings[codes].permute(0, 3, 1, 2)

    def forward(self, z: torch.Tensor):
        """z (B, D, h, w) -> (quantized with straight-through grads, codes (B, h, w), vq loss)."""
        z = F.normalize(z, dim=1)
        z_flat = z.permute(0, 2, 3, 1).reshape(-1, z.shape[1])             # (B*h*w, D)
        codes = (z_flat @ self.embeddings.t()).argmax(dim=1)               # max cosine = min l2
        codes = codes.view(z.shape[0], z.shape[2], z.shape[3])
        return self.straight_through(z, self.lookup(codes), codes)

    def restart_pool(self, z: torch.Tensor) -> torch.Tensor:
        """Normalised encoder outputs."""
        return F.normalize(z, dim=1).permute(0, 2, 3, 1).reshape(-1, z.shape[1])


class NearestQuantizer(L2Quantizer):
    """The plain VQ-VAE lookup (aMUSEd's VQ): nearest code in Euclidean distance, codes used as stored."""

    @property
    def embeddings(self) -> torch.Tensor:
        return self.codebook.weight

    def forward(self, z: torch.Tensor):
        z_flat = z.permute(0, 2, 3, 1).reshape(-1, z.shape[1])
        codes = torch.cdist(z_flat, self.embeddings).argmin(dim=1).view(z.shape[0], z.shape[2], z.shape[3])
        return self.straight_through(z, self.lookup(codes), codes)

    def restart_pool(self, z: torch.Tensor) -> torch.Tensor:
        return z.permute(0, 2, 3, 1).reshape(-1, z.shape[1])


QUANTIZERS = {"cosine": L2Quantizer, "nearest": NearestQuantizer}


class VQTokenizer(ConvTokenizer):
    """Images in [-1, 1] <-> a (grid x grid) map of code indices.

    Switches for published tokenizers: `lookup` "nearest" (Euclidean lookup), `mid_attention` False, and
    `pixels` "unit" (networks trained on [0, 1]; aMUSEd's VQ), besides `lowest_attention` (LlamaGen's VQ-16).
    """

    @register_to_config
    def __init__(self, image_size: int = 32, block_out_channels: tuple = (32, 64, 64), layers_per_block: int = 1,
                 latent_channels: int = 64, norm_num_groups: int = 16, codebook_size: int = 512, code_dim: int = 8,
                 lowest_attention: bool = False, lookup: str = "cosine", mid_attention: bool = True,
                 pixels: str = "signed"):
        super().__init__()
        if lookup not in QUANTIZERS or pixels not in ("signed", "unit"):
            raise ValueError(f"lookup must be one of {', '.join(QUANTIZERS)} and pixels 'signed' or 'unit', got "
                             f"{lookup!r}, {pixels!r}")
        self._build(block_out_channels, layers_per_block, latent_channels, norm_num_groups, code_dim, lowest_attention,
                    mid_attention=mid_attention)
        self.quantizer = QUANTIZERS[lookup](codebook_size, code_dim)

    def forward(self, images: torch.Tensor):
        """Training pass: (reconstruction, codes, vq loss, pre-quantization latents)."""
        z = self.latents(images)
        zq, codes, vq_loss = self.quantizer(z)
        return self.decoder(self.post_quant_conv(zq)), codes, vq_loss, z

    @torch.no_grad()
    def encode(self, images: torch.Tensor) -> torch.Tensor:
        """images (B, 3, H, W) in [-1, 1] -> codes (B, grid, grid) long."""
        return self.quantizer(self.latents(images))[1]

    @torch.no_grad()
    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        """codes (B, grid, grid) -> images (B, 3, H, W) in [-1, 1]."""
        self.check_codes(codes)
        return self.decode_vectors(self.quantizer.lookup(codes))

    @torch.no_grad()
    def decode_partial(self, codes: torch.Tensor, known: torch.Tensor) -> torch.Tensor:
        """Decode with undecided cells (known == False) painted grey.

        Unknown cells enter the decoder as the zero code vector (no information) and their pixels are
        then greyed, so the known cells look as they will and the open ones read as open.
        """
        vec = self.quantizer.lookup(codes.clamp(0, self.vocab_size - 1)) * known[:, None].to(torch.float32)
        return self.grey_open(self.decode_vectors(vec), known)

    @torch.no_grad()
    def previews(self, images: torch.Tensor) -> list[tuple[str, torch.Tensor, torch.Tensor]]:
        """The tokenizer lab's rows: (label, reconstruction, code-index map (B, grid, grid))."""
        codes = self.encode(images)
        return [("reconstruction", self.decode(codes), codes)]

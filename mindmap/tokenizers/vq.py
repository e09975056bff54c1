"""VQ tokenizer, LlamaGen recipe: diffusers conv encoder/decoder, l2-normalised low-dim codes.

image (B, 3, H, W) -> encoder -> 1x1 conv to `code_dim` -> l2-normalise -> nearest code (cosine)
-> 1x1 conv back -> decoder. Normalising both sides turns the lookup into a cosine match on a sphere,
which keeps most of the codebook in use (LlamaGen reports 97%); dead codes are also restarted from
encoder outputs during training.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.autoencoders.vae import Decoder, Encoder
from diffusers.models.modeling_utils import ModelMixin

GREY = 0.0  # mid-grey in [-1, 1]: how undecided cells are painted in partial decodes


class L2Quantizer(nn.Module):
    """Nearest-neighbour lookup on the unit sphere, straight-through gradients, usage counts."""

    def __init__(self, codebook_size: int, code_dim: int):
        super().__init__()
        self.codebook = nn.Embedding(codebook_size, code_dim)
        nn.init.normal_(self.codebook.weight)
        # Running (decayed) count of how often each code is picked; drives dead-code restarts.
        self.register_buffer("usage", torch.ones(codebook_size), persistent=False)

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
        zq = self.lookup(codes)
        loss = None
        if self.training:
            loss = F.mse_loss(zq, z.detach()) + 0.25 * F.mse_loss(z, zq.detach())
            self._track(codes, z_flat.detach())
        return z + (zq - z).detach(), codes, loss

    @torch.no_grad()
    def _track(self, codes: torch.Tensor, z_flat: torch.Tensor, decay: float = 0.99):
        counts = torch.bincount(codes.flatten(), minlength=self.usage.numel()).float()
        self.usage.mul_(decay).add_(counts, alpha=1 - decay)

    @torch.no_grad()
    def restart_dead(self, z: torch.Tensor, generator: torch.Generator, threshold: float = 1e-3) -> int:
        """Move codes whose running usage fell under `threshold` onto random encoder outputs."""
        dead = (self.usage < threshold).nonzero().flatten()
        if dead.numel() == 0:
            return 0
        z_flat = F.normalize(z, dim=1).permute(0, 2, 3, 1).reshape(-1, z.shape[1])
        pick = torch.randint(0, z_flat.shape[0], (dead.numel(),), generator=generator, device=generator.device)
        self.codebook.weight[dead] = z_flat[pick.to(z_flat.device)]
        self.usage[dead] = 1.0
        return dead.numel()


class VQTokenizer(ModelMixin, ConfigMixin):
    """Images in [-1, 1] <-> a (grid x grid) map of code indices."""

    @register_to_config
    def __init__(self, image_size: int = 32, block_out_channels: tuple = (32, 64, 64), layers_per_block: int = 1,
                 latent_channels: int = 64, norm_num_groups: int = 16, codebook_size: int = 512, code_dim: int = 8):
        super().__init__()
        n = len(block_out_channels)
        self.encoder = Encoder(3, latent_channels, down_block_types=("DownEncoderBlock2D",) * n,
                               block_out_channels=block_out_channels, layers_per_block=layers_per_block,
                               norm_num_groups=norm_num_groups, double_z=False)
        self.decoder = Decoder(latent_channels, 3, up_block_types=("UpDecoderBlock2D",) * n,
                               block_out_channels=block_out_channels, layers_per_block=layers_per_block,
                               norm_num_groups=norm_num_groups)
        self.quant_conv = nn.Conv2d(latent_channels, code_dim, 1)
        self.post_quant_conv = nn.Conv2d(code_dim, latent_channels, 1)
        self.quantizer = L2Quantizer(codebook_size, code_dim)

    @property
    def grid(self) -> int:
        return self.config.image_size // 2 ** (len(self.config.block_out_channels) - 1)

    @property
    def vocab_size(self) -> int:
        return self.config.codebook_size

    def _check_images(self, images: torch.Tensor):
        s = self.config.image_size
        if images.ndim != 4 or images.shape[1:] != (3, s, s):
            raise ValueError(f"images must be (B, 3, {s}, {s}) in [-1, 1], got {tuple(images.shape)}")

    def forward(self, images: torch.Tensor):
        """Training pass: (reconstruction, codes, vq loss, pre-quantization latents)."""
        self._check_images(images)
        z = self.quant_conv(self.encoder(images))
        zq, codes, vq_loss = self.quantizer(z)
        return self.decoder(self.post_quant_conv(zq)), codes, vq_loss, z

    @torch.no_grad()
    def encode(self, images: torch.Tensor) -> torch.Tensor:
        """images (B, 3, H, W) in [-1, 1] -> codes (B, grid, grid) long."""
        self._check_images(images)
        return self.quantizer(self.quant_conv(self.encoder(images)))[1]

    @torch.no_grad()
    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        """codes (B, grid, grid) -> images (B, 3, H, W) in [-1, 1]."""
        if codes.ndim != 3 or codes.shape[1:] != (self.grid, self.grid):
            raise ValueError(f"codes must be (B, {self.grid}, {self.grid}), got {tuple(codes.shape)}")
        if codes.numel() and (codes.min() < 0 or codes.max() >= self.vocab_size):
            raise ValueError(f"codes must lie in [0, {self.vocab_size}), got [{codes.min()}, {codes.max()}]")
        return self.decoder(self.post_quant_conv(self.quantizer.lookup(codes))).clamp(-1, 1)

    @torch.no_grad()
    def decode_partial(self, codes: torch.Tensor, known: torch.Tensor) -> torch.Tensor:
        """Decode with undecided cells (known == False) painted grey.

        Unknown cells enter the decoder as the zero code vector (no information) and their pixels are
        then greyed, so the known cells look as they will and the open ones read as open.
        """
        vec = self.quantizer.lookup(codes.clamp(0, self.vocab_size - 1)) * known[:, None].to(torch.float32)
        img = self.decoder(self.post_quant_conv(vec)).clamp(-1, 1)
        scale = self.config.image_size // self.grid
        open_px = (~known).repeat_interleave(scale, 1).repeat_interleave(scale, 2)[:, None]
        return img.masked_fill(open_px, GREY)

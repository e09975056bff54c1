"""The conv autoencoder every discrete tokenizer shares: diffusers Encoder/Decoder and 1x1 code projections.

image (B, 3, H, W) -> encoder -> 1x1 conv to `code_dim` -> [quantizer of the subclass] -> 1x1 conv
back -> decoder. Subclasses own the quantizer and the shape of their codes; the partial decode for
streaming (open cells painted grey) is written once here.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F
from diffusers.configuration_utils import ConfigMixin
from diffusers.models.autoencoders.vae import Decoder, Encoder
from diffusers.models.modeling_utils import ModelMixin

GREY = 0.0  # mid-grey in [-1, 1]: how undecided cells are painted in partial decodes


def grey_cells(images: torch.Tensor, known: torch.Tensor) -> torch.Tensor:
    """Paint the pixels of open cells (known (B, grid, grid) False) grey in images (B, 3, H, W)."""
    scale = images.shape[-1] // known.shape[-1]
    open_px = (~known).repeat_interleave(scale, 1).repeat_interleave(scale, 2)[:, None]
    return images.masked_fill(open_px, GREY)


class CodebookQuantizer(nn.Module):
    """A learned codebook with a running usage count and dead-code restarts (subclasses: the lookup)."""

    def __init__(self, codebook_size: int, code_dim: int, init_std: float = 1.0):
        super().__init__()
        self.codebook = nn.Embedding(codebook_size, code_dim)
        nn.init.normal_(self.codebook.weight, std=init_std)
        # Running (decayed) count of how often each code is picked; drives dead-code restarts.
        self.register_buffer("usage", torch.ones(codebook_size), persistent=False)

    @torch.no_grad()
    def track(self, codes: torch.Tensor, decay: float = 0.99):
        counts = torch.bincount(codes.flatten(), minlength=self.usage.numel()).float()
        self.usage.mul_(decay).add_(counts, alpha=1 - decay)

    def straight_through(self, z: torch.Tensor, zq: torch.Tensor, codes: torch.Tensor):
        """(z with zq's values and z's gradients, codes, VQ-VAE loss: codebook + 0.25 commitment, or None)."""
        loss = None
        if self.training:
            loss = F.mse_loss(zq, z.detach()) + 0.25 * F.mse_loss(z, zq.detach())
            self.track(codes)
        return z + (zq - z).detach(), codes, loss

    def restart_pool(self, z: torch.Tensor) -> torch.Tensor:
        """Candidate vectors (M, code_dim) a dead code may be moved to, from latents z (B, C, h, w)."""
        raise NotImplementedError

    @torch.no_grad()
    def restart_dead(self, z: torch.Tensor, generator: torch.Generator, threshold: float = 1e-3) -> int:
        """Move codes whose running usage fell under `threshold` onto random candidates from `restart_pool`."""
        dead = (self.usage < threshold).nonzero().flatten()
        if dead.numel() == 0:
            return 0
        pool = self.restart_pool(z)
        pick = torch.randint(0, pool.shape[0], (dead.numel(),), generator=generator, device=generator.device)
        self.codebook.weight[dead] = pool[pick.to(pool.device)].to(self.codebook.weight)   # latents may be gathered on the CPU
        self.usage[dead] = 1.0
        return dead.numel()


def grid_of(config) -> int:
    """A tokenizer's token grid from its config: the image size over the encoder's downsampling factor
    (`sample_size` is AutoencoderKL's name for the image size)."""
    size = config.get("image_size") or config["sample_size"]
    return size // 2 ** (len(config["block_out_channels"]) - 1)


class GridTokenizer:
    """What every tokenizer shares, discrete or continuous: its image size, its grid, the picture so far.

    `SIZE_KEY` names the config entry holding the image size; subclasses give `decode_codes` (every
    cell known) and `decode_partial` (open cells grey).
    """
    SIZE_KEY = "image_size"

    @property
    def image_size(self) -> int:
        return self.config[self.SIZE_KEY]

    @property
    def grid(self) -> int:
        return grid_of(self.config)

    def check_images(self, images: torch.Tensor):
        s = self.image_size
        if images.ndim != 4 or images.shape[1:] != (3, s, s):
            raise ValueError(f"images must be (B, 3, {s}, {s}) in [-1, 1], got {tuple(images.shape)}")

    @torch.no_grad()
    def finest(self, images: torch.Tensor) -> torch.Tensor:
        """The finest reconstruction of `images`: the last of `previews` (every depth or scale: the full code)."""
        return self.previews(images)[-1][1]

    @torch.no_grad()
    def decode_progress(self, codes, known: torch.Tensor) -> torch.Tensor:
        """The picture while sampling: a plain decode once every cell is known (known (B, grid, grid)), else partial."""
        return self.decode_codes(codes) if bool(known.all()) else self.decode_partial(codes, known)


class ConvTokenizer(GridTokenizer, ModelMixin, ConfigMixin):
    """Images in [-1, 1] <-> vectors on a (grid x grid) map; subclasses quantize the vectors."""

    @torch.no_grad()
    def finest(self, images: torch.Tensor) -> torch.Tensor:
        """Every code decoded at once: the last preview (every depth or scale), without decoding the coarser ones."""
        return self.decode(self.encode(images))

    def _build(self, block_out_channels: tuple, layers_per_block: int, latent_channels: int, norm_num_groups: int,
               code_dim: int, lowest_attention: bool = False, quant_kernel: int = 1, mid_attention: bool = True):
        """`lowest_attention`: self-attention after every res block of the lowest resolution (LlamaGen's VQ-16,
        VAR's VQVAE); `mid_attention`: the mid block's (all but aMUSEd's VQ have one). `quant_kernel`: the code
        projections' kernel (VAR: 3)."""
        n, lowest = len(block_out_channels), "Attn" if lowest_attention else ""
        self.encoder = Encoder(3, latent_channels, block_out_channels=block_out_channels,
                               down_block_types=("DownEncoderBlock2D",) * (n - 1) + (f"{lowest}DownEncoderBlock2D",),
                               layers_per_block=layers_per_block, norm_num_groups=norm_num_groups, double_z=False,
                               mid_block_add_attention=mid_attention)
        self.decoder = Decoder(latent_channels, 3, block_out_channels=block_out_channels,    # up_blocks[0]: lowest
                               up_block_types=(f"{lowest}UpDecoderBlock2D",) + ("UpDecoderBlock2D",) * (n - 1),
                               layers_per_block=layers_per_block, norm_num_groups=norm_num_groups,
                               mid_block_add_attention=mid_attention)
        pad = quant_kernel // 2
        self.quant_conv = nn.Conv2d(latent_channels, code_dim, quant_kernel, padding=pad)
        self.post_quant_conv = nn.Conv2d(code_dim, latent_channels, quant_kernel, padding=pad)

    @property
    def vocab_size(self) -> int:
        return self.config.codebook_size

    def check_codes(self, codes: torch.Tensor, trailing: tuple = ()):
        """codes (B, grid, grid, *trailing) with every index in [0, vocab_size)."""
        g = self.grid
        want = (g, g, *trailing)
        if codes.ndim != 1 + len(want) or tuple(codes.shape[1:]) != want:
            shape = ", ".join(map(str, ("B", *want)))
            raise ValueError(f"codes must be ({shape}), got {tuple(codes.shape)}")
        if codes.numel() and (codes.min() < 0 or codes.max() >= self.vocab_size):
            raise ValueError(f"codes must lie in [0, {self.vocab_size}), got [{codes.min()}, {codes.max()}]")

    @property
    def unit_pixels(self) -> bool:
        """Whether the networks see pixels in [0, 1] (aMUSEd's VQ) rather than MINDmap's [-1, 1]."""
        return self.config.get("pixels", "signed") == "unit"

    def latents(self, images: torch.Tensor) -> torch.Tensor:
        """images in [-1, 1] -> pre-quantization vectors (B, code_dim, grid, grid)."""
        self.check_images(images)
        return self.quant_conv(self.encoder((images + 1) / 2 if self.unit_pixels else images))

    def decode_vectors(self, vectors: torch.Tensor) -> torch.Tensor:
        """(B, code_dim, grid, grid) -> images (B, 3, H, W) in [-1, 1]."""
        images = self.decoder(self.post_quant_conv(vectors))
        return (images.clamp(0, 1) * 2 - 1) if self.unit_pixels else images.clamp(-1, 1)

    def grey_open(self, images: torch.Tensor, known: torch.Tensor) -> torch.Tensor:
        return grey_cells(images, known)

    def decode_codes(self, codes):
        return self.decode(codes)

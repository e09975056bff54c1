"""MAR: a bidirectional transformer over continuous tokens and a per-token diffusion head.

The transformer reads [class, tokens] with the tokens not yet revealed replaced by a learned mask
vector, and gives every cell a condition vector z. The head, a small MLP with AdaLN conditioned on
z plus the diffusion timestep, predicts the noise in a noised token (DDPM noise-prediction loss,
`mar_loss`); sampling runs a diffusers scheduler on it (`samplers/mar.py`). No vector quantization.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F
from diffusers import DDIMScheduler
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.embeddings import TimestepEmbedding, Timesteps
from diffusers.models.modeling_utils import ModelMixin

from ..nn import VIT, LabelEmbedding, Transformer, init_weights, rope_2d
from .masked import random_mask

PRESETS = {
    "tiny": dict(dim=64, n_layers=2, n_heads=4, head_width=64, head_blocks=2),
    "small": dict(dim=256, n_layers=6, n_heads=8, head_width=256, head_blocks=3),
    "arena": dict(dim=256, n_layers=6, n_heads=8, head_width=256, head_blocks=3),
}


TOKEN_RANGE = 6.0  # the KL tokens are scaled to unit std; held-out tokens stay within +-5.1


def noise_scheduler(num_train_timesteps: int = 1000) -> DDIMScheduler:
    """The diffusion process of the head: cosine betas, noise prediction (DDIM steps; eta=1 is DDPM-like).

    With cosine betas the last training timestep has alpha_bar ~ 0, so the x0 recovered from a predicted
    noise there is divided by ~0: sampling starts one stride earlier ("leading" spacing) and x0 is clipped
    to the range of the unit-scaled tokens, otherwise the reverse process diverges.
    """
    return DDIMScheduler(num_train_timesteps=num_train_timesteps, beta_schedule="squaredcos_cap_v2",
                         prediction_type="epsilon", clip_sample=True, clip_sample_range=TOKEN_RANGE,
                         set_alpha_to_one=True, timestep_spacing="leading")


class ResBlock(nn.Module):
    """LayerNorm -> AdaLN modulation -> MLP, gated residual (MAR's SimpleMLPAdaLN block; its LayerNorm is affine)."""

    def __init__(self, width: int, norm_affine: bool = False):
        super().__init__()
        self.norm = nn.LayerNorm(width, elementwise_affine=norm_affine, eps=1e-6)
        self.mlp = nn.Sequential(nn.Linear(width, width), nn.SiLU(), nn.Linear(width, width))
        self.ada = nn.Sequential(nn.SiLU(), nn.Linear(width, 3 * width))

    def forward(self, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        shift, scale, gate = self.ada(c).chunk(3, dim=-1)
        return x + gate * self.mlp(self.norm(x) * (1 + scale) + shift)


class DiffusionHead(nn.Module):
    """eps = head(x_t, t, z): noise prediction for one token, conditioned on the transformer's z.

    The published MAR's head has a 256-channel timestep frequency embedding (`time_dim`), affine LayerNorms in
    its blocks and a learned variance beside the noise (`learn_sigma`: 2C outputs, of which MINDmap's
    sampler uses the noise)."""

    def __init__(self, token_dim: int, cond_dim: int, width: int, blocks: int, time_dim: int | None = None,
                 norm_affine: bool = False, learn_sigma: bool = False):
        super().__init__()
        self.token_dim = token_dim
        self.time_proj = Timesteps(time_dim or width, flip_sin_to_cos=True, downscale_freq_shift=0)
        self.time_emb = TimestepEmbedding(time_dim or width, width)
        self.cond = nn.Linear(cond_dim, width)
        self.inp = nn.Linear(token_dim, width)
        self.blocks = nn.ModuleList(ResBlock(width, norm_affine) for _ in range(blocks))
        self.out_norm = nn.LayerNorm(width, elementwise_affine=False, eps=1e-6)
        self.out_ada = nn.Sequential(nn.SiLU(), nn.Linear(width, 2 * width))
        self.out = nn.Linear(width, token_dim * (2 if learn_sigma else 1))

    def outputs(self, x: torch.Tensor, t: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """Everything the head predicts: (M, C) noise, then (M, C) variance values when it learned them."""
        x, z = x.to(self.inp.weight.dtype), z.to(self.inp.weight.dtype)     # a bf16 head, fp32 diffusion state
        c = self.time_emb(self.time_proj(t).to(x.dtype)) + self.cond(z)
        h = self.inp(x)
        for block in self.blocks:
            h = block(h, c)
        shift, scale = self.out_ada(c).chunk(2, dim=-1)
        return self.out(self.out_norm(h) * (1 + scale) + shift)

    def forward(self, x: torch.Tensor, t: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """x (M, C) noised tokens, t (M,) timesteps, z (M, cond_dim) -> predicted noise (M, C)."""
        return self.outputs(x, t, z)[:, :self.token_dim]

    def zero_init(self):
        """adaLN-zero: every residual branch and the output start at zero."""
        for block in self.blocks:
            nn.init.zeros_(block.ada[1].weight)
            nn.init.zeros_(block.ada[1].bias)
        for layer in (self.out_ada[1], self.out):
            nn.init.zeros_(layer.weight)
            nn.init.zeros_(layer.bias)


class MARGPT(ModelMixin, ConfigMixin):

    @register_to_config
    def __init__(self, token_dim: int = 8, num_classes: int = 99, grid: int = 8, dim: int = 256, n_layers: int = 6,
                 n_heads: int = 8, head_width: int = 256, head_blocks: int = 3, class_dropout: float = 0.1,
                 dropout: float = 0.0, num_train_timesteps: int = 1000, diffusion_batch_mul: int = 4,
                 layout: str = "rope", buffer_size: int = 64, decoder_layers: int = 0, head_time_dim: int | None = None,
                 head_norm_affine: bool = False, learn_sigma: bool = False, num_styles: int = 0):
        """`layout` "rope": one bidirectional LLaMA trunk over [class, tokens or the mask vector] with 2D RoPE
        (MINDmap's own). "mae": the published MAR, an MAE encoder over [a buffer of `buffer_size` class slots,
        the revealed tokens] and a decoder of `decoder_layers` over every cell (mask tokens where unrevealed),
        ViT blocks and learned position embeddings; the head options after it are MAR's."""
        super().__init__()
        if layout not in ("rope", "mae"):
            raise ValueError(f"layout must be 'rope' or 'mae', got {layout!r}")
        n = grid * grid
        self.cls_emb = LabelEmbedding(num_classes, num_styles, dim)   # last class row: the null class (MAR: fake_latent)
        if layout == "rope":
            self.in_proj = nn.Linear(token_dim, dim)
            self.mask_vector = nn.Parameter(torch.zeros(dim))
            self.trunk = Transformer(dim, n_layers, n_heads, dropout)
            self.register_buffer("rope", rope_2d(grid, dim // n_heads, n_prefix=1), persistent=False)
        else:
            self.z_proj = nn.Linear(token_dim, dim)
            self.z_proj_ln = nn.LayerNorm(dim, eps=1e-6)
            self.encoder_pos = nn.Parameter(torch.zeros(1, buffer_size + n, dim))
            self.encoder = Transformer(dim, n_layers, n_heads, dropout, arch=VIT)
            self.decoder_embed = nn.Linear(dim, dim)
            self.mask_token = nn.Parameter(torch.zeros(1, 1, dim))
            self.decoder_pos = nn.Parameter(torch.zeros(1, buffer_size + n, dim))
            self.decoder = Transformer(dim, decoder_layers, n_heads, dropout, arch=VIT)
            self.diffusion_pos = nn.Parameter(torch.zeros(1, n, dim))                # learned positions, no RoPE
        self.head = DiffusionHead(token_dim, dim, head_width, head_blocks, head_time_dim, head_norm_affine, learn_sigma)
        init_weights(self)
        if layout == "rope":
            nn.init.normal_(self.mask_vector, std=0.02)
        else:
            for p in (self.encoder_pos, self.mask_token, self.decoder_pos, self.diffusion_pos):
                nn.init.normal_(p, std=0.02)
        self.head.zero_init()

    @property
    def null_class(self) -> int:
        return self.config.num_classes

    def condition(self, tokens: torch.Tensor, known: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """tokens (B, N, C), known (B, N) bool, labels (B,) -> a condition vector per cell, (B, N, dim)."""
        tokens = tokens.to(self.cls_emb.weight.dtype)                         # a bf16 model, fp32 tokens
        if self.config.get("layout", "rope") == "mae":
            return self._condition_mae(tokens, known, labels)
        x = torch.where(known[..., None], self.in_proj(tokens), self.mask_vector.to(tokens.dtype))
        x = torch.cat([self.cls_emb(labels)[:, None], x], dim=1)
        return self.trunk(x, self.rope[:x.shape[1]], None)[:, 1:]

    def _condition_mae(self, tokens: torch.Tensor, known: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """MAR's encoder sees the class buffer and the revealed tokens only; its decoder puts them back among
        mask tokens. Every row must have revealed as many tokens (as MINDmap's sampler does)."""
        b, n, _ = tokens.shape
        buffer = self.config.buffer_size
        counts = known.sum(1)
        if bool((counts != counts[0]).any()):
            raise ValueError("every row must have revealed the same number of tokens")
        x = self.z_proj(tokens)
        x = torch.cat([self.cls_emb(labels)[:, None].expand(b, buffer, -1), x], dim=1)
        x = self.z_proj_ln(x + self.encoder_pos)
        keep = torch.cat([known.new_ones(b, buffer), known], dim=1)                    # (B, buffer + N)
        x = x[keep].view(b, -1, x.shape[-1])
        x = self.decoder_embed(self.encoder(x, None, None))
        full = self.mask_token.to(x.dtype).expand(b, buffer + n, -1).clone()
        full[keep] = x.flatten(0, 1)
        x = self.decoder(full + self.decoder_pos, None, None)
        return x[:, buffer:] + self.diffusion_pos

    def forward(self, tokens: torch.Tensor, known: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return self.condition(tokens, known, labels)


def mar_loss(model: MARGPT, tokens: torch.Tensor, labels: torch.Tensor, generator: torch.Generator,
             scheduler: DDIMScheduler | None = None) -> torch.Tensor:
    """Mask a cosine share of cells (as the sampler reveals them), condition on the rest, and train the head
    to predict the noise of each masked token at a random timestep (repeated `diffusion_batch_mul` times)."""
    scheduler = scheduler or noise_scheduler(model.config.num_train_timesteps)
    b, n, c = tokens.shape
    masked = random_mask(b, n, generator).to(tokens.device)
    z = model(tokens, ~masked, labels)[masked]                                  # (M, dim)
    x0 = tokens[masked]
    reps = model.config.diffusion_batch_mul
    z, x0 = z.repeat(reps, 1), x0.repeat(reps, 1)
    t = torch.randint(0, scheduler.config.num_train_timesteps, (len(x0),), generator=generator).to(tokens.device)
    noise = torch.randn(x0.shape, generator=generator).to(tokens.device)
    x_t = scheduler.add_noise(x0, noise, t)
    return F.mse_loss(model.head(x_t, t, z), noise)

"""Transformer parts every generator shares: RMSNorm, SwiGLU, 2D RoPE, attention with a static KV cache.

Written once here (LLaMA flavour, no biases); generators pick causal or bidirectional masks and decide
what goes in the prefix. The KV cache is preallocated and written by index (gpt-fast style), so a
decode step costs one token's work and never reallocates.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F


class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float = 1e-6):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x32 = x.float()
        return (x32 * torch.rsqrt(x32.pow(2).mean(-1, keepdim=True) + self.eps)).type_as(x) * self.weight


@dataclass(frozen=True)
class Arch:
    """Switches the published models need, as configuration; the defaults are MINDmap's own LLaMA flavour."""
    norm: str = "rms"              # "rms", or "layer": LayerNorm (VAR: without affine; ViT/MAR: with)
    norm_eps: float = 1e-6         # LlamaGen: 1e-5
    norm_affine: bool = False      # LayerNorm with a learned gain and bias (ViT blocks, MAR)
    mlp: str = "swiglu"            # "swiglu", or "gelu": a GELU MLP with biases (VAR, ViT)
    gelu: str = "tanh"             # the GELU MLP's approximation: "tanh" (VAR) or "none" (exact, timm's ViT)
    mlp_ratio: float = 4.0         # the GELU MLP's hidden width over the model width
    ffn_multiple_of: int = 64      # SwiGLU's width rounding (LlamaGen: 256)
    bias: bool = False             # biases on the qkv and output projections (VAR: q and v only, k's stays 0)
    qk_norm: bool = False          # q and k l2-normalised, times a learned per-head scale, softmax scale 1 (VAR)

    def __post_init__(self):
        for name, allowed in (("norm", ("rms", "layer")), ("mlp", ("swiglu", "gelu")), ("gelu", ("tanh", "none"))):
            if getattr(self, name) not in allowed:
                raise ValueError(f"{name} must be one of {allowed}, got {getattr(self, name)!r}")

    def make_norm(self, dim: int) -> nn.Module:
        if self.norm == "rms":
            return RMSNorm(dim, self.norm_eps)
        return nn.LayerNorm(dim, eps=self.norm_eps, elementwise_affine=self.norm_affine)

    def make_mlp(self, dim: int) -> nn.Module:
        if self.mlp == "swiglu":
            return SwiGLU(dim, multiple_of=self.ffn_multiple_of)
        return GeluMLP(dim, round(dim * self.mlp_ratio), self.gelu)


VIT = Arch(norm="layer", norm_affine=True, mlp="gelu", gelu="none", bias=True)   # timm's ViT Block (MAR)


class GeluMLP(nn.Module):
    """fc1 -> GELU -> fc2, with biases (VAR's FFN with the tanh approximation, timm's ViT MLP exact)."""

    def __init__(self, dim: int, hidden: int, approximate: str = "tanh"):
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(dim, hidden), nn.Linear(hidden, dim)
        self.approximate = approximate

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.gelu(self.fc1(x), approximate=self.approximate))


class SwiGLU(nn.Module):
    def __init__(self, dim: int, hidden: int | None = None, multiple_of: int = 64):
        super().__init__()
        # LLaMA's 8/3 width, rounded up to `multiple_of` (LlamaGen rounds to 256)
        hidden = hidden or multiple_of * ((int(8 * dim / 3) + multiple_of - 1) // multiple_of)
        self.w1 = nn.Linear(dim, hidden, bias=False)
        self.w3 = nn.Linear(dim, hidden, bias=False)
        self.w2 = nn.Linear(hidden, dim, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.w2(F.silu(self.w1(x)) * self.w3(x))


def rope_2d(grid: int, head_dim: int, n_prefix: int, base: float = 10000.0, prefix: str = "identity") -> torch.Tensor:
    """Rotary table for `n_prefix` prefix tokens then a (grid x grid) image in raster order.

    Half of the rotary pairs turn with the row, half with the column (LlamaGen's 2D RoPE). The prefix
    tokens are not rotated (`prefix="identity"`) or, as in LlamaGen's published models, get all-zero
    rows (`prefix="zero"`), which zeroes their queries and keys in every layer. Returns
    (n_prefix + grid*grid, head_dim // 2, 2): the cosine and sine of each pair's angle.
    """
    if head_dim % 4:
        raise ValueError(f"2D RoPE needs head_dim divisible by 4, got {head_dim}")
    if prefix not in ROPE_PREFIX:
        raise ValueError(f"prefix rotation must be one of {ROPE_PREFIX}, got {prefix!r}")
    quarter = head_dim // 4
    freqs = 1.0 / base ** (torch.arange(quarter, dtype=torch.float64) / quarter)
    pos = torch.arange(grid, dtype=torch.float64)
    rows = (pos[:, None, None] * freqs).expand(grid, grid, quarter)     # (g, g, hd/4) by row
    cols = (pos[None, :, None] * freqs).expand(grid, grid, quarter)     # (g, g, hd/4) by column
    img = torch.cat([rows, cols], dim=-1).reshape(grid * grid, 2 * quarter).float()
    table = torch.stack([img.cos(), img.sin()], dim=-1)
    head = no_rope(n_prefix, head_dim) if prefix == "identity" else torch.zeros(n_prefix, 2 * quarter, 2)
    return torch.cat([head, table])


ROPE_PREFIX = ("identity", "zero")


def no_rope(length: int, head_dim: int) -> torch.Tensor:
    """The rotary table that rotates nothing: (length, head_dim // 2, 2) of cos 1, sin 0."""
    return torch.stack([torch.ones(length, head_dim // 2), torch.zeros(length, head_dim // 2)], dim=-1)


def apply_rope(x: torch.Tensor, rope: torch.Tensor) -> torch.Tensor:
    """x (B, nh, T, hd), rope (T, hd/2, 2) from `rope_2d`: rotate consecutive pairs of channels."""
    x2 = x.float().unflatten(-1, (-1, 2))                              # (B, nh, T, hd/2, 2)
    cos, sin = rope.unbind(-1)
    out = torch.stack([x2[..., 0] * cos - x2[..., 1] * sin, x2[..., 0] * sin + x2[..., 1] * cos], dim=-1)
    return out.flatten(-2).type_as(x)


class KVCache(nn.Module):
    """Preallocated keys/values (B, nh, T_max, hd), written at explicit positions."""

    def __init__(self, batch: int, n_heads: int, max_len: int, head_dim: int, device, dtype):
        super().__init__()
        shape = (batch, n_heads, max_len, head_dim)
        self.register_buffer("k", torch.zeros(shape, device=device, dtype=dtype), persistent=False)
        self.register_buffer("v", torch.zeros(shape, device=device, dtype=dtype), persistent=False)

    def update(self, pos: torch.Tensor, k: torch.Tensor, v: torch.Tensor):
        self.k[:, :, pos] = k
        self.v[:, :, pos] = v
        return self.k, self.v


MAX_QK_SCALE = math.log(100.0)       # VAR clamps the learned log-scale of its normalised attention


def attend(q, k, v, mask, scale=None) -> torch.Tensor:
    """Scaled dot-product attention; on the CPU, bf16 or fp16 inputs are attended in float32 and cast back.

    Torch's CPU attention kernels run about twice as fast in float32 as in bf16 (measured on this project's 2-core
    machine, torch 2.13: forward and backward at batch 256, 8 heads, 155 tokens, 0.32 s against 0.64 s per layer),
    so training under bf16 autocast spends less time here and rounds less. Float32 inputs are untouched.
    """
    if q.device.type == "cpu" and q.dtype in (torch.bfloat16, torch.float16):
        y = F.scaled_dot_product_attention(q.float(), k.float(), v.float(), attn_mask=mask, scale=scale)
        return y.to(q.dtype)
    return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, scale=scale)


class Attention(nn.Module):
    def __init__(self, dim: int, n_heads: int, bias: bool = False, qk_norm: bool = False):
        super().__init__()
        if dim % n_heads:
            raise ValueError(f"dim {dim} is not divisible by n_heads {n_heads}")
        self.n_heads, self.head_dim = n_heads, dim // n_heads
        self.wqkv = nn.Linear(dim, 3 * dim, bias=bias)
        self.wo = nn.Linear(dim, dim, bias=bias)
        # qk_norm: cosine attention with a learned log-scale per head (VAR starts it at log 4)
        self.qk_scale = nn.Parameter(torch.full((n_heads,), math.log(4.0))) if qk_norm else None
        self.cache: KVCache | None = None

    def forward(self, x, rope, mask, pos=None):
        """x (B, T, C); rope (T, hd/2, 2), or None for a model without rotary positions; mask (T, T_kv) bool,
        True = may attend; pos (T,) writes the cache."""
        q, k, v = self.wqkv(x).split(x.shape[-1], dim=-1)
        q, k, v = (t.unflatten(-1, (self.n_heads, self.head_dim)).transpose(1, 2) for t in (q, k, v))  # (B, nh, T, hd)
        if rope is not None:
            q, k = apply_rope(q, rope), apply_rope(k, rope)
        scale = None
        if self.qk_scale is not None:
            gain = self.qk_scale.clamp(max=MAX_QK_SCALE).exp().to(q.dtype)[:, None, None]
            q, k, scale = F.normalize(q, dim=-1) * gain, F.normalize(k, dim=-1), 1.0
        if pos is not None:
            k, v = self.cache.update(pos, k, v)
        return self.wo(attend(q, k, v, mask, scale).transpose(1, 2).flatten(2))


class Block(nn.Module):
    """Pre-norm LLaMA block; with `adaln`, a condition vector modulates both norms and both branches.

    AdaLN (DiT / VAR): (shift, scale, gate) per branch from the condition; x + (1 + gate) * f(norm(x) *
    (1 + scale) + shift). The modulation starts at zero, so an untrained AdaLN block is a plain block.
    """

    def __init__(self, dim: int, n_heads: int, dropout: float = 0.0, adaln: bool = False, arch: Arch = Arch()):
        super().__init__()
        self.attn_norm, self.attn = arch.make_norm(dim), Attention(dim, n_heads, arch.bias, arch.qk_norm)
        self.ffn_norm, self.ffn = arch.make_norm(dim), arch.make_mlp(dim)
        self.drop = nn.Dropout(dropout)  # residual dropout: the emoji set is small and easy to memorise
        self.ada = nn.Sequential(nn.SiLU(), nn.Linear(dim, 6 * dim)) if adaln else None

    def forward(self, x, rope, mask, pos=None, cond=None):
        if self.ada is None:
            x = x + self.drop(self.attn(self.attn_norm(x), rope, mask, pos))
            return x + self.drop(self.ffn(self.ffn_norm(x)))
        shift1, scale1, gate1, shift2, scale2, gate2 = self.ada(cond)[:, None].chunk(6, dim=-1)   # (B, 1, C) each
        x = x + (1 + gate1) * self.drop(self.attn(self.attn_norm(x) * (1 + scale1) + shift1, rope, mask, pos))
        return x + (1 + gate2) * self.drop(self.ffn(self.ffn_norm(x) * (1 + scale2) + shift2))


class Transformer(nn.Module):
    """A stack of LLaMA blocks plus the final norm; the caller owns embeddings and heads."""

    def __init__(self, dim: int, n_layers: int, n_heads: int, dropout: float = 0.0, adaln: bool = False,
                 arch: Arch = Arch()):
        super().__init__()
        self.blocks = nn.ModuleList(Block(dim, n_heads, dropout, adaln, arch) for _ in range(n_layers))
        self.norm = arch.make_norm(dim)

    def setup_caches(self, batch: int, max_len: int, device, dtype):
        for b in self.blocks:
            b.attn.cache = KVCache(batch, b.attn.n_heads, max_len, b.attn.head_dim, device, dtype)

    def clear_caches(self):
        for b in self.blocks:
            b.attn.cache = None

    def forward(self, x, rope, mask, pos=None, cond=None):
        for b in self.blocks:
            x = b(x, rope, mask, pos, cond)
        return self.norm(x)


def pack_labels(classes: torch.Tensor, styles: torch.Tensor | None, num_classes: int) -> torch.Tensor:
    """One label per row for a model with a style condition: class + (num_classes + 1) * (style + 1); style -1
    (or None) is 'any style'. A label below num_classes + 1 is a class (or the null class) in any style, so every
    sampler and classifier-free guidance (whose null row is the null class in any style) work unchanged."""
    if styles is None:
        return classes
    return classes + (num_classes + 1) * (styles + 1)


class LabelEmbedding(nn.Embedding):
    """The class embedding (num_classes + 1 rows, the last the null class), plus, for a model with a style
    condition, a style table (num_styles + 1 rows, row 0 'any style') added to it; labels as `pack_labels` makes
    them. Without styles it is exactly an nn.Embedding, so class-only checkpoints load and decode as before."""

    def __init__(self, num_classes: int, num_styles: int, dim: int):
        super().__init__(num_classes + 1, dim)
        self.styles = nn.Embedding(num_styles + 1, dim) if num_styles else None

    def forward(self, labels: torch.Tensor) -> torch.Tensor:
        if self.styles is None:
            return super().forward(labels)
        rows = self.num_embeddings
        return super().forward(labels % rows) + self.styles(labels // rows)


def init_weights(module: nn.Module, std: float = 0.02):
    """GPT-style init: normal(0, std) for linear and embedding weights, zero biases; AdaLN modulations zero."""
    for m in module.modules():
        if isinstance(m, (nn.Linear, nn.Embedding)):
            nn.init.normal_(m.weight, std=std)
            if getattr(m, "bias", None) is not None:
                nn.init.zeros_(m.bias)
        if isinstance(m, LabelEmbedding) and m.styles is not None:
            nn.init.zeros_(m.styles.weight)   # a new style table leaves a class model's outputs as they were
    for m in module.modules():
        if isinstance(m, Block) and m.ada is not None:
            nn.init.zeros_(m.ada[1].weight)
            nn.init.zeros_(m.ada[1].bias)

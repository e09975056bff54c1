"""Next-scale generator (VAR): a whole scale of the pyramid per forward pass, block-causal attention.

Sequence: [start] + the inputs of scales 2..K (the running sum of the scales so far, down-sampled to
the next scale, projected to the model width). The start token is the class embedding; the class
also modulates every block through AdaLN. Learned position and level embeddings say where each
token sits. A token of scale k sees every token of scales <= k (`block_causal`); the tokens of scale
k give the logits of scale k's codes, all at once.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.modeling_utils import ModelMixin

from ..nn import Arch, LabelEmbedding, Transformer, init_weights

PRESETS = {
    "tiny": dict(dim=64, n_layers=2, n_heads=4),
    "small": dict(dim=256, n_layers=6, n_heads=8),
    "arena": dict(dim=256, n_layers=5, n_heads=8),
}


def block_causal(scales) -> torch.Tensor:
    """(L, L) bool: a token may attend to every token of its own scale and of all coarser scales."""
    level = torch.cat([torch.full((s * s,), k) for k, s in enumerate(scales)])
    return level[:, None] >= level[None, :]


def scale_slices(scales) -> list[slice]:
    """Where each scale's tokens sit in the flattened sequence."""
    ends = torch.tensor([s * s for s in scales]).cumsum(0).tolist()
    return [slice(e - s * s, e) for e, s in zip(ends, scales)]


class ScaleGPT(ModelMixin, ConfigMixin):

    @register_to_config
    def __init__(self, vocab_size: int = 512, num_classes: int = 99, scales: tuple = (1, 2, 3, 4, 5, 6, 8),
                 code_dim: int = 16, dim: int = 256, n_layers: int = 6, n_heads: int = 8, class_dropout: float = 0.1,
                 dropout: float = 0.0, grid: int | None = None, norm: str = "rms", norm_eps: float = 1e-6,
                 mlp: str = "swiglu", attn_bias: bool = False, qk_norm: bool = False, head_adaln: bool = False,
                 head_bias: bool = False, num_styles: int = 0):
        """After `grid`, the switches of the published VAR: LayerNorm without affine, a GELU MLP, q/v biases,
        normalised attention with a learned per-head scale, AdaLN before the head, a head with a bias."""
        super().__init__()
        scales = tuple(scales)
        self.length = sum(s * s for s in scales)
        self.cls_emb = LabelEmbedding(num_classes, num_styles, dim)   # last class row: the null class
        self.word_embed = nn.Linear(code_dim, dim)                   # next-scale inputs -> width
        self.pos_emb = nn.Parameter(torch.zeros(self.length, dim))
        self.level_emb = nn.Embedding(len(scales), dim)
        arch = Arch(norm=norm, norm_eps=norm_eps, mlp=mlp, bias=attn_bias, qk_norm=qk_norm)
        self.trunk = Transformer(dim, n_layers, n_heads, dropout, adaln=True, arch=arch)
        # the class modulates the final norm too: (scale, shift) from the class embedding (VAR's head_nm)
        self.head_ada = nn.Sequential(nn.SiLU(), nn.Linear(dim, 2 * dim)) if head_adaln else None
        self.head = nn.Linear(dim, vocab_size, bias=head_bias)
        self.register_buffer("levels", torch.cat([torch.full((s * s,), k) for k, s in enumerate(scales)]),
                             persistent=False)
        self.register_buffer("mask", block_causal(scales), persistent=False)
        init_weights(self)
        nn.init.normal_(self.pos_emb, std=0.02)
        if self.head_ada is not None:
            nn.init.zeros_(self.head_ada[1].weight)
            nn.init.zeros_(self.head_ada[1].bias)
        self.slices = scale_slices(scales)

    @property
    def null_class(self) -> int:
        return self.config.num_classes

    @property
    def scales(self) -> tuple[int, ...]:
        return tuple(self.config.scales)

    def embed(self, labels: torch.Tensor, inputs: torch.Tensor | None, first: int) -> torch.Tensor:
        """Token embeddings for positions first .. first+T-1: the start token (first == 0) then `inputs` (B, T', C)."""
        parts = [self.cls_emb(labels)[:, None]] if first == 0 else []
        if inputs is not None and inputs.shape[1]:
            parts.append(self.word_embed(inputs.to(self.word_embed.weight.dtype)))   # a bf16 model, fp32 tokenizer
        x = torch.cat(parts, dim=1)
        span = torch.arange(first, first + x.shape[1], device=x.device)
        return x + self.pos_emb[span] + self.level_emb(self.levels[span])

    def logits(self, x: torch.Tensor, labels: torch.Tensor, span: torch.Tensor | None = None) -> torch.Tensor:
        """Run the trunk on tokens x (B, T, dim): the whole sequence (span None) or cached positions `span`."""
        cond = self.cls_emb(labels)
        if span is None:
            t = x.shape[1]
            h = self.trunk(x, None, self.mask[:t, :t], cond=cond)            # no RoPE: learned positions
        else:
            h = self.trunk(x, None, self.mask[span], span, cond=cond)
        if self.head_ada is not None:
            scale, shift = self.head_ada(cond)[:, None].chunk(2, dim=-1)
            h = h * (1 + scale) + shift
        return self.head(h)

    def setup_cache(self, batch: int):
        p = self.head.weight
        self.trunk.setup_caches(batch, self.length, p.device, p.dtype)

    def clear_caches(self):
        self.trunk.clear_caches()

    def forward(self, inputs: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Teacher forcing: next-scale inputs (B, L-1, C) -> logits (B, L, V) for every code of the pyramid."""
        return self.logits(self.embed(labels, inputs, 0), labels)


def scale_loss(model: ScaleGPT, codes: torch.Tensor, inputs: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Cross-entropy over every code of the pyramid (codes (B, L) flattened scale by scale)."""
    return F.cross_entropy(model(inputs, labels).flatten(0, 1), codes.flatten())

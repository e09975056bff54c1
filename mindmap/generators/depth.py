"""Depth generator (DnD-Transformer): raster over cells, all D residual codes of a cell in one forward pass.

Heads sit at D intermediate layers (`head_layers`, e.g. after layers 5, 6, 7, 8 of 8). Within one pass
over a cell, head d predicts code d; that code's embedding is added to the hidden state and the
remaining layers run on, so head d+1 sees codes 1..d of its own cell. The next cell's input is the sum
of the embeddings of this cell's codes. Teacher forcing trains all heads at once (summed CE).

Decoding only the first d depths needs only the layers up to head d, for every cell: the heads
below it never read the layers above. Training truncates the depth at random (`depth_mask`) so a
model sampled at depth d is in the state it was trained in.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.modeling_utils import ModelMixin

from ..nn import Block, KVCache, LabelEmbedding, RMSNorm, init_weights, rope_2d
from ..tokenizers.rq import random_depths

PRESETS = {
    "tiny": dict(dim=64, n_layers=4, n_heads=4, head_layers=(1, 2, 3, 4)),
    "small": dict(dim=256, n_layers=8, n_heads=8, head_layers=(5, 6, 7, 8)),
    "arena": dict(dim=256, n_layers=6, n_heads=8, head_layers=(3, 4, 5, 6)),
}


class DepthGPT(ModelMixin, ConfigMixin):

    @register_to_config
    def __init__(self, vocab_size: int = 512, num_classes: int = 99, grid: int = 8, depth: int = 4, dim: int = 256,
                 n_layers: int = 8, n_heads: int = 8, head_layers: tuple = (5, 6, 7, 8), class_dropout: float = 0.1,
                 dropout: float = 0.0, num_styles: int = 0):
        super().__init__()
        head_layers = tuple(head_layers)
        if len(head_layers) != depth or list(head_layers) != sorted(set(head_layers)) or not (
                1 <= head_layers[0] and head_layers[-1] <= n_layers):
            raise ValueError(f"head_layers must be {depth} increasing layer numbers in [1, {n_layers}], "
                             f"got {head_layers}")
        self.code_emb = nn.ModuleList(nn.Embedding(vocab_size, dim) for _ in range(depth))
        self.cls_emb = LabelEmbedding(num_classes, num_styles, dim)   # last class row: the null class
        self.blocks = nn.ModuleList(Block(dim, n_heads, dropout) for _ in range(n_layers))
        self.head_norms = nn.ModuleList(RMSNorm(dim) for _ in range(depth))
        self.heads = nn.ModuleList(nn.Linear(dim, vocab_size, bias=False) for _ in range(depth))
        self.seq_len = grid * grid
        self.register_buffer("rope", rope_2d(grid, dim // n_heads, n_prefix=1)[:self.seq_len], persistent=False)
        self.register_buffer("causal", torch.ones(self.seq_len, self.seq_len, dtype=torch.bool).tril(),
                             persistent=False)
        init_weights(self)

    @property
    def null_class(self) -> int:
        return self.config.num_classes

    @property
    def depth(self) -> int:
        return self.config.depth

    # --- the pieces a sampler composes ------------------------------------------------------------
    def cell_input(self, codes: torch.Tensor) -> torch.Tensor:
        """codes (B, T, d) of T cells (d <= depth) -> next-cell inputs (B, T, C): the sum of their embeddings."""
        return sum(self.code_emb[k](codes[..., k]) for k in range(codes.shape[-1]))

    def inputs(self, labels: torch.Tensor, codes: torch.Tensor) -> torch.Tensor:
        """The sequence [class, cell_0, ..., cell_{T-1}] (B, 1 + T, C) for codes (B, T, d)."""
        return torch.cat([self.cls_emb(labels)[:, None], self.cell_input(codes)], dim=1)

    def segment(self, d: int) -> range:
        """The layers run between head d-1 and head d (0-based d)."""
        return range(self.config.head_layers[d - 1] if d else 0, self.config.head_layers[d])

    def run(self, x: torch.Tensor, layers: range, pos: torch.Tensor | None = None) -> torch.Tensor:
        """Run `layers` on x (B, T, C): the whole prefix (pos None) or one cached step at positions `pos`."""
        if pos is None:
            rope, mask = self.rope[:x.shape[1]], self.causal[:x.shape[1], :x.shape[1]]
        else:
            rope, mask = self.rope[pos], self.causal[pos]
        for i in layers:
            x = self.blocks[i](x, rope, mask, pos)
        return x

    def head(self, d: int, h: torch.Tensor) -> torch.Tensor:
        """Logits (..., V) of depth d from hidden states h (..., C)."""
        return self.heads[d](self.head_norms[d](h))

    def inject(self, d: int, h: torch.Tensor, codes: torch.Tensor) -> torch.Tensor:
        """Add the embeddings of depth-d codes (B, T) of the same cells to h (B, T, C)."""
        return h + self.code_emb[d](codes)

    def setup_cache(self, batch: int, depth: int):
        """KV caches for the layers that decoding `depth` codes per cell uses."""
        p = self.cls_emb.weight
        for i in range(self.config.head_layers[depth - 1]):
            attn = self.blocks[i].attn
            attn.cache = KVCache(batch, attn.n_heads, self.seq_len, attn.head_dim, p.device, p.dtype)

    def clear_caches(self):
        for b in self.blocks:
            b.attn.cache = None

    # --- training ---------------------------------------------------------------------------------
    def forward(self, codes: torch.Tensor, labels: torch.Tensor, keep: torch.Tensor | None = None) -> torch.Tensor:
        """Teacher forcing: codes (B, N, D), labels (B,) -> logits (B, N, D, V).

        keep (B, D) bool (a prefix of depths per row, `depth_mask`): depths left out are neither summed
        into the next cell's input nor injected, as when sampling at a lower depth.
        """
        keep = torch.ones(codes.shape[0], self.depth, dtype=torch.bool, device=codes.device) if keep is None else keep
        gate = keep[:, None, :, None].to(self.cls_emb.weight.dtype)                       # (B, 1, D, 1)
        emb = torch.stack([self.code_emb[k](codes[..., k]) for k in range(self.depth)], dim=2) * gate
        h = torch.cat([self.cls_emb(labels)[:, None], emb[:, :-1].sum(2)], dim=1)          # (B, N, C)
        logits = []
        for d in range(self.depth):
            h = self.run(h, self.segment(d))
            logits.append(self.head(d, h))
            h = h + emb[:, :, d]
        return torch.stack(logits, dim=2)


def depth_mask(batch: int, depth: int, generator: torch.Generator) -> torch.Tensor:
    """(batch, depth) bool keeping the first d depths of each row, d from `random_depths`."""
    return torch.arange(depth)[None] < random_depths(batch, depth, generator)[:, None]


def depth_loss(model: DepthGPT, codes: torch.Tensor, labels: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Cross-entropy summed over the kept heads (mean over cells), with random depth truncation.

    codes arrive flattened (B, N * D) like the other generators' sequences and are reshaped here.
    """
    codes = codes.view(codes.shape[0], -1, model.depth)
    keep = depth_mask(codes.shape[0], model.depth, generator).to(codes.device)
    logits = model(codes, labels, keep)                                                    # (B, N, D, V)
    ce = F.cross_entropy(logits.flatten(0, 2), codes.flatten(), reduction="none").view(codes.shape)
    return (ce * keep[:, None]).sum(2).mean()

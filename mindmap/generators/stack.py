"""Stackformer (MQ-VAE's generator): (code, position) pairs for the kept cells only, positions in raster order.

Step i of a K-pair sequence: the code transformer (causal, over [start, pair_0, ..., pair_{i-1}]) gives
h_i and the logits of code_i; the position transformer, stacked on it, reads h_i + E[code_i] (causal
too) and gives the logits of position_i over the N cells. Positions rise strictly (raster order) and
leave room for the pairs still to come, so `allowed_positions` bans the rest. The start token carries
the class (a null class for guidance) and K, the number of kept cells the mask ratio asks for
(trained for K in [min_count, N]).
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.modeling_utils import ModelMixin

from ..nn import LabelEmbedding, Transformer, init_weights

PRESETS = {
    "tiny": dict(dim=64, n_layers=2, position_layers=1, n_heads=4),
    "small": dict(dim=256, n_layers=5, position_layers=2, n_heads=8),
    "arena": dict(dim=256, n_layers=5, position_layers=2, n_heads=8),
}


def allowed_positions(last: torch.Tensor, step: int, count: torch.Tensor, n: int) -> torch.Tensor:
    """(B, n) bool: cells after the last chosen one (last (B,), -1 at first) that leave room for the rest."""
    cells = torch.arange(n, device=last.device)[None]
    return (cells > last[:, None]) & (cells <= (n - count + step)[:, None])


class StackGPT(ModelMixin, ConfigMixin):

    @register_to_config
    def __init__(self, vocab_size: int = 512, num_classes: int = 99, grid: int = 8, dim: int = 256, n_layers: int = 5,
                 position_layers: int = 2, n_heads: int = 8, class_dropout: float = 0.1, dropout: float = 0.0,
                 min_count: int = 1, num_styles: int = 0):
        super().__init__()
        n = grid * grid
        self.cls_emb = LabelEmbedding(num_classes, num_styles, dim)   # last class row: the null class
        self.count_emb = nn.Embedding(n + 1, dim)                     # K, the pairs this sequence will have
        self.step_emb = nn.Embedding(n, dim)                          # i: how far along the sequence we are
        self.code_emb = nn.Embedding(vocab_size, dim)                 # inputs: the previous pair's code ...
        self.pos_emb = nn.Embedding(n, dim)                           # ... and its cell
        self.code_trunk = Transformer(dim, n_layers, n_heads, dropout)
        self.code_head = nn.Linear(dim, vocab_size, bias=False)
        self.chosen_emb = nn.Embedding(vocab_size, dim)               # the code just chosen, for the position
        self.position_trunk = Transformer(dim, position_layers, n_heads, dropout)
        self.position_head = nn.Linear(dim, n, bias=False)
        # Order comes from the step and cell embeddings: the trunks take no rotary table.
        self.register_buffer("causal", torch.ones(n, n, dtype=torch.bool).tril(), persistent=False)
        init_weights(self)

    @property
    def null_class(self) -> int:
        return self.config.num_classes

    @property
    def cells(self) -> int:
        return self.config.grid ** 2

    def start(self, labels: torch.Tensor, counts: torch.Tensor) -> torch.Tensor:
        """The first input (B, 1, C): class + K + step 0."""
        return (self.cls_emb(labels) + self.count_emb(counts) + self.step_emb.weight[0])[:, None]

    def pairs(self, codes: torch.Tensor, positions: torch.Tensor, first_step: int) -> torch.Tensor:
        """Inputs (B, T, C) for the steps after pairs (B, T) of codes and cells, from step `first_step`."""
        steps = torch.arange(first_step, first_step + codes.shape[1], device=codes.device)
        return self.code_emb(codes) + self.pos_emb(positions) + self.step_emb(steps)[None]

    def _trunk(self, trunk: Transformer, x: torch.Tensor, pos: torch.Tensor | None) -> torch.Tensor:
        if pos is None:                                               # the whole prefix
            t = x.shape[1]
            return trunk(x, None, self.causal[:t, :t])
        return trunk(x, None, self.causal[pos], pos)

    def code_logits(self, x: torch.Tensor, pos: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Code transformer: inputs (B, T, C) -> (hidden (B, T, C), code logits (B, T, V))."""
        h = self._trunk(self.code_trunk, x, pos)
        return h, self.code_head(h)

    def position_logits(self, h: torch.Tensor, codes: torch.Tensor, pos: torch.Tensor | None = None) -> torch.Tensor:
        """Position transformer: hidden (B, T, C) and the codes chosen there (B, T) -> cell logits (B, T, N)."""
        return self.position_head(self._trunk(self.position_trunk, h + self.chosen_emb(codes), pos))

    def setup_cache(self, batch: int):
        p = self.code_head.weight
        for trunk in (self.code_trunk, self.position_trunk):
            trunk.setup_caches(batch, self.cells, p.device, p.dtype)

    def clear_caches(self):
        self.code_trunk.clear_caches()
        self.position_trunk.clear_caches()

    def forward(self, codes: torch.Tensor, positions: torch.Tensor, labels: torch.Tensor, counts: torch.Tensor):
        """Teacher forcing on padded pairs (B, T): (code logits (B, T, V), position logits (B, T, N))."""
        x = torch.cat([self.start(labels, counts), self.pairs(codes[:, :-1], positions[:, :-1], 1)], dim=1)
        h, code_logits = self.code_logits(x)
        return code_logits, self.position_logits(h, codes)


def kept_pairs(codes: torch.Tensor, scores: torch.Tensor, counts: torch.Tensor):
    """Per row, the `count` best-scoring cells in raster order: (codes (B, T), positions (B, T), valid (B, T)).

    codes and scores are every cell's (B, N), as `MQTokenizer.encode_all` gives them; T = max count.
    """
    b, n = scores.shape
    rank = scores.argsort(dim=1, descending=True).argsort(dim=1)
    kept = rank < counts[:, None]
    cells = torch.arange(n, device=codes.device).expand(b, n)
    order = torch.where(kept, cells, cells + n).argsort(dim=1)[:, :int(counts.max())]    # kept cells first, ascending
    valid = torch.arange(order.shape[1], device=codes.device)[None] < counts[:, None]
    return codes.gather(1, order), order, valid


def stack_loss(model: StackGPT, codes: torch.Tensor, scores: torch.Tensor, labels: torch.Tensor, counts: torch.Tensor):
    """Code CE + position CE over the valid pairs; position logits restricted to the allowed cells."""
    pair_codes, positions, valid = kept_pairs(codes, scores, counts)
    code_logits, pos_logits = model(pair_codes, positions, labels, counts)
    last = torch.cat([torch.full_like(positions[:, :1], -1), positions[:, :-1]], dim=1)
    allowed = torch.stack([allowed_positions(last[:, i], i, counts, model.cells) for i in range(positions.shape[1])], 1)
    pos_logits = pos_logits.masked_fill(~allowed, float("-inf"))
    code_ce = F.cross_entropy(code_logits[valid], pair_codes[valid])
    pos_ce = F.cross_entropy(pos_logits[valid], positions[valid])
    return code_ce + pos_ce

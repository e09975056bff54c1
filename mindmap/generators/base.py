"""What every LLaMA over a token grid shares: embeddings, the conditioning prefix, trunk, head.

Raster and masked generators differ only in the attention mask, the input alphabet (the masked one
adds a [MASK] code) and which positions they read logits from; the layers are built here once.

Conditioning is a prefix of P tokens before the image:
- class: P = 1, the class embedding; one extra row is the learned null class (label dropout, CFG); a model
  with a style condition adds its style's embedding (`LabelEmbedding`, labels packed by `pack_labels`);
- text: P = `text_tokens`, the prompt's MiniLM token states projected to the model width, padding
  masked out of attention; a learned empty prompt (one token) stands in for dropped captions and for
  the unconditional half of CFG.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn
from diffusers.configuration_utils import ConfigMixin
from diffusers.models.modeling_utils import ModelMixin

from ..nn import Arch, LabelEmbedding, Transformer, init_weights, rope_2d

PRESETS = {
    "tiny": dict(dim=64, n_layers=2, n_heads=4),      # tests
    "small": dict(dim=256, n_layers=6, n_heads=8),    # the embedded CPU models before the arena
    "arena": dict(dim=256, n_layers=7, n_heads=8),    # the arena: every paradigm within 5% of 6.0M parameters
    "base": dict(dim=512, n_layers=12, n_heads=8),    # for a GPU
}


@dataclass
class TextCondition:
    """A batch of prompts: token states (B, T, D), their mask (B, T) and which rows are the empty prompt.

    An encoder with a pooled vector (CLIP's projected text embedding, aMUSEd) also gives `pooled` (B, E) and the
    encoded empty prompt as `unconditional` (B rows): classifier-free guidance then uses those rows, where
    MINDmap's own models substitute a learned empty prompt for the rows flagged `empty`.
    """
    states: torch.Tensor
    mask: torch.Tensor
    empty: torch.Tensor
    pooled: torch.Tensor | None = None
    unconditional: "TextCondition | None" = None

    @property
    def shape(self) -> tuple:
        return (self.states.shape[0],)

    @property
    def device(self) -> torch.device:
        return self.states.device

    def _map(self, f) -> "TextCondition":
        """The same condition with `f` applied to every tensor."""
        return TextCondition(f(self.states), f(self.mask), f(self.empty),
                             None if self.pooled is None else f(self.pooled),
                             None if self.unconditional is None else self.unconditional._map(f))

    def __getitem__(self, idx) -> "TextCondition":
        return self._map(lambda t: t[idx])

    def to(self, device) -> "TextCondition":
        return self._map(lambda t: t.to(device))

    def with_unconditional(self) -> "TextCondition":
        """[these prompts; the empty prompt] for classifier-free guidance as one batch of 2B."""
        empty = torch.cat([self.empty, torch.ones_like(self.empty)])
        if self.unconditional is not None:
            u = self.unconditional
            return TextCondition(torch.cat([self.states, u.states]), torch.cat([self.mask, u.mask]), empty,
                                 None if self.pooled is None else torch.cat([self.pooled, u.pooled]))
        return TextCondition(self.states.repeat(2, 1, 1), self.mask.repeat(2, 1), empty,
                             None if self.pooled is None else self.pooled.repeat(2, 1))

    def drop(self, p: float, generator: torch.Generator) -> "TextCondition":
        """Caption dropout: a share `p` of rows become the empty prompt."""
        hit = torch.rand(self.empty.shape, generator=generator) < p
        return TextCondition(self.states, self.mask, self.empty | hit.to(self.empty.device))


class GridLM(ModelMixin, ConfigMixin):
    """Conditioning prefix + (grid x grid) codes -> LLaMA trunk -> code logits. Subclasses pick mask and inputs."""

    def _build(self, in_vocab: int, vocab_size: int, num_classes: int, grid: int, dim: int, n_layers: int,
               n_heads: int, dropout: float, conditioning: str = "class", text_dim: int = 384, text_tokens: int = 16,
               norm_eps: float = 1e-6, ffn_multiple_of: int = 64, prefix_rope: str = "identity", num_styles: int = 0):
        """The architecture switches after `text_tokens` exist for published models (LlamaGen: RMSNorm eps 1e-5,
        SwiGLU width a multiple of 256, zero rotary rows for the class token); the defaults are MINDmap's own."""
        if conditioning == "class":
            self.cls_emb = LabelEmbedding(num_classes, num_styles, dim)   # last class row: the null class
            self.prefix_len = 1
        elif conditioning == "text":
            self.text_proj = nn.Linear(text_dim, dim)
            self.empty_prompt = nn.Parameter(torch.zeros(dim))
            self.prefix_len = text_tokens
        else:
            raise ValueError(f"conditioning must be 'class' or 'text', got {conditioning!r}")
        self.tok_emb = nn.Embedding(in_vocab, dim)
        self.trunk = Transformer(dim, n_layers, n_heads, dropout,
                                 arch=Arch(norm_eps=norm_eps, ffn_multiple_of=ffn_multiple_of))
        self.head = nn.Linear(dim, vocab_size, bias=False)
        self.register_buffer("rope", rope_2d(grid, dim // n_heads, n_prefix=self.prefix_len, prefix=prefix_rope),
                             persistent=False)
        init_weights(self)
        if conditioning == "text":
            nn.init.normal_(self.empty_prompt, std=0.02)

    @property
    def null_class(self) -> int | None:
        """The learned 'no class' row (label dropout in training, the unconditional half of CFG); None for text."""
        return self.config.num_classes if self.config.get("conditioning", "class") == "class" else None

    def prefix(self, cond) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The conditioning prefix (B, P, C) and its key mask (B, P) (None: every prefix token is real)."""
        if not isinstance(cond, TextCondition):
            return self.cls_emb(cond)[:, None], None
        p = self.prefix_len
        states, mask = cond.states[:, :p], cond.mask[:, :p].bool()
        if states.shape[1] < p:                                           # pad to the prefix length
            pad = p - states.shape[1]
            states = torch.cat([states, states.new_zeros(states.shape[0], pad, states.shape[2])], dim=1)
            mask = torch.cat([mask, mask.new_zeros(mask.shape[0], pad)], dim=1)
        emb = self.text_proj(states.to(self.text_proj.weight.dtype))
        empty = cond.empty[:, None]
        first = torch.zeros(p, dtype=torch.bool, device=emb.device)
        first[0] = True
        emb = torch.where(empty[..., None] & first[None, :, None], self.empty_prompt, emb)
        mask = torch.where(empty, first[None], mask)
        return emb, mask

    def _embed(self, cond, codes: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """cond (labels (B,) or a TextCondition), codes (B, T) -> ((B, P + T, C), key mask (B, P + T) or None)."""
        emb, mask = self.prefix(cond)
        x = torch.cat([emb, self.tok_emb(codes)], dim=1)
        if mask is not None:
            mask = torch.cat([mask, mask.new_ones(mask.shape[0], codes.shape[1])], dim=1)
        return x, mask


def attention_mask(base: torch.Tensor | None, keys: torch.Tensor | None) -> torch.Tensor | None:
    """Combine a (T, S) mask (None: all) with a key mask (B, S) (None: all) into what SDPA takes."""
    if keys is None:
        return base
    keys = keys[:, None, None, :]                                         # (B, 1, 1, S)
    return keys if base is None else base[None, None] & keys

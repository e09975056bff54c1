"""Raster next-token generator (LlamaGen): a causal LLaMA over VQ codes, class as one prefix token.

Sequence: [prefix, code_0, ..., code_{N-2}] -> predicts [code_0, ..., code_{N-1}] from the last prefix
position on. The prefix is the class token (with a learned null class for guidance) or the prompt's
projected text states (see `base.GridLM`). No sampling in here: the model gives logits.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from diffusers.configuration_utils import register_to_config

from .base import PRESETS, GridLM, attention_mask

__all__ = ["PRESETS", "RasterGPT", "raster_loss"]


class RasterGPT(GridLM):

    @register_to_config
    def __init__(self, vocab_size: int = 512, num_classes: int = 99, grid: int = 8, dim: int = 256,
                 n_layers: int = 6, n_heads: int = 8, class_dropout: float = 0.1, dropout: float = 0.0,
                 conditioning: str = "class", text_dim: int = 384, text_tokens: int = 16, norm_eps: float = 1e-6,
                 ffn_multiple_of: int = 64, prefix_rope: str = "identity", num_styles: int = 0):
        super().__init__()
        self._build(vocab_size, vocab_size, num_classes, grid, dim, n_layers, n_heads, dropout, conditioning,
                    text_dim, text_tokens, norm_eps, ffn_multiple_of, prefix_rope, num_styles)
        self.seq_len = self.prefix_len + grid * grid - 1      # P prefix + N-1 codes in, N codes out
        self.register_buffer("causal", torch.ones(self.seq_len, self.seq_len, dtype=torch.bool).tril(),
                             persistent=False)
        self._keys: torch.Tensor | None = None                 # the cached prefix's key mask (text)

    def _run(self, x: torch.Tensor, keys: torch.Tensor | None) -> torch.Tensor:
        t = x.shape[1]
        return self.trunk(x, self.rope[:t], attention_mask(self.causal[:t, :t], keys))

    def forward(self, codes: torch.Tensor, cond) -> torch.Tensor:
        """Teacher forcing, no cache: codes (B, N) -> logits (B, N, V) for every code."""
        x, keys = self._embed(cond, codes[:, :-1])
        return self.head(self._run(x, keys)[:, self.prefix_len - 1:])

    def logits_full(self, cond, prefix: torch.Tensor) -> torch.Tensor:
        """Next-code logits (B, V) by recomputing the whole prefix (B, t): the naive baseline."""
        return self.head(self._run(*self._embed(cond, prefix))[:, -1])

    # --- cached decoding (gpt-fast style) ---------------------------------------------------------
    def compile_decode(self):
        """Compile the one-code decode step with torch.compile (inductor, static shapes): one compilation per batch
        shape, then the same codes faster (measured on a 2-core CPU: 26 s to compile `raster-emoji32`'s step cold,
        3 s with inductor's cache warm, then 0.47 s per image against 0.69 s eager, so it pays after about a
        hundred images; see the README). SJD's and ZipAR's multi-code passes, the prefill and the naive baseline
        stay eager."""
        self.decode_one_token = torch.compile(self.decode_one_token, dynamic=False)

    def setup_cache(self, batch: int):
        p = self.head.weight
        self.trunk.setup_caches(batch, self.seq_len, p.device, p.dtype)

    def clear_caches(self):
        self.trunk.clear_caches()
        self._keys = None

    def prefill(self, cond) -> torch.Tensor:
        """Run the conditioning prefix at positions 0..P-1; returns logits (B, V) for cell 0."""
        emb, keys = self.prefix(cond)
        if keys is not None:   # the key mask of the whole cache: the prefix's, then every code position
            self._keys = torch.cat([keys, keys.new_ones(keys.shape[0], self.seq_len - keys.shape[1])], dim=1)
        return self._step(emb, torch.arange(self.prefix_len, device=emb.device))

    def decode_one_token(self, codes: torch.Tensor, cell: torch.Tensor) -> torch.Tensor:
        """codes (B,) just sampled for cell-1 -> logits (B, V) for `cell` (1,)."""
        return self._step(self.tok_emb(codes)[:, None], cell + self.prefix_len - 1)

    def decode_at(self, codes: torch.Tensor, cells: torch.Tensor, visible: torch.Tensor) -> torch.Tensor:
        """codes (B, T) of `cells` (T,), fed in one pass -> logits (B, T, V), each for the cell after its own.
        `visible` (T, S): which cache slots each code's query reads (SJD's verification: the codes before it;
        ZipAR: the rows above only as far as they are decided).

        The cache is written at all T slots; entries of codes not kept (rejected drafts) are stale, so callers
        leave them out of `visible` until the slot is fed a kept code."""
        return self.head(self._hidden(self.tok_emb(codes), cells + self.prefix_len, visible))

    def _hidden(self, x: torch.Tensor, pos: torch.Tensor, visible: torch.Tensor | None = None) -> torch.Tensor:
        """x (B, T, C) fed at cache slots `pos` (T,); each query reads `visible` (T, S), by default every slot up to
        its own."""
        mask = self.causal[pos] if visible is None else visible
        return self.trunk(x, self.rope[pos], attention_mask(mask, self._keys), pos)

    def _step(self, x: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
        return self.head(self._hidden(x, pos)[:, -1])


def raster_loss(model: RasterGPT, codes: torch.Tensor, cond, generator: torch.Generator) -> torch.Tensor:
    """Teacher forcing: cross-entropy of every code given the condition and the codes before it."""
    return F.cross_entropy(model(codes, cond).flatten(0, 1), codes.flatten())

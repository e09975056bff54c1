"""Raster next-token sampling (LlamaGen): one code per step, row by row.

The real sampler prefills the class token and then feeds one token per step through the static KV
cache; the naive one (`cached=False`, the benchmark's baseline) recomputes the whole prefix every
step. Both share this loop, so they draw the same codes for the same seed.
"""
from __future__ import annotations

import time
from typing import Iterator

import torch

from ..frames import Frame
from ..sampling import cfg_mix, filter_logits, sample


class RasterState:
    """Codes, order, mask and confidence of a raster-order run; renders Frames."""

    def __init__(self, tokenizer, batch: int, device):
        g = tokenizer.grid
        self.tokenizer, self.grid = tokenizer, g
        self.tokens = torch.full((batch, g * g), -1, dtype=torch.long, device=device)
        self.order = torch.full_like(self.tokens, -1)
        self.confidence = torch.full((batch, g * g), float("nan"), device=device)

    def commit(self, cell: int, codes: torch.Tensor, probs: torch.Tensor, step: int):
        self.tokens[:, cell], self.confidence[:, cell], self.order[:, cell] = codes, probs, step

    def frame(self, step: int, total: int, calls: int, t0: float) -> Frame:
        g = self.grid
        tokens = self.tokens.view(-1, g, g)
        known = tokens >= 0
        if bool(known.all()):
            image = self.tokenizer.decode(tokens)
        else:
            image = self.tokenizer.decode_partial(tokens, known)
        return Frame(image=image, tokens=tokens.clone(), order=self.order.view(-1, g, g).clone(), mask=~known,
                     confidence=self.confidence.view(-1, g, g).clone(), step=step, total=total,
                     network_calls=calls, elapsed=time.perf_counter() - t0)


@torch.inference_mode()
def sample_raster(model, tokenizer, labels: torch.Tensor, generator: torch.Generator, cfg: float = 1.0,
                  temperature: float = 1.0, top_k: int = 0, top_p: float = 1.0, preview_every: int = 1,
                  cached: bool = True) -> Iterator[Frame]:
    """Yield a Frame every `preview_every` codes (0: only the final Frame) for class `labels` (B,)."""
    t0 = time.perf_counter()
    batch, n = labels.shape[0], tokenizer.grid ** 2
    guided = cfg != 1.0
    # CFG as one batch of 2B rows: [cond; uncond], the same sampled code fed to both halves.
    rows = torch.cat([labels, torch.full_like(labels, model.null_class)]) if guided else labels
    state = RasterState(tokenizer, batch, labels.device)
    if cached:
        model.setup_cache(rows.shape[0])
    try:
        for i in range(n):
            if cached:
                logits = model.prefill(rows) if i == 0 else model.decode_one_token(
                    prev, torch.tensor([i], device=labels.device))
            else:
                prefix = state.tokens[:, :i].repeat(2 if guided else 1, 1)
                logits = model.logits_full(rows, prefix)
            if guided:
                logits = cfg_mix(logits, cfg)
            codes, probs = sample(filter_logits(logits, temperature, top_k, top_p), generator)
            state.commit(i, codes, probs, step=i)
            prev = codes.repeat(2) if guided else codes
            if i == n - 1 or (preview_every and (i + 1) % preview_every == 0):
                yield state.frame(i + 1, n, i + 1, t0)
    finally:
        model.trunk.clear_caches()

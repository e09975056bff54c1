"""Raster next-token sampling (LlamaGen): one code per step, row by row.

The real sampler prefills the class token and then feeds one token per step through the static KV
cache; the naive one (`cached=False`, the benchmark's baseline) recomputes the whole prefix every
step. Both share this loop, so they draw the same codes for the same seed.
"""
from __future__ import annotations

from typing import Iterator

import torch

from ..frames import Frame
from ..generators.base import TextCondition
from ..sampling import cfg_mix, filter_logits, sample
from .state import GridState


def guided_rows(cond, null_class: int | None, cfg: float):
    """CFG as one batch of 2B rows, [cond; uncond] (null class, or the empty prompt); cond alone when off."""
    if cfg == 1.0:
        return cond
    if isinstance(cond, TextCondition):
        return cond.with_unconditional()
    return torch.cat([cond, torch.full_like(cond, null_class)])


def raster_cells(model, state: GridState, rows: torch.Tensor, generator: torch.Generator, cells: int,
                 cfg: float = 1.0, temperature: float = 1.0, top_k: int = 0, top_p: float = 1.0,
                 cached: bool = True) -> Iterator[int]:
    """Decide cells 0 .. cells-1 of `state` in raster order; yields each cell index once decided."""
    guided = rows.shape[0] != state.tokens.shape[0]
    if cached:
        model.setup_cache(rows.shape[0])
    try:
        prev = None
        for i in range(cells):
            if cached:
                logits = model.prefill(rows) if i == 0 else model.decode_one_token(
                    prev, torch.tensor([i], device=rows.device))
            else:
                prefix = state.tokens[:, :i].repeat(2 if guided else 1, 1)
                logits = model.logits_full(rows, prefix)
            state.calls += 1
            if guided:
                logits = cfg_mix(logits, cfg)
            codes, probs = sample(filter_logits(logits, temperature, top_k, top_p), generator)
            state.commit(i, codes, probs, step=i)
            prev = codes.repeat(2) if guided else codes
            yield i
    finally:
        model.clear_caches()


@torch.inference_mode()
def sample_raster(model, tokenizer, labels: torch.Tensor, generator: torch.Generator, cfg: float = 1.0,
                  temperature: float = 1.0, top_k: int = 0, top_p: float = 1.0, preview_every: int = 1,
                  cached: bool = True) -> Iterator[Frame]:
    """Yield a Frame every `preview_every` codes (0: only the final Frame) for class `labels` (B,)."""
    n = tokenizer.grid ** 2
    state = GridState(tokenizer, labels.shape[0], labels.device)
    rows = guided_rows(labels, model.null_class, cfg)
    for i in raster_cells(model, state, rows, generator, n, cfg, temperature, top_k, top_p, cached):
        if i == n - 1 or (preview_every and (i + 1) % preview_every == 0):
            yield state.frame(i + 1, n)

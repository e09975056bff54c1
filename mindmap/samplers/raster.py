"""Raster next-token sampling (LlamaGen): one code per step, row by row.

The real sampler prefills the condition and then feeds one token per step through the static KV
cache; the naive one (`cached=False`, the benchmark's baseline) recomputes the whole prefix every
step. Both share this loop, so they draw the same codes for the same seed.
"""
from __future__ import annotations

from typing import Iterator

import torch

from ..frames import Frame
from ..sampling import filter_logits, sample
from .scaffold import GridState, Guidance, due, kv_cache


def raster_cells(model, state: GridState, guide: Guidance, generator: torch.Generator, cells: int, cfg: float,
                 temperature: float, top_k: int, top_p: float, cached: bool = True) -> Iterator[int]:
    """Decide cells 0 .. cells-1 of `state` in raster order; yields each cell index once decided."""
    rows = guide.rows
    with kv_cache(model, rows.shape[0], enabled=cached):
        prev = None
        for i in range(cells):
            if cached:
                logits = model.prefill(rows) if i == 0 else model.decode_one_token(
                    prev, torch.tensor([i], device=rows.device))
            else:
                logits = model.logits_full(rows, guide.double(state.tokens[:, :i]))
            state.calls += 1
            codes, probs = sample(filter_logits(guide.mix(logits, cfg), temperature, top_k, top_p), generator)
            state.commit(i, codes, probs, step=i)
            prev = guide.double(codes)
            yield i


@torch.inference_mode()
def sample_raster(model, tokenizer, cond, generator: torch.Generator, *, cfg: float, temperature: float, top_k: int,
                  top_p: float, preview_every: int = 1, cached: bool = True) -> Iterator[Frame]:
    """Yield a Frame every `preview_every` codes (0: only the final Frame) for condition `cond` (B rows)."""
    n = tokenizer.grid ** 2
    guide = Guidance(cond, model.null_class, cfg)
    state = GridState(tokenizer, guide.batch, guide.rows.device)
    for i in raster_cells(model, state, guide, generator, n, cfg, temperature, top_k, top_p, cached):
        if due(i + 1, n, preview_every):
            yield state.grid_frame(i + 1, n)

"""AR then masked (MaskGIL's unified inference): a raster prefix, then parallel masked steps.

The raster model decodes the first `prefix` cells in raster order through its KV cache; the masked
model, on the same tokenizer, completes the remaining cells in `steps` confidence-ordered steps
(at most one step per remaining cell). prefix = 0 is pure masked decoding; prefix = all cells is
pure raster decoding.
"""
from __future__ import annotations

from typing import Iterator

import torch

from ..frames import Frame
from ..sampling import commit_counts
from .masked import masked_steps
from .raster import raster_cells
from .scaffold import GridState, Guidance, due


@torch.inference_mode()
def sample_hybrid(raster, masked, tokenizer, cond, generator: torch.Generator, *, prefix: int, steps: int,
                  schedule: str, randomness: float, cfg: float, cfg_schedule: str, temperature: float, top_k: int,
                  top_p: float, preview_every: int = 1) -> Iterator[Frame]:
    """Yield Frames: every `preview_every` prefix tokens, then after every masked step (0: final only)."""
    n = tokenizer.grid ** 2
    masked_total = min(steps, n - prefix)            # cells left bound the number of masked steps
    total = prefix + masked_total
    state = GridState(tokenizer, cond.shape[0], cond.device)
    plan = [1] * prefix + (commit_counts(schedule, masked_total, n - prefix) if masked_total else [])
    done: list[int] = []

    def frame():
        return state.grid_frame(len(done), total, schedule=list(done), views={"prefix": prefix, "plan": plan})

    if prefix:
        guide = Guidance(cond, raster.null_class, cfg)
        for _ in raster_cells(raster, state, guide, generator, prefix, cfg, temperature, top_k, top_p):
            done.append(1)
            if due(len(done), total, preview_every):
                yield frame()
    if masked_total:
        guide = Guidance(cond, masked.null_class, cfg)
        for k in masked_steps(masked, state, guide, generator, masked_total, schedule, randomness, cfg, cfg_schedule,
                              temperature, top_k, top_p, step0=prefix):
            done.append(k)
            if due(len(done), total, 1 if preview_every else 0):                # every masked step is shown
                yield frame()

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
from .raster import guided_rows, raster_cells
from .state import GridState


@torch.inference_mode()
def sample_hybrid(raster, masked, tokenizer, labels: torch.Tensor, generator: torch.Generator, prefix: int = 16,
                  steps: int = 8, schedule: str = "cosine", randomness: float = 4.5, cfg: float = 1.0,
                  cfg_schedule: str = "linear", temperature: float = 1.0, top_k: int = 0, top_p: float = 1.0,
                  preview_every: int = 1) -> Iterator[Frame]:
    """Yield Frames: every `preview_every` prefix tokens, then after every masked step (0: final only)."""
    n = tokenizer.grid ** 2
    if not 0 <= prefix <= n:
        raise ValueError(f"prefix must be an integer in [0, {n}], got {prefix}")
    masked_total = min(steps, n - prefix)            # cells left bound the number of masked steps
    total = prefix + masked_total
    state = GridState(tokenizer, labels.shape[0], labels.device)
    plan = [1] * prefix + (commit_counts(schedule, masked_total, n - prefix) if masked_total else [])
    done: list[int] = []

    def frame():
        return state.frame(len(done), total, schedule=list(done), views={"prefix": prefix, "plan": plan})

    if prefix:
        rows = guided_rows(labels, raster.null_class, cfg)
        for _ in raster_cells(raster, state, rows, generator, prefix, cfg, temperature, top_k, top_p):
            done.append(1)
            if len(done) == total or (preview_every and len(done) % preview_every == 0):
                yield frame()
    if masked_total:
        rows = guided_rows(labels, masked.null_class, cfg)
        for k in masked_steps(masked, state, rows, generator, masked_total, schedule, randomness, cfg, cfg_schedule,
                              temperature, top_k, top_p, step0=prefix):
            done.append(k)
            if preview_every or len(done) == total:
                yield frame()

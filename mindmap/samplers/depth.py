"""Residual-depth sampling (DnD-Transformer): one network call per cell yields all its depth codes.

Per cell: run the layers up to head 1, sample code 1, add its embedding, run on to head 2, ... up
to head `depth`. With the KV cache each call processes one position; the naive baseline
(`cached=False`) recomputes the whole prefix, injecting every earlier cell's codes at each head.
"""
from __future__ import annotations

from typing import Iterator

import torch

from ..frames import Frame
from ..sampling import filter_logits, sample
from .scaffold import GridState, Guidance, due, kv_cache


class DepthState(GridState):
    """GridState plus the (B, N, depth) codes and their probabilities; decodes at `depth`."""

    def __init__(self, tokenizer, batch: int, depth: int, device):
        super().__init__(tokenizer, batch, device)
        n = self.tokens.shape[1]
        self.codes = torch.zeros(batch, n, depth, dtype=torch.long, device=device)
        self.probs = torch.ones(batch, n, depth, device=device)

    def depth_frame(self, step: int, total: int) -> Frame:
        g, depth = self.grid, self.codes.shape[-1]
        known = self.known.view(-1, g, g)
        codes = self.codes.view(-1, g, g, depth)
        # The picture so far decoded from its first 1, 2, ..., depth codes per cell: coarse to fine.
        strip = [self.tokenizer.decode_progress(codes[..., :d], known) for d in range(1, depth + 1)]
        return self.grid_frame(step, total, image=strip[-1],
                               views={"codes": codes.clone(), "depth": depth, "depth_strip": strip})


@torch.inference_mode()
def sample_depth(model, tokenizer, cond, generator: torch.Generator, *, depth: int, cfg: float, temperature: float,
                 top_k: int, top_p: float, preview_every: int = 1, cached: bool = True) -> Iterator[Frame]:
    """Yield a Frame every `preview_every` cells (0: final only); each cell gets its first `depth` codes."""
    n = tokenizer.grid ** 2
    guide = Guidance(cond, model.null_class, cfg)
    state = DepthState(tokenizer, guide.batch, depth, cond.device)
    with kv_cache(model, guide.rows.shape[0], depth, enabled=cached):
        for t in range(n):
            both = guide.double(state.codes)                                            # (R, N, depth)
            if cached:
                x = model.inputs(guide.rows, both[:, :0]) if t == 0 else model.cell_input(both[:, t - 1:t])
                pos = torch.tensor([t], device=cond.device)
            else:
                x, pos = model.inputs(guide.rows, both[:, :t]), None
            for d in range(depth):
                x = model.run(x, model.segment(d), pos)
                logits = guide.mix(model.head(d, x[:, -1]), cfg)
                code, prob = sample(filter_logits(logits, temperature, top_k, top_p), generator)
                state.codes[:, t, d], state.probs[:, t, d] = code, prob
                both = guide.double(state.codes)
                x = model.inject(d, x, both[:, t + 1 - x.shape[1]:t + 1, d])
            state.calls += 1
            # A cell's confidence: the geometric mean of its codes' probabilities.
            state.commit(t, state.codes[:, t, 0], state.probs[:, t].log().mean(-1).exp(), step=t)
            if due(t + 1, n, preview_every):
                yield state.depth_frame(t + 1, n)

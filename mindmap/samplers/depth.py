"""Residual-depth sampling (DnD-Transformer): one network call per cell yields all its depth codes.

Per cell: run the layers up to head 1, sample code 1, add its embedding, run on to head 2, ... up
to head `depth`. With the KV cache each call processes one position; the naive baseline
(`cached=False`) recomputes the whole prefix, injecting every earlier cell's codes at each head.
"""
from __future__ import annotations

import time
from typing import Iterator

import torch

from ..frames import Frame
from ..sampling import cfg_mix, filter_logits, sample
from .raster import guided_rows
from .state import GridState


class DepthState(GridState):
    """GridState plus the (B, N, depth) codes and their probabilities; decodes at `depth`."""

    def __init__(self, tokenizer, batch: int, depth: int, device):
        super().__init__(tokenizer, batch, device)
        n = self.tokens.shape[1]
        self.codes = torch.zeros(batch, n, depth, dtype=torch.long, device=device)
        self.probs = torch.ones(batch, n, depth, device=device)

    def frame(self, step: int, total: int, **extra) -> Frame:
        g, depth = self.grid, self.codes.shape[-1]
        known = self.known.view(-1, g, g)
        codes = self.codes.view(-1, g, g, depth)
        done = bool(known.all())
        image = self.tokenizer.decode(codes) if done else self.tokenizer.decode_partial(codes, known)
        # The picture so far decoded from its first 1, 2, ..., depth codes per cell: coarse to fine.
        strip = [self.tokenizer.decode(codes[..., :d]) if done else self.tokenizer.decode_partial(codes[..., :d], known)
                 for d in range(1, depth + 1)]
        views = {"codes": codes.clone(), "depth": depth, "depth_strip": strip}
        return Frame(image=image, tokens=self.tokens.view(-1, g, g).clone(), order=self.order.view(-1, g, g).clone(),
                     mask=~known, confidence=self.confidence.view(-1, g, g).clone(), step=step, total=total,
                     network_calls=self.calls, elapsed=time.perf_counter() - self.t0, views=views, **extra)


@torch.inference_mode()
def sample_depth(model, tokenizer, labels: torch.Tensor, generator: torch.Generator, depth: int | None = None,
                 cfg: float = 1.0, temperature: float = 1.0, top_k: int = 0, top_p: float = 1.0,
                 preview_every: int = 1, cached: bool = True) -> Iterator[Frame]:
    """Yield a Frame every `preview_every` cells (0: final only); each cell gets its first `depth` codes."""
    depth = depth or model.depth
    if not 1 <= depth <= model.depth:
        raise ValueError(f"depth must be an integer in [1, {model.depth}], got {depth}")
    n, batch = tokenizer.grid ** 2, labels.shape[0]
    rows = guided_rows(labels, model.null_class, cfg)
    guided = rows.shape[0] != batch
    state = DepthState(tokenizer, batch, depth, labels.device)
    if cached:
        model.setup_cache(rows.shape[0], depth)
    try:
        for t in range(n):
            both = state.codes.repeat(2, 1, 1) if guided else state.codes               # (R, N, depth)
            if cached:
                x = model.inputs(rows, both[:, :0]) if t == 0 else model.cell_input(both[:, t - 1:t])
                pos = torch.tensor([t], device=labels.device)
            else:
                x, pos = model.inputs(rows, both[:, :t]), None
            for d in range(depth):
                x = model.run(x, model.segment(d), pos)
                logits = model.head(d, x[:, -1])
                if guided:
                    logits = cfg_mix(logits, cfg)
                code, prob = sample(filter_logits(logits, temperature, top_k, top_p), generator)
                state.codes[:, t, d], state.probs[:, t, d] = code, prob
                both = state.codes.repeat(2, 1, 1) if guided else state.codes
                x = model.inject(d, x, both[:, t + 1 - x.shape[1]:t + 1, d])
            state.calls += 1
            # A cell's confidence: the geometric mean of its codes' probabilities.
            state.commit(t, state.codes[:, t, 0], state.probs[:, t].log().mean(-1).exp(), step=t)
            if t == n - 1 or (preview_every and (t + 1) % preview_every == 0):
                yield state.frame(t + 1, n)
    finally:
        model.clear_caches()

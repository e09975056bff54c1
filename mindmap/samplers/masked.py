"""Masked parallel decoding (MaskGIT / MaskGIL): a whole grid in a handful of steps.

Each step: one network call scores every open cell; a code is sampled for each; its confidence is
log p(code) plus Gumbel noise scaled by `randomness` * (1 - progress), annealed to 0 by the last
step; the most confident open cells are committed (as many as the schedule says) and the rest are
re-masked. Committed cells never change. The last step commits everything left.
"""
from __future__ import annotations

from typing import Iterator

import torch

from ..frames import Frame
from ..sampling import cfg_at, commit_counts, filter_logits, gumbel_noise, sample
from .scaffold import GridState, Guidance, due


def masked_steps(model, state: GridState, guide: Guidance, generator: torch.Generator, steps: int, schedule: str,
                 randomness: float, cfg: float, cfg_schedule: str, temperature: float, top_k: int, top_p: float,
                 step0: int = 0) -> Iterator[int]:
    """Fill every open cell of `state` in `steps` steps; yields the number of cells committed at each.

    Open cells are the same in every row (a fresh grid, or a raster prefix of the same length).
    `step0` offsets the step recorded in the order map (the hybrid's prefix steps come first).
    """
    batch, n = state.tokens.shape
    counts = commit_counts(schedule, steps, int((~state.known[0]).sum()))
    for t, k in enumerate(counts):
        known = state.known
        inputs = state.tokens.masked_fill(~known, model.mask_id)
        logits = model(guide.double(inputs), guide.rows)                          # (B or 2B, N, V)
        state.calls += 1
        logits = guide.mix(logits, cfg_at(cfg, cfg_schedule, t, len(counts)))
        codes, probs = sample(filter_logits(logits, temperature, top_k, top_p).flatten(0, 1), generator)
        codes, probs = codes.view(batch, n), probs.view(batch, n)
        tau = randomness * (1.0 - (t + 1) / len(counts))
        score = probs.clamp_min(1e-30).log() + tau * gumbel_noise((batch, n), generator)
        score = score.masked_fill(known, float("inf"))                            # committed cells stay
        keep = known.sum(1, keepdim=True)[:1].item() + k
        chosen = torch.zeros_like(known).scatter_(1, score.topk(keep, dim=1).indices, True)
        state.commit_where(chosen & ~known, codes, probs, step=step0 + t)
        yield k


@torch.inference_mode()
def sample_masked(model, tokenizer, cond, generator: torch.Generator, *, steps: int, schedule: str, randomness: float,
                  cfg: float, cfg_schedule: str, temperature: float, top_k: int, top_p: float,
                  preview_every: int = 1) -> Iterator[Frame]:
    """Yield a Frame after every `preview_every` steps (0: only the final Frame) for condition `cond` (B rows)."""
    guide = Guidance(cond, model.null_class, cfg)
    state = GridState(tokenizer, guide.batch, cond.device)
    plan, done = commit_counts(schedule, steps, tokenizer.grid ** 2), []
    for k in masked_steps(model, state, guide, generator, steps, schedule, randomness, cfg, cfg_schedule,
                          temperature, top_k, top_p):
        done.append(k)
        if due(len(done), steps, preview_every):
            yield state.grid_frame(len(done), steps, schedule=list(done), views={"plan": plan})

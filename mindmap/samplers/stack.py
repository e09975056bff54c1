"""Stackformer sampling (MQ-VAE): K = round((1 - mask_ratio) * N) (code, position) pairs, then the de-mask.

Each step runs the code transformer one position further, samples a code, runs the position
transformer on it and samples a cell among those still allowed (after the last one, leaving room for
the rest). A step is one network call (both stacked transformers, one position each, KV-cached);
`cached=False` recomputes both over the whole prefix. The MQ decoder fills the cells never chosen.
"""
from __future__ import annotations

from typing import Iterator

import torch

from ..frames import Frame
from ..generators.stack import allowed_positions
from ..sampling import filter_logits, sample
from .scaffold import GridState, Guidance, due, kv_cache


def kept_count(mask_ratio: float, n: int) -> int:
    return max(1, round((1.0 - mask_ratio) * n))


@torch.inference_mode()
def sample_stack(model, tokenizer, cond, generator: torch.Generator, *, mask_ratio: float, cfg: float,
                 temperature: float, top_k: int, top_p: float, preview_every: int = 1,
                 cached: bool = True) -> Iterator[Frame]:
    """Yield a Frame every `preview_every` pairs (0: final only); the last adds the importance views."""
    n = tokenizer.grid ** 2
    k = kept_count(mask_ratio, n)
    guide = Guidance(cond, model.null_class, cfg)
    rows, batch, device = guide.rows, guide.batch, cond.device
    counts = torch.full_like(rows, k)
    state = GridState(tokenizer, batch, device)
    last = torch.full((batch,), -1, dtype=torch.long, device=device)
    inputs = [model.start(rows, counts)]                                      # (R, 1, C) per step
    chosen_codes = []
    with kv_cache(model, rows.shape[0], enabled=cached):
        for i in range(k):
            pos = torch.tensor([i], device=device) if cached else None
            x = inputs[-1] if cached else torch.cat(inputs, dim=1)
            h, code_logits = model.code_logits(x, pos)
            code, prob = sample(filter_logits(guide.mix(code_logits[:, -1], cfg), temperature, top_k, top_p),
                                generator)
            code_r = guide.double(code)
            chosen_codes.append(code_r)
            codes_in = code_r[:, None] if cached else torch.stack(chosen_codes, 1)
            pos_logits = guide.mix(model.position_logits(h, codes_in, pos)[:, -1], cfg)
            pos_logits = pos_logits.masked_fill(~allowed_positions(last, i, counts[:batch], n), float("-inf"))
            cell, _ = sample(pos_logits / temperature, generator)
            last = cell
            state.calls += 1
            hit = torch.zeros(batch, n, dtype=torch.bool, device=device).scatter_(1, cell[:, None], True)
            state.commit_where(hit, code[:, None].expand(-1, n), prob[:, None].expand(-1, n), step=i)
            if i < k - 1:                                                     # the next step's input
                inputs.append(model.pairs(code_r[:, None], guide.double(cell)[:, None], i + 1))
            if due(i + 1, k, preview_every):
                frame = state.grid_frame(i + 1, k, views={"mask_ratio": mask_ratio, "kept": k})
                if i == k - 1:   # what the MQ encoder finds important in the finished picture
                    frame.views["importance"] = tokenizer.importance(frame.image)
                yield frame

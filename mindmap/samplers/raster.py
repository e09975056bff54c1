"""Raster next-token sampling (LlamaGen): one code per step, row by row, or several per call with SJD.

The real sampler prefills the condition and then feeds one token per step through the static KV
cache; the naive one (`cached=False`, the benchmark's baseline) recomputes the whole prefix every
step. Both share this loop, so they draw the same codes for the same seed.

Speculative Jacobi decoding (SJD, Teng et al. 2024; `jacobi_window` W > 1) keeps W draft codes after
the decided ones and verifies them all in one cached pass: the pass's input is the last decided code
and the drafts, its output the model's distribution p for each drafted cell (and the one after),
given the drafts before it. Left to right, a draft drawn from q is accepted with probability
min(1, p/q); at the first rejection the cell is drawn from norm(max(0, p - q)) and the pass ends;
if all are accepted the next cell is drawn from p. This is speculative sampling's rule, so every
decided code is an exact draw from the model's (guided, filtered) distribution, as in plain
decoding, whatever the drafts. The cells not reached are re-drafted from this pass's p (the Jacobi
update: a fixed point where drafts stop changing); a new cell at the window's end is drafted as the
code above it (first row: to its left), a one-hot q, a spatial prior in place of SJD's uniform one
(measured: slightly fewer calls on the emoji models). Rows of a batch advance together: by the
fewest cells any row decided, so SJD pays off at batch 1.
"""
from __future__ import annotations

from typing import Iterator

import torch

from ..frames import Frame
from ..sampling import filter_logits, residual_sample, sample, speculative_accept
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


def jacobi_cells(model, state: GridState, guide: Guidance, generator: torch.Generator, cells: int, window: int,
                 cfg: float, temperature: float, top_k: int, top_p: float) -> Iterator[int]:
    """Decide cells 0 .. cells-1 of `state` in raster order, up to `window` + 1 per network call (SJD, see the
    module's docstring); yields the number of cells each call decided. The order map records, for every cell,
    the first cell its call decided, so a call's cells share a colour."""
    rows, batch, device, grid = guide.rows, guide.batch, guide.rows.device, state.grid

    def target(logits: torch.Tensor) -> torch.Tensor:        # rows' logits (R, T, V) -> guided probs (B, T, V)
        return filter_logits(guide.mix(logits, cfg), temperature, top_k, top_p).float().softmax(-1)

    def draw(p: torch.Tensor) -> torch.Tensor:               # (B, T, V) -> one code per row and cell (B, T)
        if p.shape[1] == 0:
            return torch.empty(batch, 0, dtype=torch.long, device=device)
        return torch.multinomial(p.flatten(0, 1), 1, generator=generator).view(batch, -1).to(device)

    with kv_cache(model, rows.shape[0]):
        p = target(model.prefill(rows)[:, None])
        state.calls += 1
        first = draw(p)[:, 0]
        state.commit(0, first, p[:, 0].gather(-1, first[:, None])[:, 0], step=0)
        yield 1
        n, drafts, q = 1, draw(p[:, 1:]), p[:, 1:]
        while n < cells:
            w = min(window, cells - n)
            for cell in range(n + drafts.shape[1], n + w):  # new cells at the window's end: the code above
                src = cell - grid if cell >= grid else cell - 1   # (first row: to the left), drafted for sure
                code = state.tokens[:, src] if src < n else drafts[:, src - n]
                drafts = torch.cat([drafts, code[:, None]], 1)
                q = torch.cat([q, torch.nn.functional.one_hot(code, p.shape[-1]).to(q.dtype)[:, None]], 1)
            drafts, q = drafts[:, :w], q[:, :w]
            full = n + w < cells                             # the pass also scores the cell after the window
            inputs = torch.cat([state.tokens[:, n - 1:n], drafts[:, :w if full else w - 1]], 1)
            p = target(model.decode_tokens(guide.double(inputs), n))                  # cells n .. n + w (- 1)
            state.calls += 1
            ok = speculative_accept(p[:, :w], q, drafts, generator)
            reject = torch.where((~ok).any(1), (~ok).int().argmax(1), w)             # first rejection per row
            k = int(reject.min())
            for j in range(k):
                state.commit(n + j, drafts[:, j], p[:, j].gather(-1, drafts[:, j:j + 1])[:, 0], step=n)
            decided = k
            if k < w:                                  # a row that rejected here redraws; the others keep theirs
                code = torch.where(reject == k, residual_sample(p[:, k], q[:, k], generator).to(device), drafts[:, k])
                decided = k + 1
            elif full:
                code = draw(p[:, w:w + 1])[:, 0]         # every draft accepted: the cell after comes free
                decided = w + 1
            if decided > k:
                state.commit(n + k, code, p[:, k].gather(-1, code[:, None])[:, 0], step=n)
            drafts, q = draw(p[:, decided:]), p[:, decided:]                       # the Jacobi update
            n += decided
            yield decided


@torch.inference_mode()
def sample_raster(model, tokenizer, cond, generator: torch.Generator, *, cfg: float, temperature: float, top_k: int,
                  top_p: float, jacobi_window: int = 1, preview_every: int = 1,
                  cached: bool = True) -> Iterator[Frame]:
    """Yield a Frame every `preview_every` codes (0: only the final Frame) for condition `cond` (B rows);
    `jacobi_window` > 1 decodes with SJD (needs the KV cache)."""
    n = tokenizer.grid ** 2
    guide = Guidance(cond, model.null_class, cfg)
    state = GridState(tokenizer, guide.batch, guide.rows.device)
    if jacobi_window > 1 and not cached:
        raise ValueError("jacobi_window: speculative Jacobi decoding verifies drafts through the KV cache; the "
                         "naive baseline (cached=False) takes jacobi_window 1")
    calls = ((1 for _ in raster_cells(model, state, guide, generator, n, cfg, temperature, top_k, top_p, cached))
             if jacobi_window == 1 else
             jacobi_cells(model, state, guide, generator, n, jacobi_window, cfg, temperature, top_k, top_p))
    per_call, done = [], 0                           # cells decided by each network call, and so far
    for decided in calls:
        per_call.append(decided)
        done += decided
        if due(done, n, preview_every, decided):
            yield state.grid_frame(done, n, schedule=list(per_call),
                                   views={"schedule_label": "codes decided per network call"})

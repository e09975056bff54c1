"""Raster next-token sampling (LlamaGen): one code per step, row by row, or several per call with SJD or ZipAR.

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
update), each by the same rule: its draft is kept with probability min(1, p/q), else redrawn from
norm(max(0, p - q)). That is an exact draw from p which changes only where p moved away from it, so the
drafts settle as the model's view of them settles, the fixed point Jacobi iteration seeks (measured: 32
calls for 64 codes at W = 16, against 35.4 for fresh draws from p). A new cell at the window's end is drafted as the
code above it (first row: to its left), a one-hot q, a spatial prior in place of SJD's uniform one
(measured: slightly fewer calls on the emoji models). Rows of a batch advance together: by the
fewest cells any row decided, so SJD pays off at batch 1.

ZipAR (He et al. 2024; `zip_window` Z > 0) decodes image rows as parallel chains: row r + 1 starts once
row r has Z codes, and every call advances each started row by one code (with SJD as well, by up to
W + 1). A grid of G rows takes (G - 1) Z + G calls instead of G^2. It trades exactness for speed: the
first code of a row is predicted from a stand-in, the row above's latest code fed at the slot of that
row's last cell (ZipAR's choice), and a row's queries read the rows above only as far as they are
decided (the cache keeps which slots hold decided codes; other chains' drafts and stand-ins are never
read). With SJD each drafted code is still an exact draw from the model given what is decided when it
is verified, but that context differs from plain raster decoding, so ZipAR's quality is what `eval`
measures, not a guarantee.
"""
from __future__ import annotations

from typing import Iterator

import torch
import torch.nn.functional as F

from ..frames import Frame
from ..sampling import filter_logits, redraft, residual_sample, sample, speculative_accept
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


class Chains:
    """The bookkeeping of decoding the grid as chains of cells (ZipAR's image rows, or one chain: the whole grid),
    each advanced once per network call, several chains per call (see the module's docstring).

    `done[c]`: cells decided in chain c (the batch shares the schedule); `drafts[c]`, `q[c]`: SJD's drafts for the
    cells after them and the distributions they were drawn from; `committed[s]`: the KV cache at slot s holds a
    decided code's keys and values (the prefix, and every fed code that stayed decided), the only slots another
    chain's queries may read. Code of cell x is fed at slot P + x, where the output predicts cell x + 1."""

    def __init__(self, model, state: GridState, span: int, lead: int, window: int):
        self.state, self.span, self.lead, self.window = state, span, lead, window
        self.n = state.tokens.shape[1] // span
        self.done = [0] * self.n
        self.drafts: list[torch.Tensor | None] = [None] * self.n
        self.q: list[torch.Tensor | None] = [None] * self.n
        self.prefix = model.prefix_len
        self.committed = torch.zeros(model.seq_len, dtype=torch.bool)
        self.committed[:self.prefix] = True

    def started(self, c: int) -> bool:
        return c == 0 or self.done[c - 1] >= min(self.lead, self.span)

    def guess(self, cell: int) -> torch.Tensor:
        """A one-hot draft for an open cell: the code above it (first row: to its left), decided or drafted; the
        code to its left when the one above has neither."""
        for src in ((cell - self.state.grid, cell - 1) if cell >= self.state.grid else (cell - 1,)):
            c, i = divmod(src, self.span)
            if i < self.done[c]:
                return self.state.tokens[:, src]
            if self.drafts[c] is not None and i - self.done[c] < self.drafts[c].shape[1]:
                return self.drafts[c][:, i - self.done[c]]
        raise AssertionError(f"cell {cell} has no decided or drafted neighbour")   # the left one always has

    def plan(self) -> list[tuple]:
        """This call's chains: (chain, cells drafted w, input codes (B, L), input cells (L,), whether the head is
        the real code of its cell). A chain's head is the code before its first open cell; for a chain whose
        chain above has not decided that cell yet, it is the above chain's latest code at that cell's slot
        (ZipAR's stand-in). A finished chain whose last code was never fed feeds it alone (its keys and values are
        context for the chain below), unless the chain below's head is that code."""
        out = []
        for c in range(self.n):
            d, base = self.done[c], c * self.span
            last = c == self.n - 1
            if d == self.span:
                if not last and not self.committed[self.prefix + base + d - 1] and self.done[c + 1] > 0:
                    out.append((c, 0, self.state.tokens[:, base + d - 1:base + d], torch.tensor([base + d - 1]), True))
                continue
            if not self.started(c):
                continue
            head, real = base + d - 1, d > 0 or self.done[c - 1] == self.span
            code = self.state.tokens[:, head] if real else self.state.tokens[:, head - self.span + self.done[c - 1]]
            w = min(self.window, self.span - d)
            if w:
                for i in range(d + self.drafts[c].shape[1], d + w):    # new cells at the window's end, drafted
                    g = self.guess(base + i)                                # for sure (a one-hot q)
                    self.drafts[c] = torch.cat([self.drafts[c], g[:, None]], 1)
                    one_hot = F.one_hot(g, self.q[c].shape[-1]).to(self.q[c].dtype)
                    self.q[c] = torch.cat([self.q[c], one_hot[:, None]], 1)
                self.drafts[c], self.q[c] = self.drafts[c][:, :w], self.q[c][:, :w]
            fed = w if d + w < self.span else w - 1         # the pass also scores the cell after the window
            codes = torch.cat([code[:, None], self.drafts[c][:, :fed]], 1) if fed > 0 else code[:, None]
            out.append((c, w, codes, torch.arange(head, head + codes.shape[1]), real))
        return out

    def visible(self, plan) -> torch.Tensor:
        """(L, S) which cache slots each fed code's query reads, up to its own slot: committed slots, this call's
        real heads (decided codes), its own chain's drafts before it, and itself; never another chain's unverified
        drafts, nor a stand-in head but its own query."""
        slots = torch.cat([cells for *_, cells, _ in plan]) + self.prefix
        chain = torch.cat([torch.full((len(cells),), k) for k, (*_, cells, _) in enumerate(plan)])
        draft = torch.cat([torch.arange(len(cells)) > 0 for *_, cells, _ in plan])
        shared = self.committed.clone()
        for *_, cells, real in plan:
            shared[self.prefix + cells[0]] |= real
        mask = shared[None] & (torch.arange(shared.shape[0])[None] <= slots[:, None])
        earlier = slots[None] <= slots[:, None]
        own = (chain[:, None] == chain[None]) & earlier & (draft[None] | torch.eye(len(slots), dtype=torch.bool))
        mask[:, slots] |= own                                                      # the slots are distinct
        return mask


def chain_cells(model, state: GridState, guide: Guidance, generator: torch.Generator, window: int, zip_window: int,
                cfg: float, temperature: float, top_k: int, top_p: float) -> Iterator[int]:
    """Decide every cell of `state` with SJD (`window` > 1 drafts per chain), ZipAR (`zip_window` > 0: one chain
    per image row, each starting once the row above has `zip_window` codes), or both; yields the number of cells
    each network call decided. The order map records, for every cell, the first cell its call decided (in raster
    order), so a call's cells share a colour."""
    rows, batch, device, cells = guide.rows, guide.batch, guide.rows.device, state.tokens.shape[1]
    chains = Chains(model, state, state.grid if zip_window else cells, zip_window, window if window > 1 else 0)

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
        chains.done[0], chains.drafts[0], chains.q[0] = 1, draw(p[:, 1:]), p[:, 1:]
        for c in range(1, chains.n):
            chains.drafts[c], chains.q[c] = first.new_empty(batch, 0), p.new_empty(batch, 0, p.shape[-1])
        yield 1
        while sum(chains.done) < cells:
            plan = chains.plan()
            codes = torch.cat([codes for _, _, codes, _, _ in plan], 1)
            inputs = torch.cat([cells_ for *_, cells_, _ in plan])
            p_all = target(model.decode_at(guide.double(codes), inputs.to(device), chains.visible(plan).to(device)))
            state.calls += 1
            step = min(c * chains.span + chains.done[c] for c, *_ in plan if chains.done[c] < chains.span)
            decided_here, offset = 0, 0
            for c, w, codes_c, cells_c, real in plan:
                p, offset = p_all[:, offset:offset + cells_c.shape[0]], offset + cells_c.shape[0]
                d, base = chains.done[c], c * chains.span
                if real:
                    chains.committed[chains.prefix + cells_c[0]] = True
                if d == chains.span:                            # a finished chain's last code, fed as context
                    continue
                drafts, q = chains.drafts[c], chains.q[c]
                ok = speculative_accept(p[:, :w], q, drafts, generator)
                reject = (torch.where((~ok).any(1), (~ok).int().argmax(1), w) if w      # first rejection per row
                          else ok.new_zeros(batch, dtype=torch.long))
                k = int(reject.min())
                for j in range(k):
                    state.commit(base + d + j, drafts[:, j], p[:, j].gather(-1, drafts[:, j:j + 1])[:, 0], step=step)
                chains.committed[chains.prefix + cells_c[1:1 + k]] = True             # accepted drafts that were fed
                decided = k
                if k < w:                              # a row that rejected here redraws; the others keep theirs
                    code = torch.where(reject == k, residual_sample(p[:, k], q[:, k], generator).to(device),
                                       drafts[:, k])
                    decided = k + 1
                elif d + w < chains.span:
                    code = draw(p[:, w:w + 1])[:, 0]         # every draft accepted: the cell after comes free
                    decided = w + 1
                if decided > k:
                    state.commit(base + d + k, code, p[:, k].gather(-1, code[:, None])[:, 0], step=step)
                kept = redraft(drafts[:, decided:], q[:, decided:], p[:, decided:w], generator)   # the Jacobi update
                chains.drafts[c], chains.q[c] = torch.cat([kept, draw(p[:, max(w, decided):])], 1), p[:, decided:]
                chains.done[c] += decided
                decided_here += decided
            yield decided_here


@torch.inference_mode()
def sample_raster(model, tokenizer, cond, generator: torch.Generator, *, cfg: float, temperature: float, top_k: int,
                  top_p: float, jacobi_window: int = 1, zip_window: int = 0, preview_every: int = 1,
                  cached: bool = True) -> Iterator[Frame]:
    """Yield a Frame every `preview_every` codes (0: only the final Frame) for condition `cond` (B rows);
    `jacobi_window` > 1 decodes with SJD, `zip_window` > 0 with ZipAR (both need the KV cache)."""
    n = tokenizer.grid ** 2
    guide = Guidance(cond, model.null_class, cfg)
    state = GridState(tokenizer, guide.batch, guide.rows.device)
    for name, value, off in (("jacobi_window", jacobi_window, 1), ("zip_window", zip_window, 0)):
        if value != off and not cached:
            raise ValueError(f"{name}: speculative Jacobi decoding and ZipAR decode through the KV cache; the naive "
                             f"baseline (cached=False) takes {name} {off}")
    if not 0 <= zip_window < tokenizer.grid:
        raise ValueError(f"zip_window must be 0 (off) to {tokenizer.grid - 1} (the grid's width - 1), got {zip_window}")
    calls = ((1 for _ in raster_cells(model, state, guide, generator, n, cfg, temperature, top_k, top_p, cached))
             if jacobi_window == 1 and zip_window == 0 else
             chain_cells(model, state, guide, generator, jacobi_window, zip_window, cfg, temperature, top_k, top_p))
    per_call, done = [], 0                           # cells decided by each network call, and so far
    for decided in calls:
        per_call.append(decided)
        done += decided
        if due(done, n, preview_every, decided):
            yield state.grid_frame(done, n, schedule=list(per_call),
                                   views={"schedule_label": "codes decided per network call"})

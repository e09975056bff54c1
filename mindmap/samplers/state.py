"""The state every token-grid sampler keeps: codes so far, the step that decided each cell, confidence.

Samplers commit cells (one at a time or many at once) and ask for a Frame whenever they stream; the
partial image greys the cells still open.
"""
from __future__ import annotations

import time

import torch

from ..frames import Frame


class GridState:
    """Codes (B, N) with -1 where open, the deciding step (B, N), the sampled code's probability (B, N)."""

    def __init__(self, tokenizer, batch: int, device, t0: float | None = None):
        g = tokenizer.grid
        self.tokenizer, self.grid = tokenizer, g
        self.tokens = torch.full((batch, g * g), -1, dtype=torch.long, device=device)
        self.order = torch.full_like(self.tokens, -1)
        self.confidence = torch.full((batch, g * g), float("nan"), device=device)
        self.calls = 0
        self.t0 = time.perf_counter() if t0 is None else t0

    @property
    def known(self) -> torch.Tensor:
        return self.tokens >= 0

    def commit(self, cell: int, codes: torch.Tensor, probs: torch.Tensor, step: int):
        """Decide one cell for every row: codes, probs (B,)."""
        self.tokens[:, cell], self.confidence[:, cell], self.order[:, cell] = codes, probs, step

    def commit_where(self, chosen: torch.Tensor, codes: torch.Tensor, probs: torch.Tensor, step: int):
        """Decide the cells where `chosen` (B, N) is True, taking their codes/probs (B, N)."""
        self.tokens = torch.where(chosen, codes, self.tokens)
        self.confidence = torch.where(chosen, probs, self.confidence)
        self.order = self.order.masked_fill(chosen, step)

    def frame(self, step: int, total: int, **extra) -> Frame:
        g = self.grid
        tokens = self.tokens.view(-1, g, g)
        known = tokens >= 0
        image = self.tokenizer.decode(tokens) if bool(known.all()) else self.tokenizer.decode_partial(tokens, known)
        return Frame(image=image, tokens=tokens.clone(), order=self.order.view(-1, g, g).clone(), mask=~known,
                     confidence=self.confidence.view(-1, g, g).clone(), step=step, total=total,
                     network_calls=self.calls, elapsed=time.perf_counter() - self.t0, **extra)

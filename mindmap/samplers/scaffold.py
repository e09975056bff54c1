"""What every sampler loop shares: guidance rows, the preview cadence, the KV cache's lifetime, one Frame builder.

A sampler owns its paradigm's loop and nothing else: `Guidance` builds the rows of classifier-free
guidance and mixes their logits, `due` says when to yield a preview, `kv_cache` allocates a model's
cache for one run and always frees it, and `Progress` / `GridState` count network calls and time and
build the Frame. Samplers reach tokenizers only through their public decode API.
"""
from __future__ import annotations

import time
from contextlib import contextmanager

import torch

from ..frames import Frame, LazyFrame
from ..generators.base import TextCondition
from ..sampling import cfg_mix


class Guidance:
    """Classifier-free guidance as one batch of 2B rows, [cond; uncond] (null class or empty prompt); cond
    alone when cfg is 1."""

    def __init__(self, cond, null_class: int | None, cfg: float):
        self.batch = cond.shape[0]
        if cfg == 1.0:
            self.rows = cond
        elif isinstance(cond, TextCondition):
            self.rows = cond.with_unconditional()
        else:
            self.rows = torch.cat([cond, torch.full_like(cond, null_class)])
        self.guided = self.rows.shape[0] != self.batch

    def double(self, x: torch.Tensor) -> torch.Tensor:
        """x (B, ...) for every row: [x; x] when guided."""
        return x.repeat(2, *[1] * (x.ndim - 1)) if self.guided else x

    def mix(self, logits: torch.Tensor, scale: float) -> torch.Tensor:
        """Rows' logits (or noise) -> guided (B, ...) at `scale` in float32 (a bf16 model on a GPU mixes at full
        precision); unchanged when unguided."""
        logits = logits.float()
        return cfg_mix(logits, scale) if self.guided else logits


def due(done: int, total: int, every: int, advanced: int = 1) -> bool:
    """Whether to yield a preview after `done` of `total` steps: every `every` steps (0: never), and at the end.
    `advanced`: how many the last call did (SJD decides several cells a call); a preview is due when it crossed
    a multiple of `every`."""
    return done == total or bool(every) and done // every > (done - advanced) // every


@contextmanager
def kv_cache(model, *shape, enabled: bool = True):
    """The model's KV cache for one run (`setup_cache(*shape)` when enabled); freed however the run ends."""
    if enabled:
        model.setup_cache(*shape)
    try:
        yield
    finally:
        model.clear_caches()


class Progress:
    """Network calls and wall time since the sampler started; builds the Frames."""

    def __init__(self):
        self.calls = 0
        self.t0 = time.perf_counter()

    def frame(self, image: torch.Tensor, tokens: torch.Tensor, order: torch.Tensor, mask: torch.Tensor,
              confidence: torch.Tensor, step: int, total: int, **extra) -> Frame:
        kind = LazyFrame if callable(image) else Frame          # a function: decoded when first looked at
        return kind(image=image, tokens=tokens, order=order, mask=mask, confidence=confidence, step=step, total=total,
                     network_calls=self.calls, elapsed=time.perf_counter() - self.t0, **extra)


class GridState(Progress):
    """Codes (B, N) with -1 where open, the deciding step (B, N), the sampled code's probability (B, N).

    Samplers commit cells (one at a time or many at once) and ask for a Frame whenever they stream; the
    partial image greys the cells still open.
    """

    def __init__(self, tokenizer, batch: int, device):
        super().__init__()
        g = tokenizer.grid
        self.tokenizer, self.grid = tokenizer, g
        self.tokens = torch.full((batch, g * g), -1, dtype=torch.long, device=device)
        self.order = torch.full_like(self.tokens, -1)
        self.confidence = torch.full((batch, g * g), float("nan"), device=device)

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

    def grid_frame(self, step: int, total: int, image: torch.Tensor | None = None, **extra) -> Frame:
        """The Frame of the grid so far; `image` defaults to the tokenizer's decode of the codes so far, done when
        the Frame's image is first read (a skipped preview costs no decode)."""
        g = self.grid
        tokens = self.tokens.view(-1, g, g)
        known = tokens >= 0
        if image is None:
            codes, tokenizer = tokens.clone(), self.tokenizer
            image = lambda: tokenizer.decode_progress(codes, codes >= 0)  # noqa: E731
        return self.frame(image, tokens.clone(), self.order.view(-1, g, g).clone(), ~known,
                          self.confidence.view(-1, g, g).clone(), step, total, **extra)

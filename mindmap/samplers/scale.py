"""Next-scale sampling (VAR): one network call per scale, all of a scale's codes drawn at once.

Scale k's tokens (the start token, or the running sum so far down-sampled to s_k) go through the
block-causal trunk, attending to the KV cache of the coarser scales; its s_k^2 codes are sampled
together; their up-sampled, refined vectors join the running sum, which is decoded as the preview.
Guidance ramps with the scale (`cfg_schedule` linear: none at 1x1, `cfg` at the finest) or stays
constant. `cached=False` recomputes every coarser scale at every step (the naive baseline).
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Iterator

import torch
import torch.nn.functional as F

from ..frames import Frame
from ..sampling import cfg_at, filter_logits, sample
from .scaffold import Guidance, Progress, due, kv_cache


class ScaleImages(Sequence):
    """The picture after each scale so far, decoded when first read and kept: the pyramid view reads them all,
    while a run without previews (`pipe()`, the benchmark) decodes only its final picture. At 256 px a decode
    costs as much as a VAR-d16 step on a CPU."""

    def __init__(self, tokenizer, sums: list[torch.Tensor], cache: dict):
        self._tokenizer, self._sums, self._cache = tokenizer, sums, cache

    def __len__(self) -> int:
        return len(self._sums)

    def __getitem__(self, k: int) -> torch.Tensor:
        k = range(len(self._sums))[k]
        if k not in self._cache:
            with torch.inference_mode():
                self._cache[k] = self._tokenizer.decode_vectors(self._sums[k])
        return self._cache[k]


def _on_grid(values: torch.Tensor, grid: int) -> torch.Tensor:
    """(B, s, s) per-code values -> (B, grid, grid), nearest (each code covers its patch of cells)."""
    return F.interpolate(values[:, None].float(), size=(grid, grid), mode="nearest")[:, 0]


@torch.inference_mode()
def sample_scale(model, tokenizer, cond, generator: torch.Generator, *, cfg: float, cfg_schedule: str,
                 temperature: float, top_k: int, top_p: float, preview_every: int = 1,
                 cached: bool = True) -> Iterator[Frame]:
    """Yield a Frame after every `preview_every` scales (0: final only)."""
    progress = Progress()
    scales, grid, device = tokenizer.scales, tokenizer.grid, cond.device
    guide = Guidance(cond, model.null_class, cfg)
    batch = guide.batch
    f_hat = tokenizer.start_sum(batch, device)
    pyramid, sums, decoded, xs = [], [], {}, []
    with kv_cache(model, guide.rows.shape[0], enabled=cached):
        for k, (s, sl) in enumerate(zip(scales, model.slices)):
            inputs = None if k == 0 else guide.double(tokenizer.next_input(f_hat, k))
            xs.append(model.embed(guide.rows, inputs, sl.start))
            if cached:
                logits = model.logits(xs[-1], guide.rows, torch.arange(sl.start, sl.stop, device=device))
            else:
                logits = model.logits(torch.cat(xs, dim=1), guide.rows)[:, sl]
            logits = guide.mix(logits, cfg_at(cfg, cfg_schedule, k, len(scales)))
            codes, probs = sample(filter_logits(logits, temperature, top_k, top_p).flatten(0, 1), generator)
            codes, probs = codes.view(batch, s, s), probs.view(batch, s, s)
            progress.calls += 1
            pyramid.append(codes)
            f_hat = tokenizer.add_scale(f_hat, codes, k)
            sums.append(f_hat)
            if due(k + 1, len(scales), preview_every):
                previews = ScaleImages(tokenizer, list(sums), decoded)
                yield progress.frame(previews[-1], _on_grid(codes, grid).long(),
                                     torch.full((batch, grid, grid), k, dtype=torch.long, device=device),
                                     torch.zeros(batch, grid, grid, dtype=torch.bool, device=device),
                                     _on_grid(probs, grid), k + 1, len(scales),
                                     views={"pyramid": list(pyramid), "scale_images": previews, "scales": scales})

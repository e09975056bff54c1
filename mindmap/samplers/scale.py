"""Next-scale sampling (VAR): one network call per scale, all of a scale's codes drawn at once.

Scale k's tokens (the start token, or the running sum so far down-sampled to s_k) go through the
block-causal trunk, attending to the KV cache of the coarser scales; its s_k^2 codes are sampled
together; their up-sampled, refined vectors join the running sum, which is decoded as the preview.
Guidance ramps with the scale (`cfg_schedule` linear: none at 1x1, `cfg` at the finest) or stays
constant. `cached=False` recomputes every coarser scale at every step (the naive baseline).
"""
from __future__ import annotations

import time
from typing import Iterator

import torch
import torch.nn.functional as F

from ..frames import Frame
from ..sampling import cfg_at, cfg_mix, filter_logits, sample
from .raster import guided_rows


def _on_grid(values: torch.Tensor, grid: int) -> torch.Tensor:
    """(B, s, s) per-code values -> (B, grid, grid), nearest (each code covers its patch of cells)."""
    return F.interpolate(values[:, None].float(), size=(grid, grid), mode="nearest")[:, 0]


@torch.inference_mode()
def sample_scale(model, tokenizer, labels: torch.Tensor, generator: torch.Generator, cfg: float = 1.0,
                 cfg_schedule: str = "linear", temperature: float = 1.0, top_k: int = 0, top_p: float = 1.0,
                 preview_every: int = 1, cached: bool = True) -> Iterator[Frame]:
    """Yield a Frame after every `preview_every` scales (0: final only)."""
    t0 = time.perf_counter()
    scales, grid, batch = tokenizer.scales, tokenizer.grid, labels.shape[0]
    rows = guided_rows(labels, model.null_class, cfg)
    guided = rows.shape[0] != batch
    f_hat = torch.zeros(batch, tokenizer.config.code_dim, grid, grid, device=labels.device)
    pyramid, previews, xs = [], [], []
    if cached:
        model.setup_cache(rows.shape[0])
    try:
        for k, (s, sl) in enumerate(zip(scales, model.slices)):
            inputs = None if k == 0 else tokenizer.next_input(f_hat, k)
            if inputs is not None and guided:
                inputs = inputs.repeat(2, 1, 1)
            xs.append(model.embed(rows, inputs, sl.start))
            if cached:
                logits = model.logits(xs[-1], rows, torch.arange(sl.start, sl.stop, device=labels.device))
            else:
                logits = model.logits(torch.cat(xs, dim=1), rows)[:, sl]
            if guided:
                logits = cfg_mix(logits, cfg_at(cfg, cfg_schedule, k, len(scales)))
            codes, probs = sample(filter_logits(logits, temperature, top_k, top_p).flatten(0, 1), generator)
            codes, probs = codes.view(batch, s, s), probs.view(batch, s, s)
            pyramid.append(codes)
            f_hat = f_hat + tokenizer.quantizer.scale_update(codes, k, grid)
            previews.append(tokenizer.decode_vectors(f_hat))
            if k == len(scales) - 1 or (preview_every and (k + 1) % preview_every == 0):
                yield Frame(image=previews[-1], tokens=_on_grid(codes, grid).long(),
                            order=torch.full((batch, grid, grid), k, dtype=torch.long, device=labels.device),
                            mask=torch.zeros(batch, grid, grid, dtype=torch.bool, device=labels.device),
                            confidence=_on_grid(probs, grid), step=k + 1, total=len(scales), network_calls=k + 1,
                            elapsed=time.perf_counter() - t0,
                            views={"pyramid": list(pyramid), "scale_images": list(previews), "scales": scales})
    finally:
        model.clear_caches()

"""MAR sampling: reveal continuous tokens in a random order over `steps` steps, each drawn by the diffusion head.

A seeded random order fixes which cells come when; a cosine schedule says how many per step. Each
step: one transformer call (class and revealed tokens in, a condition z per cell out), then
`diffusion_steps` DDIM steps (eta = 1) of the head for the cells revealed now, their noise scaled by
`temperature`; guidance mixes the head's conditional and unconditional noise, constant or ramped over
the steps. Frames carry the time spent in the transformer and in the head.
"""
from __future__ import annotations

import time
from typing import Iterator

import torch

from ..frames import Frame
from ..generators.mar import noise_scheduler
from ..sampling import cfg_at, commit_counts
from .scaffold import Guidance, Progress, due


def draw_tokens(model, z: torch.Tensor, generator: torch.Generator, diffusion_steps: int, temperature: float,
                cfg: float, guide: Guidance) -> torch.Tensor:
    """Run the head's reverse diffusion for conditions z (M, or 2M when guided: [cond; uncond]) -> tokens (M, C)."""
    scheduler = noise_scheduler(model.config.num_train_timesteps)
    scheduler.set_timesteps(diffusion_steps, device=z.device)
    m = z.shape[0] // 2 if guide.guided else z.shape[0]
    x = torch.randn(m, model.config.token_dim, generator=generator, device=generator.device).to(z.device)
    for t in scheduler.timesteps:
        eps = guide.mix(model.head(guide.double(x), t.expand(z.shape[0]), z), cfg)
        noise = temperature * torch.randn(x.shape, generator=generator, device=generator.device).to(z.device)
        x = scheduler.step(eps, t, x, eta=1.0, variance_noise=noise).prev_sample
    return x


@torch.inference_mode()
def sample_mar(model, tokenizer, cond, generator: torch.Generator, *, steps: int, diffusion_steps: int,
               temperature: float, cfg: float, cfg_schedule: str, preview_every: int = 1) -> Iterator[Frame]:
    """Yield a Frame after every `preview_every` AR steps (0: final only)."""
    progress = Progress()
    g, dim, device = tokenizer.grid, model.config.token_dim, cond.device
    n = g * g
    counts = commit_counts("cosine", steps, n)
    guide = Guidance(cond, model.null_class, cfg)
    batch = guide.batch
    order = torch.stack([torch.randperm(n, generator=generator, device=generator.device) for _ in range(batch)])
    order = order.to(device)
    tokens = torch.zeros(batch, n, dim, device=device)
    known = torch.zeros(batch, n, dtype=torch.bool, device=device)
    step_of = torch.full((batch, n), -1, dtype=torch.long, device=device)
    timing = {"transformer_s": 0.0, "head_s": 0.0}
    done = 0
    for t, k in enumerate(counts):
        t1 = time.perf_counter()
        z = model.condition(guide.double(tokens), guide.double(known), guide.rows)            # (R, N, dim)
        t2 = time.perf_counter()
        cells = order[:, done:done + k]                                                       # (B, k)
        z_new = z.gather(1, guide.double(cells)[..., None].expand(-1, -1, z.shape[-1])).flatten(0, 1)
        new = draw_tokens(model, z_new, generator, diffusion_steps, temperature,
                          cfg_at(cfg, cfg_schedule, t, len(counts)), guide).view(batch, k, dim)
        progress.calls += 1
        timing["transformer_s"] += t2 - t1
        timing["head_s"] += time.perf_counter() - t2
        tokens = tokens.scatter(1, cells[..., None].expand(-1, -1, dim), new)
        known = known.scatter(1, cells, True)
        step_of = step_of.scatter(1, cells, t)
        done += k
        if due(t + 1, len(counts), preview_every):
            grid_known = known.view(batch, g, g)
            yield progress.frame(tokenizer.decode_progress(tokens, grid_known), torch.where(grid_known, 0, -1),
                                 step_of.view(batch, g, g).clone(), ~grid_known,
                                 torch.full((batch, g, g), float("nan"), device=device), t + 1, len(counts),
                                 schedule=counts[:t + 1], views={"plan": counts, "timing": dict(timing),
                                                                 "diffusion_steps": diffusion_steps})

"""Pure sampling functions: guidance mixing, temperature, top-k, top-p, seeded draws.

Order follows LlamaGen: guidance on logits, then temperature, then top-k, then top-p, then a
multinomial draw from a `torch.Generator`. Nothing here syncs with the host.
"""
from __future__ import annotations

import math

import torch


def cfg_mix(logits: torch.Tensor, scale: float) -> torch.Tensor:
    """Batch [cond; uncond] (2B, V) -> u + s (c - u), (B, V). scale 1 gives the conditional logits."""
    cond, uncond = logits.chunk(2, dim=0)
    return uncond + scale * (cond - uncond)


def filter_logits(logits: torch.Tensor, temperature: float = 1.0, top_k: int = 0, top_p: float = 1.0) -> torch.Tensor:
    """Scale by temperature, then keep the top-k logits and the smallest set with mass >= top_p."""
    logits = logits / temperature
    if 0 < top_k < logits.shape[-1]:
        kth = torch.topk(logits, top_k, dim=-1).values[..., -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p < 1.0:
        sorted_logits, order = torch.sort(logits, dim=-1, descending=True)
        cum = sorted_logits.softmax(-1).cumsum(-1)
        drop_sorted = cum - sorted_logits.softmax(-1) >= top_p   # mass before this token already >= p
        drop = drop_sorted.scatter(-1, order, drop_sorted)
        logits = logits.masked_fill(drop, float("-inf"))
    return logits


def sample(logits: torch.Tensor, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Draw one token per row of filtered logits (B, V); returns (tokens (B,), their probability (B,))."""
    probs = logits.float().softmax(-1)
    tokens = torch.multinomial(probs, 1, generator=generator)
    return tokens[:, 0], probs.gather(-1, tokens)[:, 0]


def speculative_accept(p: torch.Tensor, q: torch.Tensor, drafts: torch.Tensor,
                       generator: torch.Generator) -> torch.Tensor:
    """Which drafts (B, W) to accept: each with probability min(1, p(x) / q(x)), where q (B, W, V) is the
    distribution it was drawn from and p (B, W, V) the model's given the drafts before it. Returns (B, W) bool."""
    p_x = p.gather(-1, drafts[..., None])[..., 0]
    q_x = q.gather(-1, drafts[..., None])[..., 0]
    u = torch.rand(drafts.shape, generator=generator, device=generator.device).to(p.device)
    return u * q_x < p_x                                     # u < p/q, without dividing by q


def residual_sample(p: torch.Tensor, q: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """After a rejection: one token per row (B,) from norm(max(0, p - q)) (p and q (B, V)); rows whose residual
    has no mass (p == q) draw from p."""
    residual = (p - q).clamp_min(0)
    empty = residual.sum(-1, keepdim=True) <= 0
    return torch.multinomial(torch.where(empty, p, residual), 1, generator=generator)[:, 0]


def redraft(drafts: torch.Tensor, q: torch.Tensor, p: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Move drafts (B, T) drawn from q to draws from p (both (B, T, V)), changing as few as possible: each is kept with
    probability min(1, p(x) / q(x)), else redrawn from norm(max(0, p - q)), so each is an exact draw from p (the
    speculative sampling rule) that equals the old draft wherever p still allows it."""
    if drafts.shape[1] == 0:
        return drafts
    keep = speculative_accept(p, q, drafts, generator)
    fresh = residual_sample(p.flatten(0, 1), q.flatten(0, 1), generator).view_as(drafts).to(drafts.device)
    return torch.where(keep, drafts, fresh)


def make_generator(seed: int, device: torch.device | str) -> torch.Generator:
    """The one source of randomness for a request: same seed, same device -> same draws."""
    return torch.Generator(device=device).manual_seed(int(seed))


# --- parallel (MaskGIT) decoding ------------------------------------------------------------------
SCHEDULES = ("cosine", "arccos", "linear")
CFG_SCHEDULES = ("constant", "linear")


def open_fraction(schedule: str, r: float) -> float:
    """Share of cells still masked once a fraction `r` of the steps is done (1 at r=0, 0 at r=1)."""
    if schedule == "cosine":
        return math.cos(math.pi / 2 * r)
    if schedule == "arccos":
        return math.acos(r) / (math.pi / 2)
    if schedule == "linear":
        return 1.0 - r
    raise ValueError(f"schedule must be one of {SCHEDULES}, got {schedule!r}")


def commit_counts(schedule: str, steps: int, n: int) -> list[int]:
    """Cells committed at each of `steps` steps: every count >= 1, summing to `n` (needs steps <= n)."""
    if not 1 <= steps <= max(n, 1):
        raise ValueError(f"steps must be an integer in [1, {n}], got {steps}")
    counts, open_before = [], n
    for t in range(steps):
        left = steps - t - 1                                   # steps still to come after this one
        open_after = round(n * open_fraction(schedule, (t + 1) / steps)) if left else 0
        open_after = max(min(open_after, open_before - 1), left)   # >= 1 now, >= 1 for each step left
        counts.append(open_before - open_after)
        open_before = open_after
    return counts


def cfg_at(cfg: float, schedule: str, t: int, steps: int) -> float:
    """Guidance scale at step t of `steps`: constant, or ramped linearly from 1 (none) to `cfg` at the last step.

    The ramp is MaskGIT's and VAR's: guidance weight cfg - 1 times t / (steps - 1).
    """
    if schedule == "constant":
        return cfg
    if schedule == "linear":
        return 1.0 + (cfg - 1.0) * (t / (steps - 1) if steps > 1 else 1.0)
    raise ValueError(f"cfg_schedule must be one of {CFG_SCHEDULES}, got {schedule!r}")


def gumbel_noise(shape, generator: torch.Generator) -> torch.Tensor:
    """Standard Gumbel draws, -log(-log U), from the request's generator."""
    u = torch.rand(shape, generator=generator, device=generator.device)
    return -torch.log(-torch.log(u.clamp(1e-20, 1.0 - 1e-7)))

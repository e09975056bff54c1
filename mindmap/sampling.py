"""Pure sampling functions: guidance mixing, temperature, top-k, top-p, seeded draws.

Order follows LlamaGen: guidance on logits, then temperature, then top-k, then top-p, then a
multinomial draw from a `torch.Generator`. Nothing here syncs with the host.
"""
from __future__ import annotations

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


def make_generator(seed: int, device: torch.device | str) -> torch.Generator:
    """The one source of randomness for a request: same seed, same device -> same draws."""
    return torch.Generator(device=device).manual_seed(int(seed))

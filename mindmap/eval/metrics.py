"""Reconstruction and codebook metrics (pure functions on tensors)."""
from __future__ import annotations

import torch


def psnr(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Per-image PSNR in dB of images in [-1, 1], (B, C, H, W) -> (B,)."""
    mse = ((a.float() - b.float()) / 2).pow(2).flatten(1).mean(1).clamp_min(1e-10)
    return -10 * torch.log10(mse)


def codebook_stats(codes: torch.Tensor, codebook_size: int) -> dict:
    """Share of the codebook used by `codes`, and the perplexity of their distribution."""
    counts = torch.bincount(codes.flatten(), minlength=codebook_size).float()
    p = counts / counts.sum()
    entropy = -(p[p > 0] * p[p > 0].log()).sum()
    return {"codebook_usage": (counts > 0).float().mean().item(), "perplexity": entropy.exp().item()}


@torch.no_grad()
def tokenizer_metrics(tokenizer, images: torch.Tensor, batch: int = 256) -> dict:
    """Held-out reconstruction PSNR and codebook usage/perplexity of a VQ tokenizer."""
    device = next(tokenizer.parameters()).device
    scores, codes = [], []
    for i in range(0, len(images), batch):
        x = images[i:i + batch].to(device)
        c = tokenizer.encode(x)
        scores.append(psnr(tokenizer.decode(c), x).cpu())
        codes.append(c.cpu())
    return {"psnr": torch.cat(scores).mean().item(), "images": len(images),
            **codebook_stats(torch.cat(codes), tokenizer.vocab_size)}

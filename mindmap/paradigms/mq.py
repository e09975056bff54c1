"""Masked quantization (MQ-VAE + Stackformer): generate only the important cells as (code, position) pairs.

The MQ tokenizer keeps the top (1 - mask_ratio) of the cells and its decoder rebuilds the rest; the
Stackformer draws K (code, cell) pairs in raster order. The naive baseline is the same sampler without
its KV cache.
"""
import torch

from ..controls import MASK_RATIO, TOKEN_SAMPLING
from ..generators.stack import PRESETS, StackGPT, stack_loss
from ..samplers.stack import sample_stack
from ..viz import mq_view
from .base import Paradigm, Recipe, View, every_sixteenth, register


def cell_codes_and_scores(tokenizer, images: torch.Tensor) -> torch.Tensor:
    """Every cell's code and importance score, (B, N, 2) float; the kept set is chosen per training row."""
    codes, scores = tokenizer.encode_all(images)
    return torch.stack([codes.flatten(1).float(), scores.flatten(1)], dim=-1)


def mq_loss(model: StackGPT, batch: torch.Tensor, cond: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Stackformer on a random kept count per row, K ~ U{min_count .. N} (the mask ratio range it serves)."""
    counts = torch.randint(model.config.min_count, model.cells + 1, (len(batch),), generator=generator)
    return stack_loss(model, batch[..., 0].long(), batch[..., 1], cond, counts.to(batch.device))


def tokenizer_psnr(pipe, held: torch.Tensor, request) -> dict:
    """The tokenizer's own held-out PSNR at the request's mask ratio: the ceiling of what the generator can make."""
    from ..eval.metrics import preview_psnr
    return {"tokenizer_psnr": next(iter(preview_psnr(pipe.tokenizer, held, ratios=(request.values["mask_ratio"],))
                                        .values()))}


PARADIGM = register(Paradigm(
    name="mq", anchor="MQ-VAE + Stackformer", tokenizer="mq", components={"generator": StackGPT},
    sampler=sample_stack, controls=(*TOKEN_SAMPLING, MASK_RATIO), cached=True, preview_every=every_sixteenth,
    view=View("Masked quantization: kept cells, and the importance map of the result", mq_view),
    sweep=tuple({"mask_ratio": r} for r in (0.0, 0.25, 0.5, 0.75)), demo_class="transport-ground",
    eval_extra=tokenizer_psnr,
    recipe=Recipe(PRESETS, mq_loss, "Stackformer generator (MQ-VAE recipe)",
                  "A causal code transformer predicts the next kept cell's code; a position transformer stacked on "
                  "it predicts that code's cell (raster order, used and too-late cells banned). The start token "
                  "carries the class and K, the kept count; trained on K drawn over the tokenizer's mask-ratio range "
                  "with code CE + position CE", encode=cell_codes_and_scores,
                  extra=lambda tok: {"min_count": max(1, round((1 - tok.config["max_mask_ratio"]) * tok.grid ** 2))},
                  metric="CE (nats/kept cell, code + position)"),
))

"""A paradigm written for the tests, to show what adding one takes: this module, and one `register(TOY)` line.

"Any order": a masked generator decides one cell per network call, in an order the new `order` control picks
(a seeded random permutation, or from the centre out). Nothing outside this file knows it exists.
"""
from __future__ import annotations

import torch

from mindmap.controls import TOKEN_SAMPLING, Control
from mindmap.generators.masked import MaskedGPT
from mindmap.paradigms import Paradigm, View
from mindmap.samplers.scaffold import GridState, Guidance, due
from mindmap.sampling import filter_logits, sample
from mindmap.viz import order_map

ORDER = Control("order", "choice", "random", choices=("random", "center-out"), label="Cell order",
                help="which cell is decided next", role="lever")


def cell_order(kind: str, grid: int, generator: torch.Generator) -> list[int]:
    if kind == "random":
        return torch.randperm(grid * grid, generator=generator, device=generator.device).tolist()
    centre = (grid - 1) / 2
    rows, cols = torch.meshgrid(torch.arange(grid), torch.arange(grid), indexing="ij")
    distance = ((rows - centre) ** 2 + (cols - centre) ** 2).flatten()
    return sorted(range(grid * grid), key=lambda cell: (distance[cell].item(), cell))


@torch.inference_mode()
def sample_any_order(model, tokenizer, cond, generator: torch.Generator, *, order: str, cfg: float,
                     temperature: float, top_k: int, top_p: float, preview_every: int = 1):
    n = tokenizer.grid ** 2
    guide = Guidance(cond, model.null_class, cfg)
    state = GridState(tokenizer, guide.batch, cond.device)
    for t, cell in enumerate(cell_order(order, tokenizer.grid, generator)):
        inputs = state.tokens.masked_fill(~state.known, model.mask_id)
        logits = guide.mix(model(guide.double(inputs), guide.rows)[:, cell], cfg)
        state.calls += 1
        codes, probs = sample(filter_logits(logits, temperature, top_k, top_p), generator)
        state.commit(cell, codes, probs, step=t)
        if due(t + 1, n, preview_every):
            yield state.grid_frame(t + 1, n)


TOY = Paradigm(name="any-order", anchor="a test", tokenizer="vq", components={"generator": MaskedGPT},
               sampler=sample_any_order, controls=(ORDER, *TOKEN_SAMPLING), naive=lambda pipe: {"order": "random"},
               view=View("Order: the cells in the order they were decided",
                         lambda frame, index, width: order_map(frame, index, width or 256)))
